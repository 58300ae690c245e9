/* replay.c - run a fuzz target over files without libFuzzer: the corpus and
 * every crash input ever found, re-run by ctest in every build.
 *
 * Usage: replay_<target> PATH...
 * Each PATH is a file or a directory; a directory's regular files are run
 * in name order (names starting with '.' are skipped, so an empty directory
 * can be kept in git with a .gitkeep). A PATH that does not exist is an
 * error: a renamed corpus must not turn the test into a no-op. Each input
 * is handed to LLVMFuzzerTestOneInput in a buffer of exactly its size (no
 * slack for ASan to miss an overread), and its name is printed first, so
 * when a target traps the last name printed is the culprit.
 *
 * Exit status: 0 when every input ran; 1 on a usage or I/O error; a target
 * that finds a broken property traps (SIGILL) instead of returning.
 *
 * Invariants:
 *   1. Every input is passed exactly once, in a heap buffer of its exact
 *      size, then freed.
 * Thread-safety: single-threaded program.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_FILE_MAX (64u << 20) /* refuse inputs above 64 MiB: not a fuzz input */

/* Read @p path whole into a new buffer of exactly its size (1 byte for an
 * empty file, so the pointer is never NULL). 0, or -1 with the error printed. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || sb.st_size < 0 || (uint64_t)sb.st_size > REPLAY_FILE_MAX) {
        fprintf(stderr, "replay: %s: cannot size it, or larger than %u bytes\n", path,
                REPLAY_FILE_MAX);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        fclose(f);
        return -1;
    }
    if (fread(buf, 1, n, f) != n) {
        fprintf(stderr, "replay: %s: short read\n", path);
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int run_file(const char *path, size_t *count)
{
    uint8_t *buf;
    size_t len;
    if (read_file(path, &buf, &len) != 0) {
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
    (void)LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    (*count)++;
    return 0;
}

static int skip_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static int run_dir(const char *dir, size_t *count)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t plen = strlen(dir) + strlen(names[i]->d_name) + 2;
        char *path = malloc(plen);
        struct stat sb;
        if (!path) {
            fprintf(stderr, "replay: out of memory\n");
            rc = -1;
        } else {
            snprintf(path, plen, "%s/%s", dir, names[i]->d_name);
            if (rc == 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                rc = run_file(path, count);
            }
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH...  (files or directories of fuzz inputs)\n", argv[0]);
        return 1;
    }
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int rc = S_ISDIR(sb.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
        if (rc != 0) {
            return 1;
        }
    }
    printf("replay: %zu inputs ran, no property broken\n", count);
    return 0;
}
