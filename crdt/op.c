/* op.c - the op payload: canonical encode, zero-copy decode, name checks.
 *
 * A payload is the body of an op (its id travels beside it, in the routing
 * header), a canonical msgpack array whose first element is the kind:
 *
 *   SET [0, coll, entity, field, value,   bin(prev ids)]   6 elements
 *   DEL [1, coll, entity]                                  3 elements
 *   INC [2, coll, entity, field, delta]                    5 elements
 *   ADD [3, coll, entity, field, element]                  5 elements
 *   REM [4, coll, entity, field, element, bin(add ids)]    6 elements
 *
 * coll, entity, field: str, 1..WEFT_NAME_MAX bytes of UTF-8 without NUL.
 * value, element: one canonical msgpack object, nesting <= WEFT_DEPTH_MAX,
 * at most WEFT_VALUE_MAX bytes. delta: a canonical int in int64 range.
 * prev ids: one bin of 16 * n bytes (n <= WEFT_PREV_MAX), each id big-endian
 * hlc (8) then device (8), strictly ascending; no ids is bin8 of length 0
 * (c4 00). Example: SET of 1 to "n"/"e"/"f" with no prev is
 *   96 00 a1 6e a1 65 a1 66 01 c4 00
 *
 * Invariants:
 *   1. weft__op_decode accepts only payloads weft__op_encode produces: for
 *      every accepted input, encoding the decoded op gives the same bytes.
 *   2. weft__op_decode never allocates and never reads outside buf[0..len).
 *   3. weft__op_encode leaves @p out unchanged when it fails. Like the
 *      decoder it reports a size over a limit (name, value, prev count) as
 *      WEFT_ELIMIT and anything malformed as WEFT_EINVAL.
 * Thread-safety: all functions are reentrant.
 */
#include "crdt_int.h"

/* Elements in the payload array of each kind. */
static const uint8_t nelems[] = {6, 3, 5, 5, 6};

const char *weft__op_kind_name(weft__op_kind k)
{
    switch (k) {
    case WEFT__OP_SET:
        return "set";
    case WEFT__OP_DEL:
        return "del";
    case WEFT__OP_INC:
        return "inc";
    case WEFT__OP_ADD:
        return "add";
    case WEFT__OP_REM:
        return "rem";
    }
    return "?";
}

/* A name view: 1..WEFT_NAME_MAX bytes, UTF-8, no NUL. @p bad is the code for
 * malformed names (EINVAL for callers, ECORRUPT for payloads). @p utf8_known:
 * the bytes were already validated as UTF-8 (weft__mp_read_str does). */
static int name_check(const uint8_t *s, size_t len, const char *what, int bad, bool utf8_known)
{
    if (len == 0) {
        return weft__err(bad, "%s name is empty", what);
    }
    if (len > WEFT_NAME_MAX) {
        return weft__err(WEFT_ELIMIT, "%s name is %zu bytes, the limit is %u", what, len,
                         WEFT_NAME_MAX);
    }
    if (memchr(s, 0, len) != NULL) {
        return weft__err(bad, "%s name contains a NUL byte", what);
    }
    if (!utf8_known && !weft__utf8_valid(s, len)) {
        return weft__err(bad, "%s name is not valid UTF-8", what);
    }
    return 0;
}

static int name_ok(const uint8_t *s, size_t len, const char *what, int bad)
{
    return name_check(s, len, what, bad, false);
}

int weft__name_check(const char *name, const char *what, size_t *len)
{
    if (name == NULL) {
        return weft__err(WEFT_EINVAL, "%s name is NULL", what);
    }
    /* The contract is a NUL-terminated string, so strlen is safe; it also
     * makes the limit message report the real length. */
    size_t n = strlen(name);
    int rc = name_ok((const uint8_t *)name, n, what, WEFT_EINVAL);
    if (rc == 0 && len != NULL) {
        *len = n;
    }
    return rc;
}

/* prev: n ids, strictly ascending. */
static int prev_ok(const uint8_t *prev, uint32_t n, int bad)
{
    if (n > WEFT_PREV_MAX) {
        return weft__err(WEFT_ELIMIT, "op names %u ids, the limit is %u", n, WEFT_PREV_MAX);
    }
    for (uint32_t i = 1; i < n; i++) {
        if (memcmp(prev + (i - 1) * WEFT__ID_BYTES, prev + i * WEFT__ID_BYTES, WEFT__ID_BYTES) >=
            0) {
            return weft__err(bad, "op prev ids are not strictly ascending (at id %u)", i);
        }
    }
    return 0;
}

static bool has_prev(weft__op_kind k)
{
    return k == WEFT__OP_SET || k == WEFT__OP_REM;
}

static bool has_value(weft__op_kind k)
{
    return k == WEFT__OP_SET || k == WEFT__OP_ADD || k == WEFT__OP_REM;
}

int weft__op_encode(const weft__op *op, weft__buf *out)
{
    if ((unsigned)op->kind > WEFT__OP_REM) {
        return weft__err(WEFT_EINVAL, "op kind %d is unknown", (int)op->kind);
    }
    weft__op_kind k = op->kind;
    int rc = name_ok(op->coll.ptr, op->coll.len, "collection", WEFT_EINVAL);
    if (rc == 0) {
        rc = name_ok(op->entity.ptr, op->entity.len, "entity", WEFT_EINVAL);
    }
    if (rc == 0 && k != WEFT__OP_DEL) {
        rc = name_ok(op->field.ptr, op->field.len, "field", WEFT_EINVAL);
    }
    if (rc != 0) {
        return rc;
    }
    if (k == WEFT__OP_DEL && op->field.len != 0) {
        return weft__err(WEFT_EINVAL, "a del op has no field");
    }
    if (has_value(k)) {
        size_t used = 0;
        if (op->value.len > WEFT_VALUE_MAX) {
            return weft__err(WEFT_ELIMIT, "value of %zu bytes, the limit is %u", op->value.len,
                             WEFT_VALUE_MAX);
        }
        if (op->value.len == 0 ||
            weft__mp_check(op->value.ptr, op->value.len, WEFT_DEPTH_MAX, &used) != 0 ||
            used != op->value.len) {
            return weft__err(WEFT_EINVAL, "%s op value is not one canonical msgpack object",
                             weft__op_kind_name(k));
        }
    }
    if (has_prev(k)) {
        rc = prev_ok(op->prev, op->nprev, WEFT_EINVAL);
        if (rc != 0) {
            return rc;
        }
    } else if (op->nprev != 0) {
        return weft__err(WEFT_EINVAL, "%s op cannot name prev ids", weft__op_kind_name(k));
    }

    size_t start = out->len;
    rc = weft__buf_reserve(out, 16 + 3 * (5 + WEFT_NAME_MAX) + op->value.len +
                                    (size_t)op->nprev * WEFT__ID_BYTES);
    if (rc != 0) {
        return rc;
    }
    /* Cannot fail now: everything fits in the reservation. */
    (void)weft__mp_put_array(out, nelems[k]);
    (void)weft__mp_put_uint(out, (uint64_t)k);
    (void)weft__mp_put_str(out, op->coll.ptr, op->coll.len);
    (void)weft__mp_put_str(out, op->entity.ptr, op->entity.len);
    if (k != WEFT__OP_DEL) {
        (void)weft__mp_put_str(out, op->field.ptr, op->field.len);
    }
    if (k == WEFT__OP_INC) {
        (void)weft__mp_put_int(out, op->delta);
    }
    if (has_value(k)) {
        (void)weft__buf_put(out, op->value.ptr, op->value.len);
    }
    if (has_prev(k)) {
        (void)weft__mp_put_bin(out, op->prev, (size_t)op->nprev * WEFT__ID_BYTES);
    }
    if (out->len - start > WEFT_PAYLOAD_MAX) {
        out->len = start;
        return weft__err(WEFT_ELIMIT, "payload over %u bytes", WEFT_PAYLOAD_MAX);
    }
    return 0;
}

static int read_name(weft__mp_reader *r, weft_bytes *v, const char *what)
{
    const uint8_t *s;
    uint32_t n;
    int rc = weft__mp_read_str(r, &s, &n);
    if (rc == 0) { /* mp_read_str refused invalid UTF-8: not checked twice */
        rc = name_check(s, n, what, WEFT_ECORRUPT, true);
    }
    if (rc == 0) {
        v->ptr = s;
        v->len = n;
    }
    return rc;
}

static int read_elem_value(weft__mp_reader *r, weft_bytes *v)
{
    int rc = weft__mp_read_value(r, WEFT_DEPTH_MAX, v);
    if (rc == 0 && v->len > WEFT_VALUE_MAX) {
        rc = weft__err(WEFT_ELIMIT, "op value of %zu bytes, the limit is %u", v->len,
                       WEFT_VALUE_MAX);
    }
    return rc;
}

int weft__op_decode(const uint8_t *buf, size_t len, weft__op *out)
{
    if (len > WEFT_PAYLOAD_MAX) {
        return weft__err(WEFT_ELIMIT, "op payload of %zu bytes, the limit is %u", len,
                         WEFT_PAYLOAD_MAX);
    }
    weft__mp_reader r = {buf, buf + len};
    weft__op op;
    memset(&op, 0, sizeof op);
    uint32_t n;
    uint64_t kind;
    int rc = weft__mp_read_array(&r, &n);
    if (rc == 0) {
        rc = weft__mp_read_uint(&r, &kind);
    }
    if (rc != 0) {
        return rc;
    }
    if (kind > WEFT__OP_REM || n != nelems[kind]) {
        return weft__err(WEFT_ECORRUPT, "op payload: kind %llu with %u elements",
                         (unsigned long long)kind, n);
    }
    op.kind = (weft__op_kind)kind;
    rc = read_name(&r, &op.coll, "collection");
    if (rc == 0) {
        rc = read_name(&r, &op.entity, "entity");
    }
    if (rc == 0 && op.kind != WEFT__OP_DEL) {
        rc = read_name(&r, &op.field, "field");
    }
    if (rc == 0 && op.kind == WEFT__OP_INC) {
        rc = weft__mp_read_int(&r, &op.delta);
    }
    if (rc == 0 && has_value(op.kind)) {
        rc = read_elem_value(&r, &op.value);
    }
    if (rc == 0 && has_prev(op.kind)) {
        const uint8_t *p;
        uint32_t plen;
        rc = weft__mp_read_bin(&r, &p, &plen);
        if (rc == 0 && plen % WEFT__ID_BYTES != 0) {
            rc = weft__err(WEFT_ECORRUPT, "op prev is %u bytes, not a multiple of %u", plen,
                           WEFT__ID_BYTES);
        }
        if (rc == 0) {
            op.prev = p;
            op.nprev = plen / WEFT__ID_BYTES;
            rc = prev_ok(op.prev, op.nprev, WEFT_ECORRUPT);
        }
    }
    if (rc == 0 && r.p != r.end) {
        rc = weft__err(WEFT_ECORRUPT, "op payload has %zu trailing bytes", (size_t)(r.end - r.p));
    }
    if (rc == 0) {
        *out = op;
    }
    return rc;
}
