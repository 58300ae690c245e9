/* fuzz_wire.c - fuzz target for the sync protocol's frame decoder
 * (transport/wire.c, weft__msg_decode): every byte a peer sends goes
 * through it before anything else looks at it.
 *
 * Properties checked for every input:
 *   1. weft__msg_decode never crashes, reads outside the frame or allocates
 *      beyond its bounds (transport_int.h invariant 4), and on failure
 *      leaves nothing to free (LeakSanitizer would report it).
 *   2. Canonical round trip (wire.c: "a decoded message re-encodes to the
 *      same bytes"): an accepted frame re-encoded with the weft__msg_*
 *      encoder of its type gives the same bytes. Not checked for a HELLO of
 *      another protocol version (only type and version are decoded) nor for
 *      an ERROR whose text holds a NUL (the encoder takes a C string).
 *   3. Decoded fields obey the protocol's rules: ops strictly ascending by
 *      (hlc, device), no zero hlc or device, dprev below hlc, at most
 *      WEFT__BATCH_OPS ops; each op payload can be handed to weft__op_decode
 *      (as the store will) without crashing.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <string.h>

#include "crdt/crdt_int.h"
#include "fuzz.h"
#include "transport/transport_int.h"

/* Re-encode @p m into @p out with its type's encoder. 1 if encoded, 0 if the
 * message cannot be re-encoded from its decoded form (see property 2). */
static int reencode(const weft__msg *m, weft__buf *out)
{
    switch (m->type) {
    case WEFT__MSG_HELLO:
        if (m->version != WEFT__PROTO_VERSION) {
            return 0;
        }
        if (m->has_digest) {
            FUZZ_CHECK(weft__msg_hello_digest(out, (weft_role)m->role, m->digest, m->hlc) == 0);
        } else {
            FUZZ_CHECK(weft__msg_hello(out, (weft_role)m->role, m->vv, m->hlc) == 0);
        }
        return 1;
    case WEFT__MSG_OPS:
        FUZZ_CHECK(weft__msg_ops(out, m->seq, m->ops, m->nops) == 0);
        return 1;
    case WEFT__MSG_ACK:
        FUZZ_CHECK(weft__msg_ack(out, m->seq, m->status, m->vv) == 0);
        return 1;
    case WEFT__MSG_DONE:
        FUZZ_CHECK(weft__msg_done(out, m->vv) == 0);
        return 1;
    case WEFT__MSG_PING:
        FUZZ_CHECK(weft__msg_ping(out, m->hlc) == 0);
        return 1;
    case WEFT__MSG_ERROR: {
        char text[257];
        FUZZ_CHECK(m->text.len <= 256);
        if (memchr(m->text.ptr, '\0', m->text.len) != NULL) {
            return 0;
        }
        if (m->text.len > 0) {
            memcpy(text, m->text.ptr, m->text.len);
        }
        text[m->text.len] = '\0';
        FUZZ_CHECK(weft__msg_error(out, m->code, text) == 0);
        return 1;
    }
    case WEFT__MSG_BYE:
        FUZZ_CHECK(weft__msg_bye(out, m->reason) == 0);
        return 1;
    case WEFT__MSG_ASK:
        FUZZ_CHECK(weft__msg_ask(out) == 0);
        return 1;
    default:
        FUZZ_CHECK(!"decoded an unknown message type");
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    weft__msg m;
    int rc = weft__msg_decode(data, size, &m);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT || rc == WEFT_ENOMEM);
        return 0;
    }
    FUZZ_CHECK(m.type >= WEFT__MSG_HELLO && m.type <= WEFT__MSG_ASK);
    FUZZ_CHECK(m.nops <= WEFT__BATCH_OPS);
    for (size_t i = 0; i < m.nops; i++) {
        const weft_op *o = &m.ops[i];
        FUZZ_CHECK(o->id.hlc != 0 && o->id.device != 0 && o->dprev < o->id.hlc);
        FUZZ_CHECK(i == 0 || weft_id_cmp(m.ops[i - 1].id, o->id) < 0);
        const uint8_t *p = o->payload.ptr;
        FUZZ_CHECK(o->payload.len == 0 || (p >= data && p + o->payload.len <= data + size));
        weft__op op;
        (void)weft__op_decode(p, o->payload.len, &op);
    }
    weft__buf out = {0};
    if (reencode(&m, &out)) {
        FUZZ_CHECK(out.len == size && memcmp(out.ptr, data, size) == 0);
    }
    weft__buf_free(&out);
    weft__msg_free(&m);
    return 0;
}
