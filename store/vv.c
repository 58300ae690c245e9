/* vv.c - version vectors: device -> highest hlc held, as a sorted array.
 *
 * Encoding (canonical msgpack, what travels in the sync protocol): a map of
 * n entries, keys the devices as uint in ascending order, values the hlcs as
 * uint; shortest headers and integers (crdt's weft__mp_put_*). An empty
 * vector is the empty map (0x80).
 *
 * Invariants:
 *   1. e[0..n) is strictly ascending by device; no entry has hlc 0.
 *   2. n <= WEFT__VV_MAX (65536).
 *   3. decode accepts exactly what encode produces and allocates only after
 *      checking the input holds at least one byte per claimed entry.
 * Thread-safety: one thread at a time per weft_vv.
 */
#include "store_int.h"

#define WEFT__VV_MAX 65536u

typedef struct vv_entry {
    uint64_t device, hlc;
} vv_entry;

struct weft_vv {
    vv_entry *e;
    size_t n, cap;
};

int weft_vv_new(weft_vv **out)
{
    if (out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_vv_new: out is required");
    }
    weft_vv *vv = weft__calloc(1, sizeof *vv);
    if (vv == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory creating a version vector");
    }
    *out = vv;
    return 0;
}

void weft_vv_destroy(weft_vv **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    weft__free((*self_p)->e);
    weft__free(*self_p);
    *self_p = NULL;
}

static size_t find(const weft_vv *vv, uint64_t device, bool *found)
{
    size_t lo = 0, hi = vv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vv->e[mid].device < device) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < vv->n && vv->e[lo].device == device;
    return lo;
}

uint64_t weft_vv_get(const weft_vv *vv, uint64_t device)
{
    if (vv == NULL) {
        return 0;
    }
    bool found;
    size_t i = find(vv, device, &found);
    return found ? vv->e[i].hlc : 0;
}

static int reserve(weft_vv *vv, size_t n)
{
    if (n <= vv->cap) {
        return 0;
    }
    size_t cap = vv->cap ? vv->cap : 8;
    while (cap < n) {
        cap *= 2;
    }
    vv_entry *p = weft__realloc(vv->e, cap * sizeof *p);
    if (p == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory growing a version vector to %zu", cap);
    }
    vv->e = p;
    vv->cap = cap;
    return 0;
}

int weft_vv_set(weft_vv *vv, uint64_t device, uint64_t hlc)
{
    if (vv == NULL) {
        return weft__err(WEFT_EINVAL, "weft_vv_set: vv is NULL");
    }
    bool found;
    size_t i = find(vv, device, &found);
    if (found) {
        if (hlc == 0) {
            memmove(vv->e + i, vv->e + i + 1, (vv->n - i - 1) * sizeof *vv->e);
            vv->n--;
        } else {
            vv->e[i].hlc = hlc;
        }
        return 0;
    }
    if (hlc == 0) {
        return 0;
    }
    if (vv->n >= WEFT__VV_MAX) {
        return weft__err(WEFT_ELIMIT, "version vector already holds %u devices", WEFT__VV_MAX);
    }
    int rc = reserve(vv, vv->n + 1);
    if (rc != 0) {
        return rc;
    }
    memmove(vv->e + i + 1, vv->e + i, (vv->n - i) * sizeof *vv->e);
    vv->e[i].device = device;
    vv->e[i].hlc = hlc;
    vv->n++;
    return 0;
}

size_t weft_vv_count(const weft_vv *vv)
{
    return vv != NULL ? vv->n : 0;
}

int weft_vv_entry(const weft_vv *vv, size_t i, uint64_t *device, uint64_t *hlc)
{
    if (vv == NULL || i >= vv->n) {
        return weft__err(WEFT_EINVAL, "weft_vv_entry: index %zu out of range", i);
    }
    if (device != NULL) {
        *device = vv->e[i].device;
    }
    if (hlc != NULL) {
        *hlc = vv->e[i].hlc;
    }
    return 0;
}

int weft__vv_put(weft__buf *b, const weft_vv *vv)
{
    size_t len0 = b->len, n = weft_vv_count(vv);
    int rc = weft__mp_put_map(b, (uint32_t)n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = weft__mp_put_uint(b, vv->e[i].device);
        rc = rc ? rc : weft__mp_put_uint(b, vv->e[i].hlc);
    }
    if (rc != 0) {
        b->len = len0;
    }
    return rc;
}

int weft__vv_merge(weft_vv *dst, const weft_vv *src, bool *changed)
{
    bool any = false;
    int rc = 0;
    for (size_t i = 0; i < weft_vv_count(src) && rc == 0; i++) {
        if (src->e[i].hlc > weft_vv_get(dst, src->e[i].device)) {
            rc = weft_vv_set(dst, src->e[i].device, src->e[i].hlc);
            any = true;
        }
    }
    if (changed != NULL) {
        *changed = any;
    }
    return rc;
}

bool weft__vv_le(const weft_vv *a, const weft_vv *b)
{
    for (size_t i = 0; i < weft_vv_count(a); i++) {
        if (a->e[i].hlc > weft_vv_get(b, a->e[i].device)) {
            return false;
        }
    }
    return true;
}

int weft_vv_encode(const weft_vv *vv, uint8_t *buf, size_t cap, size_t *len)
{
    if (vv == NULL || len == NULL || (buf == NULL && cap > 0)) {
        return weft__err(WEFT_EINVAL, "weft_vv_encode: vv and len are required");
    }
    weft__buf b = {NULL, 0, 0};
    int rc = weft__vv_put(&b, vv);
    if (rc != 0) {
        weft__buf_free(&b);
        return rc;
    }
    *len = b.len;
    if (cap < b.len) {
        weft__buf_free(&b);
        return weft__err(WEFT_ENOSPC, "version vector needs %zu bytes, buffer has %zu", *len, cap);
    }
    memcpy(buf, b.ptr, b.len);
    weft__buf_free(&b);
    return 0;
}

int weft_vv_decode(const uint8_t *buf, size_t len, weft_vv **out)
{
    if ((buf == NULL && len > 0) || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_vv_decode: buf and out are required");
    }
    /* The size limit first, from the map header alone (map32: 0xdf n32). */
    if (len >= 5 && buf[0] == 0xdf && weft__be32_get(buf + 1) > WEFT__VV_MAX) {
        return weft__err(WEFT_ELIMIT, "version vector of %u devices, the limit is %u",
                         weft__be32_get(buf + 1), WEFT__VV_MAX);
    }
    weft__mp_reader r = {buf, buf + len};
    uint32_t n;
    if (weft__mp_read_map(&r, &n) != 0) {
        return weft__err(WEFT_ECORRUPT, "version vector is not a canonical msgpack map");
    }
    if ((size_t)(r.end - r.p) < 2u * n) {
        return weft__err(WEFT_ECORRUPT, "version vector truncated (%u entries claimed)", n);
    }
    weft_vv *vv;
    int rc = weft_vv_new(&vv);
    if (rc != 0) {
        return rc;
    }
    if ((rc = reserve(vv, n)) != 0) {
        weft_vv_destroy(&vv);
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t d, h;
        if (weft__mp_read_uint(&r, &d) != 0 || weft__mp_read_uint(&r, &h) != 0) {
            rc = weft__err(WEFT_ECORRUPT, "version vector entry %u is not uint -> uint", i);
        } else if (i > 0 && d <= vv->e[i - 1].device) {
            rc = weft__err(WEFT_ECORRUPT, "version vector devices not strictly ascending at %u", i);
        } else if (h == 0 || d == 0) {
            rc = weft__err(WEFT_ECORRUPT, "version vector entry %u has a zero device or hlc", i);
        }
        if (rc != 0) {
            weft_vv_destroy(&vv);
            return rc;
        }
        vv->e[i].device = d;
        vv->e[i].hlc = h;
        vv->n = i + 1;
    }
    if (r.p != r.end) {
        weft_vv_destroy(&vv);
        return weft__err(WEFT_ECORRUPT, "%zu trailing bytes after the version vector",
                         (size_t)(r.end - r.p));
    }
    *out = vv;
    return 0;
}
