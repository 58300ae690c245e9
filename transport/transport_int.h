/* transport_int.h - the sync protocol inside libweft: wire messages
 * (wire.c), the session state machine (session.c), the engine that drives
 * sessions over ZeroMQ (engine.c), and the peer records kept in the store's
 * `peers` database and the refused-handshakes record in its `meta` database
 * (peers.c, which uses store internals: transport sits on top of store).
 *
 * docs/protocol.md is the specification; this header is its C shape.
 *
 * The session is free of network I/O and of time: it is fed received frames
 * and the current time, and it hands back frames to send and events. It
 * reads and writes the local store directly (a replica is local state, not
 * I/O in this sense), so a test or a simulator can drive two sessions on two
 * real stores against each other without sockets, dropping, duplicating,
 * reordering or delaying frames at will. The engine is a thin adapter: it
 * moves frames between sessions and ZeroMQ sockets and calls
 * weft__session_poll() when the store changes or a deadline passes.
 *
 * Invariants:
 *   1. Every frame a session emits decodes with weft__msg_decode, is at most
 *      WEFT__MSG_MAX bytes, and follows the ordering rules of protocol.md.
 *   2. A session applies each OPS batch in one write transaction together
 *      with the peer's acknowledged vector (weft__peer_acked_merge) (batches
 *      received in a row may share it: weft__session_recv_many), and emits
 *      the ACK only after that transaction committed. ACKs it receives
 *      are kept exact in memory and persisted lazily (weft__session_save).
 *   3. A session never holds more than WEFT__WINDOW unacknowledged OPS
 *      batches, each at most WEFT__OPS_FRAME_MAX bytes encoded, so its
 *      memory is bounded whatever the backlog.
 *   4. weft__msg_decode allocates at most O(WEFT__BATCH_OPS) before it has
 *      checked the input holds that many ops.
 * Thread-safety: a session is confined to one thread (the engine's, or a
 * test's). Peer-record functions take a transaction and follow its rules.
 */
#ifndef WEFT_TRANSPORT_INT_H
#define WEFT_TRANSPORT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/weft_sync.h>

#include "../common/weft_int.h"

/* clang-format off */
#define WEFT__PROTO_VERSION  2u
#define WEFT__MSG_MAX        (4u << 20)   /* decoder cap on one message */
/* ZMQ_MAXMSGSIZE counts the CURVE MESSAGE command, 33 bytes more than the
 * message (name 8, nonce 8, MAC 16, flags 1): the socket cap is
 * WEFT__MSG_MAX + this, so every message up to WEFT__MSG_MAX reaches the
 * decoder and ZeroMQ drops larger ones with the connection. */
#define WEFT__CURVE_OVERHEAD 33
#define WEFT__BATCH_OPS      4096u        /* ops per OPS message */
#define WEFT__BATCH_BYTES    (1u << 20)   /* payload bytes per OPS (one bigger op goes alone) */
#define WEFT__WINDOW         4u           /* unacknowledged OPS per session */
#define WEFT__APPLY_GROUP    8u           /* OPS received in a row applied in one txn, at most */
/* The framing of an OPS at its largest: the message's head (fixarray,
 * type, seq as uint64, array32 header: 1 + 1 + 9 + 5) and each op's
 * (fixarray, hlc, device and dprev as uint64, bin32 header: 1 + 27 + 5). */
#define WEFT__OPS_HEAD_MAX   16u
#define WEFT__OPS_OP_MAX     33u
/* The largest OPS frame a session encodes: a full batch (<= WEFT__BATCH_OPS
 * ops, <= WEFT__BATCH_BYTES payload bytes) at its largest framing. One op
 * alone of WEFT_PAYLOAD_MAX (~1.02 MiB) is smaller. With 4096 ops this is
 * 16 + 4096 * 33 + 1 MiB = 1,183,760 bytes, under WEFT__MSG_MAX (wire.c
 * asserts both at compile time), so a full batch always encodes; a
 * session's window holds at most WEFT__WINDOW of them (~4.5 MiB). */
#define WEFT__OPS_FRAME_MAX \
    (WEFT__OPS_HEAD_MAX + WEFT__OPS_OP_MAX * WEFT__BATCH_OPS + WEFT__BATCH_BYTES)
#define WEFT__VV_DIGEST_BYTES 12u         /* a HELLO's vector digest */
#define WEFT__HEARTBEAT_MS   1000u
#define WEFT__DEAD_MS        5000u
#define WEFT__SKEW_PAUSE_MS  30000u       /* no sending after a deferred ACK */
/* clang-format on */

/* ================================================================ wire.c */

enum weft__msg_type {
    WEFT__MSG_HELLO = 1,
    WEFT__MSG_OPS = 2,
    WEFT__MSG_ACK = 3,
    WEFT__MSG_DONE = 4,
    WEFT__MSG_PING = 5,
    WEFT__MSG_ERROR = 6,
    WEFT__MSG_BYE = 7,
    WEFT__MSG_ASK = 8,
};

enum weft__bye_reason {
    WEFT__BYE_DONE = 0, /* done, or shutting down: a clean close */
};

enum weft__ack_status {
    WEFT__ACK_APPLIED = 0,
    WEFT__ACK_DEFERRED = 1,
    WEFT__ACK_GAP = 2,
};

/* A decoded message. ops[i].payload and text point into the decoded frame:
 * keep the frame alive while using them. vv and ops are owned by the message
 * (weft__msg_free). */
typedef struct weft__msg {
    int type;
    uint32_t version; /* HELLO */
    uint32_t role;    /* HELLO: weft_role */
    bool has_digest;  /* HELLO: digest instead of vv */
    uint8_t digest[WEFT__VV_DIGEST_BYTES];
    uint64_t hlc;    /* HELLO, PING */
    uint64_t seq;    /* OPS, ACK */
    uint32_t status; /* ACK: weft__ack_status */
    weft_vv *vv;     /* HELLO (unless has_digest), ACK, DONE */
    weft_op *ops;    /* OPS */
    size_t nops;
    int code;        /* ERROR: a WEFT_E* code */
    weft_bytes text; /* ERROR: UTF-8, <= 256 bytes */
    uint32_t reason; /* BYE: weft__bye_reason (others are read as a clean close too) */
} weft__msg;

/** Decode one frame. WEFT_ECORRUPT (malformed, unknown type, wrong arity,
 * trailing bytes, ops out of order within the batch), WEFT_ELIMIT (over the
 * caps of protocol.md), WEFT_ENOMEM. On error *out holds nothing to free. */
int weft__msg_decode(const uint8_t *buf, size_t len, weft__msg *out);
void weft__msg_free(weft__msg *m);

/* Encoders append one frame to @p out. 0 or WEFT_ENOMEM. */
int weft__msg_hello(weft__buf *out, weft_role role, const weft_vv *vv, uint64_t hlc);
int weft__msg_hello_digest(weft__buf *out, weft_role role,
                           const uint8_t digest[WEFT__VV_DIGEST_BYTES], uint64_t hlc);
int weft__msg_ask(weft__buf *out);
int weft__msg_ops(weft__buf *out, uint64_t seq, const weft_op *ops, size_t n);
int weft__msg_ack(weft__buf *out, uint64_t seq, uint32_t status, const weft_vv *vv);
int weft__msg_done(weft__buf *out, const weft_vv *vv);
int weft__msg_ping(weft__buf *out, uint64_t hlc);
int weft__msg_error(weft__buf *out, int code, const char *text);
int weft__msg_bye(weft__buf *out, uint32_t reason);

/* The protocol's version-vector encoding is a canonical map uint -> uint,
 * written by weft__vv_put (store_int.h). read, shared with peers.c: parses
 * one vv at *p (bounded by @p end) and advances *p; WEFT_ECORRUPT,
 * WEFT_ELIMIT (over 65,536 devices, from the header alone, before any
 * allocation), WEFT_ENOMEM. */
int weft__wire_vv_read(const uint8_t **p, const uint8_t *end, weft_vv **out);
/* The digest a HELLO carries instead of @p vv (NULL: the empty vector). */
void weft__wire_vv_digest(const weft_vv *vv, uint8_t out[WEFT__VV_DIGEST_BYTES]);

/* ================================================================ session.c */

typedef struct weft__session weft__session;

typedef struct weft__session_cfg {
    uint8_t peer_key[WEFT_KEY_BYTES];  /* the peer's public key (CURVE-authenticated) */
    char name[WEFT_PEER_NAME_MAX + 1]; /* its local name, for messages ("": "the peer") */
    weft_role role;                    /* our role, sent in HELLO */
    uint32_t heartbeat_ms;             /* 0 = WEFT__HEARTBEAT_MS */
    uint32_t dead_ms;                  /* 0 = WEFT__DEAD_MS */
    uint32_t window;                   /* 0 = WEFT__WINDOW */
    uint32_t batch_ops, batch_bytes;   /* 0 = WEFT__BATCH_OPS / WEFT__BATCH_BYTES */
} weft__session_cfg;

/** Per-session counters. */
typedef struct weft__session_stats {
    uint64_t ops_sent, ops_received, bytes_sent, bytes_received;
    uint64_t batches_sent, batches_received, deferred, gaps;
    int64_t clock_offset_ms; /* peer's HELLO hlc minus our clock */
    uint64_t started_ms, caught_up_ms;
    uint64_t max_inflight; /* most unacknowledged OPS ever outstanding (<= window) */
    /* Drift-horizon deferrals, per direction: -1 no batch that way yet in this
     * session; 1 the last one was deferred; 0 the last one was applied in
     * full. skew_in: its batches to us; skew_out: ours to it. */
    int skew_in, skew_out;
} weft__session_stats;

/** What weft__session_recv returns when the peer said BYE: the session is
 * closed cleanly (state IDLE, no error). Positive, so it is never mistaken
 * for a WEFT_E* failure. */
#define WEFT__SESSION_BYE 1

/** A new session with the peer whose key is cfg->peer_key (which must be a
 * peer of @p s: WEFT_ENOTFOUND otherwise). Queues HELLO.
 * @param[in] s borrowed; must outlive the session. */
int weft__session_new(weft_store *s, const weft__session_cfg *cfg, uint64_t now_ms,
                      weft__session **out);
void weft__session_destroy(weft__session **self_p);

/** Feed one received frame (borrowed for the call). Applies OPS batches to
 * the store, queues ACKs, handles ACK/DONE/PING/HELLO/BYE. Returns 0;
 * WEFT__SESSION_BYE when the peer said goodbye (close without error: not a
 * failure); or a negative WEFT_E* when the session must close: an ERROR
 * frame has then been queued (send it, then close). */
int weft__session_recv(weft__session *ss, const uint8_t *buf, size_t len, uint64_t now_ms);

/** Feed @p n frames received in a row, as n calls of weft__session_recv
 * would, except that consecutive OPS messages (up to WEFT__APPLY_GROUP; the
 * engine hands over at most that many frames at once) are applied in one
 * write transaction with one durable commit; each still gets its own ACK,
 * queued after that commit. Stops at the first frame that closes the session
 * and returns as weft__session_recv does. */
int weft__session_recv_many(weft__session *ss, const weft_bytes *frames, size_t n, uint64_t now_ms);

/** Say goodbye: queue BYE (reason WEFT__BYE_DONE) and close the session
 * cleanly (state IDLE); afterwards nothing more is queued and recv/poll
 * return WEFT__SESSION_BYE. Send the queued frames, then close the
 * connection. Idempotent. Returns 0, the error that already closed the
 * session (nothing queued then), or WEFT_ENOMEM. */
int weft__session_bye(weft__session *ss);

/** Advance: stream ops the peer lacks (within the window), send DONE,
 * heartbeats. Call after recv, when the store changed, and at the deadline.
 * Returns 0, or WEFT_EIO when the peer has been silent for dead_ms (close);
 * WEFT__SESSION_BYE once the session closed by a goodbye. */
int weft__session_poll(weft__session *ss, uint64_t now_ms);

/** The next frame to send: 1 and *frame (valid until the next call on the
 * session), or 0 when there is none. */
int weft__session_next(weft__session *ss, weft_bytes *frame);

/** The next event for the app (state changes, progress, changes, conflicts,
 * skew, errors): 1 and *ev, or 0. ev->peer is left empty (the engine fills it). */
int weft__session_event(weft__session *ss, weft_event *ev);

weft_peer_state weft__session_state(const weft__session *ss);

/** Caught up both ways (protocol.md section 4). */
bool weft__session_caught_up(const weft__session *ss);
/** Did weft__session_poll close the session because the peer fell silent
 * (dead_ms; no ERROR frame queued)? Other closes queue ERROR. */
bool weft__session_silent(const weft__session *ss);

/** When weft__session_poll must run next at the latest (ms, absolute). */
uint64_t weft__session_deadline(const weft__session *ss);

const weft__session_stats *weft__session_stats_get(const weft__session *ss);

/** Persist, in the write transaction @p t, what the peer acknowledged that
 * the store does not have yet (ACKs are kept in memory: a durable commit per
 * ACK would double the sender's fsyncs). The engine calls it on its status
 * tick and before destroying a session. If @p t then fails to commit, the
 * vector is relearnt from the peer's next HELLO (pending is over-reported
 * meanwhile, never under). 0 or an error of weft__peer_acked_merge. */
int weft__session_save(weft__session *ss, weft_txn *t);

/** True when weft__session_save has something to write. */
bool weft__session_unsaved(const weft__session *ss);

/** The peer's acknowledged vector as this session knows it (exact, newer
 * than the persisted one), or NULL before the peer's HELLO. Borrowed. */
const weft_vv *weft__session_acked(const weft__session *ss);

/* ================================================================ peers.c */

/** Merge @p vv into the acknowledged vector of the peer with key @p key
 * (entry-wise max), in the write transaction @p t (journaled). WEFT_ENOTFOUND. */
int weft__peer_acked_merge(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], const weft_vv *vv);

/** The peer's acknowledged vector (caller owns). WEFT_ENOTFOUND. */
int weft__peer_acked_get(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], weft_vv **out);

/** Persist the live part of a peer's status (state, errors, counters, times;
 * not name/key/role/addr/acked) in @p t. WEFT_ENOTFOUND. */
int weft__peer_status_put(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES],
                          const weft_peer_status *st);

/** Look a peer up by key (for the ZAP handler and sessions). 0 and *out, or
 * WEFT_ENOTFOUND. */
int weft__peer_by_key(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], weft_peer_status *out);

/** The refused handshakes recorded in the store (meta "refused", format in
 * peers.c): the total and the newest WEFT_REFUSALS_MAX, oldest first. */
typedef struct weft__refusals {
    uint64_t total;
    size_t n;
    weft_refusal v[WEFT_REFUSALS_MAX];
} weft__refusals;

/** Read the record (all zero when there is none). WEFT_ECORRUPT. */
int weft__refusals_get(weft_txn *t, weft__refusals *out);

/** Add @p count refusals to the total and @p v[0..n) (n <= count, oldest
 * first) to the entries kept, in the write transaction @p t (journaled). A
 * corrupt record is replaced. */
int weft__refusals_add(weft_txn *t, uint64_t count, const weft_refusal *v, size_t n);

/** Count the ops (and payload bytes) this store holds beyond @p vv, in
 * O(pending) (each device's run in ops, from the vector on). */
int weft__store_pending(weft_txn *t, const weft_vv *vv, uint64_t *ops, uint64_t *bytes);

#endif /* WEFT_TRANSPORT_INT_H */
