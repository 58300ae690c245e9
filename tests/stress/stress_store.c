/* stress_store.c - threads hammering one weft_store, for ThreadSanitizer.
 *
 * weft_store_h says a store may be shared by threads. This program backs the
 * claim: writer threads commit small transactions (into a map started tiny,
 * so it grows under them), reader threads scan, get and stream the op log
 * in read transactions, and a watcher thread drains change notifications,
 * all on one store handle at once. Built normally it checks the outcome;
 * built with -fsanitize=thread (.ci/run does) TSan checks the races.
 * Criterion aborts under TSan (Snaipe/Criterion#274), hence plain main().
 *
 * Invariants:
 *   1. Every write acknowledged by a writer is readable at the end, and the
 *      op count is exactly the number of writes.
 *   2. The program stops by itself: fixed iteration counts, no waits
 *      without a timeout.
 * Thread-safety: the point of the program; each weft_txn stays in its thread.
 */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/weft.h>

enum { WRITERS = 3, READERS = 3, TXNS = 60, OPS_PER_TXN = 20 };

static weft_store *store;
static atomic_int writers_left = WRITERS;
static atomic_int failures;

#define CHECK(expr)                                                             \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        if (rc_ < 0) {                                                          \
            fprintf(stderr, "%s:%d: %s = %s (%s)\n", __FILE__, __LINE__, #expr, \
                    weft_err_name(rc_), weft_last_error());                     \
            atomic_fetch_add(&failures, 1);                                     \
        }                                                                       \
    } while (0)

static void *writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    char id[32], val[64];
    for (int i = 0; i < TXNS; i++) {
        weft_txn *t = NULL;
        int rc = weft_txn_begin(store, 0, &t);
        CHECK(rc);
        if (rc != 0) {
            continue;
        }
        for (int j = 0; j < OPS_PER_TXN && rc == 0; j++) {
            snprintf(id, sizeof id, "w%d-%d-%d", w, i, j);
            snprintf(val, sizeof val, "value %d/%d/%d with some padding to fill pages", w, i, j);
            rc = weft_set_str(t, "stress", id, "v", val);
            CHECK(rc);
        }
        if (rc == 0) {
            rc = weft_inc(t, "stress", "counter", "n", 1, NULL);
            CHECK(rc);
        }
        if (rc == 0) {
            CHECK(weft_txn_commit(&t));
        }
        weft_txn_abort(&t); /* NULL after a commit */
    }
    atomic_fetch_sub(&writers_left, 1);
    return NULL;
}

static int count_field(const weft_field *f, void *user)
{
    (void)f;
    (*(long *)user)++;
    return 0;
}

static int count_op(const weft_op *op, void *user)
{
    (void)op;
    (*(long *)user)++;
    return 0;
}

static void *reader(void *arg)
{
    (void)arg;
    while (atomic_load(&writers_left) > 0) {
        weft_txn *t = NULL;
        int rc = weft_txn_begin(store, WEFT_TXN_RDONLY, &t);
        CHECK(rc);
        if (rc != 0) {
            continue;
        }
        long fields = 0, ops = 0;
        CHECK(weft_scan(t, "stress", NULL, 50, count_field, &fields));
        CHECK(weft_ops_since(t, NULL, count_op, &ops));
        weft_field f;
        rc = weft_get(t, "stress", "counter", "n", &f);
        if (rc != 0 && rc != WEFT_ENOTFOUND) {
            CHECK(rc);
        }
        weft_vv *vv = NULL;
        CHECK(weft_store_vv(t, &vv));
        weft_vv_destroy(&vv);
        weft_txn_abort(&t);
    }
    return NULL;
}

static void *watcher(void *arg)
{
    (void)arg;
    while (atomic_load(&writers_left) > 0) {
        int rc = weft_store_wait(store, 50);
        if (rc < 0) {
            CHECK(rc);
        }
        uint64_t seq;
        weft_store_changed(store, &seq);
    }
    return NULL;
}

int main(void)
{
    char dir[] = "/tmp/weft-stress.XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    weft_options opt;
    weft_options_init(&opt);
    opt.flags = WEFT_OPEN_CREATE;
    opt.map_size = 256 * 1024; /* small: the map must grow while threads run */
    if (weft_store_open(dir, &opt, &store) != 0) {
        fprintf(stderr, "open: %s\n", weft_last_error());
        return 1;
    }
    pthread_t th[WRITERS + READERS + 1];
    int n = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_create(&th[n++], NULL, writer, (void *)(intptr_t)i);
    }
    for (int i = 0; i < READERS; i++) {
        pthread_create(&th[n++], NULL, reader, NULL);
    }
    pthread_create(&th[n++], NULL, watcher, NULL);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }

    /* Invariant 1: every acknowledged write is there, exactly once. */
    weft_txn *t = NULL;
    CHECK(weft_txn_begin(store, WEFT_TXN_RDONLY, &t));
    long fields = 0, ops = 0;
    int entities = weft_scan(t, "stress", NULL, 0, count_field, &fields);
    CHECK(weft_ops_since(t, NULL, count_op, &ops));
    weft_field f;
    CHECK(weft_get(t, "stress", "counter", "n", &f));
    weft_txn_abort(&t);
    long want_entities = (long)WRITERS * TXNS * OPS_PER_TXN + 1;
    long want_ops = (long)WRITERS * TXNS * (OPS_PER_TXN + 1);
    if (entities != want_entities || ops != want_ops) {
        fprintf(stderr, "stress: %d entities (want %ld), %ld ops (want %ld)\n", entities,
                want_entities, ops, want_ops);
        atomic_fetch_add(&failures, 1);
    }
    weft_info info;
    CHECK(weft_store_info(store, &info));
    weft_store_close(&store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "stress: could not remove %s\n", dir);
    }
    int bad = atomic_load(&failures);
    printf("stress_store: %d writers x %d txns, %d readers, map grew to %llu bytes: %s\n", WRITERS,
           TXNS, READERS, (unsigned long long)info.map_size, bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
