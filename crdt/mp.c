/* mp.c - weft's bounded msgpack reader, canonical writers, value
 * validation and canonicalisation.
 *
 * Everything weft stores or sends is canonical msgpack (crdt_int.h defines
 * it). This file is the only place that parses msgpack. It never uses
 * msgpack-c's unpacker, which allocates before it checks (STACK.md); the
 * writers are hand-written too, because canonical output is easier to prove
 * with twenty lines of our own than with msgpack-c's packer, which would pick
 * int8 for a small non-negative signed value.
 *
 * One header parser (parse_head) serves both the strict checker and the
 * lenient canonicaliser: it classifies the object at a position, returns its
 * length/count claim and says whether the header is the shortest form. The
 * checker rejects any non-shortest header; the canonicaliser rewrites it.
 *
 * Invariants:
 *   1. No function reads before the start or at/after the end of its input:
 *      every header is bounds-checked before it is read, every length or
 *      count claim is compared with the bytes remaining (an array element or
 *      a map key/value takes at least one byte) before anything is read or
 *      reserved for it.
 *   2. weft__mp_check and the weft__mp_read_* readers never allocate.
 *      weft__mp_canon allocates at most: its output (<= 9/5 of the input,
 *      float32 growing to float64) plus, per map on the current nesting path,
 *      an index and a merge buffer of 2 x 24 bytes per entry (entries <=
 *      remaining bytes / 2) and, for an unsorted map, a copy of its bytes.
 *      A length or count beyond the bytes left is refused before any of it.
 *   3. weft__mp_check accepts exactly the canonical encodings; for any input
 *      it accepts, weft__mp_canon reproduces it byte for byte.
 *   4. Recursion depth is bounded by the depth limit (max_depth is capped at
 *      DEPTH_CAP = 64), so hostile nesting cannot exhaust the stack.
 *   5. weft__mp_read_array/map refuse a count larger than the bytes left
 *      (each element takes at least one byte), so a caller may size an
 *      allocation by the count they return.
 * Thread-safety: all functions are reentrant.
 */
#include <stdlib.h>

#include "crdt_int.h"

/* Stack bound for weft__mp_check / weft__mp_read_value callers asking for
 * more depth than any weft schema uses. */
#define DEPTH_CAP 64u

/* ---------------------------------------------------------------- writers */

static int put_head(weft__buf *b, uint8_t fix_base, unsigned fix_max, uint8_t c8, uint8_t c16,
                    uint8_t c32, uint64_t n)
{
    uint8_t h[9];
    size_t hl;
    if (n <= fix_max) {
        h[0] = (uint8_t)(fix_base | n);
        hl = 1;
    } else if (c8 != 0 && n <= 0xff) {
        h[0] = c8;
        h[1] = (uint8_t)n;
        hl = 2;
    } else if (n <= 0xffff) {
        h[0] = c16;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        hl = 3;
    } else {
        h[0] = c32;
        weft__be32_put(h + 1, (uint32_t)n);
        hl = 5;
    }
    return weft__buf_put(b, h, hl);
}

int weft__mp_put_array(weft__buf *b, uint32_t n)
{
    return put_head(b, 0x90, 15, 0, 0xdc, 0xdd, n);
}

int weft__mp_put_map(weft__buf *b, uint32_t n)
{
    return put_head(b, 0x80, 15, 0, 0xde, 0xdf, n);
}

int weft__mp_put_uint(weft__buf *b, uint64_t v)
{
    uint8_t h[9];
    size_t hl;
    if (v <= 0x7f) {
        h[0] = (uint8_t)v;
        hl = 1;
    } else if (v <= 0xff) {
        h[0] = 0xcc;
        h[1] = (uint8_t)v;
        hl = 2;
    } else if (v <= 0xffff) {
        h[0] = 0xcd;
        h[1] = (uint8_t)(v >> 8);
        h[2] = (uint8_t)v;
        hl = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = 0xce;
        weft__be32_put(h + 1, (uint32_t)v);
        hl = 5;
    } else {
        h[0] = 0xcf;
        weft__be64_put(h + 1, v);
        hl = 9;
    }
    return weft__buf_put(b, h, hl);
}

int weft__mp_put_int(weft__buf *b, int64_t v)
{
    if (v >= 0) {
        return weft__mp_put_uint(b, (uint64_t)v);
    }
    uint8_t h[9];
    size_t hl;
    uint64_t u = (uint64_t)v; /* two's complement bits, written big-endian */
    if (v >= -32) {
        h[0] = (uint8_t)u;
        hl = 1;
    } else if (v >= INT8_MIN) {
        h[0] = 0xd0;
        h[1] = (uint8_t)u;
        hl = 2;
    } else if (v >= INT16_MIN) {
        h[0] = 0xd1;
        h[1] = (uint8_t)(u >> 8);
        h[2] = (uint8_t)u;
        hl = 3;
    } else if (v >= INT32_MIN) {
        h[0] = 0xd2;
        weft__be32_put(h + 1, (uint32_t)u);
        hl = 5;
    } else {
        h[0] = 0xd3;
        weft__be64_put(h + 1, u);
        hl = 9;
    }
    return weft__buf_put(b, h, hl);
}

/* Header then bytes, reserved at once so a failure leaves the buffer as is. */
static int put_sized(weft__buf *b, int is_str, const void *s, size_t len)
{
    if (len > 0xffffffffu) {
        return weft__err(WEFT_ELIMIT, "%s of %zu bytes cannot be encoded", is_str ? "str" : "bin",
                         len);
    }
    int rc = weft__buf_reserve(b, len + 5);
    if (rc != 0) {
        return rc;
    }
    if (is_str) {
        rc = put_head(b, 0xa0, 31, 0xd9, 0xda, 0xdb, len);
    } else {
        /* bin has no fix form: lengths 0..255 take bin8, even 0 (c4 00). */
        uint8_t h[2] = {0xc4, 0};
        rc = len <= 0xff ? (h[1] = (uint8_t)len, weft__buf_put(b, h, 2))
                         : put_head(b, 0, 0, 0, 0xc5, 0xc6, len);
    }
    return rc != 0 ? rc : weft__buf_put(b, s, len);
}

int weft__mp_put_str(weft__buf *b, const void *s, size_t len)
{
    return put_sized(b, 1, s, len);
}

int weft__mp_put_bin(weft__buf *b, const void *p, size_t len)
{
    return put_sized(b, 0, p, len);
}

int weft__mp_put_nil(weft__buf *b)
{
    return weft__buf_put(b, "\xc0", 1);
}

int weft__mp_put_bool(weft__buf *b, bool v)
{
    return weft__buf_put(b, v ? "\xc3" : "\xc2", 1);
}

int weft__mp_put_f64(weft__buf *b, double v)
{
    uint8_t h[9];
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    h[0] = 0xcb;
    weft__be64_put(h + 1, bits);
    return weft__buf_put(b, h, sizeof h);
}

/* ---------------------------------------------------------------- UTF-8 */

bool weft__utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* Fast path: eight ASCII bytes at a time. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) {
                lo = 0xa0; /* overlong */
            } else if (c == 0xed) {
                hi = 0x9f; /* surrogates */
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) {
                lo = 0x90; /* overlong */
            } else if (c == 0xf4) {
                hi = 0x8f; /* > U+10FFFF */
            }
        } else {
            return false; /* continuation byte, C0/C1 overlong, F5..FF */
        }
        if (len - i <= n) {
            return false;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return false;
        }
        for (size_t k = 2; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += n + 1;
    }
    return true;
}

/* ---------------------------------------------------------------- headers */

enum {
    T_NIL,
    T_BOOL,
    T_UINT, /* any non-negative integer, whatever its family */
    T_NINT, /* a negative integer */
    T_F32,
    T_F64,
    T_STR,
    T_BIN,
    T_ARR,
    T_MAP,
    T_EXT,
    T_BAD, /* 0xc1, never used */
};

typedef struct head {
    int type;
    bool canon;  /* the shortest header for this value */
    unsigned hl; /* header bytes */
    uint64_t n;  /* T_UINT value; str/bin/ext byte length; array/map count */
    int64_t i;   /* T_NINT value */
} head;

/* Header length by first byte for the 0xc0..0xdf range (0 = fix or n/a). */
/* clang-format off */
static const uint8_t hlen_c0[32] = {
    1, 1, 1, 1, 2, 3, 5, 3, 4, 6, 5, 9, 2, 3, 5, 9, /* c0..cf */
    2, 3, 5, 9, 2, 2, 2, 2, 2, 2, 3, 5, 3, 5, 3, 5, /* d0..df */
};
/* clang-format on */

/* Parse the header at p (avail bytes there). 0, or -1 when the header itself
 * is truncated. Does not check that the payload is present. */
static int parse_head(const uint8_t *p, size_t avail, head *h)
{
    if (avail == 0) {
        return -1;
    }
    uint8_t c = p[0];
    h->canon = true;
    h->n = 0;
    h->i = 0;
    if (c <= 0x7f) {
        h->type = T_UINT;
        h->hl = 1;
        h->n = c;
        return 0;
    }
    if (c >= 0xe0) {
        h->type = T_NINT;
        h->hl = 1;
        h->i = (int64_t)c - 256;
        return 0;
    }
    if (c <= 0x8f) {
        h->type = T_MAP;
        h->hl = 1;
        h->n = c & 0x0fu;
        return 0;
    }
    if (c <= 0x9f) {
        h->type = T_ARR;
        h->hl = 1;
        h->n = c & 0x0fu;
        return 0;
    }
    if (c <= 0xbf) {
        h->type = T_STR;
        h->hl = 1;
        h->n = c & 0x1fu;
        return 0;
    }
    h->hl = hlen_c0[c - 0xc0];
    if (avail < h->hl) {
        return -1;
    }
    const uint8_t *q = p + 1;
    uint64_t v = 0;
    switch (c) {
    case 0xc0:
        h->type = T_NIL;
        return 0;
    case 0xc1:
        h->type = T_BAD;
        return 0;
    case 0xc2:
    case 0xc3:
        h->type = T_BOOL;
        return 0;
    case 0xc4: /* bin8/16/32 */
    case 0xc5:
    case 0xc6:
        h->type = T_BIN;
        v = c == 0xc4 ? q[0] : c == 0xc5 ? ((uint64_t)q[0] << 8 | q[1]) : weft__be32_get(q);
        h->n = v;
        h->canon = c == 0xc4 || (c == 0xc5 ? v > 0xff : v > 0xffff);
        return 0;
    case 0xc7: /* ext8/16/32 */
    case 0xc8:
    case 0xc9:
        h->type = T_EXT;
        h->n = c == 0xc7 ? q[0] : c == 0xc8 ? ((uint64_t)q[0] << 8 | q[1]) : weft__be32_get(q);
        return 0;
    case 0xca:
        h->type = T_F32;
        h->canon = false;
        return 0;
    case 0xcb:
        h->type = T_F64;
        return 0;
    case 0xcc:
        h->type = T_UINT;
        h->n = q[0];
        h->canon = h->n > 0x7f;
        return 0;
    case 0xcd:
        h->type = T_UINT;
        h->n = (uint64_t)q[0] << 8 | q[1];
        h->canon = h->n > 0xff;
        return 0;
    case 0xce:
        h->type = T_UINT;
        h->n = weft__be32_get(q);
        h->canon = h->n > 0xffff;
        return 0;
    case 0xcf:
        h->type = T_UINT;
        h->n = weft__be64_get(q);
        h->canon = h->n > 0xffffffffu;
        return 0;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        int64_t s;
        if (c == 0xd0) {
            s = (int8_t)q[0];
        } else if (c == 0xd1) {
            s = (int16_t)(uint16_t)((unsigned)q[0] << 8 | q[1]);
        } else if (c == 0xd2) {
            s = (int32_t)weft__be32_get(q);
        } else {
            uint64_t u = weft__be64_get(q);
            s = u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
        }
        if (s >= 0) {
            h->type = T_UINT; /* signed family holding a non-negative value */
            h->n = (uint64_t)s;
            h->canon = false;
            return 0;
        }
        h->type = T_NINT;
        h->i = s;
        h->canon = c == 0xd0   ? s < -32
                   : c == 0xd1 ? s < INT8_MIN
                   : c == 0xd2 ? s < INT16_MIN
                               : s < INT32_MIN;
        return 0;
    }
    case 0xd4: /* fixext 1/2/4/8/16 */
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->type = T_EXT;
        h->n = 1u << (c - 0xd4);
        return 0;
    case 0xd9:
    case 0xda:
    case 0xdb:
        h->type = T_STR;
        h->n = c == 0xd9 ? q[0] : c == 0xda ? ((uint64_t)q[0] << 8 | q[1]) : weft__be32_get(q);
        h->canon = c == 0xd9 ? h->n > 31 : c == 0xda ? h->n > 0xff : h->n > 0xffff;
        return 0;
    case 0xdc:
    case 0xdd:
        h->type = T_ARR;
        h->n = c == 0xdc ? ((uint64_t)q[0] << 8 | q[1]) : weft__be32_get(q);
        h->canon = c == 0xdc ? h->n > 15 : h->n > 0xffff;
        return 0;
    default: /* 0xde, 0xdf */
        h->type = T_MAP;
        h->n = c == 0xde ? ((uint64_t)q[0] << 8 | q[1]) : weft__be32_get(q);
        h->canon = c == 0xde ? h->n > 15 : h->n > 0xffff;
        return 0;
    }
}

static int bytes_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* ---------------------------------------------------------------- strict check */

typedef struct cursor {
    const uint8_t *base, *p, *end;
} cursor;

static size_t off(const cursor *c)
{
    return (size_t)(c->p - c->base);
}

static int check_obj(cursor *c, unsigned depth_left)
{
    head h;
    size_t avail = (size_t)(c->end - c->p);
    if (parse_head(c->p, avail, &h) != 0) {
        return weft__err(WEFT_ECORRUPT, "msgpack truncated at byte %zu", off(c));
    }
    if (!h.canon) {
        return weft__err(WEFT_ECORRUPT, "non-canonical msgpack (0x%02x) at byte %zu", c->p[0],
                         off(c));
    }
    avail -= h.hl;
    switch (h.type) {
    case T_NIL:
    case T_BOOL:
    case T_UINT:
    case T_NINT:
        c->p += h.hl;
        return 0;
    case T_F64:
        c->p += h.hl;
        return 0;
    case T_STR:
    case T_BIN:
        if (h.n > avail) {
            return weft__err(WEFT_ECORRUPT, "msgpack %s at byte %zu claims %llu bytes, %zu left",
                             h.type == T_STR ? "str" : "bin", off(c), (unsigned long long)h.n,
                             avail);
        }
        if (h.type == T_STR && !weft__utf8_valid(c->p + h.hl, (size_t)h.n)) {
            return weft__err(WEFT_ECORRUPT, "msgpack str at byte %zu is not valid UTF-8", off(c));
        }
        c->p += h.hl + h.n;
        return 0;
    case T_ARR:
    case T_MAP: {
        bool map = h.type == T_MAP;
        if (depth_left == 0) {
            return weft__err(WEFT_ELIMIT, "msgpack nested too deep at byte %zu", off(c));
        }
        if (h.n > (map ? avail / 2 : avail)) {
            return weft__err(WEFT_ECORRUPT,
                             "msgpack %s at byte %zu claims %llu entries, %zu bytes left",
                             map ? "map" : "array", off(c), (unsigned long long)h.n, avail);
        }
        c->p += h.hl;
        const uint8_t *pk = NULL;
        size_t pklen = 0;
        for (uint64_t k = 0; k < h.n; k++) {
            const uint8_t *key = c->p;
            int rc = check_obj(c, depth_left - 1);
            if (rc != 0) {
                return rc;
            }
            if (map) {
                size_t klen = (size_t)(c->p - key);
                if (pk != NULL && bytes_cmp(pk, pklen, key, klen) >= 0) {
                    return weft__err(WEFT_ECORRUPT,
                                     "msgpack map key at byte %zu is not in canonical order "
                                     "(or repeated)",
                                     (size_t)(key - c->base));
                }
                pk = key;
                pklen = klen;
                rc = check_obj(c, depth_left - 1);
                if (rc != 0) {
                    return rc;
                }
            }
        }
        return 0;
    }
    case T_F32:
    default:
        break;
    }
    return weft__err(WEFT_ECORRUPT, "msgpack type 0x%02x at byte %zu is not allowed", c->p[0],
                     off(c));
}

int weft__mp_check(const uint8_t *buf, size_t len, unsigned max_depth, size_t *used)
{
    cursor c = {buf, buf, buf + len};
    if (len == 0) {
        return weft__err(WEFT_ECORRUPT, "msgpack: no bytes");
    }
    int rc = check_obj(&c, max_depth > DEPTH_CAP ? DEPTH_CAP : max_depth);
    if (rc == 0 && used != NULL) {
        *used = (size_t)(c.p - buf);
    }
    return rc;
}

/* ---------------------------------------------------------------- canonicalise */

typedef struct kv { /* one map entry, re-encoded, as offsets into the output */
    size_t off, klen, len;
} kv;

/* Bottom-up merge sort of map entries by key bytes (stable; n log n). */
static void sort_kv(kv *a, kv *tmp, size_t n, const uint8_t *base)
{
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n;
            size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (bytes_cmp(base + a[j].off, a[j].klen, base + a[i].off, a[i].klen) < 0) {
                    tmp[k++] = a[j++];
                } else {
                    tmp[k++] = a[i++];
                }
            }
            while (i < mid) {
                tmp[k++] = a[i++];
            }
            while (j < hi) {
                tmp[k++] = a[j++];
            }
        }
        memcpy(a, tmp, n * sizeof *a);
    }
}

static int canon_obj(cursor *c, weft__buf *out, unsigned depth_left);

static int canon_map(cursor *c, weft__buf *out, uint64_t n, unsigned depth_left)
{
    int rc = weft__mp_put_map(out, (uint32_t)n);
    if (rc != 0 || n == 0) {
        return rc;
    }
    kv *ix = weft__malloc(2 * (size_t)n * sizeof *ix);
    if (ix == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory sorting a map of %llu entries",
                         (unsigned long long)n);
    }
    size_t start = out->len;
    bool sorted = true;
    for (size_t k = 0; k < n && rc == 0; k++) {
        ix[k].off = out->len;
        rc = canon_obj(c, out, depth_left - 1);
        if (rc == 0) {
            ix[k].klen = out->len - ix[k].off;
            rc = canon_obj(c, out, depth_left - 1);
            ix[k].len = out->len - ix[k].off;
        }
        if (rc == 0 && k > 0 &&
            bytes_cmp(out->ptr + ix[k - 1].off, ix[k - 1].klen, out->ptr + ix[k].off, ix[k].klen) >=
                0) {
            sorted = false;
        }
    }
    if (rc == 0 && !sorted) {
        sort_kv(ix, ix + n, (size_t)n, out->ptr);
        for (size_t k = 1; k < n && rc == 0; k++) {
            if (bytes_cmp(out->ptr + ix[k - 1].off, ix[k - 1].klen, out->ptr + ix[k].off,
                          ix[k].klen) == 0) {
                rc = weft__err(WEFT_EINVAL, "duplicate map key in the map ending at byte %zu",
                               off(c));
            }
        }
        /* Rewrite the entries in key order, through a copy of the region. */
        size_t total = out->len - start;
        uint8_t *copy = rc == 0 ? weft__malloc(total) : NULL;
        if (rc == 0 && copy == NULL) {
            rc = weft__err(WEFT_ENOMEM, "out of memory sorting a map of %zu bytes", total);
        }
        if (rc == 0) {
            memcpy(copy, out->ptr + start, total);
            size_t w = start;
            for (size_t k = 0; k < n; k++) {
                memcpy(out->ptr + w, copy + (ix[k].off - start), ix[k].len);
                w += ix[k].len;
            }
            weft__free(copy);
        }
    }
    weft__free(ix);
    return rc;
}

static int canon_obj(cursor *c, weft__buf *out, unsigned depth_left)
{
    head h;
    size_t avail = (size_t)(c->end - c->p);
    if (parse_head(c->p, avail, &h) != 0) {
        return weft__err(WEFT_EINVAL, "msgpack truncated at byte %zu", off(c));
    }
    avail -= h.hl;
    const uint8_t *q = c->p + h.hl;
    switch (h.type) {
    case T_NIL:
    case T_BOOL:
        c->p += 1;
        return weft__buf_put(out, c->p - 1, 1);
    case T_UINT:
        c->p += h.hl;
        return weft__mp_put_uint(out, h.n);
    case T_NINT:
        c->p += h.hl;
        return weft__mp_put_int(out, h.i);
    case T_F32: {
        uint32_t bits = weft__be32_get(c->p + 1);
        float f;
        memcpy(&f, &bits, sizeof f);
        c->p += h.hl;
        return weft__mp_put_f64(out, (double)f);
    }
    case T_F64:
        c->p += h.hl;
        return weft__buf_put(out, c->p - 9, 9);
    case T_STR:
    case T_BIN:
        if (h.n > avail) {
            return weft__err(WEFT_EINVAL, "msgpack %s at byte %zu claims %llu bytes, %zu left",
                             h.type == T_STR ? "str" : "bin", off(c), (unsigned long long)h.n,
                             avail);
        }
        if (h.type == T_STR && !weft__utf8_valid(q, (size_t)h.n)) {
            return weft__err(WEFT_EINVAL, "msgpack str at byte %zu is not valid UTF-8", off(c));
        }
        c->p += h.hl + h.n;
        return h.type == T_STR ? weft__mp_put_str(out, q, (size_t)h.n)
                               : weft__mp_put_bin(out, q, (size_t)h.n);
    case T_ARR:
    case T_MAP: {
        bool map = h.type == T_MAP;
        if (depth_left == 0) {
            return weft__err(WEFT_ELIMIT, "msgpack nested deeper than %u at byte %zu",
                             WEFT_DEPTH_MAX, off(c));
        }
        if (h.n > (map ? avail / 2 : avail)) {
            return weft__err(WEFT_EINVAL,
                             "msgpack %s at byte %zu claims %llu entries, %zu bytes left",
                             map ? "map" : "array", off(c), (unsigned long long)h.n, avail);
        }
        c->p += h.hl;
        if (map) {
            return canon_map(c, out, h.n, depth_left);
        }
        int rc = weft__mp_put_array(out, (uint32_t)h.n);
        for (uint64_t k = 0; k < h.n && rc == 0; k++) {
            rc = canon_obj(c, out, depth_left - 1);
        }
        return rc;
    }
    case T_EXT:
        return weft__err(WEFT_EINVAL, "msgpack ext type at byte %zu is not supported", off(c));
    default:
        return weft__err(WEFT_EINVAL, "invalid msgpack byte 0xc1 at byte %zu", off(c));
    }
}

int weft__mp_canon(const uint8_t *buf, size_t len, weft__buf *out)
{
    if (len > WEFT_VALUE_MAX) {
        return weft__err(WEFT_ELIMIT, "value of %zu bytes, the limit is %u", len, WEFT_VALUE_MAX);
    }
    if (len == 0) {
        return weft__err(WEFT_EINVAL, "empty value: msgpack needs at least one byte");
    }
    size_t start = out->len;
    cursor c = {buf, buf, buf + len};
    int rc = canon_obj(&c, out, WEFT_DEPTH_MAX);
    if (rc == 0 && c.p != c.end) {
        rc = weft__err(WEFT_EINVAL, "trailing bytes after the msgpack value at byte %zu", off(&c));
    }
    if (rc == 0 && out->len - start > WEFT_VALUE_MAX) {
        rc = weft__err(WEFT_ELIMIT, "value is %zu bytes in canonical form, the limit is %u",
                       out->len - start, WEFT_VALUE_MAX);
    }
    if (rc != 0) {
        out->len = start;
    }
    return rc;
}

/* ---------------------------------------------------------------- readers */

/* Parse a canonical header of @p type at r->p, payload bounds-checked for
 * str/bin and count-checked for array/map. Does not advance. */
static int read_head(const weft__mp_reader *r, int type, head *h)
{
    size_t avail = (size_t)(r->end - r->p);
    if (parse_head(r->p, avail, h) != 0) {
        return weft__err(WEFT_ECORRUPT, "msgpack truncated (%zu bytes left)", avail);
    }
    if (h->type != type || !h->canon) {
        return weft__err(WEFT_ECORRUPT, "unexpected msgpack byte 0x%02x (%zu bytes before the end)",
                         r->p[0], avail);
    }
    avail -= h->hl;
    uint64_t lim = type == T_MAP ? avail / 2 : avail;
    if ((type == T_STR || type == T_BIN || type == T_ARR || type == T_MAP) && h->n > lim) {
        return weft__err(WEFT_ECORRUPT, "msgpack length %llu exceeds the %zu bytes left",
                         (unsigned long long)h->n, avail);
    }
    return 0;
}

int weft__mp_read_array(weft__mp_reader *r, uint32_t *n)
{
    head h;
    int rc = read_head(r, T_ARR, &h);
    if (rc == 0) {
        r->p += h.hl;
        *n = (uint32_t)h.n;
    }
    return rc;
}

int weft__mp_read_map(weft__mp_reader *r, uint32_t *n)
{
    head h;
    int rc = read_head(r, T_MAP, &h);
    if (rc == 0) {
        r->p += h.hl;
        *n = (uint32_t)h.n;
    }
    return rc;
}

int weft__mp_read_uint(weft__mp_reader *r, uint64_t *v)
{
    head h;
    int rc = read_head(r, T_UINT, &h);
    if (rc == 0) {
        r->p += h.hl;
        *v = h.n;
    }
    return rc;
}

int weft__mp_read_int(weft__mp_reader *r, int64_t *v)
{
    head h;
    size_t avail = (size_t)(r->end - r->p);
    if (parse_head(r->p, avail, &h) != 0) {
        return weft__err(WEFT_ECORRUPT, "msgpack int truncated (%zu bytes left)", avail);
    }
    if (!h.canon || (h.type != T_UINT && h.type != T_NINT) ||
        (h.type == T_UINT && h.n > (uint64_t)INT64_MAX)) {
        return weft__err(WEFT_ECORRUPT, "expected a canonical int64, got 0x%02x", r->p[0]);
    }
    r->p += h.hl;
    *v = h.type == T_UINT ? (int64_t)h.n : h.i;
    return 0;
}

int weft__mp_read_str(weft__mp_reader *r, const uint8_t **s, uint32_t *len)
{
    head h;
    int rc = read_head(r, T_STR, &h);
    if (rc != 0) {
        return rc;
    }
    if (!weft__utf8_valid(r->p + h.hl, (size_t)h.n)) {
        return weft__err(WEFT_ECORRUPT, "msgpack str is not valid UTF-8");
    }
    *s = r->p + h.hl;
    *len = (uint32_t)h.n;
    r->p += h.hl + h.n;
    return 0;
}

int weft__mp_read_bin(weft__mp_reader *r, const uint8_t **b, uint32_t *len)
{
    head h;
    int rc = read_head(r, T_BIN, &h);
    if (rc == 0) {
        *b = r->p + h.hl;
        *len = (uint32_t)h.n;
        r->p += h.hl + h.n;
    }
    return rc;
}

int weft__mp_read_value(weft__mp_reader *r, unsigned max_depth, weft_bytes *v)
{
    size_t used = 0;
    int rc = weft__mp_check(r->p, (size_t)(r->end - r->p), max_depth, &used);
    if (rc == 0) {
        v->ptr = r->p;
        v->len = used;
        r->p += used;
    }
    return rc;
}
