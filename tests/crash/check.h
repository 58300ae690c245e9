/* check.h - the checks the crash tests run on a store after a kill: it
 * opens; its op log, device index and materialised state agree (the state
 * equals a rebuild from the log); a peer's acknowledged vector claims
 * nothing the peer does not hold; a clock behind every stamp still issues a
 * greater one. crash_sweep.c (kill points) and crash_daemon.c (random-time
 * kills of `weft serve`) share them.
 *
 * Each check counts itself in ck_checks; a failing one prints one line
 * "FAIL [<ck_ctx>] <what>" on stderr and counts in ck_failures. The checks
 * never abort, so one run reports every failure it has.
 *
 * Invariants: none (test code).
 * Thread-safety: single-threaded programs only (global counters).
 */
#ifndef WEFT_TEST_CRASH_CHECK_H
#define WEFT_TEST_CRASH_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#include <weft/weft.h>

extern unsigned long ck_checks, ck_failures;
extern char ck_ctx[256];

/** Count a check; print and count a failure when @p ok is false. */
bool ck(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- sets of op ids ---- */
typedef struct ck_ids {
    weft_id *v;
    size_t n, cap;
    bool sorted;
} ck_ids;

void ck_ids_add(ck_ids *s, weft_id id);
/** Sort and drop duplicates (done by ck_ids_has when needed). */
void ck_ids_sort(ck_ids *s);
bool ck_ids_has(ck_ids *s, weft_id id);
void ck_ids_free(ck_ids *s);

/* ---- stores ---- */
/** A clock for weft_options.now_ms that returns *(uint64_t *)user. */
uint64_t ck_clock(void *user);
/** Open @p dir (creating it if @p create), with the clock @p now_ms (NULL:
 * the real one). A failure to open is a failed check: NULL. */
weft_store *ck_open(const char *dir, bool create, uint64_t *now_ms);
/** Every op id of the log (ascending), read through weft_ops_since, which
 * merges the devices' runs of `ops`; checks that it streams as many ops as
 * `ops` holds, in ascending (hlc, device) order, and that each device's
 * dprev chain is unbroken.
 * *max_hlc (optional): the greatest hlc held. false on a failed check. */
bool ck_log(weft_store *s, ck_ids *ids, uint64_t *max_hlc);
/** Rebuild: apply every op of @p s, in log order, into a fresh store in
 * @p scratch (created and removed here) and compare the two byte for byte:
 * ops, fields, counters, entities, conflicts and the vv. */
bool ck_rebuild(weft_store *s, const char *scratch);
/** The acknowledged vector @p x keeps for @p y is <= y's version vector:
 * x never believes y holds an op y does not hold. A missing peer record
 * fails only when @p must_exist. */
bool ck_acked(weft_store *x, weft_store *y, bool must_exist);
/** @p x's acked vector of @p y, compared for equality with y's vv. */
bool ck_acked_eq(weft_store *x, weft_store *y);
/** No stamp reissued: open @p dir with a wall clock at @p behind_ms (behind
 * every stamp in it), write one op and check its hlc is above every hlc of
 * the log, then close. */
bool ck_hlc(const char *dir, uint64_t behind_ms);
/** Byte-compare the replicated state (ops, fields, counters, entities,
 * conflicts, vv) of two stores. */
bool ck_same(weft_store *a, weft_store *b);
/** rm -r. */
void ck_rm_rf(const char *path);

#endif
