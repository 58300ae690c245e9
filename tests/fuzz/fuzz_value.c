/* fuzz_value.c - fuzz target for value validation and canonicalisation
 * (crdt/mp.c): weft__mp_check, what every stored or received value must
 * pass, and weft__mp_canon, what every value an application writes goes
 * through.
 *
 * Properties checked for every input:
 *   1. weft__mp_check never crashes, reads outside the input or recurses
 *      past its depth cap.
 *   2. mp.c invariant 3: when weft__mp_check accepts a prefix of the input
 *      (one object of `used` bytes), weft__mp_canon of those bytes succeeds
 *      and reproduces them byte for byte.
 *   3. weft__mp_canon on the whole input: when it succeeds, its output
 *      passes weft__mp_check exactly (used == output length), canonicalising
 *      the output again changes nothing, and the output is at most 9/5 of
 *      the input (mp.c invariant 2: only float32 -> float64 grows).
 *   4. On failure weft__mp_canon leaves the output buffer's length as it was.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <string.h>

#include "crdt/crdt_int.h"
#include "fuzz.h"

static void check_canonical_prefix(const uint8_t *data, size_t size)
{
    size_t used = 0;
    int rc = weft__mp_check(data, size, WEFT_DEPTH_MAX, &used);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT);
        return;
    }
    FUZZ_CHECK(used >= 1 && used <= size);
    weft__buf out = {0};
    rc = weft__mp_canon(data, used, &out);
    FUZZ_CHECK(rc == 0 || rc == WEFT_ENOMEM || (rc == WEFT_ELIMIT && used > WEFT_VALUE_MAX));
    if (rc == 0) {
        FUZZ_CHECK(out.len == used && memcmp(out.ptr, data, used) == 0);
    }
    weft__buf_free(&out);
}

static void check_canon(const uint8_t *data, size_t size)
{
    uint8_t mark = 0xa5;
    weft__buf out = {0}, again = {0};
    /* Start from a non-empty buffer: canon appends, and must keep what was there. */
    FUZZ_CHECK(weft__buf_put(&out, &mark, 1) == 0);
    int rc = weft__mp_canon(data, size, &out);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_EINVAL || rc == WEFT_ELIMIT || rc == WEFT_ENOMEM);
        FUZZ_CHECK(out.len == 1 && out.ptr[0] == mark);
    } else {
        FUZZ_CHECK(out.ptr[0] == mark);
        const uint8_t *c = out.ptr + 1;
        size_t clen = out.len - 1;
        size_t used = 0;
        FUZZ_CHECK(clen >= 1);
        FUZZ_CHECK((uint64_t)clen * 5 <= (uint64_t)size * 9);
        FUZZ_CHECK(weft__mp_check(c, clen, WEFT_DEPTH_MAX, &used) == 0);
        FUZZ_CHECK(used == clen);
        FUZZ_CHECK(weft__mp_canon(c, clen, &again) == 0);
        FUZZ_CHECK(again.len == clen && memcmp(again.ptr, c, clen) == 0);
    }
    weft__buf_free(&out);
    weft__buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_canonical_prefix(data, size);
    check_canon(data, size);
    return 0;
}
