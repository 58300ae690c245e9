/* crash_sweep.c - the crash sweep (ctest "crash"): runs the workload
 * crash_work under seeds, kills it with SIGKILL at every numbered kill point
 * (common/killpoint.h) on several of its passages, reopens its two stores
 * and checks:
 *   - each store opens (a store whose creation was not acknowledged opens
 *     with WEFT_OPEN_CREATE);
 *   - the ops each store holds are exactly those of its acknowledged
 *     transactions plus, all or none, those of each transaction in flight
 *     (one; up to three in the group-commit phase): no acknowledged op
 *     lost, no batch or transaction half applied, nothing aborted or
 *     refused left behind;
 *   - the log, the device index and the version vector agree, and the
 *     materialised state equals a rebuild from the log;
 *   - each acknowledged vector a store keeps of its peer is <= the peer's
 *     version vector (no peer cursor ahead of the data it stands for);
 *   - a clock set behind every stamp issues a stamp above every one held
 *     (no HLC reissued), and the store takes a write.
 *
 *   crash_sweep CRASH_WORK                 the sweep
 *   crash_sweep CRASH_WORK SEED POINT HIT  one case, directory kept
 * Environment: WEFT_CRASH_SEED (first seed, default 1), WEFT_CRASH_SEEDS
 * (default 10), WEFT_CRASH_HITS (passages killed per point and seed, default
 * 8: the first, the last and six seeded others), WEFT_CRASH_KEEP=1 (keep
 * every directory).
 *
 * First a counting run per seed (WEFT_KILL_COUNT) learns how often the
 * workload passes each point; it is checked like a killed run. A point that
 * no seed reaches fails the sweep: the workload must keep covering them.
 *
 * Invariants: every child is waited for; directories of passing runs are
 * removed.
 * Thread-safety: single-threaded program.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/killpoint.h"
#include "tests/splitmix.h"

#define CW_EPOCH UINT64_C(1700000000000) /* crash_work's simulated clock starts here */

enum { TX_OPEN, TX_COMMITTED, TX_ABORTED };

typedef struct ptxn {
    int store; /* 0 a, 1 b, -1 unused */
    int state;
    ck_ids ops;
} ptxn;

typedef struct run_log {
    bool opened[2], peered[2], done;
    ptxn *txn;
    size_t ntxn;
} run_log;

static const char *work_bin;
static char root[256];
static bool keep_all;

/* Figures. */
static unsigned long runs, kills, not_killed, reached_hits[WEFT__KP_MAX + 1],
    killed_at[WEFT__KP_MAX + 1], inflight_kept, inflight_dropped, half_created,
    half_created_plain_open;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
    return splitmix_below(s, n);
}

static unsigned long env_ul(const char *name, unsigned long dflt)
{
    const char *e = getenv(name);
    return e != NULL && *e != '\0' ? strtoul(e, NULL, 0) : dflt;
}

/* ---------------------------------------------------------------- reports */

static ptxn *txn_at(run_log *r, unsigned long tid)
{
    if (tid >= r->ntxn) {
        size_t n = tid + 64;
        r->txn = realloc(r->txn, n * sizeof *r->txn);
        if (r->txn == NULL) {
            abort();
        }
        for (size_t i = r->ntxn; i < n; i++) {
            memset(&r->txn[i], 0, sizeof r->txn[i]);
            r->txn[i].store = -1;
        }
        r->ntxn = n;
    }
    return &r->txn[tid];
}

static void run_log_free(run_log *r)
{
    for (size_t i = 0; i < r->ntxn; i++) {
        ck_ids_free(&r->txn[i].ops);
    }
    free(r->txn);
    memset(r, 0, sizeof *r);
}

/* One report line of crash_work (its file comment lists them). */
static bool parse_line(run_log *r, char *line)
{
    char kind, tag;
    unsigned long tid;
    int used = 0;
    if (strcmp(line, "D") == 0) {
        r->done = true;
        return true;
    }
    if (sscanf(line, "%c %c%n", &kind, &tag, &used) != 2 || (tag != 'a' && tag != 'b')) {
        return false;
    }
    int st = tag - 'a';
    if (kind == 'S' || kind == 'P') {
        (kind == 'S' ? r->opened : r->peered)[st] = true;
        return true;
    }
    char *p = line + used;
    int n = 0;
    if (sscanf(p, " %lu%n", &tid, &n) != 1) {
        return false;
    }
    p += n;
    ptxn *t = txn_at(r, tid);
    if (t->store >= 0 && t->store != st) {
        return false;
    }
    t->store = st;
    unsigned long long h, d;
    switch (kind) {
    case 'O':
        if (sscanf(p, " %llx %llx", &h, &d) != 2) {
            return false;
        }
        ck_ids_add(&t->ops, (weft_id){h, d});
        return true;
    case 'R':
        while (sscanf(p, " %llx:%llx%n", &h, &d, &n) == 2) {
            ck_ids_add(&t->ops, (weft_id){h, d});
            p += n;
        }
        return true;
    case 'G': /* refused whole: its ops are in no txn's set, so held = extra */
        return true;
    case 'C':
        t->state = TX_COMMITTED;
        return true;
    case 'X':
        t->state = TX_ABORTED;
        return true;
    default:
        return false;
    }
}

/* ---------------------------------------------------------------- a run */

/* Run crash_work on @p dir with @p seed; @p kill_at ("P:K") and @p counts
 * (a file) go into its environment when not NULL. Returns its wait status
 * and fills @p r from its reports. */
static int run_work(const char *dir, uint64_t seed, const char *kill_at, const char *counts,
                    run_log *r)
{
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    char seedstr[32], logp[700];
    snprintf(seedstr, sizeof seedstr, "%llu", (unsigned long long)seed);
    snprintf(logp, sizeof logp, "%s/work.log", dir);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        if (fds[1] != 3) {
            dup2(fds[1], 3);
            close(fds[1]);
        }
        int lf = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (lf >= 0) {
            dup2(lf, 1);
            dup2(lf, 2);
            close(lf);
        }
        unsetenv("WEFT_KILL_AT");
        unsetenv("WEFT_KILL_COUNT");
        if (kill_at != NULL) {
            setenv("WEFT_KILL_AT", kill_at, 1);
        }
        if (counts != NULL) {
            setenv("WEFT_KILL_COUNT", counts, 1);
        }
        execl(work_bin, work_bin, dir, seedstr, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        if (buf == NULL) {
            abort();
        }
        ssize_t got = read(fds[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    buf[len] = '\0';
    memset(r, 0, sizeof *r);
    for (char *line = buf, *nl; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL) {
            ck(false, "a report line without its end: \"%s\"", line);
            break;
        }
        *nl = '\0';
        ck(parse_line(r, line), "bad report line \"%s\"", line);
    }
    free(buf);
    runs++;
    return status;
}

/* Check store @p i's ops against the reports: exactly the committed txns'
 * ops, plus all or none of the one txn in flight. */
static void check_ops(weft_store *s, int i, run_log *r)
{
    ck_ids held = {NULL, 0, 0, false}, required = {NULL, 0, 0, false};
    if (!ck_log(s, &held, NULL)) {
        ck_ids_free(&held);
        return;
    }
    ptxn *open[8];
    unsigned nopen = 0;
    for (size_t k = 0; k < r->ntxn; k++) {
        ptxn *t = &r->txn[k];
        if (t->store != i) {
            continue;
        }
        if (t->state == TX_COMMITTED) {
            for (size_t j = 0; j < t->ops.n; j++) {
                ck_ids_add(&required, t->ops.v[j]);
                ck(ck_ids_has(&held, t->ops.v[j]),
                   "store %c lost op %llx.%llx of acknowledged txn %zu", 'a' + i,
                   (unsigned long long)t->ops.v[j].hlc, (unsigned long long)t->ops.v[j].device, k);
            }
        } else if (t->state == TX_OPEN && t->ops.n > 0 && nopen < 8) {
            open[nopen++] = t;
        }
    }
    ck(nopen <= 3, "store %c: %u txns in flight (the workload has at most 3 open)", 'a' + i, nopen);
    /* Ops held beyond the committed txns: none, or those of in-flight txns. */
    for (size_t j = 0; j < held.n; j++) {
        if (!ck_ids_has(&required, held.v[j])) {
            bool in_open = false;
            for (unsigned k = 0; k < nopen && !in_open; k++) {
                in_open = ck_ids_has(&open[k]->ops, held.v[j]);
            }
            ck(in_open,
               "store %c holds op %llx.%llx of no acknowledged or in-flight txn (aborted, "
               "refused or phantom)",
               'a' + i, (unsigned long long)held.v[j].hlc, (unsigned long long)held.v[j].device);
        }
    }
    /* Each txn in flight: all of its new ops or none. */
    for (unsigned k = 0; k < nopen; k++) {
        size_t open_new = 0, open_held = 0;
        for (size_t j = 0; j < open[k]->ops.n; j++) {
            if (!ck_ids_has(&required, open[k]->ops.v[j])) {
                open_new++;
                open_held += ck_ids_has(&held, open[k]->ops.v[j]);
            }
        }
        ck(open_held == 0 || open_held == open_new,
           "store %c holds %zu of the %zu new ops of a txn in flight: half applied", 'a' + i,
           open_held, open_new);
        if (open_new > 0) {
            open_held > 0 ? inflight_kept++ : inflight_dropped++;
        }
    }
    ck_ids_free(&held);
    ck_ids_free(&required);
}

static void check_run(const char *dir, run_log *r)
{
    weft_store *st[2] = {NULL, NULL};
    char path[2][700], scratch[700];
    uint64_t behind = CW_EPOCH;
    for (int i = 0; i < 2; i++) {
        snprintf(path[i], sizeof path[i], "%s/%c", dir, 'a' + i);
        if (r->opened[i]) {
            st[i] = ck_open(path[i], false, &behind);
            continue;
        }
        /* Creation never acknowledged: it may have left a key file, an
         * environment without meta, or a whole store. Opening with CREATE
         * must finish (or redo) it. */
        struct stat sb;
        if (stat(path[i], &sb) == 0) {
            weft_options o;
            weft_options_init(&o);
            weft_store *p = NULL;
            half_created++;
            if (weft_store_open(path[i], &o, &p) == 0) {
                half_created_plain_open++;
                weft_store_close(&p);
            }
        }
        st[i] = ck_open(path[i], true, &behind);
    }
    for (int i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            check_ops(st[i], i, r);
        }
    }
    for (int i = 0; i < 2; i++) {
        if (st[i] != NULL && st[1 - i] != NULL) {
            ck_acked(st[i], st[1 - i], r->peered[i]);
        }
    }
    if (r->done && st[0] != NULL && st[1] != NULL) {
        /* A finished run ends caught up both ways with the acks saved. */
        ck(ck_same(st[0], st[1]), "the finished run left two different replicas");
        ck_acked_eq(st[0], st[1]);
        ck_acked_eq(st[1], st[0]);
    }
    snprintf(scratch, sizeof scratch, "%s/rebuild", dir);
    for (int i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            ck_rebuild(st[i], scratch);
        }
        weft_store_close(&st[i]);
    }
    for (int i = 0; i < 2; i++) {
        ck_hlc(path[i], CW_EPOCH);
    }
}

/* Run one case: a kill at @p point, passage @p hit (point 0: a counting run
 * writing @p counts). Returns true when it passed. */
static bool one_case(uint64_t seed, int point, unsigned long hit, const char *counts, bool keep)
{
    char dir[600], at[64];
    if (point == 0) {
        snprintf(dir, sizeof dir, "%s/s%llu-count", root, (unsigned long long)seed);
    } else {
        snprintf(dir, sizeof dir, "%s/s%llu-p%d-h%lu", root, (unsigned long long)seed, point, hit);
    }
    snprintf(at, sizeof at, "%d:%lu", point, hit);
    snprintf(ck_ctx, sizeof ck_ctx, "seed %llu, kill at %s (%s) hit %lu", (unsigned long long)seed,
             point ? at : "none", point ? weft__kp_name(point) : "counting run", hit);
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(2);
    }
    unsigned long f0 = ck_failures;
    run_log r;
    int status = run_work(dir, seed, point ? at : NULL, counts, &r);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && point != 0) {
        kills++;
        killed_at[point]++;
        ck(!r.done, "killed after it finished");
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        ck(r.done, "exit 0 without finishing");
        not_killed += point != 0; /* the hit was not reached this time (random keys) */
    } else {
        ck(false, "the workload failed: status 0x%x (see %s/work.log)", status, dir);
    }
    check_run(dir, &r);
    run_log_free(&r);
    bool ok = ck_failures == f0;
    if (!ok || keep || keep_all) {
        fprintf(stderr, "  kept %s; replay: WEFT_KILL_AT=%s %s %s %llu 3>/dev/null\n", dir, at,
                work_bin, dir, (unsigned long long)seed);
    } else {
        ck_rm_rf(dir);
    }
    return ok;
}

/* Passages to kill out of @p count: the first, the last and want-2 seeded others. */
static size_t pick_hits(unsigned long count, unsigned long want, uint64_t *rng, unsigned long *out)
{
    size_t n = 0;
    if (count <= want) {
        for (unsigned long k = 1; k <= count; k++) {
            out[n++] = k;
        }
        return n;
    }
    out[n++] = 1;
    out[n++] = count;
    while (n < want) {
        unsigned long k = 2 + (unsigned long)rnd(rng, count - 2);
        bool dup = false;
        for (size_t j = 0; j < n; j++) {
            dup = dup || out[j] == k;
        }
        if (!dup) {
            out[n++] = k;
        }
    }
    return n;
}

static void read_counts(const char *file, unsigned long *counts)
{
    FILE *f = fopen(file, "r");
    int p;
    unsigned long n;
    memset(counts, 0, (WEFT__KP_MAX + 1) * sizeof *counts);
    if (f == NULL) {
        ck(false, "no kill-point counts in %s", file);
        return;
    }
    while (fscanf(f, "%d %lu", &p, &n) == 2) {
        if (p >= 0 && p <= WEFT__KP_MAX) {
            counts[p] = n;
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 5) {
        fprintf(stderr, "usage: crash_sweep CRASH_WORK [SEED POINT HIT]\n");
        return 2;
    }
    work_bin = argv[1];
    keep_all = env_ul("WEFT_CRASH_KEEP", 0) != 0;
    signal(SIGPIPE, SIG_IGN);
    alarm(1800); /* a hang (a lock never released by a dead process) fails, not blocks */
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/weft-crash-XXXXXX", base);
    if (mkdtemp(root) == NULL) {
        perror(root);
        return 2;
    }
    if (argc == 5) {
        bool ok = one_case(strtoull(argv[2], NULL, 0), atoi(argv[3]), strtoul(argv[4], NULL, 0),
                           NULL, true);
        printf("%s: %lu checks, %lu failed\n", ok ? "passed" : "FAILED", ck_checks, ck_failures);
        return ok ? 0 : 1;
    }
    uint64_t seed0 = env_ul("WEFT_CRASH_SEED", 1);
    unsigned long nseeds = env_ul("WEFT_CRASH_SEEDS", 10), want = env_ul("WEFT_CRASH_HITS", 8);
    want = want < 2 ? 2 : want > 64 ? 64 : want;
    double t0 = now_s();
    for (uint64_t seed = seed0; seed < seed0 + nseeds; seed++) {
        char counts_file[600];
        unsigned long counts[WEFT__KP_MAX + 1];
        snprintf(counts_file, sizeof counts_file, "%s/counts-%llu", root, (unsigned long long)seed);
        one_case(seed, 0, 0, counts_file, false);
        read_counts(counts_file, counts);
        unlink(counts_file);
        uint64_t rng = seed;
        for (int p = 1; p <= WEFT__KP_MAX; p++) {
            if (weft__kp_name(p) == NULL || counts[p] == 0) {
                continue;
            }
            reached_hits[p] += counts[p];
            unsigned long hits[64];
            size_t n = pick_hits(counts[p], want, &rng, hits);
            for (size_t j = 0; j < n; j++) {
                one_case(seed, p, hits[j], NULL, false);
            }
        }
    }
    double secs = now_s() - t0;
    snprintf(ck_ctx, sizeof ck_ctx, "coverage over %lu seeds", nseeds);
    unsigned npoints = 0, nreached = 0;
    printf("%-4s %-28s %10s %6s  %s\n", "pt", "name", "passages", "kills", "step");
    for (int p = 1; p <= WEFT__KP_MAX; p++) {
        if (weft__kp_name(p) == NULL) {
            continue;
        }
        npoints++;
        nreached += reached_hits[p] > 0;
        printf("%-4d %-28s %10lu %6lu  %s\n", p, weft__kp_name(p) + 9, reached_hits[p],
               killed_at[p], weft__kp_text(p));
        ck(reached_hits[p] > 0, "kill point %d (%s) is never reached by the workload", p,
           weft__kp_name(p));
    }
    printf("crash sweep: %lu seeds (from %llu), %u/%u points reached, %lu runs, %lu kills "
           "(%lu hits not reached), in-flight txn found committed %lu / rolled back %lu, "
           "unacknowledged creations %lu (%lu opened without CREATE), %lu checks, %lu failed, "
           "%.1f s\n",
           nseeds, (unsigned long long)seed0, nreached, npoints, runs, kills, not_killed,
           inflight_kept, inflight_dropped, half_created, half_created_plain_open, ck_checks,
           ck_failures, secs);
    if (ck_failures == 0 && !keep_all) {
        ck_rm_rf(root);
    }
    return ck_failures == 0 ? 0 : 1;
}
