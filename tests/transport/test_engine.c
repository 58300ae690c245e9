/* test_engine.c - the sync engine (transport/engine.c) over real CURVE
 * sockets on 127.0.0.1: convergence and live push (also of writes by another
 * process), ZAP refusal of unknown keys (persisted, rate-limited), wrong
 * server keys with backoff, hostile trusted clients, bind errors, stop that
 * never hangs and says goodbye, the event fd, weft_sync_now with connect 0,
 * and counters that are current when events arrive.
 *
 * Every engine listens on "tcp://127.0.0.1:*" and the test reads the port
 * back with weft_sync_endpoint, so tests running in parallel never collide.
 * Stores live in fresh directories under /dev/shm (or $TMPDIR).
 *
 * Invariants: none.
 * Thread-safety: each test is single-threaded apart from the engines.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include <criterion/criterion.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include <weft/weft.h>

#include "engine_fixtures.h"
#include "transport/transport_int.h"

static weft_sync *engine(weft_store *s, const char *listen, char *endpoint)
{
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.listen = listen;
    o.backoff_min_ms = 200;
    o.backoff_max_ms = 1000;
    weft_sync *e = NULL;
    OK(weft_sync_start(s, &o, &e));
    if (endpoint != NULL) {
        OK(weft_sync_endpoint(e, endpoint, WEFT_ENDPOINT_MAX + 1));
        cr_assert(strncmp(endpoint, "tcp://127.0.0.1:", 16) == 0, "endpoint %s", endpoint);
    }
    return e;
}

/* Drain @p e's events; count those of @p kind, remembering up to 16 times. */
static int drain_events(weft_sync *e, weft_event_kind kind, uint64_t *times, int cap,
                        weft_event *last)
{
    weft_event ev;
    int n = 0;
    while (weft_sync_next_event(e, &ev) == 1) {
        if (ev.kind == kind) {
            if (times != NULL && n < cap) {
                times[n] = now_ms();
            }
            if (last != NULL) {
                *last = ev;
            }
            n++;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- tests */

Test(engine, converge_live_push_and_other_process, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    /* The writer process is forked before any thread exists; it waits for
     * a byte on the pipe, then commits to B's store through its own handle. */
    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) != 1) {
            _exit(2);
        }
        weft_store *s = NULL;
        if (weft_store_open(db, NULL, &s) != 0) {
            _exit(3);
        }
        weft_txn *t = NULL;
        int rc = weft_txn_begin(s, 0, &t);
        rc = rc ? rc : weft_set_str(t, "notes", "c1", "title", "from-child");
        rc = rc ? rc : weft_txn_commit(&t);
        weft_txn_abort(&t);
        weft_store_close(&s);
        _exit(rc == 0 ? 0 : 4);
    }
    close(go[0]);

    weft_store *a = store_new(da), *b = store_new(db);
    put_str(a, "a1", "alpha");
    put_str(b, "b1", "beta");
    char ea[WEFT_ENDPOINT_MAX + 1], eb[WEFT_ENDPOINT_MAX + 1];
    weft_sync *sa = engine(a, "tcp://127.0.0.1:*", ea);
    weft_sync *sb = engine(b, "tcp://127.0.0.1:*", eb);
    /* Both know each other's address: both connect, one session is kept. */
    add_peer(a, "b", b, eb);
    add_peer(b, "a", a, ea);
    OK(weft_sync_now(sa, NULL));
    OK(weft_sync_now(sb, "a"));

    cr_assert(wait_str(a, "b1", "beta", 10000), "b1 never reached A");
    cr_assert(wait_str(b, "a1", "alpha", 10000), "a1 never reached B");
    cr_assert(wait_state(sa, "b", WEFT_PEER_LIVE, 10000), "A never live with b");
    cr_assert(wait_state(sb, "a", WEFT_PEER_LIVE, 10000), "B never live with a");

    /* Live push: a new write shows up on the other side quickly. */
    uint64_t t0 = now_ms();
    put_str(a, "a2", "pushed");
    cr_assert(wait_str(b, "a2", "pushed", 3000), "live push A -> B took over 3 s");
    uint64_t took = now_ms() - t0;
    cr_assert_lt(took, 3000);

    /* A write committed by another process on B's store reaches A. */
    cr_assert_eq(write(go[1], "x", 1), 1);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
    cr_assert(wait_str(a, "c1", "from-child", 3000), "a write by another process was not pushed");

    /* Status: still live, nothing pending, counters moved. */
    cr_assert(wait_state(sa, "b", WEFT_PEER_LIVE, 5000));
    weft_peer_status st;
    uint64_t end = now_ms() + 5000;
    do {
        cr_assert(peer_status(sa, "b", &st));
        sleep_ms(10);
    } while (st.pending_ops != 0 && now_ms() < end);
    cr_assert_eq(st.pending_ops, 0, "pending %llu", (unsigned long long)st.pending_ops);
    cr_assert_geq(st.syncs, 1);
    weft_sync_health h;
    OK(weft_sync_health_get(sa, &h));
    cr_assert_geq(h.sessions, 1);
    cr_assert_geq(h.ops_sent + h.ops_received, 3);

    weft_sync_stop(&sa);
    weft_sync_stop(&sb);
    cr_assert_null(sa);
    /* Persisted for other processes: the engine stopped, the peer is idle. */
    weft_peer_status ps;
    OK(weft_peer_get(a, "b", &ps));
    cr_assert_eq(ps.state, WEFT_PEER_IDLE, "persisted state %s", weft_peer_state_name(ps.state));
    cr_assert_geq(ps.syncs, 1);
    close(go[1]);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, unknown_client_refused, .timeout = 30)
{
    char *ds = tmpdir_new(), *dc = tmpdir_new();
    weft_store *s = store_new(ds), *c = store_new(dc);
    put_str(s, "s1", "server-secret");
    put_str(c, "c1", "client-data");
    char es[WEFT_ENDPOINT_MAX + 1];
    weft_sync *ss = engine(s, "tcp://127.0.0.1:*", es);
    add_peer(c, "srv", s, es); /* the client trusts the server; not the reverse */
    weft_sync *sc = engine(c, NULL, NULL);

    weft_event ev;
    int refused = 0;
    uint64_t end = now_ms() + 10000;
    while (refused == 0 && now_ms() < end) {
        refused += drain_events(ss, WEFT_EV_REFUSED, NULL, 0, &ev);
        sleep_ms(10);
    }
    cr_assert_gt(refused, 0, "the server never reported a refusal");
    cr_assert(strstr(ev.message, "not in the peer list") != NULL, "message: %s", ev.message);
    char hex[65];
    weft_info ci;
    OK(weft_store_info(c, &ci));
    for (int i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", ci.public_key[i]);
    }
    cr_assert(strstr(ev.message, hex) != NULL, "message lacks the key: %s", ev.message);
    weft_sync_health h;
    end = now_ms() + 2000;
    do {
        OK(weft_sync_health_get(ss, &h));
        sleep_ms(10);
    } while (h.refused == 0 && now_ms() < end);
    cr_assert_geq(h.refused, 1);

    cr_assert(wait_state(sc, "srv", WEFT_PEER_ERROR, 5000), "client never in error");
    weft_peer_status st;
    cr_assert(peer_status(sc, "srv", &st));
    cr_assert_eq(st.last_error, WEFT_EAUTH, "%s", weft_err_name(st.last_error));
    cr_assert(strstr(st.last_error_msg, "our key is not in its peer list") != NULL, "msg: %s",
              st.last_error_msg);
    cr_assert_eq(drain_events(sc, WEFT_EV_CHANGES, NULL, 0, NULL), 0);

    weft_sync_stop(&sc);
    weft_sync_stop(&ss);
    cr_assert(!has_str(c, "s1", "server-secret"), "data leaked to an unknown client");
    cr_assert(!has_str(s, "c1", "client-data"), "data from an unknown client was applied");
    weft_store_close(&s);
    weft_store_close(&c);
    rm_rf(ds);
    rm_rf(dc);
}

Test(engine, wrong_server_key_backs_off, .timeout = 30)
{
    char *ds = tmpdir_new(), *dc = tmpdir_new(), *dx = tmpdir_new();
    weft_store *s = store_new(ds), *c = store_new(dc), *x = store_new(dx);
    char es[WEFT_ENDPOINT_MAX + 1];
    weft_sync *ss = engine(s, "tcp://127.0.0.1:*", es);
    add_peer(s, "cli", c, NULL);
    add_peer(c, "srv", x, es); /* x's key at s's address: the wrong server key */
    weft_sync *sc = engine(c, NULL, NULL);

    uint64_t times[16];
    weft_event last;
    int n = 0;
    uint64_t end = now_ms() + 8000;
    while (n < 3 && now_ms() < end) {
        n += drain_events(sc, WEFT_EV_REFUSED, times + n, 16 - n, &last);
        sleep_ms(5);
    }
    cr_assert_geq(n, 3, "only %d failed attempts seen", n);
    cr_assert(strstr(last.message, "wrong server key") != NULL, "message: %s", last.message);
    /* backoff 200 ms doubling, +-25%: gaps of at least 150 then 300 ms. */
    cr_assert_geq(times[1] - times[0], 140, "gap %llu", (unsigned long long)(times[1] - times[0]));
    cr_assert_geq(times[2] - times[1], 280, "gap %llu", (unsigned long long)(times[2] - times[1]));
    weft_peer_status st;
    cr_assert(peer_status(sc, "srv", &st));
    cr_assert_eq(st.last_error, WEFT_EAUTH);
    cr_assert_geq(st.failures, 3);

    uint64_t t0 = now_ms();
    weft_sync_stop(&sc);
    weft_sync_stop(&ss);
    cr_assert_lt(now_ms() - t0, 2000, "stop took %llu ms", (unsigned long long)(now_ms() - t0));
    weft_store_close(&s);
    weft_store_close(&c);
    weft_store_close(&x);
    rm_rf(ds);
    rm_rf(dc);
    rm_rf(dx);
}

/* A raw libzmq DEALER with a trusted peer's CURVE keys. */
typedef struct raw {
    void *ctx, *sock;
} raw;

static raw raw_open(weft_store *as, weft_store *server, const char *endpoint)
{
    raw r;
    weft_info me, srv;
    uint8_t sk[32];
    OK(weft_store_info(as, &me));
    OK(weft_store_info(server, &srv));
    OK(weft_store_secret_key(as, sk));
    r.ctx = zmq_ctx_new();
    r.sock = zmq_socket(r.ctx, ZMQ_DEALER);
    int zero = 0, tmo = 3000;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r.sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(r.sock, ZMQ_CURVE_SERVERKEY, srv.public_key, 32);
    zmq_setsockopt(r.sock, ZMQ_CURVE_PUBLICKEY, me.public_key, 32);
    zmq_setsockopt(r.sock, ZMQ_CURVE_SECRETKEY, sk, 32);
    cr_assert_eq(zmq_connect(r.sock, endpoint), 0);
    return r;
}

static void raw_close(raw *r)
{
    zmq_close(r->sock);
    zmq_ctx_term(r->ctx);
}

/* Receive frames until an ERROR (returns its code) or a timeout (returns 0). */
static int raw_wait_error(raw *r)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, r->sock, 0) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
        weft__msg msg;
        int code = 0;
        if (weft__msg_decode(zmq_msg_data(&m), zmq_msg_size(&m), &msg) == 0) {
            if (msg.type == WEFT__MSG_ERROR) {
                code = msg.code;
            }
            weft__msg_free(&msg);
        }
        zmq_msg_close(&m);
        if (code != 0) {
            return code;
        }
    }
}

static void raw_send(raw *r, const void *p, size_t n)
{
    cr_assert_eq(zmq_send(r->sock, p, n, 0), (int)n);
}

typedef struct op_copy {
    weft_op op;
    uint8_t payload[4096];
} op_copy;

static int copy_first(const weft_op *op, void *user)
{
    op_copy *c = user;
    c->op = *op;
    cr_assert_leq(op->payload.len, sizeof c->payload);
    memcpy(c->payload, op->payload.ptr, op->payload.len);
    c->op.payload.ptr = c->payload;
    return 1;
}

Test(engine, hostile_trusted_client, .timeout = 30)
{
    char *ds = tmpdir_new(), *dc = tmpdir_new(), *dr = tmpdir_new();
    weft_store *s = store_new(ds), *c = store_new(dc), *rs = store_new(dr);
    char es[WEFT_ENDPOINT_MAX + 1];
    weft_sync *ss = engine(s, "tcp://127.0.0.1:*", es);
    add_peer(s, "good", c, NULL);
    add_peer(s, "evil", rs, NULL);
    add_peer(c, "srv", s, es);
    weft_sync *sc = engine(c, NULL, NULL);
    put_str(c, "g0", "v0");
    cr_assert(wait_str(s, "g0", "v0", 10000), "the good client never synced");

    /* 1. garbage */
    raw r = raw_open(rs, s, es);
    raw_send(&r, "\xc1garbage", 8);
    cr_assert_eq(raw_wait_error(&r), WEFT_ECORRUPT);
    raw_close(&r);
    put_str(c, "g1", "v1");
    cr_assert(wait_str(s, "g1", "v1", 5000), "good client stalled after garbage");

    /* 2. OPS before HELLO */
    op_copy oc;
    put_str(rs, "evil1", "x");
    weft_txn *t = NULL;
    OK(weft_txn_begin(rs, WEFT_TXN_RDONLY, &t));
    cr_assert_eq(weft_ops_since(t, NULL, copy_first, &oc), 1);
    weft_txn_abort(&t);
    weft__buf b = {NULL, 0, 0};
    OK(weft__msg_ops(&b, 1, &oc.op, 1));
    r = raw_open(rs, s, es);
    raw_send(&r, b.ptr, b.len);
    cr_assert_eq(raw_wait_error(&r), WEFT_ECORRUPT);
    raw_close(&r);
    put_str(c, "g2", "v2");
    cr_assert(wait_str(s, "g2", "v2", 5000), "good client stalled after OPS before HELLO");

    /* 3. out-of-order seq: a proper HELLO, then OPS seq 7 */
    weft_vv *vv = NULL;
    OK(weft_vv_new(&vv));
    weft__buf h = {NULL, 0, 0};
    OK(weft__msg_hello(&h, WEFT_ROLE_DEVICE, vv, oc.op.id.hlc));
    weft_vv_destroy(&vv);
    weft__buf_reset(&b);
    OK(weft__msg_ops(&b, 7, &oc.op, 1));
    r = raw_open(rs, s, es);
    raw_send(&r, h.ptr, h.len);
    raw_send(&r, b.ptr, b.len);
    cr_assert_eq(raw_wait_error(&r), WEFT_ECORRUPT);
    raw_close(&r);
    cr_assert(!has_str(s, "evil1", "x"), "an out-of-order batch was applied");
    put_str(c, "g3", "v3");
    cr_assert(wait_str(s, "g3", "v3", 5000), "good client stalled after bad seq");

    /* 4. oversized frame: ZeroMQ drops the connection (no ERROR possible). */
    size_t big = WEFT__MSG_MAX + 1024;
    uint8_t *junk = calloc(1, big);
    cr_assert_not_null(junk);
    r = raw_open(rs, s, es);
    raw_send(&r, junk, big);
    free(junk);
    int tmo = 500;
    zmq_setsockopt(r.sock, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    (void)raw_wait_error(&r);
    raw_close(&r);
    put_str(c, "g4", "v4");
    cr_assert(wait_str(s, "g4", "v4", 5000), "good client stalled after an oversized frame");
    cr_assert(wait_state(sc, "srv", WEFT_PEER_LIVE, 5000));

    weft__buf_free(&b);
    weft__buf_free(&h);
    weft_sync_stop(&sc);
    weft_sync_stop(&ss);
    weft_store_close(&s);
    weft_store_close(&c);
    weft_store_close(&rs);
    rm_rf(ds);
    rm_rf(dc);
    rm_rf(dr);
}

Test(engine, bind_in_use_is_reported, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    char ea[WEFT_ENDPOINT_MAX + 1];
    weft_sync *sa = engine(a, "tcp://127.0.0.1:*", ea);
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.listen = ea;
    weft_sync *sb = NULL;
    int rc = weft_sync_start(b, &o, &sb);
    cr_assert_eq(rc, WEFT_EIO, "%s", weft_err_name(rc));
    cr_assert_null(sb);
    char want[WEFT_ENDPOINT_MAX + 64];
    snprintf(want, sizeof want, "cannot listen on %s: Address already in use", ea);
    cr_assert_str_eq(weft_last_error(), want);
    weft_sync_stop(&sa);
    weft_sync_stop(&sb); /* NULL-safe */
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, stop_never_hangs, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new(), *dc = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db), *c = store_new(dc);
    /* A TCP listener that never accepts: the kernel completes the connect,
     * the CURVE handshake never does, so our HELLO stays queued. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(lfd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    socklen_t sl = sizeof sin;
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
    char blackhole[64];
    snprintf(blackhole, sizeof blackhole, "tcp://127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    add_peer(a, "hole", b, blackhole);
    add_peer(a, "closed", c, "tcp://127.0.0.1:1"); /* connection refused */
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof id, "n%d", i);
        put_str(a, id, "queued");
    }
    for (int round = 0; round < 3; round++) {
        weft_sync *sa = engine(a, "tcp://127.0.0.1:*", NULL);
        sleep_ms(round * 300u);
        weft_peer_status hole;
        cr_assert(peer_status(sa, "hole", &hole));
        cr_assert_eq(hole.pending_ops, 50, "pending %llu", (unsigned long long)hole.pending_ops);
        cr_assert_gt(hole.pending_bytes, 0);
        uint64_t t0 = now_ms();
        weft_sync_stop(&sa);
        cr_assert_lt(now_ms() - t0, 1500, "stop took %llu ms", (unsigned long long)(now_ms() - t0));
    }
    weft_peer_status st;
    OK(weft_peer_get(a, "closed", &st));
    cr_assert(st.state == WEFT_PEER_IDLE || st.state == WEFT_PEER_ERROR);
    close(lfd);
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
    rm_rf(da);
    rm_rf(db);
    rm_rf(dc);
}

Test(engine, event_fd_level_triggered, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    add_peer(a, "closed", b, "tcp://127.0.0.1:1"); /* fails: events guaranteed */
    weft_sync *sa = engine(a, NULL, NULL);
    int fd = -1;
    OK(weft_sync_fd(sa, &fd));
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 5000), 1, "no event within 5 s");
    /* Level-triggered: still readable until drained. */
    p.revents = 0;
    cr_assert_eq(poll(&p, 1, 0), 1);
    weft_sync_stop(&sa);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, event_fd_drains, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    add_peer(a, "closed", b, "tcp://127.0.0.1:1");
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.backoff_min_ms = 60000; /* one failure, then quiet for a minute */
    o.backoff_max_ms = 60000;
    weft_sync *sa = NULL;
    OK(weft_sync_start(a, &o, &sa));
    int fd = -1;
    OK(weft_sync_fd(sa, &fd));
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 5000), 1, "no event within 5 s");
    weft_peer_status st;
    cr_assert(wait_state(sa, "closed", WEFT_PEER_ERROR, 5000));
    sleep_ms(100); /* let the failure's events all land */
    weft_event ev;
    int n = 0;
    while (weft_sync_next_event(sa, &ev) == 1) {
        n++;
    }
    cr_assert_gt(n, 0);
    p.revents = 0;
    cr_assert_eq(poll(&p, 1, 0), 0, "fd readable with an empty queue");
    cr_assert_eq(weft_sync_next_event(sa, &ev), 0);
    cr_assert(peer_status(sa, "closed", &st));
    cr_assert_eq(st.last_error, WEFT_EIO);
    cr_assert(strstr(st.last_error_msg, "cannot connect to closed") != NULL, "msg: %s",
              st.last_error_msg);
    /* weft_sync_now resets the backoff and retries at once: a new event. */
    OK(weft_sync_now(sa, "closed"));
    cr_assert_eq(poll(&p, 1, 5000), 1, "weft_sync_now did not retry");
    cr_assert_eq(weft_sync_now(sa, "nobody"), WEFT_ENOTFOUND);
    weft_sync_stop(&sa);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, peer_rm_and_add_take_effect_at_next_handshake, .timeout = 30)
{
    char *ds = tmpdir_new(), *dc = tmpdir_new();
    weft_store *s = store_new(ds), *c = store_new(dc);
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.listen = "tcp://127.0.0.1:*";
    o.heartbeat_ms = 100;
    o.dead_ms = 600;
    o.backoff_min_ms = 100;
    o.backoff_max_ms = 400;
    weft_sync *ss = NULL;
    OK(weft_sync_start(s, &o, &ss));
    char es[WEFT_ENDPOINT_MAX + 1];
    OK(weft_sync_endpoint(ss, es, sizeof es));
    add_peer(s, "cli", c, NULL);
    add_peer(c, "srv", s, es);
    o.listen = NULL;
    weft_sync *sc = NULL;
    OK(weft_sync_start(c, &o, &sc));
    put_str(c, "k1", "one");
    cr_assert(wait_str(s, "k1", "one", 10000));

    /* Removed on the server: its session ends, the next handshake fails. */
    OK(weft_peer_rm(s, "cli"));
    weft_peer_status st;
    uint64_t end = now_ms() + 10000;
    do {
        cr_assert(peer_status(sc, "srv", &st));
        sleep_ms(10);
    } while (st.last_error != WEFT_EAUTH && now_ms() < end);
    cr_assert_eq(st.last_error, WEFT_EAUTH, "last error %s: %s", weft_err_name(st.last_error),
                 st.last_error_msg);
    put_str(c, "k2", "two");
    sleep_ms(300);
    cr_assert(!has_str(s, "k2", "two"), "a removed peer still syncs");

    /* Added back: admitted at the next retry, no restart needed. */
    add_peer(s, "cli", c, NULL);
    cr_assert(wait_str(s, "k2", "two", 10000), "a re-added peer was not admitted");

    weft_sync_stop(&sc);
    weft_sync_stop(&ss);
    weft_store_close(&s);
    weft_store_close(&c);
    rm_rf(ds);
    rm_rf(dc);
}

Test(engine, sync_now_connects_only_the_named_peer, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new(), *dc = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db), *c = store_new(dc);
    put_str(a, "a1", "from-a");
    char eb[WEFT_ENDPOINT_MAX + 1], ec[WEFT_ENDPOINT_MAX + 1];
    weft_sync *sb = engine(b, "tcp://127.0.0.1:*", eb);
    weft_sync *sc = engine(c, "tcp://127.0.0.1:*", ec);
    add_peer(a, "b", b, eb);
    add_peer(a, "c", c, ec);
    add_peer(b, "a", a, NULL);
    add_peer(c, "a", a, NULL);
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.connect = 0;
    o.backoff_min_ms = 200;
    weft_sync *sa = NULL;
    OK(weft_sync_start(a, &o, &sa));
    sleep_ms(300);
    weft_peer_status st;
    cr_assert(peer_status(sa, "b", &st));
    cr_assert_eq(st.state, WEFT_PEER_IDLE, "connect = 0 connected anyway: %s",
                 weft_peer_state_name(st.state));
    OK(weft_sync_now(sa, "b"));
    cr_assert(wait_state(sa, "b", WEFT_PEER_LIVE, 10000), "never live with b");
    cr_assert(wait_str(b, "a1", "from-a", 5000));
    sleep_ms(1000); /* c would have had time to see a connection */
    cr_assert(peer_status(sa, "c", &st));
    cr_assert_eq(st.state, WEFT_PEER_IDLE, "c: %s", weft_peer_state_name(st.state));
    cr_assert_eq(st.syncs + st.failures, 0);
    cr_assert(peer_status(sc, "a", &st));
    cr_assert_eq(st.state, WEFT_PEER_IDLE, "c saw a: %s", weft_peer_state_name(st.state));
    weft_sync_health h;
    OK(weft_sync_health_get(sc, &h));
    cr_assert_eq(h.sessions + h.failures + h.refused, 0, "c was contacted");
    cr_assert(!has_str(c, "a1", "from-a"));
    /* The named peer stays connected: a new write is pushed to it. */
    put_str(a, "a2", "pushed");
    cr_assert(wait_str(b, "a2", "pushed", 3000));
    weft_sync_stop(&sa);
    weft_sync_stop(&sb);
    weft_sync_stop(&sc);
    weft_store_close(&a);
    weft_store_close(&b);
    weft_store_close(&c);
    rm_rf(da);
    rm_rf(db);
    rm_rf(dc);
}

/* What the LIVE callback saw through the status and health getters. */
typedef struct live_probe {
    weft_sync *e; /* set before weft_sync_now: that call orders it for the engine */
    int seen, bad_progress;
    weft_peer_state state;
    uint64_t ops_sent, ops_received, bytes_sent, bytes_received;
    weft_sync_health health;
    uint64_t prog_sent, prog_received; /* summed from the progress events */
    char why[128];
} live_probe;

static int probe_status(live_probe *u, weft_peer_status *out)
{
    weft_peer_status st[4];
    size_t n = 0;
    if (weft_sync_status(u->e, st, 4, &n) != 0) {
        return 0;
    }
    for (size_t i = 0; i < n && i < 4; i++) {
        if (strcmp(st[i].name, "b") == 0) {
            *out = st[i];
            return 1;
        }
    }
    return 0;
}

static void on_live(const weft_event *ev, void *user)
{
    live_probe *u = user;
    weft_peer_status st;
    if (strcmp(ev->peer, "b") != 0 || !probe_status(u, &st)) {
        return;
    }
    if (ev->kind == WEFT_EV_PROGRESS && ev->error == 0) {
        if (strcmp(ev->message, "sent") == 0) {
            u->prog_sent += ev->ops;
        } else {
            u->prog_received += ev->ops;
        }
        if (st.ops_sent < u->prog_sent || st.ops_received < u->prog_received) {
            u->bad_progress++;
            snprintf(u->why, sizeof u->why, "status %llu/%llu behind events %llu/%llu",
                     (unsigned long long)st.ops_sent, (unsigned long long)st.ops_received,
                     (unsigned long long)u->prog_sent, (unsigned long long)u->prog_received);
        }
    }
    if (ev->kind == WEFT_EV_STATE && ev->state == WEFT_PEER_LIVE && !u->seen) {
        u->seen = 1;
        u->state = st.state;
        u->ops_sent = st.ops_sent;
        u->ops_received = st.ops_received;
        u->bytes_sent = st.bytes_sent;
        u->bytes_received = st.bytes_received;
        weft_sync_health_get(u->e, &u->health);
    }
}

Test(engine, counters_are_current_when_events_arrive, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "a%d", i);
        put_str(a, id, "from-a");
    }
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "b%d", i);
        put_str(b, id, "from-b");
    }
    char eb[WEFT_ENDPOINT_MAX + 1];
    weft_sync *sb = engine(b, "tcp://127.0.0.1:*", eb);
    add_peer(a, "b", b, eb);
    add_peer(b, "a", a, NULL);
    live_probe u;
    memset(&u, 0, sizeof u);
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.connect = 0;
    o.on_event = on_live;
    o.user = &u;
    weft_sync *sa = NULL;
    OK(weft_sync_start(a, &o, &sa));
    u.e = sa;
    OK(weft_sync_now(sa, "b"));
    cr_assert(wait_state(sa, "b", WEFT_PEER_LIVE, 10000), "never live");
    weft_sync_stop(&sa); /* joins the engine thread: u is ours again */
    cr_assert(u.seen, "no LIVE event");
    cr_assert_eq(u.state, WEFT_PEER_LIVE, "status said %s on LIVE", weft_peer_state_name(u.state));
    cr_assert_eq(u.ops_sent, 5, "ops_sent %llu on LIVE", (unsigned long long)u.ops_sent);
    cr_assert_eq(u.ops_received, 3, "ops_received %llu on LIVE",
                 (unsigned long long)u.ops_received);
    cr_assert_gt(u.bytes_sent, 0);
    cr_assert_gt(u.bytes_received, 0);
    cr_assert_eq(u.health.ops_sent, 5);
    cr_assert_eq(u.health.ops_received, 3);
    cr_assert_eq(u.health.sessions, 1, "the LIVE session was not counted yet");
    cr_assert_eq(u.prog_sent, 5);
    cr_assert_eq(u.prog_received, 3);
    cr_assert_eq(u.bad_progress, 0, "%s", u.why);
    weft_sync_stop(&sb);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, stop_says_goodbye, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    put_str(a, "a1", "x");
    char eb[WEFT_ENDPOINT_MAX + 1];
    weft_sync *sb = engine(b, "tcp://127.0.0.1:*", eb);
    add_peer(a, "b", b, eb);
    add_peer(b, "a", a, NULL);
    weft_sync *sa = engine(a, NULL, NULL);
    cr_assert(wait_state(sa, "b", WEFT_PEER_LIVE, 10000));
    cr_assert(wait_state(sb, "a", WEFT_PEER_LIVE, 10000));
    weft_peer_status before;
    cr_assert(peer_status(sb, "a", &before));
    drain_events(sb, WEFT_EV_ERROR, NULL, 0, NULL);
    uint64_t t0 = now_ms();
    weft_sync_stop(&sa);
    cr_assert_lt(now_ms() - t0, 1000, "stop took %llu ms", (unsigned long long)(now_ms() - t0));
    cr_assert(wait_state(sb, "a", WEFT_PEER_IDLE, 3000), "the listener never saw the goodbye");
    weft_peer_status st;
    cr_assert(peer_status(sb, "a", &st));
    cr_assert_eq(st.failures, before.failures, "a goodbye counted as a failure");
    cr_assert_eq(st.last_error, 0, "%s: %s", weft_err_name(st.last_error), st.last_error_msg);
    weft_event ev;
    int errors = 0, bye = 0;
    while (weft_sync_next_event(sb, &ev) == 1) {
        errors += ev.kind == WEFT_EV_ERROR;
        if (ev.kind == WEFT_EV_STATE && ev.state == WEFT_PEER_IDLE) {
            bye += strstr(ev.message, "a said goodbye") != NULL;
        }
    }
    cr_assert_eq(errors, 0, "the listener reported an error");
    cr_assert_eq(bye, 1, "no goodbye event");
    /* Still idle a while later: the connection's end changed nothing. */
    sleep_ms(300);
    cr_assert(peer_status(sb, "a", &st));
    cr_assert_eq(st.state, WEFT_PEER_IDLE);
    cr_assert_eq(st.failures, before.failures);
    weft_sync_health h;
    OK(weft_sync_health_get(sb, &h));
    cr_assert_eq(h.failures, 0);
    weft_sync_stop(&sb);
    weft_peer_status ps;
    OK(weft_peer_get(b, "a", &ps));
    cr_assert_eq(ps.last_error, 0);
    cr_assert_eq(ps.failures, 0);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}

Test(engine, refusals_are_persisted_and_rate_limited, .timeout = 30)
{
    char *ds = tmpdir_new(), *dc = tmpdir_new();
    weft_store *s = store_new(ds), *c = store_new(dc);
    char es[WEFT_ENDPOINT_MAX + 1];
    uint64_t seq0 = 0, seq1 = 0;
    weft_store_changed(s, &seq0);
    weft_sync *ss = engine(s, "tcp://127.0.0.1:*", es);
    add_peer(c, "srv", s, es); /* c trusts s; s does not know c */
    weft_sync *sc = engine(c, NULL, NULL);
    weft_event ev;
    int refused = 0;
    uint64_t end = now_ms() + 10000;
    while (refused == 0 && now_ms() < end) {
        refused += drain_events(ss, WEFT_EV_REFUSED, NULL, 0, &ev);
        sleep_ms(10);
    }
    cr_assert_gt(refused, 0);
    weft_sync_stop(&sc);
    /* A flood of unknown clients within well under a second. */
    weft_info si;
    OK(weft_store_info(s, &si));
    void *ctx = zmq_ctx_new();
    void *flood[24];
    uint64_t t0 = now_ms();
    for (int i = 0; i < 24; i++) {
        char pub[41], sec[41];
        cr_assert_eq(zmq_curve_keypair(pub, sec), 0);
        flood[i] = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(flood[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(flood[i], ZMQ_CURVE_SERVERKEY, si.public_key, 32);
        zmq_setsockopt(flood[i], ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(flood[i], ZMQ_CURVE_SECRETKEY, sec, 40);
        cr_assert_eq(zmq_connect(flood[i], es), 0);
    }
    weft_sync_health h;
    do {
        OK(weft_sync_health_get(ss, &h));
        sleep_ms(5);
    } while (h.refused < 25 && now_ms() < t0 + 5000);
    uint64_t took = now_ms() - t0;
    for (int i = 0; i < 24; i++) {
        zmq_close(flood[i]);
    }
    zmq_ctx_term(ctx);
    weft_sync_stop(&ss); /* writes what is left */
    cr_assert_eq(weft_store_changed(s, &seq1), 1);
    /* One write a second at most, plus the one on stop (and the first). */
    uint64_t commits = seq1 - seq0, allowed = took / 1000 + 3;
    cr_assert_leq(commits, allowed, "%llu commits in %llu ms for the refusals",
                  (unsigned long long)commits, (unsigned long long)took);
    weft_store_close(&s);

    /* A fresh handle: the record is in the store. */
    s = store_new(ds);
    weft_refusal r[WEFT_REFUSALS_MAX + 2];
    size_t n = 99;
    uint64_t total = 0;
    OK(weft_refusals(s, r, WEFT_REFUSALS_MAX + 2, &n, &total));
    cr_assert_geq(total, 25, "total %llu", (unsigned long long)total);
    cr_assert_eq(n, WEFT_REFUSALS_MAX);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(r[i].addr, "127.0.0.1");
        cr_assert_leq(r[i].at_ms, (uint64_t)time(NULL) * 1000 + 1000);
        cr_assert_geq(r[i].at_ms, (uint64_t)time(NULL) * 1000 - 60000);
        if (i > 0) {
            cr_assert_geq(r[i - 1].at_ms, r[i].at_ms, "not newest first");
        }
    }
    /* cap smaller than what is kept: the newest only, n says how many. */
    weft_refusal one;
    OK(weft_refusals(s, &one, 1, &n, NULL));
    cr_assert_eq(n, WEFT_REFUSALS_MAX);
    cr_assert_arr_eq(one.public_key, r[0].public_key, WEFT_KEY_BYTES);
    cr_assert_eq(weft_refusals(s, NULL, 1, &n, NULL), WEFT_EINVAL);
    weft_store_close(&s);

    /* The first refusal (c's key) is in the record of a store that saw only
     * it: checked on a fresh pair with no flood. */
    rm_rf(ds);
    ds = tmpdir_new();
    s = store_new(ds);
    ss = engine(s, "tcp://127.0.0.1:*", es);
    weft_sync_options o;
    weft_sync_options_init(&o);
    OK(weft_peer_rm(c, "srv"));
    add_peer(c, "srv", s, es);
    OK(weft_sync_start(c, &o, &sc));
    refused = 0;
    end = now_ms() + 10000;
    while (refused == 0 && now_ms() < end) {
        refused += drain_events(ss, WEFT_EV_REFUSED, NULL, 0, &ev);
        sleep_ms(10);
    }
    cr_assert_gt(refused, 0);
    weft_sync_stop(&sc);
    weft_sync_stop(&ss);
    weft_store_close(&s);
    s = store_new(ds);
    OK(weft_refusals(s, r, WEFT_REFUSALS_MAX, &n, &total));
    cr_assert_geq(total, 1);
    cr_assert_geq(n, 1);
    weft_info ci;
    OK(weft_store_info(c, &ci));
    cr_assert_arr_eq(r[0].public_key, ci.public_key, WEFT_KEY_BYTES, "not the client's key");
    weft_store_close(&s);
    weft_store_close(&c);
    rm_rf(ds);
    rm_rf(dc);
}

/* "n<i>" padded with x to @p cap - 1 bytes. */
static void backlog_id(char *id, size_t cap, int i)
{
    int k = snprintf(id, cap, "n%d-", i);
    memset(id + k, 'x', cap - 1 - (size_t)k);
    id[cap - 1] = 0;
}

/* A backlog many windows deep streams on acknowledgements alone: the
 * heartbeat and dead-peer timers are set far beyond the test's bound, and
 * the engine's 1 s status tick could move at most one window (4 batches) a
 * second, so 50 windows converge within the bound only if each ACK makes
 * the engine stream the next batch (regression: the engine fed frames to
 * the session without polling it afterwards; every window waited a tick). */
Test(engine, backlog_streams_on_acks_not_timers, .timeout = 30)
{
    char *da = tmpdir_new(), *db = tmpdir_new();
    weft_store *a = store_new(da), *b = store_new(db);
    /* 64 default batches or more: 16 windows, >= 16 s if each waited for the
     * 1 s timer. Each op's entity id is ID_BYTES long, so its payload is
     * over 256 bytes and the payload-byte cap cuts a batch at fewer than
     * WEFT__BATCH_BYTES / 256 = 4,096 ops, below the op-count cap: as many
     * batches as 4x the ops with short ids would make, for a quarter of the
     * ops (and so about the time this test took with 4,096-op batches). */
    enum { ID_BYTES = 240, N = 64 * (WEFT__BATCH_BYTES / 256) };
    _Static_assert(WEFT__BATCH_BYTES / 256 <= WEFT__BATCH_OPS, "batches cut by bytes");
    weft_txn *t = NULL;
    OK(weft_txn_begin(a, 0, &t));
    char id[ID_BYTES + 1];
    for (int i = 0; i < N; i++) {
        backlog_id(id, sizeof id, i);
        OK(weft_set_str(t, "notes", id, "title", "backlog"));
    }
    OK(weft_txn_commit(&t));
    weft_sync_options o;
    weft_sync_options_init(&o);
    o.listen = "tcp://127.0.0.1:*";
    o.heartbeat_ms = 600000;
    o.dead_ms = 1200000;
    weft_sync *sa = NULL, *sb = NULL;
    OK(weft_sync_start(a, &o, &sa));
    char ea[WEFT_ENDPOINT_MAX + 1];
    OK(weft_sync_endpoint(sa, ea, sizeof ea));
    add_peer(a, "b", b, NULL);
    add_peer(b, "a", a, ea);
    o.listen = NULL;
    OK(weft_sync_start(b, &o, &sb));
    OK(weft_sync_now(sb, "a"));
    backlog_id(id, sizeof id, N - 1);
    cr_assert(wait_str(b, id, "backlog", 14000), "the backlog did not stream on ACKs alone");
    weft_sync_stop(&sb);
    weft_sync_stop(&sa);
    weft_store_close(&a);
    weft_store_close(&b);
    rm_rf(da);
    rm_rf(db);
}
