/* test_hlc.c - the hybrid logical clock: the paper's send and receive rules,
 * monotonicity under a misbehaving wall clock, counter carry, the drift
 * horizon, flooring after a restart, exhaustion.
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
