/* wire.c - the seven messages of the sync protocol (docs/protocol.md sections
 * 2 and 3): canonical msgpack encoders and bounded decoders.
 *
 * Every message is one canonical msgpack array whose first element is the
 * type (positive fixint):
 *   HELLO [1, version, role, vv | digest, hlc]
 *   OPS   [2, seq, [[hlc, device, dprev, bin payload], ...]]
 *   ACK   [3, seq, status, vv]
 *   DONE  [4, vv]
 *   PING  [5, hlc]
 *   ERROR [6, code (int), message (str <= 256 bytes)]
 *   BYE   [7, reason (uint < 2^32; 0 = done / shutting down)]
 *   ASK   [8] (send me your HELLO with the full vector)
 * A vv is a map device -> hlc (weft__vv_put, weft__wire_vv_read); a HELLO carries
 * either the map or its digest (bin of WEFT__VV_DIGEST_BYTES,
 * weft__wire_vv_digest) when the sender expects the receiver to know its
 * vector already. The readers are
 * crdt's weft__mp_read_*, which accept only canonical headers, so a decoded
 * message re-encodes to the same bytes.
 *
 * A HELLO whose version is not WEFT__PROTO_VERSION decodes to a message
 * holding only type and version (the rest of it is not interpreted, since
 * another version may shape it differently): the session then answers
 * ERROR WEFT_EVERSION, as protocol.md requires.
 *
 * Invariants:
 *   1. The decoder never reads outside buf[0..len) and rejects any input that
 *      is not exactly one well-formed message (trailing bytes included).
 *   2. It allocates the op array only after checking that the frame holds at
 *      least 6 bytes (the smallest op) per claimed op and that the count is
 *      <= WEFT__BATCH_OPS; vectors are bounded by weft_vv_decode after their
 *      extent has been walked without allocating.
 *   3. Ops within one OPS are strictly ascending by (hlc, device); no op has
 *      a zero hlc or device or a dprev >= its hlc; payload bytes obey the
 *      batch rule (<= WEFT__BATCH_BYTES unless the batch is a single op).
 * Thread-safety: reentrant; a weft__msg is one thread at a time.
 */
#include <sodium.h>

#include "../store/store_int.h"
#include "transport_int.h"

#define MIN_OP_BYTES 6u /* fixarray + 3 fixint + bin8 header with len 0 */

/* weft__msg_ops writes at most WEFT__OPS_HEAD_MAX + WEFT__OPS_OP_MAX per op
 * besides the payloads, so a batch within the session's limits (a full
 * batch, or one op alone) always fits in a message. */
_Static_assert(WEFT__OPS_FRAME_MAX <= WEFT__MSG_MAX, "a full OPS batch must fit in a message");
_Static_assert(WEFT__OPS_HEAD_MAX + WEFT__OPS_OP_MAX + WEFT_PAYLOAD_MAX <= WEFT__OPS_FRAME_MAX,
               "one op alone must fit in the largest OPS frame");
_Static_assert(WEFT__BATCH_OPS <= UINT32_MAX, "the op count is a msgpack array32");
#define ERROR_TEXT_MAX 256u
#define VV_MAX         65536u

/* ---------------------------------------------------------------- vv */

int weft__wire_vv_read(const uint8_t **p, const uint8_t *end, weft_vv **out)
{
    const uint8_t *start = *p;
    size_t avail = (size_t)(end - start);
    if (avail >= 5 && start[0] == 0xdf && weft__be32_get(start + 1) > VV_MAX) {
        return weft__err(WEFT_ELIMIT, "version vector of %u devices, the limit is %u",
                         weft__be32_get(start + 1), VV_MAX);
    }
    weft__mp_reader r = {start, end};
    uint32_t n;
    if (weft__mp_read_map(&r, &n) != 0) {
        return weft__err(WEFT_ECORRUPT, "version vector is not a canonical msgpack map");
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t x;
        if (weft__mp_read_uint(&r, &x) != 0 || weft__mp_read_uint(&r, &x) != 0) {
            return weft__err(WEFT_ECORRUPT, "version vector entry %u is not uint -> uint", i);
        }
    }
    int rc = weft_vv_decode(start, (size_t)(r.p - start), out);
    if (rc == 0) {
        *p = r.p;
    }
    return rc;
}

/* BLAKE2b-128 of a domain tag and the entries as big-endian (device, hlc)
 * pairs in ascending device order, cut to WEFT__VV_DIGEST_BYTES. Equal
 * vectors give equal digests on every platform. */
void weft__wire_vv_digest(const weft_vv *vv, uint8_t out[WEFT__VV_DIGEST_BYTES])
{
    static const uint8_t tag[] = "weft vv digest 1";
    crypto_generichash_state st;
    uint8_t full[crypto_generichash_BYTES_MIN];
    crypto_generichash_init(&st, NULL, 0, sizeof full);
    crypto_generichash_update(&st, tag, sizeof tag - 1);
    size_t n = vv != NULL ? weft_vv_count(vv) : 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = 0, h = 0;
        uint8_t e[16];
        weft_vv_entry(vv, i, &d, &h);
        weft__be64_put(e, d);
        weft__be64_put(e + 8, h);
        crypto_generichash_update(&st, e, sizeof e);
    }
    crypto_generichash_final(&st, full, sizeof full);
    memcpy(out, full, WEFT__VV_DIGEST_BYTES);
}

/* ---------------------------------------------------------------- encoders */

static int finish(weft__buf *out, size_t len0, int rc)
{
    if (rc != 0) {
        out->len = len0;
        return rc;
    }
    if (out->len - len0 > WEFT__MSG_MAX) {
        out->len = len0;
        return weft__err(WEFT_ELIMIT, "message of %zu bytes, the limit is %u", out->len - len0,
                         WEFT__MSG_MAX);
    }
    return 0;
}

/* HELLO with the full vector (@p digest NULL) or with @p digest. */
static int hello(weft__buf *out, weft_role role, const weft_vv *vv, const uint8_t *digest,
                 uint64_t hlc)
{
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 5);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_HELLO);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__PROTO_VERSION);
    rc = rc ? rc : weft__mp_put_uint(out, (uint64_t)role);
    if (digest != NULL) {
        rc = rc ? rc : weft__mp_put_bin(out, digest, WEFT__VV_DIGEST_BYTES);
    } else {
        rc = rc ? rc : weft__vv_put(out, vv);
    }
    rc = rc ? rc : weft__mp_put_uint(out, hlc);
    return finish(out, len0, rc);
}

int weft__msg_hello(weft__buf *out, weft_role role, const weft_vv *vv, uint64_t hlc)
{
    return hello(out, role, vv, NULL, hlc);
}

int weft__msg_hello_digest(weft__buf *out, weft_role role,
                           const uint8_t digest[WEFT__VV_DIGEST_BYTES], uint64_t hlc)
{
    return hello(out, role, NULL, digest, hlc);
}

int weft__msg_ask(weft__buf *out)
{
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 1);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_ASK);
    return finish(out, len0, rc);
}

int weft__msg_ops(weft__buf *out, uint64_t seq, const weft_op *ops, size_t n)
{
    if (n > WEFT__BATCH_OPS || (ops == NULL && n > 0)) {
        return weft__err(WEFT_EINVAL, "weft__msg_ops: %zu ops (limit %u)", n, WEFT__BATCH_OPS);
    }
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 3);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_OPS);
    rc = rc ? rc : weft__mp_put_uint(out, seq);
    rc = rc ? rc : weft__mp_put_array(out, (uint32_t)n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = weft__mp_put_array(out, 4);
        rc = rc ? rc : weft__mp_put_uint(out, ops[i].id.hlc);
        rc = rc ? rc : weft__mp_put_uint(out, ops[i].id.device);
        rc = rc ? rc : weft__mp_put_uint(out, ops[i].dprev);
        rc = rc ? rc : weft__mp_put_bin(out, ops[i].payload.ptr, ops[i].payload.len);
    }
    return finish(out, len0, rc);
}

int weft__msg_ack(weft__buf *out, uint64_t seq, uint32_t status, const weft_vv *vv)
{
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 4);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_ACK);
    rc = rc ? rc : weft__mp_put_uint(out, seq);
    rc = rc ? rc : weft__mp_put_uint(out, status);
    rc = rc ? rc : weft__vv_put(out, vv);
    return finish(out, len0, rc);
}

int weft__msg_done(weft__buf *out, const weft_vv *vv)
{
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 2);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_DONE);
    rc = rc ? rc : weft__vv_put(out, vv);
    return finish(out, len0, rc);
}

/* [type, v]: the messages whose one field is a uint. */
static int msg_uint(weft__buf *out, uint64_t type, uint64_t v)
{
    size_t len0 = out->len;
    int rc = weft__mp_put_array(out, 2);
    rc = rc ? rc : weft__mp_put_uint(out, type);
    rc = rc ? rc : weft__mp_put_uint(out, v);
    return finish(out, len0, rc);
}

int weft__msg_bye(weft__buf *out, uint32_t reason)
{
    return msg_uint(out, WEFT__MSG_BYE, reason);
}

int weft__msg_ping(weft__buf *out, uint64_t hlc)
{
    return msg_uint(out, WEFT__MSG_PING, hlc);
}

/* The longest prefix of s[0..n) (n <= max) that is valid UTF-8. */
static size_t utf8_cut(const char *s, size_t n)
{
    while (n > 0 && !weft__utf8_valid((const uint8_t *)s, n)) {
        n--;
    }
    return n;
}

int weft__msg_error(weft__buf *out, int code, const char *text)
{
    size_t len0 = out->len;
    size_t n = text != NULL ? strnlen(text, ERROR_TEXT_MAX) : 0;
    n = utf8_cut(text != NULL ? text : "", n);
    int rc = weft__mp_put_array(out, 3);
    rc = rc ? rc : weft__mp_put_uint(out, WEFT__MSG_ERROR);
    rc = rc ? rc : weft__mp_put_int(out, code > 0 ? 0 : code);
    rc = rc ? rc : weft__mp_put_str(out, text != NULL ? text : "", n);
    return finish(out, len0, rc);
}

/* ---------------------------------------------------------------- decoder */

static int bad(const char *what)
{
    return weft__err(WEFT_ECORRUPT, "malformed message: %s", what);
}

/* The count of a canonical array header at r, without checking the bytes
 * behind it (for limit checks before the reader's own bounds check). */
static bool peek_array_len(const weft__mp_reader *r, uint64_t *n)
{
    size_t avail = (size_t)(r->end - r->p);
    if (avail >= 1 && (r->p[0] & 0xf0) == 0x90) {
        *n = r->p[0] & 0x0f;
        return true;
    }
    if (avail >= 3 && r->p[0] == 0xdc) {
        *n = ((uint64_t)r->p[1] << 8) | r->p[2];
        return true;
    }
    if (avail >= 5 && r->p[0] == 0xdd) {
        *n = weft__be32_get(r->p + 1);
        return true;
    }
    return false;
}

static int read_vv(weft__mp_reader *r, weft_vv **out)
{
    int rc = weft__wire_vv_read(&r->p, r->end, out);
    if (rc == WEFT_ECORRUPT) {
        return bad(weft_last_error());
    }
    return rc;
}

static int decode_ops(weft__mp_reader *r, weft__msg *m)
{
    uint64_t claimed;
    if (peek_array_len(r, &claimed) && claimed > WEFT__BATCH_OPS) {
        return weft__err(WEFT_ELIMIT, "OPS holds %llu ops, the limit is %u",
                         (unsigned long long)claimed, WEFT__BATCH_OPS);
    }
    uint32_t n;
    if (weft__mp_read_array(r, &n) != 0) {
        return bad("OPS: op list is not an array");
    }
    if ((size_t)(r->end - r->p) / MIN_OP_BYTES < n) {
        return bad("OPS: fewer bytes than the ops claimed");
    }
    if (n == 0) {
        return 0;
    }
    weft_op *ops = weft__calloc(n, sizeof *ops);
    if (ops == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory decoding %u ops", n);
    }
    uint64_t total = 0;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint32_t k, plen;
        const uint8_t *pay;
        weft_op *o = &ops[i];
        if (weft__mp_read_array(r, &k) != 0 || k != 4 || weft__mp_read_uint(r, &o->id.hlc) != 0 ||
            weft__mp_read_uint(r, &o->id.device) != 0 || weft__mp_read_uint(r, &o->dprev) != 0 ||
            weft__mp_read_bin(r, &pay, &plen) != 0) {
            rc = weft__err(WEFT_ECORRUPT,
                           "malformed message: OPS op %u is not "
                           "[hlc, device, dprev, bin]",
                           i);
        } else if (o->id.hlc == 0 || o->id.device == 0 || o->dprev >= o->id.hlc) {
            rc = weft__err(WEFT_ECORRUPT,
                           "malformed message: OPS op %u has a zero id or a "
                           "dprev not below its hlc",
                           i);
        } else if (i > 0 && weft_id_cmp(ops[i - 1].id, o->id) >= 0) {
            rc = weft__err(WEFT_ECORRUPT, "malformed message: OPS op %u is out of order", i);
        } else if (plen > WEFT_PAYLOAD_MAX) {
            rc = weft__err(WEFT_ELIMIT, "OPS op %u payload is %u bytes, the limit is %u", i, plen,
                           (unsigned)WEFT_PAYLOAD_MAX);
        } else {
            o->payload.ptr = pay;
            o->payload.len = plen;
            total += plen;
            if (n > 1 && total > WEFT__BATCH_BYTES) {
                rc = weft__err(WEFT_ELIMIT, "OPS of %u ops carries more than %u payload bytes", n,
                               WEFT__BATCH_BYTES);
            }
        }
    }
    if (rc != 0) {
        weft__free(ops);
        return rc;
    }
    m->ops = ops;
    m->nops = n;
    return 0;
}

/* Arity of each type (index = type). HELLO's is checked after its version. */
static const uint32_t arity[] = {0, 5, 3, 4, 2, 2, 3, 2, 1};

int weft__msg_decode(const uint8_t *buf, size_t len, weft__msg *out)
{
    if (out == NULL || (buf == NULL && len > 0)) {
        return weft__err(WEFT_EINVAL, "weft__msg_decode: buf and out are required");
    }
    if (len > WEFT__MSG_MAX) {
        return weft__err(WEFT_ELIMIT, "message of %zu bytes, the limit is %u", len, WEFT__MSG_MAX);
    }
    weft__msg m;
    memset(&m, 0, sizeof m);
    weft__mp_reader r = {buf, buf + len};
    uint32_t n;
    uint64_t type, u;
    if (len == 0 || weft__mp_read_array(&r, &n) != 0) {
        return bad("not a msgpack array");
    }
    if (n == 0 || weft__mp_read_uint(&r, &type) != 0) {
        return bad("no message type");
    }
    if (type < WEFT__MSG_HELLO || type > WEFT__MSG_ASK) {
        return weft__err(WEFT_ECORRUPT, "malformed message: unknown type %llu",
                         (unsigned long long)type);
    }
    m.type = (int)type;
    int rc = 0;
    if (type == WEFT__MSG_HELLO) {
        if (n < 2 || weft__mp_read_uint(&r, &u) != 0 || u > UINT32_MAX) {
            return bad("HELLO without a version");
        }
        m.version = (uint32_t)u;
        if (m.version != WEFT__PROTO_VERSION) {
            *out = m; /* another version: the session answers EVERSION */
            return 0;
        }
    }
    if (n != arity[type]) {
        return weft__err(WEFT_ECORRUPT,
                         "malformed message: type %llu with %u elements, "
                         "expected %u",
                         (unsigned long long)type, n, arity[type]);
    }
    switch (type) {
    case WEFT__MSG_HELLO: {
        const uint8_t *d;
        uint32_t dl;
        if (weft__mp_read_uint(&r, &u) != 0 || u > WEFT_ROLE_RELAY) {
            rc = bad("HELLO role");
        } else if (r.p < r.end && r.p[0] == 0xc4) { /* bin 8: a digest */
            if (weft__mp_read_bin(&r, &d, &dl) != 0 || dl != WEFT__VV_DIGEST_BYTES) {
                rc = bad("HELLO vector digest is not a 12-byte bin");
            } else {
                memcpy(m.digest, d, WEFT__VV_DIGEST_BYTES);
                m.has_digest = true;
            }
        } else {
            rc = read_vv(&r, &m.vv);
        }
        m.role = (uint32_t)u;
        if (rc == 0 && weft__mp_read_uint(&r, &m.hlc) != 0) {
            rc = bad("HELLO hlc");
        }
        break;
    }
    case WEFT__MSG_OPS:
        if (weft__mp_read_uint(&r, &m.seq) != 0 || m.seq == 0) {
            rc = bad("OPS seq");
        } else {
            rc = decode_ops(&r, &m);
        }
        break;
    case WEFT__MSG_ACK:
        if (weft__mp_read_uint(&r, &m.seq) != 0 || m.seq == 0) {
            rc = bad("ACK seq");
        } else if (weft__mp_read_uint(&r, &u) != 0 || u > WEFT__ACK_GAP) {
            rc = bad("ACK status");
        } else {
            m.status = (uint32_t)u;
            rc = read_vv(&r, &m.vv);
        }
        break;
    case WEFT__MSG_DONE:
        rc = read_vv(&r, &m.vv);
        break;
    case WEFT__MSG_PING:
        if (weft__mp_read_uint(&r, &m.hlc) != 0) {
            rc = bad("PING hlc");
        }
        break;
    case WEFT__MSG_ERROR: {
        int64_t code;
        const uint8_t *s;
        uint32_t sl;
        if (weft__mp_read_int(&r, &code) != 0 || code > 0 || code < INT32_MIN) {
            rc = bad("ERROR code");
        } else if (weft__mp_read_str(&r, &s, &sl) != 0) {
            rc = bad("ERROR message");
        } else if (sl > ERROR_TEXT_MAX) {
            rc = weft__err(WEFT_ELIMIT, "ERROR message of %u bytes, the limit is %u", sl,
                           ERROR_TEXT_MAX);
        } else {
            m.code = (int)code;
            m.text.ptr = s;
            m.text.len = sl;
        }
        break;
    }
    case WEFT__MSG_BYE:
        if (weft__mp_read_uint(&r, &u) != 0 || u > UINT32_MAX) {
            rc = bad("BYE reason");
        } else {
            m.reason = (uint32_t)u;
        }
        break;
    default:
        break;
    }
    if (rc == 0 && r.p != r.end) {
        rc = weft__err(WEFT_ECORRUPT, "malformed message: %zu trailing bytes",
                       (size_t)(r.end - r.p));
    }
    if (rc != 0) {
        weft__msg_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void weft__msg_free(weft__msg *m)
{
    if (m == NULL) {
        return;
    }
    weft_vv_destroy(&m->vv);
    weft__free(m->ops);
    m->ops = NULL;
    m->nops = 0;
}
