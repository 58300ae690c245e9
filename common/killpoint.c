/* killpoint.c - the crash sweep's kill points (killpoint.h). Compiled only
 * into weft_killpoints, the test-only variant of the library; never into
 * libweft.
 *
 * Environment, read once at the first passage through any point:
 *   WEFT_KILL_AT=<point>:<hit>   SIGKILL on the <hit>-th passage (1-based)
 *                                through <point>
 *   WEFT_KILL_COUNT=<file>       at a normal exit, write one line
 *                                "<point> <hits>" per point passed
 *
 * Invariants:
 *   1. hits[n] counts every passage through point n in this process.
 *   2. The kill is SIGKILL sent to the whole process: no handler, atexit or
 *      buffered write runs after it, as in a real crash.
 * Thread-safety: thread-safe (atomic counters, pthread_once).
 */
#include "killpoint.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int kill_point = -1;
static unsigned long kill_hit;
static const char *count_file;
static atomic_ulong hits[WEFT__KP_MAX + 1];

static void write_counts(void)
{
    FILE *f = fopen(count_file, "w");
    if (f == NULL) {
        return;
    }
    for (int i = 0; i <= WEFT__KP_MAX; i++) {
        unsigned long n = atomic_load(&hits[i]);
        if (n > 0) {
            fprintf(f, "%d %lu\n", i, n);
        }
    }
    fclose(f);
}

static void init(void)
{
    const char *at = getenv("WEFT_KILL_AT");
    int p;
    unsigned long h;
    if (at != NULL && sscanf(at, "%d:%lu", &p, &h) == 2 && p >= 0 && p <= WEFT__KP_MAX && h > 0) {
        kill_point = p;
        kill_hit = h;
    }
    count_file = getenv("WEFT_KILL_COUNT");
    if (count_file != NULL && *count_file != '\0') {
        atexit(write_counts);
    }
}

void weft__killpoint(int n)
{
    pthread_once(&once, init);
    if (n < 0 || n > WEFT__KP_MAX) {
        return;
    }
    unsigned long h = atomic_fetch_add(&hits[n], 1) + 1;
    if (n == kill_point && h == kill_hit) {
        kill(getpid(), SIGKILL);
        for (;;) {
            pause(); /* SIGKILL is delivered before kill() returns to a
                      * single-threaded caller; other threads wait here */
        }
    }
}
