/* test_hlc.c - the hybrid logical clock: the paper's send and receive rules,
 * monotonicity under a misbehaving wall clock, counter carry, the drift
 * horizon, receiving at a given physical time (recv_at), flooring after a
 * restart, exhaustion.
 *
 * Every test injects its wall clock (a variable the test moves), so nothing
 * here depends on real time except wall_clock_default.
 *
 * Invariants: none (tests).
 * Thread-safety: criterion runs each test in its own process.
 */
#include <criterion/criterion.h>
#include <time.h>

#include "clock/clock_int.h"

static uint64_t fake_now(void *user)
{
    return *(const uint64_t *)user;
}

#define MK(ms, c) weft__hlc_make((ms), (c))

static uint64_t tick(weft__hlc *c)
{
    uint64_t v = 0;
    cr_assert_eq(weft__hlc_tick(c, &v), 0, "%s", weft_last_error());
    return v;
}

static uint64_t recv(weft__hlc *c, uint64_t remote)
{
    uint64_t v = 0;
    cr_assert_eq(weft__hlc_recv(c, remote, &v), 0, "%s", weft_last_error());
    return v;
}

Test(clock, packing_helpers)
{
    uint64_t h = MK(1700000000123u, 7);
    cr_assert_eq(weft_hlc_ms(h), 1700000000123u);
    cr_assert_eq(weft_hlc_counter(h), 7);
    cr_assert_eq(MK(1, 0x1ffff), MK(1, 0xffff), "counter is masked to 16 bits");
    weft_id a = {5, 1}, b = {5, 2}, c = {6, 0};
    cr_assert_lt(weft_id_cmp(a, b), 0);
    cr_assert_gt(weft_id_cmp(c, b), 0, "hlc first, device breaks ties");
    cr_assert_eq(weft_id_cmp(a, a), 0);
}

Test(clock, init_defaults)
{
    weft__hlc c;
    weft__hlc_init(&c, 0, NULL, NULL);
    cr_assert_eq(c.max_drift_ms, WEFT_DEFAULT_DRIFT_MS);
    cr_assert_eq(c.last, 0);
    uint64_t v = tick(&c);
    uint64_t now = (uint64_t)time(NULL) * 1000u;
    cr_assert(weft_hlc_ms(v) + 2000 >= now && weft_hlc_ms(v) <= now + 2000,
              "real wall clock: %llu vs %llu", (unsigned long long)weft_hlc_ms(v),
              (unsigned long long)now);
}

/* Local tick: max(last + 1, now << 16); same ms -> counter + 1. */
Test(clock, send_rule)
{
    uint64_t now = 1000;
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    cr_assert_eq(tick(&c), MK(1000, 0));
    cr_assert_eq(tick(&c), MK(1000, 1), "same ms: counter increments");
    cr_assert_eq(tick(&c), MK(1000, 2));
    now = 1001;
    cr_assert_eq(tick(&c), MK(1001, 0), "new ms: counter resets");
    now = 1500;
    cr_assert_eq(tick(&c), MK(1500, 0));
    cr_assert_eq(c.last, MK(1500, 0));
}

/* Receive: max(last + 1, remote + 1, now << 16). */
Test(clock, receive_rule)
{
    uint64_t now = 1000;
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    cr_assert_eq(tick(&c), MK(1000, 0));
    /* Remote ahead (within the horizon): we move past it. */
    cr_assert_eq(recv(&c, MK(1002, 5)), MK(1002, 6));
    cr_assert_eq(tick(&c), MK(1002, 7), "tick after recv is above the remote stamp");
    /* Remote behind: our own last wins. */
    cr_assert_eq(recv(&c, MK(900, 40)), MK(1002, 8));
    /* Remote behind, wall clock moved on: physical time wins. */
    now = 1010;
    cr_assert_eq(recv(&c, MK(1003, 0)), MK(1010, 0));
    /* Remote in the same ms with a higher counter. */
    cr_assert_eq(recv(&c, MK(1010, 9)), MK(1010, 10));
    /* recv with out == NULL still moves the clock. */
    cr_assert_eq(weft__hlc_recv(&c, MK(1010, 20), NULL), 0);
    cr_assert_eq(tick(&c), MK(1010, 22));
}

/* Two devices, the paper's message exchange: every event is above its causes. */
Test(clock, two_devices_exchange)
{
    uint64_t now_a = 10000, now_b = 9900; /* B's wall clock is 100 ms behind */
    weft__hlc a, b;
    weft__hlc_init(&a, 5000, fake_now, &now_a);
    weft__hlc_init(&b, 5000, fake_now, &now_b);
    uint64_t last = 0;
    for (int round = 0; round < 1000; round++) {
        uint64_t s = tick(&a); /* A sends */
        cr_assert_gt(s, last);
        uint64_t r = recv(&b, s); /* B receives */
        cr_assert_gt(r, s);
        uint64_t t = tick(&b); /* B sends back */
        cr_assert_gt(t, r);
        uint64_t u = recv(&a, t);
        cr_assert_gt(u, t);
        last = u;
        now_a += round % 3 == 0;
        now_b += round % 5 == 0;
    }
    /* B's stamps ran ahead of its wall clock by at most A's lead plus the counter. */
    cr_assert_leq(weft_hlc_ms(b.last), now_a + 1);
}

Test(clock, monotonic_when_wall_clock_steps_back)
{
    static const uint64_t walls[] = {5000, 5000, 4000, 4999, 100, 0, 5001, 5001, 2, 7000, 6999};
    uint64_t now = walls[0];
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    uint64_t prev = 0;
    for (int rep = 0; rep < 100; rep++) {
        for (size_t i = 0; i < sizeof walls / sizeof walls[0]; i++) {
            now = walls[i] + (uint64_t)rep;
            uint64_t v = i % 3 == 2 ? recv(&c, MK(now > 50 ? now - 50 : 0, 3)) : tick(&c);
            cr_assert_gt(v, prev, "rep %d step %zu: %llx after %llx", rep, i, (unsigned long long)v,
                         (unsigned long long)prev);
            prev = v;
        }
    }
}

/* 65536 ticks in one ms fill the counter; the next carries into the ms. */
Test(clock, counter_carry)
{
    uint64_t now = 1000;
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    uint64_t prev = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint64_t v = tick(&c);
        cr_assert_eq(v, MK(1000, i));
        cr_assert_gt(v, prev);
        prev = v;
    }
    uint64_t v = tick(&c);
    cr_assert_eq(v, MK(1001, 0), "counter carries into the millisecond");
    cr_assert_gt(v, prev);
    for (uint32_t i = 1; i < 70000; i++) {
        uint64_t w = tick(&c);
        cr_assert_gt(w, v, "never decreases (tick %u)", i);
        v = w;
    }
    cr_assert_eq(weft_hlc_ms(v), 1002, "ran ahead of the wall clock by the carries only");
    /* The wall clock catches up: physical time takes over again. */
    now = 1003;
    cr_assert_eq(tick(&c), MK(1003, 0));
}

Test(clock, drift_horizon)
{
    uint64_t now = 100000;
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    uint64_t base = tick(&c);
    cr_assert_eq(weft__hlc_ahead_ms(&c, MK(now + 5001, 0)), 5001);
    cr_assert_eq(weft__hlc_ahead_ms(&c, MK(now - 10, 0)), 0);

    uint64_t out = 12345;
    cr_assert_eq(weft__hlc_recv(&c, MK(now + 5001, 0), &out), WEFT_ECLOCK);
    cr_assert_eq(out, 12345, "out untouched on failure");
    cr_assert_eq(c.last, base, "clock untouched");
    cr_assert(strstr(weft_last_error(), "5001") != NULL, "message: %s", weft_last_error());
    cr_assert_eq(weft__hlc_recv(&c, UINT64_MAX, &out), WEFT_ECLOCK);
    cr_assert_eq(c.last, base);
    cr_assert_eq(tick(&c), base + 1, "a refused stamp leaves no trace");

    /* Exactly at the horizon is accepted, whatever the counter. */
    cr_assert_eq(recv(&c, MK(now + 5000, 0xffff)), MK(now + 5001, 0));
    /* Once the wall clock moves on, a stamp that was too far is fine. */
    now += 10;
    cr_assert_eq(weft__hlc_recv(&c, MK(now + 5000, 0), &out), 0);
    cr_assert_eq(out, MK(now + 5000, 1));
}

/* A time source that counts its reads. */
struct counted {
    uint64_t now;
    unsigned reads;
};

static uint64_t counted_now(void *user)
{
    struct counted *t = user;
    t->reads++;
    return t->now;
}

/* recv_at(now) is recv() with a time source reading now: same result, same
 * error, same clock afterwards, for stamps behind, at and beyond the horizon,
 * a wall clock that steps back, and a clamped one. */
Test(clock, recv_at_equals_recv)
{
    static const uint64_t walls[] = {
        100000, 100000, 99000, 100001, 100001, 0, 250000, 250000, WEFT__HLC_MS_MAX + 7};
    static const int64_t offs[] = {-100000, -50, -1, 0, 1, 4999, 5000, 5001, 9000};
    struct counted ta = {0, 0}, tb = {0, 0};
    weft__hlc a, b;
    weft__hlc_init(&a, 5000, counted_now, &ta);
    weft__hlc_init(&b, 5000, counted_now, &tb);
    for (size_t w = 0; w < sizeof walls / sizeof walls[0]; w++) {
        for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
            for (uint32_t ctr = 0; ctr <= 0xffff; ctr += 0xffff) {
                uint64_t now = walls[w];
                tb.now = now;
                int64_t ms = (int64_t)now + offs[k];
                uint64_t remote = MK(ms < 0 ? 0 : (uint64_t)ms, ctr);
                uint64_t oa = 1, ob = 1;
                int ra = weft__hlc_recv_at(&a, remote, now, &oa);
                int rb = weft__hlc_recv(&b, remote, &ob);
                cr_assert_eq(ra, rb, "wall %zu off %zu ctr %u", w, k, ctr);
                cr_assert_eq(oa, ob, "wall %zu off %zu ctr %u", w, k, ctr);
                cr_assert_eq(a.last, b.last, "wall %zu off %zu ctr %u", w, k, ctr);
                if (ra == 0) {
                    cr_assert_eq(oa, a.last);
                }
            }
        }
    }
    cr_assert_eq(ta.reads, 0, "recv_at never reads the time source");
    cr_assert_gt(tb.reads, 0);
}

/* The horizon and the receive rule use the given now, not the time source. */
Test(clock, recv_at_uses_given_now)
{
    struct counted t = {100000, 0};
    weft__hlc c;
    weft__hlc_init(&c, 5000, counted_now, &t);
    uint64_t out = 7;
    /* 10 s ahead of the source, 1 s ahead of the given now: accepted. */
    cr_assert_eq(weft__hlc_recv_at(&c, MK(110000, 3), 109000, &out), 0, "%s", weft_last_error());
    cr_assert_eq(out, MK(110000, 4));
    /* Behind the given now: physical time (the given now) wins. */
    cr_assert_eq(weft__hlc_recv_at(&c, MK(50, 0), 120000, &out), 0);
    cr_assert_eq(out, MK(120000, 0));
    cr_assert_eq(c.last, MK(120000, 0));
    /* Within the source's horizon but beyond the given now's: refused, and
     * nothing moves. */
    uint64_t before = c.last;
    out = 7;
    cr_assert_eq(weft__hlc_recv_at(&c, MK(104000, 0), 98999, &out), WEFT_ECLOCK);
    cr_assert_eq(out, 7, "out untouched on failure");
    cr_assert_eq(c.last, before, "clock untouched");
    cr_assert(strstr(weft_last_error(), "5001") != NULL, "message: %s", weft_last_error());
    cr_assert_eq(weft__hlc_ahead_at(MK(104000, 0), 98999), 5001);
    cr_assert_eq(weft__hlc_ahead_at(MK(104000, 0xffff), 104000), 0);
    cr_assert_eq(weft__hlc_ahead_at(MK(104000, 0), 200000), 0);
    /* Exactly at the horizon of the given now is accepted. */
    cr_assert_eq(weft__hlc_recv_at(&c, MK(125000, 0), 120000, &out), 0);
    cr_assert_eq(out, MK(125000, 1));
    /* A given now behind the clock (a stale batch reading) still moves it
     * strictly forward (invariant 1). */
    cr_assert_eq(weft__hlc_recv_at(&c, MK(10, 0), 1, &out), 0);
    cr_assert_eq(out, MK(125000, 2));
    /* A given now past the 48-bit range is clamped as the source's is. */
    weft__hlc d;
    weft__hlc_init(&d, 5000, counted_now, &t);
    cr_assert_eq(weft__hlc_recv_at(&d, MK(1, 0), WEFT__HLC_MS_MAX + 100, &out), 0);
    cr_assert_eq(out, MK(WEFT__HLC_MS_MAX, 0));
    cr_assert_eq(t.reads, 0, "the time source was never read");
    cr_assert_eq(weft__hlc_now(&c), 100000);
    cr_assert_eq(t.reads, 1);
}

/* After a restart the store floors the clock with the persisted last value. */
Test(clock, floor_after_restart)
{
    uint64_t now = 10000000;
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    uint64_t last = 0;
    for (int i = 0; i < 10; i++) {
        last = tick(&c);
    }
    /* Restart with a wall clock an hour behind. */
    uint64_t later = now - 3600 * 1000;
    weft__hlc d;
    weft__hlc_init(&d, 5000, fake_now, &later);
    weft__hlc_floor(&d, last);
    uint64_t v = tick(&d);
    cr_assert_gt(v, last, "first tick after restart is above the persisted value");
    cr_assert_eq(v, last + 1);
    /* Floor only raises. */
    weft__hlc_floor(&d, 5);
    cr_assert_eq(d.last, v);
    weft__hlc_floor(&d, v + 100);
    cr_assert_eq(d.last, v + 100);
}

Test(clock, overflow)
{
    uint64_t now = WEFT__HLC_MS_MAX + 100; /* clamped to the 48-bit range */
    weft__hlc c;
    weft__hlc_init(&c, 5000, fake_now, &now);
    cr_assert_eq(tick(&c), MK(WEFT__HLC_MS_MAX, 0), "physical time is clamped");
    weft__hlc_floor(&c, UINT64_MAX - 1);
    cr_assert_eq(tick(&c), UINT64_MAX, "the last value can be issued");
    uint64_t out = 7;
    cr_assert_eq(weft__hlc_tick(&c, &out), WEFT_EOVERFLOW);
    cr_assert_eq(out, 7);
    cr_assert_eq(c.last, UINT64_MAX, "unchanged");
    cr_assert_eq(weft__hlc_recv(&c, MK(1, 0), &out), WEFT_EOVERFLOW);
    cr_assert_eq(weft__hlc_recv(&c, UINT64_MAX, &out), WEFT_EOVERFLOW);
    cr_assert_eq(out, 7);
    /* A fresh clock receiving UINT64_MAX (not beyond the horizon because the
     * wall clock is at the end of time too) cannot issue anything above it. */
    weft__hlc d;
    weft__hlc_init(&d, 5000, fake_now, &now);
    cr_assert_eq(weft__hlc_recv(&d, UINT64_MAX, &out), WEFT_EOVERFLOW);
    cr_assert_eq(d.last, 0, "untouched");
}
