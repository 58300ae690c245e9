/* test_alloc_api.c - allocation failure injected at every allocation of
 * every public call of weft_store.h, weft_sync.h (the store-side part: cards
 * and peers; the engine is swept by tests/transport/test_alloc_sync.c),
 * weft_err.h and weft.h.
 *
 * For each call, a sweep runs it with weft__alloc_fail_after(k) for k = 0,
 * 1, 2, ...: the k-th allocation of the call and every one after it fail.
 * Each run must either succeed with the right result or fail cleanly:
 *   - the code is WEFT_ENOMEM (no call turns an allocation failure into
 *     another code);
 *   - it fails only when the injected failure was reached;
 *   - weft_last_error() is not empty (it is cleared before the call);
 *   - out-parameters are untouched (sentinels checked);
 *   - the store is usable and exactly as before (dumps compared): a failed
 *     write leaves its transaction usable (it commits, changing nothing) or
 *     poisoned (WEFT_ETXN), never half-applied;
 * and stops at the first run that succeeds without reaching the failure:
 * every allocation of the call has then failed once. In sanitizer builds
 * each test also ends with a heap check (tests/alloc_sweep.h, which holds
 * the sweep itself). Each sweep logs how many
 * allocations it failed, each test its totals.
 *
 * Regression kept here: weft_apply's failed_at after an allocation failure
 * is n, as documented (it named the op being applied).
 *
 * Invariants: each test uses its own store directories and removes them;
 * test code never allocates through weft__malloc while a failure is armed
 * (digests instead of buffers), so only the library's allocations count.
 * Thread-safety: single-threaded, except the group-commit test (the
 * failure hook is process-wide, armed by one thread at a time).
 */
#define _DEFAULT_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "helpers.h"
#include "tests/alloc_sweep.h"
#include "transport/transport_int.h"

static char *dir, *dir2, *dir3;
static void setup(void)
{
    char *warm = tmpdir_new();
    weft_store *s = store_open(warm, 0, NULL);
    weft_txn *t;
    int fd;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_txn_abort(&t);
    OK(weft_store_fd(s, &fd));
    weft_store_close(&s);
    rm_rf(warm);
    free(warm);
    dir = tmpdir_new();
    dir2 = tmpdir_new();
    dir3 = tmpdir_new();
    sweep_heap_mark();
}
static void teardown(void)
{
    weft__alloc_fail_after(-1);
    rm_rf(dir);
    rm_rf(dir2);
    rm_rf(dir3);
    free(dir);
    free(dir2);
    free(dir3);
}

static void log_totals(const char *test)
{
    sweep_totals("alloc_api", test);
}

/* ---------------------------------------------------------------- digests */

/* FNV-1a over what a call reported: compares results without allocating. */
typedef struct digest {
    uint64_t h;
    long n;
} digest;

static void dg_bytes(digest *d, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (d->h == 0) {
        d->h = 1469598103934665603ull;
    }
    for (size_t i = 0; i < n; i++) {
        d->h = (d->h ^ b[i]) * 1099511628211ull;
    }
}
static void dg_u64(digest *d, uint64_t v)
{
    dg_bytes(d, &v, sizeof v);
}
static void dg_str(digest *d, const char *s)
{
    dg_bytes(d, s, strlen(s) + 1);
}
static void dg_field(digest *d, const weft_field *f)
{
    dg_str(d, f->coll);
    dg_str(d, f->entity);
    dg_str(d, f->name);
    dg_u64(d, (uint64_t)f->kind);
    dg_bytes(d, f->value.ptr, f->value.len);
    dg_u64(d, f->id.hlc);
    dg_u64(d, f->id.device);
    dg_u64(d, f->heads);
}
static bool dg_eq(const digest *a, const digest *b)
{
    return a->h == b->h && a->n == b->n;
}

static int field_cb(const weft_field *f, void *user)
{
    digest *d = user;
    dg_field(d, f);
    d->n++;
    return 0;
}

static int conflict_cb(const weft_conflict *c, void *user)
{
    digest *d = user;
    dg_str(d, c->coll);
    dg_str(d, c->entity);
    dg_str(d, c->field);
    for (size_t i = 0; i < c->nheads; i++) {
        dg_u64(d, c->heads[i].id.hlc);
        dg_u64(d, c->heads[i].id.device);
        dg_bytes(d, c->heads[i].value.ptr, c->heads[i].value.len);
    }
    d->n++;
    return 0;
}

static int op_cb(const weft_op *op, void *user)
{
    digest *d = user;
    dg_u64(d, op->id.hlc);
    dg_u64(d, op->id.device);
    dg_u64(d, op->dprev);
    dg_bytes(d, op->payload.ptr, op->payload.len);
    d->n++;
    return 0;
}

/* ---------------------------------------------------------------- fixture */

static bool all_bytes(const void *p, size_t n, uint8_t v)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != v) {
            return false;
        }
    }
    return true;
}

static bool has_bytes(const void *hay, size_t hn, const void *needle, size_t nn)
{
    for (size_t i = 0; nn <= hn && i <= hn - nn; i++) {
        if (memcmp((const uint8_t *)hay + i, needle, nn) == 0) {
            return true;
        }
    }
    return false;
}

static const char big_value[] = "a register value longer than WEFT__INLINE_MAX, so that it lives "
                                "in the op log only and reads of it follow a ref into `ops`";

/* Registers, counters, sets, a long value, a tombstone, a probe field no
 * sweep touches, and two conflicts (a second device wrote c/e0/x and
 * c/e1/x concurrently). */
static void fill(weft_store *s, weft_store *other)
{
    weft_txn *t;
    uint8_t v[16];
    OK(weft_txn_begin(s, 0, &t));
    for (int i = 0; i < 20; i++) {
        char e[16];
        snprintf(e, sizeof e, "e%d", i % 5);
        OK(weft_set_int(t, "c", e, "x", i));
        OK(weft_inc(t, "c", e, "n", i, NULL));
        OK(weft_add(t, "c", e, "tags", v, mp_int(v, sizeof v, i % 3), NULL));
    }
    OK(weft_add(t, "c", "e1", "tags", v, mp_str(v, sizeof v, "elem-rm"), NULL));
    OK(weft_set_str(t, "c", "big", "v", big_value));
    OK(weft_set_str(t, "p", "keep", "v", "probe"));
    OK(weft_del(t, "c", "e4", NULL));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(other, 0, &t));
    OK(weft_set_str(t, "c", "e0", "x", "theirs"));
    OK(weft_set_str(t, "c", "e1", "x", "theirs too"));
    OK(weft_txn_commit(&t));
    uint64_t rng = 7;
    sync_one(other, s, 4, &rng);
}

static uint64_t ops_of(weft_store *s)
{
    weft_info i;
    OK(weft_store_info(s, &i));
    return i.ops;
}

static uint64_t conflicts_of(weft_store *s)
{
    weft_info i;
    OK(weft_store_info(s, &i));
    return i.conflicts;
}

static void expect_dump(weft_store *s, const weft__buf *want, const char *what, long k)
{
    weft__buf now = {0};
    dump(s, NULL, &now);
    cr_assert(now.len == want->len && memcmp(now.ptr, want->ptr, now.len) == 0,
              "%s k=%ld: store changed by a failed call", what, k);
    weft__buf_free(&now);
}

/* ---------------------------------------------------------------- writes */

typedef struct wcall {
    const char *name;
    int (*fn)(weft_txn *t, weft_id *id, const struct wcall *c);
    /* asserts the write is visible in @p t */
    void (*check)(weft_txn *t, const struct wcall *c);
    const char *coll, *ent, *field;
    const uint8_t *val; /* msgpack: the value written, or what check expects */
    size_t len;
    const char *str; /* weft_set_str's argument */
    int64_t n;       /* weft_set_int/bool's argument, weft_inc's amount */
    double f;        /* weft_set_f64's argument */
    int64_t before;  /* weft_inc: the counter before the call */
    bool has_id;     /* the call reports the op's id */
} wcall;

static int w_set(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_set(t, c->coll, c->ent, c->field, c->val, c->len, id);
}
static int w_resolve(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_resolve(t, c->coll, c->ent, c->field, c->val, c->len, id);
}
static int w_set_str(weft_txn *t, weft_id *id, const wcall *c)
{
    (void)id;
    return weft_set_str(t, c->coll, c->ent, c->field, c->str);
}
static int w_set_int(weft_txn *t, weft_id *id, const wcall *c)
{
    (void)id;
    return weft_set_int(t, c->coll, c->ent, c->field, c->n);
}
static int w_set_f64(weft_txn *t, weft_id *id, const wcall *c)
{
    (void)id;
    return weft_set_f64(t, c->coll, c->ent, c->field, c->f);
}
static int w_set_bool(weft_txn *t, weft_id *id, const wcall *c)
{
    (void)id;
    return weft_set_bool(t, c->coll, c->ent, c->field, (int)c->n);
}
static int w_del(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_del(t, c->coll, c->ent, id);
}
static int w_inc(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_inc(t, c->coll, c->ent, c->field, c->n, id);
}
static int w_add(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_add(t, c->coll, c->ent, c->field, c->val, c->len, id);
}
static int w_rem(weft_txn *t, weft_id *id, const wcall *c)
{
    return weft_rem(t, c->coll, c->ent, c->field, c->val, c->len, id);
}

/* The register now holds exactly @p c->val (canonical), one head. */
static void chk_value(weft_txn *t, const wcall *c)
{
    weft_field f;
    OK(weft_get(t, c->coll, c->ent, c->field, &f));
    cr_assert_eq(f.heads, 1, "%s: %u heads after the write", c->name, f.heads);
    cr_assert(f.value.len == c->len && memcmp(f.value.ptr, c->val, c->len) == 0,
              "%s: value not written", c->name);
}
static void chk_del(weft_txn *t, const wcall *c)
{
    ERR(WEFT_ENOTFOUND, weft_entity_read(t, c->coll, c->ent, NULL, NULL));
}
static void chk_inc(weft_txn *t, const wcall *c)
{
    weft_field f;
    OK(weft_get(t, c->coll, c->ent, c->field, &f));
    uint8_t want[16];
    size_t n = mp_int(want, sizeof want, c->before + c->n);
    cr_assert(f.value.len == n && memcmp(f.value.ptr, want, n) == 0, "%s: counter wrong", c->name);
}
static void chk_add(weft_txn *t, const wcall *c)
{
    weft_field f;
    OK(weft_get(t, c->coll, c->ent, c->field, &f));
    cr_assert(has_bytes(f.value.ptr, f.value.len, c->val, c->len), "%s: element missing", c->name);
}
static void chk_rem(weft_txn *t, const wcall *c)
{
    weft_field f;
    OK(weft_get(t, c->coll, c->ent, c->field, &f));
    cr_assert(!has_bytes(f.value.ptr, f.value.len, c->val, c->len), "%s: element still there",
              c->name);
}

/* Sweep one local write, each run in a fresh write transaction. */
static void sweep_write(weft_store *s, const wcall *c)
{
    weft__buf before = {0};
    dump(s, NULL, &before);
    uint64_t ops0 = ops_of(s), dev = weft_store_device(s);
    weft_info info;
    OK(weft_store_info(s, &info));
    sweep sw;
    SWEEP(sw, c->name)
    {
        weft_txn *t = NULL;
        OK(weft_txn_begin(s, 0, &t));
        weft_id id;
        memset(&id, 0xa5, sizeof id);
        sweep_arm(&sw);
        int rc = c->fn(t, &id, c);
        if (sweep_failed(&sw, rc)) {
            cr_assert(all_bytes(&id, sizeof id, 0xa5), "%s k=%ld: out_id written on failure",
                      c->name, sw.k);
            /* Usable (reads, commits, changes nothing) or poisoned. */
            weft_field f;
            int g = weft_get(t, "p", "keep", "v", &f);
            if (g == WEFT_ETXN) {
                sweep_poisoned(&sw);
                ERR(WEFT_ETXN, weft_set_str(t, "p", "keep", "w", "x"));
                ERR(WEFT_ETXN, weft_txn_commit(&t));
            } else {
                OK(g);
                OK(weft_txn_commit(&t));
            }
            expect_dump(s, &before, c->name, sw.k);
            continue;
        }
        if (c->has_id) {
            cr_assert(id.device == dev && id.hlc > info.last_hlc, "%s: bad op id", c->name);
        }
        c->check(t, c);
        if (sw.injected) {
            weft_txn_abort(&t); /* a success that absorbed a failure: result checked */
            continue;
        }
        OK(weft_txn_commit(&t));
        cr_assert_eq(ops_of(s), ops0 + 1, "%s: one op expected", c->name);
        OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
        c->check(t, c);
        weft_txn_abort(&t);
    }
    weft__buf_free(&before);
}

static size_t canon(uint8_t *out, size_t cap, const void *mp, size_t len)
{
    weft__buf b = {0};
    OK(weft__mp_canon(mp, len, &b));
    cr_assert_leq(b.len, cap);
    memcpy(out, b.ptr, b.len);
    size_t n = b.len;
    weft__buf_free(&b);
    return n;
}

static int64_t counter_of(weft_store *s, const char *coll, const char *ent, const char *field)
{
    weft_txn *t;
    weft_field f;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    OK(weft_get(t, coll, ent, field, &f));
    weft__mp_reader r = {f.value.ptr, (const uint8_t *)f.value.ptr + f.value.len};
    int64_t v = 0;
    OK(weft__mp_read_int(&r, &v));
    weft_txn_abort(&t);
    return v;
}

Test(alloc_api, writes, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_store *s = store_open(dir, 0, NULL), *o = store_open(dir2, 0, NULL);
    fill(s, o);
    /* A map value out of order: canonicalisation sorts it (allocates). */
    static const uint8_t map[] = {0x83, 0xa1, 'z',  0x01, 0xa1, 'b',
                                  0x92, 0x01, 0x02, 0xa1, 'a',  0xc3};
    uint8_t cmap[32], st[160], s1[32], s2[32], s3[16], e1[16], e2[16], fl[16], bo[4];
    weft__buf fb = {0};
    wcall set = {.name = "weft_set",
                 .fn = w_set,
                 .check = chk_value,
                 .coll = "c",
                 .ent = "new",
                 .field = "m",
                 .val = cmap,
                 .has_id = true};
    set.len = canon(cmap, sizeof cmap, map, sizeof map);
    sweep_write(s, &set);
    /* Over an existing head (prev names it) and a long value (a ref head). */
    wcall over = {.name = "weft_set (long value over a head)",
                  .fn = w_set,
                  .check = chk_value,
                  .coll = "c",
                  .ent = "e2",
                  .field = "x",
                  .val = st,
                  .has_id = true};
    over.len = mp_str(st, sizeof st, big_value);
    sweep_write(s, &over);
    uint64_t c0 = conflicts_of(s);
    cr_assert_eq(c0, 2);
    wcall res = {.name = "weft_resolve",
                 .fn = w_resolve,
                 .check = chk_value,
                 .coll = "c",
                 .ent = "e0",
                 .field = "x",
                 .val = s1,
                 .has_id = true};
    res.len = mp_str(s1, sizeof s1, "resolved");
    sweep_write(s, &res);
    cr_assert_eq(conflicts_of(s), 1);
    wcall sstr = {.name = "weft_set_str",
                  .fn = w_set_str,
                  .check = chk_value,
                  .coll = "c",
                  .ent = "e1",
                  .field = "x",
                  .val = s2,
                  .str = "a str"};
    sstr.len = mp_str(s2, sizeof s2, "a str");
    sweep_write(s, &sstr);
    cr_assert_eq(conflicts_of(s), 0, "weft_set_str superseded the other conflict");
    wcall sint = {.name = "weft_set_int",
                  .fn = w_set_int,
                  .check = chk_value,
                  .coll = "c",
                  .ent = "e3",
                  .field = "i",
                  .val = s3,
                  .n = -70000};
    sint.len = mp_int(s3, sizeof s3, -70000);
    sweep_write(s, &sint);
    OK(weft__mp_put_f64(&fb, 2.5));
    memcpy(fl, fb.ptr, fb.len);
    wcall sf = {.name = "weft_set_f64",
                .fn = w_set_f64,
                .check = chk_value,
                .coll = "c",
                .ent = "e3",
                .field = "f",
                .val = fl,
                .len = fb.len,
                .f = 2.5};
    weft__buf_free(&fb);
    sweep_write(s, &sf);
    OK(weft__mp_put_bool(&fb, true));
    memcpy(bo, fb.ptr, fb.len);
    wcall sb = {.name = "weft_set_bool",
                .fn = w_set_bool,
                .check = chk_value,
                .coll = "c",
                .ent = "e3",
                .field = "b",
                .val = bo,
                .len = fb.len,
                .n = 1};
    weft__buf_free(&fb);
    sweep_write(s, &sb);
    wcall inc = {.name = "weft_inc",
                 .fn = w_inc,
                 .check = chk_inc,
                 .coll = "c",
                 .ent = "e1",
                 .field = "n",
                 .n = -12345,
                 .has_id = true};
    inc.before = counter_of(s, "c", "e1", "n");
    sweep_write(s, &inc);
    wcall inc2 = {.name = "weft_inc (new field)",
                  .fn = w_inc,
                  .check = chk_inc,
                  .coll = "c",
                  .ent = "e9",
                  .field = "n",
                  .n = 7,
                  .has_id = true};
    sweep_write(s, &inc2);
    wcall add = {.name = "weft_add",
                 .fn = w_add,
                 .check = chk_add,
                 .coll = "c",
                 .ent = "e2",
                 .field = "tags",
                 .val = e1,
                 .has_id = true};
    add.len = mp_str(e1, sizeof e1, "elem-add");
    sweep_write(s, &add);
    wcall rem = {.name = "weft_rem",
                 .fn = w_rem,
                 .check = chk_rem,
                 .coll = "c",
                 .ent = "e1",
                 .field = "tags",
                 .val = e2,
                 .has_id = true};
    rem.len = mp_str(e2, sizeof e2, "elem-rm");
    sweep_write(s, &rem);
    /* A delete prunes every field of the entity and its counter rows. */
    wcall del = {.name = "weft_del",
                 .fn = w_del,
                 .check = chk_del,
                 .coll = "c",
                 .ent = "e2",
                 .has_id = true};
    sweep_write(s, &del);
    /* Still usable: a write and a read. */
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "after", "x", "ok"));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "c", NULL, 0, NULL, NULL), 7); /* big e0 e1 e3 e9 new after */
    weft_txn_abort(&t);
    weft_store_close(&s);
    weft_store_close(&o);
    log_totals("writes");
}

/* ---------------------------------------------------------------- reads */

typedef struct rcall {
    const char *name;
    /* Make the call, digesting what it reports into @p d; asserts the
     * outputs untouched when it fails. Returns the call's result. */
    int (*fn)(weft_txn *t, const struct rcall *c, digest *d);
    const char *coll, *ent, *field, *after;
    size_t limit;
    const weft_op *op;
    const weft_vv *have;
} rcall;

static int r_get(weft_txn *t, const rcall *c, digest *d)
{
    weft_field f;
    memset(&f, 0xa5, sizeof f);
    int rc = weft_get(t, c->coll, c->ent, c->field, &f);
    if (rc < 0) {
        cr_assert(all_bytes(&f, sizeof f, 0xa5), "weft_get wrote its output on failure");
        return rc;
    }
    dg_field(d, &f);
    return rc;
}
static int r_entity(weft_txn *t, const rcall *c, digest *d)
{
    return weft_entity_read(t, c->coll, c->ent, field_cb, d);
}
static int r_scan(weft_txn *t, const rcall *c, digest *d)
{
    return weft_scan(t, c->coll, c->after, c->limit, field_cb, d);
}
static int r_conflicts(weft_txn *t, const rcall *c, digest *d)
{
    return weft_conflicts(t, c->coll, conflict_cb, d);
}
static int r_ops_since(weft_txn *t, const rcall *c, digest *d)
{
    return weft_ops_since(t, c->have, op_cb, d);
}
static int r_store_vv(weft_txn *t, const rcall *c, digest *d)
{
    (void)c;
    weft_vv *vv = NULL;
    int rc = weft_store_vv(t, &vv);
    if (rc < 0) {
        cr_assert_null(vv, "weft_store_vv wrote its output on failure");
        return rc;
    }
    for (size_t i = 0; i < weft_vv_count(vv); i++) {
        uint64_t dev, hlc;
        OK(weft_vv_entry(vv, i, &dev, &hlc));
        dg_u64(d, dev);
        dg_u64(d, hlc);
    }
    weft_vv_destroy(&vv);
    return rc;
}
static int r_describe(weft_txn *t, const rcall *c, digest *d)
{
    weft_op_info in;
    memset(&in, 0xa5, sizeof in);
    int rc = weft_op_describe(t, c->op, &in);
    if (rc < 0) {
        cr_assert(all_bytes(&in, sizeof in, 0xa5), "weft_op_describe wrote its output on failure");
        return rc;
    }
    dg_str(d, in.kind);
    dg_str(d, in.coll);
    dg_str(d, in.entity);
    dg_str(d, in.field);
    dg_bytes(d, in.value.ptr, in.value.len);
    for (size_t i = 0; i < in.nprev; i++) {
        dg_u64(d, in.prev[i].hlc);
        dg_u64(d, in.prev[i].device);
    }
    return rc;
}

/* Sweep one read in a read (or write) transaction. Reads never poison: after
 * a failure the same transaction must give the reference result. */
static void sweep_read(weft_store *s, const rcall *c, unsigned flags)
{
    char name[96];
    snprintf(name, sizeof name, "%s (%s txn)", c->name, flags ? "read" : "write");
    weft__buf before = {0};
    dump(s, NULL, &before);
    weft_txn *t = NULL;
    OK(weft_txn_begin(s, flags, &t));
    digest ref = {0, 0};
    int want = c->fn(t, c, &ref);
    cr_assert_geq(want, 0, "%s: %s (%s)", name, weft_err_name(want), weft_last_error());
    weft_txn_abort(&t);
    sweep sw;
    SWEEP(sw, name)
    {
        OK(weft_txn_begin(s, flags, &t));
        digest d = {0, 0};
        sweep_arm(&sw);
        int rc = c->fn(t, c, &d);
        if (sweep_failed(&sw, rc)) {
            digest again = {0, 0};
            int rc2 = c->fn(t, c, &again);
            cr_assert(rc2 == want && dg_eq(&again, &ref), "%s k=%ld: txn unusable after failure",
                      name, sw.k);
            weft_txn_abort(&t);
            continue;
        }
        cr_assert(rc == want && dg_eq(&d, &ref), "%s k=%ld: wrong result (%d, expected %d)", name,
                  sw.k, rc, want);
        weft_txn_abort(&t);
    }
    expect_dump(s, &before, name, sw.k);
    weft__buf_free(&before);
}

Test(alloc_api, reads, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_store *s = store_open(dir, 0, NULL), *o = store_open(dir2, 0, NULL);
    fill(s, o);
    opvec ops = {0};
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_gt(weft_ops_since(t, NULL, opvec_collect, &ops), 0);
    weft_txn_abort(&t);
    weft_vv *have = NULL;
    OK(weft_vv_new(&have));
    OK(weft_vv_set(have, weft_store_device(o), 1)); /* some of one device */
    rcall calls[] = {
        {"weft_get", r_get, "c", "e1", "x", NULL, 0, NULL, NULL},
        {"weft_get (conflict)", r_get, "c", "e0", "x", NULL, 0, NULL, NULL},
        {"weft_get (counter)", r_get, "c", "e2", "n", NULL, 0, NULL, NULL},
        {"weft_get (set)", r_get, "c", "e2", "tags", NULL, 0, NULL, NULL},
        {"weft_get (long value)", r_get, "c", "big", "v", NULL, 0, NULL, NULL},
        {"weft_entity_read", r_entity, "c", "e1", NULL, NULL, 0, NULL, NULL},
        {"weft_scan", r_scan, "c", NULL, NULL, NULL, 0, NULL, NULL},
        {"weft_scan (after, limit)", r_scan, "c", NULL, NULL, "e0", 2, NULL, NULL},
        {"weft_conflicts", r_conflicts, NULL, NULL, NULL, NULL, 0, NULL, NULL},
        {"weft_conflicts (coll)", r_conflicts, "c", NULL, NULL, NULL, 0, NULL, NULL},
        {"weft_ops_since", r_ops_since, NULL, NULL, NULL, NULL, 0, NULL, NULL},
        {"weft_ops_since (have)", r_ops_since, NULL, NULL, NULL, NULL, 0, NULL, have},
        {"weft_store_vv", r_store_vv, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        sweep_read(s, &calls[i], WEFT_TXN_RDONLY);
        sweep_read(s, &calls[i], 0);
    }
    /* weft_op_describe on the first op of each kind in the log (a set
     * naming a head in prev, an inc, an add, a del). */
    const char *kinds[] = {"set", "inc", "add", "del"};
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const weft_op *pick = NULL;
        for (size_t i = 0; i < ops.n && pick == NULL; i++) {
            weft_op_info in;
            OK(weft_op_describe(t, &ops.v[i], &in));
            if (strcmp(in.kind, kinds[k]) == 0 && (k != 0 || in.nprev > 0)) {
                pick = &ops.v[i];
            }
        }
        cr_assert_not_null(pick, "no %s op in the log", kinds[k]);
        char name[48];
        snprintf(name, sizeof name, "weft_op_describe (%s)", kinds[k]);
        rcall c = {name, r_describe, NULL, NULL, NULL, NULL, 0, pick, NULL};
        sweep_read(s, &c, WEFT_TXN_RDONLY);
        sweep_read(s, &c, 0);
    }
    weft_txn_abort(&t);
    weft_vv_destroy(&have);
    opvec_free(&ops);
    weft_store_close(&s);
    weft_store_close(&o);
    log_totals("reads");
}

/* ---------------------------------------------------------------- vv */

static void vv_fill(weft_vv *vv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        OK(weft_vv_set(vv, 100 + 7 * i, 1000 + i));
    }
}

static void vv_digest(const weft_vv *vv, digest *d)
{
    for (size_t i = 0; i < weft_vv_count(vv); i++) {
        uint64_t dev, hlc;
        OK(weft_vv_entry(vv, i, &dev, &hlc));
        dg_u64(d, dev);
        dg_u64(d, hlc);
    }
    d->n = (long)weft_vv_count(vv);
}

Test(alloc_api, version_vectors, .init = setup, .fini = teardown, .timeout = 120)
{
    sweep sw;
    SWEEP(sw, "weft_vv_new")
    {
        weft_vv *vv = NULL;
        sweep_arm(&sw);
        int rc = weft_vv_new(&vv);
        if (sweep_failed(&sw, rc)) {
            cr_assert_null(vv);
            continue;
        }
        cr_assert_eq(weft_vv_count(vv), 0);
        weft_vv_destroy(&vv);
    }
    /* weft_vv_set: into an empty vector, and past its capacity (8). */
    for (size_t n0 = 0; n0 <= 8; n0 += 8) {
        weft_vv *vv = NULL;
        OK(weft_vv_new(&vv));
        vv_fill(vv, n0);
        digest d0 = {0, 0};
        vv_digest(vv, &d0);
        SWEEP(sw, n0 ? "weft_vv_set (grow)" : "weft_vv_set")
        {
            sweep_arm(&sw);
            int rc = weft_vv_set(vv, 3, 42);
            if (sweep_failed(&sw, rc)) {
                digest d = {0, 0};
                vv_digest(vv, &d);
                cr_assert(dg_eq(&d, &d0), "weft_vv_set k=%ld: vector changed", sw.k);
                continue;
            }
            cr_assert_eq(weft_vv_get(vv, 3), 42);
            cr_assert_eq(weft_vv_count(vv), n0 + 1);
            if (sw.injected) {
                OK(weft_vv_set(vv, 3, 0));
            }
        }
        weft_vv_destroy(&vv);
    }
    weft_vv *vv = NULL;
    OK(weft_vv_new(&vv));
    vv_fill(vv, 20);
    uint8_t enc[512], buf[512];
    size_t len = 0;
    OK(weft_vv_encode(vv, enc, sizeof enc, &len));
    SWEEP(sw, "weft_vv_encode")
    {
        size_t l = 12345;
        memset(buf, 0xa5, sizeof buf);
        sweep_arm(&sw);
        int rc = weft_vv_encode(vv, buf, sizeof buf, &l);
        if (sweep_failed(&sw, rc)) {
            cr_assert(all_bytes(buf, sizeof buf, 0xa5), "weft_vv_encode wrote on failure");
            continue;
        }
        cr_assert(l == len && memcmp(buf, enc, len) == 0);
    }
    /* A buffer too small: WEFT_ENOSPC with the size needed is this call's
     * success. */
    SWEEP(sw, "weft_vv_encode (too small)")
    {
        size_t l = 12345;
        memset(buf, 0xa5, sizeof buf);
        sweep_arm(&sw);
        int rc = weft_vv_encode(vv, buf, 4, &l);
        if (sweep_failed(&sw, rc == WEFT_ENOSPC ? 0 : rc)) {
            cr_assert(all_bytes(buf, sizeof buf, 0xa5), "weft_vv_encode wrote on failure");
            continue;
        }
        cr_assert_eq(rc, WEFT_ENOSPC);
        cr_assert_eq(l, len, "weft_vv_encode: size needed");
        cr_assert(all_bytes(buf, sizeof buf, 0xa5), "weft_vv_encode wrote on ENOSPC");
    }
    digest ref = {0, 0};
    vv_digest(vv, &ref);
    SWEEP(sw, "weft_vv_decode")
    {
        weft_vv *out = NULL;
        sweep_arm(&sw);
        int rc = weft_vv_decode(enc, len, &out);
        if (sweep_failed(&sw, rc)) {
            cr_assert_null(out);
            continue;
        }
        digest d = {0, 0};
        vv_digest(out, &d);
        cr_assert(dg_eq(&d, &ref));
        weft_vv_destroy(&out);
    }
    /* The rest allocate nothing. */
    SWEEP(sw, "weft_vv_get/count/entry/destroy")
    {
        uint64_t dev = 0, hlc = 0;
        weft_vv *gone = NULL;
        OK(weft_vv_decode(enc, len, &gone));
        sweep_arm(&sw);
        int rc = weft_vv_entry(vv, 3, &dev, &hlc);
        rc = rc ? rc : (weft_vv_get(vv, dev) == hlc && weft_vv_count(vv) == 20 ? 0 : -1);
        weft_vv_destroy(&gone);
        weft_vv_destroy(&gone);
        cr_assert(!sweep_failed(&sw, rc));
        cr_assert_eq(sw.made, 0);
    }
    weft_vv_destroy(&vv);
    log_totals("version_vectors");
}

/* ---------------------------------------------------------------- open, txn */

/* The store at @p d opens (creating if need be) and takes a write. */
static void usable(const char *d)
{
    weft_store *s = store_open(d, 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "e", "f", "v"));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_field f;
    OK(weft_get(t, "c", "e", "f", &f));
    weft_txn_abort(&t);
    weft_store_close(&s);
}

Test(alloc_api, open_info_close, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_options o;
    weft_options_init(&o);
    sweep sw;
    /* Create, in a fresh directory per run (a failed create may leave a
     * store behind: it must then open). */
    static const unsigned create_flags[] = {WEFT_OPEN_CREATE, WEFT_OPEN_CREATE | WEFT_OPEN_EXCL};
    for (size_t f = 0; f < 2; f++) {
        o.flags = create_flags[f];
        SWEEP(sw, f ? "weft_store_open (create, excl)" : "weft_store_open (create)")
        {
            char sub[300];
            snprintf(sub, sizeof sub, "%s/f%zu-k%ld", dir, f, sw.k);
            weft_store *s = NULL;
            sweep_arm(&sw);
            int rc = weft_store_open(sub, &o, &s);
            if (sweep_failed(&sw, rc)) {
                cr_assert_null(s, "weft_store_open wrote its output on failure");
                usable(sub);
                continue;
            }
            weft_store_close(&s);
            usable(sub);
        }
    }
    /* Open an existing store, with and without CREATE, and with a map size. */
    weft_store *s = store_open(dir2, 0, NULL), *x = store_open(dir3, 0, NULL);
    fill(s, x);
    weft_store_close(&x);
    weft__buf before = {0};
    dump(s, NULL, &before);
    weft_info i0;
    OK(weft_store_info(s, &i0));
    weft_store_close(&s);
    static const unsigned open_flags[] = {0, WEFT_OPEN_CREATE, 0};
    for (size_t f = 0; f < 3; f++) {
        o.flags = open_flags[f];
        o.map_size = f == 2 ? 1u << 20 : 0;
        SWEEP(sw, f == 0   ? "weft_store_open"
                  : f == 1 ? "weft_store_open (existing, create)"
                           : "weft_store_open (map_size)")
        {
            sweep_arm(&sw);
            int rc = weft_store_open(dir2, &o, &s);
            if (sweep_failed(&sw, rc)) {
                cr_assert_null(s, "weft_store_open wrote its output on failure");
                continue;
            }
            expect_dump(s, &before, "weft_store_open", sw.k);
            weft_store_close(&s);
        }
    }
    o.flags = 0;
    o.map_size = 0;
    OK(weft_store_open(dir2, &o, &s));
    SWEEP(sw, "weft_store_info")
    {
        weft_info in;
        memset(&in, 0xa5, sizeof in);
        sweep_arm(&sw);
        int rc = weft_store_info(s, &in);
        if (sweep_failed(&sw, rc)) {
            cr_assert(all_bytes(&in, sizeof in, 0xa5), "weft_store_info wrote on failure");
            continue;
        }
        cr_assert(in.device == i0.device && in.ops == i0.ops && in.conflicts == i0.conflicts &&
                  in.last_hlc == i0.last_hlc);
    }
    SWEEP(sw, "weft_store_secret_key, weft_store_device")
    {
        uint8_t sk[WEFT_KEY_BYTES];
        sweep_arm(&sw);
        int rc = weft_store_secret_key(s, sk);
        uint64_t dev = weft_store_device(s);
        if (sweep_failed(&sw, rc)) {
            continue;
        }
        cr_assert_eq(dev, i0.device);
    }
    cr_assert_eq(sw.made, 0, "weft_store_secret_key allocates");
    SWEEP(sw, "weft_store_close")
    {
        weft_store *c = NULL;
        OK(weft_store_open(dir2, &o, &c));
        weft_txn *t;
        OK(weft_txn_begin(c, WEFT_TXN_RDONLY, &t)); /* grown buffers, an fd */
        weft_txn_abort(&t);
        int fd;
        OK(weft_store_fd(c, &fd));
        sweep_arm(&sw);
        weft_store_close(&c);
        weft_store_close(&c); /* NULL-safe */
        cr_assert_null(c);
        sweep_failed(&sw, 0);
    }
    cr_assert_eq(sw.made, 0, "weft_store_close allocates");
    weft_store_close(&s);
    weft__buf_free(&before);
    usable(dir2);
    log_totals("open_info_close");
}

Test(alloc_api, transactions, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_store *s = store_open(dir, 0, NULL), *o = store_open(dir2, 0, NULL);
    fill(s, o);
    weft__buf before = {0};
    dump(s, NULL, &before);
    sweep sw;
    static const unsigned flags[] = {WEFT_TXN_RDONLY, 0};
    for (size_t f = 0; f < 2; f++) {
        SWEEP(sw, f ? "weft_txn_begin (write)" : "weft_txn_begin (read)")
        {
            weft_txn *t = NULL;
            sweep_arm(&sw);
            int rc = weft_txn_begin(s, flags[f], &t);
            if (sweep_failed(&sw, rc)) {
                cr_assert_null(t, "weft_txn_begin wrote its output on failure");
                /* Nothing held: the next write txn begins (no EBUSY, no
                 * writer lock left taken). */
                OK(weft_txn_begin(s, 0, &t));
                weft_txn_abort(&t);
                continue;
            }
            weft_field fl;
            OK(weft_get(t, "p", "keep", "v", &fl));
            weft_txn_abort(&t);
        }
    }
    expect_dump(s, &before, "weft_txn_begin", 0);
    /* Commit (and abort) of a write txn with writes in it: the journal and
     * buffers are already grown, so neither should allocate. */
    for (int commit = 0; commit < 2; commit++) {
        SWEEP(sw, commit ? "weft_txn_commit" : "weft_txn_abort")
        {
            weft_txn *t = NULL;
            OK(weft_txn_begin(s, 0, &t));
            OK(weft_set_str(t, "c", "txn", "x", commit ? "committed" : "aborted"));
            sweep_arm(&sw);
            int rc = 0;
            if (commit) {
                rc = weft_txn_commit(&t);
            } else {
                weft_txn_abort(&t);
            }
            cr_assert_null(t);
            if (sweep_failed(&sw, rc)) {
                expect_dump(s, &before, "weft_txn_commit", sw.k);
                continue;
            }
        }
        if (!commit) {
            expect_dump(s, &before, "weft_txn_abort", 0);
        }
    }
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_field f;
    OK(weft_get(t, "c", "txn", "x", &f));
    weft_txn_abort(&t);
    weft__buf_free(&before);
    weft_store_close(&s);
    weft_store_close(&o);
    log_totals("transactions");
}

/* Group commit: a follower's commit appends its journal to the leader's
 * (an allocation) before merging its child txn. */
typedef struct follower_arg {
    weft_store *s;
    sweep *sw;
    int rc;
    bool msg; /* a failure left a message (on the follower's thread) */
} follower_arg;

static char long_str[3000];

static void *follower(void *arg)
{
    follower_arg *a = arg;
    weft_txn *t = NULL;
    a->rc = weft_txn_begin(a->s, 0, &t); /* waits for the leader: joins its group */
    if (a->rc == 0) {
        a->rc = weft_set_str(t, "g", "follower", "x", long_str);
    }
    if (a->rc != 0) {
        weft_txn_abort(&t);
        return NULL;
    }
    sweep_arm(a->sw);
    a->rc = weft_txn_commit(&t);
    a->sw->made = weft__alloc_fail_after(-1);
    a->msg = weft_last_error()[0] != '\0';
    return NULL;
}

static void *nothing(void *arg)
{
    return arg;
}

Test(alloc_api, group_commit_follower, .init = setup, .fini = teardown, .timeout = 300)
{
    memset(long_str, 'y', sizeof long_str - 1);
    /* A first thread makes glibc's one-time per-thread allocations (its
     * stack cache keeps them): not ours to count. */
    pthread_t warm;
    cr_assert_eq(pthread_create(&warm, NULL, nothing, NULL), 0);
    pthread_join(warm, NULL);
    sweep_heap_mark();
    weft_store *s = store_open(dir, 0, NULL);
    sweep sw;
    SWEEP(sw, "weft_txn_commit (group follower)")
    {
        weft__buf before = {0};
        dump(s, NULL, &before);
        uint64_t ops0 = ops_of(s);
        weft_txn *lead = NULL;
        OK(weft_txn_begin(s, 0, &lead));
        OK(weft_set_str(lead, "g", "leader", "x", "short"));
        follower_arg a = {s, &sw, 0, false};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, follower, &a), 0);
        for (;;) { /* until the follower waits to join */
            uint64_t commits, joined;
            unsigned waiting;
            weft__store_group_stats(s, &commits, &joined, &waiting);
            if (waiting > 0) {
                break;
            }
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        OK(weft_txn_commit(&lead));
        pthread_join(th, NULL);
        /* The follower's rc and message are judged here (its thread armed
         * and disarmed the failure). */
        long made = sw.made;
        n_runs++;
        sw.injected = made > sw.k;
        n_injected += sw.injected;
        cr_assert_eq(ops_of(s), ops0 + 1 + (a.rc == 0), "leader's write lost");
        if (a.rc != 0) {
            cr_assert(sw.injected, "follower k=%ld: %s without a failure", sw.k,
                      weft_err_name(a.rc));
            cr_assert_eq(a.rc, WEFT_ENOMEM, "follower k=%ld: %s", sw.k, weft_err_name(a.rc));
            cr_assert(a.msg, "follower k=%ld: empty weft_last_error()", sw.k);
        } else {
            sw.done = !sw.injected;
        }
        weft_txn *t;
        OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
        weft_field f;
        int g = weft_get(t, "g", "follower", "x", &f);
        cr_assert_eq(g, a.rc == 0 ? 0 : WEFT_ENOTFOUND, "follower's write half there");
        weft_txn_abort(&t);
        if (a.rc == 0) { /* undo for the next run */
            OK(weft_txn_begin(s, 0, &t));
            OK(weft_del(t, "g", "follower", NULL));
            OK(weft_txn_commit(&t));
        }
        weft__buf_free(&before);
    }
    weft_store_close(&s);
    log_totals("group_commit_follower");
}

/* ---------------------------------------------------------------- apply */

static weft_store *reopen(weft_store **s, const char *d, size_t map_size)
{
    weft_store_close(s);
    *s = store_open(d, map_size, NULL);
    return *s;
}

/* Apply @p o into the store at @p d in one batch, each run after reopening
 * it with @p map_size (so that a growth in one run is not inherited by the
 * next): a failure leaves the store as it was and the txn usable (or, when
 * the map had to grow, poisoned); a success makes it equal to @p src. With
 * @p own, the txn holds a write of its own before the batch (a growth then
 * replays it): a failure must keep it, a success is checked in the txn and
 * aborted. */
static void sweep_apply(const char *name, weft_store *src, const char *d, size_t map_size,
                        const opvec *o, bool expect_growth, bool own)
{
    weft_store *b = store_open(d, map_size, NULL);
    weft__buf before = {0};
    dump(b, NULL, &before);
    sweep sw;
    SWEEP(sw, name)
    {
        reopen(&b, d, map_size);
        weft_info i0;
        OK(weft_store_info(b, &i0));
        weft_txn *t;
        OK(weft_txn_begin(b, 0, &t));
        if (own) {
            OK(weft_set_str(t, "z", "own", "x", "mine"));
        }
        weft_apply_result r;
        memset(&r, 0xa5, sizeof r);
        sweep_arm(&sw);
        int rc = weft_apply(t, o->v, o->n, &r);
        if (sweep_failed(&sw, rc)) {
            /* Regression: failed_at names no op for an allocation failure. */
            cr_assert_eq(r.failed_at, o->n, "%s k=%ld: failed_at %zu blames an op", name, sw.k,
                         r.failed_at);
            cr_assert(all_bytes((const uint8_t *)&r + sizeof r.failed_at,
                                sizeof r - sizeof r.failed_at, 0xa5),
                      "%s k=%ld: result written on failure", name, sw.k);
            weft_field f;
            int g = weft_get(t, "p", "keep", "v", &f);
            if (g == WEFT_ETXN) {
                sweep_poisoned(&sw);
                cr_assert(expect_growth, "%s k=%ld: a failed batch poisoned the txn", name, sw.k);
                ERR(WEFT_ETXN, weft_txn_commit(&t));
            } else {
                ERR(WEFT_ENOTFOUND, g);
                if (own) { /* the caller's own work survives */
                    OK(weft_get(t, "z", "own", "x", &f));
                }
                OK(weft_set_str(t, "z", "after", "x", "usable")); /* the txn takes a write */
                weft_txn_abort(&t);
            }
            expect_dump(b, &before, name, sw.k);
            continue;
        }
        cr_assert_eq(r.applied, o->n);
        cr_assert_eq(r.failed_at, o->n);
        if (own) {
            weft_field f;
            OK(weft_get(t, "z", "own", "x", &f));
            cr_assert_eq(weft_scan(t, "big", NULL, 0, NULL, NULL), 150);
            weft_info i1;
            OK(weft_store_info(b, &i1));
            cr_assert(!expect_growth || sw.injected || i1.map_size > i0.map_size,
                      "%s: the map did not grow", name);
        }
        if (sw.injected || own) {
            weft_txn_abort(&t);
            continue;
        }
        OK(weft_txn_commit(&t));
        cr_assert(dump_eq(src, b, "ops,fields,counters,entities,conflicts,vv"),
                  "%s: replica differs from its source", name);
        weft_info i1;
        OK(weft_store_info(b, &i1));
        if (expect_growth) {
            cr_assert_gt(i1.map_size, i0.map_size, "%s: the map did not grow", name);
        }
    }
    weft__buf_free(&before);
    weft_store_close(&b);
}

Test(alloc_api, apply, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_store *s = store_open(dir, 0, NULL), *o = store_open(dir2, 0, NULL);
    fill(s, o);
    /* Enough long values that a 64 KiB map must grow mid-batch. */
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    char v[600];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    for (int i = 0; i < 150; i++) {
        char e[16];
        snprintf(e, sizeof e, "g%d", i);
        v[0] = (char)('a' + i % 26);
        OK(weft_set_str(t, "big", e, "v", v));
    }
    OK(weft_txn_commit(&t));
    weft_store_close(&o);
    opvec ops = {0};
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_gt(weft_ops_since(t, NULL, opvec_collect, &ops), 150);
    weft_txn_abort(&t);
    sweep_apply("weft_apply", s, dir3, 0, &ops, false, false);
    rm_rf(dir3);
    cr_assert_eq(mkdir(dir3, 0700), 0);
    sweep_apply("weft_apply (map growth)", s, dir3, 64u << 10, &ops, true, false);
    rm_rf(dir3);
    cr_assert_eq(mkdir(dir3, 0700), 0);
    sweep_apply("weft_apply (map growth, after own write)", s, dir3, 64u << 10, &ops, true, true);
    opvec_free(&ops);
    weft_store_close(&s);
    log_totals("apply");
}

/* ---------------------------------------------------------------- notify */

static void write_one(weft_store *s, const char *value)
{
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "n", "e", "x", value));
    OK(weft_txn_commit(&t));
}

Test(alloc_api, notification, .init = setup, .fini = teardown, .timeout = 120)
{
    weft_store *s = store_open(dir, 0, NULL);
    sweep sw;
    weft_store *h = store_open(dir, 0, NULL);
    SWEEP(sw, "weft_store_fd")
    {
        int fd = -7;
        sweep_arm(&sw);
        int rc = weft_store_fd(h, &fd);
        if (sweep_failed(&sw, rc)) {
            cr_assert_eq(fd, -7, "weft_store_fd wrote its output on failure");
            continue;
        }
        cr_assert_geq(fd, 0);
    }
    weft_store_close(&h);
    /* weft_store_changed on a handle that has not made its fd yet, after a
     * commit through another handle: every run until one succeeds must
     * still report the change. */
    h = store_open(dir, 0, NULL);
    write_one(s, "one");
    uint64_t want = 0;
    {
        weft_store *ref = store_open(dir, 0, NULL);
        weft_txn *t;
        OK(weft_txn_begin(ref, WEFT_TXN_RDONLY, &t));
        want = (uint64_t)mdb_txn_id(t->txn);
        weft_txn_abort(&t);
        weft_store_close(&ref);
    }
    SWEEP(sw, "weft_store_changed")
    {
        uint64_t seq = 12345;
        sweep_arm(&sw);
        int rc = weft_store_changed(h, &seq);
        if (sweep_failed(&sw, rc)) {
            cr_assert_eq(seq, 12345, "weft_store_changed wrote its output on failure");
            continue;
        }
        cr_assert_eq(rc, 1, "weft_store_changed k=%ld: the change was lost", sw.k);
        cr_assert_eq(seq, want);
    }
    SWEEP(sw, "weft_store_changed (no change)")
    {
        sweep_arm(&sw);
        int rc = weft_store_changed(h, NULL);
        if (sweep_failed(&sw, rc)) {
            continue;
        }
        cr_assert_eq(rc, 0);
    }
    weft_store_close(&h);
    h = store_open(dir, 0, NULL);
    write_one(s, "two");
    SWEEP(sw, "weft_store_wait")
    {
        sweep_arm(&sw);
        int rc = weft_store_wait(h, 2000);
        if (sweep_failed(&sw, rc)) {
            continue;
        }
        cr_assert_eq(rc, 1, "weft_store_wait k=%ld: the change was lost", sw.k);
    }
    SWEEP(sw, "weft_store_wait (timeout)")
    {
        sweep_arm(&sw);
        int rc = weft_store_wait(h, 1);
        if (sweep_failed(&sw, rc)) {
            continue;
        }
        cr_assert_eq(rc, 0);
    }
    weft_store_close(&h);
    weft_store_close(&s);
    log_totals("notification");
}

/* ---------------------------------------------------------------- peers */

static void dg_status(digest *d, const weft_peer_status *st)
{
    dg_str(d, st->name);
    dg_bytes(d, st->public_key, sizeof st->public_key);
    dg_u64(d, st->device);
    dg_u64(d, (uint64_t)st->role);
    dg_str(d, st->addr);
    dg_u64(d, (uint64_t)st->state);
    dg_u64(d, st->pending_ops);
    dg_u64(d, st->pending_bytes);
    dg_u64(d, (uint64_t)st->last_error);
    dg_str(d, st->last_error_msg);
    dg_u64(d, st->syncs);
}

static int status_cb(const weft_peer_status *st, void *user)
{
    digest *d = user;
    dg_status(d, st);
    d->n++;
    return 0;
}

static void expect_dump_is(weft_store *s, const weft__buf *want, const char *what, long k)
{
    weft__buf now = {0};
    dump(s, NULL, &now);
    cr_assert(now.len == want->len && memcmp(now.ptr, want->ptr, now.len) == 0,
              "%s k=%ld: store not in the expected state", what, k);
    weft__buf_free(&now);
}

Test(alloc_api, peers, .init = setup, .fini = teardown, .timeout = 300)
{
    weft_store *s = store_open(dir, 0, NULL), *o = store_open(dir2, 0, NULL),
               *r = store_open(dir3, 0, NULL);
    fill(s, o);
    char card[WEFT_CARD_MAX], rcard[WEFT_CARD_MAX];
    OK(weft_card(o, "tcp://127.0.0.1:9", card, sizeof card));
    OK(weft_card(r, NULL, rcard, sizeof rcard));
    weft__buf without = {0}, with = {0};
    dump(s, NULL, &without);
    OK(weft_peer_add(s, "bob", card, NULL, WEFT_ROLE_DEVICE));
    dump(s, NULL, &with);
    OK(weft_peer_rm(s, "bob"));
    expect_dump_is(s, &without, "weft_peer_rm", -1);
    sweep sw;
    SWEEP(sw, "weft_peer_add")
    {
        sweep_arm(&sw);
        int rc = weft_peer_add(s, "bob", card, NULL, WEFT_ROLE_DEVICE);
        if (sweep_failed(&sw, rc)) {
            expect_dump_is(s, &without, "weft_peer_add", sw.k);
            continue;
        }
        expect_dump_is(s, &with, "weft_peer_add", sw.k);
        if (sw.injected) {
            OK(weft_peer_rm(s, "bob"));
        }
    }
    SWEEP(sw, "weft_peer_rm")
    {
        sweep_arm(&sw);
        int rc = weft_peer_rm(s, "bob");
        if (sweep_failed(&sw, rc)) {
            expect_dump_is(s, &with, "weft_peer_rm", sw.k);
            continue;
        }
        expect_dump_is(s, &without, "weft_peer_rm", sw.k);
        if (sw.injected) {
            OK(weft_peer_add(s, "bob", card, NULL, WEFT_ROLE_DEVICE));
        }
    }
    OK(weft_peer_add(s, "bob", card, NULL, WEFT_ROLE_DEVICE));
    OK(weft_peer_add(s, "relay", rcard, "tcp://127.0.0.1:7", WEFT_ROLE_RELAY));
    /* An acknowledged vector for bob: pending counts walk part of the log. */
    weft_txn *t;
    weft_vv *acked;
    OK(weft_vv_new(&acked));
    OK(weft_vv_set(acked, weft_store_device(o), 1));
    OK(weft_vv_set(acked, weft_store_device(s), 3));
    OK(weft_txn_begin(s, 0, &t));
    uint8_t bobkey[WEFT_KEY_BYTES];
    char addr[WEFT_ENDPOINT_MAX + 1];
    OK(weft_card_parse(card, bobkey, addr));
    OK(weft__peer_acked_merge(t, bobkey, acked));
    weft_refusal ref[3];
    memset(ref, 0, sizeof ref);
    for (int i = 0; i < 3; i++) {
        ref[i].public_key[0] = (uint8_t)(i + 1);
        snprintf(ref[i].addr, sizeof ref[i].addr, "127.0.0.%d", i + 1);
        ref[i].at_ms = 1000u + (uint64_t)i;
    }
    OK(weft__refusals_add(t, 5, ref, 3));
    OK(weft_txn_commit(&t));
    weft_vv_destroy(&acked);
    weft__buf state = {0};
    dump(s, NULL, &state);

    weft_peer_status want;
    OK(weft_peer_get(s, "bob", &want));
    cr_assert_gt(want.pending_ops, 0);
    digest wd = {0, 1};
    dg_status(&wd, &want);
    SWEEP(sw, "weft_peer_get")
    {
        weft_peer_status st;
        memset(&st, 0xa5, sizeof st);
        sweep_arm(&sw);
        int rc = weft_peer_get(s, "bob", &st);
        if (sweep_failed(&sw, rc)) {
            cr_assert(all_bytes(&st, sizeof st, 0xa5), "weft_peer_get wrote on failure");
            continue;
        }
        digest d = {0, 1};
        dg_status(&d, &st);
        cr_assert(dg_eq(&d, &wd), "weft_peer_get k=%ld: wrong status", sw.k);
    }
    digest ld = {0, 0};
    cr_assert_eq(weft_peer_list(s, status_cb, &ld), 2);
    SWEEP(sw, "weft_peer_list")
    {
        digest d = {0, 0};
        sweep_arm(&sw);
        int rc = weft_peer_list(s, status_cb, &d);
        if (sweep_failed(&sw, rc)) {
            cr_assert_eq(d.n, 0, "weft_peer_list k=%ld: callback ran before a failure", sw.k);
            continue;
        }
        cr_assert(rc == 2 && dg_eq(&d, &ld), "weft_peer_list k=%ld: wrong list", sw.k);
    }
    SWEEP(sw, "weft_refusals")
    {
        weft_refusal out[4];
        size_t n = 99;
        uint64_t total = 99;
        memset(out, 0xa5, sizeof out);
        sweep_arm(&sw);
        int rc = weft_refusals(s, out, 4, &n, &total);
        if (sweep_failed(&sw, rc)) {
            cr_assert(n == 99 && total == 99 && all_bytes(out, sizeof out, 0xa5),
                      "weft_refusals wrote on failure");
            continue;
        }
        cr_assert(n == 3 && total == 5 && out[0].at_ms == 1002 && out[2].at_ms == 1000);
    }
    SWEEP(sw, "weft_card, weft_card_parse, weft_device_of, weft_peer_state_name")
    {
        char c2[WEFT_CARD_MAX];
        uint8_t pk[WEFT_KEY_BYTES];
        sweep_arm(&sw);
        int rc = weft_card(o, "tcp://127.0.0.1:9", c2, sizeof c2);
        rc = rc ? rc : weft_card_parse(c2, pk, addr);
        uint64_t dev = weft_device_of(pk);
        const char *nm = weft_peer_state_name(WEFT_PEER_LIVE);
        cr_assert(!sweep_failed(&sw, rc));
        cr_assert_eq(sw.made, 0, "identity calls allocate");
        cr_assert(dev == weft_store_device(o) && strcmp(nm, "live") == 0 && strcmp(c2, card) == 0 &&
                  strcmp(addr, "tcp://127.0.0.1:9") == 0);
    }
    expect_dump_is(s, &state, "peer reads", 0);
    weft__buf_free(&state);
    weft__buf_free(&with);
    weft__buf_free(&without);
    weft_store_close(&s);
    weft_store_close(&o);
    weft_store_close(&r);
    log_totals("peers");
}

/* ---------------------------------------------------------------- no allocation */

Test(alloc_api, calls_that_never_allocate, .init = setup, .fini = teardown)
{
    sweep sw;
    SWEEP(sw, "weft_version, weft_strerror, weft_err_name, weft_last_error, weft_id_cmp, "
              "weft_hlc_ms, weft_hlc_counter, weft_options_init, weft_sync_options_init")
    {
        weft_options o;
        weft_sync_options so;
        sweep_arm(&sw);
        const char *v = weft_version(), *e = weft_strerror(WEFT_ENOMEM),
                   *n = weft_err_name(WEFT_ENOMEM), *l = weft_last_error();
        weft_id a = {1, 2}, b = {1, 3};
        int c = weft_id_cmp(a, b);
        uint64_t ms = weft_hlc_ms((uint64_t)5 << 16 | 9);
        uint32_t ctr = weft_hlc_counter((uint64_t)5 << 16 | 9);
        weft_options_init(&o);
        weft_sync_options_init(&so);
        sweep_failed(&sw, 0);
        cr_assert_eq(sw.made, 0);
        cr_assert(v != NULL && e != NULL && n != NULL && l != NULL && c < 0 && ms == 5 &&
                  ctr == 9 && o.flags == 0 && so.connect == 1);
    }
    log_totals("calls_that_never_allocate");
}
