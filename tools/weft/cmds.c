/* cmds.c - the commands that read and write entities: init, put, get, ls,
 * del, inc, tag, conflicts, resolve, log, status (whose peers and refused
 * connections sections come from sync.c).
 *
 * Every command parses and checks its arguments before it opens the store
 * (a usage error exits 2 whatever the store's state), then runs in one
 * transaction: a read transaction for the readers, so output is one
 * consistent snapshot, and one write transaction for the writers, committed
 * durably at the end or aborted on the first error (all or nothing).
 * Human output is for people and may change; --json output is one JSON
 * document whose shape docs/cli.md documents and keeps stable.
 *
 * Invariants:
 *   1. A command that fails has committed nothing: the write transaction is
 *      aborted on every error path.
 *   2. The error line is printed before any later weft call (abort, close)
 *      can replace weft_last_error().
 *   3. Every JSON document is printed whole or the command fails (exit 1).
 * Thread-safety: single-threaded program.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <weft/weft.h>

#include "cli.h"

#define SCAN_PAGE 128 /* entities per weft_scan call in `ls` (tests/cli pages through 256) */

/* ================================================================ helpers */

typedef int (*txn_fn)(weft_txn *t, const weft_cli *cli, void *user);

/* Open the store, run @p fn in one transaction (read-only unless @p write),
 * commit a write transaction if fn succeeded, abort otherwise. fn prints its
 * own errors and returns a WEFT_CLI_* status. */
static int with_txn(const weft_cli *cli, int write, txn_fn fn, void *user)
{
    weft_store *s = NULL;
    weft_txn *t = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    int rc = weft_txn_begin(s, write ? 0u : WEFT_TXN_RDONLY, &t);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "begin transaction");
    } else {
        status = fn(t, cli, user);
        if (status == WEFT_CLI_OK && write) {
            rc = weft_txn_commit(&t);
            if (rc != 0) {
                status = weft__cli_weft_fail(rc, "commit");
            }
        }
        weft_txn_abort(&t);
    }
    weft_store_close(&s);
    return status;
}

static const char *kind_name(weft_kind k)
{
    switch (k) {
    case WEFT_KIND_REGISTER:
        return "register";
    case WEFT_KIND_COUNTER:
        return "counter";
    case WEFT_KIND_SET:
        return "set";
    }
    return "unknown";
}

/* Print @p j compactly followed by @p tail; 0 or -1 (out of memory). */
static int print_json(const json_t *j, const char *tail)
{
    char *s = j ? weft__cli_dumps(j) : NULL;
    if (!s) {
        return -1;
    }
    fputs(s, stdout);
    fputs(tail, stdout);
    free(s);
    return 0;
}

/* Set @p key of @p obj to the JSON form of msgpack @p v. 0 or -1 with the
 * reason printed. */
static int set_value(json_t *obj, const char *key, weft_bytes v, const char *what)
{
    char err[128];
    json_t *j = weft__cli_json_from_mp(v.ptr, v.len, err, sizeof err);
    if (!j) {
        weft__cli_fail(WEFT_CLI_FAIL, "%s: value cannot be shown as JSON: %s", what, err);
        return -1;
    }
    if (json_object_set_new(obj, key, j) != 0) {
        weft__cli_fail(WEFT_CLI_FAIL, "%s: out of memory", what);
        return -1;
    }
    return 0;
}

/* Split "FIELD=JSON" into a new field name (caller frees) and msgpack in
 * @p val. Prints a usage error and returns WEFT_CLI_USAGE when malformed. */
static int parse_assign(const char *cmd, const char *arg, char **field, weft_cli_buf *val)
{
    const char *eq = strchr(arg, '=');
    char err[256];
    if (!eq) {
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: '%s' is not FIELD=JSON", cmd, arg);
    }
    if (eq == arg) {
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: '%s' has an empty field name", cmd, arg);
    }
    if (weft__cli_mp_from_text(eq + 1, val, err, sizeof err) != 0) {
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: %.*s: %s", cmd, (int)(eq - arg), arg, err);
    }
    *field = strndup(arg, (size_t)(eq - arg));
    if (!*field) {
        return weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
    }
    return WEFT_CLI_OK;
}

/* A streamed JSON array: "[" item "," item ... "]". */
typedef struct jarray {
    int first;
} jarray;

static int jarray_item(jarray *a, json_t *item)
{
    if (!a->first) {
        fputc(',', stdout);
    }
    a->first = 0;
    int rc = print_json(item, "");
    json_decref(item);
    if (rc != 0) {
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
    }
    return rc;
}

/* ================================================================ init */

/* mkdir -p with mode 0700 for the directories we create. */
static int mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    for (char *q = p + 1; *q; q++) {
        if (*q == '/') {
            *q = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *q = '/';
        }
    }
    int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

int weft__cli_init(const weft_cli *cli)
{
    weft_store *s = NULL;
    struct stat st;
    if (stat(cli->dir, &st) == 0) {
        int rc = weft_store_open(cli->dir, NULL, &s);
        if (rc == 0) {
            weft_store_close(&s);
            return weft__cli_fail(WEFT_CLI_FAIL, "init: a weft store already exists in %s",
                                  cli->dir);
        }
        if (rc != WEFT_ENOSTORE) {
            return weft__cli_weft_fail(rc, "init %s", cli->dir);
        }
    } else if (mkdirs(cli->dir) != 0) {
        return weft__cli_fail(WEFT_CLI_FAIL, "init: create %s: %s", cli->dir, strerror(errno));
    }
    weft_options opt;
    int ost = weft__cli_options(&opt);
    if (ost != WEFT_CLI_OK) {
        return ost;
    }
    opt.flags |= WEFT_OPEN_CREATE | WEFT_OPEN_EXCL; /* another init may race us */
    int rc = weft_store_open(cli->dir, &opt, &s);
    if (rc == WEFT_EEXIST) {
        return weft__cli_fail(WEFT_CLI_FAIL, "init: a weft store already exists in %s", cli->dir);
    }
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "init %s", cli->dir);
    }
    char dev[WEFT_CLI_HEX64];
    weft__cli_hex64(weft_store_device(s), dev);
    weft_store_close(&s);
    printf("created a weft store in %s (device %s)\n", cli->dir, dev);
    return WEFT_CLI_OK;
}

/* ================================================================ put */

typedef struct put_args {
    int n;
    char **fields;
    weft_cli_buf *vals;
} put_args;

static int put_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    put_args *pa = user;
    for (int i = 0; i < pa->n; i++) {
        int rc = weft_set(t, cli->argv[0], cli->argv[1], pa->fields[i], pa->vals[i].ptr,
                          pa->vals[i].len, NULL);
        if (rc != 0) {
            return weft__cli_weft_fail(rc, "put %s %s %s", cli->argv[0], cli->argv[1],
                                       pa->fields[i]);
        }
    }
    return WEFT_CLI_OK;
}

int weft__cli_put(const weft_cli *cli)
{
    put_args pa = {cli->argc - 2, NULL, NULL};
    pa.fields = calloc((size_t)pa.n, sizeof *pa.fields);
    pa.vals = calloc((size_t)pa.n, sizeof *pa.vals);
    int status =
        pa.fields && pa.vals ? WEFT_CLI_OK : weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
    for (int i = 0; status == WEFT_CLI_OK && i < pa.n; i++) {
        status = parse_assign("put", cli->argv[2 + i], &pa.fields[i], &pa.vals[i]);
    }
    if (status == WEFT_CLI_OK) {
        status = with_txn(cli, 1, put_txn, &pa);
    }
    for (int i = 0; pa.fields && i < pa.n; i++) {
        free(pa.fields[i]);
        weft__cli_buf_free(&pa.vals[i]);
    }
    free(pa.fields);
    free(pa.vals);
    return status;
}

/* ================================================================ get, ls */

/* The JSON form of one visible field (docs/cli.md, "get --json"). */
static json_t *field_json(const weft_field *f)
{
    json_t *o = weft__cli_id_json(f->id);
    if (!o || json_object_set_new(o, "kind", json_string(kind_name(f->kind))) ||
        json_object_set_new(o, "heads", json_integer((json_int_t)f->heads)) ||
        json_object_set_new(o, "conflict", json_boolean(f->heads > 1))) {
        json_decref(o);
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        return NULL;
    }
    if (set_value(o, "value", f->value, f->name) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void print_field(const weft_field *f, const char *indent)
{
    printf("%s%s = ", indent, f->name);
    weft__cli_print_value(stdout, f->value);
    if (f->heads > 1) {
        printf("   (conflict: %" PRIu32 " heads; see 'weft conflicts')", f->heads);
    } else if (f->kind != WEFT_KIND_REGISTER) {
        printf("   (%s)", kind_name(f->kind));
    }
    fputc('\n', stdout);
}

/* State of get/ls while fields stream in entity by entity. */
typedef struct reader {
    int json;       /* --json */
    int ls;         /* ls: entity header lines, and entities streamed as array items */
    char *entity;   /* current entity id (copied) */
    json_t *fields; /* --json: fields of the current entity */
    jarray out;     /* ls --json: the "entities" array */
    int failed;     /* an error was printed */
} reader;

/* ls --json: print the finished entity as an array item. 0 or -1. */
static int reader_flush(reader *r)
{
    if (!r->ls || !r->json || !r->entity) {
        return 0;
    }
    json_t *e = json_pack("{s:s,s:o}", "id", r->entity, "fields", r->fields);
    r->fields = NULL;
    if (!e) {
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        return -1;
    }
    return jarray_item(&r->out, e);
}

static int reader_cb(const weft_field *f, void *user)
{
    reader *r = user;
    if (!r->entity || strcmp(r->entity, f->entity) != 0) {
        if (reader_flush(r) != 0) {
            r->failed = 1;
            return 1;
        }
        free(r->entity);
        json_decref(r->fields);
        r->entity = strdup(f->entity);
        r->fields = r->json ? json_object() : NULL;
        if (!r->entity || (r->json && !r->fields)) {
            weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
            r->failed = 1;
            return 1;
        }
        if (r->ls && !r->json) {
            printf("%s\n", f->entity);
        }
    }
    if (!r->json) {
        print_field(f, r->ls ? "  " : "");
        return 0;
    }
    json_t *fj = field_json(f);
    if (!fj) {
        r->failed = 1;
        return 1;
    }
    if (json_object_set_new(r->fields, f->name, fj) != 0) {
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        r->failed = 1;
        return 1;
    }
    return 0;
}

static void reader_free(reader *r)
{
    free(r->entity);
    r->entity = NULL;
    json_decref(r->fields);
    r->fields = NULL;
}

static int get_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    (void)user;
    const char *coll = cli->argv[0], *id = cli->argv[1];
    reader r = {cli->json, 0, NULL, NULL, {1}, 0};
    int status = WEFT_CLI_OK;
    int rc = weft_entity_read(t, coll, id, reader_cb, &r);
    if (r.failed) {
        status = WEFT_CLI_FAIL;
    } else if (rc == WEFT_ENOTFOUND) {
        status = weft__cli_fail(WEFT_CLI_FAIL, "get %s %s: no such entity", coll, id);
    } else if (rc < 0) {
        status = weft__cli_weft_fail(rc, "get %s %s", coll, id);
    } else if (cli->json) {
        json_t *doc = json_pack("{s:s,s:s,s:O}", "coll", coll, "id", id, "fields", r.fields);
        if (print_json(doc, "\n") != 0) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        }
        json_decref(doc);
    }
    reader_free(&r);
    return status;
}

int weft__cli_get(const weft_cli *cli)
{
    return with_txn(cli, 0, get_txn, NULL);
}

static int ls_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    (void)user;
    const char *coll = cli->argv[0];
    reader r = {cli->json, 1, NULL, NULL, {1}, 0};
    char *after = NULL;
    int status = WEFT_CLI_OK;
    if (cli->json) {
        json_t *c = json_string(coll);
        char *cs = c ? weft__cli_dumps(c) : NULL;
        json_decref(c);
        if (!cs) {
            return weft__cli_fail(WEFT_CLI_FAIL, "ls %s: collection name is not UTF-8", coll);
        }
        printf("{\"coll\":%s,\"entities\":[", cs);
        free(cs);
    }
    /* Page through the collection in this one snapshot. If a page made no
     * progress (entities counted but no field seen, e.g. hidden ones), read
     * the rest in one call instead of looping. */
    for (;;) {
        int n = weft_scan(t, coll, after, SCAN_PAGE, reader_cb, &r);
        if (r.failed) {
            status = WEFT_CLI_FAIL;
            break;
        }
        if (n < 0) {
            status = weft__cli_weft_fail(n, "ls %s", coll);
            break;
        }
        if ((size_t)n < SCAN_PAGE) {
            break;
        }
        if (!r.entity || (after && strcmp(after, r.entity) == 0)) {
            n = weft_scan(t, coll, after, 0, reader_cb, &r);
            if (r.failed) {
                status = WEFT_CLI_FAIL;
            } else if (n < 0) {
                status = weft__cli_weft_fail(n, "ls %s", coll);
            }
            break;
        }
        free(after);
        after = strdup(r.entity);
        if (!after) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
            break;
        }
    }
    if (status == WEFT_CLI_OK && reader_flush(&r) != 0) {
        status = WEFT_CLI_FAIL;
    }
    if (status == WEFT_CLI_OK && cli->json) {
        fputs("]}\n", stdout);
    }
    free(after);
    reader_free(&r);
    return status;
}

int weft__cli_ls(const weft_cli *cli)
{
    return with_txn(cli, 0, ls_txn, NULL);
}

/* ================================================================ del, inc, tag */

static int count_cb(const weft_field *f, void *user)
{
    (void)f;
    (void)user;
    return 1; /* one field is enough to know the entity is there */
}

static int del_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    (void)user;
    const char *coll = cli->argv[0], *id = cli->argv[1];
    int rc = weft_entity_read(t, coll, id, count_cb, NULL);
    if (rc == WEFT_ENOTFOUND) {
        return weft__cli_fail(WEFT_CLI_FAIL, "del %s %s: no such entity", coll, id);
    }
    if (rc < 0) {
        return weft__cli_weft_fail(rc, "del %s %s", coll, id);
    }
    rc = weft_del(t, coll, id, NULL);
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "del %s %s", coll, id);
    }
    return WEFT_CLI_OK;
}

int weft__cli_del(const weft_cli *cli)
{
    return with_txn(cli, 1, del_txn, NULL);
}

static int inc_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    int64_t n = *(const int64_t *)user;
    int rc = weft_inc(t, cli->argv[0], cli->argv[1], cli->argv[2], n, NULL);
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "inc %s %s %s", cli->argv[0], cli->argv[1], cli->argv[2]);
    }
    return WEFT_CLI_OK;
}

int weft__cli_inc(const weft_cli *cli)
{
    int64_t n = 1;
    if (cli->argc == 4) {
        const char *a = cli->argv[3];
        char *end;
        errno = 0;
        long long v = strtoll(a, &end, 10);
        if (!*a || *end || errno == ERANGE || a[0] == ' ' || a[0] == '\t' || a[0] == '\n') {
            return weft__cli_fail(WEFT_CLI_USAGE, "inc: '%s' is not a signed 64-bit integer", a);
        }
        n = (int64_t)v;
    }
    return with_txn(cli, 1, inc_txn, &n);
}

static int tag_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    const weft_cli_buf *v = user;
    const char *op = cli->argv[0], *coll = cli->argv[1], *id = cli->argv[2], *field = cli->argv[3];
    int add = strcmp(op, "add") == 0;
    int rc = add ? weft_add(t, coll, id, field, v->ptr, v->len, NULL)
                 : weft_rem(t, coll, id, field, v->ptr, v->len, NULL);
    if (rc == WEFT_ENOTFOUND && !add) {
        return weft__cli_fail(WEFT_CLI_FAIL, "tag rm %s %s %s: %s is not in the set", coll, id,
                              field, cli->argv[4]);
    }
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "tag %s %s %s %s", op, coll, id, field);
    }
    return WEFT_CLI_OK;
}

int weft__cli_tag(const weft_cli *cli)
{
    const char *op = cli->argv[0];
    if (strcmp(op, "add") != 0 && strcmp(op, "rm") != 0) {
        return weft__cli_fail(WEFT_CLI_USAGE, "tag: '%s' is not add or rm", op);
    }
    /* VALUE is JSON when it parses as JSON, else a plain string. */
    weft_cli_buf v = {0};
    char err[256];
    if (weft__cli_mp_from_text(cli->argv[4], &v, err, sizeof err) != 0) {
        weft__cli_buf_free(&v);
        json_t *s = json_string(cli->argv[4]);
        int rc = s ? weft__cli_mp_from_json(s, &v, err, sizeof err) : -1;
        json_decref(s);
        if (rc != 0) {
            weft__cli_buf_free(&v);
            return weft__cli_fail(WEFT_CLI_USAGE, "tag: VALUE is neither JSON nor UTF-8 text");
        }
    }
    int status = with_txn(cli, 1, tag_txn, &v);
    weft__cli_buf_free(&v);
    return status;
}

/* ================================================================ conflicts, resolve */

typedef struct conflicts_state {
    int json;
    jarray out;
    size_t n;
    int failed;
} conflicts_state;

static json_t *head_json(const weft_head *h, const char *what)
{
    json_t *o = weft__cli_id_json(h->id);
    if (!o) {
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        return NULL;
    }
    if (set_value(o, "value", h->value, what) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int conflict_cb(const weft_conflict *c, void *user)
{
    conflicts_state *cs = user;
    cs->n++;
    if (!cs->json) {
        printf("%s %s %s: %zu heads\n", c->coll, c->entity, c->field, c->nheads);
        for (size_t i = 0; i < c->nheads; i++) {
            char dev[WEFT_CLI_HEX64], when[WEFT_CLI_TIME];
            weft__cli_hex64(c->heads[i].id.device, dev);
            weft__cli_time(c->heads[i].id.hlc, when);
            printf("  %c ", i == 0 ? '*' : ' ');
            weft__cli_print_value(stdout, c->heads[i].value);
            printf("   device %s at %s #%" PRIu32 "\n", dev, when,
                   weft_hlc_counter(c->heads[i].id.hlc));
        }
        return 0;
    }
    json_t *heads = json_array();
    for (size_t i = 0; heads && i < c->nheads; i++) {
        json_t *h = head_json(&c->heads[i], c->field);
        if (!h) {
            json_decref(heads);
            cs->failed = 1;
            return 1;
        }
        if (json_array_append_new(heads, h) != 0) {
            json_decref(heads);
            heads = NULL;
        }
    }
    json_t *o = heads ? json_pack("{s:s,s:s,s:s,s:o}", "coll", c->coll, "id", c->entity, "field",
                                  c->field, "heads", heads)
                      : NULL;
    if (!o) {
        weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
        cs->failed = 1;
        return 1;
    }
    if (jarray_item(&cs->out, o) != 0) {
        cs->failed = 1;
        return 1;
    }
    return 0;
}

static int conflicts_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    (void)user;
    conflicts_state cs = {cli->json, {1}, 0, 0};
    if (cli->json) {
        fputs("{\"conflicts\":[", stdout);
    }
    int rc = weft_conflicts(t, NULL, conflict_cb, &cs);
    if (cs.failed) {
        return WEFT_CLI_FAIL;
    }
    if (rc < 0) {
        return weft__cli_weft_fail(rc, "conflicts");
    }
    if (cli->json) {
        fputs("]}\n", stdout);
    } else if (cs.n == 0) {
        fputs("no conflicts\n", stdout);
    }
    return WEFT_CLI_OK;
}

int weft__cli_conflicts(const weft_cli *cli)
{
    return with_txn(cli, 0, conflicts_txn, NULL);
}

typedef struct resolve_args {
    char *field;
    weft_cli_buf val;
} resolve_args;

static int resolve_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    resolve_args *ra = user;
    const char *coll = cli->argv[0], *id = cli->argv[1];
    int rc = weft_resolve(t, coll, id, ra->field, ra->val.ptr, ra->val.len, NULL);
    if (rc == WEFT_ENOTFOUND) {
        return weft__cli_fail(WEFT_CLI_FAIL, "resolve %s %s %s: the field is not in conflict", coll,
                              id, ra->field);
    }
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "resolve %s %s %s", coll, id, ra->field);
    }
    return WEFT_CLI_OK;
}

int weft__cli_resolve(const weft_cli *cli)
{
    resolve_args ra = {NULL, {0}};
    int status = parse_assign("resolve", cli->argv[2], &ra.field, &ra.val);
    if (status == WEFT_CLI_OK) {
        status = with_txn(cli, 1, resolve_txn, &ra);
    }
    free(ra.field);
    weft__cli_buf_free(&ra.val);
    return status;
}

/* ================================================================ log */

typedef struct log_state {
    weft_txn *t;
    int json;
    jarray out;
    int failed;
} log_state;

static int log_cb(const weft_op *op, void *user)
{
    log_state *ls = user;
    weft_op_info info;
    int rc = weft_op_describe(ls->t, op, &info);
    char dev[WEFT_CLI_HEX64], when[WEFT_CLI_TIME];
    weft__cli_hex64(op->id.device, dev);
    weft__cli_time(op->id.hlc, when);
    if (!ls->json) {
        printf("%s #%-5" PRIu32 " %s  ", when, weft_hlc_counter(op->id.hlc), dev);
        if (rc != 0) {
            printf("<undecodable op: %s>\n", weft_strerror(rc));
            return 0;
        }
        printf("%-3s %s %s", info.kind, info.coll, info.entity);
        if (info.field[0]) {
            printf(" %s", info.field);
        }
        if (strcmp(info.kind, "set") == 0) {
            fputs(" = ", stdout);
            weft__cli_print_value(stdout, info.value);
        } else if (info.value.len > 0) {
            fputc(' ', stdout);
            weft__cli_print_value(stdout, info.value);
        }
        fputc('\n', stdout);
        return 0;
    }
    char dprev[WEFT_CLI_HEX64];
    weft__cli_hex64(op->dprev, dprev);
    json_t *o = weft__cli_id_json(op->id);
    if (!o || json_object_set_new(o, "dprev", json_string(dprev))) {
        goto oom;
    }
    if (rc != 0) {
        if (json_object_set_new(o, "error", json_string(weft_strerror(rc)))) {
            goto oom;
        }
    } else {
        json_t *prev = json_array();
        for (size_t i = 0; prev && i < info.nprev; i++) {
            char ph[WEFT_CLI_HEX64], pd[WEFT_CLI_HEX64];
            weft__cli_hex64(info.prev[i].hlc, ph);
            weft__cli_hex64(info.prev[i].device, pd);
            if (json_array_append_new(prev, json_pack("{s:s,s:s}", "hlc", ph, "device", pd))) {
                json_decref(prev);
                prev = NULL;
            }
        }
        if (!prev || json_object_set_new(o, "kind", json_string(info.kind)) ||
            json_object_set_new(o, "coll", json_string(info.coll)) ||
            json_object_set_new(o, "entity", json_string(info.entity)) ||
            json_object_set_new(o, "field", json_string(info.field)) ||
            json_object_set_new(o, "prev", prev)) {
            goto oom;
        }
        if (info.value.len == 0) {
            if (json_object_set_new(o, "value", json_null())) {
                goto oom;
            }
        } else if (set_value(o, "value", info.value, "log") != 0) {
            json_decref(o);
            ls->failed = 1;
            return 1;
        }
    }
    if (jarray_item(&ls->out, o) != 0) {
        ls->failed = 1;
        return 1;
    }
    return 0;
oom:
    json_decref(o);
    weft__cli_fail(WEFT_CLI_FAIL, "log: out of memory");
    ls->failed = 1;
    return 1;
}

static int log_txn(weft_txn *t, const weft_cli *cli, void *user)
{
    (void)user;
    log_state ls = {t, cli->json, {1}, 0};
    if (cli->json) {
        fputs("{\"ops\":[", stdout);
    }
    int rc = weft_ops_since(t, NULL, log_cb, &ls);
    if (ls.failed) {
        return WEFT_CLI_FAIL;
    }
    if (rc < 0) {
        return weft__cli_weft_fail(rc, "log");
    }
    if (cli->json) {
        fputs("]}\n", stdout);
    }
    return WEFT_CLI_OK;
}

int weft__cli_log(const weft_cli *cli)
{
    return with_txn(cli, 0, log_txn, NULL);
}

/* ================================================================ status */

/* What `status` reads before its transaction (each in a transaction of its
 * own: one read transaction per thread at a time). */
typedef struct status_pre {
    weft_info info;
    weft_peer_status *peers;
    size_t npeers;
    weft_refusal refused[WEFT_REFUSALS_MAX];
    size_t nrefused;
    uint64_t refused_total;
} status_pre;

static int status_txn(weft_txn *t, const weft_cli *cli, const status_pre *pre)
{
    const weft_info *ip = &pre->info;
    const weft_peer_status *peers = pre->peers;
    size_t npeers = pre->npeers;
    weft_info info = *ip;
    weft_vv *vv = NULL;
    int rc = weft_store_vv(t, &vv);
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "status: version vector");
    }
    char dev[WEFT_CLI_HEX64], last[WEFT_CLI_HEX64], when[WEFT_CLI_TIME];
    char sid[2 * sizeof info.store_id + 1], pk[2 * WEFT_KEY_BYTES + 1];
    weft__cli_hex64(info.device, dev);
    weft__cli_hex64(info.last_hlc, last);
    weft__cli_time(info.last_hlc, when);
    weft__cli_hex(info.store_id, sizeof info.store_id, sid);
    weft__cli_hex(info.public_key, WEFT_KEY_BYTES, pk);
    int status = WEFT_CLI_OK;
    size_t n = weft_vv_count(vv);
    if (!cli->json) {
        printf("directory   %s\n", cli->dir);
        printf("device      %s\n", dev);
        printf("store       %s\n", sid);
        printf("public key  %s\n", pk);
        printf("schema      %" PRIu32 "\n", info.schema);
        printf("ops         %" PRIu64 "\n", info.ops);
        printf("conflicts   %" PRIu64 "\n", info.conflicts);
        printf("last hlc    %s (%s #%" PRIu32 ")\n", last, when, weft_hlc_counter(info.last_hlc));
        printf("map         %" PRIu64 " bytes, %" PRIu64 " used\n", info.map_size, info.used_bytes);
        printf("version vector (%zu device%s)\n", n, n == 1 ? "" : "s");
    }
    json_t *vj = json_object();
    for (size_t i = 0; i < n && status == WEFT_CLI_OK; i++) {
        uint64_t d, h;
        if (weft_vv_entry(vv, i, &d, &h) != 0) {
            status = weft__cli_weft_fail(WEFT_EINVAL, "status: version vector entry");
            break;
        }
        char dh[WEFT_CLI_HEX64], hh[WEFT_CLI_HEX64], hw[WEFT_CLI_TIME];
        weft__cli_hex64(d, dh);
        weft__cli_hex64(h, hh);
        weft__cli_time(h, hw);
        if (!cli->json) {
            printf("  %s  %s (%s #%" PRIu32 ")%s\n", dh, hh, hw, weft_hlc_counter(h),
                   d == info.device ? "  this device" : "");
        } else if (!vj || json_object_set_new(vj, dh, json_string(hh))) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "status: out of memory");
        }
    }
    json_t *pj = json_array();
    for (size_t i = 0; i < npeers && status == WEFT_CLI_OK && cli->json; i++) {
        if (!pj || json_array_append_new(pj, weft__cli_peer_json(&peers[i])) != 0) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "status: out of memory");
        }
    }
    if (status == WEFT_CLI_OK && cli->json) {
        json_t *rj = weft__cli_refusals_json(pre->refused, pre->nrefused, pre->refused_total);
        json_t *doc =
            rj ? json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:O,s:O,s:o}", "dir",
                           cli->dir, "device", dev, "store_id", sid, "public_key", pk, "schema",
                           (json_int_t)info.schema, "ops", (json_int_t)info.ops, "conflicts",
                           (json_int_t)info.conflicts, "last_hlc", last, "last_time", when,
                           "map_bytes", (json_int_t)info.map_size, "used_bytes",
                           (json_int_t)info.used_bytes, "vv", vj, "peers", pj, "refused", rj)
               : NULL;
        if (!doc || print_json(doc, "\n") != 0) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "status: out of memory");
        }
        json_decref(doc);
    } else if (status == WEFT_CLI_OK) {
        printf("peers (%zu)\n", npeers);
        weft__cli_peers_print(peers, npeers);
        weft__cli_refusals_print(pre->refused, pre->nrefused, pre->refused_total);
    }
    json_decref(pj);
    json_decref(vj);
    weft_vv_destroy(&vv);
    return status;
}

int weft__cli_status(const weft_cli *cli)
{
    weft_store *s = NULL;
    weft_txn *t = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    /* Info, peers and refusals first: the store reads them in transactions
     * of its own. */
    status_pre pre;
    memset(&pre, 0, sizeof pre);
    int rc = weft_store_info(s, &pre.info);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "status");
    } else if ((status = weft__cli_peers_load(s, &pre.peers, &pre.npeers)) != WEFT_CLI_OK) {
        /* printed */
    } else if ((rc = weft_refusals(s, pre.refused, WEFT_REFUSALS_MAX, &pre.nrefused,
                                   &pre.refused_total)) != 0) {
        status = weft__cli_weft_fail(rc, "status: refused connections");
    } else if ((rc = weft_txn_begin(s, WEFT_TXN_RDONLY, &t)) != 0) {
        status = weft__cli_weft_fail(rc, "begin transaction");
    } else {
        if (pre.nrefused > WEFT_REFUSALS_MAX) {
            pre.nrefused = WEFT_REFUSALS_MAX;
        }
        status = status_txn(t, cli, &pre);
        weft_txn_abort(&t);
    }
    free(pre.peers);
    weft_store_close(&s);
    return status;
}
