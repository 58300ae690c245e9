/* bench_group.c - the `concurrent` workload of weft-bench: group commit.
 *
 * One store; single-op durable write txns (weft_txn_begin, one
 * weft_set_str, weft_txn_commit), first from one thread, then from 8
 * threads at once, alternating over 3 rounds so that both see the same
 * machine. Each thread writes its own notes (entity rotating over 100 per
 * thread). Reported per round and as the median round: ops/s of each side
 * and their ratio, per-write latency (median, p99) of each side and the
 * ratio of the medians. The physical reference in the same run: a raw
 * 4 KiB pwrite + fdatasync on the same file system, median.
 *
 * Targets (issue: group commit): 8 threads >= 10x the ops/s of one thread,
 * per-write latency within 2x of a lone write.
 *
 * Invariants: uses only the public API; every write is checked (a failure
 * exits through weft__bench_die).
 * Thread-safety: the writer threads share the store, each its own txns.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { THREADS = 8, ROUNDS = 3 };
_Static_assert(ROUNDS % 2 == 1, "the median round must be one of the rounds");

typedef struct writer_arg {
    weft_store *s;
    int k;          /* thread number */
    size_t n;       /* writes */
    double *lat_us; /* n latencies */
    const char *text;
} writer_arg;

static void *writer(void *arg)
{
    writer_arg *w = arg;
    for (size_t i = 0; i < w->n; i++) {
        char id[32];
        snprintf(id, sizeof id, "g%d-%03zu", w->k, i % 100);
        uint64_t t0 = weft__bench_now_ns();
        weft_txn *t = NULL;
        WCHECK(weft_txn_begin(w->s, 0, &t));
        WCHECK(weft_set_str(t, "notes", id, "title", w->text));
        WCHECK(weft_txn_commit(&t));
        w->lat_us[i] = (double)(weft__bench_now_ns() - t0) / 1e3;
    }
    return NULL;
}

typedef struct side {
    double ops_s, med_us, p99_us;
} side;

/* @p nthreads threads each writing @p per ops; fills @p out. */
static void run_side(weft_store *s, int nthreads, size_t per, const char *text, side *out)
{
    writer_arg w[THREADS];
    pthread_t th[THREADS];
    double *lat = weft__bench_calloc((size_t)nthreads * per, sizeof *lat);
    uint64_t t0 = weft__bench_now_ns();
    for (int k = 0; k < nthreads; k++) {
        w[k] = (writer_arg){s, k, per, lat + (size_t)k * per, text};
        if (pthread_create(&th[k], NULL, writer, &w[k]) != 0) {
            weft__bench_die("pthread_create failed");
        }
    }
    for (int k = 0; k < nthreads; k++) {
        pthread_join(th[k], NULL);
    }
    double secs = (double)(weft__bench_now_ns() - t0) / 1e9;
    size_t n = (size_t)nthreads * per;
    out->ops_s = (double)n / secs;
    out->med_us = weft__bench_quantile(lat, n, 0.5);
    out->p99_us = weft__bench_quantile(lat, n, 0.99);
    free(lat);
}

/* Median of @p n raw 4 KiB pwrite + fdatasync, in a file under @p dir. */
static double raw_fdatasync_us(const char *dir, size_t n)
{
    char *path = weft__bench_path_join(dir, "raw.fdatasync");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        weft__bench_die("open %s failed", path);
    }
    static char page[4096];
    double *v = weft__bench_calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        memset(page, (int)i, sizeof page);
        uint64_t t0 = weft__bench_now_ns();
        if (pwrite(fd, page, sizeof page, (off_t)((i % 64) * sizeof page)) != sizeof page ||
            fdatasync(fd) != 0) {
            weft__bench_die("pwrite/fdatasync of %s failed", path);
        }
        v[i] = (double)(weft__bench_now_ns() - t0) / 1e3;
    }
    close(fd);
    unlink(path);
    free(path);
    double med = weft__bench_quantile(v, n, 0.5);
    free(v);
    return med;
}

void weft__bench_concurrent(const weft_bench_cfg *c)
{
    const size_t per1 = c->quick ? 100 : 1000, perk = per1;
    char *dir = weft__bench_make_tmp(c, "concurrent");
    char *wdir = weft__bench_make_subdir(dir, "weft");
    struct pools p;
    weft__bench_pools_init(&p, 1);
    const char *text = p.title[0].text;
    weft__bench_progress(c, "concurrent: running");
    weft_store *s = weft__bench_store_create(wdir);

    side one[ROUNDS], many[ROUNDS];
    double ratio[ROUNDS], lratio[ROUNDS], raw[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        if (r % 2 == 0) {
            run_side(s, 1, per1, text, &one[r]);
            run_side(s, THREADS, perk, text, &many[r]);
        } else {
            run_side(s, THREADS, perk, text, &many[r]);
            run_side(s, 1, per1, text, &one[r]);
        }
        raw[r] = raw_fdatasync_us(dir, per1 / 4);
        ratio[r] = many[r].ops_s / one[r].ops_s;
        lratio[r] = many[r].med_us / one[r].med_us;
    }
    weft_store_close(&s);
    /* the median round by the throughput ratio */
    double sorted[ROUNDS];
    memcpy(sorted, ratio, sizeof sorted);
    double med = weft__bench_quantile(sorted, ROUNDS, 0.5); /* odd ROUNDS: one of them */
    int m = 0;
    for (int r = 0; r < ROUNDS; r++) {
        if (ratio[r] == med) {
            m = r;
        }
    }
    bool met_tput = ratio[m] >= 10.0, met_lat = lratio[m] <= 2.0;

    struct jb j;
    jb_open(&j, NULL);
    jb_str(&j, "bench", "concurrent");
    jb_open(&j, "params");
    jb_u64(&j, "threads", THREADS);
    jb_u64(&j, "writes_per_thread", perk);
    jb_u64(&j, "writes_lone", per1);
    jb_u64(&j, "rounds", ROUNDS);
    jb_close(&j);
    jb_open(&j, "lone");
    jb_num(&j, "ops_per_s", one[m].ops_s, 0);
    jb_num(&j, "median_us", one[m].med_us, 1);
    jb_num(&j, "p99_us", one[m].p99_us, 1);
    jb_close(&j);
    jb_open(&j, "threads8");
    jb_num(&j, "ops_per_s", many[m].ops_s, 0);
    jb_num(&j, "median_us", many[m].med_us, 1);
    jb_num(&j, "p99_us", many[m].p99_us, 1);
    jb_close(&j);
    jb_num(&j, "raw_fdatasync_median_us", raw[m], 1);
    jb_num(&j, "throughput_ratio", ratio[m], 2);
    jb_num(&j, "latency_ratio_median", lratio[m], 2);
    jb_raw(&j, ",\"rounds_throughput_ratio\":[");
    for (int r = 0; r < ROUNDS; r++) {
        jb_raw(&j, "%s%.2f", r ? "," : "", ratio[r]);
    }
    jb_raw(&j, "]");
    jb_open(&j, "targets");
    jb_num(&j, "throughput_ratio_min", 10, 0);
    jb_num(&j, "latency_ratio_max", 2, 0);
    jb_bool(&j, "met", met_tput && met_lat);
    jb_close(&j);
    jb_close(&j);
    char sum[512];
    snprintf(sum, sizeof sum,
             "concurrent: 1 thread %.0f ops/s (median %.0f us) | 8 threads %.0f ops/s (median "
             "%.0f us) | throughput x%.1f (target >= 10: %s), latency x%.2f (target <= 2: %s); "
             "raw fdatasync %.0f us",
             one[m].ops_s, one[m].med_us, many[m].ops_s, many[m].med_us, ratio[m],
             met_tput ? "met" : "MISSED", lratio[m], met_lat ? "met" : "MISSED", raw[m]);
    weft__bench_emit(c, &j, sum);
    free(wdir);
    weft__bench_pools_free(&p);
    weft__bench_drop_tmp(c, dir);
}
