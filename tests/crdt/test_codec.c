/* test_codec.c - the crdt codec: canonical msgpack values, op payloads and
 * field state records.
 *
 * Golden vectors are written by hand from the msgpack spec and the layouts
 * in crdt/op.c and crdt/fstate.c, not produced by the code under test.
 *
 * Invariants: none (tests).
 * Thread-safety: criterion runs each test in its own process.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "crdt/crdt_int.h"
#include "tests/splitmix.h"

/* ---------------------------------------------------------------- helpers */

/* Hex string (spaces ignored) to bytes; returns the length. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
            continue;
        }
        unsigned v;
        cr_assert(sscanf(s, "%2x", &v) == 1, "bad hex near '%s'", s);
        cr_assert(n < cap);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void assert_bytes(const uint8_t *got, size_t glen, const uint8_t *want, size_t wlen,
                         const char *what)
{
    char g[512] = "", w[512] = "";
    for (size_t i = 0; i < glen && i < 200; i++) {
        snprintf(g + 2 * i, 3, "%02x", got[i]);
    }
    for (size_t i = 0; i < wlen && i < 200; i++) {
        snprintf(w + 2 * i, 3, "%02x", want[i]);
    }
    cr_assert(glen == wlen && (wlen == 0 || memcmp(got, want, wlen) == 0), "%s: got %s, want %s",
              what, g, w);
}

static void assert_hex(const weft__buf *b, const char *hex, const char *what)
{
    uint8_t want[4096];
    size_t n = unhex(hex, want, sizeof want);
    assert_bytes(b->ptr, b->len, want, n, what);
}

static weft_bytes view(const void *p, size_t n)
{
    weft_bytes v = {p, n};
    return v;
}

static weft_bytes sview(const char *s)
{
    return view(s, strlen(s));
}

static weft_id mkid(uint64_t hlc, uint64_t dev)
{
    weft_id id = {hlc, dev};
    return id;
}

/* Canonical value: check accepts it whole, canon reproduces it. */
static void assert_canonical(const uint8_t *v, size_t n, const char *what)
{
    size_t used = 0;
    cr_assert_eq(weft__mp_check(v, n, WEFT_DEPTH_MAX, &used), 0, "%s: check: %s", what,
                 weft_last_error());
    cr_assert_eq(used, n, "%s", what);
    weft__buf b = {0};
    cr_assert_eq(weft__mp_canon(v, n, &b), 0, "%s: canon: %s", what, weft_last_error());
    assert_bytes(b.ptr, b.len, v, n, what);
    weft__buf_free(&b);
}

/* ---------------------------------------------------------------- values */

typedef struct ivec {
    int64_t v;
    const char *hex;
} ivec;

/* clang-format off */
static const ivec ints[] = {
    {0, "00"}, {1, "01"}, {127, "7f"}, {128, "cc 80"}, {255, "cc ff"}, {256, "cd 01 00"},
    {65535, "cd ff ff"}, {65536, "ce 00 01 00 00"}, {4294967295, "ce ff ff ff ff"},
    {4294967296, "cf 00 00 00 01 00 00 00 00"}, {INT64_MAX, "cf 7f ff ff ff ff ff ff ff"},
    {-1, "ff"}, {-32, "e0"}, {-33, "d0 df"}, {-128, "d0 80"}, {-129, "d1 ff 7f"},
    {-32768, "d1 80 00"}, {-32769, "d2 ff ff 7f ff"}, {INT32_MIN, "d2 80 00 00 00"},
    {(int64_t)INT32_MIN - 1, "d3 ff ff ff ff 7f ff ff ff"}, {INT64_MIN, "d3 80 00 00 00 00 00 00 00"},
};
/* clang-format on */

Test(crdt, int_golden_and_roundtrip)
{
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        weft__buf b = {0};
        cr_assert_eq(weft__mp_put_int(&b, ints[i].v), 0);
        char what[64];
        snprintf(what, sizeof what, "int %lld", (long long)ints[i].v);
        assert_hex(&b, ints[i].hex, what);
        assert_canonical(b.ptr, b.len, what);
        weft__mp_reader r = {b.ptr, b.ptr + b.len};
        int64_t got;
        cr_assert_eq(weft__mp_read_int(&r, &got), 0);
        cr_assert_eq(got, ints[i].v, "%s", what);
        cr_assert_eq(r.p, r.end);
        weft__buf_free(&b);
    }
    weft__buf b = {0};
    cr_assert_eq(weft__mp_put_uint(&b, UINT64_MAX), 0);
    assert_hex(&b, "cf ff ff ff ff ff ff ff ff", "uint64 max");
    weft__mp_reader r = {b.ptr, b.ptr + b.len};
    uint64_t u;
    int64_t s;
    cr_assert_eq(weft__mp_read_uint(&r, &u), 0);
    cr_assert_eq(u, UINT64_MAX);
    r.p = b.ptr;
    cr_assert_eq(weft__mp_read_int(&r, &s), WEFT_ECORRUPT, "uint64 max is not an int64");
    weft__buf_free(&b);
}

Test(crdt, scalar_golden)
{
    weft__buf b = {0};
    cr_assert_eq(weft__mp_put_nil(&b), 0);
    cr_assert_eq(weft__mp_put_bool(&b, false), 0);
    cr_assert_eq(weft__mp_put_bool(&b, true), 0);
    cr_assert_eq(weft__mp_put_f64(&b, 1.5), 0);
    cr_assert_eq(weft__mp_put_f64(&b, -0.0), 0);
    assert_hex(&b, "c0 c2 c3 cb 3f f8 00 00 00 00 00 00 cb 80 00 00 00 00 00 00 00", "scalars");
    weft__buf_free(&b);

    cr_assert_eq(weft__mp_put_str(&b, "", 0), 0);
    cr_assert_eq(weft__mp_put_str(&b, "a", 1), 0);
    cr_assert_eq(weft__mp_put_str(&b, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9), 0); /* é€😀 */
    cr_assert_eq(weft__mp_put_bin(&b, "", 0), 0);
    cr_assert_eq(weft__mp_put_bin(&b, "\x01\x02", 2), 0);
    assert_hex(&b, "a0 a1 61 a9 c3 a9 e2 82 ac f0 9f 98 80 c4 00 c4 02 01 02", "str/bin");
    weft__buf_free(&b);

    cr_assert_eq(weft__mp_put_array(&b, 0), 0);
    cr_assert_eq(weft__mp_put_array(&b, 15), 0);
    cr_assert_eq(weft__mp_put_array(&b, 16), 0);
    cr_assert_eq(weft__mp_put_array(&b, 65536), 0);
    cr_assert_eq(weft__mp_put_map(&b, 1), 0);
    cr_assert_eq(weft__mp_put_map(&b, 16), 0);
    assert_hex(&b, "90 9f dc 00 10 dd 00 01 00 00 81 de 00 10", "headers");
    weft__buf_free(&b);
}

/* Strings and bins at each header boundary: canonical and round-tripping. */
Test(crdt, length_boundaries)
{
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
    uint8_t *src = malloc(70000);
    memset(src, 'x', 70000);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int bin = 0; bin < 2; bin++) {
            weft__buf b = {0};
            cr_assert_eq(
                bin ? weft__mp_put_bin(&b, src, lens[i]) : weft__mp_put_str(&b, src, lens[i]), 0);
            size_t want_head = bin ? (lens[i] <= 255     ? 2
                                      : lens[i] <= 65535 ? 3
                                                         : 5)
                                   : (lens[i] <= 31      ? 1
                                      : lens[i] <= 255   ? 2
                                      : lens[i] <= 65535 ? 3
                                                         : 5);
            cr_assert_eq(b.len, lens[i] + want_head, "len %zu bin %d", lens[i], bin);
            assert_canonical(b.ptr, b.len, bin ? "bin" : "str");
            weft__mp_reader r = {b.ptr, b.ptr + b.len};
            const uint8_t *p;
            uint32_t n;
            cr_assert_eq(bin ? weft__mp_read_bin(&r, &p, &n) : weft__mp_read_str(&r, &p, &n), 0);
            cr_assert_eq(n, lens[i]);
            cr_assert_eq(r.p, r.end);
            weft__buf_free(&b);
        }
    }
    free(src);
}

Test(crdt, nested_value_roundtrip)
{
    /* {"a": [1, -1, 1.5, nil, true, "é", bin(01)], "b": {"c": {}}, 1: []}
     * Keys sorted by encoded bytes: 01 < a1 61 < a1 62. */
    const char *hex = "83 01 90 a1 61 97 01 ff cb 3f f8 00 00 00 00 00 00 c0 c3 a2 c3 a9 c4 01 01"
                      " a1 62 81 a1 63 80";
    uint8_t v[256];
    size_t n = unhex(hex, v, sizeof v);
    assert_canonical(v, n, "nested");
    weft__mp_reader r = {v, v + n};
    weft_bytes got;
    cr_assert_eq(weft__mp_read_value(&r, WEFT_DEPTH_MAX, &got), 0);
    cr_assert_eq(got.len, n);
    uint32_t m;
    r.p = v;
    cr_assert_eq(weft__mp_read_map(&r, &m), 0);
    cr_assert_eq(m, 3);
}

/* Non-canonical but valid: check rejects, canon rewrites. */
Test(crdt, canon_rewrites_noncanonical)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"ca 3f c0 00 00", "cb 3f f8 00 00 00 00 00 00"},       /* float32 1.5 */
        {"cc 05", "05"},                                        /* uint8 holding 5 */
        {"cd 00 05", "05"},                                     /* uint16 holding 5 */
        {"cf 00 00 00 00 00 00 00 80", "cc 80"},                /* uint64 holding 128 */
        {"d0 05", "05"},                                        /* int8 holding 5 */
        {"d0 ff", "ff"},                                        /* int8 holding -1 */
        {"d3 ff ff ff ff ff ff ff 7f", "d1 ff 7f"},             /* int64 holding -129 */
        {"d9 01 61", "a1 61"},                                  /* str8 holding "a" */
        {"da 00 01 61", "a1 61"},                               /* str16 holding "a" */
        {"c5 00 01 ff", "c4 01 ff"},                            /* bin16 of 1 byte */
        {"dc 00 01 01", "91 01"},                               /* array16 of 1 */
        {"dd 00 00 00 00", "90"},                               /* array32 of 0 */
        {"de 00 01 01 02", "81 01 02"},                         /* map16 of 1 */
        {"82 a1 62 02 a1 61 01", "82 a1 61 01 a1 62 02"},       /* unsorted map */
        {"82 a2 61 61 01 a1 62 02", "82 a1 62 02 a2 61 61 01"}, /* shorter key first */
        {"82 a1 61 01 01 02", "82 01 02 a1 61 01"},             /* int key sorts first */
        {"81 cc 01 82 cc 02 00 01 00", "81 01 82 01 00 02 00"}, /* nested keys re-sorted */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t in[64], out[64];
        size_t ni = unhex(cases[i].in, in, sizeof in), no = unhex(cases[i].out, out, sizeof out);
        size_t used;
        int rc = weft__mp_check(in, ni, WEFT_DEPTH_MAX, &used);
        cr_assert_eq(rc, WEFT_ECORRUPT, "case %zu (%s): check accepted non-canonical input", i,
                     cases[i].in);
        weft__buf b = {0};
        cr_assert_eq(weft__mp_canon(in, ni, &b), 0, "case %zu: %s", i, weft_last_error());
        assert_bytes(b.ptr, b.len, out, no, cases[i].in);
        assert_canonical(b.ptr, b.len, cases[i].out);
        weft__buf_free(&b);
    }
}

Test(crdt, canon_rejects_invalid)
{
    static const struct {
        const char *in;
        int rc;
    } cases[] = {
        {"", WEFT_EINVAL},
        {"c1", WEFT_EINVAL},                   /* never used */
        {"d4 01 00", WEFT_EINVAL},             /* fixext1 */
        {"c7 01 05 00", WEFT_EINVAL},          /* ext8 */
        {"a1 ff", WEFT_EINVAL},                /* invalid UTF-8 */
        {"a2 c0 80", WEFT_EINVAL},             /* overlong NUL */
        {"a3 ed a0 80", WEFT_EINVAL},          /* surrogate */
        {"a4 f4 90 80 80", WEFT_EINVAL},       /* > U+10FFFF */
        {"a2 e2 82", WEFT_EINVAL},             /* truncated sequence */
        {"82 a1 61 01 a1 61 02", WEFT_EINVAL}, /* duplicate key */
        {"82 cc 01 00 01 00", WEFT_EINVAL},    /* duplicate after canonicalising */
        {"01 02", WEFT_EINVAL},                /* trailing byte */
        {"92 01", WEFT_EINVAL},                /* truncated array */
        {"cd 01", WEFT_EINVAL},                /* truncated uint16 */
        {"a5 61", WEFT_EINVAL},                /* truncated str */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t in[64];
        size_t ni = unhex(cases[i].in, in, sizeof in);
        weft__buf b = {0};
        cr_assert_eq(weft__mp_canon(in, ni, &b), cases[i].rc, "case '%s'", cases[i].in);
        cr_assert_eq(b.len, 0, "output untouched on failure");
        cr_assert(strlen(weft_last_error()) > 0);
        size_t used;
        if (ni > 0 && i != 11) {
            cr_assert_neq(weft__mp_check(in, ni, WEFT_DEPTH_MAX, &used), 0, "check '%s'",
                          cases[i].in);
        }
        weft__buf_free(&b);
    }
    /* Error messages name the offset. */
    uint8_t bad[] = {0x92, 0x01, 0xa1, 0xff};
    weft__buf b = {0};
    cr_assert_eq(weft__mp_canon(bad, sizeof bad, &b), WEFT_EINVAL);
    cr_assert(strstr(weft_last_error(), "byte 2") != NULL, "message: %s", weft_last_error());
    /* Too long. */
    uint8_t *big = calloc(1, WEFT_VALUE_MAX + 1);
    cr_assert_eq(weft__mp_canon(big, WEFT_VALUE_MAX + 1, &b), WEFT_ELIMIT);
    free(big);
    weft__buf_free(&b);
}

Test(crdt, check_rejects_every_noncanonical_int_form)
{
    /* Each non-negative value in a signed form, each small value in a wide form. */
    static const char *bad[] = {
        "cc 00",
        "cc 7f",
        "cd 00 ff",
        "ce 00 00 ff ff",
        "cf 00 00 00 00 ff ff ff ff",
        "d0 00",
        "d0 e0",
        "d1 ff 80",
        "d2 ff ff 80 00",
        "d3 ff ff ff ff 80 00 00 00",
        "d3 00 00 00 00 00 00 00 01",
        "ca 00 00 00 00",
        ("d9 1f" /* str8 holding 31 bytes */
         " 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61"
         " 61 61 61 61 61 61 61 61 61 61 61 61 61 61 61"),
        "c5 00 00",
        "c6 00 00 00 00",
        "dc 00 0f 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
        "de 00 00",
        "df 00 00 00 00",
        "dd 00 00 ff ff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[80];
        size_t ni = unhex(bad[i], in, sizeof in);
        size_t used;
        cr_assert_eq(weft__mp_check(in, ni, WEFT_DEPTH_MAX, &used), WEFT_ECORRUPT, "'%s'", bad[i]);
    }
}

Test(crdt, oversized_lengths_do_not_allocate)
{
    static const char *cases[] = {
        "dd ff ff ff ff", "df ff ff ff ff", "db ff ff ff ff",          "c6 ff ff ff ff",
        "dc ff ff",       "de ff ff 01",    "dd ff ff ff ff 01 02 03", "c9 ff ff ff ff 01",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t in[16];
        size_t ni = unhex(cases[i], in, sizeof in);
        weft__buf b = {0};
        size_t used;
        weft__mp_reader r = {in, in + ni};
        uint32_t n;
        weft__alloc_fail_after(-1);
        cr_assert_eq(weft__mp_check(in, ni, WEFT_DEPTH_MAX, &used), WEFT_ECORRUPT, "%s", cases[i]);
        cr_assert_eq(weft__mp_canon(in, ni, &b), WEFT_EINVAL, "%s", cases[i]);
        cr_assert_neq(weft__mp_read_array(&r, &n), 0);
        cr_assert_neq(weft__mp_read_map(&r, &n), 0);
        long allocs = weft__alloc_fail_after(-1);
        cr_assert_eq(allocs, 0, "%s: %ld allocations", cases[i], allocs);
        weft__buf_free(&b);
    }
}

Test(crdt, depth_limit)
{
    size_t n = 100001;
    uint8_t *deep = malloc(n);
    /* k nested arrays: k-1 times 0x91 then 0x90. */
    for (unsigned k = 30; k <= 34; k++) {
        memset(deep, 0x91, k - 1);
        deep[k - 1] = 0x90;
        size_t used;
        int want = k <= WEFT_DEPTH_MAX ? 0 : WEFT_ELIMIT;
        cr_assert_eq(weft__mp_check(deep, k, WEFT_DEPTH_MAX, &used), want, "depth %u", k);
        weft__buf b = {0};
        cr_assert_eq(weft__mp_canon(deep, k, &b), want, "canon depth %u", k);
        weft__buf_free(&b);
        /* Same through a map. */
        uint8_t m[80];
        for (unsigned j = 0; j + 1 < k; j++) {
            m[2 * j] = 0x81;
            m[2 * j + 1] = 0x01;
        }
        m[2 * (k - 1)] = 0x80;
        cr_assert_eq(weft__mp_check(m, 2 * k - 1, WEFT_DEPTH_MAX, &used), want, "map depth %u", k);
    }
    memset(deep, 0x91, n - 1);
    deep[n - 1] = 0x90;
    size_t used;
    weft__buf b = {0};
    weft__alloc_fail_after(-1);
    cr_assert_eq(weft__mp_check(deep, n, WEFT_DEPTH_MAX, &used), WEFT_ELIMIT);
    cr_assert_eq(weft__mp_check(deep, n, 1000000, &used), WEFT_ELIMIT, "depth is capped");
    cr_assert_eq(weft__mp_canon(deep, n, &b), WEFT_ELIMIT);
    memset(deep, 0x81, n); /* 100000 nested maps, each the key of the one before */
    cr_assert_eq(weft__mp_canon(deep, n, &b), WEFT_ELIMIT);
    cr_assert_eq(weft__mp_check(deep, n, WEFT_DEPTH_MAX, &used), WEFT_ELIMIT);
    long allocs = weft__alloc_fail_after(-1);
    cr_assert_leq(allocs, 64, "%ld allocations", allocs);
    weft__buf_free(&b);
    free(deep);
}

Test(crdt, utf8)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"abc", true},
        {"\xc3\xa9", true},
        {"\xe2\x82\xac", true},
        {"\xf0\x9f\x98\x80", true},
        {"\xf4\x8f\xbf\xbf", true},
        {"\xed\x9f\xbf", true},
        {"\xee\x80\x80", true},
        {"0123456789abcdef\xc3\xa9", true},
        {"\x80", false},
        {"\xc0\xaf", false},
        {"\xc1\xbf", false},
        {"\xe0\x80\xaf", false},
        {"\xed\xa0\x80", false},
        {"\xf0\x80\x80\xaf", false},
        {"\xf4\x90\x80\x80", false},
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\xc3", false},
        {"\xe2\x82", false},
        {"\xc3\x28", false},
        {"01234567\xc3", false},
        /* Around the 8-byte fast path: sequences straddling a word boundary,
         * and bad bytes right after 8 or more ASCII bytes. */
        {"0123456\xc3\xa9", true},
        {"012345\xe2\x82\xac", true},
        {"0123456\xe2\x82\xac", true},
        {"01234\xf0\x9f\x98\x80", true},
        {"0123456\xf0\x9f\x98\x80wxyzwxyz", true},
        {"0123456789abcde\xf4\x8f\xbf\xbf", true},
        {"\xc3\xa9wxyz0123456789ab\xc3\xa9", true},
        {"01234567\x80", false},
        {"0123456789\xff", false},
        {"0123456789abcdef\xbf", false},
        {"01234567\xc0\xaf", false},
        {"0123456789\xc1\xbf", false},
        {"01234567\xe0\x80\xaf", false},
        {"0123456\xe0\x9f\xbf", false},
        {"01234567\xed\xa0\x80", false},
        {"0123456789abcde\xed\xbf\xbf", false},
        {"01234567\xf0\x80\x80\xaf", false},
        {"0123456\xf0\x8f\xbf\xbf", false},
        {"01234567\xf4\x90\x80\x80", false},
        {"01234567\xf5\x80\x80\x80", false},
        {"0123456\xe2\x82", false},
        {"0123456789abcde\xf0\x9f\x98", false},
        {"0123456\xc3\x28wxyzwxy", false},
        {"\xc3\xa9wxyz0123456789ab\x80", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(weft__utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s)), cases[i].ok,
                     "case %zu", i);
    }
}

/* A plain reference for weft__utf8_valid: decode each sequence and check the
 * code point (no overlong form, no surrogate, at most U+10FFFF). */
static bool utf8_ref(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t n = c < 0x80                ? 0
                   : c >= 0xc0 && c < 0xe0 ? 1
                   : c >= 0xe0 && c < 0xf0 ? 2
                   : c >= 0xf0 && c < 0xf8 ? 3
                                           : 9;
        if (n == 9 || len - i <= n) {
            return false;
        }
        uint32_t cp = n == 0 ? c : c & (0x3fu >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        static const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

/* The fast path and the byte-wise path agree with the reference wherever a
 * sequence, good or bad, falls relative to the 8-byte words: random strings
 * of ASCII runs and byte sequences (valid, truncated, overlong, surrogate,
 * out of range, stray), checked at every start offset and length. */
Test(crdt, utf8_matches_reference)
{
    static const char *const pieces[] = {
        "a",
        "0123456",
        "01234567",
        "abcdefghijklmnopq",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xf4\x8f\xbf\xbf",
        "\xed\x9f\xbf",
        "\xc3",
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\x80",
        "\xbf",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xe0\x9f\xbf",
        "\xed\xa0\x80",
        "\xf0\x8f\xbf\xbf",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xff",
        "\x7f",
    };
    enum { NP = sizeof pieces / sizeof pieces[0] };
    uint64_t x = 0x9e3779b97f4a7c15u;
    uint8_t buf[96];
    unsigned valid = 0, invalid = 0;
    for (int round = 0; round < 1500; round++) {
        size_t len = 0;
        for (;;) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* mostly valid pieces, so that long valid strings occur too */
            size_t k = (x >> 8) % 16 < 13 ? (x >> 16) % 9 : (x >> 16) % NP;
            size_t pl = strlen(pieces[k]);
            if (len + pl > sizeof buf) {
                break;
            }
            memcpy(buf + len, pieces[k], pl);
            len += pl;
            if ((x >> 40) % 8 == 0) {
                break;
            }
        }
        for (size_t off = 0; off < 9 && off <= len; off++) {
            for (size_t n = 0; off + n <= len; n++) {
                bool want = utf8_ref(buf + off, n);
                cr_assert_eq(weft__utf8_valid(buf + off, n), want, "round %d off %zu len %zu",
                             round, off, n);
                *(want ? &valid : &invalid) += 1;
            }
        }
    }
    cr_assert_gt(valid, 1000);
    cr_assert_gt(invalid, 1000);
}

/* ---------------------------------------------------------------- ops */

static uint8_t prev2[32];

static weft__op mkop(weft__op_kind k)
{
    weft__op op;
    memset(&op, 0, sizeof op);
    op.kind = k;
    op.coll = sview("n");
    op.entity = sview("e");
    if (k != WEFT__OP_DEL) {
        op.field = sview("f");
    }
    if (k == WEFT__OP_SET || k == WEFT__OP_ADD || k == WEFT__OP_REM) {
        op.value = view("\x01", 1);
    }
    if (k == WEFT__OP_INC) {
        op.delta = -2;
    }
    if (k == WEFT__OP_SET || k == WEFT__OP_REM) {
        weft__id_put(prev2, mkid(0x0102, 7));
        weft__id_put(prev2 + 16, mkid(0x0102, 8));
        op.prev = prev2;
        op.nprev = 2;
    }
    return op;
}

static bool bytes_eq(weft_bytes x, weft_bytes y)
{
    return x.len == y.len && (x.len == 0 || memcmp(x.ptr, y.ptr, x.len) == 0);
}

static bool op_eq(const weft__op *a, const weft__op *b)
{
    return a->kind == b->kind && bytes_eq(a->coll, b->coll) && bytes_eq(a->entity, b->entity) &&
           bytes_eq(a->field, b->field) && bytes_eq(a->value, b->value) && a->delta == b->delta &&
           a->nprev == b->nprev &&
           (a->nprev == 0 || memcmp(a->prev, b->prev, a->nprev * WEFT__ID_BYTES) == 0);
}

static const char *op_golden[] = {
    /* SET [0, "n", "e", "f", 1, bin(2 ids)] */
    "96 00 a1 6e a1 65 a1 66 01 c4 20"
    " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 07"
    " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 08",
    /* DEL [1, "n", "e"] */
    "93 01 a1 6e a1 65",
    /* INC [2, "n", "e", "f", -2] */
    "95 02 a1 6e a1 65 a1 66 fe",
    /* ADD [3, "n", "e", "f", 1] */
    "95 03 a1 6e a1 65 a1 66 01",
    /* REM [4, "n", "e", "f", 1, bin(2 ids)] */
    "96 04 a1 6e a1 65 a1 66 01 c4 20"
    " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 07"
    " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 08",
};

Test(crdt, op_golden_and_roundtrip)
{
    for (int k = WEFT__OP_SET; k <= WEFT__OP_REM; k++) {
        weft__op op = mkop((weft__op_kind)k), back;
        weft__buf b = {0};
        cr_assert_eq(weft__op_encode(&op, &b), 0, "%s: %s", weft__op_kind_name(k),
                     weft_last_error());
        assert_hex(&b, op_golden[k], weft__op_kind_name(k));
        cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), 0, "%s", weft_last_error());
        cr_assert(op_eq(&op, &back), "%s round trip", weft__op_kind_name(k));
        weft__buf_free(&b);
    }
    /* An empty prev is bin8 of length 0. */
    weft__op op = mkop(WEFT__OP_SET);
    op.nprev = 0;
    weft__buf b = {0};
    cr_assert_eq(weft__op_encode(&op, &b), 0);
    assert_hex(&b, "96 00 a1 6e a1 65 a1 66 01 c4 00", "set without prev");
    weft__buf_free(&b);
    cr_assert_str_eq(weft__op_kind_name(WEFT__OP_REM), "rem");
    cr_assert_str_eq(weft__op_kind_name(WEFT__OP_DEL), "del");
}

/* Every value type and int boundary through a SET payload and back. */
Test(crdt, op_roundtrip_every_value)
{
    const char *values[] = {
        "c0", "c2",          "c3",          "cb 3f f8 00 00 00 00 00 00",
        "a0", "a3 e2 82 ac", "c4 00",       "c4 02 00 ff",
        "90", "80",          "92 01 a1 61", "82 01 90 a1 61 81 a1 62 c0",
    };
    weft__op op = mkop(WEFT__OP_SET), back;
    weft__buf b = {0};
    for (size_t i = 0; i < sizeof values / sizeof values[0] + sizeof ints / sizeof ints[0]; i++) {
        uint8_t v[64];
        const char *hex = i < sizeof values / sizeof values[0]
                              ? values[i]
                              : ints[i - sizeof values / sizeof values[0]].hex;
        op.value = view(v, unhex(hex, v, sizeof v));
        for (int k = WEFT__OP_SET; k <= WEFT__OP_REM; k++) {
            if (k == WEFT__OP_DEL || k == WEFT__OP_INC) {
                continue;
            }
            op.kind = (weft__op_kind)k;
            op.nprev = k == WEFT__OP_ADD ? 0 : 2;
            weft__buf_reset(&b);
            cr_assert_eq(weft__op_encode(&op, &b), 0, "%s", hex);
            cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), 0, "%s: %s", hex, weft_last_error());
            cr_assert(op_eq(&op, &back), "value %s", hex);
        }
    }
    /* Deltas at every boundary. */
    op = mkop(WEFT__OP_INC);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        op.delta = ints[i].v;
        weft__buf_reset(&b);
        cr_assert_eq(weft__op_encode(&op, &b), 0);
        cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), 0);
        cr_assert_eq(back.delta, ints[i].v);
    }
    /* Multibyte names of the maximum length. */
    char name[WEFT_NAME_MAX + 1];
    for (size_t i = 0; i < 85; i++) {
        memcpy(name + 3 * i, "\xe2\x82\xac", 3);
    }
    name[255] = 0;
    op.coll = op.entity = op.field = view(name, 255);
    weft__buf_reset(&b);
    cr_assert_eq(weft__op_encode(&op, &b), 0, "%s", weft_last_error());
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), 0);
    cr_assert(op_eq(&op, &back));
    weft__buf_free(&b);
}

Test(crdt, op_every_truncation_and_trailing_byte_rejected)
{
    for (int k = WEFT__OP_SET; k <= WEFT__OP_REM; k++) {
        weft__op op = mkop((weft__op_kind)k), back;
        weft__buf b = {0};
        cr_assert_eq(weft__op_encode(&op, &b), 0);
        for (size_t n = b.len; n-- > 0;) {
            cr_assert_neq(weft__op_decode(b.ptr, n, &back), 0, "%s truncated to %zu accepted",
                          weft__op_kind_name(k), n);
        }
        cr_assert_eq(weft__buf_put(&b, "\x00", 1), 0);
        cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), WEFT_ECORRUPT);
        weft__buf_free(&b);
    }
}

/* Build a payload by hand (hex) and expect @p rc from decode. */
static void expect_decode(const char *hex, int rc)
{
    uint8_t p[2048];
    size_t n = unhex(hex, p, sizeof p);
    weft__op op;
    cr_assert_eq(weft__op_decode(p, n, &op), rc, "'%s': %s", hex, weft_last_error());
}

Test(crdt, op_decode_rejects)
{
    expect_decode("95 00 a1 6e a1 65 a1 66 01", WEFT_ECORRUPT);    /* SET with 5 elements */
    expect_decode("94 01 a1 6e a1 65 a1 66", WEFT_ECORRUPT);       /* DEL with 4 */
    expect_decode("93 05 a1 6e a1 65", WEFT_ECORRUPT);             /* unknown kind */
    expect_decode("93 cc 01 a1 6e a1 65", WEFT_ECORRUPT);          /* non-canonical kind */
    expect_decode("93 01 a0 a1 65", WEFT_ECORRUPT);                /* empty name */
    expect_decode("93 01 a2 6e 00 a1 65", WEFT_ECORRUPT);          /* NUL in name */
    expect_decode("93 01 a1 ff a1 65", WEFT_ECORRUPT);             /* invalid UTF-8 */
    expect_decode("93 01 a1 6e d9 01 65", WEFT_ECORRUPT);          /* str8 name */
    expect_decode("93 01 c4 01 6e a1 65", WEFT_ECORRUPT);          /* bin name */
    expect_decode("95 02 a1 6e a1 65 a1 66 cc 05", WEFT_ECORRUPT); /* non-canonical delta */
    expect_decode("95 02 a1 6e a1 65 a1 66 cf ff ff ff ff ff ff ff ff",
                  WEFT_ECORRUPT);                                           /* delta > INT64_MAX */
    expect_decode("95 02 a1 6e a1 65 a1 66 c0", WEFT_ECORRUPT);             /* delta nil */
    expect_decode("95 03 a1 6e a1 65 a1 66 ca 3f c0 00 00", WEFT_ECORRUPT); /* float32 value */
    expect_decode("95 03 a1 6e a1 65 a1 66 82 a1 62 02 a1 61 01", WEFT_ECORRUPT); /* unsorted map */
    expect_decode("96 00 a1 6e a1 65 a1 66 01 c4 01 00", WEFT_ECORRUPT); /* prev of 1 byte */
    expect_decode("96 00 a1 6e a1 65 a1 66 01 c0", WEFT_ECORRUPT);       /* prev nil */
    expect_decode("96 00 a1 6e a1 65 a1 66 01 c5 00 00", WEFT_ECORRUPT); /* prev bin16 */
    expect_decode("96 00 a1 6e a1 65 a1 66 01 c4 20"
                  " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 08"
                  " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 07",
                  WEFT_ECORRUPT); /* prev descending */
    expect_decode("96 00 a1 6e a1 65 a1 66 01 c4 20"
                  " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 07"
                  " 00 00 00 00 00 00 01 02 00 00 00 00 00 00 00 07",
                  WEFT_ECORRUPT); /* prev repeated */
    expect_decode("", WEFT_ECORRUPT);
    expect_decode("c0", WEFT_ECORRUPT);
    expect_decode("dd ff ff ff ff", WEFT_ECORRUPT);

    /* A name of 256 bytes: ELIMIT. */
    weft__buf b = {0};
    char name[300];
    memset(name, 'x', sizeof name);
    weft__mp_put_array(&b, 3);
    weft__mp_put_uint(&b, 1);
    weft__mp_put_str(&b, name, 256);
    weft__mp_put_str(&b, "e", 1);
    weft__op op;
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &op), WEFT_ELIMIT);
    /* 33 deep value: ELIMIT. */
    weft__buf_reset(&b);
    weft__mp_put_array(&b, 5);
    weft__mp_put_uint(&b, 3);
    weft__mp_put_str(&b, "n", 1);
    weft__mp_put_str(&b, "e", 1);
    weft__mp_put_str(&b, "f", 1);
    for (int i = 0; i < 32; i++) {
        weft__mp_put_array(&b, 1);
    }
    weft__mp_put_array(&b, 0);
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &op), WEFT_ELIMIT);
    b.len -= 2;
    weft__mp_put_array(&b, 0);
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &op), 0, "32 deep is fine: %s", weft_last_error());
    /* Over the payload limit. */
    uint8_t *big = calloc(1, WEFT_PAYLOAD_MAX + 1);
    cr_assert_eq(weft__op_decode(big, WEFT_PAYLOAD_MAX + 1, &op), WEFT_ELIMIT);
    free(big);
    weft__buf_free(&b);
}

Test(crdt, op_prev_limit)
{
    uint8_t *ids = malloc((WEFT_PREV_MAX + 1) * WEFT__ID_BYTES);
    for (uint32_t i = 0; i <= WEFT_PREV_MAX; i++) {
        weft__id_put(ids + i * WEFT__ID_BYTES, mkid(1000 + i, 1));
    }
    weft__op op = mkop(WEFT__OP_SET), back;
    op.prev = ids;
    op.nprev = WEFT_PREV_MAX;
    weft__buf b = {0};
    cr_assert_eq(weft__op_encode(&op, &b), 0);
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), 0);
    cr_assert_eq(back.nprev, WEFT_PREV_MAX);
    op.nprev = WEFT_PREV_MAX + 1;
    weft__buf_reset(&b);
    cr_assert_neq(weft__op_encode(&op, &b), 0);
    cr_assert_eq(b.len, 0);
    /* Hand-built payload with 1025 ids. */
    weft__mp_put_array(&b, 6);
    weft__mp_put_uint(&b, 0);
    weft__mp_put_str(&b, "n", 1);
    weft__mp_put_str(&b, "e", 1);
    weft__mp_put_str(&b, "f", 1);
    weft__mp_put_nil(&b);
    weft__mp_put_bin(&b, ids, (WEFT_PREV_MAX + 1) * WEFT__ID_BYTES);
    cr_assert_eq(weft__op_decode(b.ptr, b.len, &back), WEFT_ELIMIT);
    weft__buf_free(&b);
    free(ids);
}

Test(crdt, op_encode_rejects_invalid)
{
    weft__buf b = {0};
    weft__op op = mkop(WEFT__OP_SET);
    op.field = view("a\0b", 3);
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_SET);
    op.coll = view("\xff", 1);
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_SET);
    op.entity = view("", 0);
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_SET);
    op.value = view("\xcc\x05", 2); /* non-canonical */
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op.value = view("\x01\x02", 2); /* two objects */
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_SET);
    uint8_t desc[32];
    memcpy(desc, prev2 + 16, 16);
    memcpy(desc + 16, prev2, 16);
    op.prev = desc;
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_DEL);
    op.field = sview("f");
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_INC);
    op.prev = prev2;
    op.nprev = 1;
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    op = mkop(WEFT__OP_SET);
    op.kind = (weft__op_kind)9;
    cr_assert_eq(weft__op_encode(&op, &b), WEFT_EINVAL);
    cr_assert_eq(b.len, 0);
    weft__buf_free(&b);
}

Test(crdt, name_check)
{
    size_t len = 0;
    cr_assert_eq(weft__name_check("notes", "collection", &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(weft__name_check("caf\xc3\xa9", "field", &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_eq(weft__name_check("", "field", &len), WEFT_EINVAL);
    cr_assert(strstr(weft_last_error(), "field") != NULL, "%s", weft_last_error());
    cr_assert_eq(weft__name_check("\xc3", "entity", &len), WEFT_EINVAL);
    cr_assert(strstr(weft_last_error(), "entity") != NULL);
    cr_assert_eq(weft__name_check(NULL, "entity", &len), WEFT_EINVAL);
    char name[WEFT_NAME_MAX + 2];
    memset(name, 'a', sizeof name);
    name[WEFT_NAME_MAX] = 0;
    cr_assert_eq(weft__name_check(name, "entity", &len), 0);
    cr_assert_eq(len, WEFT_NAME_MAX);
    name[WEFT_NAME_MAX] = 'a';
    name[WEFT_NAME_MAX + 1] = 0;
    cr_assert_eq(weft__name_check(name, "entity", &len), WEFT_ELIMIT);
    cr_assert_eq(len, WEFT_NAME_MAX, "out-param untouched on failure");
}

/* ---------------------------------------------------------------- field state */

static weft__op vop(weft__op_kind k, const char *val_hex, uint8_t *vbuf, const uint8_t *prev,
                    uint32_t nprev)
{
    weft__op op = mkop(k);
    if (val_hex != NULL) {
        op.value = view(vbuf, unhex(val_hex, vbuf, 32));
    }
    op.prev = prev;
    op.nprev = nprev;
    return op;
}

#define ID1    "00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 01"
#define ID2    "00 00 00 00 00 00 02 00 00 00 00 00 00 00 00 01"
#define ID3    "00 00 00 00 00 00 03 00 00 00 00 00 00 00 00 02"
#define SUM_M2 "ff ff ff ff ff ff ff fe" /* -2 as a wrapped uint64 */

Test(crdt, fstate_golden_records)
{
    weft__fstate st;
    weft__fstate_init(&st);
    weft__buf b = {0};
    weft_id none = {0, 0};
    uint8_t v1[32], v2[32], v3[32];

    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    cr_assert_eq(b.len, 0, "empty state is zero bytes");

    weft__op set = vop(WEFT__OP_SET, "05", v1, NULL, 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x100, 1), &set, none), 1);
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    assert_hex(&b, "91 92 c4 10 " ID1 " 05", "register");

    weft__fstate_free(&st);
    weft__buf_reset(&b);
    weft__op inc = vop(WEFT__OP_INC, NULL, v1, NULL, 0);
    inc.delta = -2;
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x100, 1), &inc, none), 1);
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    assert_hex(&b, "92 90 c4 20 " SUM_M2 " 00 00 00 00 00 00 00 01 " ID1, "counter");
    /* Any number of increments: still 36 bytes (the rows are the store's). */
    weft__op inc7 = inc;
    inc7.delta = 7;
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x50, 9), &inc7, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x300, 2), &inc7, none), 1);
    weft__buf_reset(&b);
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    assert_hex(&b, "92 90 c4 20 00 00 00 00 00 00 00 0c 00 00 00 00 00 00 00 03 " ID3,
               "counter of three increments");

    weft__fstate_free(&st);
    weft__buf_reset(&b);
    weft__op add = vop(WEFT__OP_ADD, "a1 61", v1, NULL, 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x100, 1), &add, none), 1);
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    assert_hex(&b, "93 90 c4 00 92 a1 61 c4 10 " ID1, "set");

    /* All three kinds, two heads, two elements. */
    weft__op s1 = vop(WEFT__OP_SET, "c3", v2, NULL, 0);
    weft__op s2 = vop(WEFT__OP_SET, "a0", v3, NULL, 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x200, 1), &s1, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x300, 2), &s2, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x200, 1), &inc, none), 1);
    uint8_t v4[32];
    weft__op add0 = vop(WEFT__OP_ADD, "00", v4, NULL, 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x300, 2), &add0, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(0x200, 1), &add, none), 1);
    weft__buf_reset(&b);
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    assert_hex(&b,
               "93 93 c4 20 " ID2 ID3 " c3 a0"
               " c4 20 " SUM_M2 " 00 00 00 00 00 00 00 01 " ID2 " 94 00 c4 10 " ID3
               " a1 61 c4 20 " ID1 ID2,
               "all kinds");

    /* Decode and re-encode: identical; visible = the newest kind. */
    weft__fstate d;
    weft__fstate_init(&d);
    cr_assert_eq(weft__fstate_decode(b.ptr, b.len, &d), 0, "%s", weft_last_error());
    weft__buf e = {0};
    cr_assert_eq(weft__fstate_encode(&d, &e), 0);
    assert_bytes(e.ptr, e.len, b.ptr, b.len, "decode/encode");
    weft__visible vis;
    weft__buf scratch = {0};
    cr_assert_eq(weft__fstate_visible(&d, &scratch, &vis), 0);
    /* Newest items: head 0x300/2, entry 0x200/1, add 0x300/2: tie between
     * register and set cannot happen with real ids (unique), here the set
     * add 0x300/2 equals the head id, and the register wins ties. */
    cr_assert_eq(vis.kind, WEFT_KIND_REGISTER);
    cr_assert_eq(vis.heads, 2);
    cr_assert(weft__fstate_conflict(&d));
    cr_assert_eq(vis.value.len, 1);
    cr_assert_eq(((const uint8_t *)vis.value.ptr)[0], 0xa0);

    weft__fstate_free(&d);
    weft__fstate_free(&st);
    weft__buf_free(&b);
    weft__buf_free(&e);
    weft__buf_free(&scratch);
}

Test(crdt, fstate_visible_values)
{
    weft__fstate st;
    weft__fstate_init(&st);
    weft_id none = {0, 0};
    weft__buf scratch = {0};
    weft__visible vis;
    cr_assert_eq(weft__fstate_visible(&st, &scratch, &vis), 0);
    cr_assert_eq(vis.kind, 0);

    weft__op inc = mkop(WEFT__OP_INC);
    inc.delta = INT64_MAX;
    cr_assert_eq(weft__fstate_apply(&st, mkid(10, 1), &inc, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(11, 1), &inc, none), 1);
    inc.delta = 5;
    cr_assert_eq(weft__fstate_apply(&st, mkid(12, 1), &inc, none), 1);
    /* An INC is not recognised as present (its id lives in the caller's
     * rows): the caller applies each once. Hidden ones do not count. */
    cr_assert_eq(weft__fstate_apply(&st, mkid(9, 1), &inc, mkid(9, 1)), 0, "hidden");
    cr_assert_eq(st.ctr.count, 3);
    cr_assert_eq(st.ctr.newest.hlc, 12);
    cr_assert_eq(weft__fstate_visible(&st, &scratch, &vis), 0);
    cr_assert_eq(vis.kind, WEFT_KIND_COUNTER);
    cr_assert_eq(vis.id.hlc, 12);
    /* 2 * INT64_MAX + 5 wraps to 3. */
    cr_assert_eq(vis.value.len, 1);
    cr_assert_eq(((const uint8_t *)vis.value.ptr)[0], 0x03);

    uint8_t v[32];
    weft__op add = vop(WEFT__OP_ADD, "a1 62", v, NULL, 0);
    uint8_t w[32];
    weft__op add2 = vop(WEFT__OP_ADD, "01", w, NULL, 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(20, 1), &add, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(21, 2), &add2, none), 1);
    weft__buf_reset(&scratch);
    cr_assert_eq(weft__fstate_visible(&st, &scratch, &vis), 0);
    cr_assert_eq(vis.kind, WEFT_KIND_SET);
    cr_assert_eq(vis.id.hlc, 21);
    uint8_t want[] = {0x92, 0x01, 0xa1, 0x62};
    assert_bytes(vis.value.ptr, vis.value.len, want, sizeof want, "set value");

    /* Remove "b" naming its add: the element goes. */
    uint8_t pid[16];
    weft__id_put(pid, mkid(20, 1));
    weft__op rem = vop(WEFT__OP_REM, "a1 62", v, pid, 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(30, 1), &rem, none), 1);
    cr_assert_eq(weft__fstate_apply(&st, mkid(30, 1), &rem, none), 0);
    cr_assert_eq(st.nelems, 1);

    /* Prune below 25: the element goes; the counter summary is left to the
     * caller, who removes its rows oldest first (10, 11, 12). */
    cr_assert_eq(weft__fstate_prune(&st, mkid(25, 0)), 1);
    cr_assert_eq(st.nelems, 0);
    cr_assert_eq(st.ctr.count, 3);
    weft__fstate bad = st;
    cr_assert_eq(weft__fstate_counter_sub(&bad, INT64_MAX), 0);
    cr_assert_eq(weft__fstate_counter_sub(&bad, INT64_MAX), 0);
    cr_assert_eq(bad.ctr.newest.hlc, 12, "newest stays while a row is left");
    cr_assert_eq(weft__fstate_counter_sub(&bad, 4), WEFT_ECORRUPT, "last row must zero the sum");
    cr_assert_eq(bad.ctr.count, 1, "unchanged on failure");
    cr_assert_eq(weft__fstate_counter_sub(&st, INT64_MAX), 0);
    cr_assert_eq(weft__fstate_counter_sub(&st, INT64_MAX), 0);
    cr_assert_eq(weft__fstate_counter_sub(&st, 5), 0);
    cr_assert_eq(st.ctr.count, 0);
    cr_assert_eq(st.ctr.newest.hlc, 0);
    cr_assert_eq(weft__fstate_counter_sub(&st, 0), WEFT_ECORRUPT, "no row left to remove");
    cr_assert(weft__fstate_empty(&st));
    cr_assert_eq(weft__fstate_prune(&st, mkid(25, 0)), 0);
    /* An op at or below the tombstone is hidden. */
    cr_assert_eq(weft__fstate_apply(&st, mkid(25, 0), &add, mkid(25, 0)), 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(24, 9), &add, mkid(25, 0)), 0);
    cr_assert_eq(weft__fstate_apply(&st, mkid(25, 1), &add, mkid(25, 0)), 1);
    /* DEL cannot be merged into a field. */
    weft__op del = mkop(WEFT__OP_DEL);
    cr_assert_eq(weft__fstate_apply(&st, mkid(40, 1), &del, none), WEFT_EINVAL);
    weft__fstate_free(&st);
    weft__fstate_free(&st); /* safe twice */
    weft__buf_free(&scratch);
}

Test(crdt, fstate_decode_rejects)
{
    static const char *bad[] = {
        "90",                                          /* no sections */
        "94 90 c4 00 90 90",                           /* four sections */
        "91 90",                                       /* trailing empty heads */
        "92 90 c4 00",                                 /* trailing empty counter */
        "93 90 c4 00 90",                              /* trailing empty elems */
        "91 91 c4 00",                                 /* heads array of one */
        "91 92 c4 10 " ID1,                            /* heads: value missing */
        "91 92 c4 20 " ID1 ID2 " 01",                  /* two ids, one value */
        "91 93 c4 20 " ID2 ID1 " 01 02",               /* ids descending */
        "91 93 c4 20 " ID1 ID1 " 01 02",               /* ids repeated */
        "91 92 c4 10 " ID1 " cc 05",                   /* non-canonical value */
        "91 92 c4 10 " ID1 " 05 00",                   /* trailing byte */
        "92 90 c4 10 " ID1,                            /* counter not 32 bytes */
        "92 90 c4 18 " ID1 " ff ff ff ff ff ff ff fe", /* old layout: one (id, delta) */
        "92 90 c4 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 " ID1, /* count 0 */
        "93 90 c4 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 " ID1
        " 92 01 c4 10 " ID1,                             /* count 0 before elems */
        "93 90 c4 00 91 01",                             /* odd elems array */
        "93 90 c4 00 92 01 c4 00",                       /* element without adds */
        "93 90 c4 00 94 02 c4 10 " ID1 " 01 c4 10 " ID1, /* elements descending */
        "93 90 c4 00 94 01 c4 10 " ID1 " 01 c4 10 " ID1, /* elements repeated */
        "93 90 c4 00 92 01 c4 20 " ID2 ID1,              /* adds descending */
        "dd ff ff ff ff",
        "91 dd ff ff ff ff",
        "91 92 c6 ff ff ff ff",
        "c0",
    };
    weft__fstate st;
    weft__fstate_init(&st);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[256];
        size_t n = unhex(bad[i], in, sizeof in);
        weft__alloc_fail_after(-1);
        int rc = weft__fstate_decode(in, n, &st);
        long allocs = weft__alloc_fail_after(-1);
        cr_assert(rc == WEFT_ECORRUPT || rc == WEFT_ELIMIT, "case %zu '%s' gave %d", i, bad[i], rc);
        cr_assert(weft__fstate_empty(&st), "state emptied on failure");
        cr_assert_leq(allocs, 3, "case %zu: %ld allocations", i, allocs);
    }
    weft__fstate_free(&st);
}

/* Reusing a state across decodes keeps capacity: no allocation once warm. */
Test(crdt, fstate_decode_reuses_capacity)
{
    weft__fstate st;
    weft__fstate_init(&st);
    weft_id none = {0, 0};
    uint8_t vals[8][32];
    for (int i = 0; i < 8; i++) {
        char hex[16];
        snprintf(hex, sizeof hex, "%02x", i);
        weft__op add = vop(WEFT__OP_ADD, hex, vals[i], NULL, 0);
        cr_assert_eq(weft__fstate_apply(&st, mkid(100 + i, 1), &add, none), 1);
        weft__op set = vop(WEFT__OP_SET, hex, vals[i], NULL, 0);
        cr_assert_eq(weft__fstate_apply(&st, mkid(100 + i, 2), &set, none), 1);
    }
    weft__buf b = {0};
    cr_assert_eq(weft__fstate_encode(&st, &b), 0);
    weft__fstate d;
    weft__fstate_init(&d);
    cr_assert_eq(weft__fstate_decode(b.ptr, b.len, &d), 0);
    weft__alloc_fail_after(-1);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(weft__fstate_decode(b.ptr, b.len, &d), 0);
    }
    cr_assert_eq(weft__alloc_fail_after(-1), 0);
    weft__buf e = {0};
    cr_assert_eq(weft__fstate_encode(&d, &e), 0);
    assert_bytes(e.ptr, e.len, b.ptr, b.len, "reuse");
    weft__fstate_free(&st);
    weft__fstate_free(&d);
    weft__buf_free(&b);
    weft__buf_free(&e);
}

/* Every allocation failure in apply leaves the state exactly as it was. */
Test(crdt, fstate_apply_alloc_failure)
{
    weft_id none = {0, 0};
    uint8_t vals[40][32];
    for (long fail = 0; fail < 40; fail++) {
        weft__fstate st;
        weft__fstate_init(&st);
        weft__buf before = {0}, after = {0};
        int failures = 0;
        for (int i = 0; i < 40; i++) {
            char hex[16];
            snprintf(hex, sizeof hex, "%02x", i % 7);
            weft__op_kind k = (weft__op_kind)(i % 3 == 0   ? WEFT__OP_SET
                                              : i % 3 == 1 ? WEFT__OP_ADD
                                                           : WEFT__OP_INC);
            weft__op op = vop(k, k == WEFT__OP_INC ? NULL : hex, vals[i], NULL, 0);
            weft__buf_reset(&before);
            cr_assert_eq(weft__fstate_encode(&st, &before), 0);
            weft__alloc_fail_after(i == 20 ? fail : -1);
            int rc = weft__fstate_apply(&st, mkid(1000 + i, 1), &op, none);
            weft__alloc_fail_after(-1);
            if (rc == WEFT_ENOMEM) {
                failures++;
                weft__buf_reset(&after);
                cr_assert_eq(weft__fstate_encode(&st, &after), 0);
                assert_bytes(after.ptr, after.len, before.ptr, before.len, "unchanged on ENOMEM");
            } else {
                cr_assert_eq(rc, 1);
            }
        }
        cr_assert_leq(failures, 1);
        weft__fstate_free(&st);
        weft__buf_free(&before);
        weft__buf_free(&after);
    }
}

/* ---------------------------------------------------------------- mutation */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    return splitmix_next(&rng_state);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : dflt;
}

Test(crdt, random_mutations, .timeout = 120)
{
    uint64_t seed = env_u64("WEFT_SEED", 0x5eedc0dec);
    unsigned rounds = (unsigned)env_u64("WEFT_MUTATIONS", 200000);
    rng_state = seed;

    /* Corpus: every op kind and a few state records and values. */
    weft__buf corpus[16];
    int kinds[16]; /* 0 op, 1 state, 2 value */
    size_t nc = 0;
    for (int k = WEFT__OP_SET; k <= WEFT__OP_REM; k++) {
        weft__op op = mkop((weft__op_kind)k);
        uint8_t v[64];
        if (k == WEFT__OP_ADD) {
            op.value = view(
                v, unhex("82 a1 61 92 01 cb 3f f8 00 00 00 00 00 00 a1 62 c4 01 00", v, sizeof v));
        }
        memset(&corpus[nc], 0, sizeof corpus[nc]);
        cr_assert_eq(weft__op_encode(&op, &corpus[nc]), 0);
        kinds[nc++] = 0;
    }
    {
        weft__fstate st;
        weft__fstate_init(&st);
        weft_id none = {0, 0};
        uint8_t v[6][32];
        weft__op ops[6] = {
            vop(WEFT__OP_SET, "a3 e2 82 ac", v[0], NULL, 0),
            vop(WEFT__OP_SET, "92 01 02", v[1], NULL, 0),
            vop(WEFT__OP_INC, NULL, v[2], NULL, 0),
            vop(WEFT__OP_ADD, "01", v[3], NULL, 0),
            vop(WEFT__OP_ADD, "a1 61", v[4], NULL, 0),
            vop(WEFT__OP_ADD, "81 01 c0", v[5], NULL, 0),
        };
        for (int i = 0; i < 6; i++) {
            cr_assert(weft__fstate_apply(&st, mkid(0x1000 + (uint64_t)i, 1 + (uint64_t)i % 2),
                                         &ops[i], none) >= 0);
            memset(&corpus[nc], 0, sizeof corpus[nc]);
            cr_assert_eq(weft__fstate_encode(&st, &corpus[nc]), 0);
            kinds[nc++] = 1;
        }
        weft__fstate_free(&st);
    }
    const char *vals[] = {
        "83 01 90 a1 61 97 01 ff cb 3f f8 00 00 00 00 00 00 c0 c3 a2 c3 a9 c4 01 01"
        " a1 62 81 a1 63 80",
        "dc 00 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e cd 01 00"};
    for (size_t i = 0; i < 2; i++) {
        uint8_t v[128];
        memset(&corpus[nc], 0, sizeof corpus[nc]);
        weft__buf_put(&corpus[nc], v, unhex(vals[i], v, sizeof v));
        kinds[nc++] = 2;
    }

    weft__fstate st;
    weft__fstate_init(&st);
    weft__buf m = {0}, re = {0};
    unsigned accepted = 0;
    for (unsigned round = 0; round < rounds; round++) {
        size_t c = rnd() % nc;
        weft__buf_reset(&m);
        weft__buf_put(&m, corpus[c].ptr, corpus[c].len);
        unsigned edits = 1 + (unsigned)(rnd() % 3);
        for (unsigned e = 0; e < edits && m.len > 0; e++) {
            uint64_t r = rnd();
            size_t at = (size_t)(r >> 8) % m.len;
            switch (r % 5) {
            case 0: /* flip one bit */
                m.ptr[at] ^= (uint8_t)(1u << ((r >> 4) % 8));
                break;
            case 1: /* random byte */
                m.ptr[at] = (uint8_t)(r >> 40);
                break;
            case 2: /* truncate */
                m.len = at;
                break;
            case 3: /* interesting byte */
                m.ptr[at] = (const uint8_t[]){
                    0x00, 0x7f, 0x80, 0xc0, 0xc4, 0xcc, 0xd0, 0xd9,
                    0xdc, 0xdd, 0xde, 0xdf, 0xff, 0x90, 0x10, 0xa0}[(r >> 50) % 16];
                break;
            default: /* insert a byte */
                if (weft__buf_reserve(&m, 1) == 0) {
                    memmove(m.ptr + at + 1, m.ptr + at, m.len - at);
                    m.ptr[at] = (uint8_t)(r >> 32);
                    m.len++;
                }
                break;
            }
        }
        weft__buf_reset(&re);
        int rc;
        if (kinds[c] == 0) {
            weft__op op;
            rc = weft__op_decode(m.ptr, m.len, &op);
            if (rc == 0) {
                cr_assert_eq(weft__op_encode(&op, &re), 0, "seed %llu round %u",
                             (unsigned long long)seed, round);
            }
        } else if (kinds[c] == 1) {
            rc = weft__fstate_decode(m.ptr, m.len, &st);
            if (rc == 0) {
                cr_assert_eq(weft__fstate_encode(&st, &re), 0);
            }
        } else {
            size_t used;
            rc = weft__mp_check(m.ptr, m.len, WEFT_DEPTH_MAX, &used);
            if (rc == 0 && used == m.len) {
                cr_assert_eq(weft__mp_canon(m.ptr, m.len, &re), 0, "seed %llu round %u",
                             (unsigned long long)seed, round);
            } else {
                rc = -1;
                /* Whatever canon makes of it must itself be canonical. */
                if (weft__mp_canon(m.ptr, m.len, &re) == 0) {
                    cr_assert_eq(weft__mp_check(re.ptr, re.len, WEFT_DEPTH_MAX, &used), 0,
                                 "seed %llu round %u: canon output not canonical",
                                 (unsigned long long)seed, round);
                    cr_assert_eq(used, re.len);
                }
            }
        }
        if (rc == 0) {
            accepted++;
            cr_assert(re.len == m.len && (m.len == 0 || memcmp(re.ptr, m.ptr, m.len) == 0),
                      "seed %llu round %u: accepted mutant of corpus %zu re-encodes differently",
                      (unsigned long long)seed, round, c);
        } else {
            cr_assert(rc < 0);
        }
    }
    fprintf(stderr, "[----] random_mutations: %u rounds, %u mutants accepted (seed %llu)\n", rounds,
            accepted, (unsigned long long)seed);
    for (size_t i = 0; i < nc; i++) {
        weft__buf_free(&corpus[i]);
    }
    weft__fstate_free(&st);
    weft__buf_free(&m);
    weft__buf_free(&re);
}

/* Every truncation of state records is rejected. */
Test(crdt, fstate_every_truncation_rejected)
{
    weft__fstate st, d;
    weft__fstate_init(&st);
    weft__fstate_init(&d);
    weft_id none = {0, 0};
    uint8_t v[3][32];
    weft__op s = vop(WEFT__OP_SET, "a1 61", v[0], NULL, 0);
    weft__op i = vop(WEFT__OP_INC, NULL, v[1], NULL, 0);
    weft__op a = vop(WEFT__OP_ADD, "92 01 02", v[2], NULL, 0);
    weft__buf b = {0};
    const weft__op *ops[] = {&s, &i, &a};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(weft__fstate_apply(&st, mkid(50 + (uint64_t)k, 3), ops[k], none), 1);
        weft__buf_reset(&b);
        cr_assert_eq(weft__fstate_encode(&st, &b), 0);
        for (size_t n = b.len; n-- > 1;) {
            cr_assert_neq(weft__fstate_decode(b.ptr, n, &d), 0, "record truncated to %zu", n);
        }
        cr_assert_eq(weft__fstate_decode(b.ptr, b.len, &d), 0);
    }
    weft__fstate_free(&st);
    weft__fstate_free(&d);
    weft__buf_free(&b);
}
