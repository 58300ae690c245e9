/* net_helpers.c - the harness of the tests/net suites (net_helpers.h): the
 * built `weft` binary run in the foreground and background on loopback, per
 * test directories, stores, trust, and state comparison.
 *
 * Moved unchanged from test_net.c so that test_hostile.c can share it.
 * Ports come from binding port 0 on 127.0.0.1 and releasing it. Large stores
 * are filled through the public API in the test process (one transaction),
 * the rest through the command.
 *
 * Invariants: those of net_helpers.h.
 * Thread-safety: none; criterion runs each test in its own process.
 */
#include "net_helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <weft/weft.h>

#include "tests/tmpdir.h"

extern char **environ;

char root[256];

bgproc procs[PROCS_MAX];
int nprocs;

void rm_rf(const char *p)
{
    rm_tree(p);
}

void net_setup(void)
{
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/weft-net-XXXXXX", base);
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

void net_teardown(void)
{
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].pid > 0) {
            kill(procs[i].pid, SIGKILL);
            waitpid(procs[i].pid, NULL, 0);
            procs[i].pid = 0;
        }
    }
    if (!getenv("WEFT_TEST_KEEP")) {
        rm_rf(root);
    }
}

/* A path in this test's directory; kept for the whole test (ring of 64). */
const char *path(const char *name)
{
    static char bufs[64][512];
    static int next;
    char *b = bufs[next++ % 64];
    snprintf(b, 512, "%s/%s", root, name);
    return b;
}

char *slurp(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        return strdup("");
    }
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nap_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Spawn the binary: `weft --dir DIR args...` with stdin /dev/null (or @p in),
 * stdout to @p out, stderr to @p err, WEFT_CLOCK_OFFSET_MS=@p offset if not
 * NULL. */
pid_t spawn(const char *offset, const char *in, const char *out, const char *err, char **args)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in ? in : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (offset) {
        setenv("WEFT_CLOCK_OFFSET_MS", offset, 1);
    } else {
        unsetenv("WEFT_CLOCK_OFFSET_MS");
    }
    pid_t pid;
    int rc = posix_spawn(&pid, WEFT_BIN, &fa, NULL, args, environ);
    unsetenv("WEFT_CLOCK_OFFSET_MS");
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "posix_spawn %s: %s", WEFT_BIN, strerror(rc));
    return pid;
}

int collect_args(char **args, const char *dir, va_list ap)
{
    int n = 0;
    args[n++] = (char *)WEFT_BIN;
    args[n++] = (char *)"--dir";
    args[n++] = (char *)dir;
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < ARGS_MAX - 1) {
        args[n++] = (char *)a;
    }
    args[n] = NULL;
    return n;
}

int wait_exit(pid_t pid, long timeout_ms)
{
    int ws = 0;
    uint64_t t0 = now_ms();
    for (;;) {
        pid_t w = waitpid(pid, &ws, WNOHANG);
        if (w == pid) {
            break;
        }
        if ((long)(now_ms() - t0) > timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        nap_ms(2);
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* Run `weft --dir DIR args... NULL` in the foreground, clock shifted by
 * @p offset (NULL: not shifted). */
run_result runo(const char *offset, const char *dir, ...)
{
    char *args[ARGS_MAX];
    va_list ap;
    va_start(ap, dir);
    collect_args(args, dir, ap);
    va_end(ap);
    const char *o = path(".out"), *e = path(".err");
    pid_t pid = spawn(offset, NULL, o, e, args);
    run_result r;
    r.status = wait_exit(pid, RUN_TIMEOUT_S * 1000L);
    cr_assert_neq(r.status, -1, "weft %s %s did not finish within %d s", args[3],
                  args[4] ? args[4] : "", RUN_TIMEOUT_S);
    r.out = slurp(o);
    r.err = slurp(e);
    return r;
}

void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* Expect exit 0; return stdout (caller frees). */
char *ok_check(run_result r, const char *what)
{
    cr_assert_eq(r.status, 0, "weft %s exited %d: %s", what, r.status, r.err);
    free(r.err);
    return r.out;
}

json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "not JSON (%s): %s", e.text, text);
    return j;
}

json_t *okj(char *out)
{
    json_t *j = parse(out);
    free(out);
    return j;
}

/* Wait until the log of @p slot contains @p needle; fail after @p ms. */
void wait_log(int slot, const char *needle, long ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        char *log = slurp(procs[slot].log);
        int found = strstr(log, needle) != NULL;
        if (found) {
            free(log);
            return;
        }
        int st;
        pid_t w = waitpid(procs[slot].pid, &st, WNOHANG);
        if (w == procs[slot].pid) {
            procs[slot].pid = 0;
            cr_assert_fail("process %d exited before logging '%s': %s", slot, needle, log);
        }
        if ((long)(now_ms() - t0) > ms) {
            cr_assert_fail("no '%s' in the log within %ld ms: %s", needle, ms, log);
        }
        free(log);
        nap_ms(20);
    }
}

/* Send @p sig to a background process and wait for it; its exit status. */
int stop(int slot, int sig)
{
    cr_assert_gt(procs[slot].pid, 0, "process %d is not running", slot);
    kill(procs[slot].pid, sig);
    int st = wait_exit(procs[slot].pid, 20000);
    procs[slot].pid = 0;
    return st;
}

int alive(int slot)
{
    return procs[slot].pid > 0 && waitpid(procs[slot].pid, NULL, WNOHANG) == 0;
}

/* A free TCP port on 127.0.0.1 (bound, read, released). */
int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

const char *endpoint(void)
{
    static char bufs[8][64];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 64, "tcp://127.0.0.1:%d", free_port());
    return b;
}

/* A path in this test's directory that is never reused (16 per test). */
const char *kpath(const char *name)
{
    static char bufs[16][512];
    static int next;
    cr_assert_lt(next, 16, "too many kept paths");
    char *b = bufs[next++];
    snprintf(b, 512, "%s/%s", root, name);
    return b;
}

/* Create a store named @p name (clock shifted by @p offset); its path. */
const char *store(const char *name, const char *offset)
{
    const char *d = kpath(name);
    free(OKO(offset, d, "init"));
    return d;
}

/* The card of store @p dir (with @p addr when not NULL); caller frees. */
char *card(const char *dir, const char *addr)
{
    char *out = addr ? OK(dir, "id", "--addr", addr) : OK(dir, "id");
    out[strcspn(out, "\n")] = '\0';
    cr_assert_eq(strncmp(out, "weft1:", 6), 0, "not a card: %s", out);
    return out;
}

/* Make @p a trust @p b under @p bname (at @p baddr, as a relay if @p relay). */
void trust(const char *a, const char *bname, const char *b, const char *baddr, int relay)
{
    char *c = card(b, NULL);
    if (baddr && relay) {
        free(OK(a, "peer", "add", bname, c, "--addr", baddr, "--relay"));
    } else if (baddr) {
        free(OK(a, "peer", "add", bname, c, "--addr", baddr));
    } else if (relay) {
        free(OK(a, "peer", "add", bname, c, "--relay"));
    } else {
        free(OK(a, "peer", "add", bname, c));
    }
    free(c);
}

/* `weft serve` on @p dir listening on @p ep, waited for until it logs. */
int serve(const char *name, const char *offset, const char *dir, const char *ep, int relay)
{
    int slot = relay ? bg(name, offset, dir, "serve", "--listen", ep, "--relay", NULL)
                     : bg(name, offset, dir, "serve", "--listen", ep, NULL);
    wait_log(slot, "serving", 10000);
    return slot;
}

/* The replica's visible state as one comparable string: notes, conflicts,
 * version vector. Caller frees. */
char *state(const char *dir)
{
    json_t *ls = OKJ(dir, "ls", "notes");
    json_t *cf = OKJ(dir, "conflicts");
    json_t *st = OKJ(dir, "status");
    json_t *all =
        json_pack("{s:o,s:o,s:O}", "ls", ls, "conflicts", cf, "vv", json_object_get(st, "vv"));
    json_decref(st);
    char *s = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(all);
    return s;
}

void same_state(const char *a, const char *b)
{
    char *sa = state(a), *sb = state(b);
    cr_assert_str_eq(sa, sb, "replicas differ:\n%s\n%s", sa, sb);
    free(sa);
    free(sb);
}

json_int_t status_int(const char *dir, const char *key)
{
    json_t *st = OKJ(dir, "status");
    json_int_t v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

/* The peer named @p name in `peer ls --json` of @p dir (caller decrefs). */
json_t *peer_of(const char *dir, const char *name)
{
    json_t *pl = OKJ(dir, "peer", "ls");
    json_t *peers = json_object_get(pl, "peers"), *p;
    size_t i;
    json_array_foreach(peers, i, p)
    {
        if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0) {
            json_incref(p);
            json_decref(pl);
            return p;
        }
    }
    cr_assert_fail("no peer %s in %s", name, dir);
    return NULL;
}

static int first_payload(const weft_op *op, void *user)
{
    *(size_t *)user = op->payload.len;
    return 1; /* the first op is enough */
}

/* Write @p n ops (entities big-<i> of collection bulk, field v, a string
 * padded so that each payload is exactly @p payload bytes) through the API. */
void fill_sized(const char *dir, int n, size_t payload)
{
    /* SET [0, "bulk", "big-NNNNNN", "v", value, bin(no prev)]: 22 bytes
     * besides the value (crdt/op.c), a str of 1 header byte up to 31 bytes
     * and of 2 up to 255. */
    enum { FIXED = 22 };
    cr_assert(n >= 0 && n <= 1000000, "%d ops: entity ids have 6 digits", n);
    cr_assert(payload >= FIXED + 1 + 10 && payload <= FIXED + 2 + 255, "payload %zu", payload);
    size_t vlen = payload - FIXED - 1 <= 31 ? payload - FIXED - 1 : payload - FIXED - 2;
    weft_store *s = NULL;
    cr_assert_eq(weft_store_open(dir, NULL, &s), 0, "%s", weft_last_error());
    weft_txn *t = NULL;
    cr_assert_eq(weft_txn_begin(s, 0, &t), 0);
    char id[32], val[256];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "big-%06d", i);
        int k = snprintf(val, sizeof val, "op %06d ", i);
        memset(val + k, '.', vlen - (size_t)k);
        val[vlen] = 0;
        cr_assert_eq(weft_set_str(t, "bulk", id, "v", val), 0, "%s", weft_last_error());
    }
    cr_assert_eq(weft_txn_commit(&t), 0, "%s", weft_last_error());
    if (n > 0) { /* every payload has the size of the first (fixed widths) */
        size_t got = 0;
        cr_assert_eq(weft_txn_begin(s, WEFT_TXN_RDONLY, &t), 0);
        cr_assert_geq(weft_ops_since(t, NULL, first_payload, &got), 0);
        weft_txn_abort(&t);
        cr_assert_eq(got, payload, "fill wrote %zu-byte payloads, not %zu (op encoding changed?)",
                     got, payload);
    }
    weft_store_close(&s);
}

void fill(const char *dir, int n)
{
    fill_sized(dir, n, FILL_PAYLOAD);
}

/* Ops held by a store (read through the API: fast enough to poll). */
uint64_t ops_of(const char *dir)
{
    weft_store *s = NULL;
    if (weft_store_open(dir, NULL, &s) != 0) {
        return 0;
    }
    weft_info info;
    uint64_t n = weft_store_info(s, &info) == 0 ? info.ops : 0;
    weft_store_close(&s);
    return n;
}

/* Wait until @p dir holds more than @p above ops; the count (0 on timeout). */
uint64_t wait_ops_above(const char *dir, uint64_t above, long ms)
{
    uint64_t t0 = now_ms();
    while ((long)(now_ms() - t0) < ms) {
        uint64_t n = ops_of(dir);
        if (n > above) {
            return n;
        }
        nap_ms(1);
    }
    return 0;
}

/* Check the log of @p dir: each device's ops form one unbroken chain (first
 * dprev 0, each next dprev the previous hlc) ending at the device's vv entry.
 * Returns the number of ops. */
size_t check_chains(const char *dir)
{
    json_t *log = OKJ(dir, "log");
    json_t *st = OKJ(dir, "status");
    json_t *vv = json_object_get(st, "vv");
    json_t *last = json_object(); /* device -> last hlc seen */
    json_t *ops = json_object_get(log, "ops"), *op;
    size_t i;
    json_array_foreach(ops, i, op)
    {
        const char *dev = json_string_value(json_object_get(op, "device"));
        const char *hlc = json_string_value(json_object_get(op, "hlc"));
        const char *dprev = json_string_value(json_object_get(op, "dprev"));
        json_t *prev = json_object_get(last, dev);
        const char *want = prev ? json_string_value(prev) : "0000000000000000";
        cr_assert_str_eq(dprev, want, "op %s/%s: dprev %s, the device's previous op is %s", dev,
                         hlc, dprev, want);
        json_object_set_new(last, dev, json_string(hlc));
    }
    const char *dev;
    json_t *h;
    json_object_foreach(vv, dev, h)
    {
        json_t *l = json_object_get(last, dev);
        cr_assert_not_null(l, "vv names device %s, which has no op in the log", dev);
        cr_assert_str_eq(json_string_value(h), json_string_value(l),
                         "vv[%s] = %s, last op in the log %s", dev, json_string_value(h),
                         json_string_value(l));
    }
    cr_assert_eq(json_object_size(vv), json_object_size(last));
    size_t n = json_array_size(ops);
    json_decref(last);
    json_decref(st);
    json_decref(log);
    return n;
}

/* "synced with b: sent N ops, received M ops in T ms" -> N, M. */
void sync_counts(const char *out, unsigned long *sent, unsigned long *recv)
{
    const char *p = strstr(out, "sent ");
    cr_assert_not_null(p, "no summary: %s", out);
    cr_assert_eq(sscanf(p, "sent %lu ops, received %lu ops", sent, recv), 2, "summary: %s", out);
}

/* Start `weft --dir DIR args...` in slot @p slot (-1: a new one; its
 * previous process is gone), its stderr and stdout in <root>/<name>.log.
 * Returns the slot. */
static int vbg_at(int slot, const char *name, const char *offset, const char *dir, va_list ap)
{
    if (slot < 0) {
        cr_assert_lt(nprocs, PROCS_MAX);
        slot = nprocs++;
    }
    cr_assert_lt(slot, nprocs, "slot %d was never used", slot);
    cr_assert_eq(procs[slot].pid, 0, "slot %d still has process %d", slot, (int)procs[slot].pid);
    char *args[ARGS_MAX];
    collect_args(args, dir, ap);
    bgproc *p = &procs[slot];
    snprintf(p->log, sizeof p->log, "%s/%s.log", root, name);
    char outp[600];
    snprintf(outp, sizeof outp, "%s/%s.out", root, name);
    p->pid = spawn(offset, NULL, outp, p->log, args);
    return slot;
}

int bg(const char *name, const char *offset, const char *dir, ...)
{
    va_list ap;
    va_start(ap, dir);
    int slot = vbg_at(-1, name, offset, dir, ap);
    va_end(ap);
    return slot;
}

int bg_at(int slot, const char *name, const char *offset, const char *dir, ...)
{
    va_list ap;
    va_start(ap, dir);
    slot = vbg_at(slot, name, offset, dir, ap);
    va_end(ap);
    return slot;
}

/* serve() into slot @p slot (-1: a new one), waited for until it logs. */
int serve_at(int slot, const char *name, const char *offset, const char *dir, const char *ep,
             int relay)
{
    slot = relay ? bg_at(slot, name, offset, dir, "serve", "--listen", ep, "--relay", NULL)
                 : bg_at(slot, name, offset, dir, "serve", "--listen", ep, NULL);
    wait_log(slot, "serving", 10000);
    return slot;
}

/* 1 (and its status) if the process of @p slot exited; it is reaped. */
int reaped(int slot, int *status)
{
    int ws = 0;
    if (procs[slot].pid <= 0 || waitpid(procs[slot].pid, &ws, WNOHANG) != procs[slot].pid) {
        return 0;
    }
    procs[slot].pid = 0;
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return 1;
}

/* The last @p n bytes of the log of @p slot; caller frees. */
char *log_tail(int slot, size_t n)
{
    char *log = slurp(procs[slot].log);
    size_t len = strlen(log);
    if (len > n) {
        memmove(log, log + len - n, n + 1);
    }
    return log;
}
