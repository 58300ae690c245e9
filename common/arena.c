/* arena.c - bump allocator for views that live as long as a transaction.
 *
 * Invariants:
 *   1. Memory handed out never moves; it is freed only by reset/free.
 *   2. Every pointer returned is 16-byte aligned.
 *   3. Chunks double in size (from 4 KiB), so n allocations cost O(log n)
 *      mallocs; a request larger than the next chunk gets a chunk of its own.
 * Thread-safety: one thread at a time.
 */
#include <stdalign.h>

#include "weft_int.h"

struct weft__chunk {
    struct weft__chunk *next;
    size_t size, used;
    alignas(16) unsigned char data[];
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

void *weft__arena_alloc(weft__arena *a, size_t n)
{
    n = ALIGN16(n ? n : 1);
    struct weft__chunk *c = a->head;
    if (c == NULL || c->size - c->used < n) {
        size_t size = c ? c->size * 2 : 4096;
        while (size < n) {
            size *= 2;
        }
        struct weft__chunk *nc = weft__malloc(sizeof *nc + size);
        if (nc == NULL) {
            return NULL;
        }
        nc->size = size;
        nc->used = 0;
        nc->next = c;
        a->head = c = nc;
        a->total += size;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

void *weft__arena_dup(weft__arena *a, const void *p, size_t n)
{
    void *q = weft__arena_alloc(a, n);
    if (q != NULL && n > 0) {
        memcpy(q, p, n);
    }
    return q;
}

void weft__arena_reset(weft__arena *a)
{
    struct weft__chunk *c = a->head;
    if (c == NULL) {
        return;
    }
    struct weft__chunk *rest = c->next;
    c->next = NULL;
    c->used = 0;
    a->total = c->size;
    while (rest != NULL) {
        struct weft__chunk *next = rest->next;
        weft__free(rest);
        rest = next;
    }
}

void weft__arena_free(weft__arena *a)
{
    weft__arena_reset(a);
    weft__free(a->head);
    a->head = NULL;
    a->total = 0;
}
