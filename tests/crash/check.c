/* check.c - the crash tests' checks (check.h).
 *
 * Invariants: none (test code).
 * Thread-safety: single-threaded programs only.
 */
#define _DEFAULT_SOURCE
#include "check.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "transport/transport_int.h"

unsigned long ck_checks, ck_failures;
char ck_ctx[256];

bool ck(bool ok, const char *fmt, ...)
{
    ck_checks++;
    if (!ok) {
        ck_failures++;
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "FAIL [%s] ", ck_ctx);
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    return ok;
}

/* ---------------------------------------------------------------- id sets */

void ck_ids_add(ck_ids *s, weft_id id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            abort();
        }
    }
    s->v[s->n++] = id;
    s->sorted = false;
}

static int id_cmp(const void *a, const void *b)
{
    return weft_id_cmp(*(const weft_id *)a, *(const weft_id *)b);
}

void ck_ids_sort(ck_ids *s)
{
    if (s->sorted) {
        return;
    }
    if (s->n > 0) {
        qsort(s->v, s->n, sizeof *s->v, id_cmp);
    }
    size_t j = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (j == 0 || weft_id_cmp(s->v[j - 1], s->v[i]) != 0) {
            s->v[j++] = s->v[i];
        }
    }
    s->n = j;
    s->sorted = true;
}

bool ck_ids_has(ck_ids *s, weft_id id)
{
    ck_ids_sort(s);
    return s->n > 0 && bsearch(&id, s->v, s->n, sizeof *s->v, id_cmp) != NULL;
}

void ck_ids_free(ck_ids *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- stores */

uint64_t ck_clock(void *user)
{
    return *(const uint64_t *)user;
}

weft_store *ck_open(const char *dir, bool create, uint64_t *now_ms)
{
    weft_options o;
    weft_options_init(&o);
    o.flags = create ? WEFT_OPEN_CREATE : 0;
    if (now_ms != NULL) {
        o.now_ms = ck_clock;
        o.now_user = now_ms;
    }
    weft_store *s = NULL;
    int rc = weft_store_open(dir, &o, &s);
    ck(rc == 0, "%s does not open%s: %s (%s)", dir, create ? " (with create)" : "",
       weft_err_name(rc), weft_last_error());
    return rc == 0 ? s : NULL;
}

typedef struct log_ctx {
    ck_ids *ids;
    weft_vv *last; /* per device: the hlc of its last op seen */
    uint64_t max, n;
    bool chain_ok, order_ok;
    weft_id bad, prev, unordered;
} log_ctx;

static int log_cb(const weft_op *op, void *user)
{
    log_ctx *c = user;
    if (c->ids != NULL) {
        ck_ids_add(c->ids, op->id);
    }
    if (op->dprev != weft_vv_get(c->last, op->id.device) && c->chain_ok) {
        c->chain_ok = false;
        c->bad = op->id;
    }
    if (c->n > 0 && weft_id_cmp(c->prev, op->id) >= 0 && c->order_ok) {
        c->order_ok = false;
        c->unordered = op->id;
    }
    c->prev = op->id;
    if (weft_vv_set(c->last, op->id.device, op->id.hlc) != 0) {
        abort();
    }
    c->max = op->id.hlc > c->max ? op->id.hlc : c->max;
    c->n++;
    return 0;
}

bool ck_log(weft_store *s, ck_ids *ids, uint64_t *max_hlc)
{
    log_ctx c = {ids, NULL, 0, 0, true, true, {0, 0}, {0, 0}, {0, 0}};
    weft_txn *t = NULL;
    weft_info info;
    bool ok = ck(weft_vv_new(&c.last) == 0 && weft_txn_begin(s, WEFT_TXN_RDONLY, &t) == 0,
                 "read txn: %s", weft_last_error());
    if (ok) {
        int n = weft_ops_since(t, NULL, log_cb, &c);
        ok = ck(n >= 0, "streaming the log: %s (%s)", weft_err_name(n), weft_last_error()) &&
             ck(weft_store_info(s, &info) == 0, "store info: %s", weft_last_error()) &&
             ck(info.ops == c.n, "ops holds %llu ops, weft_ops_since streams %llu",
                (unsigned long long)info.ops, (unsigned long long)c.n) &&
             ck(c.order_ok, "op %llx.%llx streamed out of (hlc, device) order",
                (unsigned long long)c.unordered.hlc, (unsigned long long)c.unordered.device) &&
             ck(c.chain_ok, "op %llx.%llx: device chain broken (dprev)",
                (unsigned long long)c.bad.hlc, (unsigned long long)c.bad.device);
    }
    if (ok) {
        weft_vv *vv = NULL;
        ok = ck(weft_store_vv(t, &vv) == 0, "store vv: %s", weft_last_error());
        for (size_t i = 0; ok && i < weft_vv_count(vv); i++) {
            uint64_t d, h;
            weft_vv_entry(vv, i, &d, &h);
            ok = ck(weft_vv_get(c.last, d) == h, "vv of device %llx is %llx, its last op %llx",
                    (unsigned long long)d, (unsigned long long)h,
                    (unsigned long long)weft_vv_get(c.last, d));
        }
        ok = ok && ck(weft_vv_count(vv) == weft_vv_count(c.last), "vv has %zu devices, log %zu",
                      weft_vv_count(vv), weft_vv_count(c.last));
        weft_vv_destroy(&vv);
    }
    weft_txn_abort(&t);
    weft_vv_destroy(&c.last);
    if (ids != NULL) {
        ck_ids_sort(ids);
    }
    if (max_hlc != NULL) {
        *max_hlc = c.max;
    }
    return ok;
}

/* ---------------------------------------------------------------- rebuild */

typedef struct opvec {
    weft_op *v;
    size_t n, cap;
} opvec;

static int copy_cb(const weft_op *op, void *user)
{
    opvec *o = user;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 256;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        if (o->v == NULL) {
            abort();
        }
    }
    weft_op c = *op;
    void *p = malloc(op->payload.len ? op->payload.len : 1);
    if (p == NULL) {
        abort();
    }
    memcpy(p, op->payload.ptr, op->payload.len);
    c.payload.ptr = p;
    o->v[o->n++] = c;
    return 0;
}

static void dump_state(weft_store *s, weft__buf *out)
{
    static const char *const dbs[] = {"ops", "fields", "counters", "entities", "conflicts", "vv"};
    weft_txn *t = NULL;
    if (weft_txn_begin(s, WEFT_TXN_RDONLY, &t) != 0) {
        weft__buf_put(out, "(no txn)", 8);
        return;
    }
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        weft__buf_put(out, dbs[i], strlen(dbs[i]) + 1);
        if (!ck(weft__store_dump(t, dbs[i], out) == 0, "dump of %s: %s", dbs[i],
                weft_last_error())) {
            weft__buf_put(out, "(dump failed)", 13);
        }
    }
    weft_txn_abort(&t);
}

bool ck_same(weft_store *a, weft_store *b)
{
    weft__buf x = {NULL, 0, 0}, y = {NULL, 0, 0};
    dump_state(a, &x);
    dump_state(b, &y);
    bool eq = x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0;
    weft__buf_free(&x);
    weft__buf_free(&y);
    return eq;
}

bool ck_rebuild(weft_store *s, const char *scratch)
{
    opvec o = {NULL, 0, 0};
    weft_txn *t = NULL;
    bool ok = ck(weft_txn_begin(s, WEFT_TXN_RDONLY, &t) == 0, "read txn: %s", weft_last_error());
    ok = ok && ck(weft_ops_since(t, NULL, copy_cb, &o) >= 0, "export: %s", weft_last_error());
    weft_txn_abort(&t);
    ck_rm_rf(scratch);
    weft_store *f = ok ? ck_open(scratch, true, NULL) : NULL;
    ok = ok && f != NULL;
    if (ok) {
        weft_apply_result r;
        ok = ck(weft_txn_begin(f, 0, &t) == 0, "rebuild txn: %s", weft_last_error()) &&
             ck(weft_apply(t, o.v, o.n, &r) == 0 && r.applied == o.n,
                "the log (%zu ops) does not apply to an empty store: %s", o.n, weft_last_error()) &&
             ck(weft_txn_commit(&t) == 0, "rebuild commit: %s", weft_last_error());
        weft_txn_abort(&t);
    }
    ok = ok && ck(ck_same(s, f), "materialised state differs from a rebuild of its %zu ops", o.n);
    weft_store_close(&f);
    ck_rm_rf(scratch);
    for (size_t i = 0; i < o.n; i++) {
        free((void *)o.v[i].payload.ptr);
    }
    free(o.v);
    return ok;
}

/* ---------------------------------------------------------------- peers */

/* x's acked vector of y, or NULL (no record). */
static weft_vv *acked_of(weft_store *x, weft_store *y, int *rc)
{
    weft_info yi;
    weft_txn *t = NULL;
    weft_vv *acked = NULL;
    *rc = weft_store_info(y, &yi);
    *rc = *rc ? *rc : weft_txn_begin(x, WEFT_TXN_RDONLY, &t);
    *rc = *rc ? *rc : weft__peer_acked_get(t, yi.public_key, &acked);
    weft_txn_abort(&t);
    return acked;
}

static weft_vv *vv_of(weft_store *s)
{
    weft_txn *t = NULL;
    weft_vv *vv = NULL;
    if (weft_txn_begin(s, WEFT_TXN_RDONLY, &t) == 0 && weft_store_vv(t, &vv) != 0) {
        vv = NULL;
    }
    weft_txn_abort(&t);
    return vv;
}

bool ck_acked(weft_store *x, weft_store *y, bool must_exist)
{
    int rc;
    weft_vv *acked = acked_of(x, y, &rc);
    if (rc == WEFT_ENOTFOUND && !must_exist) {
        return true;
    }
    bool ok = ck(rc == 0, "peer record: %s (%s)", weft_err_name(rc), weft_last_error());
    weft_vv *vv = ok ? vv_of(y) : NULL;
    ok = ok && ck(vv != NULL, "peer's vv: %s", weft_last_error());
    for (size_t i = 0; ok && i < weft_vv_count(acked); i++) {
        uint64_t d, h;
        weft_vv_entry(acked, i, &d, &h);
        ok = ck(h <= weft_vv_get(vv, d),
                "acked vector says the peer holds device %llx up to %llx, it holds %llx",
                (unsigned long long)d, (unsigned long long)h,
                (unsigned long long)weft_vv_get(vv, d));
    }
    weft_vv_destroy(&acked);
    weft_vv_destroy(&vv);
    return ok;
}

bool ck_acked_eq(weft_store *x, weft_store *y)
{
    int rc;
    weft_vv *acked = acked_of(x, y, &rc);
    weft_vv *vv = rc == 0 ? vv_of(y) : NULL;
    bool ok = ck(rc == 0 && vv != NULL, "peer record: %s", weft_last_error());
    ok = ok && ck(weft_vv_count(acked) == weft_vv_count(vv),
                  "acked vector has %zu devices, the peer's vv %zu", weft_vv_count(acked),
                  weft_vv_count(vv));
    for (size_t i = 0; ok && i < weft_vv_count(vv); i++) {
        uint64_t d, h;
        weft_vv_entry(vv, i, &d, &h);
        ok = ck(weft_vv_get(acked, d) == h, "acked %llx of device %llx, the peer holds %llx",
                (unsigned long long)weft_vv_get(acked, d), (unsigned long long)d,
                (unsigned long long)h);
    }
    weft_vv_destroy(&acked);
    weft_vv_destroy(&vv);
    return ok;
}

/* ---------------------------------------------------------------- clock */

bool ck_hlc(const char *dir, uint64_t behind_ms)
{
    uint64_t now = behind_ms, max = 0;
    weft_store *s = ck_open(dir, false, &now);
    if (s == NULL) {
        return false;
    }
    bool ok = ck_log(s, NULL, &max);
    weft_txn *t = NULL;
    weft_id id = {0, 0};
    static const uint8_t one = 0x01;
    ok = ok &&
         ck(weft_txn_begin(s, 0, &t) == 0 &&
                weft_set(t, "crash", "hlc", "probe", &one, 1, &id) == 0 && weft_txn_commit(&t) == 0,
            "a write after the crash fails: %s", weft_last_error());
    weft_txn_abort(&t);
    ok = ok && ck(id.hlc > max, "reissued stamp: new op hlc %llx, the log holds %llx",
                  (unsigned long long)id.hlc, (unsigned long long)max);
    weft_store_close(&s);
    return ok;
}

/* ---------------------------------------------------------------- files */

void ck_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                char sub[1024];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                ck_rm_rf(sub);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}
