/* json.c - the value mapping between JSON (what people type and scripts
 * read) and msgpack (what the store holds), plus hex, base64 and time text.
 *
 * JSON -> msgpack packs with msgpack-c; the store then validates the bytes
 * and keeps their canonical form. msgpack -> JSON reads with a small bounded
 * reader of our own: msgpack-c's unpacker allocates before it checks lengths
 * (STACK.md), and although values read back from the store were validated,
 * a damaged file must not make the command allocate gigabytes or crash.
 *
 * The mapping (docs/cli.md, "Values"), made so that every msgpack value the
 * store can hold prints as JSON that reads back as the same value:
 *   JSON integer <-> int, JSON real <-> float64 (printed with a fraction or
 *   exponent, so 1.0 stays a float), string <-> str, true/false/null, array
 *   <-> array, object <-> map with str keys. Four one-key objects are
 *   reserved: {"$bin":"<base64>"} for bin, {"$u64":"<decimal>"} for
 *   integers above INT64_MAX, {"$f64":"nan"|"nan:<bits>"|"inf"|"-inf"} for non-finite
 *   floats and {"$map":[[k,v],...]} for maps JSON cannot spell (a non-str
 *   key, a repeated key, or a single key that is itself reserved).
 *
 * Invariants:
 *   1. The msgpack reader never reads past its input, recurses at most
 *      MP_DEPTH_MAX deep and creates at most one JSON node per input byte.
 *   2. weft__cli_dumps() prints every real with a precision at which each
 *      real of the document reads back bit for bit.
 * Thread-safety: single-threaded program; the functions keep no state.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/weft.h>

#include "cli.h"

/* The plain quiet NaN, the only one spelled {"$f64":"nan"}. */
#define QUIET_NAN_BITS UINT64_C(0x7ff8000000000000)

#define MP_DEPTH_MAX 64u /* msgpack nesting accepted on output; the store allows 32 */

/* ================================================================ buffers */

void weft__cli_buf_free(weft_cli_buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* msgpack_packer write callback: append to a weft_cli_buf. */
static int buf_write(void *data, const char *p, size_t n)
{
    weft_cli_buf *b = data;
    if (n > SIZE_MAX / 2 - b->len) {
        return -1;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) {
            cap *= 2;
        }
        uint8_t *q = realloc(b->ptr, cap);
        if (!q) {
            return -1;
        }
        b->ptr = q;
        b->cap = cap;
    }
    if (n) {
        memcpy(b->ptr + b->len, p, n);
    }
    b->len += n;
    return 0;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) WEFT_CLI_PRINTF(3, 4);

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ================================================================ JSON -> msgpack */

/* The reserved key of a one-key object, or NULL if @p j is a plain object. */
static const char *reserved_key(const json_t *j)
{
    static const char *const keys[] = {"$bin", "$u64", "$f64", "$map"};
    if (json_object_size(j) != 1) {
        return NULL;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)j, key, klen, v)
    {
        (void)v;
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            if (klen == strlen(keys[i]) && memcmp(key, keys[i], klen) == 0) {
                return keys[i];
            }
        }
    }
    return NULL;
}

static int pack_json(msgpack_packer *pk, const json_t *j, unsigned depth, char *err, size_t errlen);

static int pack_reserved(msgpack_packer *pk, const char *key, const json_t *v, unsigned depth,
                         char *err, size_t errlen)
{
    if (strcmp(key, "$bin") == 0) {
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (!json_is_string(v) || weft__cli_b64_decode(json_string_value(v), json_string_length(v),
                                                       WEFT_VALUE_MAX, &bytes, &n) != 0) {
            seterr(err, errlen, "\"$bin\" needs a base64 string");
            return -1;
        }
        int rc = msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, bytes, n);
        free(bytes);
        if (rc) {
            seterr(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "$u64") == 0) {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (!s || !*s || strlen(s) != json_string_length(v) ||
            strspn(s, "0123456789") != strlen(s)) {
            seterr(err, errlen, "\"$u64\" needs a string of decimal digits");
            return -1;
        }
        errno = 0;
        unsigned long long u = strtoull(s, NULL, 10);
        if (errno == ERANGE) {
            seterr(err, errlen, "\"$u64\" value %s is above 18446744073709551615", s);
            return -1;
        }
        return msgpack_pack_uint64(pk, (uint64_t)u) ? -1 : 0;
    }
    if (strcmp(key, "$f64") == 0) {
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        double d;
        uint64_t bits;
        char *end = NULL;
        if (strcmp(s, "nan") == 0) {
            bits = QUIET_NAN_BITS;
            memcpy(&d, &bits, sizeof d);
        } else if (strncmp(s, "nan:", 4) == 0 && strlen(s) == 20 && isxdigit((unsigned char)s[4]) &&
                   (bits = strtoull(s + 4, &end, 16), end == s + 20) &&
                   (bits & UINT64_C(0x7ff0000000000000)) == UINT64_C(0x7ff0000000000000) &&
                   (bits & UINT64_C(0x000fffffffffffff)) != 0) {
            memcpy(&d, &bits, sizeof d);
        } else if (strcmp(s, "inf") == 0) {
            d = INFINITY;
        } else if (strcmp(s, "-inf") == 0) {
            d = -INFINITY;
        } else {
            seterr(err, errlen,
                   "\"$f64\" needs \"nan\", \"nan:<16 hex digits of a NaN>\", \"inf\" or \"-inf\"");
            return -1;
        }
        return msgpack_pack_double(pk, d) ? -1 : 0;
    }
    /* "$map": [[k, v], ...] */
    if (!json_is_array(v)) {
        seterr(err, errlen, "\"$map\" needs an array of [key, value] pairs");
        return -1;
    }
    size_t n = json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(v, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2) {
            seterr(err, errlen, "\"$map\" entry %zu is not a [key, value] pair", i);
            return -1;
        }
    }
    if (n > UINT32_MAX || msgpack_pack_map(pk, n)) {
        seterr(err, errlen, "map too large");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *pair = json_array_get(v, i);
        if (pack_json(pk, json_array_get(pair, 0), depth + 1, err, errlen) ||
            pack_json(pk, json_array_get(pair, 1), depth + 1, err, errlen)) {
            return -1;
        }
    }
    return 0;
}

static int pack_json(msgpack_packer *pk, const json_t *j, unsigned depth, char *err, size_t errlen)
{
    int rc = 0;
    if (depth > MP_DEPTH_MAX) {
        seterr(err, errlen, "nested more than %u deep", MP_DEPTH_MAX);
        return -1;
    }
    switch (json_typeof(j)) {
    case JSON_NULL:
        rc = msgpack_pack_nil(pk);
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(pk);
        break;
    case JSON_INTEGER:
        rc = msgpack_pack_int64(pk, (int64_t)json_integer_value(j));
        break;
    case JSON_REAL:
        rc = msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_STRING: {
        size_t n = json_string_length(j);
        rc = msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(j), n);
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if (n > UINT32_MAX) {
            seterr(err, errlen, "array too large");
            return -1;
        }
        rc = msgpack_pack_array(pk, n);
        for (size_t i = 0; !rc && i < n; i++) {
            if (pack_json(pk, json_array_get(j, i), depth + 1, err, errlen)) {
                return -1;
            }
        }
        break;
    }
    case JSON_OBJECT: {
        const char *rk = reserved_key(j);
        if (rk) {
            return pack_reserved(pk, rk, json_object_get(j, rk), depth, err, errlen);
        }
        size_t n = json_object_size(j);
        if (n > UINT32_MAX) {
            seterr(err, errlen, "object too large");
            return -1;
        }
        rc = msgpack_pack_map(pk, n);
        const char *key;
        size_t klen;
        json_t *v;
        json_object_keylen_foreach((json_t *)j, key, klen, v)
        {
            if (rc) {
                break;
            }
            rc = msgpack_pack_str(pk, klen) || msgpack_pack_str_body(pk, key, klen);
            if (!rc && pack_json(pk, v, depth + 1, err, errlen)) {
                return -1;
            }
        }
        break;
    }
    }
    if (rc) {
        seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int weft__cli_mp_from_json(const json_t *j, weft_cli_buf *out, char *err, size_t errlen)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    return pack_json(&pk, j, 0, err, errlen);
}

int weft__cli_mp_from_text(const char *text, weft_cli_buf *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        seterr(err, errlen, "malformed JSON: %s", jerr.text);
        return -1;
    }
    int rc = weft__cli_mp_from_json(j, out, err, errlen);
    json_decref(j);
    return rc;
}

/* ================================================================ msgpack -> JSON */

typedef struct mp_in {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
} mp_in;

static int need(mp_in *in, size_t n)
{
    if ((size_t)(in->end - in->p) < n) {
        seterr(in->err, in->errlen, "truncated msgpack");
        return -1;
    }
    return 0;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Read a length of @p n big-endian bytes. */
static int read_len(mp_in *in, unsigned n, size_t *len)
{
    if (need(in, n)) {
        return -1;
    }
    *len = (size_t)be(in->p, n);
    in->p += n;
    return 0;
}

static json_t *mp_value(mp_in *in, unsigned depth);

static json_t *mp_str(mp_in *in, size_t n)
{
    if (need(in, n)) {
        return NULL;
    }
    json_t *s = json_stringn((const char *)in->p, n);
    if (!s) {
        seterr(in->err, in->errlen, "string is not valid UTF-8");
        return NULL;
    }
    in->p += n;
    return s;
}

static json_t *mp_bin(mp_in *in, size_t n)
{
    if (need(in, n)) {
        return NULL;
    }
    char *b64 = weft__cli_b64_encode(in->p, n);
    in->p += n;
    json_t *o = b64 ? json_pack("{s:s}", "$bin", b64) : NULL;
    free(b64);
    if (!o) {
        seterr(in->err, in->errlen, "out of memory");
    }
    return o;
}

static json_t *mp_u64(uint64_t u)
{
    if (u <= INT64_MAX) {
        return json_integer((json_int_t)u);
    }
    char dec[24];
    snprintf(dec, sizeof dec, "%" PRIu64, u);
    return json_pack("{s:s}", "$u64", dec);
}

static json_t *mp_f64(double d)
{
    if (isnan(d)) {
        /* NaNs differ in sign and payload bits, and a set element or a
         * value must print as JSON that reads back as the same bytes: only
         * the plain quiet NaN is "nan"; any other spells its bits. */
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        if (bits == QUIET_NAN_BITS) {
            return json_pack("{s:s}", "$f64", "nan");
        }
        char s[24];
        snprintf(s, sizeof s, "nan:%016" PRIx64, bits);
        return json_pack("{s:s}", "$f64", s);
    }
    if (isinf(d)) {
        return json_pack("{s:s}", "$f64", d > 0 ? "inf" : "-inf");
    }
    return json_real(d);
}

static json_t *mp_array(mp_in *in, size_t n, unsigned depth)
{
    if (need(in, n)) { /* every element takes at least one byte */
        return NULL;
    }
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *v = mp_value(in, depth + 1);
        if (!v || json_array_append_new(a, v)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *mp_map(mp_in *in, size_t n, unsigned depth)
{
    if (n > SIZE_MAX / 2 || need(in, 2 * n)) {
        return NULL;
    }
    json_t *pairs = json_array(); /* [[k, v], ...] until we know the form */
    int all_str = 1;
    for (size_t i = 0; pairs && i < n; i++) {
        json_t *pair = json_array();
        json_t *k = pair ? mp_value(in, depth + 1) : NULL;
        if (!k || json_array_append_new(pair, k)) {
            json_decref(pair);
            json_decref(pairs);
            return NULL;
        }
        json_t *v = mp_value(in, depth + 1);
        if (!v || json_array_append_new(pair, v)) { /* append_new releases v on failure */
            json_decref(pair);
            json_decref(pairs);
            return NULL;
        }
        if (json_array_append_new(pairs, pair)) {
            json_decref(pairs);
            return NULL;
        }
        /* A key with a NUL byte is a str JSON could spell ("\u0000") but
         * that jansson objects (and so `weft put`) refuse: use "$map". */
        all_str &=
            json_is_string(k) && memchr(json_string_value(k), '\0', json_string_length(k)) == NULL;
    }
    if (!pairs) {
        seterr(in->err, in->errlen, "out of memory");
        return NULL;
    }
    if (all_str) {
        json_t *o = json_object();
        for (size_t i = 0; o && i < n; i++) {
            json_t *pair = json_array_get(pairs, i);
            json_t *k = json_array_get(pair, 0);
            if (json_object_setn(o, json_string_value(k), json_string_length(k),
                                 json_array_get(pair, 1))) {
                json_decref(o);
                o = NULL;
            }
        }
        /* A repeated key or a lone reserved key cannot be spelled as an object. */
        if (o && json_object_size(o) == n && !reserved_key(o)) {
            json_decref(pairs);
            return o;
        }
        json_decref(o);
    }
    json_t *m = json_pack("{s:o}", "$map", pairs);
    if (!m) {
        seterr(in->err, in->errlen, "out of memory");
    }
    return m;
}

static json_t *mp_value(mp_in *in, unsigned depth)
{
    size_t n;
    if (depth > MP_DEPTH_MAX) {
        seterr(in->err, in->errlen, "msgpack nested more than %u deep", MP_DEPTH_MAX);
        return NULL;
    }
    if (need(in, 1)) {
        return NULL;
    }
    uint8_t t = *in->p++;
    if (t <= 0x7f) {
        return json_integer(t);
    }
    if (t >= 0xe0) {
        return json_integer((int8_t)t);
    }
    if (t >= 0xa0 && t <= 0xbf) {
        return mp_str(in, t & 0x1f);
    }
    if (t >= 0x90 && t <= 0x9f) {
        return mp_array(in, t & 0x0f, depth);
    }
    if (t >= 0x80 && t <= 0x8f) {
        return mp_map(in, t & 0x0f, depth);
    }
    switch (t) {
    case 0xc0:
        return json_null();
    case 0xc2:
        return json_false();
    case 0xc3:
        return json_true();
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return read_len(in, 1u << (t - 0xc4), &n) ? NULL : mp_bin(in, n);
    case 0xca: {
        if (need(in, 4)) {
            return NULL;
        }
        uint32_t u = (uint32_t)be(in->p, 4);
        float f;
        memcpy(&f, &u, 4);
        in->p += 4;
        return mp_f64((double)f);
    }
    case 0xcb: {
        if (need(in, 8)) {
            return NULL;
        }
        uint64_t u = be(in->p, 8);
        double d;
        memcpy(&d, &u, 8);
        in->p += 8;
        return mp_f64(d);
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        unsigned w = 1u << (t - 0xcc);
        if (need(in, w)) {
            return NULL;
        }
        uint64_t u = be(in->p, w);
        in->p += w;
        return mp_u64(u);
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        unsigned w = 1u << (t - 0xd0);
        if (need(in, w)) {
            return NULL;
        }
        uint64_t u = be(in->p, w);
        in->p += w;
        if (w < 8 && (u >> (8 * w - 1))) { /* sign-extend */
            u |= ~UINT64_C(0) << (8 * w);
        }
        int64_t s;
        memcpy(&s, &u, 8);
        return json_integer((json_int_t)s);
    }
    case 0xd9:
    case 0xda:
    case 0xdb:
        return read_len(in, 1u << (t - 0xd9), &n) ? NULL : mp_str(in, n);
    case 0xdc:
    case 0xdd:
        return read_len(in, 2u << (t - 0xdc), &n) ? NULL : mp_array(in, n, depth);
    case 0xde:
    case 0xdf:
        return read_len(in, 2u << (t - 0xde), &n) ? NULL : mp_map(in, n, depth);
    default:
        seterr(in->err, in->errlen, "msgpack type 0x%02x is not a weft value", t);
        return NULL;
    }
}

json_t *weft__cli_json_from_mp(const void *buf, size_t len, char *err, size_t errlen)
{
    char scratch[1];
    mp_in in = {buf, (const uint8_t *)buf + len, err ? err : scratch, err ? errlen : 1};
    if (err && errlen) {
        err[0] = '\0';
    }
    json_t *j = mp_value(&in, 0);
    if (j && in.p != in.end) {
        seterr(in.err, in.errlen, "%zu bytes after the msgpack value", (size_t)(in.end - in.p));
        json_decref(j);
        return NULL;
    }
    if (!j && in.err[0] == '\0') {
        seterr(in.err, in.errlen, "out of memory");
    }
    return j;
}

/* ================================================================ output */

/* The fewest significant digits (1..17) at which %g of @p d reads back as d. */
static int shortest_digits(double d)
{
    char s[40];
    for (int p = 1; p < 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, d);
        if (strtod(s, NULL) == d) {
            return p;
        }
    }
    return 17;
}

static int max_digits(const json_t *j, int sofar)
{
    switch (json_typeof(j)) {
    case JSON_REAL: {
        int p = shortest_digits(json_real_value(j));
        return p > sofar ? p : sofar;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(j) && sofar < 17; i++) {
            sofar = max_digits(json_array_get(j, i), sofar);
        }
        return sofar;
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            (void)k;
            sofar = max_digits(v, sofar);
        }
        return sofar;
    }
    default:
        return sofar;
    }
}

char *weft__cli_dumps(const json_t *j)
{
    int p = max_digits(j, 1);
    return json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(p));
}

void weft__cli_print_value(FILE *f, weft_bytes v)
{
    char err[128];
    json_t *j = weft__cli_json_from_mp(v.ptr, v.len, err, sizeof err);
    char *s = j ? weft__cli_dumps(j) : NULL;
    if (s) {
        fputs(s, f);
    } else {
        fprintf(f, "<unprintable: %s>", j ? "out of memory" : err);
    }
    free(s);
    json_decref(j);
}

/* ================================================================ text helpers */

void weft__cli_hex64(uint64_t v, char out[WEFT_CLI_HEX64])
{
    snprintf(out, WEFT_CLI_HEX64, "%016" PRIx64, v);
}

int weft__cli_parse_hex64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            d = (unsigned)(c - 'A' + 10);
        } else {
            return -1;
        }
        v = v << 4 | d;
    }
    if (s[16] != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

void weft__cli_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void weft__cli_time(uint64_t hlc, char out[WEFT_CLI_TIME])
{
    uint64_t ms = weft_hlc_ms(hlc);
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, WEFT_CLI_TIME, "@%" PRIu64 "ms", ms);
        return;
    }
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, WEFT_CLI_TIME, "%s.%03uZ", date, (unsigned)(ms % 1000));
}

json_t *weft__cli_id_json(weft_id id)
{
    char hlc[WEFT_CLI_HEX64], dev[WEFT_CLI_HEX64], when[WEFT_CLI_TIME];
    weft__cli_hex64(id.hlc, hlc);
    weft__cli_hex64(id.device, dev);
    weft__cli_time(id.hlc, when);
    return json_pack("{s:s,s:s,s:s,s:I}", "hlc", hlc, "device", dev, "time", when, "counter",
                     (json_int_t)weft_hlc_counter(id.hlc));
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *weft__cli_b64_encode(const void *p, size_t n)
{
    const uint8_t *b = p;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3) {
        return NULL;
    }
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (!out) {
        return NULL;
    }
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)b[i] << 16;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64_digit(char c)
{
    const char *q = c ? strchr(b64_alphabet, c) : NULL;
    return q ? (int)(q - b64_alphabet) : -1;
}

int weft__cli_b64_decode(const char *s, size_t slen, size_t max, uint8_t **out, size_t *outlen)
{
    if (slen % 4 != 0) {
        return -1;
    }
    size_t pad = 0;
    if (slen >= 4 && s[slen - 1] == '=') {
        pad = s[slen - 2] == '=' ? 2 : 1;
    }
    size_t n = slen / 4 * 3 - pad;
    if (n > max) {
        return -1;
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < slen; i += 4) {
        int d[4];
        int last = i + 4 == slen;
        for (int k = 0; k < 4; k++) {
            d[k] = b64_digit(s[i + (size_t)k]);
            if (d[k] < 0 && !(last && k >= 4 - (int)pad)) {
                free(buf);
                return -1;
            }
        }
        uint32_t v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12;
        if (last && pad == 2) {
            if (d[1] & 15) { /* non-zero bits in the padding: not canonical */
                free(buf);
                return -1;
            }
            buf[o++] = (uint8_t)(v >> 16);
        } else if (last && pad == 1) {
            v |= (uint32_t)d[2] << 6;
            if (d[2] & 3) {
                free(buf);
                return -1;
            }
            buf[o++] = (uint8_t)(v >> 16);
            buf[o++] = (uint8_t)(v >> 8);
        } else {
            v |= (uint32_t)d[2] << 6 | (uint32_t)d[3];
            buf[o++] = (uint8_t)(v >> 16);
            buf[o++] = (uint8_t)(v >> 8);
            buf[o++] = (uint8_t)v;
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}
