/* store_int.h - the store's internal structures and the functions its files
 * share: the LMDB environment and named databases, transactions with their
 * journal, map growth, and the one routine that applies an op (local or
 * remote) to the log and the materialised state.
 *
 * On-disk layout (one LMDB environment per store directory; every integer
 * big-endian so that byte order is numeric order):
 *   ops        id (hlc 8 | device 8)          -> canonical op payload
 *   by_device  device 8 (DUPSORT|DUPFIXED)    -> hlc 8, one dup per op
 *   fields     "coll\0entity\0field\0"        -> field state record (crdt); for a
 *                                                counter only the summary
 *                                                (sum, count, newest id)
 *   counters   "coll\0entity\0field\0" | id 16 -> delta 8 (two's complement):
 *                                                one row per increment with
 *                                                an id above the entity's
 *                                                tombstone; a field's rows
 *                                                are contiguous, by id
 *   entities   "coll\0entity\0"               -> tombstone id 16 (deleted only)
 *   conflicts  "coll\0entity\0field\0"        -> empty; exactly the fields
 *                                                whose register has >1 head
 *   vv         device 8                       -> hlc 8 (highest held)
 *   meta       "schema" u32 (= 1), "device" u64, "store_id" 16 bytes,
 *              "public_key" 32 bytes, "last_hlc" u64, "ops" u64,
 *              "conflicts" u64
 *   peers      reserved for the sync engine (raw puts via weft__txn_put)
 * Beside data.mdb and lock.mdb the directory holds `key` (mode 0600:
 * "WEFTKEY1" | public 32 | secret 32) and `writer.lock` (an flock(2) taken by
 * every weft write transaction, see txn.c).
 *
 * Invariants:
 *   1. In a write transaction the cached version vector (weft_txn.vv) and
 *      the cached meta counters are the truth; they reach the vv and meta
 *      databases in weft__store_flush(), which runs before every commit (and
 *      before a dump), so a committed store always has them in sync.
 *   2. The journal of a write transaction lists, in order, every op applied
 *      and every raw put made through it, so that replaying it on the state
 *      the transaction began from reproduces the transaction exactly. The
 *      writer.lock flock guarantees that state has not moved when a map
 *      growth makes us replay.
 *   3. Every transaction holds its store's map_lock shared for its whole
 *      life; mdb_env_set_mapsize() runs only under it exclusively.
 *   4. No MDB_* code leaves the store module: weft__store_mdb_err translates
 *      each at the edge, except WEFT__EMAPFULL, which never leaves txn.c's
 *      retry loops.
 *   5. The `counters` rows of a field are exactly its INC ops with an id
 *      above the entity's tombstone, and its record's counter summary is
 *      their sum, number and greatest id (apply.c keeps both in step, in the
 *      same MDB txn, so journal replay and nested-txn abort cover them).
 * Thread-safety: weft_store fields are immutable after open except those
 * marked with the lock that guards them; a weft_txn is one thread at a time.
 */
#ifndef WEFT_STORE_INT_H
#define WEFT_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../clock/clock_int.h"
#include "../common/weft_int.h"
#include "../crdt/crdt_int.h"

#define WEFT__SCHEMA          1u
#define WEFT__DEFAULT_MAP     ((size_t)64 << 20)
#define WEFT__GROW_TIMEOUT_MS 10000
/* MDB_MAP_FULL seen inside the store: grow the map and replay. Internal only. */
#define WEFT__EMAPFULL        (-1000)

enum weft__db {
    WEFT__DB_OPS = 0,
    WEFT__DB_BY_DEVICE,
    WEFT__DB_FIELDS,
    WEFT__DB_COUNTERS,
    WEFT__DB_ENTITIES,
    WEFT__DB_CONFLICTS,
    WEFT__DB_VV,
    WEFT__DB_META,
    WEFT__DB_PEERS,
    WEFT__DB_COUNT
};

/** Name of a named database ("ops", ...). */
const char *weft__store_db_name(int db);
/** The database called @p name, or -1. */
int weft__store_db_find(const char *name);

struct weft_store {
    MDB_env *env;
    MDB_dbi dbi[WEFT__DB_COUNT];
    char *dir;
    uint64_t device;
    uint8_t public_key[WEFT_KEY_BYTES];
    uint8_t secret_key[WEFT_KEY_BYTES];
    uint8_t store_id[16];
    int lock_fd; /* writer.lock: flock(LOCK_EX) for the life of a write txn */

    /* Serialises write transactions in this process (error-checking, so a
     * second write txn in one thread is detected) and guards the clock. */
    pthread_mutex_t write_mu;
    weft__hlc clock; /* write_mu */

    /* Held shared by every live txn, exclusively around mdb_env_set_mapsize. */
    pthread_rwlock_t map_lock;

    pthread_mutex_t notify_mu;
    int notify_fd;     /* notify_mu; -1 until first asked for */
    uint64_t seen_seq; /* notify_mu; last change sequence reported */
};

/* One entry of a version vector. */
typedef struct weft__vvent {
    uint64_t device, hlc;
    bool dirty; /* write txn cache: not yet put in the vv db */
} weft__vvent;

struct weft_txn {
    weft_store *s;
    MDB_txn *txn; /* the current LMDB txn (a child during weft_apply) */
    bool rdonly;
    bool poisoned;     /* a write failed half-way: only abort is allowed */
    bool mapshared;    /* we hold s->map_lock shared */
    bool wrote;        /* the last weft__store_apply_op wrote to the MDB txn */
    weft__arena arena; /* views handed out, until the txn ends */
    weft__arena describe; /* weft_op_describe's views, until its next call */
    weft__buf key, key2, val, payload, canon, prev, scratch;
    weft__fstate fs;
    uint64_t visited; /* records visited by weft_ops_since (tests check O(delta)) */

    /* Write txns only. */
    size_t base_txnid; /* mdb_txn_id at begin: a replay must find it unchanged */
    weft__buf journal;
    weft__vvent *vv;
    size_t nvv, vvcap;
    weft__vvent *vv_save;
    size_t vv_savecap;
    uint64_t ops, conflicts, last_hlc;    /* cached meta values */
    uint64_t ops0, conflicts0, last_hlc0; /* as in the db */
};

/* ---- errors (store.c) ---- */
/** Translate an LMDB/errno code at the edge; @p what names the operation. */
int weft__store_mdb_err(int rc, const char *what);

/* ---- transactions (txn.c) ---- */
/** Grow the map after WEFT__EMAPFULL: abort, grow, begin again and replay the
 * journal. On failure the txn is poisoned. */
int weft__store_regrow(weft_txn *t);
/** Write the cached vv and meta counters into their databases. */
int weft__store_flush(weft_txn *t);
/** Journal an op (before applying it). 0 or WEFT_ENOMEM. */
int weft__store_journal_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len, bool local);
/** Raw put into a named db ("peers", "meta", ...), journaled so it survives a
 * map growth. For the sync engine's per-peer cursors. val NULL = delete. */
int weft__txn_put(weft_txn *t, const char *db, weft_bytes key, const weft_bytes *val);
/** Raw get from a named db; the view is valid until the next write. */
int weft__txn_get(weft_txn *t, const char *db, weft_bytes key, weft_bytes *val);
/** Records visited by weft_ops_since in this txn so far. */
uint64_t weft__store_visited(const weft_txn *t);
/** Test helper: append every record of db @p name as (u32 klen, key, u32
 * vlen, val) to @p out (flushing the write cache first). */
int weft__store_dump(weft_txn *t, const char *db, weft__buf *out);

/* ---- vv cache (apply.c) ---- */
uint64_t weft__store_vv_get(const weft_txn *t, uint64_t device);
int weft__store_vv_set(weft_txn *t, uint64_t device, uint64_t hlc);
/** Load the cached vv and meta of a fresh write txn; floor the clock. */
int weft__store_wstate_load(weft_txn *t);

/* ---- applying ops (apply.c) ---- */
/** Put one op in the log (ops, by_device, vv cache, counters) and
 * materialise it (fields, entities, conflicts). Does not journal.
 * @p op is the decoded payload. Returns 0, WEFT__EMAPFULL, WEFT_ENOMEM,
 * WEFT_ECORRUPT, WEFT_EIO... */
int weft__store_apply_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len,
                         const weft__op *op, bool local);
/** Build "coll\0entity\0" (and "field\0" if field->len) into @p b. */
int weft__store_key(weft__buf *b, weft_bytes coll, weft_bytes entity, weft_bytes field);
/** Load the field state at @p key into t->fs (empty if absent). */
int weft__store_fstate_load(weft_txn *t, const weft__buf *key, bool *found);
/** The tombstone of the entity whose key prefix is key[0..len) ({0,0} if none). */
int weft__store_tomb(weft_txn *t, const uint8_t *key, size_t len, weft_id *tomb);

/* ---- shared read helpers (read.c) ---- */
/** A view valid until the txn ends: @p p itself in a read txn (map memory
 * is stable there), an arena copy in a write txn. NULL on ENOMEM. */
const void *weft__store_view(weft_txn *t, const void *p, size_t len);

/* ---- notify.c ---- */
void weft__store_notify_close(weft_store *s);

/** Common entry checks of a call on @p t. */
static inline int weft__store_usable(const weft_txn *t, bool write)
{
    if (t == NULL) {
        return weft__err(WEFT_EINVAL, "transaction is NULL");
    }
    if (t->poisoned || t->txn == NULL) {
        return weft__err(WEFT_ETXN, "transaction failed earlier; abort it");
    }
    if (write && t->rdonly) {
        return weft__err(WEFT_ERDONLY, "write in a read-only transaction");
    }
    return 0;
}

#endif /* WEFT_STORE_INT_H */
