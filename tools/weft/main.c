/* main.c - the `weft` command: global options, the store directory, command
 * dispatch, and the one-line error convention.
 *
 * Arguments are read in one pass: words starting with "--" are options
 * (--dir DIR or --dir=DIR, --json, --help, --version; "--" ends them), "-h"
 * is --help, every other word is positional (so `weft inc c e n -5` works).
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
    "  status                         device, store and log facts\n"
    "  help                           this text\n"
    "\n"
    "options:\n"
    "  --dir DIR    store directory (default: $WEFT_DIR, $XDG_DATA_HOME/weft,\n"
    "               $HOME/.local/share/weft)\n"
    "  --json       machine-readable output (get, ls, conflicts, log, status)\n"
    "  --help       this text;  --version  the version\n"
    "\n"
    "Values are JSON: title='\"Hello\"' pinned=true n=3 x=1.5 (see docs/cli.md).\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";
/* clang-format on */

typedef struct command {
    const char *name;
    int (*run)(const weft_cli *cli);
    int min_args, max_args; /* positional arguments after the name; -1: no maximum */
    int json;               /* accepts --json */
    const char *usage;
} command;

/* clang-format off */
static const command commands[] = {
    {"init",      weft__cli_init,      0, 0,  0, "weft init"},
    {"put",       weft__cli_put,       3, -1, 0, "weft put COLL ID FIELD=JSON..."},
    {"get",       weft__cli_get,       2, 2,  1, "weft get COLL ID [--json]"},
    {"ls",        weft__cli_ls,        1, 1,  1, "weft ls COLL [--json]"},
    {"del",       weft__cli_del,       2, 2,  0, "weft del COLL ID"},
    {"inc",       weft__cli_inc,       3, 4,  0, "weft inc COLL ID FIELD [N]"},
    {"tag",       weft__cli_tag,       5, 5,  0, "weft tag add|rm COLL ID FIELD VALUE"},
    {"conflicts", weft__cli_conflicts, 0, 0,  1, "weft conflicts [--json]"},
    {"resolve",   weft__cli_resolve,   3, 3,  0, "weft resolve COLL ID FIELD=JSON"},
    {"log",       weft__cli_log,       0, 0,  1, "weft log [--json]"},
    {"export",    weft__cli_export,    0, 0,  0, "weft export > FILE"},
    {"import",    weft__cli_import,    0, 0,  0, "weft import < FILE"},
    {"status",    weft__cli_status,    0, 0,  1, "weft status [--json]"},
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
    int rc = weft_store_open(cli->dir, NULL, out);
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

int weft__cli_flush(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        clearerr(stdout);
        return weft__cli_fail(WEFT_CLI_FAIL, "write output: %s", strerror(e ? e : EIO));
    }
    return WEFT_CLI_OK;
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
    int json = 0, help = 0, version = 0, nargs = 0;
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
    if (json && !cmd->json) {
        free(args);
        return weft__cli_fail(WEFT_CLI_USAGE, "%s: unknown flag '--json' (usage: %s)", cmd->name,
                              cmd->usage);
    }
    char dirbuf[4096];
    weft_cli cli = {store_dir(dir_opt, dirbuf, sizeof dirbuf), json, nargs, args};
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
