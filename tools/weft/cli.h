/* cli.h - what the files of the `weft` command share: exit codes, error
 * printing, the JSON <-> msgpack value mapping, hex, base64 and time text.
 *
 * The command is built from five files: main.c (arguments, store directory,
 * dispatch), cmds.c (one function per command), xfer.c (export and import),
 * sync.c (identity, peers, the `serve` daemon, `sync`, the peers and
 * refusals sections of `status`) and json.c (value mapping and text
 * helpers). It uses only the public API <weft/weft.h>, jansson and
 * msgpack-c, as LMDB's tools use only lmdb.h.
 *
 * Invariants:
 *   1. Every failure prints exactly one line to stderr, "weft: <what>:
 *      <detail>", through weft__cli_fail() or weft__cli_weft_fail(), and the
 *      command returns WEFT_CLI_USAGE or WEFT_CLI_FAIL.
 *   2. weft__cli_json_from_mp(weft__cli_mp_from_json(v)) == v for every JSON
 *      value the mapping accepts (docs/cli.md lists the mapping).
 * Thread-safety: single-threaded program; nothing here is thread-safe.
 */
#ifndef WEFT_CLI_H
#define WEFT_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <weft/weft.h>

#if defined(__GNUC__) || defined(__clang__)
#define WEFT_CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WEFT_CLI_PRINTF(f, a)
#endif

/* clang-format off */
#define WEFT_CLI_OK     0   /* success */
#define WEFT_CLI_FAIL   1   /* runtime failure: store, I/O, not found, ... */
#define WEFT_CLI_USAGE  2   /* bad command line: unknown command or flag, bad arguments */

#define WEFT_CLI_LINE_MAX   (4u << 20)  /* bytes in one export line, newline excluded */
#define WEFT_CLI_HEX64      17          /* 16 hex digits and a NUL */
#define WEFT_CLI_TIME       40          /* "2024-05-01T12:34:56.789Z" and a NUL, with room */
/* clang-format on */

/* Options a command may accept (command table in main.c). */
enum {
    WEFT_CLI_OPT_JSON = 1u << 0,    /* --json */
    WEFT_CLI_OPT_ADDR = 1u << 1,    /* --addr ENDPOINT */
    WEFT_CLI_OPT_LISTEN = 1u << 2,  /* --listen ENDPOINT */
    WEFT_CLI_OPT_RELAY = 1u << 3,   /* --relay */
    WEFT_CLI_OPT_TIMEOUT = 1u << 4, /* --timeout SECONDS */
};

/** What main.c parsed: the store directory and the command's arguments. */
typedef struct weft_cli {
    const char *dir; /* the store directory (resolved), borrowed from argv/env */
    int json;        /* --json given */
    int argc;        /* positional arguments after the command name */
    char **argv;
    const char *addr;   /* --addr, or NULL; borrowed from argv */
    const char *listen; /* --listen, or NULL; borrowed from argv */
    int relay;          /* --relay given */
    double timeout_s;   /* --timeout, or 0 when not given */
} weft_cli;

/* ---- errors (main.c) ---- */

/** Print "weft: <fmt...>" and a newline to stderr; return @p status. */
int weft__cli_fail(int status, const char *fmt, ...) WEFT_CLI_PRINTF(2, 3);
/** Print "weft: <fmt...>: <weft_last_error() or weft_strerror(rc)>"; return
 * WEFT_CLI_FAIL. Call it right after the failing weft call, before any other
 * weft call replaces the message. */
int weft__cli_weft_fail(int rc, const char *fmt, ...) WEFT_CLI_PRINTF(2, 3);
/** Open the store in cli->dir (not creating it). Prints the error and
 * returns WEFT_CLI_FAIL on failure. */
int weft__cli_open(const weft_cli *cli, weft_store **out);
/** Store options for this process: defaults, plus the test hook
 * WEFT_CLOCK_OFFSET_MS (signed ms added to the wall clock, docs/cli.md).
 * 0, or WEFT_CLI_USAGE with the error printed when the variable is malformed. */
int weft__cli_options(weft_options *opt);
/** This process's wall clock in ms since the epoch, WEFT_CLOCK_OFFSET_MS included. */
uint64_t weft__cli_now_ms(void);
/** Flush stdout; on failure print the error and return WEFT_CLI_FAIL. */
int weft__cli_flush(void);

/* ---- commands (cmds.c, xfer.c): each returns a WEFT_CLI_* status ---- */
int weft__cli_init(const weft_cli *cli);
int weft__cli_put(const weft_cli *cli);
int weft__cli_get(const weft_cli *cli);
int weft__cli_ls(const weft_cli *cli);
int weft__cli_del(const weft_cli *cli);
int weft__cli_inc(const weft_cli *cli);
int weft__cli_tag(const weft_cli *cli);
int weft__cli_conflicts(const weft_cli *cli);
int weft__cli_resolve(const weft_cli *cli);
int weft__cli_log(const weft_cli *cli);
int weft__cli_status(const weft_cli *cli);
int weft__cli_export(const weft_cli *cli);
int weft__cli_import(const weft_cli *cli);
int weft__cli_id(const weft_cli *cli);    /* sync.c */
int weft__cli_peer(const weft_cli *cli);  /* sync.c: peer add|ls|rm */
int weft__cli_serve(const weft_cli *cli); /* sync.c */
int weft__cli_sync(const weft_cli *cli);  /* sync.c */

/* ---- peers (sync.c), for `status` and `peer ls` ---- */

/** Read every peer's persisted status into a new array (caller frees with
 * free()); *n receives the count. Prints the error and returns WEFT_CLI_FAIL
 * on failure. */
int weft__cli_peers_load(weft_store *s, weft_peer_status **out, size_t *n);
/** The JSON object describing one peer (docs/cli.md), or NULL on OOM. */
json_t *weft__cli_peer_json(const weft_peer_status *p);
/** Print the human lines describing @p n peers (the peers section of
 * `status`, and `peer ls`). */
void weft__cli_peers_print(const weft_peer_status *p, size_t n);
/** Print the refusals line of `status` ("refused N connections; last: key
 * <hex> from <addr> at <time>", then the older ones kept); nothing when
 * @p total is 0. @p v is newest first, as weft_refusals() returns it. */
void weft__cli_refusals_print(const weft_refusal *v, size_t n, uint64_t total);
/** {"total":N,"recent":[{"public_key","addr","at","at_ms"},...]} (newest
 * first), or NULL on OOM. */
json_t *weft__cli_refusals_json(const weft_refusal *v, size_t n, uint64_t total);

/* ---- values (json.c) ---- */

/** A growable byte buffer owned by its holder; free with weft__cli_buf_free. */
typedef struct weft_cli_buf {
    uint8_t *ptr;
    size_t len, cap;
} weft_cli_buf;

void weft__cli_buf_free(weft_cli_buf *b);

/** Convert JSON to msgpack, appending to @p out (docs/cli.md, "Values").
 * @return 0, or -1 with a reason in @p err (NUL-terminated). */
int weft__cli_mp_from_json(const json_t *j, weft_cli_buf *out, char *err, size_t errlen);

/** Parse @p text as one JSON value (any type) and convert it to msgpack.
 * @return 0, or -1 with a reason in @p err. */
int weft__cli_mp_from_text(const char *text, weft_cli_buf *out, char *err, size_t errlen);

/** Convert one msgpack value filling buf[0..len) to JSON.
 * @return a new reference (caller owns, json_decref), or NULL when the bytes
 * are malformed or cannot be represented (the reason is in @p err). */
json_t *weft__cli_json_from_mp(const void *buf, size_t len, char *err, size_t errlen);

/** Serialise @p j compactly (JSON_ENCODE_ANY), printing every real with the
 * fewest digits that read back as the same double. Caller frees with free().
 * NULL on out-of-memory. */
char *weft__cli_dumps(const json_t *j);

/** Print a msgpack value as compact JSON to @p f (for human output); a value
 * that cannot be converted prints as "<unprintable: reason>". */
void weft__cli_print_value(FILE *f, weft_bytes v);

/* ---- text helpers (json.c) ---- */

/** 16 lowercase hex digits. */
void weft__cli_hex64(uint64_t v, char out[WEFT_CLI_HEX64]);
/** Parse exactly 16 hex digits. 0 or -1. */
int weft__cli_parse_hex64(const char *s, uint64_t *out);
/** Lowercase hex of @p n bytes into @p out (2n+1 bytes). */
void weft__cli_hex(const uint8_t *p, size_t n, char *out);
/** "2024-05-01T12:34:56.789Z": the physical part of @p hlc, UTC. */
void weft__cli_time(uint64_t hlc, char out[WEFT_CLI_TIME]);
/** Standard base64 with padding. Caller frees with free(); NULL on OOM. */
char *weft__cli_b64_encode(const void *p, size_t n);
/** Strict standard base64 (padding required, no whitespace) into a new
 * buffer of at most @p max bytes. 0, or -1 (malformed or too long). */
int weft__cli_b64_decode(const char *s, size_t slen, size_t max, uint8_t **out, size_t *outlen);

/** A JSON object {"hlc": hex, "device": hex, "time": ..., "counter": n}
 * describing the op @p id, or NULL on OOM. */
json_t *weft__cli_id_json(weft_id id);

#endif /* WEFT_CLI_H */
