/* helpers.c - fixtures of the store tests (see helpers.h).
 *
 * Invariants: none.
 * Thread-safety: single-threaded tests only.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/tmpdir.h"

char *tmpdir_new(void)
{
    return tmpdir_make("store");
}

void rm_rf(const char *path)
{
    rm_tree(path);
}

char *store_dirs[STORE_DIRS];

void store_dirs_setup(void)
{
    for (int i = 0; i < STORE_DIRS; i++) {
        store_dirs[i] = tmpdir_new();
    }
}

void store_dirs_teardown(void)
{
    for (int i = 0; i < STORE_DIRS; i++) {
        rm_rf(store_dirs[i]);
        free(store_dirs[i]);
        store_dirs[i] = NULL;
    }
}

uint64_t fake_clock(void *user)
{
    return *(uint64_t *)user;
}

weft_store *store_open(const char *dir, size_t map_size, uint64_t *fake_now)
{
    weft_options o;
    weft_options_init(&o);
    o.flags = WEFT_OPEN_CREATE;
    o.map_size = map_size;
    if (fake_now != NULL) {
        o.now_ms = fake_clock;
        o.now_user = fake_now;
    }
    weft_store *s = NULL;
    OK(weft_store_open(dir, &o, &s));
    return s;
}

void dump(weft_store *s, const char *dbs, weft__buf *out)
{
    static const char *all = "ops,fields,counters,entities,conflicts,vv,meta,peers";
    char list[128];
    snprintf(list, sizeof list, "%s", dbs ? dbs : all);
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    for (char *save = NULL, *db = strtok_r(list, ",", &save); db; db = strtok_r(NULL, ",", &save)) {
        weft__buf_put(out, db, strlen(db) + 1);
        OK(weft__store_dump(t, db, out));
    }
    weft_txn_abort(&t);
}

int dump_eq(weft_store *a, weft_store *b, const char *dbs)
{
    weft__buf x = {0}, y = {0};
    dump(a, dbs, &x);
    dump(b, dbs, &y);
    int eq = x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0;
    weft__buf_free(&x);
    weft__buf_free(&y);
    return eq;
}

size_t mp_str(uint8_t *buf, size_t cap, const char *s)
{
    weft__buf b = {0};
    OK(weft__mp_put_str(&b, s, strlen(s)));
    cr_assert_leq(b.len, cap);
    memcpy(buf, b.ptr, b.len);
    size_t n = b.len;
    weft__buf_free(&b);
    return n;
}

size_t mp_int(uint8_t *buf, size_t cap, int64_t v)
{
    weft__buf b = {0};
    OK(weft__mp_put_int(&b, v));
    cr_assert_leq(b.len, cap);
    memcpy(buf, b.ptr, b.len);
    size_t n = b.len;
    weft__buf_free(&b);
    return n;
}

int opvec_collect(const weft_op *op, void *user)
{
    opvec *o = user;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        cr_assert_not_null(o->v);
    }
    void *p = malloc(op->payload.len ? op->payload.len : 1);
    cr_assert_not_null(p);
    memcpy(p, op->payload.ptr, op->payload.len);
    o->v[o->n] = *op;
    o->v[o->n].payload.ptr = p;
    o->n++;
    return 0;
}

void opvec_free(opvec *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free((void *)o->v[i].payload.ptr);
    }
    free(o->v);
    memset(o, 0, sizeof *o);
}

void ops_missing(weft_store *from, weft_store *to, opvec *out)
{
    weft_txn *t;
    weft_vv *vv;
    OK(weft_txn_begin(to, WEFT_TXN_RDONLY, &t));
    OK(weft_store_vv(t, &vv));
    weft_txn_abort(&t);
    OK(weft_txn_begin(from, WEFT_TXN_RDONLY, &t));
    int n = weft_ops_since(t, vv, opvec_collect, out);
    cr_assert_geq(n, 0, "ops_since: %s", weft_last_error());
    weft_txn_abort(&t);
    weft_vv_destroy(&vv);
}

uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void apply_batches(weft_store *to, const opvec *o, size_t maxbatch, uint64_t *rng)
{
    size_t i = 0;
    while (i < o->n) {
        size_t k = 1 + rng_next(rng) % maxbatch;
        if (k > o->n - i) {
            k = o->n - i;
        }
        weft_txn *t;
        weft_apply_result r;
        OK(weft_txn_begin(to, 0, &t));
        OK(weft_apply(t, o->v + i, k, &r));
        cr_assert_eq(r.deferred, 0);
        OK(weft_txn_commit(&t));
        i += k;
    }
}

void sync_one(weft_store *from, weft_store *to, size_t maxbatch, uint64_t *rng)
{
    opvec o = {0};
    ops_missing(from, to, &o);
    apply_batches(to, &o, maxbatch, rng);
    opvec_free(&o);
}
