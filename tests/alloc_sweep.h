/* alloc_sweep.h - the allocation-failure sweep shared by
 * tests/store/test_alloc_api.c and tests/transport/test_alloc_sync.c.
 *
 * A sweep runs one call with weft__alloc_fail_after(k) for k = 0, 1, 2,
 * ... (the k-th allocation and every one after it fail) and stops at the
 * first run that succeeds without reaching the failure: every allocation of
 * the call has then failed once. Use:
 *
 *     sweep sw;
 *     SWEEP(sw, "weft_x") {
 *         sweep_arm(&sw);                  // immediately before the call
 *         int rc = weft_x(...);
 *         if (sweep_failed(&sw, rc)) { ... check nothing changed ... }
 *         else { ... check the result ... }
 *     }
 *
 * sweep_failed asserts that a failure is clean: WEFT_ENOMEM, only when the
 * injected failure was reached, with a non-empty weft_last_error().
 *
 * Leaks: in sanitizer builds sweep_heap_mark() (end of a test's setup,
 * after a warm-up that made the one-time allocations) and
 * sweep_heap_check() (end of the test, everything closed) require the heap
 * in use to be back where it was. That is stricter than LeakSanitizer,
 * which misses memory still referenced at exit; LSan's own reports of
 * criterion suites are checked by .ci/run (tests/CMakeLists.txt).
 *
 * Invariants: the counters are per test process (each test runs in its
 * own); the hook is process-wide, so only one thread arms it at a time.
 * Thread-safety: see the invariants.
 */
#ifndef WEFT_TEST_ALLOC_SWEEP_H
#define WEFT_TEST_ALLOC_SWEEP_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "common/weft_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_LEAK_CHECK 1
#endif
#endif
#ifdef SWEEP_LEAK_CHECK
/* The sanitizer runtime's (declared here: gcc installs no header for them). */
size_t __sanitizer_get_current_allocated_bytes(void);
int __lsan_do_recoverable_leak_check(void);
#endif

#ifndef SWEEP_MAX
#define SWEEP_MAX 20000L
#endif

/* Totals of one test process, logged by sweep_totals. */
static long n_calls, n_runs, n_injected, n_absorbed, n_poisoned;
static size_t heap_at_start;

typedef struct sweep {
    const char *name;
    long k;        /* the allocation that fails (and all after it) this run */
    long made;     /* allocations the run attempted */
    bool injected; /* the run reached the failure */
    bool done;     /* a run succeeded without reaching it: sweep complete */
    long poisoned; /* runs whose failure poisoned the write txn */
} sweep;

static inline void sweep_init(sweep *sw, const char *name)
{
    memset(sw, 0, sizeof *sw);
    sw->name = name;
    sw->k = -1;
    n_calls++;
}

static inline bool sweep_next(sweep *sw)
{
    if (sw->done) {
        fprintf(stderr, "  %-60s %4ld allocations, %ld poisoned\n", sw->name, sw->k, sw->poisoned);
        return false;
    }
    sw->k++;
    cr_assert_lt(sw->k, SWEEP_MAX, "%s: still failing after %ld injected failures", sw->name,
                 SWEEP_MAX);
    return true;
}

/* Immediately before the call: nothing else may allocate until sweep_failed. */
static inline void sweep_arm(sweep *sw)
{
    weft__err_clear();
    weft__alloc_fail_after(sw->k);
}

/* Immediately after the call: disarm, then judge @p rc. True when the call
 * failed (cleanly: asserted here); false when it succeeded. */
static inline bool sweep_failed(sweep *sw, int rc)
{
    sw->made = weft__alloc_fail_after(-1);
    sw->injected = sw->made > sw->k;
    n_runs++;
    n_injected += sw->injected;
    if (rc >= 0) {
        n_absorbed += sw->injected; /* succeeded although an allocation failed */
        sw->done = !sw->injected;
        return false;
    }
    cr_assert(sw->injected, "%s k=%ld: failed with %s (%s) but no allocation failed", sw->name,
              sw->k, weft_err_name(rc), weft_last_error());
    cr_assert_eq(rc, WEFT_ENOMEM, "%s k=%ld: %s (%s), expected WEFT_ENOMEM", sw->name, sw->k,
                 weft_err_name(rc), weft_last_error());
    cr_assert(weft_last_error()[0] != '\0', "%s k=%ld: %s with an empty weft_last_error()",
              sw->name, sw->k, weft_err_name(rc));
    return true;
}

/* A failed run poisoned the write txn (a clean outcome the caller checked). */
static inline void sweep_poisoned(sweep *sw)
{
    n_poisoned++;
    sw->poisoned++;
}

#define SWEEP(sw, name) for (sweep_init(&(sw), (name)); sweep_next(&(sw));)

static inline void sweep_heap_mark(void)
{
#ifdef SWEEP_LEAK_CHECK
    heap_at_start = __sanitizer_get_current_allocated_bytes();
#endif
}

/* At the end of @p suite/@p test, everything closed: the heap check, then
 * the totals. */
static inline void sweep_totals(const char *suite, const char *test)
{
#ifdef SWEEP_LEAK_CHECK
    size_t now = __sanitizer_get_current_allocated_bytes();
    if (now != heap_at_start) {
        __lsan_do_recoverable_leak_check(); /* prints where, unless suppressed */
    }
    cr_assert_eq(now, heap_at_start, "%s/%s: %zd bytes still allocated at the end", suite, test,
                 (ssize_t)(now - heap_at_start));
#else
    (void)heap_at_start;
#endif
    fprintf(stderr,
            "%s/%s: %ld calls swept, %ld runs, %ld injected failures (%ld absorbed, %ld "
            "poisoned a txn)\n",
            suite, test, n_calls, n_runs, n_injected, n_absorbed, n_poisoned);
}

#endif /* WEFT_TEST_ALLOC_SWEEP_H */
