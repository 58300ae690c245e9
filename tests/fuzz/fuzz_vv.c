/* fuzz_vv.c - fuzz target for the version-vector decoder (store/vv.c), read
 * from the network (HELLO, ACK, DONE) and from the peers database.
 *
 * Properties checked for every input:
 *   1. weft_vv_decode never crashes, reads outside the input or allocates
 *      for entries the input does not hold; it fails with ECORRUPT, ELIMIT
 *      or ENOMEM and then leaves *out untouched.
 *   2. Canonical round trip (vv.c invariant 3): an accepted vector
 *      re-encodes with weft_vv_encode to the same bytes; asking for the size
 *      with a too-small buffer gives WEFT_ENOSPC and the exact size.
 *   3. An accepted vector holds <= 65536 entries, strictly ascending by
 *      device, none with hlc 0, and weft_vv_get agrees with weft_vv_entry.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    weft_vv *sentinel = (weft_vv *)&sentinel; /* must survive a failed decode */
    weft_vv *vv = sentinel;
    int rc = weft_vv_decode(data, size, &vv);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT || rc == WEFT_ENOMEM);
        FUZZ_CHECK(vv == sentinel);
        return 0;
    }
    FUZZ_CHECK(vv != NULL && vv != sentinel);
    size_t n = weft_vv_count(vv);
    FUZZ_CHECK(n <= 65536);
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d, h;
        FUZZ_CHECK(weft_vv_entry(vv, i, &d, &h) == 0);
        FUZZ_CHECK(i == 0 || d > prev);
        FUZZ_CHECK(h != 0);
        FUZZ_CHECK(weft_vv_get(vv, d) == h);
        prev = d;
    }
    size_t need = 0;
    if (size > 0) {
        FUZZ_CHECK(weft_vv_encode(vv, NULL, 0, &need) == WEFT_ENOSPC);
        FUZZ_CHECK(need == size);
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (buf) {
        size_t len = 0;
        FUZZ_CHECK(weft_vv_encode(vv, buf, size, &len) == 0);
        FUZZ_CHECK(len == size && memcmp(buf, data, size) == 0);
        free(buf);
    }
    weft_vv_destroy(&vv);
    FUZZ_CHECK(vv == NULL);
    return 0;
}
