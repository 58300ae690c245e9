/* sim.c - the in-memory network simulator of the session tests (sim.h).
 *
 * Invariants: see sim.h. Every helper asserts (criterion) on a failure that
 * is not the point of the test.
 * Thread-safety: single-threaded tests only; the randombytes stream that
 * makes device keys replay is process-global.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "sim.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tests/splitmix.h"
#include "tests/tmpdir.h"

#define SIM_OK(expr)                                                                 \
    do {                                                                             \
        int rc_ = (expr);                                                            \
        cr_assert_eq(rc_, 0, "%s -> %s (%s) [seed %llu]", #expr, weft_err_name(rc_), \
                     weft_last_error(), (unsigned long long)m->seed);                \
    } while (0)

uint64_t sim_rand(sim *m)
{
    return splitmix_next(&m->rng);
}

/* ---- replayable randombytes: the only randomness a store draws is its
 * keypair and store id at creation. Not for anything but tests. */

static uint64_t rb_state;

static const char *rb_name(void)
{
    return "weft-sim-seeded";
}

static uint32_t rb_random(void)
{
    return (uint32_t)splitmix_next(&rb_state);
}

static void rb_stir(void)
{
}

static void rb_buf(void *const buf, const size_t size)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < size; i += 8) {
        uint64_t z = splitmix_next(&rb_state);
        size_t k = size - i < 8 ? size - i : 8;
        memcpy(p + i, &z, k);
    }
}

static int rb_close(void)
{
    return 0;
}

static randombytes_implementation rb_impl = {
    rb_name, rb_random, rb_stir, NULL, rb_buf, rb_close,
};

/* ---- frame and id bookkeeping */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * UINT64_C(0x100000001b3);
    }
    return h;
}

/* Every weft message is a msgpack fixarray whose first element is its type. */
static bool frame_is(const uint8_t *p, size_t len, int type)
{
    return len >= 2 && (p[0] & 0xf0) == 0x90 && p[1] == type;
}

static void ids_push(sim_ids *ids, weft_id id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 32;
        ids->v = realloc(ids->v, ids->cap * sizeof *ids->v);
        cr_assert_not_null(ids->v);
    }
    ids->v[ids->n++] = id;
}

static void ids_free(sim_ids *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

static int id_qcmp(const void *a, const void *b)
{
    return weft_id_cmp(*(const weft_id *)a, *(const weft_id *)b);
}

/* Sort and drop repeats. */
static void ids_unique(sim_ids *ids)
{
    if (ids->n < 2) {
        return;
    }
    qsort(ids->v, ids->n, sizeof *ids->v, id_qcmp);
    size_t k = 1;
    for (size_t i = 1; i < ids->n; i++) {
        if (weft_id_cmp(ids->v[i], ids->v[k - 1]) != 0) {
            ids->v[k++] = ids->v[i];
        }
    }
    ids->n = k;
}

static void inbox_clear(sim_inbox *in)
{
    for (size_t i = 0; i < in->n; i++) {
        ids_free(&in->v[i].ids);
    }
    in->n = 0;
}

static void inbox_free(sim_inbox *in)
{
    inbox_clear(in);
    free(in->v);
    memset(in, 0, sizeof *in);
}

/* An OPS frame is about to be delivered: remember its ids until the ACK. */
static void inbox_push(sim_inbox *in, const uint8_t *p, size_t len)
{
    weft__msg msg;
    if (weft__msg_decode(p, len, &msg) != 0) {
        return; /* the session refuses it too */
    }
    if (in->n == in->cap) {
        in->cap = in->cap ? 2 * in->cap : 8;
        in->v = realloc(in->v, in->cap * sizeof *in->v);
        cr_assert_not_null(in->v);
    }
    sim_batch *b = &in->v[in->n++];
    memset(b, 0, sizeof *b);
    b->seq = msg.seq;
    for (size_t i = 0; i < msg.nops; i++) {
        ids_push(&b->ids, msg.ops[i].id);
    }
    weft__msg_free(&msg);
}

/* Node @p ni queued an ACK frame: the ops of the batch it names that its
 * vector covers are acknowledged by it (all of them unless deferred; none
 * for a gap). */
static void inbox_acked(sim *m, int ni, sim_inbox *in, const uint8_t *p, size_t len)
{
    weft__msg msg;
    cr_assert_eq(weft__msg_decode(p, len, &msg), 0, "an ACK that does not decode [seed %llu]",
                 (unsigned long long)m->seed);
    size_t i = 0;
    while (i < in->n && in->v[i].seq != msg.seq) {
        i++;
    }
    cr_assert_lt(i, in->n, "n%d ACKed batch %llu, which it was never given [seed %llu]", ni,
                 (unsigned long long)msg.seq, (unsigned long long)m->seed);
    sim_batch *b = &in->v[i];
    for (size_t k = 0; k < b->ids.n && msg.status != WEFT__ACK_GAP; k++) {
        weft_id id = b->ids.v[k];
        if (id.hlc <= weft_vv_get(msg.vv, id.device)) {
            ids_push(&m->node[ni].acked, id);
        }
    }
    /* This batch and any before it are settled. */
    for (size_t k = 0; k <= i; k++) {
        ids_free(&in->v[k].ids);
    }
    memmove(in->v, in->v + i + 1, (in->n - i - 1) * sizeof *in->v);
    in->n -= i + 1;
    weft__msg_free(&msg);
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
    /* Install the seeded stream before libsodium first draws from it (its
     * own one-time initialisation draws too), then seed it for this run. */
    randombytes_set_implementation(&rb_impl);
    cr_assert_geq(sodium_init(), 0);
    rb_state = seed ^ UINT64_C(0x5eed0f5eed0f5eed);
    m->seed = seed;
    m->rng = seed;
    m->trace = UINT64_C(0xcbf29ce484222325);
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
    n->skew_max_ms = skew_ms;
    weft_options *o = &n->opt;
    weft_options_init(o);
    o->flags = WEFT_OPEN_CREATE;
    o->map_size = 4u << 20;
    o->now_ms = node_clock;
    o->now_user = n;
    SIM_OK(weft_store_open(n->dir, o, &n->s));
    o->flags = 0; /* reopened after a restart: the store must be there */
    weft_info info;
    SIM_OK(weft_store_info(n->s, &info));
    memcpy(n->pk, info.public_key, WEFT_KEY_BYTES);
    return i;
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
        if (ev.kind == WEFT_EV_CHANGES) {
            n->changes++; /* a batch applied: its other sessions have more to send */
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
        l->deferred += a->deferred;
        l->gaps += a->gaps;
        l->ops_sent_a += a->ops_sent;
        l->max_inflight = a->max_inflight > l->max_inflight ? a->max_inflight : l->max_inflight;
    }
    if (b != NULL) {
        l->deferred += b->deferred;
        l->gaps += b->gaps;
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
    SIM_OK(weft_txn_begin(m->node[ni].s, 0, &t));
    SIM_OK(weft__session_save(ss, t));
    SIM_OK(weft_txn_commit(&t));
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

/* Drop a live link. A side that is saved persists its in-memory ACKs first
 * (an orderly close, or the survivor of a peer's crash); an unsaved side
 * loses them (a crash). */
static void cut(sim *m, int li, bool save_a, bool save_b)
{
    sim_link *l = &m->link[li];
    if (!l->up) {
        return;
    }
    account(l);
    drain_events(&m->node[l->a], l->sa);
    drain_events(&m->node[l->b], l->sb);
    if (save_a) {
        save_session(m, l->a, l->sa);
    }
    if (save_b) {
        save_session(m, l->b, l->sb);
    }
    weft__session_destroy(&l->sa);
    weft__session_destroy(&l->sb);
    q_clear(&l->ab);
    q_clear(&l->ba);
    inbox_clear(&l->in_a);
    inbox_clear(&l->in_b);
    l->up = false;
    l->closes++;
    l->reconnect_at = m->now + m->reconnect_ms + rnd(m, m->reconnect_ms + 1);
}

void sim_cut(sim *m, int li)
{
    cut(m, li, true, true);
}

void sim_destroy(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_cut(m, i);
        q_free(&m->link[i].ab);
        q_free(&m->link[i].ba);
        inbox_free(&m->link[i].in_a);
        inbox_free(&m->link[i].in_b);
    }
    for (int i = 0; i < m->nnodes; i++) {
        ids_free(&m->node[i].acked);
        weft_store_close(&m->node[i].s);
        rm_tree(m->node[i].dir);
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

/* When a link that is down may connect: not before both nodes are up. */
static uint64_t link_ready_at(const sim *m, const sim_link *l)
{
    uint64_t t = l->reconnect_at;
    t = m->node[l->a].down_until > t ? m->node[l->a].down_until : t;
    t = m->node[l->b].down_until > t ? m->node[l->b].down_until : t;
    return t;
}

void sim_link_mute(sim *m, int li, int dir, bool on)
{
    m->link[li].mute[dir != 0] = on;
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
    l->seen_a = l->seen_b = UINT64_MAX; /* polled at once */
    l->up = true;
    l->sessions++;
}

/* Move a session's queued frames onto the wire. @p ni is the sending node,
 * @p in the batches delivered to it. */
static void drain_frames(sim *m, sim_link *l, weft__session *ss, sim_q *q, int ni, sim_inbox *in)
{
    weft_bytes f;
    while (weft__session_next(ss, &f) == 1) {
        cr_assert_leq(f.len, WEFT__MSG_MAX, "a frame of %zu bytes [seed %llu]", f.len,
                      (unsigned long long)m->seed);
        if (m->track_acks && frame_is(f.ptr, f.len, WEFT__MSG_ACK)) {
            inbox_acked(m, ni, in, f.ptr, f.len); /* ni committed them, heard or not */
        }
        l->muted += l->mute[q == &l->ba];
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
    drain_frames(m, l, l->sa, &l->ab, l->a, &l->in_a);
    drain_frames(m, l, l->sb, &l->ba, l->b, &l->in_b);
    drain_events(&m->node[l->a], l->sa);
    drain_events(&m->node[l->b], l->sb);
}

/* A side failed: its ERROR reaches the other side, then the link drops. */
static void fail_link(sim *m, int li, bool a_failed)
{
    sim_link *l = &m->link[li];
    l->errors++;
    weft__session *from = a_failed ? l->sa : l->sb, *to = a_failed ? l->sb : l->sa;
    bool lost = l->mute[!a_failed];
    weft_bytes f;
    while (weft__session_next(from, &f) == 1 && !lost) {
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

/* With lazy_poll, a session is polled as the engine polls it: when its
 * store changed since its last poll, or at its deadline (recv is followed by
 * a poll in sim_step). */
static bool due(const sim *m, const weft__session *ss, const uint64_t *seen, int ni)
{
    return *seen != m->node[ni].changes || m->now >= weft__session_deadline(ss);
}

static void poll_all(sim *m)
{
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (l->enabled && !l->up && m->now >= link_ready_at(m, l)) {
            connect_link(m, i);
        }
        if (!l->up) {
            continue;
        }
        if (m->lazy_poll && !due(m, l->sa, &l->seen_a, l->a) && !due(m, l->sb, &l->seen_b, l->b)) {
            continue;
        }
        l->seen_a = m->node[l->a].changes;
        l->seen_b = m->node[l->b].changes;
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
            uint64_t at = link_ready_at(m, l);
            if (l->enabled && at < next) {
                next = at;
            }
            continue;
        }
        for (int d = 0; d < 2; d++) {
            sim_q *q = d ? &l->ba : &l->ab;
            if (q->n == 0 || l->mute[d]) {
                continue; /* (held back by a one-way partition) */
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
    /* One frame, or (burst_max) a run of those already due, as the engine
     * takes what its socket holds. */
    size_t want = m->burst_max > 1 ? 1 + (size_t)rnd(m, m->burst_max) : 1, nf = 0, nops = 0;
    sim_frame fs[SIM_BURST_MAX];
    weft_bytes bs[SIM_BURST_MAX];
    while (nf < want && nf < SIM_BURST_MAX && q->n > 0 && q->v[q->head].at <= m->now) {
        sim_frame f = q->v[q->head++];
        q->n--;
        q->bytes -= f.len;
        m->trace = fnv(m->trace ^ m->now, f.p, f.len);
        if (m->track_acks && frame_is(f.p, f.len, WEFT__MSG_OPS)) {
            inbox_push(c % 2 ? &l->in_a : &l->in_b, f.p, f.len);
        }
        nops += frame_is(f.p, f.len, WEFT__MSG_OPS);
        fs[nf] = f;
        bs[nf] = (weft_bytes){f.p, f.len};
        nf++;
    }
    m->runs += nops >= 2;
    int rc = weft__session_recv_many(to, bs, nf, m->now);
    for (size_t i = 0; i < nf; i++) {
        free(fs[i].p);
    }
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
    weft_id id = {0, 0};
    switch (rnd(m, 8)) {
    case 0:
    case 1:
        rc = weft_set(t, coll, ent, field, val, vlen, &id);
        break;
    case 2:
        rc = weft_del(t, coll, ent, &id);
        break;
    case 3:
        rc = weft_inc(t, coll, ent, field, (int64_t)rnd(m, 7) - 3, &id);
        break;
    case 4:
    case 5:
        rc = weft_add(t, coll, ent, field, val, vlen, &id);
        break;
    case 6:
        rc = weft_rem(t, coll, ent, field, val, vlen, &id);
        break;
    default:
        rc = weft_resolve(t, coll, ent, field, val, vlen, &id);
        break;
    }
    cr_assert(rc == 0 || rc == WEFT_ENOTFOUND, "write -> %s (%s) [seed %llu]", weft_err_name(rc),
              weft_last_error(), (unsigned long long)m->seed);
    SIM_OK(weft_txn_commit(&t));
    n->changes++;
    if (rc != 0) {
        return;
    }
    /* The clock must never reissue or go back, whatever the wall clock did
     * and however often the replica restarted. */
    cr_assert_eq(id.device, weft_store_device(n->s), "n%d's write names another device [seed %llu]",
                 ni, (unsigned long long)m->seed);
    cr_assert_gt(
        id.hlc, n->last_id.hlc, "n%d issued hlc %llx after %llx (wall %llu, skew %lld) [seed %llu]",
        ni, (unsigned long long)id.hlc, (unsigned long long)n->last_id.hlc,
        (unsigned long long)sim_wall(m, ni), (long long)n->skew_ms, (unsigned long long)m->seed);
    n->last_id = id;
    m->trace = fnv(m->trace, &id, sizeof id);
    if (m->track_acks) {
        ids_push(&n->acked, id); /* committed durably: acknowledged */
    }
}

static void dump_state(sim *m, weft_store *s, weft__buf *out)
{
    static const char *dbs[] = {"ops", "fields", "counters", "entities", "conflicts", "vv"};
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

uint64_t sim_wall(const sim *m, int n)
{
    return (uint64_t)((int64_t)(SIM_EPOCH + m->now) + m->node[n].skew_ms);
}

void sim_set_skew(sim *m, int ni, int64_t skew_ms)
{
    sim_node *n = &m->node[ni];
    if (skew_ms < n->skew_ms) {
        n->step_backs++;
    }
    n->skew_ms = skew_ms;
    n->skew_max_ms = skew_ms > n->skew_max_ms ? skew_ms : n->skew_max_ms;
}

static uint64_t vv_max(const weft_vv *vv)
{
    uint64_t max = 0;
    for (size_t i = 0; i < weft_vv_count(vv); i++) {
        uint64_t d, h;
        weft_vv_entry(vv, i, &d, &h);
        max = h > max ? h : max;
    }
    return max;
}

void sim_check_clock(sim *m, int ni)
{
    sim_node *n = &m->node[ni];
    uint64_t drift = n->opt.max_drift_ms ? n->opt.max_drift_ms : WEFT_DEFAULT_DRIFT_MS;
    uint64_t bound = (uint64_t)((int64_t)(SIM_EPOCH + m->now) + n->skew_max_ms) + drift;
    uint64_t clock = weft_hlc_ms(n->s->clock.last);
    cr_assert_leq(clock, bound, "n%d's clock is %llu ms past its horizon [seed %llu]", ni,
                  (unsigned long long)(clock - bound), (unsigned long long)m->seed);
    weft_vv *vv = sim_vv(m, ni);
    uint64_t held = weft_hlc_ms(vv_max(vv));
    weft_vv_destroy(&vv);
    cr_assert_leq(held, bound, "n%d holds an op %llu ms past its horizon [seed %llu]", ni,
                  (unsigned long long)(held - bound), (unsigned long long)m->seed);
}

uint64_t sim_max_hlc(sim *m)
{
    uint64_t max = 0;
    for (int i = 0; i < m->nnodes; i++) {
        weft_vv *vv = sim_vv(m, i);
        uint64_t h = vv_max(vv);
        max = h > max ? h : max;
        weft_vv_destroy(&vv);
    }
    return max;
}

static bool holds_in(sim *m, weft_txn *t, weft_id id)
{
    uint8_t key[WEFT__ID_BYTES];
    weft__id_put(key, id);
    weft_bytes k = {key, sizeof key}, v;
    int rc = weft__txn_get(t, "ops", k, &v);
    cr_assert(rc == 0 || rc == WEFT_ENOTFOUND, "reading ops -> %s [seed %llu]", weft_err_name(rc),
              (unsigned long long)m->seed);
    return rc == 0;
}

bool sim_holds(sim *m, int n, weft_id id)
{
    weft_txn *t;
    SIM_OK(weft_txn_begin(m->node[n].s, WEFT_TXN_RDONLY, &t));
    bool held = holds_in(m, t, id);
    weft_txn_abort(&t);
    return held;
}

/* Assert every id of @p ids is in node @p n's op log; @p who names whose
 * acknowledgement it was, for the message (-1: some node's). */
static void assert_holds_all(sim *m, int n, const sim_ids *ids, int who)
{
    weft_txn *t;
    SIM_OK(weft_txn_begin(m->node[n].s, WEFT_TXN_RDONLY, &t));
    for (size_t i = 0; i < ids->n; i++) {
        weft_id id = ids->v[i];
        if (holds_in(m, t, id)) {
            continue;
        }
        for (int k = 0; k < m->nnodes && who < 0; k++) {
            for (size_t j = 0; j < m->node[k].acked.n && who < 0; j++) {
                who = weft_id_cmp(m->node[k].acked.v[j], id) == 0 ? k : -1;
            }
        }
        weft_txn_abort(&t);
        cr_assert_fail("op %016llx/%016llx, acknowledged by n%d, is missing on n%d [seed %llu]",
                       (unsigned long long)id.hlc, (unsigned long long)id.device, who, n,
                       (unsigned long long)m->seed);
    }
    weft_txn_abort(&t);
}

uint64_t sim_check_acked(sim *m)
{
    sim_ids all = {NULL, 0, 0};
    for (int i = 0; i < m->nnodes; i++) {
        ids_unique(&m->node[i].acked);
        for (size_t k = 0; k < m->node[i].acked.n; k++) {
            ids_push(&all, m->node[i].acked.v[k]);
        }
    }
    ids_unique(&all);
    for (int i = 0; i < m->nnodes; i++) {
        assert_holds_all(m, i, &all, -1);
    }
    uint64_t n = all.n;
    ids_free(&all);
    return n;
}

static weft_vv *acked_vv(sim *m, int n, int peer)
{
    weft_txn *t;
    weft_vv *vv;
    SIM_OK(weft_txn_begin(m->node[n].s, WEFT_TXN_RDONLY, &t));
    SIM_OK(weft__peer_acked_get(t, m->node[peer].pk, &vv));
    weft_txn_abort(&t);
    return vv;
}

/* What @p n has persisted as acknowledged by @p peer is held by @p peer: a
 * store may under-report what its peers hold (pending over-reported until
 * the next HELLO), never over-report it. */
static void assert_acked_held(sim *m, int n, int peer)
{
    weft_vv *ack = acked_vv(m, n, peer), *vv = sim_vv(m, peer);
    for (size_t i = 0; i < weft_vv_count(ack); i++) {
        uint64_t d, h;
        weft_vv_entry(ack, i, &d, &h);
        cr_assert_leq(h, weft_vv_get(vv, d),
                      "n%d believes n%d acknowledged %016llx of %016llx, it holds %016llx "
                      "[seed %llu]",
                      n, peer, (unsigned long long)h, (unsigned long long)d,
                      (unsigned long long)weft_vv_get(vv, d), (unsigned long long)m->seed);
    }
    weft_vv_destroy(&ack);
    weft_vv_destroy(&vv);
}

void sim_restart(sim *m, int ni, uint64_t down_ms)
{
    sim_node *n = &m->node[ni];
    sim_check_clock(m, ni); /* the in-memory clock is about to be lost */
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (l->a == ni || l->b == ni) {
            cut(m, i, l->a != ni, l->b != ni);
        }
    }
    n->down_until = m->now + down_ms;
    n->changes++;
    weft_store_close(&n->s);
    SIM_OK(weft_store_open(n->dir, &n->opt, &n->s));
    n->restarts++;
    weft_info info;
    SIM_OK(weft_store_info(n->s, &info));
    cr_assert_arr_eq(info.public_key, n->pk, WEFT_KEY_BYTES, "n%d's key changed [seed %llu]", ni,
                     (unsigned long long)m->seed);
    cr_assert_geq(info.last_hlc, n->last_id.hlc,
                  "n%d's last issued hlc %llx did not survive its restart (%llx) [seed %llu]", ni,
                  (unsigned long long)n->last_id.hlc, (unsigned long long)info.last_hlc,
                  (unsigned long long)m->seed);
    /* Durable acknowledgement: what it acknowledged before is all there. */
    ids_unique(&n->acked);
    assert_holds_all(m, ni, &n->acked, ni);
    for (int i = 0; i < m->nlinks; i++) {
        sim_link *l = &m->link[i];
        if (l->a == ni || l->b == ni) {
            int peer = l->a == ni ? l->b : l->a;
            assert_acked_held(m, ni, peer);
            assert_acked_held(m, peer, ni);
        }
    }
}
