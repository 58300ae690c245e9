/* notify.c - change notification: an fd that becomes readable when the store
 * may have changed (this process or another), and the change sequence.
 *
 * The fd is an inotify instance (non-blocking, close-on-exec) watching
 * <dir>/data.mdb for IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB. It is created
 * on first use, so stores that never ask for it cost no inotify instance (a
 * per-user limit). The change sequence is the txn id of the snapshot a new
 * read transaction sees, so "changed" means a reader can see the change.
 *
 * Why IN_ATTRIB: LMDB's last write to data.mdb in a commit (the meta page)
 * happens before the new snapshot is published to readers (after its
 * fsync), so a watcher woken by the commit's writes may still read the old
 * snapshot, and no later write would wake it. Every weft commit therefore
 * touches data.mdb's times (futimens, no fsync) after mdb_txn_commit has
 * returned (txn.c): that last event always comes after the snapshot is
 * readable, so a change is never missed, at worst reported one wakeup later.
 *
 * Invariants:
 *   1. s->seen_seq is the sequence last reported by weft_store_changed (the
 *      sequence at open before the first call).
 *   2. notify_fd is -1 or a live inotify fd watching data.mdb.
 * Thread-safety: thread-safe (notify_mu).
 */
#include <errno.h>
#include <poll.h>
#include <stdalign.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"

/* With notify_mu held. */
static int ensure_fd(weft_store *s)
{
    if (s->notify_fd >= 0) {
        return 0;
    }
    size_t n = strlen(s->dir);
    char *path = weft__malloc(n + sizeof "/data.mdb");
    if (path == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory watching %s", s->dir);
    }
    memcpy(path, s->dir, n);
    memcpy(path + n, "/data.mdb", sizeof "/data.mdb");
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = weft__err(WEFT_EIO, "inotify_init1: %s", strerror(errno));
    } else if (inotify_add_watch(fd, path, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB) < 0) {
        rc = weft__err(WEFT_EIO, "watching %s: %s", path, strerror(errno));
        close(fd);
    } else {
        s->notify_fd = fd;
    }
    weft__free(path);
    return rc;
}

void weft__store_notify_close(weft_store *s)
{
    if (s->notify_fd >= 0) {
        close(s->notify_fd);
        s->notify_fd = -1;
    }
}

int weft_store_fd(weft_store *s, int *fd)
{
    if (s == NULL || fd == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_fd: store and fd are required");
    }
    pthread_mutex_lock(&s->notify_mu);
    int rc = ensure_fd(s);
    if (rc == 0) {
        *fd = s->notify_fd;
    }
    pthread_mutex_unlock(&s->notify_mu);
    return rc;
}

static void drain(int fd)
{
    alignas(struct inotify_event) char buf[4096];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return; /* EAGAIN: empty */
    }
}

int weft__store_snapshot_id(weft_store *s, uint64_t *id)
{
    weft_txn *t = NULL;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        return rc;
    }
    *id = (uint64_t)mdb_txn_id(t->txn);
    weft_txn_abort(&t);
    return 0;
}

int weft_store_changed(weft_store *s, uint64_t *seq)
{
    if (s == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_changed: store is NULL");
    }
    pthread_mutex_lock(&s->notify_mu);
    int rc = ensure_fd(s);
    if (rc == 0) {
        drain(s->notify_fd);
        uint64_t now = 0;
        rc = weft__store_snapshot_id(s, &now);
        if (rc != 0) {
            pthread_mutex_unlock(&s->notify_mu);
            return rc;
        }
        rc = now != s->seen_seq;
        s->seen_seq = now;
        if (seq != NULL) {
            *seq = now;
        }
    }
    pthread_mutex_unlock(&s->notify_mu);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int weft_store_wait(weft_store *s, int timeout_ms)
{
    int fd;
    int rc = weft_store_fd(s, &fd);
    if (rc != 0) {
        return rc;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
    for (;;) {
        if ((rc = weft_store_changed(s, NULL)) != 0) {
            return rc;
        }
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - mono_ms();
            if (l <= 0) {
                return 0;
            }
            left = l > 0x7fffffff ? 0x7fffffff : (int)l;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, left);
        if (n < 0 && errno != EINTR) {
            return weft__err(WEFT_EIO, "poll: %s", strerror(errno));
        }
    }
}
