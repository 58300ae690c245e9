/* test_net.c - sync between processes: the built `weft` binary run as
 * daemons (`weft serve`, also as a relay) and one-shot syncs (`weft sync`)
 * on loopback, checked through the command's --json output: convergence,
 * a sync that talks to the named peer only and says goodbye, refusals shown
 * on the refusing side, kills mid-sync, skew reported to the sender.
 *
 * Each test gets its own temporary directory (under /dev/shm when it exists)
 * holding its stores and the logs of the processes it starts. Background
 * processes are recorded in a table and SIGKILLed in the suite's fini, so a
 * failing assertion leaves nothing running. Foreground runs are killed after
 * RUN_TIMEOUT_S. Ports come from binding port 0 on 127.0.0.1 and releasing
 * it. Large stores are filled through the public API in the test process
 * (one transaction), the rest through the command. The malformed-message
 * test speaks CURVE with libzmq directly, as a trusted but misbehaving peer.
 * The harness is in net_helpers.c, shared with test_hostile.c.
 *
 * Invariants:
 *   1. Every process a test starts is dead when the test ends (fini).
 *   2. Tests share nothing: stores, logs and ports are per test.
 * Thread-safety: criterion runs each test in its own process; nothing here
 * is shared between threads.
 */
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
#include <zmq.h>

#include <weft/weft.h>

#include "net_helpers.h"

#define BIG_OPS   80000 /* ops in the interrupted-sync tests (~20 batches of FILL_BATCH) */
#define BATCH_OPS 4096  /* protocol.md: ops per OPS message */
#define HOUR_MS   "3600000"

/* fill()'s ops are cut into batches by their bytes (at FILL_BATCH ops), not
 * by the op count first. */
_Static_assert(FILL_BATCH <= BATCH_OPS, "fill()'s batches must be cut by bytes");

TestSuite(net, .init = net_setup, .fini = net_teardown, .timeout = 150);

/* ================================================================ tests */

Test(net, two_devices_converge_both_ways)
{
    const char *a = store("a", NULL), *b = store("b", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0);
    trust(b, "a", a, NULL, 0);
    free(OK(a, "put", "notes", "n1", "title=\"from a\""));
    free(OK(b, "put", "notes", "n2", "title=\"from b\""));
    int sb = serve("b", NULL, b, ep, 0);
    char *out = OK(a, "sync", "b", "--timeout", "20");
    unsigned long sent, recv;
    sync_counts(out, &sent, &recv);
    cr_assert_eq(sent, 1);
    cr_assert_eq(recv, 1);
    free(out);
    same_state(a, b);
    /* Both ways again, with a change on each side. */
    free(OK(b, "put", "notes", "n1", "body=\"b adds a body\""));
    free(OK(a, "inc", "notes", "n2", "views"));
    free(OK(a, "sync", "b"));
    same_state(a, b);
    json_t *p = peer_of(a, "b");
    cr_assert_eq(json_integer_value(json_object_get(p, "pending_ops")), 0);
    cr_assert_geq(json_integer_value(json_object_get(p, "syncs")), 2);
    cr_assert_gt(json_integer_value(json_object_get(p, "last_sync_ms")), 0);
    json_decref(p);
    /* Each one-shot sync said goodbye: the server logs a clean close and
     * records neither an error nor a failure. */
    wait_log(sb, "a state idle: a said goodbye (done)", 3000);
    uint64_t t0 = now_ms();
    for (;;) {
        p = peer_of(b, "a");
        const char *st = json_string_value(json_object_get(p, "state"));
        if (strcmp(st, "idle") == 0 || now_ms() - t0 > 3000) {
            break;
        }
        json_decref(p);
        nap_ms(50);
    }
    cr_assert_str_eq(json_string_value(json_object_get(p, "state")), "idle");
    cr_assert_eq(json_integer_value(json_object_get(p, "last_error_code")), 0, "%s",
                 json_string_value(json_object_get(p, "last_error_msg")));
    cr_assert_eq(json_integer_value(json_object_get(p, "failures")), 0);
    cr_assert_geq(json_integer_value(json_object_get(p, "syncs")), 2);
    json_decref(p);
    char *slog = slurp(procs[sb].log);
    cr_assert_null(strstr(slog, " a error"), "the server logged an error: %s", slog);
    free(slog);
    cr_assert_eq(stop(sb, SIGTERM), 0, "serve did not exit 0 on SIGTERM");
    char *log = slurp(procs[sb].log);
    cr_assert_not_null(strstr(log, "stopped"), "%s", log);
    free(log);
}

Test(net, sync_name_talks_to_that_peer_only)
{
    const char *a = store("a", NULL), *b = store("b", NULL), *c = store("c", NULL);
    const char *eb = endpoint(), *ec = endpoint();
    trust(a, "b", b, eb, 0);
    trust(a, "c", c, ec, 0);
    trust(b, "a", a, NULL, 0);
    trust(c, "a", a, NULL, 0);
    free(OK(a, "put", "notes", "n1", "title=\"for b only\""));
    int sb = serve("b", NULL, b, eb, 0);
    int sc = serve("c", NULL, c, ec, 0);
    char *out = OK(a, "sync", "b", "--timeout", "20");
    unsigned long sent, recv;
    sync_counts(out, &sent, &recv);
    cr_assert_eq(sent, 1);
    cr_assert_eq(recv, 0);
    free(out);
    same_state(a, b);
    cr_assert_eq(status_int(c, "ops"), 0, "c received ops from a sync with b");
    char *log = slurp(procs[sc].log);
    cr_assert_null(strstr(log, "Z a "), "c's log has a line about a: %s", log);
    free(log);
    json_t *p = peer_of(c, "a");
    cr_assert_str_eq(json_string_value(json_object_get(p, "state")), "idle");
    cr_assert_eq(json_integer_value(json_object_get(p, "syncs")), 0);
    cr_assert_eq(json_integer_value(json_object_get(p, "failures")), 0);
    json_decref(p);
    p = peer_of(a, "c");
    cr_assert_eq(json_integer_value(json_object_get(p, "syncs")), 0);
    cr_assert_eq(json_integer_value(json_object_get(p, "failures")), 0);
    cr_assert_eq(json_integer_value(json_object_get(p, "pending_ops")), 1);
    json_decref(p);
    cr_assert_eq(stop(sb, SIGTERM), 0);
    cr_assert_eq(stop(sc, SIGTERM), 0);
}

Test(net, three_devices_never_online_together_converge_through_relay)
{
    const char *r = store("relay", NULL);
    const char *dev[3] = {store("d0", NULL), store("d1", NULL), store("d2", NULL)};
    const char *names[3] = {"d0", "d1", "d2"};
    const char *ep = endpoint();
    for (int i = 0; i < 3; i++) {
        trust(dev[i], "relay", r, ep, 1);
        trust(r, names[i], dev[i], NULL, 0);
    }
    int sr = serve("relay", NULL, r, ep, 1);
    for (int i = 0; i < 3; i++) {
        char id[8], t[64];
        snprintf(id, sizeof id, "n%d", i);
        snprintf(t, sizeof t, "title=\"written on %s\"", names[i]);
        free(OK(dev[i], "put", "notes", id, t));
        free(OK(dev[i], "put", "notes", "shared", t)); /* a conflict, once merged */
        free(OK(dev[i], "sync", "relay"));
        json_t *p = peer_of(dev[i], "relay");
        cr_assert_eq(json_integer_value(json_object_get(p, "pending_ops")), 0,
                     "%s still has ops not backed up", names[i]);
        json_decref(p);
    }
    /* d0 and d1 come back later and catch up. */
    free(OK(dev[0], "sync", "relay"));
    free(OK(dev[1], "sync", "relay"));
    same_state(dev[0], dev[1]);
    same_state(dev[1], dev[2]);
    same_state(dev[2], r);
    json_t *cf = OKJ(dev[0], "conflicts");
    cr_assert_eq(json_array_size(json_object_get(cf, "conflicts")), 1);
    json_decref(cf);
    cr_assert_eq(status_int(r, "ops"), 6);
    stop(sr, SIGTERM);
}

Test(net, receiver_killed_mid_sync_loses_nothing_and_resumes)
{
    const char *a = store("a", NULL), *b = store("b", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0);
    trust(b, "a", a, NULL, 0);
    fill(a, BIG_OPS);
    int sb = serve("b", NULL, b, ep, 0);
    int sa = bg("sync1", NULL, a, "sync", "b", "--timeout", "30", NULL);
    uint64_t seen = wait_ops_above(b, 0, 30000);
    cr_assert_gt(seen, 0, "b never received anything");
    stop(sb, SIGKILL);
    uint64_t held = ops_of(b);
    cr_assert_lt(held, BIG_OPS, "the sync finished before the kill (%lu ops)", (unsigned long)held);
    cr_assert_geq(held, seen, "b lost ops it had committed: %lu < %lu", (unsigned long)held,
                  (unsigned long)seen);
    check_chains(b);
    cr_assert_neq(stop(sa, SIGKILL), 0);
    /* b comes back; a's next session sends exactly what b lacks. */
    sb = serve("b2", NULL, b, ep, 0);
    char *out = OK(a, "sync", "b", "--timeout", "30");
    unsigned long sent, recv;
    sync_counts(out, &sent, &recv);
    cr_log_info("receiver killed holding %lu of %d ops; resumed session sent %lu",
                (unsigned long)held, BIG_OPS, sent);
    cr_assert_eq(sent, (unsigned long)(BIG_OPS - held),
                 "resumed session sent %lu ops, b lacked %lu", sent,
                 (unsigned long)(BIG_OPS - held));
    free(out);
    cr_assert_eq(ops_of(b), BIG_OPS);
    cr_assert_eq(check_chains(b), BIG_OPS);
    same_state(a, b);
    stop(sb, SIGTERM);
}

Test(net, sender_killed_mid_batch_leaves_no_partial_batch)
{
    const char *a = store("a", NULL), *b = store("b", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0);
    trust(b, "a", a, NULL, 0);
    fill(a, BIG_OPS);
    int sb = serve("b", NULL, b, ep, 0);
    int sa = bg("sync1", NULL, a, "sync", "b", "--timeout", "30", NULL);
    uint64_t seen = wait_ops_above(b, 0, 30000);
    cr_assert_gt(seen, 0, "b never received anything");
    stop(sa, SIGKILL);
    nap_ms(300); /* let b apply (or drop) what was in flight */
    cr_assert(alive(sb), "the receiver died with its sender");
    uint64_t held = ops_of(b);
    cr_assert_lt(held, BIG_OPS, "the sync finished before the kill");
    cr_log_info("sender killed; receiver holds %lu of %d ops", (unsigned long)held, BIG_OPS);
    cr_assert_eq(held % FILL_BATCH, 0, "b holds %lu ops: not a batch boundary",
                 (unsigned long)held);
    cr_assert_eq(check_chains(b), held);
    /* b is consistent and keeps serving: the rest arrives. */
    free(OK(a, "sync", "b", "--timeout", "30"));
    cr_assert_eq(check_chains(b), BIG_OPS);
    stop(sb, SIGTERM);
}

Test(net, unknown_key_is_refused_and_reported_on_both_sides)
{
    const char *a = store("a", NULL), *b = store("b", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0); /* b does not trust a */
    free(OK(a, "put", "notes", "n1", "title=\"secret\""));
    int sb = serve("b", NULL, b, ep, 0);
    run_result r = RUN(a, "sync", "b", "--timeout", "10");
    cr_assert_eq(r.status, 1, "sync with an untrusting peer exited %d: %s", r.status, r.err);
    cr_assert_not_null(strstr(r.err, "refused"), "stderr does not say refused: %s", r.err);
    run_free(&r);
    cr_assert_eq(status_int(b, "ops"), 0, "b accepted ops from an unknown key");
    json_t *p = peer_of(a, "b");
    cr_assert_neq(json_integer_value(json_object_get(p, "last_error_code")), 0,
                  "peer ls on a does not show the refusal");
    json_decref(p);
    char *st = OK(a, "status");
    cr_assert_not_null(strstr(st, "last error"), "%s", st);
    free(st);
    /* b's log names the refused key. */
    json_t *sa = OKJ(a, "status");
    char *log = slurp(procs[sb].log);
    cr_assert_not_null(strstr(log, "refused"), "serve log: %s", log);
    const char *pk = json_string_value(json_object_get(sa, "public_key"));
    const char *dv = json_string_value(json_object_get(sa, "device"));
    cr_assert(strstr(log, pk) || strstr(log, dv), "serve log does not name the key: %s", log);
    free(log);
    /* ... and b's status shows it, from the store (another process). */
    json_t *rb = NULL;
    uint64_t t0 = now_ms();
    for (;;) {
        json_t *sb_st = OKJ(b, "status");
        rb = json_object_get(sb_st, "refused");
        json_incref(rb);
        json_decref(sb_st);
        if (json_integer_value(json_object_get(rb, "total")) > 0 || now_ms() - t0 > 3000) {
            break;
        }
        json_decref(rb);
        nap_ms(100);
    }
    cr_assert_geq(json_integer_value(json_object_get(rb, "total")), 1);
    json_t *last = json_array_get(json_object_get(rb, "recent"), 0);
    cr_assert_not_null(last, "no recent refusal: %s", json_dumps(rb, 0));
    cr_assert_str_eq(json_string_value(json_object_get(last, "public_key")), pk);
    cr_assert_str_eq(json_string_value(json_object_get(last, "addr")), "127.0.0.1");
    json_decref(rb);
    char *human = OK(b, "status");
    char want[200];
    snprintf(want, sizeof want, "; last: key %s from 127.0.0.1 at ", pk);
    cr_assert_not_null(strstr(human, "\nrefused "), "%s", human);
    cr_assert_not_null(strstr(human, want), "%s", human);
    free(human);
    /* A store that refused nothing says so in JSON and not at all in text. */
    json_t *sa2 = OKJ(a, "status");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(sa2, "refused"), "total")), 0);
    json_decref(sa2);
    human = OK(a, "status");
    cr_assert_null(strstr(human, "\nrefused "), "%s", human);
    free(human);
    json_decref(sa);
    cr_assert(alive(sb));
}

Test(net, wrong_server_key_is_a_clear_error)
{
    const char *a = store("a", NULL), *b = store("b", NULL), *c = store("c", NULL);
    const char *ep = endpoint();
    trust(a, "b", c, ep, 0); /* c's card, b's address */
    trust(b, "a", a, NULL, 0);
    serve("b", NULL, b, ep, 0);
    uint64_t t0 = now_ms();
    run_result r = RUN(a, "sync", "b", "--timeout", "8");
    cr_assert_eq(r.status, 1, "exit %d: %s", r.status, r.err);
    cr_assert_not_null(strstr(r.err, "server key"), "stderr does not name the key: %s", r.err);
    cr_assert_lt(now_ms() - t0, 15000);
    run_free(&r);
}

/* ---- a misbehaving client speaking raw ZeroMQ ---- */

typedef struct mp {
    uint8_t b[256];
    size_t n;
} mp;

static void mp_u(mp *m, uint64_t v)
{
    if (v < 128) {
        m->b[m->n++] = (uint8_t)v;
        return;
    }
    int bytes = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    m->b[m->n++] = bytes == 1 ? 0xcc : bytes == 2 ? 0xcd : bytes == 4 ? 0xce : 0xcf;
    for (int i = bytes - 1; i >= 0; i--) {
        m->b[m->n++] = (uint8_t)(v >> (8 * i));
    }
}

static void *raw_client(void *ctx, const uint8_t server_key[32], const char *ep, char *card_out,
                        size_t cap, uint64_t *device)
{
    char pub[41], sec[41];
    cr_assert_eq(zmq_curve_keypair(pub, sec), 0);
    uint8_t pk[32];
    cr_assert_not_null(zmq_z85_decode(pk, pub));
    int n = snprintf(card_out, cap, "weft1:");
    for (int i = 0; i < 32; i++) {
        n += snprintf(card_out + n, cap - (size_t)n, "%02x", pk[i]);
    }
    *device = weft_device_of(pk);
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, rcv = 3000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &rcv, sizeof rcv);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 32);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

/* Receive frames for up to 3 s; 1 if one of them is an ERROR message. */
static int got_error(void *s)
{
    uint8_t buf[4096];
    for (int i = 0; i < 8; i++) {
        int n = zmq_recv(s, buf, sizeof buf, 0);
        if (n < 0) {
            return 0;
        }
        if (n >= 2 && buf[0] == 0x93 && buf[1] == 0x06) {
            return 1;
        }
    }
    return 0;
}

Test(net, malformed_oversized_out_of_order_messages_disconnect_only_that_peer)
{
    const char *b = store("b", NULL), *good = store("good", NULL);
    const char *ep = endpoint();
    trust(good, "b", b, ep, 0);
    trust(b, "good", good, NULL, 0);
    char *bc = card(b, NULL);
    uint8_t skey[32];
    char addr[WEFT_ENDPOINT_MAX + 1];
    cr_assert_eq(weft_card_parse(bc, skey, addr), 0);
    free(bc);
    void *ctx = zmq_ctx_new();
    char rc1[200], rc2[200], rc3[200];
    uint64_t d1, d2, d3;
    void *c1 = raw_client(ctx, skey, ep, rc1, sizeof rc1, &d1);
    void *c2 = raw_client(ctx, skey, ep, rc2, sizeof rc2, &d2);
    void *c3 = raw_client(ctx, skey, ep, rc3, sizeof rc3, &d3);
    free(OK(b, "peer", "add", "raw1", rc1));
    free(OK(b, "peer", "add", "raw2", rc2));
    free(OK(b, "peer", "add", "raw3", rc3));
    int sb = serve("b", NULL, b, ep, 0);

    /* 1. Garbage: not msgpack at all. */
    static const uint8_t junk[] = {0xc1, 0xff, 0x00, 0x13, 0x37};
    cr_assert_eq(zmq_send(c1, junk, sizeof junk, 0), (int)sizeof junk);
    cr_assert(got_error(c1), "no ERROR after a malformed message");

    /* 2. Oversized: 5 MiB, over ZMQ_MAXMSGSIZE (4 MiB). */
    size_t big = 5u << 20;
    uint8_t *huge = calloc(1, big);
    huge[0] = 0x92;
    cr_assert_eq(zmq_send(c2, huge, big, 0), (int)big);
    free(huge);

    /* 3. Out of order: HELLO, then an OPS batch whose ops go backwards. */
    mp h = {{0}, 0};
    h.b[h.n++] = 0x96;
    mp_u(&h, 1);
    mp_u(&h, 1);
    mp_u(&h, d3);
    mp_u(&h, 0);
    h.b[h.n++] = 0x80;
    uint64_t hlc = now_ms() << 16;
    mp_u(&h, hlc);
    cr_assert_eq(zmq_send(c3, h.b, h.n, 0), (int)h.n);
    mp o = {{0}, 0};
    o.b[o.n++] = 0x93;
    mp_u(&o, 2);
    mp_u(&o, 1);
    o.b[o.n++] = 0x92;
    for (int i = 0; i < 2; i++) {
        o.b[o.n++] = 0x94;
        mp_u(&o, hlc - (uint64_t)i * 65536u); /* descending */
        mp_u(&o, d3);
        mp_u(&o, 0);
        o.b[o.n++] = 0xc4;
        o.b[o.n++] = 1;
        o.b[o.n++] = 0x90;
    }
    cr_assert_eq(zmq_send(c3, o.b, o.n, 0), (int)o.n);
    cr_assert(got_error(c3), "no ERROR after an out-of-order batch");

    zmq_close(c1);
    zmq_close(c2);
    zmq_close(c3);
    zmq_ctx_term(ctx);

    /* The server is up, logged the errors, and still serves a good peer. */
    cr_assert(alive(sb), "the server died");
    free(OK(good, "put", "notes", "n1", "title=\"still served\""));
    free(OK(good, "sync", "b", "--timeout", "20"));
    same_state(good, b);
    char *log = slurp(procs[sb].log);
    cr_assert_not_null(strstr(log, "raw1"), "no log line about raw1: %s", log);
    cr_assert_not_null(strstr(log, "raw3"), "no log line about raw3: %s", log);
    free(log);
    cr_assert_eq(stop(sb, SIGTERM), 0);
}

Test(net, clock_an_hour_ahead_moves_no_clock_and_waits_for_the_horizon)
{
    const char *a = store("a", HOUR_MS), *b = store("b", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0);
    trust(b, "a", a, NULL, 0);
    free(OKO(HOUR_MS, a, "put", "notes", "n1", "title=\"from the future\""));
    free(OK(b, "put", "notes", "n2", "title=\"now\""));
    int sb = serve("b", NULL, b, ep, 0);
    uint64_t t0 = now_ms();
    run_result r = runo(HOUR_MS, a, "sync", "b", "--timeout", "10", NULL);
    uint64_t took = now_ms() - t0;
    cr_assert_eq(r.status, 1, "sync with a skewed peer exited %d: %s", r.status, r.err);
    cr_assert_not_null(strstr(r.err, "skewed"), "stderr does not say skewed: %s", r.err);
    /* The sender learns it from b's deferred ACK: at once, not at the timeout. */
    cr_assert_lt(took, 4000, "the skew took %lu ms to report", (unsigned long)took);
    cr_assert_not_null(strstr(r.err, "b's clock is behind ours by ~"), "%s", r.err);
    run_free(&r);
    json_t *pa = peer_of(a, "b");
    cr_assert(json_is_true(json_object_get(pa, "skewed")), "a's status of b is not skewed");
    json_decref(pa);
    /* b holds none of a's ops and its clock did not jump. */
    json_t *st = OKJ(b, "status");
    cr_assert_eq(json_integer_value(json_object_get(st, "ops")), 1);
    uint64_t last;
    sscanf(json_string_value(json_object_get(st, "last_hlc")), "%" SCNx64, &last);
    uint64_t ms = last >> 16, now = now_ms();
    cr_assert_lt(ms > now ? ms - now : now - ms, 5u * 60u * 1000u, "b's clock moved to %lu",
                 (unsigned long)ms);
    json_decref(st);
    stop(sb, SIGTERM);
    char *log = slurp(procs[sb].log);
    cr_assert_not_null(strstr(log, "skew"), "serve log: %s", log);
    free(log);
    /* Later (b's clock reaches a's ops): they arrive. */
    sb = serve("b2", HOUR_MS, b, ep, 0);
    free(OKO(HOUR_MS, a, "sync", "b", "--timeout", "20"));
    same_state(a, b);
    stop(sb, SIGTERM);
}

Test(net, duplicate_delivery_changes_nothing)
{
    const char *a = store("a", NULL), *b = store("b", NULL), *c = store("c", NULL);
    const char *ep = endpoint();
    trust(a, "b", b, ep, 0);
    trust(b, "a", a, NULL, 0);
    free(OK(a, "put", "notes", "n1", "title=\"one\""));
    free(OK(a, "inc", "notes", "n1", "views", "3"));
    free(OK(a, "tag", "add", "notes", "n1", "tags", "x"));
    int sb = serve("b", NULL, b, ep, 0);
    free(OK(a, "sync", "b"));
    char *s1 = state(b);
    char *out = OK(a, "sync", "b");
    unsigned long sent, recv;
    sync_counts(out, &sent, &recv);
    cr_assert_eq(sent + recv, 0, "second sync moved ops: %s", out);
    free(out);
    char *s2 = state(b);
    cr_assert_str_eq(s1, s2);
    stop(sb, SIGTERM);
    /* The same export imported twice. */
    const char *ops = kpath("a.ops");
    char *args[] = {(char *)WEFT_BIN, (char *)"--dir", (char *)a, (char *)"export", NULL};
    cr_assert_eq(wait_exit(spawn(NULL, NULL, ops, path(".err"), args), 20000), 0);
    char *iargs[] = {(char *)WEFT_BIN, (char *)"--dir", (char *)c, (char *)"import", NULL};
    cr_assert_eq(wait_exit(spawn(NULL, ops, path("i1"), path(".err"), iargs), 20000), 0);
    char *c1 = state(c);
    cr_assert_eq(wait_exit(spawn(NULL, ops, path("i2"), path(".err"), iargs), 20000), 0);
    char *second = slurp(path("i2"));
    cr_assert_not_null(strstr(second, "imported 0 ops (3 already present)"), "%s", second);
    free(second);
    char *c2 = state(c);
    cr_assert_str_eq(c1, c2);
    same_state(a, c);
    free(s1);
    free(s2);
    free(c1);
    free(c2);
}

Test(net, sync_commands_cards_peers_and_usage_errors)
{
    const char *a = store("a", NULL), *b = store("b", NULL);
    const char *ep = endpoint();
    /* Cards: no address until one is given or served on. */
    char *c = card(a, NULL);
    cr_assert_null(strchr(c, '@'), "%s", c);
    free(c);
    c = card(a, "tcp://10.0.0.1:7420");
    cr_assert(strstr(c, "@tcp://10.0.0.1:7420") != NULL, "%s", c);
    free(c);
    int sb = serve("b", NULL, b, ep, 1);
    c = card(b, NULL);
    cr_assert(strstr(c, ep) != NULL, "card after serve lacks %s: %s", ep, c);
    free(c);
    /* A peer added while the relay runs can sync at once. */
    trust(a, "relay", b, ep, 1);
    trust(b, "a", a, NULL, 0);
    free(OK(a, "put", "notes", "n1", "title=\"x\""));
    char *st = OK(a, "status");
    cr_assert_not_null(strstr(st, "1 op not yet backed up"), "%s", st);
    free(st);
    free(OK(a, "sync", "relay", "--timeout", "20"));
    st = OK(a, "peer", "ls");
    cr_assert_not_null(strstr(st, "every op backed up"), "%s", st);
    free(st);
    stop(sb, SIGTERM);

    run_result r = RUN(a, "peer", "add", "relay", "weft1:00", NULL);
    cr_assert_eq(r.status, 1, "%s", r.err);
    run_free(&r);
    char *bc = card(b, NULL);
    r = RUN(a, "peer", "add", "other", bc, NULL);
    cr_assert_eq(r.status, 1, "the same key twice: %s", r.err);
    run_free(&r);
    free(bc);
    r = RUN(a, "peer", "rm", "nobody", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.err, "no such peer"), "%s", r.err);
    run_free(&r);
    r = RUN(a, "peer", "frob", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    run_free(&r);
    r = RUN(a, "peer", "ls", "--addr", "x", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    run_free(&r);
    r = RUN(a, "serve", "--relay", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    run_free(&r);
    r = RUN(a, "sync", "relay", "--timeout", "0", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    run_free(&r);
    r = RUN(a, "sync", "nobody", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.err, "no such peer"), "%s", r.err);
    run_free(&r);
    r = RUN(b, "sync", "a", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert_not_null(strstr(r.err, "no address"), "%s", r.err);
    run_free(&r);
    r = runo("soon", a, "status", NULL);
    cr_assert_eq(r.status, 2, "%s", r.err);
    cr_assert_not_null(strstr(r.err, "WEFT_CLOCK_OFFSET_MS"), "%s", r.err);
    run_free(&r);
    /* The relay is gone: a clear error, not a hang. */
    r = RUN(a, "sync", "relay", "--timeout", "3", NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "unreachable") != NULL, "%s", r.err);
    run_free(&r);
}
