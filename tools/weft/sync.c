/* sync.c - the sync commands of `weft`: id, peer add/ls/rm, serve (the
 * daemon, also the relay), sync (one session with one peer), and the peers
 * and refusals sections of `status`.
 *
 * Everything goes through the public sync API (<weft/weft_sync.h>): the
 * engine is a background thread owning the sockets; this file only starts
 * it, waits on its event descriptor and a signalfd, and prints. `serve`
 * logs one line per event to stderr ("<time> <peer> <what happened>") until
 * SIGINT or SIGTERM, then stops the engine cleanly; on SIGKILL the library's
 * durability guarantees hold (nothing acknowledged is lost). `sync` starts
 * the engine with connect = 0 and names its one peer with weft_sync_now, so
 * it talks to that peer only; it waits until the peer is LIVE (caught up both
 * ways) and exits 0 with the counts of the engine's health at that moment,
 * or exits 1 with one line naming the cause (a refusal, a deferral by the
 * drift horizon either way, a goodbye, an error, the timeout). Stopping the
 * engine says goodbye to the peer, so its log shows a clean close. `serve`
 * records the endpoint it listens on in <dir>/listen, which `weft id` puts
 * in the card.
 *
 * SIGINT and SIGTERM are blocked before the engine starts (so its thread
 * inherits the mask and never takes them) and read from a signalfd: no
 * handler runs, and czmq's default handler is never installed.
 *
 * Invariants:
 *   1. Every failure prints one line "weft: <what>: <cause>" to stderr as
 *      its last line and returns WEFT_CLI_FAIL or WEFT_CLI_USAGE.
 *   2. The engine is stopped (weft_sync_stop) before the store is closed,
 *      on every path.
 *   3. `sync` exits 0 only after it saw the peer LIVE; its engine connects to
 *      no other peer.
 * Thread-safety: single-threaded program; the engine's thread never calls
 * back into this file (events are read through weft_sync_fd).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <weft/weft.h>

#include "cli.h"

#define SYNC_TIMEOUT_S 30.0 /* `weft sync` without --timeout */
#define TICK_MS        200  /* how often sync re-reads the engine's status */

/* ================================================================ helpers */

/* Monotonic ms, for deadlines and rates (immune to clock steps). */
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *role_name(weft_role r)
{
    return r == WEFT_ROLE_RELAY ? "relay" : "device";
}

/* "2026-11-24T22:42:45.223Z" for a wall-clock time in ms. */
static void ms_time(uint64_t ms, char out[WEFT_CLI_TIME])
{
    weft__cli_time(ms << 16, out);
}

/* Copy @p in to @p out (size @p cap) with newlines and tabs made spaces. */
static void one_line(const char *in, char *out, size_t cap)
{
    snprintf(out, cap, "%s", in ? in : "");
    for (char *p = out; *p; p++) {
        if (*p == '\n' || *p == '\r' || *p == '\t') {
            *p = ' ';
        }
    }
}

/* The file naming the endpoint `weft serve` last listened on. */
static int listen_path(const weft_cli *cli, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/listen", cli->dir);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Record @p ep in <dir>/listen (write a temporary file, then rename). */
static int listen_save(const weft_cli *cli, const char *ep)
{
    char p[4096], tmp[4200];
    if (listen_path(cli, p, sizeof p) != 0) {
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.%ld", p, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        return -1;
    }
    int bad = fprintf(f, "%s\n", ep) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, p) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The endpoint recorded by `weft serve`, or "" when there is none. */
static void listen_load(const weft_cli *cli, char out[WEFT_ENDPOINT_MAX + 1])
{
    char p[4096];
    out[0] = '\0';
    FILE *f = listen_path(cli, p, sizeof p) == 0 ? fopen(p, "r") : NULL;
    if (!f) {
        return;
    }
    if (!fgets(out, WEFT_ENDPOINT_MAX + 1, f)) {
        out[0] = '\0';
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
}

/* Block SIGINT and SIGTERM (inherited by threads started later) and return a
 * signalfd reading them, or -1 with the error printed. */
static int signals_open(const char *what)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) {
        weft__cli_fail(WEFT_CLI_FAIL, "%s: block signals: %s", what, strerror(rc));
        return -1;
    }
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0) {
        weft__cli_fail(WEFT_CLI_FAIL, "%s: signalfd: %s", what, strerror(errno));
    }
    return fd;
}

/* The signal read from @p fd, or 0. */
static int signal_read(int fd)
{
    struct signalfd_siginfo si;
    ssize_t n = read(fd, &si, sizeof si);
    return n == (ssize_t)sizeof si ? (int)si.ssi_signo : 0;
}

/* ================================================================ peers */

typedef struct peer_list {
    weft_peer_status *v;
    size_t n, cap;
    int oom;
} peer_list;

static int peer_collect(const weft_peer_status *st, void *user)
{
    peer_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        weft_peer_status *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *st;
    return 0;
}

int weft__cli_peers_load(weft_store *s, weft_peer_status **out, size_t *n)
{
    peer_list l = {NULL, 0, 0, 0};
    int rc = weft_peer_list(s, peer_collect, &l);
    if (rc < 0) {
        free(l.v);
        return weft__cli_weft_fail(rc, "peers");
    }
    if (l.oom) {
        free(l.v);
        return weft__cli_fail(WEFT_CLI_FAIL, "peers: out of memory");
    }
    *out = l.v;
    *n = l.n;
    return WEFT_CLI_OK;
}

json_t *weft__cli_peer_json(const weft_peer_status *p)
{
    char dev[WEFT_CLI_HEX64], pk[2 * WEFT_KEY_BYTES + 1], when[WEFT_CLI_TIME];
    char msg[WEFT_MSG_MAX];
    weft__cli_hex64(p->device, dev);
    weft__cli_hex(p->public_key, WEFT_KEY_BYTES, pk);
    ms_time(p->last_sync_ms, when);
    one_line(p->last_error_msg, msg, sizeof msg);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:b,s:I,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
        "s:I}",
        "name", p->name, "role", role_name(p->role), "device", dev, "public_key", pk, "addr",
        p->addr, "state", weft_peer_state_name(p->state), "pending_ops", (json_int_t)p->pending_ops,
        "pending_bytes", (json_int_t)p->pending_bytes, "clock_offset_ms",
        (json_int_t)p->clock_offset_ms, "skewed", p->skewed != 0, "last_error_code",
        (json_int_t)p->last_error, "last_error", p->last_error ? weft_err_name(p->last_error) : "",
        "last_error_msg", msg, "last_sync_ms", (json_int_t)p->last_sync_ms, "syncs",
        (json_int_t)p->syncs, "failures", (json_int_t)p->failures, "last_duration_ms",
        (json_int_t)p->last_duration_ms, "ops_sent", (json_int_t)p->ops_sent, "ops_received",
        (json_int_t)p->ops_received, "bytes_sent", (json_int_t)p->bytes_sent, "bytes_received",
        (json_int_t)p->bytes_received, "updated_ms", (json_int_t)p->updated_ms);
    if (o &&
        json_object_set_new(o, "last_sync", p->last_sync_ms ? json_string(when) : json_null())) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* "5 s ago", "3 min ago", "2 h ago", "4 days ago". */
static void ago(uint64_t then_ms, char *out, size_t cap)
{
    uint64_t now = weft__cli_now_ms();
    uint64_t s = now > then_ms ? (now - then_ms) / 1000 : 0;
    if (s < 120) {
        snprintf(out, cap, "%" PRIu64 " s ago", s);
    } else if (s < 7200) {
        snprintf(out, cap, "%" PRIu64 " min ago", s / 60);
    } else if (s < 172800) {
        snprintf(out, cap, "%" PRIu64 " h ago", s / 3600);
    } else {
        snprintf(out, cap, "%" PRIu64 " days ago", s / 86400);
    }
}

/* "12 ops not yet backed up" (relay) or "12 ops not yet sent to laptop". */
static void pending_text(const weft_peer_status *p, char *out, size_t cap)
{
    const char *ops = p->pending_ops == 1 ? "op" : "ops";
    if (p->role == WEFT_ROLE_RELAY) {
        if (p->pending_ops == 0) {
            snprintf(out, cap, "every op backed up");
        } else {
            snprintf(out, cap, "%" PRIu64 " %s not yet backed up", p->pending_ops, ops);
        }
    } else if (p->pending_ops == 0) {
        snprintf(out, cap, "nothing pending for %s", p->name);
    } else {
        snprintf(out, cap, "%" PRIu64 " %s not yet sent to %s", p->pending_ops, ops, p->name);
    }
}

void weft__cli_peers_print(const weft_peer_status *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const weft_peer_status *p = &v[i];
        char dev[WEFT_CLI_HEX64], pend[256], when[WEFT_CLI_TIME], since[64];
        weft__cli_hex64(p->device, dev);
        pending_text(p, pend, sizeof pend);
        printf("  %s  %s %s  %s\n", p->name, role_name(p->role), dev,
               weft_peer_state_name(p->state));
        printf("    addr        %s\n", p->addr[0] ? p->addr : "(none: it connects to us)");
        printf("    pending     %s\n", pend);
        if (p->last_sync_ms) {
            ms_time(p->last_sync_ms, when);
            ago(p->last_sync_ms, since, sizeof since);
            printf("    last sync   %s (%s), %" PRIu64 " sync%s, %" PRIu64 " failure%s\n", when,
                   since, p->syncs, p->syncs == 1 ? "" : "s", p->failures,
                   p->failures == 1 ? "" : "s");
        } else {
            printf("    last sync   never\n");
        }
        printf("    clock       %+" PRId64 " ms%s\n", p->clock_offset_ms,
               p->skewed ? "  SKEWED: ops between us wait until the clocks agree (fix the clock)"
                         : "");
        if (p->last_error) {
            char msg[WEFT_MSG_MAX];
            one_line(p->last_error_msg, msg, sizeof msg);
            printf("    last error  %s: %s\n", weft_err_name(p->last_error),
                   msg[0] ? msg : weft_strerror(p->last_error));
        }
    }
}

/* ================================================================ refusals */

void weft__cli_refusals_print(const weft_refusal *v, size_t n, uint64_t total)
{
    if (total == 0) {
        return;
    }
    printf("refused %" PRIu64 " connection%s", total, total == 1 ? "" : "s");
    if (n > 0) {
        char pk[2 * WEFT_KEY_BYTES + 1], when[WEFT_CLI_TIME];
        weft__cli_hex(v[0].public_key, WEFT_KEY_BYTES, pk);
        ms_time(v[0].at_ms, when);
        printf("; last: key %s from %s at %s", pk, v[0].addr[0] ? v[0].addr : "(unknown)", when);
    }
    printf("\n");
    for (size_t i = 1; i < n; i++) {
        char pk[2 * WEFT_KEY_BYTES + 1], when[WEFT_CLI_TIME];
        weft__cli_hex(v[i].public_key, WEFT_KEY_BYTES, pk);
        ms_time(v[i].at_ms, when);
        printf("  key %s from %s at %s\n", pk, v[i].addr[0] ? v[i].addr : "(unknown)", when);
    }
}

json_t *weft__cli_refusals_json(const weft_refusal *v, size_t n, uint64_t total)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        char pk[2 * WEFT_KEY_BYTES + 1], when[WEFT_CLI_TIME];
        weft__cli_hex(v[i].public_key, WEFT_KEY_BYTES, pk);
        ms_time(v[i].at_ms, when);
        json_t *o = json_pack("{s:s,s:s,s:s,s:I}", "public_key", pk, "addr", v[i].addr, "at", when,
                              "at_ms", (json_int_t)v[i].at_ms);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr ? json_pack("{s:I,s:o}", "total", (json_int_t)total, "recent", arr) : NULL;
}

/* The persisted status of the peer named @p name: 0, or WEFT_ENOTFOUND, or
 * the error of weft_peer_list. */
static int find_peer(weft_store *s, const char *name, weft_peer_status *out)
{
    peer_list l = {NULL, 0, 0, 0};
    int rc = weft_peer_list(s, peer_collect, &l);
    weft_peer_status *v = l.v;
    size_t n = l.n;
    if (rc >= 0 && l.oom) {
        rc = WEFT_ENOMEM;
    }
    if (rc >= 0) {
        rc = WEFT_ENOTFOUND;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(v[i].name, name) == 0) {
                *out = v[i];
                rc = 0;
            }
        }
    }
    free(v);
    return rc;
}

/* ================================================================ id */

int weft__cli_id(const weft_cli *cli)
{
    char ep[WEFT_ENDPOINT_MAX + 1];
    if (cli->addr) {
        snprintf(ep, sizeof ep, "%s", cli->addr);
    } else {
        listen_load(cli, ep);
    }
    weft_store *s = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    char card[WEFT_CARD_MAX];
    int rc = weft_card(s, ep[0] ? ep : NULL, card, sizeof card);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "id");
    } else {
        printf("%s\n", card);
    }
    weft_store_close(&s);
    return status;
}

/* ================================================================ peer */

static int peer_add(const weft_cli *cli, weft_store *s)
{
    const char *name = cli->argv[1], *card = cli->argv[2];
    weft_role role = cli->relay ? WEFT_ROLE_RELAY : WEFT_ROLE_DEVICE;
    int rc = weft_peer_add(s, name, card, cli->addr, role);
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "peer add %s", name);
    }
    weft_peer_status st;
    rc = find_peer(s, name, &st);
    if (rc != 0) {
        return weft__cli_weft_fail(rc, "peer add %s", name);
    }
    char dev[WEFT_CLI_HEX64];
    weft__cli_hex64(st.device, dev);
    printf("added %s %s (device %s)%s%s\n", role_name(st.role), st.name, dev,
           st.addr[0] ? " at " : ", no address: it connects to us", st.addr);
    return WEFT_CLI_OK;
}

static int peer_ls(const weft_cli *cli, weft_store *s)
{
    weft_peer_status *v = NULL;
    size_t n = 0;
    int status = weft__cli_peers_load(s, &v, &n);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    if (!cli->json) {
        if (n == 0) {
            printf("no peers (add one with 'weft peer add NAME CARD')\n");
        }
        weft__cli_peers_print(v, n);
        free(v);
        return WEFT_CLI_OK;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr; i++) {
        if (json_array_append_new(arr, weft__cli_peer_json(&v[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(v);
    json_t *doc = arr ? json_pack("{s:o}", "peers", arr) : NULL;
    char *text = doc ? weft__cli_dumps(doc) : NULL;
    json_decref(doc);
    if (!text) {
        return weft__cli_fail(WEFT_CLI_FAIL, "peer ls: out of memory");
    }
    printf("%s\n", text);
    free(text);
    return WEFT_CLI_OK;
}

int weft__cli_peer(const weft_cli *cli)
{
    const char *verb = cli->argv[0];
    static const char usage[] =
        "usage: weft peer add NAME CARD [--addr ENDPOINT] [--relay] | peer ls [--json] | "
        "peer rm NAME";
    int want = -1;
    unsigned allowed = 0;
    if (strcmp(verb, "add") == 0) {
        want = 3;
        allowed = WEFT_CLI_OPT_ADDR | WEFT_CLI_OPT_RELAY;
    } else if (strcmp(verb, "ls") == 0) {
        want = 1;
        allowed = WEFT_CLI_OPT_JSON;
    } else if (strcmp(verb, "rm") == 0) {
        want = 2;
    } else {
        return weft__cli_fail(WEFT_CLI_USAGE, "peer: unknown verb '%s' (%s)", verb, usage);
    }
    if (cli->argc != want) {
        return weft__cli_fail(WEFT_CLI_USAGE, "peer %s: %s arguments (%s)", verb,
                              cli->argc < want ? "missing" : "too many", usage);
    }
    const char *bad = NULL;
    if (cli->json && !(allowed & WEFT_CLI_OPT_JSON)) {
        bad = "--json";
    } else if (cli->addr && !(allowed & WEFT_CLI_OPT_ADDR)) {
        bad = "--addr";
    } else if (cli->relay && !(allowed & WEFT_CLI_OPT_RELAY)) {
        bad = "--relay";
    }
    if (bad) {
        return weft__cli_fail(WEFT_CLI_USAGE, "peer %s: unknown flag '%s' (%s)", verb, bad, usage);
    }
    weft_store *s = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    if (want == 3) {
        status = peer_add(cli, s);
    } else if (want == 1) {
        status = peer_ls(cli, s);
    } else {
        int rc = weft_peer_rm(s, cli->argv[1]);
        if (rc == WEFT_ENOTFOUND) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "peer rm %s: no such peer (see 'weft peer ls')",
                                    cli->argv[1]);
        } else if (rc != 0) {
            status = weft__cli_weft_fail(rc, "peer rm %s", cli->argv[1]);
        } else {
            printf("removed peer %s: it can no longer connect\n", cli->argv[1]);
        }
    }
    weft_store_close(&s);
    return status;
}

/* ================================================================ events */

/* Describe @p ev in @p out: "<what happened>" without time or peer. */
static void event_text(const weft_event *ev, char *out, size_t cap)
{
    char msg[WEFT_MSG_MAX];
    one_line(ev->message, msg, sizeof msg);
    switch (ev->kind) {
    case WEFT_EV_STATE:
        if (strcmp(msg, weft_peer_state_name(ev->state)) == 0) {
            msg[0] = '\0'; /* says nothing more than the state */
        }
        snprintf(out, cap, "state %s%s%s", weft_peer_state_name(ev->state), msg[0] ? ": " : "",
                 msg);
        return;
    case WEFT_EV_PROGRESS:
        snprintf(out, cap, "progress: %" PRIu64 " ops, %" PRIu64 " bytes; %" PRIu64 " pending",
                 ev->ops, ev->bytes, ev->pending);
        return;
    case WEFT_EV_CHANGES:
        snprintf(out, cap, "applied %" PRIu64 " remote op%s", ev->ops, ev->ops == 1 ? "" : "s");
        return;
    case WEFT_EV_CONFLICT:
        snprintf(out, cap, "conflicts: %" PRIu64 " field%s in conflict", ev->ops,
                 ev->ops == 1 ? "" : "s");
        return;
    case WEFT_EV_SKEW:
        if (msg[0]) {
            snprintf(out, cap, "skewed: %s", msg); /* names the peer and which clock is off */
        } else {
            snprintf(out, cap, "skewed: %" PRIu64 " op%s deferred by the drift horizon", ev->ops,
                     ev->ops == 1 ? "" : "s");
        }
        return;
    case WEFT_EV_REFUSED:
        if (strncmp(msg, "refused", 7) == 0) {
            snprintf(out, cap, "%s", msg); /* already says so */
        } else {
            snprintf(out, cap, "refused: %s", msg[0] ? msg : weft_strerror(ev->error));
        }
        return;
    case WEFT_EV_ERROR:
        snprintf(out, cap, "error %s: %s", weft_err_name(ev->error),
                 msg[0] ? msg : weft_strerror(ev->error));
        return;
    }
    snprintf(out, cap, "event %d", (int)ev->kind);
}

/* One log line on stderr: "<time> <peer or -> <text>". */
static void log_line(const char *peer, const char *text)
{
    char when[WEFT_CLI_TIME];
    ms_time(weft__cli_now_ms(), when);
    /* One fprintf call: stderr is unbuffered, and one call keeps the line whole. */
    fprintf(stderr, "%s %s %s\n", when, peer && *peer ? peer : "-", text);
}

/* ================================================================ serve */

int weft__cli_serve(const weft_cli *cli)
{
    if (cli->relay && !cli->listen) {
        return weft__cli_fail(WEFT_CLI_USAGE, "serve: a relay must listen: give --listen ENDPOINT "
                                              "(e.g. tcp://0.0.0.0:7420)");
    }
    weft_store *s = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    int sfd = signals_open("serve");
    if (sfd < 0) {
        weft_store_close(&s);
        return WEFT_CLI_FAIL;
    }
    weft_sync_options opt;
    weft_sync_options_init(&opt);
    opt.listen = cli->listen;
    opt.relay = cli->relay;
    opt.connect = cli->relay ? 0 : 1;
    weft_sync *e = NULL;
    int rc = weft_sync_start(s, &opt, &e);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "serve");
        close(sfd);
        weft_store_close(&s);
        return status;
    }
    if (cli->listen && listen_save(cli, cli->listen) != 0) {
        char t[512];
        snprintf(t, sizeof t, "warning: cannot record the endpoint in %s/listen: %s", cli->dir,
                 strerror(errno));
        log_line(NULL, t);
    }
    char card[WEFT_CARD_MAX], dev[WEFT_CLI_HEX64], text[WEFT_CARD_MAX + 256];
    weft__cli_hex64(weft_store_device(s), dev);
    if (weft_card(s, cli->listen, card, sizeof card) != 0) {
        card[0] = '\0';
    }
    peer_list pl = {NULL, 0, 0, 0};
    int npeers = weft_peer_list(s, peer_collect, &pl);
    free(pl.v);
    snprintf(text, sizeof text, "serving %s as %s, device %s, %d trusted peer%s%s%s", cli->dir,
             cli->relay ? "a relay" : "a device", dev, npeers < 0 ? 0 : npeers,
             npeers == 1 ? "" : "s", cli->listen ? ", listening on " : ", not listening",
             cli->listen ? cli->listen : "");
    log_line(NULL, text);
    snprintf(text, sizeof text, "card %s", card);
    log_line(NULL, text);

    int efd = -1;
    rc = weft_sync_fd(e, &efd);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "serve: event descriptor");
    }
    int sig = 0;
    while (status == WEFT_CLI_OK && !sig) {
        struct pollfd pf[2] = {{sfd, POLLIN, 0}, {efd, POLLIN, 0}};
        int n = poll(pf, 2, -1);
        if (n < 0 && errno != EINTR) {
            status = weft__cli_fail(WEFT_CLI_FAIL, "serve: poll: %s", strerror(errno));
            break;
        }
        if (pf[0].revents & POLLIN) {
            sig = signal_read(sfd);
        }
        weft_event ev;
        while (weft_sync_next_event(e, &ev) == 1) {
            event_text(&ev, text, sizeof text);
            log_line(ev.peer, text);
        }
    }
    if (sig) {
        snprintf(text, sizeof text, "stopping (%s)", sig == SIGINT ? "SIGINT" : "SIGTERM");
        log_line(NULL, text);
    }
    weft_sync_stop(&e);
    close(sfd);
    weft_store_close(&s);
    if (status == WEFT_CLI_OK) {
        log_line(NULL, "stopped");
    }
    return status;
}

/* ================================================================ sync */

/* State of one `weft sync` run. */
typedef struct syncer {
    const char *name;
    weft_peer_status peer; /* latest: persisted, then the engine's live status */
    weft_peer_state state; /* last state seen */
    int reached;           /* 1 once the session got past connecting */
    int tty;               /* stderr is a terminal: progress bar */
    uint64_t pending;      /* ops left to send, from the last progress event */
    uint64_t moved;        /* ops moved either way, summed from progress events */
    uint64_t last_print_ms;
    int bar_shown;            /* a bar line is on screen without its newline */
    weft_sync_health at_live; /* the engine's totals when the peer was first seen LIVE */
} syncer;

static void bar_end(syncer *y)
{
    if (y->bar_shown) {
        fputc('\n', stderr);
        y->bar_shown = 0;
    }
}

/* Progress on stderr: a bar redrawn in place on a terminal, else a plain
 * line at every state change and at most one a second in between. Counts
 * come from the progress events (the engine's totals lag behind them). */
static void progress(syncer *y, int force)
{
    uint64_t now = mono_ms();
    if (!force && now - y->last_print_ms < (y->tty ? 100u : 1000u)) {
        return;
    }
    y->last_print_ms = now;
    const char *st = weft_peer_state_name(y->state);
    if (!y->tty) {
        if (force) {
            fprintf(stderr, "sync %s: %s\n", y->name, st);
        } else {
            fprintf(stderr, "sync %s: %s, %" PRIu64 " ops moved, %" PRIu64 " to send\n", y->name,
                    st, y->moved, y->pending);
        }
        return;
    }
    char bar[32];
    uint64_t total = y->moved + y->pending;
    unsigned fill = total ? (unsigned)(y->moved * 20 / total) : 20;
    for (unsigned i = 0; i < 20; i++) {
        bar[i] = i < fill ? '#' : '-';
    }
    bar[20] = '\0';
    fprintf(stderr, "\r\033[K%s %-10s [%s] %3u%%  %" PRIu64 " ops moved, %" PRIu64 " to send",
            y->name, st, bar, total ? (unsigned)(y->moved * 100 / total) : 100u, y->moved,
            y->pending);
    y->bar_shown = 1;
    fflush(stderr);
}

/* Why @p ev ends the run: "refused", "skewed", ... followed by the detail. */
static void ev_cause(const syncer *y, const weft_event *ev, char *out, size_t cap)
{
    char msg[WEFT_MSG_MAX];
    one_line(ev->message, msg, sizeof msg);
    if (!msg[0]) {
        snprintf(msg, sizeof msg, "%s", weft_strerror(ev->error));
    }
    const char *what = "failed";
    if (ev->kind == WEFT_EV_REFUSED || ev->error == WEFT_EAUTH) {
        what = strstr(msg, "server key") ? "handshake failed (wrong server key?)" : "refused";
    } else if (ev->kind == WEFT_EV_SKEW || ev->error == WEFT_ECLOCK) {
        what = "skewed";
    } else if (ev->error == WEFT_EVERSION) {
        what = "incompatible protocol version";
    } else if (ev->error == WEFT_EIO && !y->reached) {
        what = "unreachable";
    }
    if (ev->kind == WEFT_EV_SKEW) {
        snprintf(out, cap,
                 "%s: %s (a clock is more than %u min off: fix it; the ops wait, none "
                 "is lost)",
                 what, msg, (unsigned)(WEFT_DEFAULT_DRIFT_MS / 60000));
    } else if (ev->kind == WEFT_EV_STATE && ev->state == WEFT_PEER_IDLE) {
        snprintf(out, cap, "closed by %s before we were caught up: %s", y->name, msg);
    } else if (strncmp(msg, what, strlen(what)) == 0) {
        snprintf(out, cap, "%s", msg); /* the message already names the cause */
    } else {
        snprintf(out, cap, "%s: %s", what, msg);
    }
}

int weft__cli_sync(const weft_cli *cli)
{
    syncer y;
    memset(&y, 0, sizeof y);
    y.name = cli->argv[0];
    y.tty = isatty(STDERR_FILENO);
    weft_store *s = NULL;
    int status = weft__cli_open(cli, &s);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    int rc = find_peer(s, y.name, &y.peer);
    if (rc == WEFT_ENOTFOUND) {
        weft_store_close(&s);
        return weft__cli_fail(WEFT_CLI_FAIL, "sync %s: no such peer (see 'weft peer ls')", y.name);
    }
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "sync %s", y.name);
        weft_store_close(&s);
        return status;
    }
    if (!y.peer.addr[0]) {
        weft_store_close(&s);
        return weft__cli_fail(WEFT_CLI_FAIL,
                              "sync %s: the peer has no address (it connects to us); add it "
                              "again with --addr ENDPOINT",
                              y.name);
    }
    int sfd = signals_open("sync");
    if (sfd < 0) {
        weft_store_close(&s);
        return WEFT_CLI_FAIL;
    }
    weft_sync_options opt;
    weft_sync_options_init(&opt);
    /* No peer is connected to but the one weft_sync_now names below. */
    opt.connect = 0;
    weft_sync *e = NULL;
    rc = weft_sync_start(s, &opt, &e);
    if (rc != 0) {
        status = weft__cli_weft_fail(rc, "sync %s", y.name);
        close(sfd);
        weft_store_close(&s);
        return status;
    }
    int efd = -1;
    if ((rc = weft_sync_fd(e, &efd)) != 0 || (rc = weft_sync_now(e, y.name)) != 0) {
        status = weft__cli_weft_fail(rc, "sync %s", y.name);
    }
    double limit_s = cli->timeout_s > 0 ? cli->timeout_s : SYNC_TIMEOUT_S;
    uint64_t start = mono_ms();
    uint64_t deadline = start + (uint64_t)(limit_s * 1000.0);
    char cause[WEFT_MSG_MAX + 256] = "";
    int done = 0;
    y.state = WEFT_PEER_CONNECTING;
    while (status == WEFT_CLI_OK && !done && !cause[0]) {
        uint64_t now = mono_ms();
        if (now >= deadline) {
            break;
        }
        int wait = (int)(deadline - now < TICK_MS ? deadline - now : TICK_MS);
        struct pollfd pf[2] = {{sfd, POLLIN, 0}, {efd, POLLIN, 0}};
        if (poll(pf, 2, wait) < 0 && errno != EINTR) {
            snprintf(cause, sizeof cause, "poll: %s", strerror(errno));
            break;
        }
        if ((pf[0].revents & POLLIN) && signal_read(sfd)) {
            snprintf(cause, sizeof cause, "interrupted");
            break;
        }
        weft_event ev;
        while (!done && !cause[0] && weft_sync_next_event(e, &ev) == 1) {
            if (ev.peer[0] && strcmp(ev.peer, y.name) != 0) {
                continue;
            }
            switch (ev.kind) {
            case WEFT_EV_STATE:
                if (ev.state != y.state) {
                    y.state = ev.state;
                    if (ev.state >= WEFT_PEER_PULLING && ev.state <= WEFT_PEER_LIVE) {
                        y.reached = 1;
                    }
                    progress(&y, 1);
                }
                if (ev.state == WEFT_PEER_LIVE) {
                    done = 1;
                } else if (ev.state == WEFT_PEER_ERROR && ev.error) {
                    ev_cause(&y, &ev, cause, sizeof cause);
                } else if (ev.state == WEFT_PEER_IDLE && y.reached) {
                    ev_cause(&y, &ev, cause, sizeof cause); /* the peer said goodbye */
                }
                break;
            case WEFT_EV_PROGRESS:
                y.pending = ev.pending;
                y.moved += ev.ops;
                progress(&y, 0);
                break;
            case WEFT_EV_SKEW:
            case WEFT_EV_REFUSED:
            case WEFT_EV_ERROR:
                ev_cause(&y, &ev, cause, sizeof cause);
                break;
            default:
                break;
            }
        }
        /* Events may have been dropped: the live status is the truth. */
        weft_peer_status st[64];
        size_t n = 0;
        if (!done && !cause[0] && weft_sync_status(e, st, 64, &n) == 0) {
            for (size_t i = 0; i < n && i < 64; i++) {
                if (strcmp(st[i].name, y.name) != 0) {
                    continue;
                }
                if (st[i].state == WEFT_PEER_LIVE) {
                    done = 1;
                }
                y.peer = st[i];
            }
        }
        if (done) {
            /* The engine publishes its counters before each event, and it
             * talks to this peer only: its totals are this sync's. */
            (void)weft_sync_health_get(e, &y.at_live);
        }
    }
    if (status == WEFT_CLI_OK && !done && !cause[0]) {
        if (!y.reached) {
            snprintf(cause, sizeof cause,
                     "unreachable: no session with %s within %g s (is 'weft serve' running "
                     "there, and is the key in the card that server's?)",
                     y.peer.addr, limit_s);
        } else if (y.peer.skewed) {
            snprintf(cause, sizeof cause,
                     "skewed: timed out after %g s; ops were deferred because a clock is "
                     "%+" PRId64 " ms off",
                     limit_s, y.peer.clock_offset_ms);
        } else {
            snprintf(cause, sizeof cause, "timed out after %g s while %s", limit_s,
                     weft_peer_state_name(y.state));
        }
    }
    weft_sync_stop(&e); /* says goodbye to the peer */
    close(sfd);
    weft_store_close(&s);
    bar_end(&y);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    if (cause[0]) {
        return weft__cli_fail(WEFT_CLI_FAIL, "sync %s: %s", y.name, cause);
    }
    printf("synced with %s: sent %" PRIu64 " ops, received %" PRIu64 " ops in %" PRIu64 " ms\n",
           y.name, y.at_live.ops_sent, y.at_live.ops_received, mono_ms() - start);
    return WEFT_CLI_OK;
}
