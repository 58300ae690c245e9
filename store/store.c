/* store.c - opening, creating and closing a store: the LMDB environment, the
 * named databases, the schema check, the device keypair and its key file.
 *
 * Opening (weft_store_open):
 *   1. dir missing: mkdir it (WEFT_OPEN_CREATE) or WEFT_ENOSTORE;
 *      data.mdb missing without WEFT_OPEN_CREATE: WEFT_ENOSTORE.
 *   2. mdb_env_open with MDB_NOTLS (a thread may hold several read txns)
 *      and MDB_NOMETASYNC: a commit writes its pages and fdatasyncs them,
 *      then writes the meta page without syncing it; the committer syncs
 *      the meta page itself (mdb_env_sync) before it acknowledges, after
 *      letting the next write txn start (txn.c: group commit). LMDB keeps
 *      its integrity under NOMETASYNC (a crash may lose only commits not
 *      yet acknowledged); no NOSYNC/MAPASYNC/WRITEMAP.
 *      mdb_reader_check clears slots of dead processes.
 *   3. A write txn (creating) or a read txn (opening) opens the databases and
 *      checks meta: schema first (WEFT_EVERSION), then device, store id and
 *      public key. Creating generates a Curve25519 keypair (crypto_box, the
 *      curve ZeroMQ CURVE uses) and writes the key file atomically (tmp,
 *      fsync, rename, fsync dir) before committing meta, so a committed store
 *      always has its key file.
 *   4. The key file must be whole and hold meta's public key (WEFT_ECORRUPT
 *      otherwise): a memcmp. Whether its secret half derives that public key
 *      is checked where the secret key is used, weft_store_secret_key()
 *      (WEFT_ECORRUPT there): the scalar multiplication cost 88% of an
 *      open's instructions, and readers never need the secret key. There
 *      too, a key file open to other users (any of mode 077, as found at
 *      open) is refused with WEFT_EAUTH, as ssh refuses such a key.
 * Key file: "WEFTKEY1" | public 32 | secret 32, mode 0600.
 * Device id: first 8 bytes (big-endian) of BLAKE2b-256(public key), never 0.
 *
 * Invariants:
 *   1. A weft_store returned by open has every dbi open, device != 0 and a
 *      public key that matches meta; weft_store_secret_key() hands out the
 *      secret key only after checking it derives that public key.
 *   2. Every error path releases what it acquired (the env, the fds, memory).
 * Thread-safety: open/close are not thread-safe on the same handle; the
 * accessors are thread-safe (they read immutable fields or use a read txn).
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/killpoint.h"
#include "store_int.h"

#define KEYFILE_MAGIC "WEFTKEY1"
#define KEYFILE_BYTES (8u + 2u * WEFT_KEY_BYTES)

/* clang-format off */
static const char *const db_names[WEFT__DB_COUNT] = {
    "ops", "fields", "counters", "entities", "conflicts", "meta", "peers",
};
/* clang-format on */

const char *weft__store_db_name(int db)
{
    return db >= 0 && db < WEFT__DB_COUNT ? db_names[db] : "?";
}

int weft__store_db_find(const char *name)
{
    for (int i = 0; name != NULL && i < WEFT__DB_COUNT; i++) {
        if (strcmp(db_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

int weft__store_mdb_err(int rc, const char *what)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return weft__err(WEFT_ENOTFOUND, "%s: not found", what);
    case MDB_MAP_FULL:
        return WEFT__EMAPFULL;
    case ENOSPC:
    case EFBIG:
        return weft__err(WEFT_EFULL, "%s: disk full (%s)", what, mdb_strerror(rc));
    case ENOMEM:
        return weft__err(WEFT_ENOMEM, "%s: out of memory", what);
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return weft__err(WEFT_ECORRUPT, "%s: store file damaged or not an LMDB file (%s)", what,
                         mdb_strerror(rc));
    case MDB_VERSION_MISMATCH:
        return weft__err(WEFT_EVERSION, "%s: LMDB version mismatch (%s)", what, mdb_strerror(rc));
    default:
        return weft__err(WEFT_EIO, "%s: %s", what, mdb_strerror(rc));
    }
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = weft__malloc(a + b + 2);
    if (p != NULL) {
        memcpy(p, dir, a);
        p[a] = '/';
        memcpy(p + a + 1, name, b + 1);
    }
    return p;
}

/* ---- key file ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return w < 0 ? errno : EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int errno_err(int e, const char *what, const char *path)
{
    if (e == ENOSPC || e == EFBIG || e == EDQUOT) {
        return weft__err(WEFT_EFULL, "%s %s: %s", what, path, strerror(e));
    }
    if (e == ENOMEM) {
        return weft__err(WEFT_ENOMEM, "%s %s: %s", what, path, strerror(e));
    }
    return weft__err(WEFT_EIO, "%s %s: %s", what, path, strerror(e));
}

/* tmp + fsync + rename + fsync(dir): the key file appears whole or not at all. */
static int key_write(const char *dir, const uint8_t pk[WEFT_KEY_BYTES],
                     const uint8_t sk[WEFT_KEY_BYTES])
{
    char *tmp = path_join(dir, "key.tmp");
    char *path = path_join(dir, "key");
    int rc = 0, fd = -1;
    uint8_t buf[KEYFILE_BYTES];
    if (tmp == NULL || path == NULL) {
        rc = weft__err(WEFT_ENOMEM, "out of memory writing the key file in %s", dir);
        goto out;
    }
    memcpy(buf, KEYFILE_MAGIC, 8);
    memcpy(buf + 8, pk, WEFT_KEY_BYTES);
    memcpy(buf + 8 + WEFT_KEY_BYTES, sk, WEFT_KEY_BYTES);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno_err(errno, "creating", tmp);
        goto out;
    }
    int e = write_all(fd, buf, sizeof buf);
    if (e == 0 && fsync(fd) != 0) {
        e = errno;
    }
    if (close(fd) != 0 && e == 0) {
        e = errno;
    }
    fd = -1;
    if (e == 0 && rename(tmp, path) != 0) {
        e = errno;
    }
    if (e != 0) {
        unlink(tmp);
        rc = errno_err(e, "writing", path);
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        rc = errno_err(errno, "syncing directory", dir);
    }
    if (dfd >= 0) {
        close(dfd);
    }
out:
    sodium_memzero(buf, sizeof buf);
    weft__free(tmp);
    weft__free(path);
    return rc;
}

static int key_read(weft_store *s)
{
    char *path = path_join(s->dir, "key");
    if (path == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory reading the key file in %s", s->dir);
    }
    uint8_t buf[KEYFILE_BYTES + 1];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? weft__err(WEFT_ECORRUPT, "key file %s is missing", path)
                             : errno_err(errno, "opening", path);
        weft__free(path);
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        s->key_mode = (unsigned)(st.st_mode & 07777);
    }
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = errno_err(errno, "reading", path);
            break;
        }
        if (r == 0) {
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (rc == 0) {
        if (got != KEYFILE_BYTES || memcmp(buf, KEYFILE_MAGIC, 8) != 0) {
            rc = weft__err(WEFT_ECORRUPT, "key file %s is damaged (%zu bytes, expected %u)", path,
                           got, KEYFILE_BYTES);
        } else if (memcmp(buf + 8, s->public_key, WEFT_KEY_BYTES) != 0) {
            rc = weft__err(WEFT_ECORRUPT,
                           "key file %s does not belong to this store (public key mismatch)", path);
        } else {
            memcpy(s->secret_key, buf + 8 + WEFT_KEY_BYTES, WEFT_KEY_BYTES);
        }
    }
    sodium_memzero(buf, sizeof buf);
    weft__free(path);
    return rc;
}

static uint64_t device_of(const uint8_t pk[WEFT_KEY_BYTES])
{
    uint8_t h[32];
    crypto_generichash(h, sizeof h, pk, WEFT_KEY_BYTES, NULL, 0);
    return weft__be64_get(h);
}

/* ---- meta ---- */

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *name, MDB_val *v)
{
    MDB_val k = {strlen(name), (void *)name};
    return mdb_get(txn, dbi, &k, v);
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *p, size_t n)
{
    MDB_val k = {strlen(name), (void *)name}, v = {n, (void *)p};
    return mdb_put(txn, dbi, &k, &v, 0);
}

/* Read and check the meta of an existing store into @p s. */
static int meta_load(weft_store *s, MDB_txn *txn)
{
    MDB_dbi m = s->dbi[WEFT__DB_META];
    MDB_val v;
    int rc = meta_get(txn, m, "schema", &v);
    if (rc != 0) {
        return rc == MDB_NOTFOUND
                   ? weft__err(WEFT_ECORRUPT, "%s: not a weft store (no schema version)", s->dir)
                   : weft__store_mdb_err(rc, "reading the schema version");
    }
    if (v.mv_size != 4) {
        return weft__err(WEFT_ECORRUPT, "%s: schema version record is %zu bytes", s->dir,
                         v.mv_size);
    }
    uint32_t schema = weft__be32_get(v.mv_data);
    if (schema != WEFT__SCHEMA) {
        return weft__err(WEFT_EVERSION, "%s: store schema version %u, this library reads %u",
                         s->dir, schema, WEFT__SCHEMA);
    }
    if (meta_get(txn, m, "device", &v) != 0 || v.mv_size != 8 ||
        (s->device = weft__be64_get(v.mv_data)) == 0) {
        return weft__err(WEFT_ECORRUPT, "%s: device id missing or invalid", s->dir);
    }
    if (meta_get(txn, m, "store_id", &v) != 0 || v.mv_size != 16) {
        return weft__err(WEFT_ECORRUPT, "%s: store id missing or invalid", s->dir);
    }
    memcpy(s->store_id, v.mv_data, 16);
    if (meta_get(txn, m, "public_key", &v) != 0 || v.mv_size != WEFT_KEY_BYTES) {
        return weft__err(WEFT_ECORRUPT, "%s: public key missing or invalid", s->dir);
    }
    memcpy(s->public_key, v.mv_data, WEFT_KEY_BYTES);
    if (device_of(s->public_key) != s->device) {
        return weft__err(WEFT_ECORRUPT, "%s: device id does not match the public key", s->dir);
    }
    return 0;
}

/* A new store: keys, key file, meta. Runs in the creating write txn. */
static int meta_create(weft_store *s, MDB_txn *txn)
{
    uint8_t pk[WEFT_KEY_BYTES], sk[WEFT_KEY_BYTES];
    do {
        crypto_box_keypair(pk, sk);
    } while (device_of(pk) == 0);
    int rc = key_write(s->dir, pk, sk);
    sodium_memzero(sk, sizeof sk);
    if (rc != 0) {
        return rc;
    }
    WEFT__KILLPOINT(WEFT__KP_CREATE_KEY);
    uint8_t b4[4], b8[8], id[16];
    randombytes_buf(id, sizeof id);
    weft__be32_put(b4, WEFT__SCHEMA);
    weft__be64_put(b8, device_of(pk));
    MDB_dbi m = s->dbi[WEFT__DB_META];
    if ((rc = meta_put(txn, m, "schema", b4, 4)) != 0 ||
        (rc = meta_put(txn, m, "device", b8, 8)) != 0 ||
        (rc = meta_put(txn, m, "store_id", id, 16)) != 0 ||
        (rc = meta_put(txn, m, "public_key", pk, WEFT_KEY_BYTES)) != 0) {
        return weft__store_mdb_err(rc, "writing the store's meta");
    }
    WEFT__KILLPOINT(WEFT__KP_CREATE_META);
    return 0;
}

/* Does the environment hold our meta database yet? (Read-only probe, so that
 * opening an existing store with WEFT_OPEN_CREATE never waits for a writer.) */
static int probe_fresh(weft_store *s, bool *fresh)
{
    MDB_txn *txn;
    int rc;
    while ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(s->env, 0); /* no txn of ours is live: safe */
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "beginning the opening transaction");
    }
    MDB_dbi probe;
    rc = mdb_dbi_open(txn, "meta", 0, &probe);
    mdb_txn_abort(txn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return weft__store_mdb_err(rc, "probing the store");
    }
    *fresh = rc == MDB_NOTFOUND;
    return 0;
}

/* Open (or create) every named database and load meta. Meta comes first so
 * that a store of another schema version is reported as such. */
static int setup(weft_store *s, bool create, bool excl)
{
    bool fresh = false;
    int rc;
    if (create && (rc = probe_fresh(s, &fresh)) != 0) {
        return rc;
    }
    MDB_txn *txn;
    while ((rc = mdb_txn_begin(s->env, NULL, fresh ? 0 : MDB_RDONLY, &txn)) == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(s->env, 0);
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "beginning the opening transaction");
    }
    if (fresh) {
        /* Another process may have created it since the probe. */
        MDB_dbi probe;
        fresh = mdb_dbi_open(txn, "meta", 0, &probe) == MDB_NOTFOUND;
    }
    if (excl && !fresh) {
        /* Decided inside the write transaction: of two racing creators,
         * exactly one sees the store fresh. */
        rc = weft__err(WEFT_EEXIST, "a store already exists at %s", s->dir);
        goto fail;
    }
    rc = mdb_dbi_open(txn, "meta", fresh ? MDB_CREATE : 0, &s->dbi[WEFT__DB_META]);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
        rc = weft__err(WEFT_ECORRUPT, "%s: not a weft store (no meta database)", s->dir);
        goto fail;
    }
    if (rc != 0) {
        rc = weft__store_mdb_err(rc, "opening the store's meta database");
        goto fail;
    }
    if (fresh && (rc = meta_create(s, txn)) != 0) {
        goto fail;
    }
    if ((rc = meta_load(s, txn)) != 0) {
        goto fail;
    }
    for (int i = 0; i < WEFT__DB_COUNT; i++) {
        if (i == WEFT__DB_META) {
            continue;
        }
        rc = mdb_dbi_open(txn, db_names[i], fresh ? MDB_CREATE : 0, &s->dbi[i]);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
            rc = weft__err(WEFT_ECORRUPT, "%s: not a weft store (database \"%s\" %s)", s->dir,
                           db_names[i], rc == MDB_NOTFOUND ? "missing" : "invalid");
            goto fail;
        }
        if (rc != 0) {
            rc = weft__store_mdb_err(rc, "opening the store's databases");
            goto fail;
        }
    }
    rc = mdb_txn_commit(txn); /* keeps the dbi handles */
    WEFT__KILLPOINT(WEFT__KP_SETUP_COMMITTED);
    if (rc == 0 && fresh) {
        rc = mdb_env_sync(s->env, 1); /* the meta page too (MDB_NOMETASYNC) */
    }
    if (rc != 0) {
        rc = weft__store_mdb_err(rc, "committing the new store");
        return rc == WEFT__EMAPFULL
                   ? weft__err(WEFT_EFULL, "map_size too small to create the store")
                   : rc;
    }
    return 0;
fail:
    mdb_txn_abort(txn);
    if (rc == WEFT__EMAPFULL) {
        rc = weft__err(WEFT_EFULL, "map_size too small to create the store");
    }
    return rc;
}

void weft_options_init(weft_options *opt)
{
    if (opt != NULL) {
        memset(opt, 0, sizeof *opt);
    }
}

static void store_free(weft_store *s)
{
    if (s->env != NULL) {
        mdb_env_close(s->env);
    }
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
    weft__store_notify_close(s);
    pthread_mutex_destroy(&s->group_mu);
    pthread_cond_destroy(&s->group_cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_mutex_destroy(&s->notify_mu);
    pthread_rwlock_destroy(&s->map_lock);
    pthread_mutex_destroy(&s->grow_mu);
    pthread_cond_destroy(&s->grow_cv);
    sodium_memzero(s->secret_key, sizeof s->secret_key);
    weft__free(s->dir);
    weft__free(s);
}

static int store_alloc(const char *dir, weft_store **out)
{
    weft_store *s = weft__calloc(1, sizeof *s);
    if (s == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory opening %s", dir);
    }
    s->lock_fd = -1;
    s->notify_fd = s->ino_fd = s->timer_fd = -1;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    s->dir = weft__malloc(n + 1);
    if (s->dir == NULL || pthread_mutex_init(&s->group_mu, NULL) != 0 ||
        pthread_cond_init(&s->group_cv, NULL) != 0 || pthread_cond_init(&s->done_cv, NULL) != 0 ||
        pthread_mutex_init(&s->notify_mu, NULL) != 0 ||
        pthread_rwlock_init(&s->map_lock, NULL) != 0 ||
        pthread_mutex_init(&s->grow_mu, NULL) != 0 || pthread_cond_init(&s->grow_cv, NULL) != 0) {
        /* Creating mutexes does not fail on Linux; only memory can. */
        weft__free(s->dir);
        weft__free(s);
        return weft__err(WEFT_ENOMEM, "out of memory opening %s", dir);
    }
    memcpy(s->dir, dir, n);
    s->dir[n] = '\0';
    *out = s;
    return 0;
}

int weft_store_open(const char *dir, const weft_options *opt, weft_store **out)
{
    weft_options defaults;
    if (opt == NULL) {
        weft_options_init(&defaults);
        opt = &defaults;
    }
    if (dir == NULL || *dir == '\0' || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_open: dir and out are required");
    }
    if (opt->flags & ~(unsigned)(WEFT_OPEN_CREATE | WEFT_OPEN_EXCL) ||
        (opt->flags & WEFT_OPEN_EXCL && !(opt->flags & WEFT_OPEN_CREATE))) {
        return weft__err(WEFT_EINVAL, "weft_store_open: unknown flags 0x%x", opt->flags);
    }
    bool create = (opt->flags & WEFT_OPEN_CREATE) != 0;
    bool excl = (opt->flags & WEFT_OPEN_EXCL) != 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) {
            return errno_err(errno, "opening store directory", dir);
        }
        if (!create) {
            return weft__err(WEFT_ENOSTORE, "no store at %s (directory does not exist)", dir);
        }
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            return errno_err(errno, "creating store directory", dir);
        }
    } else if (!S_ISDIR(st.st_mode)) {
        return weft__err(WEFT_ENOSTORE, "no store at %s (not a directory)", dir);
    }
    if (sodium_init() < 0) {
        return weft__err(WEFT_EIO, "libsodium failed to initialise");
    }

    weft_store *s = NULL;
    int rc = store_alloc(dir, &s);
    if (rc != 0) {
        return rc;
    }
    char *data = path_join(s->dir, "data.mdb");
    char *lock = path_join(s->dir, "writer.lock");
    if (data == NULL || lock == NULL) {
        rc = weft__err(WEFT_ENOMEM, "out of memory opening %s", dir);
        goto fail;
    }
    bool exists = stat(data, &st) == 0;
    if (!exists && !create) {
        rc = weft__err(WEFT_ENOSTORE, "no store at %s (no data.mdb)", dir);
        goto fail;
    }
    if (exists && st.st_size == 0 && !create) {
        rc = weft__err(WEFT_ECORRUPT, "%s is empty", data);
        goto fail;
    }
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        rc = errno_err(errno, "opening", lock);
        goto fail;
    }
    if ((rc = mdb_env_create(&s->env)) != 0) {
        s->env = NULL;
        rc = weft__store_mdb_err(rc, "creating the LMDB environment");
        goto fail;
    }
    mdb_env_set_maxdbs(s->env, WEFT__DB_COUNT + 2);
    mdb_env_set_maxreaders(s->env, 254);
    if (opt->map_size != 0 || !exists) {
        size_t ms = opt->map_size ? opt->map_size : WEFT__DEFAULT_MAP;
        long pg = sysconf(_SC_PAGESIZE);
        size_t psz = pg > 0 ? (size_t)pg : 4096;
        ms = (ms + psz - 1) / psz * psz;
        if ((rc = mdb_env_set_mapsize(s->env, ms)) != 0) {
            rc = weft__store_mdb_err(rc, "setting the map size");
            goto fail;
        }
    }
    rc = mdb_env_open(s->env, s->dir, MDB_NOTLS | MDB_NOMETASYNC, 0600);
    if (rc != 0) {
        if (rc == ENOENT || rc == EINVAL || rc == MDB_INVALID) {
            rc = weft__err(WEFT_ECORRUPT, "%s is not a weft store (%s)", data, mdb_strerror(rc));
        } else {
            rc = weft__store_mdb_err(rc, "opening the store's environment");
        }
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    weft__hlc_init(&s->clock, opt->max_drift_ms, opt->now_ms, opt->now_user);
    if ((rc = setup(s, create, excl)) != 0 || (rc = key_read(s)) != 0) {
        goto fail;
    }
    if ((rc = weft__store_snapshot_id(s, &s->seen_seq)) != 0) {
        goto fail;
    }
    weft__free(data);
    weft__free(lock);
    *out = s;
    return 0;
fail:
    weft__free(data);
    weft__free(lock);
    store_free(s);
    return rc;
}

void weft_store_close(weft_store **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    store_free(*self_p);
    *self_p = NULL;
}

uint64_t weft_store_device(const weft_store *s)
{
    return s != NULL ? s->device : 0;
}

/* The check open leaves out (store.c invariant 4). Repeated on every call
 * rather than remembered: callers are few (the transport, once per engine),
 * and a store without mutable state needs no lock to stay thread-safe. */
int weft_store_secret_key(const weft_store *s, uint8_t out[WEFT_KEY_BYTES])
{
    if (s == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_secret_key: store and out are required");
    }
    if (s->key_mode & 077) {
        return weft__err(WEFT_EAUTH,
                         "key file %s/key is open to other users (mode %04o): the secret key "
                         "may be known; make it private with chmod 600",
                         s->dir, s->key_mode);
    }
    uint8_t derived[WEFT_KEY_BYTES];
    if (crypto_scalarmult_base(derived, s->secret_key) != 0 ||
        sodium_memcmp(derived, s->public_key, WEFT_KEY_BYTES) != 0) {
        return weft__err(WEFT_ECORRUPT, "key file %s/key: secret key does not match its public key",
                         s->dir);
    }
    memcpy(out, s->secret_key, WEFT_KEY_BYTES);
    return 0;
}

/* One device's run: its ops count, and this device's newest is last_hlc. */
static int info_run(void *user, uint64_t device, uint64_t hlc, uint64_t nops)
{
    weft_info *info = user;
    info->ops += nops;
    if (device == info->device) {
        info->last_hlc = hlc;
    }
    return 0;
}

static uint64_t entries(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    return mdb_stat(txn, dbi, &st) == 0 ? st.ms_entries : 0;
}

int weft_store_info(weft_store *s, weft_info *out)
{
    if (s == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_info: store and out are required");
    }
    weft_txn *t;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        return rc;
    }
    weft_info info;
    memset(&info, 0, sizeof info);
    info.device = s->device;
    memcpy(info.public_key, s->public_key, WEFT_KEY_BYTES);
    memcpy(info.store_id, s->store_id, 16);
    info.schema = WEFT__SCHEMA;
    /* Derived, not stored (store_int.h): no write pays for them. */
    if ((rc = weft__oplog_runs(t, info_run, &info)) != 0) {
        weft_txn_abort(&t);
        return rc;
    }
    info.conflicts = entries(t->txn, s->dbi[WEFT__DB_CONFLICTS]);
    MDB_envinfo ei;
    MDB_stat es;
    mdb_env_info(s->env, &ei);
    mdb_env_stat(s->env, &es);
    info.map_size = ei.me_mapsize;
    info.used_bytes = (uint64_t)(ei.me_last_pgno + 1) * es.ms_psize;
    weft_txn_abort(&t);
    *out = info;
    return 0;
}
