/* engine_fixtures.h - what the engine suites (test_engine.c,
 * test_alloc_sync.c: one ctest entry, `engine`) share: fresh store
 * directories, stores, peers, and waiting for a value or a peer state.
 *
 * Invariants: every helper asserts (criterion) instead of returning errors.
 * Thread-safety: the test thread only.
 */
#ifndef WEFT_TEST_ENGINE_FIXTURES_H
#define WEFT_TEST_ENGINE_FIXTURES_H

#include <criterion/criterion.h>
#include <stdint.h>

#include <weft/weft.h>

#define OK(x)                                                                             \
    do {                                                                                  \
        int rc_ = (x);                                                                    \
        cr_assert_eq(rc_, 0, "%s -> %s (%s)", #x, weft_err_name(rc_), weft_last_error()); \
    } while (0)

/** A fresh directory under /dev/shm (or $TMPDIR); rm_rf removes and frees it. */
char *tmpdir_new(void);
void rm_rf(char *path);
/** A new store in @p dir (16 MiB map). */
weft_store *store_new(const char *dir);
/** CLOCK_MONOTONIC in ms; sleep @p ms. */
uint64_t now_ms(void);
void sleep_ms(unsigned ms);
/** Add @p other as peer @p name of @p s, reachable at @p addr (NULL: none). */
void add_peer(weft_store *s, const char *name, weft_store *other, const char *addr);
/** Write notes/<id>.title = @p value in its own txn. */
void put_str(weft_store *s, const char *id, const char *value);
/** 1 if notes/<id>.title holds the string @p value; wait_str waits for it. */
int has_str(weft_store *s, const char *id, const char *value);
int wait_str(weft_store *s, const char *id, const char *value, unsigned timeout_ms);
/** The engine's status of peer @p name: 1 found, 0 not; wait_state waits for
 * its state to be @p want. */
int peer_status(weft_sync *e, const char *name, weft_peer_status *out);
int wait_state(weft_sync *e, const char *name, weft_peer_state want, unsigned timeout_ms);

#endif /* WEFT_TEST_ENGINE_FIXTURES_H */
