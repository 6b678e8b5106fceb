/*  zim_sdk_json.c: msgpack to JSON for the C SDK's public helpers
    zim_body_to_json and zim_json_string (zim_client.h), used by zim-cli to
    print bodies. Hand-written rather than through jansson: it must keep
    uint64 values exact (jansson's integers are int64), write non-string
    map keys as strings, and walk any nesting depth without recursion; and
    the installed library would otherwise need jansson too.
*/
#include "config.h"
#include "sdk/c/zim_sdk_json.h"
#include "msg/zim_mp.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A growable text buffer.
typedef struct {
    char *data;   //  the text, NUL-terminated
    size_t size;  //  bytes used, without the NUL
    size_t alloc; //  bytes allocated
} s_text_t;

static void s_text_reserve (s_text_t *t, size_t more)
{
    if (t->size + more + 1 <= t->alloc)
        return;
    size_t alloc = t->alloc ? t->alloc : 64;
    while (alloc < t->size + more + 1)
        alloc *= 2;
    t->data = zim_realloc (t->data, alloc);
    t->alloc = alloc;
}

static void s_text_add (s_text_t *t, const char *s, size_t n)
{
    s_text_reserve (t, n);
    memcpy (t->data + t->size, s, n);
    t->size += n;
    t->data[t->size] = 0;
}

static void s_text_cstr (s_text_t *t, const char *s)
{
    s_text_add (t, s, strlen (s));
}

static void s_text_char (s_text_t *t, char c)
{
    s_text_add (t, &c, 1);
}

//  Length of the valid UTF-8 sequence at p (at most n bytes), or 0.
static size_t s_utf8_len (const unsigned char *p, size_t n)
{
    uint32_t cp;
    size_t len;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = p[0] & 0x07;
    } else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    //  no overlong forms, no surrogates, nothing above U+10FFFF
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

//  Appends bytes as a JSON string with quotes.
static void s_text_jstr (s_text_t *t, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    s_text_reserve (t, n + 2);
    s_text_char (t, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            s_text_add (t, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named)
                s_text_cstr (t, named);
            else {
                snprintf (esc, sizeof esc, "\\u%04x", c);
                s_text_cstr (t, esc);
            }
            i++;
        } else if (c < 0x80) {
            //  copy the run of plain ASCII at once
            size_t j = i;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\')
                j++;
            s_text_add (t, s + i, j - i);
            i = j;
        } else {
            size_t len = s_utf8_len (p + i, n - i);
            if (len) {
                s_text_add (t, s + i, len);
                i += len;
            } else {
                s_text_cstr (t, "\\ufffd");
                i++;
            }
        }
    }
    s_text_char (t, '"');
}

//  Appends bytes as a base64 string with quotes.
static void s_text_b64 (s_text_t *t, const unsigned char *p, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s_text_reserve (t, (n + 2) / 3 * 4 + 2);
    s_text_char (t, '"');
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        char q[4] = {b64[p[i] >> 2], b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], b64[p[i + 2] & 63]};
        s_text_add (t, q, 4);
    }
    if (n - i == 1) {
        char q[4] = {b64[p[i] >> 2], b64[(p[i] & 3) << 4], '=', '='};
        s_text_add (t, q, 4);
    } else if (n - i == 2) {
        char q[4] = {b64[p[i] >> 2], b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     b64[(p[i + 1] & 15) << 2], '='};
        s_text_add (t, q, 4);
    }
    s_text_char (t, '"');
}

//  Reads a big-endian unsigned integer of n bytes.
static uint64_t s_be (const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

//  One open container while converting.
typedef struct {
    uint32_t left; //  elements (arrays) or pairs (maps) still to come
    bool map;      //  a map
    bool first;    //  nothing written inside yet
    bool want_key; //  maps: the next value is a key
} s_jlevel_t;

static int s_json_value (s_text_t *t, zim_rd_t *rd, int key_depth);

//  Converts one scalar (not array or map) value. Returns 0 or -1.
static int s_json_scalar (s_text_t *t, zim_rd_t *rd)
{
    char num[40];
    zim_str_t v;
    switch (zim_rd_peek (rd)) {
    case ZIM_MP_NIL:
        if (zim_rd_nil (rd))
            return -1;
        s_text_cstr (t, "null");
        return 0;
    case ZIM_MP_BOOL: {
        bool b;
        if (zim_rd_bool (rd, &b))
            return -1;
        s_text_cstr (t, b ? "true" : "false");
        return 0;
    }
    case ZIM_MP_UINT: {
        uint64_t u;
        if (zim_rd_uint (rd, &u))
            return -1;
        snprintf (num, sizeof num, "%" PRIu64, u);
        s_text_cstr (t, num);
        return 0;
    }
    case ZIM_MP_INT: {
        int64_t i;
        if (zim_rd_int (rd, &i))
            return -1;
        snprintf (num, sizeof num, "%" PRId64, i);
        s_text_cstr (t, num);
        return 0;
    }
    case ZIM_MP_FLOAT: {
        if (zim_rd_skip (rd, &v))
            return -1;
        const unsigned char *p = (const unsigned char *)v.ptr;
        double d;
        if (p[0] == 0xca && v.len == 5) {
            uint32_t bits = (uint32_t)s_be (p + 1, 4);
            float f;
            memcpy (&f, &bits, 4);
            d = f;
        } else if (p[0] == 0xcb && v.len == 9) {
            uint64_t bits = s_be (p + 1, 8);
            memcpy (&d, &bits, 8);
        } else
            return -1;
        if (isnan (d) || isinf (d))
            s_text_cstr (t, "null");
        else {
            snprintf (num, sizeof num, "%.17g", d);
            s_text_cstr (t, num);
        }
        return 0;
    }
    case ZIM_MP_STR:
        if (zim_rd_str (rd, &v))
            return -1;
        s_text_jstr (t, v.ptr, v.len);
        return 0;
    case ZIM_MP_BIN:
        if (zim_rd_bin (rd, &v))
            return -1;
        s_text_b64 (t, (const unsigned char *)v.ptr, v.len);
        return 0;
    case ZIM_MP_EXT: {
        if (zim_rd_skip (rd, &v))
            return -1;
        const unsigned char *p = (const unsigned char *)v.ptr;
        size_t hdr;
        if (p[0] >= 0xd4 && p[0] <= 0xd8)
            hdr = 1; //  fixext: type follows
        else if (p[0] == 0xc7)
            hdr = 2;
        else if (p[0] == 0xc8)
            hdr = 3;
        else if (p[0] == 0xc9)
            hdr = 5;
        else
            return -1;
        if (v.len < hdr + 1)
            return -1;
        snprintf (num, sizeof num, "{\"ext\":%d,\"data\":", (int)(int8_t)p[hdr]);
        s_text_cstr (t, num);
        s_text_b64 (t, p + hdr + 1, v.len - hdr - 1);
        s_text_char (t, '}');
        return 0;
    }
    default:
        return -1;
    }
}

//  Converts one value of any type; containers are walked with an explicit
//  stack so that deep nesting cannot exhaust the C stack. Non-string map
//  keys recurse (their JSON text becomes the key), up to a small depth.
static int s_json_value (s_text_t *t, zim_rd_t *rd, int key_depth)
{
    s_jlevel_t *stack = NULL;
    size_t depth = 0, alloc = 0;
    do {
        if (depth > 0) {
            s_jlevel_t *top = &stack[depth - 1];
            if (top->map && top->want_key) {
                if (top->left == 0) {
                    s_text_char (t, '}');
                    depth--;
                    continue;
                }
                if (!top->first)
                    s_text_char (t, ',');
                top->first = false;
                top->want_key = false;
                zim_str_t key;
                if (zim_rd_peek (rd) == ZIM_MP_STR) {
                    if (zim_rd_str (rd, &key))
                        goto malformed;
                    s_text_jstr (t, key.ptr, key.len);
                } else {
                    if (key_depth >= 8 || zim_rd_skip (rd, &key))
                        goto malformed;
                    s_text_t kt = {NULL, 0, 0};
                    zim_rd_t kr;
                    zim_rd_init (&kr, key.ptr, key.len);
                    if (s_json_value (&kt, &kr, key_depth + 1)) {
                        free (kt.data);
                        goto malformed;
                    }
                    s_text_jstr (t, kt.data, kt.size);
                    free (kt.data);
                }
                s_text_char (t, ':');
                continue; //  now the value
            }
            if (top->map) {
                top->want_key = true;
                top->left--;
            } else {
                if (top->left == 0) {
                    s_text_char (t, ']');
                    depth--;
                    continue;
                }
                if (!top->first)
                    s_text_char (t, ',');
                top->first = false;
                top->left--;
            }
        }
        zim_mp_type_t type = zim_rd_peek (rd);
        if (type == ZIM_MP_ARRAY || type == ZIM_MP_MAP) {
            uint32_t count;
            if (type == ZIM_MP_ARRAY ? zim_rd_array (rd, &count) : zim_rd_map (rd, &count))
                goto malformed;
            //  every element takes at least one byte: refuse absurd counts early
            if (count > zim_rd_left (rd))
                goto malformed;
            if (depth == alloc) {
                alloc = alloc ? alloc * 2 : 16;
                stack = zim_realloc (stack, alloc * sizeof *stack);
            }
            stack[depth].left = count;
            stack[depth].map = type == ZIM_MP_MAP;
            stack[depth].first = true;
            stack[depth].want_key = true;
            depth++;
            s_text_char (t, type == ZIM_MP_MAP ? '{' : '[');
        } else if (s_json_scalar (t, rd))
            goto malformed;
    } while (depth > 0);
    free (stack);
    return 0;
malformed:
    free (stack);
    return -1;
}

char *zim_body_to_json (const void *msgpack, size_t len)
{
    if (!msgpack || len == 0)
        return NULL;
    s_text_t t = {NULL, 0, 0};
    zim_rd_t rd;
    zim_rd_init (&rd, msgpack, len);
    if (s_json_value (&t, &rd, 0) || zim_rd_left (&rd) != 0) {
        free (t.data);
        return NULL;
    }
    return t.data;
}

char *zim_json_string (const char *s)
{
    s_text_t t = {NULL, 0, 0};
    s_text_jstr (&t, s ? s : "", s ? strlen (s) : 0);
    return t.data;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)
#define S_MP(s) s, sizeof (s) - 1 //  a msgpack literal and its length

void zim_sdk_json_test (bool verbose)
{
    struct {
        const char *mp;   //  msgpack
        size_t len;       //  its length
        const char *json; //  expected, NULL = refused
    } cases[] = {
        {S_MP ("\xa2\x68\x69"), "\"hi\""},
        {S_MP ("\xc0"), "null"},
        {S_MP ("\xc3"), "true"},
        {S_MP ("\xff"), "-1"},
        {S_MP ("\xd0\x05"), "5"},
        {S_MP ("\xd3\x00\x00\x00\x00\x00\x00\x00\x07"), "7"},
        {S_MP ("\xcc\xff"), "255"},
        {S_MP ("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), "18446744073709551615"},
        {S_MP ("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), "-9223372036854775808"},
        {S_MP ("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"), "1.5"},
        {S_MP ("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"), "null"},
        {S_MP ("\xca\x3f\xc0\x00\x00"), "1.5"},
        {S_MP ("\x82\xa1\x61\x01\x01\x92\xc2\xa0"), "{\"a\":1,\"1\":[false,\"\"]}"},
        {S_MP ("\x81\x92\x01\x02\xc0"), "{\"[1,2]\":null}"},
        {S_MP ("\xc4\x03\x01\x02\x03"), "\"AQID\""},
        {S_MP ("\xc4\x01\xff"), "\"/w==\""},
        {S_MP ("\xc4\x00"), "\"\""},
        {S_MP ("\xd4\x05\x41"), "{\"ext\":5,\"data\":\"QQ==\"}"},
        {S_MP ("\xa5\x22\x5c\x0a\x01\x7f"), "\"\\\"\\\\\\n\\u0001\\u007f\""},
        {S_MP ("\xa4\xc3\xa9\xff\x41"), "\"\xc3\xa9\\ufffdA\""},
        {S_MP ("\xa3\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\""}, //  a surrogate is not UTF-8
        {S_MP ("\x90"), "[]"},
        {S_MP ("\x80"), "{}"},
        {S_MP ("\x91\x80"), "[{}]"},
        {S_MP ("\x92\x01"), NULL},             //  truncated
        {S_MP ("\x01\x02"), NULL},             //  two values
        {S_MP ("\xdd\xff\xff\xff\xff"), NULL}, //  absurd count
        {S_MP ("\xc1"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *json = zim_body_to_json (cases[i].mp, cases[i].len);
        if (verbose || !(cases[i].json ? json && streq (json, cases[i].json) : json == NULL))
            printf ("\ncase %zu -> %s (want %s)", i, json ? json : "NULL",
                    cases[i].json ? cases[i].json : "NULL");
        assert (cases[i].json ? json && streq (json, cases[i].json) : json == NULL);
        free (json);
    }
    //  Deep nesting does not exhaust the stack.
    size_t deep = 200000;
    unsigned char *mp = zim_malloc (deep + 1);
    memset (mp, 0x91, deep);
    mp[deep] = 0xc0;
    char *json = zim_body_to_json (mp, deep + 1);
    assert (json && strlen (json) == 2 * deep + 4 && json[0] == '[' && json[deep] == 'n');
    free (json);
    //  ... nor do deeply nested non-string keys (refused past a depth)
    memset (mp, 0x81, deep);
    json = zim_body_to_json (mp, deep + 1);
    assert (json == NULL);
    free (mp);
    json = zim_json_string ("a\"b\xff");
    assert (json && streq (json, "\"a\\\"b\\ufffd\""));
    free (json);
}
