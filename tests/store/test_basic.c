/* test_basic.c - store basics: create/open, every kind of local write and
 * read, scan paging, aborted txns, the persisted clock, the vv codec, and
 * every error a user can cause.
 *
 * Invariants: each test uses its own store directory and removes it.
 * Thread-safety: single-threaded.
 */
#define _DEFAULT_SOURCE
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static char *dir;
static void setup(void)
{
    dir = tmpdir_new();
}
static void teardown(void)
{
    rm_rf(dir);
    free(dir);
}

/* WEFT_OPEN_EXCL: of several processes racing to create one store, exactly
 * one succeeds and the others get WEFT_EEXIST; EXCL alone is misuse. */
Test(store, create_exclusive, .init = setup, .fini = teardown)
{
    weft_options opt;
    weft_options_init(&opt);
    weft_store *s = NULL;
    opt.flags = WEFT_OPEN_EXCL;
    ERR(WEFT_EINVAL, weft_store_open(dir, &opt, &s));
    opt.flags = WEFT_OPEN_CREATE | WEFT_OPEN_EXCL;
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        cr_assert_geq(pids[i], 0);
        if (pids[i] == 0) {
            weft_store *c = NULL;
            int rc = weft_store_open(dir, &opt, &c);
            weft_store_close(&c);
            _exit(rc == 0 ? 0 : rc == WEFT_EEXIST ? 1 : 2);
        }
    }
    int created = 0, exists = 0;
    for (int i = 0; i < N; i++) {
        int st;
        cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
        cr_assert(WIFEXITED(st));
        created += WEXITSTATUS(st) == 0;
        exists += WEXITSTATUS(st) == 1;
    }
    cr_assert_eq(created, 1, "exactly one creator wins (%d did)", created);
    cr_assert_eq(exists, N - 1);
    ERR(WEFT_EEXIST, weft_store_open(dir, &opt, &s));
    OK(weft_store_open(dir, NULL, &s));
    weft_store_close(&s);
}

Test(store, create_open_reopen, .init = setup, .fini = teardown)
{
    weft_store *s = NULL;
    ERR(WEFT_ENOSTORE, weft_store_open(dir, NULL, &s));
    s = store_open(dir, 0, NULL);
    weft_info a;
    OK(weft_store_info(s, &a));
    cr_assert_neq(a.device, 0);
    cr_assert_eq(a.device, weft_store_device(s));
    cr_assert_eq(a.schema, 3, "schema 3: ops in blocks keyed device | first hlc");
    cr_assert_eq(a.ops, 0);
    cr_assert_geq(a.map_size, 64u << 20);
    uint8_t sk[WEFT_KEY_BYTES];
    OK(weft_store_secret_key(s, sk));
    weft_store_close(&s);
    cr_assert_null(s);
    weft_store_close(&s); /* NULL-safe */

    char path[512];
    snprintf(path, sizeof path, "%s/key", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(st.st_size, 72);

    OK(weft_store_open(dir, NULL, &s));
    weft_info b;
    OK(weft_store_info(s, &b));
    cr_assert_eq(a.device, b.device);
    cr_assert_eq(memcmp(a.public_key, b.public_key, 32), 0);
    cr_assert_eq(memcmp(a.store_id, b.store_id, 16), 0);
    weft_store_close(&s);

    /* A missing directory is created with WEFT_OPEN_CREATE. */
    snprintf(path, sizeof path, "%s/sub", dir);
    ERR(WEFT_ENOSTORE, weft_store_open(path, NULL, &s));
    s = store_open(path, 0, NULL);
    weft_store_close(&s);
}

static int count_cb(const weft_field *f, void *user)
{
    (void)f;
    ++*(int *)user;
    return 0;
}

Test(store, writes_and_reads, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t;
    uint8_t v[64];
    weft_id id1, id2;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "notes", "n1", "title", "hello"));
    OK(weft_set_int(t, "notes", "n1", "n", -5));
    OK(weft_set_f64(t, "notes", "n1", "x", 1.5));
    OK(weft_set_bool(t, "notes", "n1", "done", 1));
    /* float32 input is stored canonically as float64 */
    uint8_t f32[5] = {0xca, 0x3f, 0xc0, 0x00, 0x00};
    OK(weft_set(t, "notes", "n1", "f", f32, 5, &id1));
    OK(weft_inc(t, "notes", "n1", "count", 5, NULL));
    OK(weft_inc(t, "notes", "n1", "count", -2, &id2));
    cr_assert_gt(weft_id_cmp(id2, id1), 0);
    OK(weft_add(t, "notes", "n1", "tags", v, mp_str(v, sizeof v, "b"), NULL));
    OK(weft_add(t, "notes", "n1", "tags", v, mp_str(v, sizeof v, "a"), NULL));
    OK(weft_add(t, "notes", "n1", "tags", v, mp_str(v, sizeof v, "c"), NULL));
    OK(weft_rem(t, "notes", "n1", "tags", v, mp_str(v, sizeof v, "c"), NULL));
    weft_field f;
    OK(weft_get(t, "notes", "n1", "title", &f)); /* reads see the txn's writes */
    cr_assert_eq(f.kind, WEFT_KIND_REGISTER);
    OK(weft_txn_commit(&t));
    cr_assert_null(t);

    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    OK(weft_get(t, "notes", "n1", "title", &f));
    cr_assert_eq(f.value.len, 6);
    cr_assert_eq(memcmp(f.value.ptr, "\xa5hello", 6), 0);
    cr_assert_str_eq(f.coll, "notes");
    cr_assert_str_eq(f.entity, "n1");
    cr_assert_str_eq(f.name, "title");
    cr_assert_eq(f.heads, 1);
    OK(weft_get(t, "notes", "n1", "f", &f));
    cr_assert_eq(f.value.len, 9);
    cr_assert_eq(((const uint8_t *)f.value.ptr)[0], 0xcb);
    cr_assert_eq(f.id.hlc, id1.hlc);
    OK(weft_get(t, "notes", "n1", "count", &f));
    cr_assert_eq(f.kind, WEFT_KIND_COUNTER);
    cr_assert_eq(f.value.len, 1);
    cr_assert_eq(((const uint8_t *)f.value.ptr)[0], 3);
    OK(weft_get(t, "notes", "n1", "tags", &f));
    cr_assert_eq(f.kind, WEFT_KIND_SET);
    cr_assert_eq(f.value.len, 5);
    cr_assert_eq(memcmp(f.value.ptr,
                        "\x92\xa1"
                        "a\xa1"
                        "b",
                        5),
                 0);
    int n = 0;
    cr_assert_eq(weft_entity_read(t, "notes", "n1", count_cb, &n), 7);
    cr_assert_eq(n, 7);
    ERR(WEFT_ENOTFOUND, weft_get(t, "notes", "n1", "nope", &f));
    ERR(WEFT_ENOTFOUND, weft_entity_read(t, "notes", "n2", count_cb, &n));
    weft_txn_abort(&t);

    /* delete hides every field; a later write shows again */
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_del(t, "notes", "n1", NULL));
    ERR(WEFT_ENOTFOUND, weft_get(t, "notes", "n1", "title", &f));
    ERR(WEFT_ENOTFOUND, weft_entity_read(t, "notes", "n1", NULL, NULL));
    OK(weft_set_str(t, "notes", "n1", "title", "again"));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_entity_read(t, "notes", "n1", NULL, NULL), 1);
    weft_txn_abort(&t);
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, 13);
    cr_assert_eq(info.conflicts, 0);
    weft_store_close(&s);
}

typedef struct scanlog {
    char last[64];
    int fields;
} scanlog;

static int scan_cb(const weft_field *f, void *user)
{
    scanlog *l = user;
    cr_assert_str_eq(f->coll, "c");
    cr_assert(strcmp(f->entity, l->last) >= 0, "%s after %s", f->entity, l->last);
    snprintf(l->last, sizeof l->last, "%s", f->entity);
    l->fields++;
    return 0;
}

Test(store, scan_paging, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    char e[32];
    for (int i = 0; i < 100; i++) {
        snprintf(e, sizeof e, "e%03d", i);
        OK(weft_set_int(t, "c", e, "a", i));
        OK(weft_set_int(t, "c", e, "b", i));
        OK(weft_set_int(t, "d", e, "a", i)); /* another collection */
    }
    OK(weft_set_int(t, "c", "e", "a", 1)); /* prefix of the others */
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    scanlog l = {"", 0};
    cr_assert_eq(weft_scan(t, "c", NULL, 0, scan_cb, &l), 101);
    cr_assert_eq(l.fields, 201);
    /* paging by 7 */
    char after[64] = "";
    int pages = 0, total = 0;
    for (;;) {
        scanlog p = {"", 0};
        int n = weft_scan(t, "c", after[0] ? after : NULL, 7, scan_cb, &p);
        cr_assert_geq(n, 0);
        if (n == 0) {
            break;
        }
        cr_assert(strcmp(p.last, after) > 0);
        snprintf(after, sizeof after, "%s", p.last);
        total += n;
        pages++;
    }
    cr_assert_eq(total, 101);
    cr_assert_eq(pages, 15);
    cr_assert_eq(weft_scan(t, "zzz", NULL, 0, scan_cb, &l), 0);
    weft_txn_abort(&t);
    weft_store_close(&s);
}

Test(store, aborted_txn_leaves_nothing, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "a", "b", "c", "first"));
    OK(weft_txn_commit(&t));
    weft__buf before = {0}, after = {0};
    dump(s, NULL, &before);
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "a", "b", "c", "second"));
    OK(weft_del(t, "a", "b", NULL));
    OK(weft_inc(t, "a", "x", "n", 1, NULL));
    weft_txn_abort(&t);
    cr_assert_null(t);
    weft_txn_abort(&t);
    dump(s, NULL, &after);
    cr_assert_eq(before.len, after.len);
    cr_assert_eq(memcmp(before.ptr, after.ptr, before.len), 0);
    weft__buf_free(&before);
    weft__buf_free(&after);
    weft_store_close(&s);
}

Test(store, hlc_persisted_clock_back, .init = setup, .fini = teardown)
{
    uint64_t now = 1700000000000ull;
    weft_store *s = store_open(dir, 0, &now);
    weft_txn *t;
    weft_id last = {0, 0}, id;
    for (int i = 0; i < 50; i++) {
        OK(weft_txn_begin(s, 0, &t));
        OK(weft_set(t, "c", "e", "f", "\x01", 1, &id));
        cr_assert_gt(id.hlc, last.hlc);
        last = id;
        OK(weft_txn_commit(&t));
    }
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.last_hlc, last.hlc);
    weft_store_close(&s);
    now -= 3600 * 1000; /* the wall clock went back an hour */
    s = store_open(dir, 0, &now);
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set(t, "c", "e", "f", "\x02", 1, &id));
    cr_assert_gt(id.hlc, last.hlc, "hlc %llx after restart not above %llx",
                 (unsigned long long)id.hlc, (unsigned long long)last.hlc);
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
}

Test(store, vv_codec)
{
    weft_vv *vv, *back;
    OK(weft_vv_new(&vv));
    OK(weft_vv_set(vv, 7, 100));
    OK(weft_vv_set(vv, 3, 1ull << 40));
    OK(weft_vv_set(vv, 0xffffffffffffffffull, 5));
    OK(weft_vv_set(vv, 9, 1));
    OK(weft_vv_set(vv, 9, 0)); /* removes */
    cr_assert_eq(weft_vv_count(vv), 3);
    uint64_t d, h;
    OK(weft_vv_entry(vv, 0, &d, &h));
    cr_assert_eq(d, 3);
    size_t len;
    ERR(WEFT_ENOSPC, weft_vv_encode(vv, NULL, 0, &len));
    uint8_t buf[64];
    OK(weft_vv_encode(vv, buf, sizeof buf, &len));
    cr_assert_eq(buf[0], 0x83);
    OK(weft_vv_decode(buf, len, &back));
    cr_assert_eq(weft_vv_get(back, 7), 100);
    cr_assert_eq(weft_vv_get(back, 3), 1ull << 40);
    cr_assert_eq(weft_vv_get(back, 4), 0);
    weft_vv_destroy(&back);
    ERR(WEFT_ECORRUPT, weft_vv_decode(buf, len - 1, &back));
    uint8_t unsorted[] = {0x82, 0x05, 0x01, 0x03, 0x01};
    ERR(WEFT_ECORRUPT, weft_vv_decode(unsorted, sizeof unsorted, &back));
    uint8_t dup[] = {0x82, 0x05, 0x01, 0x05, 0x02};
    ERR(WEFT_ECORRUPT, weft_vv_decode(dup, sizeof dup, &back));
    uint8_t huge[] = {0xdf, 0x00, 0x01, 0x00, 0x01}; /* 65537 entries */
    ERR(WEFT_ELIMIT, weft_vv_decode(huge, sizeof huge, &back));
    uint8_t lie[] = {0xdf, 0x00, 0x00, 0xff, 0xff}; /* 65535 claimed, none there */
    ERR(WEFT_ECORRUPT, weft_vv_decode(lie, sizeof lie, &back));
    uint8_t notmap[] = {0x90};
    ERR(WEFT_ECORRUPT, weft_vv_decode(notmap, 1, &back));
    uint8_t empty[] = {0x80};
    OK(weft_vv_decode(empty, 1, &back));
    cr_assert_eq(weft_vv_count(back), 0);
    weft_vv_destroy(&back);
    weft_vv_destroy(&vv);
    weft_vv_destroy(&vv);
}

/* The internal merge raises entries only and says whether any rose; <= is
 * entrywise; weft__vv_put writes weft_vv_encode's bytes. */
Test(store, vv_merge_le_put)
{
    weft_vv *a, *b;
    OK(weft_vv_new(&a));
    OK(weft_vv_new(&b));
    OK(weft_vv_set(a, 1, 10));
    OK(weft_vv_set(a, 5, 50));
    OK(weft_vv_set(b, 1, 20));
    OK(weft_vv_set(b, 5, 40));
    OK(weft_vv_set(b, 9, 1));
    cr_assert(!weft__vv_le(a, b) && !weft__vv_le(b, a));
    bool changed = false;
    OK(weft__vv_merge(a, b, &changed));
    cr_assert(changed);
    cr_assert_eq(weft_vv_get(a, 1), 20);
    cr_assert_eq(weft_vv_get(a, 5), 50, "a merge lowered an entry");
    cr_assert_eq(weft_vv_get(a, 9), 1);
    cr_assert(weft__vv_le(b, a) && !weft__vv_le(a, b));
    OK(weft__vv_merge(a, b, &changed));
    cr_assert(!changed);
    OK(weft__vv_merge(a, NULL, &changed)); /* nothing to merge */
    cr_assert(!changed);
    cr_assert(weft__vv_le(NULL, a));
    weft__buf w = {NULL, 0, 0};
    uint8_t enc[64];
    size_t len;
    OK(weft_vv_encode(a, enc, sizeof enc, &len));
    OK(weft__vv_put(&w, a));
    cr_assert_eq(w.len, len);
    cr_assert_arr_eq(w.ptr, enc, len);
    weft__buf_free(&w);
    weft_vv_destroy(&a);
    weft_vv_destroy(&b);
}

Test(store, op_describe, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t;
    uint8_t v[16];
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "e", "f", "x"));
    OK(weft_set_str(t, "c", "e", "f", "y"));
    OK(weft_inc(t, "c", "e", "n", -3, NULL));
    OK(weft_del(t, "c", "e", NULL));
    OK(weft_txn_commit(&t));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    opvec o = {0};
    cr_assert_eq(weft_ops_since(t, NULL, opvec_collect, &o), 4);
    weft_op_info info;
    OK(weft_op_describe(t, &o.v[1], &info));
    cr_assert_str_eq(info.kind, "set");
    cr_assert_str_eq(info.coll, "c");
    cr_assert_str_eq(info.entity, "e");
    cr_assert_str_eq(info.field, "f");
    cr_assert_eq(info.nprev, 1);
    cr_assert_eq(weft_id_cmp(info.prev[0], o.v[0].id), 0);
    cr_assert_eq(o.v[1].dprev, o.v[0].id.hlc);
    OK(weft_op_describe(t, &o.v[2], &info));
    cr_assert_str_eq(info.kind, "inc");
    cr_assert_eq(info.value.len, mp_int(v, sizeof v, -3));
    cr_assert_eq(memcmp(info.value.ptr, v, info.value.len), 0);
    OK(weft_op_describe(t, &o.v[3], &info));
    cr_assert_str_eq(info.kind, "del");
    cr_assert_str_eq(info.field, "");
    weft_op bad = o.v[0];
    bad.payload.len--;
    ERR(WEFT_ECORRUPT, weft_op_describe(t, &bad, &info));
    weft_txn_abort(&t);
    opvec_free(&o);
    weft_store_close(&s);
}

Test(store, errors_user_input, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 0, NULL);
    weft_txn *t, *t2, *r;
    char longname[300];
    memset(longname, 'x', 299);
    longname[299] = '\0';
    OK(weft_txn_begin(s, 0, &t));
    ERR(WEFT_EINVAL, weft_set_str(t, "", "e", "f", "v"));
    ERR(WEFT_EINVAL, weft_set_str(t, "c", NULL, "f", "v"));
    ERR(WEFT_ELIMIT, weft_set_str(t, longname, "e", "f", "v"));
    cr_assert_neq(strstr(weft_last_error(), "collection"), NULL, "%s", weft_last_error());
    cr_assert_neq(strstr(weft_last_error(), "is 299 bytes"), NULL, "%s", weft_last_error());
    ERR(WEFT_EINVAL, weft_set_str(t, "c", "\xff\xfe", "f", "v"));
    ERR(WEFT_EINVAL, weft_set(t, "c", "e", "f", "\xc1", 1, NULL));         /* never-used byte */
    ERR(WEFT_EINVAL, weft_set(t, "c", "e", "f", "\x92\x01", 2, NULL));     /* truncated */
    ERR(WEFT_EINVAL, weft_set(t, "c", "e", "f", "\x01\x02", 2, NULL));     /* trailing */
    ERR(WEFT_EINVAL, weft_set(t, "c", "e", "f", "\xd4\x01\x02", 3, NULL)); /* ext */
    size_t big = WEFT_VALUE_MAX + 16;
    uint8_t *bin = calloc(1, big);
    bin[0] = 0xc6;
    weft__be32_put(bin + 1, (uint32_t)(big - 5));
    ERR(WEFT_ELIMIT, weft_set(t, "c", "e", "f", bin, big, NULL));
    free(bin);
    uint8_t deep[40];
    memset(deep, 0x91, 39);
    deep[39] = 0x01;
    ERR(WEFT_ELIMIT, weft_set(t, "c", "e", "f", deep, sizeof deep, NULL));
    uint8_t v[8];
    ERR(WEFT_ENOTFOUND, weft_rem(t, "c", "e", "tags", v, mp_str(v, sizeof v, "a"), NULL));
    ERR(WEFT_ENOTFOUND, weft_resolve(t, "c", "e", "f", v, mp_str(v, sizeof v, "a"), NULL));
    /* none of that poisoned the txn */
    ERR(WEFT_EBUSY, weft_txn_begin(s, 0, &t2));
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &r)); /* reads alongside are fine */
    OK(weft_set_str(t, "c", "e", "f", "ok"));
    OK(weft_txn_commit(&t));
    weft_field f;
    ERR(WEFT_ENOTFOUND, weft_get(r, "c", "e", "f", &f)); /* snapshot before the commit */
    ERR(WEFT_ERDONLY, weft_set_str(r, "c", "e", "f", "v"));
    ERR(WEFT_ERDONLY, weft_apply(r, NULL, 0, NULL));
    ERR(WEFT_EINVAL, weft_txn_begin(s, 0x80, &t2));
    OK(weft_txn_commit(&r));
    ERR(WEFT_EINVAL, weft_txn_commit(&r));
    weft_store_close(&s);
}

Test(store, errors_open, .init = setup, .fini = teardown)
{
    char path[600], other[512];
    weft_store *s = NULL;
    ERR(WEFT_EINVAL, weft_store_open(NULL, NULL, &s));
    snprintf(path, sizeof path, "%s/none", dir);
    ERR(WEFT_ENOSTORE, weft_store_open(path, NULL, &s));
    OK(mkdir(path, 0700));
    ERR(WEFT_ENOSTORE, weft_store_open(path, NULL, &s));

    /* garbage data.mdb */
    snprintf(other, sizeof other, "%s/garbage", dir);
    OK(mkdir(other, 0700));
    snprintf(path, sizeof path, "%s/data.mdb", other);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 20000; i++) {
        fputc((i * 7919) & 0xff, fp);
    }
    fclose(fp);
    ERR(WEFT_ECORRUPT, weft_store_open(other, NULL, &s));

    /* schema 999 written with raw LMDB */
    snprintf(other, sizeof other, "%s/schema", dir);
    s = store_open(other, 0, NULL);
    weft_store_close(&s);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    cr_assert_eq(mdb_env_open(env, other, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    uint8_t b4[4];
    weft__be32_put(b4, 999);
    MDB_val k = {6, "schema"}, val = {4, b4};
    cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ERR(WEFT_EVERSION, weft_store_open(other, NULL, &s));
    cr_assert_neq(strstr(weft_last_error(), "999"), NULL, "%s", weft_last_error());
    /* schema 1 (ops keyed hlc | device, a by_device index) and schema 2 (one
     * op per key of ops): refused too */
    for (uint32_t old = 1; old <= 2; old++) {
        cr_assert_eq(mdb_env_create(&env), 0);
        mdb_env_set_maxdbs(env, 16);
        cr_assert_eq(mdb_env_open(env, other, 0, 0600), 0);
        cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
        cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
        weft__be32_put(b4, old);
        cr_assert_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
        cr_assert_eq(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
        ERR(WEFT_EVERSION, weft_store_open(other, NULL, &s));
        char want[32];
        snprintf(want, sizeof want, "version %u,", (unsigned)old);
        cr_assert_neq(strstr(weft_last_error(), want), NULL, "%s", weft_last_error());
    }

    /* an LMDB env that is not a weft store */
    snprintf(other, sizeof other, "%s/plain", dir);
    OK(mkdir(other, 0700));
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, other, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_put(txn, 1, &k, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ERR(WEFT_ECORRUPT, weft_store_open(other, NULL, &s));

    /* key files swapped between two stores; missing; truncated */
    char a[512], b[512], ka[600], kb[600];
    snprintf(a, sizeof a, "%s/ka", dir);
    snprintf(b, sizeof b, "%s/kb", dir);
    s = store_open(a, 0, NULL);
    weft_store_close(&s);
    s = store_open(b, 0, NULL);
    weft_store_close(&s);
    snprintf(ka, sizeof ka, "%s/key", a);
    snprintf(kb, sizeof kb, "%s/key", b);
    snprintf(path, sizeof path, "%s/key.save", a);
    OK(rename(ka, path));
    ERR(WEFT_ECORRUPT, weft_store_open(a, NULL, &s)); /* missing */
    cr_assert_neq(strstr(weft_last_error(), "key"), NULL);
    OK(link(kb, ka));
    ERR(WEFT_ECORRUPT, weft_store_open(a, NULL, &s)); /* another store's */
    cr_assert_neq(strstr(weft_last_error(), "mismatch"), NULL, "%s", weft_last_error());
    OK(unlink(ka));
    OK(rename(path, ka));
    OK(truncate(ka, 40));
    ERR(WEFT_ECORRUPT, weft_store_open(a, NULL, &s));
}

/* Disk full: a child limited by RLIMIT_FSIZE writes until WEFT_EFULL; every
 * acknowledged write survives and the store opens afterwards. */
Test(store, disk_full, .init = setup, .fini = teardown)
{
    weft_store *s = store_open(dir, 1 << 20, NULL);
    weft_store_close(&s);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        char path[600];
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        struct stat st;
        stat(path, &st);
        struct rlimit rl = {(rlim_t)st.st_size + 256 * 1024, (rlim_t)st.st_size + 256 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        weft_store *c = NULL;
        if (weft_store_open(dir, NULL, &c) != 0) {
            _exit(2);
        }
        static uint8_t val[8192];
        val[0] = 0xc5;
        val[1] = (8192 - 3) >> 8;
        val[2] = (8192 - 3) & 0xff;
        for (int i = 0; i < 10000; i++) {
            weft_txn *t;
            char e[16];
            snprintf(e, sizeof e, "e%d", i);
            int rc = weft_txn_begin(c, 0, &t);
            if (rc == 0) {
                rc = weft_set(t, "c", e, "f", val, sizeof val, NULL);
            }
            if (rc == 0) {
                rc = weft_txn_commit(&t);
            } else {
                weft_txn_abort(&t);
            }
            if (rc != 0) {
                fprintf(stderr, "disk_full child: %s\n", weft_last_error());
                int32_t code = rc;
                write(fds[1], &code, 4);
                _exit(0);
            }
            int32_t ack = i + 1;
            write(fds[1], &ack, 4);
        }
        _exit(3);
    }
    close(fds[1]);
    int32_t msg, acked = 0, err = 0;
    while (read(fds[0], &msg, 4) == 4) {
        if (msg > 0) {
            acked = msg;
        } else {
            err = msg;
        }
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    cr_assert_eq(err, WEFT_EFULL, "child got %s", weft_err_name(err));
    cr_assert_gt(acked, 5);
    OK(weft_store_open(dir, NULL, &s));
    weft_info info;
    OK(weft_store_info(s, &info));
    cr_assert_eq(info.ops, (uint64_t)acked);
    weft_txn *t;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_scan(t, "c", NULL, 0, NULL, NULL), acked);
    weft_txn_abort(&t);
    /* and it still takes writes */
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "c", "after", "f", "x"));
    OK(weft_txn_commit(&t));
    weft_store_close(&s);
}
