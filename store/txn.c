/* txn.c - transactions: begin, commit, abort, the write journal, and map
 * growth with replay.
 *
 * A write transaction takes three locks, in this order, and holds them to
 * its end:
 *   1. s->write_mu (error-checking mutex): one writer per process; a thread
 *      asking for a second write txn gets EDEADLK -> WEFT_EBUSY. It also
 *      guards the store's clock.
 *   2. flock(writer.lock, LOCK_EX): one weft writer across processes. LMDB's
 *      own writer lock would do for that, except that growing the map needs
 *      every txn of this process ended, which releases LMDB's lock; ours
 *      stays held, so no other process can write between the abort and the
 *      replay, and the replay reproduces exactly what the caller did (same
 *      ids: no other writer of this device can have issued them meanwhile).
 *   3. s->map_lock shared (as every txn does, read txns included).
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
 *   3. weft_txn_commit returns 0 only after mdb_txn_commit returned 0.
 * Thread-safety: a txn is one thread at a time; a write txn must end on the
 * thread that began it (it owns write_mu).
 */
#include <errno.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

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
    if (t->txn != NULL) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
    }
    map_unshare(t);
}

static int writer_lock(weft_store *s)
{
    int e = pthread_mutex_lock(&s->write_mu);
    if (e == EDEADLK) {
        return weft__err(WEFT_EBUSY, "this thread already holds a write transaction on %s", s->dir);
    }
    if (e != 0) {
        return weft__err(WEFT_EIO, "locking the writer mutex: %s", strerror(e));
    }
    while (flock(s->lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            e = errno;
            pthread_mutex_unlock(&s->write_mu);
            return weft__err(WEFT_EIO, "locking %s/writer.lock: %s", s->dir, strerror(e));
        }
    }
    return 0;
}

static void writer_unlock(weft_store *s)
{
    flock(s->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&s->write_mu);
}

static void txn_free(weft_txn *t)
{
    weft__store_fcur_close(t);
    raw_abort(t);
    if (!t->rdonly) {
        writer_unlock(t->s);
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
    int rc = 0;
    if (!t->rdonly && (rc = writer_lock(s)) != 0) {
        t->rdonly = true; /* so txn_free does not unlock what we do not hold */
        txn_free(t);
        return rc;
    }
    if ((rc = raw_begin(t)) != 0 || (!t->rdonly && (rc = weft__store_wstate_load(t)) != 0)) {
        txn_free(t);
        return rc;
    }
    t->base_txnid = mdb_txn_id(t->txn);
    *out = t;
    return 0;
}

void weft_txn_abort(weft_txn **txn_p)
{
    if (txn_p == NULL || *txn_p == NULL) {
        return;
    }
    txn_free(*txn_p);
    *txn_p = NULL;
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
    }
    return 0;
}

int weft__store_regrow(weft_txn *t)
{
    weft_store *s = t->s;
    MDB_envinfo ei;
    mdb_env_info(s->env, &ei);
    size_t target = ei.me_mapsize * 2;
    for (int round = 0;; round++) {
        raw_abort(t);
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
            rc = replay(t);
        }
        if (rc == 0) {
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

int weft_txn_commit(weft_txn **txn_p)
{
    if (txn_p == NULL || *txn_p == NULL) {
        return weft__err(WEFT_EINVAL, "weft_txn_commit: no transaction");
    }
    weft_txn *t = *txn_p;
    *txn_p = NULL;
    int rc;
    if (t->poisoned || t->txn == NULL) {
        txn_free(t);
        return weft__err(WEFT_ETXN, "commit of a transaction that failed earlier");
    }
    if (t->rdonly) {
        txn_free(t);
        return 0;
    }
    for (;;) {
        rc = mdb_txn_commit(t->txn);
        t->txn = NULL; /* freed by LMDB whatever the outcome */
        rc = commit_err(t->s, rc);
        if (rc == WEFT__EMAPFULL && (rc = weft__store_regrow(t)) == 0) {
            continue;
        }
        break;
    }
    txn_free(t);
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
