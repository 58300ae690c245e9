/* test_group.c - group commit (store/txn.c): write txns that begin while
 * another is open join its durable commit.
 *
 * Pinned here (txn.c's invariants 3 and 4):
 *   - a txn waiting to begin joins the open one's group when it commits,
 *     and every member's weft_txn_commit returns only with the group's
 *     result (statistics: one group commit, N followers);
 *   - a follower's abort drops only its own writes; a leader's abort drops
 *     only its own and the next waiter leads;
 *   - a follower that fills the map gets it grown and its writes replayed;
 *   - a failed group commit (file size limit) fails every member, and none
 *     of their writes is in the store afterwards;
 *   - many threads writing single ops: every acknowledged op is there after
 *     reopening, each thread's ids ascend, no id is issued twice.
 * Thread-safety: each test starts its own threads and joins them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static char *dir;

static void setup(void)
{
    dir = tmpdir_new();
}

static void teardown(void)
{
    rm_rf(dir);
    free(dir);
}

static void stats(weft_store *s, uint64_t *commits, uint64_t *joined, unsigned *waiting)
{
    weft__store_group_stats(s, commits, joined, waiting);
}

/* Wait (bounded) until @p n threads wait in weft_txn_begin. */
static void wait_waiting(weft_store *s, unsigned n)
{
    for (int i = 0; i < 10000; i++) {
        uint64_t c, j;
        unsigned w;
        stats(s, &c, &j, &w);
        if (w >= n) {
            return;
        }
        usleep(1000);
    }
    cr_assert_fail("%u threads never waited to begin", n);
}

typedef struct job {
    weft_store *s;
    const char *entity;
    size_t vlen;  /* value size: 0 = a short string */
    bool abort;   /* abort instead of committing */
    int rc_begin; /* results */
    int rc;
    weft_id id;
} job;

static void *writer(void *arg)
{
    job *j = arg;
    weft_txn *t = NULL;
    j->rc_begin = weft_txn_begin(j->s, 0, &t);
    if (j->rc_begin != 0) {
        return NULL;
    }
    if (j->vlen == 0) {
        j->rc = weft_set(t, "c", j->entity, "f", "\xa1x", 2, &j->id);
    } else {
        uint8_t *v = calloc(1, j->vlen);
        v[0] = 0xc6; /* bin32 */
        v[1] = (uint8_t)((j->vlen - 5) >> 24);
        v[2] = (uint8_t)((j->vlen - 5) >> 16);
        v[3] = (uint8_t)((j->vlen - 5) >> 8);
        v[4] = (uint8_t)(j->vlen - 5);
        j->rc = weft_set(t, "c", j->entity, "f", v, j->vlen, &j->id);
        free(v);
    }
    if (j->rc == 0 && !j->abort) {
        j->rc = weft_txn_commit(&t);
    } else {
        weft_txn_abort(&t);
    }
    return NULL;
}

static bool has(weft_store *s, const char *entity)
{
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_field v;
    int rc = weft_get(t, "c", entity, "f", &v);
    weft_txn_abort(&t);
    cr_assert(rc == 0 || rc == WEFT_ENOTFOUND, "%s", weft_last_error());
    return rc == 0;
}

/* The leader is this thread; two followers wait, then join its commit. */
Test(group, followers_join_the_leaders_commit, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    uint64_t c0, j0, c1, j1;
    unsigned w;
    stats(s, &c0, &j0, &w);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "lead", "f", "x"));
    job jb[3] = {{s, "f1", 0, false, -1, -1, {0, 0}},
                 {s, "f2", 0, true, -1, -1, {0, 0}},
                 {s, "f3", 0, false, -1, -1, {0, 0}}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        pthread_create(&th[i], NULL, writer, &jb[i]);
    }
    wait_waiting(s, 3);
    OK(weft_txn_commit(&t));
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jb[i].rc_begin, 0);
        cr_assert_eq(jb[i].rc, 0, "%s: %s", jb[i].entity, weft_err_name(jb[i].rc));
    }
    stats(s, &c1, &j1, &w);
    cr_assert_eq(c1 - c0, 1, "one group commit, not %llu", (unsigned long long)(c1 - c0));
    cr_assert_eq(j1 - j0, 2, "two followers committed in it (one aborted)");
    weft_store_close(&s);
    s = store_open(dir, 0, NULL);
    cr_assert(has(s, "lead") && has(s, "f1") && has(s, "f3"));
    cr_assert(!has(s, "f2"), "an aborted follower's write is not there");
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, 3);
    weft_store_close(&s);
}

/* A leader that aborts hands the lead to the waiting thread. */
Test(group, leader_abort_passes_the_lead, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "lead", "f", "x"));
    job jb = {s, "next", 0, false, -1, -1, {0, 0}};
    pthread_t th;
    pthread_create(&th, NULL, writer, &jb);
    wait_waiting(s, 1);
    weft_txn_abort(&t);
    pthread_join(th, NULL);
    cr_assert_eq(jb.rc, 0);
    cr_assert(!has(s, "lead"));
    cr_assert(has(s, "next"));
    weft_store_close(&s);
}

/* A thread holding a write txn that asks for another gets EBUSY at once,
 * also while it is a follower. */
Test(group, second_write_txn_in_one_thread, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t, *t2 = NULL;
    OK(weft_txn_begin(s, 0, &t));
    ERR(WEFT_EBUSY, weft_txn_begin(s, 0, &t2));
    cr_assert_null(t2);
    OK(weft_set_str(t, "c", "x", "f", "x"));
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
}

/* The follower writes enough to fill the map: the leader grows it and
 * replays, the follower replays its own writes, all commit. */
Test(group, follower_fills_the_map, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 64 * 1024, NULL);
    weft_info i0;
    OK(weft_store_info(s, &i0));
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "lead", "f", "x"));
    job jb[2] = {{s, "big1", 200 * 1024, false, -1, -1, {0, 0}},
                 {s, "big2", 300 * 1024, false, -1, -1, {0, 0}}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        pthread_create(&th[i], NULL, writer, &jb[i]);
    }
    wait_waiting(s, 2);
    OK(weft_txn_commit(&t));
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(jb[i].rc, 0, "%s: %s", jb[i].entity, weft_err_name(jb[i].rc));
    }
    weft_info i1;
    OK(weft_store_info(s, &i1));
    cr_assert_gt(i1.map_size, i0.map_size, "the map grew");
    weft_store_close(&s);
    s = store_open(dir, 0, NULL);
    cr_assert(has(s, "lead") && has(s, "big1") && has(s, "big2"));
    weft_store_close(&s);
}

/* The group's commit fails (the file may not grow: RLIMIT_FSIZE, in a
 * child): every member gets the error and none of their writes remains. */
Test(group, failed_commit_fails_every_member, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 1 << 20, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "before", "f", "x"));
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        char path[600];
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        struct stat st;
        if (stat(path, &st) != 0) {
            _exit(10);
        }
        struct rlimit rl = {(rlim_t)st.st_size + 64 * 1024, (rlim_t)st.st_size + 64 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        weft_store *c = NULL;
        if (weft_store_open(dir, NULL, &c) != 0) {
            _exit(11);
        }
        weft_txn *lt;
        if (weft_txn_begin(c, 0, &lt) != 0 || weft_set_str(lt, "c", "lead", "f", "x") != 0) {
            _exit(12);
        }
        job jb = {c, "big", 256 * 1024, false, -1, -1, {0, 0}};
        pthread_t th;
        pthread_create(&th, NULL, writer, &jb);
        for (int i = 0; i < 10000; i++) {
            uint64_t cc, jj;
            unsigned w;
            weft__store_group_stats(c, &cc, &jj, &w);
            if (w > 0) {
                break;
            }
            usleep(1000);
        }
        int rc = weft_txn_commit(&lt);
        pthread_join(th, NULL);
        weft_store_close(&c);
        /* 0: both failed with the file size error */
        _exit(rc == WEFT_EFULL && jb.rc == WEFT_EFULL ? 0 : 20 + (rc != 0) * 2 + (jb.rc != 0));
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    s = store_open(dir, 0, NULL);
    cr_assert(has(s, "before"));
    cr_assert(!has(s, "lead") && !has(s, "big"), "nothing of the failed group remains");
    weft_store_close(&s);
}

/* Many threads, single-op durable write txns: every acknowledged op is in
 * the store after reopening, each thread's ids ascend, none repeats. */
#define NTHREADS 8
#define NWRITES  150

typedef struct many {
    weft_store *s;
    int k;
    weft_id ids[NWRITES];
    int fails;
} many;

static void *many_writer(void *arg)
{
    many *m = arg;
    for (int i = 0; i < NWRITES; i++) {
        char e[32];
        snprintf(e, sizeof e, "t%d-%d", m->k, i % 20);
        weft_txn *t;
        int rc = weft_txn_begin(m->s, 0, &t);
        if (rc == 0 && (rc = weft_set(t, "c", e, "f", "\x01", 1, &m->ids[i])) == 0) {
            rc = weft_txn_commit(&t);
        } else if (rc == 0 || t != NULL) {
            weft_txn_abort(&t);
        }
        if (rc != 0) {
            m->fails++;
            m->ids[i].hlc = 0;
        }
    }
    return NULL;
}

static int id_cmp(const void *a, const void *b)
{
    const weft_id *x = a, *y = b;
    return x->hlc != y->hlc ? (x->hlc > y->hlc) - (x->hlc < y->hlc)
                            : (x->device > y->device) - (x->device < y->device);
}

Test(group, many_threads_every_ack_kept, .init = setup, .fini = teardown, .timeout = 120)
{
    weft_store *s = store_open(dir, 0, NULL);
    static many m[NTHREADS];
    pthread_t th[NTHREADS];
    for (int k = 0; k < NTHREADS; k++) {
        m[k] = (many){.s = s, .k = k};
        pthread_create(&th[k], NULL, many_writer, &m[k]);
    }
    for (int k = 0; k < NTHREADS; k++) {
        pthread_join(th[k], NULL);
        cr_assert_eq(m[k].fails, 0, "thread %d: %d writes failed", k, m[k].fails);
        for (int i = 1; i < NWRITES; i++) {
            cr_assert_gt(m[k].ids[i].hlc, m[k].ids[i - 1].hlc, "ids ascend in a thread");
        }
    }
    uint64_t c, j;
    unsigned w;
    stats(s, &c, &j, &w);
    cr_assert_eq(c + j, (uint64_t)NTHREADS * NWRITES + 0,
                 "every txn was a leader or a follower: %llu + %llu", (unsigned long long)c,
                 (unsigned long long)j);
    weft_store_close(&s);
    s = store_open(dir, 0, NULL);
    /* every acknowledged id is in the log, and no id repeats */
    opvec log = {0};
    weft_vv *none;
    OK(weft_vv_new(&none));
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int got = weft_ops_since(t, none, opvec_collect, &log);
    weft_txn_abort(&t);
    weft_vv_destroy(&none);
    cr_assert_eq(got, NTHREADS * NWRITES, "%s", weft_last_error());
    cr_assert_eq(log.n, (size_t)NTHREADS * NWRITES);
    static weft_id all[NTHREADS * NWRITES];
    for (size_t i = 0; i < log.n; i++) {
        all[i] = log.v[i].id;
    }
    opvec_free(&log);
    for (size_t i = 1; i < (size_t)NTHREADS * NWRITES; i++) {
        cr_assert_lt(id_cmp(&all[i - 1], &all[i]), 0, "the log ascends, no id twice");
    }
    for (int k = 0; k < NTHREADS; k++) {
        for (int i = 0; i < NWRITES; i++) {
            cr_assert_not_null(
                bsearch(&m[k].ids[i], all, (size_t)NTHREADS * NWRITES, sizeof all[0], id_cmp),
                "acknowledged op %d of thread %d is missing", i, k);
        }
    }
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, (uint64_t)NTHREADS * NWRITES);
    weft_store_close(&s);
}
