/* fuzz_fstate.c - fuzz target for the field-state record decoder
 * (crdt/fstate.c), what the store reads back from LMDB for every field.
 *
 * Properties checked for every input:
 *   1. weft__fstate_decode never crashes or reads outside the input, and a
 *      rejected input leaves the state empty.
 *   2. Canonical round trip (fstate.c invariant 2): an accepted record
 *      re-encodes with weft__fstate_encode to the same bytes (the empty
 *      input is the empty state, which encodes to nothing).
 *   3. weft__fstate_visible does not crash, and for a non-empty state gives
 *      one canonical msgpack object (register head, counter sum or set).
 *   4. Pruning at a tombstone taken from the record (the middle head, else
 *      the middle element's first add, else the counter's newest id) keeps
 *      the state encodable and its record round-trips; nothing at or below
 *      the tombstone survives.
 * The state is decoded into a state reused across inputs (as the store
 * reuses one), so decoding over warm arrays is exercised too.
 *
 * Invariants: none beyond fuzz.h's (the reused state is cleared by every
 * decode, so verdicts do not depend on input order).
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <string.h>

#include "crdt/crdt_int.h"
#include "fuzz.h"

static weft__fstate warm; /* reused across inputs, as the store reuses states */
static int warm_ready;

static void check_visible(const weft__fstate *st)
{
    weft__buf scratch = {0};
    weft__visible vis;
    if (weft__fstate_visible(st, &scratch, &vis) == 0) {
        FUZZ_CHECK((vis.kind == 0) == weft__fstate_empty(st));
        if (vis.kind != 0) {
            size_t used = 0;
            FUZZ_CHECK(weft__mp_check(vis.value.ptr, vis.value.len, WEFT_DEPTH_MAX + 1, &used) ==
                       0);
            FUZZ_CHECK(used == vis.value.len);
        }
        FUZZ_CHECK(vis.heads == (vis.kind == WEFT_KIND_REGISTER ? st->nheads : 0));
    }
    weft__buf_free(&scratch);
}

/* Encode, decode into a fresh state, re-encode: same bytes. */
static void check_round_trip(const weft__fstate *st)
{
    weft__buf rec = {0}, again = {0};
    weft__fstate back;
    weft__fstate_init(&back);
    if (weft__fstate_encode(st, &rec) == 0) {
        FUZZ_CHECK((rec.len == 0) == weft__fstate_empty(st));
        FUZZ_CHECK(weft__fstate_decode(rec.ptr, rec.len, &back) == 0);
        FUZZ_CHECK(weft__fstate_encode(&back, &again) == 0);
        FUZZ_CHECK(again.len == rec.len &&
                   (rec.len == 0 || memcmp(again.ptr, rec.ptr, rec.len) == 0));
    }
    weft__buf_free(&rec);
    weft__buf_free(&again);
    weft__fstate_free(&back);
}

static void check_prune(weft__fstate *st)
{
    weft_id tomb;
    if (st->nheads > 0) {
        tomb = st->heads[st->nheads / 2].id;
    } else if (st->nelems > 0) {
        tomb = st->elems[st->nelems / 2].adds[0];
    } else if (st->ctr.count > 0) {
        tomb = st->ctr.newest;
    } else {
        return;
    }
    int rc = weft__fstate_prune(st, tomb);
    FUZZ_CHECK(rc == 0 || rc == 1);
    for (uint32_t i = 0; i < st->nheads; i++) {
        FUZZ_CHECK(weft_id_cmp(st->heads[i].id, tomb) > 0);
    }
    for (uint32_t i = 0; i < st->nelems; i++) {
        FUZZ_CHECK(st->elems[i].nadds >= 1);
        for (uint32_t j = 0; j < st->elems[i].nadds; j++) {
            FUZZ_CHECK(weft_id_cmp(st->elems[i].adds[j], tomb) > 0);
        }
    }
    check_round_trip(st);
    check_visible(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!warm_ready) {
        weft__fstate_init(&warm);
        warm_ready = 1;
    }
    int rc = weft__fstate_decode(data, size, &warm);
    if (rc != 0) {
        FUZZ_CHECK(rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT || rc == WEFT_ENOMEM);
        FUZZ_CHECK(weft__fstate_empty(&warm));
        return 0;
    }
    weft__buf out = {0};
    rc = weft__fstate_encode(&warm, &out);
    FUZZ_CHECK(rc == 0 || rc == WEFT_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(out.len == size && (size == 0 || memcmp(out.ptr, data, size) == 0));
    }
    weft__buf_free(&out);
    check_visible(&warm);
    check_prune(&warm);
    return 0;
}
