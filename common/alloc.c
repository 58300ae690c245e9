/* alloc.c - libweft's allocator wrappers, with failure injection for tests.
 *
 * Tests sweep every allocation of a public call: run it once to count the
 * allocations, then once per allocation with that one failing, and check for
 * a clean error and no leak (tests/store/test_alloc.c).
 *
 * Invariants:
 *   1. When injection is off (the default) these are malloc/realloc/free.
 *   2. An injected failure returns NULL exactly as malloc would, and leaves
 *      the pointer passed to weft__realloc untouched.
 * Thread-safety: thread-safe (atomic counters); injection is process-wide.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "weft_int.h"

static atomic_long fail_after = -1; /* allocations left before failing; -1 off */
static atomic_long made;            /* allocations attempted since the last reset */

static int should_fail(void)
{
    atomic_fetch_add(&made, 1);
    long left = atomic_load(&fail_after);
    if (WEFT__LIKELY(left < 0)) {
        return 0;
    }
    if (left == 0) {
        return 1;
    }
    atomic_fetch_sub(&fail_after, 1);
    return 0;
}

long weft__alloc_fail_after(long n)
{
    long m = atomic_exchange(&made, 0);
    atomic_store(&fail_after, n);
    return m;
}

void *weft__malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

void *weft__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *weft__realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

void weft__free(void *p)
{
    free(p);
}

int weft__buf_reserve(weft__buf *b, size_t extra)
{
    if (extra <= b->cap - b->len) {
        return 0;
    }
    if (extra > SIZE_MAX / 2 - b->len) {
        return weft__err(WEFT_ENOMEM, "buffer of %zu bytes requested", extra);
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra) {
        cap *= 2;
    }
    uint8_t *p = weft__realloc(b->ptr, cap);
    if (p == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    }
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int weft__buf_put(weft__buf *b, const void *p, size_t n)
{
    int rc = weft__buf_reserve(b, n);
    if (rc == 0 && n > 0) {
        memcpy(b->ptr + b->len, p, n);
        b->len += n;
    }
    return rc;
}

void weft__buf_free(weft__buf *b)
{
    weft__free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}
