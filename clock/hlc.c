/* hlc.c - hybrid logical clock: tick, receive, drift horizon.
 *
 * See clock_int.h for the packing and the rules. recv() reads the time source
 * once and is recv_at() with that reading; recv_at() lets a caller that
 * receives many stamps in a row (weft_apply) read it once for all of them.
 * Invariants:
 *   1. tick(), recv() and recv_at() return values strictly above c->last and
 *      store them in c->last before returning.
 *   2. A failing call (WEFT_ECLOCK, WEFT_EOVERFLOW) leaves *c unchanged.
 *   3. recv_at() uses the one given physical time for both the horizon check
 *      and the receive rule; recv() is recv_at() at the time source's now.
 * Thread-safety: one thread at a time.
 */
#include <time.h>

#include "clock_int.h"

uint64_t weft__wall_ms(void *user)
{
    (void)user;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec < 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void weft__hlc_init(weft__hlc *c, uint32_t max_drift_ms, weft__now_fn now, void *user)
{
    c->last = 0;
    c->max_drift_ms = max_drift_ms ? max_drift_ms : WEFT_DEFAULT_DRIFT_MS;
    c->now_ms = now ? now : weft__wall_ms;
    c->now_user = user;
}

void weft__hlc_floor(weft__hlc *c, uint64_t value)
{
    if (value > c->last) {
        c->last = value;
    }
}

uint64_t weft__hlc_now(const weft__hlc *c)
{
    return c->now_ms(c->now_user);
}

/* Physical time @p ms as an hlc with counter 0, clamped to the 48-bit range. */
static uint64_t physical(uint64_t ms)
{
    if (ms > WEFT__HLC_MS_MAX) {
        ms = WEFT__HLC_MS_MAX;
    }
    return weft__hlc_make(ms, 0);
}

/* The next value after @p floor, or @p pt (physical time) if that is later. */
static int next_after(weft__hlc *c, uint64_t floor, uint64_t pt, uint64_t *out)
{
    if (floor == UINT64_MAX) {
        return weft__err(WEFT_EOVERFLOW, "hybrid logical clock exhausted (0x%016llx)",
                         (unsigned long long)floor);
    }
    uint64_t v = floor + 1 > pt ? floor + 1 : pt;
    c->last = v;
    if (out != NULL) {
        *out = v;
    }
    return 0;
}

int weft__hlc_tick(weft__hlc *c, uint64_t *out)
{
    return next_after(c, c->last, physical(weft__hlc_now(c)), out);
}

uint64_t weft__hlc_ahead_at(uint64_t remote, uint64_t now_ms)
{
    uint64_t rms = remote >> WEFT__HLC_COUNTER_BITS;
    return rms > now_ms ? rms - now_ms : 0;
}

uint64_t weft__hlc_ahead_ms(const weft__hlc *c, uint64_t remote)
{
    return weft__hlc_ahead_at(remote, weft__hlc_now(c));
}

int weft__hlc_recv_at(weft__hlc *c, uint64_t remote, uint64_t now_ms, uint64_t *out)
{
    uint64_t ahead = weft__hlc_ahead_at(remote, now_ms);
    if (ahead > c->max_drift_ms) {
        return weft__err(WEFT_ECLOCK, "remote stamp is %llu ms ahead of our clock (horizon %u ms)",
                         (unsigned long long)ahead, c->max_drift_ms);
    }
    return next_after(c, remote > c->last ? remote : c->last, physical(now_ms), out);
}

int weft__hlc_recv(weft__hlc *c, uint64_t remote, uint64_t *out)
{
    return weft__hlc_recv_at(c, remote, weft__hlc_now(c), out);
}

/* ---- public helpers on stamps and ids ---- */

uint64_t weft_hlc_ms(uint64_t hlc)
{
    return hlc >> WEFT__HLC_COUNTER_BITS;
}

uint32_t weft_hlc_counter(uint64_t hlc)
{
    return (uint32_t)(hlc & 0xffffu);
}

int weft_id_cmp(weft_id a, weft_id b)
{
    if (a.hlc != b.hlc) {
        return a.hlc < b.hlc ? -1 : 1;
    }
    if (a.device != b.device) {
        return a.device < b.device ? -1 : 1;
    }
    return 0;
}
