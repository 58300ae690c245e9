/* txn.c - transactions: begin, commit, abort, the write journal, and map
 * growth with replay.
 *
 * A write transaction holds, for its whole life:
 *   1. its place in the store's group (s->group, below): one write txn of
 *      this process works at a time; a thread asking for a second write txn
 *      while its first is open gets WEFT_EBUSY. The working txn owns the
 *      store's clock.
 *   2. flock(writer.lock, LOCK_EX), taken by the group's leader: one weft
 *      writer across processes. LMDB's own writer lock would do for that,
 *      except that growing the map needs every txn of this process ended,
 *      which releases LMDB's lock; ours stays held, so no other process can
 *      write between the abort and the replay, and the replay reproduces
 *      exactly what the callers did (same ids: no other writer of this
 *      device can have issued them meanwhile).
 *   3. s->map_lock shared (as every txn does, read txns included), taken by
 *      the leader for its MDB txn, which the followers' child txns live in.
 *
 * Group commit. A durable commit costs two fdatasyncs whatever it holds, so
 * write txns that begin while another is open share its commit:
 *
 *   IDLE --begin--> WORKING --leader commits--> OPEN --> CLOSED --> IDLE
 *                   (leader works    (followers work in    (leader commits the
 *                   in the parent)    turn, each in a       parent durably, sets
 *                                     child txn)            every follower's rc)
 *
 * The leader is the txn that began with no group running: it takes
 * writer.lock and begins the MDB txn (LMDB wants the thread that began it to
 * end it, and that thread is the leader's). Threads beginning meanwhile
 * wait; when the leader commits, it admits them one at a time (at most
 * GROUP_MAX), each working in a child MDB txn of the leader's, whose commit
 * costs no I/O and appends the follower's journal to the leader's. Once no
 * follower works and none waits, the leader commits the parent and hands
 * the result to each follower, which only then returns from
 * weft_txn_commit: an acknowledged write is on disk. A leader that aborts
 * drops only its own work (no follower has begun yet) and the next waiter
 * leads. A follower's abort drops its child only. A follower meeting a full
 * map aborts its child and asks the leader to grow the map (abort, grow,
 * replay the group's journal), then replays its own journal in a new child.
 * If the group commit fails, every member gets the error.
 *
 * Map growth (any put or the commit returned MDB_MAP_FULL: WEFT__EMAPFULL):
 *
 *     live --MAP_FULL--> abort MDB txn --> drop map_lock shared
 *       ^                                      |
 *       |                                      v
 *     replay journal <-- begin MDB txn <-- map_lock exclusive (timed),
 *     (MAP_FULL again: grow more)           mdb_env_set_mapsize(x2), release
 *
 *   weft__store_regrow() performs the whole loop. The exclusive lock waits at
 *   most WEFT__GROW_TIMEOUT_MS for other threads' txns to end (WEFT_EBUSY
 *   after that); a thread that itself holds another txn of the store fails
 *   at once with WEFT_EBUSY instead of waiting for itself.
 *   Another process's growth shows as MDB_MAP_RESIZED at mdb_txn_begin: we
 *   adopt the new size (mdb_env_set_mapsize(env, 0)) under the exclusive
 *   lock and begin again.
 *
 * Journal record formats (in one weft__buf, unaligned, big-endian lengths):
 *   'O' | local u8 | id 16 | len u32 | payload      an op applied
 *   'P' | db u8 | klen u32 | vlen u32 | key | val   a raw put (vlen
 *                                                   0xffffffff: delete)
 *
 * Invariants:
 *   1. A write txn's journal replayed on the state the txn began from
 *      reproduces the txn (ops in the same order, same ids and payloads).
 *   2. t->mapshared is true exactly while this txn holds map_lock shared;
 *      the thread-local table `held` counts those per store.
 *   3. weft_txn_commit returns 0 only after mdb_txn_commit returned 0 for
 *      the MDB txn holding the caller's writes (the group's parent).
 *   4. At most one write txn of a store works at a time (the group's
 *      worker): the leader in WORKING, one follower in OPEN; the leader's
 *      journal is the group's: its own records, then each committed
 *      follower's, in commit order.
 * Thread-safety: a txn is one thread at a time; a write txn must end on the
 * thread that began it.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../common/killpoint.h"
#include "store_int.h"

/* ---- which stores this thread holds txns of (for fast EBUSY) ---- */

#define HELD_SLOTS 16
static _Thread_local struct {
    const weft_store *s;
    unsigned n;
} held[HELD_SLOTS];

static void held_add(const weft_store *s, int d)
{
    int free_slot = -1;
    for (int i = 0; i < HELD_SLOTS; i++) {
        if (held[i].s == s && held[i].n > 0) {
            held[i].n = (unsigned)((int)held[i].n + d);
            return;
        }
        if (held[i].n == 0 && free_slot < 0) {
            free_slot = i;
        }
    }
    if (d > 0 && free_slot >= 0) {
        held[free_slot].s = s;
        held[free_slot].n = 1;
    }
}

static unsigned held_count(const weft_store *s)
{
    for (int i = 0; i < HELD_SLOTS; i++) {
        if (held[i].s == s && held[i].n > 0) {
            return held[i].n;
        }
    }
    return 0;
}

static void map_share(weft_txn *t)
{
    weft_store *s = t->s;
    if (atomic_load(&s->grow_waiting) > 0 && held_count(s) == 0) {
        /* Let a waiting growth go first (bounded: it gives up after its
         * timeout). A thread already holding a txn of the store must not
         * wait: the growth waits for that txn. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += WEFT__GROW_TIMEOUT_MS / 1000 + 1;
        pthread_mutex_lock(&s->grow_mu);
        while (atomic_load(&s->grow_waiting) > 0 &&
               pthread_cond_timedwait(&s->grow_cv, &s->grow_mu, &ts) == 0) {
        }
        pthread_mutex_unlock(&s->grow_mu);
    }
    pthread_rwlock_rdlock(&s->map_lock);
    held_add(t->s, 1);
    t->mapshared = true;
}

static void map_unshare(weft_txn *t)
{
    if (t->mapshared) {
        held_add(t->s, -1);
        pthread_rwlock_unlock(&t->s->map_lock);
        t->mapshared = false;
    }
}

/* Set the map size (0: adopt the size another process set) with no txn of
 * this process live. The caller holds no share of map_lock. */
static int map_resize(weft_store *s, size_t size)
{
    if (held_count(s) > 0) {
        return weft__err(WEFT_EBUSY,
                         "the map of %s must grow but this thread holds another "
                         "transaction of the store; end it first",
                         s->dir);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WEFT__GROW_TIMEOUT_MS / 1000;
    atomic_fetch_add(&s->grow_waiting, 1);
    int e = pthread_rwlock_timedwrlock(&s->map_lock, &ts);
    pthread_mutex_lock(&s->grow_mu);
    atomic_fetch_sub(&s->grow_waiting, 1);
    pthread_cond_broadcast(&s->grow_cv);
    pthread_mutex_unlock(&s->grow_mu);
    if (e != 0) {
        return weft__err(WEFT_EBUSY,
                         "the map of %s must grow but other threads keep "
                         "transactions open (waited %d ms)",
                         s->dir, WEFT__GROW_TIMEOUT_MS);
    }
    int rc = mdb_env_set_mapsize(s->env, size);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "growing the map");
    }
    return 0;
}

/* Begin t's MDB txn holding map_lock shared. */
static int raw_begin(weft_txn *t)
{
    for (;;) {
        map_share(t);
        int rc = mdb_txn_begin(t->s->env, NULL, t->rdonly ? MDB_RDONLY : 0, &t->txn);
        if (rc == 0) {
            return 0;
        }
        t->txn = NULL;
        map_unshare(t);
        if (rc != MDB_MAP_RESIZED) {
            rc = weft__store_mdb_err(rc, "beginning a transaction");
            return rc == WEFT__EMAPFULL ? weft__err(WEFT_EIO, "map full at begin") : rc;
        }
        if ((rc = map_resize(t->s, 0)) != 0) {
            return rc;
        }
    }
}

static void raw_abort(weft_txn *t)
{
    weft__oplog_cursor_drop(t);
    if (t->txn != NULL) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
    }
    map_unshare(t);
}

static int writer_lock(weft_store *s)
{
    while (flock(s->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            return weft__err(WEFT_EIO, "locking %s/writer.lock: %s", s->dir, strerror(errno));
        }
    }
    return 0;
}

static void writer_unlock(weft_store *s)
{
    flock(s->lock_fd, LOCK_UN);
}

/* ---- the group (s->group, under s->group_mu) ---- */

#define GROUP_MAX 64

static void group_set_worker(weft__group *g, bool on)
{
    g->has_worker = on;
    if (on) {
        g->worker = pthread_self();
    }
}

/* Lead a new group or join the open one; waits for either. *lead tells
 * which. Called and returns with group_mu held. */
static int group_enter(weft_store *s, bool *lead)
{
    weft__group *g = &s->group;
    weft__waiter me;
    bool queued = false;
    for (;;) {
        if (!queued && g->has_worker && pthread_equal(g->worker, pthread_self())) {
            return weft__err(WEFT_EBUSY, "this thread already holds a write transaction on %s",
                             s->dir);
        }
        /* First come, first served: only the head of the queue (or anyone
         * while nobody queues) may take a free place. */
        bool turn = g->wq_head == NULL || g->wq_head == &me;
        bool leads = turn && g->state == WEFT__G_IDLE;
        bool joins = turn && g->state == WEFT__G_OPEN && g->active == 0 && g->members < GROUP_MAX;
        if (leads || joins) {
            if (queued) {
                g->wq_head = me.next;
                if (g->wq_head == NULL) {
                    g->wq_tail = NULL;
                }
                g->waiting--;
                pthread_cond_destroy(&me.cv);
            }
            if (leads) {
                g->state = WEFT__G_WORKING;
            } else {
                g->active = 1;
                g->members++;
            }
            group_set_worker(g, true);
            *lead = leads;
            return 0;
        }
        if (!queued) {
            me.next = NULL;
            pthread_cond_init(&me.cv, NULL);
            if (g->wq_tail != NULL) {
                g->wq_tail->next = &me;
            } else {
                g->wq_head = &me;
            }
            g->wq_tail = &me;
            g->waiting++;
            queued = true;
        }
        pthread_cond_wait(&me.cv, &s->group_mu);
    }
}

/* A place may have freed: wake the first writer waiting to begin (only it:
 * the others could not take the place anyway). Under group_mu. */
static void group_wake_next(weft__group *g)
{
    if (g->wq_head != NULL) {
        pthread_cond_signal(&g->wq_head->cv);
    }
}

/* The leader's group ends (committed or not): the next writer may lead.
 * Returns the followers that committed into it, for group_ack. */
static weft__member *group_release(weft_store *s)
{
    weft__group *g = &s->group;
    pthread_mutex_lock(&s->group_mu);
    weft__member *m = g->done;
    uint64_t n = 0;
    for (weft__member *p = m; p != NULL; p = p->next) {
        n++;
    }
    if (g->state != WEFT__G_WORKING || n > 0) {
        g->commits++;
        g->joined += n;
    }
    g->done = NULL;
    g->leader = NULL;
    g->members = 0;
    g->state = WEFT__G_IDLE;
    group_set_worker(g, false);
    group_wake_next(g);
    pthread_mutex_unlock(&s->group_mu);
    return m;
}

/* Hand the group's result (and the leader's message) to its followers. */
static void group_ack(weft_store *s, weft__member *m, int rc)
{
    if (m == NULL) {
        return;
    }
    const char *msg = rc != 0 ? weft_last_error() : "";
    pthread_mutex_lock(&s->group_mu);
    while (m != NULL) {
        weft__member *next = m->next; /* m may go once done is seen */
        m->rc = rc;
        snprintf(m->msg, sizeof m->msg, "%s", msg);
        m->done = true;
        m = next;
    }
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->group_mu);
}

/* A follower stops working (its child txn ended): the next one may begin. */
static void follower_leave(weft_store *s)
{
    pthread_mutex_lock(&s->group_mu);
    s->group.active = 0;
    group_set_worker(&s->group, false);
    group_wake_next(&s->group);
    pthread_cond_broadcast(&s->group_cv); /* the leader */
    pthread_mutex_unlock(&s->group_mu);
}

void weft__store_group_stats(weft_store *s, uint64_t *commits, uint64_t *joined, unsigned *waiting)
{
    pthread_mutex_lock(&s->group_mu);
    *commits = s->group.commits;
    *joined = s->group.joined;
    *waiting = s->group.waiting;
    pthread_mutex_unlock(&s->group_mu);
}

static void txn_free(weft_txn *t)
{
    weft__store_fcur_close(t);
    weft__oplog_cursor_drop(t);
    if (t->follower) {
        if (t->txn != NULL) {
            mdb_txn_abort(t->txn); /* a child: frees nothing of the parent */
            t->txn = NULL;
        }
    } else {
        raw_abort(t);
    }
    weft__arena_free(&t->arena);
    weft__arena_free(&t->describe);
    weft__buf_free(&t->key);
    weft__buf_free(&t->key2);
    weft__buf_free(&t->val);
    weft__buf_free(&t->payload);
    weft__buf_free(&t->canon);
    weft__buf_free(&t->prev);
    weft__buf_free(&t->scratch);
    weft__buf_free(&t->journal);
    weft__buf_free(&t->lastkey);
    weft__fstate_free(&t->fs);
    weft__free(t->vv);
    weft__free(t->vv_save);
    weft__free(t);
}

/* End a write txn that will not commit (abort, or a failed begin). */
static void write_end(weft_txn *t)
{
    weft_store *s = t->s;
    if (t->follower) {
        txn_free(t);
        follower_leave(s);
        return;
    }
    /* A leader ends before any follower began: its MDB txn holds only its
     * own work. */
    txn_free(t);
    writer_unlock(s);
    group_release(s);
}

/* Begin the leader's MDB txn, or a follower's child of it. */
static int write_begin(weft_txn *t, bool lead)
{
    weft_store *s = t->s;
    int rc;
    if (lead) {
        if ((rc = writer_lock(s)) != 0) {
            return rc;
        }
        if ((rc = raw_begin(t)) == 0 && (rc = weft__store_wstate_load(t)) == 0) {
            t->base_txnid = mdb_txn_id(t->txn);
            pthread_mutex_lock(&s->group_mu);
            s->group.leader = t;
            pthread_mutex_unlock(&s->group_mu);
        }
        return rc;
    }
    t->follower = true;
    pthread_mutex_lock(&s->group_mu);
    MDB_txn *parent = s->group.leader->txn;
    pthread_mutex_unlock(&s->group_mu);
    if ((rc = mdb_txn_begin(s->env, parent, 0, &t->txn)) != 0) {
        t->txn = NULL;
        return weft__store_mdb_err(rc, "beginning a transaction in a group commit");
    }
    return weft__store_wstate_load(t);
}

int weft_txn_begin(weft_store *s, unsigned flags, weft_txn **out)
{
    if (s == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_txn_begin: store and out are required");
    }
    if (flags & ~(unsigned)WEFT_TXN_RDONLY) {
        return weft__err(WEFT_EINVAL, "weft_txn_begin: unknown flags 0x%x", flags);
    }
    weft_txn *t = weft__calloc(1, sizeof *t);
    if (t == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory beginning a transaction");
    }
    t->s = s;
    t->rdonly = (flags & WEFT_TXN_RDONLY) != 0;
    weft__fstate_init(&t->fs);
    int rc;
    if (t->rdonly) {
        if ((rc = raw_begin(t)) != 0) {
            txn_free(t);
            return rc;
        }
        *out = t;
        return 0;
    }
    bool lead = false;
    pthread_mutex_lock(&s->group_mu);
    rc = group_enter(s, &lead);
    pthread_mutex_unlock(&s->group_mu);
    if (rc != 0) {
        txn_free(t);
        return rc;
    }
    if ((rc = write_begin(t, lead)) != 0) {
        write_end(t); /* unlocking writer.lock when not taken is harmless */
        return rc;
    }
    WEFT__KILLPOINT(WEFT__KP_TXN_BEGUN);
    *out = t;
    return 0;
}

void weft_txn_abort(weft_txn **txn_p)
{
    if (txn_p == NULL || *txn_p == NULL) {
        return;
    }
    weft_txn *t = *txn_p;
    *txn_p = NULL;
    if (t->rdonly) {
        txn_free(t);
    } else {
        write_end(t);
    }
}

/* ---- journal ---- */

int weft__store_journal_op(weft_txn *t, weft_id id, const uint8_t *payload, size_t len, bool local)
{
    uint8_t h[2 + WEFT__ID_BYTES + 4];
    h[0] = 'O';
    h[1] = local ? 1 : 0;
    weft__id_put(h + 2, id);
    weft__be32_put(h + 2 + WEFT__ID_BYTES, (uint32_t)len);
    int rc = weft__buf_reserve(&t->journal, sizeof h + len);
    if (rc != 0) {
        return rc;
    }
    weft__buf_put(&t->journal, h, sizeof h);
    weft__buf_put(&t->journal, payload, len);
    return 0;
}

static int raw_put(weft_txn *t, int db, const uint8_t *k, size_t klen, const uint8_t *v,
                   size_t vlen, bool del)
{
    MDB_val mk = {klen, (void *)k}, mv = {vlen, (void *)v};
    int rc = del ? mdb_del(t->txn, t->s->dbi[db], &mk, NULL)
                 : mdb_put(t->txn, t->s->dbi[db], &mk, &mv, 0);
    if (db == WEFT__DB_FIELDS) {
        weft__store_wcache_reset(t); /* a raw put may have raised the last key */
    }
    if (del && rc == MDB_NOTFOUND) {
        rc = 0;
    }
    return weft__store_mdb_err(rc, "raw put");
}

/* Re-apply every journal record to a fresh MDB txn. */
static int replay(weft_txn *t)
{
    const uint8_t *p = t->journal.ptr, *end = p + t->journal.len;
    while (p < end) {
        int rc;
        if (p[0] == 'O') {
            bool local = p[1] != 0;
            weft_id id = weft__id_get(p + 2);
            uint32_t len = weft__be32_get(p + 2 + WEFT__ID_BYTES);
            const uint8_t *payload = p + 2 + WEFT__ID_BYTES + 4;
            weft__op op;
            if ((rc = weft__op_decode(payload, len, &op)) != 0 ||
                (rc = weft__store_apply_op(t, id, payload, len, &op, local)) != 0) {
                return rc;
            }
            p = payload + len;
        } else {
            int db = p[1];
            uint32_t klen = weft__be32_get(p + 2), vlen = weft__be32_get(p + 6);
            const uint8_t *k = p + 10;
            bool del = vlen == UINT32_MAX;
            if ((rc = raw_put(t, db, k, klen, k + klen, del ? 0 : vlen, del)) != 0) {
                return rc;
            }
            p = k + klen + (del ? 0 : vlen);
        }
        WEFT__KILLPOINT(WEFT__KP_REPLAY_RECORD);
    }
    return 0;
}

/* A follower's growth: its child txn goes, the leader grows the map and
 * replays the group, and the follower replays itself in a new child. */
static int follower_regrow(weft_txn *t)
{
    weft_store *s = t->s;
    weft__group *g = &s->group;
    for (;;) {
        weft__oplog_cursor_drop(t);
        if (t->txn != NULL) {
            mdb_txn_abort(t->txn);
            t->txn = NULL;
        }
        pthread_mutex_lock(&s->group_mu);
        unsigned gen = g->grow_gen;
        g->need_grow = true;
        pthread_cond_broadcast(&s->group_cv);
        while (g->grow_gen == gen) {
            pthread_cond_wait(&s->group_cv, &s->group_mu);
        }
        int rc = g->grow_rc;
        MDB_txn *parent = g->leader->txn;
        pthread_mutex_unlock(&s->group_mu);
        if (rc == 0) {
            rc = weft__store_mdb_err(mdb_txn_begin(s->env, parent, 0, &t->txn),
                                     "beginning a transaction in a group commit");
            if (rc != 0) {
                t->txn = NULL;
            }
        }
        if (rc == 0 && (rc = weft__store_wstate_load(t)) == 0) {
            rc = replay(t);
            weft__oplog_cursor_drop(t); /* the replay's; closed while it is ours */
        }
        if (rc != WEFT__EMAPFULL) {
            if (rc != 0) {
                t->poisoned = true;
            }
            return rc;
        }
    }
}

int weft__store_regrow(weft_txn *t)
{
    weft_store *s = t->s;
    if (t->follower) {
        return follower_regrow(t);
    }
    MDB_envinfo ei;
    mdb_env_info(s->env, &ei);
    size_t target = ei.me_mapsize * 2;
    for (int round = 0;; round++) {
        raw_abort(t);
        WEFT__KILLPOINT(WEFT__KP_GROW_ABORTED);
        int rc = map_resize(s, target);
        if (rc == 0) {
            rc = raw_begin(t);
        }
        if (rc == 0 && mdb_txn_id(t->txn) != t->base_txnid) {
            rc = weft__err(WEFT_EIO, "%s was written outside weft while its map grew", s->dir);
        }
        if (rc == 0) {
            rc = weft__store_wstate_load(t);
        }
        if (rc == 0) {
            WEFT__KILLPOINT(WEFT__KP_GROW_RESIZED);
            rc = replay(t);
            /* The replay's cursor: followers may begin child txns next. */
            weft__oplog_cursor_drop(t);
        }
        if (rc == 0) {
            WEFT__KILLPOINT(WEFT__KP_GROW_DONE);
            return 0;
        }
        if (rc != WEFT__EMAPFULL || round > 40) {
            t->poisoned = true;
            return rc == WEFT__EMAPFULL ? weft__err(WEFT_EFULL, "map cannot grow further") : rc;
        }
        target *= 2;
    }
}

/* ---- commit ---- */

/* LMDB reports a short write as EIO, and a write that crosses a full disk
 * or RLIMIT_FSIZE is short rather than failing with ENOSPC/EFBIG. Call such
 * an EIO a full disk when the file system is (nearly) out of space or the
 * data file has reached the process's file size limit. */
static int commit_err(weft_store *s, int rc)
{
    if (rc == EIO) {
        struct statvfs vfs;
        struct stat st;
        struct rlimit rl;
        size_t n = strlen(s->dir);
        char path[4096];
        if (n + sizeof "/data.mdb" <= sizeof path) {
            memcpy(path, s->dir, n);
            memcpy(path + n, "/data.mdb", sizeof "/data.mdb");
            if (statvfs(s->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < (4u << 20)) {
                rc = ENOSPC;
            } else if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                       stat(path, &st) == 0 && (uint64_t)st.st_size + 65536 >= rl.rlim_cur) {
                rc = EFBIG;
            }
        }
    }
    return weft__store_mdb_err(rc, "committing");
}

/* A follower commits its child (no I/O) into the group, then waits for the
 * leader's durable commit of the whole group. */
static int follower_commit(weft_txn *t)
{
    weft_store *s = t->s;
    weft__group *g = &s->group;
    /* Room in the group's journal first: once the child is merged, its
     * records must be there for a growth's replay. */
    pthread_mutex_lock(&s->group_mu);
    int rc = weft__buf_reserve(&g->leader->journal, t->journal.len);
    pthread_mutex_unlock(&s->group_mu);
    if (rc == 0) {
        weft__oplog_cursor_drop(t);
        rc = weft__store_mdb_err(mdb_txn_commit(t->txn), "committing into a group commit");
        t->txn = NULL; /* freed by LMDB whatever the outcome */
    }
    if (rc != 0) {
        write_end(t);
        return rc;
    }
    weft__member me = {.next = NULL};
    pthread_mutex_lock(&s->group_mu);
    weft__buf_put(&g->leader->journal, t->journal.ptr, t->journal.len);
    WEFT__KILLPOINT(WEFT__KP_GROUP_JOINED);
    me.next = g->done;
    g->done = &me;
    g->active = 0;
    group_set_worker(g, false);
    group_wake_next(g);
    pthread_cond_broadcast(&s->group_cv); /* the leader */
    while (!me.done) {
        pthread_cond_wait(&s->done_cv, &s->group_mu);
    }
    if (me.rc != 0) {
        weft__err(me.rc, "the group commit this transaction joined failed: %s", me.msg);
    }
    pthread_mutex_unlock(&s->group_mu);
    txn_free(t);
    return me.rc;
}

/* The leader has done its own work: admit the followers, growing the map
 * when one asks, until none works and none waits (or the group is full). */
static void leader_admit(weft_txn *t)
{
    weft_store *s = t->s;
    weft__group *g = &s->group;
    pthread_mutex_lock(&s->group_mu);
    group_set_worker(g, false);
    g->state = WEFT__G_OPEN;
    group_wake_next(g);
    for (;;) {
        if (g->need_grow) {
            pthread_mutex_unlock(&s->group_mu);
            int rc = t->poisoned ? weft__err(WEFT_ETXN, "the group's transaction failed earlier")
                                 : weft__store_regrow(t);
            pthread_mutex_lock(&s->group_mu);
            g->need_grow = false;
            g->grow_rc = rc;
            g->grow_gen++;
            pthread_cond_broadcast(&s->group_cv);
            continue;
        }
        if (g->active > 0 || (g->waiting > 0 && g->members < GROUP_MAX)) {
            pthread_cond_wait(&s->group_cv, &s->group_mu);
            continue;
        }
        break;
    }
    g->state = WEFT__G_CLOSED;
    pthread_mutex_unlock(&s->group_mu);
}

int weft_txn_commit(weft_txn **txn_p)
{
    if (txn_p == NULL || *txn_p == NULL) {
        return weft__err(WEFT_EINVAL, "weft_txn_commit: no transaction");
    }
    weft_txn *t = *txn_p;
    *txn_p = NULL;
    int rc;
    if (t->poisoned || t->txn == NULL) {
        if (t->rdonly) {
            txn_free(t);
        } else {
            write_end(t);
        }
        return weft__err(WEFT_ETXN, "commit of a transaction that failed earlier");
    }
    if (t->rdonly) {
        txn_free(t);
        return 0;
    }
    if (t->follower) {
        return follower_commit(t);
    }
    weft__store_fcur_close(t);
    weft__oplog_cursor_drop(t); /* before followers' child txns begin */
    leader_admit(t);
    if (t->poisoned || t->txn == NULL) {
        /* a growth done for a follower failed: the parent is gone */
        rc = weft__err(WEFT_ETXN, "a group commit failed while growing the map");
    } else {
        for (;;) {
            WEFT__KILLPOINT(WEFT__KP_COMMIT_BEFORE);
            weft__oplog_cursor_drop(t); /* a replay below may have opened it */
            rc = mdb_txn_commit(t->txn);
            t->txn = NULL; /* freed by LMDB whatever the outcome */
            WEFT__KILLPOINT(WEFT__KP_COMMIT_AFTER);
            rc = commit_err(t->s, rc);
            if (rc == WEFT__EMAPFULL && (rc = weft__store_regrow(t)) == 0) {
                continue;
            }
            break;
        }
    }
    weft_store *s = t->s;
    txn_free(t);
    writer_unlock(s);
    /* The data is on disk and the meta page written: the next group may
     * work while this one's meta page goes to disk (MDB_NOMETASYNC, see
     * store.c). Only then are its members acknowledged. */
    weft__member *m = group_release(s);
    WEFT__KILLPOINT(WEFT__KP_GROUP_META_PENDING);
    if (rc == 0) {
        int e = mdb_env_sync(s->env, 1);
        if (e != 0) {
            rc = commit_err(s, e);
        }
    }
    group_ack(s, m, rc);
    return rc;
}

/* ---- raw access for the sync engine ---- */

int weft__txn_put(weft_txn *t, const char *db, weft_bytes key, const weft_bytes *val)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    int d = weft__store_db_find(db);
    if (d < 0 || key.len == 0 || key.len > 511 || (val != NULL && val->len >= UINT32_MAX)) {
        return weft__err(WEFT_EINVAL, "weft__txn_put: bad database \"%s\" or key/value size",
                         db ? db : "(null)");
    }
    if (d == WEFT__DB_OPS) { /* blocks, and t->ocur's tail, are oplog.c's alone */
        return weft__err(WEFT_EINVAL, "weft__txn_put: ops is written only by applying ops");
    }
    uint8_t h[10];
    h[0] = 'P';
    h[1] = (uint8_t)d;
    weft__be32_put(h + 2, (uint32_t)key.len);
    weft__be32_put(h + 6, val ? (uint32_t)val->len : UINT32_MAX);
    size_t jlen = t->journal.len;
    if ((rc = weft__buf_reserve(&t->journal, sizeof h + key.len + (val ? val->len : 0))) != 0) {
        return rc;
    }
    weft__buf_put(&t->journal, h, sizeof h);
    weft__buf_put(&t->journal, key.ptr, key.len);
    if (val != NULL) {
        weft__buf_put(&t->journal, val->ptr, val->len);
    }
    rc = raw_put(t, d, key.ptr, key.len, val ? val->ptr : NULL, val ? val->len : 0, val == NULL);
    WEFT__KILLPOINT(WEFT__KP_RAW_PUT);
    if (rc == WEFT__EMAPFULL) {
        return weft__store_regrow(t); /* the replay performs this put too */
    }
    if (rc != 0) {
        t->journal.len = jlen;
        t->poisoned = true;
    }
    return rc;
}

int weft__txn_get(weft_txn *t, const char *db, weft_bytes key, weft_bytes *val)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    int d = weft__store_db_find(db);
    if (d < 0 || val == NULL) {
        return weft__err(WEFT_EINVAL, "weft__txn_get: bad database \"%s\"", db ? db : "(null)");
    }
    if (d == WEFT__DB_OPS) { /* an op id: its payload, wherever its block is */
        if (key.len != WEFT__ID_BYTES) {
            return weft__err(WEFT_EINVAL, "weft__txn_get: an ops key is a 16-byte op id");
        }
        rc = weft__oplog_get(t, weft__id_get(key.ptr), val);
        return rc == WEFT_ENOTFOUND ? weft__err(WEFT_ENOTFOUND, "raw get: no such op") : rc;
    }
    MDB_val k = {key.len, (void *)key.ptr}, v;
    rc = mdb_get(t->txn, t->s->dbi[d], &k, &v);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "raw get");
    }
    val->ptr = v.mv_data;
    val->len = v.mv_size;
    return 0;
}

uint64_t weft__store_visited(const weft_txn *t)
{
    return t != NULL ? t->visited : 0;
}

/* One record of the vv database as it was stored before it was derived. */
static int dump_vv(void *user, uint64_t device, uint64_t hlc)
{
    uint8_t r[4 + 8 + 4 + 8];
    weft__be32_put(r, 8);
    weft__be64_put(r + 4, device);
    weft__be32_put(r + 12, 8);
    weft__be64_put(r + 16, hlc);
    return weft__buf_put(user, r, sizeof r);
}

int weft__store_dump(weft_txn *t, const char *db, weft__buf *out)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    if (db != NULL && strcmp(db, "vv") == 0) {
        return weft__store_vv_each(t, dump_vv, out);
    }
    int d = weft__store_db_find(db);
    if (d < 0) {
        return weft__err(WEFT_EINVAL, "no database \"%s\"", db ? db : "(null)");
    }
    if (d == WEFT__DB_OPS) {
        return weft__oplog_dump(t, out);
    }
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, t->s->dbi[d], &c)) != 0) {
        return weft__store_mdb_err(rc, "dump");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint8_t l[4];
        weft__be32_put(l, (uint32_t)k.mv_size);
        int e = weft__buf_put(out, l, 4);
        e = e ? e : weft__buf_put(out, k.mv_data, k.mv_size);
        weft__be32_put(l, (uint32_t)v.mv_size);
        e = e ? e : weft__buf_put(out, l, 4);
        e = e ? e : weft__buf_put(out, v.mv_data, v.mv_size);
        if (e != 0) {
            mdb_cursor_close(c);
            return e;
        }
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : weft__store_mdb_err(rc, "dump");
}
