/* peers.c - device identity (cards, device ids), the trusted-peer records
 * kept in the store's `peers` database, and the record of refused
 * handshakes in its `meta` database: the public peer API of weft_sync.h
 * (weft_refusals included) and the weft__peer_* / weft__refusals_* /
 * weft__store_pending internals the session and engine use.
 *
 * A peer record maps the peer's public key (32 raw bytes, the LMDB key) to a
 * canonical msgpack array of 19 elements (record version 1):
 *
 *    idx  type   field
 *     0   uint   record version, = 1
 *     1   str    name: 1..WEFT_PEER_NAME_MAX bytes of printable UTF-8, no
 *                whitespace or control character, no '/'; unique
 *     2   uint   role (weft_role: 0 device, 1 relay)
 *     3   str    addr: 0..WEFT_ENDPOINT_MAX bytes ("" = it connects to us)
 *     4   map    acked vector: device (uint) -> hlc (uint), devices strictly
 *                ascending, no zero hlc (the protocol's vv encoding)
 *     5   uint   state (weft_peer_state, as last persisted)
 *     6   int    clock_offset_ms
 *     7   uint   skewed (0 or 1)
 *     8   int    last_error (0 or a WEFT_E* code)
 *     9   str    last_error_msg (< WEFT_MSG_MAX bytes)
 *    10   uint   last_sync_ms
 *    11   uint   syncs
 *    12   uint   failures
 *    13   uint   last_duration_ms
 *    14   uint   ops_sent          15 uint ops_received
 *    16   uint   bytes_sent        17 uint bytes_received
 *    18   uint   updated_ms
 *
 * The refusals record is `meta` key "refused" (7 bytes, no NUL), value a
 * canonical msgpack array of 3 (record version 1), at most 884 bytes:
 *
 *    idx  type   field
 *     0   uint   record version, = 1
 *     1   uint   total: handshakes refused since the store was created
 *     2   array  the most recent refusals, oldest first, at most
 *                WEFT_REFUSALS_MAX (8) entries, each an array of 3:
 *                  0  bin 32  the client's public key (32 zero bytes when
 *                             it offered none: not a CURVE client)
 *                  1  str     its address as ZAP reported it, 0..63 bytes
 *                             of printable ASCII
 *                  2  uint    when, ms since the Unix epoch (wall clock)
 *
 * e.g. 93 01 01 91 93 c4 20 <32 key bytes> a9 "127.0.0.1" cf <8 bytes ms>.
 * The total is at least the number of entries. Engines add to it with
 * weft__refusals_add (read, merge, write in one write transaction), so two
 * engines on one store never lose each other's counts.
 *
 * All integers use the shortest canonical encoding (crdt's weft__mp_put_*),
 * so a record's bytes are a function of its contents. Every write goes
 * through weft__txn_put (journaled: it survives a map growth).
 *
 * Invariants:
 *   1. Keys are exactly WEFT_KEY_BYTES long; no record carries this store's
 *      own key; names are unique among records.
 *   2. decode() trusts nothing: every length is checked against the bytes
 *      left before use, and it allocates only the acked vector, after
 *      weft_vv_decode has bounded it.
 *   3. weft__store_pending costs O(devices + pending ops): it walks the
 *      devices' runs in ops beyond the vector (weft_ops_since), never the log.
 *   4. The refusals decoder reads into a fixed array: it allocates nothing,
 *      accepts at most WEFT_REFUSALS_MAX entries and rejects trailing bytes.
 * Thread-safety: the public functions take a weft_store and open their own
 * transactions (thread-safe like the store); the weft__ ones follow the rules
 * of the transaction they are given.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/killpoint.h"
#include "../store/store_int.h"
#include "transport_int.h"

#define REC_VERSION 1u
#define REC_FIELDS  19u
#define CARD_PREFIX "weft1:"

/* ---------------------------------------------------------------- identity */

uint64_t weft_device_of(const uint8_t public_key[WEFT_KEY_BYTES])
{
    uint8_t h[32];
    if (public_key == NULL) {
        return 0;
    }
    crypto_generichash(h, sizeof h, public_key, WEFT_KEY_BYTES, NULL, 0);
    return weft__be64_get(h);
}

int weft_card(const weft_store *s, const char *endpoints, char *buf, size_t cap)
{
    if (s == NULL || (buf == NULL && cap > 0)) {
        return weft__err(WEFT_EINVAL, "weft_card: store and buf are required");
    }
    size_t elen = endpoints != NULL ? strlen(endpoints) : 0;
    for (size_t i = 0; i < elen; i++) {
        unsigned char c = (unsigned char)endpoints[i];
        if (c <= ' ' || c == 0x7f) {
            return weft__err(WEFT_EINVAL,
                             "weft_card: endpoint list has a space or control "
                             "character at byte %zu",
                             i);
        }
    }
    size_t need = strlen(CARD_PREFIX) + 2 * WEFT_KEY_BYTES + (elen ? 1 + elen : 0) + 1;
    if (need > WEFT_CARD_MAX) {
        return weft__err(WEFT_EINVAL, "weft_card: card would be %zu bytes, the limit is %u", need,
                         WEFT_CARD_MAX);
    }
    if (cap < need) {
        return weft__err(WEFT_ENOSPC, "weft_card: card needs %zu bytes, buffer has %zu", need, cap);
    }
    char hex[2 * WEFT_KEY_BYTES + 1];
    weft__hex_encode(hex, s->public_key, WEFT_KEY_BYTES);
    snprintf(buf, cap, "%s%s%s%s", CARD_PREFIX, hex, elen ? "@" : "", elen ? endpoints : "");
    return 0;
}

int weft_card_parse(const char *card, uint8_t public_key[WEFT_KEY_BYTES],
                    char addr[WEFT_ENDPOINT_MAX + 1])
{
    if (card == NULL || public_key == NULL || addr == NULL) {
        return weft__err(WEFT_EINVAL, "weft_card_parse: card, public_key and addr are required");
    }
    size_t plen = strlen(CARD_PREFIX);
    if (strncmp(card, CARD_PREFIX, plen) != 0) {
        return weft__err(WEFT_EINVAL, "card does not start with \"%s\"", CARD_PREFIX);
    }
    const char *h = card + plen;
    uint8_t key[WEFT_KEY_BYTES];
    for (size_t i = 0; i < 2 * WEFT_KEY_BYTES; i++) {
        if (h[i] == '\0' || h[i] == '@') {
            return weft__err(WEFT_EINVAL, "card key has %zu hex digits, expected %u", i,
                             2 * WEFT_KEY_BYTES);
        }
        if (weft__hex_digit(h[i]) < 0) {
            return weft__err(WEFT_EINVAL, "card key has a non-hex character at digit %zu", i);
        }
    }
    weft__hex_decode(h, key, WEFT_KEY_BYTES); /* every digit checked above */
    const char *rest = h + 2 * WEFT_KEY_BYTES;
    char a[WEFT_ENDPOINT_MAX + 1] = "";
    if (*rest == '@') {
        rest++;
        size_t n = strcspn(rest, ",");
        if (n == 0) {
            return weft__err(WEFT_EINVAL, "card has an empty endpoint after '@'");
        }
        if (n > WEFT_ENDPOINT_MAX) {
            return weft__err(WEFT_EINVAL, "card endpoint is %zu bytes, the limit is %u", n,
                             WEFT_ENDPOINT_MAX);
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)rest[i];
            if (c <= ' ' || c == 0x7f) {
                return weft__err(WEFT_EINVAL, "card endpoint has a space or control character");
            }
        }
        memcpy(a, rest, n);
        a[n] = '\0';
    } else if (*rest != '\0') {
        return weft__err(WEFT_EINVAL, "card key has more than %u hex digits", 2 * WEFT_KEY_BYTES);
    }
    memcpy(public_key, key, WEFT_KEY_BYTES);
    memcpy(addr, a, strlen(a) + 1);
    return 0;
}

const char *weft_peer_state_name(weft_peer_state st)
{
    switch (st) {
    case WEFT_PEER_IDLE:
        return "idle";
    case WEFT_PEER_CONNECTING:
        return "connecting";
    case WEFT_PEER_PULLING:
        return "pulling";
    case WEFT_PEER_PUSHING:
        return "pushing";
    case WEFT_PEER_LIVE:
        return "live";
    case WEFT_PEER_ERROR:
        return "error";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- records */

/* A decoded record: the status (pending_* left 0) and the acked vector. */
typedef struct peer_rec {
    weft_peer_status st;
    weft_vv *acked; /* owned */
} peer_rec;

static void rec_free(peer_rec *r)
{
    weft_vv_destroy(&r->acked);
}

/* Printable UTF-8, no whitespace, no control character, no '/'. */
static int name_check(const char *name, size_t *len)
{
    if (name == NULL) {
        return weft__err(WEFT_EINVAL, "peer name is required");
    }
    size_t n = strlen(name);
    if (n == 0 || n > WEFT_PEER_NAME_MAX) {
        return weft__err(WEFT_EINVAL, "peer name is %zu bytes; it must be 1..%u", n,
                         WEFT_PEER_NAME_MAX);
    }
    if (!weft__utf8_valid((const uint8_t *)name, n)) {
        return weft__err(WEFT_EINVAL, "peer name is not valid UTF-8");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c == 0x7f || c == '/') {
            return weft__err(WEFT_EINVAL,
                             "peer name has a space, control character or '/' at byte %zu", i);
        }
    }
    *len = n;
    return 0;
}

static int rec_encode(const peer_rec *r, weft__buf *out)
{
    const weft_peer_status *st = &r->st;
    int rc = weft__mp_put_array(out, REC_FIELDS);
    rc = rc ? rc : weft__mp_put_uint(out, REC_VERSION);
    rc = rc ? rc : weft__mp_put_str(out, st->name, strlen(st->name));
    rc = rc ? rc : weft__mp_put_uint(out, (uint64_t)st->role);
    rc = rc ? rc : weft__mp_put_str(out, st->addr, strlen(st->addr));
    rc = rc ? rc : weft__vv_put(out, r->acked);
    rc = rc ? rc : weft__mp_put_uint(out, (uint64_t)st->state);
    rc = rc ? rc : weft__mp_put_int(out, st->clock_offset_ms);
    rc = rc ? rc : weft__mp_put_uint(out, st->skewed ? 1 : 0);
    rc = rc ? rc : weft__mp_put_int(out, st->last_error);
    rc = rc ? rc : weft__mp_put_str(out, st->last_error_msg, strlen(st->last_error_msg));
    const uint64_t u[] = {st->last_sync_ms,     st->syncs,          st->failures,
                          st->last_duration_ms, st->ops_sent,       st->ops_received,
                          st->bytes_sent,       st->bytes_received, st->updated_ms};
    for (size_t i = 0; i < sizeof u / sizeof u[0] && rc == 0; i++) {
        rc = weft__mp_put_uint(out, u[i]);
    }
    return rc;
}

static int read_cstr(weft__mp_reader *rd, char *dst, size_t cap, size_t minlen, const char *what)
{
    const uint8_t *s;
    uint32_t n;
    if (weft__mp_read_str(rd, &s, &n) != 0 || n < minlen || n >= cap || memchr(s, 0, n)) {
        return weft__err(WEFT_ECORRUPT, "peer record: bad %s", what);
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int rec_decode(const uint8_t *key, const uint8_t *buf, size_t len, peer_rec *out)
{
    weft__mp_reader rd = {buf, buf + len};
    peer_rec r;
    memset(&r, 0, sizeof r);
    uint32_t n;
    uint64_t ver, role, state, skewed;
    int64_t off, lerr;
    if (weft__mp_read_array(&rd, &n) != 0 || n != REC_FIELDS ||
        weft__mp_read_uint(&rd, &ver) != 0 || ver != REC_VERSION) {
        return weft__err(WEFT_ECORRUPT, "peer record: not a version %u record of %u fields",
                         REC_VERSION, REC_FIELDS);
    }
    int rc = read_cstr(&rd, r.st.name, sizeof r.st.name, 1, "name");
    if (rc == 0 && (weft__mp_read_uint(&rd, &role) != 0 || role > WEFT_ROLE_RELAY)) {
        rc = weft__err(WEFT_ECORRUPT, "peer record: bad role");
    }
    rc = rc ? rc : read_cstr(&rd, r.st.addr, sizeof r.st.addr, 0, "addr");
    if (rc == 0 && (rc = weft__wire_vv_read(&rd.p, rd.end, &r.acked)) != 0) {
        rc = rc == WEFT_ENOMEM ? rc : weft__err(WEFT_ECORRUPT, "peer record: bad acked vector");
    }
    if (rc == 0 &&
        (weft__mp_read_uint(&rd, &state) != 0 || state > WEFT_PEER_ERROR ||
         weft__mp_read_int(&rd, &off) != 0 || weft__mp_read_uint(&rd, &skewed) != 0 || skewed > 1 ||
         weft__mp_read_int(&rd, &lerr) != 0 || lerr > 0 || lerr < INT32_MIN)) {
        rc = weft__err(WEFT_ECORRUPT, "peer record: bad status fields");
    }
    rc = rc ? rc : read_cstr(&rd, r.st.last_error_msg, sizeof r.st.last_error_msg, 0, "message");
    uint64_t *u[] = {&r.st.last_sync_ms,     &r.st.syncs,          &r.st.failures,
                     &r.st.last_duration_ms, &r.st.ops_sent,       &r.st.ops_received,
                     &r.st.bytes_sent,       &r.st.bytes_received, &r.st.updated_ms};
    for (size_t i = 0; i < sizeof u / sizeof u[0] && rc == 0; i++) {
        if (weft__mp_read_uint(&rd, u[i]) != 0) {
            rc = weft__err(WEFT_ECORRUPT, "peer record: bad counter %zu", i);
        }
    }
    if (rc == 0 && rd.p != rd.end) {
        rc = weft__err(WEFT_ECORRUPT, "peer record: %zu trailing bytes", (size_t)(rd.end - rd.p));
    }
    if (rc != 0) {
        rec_free(&r);
        return rc;
    }
    r.st.role = (weft_role)role;
    r.st.state = (weft_peer_state)state;
    r.st.clock_offset_ms = off;
    r.st.skewed = (int)skewed;
    r.st.last_error = (int)lerr;
    memcpy(r.st.public_key, key, WEFT_KEY_BYTES);
    r.st.device = weft_device_of(key);
    *out = r;
    return 0;
}

static int rec_get(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], peer_rec *out)
{
    if (key == NULL) {
        return weft__err(WEFT_EINVAL, "peer key is required");
    }
    weft_bytes k = {key, WEFT_KEY_BYTES}, v;
    int rc = weft__txn_get(t, "peers", k, &v);
    if (rc == WEFT_ENOTFOUND) {
        char hex[2 * WEFT_KEY_BYTES + 1];
        weft__hex_encode(hex, key, WEFT_KEY_BYTES);
        return weft__err(WEFT_ENOTFOUND, "no peer with key %s", hex);
    }
    if (rc != 0) {
        return rc;
    }
    return rec_decode(key, v.ptr, v.len, out);
}

static int rec_put(weft_txn *t, const peer_rec *r)
{
    weft__buf b = {NULL, 0, 0};
    int rc = rec_encode(r, &b);
    if (rc == 0) {
        weft_bytes k = {r->st.public_key, WEFT_KEY_BYTES}, v = {b.ptr, b.len};
        rc = weft__txn_put(t, "peers", k, &v);
    }
    weft__buf_free(&b);
    return rc;
}

/* Visit every record (key order). cb returns nonzero to stop (returned). */
typedef int (*rec_cb)(const peer_rec *r, void *user);

static int rec_each(weft_txn *t, rec_cb cb, void *user)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_PEERS], &c)) != 0) {
        return weft__store_mdb_err(rc, "reading peers");
    }
    MDB_val k, v;
    int stop = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != WEFT_KEY_BYTES) {
            rc = weft__err(WEFT_ECORRUPT, "peer record with a %zu-byte key", k.mv_size);
            break;
        }
        peer_rec r;
        if ((rc = rec_decode(k.mv_data, v.mv_data, v.mv_size, &r)) != 0) {
            break;
        }
        stop = cb(&r, user);
        rec_free(&r);
        if (stop != 0) {
            break;
        }
    }
    mdb_cursor_close(c);
    if (stop != 0) {
        return stop < 0 ? stop : 0; /* a callback's error, or its request to stop */
    }
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    return rc > 0 ? weft__store_mdb_err(rc, "reading peers") : rc;
}

/* ---------------------------------------------------------------- internals */

int weft__peer_by_key(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], weft_peer_status *out)
{
    peer_rec r;
    int rc = rec_get(t, key, &r);
    if (rc != 0) {
        return rc;
    }
    if (out != NULL) {
        *out = r.st;
    }
    rec_free(&r);
    return 0;
}

int weft__peer_acked_get(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], weft_vv **out)
{
    if (out == NULL) {
        return weft__err(WEFT_EINVAL, "weft__peer_acked_get: out is required");
    }
    peer_rec r;
    int rc = rec_get(t, key, &r);
    if (rc != 0) {
        return rc;
    }
    *out = r.acked;
    r.acked = NULL;
    rec_free(&r);
    return 0;
}

int weft__peer_acked_merge(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES], const weft_vv *vv)
{
    peer_rec r;
    int rc = rec_get(t, key, &r);
    if (rc != 0) {
        return rc;
    }
    bool changed = false;
    rc = weft__vv_merge(r.acked, vv, &changed);
    if (rc == 0 && changed) {
        rc = rec_put(t, &r);
        WEFT__KILLPOINT(WEFT__KP_ACKED_MERGED);
    }
    rec_free(&r);
    return rc;
}

int weft__peer_status_put(weft_txn *t, const uint8_t key[WEFT_KEY_BYTES],
                          const weft_peer_status *st)
{
    if (st == NULL) {
        return weft__err(WEFT_EINVAL, "weft__peer_status_put: status is required");
    }
    peer_rec r;
    int rc = rec_get(t, key, &r);
    if (rc != 0) {
        return rc;
    }
    r.st.state = st->state;
    r.st.clock_offset_ms = st->clock_offset_ms;
    r.st.skewed = st->skewed ? 1 : 0;
    r.st.last_error = st->last_error > 0 ? 0 : st->last_error;
    size_t ml = strnlen(st->last_error_msg, WEFT_MSG_MAX - 1);
    memcpy(r.st.last_error_msg, st->last_error_msg, ml);
    r.st.last_error_msg[ml] = '\0';
    /* Cut a truncated message back to a UTF-8 boundary. */
    while (ml > 0 && !weft__utf8_valid((const uint8_t *)r.st.last_error_msg, ml)) {
        r.st.last_error_msg[--ml] = '\0';
    }
    r.st.last_sync_ms = st->last_sync_ms;
    r.st.syncs = st->syncs;
    r.st.failures = st->failures;
    r.st.last_duration_ms = st->last_duration_ms;
    r.st.ops_sent = st->ops_sent;
    r.st.ops_received = st->ops_received;
    r.st.bytes_sent = st->bytes_sent;
    r.st.bytes_received = st->bytes_received;
    r.st.updated_ms = st->updated_ms;
    rc = rec_put(t, &r);
    rec_free(&r);
    return rc;
}

typedef struct pending_ctx {
    uint64_t ops, bytes;
} pending_ctx;

static int pending_cb(const weft_op *op, void *user)
{
    pending_ctx *c = user;
    c->ops++;
    c->bytes += op->payload.len;
    return 0;
}

int weft__store_pending(weft_txn *t, const weft_vv *vv, uint64_t *ops, uint64_t *bytes)
{
    pending_ctx c = {0, 0};
    int rc = weft_ops_since(t, vv, pending_cb, &c);
    if (rc < 0) {
        return rc;
    }
    if (ops != NULL) {
        *ops = c.ops;
    }
    if (bytes != NULL) {
        *bytes = c.bytes;
    }
    return 0;
}

/* ---------------------------------------------------------------- public API */

typedef struct find_ctx {
    const char *name;
    uint8_t key[WEFT_KEY_BYTES];
    bool found;
} find_ctx;

static int find_name_cb(const peer_rec *r, void *user)
{
    find_ctx *f = user;
    if (strcmp(r->st.name, f->name) == 0) {
        memcpy(f->key, r->st.public_key, WEFT_KEY_BYTES);
        f->found = true;
        return 1;
    }
    return 0;
}

static int find_name(weft_txn *t, const char *name, find_ctx *f)
{
    memset(f, 0, sizeof *f);
    f->name = name;
    return rec_each(t, find_name_cb, f);
}

int weft_peer_add(weft_store *s, const char *name, const char *card, const char *addr,
                  weft_role role)
{
    size_t nlen = 0;
    int rc;
    if (s == NULL) {
        return weft__err(WEFT_EINVAL, "weft_peer_add: store is required");
    }
    if ((rc = name_check(name, &nlen)) != 0) {
        return rc;
    }
    if (role != WEFT_ROLE_DEVICE && role != WEFT_ROLE_RELAY) {
        return weft__err(WEFT_EINVAL, "peer role %d is neither device nor relay", (int)role);
    }
    peer_rec r;
    memset(&r, 0, sizeof r);
    if ((rc = weft_card_parse(card, r.st.public_key, r.st.addr)) != 0) {
        return rc;
    }
    if (addr != NULL) {
        size_t al = strlen(addr);
        if (al > WEFT_ENDPOINT_MAX) {
            return weft__err(WEFT_EINVAL, "peer address is %zu bytes, the limit is %u", al,
                             WEFT_ENDPOINT_MAX);
        }
        memcpy(r.st.addr, addr, al + 1);
    }
    if (memcmp(r.st.public_key, s->public_key, WEFT_KEY_BYTES) == 0) {
        return weft__err(WEFT_EINVAL, "the card is this device's own; a store cannot peer itself");
    }
    memcpy(r.st.name, name, nlen + 1);
    r.st.role = role;
    r.st.device = weft_device_of(r.st.public_key);
    r.st.state = WEFT_PEER_IDLE;
    if ((rc = weft_vv_new(&r.acked)) != 0) {
        return rc;
    }
    weft_txn *t = NULL;
    if ((rc = weft_txn_begin(s, 0, &t)) != 0) {
        rec_free(&r);
        return rc;
    }
    find_ctx f;
    weft_bytes k = {r.st.public_key, WEFT_KEY_BYTES}, v;
    if ((rc = find_name(t, name, &f)) == 0) {
        if (f.found) {
            rc = weft__err(WEFT_EEXIST, "a peer named \"%s\" already exists", name);
        } else if ((rc = weft__txn_get(t, "peers", k, &v)) == 0) {
            rc = weft__err(WEFT_EEXIST, "this key is already a peer");
        } else if (rc == WEFT_ENOTFOUND) {
            rc = rec_put(t, &r);
        }
    }
    if (rc == 0) {
        rc = weft_txn_commit(&t);
    }
    weft_txn_abort(&t);
    rec_free(&r);
    return rc;
}

int weft_peer_rm(weft_store *s, const char *name)
{
    if (s == NULL || name == NULL) {
        return weft__err(WEFT_EINVAL, "weft_peer_rm: store and name are required");
    }
    weft_txn *t = NULL;
    int rc = weft_txn_begin(s, 0, &t);
    if (rc != 0) {
        return rc;
    }
    find_ctx f;
    if ((rc = find_name(t, name, &f)) == 0) {
        if (!f.found) {
            rc = weft__err(WEFT_ENOTFOUND, "no peer named \"%s\"", name);
        } else {
            weft_bytes k = {f.key, WEFT_KEY_BYTES};
            rc = weft__txn_put(t, "peers", k, NULL);
        }
    }
    if (rc == 0) {
        rc = weft_txn_commit(&t);
    }
    weft_txn_abort(&t);
    return rc;
}

/* Status with pending counts computed now. */
static int status_full(weft_txn *t, const peer_rec *r, weft_peer_status *out)
{
    *out = r->st;
    return weft__store_pending(t, r->acked, &out->pending_ops, &out->pending_bytes);
}

int weft_peer_get(weft_store *s, const char *name, weft_peer_status *out)
{
    if (s == NULL || name == NULL || out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_peer_get: store, name and out are required");
    }
    weft_txn *t = NULL;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        return rc;
    }
    find_ctx f;
    peer_rec r;
    weft_peer_status st;
    if ((rc = find_name(t, name, &f)) == 0) {
        if (!f.found) {
            rc = weft__err(WEFT_ENOTFOUND, "no peer named \"%s\"", name);
        } else if ((rc = rec_get(t, f.key, &r)) == 0) {
            rc = status_full(t, &r, &st);
            rec_free(&r);
        }
    }
    weft_txn_abort(&t);
    if (rc == 0) {
        *out = st;
    }
    return rc;
}

typedef struct list_ctx {
    weft_txn *t;
    weft_peer_status *v;
    size_t n, cap;
} list_ctx;

static int list_cb(const peer_rec *r, void *user)
{
    list_ctx *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        weft_peer_status *p = weft__realloc(l->v, cap * sizeof *p);
        if (p == NULL) {
            return weft__err(WEFT_ENOMEM, "out of memory listing peers");
        }
        l->v = p;
        l->cap = cap;
    }
    int rc = status_full(l->t, r, &l->v[l->n]);
    if (rc == 0) {
        l->n++;
    }
    return rc;
}

static int status_name_cmp(const void *a, const void *b)
{
    return strcmp(((const weft_peer_status *)a)->name, ((const weft_peer_status *)b)->name);
}

int weft_peer_list(weft_store *s, weft_peer_cb cb, void *user)
{
    if (s == NULL) {
        return weft__err(WEFT_EINVAL, "weft_peer_list: store is required");
    }
    weft_txn *t = NULL;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        return rc;
    }
    list_ctx l = {t, NULL, 0, 0};
    rc = rec_each(t, list_cb, &l);
    weft_txn_abort(&t);
    if (rc == 0 && l.n > 1) {
        qsort(l.v, l.n, sizeof *l.v, status_name_cmp);
    }
    for (size_t i = 0; i < l.n && rc == 0 && cb != NULL; i++) {
        if (cb(&l.v[i], user) != 0) {
            break;
        }
    }
    size_t n = l.n;
    weft__free(l.v);
    if (rc != 0) {
        return rc;
    }
    return n > 0x7fffffff ? 0x7fffffff : (int)n;
}

/* ---------------------------------------------------------------- refusals */

#define REFUSED_KEY     "refused"
#define REFUSED_VERSION 1u

static int refusals_decode(const uint8_t *buf, size_t len, weft__refusals *out)
{
    weft__mp_reader rd = {buf, buf + len};
    weft__refusals r;
    memset(&r, 0, sizeof r);
    uint32_t n, k;
    uint64_t ver;
    if (weft__mp_read_array(&rd, &n) != 0 || n != 3 || weft__mp_read_uint(&rd, &ver) != 0 ||
        ver != REFUSED_VERSION || weft__mp_read_uint(&rd, &r.total) != 0 ||
        weft__mp_read_array(&rd, &k) != 0 || k > WEFT_REFUSALS_MAX || k > r.total) {
        return weft__err(WEFT_ECORRUPT, "refusals record: not a version %u record",
                         REFUSED_VERSION);
    }
    for (uint32_t i = 0; i < k; i++) {
        weft_refusal *e = &r.v[i];
        const uint8_t *p;
        uint32_t pl, e3;
        if (weft__mp_read_array(&rd, &e3) != 0 || e3 != 3 || weft__mp_read_bin(&rd, &p, &pl) != 0 ||
            pl != WEFT_KEY_BYTES) {
            return weft__err(WEFT_ECORRUPT, "refusals record: entry %u has no key", i);
        }
        memcpy(e->public_key, p, WEFT_KEY_BYTES);
        if (weft__mp_read_str(&rd, &p, &pl) != 0 || pl >= sizeof e->addr || memchr(p, 0, pl)) {
            return weft__err(WEFT_ECORRUPT, "refusals record: entry %u has a bad address", i);
        }
        memcpy(e->addr, p, pl);
        e->addr[pl] = '\0';
        if (weft__mp_read_uint(&rd, &e->at_ms) != 0) {
            return weft__err(WEFT_ECORRUPT, "refusals record: entry %u has a bad time", i);
        }
    }
    if (rd.p != rd.end) {
        return weft__err(WEFT_ECORRUPT, "refusals record: %zu trailing bytes",
                         (size_t)(rd.end - rd.p));
    }
    r.n = k;
    *out = r;
    return 0;
}

static int refusals_encode(const weft__refusals *r, weft__buf *out)
{
    int rc = weft__mp_put_array(out, 3);
    rc = rc ? rc : weft__mp_put_uint(out, REFUSED_VERSION);
    rc = rc ? rc : weft__mp_put_uint(out, r->total);
    rc = rc ? rc : weft__mp_put_array(out, (uint32_t)r->n);
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        const weft_refusal *e = &r->v[i];
        char addr[sizeof e->addr];
        size_t al = strnlen(e->addr, sizeof addr - 1);
        for (size_t j = 0; j < al; j++) { /* printable ASCII only: valid UTF-8 */
            char c = e->addr[j];
            addr[j] = (c > ' ' && c < 0x7f) ? c : '?';
        }
        rc = weft__mp_put_array(out, 3);
        rc = rc ? rc : weft__mp_put_bin(out, e->public_key, WEFT_KEY_BYTES);
        rc = rc ? rc : weft__mp_put_str(out, addr, al);
        rc = rc ? rc : weft__mp_put_uint(out, e->at_ms);
    }
    return rc;
}

int weft__refusals_get(weft_txn *t, weft__refusals *out)
{
    if (out == NULL) {
        return weft__err(WEFT_EINVAL, "weft__refusals_get: out is required");
    }
    weft_bytes k = {REFUSED_KEY, strlen(REFUSED_KEY)}, v;
    int rc = weft__txn_get(t, "meta", k, &v);
    if (rc == WEFT_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return rc != 0 ? rc : refusals_decode(v.ptr, v.len, out);
}

int weft__refusals_add(weft_txn *t, uint64_t count, const weft_refusal *v, size_t n)
{
    if ((v == NULL && n > 0) || n > count) {
        return weft__err(WEFT_EINVAL, "weft__refusals_add: %zu entries for %llu refusals", n,
                         (unsigned long long)count);
    }
    weft__refusals r;
    int rc = weft__refusals_get(t, &r);
    if (rc == WEFT_ECORRUPT) {
        memset(&r, 0, sizeof r); /* start over rather than refuse to count */
        rc = 0;
    }
    if (rc != 0) {
        return rc;
    }
    r.total = r.total + count < r.total ? UINT64_MAX : r.total + count;
    /* Keep the newest WEFT_REFUSALS_MAX by time; ours are the newest here,
     * but another engine may have written later ones: insertion by time. */
    for (size_t i = 0; i < n; i++) {
        size_t at = r.n;
        while (at > 0 && r.v[at - 1].at_ms > v[i].at_ms) {
            at--;
        }
        if (r.n == WEFT_REFUSALS_MAX) {
            if (at == 0) {
                continue; /* older than all we keep */
            }
            memmove(r.v, r.v + 1, (at - 1) * sizeof r.v[0]);
            at--;
        } else {
            memmove(r.v + at + 1, r.v + at, (r.n - at) * sizeof r.v[0]);
            r.n++;
        }
        r.v[at] = v[i];
        r.v[at].addr[sizeof r.v[at].addr - 1] = '\0';
    }
    weft__buf b = {NULL, 0, 0};
    rc = refusals_encode(&r, &b);
    if (rc == 0) {
        weft_bytes k = {REFUSED_KEY, strlen(REFUSED_KEY)}, val = {b.ptr, b.len};
        rc = weft__txn_put(t, "meta", k, &val);
    }
    weft__buf_free(&b);
    return rc;
}

int weft_refusals(weft_store *s, weft_refusal *out, size_t cap, size_t *n, uint64_t *total)
{
    if (s == NULL || n == NULL || (out == NULL && cap > 0)) {
        return weft__err(WEFT_EINVAL, "weft_refusals: store and n are required");
    }
    weft_txn *t = NULL;
    weft__refusals r;
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    rc = rc ? rc : weft__refusals_get(t, &r);
    weft_txn_abort(&t);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < r.n && i < cap; i++) {
        out[i] = r.v[r.n - 1 - i]; /* newest first */
    }
    *n = r.n;
    if (total != NULL) {
        *total = r.total;
    }
    return 0;
}
