/* helpers.h - shared fixtures of the store tests: temp store directories,
 * db dumps, msgpack builders, op collection and one-way sync.
 *
 * Invariants: every helper asserts (criterion) instead of returning errors.
 * Thread-safety: single-threaded tests only.
 */
#ifndef WEFT_TEST_STORE_HELPERS_H
#define WEFT_TEST_STORE_HELPERS_H

#include <criterion/criterion.h>
#include <stdint.h>

#include "store/store_int.h"

#define OK(expr)                                                                             \
    do {                                                                                     \
        int rc_ = (expr);                                                                    \
        cr_assert_eq(rc_, 0, "%s -> %s (%s)", #expr, weft_err_name(rc_), weft_last_error()); \
    } while (0)

#define ERR(code, expr)                                                                    \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        cr_assert_eq(rc_, (code), "%s -> %s, expected %s (%s)", #expr, weft_err_name(rc_), \
                     weft_err_name(code), weft_last_error());                              \
    } while (0)

/** A fresh directory under /dev/shm (or $TMPDIR); caller frees; rm_rf it. */
char *tmpdir_new(void);
void rm_rf(const char *path);
/** A test's fresh store directories: store_dirs_setup makes STORE_DIRS of
 * them (criterion .init), store_dirs_teardown removes them (.fini). */
#define STORE_DIRS 4
extern char *store_dirs[STORE_DIRS];
void store_dirs_setup(void);
void store_dirs_teardown(void);
/** Open (creating) with the given map size (0 default) and clock (NULL real). */
weft_store *store_open(const char *dir, size_t map_size, uint64_t *fake_now);
uint64_t fake_clock(void *user);

/** Dump of the named dbs (comma separated list, NULL = all) as one buffer. */
void dump(weft_store *s, const char *dbs, weft__buf *out);
/** Byte-compare two stores' dumps of @p dbs. */
int dump_eq(weft_store *a, weft_store *b, const char *dbs);

/* msgpack values */
size_t mp_str(uint8_t *buf, size_t cap, const char *s);
size_t mp_int(uint8_t *buf, size_t cap, int64_t v);

/* collected ops (owned copies) */
typedef struct opvec {
    weft_op *v;
    size_t n, cap;
} opvec;
int opvec_collect(const weft_op *op, void *user); /* weft_op_cb */
void opvec_free(opvec *o);
/** Ops of @p from that @p to lacks. */
void ops_missing(weft_store *from, weft_store *to, opvec *out);
/** Apply @p o into @p to in batches of 1..maxbatch (rng). */
void apply_batches(weft_store *to, const opvec *o, size_t maxbatch, uint64_t *rng);
/** One-way sync from -> to. */
void sync_one(weft_store *from, weft_store *to, size_t maxbatch, uint64_t *rng);

uint64_t rng_next(uint64_t *s);

#endif
