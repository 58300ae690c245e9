/* tmpdir.c - temporary directories for the test suites (tmpdir.h).
 *
 * Invariants: see tmpdir.h.
 * Thread-safety: the test thread only.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "tmpdir.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

char *tmpdir_make(const char *tag)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    char *p = malloc(256);
    cr_assert_not_null(p);
    snprintf(p, 256, "%s/weft-%s-test-XXXXXX", base ? base : "/tmp", tag);
    cr_assert_not_null(mkdtemp(p), "mkdtemp %s", p);
    return p;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void rm_tree(const char *path)
{
    if (path != NULL) {
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}
