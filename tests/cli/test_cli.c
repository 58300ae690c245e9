/* test_cli.c - the `weft` command, driven as a user drives it: spawn the
 * built binary, capture stdout, stderr and the exit status, parse --json
 * output back with jansson.
 *
 * Each test gets its own temporary directory (under /dev/shm when it exists,
 * else $TMPDIR), holding the stores it makes and the captured output; every
 * run of the binary is killed if it takes longer than RUN_TIMEOUT_S. The
 * "store of another version" test writes into the store's LMDB environment
 * directly (liblmdb), the "full disk" test runs the command under a small
 * RLIMIT_FSIZE with SIGXFSZ ignored.
 *
 * Invariants:
 *   1. Tests share nothing: a test's stores live in its own directory,
 *      removed at the end of the test.
 *   2. Every failing run is checked to print exactly one line to stderr,
 *      starting "weft: ".
 * Thread-safety: criterion runs each test in its own process; nothing here
 * is shared between threads.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/tmpdir.h"

extern char **environ;

#define WEFT_BIN      WEFT_TEST_BIN_DIR "/tools/weft"
#define RUN_TIMEOUT_S 20
#define ARGS_MAX      64

/* ================================================================ harness */

typedef struct run_result {
    int status; /* exit code; 128 + signal if killed by one */
    char *out;  /* NUL-terminated captured stdout */
    size_t outlen;
    char *err; /* NUL-terminated captured stderr */
} run_result;

static char root[256]; /* this test's temporary directory */

static void setup(void)
{
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : NULL;
    if (!base) {
        base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    }
    snprintf(root, sizeof root, "%s/weft-cli-XXXXXX", base);
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
    rm_tree(root);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 120);

/* A path inside this test's directory, in a rotation of static buffers:
 * use it at once (a run takes two). */
static const char *path(const char *name)
{
    static char bufs[32][512];
    static int next;
    char *b = bufs[next++ % 32];
    snprintf(b, 512, "%s/%s", root, name);
    return b;
}

/* A path inside this test's directory that stays valid for the whole test. */
static const char *kpath(const char *name)
{
    static char bufs[16][512];
    static int next;
    cr_assert_lt(next, 16, "too many kept paths");
    char *b = bufs[next++];
    snprintf(b, 512, "%s/%s", root, name);
    return b;
}

static char *slurp(const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    cr_assert_not_null(f, "open %s: %s", file, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len) {
        *len = n;
    }
    return buf;
}

static void write_file(const char *file, const char *text, size_t len)
{
    FILE *f = fopen(file, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

typedef struct run_opts {
    const char *in;  /* stdin file; NULL: /dev/null */
    const char *out; /* stdout file; NULL: captured */
    char **env;      /* NULL: inherit */
    rlim_t fsize;    /* RLIM_INFINITY: no limit */
} run_opts;

/* Spawn the binary with argv[0..], wait at most RUN_TIMEOUT_S. */
static run_result run_v(const run_opts *o, char **args)
{
    const char *outp = o->out ? o->out : path(".out");
    const char *errp = path(".err");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, o->in ? o->in : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    struct rlimit old;
    struct sigaction ign = {0}, oldsa;
    if (o->fsize != RLIM_INFINITY) {
        /* Inherited by the child: a small file-size limit and SIGXFSZ
         * ignored, so writes past it fail with EFBIG instead of killing. */
        ign.sa_handler = SIG_IGN;
        cr_assert_eq(sigaction(SIGXFSZ, &ign, &oldsa), 0);
        cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
        struct rlimit lim = {o->fsize, old.rlim_max};
        cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, WEFT_BIN, &fa, NULL, args, o->env ? o->env : environ);
    if (o->fsize != RLIM_INFINITY) {
        setrlimit(RLIMIT_FSIZE, &old);
        sigaction(SIGXFSZ, &oldsa, NULL);
    }
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", WEFT_BIN, strerror(rc));

    int ws = 0;
    struct timespec nap = {0, 2 * 1000 * 1000};
    long waited_ms = 0;
    for (;;) {
        pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) {
            break;
        }
        cr_assert(w == 0, "waitpid: %s", strerror(errno));
        if (waited_ms > RUN_TIMEOUT_S * 1000L) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            cr_assert_fail("weft %s did not finish within %d s", args[1], RUN_TIMEOUT_S);
        }
        nanosleep(&nap, NULL);
        waited_ms += 2;
    }
    run_result r;
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    r.out = o->out ? strdup("") : slurp(outp, &r.outlen);
    if (o->out) {
        r.outlen = 0;
    }
    r.err = slurp(errp, NULL);
    return r;
}

/* run(opts, dir, args..., NULL): `weft --dir DIR args...` (dir NULL: no --dir). */
static run_result run(const run_opts *o, const char *dir, ...)
{
    char *args[ARGS_MAX];
    int n = 0;
    args[n++] = (char *)WEFT_BIN;
    if (dir) {
        args[n++] = (char *)"--dir";
        args[n++] = (char *)dir;
    }
    va_list ap;
    va_start(ap, dir);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < ARGS_MAX - 1) {
        args[n++] = (char *)a;
    }
    va_end(ap);
    args[n] = NULL;
    static const run_opts dflt = {NULL, NULL, NULL, RLIM_INFINITY};
    return run_v(o ? o : &dflt, args);
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* Run and expect success; the result's stdout is returned (caller frees). */
#define OK(dir, ...) ok_run(NULL, dir, __VA_ARGS__, NULL)

static char *ok_run(const run_opts *o, const char *dir, ...)
{
    char *args[ARGS_MAX];
    int n = 0;
    args[n++] = (char *)WEFT_BIN;
    args[n++] = (char *)"--dir";
    args[n++] = (char *)dir;
    va_list ap;
    va_start(ap, dir);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < ARGS_MAX - 1) {
        args[n++] = (char *)a;
    }
    va_end(ap);
    args[n] = NULL;
    static const run_opts dflt = {NULL, NULL, NULL, RLIM_INFINITY};
    run_result r = run_v(o ? o : &dflt, args);
    cr_assert_eq(r.status, 0, "weft %s %s exited %d: %s", args[3], n > 4 ? args[4] : "", r.status,
                 r.err);
    cr_assert_str_empty(r.err, "weft %s wrote to stderr: %s", args[3], r.err);
    free(r.err);
    return r.out;
}

/* Expect exit status @p status and exactly one stderr line "weft: ..."
 * containing @p needle (case-insensitive; NULL: anything). */
static void expect_fail(run_result *r, int status, const char *needle)
{
    cr_assert_eq(r->status, status, "exit %d, wanted %d; stderr: %s", r->status, status, r->err);
    size_t len = strlen(r->err);
    cr_assert(len > 0 && r->err[len - 1] == '\n', "stderr is not one line: [%s]", r->err);
    cr_assert_eq(strchr(r->err, '\n'), r->err + len - 1, "stderr has several lines: [%s]", r->err);
    cr_assert_eq(strncmp(r->err, "weft: ", 6), 0, "stderr does not start 'weft: ': %s", r->err);
    if (needle) {
        char *lower = strdup(r->err);
        for (char *p = lower; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
        cr_assert_not_null(strstr(lower, needle), "stderr lacks '%s': %s", needle, r->err);
        free(lower);
    }
    run_free(r);
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, text);
    return j;
}

/* Parse the --json output of a successful run. */
#define OKJ(dir, ...) okj_run(ok_run(NULL, dir, __VA_ARGS__, "--json", NULL))

static json_t *okj_run(char *out)
{
    json_t *j = parse(out);
    free(out);
    return j;
}

static const char *store(const char *name)
{
    const char *d = kpath(name);
    free(OK(d, "init"));
    return d;
}

static int is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n) {
        return 0;
    }
    return strspn(s, "0123456789abcdef") == n;
}

/* ================================================================ basics */

Test(cli, help_and_version)
{
    run_result r = run(NULL, NULL, "help", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "usage: weft"));
    cr_assert_not_null(strstr(r.out, "conflicts"));
    run_free(&r);
    r = run(NULL, NULL, "--help", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(strstr(r.out, "usage: weft"));
    run_free(&r);
    r = run(NULL, NULL, "--version", NULL);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.out, "weft 0.1.0\n");
    run_free(&r);
    r = run(NULL, NULL, NULL);
    cr_assert_eq(r.status, 2, "no command must be a usage error");
    cr_assert_not_null(strstr(r.err, "usage: weft"));
    run_free(&r);
}

Test(cli, usage_errors)
{
    const char *d = store("s");
    run_result r = run(NULL, d, "frobnicate", NULL);
    expect_fail(&r, 2, "unknown command 'frobnicate'");
    r = run(NULL, d, "ls", "notes", "--frob", NULL);
    expect_fail(&r, 2, "unknown flag '--frob'");
    r = run(NULL, d, "init", "--json", NULL);
    expect_fail(&r, 2, "unknown flag '--json'");
    r = run(NULL, d, "put", "notes", NULL);
    expect_fail(&r, 2, "missing arguments");
    r = run(NULL, d, "get", "notes", NULL);
    expect_fail(&r, 2, "missing arguments");
    r = run(NULL, d, "get", "notes", "n1", "extra", NULL);
    expect_fail(&r, 2, "too many arguments");
    r = run(NULL, d, "tag", "put", "notes", "n1", "tags", "x", NULL);
    expect_fail(&r, 2, "not add or rm");
    r = run(NULL, d, "inc", "notes", "n1", "views", "abc", NULL);
    expect_fail(&r, 2, "not a signed 64-bit integer");
    r = run(NULL, d, "inc", "notes", "n1", "views", "9223372036854775808", NULL);
    expect_fail(&r, 2, "not a signed 64-bit integer");
    r = run(NULL, NULL, "--dir", NULL);
    expect_fail(&r, 2, "--dir needs");
    /* Usage errors come before the store: nothing was written. */
    json_t *log = OKJ(d, "log");
    cr_assert_eq(json_array_size(json_object_get(log, "ops")), 0);
    json_decref(log);
}

Test(cli, malformed_values)
{
    const char *d = store("s");
    run_result r = run(NULL, d, "put", "notes", "n1", "title=Hello", NULL);
    expect_fail(&r, 2, "malformed json");
    r = run(NULL, d, "put", "notes", "n1", "ok=1", "title", NULL);
    expect_fail(&r, 2, "is not field=json");
    r = run(NULL, d, "put", "notes", "n1", "=1", NULL);
    expect_fail(&r, 2, "empty field name");
    r = run(NULL, d, "put", "notes", "n1", "b={\"$bin\":\"!!\"}", NULL);
    expect_fail(&r, 2, "base64");
    r = run(NULL, d, "put", "notes", "n1", "u={\"$u64\":\"18446744073709551616\"}", NULL);
    expect_fail(&r, 2, "$u64");
    r = run(NULL, d, "resolve", "notes", "n1", "title", NULL);
    expect_fail(&r, 2, "is not field=json");
    r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, "no such entity");
}

Test(cli, missing_store_and_init_twice)
{
    const char *d = kpath("nowhere");
    run_result r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, "no weft store in");
    r = run(NULL, d, "status", NULL);
    expect_fail(&r, 1, "run 'weft init'");
    mkdir(d, 0700); /* an empty directory is no store either */
    r = run(NULL, d, "ls", "notes", NULL);
    expect_fail(&r, 1, "no weft store in");
    char *out = OK(d, "init");
    cr_assert_not_null(strstr(out, "created a weft store"));
    free(out);
    r = run(NULL, d, "init", NULL);
    expect_fail(&r, 1, "already exists");
    /* init makes missing parent directories. */
    free(OK(path("a/b/c"), "init"));
}

Test(cli, store_dir_from_environment)
{
    char e1[600], e2[600], e3[600];
    snprintf(e1, sizeof e1, "WEFT_DIR=%s", path("envdir"));
    char *env1[] = {e1, NULL};
    run_opts o = {NULL, NULL, env1, RLIM_INFINITY};
    run_result r = run(&o, NULL, "init", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    struct stat st;
    cr_assert_eq(stat(path("envdir/data.mdb"), &st), 0);

    snprintf(e2, sizeof e2, "XDG_DATA_HOME=%s", path("xdg"));
    char *env2[] = {e2, NULL};
    o.env = env2;
    r = run(&o, NULL, "init", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    cr_assert_eq(stat(path("xdg/weft/data.mdb"), &st), 0);

    snprintf(e3, sizeof e3, "HOME=%s", path("home"));
    char *env3[] = {e3, NULL};
    o.env = env3;
    r = run(&o, NULL, "init", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    cr_assert_eq(stat(path("home/.local/share/weft/data.mdb"), &st), 0);

    /* --dir wins over the environment. */
    r = run(&o, path("flag"), "init", NULL);
    cr_assert_eq(r.status, 0, "%s", r.err);
    run_free(&r);
    cr_assert_eq(stat(path("flag/data.mdb"), &st), 0);
}

/* ================================================================ entities */

Test(cli, put_get_human_and_json)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"Hello\"", "pinned=true", "n=3", "x=1.5", "f=1.0",
            "none=null", "neg=-7", "arr=[1,\"two\",[3]]", "obj={\"a\":1,\"b\":[true]}"));
    json_t *g = OKJ(d, "get", "notes", "n1");
    cr_assert_str_eq(json_string_value(json_object_get(g, "coll")), "notes");
    cr_assert_str_eq(json_string_value(json_object_get(g, "id")), "n1");
    json_t *fields = json_object_get(g, "fields");
    cr_assert_eq(json_object_size(fields), 9);
    json_t *title = json_object_get(fields, "title");
    cr_assert_str_eq(json_string_value(json_object_get(title, "value")), "Hello");
    cr_assert_str_eq(json_string_value(json_object_get(title, "kind")), "register");
    cr_assert(json_is_false(json_object_get(title, "conflict")));
    cr_assert_eq(json_integer_value(json_object_get(title, "heads")), 1);
    cr_assert(is_hex(json_string_value(json_object_get(title, "hlc")), 16));
    cr_assert(is_hex(json_string_value(json_object_get(title, "device")), 16));
    const char *when = json_string_value(json_object_get(title, "time"));
    cr_assert(when && strlen(when) == 24 && when[10] == 'T' && when[23] == 'Z', "time %s", when);
    cr_assert(json_is_true(json_object_get(json_object_get(fields, "pinned"), "value")));
    json_t *n = json_object_get(json_object_get(fields, "n"), "value");
    cr_assert(json_is_integer(n) && json_integer_value(n) == 3);
    json_t *x = json_object_get(json_object_get(fields, "x"), "value");
    cr_assert(json_is_real(x) && json_real_value(x) == 1.5);
    json_t *f = json_object_get(json_object_get(fields, "f"), "value");
    cr_assert(json_is_real(f) && json_real_value(f) == 1.0, "1.0 must stay a float");
    cr_assert(json_is_null(json_object_get(json_object_get(fields, "none"), "value")));
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(fields, "neg"), "value")), -7);
    json_t *want = parse("[1,\"two\",[3]]");
    cr_assert(json_equal(json_object_get(json_object_get(fields, "arr"), "value"), want));
    json_decref(want);
    want = parse("{\"a\":1,\"b\":[true]}");
    cr_assert(json_equal(json_object_get(json_object_get(fields, "obj"), "value"), want));
    json_decref(want);
    json_decref(g);

    char *out = OK(d, "get", "notes", "n1");
    cr_assert_not_null(strstr(out, "title = \"Hello\"\n"), "%s", out);
    cr_assert_not_null(strstr(out, "pinned = true\n"), "%s", out);
    cr_assert_not_null(strstr(out, "f = 1.0\n"), "%s", out);
    cr_assert_not_null(strstr(out, "x = 1.5\n"), "%s", out);
    free(out);

    /* A later put overwrites one field, leaves the others. */
    free(OK(d, "put", "notes", "n1", "title=\"Bye\""));
    g = OKJ(d, "get", "notes", "n1");
    fields = json_object_get(g, "fields");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(fields, "title"), "value")),
                     "Bye");
    cr_assert_eq(json_object_size(fields), 9);
    json_decref(g);
}

Test(cli, put_is_all_or_nothing)
{
    const char *d = store("s");
    char longname[400];
    memset(longname, 'f', 300);
    strcpy(longname + 300, "=1");
    /* The second field's name is over WEFT_NAME_MAX: the store refuses it and
     * the first field must not be written either. */
    run_result r = run(NULL, d, "put", "notes", "n1", "title=\"x\"", longname, NULL);
    expect_fail(&r, 1, "put notes n1");
    r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, "no such entity");
    json_t *log = OKJ(d, "log");
    cr_assert_eq(json_array_size(json_object_get(log, "ops")), 0);
    json_decref(log);
}

Test(cli, value_mapping_round_trips)
{
    const char *d = store("s");
    static const char *const values[] = {
        "{\"$bin\":\"AAECAwT/\"}",
        "{\"$bin\":\"\"}",
        "{\"$u64\":\"18446744073709551615\"}",
        "{\"$f64\":\"nan\"}",
        "{\"$f64\":\"-inf\"}",
        "{\"$map\":[[1,\"one\"],[2,\"two\"]]}",
        "{\"$map\":[[\"$bin\",\"not bin\"]]}",
        "{\"$map\":[[[1,2],null],[true,false]]}",
        "9223372036854775807",
        "-9223372036854775808",
        "0.1",
        "1e+300",
        "-0.0",
        "123456789.123456789",
        "\"unicode \\u00e9\\u4e2d \\ud83d\\ude00\"",
        "\"nul \\u0000 inside\"",
        "{\"nested\":{\"deeper\":[{\"k\":{\"$bin\":\"/w==\"}}]}}",
        "[]",
        "{}",
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char arg[256];
        snprintf(arg, sizeof arg, "v=%s", values[i]);
        free(OK(d, "put", "vals", "e", arg));
        json_t *g = OKJ(d, "get", "vals", "e");
        json_t *got = json_object_get(json_object_get(json_object_get(g, "fields"), "v"), "value");
        json_t *want = json_loads(values[i], JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        cr_assert_not_null(want);
        char *gs = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        cr_assert(json_equal(got, want), "value %s came back as %s", values[i], gs);
        if (json_is_real(want)) { /* bit-exact, including the sign of zero */
            double a = json_real_value(want), b = json_real_value(got);
            cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "%s came back as %s", values[i], gs);
        }
        free(gs);
        json_decref(want);
        json_decref(g);
    }
    /* A small $u64 is just an integer. */
    free(OK(d, "put", "vals", "e", "v={\"$u64\":\"5\"}"));
    json_t *g = OKJ(d, "get", "vals", "e");
    cr_assert_eq(json_integer_value(
                     json_object_get(json_object_get(json_object_get(g, "fields"), "v"), "value")),
                 5);
    json_decref(g);
}

Test(cli, ls_human_json_and_paging)
{
    const char *d = store("s");
    enum { N = 259 }; /* "many" gets 256 entities: exactly two of ls's 128-entity pages */
    free(OK(d, "put", "other", "x", "a=1"));
    for (int i = 0; i < 3; i++) {
        char id[16], v[32];
        snprintf(id, sizeof id, "n%d", i);
        snprintf(v, sizeof v, "title=\"t%d\"", i);
        free(OK(d, "put", "notes", id, v, "i=1"));
    }
    json_t *l = OKJ(d, "ls", "notes");
    cr_assert_str_eq(json_string_value(json_object_get(l, "coll")), "notes");
    json_t *ents = json_object_get(l, "entities");
    cr_assert_eq(json_array_size(ents), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(ents, i);
        char id[16], t[16];
        snprintf(id, sizeof id, "n%zu", i);
        snprintf(t, sizeof t, "t%zu", i);
        cr_assert_str_eq(json_string_value(json_object_get(e, "id")), id);
        json_t *fields = json_object_get(e, "fields");
        cr_assert_eq(json_object_size(fields), 2);
        cr_assert_str_eq(
            json_string_value(json_object_get(json_object_get(fields, "title"), "value")), t);
    }
    json_decref(l);
    char *out = OK(d, "ls", "notes");
    cr_assert_str_eq(out, "n0\n  i = 1\n  title = \"t0\"\n"
                          "n1\n  i = 1\n  title = \"t1\"\n"
                          "n2\n  i = 1\n  title = \"t2\"\n");
    free(out);
    l = OKJ(d, "ls", "empty");
    cr_assert_eq(json_array_size(json_object_get(l, "entities")), 0);
    json_decref(l);

    for (int i = 3; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%03d", i);
        free(OK(d, "put", "many", id, "v=1"));
    }
    l = OKJ(d, "ls", "many");
    ents = json_object_get(l, "entities");
    cr_assert_eq(json_array_size(ents), N - 3);
    for (size_t i = 1; i < json_array_size(ents); i++) {
        cr_assert(strcmp(json_string_value(json_object_get(json_array_get(ents, i - 1), "id")),
                         json_string_value(json_object_get(json_array_get(ents, i), "id"))) < 0);
    }
    json_decref(l);
}

Test(cli, del)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    free(OK(d, "put", "notes", "n2", "title=\"b\""));
    free(OK(d, "del", "notes", "n1"));
    run_result r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, "no such entity");
    r = run(NULL, d, "del", "notes", "n1", NULL);
    expect_fail(&r, 1, "no such entity");
    json_t *l = OKJ(d, "ls", "notes");
    json_t *ents = json_object_get(l, "entities");
    cr_assert_eq(json_array_size(ents), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ents, 0), "id")), "n2");
    json_decref(l);
    /* Writing after the delete brings the entity back with the new field only. */
    free(OK(d, "put", "notes", "n1", "body=\"new\""));
    json_t *g = OKJ(d, "get", "notes", "n1");
    cr_assert_eq(json_object_size(json_object_get(g, "fields")), 1);
    json_decref(g);
}

Test(cli, inc_counter)
{
    const char *d = store("s");
    free(OK(d, "inc", "notes", "n1", "views"));
    free(OK(d, "inc", "notes", "n1", "views", "5"));
    free(OK(d, "inc", "notes", "n1", "views", "-2"));
    json_t *g = OKJ(d, "get", "notes", "n1");
    json_t *v = json_object_get(json_object_get(g, "fields"), "views");
    cr_assert_str_eq(json_string_value(json_object_get(v, "kind")), "counter");
    cr_assert_eq(json_integer_value(json_object_get(v, "value")), 4);
    json_decref(g);
    char *out = OK(d, "get", "notes", "n1");
    cr_assert_str_eq(out, "views = 4   (counter)\n");
    free(out);
}

Test(cli, tag_add_rm)
{
    const char *d = store("s");
    free(OK(d, "tag", "add", "notes", "n1", "tags", "home"));
    free(OK(d, "tag", "add", "notes", "n1", "tags", "\"work\""));
    free(OK(d, "tag", "add", "notes", "n1", "tags", "42"));
    free(OK(d, "tag", "add", "notes", "n1", "tags", "not json {"));
    json_t *g = OKJ(d, "get", "notes", "n1");
    json_t *t = json_object_get(json_object_get(g, "fields"), "tags");
    cr_assert_str_eq(json_string_value(json_object_get(t, "kind")), "set");
    json_t *els = json_object_get(t, "value");
    cr_assert(json_is_array(els));
    cr_assert_eq(json_array_size(els), 4);
    int home = 0, work = 0, n42 = 0, text = 0;
    size_t i;
    json_t *e;
    json_array_foreach(els, i, e)
    {
        home += json_is_string(e) && strcmp(json_string_value(e), "home") == 0;
        work += json_is_string(e) && strcmp(json_string_value(e), "work") == 0;
        text += json_is_string(e) && strcmp(json_string_value(e), "not json {") == 0;
        n42 += json_is_integer(e) && json_integer_value(e) == 42;
    }
    cr_assert(home == 1 && work == 1 && n42 == 1 && text == 1);
    json_decref(g);
    free(OK(d, "tag", "rm", "notes", "n1", "tags", "home"));
    free(OK(d, "tag", "rm", "notes", "n1", "tags", "42"));
    g = OKJ(d, "get", "notes", "n1");
    els = json_object_get(json_object_get(json_object_get(g, "fields"), "tags"), "value");
    cr_assert_eq(json_array_size(els), 2);
    json_decref(g);
    run_result r = run(NULL, d, "tag", "rm", "notes", "n1", "tags", "absent", NULL);
    expect_fail(&r, 1, "not in the set");
}

Test(cli, resolve_not_in_conflict_and_get_missing)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    run_result r = run(NULL, d, "resolve", "notes", "n1", "title=\"b\"", NULL);
    expect_fail(&r, 1, "not in conflict");
    r = run(NULL, d, "resolve", "notes", "n9", "title=\"b\"", NULL);
    expect_fail(&r, 1, "not in conflict");
    r = run(NULL, d, "get", "notes", "n9", NULL);
    expect_fail(&r, 1, "no such entity");
    json_t *g = OKJ(d, "get", "notes", "n1");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(g, "fields"), "title"), "value")),
                     "a");
    json_decref(g);
    char *out = OK(d, "conflicts");
    cr_assert_str_eq(out, "no conflicts\n");
    free(out);
}

/* ================================================================ log, status */

Test(cli, log_oldest_first)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    free(OK(d, "inc", "notes", "n1", "views", "2"));
    free(OK(d, "tag", "add", "notes", "n1", "tags", "x"));
    free(OK(d, "tag", "rm", "notes", "n1", "tags", "x"));
    free(OK(d, "del", "notes", "n1"));
    json_t *l = OKJ(d, "log");
    json_t *ops = json_object_get(l, "ops");
    static const char *const kinds[] = {"set", "inc", "add", "rem", "del"};
    cr_assert_eq(json_array_size(ops), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *op = json_array_get(ops, i);
        cr_assert_str_eq(json_string_value(json_object_get(op, "kind")), kinds[i]);
        cr_assert_str_eq(json_string_value(json_object_get(op, "coll")), "notes");
        cr_assert_str_eq(json_string_value(json_object_get(op, "entity")), "n1");
        cr_assert(is_hex(json_string_value(json_object_get(op, "hlc")), 16));
        cr_assert(is_hex(json_string_value(json_object_get(op, "dprev")), 16));
        cr_assert(json_is_array(json_object_get(op, "prev")));
        if (i > 0) {
            const char *a = json_string_value(json_object_get(json_array_get(ops, i - 1), "hlc"));
            const char *b = json_string_value(json_object_get(op, "hlc"));
            cr_assert(strcmp(a, b) < 0, "log not oldest first");
            cr_assert_str_eq(json_string_value(json_object_get(op, "dprev")), a);
        }
    }
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ops, 0), "value")), "a");
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(ops, 1), "value")), 2);
    cr_assert(json_is_null(json_object_get(json_array_get(ops, 4), "value")));
    json_t *rem_prev = json_object_get(json_array_get(ops, 3), "prev");
    cr_assert_eq(json_array_size(rem_prev), 1, "rem names the add it saw");
    json_decref(l);
    char *out = OK(d, "log");
    int lines = 0;
    for (char *p = out; *p; p++) {
        lines += *p == '\n';
    }
    cr_assert_eq(lines, 5, "%s", out);
    cr_assert_not_null(strstr(out, "set notes n1 title = \"a\""), "%s", out);
    cr_assert_not_null(strstr(out, "del notes n1"), "%s", out);
    free(out);
}

Test(cli, status)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\"", "b=1"));
    json_t *s = OKJ(d, "status");
    const char *dev = json_string_value(json_object_get(s, "device"));
    cr_assert(is_hex(dev, 16));
    cr_assert(is_hex(json_string_value(json_object_get(s, "store_id")), 32));
    cr_assert(is_hex(json_string_value(json_object_get(s, "public_key")), 64));
    cr_assert_eq(json_integer_value(json_object_get(s, "ops")), 2);
    cr_assert_eq(json_integer_value(json_object_get(s, "conflicts")), 0);
    cr_assert(json_integer_value(json_object_get(s, "schema")) > 0);
    cr_assert(json_integer_value(json_object_get(s, "map_bytes")) > 0);
    cr_assert(json_integer_value(json_object_get(s, "used_bytes")) > 0);
    const char *last = json_string_value(json_object_get(s, "last_hlc"));
    cr_assert(is_hex(last, 16));
    json_t *vv = json_object_get(s, "vv");
    cr_assert_eq(json_object_size(vv), 1);
    cr_assert_str_eq(json_string_value(json_object_get(vv, dev)), last);
    json_decref(s);
    char *out = OK(d, "status");
    cr_assert_not_null(strstr(out, "device      "), "%s", out);
    cr_assert_not_null(strstr(out, "ops         2\n"), "%s", out);
    free(out);
}

/* ================================================================ conflicts, export/import */

/* Copy @p from's export into @p to. */
static void sync_one(const char *from, const char *to, const char *file)
{
    run_opts o = {NULL, path(file), NULL, RLIM_INFINITY};
    free(ok_run(&o, from, "export", NULL));
    run_opts i = {path(file), NULL, NULL, RLIM_INFINITY};
    char *out = ok_run(&i, to, "import", NULL);
    cr_assert_not_null(strstr(out, "imported "), "%s", out);
    free(out);
}

/* Two stores that wrote notes/n1 title concurrently, then exchanged ops. */
static void make_conflict(const char **a, const char **b)
{
    *a = store("A");
    *b = store("B");
    free(OK(*a, "put", "notes", "n1", "title=\"from A\"", "body=\"shared\""));
    sync_one(*a, *b, "a0.ops");
    free(OK(*a, "put", "notes", "n1", "title=\"A2\""));
    free(OK(*b, "put", "notes", "n1", "title=\"B2\""));
    free(OK(*b, "inc", "notes", "n1", "views", "2"));
    free(OK(*a, "inc", "notes", "n1", "views"));
    sync_one(*a, *b, "a.ops");
    sync_one(*b, *a, "b.ops");
}

static char *conflicts_text(const char *d)
{
    return ok_run(NULL, d, "conflicts", "--json", NULL);
}

Test(cli, conflicts_listed_and_resolved)
{
    const char *a, *b;
    make_conflict(&a, &b);
    json_t *sa = OKJ(a, "status"), *sb = OKJ(b, "status");
    const char *deva = json_string_value(json_object_get(sa, "device"));
    const char *devb = json_string_value(json_object_get(sb, "device"));
    cr_assert_str_neq(deva, devb);

    json_t *c = OKJ(a, "conflicts");
    json_t *list = json_object_get(c, "conflicts");
    cr_assert_eq(json_array_size(list), 1, "one field in conflict");
    json_t *c0 = json_array_get(list, 0);
    cr_assert_str_eq(json_string_value(json_object_get(c0, "coll")), "notes");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "id")), "n1");
    cr_assert_str_eq(json_string_value(json_object_get(c0, "field")), "title");
    json_t *heads = json_object_get(c0, "heads");
    cr_assert_eq(json_array_size(heads), 2);
    int seen_a = 0, seen_b = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *h = json_array_get(heads, i);
        const char *v = json_string_value(json_object_get(h, "value"));
        const char *dev = json_string_value(json_object_get(h, "device"));
        cr_assert(is_hex(json_string_value(json_object_get(h, "hlc")), 16));
        const char *when = json_string_value(json_object_get(h, "time"));
        cr_assert(when && strlen(when) == 24 && when[23] == 'Z');
        cr_assert(json_is_integer(json_object_get(h, "counter")));
        if (strcmp(v, "A2") == 0) {
            seen_a = 1;
            cr_assert_str_eq(dev, deva);
        } else if (strcmp(v, "B2") == 0) {
            seen_b = 1;
            cr_assert_str_eq(dev, devb);
        }
    }
    cr_assert(seen_a && seen_b, "both heads listed");
    json_decref(c);

    /* Both replicas agree: same conflicts, same entity, counter merged (1 + 2). */
    char *ca = conflicts_text(a), *cb = conflicts_text(b);
    cr_assert_str_eq(ca, cb);
    free(ca);
    free(cb);
    char *ga = ok_run(NULL, a, "get", "notes", "n1", "--json", NULL);
    char *gb = ok_run(NULL, b, "get", "notes", "n1", "--json", NULL);
    cr_assert_str_eq(ga, gb);
    free(gb);
    json_t *g = parse(ga);
    free(ga);
    json_t *title = json_object_get(json_object_get(g, "fields"), "title");
    cr_assert(json_is_true(json_object_get(title, "conflict")));
    cr_assert_eq(json_integer_value(json_object_get(title, "heads")), 2);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(json_object_get(g, "fields"), "views"), "value")),
                 3);
    json_decref(g);

    char *out = OK(a, "conflicts");
    cr_assert_not_null(strstr(out, "notes n1 title: 2 heads"), "%s", out);
    cr_assert_not_null(strstr(out, "\"A2\""), "%s", out);
    cr_assert_not_null(strstr(out, "\"B2\""), "%s", out);
    cr_assert_not_null(strstr(out, deva), "%s", out);
    cr_assert_not_null(strstr(out, devb), "%s", out);
    free(out);
    out = OK(a, "get", "notes", "n1");
    cr_assert_not_null(strstr(out, "conflict"), "%s", out);
    free(out);
    json_t *st = OKJ(a, "status");
    cr_assert_eq(json_integer_value(json_object_get(st, "conflicts")), 1);
    json_decref(st);

    free(OK(a, "resolve", "notes", "n1", "title=\"merged\""));
    c = OKJ(a, "conflicts");
    cr_assert_eq(json_array_size(json_object_get(c, "conflicts")), 0);
    json_decref(c);
    run_result r = run(NULL, a, "resolve", "notes", "n1", "title=\"again\"", NULL);
    expect_fail(&r, 1, "not in conflict");
    /* B learns the resolution. */
    sync_one(a, b, "a2.ops");
    c = OKJ(b, "conflicts");
    cr_assert_eq(json_array_size(json_object_get(c, "conflicts")), 0);
    json_decref(c);
    g = OKJ(b, "get", "notes", "n1");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(g, "fields"), "title"), "value")),
                     "merged");
    json_decref(g);
    json_decref(sa);
    json_decref(sb);
}

Test(cli, export_import_gives_identical_state)
{
    const char *a, *b;
    make_conflict(&a, &b);
    free(OK(a, "tag", "add", "notes", "n1", "tags", "home"));
    free(OK(a, "tag", "add", "notes", "n1", "tags", "{\"$bin\":\"3q2+7w==\"}"));
    free(OK(a, "put", "notes", "n2", "x=1.25", "big={\"$u64\":\"18446744073709551615\"}"));
    free(OK(a, "put", "notes", "n3", "gone=true"));
    free(OK(a, "del", "notes", "n3"));
    free(OK(a, "put", "other", "o1", "k=[1,{\"$map\":[[1,2]]}]"));

    const char *c = store("C");
    sync_one(a, c, "all.ops");

    static const char *const colls[] = {"notes", "other"};
    for (size_t i = 0; i < 2; i++) {
        char *la = ok_run(NULL, a, "ls", colls[i], "--json", NULL);
        char *lc = ok_run(NULL, c, "ls", colls[i], "--json", NULL);
        cr_assert_str_eq(la, lc);
        free(la);
        free(lc);
    }
    char *ga = ok_run(NULL, a, "get", "notes", "n1", "--json", NULL);
    char *gc = ok_run(NULL, c, "get", "notes", "n1", "--json", NULL);
    cr_assert_str_eq(ga, gc);
    free(ga);
    free(gc);
    char *ca = conflicts_text(a), *cc = conflicts_text(c);
    cr_assert_str_eq(ca, cc);
    free(ca);
    free(cc);
    char *loga = ok_run(NULL, a, "log", "--json", NULL);
    char *logc = ok_run(NULL, c, "log", "--json", NULL);
    cr_assert_str_eq(loga, logc);
    free(loga);
    free(logc);
    json_t *sa = OKJ(a, "status"), *sc = OKJ(c, "status");
    cr_assert(json_equal(json_object_get(sa, "vv"), json_object_get(sc, "vv")),
              "version vectors differ");
    cr_assert(json_equal(json_object_get(sa, "ops"), json_object_get(sc, "ops")));
    cr_assert(json_equal(json_object_get(sa, "conflicts"), json_object_get(sc, "conflicts")));
    json_decref(sa);
    json_decref(sc);

    /* Exporting C gives the same lines as exporting A. */
    run_opts oa = {NULL, path("ea.ops"), NULL, RLIM_INFINITY};
    run_opts oc = {NULL, path("ec.ops"), NULL, RLIM_INFINITY};
    free(ok_run(&oa, a, "export", NULL));
    free(ok_run(&oc, c, "export", NULL));
    char *ea = slurp(path("ea.ops"), NULL), *ec = slurp(path("ec.ops"), NULL);
    cr_assert_str_eq(ea, ec);
    free(ea);
    free(ec);

    /* Importing again changes nothing (every op already present). */
    run_opts in = {path("all.ops"), NULL, NULL, RLIM_INFINITY};
    char *out = ok_run(&in, c, "import", NULL);
    cr_assert_not_null(strstr(out, "imported 0 ops"), "%s", out);
    free(out);
    /* Concatenated exports import too. */
    const char *d = store("D");
    char *cat = malloc(1 << 20);
    char *x = slurp(path("a0.ops"), NULL), *y = slurp(path("all.ops"), NULL);
    snprintf(cat, 1 << 20, "%s\n%s", x, y);
    write_file(path("cat.ops"), cat, strlen(cat));
    free(x);
    free(y);
    free(cat);
    run_opts icat = {path("cat.ops"), NULL, NULL, RLIM_INFINITY};
    free(ok_run(&icat, d, "import", NULL));
    char *ld = ok_run(NULL, d, "log", "--json", NULL);
    char *la = ok_run(NULL, a, "log", "--json", NULL);
    cr_assert_str_eq(ld, la);
    free(ld);
    free(la);
}

Test(cli, export_line_format)
{
    const char *a = store("A");
    free(OK(a, "put", "notes", "n1", "title=\"Hello\""));
    free(OK(a, "del", "notes", "n1"));
    char *out = OK(a, "export");
    char *nl = strchr(out, '\n');
    cr_assert_not_null(nl);
    *nl = '\0';
    json_t *l1 = parse(out);
    cr_assert(is_hex(json_string_value(json_object_get(l1, "hlc")), 16));
    cr_assert(is_hex(json_string_value(json_object_get(l1, "device")), 16));
    cr_assert_str_eq(json_string_value(json_object_get(l1, "dprev")), "0000000000000000");
    cr_assert(json_is_string(json_object_get(l1, "payload")));
    cr_assert_str_eq(json_string_value(json_object_get(l1, "kind")), "set");
    cr_assert_str_eq(json_string_value(json_object_get(l1, "coll")), "notes");
    cr_assert_str_eq(json_string_value(json_object_get(l1, "entity")), "n1");
    cr_assert_str_eq(json_string_value(json_object_get(l1, "field")), "title");
    cr_assert_str_eq(json_string_value(json_object_get(l1, "value")), "Hello");
    json_t *l2 = parse(nl + 1);
    cr_assert_str_eq(json_string_value(json_object_get(l2, "kind")), "del");
    cr_assert_str_eq(json_string_value(json_object_get(l2, "dprev")),
                     json_string_value(json_object_get(l1, "hlc")));
    json_decref(l1);
    json_decref(l2);
    free(out);
}

/* Import of @p text into a store holding some ops must fail naming @p needle
 * and leave the store exactly as it was. */
static void import_bad(const char *d, const char *text, const char *needle)
{
    char *before = ok_run(NULL, d, "log", "--json", NULL);
    write_file(path("bad.ops"), text, strlen(text));
    run_opts o = {path("bad.ops"), NULL, NULL, RLIM_INFINITY};
    run_result r = run(&o, d, "import", NULL);
    expect_fail(&r, 1, needle);
    char *after = ok_run(NULL, d, "log", "--json", NULL);
    cr_assert_str_eq(before, after, "a failed import changed the store");
    free(before);
    free(after);
}

Test(cli, import_bad_line_leaves_store_unchanged)
{
    const char *a = store("A");
    free(OK(a, "put", "notes", "n1", "title=\"one\""));
    free(OK(a, "put", "notes", "n2", "title=\"two\""));
    free(OK(a, "put", "notes", "n3", "title=\"three\""));
    char *exp = OK(a, "export");
    char *l1 = exp, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    l2[-1] = l3[-1] = '\0';
    cr_assert(strlen(l3) > 0);
    json_t *j2 = parse(l2);

    const char *c = store("C"); /* a fresh store: after a failure it must hold nothing */
    const char *d = store("D");
    free(OK(d, "put", "mine", "m1", "v=1")); /* one holding ops of its own */
    char text[65536];
    const char *targets[] = {c, d};
    for (size_t t = 0; t < 2; t++) {
        const char *s = targets[t];
        snprintf(text, sizeof text, "%s\n{not json\n%s\n", l1, l3);
        import_bad(s, text, "line 2: malformed json");

        json_t *m = json_deep_copy(j2);
        json_object_del(m, "payload");
        char *ms = json_dumps(m, JSON_COMPACT);
        snprintf(text, sizeof text, "%s\n%s\n%s\n", l1, ms, l3);
        import_bad(s, text, "line 2: missing \"payload\"");
        free(ms);
        json_decref(m);

        m = json_deep_copy(j2);
        json_object_set_new(m, "payload", json_string("***not base64***"));
        ms = json_dumps(m, JSON_COMPACT);
        snprintf(text, sizeof text, "%s\n%s\n%s\n", l1, ms, l3);
        import_bad(s, text, "line 2: \"payload\" is not base64");
        free(ms);
        json_decref(m);

        m = json_deep_copy(j2);
        json_object_set_new(m, "hlc", json_string("xyz"));
        ms = json_dumps(m, JSON_COMPACT);
        snprintf(text, sizeof text, "%s\n%s\n%s\n", l1, ms, l3);
        import_bad(s, text, "line 2: \"hlc\" is not 16 hex digits");
        free(ms);
        json_decref(m);

        m = json_deep_copy(j2);
        json_object_set_new(m, "device", json_integer(5));
        ms = json_dumps(m, JSON_COMPACT);
        snprintf(text, sizeof text, "%s\n%s\n%s\n", l1, ms, l3);
        import_bad(s, text, "line 2: \"device\" is not 16 hex digits");
        free(ms);
        json_decref(m);

        snprintf(text, sizeof text, "%s\n[1,2]\n%s\n", l1, l3);
        import_bad(s, text, "line 2: not a json object");

        /* A valid-looking op whose payload is garbage: the store refuses it. */
        m = json_deep_copy(j2);
        json_object_set_new(m, "payload", json_string("AAAA"));
        ms = json_dumps(m, JSON_COMPACT);
        snprintf(text, sizeof text, "%s\n%s\n%s\n", l1, ms, l3);
        import_bad(s, text, "line 2");
        free(ms);
        json_decref(m);

        /* A gap: line 3 without line 2 (its device predecessor). */
        snprintf(text, sizeof text, "%s\n%s\n", l1, l3);
        import_bad(s, text, "line 2");
    }
    json_t *log = OKJ(c, "log");
    cr_assert_eq(json_array_size(json_object_get(log, "ops")), 0);
    json_decref(log);

    /* A line longer than the limit is refused by number. */
    size_t big = (4u << 20) + 10;
    char *huge = malloc(big + 2);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big] = '\n';
    huge[big + 1] = '\0';
    import_bad(c, huge, "line 1: longer than");
    free(huge);
    json_decref(j2);
    free(exp);
}

/* ================================================================ damaged stores */

Test(cli, store_of_another_version)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 32), 0);
    cr_assert_eq(mdb_env_open(env, d, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    unsigned char v[4] = {0, 0, 999 >> 8, 999 & 255};
    MDB_val key = {6, (void *)"schema"}, val = {4, v};
    cr_assert_eq(mdb_put(txn, dbi, &key, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    run_result r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, "version");
    r = run(NULL, d, "status", NULL);
    expect_fail(&r, 1, "version");
    r = run(NULL, d, "init", NULL);
    expect_fail(&r, 1, "version");
}

Test(cli, corrupt_file)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    char garbage[65536];
    for (size_t i = 0; i < sizeof garbage; i++) {
        garbage[i] = (char)(i * 7 + 13);
    }
    write_file(path("s/data.mdb"), garbage, sizeof garbage);
    run_result r = run(NULL, d, "get", "notes", "n1", NULL);
    expect_fail(&r, 1, NULL);
    r = run(NULL, d, "log", NULL);
    expect_fail(&r, 1, NULL);
    r = run(NULL, d, "put", "notes", "n1", "title=\"b\"", NULL);
    expect_fail(&r, 1, NULL);
}

Test(cli, full_disk)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    char *before = ok_run(NULL, d, "log", "--json", NULL);
    struct stat st;
    cr_assert_eq(stat(path("s/data.mdb"), &st), 0);
    /* 600 KiB of values need pages past the file's end: the write fails.
     * (Six fields: one argument may not exceed 128 KiB.) */
    enum { FIELDS = 6, EACH = 100 * 1024 };
    char *args[FIELDS];
    for (int i = 0; i < FIELDS; i++) {
        args[i] = malloc(EACH + 16);
        int h = sprintf(args[i], "body%d=\"", i);
        memset(args[i] + h, 'x', EACH);
        strcpy(args[i] + h + EACH, "\"");
    }
    run_opts o = {NULL, NULL, NULL, (rlim_t)st.st_size};
    run_result r = run(&o, d, "put", "notes", "n2", "title=\"b\"", args[0], args[1], args[2],
                       args[3], args[4], args[5], NULL);
    cr_assert_neq(r.status, 0, "put past RLIMIT_FSIZE succeeded");
    expect_fail(&r, r.status, NULL);
    for (int i = 0; i < FIELDS; i++) {
        free(args[i]);
    }
    /* The store still opens, holding exactly what it held. */
    r = run(NULL, d, "get", "notes", "n2", NULL);
    expect_fail(&r, 1, "no such entity");
    char *after = ok_run(NULL, d, "log", "--json", NULL);
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
    free(OK(d, "put", "notes", "n3", "ok=true"));
}

Test(cli, export_to_full_output_fails)
{
    const char *d = store("s");
    free(OK(d, "put", "notes", "n1", "title=\"a\""));
    run_opts o = {NULL, "/dev/full", NULL, RLIM_INFINITY};
    run_result r = run(&o, d, "export", NULL);
    expect_fail(&r, 1, "write output");
}
