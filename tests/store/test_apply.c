/* test_apply.c - remote apply and delta export through the public API:
 * atomic batches, gap refusal, idempotence, convergence of random
 * replicas, conflicts and resolve, O(delta) export, and the drift horizon.
 *
 * Invariants: each test uses its own store directories and removes them.
 * Thread-safety: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"

#define NSTORES 3
static char *dirs[NSTORES];
static void setup(void)
{
    for (int i = 0; i < NSTORES; i++) {
        dirs[i] = tmpdir_new();
    }
}
static void teardown(void)
{
    for (int i = 0; i < NSTORES; i++) {
        rm_rf(dirs[i]);
        free(dirs[i]);
    }
}

static void some_writes(weft_store *s, int n, const char *tag)
{
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    char e[32];
    for (int i = 0; i < n; i++) {
        snprintf(e, sizeof e, "e%d", i % 5);
        OK(weft_set_str(t, "c", e, tag, tag));
        OK(weft_inc(t, "c", e, "n", i, NULL));
    }
    OK(weft_txn_commit(&t));
}

static void expect_batch_fails(weft_store *b, const weft_op *ops, size_t n, int code)
{
    weft__buf before = {0}, after = {0};
    dump(b, NULL, &before);
    weft_txn *t;
    weft_apply_result r = {99, 99, 99, 99, 99};
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set_str(t, "other", "x", "y", "before")); /* caller's own work survives */
    ERR(code, weft_apply(t, ops, n, &r));
    cr_assert_eq(r.applied, 99, "result written on failure");
    cr_assert_lt(r.failed_at, n, "failed_at names the failing op");
    /* the caller's txn is still usable: read, write, commit */
    weft_field f;
    OK(weft_get(t, "other", "x", "y", &f));
    OK(weft_set_str(t, "other", "x", "z", "after"));
    weft_id id;
    OK(weft_del(t, "other", "gone", &id));
    OK(weft_txn_commit(&t));
    /* nothing of the batch: undo the caller's own writes by comparing the
     * dbs the batch would have touched, minus "other" */
    OK(weft_txn_begin(b, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "other", NULL, 0, NULL, NULL), 1);
    cr_assert_eq(weft_scan(t, "c", NULL, 0, NULL, NULL), 5);
    weft_txn_abort(&t);
    weft__buf_free(&before);
    weft__buf_free(&after);
}

Test(store, atomic_batch_apply, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL), *b = store_open(dirs[1], 0, NULL);
    some_writes(a, 20, "t1");
    opvec o = {0};
    ops_missing(a, b, &o);
    cr_assert_eq(o.n, 40);
    uint64_t rng = 42;
    /* b holds the first 10 */
    opvec head = {o.v, 10, 0};
    apply_batches(b, &head, 3, &rng);

    /* Each failure mode at op k of the batch [10..30): dump-identical store. */
    for (int mode = 0; mode < 4; mode++) {
        size_t k = 10 + (size_t)mode * 4;
        weft_op *batch = malloc(20 * sizeof *batch);
        memcpy(batch, o.v + 10, 20 * sizeof *batch);
        uint8_t *bad = NULL;
        int code = 0;
        weft_op *victim = &batch[k - 10];
        if (mode == 0) { /* corrupt payload */
            bad = malloc(victim->payload.len);
            memcpy(bad, victim->payload.ptr, victim->payload.len);
            bad[0] = 0xc1;
            victim->payload.ptr = bad;
            code = WEFT_ECORRUPT;
        } else if (mode == 1) { /* gap: dprev ahead */
            victim->dprev += 1;
            code = WEFT_EGAP;
        } else if (mode == 2) { /* not strictly ascending: an id repeated */
            batch[k - 10] = batch[k - 11];
            code = WEFT_ECORRUPT;
        } else { /* conflicting duplicate of an op b already holds */
            batch[0] = o.v[9];
            bad = malloc(o.v[9].payload.len);
            memcpy(bad, o.v[9].payload.ptr, o.v[9].payload.len);
            bad[o.v[9].payload.len - 1] ^= 1;
            batch[0].payload.ptr = bad;
            code = WEFT_ECONFLICT;
        }
        weft__buf before = {0}, after = {0};
        dump(b, "ops,fields,counters,entities,conflicts,vv,peers", &before);
        weft_txn *t;
        weft_apply_result r = {99, 99, 99, 99, 99};
        OK(weft_txn_begin(b, 0, &t));
        ERR(code, weft_apply(t, batch, 20, &r));
        cr_assert_eq(r.applied, 99, "result written on failure");
        OK(weft_txn_commit(&t)); /* still usable */
        dump(b, "ops,fields,counters,entities,conflicts,vv,peers", &after);
        cr_assert_eq(before.len, after.len, "mode %d", mode);
        cr_assert_eq(memcmp(before.ptr, after.ptr, before.len), 0, "mode %d", mode);
        weft__buf_free(&before);
        weft__buf_free(&after);
        /* and a caller's own writes around a failed batch stay */
        expect_batch_fails(b, batch, 20, code);
        free(bad);
        free(batch);
    }
    /* the good batch then applies */
    opvec rest = {o.v + 10, 30, 0};
    apply_batches(b, &rest, 7, &rng);
    sync_one(b, a, 5, &rng); /* b also holds its own writes from above */
    cr_assert(dump_eq(a, b, "ops,fields,counters,entities,conflicts,vv"));
    opvec_free(&o);
    weft_store_close(&a);
    weft_store_close(&b);
}

Test(store, gap_refusal_and_idempotence, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL), *b = store_open(dirs[1], 0, NULL),
               *c = store_open(dirs[2], 0, NULL);
    some_writes(a, 10, "x");
    opvec o = {0};
    ops_missing(a, b, &o);
    weft_txn *t;
    weft_apply_result r;
    /* missing the first op of the device: dprev ahead of what b holds */
    OK(weft_txn_begin(b, 0, &t));
    ERR(WEFT_EGAP, weft_apply(t, o.v + 1, 3, &r));
    cr_assert_neq(strstr(weft_last_error(), "missing ops of device"), NULL, "%s",
                  weft_last_error());
    OK(weft_apply(t, o.v, 5, &r));
    cr_assert_eq(r.applied, 5);
    OK(weft_txn_commit(&t));

    /* prev naming an op b does not hold: c writes on top of a's op 7 */
    opvec all = {o.v, o.n, 0};
    uint64_t rng = 7;
    apply_batches(c, &all, 4, &rng);
    OK(weft_txn_begin(c, 0, &t));
    OK(weft_set_str(t, "c", "e1", "x", "from c")); /* prev = a's latest head */
    OK(weft_txn_commit(&t));
    opvec fromc = {0};
    ops_missing(c, a, &fromc);
    cr_assert_eq(fromc.n, 1);
    OK(weft_txn_begin(b, 0, &t));
    ERR(WEFT_EGAP, weft_apply(t, fromc.v, 1, &r));
    cr_assert_neq(strstr(weft_last_error(), "not held"), NULL, "%s", weft_last_error());
    weft_txn_abort(&t);

    /* idempotence: the same batch twice, and overlapping batches */
    opvec tail = {o.v + 5, o.n - 5, 0};
    apply_batches(b, &tail, 3, &rng);
    weft__buf d1 = {0}, d2 = {0};
    dump(b, NULL, &d1);
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_apply(t, o.v, o.n, &r));
    cr_assert_eq(r.applied, 0);
    cr_assert_eq(r.duplicates, o.n);
    OK(weft_apply(t, o.v + 3, 6, &r));
    OK(weft_txn_commit(&t));
    dump(b, NULL, &d2);
    cr_assert_eq(d1.len, d2.len);
    cr_assert_eq(memcmp(d1.ptr, d2.ptr, d1.len), 0);
    /* overlapping batches into a fresh store converge to the same dump */
    opvec overl = {0};
    ops_missing(c, b, &overl); /* c's op */
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_apply(t, overl.v, overl.n, &r));
    OK(weft_txn_commit(&t));
    cr_assert(dump_eq(b, c, "ops,fields,counters,entities,conflicts,vv"));
    opvec_free(&o);
    opvec_free(&fromc);
    opvec_free(&overl);
    weft__buf_free(&d1);
    weft__buf_free(&d2);
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
}

/* ---- convergence ---- */

static void random_writes(weft_store *s, uint64_t *rng, int nops)
{
    static const char *ents[] = {"a", "b", "c", "d"};
    static const char *fields[] = {"title", "body", "n", "tags"};
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    for (int i = 0; i < nops; i++) {
        const char *e = ents[rng_next(rng) % 4];
        uint8_t v[32];
        char txt[16];
        snprintf(txt, sizeof txt, "v%u", (unsigned)(rng_next(rng) % 5));
        size_t vl = mp_str(v, sizeof v, txt);
        int rc = 0;
        switch (rng_next(rng) % 10) {
        case 0:
            rc = weft_del(t, "notes", e, NULL);
            break;
        case 1:
        case 2:
            rc = weft_inc(t, "notes", e, "n", (int64_t)(rng_next(rng) % 7) - 3, NULL);
            break;
        case 3:
        case 4:
            rc = weft_add(t, "notes", e, "tags", v, vl, NULL);
            break;
        case 5:
            rc = weft_rem(t, "notes", e, "tags", v, vl, NULL);
            if (rc == WEFT_ENOTFOUND) {
                rc = 0;
            }
            break;
        default:
            rc = weft_set(t, "notes", e, fields[rng_next(rng) % 2], v, vl, NULL);
        }
        cr_assert_eq(rc, 0, "write: %s", weft_last_error());
    }
    OK(weft_txn_commit(&t));
}

static int conflict_count(weft_store *s, int *heads)
{
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int n = weft_conflicts(t, NULL, NULL, NULL);
    weft_txn_abort(&t);
    (void)heads;
    return n;
}

typedef struct cstats {
    int n;
    size_t heads;
} cstats;

static int conflict_cb(const weft_conflict *c, void *user)
{
    cstats *st = user;
    cr_assert_geq(c->nheads, 2);
    for (size_t i = 1; i < c->nheads; i++) {
        cr_assert_gt(weft_id_cmp(c->heads[i - 1].id, c->heads[i].id), 0, "newest first");
    }
    st->n++;
    st->heads += c->nheads;
    return 0;
}

Test(store, convergence_random, .init = setup, .fini = teardown)
{
    for (uint64_t seed = 1; seed <= 6; seed++) {
        for (int i = 0; i < NSTORES; i++) {
            rm_rf(dirs[i]);
        }
        uint64_t rng = seed * 0x9e3779b97f4a7c15ull;
        weft_store *s[NSTORES];
        for (int i = 0; i < NSTORES; i++) {
            s[i] = store_open(dirs[i], 0, NULL);
        }
        for (int round = 0; round < 4; round++) {
            for (int i = 0; i < NSTORES; i++) {
                random_writes(s[i], &rng, 5 + (int)(rng_next(&rng) % 30));
            }
            /* partial, random exchanges */
            for (int k = 0; k < 3; k++) {
                int x = (int)(rng_next(&rng) % NSTORES), y = (int)(rng_next(&rng) % NSTORES);
                if (x != y) {
                    sync_one(s[x], s[y], 1 + rng_next(&rng) % 20, &rng);
                }
            }
        }
        /* until quiescent: all pairs, both directions */
        for (int pass = 0; pass < 2; pass++) {
            for (int x = 0; x < NSTORES; x++) {
                for (int y = 0; y < NSTORES; y++) {
                    if (x != y) {
                        sync_one(s[x], s[y], 1 + rng_next(&rng) % 20, &rng);
                    }
                }
            }
        }
        const char *dbs = "ops,fields,counters,entities,conflicts,vv";
        for (int i = 1; i < NSTORES; i++) {
            cr_assert(dump_eq(s[0], s[i], dbs), "seed %llu: store %d differs",
                      (unsigned long long)seed, i);
        }
        weft_info i0, i1;
        OK(weft_store_info(s[0], &i0));
        OK(weft_store_info(s[1], &i1));
        cr_assert_eq(i0.ops, i1.ops, "seed %llu", (unsigned long long)seed);
        cr_assert_eq(i0.conflicts, i1.conflicts, "seed %llu", (unsigned long long)seed);
        cr_assert_eq((int)i0.conflicts, conflict_count(s[0], NULL));
        for (int i = 0; i < NSTORES; i++) {
            weft_store_close(&s[i]);
        }
    }
}

Test(store, conflicts_and_resolve, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL), *b = store_open(dirs[1], 0, NULL),
               *c = store_open(dirs[2], 0, NULL);
    uint64_t rng = 3;
    weft_txn *t;
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set_str(t, "notes", "n1", "title", "base"));
    OK(weft_txn_commit(&t));
    sync_one(a, b, 5, &rng);
    sync_one(a, c, 5, &rng);
    weft_store *s[3] = {a, b, c};
    const char *vals[3] = {"from a", "from b", "from c"};
    for (int i = 0; i < 3; i++) { /* concurrent edits */
        OK(weft_txn_begin(s[i], 0, &t));
        OK(weft_set_str(t, "notes", "n1", "title", vals[i]));
        OK(weft_txn_commit(&t));
    }
    for (int x = 0; x < 3; x++) {
        for (int y = 0; y < 3; y++) {
            if (x != y) {
                sync_one(s[x], s[y], 2, &rng);
            }
        }
    }
    for (int i = 0; i < 3; i++) {
        cstats st = {0, 0};
        OK(weft_txn_begin(s[i], WEFT_TXN_RDONLY, &t));
        cr_assert_eq(weft_conflicts(t, "notes", conflict_cb, &st), 1);
        cr_assert_eq(weft_conflicts(t, "other", conflict_cb, &st), 0);
        weft_field f;
        OK(weft_get(t, "notes", "n1", "title", &f));
        cr_assert_eq(f.heads, 3);
        weft_txn_abort(&t);
        cr_assert_eq(st.heads, 3);
        weft_info info;
        OK(weft_store_info(s[i], &info));
        cr_assert_eq(info.conflicts, 1);
    }
    uint8_t v[32];
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_resolve(t, "notes", "n1", "title", v, mp_str(v, sizeof v, "merged"), NULL));
    ERR(WEFT_ENOTFOUND, weft_resolve(t, "notes", "n1", "title", v, mp_str(v, 32, "x"), NULL));
    OK(weft_txn_commit(&t));
    for (int x = 0; x < 3; x++) {
        for (int y = 0; y < 3; y++) {
            if (x != y) {
                sync_one(s[x], s[y], 2, &rng);
            }
        }
    }
    for (int i = 0; i < 3; i++) {
        OK(weft_txn_begin(s[i], WEFT_TXN_RDONLY, &t));
        cr_assert_eq(weft_conflicts(t, NULL, conflict_cb, NULL), 0);
        weft_field f;
        OK(weft_get(t, "notes", "n1", "title", &f));
        cr_assert_eq(f.heads, 1);
        cr_assert_eq(memcmp(f.value.ptr, "\xa6merged", 7), 0);
        weft_txn_abort(&t);
        weft_info info;
        OK(weft_store_info(s[i], &info));
        cr_assert_eq(info.conflicts, 0);
    }
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
}

/* ---- delta export ---- */

typedef struct order_check {
    weft_id last;
    int n;
    weft_vv *chain; /* device -> last hlc seen */
} order_check;

static int order_cb(const weft_op *op, void *user)
{
    order_check *o = user;
    if (o->n > 0) {
        cr_assert_gt(weft_id_cmp(op->id, o->last), 0, "not in (hlc, device) order");
    }
    cr_assert_eq(op->dprev, weft_vv_get(o->chain, op->id.device), "dprev of op %d", o->n);
    OK(weft_vv_set(o->chain, op->id.device, op->id.hlc));
    o->last = op->id;
    o->n++;
    return 0;
}

Test(store, ops_since_delta_only, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL), *b = store_open(dirs[1], 0, NULL);
    uint64_t rng = 11;
    /* interleaved devices: a and b write, sync both ways, several rounds */
    for (int round = 0; round < 5; round++) {
        random_writes(a, &rng, 50);
        random_writes(b, &rng, 50);
        sync_one(a, b, 30, &rng);
        sync_one(b, a, 30, &rng);
    }
    weft_txn *t;
    order_check oc = {{0, 0}, 0, NULL};
    OK(weft_vv_new(&oc.chain));
    weft_info info;
    OK(weft_store_info(a, &info));
    cr_assert_gt(info.ops, 400);
    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_ops_since(t, NULL, order_cb, &oc), (int)info.ops);
    weft_txn_abort(&t);
    weft_vv_destroy(&oc.chain);

    /* a big log: 100,000 ops, then a delta of 10 */
    OK(weft_txn_begin(a, 0, &t));
    for (int i = 0; i < 100000; i++) {
        char e[16];
        snprintf(e, sizeof e, "e%d", i);
        OK(weft_set_int(t, "big", e, "n", i));
    }
    OK(weft_txn_commit(&t));
    weft_vv *have;
    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    OK(weft_store_vv(t, &have));
    weft_txn_abort(&t);
    OK(weft_txn_begin(a, 0, &t));
    for (int i = 0; i < 10; i++) {
        OK(weft_set_int(t, "big", "e5", "n", i));
    }
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    oc = (order_check){{0, 0}, 0, NULL};
    OK(weft_vv_new(&oc.chain));
    OK(weft_vv_set(oc.chain, weft_store_device(a), weft_vv_get(have, weft_store_device(a))));
    uint64_t v0 = weft__store_visited(t);
    cr_assert_eq(weft_ops_since(t, have, order_cb, &oc), 10);
    uint64_t visited = weft__store_visited(t) - v0;
    cr_assert_leq(visited, 60, "visited %llu records for a delta of 10",
                  (unsigned long long)visited);
    /* stop early */
    opvec one = {0};
    weft_txn_abort(&t);
    weft_vv_destroy(&oc.chain);
    weft_vv_destroy(&have);
    opvec_free(&one);
    weft_store_close(&a);
    weft_store_close(&b);
}

static int stop_after_3(const weft_op *op, void *user)
{
    (void)op;
    return ++*(int *)user == 3;
}

Test(store, ops_since_stop, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL);
    some_writes(a, 10, "x");
    weft_txn *t;
    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    int n = 0;
    cr_assert_eq(weft_ops_since(t, NULL, stop_after_3, &n), 3);
    weft_txn_abort(&t);
    weft_store_close(&a);
}

Test(store, drift_horizon, .init = setup, .fini = teardown)
{
    uint64_t now_a = 1700000000000ull + 3600 * 1000, now_b = 1700000000000ull;
    weft_store *a = store_open(dirs[0], 0, &now_a), *b = store_open(dirs[1], 0, &now_b);
    weft_txn *t;
    OK(weft_txn_begin(b, 0, &t));
    weft_id bid;
    OK(weft_set_str(t, "c", "e", "local", "b"));
    OK(weft_set(t, "c", "e", "x", "\x01", 1, &bid));
    OK(weft_txn_commit(&t));
    /* a's ops: two within the horizon (sent with a's clock early), then an
     * hour ahead */
    uint64_t real_a = now_a;
    now_a = now_b + 1000;
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set_str(t, "c", "e", "early", "a"));
    OK(weft_txn_commit(&t));
    now_a = real_a;
    some_writes(a, 3, "late");
    opvec o = {0};
    ops_missing(a, b, &o);
    cr_assert_eq(o.n, 7);
    weft_apply_result r;
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_apply(t, o.v, o.n, &r));
    cr_assert_eq(r.applied, 1);
    cr_assert_eq(r.deferred, 6);
    cr_assert_geq(r.skew_ms, 3599 * 1000);
    cr_assert_leq(r.skew_ms, 3601 * 1000);
    OK(weft_txn_commit(&t));
    /* our clock did not jump */
    weft_id id;
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set(t, "c", "e", "x", "\x02", 1, &id));
    OK(weft_txn_commit(&t));
    cr_assert_lt(weft_hlc_ms(id.hlc), now_b + 5000);
    /* later, b's clock has moved on: the rest applies */
    now_b += 3600 * 1000;
    opvec rest = {o.v + 1, 6, 0};
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_apply(t, rest.v, rest.n, &r));
    cr_assert_eq(r.applied, 6);
    cr_assert_eq(r.deferred, 0);
    OK(weft_txn_commit(&t));
    opvec_free(&o);
    weft_store_close(&a);
    weft_store_close(&b);
}

/* A replica restored from an old copy of its own directory takes its own
 * later ops back from a peer (same rules as any device), and its clock then
 * issues stamps above them. */
Test(store, restore_own_ops, .init = setup, .fini = teardown)
{
    weft_store *a = store_open(dirs[0], 0, NULL), *b = store_open(dirs[1], 0, NULL);
    some_writes(a, 3, "early");
    weft_store_close(&a);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dirs[2], dirs[0], dirs[2]);
    cr_assert_eq(system(cmd), 0);
    a = store_open(dirs[0], 0, NULL);
    some_writes(a, 4, "late");
    uint64_t rng = 1;
    sync_one(a, b, 3, &rng);
    weft_store_close(&a);
    weft_store *c = store_open(dirs[2], 0, NULL); /* the old copy: same device */
    opvec o = {0};
    ops_missing(b, c, &o);
    cr_assert_eq(o.n, 8);
    cr_assert_eq(o.v[0].id.device, weft_store_device(c));
    weft_txn *t;
    weft_apply_result r;
    OK(weft_txn_begin(c, 0, &t));
    OK(weft_apply(t, o.v, o.n, &r));
    cr_assert_eq(r.applied, 8);
    weft_id id;
    OK(weft_set_str(t, "c", "e0", "x", "after restore"));
    OK(weft_set(t, "c", "e0", "y", "\x01", 1, &id));
    cr_assert_gt(id.hlc, o.v[o.n - 1].id.hlc);
    OK(weft_txn_commit(&t));
    sync_one(c, b, 3, &rng);
    cr_assert(dump_eq(b, c, "ops,fields,counters,entities,conflicts,vv"));
    opvec_free(&o);
    weft_store_close(&b);
    weft_store_close(&c);
}
