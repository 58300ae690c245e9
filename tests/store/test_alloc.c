/* test_alloc.c - allocation failure: for several public calls, make the
 * k-th allocation fail for every k until the call succeeds; each failing run
 * must return WEFT_ENOMEM cleanly and leave the store consistent (its dump
 * unchanged, and writable afterwards).
 *
 * Invariants: each test uses its own store directory and removes it.
 * Thread-safety: single-threaded (the failure hook is process-wide).
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"

static char *dir, *dir2;
static void setup(void)
{
    dir = tmpdir_new();
    dir2 = tmpdir_new();
}
static void teardown(void)
{
    weft__alloc_fail_after(-1);
    rm_rf(dir);
    rm_rf(dir2);
    free(dir);
    free(dir2);
}

#define SWEEP_MAX 2000

static void fill(weft_store *s)
{
    weft_txn *t;
    uint8_t v[16];
    OK(weft_txn_begin(s, 0, &t));
    for (int i = 0; i < 20; i++) {
        char e[16];
        snprintf(e, sizeof e, "e%d", i % 4);
        OK(weft_set_int(t, "c", e, "x", i));
        OK(weft_inc(t, "c", e, "n", i, NULL));
        OK(weft_add(t, "c", e, "tags", v, mp_int(v, sizeof v, i % 3), NULL));
    }
    OK(weft_del(t, "c", "e1", NULL));
    OK(weft_txn_commit(&t));
}

Test(store, alloc_fail_open, .init = setup, .fini = teardown)
{
    int k;
    weft_options o;
    weft_options_init(&o);
    o.flags = WEFT_OPEN_CREATE;
    for (k = 0; k < SWEEP_MAX; k++) {
        weft_store *s = NULL;
        weft__alloc_fail_after(k);
        int rc = weft_store_open(dir, &o, &s);
        weft__alloc_fail_after(-1);
        if (rc == 0) {
            weft_store_close(&s);
            break;
        }
        cr_assert_eq(rc, WEFT_ENOMEM, "k=%d: %s (%s)", k, weft_err_name(rc), weft_last_error());
        cr_assert_null(s);
    }
    cr_assert_lt(k, SWEEP_MAX);
    cr_assert_gt(k, 0);
    weft_store *s = store_open(dir, 0, NULL);
    fill(s);
    weft_store_close(&s);
}

static void sweep_write(weft_store *s, int which, const opvec *batch)
{
    weft__buf before = {0}, after = {0};
    dump(s, NULL, &before);
    int k;
    for (k = 0; k < SWEEP_MAX; k++) {
        weft_txn *t;
        OK(weft_txn_begin(s, 0, &t));
        weft__alloc_fail_after(k);
        int rc;
        if (which == 0) {
            rc = weft_set_str(t, "c", "e0", "x", "a new value");
        } else if (which == 1) {
            rc = weft_del(t, "c", "e2", NULL);
        } else {
            weft_apply_result r;
            rc = weft_apply(t, batch->v, batch->n, &r);
        }
        weft__alloc_fail_after(-1);
        if (rc == 0) {
            OK(weft_txn_commit(&t));
            break;
        }
        cr_assert_eq(rc, WEFT_ENOMEM, "k=%d: %s (%s)", k, weft_err_name(rc), weft_last_error());
        weft_txn_abort(&t);
        weft__buf_reset(&after);
        dump(s, NULL, &after);
        cr_assert(after.len == before.len && memcmp(after.ptr, before.ptr, after.len) == 0,
                  "k=%d: store changed by a failed call", k);
    }
    cr_assert_lt(k, SWEEP_MAX);
    weft__buf_free(&before);
    weft__buf_free(&after);
}

Test(store, alloc_fail_writes, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL), *b = store_open(dir2, 0, NULL);
    fill(s);
    sweep_write(s, 0, NULL);
    sweep_write(s, 1, NULL);
    opvec o = {0};
    ops_missing(s, b, &o);
    sweep_write(b, 2, &o);
    cr_assert(dump_eq(s, b, "ops,fields,counters,entities,conflicts,vv"));
    opvec_free(&o);
    weft_store_close(&s);
    weft_store_close(&b);
}

Test(store, alloc_fail_reads, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    fill(s);
    for (int which = 0; which < 2; which++) {
        int k, expect = -1;
        for (k = 0; k < SWEEP_MAX; k++) {
            weft_txn *t;
            OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
            opvec o = {0};
            weft__alloc_fail_after(k);
            int rc = which == 0 ? weft_scan(t, "c", NULL, 0, NULL, NULL)
                                : weft_ops_since(t, NULL, opvec_collect, &o);
            weft__alloc_fail_after(-1);
            weft_txn_abort(&t);
            opvec_free(&o);
            if (rc >= 0) {
                expect = rc;
                break;
            }
            cr_assert_eq(rc, WEFT_ENOMEM, "k=%d: %s", k, weft_err_name(rc));
        }
        cr_assert_lt(k, SWEEP_MAX);
        cr_assert_eq(expect, which == 0 ? 3 : 61);
    }
    weft_store_close(&s);
}
