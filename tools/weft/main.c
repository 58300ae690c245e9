/* main.c - the `weft` command: global options, the store directory, command
 * dispatch, the clock test hook, and the one-line error convention.
 *
 * Arguments are read in one pass: words starting with "--" are options
 * (--dir DIR or --dir=DIR, --json, --help, --version, and the sync options
 * --addr, --listen, --timeout taking a value, --relay; "--" ends them), "-h"
 * is --help, every other word is positional (so `weft inc c e n -5` works).
 * Each command lists the options it accepts; any other is a usage error.
 * The first positional word names the command. Usage errors are found before
 * the store is opened, so a bad command line exits 2 whatever the store's
 * state. The store directory is --dir, else $WEFT_DIR, else
 * $XDG_DATA_HOME/weft, else $HOME/.local/share/weft.
 *
 * Invariants:
 *   1. Exit status: 0 success, 1 runtime failure, 2 usage error; every
 *      failure prints exactly one line to stderr starting "weft: ".
 *   2. Output written to stdout is flushed and checked before exit 0, so a
 *      full disk under `weft export > f` is a failure, not a short file.
 * Thread-safety: single-threaded program.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <weft/weft.h>

#include "cli.h"

/* clang-format off */
static const char usage_text[] =
    "usage: weft [--dir DIR] COMMAND [ARGS] [--json]\n"
    "\n"
    "commands:\n"
    "  init                           create the store\n"
    "  put COLL ID FIELD=JSON...      write fields (one transaction)\n"
    "  get COLL ID                    show one entity\n"
    "  ls COLL                        list the entities of a collection\n"
    "  del COLL ID                    delete an entity\n"
    "  inc COLL ID FIELD [N]          add N (default 1) to a counter\n"
    "  tag add|rm COLL ID FIELD VALUE add or remove a set element\n"
    "  conflicts                      list fields in conflict with every head\n"
    "  resolve COLL ID FIELD=JSON     resolve a conflict\n"
    "  log                            the op log, oldest first\n"
    "  export                         write the op log as JSON lines to stdout\n"
    "  import                         apply JSON lines from stdin (all or nothing)\n"
    "  status                         device, store and log facts, and peers\n"
    "\n"
    "sync:\n"
    "  id [--addr ENDPOINT]           print this device's card (to give to peers)\n"
    "  peer add NAME CARD [--addr ENDPOINT] [--relay]\n"
    "                                 trust a peer (its card from its 'weft id')\n"
    "  peer ls                        trusted peers: state, pending ops, last sync\n"
    "  peer rm NAME                   stop trusting a peer\n"
    "  serve [--listen ENDPOINT] [--relay]\n"
    "                                 run the sync daemon in the foreground\n"
    "  sync NAME [--timeout SECONDS]  sync once with a peer; exit 0 when caught up\n"
    "  help                           this text\n"
    "\n"
    "options:\n"
    "  --dir DIR    store directory (default: $WEFT_DIR, $XDG_DATA_HOME/weft,\n"
    "               $HOME/.local/share/weft)\n"
    "  --json       machine-readable output (get, ls, conflicts, log, status, peer ls)\n"
    "  --help       this text;  --version  the version\n"
    "\n"
    "Values are JSON: title='\"Hello\"' pinned=true n=3 x=1.5 (see docs/cli.md).\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";
/* clang-format on */

typedef struct command {
    const char *name;
    int (*run)(const weft_cli *cli);
    int min_args, max_args; /* positional arguments after the name; -1: no maximum */
    unsigned opts;          /* WEFT_CLI_OPT_* it accepts */
    const char *usage;
} command;

/* clang-format off */
#define J  WEFT_CLI_OPT_JSON
#define AD WEFT_CLI_OPT_ADDR
#define LI WEFT_CLI_OPT_LISTEN
#define RE WEFT_CLI_OPT_RELAY
#define TI WEFT_CLI_OPT_TIMEOUT
static const command commands[] = {
    {"init",      weft__cli_init,      0, 0,  0,  "weft init"},
    {"put",       weft__cli_put,       3, -1, 0,  "weft put COLL ID FIELD=JSON..."},
    {"get",       weft__cli_get,       2, 2,  J,  "weft get COLL ID [--json]"},
    {"ls",        weft__cli_ls,        1, 1,  J,  "weft ls COLL [--json]"},
    {"del",       weft__cli_del,       2, 2,  0,  "weft del COLL ID"},
    {"inc",       weft__cli_inc,       3, 4,  0,  "weft inc COLL ID FIELD [N]"},
    {"tag",       weft__cli_tag,       5, 5,  0,  "weft tag add|rm COLL ID FIELD VALUE"},
    {"conflicts", weft__cli_conflicts, 0, 0,  J,  "weft conflicts [--json]"},
    {"resolve",   weft__cli_resolve,   3, 3,  0,  "weft resolve COLL ID FIELD=JSON"},
    {"log",       weft__cli_log,       0, 0,  J,  "weft log [--json]"},
    {"export",    weft__cli_export,    0, 0,  0,  "weft export > FILE"},
    {"import",    weft__cli_import,    0, 0,  0,  "weft import < FILE"},
    {"status",    weft__cli_status,    0, 0,  J,  "weft status [--json]"},
    {"id",        weft__cli_id,        0, 0,  AD, "weft id [--addr ENDPOINT]"},
    {"peer",      weft__cli_peer,      1, 3,  J | AD | RE,
     "weft peer add NAME CARD [--addr ENDPOINT] [--relay] | peer ls [--json] | peer rm NAME"},
    {"serve",     weft__cli_serve,     0, 0,  LI | RE, "weft serve [--listen ENDPOINT] [--relay]"},
    {"sync",      weft__cli_sync,      1, 1,  TI, "weft sync NAME [--timeout SECONDS]"},
};
#undef J
#undef AD
#undef LI
#undef RE
#undef TI

/* The options that take a value, and their bits. */
static const struct {
    const char *name;
    unsigned bit;
} valued[] = {
    {"--addr", WEFT_CLI_OPT_ADDR},
    {"--listen", WEFT_CLI_OPT_LISTEN},
    {"--timeout", WEFT_CLI_OPT_TIMEOUT},
};
/* clang-format on */

int weft__cli_fail(int status, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("weft: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

int weft__cli_weft_fail(int rc, const char *fmt, ...)
{
    const char *msg = weft_last_error();
    char detail[512];
    /* Keep the message to one line whatever the library put in it. */
    snprintf(detail, sizeof detail, "%s", msg && *msg ? msg : weft_strerror(rc));
    for (char *p = detail; *p; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    va_list ap;
    fflush(stdout);
    fputs("weft: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", detail);
    return WEFT_CLI_FAIL;
}

int weft__cli_open(const weft_cli *cli, weft_store **out)
{
    struct stat st;
    if (stat(cli->dir, &st) != 0 && errno == ENOENT) {
        return weft__cli_fail(WEFT_CLI_FAIL, "no weft store in %s; run 'weft init'", cli->dir);
    }
    weft_options opt;
    int status = weft__cli_options(&opt);
    if (status != WEFT_CLI_OK) {
        return status;
    }
    int rc = weft_store_open(cli->dir, &opt, out);
    if (rc == WEFT_ENOSTORE) {
        return weft__cli_fail(WEFT_CLI_FAIL, "no weft store in %s; run 'weft init'", cli->dir);
    }
    if (rc != 0) {
        /* Name the directory unless the library's message already does. */
        const char *m = weft_last_error();
        if (m && strstr(m, cli->dir)) {
            return weft__cli_weft_fail(rc, "open store");
        }
        return weft__cli_weft_fail(rc, "open store %s", cli->dir);
    }
    return WEFT_CLI_OK;
}

/* WEFT_CLOCK_OFFSET_MS, parsed once. */
static int64_t clock_offset_ms;

static uint64_t offset_now(void *user)
{
    (void)user;
    return weft__cli_now_ms();
}

uint64_t weft__cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_offset_ms;
    return ms > 0 ? (uint64_t)ms : 0;
}

int weft__cli_options(weft_options *opt)
{
    weft_options_init(opt);
    const char *e = getenv("WEFT_CLOCK_OFFSET_MS");
    if (!e || !*e) {
        return WEFT_CLI_OK;
    }
    char *end;
    errno = 0;
    long long v = strtoll(e, &end, 10);
    /* Bounded to +-10 years, so the shifted clock stays a sane HLC. */
    if (errno != 0 || *end != '\0' || v > 315360000000LL || v < -315360000000LL) {
        return weft__cli_fail(WEFT_CLI_USAGE,
                              "WEFT_CLOCK_OFFSET_MS='%s' is not a signed number of milliseconds "
                              "within 10 years",
                              e);
    }
    clock_offset_ms = (int64_t)v;
    opt->now_ms = offset_now;
    opt->now_user = NULL;
    return WEFT_CLI_OK;
}

int weft__cli_flush(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        clearerr(stdout);
        return weft__cli_fail(WEFT_CLI_FAIL, "write output: %s", strerror(e ? e : EIO));
    }
    return WEFT_CLI_OK;
}

/* If @p a is one of the options taking a value ("--addr X" or "--addr=X"),
 * store the value and return 1 (with *status set on a missing value). */
static int valued_opt(const char *a, int argc, char **argv, int *i, const char **vals,
                      unsigned *given, int *status)
{
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        size_t n = strlen(valued[k].name);
        if (strncmp(a, valued[k].name, n) != 0 || (a[n] != '\0' && a[n] != '=')) {
            continue;
        }
        const char *v = a[n] == '=' ? a + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
        if (!v || !*v) {
            *status = weft__cli_fail(WEFT_CLI_USAGE, "%s needs a value", valued[k].name);
        }
        vals[k] = v;
        *given |= valued[k].bit;
        return 1;
    }
    return 0;
}

/* Name of the first option bit in @p bits, for "unknown flag" errors. */
static const char *opt_name(unsigned bits)
{
    if (bits & WEFT_CLI_OPT_JSON) {
        return "--json";
    }
    if (bits & WEFT_CLI_OPT_RELAY) {
        return "--relay";
    }
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) {
        if (bits & valued[k].bit) {
            return valued[k].name;
        }
    }
    return "?";
}

/* The store directory: --dir, $WEFT_DIR, $XDG_DATA_HOME/weft, $HOME/.local/share/weft.
 * @p buf receives a built path. NULL when nothing names one. */
static const char *store_dir(const char *opt, char *buf, size_t cap)
{
    const char *e;
    if (opt) {
        return opt;
    }
    if ((e = getenv("WEFT_DIR")) && *e) {
        return e;
    }
    if ((e = getenv("XDG_DATA_HOME")) && *e == '/') {
        int n = snprintf(buf, cap, "%s/weft", e);
        return n > 0 && (size_t)n < cap ? buf : NULL;
    }
    if ((e = getenv("HOME")) && *e) {
        int n = snprintf(buf, cap, "%s/.local/share/weft", e);
        return n > 0 && (size_t)n < cap ? buf : NULL;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *dir_opt = NULL, *cmd_name = NULL;
    const char *vals[sizeof valued / sizeof valued[0]] = {NULL};
    int json = 0, relay = 0, help = 0, version = 0, nargs = 0;
    unsigned given = 0;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) {
        return weft__cli_fail(WEFT_CLI_FAIL, "out of memory");
    }
    int status = WEFT_CLI_OK, opts_done = 0;
    for (int i = 1; i < argc && status == WEFT_CLI_OK; i++) {
        const char *a = argv[i];
        if (opts_done || a[0] != '-' || (a[1] != '-' && strcmp(a, "-h") != 0) ||
            strcmp(a, "-") == 0) {
            if (!cmd_name) {
                cmd_name = a;
            } else {
                args[nargs++] = argv[i];
            }
        } else if (strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
            given |= WEFT_CLI_OPT_JSON;
        } else if (strcmp(a, "--relay") == 0) {
            relay = 1;
            given |= WEFT_CLI_OPT_RELAY;
        } else if (valued_opt(a, argc, argv, &i, vals, &given, &status)) {
            /* handled */
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help = 1;
        } else if (strcmp(a, "--version") == 0) {
            version = 1;
        } else if (strcmp(a, "--dir") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0') {
                status = weft__cli_fail(WEFT_CLI_USAGE, "--dir needs a directory");
            } else {
                dir_opt = argv[++i];
            }
        } else if (strncmp(a, "--dir=", 6) == 0) {
            if (a[6] == '\0') {
                status = weft__cli_fail(WEFT_CLI_USAGE, "--dir needs a directory");
            } else {
                dir_opt = a + 6;
            }
        } else {
            status = weft__cli_fail(WEFT_CLI_USAGE, "unknown flag '%s' (see 'weft help')", a);
        }
    }
    if (status != WEFT_CLI_OK) {
        free(args);
        return status;
    }
    if (version) {
        printf("weft %s\n", weft_version());
        free(args);
        return weft__cli_flush();
    }
    if (help || (cmd_name && strcmp(cmd_name, "help") == 0)) {
        fputs(usage_text, stdout);
        free(args);
        return weft__cli_flush();
    }
    if (!cmd_name) {
        fputs(usage_text, stderr);
        free(args);
        return WEFT_CLI_USAGE;
    }
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, cmd_name) == 0) {
            cmd = &commands[i];
        }
    }
    if (!cmd) {
        free(args);
        return weft__cli_fail(WEFT_CLI_USAGE, "unknown command '%s' (see 'weft help')", cmd_name);
    }
    if (nargs < cmd->min_args || (cmd->max_args >= 0 && nargs > cmd->max_args)) {
        free(args);
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: %s arguments (usage: %s)", cmd->name,
                              nargs < cmd->min_args ? "missing" : "too many", cmd->usage);
    }
    if (given & ~cmd->opts) {
        free(args);
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: unknown flag '%s' (usage: %s)", cmd->name,
                              opt_name(given & ~cmd->opts), cmd->usage);
    }
    double timeout_s = 0;
    if (vals[2]) {
        char *end;
        errno = 0;
        timeout_s = strtod(vals[2], &end);
        if (errno != 0 || *end != '\0' || !(timeout_s > 0 && timeout_s <= 86400.0)) {
            free(args);
            return weft__cli_fail(WEFT_CLI_USAGE,
                                  "%s: --timeout '%s' is not a number of seconds in (0, 86400]",
                                  cmd->name, vals[2]);
        }
    }
    char dirbuf[4096];
    weft_cli cli = {store_dir(dir_opt, dirbuf, sizeof dirbuf),
                    json,
                    nargs,
                    args,
                    vals[0],
                    vals[1],
                    relay,
                    timeout_s};
    if (!cli.dir) {
        free(args);
        return weft__cli_fail(WEFT_CLI_FAIL,
                              "no store directory: give --dir DIR or set WEFT_DIR or HOME");
    }
    status = cmd->run(&cli);
    if (status == WEFT_CLI_OK) {
        status = weft__cli_flush();
    }
    free(args);
    return status;
}
