/* weft_sync.h - identity, trusted peers, and the background sync engine.
 *
 * Each store has a Curve25519 keypair (created with the store); its device
 * id is derived from the public key. A device is reached through its
 * *device card*, one line printed by weft_card() ("weft1:<hex key>@<endpoint>")
 * that another device adds as a peer. Only peers in the store's list can
 * connect: everyone else is refused at the CURVE handshake.
 *
 * The sync engine (weft_sync) is one background thread owning every ZeroMQ
 * socket. It listens (optionally), connects to peers that have an address,
 * exchanges with each the ops the other lacks (docs/protocol.md), stays live
 * to push new local ops (also those committed by other processes on the same
 * store), retries failed peers with exponential backoff and jitter, and
 * reports state and progress as events and as a per-peer status that is also
 * persisted in the store, so `weft status` in another process can read it.
 * Refused handshakes are recorded in the store too (weft_refusals), so the
 * refusing side can tell who knocked. On stop it says goodbye (BYE) on every
 * open session, so peers see a clean close rather than a lost connection.
 *
 * Invariants:
 *   1. A received batch is applied atomically together with the peer's
 *      acknowledged vector; nothing is acknowledged before it is durable.
 *   2. pending_ops counts exactly the ops this store holds that the peer has
 *      not acknowledged, as persisted: a running session persists
 *      acknowledgements on the engine's 1 s status tick, so the count is at
 *      most that far behind (and over-, never under-reports).
 *   3. Clients whose key is not in the peer list never get past the handshake.
 *   4. Status and health are published before each event is delivered: a
 *      consumer reading weft_sync_status / weft_sync_health_get on an event
 *      sees counters that already include what the event reports.
 * Thread-safety: peer-list functions take a weft_store and are thread-safe.
 * A weft_sync is thread-safe: any thread may call its functions; callbacks run
 * on the engine thread and must not call weft_sync_stop().
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <weft/weft_err.h>
#include <weft/weft_export.h>
#include <weft/weft_store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
#define WEFT_PEER_NAME_MAX  63u    /* bytes in a peer's local name */
#define WEFT_ENDPOINT_MAX   255u   /* bytes in an endpoint ("tcp://127.0.0.1:7420") */
#define WEFT_CARD_MAX       1024u  /* bytes in a device card, NUL included */
#define WEFT_MSG_MAX        256u   /* bytes in a status or event message, NUL included */
#define WEFT_REFUSALS_MAX   8u     /* refused handshakes kept in detail (weft_refusals) */
/* clang-format on */

/* ---- identity ---- */

/** Write this device's card into @p buf (NUL-terminated):
 * "weft1:<64 hex public key>" followed by "@<endpoints>" when @p endpoints
 * (comma-separated, copied) is not NULL or empty.
 * @return 0; WEFT_ENOSPC (cap too small; nothing written), WEFT_EINVAL. */
WEFT_API int weft_card(const weft_store *s, const char *endpoints, char *buf, size_t cap);

/** Parse a card: the public key, and the first endpoint into @p addr (""
 * when the card has none). @return 0; WEFT_EINVAL with a message naming what
 * is wrong (prefix, key length, hex digit, endpoint too long). */
WEFT_API int weft_card_parse(const char *card, uint8_t public_key[WEFT_KEY_BYTES],
                             char addr[WEFT_ENDPOINT_MAX + 1]);

/** Device id of a public key (first 8 bytes, big-endian, of its BLAKE2b-256). */
WEFT_API uint64_t weft_device_of(const uint8_t public_key[WEFT_KEY_BYTES]);

/* ---- trusted peers (persisted in the store) ---- */

typedef enum weft_role {
    WEFT_ROLE_DEVICE = 0, /* another device of the same user */
    WEFT_ROLE_RELAY = 1,  /* an always-on peer that backs up and forwards */
} weft_role;

typedef enum weft_peer_state {
    WEFT_PEER_IDLE = 0,       /* not connected, nothing scheduled */
    WEFT_PEER_CONNECTING = 1, /* handshake under way, or waiting to retry */
    WEFT_PEER_PULLING = 2,    /* receiving ops it has and we lack */
    WEFT_PEER_PUSHING = 3,    /* sending ops we have and it lacks */
    WEFT_PEER_LIVE = 4,       /* caught up both ways; new ops are pushed as written */
    WEFT_PEER_ERROR = 5,      /* last attempt failed; see last_error */
} weft_peer_state;

/** "idle", "connecting", "pulling", "pushing", "live", "error". Static. */
WEFT_API const char *weft_peer_state_name(weft_peer_state st);

/** A peer and what is known of it. Plain value, copied out. */
typedef struct weft_peer_status {
    char name[WEFT_PEER_NAME_MAX + 1];
    uint8_t public_key[WEFT_KEY_BYTES];
    uint64_t device;
    weft_role role;
    char addr[WEFT_ENDPOINT_MAX + 1]; /* where we connect; "" if it connects to us */
    weft_peer_state state;
    uint64_t pending_ops;    /* ops we hold that it has not acknowledged (exact) */
    uint64_t pending_bytes;  /* their payload bytes */
    int64_t clock_offset_ms; /* its clock minus ours, from the last hello */
    int skewed;              /* 1 while ops between us are deferred by the drift horizon:
                                its clock is ahead (we defer its ops) or behind (it
                                defers ours); cleared by a batch applied in full */
    int last_error;          /* WEFT_E* of the last failure, 0 if none */
    char last_error_msg[WEFT_MSG_MAX];
    uint64_t last_sync_ms;     /* wall clock of the last time both sides were caught up */
    uint64_t syncs, failures;  /* sessions that reached live / that failed */
    uint64_t last_duration_ms; /* connect -> caught up, last successful session */
    uint64_t ops_sent, ops_received, bytes_sent, bytes_received; /* totals */
    uint64_t updated_ms; /* when the engine last persisted this status */
} weft_peer_status;

/** Add a trusted peer. @p card as printed by weft_card(); @p addr overrides
 * the card's endpoint (NULL: the card's, possibly none). Copied.
 * @return 0; WEFT_EINVAL (bad name or card), WEFT_EEXIST (name or key already
 * a peer), WEFT_EIO. */
WEFT_API int weft_peer_add(weft_store *s, const char *name, const char *card, const char *addr,
                           weft_role role);

/** Remove a peer by name: it can no longer connect. @return 0; WEFT_ENOTFOUND. */
WEFT_API int weft_peer_rm(weft_store *s, const char *name);

/** Status of one peer as persisted (by a running engine, in any process).
 * pending_ops/pending_bytes are computed now from the store. WEFT_ENOTFOUND. */
WEFT_API int weft_peer_get(weft_store *s, const char *name, weft_peer_status *out);

/** Call @p cb for every peer, in name order. @p st is borrowed for the call.
 * @return the number of peers. */
typedef int (*weft_peer_cb)(const weft_peer_status *st, void *user);
WEFT_API int weft_peer_list(weft_store *s, weft_peer_cb cb, void *user);

/* ---- the sync engine ---- */

typedef struct weft_sync weft_sync;

typedef enum weft_event_kind {
    WEFT_EV_STATE = 1,    /* a peer changed state (ev.state) */
    WEFT_EV_PROGRESS = 2, /* ops moved (ev.ops, ev.bytes this step; ev.pending left) */
    WEFT_EV_CHANGES = 3,  /* remote ops were applied to the store (ev.ops of them) */
    WEFT_EV_CONFLICT = 4, /* applied ops left fields in conflict (ev.ops = conflicts now) */
    WEFT_EV_SKEW = 5,     /* ops were deferred by a drift horizon (ev.ops of them): the
                             peer's clock is ahead of ours (we deferred its ops) or behind
                             (it deferred ours); ev.message names the peer and the offset */
    WEFT_EV_REFUSED = 6,  /* a connection was refused (unknown key, wrong server key...) */
    WEFT_EV_ERROR = 7,    /* a session failed (ev.error, ev.message) */
} weft_event_kind;

/** One event. Plain value. */
typedef struct weft_event {
    weft_event_kind kind;
    char peer[WEFT_PEER_NAME_MAX + 1]; /* "" when not about a known peer */
    weft_peer_state state;
    uint64_t ops, bytes, pending;
    int error;
    char message[WEFT_MSG_MAX];
} weft_event;

/** Runs on the engine thread; @p ev is borrowed for the call. */
typedef void (*weft_event_cb)(const weft_event *ev, void *user);

typedef struct weft_sync_options {
    const char *listen;     /* endpoint to bind, e.g. "tcp://127.0.0.1:7420"; NULL: none */
    int relay;              /* 1: act as a relay (accept every trusted peer; connect only to
                               peers named by weft_sync_now()) */
    int connect;            /* 1 (default): connect to peers that have an address; 0: only
                               to those named by weft_sync_now() */
    weft_event_cb on_event; /* NULL: events only through weft_sync_fd/next_event */
    void *user;
    uint32_t heartbeat_ms;                   /* 0 = 1000 */
    uint32_t dead_ms;                        /* 0 = 5000 */
    uint32_t backoff_min_ms, backoff_max_ms; /* 0 = 500, 60000 */
} weft_sync_options;

WEFT_API void weft_sync_options_init(weft_sync_options *opt);

/** Start the engine on @p s (borrowed: it must outlive the engine). Binds
 * the listen endpoint before returning, so a bad or busy endpoint is reported
 * here. @param[out] out caller owns; stop with weft_sync_stop().
 * @return 0; WEFT_EINVAL, WEFT_EIO (bind failed: the message says why),
 * WEFT_ENOMEM. */
WEFT_API WEFT_MUST_CHECK int weft_sync_start(weft_store *s, const weft_sync_options *opt,
                                             weft_sync **out);

/** The endpoint the engine listens on, with the real port when it was asked
 * to bind "tcp://host:*" (copied into @p buf, NUL-terminated; "" when not
 * listening). @return 0; WEFT_ENOSPC (cap too small), WEFT_EINVAL. */
WEFT_API int weft_sync_endpoint(weft_sync *e, char *buf, size_t cap);

/** Stop the engine: say goodbye (BYE) on every open session, giving the
 * frames up to 200 ms to leave, and close it (nothing acknowledged is lost; a
 * batch in flight is either applied whole or not at all), join the thread,
 * free. Never blocks longer than that on the network. NULL-safe; sets
 * *self_p to NULL. */
WEFT_API void weft_sync_stop(weft_sync **self_p);

/** Connect now to @p peer (NULL: every peer with an address), resetting its
 * backoff. An explicit request: it is honoured even when the engine was
 * started with opt.connect = 0 (or as a relay), and the engine then keeps
 * that peer connected, retrying with backoff, until it stops; other peers are
 * left alone. A peer without an address is not connected to (it connects to
 * us). @return 0; WEFT_ENOTFOUND. */
WEFT_API int weft_sync_now(weft_sync *e, const char *peer);

/** Copy the live status of up to @p cap peers into @p out; *n receives how
 * many peers there are. @return 0; WEFT_ENOMEM or WEFT_EIO when the pending
 * counts cannot be computed (nothing written then). */
WEFT_API int weft_sync_status(weft_sync *e, weft_peer_status *out, size_t cap, size_t *n);

/** Totals since start: sessions run, failed, their durations, bytes each way. */
typedef struct weft_sync_health {
    uint64_t sessions, failures, refused;
    uint64_t bytes_sent, bytes_received, ops_sent, ops_received;
    uint64_t last_duration_ms, max_duration_ms, total_duration_ms;
} weft_sync_health;

WEFT_API int weft_sync_health_get(weft_sync *e, weft_sync_health *out);

/** One refused handshake, as recorded in the store. Plain value. */
typedef struct weft_refusal {
    uint8_t public_key[WEFT_KEY_BYTES]; /* the client's key; all zero if it offered none */
    char addr[64];                      /* its address as ZeroMQ saw it ("127.0.0.1") */
    uint64_t at_ms;                     /* when, ms since the Unix epoch */
} weft_refusal;

/** The handshakes this store's engines refused (unknown keys), as persisted:
 * readable from any process, also after the engine stopped. Copies up to
 * @p cap of the newest (at most WEFT_REFUSALS_MAX are kept), newest first,
 * into @p out; *n receives how many are kept, *total (optional) how many were
 * refused in all. Engines write the record at most once a second (and on
 * stop), so a refusal may take that long to show.
 * @return 0; WEFT_EINVAL, WEFT_ECORRUPT, WEFT_EIO. */
WEFT_API int weft_refusals(weft_store *s, weft_refusal *out, size_t cap, size_t *n,
                           uint64_t *total);

/** A descriptor that is readable while events are queued (level-triggered),
 * for the app's own poll loop. Borrowed until weft_sync_stop(). */
WEFT_API int weft_sync_fd(weft_sync *e, int *fd);

/** Take the oldest queued event. @return 1 (got one), 0 (none). The queue
 * holds the newest 1024 events; older ones are dropped (ev counts them as a
 * WEFT_EV_ERROR "events dropped"). */
WEFT_API int weft_sync_next_event(weft_sync *e, weft_event *ev);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_SYNC_H */
