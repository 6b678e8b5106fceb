/*  zim_mp.c: strict msgpack reader and buffered writer: the full readers
    behind the inline fast paths of zim_mp.h, the skipper, the writer's
    buffer, and a selftest that holds the writer to msgpack-c's packer.

    The reader never trusts a declared length: each header is checked
    against the bytes left before anything is read.
*/
#include "msg/zim_mp.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

char *zim_str_dup (zim_str_t v)
{
    char *s = zim_malloc (v.len + 1);
    if (v.len)
        memcpy (s, v.ptr, v.len);
    s[v.len] = 0;
    return s;
}

int zim_str_copy (zim_str_t v, char *buf, size_t size)
{
    if (v.len + 1 > size)
        return -1;
    if (v.len)
        memcpy (buf, v.ptr, v.len);
    buf[v.len] = 0;
    return 0;
}

//  -------------------------------------------------------------------------
//  Reader

void zim_rd_init (zim_rd_t *rd, const void *data, size_t size)
{
    rd->pos = data;
    rd->end = rd->pos + (data ? size : 0);
}

size_t zim_rd_left (const zim_rd_t *rd)
{
    return (size_t)(rd->end - rd->pos);
}

zim_mp_type_t zim_rd_peek (const zim_rd_t *rd)
{
    if (rd->pos >= rd->end)
        return ZIM_MP_NONE;
    uint8_t b = *rd->pos;
    if (b <= 0x7f || b == 0xcc || b == 0xcd || b == 0xce || b == 0xcf)
        return ZIM_MP_UINT;
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3))
        return ZIM_MP_INT;
    if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf)
        return ZIM_MP_MAP;
    if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)
        return ZIM_MP_ARRAY;
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))
        return ZIM_MP_STR;
    switch (b) {
    case 0xc0:
        return ZIM_MP_NIL;
    case 0xc2:
    case 0xc3:
        return ZIM_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return ZIM_MP_BIN;
    case 0xca:
    case 0xcb:
        return ZIM_MP_FLOAT;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return ZIM_MP_EXT;
    default:
        return ZIM_MP_NONE; //  0xc1 is never used
    }
}

//  The integer at the cursor, of any msgpack encoding, without moving the
//  cursor: *neg says whether it is negative, *v holds its bits (an int64_t
//  when negative). Returns the bytes it takes, or 0 if the next value is
//  not an integer or is cut short.
static size_t s_integer (const zim_rd_t *rd, bool *neg, uint64_t *v)
{
    size_t left = zim_rd_left (rd);
    if (left < 1)
        return 0;
    uint8_t b = rd->pos[0];
    if (b <= 0x7f || b >= 0xe0) { //  positive and negative fixint
        *neg = b >= 0xe0;
        *v = (uint64_t)(int64_t)(int8_t)b;
        return 1;
    }
    bool is_signed = b >= 0xd0 && b <= 0xd3;
    if (!is_signed && (b < 0xcc || b > 0xcf))
        return 0;
    int bytes = 1 << (b & 0x03);
    if (left < 1 + (size_t)bytes)
        return 0;
    uint64_t raw = zim_mp_get (rd->pos + 1, bytes);
    if (is_signed) {
        //  Sign-extend; signed encodings may carry non-negative values.
        int shift = 64 - 8 * bytes;
        raw = (uint64_t)((int64_t)(raw << shift) >> shift);
    }
    *neg = is_signed && (int64_t)raw < 0;
    *v = raw;
    return 1 + (size_t)bytes;
}

//  Reads an integer that fits a uint64_t (is_signed false) or an int64_t.
static int s_rd_integer (zim_rd_t *rd, bool is_signed, uint64_t *out)
{
    bool neg;
    uint64_t v;
    size_t used = s_integer (rd, &neg, &v);
    if (used == 0 || (is_signed ? !neg && v > (uint64_t)INT64_MAX : neg))
        return -1;
    *out = v;
    rd->pos += used;
    return 0;
}

int zim_rd_nil (zim_rd_t *rd)
{
    if (rd->pos < rd->end && *rd->pos == 0xc0) {
        rd->pos++;
        return 0;
    }
    return -1;
}

int zim_rd_bool (zim_rd_t *rd, bool *out)
{
    if (rd->pos < rd->end && (*rd->pos == 0xc2 || *rd->pos == 0xc3)) {
        *out = *rd->pos == 0xc3;
        rd->pos++;
        return 0;
    }
    return -1;
}

int zim_rd_uint_any (zim_rd_t *rd, uint64_t *out)
{
    return s_rd_integer (rd, false, out);
}

int zim_rd_int (zim_rd_t *rd, int64_t *out)
{
    uint64_t v;
    if (s_rd_integer (rd, true, &v))
        return -1;
    *out = (int64_t)v;
    return 0;
}

//  The str, bin, array or map header at the cursor, without moving it: a
//  fix form from fix_lo to fix_hi (none when fix_hi is 0) holding the
//  length, or a marker h8, h16 or h32 (h8 0: none) followed by it. Returns
//  the header's size and *n, or 0 if there is no such header.
static size_t s_header (const zim_rd_t *rd, uint8_t fix_lo, uint8_t fix_hi, uint8_t h8, uint8_t h16,
                        uint8_t h32, uint64_t *n)
{
    size_t left = zim_rd_left (rd);
    if (left < 1)
        return 0;
    uint8_t b = rd->pos[0];
    if (fix_hi && b >= fix_lo && b <= fix_hi) {
        *n = (uint64_t)(b - fix_lo);
        return 1;
    }
    int bytes = h8 && b == h8 ? 1 : b == h16 ? 2 : b == h32 ? 4 : 0;
    if (bytes == 0 || left < 1 + (size_t)bytes)
        return 0;
    *n = zim_mp_get (rd->pos + 1, bytes);
    return 1 + (size_t)bytes;
}

//  Reads a str (or a bin) whose bytes are all there.
static int s_rd_bytes (zim_rd_t *rd, bool want_str, zim_str_t *out)
{
    uint64_t len;
    size_t hdr = want_str ? s_header (rd, 0xa0, 0xbf, 0xd9, 0xda, 0xdb, &len)
                          : s_header (rd, 0, 0, 0xc4, 0xc5, 0xc6, &len);
    if (hdr == 0 || len > zim_rd_left (rd) - hdr)
        return -1;
    out->ptr = (const char *)rd->pos + hdr;
    out->len = (size_t)len;
    rd->pos += hdr + len;
    return 0;
}

int zim_rd_str_any (zim_rd_t *rd, zim_str_t *out)
{
    return s_rd_bytes (rd, true, out);
}

int zim_rd_bin (zim_rd_t *rd, zim_str_t *out)
{
    return s_rd_bytes (rd, false, out);
}

//  Reads an array or map header; the count must be plausible: every element
//  takes at least one byte (a map's pair two).
static int s_rd_container (zim_rd_t *rd, bool want_map, uint32_t *count)
{
    uint64_t n;
    size_t hdr = want_map ? s_header (rd, 0x80, 0x8f, 0, 0xde, 0xdf, &n)
                          : s_header (rd, 0x90, 0x9f, 0, 0xdc, 0xdd, &n);
    if (hdr == 0 || (want_map ? 2 * n : n) > zim_rd_left (rd) - hdr)
        return -1;
    *count = (uint32_t)n;
    rd->pos += hdr;
    return 0;
}

int zim_rd_array_any (zim_rd_t *rd, uint32_t *count)
{
    return s_rd_container (rd, false, count);
}

int zim_rd_map (zim_rd_t *rd, uint32_t *count)
{
    return s_rd_container (rd, true, count);
}

int zim_rd_skip (zim_rd_t *rd, zim_str_t *raw)
{
    zim_rd_t save = *rd;
    const uint8_t *start = rd->pos;
    uint64_t pending = 1; //  values still to skip
    while (pending > 0) {
        if (rd->pos >= rd->end)
            goto malformed;
        pending--;
        uint8_t b = *rd->pos;
        size_t left = zim_rd_left (rd);
        zim_str_t s;
        uint32_t n;
        switch (zim_rd_peek (rd)) {
        case ZIM_MP_NIL:
        case ZIM_MP_BOOL:
            rd->pos++;
            break;
        case ZIM_MP_UINT:
        case ZIM_MP_INT: {
            bool neg;
            uint64_t v;
            size_t used = s_integer (rd, &neg, &v);
            if (used == 0)
                goto malformed;
            rd->pos += used;
            break;
        }
        case ZIM_MP_FLOAT: {
            size_t size = b == 0xca ? 5 : 9;
            if (left < size)
                goto malformed;
            rd->pos += size;
            break;
        }
        case ZIM_MP_STR:
            if (zim_rd_str (rd, &s))
                goto malformed;
            break;
        case ZIM_MP_BIN:
            if (zim_rd_bin (rd, &s))
                goto malformed;
            break;
        case ZIM_MP_ARRAY:
            if (zim_rd_array (rd, &n))
                goto malformed;
            pending += n;
            break;
        case ZIM_MP_MAP:
            if (zim_rd_map (rd, &n))
                goto malformed;
            pending += 2 * (uint64_t)n;
            break;
        case ZIM_MP_EXT: {
            size_t hdr, len;
            if (b >= 0xd4 && b <= 0xd8) {
                hdr = 2;
                len = (size_t)1 << (b - 0xd4);
            } else if (b == 0xc7) {
                if (left < 3)
                    goto malformed;
                hdr = 3;
                len = rd->pos[1];
            } else if (b == 0xc8) {
                if (left < 4)
                    goto malformed;
                hdr = 4;
                len = (uint16_t)zim_mp_get (rd->pos + 1, 2);
            } else {
                if (left < 6)
                    goto malformed;
                hdr = 6;
                len = (uint32_t)zim_mp_get (rd->pos + 1, 4);
            }
            if (left < hdr || len > left - hdr)
                goto malformed;
            rd->pos += hdr + len;
            break;
        }
        default:
            goto malformed;
        }
    }
    if (raw) {
        raw->ptr = (const char *)start;
        raw->len = (size_t)(rd->pos - start);
    }
    return 0;
malformed:
    *rd = save;
    return -1;
}

//  -------------------------------------------------------------------------
//  Writer

void zim_wr_grow (zim_wr_t *wr, size_t n)
{
    size_t alloc = wr->alloc ? wr->alloc : 256;
    while (alloc - wr->size < n)
        alloc *= 2;
    wr->data = zim_realloc (wr->data, alloc);
    wr->alloc = alloc;
}

void zim_wr_init (zim_wr_t *wr)
{
    wr->data = NULL;
    wr->size = 0;
    wr->alloc = 0;
}

void zim_wr_free (zim_wr_t *wr)
{
    free (wr->data);
    zim_wr_init (wr);
}

void zim_wr_reset (zim_wr_t *wr)
{
    wr->size = 0;
}

void zim_wr_cstr (zim_wr_t *wr, const char *s)
{
    zim_wr_str (wr, zim_str (s));
}

void zim_wr_raw (zim_wr_t *wr, const void *data, size_t size)
{
    if (size) {
        memcpy (zim_wr_room (wr, size), data, size);
        wr->size += size;
    }
}

//  -------------------------------------------------------------------------
//  Selftest

//  msgpack-c's packer appending to an sbuffer: the reference encoder.
static int s_sbuf_write (void *data, const char *buf, size_t len)
{
    return msgpack_sbuffer_write ((msgpack_sbuffer *)data, buf, len);
}

//  Every value at every boundary of its encodings, written by us and by
//  msgpack-c's packer: the bytes must be the same (the vectors and the JS
//  SDK rely on these encodings).
static void s_test_against_msgpack_c (void)
{
    static const uint64_t uints[] = {0,     1,          0x7f,      0x80,          0xff,
                                     0x100, 0xffff,     0x10000,   0xffffffffULL, 0x100000000ULL,
                                     12345, UINT64_MAX, 1ULL << 63};
    static const int64_t ints[] = {-1,        -31,    -32,    -33,      -127,      -128,
                                   -129,      -32767, -32768, -32769,   INT32_MIN, -2147483649LL,
                                   INT64_MIN, 5,      300,    INT64_MAX};
    static const size_t lens[] = {0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000};
    zim_wr_t wr;
    zim_wr_init (&wr);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, s_sbuf_write);
    char *blob = zim_calloc (1, 70000);
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++) {
        zim_wr_uint (&wr, uints[i]);
        msgpack_pack_uint64 (&pk, uints[i]);
        zim_wr_int (&wr, (int64_t)(uints[i] >> 1));
        msgpack_pack_int64 (&pk, (int64_t)(uints[i] >> 1));
    }
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        zim_wr_int (&wr, ints[i]);
        msgpack_pack_int64 (&pk, ints[i]);
    }
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        zim_wr_str (&wr, (zim_str_t){blob, lens[i]});
        msgpack_pack_str (&pk, lens[i]);
        msgpack_pack_str_body (&pk, blob, lens[i]);
        zim_wr_bin (&wr, (zim_str_t){blob, lens[i]});
        msgpack_pack_bin (&pk, lens[i]);
        msgpack_pack_bin_body (&pk, blob, lens[i]);
        zim_wr_array (&wr, (uint32_t)lens[i]);
        msgpack_pack_array (&pk, lens[i]);
        zim_wr_map (&wr, (uint32_t)lens[i]);
        msgpack_pack_map (&pk, lens[i]);
    }
    zim_wr_nil (&wr);
    msgpack_pack_nil (&pk);
    zim_wr_bool (&wr, true);
    msgpack_pack_true (&pk);
    zim_wr_bool (&wr, false);
    msgpack_pack_false (&pk);
    assert (wr.size == sb.size && memcmp (wr.data, sb.data, sb.size) == 0);
    free (blob);
    msgpack_sbuffer_destroy (&sb);
    zim_wr_free (&wr);
}

void zim_mp_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_array (&wr, 9);
    zim_wr_uint (&wr, 0);
    zim_wr_uint (&wr, UINT64_MAX);
    zim_wr_int (&wr, -1);
    zim_wr_int (&wr, INT64_MIN);
    zim_wr_cstr (&wr, "héllo");
    zim_wr_bin (&wr, (zim_str_t){"\0\1", 2});
    zim_wr_bool (&wr, true);
    zim_wr_nil (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "k");
    zim_wr_array (&wr, 2);
    zim_wr_uint (&wr, 300);
    zim_wr_cstr (&wr, "");

    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    uint32_t n;
    uint64_t u;
    int64_t i;
    bool b;
    zim_str_t s;
    assert (zim_rd_peek (&rd) == ZIM_MP_ARRAY);
    assert (zim_rd_map (&rd, &n) == -1); //  wrong type leaves cursor
    assert (zim_rd_array (&rd, &n) == 0 && n == 9);
    assert (zim_rd_uint (&rd, &u) == 0 && u == 0);
    assert (zim_rd_uint (&rd, &u) == 0 && u == UINT64_MAX);
    assert (zim_rd_uint (&rd, &u) == -1); //  negative is not a uint
    assert (zim_rd_int (&rd, &i) == 0 && i == -1);
    assert (zim_rd_int (&rd, &i) == 0 && i == INT64_MIN);
    assert (zim_rd_bin (&rd, &s) == -1); //  a str is not a bin
    assert (zim_rd_str (&rd, &s) == 0 && zim_str_eq (s, "héllo"));
    assert (zim_rd_bin (&rd, &s) == 0 && s.len == 2 && s.ptr[1] == 1);
    assert (zim_rd_bool (&rd, &b) == 0 && b);
    assert (zim_rd_nil (&rd) == 0);
    const uint8_t *before = rd.pos;
    zim_str_t raw;
    assert (zim_rd_skip (&rd, &raw) == 0);
    assert ((const uint8_t *)raw.ptr == before && raw.len == (size_t)(rd.pos - before));
    assert (zim_rd_left (&rd) == 0);
    assert (zim_rd_peek (&rd) == ZIM_MP_NONE);

    //  Every truncation of a valid encoding fails to skip, never overreads.
    for (size_t cut = 0; cut < wr.size; cut++) {
        zim_rd_init (&rd, wr.data, cut);
        assert (zim_rd_skip (&rd, NULL) == -1);
        assert (rd.pos == (const uint8_t *)wr.data);
    }
    //  Declared lengths beyond the buffer are rejected.
    const uint8_t huge_arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
    zim_rd_init (&rd, huge_arr, sizeof huge_arr);
    assert (zim_rd_array (&rd, &n) == -1);
    assert (zim_rd_skip (&rd, NULL) == -1);
    const uint8_t huge_str[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    zim_rd_init (&rd, huge_str, sizeof huge_str);
    assert (zim_rd_str (&rd, &s) == -1);
    const uint8_t reserved[] = {0xc1};
    zim_rd_init (&rd, reserved, 1);
    assert (zim_rd_skip (&rd, NULL) == -1);
    //  Deep nesting is skipped iteratively without recursion.
    size_t deep = 100000;
    uint8_t *nest = zim_malloc (deep + 1);
    memset (nest, 0x91, deep);
    nest[deep] = 0xc0;
    zim_rd_init (&rd, nest, deep + 1);
    assert (zim_rd_skip (&rd, &raw) == 0 && raw.len == deep + 1);
    free (nest);
    //  Signed encodings of non-negative values read as uint; int8 -1 not.
    const uint8_t sint[] = {0xd0, 0x05, 0xd0, 0xff};
    zim_rd_init (&rd, sint, sizeof sint);
    assert (zim_rd_uint (&rd, &u) == 0 && u == 5);
    assert (zim_rd_uint (&rd, &u) == -1);
    assert (zim_rd_int (&rd, &i) == 0 && i == -1);
    //  A uint above INT64_MAX is not an int.
    zim_wr_reset (&wr);
    zim_wr_uint (&wr, (uint64_t)INT64_MAX + 1);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_rd_int (&rd, &i) == -1);
    //  Raw insertion keeps bytes verbatim.
    zim_wr_reset (&wr);
    zim_wr_raw (&wr, "\x92\x01\x02", 3);
    assert (wr.size == 3 && memcmp (wr.data, "\x92\x01\x02", 3) == 0);
    zim_wr_free (&wr);
    s_test_against_msgpack_c ();
    if (verbose)
        printf ("(mp reader/writer ok) ");
}
