/* test_chaos.c - real-process chaos on loopback (issue 4, ctest "chaos"):
 * three to five devices and a relay, each its own store running `weft serve`,
 * while the test writes through the command, SIGKILLs and restarts daemons
 * and cuts connections for a bounded time; then everything heals and every
 * replica must converge, within a bounded time, to the same state, holding
 * exactly the writes that were acknowledged.
 *
 * Environment: WEFT_SEED (default 1) picks everything random: the number of
 * devices, the direct links, the writes, the kills, the cuts and every
 * delay. WEFT_CHAOS_SECONDS (default 15; 1 to 1200) is the length of the
 * chaos phase, WEFT_CHAOS_HEAL_SECONDS (default 60) the bound on convergence.
 * The seed is printed first and named by every failure of this file. It
 * fixes the decisions, not the timing: the processes interleave differently
 * from run to run, so a seed replays the scenario, not the exact run.
 *
 * Topology. Each device trusts the relay (`--relay`) and the relay trusts
 * every device (no address: devices connect to it). Zero to two seeded pairs
 * of devices also trust each other directly, one way or both ways (both
 * ways makes the two sides dial each other at once). Every link a device
 * dials goes through its own TCP proxy in this process: the device's
 * address for the peer is the proxy's port, and the proxy forwards to the
 * peer's `weft serve --listen` port.
 *
 * The proxies are one thread polling every socket (poll(2)). A cut is seeded
 * from the test thread and lasts a seeded time, in one of two modes:
 *   reset  every connection is dropped with RST, and each new one is
 *          accepted and reset at once (the dialler sees a refusal);
 *   stall  nothing is forwarded and nothing accepted (a partition: the
 *          kernel's backlog holds the new connections); over 5 s, the
 *          sessions declare each other dead.
 *
 * Chaos phase: writes on random devices through the CLI (`put`, `del`,
 * `inc`, `tag add`, `tag rm`) while daemons run, each one recorded when its
 * command exited 0; SIGKILL of a random running daemon (device or relay),
 * started again after a seeded delay; proxy cuts. A daemon that exits by
 * itself fails the test at once.
 *
 * Writes are chosen so that the merge result is known: each device writes
 * its own registers (reg d<i>-<k>) and deletes them; all devices add to one
 * counter (ctr all) and each to its own (ctr d<i>); all add elements to one
 * set (set all), each element unique to its device, and a device removes
 * only its own; two shared registers (shared s0, s1) take concurrent writes
 * whose winner is the greatest (hlc, device) of the log.
 *
 * Heal: every daemon running, every proxy passing traffic. Convergence: the
 * version vectors of all replicas are equal (status --json). Then, replica
 * by replica: `weft export` identical byte for byte; `ls --json` of every
 * collection and `conflicts --json` identical; each device's ops in the log
 * are exactly its acknowledged writes, in order (kind, entity, field,
 * value), so none is lost and none invented; each device's ops form one
 * dprev chain ending at its vector entry (check_chains); the visible state
 * is the one the merge rules give for the acknowledged writes. Last, every
 * daemon stops on SIGTERM with exit 0.
 *
 * Invariants:
 *   1. Every process started is dead when the test ends (fini kills the
 *      daemons); the proxy thread is joined at fini.
 *   2. Only the proxy thread touches proxy sockets; the test thread sets a
 *      proxy's mode and deadline under mu, and nothing else.
 * Thread-safety: the test thread and the proxy thread share px[] under mu.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "net_helpers.h"
#include "tests/splitmix.h"

#define DEV_MAX   5
#define NODE_MAX  (DEV_MAX + 1) /* devices, then the relay */
#define NREG      4             /* own registers per device */
#define NSHARED   2             /* shared registers */
#define PROXY_MAX 12
#define CONN_MAX  8           /* connections per proxy */
#define PBUF      (64 * 1024) /* bytes buffered per direction */

static const char *const colls[] = {"reg", "ctr", "set", "shared"};

/* ================================================================ seeded rng */

static unsigned long long seed;
static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
    return splitmix_below(&rng, n);
}

static long rnd_in(long lo, long hi)
{
    return lo + (long)rnd((uint64_t)(hi - lo + 1));
}

static long env_long(const char *name, long dflt, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s) {
        return dflt;
    }
    long v = strtol(s, NULL, 10);
    return v < lo ? lo : v > hi ? hi : v;
}

/* ================================================================ proxies */

enum { P_PASS, P_RESET, P_STALL };

typedef struct pconn {
    int fd[2];   /* 0: accepted from the dialler, 1: to the target */
    size_t n[2]; /* bytes read from fd[i], not yet written to fd[1 - i] */
    char buf[2][PBUF];
} pconn;

typedef struct proxy {
    int lfd, port, target; /* listening socket, its port, the port forwarded to */
    int mode;              /* under mu */
    uint64_t until;        /* under mu: back to P_PASS at this now_ms() */
    int applied;           /* proxy thread: the mode in force */
    pconn *c[CONN_MAX];    /* proxy thread */
    unsigned long accepted, dropped;
} proxy;

static proxy px[PROXY_MAX];
static int npx;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int px_stop;    /* under mu */
static int px_running; /* test thread */
static pthread_t px_thread;

static void rst_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void drop_conn(proxy *p, int i)
{
    rst_close(p->c[i]->fd[0]);
    rst_close(p->c[i]->fd[1]);
    free(p->c[i]);
    p->c[i] = NULL;
    p->dropped++;
}

/* A new connection on @p p's listener: reset it during a cut, else pair it
 * with a connection to the target (reset if the target refuses). */
static void accept_conn(proxy *p, int mode)
{
    int fd = accept(p->lfd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    p->accepted++;
    int slot = -1;
    for (int i = 0; i < CONN_MAX && slot < 0; i++) {
        if (p->c[i] == NULL) {
            slot = i;
        }
    }
    if (mode == P_RESET || slot < 0) {
        rst_close(fd);
        return;
    }
    int up = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)p->target);
    if (up < 0 || connect(up, (struct sockaddr *)&a, sizeof a) != 0) {
        if (up >= 0) {
            close(up);
        }
        rst_close(fd);
        return;
    }
    pconn *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->fd[0] = fd;
    c->fd[1] = up;
    set_nonblock(fd);
    set_nonblock(up);
    p->c[slot] = c;
}

/* Move bytes to and from side @p s of @p c; 0 if it must be dropped. */
static int pump_side(pconn *c, int s, short rev)
{
    if (rev & POLLIN) {
        ssize_t r = read(c->fd[s], c->buf[s] + c->n[s], PBUF - c->n[s]);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            return 0;
        }
        if (r > 0) {
            c->n[s] += (size_t)r;
        }
    }
    if ((rev & POLLOUT) && c->n[1 - s] > 0) {
        ssize_t w = write(c->fd[s], c->buf[1 - s], c->n[1 - s]);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return 0;
        }
        if (w > 0) {
            memmove(c->buf[1 - s], c->buf[1 - s] + w, c->n[1 - s] - (size_t)w);
            c->n[1 - s] -= (size_t)w;
        }
    }
    if ((rev & (POLLERR | POLLNVAL)) || ((rev & POLLHUP) && !(rev & POLLIN))) {
        return 0;
    }
    return 1;
}

static void *proxy_main(void *arg)
{
    (void)arg;
    static struct pollfd pf[PROXY_MAX * (1 + 2 * CONN_MAX)];
    static int
        who[PROXY_MAX * (1 + 2 * CONN_MAX)]; /* proxy * 64 + conn * 2 + side, or -1 - proxy */
    int mode[PROXY_MAX];
    for (;;) {
        pthread_mutex_lock(&mu);
        int stopping = px_stop;
        uint64_t now = now_ms();
        for (int i = 0; i < npx; i++) {
            if (px[i].mode != P_PASS && now >= px[i].until) {
                px[i].mode = P_PASS;
            }
            mode[i] = px[i].mode;
        }
        pthread_mutex_unlock(&mu);
        if (stopping) {
            break;
        }
        int n = 0;
        for (int i = 0; i < npx; i++) {
            proxy *p = &px[i];
            if (mode[i] == P_RESET && p->applied != P_RESET) {
                for (int k = 0; k < CONN_MAX; k++) {
                    if (p->c[k]) {
                        drop_conn(p, k);
                    }
                }
            }
            p->applied = mode[i];
            if (mode[i] == P_STALL) {
                continue;
            }
            for (int k = 0; k < CONN_MAX; k++) {
                pconn *c = p->c[k];
                for (int s = 0; c && s < 2; s++) {
                    short ev = (short)((c->n[s] < PBUF ? POLLIN : 0) | (c->n[1 - s] ? POLLOUT : 0));
                    pf[n] = (struct pollfd){c->fd[s], ev, 0};
                    who[n++] = i * 64 + k * 2 + s;
                }
            }
            pf[n] = (struct pollfd){p->lfd, POLLIN, 0};
            who[n++] = -1 - i;
        }
        if (poll(pf, (nfds_t)n, 20) <= 0) {
            continue;
        }
        /* Connections first: accepting comes last, so a slot freed by a
         * drop is not reused within this turn. */
        for (int j = 0; j < n; j++) {
            if (who[j] < 0 || pf[j].revents == 0) {
                continue;
            }
            proxy *p = &px[who[j] / 64];
            int k = (who[j] % 64) / 2, s = who[j] % 2;
            if (p->c[k] != NULL && !pump_side(p->c[k], s, pf[j].revents)) {
                drop_conn(p, k);
            }
        }
        for (int j = 0; j < n; j++) {
            if (who[j] < 0 && (pf[j].revents & POLLIN)) {
                accept_conn(&px[-1 - who[j]], mode[-1 - who[j]]);
            }
        }
    }
    for (int i = 0; i < npx; i++) {
        for (int k = 0; k < CONN_MAX; k++) {
            if (px[i].c[k]) {
                drop_conn(&px[i], k);
            }
        }
        close(px[i].lfd);
    }
    return NULL;
}

/* A proxy on 127.0.0.1 forwarding to @p target; its index. Before start. */
static int proxy_new(int target)
{
    cr_assert_lt(npx, PROXY_MAX);
    proxy *p = &px[npx];
    memset(p, 0, sizeof *p);
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(p->lfd, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(p->lfd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&a, &len), 0);
    cr_assert_eq(listen(p->lfd, 64), 0);
    set_nonblock(p->lfd);
    p->port = ntohs(a.sin_port);
    p->target = target;
    return npx++;
}

static void proxy_start(void)
{
    px_stop = 0;
    cr_assert_eq(pthread_create(&px_thread, NULL, proxy_main, NULL), 0);
    px_running = 1;
}

static void proxy_stop(void)
{
    if (!px_running) {
        return;
    }
    pthread_mutex_lock(&mu);
    px_stop = 1;
    pthread_mutex_unlock(&mu);
    pthread_join(px_thread, NULL);
    px_running = 0;
}

static void proxy_cut(int i, int mode, long ms)
{
    pthread_mutex_lock(&mu);
    px[i].mode = mode;
    px[i].until = now_ms() + (uint64_t)ms;
    pthread_mutex_unlock(&mu);
}

static int proxy_is_cut(int i)
{
    pthread_mutex_lock(&mu);
    int cut = px[i].mode != P_PASS && now_ms() < px[i].until;
    pthread_mutex_unlock(&mu);
    return cut;
}

static void proxy_heal_all(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < npx; i++) {
        px[i].mode = P_PASS;
        px[i].until = 0;
    }
    pthread_mutex_unlock(&mu);
}

static void chaos_fini(void)
{
    proxy_stop();
    net_teardown();
}

/* ================================================================ nodes */

typedef struct node {
    const char *dir;
    char name[16];       /* d0..d4, relay */
    char ep[64];         /* where its `weft serve` listens */
    int port;            /* ... on this port */
    char dev[17];        /* device id, 16 hex */
    int relay;           /* 1 for the relay */
    int slot;            /* in procs[]; -1 before the first start */
    int up;              /* its daemon should be running */
    uint64_t restart_at; /* down: start it again at this now_ms() */
    int starts;
} node;

/* A free port for a daemon, below the kernel's ephemeral range when there is
 * room: a daemon killed and started again binds its port again, and in
 * between an outgoing connection must not be given it as its local port.
 * Not seeded (ports are not part of the scenario). */
static int daemon_port(void)
{
    int lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &lo) != 1) {
            lo = 32768;
        }
        fclose(f);
    }
    static unsigned pick;
    if (pick == 0) {
        pick = (unsigned)getpid() * 2654435761u;
    }
    for (int tries = 0; lo > 11000 && tries < 200; tries++) {
        pick = pick * 1103515245u + 12345u;
        int port = 10000 + (int)((pick >> 8) % (unsigned)(lo - 11000));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)port);
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0) {
            close(fd);
        }
        if (ok) {
            return port;
        }
    }
    return free_port();
}

static node nodes[NODE_MAX];
static int nnodes, ndev;

static void node_start(node *n)
{
    char lname[32];
    snprintf(lname, sizeof lname, "%s.%d", n->name, n->starts);
    n->slot = serve_at(n->slot, lname, NULL, n->dir, n->ep, n->relay);
    n->up = 1;
    n->starts++;
}

/* Fail, naming the seed, if a daemon that should run has exited. */
static void check_alive(void)
{
    for (int i = 0; i < nnodes; i++) {
        int st;
        if (nodes[i].up && reaped(nodes[i].slot, &st)) {
            char *tail = log_tail(nodes[i].slot, 3000);
            cr_assert_fail("seed %llu: %s's daemon exited by itself (status %d); log:\n%s", seed,
                           nodes[i].name, st, tail);
        }
    }
}

/* ================================================================ the model */

typedef struct wop { /* one acknowledged write: the op it must have made */
    char kind[8], coll[16], entity[48], field[16];
    json_t *value;
} wop;

typedef struct dmodel {
    wop *ops;
    size_t n, cap;
    int reg_present[NREG];
    long long reg_val[NREG];
    long long ctr; /* ctr d<i> n */
    int ctr_incs;
    char (*tags)[48]; /* own elements in set all */
    size_t ntags, tags_cap;
} dmodel;

static dmodel model[DEV_MAX];
static long long ctr_all;
static int ctr_all_incs, tag_adds;
static long seq;

static void record(int d, const char *kind, const char *coll, const char *entity, const char *field,
                   json_t *value)
{
    dmodel *m = &model[d];
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->ops = realloc(m->ops, m->cap * sizeof *m->ops);
        cr_assert_not_null(m->ops);
    }
    wop *w = &m->ops[m->n++];
    snprintf(w->kind, sizeof w->kind, "%s", kind);
    snprintf(w->coll, sizeof w->coll, "%s", coll);
    snprintf(w->entity, sizeof w->entity, "%s", entity);
    snprintf(w->field, sizeof w->field, "%s", field);
    w->value = value;
}

static void tag_push(dmodel *m, const char *e)
{
    if (m->ntags == m->tags_cap) {
        m->tags_cap = m->tags_cap ? 2 * m->tags_cap : 64;
        m->tags = realloc(m->tags, m->tags_cap * sizeof *m->tags);
        cr_assert_not_null(m->tags);
    }
    snprintf(m->tags[m->ntags++], sizeof m->tags[0], "%s", e);
}

/* Run one write command on device @p d; it must exit 0 (acknowledged). */
static void must(run_result r, int d, const char *what)
{
    cr_assert_eq(r.status, 0, "seed %llu: %s on %s exited %d: %s", seed, what, nodes[d].name,
                 r.status, r.err);
    run_free(&r);
}

/* One random write on device @p d, recorded once acknowledged. */
static void write_one(int d)
{
    const char *dir = nodes[d].dir;
    dmodel *m = &model[d];
    char ent[48], arg[96], elem[48];
    long r = (long)rnd(100);
    seq++;
    if (r >= 35 && r < 45) { /* del one of its present registers, if any */
        int k = (int)rnd(NREG), tries = 0;
        while (!m->reg_present[k] && tries++ < NREG) {
            k = (k + 1) % NREG;
        }
        if (m->reg_present[k]) {
            snprintf(ent, sizeof ent, "d%d-%d", d, k);
            must(RUN(dir, "del", "reg", ent), d, "del");
            record(d, "del", "reg", ent, "", json_null());
            m->reg_present[k] = 0;
            return;
        }
        r = 0;
    }
    if (r >= 80 && r < 85) { /* tag rm one of its own elements, if any */
        if (m->ntags > 0) {
            size_t i = (size_t)rnd(m->ntags);
            snprintf(elem, sizeof elem, "%s", m->tags[i]);
            must(RUN(dir, "tag", "rm", "set", "all", "tags", elem), d, "tag rm");
            record(d, "rem", "set", "all", "tags", json_string(elem));
            memcpy(m->tags[i], m->tags[--m->ntags], sizeof m->tags[0]);
            return;
        }
        r = 70;
    }
    if (r < 35) { /* put its own register */
        int k = (int)rnd(NREG);
        snprintf(ent, sizeof ent, "d%d-%d", d, k);
        snprintf(arg, sizeof arg, "v=%ld", seq);
        must(RUN(dir, "put", "reg", ent, arg), d, "put");
        record(d, "set", "reg", ent, "v", json_integer(seq));
        m->reg_present[k] = 1;
        m->reg_val[k] = seq;
    } else if (r < 65) { /* inc the shared counter or its own */
        long amount = rnd_in(-5, 20);
        int shared = (int)rnd(2);
        if (shared) {
            snprintf(ent, sizeof ent, "all");
        } else {
            snprintf(ent, sizeof ent, "d%d", d);
        }
        snprintf(arg, sizeof arg, "%ld", amount);
        must(RUN(dir, "inc", "ctr", ent, "n", arg), d, "inc");
        record(d, "inc", "ctr", ent, "n", json_integer(amount));
        if (shared) {
            ctr_all += amount;
            ctr_all_incs++;
        } else {
            m->ctr += amount;
            m->ctr_incs++;
        }
    } else if (r < 85) { /* tag add an element unique to this device */
        snprintf(elem, sizeof elem, "d%d-%ld", d, seq);
        must(RUN(dir, "tag", "add", "set", "all", "tags", elem), d, "tag add");
        record(d, "add", "set", "all", "tags", json_string(elem));
        tag_push(m, elem);
        tag_adds++;
    } else { /* put a shared register: concurrent writers */
        snprintf(ent, sizeof ent, "s%d", (int)rnd(NSHARED));
        snprintf(elem, sizeof elem, "d%d-%ld", d, seq);
        snprintf(arg, sizeof arg, "t=\"%s\"", elem);
        must(RUN(dir, "put", "shared", ent, arg), d, "put shared");
        record(d, "set", "shared", ent, "t", json_string(elem));
    }
}

/* ================================================================ checks */

static json_t *vv_of(const char *dir)
{
    json_t *st = OKJ(dir, "status");
    json_t *vv = json_object_get(st, "vv");
    json_incref(vv);
    json_decref(st);
    return vv;
}

/* Every replica's vector and peers, for a failure message; caller frees. */
static char *diagnosis(void)
{
    json_t *all = json_object();
    for (int i = 0; i < nnodes; i++) {
        json_t *pl = OKJ(nodes[i].dir, "peer", "ls");
        json_t *peers = json_array(), *p;
        size_t k;
        json_array_foreach(json_object_get(pl, "peers"), k, p)
        {
            json_array_append_new(peers,
                                  json_pack("{s:O,s:O,s:O,s:O}", "name", json_object_get(p, "name"),
                                            "state", json_object_get(p, "state"), "pending",
                                            json_object_get(p, "pending_ops"), "error",
                                            json_object_get(p, "last_error_msg")));
        }
        json_decref(pl);
        json_object_set_new(all, nodes[i].name,
                            json_pack("{s:o,s:o}", "vv", vv_of(nodes[i].dir), "peers", peers));
    }
    char *s = json_dumps(all, JSON_SORT_KEYS | JSON_INDENT(1));
    json_decref(all);
    return s;
}

/* Wait until every replica's version vector is equal; the time it took (ms),
 * or -1 after @p bound_ms. */
static long wait_converged(long bound_ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        check_alive();
        json_t *first = vv_of(nodes[0].dir);
        int same = 1;
        for (int i = 1; i < nnodes && same; i++) {
            json_t *vv = vv_of(nodes[i].dir);
            same = json_equal(first, vv);
            json_decref(vv);
        }
        json_decref(first);
        long took = (long)(now_ms() - t0);
        if (same) {
            return took;
        }
        if (took > bound_ms) {
            return -1;
        }
        nap_ms(100);
    }
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return s;
}

/* The first line where @p a and @p b differ, for a failure message. */
static void first_diff(const char *a, const char *b, char *out, size_t cap)
{
    size_t line = 1, i = 0, start = 0;
    while (a[i] && a[i] == b[i]) {
        if (a[i] == '\n') {
            line++;
            start = i + 1;
        }
        i++;
    }
    snprintf(out, cap, "line %zu: '%.300s' vs '%.300s'", line, a + start, b + start);
}

/* Replica by replica: export, ls of every collection, conflicts. */
static void compare_replicas(void)
{
    char *exp0 = OK(nodes[0].dir, "export");
    for (int i = 1; i < nnodes; i++) {
        char *e = OK(nodes[i].dir, "export");
        if (strcmp(exp0, e) != 0) {
            char d[800];
            first_diff(exp0, e, d, sizeof d);
            cr_assert_fail("seed %llu: export of %s differs from %s's: %s", seed, nodes[i].name,
                           nodes[0].name, d);
        }
        free(e);
    }
    free(exp0);
    for (size_t c = 0; c <= sizeof colls / sizeof colls[0]; c++) {
        int conf = c == sizeof colls / sizeof colls[0];
        char *s0 =
            conf ? dump(OKJ(nodes[0].dir, "conflicts")) : dump(OKJ(nodes[0].dir, "ls", colls[c]));
        for (int i = 1; i < nnodes; i++) {
            char *s = conf ? dump(OKJ(nodes[i].dir, "conflicts"))
                           : dump(OKJ(nodes[i].dir, "ls", colls[c]));
            cr_assert_str_eq(s0, s, "seed %llu: %s of %s and %s differ:\n%s\n%s", seed,
                             conf ? "conflicts" : colls[c], nodes[0].name, nodes[i].name, s0, s);
            free(s);
        }
        free(s0);
    }
}

static int dev_index(const char *hex)
{
    for (int d = 0; d < ndev; d++) {
        if (strcmp(nodes[d].dev, hex) == 0) {
            return d;
        }
    }
    return -1;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The log of @p dir holds, for each device, exactly its acknowledged writes
 * in order. Fills @p lww with the winner of each shared register. */
static void check_log(const char *dir, const char *name, json_t *lww)
{
    json_t *log = OKJ(dir, "log");
    size_t next[DEV_MAX] = {0};
    json_t *ops = json_object_get(log, "ops"), *op;
    json_t *best = json_object(); /* entity -> "hlc device" of the newest set */
    size_t i;
    json_array_foreach(ops, i, op)
    {
        int d = dev_index(jstr(op, "device"));
        cr_assert_geq(d, 0, "seed %llu: %s holds op %s from device %s, which wrote nothing", seed,
                      name, jstr(op, "hlc"), jstr(op, "device"));
        cr_assert_lt(next[d], model[d].n,
                     "seed %llu: %s holds more ops from %s than it acknowledged (%zu): %s %s %s",
                     seed, name, nodes[d].name, model[d].n, jstr(op, "kind"), jstr(op, "coll"),
                     jstr(op, "entity"));
        wop *w = &model[d].ops[next[d]++];
        int same = strcmp(w->kind, jstr(op, "kind")) == 0 &&
                   strcmp(w->coll, jstr(op, "coll")) == 0 &&
                   strcmp(w->entity, jstr(op, "entity")) == 0 &&
                   strcmp(w->field, jstr(op, "field")) == 0 &&
                   json_equal(w->value, json_object_get(op, "value"));
        char *got = json_dumps(op, JSON_COMPACT), *want = json_dumps(w->value, JSON_ENCODE_ANY);
        cr_assert(same, "seed %llu: %s: op %zu of %s is %s, acknowledged was %s %s %s %s = %s",
                  seed, name, next[d] - 1, nodes[d].name, got, w->kind, w->coll, w->entity,
                  w->field, want);
        free(got);
        free(want);
        if (strcmp(w->coll, "shared") == 0) {
            char key[64];
            snprintf(key, sizeof key, "%s %s", jstr(op, "hlc"), jstr(op, "device"));
            const char *cur = json_string_value(json_object_get(best, w->entity));
            if (!cur || strcmp(key, cur) > 0) {
                json_object_set_new(best, w->entity, json_string(key));
                json_object_set(lww, w->entity, w->value);
            }
        }
    }
    for (int d = 0; d < ndev; d++) {
        cr_assert_eq(next[d], model[d].n,
                     "seed %llu: %s holds %zu ops from %s, which acknowledged %zu", seed, name,
                     next[d], nodes[d].name, model[d].n);
    }
    json_decref(best);
    json_decref(log);
}

/* The entity @p id of an `ls --json` result, NULL if absent or empty. */
static json_t *entity(json_t *ls, const char *id)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(ls, "entities"), i, e)
    {
        if (strcmp(jstr(e, "id"), id) == 0) {
            json_t *f = json_object_get(e, "fields");
            return json_object_size(f) > 0 ? f : NULL;
        }
    }
    return NULL;
}

static json_t *field_value(json_t *fields, const char *f)
{
    return json_object_get(json_object_get(fields, f), "value");
}

static int has_elem(json_t *arr, const char *e)
{
    json_t *v;
    size_t i;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), e) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The visible state of @p dir is what the merge rules give for the
 * acknowledged writes. */
static void check_model(const char *dir, const char *name, json_t *lww)
{
    json_t *reg = OKJ(dir, "ls", "reg");
    for (int d = 0; d < ndev; d++) {
        for (int k = 0; k < NREG; k++) {
            char id[48];
            snprintf(id, sizeof id, "d%d-%d", d, k);
            json_t *f = entity(reg, id);
            if (!model[d].reg_present[k]) {
                cr_assert_null(f, "seed %llu: %s: reg %s was deleted, yet visible", seed, name, id);
                continue;
            }
            cr_assert_not_null(f, "seed %llu: %s: reg %s is missing", seed, name, id);
            json_int_t v = json_integer_value(field_value(f, "v"));
            cr_assert_eq(v, model[d].reg_val[k], "seed %llu: %s: reg %s v = %lld, wrote %lld", seed,
                         name, id, (long long)v, model[d].reg_val[k]);
        }
    }
    json_decref(reg);

    json_t *ctr = OKJ(dir, "ls", "ctr");
    json_t *f = entity(ctr, "all");
    cr_assert_eq(f != NULL, ctr_all_incs > 0, "seed %llu: %s: ctr all", seed, name);
    if (f) {
        json_int_t v = json_integer_value(field_value(f, "n"));
        cr_assert_eq(v, ctr_all, "seed %llu: %s: ctr all = %lld, acknowledged sum %lld", seed, name,
                     (long long)v, ctr_all);
    }
    for (int d = 0; d < ndev; d++) {
        char id[48];
        snprintf(id, sizeof id, "d%d", d);
        f = entity(ctr, id);
        cr_assert_eq(f != NULL, model[d].ctr_incs > 0, "seed %llu: %s: ctr %s", seed, name, id);
        if (f) {
            json_int_t v = json_integer_value(field_value(f, "n"));
            cr_assert_eq(v, model[d].ctr, "seed %llu: %s: ctr %s = %lld, acknowledged sum %lld",
                         seed, name, id, (long long)v, model[d].ctr);
        }
    }
    json_decref(ctr);

    json_t *set = OKJ(dir, "ls", "set");
    f = entity(set, "all");
    json_t *tags = f ? field_value(f, "tags") : NULL;
    size_t want = 0;
    for (int d = 0; d < ndev; d++) {
        for (size_t i = 0; i < model[d].ntags; i++) {
            cr_assert(tags && has_elem(tags, model[d].tags[i]),
                      "seed %llu: %s: element %s of set all is missing", seed, name,
                      model[d].tags[i]);
        }
        want += model[d].ntags;
    }
    cr_assert_eq(tags ? json_array_size(tags) : 0, want,
                 "seed %llu: %s: set all has %zu elements, the model %zu", seed, name,
                 tags ? json_array_size(tags) : 0, want);
    json_decref(set);

    json_t *sh = OKJ(dir, "ls", "shared");
    for (int k = 0; k < NSHARED; k++) {
        char id[48];
        snprintf(id, sizeof id, "s%d", k);
        json_t *w = json_object_get(lww, id);
        f = entity(sh, id);
        cr_assert_eq(f != NULL, w != NULL, "seed %llu: %s: shared %s", seed, name, id);
        if (f) {
            cr_assert(json_equal(field_value(f, "t"), w),
                      "seed %llu: %s: shared %s shows %s, the newest write is %s", seed, name, id,
                      json_string_value(field_value(f, "t")), json_string_value(w));
        }
    }
    json_decref(sh);
}

/* ================================================================ the test */

TestSuite(chaos, .init = net_setup, .fini = chaos_fini, .timeout = 1800);

Test(chaos, kills_restarts_and_cuts_then_every_replica_converges)
{
    const char *se = getenv("WEFT_SEED");
    seed = se && *se ? strtoull(se, NULL, 0) : 1;
    long chaos_s = env_long("WEFT_CHAOS_SECONDS", 15, 1, 1200);
    long heal_s = env_long("WEFT_CHAOS_HEAL_SECONDS", 60, 5, 600);
    rng = seed;
    ndev = 3 + (int)rnd(3);
    nnodes = ndev + 1;
    fprintf(stderr, "chaos: seed %llu (WEFT_SEED), %d devices + relay, %ld s of chaos\n", seed,
            ndev, chaos_s);
    uint64_t t_start = now_ms();

    /* Stores, ports, proxies, trust. */
    for (int i = 0; i < nnodes; i++) {
        node *n = &nodes[i];
        n->relay = i == ndev;
        snprintf(n->name, sizeof n->name, n->relay ? "relay" : "d%d", i);
        n->dir = store(n->name, NULL);
        n->port = daemon_port();
        snprintf(n->ep, sizeof n->ep, "tcp://127.0.0.1:%d", n->port);
        n->slot = -1;
        json_t *st = OKJ(n->dir, "status");
        snprintf(n->dev, sizeof n->dev, "%s", jstr(st, "device"));
        json_decref(st);
    }
    node *relay = &nodes[ndev];
    int link_proxy[DEV_MAX][NODE_MAX]; /* proxy a device dials the node through */
    memset(link_proxy, -1, sizeof link_proxy);
    char addr[64];
    for (int d = 0; d < ndev; d++) {
        int p = proxy_new(relay->port);
        link_proxy[d][ndev] = p;
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", px[p].port);
        trust(nodes[d].dir, "relay", relay->dir, addr, 1);
        trust(relay->dir, nodes[d].name, nodes[d].dir, NULL, 0);
    }
    int npairs = (int)rnd(3);
    char pairs_desc[128] = "";
    for (int k = 0; k < npairs; k++) {
        int a = (int)rnd((uint64_t)ndev), b = (int)rnd((uint64_t)ndev - 1);
        b = b >= a ? b + 1 : b;
        if (link_proxy[a][b] >= 0 || link_proxy[b][a] >= 0) {
            continue;
        }
        int both = (int)rnd(2);
        int p = proxy_new(nodes[b].port);
        link_proxy[a][b] = p;
        snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", px[p].port);
        trust(nodes[a].dir, nodes[b].name, nodes[b].dir, addr, 0);
        if (both) {
            p = proxy_new(nodes[a].port);
            link_proxy[b][a] = p;
            snprintf(addr, sizeof addr, "tcp://127.0.0.1:%d", px[p].port);
            trust(nodes[b].dir, nodes[a].name, nodes[a].dir, addr, 0);
        } else {
            trust(nodes[b].dir, nodes[a].name, nodes[a].dir, NULL, 0);
        }
        size_t len = strlen(pairs_desc);
        snprintf(pairs_desc + len, sizeof pairs_desc - len, " d%d%sd%d", a, both ? "<->" : "->", b);
    }
    fprintf(stderr, "chaos: direct links:%s\n", pairs_desc[0] ? pairs_desc : " none");
    proxy_start();
    for (int i = 0; i < nnodes; i++) {
        node_start(&nodes[i]);
    }

    /* Chaos. */
    unsigned long writes = 0, kills = 0, relay_kills = 0, restarts = 0, resets = 0, stalls = 0;
    uint64_t now = now_ms(), end = now + (uint64_t)chaos_s * 1000u;
    uint64_t next_kill = now + (uint64_t)rnd_in(500, 2500);
    uint64_t next_cut = now + (uint64_t)rnd_in(300, 1500);
    while ((now = now_ms()) < end) {
        check_alive();
        for (int i = 0; i < nnodes; i++) {
            if (!nodes[i].up && now >= nodes[i].restart_at) {
                node_start(&nodes[i]);
                restarts++;
            }
        }
        if (now >= next_kill) {
            node *n = &nodes[rnd((uint64_t)nnodes)];
            if (n->up) {
                stop(n->slot, SIGKILL);
                n->up = 0;
                n->restart_at = now_ms() + (uint64_t)rnd_in(100, 3000);
                kills++;
                relay_kills += (unsigned long)n->relay;
            }
            next_kill = now + (uint64_t)rnd_in(700, 2500);
        }
        if (now >= next_cut) {
            int p = (int)rnd((uint64_t)npx);
            if (!proxy_is_cut(p)) {
                if (rnd(5) < 3) {
                    proxy_cut(p, P_RESET, rnd_in(200, 3000));
                    resets++;
                } else {
                    proxy_cut(p, P_STALL, rnd_in(500, 7000));
                    stalls++;
                }
            }
            next_cut = now + (uint64_t)rnd_in(300, 1500);
        }
        write_one((int)rnd((uint64_t)ndev));
        writes++;
        nap_ms(rnd_in(0, 30));
    }

    /* Heal: every daemon running, every proxy passing traffic. */
    for (int i = 0; i < nnodes; i++) {
        if (!nodes[i].up) {
            node_start(&nodes[i]);
            restarts++;
        }
    }
    proxy_heal_all();
    fprintf(stderr,
            "chaos: healed after %lu writes, %lu kills, %lu cuts; waiting for convergence\n",
            writes, kills, resets + stalls);
    long took = wait_converged(heal_s * 1000L);
    if (took < 0) {
        char *diag = diagnosis();
        cr_assert_fail("seed %llu: replicas did not converge within %ld s after healing:\n%s", seed,
                       heal_s, diag);
    }

    /* Replica by replica. */
    compare_replicas();
    json_t *lww = json_object();
    for (int i = 0; i < nnodes; i++) {
        json_object_clear(lww);
        check_log(nodes[i].dir, nodes[i].name, lww);
        check_model(nodes[i].dir, nodes[i].name, lww);
        check_chains(nodes[i].dir);
    }
    json_decref(lww);
    json_int_t ops = status_int(nodes[0].dir, "ops");
    cr_assert_eq((unsigned long)ops, writes, "seed %llu: %lld ops held, %lu writes acknowledged",
                 seed, (long long)ops, writes);

    /* Every daemon stops cleanly. */
    for (int i = 0; i < nnodes; i++) {
        check_alive();
        int st = stop(nodes[i].slot, SIGTERM);
        nodes[i].up = 0;
        cr_assert_eq(st, 0, "seed %llu: %s's daemon exited %d on SIGTERM", seed, nodes[i].name, st);
    }
    unsigned long accepted = 0, dropped = 0;
    proxy_stop();
    for (int i = 0; i < npx; i++) {
        accepted += px[i].accepted;
        dropped += px[i].dropped;
    }
    for (int d = 0; d < ndev; d++) {
        for (size_t i = 0; i < model[d].n; i++) {
            json_decref(model[d].ops[i].value);
        }
        free(model[d].ops);
        free(model[d].tags);
    }
    fprintf(stderr,
            "chaos: seed %llu, %d devices + relay, direct links:%s; %ld s of chaos: %lu writes "
            "acknowledged, %lu kills (%lu of the relay), %lu restarts, %lu cuts (%lu reset, %lu "
            "stall), %lu proxied connections (%lu dropped); converged %ld ms after healing; "
            "total %.1f s\n",
            seed, ndev, pairs_desc[0] ? pairs_desc : " none", chaos_s, writes, kills, relay_kills,
            restarts, resets + stalls, resets, stalls, accepted, dropped, took,
            (double)(now_ms() - t_start) / 1000.0);
}
