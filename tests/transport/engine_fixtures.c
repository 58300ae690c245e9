/* engine_fixtures.c - the engine suites' shared fixtures (engine_fixtures.h).
 *
 * Invariants: see engine_fixtures.h.
 * Thread-safety: the test thread only.
 */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "engine_fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/tmpdir.h"

char *tmpdir_new(void)
{
    return tmpdir_make("engine");
}

void rm_rf(char *path)
{
    rm_tree(path);
    free(path);
}

weft_store *store_new(const char *dir)
{
    weft_options o;
    weft_options_init(&o);
    o.flags = WEFT_OPEN_CREATE;
    o.map_size = 16u << 20;
    weft_store *s = NULL;
    OK(weft_store_open(dir, &o, &s));
    return s;
}

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Add @p other as peer @p name of @p s, reachable at @p addr (NULL: none). */
void add_peer(weft_store *s, const char *name, weft_store *other, const char *addr)
{
    char card[WEFT_CARD_MAX];
    OK(weft_card(other, NULL, card, sizeof card));
    OK(weft_peer_add(s, name, card, addr, WEFT_ROLE_DEVICE));
}

void put_str(weft_store *s, const char *id, const char *value)
{
    weft_txn *t = NULL;
    OK(weft_txn_begin(s, 0, &t));
    OK(weft_set_str(t, "notes", id, "title", value));
    OK(weft_txn_commit(&t));
}

/* 1 if notes/<id>.title holds the string @p value. */
int has_str(weft_store *s, const char *id, const char *value)
{
    weft_txn *t = NULL;
    OK(weft_txn_begin(s, WEFT_TXN_RDONLY, &t));
    weft_field f;
    int found = 0;
    size_t n = strlen(value);
    if (weft_get(t, "notes", id, "title", &f) == 0 && n < 32 && f.value.len == n + 1) {
        const uint8_t *b = f.value.ptr;
        found = b[0] == (0xa0 | n) && memcmp(b + 1, value, n) == 0;
    }
    weft_txn_abort(&t);
    return found;
}

int wait_str(weft_store *s, const char *id, const char *value, unsigned timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (has_str(s, id, value)) {
            return 1;
        }
        sleep_ms(5);
    }
    return has_str(s, id, value);
}

int peer_status(weft_sync *e, const char *name, weft_peer_status *out)
{
    weft_peer_status st[8];
    size_t n = 0;
    OK(weft_sync_status(e, st, 8, &n));
    for (size_t i = 0; i < n && i < 8; i++) {
        if (strcmp(st[i].name, name) == 0) {
            *out = st[i];
            return 1;
        }
    }
    return 0;
}

int wait_state(weft_sync *e, const char *name, weft_peer_state want, unsigned timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    weft_peer_status st;
    do {
        if (peer_status(e, name, &st) && st.state == want) {
            return 1;
        }
        sleep_ms(5);
    } while (now_ms() < end);
    return 0;
}
