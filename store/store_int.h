/* store_int.h - the store's internal structures and the functions its files
 * share: the LMDB environment and named databases, transactions with their
 * journal, map growth, and the one routine that applies an op (local or
 * remote) to the log and the materialised state.
 *
 * On-disk layout (one LMDB environment per store directory; every integer
 * big-endian so that byte order is numeric order):
 *   ops        device 8 | hlc 8               -> a block of consecutive ops
 *                                                of that device, the key
 *                                                naming its first
 *                                                (oplog.c): ordinal, then
 *                                                each op's hlc step and
 *                                                canonical payload. Keyed
 *                                                device first, so each
 *                                                device's chain is one run
 *                                                of blocks: the last op of
 *                                                its last block is the
 *                                                device's version vector
 *                                                entry, and an op's dprev
 *                                                (protocol.md) is the op
 *                                                before it in its run (not
 *                                                stored). Ids elsewhere (op
 *                                                payloads, `counters`,
 *                                                `entities`, the journal,
 *                                                the API) stay hlc | device.
 *   fields     "coll\0entity\0field\0"        -> field state record (crdt); a
 *                                                register value over
 *                                                WEFT__INLINE_MAX bytes is a
 *                                                ref to its op in `ops`
 *                                                (record.c); for a counter
 *                                                only the summary (sum,
 *                                                count, newest id)
 *   counters   "coll\0entity\0field\0" | id 16 -> delta 8 (two's complement):
 *                                                one row per increment with
 *                                                an id above the entity's
 *                                                tombstone; a field's rows
 *                                                are contiguous, by id
 *   entities   "coll\0entity\0"               -> tombstone id 16 (deleted only)
 *   conflicts  "coll\0entity\0field\0"        -> empty; exactly the fields
 *                                                whose register has >1 head
 *   meta       "schema" u32 (= 3), "device" u64, "store_id" 16 bytes,
 *              "public_key" 32 bytes; written once, at creation
 *   peers      reserved for the sync engine (raw puts via weft__txn_put)
 * Derived, never stored: the version vector (the last op of each device's
 * run in ops), each op's dprev (the op before it in its run), the op count
 * (the sum over devices of the last op's ordinal + 1), the conflict count
 * (entries of conflicts) and last_hlc (this device's vv entry). A local
 * write so dirties at most ops and fields (plus conflicts/counters/entities
 * when it touches them); weft__store_dump(t, "vv") synthesises the old vv
 * db's bytes and weft__store_dump(t, "ops") one record per op (id key ->
 * payload) whatever the blocks. Schema 1 (ops keyed hlc | device plus a
 * by_device index) and schema 2 (one op per key of ops) are refused with
 * WEFT_EVERSION.
 * Beside data.mdb and lock.mdb the directory holds `key` (mode 0600:
 * "WEFTKEY1" | public 32 | secret 32) and `writer.lock` (an flock(2) taken by
 * every weft write transaction, see txn.c).
 *
 * Invariants:
 *   1. In a write transaction the cached version vector (weft_txn.vv) and
 *      conflict count (weft_txn.conflicts) are the truth; both are derived
 *      state, loaded from ops and conflicts at begin (and after a map
 *      growth) and kept in step by apply.c, never written anywhere: the
 *      databases they are derived from are written in the same MDB txn.
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
 *   6. A register head stored as a ref (record.c) names a SET op held in
 *      `ops` whose value is longer than WEFT__INLINE_MAX; nothing removes
 *      ops from the log, and compaction, when it comes, must keep heads.
 * Thread-safety: weft_store fields are immutable after open except those
 * marked with the lock that guards them; a weft_txn is one thread at a time.
 */
#ifndef WEFT_STORE_INT_H
#define WEFT_STORE_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../clock/clock_int.h"
#include "../common/weft_int.h"
#include "../crdt/crdt_int.h"

#define WEFT__SCHEMA          3u
/* LMDB's map is address space, not disk: the file grows only with the pages
 * used. A large default makes growth (which must wait for every txn of the
 * process to end) rare; it still works from any size (tests start at 64 KiB). */
#define WEFT__DEFAULT_MAP     ((size_t)1 << 30)
#define WEFT__GROW_TIMEOUT_MS 10000
/* MDB_MAP_FULL seen inside the store: grow the map and replay. Internal only. */
#define WEFT__EMAPFULL        (-1000)

/* Register values longer than this live only in the op log (record.c). A
 * build may override it (-DWEFT__INLINE_MAX=4294967295u: refs off); stores
 * written with different values are not interchangeable. */
#ifndef WEFT__INLINE_MAX
#define WEFT__INLINE_MAX 64u
#endif

enum weft__db {
    WEFT__DB_OPS = 0,
    WEFT__DB_FIELDS,
    WEFT__DB_COUNTERS,
    WEFT__DB_ENTITIES,
    WEFT__DB_CONFLICTS,
    WEFT__DB_META,
    WEFT__DB_PEERS,
    WEFT__DB_COUNT
};

/* The key of op (hlc, device) in `ops`: device then hlc, big-endian. */
#define WEFT__OPKEY_BYTES 16u
static inline void weft__store_opkey_put(uint8_t *k, weft_id id)
{
    weft__be64_put(k, id.device);
    weft__be64_put(k + 8, id.hlc);
}
/** The op id of an `ops` key (exactly WEFT__OPKEY_BYTES). */
static inline weft_id weft__store_opkey_get(const uint8_t *k)
{
    weft_id id = {weft__be64_get(k + 8), weft__be64_get(k)};
    return id;
}

/** Name of a named database ("ops", ...). */
const char *weft__store_db_name(int db);
/** The database called @p name, or -1. */
int weft__store_db_find(const char *name);

/* Group commit (txn.c). A write txn that finds none running leads a group:
 * it holds writer.lock and the one MDB write txn (the parent), and works in
 * it directly. When it commits, write txns that began meanwhile join in
 * turn, each in a child MDB txn of the parent, and the leader then commits
 * the parent once, durably, for all of them. */
enum { WEFT__G_IDLE, WEFT__G_WORKING, WEFT__G_OPEN, WEFT__G_CLOSED };
typedef struct weft__member {
    struct weft__member *next;
    int rc;        /* the group's commit result, set by the leader */
    bool done;     /* rc is set */
    char msg[256]; /* the leader's error message when rc != 0 */
} weft__member;
typedef struct weft__waiter {
    struct weft__waiter *next;
    pthread_cond_t cv; /* signalled when it may be its turn */
} weft__waiter;
typedef struct weft__group {
    int state;               /* WEFT__G_*: no group, leader working, admitting, committing */
    struct weft_txn *leader; /* while not IDLE: the parent txn and the group's journal */
    pthread_t worker;        /* the thread whose txn is working (leader or follower) */
    bool has_worker;
    unsigned waiting;                /* threads waiting in weft_txn_begin: the queue's length */
    weft__waiter *wq_head, *wq_tail; /* ... in arrival order */
    unsigned active;                 /* 0 or 1: a follower is working in its child txn */
    unsigned members;                /* followers admitted to this group */
    weft__member *done;              /* followers that committed their child, awaiting the result */
    bool need_grow;                  /* the active follower met a full map: the leader grows it */
    unsigned grow_gen;               /* +1 after each growth done for a follower */
    int grow_rc;                     /* its result */
    uint64_t commits;                /* statistics: groups committed, followers in them */
    uint64_t joined;
    char msg[256]; /* the leader's error message when a group commit failed */
} weft__group;

struct weft_store {
    MDB_env *env;
    MDB_dbi dbi[WEFT__DB_COUNT];
    char *dir;
    uint64_t device;
    uint8_t public_key[WEFT_KEY_BYTES];
    uint8_t secret_key[WEFT_KEY_BYTES];
    unsigned key_mode; /* the key file's permission bits at open */
    uint8_t store_id[16];
    int lock_fd; /* writer.lock: flock(LOCK_EX) for the life of a write txn */

    /* Write transactions of this process and their group commit (txn.c).
     * The clock belongs to the write txn that is working (group.worker). */
    pthread_mutex_t group_mu;
    pthread_cond_t group_cv; /* the leader; a follower waiting for a growth */
    pthread_cond_t done_cv;  /* followers waiting for their group's result */
    weft__group group;       /* group_mu */
    weft__hlc clock;         /* the working write txn's */

    /* Held shared by every live txn, exclusively around mdb_env_set_mapsize. */
    pthread_rwlock_t map_lock;
    /* A growth waiting for map_lock: threads holding no txn of this store
     * wait on grow_cv before taking map_lock shared (glibc's rwlock prefers
     * readers, so a stream of short read txns would starve the growth). */
    atomic_int grow_waiting;
    pthread_mutex_t grow_mu;
    pthread_cond_t grow_cv;

    pthread_mutex_t notify_mu;
    int notify_fd;       /* notify_mu; epoll set of ino_fd + timer_fd; -1 until first asked for */
    int ino_fd;          /* notify_mu; inotify watching data.mdb */
    int timer_fd;        /* notify_mu; re-check while a seen commit is not readable yet */
    unsigned recheck_us; /* notify_mu; current re-check delay, 0 when none is armed */
    unsigned recheck_left_us; /* notify_mu; budget left for re-checks of this commit */
    uint64_t seen_seq;        /* notify_mu; last change sequence reported */
};

/* One entry of a version vector. */
typedef struct weft__vvent {
    uint64_t device, hlc;
} weft__vvent;

struct weft_txn {
    weft_store *s;
    MDB_txn *txn; /* the current LMDB txn (a child during weft_apply) */
    bool rdonly;
    bool follower;        /* a write txn in a child of another txn's group */
    bool poisoned;        /* a write failed half-way: only abort is allowed */
    bool mapshared;       /* we hold s->map_lock shared */
    bool wrote;           /* the last weft__store_apply_op wrote to the MDB txn */
    weft__arena arena;    /* views handed out, until the txn ends */
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
    uint64_t conflicts; /* entries of `conflicts`, kept in step by apply.c; session.c
                         * compares it around weft_apply to report new conflicts */
    /* Greatest key of `fields` in this MDB txn, or above it (never below:
     * an insert of a greater key updates it; a delete or an aborted nested
     * txn may leave it above the real last key, which is safe).
     * lastkey_known false: not looked up yet in this MDB txn. */
    weft__buf lastkey;
    bool lastkey_known;
    bool lastkey_none; /* known, and `fields` was empty */
    /* The fields cursor of the op being applied: opened by local_write or
     * weft__store_apply_op, positioned by weft__store_fstate_load; NULL
     * otherwise (LMDB frees a write txn's cursors when the txn ends). */
    MDB_cursor *fcur;
    bool fs_ready; /* t->fs holds the state of t->key, t->fcur is on it */
    bool fs_found; /* ... and the record exists */
    /* The ops cursor every append of this MDB txn goes through (oplog.c;
     * NULL until the first, and after weft__oplog_cursor_drop), and what
     * the last append left: the cursor sits on the block (device, first)
     * whose last op is (last, ord), valid while tail_valid. */
    MDB_cursor *ocur;
    /* Inside weft_ops_since's callback: the stream holds views into blocks
     * across callbacks, which a write could move, so writes are refused. */
    bool streaming;
    bool tail_valid;
    uint64_t tail_device, tail_first, tail_last, tail_ord;
};

/* ---- errors (store.c) ---- */
/** Translate an LMDB/errno code at the edge; @p what names the operation. */
int weft__store_mdb_err(int rc, const char *what);

/* ---- transactions (txn.c) ---- */
/** Grow the map after WEFT__EMAPFULL: abort, grow, begin again and replay the
 * journal. On failure the txn is poisoned. */
int weft__store_regrow(weft_txn *t);
/** Group commit statistics: groups committed, followers that joined them,
 * threads waiting in weft_txn_begin now (tests). */
void weft__store_group_stats(weft_store *s, uint64_t *commits, uint64_t *joined, unsigned *waiting);
/** Forget what a write txn caches about its MDB txn (the last key of
 * `fields`): call when t->txn is replaced (map growth) or raw-written. */
void weft__store_wcache_reset(weft_txn *t);
/** Journal an op (before applying it). 0 or WEFT_ENOMEM. */
int weft__store_journal_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len, bool local);
/** Raw put into a named db ("peers", "meta", ...), journaled so it survives a
 * map growth. For the sync engine's per-peer cursors. val NULL = delete.
 * "ops" is refused (WEFT_EINVAL): only oplog.c writes it, which is what
 * lets an append trust the tail it cached. */
int weft__txn_put(weft_txn *t, const char *db, weft_bytes key, const weft_bytes *val);
/** Raw get from a named db; the view is valid until the next write. For
 * "ops" the key is an op id as everywhere else (16 bytes, hlc | device),
 * translated to the stored key order. */
int weft__txn_get(weft_txn *t, const char *db, weft_bytes key, weft_bytes *val);
/** Records visited by weft_ops_since in this txn so far. */
uint64_t weft__store_visited(const weft_txn *t);
/** Test helper: append every record of db @p name as (u32 klen, key, u32
 * vlen, val) to @p out. "vv" is not a database any more: its records
 * (device 8 -> hlc 8, ascending) are synthesised from ops. */
int weft__store_dump(weft_txn *t, const char *db, weft__buf *out);

/* ---- version vectors (vv.c) ---- */
/** Append @p vv's canonical encoding (a msgpack map device -> hlc, what
 * weft_vv_encode and the sync protocol write) to @p b. 0 or WEFT_ENOMEM;
 * on error @p b is as it was. */
int weft__vv_put(weft__buf *b, const weft_vv *vv);
/** Raise each entry of @p dst to @p src's where that is higher (an entry
 * never goes down). *changed (may be NULL) tells whether any did. 0,
 * WEFT_ENOMEM or WEFT_ELIMIT; on error @p dst holds a prefix of the merge. */
int weft__vv_merge(weft_vv *dst, const weft_vv *src, bool *changed);
/** Does @p b hold everything @p a does (a <= b entrywise)? */
bool weft__vv_le(const weft_vv *a, const weft_vv *b);

/* ---- the op log (oplog.c) ---- */
/* A block of `ops` holding more than one op is at most this many bytes: a
 * few ops per LMDB node, and at most about a quarter page (LMDB nodes of
 * 4 KiB pages pack worse as they grow, and each append rewrites the block). */
#define WEFT__BLOCK_CAP 512u
/** The payload of op @p id: a view into the map, valid like any
 * weft__txn_get view. 0, WEFT_ENOTFOUND (not held; no message set),
 * WEFT_ECORRUPT, or an MDB error translated. */
int weft__oplog_get(weft_txn *t, weft_id id, weft_bytes *payload);
/** Append op @p id, its device's next (id.hlc above the vv cache's entry),
 * to the end of its device's run. Writes only `ops`, through t->ocur, which
 * it opens if needed and keeps (with the tail it appended to) until
 * weft__oplog_cursor_drop. */
int weft__oplog_append(weft_txn *t, weft_id id, const uint8_t *payload, size_t len);
/** Close t->ocur and forget the tail: before t->txn ends or is replaced,
 * and before a child txn of it begins (a parent's cursor is unusable
 * meanwhile). */
void weft__oplog_cursor_drop(weft_txn *t);
typedef int (*weft__oplog_run_fn)(void *user, uint64_t device, uint64_t hlc, uint64_t nops);
/** Call @p fn for each device's run in ops, ascending by device, with the
 * device's newest hlc and op count. A non-zero return of @p fn stops the
 * walk and is returned. WEFT_ECORRUPT for a malformed key or block. */
int weft__oplog_runs(weft_txn *t, weft__oplog_run_fn fn, void *user);
/** Append one (u32 16, id key device | hlc, u32 len, payload) record per op,
 * in key order, to @p out (weft__store_dump's "ops"). */
int weft__oplog_dump(weft_txn *t, weft__buf *out);

/* ---- vv cache (apply.c) ---- */
uint64_t weft__store_vv_get(const weft_txn *t, uint64_t device);
int weft__store_vv_set(weft_txn *t, uint64_t device, uint64_t hlc);
/** Call @p fn for each (device, hlc) of the version vector held in the MDB
 * txn, ascending by device: the last op of each device's run in ops
 * (oplog.c). A
 * non-zero return of @p fn stops the walk and is returned. WEFT_ECORRUPT for
 * a malformed ops key. */
int weft__store_vv_each(weft_txn *t, int (*fn)(void *user, uint64_t device, uint64_t hlc),
                        void *user);
/** Load the cached vv and conflict count of a fresh write txn (from
 * ops and conflicts) and floor the clock with the vv's greatest hlc. */
int weft__store_wstate_load(weft_txn *t);

/* ---- applying ops (apply.c) ---- */
/** Put one op in the log (ops, vv cache, counters) and
 * materialise it (fields, entities, conflicts). Does not journal.
 * @p op is the decoded payload. Returns 0, WEFT__EMAPFULL, WEFT_ENOMEM,
 * WEFT_ECORRUPT, WEFT_EIO... */
int weft__store_apply_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len,
                         const weft__op *op, bool local);
/** Build "coll\0entity\0" (and "field\0" if field->len) into @p b. */
int weft__store_key(weft__buf *b, weft_bytes coll, weft_bytes entity, weft_bytes field);
/** Load the field state at @p key into t->fs (empty if absent). In a write
 * txn with t->fcur open, positions t->fcur on the record (skipping the
 * search when the key sorts after every key of `fields`) and sets
 * t->fs_ready. */
int weft__store_fstate_load(weft_txn *t, const weft__buf *key, bool *found);
/** Open t->fcur on `fields` (write txns). 0 or an MDB error translated. */
int weft__store_fcur_open(weft_txn *t);
/** Close t->fcur if open and clear t->fs_ready. */
void weft__store_fcur_close(weft_txn *t);
/** The tombstone of the entity whose key prefix is key[0..len) ({0,0} if none). */
int weft__store_tomb(weft_txn *t, const uint8_t *key, size_t len, weft_id *tomb);

/* ---- the `fields` record (record.c) ---- */
/** The value view of a ref head in a decoded state: {weft__store_ref_nil, 1}. */
extern const uint8_t weft__store_ref_nil[1];
/** Decode a `fields` record (plain or ref) into @p st; ref heads get the
 * view above. WEFT_ECORRUPT, WEFT_ELIMIT, WEFT_ENOMEM. */
int weft__store_rec_decode(const uint8_t *buf, size_t len, weft__fstate *st);
/** Append the record of @p st to @p out (nothing for an empty state). Heads
 * with values over WEFT__INLINE_MAX become ref heads in @p st. */
int weft__store_rec_encode(weft__fstate *st, weft__buf *out);
/** Is @p h a ref head (its value in `ops` only)? */
bool weft__store_head_is_ref(const weft__head *h);
/** The value of head @p h: its own view, or for a ref head the value of its
 * SET op in `ops` (a view into the map, valid like any weft_txn_get view). */
int weft__store_head_value(weft_txn *t, const weft__head *h, weft_bytes *out);

/* ---- shared read helpers (read.c) ---- */
/** A view valid until the txn ends: @p p itself in a read txn (map memory
 * is stable there), an arena copy in a write txn. NULL on ENOMEM. */
const void *weft__store_view(weft_txn *t, const void *p, size_t len);

/* ---- notify.c ---- */
void weft__store_notify_close(weft_store *s);
/** The txn id of the snapshot a new read transaction sees (the change
 * sequence of weft_store_changed). */
int weft__store_snapshot_id(weft_store *s, uint64_t *id);

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
    if (write && t->streaming) {
        return weft__err(WEFT_EINVAL, "write inside weft_ops_since's callback");
    }
    return 0;
}

#endif /* WEFT_STORE_INT_H */
