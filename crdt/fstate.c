/* fstate.c - the state of one field and the merge rules that apply ops to it.
 *
 * A field state holds up to three sections: register heads (id, value), a
 * counter summary (sum, count, newest id of the increments, which are rows
 * kept by the caller: see "Counters" in crdt_int.h) and set elements (value,
 * add ids). The store keeps one record per field, decodes it, applies ops,
 * prunes it when the entity's tombstone rises, and writes it back; readers
 * decode it and ask for the visible value. Merge rules are in crdt_int.h
 * (weft__fstate_apply).
 *
 * Stored record (canonical msgpack; ids are 16 bytes, big-endian hlc then
 * device). The empty state is zero bytes: the store deletes the record.
 * Otherwise:
 *
 *   9k                     fixarray, k = 1..3: the index of the last
 *                          non-empty section plus one (trailing empty
 *                          sections are left out, so a register field is
 *                          [heads] and a counter field is [90, counter])
 *   [0] heads    90                    no heads
 *                or array(1 + n), n >= 1:
 *                   bin(16 n)          the n head ids, strictly ascending
 *                   value_1 .. value_n the values, in id order: canonical
 *                                      msgpack, nesting <= WEFT_DEPTH_MAX
 *   [1] counter  bin(32):              the summary of n >= 1 increment rows
 *                   sum(8)             sum of their deltas modulo 2^64, BE
 *                   count(8)           n, BE, >= 1
 *                   newest(16)         the greatest row id
 *                or bin(0) (c4 00):    no counter (only when k == 3)
 *   [2] elems    array(2 m), m >= 1:   m elements, strictly ascending by
 *                   value_i            value bytes (memcmp, shorter first)
 *                   bin(16 a_i), a_i >= 1  the ids of the adds keeping the
 *                                      element, strictly ascending
 *
 * array(x) and bin(x) use the shortest header (90+x / dc / dd; c4 / c5 / c6).
 * Examples (pinned as golden vectors in tests/crdt/test_codec.c):
 *   register, one head holding 5   91 92 c4 10 <id> 05            21 bytes
 *   counter (any number of incs)   92 90 c4 20 <sum> <n> <id>     36 bytes
 *   set, element "a" added once    93 90 c4 00 92 a1 61 c4 10 <id> 25 bytes
 * Overhead per field is 5 bytes plus 16 per head / 34 for a counter / 16 per
 * add, plus the values. Decoding checks every byte (canonical values,
 * UTF-8, order) and allocates nothing when the state's arrays are warm.
 *
 * Why this layout: ids in one bin per section (not one bin per id) keep the
 * per-item overhead at the id itself and let the decoder check order with
 * memcmp; the counter section is fixed-width so it needs no msgpack parsing
 * at all; omitting trailing empty sections makes the common one-kind field
 * cost nothing for the kinds it does not use. The counter section is a
 * fixed-size summary, not the increments (earlier layouts kept every
 * (id, delta) here, so each increment decoded and rewrote all the earlier
 * ones: O(n) per increment, and records big enough for LMDB overflow pages).
 *
 * Invariants:
 *   1. heads and each element's adds are strictly ascending by id; elems
 *      strictly ascending by value bytes; every element has >= 1 add; a
 *      counter summary with count 0 is all zero.
 *   2. One state has one encoding; weft__fstate_decode accepts only that
 *      encoding (it rejects anything else as WEFT_ECORRUPT), so decode then
 *      encode reproduces a record byte for byte.
 *   3. Every elems slot below elems_cap is initialised ({NULL, 0, 0} or an
 *      owned adds array): slots past nelems keep their adds arrays so that
 *      decoding into a reused state does not allocate per element.
 *   4. A failing apply leaves the state unchanged (all growth happens before
 *      the first change).
 * Thread-safety: one thread at a time per state; functions are reentrant.
 */
#include <assert.h>

#include "crdt_int.h"

#define CTR_BYTES (8u + 8u + WEFT__ID_BYTES) /* sum | count | newest */

/* ---------------------------------------------------------------- helpers */

static inline int id_cmp(weft_id a, weft_id b)
{
    if (a.hlc != b.hlc) {
        return a.hlc < b.hlc ? -1 : 1;
    }
    return a.device < b.device ? -1 : a.device > b.device ? 1 : 0;
}

static inline bool id_le(weft_id a, weft_id b)
{
    return id_cmp(a, b) <= 0;
}

static int bytes_cmp(weft_bytes a, weft_bytes b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (c != 0) {
        return c;
    }
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

/* Grow *arr (elements of @p size) to hold at least @p need. Zeroes new
 * slots. 0 or WEFT_ENOMEM, *arr unchanged on failure. */
static int grow(void **arr, uint32_t *cap, uint64_t need, size_t size)
{
    if (need <= *cap) {
        return 0;
    }
    if (need > UINT32_MAX / 2) {
        return weft__err(WEFT_ENOMEM, "field state of %llu items", (unsigned long long)need);
    }
    uint32_t ncap = *cap ? *cap : 4;
    while (ncap < need) {
        ncap *= 2;
    }
    uint8_t *p = weft__realloc(*arr, (size_t)ncap * size);
    if (p == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory growing a field state to %u items", ncap);
    }
    memset(p + (size_t)*cap * size, 0, (size_t)(ncap - *cap) * size);
    *arr = p;
    *cap = ncap;
    return 0;
}

/* Index of the first head with id >= @p id. */
static uint32_t head_pos(const weft__fstate *st, weft_id id)
{
    uint32_t lo = 0, hi = st->nheads;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (id_cmp(st->heads[mid].id, id) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static uint32_t elem_pos(const weft__fstate *st, weft_bytes v)
{
    uint32_t lo = 0, hi = st->nelems;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (bytes_cmp(st->elems[mid].value, v) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static uint32_t add_pos(const weft__elem *e, weft_id id)
{
    uint32_t lo = 0, hi = e->nadds;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (id_cmp(e->adds[mid], id) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Remove element @p i, keeping its adds array as a spare slot at the end. */
static void elem_remove(weft__fstate *st, uint32_t i)
{
    weft__elem gone = st->elems[i];
    memmove(st->elems + i, st->elems + i + 1, (size_t)(st->nelems - i - 1) * sizeof *st->elems);
    st->nelems--;
    gone.nadds = 0;
    gone.value.ptr = NULL;
    gone.value.len = 0;
    st->elems[st->nelems] = gone;
}

#ifndef NDEBUG
/* Invariants 1 and 3, for assert() in debug builds. */
static bool state_ok(const weft__fstate *st)
{
    for (uint32_t i = 1; i < st->nheads; i++) {
        if (id_cmp(st->heads[i - 1].id, st->heads[i].id) >= 0) {
            return false;
        }
    }
    if (st->ctr.count == 0 &&
        (st->ctr.sum != 0 || st->ctr.newest.hlc != 0 || st->ctr.newest.device != 0)) {
        return false;
    }
    for (uint32_t i = 0; i < st->elems_cap; i++) {
        const weft__elem *e = &st->elems[i];
        if (e->nadds > e->cap || (e->cap > 0 && e->adds == NULL)) {
            return false;
        }
        if (i >= st->nelems) {
            continue;
        }
        if (e->nadds == 0 || (i > 0 && bytes_cmp(st->elems[i - 1].value, e->value) >= 0)) {
            return false;
        }
        for (uint32_t j = 1; j < e->nadds; j++) {
            if (id_cmp(e->adds[j - 1], e->adds[j]) >= 0) {
                return false;
            }
        }
    }
    return st->nheads <= st->heads_cap && st->nelems <= st->elems_cap;
}
#endif

/* ---------------------------------------------------------------- lifetime */

void weft__fstate_init(weft__fstate *st)
{
    memset(st, 0, sizeof *st);
}

void weft__fstate_free(weft__fstate *st)
{
    for (uint32_t i = 0; i < st->elems_cap; i++) {
        weft__free(st->elems[i].adds);
    }
    weft__free(st->elems);
    weft__free(st->heads);
    weft__fstate_init(st);
}

bool weft__fstate_empty(const weft__fstate *st)
{
    return st->nheads == 0 && st->ctr.count == 0 && st->nelems == 0;
}

static void clear(weft__fstate *st)
{
    st->nheads = 0;
    memset(&st->ctr, 0, sizeof st->ctr);
    for (uint32_t i = 0; i < st->nelems; i++) {
        st->elems[i].nadds = 0;
    }
    st->nelems = 0;
}

/* ---------------------------------------------------------------- decode */

static int corrupt(const char *what, const uint8_t *at, const uint8_t *base)
{
    return weft__err(WEFT_ECORRUPT, "field state record: %s at byte %zu", what,
                     (size_t)(at - base));
}

/* n ids from a bin of 16 n bytes, strictly ascending. */
static int ids_ascending(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        if (memcmp(p + (i - 1) * WEFT__ID_BYTES, p + i * WEFT__ID_BYTES, WEFT__ID_BYTES) >= 0) {
            return 0;
        }
    }
    return 1;
}

static int decode(const uint8_t *buf, size_t len, weft__fstate *st)
{
    weft__mp_reader r = {buf, buf + len};
    uint32_t k, n;
    const uint8_t *b;
    uint32_t blen;
    int rc = weft__mp_read_array(&r, &k);
    if (rc != 0) {
        return rc;
    }
    if (k < 1 || k > 3) {
        return corrupt("record is not an array of 1..3 sections", buf, buf);
    }

    /* [0] heads */
    const uint8_t *at = r.p;
    if ((rc = weft__mp_read_array(&r, &n)) != 0) {
        return rc;
    }
    if (n == 1 || (n == 0 && k == 1)) {
        return corrupt("malformed heads section", at, buf);
    }
    if (n > 0) {
        uint32_t nh = n - 1;
        at = r.p;
        if ((rc = weft__mp_read_bin(&r, &b, &blen)) != 0) {
            return rc;
        }
        if (blen != (uint64_t)nh * WEFT__ID_BYTES || !ids_ascending(b, nh)) {
            return corrupt("head ids do not match the heads", at, buf);
        }
        if ((rc = grow((void **)&st->heads, &st->heads_cap, nh, sizeof *st->heads)) != 0) {
            return rc;
        }
        for (uint32_t i = 0; i < nh; i++) {
            st->heads[i].id = weft__id_get(b + i * WEFT__ID_BYTES);
            if ((rc = weft__mp_read_value(&r, WEFT_DEPTH_MAX, &st->heads[i].value)) != 0) {
                return rc;
            }
        }
        st->nheads = nh;
    }

    /* [1] counter summary */
    if (k >= 2) {
        at = r.p;
        if ((rc = weft__mp_read_bin(&r, &b, &blen)) != 0) {
            return rc;
        }
        if (blen == 0 ? k == 2 : blen != CTR_BYTES || weft__be64_get(b + 8) == 0) {
            return corrupt("malformed counter section", at, buf);
        }
        if (blen > 0) {
            st->ctr.sum = weft__be64_get(b);
            st->ctr.count = weft__be64_get(b + 8);
            st->ctr.newest = weft__id_get(b + 16);
        }
    }

    /* [2] set elements */
    if (k == 3) {
        at = r.p;
        if ((rc = weft__mp_read_array(&r, &n)) != 0) {
            return rc;
        }
        if (n == 0 || n % 2 != 0) {
            return corrupt("malformed elements section", at, buf);
        }
        uint32_t ne = n / 2;
        if ((rc = grow((void **)&st->elems, &st->elems_cap, ne, sizeof *st->elems)) != 0) {
            return rc;
        }
        for (uint32_t i = 0; i < ne; i++) {
            weft__elem *e = &st->elems[i];
            at = r.p;
            if ((rc = weft__mp_read_value(&r, WEFT_DEPTH_MAX, &e->value)) != 0) {
                return rc;
            }
            if (i > 0 && bytes_cmp(st->elems[i - 1].value, e->value) >= 0) {
                return corrupt("elements not ascending", at, buf);
            }
            at = r.p;
            if ((rc = weft__mp_read_bin(&r, &b, &blen)) != 0) {
                return rc;
            }
            uint32_t na = blen / WEFT__ID_BYTES;
            if (blen % WEFT__ID_BYTES != 0 || na == 0 || !ids_ascending(b, na)) {
                return corrupt("malformed element add ids", at, buf);
            }
            if ((rc = grow((void **)&e->adds, &e->cap, na, sizeof *e->adds)) != 0) {
                return rc;
            }
            for (uint32_t j = 0; j < na; j++) {
                e->adds[j] = weft__id_get(b + (size_t)j * WEFT__ID_BYTES);
            }
            e->nadds = na;
            st->nelems = i + 1;
        }
    }
    if (r.p != r.end) {
        return corrupt("trailing bytes", r.p, buf);
    }
    return 0;
}

int weft__fstate_decode(const uint8_t *buf, size_t len, weft__fstate *st)
{
    clear(st);
    if (len == 0) {
        return 0;
    }
    int rc = decode(buf, len, st);
    if (rc != 0) {
        clear(st);
    }
    assert(state_ok(st));
    return rc;
}

/* ---------------------------------------------------------------- encode */

static size_t bin_head_len(size_t n)
{
    return n <= 0xff ? 2 : n <= 0xffff ? 3 : 5;
}

static size_t arr_head_len(size_t n)
{
    return n <= 15 ? 1 : n <= 0xffff ? 3 : 5;
}

/* Write a bin header for @p n bytes into reserved space. */
static void put_bin_head(weft__buf *out, size_t n)
{
    uint8_t *p = out->ptr + out->len;
    if (n <= 0xff) {
        p[0] = 0xc4;
        p[1] = (uint8_t)n;
        out->len += 2;
    } else if (n <= 0xffff) {
        p[0] = 0xc5;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        out->len += 3;
    } else {
        p[0] = 0xc6;
        weft__be32_put(p + 1, (uint32_t)n);
        out->len += 5;
    }
}

static void put_id(weft__buf *out, weft_id id)
{
    weft__id_put(out->ptr + out->len, id);
    out->len += WEFT__ID_BYTES;
}

int weft__fstate_encode(const weft__fstate *st, weft__buf *out)
{
    if (weft__fstate_empty(st)) {
        return 0;
    }
    unsigned k = st->nelems ? 3 : st->ctr.count ? 2 : 1;
    /* Exact size first: one reservation, then writes that cannot fail. */
    size_t size = 1;
    size_t hb = (size_t)st->nheads * WEFT__ID_BYTES;
    size += st->nheads ? arr_head_len(1 + (size_t)st->nheads) + bin_head_len(hb) + hb : 1;
    for (uint32_t i = 0; i < st->nheads; i++) {
        size += st->heads[i].value.len;
    }
    size_t eb = st->ctr.count ? CTR_BYTES : 0;
    if (k >= 2) {
        size += bin_head_len(eb) + eb;
    }
    if (k == 3) {
        size += arr_head_len(2 * (size_t)st->nelems);
        for (uint32_t i = 0; i < st->nelems; i++) {
            size_t ab = (size_t)st->elems[i].nadds * WEFT__ID_BYTES;
            size += st->elems[i].value.len + bin_head_len(ab) + ab;
        }
    }
    if (hb > UINT32_MAX || 2 * (size_t)st->nelems > UINT32_MAX) {
        return weft__err(WEFT_ELIMIT, "field state too large to encode");
    }
    int rc = weft__buf_reserve(out, size);
    if (rc != 0) {
        return rc;
    }
    (void)weft__mp_put_array(out, k);
    if (st->nheads == 0) {
        (void)weft__mp_put_array(out, 0);
    } else {
        (void)weft__mp_put_array(out, 1 + st->nheads);
        put_bin_head(out, hb);
        for (uint32_t i = 0; i < st->nheads; i++) {
            put_id(out, st->heads[i].id);
        }
        for (uint32_t i = 0; i < st->nheads; i++) {
            (void)weft__buf_put(out, st->heads[i].value.ptr, st->heads[i].value.len);
        }
    }
    if (k >= 2) {
        put_bin_head(out, eb);
        if (eb > 0) {
            weft__be64_put(out->ptr + out->len, st->ctr.sum);
            weft__be64_put(out->ptr + out->len + 8, st->ctr.count);
            out->len += 16;
            put_id(out, st->ctr.newest);
        }
    }
    if (k == 3) {
        (void)weft__mp_put_array(out, 2 * st->nelems);
        for (uint32_t i = 0; i < st->nelems; i++) {
            const weft__elem *e = &st->elems[i];
            (void)weft__buf_put(out, e->value.ptr, e->value.len);
            put_bin_head(out, (size_t)e->nadds * WEFT__ID_BYTES);
            for (uint32_t j = 0; j < e->nadds; j++) {
                put_id(out, e->adds[j]);
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- merge */

/* Is @p id among the nprev ascending ids of @p prev? (binary search) */
static bool prev_has(const uint8_t *prev, uint32_t nprev, weft_id id)
{
    uint32_t lo = 0, hi = nprev;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(weft__id_get(prev + (size_t)mid * WEFT__ID_BYTES), id);
        if (c == 0) {
            return true;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return false;
}

static int apply_set(weft__fstate *st, weft_id id, const weft__op *op)
{
    uint32_t pos = head_pos(st, id);
    if (pos < st->nheads && id_cmp(st->heads[pos].id, id) == 0) {
        return 0;
    }
    int rc = grow((void **)&st->heads, &st->heads_cap, (uint64_t)st->nheads + 1, sizeof *st->heads);
    if (rc != 0) {
        return rc;
    }
    uint32_t w = 0;
    for (uint32_t i = 0; i < st->nheads; i++) {
        if (op->nprev == 0 || !prev_has(op->prev, op->nprev, st->heads[i].id)) {
            st->heads[w++] = st->heads[i];
        }
    }
    st->nheads = w;
    pos = head_pos(st, id);
    memmove(st->heads + pos + 1, st->heads + pos, (size_t)(st->nheads - pos) * sizeof *st->heads);
    st->heads[pos].id = id;
    st->heads[pos].value = op->value;
    st->nheads++;
    return 1;
}

void weft__fstate_counter_add(weft__fstate *st, weft_id id, int64_t delta)
{
    st->ctr.sum += (uint64_t)delta;
    if (st->ctr.count == 0 || id_cmp(id, st->ctr.newest) > 0) {
        st->ctr.newest = id;
    }
    st->ctr.count++;
}

int weft__fstate_counter_sub(weft__fstate *st, int64_t delta)
{
    uint64_t sum = st->ctr.sum - (uint64_t)delta;
    if (st->ctr.count == 0 || (st->ctr.count == 1 && sum != 0)) {
        return weft__err(WEFT_ECORRUPT, "counter summary (%llu rows) disagrees with its rows",
                         (unsigned long long)st->ctr.count);
    }
    if (--st->ctr.count == 0) {
        memset(&st->ctr, 0, sizeof st->ctr);
    } else {
        st->ctr.sum = sum;
    }
    return 0;
}

static int apply_add(weft__fstate *st, weft_id id, const weft__op *op)
{
    uint32_t pos = elem_pos(st, op->value);
    int rc;
    if (pos < st->nelems && bytes_cmp(st->elems[pos].value, op->value) == 0) {
        weft__elem *e = &st->elems[pos];
        uint32_t ap = add_pos(e, id);
        if (ap < e->nadds && id_cmp(e->adds[ap], id) == 0) {
            return 0;
        }
        if ((rc = grow((void **)&e->adds, &e->cap, (uint64_t)e->nadds + 1, sizeof *e->adds)) != 0) {
            return rc;
        }
        memmove(e->adds + ap + 1, e->adds + ap, (size_t)(e->nadds - ap) * sizeof *e->adds);
        e->adds[ap] = id;
        e->nadds++;
        return 1;
    }
    rc = grow((void **)&st->elems, &st->elems_cap, (uint64_t)st->nelems + 1, sizeof *st->elems);
    if (rc != 0) {
        return rc;
    }
    weft__elem spare = st->elems[st->nelems]; /* keeps its adds array (invariant 3) */
    if ((rc = grow((void **)&spare.adds, &spare.cap, 1, sizeof *spare.adds)) != 0) {
        return rc;
    }
    memmove(st->elems + pos + 1, st->elems + pos, (size_t)(st->nelems - pos) * sizeof *st->elems);
    spare.value = op->value;
    spare.adds[0] = id;
    spare.nadds = 1;
    st->elems[pos] = spare;
    st->nelems++;
    return 1;
}

static int apply_rem(weft__fstate *st, const weft__op *op)
{
    uint32_t pos = elem_pos(st, op->value);
    if (pos >= st->nelems || bytes_cmp(st->elems[pos].value, op->value) != 0 || op->nprev == 0) {
        return 0;
    }
    weft__elem *e = &st->elems[pos];
    uint32_t w = 0;
    for (uint32_t i = 0; i < e->nadds; i++) {
        if (!prev_has(op->prev, op->nprev, e->adds[i])) {
            e->adds[w++] = e->adds[i];
        }
    }
    if (w == e->nadds) {
        return 0;
    }
    e->nadds = w;
    if (w == 0) {
        elem_remove(st, pos);
    }
    return 1;
}

int weft__fstate_apply(weft__fstate *st, weft_id id, const weft__op *op, weft_id tomb)
{
    bool valued = op->kind == WEFT__OP_SET || op->kind == WEFT__OP_ADD || op->kind == WEFT__OP_REM;
    if (op->kind == WEFT__OP_DEL || (unsigned)op->kind > WEFT__OP_REM ||
        (valued && op->value.len == 0) || (op->nprev > 0 && op->prev == NULL)) {
        return weft__err(WEFT_EINVAL, "cannot merge a %s op into a field state",
                         weft__op_kind_name(op->kind));
    }
    if (id_le(id, tomb)) {
        return 0; /* hidden by the entity's delete */
    }
    int rc;
    switch (op->kind) {
    case WEFT__OP_SET:
        rc = apply_set(st, id, op);
        break;
    case WEFT__OP_INC:
        weft__fstate_counter_add(st, id, op->delta);
        rc = 1;
        break;
    case WEFT__OP_ADD:
        rc = apply_add(st, id, op);
        break;
    default:
        rc = apply_rem(st, op);
        break;
    }
    assert(state_ok(st));
    return rc;
}

int weft__fstate_prune(weft__fstate *st, weft_id tomb)
{
    int changed = 0;
    uint32_t n = 0;
    while (n < st->nheads && id_le(st->heads[n].id, tomb)) {
        n++;
    }
    if (n > 0) {
        memmove(st->heads, st->heads + n, (size_t)(st->nheads - n) * sizeof *st->heads);
        st->nheads -= n;
        changed = 1;
    }
    uint32_t w = 0;
    for (uint32_t i = 0; i < st->nelems; i++) {
        weft__elem *e = &st->elems[i];
        n = 0;
        while (n < e->nadds && id_le(e->adds[n], tomb)) {
            n++;
        }
        if (n > 0) {
            memmove(e->adds, e->adds + n, (size_t)(e->nadds - n) * sizeof *e->adds);
            e->nadds -= n;
            changed = 1;
        }
        if (e->nadds > 0) {
            /* Swap rather than copy, so the dropped slots keep their arrays. */
            weft__elem t = st->elems[w];
            st->elems[w++] = *e;
            *e = t;
        }
    }
    for (uint32_t i = w; i < st->nelems; i++) {
        st->elems[i].nadds = 0;
        st->elems[i].value.ptr = NULL;
        st->elems[i].value.len = 0;
    }
    st->nelems = w;
    assert(state_ok(st));
    return changed;
}

/* ---------------------------------------------------------------- visible */

int weft__fstate_visible(const weft__fstate *st, weft__buf *scratch, weft__visible *out)
{
    weft__visible v;
    memset(&v, 0, sizeof v);
    bool have = false;
    if (st->nheads > 0) {
        v.kind = WEFT_KIND_REGISTER;
        v.id = st->heads[st->nheads - 1].id;
        have = true;
    }
    if (st->ctr.count > 0 && (!have || id_cmp(st->ctr.newest, v.id) > 0)) {
        v.kind = WEFT_KIND_COUNTER;
        v.id = st->ctr.newest;
        have = true;
    }
    for (uint32_t i = 0; i < st->nelems; i++) {
        weft_id last = st->elems[i].adds[st->elems[i].nadds - 1];
        if (!have || id_cmp(last, v.id) > 0) {
            v.kind = WEFT_KIND_SET;
            v.id = last;
            have = true;
        }
    }
    int rc = 0;
    size_t start = scratch->len;
    switch (v.kind) {
    case WEFT_KIND_REGISTER:
        v.value = st->heads[st->nheads - 1].value;
        v.heads = st->nheads;
        break;
    case WEFT_KIND_COUNTER: {
        uint64_t sum = st->ctr.sum;
        int64_t s = sum <= INT64_MAX ? (int64_t)sum : -(int64_t)(~sum) - 1;
        rc = weft__mp_put_int(scratch, s);
        break;
    }
    case WEFT_KIND_SET: {
        size_t size = 5;
        for (uint32_t i = 0; i < st->nelems; i++) {
            size += st->elems[i].value.len;
        }
        rc = weft__buf_reserve(scratch, size);
        if (rc == 0) {
            (void)weft__mp_put_array(scratch, st->nelems);
            for (uint32_t i = 0; i < st->nelems; i++) {
                (void)weft__buf_put(scratch, st->elems[i].value.ptr, st->elems[i].value.len);
            }
        }
        break;
    }
    default:
        break;
    }
    if (rc != 0) {
        return rc;
    }
    if (v.kind == WEFT_KIND_COUNTER || v.kind == WEFT_KIND_SET) {
        v.value.ptr = scratch->ptr + start;
        v.value.len = scratch->len - start;
    }
    *out = v;
    return 0;
}
