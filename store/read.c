/* read.c - reads of the materialised state: one field, one entity, a
 * collection scan, the conflict list, the version vector (derived from
 * the last op of each device's run in ops in a read txn, the write txn's
 * cache otherwise).
 *
 * Keys are "coll\0entity\0field\0": every name in a key is already
 * NUL-terminated, so the names handed to callbacks point straight into the
 * key bytes. A scan is one cursor pass over the "coll\0" prefix decoding
 * each record once into the txn's reusable field state; nothing is
 * allocated per field once the txn's buffers have grown.
 *
 * Lifetimes: what callbacks receive is borrowed for the call. What
 * weft_get() returns lives until the txn ends: in a read txn it points into
 * the map (stable for the txn's life); in a write txn later writes may move
 * map data, so it is copied into the txn's arena.
 *
 * Invariants:
 *   1. A field record present in `fields` is never empty: the state a
 *      reader decodes always has a visible value.
 *   2. Reads never write and never poison a txn.
 * Thread-safety: one thread at a time per txn.
 */
#include "store_int.h"

const void *weft__store_view(weft_txn *t, const void *p, size_t len)
{
    if (t->rdonly) {
        return p;
    }
    return weft__arena_dup(&t->arena, p, len);
}

/* Split a fields/conflicts key into its NUL-terminated names. */
static int key_split(const MDB_val *k, const char **coll, const char **entity, const char **field)
{
    const char *p = k->mv_data, *end = p + k->mv_size;
    const char *parts[3];
    for (int i = 0; i < 3; i++) {
        const char *z = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
        if (z == NULL || z == p) {
            return weft__err(WEFT_ECORRUPT, "damaged field key (%zu bytes)", k->mv_size);
        }
        parts[i] = p;
        p = z + 1;
    }
    if (p != end) {
        return weft__err(WEFT_ECORRUPT, "damaged field key (%zu bytes)", k->mv_size);
    }
    *coll = parts[0];
    *entity = parts[1];
    *field = parts[2];
    return 0;
}

/* Decode the record @p v into t->fs and fill @p f (views into the record and
 * t->scratch). */
static int field_fill(weft_txn *t, const MDB_val *v, weft_field *f)
{
    int rc = weft__store_rec_decode(v->mv_data, v->mv_size, &t->fs);
    if (rc != 0) {
        return rc == WEFT_ENOMEM ? rc : weft__err(WEFT_ECORRUPT, "damaged field state");
    }
    weft__buf_reset(&t->scratch);
    weft__visible vis;
    if ((rc = weft__fstate_visible(&t->fs, &t->scratch, &vis)) != 0) {
        return rc;
    }
    if (vis.kind == 0) {
        return weft__err(WEFT_ECORRUPT, "empty field state stored");
    }
    if (vis.kind == WEFT_KIND_REGISTER &&
        (rc = weft__store_head_value(t, &t->fs.heads[t->fs.nheads - 1], &vis.value)) != 0) {
        return rc;
    }
    f->kind = vis.kind;
    f->value = vis.value;
    f->id = vis.id;
    f->heads = vis.heads;
    return 0;
}

static int names_check(const char *coll, const char *id, const char *field, size_t *cl, size_t *el,
                       size_t *fl)
{
    int rc;
    if ((rc = weft__name_check(coll, "collection", cl)) != 0 ||
        (id != NULL && (rc = weft__name_check(id, "entity id", el)) != 0) ||
        (field != NULL && (rc = weft__name_check(field, "field", fl)) != 0)) {
        return rc;
    }
    return 0;
}

int weft_get(weft_txn *t, const char *coll, const char *id, const char *field, weft_field *out)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    size_t cl, el, fl;
    if (out == NULL || id == NULL || field == NULL) {
        return weft__err(WEFT_EINVAL, "weft_get: id, field and out are required");
    }
    if ((rc = names_check(coll, id, field, &cl, &el, &fl)) != 0) {
        return rc;
    }
    if ((rc = weft__store_key(&t->key, (weft_bytes){coll, cl}, (weft_bytes){id, el},
                              (weft_bytes){field, fl})) != 0) {
        return rc;
    }
    MDB_val k = {t->key.len, t->key.ptr}, v;
    rc = mdb_get(t->txn, t->s->dbi[WEFT__DB_FIELDS], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return weft__err(WEFT_ENOTFOUND, "no field %s/%s/%s", coll, id, field);
    }
    if (rc != 0) {
        return weft__store_mdb_err(rc, "reading a field");
    }
    weft_field f;
    if ((rc = field_fill(t, &v, &f)) != 0) {
        return rc;
    }
    /* The names: one arena copy of the key. The value: the map (read txn) or
     * a copy; counter and set values live in scratch and are always copied. */
    const char *names = weft__arena_dup(&t->arena, t->key.ptr, t->key.len);
    const void *val = t->scratch.ptr != NULL && (const uint8_t *)f.value.ptr >= t->scratch.ptr &&
                              (const uint8_t *)f.value.ptr < t->scratch.ptr + t->scratch.cap
                          ? weft__arena_dup(&t->arena, f.value.ptr, f.value.len)
                          : weft__store_view(t, f.value.ptr, f.value.len);
    if (names == NULL || val == NULL) {
        return weft__err(WEFT_ENOMEM, "out of memory reading %s/%s/%s", coll, id, field);
    }
    f.coll = names;
    f.entity = names + cl + 1;
    f.name = names + cl + el + 2;
    f.value.ptr = val;
    *out = f;
    return 0;
}

/* Walk the fields under @p prefix (from @p seek), entity by entity. */
static int walk(weft_txn *t, const uint8_t *prefix, size_t plen, const uint8_t *seek, size_t slen,
                size_t limit, weft_field_cb cb, void *user, long *nfields)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_FIELDS], &c);
    if (rc != 0) {
        return weft__store_mdb_err(rc, "scanning");
    }
    MDB_val k = {slen, (void *)seek}, v;
    const char *cur = NULL;
    size_t curlen = 0;
    long entities = 0, fields = 0;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    rc = 0;
    while (mrc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        weft_field f;
        if ((rc = key_split(&k, &f.coll, &f.entity, &f.name)) != 0) {
            break;
        }
        size_t elen = (size_t)(f.name - f.entity) - 1;
        if (cur == NULL || elen != curlen || memcmp(cur, f.entity, elen) != 0) {
            if (limit != 0 && (size_t)entities == limit) {
                break;
            }
            entities++;
        }
        cur = f.entity;
        curlen = elen;
        if ((rc = field_fill(t, &v, &f)) != 0) {
            break;
        }
        fields++;
        if (cb != NULL && cb(&f, user) != 0) {
            break;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = weft__store_mdb_err(mrc, "scanning");
    }
    if (rc != 0) {
        return rc;
    }
    *nfields = fields;
    return entities > 0x7fffffffL ? 0x7fffffff : (int)entities;
}

int weft_entity_read(weft_txn *t, const char *coll, const char *id, weft_field_cb cb, void *user)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    size_t cl, el;
    if (id == NULL) {
        return weft__err(WEFT_EINVAL, "weft_entity_read: id is required");
    }
    if ((rc = names_check(coll, id, NULL, &cl, &el, NULL)) != 0) {
        return rc;
    }
    static const weft_bytes none = {NULL, 0};
    if ((rc = weft__store_key(&t->key2, (weft_bytes){coll, cl}, (weft_bytes){id, el}, none)) != 0) {
        return rc;
    }
    long n = 0;
    rc = walk(t, t->key2.ptr, t->key2.len, t->key2.ptr, t->key2.len, 0, cb, user, &n);
    if (rc < 0) {
        return rc;
    }
    if (n == 0) {
        return weft__err(WEFT_ENOTFOUND, "no entity %s/%s", coll, id);
    }
    return n > 0x7fffffffL ? 0x7fffffff : (int)n;
}

int weft_scan(weft_txn *t, const char *coll, const char *after, size_t limit, weft_field_cb cb,
              void *user)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    size_t cl, al = 0;
    if ((rc = names_check(coll, NULL, NULL, &cl, NULL, NULL)) != 0) {
        return rc;
    }
    if (after != NULL && *after != '\0' && (rc = weft__name_check(after, "after", &al)) != 0) {
        return rc;
    }
    /* seek: "coll\0" or, after an entity, "coll\0after\1" (the first key of
     * any entity id sorting after it: "after" itself is followed by \0). */
    weft__buf_reset(&t->key2);
    if ((rc = weft__buf_reserve(&t->key2, cl + al + 2)) != 0) {
        return rc;
    }
    weft__buf_put(&t->key2, coll, cl + 1);
    if (al > 0) {
        weft__buf_put(&t->key2, after, al);
        weft__buf_put(&t->key2, "\1", 1);
    }
    long n;
    return walk(t, t->key2.ptr, cl + 1, t->key2.ptr, t->key2.len, limit, cb, user, &n);
}

int weft_conflicts(weft_txn *t, const char *coll, weft_conflict_cb cb, void *user)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    size_t cl = 0;
    if (coll != NULL && (rc = weft__name_check(coll, "collection", &cl)) != 0) {
        return rc;
    }
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, t->s->dbi[WEFT__DB_CONFLICTS], &c)) != 0) {
        return weft__store_mdb_err(rc, "listing conflicts");
    }
    size_t plen = coll ? cl + 1 : 0;
    MDB_val k = {plen, (void *)coll}, v;
    int mrc = mdb_cursor_get(c, &k, &v, coll ? MDB_SET_RANGE : MDB_FIRST);
    long count = 0;
    rc = 0;
    while (mrc == 0 && k.mv_size >= plen && (plen == 0 || memcmp(k.mv_data, coll, plen) == 0)) {
        weft_conflict cf;
        MDB_val fv;
        if ((rc = key_split(&k, &cf.coll, &cf.entity, &cf.field)) != 0) {
            break;
        }
        int g = mdb_get(t->txn, t->s->dbi[WEFT__DB_FIELDS], &k, &fv);
        if (g != 0) {
            rc = g == MDB_NOTFOUND ? weft__err(WEFT_ECORRUPT, "conflict listed for a missing field")
                                   : weft__store_mdb_err(g, "listing conflicts");
            break;
        }
        if ((rc = weft__store_rec_decode(fv.mv_data, fv.mv_size, &t->fs)) != 0) {
            rc = rc == WEFT_ENOMEM ? rc : weft__err(WEFT_ECORRUPT, "damaged field state");
            break;
        }
        uint32_t nh = t->fs.nheads;
        weft__buf_reset(&t->scratch);
        if ((rc = weft__buf_reserve(&t->scratch, (size_t)nh * sizeof(weft_head))) != 0) {
            break;
        }
        weft_head *heads = (weft_head *)(void *)t->scratch.ptr;
        for (uint32_t i = 0; i < nh && rc == 0; i++) { /* newest first */
            heads[i].id = t->fs.heads[nh - 1 - i].id;
            rc = weft__store_head_value(t, &t->fs.heads[nh - 1 - i], &heads[i].value);
        }
        if (rc != 0) {
            break;
        }
        cf.heads = heads;
        cf.nheads = nh;
        count++;
        if (cb != NULL && cb(&cf, user) != 0) {
            break;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = weft__store_mdb_err(mrc, "listing conflicts");
    }
    if (rc != 0) {
        return rc;
    }
    return count > 0x7fffffffL ? 0x7fffffff : (int)count;
}

static int vv_add(void *user, uint64_t device, uint64_t hlc)
{
    return weft_vv_set(user, device, hlc);
}

int weft_store_vv(weft_txn *t, weft_vv **out)
{
    int rc = weft__store_usable(t, false);
    if (rc != 0) {
        return rc;
    }
    if (out == NULL) {
        return weft__err(WEFT_EINVAL, "weft_store_vv: out is required");
    }
    weft_vv *vv;
    if ((rc = weft_vv_new(&vv)) != 0) {
        return rc;
    }
    if (!t->rdonly) {
        for (size_t i = 0; i < t->nvv && rc == 0; i++) {
            rc = weft_vv_set(vv, t->vv[i].device, t->vv[i].hlc);
        }
    } else {
        rc = weft__store_vv_each(t, vv_add, vv);
    }
    if (rc != 0) {
        weft_vv_destroy(&vv);
        return rc;
    }
    *out = vv;
    return 0;
}
