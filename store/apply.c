/* apply.c - applying one op (local or remote) to the log and the
 * materialised state, atomic batch apply of remote ops, and op description
 * (the log itself, and delta export, are oplog.c's).
 *
 * weft__store_apply_op() is the single path by which an op enters a store,
 * whether weft_set issued it, weft_apply received it or a map growth replays
 * it. It computes everything that can fail for lack of memory first and
 * only then writes, so that an ENOMEM leaves the MDB txn untouched
 * (t->wrote tells the caller whether anything was written):
 *   ops        the end of its device's run of blocks (oplog.c): an op
 *              we apply is always beyond its device's run
 *   fields / conflicts     SET INC ADD REM: merge into the field state;
 *              one search of `fields` per op: a cursor positioned by the
 *              load is written through with MDB_CURRENT, and a key after
 *              the db's last is known absent without a search. (Not
 *              MDB_APPEND: LMDB already packs pages on ascending inserts,
 *              and appending made mixed-order inserts pack worse, see
 *              docs/performance.md.)
 *   counters               INC above the tombstone: one row (field key | id
 *              -> delta); the field's record keeps only the rows' summary
 *   entities / fields / conflicts / counters  DEL: raise the tombstone,
 *              prune fields, delete the counter rows it hides
 *   vv cache, conflict count  in memory only: derived from ops and
 *              conflicts, which step 2 and 3 write (nothing is flushed)
 *
 * Counter rows cost O(log n) per increment and O(rows removed) per delete
 * (a row is removed at most once, so deletes are amortised O(1) per
 * increment): a delete raising the tombstone to T walks each counter
 * field's rows from the first (they are sorted by id) while id <= T. Rows go
 * oldest first, so the field's newest row stays unless none is left.
 *
 * Invariants:
 *   1. For each device the log holds a prefix of its chain: an op is applied
 *      only when its dprev equals vv[device] (or it is local and newest).
 *   2. vv[d] is the greatest hlc of d in `ops`: in a read txn it is read as
 *      the last op of d's run (oplog.c), in a write txn the cache loaded that way at
 *      begin is kept in step by every apply.
 *   3. `conflicts` holds exactly the fields whose state has > 1 head and
 *      t->conflicts counts them.
 *   4. weft_apply leaves no trace of a failed batch: it runs in a nested MDB
 *      txn (which also holds its counter rows) and restores the vv cache,
 *      conflict count and journal length.
 *   5. A field's `counters` rows are its INCs above the tombstone; its
 *      record's counter summary is their sum, count and greatest id.
 *   6. t->lastkey, when known, is >= the greatest key of `fields` in the
 *      current MDB txn (equal unless that key was deleted or a nested txn
 *      was aborted), so a key above it is absent.
 * Thread-safety: one thread at a time per txn; the store's clock is touched
 * only by the working write txn (txn.c: the group's worker).
 */
#include "../common/killpoint.h"
#include "store_int.h"

/* ---- the cached version vector of a write txn ---- */

static size_t vv_find(const weft__vvent *v, size_t n, uint64_t device, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid].device < device) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    *found = lo < n && v[lo].device == device;
    return lo;
}

uint64_t weft__store_vv_get(const weft_txn *t, uint64_t device)
{
    bool found;
    size_t i = vv_find(t->vv, t->nvv, device, &found);
    return found ? t->vv[i].hlc : 0;
}

static int vv_reserve(weft_txn *t)
{
    if (t->nvv < t->vvcap) {
        return 0;
    }
    size_t cap = t->vvcap ? t->vvcap * 2 : 16;
    weft__vvent *p = weft__realloc(t->vv, cap * sizeof *p);
    if (p == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory growing the version vector");
    }
    t->vv = p;
    t->vvcap = cap;
    return 0;
}

/* Needs room for one more entry (vv_reserve) when the device is new. */
int weft__store_vv_set(weft_txn *t, uint64_t device, uint64_t hlc)
{
    bool found;
    size_t i = vv_find(t->vv, t->nvv, device, &found);
    if (!found) {
        int rc = vv_reserve(t);
        if (rc != 0) {
            return rc;
        }
        memmove(t->vv + i + 1, t->vv + i, (t->nvv - i) * sizeof *t->vv);
        t->nvv++;
        t->vv[i].device = device;
    }
    t->vv[i].hlc = hlc;
    return 0;
}

static int wstate_add(void *user, uint64_t device, uint64_t hlc)
{
    weft_txn *t = user;
    int rc = vv_reserve(t);
    if (rc == 0) { /* ops is sorted by device: append */
        t->vv[t->nvv].device = device;
        t->vv[t->nvv].hlc = hlc;
        t->nvv++;
    }
    return rc;
}

int weft__store_wstate_load(weft_txn *t)
{
    t->nvv = 0;
    weft__store_wcache_reset(t);
    int rc = weft__store_vv_each(t, wstate_add, t);
    if (rc != 0) {
        return rc;
    }
    MDB_stat st;
    if ((rc = mdb_stat(t->txn, t->s->dbi[WEFT__DB_CONFLICTS], &st)) != 0) {
        return weft__store_mdb_err(rc, "counting conflicts");
    }
    t->conflicts = st.ms_entries;
    /* Another process (or an earlier run) may have issued or received later
     * stamps: the clock must start above all of them. Every stamp this
     * device issued that reached the store is an op in the log, so its vv
     * entry is the last one issued (what last_hlc used to persist). */
    uint64_t max = 0;
    for (size_t i = 0; i < t->nvv; i++) {
        max = t->vv[i].hlc > max ? t->vv[i].hlc : max;
    }
    weft__hlc_floor(&t->s->clock, max);
    return 0;
}

/* ---- the greatest key of `fields` ---- */

void weft__store_wcache_reset(weft_txn *t)
{
    t->lastkey_known = false;
}

/* LMDB's default key order (mdb_cmp_memn): bytes, then the shorter first. */
static int key_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

/* Does key[0..len) sort after every key of `fields` in the MDB txn (so that
 * it is certainly absent)? Looks the last key up once per MDB txn. Never
 * fails: if the lookup cannot be made (memory), the answer is false, which
 * costs a search, never correctness. */
static bool after_last(weft_txn *t, const uint8_t *key, size_t len)
{
    if (!t->lastkey_known) {
        MDB_cursor *c;
        MDB_val k, v;
        if (mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_FIELDS], &c) != 0) {
            return false;
        }
        int mrc = mdb_cursor_get(c, &k, &v, MDB_LAST);
        weft__buf_reset(&t->lastkey);
        bool ok = mrc == MDB_NOTFOUND ||
                  (mrc == 0 && weft__buf_put(&t->lastkey, k.mv_data, k.mv_size) == 0);
        mdb_cursor_close(c);
        if (!ok) {
            weft__err_clear();
            return false;
        }
        t->lastkey_known = true;
        t->lastkey_none = mrc == MDB_NOTFOUND;
    }
    return t->lastkey_none || key_cmp(key, len, t->lastkey.ptr, t->lastkey.len) > 0;
}

/* A record was inserted at key[0..len): it may be the new last key. */
static void last_update(weft_txn *t, const uint8_t *key, size_t len)
{
    if (t->lastkey_known && after_last(t, key, len)) {
        weft__buf_reset(&t->lastkey);
        if (weft__buf_put(&t->lastkey, key, len) != 0) {
            weft__err_clear();
            t->lastkey_known = false;
        } else {
            t->lastkey_none = false;
        }
    }
}

/* ---- keys and field state ---- */

int weft__store_key(weft__buf *b, weft_bytes coll, weft_bytes entity, weft_bytes field)
{
    weft__buf_reset(b);
    int rc = weft__buf_reserve(b, coll.len + entity.len + field.len + 3);
    if (rc != 0) {
        return rc;
    }
    weft__buf_put(b, coll.ptr, coll.len);
    weft__buf_put(b, "", 1);
    weft__buf_put(b, entity.ptr, entity.len);
    weft__buf_put(b, "", 1);
    if (field.len > 0) {
        weft__buf_put(b, field.ptr, field.len);
        weft__buf_put(b, "", 1);
    }
    return 0;
}

int weft__store_fcur_open(weft_txn *t)
{
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_FIELDS], &t->fcur);
    if (rc != 0) {
        t->fcur = NULL;
        return weft__store_mdb_err(rc, "opening a cursor");
    }
    t->fs_ready = false;
    return 0;
}

void weft__store_fcur_close(weft_txn *t)
{
    if (t->fcur != NULL) {
        mdb_cursor_close(t->fcur);
        t->fcur = NULL;
    }
    t->fs_ready = false;
}

int weft__store_fstate_load(weft_txn *t, const weft__buf *key, bool *found)
{
    MDB_val k = {key->len, key->ptr}, v;
    int rc;
    t->fs_ready = false;
    if (t->fcur == NULL) {
        rc = mdb_get(t->txn, t->s->dbi[WEFT__DB_FIELDS], &k, &v);
    } else if (after_last(t, key->ptr, key->len)) {
        rc = MDB_NOTFOUND; /* a new key after every other: no search */
    } else {
        rc = mdb_cursor_get(t->fcur, &k, &v, MDB_SET);
    }
    if (rc == MDB_NOTFOUND) {
        *found = false;
        rc = weft__fstate_decode(NULL, 0, &t->fs); /* empties, keeps the arrays */
    } else if (rc != 0) {
        return weft__store_mdb_err(rc, "reading a field");
    } else {
        *found = true;
        rc = weft__store_rec_decode(v.mv_data, v.mv_size, &t->fs);
        if (rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT) {
            return weft__err(WEFT_ECORRUPT, "stored state of field \"%.*s\" is damaged",
                             (int)key->len, (const char *)key->ptr);
        }
    }
    if (rc == 0 && t->fcur != NULL) {
        t->fs_ready = true;
        t->fs_found = *found;
    }
    return rc;
}

int weft__store_tomb(weft_txn *t, const uint8_t *key, size_t len, weft_id *tomb)
{
    MDB_val k = {len, (void *)key}, v;
    int rc = mdb_get(t->txn, t->s->dbi[WEFT__DB_ENTITIES], &k, &v);
    if (rc == MDB_NOTFOUND) {
        tomb->hlc = tomb->device = 0;
        return 0;
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading an entity");
    }
    if (v.mv_size != WEFT__ID_BYTES) {
        return weft__err(WEFT_ECORRUPT, "entity tombstone of %zu bytes", v.mv_size);
    }
    *tomb = weft__id_get(v.mv_data);
    return 0;
}

static int conflict_mark(weft_txn *t, const uint8_t *key, size_t len, bool before, bool after)
{
    if (before == after) {
        return 0;
    }
    MDB_val k = {len, (void *)key}, v = {0, (void *)""};
    int rc = after ? mdb_put(t->txn, t->s->dbi[WEFT__DB_CONFLICTS], &k, &v, 0)
                   : mdb_del(t->txn, t->s->dbi[WEFT__DB_CONFLICTS], &k, NULL);
    if (rc != 0 && !(rc == MDB_NOTFOUND && !after)) {
        return weft__store_mdb_err(rc, "updating the conflict list");
    }
    t->conflicts = after ? t->conflicts + 1 : t->conflicts - 1;
    return 0;
}

/* Write the state in t->fs (encoded into t->val) back at key, through @p c,
 * a cursor on `fields` that is positioned on the record when @p found (so
 * the write does not search again). */
static int field_write(weft_txn *t, MDB_cursor *c, const uint8_t *key, size_t klen, bool found)
{
    MDB_val k = {klen, (void *)key}, v = {t->val.len, t->val.ptr};
    int rc;
    if (t->val.len == 0) {
        rc = found ? mdb_cursor_del(c, 0) : 0;
    } else if (found) {
        rc = mdb_cursor_put(c, &k, &v, MDB_CURRENT);
    } else if ((rc = mdb_cursor_put(c, &k, &v, 0)) == 0) {
        last_update(t, key, klen);
    }
    return rc ? weft__store_mdb_err(rc, "writing a field") : 0;
}

static int64_t i64_of(uint64_t u)
{
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* Is the counters record (k, v) a row of the field keyed key[0..klen)? 1 and
 * its id and delta, 0 (another field's), or WEFT_ECORRUPT. */
static int row_of(const MDB_val *k, const MDB_val *v, const uint8_t *key, size_t klen, weft_id *id,
                  int64_t *delta)
{
    if (k->mv_size != klen + WEFT__ID_BYTES || memcmp(k->mv_data, key, klen) != 0) {
        return 0; /* a field key never extends another (names hold no NUL) */
    }
    if (v->mv_size != 8) {
        return weft__err(WEFT_ECORRUPT, "counter row of %zu bytes", v->mv_size);
    }
    *id = weft__id_get((const uint8_t *)k->mv_data + klen);
    *delta = i64_of(weft__be64_get(v->mv_data));
    return 1;
}

/* Walk the counter rows of the field keyed key[0..klen) (not a view into the
 * map when @p del) from the oldest while id <= tomb. Without @p del, only read
 * them, taking each out of t->fs's counter summary; with @p del, delete them.
 * *n receives the number of rows walked. */
static int counter_walk(weft_txn *t, MDB_cursor *c, const uint8_t *key, size_t klen, weft_id tomb,
                        bool del, uint64_t *n)
{
    MDB_val k = {klen, (void *)key}, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    *n = 0;
    while (mrc == 0) {
        weft_id id = {0, 0};
        int64_t delta = 0;
        int rc = row_of(&k, &v, key, klen, &id, &delta);
        if (rc <= 0) {
            return rc;
        }
        if (weft_id_cmp(id, tomb) > 0) {
            return 0;
        }
        if (del) {
            if ((mrc = mdb_cursor_del(c, 0)) != 0) {
                break;
            }
        } else if (weft__fstate_counter_sub(&t->fs, delta) != 0) {
            return weft__err(WEFT_ECORRUPT,
                             "counter rows of field \"%.*s\" disagree with its state", (int)klen,
                             (const char *)key);
        }
        (*n)++;
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT); /* after a delete: the row that followed */
    }
    return mrc == MDB_NOTFOUND ? 0 : weft__store_mdb_err(mrc, "pruning counter rows");
}

/* A delete reached the entity at t->key: prune every field of it, and the
 * counter rows the new tombstone hides. Per field: decode, prune heads and
 * adds, read the hidden rows out of the counter summary, encode, and only
 * then write (the record, then the row deletions): the decoded state holds
 * views into the map, which a write may invalidate. */
static int prune_entity(weft_txn *t, weft_id tomb)
{
    MDB_cursor *c, *rows = NULL;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_FIELDS], &c);
    if (rc == 0 && (rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_COUNTERS], &rows)) != 0) {
        mdb_cursor_close(c);
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "deleting an entity");
    }
    size_t plen = t->key.len;
    MDB_val k = {plen, t->key.ptr}, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    rc = 0;
    while (mrc == 0 && k.mv_size > plen && memcmp(k.mv_data, t->key.ptr, plen) == 0) {
        if ((rc = weft__store_rec_decode(v.mv_data, v.mv_size, &t->fs)) != 0) {
            rc = rc == WEFT_ENOMEM ? rc : weft__err(WEFT_ECORRUPT, "damaged field state");
            break;
        }
        weft__buf_reset(&t->key2);
        if ((rc = weft__buf_put(&t->key2, k.mv_data, k.mv_size)) != 0) {
            break;
        }
        bool before = weft__fstate_conflict(&t->fs);
        int changed = weft__fstate_prune(&t->fs, tomb);
        uint64_t nrows = 0;
        if (t->fs.ctr.count > 0) {
            rc = counter_walk(t, rows, t->key2.ptr, t->key2.len, tomb, false, &nrows);
            if (rc == 0 && t->fs.ctr.count > 0 && weft_id_cmp(t->fs.ctr.newest, tomb) <= 0) {
                rc = weft__err(WEFT_ECORRUPT, "counter of field \"%.*s\" lacks rows",
                               (int)t->key2.len, (const char *)t->key2.ptr);
            }
            if (rc != 0) {
                break;
            }
        }
        if (changed == 0 && nrows == 0) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            continue;
        }
        weft__buf_reset(&t->val);
        if ((rc = weft__store_rec_encode(&t->fs, &t->val)) != 0) {
            break;
        }
        t->wrote = true;
        if ((rc = field_write(t, c, t->key2.ptr, t->key2.len, true)) != 0 ||
            (rc = conflict_mark(t, t->key2.ptr, t->key2.len, before,
                                weft__fstate_conflict(&t->fs))) != 0) {
            break;
        }
        uint64_t ndel = 0;
        if (nrows > 0 &&
            (rc = counter_walk(t, rows, t->key2.ptr, t->key2.len, tomb, true, &ndel)) != 0) {
            break;
        }
        if (ndel != nrows) {
            rc = weft__err(WEFT_ECORRUPT, "counter rows changed while pruning");
            break;
        }
        /* Reposition after our write: at the record itself if it stayed. */
        k.mv_size = t->key2.len;
        k.mv_data = t->key2.ptr;
        mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (mrc == 0 && t->val.len > 0) {
            mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(rows);
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = weft__store_mdb_err(mrc, "deleting an entity");
    }
    return rc;
}

/* Store the counter row prepared in t->key2 (field key | id) for @p delta. */
static int counter_put(weft_txn *t, int64_t delta)
{
    uint8_t d[8];
    weft__be64_put(d, (uint64_t)delta);
    MDB_val k = {t->key2.len, t->key2.ptr}, v = {sizeof d, d};
    int rc = mdb_put(t->txn, t->s->dbi[WEFT__DB_COUNTERS], &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        return weft__err(WEFT_ECORRUPT, "counter row of an op not in the log");
    }
    return rc ? weft__store_mdb_err(rc, "writing a counter row") : 0;
}

/* weft__store_apply_op's body, with t->fcur open. */
static int apply_one(weft_txn *t, weft_id id, const uint8_t *payload, size_t len,
                     const weft__op *op, bool local)
{
    weft_store *s = t->s;
    static const weft_bytes none = {NULL, 0};
    bool found = false, before = false, changed = false;
    weft_id tomb, newtomb = {0, 0};
    int rc;
    t->wrote = false;

    /* 1. Everything that may fail for memory. */
    if ((rc = vv_reserve(t)) != 0) {
        return rc;
    }
    bool del = op->kind == WEFT__OP_DEL;
    if ((rc = weft__store_key(&t->key, op->coll, op->entity, del ? none : op->field)) != 0) {
        return rc;
    }
    size_t elen = op->coll.len + op->entity.len + 2;
    if ((rc = weft__store_tomb(t, t->key.ptr, elen, &tomb)) != 0) {
        return rc;
    }
    if (del) {
        newtomb = weft_id_cmp(id, tomb) > 0 ? id : tomb;
    } else {
        if (t->fs_ready) { /* local_write loaded this very field: no search */
            found = t->fs_found;
        } else if ((rc = weft__store_fstate_load(t, &t->key, &found)) != 0) {
            return rc;
        }
        t->fs_ready = false; /* t->fs is about to change */
        before = weft__fstate_conflict(&t->fs);
        rc = weft__fstate_apply(&t->fs, id, op, tomb);
        if (rc < 0) {
            return rc == WEFT_EINVAL ? weft__err(WEFT_ECORRUPT, "op cannot apply to its field")
                                     : rc;
        }
        changed = rc == 1;
        weft__buf_reset(&t->val);
        if (changed && (rc = weft__store_rec_encode(&t->fs, &t->val)) != 0) {
            return rc;
        }
        if (changed && op->kind == WEFT__OP_INC) { /* the row's key */
            weft__buf_reset(&t->key2);
            if ((rc = weft__buf_reserve(&t->key2, t->key.len + WEFT__ID_BYTES)) != 0) {
                return rc;
            }
            weft__buf_put(&t->key2, t->key.ptr, t->key.len);
            weft__id_put(t->key2.ptr + t->key2.len, id);
            t->key2.len += WEFT__ID_BYTES;
        }
    }

    /* 2. The log (oplog.c): an op we apply is beyond its device's run
     * (invariant 1), so it goes at the end of the run. */
    t->wrote = true;
    if ((rc = weft__oplog_append(t, id, payload, len)) != 0) {
        return rc;
    }
    WEFT__KILLPOINT(WEFT__KP_OP_LOGGED);

    /* 3. The materialised state. */
    if (del) {
        if (weft_id_cmp(newtomb, tomb) > 0) {
            uint8_t tb[WEFT__ID_BYTES];
            weft__id_put(tb, newtomb);
            MDB_val ek = {elen, t->key.ptr}, ev = {WEFT__ID_BYTES, tb};
            if ((rc = mdb_put(t->txn, s->dbi[WEFT__DB_ENTITIES], &ek, &ev, 0)) != 0) {
                return weft__store_mdb_err(rc, "writing an entity tombstone");
            }
            if ((rc = prune_entity(t, newtomb)) != 0) {
                return rc;
            }
        }
    } else if (changed) {
        if ((rc = field_write(t, t->fcur, t->key.ptr, t->key.len, found)) != 0 ||
            (rc = conflict_mark(t, t->key.ptr, t->key.len, before,
                                weft__fstate_conflict(&t->fs))) != 0 ||
            (op->kind == WEFT__OP_INC && (rc = counter_put(t, op->delta)) != 0)) {
            return rc;
        }
    }
    WEFT__KILLPOINT(WEFT__KP_OP_MATERIALISED);

    /* 4. The vv cache (its truth, the end of the device's run in ops, was
     * written in step 2). */
    (void)local;
    uint64_t have = weft__store_vv_get(t, id.device);
    if (id.hlc > have) {
        weft__store_vv_set(t, id.device, id.hlc); /* room reserved above */
    }
    return 0;
}

int weft__store_apply_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len,
                         const weft__op *op, bool local)
{
    bool own = t->fcur == NULL; /* else local_write opened it (and may have loaded) */
    int rc = own ? weft__store_fcur_open(t) : 0;
    if (rc == 0) {
        rc = apply_one(t, id, payload, len, op, local);
    }
    if (own) {
        weft__store_fcur_close(t);
    }
    t->fs_ready = false;
    return rc;
}

/* ---- weft_apply ---- */

static int check_prev(weft_txn *t, size_t i, weft_id id, const weft__op *op)
{
    for (uint32_t j = 0; j < op->nprev; j++) {
        weft_id p = weft__id_get(op->prev + (size_t)j * WEFT__ID_BYTES);
        if (weft_id_cmp(p, id) >= 0) {
            return weft__err(WEFT_ECORRUPT, "op %zu names a later op %016llx.%016llx in prev", i,
                             (unsigned long long)p.hlc, (unsigned long long)p.device);
        }
        if (p.device == 0 || p.hlc > weft__store_vv_get(t, p.device)) {
            return weft__err(WEFT_EGAP, "op %zu names op %016llx.%016llx, which is not held", i,
                             (unsigned long long)p.hlc, (unsigned long long)p.device);
        }
    }
    return 0;
}

static int apply_ops(weft_txn *t, const weft_op *ops, size_t n, weft_apply_result *r)
{
    weft_store *s = t->s;
    /* One read of the wall clock for the batch: every op's horizon check and
     * receive rule use it (an earlier now only defers more, never less, and
     * the clock still moves past every stamp applied). */
    uint64_t now = n > 0 ? weft__hlc_now(&s->clock) : 0;
    for (size_t i = 0; i < n; i++) {
        r->failed_at = i;
        const weft_op *o = &ops[i];
        weft_id id = o->id;
        if (id.device == 0 || id.hlc == 0) {
            return weft__err(WEFT_ECORRUPT, "op %zu has a zero %s", i,
                             id.device == 0 ? "device" : "hlc");
        }
        if (i > 0 && weft_id_cmp(ops[i - 1].id, id) >= 0) {
            return weft__err(WEFT_ECORRUPT, "op %zu is not after op %zu in (hlc, device) order", i,
                             i - 1);
        }
        if (o->payload.ptr == NULL && o->payload.len > 0) {
            return weft__err(WEFT_EINVAL, "op %zu has a NULL payload", i);
        }
        if (o->payload.len > WEFT_PAYLOAD_MAX) {
            return weft__err(WEFT_ELIMIT, "op %zu payload is %zu bytes, the limit is %u", i,
                             o->payload.len, (unsigned)WEFT_PAYLOAD_MAX);
        }
        uint64_t have = weft__store_vv_get(t, id.device);
        if (id.hlc <= have) {
            weft_bytes held;
            int rc = weft__oplog_get(t, id, &held);
            if (rc == WEFT_ENOTFOUND) {
                return weft__err(WEFT_ECORRUPT,
                                 "op %zu (%016llx.%016llx) is below the device's held hlc "
                                 "%llu but not in the log: the sender's chain is inconsistent",
                                 i, (unsigned long long)id.hlc, (unsigned long long)id.device,
                                 (unsigned long long)have);
            }
            if (rc != 0) {
                return rc;
            }
            if (held.len != o->payload.len ||
                (held.len > 0 && memcmp(held.ptr, o->payload.ptr, held.len) != 0)) {
                return weft__err(WEFT_ECONFLICT,
                                 "op %zu (%016llx.%016llx) is held with different content", i,
                                 (unsigned long long)id.hlc, (unsigned long long)id.device);
            }
            r->duplicates++;
            continue;
        }
        if (o->dprev > have) {
            return weft__err(WEFT_EGAP,
                             "op %zu: missing ops of device %016llx between hlc %llu and %llu", i,
                             (unsigned long long)id.device, (unsigned long long)have,
                             (unsigned long long)o->dprev);
        }
        if (o->dprev < have) {
            return weft__err(WEFT_ECORRUPT,
                             "op %zu: inconsistent chain of device %016llx (dprev %llu, held %llu)",
                             i, (unsigned long long)id.device, (unsigned long long)o->dprev,
                             (unsigned long long)have);
        }
        weft__op op;
        int rc = weft__op_decode(o->payload.ptr, o->payload.len, &op);
        if (rc != 0) {
            return rc == WEFT_ELIMIT ? rc
                                     : weft__err(WEFT_ECORRUPT, "op %zu: %s", i, weft_last_error());
        }
        if ((rc = check_prev(t, i, id, &op)) != 0) {
            return rc;
        }
        if (weft__hlc_recv_at(&s->clock, id.hlc, now, NULL) == WEFT_ECLOCK) {
            r->deferred = n - i;
            r->skew_ms = weft__hlc_ahead_at(id.hlc, now);
            r->failed_at = n;
            weft__err_clear();
            return 0;
        }
        WEFT__KILLPOINT(WEFT__KP_BATCH_OP);
        if ((rc = weft__store_journal_op(t, id, o->payload.ptr, o->payload.len, false)) != 0 ||
            (rc = weft__store_apply_op(t, id, o->payload.ptr, o->payload.len, &op, false)) != 0) {
            return rc;
        }
        r->applied++;
    }
    r->failed_at = n;
    return 0;
}

/* apply_ops with one fields cursor for the whole batch (closed before the
 * batch's nested txn ends, with the ops cursor its appends opened): a
 * remote batch is mostly runs of one device's ops, each appended where the
 * last one went. */
static int apply_batch(weft_txn *t, const weft_op *ops, size_t n, weft_apply_result *r)
{
    int rc = weft__store_fcur_open(t);
    if (rc != 0) {
        return rc;
    }
    rc = apply_ops(t, ops, n, r);
    weft__oplog_cursor_drop(t);
    weft__store_fcur_close(t);
    return rc;
}

int weft_apply(weft_txn *t, const weft_op *ops, size_t n, weft_apply_result *res)
{
    if (res != NULL) {
        res->failed_at = n; /* no op to blame, unless one is found below */
    }
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    if (ops == NULL && n > 0) {
        return weft__err(WEFT_EINVAL, "weft_apply: ops is NULL");
    }
    for (;;) {
        weft_apply_result r;
        memset(&r, 0, sizeof r);
        /* Snapshot what the nested txn cannot roll back for us. */
        if (t->vv_savecap < t->nvv) {
            weft__vvent *p = weft__realloc(t->vv_save, t->nvv * sizeof *p);
            if (p == NULL) {
                return weft__err(WEFT_ENOMEM, "out of memory saving the version vector");
            }
            t->vv_save = p;
            t->vv_savecap = t->nvv;
        }
        size_t nvv = t->nvv, jlen = t->journal.len;
        uint64_t conf0 = t->conflicts;
        if (nvv > 0) {
            memcpy(t->vv_save, t->vv, nvv * sizeof *t->vv);
        }
        weft__oplog_cursor_drop(t); /* the parent's: unusable in the child */
        MDB_txn *parent = t->txn, *child;
        if ((rc = mdb_txn_begin(t->s->env, parent, 0, &child)) != 0) {
            return weft__store_mdb_err(rc, "beginning a nested transaction");
        }
        t->txn = child;
        WEFT__KILLPOINT(WEFT__KP_BATCH_BEGUN);
        rc = apply_batch(t, ops, n, &r);
        if (rc == 0) {
            WEFT__KILLPOINT(WEFT__KP_BATCH_APPLIED);
            rc = weft__store_mdb_err(mdb_txn_commit(child), "committing a batch");
            r.failed_at = n;
            WEFT__KILLPOINT(WEFT__KP_BATCH_COMMITTED);
        } else {
            mdb_txn_abort(child);
        }
        t->txn = parent;
        if (rc == 0) {
            if (res != NULL) {
                *res = r;
            }
            return 0;
        }
        if (nvv > 0) {
            memcpy(t->vv, t->vv_save, nvv * sizeof *t->vv);
        }
        t->nvv = nvv;
        t->journal.len = jlen;
        t->conflicts = conf0;
        WEFT__KILLPOINT(WEFT__KP_BATCH_ROLLED_BACK);
        if (rc != WEFT__EMAPFULL) {
            if (res != NULL) {
                /* Only what an op holds is its fault; memory, I/O and the
                 * like fail the batch without naming an op (n). */
                bool blame = rc == WEFT_EGAP || rc == WEFT_ECORRUPT || rc == WEFT_ECONFLICT ||
                             rc == WEFT_ELIMIT || rc == WEFT_EINVAL;
                res->failed_at = blame ? r.failed_at : n;
            }
            return rc;
        }
        if ((rc = weft__store_regrow(t)) != 0) {
            return rc;
        }
    }
}

/* ---- weft_op_describe ---- */

static const char *arena_str(weft_txn *t, weft_bytes b)
{
    char *p = weft__arena_alloc(&t->describe, b.len + 1);
    if (p != NULL) {
        if (b.len > 0) {
            memcpy(p, b.ptr, b.len);
        }
        p[b.len] = '\0';
    }
    return p;
}

int weft_op_describe(weft_txn *t, const weft_op *op, weft_op_info *out)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    if (op == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_op_describe: op and out are required");
    }
    weft__op d;
    if ((rc = weft__op_decode(op->payload.ptr, op->payload.len, &d)) != 0) {
        return rc;
    }
    /* Views live in their own arena, reset here: describing a whole log in
     * one transaction (weft log, weft export) then runs in constant memory. */
    weft__arena_reset(&t->describe);
    weft_op_info info;
    memset(&info, 0, sizeof info);
    info.kind = weft__op_kind_name(d.kind);
    info.coll = arena_str(t, d.coll);
    info.entity = arena_str(t, d.entity);
    info.field = arena_str(t, d.field);
    info.value = d.value;
    if (d.kind == WEFT__OP_INC) {
        weft__buf_reset(&t->scratch);
        if ((rc = weft__mp_put_int(&t->scratch, d.delta)) != 0) {
            return rc;
        }
        info.value.ptr = weft__arena_dup(&t->describe, t->scratch.ptr, t->scratch.len);
        info.value.len = t->scratch.len;
        if (info.value.ptr == NULL) {
            return weft__err(WEFT_ENOMEM, "out of memory describing an op");
        }
    } else if (d.kind == WEFT__OP_DEL) {
        info.value.ptr = "";
        info.value.len = 0;
    }
    if (d.nprev > 0) {
        weft_id *ids = weft__arena_alloc(&t->describe, d.nprev * sizeof *ids);
        if (ids == NULL) {
            return weft__err(WEFT_ENOMEM, "out of memory describing an op");
        }
        for (uint32_t i = 0; i < d.nprev; i++) {
            ids[i] = weft__id_get(d.prev + (size_t)i * WEFT__ID_BYTES);
        }
        info.prev = ids;
        info.nprev = d.nprev;
    }
    if (info.coll == NULL || info.entity == NULL || info.field == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory describing an op");
    }
    *out = info;
    return 0;
}
