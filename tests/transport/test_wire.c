/* test_wire.c - the wire codec of the sync protocol: round trips of all seven
 * messages (BYE included), every truncation rejected, wrong arity/types/unknown types and
 * trailing bytes rejected, every cap exceeded by one rejected without
 * allocating by the claimed length, and a seeded random-mutation loop.
 *
 * Invariants: none (tests).
 * Thread-safety: single-threaded tests only.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "crdt/crdt_int.h"
#include "sim.h"

#define OK(expr)                                                                             \
    do {                                                                                     \
        int rc_ = (expr);                                                                    \
        cr_assert_eq(rc_, 0, "%s -> %s (%s)", #expr, weft_err_name(rc_), weft_last_error()); \
    } while (0)

static weft_vv *mkvv(size_t n)
{
    weft_vv *vv;
    OK(weft_vv_new(&vv));
    for (size_t i = 0; i < n; i++) {
        OK(weft_vv_set(vv, 1000 + i * 977, (i + 1) * UINT64_C(0x10001)));
    }
    return vv;
}

/* The sample frames: one per type 1..8, and 9: a HELLO with a digest. */
#define SAMPLES 9

static int sample_type(int kind)
{
    return kind == SAMPLES ? WEFT__MSG_HELLO : kind;
}

static int sample(int type, weft__buf *b)
{
    static const uint8_t digest[WEFT__VV_DIGEST_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const uint8_t p1[] = {0x93, 0x01, 0x02, 0x03}, p2[] = {0xc0};
    weft_op ops[3] = {
        {{100, 7}, 0, {p1, sizeof p1}},
        {{100, 9}, 50, {p2, sizeof p2}},
        {{UINT64_C(0x123456789a), 7}, 100, {p1, 0}},
    };
    weft_vv *vv = mkvv(3);
    int rc = 0;
    switch (type) {
    case WEFT__MSG_HELLO:
        rc = weft__msg_hello(b, WEFT_ROLE_RELAY, vv, 12345);
        break;
    case SAMPLES:
        rc = weft__msg_hello_digest(b, WEFT_ROLE_DEVICE, digest, UINT64_C(0xffffffffffff));
        break;
    case WEFT__MSG_ASK:
        rc = weft__msg_ask(b);
        break;
    case WEFT__MSG_OPS:
        rc = weft__msg_ops(b, 42, ops, 3);
        break;
    case WEFT__MSG_ACK:
        rc = weft__msg_ack(b, 7, WEFT__ACK_DEFERRED, vv);
        break;
    case WEFT__MSG_DONE:
        rc = weft__msg_done(b, vv);
        break;
    case WEFT__MSG_PING:
        rc = weft__msg_ping(b, UINT64_C(0xffffffffffff));
        break;
    case WEFT__MSG_BYE:
        rc = weft__msg_bye(b, 300); /* not a fixint: exercises the uint16 form */
        break;
    default:
        rc = weft__msg_error(b, WEFT_EVERSION, "version 2 is not supported");
        break;
    }
    weft_vv_destroy(&vv);
    return rc;
}

static void reencode(const weft__msg *m, weft__buf *b)
{
    switch (m->type) {
    case WEFT__MSG_HELLO:
        if (m->has_digest) {
            OK(weft__msg_hello_digest(b, (weft_role)m->role, m->digest, m->hlc));
        } else {
            OK(weft__msg_hello(b, (weft_role)m->role, m->vv, m->hlc));
        }
        break;
    case WEFT__MSG_ASK:
        OK(weft__msg_ask(b));
        break;
    case WEFT__MSG_OPS:
        OK(weft__msg_ops(b, m->seq, m->ops, m->nops));
        break;
    case WEFT__MSG_ACK:
        OK(weft__msg_ack(b, m->seq, m->status, m->vv));
        break;
    case WEFT__MSG_DONE:
        OK(weft__msg_done(b, m->vv));
        break;
    case WEFT__MSG_PING:
        OK(weft__msg_ping(b, m->hlc));
        break;
    case WEFT__MSG_BYE:
        OK(weft__msg_bye(b, m->reason));
        break;
    default: {
        char text[300];
        memcpy(text, m->text.ptr, m->text.len);
        text[m->text.len] = '\0';
        OK(weft__msg_error(b, m->code, text));
        break;
    }
    }
}

Test(wire, round_trip)
{
    for (int type = 1; type <= SAMPLES; type++) {
        weft__buf b = {0}, c = {0};
        OK(sample(type, &b));
        weft__msg m;
        OK(weft__msg_decode(b.ptr, b.len, &m));
        cr_assert_eq(m.type, sample_type(type));
        switch (type) {
        case WEFT__MSG_HELLO:
            cr_assert_eq(m.version, 2);
            cr_assert_eq(m.role, WEFT_ROLE_RELAY);
            cr_assert_eq(m.hlc, 12345);
            cr_assert(!m.has_digest);
            cr_assert_eq(weft_vv_count(m.vv), 3);
            break;
        case SAMPLES:
            cr_assert(m.has_digest);
            cr_assert_null(m.vv);
            cr_assert_eq(m.digest[11], 12);
            cr_assert_eq(m.role, WEFT_ROLE_DEVICE);
            /* 1 + 1 + 1 + 1 + (2 + 12) + 9: what a greeting in sync costs */
            cr_assert_eq(b.len, 27);
            break;
        case WEFT__MSG_ASK:
            cr_assert_eq(b.len, 2);
            break;
        case WEFT__MSG_OPS:
            cr_assert_eq(m.seq, 42);
            cr_assert_eq(m.nops, 3);
            cr_assert_eq(m.ops[1].id.device, 9);
            cr_assert_eq(m.ops[1].dprev, 50);
            cr_assert_eq(m.ops[0].payload.len, 4);
            cr_assert_eq(m.ops[2].payload.len, 0);
            break;
        case WEFT__MSG_ACK:
            cr_assert_eq(m.seq, 7);
            cr_assert_eq(m.status, WEFT__ACK_DEFERRED);
            cr_assert_eq(weft_vv_get(m.vv, 1000), 0x10001);
            break;
        case WEFT__MSG_BYE:
            cr_assert_eq(m.reason, 300);
            break;
        case WEFT__MSG_ERROR:
            cr_assert_eq(m.code, WEFT_EVERSION);
            cr_assert_eq(m.text.len, strlen("version 2 is not supported"));
            break;
        default:
            break;
        }
        reencode(&m, &c);
        cr_assert_eq(c.len, b.len, "type %d", type);
        cr_assert_arr_eq(c.ptr, b.ptr, b.len, "type %d re-encodes differently", type);
        weft__msg_free(&m);
        weft__buf_free(&b);
        weft__buf_free(&c);
    }
}

Test(wire, every_truncation_rejected)
{
    for (int type = 1; type <= SAMPLES; type++) {
        weft__buf b = {0};
        OK(sample(type, &b));
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *cp = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
            memcpy(cp, b.ptr, n);
            weft__msg m;
            int rc = weft__msg_decode(cp, n, &m);
            cr_assert_lt(rc, 0, "type %d truncated to %zu of %zu bytes accepted", type, n, b.len);
            free(cp);
        }
        weft__buf_free(&b);
    }
}

static int decode_hex(const uint8_t *p, size_t n)
{
    weft__msg m;
    int rc = weft__msg_decode(p, n, &m);
    if (rc == 0) {
        weft__msg_free(&m);
    }
    return rc;
}

Test(wire, malformed_rejected)
{
    /* not an array, empty array, unknown types */
    static const uint8_t a[] = {0x05}, b[] = {0x90}, c[] = {0x92, 0x09, 0x01},
                         d[] = {0x92, 0x00, 0x01};
    cr_assert_eq(decode_hex(a, sizeof a), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(b, sizeof b), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(c, sizeof c), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(d, sizeof d), WEFT_ECORRUPT);
    /* wrong arity: DONE with 1 and 3 elements; PING with a str */
    static const uint8_t e[] = {0x91, 0x04}, f[] = {0x93, 0x04, 0x80, 0x01},
                         g[] = {0x92, 0x05, 0xa1, 'x'};
    cr_assert_eq(decode_hex(e, sizeof e), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(f, sizeof f), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(g, sizeof g), WEFT_ECORRUPT);
    /* non-canonical int (uint8 holding 5) */
    static const uint8_t h[] = {0x92, 0x05, 0xcc, 0x05};
    cr_assert_eq(decode_hex(h, sizeof h), WEFT_ECORRUPT);
    /* ACK status 3; OPS seq 0; positive ERROR code */
    static const uint8_t i[] = {0x94, 0x03, 0x01, 0x03, 0x80}, j[] = {0x93, 0x02, 0x00, 0x90},
                         k[] = {0x93, 0x06, 0x01, 0xa0};
    cr_assert_eq(decode_hex(i, sizeof i), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(j, sizeof j), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(k, sizeof k), WEFT_ECORRUPT);
    /* vv with keys out of order, and with a zero hlc */
    static const uint8_t l[] = {0x92, 0x04, 0x82, 0x05, 0x01, 0x03, 0x01},
                         n[] = {0x92, 0x04, 0x81, 0x05, 0x00};
    cr_assert_eq(decode_hex(l, sizeof l), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(n, sizeof n), WEFT_ECORRUPT);
    /* BYE: exactly [7, uint < 2^32]; reason 0 is the plain goodbye */
    static const uint8_t bye0[] = {0x92, 0x07, 0x00}, bye1[] = {0x91, 0x07},
                         bye3[] = {0x93, 0x07, 0x00, 0x00}, byes[] = {0x92, 0x07, 0xa1, 'x'},
                         byen[] = {0x92, 0x07, 0xff},
                         byebig[] = {0x92, 0x07, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0},
                         byemax[] = {0x92, 0x07, 0xce, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(decode_hex(bye0, sizeof bye0), 0);
    cr_assert_eq(decode_hex(byemax, sizeof byemax), 0);
    cr_assert_eq(decode_hex(bye1, sizeof bye1), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(bye3, sizeof bye3), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(byes, sizeof byes), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(byen, sizeof byen), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(byebig, sizeof byebig), WEFT_ECORRUPT);
    {
        weft__buf bb = {0};
        OK(weft__msg_bye(&bb, WEFT__BYE_DONE));
        cr_assert_eq(bb.len, sizeof bye0);
        cr_assert_arr_eq(bb.ptr, bye0, sizeof bye0, "BYE done is 92 07 00");
        weft__buf_free(&bb);
    }
    /* trailing bytes after every sample */
    for (int type = 1; type <= SAMPLES; type++) {
        weft__buf buf = {0};
        OK(sample(type, &buf));
        uint8_t z = 0xc0;
        OK(weft__buf_put(&buf, &z, 1));
        cr_assert_eq(decode_hex(buf.ptr, buf.len), WEFT_ECORRUPT, "type %d", type);
        weft__buf_free(&buf);
    }
    /* a HELLO of another version decodes to just its version */
    static const uint8_t v3[] = {0x93, 0x01, 0x03, 0xa1, 'x'};
    weft__msg m;
    OK(weft__msg_decode(v3, sizeof v3, &m));
    cr_assert_eq(m.type, WEFT__MSG_HELLO);
    cr_assert_eq(m.version, 3);
    weft__msg_free(&m);
    /* a HELLO digest of 11 or 13 bytes, or a str in its place; ASK with an element */
    static const uint8_t d11[] = {0x95, 0x01, 0x02, 0x00, 0xc4, 0x0b, 0, 0, 0,
                                  0,    0,    0,    0,    0,    0,    0, 0, 0x01},
                         d13[] = {0x95, 0x01, 0x02, 0x00, 0xc4, 0x0d, 0, 0, 0, 0,
                                  0,    0,    0,    0,    0,    0,    0, 0, 0, 0x01},
                         ds[] = {0x95, 0x01, 0x02, 0x00, 0xa1, 'x', 0x01},
                         ask2[] = {0x92, 0x08, 0x00};
    cr_assert_eq(decode_hex(d11, sizeof d11), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(d13, sizeof d13), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(ds, sizeof ds), WEFT_ECORRUPT);
    cr_assert_eq(decode_hex(ask2, sizeof ask2), WEFT_ECORRUPT);
    /* v1's six-element HELLO (with a device) is malformed in version 2 */
    static const uint8_t v1shape[] = {0x96, 0x01, 0x02, 0x07, 0x00, 0x80, 0x01};
    cr_assert_eq(decode_hex(v1shape, sizeof v1shape), WEFT_ECORRUPT);
}

static void put_op(weft__buf *b, uint64_t hlc, uint64_t dev, uint64_t dprev, size_t plen)
{
    static uint8_t zero[64];
    OK(weft__mp_put_array(b, 4));
    OK(weft__mp_put_uint(b, hlc));
    OK(weft__mp_put_uint(b, dev));
    OK(weft__mp_put_uint(b, dprev));
    OK(weft__mp_put_bin(b, zero, plen));
}

Test(wire, caps_exceeded_by_one)
{
    /* WEFT__BATCH_OPS ops: fine; one more: ELIMIT. */
    for (unsigned n = WEFT__BATCH_OPS; n <= WEFT__BATCH_OPS + 1; n++) {
        weft__buf b = {0};
        OK(weft__mp_put_array(&b, 3));
        OK(weft__mp_put_uint(&b, 2));
        OK(weft__mp_put_uint(&b, 1));
        OK(weft__mp_put_array(&b, n));
        for (unsigned i = 0; i < n; i++) {
            put_op(&b, 1000 + i, 5, i ? 999 + i : 0, 1);
        }
        cr_assert_eq(decode_hex(b.ptr, b.len), n == WEFT__BATCH_OPS ? 0 : WEFT_ELIMIT, "%u ops", n);
        weft__buf_free(&b);
    }
    /* An op count claimed by a 5-byte header, no bytes behind it: no allocation. */
    enum { OVER = WEFT__BATCH_OPS + 1 };
    _Static_assert(OVER < 65536, "big_ops spells the count in its low two bytes");
    static const uint8_t big_ops[] = {0x93, 0x02, 0x01, 0xdd, 0x00, 0x00, OVER >> 8, OVER & 0xff};
    static const uint8_t few_ops[] = {0x93, 0x02, 0x01, 0xdc, 0x03, 0xff};
    static const uint8_t big_vv[] = {0x92, 0x04, 0xdf, 0x00, 0x01, 0x00, 0x01};
    weft__alloc_fail_after(0);
    int r1 = decode_hex(big_ops, sizeof big_ops);
    int r2 = decode_hex(big_vv, sizeof big_vv);
    int r3 = decode_hex(few_ops, sizeof few_ops);
    weft__alloc_fail_after(-1);
    cr_assert_eq(r1, WEFT_ELIMIT);
    cr_assert_eq(r2, WEFT_ELIMIT);
    cr_assert_eq(r3, WEFT_ECORRUPT);
    /* Payload bytes: two ops over 1 MiB together: ELIMIT; one big op alone: fine. */
    {
        uint8_t *big = calloc(1, WEFT__BATCH_BYTES);
        weft_op two[2] = {{{10, 1}, 0, {big, WEFT__BATCH_BYTES}}, {{11, 1}, 10, {big, 1}}};
        weft__buf b = {0};
        OK(weft__msg_ops(&b, 1, two, 2));
        cr_assert_eq(decode_hex(b.ptr, b.len), WEFT_ELIMIT);
        b.len = 0;
        OK(weft__msg_ops(&b, 1, two, 1));
        cr_assert_eq(decode_hex(b.ptr, b.len), 0);
        weft__buf_free(&b);
        free(big);
    }
    /* ERROR text: 256 bytes fine, 257 ELIMIT (built by hand: the encoder cuts). */
    for (unsigned n = 256; n <= 257; n++) {
        char text[300];
        memset(text, 'x', sizeof text);
        weft__buf b = {0};
        OK(weft__mp_put_array(&b, 3));
        OK(weft__mp_put_uint(&b, 6));
        OK(weft__mp_put_int(&b, -5));
        OK(weft__mp_put_str(&b, text, n));
        cr_assert_eq(decode_hex(b.ptr, b.len), n == 256 ? 0 : WEFT_ELIMIT);
        weft__buf_free(&b);
    }
    /* The encoder cuts a long text at 256 bytes on a UTF-8 boundary. */
    {
        char text[400];
        memset(text, 'x', sizeof text);
        memcpy(text + 255, "\xc3\xa9", 2); /* 'é' straddling byte 256 */
        text[399] = '\0';
        weft__buf b = {0};
        OK(weft__msg_error(&b, -5, text));
        weft__msg m;
        OK(weft__msg_decode(b.ptr, b.len, &m));
        cr_assert_eq(m.text.len, 255);
        weft__msg_free(&m);
        weft__buf_free(&b);
    }
}

Test(wire, ops_order_and_ids)
{
    /* out of order, equal ids, zero hlc, dprev >= hlc */
    static const uint64_t cases[][6] = {
        {20, 5, 0, 10, 5, 0},  /* second op before first */
        {10, 5, 0, 10, 5, 0},  /* same id twice */
        {0, 5, 0, 10, 6, 0},   /* zero hlc */
        {10, 5, 10, 11, 6, 0}, /* dprev == hlc */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        weft__buf b = {0};
        OK(weft__mp_put_array(&b, 3));
        OK(weft__mp_put_uint(&b, 2));
        OK(weft__mp_put_uint(&b, 1));
        OK(weft__mp_put_array(&b, 2));
        put_op(&b, cases[i][0], cases[i][1], cases[i][2], 1);
        put_op(&b, cases[i][3], cases[i][4], cases[i][5], 1);
        cr_assert_eq(decode_hex(b.ptr, b.len), WEFT_ECORRUPT, "case %zu", i);
        weft__buf_free(&b);
    }
}

Test(wire, random_mutations_never_crash)
{
    uint64_t seed = sim_env_seed(0x5eed), rng = seed;
    unsigned cases = sim_env_cases(200) * 100;
    for (unsigned it = 0; it < cases; it++) {
        rng = rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        uint64_t r = rng >> 11;
        weft__buf b = {0};
        OK(sample((int)(r % SAMPLES) + 1, &b));
        unsigned muts = 1 + (unsigned)((r >> 3) % 4);
        for (unsigned k = 0; k < muts && b.len > 0; k++) {
            rng = rng * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
            uint64_t x = rng >> 7;
            size_t at = (size_t)(x % b.len);
            switch ((x >> 20) % 4) {
            case 0:
                b.ptr[at] ^= (uint8_t)(1u << ((x >> 24) % 8));
                break;
            case 1:
                b.ptr[at] = (uint8_t)(x >> 32);
                break;
            case 2:
                b.len = at;
                break;
            default: {
                uint8_t byte = (uint8_t)(x >> 40);
                OK(weft__buf_put(&b, &byte, 1));
                memmove(b.ptr + at + 1, b.ptr + at, b.len - at - 1);
                b.ptr[at] = byte;
                break;
            }
            }
        }
        uint8_t *cp = malloc(b.len ? b.len : 1);
        memcpy(cp, b.ptr, b.len);
        weft__msg m;
        if (weft__msg_decode(cp, b.len, &m) == 0) {
            /* Whatever is accepted is canonical: it re-encodes to itself. */
            bool nul = m.type == WEFT__MSG_ERROR && memchr(m.text.ptr, 0, m.text.len) != NULL;
            if (!(m.type == WEFT__MSG_HELLO && m.version != WEFT__PROTO_VERSION) && !nul) {
                weft__buf c = {0};
                reencode(&m, &c);
                if (!(c.len == b.len && memcmp(c.ptr, cp, b.len) == 0)) {
                    for (size_t z = 0; z < b.len && z < 64; z++) {
                        fprintf(stderr, "%02x ", cp[z]);
                    }
                    fprintf(stderr, "\n");
                }
                cr_assert(c.len == b.len && memcmp(c.ptr, cp, b.len) == 0,
                          "accepted non-canonical frame (seed %llu, iteration %u)",
                          (unsigned long long)seed, it);
                weft__buf_free(&c);
            }
            weft__msg_free(&m);
        }
        free(cp);
        weft__buf_free(&b);
    }
}
