/* killpoint.h - numbered crash points for the crash sweep (tests/crash/).
 *
 * WEFT__KILLPOINT(WEFT__KP_x) marks a step of the local write path, the
 * remote apply path, the acknowledgement path or store creation. In every
 * build but the crash sweep's it expands to nothing: libweft (static and
 * shared, installed) contains no kill point. The sweep's programs link
 * weft_killpoints (tests/crash/CMakeLists.txt), the same sources compiled
 * with -DWEFT_KILLPOINTS, where the macro calls weft__killpoint(), which:
 *   - counts the passages through each point;
 *   - with WEFT_KILL_AT=<point>:<hit> in the environment (read once), sends
 *     the process SIGKILL on the <hit>-th passage (1-based) through <point>;
 *   - with WEFT_KILL_COUNT=<file>, writes "<point> <hits>" lines for every
 *     point passed to <file> when the process exits normally (so the driver
 *     learns which points a workload reaches and how often).
 *
 * The numbers are stable (the driver and docs/reliability.md name points by
 * them): append new points, never renumber. The table below is the one list
 * of them; "in the txn" means written in an LMDB write transaction that has
 * not committed yet.
 *
 * Invariants:
 *   1. Without WEFT_KILLPOINTS the macro is ((void)0) and weft__killpoint is
 *      neither declared nor defined.
 *   2. Every number in WEFT__KP_MAP is unique and <= WEFT__KP_MAX.
 * Thread-safety: weft__killpoint may be called from any thread (atomic
 * counters, environment read once under pthread_once).
 */
#ifndef WEFT_KILLPOINT_H
#define WEFT_KILLPOINT_H

#include <stddef.h>

/* clang-format off */
#define WEFT__KP_MAP(X)                                                                          \
    /* local write path: store/txn.c, store/write.c, store/apply.c */                            \
    X(WEFT__KP_TXN_BEGUN,          1, "write txn begun: locks held, vv loaded, clock floored")    \
    X(WEFT__KP_OP_STAMPED,         2, "local op stamped and encoded, not journaled or applied")   \
    X(WEFT__KP_OP_LOGGED,          3, "op in ops (in the txn), state not yet")      \
    X(WEFT__KP_OP_MATERIALISED,    4, "op's field/entity/conflict/counter state in the txn")      \
    X(WEFT__KP_COMMIT_BEFORE,      5, "write txn about to call mdb_txn_commit")                   \
    X(WEFT__KP_COMMIT_AFTER,       6, "mdb_txn_commit returned (0, or MAP_FULL: growth next)")    \
    X(WEFT__KP_RAW_PUT,            7, "raw put (peers/meta record) in the txn")                   \
    X(WEFT__KP_GROUP_JOINED,       8, "group commit: follower's child merged, not committed yet")  \
    X(WEFT__KP_GROUP_META_PENDING, 9, "group committed, meta page not synced, members not acked") \
    /* map growth and journal replay: store/txn.c */                                             \
    X(WEFT__KP_GROW_ABORTED,      10, "map full: MDB txn aborted, map not grown yet")             \
    X(WEFT__KP_GROW_RESIZED,      11, "map grown, new MDB txn begun, journal not replayed")       \
    X(WEFT__KP_REPLAY_RECORD,     12, "one journal record replayed into the new MDB txn")         \
    X(WEFT__KP_GROW_DONE,         13, "whole journal replayed after a growth")                    \
    /* remote apply: store/apply.c weft_apply */                                                 \
    X(WEFT__KP_BATCH_BEGUN,       20, "weft_apply: nested txn begun")                             \
    X(WEFT__KP_BATCH_OP,          21, "remote op checked (order, chain, prev, clock), not applied")\
    X(WEFT__KP_BATCH_APPLIED,     22, "whole batch in the nested txn, nested commit not called")  \
    X(WEFT__KP_BATCH_COMMITTED,   23, "nested txn committed into its parent (not durable)")       \
    X(WEFT__KP_BATCH_ROLLED_BACK, 24, "failed batch: nested txn aborted, caches restored")        \
    /* session receive: transport/session.c on_ops */                                            \
    X(WEFT__KP_SESSION_APPLIED,   30, "OPS batch applied in the txn, acked vector not merged")    \
    X(WEFT__KP_SESSION_MERGED,    31, "batch and peer's acked vector in the txn, not committed")  \
    X(WEFT__KP_SESSION_COMMITTED, 32, "batch committed (or refused: gap), ACK not queued")        \
    X(WEFT__KP_SESSION_ACK_QUEUED, 33, "ACK queued (not sent)")                                   \
    /* acknowledgement path: transport/session.c, transport/peers.c */                           \
    X(WEFT__KP_ACK_RECEIVED,      40, "peer's ACK merged into the in-memory acked vector only")   \
    X(WEFT__KP_ACKED_MERGED,      41, "peer record with the merged acked vector in the txn")      \
    X(WEFT__KP_SESSION_SAVED,     42, "weft__session_save: acked vector in the txn")              \
    X(WEFT__KP_LIVE_PERSISTED,    43, "first LIVE: status and acked vector in the txn")           \
    /* store creation: store/store.c */                                                          \
    X(WEFT__KP_CREATE_KEY,        50, "new store: key file written, meta not written")            \
    X(WEFT__KP_CREATE_META,       51, "new store: meta in the creating txn, not committed")       \
    X(WEFT__KP_SETUP_COMMITTED,   52, "open/create txn committed, weft_store_open not returned")
/* clang-format on */

enum weft__kp {
#define WEFT__KP_ENUM(name, num, text) name = (num),
    WEFT__KP_MAP(WEFT__KP_ENUM)
#undef WEFT__KP_ENUM
};

/** Greatest point number (size tables with WEFT__KP_MAX + 1). */
#define WEFT__KP_MAX 63

/** The name ("WEFT__KP_COMMIT_BEFORE") of point @p n, or NULL. A number
 * used twice in the table is a duplicate case label: a compile error. */
static inline const char *weft__kp_name(int n)
{
    switch (n) {
#define WEFT__KP_CASE(name, num, text) \
    case num:                          \
        return #name;
        WEFT__KP_MAP(WEFT__KP_CASE)
#undef WEFT__KP_CASE
    default:
        return NULL;
    }
}

/** What point @p n marks (the table's text), or NULL. */
static inline const char *weft__kp_text(int n)
{
    switch (n) {
#define WEFT__KP_CASE(name, num, text) \
    case num:                          \
        return text;
        WEFT__KP_MAP(WEFT__KP_CASE)
#undef WEFT__KP_CASE
    default:
        return NULL;
    }
}

#ifdef WEFT_KILLPOINTS
/** Count a passage through point @p n; SIGKILL the process if it is the
 * passage WEFT_KILL_AT names. */
void weft__killpoint(int n);
#define WEFT__KILLPOINT(n) weft__killpoint(n)
#else
#define WEFT__KILLPOINT(n) ((void)0)
#endif

#endif /* WEFT_KILLPOINT_H */
