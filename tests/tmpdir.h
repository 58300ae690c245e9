/* tmpdir.h - temporary directories for the test suites: one maker and one
 * remover, linked into every test binary (tests/CMakeLists.txt,
 * weft_add_test).
 *
 * Invariants: tmpdir_make returns a new, empty directory or fails the test.
 * Thread-safety: the test thread only (criterion asserts).
 */
#ifndef WEFT_TESTS_TMPDIR_H
#define WEFT_TESTS_TMPDIR_H

/** A fresh directory "weft-<tag>-test-XXXXXX" under /dev/shm (or $TMPDIR,
 * or /tmp); the caller frees the string. */
char *tmpdir_make(const char *tag);
/** Remove @p path and everything under it (symlinks are not followed);
 * silently does nothing for a missing path or NULL. */
void rm_tree(const char *path);

#endif
