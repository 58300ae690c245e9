/* tools/bench/bench.h - what the files of weft-bench share: the run's
 * configuration, error exits, time and statistics, the one-line JSON writer,
 * temporary directories, realistic note values and the notes-store builder.
 *
 * weft-bench is built from bench.c (arguments, the header line, the local
 * workloads write1 / batch / notes and the helpers declared here) and
 * bench_sync.c (the sync workloads, which run a second process, and the raw
 * CURVE reference). Both use only the public weft API (include/weft/); raw
 * LMDB (bench.c) and raw libzmq (bench_sync.c) appear only as references.
 *
 * The JSON writer is a handful of static inline functions over a fixed
 * buffer (struct jb): every workload builds exactly one line with it.
 *
 * Invariants:
 *   1. weft__bench_die() removes the current workload's temporary directory
 *      (unless --keep) before exiting 1; nothing else exits on failure.
 *   2. A struct jb holds one complete JSON object after the jb_open(j, NULL)
 *      that started it is matched by its jb_close().
 * Thread-safety: a single-threaded program; nothing here is thread-safe.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/weft_err.h>
#include <weft/weft_store.h>

#define WEFT_BENCH_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- configuration and error exits ---- */

typedef struct weft_bench_cfg {
    const char *base; /* parent of the temporary directories */
    const char *self; /* path of this executable, for the children */
    int json;         /* stdout carries JSON lines only */
    int quick;        /* divide every count by 10 */
    int keep;         /* leave the temporary directories behind */
    int runs;         /* fresh-process runs per notes measurement */
} weft_bench_cfg;

/** Print "weft-bench: <message>" to stderr, remove the current temporary
 * directory (unless --keep) and exit 1. */
WEFT_BENCH_PRINTF(1, 2) _Noreturn void weft__bench_die(const char *fmt, ...);

#define WCHECK(call)                                                                             \
    do {                                                                                         \
        int wrc_ = (call);                                                                       \
        if (wrc_ < 0) {                                                                          \
            weft__bench_die("%s:%d: %s: %s: %s", __FILE__, __LINE__, #call, weft_err_name(wrc_), \
                            weft_last_error());                                                  \
        }                                                                                        \
    } while (0)

/** calloc that dies on failure (and never returns NULL for 0 bytes). */
void *weft__bench_calloc(size_t n, size_t size);
/** "a/b", caller frees. */
char *weft__bench_path_join(const char *a, const char *b);

/* ---- time, statistics ---- */

/** CLOCK_MONOTONIC in ns. On Linux this clock is system-wide: stamps taken
 * in two processes of one machine (one time namespace) compare directly. */
uint64_t weft__bench_now_ns(void);
/** Sorts @p v in place. Median (mean of the middle two for even n) or the
 * nearest-rank quantile @p q in (0, 1]; 0 for n == 0. */
double weft__bench_quantile(double *v, size_t n, double q);

/* ---- a one-line JSON writer ---- */

struct jb {
    char buf[16384];
    size_t len;
    int first; /* no member written yet in the innermost object */
};

static inline WEFT_BENCH_PRINTF(2, 3) void jb_raw(struct jb *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->buf + j->len, sizeof j->buf - j->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof j->buf - j->len) {
        weft__bench_die("JSON line too long");
    }
    j->len += (size_t)n;
}

static inline void jb_key(struct jb *j, const char *k)
{
    jb_raw(j, "%s\"%s\":", j->first ? "" : ",", k);
    j->first = 0;
}

/* Opens an object: the line itself when @p k is NULL, else member @p k. */
static inline void jb_open(struct jb *j, const char *k)
{
    if (k) {
        jb_key(j, k);
    } else {
        j->len = 0;
    }
    jb_raw(j, "{");
    j->first = 1;
}

static inline void jb_close(struct jb *j)
{
    jb_raw(j, "}");
    j->first = 0;
}

static inline void jb_str(struct jb *j, const char *k, const char *s)
{
    jb_key(j, k);
    jb_raw(j, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            jb_raw(j, "\\%c", c);
        } else if (c < 0x20) {
            jb_raw(j, "\\u%04x", c);
        } else {
            jb_raw(j, "%c", c);
        }
    }
    jb_raw(j, "\"");
}

static inline void jb_u64(struct jb *j, const char *k, uint64_t v)
{
    jb_key(j, k);
    jb_raw(j, "%llu", (unsigned long long)v);
}

static inline void jb_num(struct jb *j, const char *k, double v, int prec)
{
    jb_key(j, k);
    jb_raw(j, "%.*f", prec, v);
}

static inline void jb_bool(struct jb *j, const char *k, int v)
{
    jb_key(j, k);
    jb_raw(j, "%s", v ? "true" : "false");
}

/** Print the finished line on stdout, then "# <summary>" (stderr with --json). */
void weft__bench_emit(const weft_bench_cfg *c, struct jb *j, const char *summary);
/** A progress message on stderr. */
void weft__bench_progress(const weft_bench_cfg *c, const char *what);

/* ---- temporary directories ---- */

/** A fresh directory DIR/weft-bench-<workload>.XXXXXX; it becomes the one
 * weft__bench_die() removes. Caller frees with weft__bench_drop_tmp(). */
char *weft__bench_make_tmp(const weft_bench_cfg *c, const char *workload);
/** Remove @p dir (unless --keep) and free it. */
void weft__bench_drop_tmp(const weft_bench_cfg *c, char *dir);
/** mkdir @p dir/@p name; caller frees the path. */
char *weft__bench_make_subdir(const char *dir, const char *name);

/* ---- realistic values and stores ---- */

#define WEFT_BENCH_POOL 256

struct val {
    char *text;  /* NUL-terminated */
    uint8_t *mp; /* the text as a msgpack str */
    size_t mp_len;
};

struct pools {
    struct val title[WEFT_BENCH_POOL]; /* ~20 chars */
    struct val body[WEFT_BENCH_POOL];  /* ~200 chars */
    struct val tag[8];
};

void weft__bench_pools_init(struct pools *p, uint64_t seed);
void weft__bench_pools_free(struct pools *p);

/** @p prefix then @p v as @p digits zero-padded decimal digits, NUL-terminated. */
void weft__bench_fmt_id(char *out, const char *prefix, size_t v, int digits);

/** Create (WEFT_OPEN_CREATE) and open the store in @p dir. */
weft_store *weft__bench_store_create(const char *dir);

struct opsize {
    size_t last;    /* payload bytes of the last op */
    uint64_t total; /* payload bytes of every op */
    uint64_t count;
};

/** Sum the op log's payload bytes; 0, or the weft error. */
int weft__bench_log_bytes(weft_store *s, struct opsize *o);

struct build_stats {
    uint64_t ops;
    double seconds;
    size_t txns;
};

/** The notes workload's store: @p n notes (title, body, updatedAt, 1-3 tags)
 * in transactions of 2,000 notes, then 5 single-field edits per note in
 * 10,000-op transactions: about 10 ops per note. Creates the store in @p dir
 * and closes it. */
void weft__bench_notes_build(const char *dir, size_t n, struct pools *p, struct build_stats *bs);
/** The same store, built in transactions of @p create_notes notes (~5 ops
 * each) and then of @p edit_ops edits. weft__bench_notes_build is (2,000,
 * 10,000): a bulk import, whose large transactions leave free pages behind
 * (copy-on-write cannot reuse the pages a transaction freed); an app writing
 * its own edits commits ~100 ops at a time: (25, 100). */
void weft__bench_notes_build_txns(const char *dir, size_t n, struct pools *p, size_t create_notes,
                                  size_t edit_ops, struct build_stats *bs);

/* ---- the concurrent workload (bench_group.c): group commit ---- */

void weft__bench_concurrent(const weft_bench_cfg *c);

/* ---- the merge workload (bench_merge.c) ---- */

void weft__bench_merge(const weft_bench_cfg *c);
/** Copy every op of the store in @p adir into a new store in @p bdir
 * (bench_sync.c): B then holds exactly A's ops, as after a sync. */
void weft__bench_store_copy(const char *adir, const char *bdir);

/* ---- the sync workloads (bench_sync.c) ---- */

void weft__bench_sync_initial(const weft_bench_cfg *c);
void weft__bench_sync_incremental(const weft_bench_cfg *c);
void weft__bench_sync_live(const weft_bench_cfg *c);
void weft__bench_reconnect(const weft_bench_cfg *c);

/** The internal child entry points: "--sync-peer ..." (a store with a sync
 * engine, driven by line commands on stdin) and "--curve-send ..." (the raw
 * CURVE sender). @return the process exit status. */
int weft__bench_sync_child(int argc, char **argv);

#endif /* WEFT_BENCH_H */
