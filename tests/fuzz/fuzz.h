/* fuzz.h - what every fuzz target and the replay driver share: the libFuzzer
 * entry point and the check that turns a broken property into a crash.
 *
 * Each tests/fuzz/fuzz_<target>.c defines LLVMFuzzerTestOneInput for one
 * decoder. The same file is linked two ways: with libFuzzer (clang,
 * -fsanitize=fuzzer, only when WEFT_FUZZ=ON) to search for crashes, and with
 * replay.c (any compiler, every build) to re-run the committed corpus and
 * crash inputs under ctest.
 *
 * Invariants:
 *   1. A target returns 0 for every input it does not crash on; it reports a
 *      broken property only through FUZZ_CHECK, which traps (SIGILL), so
 *      libFuzzer records the input and ctest sees the replay fail.
 *   2. A target keeps no state between calls that changes its verdict: the
 *      same input gives the same result in any order (replay relies on it).
 * Thread-safety: targets are called from one thread.
 */
#ifndef WEFT_FUZZ_H
#define WEFT_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/** The libFuzzer entry point, defined once per target. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** Trap, naming the failed property, when @p cond is false. */
#define FUZZ_CHECK(cond)                                                                    \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz: check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            __builtin_trap();                                                               \
        }                                                                                   \
    } while (0)

#endif /* WEFT_FUZZ_H */
