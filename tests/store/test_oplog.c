/* test_oplog.c - the op log's blocks (store/oplog.c), read back with raw
 * LMDB and a parser written here from the format in oplog.c's header, so
 * that the tests pin the bytes and not the code's own reading of them:
 * blocks chain each device's ops in order (ordinals, hlc steps), stay
 * within WEFT__BLOCK_CAP unless they hold one bigger op, hold exactly what
 * weft_ops_since streams and weft__txn_get finds; replicas given the same
 * ops in any batching hold byte-identical logs; damaged blocks are refused
 * with WEFT_ECORRUPT by every reader (the per-op dump too).
 *
 * Invariants: each test uses its own store directories and removes them.
 * Thread-safety: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

/* ---- raw access ---- */

typedef struct raw_env {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi ops;
} raw_env;

static void raw_open(raw_env *r, const char *dir, bool write)
{
    cr_assert_eq(mdb_env_create(&r->env), 0);
    mdb_env_set_maxdbs(r->env, 16);
    cr_assert_eq(mdb_env_open(r->env, dir, write ? 0 : MDB_RDONLY, 0600), 0);
    cr_assert_eq(mdb_txn_begin(r->env, NULL, write ? 0 : MDB_RDONLY, &r->txn), 0);
    cr_assert_eq(mdb_dbi_open(r->txn, "ops", 0, &r->ops), 0);
}

static void raw_close(raw_env *r, bool commit)
{
    if (commit) {
        cr_assert_eq(mdb_txn_commit(r->txn), 0);
    } else {
        mdb_txn_abort(r->txn);
    }
    mdb_env_close(r->env);
}

/* The raw `ops` db as (u32 klen, key, u32 vlen, value) records. */
static void raw_dump(const char *dir, weft__buf *out)
{
    raw_env r;
    raw_open(&r, dir, false);
    MDB_cursor *c;
    cr_assert_eq(mdb_cursor_open(r.txn, r.ops, &c), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        uint8_t l[4];
        weft__be32_put(l, (uint32_t)k.mv_size);
        OK(weft__buf_put(out, l, 4));
        OK(weft__buf_put(out, k.mv_data, k.mv_size));
        weft__be32_put(l, (uint32_t)v.mv_size);
        OK(weft__buf_put(out, l, 4));
        OK(weft__buf_put(out, v.mv_data, v.mv_size));
    }
    mdb_cursor_close(c);
    raw_close(&r, false);
}

/* The raw `ops` databases of the stores in @p a and @p b (closed) hold the
 * same bytes. */
static void raw_eq(const char *a, const char *b)
{
    weft__buf da = {NULL, 0, 0}, db = {NULL, 0, 0};
    raw_dump(a, &da);
    raw_dump(b, &db);
    cr_assert_eq(da.len, db.len, "%s and %s: %zu and %zu bytes of ops", a, b, da.len, db.len);
    cr_assert_eq(memcmp(da.ptr, db.ptr, da.len), 0, "%s and %s: ops differ", a, b);
    weft__buf_free(&da);
    weft__buf_free(&db);
}

static uint64_t varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {
        cr_assert_lt(*p, end, "varint runs off the block");
        cr_assert_lt(shift, 64);
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            return v;
        }
    }
}

/* One op as the raw parser sees it. */
typedef struct rawop {
    uint64_t device, hlc;
    const uint8_t *pl;
    size_t len;
} rawop;

typedef struct layout {
    rawop *ops;
    size_t nops, nblocks, nbig;
} layout;

/* Parse every block of the raw `ops` db (checking the format's rules) into
 * @p lay; the env stays open in @p r for the views. */
static void parse_all(raw_env *r, layout *lay)
{
    memset(lay, 0, sizeof *lay);
    MDB_cursor *c;
    cr_assert_eq(mdb_cursor_open(r->txn, r->ops, &c), 0);
    MDB_stat st;
    cr_assert_eq(mdb_stat(r->txn, r->ops, &st), 0);
    size_t cap = 64;
    lay->ops = malloc(cap * sizeof *lay->ops);
    uint64_t dev = 0, last = 0, count = 0; /* the current device's run so far */
    MDB_val k, v;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cr_assert_eq(k.mv_size, 16, "ops key of %zu bytes", k.mv_size);
        uint64_t d = weft__be64_get(k.mv_data), first = weft__be64_get((uint8_t *)k.mv_data + 8);
        cr_assert_neq(first, 0);
        if (d != dev) {
            cr_assert_gt(d, dev, "devices out of order");
            dev = d, last = 0, count = 0;
        }
        const uint8_t *p = v.mv_data, *end = p + v.mv_size;
        uint64_t ord = varint(&p, end);
        cr_assert_eq(ord, count, "device %016llx: block ordinal %llu after %llu ops",
                     (unsigned long long)d, (unsigned long long)ord, (unsigned long long)count);
        cr_assert_gt(first, last, "a block starts at or before the previous block's end");
        uint64_t hlc = first;
        size_t n = 0;
        while (p < end) {
            if (n > 0) {
                uint64_t step = varint(&p, end);
                cr_assert_gt(step, 0, "hlc step of 0");
                hlc += step;
            }
            uint64_t len = varint(&p, end);
            cr_assert_leq(len, (uint64_t)(end - p), "op runs past its block");
            if (lay->nops == cap) {
                cap *= 2;
                lay->ops = realloc(lay->ops, cap * sizeof *lay->ops);
            }
            lay->ops[lay->nops++] = (rawop){d, hlc, p, (size_t)len};
            p += len;
            n++;
        }
        cr_assert_gt(n, 0, "an empty block");
        if (n > 1) {
            cr_assert_leq(v.mv_size, WEFT__BLOCK_CAP, "a block of %zu ops is %zu bytes", n,
                          v.mv_size);
        } else if (v.mv_size > WEFT__BLOCK_CAP) {
            lay->nbig++;
        }
        last = hlc;
        count += n;
        lay->nblocks++;
    }
    mdb_cursor_close(c);
    cr_assert_eq(lay->nblocks, st.ms_entries);
}

static int by_hlc_device(const void *x, const void *y)
{
    const rawop *a = x, *b = y;
    if (a->hlc != b->hlc) {
        return a->hlc < b->hlc ? -1 : 1;
    }
    return a->device < b->device ? -1 : a->device > b->device;
}

/* ---- building stores ---- */

/* A str value of @p n bytes. */
static size_t str_of(uint8_t *buf, size_t n, char c)
{
    char s[2048];
    cr_assert_lt(n, sizeof s);
    memset(s, c, n);
    s[n] = '\0';
    return mp_str(buf, n + 5, s);
}

/* Local writes of every size class across several txns: small ops packed
 * many to a block, mid-sized ones a few, ops over the cap alone. */
static void write_mix(weft_store *s, int rounds)
{
    uint8_t big[1100];
    for (int round = 0; round < rounds; round++) {
        weft_txn *t;
        OK(weft_txn_begin(s, 0, &t));
        for (int i = 0; i < 60; i++) {
            char e[16];
            snprintf(e, sizeof e, "e%d", i % 7);
            OK(weft_set_int(t, "c", e, "n", round * 100 + i));
        }
        for (int i = 0; i < 6; i++) {
            size_t n = str_of(big, i % 2 ? 120 : 700 + 40 * (size_t)i, (char)('a' + i));
            OK(weft_set(t, "c", "big", i % 2 ? "mid" : "huge", big, n, NULL));
        }
        OK(weft_txn_commit(&t));
        for (int i = 0; i < 5; i++) { /* single-op txns grow the last block */
            OK(weft_txn_begin(s, 0, &t));
            OK(weft_inc(t, "c", "ctr", "n", 1, NULL));
            OK(weft_txn_commit(&t));
        }
    }
}

/* Copy @p from's ops to @p to as if from two other devices too, so that the
 * log holds runs below and above the local one. */
static void add_remote_runs(weft_store *from, weft_store *to)
{
    opvec src = {0};
    weft_txn *t;
    OK(weft_txn_begin(from, WEFT_TXN_RDONLY, &t));
    cr_assert_geq(weft_ops_since(t, NULL, opvec_collect, &src), 0);
    weft_txn_abort(&t);
    weft_op *b = calloc(2 * src.n, sizeof *b);
    size_t nb = 0;
    for (size_t i = 0; i < src.n; i++) {
        /* payloads name no prev of these devices only if they have none */
        weft__op d;
        OK(weft__op_decode(src.v[i].payload.ptr, src.v[i].payload.len, &d));
        if (d.nprev > 0) {
            continue;
        }
        uint64_t dprev = nb ? b[nb - 1].id.hlc : 0;
        b[nb++] = (weft_op){{src.v[i].id.hlc, 1}, dprev, src.v[i].payload};
    }
    size_t nlo = nb;
    for (size_t i = 0; i < nlo; i++) {
        b[nb] = b[i];
        b[nb++].id.device = UINT64_MAX;
    }
    /* ascending (hlc, device): interleave the two runs */
    weft_op *m = calloc(nb, sizeof *m);
    for (size_t i = 0; i < nlo; i++) {
        m[2 * i] = b[i];
        m[2 * i + 1] = b[nlo + i];
    }
    weft_apply_result r;
    OK(weft_txn_begin(to, 0, &t));
    OK(weft_apply(t, m, nb, &r));
    cr_assert_eq(r.applied, nb);
    OK(weft_txn_commit(&t));
    free(m);
    free(b);
    opvec_free(&src);
}

/* The blocks hold the log exactly: every op weft_ops_since streams, in the
 * same order once sorted by (hlc, device), with the same payloads; ordinals
 * count each device's ops; weft__txn_get finds every op, including those
 * inside blocks, and nothing between them; the op count is info.ops; small
 * ops share blocks and ops over the cap sit alone. */
Test(oplog, blocks_hold_the_log, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *a = store_open(store_dirs[0], 0, NULL), *s = store_open(store_dirs[1], 0, NULL);
    write_mix(a, 4);
    write_mix(s, 2);
    add_remote_runs(a, s);
    write_mix(s, 1); /* the local run keeps growing after remote ones */
    opvec src = {0};
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int n = weft_ops_since(t, NULL, opvec_collect, &src);
    cr_assert_gt(n, 0);
    weft_txn_abort(&t);
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, (uint64_t)n);
    weft_store_close(&s);

    raw_env r;
    raw_open(&r, store_dirs[1], false);
    layout lay;
    parse_all(&r, &lay);
    cr_assert_eq(lay.nops, (size_t)n);
    cr_assert_lt(lay.nblocks * 4, lay.nops, "%zu blocks for %zu ops: small ops are not packed",
                 lay.nblocks, lay.nops);
    cr_assert_geq(lay.nbig, 3 * 3, "ops over the cap sit alone");
    qsort(lay.ops, lay.nops, sizeof *lay.ops, by_hlc_device);
    for (size_t i = 0; i < lay.nops; i++) {
        cr_assert_eq(lay.ops[i].device, src.v[i].id.device, "op %zu", i);
        cr_assert_eq(lay.ops[i].hlc, src.v[i].id.hlc, "op %zu", i);
        cr_assert_eq(lay.ops[i].len, src.v[i].payload.len, "op %zu", i);
        cr_assert_eq(memcmp(lay.ops[i].pl, src.v[i].payload.ptr, lay.ops[i].len), 0, "op %zu", i);
    }
    free(lay.ops);
    raw_close(&r, false);

    s = store_open(store_dirs[1], 0, NULL);
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    for (size_t i = 0; i < src.n; i++) {
        uint8_t idb[WEFT__ID_BYTES];
        weft__id_put(idb, src.v[i].id);
        weft_bytes pl;
        OK(weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl));
        cr_assert_eq(pl.len, src.v[i].payload.len);
        cr_assert_eq(memcmp(pl.ptr, src.v[i].payload.ptr, pl.len), 0);
        /* between two ops of a device, and past its newest: nothing */
        weft_id gap = {src.v[i].id.hlc + 1, src.v[i].id.device};
        bool held = false;
        for (size_t j = 0; j < src.n && !held; j++) {
            held = weft_id_cmp(src.v[j].id, gap) == 0;
        }
        if (!held) {
            weft__id_put(idb, gap);
            ERR(WEFT_ENOTFOUND, weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl));
        }
    }
    weft_id nobody = {src.v[0].id.hlc, 12345};
    uint8_t idb[WEFT__ID_BYTES];
    weft__id_put(idb, nobody);
    weft_bytes pl;
    ERR(WEFT_ENOTFOUND, weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl));
    /* every suffix of every device's run streams with its dprev chain */
    for (size_t i = 0; i < src.n; i += 7) {
        weft_vv *have = NULL;
        OK(weft_vv_new(&have));
        OK(weft_vv_set(have, src.v[i].id.device, src.v[i].id.hlc));
        opvec part = {0};
        int m = weft_ops_since(t, have, opvec_collect, &part);
        cr_assert_geq(m, 0);
        size_t want = 0;
        for (size_t j = 0; j < src.n; j++) {
            bool lacks =
                src.v[j].id.device != src.v[i].id.device || src.v[j].id.hlc > src.v[i].id.hlc;
            if (lacks) {
                cr_assert_lt(want, part.n);
                cr_assert(weft_id_cmp(part.v[want].id, src.v[j].id) == 0, "op %zu", j);
                cr_assert_eq(part.v[want].dprev, src.v[j].dprev, "dprev of op %zu", j);
                want++;
            }
        }
        cr_assert_eq(part.n, want);
        opvec_free(&part);
        weft_vv_destroy(&have);
    }
    weft_txn_abort(&t);
    opvec_free(&src);
    weft_store_close(&s);
    weft_store_close(&a);
}

/* Which ops share a block depends only on each device's chain: replicas
 * given the same ops one by one, in random batches or all at once hold
 * byte-identical `ops` databases. */
Test(oplog, same_ops_same_bytes, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *a = store_open(store_dirs[0], 0, NULL);
    write_mix(a, 3);
    weft_store *b = store_open(store_dirs[1], 0, NULL), *c = store_open(store_dirs[2], 0, NULL);
    uint64_t rng = 7;
    sync_one(a, b, 1, &rng);
    sync_one(a, c, 1000000, &rng);
    weft_store_close(&b);
    weft_store_close(&c);
    raw_eq(store_dirs[1], store_dirs[2]);
    /* and the writer's own log, built by local writes, is the same too */
    weft_store_close(&a);
    raw_eq(store_dirs[0], store_dirs[1]);
}

/* A block damaged on disk: every reader refuses it with WEFT_ECORRUPT (a
 * write txn's begin when it is a device's last block, weft_ops_since,
 * weft__txn_get, weft_store_info and the per-op dump), and none reads
 * outside it (the ASan build checks). */
Test(oplog, damaged_blocks_are_refused, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    static const struct {
        const char *what;
        uint64_t hlc; /* the block's key */
        uint8_t v[16];
        size_t len;
        bool first_ok; /* the damage lies after the block's first op */
    } bad[] = {
        {"empty", 5, {0}, 0, false},
        {"ordinal runs off", 5, {0x80}, 1, false},
        {"ordinal over 64 bits",
         5,
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
         10,
         false},
        {"no first op", 5, {0x00}, 1, false},
        {"op past the end", 5, {0x00, 0x05, 0xc0}, 3, false},
        {"hlc step 0", 5, {0x00, 0x01, 0xc0, 0x00, 0x01, 0xc0}, 6, true},
        {"step without op", 5, {0x00, 0x01, 0xc0, 0x01}, 4, true},
        {"step wraps", UINT64_MAX - 1, {0x00, 0x01, 0xc0, 0x05, 0x01, 0xc0}, 6, true},
    };
    const uint64_t dev = 77;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/s%zu", store_dirs[0], i);
        weft_store *s = store_open(dir, 0, NULL);
        write_mix(s, 1);
        weft_store_close(&s);
        raw_env r;
        raw_open(&r, dir, true);
        uint8_t kb[16];
        weft__be64_put(kb, dev);
        weft__be64_put(kb + 8, bad[i].hlc);
        MDB_val k = {sizeof kb, kb}, v = {bad[i].len, (void *)bad[i].v};
        cr_assert_eq(mdb_put(r.txn, r.ops, &k, &v, 0), 0);
        raw_close(&r, true);

        s = store_open(dir, 0, NULL);
        weft_txn *t;
        ERR(WEFT_ECORRUPT, weft_txn_begin(s, 0, &t));
        cr_assert_neq(strstr(weft_last_error(), "damaged"), NULL, "%s: %s", bad[i].what,
                      weft_last_error());
        OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
        opvec o = {0};
        ERR(WEFT_ECORRUPT, weft_ops_since(t, NULL, opvec_collect, &o));
        opvec_free(&o);
        weft__buf d = {NULL, 0, 0};
        ERR(WEFT_ECORRUPT, weft__store_dump(t, "ops", &d));
        weft__buf_free(&d);
        uint8_t idb[WEFT__ID_BYTES];
        weft__id_put(idb, (weft_id){bad[i].hlc + 1, dev});
        weft_bytes pl;
        int rc = weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl);
        cr_assert(rc == WEFT_ECORRUPT || rc == WEFT_ENOTFOUND, "%s: %s", bad[i].what,
                  weft_err_name(rc));
        weft__id_put(idb, (weft_id){bad[i].hlc, dev});
        rc = weft__txn_get(t, "ops", (weft_bytes){idb, sizeof idb}, &pl);
        cr_assert_eq(rc, bad[i].first_ok ? 0 : WEFT_ECORRUPT, "%s: %s", bad[i].what,
                     weft_err_name(rc));
        weft_txn_abort(&t);
        weft_info info;
        ERR(WEFT_ECORRUPT, weft_store_info(s, &info));
        weft_store_close(&s);
    }

    /* a damaged block that is not its device's last: writes go on (they
     * read only the last block), streaming over it is refused */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/mid", store_dirs[0]);
    weft_store *s = store_open(dir, 0, NULL);
    write_mix(s, 1);
    weft_store_close(&s);
    raw_env r;
    raw_open(&r, dir, true);
    uint8_t kb[16], ok[] = {0x01, 0x01, 0xc0};
    weft__be64_put(kb, dev);
    weft__be64_put(kb + 8, 5);
    MDB_val k = {sizeof kb, kb}, v = {3, (void *)"\x00\x05\xc0"};
    cr_assert_eq(mdb_put(r.txn, r.ops, &k, &v, 0), 0);
    weft__be64_put(kb + 8, 9);
    v.mv_size = sizeof ok, v.mv_data = ok;
    cr_assert_eq(mdb_put(r.txn, r.ops, &k, &v, 0), 0);
    raw_close(&r, true);
    s = store_open(dir, 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_int(t, "c", "e", "n", 1));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    opvec o = {0};
    ERR(WEFT_ECORRUPT, weft_ops_since(t, NULL, opvec_collect, &o));
    opvec_free(&o);
    weft_txn_abort(&t);
    weft_store_close(&s);
}

/* One write txn mixing local writes (which keep an ops cursor across
 * calls), remote batches (a nested txn each, one of them refused), and a
 * map that starts at 64 KiB so that it grows and the txn replays midway:
 * the log still holds exactly the ops applied, in valid blocks, and a
 * replica given the same ops holds the same bytes. */
Test(oplog, kept_cursor_across_batches_and_growth, .init = store_dirs_setup,
     .fini = store_dirs_teardown)
{
    weft_store *src = store_open(store_dirs[0], 0, NULL);
    write_mix(src, 8);
    opvec rem = {0};
    weft_txn *t;
    OK(weft_txn_begin(src, WEFT_TXN_RDONLY, &t));
    cr_assert_geq(weft_ops_since(t, NULL, opvec_collect, &rem), 0);
    weft_txn_abort(&t);
    weft_store *s = store_open(store_dirs[1], 64 * 1024, NULL);
    uint8_t big[800];
    size_t nb = str_of(big, 700, 'q');
    OK(weft_txn_begin(s, 0, &t));
    size_t at = 0, nlocal = 0;
    for (int round = 0; at < rem.n; round++) {
        for (int i = 0; i < 20; i++) {
            char e[16];
            snprintf(e, sizeof e, "l%d", i % 5);
            OK(weft_set_int(t, "loc", e, "n", round * 20 + i));
        }
        OK(weft_set(t, "loc", "big", "v", big, nb, NULL));
        nlocal += 21;
        size_t k = rem.n - at < 37 ? rem.n - at : 37;
        weft_apply_result r;
        OK(weft_apply(t, rem.v + at, k, &r));
        cr_assert_eq(r.applied, k);
        at += k;
        if (round % 3 == 1 && at < rem.n) { /* a batch with a gap: refused whole */
            weft_op gap = rem.v[at];
            gap.id.hlc += 1;
            gap.dprev += 1;
            ERR(WEFT_EGAP, weft_apply(t, &gap, 1, NULL));
        }
    }
    OK(weft_set_int(t, "loc", "last", "n", 1));
    OK(weft_txn_commit(&t));
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_gt(info.map_size, 64 * 1024, "the map grew");
    opvec all = {0};
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    int n = weft_ops_since(t, NULL, opvec_collect, &all);
    weft_txn_abort(&t);
    cr_assert_eq((uint64_t)n, info.ops);
    cr_assert_eq(info.ops, rem.n + nlocal + 1, "ops held: %llu", (unsigned long long)info.ops);
    weft_store_close(&s);
    raw_env re;
    raw_open(&re, store_dirs[1], false);
    layout lay;
    parse_all(&re, &lay);
    cr_assert_eq(lay.nops, (size_t)n);
    free(lay.ops);
    raw_close(&re, false);
    /* the same ops, applied elsewhere in small batches: the same bytes */
    weft_store *c = store_open(store_dirs[2], 0, NULL);
    s = store_open(store_dirs[1], 0, NULL);
    uint64_t rng = 3;
    sync_one(s, c, 9, &rng);
    weft_store_close(&c);
    weft_store_close(&s);
    raw_eq(store_dirs[1], store_dirs[2]);
    opvec_free(&all);
    opvec_free(&rem);
    weft_store_close(&src);
}

/* weft_ops_since keeps views into blocks across its callbacks, so a write
 * through the streaming txn is refused (WEFT_EINVAL) and leaves nothing;
 * reads, a nested stream among them, work; after the stream, writes work
 * again. A raw put into ops is refused too. */
typedef struct inside_ctx {
    weft_txn *t;
    int seen, refused, nested;
} inside_ctx;

static int count_cb(const weft_op *op, void *user)
{
    (void)op;
    (*(int *)user)++;
    return 0;
}

static int inside_cb(const weft_op *op, void *user)
{
    inside_ctx *x = user;
    x->seen++;
    int rc = weft_set_int(x->t, "c", "inside", "n", x->seen);
    x->refused += rc == WEFT_EINVAL && strstr(weft_last_error(), "weft_ops_since") != NULL;
    weft_vv *have = NULL;
    OK(weft_vv_new(&have));
    OK(weft_vv_set(have, op->id.device, op->id.hlc));
    int n = 0;
    cr_assert_geq(weft_ops_since(x->t, have, count_cb, &n), 0);
    x->nested += n;
    weft_vv_destroy(&have);
    return 0;
}

Test(oplog, no_writes_inside_the_stream, .init = store_dirs_setup, .fini = store_dirs_teardown)
{
    weft_store *s = store_open(store_dirs[0], 0, NULL);
    write_mix(s, 1);
    weft_info before;
    OK(weft_store_info(s, &before));
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    inside_ctx x = {t, 0, 0, 0};
    int n = weft_ops_since(t, NULL, inside_cb, &x);
    cr_assert_eq((uint64_t)n, before.ops);
    cr_assert_eq(x.seen, n);
    cr_assert_eq(x.refused, n, "every write inside the callback is refused");
    cr_assert_eq(x.nested, n * (n - 1) / 2, "the nested streams see the rest of the log");
    OK(weft_set_int(t, "c", "after", "n", 1)); /* the stream is over */
    /* and only applying ops writes ops: a raw put there is refused, harmlessly */
    uint8_t key[WEFT__ID_BYTES] = {0};
    key[15] = 1;
    ERR(WEFT_EINVAL,
        weft__txn_put(t, "ops", (weft_bytes){key, sizeof key}, &(weft_bytes){"\x00\x01\xc0", 3}));
    OK(weft_txn_commit(&t));
    weft_info after;
    OK(weft_store_info(s, &after));
    cr_assert_eq(after.ops, before.ops + 1);
    weft_store_close(&s);
}
