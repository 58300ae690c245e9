/* sim.c - the in-memory network simulator of the session tests (sim.h).
 *
 * Invariants: see sim.h. Every helper asserts (criterion) on a failure that
 * is not the point of the test.
 * Thread-safety: single-threaded tests only.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "sim.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SIM_OK(expr)                                                                 \
    do {                                                                             \
        int rc_ = (expr);                                                            \
        cr_assert_eq(rc_, 0, "%s -> %s (%s) [seed %llu]", #expr, weft_err_name(rc_), \
                     weft_last_error(), (unsigned long long)m->seed);                \
    } while (0)

uint64_t sim_rand(sim *m)
{
    /* splitmix64 */
    uint64_t z = (m->rng += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t rnd(sim *m, uint64_t n)
{
    return n ? sim_rand(m) % n : 0;
}

uint64_t sim_env_seed(uint64_t dflt)
{
    const char *e = getenv("WEFT_SEED");
    return e != NULL ? strtoull(e, NULL, 0) : dflt;
}

unsigned sim_env_cases(unsigned dflt)
{
    const char *e = getenv("WEFT_CASES");
    return e != NULL ? (unsigned)strtoul(e, NULL, 0) : dflt;
}

void sim_init(sim *m, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->seed = seed;
    m->rng = seed;
    m->delay_max = 20;
    m->reconnect_ms = 200;
    m->now = 1;
}

static uint64_t node_clock(void *user)
{
    sim_node *n = user;
    return (uint64_t)((int64_t)(SIM_EPOCH + n->owner->now) + n->skew_ms);
}

int sim_node_add(sim *m, weft_role role, int64_t skew_ms)
{
    cr_assert_lt(m->nnodes, SIM_NODES);
    int i = m->nnodes++;
    sim_node *n = &m->node[i];
    n->owner = m;
    n->skew_ms = skew_ms;
    n->role = role;
    snprintf(n->name, sizeof n->name, "n%d", i);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    n->dir = malloc(256);
    cr_assert_not_null(n->dir);
    snprintf(n->dir, 256, "%s/weft-sim-XXXXXX", base);
    cr_assert_not_null(mkdtemp(n->dir));
    weft_options o;
    weft_options_init(&o);
    o.flags = WEFT_OPEN_CREATE;
    o.map_size = 4u << 20;
    o.now_ms = node_clock;
    o.now_user = n;
    SIM_OK(weft_store_open(n->dir, &o, &n->s));
    weft_info info;
    SIM_OK(weft_store_info(n->s, &info));
    memcpy(n->pk, info.public_key, WEFT_KEY_BYTES);
    return i;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void q_push(sim_q *q, const uint8_t *p, size_t len, uint64_t at)
{
    if (q->head + q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        } else {
            q->cap = q->cap ? 2 * q->cap : 16;
            q->v = realloc(q->v, q->cap * sizeof *q->v);
            cr_assert_not_null(q->v);
        }
    }
    sim_frame *f = &q->v[q->head + q->n++];
    f->p = malloc(len ? len : 1);
    cr_assert_not_null(f->p);
    memcpy(f->p, p, len);
    f->len = len;
    f->at = at;
    q->bytes += len;
}

static void q_clear(sim_q *q)
{
    for (size_t i = 0; i < q->n; i++) {
        free(q->v[q->head + i].p);
    }
    q->head = q->n = q->bytes = 0;
}

static void q_free(sim_q *q)
{
    q_clear(q);
    free(q->v);
    memset(q, 0, sizeof *q);
}

static void drain_events(sim_node *n, weft__session *ss)
{
    weft_event ev;
    while (weft__session_event(ss, &ev) == 1) {
        if ((unsigned)ev.kind < 8) {
            n->events[ev.kind]++;
        }
        if (ev.kind == WEFT_EV_SKEW) {
            snprintf(n->last_skew, sizeof n->last_skew, "%s", ev.message);
        }
    }
}

static void account(sim_link *l)
{
    const weft__session_stats *a = weft__session_stats_get(l->sa);
    const weft__session_stats *b = weft__session_stats_get(l->sb);
    if (a != NULL) {
        l->ops_sent_a += a->ops_sent;
        l->max_inflight = a->max_inflight > l->max_inflight ? a->max_inflight : l->max_inflight;
    }
    if (b != NULL) {
        l->ops_sent_b += b->ops_sent;
        l->max_inflight = b->max_inflight > l->max_inflight ? b->max_inflight : l->max_inflight;
    }
}

/* Persist what a session holds of its peer's acknowledgements, as the
 * engine does on its status tick and before destroying a session. */
static void save_session(sim *m, int ni, weft__session *ss)
{
    if (!weft__session_unsaved(ss)) {
        return;
    }
    weft_txn *t = NULL;
    cr_assert_eq(weft_txn_begin(m->node[ni].s, 0, &t), 0, "%s", weft_last_error());
    cr_assert_eq(weft__session_save(ss, t), 0, "%s", weft_last_error());
    cr_assert_eq(weft_txn_commit(&t), 0, "%s", weft_last_error());
}

static void save_all(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (l->up) {
            save_session(m, l->a, l->sa);
            save_session(m, l->b, l->sb);
        }
    }
}

void sim_cut(sim *m, int li)
{
    sim_link *l = &m->link[li];
    if (!l->up) {
        return;
    }
    account(l);
    drain_events(&m->node[l->a], l->sa);
    drain_events(&m->node[l->b], l->sb);
    save_session(m, l->a, l->sa);
    save_session(m, l->b, l->sb);
    weft__session_destroy(&l->sa);
    weft__session_destroy(&l->sb);
    q_clear(&l->ab);
    q_clear(&l->ba);
    l->up = false;
    l->closes++;
    l->reconnect_at = m->now + m->reconnect_ms + rnd(m, m->reconnect_ms + 1);
}

void sim_destroy(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_cut(m, i);
        q_free(&m->link[i].ab);
        q_free(&m->link[i].ba);
    }
    for (int i = 0; i < m->nnodes; i++) {
        weft_store_close(&m->node[i].s);
        nftw(m->node[i].dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(m->node[i].dir);
    }
    m->nnodes = m->nlinks = 0;
}

static void add_peer(sim *m, int to, int who)
{
    char card[WEFT_CARD_MAX], name[16];
    SIM_OK(weft_card(m->node[who].s, NULL, card, sizeof card));
    snprintf(name, sizeof name, "n%d", who);
    SIM_OK(weft_peer_add(m->node[to].s, name, card, NULL, m->node[who].role));
}

int sim_link_add(sim *m, int a, int b)
{
    cr_assert_lt(m->nlinks, SIM_LINKS);
    int i = m->nlinks++;
    sim_link *l = &m->link[i];
    memset(l, 0, sizeof *l);
    l->a = a;
    l->b = b;
    l->enabled = true;
    add_peer(m, a, b);
    add_peer(m, b, a);
    return i;
}

void sim_link_enable(sim *m, int li, bool on)
{
    sim_link *l = &m->link[li];
    l->enabled = on;
    if (!on) {
        sim_cut(m, li);
    } else if (!l->up) {
        l->reconnect_at = m->now;
    }
}

static void connect_link(sim *m, int li)
{
    sim_link *l = &m->link[li];
    weft__session_cfg c = m->cfg;
    memcpy(c.peer_key, m->node[l->b].pk, WEFT_KEY_BYTES);
    snprintf(c.name, sizeof c.name, "%s", m->node[l->b].name);
    c.role = m->node[l->a].role;
    SIM_OK(weft__session_new(m->node[l->a].s, &c, m->now, &l->sa));
    memcpy(c.peer_key, m->node[l->a].pk, WEFT_KEY_BYTES);
    snprintf(c.name, sizeof c.name, "%s", m->node[l->a].name);
    c.role = m->node[l->b].role;
    SIM_OK(weft__session_new(m->node[l->b].s, &c, m->now, &l->sb));
    l->up = true;
    l->sessions++;
}

/* Move a session's queued frames onto the wire. */
static void drain_frames(sim *m, sim_link *l, weft__session *ss, sim_q *q)
{
    weft_bytes f;
    while (weft__session_next(ss, &f) == 1) {
        cr_assert_leq(f.len, WEFT__MSG_MAX);
        uint64_t at = m->now + rnd(m, m->delay_max + 1);
        if (q->n > 0 && q->v[q->head + q->n - 1].at > at) {
            at = q->v[q->head + q->n - 1].at; /* FIFO within a direction */
        }
        q_push(q, f.ptr, f.len, at);
        if (m->dup_per_mille && rnd(m, 1000) < m->dup_per_mille) {
            q_push(q, f.ptr, f.len, at);
        }
        if (m->reorder_per_mille && q->n >= 2 && rnd(m, 1000) < m->reorder_per_mille) {
            sim_frame *x = &q->v[q->head + q->n - 1], *y = x - 1;
            sim_frame t = *x;
            *x = *y;
            *y = t;
            uint64_t at2 = x->at > y->at ? x->at : y->at;
            x->at = y->at = at2;
        }
    }
    if (q->bytes > l->max_queued_bytes) {
        l->max_queued_bytes = q->bytes;
    }
}

static void drain_link(sim *m, int li)
{
    sim_link *l = &m->link[li];
    if (!l->up) {
        return;
    }
    drain_frames(m, l, l->sa, &l->ab);
    drain_frames(m, l, l->sb, &l->ba);
    drain_events(&m->node[l->a], l->sa);
    drain_events(&m->node[l->b], l->sb);
}

/* A side failed: its ERROR reaches the other side, then the link drops. */
static void fail_link(sim *m, int li, bool a_failed)
{
    sim_link *l = &m->link[li];
    l->errors++;
    weft__session *from = a_failed ? l->sa : l->sb, *to = a_failed ? l->sb : l->sa;
    weft_bytes f;
    while (weft__session_next(from, &f) == 1) {
        weft__msg msg;
        if (weft__msg_decode(f.ptr, f.len, &msg) == 0) {
            if (msg.type == WEFT__MSG_ERROR) {
                int rc = weft__session_recv(to, f.ptr, f.len, m->now);
                cr_assert_lt(rc, 0, "an ERROR frame must close the session [seed %llu]",
                             (unsigned long long)m->seed);
            }
            weft__msg_free(&msg);
        }
    }
    sim_cut(m, li);
}

static void poll_all(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (l->enabled && !l->up && m->now >= l->reconnect_at) {
            connect_link(m, i);
        }
        if (!l->up) {
            continue;
        }
        if (weft__session_poll(l->sa, m->now) < 0) {
            fail_link(m, i, true);
            continue;
        }
        if (weft__session_poll(l->sb, m->now) < 0) {
            fail_link(m, i, false);
            continue;
        }
        drain_link(m, i);
    }
}

void sim_step(sim *m)
{
    m->steps++;
    poll_all(m);
    if (m->cut_per_mille && rnd(m, 1000) < m->cut_per_mille) {
        int li = (int)rnd(m, (uint64_t)m->nlinks);
        if (m->link[li].up) {
            sim_cut(m, li);
        }
    }
    /* Pick one deliverable frame among all directions. */
    int cand[2 * SIM_LINKS], nc = 0;
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (!l->up) {
            if (l->enabled && l->reconnect_at < next) {
                next = l->reconnect_at;
            }
            continue;
        }
        for (int d = 0; d < 2; d++) {
            sim_q *q = d ? &l->ba : &l->ab;
            if (q->n == 0) {
                continue;
            }
            if (q->v[q->head].at <= m->now) {
                cand[nc++] = 2 * i + d;
            } else if (q->v[q->head].at < next) {
                next = q->v[q->head].at;
            }
        }
        uint64_t da = weft__session_deadline(l->sa), db = weft__session_deadline(l->sb);
        next = da < next ? da : next;
        next = db < next ? db : next;
    }
    if (nc == 0) {
        if (next == UINT64_MAX || next <= m->now) {
            m->now++;
        } else {
            m->now = next;
        }
        return;
    }
    int c = cand[rnd(m, (uint64_t)nc)];
    sim_link *l = &m->link[c / 2];
    sim_q *q = c % 2 ? &l->ba : &l->ab;
    weft__session *to = c % 2 ? l->sa : l->sb;
    sim_frame f = q->v[q->head++];
    q->n--;
    q->bytes -= f.len;
    int rc = weft__session_recv(to, f.p, f.len, m->now);
    free(f.p);
    if (rc < 0) {
        fail_link(m, c / 2, c % 2 == 1);
        return;
    }
    /* The receiver answers (ACK) and streams on at once, as the engine does. */
    if (weft__session_poll(to, m->now) < 0) {
        fail_link(m, c / 2, c % 2 == 1);
        return;
    }
    drain_link(m, c / 2);
    m->now += rnd(m, 2);
}

bool sim_quiet(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (!l->enabled) {
            continue;
        }
        if (!l->up || l->ab.n || l->ba.n || !weft__session_caught_up(l->sa) ||
            !weft__session_caught_up(l->sb)) {
            return false;
        }
    }
    return true;
}

bool sim_run(sim *m, uint64_t max_steps)
{
    for (uint64_t i = 0; i < max_steps; i++) {
        poll_all(m);
        if (sim_quiet(m)) {
            save_all(m);
            return true;
        }
        sim_step(m);
    }
    poll_all(m);
    save_all(m);
    return sim_quiet(m);
}

void sim_write(sim *m, int ni)
{
    sim_node *n = &m->node[ni];
    char coll[8], ent[8], field[8];
    snprintf(coll, sizeof coll, "c%d", (int)rnd(m, 2));
    snprintf(ent, sizeof ent, "e%d", (int)rnd(m, 3));
    snprintf(field, sizeof field, "f%d", (int)rnd(m, 3));
    uint8_t val[16];
    weft__buf b = {NULL, 0, 0};
    SIM_OK(weft__mp_put_int(&b, (int64_t)rnd(m, 5)));
    memcpy(val, b.ptr, b.len);
    size_t vlen = b.len;
    weft__buf_free(&b);
    weft_txn *t;
    SIM_OK(weft_txn_begin(n->s, 0, &t));
    int rc;
    switch (rnd(m, 8)) {
    case 0:
    case 1:
        rc = weft_set(t, coll, ent, field, val, vlen, NULL);
        break;
    case 2:
        rc = weft_del(t, coll, ent, NULL);
        break;
    case 3:
        rc = weft_inc(t, coll, ent, field, (int64_t)rnd(m, 7) - 3, NULL);
        break;
    case 4:
    case 5:
        rc = weft_add(t, coll, ent, field, val, vlen, NULL);
        break;
    case 6:
        rc = weft_rem(t, coll, ent, field, val, vlen, NULL);
        break;
    default:
        rc = weft_resolve(t, coll, ent, field, val, vlen, NULL);
        break;
    }
    cr_assert(rc == 0 || rc == WEFT_ENOTFOUND, "write -> %s (%s) [seed %llu]", weft_err_name(rc),
              weft_last_error(), (unsigned long long)m->seed);
    SIM_OK(weft_txn_commit(&t));
}

static void dump_state(sim *m, weft_store *s, weft__buf *out)
{
    static const char *dbs[] = {"ops",      "by_device", "fields", "counters",
                                "entities", "conflicts", "vv"};
    weft_txn *t;
    SIM_OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        if (weft__store_db_find(dbs[i]) < 0) {
            continue;
        }
        SIM_OK(weft__buf_put(out, dbs[i], strlen(dbs[i]) + 1));
        SIM_OK(weft__store_dump(t, dbs[i], out));
    }
    weft_txn_abort(&t);
}

bool sim_same(sim *m, int a, int b)
{
    weft__buf x = {NULL, 0, 0}, y = {NULL, 0, 0};
    dump_state(m, m->node[a].s, &x);
    dump_state(m, m->node[b].s, &y);
    bool eq = x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0;
    weft__buf_free(&x);
    weft__buf_free(&y);
    return eq;
}

weft_vv *sim_vv(sim *m, int n)
{
    weft_txn *t;
    weft_vv *vv;
    SIM_OK(weft_txn_begin(m->node[n].s, WEFT_TXN_RDONLY, &t));
    SIM_OK(weft_store_vv(t, &vv));
    weft_txn_abort(&t);
    return vv;
}

bool sim_vv_eq(const weft_vv *a, const weft_vv *b)
{
    if (weft_vv_count(a) != weft_vv_count(b)) {
        return false;
    }
    for (size_t i = 0; i < weft_vv_count(a); i++) {
        uint64_t d, h;
        weft_vv_entry(a, i, &d, &h);
        if (weft_vv_get(b, d) != h) {
            return false;
        }
    }
    return true;
}
