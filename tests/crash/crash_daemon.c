/* crash_daemon.c - random-time kills in the middle of large syncs between
 * processes (ctest "crash_daemon"). Where the crash sweep stops a process at
 * numbered points of weft's own code, this stops real processes at seeded
 * random moments, so the kill also lands inside LMDB's commit, inside
 * ZeroMQ, between a commit and its ACK, anywhere.
 *
 *   crash_daemon WEFT_BIN
 * Environment: WEFT_CRASH_SEED (default 1), WEFT_CRASH_ROUNDS (default 12).
 *
 * Two stores, a and b, trust each other; b runs `weft serve` (the daemon), a
 * runs `weft sync b` (the client). Each round first writes a few thousand
 * ops on a and some hundreds on b (one transaction each), starts both, and
 * after a random delay (uniform over the time a whole sync took in round 0)
 * SIGKILLs the daemon (two rounds in three) or the client, then stops the
 * other with SIGTERM. Then both stores are checked (check.h): they open;
 * log, index and vector agree; state equals a rebuild from the log; every op
 * a store wrote itself is still there and it holds at least as many of the
 * other's ops as after the previous round; each store's acknowledged vector
 * of the other is <= the other's version vector; no stamp is reissued. A
 * last sync without kills must then leave equal replicas whose acknowledged
 * vectors equal each other's version vectors.
 *
 * Invariants: every process started is waited for; the directory is removed
 * when every check passed.
 * Thread-safety: single-threaded program.
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tests/splitmix.h"

extern char **environ;

static const char *weft_bin;
static char root[256], dir_a[300], dir_b[300], ep[64];
static uint64_t rng;

static uint64_t rnd(uint64_t n)
{
    return splitmix_below(&rng, n);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static void fatal(const char *what)
{
    fprintf(stderr, "crash_daemon: %s: %s (%s)\n", what, strerror(errno), weft_last_error());
    exit(2);
}

/* `weft --dir DIR args...`, stdout and stderr to @p log. */
static pid_t spawn(const char *dir, const char *log, const char *const *args)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)weft_bin;
    argv[n++] = (char *)"--dir";
    argv[n++] = (char *)dir;
    for (; *args != NULL && n < 15; args++) {
        argv[n++] = (char *)*args;
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, weft_bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        fatal("posix_spawn");
    }
    return pid;
}

/* Wait for @p pid; its exit code, 128 + signal, or -1 after @p ms (then it
 * is SIGKILLed and reaped). */
static int wait_for(pid_t pid, long ms)
{
    double t0 = now_s();
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if ((now_s() - t0) * 1000 > ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        nap_ms(2);
    }
}

static bool file_has(const char *file, const char *needle)
{
    FILE *f = fopen(file, "r");
    char line[1024];
    bool found = false;
    while (f != NULL && !found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return found;
}

static pid_t serve_b(int round)
{
    char log[400];
    snprintf(log, sizeof log, "%s/serve-%d.log", root, round);
    const char *args[] = {"serve", "--listen", ep, NULL};
    pid_t pid = spawn(dir_b, log, args);
    double t0 = now_s();
    while (!file_has(log, "serving")) {
        if (now_s() - t0 > 20 || waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "crash_daemon: weft serve did not start (see %s)\n", log);
            exit(2);
        }
        nap_ms(5);
    }
    return pid;
}

static pid_t sync_a(int round)
{
    char log[400];
    snprintf(log, sizeof log, "%s/sync-%d.log", root, round);
    const char *args[] = {"sync", "b", "--timeout", "60", NULL};
    return spawn(dir_a, log, args);
}

static void free_endpoint(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fatal("finding a free port");
    }
    close(fd);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
}

/* @p n ops on @p dir in one transaction: entities r<round>-<i>, ~100 bytes. */
static void fill(const char *dir, int round, int n)
{
    weft_store *s = ck_open(dir, false, NULL);
    weft_txn *t = NULL;
    if (s == NULL || weft_txn_begin(s, 0, &t) != 0) {
        fatal("fill");
    }
    for (int i = 0; i < n; i++) {
        char id[32], val[128];
        snprintf(id, sizeof id, "r%02d-%06d", round, i);
        snprintf(val, sizeof val, "round %d op %06d, padded to about a hundred bytes: 0123456789",
                 round, i);
        if (weft_set_str(t, "bulk", id, "v", val) != 0) {
            fatal("fill");
        }
    }
    if (weft_txn_commit(&t) != 0) {
        fatal("fill commit");
    }
    weft_store_close(&s);
}

static uint64_t vv_get(weft_store *s, uint64_t device)
{
    weft_txn *t = NULL;
    weft_vv *vv = NULL;
    uint64_t h = 0;
    if (weft_txn_begin(s, WEFT_TXN_RDONLY, &t) == 0 && weft_store_vv(t, &vv) == 0) {
        h = weft_vv_get(vv, device);
    }
    weft_vv_destroy(&vv);
    weft_txn_abort(&t);
    return h;
}

static int count_cb(const weft_op *op, void *user)
{
    (void)op;
    (void)user;
    return 0;
}

/* Ops each of the two stores lacks of the other's: what a sync must move. */
static uint64_t pending(void)
{
    weft_store *s[2] = {ck_open(dir_a, false, NULL), ck_open(dir_b, false, NULL)};
    weft_vv *vv[2] = {NULL, NULL};
    weft_txn *t = NULL;
    uint64_t n = 0;
    for (int i = 0; i < 2 && s[0] != NULL && s[1] != NULL; i++) {
        if (weft_txn_begin(s[i], WEFT_TXN_RDONLY, &t) == 0 && weft_store_vv(t, &vv[i]) != 0) {
            vv[i] = NULL;
        }
        weft_txn_abort(&t);
    }
    for (int i = 0; i < 2 && vv[0] != NULL && vv[1] != NULL; i++) {
        if (weft_txn_begin(s[i], WEFT_TXN_RDONLY, &t) == 0) {
            int c = weft_ops_since(t, vv[1 - i], count_cb, NULL);
            n += c > 0 ? (uint64_t)c : 0;
        }
        weft_txn_abort(&t);
    }
    for (int i = 0; i < 2; i++) {
        weft_vv_destroy(&vv[i]);
        weft_store_close(&s[i]);
    }
    return n;
}

static uint64_t ops_of(weft_store *s)
{
    weft_info info;
    return weft_store_info(s, &info) == 0 ? info.ops : 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: crash_daemon WEFT_BIN\n");
        return 2;
    }
    weft_bin = argv[1];
    const char *e = getenv("WEFT_CRASH_SEED");
    uint64_t seed = e != NULL ? strtoull(e, NULL, 0) : 1;
    e = getenv("WEFT_CRASH_ROUNDS");
    int rounds = e != NULL ? atoi(e) : 12;
    rng = seed;
    signal(SIGPIPE, SIG_IGN);
    alarm(900);
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/weft-crashd-XXXXXX", base);
    if (mkdtemp(root) == NULL) {
        fatal("mkdtemp");
    }
    snprintf(dir_a, sizeof dir_a, "%s/a", root);
    snprintf(dir_b, sizeof dir_b, "%s/b", root);
    free_endpoint();
    double t0 = now_s();

    /* Two stores that trust each other; a connects to b. */
    weft_store *a = ck_open(dir_a, true, NULL), *b = ck_open(dir_b, true, NULL);
    char card_a[WEFT_CARD_MAX], card_b[WEFT_CARD_MAX];
    if (a == NULL || b == NULL || weft_card(a, NULL, card_a, sizeof card_a) != 0 ||
        weft_card(b, NULL, card_b, sizeof card_b) != 0 ||
        weft_peer_add(a, "b", card_b, ep, WEFT_ROLE_DEVICE) != 0 ||
        weft_peer_add(b, "a", card_a, NULL, WEFT_ROLE_DEVICE) != 0) {
        fatal("setting up the stores");
    }
    uint64_t dev_a = weft_store_device(a), dev_b = weft_store_device(b);
    weft_store_close(&a);
    weft_store_close(&b);

    double full_ms = 0, pending0 = 1;
    int killed_daemon = 0, killed_client = 0, interrupted = 0;
    uint64_t a_has_b = 0, b_has_a = 0; /* lower bounds from the previous round */
    for (int round = 0; round <= rounds; round++) {
        snprintf(ck_ctx, sizeof ck_ctx, "seed %llu round %d", (unsigned long long)seed, round);
        fill(dir_a, round, 4000 + (int)rnd(4000));
        fill(dir_b, round, 500 + (int)rnd(1000));
        weft_store *sa = ck_open(dir_a, false, NULL), *sb2 = ck_open(dir_b, false, NULL);
        uint64_t own_a = sa ? vv_get(sa, dev_a) : 0, own_b = sb2 ? vv_get(sb2, dev_b) : 0;
        weft_store_close(&sa);
        weft_store_close(&sb2);
        double backlog = (double)pending();

        pid_t d = serve_b(round);
        double s0 = now_s();
        pid_t c = sync_a(round);
        bool victim_daemon = rnd(3) != 0;
        if (round == 0) { /* calibration: a whole sync, no kill */
            ck(wait_for(c, 90000) == 0, "the calibration sync failed (see %s/sync-0.log)", root);
            full_ms = (now_s() - s0) * 1000;
            pending0 = backlog > 0 ? backlog : 1;
            kill(d, SIGTERM);
            ck(wait_for(d, 20000) == 0, "weft serve did not stop cleanly");
        } else {
            /* Uniform over the time this backlog should take, plus 10%. */
            double est = full_ms * (backlog > pending0 ? backlog / pending0 : 1);
            long delay = (long)rnd((uint64_t)(est * 1.1) + 1);
            nap_ms(delay);
            pid_t victim = victim_daemon ? d : c, other = victim_daemon ? c : d;
            kill(victim, SIGKILL);
            wait_for(victim, 20000);
            kill(other, SIGTERM);
            wait_for(other, 30000);
            victim_daemon ? killed_daemon++ : killed_client++;
            printf("round %d: %s killed after %ld ms of ~%.0f (%.0f ops to move)\n", round,
                   victim_daemon ? "weft serve (b)" : "weft sync (a)", delay, est, backlog);
        }

        /* The checks. */
        a = ck_open(dir_a, false, NULL);
        b = ck_open(dir_b, false, NULL);
        if (a != NULL && b != NULL) {
            ck_log(a, NULL, NULL);
            ck_log(b, NULL, NULL);
            ck(vv_get(a, dev_a) == own_a, "a lost its own ops");
            ck(vv_get(b, dev_b) == own_b, "b lost its own ops");
            uint64_t ab = vv_get(a, dev_b), ba = vv_get(b, dev_a);
            ck(ab >= a_has_b, "a holds fewer of b's ops than after the last round");
            ck(ba >= b_has_a, "b holds fewer of a's ops than after the last round");
            interrupted += round > 0 && (ab < own_b || ba < own_a);
            a_has_b = ab;
            b_has_a = ba;
            ck_acked(a, b, true);
            ck_acked(b, a, true);
            char scratch[400];
            snprintf(scratch, sizeof scratch, "%s/rebuild", root);
            ck_rebuild(a, scratch);
            ck_rebuild(b, scratch);
            printf("  a holds %llu ops, b %llu\n", (unsigned long long)ops_of(a),
                   (unsigned long long)ops_of(b));
        }
        weft_store_close(&a);
        weft_store_close(&b);
        ck_hlc(dir_a, 1000);
        ck_hlc(dir_b, 1000);
    }

    /* A last sync without kills converges both ways. */
    snprintf(ck_ctx, sizeof ck_ctx, "seed %llu final sync", (unsigned long long)seed);
    pid_t d = serve_b(rounds + 1);
    ck(wait_for(sync_a(rounds + 1), 90000) == 0, "the final sync failed");
    kill(d, SIGTERM);
    ck(wait_for(d, 20000) == 0, "weft serve did not stop cleanly");
    a = ck_open(dir_a, false, NULL);
    b = ck_open(dir_b, false, NULL);
    if (a != NULL && b != NULL) {
        ck(ck_same(a, b), "replicas differ after the final sync");
        ck_acked_eq(a, b);
        ck_acked_eq(b, a);
    }
    weft_store_close(&a);
    weft_store_close(&b);
    printf("crash daemon: seed %llu, %d rounds, kills: %d weft serve + %d weft sync, %d "
           "interrupted a sync (round 0 sync: %.0f ms), %lu checks, %lu failed, %.1f s\n",
           (unsigned long long)seed, rounds, killed_daemon, killed_client, interrupted, full_ms,
           ck_checks, ck_failures, now_s() - t0);
    if (ck_failures == 0 && getenv("WEFT_CRASH_KEEP") == NULL) {
        ck_rm_rf(root);
    } else {
        printf("kept %s\n", root);
    }
    return ck_failures == 0 ? 0 : 1;
}
