/* clock_int.h - the hybrid logical clock (Kulkarni et al. 2014) packed into
 * 64 bits: high 48 bits physical milliseconds since the Unix epoch, low 16 bits
 * a logical counter.
 *
 * Packing makes the paper's rules arithmetic on one integer: a local tick
 * issues max(last + 1, now << 16), a receive issues max(last + 1, remote + 1,
 * now << 16). A counter that would pass 0xffff carries into the millisecond
 * (the +1 does it), so it never wraps silently; the clock then runs ahead of
 * physical time by at most 1 ms per 65536 events, and physical time catches up.
 *
 * Invariants:
 *   1. Every value issued by tick/recv is strictly greater than every value
 *      issued or observed before by this clock, whatever the wall clock does.
 *   2. recv never moves the clock for a remote stamp more than max_drift_ms
 *      ahead of the physical clock: it returns WEFT_ECLOCK and leaves it as is.
 *   3. floor() only raises the clock: after a restart the store floors it with
 *      the persisted last value, so no value is issued twice.
 * Thread-safety: one thread at a time (the store serialises its clock under
 * its write lock).
 */
#ifndef WEFT_CLOCK_INT_H
#define WEFT_CLOCK_INT_H

#include <stdint.h>

#include "../common/weft_int.h"

#define WEFT__HLC_COUNTER_BITS 16
#define WEFT__HLC_MS_MAX       ((UINT64_C(1) << 48) - 1)

typedef uint64_t (*weft__now_fn)(void *user);

typedef struct weft__hlc {
    uint64_t last;         /* greatest value issued or observed */
    uint32_t max_drift_ms; /* receive horizon */
    weft__now_fn now_ms;   /* wall clock; never NULL after init */
    void *now_user;
} weft__hlc;

/** The real wall clock (CLOCK_REALTIME) in ms. */
uint64_t weft__wall_ms(void *user);

/** Start at 0 with the given horizon (0 = WEFT_DEFAULT_DRIFT_MS) and time
 * source (NULL = weft__wall_ms). */
void weft__hlc_init(weft__hlc *c, uint32_t max_drift_ms, weft__now_fn now, void *user);

/** Raise the clock to at least @p value (used with the persisted last hlc). */
void weft__hlc_floor(weft__hlc *c, uint64_t value);

/** Issue a stamp for a local event. WEFT_EOVERFLOW when the 64-bit space is
 * exhausted (the physical part would pass 2^48 - 1 ms, year 10889). */
int weft__hlc_tick(weft__hlc *c, uint64_t *out);

/** Physical time now, in ms: one read of the clock's time source. */
uint64_t weft__hlc_now(const weft__hlc *c);

/** How far @p remote is ahead of physical time @p now_ms, in ms (0 if not
 * ahead). */
uint64_t weft__hlc_ahead_at(uint64_t remote, uint64_t now_ms);

/** How far @p remote is ahead of physical time now, in ms (0 if not ahead):
 * weft__hlc_ahead_at() at weft__hlc_now(). */
uint64_t weft__hlc_ahead_ms(const weft__hlc *c, uint64_t remote);

/** Observe a remote stamp at physical time @p now_ms (a reading of the
 * clock's time source, typically weft__hlc_now(), possibly taken earlier for
 * a batch of stamps): WEFT_ECLOCK (clock untouched) if the stamp is more than
 * max_drift_ms ahead of @p now_ms; otherwise raise the clock to
 * max(last + 1, remote + 1, now_ms << 16), as the paper's receive rule does
 * and, when @p out is not NULL, write that stamp (the receive event's).
 * An earlier @p now_ms only makes the horizon stricter and the result no
 * greater; invariant 1 holds whatever @p now_ms is. */
int weft__hlc_recv_at(weft__hlc *c, uint64_t remote, uint64_t now_ms, uint64_t *out);

/** weft__hlc_recv_at() at weft__hlc_now(): one read of the time source. */
int weft__hlc_recv(weft__hlc *c, uint64_t remote, uint64_t *out);

static inline uint64_t weft__hlc_make(uint64_t ms, uint32_t counter)
{
    return (ms << WEFT__HLC_COUNTER_BITS) | (counter & 0xffffu);
}

#endif /* WEFT_CLOCK_INT_H */
