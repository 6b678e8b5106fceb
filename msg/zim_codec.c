/*  zim_codec.c: the table-driven codec engine (zim_codec.h). One encoder
    and one strict decoder walk a record's field table; each field's read is
    checked against the end of the buffer and every failure leaves through
    the decoder's one malformed exit with a ZIM_E* code.
*/
#include "msg/zim_codec.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

//  The member at byte offset off of struct m.
#define S_AT(m, off, T) ((T *)((char *)(m) + (off)))
#define S_CAT(m, off, T) ((const T *)((const char *)(m) + (off)))

//  Scratch space for one decoded list element (the largest element record
//  must fit: checked by the catalogue's selftest with zim_codec_fits).
#define S_ELEM_MAX 512

//  -------------------------------------------------------------------------
//  Helpers

//  True if no byte of the word w is below 0x21 or above 0x7e: a byte
//  carries into its top bit in one of these when it is (Bit Twiddling
//  Hacks, "hasless" and "hasmore", exact for these bounds).
static inline bool s_word_printable (uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, tops = 0x8080808080808080ULL;
    return !((((w - 0x21 * ones) & ~w) | (w + ones) | w) & tops);
}

//  True if s is an identifier: 1..ZIM_ID_MAX bytes of 0x21..0x7e. Checked
//  a word at a time with loads that never leave the string: two that
//  overlap for 4 to 7 bytes, the first, middle and last byte (padded with
//  'A') below that.
static inline bool s_id_ok (zim_str_t s)
{
    size_t n = s.len;
    if (n - 1 >= ZIM_ID_MAX) //  0 wraps around
        return false;
    const uint8_t *p = (const uint8_t *)s.ptr;
    uint64_t w;
    if (n >= 8) {
        bool ok = true;
        for (size_t i = 0; i + 8 <= n; i += 8) {
            memcpy (&w, p + i, 8);
            ok &= s_word_printable (w);
        }
        memcpy (&w, p + n - 8, 8);
        return ok && s_word_printable (w);
    }
    if (n >= 4) {
        uint32_t a, b;
        memcpy (&a, p, 4);
        memcpy (&b, p + n - 4, 4);
        w = a | (uint64_t)b << 32;
    } else
        w = p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16 | 0x4141414141ULL << 24;
    return s_word_printable (w);
}

//  The error for a failed read of a value of type want: truncated bytes
//  are malformed, a value of another type is a type error.
static int s_fail (const zim_rd_t *rd, zim_mp_type_t want)
{
    zim_mp_type_t got = zim_rd_peek (rd);
    if (got == ZIM_MP_NONE || got == want)
        return ZIM_EMALFORMED;
    if (want == ZIM_MP_INT && got == ZIM_MP_UINT)
        return ZIM_EVALUE; //  an integer beyond INT64_MAX
    return ZIM_ETYPE;
}

//  True if field f of m holds something other than what its absence reads
//  as: its has_ flag, a view that is not NULL, a value that is not def.
static bool s_differs (const zim_field_t *f, const void *m)
{
    if (f->presence == ZIM_P_HAS)
        return *S_CAT (m, f->aux, bool);
    switch (f->type) {
    case ZIM_FT_UINT:
    case ZIM_FT_INT:
        return *S_CAT (m, f->offset, uint64_t) != f->def;
    case ZIM_FT_BOOL:
        return *S_CAT (m, f->offset, bool) != (f->def != 0);
    case ZIM_FT_STR:
    case ZIM_FT_ID:
    case ZIM_FT_RAW:
    case ZIM_FT_BIN:
        return S_CAT (m, f->offset, zim_str_t)->ptr != NULL;
    case ZIM_FT_LIST:
        return *S_CAT (m, f->aux, uint32_t) != 0;
    default:
        return true;
    }
}

//  True if field f of m is written: required, or optional and there.
static inline bool s_present (const zim_field_t *f, const void *m)
{
    return f->presence == ZIM_P_REQ || s_differs (f, m);
}

//  Gives absent optional field f its default.
static void s_set_default (const zim_field_t *f, void *m)
{
    switch (f->type) {
    case ZIM_FT_UINT:
    case ZIM_FT_INT:
        *S_AT (m, f->offset, uint64_t) = f->def;
        break;
    case ZIM_FT_BOOL:
        *S_AT (m, f->offset, bool) = f->def != 0;
        break;
    case ZIM_FT_STR:
    case ZIM_FT_ID:
    case ZIM_FT_RAW:
    case ZIM_FT_BIN:
        *S_AT (m, f->offset, zim_str_t) = (zim_str_t){NULL, 0};
        break;
    case ZIM_FT_LIST:
        *S_AT (m, f->offset, zim_rd_t) = (zim_rd_t){NULL, NULL};
        *S_AT (m, f->aux, uint32_t) = 0;
        break;
    case ZIM_FT_NESTED:
        memset (S_AT (m, f->offset, char), 0, f->rec->size);
        break;
    default:
        break;
    }
    if (f->presence == ZIM_P_HAS)
        *S_AT (m, f->aux, bool) = false;
}

//  True if the n bytes at a and b are the same (keys and op names are short:
//  no call to memcmp).
static inline bool s_same (const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

const zim_opdesc_t *zim_codec_op (const zim_record_t *rec, zim_str_t name)
{
    for (uint16_t i = 0; i < rec->nops; i++) {
        const zim_opdesc_t *op = &rec->ops[i];
        if (op->name_len == name.len && s_same (op->name, name.ptr, name.len))
            return op;
    }
    return NULL;
}

//  The op descriptor of enum value op, or NULL.
static const zim_opdesc_t *s_op_by_value (const zim_record_t *rec, int op)
{
    for (uint16_t i = 0; i < rec->nops; i++)
        if (rec->ops[i].op == op)
            return &rec->ops[i];
    return NULL;
}

int zim_codec_field (const zim_record_t *rec, const char *name)
{
    for (uint16_t i = 0; i < rec->nfields; i++)
        if (strcmp (rec->fields[i].name, name) == 0)
            return i;
    return -1;
}

//  The index of the field whose key is key, or -1.
static inline int s_key_field (const zim_record_t *rec, zim_str_t key)
{
    for (uint16_t i = 0; i < rec->nfields; i++) {
        const zim_field_t *f = &rec->fields[i];
        if (f->name_len == key.len && s_same (f->name, key.ptr, key.len))
            return i;
    }
    return -1;
}

//  -------------------------------------------------------------------------
//  Encoding

static void s_pack_array_fields (zim_wr_t *wr, const zim_record_t *rec, const void *m,
                                 uint32_t from, uint32_t to);

//  Writes field f of m: one value, or (in an array) a group's fields or
//  the args. Inlined into the loops, with one switch: this is the hot path
//  of every encoder.
static inline __attribute__ ((always_inline)) void s_pack_value (zim_wr_t *wr, const zim_field_t *f,
                                                                 const void *m)
{
    switch (f->type) {
    case ZIM_FT_GROUP:
        s_pack_array_fields (wr, f->rec, S_CAT (m, f->offset, char), 0, f->rec->nfields);
        break;
    case ZIM_FT_ARGS: {
        uint32_t count = *S_CAT (m, f->aux, uint32_t);
        const zim_str_t *args = S_CAT (m, f->offset, zim_str_t);
        for (uint32_t a = 0; a < count && a < f->max; a++)
            zim_wr_str (wr, args[a]);
        break;
    }
    case ZIM_FT_UINT:
        zim_wr_uint (wr, *S_CAT (m, f->offset, uint64_t));
        break;
    case ZIM_FT_INT:
        zim_wr_int (wr, *S_CAT (m, f->offset, int64_t));
        break;
    case ZIM_FT_BOOL:
        zim_wr_bool (wr, *S_CAT (m, f->offset, bool));
        break;
    case ZIM_FT_STR:
    case ZIM_FT_ID:
        zim_wr_str (wr, *S_CAT (m, f->offset, zim_str_t));
        break;
    case ZIM_FT_BIN:
        zim_wr_bin (wr, *S_CAT (m, f->offset, zim_str_t));
        break;
    case ZIM_FT_RAW: {
        //  A raw value is always exactly one value: nothing becomes nil.
        zim_str_t v = *S_CAT (m, f->offset, zim_str_t);
        if (v.len)
            zim_wr_raw (wr, v.ptr, v.len);
        else
            zim_wr_nil (wr);
        break;
    }
    case ZIM_FT_NESTED:
        zim_codec_pack (wr, f->rec, S_CAT (m, f->offset, char));
        break;
    case ZIM_FT_LIST: {
        const zim_rd_t *items = S_CAT (m, f->offset, zim_rd_t);
        zim_wr_array (wr, *S_CAT (m, f->aux, uint32_t));
        if (items->pos && items->end > items->pos)
            zim_wr_raw (wr, items->pos, (size_t)(items->end - items->pos));
        break;
    }
    }
}

//  The number of wire fields m writes as array record rec; *nf gets the
//  number of field descriptors to write (absent trailing optional fields
//  are left out).
static uint32_t s_wire_count (const zim_record_t *rec, const void *m, uint32_t *nf)
{
    uint32_t n = rec->max_wire;
    uint32_t i = rec->nfields;
    while (i > 0) {
        const zim_field_t *f = &rec->fields[i - 1];
        if (f->type == ZIM_FT_ARGS) {
            uint32_t count = *S_CAT (m, f->aux, uint32_t);
            n -= (uint32_t)f->max - (count < f->max ? count : (uint32_t)f->max);
            if (count)
                break;
        } else if (f->presence == ZIM_P_REQ || f->type == ZIM_FT_GROUP || s_present (f, m))
            break;
        else
            n--;
        i--;
    }
    *nf = i;
    return n;
}

//  Writes descriptors [from, to) of array record rec.
static void s_pack_array_fields (zim_wr_t *wr, const zim_record_t *rec, const void *m,
                                 uint32_t from, uint32_t to)
{
    for (const zim_field_t *f = rec->fields + from, *end = rec->fields + to; f < end; f++)
        s_pack_value (wr, f, m);
}

void zim_codec_pack_range (zim_wr_t *wr, const zim_record_t *rec, const void *m, uint32_t from,
                           uint32_t to)
{
    assert (rec->shape == ZIM_SHAPE_ARRAY);
    uint32_t nf;
    uint32_t n = s_wire_count (rec, m, &nf);
    if (from == 0) {
        if (rec->code >= 0) {
            zim_wr_array (wr, n + 1);
            zim_wr_uint (wr, (uint64_t)rec->code);
        } else
            zim_wr_array (wr, n);
    }
    s_pack_array_fields (wr, rec, m, from, to < nf ? to : nf);
}

//  Writes the key of field f.
static inline void s_pack_key (zim_wr_t *wr, const zim_field_t *f)
{
    zim_wr_str (wr, (zim_str_t){f->name, f->name_len});
}

void zim_codec_pack (zim_wr_t *wr, const zim_record_t *rec, const void *m)
{
    switch (rec->shape) {
    case ZIM_SHAPE_ARRAY:
        zim_codec_pack_range (wr, rec, m, 0, rec->nfields);
        break;
    case ZIM_SHAPE_MAP: {
        uint32_t n = 0;
        for (uint16_t i = 0; i < rec->nfields; i++)
            n += s_present (&rec->fields[i], m);
        zim_wr_map (wr, n);
        for (uint16_t i = 0; i < rec->nfields; i++)
            if (s_present (&rec->fields[i], m)) {
                s_pack_key (wr, &rec->fields[i]);
                s_pack_value (wr, &rec->fields[i], m);
            }
        break;
    }
    case ZIM_SHAPE_FRAMES:
        zim_codec_pack_frame (wr, rec, m);
        break;
    default:
        assert (!"a group is only ever inlined");
    }
}

void zim_codec_pack_frame (zim_wr_t *wr, const zim_record_t *rec, const void *m)
{
    const zim_opdesc_t *op = s_op_by_value (rec, *S_CAT (m, rec->op_offset, int));
    assert (op);
    uint32_t n = 1;
    //  A key the op may leave out is written when it holds something else
    //  than its absence would read as.
    for (uint16_t k = 0; k < op->nkeys; k++)
        n += op->keys[k].need || s_differs (&rec->fields[op->keys[k].field], m);
    zim_wr_map (wr, n);
    zim_wr_str (wr, (zim_str_t){"op", 2});
    zim_wr_cstr (wr, op->name);
    for (uint16_t k = 0; k < op->nkeys; k++) {
        const zim_field_t *f = &rec->fields[op->keys[k].field];
        if (op->keys[k].need || s_differs (f, m)) {
            s_pack_key (wr, f);
            s_pack_value (wr, f, m);
        }
    }
}

//  -------------------------------------------------------------------------
//  Decoding

//  Skips one list element of type elem, checking scalars fully and
//  records and inner lists for structure only (they are read later).
static int s_skip_elem (zim_rd_t *rd, const zim_field_t *elem)
{
    if (elem->type == ZIM_FT_NESTED || elem->type == ZIM_FT_LIST)
        return zim_rd_skip (rd, NULL) ? ZIM_EMALFORMED : 0;
    _Alignas(max_align_t) char scratch[sizeof (zim_list_t)];
    return zim_codec_unpack_value (rd, elem, scratch);
}

static int s_unpack_array (zim_rd_t *rd, const zim_record_t *rec, void *m, uint32_t *left,
                           const zim_field_t *lazy);
static int s_unpack_args (zim_rd_t *rd, const zim_field_t *f, void *m, uint32_t *left);

//  Reads field f into m: one value, or (in an array, *left fields to go) a
//  group's fields or the remaining args. A list is left unread when f is
//  lazy: its reader runs to the end of the buffer. Inlined into the array
//  loop, with one switch: this is the hot path of every decoder.
static inline __attribute__ ((always_inline)) int s_unpack_value (zim_rd_t *rd,
                                                                  const zim_field_t *f, void *m,
                                                                  uint32_t *left,
                                                                  const zim_field_t *lazy)
{
    *left -= f->type < ZIM_FT_GROUP;
    switch (f->type) {
    case ZIM_FT_GROUP:
        return s_unpack_array (rd, f->rec, S_AT (m, f->offset, char), left, NULL);
    case ZIM_FT_ARGS:
        return s_unpack_args (rd, f, m, left);
    case ZIM_FT_UINT: {
        uint64_t *v = S_AT (m, f->offset, uint64_t);
        if (zim_rd_uint (rd, v))
            return s_fail (rd, ZIM_MP_UINT);
        if (*v < f->min || *v > f->max)
            return ZIM_EVALUE;
        return 0;
    }
    case ZIM_FT_INT: {
        int64_t *v = S_AT (m, f->offset, int64_t);
        if (zim_rd_int (rd, v))
            return s_fail (rd, ZIM_MP_INT);
        if (*v < (int64_t)f->min || *v > (int64_t)f->max)
            return ZIM_EVALUE;
        return 0;
    }
    case ZIM_FT_BOOL:
        return zim_rd_bool (rd, S_AT (m, f->offset, bool)) ? s_fail (rd, ZIM_MP_BOOL) : 0;
    case ZIM_FT_STR: {
        zim_str_t *v = S_AT (m, f->offset, zim_str_t);
        if (zim_rd_str (rd, v))
            return s_fail (rd, ZIM_MP_STR);
        return v->len > f->max ? ZIM_ETOOLONG : 0;
    }
    case ZIM_FT_ID: {
        zim_str_t *v = S_AT (m, f->offset, zim_str_t);
        if (zim_rd_str (rd, v))
            return s_fail (rd, ZIM_MP_STR);
        return s_id_ok (*v) ? 0 : ZIM_EVALUE;
    }
    case ZIM_FT_BIN: {
        zim_str_t *v = S_AT (m, f->offset, zim_str_t);
        if (zim_rd_bin (rd, v))
            return s_fail (rd, ZIM_MP_BIN);
        return v->len > f->max ? ZIM_ETOOLONG : 0;
    }
    case ZIM_FT_RAW:
        return zim_rd_skip (rd, S_AT (m, f->offset, zim_str_t)) ? ZIM_EMALFORMED : 0;
    case ZIM_FT_NESTED:
        return zim_codec_unpack (rd, f->rec, S_AT (m, f->offset, char));
    case ZIM_FT_LIST: {
        uint32_t n;
        if (zim_rd_array (rd, &n))
            return s_fail (rd, ZIM_MP_ARRAY);
        zim_rd_t *items = S_AT (m, f->offset, zim_rd_t);
        *S_AT (m, f->aux, uint32_t) = n;
        *items = *rd;
        if (f != lazy) {
            for (uint32_t i = 0; i < n; i++) {
                int rc = s_skip_elem (rd, f->elem);
                if (rc)
                    return rc;
            }
            items->end = rd->pos;
        }
        return 0;
    }
    default:
        return ZIM_EKIND;
    }
}

int zim_codec_unpack_value (zim_rd_t *rd, const zim_field_t *f, void *m)
{
    uint32_t left = 1;
    return s_unpack_value (rd, f, m, &left, NULL);
}

//  Reads the remaining *left fields as the strings of args field f.
static int s_unpack_args (zim_rd_t *rd, const zim_field_t *f, void *m, uint32_t *left)
{
    uint32_t n = *left;
    if (n > f->max)
        return ZIM_ETOOLONG;
    zim_str_t *args = S_AT (m, f->offset, zim_str_t);
    for (uint32_t a = 0; a < n; a++) {
        if (zim_rd_str (rd, &args[a]))
            return s_fail (rd, ZIM_MP_STR);
        if (args[a].len > f->maxlen)
            return ZIM_ETOOLONG;
    }
    *S_AT (m, f->aux, uint32_t) = n;
    *left = 0;
    return 0;
}

//  Reads optional field f if the array has fields left (nil too, for
//  ZIM_P_NIL), else gives it its default.
static int s_unpack_optional (zim_rd_t *rd, const zim_field_t *f, void *m, uint32_t *left,
                              const zim_field_t *lazy)
{
    if (*left == 0) {
        s_set_default (f, m);
        return 0;
    }
    if (f->presence == ZIM_P_NIL && zim_rd_nil (rd) == 0) {
        (*left)--;
        s_set_default (f, m);
        return 0;
    }
    if (f->presence == ZIM_P_HAS)
        *S_AT (m, f->aux, bool) = true;
    return s_unpack_value (rd, f, m, left, lazy);
}

//  Reads the fields of array record rec, *left wire fields remaining; the
//  field lazy (the last of a kind) may be a lazy list. The caller has
//  checked that the count is within [min_wire, max_wire], and only trailing
//  fields may be optional (the catalogue's selftest holds every record to
//  that), so every required field has its value and only optional ones
//  look at *left.
static int s_unpack_array (zim_rd_t *rd, const zim_record_t *rec, void *m, uint32_t *left,
                           const zim_field_t *lazy)
{
    for (const zim_field_t *f = rec->fields, *end = f + rec->nfields; f < end; f++) {
        int rc = f->presence == ZIM_P_REQ ? s_unpack_value (rd, f, m, left, lazy)
                                          : s_unpack_optional (rd, f, m, left, lazy);
        if (rc)
            return rc;
    }
    return 0;
}

int zim_codec_unpack_fields (zim_rd_t *rd, uint32_t fields, const zim_record_t *rec, void *m)
{
    if (fields < rec->min_wire || fields > rec->max_wire)
        return ZIM_EMALFORMED;
    uint32_t left = fields;
    int rc = s_unpack_array (rd, rec, m, &left, &rec->fields[rec->nfields - 1]);
    return rc ? rc : left ? ZIM_EMALFORMED : 0;
}

//  Reads the pairs of a map record into m, which the caller has given its
//  defaults. Strict (frame NULL): the first bad field fails the map.
//  Lenient (a frame): a bad field is remembered in *bad and skipped, the
//  "op" key goes to the frame's op string, and only malformed bytes fail.
//  *seen gets a bit per field present.
static int s_unpack_pairs (zim_rd_t *rd, const zim_record_t *rec, void *m, uint64_t *seen,
                           const char **bad, bool frame, bool *has_op)
{
    uint32_t pairs;
    if (zim_rd_map (rd, &pairs))
        return s_fail (rd, ZIM_MP_MAP);
    for (uint32_t i = 0; i < pairs; i++) {
        zim_str_t key;
        if (zim_rd_str (rd, &key)) {
            if (!frame)
                return s_fail (rd, ZIM_MP_STR);
            if (zim_rd_skip (rd, NULL) || zim_rd_skip (rd, NULL))
                return ZIM_EMALFORMED;
            if (!*bad)
                *bad = "map keys must be strings";
            continue;
        }
        zim_rd_t at = *rd;
        int rc;
        const char *why = NULL;
        if (frame && key.len == 2 && key.ptr[0] == 'o' && key.ptr[1] == 'p') {
            rc = zim_rd_str (rd, S_AT (m, rec->op_name_offset, zim_str_t)) ? s_fail (rd, ZIM_MP_STR)
                                                                           : 0;
            *has_op = rc == 0;
            why = "op must be a string";
        } else {
            int idx = s_key_field (rec, key);
            if (idx < 0) {
                if (zim_rd_skip (rd, NULL))
                    return ZIM_EMALFORMED;
                continue; //  unknown keys are skipped: newer peers may add fields
            }
            const zim_field_t *f = &rec->fields[idx];
            if (f->presence == ZIM_P_NIL && zim_rd_nil (rd) == 0)
                continue; //  nil: absent
            *seen |= (uint64_t)1 << idx;
            if (f->presence == ZIM_P_HAS)
                *S_AT (m, f->aux, bool) = true; //  there at all: a bad from is still a claim
            rc = zim_codec_unpack_value (rd, f, m);
            why = rc == ZIM_ETYPE ? f->why_type : f->why_value;
        }
        if (rc) {
            if (!frame || rc == ZIM_EMALFORMED)
                return rc;
            *rd = at;
            if (zim_rd_skip (rd, NULL))
                return ZIM_EMALFORMED;
            if (!*bad)
                *bad = why;
        }
    }
    return 0;
}

//  Gives every field of map record rec its default (zero, or def).
static inline void s_map_defaults (const zim_record_t *rec, void *m)
{
    if (rec->defaults)
        memcpy (m, rec->defaults, rec->size);
    else
        memset (m, 0, rec->size);
}

int zim_codec_unpack (zim_rd_t *rd, const zim_record_t *rec, void *m)
{
    switch (rec->shape) {
    case ZIM_SHAPE_ARRAY: {
        uint32_t n;
        if (zim_rd_array (rd, &n))
            return s_fail (rd, ZIM_MP_ARRAY);
        if (n < rec->min_wire || n > rec->max_wire)
            return ZIM_EMALFORMED;
        int rc = s_unpack_array (rd, rec, m, &n, NULL);
        return rc ? rc : n ? ZIM_EMALFORMED : 0;
    }
    case ZIM_SHAPE_MAP: {
        s_map_defaults (rec, m);
        uint64_t seen = 0;
        const char *bad = NULL;
        int rc = s_unpack_pairs (rd, rec, m, &seen, &bad, false, NULL);
        if (rc)
            return rc;
        for (uint16_t i = 0; i < rec->nfields; i++)
            if (rec->fields[i].presence == ZIM_P_REQ && !(seen & ((uint64_t)1 << i)))
                return ZIM_EMISSING;
        return 0;
    }
    case ZIM_SHAPE_FRAMES: {
        const char *why;
        return zim_codec_unpack_frame (rd, rec, m, &why);
    }
    default:
        return ZIM_EKIND;
    }
}

int zim_codec_unpack_frame (zim_rd_t *rd, const zim_record_t *rec, void *m, const char **why)
{
    s_map_defaults (rec, m);
    uint64_t seen = 0;
    const char *bad = NULL;
    bool has_op = false;
    if (zim_rd_peek (rd) != ZIM_MP_MAP) {
        *why = zim_rd_skip (rd, NULL) == 0 ? "frame is not a map" : "not valid msgpack";
        return ZIM_EMALFORMED;
    }
    int rc = s_unpack_pairs (rd, rec, m, &seen, &bad, true, &has_op);
    if (rc)
        goto malformed;
    if (!has_op) {
        *why = bad ? bad : "op missing";
        return ZIM_ETYPE;
    }
    const zim_opdesc_t *op = zim_codec_op (rec, *S_CAT (m, rec->op_name_offset, zim_str_t));
    if (!op) {
        *why = "unknown op";
        return ZIM_EKIND;
    }
    *S_AT (m, rec->op_offset, int) = op->op;
    if (bad) {
        *why = bad;
        return ZIM_ETYPE;
    }
    for (uint16_t k = 0; k < op->nkeys; k++)
        if (op->keys[k].need && !(seen & ((uint64_t)1 << op->keys[k].field))) {
            *why = op->keys[k].why;
            return ZIM_EMISSING;
        }
    *why = NULL;
    return 0;
malformed:
    *why = "not valid msgpack";
    return ZIM_EMALFORMED;
}

//  -------------------------------------------------------------------------
//  Deep check and comparison

static int s_check_list (zim_rd_t *rd, uint32_t n, const zim_field_t *elem);

//  Reads and checks one list element of type elem.
static int s_check_elem (zim_rd_t *rd, const zim_field_t *elem)
{
    if (elem->type == ZIM_FT_NESTED) {
        _Alignas(max_align_t) char m[S_ELEM_MAX];
        assert (elem->rec->size <= sizeof m);
        int rc = zim_codec_unpack (rd, elem->rec, m);
        return rc ? rc : zim_codec_check (elem->rec, m);
    }
    if (elem->type == ZIM_FT_LIST) {
        uint32_t n;
        if (zim_rd_array (rd, &n))
            return s_fail (rd, ZIM_MP_ARRAY);
        return s_check_list (rd, n, elem->elem);
    }
    _Alignas(max_align_t) char scratch[sizeof (zim_list_t)];
    return zim_codec_unpack_value (rd, elem, scratch);
}

//  Reads and checks n elements of type elem.
static int s_check_list (zim_rd_t *rd, uint32_t n, const zim_field_t *elem)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = s_check_elem (rd, elem);
        if (rc)
            return rc;
    }
    return 0;
}

int zim_codec_check (const zim_record_t *rec, const void *m)
{
    for (uint16_t i = 0; i < rec->nfields; i++) {
        const zim_field_t *f = &rec->fields[i];
        int rc = 0;
        if (f->type == ZIM_FT_GROUP || f->type == ZIM_FT_NESTED)
            rc = zim_codec_check (f->rec, S_CAT (m, f->offset, char));
        else if (f->type == ZIM_FT_LIST) {
            zim_rd_t items = *S_CAT (m, f->offset, zim_rd_t);
            rc = s_check_list (&items, *S_CAT (m, f->aux, uint32_t), f->elem);
            if (rc == 0 && zim_rd_left (&items))
                rc = ZIM_EMALFORMED; //  bytes after the last element
        }
        if (rc)
            return rc;
    }
    return 0;
}

static bool s_equal_lists (zim_rd_t a, zim_rd_t b, uint32_t n, const zim_field_t *elem);

//  True if the values of field f in a and b are the same.
static bool s_equal_field (const zim_field_t *f, const void *a, const void *b)
{
    if (f->presence == ZIM_P_HAS) {
        bool ha = *S_CAT (a, f->aux, bool), hb = *S_CAT (b, f->aux, bool);
        if (ha != hb)
            return false;
        if (!ha)
            return true;
    }
    switch (f->type) {
    case ZIM_FT_UINT:
    case ZIM_FT_INT:
        return *S_CAT (a, f->offset, uint64_t) == *S_CAT (b, f->offset, uint64_t);
    case ZIM_FT_BOOL:
        return *S_CAT (a, f->offset, bool) == *S_CAT (b, f->offset, bool);
    case ZIM_FT_STR:
    case ZIM_FT_ID:
    case ZIM_FT_RAW:
    case ZIM_FT_BIN: {
        zim_str_t x = *S_CAT (a, f->offset, zim_str_t), y = *S_CAT (b, f->offset, zim_str_t);
        return x.len == y.len && (x.len == 0 || memcmp (x.ptr, y.ptr, x.len) == 0);
    }
    case ZIM_FT_GROUP:
    case ZIM_FT_NESTED:
        return zim_codec_equal (f->rec, S_CAT (a, f->offset, char), S_CAT (b, f->offset, char));
    case ZIM_FT_LIST: {
        uint32_t n = *S_CAT (a, f->aux, uint32_t);
        return n == *S_CAT (b, f->aux, uint32_t) &&
               s_equal_lists (*S_CAT (a, f->offset, zim_rd_t), *S_CAT (b, f->offset, zim_rd_t), n,
                              f->elem);
    }
    case ZIM_FT_ARGS: {
        uint32_t n = *S_CAT (a, f->aux, uint32_t);
        if (n != *S_CAT (b, f->aux, uint32_t) || n > f->max)
            return false;
        const zim_str_t *x = S_CAT (a, f->offset, zim_str_t), *y = S_CAT (b, f->offset, zim_str_t);
        for (uint32_t i = 0; i < n; i++)
            if (x[i].len != y[i].len || (x[i].len && memcmp (x[i].ptr, y[i].ptr, x[i].len)))
                return false;
        return true;
    }
    default:
        return false;
    }
}

//  True if the n elements of type elem at a and b decode to the same values.
static bool s_equal_lists (zim_rd_t a, zim_rd_t b, uint32_t n, const zim_field_t *elem)
{
    for (uint32_t i = 0; i < n; i++) {
        _Alignas(max_align_t) char x[S_ELEM_MAX], y[S_ELEM_MAX];
        bool same;
        if (elem->type == ZIM_FT_NESTED) {
            if (zim_codec_unpack (&a, elem->rec, x) || zim_codec_unpack (&b, elem->rec, y))
                return false;
            same = zim_codec_equal (elem->rec, x, y);
        } else if (elem->type == ZIM_FT_LIST) {
            uint32_t na, nb;
            if (zim_rd_array (&a, &na) || zim_rd_array (&b, &nb) || na != nb)
                return false;
            same = s_equal_lists (a, b, na, elem->elem);
            //  Move both readers past the inner lists.
            for (uint32_t j = 0; j < na; j++)
                if (zim_rd_skip (&a, NULL) || zim_rd_skip (&b, NULL))
                    return false;
        } else {
            if (zim_codec_unpack_value (&a, elem, x) || zim_codec_unpack_value (&b, elem, y))
                return false;
            same = s_equal_field (elem, x, y);
        }
        if (!same)
            return false;
    }
    return true;
}

bool zim_codec_equal (const zim_record_t *rec, const void *a, const void *b)
{
    if (rec->shape == ZIM_SHAPE_FRAMES) {
        //  Frames: the same op, the same values for the keys of that op.
        int value = *S_CAT (a, rec->op_offset, int);
        const zim_opdesc_t *op = s_op_by_value (rec, value);
        if (value != *S_CAT (b, rec->op_offset, int) || !op)
            return false;
        for (uint16_t k = 0; k < op->nkeys; k++)
            if (!s_equal_field (&rec->fields[op->keys[k].field], a, b))
                return false;
        return true;
    }
    for (uint16_t i = 0; i < rec->nfields; i++)
        if (!s_equal_field (&rec->fields[i], a, b))
            return false;
    return true;
}

//  -------------------------------------------------------------------------
//  Selftest: a small catalogue of its own, so the engine is tested apart
//  from msg/zim_catalog.def (whose kinds zim_msg_test walks).

typedef struct {
    uint64_t a;   //  required uint
    zim_str_t s;  //  id
    uint64_t opt; //  optional trailing, default 9
} s_t_inner_t;

typedef struct {
    s_t_inner_t g; //  inlined group
    int64_t i;     //  int in [-5, 5]
    zim_rd_t l;    //  list of inner records
    uint32_t nl;
} s_t_outer_t;

static const zim_record_t s_t_inner;
static const zim_field_t s_t_inner_fields[] = {
    {"a", 1, ZIM_FT_UINT, ZIM_P_REQ, offsetof (s_t_inner_t, a), 0, 0, UINT64_MAX, 0, 0, NULL, NULL,
     "a must be a non-negative integer", "a is out of range"},
    {"s", 1, ZIM_FT_ID, ZIM_P_REQ, offsetof (s_t_inner_t, s), 0, 0, 0, 0, 0, NULL, NULL,
     "s must be a string", "s is not an id"},
    {"opt", 3, ZIM_FT_UINT, ZIM_P_OPT, offsetof (s_t_inner_t, opt), 0, 0, 100, 9, 0, NULL, NULL,
     "opt must be a non-negative integer", "opt is out of range"}};
static const zim_record_t s_t_inner = {"inner",
                                       "inner",
                                       "",
                                       -1,
                                       ZIM_SHAPE_ARRAY,
                                       3,
                                       2,
                                       3,
                                       sizeof (s_t_inner_t),
                                       s_t_inner_fields,
                                       NULL,
                                       0,
                                       0,
                                       0,
                                       NULL};
static const zim_field_t s_t_elem = {"", 0, ZIM_FT_NESTED, ZIM_P_REQ, 0,  0, 0, 0,
                                     0,  0, &s_t_inner,    NULL,      "", ""};
static const zim_field_t s_t_outer_fields[] = {
    {"g", 1, ZIM_FT_GROUP, ZIM_P_REQ, offsetof (s_t_outer_t, g), 0, 0, 0, 0, 0, &s_t_inner, NULL,
     "", ""},
    {"i", 1, ZIM_FT_INT, ZIM_P_REQ, offsetof (s_t_outer_t, i), 0, (uint64_t)-5, 5, 0, 0, NULL, NULL,
     "i must be an integer", "i is out of range"},
    {"l", 1, ZIM_FT_LIST, ZIM_P_REQ, offsetof (s_t_outer_t, l), offsetof (s_t_outer_t, nl), 0, 0, 0,
     0, NULL, &s_t_elem, "l must be an array", ""}};
//  The group inlines all 3 inner fields: 3 + 2 on the wire.
static const zim_record_t s_t_outer = {"outer",
                                       "OUTER",
                                       "",
                                       99,
                                       ZIM_SHAPE_ARRAY,
                                       3,
                                       5,
                                       5,
                                       sizeof (s_t_outer_t),
                                       s_t_outer_fields,
                                       NULL,
                                       0,
                                       0,
                                       0,
                                       NULL};

void zim_codec_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    //  A record with its optional field at the default leaves it out.
    s_t_inner_t in = {7, zim_str ("x"), 9}, got;
    zim_codec_pack (&wr, &s_t_inner, &in);
    assert (wr.size == 4 && (uint8_t)wr.data[0] == 0x92);
    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) == 0 && got.opt == 9);
    assert (zim_codec_equal (&s_t_inner, &in, &got));
    in.opt = 4;
    zim_wr_reset (&wr);
    zim_codec_pack (&wr, &s_t_inner, &in);
    assert ((uint8_t)wr.data[0] == 0x93);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) == 0 && got.opt == 4);
    //  Out of range, not an id, wrong type, truncated.
    in.opt = 101;
    zim_wr_reset (&wr);
    zim_codec_pack (&wr, &s_t_inner, &in);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) == ZIM_EVALUE);
    in.opt = 1;
    in.s = zim_str ("a b");
    zim_wr_reset (&wr);
    zim_codec_pack (&wr, &s_t_inner, &in);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) == ZIM_EVALUE);
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 2);
    zim_wr_cstr (&wr, "7");
    zim_wr_cstr (&wr, "x");
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) == ZIM_ETYPE);
    zim_rd_init (&rd, wr.data, wr.size - 1);
    assert (zim_codec_unpack (&rd, &s_t_inner, &got) != 0);

    //  A kind with an inlined group and a list it streams: header first,
    //  then the caller's elements.
    s_t_outer_t out = {{1, zim_str ("g"), 3}, -5, {NULL, NULL}, 2}, back;
    zim_wr_reset (&wr);
    zim_codec_pack (&wr, &s_t_outer, &out);
    in = (s_t_inner_t){2, zim_str ("e1"), 9};
    zim_codec_pack (&wr, &s_t_inner, &in);
    in.a = 3;
    zim_codec_pack (&wr, &s_t_inner, &in);
    zim_rd_init (&rd, wr.data, wr.size);
    uint32_t n;
    uint64_t code;
    assert (zim_rd_array (&rd, &n) == 0 && n == 6 && zim_rd_uint (&rd, &code) == 0 && code == 99);
    assert (zim_codec_unpack_fields (&rd, n - 1, &s_t_outer, &back) == 0);
    assert (back.g.opt == 3 && back.i == -5 && back.nl == 2 &&
            zim_codec_check (&s_t_outer, &back) == 0);
    assert (zim_codec_unpack (&back.l, &s_t_inner, &got) == 0 && got.a == 2);
    //  Re-encoding the decoded struct gives the same bytes.
    zim_wr_t again;
    zim_wr_init (&again);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_rd_array (&rd, &n);
    zim_rd_uint (&rd, &code);
    zim_codec_unpack_fields (&rd, n - 1, &s_t_outer, &back);
    zim_codec_pack (&again, &s_t_outer, &back);
    assert (again.size == wr.size && memcmp (again.data, wr.data, wr.size) == 0);
    //  Garbage after the last element fails the deep check.
    zim_wr_raw (&wr, "\xc0", 1);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_rd_array (&rd, &n);
    zim_rd_uint (&rd, &code);
    assert (zim_codec_unpack_fields (&rd, n - 1, &s_t_outer, &back) == 0);
    assert (zim_codec_check (&s_t_outer, &back) == ZIM_EMALFORMED);
    //  Wrong field counts.
    assert (zim_codec_unpack_fields (&rd, 4, &s_t_outer, &back) == ZIM_EMALFORMED);
    assert (zim_codec_unpack_fields (&rd, 6, &s_t_outer, &back) == ZIM_EMALFORMED);
    zim_wr_free (&again);
    zim_wr_free (&wr);

    //  The word-at-a-time id check agrees with the byte-at-a-time rule, for
    //  every length, every place of a bad byte and the bytes at the bounds.
    static const uint8_t probes[] = {0x00, 0x20, 0x21, 0x41, 0x7e, 0x7f, 0x80, 0xa1, 0xff};
    char id[80];
    for (size_t len = 0; len <= 70; len++)
        for (size_t at = 0; at <= len; at++)
            for (size_t p = 0; p < sizeof probes; p++) {
                for (size_t i = 0; i < len; i++)
                    id[i] = (char)('!' + (i * 7) % 94);
                if (at < len)
                    id[at] = (char)probes[p];
                bool good = at == len || (probes[p] >= 0x21 && probes[p] <= 0x7e);
                assert (s_id_ok ((zim_str_t){id, len}) == (good && len >= 1 && len <= ZIM_ID_MAX));
            }
    if (verbose)
        printf ("(codec engine ok) ");
}
