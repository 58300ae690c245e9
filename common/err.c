/* err.c - error names, texts and the per-thread last-error message.
 *
 * Invariants:
 *   1. The tables come from WEFT_ERR_MAP alone, so code, name and text can
 *      never disagree.
 *   2. weft_last_error() always returns a NUL-terminated string.
 *   3. weft__err() may be passed weft_last_error() as an argument.
 * Thread-safety: thread-safe; the message buffer is thread-local.
 */
#include <stdarg.h>
#include <stdio.h>

#include "weft_int.h"

static _Thread_local char last_msg[512];

const char *weft_strerror(int err)
{
    switch (err) {
    case WEFT_OK:
        return "success";
#define WEFT__X(name, code, text) \
    case name:                    \
        return text;
        WEFT_ERR_MAP(WEFT__X)
#undef WEFT__X
    default:
        return "unknown error";
    }
}

const char *weft_err_name(int err)
{
    switch (err) {
    case WEFT_OK:
        return "WEFT_OK";
#define WEFT__X(name, code, text) \
    case name:                    \
        return #name;
        WEFT_ERR_MAP(WEFT__X)
#undef WEFT__X
    default:
        return "WEFT_E?";
    }
}

const char *weft_last_error(void)
{
    return last_msg;
}

int weft__err(int code, const char *fmt, ...)
{
    /* Format into a local buffer first: callers may pass weft_last_error()
     * itself as an argument ("%s: ...", weft_last_error()). */
    char msg[sizeof last_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_msg, msg, sizeof msg);
    return code;
}

void weft__err_clear(void)
{
    last_msg[0] = '\0';
}

const char *weft_version(void)
{
    return "0.1.0";
}
