/* weft_err.h - the one error vocabulary shared by every weft module.
 *
 * Fallible calls return int: 0 (or a documented count) on success and a
 * negative WEFT_E* code on failure. Out-parameters are written only on
 * success. Codes are ABI: append, never renumber.
 *
 * Besides the code, the failing call leaves a one-line message naming the
 * problem ("field name is 300 bytes, the limit is 255") in a per-thread
 * buffer: weft_last_error(). The code says what kind of failure it was; the
 * message says which input caused it.
 *
 * Invariants:
 *   1. Every code is negative and distinct; WEFT_OK is 0.
 *   2. weft_strerror() and weft_err_name() never return NULL.
 * Thread-safety: all functions here are thread-safe; weft_last_error() is
 * per thread.
 */
#ifndef WEFT_ERR_H
#define WEFT_ERR_H

#include <weft/weft_export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
#define WEFT_ERR_MAP(X)                                                            \
    X(WEFT_EINVAL,    -1,  "invalid argument")                                     \
    X(WEFT_ENOMEM,    -2,  "out of memory")                                        \
    X(WEFT_ENOTFOUND, -3,  "not found")                                            \
    X(WEFT_ENOSPC,    -4,  "buffer too small; required size reported")             \
    X(WEFT_ECORRUPT,  -5,  "data failed validation (malformed or corrupt)")        \
    X(WEFT_ECLOCK,    -6,  "clock beyond the drift horizon")                       \
    X(WEFT_ETXN,      -7,  "transaction unusable after an earlier error")          \
    X(WEFT_EAUTH,     -8,  "peer failed authentication")                           \
    X(WEFT_EIO,       -9,  "storage or network I/O failure")                       \
    X(WEFT_EFULL,     -10, "disk full")                                            \
    X(WEFT_EGAP,      -11, "batch would leave a gap in the causal history")        \
    X(WEFT_EVERSION,  -12, "store or message of an unsupported version")           \
    X(WEFT_ENOSTORE,  -13, "no weft store in this directory")                      \
    X(WEFT_EEXIST,    -14, "already exists")                                       \
    X(WEFT_ELIMIT,    -15, "size limit exceeded")                                  \
    X(WEFT_EBUSY,     -16, "resource busy")                                        \
    X(WEFT_ERDONLY,   -17, "write in a read-only transaction")                     \
    X(WEFT_EOVERFLOW, -18, "clock or counter would overflow")                      \
    X(WEFT_ECONFLICT, -19, "an op with this id exists with different content")
/* clang-format on */

typedef enum weft_err {
    WEFT_OK = 0,
#define WEFT__X(name, code, text) name = (code),
    WEFT_ERR_MAP(WEFT__X)
#undef WEFT__X
} weft_err;

/** Static text describing @p err; "unknown error" for codes not in the table. Never NULL. */
WEFT_API const char *weft_strerror(int err);

/** The enumerator's name ("WEFT_ENOMEM"), for logs; "WEFT_E?" if unknown. Never NULL. */
WEFT_API const char *weft_err_name(int err);

/** The message left by the last failing weft call on this thread, naming the
 * offending input. Borrowed: valid until the next weft call on this thread.
 * Never NULL; "" when no call has failed yet. */
WEFT_API const char *weft_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* WEFT_ERR_H */
