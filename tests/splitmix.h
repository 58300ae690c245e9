/* splitmix.h - the seeded generator of the test suites (SplitMix64,
 * Steele, Lea and Flood 2014): one uint64_t of state, any seed, the same
 * sequence on every platform, so a failing seed replays the run.
 *
 * Invariants: splitmix_next() depends only on *state, which it advances.
 * Thread-safety: one state per thread.
 */
#ifndef WEFT_TESTS_SPLITMIX_H
#define WEFT_TESTS_SPLITMIX_H

#include <stdint.h>

static inline uint64_t splitmix_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A draw in [0, n) (modulo: the bias is irrelevant to the tests); 0 if n
 * is 0. */
static inline uint64_t splitmix_below(uint64_t *state, uint64_t n)
{
    uint64_t z = splitmix_next(state);
    return n ? z % n : 0;
}

#endif
