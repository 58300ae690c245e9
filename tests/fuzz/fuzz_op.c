/* fuzz_op.c - fuzz target for the op payload decoder (crdt/op.c).
 *
 * Properties checked for every input:
 *   1. weft__op_decode never crashes, never reads outside the input and
 *      never allocates (ASan sees every byte read; the input buffer is
 *      exactly the input's size).
 *   2. Canonical round trip (crdt_int.h invariant 2): an accepted payload
 *      re-encodes with weft__op_encode to the same bytes.
 *   3. An accepted SET/INC/ADD/REM merges into an empty field state
 *      (weft__fstate_apply), and that state encodes, decodes and re-encodes
 *      to the same record, and its visible value is one canonical msgpack
 *      object: a payload the network delivers cannot make the store write
 *      a record it would later refuse to read.
 *
 * Invariants: none beyond fuzz.h's.
 * Thread-safety: called from one thread (libFuzzer or replay.c).
 */
#include <string.h>

#include "crdt/crdt_int.h"
#include "fuzz.h"

/* Encode @p st, decode the record, re-encode it: same bytes; and its visible
 * value is one canonical msgpack object. */
static void check_record(const weft__fstate *st)
{
    weft__fstate back;
    weft__fstate_init(&back);
    weft__buf rec = {0}, again = {0}, scratch = {0};
    if (weft__fstate_encode(st, &rec) == 0) {
        FUZZ_CHECK((rec.len == 0) == weft__fstate_empty(st));
        FUZZ_CHECK(weft__fstate_decode(rec.ptr, rec.len, &back) == 0);
        FUZZ_CHECK(weft__fstate_encode(&back, &again) == 0);
        FUZZ_CHECK(again.len == rec.len &&
                   (rec.len == 0 || memcmp(again.ptr, rec.ptr, rec.len) == 0));
        weft__visible vis;
        if (rec.len > 0 && weft__fstate_visible(&back, &scratch, &vis) == 0) {
            size_t used = 0;
            FUZZ_CHECK(vis.kind != 0);
            FUZZ_CHECK(weft__mp_check(vis.value.ptr, vis.value.len, WEFT_DEPTH_MAX + 1, &used) ==
                       0);
            FUZZ_CHECK(used == vis.value.len);
        }
    }
    weft__buf_free(&rec);
    weft__buf_free(&again);
    weft__buf_free(&scratch);
    weft__fstate_free(&back);
}

/* Merge @p op into an empty state and check the record. A REM is preceded
 * by the ADD it names first (so it has something to remove) and must then
 * leave the state without that add. */
static void check_merge(const weft__op *op)
{
    weft__fstate st;
    weft__fstate_init(&st);
    weft_id tomb = {0, 0};
    weft_id id = {UINT64_MAX, UINT64_MAX}; /* after every id a payload can name */
    int rc;
    if (op->kind == WEFT__OP_REM && op->nprev > 0) {
        weft_id add_id = weft__id_get(op->prev);
        weft__op add = *op;
        add.kind = WEFT__OP_ADD;
        add.prev = NULL;
        add.nprev = 0;
        rc = weft__fstate_apply(&st, add_id, &add, tomb);
        FUZZ_CHECK(rc == (weft_id_cmp(add_id, tomb) > 0 ? 1 : 0) || rc == WEFT_ENOMEM);
        if (rc == 1) {
            FUZZ_CHECK(weft__fstate_apply(&st, id, op, tomb) == 1);
            FUZZ_CHECK(weft__fstate_empty(&st));
        }
    } else {
        rc = weft__fstate_apply(&st, id, op, tomb);
        FUZZ_CHECK(rc == (op->kind == WEFT__OP_REM ? 0 : 1) || rc == WEFT_ENOMEM);
    }
    check_record(&st);
    weft__fstate_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    weft__op op;
    if (weft__op_decode(data, size, &op) != 0) {
        return 0;
    }
    FUZZ_CHECK((unsigned)op.kind <= WEFT__OP_REM);
    weft__buf out = {0};
    int rc = weft__op_encode(&op, &out);
    FUZZ_CHECK(rc == 0 || rc == WEFT_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(out.len == size && memcmp(out.ptr, data, size) == 0);
    }
    weft__buf_free(&out);
    if (op.kind != WEFT__OP_DEL) {
        check_merge(&op);
    }
    return 0;
}
