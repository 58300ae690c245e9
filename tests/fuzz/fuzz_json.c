/* fuzz_json.c - fuzz target for the `weft` command's input parsing
 * (tools/weft): the JSON <-> msgpack value mapping of json.c and the
 * import-line parser of xfer.c.
 *
 * The first input byte picks the path (byte % 3), the rest is its input:
 *   0  JSON text, as `weft put` takes a value: weft__cli_mp_from_text.
 *      Accepted => its msgpack reads back (weft__cli_json_from_mp) and
 *      re-packs to the same bytes; when the store would take it
 *      (weft__mp_canon succeeds), that canonical value maps to JSON and
 *      back to the same canonical value.
 *   1  msgpack bytes, as `weft get` prints a stored value:
 *      weft__cli_json_from_mp. Accepted => the JSON packs back
 *      (weft__cli_mp_from_json) to a value with the same canonical form as
 *      the input (when the input has one), and the printed text
 *      (weft__cli_dumps) reads back (weft__cli_mp_from_text) as the same
 *      msgpack (json.c invariant 2: reals survive printing bit for bit).
 *   2  one line of `weft import` input: xfer.c's parse_line. Accepted =>
 *      the payload's base64 is canonical (re-encoding the decoded payload
 *      gives the same text) and the payload is at most WEFT_PAYLOAD_MAX.
 *
 * parse_line is static in xfer.c, so this file includes xfer.c whole and
 * defines the three functions of main.c that xfer.c calls (main.c holds
 * main() and cannot be linked). Stubs: weft__cli_fail and
 * weft__cli_weft_fail format their message into a buffer (so format
 * arguments are checked under ASan) and print nothing; weft__cli_open
 * fails. tests/fuzz/CMakeLists.txt compiles json.c beside this file. When
 * tools/weft exports a line parser in cli.h, drop the include.
 *
 * Its two findings (docs/fuzzing.md) are fixed in json.c: NaNs keep their
 * sign and payload bits ({"$f64":"nan:<bits>"}), and maps whose keys hold
 * U+0000 print as {"$map":...}. The inputs kept in crashes/json/ pin both.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/weft/xfer.c"
#include "crdt/crdt_int.h"
#include "fuzz.h"

/* ---------------------------------------------------------------- main.c stubs */

int weft__cli_fail(int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return status;
}

int weft__cli_weft_fail(int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (void)rc;
    return WEFT_CLI_FAIL;
}

int weft__cli_open(const weft_cli *cli, weft_store **out)
{
    (void)cli;
    (void)out;
    return WEFT_CLI_FAIL;
}

/* ---------------------------------------------------------------- helpers */

static int same(const weft_cli_buf *a, const uint8_t *p, size_t n)
{
    return a->len == n && (n == 0 || memcmp(a->ptr, p, n) == 0);
}

/* ---------------------------------------------------------------- 0: JSON text */

static void path_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) {
        return;
    }
    if (size > 0) {
        memcpy(text, data, size);
    }
    text[size] = '\0';
    char err[256];
    weft_cli_buf m1 = {0}, m2 = {0}, m3 = {0};
    weft__buf c = {0}, c3 = {0};
    if (weft__cli_mp_from_text(text, &m1, err, sizeof err) == 0) {
        json_t *j2 = weft__cli_json_from_mp(m1.ptr, m1.len, err, sizeof err);
        FUZZ_CHECK(j2 != NULL);
        FUZZ_CHECK(weft__cli_mp_from_json(j2, &m2, err, sizeof err) == 0);
        FUZZ_CHECK(same(&m2, m1.ptr, m1.len));
        json_decref(j2);
        if (weft__mp_canon(m1.ptr, m1.len, &c) == 0) {
            json_t *j3 = weft__cli_json_from_mp(c.ptr, c.len, err, sizeof err);
            FUZZ_CHECK(j3 != NULL);
            FUZZ_CHECK(weft__cli_mp_from_json(j3, &m3, err, sizeof err) == 0);
            FUZZ_CHECK(weft__mp_canon(m3.ptr, m3.len, &c3) == 0);
            FUZZ_CHECK(c3.len == c.len && memcmp(c3.ptr, c.ptr, c.len) == 0);
            json_decref(j3);
        }
    }
    weft__cli_buf_free(&m1);
    weft__cli_buf_free(&m2);
    weft__cli_buf_free(&m3);
    weft__buf_free(&c);
    weft__buf_free(&c3);
    free(text);
}

/* ---------------------------------------------------------------- 1: msgpack */

static void path_msgpack(const uint8_t *data, size_t size)
{
    char err[256];
    json_t *j = weft__cli_json_from_mp(data, size, err, sizeof err);
    if (!j) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    weft_cli_buf m = {0}, mt = {0};
    weft__buf cx = {0}, cm = {0};
    FUZZ_CHECK(weft__cli_mp_from_json(j, &m, err, sizeof err) == 0);
    if (weft__mp_canon(data, size, &cx) == 0) {
        FUZZ_CHECK(weft__mp_canon(m.ptr, m.len, &cm) == 0);
        FUZZ_CHECK(cm.len == cx.len && memcmp(cm.ptr, cx.ptr, cx.len) == 0);
    }
    char *s = weft__cli_dumps(j);
    if (s) {
        FUZZ_CHECK(weft__cli_mp_from_text(s, &mt, err, sizeof err) == 0);
        FUZZ_CHECK(same(&mt, m.ptr, m.len));
        free(s);
    }
    weft__cli_buf_free(&m);
    weft__cli_buf_free(&mt);
    weft__buf_free(&cx);
    weft__buf_free(&cm);
    json_decref(j);
}

/* ---------------------------------------------------------------- 2: import line */

static batch *line_batch; /* ~60 KB: allocated once, emptied after every input */

static void path_line(const uint8_t *data, size_t size)
{
    if (!line_batch && !(line_batch = calloc(1, sizeof *line_batch))) {
        return;
    }
    if (parse_line(line_batch, (const char *)data, size, 1) == WEFT_CLI_OK) {
        FUZZ_CHECK(line_batch->n == 1);
        const weft_op *op = &line_batch->ops[0];
        FUZZ_CHECK(op->payload.len <= WEFT_PAYLOAD_MAX);
        /* The accepted base64 must be the canonical spelling of the payload. */
        json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        FUZZ_CHECK(o != NULL);
        const char *b64 = json_string_value(json_object_get(o, "payload"));
        char *again = weft__cli_b64_encode(op->payload.ptr, op->payload.len);
        FUZZ_CHECK(b64 != NULL);
        if (again) {
            FUZZ_CHECK(strcmp(again, b64) == 0);
        }
        free(again);
        json_decref(o);
    } else {
        FUZZ_CHECK(line_batch->n == 0);
    }
    batch_clear(line_batch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        path_text(data + 1, size - 1);
        break;
    case 1:
        path_msgpack(data + 1, size - 1);
        break;
    default:
        path_line(data + 1, size - 1);
        break;
    }
    return 0;
}
