/* test_layout.c - the store's on-disk layout: ops in device | hlc order (each
 * device's chain one run, seen through the per-op dump; the blocks that hold
 * it are test_oplog.c's), the version vector, dprev and counts
 * derived from ops / conflicts (no vv db, no device index, no per-commit
 * meta), the schema version,
 * the one-search field write path with its last-key cache, large register
 * values kept only in the op log (ref records), and the lazy check of the
 * key file's secret half.
 *
 * Invariants: each test uses its own store directories and removes them.
 * Thread-safety: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

/* A msgpack str of @p n chars ('a' + seed ...) in @p buf (cap >= n + 5). */
static size_t long_str(uint8_t *buf, size_t n, unsigned seed)
{
    char s[1024];
    cr_assert_lt(n, sizeof s);
    for (size_t i = 0; i < n; i++) {
        s[i] = (char)('a' + (seed + i) % 26);
    }
    s[n] = '\0';
    return mp_str(buf, n + 5, s);
}

static int vv_eq(const weft_vv *a, const weft_vv *b)
{
    if (weft_vv_count(a) != weft_vv_count(b)) {
        return 0;
    }
    for (size_t i = 0; i < weft_vv_count(a); i++) {
        uint64_t d, h;
        OK(weft_vv_entry(a, i, &d, &h));
        if (weft_vv_get(b, d) != h) {
            return 0;
        }
    }
    return 1;
}

/* The vv as a read txn sees it (derived from ops). */
static weft_vv *vv_read(weft_store *s)
{
    weft_txn *t;
    weft_vv *vv;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    OK(weft_store_vv(t, &vv));
    weft_txn_abort(&t);
    return vv;
}

/* The vv a write txn loads at begin (its cache). */
static weft_vv *vv_write(weft_store *s)
{
    weft_txn *t;
    weft_vv *vv;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_store_vv(t, &vv));
    weft_txn_abort(&t);
    return vv;
}

/* Names of the named databases in @p dir, raw LMDB. */
static int has_db(const char *dir, const char *name)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 16), 0);
    cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mdb_dbi_open(txn, name, 0, &dbi);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    cr_assert(rc == 0 || rc == MDB_NOTFOUND, "%s", mdb_strerror(rc));
    return rc == 0;
}

/* The version vector is the last key of each device's run in ops: after a
 * reopen, a read txn, a write txn's cache and weft_store_info agree with what
 * was written, the "vv" dump keeps its old bytes, and there is neither a vv
 * database, nor a device index, nor per-commit counters in meta. */
Test(store, vv_derived_from_ops, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *a = store_open(store_dirs[0], 0, NULL), *b = store_open(store_dirs[1], 0, NULL);
    weft_txn *t;
    weft_id last_a = {0, 0}, last_b = {0, 0}, id;
    uint8_t v[8];
    for (int round = 0; round < 3; round++) {
        OK(weft_txn_begin(a, 0, &t));
        for (int i = 0; i < 10; i++) {
            char e[8];
            snprintf(e, sizeof e, "e%d", i);
            OK(weft_set(t, "c", e, "f", v, mp_int(v, sizeof v, round * 10 + i), &last_a));
        }
        OK(weft_txn_commit(&t));
        OK(weft_txn_begin(b, 0, &t));
        OK(weft_set(t, "c", "e0", "f", v, mp_int(v, sizeof v, -round), &last_b));
        OK(weft_txn_commit(&t));
    }
    uint64_t rng = 7;
    sync_one(a, b, 4, &rng); /* b: two devices */
    weft_store_close(&b);
    b = store_open(store_dirs[1], 0, NULL);

    weft_vv *r = vv_read(b), *w = vv_write(b);
    cr_assert_eq(weft_vv_count(r), 2);
    cr_assert_eq(weft_vv_get(r, last_a.device), last_a.hlc);
    cr_assert_eq(weft_vv_get(r, last_b.device), last_b.hlc);
    cr_assert(vv_eq(r, w), "write txn's vv differs from the read txn's");

    weft_info info;
    OK(weft_store_info(b, &info));
    cr_assert_eq(info.ops, 33);
    cr_assert_eq(info.last_hlc, last_b.hlc, "last_hlc is this device's vv entry");
    cr_assert_eq(info.device, last_b.device);

    /* The "vv" dump: device 8 BE -> hlc 8 BE, ascending, as the db was. */
    weft__buf d = {0};
    dump(b, "vv", &d);
    cr_assert_eq(d.len, 3 + 2 * 24);
    uint64_t lo = last_a.device < last_b.device ? last_a.device : last_b.device;
    uint64_t lo_hlc = lo == last_a.device ? last_a.hlc : last_b.hlc;
    cr_assert_eq(weft__be32_get(d.ptr + 3), 8);
    cr_assert_eq(weft__be64_get(d.ptr + 7), lo);
    cr_assert_eq(weft__be32_get(d.ptr + 15), 8);
    cr_assert_eq(weft__be64_get(d.ptr + 19), lo_hlc);
    weft__buf_free(&d);

    /* In a write txn the cache moves with each op; the dump follows it. */
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set(t, "c", "e9", "f", v, mp_int(v, sizeof v, 99), &id));
    cr_assert_gt(id.hlc, last_a.hlc, "a local op is above every held hlc");
    weft__buf before = {0};
    OK(weft__store_dump(t, "vv", &before));
    weft_vv *mid;
    OK(weft_store_vv(t, &mid));
    cr_assert_eq(weft_vv_get(mid, id.device), id.hlc);
    weft_vv_destroy(&mid);
    OK(weft_txn_commit(&t));
    weft__buf after = {0};
    dump(b, "vv", &after);
    cr_assert_eq(after.len, before.len + 3);
    cr_assert_eq(memcmp(after.ptr + 3, before.ptr, before.len), 0);
    weft__buf_free(&before);
    weft__buf_free(&after);
    OK(weft_store_info(b, &info));
    cr_assert_eq(info.last_hlc, id.hlc);
    cr_assert_eq(info.ops, 34);

    /* meta holds only what is written once. */
    weft__buf m = {0};
    OK(weft_txn_begin(b, WEFT_TXN_RDONLY, &t));
    OK(weft__store_dump(t, "meta", &m));
    weft_txn_abort(&t);
    size_t nmeta = 0;
    for (size_t o = 0; o < m.len; nmeta++) {
        uint32_t kl = weft__be32_get(m.ptr + o);
        uint32_t vl = weft__be32_get(m.ptr + o + 4 + kl);
        o += 8 + kl + vl;
    }
    cr_assert_eq(nmeta, 4, "meta: schema, device, store_id, public_key");
    weft__buf_free(&m);
    weft_vv_destroy(&r);
    weft_vv_destroy(&w);
    weft_store_close(&a);
    weft_store_close(&b);
    cr_assert_not(has_db(store_dirs[1], "vv"));
    cr_assert_not(has_db(store_dirs[1], "by_device"));
    cr_assert(has_db(store_dirs[1], "ops"));
}

/* Invariant 7 (clock) now rests on the keys of ops: after a restart with the wall
 * clock set back, a local op is above every hlc held, our own and those
 * received from a peer whose clock ran ahead. */
Test(store, hlc_floor_from_ops, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    uint64_t now_a = 1700000000000ull, now_b = now_a + 60000; /* b is a minute ahead */
    weft_store *a = store_open(store_dirs[0], 0, &now_a), *b = store_open(store_dirs[1], 0, &now_b);
    weft_txn *t;
    weft_id ida, idb, id;
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set_str(t, "c", "e", "f", "a"));
    OK(weft_set(t, "c", "e", "g", "\x01", 1, &ida));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set(t, "c", "x", "f", "\x02", 1, &idb));
    OK(weft_txn_commit(&t));
    uint64_t rng = 3;
    sync_one(b, a, 8, &rng);
    weft_store_close(&a);
    now_a -= 3600 * 1000;
    a = store_open(store_dirs[0], 0, &now_a);
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set(t, "c", "e", "f", "\x03", 1, &id));
    OK(weft_txn_commit(&t));
    cr_assert_gt(id.hlc, ida.hlc);
    cr_assert_gt(id.hlc, idb.hlc, "local op not above a received hlc after restart");
    weft_info info;
    OK(weft_store_info(a, &info));
    cr_assert_eq(info.last_hlc, id.hlc);
    weft_store_close(&a);
    weft_store_close(&b);
}

typedef struct order_check {
    weft_id last;
    int n;
    weft_vv *chain; /* device -> last hlc seen */
    const weft_vv *have;
} order_check;

/* weft_ops_since's promises: ascending (hlc, device), each op's dprev the
 * previous op of its device, nothing the other side has. */
static int order_cb(const weft_op *op, void *user)
{
    order_check *o = user;
    if (o->n > 0) {
        cr_assert_gt(weft_id_cmp(op->id, o->last), 0, "op %d not in (hlc, device) order", o->n);
    }
    cr_assert_eq(op->dprev, weft_vv_get(o->chain, op->id.device), "dprev of op %d", o->n);
    if (o->have != NULL) {
        cr_assert_gt(op->id.hlc, weft_vv_get(o->have, op->id.device), "op %d already held", o->n);
    }
    OK(weft_vv_set(o->chain, op->id.device, op->id.hlc));
    o->last = op->id;
    o->n++;
    return 0;
}

/* Stream from @p t what @p have lacks (NULL: everything), checking order and
 * dprev; *out (optional) receives the ops; returns how many. */
static int stream_checked(weft_txn *t, const weft_vv *have, opvec *out)
{
    order_check oc = {{0, 0}, 0, NULL, have};
    OK(weft_vv_new(&oc.chain));
    for (size_t i = 0; have != NULL && i < weft_vv_count(have); i++) {
        uint64_t d, h;
        OK(weft_vv_entry(have, i, &d, &h));
        OK(weft_vv_set(oc.chain, d, h));
    }
    int n = weft_ops_since(t, have, order_cb, &oc);
    cr_assert_eq(n, oc.n);
    if (out != NULL) {
        cr_assert_eq(weft_ops_since(t, have, opvec_collect, out), n);
    }
    weft_vv_destroy(&oc.chain);
    return n;
}

/* Check the per-op dump of `ops` of @p s: 16-byte keys device | hlc, ascending, so each
 * device's ops are one run; every key's op is found by its id through
 * weft__txn_get. Returns the number of ops; the first and last keys' devices go
 * to first_dev and last_dev. */
static size_t check_ops_keys(weft_store *s, uint64_t *first_dev, uint64_t *last_dev)
{
    weft__buf d = {0};
    dump(s, "ops", &d);
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    size_t n = 0;
    uint64_t pd = 0, ph = 0;
    for (size_t o = 4; o < d.len; n++) { /* dump() prefixes "ops\0" */
        uint32_t kl = weft__be32_get(d.ptr + o);
        cr_assert_eq(kl, 16);
        uint64_t dev = weft__be64_get(d.ptr + o + 4), hlc = weft__be64_get(d.ptr + o + 12);
        uint32_t vl = weft__be32_get(d.ptr + o + 4 + kl);
        cr_assert(n == 0 || dev > pd || (dev == pd && hlc > ph), "ops key %zu out of order", n);
        if (n == 0) {
            *first_dev = dev;
        }
        *last_dev = dev;
        uint8_t idb[WEFT__ID_BYTES];
        weft__id_put(idb, (weft_id){hlc, dev});
        weft_bytes pl;
        OK(weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl));
        cr_assert(pl.len == vl && memcmp(pl.ptr, d.ptr + o + 8 + kl, vl) == 0);
        pd = dev, ph = hlc;
        o += 8 + kl + vl;
    }
    weft_txn_abort(&t);
    weft__buf_free(&d);
    return n;
}

/* ops is keyed device | hlc: a store holding ops of the smallest and the
 * greatest possible device ids (1 and 2^64-1, so remote ops land before,
 * between and after the local device's run, and vv_each's last step is the
 * log's last key) interleaved with local writes keeps its version vector,
 * its op count and last_hlc right; weft_ops_since still streams in (hlc,
 * device) order with each device's dprev chain and only what the other side
 * lacks; re-applied ops are duplicates (found by id); a gap is refused; all
 * of it again after a reopen; and a replica synced from it converges. */
Test(store, ops_keyed_by_device, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *a = store_open(store_dirs[0], 0, NULL), *c = store_open(store_dirs[2], 0, NULL);
    weft_txn *t;
    enum { NA = 6 };
    OK(weft_txn_begin(a, 0, &t));
    for (int i = 0; i < NA; i++) { /* first writes: no prev */
        char e[8];
        snprintf(e, sizeof e, "x%d", i);
        OK(weft_set_int(t, "c", e, "f", i));
    }
    OK(weft_txn_commit(&t));
    opvec src = {0};
    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(stream_checked(t, NULL, &src), NA);
    weft_txn_abort(&t);
    const uint64_t lo = 1, hi = UINT64_MAX, dev_a = weft_store_device(a);
    const uint64_t dev_c = weft_store_device(c);
    uint64_t last_local = 0;
    weft_vv *mid = NULL;
    for (int round = 0; round < 2; round++) {
        /* three local writes, then a batch of 3 ops from each of lo, a, hi */
        OK(weft_txn_begin(c, 0, &t));
        for (int i = 0; i < 3; i++) {
            weft_id id;
            OK(weft_set(t, "c", "local", "n", "\x01", 1, &id));
            last_local = id.hlc;
        }
        OK(weft_txn_commit(&t));
        weft_op b[9];
        size_t nb = 0;
        for (int i = 3 * round; i < 3 * round + 3; i++) {
            uint64_t dprev = i > 0 ? src.v[i - 1].id.hlc : 0;
            b[nb++] = (weft_op){{src.v[i].id.hlc, lo}, dprev, src.v[i].payload};
            b[nb++] = (weft_op){{src.v[i].id.hlc, dev_a}, dprev, src.v[i].payload};
            b[nb++] = (weft_op){{src.v[i].id.hlc, hi}, dprev, src.v[i].payload};
        }
        if (dev_a < lo || dev_a > hi) {
            cr_assert_fail("device ids are within [1, 2^64-1]");
        }
        weft_apply_result r;
        OK(weft_txn_begin(c, 0, &t));
        OK(weft_apply(t, b, nb, &r));
        cr_assert_eq(r.applied, 9);
        OK(weft_apply(t, b, nb, &r)); /* again: duplicates, found by id */
        cr_assert_eq(r.applied, 0);
        cr_assert_eq(r.duplicates, 9);
        OK(weft_txn_commit(&t));
        if (round == 0) {
            OK(weft_txn_begin(c, WEFT_TXN_RDONLY, &t));
            OK(weft_store_vv(t, &mid));
            weft_txn_abort(&t);
        }
    }
    OK(weft_txn_begin(c, 0, &t)); /* local writes after the greatest device's run */
    for (int i = 0; i < 3; i++) {
        weft_id id;
        OK(weft_set(t, "c", "local", "n", "\x02", 1, &id));
        last_local = id.hlc;
    }
    /* a gap in lo's chain is refused, and leaves nothing behind */
    weft_op gap = {{src.v[NA - 1].id.hlc + 100, lo}, src.v[NA - 1].id.hlc + 50, src.v[0].payload};
    ERR(WEFT_EGAP, weft_apply(t, &gap, 1, NULL));
    OK(weft_txn_commit(&t));

    for (int pass = 0; pass < 2; pass++) { /* before and after a reopen */
        weft_vv *r = vv_read(c), *w = vv_write(c);
        cr_assert(vv_eq(r, w), "write txn's vv differs from the read txn's");
        cr_assert_eq(weft_vv_count(r), 4);
        cr_assert_eq(weft_vv_get(r, lo), src.v[NA - 1].id.hlc);
        cr_assert_eq(weft_vv_get(r, hi), src.v[NA - 1].id.hlc);
        cr_assert_eq(weft_vv_get(r, dev_a), src.v[NA - 1].id.hlc);
        cr_assert_eq(weft_vv_get(r, dev_c), last_local);
        weft_info info;
        OK(weft_store_info(c, &info));
        cr_assert_eq(info.ops, 3 * NA + 9);
        cr_assert_eq(info.last_hlc, last_local);
        uint64_t first_dev = 0, last_dev = 0;
        cr_assert_eq(check_ops_keys(c, &first_dev, &last_dev), 3 * NA + 9);
        cr_assert_eq(first_dev, lo);
        cr_assert_eq(last_dev, hi);
        OK(weft_txn_begin(c, WEFT_TXN_RDONLY, &t));
        cr_assert_eq(stream_checked(t, NULL, NULL), 3 * NA + 9);
        cr_assert_eq(stream_checked(t, mid, NULL), 3 * 3 + 3 + 3, "what a round-0 replica lacks");
        cr_assert_eq(stream_checked(t, r, NULL), 0);
        weft_txn_abort(&t);
        OK(weft_txn_begin(c, 0, &t)); /* a write txn streams from its cache */
        cr_assert_eq(stream_checked(t, mid, NULL), 15);
        weft_txn_abort(&t);
        weft_vv_destroy(&r);
        weft_vv_destroy(&w);
        weft_store_close(&c);
        c = store_open(store_dirs[2], 0, NULL);
    }
    /* a replica synced from c in small batches converges byte for byte */
    weft_store *b = store_open(store_dirs[1], 0, NULL);
    uint64_t rng = 99;
    sync_one(c, b, 5, &rng);
    cr_assert(dump_eq(c, b, "ops,fields,counters,entities,conflicts,vv"));
    weft_vv_destroy(&mid);
    opvec_free(&src);
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
}

/* Fields written in ascending, descending and random key order, across
 * several txns, with deletes of the last entity (so the cached last key of
 * `fields` is stale) and a raw put past it, read back against a model after
 * every txn; a second store given the same ops in one batch each converges
 * byte for byte. */
Test(store, fields_mixed_order, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    enum { NE = 60, NF = 4 };
    static int64_t model[NE][NF]; /* INT64_MIN: absent */
    for (int e = 0; e < NE; e++) {
        for (int f = 0; f < NF; f++) {
            model[e][f] = INT64_MIN;
        }
    }
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    uint64_t rng = 12345;
    weft_txn *t;
    uint8_t v[16];
    for (int txn = 0; txn < 24; txn++) {
        OK(weft_txn_begin(s, 0, &t));
        int mode = txn % 4, n = 1 + (int)(rng_next(&rng) % 40);
        for (int i = 0; i < n; i++) {
            int e, f = (int)(rng_next(&rng) % NF);
            if (mode == 0) {
                e = (txn * 7 + i) % NE; /* ascending runs */
            } else if (mode == 1) {
                e = NE - 1 - (i % NE); /* descending */
            } else {
                e = (int)(rng_next(&rng) % NE);
            }
            char en[8], fn[8];
            snprintf(en, sizeof en, "e%03d", e);
            snprintf(fn, sizeof fn, "f%d", f);
            if (rng_next(&rng) % 10 == 0) { /* delete the entity */
                OK(weft_del(t, "c", en, NULL));
                for (int k = 0; k < NF; k++) {
                    model[e][k] = INT64_MIN;
                }
            } else {
                int64_t x = (int64_t)(rng_next(&rng) % 1000000);
                OK(weft_set(t, "c", en, fn, v, mp_int(v, sizeof v, x), NULL));
                model[e][f] = x;
            }
            /* read our own write in the same txn */
            weft_field got;
            if (model[e][f] != INT64_MIN) {
                OK(weft_get(t, "c", en, fn, &got));
                cr_assert_eq(got.value.len, mp_int(v, sizeof v, model[e][f]));
                cr_assert_eq(memcmp(got.value.ptr, v, got.value.len), 0);
            } else {
                ERR(WEFT_ENOTFOUND, weft_get(t, "c", en, fn, &got));
            }
        }
        OK(weft_txn_commit(&t));
        OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
        int present = 0;
        for (int e = 0; e < NE; e++) {
            for (int f = 0; f < NF; f++) {
                char en[8], fn[8];
                snprintf(en, sizeof en, "e%03d", e);
                snprintf(fn, sizeof fn, "f%d", f);
                weft_field got;
                if (model[e][f] == INT64_MIN) {
                    ERR(WEFT_ENOTFOUND, weft_get(t, "c", en, fn, &got));
                    continue;
                }
                present++;
                OK(weft_get(t, "c", en, fn, &got));
                size_t n1 = mp_int(v, sizeof v, model[e][f]);
                cr_assert(got.value.len == n1 && memcmp(got.value.ptr, v, n1) == 0,
                          "txn %d: e%03d/f%d", txn, e, f);
            }
        }
        weft_txn_abort(&t);
        cr_assert_gt(present, 0);
    }
    weft_store *c = store_open(store_dirs[1], 0, NULL);
    sync_one(s, c, 1000, &rng);
    cr_assert(dump_eq(s, c, "fields,entities,conflicts,vv"));
    weft_store_close(&c);

    /* A raw put after every key, in a txn whose last key is cached: a local
     * write to that key must find it (its prev names it). */
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set(t, "c", "e999", "f0", "\x01", 1, NULL)); /* caches the last key */
    {
        weft__buf rec = {0};
        weft__fstate st;
        weft__fstate_init(&st);
        weft_id rid = {1, 1};
        weft__op op = {.kind = WEFT__OP_SET, .value = {"\x05", 1}};
        cr_assert_eq(weft__fstate_apply(&st, rid, &op, (weft_id){0, 0}), 1);
        OK(weft__fstate_encode(&st, &rec));
        OK(weft__txn_put(t, "fields", (weft_bytes){"c\0zzz\0f0\0", 9},
                         &(weft_bytes){rec.ptr, rec.len}));
        weft__fstate_free(&st);
        weft__buf_free(&rec);
        /* a local write to that very key finds it: its prev names it */
        weft_id wid;
        OK(weft_set(t, "c", "zzz", "f0", "\x06", 1, &wid));
        uint8_t idb[WEFT__ID_BYTES];
        weft__id_put(idb, wid);
        weft_bytes pl;
        OK(weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl));
        weft_op op2 = {wid, 0, pl};
        weft_op_info info;
        OK(weft_op_describe(t, &op2, &info));
        cr_assert_eq(info.nprev, 1, "the raw record was not seen");
        cr_assert_eq(weft_id_cmp(info.prev[0], rid), 0);
        OK(weft_del(t, "c", "zzz", NULL));
    }
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
}

typedef struct heads2 {
    weft_head h[2];
    int n;
} heads2;

/* Copies the two heads (views valid for the read txn). */
static int conflict_cb(const weft_conflict *c, void *user)
{
    heads2 *h = user;
    cr_assert_eq(c->nheads, 2);
    h->h[0] = c->heads[0];
    h->h[1] = c->heads[1];
    h->n++;
    return 0;
}

/* Register values over WEFT__INLINE_MAX live only in `ops`: the record is a
 * ref record, small, and every read (get, scan, entity read, conflicts, in
 * read and write txns) returns the value; replicas converge byte for byte;
 * a record that breaks the encoding is refused. */
Test(store, long_values_in_log_only, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *a = store_open(store_dirs[0], 0, NULL), *b = store_open(store_dirs[1], 0, NULL);
    uint8_t big[400], big2[400], small[16];
    size_t nbig = long_str(big, 300, 1), nbig2 = long_str(big2, WEFT__INLINE_MAX, 2);
    size_t nsmall = mp_int(small, sizeof small, 5);
    cr_assert_gt(nbig, WEFT__INLINE_MAX);
    cr_assert_gt(nbig2, WEFT__INLINE_MAX, "a str header makes it just over");
    weft_txn *t;
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set(t, "n", "e1", "body", big, nbig, NULL));
    OK(weft_set(t, "n", "e1", "title", small, nsmall, NULL));
    weft_field f;
    OK(weft_get(t, "n", "e1", "body", &f)); /* write txn: a copy */
    cr_assert(f.value.len == nbig && memcmp(f.value.ptr, big, nbig) == 0);
    OK(weft_txn_commit(&t));

    OK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    weft_bytes rec;
    OK(weft__txn_get(t, "fields", (weft_bytes){"n\0e1\0body\0", 10}, &rec));
    cr_assert_eq(((const uint8_t *)rec.ptr)[0], 0xc1, "ref record");
    cr_assert_lt(rec.len, 40, "the value is not copied (%zu bytes)", rec.len);
    OK(weft__txn_get(t, "fields", (weft_bytes){"n\0e1\0title\0", 11}, &rec));
    cr_assert_neq(((const uint8_t *)rec.ptr)[0], 0xc1, "short values stay inline");
    OK(weft_get(t, "n", "e1", "body", &f));
    cr_assert(f.value.len == nbig && memcmp(f.value.ptr, big, nbig) == 0);
    cr_assert_eq(weft_entity_read(t, "n", "e1", NULL, NULL), 2);
    weft_txn_abort(&t);

    /* Concurrent edits: a long and a short head, then each side resolves
     * differently over time; both replicas list the same conflict values
     * and converge to identical records. */
    uint64_t rng = 99;
    sync_one(a, b, 8, &rng);
    OK(weft_txn_begin(a, 0, &t));
    OK(weft_set(t, "n", "e1", "body", small, nsmall, NULL));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set(t, "n", "e1", "body", big2, nbig2, NULL));
    OK(weft_txn_commit(&t));
    sync_one(a, b, 8, &rng);
    sync_one(b, a, 8, &rng);
    cr_assert(dump_eq(a, b, "ops,fields,conflicts,vv"));
    weft_store *s[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        OK(weft_txn_begin(s[i], WEFT_TXN_RDONLY, &t));
        OK(weft__txn_get(t, "fields", (weft_bytes){"n\0e1\0body\0", 10}, &rec));
        cr_assert_eq(((const uint8_t *)rec.ptr)[0], 0xc1, "one long head: a ref record");
        OK(weft_get(t, "n", "e1", "body", &f));
        cr_assert_eq(f.heads, 2);
        /* The conflict's heads, each value whole. */
        heads2 h = {{{{0, 0}, {NULL, 0}}}, 0};
        cr_assert_eq(weft_conflicts(t, "n", conflict_cb, &h), 1);
        cr_assert_eq(h.n, 1);
        int found_big = 0, found_small = 0;
        for (int j = 0; j < 2; j++) {
            found_big += h.h[j].value.len == nbig2 && !memcmp(h.h[j].value.ptr, big2, nbig2);
            found_small += h.h[j].value.len == nsmall && !memcmp(h.h[j].value.ptr, small, nsmall);
        }
        cr_assert(found_big == 1 && found_small == 1);
        weft_txn_abort(&t);
    }
    /* Resolve to a long value, then to a short one: back to a plain record. */
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_resolve(t, "n", "e1", "body", big, nbig, NULL));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(b, 0, &t));
    OK(weft_set(t, "n", "e1", "body", small, nsmall, NULL));
    OK(weft__txn_get(t, "fields", (weft_bytes){"n\0e1\0body\0", 10}, &rec));
    cr_assert_neq(((const uint8_t *)rec.ptr)[0], 0xc1);
    /* A damaged encoding: a plain record holding a long value. */
    weft__buf bad = {0};
    weft__fstate st;
    weft__fstate_init(&st);
    weft__op op = {.kind = WEFT__OP_SET, .value = {big, nbig}};
    cr_assert_eq(weft__fstate_apply(&st, (weft_id){5, 5}, &op, (weft_id){0, 0}), 1);
    OK(weft__fstate_encode(&st, &bad));
    OK(weft__txn_put(t, "fields", (weft_bytes){"n\0e2\0x\0", 7}, &(weft_bytes){bad.ptr, bad.len}));
    ERR(WEFT_ECORRUPT, weft_get(t, "n", "e2", "x", &f));
    /* ... and a ref record whose op is not in the log. */
    weft__buf_reset(&bad);
    OK(weft__store_rec_encode(&st, &bad));
    cr_assert_eq(bad.ptr[0], 0xc1);
    OK(weft__txn_put(t, "fields", (weft_bytes){"n\0e2\0x\0", 7}, &(weft_bytes){bad.ptr, bad.len}));
    ERR(WEFT_ECORRUPT, weft_get(t, "n", "e2", "x", &f));
    cr_assert_eq(weft__store_rec_decode(bad.ptr, bad.len, &st), 0, "the encoding itself is fine");
    bad.ptr[bad.len - 1] = 0; /* bitmap names no head */
    ERR(WEFT_ECORRUPT, weft__store_rec_decode(bad.ptr, bad.len, &st));
    bad.ptr[bad.len - 1] = 3; /* ... or one it lacks */
    ERR(WEFT_ECORRUPT, weft__store_rec_decode(bad.ptr, bad.len, &st));
    bad.ptr[bad.len - 1] = 1;
    OK(weft__store_rec_decode(bad.ptr, bad.len, &st));
    ERR(WEFT_ECORRUPT, weft__store_rec_decode(bad.ptr, bad.len - 1, &st)); /* no bitmap */
    ERR(WEFT_ECORRUPT, weft__store_rec_decode(bad.ptr, 4, &st));
    weft__fstate_free(&st);
    weft__buf_free(&bad);
    weft_txn_abort(&t);
    weft_store_close(&a);
    weft_store_close(&b);
}

/* A key file other users may read (or write) is refused where the secret
 * key is used, with a message saying what to do; the store still opens and
 * reads. Made private again, it is accepted. */
Test(store, exposed_key_file_refused, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    weft_store_close(&s);
    char path[600];
    snprintf(path, sizeof path, "%s/key", store_dirs[0]);
    static const mode_t modes[] = {0640, 0604, 0620, 0666};
    uint8_t sk[WEFT_KEY_BYTES];
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        cr_assert_eq(chmod(path, modes[i]), 0);
        s = store_open(store_dirs[0], 0, NULL);
        weft_info info;
        OK(weft_store_info(s, &info));
        ERR(WEFT_EAUTH, weft_store_secret_key(s, sk));
        cr_assert_not_null(strstr(weft_last_error(), "chmod 600"), "%s", weft_last_error());
        weft_store_close(&s);
    }
    cr_assert_eq(chmod(path, 0600), 0);
    s = store_open(store_dirs[0], 0, NULL);
    OK(weft_store_secret_key(s, sk));
    weft_store_close(&s);
}

/* The key file's secret half is checked where it is used: a store whose key
 * file holds the right public key but a wrong secret key opens and reads
 * (the check no longer costs every open), and weft_store_secret_key
 * refuses it. A swapped public key is still refused at open. */
Test(store, secret_key_checked_lazily, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    uint8_t sk[WEFT_KEY_BYTES];
    OK(weft_store_secret_key(s, sk));
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "e", "f", "x"));
    OK(weft_txn_commit(&t));
    weft_store_close(&s);

    char path[600];
    snprintf(path, sizeof path, "%s/key", store_dirs[0]);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t b = 0;
    cr_assert_eq(pread(fd, &b, 1, 8 + WEFT_KEY_BYTES + 5), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, 8 + WEFT_KEY_BYTES + 5), 1);
    close(fd);

    weft_options o;
    weft_options_init(&o);
    OK(weft_store_open(store_dirs[0], &o, &s));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_field f;
    OK(weft_get(t, "c", "e", "f", &f));
    weft_txn_abort(&t);
    ERR(WEFT_ECORRUPT, weft_store_secret_key(s, sk));
    cr_assert_not_null(strstr(weft_last_error(), "secret key does not match"), "%s",
                       weft_last_error());
    weft_store_close(&s);

    /* Public half from another store: refused at open, as before. */
    weft_store *other = store_open(store_dirs[1], 0, NULL);
    weft_store_close(&other);
    char opath[600];
    snprintf(opath, sizeof opath, "%s/key", store_dirs[1]);
    OK(unlink(path));
    OK(link(opath, path));
    ERR(WEFT_ECORRUPT, weft_store_open(store_dirs[0], &o, &s));
    cr_assert_not_null(strstr(weft_last_error(), "mismatch"), "%s", weft_last_error());
}
