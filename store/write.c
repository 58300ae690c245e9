/* write.c - local writes: weft_set and friends build an op, stamp it with the
 * store's clock and apply it through weft__store_apply_op, the same path
 * remote ops take.
 *
 * Each call: validate the names (weft__name_check) and canonicalise the
 * value (weft__mp_canon), read the field state for prev (SET: every current
 * head; REM: the element's adds), tick the clock, encode the payload,
 * journal it, apply it. Validation errors (WEFT_EINVAL, WEFT_ELIMIT,
 * WEFT_ENOTFOUND from weft_rem/weft_resolve) happen before anything is
 * written and leave the txn usable; so does an ENOMEM raised before the
 * first put. A failure after a put poisons the txn (WEFT_ETXN thereafter).
 *
 * Invariants:
 *   1. A local op's id is greater than every id in the store (the clock was
 *      floored with the vv's greatest hlc at begin and observes every applied
 *      op), so it is appended to `ops`.
 *   2. A local op is journaled before it is applied: a map growth replays it.
 * Thread-safety: one thread at a time per txn.
 */
#include "../common/killpoint.h"
#include "store_int.h"

typedef struct local_args {
    weft__op_kind kind;
    const char *coll, *id, *field;
    const void *value;
    size_t len;
    int64_t delta;
    bool resolve;
} local_args;

static int set_prev_from_heads(weft_txn *t)
{
    if (t->fs.nheads > WEFT_PREV_MAX) {
        return weft__err(WEFT_ELIMIT, "field has %u heads, an op may name at most %u", t->fs.nheads,
                         WEFT_PREV_MAX);
    }
    weft__buf_reset(&t->prev);
    int rc = weft__buf_reserve(&t->prev, (size_t)t->fs.nheads * WEFT__ID_BYTES);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < t->fs.nheads; i++) {
        weft__id_put(t->prev.ptr + t->prev.len, t->fs.heads[i].id);
        t->prev.len += WEFT__ID_BYTES;
    }
    return 0;
}

static int set_prev_from_elem(weft_txn *t, const char *field)
{
    const weft__elem *e = NULL;
    for (uint32_t i = 0; i < t->fs.nelems; i++) {
        const weft__elem *c = &t->fs.elems[i];
        if (c->value.len == t->canon.len && memcmp(c->value.ptr, t->canon.ptr, c->value.len) == 0) {
            e = c;
            break;
        }
    }
    if (e == NULL) {
        return weft__err(WEFT_ENOTFOUND, "element is not in set field \"%s\"", field);
    }
    if (e->nadds > WEFT_PREV_MAX) {
        return weft__err(WEFT_ELIMIT, "element has %u adds, an op may name at most %u", e->nadds,
                         WEFT_PREV_MAX);
    }
    weft__buf_reset(&t->prev);
    int rc = weft__buf_reserve(&t->prev, (size_t)e->nadds * WEFT__ID_BYTES);
    if (rc != 0) {
        return rc;
    }
    for (uint32_t i = 0; i < e->nadds; i++) {
        weft__id_put(t->prev.ptr + t->prev.len, e->adds[i]);
        t->prev.len += WEFT__ID_BYTES;
    }
    return 0;
}

static int write_op(weft_txn *t, const local_args *a, weft_id *out_id);

/* The fields cursor opened here serves both the prev lookup and the apply:
 * a SET or REM searches `fields` once (weft__store_apply_op reuses the
 * loaded state, t->fs_ready). */
static int local_write(weft_txn *t, const local_args *a, weft_id *out_id)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    if ((rc = weft__store_fcur_open(t)) != 0) {
        return rc;
    }
    rc = write_op(t, a, out_id);
    weft__store_fcur_close(t); /* NULL already if a map growth replaced the txn */
    return rc;
}

static int write_op(weft_txn *t, const local_args *a, weft_id *out_id)
{
    int rc;
    size_t cl, el, fl = 0;
    if ((rc = weft__name_check(a->coll, "collection", &cl)) != 0 ||
        (rc = weft__name_check(a->id, "entity id", &el)) != 0 ||
        (a->kind != WEFT__OP_DEL && (rc = weft__name_check(a->field, "field", &fl)) != 0)) {
        return rc;
    }
    weft__op op;
    memset(&op, 0, sizeof op);
    op.kind = a->kind;
    op.coll = (weft_bytes){a->coll, cl};
    op.entity = (weft_bytes){a->id, el};
    op.field = (weft_bytes){a->kind == WEFT__OP_DEL ? "" : a->field, fl};
    op.delta = a->delta;
    if (a->kind == WEFT__OP_SET || a->kind == WEFT__OP_ADD || a->kind == WEFT__OP_REM) {
        if (a->value == NULL) {
            return weft__err(WEFT_EINVAL, "value of field \"%s\" is NULL", a->field);
        }
        weft__buf_reset(&t->canon);
        if ((rc = weft__mp_canon(a->value, a->len, &t->canon)) != 0) {
            return rc;
        }
        op.value = (weft_bytes){t->canon.ptr, t->canon.len};
    }
    if (a->kind == WEFT__OP_SET || a->kind == WEFT__OP_REM) {
        bool found;
        if ((rc = weft__store_key(&t->key, op.coll, op.entity, op.field)) != 0 ||
            (rc = weft__store_fstate_load(t, &t->key, &found)) != 0) {
            return rc;
        }
        if (a->resolve && t->fs.nheads < 2) {
            return weft__err(WEFT_ENOTFOUND, "field \"%s\" of %s/%s is not in conflict", a->field,
                             a->coll, a->id);
        }
        rc = a->kind == WEFT__OP_SET ? set_prev_from_heads(t) : set_prev_from_elem(t, a->field);
        if (rc != 0) {
            return rc;
        }
        op.prev = t->prev.ptr;
        op.nprev = (uint32_t)(t->prev.len / WEFT__ID_BYTES);
    }
    weft_id id = {0, t->s->device};
    if ((rc = weft__hlc_tick(&t->s->clock, &id.hlc)) != 0) {
        return rc;
    }
    weft__buf_reset(&t->payload);
    if ((rc = weft__op_encode(&op, &t->payload)) != 0) {
        return rc;
    }
    WEFT__KILLPOINT(WEFT__KP_OP_STAMPED);
    size_t jlen = t->journal.len;
    if ((rc = weft__store_journal_op(t, id, t->payload.ptr, t->payload.len, true)) != 0) {
        return rc;
    }
    rc = weft__store_apply_op(t, id, t->payload.ptr, t->payload.len, &op, true);
    if (rc == WEFT__EMAPFULL) {
        weft__store_fcur_close(t);  /* before its MDB txn goes */
        rc = weft__store_regrow(t); /* replays this op as well */
    } else if (rc != 0) {
        t->journal.len = jlen;
        if (t->wrote) {
            t->poisoned = true;
        }
    }
    if (rc == 0 && out_id != NULL) {
        *out_id = id;
    }
    return rc;
}

int weft_set(weft_txn *t, const char *coll, const char *id, const char *field, const void *msgpack,
             size_t len, weft_id *out_id)
{
    local_args a = {WEFT__OP_SET, coll, id, field, msgpack, len, 0, false};
    return local_write(t, &a, out_id);
}

int weft_resolve(weft_txn *t, const char *coll, const char *id, const char *field,
                 const void *msgpack, size_t len, weft_id *out_id)
{
    local_args a = {WEFT__OP_SET, coll, id, field, msgpack, len, 0, true};
    return local_write(t, &a, out_id);
}

int weft_del(weft_txn *t, const char *coll, const char *id, weft_id *out_id)
{
    local_args a = {WEFT__OP_DEL, coll, id, NULL, NULL, 0, 0, false};
    return local_write(t, &a, out_id);
}

int weft_inc(weft_txn *t, const char *coll, const char *id, const char *field, int64_t n,
             weft_id *out_id)
{
    local_args a = {WEFT__OP_INC, coll, id, field, NULL, 0, n, false};
    return local_write(t, &a, out_id);
}

int weft_add(weft_txn *t, const char *coll, const char *id, const char *field, const void *msgpack,
             size_t len, weft_id *out_id)
{
    local_args a = {WEFT__OP_ADD, coll, id, field, msgpack, len, 0, false};
    return local_write(t, &a, out_id);
}

int weft_rem(weft_txn *t, const char *coll, const char *id, const char *field, const void *msgpack,
             size_t len, weft_id *out_id)
{
    local_args a = {WEFT__OP_REM, coll, id, field, msgpack, len, 0, false};
    return local_write(t, &a, out_id);
}

/* ---- typed setters: pack, then weft_set ---- */

static int set_packed(weft_txn *t, const char *coll, const char *id, const char *field, int rc)
{
    if (rc != 0) {
        return rc;
    }
    /* t->scratch is not used by weft_set (it canonicalises into t->canon). */
    return weft_set(t, coll, id, field, t->scratch.ptr, t->scratch.len, NULL);
}

int weft_set_str(weft_txn *t, const char *coll, const char *id, const char *field,
                 const char *value)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    if (value == NULL) {
        return weft__err(WEFT_EINVAL, "string value of field \"%s\" is NULL",
                         field ? field : "(null)");
    }
    size_t n = strlen(value);
    if (!weft__utf8_valid((const uint8_t *)value, n)) {
        return weft__err(WEFT_EINVAL, "string value of field \"%s\" is not valid UTF-8",
                         field ? field : "(null)");
    }
    weft__buf_reset(&t->scratch);
    return set_packed(t, coll, id, field, weft__mp_put_str(&t->scratch, value, n));
}

int weft_set_int(weft_txn *t, const char *coll, const char *id, const char *field, int64_t value)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    weft__buf_reset(&t->scratch);
    return set_packed(t, coll, id, field, weft__mp_put_int(&t->scratch, value));
}

int weft_set_f64(weft_txn *t, const char *coll, const char *id, const char *field, double value)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    weft__buf_reset(&t->scratch);
    return set_packed(t, coll, id, field, weft__mp_put_f64(&t->scratch, value));
}

int weft_set_bool(weft_txn *t, const char *coll, const char *id, const char *field, int value)
{
    int rc = weft__store_usable(t, true);
    if (rc != 0) {
        return rc;
    }
    weft__buf_reset(&t->scratch);
    return set_packed(t, coll, id, field, weft__mp_put_bool(&t->scratch, value != 0));
}
