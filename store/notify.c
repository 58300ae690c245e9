/* notify.c - change notification: an fd that becomes readable when the store
 * may have changed (this process or another), and the change sequence.
 *
 * The sequence is the txn id of the snapshot a new read transaction sees,
 * so "changed" means a reader can see the change. The fd handed out is an
 * epoll set (level-triggered, close-on-exec) of two fds, created on first use
 * (stores that never ask cost no inotify instance, a per-user limit):
 *   - an inotify instance watching <dir>/data.mdb (IN_MODIFY |
 *     IN_CLOSE_WRITE): every commit, from any process, writes that file;
 *   - a timerfd for re-checks. LMDB's last write of a commit (the meta page)
 *     comes before the new snapshot is published to readers (after its
 *     fsync), so a watcher woken by a commit's writes may still read the old
 *     snapshot, and no later write would wake it. Whenever weft_store_changed
 *     finds a commit written (the meta page's txn id, mdb_env_info) but not
 *     yet readable (a read txn's snapshot id), it arms the timer (250 us,
 *     doubling to 50 ms, at most ~2 s per commit as a safety bound) and the
 *     fd becomes readable again when it fires; when nothing is in flight no
 *     timer runs.
 * All of it is on the reader's side: writers pay nothing (touching the file
 * after each commit cost 0.2 of a durable commit on ext4).
 *
 * Invariants:
 *   1. s->seen_seq is the sequence last reported by weft_store_changed (the
 *      sequence at open before the first call).
 *   2. notify_fd, ino_fd and timer_fd are all -1 or all live, notify_fd
 *      watching the other two.
 *   3. A re-check is armed (recheck_us > 0) only while, at the last call,
 *      the meta page named a txn newer than the readable snapshot.
 * Thread-safety: thread-safe (notify_mu).
 */
#include <errno.h>
#include <poll.h>
#include <stdalign.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"

#define RECHECK_FIRST_US  250u
#define RECHECK_MAX_US    50000u
#define RECHECK_BUDGET_US 2000000u

void weft__store_notify_close(weft_store *s)
{
    int *fds[] = {&s->notify_fd, &s->ino_fd, &s->timer_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

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
    int rc = 0;
    s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    s->notify_fd = epoll_create1(EPOLL_CLOEXEC);
    if (s->ino_fd < 0 || s->timer_fd < 0 || s->notify_fd < 0) {
        rc = weft__err(WEFT_EIO, "creating the change notification fds: %s", strerror(errno));
    } else if (inotify_add_watch(s->ino_fd, path, IN_MODIFY | IN_CLOSE_WRITE) < 0) {
        rc = weft__err(WEFT_EIO, "watching %s: %s", path, strerror(errno));
    } else {
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.fd = s->ino_fd;
        if (epoll_ctl(s->notify_fd, EPOLL_CTL_ADD, s->ino_fd, &ev) != 0) {
            rc = weft__err(WEFT_EIO, "epoll_ctl: %s", strerror(errno));
        } else {
            ev.data.fd = s->timer_fd;
            if (epoll_ctl(s->notify_fd, EPOLL_CTL_ADD, s->timer_fd, &ev) != 0) {
                rc = weft__err(WEFT_EIO, "epoll_ctl: %s", strerror(errno));
            }
        }
    }
    weft__free(path);
    if (rc != 0) {
        weft__store_notify_close(s);
    }
    s->recheck_us = 0;
    return rc;
}

/* Arm the re-check timer to fire once in @p us microseconds (0 disarms). */
static void arm(weft_store *s, unsigned us)
{
    struct itimerspec it;
    memset(&it, 0, sizeof it);
    it.it_value.tv_sec = us / 1000000u;
    it.it_value.tv_nsec = (long)(us % 1000000u) * 1000L;
    timerfd_settime(s->timer_fd, 0, &it, NULL);
    s->recheck_us = us;
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

/* Read everything pending on a non-blocking fd; true if anything was. */
static bool drain(int fd)
{
    alignas(struct inotify_event) char buf[4096];
    bool any = false;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            any = true;
            continue;
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return any; /* EAGAIN: empty */
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
        bool events = drain(s->ino_fd);
        bool fired = drain(s->timer_fd);
        uint64_t now = 0;
        rc = weft__store_snapshot_id(s, &now);
        if (rc != 0) {
            pthread_mutex_unlock(&s->notify_mu);
            return rc;
        }
        /* Written but not yet readable: the meta page (what mdb_env_info
         * reads) already names a txn newer than the snapshot readers get.
         * Re-check until they agree: no later event would wake us. This
         * covers a burst, where one drain consumes the events of a commit
         * already readable and of one still in flight. */
        MDB_envinfo ei;
        mdb_env_info(s->env, &ei);
        if ((uint64_t)ei.me_last_txnid > now) {
            if (s->recheck_us == 0 || events) {
                s->recheck_left_us = RECHECK_BUDGET_US;
                arm(s, RECHECK_FIRST_US);
            } else if (fired) {
                unsigned next =
                    s->recheck_us * 2 > RECHECK_MAX_US ? RECHECK_MAX_US : s->recheck_us * 2;
                if (s->recheck_left_us > s->recheck_us) {
                    s->recheck_left_us -= s->recheck_us;
                    arm(s, next);
                } else {
                    arm(s, 0); /* gave up: that commit never published */
                }
            }
        } else if (s->recheck_us > 0) {
            arm(s, 0);
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
