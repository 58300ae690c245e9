/* xfer.c - `weft export` and `weft import`: the op log as JSON lines, a
 * lossless dump that another store can apply.
 *
 * One line per op, oldest first ((hlc, device) order), as weft_ops_since()
 * streams them:
 *
 *   {"hlc":"<16 hex>","device":"<16 hex>","dprev":"<16 hex>",
 *    "payload":"<base64 of the payload bytes>",
 *    "kind":..,"coll":..,"entity":..,"field":..,"value":..}
 *
 * hlc, device and dprev are hex strings because JSON numbers above 2^53 do
 * not survive every reader. The payload is the op's canonical msgpack body,
 * byte for byte; kind/coll/entity/field/value are a readable copy of it that
 * import ignores (value is left out, with "value_omitted":true, when its
 * JSON would make the line longer than half of WEFT_CLI_LINE_MAX).
 *
 * Import reads lines of at most WEFT_CLI_LINE_MAX bytes, validates each (JSON
 * object, the four fields present, 16 hex digits, strict base64, payload at
 * most WEFT_PAYLOAD_MAX), and applies the ops with weft_apply() in batches of
 * IMPORT_BATCH ops, all inside ONE write transaction committed at the end:
 * a bad line anywhere leaves the store as it was. When the (hlc, device)
 * order restarts (two exports concatenated), the batch is cut there, so
 * `cat a.ops b.ops | weft import` works. Blank lines are skipped.
 *
 * Invariants:
 *   1. import commits all of its input or nothing (one write transaction).
 *   2. Every import error names the input line it comes from.
 *   3. export output of a store, imported into a fresh store, yields the
 *      same op log, hence (store invariant 4) the same state.
 * Thread-safety: single-threaded program.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/weft.h>

#include "cli.h"

#define IMPORT_BATCH       1000u       /* ops per weft_apply() call */
#define IMPORT_BATCH_BYTES (16u << 20) /* payload bytes per weft_apply() call */

/* ================================================================ export */

typedef struct export_state {
    weft_txn *t;
    int failed;
} export_state;

/* Add the readable copy of the op (ignored by import). Best effort: an op
 * this build cannot describe is still exported, losslessly, by its payload. */
static int add_extras(json_t *o, weft_txn *t, const weft_op *op)
{
    weft_op_info info;
    if (weft_op_describe(t, op, &info) != 0) {
        return 0;
    }
    if (json_object_set_new(o, "kind", json_string(info.kind)) ||
        json_object_set_new(o, "coll", json_string(info.coll)) ||
        json_object_set_new(o, "entity", json_string(info.entity)) ||
        json_object_set_new(o, "field", json_string(info.field))) {
        return -1;
    }
    if (info.value.len > 0) {
        json_t *v = weft__cli_json_from_mp(info.value.ptr, info.value.len, NULL, 0);
        if (v && json_object_set_new(o, "value", v)) {
            return -1;
        }
    }
    return 0;
}

static int export_cb(const weft_op *op, void *user)
{
    export_state *es = user;
    char hlc[WEFT_CLI_HEX64], dev[WEFT_CLI_HEX64], dprev[WEFT_CLI_HEX64];
    weft__cli_hex64(op->id.hlc, hlc);
    weft__cli_hex64(op->id.device, dev);
    weft__cli_hex64(op->dprev, dprev);
    char *b64 = weft__cli_b64_encode(op->payload.ptr, op->payload.len);
    json_t *o = b64 ? json_pack("{s:s,s:s,s:s,s:s}", "hlc", hlc, "device", dev, "dprev", dprev,
                                "payload", b64)
                    : NULL;
    free(b64);
    char *line = NULL;
    if (o && add_extras(o, es->t, op) == 0) {
        line = weft__cli_dumps(o);
        if (line && strlen(line) > WEFT_CLI_LINE_MAX / 2) {
            free(line);
            line = NULL;
            if (json_object_del(o, "value") == 0 &&
                json_object_set_new(o, "value_omitted", json_true()) == 0) {
                line = weft__cli_dumps(o);
            }
        }
    }
    json_decref(o);
    if (!line) {
        weft__cli_fail(WEFT_CLI_FAIL, "export: out of memory");
        es->failed = 1;
        return 1;
    }
    fputs(line, stdout);
    fputc('\n', stdout);
    free(line);
    if (ferror(stdout)) {
        weft__cli_fail(WEFT_CLI_FAIL, "export: write output: %s", strerror(errno ? errno : EIO));
        es->failed = 1;
        return 1;
    }
    return 0;
}

int weft__cli_export(const weft_cli *cli)
{
    weft_store *s = NULL;
    weft_txn *t = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    int rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "export: begin transaction");
    } else {
        export_state es = {t, 0};
        rc = weft_ops_since(t, NULL, export_cb, &es);
        if (es.failed) {
            status = WEFT_CLI_FAIL;
        } else if (rc < 0) {
            status = weft__cli_weft_fail(rc, "export");
        }
        weft_txn_abort(&t);
    }
    weft_store_close(&s);
    return status;
}

/* ================================================================ import */

typedef struct batch {
    weft_op ops[IMPORT_BATCH];
    uint8_t *payloads[IMPORT_BATCH];
    size_t lines[IMPORT_BATCH];
    size_t n, bytes;
} batch;

typedef struct import_state {
    weft_store *s;
    weft_txn *t; /* begun at the first batch */
    batch *b;
    size_t applied, duplicates;
} import_state;

static void batch_clear(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->payloads[i]);
        b->payloads[i] = NULL;
    }
    b->n = b->bytes = 0;
}

/* Apply the batch in the import's transaction. On failure find the line at
 * fault (re-applying op by op: a failed weft_apply leaves nothing of its
 * batch and the transaction usable) and print the error. */
static int batch_apply(import_state *is)
{
    batch *b = is->b;
    if (b->n == 0) {
        return WEFT_CLI_OK;
    }
    int rc;
    if (!is->t && (rc = weft_txn_begin(is->s, 0, &is->t)) != 0) {
        return weft__cli_weft_fail(rc, "import: begin transaction");
    }
    weft_apply_result res = {0};
    rc = weft_apply(is->t, b->ops, b->n, &res);
    if (rc != 0) {
        size_t at = res.failed_at < b->n ? res.failed_at : 0;
        if (res.failed_at < b->n) {
            return weft__cli_weft_fail(rc, "import: line %zu", b->lines[at]);
        }
        return weft__cli_weft_fail(rc, "import: lines %zu-%zu", b->lines[0], b->lines[b->n - 1]);
    }
    if (res.deferred > 0) {
        size_t first = b->n - res.deferred;
        return weft__cli_fail(WEFT_CLI_FAIL,
                              "import: line %zu: op is %" PRIu64
                              " ms ahead of this device's clock (beyond the drift horizon)",
                              b->lines[first < b->n ? first : 0], res.skew_ms);
    }
    is->applied += res.applied;
    is->duplicates += res.duplicates;
    batch_clear(b);
    return WEFT_CLI_OK;
}

/* Read one line (without its newline) into buf[0..cap). Returns 1 for a
 * line, 0 at end of input, -1 when longer than @p cap, -2 on a read error. */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n == cap) {
            return -1;
        }
        buf[n++] = (char)c;
    }
    if (ferror(f)) {
        return -2;
    }
    *len = n;
    return c == EOF && n == 0 ? 0 : 1;
}

/* A 16-hex-digit member of a line's object. */
static int line_hex(const json_t *o, const char *key, size_t line, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        return weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: missing \"%s\"", line, key);
    }
    if (!json_is_string(v) || json_string_length(v) != 16 ||
        weft__cli_parse_hex64(json_string_value(v), out) != 0) {
        return weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: \"%s\" is not 16 hex digits", line,
                              key);
    }
    return WEFT_CLI_OK;
}

/* Parse one line into the next slot of the batch. */
static int parse_line(batch *b, const char *buf, size_t len, size_t line)
{
    json_error_t jerr;
    json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        return weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: malformed JSON: %s", line,
                              jerr.text);
    }
    weft_op *op = &b->ops[b->n];
    int status = WEFT_CLI_OK;
    if (!json_is_object(o)) {
        status = weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: not a JSON object", line);
    }
    if (status == WEFT_CLI_OK) {
        status = line_hex(o, "hlc", line, &op->id.hlc);
    }
    if (status == WEFT_CLI_OK) {
        status = line_hex(o, "device", line, &op->id.device);
    }
    if (status == WEFT_CLI_OK) {
        status = line_hex(o, "dprev", line, &op->dprev);
    }
    if (status == WEFT_CLI_OK) {
        json_t *p = json_object_get(o, "payload");
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (!p) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: missing \"payload\"", line);
        } else if (!json_is_string(p) ||
                   weft__cli_b64_decode(json_string_value(p), json_string_length(p),
                                        WEFT_PAYLOAD_MAX, &bytes, &n) != 0) {
            status = weft__cli_fail(WEFT_CLI_FAIL,
                                    "import: line %zu: \"payload\" is not base64 of at most %zu "
                                    "bytes",
                                    line, (size_t)WEFT_PAYLOAD_MAX);
        } else {
            op->payload.ptr = bytes;
            op->payload.len = n;
            b->payloads[b->n] = bytes;
            b->lines[b->n] = line;
            b->bytes += n;
            b->n++;
        }
    }
    json_decref(o);
    return status;
}

static int only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') {
            return 0;
        }
    }
    return 1;
}

int weft__cli_import(const weft_cli *cli)
{
    import_state is = {NULL, NULL, NULL, 0, 0};
    int status = weft__cli_open(cli, &is.s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    char *buf = malloc(WEFT_CLI_LINE_MAX);
    is.b = calloc(1, sizeof *is.b);
    if (!buf || !is.b) {
        status = weft__cli_fail(WEFT_CLI_FAIL, "import: out of memory");
    }
    size_t line = 0;
    weft_id last = {0, 0};
    while (status == WEFT_CLI_OK) {
        size_t len = 0;
        int r = read_line(stdin, buf, WEFT_CLI_LINE_MAX, &len);
        if (r == 0) {
            break;
        }
        line++;
        if (r == -1) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "import: line %zu: longer than %u bytes", line,
                                    WEFT_CLI_LINE_MAX);
            break;
        }
        if (r == -2) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "import: read input: %s", strerror(errno));
            break;
        }
        if (only_space(buf, len)) {
            continue;
        }
        /* weft_apply wants ascending (hlc, device) order within a batch: cut
         * the batch where the order restarts (concatenated exports). */
        size_t slot = is.b->n;
        status = parse_line(is.b, buf, len, line);
        if (status != WEFT_CLI_OK) {
            break;
        }
        weft_id id = is.b->ops[slot].id;
        if (slot > 0 && weft_id_cmp(id, last) <= 0) {
            weft_op op = is.b->ops[slot];
            uint8_t *payload = is.b->payloads[slot];
            is.b->payloads[slot] = NULL;
            is.b->n--;
            is.b->bytes -= op.payload.len;
            status = batch_apply(&is);
            if (status != WEFT_CLI_OK) {
                free(payload);
                break;
            }
            is.b->ops[0] = op;
            is.b->payloads[0] = payload;
            is.b->lines[0] = line;
            is.b->n = 1;
            is.b->bytes = op.payload.len;
        }
        last = id;
        if (status == WEFT_CLI_OK &&
            (is.b->n == IMPORT_BATCH || is.b->bytes >= IMPORT_BATCH_BYTES)) {
            status = batch_apply(&is);
        }
    }
    if (status == WEFT_CLI_OK) {
        status = batch_apply(&is);
    }
    if (status == WEFT_CLI_OK && is.t) {
        int rc = weft_txn_commit(&is.t);
        if (rc != 0) {
            status = weft__cli_weft_fail(rc, "import: commit");
        }
    }
    weft_txn_abort(&is.t);
    if (is.b) {
        batch_clear(is.b);
    }
    free(is.b);
    free(buf);
    weft_store_close(&is.s);
    if (status == WEFT_CLI_OK) {
        printf("imported %zu op%s (%zu already present)\n", is.applied, is.applied == 1 ? "" : "s",
               is.duplicates);
    }
    return status;
}
