/* test_counter.c - counters at scale. Increments are rows of the `counters`
 * database (field key | id -> delta) and the field record keeps only their
 * sum, count and newest id, so:
 *   - 100,000 increments on one field take seconds, not minutes (each used
 *     to decode and rewrite every earlier one), and the record stays 36
 *     bytes;
 *   - a delete hides exactly the increments at or below the tombstone,
 *     whichever replica wrote them and in whatever order they arrive, and
 *     replicas holding the same ops have byte-identical dumps, `counters`
 *     included;
 *   - rows written in a transaction survive a map growth (journal replay)
 *     and a batch retried in a nested transaction.
 *
 * Invariants: each test uses its own store directories and removes them.
 * Thread-safety: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "helpers.h"

/* Every db but meta and peers (device, keys and local clock differ). */
static const char *const REPLICA_DBS = "ops,fields,counters,entities,conflicts,vv";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The visible int of a counter field; false when absent or hidden. */
static bool get_int(weft_store *s, const char *e, const char *f, int64_t *out)
{
    weft_txn *t;
    weft_field fld;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int rc = weft_get(t, "c", e, f, &fld);
    if (rc == WEFT_ENOTFOUND) {
        weft_txn_abort(&t);
        return false;
    }
    cr_assert_eq(rc, 0, "%s", weft_last_error());
    cr_assert_eq(fld.kind, WEFT_KIND_COUNTER);
    weft__mp_reader r = {fld.value.ptr, (const uint8_t *)fld.value.ptr + fld.value.len};
    OK(weft__mp_read_int(&r, out));
    weft_txn_abort(&t);
    return true;
}

static size_t field_key(uint8_t *k, const char *e, const char *f)
{
    size_t el = strlen(e), fl = strlen(f);
    memcpy(k, "c\0", 2);
    memcpy(k + 2, e, el + 1);
    memcpy(k + 3 + el, f, fl + 1);
    return 4 + el + fl;
}

/* Size of the stored record of field c/e/f (0: none). */
static size_t record_len(weft_store *s, const char *e, const char *f)
{
    uint8_t k[128];
    size_t kl = field_key(k, e, f);
    weft_txn *t;
    weft_bytes v = {NULL, 0};
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int rc = weft__txn_get(t, "fields", (weft_bytes){k, kl}, &v);
    cr_assert(rc == 0 || rc == WEFT_ENOTFOUND, "%s", weft_last_error());
    weft_txn_abort(&t);
    return rc == 0 ? v.len : 0;
}

/* Rows of field c/e/f in `counters`, checking their shape and order; the
 * wrapped sum of their deltas in *sum and ids in ids[] (if not NULL). */
static size_t count_rows(weft_store *s, const char *e, const char *f, uint64_t *sum, weft_id *ids)
{
    uint8_t k[128];
    size_t kl = field_key(k, e, f);
    weft__buf d = {0};
    dump(s, "counters", &d);
    size_t n = 0, at = strlen("counters") + 1;
    uint64_t total = 0;
    weft_id last = {0, 0};
    while (at < d.len) {
        uint32_t klen = weft__be32_get(d.ptr + at);
        const uint8_t *key = d.ptr + at + 4;
        uint32_t vlen = weft__be32_get(key + klen);
        const uint8_t *val = key + klen + 4;
        at += 8 + (size_t)klen + vlen;
        cr_assert_eq(vlen, 8, "a counter row holds an 8-byte delta");
        if (klen != kl + WEFT__ID_BYTES || memcmp(key, k, kl) != 0) {
            continue;
        }
        weft_id id = weft__id_get(key + kl);
        cr_assert(n == 0 || weft_id_cmp(last, id) < 0, "rows ascending by id");
        last = id;
        if (ids != NULL) {
            ids[n] = id;
        }
        total += weft__be64_get(val);
        n++;
    }
    weft__buf_free(&d);
    if (sum != NULL) {
        *sum = total;
    }
    return n;
}

static int64_t wrap(uint64_t u)
{
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

/* ---- 100,000 increments on one field ---- */

Test(store, counter_100k_increments, .init = store_dirs_setup, .fini = store_dirs_teardown,
     .timeout = 600)
{
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    enum { TXNS = 100, PER = 1000 };
    uint64_t want = 0;
    weft_txn *t;
    double t0 = now_s();
    for (int i = 0; i < TXNS; i++) {
        OK(weft_txn_begin(s, 0, &t));
        for (int j = 0; j < PER; j++) {
            int k = i * PER + j;
            int64_t d = k % 997 == 0 ? INT64_MAX : (int64_t)(k % 201) - 100; /* wraps */
            want += (uint64_t)d;
            OK(weft_inc(t, "c", "e", "n", d, NULL));
        }
        OK(weft_txn_commit(&t));
    }
    double dt = now_s() - t0;
    fprintf(stderr, "[----] counter_100k_increments: %d increments on one field in %.2f s\n",
            TXNS * PER, dt);
    int64_t got;
    cr_assert(get_int(s, "e", "n", &got));
    cr_assert_eq(got, wrap(want));
    size_t rl = record_len(s, "e", "n");
    fprintf(stderr, "[----] counter_100k_increments: field record %zu bytes\n", rl);
    cr_assert_eq(rl, 36, "the record is a fixed-size summary, %zu bytes", rl);
    uint64_t rsum;
    cr_assert_eq(count_rows(s, "e", "n", &rsum, NULL), (size_t)TXNS * PER);
    cr_assert_eq(rsum, want);

    /* One delete drops every row in one walk; an increment revives it. */
    t0 = now_s();
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_del(t, "c", "e", NULL));
    OK(weft_txn_commit(&t));
    fprintf(stderr, "[----] counter_100k_increments: delete of %d rows in %.3f s\n", TXNS * PER,
            now_s() - t0);
    cr_assert(!get_int(s, "e", "n", &got));
    cr_assert_eq(record_len(s, "e", "n"), 0);
    cr_assert_eq(count_rows(s, "e", "n", NULL, NULL), 0);
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_inc(t, "c", "e", "n", -7, NULL));
    OK(weft_txn_commit(&t));
    cr_assert(get_int(s, "e", "n", &got));
    cr_assert_eq(got, -7);
    cr_assert_eq(count_rows(s, "e", "n", NULL, NULL), 1);
    weft_store_close(&s);
}

/* ---- deletes and convergence ---- */

typedef struct inc_rec {
    weft_id id;
    int64_t delta;
    int field; /* 0: e/n, 1: e/n2, 2: e2/n (another entity) */
} inc_rec;

static const char *const ENT[3] = {"e", "e", "e2"};
static const char *const FLD[3] = {"n", "n2", "n"};

static int64_t delta_of(uint64_t *rng)
{
    uint64_t r = rng_next(rng);
    return r % 53 == 0 ? INT64_MIN : (int64_t)(r % 2001) - 1000;
}

/* @p n increments on @p s, one fake millisecond apart, recorded in @p out. */
static void incs(weft_store *s, uint64_t *now, int n, uint64_t *rng, inc_rec *out, size_t *nout)
{
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    for (int i = 0; i < n; i++) {
        inc_rec *r = &out[(*nout)++];
        r->field = (int)(rng_next(rng) % 8 == 0 ? 1 + rng_next(rng) % 2 : 0);
        r->delta = delta_of(rng);
        OK(weft_inc(t, "c", ENT[r->field], FLD[r->field], r->delta, &r->id));
        *now += 1;
    }
    OK(weft_txn_commit(&t));
}

/* Value and rows of each field against the increments above the tombstone
 * of its entity (@p tomb for "e", none for "e2"). */
static void check_counters(weft_store *s, const inc_rec *r, size_t n, weft_id tomb)
{
    for (int f = 0; f < 3; f++) {
        weft_id tf = f == 2 ? (weft_id){0, 0} : tomb;
        uint64_t sum = 0;
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++) {
            if (r[i].field == f && weft_id_cmp(r[i].id, tf) > 0) {
                sum += (uint64_t)r[i].delta;
                cnt++;
            }
        }
        uint64_t rsum;
        cr_assert_eq(count_rows(s, ENT[f], FLD[f], &rsum, NULL), cnt, "field %d rows", f);
        cr_assert_eq(rsum, sum, "field %d row sum", f);
        int64_t got;
        bool vis = get_int(s, ENT[f], FLD[f], &got);
        cr_assert_eq(vis, cnt > 0, "field %d visible", f);
        if (vis) {
            cr_assert_eq(got, wrap(sum), "field %d value", f);
            cr_assert_eq(record_len(s, ENT[f], FLD[f]), 36);
        }
    }
}

Test(store, counter_delete_hides_earlier, .init = store_dirs_setup, .fini = store_dirs_teardown,
     .timeout = 120)
{
    uint64_t t0 = 1700000000000ull, now_a = t0, now_b = t0;
    weft_store *a = store_open(store_dirs[0], 0, &now_a), *b = store_open(store_dirs[1], 0, &now_b);
    enum { N = 3000 };
    static inc_rec r[3 * N];
    size_t n = 0;
    uint64_t rng = 77;
    /* a: increments, a delete in the middle, increments; b meanwhile (not
     * seeing a): increments on both sides of a's delete in id order. */
    incs(a, &now_a, N / 2, &rng, r, &n);
    weft_id tomb;
    weft_txn *t;
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_del(t, "c", "e", &tomb));
    OK(weft_txn_commit(&t));
    now_a++;
    incs(a, &now_a, N / 2, &rng, r, &n);
    for (int k = 0; k < 6; k++) { /* several txns, so rows span many pages */
        incs(b, &now_b, N / 6, &rng, r, &n);
    }
    size_t below = 0, above = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].id.device == weft_store_device(b) && r[i].field == 0) {
            below += weft_id_cmp(r[i].id, tomb) < 0;
            above += weft_id_cmp(r[i].id, tomb) > 0;
        }
    }
    cr_assert_gt(below, 100, "b has increments before the delete");
    cr_assert_gt(above, 100, "and after it");

    /* c takes a's ops then b's, d b's then a's, in random batches; a and b
     * exchange both ways. */
    weft_store *c = store_open(store_dirs[2], 0, NULL), *d = store_open(store_dirs[3], 0, NULL);
    sync_one(a, c, 97, &rng);
    sync_one(b, c, 131, &rng);
    sync_one(b, d, 61, &rng);
    sync_one(a, d, 173, &rng);
    sync_one(a, b, 500, &rng);
    sync_one(b, a, 1, &rng);   /* one op per batch */
    sync_one(b, a, 250, &rng); /* nothing left */
    weft_store *all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        check_counters(all[i], r, n, tomb);
    }
    for (int i = 1; i < 4; i++) {
        cr_assert(dump_eq(all[0], all[i], REPLICA_DBS), "store %d differs from a", i);
    }

    /* b deletes again, above everything: every row of "e" goes; "e2" stays. */
    now_b = t0 + 10 * N;
    weft_id tomb2;
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_del(t, "c", "e", &tomb2));
    OK(weft_txn_commit(&t));
    check_counters(b, r, n, tomb2);
    cr_assert_eq(count_rows(b, "e", "n", NULL, NULL), 0);
    cr_assert_eq(record_len(b, "e", "n"), 0, "no rows, no record");
    /* and the rest see it, in one batch or one op at a time */
    sync_one(b, a, 1, &rng);
    sync_one(b, c, 1000, &rng);
    sync_one(b, d, 2, &rng);
    for (int i = 0; i < 4; i++) {
        check_counters(all[i], r, n, tomb2);
    }
    for (int i = 1; i < 4; i++) {
        cr_assert(dump_eq(all[0], all[i], REPLICA_DBS), "store %d differs after the 2nd delete", i);
    }
    for (int i = 0; i < 4; i++) {
        weft_store_close(&all[i]);
    }
}

/* Rows written before a map growth are replayed from the journal; a remote
 * batch that outgrows the map is retried in a fresh nested txn. */
Test(store, counter_rows_survive_map_growth, .init = store_dirs_setup, .fini = store_dirs_teardown,
     .timeout = 120)
{
    weft_store *a = store_open(store_dirs[0], 64 * 1024, NULL),
               *b = store_open(store_dirs[1], 64 * 1024, NULL),
               *c = store_open(store_dirs[2], 0, NULL);
    enum { N = 20000 };
    static inc_rec r[N + 10];
    size_t n = 0;
    uint64_t rng = 5;
    weft_txn *t;
    weft_id tomb = {0, 0};
    OK(weft_txn_begin(a, 0, &t)); /* one txn far larger than the map */
    for (int i = 0; i < N; i++) {
        inc_rec *x = &r[n++];
        x->field = (int)(rng_next(&rng) % 3);
        x->delta = delta_of(&rng);
        OK(weft_inc(t, "c", ENT[x->field], FLD[x->field], x->delta, &x->id));
        if (i == N / 2) {
            OK(weft_del(t, "c", "e", &tomb));
        }
    }
    OK(weft_txn_commit(&t));
    weft_info info;
    OK(weft_store_info(a, &info));
    cr_assert_gt(info.map_size, 64 * 1024, "the map grew");
    check_counters(a, r, n, tomb);

    /* b: the whole log in one weft_apply (nested txn, MAP_FULL, retry). */
    opvec o = {0};
    ops_missing(a, b, &o);
    weft_apply_result res;
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_apply(t, o.v, o.n, &res));
    cr_assert_eq(res.applied, N + 1);
    OK(weft_txn_commit(&t));
    opvec_free(&o);
    /* c: in small batches. */
    sync_one(a, c, 300, &rng);
    check_counters(b, r, n, tomb);
    cr_assert(dump_eq(a, b, REPLICA_DBS));
    cr_assert(dump_eq(a, c, REPLICA_DBS));
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
}

/* A store made before `counters` existed (simulated: the db dropped) is
 * refused at open, not read as if it had no increments. */
Test(store, counter_db_required, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_inc(t, "c", "e", "n", 1, NULL));
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
    cr_assert_eq(mdb_env_open(env, store_dirs[0], 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "counters", 0, &dbi), 0);
    cr_assert_eq(mdb_drop(txn, dbi, 1), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    weft_options o;
    weft_options_init(&o);
    ERR(WEFT_ECORRUPT, weft_store_open(store_dirs[0], &o, &s));
    cr_assert_not_null(strstr(weft_last_error(), "counters"), "%s", weft_last_error());
    o.flags = WEFT_OPEN_CREATE;
    ERR(WEFT_ECORRUPT, weft_store_open(store_dirs[0], &o, &s));
}
