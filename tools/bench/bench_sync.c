/* tools/bench/bench_sync.c - weft-bench's sync workloads: two processes, each
 * a store with a sync engine, over CURVE on loopback; and, in the same run, a
 * raw libzmq CURVE transfer as the physical reference.
 *
 * Process layout. The bench process is device A: it builds A's store, opens
 * it, starts A's engine listening on tcp://127.0.0.1:* and reads the real
 * port with weft_sync_endpoint(). Device B is a child (fork + exec of this
 * binary with --sync-peer, so it shares nothing with the parent): B's store
 * trusts A's card with that endpoint, A's store trusts B's card with no
 * address, so B is the only side that connects and every session is one TCP
 * connection made by B. The parent drives B with one-line commands on B's
 * stdin and reads one-line replies on B's stdout:
 *
 *   start            start B's engine (it connects at once)  -> "ok <t0_ns>"
 *   stop             weft_sync_stop                          -> "ok"
 *   wait HLC MS      until B holds A's op HLC                -> "seen <ns>" | "timeout"
 *   live MS          until B's session with A is LIVE        -> "live <ns>" | "timeout"
 *   watch            from now on print "seen <hlc> <ns>" each time A's entry of
 *                    B's version vector advances (unsolicited lines)
 *   stats            "stats" + key=value: TCP counters of B's connections to A,
 *                    B's engine health, OPS batches received, engine errors
 *   vv               "vv <device>:<hlc>,..." B's version vector
 *   quit             stop, close, exit 0
 *
 * B learns of new ops the way an app does while an engine runs: the engine's
 * event descriptor (weft_sync_fd) and WEFT_EV_CHANGES, then a read of the
 * version vector. Times are CLOCK_MONOTONIC nanoseconds, which Linux keeps
 * system-wide: B's stamp and A's stamp compare directly (one-way latency);
 * the parent also stamps the moment B's "seen" line reaches it (an upper
 * bound: one pipe write and one wakeup more).
 *
 * Bytes. The engine's counters (weft_sync_health: bytes_sent/received) count
 * op PAYLOAD bytes only. Bytes on the wire are read from the kernel:
 * TCP_INFO (tcpi_bytes_acked + tcpi_bytes_received) of B's sockets whose peer
 * is A's port, found through /proc/self/fd: every byte above TCP (ZMTP
 * greeting, CURVE handshake, CURVE MESSAGE boxes around weft's frames).
 * segments x 52 bytes (IPv4 + TCP with timestamps) estimates the headers.
 *
 *   sync_initial      A holds the notes workload (10,000 notes, 5 edits each),
 *                     B nothing: B's engine start -> B's vv equals A's, and
 *                     -> LIVE. Reference: --curve-send children streaming the
 *                     same bytes in as many messages as weft sent OPS frames,
 *                     4 unacknowledged at most, each acknowledged by a 32-byte
 *                     message (weft's flow control without weft).
 *   sync_incremental  A and B in sync at 10^4, 10^5 and 10^6 ops (--quick:
 *                     10^3, 10^4; B is filled by weft_apply of A's log);
 *                     one new op on A: to a fresh session (B's engine
 *                     restarted: connect, handshake, HELLO, the op) and to a
 *                     live session (pushed). Time and bytes.
 *   sync_live         live sessions; A commits one op at a time; latency
 *                     until B sees it. Median, p99.
 *   reconnect         A and B in sync at 10^5 ops; a new session with nothing
 *                     to send: bytes and time to LIVE.
 *
 * Invariants:
 *   1. Only the public weft API touches a store; raw libzmq only in the
 *      reference (--curve-send and its ROUTER in the parent).
 *   2. B's store is open in B only; the parent closes it before B starts.
 *   3. Every child is waited for; a child that fails or hangs makes the
 *      workload die (exit 1) with the child's last words on stderr.
 * Thread-safety: the parent is single-threaded apart from A's engine thread,
 * which it only talks to through weft_sync_*; children are processes.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/tcp.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
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
#include <zmq.h>

#include <weft/weft.h>

#include "bench.h"

/* clang-format off */
#define SETTLE_MS        30     /* quiet time before reading TCP counters */
#define HDR_BYTES        52     /* IPv4 (20) + TCP with timestamps (32) per segment */
#define CURVE_MSG_BYTES  35     /* ZMTP frame header + CURVE MESSAGE box around a payload */
#define RAW_ACK_BYTES    32     /* the reference's acknowledgement, ~ weft's ACK */
#define RAW_WINDOW       4      /* unacknowledged messages, as weft's OPS window */
#define RAW_RUNS         3      /* reference runs per sync_initial; median */
#define TARGET_INIT_RATIO 2.0   /* weft within 2x of raw CURVE */
#define TARGET_BYTES     1000   /* bytes per session, incremental and reconnect */
#define TARGET_INCR_MS   5.0
#define TARGET_LIVE_MS   2.0
#define SLOW_MS          100.0  /* a push slower than this waited for an engine timer */
#define LIVE_CAP_S       120    /* sync_live stops measuring after this long (quick: 5) */
/* clang-format on */

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ================================================================ TCP counters */

struct tcpc {
    uint64_t sent, recv;        /* bytes above TCP, acknowledged / received */
    uint64_t segs_out, segs_in; /* segments, pure ACKs included */
    unsigned conns;             /* connections counted */
};

/* Sum TCP_INFO over this process's TCP sockets whose peer port is @p port. */
static void tcp_counters(int port, struct tcpc *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        struct stat st;
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fstat(fd, &st) != 0 ||
            !S_ISSOCK(st.st_mode)) {
            continue;
        }
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        if (getpeername(fd, (struct sockaddr *)&sa, &sl) != 0 || sa.sin_family != AF_INET ||
            ntohs(sa.sin_port) != port) {
            continue;
        }
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        memset(&ti, 0, sizeof ti);
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0) {
            continue;
        }
        out->sent += ti.tcpi_bytes_acked;
        out->recv += ti.tcpi_bytes_received;
        out->segs_out += ti.tcpi_segs_out;
        out->segs_in += ti.tcpi_segs_in;
        out->conns++;
    }
    closedir(d);
}

static int port_of(const char *endpoint)
{
    const char *colon = strrchr(endpoint, ':');
    return colon ? atoi(colon + 1) : 0;
}

/* ================================================================ children */

struct child {
    pid_t pid;
    int to, from; /* its stdin, its stdout */
    char buf[8192];
    size_t len;
    const char *what;
};

/* fork + exec this binary with @p argv (argv[0] ignored): the child's stdin
 * and stdout are pipes to us, stderr is ours. */
static void child_spawn(const weft_bench_cfg *c, struct child *ch, const char *what,
                        char *const argv[])
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) {
        weft__bench_die("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        weft__bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Async-signal-safe calls only: the parent may run an engine thread. */
        dup2(in[0], 0);
        dup2(out[1], 1);
        for (int fd = 3; fd < 1024; fd++) {
            close(fd);
        }
        execv(c->self, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    memset(ch, 0, sizeof *ch);
    ch->pid = pid;
    ch->to = in[1];
    ch->from = out[0];
    ch->what = what;
}

static WEFT_BENCH_PRINTF(2, 3) void child_send(struct child *ch, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) {
        weft__bench_die("%s: command too long", ch->what);
    }
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(ch->to, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            weft__bench_die("%s: write: %s (did it die?)", ch->what, strerror(errno));
        }
        off += (int)w;
    }
}

/* One line from the child (newline stripped) into @p line, or die after
 * @p timeout_ms. *at_ns receives the time the line was read, when not NULL. */
static void child_line(struct child *ch, char *line, size_t cap, int timeout_ms, uint64_t *at_ns)
{
    uint64_t deadline = weft__bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char *nl = memchr(ch->buf, '\n', ch->len);
        if (nl) {
            size_t n = (size_t)(nl - ch->buf);
            if (n >= cap) {
                weft__bench_die("%s: reply too long", ch->what);
            }
            memcpy(line, ch->buf, n);
            line[n] = '\0';
            memmove(ch->buf, nl + 1, ch->len - n - 1);
            ch->len -= n + 1;
            return;
        }
        uint64_t now = weft__bench_now_ns();
        if (now >= deadline) {
            weft__bench_die("%s: no reply within %d ms", ch->what, timeout_ms);
        }
        struct pollfd pf = {ch->from, POLLIN, 0};
        int left = (int)((deadline - now) / 1000000u) + 1;
        if (poll(&pf, 1, left) < 0 && errno != EINTR) {
            weft__bench_die("poll: %s", strerror(errno));
        }
        if (!(pf.revents & (POLLIN | POLLHUP))) {
            continue;
        }
        if (ch->len == sizeof ch->buf) {
            weft__bench_die("%s: reply too long", ch->what);
        }
        ssize_t r = read(ch->from, ch->buf + ch->len, sizeof ch->buf - ch->len);
        if (at_ns) {
            *at_ns = weft__bench_now_ns();
        }
        if (r == 0) {
            weft__bench_die("%s: exited unexpectedly", ch->what);
        }
        if (r > 0) {
            ch->len += (size_t)r;
        }
    }
}

/* A command and its one-line reply, which must start with @p expect. */
static void child_ask(struct child *ch, const char *expect, char *reply, size_t cap, int timeout_ms,
                      const char *fmt, ...) WEFT_BENCH_PRINTF(6, 7);

static void child_ask(struct child *ch, const char *expect, char *reply, size_t cap, int timeout_ms,
                      const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    child_send(ch, "%s", cmd);
    child_line(ch, reply, cap, timeout_ms, NULL);
    if (strncmp(reply, expect, strlen(expect)) != 0) {
        weft__bench_die("%s: '%s' answered '%s' (expected '%s ...')", ch->what, cmd, reply, expect);
    }
}

static void child_reap(struct child *ch)
{
    close(ch->to);
    close(ch->from);
    int status = 0;
    while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        weft__bench_die("%s failed (status %d)", ch->what, status);
    }
}

/* The value of "key=" in a "k=v k=v" line, 0 if absent. */
static uint64_t kv(const char *line, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            return strtoull(p + kl + 1, NULL, 10);
        }
    }
    return 0;
}

/* ================================================================ device B (child) */

struct peer {
    weft_store *s;
    weft_sync *e;
    int efd;           /* engine event fd, -1 while stopped */
    uint64_t dev;      /* A's device id: the vv entry watched */
    int port;          /* A's port: the TCP connections counted */
    uint64_t seen_hlc; /* vv[dev] as last read */
    uint64_t seen_ns;  /* when seen_hlc was first read */
    uint64_t live_ns;  /* first LIVE since the last start; 0 before */
    uint64_t batches, errors;
    int watching;
    int wait_kind; /* 0 none, 1 seen, 2 live */
    uint64_t wait_hlc, deadline_ns;
};

static void say(const char *fmt, ...) WEFT_BENCH_PRINTF(1, 2);

static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1) {
        n = (int)strlen(line);
    }
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(1, line + off, (size_t)(n - off));
        if (w <= 0 && errno != EINTR) {
            _exit(1); /* the parent is gone */
        }
        off += w > 0 ? (int)w : 0;
    }
}

static uint64_t vv_entry(weft_store *s, uint64_t dev)
{
    weft_txn *t = NULL;
    weft_vv *vv = NULL;
    WCHECK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    WCHECK(weft_store_vv(t, &vv));
    uint64_t h = weft_vv_get(vv, dev);
    weft_vv_destroy(&vv);
    weft_txn_abort(&t);
    return h;
}

/* "dev:hlc,dev:hlc" (hex devices, decimal hlcs) of @p s's version vector. */
static void vv_text(weft_store *s, char *out, size_t cap)
{
    weft_txn *t = NULL;
    weft_vv *vv = NULL;
    WCHECK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    WCHECK(weft_store_vv(t, &vv));
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < weft_vv_count(vv); i++) {
        uint64_t d, h;
        WCHECK(weft_vv_entry(vv, i, &d, &h));
        int n = snprintf(out + len, cap - len, "%s%016" PRIx64 ":%" PRIu64, i ? "," : "", d, h);
        if (n < 0 || (size_t)n >= cap - len) {
            break;
        }
        len += (size_t)n;
    }
    weft_vv_destroy(&vv);
    weft_txn_abort(&t);
}

static void peer_note_vv(struct peer *p)
{
    uint64_t h = vv_entry(p->s, p->dev);
    if (h > p->seen_hlc) {
        p->seen_hlc = h;
        p->seen_ns = weft__bench_now_ns();
        if (p->watching) {
            say("seen %" PRIu64 " %" PRIu64, h, p->seen_ns);
        }
    }
}

static void peer_events(struct peer *p)
{
    weft_event ev;
    int changed = 0;
    while (p->e && weft_sync_next_event(p->e, &ev) == 1) {
        switch (ev.kind) {
        case WEFT_EV_CHANGES:
            changed = 1;
            break;
        case WEFT_EV_STATE:
            if (ev.state == WEFT_PEER_LIVE && p->live_ns == 0) {
                p->live_ns = weft__bench_now_ns();
            }
            break;
        case WEFT_EV_PROGRESS:
            if (strcmp(ev.message, "received") == 0) {
                p->batches++;
            }
            break;
        case WEFT_EV_ERROR:
        case WEFT_EV_REFUSED:
        case WEFT_EV_SKEW:
            p->errors++;
            fprintf(stderr, "weft-bench: device B: engine event %d (%s): %s\n", (int)ev.kind,
                    weft_err_name(ev.error), ev.message);
            break;
        default:
            break;
        }
    }
    if (changed) {
        peer_note_vv(p);
    }
}

static void peer_start(struct peer *p)
{
    weft_sync_options opt;
    weft_sync_options_init(&opt);
    opt.connect = 1;
    p->live_ns = 0;
    uint64_t t0 = weft__bench_now_ns();
    WCHECK(weft_sync_start(p->s, &opt, &p->e));
    WCHECK(weft_sync_fd(p->e, &p->efd));
    say("ok %" PRIu64, t0);
}

static void peer_stop(struct peer *p)
{
    weft_sync_stop(&p->e);
    p->efd = -1;
}

static void peer_stats(struct peer *p)
{
    struct tcpc tc;
    weft_sync_health h;
    memset(&h, 0, sizeof h);
    tcp_counters(p->port, &tc);
    if (p->e) {
        WCHECK(weft_sync_health_get(p->e, &h));
    }
    say("stats tcp_sent=%" PRIu64 " tcp_recv=%" PRIu64 " segs_out=%" PRIu64 " segs_in=%" PRIu64
        " conns=%u eng_bytes_sent=%" PRIu64 " eng_bytes_recv=%" PRIu64 " eng_ops_sent=%" PRIu64
        " eng_ops_recv=%" PRIu64 " sessions=%" PRIu64 " failures=%" PRIu64
        " last_duration_ms=%" PRIu64 " batches=%" PRIu64 " errors=%" PRIu64,
        tc.sent, tc.recv, tc.segs_out, tc.segs_in, tc.conns, h.bytes_sent, h.bytes_received,
        h.ops_sent, h.ops_received, h.sessions, h.failures, h.last_duration_ms, p->batches,
        p->errors);
}

/* Runs one command line; returns 1 on quit. */
static int peer_command(struct peer *p, char *line)
{
    char word[16] = "";
    unsigned long long a = 0, b = 0;
    int n = sscanf(line, "%15s %llu %llu", word, &a, &b);
    if (n < 1) {
        say("error empty command");
    } else if (strcmp(word, "start") == 0) {
        peer_start(p);
    } else if (strcmp(word, "stop") == 0) {
        peer_stop(p);
        say("ok");
    } else if (strcmp(word, "wait") == 0 && n == 3) {
        p->wait_kind = 1;
        p->wait_hlc = a;
        p->deadline_ns = weft__bench_now_ns() + b * 1000000u;
    } else if (strcmp(word, "live") == 0 && n == 2) {
        p->wait_kind = 2;
        p->deadline_ns = weft__bench_now_ns() + a * 1000000u;
    } else if (strcmp(word, "watch") == 0) {
        p->watching = 1;
        say("ok");
    } else if (strcmp(word, "stats") == 0) {
        peer_stats(p);
    } else if (strcmp(word, "vv") == 0) {
        char text[4096];
        vv_text(p->s, text, sizeof text);
        say("vv %s", text);
    } else if (strcmp(word, "quit") == 0) {
        return 1;
    } else {
        say("error unknown command '%s'", line);
    }
    return 0;
}

/* --sync-peer DIR PORT DEVICE_HEX */
static int peer_main(char **argv)
{
    struct peer p;
    memset(&p, 0, sizeof p);
    p.efd = -1;
    p.port = atoi(argv[3]);
    p.dev = strtoull(argv[4], NULL, 16);
    signal(SIGPIPE, SIG_IGN);
    WCHECK(weft_store_open(argv[2], NULL, &p.s));
    p.seen_hlc = vv_entry(p.s, p.dev);
    say("ready");
    char in[4096];
    size_t len = 0;
    for (;;) {
        if (p.wait_kind == 1 && p.seen_hlc >= p.wait_hlc) {
            say("seen %" PRIu64, p.seen_ns);
            p.wait_kind = 0;
        } else if (p.wait_kind == 2 && p.live_ns != 0) {
            say("live %" PRIu64, p.live_ns);
            p.wait_kind = 0;
        } else if (p.wait_kind != 0 && weft__bench_now_ns() >= p.deadline_ns) {
            say("timeout");
            p.wait_kind = 0;
        }
        /* Commands run one at a time: the next only once a wait is answered. */
        char *nl = p.wait_kind == 0 ? memchr(in, '\n', len) : NULL;
        if (nl) {
            *nl = '\0';
            size_t used = (size_t)(nl - in) + 1;
            int quit = peer_command(&p, in);
            memmove(in, in + used, len - used);
            len -= used;
            if (quit) {
                break;
            }
            continue;
        }
        struct pollfd pf[2] = {{0, POLLIN, 0}, {p.efd, POLLIN, 0}};
        int timeout = -1;
        if (p.wait_kind != 0) {
            uint64_t now = weft__bench_now_ns();
            timeout = p.deadline_ns > now ? (int)((p.deadline_ns - now) / 1000000u) + 1 : 0;
        }
        if (poll(pf, p.efd >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) {
            weft__bench_die("device B: poll: %s", strerror(errno));
        }
        if (p.efd >= 0 && (pf[1].revents & POLLIN)) {
            peer_events(&p);
        }
        if (pf[0].revents & (POLLIN | POLLHUP)) {
            if (len == sizeof in) {
                weft__bench_die("device B: command too long");
            }
            ssize_t r = read(0, in + len, sizeof in - len);
            if (r == 0) {
                break; /* the parent is gone */
            }
            if (r > 0) {
                len += (size_t)r;
            }
        }
    }
    peer_stop(&p);
    weft_store_close(&p.s);
    return 0;
}

/* ================================================================ raw CURVE (child) */

/* --curve-send ENDPOINT SERVER_KEY_Z85 NMSG SIZE: connect a CURVE DEALER,
 * stream NMSG messages of SIZE bytes with RAW_WINDOW unacknowledged at most,
 * and print the time from connect to the last acknowledgement. NMSG 0: send
 * one empty message, wait for its (empty) reply, and print the TCP counters
 * of the connection: the handshake's bytes plus two empty messages. */
static int curve_main(char **argv)
{
    const char *ep = argv[2], *server = argv[3];
    uint64_t n = strtoull(argv[4], NULL, 10), size = strtoull(argv[5], NULL, 10);
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        weft__bench_die("zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    }
    void *ctx = zmq_ctx_new();
    void *d = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int zero = 0;
    if (!d || zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server, 40) != 0 ||
        zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, pub, 40) != 0 ||
        zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, sec, 40) != 0) {
        weft__bench_die("raw CURVE socket: %s", zmq_strerror(zmq_errno()));
    }
    uint8_t *msg = weft__bench_calloc(size ? size : 1, 1);
    for (uint64_t i = 0; i < size; i++) {
        msg[i] = (uint8_t)(i * 131u + 7u);
    }
    char ack[RAW_ACK_BYTES];
    uint64_t t0 = weft__bench_now_ns();
    if (zmq_connect(d, ep) != 0) {
        weft__bench_die("raw CURVE connect %s: %s", ep, zmq_strerror(zmq_errno()));
    }
    if (n == 0) {
        if (zmq_send(d, "", 0, 0) < 0 || zmq_recv(d, ack, sizeof ack, 0) < 0) {
            weft__bench_die("raw CURVE probe: %s", zmq_strerror(zmq_errno()));
        }
        nap_ms(SETTLE_MS);
        struct tcpc tc;
        tcp_counters(port_of(ep), &tc);
        say("probe tcp_sent=%" PRIu64 " tcp_recv=%" PRIu64 " segs_out=%" PRIu64 " segs_in=%" PRIu64,
            tc.sent, tc.recv, tc.segs_out, tc.segs_in);
    } else {
        uint64_t sent = 0, acked = 0;
        while (acked < n) {
            while (sent < n && sent - acked < RAW_WINDOW) {
                if (zmq_send(d, msg, size, 0) < 0) {
                    weft__bench_die("raw CURVE send: %s", zmq_strerror(zmq_errno()));
                }
                sent++;
            }
            if (zmq_recv(d, ack, sizeof ack, 0) < 0) {
                weft__bench_die("raw CURVE recv: %s", zmq_strerror(zmq_errno()));
            }
            acked++;
        }
        uint64_t t1 = weft__bench_now_ns();
        struct tcpc tc;
        tcp_counters(port_of(ep), &tc);
        say("raw ns=%" PRIu64 " tcp_sent=%" PRIu64 " tcp_recv=%" PRIu64, t1 - t0, tc.sent, tc.recv);
    }
    free(msg);
    zmq_close(d);
    zmq_ctx_term(ctx);
    return 0;
}

int weft__bench_sync_child(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--sync-peer") == 0) {
        return peer_main(argv);
    }
    if (argc == 6 && strcmp(argv[1], "--curve-send") == 0) {
        return curve_main(argv);
    }
    fprintf(stderr, "weft-bench: bad internal child arguments\n");
    return 2;
}

/* The reference's receiving side, in the parent: a CURVE ROUTER (no ZAP
 * handler: any client is admitted) acknowledging each message; returns the
 * child's reply line. */
static void curve_run(const weft_bench_cfg *c, uint64_t n, uint64_t size, char *reply, size_t cap)
{
    char pub[41], sec[41], ep[256];
    if (zmq_curve_keypair(pub, sec) != 0) {
        weft__bench_die("zmq_curve_keypair: %s", zmq_strerror(zmq_errno()));
    }
    void *ctx = zmq_ctx_new();
    void *r = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    int one = 1, zero = 0;
    size_t eplen = sizeof ep;
    if (!r || zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(r, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(r, ZMQ_CURVE_SECRETKEY, sec, 40) != 0 ||
        zmq_bind(r, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &eplen) != 0) {
        weft__bench_die("raw CURVE listener: %s", zmq_strerror(zmq_errno()));
    }
    char ns[32], ss[32];
    snprintf(ns, sizeof ns, "%" PRIu64, n);
    snprintf(ss, sizeof ss, "%" PRIu64, size);
    char *argv[] = {"weft-bench", "--curve-send", ep, pub, ns, ss, NULL};
    struct child ch;
    child_spawn(c, &ch, "raw CURVE sender", argv);
    uint64_t want = n ? n : 1, got = 0;
    char ack[RAW_ACK_BYTES];
    memset(ack, 0x5a, sizeof ack);
    uint64_t deadline = weft__bench_now_ns() + 120000000000ull;
    while (got < want) {
        zmq_pollitem_t it = {r, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 200) < 0 && zmq_errno() != EINTR) {
            weft__bench_die("zmq_poll: %s", zmq_strerror(zmq_errno()));
        }
        int status;
        if (waitpid(ch.pid, &status, WNOHANG) == ch.pid) {
            weft__bench_die("raw CURVE sender died (status %d)", status);
        }
        if (weft__bench_now_ns() > deadline) {
            weft__bench_die("raw CURVE transfer: no progress for 120 s");
        }
        while (got < want) {
            zmq_msg_t rid, m;
            zmq_msg_init(&rid);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&rid, r, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&rid);
                zmq_msg_close(&m);
                break;
            }
            zmq_msg_recv(&m, r, 0);
            zmq_send(r, zmq_msg_data(&rid), zmq_msg_size(&rid), ZMQ_SNDMORE);
            zmq_send(r, ack, n ? sizeof ack : 0, 0);
            zmq_msg_close(&rid);
            zmq_msg_close(&m);
            got++;
        }
    }
    child_line(&ch, reply, cap, 60000, NULL);
    child_reap(&ch);
    zmq_close(r);
    zmq_ctx_term(ctx);
}

/* ================================================================ stores and pairs */

/* A's store (open, engine listening) and the child B. */
struct pair {
    char *adir, *bdir;
    weft_store *a;
    weft_sync *ea;
    uint64_t dev_a;
    char ep[WEFT_ENDPOINT_MAX + 1];
    struct child b;
    uint64_t a_errors; /* WEFT_EV_ERROR / REFUSED / SKEW seen on A's engine */
    char a_last_error[WEFT_MSG_MAX + 32];
};

/* Drain A's engine events, counting the failures. */
static void a_drain(struct pair *pr)
{
    weft_event ev;
    while (weft_sync_next_event(pr->ea, &ev) == 1) {
        if (ev.kind == WEFT_EV_ERROR || ev.kind == WEFT_EV_REFUSED || ev.kind == WEFT_EV_SKEW) {
            pr->a_errors++;
            snprintf(pr->a_last_error, sizeof pr->a_last_error, "%s: %s", weft_err_name(ev.error),
                     ev.message);
        }
    }
}

static void card_of(weft_store *s, const char *ep, char *card)
{
    WCHECK(weft_card(s, ep, card, WEFT_CARD_MAX));
}

/* Make the two stores trust each other, start A's engine listening on a free
 * port, start B (its engine not yet started). Both stores exist, closed. */
static void pair_open(const weft_bench_cfg *c, struct pair *pr, char *adir, char *bdir)
{
    char card_a[WEFT_CARD_MAX], card_b[WEFT_CARD_MAX];
    weft_store *b = NULL;
    memset(pr, 0, sizeof *pr);
    pr->adir = adir;
    pr->bdir = bdir;
    WCHECK(weft_store_open(adir, NULL, &pr->a));
    WCHECK(weft_store_open(bdir, NULL, &b));
    pr->dev_a = weft_store_device(pr->a);
    card_of(b, NULL, card_b);
    WCHECK(weft_peer_add(pr->a, "b", card_b, NULL, WEFT_ROLE_DEVICE));
    weft_sync_options opt;
    weft_sync_options_init(&opt);
    opt.listen = "tcp://127.0.0.1:*";
    WCHECK(weft_sync_start(pr->a, &opt, &pr->ea));
    WCHECK(weft_sync_endpoint(pr->ea, pr->ep, sizeof pr->ep));
    card_of(pr->a, pr->ep, card_a);
    WCHECK(weft_peer_add(b, "a", card_a, NULL, WEFT_ROLE_DEVICE));
    weft_store_close(&b);

    char port[16], dev[32];
    snprintf(port, sizeof port, "%d", port_of(pr->ep));
    snprintf(dev, sizeof dev, "%016" PRIx64, pr->dev_a);
    char *argv[] = {"weft-bench", "--sync-peer", bdir, port, dev, NULL};
    char line[256];
    child_spawn(c, &pr->b, "device B", argv);
    child_line(&pr->b, line, sizeof line, 30000, NULL);
    if (strcmp(line, "ready") != 0) {
        weft__bench_die("device B: '%s'", line);
    }
}

static void pair_close(struct pair *pr)
{
    a_drain(pr);
    child_send(&pr->b, "quit");
    child_reap(&pr->b);
    weft_sync_stop(&pr->ea);
    weft_store_close(&pr->a);
}

/* A's vv as vv_text() prints it, and A's own entry. */
static uint64_t a_vv(struct pair *pr, char *text, size_t cap)
{
    vv_text(pr->a, text, cap);
    return vv_entry(pr->a, pr->dev_a);
}

/* Dies unless B's version vector equals A's. */
static void check_equal(struct pair *pr, const char *when)
{
    char av[4096], reply[4200];
    a_vv(pr, av, sizeof av);
    child_ask(&pr->b, "vv ", reply, sizeof reply, 10000, "vv");
    if (strcmp(reply + 3, av) != 0) {
        weft__bench_die("%s: B's version vector %s differs from A's %s", when, reply + 3, av);
    }
}

/* Start B's engine and wait for its first LIVE: returns start -> LIVE in ns. */
static uint64_t b_start_live(struct pair *pr, int timeout_ms)
{
    char reply[256];
    child_ask(&pr->b, "ok ", reply, sizeof reply, 10000, "start");
    uint64_t t0 = strtoull(reply + 3, NULL, 10);
    child_ask(&pr->b, "live ", reply, sizeof reply, timeout_ms + 1000, "live %d", timeout_ms);
    return strtoull(reply + 5, NULL, 10) - t0;
}

struct bstats {
    uint64_t tcp_sent, tcp_recv, segs, eng_sent, eng_recv, eng_ops_recv, batches, errors, failures,
        sessions, conns;
};

static void b_stats(struct pair *pr, struct bstats *s)
{
    char r[1024];
    child_ask(&pr->b, "stats ", r, sizeof r, 10000, "stats");
    s->tcp_sent = kv(r, "tcp_sent");
    s->tcp_recv = kv(r, "tcp_recv");
    s->segs = kv(r, "segs_out") + kv(r, "segs_in");
    s->eng_sent = kv(r, "eng_bytes_sent");
    s->eng_recv = kv(r, "eng_bytes_recv");
    s->eng_ops_recv = kv(r, "eng_ops_recv");
    s->batches = kv(r, "batches");
    s->errors = kv(r, "errors");
    s->failures = kv(r, "failures");
    s->sessions = kv(r, "sessions");
    s->conns = kv(r, "conns");
}

/* One op on A: a title edit of note n00000. Returns its hlc; *commit_ns
 * receives the commit's duration and *done_ns the time it returned. */
static uint64_t a_write(struct pair *pr, const struct pools *p, size_t i, uint64_t *commit_ns,
                        uint64_t *done_ns)
{
    weft_txn *t = NULL;
    weft_id id;
    const struct val *v = &p->title[i % WEFT_BENCH_POOL];
    a_drain(pr);
    WCHECK(weft_txn_begin(pr->a, 0, &t));
    WCHECK(weft_set(t, "notes", "n00000", "title", v->mp, v->mp_len, &id));
    uint64_t t0 = weft__bench_now_ns();
    WCHECK(weft_txn_commit(&t));
    uint64_t t1 = weft__bench_now_ns();
    if (commit_ns) {
        *commit_ns = t1 - t0;
    }
    if (done_ns) {
        *done_ns = t1;
    }
    return id.hlc;
}

/* Copy every op of A's log into B with weft_apply (10,000-op batches,
 * 100,000-op transactions): B then holds exactly A's ops, as after a sync. */
struct copier {
    weft_store *b;
    weft_txn *t;
    weft_op *ops;
    size_t n, cap;
    uint64_t done;
};

static void copier_flush(struct copier *cp)
{
    if (cp->n == 0) {
        return;
    }
    weft_apply_result res;
    WCHECK(weft_apply(cp->t, cp->ops, cp->n, &res));
    if (res.applied != cp->n) {
        weft__bench_die("copy: %zu of %zu ops applied (%zu deferred)", res.applied, cp->n,
                        res.deferred);
    }
    cp->done += cp->n;
    cp->n = 0;
    if (cp->done % 100000 == 0) {
        WCHECK(weft_txn_commit(&cp->t));
        WCHECK(weft_txn_begin(cp->b, 0, &cp->t));
    }
}

static int copier_cb(const weft_op *op, void *user)
{
    struct copier *cp = user;
    cp->ops[cp->n++] = *op;
    if (cp->n == cp->cap) {
        copier_flush(cp);
    }
    return 0;
}

void weft__bench_store_copy(const char *adir, const char *bdir)
{
    weft_store *a = NULL;
    weft_txn *ta = NULL;
    struct copier cp;
    memset(&cp, 0, sizeof cp);
    cp.cap = 10000;
    cp.ops = weft__bench_calloc(cp.cap, sizeof *cp.ops);
    WCHECK(weft_store_open(adir, NULL, &a));
    cp.b = weft__bench_store_create(bdir);
    WCHECK(weft_txn_begin(a, WEFT_TXN_RDONLY, &ta));
    WCHECK(weft_txn_begin(cp.b, 0, &cp.t));
    WCHECK(weft_ops_since(ta, NULL, copier_cb, &cp));
    copier_flush(&cp);
    WCHECK(weft_txn_commit(&cp.t));
    weft_txn_abort(&ta);
    weft_store_close(&a);
    weft_store_close(&cp.b);
    free(cp.ops);
}

/* Build A (notes workload, @p notes notes) in DIR/a and B in DIR/b: empty,
 * or a copy of A's log. Returns A's op count and payload bytes. */
static void build_pair_stores(const weft_bench_cfg *c, const char *dir, size_t notes, int copy,
                              struct pools *p, char **adir, char **bdir, struct opsize *os,
                              double *build_s)
{
    char msg[160];
    struct build_stats bs;
    *adir = weft__bench_make_subdir(dir, "a");
    *bdir = weft__bench_make_subdir(dir, "b");
    snprintf(msg, sizeof msg, "  building %zu notes%s", notes,
             copy ? " and copying them to B" : "");
    weft__bench_progress(c, msg);
    uint64_t t0 = weft__bench_now_ns();
    weft__bench_notes_build(*adir, notes, p, &bs);
    if (copy) {
        weft__bench_store_copy(*adir, *bdir);
    } else {
        weft_store *b = weft__bench_store_create(*bdir);
        weft_store_close(&b);
    }
    *build_s = (double)(weft__bench_now_ns() - t0) / 1e9;
    weft_store *a = NULL;
    WCHECK(weft_store_open(*adir, NULL, &a));
    WCHECK(weft__bench_log_bytes(a, os));
    weft_store_close(&a);
}

/* ================================================================ session measurements */

/* One session's cost as B sees it. */
struct sess {
    double ms;          /* start (fresh) or commit (push) -> B holds the op / LIVE */
    double live_ms;     /* fresh: start -> LIVE */
    double ack_ms;      /* push: commit -> B's "seen" line read by A */
    uint64_t tcp_bytes; /* above TCP, both directions */
    uint64_t ip_bytes;  /* + estimated IP/TCP headers */
    uint64_t eng_bytes; /* engine's counters (payload), both directions, B's side */
};

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

struct summary {
    size_t slow; /* sessions slower than SLOW_MS */
    double ms_median, ms_max, live_median, ack_median;
    uint64_t tcp_median, tcp_max, ip_median, eng_median;
};

static void summarize(struct sess *v, size_t n, struct summary *s)
{
    double *ms = weft__bench_calloc(n, sizeof *ms), *lv = weft__bench_calloc(n, sizeof *lv);
    double *ak = weft__bench_calloc(n, sizeof *ak);
    uint64_t *tb = weft__bench_calloc(n, sizeof *tb), *ib = weft__bench_calloc(n, sizeof *ib);
    uint64_t *eb = weft__bench_calloc(n, sizeof *eb);
    for (size_t i = 0; i < n; i++) {
        ms[i] = v[i].ms;
        lv[i] = v[i].live_ms;
        ak[i] = v[i].ack_ms;
        tb[i] = v[i].tcp_bytes;
        ib[i] = v[i].ip_bytes;
        eb[i] = v[i].eng_bytes;
    }
    s->ms_median = weft__bench_quantile(ms, n, 0.5);
    s->slow = 0;
    for (size_t i = 0; i < n; i++) {
        s->slow += ms[i] >= SLOW_MS;
    }
    s->ms_max = ms[n - 1];
    s->live_median = weft__bench_quantile(lv, n, 0.5);
    s->ack_median = weft__bench_quantile(ak, n, 0.5);
    qsort(tb, n, sizeof *tb, cmp_u64);
    qsort(ib, n, sizeof *ib, cmp_u64);
    qsort(eb, n, sizeof *eb, cmp_u64);
    s->tcp_median = tb[(n - 1) / 2];
    s->tcp_max = tb[n - 1];
    s->ip_median = ib[(n - 1) / 2];
    s->eng_median = eb[(n - 1) / 2];
    free(ms);
    free(lv);
    free(ak);
    free(tb);
    free(ib);
    free(eb);
}

static void jb_summary(struct jb *j, const char *k, const struct summary *s, int fresh)
{
    jb_open(j, k);
    jb_num(j, "ms_median", s->ms_median, 3);
    jb_num(j, "ms_max", s->ms_max, 3);
    jb_u64(j, "slow_over_100ms", s->slow);
    if (fresh) {
        jb_num(j, "live_ms_median", s->live_median, 3);
    } else {
        jb_num(j, "ack_ms_median", s->ack_median, 3);
    }
    jb_u64(j, "wire_bytes_median", s->tcp_median);
    jb_u64(j, "wire_bytes_max", s->tcp_max);
    jb_u64(j, "wire_bytes_with_headers_median", s->ip_median);
    jb_u64(j, "engine_payload_bytes_median", s->eng_median);
    jb_close(j);
}

/* A fresh session: B's engine stopped; (@p op: one new op on A); B's engine
 * started: time until B holds the op (or LIVE without one) and the bytes of
 * the whole session up to LIVE (a new TCP connection: its counters are the
 * session's). */
static void fresh_session(struct pair *pr, const struct pools *p, size_t i, int op,
                          struct sess *out)
{
    char reply[256];
    child_ask(&pr->b, "ok", reply, sizeof reply, 10000, "stop");
    uint64_t h = op ? a_write(pr, p, i, NULL, NULL) : 0;
    child_ask(&pr->b, "ok ", reply, sizeof reply, 10000, "start");
    uint64_t t0 = strtoull(reply + 3, NULL, 10);
    uint64_t seen = 0;
    if (op) {
        child_ask(&pr->b, "seen ", reply, sizeof reply, 10000, "wait %" PRIu64 " 8000", h);
        seen = strtoull(reply + 5, NULL, 10);
    }
    child_ask(&pr->b, "live ", reply, sizeof reply, 10000, "live 8000");
    uint64_t live = strtoull(reply + 5, NULL, 10);
    nap_ms(SETTLE_MS);
    struct bstats s;
    b_stats(pr, &s);
    if (s.conns != 1) {
        weft__bench_die("fresh session: B has %" PRIu64 " connections to A, expected 1", s.conns);
    }
    out->ms = ms_of((op ? seen : live) - t0);
    out->live_ms = ms_of(live - t0);
    out->ack_ms = 0;
    out->tcp_bytes = s.tcp_sent + s.tcp_recv;
    out->ip_bytes = out->tcp_bytes + HDR_BYTES * s.segs;
    out->eng_bytes = s.eng_sent + s.eng_recv;
}

/* A live session: one op on A, pushed: commit -> B holds it, and the bytes
 * that moved meanwhile (OPS, ACK, DONE). */
static void push_session(struct pair *pr, const struct pools *p, size_t i, struct sess *out)
{
    char reply[256];
    struct bstats s0, s1;
    b_stats(pr, &s0);
    uint64_t done;
    uint64_t h = a_write(pr, p, i, NULL, &done);
    child_send(&pr->b, "wait %" PRIu64 " 8000", h);
    uint64_t at = 0;
    child_line(&pr->b, reply, sizeof reply, 10000, &at);
    if (strncmp(reply, "seen ", 5) != 0) {
        weft__bench_die("live push: B answered '%s'", reply);
    }
    uint64_t seen = strtoull(reply + 5, NULL, 10);
    nap_ms(SETTLE_MS);
    b_stats(pr, &s1);
    out->ms = ms_of(seen - done);
    out->live_ms = 0;
    out->ack_ms = ms_of(at - done);
    out->tcp_bytes = (s1.tcp_sent + s1.tcp_recv) - (s0.tcp_sent + s0.tcp_recv);
    out->ip_bytes = out->tcp_bytes + HDR_BYTES * (s1.segs - s0.segs);
    out->eng_bytes = (s1.eng_sent + s1.eng_recv) - (s0.eng_sent + s0.eng_recv);
}

/* The CURVE handshake's bytes (ZMTP greetings, HELLO, WELCOME, INITIATE,
 * READY), measured on a raw connection with one empty message each way. */
static uint64_t curve_handshake_bytes(const weft_bench_cfg *c)
{
    char reply[256];
    curve_run(c, 0, 0, reply, sizeof reply);
    return kv(reply, "tcp_sent") + kv(reply, "tcp_recv") - 2 * CURVE_MSG_BYTES;
}

/* ================================================================ sync_initial */

/* The raw LMDB reference: the ops A holds (copied out first, untimed),
 * written into a fresh LMDB environment under @p dir as key device | hlc ->
 * payload, RAW_LMDB_BATCH ops per durable commit (the receiver's batches),
 * default flags: what storing the same bytes costs with nothing decoded,
 * checked or materialised. Returns ms. */
#define RAW_LMDB_BATCH 4096 /* ops per OPS message (docs/protocol.md) */
struct rawops {
    uint8_t (*key)[16];
    MDB_val *val;
    size_t n, cap;
};

static int rawops_cb(const weft_op *op, void *user)
{
    struct rawops *r = user;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4096;
        r->key = realloc(r->key, r->cap * sizeof *r->key);
        r->val = realloc(r->val, r->cap * sizeof *r->val);
        if (r->key == NULL || r->val == NULL) {
            weft__bench_die("out of memory");
        }
    }
    for (int b = 0; b < 8; b++) {
        r->key[r->n][b] = (uint8_t)(op->id.device >> (56 - 8 * b));
        r->key[r->n][8 + b] = (uint8_t)(op->id.hlc >> (56 - 8 * b));
    }
    void *copy = malloc(op->payload.len ? op->payload.len : 1);
    if (copy == NULL) {
        weft__bench_die("out of memory");
    }
    memcpy(copy, op->payload.ptr, op->payload.len);
    r->val[r->n].mv_size = op->payload.len;
    r->val[r->n].mv_data = copy;
    r->n++;
    return 0;
}

static double raw_lmdb_run(const struct rawops *r, const char *dir)
{
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, (size_t)1 << 30) != 0 ||
        mdb_env_open(env, dir, 0, 0600) != 0) {
        weft__bench_die("raw LMDB: cannot open %s", dir);
    }
    uint64_t t0 = weft__bench_now_ns();
    for (size_t i = 0; i < r->n; i += RAW_LMDB_BATCH) {
        if (mdb_txn_begin(env, NULL, 0, &t) != 0 || mdb_dbi_open(t, NULL, 0, &dbi) != 0) {
            weft__bench_die("raw LMDB: begin");
        }
        for (size_t k = i; k < r->n && k < i + RAW_LMDB_BATCH; k++) {
            MDB_val key = {16, (void *)r->key[k]}, val = r->val[k];
            if (mdb_put(t, dbi, &key, &val, 0) != 0) {
                weft__bench_die("raw LMDB: put");
            }
        }
        if (mdb_txn_commit(t) != 0) {
            weft__bench_die("raw LMDB: commit");
        }
    }
    double ms = ms_of(weft__bench_now_ns() - t0);
    mdb_env_close(env);
    return ms;
}

static double raw_lmdb_ref(const char *adir, const char *dir, double *runs)
{
    struct rawops r = {NULL, NULL, 0, 0};
    weft_store *a = NULL;
    weft_txn *t = NULL;
    WCHECK(weft_store_open(adir, NULL, &a));
    WCHECK(weft_txn_begin(a, WEFT_TXN_RDONLY, &t));
    if (weft_ops_since(t, NULL, rawops_cb, &r) < 0) {
        weft__bench_die("raw LMDB: reading A's log: %s", weft_last_error());
    }
    weft_txn_abort(&t);
    weft_store_close(&a);
    for (int i = 0; i < RAW_RUNS; i++) {
        char name[32];
        snprintf(name, sizeof name, "raw-lmdb-%d", i);
        char *d = weft__bench_make_subdir(dir, name);
        runs[i] = raw_lmdb_run(&r, d);
        free(d);
    }
    for (size_t i = 0; i < r.n; i++) {
        free(r.val[i].mv_data);
    }
    free(r.key);
    free(r.val);
    return weft__bench_quantile(runs, RAW_RUNS, 0.5);
}

void weft__bench_sync_initial(const weft_bench_cfg *c)
{
    const size_t notes = c->quick ? 1000 : 10000;
    signal(SIGPIPE, SIG_IGN);
    char *dir = weft__bench_make_tmp(c, "sync_initial");
    struct pools p;
    weft__bench_pools_init(&p, 4);
    weft__bench_progress(c, "sync_initial: building");
    char *adir, *bdir;
    struct opsize os;
    double build_s;
    build_pair_stores(c, dir, notes, 0, &p, &adir, &bdir, &os, &build_s);

    weft__bench_progress(c, "sync_initial: syncing A -> B (two processes)");
    struct pair pr;
    pair_open(c, &pr, adir, bdir);
    char av[4096], reply[256];
    uint64_t h = a_vv(&pr, av, sizeof av);
    child_ask(&pr.b, "ok ", reply, sizeof reply, 10000, "start");
    uint64_t t0 = strtoull(reply + 3, NULL, 10);
    child_ask(&pr.b, "seen ", reply, sizeof reply, 130000, "wait %" PRIu64 " 120000", h);
    uint64_t seen = strtoull(reply + 5, NULL, 10);
    child_ask(&pr.b, "live ", reply, sizeof reply, 20000, "live 10000");
    uint64_t live = strtoull(reply + 5, NULL, 10);
    nap_ms(SETTLE_MS);
    struct bstats bs;
    b_stats(&pr, &bs);
    check_equal(&pr, "sync_initial");
    weft_sync_health ha;
    WCHECK(weft_sync_health_get(pr.ea, &ha));
    pair_close(&pr);

    double weft_ms = ms_of(seen - t0), live_ms = ms_of(live - t0);
    uint64_t wire = bs.tcp_sent + bs.tcp_recv;
    uint64_t batches = bs.batches ? bs.batches : 1;
    uint64_t msg_size = bs.tcp_recv / batches;

    weft__bench_progress(c, "sync_initial: raw CURVE reference");
    double raw[RAW_RUNS];
    uint64_t raw_wire = 0;
    for (int r = 0; r < RAW_RUNS; r++) {
        char rr[256];
        curve_run(c, batches, msg_size, rr, sizeof rr);
        raw[r] = ms_of(kv(rr, "ns"));
        raw_wire = kv(rr, "tcp_sent") + kv(rr, "tcp_recv");
    }
    double raw_ms = weft__bench_quantile(raw, RAW_RUNS, 0.5);
    double ratio = weft_ms / raw_ms;
    int ok = ratio <= TARGET_INIT_RATIO;
    weft__bench_progress(c, "sync_initial: raw LMDB reference");
    double lmdb_runs[RAW_RUNS];
    double lmdb_ms = raw_lmdb_ref(adir, dir, lmdb_runs);

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "sync_initial");
    jb_open(&j, "params");
    jb_u64(&j, "notes", notes);
    jb_u64(&j, "ops", os.count);
    jb_u64(&j, "payload_bytes", os.total);
    jb_str(&j, "transport", "tcp://127.0.0.1, CURVE, two processes; B connects");
    jb_num(&j, "build_s", build_s, 3);
    jb_close(&j);
    jb_open(&j, "weft");
    jb_num(&j, "converge_ms", weft_ms, 2);
    jb_num(&j, "live_ms", live_ms, 2);
    jb_num(&j, "ops_per_s", (double)os.count / (weft_ms / 1e3), 0);
    jb_num(&j, "payload_mb_per_s", (double)os.total / 1e6 / (weft_ms / 1e3), 1);
    jb_u64(&j, "ops_batches", bs.batches);
    jb_u64(&j, "wire_bytes", wire);
    jb_u64(&j, "wire_bytes_a_to_b", bs.tcp_recv);
    jb_u64(&j, "wire_bytes_b_to_a", bs.tcp_sent);
    jb_u64(&j, "wire_bytes_with_headers", wire + HDR_BYTES * bs.segs);
    jb_u64(&j, "engine_bytes_b", bs.eng_sent + bs.eng_recv);
    jb_u64(&j, "engine_bytes_a", ha.bytes_sent + ha.bytes_received);
    jb_u64(&j, "engine_ops_received_b", bs.eng_ops_recv);
    jb_num(&j, "wire_over_payload", (double)wire / (double)os.total, 3);
    jb_u64(&j, "engine_errors_b", bs.errors);
    jb_u64(&j, "engine_errors_a", pr.a_errors);
    jb_close(&j);
    jb_open(&j, "raw_curve");
    jb_u64(&j, "messages", batches);
    jb_u64(&j, "message_bytes", msg_size);
    jb_u64(&j, "window", RAW_WINDOW);
    jb_u64(&j, "wire_bytes", raw_wire);
    jb_num(&j, "ms_median", raw_ms, 2);
    jb_num(&j, "ms_min", raw[0], 2);
    jb_num(&j, "ms_max", raw[RAW_RUNS - 1], 2);
    jb_close(&j);
    jb_open(&j, "raw_lmdb");
    jb_u64(&j, "ops", os.count);
    jb_u64(&j, "ops_per_commit", RAW_LMDB_BATCH);
    jb_num(&j, "ms_median", lmdb_ms, 2);
    jb_num(&j, "ms_min", lmdb_runs[0], 2);
    jb_num(&j, "ms_max", lmdb_runs[RAW_RUNS - 1], 2);
    jb_num(&j, "over_raw_curve", lmdb_ms / raw_ms, 2);
    jb_close(&j);
    jb_num(&j, "ratio", ratio, 2);
    jb_num(&j, "ratio_to_raw_lmdb", weft_ms / lmdb_ms, 2);
    jb_open(&j, "targets");
    jb_num(&j, "ratio_max", TARGET_INIT_RATIO, 1);
    jb_bool(&j, "met", ok);
    jb_close(&j);
    jb_close(&j);
    char sum[800];
    snprintf(sum, sizeof sum,
             "sync_initial: %" PRIu64 " ops (%.1f MB payload) A -> B in %.1f ms (live %.1f ms), "
             "%.0f ops/s, %.2f MB on the wire in %" PRIu64 " OPS | raw CURVE same bytes %.1f ms "
             "| ratio %.2f; target <= 2: %s | raw LMDB durable write of the same ops %.1f ms "
             "(%.2fx raw CURVE; weft %.2fx it)",
             os.count, (double)os.total / 1e6, weft_ms, live_ms, (double)os.count / (weft_ms / 1e3),
             (double)wire / 1e6, bs.batches, raw_ms, ratio, ok ? "met" : "MISSED", lmdb_ms,
             lmdb_ms / raw_ms, weft_ms / lmdb_ms);
    weft__bench_emit(c, &j, sum);

    free(adir);
    free(bdir);
    weft__bench_pools_free(&p);
    weft__bench_drop_tmp(c, dir);
}

/* ================================================================ sync_incremental */

void weft__bench_sync_incremental(const weft_bench_cfg *c)
{
    static const size_t full[] = {1000, 10000, 100000}; /* notes: ~10 ops each */
    static const size_t quick[] = {100, 1000};
    const size_t *sizes = c->quick ? quick : full;
    size_t nsizes = c->quick ? 2 : 3;
    const size_t reps = c->quick ? 3 : 15;
    signal(SIGPIPE, SIG_IGN);
    struct pools p;
    weft__bench_pools_init(&p, 5);
    uint64_t hs = curve_handshake_bytes(c);

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "sync_incremental");
    jb_open(&j, "params");
    jb_u64(&j, "reps", reps);
    jb_str(&j, "op", "one weft_set of a ~20-char title on A");
    jb_str(&j, "wire_bytes", "TCP payload both ways (ZMTP + CURVE + weft), from TCP_INFO");
    jb_u64(&j, "curve_handshake_bytes", hs);
    jb_close(&j);
    jb_open(&j, "sizes");
    char sum[1024];
    size_t sl = (size_t)snprintf(sum, sizeof sum, "sync_incremental: 1 new op ->");
    int ok = 1;
    double fmin = 1e30, fmax = 0, lmin = 1e30, lmax = 0;
    uint64_t bmin = UINT64_MAX, bmax = 0;
    for (size_t k = 0; k < nsizes; k++) {
        char name[32], msg[96];
        snprintf(name, sizeof name, "sync_incremental_%zu", sizes[k] * 10);
        char *dir = weft__bench_make_tmp(c, name);
        snprintf(msg, sizeof msg, "sync_incremental: ~%zu ops", sizes[k] * 10);
        weft__bench_progress(c, msg);
        char *adir, *bdir;
        struct opsize os;
        double build_s;
        build_pair_stores(c, dir, sizes[k], 1, &p, &adir, &bdir, &os, &build_s);
        struct pair pr;
        pair_open(c, &pr, adir, bdir);
        double first_ms = ms_of(b_start_live(&pr, 60000));
        check_equal(&pr, "sync_incremental (after the first session)");

        struct sess *fr = weft__bench_calloc(reps, sizeof *fr);
        struct sess *pu = weft__bench_calloc(reps, sizeof *pu);
        struct sess *is = weft__bench_calloc(reps, sizeof *is);
        for (size_t r = 0; r < reps; r++) {
            fresh_session(&pr, &p, 2 * r, 1, &fr[r]);
        }
        for (size_t r = 0; r < reps; r++) {
            push_session(&pr, &p, 2 * r + 1, &pu[r]);
        }
        for (size_t r = 0; r < reps; r++) { /* reconnect in sync: the reconnect workload's */
            fresh_session(&pr, &p, r, 0, &is[r]);
        }
        check_equal(&pr, "sync_incremental (at the end)");
        struct bstats bs;
        b_stats(&pr, &bs);
        pair_close(&pr);
        struct summary sf, sp, si;
        summarize(fr, reps, &sf);
        summarize(pu, reps, &sp);
        summarize(is, reps, &si);

        jb_open(&j, name + strlen("sync_incremental_"));
        jb_u64(&j, "ops", os.count);
        jb_num(&j, "build_s", build_s, 2);
        jb_num(&j, "first_session_live_ms", first_ms, 2);
        jb_summary(&j, "fresh", &sf, 1);
        jb_summary(&j, "push", &sp, 0);
        jb_summary(&j, "insync", &si, 1);
        jb_u64(&j, "engine_errors_b", bs.errors);
        jb_u64(&j, "engine_errors_a", pr.a_errors);
        if (pr.a_errors) {
            jb_str(&j, "engine_last_error_a", pr.a_last_error);
        }
        jb_close(&j);
        sl += (size_t)snprintf(sum + sl, sizeof sum - sl,
                               " | %" PRIu64 " ops: fresh %.2f ms %" PRIu64 " B, push %.2f ms "
                               "%" PRIu64 " B, in sync %" PRIu64 " B",
                               os.count, sf.ms_median, sf.tcp_median, sp.ms_median, sp.tcp_median,
                               si.tcp_median);
        ok &= sf.tcp_median < TARGET_BYTES && sp.tcp_median < TARGET_BYTES &&
              sf.ms_median < TARGET_INCR_MS && sp.ms_median < TARGET_INCR_MS;
        fmin = sf.ms_median < fmin ? sf.ms_median : fmin;
        fmax = sf.ms_median > fmax ? sf.ms_median : fmax;
        lmin = sp.ms_median < lmin ? sp.ms_median : lmin;
        lmax = sp.ms_median > lmax ? sp.ms_median : lmax;
        bmin = sf.tcp_median < bmin ? sf.tcp_median : bmin;
        bmax = sf.tcp_median > bmax ? sf.tcp_median : bmax;
        free(fr);
        free(pu);
        free(is);
        free(adir);
        free(bdir);
        weft__bench_drop_tmp(c, dir);
    }
    jb_close(&j);
    /* Flat: the largest median time within 2x of the smallest (noise on a
     * shared machine), bytes within 10%. */
    int flat = fmax <= 2.0 * fmin && lmax <= 2.0 * lmin && (double)bmax <= 1.1 * (double)bmin;
    jb_open(&j, "targets");
    jb_u64(&j, "bytes_max", TARGET_BYTES);
    jb_num(&j, "ms_max", TARGET_INCR_MS, 1);
    jb_bool(&j, "under_1kb_and_5ms", ok);
    jb_bool(&j, "flat", flat);
    jb_bool(&j, "met", ok && flat);
    jb_close(&j);
    jb_close(&j);
    snprintf(sum + sl, sizeof sum - sl, "; targets < 1000 B, < 5 ms, flat: %s%s",
             ok ? "met" : "MISSED", flat ? "" : " (not flat)");
    weft__bench_emit(c, &j, sum);
    weft__bench_pools_free(&p);
}

/* ================================================================ sync_live */

void weft__bench_sync_live(const weft_bench_cfg *c)
{
    const size_t n = c->quick ? 50 : 500, warm = c->quick ? 1 : n / 10;
    signal(SIGPIPE, SIG_IGN);
    char *dir = weft__bench_make_tmp(c, "sync_live");
    struct pools p;
    weft__bench_pools_init(&p, 6);
    weft__bench_progress(c, "sync_live: running");
    char *adir, *bdir;
    struct opsize os;
    double build_s;
    build_pair_stores(c, dir, 100, 1, &p, &adir, &bdir, &os, &build_s);
    struct pair pr;
    pair_open(c, &pr, adir, bdir);
    b_start_live(&pr, 30000);
    char reply[256];
    child_ask(&pr.b, "ok", reply, sizeof reply, 10000, "watch");
    struct bstats s0, s1;
    b_stats(&pr, &s0);

    double *one = weft__bench_calloc(n, sizeof *one), *ack = weft__bench_calloc(n, sizeof *ack);
    double *cm = weft__bench_calloc(n, sizeof *cm);
    size_t bad_clock = 0, m = 0, total = 0;
    uint64_t cap_ns = (uint64_t)(c->quick ? 5 : LIVE_CAP_S) * 1000000000u;
    uint64_t t_start = weft__bench_now_ns();
    /* At least 3 measured ops whatever the cap (an engine timer costs ~1 s each). */
    for (size_t i = 0; i < warm + n && (m < 3 || weft__bench_now_ns() - t_start < cap_ns); i++) {
        uint64_t commit, done;
        uint64_t h = a_write(&pr, &p, i, &commit, &done);
        uint64_t seen = 0, at = 0, got = 0;
        while (got < h) {
            child_line(&pr.b, reply, sizeof reply, 10000, &at);
            unsigned long long hh, ns;
            if (sscanf(reply, "seen %llu %llu", &hh, &ns) != 2) {
                weft__bench_die("sync_live: B said '%s'", reply);
            }
            got = hh;
            seen = ns;
        }
        total++;
        if (i >= warm) {
            one[m] = ms_of(seen - done);
            ack[m] = ms_of(at - done);
            cm[m] = ms_of(commit);
            bad_clock += seen < done || seen > at;
            m++;
        }
        nap_ms(3);
    }
    nap_ms(SETTLE_MS);
    b_stats(&pr, &s1);
    check_equal(&pr, "sync_live");
    pair_close(&pr);

    double med = weft__bench_quantile(one, m, 0.5), p99 = weft__bench_quantile(one, m, 0.99);
    double amed = weft__bench_quantile(ack, m, 0.5), ap99 = weft__bench_quantile(ack, m, 0.99);
    double cmed = weft__bench_quantile(cm, m, 0.5);
    size_t fast = 0;
    while (fast < m && one[fast] < SLOW_MS) { /* one[] is sorted */
        fast++;
    }
    double fmed = weft__bench_quantile(one, fast, 0.5),
           fp99 = weft__bench_quantile(one, fast, 0.99);
    uint64_t wire = (s1.tcp_sent + s1.tcp_recv) - (s0.tcp_sent + s0.tcp_recv);
    int ok = med < TARGET_LIVE_MS && amed < TARGET_LIVE_MS;

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "sync_live");
    jb_open(&j, "params");
    jb_u64(&j, "ops", n);
    jb_u64(&j, "warmup", warm);
    jb_u64(&j, "gap_ms", 3);
    jb_u64(&j, "cap_s", c->quick ? 5 : LIVE_CAP_S);
    jb_str(&j, "method",
           "A: commit returns -> B: WEFT_EV_CHANGES drained and vv read "
           "(CLOCK_MONOTONIC, system-wide); ack = B's pipe line read by A");
    jb_close(&j);
    jb_open(&j, "one_way_ms");
    jb_num(&j, "median", med, 3);
    jb_num(&j, "p99", p99, 3);
    jb_num(&j, "min", one[0], 3);
    jb_num(&j, "max", one[m - 1], 3);
    jb_close(&j);
    jb_u64(&j, "ops_measured", m);
    jb_u64(&j, "slow_over_100ms", m - fast);
    jb_open(&j, "one_way_fast_ms");
    jb_num(&j, "median", fmed, 3);
    jb_num(&j, "p99", fp99, 3);
    jb_close(&j);
    jb_open(&j, "ack_ms");
    jb_num(&j, "median", amed, 3);
    jb_num(&j, "p99", ap99, 3);
    jb_close(&j);
    jb_num(&j, "commit_ms_median", cmed, 3);
    jb_num(&j, "wire_bytes_per_op", (double)wire / (double)total, 0);
    jb_u64(&j, "clock_order_violations", bad_clock);
    jb_u64(&j, "engine_errors_b", s1.errors);
    jb_u64(&j, "engine_errors_a", pr.a_errors);
    jb_open(&j, "targets");
    jb_num(&j, "median_ms_max", TARGET_LIVE_MS, 1);
    jb_bool(&j, "met", ok);
    jb_close(&j);
    jb_close(&j);
    char sum[512];
    snprintf(sum, sizeof sum,
             "sync_live: %zu ops, commit on A -> visible on B: median %.3f ms, p99 %.3f ms "
             "(via B's pipe ack: %.3f / %.3f); %zu slower than 100 ms (without them: median "
             "%.3f, p99 %.3f); A's commit %.3f ms; %.0f wire bytes/op; target median < 2 ms: %s",
             m, med, p99, amed, ap99, m - fast, fmed, fp99, cmed, (double)wire / (double)total,
             ok ? "met" : "MISSED");
    weft__bench_emit(c, &j, sum);
    free(one);
    free(ack);
    free(cm);
    free(adir);
    free(bdir);
    weft__bench_pools_free(&p);
    weft__bench_drop_tmp(c, dir);
}

/* ================================================================ reconnect */

void weft__bench_reconnect(const weft_bench_cfg *c)
{
    const size_t notes = c->quick ? 1000 : 10000, reps = c->quick ? 3 : 15;
    signal(SIGPIPE, SIG_IGN);
    uint64_t hs = curve_handshake_bytes(c);
    char *dir = weft__bench_make_tmp(c, "reconnect");
    struct pools p;
    weft__bench_pools_init(&p, 7);
    weft__bench_progress(c, "reconnect: building");
    char *adir, *bdir;
    struct opsize os;
    double build_s;
    build_pair_stores(c, dir, notes, 1, &p, &adir, &bdir, &os, &build_s);
    struct pair pr;
    pair_open(c, &pr, adir, bdir);
    b_start_live(&pr, 60000);
    struct sess *v = weft__bench_calloc(reps, sizeof *v);
    for (size_t r = 0; r < reps; r++) {
        fresh_session(&pr, &p, r, 0, &v[r]);
    }
    check_equal(&pr, "reconnect");
    struct bstats bs;
    b_stats(&pr, &bs);
    pair_close(&pr);
    struct summary s;
    summarize(v, reps, &s);
    int ok = s.tcp_median < TARGET_BYTES;

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "reconnect");
    jb_open(&j, "params");
    jb_u64(&j, "ops", os.count);
    jb_u64(&j, "reps", reps);
    jb_u64(&j, "curve_handshake_bytes", hs);
    jb_close(&j);
    jb_summary(&j, "session", &s, 1);
    jb_u64(&j, "weft_bytes_median", s.tcp_median > hs ? s.tcp_median - hs : 0);
    jb_u64(&j, "engine_errors_b", bs.errors);
    jb_u64(&j, "engine_errors_a", pr.a_errors);
    if (pr.a_errors) {
        jb_str(&j, "engine_last_error_a", pr.a_last_error);
    }
    jb_open(&j, "targets");
    jb_u64(&j, "bytes_max", TARGET_BYTES);
    jb_bool(&j, "met", ok);
    jb_close(&j);
    jb_close(&j);
    char sum[512];
    snprintf(sum, sizeof sum,
             "reconnect: in sync at %" PRIu64 " ops, new session -> LIVE %.2f ms (max %.2f), "
             "%" PRIu64 " bytes on the wire (CURVE handshake %" PRIu64 ", weft %" PRIu64
             "); target < 1000: %s",
             os.count, s.ms_median, s.ms_max, s.tcp_median, hs,
             s.tcp_median > hs ? s.tcp_median - hs : 0, ok ? "met" : "MISSED");
    weft__bench_emit(c, &j, sum);
    free(v);
    free(adir);
    free(bdir);
    weft__bench_pools_free(&p);
    weft__bench_drop_tmp(c, dir);
}
