/* crdt_int.h - values, operations, their canonical msgpack codec, and the
 * merge rules of field state, as pure functions (no I/O, no LMDB).
 *
 * Three parts:
 *   mp.c     a bounded msgpack reader that trusts nothing, value validation
 *            and canonicalisation, and canonical writers (hand-written: no
 *            msgpack-c here; its unpacker allocates before it checks, see
 *            STACK.md).
 *   op.c     the op payload: encode/decode, zero-copy.
 *   fstate.c the state of one field (register heads, counter summary, set
 *            elements) and the merge rules applying an op to it.
 *
 * Canonical msgpack (what every value, payload and state record is):
 *   - integers in the shortest form; non-negative ones as positive fixint or
 *     uint8/16/32/64, negative ones as negative fixint or int8/16/32/64;
 *   - floats always float64;
 *   - str (valid UTF-8) and bin with the shortest length header;
 *   - array/map with the shortest header; map keys sorted by their canonical
 *     encoded bytes (memcmp, shorter first on a common prefix), no duplicates;
 *   - no ext types; nesting at most WEFT_DEPTH_MAX.
 * weft__mp_check() accepts exactly the canonical encodings, so for any
 * accepted input, re-encoding what was decoded gives the same bytes.
 *
 * Invariants:
 *   1. No decoder reads past the end of its input or allocates more than a
 *      bound fixed by the schema caps before checking the input has the bytes.
 *   2. weft__op_decode(weft__op_encode(op)) == op and, for every input
 *      weft__op_decode accepts, weft__op_encode reproduces it byte for byte.
 *   3. Merge: applying a set of ops to a field state in any order that
 *      respects causality (every op after the ops it names in prev), with any
 *      batching, yields byte-identical encoded state (tests/crdt/test_laws.c).
 *      Applying a SET, ADD or REM still present again changes nothing; but an
 *      op that was superseded (a SET named in a later prev, an ADD removed)
 *      would come back if applied again, because field state keeps no record
 *      of it, and an INC would be counted twice (the state keeps only the
 *      sum of the increments, not their ids): the store must apply each op
 *      once, skipping ids already in its op log.
 *   4. A field state never holds an item whose id is <= the entity's
 *      tombstone: hidden items are dropped, so state depends only on the op set.
 *      Counter increments are not items of the state but rows the caller
 *      keeps sorted by id (the store's `counters` database); the state holds
 *      their sum, count and newest id. The rule holds for them through the
 *      caller, who removes the rows <= the tombstone and tells the state with
 *      weft__fstate_counter_sub (see "Counters" below).
 * Thread-safety: all functions are reentrant; objects are one thread at a time.
 */
#ifndef WEFT_CRDT_INT_H
#define WEFT_CRDT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "../clock/clock_int.h"
#include "../common/weft_int.h"

/* ================================================================ mp.c */

/** Check that buf[0..len) starts with one canonical msgpack object nested at
 * most @p max_depth deep; *used receives its length. WEFT_ECORRUPT (malformed,
 * truncated, non-canonical, invalid UTF-8, ext type) or WEFT_ELIMIT (too
 * deep). Never allocates. */
int weft__mp_check(const uint8_t *buf, size_t len, unsigned max_depth, size_t *used);

/** Validate application input (exactly one msgpack object filling buf[0..len),
 * any valid encoding, e.g. float32 or a long header) and append its canonical
 * form to @p out. WEFT_EINVAL (malformed: the message says where), WEFT_ELIMIT
 * (longer than WEFT_VALUE_MAX or deeper than WEFT_DEPTH_MAX), WEFT_ENOMEM.
 * Allocation is bounded by a small multiple of @p len. */
int weft__mp_canon(const uint8_t *buf, size_t len, weft__buf *out);

/* A cursor over trusted-or-not bytes. Readers return 0 or WEFT_ECORRUPT and
 * advance only on success. They accept only canonical headers. */
typedef struct weft__mp_reader {
    const uint8_t *p, *end;
} weft__mp_reader;

int weft__mp_read_array(weft__mp_reader *r, uint32_t *n);
int weft__mp_read_map(weft__mp_reader *r, uint32_t *n);
int weft__mp_read_uint(weft__mp_reader *r, uint64_t *v);
int weft__mp_read_int(weft__mp_reader *r, int64_t *v); /* any canonical int in int64 range */
int weft__mp_read_str(weft__mp_reader *r, const uint8_t **s, uint32_t *len); /* UTF-8 checked */
int weft__mp_read_bin(weft__mp_reader *r, const uint8_t **b, uint32_t *len);
/** Skip one canonical object (bounded depth), returning a view of its bytes. */
int weft__mp_read_value(weft__mp_reader *r, unsigned max_depth, weft_bytes *v);

/* Writers append canonical encodings to a weft__buf. 0 or WEFT_ENOMEM. */
int weft__mp_put_array(weft__buf *b, uint32_t n);
int weft__mp_put_map(weft__buf *b, uint32_t n);
int weft__mp_put_uint(weft__buf *b, uint64_t v);
int weft__mp_put_int(weft__buf *b, int64_t v);
int weft__mp_put_str(weft__buf *b, const void *s, size_t len);
int weft__mp_put_bin(weft__buf *b, const void *p, size_t len);
int weft__mp_put_nil(weft__buf *b);
int weft__mp_put_bool(weft__buf *b, bool v);
int weft__mp_put_f64(weft__buf *b, double v);

/** Valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)? */
bool weft__utf8_valid(const uint8_t *s, size_t len);

/* ================================================================ op.c */

typedef enum weft__op_kind {
    WEFT__OP_SET = 0,
    WEFT__OP_DEL = 1,
    WEFT__OP_INC = 2,
    WEFT__OP_ADD = 3,
    WEFT__OP_REM = 4,
} weft__op_kind;

/* A decoded payload. Every view points into the buffer it was decoded from
 * (or, when building a local op, into the caller's buffers). Names are UTF-8,
 * 1..WEFT_NAME_MAX bytes, never containing NUL; they are not NUL-terminated.
 * prev is nprev ids of WEFT__ID_BYTES each (weft__id_get), strictly
 * ascending. */
typedef struct weft__op {
    weft__op_kind kind;
    weft_bytes coll, entity, field; /* field empty for DEL */
    weft_bytes value;               /* SET: value; ADD/REM: element (canonical msgpack) */
    int64_t delta;                  /* INC */
    const uint8_t *prev;            /* SET: heads seen; REM: add ids removed */
    uint32_t nprev;                 /* <= WEFT_PREV_MAX */
} weft__op;

/* Payload layout (canonical msgpack array; ids are 16-byte big-endian
 * hlc|device, concatenated in one bin, ascending):
 *   SET [0, coll, entity, field, value, bin(prev ids)]
 *   DEL [1, coll, entity]
 *   INC [2, coll, entity, field, delta]
 *   ADD [3, coll, entity, field, element]
 *   REM [4, coll, entity, field, element, bin(add ids)]
 */

/** Append the canonical payload of @p op to @p out. The op must be valid
 * (WEFT_EINVAL otherwise: bad kind, bad name, unsorted prev, a value that is
 * not one canonical msgpack object; WEFT_ELIMIT for a name, value or prev
 * count over its limit). @p out is unchanged on failure. */
int weft__op_encode(const weft__op *op, weft__buf *out);

/** Decode a payload filling exactly buf[0..len). Zero-copy: *out points into
 * buf. WEFT_ECORRUPT (malformed, non-canonical, trailing bytes, a name with
 * NUL or bad UTF-8, prev not strictly ascending), WEFT_ELIMIT (over
 * WEFT_PAYLOAD_MAX, a name over WEFT_NAME_MAX, more than WEFT_PREV_MAX ids).
 * Never allocates. */
int weft__op_decode(const uint8_t *buf, size_t len, weft__op *out);

/** "set", "del", "inc", "add", "rem". */
const char *weft__op_kind_name(weft__op_kind k);

/** Check a name given by an app (NUL-terminated): 1..WEFT_NAME_MAX bytes of
 * valid UTF-8. WEFT_EINVAL / WEFT_ELIMIT with a message naming @p what. */
int weft__name_check(const char *name, const char *what, size_t *len);

/* ================================================================ fstate.c */

/* The state of one field: register heads, a counter summary and set
 * elements (a field normally uses one kind; if ops of several kinds hit the
 * same field all are kept and the one with the newest op is visible).
 *
 * Counters. The increments of a counter field are *rows* (id, delta) kept by
 * the caller outside the state, sorted by id (the store: the `counters`
 * database, key = field key | id); keeping them inside the record would make
 * every increment rewrite all earlier ones. The state holds only what the
 * readers and the merge rules need: the wrapped sum of the rows' deltas,
 * their number and the greatest row id (to pick the visible kind). The
 * rows are exactly the INCs applied with an id above the tombstone:
 *   - weft__fstate_apply(INC) returns 1 when the increment counts (its id is
 *     above the tombstone): the caller then stores the row (id, delta);
 *   - when the tombstone rises to T the caller removes its rows with id <= T,
 *     oldest first, calling weft__fstate_counter_sub for each.
 * So the summary is a function of the rows, and the rows of the op set.
 *
 * Views (weft_bytes, id arrays) point either into the stored record the
 * state was decoded from or into ops applied to it: the caller keeps those
 * alive until it has encoded the state. Arrays are owned by the state and
 * freed by weft__fstate_free. */
typedef struct weft__head {
    weft_id id;
    weft_bytes value;
} weft__head;

typedef struct weft__counter { /* summary of the counter rows (see above) */
    uint64_t sum;              /* sum of the rows' deltas, modulo 2^64 */
    uint64_t count;            /* number of rows; 0: no counter (sum 0, newest {0,0}) */
    weft_id newest;            /* greatest row id */
} weft__counter;

typedef struct weft__elem { /* one set element and the adds keeping it alive */
    weft_bytes value;
    weft_id *adds; /* ascending, nadds >= 1 */
    uint32_t nadds, cap;
} weft__elem;

typedef struct weft__fstate {
    weft__head *heads; /* ascending id */
    uint32_t nheads, heads_cap;
    weft__counter ctr;
    weft__elem *elems; /* ascending by value bytes (memcmp, shorter first) */
    uint32_t nelems, elems_cap;
} weft__fstate;

/** An empty state. */
void weft__fstate_init(weft__fstate *st);
void weft__fstate_free(weft__fstate *st);

/** Decode a stored record (canonical, trusted no more than the network).
 * Replaces *st's contents. WEFT_ECORRUPT, WEFT_ELIMIT, WEFT_ENOMEM. */
int weft__fstate_decode(const uint8_t *buf, size_t len, weft__fstate *st);

/** Append the canonical record of @p st to @p out. An empty state encodes
 * to nothing at all (len unchanged): the store then deletes the record. */
int weft__fstate_encode(const weft__fstate *st, weft__buf *out);

/** True when the state holds nothing. */
bool weft__fstate_empty(const weft__fstate *st);

/** Merge one op (SET, INC, ADD or REM) with id @p id into the state, for an
 * entity whose tombstone is @p tomb ({0,0} if never deleted):
 *   SET: heads := heads minus the ids in op->prev, plus (id, value).
 *   INC: weft__fstate_counter_add(id, delta); the caller stores the row.
 *   ADD: the element's adds += id (the element is created if new).
 *   REM: the element's adds minus op->prev; an element with no add left goes.
 * An op whose id is <= tomb changes nothing (it is hidden); a SET, ADD or REM
 * already present changes nothing. An INC cannot be recognised as present
 * (its id is only in the caller's rows): the caller must not apply it twice.
 * Returns 1 if the state changed (for INC: the row must be stored), 0 if
 * not, or WEFT_ENOMEM / WEFT_EINVAL (DEL or bad op). */
int weft__fstate_apply(weft__fstate *st, weft_id id, const weft__op *op, weft_id tomb);

/** Drop every register head and set add whose id is <= @p tomb (a delete
 * arrived). The counter summary is left alone: its rows are the caller's,
 * who removes those <= @p tomb with weft__fstate_counter_sub. Returns 1 if
 * anything was dropped. */
int weft__fstate_prune(weft__fstate *st, weft_id tomb);

/** Count one more counter row (id, delta): sum += delta (mod 2^64),
 * count += 1, newest = max(newest, id). What weft__fstate_apply does for an
 * INC above the tombstone. Never fails. */
void weft__fstate_counter_add(weft__fstate *st, weft_id id, int64_t delta);

/** One counter row of @p delta was removed: sum -= delta, count -= 1.
 * Rows must be removed oldest first (a prune takes those <= the tombstone),
 * so newest stays unless no row is left, when the summary becomes empty.
 * WEFT_ECORRUPT if the summary disagrees with the rows (no row counted, or
 * a non-zero sum left with the last row), the state unchanged. */
int weft__fstate_counter_sub(weft__fstate *st, int64_t delta);

/** What a reader sees. */
typedef struct weft__visible {
    weft_kind kind;   /* 0 when the state is empty */
    weft_bytes value; /* register: newest head's value (a view); others: in scratch */
    weft_id id;       /* newest op behind the value */
    uint32_t heads;   /* register heads (>1: conflict); 0 for other kinds */
} weft__visible;

/** The visible value: the kind whose newest item is newest; its value is the
 * newest head (register), the sum as a canonical int (counter, wrapping
 * modulo 2^64, from the summary: no row is read), or the canonical array of
 * elements in element order (set), the last two appended to @p scratch (value points into it: do
 * not grow scratch before using it). WEFT_ENOMEM. */
int weft__fstate_visible(const weft__fstate *st, weft__buf *scratch, weft__visible *out);

/** True when the register has more than one head. */
static inline bool weft__fstate_conflict(const weft__fstate *st)
{
    return st->nheads > 1;
}

#endif /* WEFT_CRDT_INT_H */
