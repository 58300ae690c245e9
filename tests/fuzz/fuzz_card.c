/* fuzz_card.c - fuzz target for the device-card parser (transport/peers.c,
 * weft_card_parse): cards are pasted by people and passed on by scripts
 * (`weft peer add NAME CARD`).
 *
 * The input, cut at its first NUL, is the card text.
 * Properties checked for every input:
 *   1. weft_card_parse never crashes or reads past the string's NUL, and on
 *      failure returns WEFT_EINVAL and writes neither output.
 *   2. An accepted card yields an endpoint of at most WEFT_ENDPOINT_MAX
 *      bytes without spaces, control characters or commas, and the card
 *      rebuilt from the result ("weft1:" + lowercase hex key, then "@" +
 *      endpoint when there is one) parses to the same key and endpoint.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#include "fuzz.h"

#define CARD_PREFIX "weft1:"

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *card = malloc(size + 1);
    if (!card) {
        return 0;
    }
    if (size > 0) {
        memcpy(card, data, size);
    }
    card[size] = '\0';
    uint8_t key[WEFT_KEY_BYTES], key2[WEFT_KEY_BYTES];
    char addr[WEFT_ENDPOINT_MAX + 1], addr2[WEFT_ENDPOINT_MAX + 1];
    memset(key, 0x5a, sizeof key);
    memset(addr, 0x5a, sizeof addr);
    int rc = weft_card_parse(card, key, addr);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_EINVAL);
        for (size_t i = 0; i < sizeof key; i++) {
            FUZZ_CHECK(key[i] == 0x5a);
        }
        FUZZ_CHECK((unsigned char)addr[0] == 0x5a);
        free(card);
        return 0;
    }
    size_t alen = strnlen(addr, sizeof addr);
    FUZZ_CHECK(alen <= WEFT_ENDPOINT_MAX);
    for (size_t i = 0; i < alen; i++) {
        unsigned char c = (unsigned char)addr[i];
        FUZZ_CHECK(c > ' ' && c != 0x7f && c != ',');
    }
    char again[sizeof CARD_PREFIX + 2 * WEFT_KEY_BYTES + 1 + WEFT_ENDPOINT_MAX + 1];
    memcpy(again, CARD_PREFIX, strlen(CARD_PREFIX));
    hex(key, sizeof key, again + strlen(CARD_PREFIX));
    if (alen > 0) {
        size_t at = strlen(again);
        again[at] = '@';
        memcpy(again + at + 1, addr, alen + 1);
    }
    FUZZ_CHECK(weft_card_parse(again, key2, addr2) == 0);
    FUZZ_CHECK(memcmp(key, key2, sizeof key) == 0 && strcmp(addr, addr2) == 0);
    (void)weft_device_of(key);
    free(card);
    return 0;
}
