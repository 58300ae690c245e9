/* hex.c - lowercase hex for keys in cards, logs and ZAP user ids.
 *
 * Invariants:
 *   1. weft__hex_encode writes exactly 2n digits and a NUL.
 *   2. weft__hex_decode reads exactly 2n characters and writes @p p only if
 *      all of them are hex digits (either case).
 * Thread-safety: reentrant.
 */
#include "weft_int.h"

void weft__hex_encode(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

int weft__hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool weft__hex_decode(const char *s, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        if (weft__hex_digit(s[i]) < 0) {
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(weft__hex_digit(s[2 * i]) << 4 | weft__hex_digit(s[2 * i + 1]));
    }
    return true;
}
