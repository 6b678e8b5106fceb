/*  zim_text.c: the debug printer (zim_text.h).
 */
#include "msg/zim_text.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#define S_MAX_DEPTH 16  //  deeper values print as "..."
#define S_MAX_ITEMS 16  //  elements of a record's list shown
#define S_MAX_VALUES 64 //  elements of a container value shown
#define S_MAX_STR 200   //  bytes of a string shown

//  Appends printf-style text.
static void s_put (zim_wr_t *out, const char *format, ...)
{
    char buf[128];
    va_list args;
    va_start (args, format);
    int n = vsnprintf (buf, sizeof buf, format, args);
    va_end (args);
    if (n > 0)
        zim_wr_raw (out, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

const char *zim_text_cstr (zim_wr_t *out)
{
    zim_wr_raw (out, "", 1);
    out->size--;
    return out->data;
}

void zim_text_str (zim_wr_t *out, zim_str_t s)
{
    zim_wr_raw (out, "\"", 1);
    size_t n = s.len < S_MAX_STR ? s.len : S_MAX_STR;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s.ptr[i];
        if (c == '"' || c == '\\')
            s_put (out, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            zim_wr_raw (out, &c, 1);
        else
            s_put (out, "\\x%02x", c);
    }
    zim_wr_raw (out, "\"", 1);
    if (n < s.len)
        s_put (out, "...(%zu bytes)", s.len);
}

//  Appends bytes as hex.
static void s_hex (zim_wr_t *out, zim_str_t s)
{
    zim_wr_raw (out, "h'", 2);
    size_t n = s.len < S_MAX_STR ? s.len : S_MAX_STR;
    for (size_t i = 0; i < n; i++)
        s_put (out, "%02x", (uint8_t)s.ptr[i]);
    zim_wr_raw (out, "'", 1);
    if (n < s.len)
        s_put (out, "...(%zu bytes)", s.len);
}

//  Appends one value; returns -1 where the bytes are not msgpack.
static int s_value (zim_wr_t *out, zim_rd_t *rd, int depth)
{
    if (depth >= S_MAX_DEPTH) {
        zim_wr_raw (out, "...", 3);
        return zim_rd_skip (rd, NULL);
    }
    zim_str_t s;
    uint32_t n;
    switch (zim_rd_peek (rd)) {
    case ZIM_MP_NIL:
        zim_wr_raw (out, "nil", 3);
        return zim_rd_nil (rd);
    case ZIM_MP_BOOL: {
        bool b;
        if (zim_rd_bool (rd, &b))
            return -1;
        s_put (out, "%s", b ? "true" : "false");
        return 0;
    }
    case ZIM_MP_UINT: {
        uint64_t u;
        if (zim_rd_uint (rd, &u))
            return -1;
        s_put (out, "%" PRIu64, u);
        return 0;
    }
    case ZIM_MP_INT: {
        int64_t i;
        if (zim_rd_int (rd, &i))
            return -1;
        s_put (out, "%" PRId64, i);
        return 0;
    }
    case ZIM_MP_FLOAT: {
        const uint8_t *p = rd->pos;
        if (zim_rd_skip (rd, &s))
            return -1;
        uint64_t bits = 0;
        for (size_t i = 1; i < s.len; i++)
            bits = (bits << 8) | p[i];
        if (s.len == 5) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy (&f, &b32, sizeof f);
            s_put (out, "%g", (double)f);
        } else {
            double d;
            memcpy (&d, &bits, sizeof d);
            s_put (out, "%g", d);
        }
        return 0;
    }
    case ZIM_MP_STR:
        if (zim_rd_str (rd, &s))
            return -1;
        zim_text_str (out, s);
        return 0;
    case ZIM_MP_BIN:
        if (zim_rd_bin (rd, &s))
            return -1;
        s_hex (out, s);
        return 0;
    case ZIM_MP_EXT: {
        const uint8_t *p = rd->pos;
        if (zim_rd_skip (rd, &s))
            return -1;
        //  The type byte follows the header: fixext, ext8, ext16, ext32.
        size_t at = p[0] == 0xc7 ? 2 : p[0] == 0xc8 ? 3 : p[0] == 0xc9 ? 5 : 1;
        s_put (out, "ext(%d, %zu bytes)", (int8_t)p[at], s.len - at - 1);
        return 0;
    }
    case ZIM_MP_ARRAY:
    case ZIM_MP_MAP: {
        bool map = zim_rd_peek (rd) == ZIM_MP_MAP;
        if (map ? zim_rd_map (rd, &n) : zim_rd_array (rd, &n))
            return -1;
        zim_wr_raw (out, map ? "{" : "[", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i == S_MAX_VALUES) {
                s_put (out, " ...+%" PRIu32, n - i);
                for (; i < n; i++)
                    if (zim_rd_skip (rd, NULL) || (map && zim_rd_skip (rd, NULL)))
                        return -1;
                break;
            }
            if (i)
                zim_wr_raw (out, ", ", 2);
            if (map) {
                if (s_value (out, rd, depth + 1))
                    return -1;
                zim_wr_raw (out, ": ", 2);
            }
            if (s_value (out, rd, depth + 1))
                return -1;
        }
        zim_wr_raw (out, map ? "}" : "]", 1);
        return 0;
    }
    default:
        return -1;
    }
}

void zim_text_value (zim_wr_t *out, const void *data, size_t size)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    for (bool first = true; zim_rd_left (&rd); first = false) {
        if (!first)
            zim_wr_raw (out, " ", 1);
        if (s_value (out, &rd, 0)) {
            zim_wr_raw (out, " !malformed", 11);
            return;
        }
    }
}

#define S_AT(m, off, T) ((const T *)((const char *)(m) + (off)))

static void s_list (zim_wr_t *out, zim_rd_t rd, uint32_t n, const zim_field_t *elem);

//  Appends the value of field f of m.
static void s_field (zim_wr_t *out, const zim_field_t *f, const void *m)
{
    switch (f->type) {
    case ZIM_FT_UINT:
        s_put (out, "%" PRIu64, *S_AT (m, f->offset, uint64_t));
        break;
    case ZIM_FT_INT:
        s_put (out, "%" PRId64, *S_AT (m, f->offset, int64_t));
        break;
    case ZIM_FT_BOOL:
        s_put (out, "%s", *S_AT (m, f->offset, bool) ? "true" : "false");
        break;
    case ZIM_FT_STR:
    case ZIM_FT_ID:
        zim_text_str (out, *S_AT (m, f->offset, zim_str_t));
        break;
    case ZIM_FT_BIN:
        s_hex (out, *S_AT (m, f->offset, zim_str_t));
        break;
    case ZIM_FT_RAW: {
        zim_str_t v = *S_AT (m, f->offset, zim_str_t);
        zim_text_value (out, v.ptr, v.len);
        break;
    }
    case ZIM_FT_GROUP:
    case ZIM_FT_NESTED:
        zim_text_record (out, f->rec, S_AT (m, f->offset, char));
        break;
    case ZIM_FT_LIST:
        s_list (out, *S_AT (m, f->offset, zim_rd_t), *S_AT (m, f->aux, uint32_t), f->elem);
        break;
    case ZIM_FT_ARGS: {
        uint32_t n = *S_AT (m, f->aux, uint32_t);
        const zim_str_t *args = S_AT (m, f->offset, zim_str_t);
        zim_wr_raw (out, "[", 1);
        for (uint32_t i = 0; i < n && i < f->max; i++) {
            if (i)
                zim_wr_raw (out, " ", 1);
            zim_text_str (out, args[i]);
        }
        zim_wr_raw (out, "]", 1);
        break;
    }
    default:
        zim_wr_raw (out, "?", 1);
    }
}

//  Appends the n elements of type elem at rd.
static void s_list (zim_wr_t *out, zim_rd_t rd, uint32_t n, const zim_field_t *elem)
{
    zim_wr_raw (out, "[", 1);
    for (uint32_t i = 0; i < n; i++) {
        if (i == S_MAX_ITEMS) {
            s_put (out, " ...+%" PRIu32, n - i);
            break;
        }
        if (i)
            zim_wr_raw (out, " ", 1);
        _Alignas(max_align_t) char m[512];
        int rc;
        if (elem->type == ZIM_FT_NESTED) {
            assert (elem->rec->size <= sizeof m);
            rc = zim_codec_unpack (&rd, elem->rec, m);
            if (rc == 0)
                zim_text_record (out, elem->rec, m);
        } else {
            rc = zim_codec_unpack_value (&rd, elem, m);
            if (rc == 0) {
                zim_field_t at = *elem;
                at.offset = 0;
                s_field (out, &at, m);
            }
        }
        if (rc) {
            s_put (out, "!error(%d)", rc);
            break;
        }
    }
    zim_wr_raw (out, "]", 1);
}

void zim_text_record (zim_wr_t *out, const zim_record_t *rec, const void *m)
{
    const zim_opdesc_t *op = NULL;
    if (rec->shape == ZIM_SHAPE_FRAMES) {
        int value = *S_AT (m, rec->op_offset, int);
        for (uint16_t i = 0; i < rec->nops; i++)
            if (rec->ops[i].op == value)
                op = &rec->ops[i];
        if (op)
            s_put (out, "%s", op->name);
        else
            zim_text_str (out, *S_AT (m, rec->op_name_offset, zim_str_t));
    } else if (rec->code >= 0)
        s_put (out, "%s", rec->title);
    zim_wr_raw (out, "{", 1);
    uint32_t n = op ? op->nkeys : rec->nfields;
    bool first = true;
    for (uint32_t k = 0; k < n; k++) {
        const zim_field_t *f = &rec->fields[op ? op->keys[k].field : k];
        if (f->presence == ZIM_P_HAS && !*S_AT (m, f->aux, bool))
            continue;
        if (!first)
            zim_wr_raw (out, " ", 1);
        first = false;
        zim_wr_raw (out, f->name, f->name_len);
        zim_wr_raw (out, "=", 1);
        s_field (out, f, m);
    }
    zim_wr_raw (out, "}", 1);
}

void zim_text_test (bool verbose)
{
    zim_wr_t wr, out;
    zim_wr_init (&wr);
    zim_wr_init (&out);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "a\"b");
    zim_wr_array (&wr, 3);
    zim_wr_int (&wr, -3);
    zim_wr_bool (&wr, true);
    zim_wr_bin (&wr, (zim_str_t){"\x01\xff", 2});
    zim_wr_cstr (&wr, "t");
    zim_wr_raw (&wr, "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", 9); //  1.5
    zim_wr_nil (&wr);
    zim_text_value (&out, wr.data, wr.size);
    assert (strcmp (zim_text_cstr (&out), "{\"a\\\"b\": [-3, true, h'01ff'], \"t\": 1.5} nil") ==
            0);
    //  Truncated: what was readable, then the mark.
    zim_wr_reset (&out);
    zim_text_value (&out, wr.data, 5);
    assert (strstr (zim_text_cstr (&out), "!malformed"));
    //  Deep nesting stops printing but not reading.
    zim_wr_reset (&wr);
    for (int i = 0; i < 40; i++)
        zim_wr_array (&wr, 1);
    zim_wr_uint (&wr, 1);
    zim_wr_reset (&out);
    zim_text_value (&out, wr.data, wr.size);
    assert (strstr (zim_text_cstr (&out), "...") && !strstr (out.data, "!malformed"));
    zim_wr_free (&wr);
    zim_wr_free (&out);
    if (verbose)
        printf ("(text ok) ");
}
