/* make_corpus.c - write the seed corpora of the fuzz targets: valid examples
 * of every kind of input each decoder takes, plus a few near misses.
 *
 * Usage: fuzz_make_corpus OUTDIR  (normally tests/fuzz/corpus)
 * Writes OUTDIR/<target>/<name> for the targets op, fstate, value, vv, wire,
 * card and json, overwriting files of the same name and leaving others
 * (e.g. inputs a fuzzer added) alone. Valid inputs are built with weft's own
 * encoders (weft__op_encode, weft__fstate_encode, weft__msg_*, weft_vv_encode)
 * so they follow the code; near misses (non-canonical, truncated, over a
 * limit) are spelled out byte by byte. The output is deterministic: fixed
 * ids, no clock, no randomness, so re-running it changes no committed file.
 *
 * Invariants:
 *   1. Every file is at most 64 KiB (the fuzzers' -max_len) and every target
 *      gets fewer than 200 files.
 * Thread-safety: single-threaded program.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crdt/crdt_int.h"
#include "transport/transport_int.h"

static const char *outdir;
static int failed;

/* ---------------------------------------------------------------- output */

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", outdir, target);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: mkdir %s: %s\n", path, strerror(errno));
        failed = 1;
        return;
    }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: write %s: %s\n", path, strerror(errno));
        failed = 1;
    }
}

static void put_buf(const char *target, const char *name, const weft__buf *b)
{
    put(target, name, b->ptr, b->len);
}

static void put_str(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}

/* Abort the run when a library call the corpus depends on fails. */
static void ok(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "make_corpus: %s: %s (%s)\n", what, weft_err_name(rc), weft_last_error());
        exit(1);
    }
}

static weft_bytes view(const weft__buf *b)
{
    weft_bytes v = {b->ptr, b->len};
    return v;
}

static weft_bytes cstr(const char *s)
{
    weft_bytes v = {s, strlen(s)};
    return v;
}

static weft_id mkid(uint64_t ms, uint32_t ctr, uint64_t device)
{
    weft_id id = {ms << 16 | ctr, device};
    return id;
}

/* ---------------------------------------------------------------- values */

enum { NVALUES = 24 };
static weft__buf values[NVALUES]; /* canonical example values, every type */
static const char *value_names[NVALUES];
static int nvalues;

static weft__buf *new_value(const char *name)
{
    value_names[nvalues] = name;
    return &values[nvalues++];
}

static void make_values(void)
{
    weft__buf *b;
    ok(weft__mp_put_nil(new_value("nil")), "nil");
    ok(weft__mp_put_bool(new_value("true"), true), "true");
    ok(weft__mp_put_bool(new_value("false"), false), "false");
    ok(weft__mp_put_uint(new_value("fixint"), 42), "fixint");
    ok(weft__mp_put_uint(new_value("uint8"), 200), "uint8");
    ok(weft__mp_put_uint(new_value("uint16"), 60000), "uint16");
    ok(weft__mp_put_uint(new_value("uint32"), 4000000000u), "uint32");
    ok(weft__mp_put_uint(new_value("uint64-max"), UINT64_MAX), "uint64");
    ok(weft__mp_put_int(new_value("negfixint"), -5), "negfixint");
    ok(weft__mp_put_int(new_value("int16"), -1000), "int16");
    ok(weft__mp_put_int(new_value("int64-min"), INT64_MIN), "int64");
    ok(weft__mp_put_f64(new_value("f64"), 3.141592653589793), "f64");
    ok(weft__mp_put_f64(new_value("f64-neg-zero"), -0.0), "f64");
    ok(weft__mp_put_str(new_value("str-utf8"), "h\xc3\xa9llo \xf0\x9f\x98\x80", 11), "str");
    b = new_value("str8");
    char s40[41];
    memset(s40, 'x', 40);
    ok(weft__mp_put_str(b, s40, 40), "str8");
    b = new_value("str16");
    char s300[300];
    memset(s300, 'y', sizeof s300);
    ok(weft__mp_put_str(b, s300, sizeof s300), "str16");
    ok(weft__mp_put_str(new_value("str-nul"), "a\0b", 3), "str nul");
    ok(weft__mp_put_bin(new_value("bin"), "\x00\x01\xff", 3), "bin");
    b = new_value("array");
    ok(weft__mp_put_array(b, 3), "array");
    ok(weft__mp_put_uint(b, 1), "1");
    ok(weft__mp_put_str(b, "two", 3), "two");
    ok(weft__mp_put_nil(b), "nil");
    b = new_value("map-sorted"); /* keys sorted by encoded bytes: 01 < a1 61 < a2 62 62 */
    ok(weft__mp_put_map(b, 3), "map");
    ok(weft__mp_put_uint(b, 1), "k1");
    ok(weft__mp_put_str(b, "one", 3), "v1");
    ok(weft__mp_put_str(b, "a", 1), "ka");
    ok(weft__mp_put_bool(b, true), "va");
    ok(weft__mp_put_str(b, "bb", 2), "kbb");
    ok(weft__mp_put_array(b, 0), "vbb");
    b = new_value("array16");
    ok(weft__mp_put_array(b, 20), "array16");
    for (int i = 0; i < 20; i++) {
        ok(weft__mp_put_int(b, i - 10), "elem");
    }
    b = new_value("map16");
    ok(weft__mp_put_map(b, 16), "map16");
    for (int i = 0; i < 16; i++) {
        ok(weft__mp_put_uint(b, (uint64_t)i), "key");
        ok(weft__mp_put_uint(b, (uint64_t)i * 1000), "val");
    }
    b = new_value("nested-32"); /* the deepest value a store accepts */
    for (int i = 0; i < 31; i++) {
        ok(weft__mp_put_array(b, 1), "nest");
    }
    ok(weft__mp_put_array(b, 0), "innermost");
    b = new_value("map-nested");
    ok(weft__mp_put_map(b, 1), "map");
    ok(weft__mp_put_str(b, "k", 1), "k");
    ok(weft__mp_put_map(b, 2), "inner");
    ok(weft__mp_put_str(b, "x", 1), "x");
    ok(weft__mp_put_f64(b, 1.5), "1.5");
    ok(weft__mp_put_str(b, "y", 1), "y");
    ok(weft__mp_put_bin(b, "", 0), "bin0");
}

static void corpus_value(void)
{
    for (int i = 0; i < nvalues; i++) {
        put_buf("value", value_names[i], &values[i]);
    }
    /* Non-canonical encodings weft__mp_canon must fix (and weft__mp_check refuse). */
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } raw[] = {
        {"nc-f32", "\xca\x3f\xc0\x00\x00", 5},
        {"nc-uint8-small", "\xcc\x05", 2},
        {"nc-uint64-small", "\xcf\x00\x00\x00\x00\x00\x00\x01\x00", 9},
        {"nc-int8-positive", "\xd0\x05", 2},
        {"nc-int32-negative", "\xd2\xff\xff\xff\xfe", 5},
        {"nc-str8-short", "\xd9\x02hi", 4},
        {"nc-bin16-short", "\xc5\x00\x01\x07", 4},
        {"nc-array16-small", "\xdc\x00\x02\x01\x02", 5},
        {"nc-map-unsorted",
         "\x82\xa1z\x01\xa1"
         "a\x02",
         7},
        {"nc-map-nested-unsorted", "\x81\xa1k\x82\x02\xc0\x01\xc3", 8},
        {"bad-map-duplicate",
         "\x82\xa1"
         "a\x01\xa1"
         "a\x02",
         7},
        {"bad-ext", "\xd4\x01\x02", 3},
        {"bad-utf8", "\xa2\xc3\x28", 3},
        {"bad-surrogate", "\xa3\xed\xa0\x80", 4},
        {"bad-truncated-str", "\xa5hel", 4},
        {"bad-huge-array", "\xdd\xff\xff\xff\xff", 5},
        {"bad-huge-map", "\xdf\x7f\xff\xff\xff\x01", 6},
        {"bad-c1", "\xc1", 1},
        {"bad-trailing", "\x01\x02", 2},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        put("value", raw[i].name, raw[i].bytes, raw[i].len);
    }
    uint8_t deep[40]; /* 33 levels: one over WEFT_DEPTH_MAX */
    memset(deep, 0x91, 32);
    deep[32] = 0x90;
    put("value", "bad-nested-33", deep, 33);
}

/* ---------------------------------------------------------------- ops */

typedef struct opspec {
    const char *name;
    weft__op op;
} opspec;

static uint8_t prev_bytes[20 * WEFT__ID_BYTES];

static void make_prev(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        weft__id_put(prev_bytes + i * WEFT__ID_BYTES, mkid(1700000000000u + i, i, 0x1111 + i));
    }
}

static weft__buf op_payloads[32];
static const char *op_names[32];
static int nops;

static void add_op(const char *name, weft__op op)
{
    ok(weft__op_encode(&op, &op_payloads[nops]), name);
    op_names[nops++] = name;
}

static weft__op base_op(weft__op_kind k)
{
    weft__op op;
    memset(&op, 0, sizeof op);
    op.kind = k;
    op.coll = cstr("users");
    op.entity = cstr("u1");
    op.field = k == WEFT__OP_DEL ? (weft_bytes){NULL, 0} : cstr("name");
    return op;
}

static void make_ops(void)
{
    make_prev(20);
    weft__op op;
    static const int set_values[] = {0, 3, 11, 13, 14, 17, 19, 20, 22, 23};
    static const char *set_names[] = {"set-nil",       "set-fixint",    "set-f64", "set-str-utf8",
                                      "set-str8",      "set-bin",       "set-map", "set-array16",
                                      "set-nested-32", "set-map-nested"};
    for (size_t i = 0; i < sizeof set_values / sizeof set_values[0]; i++) {
        op = base_op(WEFT__OP_SET);
        op.value = view(&values[set_values[i]]);
        add_op(set_names[i], op);
    }
    op = base_op(WEFT__OP_SET);
    op.value = view(&values[4]);
    op.prev = prev_bytes;
    op.nprev = 1;
    add_op("set-prev1", op);
    op.nprev = 3;
    add_op("set-prev3", op);
    op.nprev = 20;
    add_op("set-prev20", op);
    static char longname[WEFT_NAME_MAX];
    memset(longname, 'n', sizeof longname);
    op = base_op(WEFT__OP_SET);
    op.coll = (weft_bytes){longname, sizeof longname};
    op.entity = cstr("\xe2\x82\xac-entity");
    op.field = (weft_bytes){longname, 31};
    op.value = view(&values[8]);
    add_op("set-longnames", op);
    add_op("del", base_op(WEFT__OP_DEL));
    static const int64_t deltas[] = {1, -1, 1000, INT64_MAX, INT64_MIN};
    static const char *inc_names[] = {"inc-1", "inc-minus1", "inc-1000", "inc-max", "inc-min"};
    for (size_t i = 0; i < 5; i++) {
        op = base_op(WEFT__OP_INC);
        op.delta = deltas[i];
        add_op(inc_names[i], op);
    }
    op = base_op(WEFT__OP_ADD);
    op.value = view(&values[13]);
    add_op("add-str", op);
    op.value = view(&values[19]);
    add_op("add-map", op);
    op = base_op(WEFT__OP_REM);
    op.value = view(&values[13]);
    op.prev = prev_bytes;
    op.nprev = 1;
    add_op("rem-1", op);
    op.nprev = 2;
    add_op("rem-2", op);
}

static void corpus_op(void)
{
    for (int i = 0; i < nops; i++) {
        put_buf("op", op_names[i], &op_payloads[i]);
    }
    /* The example pinned in op.c, and near misses of it. */
    put("op", "doc-example",
        "\x96\x00\xa1n\xa1"
        "e\xa1"
        "f\x01\xc4\x00",
        11);
    put("op", "bad-prev-unsorted",
        "\x96\x00\xa1n\xa1"
        "e\xa1"
        "f\x01\xc4\x20"
        "\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01"
        "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
        43);
    put("op", "bad-name-nul",
        "\x93\x01\xa2n\x00\xa1"
        "e",
        7);
    put("op", "bad-trailing",
        "\x93\x01\xa1n\xa1"
        "e\xc0",
        7);
    put("op", "bad-kind",
        "\x93\x07\xa1n\xa1"
        "e",
        6);
}

/* ---------------------------------------------------------------- field states */

static void corpus_fstate(void)
{
    weft__fstate st;
    weft__buf out = {0};
    weft_id tomb = {0, 0};
    weft__op set = base_op(WEFT__OP_SET), add = base_op(WEFT__OP_ADD);

    put("fstate", "empty", "", 0);

    weft__fstate_init(&st); /* one register head */
    set.value = view(&values[3]);
    ok(weft__fstate_apply(&st, mkid(1700000000000u, 0, 7), &set, tomb) == 1 ? 0 : -1, "set");
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "register-1", &out);

    set.value = view(&values[20]); /* a concurrent write: two heads (conflict) */
    ok(weft__fstate_apply(&st, mkid(1700000000000u, 0, 9), &set, tomb) == 1 ? 0 : -1, "set");
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "register-2-heads", &out);
    set.value = view(&values[13]);
    ok(weft__fstate_apply(&st, mkid(1700000000001u, 3, 8), &set, tomb) == 1 ? 0 : -1, "set");
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "register-3-heads", &out);

    weft__fstate_counter_add(&st, mkid(1700000000002u, 0, 7), 5); /* register + counter */
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "register-counter", &out);

    add.value = view(&values[1]); /* all three sections */
    ok(weft__fstate_apply(&st, mkid(1700000000003u, 0, 7), &add, tomb) == 1 ? 0 : -1, "add");
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "all-sections", &out);
    weft__fstate_free(&st);

    weft__fstate_init(&st); /* counter only */
    weft__fstate_counter_add(&st, mkid(1700000000000u, 0, 7), -3);
    weft__fstate_counter_add(&st, mkid(1700000000005u, 1, 7), INT64_MIN);
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "counter", &out);
    weft__fstate_free(&st);

    weft__fstate_init(&st); /* set only: elements with several adds */
    static const int elems[] = {13, 3, 20, 0};
    for (int i = 0; i < 4; i++) {
        add.value = view(&values[elems[i]]);
        ok(weft__fstate_apply(&st, mkid(1700000000000u + (uint64_t)i, 0, 7), &add, tomb) == 1 ? 0
                                                                                              : -1,
           "add");
        ok(weft__fstate_apply(&st, mkid(1700000000100u, 0, 9 + (uint64_t)i), &add, tomb) == 1 ? 0
                                                                                              : -1,
           "add");
    }
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "set-4-elems", &out);
    weft__fstate_counter_add(&st, mkid(1700000000200u, 0, 7), 1); /* counter + set */
    weft__buf_reset(&out);
    ok(weft__fstate_encode(&st, &out), "encode");
    put_buf("fstate", "counter-set", &out);
    weft__fstate_free(&st);
    weft__buf_free(&out);

    /* The golden examples of fstate.c and near misses. */
    uint8_t rec[64];
    memcpy(rec, "\x91\x92\xc4\x10", 4);
    weft__id_put(rec + 4, mkid(1700000000000u, 0, 1));
    rec[20] = 0x05;
    put("fstate", "doc-register", rec, 21);
    put("fstate", "bad-heads-1", "\x91\x91\xc4\x00", 4);
    put("fstate", "bad-counter-count0",
        "\x92\x90\xc4\x20"
        "\x00\x00\x00\x00\x00\x00\x00\x01"
        "\x00\x00\x00\x00\x00\x00\x00\x00"
        "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01",
        36);
    put("fstate", "bad-set-no-adds",
        "\x93\x90\xc4\x00\x92\xa1"
        "a\xc4\x00",
        9);
}

/* ---------------------------------------------------------------- version vectors */

static weft_vv *make_vv(size_t n, uint64_t seed)
{
    weft_vv *vv;
    ok(weft_vv_new(&vv), "vv_new");
    for (size_t i = 0; i < n; i++) {
        uint64_t dev = seed * 0x9e3779b97f4a7c15u + i * 0x100000001b3u + 1;
        uint64_t hlc = (1700000000000u + i) << 16 | (i & 0xffff);
        ok(weft_vv_set(vv, dev, hlc), "vv_set");
    }
    return vv;
}

static void put_vv(const char *name, const weft_vv *vv)
{
    uint8_t buf[4096];
    size_t len;
    ok(weft_vv_encode(vv, buf, sizeof buf, &len), "vv_encode");
    put("vv", name, buf, len);
}

static void corpus_vv(void)
{
    static const size_t sizes[] = {0, 1, 3, 15, 16, 40};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "vv-%zu", sizes[i]);
        weft_vv *vv = make_vv(sizes[i], i + 1);
        put_vv(name, vv);
        weft_vv_destroy(&vv);
    }
    weft_vv *vv; /* small devices and hlcs: every uint width */
    ok(weft_vv_new(&vv), "vv_new");
    ok(weft_vv_set(vv, 1, 1), "set");
    ok(weft_vv_set(vv, 200, 300), "set");
    ok(weft_vv_set(vv, 70000, 5000000000u), "set");
    ok(weft_vv_set(vv, UINT64_MAX, UINT64_MAX), "set");
    put_vv("vv-widths", vv);
    weft_vv_destroy(&vv);
    put("vv", "bad-unsorted", "\x82\x02\x01\x01\x01", 5);
    put("vv", "bad-duplicate", "\x82\x01\x01\x01\x02", 5);
    put("vv", "bad-zero-hlc", "\x81\x01\x00", 3);
    put("vv", "bad-huge", "\xdf\x00\x01\x00\x01", 5);
    put("vv", "bad-not-map", "\x90", 1);
}

/* ---------------------------------------------------------------- wire frames */

static void corpus_wire(void)
{
    weft__buf b = {0};
    weft_vv *vv = make_vv(3, 7), *empty = make_vv(0, 0);
    ok(weft__msg_hello(&b, WEFT_ROLE_DEVICE, vv, 1700000000000u << 16), "h");
    put_buf("wire", "hello", &b);
    weft__buf_reset(&b);
    ok(weft__msg_hello(&b, WEFT_ROLE_RELAY, empty, 1), "hello");
    put_buf("wire", "hello-relay-empty", &b);
    uint8_t digest[WEFT__VV_DIGEST_BYTES];
    weft__wire_vv_digest(vv, digest);
    weft__buf_reset(&b);
    ok(weft__msg_hello_digest(&b, WEFT_ROLE_DEVICE, digest, 1700000000000u << 16), "hello");
    put_buf("wire", "hello-digest", &b);
    weft__buf_reset(&b);
    ok(weft__msg_ask(&b), "ask");
    put_buf("wire", "ask", &b);
    put("wire", "hello-version-1", "\x96\x01\x01\x01\x00\x80\x01", 7);
    put("wire", "hello-version-3", "\x95\x01\x03\x00\x80\x01", 6);

    weft_op ops[4];
    uint64_t hlc = 1700000000000u << 16;
    for (int i = 0; i < 4; i++) {
        ops[i].id.hlc = hlc + (uint64_t)i * 65536;
        ops[i].id.device = 0xabcdefu;
        ops[i].dprev = i == 0 ? 0 : ops[i - 1].id.hlc;
        ops[i].payload.ptr = op_payloads[i * 5 % nops].ptr;
        ops[i].payload.len = op_payloads[i * 5 % nops].len;
    }
    weft__buf_reset(&b);
    ok(weft__msg_ops(&b, 1, ops, 1), "ops");
    put_buf("wire", "ops-1", &b);
    weft__buf_reset(&b);
    ok(weft__msg_ops(&b, 77, ops, 4), "ops");
    put_buf("wire", "ops-4", &b);
    weft__buf_reset(&b);
    ok(weft__msg_ops(&b, 2, ops, 0), "ops");
    put_buf("wire", "ops-0", &b);
    static const char *ack_names[] = {"ack-applied", "ack-deferred", "ack-gap"};
    for (uint32_t s = 0; s < 3; s++) {
        weft__buf_reset(&b);
        ok(weft__msg_ack(&b, 5 + s, s, vv), "ack");
        put_buf("wire", ack_names[s], &b);
    }
    weft__buf_reset(&b);
    ok(weft__msg_done(&b, vv), "done");
    put_buf("wire", "done", &b);
    weft__buf_reset(&b);
    ok(weft__msg_ping(&b, hlc), "ping");
    put_buf("wire", "ping", &b);
    weft__buf_reset(&b);
    ok(weft__msg_error(&b, WEFT_EVERSION, "protocol version 2 is not supported"), "error");
    put_buf("wire", "error", &b);
    weft__buf_reset(&b);
    ok(weft__msg_error(&b, WEFT_ECORRUPT, ""), "error");
    put_buf("wire", "error-empty", &b);
    weft__buf_reset(&b);
    ok(weft__msg_bye(&b, WEFT__BYE_DONE), "bye");
    put_buf("wire", "bye", &b);
    weft__buf_reset(&b);
    ok(weft__msg_bye(&b, 70000), "bye"); /* an unknown reason: read as a clean close */
    put_buf("wire", "bye-reason-70000", &b);
    put("wire", "bad-type-9", "\x92\x09\x01", 3);
    put("wire", "bad-ops-claim", "\x93\x02\x01\xdd\x00\x00\x10\x00", 8);
    put("wire", "bad-trailing", "\x92\x05\x01\x00", 4);
    weft__buf_free(&b);
    weft_vv_destroy(&vv);
    weft_vv_destroy(&empty);
}

/* ---------------------------------------------------------------- cards */

static void corpus_card(void)
{
    const char *key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char card[600];
    snprintf(card, sizeof card, "weft1:%s", key);
    put_str("card", "key-only", card);
    snprintf(card, sizeof card, "weft1:%s@tcp://127.0.0.1:7420", key);
    put_str("card", "tcp", card);
    snprintf(card, sizeof card, "weft1:%s@tcp://192.168.1.5:7420,tcp://[::1]:7420", key);
    put_str("card", "two-endpoints", card);
    snprintf(card, sizeof card, "weft1:%s@ipc:///tmp/weft.sock", key);
    put_str("card", "ipc", card);
    put_str("card", "upper-hex",
            "weft1:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF@tcp://h:1");
    char longep[300];
    memset(longep, 'a', sizeof longep - 1);
    longep[sizeof longep - 1] = '\0';
    snprintf(card, sizeof card, "weft1:%s@%.255s", key, longep);
    put_str("card", "endpoint-255", card);
    snprintf(card, sizeof card, "weft1:%s@%s", key, longep);
    put_str("card", "bad-endpoint-299", card);
    snprintf(card, sizeof card, "weft1:%s@", key);
    put_str("card", "bad-empty-endpoint", card);
    snprintf(card, sizeof card, "weft1:%.63s", key);
    put_str("card", "bad-short-key", card);
    snprintf(card, sizeof card, "weft2:%s", key);
    put_str("card", "bad-prefix", card);
    snprintf(card, sizeof card, "weft1:%s@tcp://a b:1", key);
    put_str("card", "bad-space", card);
}

/* ---------------------------------------------------------------- CLI input */

static char *b64(const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) {
        exit(1);
    }
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        v |= i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0;
        v |= i + 2 < n ? p[i + 2] : 0;
        *o++ = a[v >> 18];
        *o++ = a[(v >> 12) & 63];
        *o++ = i + 1 < n ? a[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? a[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static void put_mode(const char *name, char mode, const void *p, size_t n)
{
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        exit(1);
    }
    buf[0] = (uint8_t)mode;
    if (n > 0) {
        memcpy(buf + 1, p, n);
    }
    put("json", name, buf, n + 1);
    free(buf);
}

static void corpus_json(void)
{
    /* 0: JSON text, as `weft put` takes values. */
    static const char *texts[][2] = {
        {"text-null", "null"},
        {"text-true", "true"},
        {"text-int", "42"},
        {"text-int-min", "-9223372036854775808"},
        {"text-int-max", "9223372036854775807"},
        {"text-real", "1.5"},
        {"text-real-exp", "-2.5e-300"},
        {"text-real-one", "1.0"},
        {"text-str", "\"h\\u00e9llo \\ud83d\\ude00\""},
        {"text-str-nul", "\"a\\u0000b\""},
        {"text-array", "[1,\"two\",[3.5,null],{}]"},
        {"text-object", "{\"name\":\"ada\",\"age\":36,\"tags\":[\"x\",\"y\"]}"},
        {"text-bin", "{\"$bin\":\"AAEC/w==\"}"},
        {"text-u64", "{\"$u64\":\"18446744073709551615\"}"},
        {"text-u64-small", "{\"$u64\":\"5\"}"},
        {"text-f64-nan", "{\"$f64\":\"nan\"}"},
        {"text-f64-inf", "[{\"$f64\":\"inf\"},{\"$f64\":\"-inf\"}]"},
        {"text-map", "{\"$map\":[[1,\"one\"],[\"a\",true],[[1],null]]}"},
        {"text-map-dup", "{\"$map\":[[\"a\",1],[\"a\",2]]}"},
        {"text-map-reserved", "{\"$map\":[[\"$bin\",\"x\"]]}"},
        {"text-two-keys", "{\"$bin\":\"AA==\",\"x\":1}"},
        {"text-bad-bin", "{\"$bin\":\"AAE\"}"},
        {"text-bad-u64", "{\"$u64\":\"18446744073709551616\"}"},
        {"text-bad-json", "{\"a\":"},
        {"text-dup-key", "{\"a\":1,\"a\":2}"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        put_mode(texts[i][0], '0', texts[i][1], strlen(texts[i][1]));
    }
    char deep[200];
    for (int i = 0; i < 66; i++) {
        deep[i] = '[';
        deep[66 + i] = ']';
    }
    put_mode("text-nested-66", '0', deep, 132);

    /* 1: msgpack, as `weft get` prints stored values. */
    for (int i = 0; i < nvalues; i++) {
        char name[64];
        snprintf(name, sizeof name, "mp-%s", value_names[i]);
        put_mode(name, '1', values[i].ptr, values[i].len);
    }
    put_mode("mp-f32", '1', "\xca\x3f\xc0\x00\x00", 5);
    put_mode("mp-map-int-keys", '1', "\x82\x01\x02\x03\x04", 5);
    put_mode("mp-map-dup-keys", '1',
             "\x82\xa1"
             "a\x01\xa1"
             "a\x02",
             7);
    put_mode("mp-map-reserved-key", '1', "\x81\xa4$bin\xa1x", 8);
    put_mode("mp-f64-nan", '1', "\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", 9);
    put_mode("mp-f64-tiny", '1', "\xcb\x00\x00\x00\x00\x00\x00\x00\x01", 9);
    put_mode("mp-bad-ext", '1', "\xd4\x01\x02", 3);

    /* 2: `weft import` lines. */
    for (int i = 0; i < 4; i++) {
        int k = i * 7 % nops;
        char *p = b64(op_payloads[k].ptr, op_payloads[k].len);
        size_t n = strlen(p) + 256;
        char *line = malloc(n);
        if (!line) {
            exit(1);
        }
        snprintf(line, n,
                 "{\"hlc\":\"%016llx\",\"device\":\"00000000deadbeef\",\"dprev\":\"%016llx\","
                 "\"payload\":\"%s\",\"kind\":\"%s\",\"coll\":\"users\",\"entity\":\"u1\"}",
                 (unsigned long long)((1700000000000u + (uint64_t)i) << 16),
                 (unsigned long long)(i ? (1700000000000u + (uint64_t)i - 1) << 16 : 0), p,
                 op_names[k]);
        char name[64];
        snprintf(name, sizeof name, "line-%s", op_names[k]);
        put_mode(name, '2', line, strlen(line));
        free(line);
        free(p);
    }
    static const char *lines[][2] = {
        {"line-minimal", "{\"hlc\":\"0000018bcfe56800\",\"device\":\"0000000000000001\",\"dprev\":"
                         "\"0000000000000000\",\"payload\":\"kwGhbqFl\"}"},
        {"line-upper-hex",
         "{\"hlc\":\"0000018BCFE56800\",\"device\":\"00000000DEADBEEF\",\"dprev\":"
         "\"0000000000000000\",\"payload\":\"\"}"},
        {"line-bad-hex", "{\"hlc\":\"0000018bcfe5680\",\"device\":\"0000000000000001\",\"dprev\":"
                         "\"0000000000000000\",\"payload\":\"kwGhbqFl\"}"},
        {"line-bad-b64-bits",
         "{\"hlc\":\"0000018bcfe56800\",\"device\":\"0000000000000001\",\"dprev\":"
         "\"0000000000000000\",\"payload\":\"kwGhbqFm\"}"},
        {"line-bad-b64-pad",
         "{\"hlc\":\"0000018bcfe56800\",\"device\":\"0000000000000001\",\"dprev\":"
         "\"0000000000000000\",\"payload\":\"kw=\"}"},
        {"line-missing-payload",
         "{\"hlc\":\"0000018bcfe56800\",\"device\":\"0000000000000001\",\"dprev\":"
         "\"0000000000000000\"}"},
        {"line-not-object", "[1,2,3]"},
        {"line-dup-key", "{\"hlc\":\"0000018bcfe56800\",\"hlc\":\"0000018bcfe56801\"}"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        put_mode(lines[i][0], '2', lines[i][1], strlen(lines[i][1]));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: mkdir %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    make_values();
    make_ops();
    corpus_value();
    corpus_op();
    corpus_fstate();
    corpus_vv();
    corpus_wire();
    corpus_card();
    corpus_json();
    for (int i = 0; i < nvalues; i++) {
        weft__buf_free(&values[i]);
    }
    for (int i = 0; i < nops; i++) {
        weft__buf_free(&op_payloads[i]);
    }
    return failed;
}
