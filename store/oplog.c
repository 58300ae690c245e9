/* oplog.c - the op log in `ops`: blocks of consecutive ops of one device,
 * finding an op by id, appending a device's next op, the version vector and
 * op count derived from the log, and weft_ops_since().
 *
 * A device's chain only ever grows at its end (apply.c invariant 1), so the
 * log is stored as one run of blocks per device, each block a few of its
 * consecutive ops:
 *
 *   key   device 8 | hlc 8 of the block's first op (big-endian)
 *   value varint ord                  the first op's ordinal in its device's
 *                                     chain (0 for the device's first op)
 *         varint len, payload[len]    the first op (its hlc is the key's)
 *         { varint dhlc, varint len, payload[len] }*
 *                                     each next op: dhlc = its hlc minus the
 *                                     previous op's (> 0)
 *
 * varint: unsigned LEB128, 7 bits per byte, least significant group first,
 * at most 10 bytes. Example: ops 5 and 7 of device 9, payloads "ab" and "c",
 * the device's first two ops:
 *   key   00 00 00 00 00 00 00 09 | 00 00 00 00 00 00 00 05
 *   value 00 | 02 61 62 | 02 01 63
 *
 * An op is appended to its device's last block when the block stays within
 * WEFT__BLOCK_CAP bytes; otherwise it starts a new block (alone, if it is
 * bigger than the cap). Which ops share a block so depends only on the
 * device's chain, never on how ops were batched: replicas holding the same
 * ops hold the same bytes. A block costs LMDB one key and one node header
 * (26 bytes with its slot) where one op per key cost that for every op: on
 * the notes workload (docs/performance.md) the log is 1.6 MB smaller.
 *
 * Every reader of a block checks it (blk_open, blk_next): a varint that runs
 * off the value or over 64 bits, a length past the value's end, a dhlc of 0
 * or one that wraps, a key that is not 16 bytes or has hlc 0, or a block not
 * ending exactly at an op's end is WEFT_ECORRUPT; nothing is read outside
 * the value and nothing is allocated from what a block says.
 *
 * weft_ops_since() is a k-way merge over the runs of the devices the other
 * side lacks, so its cost is O(delta + devices), never a log scan, and it
 * streams in (hlc, device) order whatever the key order: a binary heap keyed
 * by (hlc, device) holds one position per device, each a parsed block; one
 * cursor on `ops` serves all of them and is repositioned (one search) only
 * when a device's block ends while the cursor sits elsewhere. An op's dprev
 * is the op before it in its device's run.
 *
 * Invariants:
 *   1. A device's blocks hold its chain in order, without gaps or overlaps:
 *      each block's first hlc is above the previous block's last, and its
 *      ord is the previous block's ord plus its op count.
 *   2. A block holding more than one op is at most WEFT__BLOCK_CAP bytes.
 *   3. The last op of a device's last block is its version vector entry,
 *      and its ordinal + 1 is the device's op count.
 * Thread-safety: one thread at a time per txn, like every txn function.
 */
#include "store_int.h"

/* ---- varints and blocks ---- */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Read a varint at *p (< end); false if it runs off the end or over 64 bits. */
static bool varint_get(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1) {
            return false;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* A parsed block, positioned on one of its ops. Views into the map. */
typedef struct blk {
    uint64_t device;
    uint64_t first; /* the block's key hlc */
    uint64_t hlc;   /* the current op's */
    uint64_t ord;   /* the current op's ordinal in its device's chain */
    weft_bytes pl;  /* the current op's payload */
    const uint8_t *p, *end;
} blk;

static bool opkey_ok(const MDB_val *k)
{
    return k->mv_size == WEFT__OPKEY_BYTES && weft__be64_get((const uint8_t *)k->mv_data + 8) != 0;
}

static uint64_t key_device(const MDB_val *k)
{
    return weft__be64_get(k->mv_data);
}

/* Is @p k a key of @p device's run? (blk_open checks the rest of it.) */
static bool key_in_run(const MDB_val *k, uint64_t device)
{
    return k->mv_size >= 8 && key_device(k) == device;
}

static int corrupt(const blk *b, const char *what)
{
    return weft__err(WEFT_ECORRUPT, "op log block %016llx.%016llx is damaged: %s",
                     (unsigned long long)b->first, (unsigned long long)b->device, what);
}

/* Read the payload at b->p into b->pl. */
static int blk_payload(blk *b)
{
    uint64_t len;
    if (!varint_get(&b->p, b->end, &len)) {
        return corrupt(b, "bad length");
    }
    if (len > (uint64_t)(b->end - b->p)) {
        return corrupt(b, "an op runs past the block");
    }
    b->pl.ptr = b->p;
    b->pl.len = (size_t)len;
    b->p += len;
    return 0;
}

/* Parse block (k, v) and position on its first op. */
static int blk_open(blk *b, const MDB_val *k, const MDB_val *v)
{
    memset(b, 0, sizeof *b);
    if (!opkey_ok(k)) {
        return weft__err(WEFT_ECORRUPT, "op log key of %zu bytes or hlc 0", k->mv_size);
    }
    b->device = key_device(k);
    b->first = b->hlc = weft__be64_get((const uint8_t *)k->mv_data + 8);
    b->p = v->mv_data;
    b->end = b->p + v->mv_size;
    if (!varint_get(&b->p, b->end, &b->ord)) {
        return corrupt(b, "bad ordinal");
    }
    return blk_payload(b);
}

/* Step to the block's next op: 1, 0 at its end, or WEFT_ECORRUPT. */
static int blk_next(blk *b)
{
    if (b->p == b->end) {
        return 0;
    }
    uint64_t d;
    if (!varint_get(&b->p, b->end, &d) || d == 0 || b->hlc > UINT64_MAX - d) {
        return corrupt(b, "bad hlc step");
    }
    b->hlc += d;
    b->ord++;
    int rc = blk_payload(b);
    return rc ? rc : 1;
}

/* Step to the block's last op. */
static int blk_last(blk *b)
{
    int rc;
    while ((rc = blk_next(b)) == 1) {
    }
    return rc;
}

/* ---- positioning ---- */

/* Position @p c on the block of @p device holding the greatest first hlc
 * <= @p hlc (MDB_NOTFOUND if none). */
static int block_at(MDB_cursor *c, uint64_t device, uint64_t hlc, MDB_val *k, MDB_val *v)
{
    uint8_t kb[WEFT__OPKEY_BYTES];
    weft__store_opkey_put(kb, (weft_id){hlc, device});
    k->mv_size = sizeof kb, k->mv_data = kb;
    int rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == 0 && opkey_ok(k) && key_device(k) == device &&
        weft__be64_get((const uint8_t *)k->mv_data + 8) == hlc) {
        return 0;
    }
    rc = rc == MDB_NOTFOUND ? mdb_cursor_get(c, k, v, MDB_LAST)
         : rc == 0          ? mdb_cursor_get(c, k, v, MDB_PREV)
                            : rc;
    if (rc == 0 && !key_in_run(k, device)) {
        return MDB_NOTFOUND;
    }
    return rc;
}

/* Position @p c on the last block of @p device's run (the greatest first
 * hlc <= UINT64_MAX) and parse it to its last op into @p b. 0,
 * WEFT_ENOTFOUND (no op of device), WEFT_ECORRUPT or a translated MDB error. */
static int run_end(MDB_cursor *c, uint64_t device, blk *b)
{
    MDB_val k, v;
    int rc = block_at(c, device, UINT64_MAX, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return WEFT_ENOTFOUND;
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading the op log");
    }
    rc = blk_open(b, &k, &v);
    return rc ? rc : blk_last(b);
}

/* Find op (device, hlc) with @p c: its block parsed up to it in @p b. */
static int find_op(MDB_cursor *c, weft_id id, blk *b)
{
    MDB_val k, v;
    int rc = block_at(c, id.device, id.hlc, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return WEFT_ENOTFOUND;
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading the op log");
    }
    if ((rc = blk_open(b, &k, &v)) != 0) {
        return rc;
    }
    while (b->hlc < id.hlc) {
        if ((rc = blk_next(b)) <= 0) {
            return rc ? rc : WEFT_ENOTFOUND;
        }
    }
    return b->hlc == id.hlc ? 0 : WEFT_ENOTFOUND;
}

int weft__oplog_get(weft_txn *t, weft_id id, weft_bytes *payload)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_OPS], &c);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading the op log");
    }
    blk b;
    rc = find_op(c, id, &b);
    mdb_cursor_close(c);
    if (rc == 0) {
        *payload = b.pl;
    }
    return rc;
}

/* ---- appending ---- */

/* Position t->ocur on the last block of @p device (whose last op is the vv
 * cache's entry @p have) and parse it to that op into @p b; the block's
 * bytes in @p v. Uses the tail the last append left when it is this one. */
static int tail_block(weft_txn *t, uint64_t device, uint64_t have, blk *b, MDB_val *v)
{
    MDB_cursor *c = t->ocur;
    MDB_val k;
    int rc;
    if (t->tail_valid && t->tail_device == device && t->tail_last == have) {
        /* The cursor still sits on it: no search, no parse. */
        if ((rc = mdb_cursor_get(c, &k, v, MDB_GET_CURRENT)) != 0) {
            return weft__store_mdb_err(rc, "reading the op log");
        }
        if (!opkey_ok(&k) || key_device(&k) != device ||
            weft__be64_get((const uint8_t *)k.mv_data + 8) != t->tail_first) {
            return weft__err(WEFT_ECORRUPT, "op log cursor lost its block");
        }
        memset(b, 0, sizeof *b);
        b->device = device;
        b->first = t->tail_first;
        b->hlc = have;
        b->ord = t->tail_ord;
        return 0;
    }
    t->tail_valid = false;
    rc = block_at(c, device, have, &k, v);
    if (rc == MDB_NOTFOUND) {
        return weft__err(WEFT_ECORRUPT, "device %016llx is in the vv but not in the log",
                         (unsigned long long)device);
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading the op log");
    }
    if ((rc = blk_open(b, &k, v)) != 0 || (rc = blk_last(b)) != 0) {
        return rc;
    }
    return b->hlc == have ? 0 : corrupt(b, "its last op is not the device's newest");
}

/* weft__oplog_append's body, with t->ocur open. */
static int append(weft_txn *t, weft_id id, const uint8_t *payload, size_t len)
{
    MDB_cursor *c = t->ocur;
    uint64_t have = weft__store_vv_get(t, id.device), ord = 0;
    if (have != 0 && id.hlc <= have) {
        return weft__err(WEFT_ECORRUPT, "op %016llx.%016llx is not after its device's newest",
                         (unsigned long long)id.hlc, (unsigned long long)id.device);
    }
    uint8_t kb[WEFT__OPKEY_BYTES];
    MDB_val k = {sizeof kb, kb}, v;
    int rc;
    if (have != 0) {
        blk b;
        if ((rc = tail_block(t, id.device, have, &b, &v)) != 0) {
            return rc;
        }
        uint64_t d = id.hlc - have;
        size_t add = varint_len(d) + varint_len(len) + len;
        if (v.mv_size <= WEFT__BLOCK_CAP && add <= WEFT__BLOCK_CAP - v.mv_size) {
            /* Grow the block in place: old bytes, then the new op. */
            uint8_t nb[WEFT__BLOCK_CAP];
            size_t n = v.mv_size;
            memcpy(nb, v.mv_data, n);
            n += varint_put(nb + n, d);
            n += varint_put(nb + n, len);
            memcpy(nb + n, payload, len);
            n += len;
            weft__store_opkey_put(kb, (weft_id){b.first, id.device});
            MDB_val nv = {n, nb};
            if ((rc = mdb_cursor_put(c, &k, &nv, MDB_CURRENT)) != 0) {
                return weft__store_mdb_err(rc, "writing the op log");
            }
            t->tail_first = b.first;
            t->tail_ord = b.ord + 1;
            goto appended;
        }
        ord = b.ord + 1;
    }
    /* A new block. When no greater device is held (the vv cache's last
     * entry), its key is after every key: MDB_APPEND (no search, the page is
     * left full); otherwise a plain put, as for a remote op landing in the
     * middle of the log. */
    weft__store_opkey_put(kb, id);
    v.mv_size = varint_len(ord) + varint_len(len) + len;
    v.mv_data = NULL;
    bool last = t->nvv == 0 || t->vv[t->nvv - 1].device <= id.device;
    rc = last ? mdb_cursor_put(c, &k, &v, MDB_APPEND | MDB_RESERVE) : MDB_KEYEXIST;
    if (rc == MDB_KEYEXIST) {
        rc = mdb_cursor_put(c, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    }
    if (rc == MDB_KEYEXIST) {
        return weft__err(WEFT_ECORRUPT, "op %016llx.%016llx is already in the log",
                         (unsigned long long)id.hlc, (unsigned long long)id.device);
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "writing the op log");
    }
    uint8_t *p = v.mv_data;
    p += varint_put(p, ord);
    p += varint_put(p, len);
    if (len > 0) {
        memcpy(p, payload, len);
    }
    t->tail_first = id.hlc;
    t->tail_ord = ord;
appended:
    t->tail_device = id.device;
    t->tail_last = id.hlc;
    t->tail_valid = true;
    return 0;
}

int weft__oplog_append(weft_txn *t, weft_id id, const uint8_t *payload, size_t len)
{
    if (t->ocur == NULL) { /* kept until the MDB txn ends (weft__oplog_cursor_drop) */
        int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_OPS], &t->ocur);
        if (rc != 0) {
            t->ocur = NULL;
            return weft__store_mdb_err(rc, "writing the op log");
        }
        t->tail_valid = false;
    }
    return append(t, id, payload, len);
}

void weft__oplog_cursor_drop(weft_txn *t)
{
    if (t->ocur != NULL) {
        mdb_cursor_close(t->ocur);
        t->ocur = NULL;
    }
    t->tail_valid = false;
}

/* ---- the runs: version vector and op count ---- */

int weft__oplog_runs(weft_txn *t, weft__oplog_run_fn fn, void *user)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_OPS], &c);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading the version vector");
    }
    /* Each device's run ends just before the first key of the next device:
     * O(devices * log ops), whatever the log's length. */
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    rc = 0;
    while (mrc == 0) {
        if (!opkey_ok(&k)) {
            rc = weft__err(WEFT_ECORRUPT, "op log key of %zu bytes or hlc 0", k.mv_size);
            break;
        }
        blk b;
        if ((rc = run_end(c, key_device(&k), &b)) != 0) {
            rc = rc == WEFT_ENOTFOUND ? weft__err(WEFT_ECORRUPT, "op log keys out of order") : rc;
            break;
        }
        if ((rc = fn(user, b.device, b.hlc, b.ord + 1)) != 0) {
            break;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* the next device's first block */
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != MDB_NOTFOUND) {
        rc = weft__store_mdb_err(mrc, "reading the version vector");
    }
    return rc;
}

typedef struct vv_each_ctx {
    int (*fn)(void *user, uint64_t device, uint64_t hlc);
    void *user;
} vv_each_ctx;

static int vv_each_run(void *user, uint64_t device, uint64_t hlc, uint64_t nops)
{
    vv_each_ctx *x = user;
    (void)nops;
    return x->fn(x->user, device, hlc);
}

int weft__store_vv_each(weft_txn *t, int (*fn)(void *user, uint64_t device, uint64_t hlc),
                        void *user)
{
    vv_each_ctx x = {fn, user};
    return weft__oplog_runs(t, vv_each_run, &x);
}

/* ---- the dump: one record per op, whatever the blocks ---- */

/* Append block (k, v)'s ops to @p out as dump records: 0, WEFT_ENOMEM or
 * WEFT_ECORRUPT. */
static int dump_block(const MDB_val *k, const MDB_val *v, weft__buf *out)
{
    blk b;
    int rc = blk_open(&b, k, v);
    while (rc == 0) {
        uint8_t r[4 + WEFT__OPKEY_BYTES + 4];
        weft__be32_put(r, WEFT__OPKEY_BYTES);
        weft__store_opkey_put(r + 4, (weft_id){b.hlc, b.device});
        weft__be32_put(r + 4 + WEFT__OPKEY_BYTES, (uint32_t)b.pl.len);
        if ((rc = weft__buf_put(out, r, sizeof r)) != 0 ||
            (rc = weft__buf_put(out, b.pl.ptr, b.pl.len)) != 0) {
            return rc;
        }
        if ((rc = blk_next(&b)) == 0) {
            return 0; /* the block's end */
        }
        rc = rc == 1 ? 0 : rc;
    }
    return rc;
}

int weft__oplog_dump(weft_txn *t, weft__buf *out)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_OPS], &c);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "dump");
    }
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        rc = dump_block(&k, &v, out);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != MDB_NOTFOUND && mrc != 0) {
        rc = weft__store_mdb_err(mrc, "dump");
    }
    return rc;
}

/* ---- weft_ops_since ---- */

typedef struct pos {
    blk b;          /* b.hlc, b.device: the op to stream next */
    uint64_t dprev; /* the op before it in its device's run (0: none) */
} pos;

static bool pos_less(const pos *a, const pos *b)
{
    return a->b.hlc != b->b.hlc ? a->b.hlc < b->b.hlc : a->b.device < b->b.device;
}

static void heap_down(pos *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && pos_less(&h[l], &h[m])) {
            m = l;
        }
        if (l + 1 < n && pos_less(&h[l + 1], &h[m])) {
            m = l + 1;
        }
        if (m == i) {
            return;
        }
        pos tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static int snapshot_add(void *user, uint64_t device, uint64_t hlc)
{
    weft_txn *t = user;
    weft__vvent e = {device, hlc};
    t->visited++;
    return weft__buf_put(&t->scratch, &e, sizeof e);
}

/* The version vector of @p t as (device, hlc) pairs: the write txn's cache,
 * or derived from ops into t->scratch. */
static int vv_snapshot(weft_txn *t, weft__vvent **out, size_t *n)
{
    if (!t->rdonly) {
        *out = t->vv;
        *n = t->nvv;
        return 0;
    }
    weft__buf_reset(&t->scratch);
    int rc = weft__store_vv_each(t, snapshot_add, t);
    if (rc != 0) {
        return rc;
    }
    *out = (weft__vvent *)(void *)t->scratch.ptr;
    *n = t->scratch.len / sizeof(weft__vvent);
    return 0;
}

/* Position @p p on @p device's first op above @p from (there is one: the
 * device's vv entry is above it), with its dprev. Leaves @p c on its block. */
static int start_at(weft_txn *t, MDB_cursor *c, uint64_t device, uint64_t from, pos *p)
{
    MDB_val k, v;
    t->visited++;
    int rc = block_at(c, device, from, &k, &v);
    p->dprev = 0;
    if (rc == 0) { /* the block holding `from` (or before it) */
        if ((rc = blk_open(&p->b, &k, &v)) != 0) {
            return rc;
        }
        while (p->b.hlc <= from) {
            p->dprev = p->b.hlc;
            if ((rc = blk_next(&p->b)) < 0) {
                return rc;
            }
            if (rc == 0) { /* `from` ends this block: the next one */
                t->visited++;
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                break;
            }
        }
        if (rc == 1 || p->b.hlc > from) {
            return 0;
        }
    } else if (rc == MDB_NOTFOUND) { /* every op is above `from` */
        uint8_t kb[WEFT__OPKEY_BYTES];
        weft__store_opkey_put(kb, (weft_id){0, device});
        k.mv_size = sizeof kb, k.mv_data = kb;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    }
    if (rc == 0 && !key_in_run(&k, device)) {
        rc = MDB_NOTFOUND;
    }
    if (rc == MDB_NOTFOUND) {
        return weft__err(WEFT_ECORRUPT, "device %016llx is in the vv but not in the log",
                         (unsigned long long)device);
    }
    return rc ? weft__store_mdb_err(rc, "streaming ops") : blk_open(&p->b, &k, &v);
}

/* Step @p b to its device's next op: the block's next, else the first of
 * the device's next block, read with @p c, which sits on block @p at
 * ({first, device}; device 0: unknown) and is moved back to @p b's block
 * first if it is elsewhere (one search). 1, 0 when the device's run ended,
 * or an error. */
static int advance(weft_txn *t, MDB_cursor *c, blk *b, weft_id *at)
{
    int rc = blk_next(b);
    if (rc != 0) {
        return rc;
    }
    MDB_val k, v;
    if (at->device != b->device || at->hlc != b->first) {
        uint8_t kb[WEFT__OPKEY_BYTES];
        weft__store_opkey_put(kb, (weft_id){b->first, b->device});
        k.mv_size = sizeof kb, k.mv_data = kb;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_KEY);
        if (rc == MDB_NOTFOUND) {
            return weft__err(WEFT_ECORRUPT, "op log changed while streaming");
        }
    }
    t->visited++;
    rc = rc ? rc : mdb_cursor_get(c, &k, &v, MDB_NEXT);
    if (rc == 0 && key_in_run(&k, b->device)) {
        *at = (weft_id){weft__be64_get((const uint8_t *)k.mv_data + 8), b->device};
        rc = blk_open(b, &k, &v);
        return rc ? rc : 1;
    }
    at->device = 0;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : weft__store_mdb_err(rc, "streaming ops");
}

int weft_ops_since(weft_txn *t, const weft_vv *have, weft_op_cb cb, void *user)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    if (cb == NULL) {
        return weft__err(WEFT_EINVAL, "weft_ops_since: callback is NULL");
    }
    weft__vvent *vv = NULL;
    size_t nvv = 0;
    if ((rc = vv_snapshot(t, &vv, &nvv)) != 0) {
        return rc;
    }
    pos *heap = weft__malloc((nvv ? nvv : 1) * sizeof *heap);
    if (heap == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory streaming ops");
    }
    MDB_cursor *c = NULL;
    if ((rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_OPS], &c)) != 0) {
        weft__free(heap);
        return weft__store_mdb_err(rc, "streaming ops");
    }
    size_t nh = 0;
    long count = 0;                    /* streamed so far */
    bool was_streaming = t->streaming; /* a stream inside a callback */
    t->streaming = true;
    for (size_t i = 0; i < nvv; i++) {
        uint64_t from = have ? weft_vv_get(have, vv[i].device) : 0;
        if (vv[i].hlc <= from) {
            continue;
        }
        if ((rc = start_at(t, c, vv[i].device, from, &heap[nh])) != 0) {
            goto out;
        }
        nh++;
    }
    /* The cursor sits on the block start_at parsed last. */
    weft_id at = {nh ? heap[nh - 1].b.first : 0, nh ? heap[nh - 1].b.device : 0};
    for (size_t i = nh / 2; i-- > 0;) {
        heap_down(heap, nh, i);
    }
    while (nh > 0) {
        pos *p = &heap[0];
        weft_op op = {{p->b.hlc, p->b.device}, p->dprev, p->b.pl};
        count++;
        t->visited++;
        if (cb(&op, user) != 0) {
            break;
        }
        uint64_t prev = p->b.hlc;
        if ((rc = advance(t, c, &p->b, &at)) < 0) {
            goto out;
        }
        if (rc == 0) { /* the device's run ended */
            heap[0] = heap[--nh];
        } else {
            p->dprev = prev;
        }
        rc = 0;
        heap_down(heap, nh, 0);
    }
out:
    t->streaming = was_streaming;
    mdb_cursor_close(c);
    weft__free(heap);
    if (rc != 0) {
        return rc;
    }
    return count > 0x7fffffffL ? 0x7fffffff : (int)count;
}
