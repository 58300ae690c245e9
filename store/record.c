/* record.c - the `fields` record: a field state (crdt's weft__fstate codec)
 * whose large register values live only in the op log.
 *
 * A register head is the SET op that wrote it, and that op, value included,
 * is in `ops` for as long as the head exists. Copying a large value into
 * `fields` as well doubles its cost on disk, and every rewrite of the
 * record (each edit) moves it again. So a head whose value is longer than
 * WEFT__INLINE_MAX bytes is stored as a reference: its id alone, the value
 * being read from `ops` when someone asks for it.
 *
 * Record layout (one of two):
 *   plain   the weft__fstate record, unchanged; every head value is at most
 *           WEFT__INLINE_MAX bytes
 *   ref     c1 | the weft__fstate record with each ref head's value
 *           replaced by nil (c0) | bitmap of ceil(heads / 8) bytes: bit i
 *           (byte i / 8, bit i % 8, least significant first) is set iff
 *           head i (in id order) is a ref. The decoder learns the number of
 *           heads from the record's first two array headers, so the bitmap
 *           needs no length and the record no second pass. (Every byte
 *           counts: 3 more per ref record cost the notes benchmark 135
 *           pages of `fields`, because LMDB's page splits amplify it.)
 * 0xc1 is the one byte msgpack never uses, so the first byte tells the two
 * apart. A head is a ref iff its value is longer than WEFT__INLINE_MAX: a
 * function of the op set, so replicas holding the same ops still write
 * byte-identical records (architecture.md invariant 4). The decoder accepts
 * only that encoding: a plain record with a long head, a ref record with no
 * ref, a short value marked ref... are WEFT_ECORRUPT.
 *
 * In a decoded state a ref head's value is the view {weft__store_ref_nil, 1}
 * (a pointer no other view can have), so an encode after apply/prune keeps
 * it a ref without reading the op. weft__store_head_value() resolves it:
 * one lookup in `ops` and a full weft__op_decode of the payload (the check
 * an inline value gets from weft__fstate_decode).
 *
 * Invariants:
 *   1. A ref head's id names a SET op in `ops` whose value is longer than
 *      WEFT__INLINE_MAX (log compaction, when it comes, must keep every op
 *      that is a head).
 *   2. weft__store_rec_encode(weft__store_rec_decode(r)) == r.
 * Thread-safety: one thread at a time per txn.
 */
#include "store_int.h"

const uint8_t weft__store_ref_nil[1] = {0xc0};

static bool is_ref(const weft__head *h)
{
    return h->value.ptr == (const void *)weft__store_ref_nil;
}

bool weft__store_head_is_ref(const weft__head *h)
{
    return is_ref(h);
}

int weft__store_rec_decode(const uint8_t *buf, size_t len, weft__fstate *st)
{
    const uint8_t *bits = NULL;
    size_t nbits = 0;
    if (len > 0 && buf[0] == 0xc1) {
        /* [heads, ...] with heads = [bin(ids), v1..vn]: n from the headers. */
        weft__mp_reader r = {buf + 1, buf + len};
        uint32_t k, n;
        if (weft__mp_read_array(&r, &k) != 0 || k == 0 || weft__mp_read_array(&r, &n) != 0 ||
            n < 2 || (nbits = (n - 1 + 7u) / 8) > len - 1) {
            return weft__err(WEFT_ECORRUPT, "damaged ref record");
        }
        bits = buf + len - nbits;
        buf += 1;
        len -= 1 + nbits;
    }
    int rc = weft__fstate_decode(buf, len, st);
    if (rc != 0) {
        return rc;
    }
    if (bits != NULL && nbits != (st->nheads + 7u) / 8) {
        return weft__err(WEFT_ECORRUPT, "ref record bitmap of %zu bytes for %u heads", nbits,
                         st->nheads);
    }
    size_t nrefs = 0;
    for (uint32_t i = 0; i < st->nheads; i++) {
        weft__head *h = &st->heads[i];
        if (bits != NULL && bits[i / 8] >> (i % 8) & 1) {
            if (h->value.len != 1 || *(const uint8_t *)h->value.ptr != 0xc0) {
                return weft__err(WEFT_ECORRUPT, "ref head with a value");
            }
            h->value.ptr = weft__store_ref_nil;
            nrefs++;
        } else if (h->value.len > WEFT__INLINE_MAX) {
            return weft__err(WEFT_ECORRUPT, "long register value stored inline");
        }
    }
    if (bits != NULL &&
        (nrefs == 0 || (st->nheads % 8 != 0 && bits[nbits - 1] >> (st->nheads % 8) != 0))) {
        return weft__err(WEFT_ECORRUPT, "ref record bitmap names no head or a missing one");
    }
    return 0;
}

int weft__store_rec_encode(weft__fstate *st, weft__buf *out)
{
    uint32_t nrefs = 0;
    for (uint32_t i = 0; i < st->nheads; i++) {
        nrefs += is_ref(&st->heads[i]) || st->heads[i].value.len > WEFT__INLINE_MAX;
    }
    if (nrefs == 0) {
        return weft__fstate_encode(st, out);
    }
    size_t start = out->len, nbits = (st->nheads + 7u) / 8;
    /* Long values become ref marks in @p st itself (its callers encode it
     * last), then the state is encoded with nil for them. */
    for (uint32_t i = 0; i < st->nheads; i++) {
        weft__head *h = &st->heads[i];
        if (h->value.len > WEFT__INLINE_MAX) {
            h->value.ptr = weft__store_ref_nil;
            h->value.len = 1;
        }
    }
    int rc = weft__buf_put(out, "\xc1", 1);
    rc = rc ? rc : weft__fstate_encode(st, out);
    rc = rc ? rc : weft__buf_reserve(out, nbits);
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    memset(out->ptr + out->len, 0, nbits);
    for (uint32_t i = 0; i < st->nheads; i++) {
        if (is_ref(&st->heads[i])) {
            out->ptr[out->len + i / 8] |= (uint8_t)(1u << (i % 8));
        }
    }
    out->len += nbits;
    return 0;
}

int weft__store_head_value(weft_txn *t, const weft__head *h, weft_bytes *out)
{
    if (!is_ref(h)) {
        *out = h->value;
        return 0;
    }
    weft_bytes pl;
    int rc = weft__oplog_get(t, h->id, &pl);
    if (rc != 0) {
        return rc == WEFT_ENOTFOUND ? weft__err(WEFT_ECORRUPT, "register head not in the op log")
                                    : rc;
    }
    weft__op op;
    if (weft__op_decode(pl.ptr, pl.len, &op) != 0 || op.kind != WEFT__OP_SET ||
        op.value.len <= WEFT__INLINE_MAX) {
        return weft__err(WEFT_ECORRUPT, "register head names a damaged or wrong op");
    }
    *out = op.value;
    return 0;
}
