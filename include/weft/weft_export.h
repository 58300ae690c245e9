/* weft_export.h - symbol visibility and call attributes for the public API.
 *
 * Every public function is marked WEFT_API (default visibility; the library is
 * built with hidden visibility so nothing else leaks). Constructors, commits
 * and other calls whose result must not be ignored are WEFT_MUST_CHECK.
 *
 * Invariants: none.
 * Thread-safety: not applicable (macros only).
 */
#ifndef WEFT_EXPORT_H
#define WEFT_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define WEFT_API        __attribute__((visibility("default")))
#define WEFT_MUST_CHECK __attribute__((warn_unused_result))
#else
#define WEFT_API
#define WEFT_MUST_CHECK
#endif

#endif /* WEFT_EXPORT_H */
