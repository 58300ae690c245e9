/* weft_int.h - helpers every module shares: allocation (with a failure hook
 * for tests), error reporting, growable buffers, big-endian integers.
 *
 * Invariants:
 *   1. Every allocation in libweft goes through weft__malloc/realloc/free, so
 *      a test can make the n-th one fail (weft__alloc_fail_after).
 *   2. weft__err() records the message for weft_last_error() and returns the
 *      code unchanged, so `return weft__err(WEFT_ELIMIT, "...")` is the idiom.
 *   3. A weft__buf owns its bytes; len <= cap; on allocation failure it is
 *      left unchanged.
 * Thread-safety: all functions are thread-safe; the failure hook is global
 * and meant for single-threaded tests.
 */
#ifndef WEFT_INT_H
#define WEFT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <weft/weft.h>

#if defined(__GNUC__) || defined(__clang__)
#define WEFT__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define WEFT__LIKELY(x)    __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x)  __builtin_expect(!!(x), 0)
#else
#define WEFT__PRINTF(f, a)
#define WEFT__LIKELY(x)   (x)
#define WEFT__UNLIKELY(x) (x)
#endif

/* ---- allocation ---- */
void *weft__malloc(size_t n);
void *weft__calloc(size_t n, size_t size);
void *weft__realloc(void *p, size_t n);
void weft__free(void *p);
/** Tests: make every allocation after the next @p n succeed-calls fail
 * (-1 turns failure injection off). Returns how many allocations were made
 * since the last call, so a test can sweep every allocation point. */
long weft__alloc_fail_after(long n);

/* ---- errors ---- */
/** Record a message for weft_last_error() and return @p code. */
int weft__err(int code, const char *fmt, ...) WEFT__PRINTF(2, 3);
/** Clear this thread's message. */
void weft__err_clear(void);

/* ---- growable byte buffer ---- */
typedef struct weft__buf {
    uint8_t *ptr;
    size_t len, cap;
} weft__buf;

/** Ensure room for @p extra more bytes. 0 or WEFT_ENOMEM. */
int weft__buf_reserve(weft__buf *b, size_t extra);
/** Append. 0 or WEFT_ENOMEM. */
int weft__buf_put(weft__buf *b, const void *p, size_t n);
void weft__buf_free(weft__buf *b);
static inline void weft__buf_reset(weft__buf *b)
{
    b->len = 0;
}

/* ---- bump arena: many small allocations freed together ----
 * Pointers it returns stay valid (never move) until weft__arena_reset or
 * weft__arena_free. Used for views a transaction hands out. */
typedef struct weft__arena {
    struct weft__chunk *head;
    size_t total; /* bytes in all chunks */
} weft__arena;

/** 16-byte aligned, NULL on out of memory. */
void *weft__arena_alloc(weft__arena *a, size_t n);
/** Copy @p n bytes in; NULL on out of memory. */
void *weft__arena_dup(weft__arena *a, const void *p, size_t n);
/** Free all but the first chunk. */
void weft__arena_reset(weft__arena *a);
void weft__arena_free(weft__arena *a);

/* ---- hex (hex.c) ---- */
/** Write the 2n lowercase hex digits of p[0..n) and a NUL into out (2n + 1 bytes). */
void weft__hex_encode(char *out, const uint8_t *p, size_t n);
/** The value of one hex digit (either case), or -1. */
int weft__hex_digit(char c);
/** Decode exactly the 2n characters s[0..2n) into p[0..n); false (p untouched)
 * if any is not a hex digit. The caller checks s has 2n characters. */
bool weft__hex_decode(const char *s, uint8_t *p, size_t n);

/* ---- big-endian integers (keys sort numerically as bytes) ---- */
static inline void weft__be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint64_t weft__be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}
static inline void weft__be32_put(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}
static inline uint32_t weft__be32_get(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* An op id as 16 big-endian bytes (hlc | device): the ops key, and how ids
 * appear inside payloads. */
#define WEFT__ID_BYTES 16u
static inline void weft__id_put(uint8_t *p, weft_id id)
{
    weft__be64_put(p, id.hlc);
    weft__be64_put(p + 8, id.device);
}
static inline weft_id weft__id_get(const uint8_t *p)
{
    weft_id id = {weft__be64_get(p), weft__be64_get(p + 8)};
    return id;
}

#endif /* WEFT_INT_H */
