/* crash_work.c - the crash sweep's workload: one seeded run over two fresh
 * stores, linked to weft_killpoints so that the driver (crash_sweep.c) can
 * kill it at any numbered point (common/killpoint.h).
 *
 *   crash_work DIR SEED      (reports on fd 3)
 *
 * Creates DIR/a and DIR/b (64 KiB maps, so they grow and replay), makes
 * each a peer of the other, then:
 *   1. local write transactions on both (set, long set, inc, add, rem, del,
 *      resolve), one in six aborted;
 *   2. remote apply: the ops each lacks, exported from the other and applied
 *      with weft_apply in batches of 1..8, one or two batches a transaction,
 *      some transactions aborted, and batches with a gap (refused whole)
 *      between good ones;
 *   3. group commit: three threads write store a at once, in rounds where
 *      one holds its transaction open while the others begin theirs, so
 *      they join its group commit as followers;
 *   4. a sync session between them, driven in memory (weft__session_* as
 *      the engine drives it, without sockets), with local writes while it
 *      runs, the acknowledged vectors saved on a "tick", a cut in the
 *      middle (save, destroy, new sessions), until both are caught up; then
 *      a final save (so a finished run leaves two equal replicas, each
 *      with an acknowledged vector equal to the other's version vector).
 * Before a quarter of the write transactions (and peer adds), a store is
 * closed and opened again with a one-page map, so that the transaction
 * meets a full map, grows it and replays its journal.
 * The clock is simulated (weft_options.now_ms), so a seed replays the same
 * run, hit for hit, up to the random device keys and, from phase 3 on, the
 * interleaving of the threads.
 *
 * Every report is one line written with one write(2) (atomic on a pipe),
 * after the call it reports returned:
 *   S x            store x opened (created)
 *   P x            x's peer record of the other store committed
 *   O x T H D      local op (hlc H, device D, hex) issued in txn T of x
 *   R x T H:D...   remote ops given to txn T of x (weft_apply, or an OPS
 *                  frame handed to x's session)
 *   G x T H:D...   a batch with a gap given to txn T: must be refused whole
 *   C x T          txn T of x committed (weft_txn_commit returned 0, or x's
 *                  session queued an APPLIED ACK for the OPS of txn T)
 *   X x T          txn T of x aborted (weft_txn_abort, or a gap ACK)
 *   D              the workload finished
 * Exit status: 0 after D; 2..8 for a failure of the workload itself (an
 * unexpected error, printed on stderr); 9 for a write transaction
 * acknowledged before two syncs (data pages, meta page): the program
 * defines fsync and fdatasync, counting the calls (LMDB's too) and passing
 * them on to libc.
 *
 * Invariants: at most one transaction is open at a time, except in the
 * group-commit phase (one per thread, GROUP_THREADS), so at most that many
 * reported transactions are neither committed nor aborted when the process
 * dies. Store handles are closed and reopened only while no session or
 * other thread uses them.
 * Thread-safety: one thread, except the group-commit phase, whose threads
 * share only atomics, the report pipe (one write(2) per line) and g_mu.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"
#include "tests/splitmix.h"
#include "transport/transport_int.h"

#define CW_EPOCH  UINT64_C(1700000000000)
#define REPORT_FD 3

typedef struct node {
    char tag; /* 'a' or 'b' */
    char path[512];
    weft_store *s;
    uint8_t pk[WEFT_KEY_BYTES];
} node;

static _Thread_local uint64_t rng;
static _Atomic uint64_t now_ms = CW_EPOCH; /* the simulated wall clock of both stores */
static atomic_uint txn_seq;
static bool no_shrink; /* a session or another thread uses the store handles */
static node nodes[2];

static uint64_t rnd(uint64_t n)
{
    uint64_t z = splitmix_next(&rng);
    return n ? z % n : z; /* rnd(0): all 64 bits */
}

static uint64_t clock_cb(void *user)
{
    (void)user;
    return now_ms;
}

static void die(int code, const char *fmt, ...) WEFT__PRINTF(2, 3);
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crash_work: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s)\n", weft_last_error());
    va_end(ap);
    exit(code);
}

#define MUST(expr)                                                                    \
    do {                                                                              \
        int rc_ = (expr);                                                             \
        if (rc_ != 0) {                                                               \
            die(2, "%s:%d: %s -> %s", __FILE__, __LINE__, #expr, weft_err_name(rc_)); \
        }                                                                             \
    } while (0)

/* ---------------------------------------------------------------- syncs */

/* Every fsync/fdatasync of the process (LMDB's included: this executable's
 * definitions take precedence over libc's), so that a commit can be checked
 * to have synced before it was acknowledged. A SIGKILL cannot tell a synced
 * commit from one left in the page cache; this counter can tell that the
 * syncs were asked for. */
static atomic_ulong syncs;

static int real_sync(const char *name, int fd)
{
    void *p = dlsym(RTLD_NEXT, name);
    int (*fn)(int) = NULL;
    memcpy(&fn, &p, sizeof fn);
    atomic_fetch_add(&syncs, 1);
    return fn != NULL ? fn(fd) : -1;
}

/* Default visibility: the build hides symbols, and a hidden one would not
 * interpose for liblmdb. */
__attribute__((visibility("default"))) int fdatasync(int fd)
{
    return real_sync("fdatasync", fd);
}

__attribute__((visibility("default"))) int fsync(int fd)
{
    return real_sync("fsync", fd);
}

/* Commit @p t (txn @p tid of @p x, @p nops ops): a commit that wrote must
 * have synced the data pages and then the meta page before returning. */
static void commit_synced(weft_txn **t, const node *x, unsigned tid, unsigned nops)
{
    unsigned long s0 = atomic_load(&syncs);
    MUST(weft_txn_commit(t));
    unsigned long n = atomic_load(&syncs) - s0;
    if (nops > 0 && n < 2) {
        die(9, "txn %u of %c (%u ops) acknowledged after %lu syncs (data + meta: 2)", tid, x->tag,
            nops, n);
    }
}

/* One line, one write(2): a pipe write of at most PIPE_BUF bytes is atomic,
 * so a kill never leaves half a line. */
static void report(const char *fmt, ...) WEFT__PRINTF(1, 2);
static void report(const char *fmt, ...)
{
    char line[4000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) {
        die(3, "report line too long");
    }
    line[n++] = '\n';
    if (write(REPORT_FD, line, (size_t)n) != n) {
        die(3, "report pipe");
    }
}

/* " H:D" per op into @p buf. */
static void ids_text(char *buf, size_t cap, const weft_op *ops, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, " %llx:%llx", (unsigned long long)ops[i].id.hlc,
                         (unsigned long long)ops[i].id.device);
        if (w < 0 || (size_t)w >= cap - len) {
            die(3, "ids line too long");
        }
        len += (size_t)w;
    }
}

/* ---------------------------------------------------------------- msgpack */

static size_t mp_int(uint8_t *b, int64_t v)
{
    if (v >= 0 && v < 128) {
        b[0] = (uint8_t)v;
        return 1;
    }
    b[0] = 0xd3;
    weft__be64_put(b + 1, (uint64_t)v);
    return 9;
}

static size_t mp_str(uint8_t *b, const char *s, size_t n)
{
    b[0] = 0xd9;
    b[1] = (uint8_t)n;
    memcpy(b + 2, s, n);
    return n + 2;
}

/* A random value: small int, short string, or a string over 64 bytes (a
 * ref record: its value lives in the op log only). */
static size_t rand_value(uint8_t *b)
{
    char s[200];
    switch (rnd(3)) {
    case 0:
        return mp_int(b, (int64_t)rnd(1000) - 500);
    case 1: {
        int n = snprintf(s, sizeof s, "v%llu", (unsigned long long)rnd(100000));
        return mp_str(b, s, (size_t)n);
    }
    default: {
        size_t n = 65 + rnd(100);
        for (size_t i = 0; i < n; i++) {
            s[i] = (char)('a' + rnd(26));
        }
        return mp_str(b, s, n);
    }
    }
}

/* ---------------------------------------------------------------- stores */

static void store_open(node *x, const char *dir)
{
    snprintf(x->path, sizeof x->path, "%s/%c", dir, x->tag);
    weft_options o;
    weft_options_init(&o);
    o.flags = WEFT_OPEN_CREATE;
    o.map_size = 64u << 10;
    o.now_ms = clock_cb;
    MUST(weft_store_open(x->path, &o, &x->s));
    weft_info info;
    MUST(weft_store_info(x->s, &info));
    memcpy(x->pk, info.public_key, WEFT_KEY_BYTES);
    report("S %c", x->tag);
}

/* Sometimes close @p x and open it again with a map of one page: LMDB
 * raises that to the pages in use, so the next transaction that needs a new
 * page meets a full map, grows it and replays its journal (whatever that
 * transaction is: local writes, batches, peer records). */
static void maybe_shrink(node *x)
{
    if (no_shrink || rnd(4) != 0) {
        return;
    }
    weft_store_close(&x->s);
    weft_options o;
    weft_options_init(&o);
    o.map_size = 4096;
    o.now_ms = clock_cb;
    MUST(weft_store_open(x->path, &o, &x->s));
}

static void peer_add(node *x, node *y)
{
    char card[WEFT_CARD_MAX], name[2] = {y->tag, '\0'};
    MUST(weft_card(y->s, NULL, card, sizeof card));
    maybe_shrink(x);
    MUST(weft_peer_add(x->s, name, card, NULL, WEFT_ROLE_DEVICE));
    report("P %c", x->tag);
}

/* ---------------------------------------------------------------- 1. local writes */

/* A local write transaction; @p before_commit (if not NULL) runs once the
 * ops are written, before the commit or abort. */
static void local_txn_hook(node *x, void (*before_commit)(int), int arg)
{
    static const char *const colls[] = {"c0", "c1"};
    static const char *const regs[] = {"r0", "r1", "r2"};
    unsigned tid = ++txn_seq;
    weft_txn *t = NULL;
    now_ms += rnd(3);
    maybe_shrink(x);
    MUST(weft_txn_begin(x->s, 0, &t));
    unsigned nops = 1 + (unsigned)rnd(6), issued = 0;
    for (unsigned i = 0; i < nops; i++) {
        const char *coll = colls[rnd(2)];
        char ent[8];
        snprintf(ent, sizeof ent, "e%u", (unsigned)rnd(6));
        uint8_t val[256], elem[16];
        size_t vlen = rand_value(val);
        size_t elen = mp_int(elem, (int64_t)rnd(5));
        weft_id id = {0, 0};
        int rc;
        switch (rnd(10)) {
        case 0:
        case 1:
        case 2:
            rc = weft_set(t, coll, ent, regs[rnd(3)], val, vlen, &id);
            break;
        case 3:
            rc = weft_inc(t, coll, ent, "n", (int64_t)rnd(21) - 10, &id);
            break;
        case 4:
        case 5:
            rc = weft_add(t, coll, ent, "tags", elem, elen, &id);
            break;
        case 6:
            rc = weft_rem(t, coll, ent, "tags", elem, elen, &id);
            break;
        case 7:
            rc = weft_del(t, coll, ent, &id);
            break;
        default:
            rc = weft_resolve(t, coll, ent, "r0", val, vlen, &id);
            break;
        }
        if (rc == WEFT_ENOTFOUND) { /* rem of an absent element, resolve without a conflict */
            continue;
        }
        if (rc != 0) {
            die(4, "local write -> %s", weft_err_name(rc));
        }
        issued++;
        report("O %c %u %llx %llx", x->tag, tid, (unsigned long long)id.hlc,
               (unsigned long long)id.device);
    }
    if (before_commit != NULL) {
        before_commit(arg);
    }
    if (rnd(6) == 0) {
        weft_txn_abort(&t);
        report("X %c %u", x->tag, tid);
    } else {
        commit_synced(&t, x, tid, issued);
        report("C %c %u", x->tag, tid);
    }
}

static void local_txn(node *x)
{
    local_txn_hook(x, NULL, 0);
}

/* ---------------------------------------------------------------- 3. group commit */

/* GROUP_THREADS threads write store a at once, GROUP_ROUNDS rounds: in each,
 * one thread begins a transaction and writes, then lets the others begin
 * theirs (they wait for the group) and commits after a pause, so the others
 * join its group commit as followers. */
#define GROUP_THREADS 3
#define GROUP_ROUNDS  3

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_go = -1;   /* the round whose leader holds its transaction */
static unsigned g_done; /* thread-rounds finished */

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

static void let_others_begin(int round)
{
    pthread_mutex_lock(&g_mu);
    g_go = round;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    nap_us(1500); /* they reach weft_txn_begin and wait for the group */
}

static void *group_thread(void *arg)
{
    uint64_t *seed = arg;
    int id = (int)seed[1];
    rng = seed[0];
    for (int r = 0; r < GROUP_ROUNDS; r++) {
        if (r % GROUP_THREADS == id) {
            local_txn_hook(&nodes[0], let_others_begin, r);
        } else {
            pthread_mutex_lock(&g_mu);
            while (g_go < r) {
                pthread_cond_wait(&g_cv, &g_mu);
            }
            pthread_mutex_unlock(&g_mu);
            local_txn(&nodes[0]);
        }
        pthread_mutex_lock(&g_mu);
        g_done++;
        pthread_cond_broadcast(&g_cv);
        while (g_done < (unsigned)(GROUP_THREADS * (r + 1))) {
            pthread_cond_wait(&g_cv, &g_mu);
        }
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

static void group_phase(void)
{
    pthread_t th[GROUP_THREADS];
    uint64_t seeds[GROUP_THREADS][2];
    no_shrink = true;
    for (int i = 0; i < GROUP_THREADS; i++) {
        seeds[i][0] = rnd(0);
        seeds[i][1] = (uint64_t)i;
        if (pthread_create(&th[i], NULL, group_thread, seeds[i]) != 0) {
            die(8, "pthread_create");
        }
    }
    for (int i = 0; i < GROUP_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    no_shrink = false;
}

/* ---------------------------------------------------------------- 2. remote apply */

typedef struct opvec {
    weft_op *v;
    size_t n, cap;
} opvec;

static int collect(const weft_op *op, void *user)
{
    opvec *o = user;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        if (o->v == NULL) {
            die(5, "out of memory");
        }
    }
    weft_op c = *op;
    void *p = malloc(op->payload.len ? op->payload.len : 1);
    if (p == NULL) {
        die(5, "out of memory");
    }
    memcpy(p, op->payload.ptr, op->payload.len);
    c.payload.ptr = p;
    o->v[o->n++] = c;
    return 0;
}

static void opvec_free(opvec *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free((void *)o->v[i].payload.ptr);
    }
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* The ops @p from holds that @p to lacks. */
static void missing(node *from, node *to, opvec *out)
{
    weft_txn *t = NULL;
    weft_vv *have = NULL;
    MUST(weft_txn_begin(to->s, WEFT_TXN_RDONLY, &t));
    MUST(weft_store_vv(t, &have));
    weft_txn_abort(&t);
    MUST(weft_txn_begin(from->s, WEFT_TXN_RDONLY, &t));
    if (weft_ops_since(t, have, collect, out) < 0) {
        die(5, "weft_ops_since");
    }
    weft_txn_abort(&t);
    weft_vv_destroy(&have);
}

/* Apply what @p to lacks of @p from, in rounds until nothing is missing. */
static void remote_apply(node *from, node *to)
{
    char ids[3000];
    for (int round = 0; round < 50; round++) {
        opvec o = {NULL, 0, 0};
        missing(from, to, &o);
        if (o.n == 0) {
            opvec_free(&o);
            return;
        }
        size_t i = 0;
        bool aborted = false;
        while (i < o.n && !aborted) {
            unsigned tid = ++txn_seq;
            weft_txn *t = NULL;
            now_ms += rnd(3);
            maybe_shrink(to);
            MUST(weft_txn_begin(to->s, 0, &t));
            size_t first = i;
            for (unsigned b = 1 + (unsigned)rnd(2); b > 0 && i < o.n; b--) {
                size_t n = 1 + rnd(8);
                n = n > o.n - i ? o.n - i : n;
                if (n >= 2 && rnd(3) == 0) { /* the batch without its first op: a gap */
                    ids_text(ids, sizeof ids, o.v + i + 1, n - 1);
                    report("G %c %u%s", to->tag, tid, ids);
                    weft_apply_result res;
                    int rc = weft_apply(t, o.v + i + 1, n - 1, &res);
                    if (rc != WEFT_EGAP) {
                        die(6, "a batch with a gap -> %s", weft_err_name(rc));
                    }
                }
                ids_text(ids, sizeof ids, o.v + i, n);
                report("R %c %u%s", to->tag, tid, ids);
                weft_apply_result res;
                MUST(weft_apply(t, o.v + i, n, &res));
                if (res.applied != n) {
                    die(6, "batch of %zu applied %zu", n, res.applied);
                }
                i += n;
            }
            if (rnd(8) == 0) {
                weft_txn_abort(&t);
                report("X %c %u", to->tag, tid);
                aborted = true; /* what follows would not connect: export again */
            } else {
                commit_synced(&t, to, tid, (unsigned)(i - first));
                report("C %c %u", to->tag, tid);
            }
        }
        opvec_free(&o);
    }
    die(6, "remote apply did not converge");
}

/* ---------------------------------------------------------------- 4. a session */

typedef struct frame {
    uint8_t *p;
    size_t len;
} frame;

typedef struct fq {
    frame v[4096];
    size_t head, n;
} fq;

typedef struct slink {
    weft__session *ss[2];
    fq q[2];           /* q[i]: frames on their way to side i */
    uint64_t ops_seq;  /* seq of the OPS side `ops_side` is applying */
    unsigned ops_tid;  /* its txn */
    int ops_side;      /* -1: none */
    unsigned sessions; /* created so far */
} slink;

static slink lk;

static void fq_push(fq *q, const uint8_t *p, size_t len)
{
    if (q->n == sizeof q->v / sizeof q->v[0]) {
        die(7, "frame queue full");
    }
    frame *f = &q->v[(q->head + q->n++) % (sizeof q->v / sizeof q->v[0])];
    f->p = malloc(len ? len : 1);
    if (f->p == NULL) {
        die(7, "out of memory");
    }
    memcpy(f->p, p, len);
    f->len = len;
}

static frame fq_pop(fq *q)
{
    frame f = q->v[q->head];
    q->head = (q->head + 1) % (sizeof q->v / sizeof q->v[0]);
    q->n--;
    return f;
}

static void fq_clear(fq *q)
{
    while (q->n > 0) {
        frame f = fq_pop(q);
        free(f.p);
    }
}

/* Move side @p i's outgoing frames to the other side's queue; an ACK of the
 * OPS side i is applying closes that txn (APPLIED/DEFERRED: committed, GAP:
 * aborted). */
static void drain(int i)
{
    weft_bytes f;
    while (lk.ss[i] != NULL && weft__session_next(lk.ss[i], &f) == 1) {
        weft__msg m;
        if (lk.ops_side == i && weft__msg_decode(f.ptr, f.len, &m) == 0) {
            if (m.type == WEFT__MSG_ACK && m.seq == lk.ops_seq) {
                report("%c %c %u", m.status == WEFT__ACK_GAP ? 'X' : 'C', nodes[i].tag, lk.ops_tid);
                lk.ops_side = -1;
            }
            weft__msg_free(&m);
        }
        fq_push(&lk.q[1 - i], f.ptr, f.len);
    }
}

static void session_open(void)
{
    lk.ops_side = -1;
    no_shrink = true; /* sessions borrow the store handles */
    for (int i = 0; i < 2; i++) {
        weft__session_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        memcpy(cfg.peer_key, nodes[1 - i].pk, WEFT_KEY_BYTES);
        cfg.name[0] = nodes[1 - i].tag;
        cfg.role = WEFT_ROLE_DEVICE;
        cfg.dead_ms = 3600000; /* simulated time; nothing here goes silent */
        cfg.window = 1 + (uint32_t)rnd(WEFT__WINDOW);
        cfg.batch_ops = 1 + (uint32_t)rnd(16);
        MUST(weft__session_new(nodes[i].s, &cfg, now_ms, &lk.ss[i]));
    }
    lk.sessions++;
    drain(0);
    drain(1);
}

/* Persist what side @p i's session knows the peer acknowledged (the
 * engine's status tick, and what it does before closing a link). */
static void session_save(int i)
{
    weft_txn *t = NULL;
    now_ms += rnd(2);
    MUST(weft_txn_begin(nodes[i].s, 0, &t));
    MUST(weft__session_save(lk.ss[i], t));
    MUST(weft_txn_commit(&t));
}

static void session_close(void)
{
    for (int i = 0; i < 2; i++) {
        session_save(i);
        weft__session_destroy(&lk.ss[i]);
        fq_clear(&lk.q[i]);
    }
    no_shrink = false;
}

/* Deliver the next frame to side @p i. */
static void deliver(int i)
{
    char ids[3000];
    frame f = fq_pop(&lk.q[i]);
    weft__msg m;
    if (weft__msg_decode(f.p, f.len, &m) != 0) {
        die(7, "a frame does not decode");
    }
    if (m.type == WEFT__MSG_OPS) {
        lk.ops_tid = ++txn_seq;
        lk.ops_seq = m.seq;
        lk.ops_side = i;
        ids_text(ids, sizeof ids, m.ops, m.nops);
        report("R %c %u%s", nodes[i].tag, lk.ops_tid, ids);
    }
    weft__msg_free(&m);
    int rc = weft__session_recv(lk.ss[i], f.p, f.len, now_ms);
    free(f.p);
    if (rc != 0) {
        die(7, "session %c recv -> %s", nodes[i].tag, weft_err_name(rc));
    }
    drain(i);
    if (lk.ops_side == i) {
        die(7, "no ACK for OPS %llu", (unsigned long long)lk.ops_seq);
    }
}

static void poll_both(void)
{
    for (int i = 0; i < 2; i++) {
        int rc = weft__session_poll(lk.ss[i], now_ms);
        if (rc != 0) {
            die(7, "session %c poll -> %s", nodes[i].tag, weft_err_name(rc));
        }
        drain(i);
    }
}

static bool quiet(void)
{
    return lk.q[0].n == 0 && lk.q[1].n == 0 && weft__session_caught_up(lk.ss[0]) &&
           weft__session_caught_up(lk.ss[1]);
}

static void session_phase(void)
{
    session_open();
    unsigned writes = 0, nwrites = 6 + (unsigned)rnd(6);
    bool cut = false;
    for (unsigned step = 0; step < 200000; step++) {
        uint64_t r = rnd(100);
        if (r < 6 && writes < nwrites) {
            local_txn(&nodes[rnd(2)]);
            writes++;
        } else if (r < 8 && !cut && writes >= nwrites / 2) {
            session_close();
            maybe_shrink(&nodes[0]);
            maybe_shrink(&nodes[1]);
            session_open();
            cut = true;
        } else if (r < 12) {
            session_save((int)rnd(2));
        } else if (lk.q[0].n + lk.q[1].n > 0) {
            int i = lk.q[0].n == 0 ? 1 : lk.q[1].n == 0 ? 0 : (int)rnd(2);
            deliver(i);
        }
        now_ms += rnd(3);
        poll_both();
        if (writes >= nwrites && cut && quiet()) {
            session_close();
            return;
        }
    }
    die(7, "the session did not converge");
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: crash_work DIR SEED  (reports on fd 3)\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t seed = strtoull(argv[2], NULL, 0);
    rng = seed * UINT64_C(0x2545f4914f6cdd1d) + 1;
    nodes[0].tag = 'a';
    nodes[1].tag = 'b';
    store_open(&nodes[0], dir);
    store_open(&nodes[1], dir);
    peer_add(&nodes[0], &nodes[1]);
    peer_add(&nodes[1], &nodes[0]);
    for (int i = 0; i < 12; i++) {
        local_txn(&nodes[rnd(2)]);
    }
    remote_apply(&nodes[1], &nodes[0]);
    remote_apply(&nodes[0], &nodes[1]);
    for (int i = 0; i < 6; i++) {
        local_txn(&nodes[rnd(2)]);
    }
    group_phase();
    session_phase();
    weft_store_close(&nodes[0].s);
    weft_store_close(&nodes[1].s);
    report("D");
    return 0;
}
