/* test_proc.c - durability and concurrency across processes: SIGKILL at a
 * random moment loses no acknowledged write, the map grows past a tiny
 * initial size (one process, and two processes at once), two processes
 * write one store concurrently, and commits in another process wake the
 * change-notification fd.
 *
 * Invariants: each test uses its own store directory and removes it;
 * children never touch a store handle of the parent and end with _exit.
 * Thread-safety: single-threaded (processes).
 */
#define _DEFAULT_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
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

static void wait_ok(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status 0x%x", (int)pid,
              status);
}

/* Child: write ops one txn each, report each acknowledged one. */
static void durability_child(int fd, int start)
{
    weft_store *s = NULL;
    if (weft_store_open(dir, NULL, &s) != 0) {
        _exit(2);
    }
    for (int i = start;; i++) {
        weft_txn *t;
        char e[32];
        snprintf(e, sizeof e, "e%d", i);
        if (weft_txn_begin(s, 0, &t) != 0 || weft_set_int(t, "d", e, "v", i) != 0 ||
            weft_inc(t, "d", "total", "n", 1, NULL) != 0 || weft_txn_commit(&t) != 0) {
            _exit(3);
        }
        int32_t ack = i;
        if (write(fd, &ack, 4) != 4) {
            _exit(4);
        }
    }
}

Test(store, durability_sigkill, .init = setup, .fini = teardown)
{
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    weft_store *s = store_open(dir, 0, NULL);
    weft_store_close(&s);
    int next = 0;
    for (int round = 0; round < 6; round++) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            durability_child(fds[1], next);
        }
        close(fds[1]);
        int32_t ack, last = -1;
        if (round % 2 == 1) { /* make progress even when the child is slow to start */
            cr_assert_eq(read(fds[0], &ack, 4), 4);
            cr_assert_eq(ack, next);
            last = ack;
        }
        usleep((useconds_t)(2000 + rand() % 40000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(fds[0], &ack, 4) == 4) {
            cr_assert_eq(ack, last < 0 ? next : last + 1);
            last = ack;
        }
        close(fds[0]);
        OK(weft_store_open(dir, NULL, &s));
        weft_txn *t;
        OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
        for (int i = 0; i <= last; i++) {
            char e[32];
            snprintf(e, sizeof e, "e%d", i);
            weft_field f;
            int rc = weft_get(t, "d", e, "v", &f);
            cr_assert_eq(rc, 0, "seed %u round %d: acknowledged op e%d lost", seed, round, i);
            uint8_t v[16];
            size_t n = mp_int(v, sizeof v, i);
            cr_assert(f.value.len == n && memcmp(f.value.ptr, v, n) == 0, "seed %u", seed);
        }
        /* the store is consistent: counter = number of entities, ops = 2x */
        int ents = weft_scan(t, "d", NULL, 0, NULL, NULL);
        weft_field tot;
        weft_info info;
        OK(weft_store_info(s, &info));
        uint64_t expect_ops = ents > 0 ? 2 * (uint64_t)(ents - 1) : 0;
        cr_assert_eq(info.ops, expect_ops, "seed %u round %d", seed, round);
        if (ents > 1) {
            OK(weft_get(t, "d", "total", "n", &tot));
        }
        weft_vv *vv;
        OK(weft_store_vv(t, &vv));
        cr_assert_eq(weft_vv_get(vv, info.device), info.last_hlc, "seed %u", seed);
        weft_vv_destroy(&vv);
        weft_txn_abort(&t);
        weft_store_close(&s);
        next = ents > 0 ? ents - 1 : 0; /* entities e0..e(n-1) plus "total" */
        cr_assert_geq(next, last + 1, "seed %u", seed);
    }
}

Test(store, map_growth_one_process, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 64 * 1024, NULL);
    static uint8_t val[4096];
    val[0] = 0xc5;
    val[1] = (sizeof val - 3) >> 8;
    val[2] = (sizeof val - 3) & 0xff;
    uint64_t rng = 5;
    size_t written = 0;
    int n = 0;
    weft_txn *t;
    /* one txn much larger than the map (about 6 MB) */
    OK(weft_txn_begin(s, 0, &t));
    for (int i = 0; i < 1500; i++, n++) {
        char e[32];
        snprintf(e, sizeof e, "big%d", i);
        val[3] = (uint8_t)i;
        OK(weft_set(t, "g", e, "v", val, sizeof val, NULL));
        written += sizeof val;
    }
    OK(weft__txn_put(t, "peers", (weft_bytes){"peer", 4}, &(weft_bytes){"cursor", 6}));
    OK(weft_txn_commit(&t));
    /* then txns of varying size up to ~20 MB in total */
    while (written < (20u << 20)) {
        int k = 1 + (int)(rng_next(&rng) % 200);
        OK(weft_txn_begin(s, 0, &t));
        for (int i = 0; i < k; i++, n++) {
            char e[32];
            snprintf(e, sizeof e, "e%d", n);
            OK(weft_set(t, "g", e, "v", val, sizeof val, NULL));
            written += sizeof val;
        }
        OK(weft_txn_commit(&t));
    }
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, (uint64_t)n);
    cr_assert_gt(info.map_size, 20u << 20);
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "g", NULL, 0, NULL, NULL), n);
    weft_bytes pv;
    OK(weft__txn_get(t, "peers", (weft_bytes){"peer", 4}, &pv));
    cr_assert_eq(pv.len, 6);
    weft_txn_abort(&t);
    weft_store_close(&s);
}

/* Child writer of the two-process tests: n txns of k ops of vlen bytes. */
static void writer_child(const char *tag, int n, int k, size_t vlen, int readers)
{
    weft_store *s = NULL;
    if (weft_store_open(dir, NULL, &s) != 0) {
        _exit(2);
    }
    uint8_t *val = calloc(1, vlen + 5);
    val[0] = 0xc6;
    weft__be32_put(val + 1, (uint32_t)vlen);
    for (int i = 0; i < n; i++) {
        weft_txn *t;
        if (weft_txn_begin(s, 0, &t) != 0) {
            _exit(3);
        }
        for (int j = 0; j < k; j++) {
            char e[48];
            snprintf(e, sizeof e, "%s-%d-%d", tag, i, j);
            if (weft_set(t, "w", e, "v", val, vlen + 5, NULL) != 0) {
                _exit(4);
            }
        }
        if (weft_txn_commit(&t) != 0) {
            _exit(5);
        }
        if (readers) {
            weft_txn *r;
            if (weft_txn_begin(s, WEFT_TXN_RDONLY, &r) != 0) {
                _exit(6);
            }
            int m = weft_scan(r, "w", NULL, 0, NULL, NULL);
            weft_txn_abort(&r);
            if (m < (i + 1) * k) {
                _exit(7);
            }
        }
    }
    free(val);
    weft_store_close(&s);
    _exit(0);
}

static void check_chain(weft_store *s, uint64_t expect_ops)
{
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    opvec o = {0};
    cr_assert_eq(weft_ops_since(t, NULL, opvec_collect, &o), (int)expect_ops);
    uint64_t prev = 0;
    for (size_t i = 0; i < o.n; i++) { /* one device: hlcs distinct, chain intact */
        cr_assert_gt(o.v[i].id.hlc, prev);
        cr_assert_eq(o.v[i].dprev, prev);
        prev = o.v[i].id.hlc;
    }
    weft_vv *vv;
    OK(weft_store_vv(t, &vv));
    cr_assert_eq(weft_vv_get(vv, weft_store_device(s)), prev);
    weft_vv_destroy(&vv);
    weft_txn_abort(&t);
    opvec_free(&o);
}

Test(store, map_growth_two_processes, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 64 * 1024, NULL);
    weft_store_close(&s);
    pid_t a = fork();
    if (a == 0) {
        writer_child("grow", 40, 20, 8000, 0); /* ~6.4 MB */
    }
    pid_t b = fork();
    if (b == 0) {
        writer_child("small", 300, 1, 10, 1);
    }
    wait_ok(a);
    wait_ok(b);
    OK(weft_store_open(dir, NULL, &s));
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "w", NULL, 0, NULL, NULL), 40 * 20 + 300);
    weft_txn_abort(&t);
    check_chain(s, 40 * 20 + 300);
    weft_store_close(&s);
}

Test(store, two_writers, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_store_close(&s);
    enum { N = 300 };
    pid_t a = fork();
    if (a == 0) {
        writer_child("a", N, 1, 4, 0);
    }
    pid_t b = fork();
    if (b == 0) {
        writer_child("b", N, 1, 4, 0);
    }
    wait_ok(a);
    wait_ok(b);
    OK(weft_store_open(dir, NULL, &s));
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, 2 * N);
    check_chain(s, 2 * N);
    weft_store_close(&s);
}

Test(store, change_notification, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    int fd;
    OK(weft_store_fd(s, &fd));
    uint64_t seq0, seq1;
    cr_assert_geq(weft_store_changed(s, &seq0), 0);
    cr_assert_eq(weft_store_changed(s, &seq1), 0);
    cr_assert_eq(seq0, seq1);
    cr_assert_eq(weft_store_wait(s, 10), 0);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(50000);
        writer_child("n", 1, 1, 4, 0);
    }
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 5000), 1, "fd not readable after another process's commit");
    wait_ok(pid);
    cr_assert_eq(weft_store_changed(s, &seq1), 1);
    cr_assert_gt(seq1, seq0);
    cr_assert_eq(weft_store_changed(s, &seq1), 0);
    /* wait() sees the next commit, ours this time */
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "e", "f", "x"));
    OK(weft_txn_commit(&t));
    cr_assert_eq(weft_store_wait(s, 5000), 1);
    weft_store_close(&s);
}

/* A whole sync batch far larger than the map, applied in one weft_apply:
 * the nested txn hits MAP_FULL, is rolled back, the map grows and the batch
 * is retried. */
Test(store, map_growth_apply, .init = setup, .fini = teardown)
{
    char other[600];
    snprintf(other, sizeof other, "%s/b", dir);
    weft_store *a = store_open(dir, 0, NULL), *b = store_open(other, 64 * 1024, NULL);
    static uint8_t val[2048];
    val[0] = 0xc5;
    val[1] = (sizeof val - 3) >> 8;
    val[2] = (sizeof val - 3) & 0xff;
    weft_txn *t;
    OK(weft_txn_begin(a, 0, &t));
    for (int i = 0; i < 3000; i++) {
        char e[32];
        snprintf(e, sizeof e, "e%d", i);
        OK(weft_set(t, "g", e, "v", val, sizeof val, NULL));
    }
    OK(weft_txn_commit(&t));
    opvec o = {0};
    ops_missing(a, b, &o);
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set_str(t, "local", "x", "y", "before the batch")); /* journaled, replayed */
    weft_apply_result r;
    OK(weft_apply(t, o.v, o.n, &r));
    cr_assert_eq(r.applied, 3000);
    OK(weft__txn_put(t, "peers", (weft_bytes){"p", 1}, &(weft_bytes){"acked", 5}));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(b, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "g", NULL, 0, NULL, NULL), 3000);
    cr_assert_eq(weft_scan(t, "local", NULL, 0, NULL, NULL), 1);
    weft_txn_abort(&t);
    sync_one(b, a, 100, &(uint64_t){9});
    cr_assert(dump_eq(a, b, "ops,fields,counters,entities,conflicts,vv"));
    opvec_free(&o);
    weft_store_close(&a);
    weft_store_close(&b);
}

typedef struct reader_arg {
    weft_store *s;
    volatile int stop;
    int reads;
    int err;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *ra = p;
    while (!ra->stop) {
        weft_txn *t;
        int rc = weft_txn_begin(ra->s, WEFT_TXN_RDONLY, &t);
        if (rc == 0) {
            rc = weft_scan(t, "g", NULL, 0, NULL, NULL);
            rc = rc < 0 ? rc : 0;
            usleep(200);
            weft_txn_abort(&t);
        }
        if (rc != 0) {
            ra->err = rc;
            return NULL;
        }
        ra->reads++;
    }
    return NULL;
}

/* Growth while another thread keeps taking read txns: the writer waits for
 * them; a thread that itself holds a read txn gets WEFT_EBUSY at once. */
Test(store, map_growth_threads, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 64 * 1024, NULL);
    reader_arg ra = {s, 0, 0, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, reader_main, &ra), 0);
    static uint8_t val[4096];
    val[0] = 0xc5;
    val[1] = (sizeof val - 3) >> 8;
    val[2] = (sizeof val - 3) & 0xff;
    weft_txn *t;
    for (int k = 0; k < 40; k++) {
        OK(weft_txn_begin(s, 0, &t));
        for (int i = 0; i < 30; i++) {
            char e[32];
            snprintf(e, sizeof e, "e%d-%d", k, i);
            OK(weft_set(t, "g", e, "v", val, sizeof val, NULL));
        }
        OK(weft_txn_commit(&t));
    }
    ra.stop = 1;
    pthread_join(th, NULL);
    cr_assert_eq(ra.err, 0, "reader: %s", weft_err_name(ra.err));
    cr_assert_gt(ra.reads, 0);

    weft_txn *r;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &r));
    OK(weft_txn_begin(s, 0, &t));
    int rc = 0;
    for (int i = 0; i < 5000 && rc == 0; i++) {
        char e[32];
        snprintf(e, sizeof e, "x%d", i);
        rc = weft_set(t, "g", e, "v", val, sizeof val, NULL);
    }
    cr_assert_eq(rc, WEFT_EBUSY, "%s", weft_err_name(rc));
    ERR(WEFT_ETXN, weft_set_str(t, "g", "e", "v", "x"));
    ERR(WEFT_ETXN, weft_txn_commit(&t));
    weft_txn_abort(&r);
    OK(weft_txn_begin(s, 0, &t)); /* and the next writer grows it */
    for (int i = 0; i < 2000; i++) {
        char e[32];
        snprintf(e, sizeof e, "x%d", i);
        OK(weft_set(t, "g", e, "v", val, sizeof val, NULL));
    }
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
}
