/* engine.c - the background sync engine: one thread that owns every ZeroMQ
 * socket and drives the I/O-free sessions of session.c over CURVE.
 *
 * weft_sync_start() creates one ZeroMQ context, a ZAP handler (a REP socket
 * on inproc://zeromq.zap.01 in that context) and, with opt->listen, a CURVE
 * server ROUTER, so that a bad endpoint is reported to the caller; then it
 * hands every socket to the engine thread (pthread_create is a full memory
 * barrier, which is what ZeroMQ asks of a socket that changes threads). From
 * then on only the engine thread touches a socket or a session.
 *
 * The engine thread runs one zmq_poll loop over:
 *
 *   wake_fd   eventfd written by weft_sync_now/stop (commands under mu)
 *   store fd  weft_store_fd: a commit by any process -> poll every session
 *   zap       ZAP requests: admit a CURVE client iff its key is a peer
 *             (read from the store at every handshake), User-Id = key hex;
 *             refusals are noted and added to the store's record (meta
 *             "refused", peers.c) by persist_refusals, at most once per
 *             REFUSED_WRITE_MS and on stop
 *   router    inbound sessions, keyed by routing id; the peer is the
 *             ZAP User-Id of the message
 *   dealer    one per peer we connect to (outbound session): every peer
 *             with an address when opt.connect, else only those named by
 *             weft_sync_now (epeer.wanted, kept until stop) ...
 *   monitor   ... and its socket monitor (PAIR on inproc://weft-mon-N):
 *             handshake failures, disconnects
 *
 * and wakes at the earliest session deadline, retry time or persist tick.
 *
 * Per peer (epeer) there is at most one outbound and one inbound link; each
 * link owns one session. Link lifecycle, outbound side:
 *
 *   (no dealer) --retry_at passed / weft_sync_now--> connect_peer()
 *        ^                                               |
 *        | link_fail(): close dealer, ERROR,            v
 *        | retry_at = now + backoff (x2, +-25%)     dealer + session
 *        +----- handshake failed / disconnected /        |
 *        |      session error / silent peer              | session LIVE:
 *        |                                               v backoff reset
 *        +----- peer's BYE (feed()): link_close, no failure, state idle,
 *               retry_at = now + backoff (it may be restarting)
 *
 * On stop, say_bye() queues BYE on every open session, hands it to the
 * socket and closes the link with BYE_LINGER_MS of linger (the router gets
 * the same when it carried a BYE), so zmq_ctx_term flushes the goodbyes for
 * at most that long and the peers see a clean close, not a lost connection.
 *
 * Inbound links start at the first frame of a new routing id (accept_inbound)
 * and end by link_fail() or link_close(); a routing id whose link ended is
 * kept as a "zombie" whose frames are ignored, since a ROUTER cannot close
 * one connection. Two links with one peer (both sides connected at once):
 * the link initiated by the side with the smaller device id is kept. The
 * smaller side answers the other's inbound HELLO with ERROR WEFT_EBUSY while
 * its own dealer exists; the larger side closes its dealer when the smaller
 * side's inbound link arrives, and makes no new attempt while it is open.
 *
 * The engine drains the store's change notification (weft_store_changed) of
 * the handle it was given: an app wanting change notification while an
 * engine runs uses WEFT_EV_CHANGES or a second store handle.
 *
 * Events go to opt->on_event (engine thread) and to a bounded queue read with
 * weft_sync_next_event; ev_fd is readable exactly while the queue is not
 * empty. Peer status lives in the engine thread and is published (copied
 * under mu) for weft_sync_status, and persisted with weft__peer_status_put on
 * every state change (moves among pulling/pushing/live excepted) and at most
 * every PERSIST_MS otherwise. pump() folds a session's counters and state
 * into the peer before passing the session's events on, and emit() publishes
 * before delivering any event (invariant 6).
 *
 * Invariants:
 *   1. Only the engine thread touches sockets, sessions and epeer records
 *      after weft_sync_start returned; other threads touch only fields
 *      marked "under mu".
 *   2. A link has a session iff it is open; an outbound link has a dealer
 *      and a monitor iff it has a session.
 *   3. ev_fd's counter is non-zero iff evq_len > 0 or ev_dropped > 0.
 *   4. Every socket has ZMQ_LINGER 0 (ERROR_LINGER_MS for a dealer closed
 *      right after queueing an ERROR frame, BYE_LINGER_MS for sockets that
 *      carried a BYE on stop), so zmq_ctx_term never hangs.
 *   5. An epeer is freed only by sweep_peers, at the end of a loop turn, so
 *      epeer pointers stay valid for a whole turn.
 *   6. When an event is delivered (callback or queue), the published status
 *      and health already include every counter and state change the engine
 *      knew of before it: counters first, then events.
 *   7. A clean goodbye (BYE either way) never counts as a failure and never
 *      sets last_error; stop never waits on the network longer than
 *      BYE_LINGER_MS.
 * Thread-safety: a weft_sync is thread-safe; on_event runs on the engine
 * thread and must not call weft_sync_stop().
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../store/store_int.h"
#include "transport_int.h"

/* clang-format off */
#define EVQ_CAP          1024u  /* events queued for weft_sync_next_event */
#define RID_MAX          256u   /* bytes of a ZeroMQ routing id */
#define RECV_BURST       256    /* messages taken from one socket per turn */
#define PERSIST_MS       1000u  /* status persisted at most this often */
#define RELOAD_MS        1000u  /* peer list re-read at most this often on store changes */
#define ERROR_LINGER_MS  200    /* time to flush an ERROR frame before closing */
#define NOW_MAX          16u    /* named weft_sync_now requests queued */
#define ZOMBIE_MS        60000u /* forget a dead routing id after this much silence */
#define NO_STORE_FD_MS   250u   /* session poll period when the store fd is unavailable */
#define BYE_LINGER_MS    200    /* time the sockets get to flush BYE frames on stop */
#define REFUSED_WRITE_MS 1000u  /* refusals reach the store at most this often */
#define PUMP_EVENTS      64     /* session events passed on per chunk */
/* clang-format on */

/* A session over one connection. */
typedef struct elink {
    weft__session *ss; /* NULL: closed */
    bool outbound;
    weft_peer_state state; /* last state read from ss */
    bool live_seen;        /* reached LIVE (counted once per session) */
    uint64_t started_mono;
    uint64_t last_stats[4]; /* ops/bytes sent/received already folded in */
    /* outbound */
    void *dealer, *mon;
    bool handshaken;
    /* inbound */
    uint8_t rid[RID_MAX];
    size_t rid_len;
} elink;

/* A peer of the store as the engine knows it. */
typedef struct epeer {
    weft_peer_status st; /* identity from the store; live part kept here */
    bool gone;           /* removed from the store: freed by sweep_peers */
    bool seen;           /* mark for reload_peers */
    elink out, in;
    uint64_t retry_at;   /* monotonic ms to connect at; 0: none */
    uint32_t backoff_ms; /* base of the next backoff */
    bool wanted;         /* weft_sync_now named it: connect even if opt.connect is 0 */
    bool dirty;          /* status differs from what is persisted */
    bool state_dirty;    /* state changed: persist now */
    uint64_t persisted_mono;
} epeer;

typedef struct zombie {
    uint8_t rid[RID_MAX];
    size_t len;
    uint64_t seen_mono;
} zombie;

struct weft_sync {
    weft_store *store;
    weft_sync_options opt;
    char listen[WEFT_ENDPOINT_MAX + 1];
    char bound[WEFT_ENDPOINT_MAX + 1]; /* ZMQ_LAST_ENDPOINT of the router */
    uint8_t pk[WEFT_KEY_BYTES], sk[WEFT_KEY_BYTES];
    uint64_t device;
    void *ctx, *zap, *router;
    int wake_fd, ev_fd, store_fd;
    pthread_t thread;
    bool thread_started;

    /* engine thread only (and weft_sync_start before the thread runs) */
    epeer **peers;
    size_t npeers, peers_cap;
    zombie *zombies;
    size_t nzombies, zombies_cap;
    bool reload_wanted;
    uint64_t reload_mono;
    uint64_t rng;
    unsigned mon_seq;
    weft_sync_health health; /* counters; byte/op totals of ended sessions */
    bool pub_dirty;
    zmq_pollitem_t *items;
    epeer **item_peer;
    size_t items_cap;
    weft__buf scratch;
    int router_linger; /* ms the router gets on close (BYE frames queued) */
    /* refusals not yet in the store (weft__refusals_add): newest last */
    weft_refusal ref_new[WEFT_REFUSALS_MAX];
    size_t ref_n;
    uint64_t ref_unsaved, ref_saved_mono;

    /* under mu */
    pthread_mutex_t mu;
    bool stop_req, now_all;
    char now_names[NOW_MAX][WEFT_PEER_NAME_MAX + 1];
    size_t n_now;
    weft_peer_status *pub;
    size_t npub, pub_cap;
    weft_sync_health pub_health;
    weft_event *evq;
    size_t evq_head, evq_len;
    uint64_t ev_dropped;
};

/* ================================================================ small helpers */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n-- > 0) {
        *v++ = 0;
    }
}

/* A ZAP User-Id: exactly 64 hex digits of a public key. */
static bool user_id_decode(const char *s, uint8_t key[WEFT_KEY_BYTES])
{
    return s != NULL && strlen(s) == 2 * WEFT_KEY_BYTES && weft__hex_decode(s, key, WEFT_KEY_BYTES);
}

/* xorshift64*: jitter only, no security role. */
static uint32_t rng_next(weft_sync *e)
{
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (uint32_t)((e->rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* @p ms scaled by a uniform factor in [0.75, 1.25]. */
static uint64_t jitter(weft_sync *e, uint32_t ms)
{
    uint64_t span = (uint64_t)ms / 2u; /* 50% wide */
    uint64_t lo = (uint64_t)ms - (uint64_t)ms / 4u;
    return lo + (span > 0 ? rng_next(e) % (span + 1) : 0);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void sock_common(void *s)
{
    int zero = 0;
    int64_t max = (int64_t)WEFT__MSG_MAX + WEFT__CURVE_OVERHEAD;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max);
    /* Sessions bound what they queue (WEFT__WINDOW batches); a send must
     * never fail or block for a full pipe. */
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
}

static void sock_close(void **sp, int linger)
{
    if (*sp != NULL) {
        zmq_setsockopt(*sp, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(*sp);
        *sp = NULL;
    }
}

static epeer *peer_by_key(weft_sync *e, const uint8_t key[WEFT_KEY_BYTES])
{
    for (size_t i = 0; i < e->npeers; i++) {
        if (!e->peers[i]->gone && memcmp(e->peers[i]->st.public_key, key, WEFT_KEY_BYTES) == 0) {
            return e->peers[i];
        }
    }
    return NULL;
}

/* ================================================================ events */

static void evfd_set(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero */
}

static void evfd_clear(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r; /* EAGAIN: already zero */
}

static void publish(weft_sync *e);

/* Queue @p ev (copied) and run the callback. Engine thread. The status and
 * health are published first, so whoever reads weft_sync_status or
 * weft_sync_health_get on an event sees at least what the event reports. */
static void emit(weft_sync *e, const weft_event *ev)
{
    publish(e);
    if (e->opt.on_event != NULL) {
        e->opt.on_event(ev, e->opt.user);
    }
    pthread_mutex_lock(&e->mu);
    bool was_empty = e->evq_len == 0 && e->ev_dropped == 0;
    if (e->evq_len == EVQ_CAP) {
        e->evq_head = (e->evq_head + 1) % EVQ_CAP;
        e->evq_len--;
        e->ev_dropped++;
    }
    e->evq[(e->evq_head + e->evq_len) % EVQ_CAP] = *ev;
    e->evq_len++;
    if (was_empty) {
        evfd_set(e->ev_fd);
    }
    pthread_mutex_unlock(&e->mu);
}

static void emit_msg(weft_sync *e, weft_event_kind kind, const epeer *p, weft_peer_state state,
                     int error, const char *fmt, ...) WEFT__PRINTF(6, 7);

static void emit_msg(weft_sync *e, weft_event_kind kind, const epeer *p, weft_peer_state state,
                     int error, const char *fmt, ...)
{
    weft_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    if (p != NULL) {
        copy_str(ev.peer, sizeof ev.peer, p->st.name);
    }
    ev.state = state;
    ev.error = error;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ev.message, sizeof ev.message, fmt, ap);
        va_end(ap);
    }
    emit(e, &ev);
}

/* ================================================================ status */

/* Pending ops/bytes to @p p from its persisted acknowledged vector,
 * merged with @p mem (a live session's, newer; NULL if none). 0 (also when
 * the peer has just left the store: @p st unchanged) or an error, @p st then
 * unchanged. */
static int refresh_pending(weft_store *s, weft_peer_status *st, const weft_vv *mem)
{
    weft_txn *t = NULL;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        return rc;
    }
    weft_vv *vv = NULL;
    uint64_t ops, bytes;
    rc = weft__peer_acked_get(t, st->public_key, &vv);
    rc = rc ? rc : weft__vv_merge(vv, mem, NULL); /* NULL mem: nothing to merge */
    if (rc == 0 && (rc = weft__store_pending(t, vv, &ops, &bytes)) == 0) {
        st->pending_ops = ops;
        st->pending_bytes = bytes;
    }
    weft_vv_destroy(&vv);
    weft_txn_abort(&t);
    return rc == WEFT_ENOTFOUND ? 0 : rc;
}

static bool in_session(weft_peer_state st)
{
    return st == WEFT_PEER_PULLING || st == WEFT_PEER_PUSHING || st == WEFT_PEER_LIVE;
}

/* Set the peer's state and announce it unless the session already did
 * (@p announced). A change is persisted at once, except moves among
 * pulling/pushing/live, which every live push makes twice: those wait for
 * the PERSIST_MS tick, so a busy session costs no extra commit per write. */
static void set_state(weft_sync *e, epeer *p, weft_peer_state st, bool announced)
{
    if (p->st.state == st) {
        return;
    }
    if (!in_session(p->st.state) || !in_session(st)) {
        p->state_dirty = true;
    }
    p->st.state = st;
    p->dirty = true;
    e->pub_dirty = true;
    const weft_vv *mem = weft__session_acked(p->out.ss);
    /* On failure (memory) the count stays as last computed. */
    (void)refresh_pending(e->store, &p->st, mem != NULL ? mem : weft__session_acked(p->in.ss));
    if (!announced) {
        weft_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = WEFT_EV_STATE;
        copy_str(ev.peer, sizeof ev.peer, p->st.name);
        ev.state = st;
        ev.pending = p->st.pending_ops;
        if (st == WEFT_PEER_ERROR) {
            ev.error = p->st.last_error;
            copy_str(ev.message, sizeof ev.message, p->st.last_error_msg);
        }
        emit(e, &ev);
    }
}

/* Fold the session's counters (since the last fold) into the peer's totals
 * and the engine's health. */
static void fold_stats(weft_sync *e, epeer *p, elink *lk)
{
    const weft__session_stats *ss = weft__session_stats_get(lk->ss);
    uint64_t now[4] = {ss->ops_sent, ss->ops_received, ss->bytes_sent, ss->bytes_received};
    uint64_t d[4];
    bool moved = false;
    for (int i = 0; i < 4; i++) {
        d[i] = now[i] - lk->last_stats[i];
        lk->last_stats[i] = now[i];
        moved |= d[i] != 0;
    }
    if (!moved) {
        return;
    }
    p->st.ops_sent += d[0];
    p->st.ops_received += d[1];
    p->st.bytes_sent += d[2];
    p->st.bytes_received += d[3];
    e->health.ops_sent += d[0];
    e->health.ops_received += d[1];
    e->health.bytes_sent += d[2];
    e->health.bytes_received += d[3];
    p->dirty = true;
    e->pub_dirty = true;
}

/* The state a peer shows: its open link's, else connecting/error/idle. */
static weft_peer_state derived_state(const epeer *p)
{
    if (p->out.ss != NULL) {
        return p->out.state;
    }
    if (p->in.ss != NULL) {
        return p->in.state;
    }
    if (p->st.state == WEFT_PEER_ERROR) {
        return WEFT_PEER_ERROR; /* until the next attempt */
    }
    return p->retry_at != 0 ? WEFT_PEER_CONNECTING : WEFT_PEER_IDLE;
}

static void persist(weft_sync *e, bool force)
{
    uint64_t now = mono_ms();
    bool any = false;
    for (size_t i = 0; i < e->npeers && !any; i++) {
        epeer *p = e->peers[i];
        bool due = force || p->state_dirty || now - p->persisted_mono >= PERSIST_MS;
        any = !p->gone && due &&
              (p->dirty || weft__session_unsaved(p->out.ss) || weft__session_unsaved(p->in.ss));
    }
    if (!any) {
        return;
    }
    weft_txn *t = NULL;
    if (weft_txn_begin(e->store, 0, &t) != 0) {
        return; /* retried at the next tick: dirty stays set */
    }
    uint64_t wall = wall_ms();
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->gone || !(force || p->state_dirty || now - p->persisted_mono >= PERSIST_MS)) {
            continue;
        }
        /* What the peer acknowledged: sessions keep it in memory (a durable
         * commit per ACK would double the fsyncs of a sync). */
        int src = weft__session_save(p->out.ss, t);
        src = src ? src : weft__session_save(p->in.ss, t);
        if (src != 0 && src != WEFT_ENOTFOUND) {
            weft_txn_abort(&t);
            return;
        }
        if (!p->dirty) {
            continue;
        }
        if ((p->out.ss != NULL && weft__session_caught_up(p->out.ss)) ||
            (p->in.ss != NULL && weft__session_caught_up(p->in.ss))) {
            p->st.last_sync_ms = wall;
        }
        p->st.updated_ms = wall;
        int rc = weft__peer_status_put(t, p->st.public_key, &p->st);
        if (rc != 0 && rc != WEFT_ENOTFOUND) {
            weft_txn_abort(&t);
            return;
        }
    }
    if (weft_txn_commit(&t) != 0) {
        return;
    }
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->dirty && (force || p->state_dirty || now - p->persisted_mono >= PERSIST_MS)) {
            p->dirty = p->state_dirty = false;
            p->persisted_mono = now;
        }
    }
}

/* Copy the status of every peer (and the health) for other threads. */
static void publish(weft_sync *e)
{
    if (!e->pub_dirty) {
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < e->npeers; i++) {
        n += !e->peers[i]->gone;
    }
    pthread_mutex_lock(&e->mu);
    if (n > e->pub_cap) {
        weft_peer_status *np = weft__realloc(e->pub, n * sizeof *np);
        if (np == NULL) {
            pthread_mutex_unlock(&e->mu);
            return; /* retried next turn */
        }
        e->pub = np;
        e->pub_cap = n;
    }
    size_t j = 0;
    for (size_t i = 0; i < e->npeers; i++) {
        if (!e->peers[i]->gone) {
            e->pub[j++] = e->peers[i]->st;
        }
    }
    e->npub = j;
    e->pub_health = e->health;
    pthread_mutex_unlock(&e->mu);
    e->pub_dirty = false;
}

/* ================================================================ links */

static void zombie_add(weft_sync *e, const uint8_t *rid, size_t len)
{
    for (size_t i = 0; i < e->nzombies; i++) {
        if (e->zombies[i].len == len && memcmp(e->zombies[i].rid, rid, len) == 0) {
            e->zombies[i].seen_mono = mono_ms();
            return;
        }
    }
    if (e->nzombies == e->zombies_cap) {
        size_t cap = e->zombies_cap ? 2 * e->zombies_cap : 8;
        zombie *nz = weft__realloc(e->zombies, cap * sizeof *nz);
        if (nz == NULL) {
            return; /* its frames will start a session that fails again */
        }
        e->zombies = nz;
        e->zombies_cap = cap;
    }
    zombie *z = &e->zombies[e->nzombies++];
    memcpy(z->rid, rid, len);
    z->len = len;
    z->seen_mono = mono_ms();
}

static bool zombie_hit(weft_sync *e, const uint8_t *rid, size_t len)
{
    for (size_t i = 0; i < e->nzombies; i++) {
        if (e->zombies[i].len == len && memcmp(e->zombies[i].rid, rid, len) == 0) {
            e->zombies[i].seen_mono = mono_ms();
            return true;
        }
    }
    return false;
}

static void zombies_expire(weft_sync *e)
{
    uint64_t now = mono_ms();
    size_t j = 0;
    for (size_t i = 0; i < e->nzombies; i++) {
        if (now - e->zombies[i].seen_mono < ZOMBIE_MS) {
            e->zombies[j++] = e->zombies[i];
        }
    }
    e->nzombies = j;
}

/* Close a link without counting a failure. @p linger lets a dealer flush an
 * ERROR frame the session queued. */
static void link_close(weft_sync *e, epeer *p, elink *lk, int linger)
{
    if (lk->ss != NULL) {
        fold_stats(e, p, lk);
        if (weft__session_unsaved(lk->ss)) {
            weft_txn *t = NULL;
            if (weft_txn_begin(e->store, 0, &t) == 0 && weft__session_save(lk->ss, t) == 0 &&
                weft_txn_commit(&t) != 0) {
                /* lost: relearnt from the peer's next HELLO */
            }
            weft_txn_abort(&t);
        }
        weft__session_destroy(&lk->ss);
    }
    if (lk->outbound) {
        if (lk->dealer != NULL && lk->mon != NULL) {
            zmq_socket_monitor(lk->dealer, NULL, 0);
        }
        sock_close(&lk->mon, 0);
        sock_close(&lk->dealer, linger);
        lk->handshaken = false;
    } else if (lk->rid_len > 0) {
        zombie_add(e, lk->rid, lk->rid_len);
        lk->rid_len = 0;
    }
    lk->live_seen = false;
    lk->state = WEFT_PEER_IDLE;
    memset(lk->last_stats, 0, sizeof lk->last_stats);
}

/* Whether the engine connects to @p p: it has an address and either every
 * such peer is connected to (opt.connect) or weft_sync_now named it. */
static bool may_connect(const weft_sync *e, const epeer *p)
{
    return !p->gone && p->st.addr[0] != '\0' && (e->opt.connect || p->wanted);
}

static void schedule_retry(weft_sync *e, epeer *p)
{
    if (!may_connect(e, p)) {
        p->retry_at = 0;
        return;
    }
    p->retry_at = mono_ms() + jitter(e, p->backoff_ms);
    uint64_t next = (uint64_t)p->backoff_ms * 2u;
    p->backoff_ms = next > e->opt.backoff_max_ms ? e->opt.backoff_max_ms : (uint32_t)next;
}

/* A link failed: close it, record the error, announce it, and (outbound, or
 * inbound from a peer we can reach) schedule a retry with backoff. */
enum {
    LF_FLUSH = 1, /* let a dealer flush the ERROR frame its session queued */
    LF_QUIET = 2, /* the session already emitted WEFT_EV_ERROR */
};

static void link_fail(weft_sync *e, epeer *p, elink *lk, int err, int flags, const char *fmt, ...)
    WEFT__PRINTF(6, 7);

static void link_fail(weft_sync *e, epeer *p, elink *lk, int err, int flags, const char *fmt, ...)
{
    char msg[WEFT_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    link_close(e, p, lk, (flags & LF_FLUSH) ? ERROR_LINGER_MS : 0);
    p->st.failures++;
    e->health.failures++;
    p->st.last_error = err;
    copy_str(p->st.last_error_msg, sizeof p->st.last_error_msg, msg);
    p->dirty = p->state_dirty = true;
    e->pub_dirty = true;
    if (!(flags & LF_QUIET)) {
        emit_msg(e, WEFT_EV_ERROR, p, WEFT_PEER_ERROR, err, "%s", msg);
    }
    if (p->out.ss == NULL && p->in.ss == NULL) {
        set_state(e, p, WEFT_PEER_ERROR, false);
        if (p->retry_at == 0) {
            schedule_retry(e, p);
        }
    }
}

/* Follow the session's counters, clock offset and skew, and count its first
 * LIVE. Runs before its events are passed on (counters before events). */
static void follow_session(weft_sync *e, epeer *p, elink *lk)
{
    fold_stats(e, p, lk);
    const weft__session_stats *sst = weft__session_stats_get(lk->ss);
    weft_peer_state st = weft__session_state(lk->ss);
    if (st != WEFT_PEER_CONNECTING && st != WEFT_PEER_IDLE &&
        sst->clock_offset_ms != p->st.clock_offset_ms) {
        p->st.clock_offset_ms = sst->clock_offset_ms;
        p->dirty = true;
    }
    /* skewed: set by a deferral either way, cleared by a batch applied in full. */
    int skewed = p->st.skewed;
    if (sst->skew_in == 1 || sst->skew_out == 1) {
        skewed = 1;
    } else if (sst->skew_in == 0 || sst->skew_out == 0) {
        skewed = 0;
    }
    /* caught_up_ms: the session reached LIVE, even if a BYE handed over
     * with the frames that got it there closed it before we looked. */
    if ((st == WEFT_PEER_LIVE || sst->caught_up_ms != 0) && !lk->live_seen) {
        lk->live_seen = true;
        uint64_t dur = mono_ms() - lk->started_mono;
        p->st.syncs++;
        p->st.last_sync_ms = wall_ms();
        p->st.last_duration_ms = dur;
        p->st.last_error = 0;
        p->st.last_error_msg[0] = '\0';
        skewed = 0; /* caught up both ways: nothing is deferred */
        p->backoff_ms = e->opt.backoff_min_ms;
        e->health.sessions++;
        e->health.last_duration_ms = dur;
        e->health.total_duration_ms += dur;
        if (dur > e->health.max_duration_ms) {
            e->health.max_duration_ms = dur;
        }
        p->dirty = true;
    }
    if (skewed != p->st.skewed) {
        p->st.skewed = skewed;
        p->dirty = true;
    }
    e->pub_dirty = true;
    lk->state = st;
}

/* Send every frame the session queued, follow its counters and state, then
 * pass its events on (emit publishes first, so a consumer of an event sees
 * status and health that already include it). Returns 0, or WEFT_EIO when a
 * send failed (the link is then closed). */
static int pump(weft_sync *e, epeer *p, elink *lk)
{
    weft_bytes f;
    while (lk->ss != NULL && weft__session_next(lk->ss, &f) == 1) {
        int rc;
        if (lk->outbound) {
            rc = zmq_send(lk->dealer, f.ptr, f.len, ZMQ_DONTWAIT);
        } else {
            rc = zmq_send(e->router, lk->rid, lk->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            if (rc >= 0) {
                rc = zmq_send(e->router, f.ptr, f.len, ZMQ_DONTWAIT);
            }
        }
        if (rc < 0) {
            int en = zmq_errno();
            link_fail(e, p, lk, WEFT_EIO, 0, "sending to %s failed: %s", p->st.name,
                      en == EHOSTUNREACH ? "it disconnected" : zmq_strerror(en));
            return WEFT_EIO;
        }
    }
    if (lk->ss == NULL) {
        return 0;
    }
    follow_session(e, p, lk);
    bool first = true;
    for (;;) {
        /* The session holds at most its own queue's worth; take a chunk. */
        weft_event evs[PUMP_EVENTS];
        size_t n = 0;
        weft_peer_state announced = (weft_peer_state)-1;
        while (n < PUMP_EVENTS && weft__session_event(lk->ss, &evs[n]) == 1) {
            copy_str(evs[n].peer, sizeof evs[n].peer, p->st.name);
            if (evs[n].kind == WEFT_EV_STATE) {
                announced = evs[n].state;
            }
            n++;
        }
        if (first) {
            weft_peer_state d = derived_state(p);
            set_state(e, p, d, announced == d);
            first = false;
        }
        for (size_t i = 0; i < n; i++) {
            emit(e, &evs[i]);
        }
        if (n < PUMP_EVENTS) {
            break;
        }
    }
    return 0;
}

/* On stop: queue BYE on the link's session, hand the frames to the socket
 * (errors ignored: the peer may be gone already), and close the link giving
 * the socket BYE_LINGER_MS to flush them. A dealer whose handshake never
 * completed gets no linger (nothing can reach that peer). Not a failure. */
static void say_bye(weft_sync *e, epeer *p, elink *lk)
{
    if (lk->ss == NULL) {
        link_close(e, p, lk, 0);
        return;
    }
    bool reachable = lk->outbound ? lk->handshaken : true;
    weft_bytes f;
    if (weft__session_bye(lk->ss) == 0) {
        while (weft__session_next(lk->ss, &f) == 1) {
            if (lk->outbound) {
                zmq_send(lk->dealer, f.ptr, f.len, ZMQ_DONTWAIT);
            } else if (zmq_send(e->router, lk->rid, lk->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) {
                zmq_send(e->router, f.ptr, f.len, ZMQ_DONTWAIT);
            }
        }
    }
    if (!lk->outbound && reachable) {
        e->router_linger = BYE_LINGER_MS;
    }
    link_close(e, p, lk, reachable ? BYE_LINGER_MS : 0);
}

/* Feed frames received in a row to a link's session, then pump. */
static void feed(weft_sync *e, epeer *p, elink *lk, const weft_bytes *frames, size_t n)
{
    int rc = weft__session_recv_many(lk->ss, frames, n, wall_ms());
    if (rc == 0) {
        /* The session's contract: poll after every recv. An ACK frees window
         * room, and only poll streams the next batch into it (until this
         * was called here, a store commit on the ACK path happened to wake
         * the engine; without it every batch waited for a timer). */
        rc = weft__session_poll(lk->ss, wall_ms());
    }
    char msg[WEFT_MSG_MAX] = "";
    if (rc < 0) {
        copy_str(msg, sizeof msg, weft_last_error());
    }
    if (pump(e, p, lk) != 0) {
        return;
    }
    if (rc == WEFT__SESSION_BYE) {
        /* A clean goodbye: not a failure. The connecting side comes back
         * with the usual backoff (the peer may be restarting). */
        link_close(e, p, lk, 0);
        if (lk->outbound) {
            schedule_retry(e, p);
        }
        set_state(e, p, derived_state(p), false);
        return;
    }
    if (rc < 0) {
        if (rc == WEFT_EBUSY && lk->outbound) {
            /* The peer keeps the session it initiated; ours is redundant. */
            link_close(e, p, lk, 0);
            schedule_retry(e, p);
            set_state(e, p, derived_state(p), false);
            return;
        }
        link_fail(e, p, lk, rc, LF_FLUSH | LF_QUIET, "session with %s failed: %s", p->st.name,
                  msg[0] ? msg : weft_strerror(rc));
    }
}

/* Advance a link's session (timers, new local ops), then pump. */
static void poll_link(weft_sync *e, epeer *p, elink *lk)
{
    int rc = weft__session_poll(lk->ss, wall_ms());
    char msg[WEFT_MSG_MAX] = "";
    if (rc < 0) {
        copy_str(msg, sizeof msg, weft_last_error());
    }
    if (pump(e, p, lk) != 0 || rc >= 0) {
        return;
    }
    if (rc == WEFT_EIO && lk->outbound && !lk->handshaken) {
        link_fail(e, p, lk, WEFT_EIO, LF_QUIET, "cannot reach %s at %s", p->st.name, p->st.addr);
    } else if (rc == WEFT_EIO && weft__session_silent(lk->ss)) {
        link_fail(e, p, lk, WEFT_EIO, LF_QUIET, "%s went silent for %u ms", p->st.name,
                  (unsigned)e->opt.dead_ms);
    } else { /* e.g. an OPS never acknowledged: the session queued ERROR */
        link_fail(e, p, lk, rc, LF_FLUSH | LF_QUIET, "session with %s failed: %s", p->st.name,
                  msg[0] ? msg : weft_strerror(rc));
    }
}

static int session_open(weft_sync *e, epeer *p, elink *lk)
{
    weft__session_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    memcpy(cfg.peer_key, p->st.public_key, WEFT_KEY_BYTES);
    copy_str(cfg.name, sizeof cfg.name, p->st.name);
    cfg.role = e->opt.relay ? WEFT_ROLE_RELAY : WEFT_ROLE_DEVICE;
    cfg.heartbeat_ms = e->opt.heartbeat_ms;
    cfg.dead_ms = e->opt.dead_ms;
    lk->started_mono = mono_ms();
    lk->live_seen = false;
    lk->state = WEFT_PEER_CONNECTING;
    memset(lk->last_stats, 0, sizeof lk->last_stats);
    return weft__session_new(e->store, &cfg, wall_ms(), &lk->ss);
}

/* Open the outbound link to @p p: dealer, monitor, session (HELLO queued). */
static void connect_peer(weft_sync *e, epeer *p)
{
    elink *lk = &p->out;
    p->retry_at = 0;
    if (lk->ss != NULL || p->in.ss != NULL || !may_connect(e, p)) {
        return;
    }
    lk->outbound = true;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://weft-mon-%u", e->mon_seq++);
    int rc = 0;
    const char *what = "socket";
    lk->dealer = zmq_socket(e->ctx, ZMQ_DEALER);
    if (lk->dealer == NULL) {
        rc = -1;
    } else {
        sock_common(lk->dealer);
        if (zmq_setsockopt(lk->dealer, ZMQ_CURVE_SERVERKEY, p->st.public_key, WEFT_KEY_BYTES) ||
            zmq_setsockopt(lk->dealer, ZMQ_CURVE_PUBLICKEY, e->pk, WEFT_KEY_BYTES) ||
            zmq_setsockopt(lk->dealer, ZMQ_CURVE_SECRETKEY, e->sk, WEFT_KEY_BYTES)) {
            rc = -1, what = "CURVE keys";
        } else if (zmq_socket_monitor(lk->dealer, ep,
                                      ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |
                                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
            rc = -1, what = "monitor";
        } else if ((lk->mon = zmq_socket(e->ctx, ZMQ_PAIR)) == NULL ||
                   zmq_setsockopt(lk->mon, ZMQ_LINGER, &(int){0}, sizeof(int)) ||
                   zmq_connect(lk->mon, ep) != 0) {
            rc = -1, what = "monitor";
        } else if (zmq_connect(lk->dealer, p->st.addr) != 0) {
            rc = -1, what = p->st.addr;
        }
    }
    if (rc != 0) {
        int en = zmq_errno();
        link_close(e, p, lk, 0);
        link_fail(e, p, lk, WEFT_EIO, 0, "cannot connect to %s (%s): %s", p->st.name, what,
                  zmq_strerror(en));
        return;
    }
    rc = session_open(e, p, lk);
    if (rc != 0) {
        char msg[WEFT_MSG_MAX];
        copy_str(msg, sizeof msg, weft_last_error());
        link_close(e, p, lk, 0);
        if (rc == WEFT_ENOTFOUND) {
            p->gone = true; /* removed meanwhile; reload_peers will agree */
            return;
        }
        link_fail(e, p, lk, rc, 0, "cannot start a session with %s: %s", p->st.name, msg);
        return;
    }
    pump(e, p, lk); /* HELLO out; the session announces CONNECTING */
}

/* ================================================================ peers */

typedef struct peer_list {
    weft_peer_status *v;
    size_t n, cap;
    bool oom;
} peer_list;

static int collect_peer(const weft_peer_status *st, void *user)
{
    peer_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        weft_peer_status *nv = weft__realloc(l->v, cap * sizeof *nv);
        if (nv == NULL) {
            l->oom = true;
            return 1;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = *st;
    return 0;
}

/* Re-read the store's peer list: new peers are added (and connected to),
 * removed ones closed, changed names/addresses/roles taken over. */
static int reload_peers(weft_sync *e)
{
    peer_list l = {NULL, 0, 0, false};
    int rc = weft_peer_list(e->store, collect_peer, &l);
    e->reload_mono = mono_ms();
    if (rc >= 0 && l.oom) {
        rc = weft__err(WEFT_ENOMEM, "out of memory reading the peer list");
    }
    /* A reload that fails is retried (run_timers) rather than lost. */
    e->reload_wanted = rc < 0;
    if (rc < 0) {
        weft__free(l.v);
        return rc;
    }
    bool oom = false;
    for (size_t i = 0; i < e->npeers; i++) {
        e->peers[i]->seen = false;
    }
    for (size_t i = 0; i < l.n; i++) {
        const weft_peer_status *st = &l.v[i];
        epeer *p = peer_by_key(e, st->public_key);
        if (p == NULL) {
            if (e->npeers == e->peers_cap) {
                size_t cap = e->peers_cap ? 2 * e->peers_cap : 8;
                epeer **np = weft__realloc(e->peers, cap * sizeof *np);
                if (np == NULL) {
                    oom = true;
                    continue;
                }
                e->peers = np;
                e->peers_cap = cap;
            }
            p = weft__calloc(1, sizeof *p);
            if (p == NULL) {
                oom = true;
                continue;
            }
            p->st = *st; /* persisted totals carry on */
            p->st.state = WEFT_PEER_IDLE;
            p->st.last_error = 0;
            p->st.last_error_msg[0] = '\0';
            p->out.outbound = true;
            p->backoff_ms = e->opt.backoff_min_ms;
            p->dirty = p->state_dirty = true;
            e->peers[e->npeers++] = p;
            if (e->opt.connect && p->st.addr[0] != '\0') {
                p->retry_at = mono_ms(); /* connect at once */
            }
        } else {
            bool addr_changed = strcmp(p->st.addr, st->addr) != 0;
            copy_str(p->st.name, sizeof p->st.name, st->name);
            p->st.role = st->role;
            copy_str(p->st.addr, sizeof p->st.addr, st->addr);
            p->st.pending_ops = st->pending_ops;
            p->st.pending_bytes = st->pending_bytes;
            if (addr_changed) {
                link_close(e, p, &p->out, 0);
                p->backoff_ms = e->opt.backoff_min_ms;
                p->retry_at = may_connect(e, p) ? mono_ms() : 0;
            }
        }
        p->seen = true;
    }
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (!p->seen && !p->gone) {
            link_close(e, p, &p->out, 0);
            link_close(e, p, &p->in, 0);
            p->gone = true;
        }
    }
    weft__free(l.v);
    e->pub_dirty = true;
    if (oom) { /* a peer could not be added: fail (start) or retry (thread) */
        e->reload_wanted = true;
        return weft__err(WEFT_ENOMEM, "out of memory adding a peer to the sync engine");
    }
    return 0;
}

/* Free peers marked gone. Only at the end of a loop turn (invariant 5). */
static void sweep_peers(weft_sync *e)
{
    size_t j = 0;
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->gone) {
            link_close(e, p, &p->out, 0);
            link_close(e, p, &p->in, 0);
            weft__free(p);
            e->pub_dirty = true;
        } else {
            e->peers[j++] = p;
        }
    }
    e->npeers = j;
}

/* ================================================================ refusals */

/* Remember one refused handshake for the store (persist_refusals). */
static void refusal_note(weft_sync *e, const uint8_t *key, const char *addr)
{
    if (e->ref_n == WEFT_REFUSALS_MAX) {
        memmove(e->ref_new, e->ref_new + 1, (WEFT_REFUSALS_MAX - 1) * sizeof e->ref_new[0]);
        e->ref_n--;
    }
    weft_refusal *r = &e->ref_new[e->ref_n++];
    memset(r, 0, sizeof *r);
    if (key != NULL) {
        memcpy(r->public_key, key, WEFT_KEY_BYTES);
    }
    copy_str(r->addr, sizeof r->addr, addr);
    r->at_ms = wall_ms();
    e->ref_unsaved++;
}

/* Add the refusals noted since the last write to the store's record, at most
 * once per REFUSED_WRITE_MS unless @p force: a flood of unknown clients costs
 * one durable commit a second, not one per handshake. A failed write is
 * retried at the next tick. */
static void persist_refusals(weft_sync *e, bool force)
{
    uint64_t now = mono_ms();
    if (e->ref_unsaved == 0 || (!force && now - e->ref_saved_mono < REFUSED_WRITE_MS)) {
        return;
    }
    e->ref_saved_mono = now;
    weft_txn *t = NULL;
    int rc = weft_txn_begin(e->store, 0, &t);
    rc = rc ? rc : weft__refusals_add(t, e->ref_unsaved, e->ref_new, e->ref_n);
    rc = rc ? rc : weft_txn_commit(&t);
    weft_txn_abort(&t);
    if (rc == 0) {
        e->ref_unsaved = 0;
        e->ref_n = 0;
    }
}

/* ================================================================ ZAP */

static int zap_send(void *s, const void *p, size_t n, bool more)
{
    return zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0);
}

/* Answer one ZAP request (RFC 27). Only CURVE clients whose key is a peer of
 * the store are admitted; the store is read at every request so peers added
 * or removed by other processes count at the next handshake. Returns 0, or
 * -1 when no request was waiting. */
static int zap_serve_one(weft_sync *e)
{
    zmq_msg_t parts[8];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, e->zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(&m);
            if (n == 0) {
                return -1;
            }
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 8) {
            parts[n++] = m;
        } else {
            zmq_msg_close(&m);
        }
    }
    const char *status = "400", *text = "unknown key";
    char user[2 * WEFT_KEY_BYTES + 1] = "";
    char addr[64] = "";
    const char *why = "not in the peer list";
    uint8_t key[WEFT_KEY_BYTES];
    bool have_key = false;
    if (n >= 4 && zmq_msg_size(&parts[3]) < sizeof addr) {
        memcpy(addr, zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]));
        addr[zmq_msg_size(&parts[3])] = '\0';
    }
    if (n >= 7 && zmq_msg_size(&parts[5]) == 5 &&
        memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&parts[6]) == WEFT_KEY_BYTES) {
        memcpy(key, zmq_msg_data(&parts[6]), WEFT_KEY_BYTES);
        have_key = true;
        weft_txn *t = NULL;
        weft_peer_status st;
        int rc = weft_txn_begin(e->store, WEFT_TXN_RDONLY, &t);
        if (rc == 0) {
            rc = weft__peer_by_key(t, key, &st);
            weft_txn_abort(&t);
        }
        if (rc == 0) {
            status = "200";
            text = "OK";
            weft__hex_encode(user, key, WEFT_KEY_BYTES);
        } else if (rc != WEFT_ENOTFOUND) {
            status = "500";
            text = "cannot read the peer list";
            why = "the peer list could not be read";
        }
    } else {
        text = "CURVE required";
        why = "not a CURVE client";
    }
    if (n >= 2) {
        zap_send(e->zap, "1.0", 3, true);
        zap_send(e->zap, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), true);
        zap_send(e->zap, status, 3, true);
        zap_send(e->zap, text, strlen(text), true);
        zap_send(e->zap, user, strlen(user), true);
        zap_send(e->zap, "", 0, false);
    }
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&parts[i]);
    }
    if (status[0] != '2') {
        char hex[2 * WEFT_KEY_BYTES + 1] = "";
        if (have_key) {
            weft__hex_encode(hex, key, WEFT_KEY_BYTES);
        }
        e->health.refused++;
        e->pub_dirty = true;
        refusal_note(e, have_key ? key : NULL, addr);
        weft_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = WEFT_EV_REFUSED;
        ev.error = WEFT_EAUTH;
        /* "refused key <hex> from <addr>: not in the peer list" */
        snprintf(ev.message, sizeof ev.message, "refused %s%s%s%s: %s",
                 have_key ? "key " : "client", hex, addr[0] ? " from " : "", addr, why);
        emit(e, &ev);
    }
    return 0;
}

/* ================================================================ inbound */

/* The first frame of a routing id not seen before: find the peer by its
 * CURVE key (ZAP User-Id), settle duplicate sessions, open the link. */
static void accept_inbound(weft_sync *e, const uint8_t *rid, size_t rid_len, zmq_msg_t *body)
{
    uint8_t key[WEFT_KEY_BYTES];
    if (!user_id_decode(zmq_msg_gets(body, "User-Id"), key)) {
        zombie_add(e, rid, rid_len);
        return;
    }
    epeer *p = peer_by_key(e, key);
    if (p == NULL) {
        reload_peers(e); /* added by another process since our last look */
        p = peer_by_key(e, key);
    }
    if (p == NULL) {
        zombie_add(e, rid, rid_len);
        return;
    }
    if (p->in.ss != NULL) {
        link_close(e, p, &p->in, 0); /* the peer reconnected: the new one wins */
    }
    if (p->out.ss != NULL) {
        if (e->device < p->st.device) {
            /* Both sides connected; the session we initiated is kept. */
            weft__buf_reset(&e->scratch);
            if (weft__msg_error(&e->scratch, WEFT_EBUSY,
                                "duplicate session: keeping the one initiated by the smaller "
                                "device id") == 0) {
                zmq_send(e->router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
                zmq_send(e->router, e->scratch.ptr, e->scratch.len, ZMQ_DONTWAIT);
            }
            zombie_add(e, rid, rid_len);
            return;
        }
        link_close(e, p, &p->out, 0); /* the peer's session wins */
        p->retry_at = 0;
    }
    elink *lk = &p->in;
    lk->outbound = false;
    memcpy(lk->rid, rid, rid_len);
    lk->rid_len = rid_len;
    p->retry_at = 0;
    int rc = session_open(e, p, lk);
    if (rc != 0) {
        char msg[WEFT_MSG_MAX];
        copy_str(msg, sizeof msg, weft_last_error());
        link_close(e, p, lk, 0);
        if (rc != WEFT_ENOTFOUND) {
            link_fail(e, p, lk, rc, 0, "cannot start a session with %s: %s", p->st.name, msg);
        }
        return;
    }
    if (pump(e, p, lk) == 0) {
        weft_bytes f = {zmq_msg_data(body), zmq_msg_size(body)};
        feed(e, p, lk, &f, 1);
    }
}

/* Frames of one inbound link received in a row, fed together. */
typedef struct rgroup {
    epeer *p;
    size_t n;
    zmq_msg_t m[WEFT__APPLY_GROUP];
    weft_bytes f[WEFT__APPLY_GROUP];
} rgroup;

static void rgroup_flush(weft_sync *e, rgroup *g)
{
    if (g->n > 0) {
        feed(e, g->p, &g->p->in, g->f, g->n);
    }
    for (size_t i = 0; i < g->n; i++) {
        zmq_msg_close(&g->m[i]);
    }
    g->n = 0;
    g->p = NULL;
}

static void router_recv(weft_sync *e)
{
    rgroup g;
    g.n = 0;
    g.p = NULL;
    for (int burst = 0; burst < RECV_BURST && e->router != NULL; burst++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, e->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            break;
        }
        if (!zmq_msg_more(&rid) || zmq_msg_size(&rid) > RID_MAX || zmq_msg_size(&rid) == 0) {
            zmq_msg_close(&rid);
            continue;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, e->router, 0); /* multipart: already all here */
        bool extra = zmq_msg_more(&body);
        while (zmq_msg_more(&body)) { /* drop extra parts */
            zmq_msg_t x;
            zmq_msg_init(&x);
            int r = zmq_msg_recv(&x, e->router, 0);
            bool m = r >= 0 && zmq_msg_more(&x);
            zmq_msg_close(&x);
            if (!m) {
                break;
            }
        }
        const uint8_t *r = zmq_msg_data(&rid);
        size_t rl = zmq_msg_size(&rid);
        epeer *p = NULL;
        for (size_t i = 0; i < e->npeers && p == NULL; i++) {
            epeer *q = e->peers[i];
            if (!q->gone && q->in.ss != NULL && q->in.rid_len == rl &&
                memcmp(q->in.rid, r, rl) == 0) {
                p = q;
            }
        }
        if (p != NULL && !extra && (g.p == NULL || g.p == p)) {
            /* Keep it with the link's frames before it; fed together. */
            zmq_msg_init(&g.m[g.n]);
            zmq_msg_move(&g.m[g.n], &body);
            g.f[g.n] = (weft_bytes){zmq_msg_data(&g.m[g.n]), zmq_msg_size(&g.m[g.n])};
            g.p = p;
            if (++g.n == WEFT__APPLY_GROUP) {
                rgroup_flush(e, &g);
            }
            zmq_msg_close(&body);
            zmq_msg_close(&rid);
            continue;
        }
        rgroup_flush(e, &g); /* in order: the frames before this one first */
        if (p != NULL && extra) {
            link_fail(e, p, &p->in, WEFT_ECORRUPT, 0,
                      "%s sent a multipart message; weft messages are one frame", p->st.name);
        } else if (p != NULL && p->in.ss != NULL) {
            weft_bytes f = {zmq_msg_data(&body), zmq_msg_size(&body)};
            feed(e, p, &p->in, &f, 1);
        } else if (p == NULL && !zombie_hit(e, r, rl)) {
            accept_inbound(e, r, rl, &body);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
    rgroup_flush(e, &g);
}

/* ================================================================ outbound */

static void dealer_recv(weft_sync *e, epeer *p)
{
    for (int burst = 0; burst < RECV_BURST && p->out.ss != NULL;) {
        zmq_msg_t m[WEFT__APPLY_GROUP];
        weft_bytes f[WEFT__APPLY_GROUP];
        size_t n = 0;
        bool extra = false, drained = false;
        while (n < WEFT__APPLY_GROUP && !extra && !drained) {
            zmq_msg_init(&m[n]);
            if (zmq_msg_recv(&m[n], p->out.dealer, ZMQ_DONTWAIT) < 0) {
                drained = true;
            } else if (zmq_msg_more(&m[n])) {
                extra = true;
            } else {
                f[n] = (weft_bytes){zmq_msg_data(&m[n]), zmq_msg_size(&m[n])};
                n++;
                continue;
            }
            zmq_msg_close(&m[n]);
        }
        if (n > 0) {
            feed(e, p, &p->out, f, n); /* its OPS share one commit */
        }
        for (size_t i = 0; i < n; i++) {
            zmq_msg_close(&m[i]);
        }
        if (extra && p->out.ss != NULL) {
            link_fail(e, p, &p->out, WEFT_ECORRUPT, 0,
                      "%s sent a multipart message; weft messages are one frame", p->st.name);
        }
        if (extra || drained) {
            return;
        }
        burst += (int)n;
    }
}

static void monitor_recv(weft_sync *e, epeer *p)
{
    while (p->out.mon != NULL) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->out.mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&m) >= 6) { /* unaligned: memcpy */
            memcpy(&event, zmq_msg_data(&m), 2);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        while (zmq_msg_more(&m)) { /* the endpoint frame */
            zmq_msg_close(&m);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, p->out.mon, 0) < 0) {
                break;
            }
        }
        zmq_msg_close(&m);
        switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            p->out.handshaken = true;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            emit_msg(e, WEFT_EV_REFUSED, p, WEFT_PEER_ERROR, WEFT_EAUTH,
                     "refused by %s: our key is not in its peer list", p->st.name);
            link_fail(e, p, &p->out, WEFT_EAUTH, 0,
                      "refused by %s: our key is not in its peer list (ZAP status %u)", p->st.name,
                      (unsigned)value);
            return;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            /* libzmq reports a wrong server key and a connection cut during
             * the handshake alike (the chaos test's proxies cut it): say
             * both. A wrong key fails every retry; a cut does not. */
            emit_msg(e, WEFT_EV_REFUSED, p, WEFT_PEER_ERROR, WEFT_EAUTH,
                     "handshake with %s failed: wrong server key in its card, or the "
                     "connection was cut",
                     p->st.name);
            link_fail(e, p, &p->out, WEFT_EAUTH, 0,
                      "handshake with %s at %s failed: wrong server key in its card, or the "
                      "connection was cut",
                      p->st.name, p->st.addr);
            return;
        case ZMQ_EVENT_CONNECT_RETRIED:
            link_fail(e, p, &p->out, WEFT_EIO, 0, "cannot connect to %s at %s", p->st.name,
                      p->st.addr);
            return;
        case ZMQ_EVENT_DISCONNECTED:
            if (p->out.handshaken) {
                link_fail(e, p, &p->out, WEFT_EIO, 0, "connection to %s at %s lost", p->st.name,
                          p->st.addr);
            } else {
                link_fail(e, p, &p->out, WEFT_EIO, 0,
                          "connection to %s at %s closed during the handshake", p->st.name,
                          p->st.addr);
            }
            return;
        default:
            break;
        }
    }
}

/* ================================================================ the loop */

static void poll_all(weft_sync *e)
{
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->out.ss != NULL) {
            poll_link(e, p, &p->out);
        }
        if (p->in.ss != NULL) {
            poll_link(e, p, &p->in);
        }
    }
}

/* Take the commands other threads queued. Returns true to stop. */
static bool take_commands(weft_sync *e)
{
    evfd_clear(e->wake_fd);
    pthread_mutex_lock(&e->mu);
    bool stop = e->stop_req, all = e->now_all;
    size_t n = e->n_now;
    char names[NOW_MAX][WEFT_PEER_NAME_MAX + 1];
    memcpy(names, e->now_names, n * sizeof names[0]);
    e->now_all = false;
    e->n_now = 0;
    pthread_mutex_unlock(&e->mu);
    if (stop) {
        return true;
    }
    if (!all && n == 0) {
        return false;
    }
    reload_peers(e);
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        bool hit = all;
        for (size_t j = 0; j < n && !hit; j++) {
            hit = strcmp(p->st.name, names[j]) == 0;
        }
        if (hit && !p->gone) {
            /* An explicit request: honoured even with opt.connect 0, and kept
             * (retries with backoff) until the engine stops. */
            p->wanted = p->st.addr[0] != '\0';
            p->backoff_ms = e->opt.backoff_min_ms;
            if (p->out.ss == NULL && p->in.ss == NULL && may_connect(e, p)) {
                p->retry_at = mono_ms();
            }
        }
    }
    return false;
}

static int build_items(weft_sync *e, size_t *nitems)
{
    size_t need = 4 + 2 * e->npeers;
    if (need > e->items_cap) {
        zmq_pollitem_t *ni = weft__realloc(e->items, need * sizeof *ni);
        if (ni == NULL) {
            return WEFT_ENOMEM;
        }
        e->items = ni;
        epeer **np = weft__realloc(e->item_peer, need * sizeof *np);
        if (np == NULL) {
            return WEFT_ENOMEM;
        }
        e->item_peer = np;
        e->items_cap = need;
    }
    size_t n = 0;
    zmq_pollitem_t *it = e->items;
    memset(it, 0, need * sizeof *it);
    it[n].fd = e->wake_fd, it[n].events = ZMQ_POLLIN, e->item_peer[n++] = NULL;
    it[n].fd = e->store_fd, it[n].events = e->store_fd >= 0 ? ZMQ_POLLIN : 0,
    e->item_peer[n++] = NULL;
    it[n].socket = e->zap, it[n].events = ZMQ_POLLIN, e->item_peer[n++] = NULL;
    if (e->router != NULL) {
        it[n].socket = e->router, it[n].events = ZMQ_POLLIN, e->item_peer[n++] = NULL;
    }
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->out.dealer != NULL) {
            it[n].socket = p->out.dealer, it[n].events = ZMQ_POLLIN, e->item_peer[n++] = p;
            it[n].socket = p->out.mon, it[n].events = ZMQ_POLLIN, e->item_peer[n++] = p;
        }
    }
    *nitems = n;
    return 0;
}

static long next_timeout(weft_sync *e)
{
    uint64_t mono = mono_ms(), wall = wall_ms();
    int64_t t = 1000;
#define WEFT__MIN_T(x)    \
    do {                  \
        int64_t x_ = (x); \
        if (x_ < t) {     \
            t = x_;       \
        }                 \
    } while (0)
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->out.ss != NULL) {
            WEFT__MIN_T((int64_t)weft__session_deadline(p->out.ss) - (int64_t)wall);
        }
        if (p->in.ss != NULL) {
            WEFT__MIN_T((int64_t)weft__session_deadline(p->in.ss) - (int64_t)wall);
        }
        if (p->retry_at != 0) {
            WEFT__MIN_T((int64_t)p->retry_at - (int64_t)mono);
        }
        if (p->dirty) {
            WEFT__MIN_T((int64_t)(p->persisted_mono + PERSIST_MS) - (int64_t)mono);
        }
    }
    if (e->reload_wanted) {
        WEFT__MIN_T((int64_t)(e->reload_mono + RELOAD_MS) - (int64_t)mono);
    }
    if (e->ref_unsaved > 0) {
        WEFT__MIN_T((int64_t)(e->ref_saved_mono + REFUSED_WRITE_MS) - (int64_t)mono);
    }
    if (e->store_fd < 0) {
        WEFT__MIN_T((int64_t)NO_STORE_FD_MS);
    }
#undef WEFT__MIN_T
    return t < 0 ? 0 : (long)t;
}

static void run_timers(weft_sync *e)
{
    uint64_t mono = mono_ms(), wall = wall_ms();
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        if (p->out.ss != NULL && weft__session_deadline(p->out.ss) <= wall) {
            poll_link(e, p, &p->out);
        }
        if (p->in.ss != NULL && weft__session_deadline(p->in.ss) <= wall) {
            poll_link(e, p, &p->in);
        }
        if (p->retry_at != 0 && p->retry_at <= mono && !p->gone) {
            connect_peer(e, p);
        }
    }
    if (e->reload_wanted && mono - e->reload_mono >= RELOAD_MS) {
        reload_peers(e);
    }
}

static void *engine_main(void *arg)
{
    weft_sync *e = arg;
    uint64_t last_store_poll = mono_ms();
    for (;;) {
        size_t n = 0;
        if (build_items(e, &n) != 0) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL); /* out of memory: try again shortly */
            continue;
        }
        int rc = zmq_poll(e->items, (int)n, next_timeout(e));
        if (rc < 0 && zmq_errno() == ETERM) {
            break;
        }
        if (rc > 0 && (e->items[0].revents & ZMQ_POLLIN) && take_commands(e)) {
            break;
        }
        bool store_tick = e->store_fd < 0 && mono_ms() - last_store_poll >= NO_STORE_FD_MS;
        if ((rc > 0 && (e->items[1].revents & ZMQ_POLLIN)) || store_tick) {
            last_store_poll = mono_ms();
            if (weft_store_changed(e->store, NULL) == 1) {
                poll_all(e);
                e->reload_wanted = true;
            }
        }
        if (rc > 0) {
            if (e->items[2].revents & ZMQ_POLLIN) {
                for (int i = 0; i < 64 && zap_serve_one(e) == 0; i++) {
                }
            }
            for (size_t i = 3; i < n; i++) {
                if (!(e->items[i].revents & ZMQ_POLLIN)) {
                    continue;
                }
                epeer *p = e->item_peer[i];
                if (p == NULL) {
                    router_recv(e);
                } else if (e->items[i].socket == p->out.dealer) {
                    dealer_recv(e, p);
                } else if (e->items[i].socket == p->out.mon) {
                    monitor_recv(e, p);
                }
            }
        }
        run_timers(e);
        zombies_expire(e);
        persist(e, false);
        persist_refusals(e, false);
        sweep_peers(e);
        publish(e);
    }
    /* Shutdown: say goodbye on every open link, close it, show the peers
     * idle, persist. */
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        say_bye(e, p, &p->out);
        say_bye(e, p, &p->in);
        p->retry_at = 0;
        if (p->st.state != WEFT_PEER_ERROR) {
            set_state(e, p, WEFT_PEER_IDLE, false);
        }
    }
    persist(e, true);
    persist_refusals(e, true);
    publish(e);
    return NULL;
}

/* ================================================================ public API */

void weft_sync_options_init(weft_sync_options *opt)
{
    if (opt == NULL) {
        return;
    }
    memset(opt, 0, sizeof *opt);
    opt->connect = 1;
}

static void engine_free(weft_sync *e)
{
    for (size_t i = 0; i < e->npeers; i++) {
        epeer *p = e->peers[i];
        link_close(e, p, &p->out, 0);
        link_close(e, p, &p->in, 0);
        weft__free(p);
    }
    weft__free(e->peers);
    sock_close(&e->router, e->router_linger);
    sock_close(&e->zap, 0);
    if (e->ctx != NULL) {
        zmq_ctx_term(e->ctx);
    }
    if (e->wake_fd >= 0) {
        close(e->wake_fd);
    }
    if (e->ev_fd >= 0) {
        close(e->ev_fd);
    }
    pthread_mutex_destroy(&e->mu);
    weft__free(e->zombies);
    weft__free(e->items);
    weft__free(e->item_peer);
    weft__free(e->pub);
    weft__free(e->evq);
    weft__buf_free(&e->scratch);
    wipe(e->sk, sizeof e->sk);
    weft__free(e);
}

int weft_sync_start(weft_store *s, const weft_sync_options *opt, weft_sync **out)
{
    if (s == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_sync_start: store and out are required");
    }
    weft_sync_options o;
    if (opt != NULL) {
        o = *opt;
    } else {
        weft_sync_options_init(&o);
    }
    if (o.listen != NULL && strlen(o.listen) > WEFT_ENDPOINT_MAX) {
        return weft__err(WEFT_EINVAL, "listen endpoint is %zu bytes, the limit is %u",
                         strlen(o.listen), WEFT_ENDPOINT_MAX);
    }
    if (o.heartbeat_ms == 0) {
        o.heartbeat_ms = WEFT__HEARTBEAT_MS;
    }
    if (o.dead_ms == 0) {
        o.dead_ms = WEFT__DEAD_MS;
    }
    if (o.backoff_min_ms == 0) {
        o.backoff_min_ms = 500;
    }
    if (o.backoff_max_ms == 0) {
        o.backoff_max_ms = 60000;
    }
    if (o.backoff_max_ms < o.backoff_min_ms) {
        o.backoff_max_ms = o.backoff_min_ms;
    }
    weft_sync *e = weft__calloc(1, sizeof *e);
    if (e == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory starting the sync engine");
    }
    e->wake_fd = e->ev_fd = e->store_fd = -1;
    pthread_mutex_init(&e->mu, NULL);
    e->store = s;
    e->opt = o;
    if (o.listen != NULL) {
        copy_str(e->listen, sizeof e->listen, o.listen);
        e->opt.listen = e->listen;
    }
    int rc = 0;
    weft_info info;
    e->evq = weft__calloc(EVQ_CAP, sizeof *e->evq);
    if (e->evq == NULL) {
        rc = weft__err(WEFT_ENOMEM, "out of memory starting the sync engine");
        goto fail;
    }
    if ((rc = weft_store_info(s, &info)) != 0 || (rc = weft_store_secret_key(s, e->sk)) != 0) {
        goto fail;
    }
    memcpy(e->pk, info.public_key, WEFT_KEY_BYTES);
    e->device = info.device;
    e->rng = (wall_ms() ^ (uint64_t)(uintptr_t)e ^ info.device) | 1u;
    if (weft_store_fd(s, &e->store_fd) != 0) {
        e->store_fd = -1; /* fall back to polling the change sequence */
    }
    weft_store_changed(s, NULL);
    e->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->wake_fd < 0 || e->ev_fd < 0) {
        rc = weft__err(WEFT_EIO, "eventfd: %s", strerror(errno));
        goto fail;
    }
    e->ctx = zmq_ctx_new();
    if (e->ctx == NULL) {
        rc = weft__err(WEFT_EIO, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zmq_ctx_set(e->ctx, ZMQ_BLOCKY, 0);
    /* The ZAP handler first: a CURVE server without one admits anyone. */
    e->zap = zmq_socket(e->ctx, ZMQ_REP);
    if (e->zap == NULL || zmq_setsockopt(e->zap, ZMQ_LINGER, &(int){0}, sizeof(int)) != 0 ||
        zmq_bind(e->zap, "inproc://zeromq.zap.01") != 0) {
        rc = weft__err(WEFT_EIO, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (o.listen != NULL && o.listen[0] != '\0') {
        e->router = zmq_socket(e->ctx, ZMQ_ROUTER);
        int one = 1;
        if (e->router == NULL) {
            rc = weft__err(WEFT_EIO, "cannot create a socket: %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
        sock_common(e->router);
        if (zmq_setsockopt(e->router, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(e->router, ZMQ_CURVE_SECRETKEY, e->sk, WEFT_KEY_BYTES) != 0 ||
            zmq_setsockopt(e->router, ZMQ_CURVE_PUBLICKEY, e->pk, WEFT_KEY_BYTES) != 0 ||
            zmq_setsockopt(e->router, ZMQ_ZAP_DOMAIN, "weft", 4) != 0 ||
            zmq_setsockopt(e->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0) {
            rc = weft__err(WEFT_EIO, "cannot set up CURVE on the listening socket: %s",
                           zmq_strerror(zmq_errno()));
            goto fail;
        }
        if (zmq_bind(e->router, e->listen) != 0) {
            rc = weft__err(WEFT_EIO, "cannot listen on %s: %s", e->listen,
                           zmq_strerror(zmq_errno()));
            goto fail;
        }
        size_t len = sizeof e->bound;
        if (zmq_getsockopt(e->router, ZMQ_LAST_ENDPOINT, e->bound, &len) != 0) {
            copy_str(e->bound, sizeof e->bound, e->listen);
        }
        e->bound[sizeof e->bound - 1] = '\0';
    }
    if ((rc = reload_peers(e)) != 0) {
        goto fail;
    }
    e->pub_dirty = true;
    publish(e);
    int prc = pthread_create(&e->thread, NULL, engine_main, e);
    if (prc != 0) {
        rc = weft__err(WEFT_EIO, "cannot start the sync thread: %s", strerror(prc));
        goto fail;
    }
    e->thread_started = true;
    *out = e;
    return 0;
fail:
    engine_free(e);
    return rc;
}

void weft_sync_stop(weft_sync **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    weft_sync *e = *self_p;
    *self_p = NULL;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stop_req = true;
        pthread_mutex_unlock(&e->mu);
        evfd_set(e->wake_fd);
        pthread_join(e->thread, NULL);
    }
    engine_free(e);
}

int weft_sync_now(weft_sync *e, const char *peer)
{
    if (e == NULL) {
        return weft__err(WEFT_EINVAL, "weft_sync_now: engine is NULL");
    }
    if (peer != NULL) {
        weft_peer_status st;
        int rc = weft_peer_get(e->store, peer, &st);
        if (rc != 0) {
            return rc == WEFT_ENOTFOUND ? weft__err(rc, "no peer named '%s'", peer) : rc;
        }
    }
    pthread_mutex_lock(&e->mu);
    if (peer == NULL || e->n_now == NOW_MAX) {
        e->now_all = true;
    } else {
        copy_str(e->now_names[e->n_now++], WEFT_PEER_NAME_MAX + 1, peer);
    }
    pthread_mutex_unlock(&e->mu);
    evfd_set(e->wake_fd);
    return 0;
}

int weft_sync_status(weft_sync *e, weft_peer_status *out, size_t cap, size_t *n)
{
    if (e == NULL || n == NULL || (out == NULL && cap > 0)) {
        return weft__err(WEFT_EINVAL, "weft_sync_status: engine and n are required");
    }
    /* Copied out of mu, then completed: nothing is written to @p out or
     * @p n unless every pending count could be computed. */
    pthread_mutex_lock(&e->mu);
    size_t k = e->npub < cap ? e->npub : cap, total = e->npub;
    weft_peer_status *v = k > 0 ? weft__malloc(k * sizeof *v) : NULL;
    if (k > 0 && v == NULL) {
        pthread_mutex_unlock(&e->mu);
        return weft__err(WEFT_ENOMEM, "out of memory copying the status of %zu peers", k);
    }
    if (k > 0) {
        memcpy(v, e->pub, k * sizeof *v);
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < k; i++) {
        /* exact as persisted: at most one status tick behind a live session */
        int rc = refresh_pending(e->store, &v[i], NULL);
        if (rc != 0) {
            weft__free(v);
            return rc;
        }
    }
    if (k > 0) {
        memcpy(out, v, k * sizeof *out);
    }
    weft__free(v);
    *n = total;
    return 0;
}

int weft_sync_health_get(weft_sync *e, weft_sync_health *out)
{
    if (e == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_sync_health_get: engine and out are required");
    }
    pthread_mutex_lock(&e->mu);
    *out = e->pub_health;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int weft_sync_fd(weft_sync *e, int *fd)
{
    if (e == NULL || fd == NULL) {
        return weft__err(WEFT_EINVAL, "weft_sync_fd: engine and fd are required");
    }
    *fd = e->ev_fd;
    return 0;
}

int weft_sync_next_event(weft_sync *e, weft_event *ev)
{
    if (e == NULL || ev == NULL) {
        return weft__err(WEFT_EINVAL, "weft_sync_next_event: engine and ev are required");
    }
    int got = 0;
    pthread_mutex_lock(&e->mu);
    if (e->ev_dropped > 0) {
        memset(ev, 0, sizeof *ev);
        ev->kind = WEFT_EV_ERROR;
        ev->error = WEFT_ELIMIT;
        ev->ops = e->ev_dropped;
        snprintf(ev->message, sizeof ev->message, "events dropped: %llu (queue full)",
                 (unsigned long long)e->ev_dropped);
        e->ev_dropped = 0;
        got = 1;
    } else if (e->evq_len > 0) {
        *ev = e->evq[e->evq_head];
        e->evq_head = (e->evq_head + 1) % EVQ_CAP;
        e->evq_len--;
        got = 1;
    }
    if (e->evq_len == 0 && e->ev_dropped == 0) {
        evfd_clear(e->ev_fd);
    }
    pthread_mutex_unlock(&e->mu);
    return got;
}

int weft_sync_endpoint(weft_sync *e, char *buf, size_t cap)
{
    if (e == NULL || buf == NULL || cap == 0) {
        return weft__err(WEFT_EINVAL, "weft_sync_endpoint: engine and buffer are required");
    }
    size_t n = strlen(e->bound);
    if (n >= cap) {
        return weft__err(WEFT_ENOSPC, "endpoint needs %zu bytes", n + 1);
    }
    memcpy(buf, e->bound, n + 1);
    return 0;
}
