/* weft_store.h - one device's durable replica: open, transactions, writes,
 * reads, conflicts, version vectors, delta export and remote apply, change
 * notification.
 *
 * A store is a directory holding an LMDB environment (the op log and the
 * materialised state) and the device's key file. No LMDB, msgpack or sodium
 * type crosses this header.
 *
 * Data model (docs/data-model.md has the merge rules with examples): a store
 * holds collections of entities (string ids) made of fields (string names).
 * A field holds one of three kinds of state:
 *   - register: weft_set() writes any msgpack value. Concurrent writes are
 *     all kept as heads; the visible value is the newest head and more than
 *     one head is a conflict, listed by weft_conflicts() until a later write
 *     (weft_set or weft_resolve) supersedes them all.
 *   - counter: weft_inc() adds a signed amount; the value is the sum.
 *   - set: weft_add()/weft_rem() elements (any msgpack value); add wins over
 *     a concurrent remove.
 * weft_del() deletes an entity: every field written by an op not after the
 * delete (in (hlc, device) order) is hidden.
 *
 * Values cross this API as msgpack bytes. Input values are validated and
 * stored in canonical form (shortest encodings, map keys sorted); values read
 * back are canonical msgpack.
 *
 * Invariants the store keeps (docs/architecture.md, pinned by tests/store):
 *   1. A write is acknowledged (weft_txn_commit returns 0) only after its
 *      LMDB transaction committed durably.
 *   2. weft_apply() applies a batch atomically: all of it or none of it.
 *   3. The replica is causally closed: for each device it holds a prefix of
 *      that device's ops; a batch that would break this is refused (WEFT_EGAP).
 *   4. Replicas holding the same ops have byte-identical state.
 *   5. Applying an op again changes nothing.
 *
 * Thread-safety: a weft_store may be shared by threads; a weft_txn may not.
 * A thread may hold several read transactions but at most one write
 * transaction; write transactions are serialised (also across processes).
 * Several processes may open the same store.
 */
#ifndef WEFT_STORE_H
#define WEFT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <weft/weft_err.h>
#include <weft/weft_export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- value types (copy freely, no destructor) ---- */

/** Bytes the holder does not own. Returned views point into the store's map
 * or the transaction's scratch space: valid until the transaction ends, never
 * to be freed or written. */
typedef struct weft_bytes {
    const void *ptr;
    size_t len;
} weft_bytes;

/** An op id: hybrid logical clock stamp and the device that issued it.
 * Total order: hlc first, device breaks ties (weft_id_cmp). */
typedef struct weft_id {
    uint64_t hlc;    /* high 48 bits: ms since the Unix epoch; low 16: counter */
    uint64_t device; /* device id: first 8 bytes of BLAKE2b(public key) */
} weft_id;

/** <0, 0, >0 as @p a sorts before, equal to, after @p b. */
WEFT_API int weft_id_cmp(weft_id a, weft_id b);
/** Milliseconds since the Unix epoch encoded in @p hlc. */
WEFT_API uint64_t weft_hlc_ms(uint64_t hlc);
/** Logical counter encoded in @p hlc. */
WEFT_API uint32_t weft_hlc_counter(uint64_t hlc);

/* clang-format off */
#define WEFT_NAME_MAX       255u          /* bytes in a collection, entity or field name */
#define WEFT_VALUE_MAX      (1u << 20)    /* bytes in one encoded value */
#define WEFT_DEPTH_MAX      32u           /* nesting of arrays/maps in a value */
#define WEFT_PREV_MAX       1024u         /* ids named by one op */
#define WEFT_PAYLOAD_MAX    (WEFT_VALUE_MAX + 4u * WEFT_NAME_MAX + 18u * WEFT_PREV_MAX + 64u)
#define WEFT_KEY_BYTES      32u           /* Curve25519 public or secret key */
#define WEFT_DEFAULT_DRIFT_MS (5u * 60u * 1000u)
/* clang-format on */

/* ---- store ---- */

/** A replica. Thread-safe (see the file comment). */
typedef struct weft_store weft_store;

enum {
    WEFT_OPEN_CREATE = 1u << 0, /* create the store if the directory holds none */
    WEFT_OPEN_EXCL = 1u << 1,   /* with CREATE: fail with WEFT_EEXIST if a store exists */
};

/** Options for weft_store_open(). Initialise with weft_options_init() and
 * change only the fields you need; the struct may grow at the end. */
typedef struct weft_options {
    unsigned flags;        /* WEFT_OPEN_* */
    size_t map_size;       /* initial LMDB map size in bytes (grows when full); 0 = default */
    uint32_t max_drift_ms; /* drift horizon for remote ops; 0 = WEFT_DEFAULT_DRIFT_MS */
    /* Wall clock in ms since the epoch; NULL = CLOCK_REALTIME. For tests. */
    uint64_t (*now_ms)(void *user);
    void *now_user;
} weft_options;

WEFT_API void weft_options_init(weft_options *opt);

/** Open the store in directory @p dir (created with WEFT_OPEN_CREATE, which
 * also generates the device's keypair).
 * @param[in]  dir  copied.
 * @param[in]  opt  copied; NULL for defaults (no create).
 * @param[out] out  caller owns; close with weft_store_close().
 * @return 0; WEFT_ENOSTORE (no store and no WEFT_OPEN_CREATE), WEFT_EEXIST (a
 * store exists and WEFT_OPEN_EXCL was given), WEFT_EVERSION
 * (store of another schema version), WEFT_ECORRUPT (not a weft store, or a
 * damaged file), WEFT_EIO, WEFT_EFULL, WEFT_ENOMEM, WEFT_EINVAL. */
WEFT_API WEFT_MUST_CHECK int weft_store_open(const char *dir, const weft_options *opt,
                                             weft_store **out);

/** Close and free. NULL-safe; sets *self_p to NULL. No transaction of this
 * store may still be open. */
WEFT_API void weft_store_close(weft_store **self_p);

/** Facts about a store, filled by weft_store_info(). */
typedef struct weft_info {
    uint64_t device;                    /* this replica's device id */
    uint8_t public_key[WEFT_KEY_BYTES]; /* this replica's Curve25519 public key */
    uint8_t store_id[16];               /* random id chosen when the store was created */
    uint32_t schema;                    /* on-disk schema version */
    uint64_t ops;                       /* ops in the log */
    uint64_t last_hlc;                  /* last HLC issued by this device (persisted) */
    uint64_t map_size;                  /* current LMDB map size in bytes */
    uint64_t used_bytes;                /* bytes of the map in use */
    uint64_t conflicts;                 /* fields currently in conflict */
} weft_info;

WEFT_API int weft_store_info(weft_store *s, weft_info *out);

/** This replica's device id. Never fails on an open store. */
WEFT_API uint64_t weft_store_device(const weft_store *s);

/** The device's secret key, for the transport. @p out receives WEFT_KEY_BYTES.
 * WARNING: secret material; wipe your copy when done.
 * @return 0; WEFT_EINVAL; WEFT_ECORRUPT if the key file's secret key does not
 * derive the store's public key (checked here, not at open); WEFT_EAUTH if
 * the key file was open to other users (group or other permission bits) when
 * the store was opened. */
WEFT_API int weft_store_secret_key(const weft_store *s, uint8_t out[WEFT_KEY_BYTES]);

/* ---- transactions ---- */

/** A transaction. One thread at a time; at most one write transaction per
 * thread. A write transaction that failed mid-write is poisoned: every call
 * but weft_txn_abort() returns WEFT_ETXN. */
typedef struct weft_txn weft_txn;

enum {
    WEFT_TXN_RDONLY = 1u << 0,
};

/** Begin a transaction. Write transactions wait for other writers (threads
 * and processes). Group commit: write transactions of one store handle
 * that begin while another is open are committed together with it, by one
 * durable commit (each in turn sees the writes of those before it; each
 * caller's weft_txn_commit returns once the whole group is on disk, and a
 * group that fails to commit fails every member). So threads doing small
 * writes share the cost of the disk flush; keep write transactions short,
 * as a member's commit also waits for the members after it in its group.
 * @param[out] out  caller owns; end with weft_txn_commit() or weft_txn_abort().
 * @return 0; WEFT_EBUSY (this thread already holds a write transaction),
 * WEFT_EIO, WEFT_ENOMEM. */
WEFT_API WEFT_MUST_CHECK int weft_txn_begin(weft_store *s, unsigned flags, weft_txn **out);

/** Commit durably; returns only once the data is on disk (with the rest of
 * its group, see weft_txn_begin). Frees *txn_p and sets it NULL whether or
 * not the commit succeeds. A full map is grown and the transaction replayed
 * transparently.
 * @return 0; WEFT_ETXN, WEFT_EFULL (disk full: nothing written), WEFT_EIO
 * (the message names the failure; for a group, the leader's), WEFT_ENOMEM
 * (a transaction joining a group: nothing of it written). */
WEFT_API WEFT_MUST_CHECK int weft_txn_commit(weft_txn **txn_p);

/** Discard. NULL-safe; sets *txn_p to NULL. */
WEFT_API void weft_txn_abort(weft_txn **txn_p);

/* ---- local writes (write transaction) ----
 * coll, id and field are NUL-terminated UTF-8 of 1..WEFT_NAME_MAX bytes,
 * copied. Values are msgpack bytes of at most WEFT_VALUE_MAX, nesting at most
 * WEFT_DEPTH_MAX, copied. Each call issues one op stamped by the store's
 * clock. Errors: WEFT_EINVAL (bad name or malformed msgpack), WEFT_ELIMIT,
 * WEFT_ERDONLY, WEFT_ETXN, WEFT_EOVERFLOW (clock exhausted), WEFT_ENOMEM,
 * WEFT_EIO. The op's id is written to @p out_id when it is not NULL. */

/** Write a register field. The op's prev names every current head, so it
 * supersedes (and resolves) whatever this replica has seen. */
WEFT_API int weft_set(weft_txn *t, const char *coll, const char *id, const char *field,
                      const void *msgpack, size_t len, weft_id *out_id);
WEFT_API int weft_set_str(weft_txn *t, const char *coll, const char *id, const char *field,
                          const char *value);
WEFT_API int weft_set_int(weft_txn *t, const char *coll, const char *id, const char *field,
                          int64_t value);
WEFT_API int weft_set_f64(weft_txn *t, const char *coll, const char *id, const char *field,
                          double value);
WEFT_API int weft_set_bool(weft_txn *t, const char *coll, const char *id, const char *field,
                           int value);
/** Resolve a conflict: like weft_set(), but WEFT_ENOTFOUND when the field is
 * not in conflict (so an app does not overwrite a newer value by mistake). */
WEFT_API int weft_resolve(weft_txn *t, const char *coll, const char *id, const char *field,
                          const void *msgpack, size_t len, weft_id *out_id);
/** Delete an entity (hides every field written by an op not after this one). */
WEFT_API int weft_del(weft_txn *t, const char *coll, const char *id, weft_id *out_id);
/** Add @p n (may be negative) to a counter field. The sum wraps modulo 2^64. */
WEFT_API int weft_inc(weft_txn *t, const char *coll, const char *id, const char *field, int64_t n,
                      weft_id *out_id);
/** Add an element (msgpack) to a set field. */
WEFT_API int weft_add(weft_txn *t, const char *coll, const char *id, const char *field,
                      const void *msgpack, size_t len, weft_id *out_id);
/** Remove an element: removes the adds of it this replica has seen; a
 * concurrent add survives. WEFT_ENOTFOUND if the element is not in the set. */
WEFT_API int weft_rem(weft_txn *t, const char *coll, const char *id, const char *field,
                      const void *msgpack, size_t len, weft_id *out_id);

/* ---- reads (any transaction; views valid until the transaction ends) ---- */

typedef enum weft_kind {
    WEFT_KIND_REGISTER = 1,
    WEFT_KIND_COUNTER = 2,
    WEFT_KIND_SET = 3,
} weft_kind;

/** One visible field. Every pointer is borrowed until the transaction ends. */
typedef struct weft_field {
    const char *coll;   /* NUL-terminated */
    const char *entity; /* NUL-terminated */
    const char *name;   /* NUL-terminated */
    weft_kind kind;
    weft_bytes value; /* canonical msgpack: newest head, sum (int) or elements (array) */
    weft_id id;       /* the newest op behind the visible value */
    uint32_t heads;   /* visible register heads; > 1 means the field is in conflict */
} weft_field;

/** Callbacks return 0 to go on, nonzero to stop (the call then returns 0 plus
 * what it counted). Their arguments are borrowed for the call only. */
typedef int (*weft_field_cb)(const weft_field *f, void *user);

/** Read one field. @return 0; WEFT_ENOTFOUND (absent, or hidden by a delete). */
WEFT_API int weft_get(weft_txn *t, const char *coll, const char *id, const char *field,
                      weft_field *out);

/** Call @p cb for each visible field of one entity, in field-name order.
 * @return the number of fields (WEFT_ENOTFOUND if none is visible). */
WEFT_API int weft_entity_read(weft_txn *t, const char *coll, const char *id, weft_field_cb cb,
                              void *user);

/** Call @p cb for each visible field of the entities of @p coll whose id sorts
 * after @p after (NULL: from the start), entity by entity in id order, for at
 * most @p limit entities (0: no limit). Paging: pass the last entity id seen
 * as @p after. @return the number of entities visited. */
WEFT_API int weft_scan(weft_txn *t, const char *coll, const char *after, size_t limit,
                       weft_field_cb cb, void *user);

/** One head of a field in conflict. */
typedef struct weft_head {
    weft_id id;       /* the op that wrote it: its time (hlc) and device */
    weft_bytes value; /* canonical msgpack */
} weft_head;

typedef struct weft_conflict {
    const char *coll, *entity, *field;
    const weft_head *heads; /* nheads >= 2, newest first (the visible one first) */
    size_t nheads;
} weft_conflict;

typedef int (*weft_conflict_cb)(const weft_conflict *c, void *user);

/** Call @p cb for every field in conflict (of @p coll, or all when NULL).
 * @return the number of conflicts visited. */
WEFT_API int weft_conflicts(weft_txn *t, const char *coll, weft_conflict_cb cb, void *user);

/* ---- version vectors ---- */

/** device -> highest hlc held. Owned by its creator; one thread at a time. */
typedef struct weft_vv weft_vv;

WEFT_API WEFT_MUST_CHECK int weft_vv_new(weft_vv **out);
WEFT_API void weft_vv_destroy(weft_vv **self_p); /* NULL-safe */
/** 0 when absent. */
WEFT_API uint64_t weft_vv_get(const weft_vv *vv, uint64_t device);
/** Set @p device to @p hlc (0 removes it). WEFT_ENOMEM. */
WEFT_API int weft_vv_set(weft_vv *vv, uint64_t device, uint64_t hlc);
/** Number of devices, and the i-th (device order), for iteration. */
WEFT_API size_t weft_vv_count(const weft_vv *vv);
WEFT_API int weft_vv_entry(const weft_vv *vv, size_t i, uint64_t *device, uint64_t *hlc);
/** Canonical msgpack (a map of uint -> uint in device order). Sets *len to the
 * size needed; WEFT_ENOSPC (nothing written) when @p cap is smaller. */
WEFT_API int weft_vv_encode(const weft_vv *vv, uint8_t *buf, size_t cap, size_t *len);
/** Decode; trusts nothing (WEFT_ECORRUPT, WEFT_ELIMIT over 65536 devices). */
WEFT_API WEFT_MUST_CHECK int weft_vv_decode(const uint8_t *buf, size_t len, weft_vv **out);
/** This replica's version vector. @param[out] out caller owns. */
WEFT_API WEFT_MUST_CHECK int weft_store_vv(weft_txn *t, weft_vv **out);

/* ---- the op log: export and remote apply ---- */

/** An op as it travels: routing header and opaque payload. The log, the
 * version vector and delta computation never look inside the payload. */
typedef struct weft_op {
    weft_id id;
    uint64_t dprev;     /* hlc of the same device's previous op; 0 for its first */
    weft_bytes payload; /* canonical msgpack body (crdt/op.c documents it) */
} weft_op;

typedef int (*weft_op_cb)(const weft_op *op, void *user);

/** Stream, in (hlc, device) order, the ops a replica whose version vector is
 * @p have lacks (NULL: every op). Cost grows with the ops streamed, not with
 * the log. @p cb gets views into the store, valid until @p t ends (copy
 * what must outlive it); a non-zero return stops the stream. Inside @p cb,
 * reads through @p t are allowed (a nested weft_ops_since too), writes are
 * refused with WEFT_EINVAL (the stream holds views a write could move), and
 * @p t must not be committed or aborted.
 * @return the number of ops streamed (capped at INT_MAX); WEFT_EINVAL (NULL
 * @p cb), WEFT_ETXN, WEFT_ENOMEM, WEFT_ECORRUPT (a damaged op log). */
WEFT_API int weft_ops_since(weft_txn *t, const weft_vv *have, weft_op_cb cb, void *user);

/** What weft_apply() did. */
typedef struct weft_apply_result {
    size_t failed_at;  /* on error: index of the op that failed the batch, else n */
    size_t applied;    /* new ops applied */
    size_t duplicates; /* ops already held (skipped) */
    size_t deferred;   /* ops left for later: beyond the drift horizon */
    uint64_t skew_ms;  /* when deferred: how far the first deferred op is ahead of our clock */
} weft_apply_result;

/** Apply a batch of remote ops (ascending (hlc, device) order) in the write
 * transaction @p t, atomically: on any error nothing of the batch remains and
 * @p t stays usable. Ops beyond the drift horizon end the batch: those before
 * are applied and the rest counted as deferred (not an error). Duplicates are
 * skipped. The store's clock observes every applied op. On error, when @p res
 * is not NULL, only res->failed_at is written: the index of the op that failed
 * the batch (n when no single op did, e.g. out of memory).
 * @param[in] ops  borrowed for the call.
 * @return 0; WEFT_EGAP (an op's device predecessor, or an op it names, is not
 * held), WEFT_ECORRUPT (malformed op, or out of order), WEFT_ECONFLICT (an op
 * id already held with other content), WEFT_ELIMIT, WEFT_ERDONLY, WEFT_ETXN,
 * WEFT_ENOMEM, WEFT_EIO. */
WEFT_API int weft_apply(weft_txn *t, const weft_op *ops, size_t n, weft_apply_result *res);

/** A decoded view of an op's payload, for logs and tools. Borrowed from the
 * op's payload and @p t's scratch space: valid while the payload is, until
 * the next weft_op_describe() on @p t or the end of @p t, whichever is first
 * (so describing a whole log runs in constant memory). */
typedef struct weft_op_info {
    const char *kind;                  /* "set", "del", "inc", "add", "rem" */
    const char *coll, *entity, *field; /* field is "" for del */
    weft_bytes value;    /* set: value; inc: the amount (int); add/rem: element; del: empty */
    const weft_id *prev; /* set: heads seen; rem: adds removed */
    size_t nprev;
} weft_op_info;

/** Decode @p op's payload. WEFT_ECORRUPT if malformed. */
WEFT_API int weft_op_describe(weft_txn *t, const weft_op *op, weft_op_info *out);

/* ---- change notification ---- */

/** A file descriptor that becomes readable when the store may have changed,
 * by this or another process. Poll it in your event loop, then call
 * weft_store_changed(). Borrowed: valid until the store is closed. */
WEFT_API int weft_store_fd(weft_store *s, int *fd);

/** Drain the notification fd and report the store's change sequence (it
 * grows with every committed write transaction, from any process).
 * @return 1 if it moved since the last call on this store, 0 if not. */
WEFT_API int weft_store_changed(weft_store *s, uint64_t *seq);

/** Block until the store changes or @p timeout_ms passes (-1: forever).
 * @return 1 changed, 0 timed out; WEFT_EIO. */
WEFT_API int weft_store_wait(weft_store *s, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_STORE_H */
