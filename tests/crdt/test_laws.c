/* test_laws.c - the merge laws of field state, on seeded random op sets.
 *
 * Each case simulates 2-5 devices editing one entity (a register field, a
 * counter field, a set field, ops of one kind sometimes hitting another
 * kind's field, and deletes of the entity). Devices exchange what they know
 * at random, so ops are concurrent or causally related; every op names in
 * prev only what its device has seen, and its hlc is above every hlc its
 * device has seen. The op set is then applied to fresh states in several
 * random causal orders (random topological sorts), with duplicates, random
 * batch boundaries (each a trip through the stored record), the entity
 * tombstone rising as deletes arrive. Counter increments are rows kept
 * outside the field state (the store's `counters` database): the harness
 * keeps them in a sorted array per field, adds a row when weft__fstate_apply
 * says an INC counts, and on a delete removes the rows <= the tombstone
 * oldest first through weft__fstate_counter_sub, as the store does. The laws:
 *   - every order gives byte-identical records and rows (commutative,
 *     associative, idempotent under the store's op-log dedup, see below);
 *   - the state matches an oracle computed from the op set alone: register
 *     heads are the SET ops above the tombstone named in no prev; the counter
 *     rows are exactly the INCs above it, and the record's summary holds
 *     their wrapped sum, number and greatest id; the set holds the elements
 *     with an add above it that no REM names;
 *   - a write by a device that has seen everything (prev = all heads) leaves
 *     one head: the conflict is gone.
 *
 * Duplicates: a SET, ADD or REM applied twice in a row changes nothing (the
 * fstate contract: "an op already present changes nothing"). An INC is not
 * recognised (its id is only in the rows), and a redelivery after an op was
 * superseded is not either: both are filtered, as in the store, by the op
 * log (the harness keeps the set of applied ids).
 *
 * Environment: WEFT_SEED=<n> sets the first case's seed (case i uses seed
 * n + i, and every failure message prints it), WEFT_CASES=<n> the number of
 * cases (default 10000). Replay one failing case with
 * WEFT_SEED=<its seed> WEFT_CASES=1.
 *
 * Invariants: none (tests).
 * Thread-safety: criterion runs each test in its own process.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "crdt/crdt_int.h"
#include "tests/splitmix.h"

#define MAXOPS  64
#define MAXDEV  5
#define NFIELDS 3
#define NORDERS 4

/* ---------------------------------------------------------------- rng */

static uint64_t rs;

static uint64_t rnd(void)
{
    return splitmix_next(&rs);
}

static unsigned below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

static bool chance(unsigned percent)
{
    return below(100) < percent;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static bool same(const weft__buf *a, const weft__buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* ---------------------------------------------------------------- model */

typedef struct gop {
    weft_id id;
    int dev;
    weft__op_kind kind;
    int field;
    uint8_t val[16];
    size_t vlen;
    int64_t delta;
    uint8_t prev[WEFT__ID_BYTES * MAXOPS];
    uint32_t nprev;
    int named[MAXOPS]; /* indices of the ops prev names */
    int deps[MAXOPS + 1];
    int ndeps;
    weft__buf payload;
    weft__op op; /* decoded from payload */
} gop;

typedef struct device {
    uint64_t devid;
    uint64_t maxhlc;
    bool known[MAXOPS];
    int last; /* its latest op, -1 */
} device;

typedef struct world {
    uint64_t seed;
    int nops, ndev;
    gop ops[MAXOPS + 1]; /* + 1: the resolving write */
    device dev[MAXDEV];
} world;

static const char *const field_names[NFIELDS] = {"title", "likes", "tags"};

static int id_cmp(weft_id a, weft_id b)
{
    return weft_id_cmp(a, b);
}

static bool names(const gop *o, weft_id id)
{
    for (uint32_t i = 0; i < o->nprev; i++) {
        if (id_cmp(weft__id_get(o->prev + i * WEFT__ID_BYTES), id) == 0) {
            return true;
        }
    }
    return false;
}

/* The highest DEL id among ops selected by @p in (NULL: all). */
static weft_id tomb_of(const world *w, const bool *in)
{
    weft_id t = {0, 0};
    for (int i = 0; i < w->nops; i++) {
        if ((in == NULL || in[i]) && w->ops[i].kind == WEFT__OP_DEL &&
            id_cmp(w->ops[i].id, t) > 0) {
            t = w->ops[i].id;
        }
    }
    return t;
}

/* Register heads of @p field among ops selected by @p in: SET ops above the
 * tombstone named in no selected op's prev. Writes indices, returns count. */
static int heads_of(const world *w, const bool *in, int field, int *out)
{
    weft_id tomb = tomb_of(w, in);
    int n = 0;
    for (int i = 0; i < w->nops; i++) {
        const gop *o = &w->ops[i];
        if ((in && !in[i]) || o->kind != WEFT__OP_SET || o->field != field ||
            id_cmp(o->id, tomb) <= 0) {
            continue;
        }
        bool named = false;
        for (int j = 0; j < w->nops && !named; j++) {
            named = (in == NULL || in[j]) && j != i && names(&w->ops[j], o->id);
        }
        if (!named) {
            out[n++] = i;
        }
    }
    return n;
}

/* Live adds of element @p val in @p field: ADDs above the tombstone that no
 * selected REM names. */
static int adds_of(const world *w, const bool *in, int field, const uint8_t *val, size_t vlen,
                   int *out)
{
    weft_id tomb = tomb_of(w, in);
    int n = 0;
    for (int i = 0; i < w->nops; i++) {
        const gop *o = &w->ops[i];
        if ((in && !in[i]) || o->kind != WEFT__OP_ADD || o->field != field || o->vlen != vlen ||
            memcmp(o->val, val, vlen) != 0 || id_cmp(o->id, tomb) <= 0) {
            continue;
        }
        bool removed = false;
        for (int j = 0; j < w->nops && !removed; j++) {
            const gop *r = &w->ops[j];
            removed = (in == NULL || in[j]) && r->kind == WEFT__OP_REM && r->field == field &&
                      names(r, o->id);
        }
        if (!removed) {
            out[n++] = i;
        }
    }
    return n;
}

static void sort_idx_by_id(const world *w, int *idx, int n)
{
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && id_cmp(w->ops[idx[j - 1]].id, w->ops[idx[j]].id) > 0; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    }
}

static void set_prev(world *w, gop *o, int *idx, int n)
{
    sort_idx_by_id(w, idx, n);
    o->nprev = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        weft__id_put(o->prev + i * WEFT__ID_BYTES, w->ops[idx[i]].id);
        o->named[i] = idx[i];
    }
}

/* Small canonical values: ints and short strings, from a small pool so that
 * set elements are added more than once. */
static size_t gen_value(uint8_t *v, unsigned pool)
{
    weft__buf b = {0};
    unsigned k = below(pool);
    int rc;
    if (k % 3 == 0) {
        rc = weft__mp_put_int(&b, (int64_t)k * 1000 - 2000);
    } else if (k % 3 == 1) {
        char s[16];
        snprintf(s, sizeof s, "t%u", k);
        rc = weft__mp_put_str(&b, s, strlen(s));
    } else {
        rc = weft__mp_put_array(&b, 1);
        if (rc == 0) {
            rc = weft__mp_put_uint(&b, k);
        }
    }
    cr_assert_eq(rc, 0);
    cr_assert_leq(b.len, 16);
    memcpy(v, b.ptr, b.len);
    size_t n = b.len;
    weft__buf_free(&b);
    return n;
}

/* Encode the op and decode it back: what the fstate sees comes off the wire. */
static void seal(world *w, gop *o)
{
    weft__op op;
    memset(&op, 0, sizeof op);
    op.kind = o->kind;
    op.coll = (weft_bytes){"notes", 5};
    op.entity = (weft_bytes){"n1", 2};
    if (o->kind != WEFT__OP_DEL) {
        op.field = (weft_bytes){field_names[o->field], strlen(field_names[o->field])};
    }
    op.value = (weft_bytes){o->val, o->vlen};
    op.delta = o->delta;
    op.prev = o->prev;
    op.nprev = o->nprev;
    memset(&o->payload, 0, sizeof o->payload);
    cr_assert_eq(weft__op_encode(&op, &o->payload), 0, "seed %llu: encode: %s",
                 (unsigned long long)w->seed, weft_last_error());
    cr_assert_eq(weft__op_decode(o->payload.ptr, o->payload.len, &o->op), 0,
                 "seed %llu: decode: %s", (unsigned long long)w->seed, weft_last_error());
}

static void gen(world *w)
{
    w->ndev = 2 + (int)below(MAXDEV - 1);
    w->nops = 4 + (int)below(MAXOPS - 4);
    uint64_t base = 1000 + below(1000);
    for (int d = 0; d < w->ndev; d++) {
        memset(&w->dev[d], 0, sizeof w->dev[d]);
        w->dev[d].devid = 1 + (uint64_t)below(3) * 10 + (uint64_t)d; /* distinct, shuffled order */
        w->dev[d].maxhlc = base + below(4);
        w->dev[d].last = -1;
    }
    int heads[MAXOPS], adds[MAXOPS];
    for (int i = 0; i < w->nops; i++) {
        /* Exchange knowledge: one way or both, sometimes several times. */
        while (chance(35)) {
            int a = (int)below((unsigned)w->ndev), b = (int)below((unsigned)w->ndev);
            for (int both = 0; both < (chance(50) ? 2 : 1); both++) {
                device *to = &w->dev[both ? b : a], *from = &w->dev[both ? a : b];
                for (int j = 0; j < i; j++) {
                    to->known[j] |= from->known[j];
                }
                if (from->maxhlc > to->maxhlc) {
                    to->maxhlc = from->maxhlc;
                }
            }
        }
        int d = (int)below((unsigned)w->ndev);
        device *dv = &w->dev[d];
        gop *o = &w->ops[i];
        memset(o, 0, offsetof(gop, payload));
        o->dev = d;
        o->id.hlc = dv->maxhlc + 1 + (chance(30) ? below(3) : 0);
        o->id.device = dv->devid;
        unsigned k = below(100);
        o->kind = k < 35   ? WEFT__OP_SET
                  : k < 52 ? WEFT__OP_INC
                  : k < 74 ? WEFT__OP_ADD
                  : k < 97 ? WEFT__OP_REM
                           : WEFT__OP_DEL;
        o->field = o->kind == WEFT__OP_SET ? 0 : o->kind == WEFT__OP_INC ? 1 : 2;
        if (o->kind != WEFT__OP_DEL && chance(8)) {
            o->field = (int)below(NFIELDS); /* a kind on another kind's field */
        }
        if (o->kind == WEFT__OP_REM) {
            /* Remove an element this device sees, naming the adds it sees. */
            int cand[MAXOPS], nc = 0;
            for (int j = 0; j < i; j++) {
                if (dv->known[j] && w->ops[j].kind == WEFT__OP_ADD && w->ops[j].field == o->field) {
                    cand[nc++] = j;
                }
            }
            int n = 0;
            if (nc > 0) {
                const gop *e = &w->ops[cand[below((unsigned)nc)]];
                memcpy(o->val, e->val, e->vlen);
                o->vlen = e->vlen;
                n = adds_of(w, dv->known, o->field, o->val, o->vlen, adds);
                if (n > 1 && chance(20)) {
                    n = 1 + (int)below((unsigned)n - 1); /* saw only some of them */
                }
            }
            if (n == 0) {
                o->kind = WEFT__OP_ADD; /* nothing to remove: add instead */
            } else {
                set_prev(w, o, adds, n);
            }
        }
        if (o->kind == WEFT__OP_SET) {
            o->vlen = gen_value(o->val, 1000);
            set_prev(w, o, heads, heads_of(w, dv->known, o->field, heads));
        } else if (o->kind == WEFT__OP_ADD) {
            o->vlen = gen_value(o->val, 5);
        } else if (o->kind == WEFT__OP_INC) {
            unsigned r = below(20);
            o->delta = r == 0 ? INT64_MAX : r == 1 ? INT64_MIN : (int64_t)below(200) - 100;
        }
        o->ndeps = 0;
        for (uint32_t j = 0; j < o->nprev; j++) {
            o->deps[o->ndeps++] = o->named[j];
        }
        if (dv->last >= 0) {
            o->deps[o->ndeps++] = dv->last;
        }
        dv->known[i] = true;
        dv->maxhlc = o->id.hlc;
        dv->last = i;
        seal(w, o);
    }
}

static void free_world(world *w)
{
    for (int i = 0; i <= w->nops; i++) {
        weft__buf_free(&w->ops[i].payload);
    }
}

/* ---------------------------------------------------------------- replay */

typedef struct row { /* one counter increment, as a `counters` record */
    weft_id id;
    int64_t delta;
} row;

typedef struct replica {
    weft__fstate st[NFIELDS];
    row rows[NFIELDS][MAXOPS]; /* ascending id: the `counters` db of the field */
    int nrows[NFIELDS];
    weft__buf rec[NFIELDS][2]; /* the record the state was last decoded from, and a spare */
    int cur[NFIELDS];
    weft_id tomb;
    bool applied[MAXOPS + 1]; /* the op log */
} replica;

static void replica_init(replica *r)
{
    memset(r, 0, sizeof *r);
    for (int f = 0; f < NFIELDS; f++) {
        weft__fstate_init(&r->st[f]);
    }
}

static void replica_free(replica *r)
{
    for (int f = 0; f < NFIELDS; f++) {
        weft__fstate_free(&r->st[f]);
        weft__buf_free(&r->rec[f][0]);
        weft__buf_free(&r->rec[f][1]);
    }
}

/* A batch ends: write every field's record and read it back, as the store does. */
static void commit(const world *w, replica *r)
{
    for (int f = 0; f < NFIELDS; f++) {
        int nx = 1 - r->cur[f];
        weft__buf_reset(&r->rec[f][nx]);
        cr_assert_eq(weft__fstate_encode(&r->st[f], &r->rec[f][nx]), 0);
        cr_assert_eq(weft__fstate_decode(r->rec[f][nx].ptr, r->rec[f][nx].len, &r->st[f]), 0,
                     "seed %llu: decode of own record: %s", (unsigned long long)w->seed,
                     weft_last_error());
        r->cur[f] = nx;
    }
}

static unsigned long rows_pruned; /* counter rows removed by deletes, all cases */

static void apply_one(const world *w, replica *r, int i)
{
    const gop *o = &w->ops[i];
    if (r->applied[i]) {
        return; /* the store's op log skips a duplicate */
    }
    r->applied[i] = true;
    if (o->kind == WEFT__OP_DEL) {
        if (id_cmp(o->id, r->tomb) > 0) {
            r->tomb = o->id;
            for (int f = 0; f < NFIELDS; f++) {
                cr_assert_geq(weft__fstate_prune(&r->st[f], r->tomb), 0);
                /* The store's walk: rows from the oldest while id <= tomb. */
                int n = 0;
                while (n < r->nrows[f] && id_cmp(r->rows[f][n].id, r->tomb) <= 0) {
                    cr_assert_eq(weft__fstate_counter_sub(&r->st[f], r->rows[f][n].delta), 0,
                                 "seed %llu: counter summary disagrees with the rows",
                                 (unsigned long long)w->seed);
                    n++;
                }
                memmove(r->rows[f], r->rows[f] + n, (size_t)(r->nrows[f] - n) * sizeof(row));
                r->nrows[f] -= n;
                rows_pruned += (unsigned long)n;
            }
        }
        return;
    }
    weft__fstate *st = &r->st[o->field];
    int rc = weft__fstate_apply(st, o->id, &o->op, r->tomb);
    cr_assert(rc == 0 || rc == 1, "seed %llu: apply op %d gave %d", (unsigned long long)w->seed, i,
              rc);
    if (o->kind == WEFT__OP_INC && rc == 1) {
        /* The store puts the row (MDB_NOOVERWRITE: never there yet). */
        row *rw = r->rows[o->field];
        int n = r->nrows[o->field], pos = n;
        while (pos > 0 && id_cmp(rw[pos - 1].id, o->id) > 0) {
            pos--;
        }
        cr_assert(pos == 0 || id_cmp(rw[pos - 1].id, o->id) != 0, "seed %llu: row twice",
                  (unsigned long long)w->seed);
        memmove(rw + pos + 1, rw + pos, (size_t)(n - pos) * sizeof *rw);
        rw[pos] = (row){o->id, o->op.delta};
        r->nrows[o->field]++;
    } else if (o->kind == WEFT__OP_INC) {
        cr_assert_leq(id_cmp(o->id, r->tomb), 0, "seed %llu: a visible INC did not count",
                      (unsigned long long)w->seed);
    }
    if (o->kind != WEFT__OP_INC && chance(10)) {
        /* Applied again at once: nothing changes. */
        weft__buf a = {0}, b = {0};
        cr_assert_eq(weft__fstate_encode(st, &a), 0);
        cr_assert_eq(weft__fstate_apply(st, o->id, &o->op, r->tomb), 0,
                     "seed %llu: op %d applied twice changed the state",
                     (unsigned long long)w->seed, i);
        cr_assert_eq(weft__fstate_encode(st, &b), 0);
        cr_assert(same(&a, &b), "seed %llu", (unsigned long long)w->seed);
        weft__buf_free(&a);
        weft__buf_free(&b);
    }
}

/* A random causal order of all ops, with duplicates. Returns its length. */
static int random_order(const world *w, int *seq, int cap)
{
    bool placed[MAXOPS] = {false};
    int n = 0;
    for (int done = 0; done < w->nops; done++) {
        int ready[MAXOPS], nr = 0;
        for (int i = 0; i < w->nops; i++) {
            if (placed[i]) {
                continue;
            }
            bool ok = true;
            for (int j = 0; j < w->ops[i].ndeps && ok; j++) {
                ok = placed[w->ops[i].deps[j]];
            }
            if (ok) {
                ready[nr++] = i;
            }
        }
        cr_assert_gt(nr, 0, "seed %llu: no ready op", (unsigned long long)w->seed);
        int pick = ready[below((unsigned)nr)];
        placed[pick] = true;
        seq[n++] = pick;
        if (n < cap && chance(10)) {
            int dup = seq[below((unsigned)n)]; /* a duplicate of something already placed */
            seq[n++] = dup;
        }
    }
    return n;
}

/* Apply @p seq to a fresh replica with random batches; fill @p out with the
 * tombstone and, per field, the final record (prefixed by its length) and
 * the counter rows as the store keys them (id 16 | delta 8, big-endian). */
static void replay(const world *w, const int *seq, int n, replica *r, weft__buf *out)
{
    replica_init(r);
    for (int k = 0; k < n; k++) {
        apply_one(w, r, seq[k]);
        if (chance(30)) {
            commit(w, r);
        }
    }
    commit(w, r);
    uint8_t t[16];
    weft__id_put(t, r->tomb);
    weft__buf_put(out, t, sizeof t);
    for (int f = 0; f < NFIELDS; f++) {
        weft__buf *rec = &r->rec[f][r->cur[f]];
        uint8_t l[4];
        weft__be32_put(l, (uint32_t)rec->len);
        weft__buf_put(out, l, 4);
        weft__buf_put(out, rec->ptr, rec->len);
        weft__be32_put(l, (uint32_t)r->nrows[f]);
        weft__buf_put(out, l, 4);
        for (int k = 0; k < r->nrows[f]; k++) {
            uint8_t rb[WEFT__ID_BYTES + 8];
            weft__id_put(rb, r->rows[f][k].id);
            weft__be64_put(rb + WEFT__ID_BYTES, (uint64_t)r->rows[f][k].delta);
            weft__buf_put(out, rb, sizeof rb);
        }
    }
}

/* ---------------------------------------------------------------- oracle */

typedef struct stats {
    unsigned cases, conflicts, deletes, multikind, elems_removed;
} stats;

static void check_oracle(world *w, replica *r, stats *s)
{
    const uint64_t seed = w->seed;
    weft_id tomb = tomb_of(w, NULL);
    cr_assert_eq(id_cmp(r->tomb, tomb), 0, "seed %llu: tombstone", (unsigned long long)seed);
    s->deletes += tomb.hlc != 0;
    weft__buf scratch = {0};
    for (int f = 0; f < NFIELDS; f++) {
        const weft__fstate *st = &r->st[f];
        /* Register heads. */
        int heads[MAXOPS];
        int nh = heads_of(w, NULL, f, heads);
        sort_idx_by_id(w, heads, nh);
        cr_assert_eq(st->nheads, (uint32_t)nh, "seed %llu: field %d has %u heads, oracle %d",
                     (unsigned long long)seed, f, st->nheads, nh);
        for (int i = 0; i < nh; i++) {
            const gop *o = &w->ops[heads[i]];
            cr_assert_eq(id_cmp(st->heads[i].id, o->id), 0, "seed %llu: head %d",
                         (unsigned long long)seed, i);
            cr_assert(st->heads[i].value.len == o->vlen &&
                          memcmp(st->heads[i].value.ptr, o->val, o->vlen) == 0,
                      "seed %llu: head value", (unsigned long long)seed);
        }
        cr_assert_eq(weft__fstate_conflict(st), nh > 1, "seed %llu", (unsigned long long)seed);
        s->conflicts += nh > 1;
        /* Counter rows: exactly the INCs above the tombstone, in id order;
         * the summary: their sum, number and newest id. */
        uint64_t sum = 0;
        uint32_t ne = 0;
        weft_id newest_inc = {0, 0};
        int incs[MAXOPS];
        for (int i = 0; i < w->nops; i++) {
            const gop *o = &w->ops[i];
            if (o->kind == WEFT__OP_INC && o->field == f && id_cmp(o->id, tomb) > 0) {
                sum += (uint64_t)o->delta;
                incs[ne++] = i;
                if (id_cmp(o->id, newest_inc) > 0) {
                    newest_inc = o->id;
                }
            }
        }
        sort_idx_by_id(w, incs, (int)ne);
        cr_assert_eq(r->nrows[f], (int)ne, "seed %llu: field %d rows", (unsigned long long)seed, f);
        for (uint32_t k = 0; k < ne; k++) {
            cr_assert_eq(id_cmp(r->rows[f][k].id, w->ops[incs[k]].id), 0, "seed %llu: row %u",
                         (unsigned long long)seed, k);
            cr_assert_eq(r->rows[f][k].delta, w->ops[incs[k]].delta, "seed %llu",
                         (unsigned long long)seed);
        }
        cr_assert_eq(st->ctr.count, ne, "seed %llu: field %d count", (unsigned long long)seed, f);
        cr_assert_eq(st->ctr.sum, sum, "seed %llu: field %d sum", (unsigned long long)seed, f);
        cr_assert_eq(id_cmp(st->ctr.newest, newest_inc), 0, "seed %llu: field %d newest",
                     (unsigned long long)seed, f);
        /* Set elements: every element with a live add, with exactly those adds. */
        uint32_t nel = 0;
        weft_id newest_add = {0, 0};
        for (int i = 0; i < w->nops; i++) {
            const gop *o = &w->ops[i];
            if (o->kind != WEFT__OP_ADD || o->field != f) {
                continue;
            }
            bool first = true; /* count each element value once: at its first ADD */
            for (int j = 0; j < i && first; j++) {
                first = !(w->ops[j].kind == WEFT__OP_ADD && w->ops[j].field == f &&
                          w->ops[j].vlen == o->vlen && memcmp(w->ops[j].val, o->val, o->vlen) == 0);
            }
            if (!first) {
                continue;
            }
            int adds[MAXOPS];
            int na = adds_of(w, NULL, f, o->val, o->vlen, adds);
            sort_idx_by_id(w, adds, na);
            const weft__elem *e = NULL;
            for (uint32_t k = 0; k < st->nelems; k++) {
                if (st->elems[k].value.len == o->vlen &&
                    memcmp(st->elems[k].value.ptr, o->val, o->vlen) == 0) {
                    e = &st->elems[k];
                }
            }
            if (na == 0) {
                cr_assert_null(e, "seed %llu: removed element still present",
                               (unsigned long long)seed);
                s->elems_removed++;
                continue;
            }
            cr_assert_not_null(e, "seed %llu: element missing", (unsigned long long)seed);
            cr_assert_eq(e->nadds, (uint32_t)na, "seed %llu: element adds",
                         (unsigned long long)seed);
            for (int k = 0; k < na; k++) {
                cr_assert_eq(id_cmp(e->adds[k], w->ops[adds[k]].id), 0, "seed %llu",
                             (unsigned long long)seed);
            }
            if (id_cmp(w->ops[adds[na - 1]].id, newest_add) > 0) {
                newest_add = w->ops[adds[na - 1]].id;
            }
            nel++;
        }
        cr_assert_eq(st->nelems, nel, "seed %llu: field %d elements", (unsigned long long)seed, f);
        s->multikind += (nh > 0) + (ne > 0) + (nel > 0) > 1;

        /* The visible value follows the newest item. */
        weft__visible vis;
        weft__buf_reset(&scratch);
        cr_assert_eq(weft__fstate_visible(st, &scratch, &vis), 0);
        weft_id newest = {0, 0};
        weft_kind kind = 0;
        if (nh > 0) {
            newest = w->ops[heads[nh - 1]].id;
            kind = WEFT_KIND_REGISTER;
        }
        if (ne > 0 && id_cmp(newest_inc, newest) > 0) {
            newest = newest_inc;
            kind = WEFT_KIND_COUNTER;
        }
        if (nel > 0 && id_cmp(newest_add, newest) > 0) {
            newest = newest_add;
            kind = WEFT_KIND_SET;
        }
        cr_assert_eq(vis.kind, kind, "seed %llu: field %d visible kind", (unsigned long long)seed,
                     f);
        cr_assert_eq(id_cmp(vis.id, newest), 0, "seed %llu", (unsigned long long)seed);
        if (kind == WEFT_KIND_COUNTER) {
            weft__mp_reader rd = {vis.value.ptr, (const uint8_t *)vis.value.ptr + vis.value.len};
            int64_t got;
            cr_assert_eq(weft__mp_read_int(&rd, &got), 0);
            cr_assert_eq((uint64_t)got, sum, "seed %llu: counter sum", (unsigned long long)seed);
        } else if (kind == WEFT_KIND_SET) {
            size_t used;
            cr_assert_eq(weft__mp_check(vis.value.ptr, vis.value.len, WEFT_DEPTH_MAX, &used), 0);
            weft__mp_reader rd = {vis.value.ptr, (const uint8_t *)vis.value.ptr + vis.value.len};
            uint32_t n;
            cr_assert_eq(weft__mp_read_array(&rd, &n), 0);
            cr_assert_eq(n, nel);
        } else if (kind == WEFT_KIND_REGISTER) {
            cr_assert_eq(vis.heads, (uint32_t)nh);
        }
    }
    weft__buf_free(&scratch);
}

/* A device that has seen everything writes the register once: one head left. */
static void check_resolve(world *w, replica *r)
{
    int heads[MAXOPS];
    int nh = heads_of(w, NULL, 0, heads);
    gop *o = &w->ops[w->nops];
    memset(o, 0, offsetof(gop, payload));
    uint64_t maxhlc = 0;
    for (int i = 0; i < w->nops; i++) {
        maxhlc = w->ops[i].id.hlc > maxhlc ? w->ops[i].id.hlc : maxhlc;
    }
    o->kind = WEFT__OP_SET;
    o->field = 0;
    o->id.hlc = maxhlc + 1;
    o->id.device = w->dev[0].devid;
    o->vlen = gen_value(o->val, 1000);
    set_prev(w, o, heads, nh);
    seal(w, o);
    cr_assert_eq(weft__fstate_apply(&r->st[0], o->id, &o->op, r->tomb), 1);
    cr_assert_eq(r->st[0].nheads, 1, "seed %llu: %u heads after a resolving write",
                 (unsigned long long)w->seed, r->st[0].nheads);
    cr_assert(!weft__fstate_conflict(&r->st[0]));
    weft__visible vis;
    weft__buf scratch = {0};
    cr_assert_eq(weft__fstate_visible(&r->st[0], &scratch, &vis), 0);
    cr_assert_eq(vis.kind, WEFT_KIND_REGISTER);
    cr_assert(vis.value.len == o->vlen && memcmp(vis.value.ptr, o->val, o->vlen) == 0);
    weft__buf_free(&scratch);
}

static void run_case(uint64_t seed, stats *s)
{
    static world w;
    rs = seed;
    w.seed = seed;
    gen(&w);
    weft__buf first = {0}, other = {0};
    replica r0, r;
    int seq[2 * MAXOPS];
    for (int k = 0; k < NORDERS; k++) {
        int n = random_order(&w, seq, (int)(sizeof seq / sizeof seq[0]));
        weft__buf_reset(&other);
        replay(&w, seq, n, k == 0 ? &r0 : &r, k == 0 ? &first : &other);
        if (k > 0) {
            cr_assert(same(&first, &other),
                      "seed %llu: order %d gives different state bytes (replay: WEFT_SEED=%llu "
                      "WEFT_CASES=1)",
                      (unsigned long long)seed, k, (unsigned long long)seed);
            replica_free(&r);
        }
    }
    check_oracle(&w, &r0, s);
    check_resolve(&w, &r0);
    replica_free(&r0);
    free_world(&w);
    weft__buf_free(&first);
    weft__buf_free(&other);
    s->cases++;
}

Test(crdt, merge_laws, .timeout = 300)
{
    uint64_t seed = env_u64("WEFT_SEED", 20240601);
    uint64_t cases = env_u64("WEFT_CASES", 10000);
    stats s = {0};
    for (uint64_t i = 0; i < cases; i++) {
        run_case(seed + i, &s);
    }
    fprintf(stderr,
            "[----] merge_laws: %u cases from seed %llu: %u field conflicts, %u with deletes, "
            "%u multi-kind fields, %u removed elements, %lu counter rows pruned\n",
            s.cases, (unsigned long long)seed, s.conflicts, s.deletes, s.multikind, s.elems_removed,
            rows_pruned);
    /* The generator must actually produce the interesting situations. */
    if (cases >= 1000) {
        cr_assert_gt(s.conflicts, cases / 20, "seed %llu: too few conflicts",
                     (unsigned long long)seed);
        cr_assert_gt(s.deletes, cases / 20, "seed %llu: too few deletes", (unsigned long long)seed);
        cr_assert_gt(s.multikind, cases / 50, "seed %llu", (unsigned long long)seed);
        cr_assert_gt(s.elems_removed, cases / 20, "seed %llu", (unsigned long long)seed);
        cr_assert_gt(rows_pruned, cases / 20, "seed %llu: too few counter rows pruned",
                     (unsigned long long)seed);
    }
}
