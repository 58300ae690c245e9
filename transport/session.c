/* session.c - one sync session with one peer: the state machine of
 * docs/protocol.md section 4, free of sockets and of time (the caller feeds
 * frames and the current time, and pulls frames and events).
 *
 *   weft__session_new (queues HELLO)
 *          |
 *          v
 *     CONNECTING --- on_hello(): peer HELLO ok -------------------+
 *          |   (a digest we do not recognise: ASK, stay     |
 *          |    CONNECTING until the HELLO with the vector)   v
 *          | on_hello(): bad version -> ERROR            PULLING / PUSHING
 *          |                                    (update_state(): PULLING while
 *          v                                     the peer holds ops we lack)
 *        ERROR <-- fail(): malformed frame, seq          |        ^
 *          ^       out of order, apply error,            |        | update_state():
 *          |       peer ERROR (on_error())               |        | new local ops
 *          |                                             v        | (stream()), or a
 *          +---- weft__session_poll(): peer silent --- LIVE ------+ rewind (on_ack())
 *                dead_ms -> WEFT_EIO          update_state(): every op we hold is
 *                                             acked and the peer's DONE vv is held
 *
 *   any state --- BYE received (weft__session_recv -> close_bye()), or
 *                 weft__session_bye() (queues BYE) ---> IDLE, closed cleanly:
 *                 no ERROR frame, no WEFT_EV_ERROR; recv/poll then return
 *                 WEFT__SESSION_BYE
 *
 * Sending. `sent` is the vector of what the peer holds or has been sent: the
 * peer's HELLO vv, raised by every batch we stream (stream()), by the ids of
 * every batch the peer sends us (it holds those, so they are never echoed
 * back) and by applied ACKs. stream() runs weft_ops_since(sent) inside one
 * read transaction, encodes each batch into its frame before the transaction
 * ends (the op views live only as long as it), and stops at `window`
 * unacknowledged batches. When the stream is exhausted it queues DONE only
 * if we hold ops the peer has neither been sent nor told of (`announced`:
 * our HELLO's vector, raised by every op streamed, every ACK's vector and
 * every DONE): the receiver counts our HELLO as our first DONE, so a session
 * in which nothing moves, or only ops we send, needs none.
 *
 * Greeting. Our HELLO carries a 12-byte digest of our vector instead of the
 * vector when the peer has acknowledged everything we hold (it most likely
 * knows our vector exactly: two sessions in sync cost 62 bytes each way);
 * otherwise the vector. A peer that does not recognise the digest (its
 * record of us is stale) sends ASK and we answer once with a full HELLO.
 *
 * Receiving. OPS messages handed over together (weft__session_recv_many:
 * what the engine's socket already held) are applied in one write
 * transaction, up to WEFT__APPLY_GROUP of them: one durable commit instead of one
 * per batch, and each batch is still whole or absent and acknowledged only
 * after that commit (on_ops()). Any other message first applies the OPS
 * before it, so messages take effect in the order they came.
 *
 * Anomalies:
 *   - a frame that does not decode, a second HELLO (except the one answering
 *     our ASK, which must carry the vector), any frame but HELLO, ERROR or
 *     BYE before HELLO, an ASK when our HELLO carried the vector or a second
 *     ASK, an OPS whose seq is not the previous + 1, an ACK whose seq is not
 *     the next unacknowledged one: ERROR WEFT_ECORRUPT, close.
 *   - HELLO of another version: ERROR WEFT_EVERSION; close. (The peer's
 *     device is its CURVE key's: HELLO does not repeat it.)
 *   - a batch that does not connect (WEFT_EGAP): nothing applied, ACK gap.
 *     The sender rewinds `sent` to the ACK's vv; ACKs of batches it sent
 *     before that rewind (seq <= rewind_seq) never rewind again.
 *   - a batch reaching past the drift horizon: the prefix is applied, ACK
 *     deferred, WEFT_EV_SKEW and the peer's status skewed (persisted with the
 *     batch); the sender rewinds, pauses WEFT__SKEW_PAUSE_MS, and on the ACK
 *     that rewound it also emits WEFT_EV_SKEW (its clock is behind ours) and
 *     persists skewed. stats.skew_in/skew_out follow the last outcome per
 *     direction, so the engine clears skewed once a later batch is applied
 *     in full; the first LIVE clears it too (nothing is deferred then).
 *   - WEFT_ECORRUPT / ECONFLICT / ELIMIT (or any store error) applying a
 *     batch: ERROR with that code, close.
 *   - a peer silent for dead_ms: poll returns WEFT_EIO.
 *   - an OPS we sent unacknowledged for ACK_PATIENCE * dead_ms while the peer
 *     otherwise lives (PINGs): ERROR WEFT_EIO, close. A weft peer busy
 *     applying sends nothing, so its silence ends the session first; this
 *     catches a peer that stalled, or a frame lost where none should be. The
 *     next session resends from the acknowledged vector.
 *
 * Invariants:
 *   1. An ACK is queued only after the transaction that applied its batch and
 *      merged the batch into the peer's acknowledged vector committed.
 *   2. out_seq - acked_seq <= window: at most `window` OPS frames are ever
 *      unacknowledged, each <= WEFT__BATCH_OPS ops and WEFT__BATCH_BYTES
 *      payload bytes (or one op), so <= WEFT__OPS_FRAME_MAX bytes encoded:
 *      memory is bounded whatever the backlog.
 *   3. Every frame queued is at most WEFT__MSG_MAX bytes (the encoders check).
 *   4. Once closed (closed != 0) the session changes nothing: recv and poll
 *      return the closing code (WEFT__SESSION_BYE after a goodbye either
 *      way); frames already queued (the ERROR or BYE) remain.
 *   5. The event queue holds at most EVQ_CAP events; the oldest is dropped.
 *   6. Every vector of the session (sent, acked, ours, announced, peer_vv,
 *      peer_done) exists from weft__session_new on (empty until learnt), so
 *      HELLO, ASK, DONE and ACK only ever merge into them; acked never holds
 *      more than the peer holds, which is what lets a matching HELLO digest
 *      stand for the peer's vector.
 * Thread-safety: confined to one thread at a time; it opens store
 * transactions in the calling thread, which must not hold a write
 * transaction of the same store.
 */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>

#include "../common/killpoint.h"
#include "../store/store_int.h"
#include "transport_int.h"

#define EVQ_CAP      64u
#define ACK_PATIENCE 3u /* an OPS unacknowledged for this many dead_ms ends the session */

typedef struct frameq {
    weft__buf *v;
    size_t head, n, cap;
} frameq;

struct weft__session {
    weft_store *s;
    weft__session_cfg cfg;
    uint64_t peer_device;
    weft_peer_state state;
    int closed;        /* 0, the WEFT_E* that closed the session, or WEFT__SESSION_BYE */
    bool greeted;      /* the peer's HELLO was received (its vector may be unknown yet) */
    bool hello_in;     /* ... and its vector is known (full, or a digest we matched) */
    bool asked;        /* we sent ASK: the peer's digest did not match */
    bool ask_answered; /* we answered the peer's ASK */
    bool digest_out;   /* our HELLO carried a digest */
    bool pending_known;
    bool reached_live;
    bool silent;        /* closed because the peer fell silent (poll, dead_ms) */
    weft_vv *sent;      /* the peer holds or has been sent everything up to this */
    weft_vv *acked;     /* the peer's acknowledged vector: exact, in memory */
    bool acked_dirty;   /* acked holds more than the store (weft__session_save) */
    weft_vv *ours;      /* our vector at the last look */
    weft_vv *announced; /* our vector as we last told the peer (HELLO, DONE) */
    weft_vv *peer_vv;   /* the peer's vector as last reported (HELLO, ACK, DONE) */
    weft_vv *peer_done; /* what it held at its HELLO and DONEs (empty before HELLO) */
    uint64_t out_seq, acked_seq, rewind_seq, in_seq;
    uint64_t pause_until; /* no streaming before this (deferred ACK); 0: none */
    uint64_t ack_due;     /* the oldest unacknowledged OPS is overdue then; 0: none out */
    uint64_t last_sent, last_recv;
    uint64_t pending_out; /* ops beyond `sent` (exact when counted, then decremented) */
    weft__session_stats stats;
    frameq q;
    weft__buf cur; /* the frame handed out by weft__session_next */
    weft_event ev[EVQ_CAP];
    size_t evhead, evn;
    weft_op *batch; /* cfg.batch_ops views, filled by collect_cb */
    size_t nbatch, batch_bytes;
    bool more; /* collect_cb stopped on a limit: ops remain beyond the batch */
};

/* ---------------------------------------------------------------- helpers */

/* When an OPS sent (or acknowledged up to) at @p now is overdue. */
static uint64_t ack_deadline(const weft__session *ss, uint64_t now)
{
    return now + (uint64_t)ACK_PATIENCE * ss->cfg.dead_ms;
}

static uint64_t store_now(const weft__session *ss)
{
    return ss->s->clock.now_ms(ss->s->clock.now_user);
}

/* The peer's name for messages. */
static const char *peer_name(const weft__session *ss)
{
    return ss->cfg.name[0] ? ss->cfg.name : "the peer";
}

static int vv_copy(const weft_vv *src, weft_vv **out)
{
    weft_vv *v;
    int rc = weft_vv_new(&v);
    if (rc == 0 && (rc = weft__vv_merge(v, src, NULL)) != 0) {
        weft_vv_destroy(&v);
    }
    if (rc == 0) {
        *out = v;
    }
    return rc;
}

static void push_event(weft__session *ss, weft_event_kind kind, uint64_t ops, uint64_t bytes,
                       uint64_t pending, int error, const char *msg)
{
    if (ss->evn == EVQ_CAP) {
        ss->evhead = (ss->evhead + 1) % EVQ_CAP;
        ss->evn--;
    }
    weft_event *e = &ss->ev[(ss->evhead + ss->evn) % EVQ_CAP];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->state = ss->state;
    e->ops = ops;
    e->bytes = bytes;
    e->pending = pending;
    e->error = error;
    if (msg != NULL) {
        snprintf(e->message, sizeof e->message, "%s", msg);
    }
    ss->evn++;
}

/* Take ownership of @p b's bytes as the next frame to send. */
static int push_frame(weft__session *ss, weft__buf *b, uint64_t now)
{
    frameq *q = &ss->q;
    if (q->head + q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        } else {
            size_t cap = q->cap ? 2 * q->cap : 8;
            weft__buf *p = weft__realloc(q->v, cap * sizeof *p);
            if (p == NULL) {
                weft__buf_free(b);
                return weft__err(WEFT_ENOMEM, "out of memory queueing a frame");
            }
            q->v = p;
            q->cap = cap;
        }
    }
    q->v[q->head + q->n++] = *b;
    memset(b, 0, sizeof *b);
    ss->last_sent = now;
    return 0;
}

static void set_state(weft__session *ss, weft_peer_state st)
{
    if (ss->state != st) {
        ss->state = st;
        push_event(ss, WEFT_EV_STATE, 0, 0, ss->pending_out, 0, weft_peer_state_name(st));
    }
}

/* Close with @p code: queue ERROR (unless @p from_peer), emit WEFT_EV_ERROR,
 * state ERROR. Returns @p code, with the message left for weft_last_error. */
static int close_with(weft__session *ss, int code, bool from_peer, uint64_t now, const char *fmt,
                      ...) WEFT__PRINTF(5, 6);

static int close_with(weft__session *ss, int code, bool from_peer, uint64_t now, const char *fmt,
                      ...)
{
    char msg[WEFT_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code >= 0) {
        code = WEFT_ECORRUPT;
    }
    if (!from_peer) {
        weft__buf b = {NULL, 0, 0};
        if (weft__msg_error(&b, code, msg) == 0) {
            (void)push_frame(ss, &b, now);
        }
        weft__buf_free(&b);
    }
    ss->closed = code;
    set_state(ss, WEFT_PEER_ERROR);
    push_event(ss, WEFT_EV_ERROR, 0, 0, ss->pending_out, code, msg);
    return weft__err(code, "%s", msg);
}

/* Close cleanly (a goodbye either way): state IDLE with @p msg, no error. */
static int close_bye(weft__session *ss, const char *msg)
{
    ss->closed = WEFT__SESSION_BYE;
    if (ss->state != WEFT_PEER_IDLE) {
        ss->state = WEFT_PEER_IDLE;
        push_event(ss, WEFT_EV_STATE, 0, 0, ss->pending_out, 0, msg);
    }
    return WEFT__SESSION_BYE;
}

/* Persist the status on the session's first LIVE (last sync, syncs, duration). */
static int persist_live(weft__session *ss, uint64_t now)
{
    weft_txn *t = NULL;
    weft_peer_status st;
    int rc = weft_txn_begin(ss->s, 0, &t);
    if (rc == 0 && (rc = weft__peer_by_key(t, ss->cfg.peer_key, &st)) == 0) {
        uint64_t wall = store_now(ss);
        st.state = WEFT_PEER_LIVE;
        st.last_sync_ms = wall;
        st.updated_ms = wall;
        st.clock_offset_ms = ss->stats.clock_offset_ms;
        st.skewed = 0; /* caught up both ways: nothing is deferred either way */
        st.syncs++;
        st.last_duration_ms = now - ss->stats.started_ms;
        if ((rc = weft__peer_status_put(t, ss->cfg.peer_key, &st)) == 0 &&
            (rc = weft__session_save(ss, t)) == 0) {
            WEFT__KILLPOINT(WEFT__KP_LIVE_PERSISTED);
            rc = weft_txn_commit(&t);
        }
    }
    weft_txn_abort(&t);
    return rc;
}

/* Recompute the state from what is known; persist on reaching LIVE. */
static int update_state(weft__session *ss, uint64_t now)
{
    if (ss->closed) {
        return ss->closed;
    }
    weft_peer_state st;
    if (!ss->hello_in) {
        st = WEFT_PEER_CONNECTING;
    } else if (weft__session_caught_up(ss)) {
        st = WEFT_PEER_LIVE;
    } else if (!weft__vv_le(ss->peer_vv, ss->ours)) {
        st = WEFT_PEER_PULLING;
    } else {
        st = WEFT_PEER_PUSHING;
    }
    if (st == WEFT_PEER_LIVE && ss->state != WEFT_PEER_LIVE) {
        /* Only the session's first LIVE is committed here (syncs, duration):
         * later returns to LIVE after each live push would cost a durable
         * commit per push; the engine persists the status on its 1 s tick. */
        int rc = 0;
        if (!ss->reached_live) {
            ss->reached_live = true;
            ss->stats.caught_up_ms = now;
            rc = persist_live(ss, now);
        }
        if (rc != 0) {
            return close_with(ss, rc, false, now, "persisting the peer status: %s",
                              weft_last_error());
        }
    }
    set_state(ss, st);
    return 0;
}

/* ---------------------------------------------------------------- lifecycle */

/* Queue our HELLO, stamped now: the digest of `ours` or the vector. */
static int queue_hello(weft__session *ss, bool digest, uint64_t now)
{
    uint64_t hlc = weft__hlc_make(store_now(ss), 0);
    weft__buf b = {NULL, 0, 0};
    int rc;
    if (digest) {
        uint8_t d[WEFT__VV_DIGEST_BYTES];
        weft__wire_vv_digest(ss->ours, d);
        rc = weft__msg_hello_digest(&b, ss->cfg.role, d, hlc);
    } else {
        rc = weft__msg_hello(&b, ss->cfg.role, ss->ours, hlc);
    }
    rc = rc ? rc : push_frame(ss, &b, now);
    weft__buf_free(&b);
    return rc;
}

int weft__session_new(weft_store *s, const weft__session_cfg *cfg, uint64_t now_ms,
                      weft__session **out)
{
    if (s == NULL || cfg == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft__session_new: store, cfg and out are required");
    }
    if (cfg->role != WEFT_ROLE_DEVICE && cfg->role != WEFT_ROLE_RELAY) {
        return weft__err(WEFT_EINVAL, "weft__session_new: bad role %d", (int)cfg->role);
    }
    weft__session *ss = weft__calloc(1, sizeof *ss);
    if (ss == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory creating a session");
    }
    ss->s = s;
    ss->cfg = *cfg;
    weft__session_cfg *c = &ss->cfg;
    c->heartbeat_ms = c->heartbeat_ms ? c->heartbeat_ms : WEFT__HEARTBEAT_MS;
    c->dead_ms = c->dead_ms ? c->dead_ms : WEFT__DEAD_MS;
    c->window = c->window ? c->window : WEFT__WINDOW;
    c->batch_ops = c->batch_ops ? c->batch_ops : WEFT__BATCH_OPS;
    c->batch_bytes = c->batch_bytes ? c->batch_bytes : WEFT__BATCH_BYTES;
    if (c->window > WEFT__WINDOW || c->batch_ops > WEFT__BATCH_OPS ||
        c->batch_bytes > WEFT__BATCH_BYTES) {
        weft__free(ss);
        return weft__err(WEFT_EINVAL, "session window/batch over the protocol limits (%u, %u, %u)",
                         WEFT__WINDOW, WEFT__BATCH_OPS, WEFT__BATCH_BYTES);
    }
    ss->peer_device = weft_device_of(c->peer_key);
    ss->state = WEFT_PEER_CONNECTING;
    ss->last_recv = ss->last_sent = now_ms;
    ss->stats.started_ms = now_ms;
    ss->stats.skew_in = ss->stats.skew_out = -1;
    c->name[sizeof c->name - 1] = '\0';
    weft_txn *t = NULL;
    int rc = 0;
    ss->batch = weft__calloc(c->batch_ops, sizeof *ss->batch);
    if (ss->batch == NULL) {
        rc = weft__err(WEFT_ENOMEM, "out of memory creating a session");
    }
    rc = rc ? rc : weft_vv_new(&ss->peer_vv);
    rc = rc ? rc : weft_vv_new(&ss->peer_done);
    rc = rc ? rc : weft_vv_new(&ss->sent);
    rc = rc ? rc : weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    rc = rc ? rc : weft__peer_acked_get(t, c->peer_key, &ss->acked);
    rc = rc ? rc : weft_store_vv(t, &ss->ours);
    weft_txn_abort(&t);
    rc = rc ? rc : vv_copy(ss->ours, &ss->announced);
    if (rc == 0) {
        /* The peer has acknowledged everything we hold: it most likely
         * knows our vector exactly, so a digest says it in 12 bytes. */
        ss->digest_out = weft__vv_le(ss->ours, ss->acked);
        rc = queue_hello(ss, ss->digest_out, now_ms);
    }
    if (rc != 0) {
        weft__session_destroy(&ss);
        return rc;
    }
    push_event(ss, WEFT_EV_STATE, 0, 0, 0, 0, weft_peer_state_name(ss->state));
    *out = ss;
    return 0;
}

void weft__session_destroy(weft__session **self_p)
{
    if (self_p == NULL || *self_p == NULL) {
        return;
    }
    weft__session *ss = *self_p;
    for (size_t i = 0; i < ss->q.n; i++) {
        weft__buf_free(&ss->q.v[ss->q.head + i]);
    }
    weft__free(ss->q.v);
    weft__buf_free(&ss->cur);
    weft_vv_destroy(&ss->sent);
    weft_vv_destroy(&ss->acked);
    weft_vv_destroy(&ss->ours);
    weft_vv_destroy(&ss->announced);
    weft_vv_destroy(&ss->peer_vv);
    weft_vv_destroy(&ss->peer_done);
    weft__free(ss->batch);
    weft__free(ss);
    *self_p = NULL;
}

int weft__session_save(weft__session *ss, weft_txn *t)
{
    if (ss == NULL || !ss->acked_dirty || ss->acked == NULL) {
        return 0;
    }
    int rc = weft__peer_acked_merge(t, ss->cfg.peer_key, ss->acked);
    if (rc == 0) {
        ss->acked_dirty = false;
    }
    WEFT__KILLPOINT(WEFT__KP_SESSION_SAVED);
    return rc;
}

bool weft__session_unsaved(const weft__session *ss)
{
    return ss != NULL && ss->acked_dirty;
}

const weft_vv *weft__session_acked(const weft__session *ss)
{
    return ss != NULL && ss->hello_in ? ss->acked : NULL;
}

/* ---------------------------------------------------------------- receiving */

/* Raise @p v's entry for @p d to @p h if that is higher (never lowers it). */
static int vv_raise(weft_vv *v, uint64_t d, uint64_t h)
{
    return h > weft_vv_get(v, d) ? weft_vv_set(v, d, h) : 0;
}

/* The peer's HELLO. Its vector is the peer's whole holdings when it sent it:
 * `sent` starts there, the acknowledged vector takes it in (in memory;
 * weft__session_save persists it with the session's next write, so the
 * handshake costs no durable commit), and it counts as the peer's first
 * DONE: once we hold it we have everything the peer had to give. A digest
 * stands for the vector we hold as the peer's acknowledged vector; if it is
 * not that one, ASK for the vector (the session waits for the second HELLO
 * before it sends, and takes OPS and DONE meanwhile). */
static int on_hello(weft__session *ss, weft__msg *m, uint64_t now)
{
    if (ss->hello_in || (ss->greeted && !ss->asked)) {
        return close_with(ss, WEFT_ECORRUPT, false, now, "second HELLO in one session");
    }
    if (m->version != WEFT__PROTO_VERSION) {
        return close_with(ss, WEFT_EVERSION, false, now,
                          "protocol version %u is not supported (this peer speaks %u)", m->version,
                          WEFT__PROTO_VERSION);
    }
    if (ss->asked && m->has_digest) {
        return close_with(ss, WEFT_ECORRUPT, false, now,
                          "the HELLO answering ASK carries a digest, not the vector");
    }
    ss->stats.clock_offset_ms = (int64_t)weft_hlc_ms(m->hlc) - (int64_t)store_now(ss);
    weft_txn *t = NULL;
    weft_vv *acked = NULL;
    int rc = weft_txn_begin(ss->s, WEFT_TXN_RDONLY, &t);
    rc = rc ? rc : weft__peer_acked_get(t, ss->cfg.peer_key, &acked);
    weft_txn_abort(&t);
    rc = rc ? rc : weft__vv_merge(acked, ss->acked, NULL); /* ops it sent before its vector came */
    const weft_vv *pv = m->vv;
    bool miss = false;
    if (rc == 0 && m->has_digest) {
        uint8_t d[WEFT__VV_DIGEST_BYTES];
        weft__wire_vv_digest(acked, d);
        pv = acked;
        miss = sodium_memcmp(d, m->digest, sizeof d) != 0;
    }
    if (rc == 0 && miss) {
        /* What the peer has acknowledged it holds, it holds: send nothing
         * below that once its vector arrives. */
        weft__buf b = {NULL, 0, 0};
        rc = weft__vv_merge(ss->sent, acked, NULL);
        rc = rc ? rc : weft__msg_ask(&b);
        rc = rc ? rc : push_frame(ss, &b, now);
        weft__buf_free(&b);
        ss->asked = rc == 0;
    } else if (rc == 0) {
        bool grew = false;
        rc = weft__vv_merge(acked, pv, &grew);
        ss->acked_dirty |= grew;
        rc = rc ? rc : weft__vv_merge(ss->sent, pv, NULL);
        rc = rc ? rc : weft__vv_merge(ss->peer_vv, pv, NULL);
        rc = rc ? rc : weft__vv_merge(ss->peer_done, pv, NULL);
    }
    if (rc != 0) {
        weft_vv_destroy(&acked);
        return close_with(ss, rc == WEFT_ENOTFOUND ? WEFT_EAUTH : rc, false, now,
                          "recording the peer's HELLO: %s", weft_last_error());
    }
    weft_vv_destroy(&ss->acked);
    ss->acked = acked;
    ss->greeted = true;
    ss->hello_in = !miss;
    ss->pending_known = false;
    return update_state(ss, now);
}

/* The peer did not recognise our digest: answer once with the vector. */
static int on_ask(weft__session *ss, uint64_t now)
{
    if (!ss->digest_out || ss->ask_answered) {
        return close_with(ss, WEFT_ECORRUPT, false, now, "%s",
                          ss->digest_out ? "second ASK in one session"
                                         : "ASK, but our HELLO carried the vector");
    }
    ss->ask_answered = true;
    int rc = queue_hello(ss, false, now);
    rc = rc ? rc : weft__vv_merge(ss->announced, ss->ours, NULL);
    if (rc != 0) {
        return close_with(ss, rc, false, now, "answering ASK: %s", weft_last_error());
    }
    return 0;
}

/* One OPS batch of a group (on_ops()), from its apply to its ACK. */
typedef struct ops_done {
    const weft__msg *m;
    weft_vv *bv; /* the batch's ids: the peer holds them */
    weft_vv *vv; /* our vector once the batch is applied (the ACK's) */
    uint32_t status;
    uint64_t bytes, conf0, conf1; /* t->conflicts before and after */
    weft_apply_result res;
    char why[WEFT_MSG_MAX]; /* the gap, for the progress event */
} ops_done;

static void ops_done_free(ops_done *d)
{
    weft_vv_destroy(&d->bv);
    weft_vv_destroy(&d->vv);
}

/* Apply one batch in the group's transaction @p t, with the peer's
 * acknowledged vector and, when the drift horizon deferred a suffix, its
 * skewed status. A gap is not an error (d->status; weft_apply left no trace).
 * On an error, *whole tells whether @p t must be dropped entirely: not when
 * weft_apply refused the batch, which leaves @p t as it found it. */
static int apply_one(weft__session *ss, weft_txn *t, ops_done *d, bool *whole)
{
    const weft__msg *m = d->m;
    *whole = true;
    int rc = weft_vv_new(&d->bv);
    for (size_t i = 0; i < m->nops && rc == 0; i++) {
        d->bytes += m->ops[i].payload.len;
        rc = weft_vv_set(d->bv, m->ops[i].id.device, m->ops[i].id.hlc);
    }
    if (rc != 0) {
        return rc;
    }
    d->status = WEFT__ACK_APPLIED;
    d->conf0 = t->conflicts;
    rc = weft_apply(t, m->ops, m->nops, &d->res);
    d->conf1 = t->conflicts;
    if (rc == WEFT_EGAP) {
        snprintf(d->why, sizeof d->why, "%s", weft_last_error());
        d->status = WEFT__ACK_GAP;
        return weft_store_vv(t, &d->vv);
    }
    if (rc != 0) {
        *whole = false;
        return rc;
    }
    WEFT__KILLPOINT(WEFT__KP_SESSION_APPLIED);
    rc = weft__peer_acked_merge(t, ss->cfg.peer_key, d->bv);
    if (rc == 0 && d->res.deferred > 0) {
        weft_peer_status st;
        d->status = WEFT__ACK_DEFERRED;
        rc = weft__peer_by_key(t, ss->cfg.peer_key, &st);
        if (rc == 0) {
            st.skewed = 1;
            st.clock_offset_ms = ss->stats.clock_offset_ms;
            st.updated_ms = store_now(ss);
            rc = weft__peer_status_put(t, ss->cfg.peer_key, &st);
        }
    }
    return rc ? rc : weft_store_vv(t, &d->vv);
}

/* Acknowledge a committed (or gap) batch and account for it. */
static int ack_one(weft__session *ss, ops_done *d, uint64_t now)
{
    const weft__msg *m = d->m;
    weft__buf b = {NULL, 0, 0};
    int rc = weft__msg_ack(&b, m->seq, d->status, d->vv);
    rc = rc ? rc : push_frame(ss, &b, now);
    weft__buf_free(&b);
    WEFT__KILLPOINT(WEFT__KP_SESSION_ACK_QUEUED);
    rc = rc ? rc : weft__vv_merge(ss->sent, d->bv, NULL);      /* the peer holds what it sent */
    rc = rc ? rc : weft__vv_merge(ss->announced, d->vv, NULL); /* and knows what we hold now */
    if (rc == 0) {
        /* Even a batch we could not apply (a gap): its sender holds it. The
         * transaction recorded it for an applied batch; a gap's is saved
         * later (weft__session_save). Without this, ops of a gap batch that
         * reach us by another way would stay "not held by the peer" with
         * nothing left to send or acknowledge: a session pushing forever. */
        bool grew = false;
        rc = weft__vv_merge(ss->acked, d->bv, &grew);
        ss->acked_dirty |= grew && d->status == WEFT__ACK_GAP;
    }
    if (rc != 0) {
        return rc;
    }
    weft_vv_destroy(&ss->ours);
    ss->ours = d->vv;
    d->vv = NULL;
    ss->pending_known = false;
    ss->stats.batches_received++;
    ss->stats.ops_received += m->nops;
    ss->stats.bytes_received += d->bytes;
    if (d->status == WEFT__ACK_GAP) {
        ss->stats.gaps++;
        push_event(ss, WEFT_EV_PROGRESS, 0, 0, ss->pending_out, WEFT_EGAP, d->why);
        return 0;
    }
    push_event(ss, WEFT_EV_PROGRESS, m->nops, d->bytes, ss->pending_out, 0, "received");
    if (d->res.applied > 0) {
        push_event(ss, WEFT_EV_CHANGES, d->res.applied, 0, ss->pending_out, 0, NULL);
    }
    if (d->conf1 > d->conf0) {
        push_event(ss, WEFT_EV_CONFLICT, d->conf1, 0, ss->pending_out, 0, NULL);
    }
    ss->stats.skew_in = d->res.deferred > 0 ? 1 : 0;
    if (d->res.deferred > 0) {
        char msg[WEFT_MSG_MAX];
        int64_t off = ss->stats.clock_offset_ms;
        snprintf(msg, sizeof msg,
                 "%s's clock is ahead of ours by ~%llu ms: %zu op%s deferred until our clock "
                 "reaches them",
                 peer_name(ss),
                 off > 0 ? (unsigned long long)off : (unsigned long long)d->res.skew_ms,
                 d->res.deferred, d->res.deferred == 1 ? "" : "s");
        ss->stats.deferred++;
        push_event(ss, WEFT_EV_SKEW, d->res.deferred, 0, ss->pending_out, 0, msg);
    }
    return 0;
}

/* Apply @p k consecutive OPS messages (k <= WEFT__APPLY_GROUP) in one write
 * transaction and one durable commit, then acknowledge each. A batch out of
 * order or refused by weft_apply ends the group: the batches before it are
 * committed and acknowledged, then the session closes with the error. When
 * the commit of several batches fails (a full disk), they are applied again
 * one per transaction, so that every batch that fits is kept. Any other
 * failure (the peer's record, a lone batch's commit) drops the group: none
 * is acknowledged, and the peer sends them again in a later session. */
static int on_ops(weft__session *ss, weft__msg *ms, size_t k, uint64_t now)
{
    ops_done d[WEFT__APPLY_GROUP];
    memset(d, 0, sizeof d);
    size_t n = 0;
    int err = 0;
    char msg[WEFT_MSG_MAX] = "";
    weft_txn *t = NULL;
    int rc = weft_txn_begin(ss->s, 0, &t);
    if (rc != 0) {
        err = rc;
        snprintf(msg, sizeof msg, "batch %llu refused: %s", (unsigned long long)ms[0].seq,
                 weft_last_error());
    }
    for (size_t i = 0; i < k && err == 0; i++) {
        if (ms[i].seq != ss->in_seq + 1) {
            err = WEFT_ECORRUPT;
            snprintf(msg, sizeof msg, "OPS out of order: seq %llu, expected %llu",
                     (unsigned long long)ms[i].seq, (unsigned long long)ss->in_seq + 1);
            break;
        }
        ss->in_seq = ms[i].seq;
        d[n].m = &ms[i];
        bool whole = true;
        if ((rc = apply_one(ss, t, &d[n], &whole)) == 0) {
            n++;
            continue;
        }
        err = rc;
        snprintf(msg, sizeof msg, "batch %llu refused: %s", (unsigned long long)ms[i].seq,
                 weft_last_error());
        ops_done_free(&d[n]);
        if (whole) {
            for (size_t j = 0; j < n; j++) {
                ops_done_free(&d[j]);
            }
            n = 0;
        }
    }
    if (n > 0) {
        WEFT__KILLPOINT(WEFT__KP_SESSION_MERGED);
        bool unsaved = ss->acked_dirty;
        rc = weft__session_save(ss, t); /* unsaved ACKs ride along */
        rc = rc ? rc : weft_txn_commit(&t);
        ss->acked_dirty |= rc != 0 && unsaved; /* they did not */
        if (rc != 0 && n > 1) {
            /* The group did not fit (a full disk, say): keep as many whole
             * batches as do, one transaction each, as if they came apart. */
            weft_txn_abort(&t);
            for (size_t j = 0; j < n; j++) {
                ops_done_free(&d[j]);
            }
            ss->in_seq = ms[0].seq - 1;
            for (size_t j = 0; j < k; j++) {
                if ((rc = on_ops(ss, &ms[j], 1, now)) != 0) {
                    return rc;
                }
            }
            return 0;
        }
        if (rc != 0) {
            err = rc;
            snprintf(msg, sizeof msg, "batch %llu refused: %s", (unsigned long long)ms[0].seq,
                     weft_last_error());
            for (size_t j = 0; j < n; j++) {
                ops_done_free(&d[j]);
            }
            n = 0;
        }
    }
    weft_txn_abort(&t);
    /* Durable (or, for a gap, nothing applied): acknowledge. */
    if (n > 0) {
        WEFT__KILLPOINT(WEFT__KP_SESSION_COMMITTED);
    }
    for (size_t i = 0, acking = 1; i < n; i++) {
        if (acking && (rc = ack_one(ss, &d[i], now)) != 0) {
            acking = 0; /* and the session closes with this error */
            err = rc;
            snprintf(msg, sizeof msg, "acknowledging a batch: %s", weft_last_error());
        }
        ops_done_free(&d[i]);
    }
    if (err != 0) {
        return close_with(ss, err == WEFT_ENOTFOUND ? WEFT_EAUTH : err, false, now, "%s", msg);
    }
    return update_state(ss, now);
}

typedef struct defer_ctx {
    const weft_vv *sent;
    uint64_t n, visited, cap;
} defer_ctx;

static int defer_cb(const weft_op *op, void *user)
{
    defer_ctx *c = user;
    if (++c->visited > c->cap) {
        return 1;
    }
    if (op->id.hlc <= weft_vv_get(c->sent, op->id.device)) {
        c->n++;
    }
    return 0;
}

/* A deferred ACK (sender side), in the write transaction @p t: count the ops
 * sent but not held by the peer (those beyond @p ack it was sent; bounded:
 * at most one window of batches is visited), and persist the peer's status
 * skewed, with the clock offset of its HELLO. */
static int record_deferred(weft__session *ss, weft_txn *t, const weft_vv *ack, uint64_t *n)
{
    defer_ctx c = {ss->sent, 0, 0, (uint64_t)ss->cfg.window * ss->cfg.batch_ops};
    int rc = weft_ops_since(t, ack, defer_cb, &c);
    if (rc < 0) {
        return rc;
    }
    *n = c.n;
    weft_peer_status st;
    if ((rc = weft__peer_by_key(t, ss->cfg.peer_key, &st)) != 0) {
        return rc;
    }
    st.skewed = 1;
    st.clock_offset_ms = ss->stats.clock_offset_ms;
    st.updated_ms = store_now(ss);
    return weft__peer_status_put(t, ss->cfg.peer_key, &st);
}

static int on_ack(weft__session *ss, weft__msg *m, uint64_t now)
{
    if (m->seq != ss->acked_seq + 1 || m->seq > ss->out_seq) {
        return close_with(ss, WEFT_ECORRUPT, false, now,
                          "ACK of seq %llu, expected %llu (last sent %llu)",
                          (unsigned long long)m->seq, (unsigned long long)ss->acked_seq + 1,
                          (unsigned long long)ss->out_seq);
    }
    ss->acked_seq = m->seq;
    ss->ack_due = ss->out_seq > ss->acked_seq ? ack_deadline(ss, now) : 0;
    int rc = 0;
    /* The first deferred ACK since the last rewind: the peer's clock is
     * behind our ops. Record it with the acknowledgement. */
    bool deferred_now = m->status == WEFT__ACK_DEFERRED && m->seq > ss->rewind_seq;
    uint64_t ndeferred = 0;
    if (m->status == WEFT__ACK_DEFERRED) {
        ss->stats.skew_out = 1;
    } else if (m->status == WEFT__ACK_APPLIED && m->seq > ss->rewind_seq) {
        ss->stats.skew_out = 0; /* sent after any rewind, applied in full */
    }
    /* The acknowledgement is kept exact in memory and persisted lazily
     * (weft__session_save: the engine's tick, session close, the first
     * LIVE): a durable commit per ACK would double the sender's fsyncs. Lost
     * on a crash, it is relearnt from the peer's next HELLO. */
    bool grew = false;
    rc = weft__vv_merge(ss->acked, m->vv, &grew);
    ss->acked_dirty |= grew;
    WEFT__KILLPOINT(WEFT__KP_ACK_RECEIVED);
    if (rc == 0 && deferred_now) {
        weft_txn *t = NULL;
        rc = weft_txn_begin(ss->s, 0, &t);
        rc = rc ? rc : record_deferred(ss, t, m->vv, &ndeferred);
        rc = rc ? rc : weft__session_save(ss, t);
        rc = rc ? rc : weft_txn_commit(&t);
        weft_txn_abort(&t);
    }
    rc = rc ? rc : weft__vv_merge(ss->peer_vv, m->vv, NULL);
    if (rc != 0) {
        return close_with(ss, rc == WEFT_ENOTFOUND ? WEFT_EAUTH : rc, false, now,
                          "recording an ACK: %s", weft_last_error());
    }
    if (m->status == WEFT__ACK_APPLIED || m->seq <= ss->rewind_seq) {
        /* What the receiver holds need not be sent (a prefix per device). */
        rc = weft__vv_merge(ss->sent, m->vv, NULL);
    } else {
        /* Rewind: the receiver holds exactly ack.vv. Batches still in flight
         * were sent before this point; their ACKs must not rewind again. */
        weft_vv *v = NULL;
        if ((rc = vv_copy(m->vv, &v)) == 0) {
            weft_vv_destroy(&ss->sent);
            ss->sent = v;
        }
        ss->rewind_seq = ss->out_seq;
        ss->pending_known = false;
        if (m->status == WEFT__ACK_DEFERRED) {
            ss->stats.deferred++;
            ss->pause_until = now + WEFT__SKEW_PAUSE_MS;
        } else {
            ss->stats.gaps++;
        }
    }
    if (rc != 0) {
        return close_with(ss, rc, false, now, "recording an ACK: %s", weft_last_error());
    }
    if (deferred_now) {
        char msg[WEFT_MSG_MAX], behind[64] = "";
        int64_t off = ss->stats.clock_offset_ms;
        if (off < 0) {
            snprintf(behind, sizeof behind, " by ~%llu ms", (unsigned long long)-off);
        }
        snprintf(msg, sizeof msg,
                 "%s's clock is behind ours%s: it deferred %llu of our ops until its clock "
                 "reaches them; retrying in %u s",
                 peer_name(ss), behind, (unsigned long long)ndeferred,
                 (unsigned)(WEFT__SKEW_PAUSE_MS / 1000));
        push_event(ss, WEFT_EV_SKEW, ndeferred, 0, ss->pending_out, 0, msg);
    }
    return update_state(ss, now);
}

/* DONE: the peer holds m->vv (so it need not be sent, and it is
 * acknowledged) and has nothing beyond it for us. */
static int on_done(weft__session *ss, weft__msg *m, uint64_t now)
{
    bool grew = false;
    int rc = weft__vv_merge(ss->peer_done, m->vv, NULL);
    rc = rc ? rc : weft__vv_merge(ss->peer_vv, m->vv, NULL);
    rc = rc ? rc : weft__vv_merge(ss->sent, m->vv, NULL);
    rc = rc ? rc : weft__vv_merge(ss->acked, m->vv, &grew);
    ss->acked_dirty |= grew;
    if (rc != 0) {
        return close_with(ss, rc, false, now, "recording DONE: %s", weft_last_error());
    }
    return update_state(ss, now);
}

/* Act on one decoded frame other than an OPS after HELLO (those are grouped). */
static int dispatch(weft__session *ss, weft__msg *m, uint64_t now_ms)
{
    if (m->type == WEFT__MSG_BYE) {
        char msg[WEFT_MSG_MAX];
        if (m->reason == WEFT__BYE_DONE) {
            snprintf(msg, sizeof msg, "%s said goodbye (done)", peer_name(ss));
        } else {
            snprintf(msg, sizeof msg, "%s said goodbye (reason %u)", peer_name(ss), m->reason);
        }
        return close_bye(ss, msg);
    }
    if (m->type == WEFT__MSG_ERROR) {
        return close_with(ss, m->code, true, now_ms, "peer closed: %s: %.*s",
                          weft_err_name(m->code), (int)m->text.len, (const char *)m->text.ptr);
    }
    if (!ss->greeted && m->type != WEFT__MSG_HELLO) {
        return close_with(ss, WEFT_ECORRUPT, false, now_ms, "message of type %d before HELLO",
                          m->type);
    }
    switch (m->type) {
    case WEFT__MSG_HELLO:
        return on_hello(ss, m, now_ms);
    case WEFT__MSG_OPS:
        return on_ops(ss, m, 1, now_ms);
    case WEFT__MSG_ACK:
        return on_ack(ss, m, now_ms);
    case WEFT__MSG_DONE:
        return on_done(ss, m, now_ms);
    case WEFT__MSG_ASK:
        return on_ask(ss, now_ms);
    default: /* PING: a sign of life, already counted */
        return 0;
    }
}

/* Apply the OPS messages held in @p ms (and free them). */
static int flush_ops(weft__session *ss, weft__msg *ms, size_t *k, uint64_t now_ms)
{
    int rc = *k > 0 ? on_ops(ss, ms, *k, now_ms) : 0;
    for (size_t i = 0; i < *k; i++) {
        weft__msg_free(&ms[i]);
    }
    *k = 0;
    return rc;
}

int weft__session_recv_many(weft__session *ss, const weft_bytes *frames, size_t n, uint64_t now_ms)
{
    if (ss == NULL || (frames == NULL && n > 0)) {
        return weft__err(WEFT_EINVAL, "weft__session_recv_many: %s is NULL",
                         ss == NULL ? "session" : "frames");
    }
    weft__msg ms[WEFT__APPLY_GROUP];
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ss->closed) {
            rc = ss->closed > 0 ? ss->closed : weft__err(ss->closed, "session is closed");
            break;
        }
        ss->last_recv = now_ms;
        weft__msg m;
        if ((rc = weft__msg_decode(frames[i].ptr, frames[i].len, &m)) != 0) {
            char why[WEFT_MSG_MAX];
            int bad = rc;
            snprintf(why, sizeof why, "%s", weft_last_error());
            rc = flush_ops(ss, ms, &k, now_ms);
            if (rc == 0) {
                rc = close_with(ss, bad, false, now_ms, "bad frame: %s", why);
            }
            break;
        }
        if (m.type == WEFT__MSG_OPS && ss->greeted) {
            ms[k++] = m; /* applied with the OPS that follow it, if any */
            if (k == WEFT__APPLY_GROUP) {
                rc = flush_ops(ss, ms, &k, now_ms);
            }
            continue;
        }
        rc = flush_ops(ss, ms, &k, now_ms); /* in order: the OPS before it first */
        if (rc == 0) {
            rc = dispatch(ss, &m, now_ms);
        }
        weft__msg_free(&m);
    }
    /* Every frame that closes the session, or fails, first flushed the OPS
     * before it, so k is 0 unless all went well. */
    int frc = flush_ops(ss, ms, &k, now_ms);
    return rc != 0 ? rc : frc;
}

int weft__session_recv(weft__session *ss, const uint8_t *buf, size_t len, uint64_t now_ms)
{
    weft_bytes f = {buf, len};
    return weft__session_recv_many(ss, &f, 1, now_ms);
}

/* ---------------------------------------------------------------- sending */

static int collect_cb(const weft_op *op, void *user)
{
    weft__session *ss = user;
    if (ss->nbatch == ss->cfg.batch_ops ||
        (ss->nbatch > 0 && ss->batch_bytes + op->payload.len > ss->cfg.batch_bytes)) {
        ss->more = true;
        return 1;
    }
    ss->batch[ss->nbatch++] = *op;
    ss->batch_bytes += op->payload.len;
    return 0;
}

/* Stream batches within the window; DONE when exhausted. */
static int stream(weft__session *ss, uint64_t now)
{
    weft_txn *t = NULL;
    weft_vv *ours = NULL;
    int rc = weft_txn_begin(ss->s, WEFT_TXN_RDONLY, &t);
    rc = rc ? rc : weft_store_vv(t, &ours);
    if (rc != 0) {
        weft_txn_abort(&t);
        return rc;
    }
    if (!weft__vv_le(ours, ss->ours) || !weft__vv_le(ss->ours, ours)) {
        ss->pending_known = false;
    }
    weft_vv_destroy(&ss->ours);
    ss->ours = ours;
    if (ss->pause_until != 0 && now < ss->pause_until) {
        weft_txn_abort(&t);
        return 0;
    }
    ss->pause_until = 0;
    if (!ss->pending_known) {
        if ((rc = weft__store_pending(t, ss->sent, &ss->pending_out, NULL)) != 0) {
            weft_txn_abort(&t);
            return rc;
        }
        ss->pending_known = true;
    }
    bool exhausted = false;
    while (ss->out_seq - ss->acked_seq < ss->cfg.window) {
        ss->nbatch = 0;
        ss->batch_bytes = 0;
        ss->more = false;
        rc = weft_ops_since(t, ss->sent, collect_cb, ss);
        if (rc < 0) {
            break;
        }
        rc = 0;
        if (ss->nbatch == 0) {
            exhausted = true;
            break;
        }
        /* The op views live only as long as t: encode now. */
        weft__buf b = {NULL, 0, 0};
        rc = weft__msg_ops(&b, ss->out_seq + 1, ss->batch, ss->nbatch);
        rc = rc ? rc : push_frame(ss, &b, now);
        weft__buf_free(&b);
        for (size_t i = 0; i < ss->nbatch && rc == 0; i++) {
            rc = weft_vv_set(ss->sent, ss->batch[i].id.device, ss->batch[i].id.hlc);
            rc = rc ? rc : vv_raise(ss->announced, ss->batch[i].id.device, ss->batch[i].id.hlc);
        }
        if (rc != 0) {
            break;
        }
        ss->out_seq++;
        if (ss->out_seq - ss->acked_seq == 1) {
            ss->ack_due = ack_deadline(ss, now);
        }
        uint64_t inflight = ss->out_seq - ss->acked_seq;
        if (inflight > ss->stats.max_inflight) {
            ss->stats.max_inflight = inflight;
        }
        ss->stats.batches_sent++;
        ss->stats.ops_sent += ss->nbatch;
        ss->stats.bytes_sent += ss->batch_bytes;
        ss->pending_out = ss->pending_out > ss->nbatch ? ss->pending_out - ss->nbatch : 0;
        push_event(ss, WEFT_EV_PROGRESS, ss->nbatch, ss->batch_bytes, ss->pending_out, 0, "sent");
        if (!ss->more) {
            exhausted = true;
            break;
        }
    }
    weft_txn_abort(&t);
    if (rc != 0) {
        return rc;
    }
    if (exhausted) {
        ss->pending_out = 0;
        if (!weft__vv_le(ss->ours, ss->announced)) {
            /* We hold ops the peer neither has been sent nor been told of
             * (they came from a third device and the peer holds them too). */
            weft__buf b = {NULL, 0, 0};
            rc = weft__msg_done(&b, ss->ours);
            rc = rc ? rc : push_frame(ss, &b, now);
            weft__buf_free(&b);
            rc = rc ? rc : weft__vv_merge(ss->announced, ss->ours, NULL);
        }
    }
    return rc;
}

int weft__session_poll(weft__session *ss, uint64_t now_ms)
{
    if (ss == NULL) {
        return weft__err(WEFT_EINVAL, "weft__session_poll: session is NULL");
    }
    if (ss->closed) {
        return ss->closed > 0 ? ss->closed : weft__err(ss->closed, "session is closed");
    }
    if (now_ms >= ss->last_recv + ss->cfg.dead_ms) {
        char msg[WEFT_MSG_MAX];
        snprintf(msg, sizeof msg, "peer silent for %llu ms",
                 (unsigned long long)(now_ms - ss->last_recv));
        ss->closed = WEFT_EIO;
        ss->silent = true;
        set_state(ss, WEFT_PEER_ERROR);
        push_event(ss, WEFT_EV_ERROR, 0, 0, ss->pending_out, WEFT_EIO, msg);
        return weft__err(WEFT_EIO, "%s", msg);
    }
    if (ss->ack_due != 0 && now_ms >= ss->ack_due) {
        return close_with(ss, WEFT_EIO, false, now_ms,
                          "%s acknowledged nothing for %llu ms (%llu batches outstanding)",
                          peer_name(ss), (unsigned long long)ACK_PATIENCE * ss->cfg.dead_ms,
                          (unsigned long long)(ss->out_seq - ss->acked_seq));
    }
    int rc = 0;
    if (ss->hello_in) {
        if ((rc = stream(ss, now_ms)) != 0) {
            return close_with(ss, rc, false, now_ms, "streaming ops: %s", weft_last_error());
        }
        if ((rc = update_state(ss, now_ms)) != 0) {
            return rc;
        }
    }
    if (now_ms >= ss->last_sent + ss->cfg.heartbeat_ms) {
        weft__buf b = {NULL, 0, 0};
        rc = weft__msg_ping(&b, weft__hlc_make(store_now(ss), 0));
        rc = rc ? rc : push_frame(ss, &b, now_ms);
        weft__buf_free(&b);
        if (rc != 0) {
            return close_with(ss, rc, false, now_ms, "queueing PING: %s", weft_last_error());
        }
    }
    return 0;
}

int weft__session_bye(weft__session *ss)
{
    if (ss == NULL) {
        return weft__err(WEFT_EINVAL, "weft__session_bye: session is NULL");
    }
    if (ss->closed) {
        return ss->closed > 0 ? 0 : ss->closed;
    }
    weft__buf b = {NULL, 0, 0};
    int rc = weft__msg_bye(&b, WEFT__BYE_DONE);
    rc = rc ? rc : push_frame(ss, &b, ss->last_sent);
    weft__buf_free(&b);
    if (rc != 0) {
        return rc;
    }
    close_bye(ss, "goodbye sent");
    return 0;
}

int weft__session_next(weft__session *ss, weft_bytes *frame)
{
    if (ss == NULL || frame == NULL || ss->q.n == 0) {
        return 0;
    }
    weft__buf_free(&ss->cur);
    ss->cur = ss->q.v[ss->q.head];
    ss->q.head++;
    ss->q.n--;
    if (ss->q.n == 0) {
        ss->q.head = 0;
    }
    frame->ptr = ss->cur.ptr;
    frame->len = ss->cur.len;
    return 1;
}

int weft__session_event(weft__session *ss, weft_event *ev)
{
    if (ss == NULL || ev == NULL || ss->evn == 0) {
        return 0;
    }
    *ev = ss->ev[ss->evhead];
    ss->evhead = (ss->evhead + 1) % EVQ_CAP;
    ss->evn--;
    return 1;
}

weft_peer_state weft__session_state(const weft__session *ss)
{
    return ss != NULL ? ss->state : WEFT_PEER_IDLE;
}

bool weft__session_silent(const weft__session *ss)
{
    return ss != NULL && ss->silent;
}

bool weft__session_caught_up(const weft__session *ss)
{
    return ss != NULL && !ss->closed && ss->hello_in && ss->out_seq == ss->acked_seq &&
           weft__vv_le(ss->ours, ss->acked) && weft__vv_le(ss->peer_done, ss->ours);
}

uint64_t weft__session_deadline(const weft__session *ss)
{
    if (ss == NULL || ss->closed) {
        return 0;
    }
    uint64_t d = ss->last_sent + ss->cfg.heartbeat_ms;
    uint64_t dead = ss->last_recv + ss->cfg.dead_ms;
    d = dead < d ? dead : d;
    if (ss->pause_until != 0 && ss->pause_until < d) {
        d = ss->pause_until;
    }
    if (ss->ack_due != 0 && ss->ack_due < d) {
        d = ss->ack_due;
    }
    return d;
}

const weft__session_stats *weft__session_stats_get(const weft__session *ss)
{
    return ss != NULL ? &ss->stats : NULL;
}
