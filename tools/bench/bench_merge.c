/* bench_merge.c - the `merge` workload of weft-bench: two diverged
 * replicas of the notes store exchange what the other lacks.
 *
 * A is the notes workload's store (N notes, 5 edits each); B a copy of its
 * log. Then, as tools/bench/peers/common.mjs's mergeEdits: A edits notes
 * 0..E-1 and B notes E/2..3E/2-1 (E = N/2), each the sixth edit of the
 * notes plan (field (i + 5) % 3), B's values differing ("... b", +1 ms), so
 * the two sides write the same field of E/2 notes concurrently. Each edit
 * is its own durable transaction (as an app makes them; not timed).
 * Timed: the merge, both directions in this process: a read txn on one
 * side streams the ops the other's vector lacks (weft_ops_since) into
 * weft_apply in one write txn on the other, committed durably. Then the
 * vectors must be equal and both sides must list the same E/2 conflicts.
 * 3 merges of fresh pairs; the median is reported, with the op payload
 * bytes exchanged. Target (issue: performance): at least 10x faster than
 * Automerge's merge of the same edits (tools/bench/compare.sh).
 *
 * Invariants: uses only the public API; a failure exits through
 * weft__bench_die.
 * Thread-safety: single-threaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define T_BASE 1700000000000ull

struct collect {
    weft_op *v;
    size_t n, cap;
    uint64_t bytes;
};

static int collect_cb(const weft_op *op, void *user)
{
    struct collect *c = user;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        weft_op *v = realloc(c->v, cap * sizeof *v);
        if (v == NULL) {
            weft__bench_die("out of memory collecting ops");
        }
        c->v = v;
        c->cap = cap;
    }
    weft_op o = *op;
    uint8_t *p = weft__bench_calloc(op->payload.len, 1);
    memcpy(p, op->payload.ptr, op->payload.len);
    o.payload.ptr = p;
    c->v[c->n++] = o;
    c->bytes += op->payload.len;
    return 0;
}

static void collect_free(struct collect *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free((void *)c->v[i].payload.ptr);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* Send @p from what @p to lacks; returns the payload bytes. */
static uint64_t one_way(weft_store *from, weft_store *to)
{
    weft_txn *tt = NULL, *tf = NULL;
    weft_vv *have = NULL;
    struct collect c = {0};
    WCHECK(weft_txn_begin(to, 0, &tt));
    WCHECK(weft_store_vv(tt, &have));
    WCHECK(weft_txn_begin(from, WEFT_TXN_RDONLY, &tf));
    WCHECK(weft_ops_since(tf, have, collect_cb, &c));
    weft_txn_abort(&tf);
    weft_apply_result res;
    WCHECK(weft_apply(tt, c.v, c.n, &res));
    if (res.applied != c.n) {
        weft__bench_die("merge: %zu of %zu ops applied", res.applied, c.n);
    }
    WCHECK(weft_txn_commit(&tt));
    weft_vv_destroy(&have);
    uint64_t bytes = c.bytes;
    collect_free(&c);
    return bytes;
}

static void diverge(weft_store *s, size_t n, size_t e, int side, const struct pools *p)
{
    static const char *const fields[3] = {"title", "body", "updatedAt"};
    size_t start = side == 0 ? 0 : e / 2;
    char val[512];
    for (size_t j = 0; j < e; j++) {
        size_t i = (start + j) % n, k = 5, f = (i + k) % 3;
        char id[16];
        weft__bench_fmt_id(id, "n", i, 5);
        weft_txn *t = NULL;
        WCHECK(weft_txn_begin(s, 0, &t));
        if (f == 2) {
            WCHECK(
                weft_set_int(t, "notes", id, fields[f],
                             (int64_t)(T_BASE + 86400000ull * (k + 1) + i * 1000 + (side != 0))));
        } else {
            const struct val *v = f == 0 ? &p->title[(i + 17 * (k + 1)) % WEFT_BENCH_POOL]
                                         : &p->body[(i + 31 * (k + 1)) % WEFT_BENCH_POOL];
            snprintf(val, sizeof val, "%s%s", v->text, side != 0 ? " b" : "");
            WCHECK(weft_set_str(t, "notes", id, fields[f], val));
        }
        WCHECK(weft_txn_commit(&t));
    }
}

static int count_conflict(const weft_conflict *c, void *user)
{
    (void)c;
    (*(size_t *)user)++;
    return 0;
}

void weft__bench_merge(const weft_bench_cfg *c)
{
    enum { REPS = 3 };
    const size_t n = c->quick ? 1000 : 10000, e = n / 2;
    char *dir = weft__bench_make_tmp(c, "merge");
    char *base = weft__bench_make_subdir(dir, "base");
    struct pools p;
    weft__bench_pools_init(&p, 1);
    weft__bench_progress(c, "merge: building the base");
    struct build_stats bs;
    weft__bench_notes_build(base, n, &p, &bs);
    double ms[REPS];
    uint64_t bytes = 0, ops_base = bs.ops;
    size_t conflicts = 0;
    for (int r = 0; r < REPS; r++) {
        char an[16], bn[16];
        snprintf(an, sizeof an, "a%d", r);
        snprintf(bn, sizeof bn, "b%d", r);
        char *adir = weft__bench_make_subdir(dir, an), *bdir = weft__bench_make_subdir(dir, bn);
        weft__bench_progress(c, "merge: copying and diverging a pair");
        weft__bench_store_copy(base, adir);
        weft__bench_store_copy(base, bdir);
        weft_store *a = NULL, *b = NULL;
        WCHECK(weft_store_open(adir, NULL, &a));
        WCHECK(weft_store_open(bdir, NULL, &b));
        diverge(a, n, e, 0, &p);
        diverge(b, n, e, 1, &p);
        uint64_t t0 = weft__bench_now_ns();
        bytes = one_way(a, b);
        bytes += one_way(b, a);
        ms[r] = (double)(weft__bench_now_ns() - t0) / 1e6;
        /* converged: equal vectors, the same conflicts on both sides */
        size_t ca = 0, cb = 0;
        weft_txn *ta = NULL, *tb = NULL;
        weft_vv *va = NULL, *vb = NULL;
        WCHECK(weft_txn_begin(a, WEFT_TXN_RDONLY, &ta));
        WCHECK(weft_txn_begin(b, WEFT_TXN_RDONLY, &tb));
        WCHECK(weft_store_vv(ta, &va));
        WCHECK(weft_store_vv(tb, &vb));
        WCHECK(weft_conflicts(ta, "notes", count_conflict, &ca));
        WCHECK(weft_conflicts(tb, "notes", count_conflict, &cb));
        size_t nv = weft_vv_count(va);
        int same = nv == weft_vv_count(vb);
        for (size_t i = 0; same && i < nv; i++) {
            uint64_t d, h;
            WCHECK(weft_vv_entry(va, i, &d, &h));
            same = weft_vv_get(vb, d) == h;
        }
        if (!same || ca != cb || ca != e / 2) {
            weft__bench_die(
                "merge: not converged (vectors %s, conflicts %zu and %zu, expected %zu)",
                same ? "equal" : "differ", ca, cb, e / 2);
        }
        conflicts = ca;
        weft_vv_destroy(&va);
        weft_vv_destroy(&vb);
        weft_txn_abort(&ta);
        weft_txn_abort(&tb);
        weft_store_close(&a);
        weft_store_close(&b);
        free(adir);
        free(bdir);
    }
    double sorted[REPS];
    memcpy(sorted, ms, sizeof sorted);
    double med = weft__bench_quantile(sorted, REPS, 0.5); /* sorts */

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "merge");
    jb_open(&j, "params");
    jb_u64(&j, "notes", n);
    jb_u64(&j, "base_ops", ops_base);
    jb_u64(&j, "edits_per_side", e);
    jb_u64(&j, "overlap_notes", e / 2);
    jb_u64(&j, "reps", REPS);
    jb_close(&j);
    jb_num(&j, "merge_ms", med, 2);
    jb_num(&j, "merge_ms_min", sorted[0], 2);
    jb_u64(&j, "payload_bytes", bytes);
    jb_u64(&j, "ops_exchanged", 2 * e);
    jb_u64(&j, "conflicts", conflicts);
    jb_close(&j);
    char sum[512];
    snprintf(sum, sizeof sum,
             "merge: 2 x %zu edits on %zu notes: %.1f ms (both ways, durable), %llu payload bytes, "
             "%zu conflicts on both sides",
             e, n, med, (unsigned long long)bytes, conflicts);
    weft__bench_emit(c, &j, sum);
    free(base);
    weft__bench_pools_free(&p);
    weft__bench_drop_tmp(c, dir);
}
