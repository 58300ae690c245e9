/* net_helpers.h - the harness shared by the multi-process suites of
 * tests/net (test_net.c, test_hostile.c, test_chaos.c): spawning the built
 * `weft` binary in the foreground (RUN, OK, OKJ) and in the background (bg,
 * serve; bg_at and serve_at restart a daemon in its slot), stores and trust
 * between them, free loopback endpoints, and replica state to compare.
 *
 * Each test gets its own temporary directory (net_setup, under /dev/shm when
 * it exists) holding its stores and the logs of the processes it starts.
 * Background processes are recorded in procs[] and SIGKILLed by
 * net_teardown, so a failing assertion leaves nothing running. Foreground
 * runs are killed after RUN_TIMEOUT_S.
 *
 * Invariants:
 *   1. Every process recorded in procs[] is dead after net_teardown.
 *   2. root is the directory of the running test; every path helper points
 *      inside it.
 * Thread-safety: none; criterion runs each test in its own process.
 */
#ifndef WEFT_TESTS_NET_HELPERS_H
#define WEFT_TESTS_NET_HELPERS_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WEFT_BIN      WEFT_TEST_BIN_DIR "/tools/weft"
#define RUN_TIMEOUT_S 40
#define ARGS_MAX      32
#define PROCS_MAX     16

typedef struct bgproc {
    pid_t pid;
    char log[512];
} bgproc;

typedef struct run_result {
    int status; /* exit code; 128 + signal if killed */
    char *out, *err;
} run_result;

extern char root[256];          /* this test's directory */
extern bgproc procs[PROCS_MAX]; /* background processes (bg, serve) */
extern int nprocs;

/* Suite init / fini: make root; kill every background process, remove root
 * (kept when WEFT_TEST_KEEP is set). */
void net_setup(void);
void net_teardown(void);

void rm_rf(const char *p);
/* A path in root; kept for the whole test (ring of 64). */
const char *path(const char *name);
/* A path in root that is never reused (16 per test). */
const char *kpath(const char *name);
/* The whole file, NUL-terminated ("" if it cannot be read); caller frees. */
char *slurp(const char *file);
uint64_t now_ms(void);
void nap_ms(long ms);

/* posix_spawn `args` (args[0] the binary) with stdin @p in (NULL: /dev/null),
 * stdout/stderr to files, WEFT_CLOCK_OFFSET_MS=@p offset when not NULL. */
pid_t spawn(const char *offset, const char *in, const char *out, const char *err, char **args);
/* args = {WEFT_BIN, "--dir", dir, the va_list up to NULL}; the count. */
int collect_args(char **args, const char *dir, va_list ap);
/* Exit code (128 + signal if killed); -1 (and SIGKILL) after @p timeout_ms. */
int wait_exit(pid_t pid, long timeout_ms);

/* Run `weft --dir DIR args... NULL` in the foreground, clock shifted by
 * @p offset (NULL: not shifted). */
run_result runo(const char *offset, const char *dir, ...);
void run_free(run_result *r);
/* Expect exit 0; return stdout (caller frees). */
char *ok_check(run_result r, const char *what);
json_t *parse(const char *text);
json_t *okj(char *out);

#define RUN(dir, ...)      runo(NULL, dir, __VA_ARGS__, NULL)
#define OK(dir, ...)       ok_check(runo(NULL, dir, __VA_ARGS__, NULL), #__VA_ARGS__)
#define OKO(off, dir, ...) ok_check(runo(off, dir, __VA_ARGS__, NULL), #__VA_ARGS__)
#define OKJ(dir, ...)      okj(OK(dir, __VA_ARGS__, "--json"))

/* Start `weft --dir DIR args... NULL` in the background, stdout and stderr in
 * <root>/<name>.out and <root>/<name>.log; its slot in procs[]. */
int bg(const char *name, const char *offset, const char *dir, ...);
/* Wait until the log of @p slot contains @p needle; fail after @p ms. */
void wait_log(int slot, const char *needle, long ms);
/* Send @p sig to a background process and wait for it; its exit status. */
int stop(int slot, int sig);
int alive(int slot);

/* A free TCP port on 127.0.0.1, and "tcp://127.0.0.1:<port>" (ring of 8). */
int free_port(void);
const char *endpoint(void);

/* `weft init` a store <root>/<name>; its path. */
const char *store(const char *name, const char *offset);
/* The card of store @p dir (with @p addr when not NULL); caller frees. */
char *card(const char *dir, const char *addr);
/* Make @p a trust @p b under @p bname (at @p baddr, as a relay if @p relay). */
void trust(const char *a, const char *bname, const char *b, const char *baddr, int relay);
/* `weft serve` on @p dir listening on @p ep, waited for until it logs. */
int serve(const char *name, const char *offset, const char *dir, const char *ep, int relay);

/* Notes, conflicts and version vector as one comparable string; caller frees. */
char *state(const char *dir);
void same_state(const char *a, const char *b);
json_int_t status_int(const char *dir, const char *key);
/* The peer @p name in `peer ls --json` of @p dir (caller decrefs). */
json_t *peer_of(const char *dir, const char *name);
/* fill() writes ops of FILL_PAYLOAD bytes each, so that a sender cuts a
 * batch of them by the payload-byte cap of an OPS (1 MiB, protocol.md) at
 * exactly FILL_BATCH ops (4,096, the op-count cap too): a backlog of them
 * is ~20 batches at 80,000 ops. */
#define FILL_PAYLOAD 256u
#define FILL_BATCH   ((1u << 20) / FILL_PAYLOAD)
/* Write @p n ops (collection bulk, entities big-<i>, 0 <= i < 10^6) of
 * exactly @p payload bytes each (33..279) through the API, one txn; the size
 * is checked on the first op written. */
void fill_sized(const char *dir, int n, size_t payload);
/* fill_sized(dir, n, FILL_PAYLOAD). */
void fill(const char *dir, int n);
/* Ops held by @p dir (0 if it cannot be opened). */
uint64_t ops_of(const char *dir);
uint64_t wait_ops_above(const char *dir, uint64_t above, long ms);
/* Each device's ops form one unbroken dprev chain ending at its vv entry;
 * the number of ops. */
size_t check_chains(const char *dir);
/* "synced with b: sent N ops, received M ops in T ms" -> N, M. */
void sync_counts(const char *out, unsigned long *sent, unsigned long *recv);

/* ---- restartable daemons (test_chaos.c) ---- */

/* Like bg, but into slot @p slot of procs[] (-1: a new slot), whose previous
 * process must be gone (pid 0): a daemon killed and started again keeps its
 * slot, so restarts do not use up PROCS_MAX. */
int bg_at(int slot, const char *name, const char *offset, const char *dir, ...);
/* Like serve, into slot @p slot (-1: a new slot). */
int serve_at(int slot, const char *name, const char *offset, const char *dir, const char *ep,
             int relay);
/* If the process of @p slot has exited, reap it, clear its pid, put its exit
 * status (128 + signal if killed) in *status and return 1; else 0. */
int reaped(int slot, int *status);
/* The last @p n bytes of the log of @p slot, NUL-terminated; caller frees. */
char *log_tail(int slot, size_t n);

#endif
