/*  zim_sample.c: sample encodings of records, whole or broken (zim_sample.h).
    Samples are canonical (the engine re-encodes a decoded sample to the
    same bytes): optional fields always carry a value other than their
    default, and integers use msgpack's smallest encodings.
*/
#include "msg/zim_sample.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

//  State of one sample being written.
typedef struct {
    zim_sample_t *s; //  the caller's request and results
    int site;        //  the next site's number
    uint64_t rng;    //  pseudo-random state from the seed
    bool may;        //  writing a key a frame's op may leave out
} s_state_t;

//  Next pseudo-random number (splitmix64).
static uint64_t s_rand (s_state_t *st)
{
    uint64_t z = (st->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

//  Takes the next site; true if it is the one to break with fault.
static bool s_site (s_state_t *st, int fault)
{
    int site = st->site++;
    return st->s->fault == fault && st->s->site == site;
}

//  Marks the fault applied with the given expectation.
static void s_applied (s_state_t *st, bool expect_ok)
{
    st->s->applied = true;
    st->s->expect_ok = expect_ok;
}

static void s_record (zim_wr_t *wr, const zim_record_t *rec, s_state_t *st, bool kind);

//  A uint within [min, max] that is not def when optional.
static uint64_t s_uint (s_state_t *st, const zim_field_t *f)
{
    static const uint64_t picks[] = {0,     1,     127,           128,           255,       256,
                                     65535, 65536, 4294967295ULL, 4294967296ULL, UINT64_MAX};
    uint64_t v = picks[s_rand (st) % (sizeof picks / sizeof picks[0])];
    if (f->min != 0 || f->max != UINT64_MAX)
        v = f->min + (f->max - f->min == UINT64_MAX ? v : v % (f->max - f->min + 1));
    if ((st->may || f->presence != ZIM_P_REQ) && f->presence != ZIM_P_HAS && v == f->def)
        v = v == f->max ? f->min : v + 1;
    return v;
}

//  An int within [min, max] that is not def when optional.
static int64_t s_int (s_state_t *st, const zim_field_t *f)
{
    static const int64_t picks[] = {0,    -1,    -32,    -33,       127,      -128,
                                    -129, 40000, -40000, INT64_MIN, INT64_MAX};
    int64_t v = picks[s_rand (st) % (sizeof picks / sizeof picks[0])];
    int64_t lo = (int64_t)f->min, hi = (int64_t)f->max;
    if (v < lo || v > hi)
        v = lo + (int64_t)(s_rand (st) % ((uint64_t)(hi - lo) + 1));
    if (f->presence != ZIM_P_REQ && f->presence != ZIM_P_HAS && (uint64_t)v == f->def)
        v = v == hi ? lo : v + 1;
    return v;
}

//  Writes n bytes of printable text as a str (or a bin).
static void s_text (zim_wr_t *wr, s_state_t *st, size_t n, bool bin)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "_.@-~!#:/";
    char *text = zim_malloc (n + 1);
    for (size_t i = 0; i < n; i++)
        text[i] = chars[s_rand (st) % (sizeof chars - 1)];
    if (bin)
        zim_wr_bin (wr, (zim_str_t){text, n});
    else
        zim_wr_str (wr, (zim_str_t){text, n});
    free (text);
}

//  Writes one raw value: one of a few shapes a body may take.
static void s_raw (zim_wr_t *wr, s_state_t *st)
{
    switch (s_rand (st) % 6) {
    case 0:
        zim_wr_cstr (wr, "hi");
        break;
    case 1:
        zim_wr_map (wr, 2);
        zim_wr_cstr (wr, "text");
        zim_wr_cstr (wr, "hello");
        zim_wr_cstr (wr, "n");
        zim_wr_array (wr, 4);
        zim_wr_uint (wr, 1);
        zim_wr_int (wr, -1);
        zim_wr_nil (wr);
        zim_wr_bool (wr, true);
        break;
    case 2:
        zim_wr_raw (wr, "\xcb\x40\x09\x21\xf9\xf0\x1b\x86\x6e", 9); //  float64 pi
        break;
    case 3:
        zim_wr_raw (wr, "\xd6\x01\x00\x00\x00\x2a", 6); //  fixext4
        break;
    case 4:
        zim_wr_bin (wr, (zim_str_t){"\x00\x01\x02", 3});
        break;
    default:
        zim_wr_uint (wr, 70000);
        break;
    }
}

//  Writes a value of another type than field f wants; false if every
//  value is right for f (a raw field).
static bool s_wrong_type (zim_wr_t *wr, const zim_field_t *f)
{
    switch (f->type) {
    case ZIM_FT_RAW:
        return false;
    case ZIM_FT_UINT:
    case ZIM_FT_INT:
    case ZIM_FT_BIN:
        zim_wr_cstr (wr, "x");
        return true;
    case ZIM_FT_BOOL:
        zim_wr_uint (wr, 2);
        return true;
    default:
        zim_wr_uint (wr, 7);
        return true;
    }
}

//  Writes a value of the right type that field f refuses; false if f
//  accepts every value of its type.
static bool s_bad_value (zim_wr_t *wr, const zim_field_t *f, s_state_t *st)
{
    switch (f->type) {
    case ZIM_FT_UINT:
        if (f->max != UINT64_MAX)
            zim_wr_uint (wr, f->max + 1);
        else if (f->min > 0)
            zim_wr_uint (wr, f->min - 1);
        else
            return false;
        return true;
    case ZIM_FT_INT:
        if ((int64_t)f->max != INT64_MAX)
            zim_wr_int (wr, (int64_t)f->max + 1);
        else if ((int64_t)f->min != INT64_MIN)
            zim_wr_int (wr, (int64_t)f->min - 1);
        else
            return false;
        return true;
    case ZIM_FT_STR:
    case ZIM_FT_BIN:
        if (f->max > 65536)
            return false;
        s_text (wr, st, (size_t)f->max + 1, f->type == ZIM_FT_BIN);
        return true;
    case ZIM_FT_ID: {
        static const char *const bad[] = {"a b", "", "caf\xc3\xa9", "tab\there"};
        uint64_t pick = s_rand (st) % 5;
        if (pick < 4)
            zim_wr_cstr (wr, bad[pick]);
        else
            s_text (wr, st, ZIM_ID_MAX + 1, false);
        return true;
    }
    case ZIM_FT_ARGS:
        if (f->maxlen > 65536)
            return false;
        s_text (wr, st, (size_t)f->maxlen + 1, false);
        return true;
    default:
        return false;
    }
}

//  Writes a good value for f, or a broken one at the chosen site.
static void s_value (zim_wr_t *wr, const zim_field_t *f, s_state_t *st);

//  Writes the elements of a list field: n of type elem.
static void s_elements (zim_wr_t *wr, const zim_field_t *elem, uint32_t n, s_state_t *st)
{
    for (uint32_t i = 0; i < n; i++)
        s_value (wr, elem, st);
}

static void s_value (zim_wr_t *wr, const zim_field_t *f, s_state_t *st)
{
    bool here = st->s->site == st->site++;
    if (here && st->s->fault == ZIM_FAULT_TYPE && s_wrong_type (wr, f)) {
        s_applied (st, false);
        return;
    }
    if (here && st->s->fault == ZIM_FAULT_VALUE && s_bad_value (wr, f, st)) {
        s_applied (st, false);
        return;
    }
    switch (f->type) {
    case ZIM_FT_UINT:
        zim_wr_uint (wr, s_uint (st, f));
        break;
    case ZIM_FT_INT:
        zim_wr_int (wr, s_int (st, f));
        break;
    case ZIM_FT_BOOL: {
        bool v = s_rand (st) & 1;
        if ((st->may || f->presence != ZIM_P_REQ) && f->presence != ZIM_P_HAS)
            v = f->def == 0;
        zim_wr_bool (wr, v);
        break;
    }
    case ZIM_FT_STR:
    case ZIM_FT_BIN: {
        size_t n = s_rand (st) % 3 == 0 ? 40 : 1 + s_rand (st) % 8;
        s_text (wr, st, n < f->max ? n : (size_t)f->max, f->type == ZIM_FT_BIN);
        break;
    }
    case ZIM_FT_ID:
        s_text (wr, st, 1 + s_rand (st) % 12, false);
        break;
    case ZIM_FT_RAW:
        s_raw (wr, st);
        break;
    case ZIM_FT_NESTED:
        s_record (wr, f->rec, st, false);
        break;
    case ZIM_FT_LIST: {
        uint32_t n = (uint32_t)(s_rand (st) % 3);
        zim_wr_array (wr, n);
        s_elements (wr, f->elem, n, st);
        break;
    }
    default:
        assert (!"no single value");
    }
}

//  Writes the fields of array record rec into body; *count counts the wire
//  fields; a dropped field's place goes to *dropped, and whether it was
//  optional to *dropped_optional.
static void s_array_fields (zim_wr_t *body, const zim_record_t *rec, s_state_t *st, uint32_t *count,
                            int *dropped, bool *dropped_optional)
{
    for (uint16_t i = 0; i < rec->nfields; i++) {
        const zim_field_t *f = &rec->fields[i];
        if (f->type == ZIM_FT_GROUP) {
            s_array_fields (body, f->rec, st, count, dropped, dropped_optional);
            continue;
        }
        if (f->type == ZIM_FT_ARGS) {
            //  Arguments are all alike: any one may go.
            uint32_t n = (uint32_t)(s_rand (st) % 4);
            for (uint32_t a = 0; a < n && a < f->max; a++) {
                bool here = st->s->site == st->site++;
                if (here && st->s->fault == ZIM_FAULT_DROP) {
                    s_applied (st, true);
                    continue;
                }
                if (here && st->s->fault == ZIM_FAULT_TYPE) {
                    zim_wr_uint (body, 7);
                    s_applied (st, false);
                } else if (here && st->s->fault == ZIM_FAULT_VALUE && s_bad_value (body, f, st))
                    s_applied (st, false);
                else
                    s_text (body, st, 1 + s_rand (st) % 6, false);
                (*count)++;
            }
            continue;
        }
        if (st->s->fault == ZIM_FAULT_DROP && st->s->site == st->site) {
            st->site++;
            *dropped = (int)*count;
            *dropped_optional = f->presence != ZIM_P_REQ;
            continue;
        }
        s_value (body, f, st);
        (*count)++;
    }
}

//  Writes record rec (a kind: with its code) at the current site.
static void s_record (zim_wr_t *wr, const zim_record_t *rec, s_state_t *st, bool kind)
{
    bool extra = s_site (st, ZIM_FAULT_EXTRA);
    zim_wr_t body;
    zim_wr_init (&body);
    uint32_t count = 0;
    if (rec->shape == ZIM_SHAPE_ARRAY) {
        int dropped = -1;
        bool optional = false;
        s_array_fields (&body, rec, st, &count, &dropped, &optional);
        if (dropped >= 0)
            //  Only the last field can go without shifting the others.
            if (dropped == (int)count)
                s_applied (st, optional);
        if (extra) {
            zim_wr_nil (&body);
            count++;
            s_applied (st, false);
        }
        if (kind) {
            zim_wr_array (wr, count + 1);
            zim_wr_uint (wr, (uint64_t)rec->code);
        } else
            zim_wr_array (wr, count);
    } else {
        //  A map record: every field; a frame: the keys of one op.
        const zim_opdesc_t *op = NULL;
        uint32_t nkeys = rec->nfields;
        if (rec->shape == ZIM_SHAPE_FRAMES) {
            op = &rec->ops[st->s->seed % rec->nops];
            nkeys = op->nkeys;
            zim_wr_cstr (&body, "op");
            bool here = st->s->site == st->site++;
            if (here && st->s->fault == ZIM_FAULT_TYPE) {
                zim_wr_uint (&body, 1);
                s_applied (st, false);
            } else if (here && st->s->fault == ZIM_FAULT_VALUE) {
                zim_wr_cstr (&body, "no such op");
                s_applied (st, false);
            } else
                zim_wr_cstr (&body, op->name);
            count++;
        }
        for (uint32_t k = 0; k < nkeys; k++) {
            const zim_field_t *f = &rec->fields[op ? op->keys[k].field : k];
            bool need = op ? op->keys[k].need : f->presence == ZIM_P_REQ;
            if (st->s->fault == ZIM_FAULT_DROP && st->s->site == st->site) {
                st->site++;
                s_applied (st, !need);
                continue;
            }
            zim_wr_str (&body, (zim_str_t){f->name, f->name_len});
            st->may = op && !need;
            s_value (&body, f, st);
            st->may = false;
            count++;
        }
        if (extra) {
            zim_wr_cstr (&body, "zz_unknown");
            zim_wr_nil (&body);
            count++;
            s_applied (st, true);
        }
        zim_wr_map (wr, count);
    }
    zim_wr_raw (wr, body.data, body.size);
    zim_wr_free (&body);
}

void zim_sample_pack (zim_wr_t *wr, const zim_record_t *rec, zim_sample_t *s)
{
    s_state_t st = {s, 0, s->seed * 0x2545f4914f6cdd1dULL + 1, false};
    s->applied = false;
    s->expect_ok = s->fault == ZIM_FAULT_NONE;
    s_record (wr, rec, &st, rec->code >= 0);
    s->sites = st.site;
}

const char *zim_sample_fault_name (int fault)
{
    static const char *const names[] = {"none", "wrong type", "bad value", "dropped", "extra"};
    return fault >= 0 && fault < ZIM_FAULTS ? names[fault] : "?";
}

void zim_sample_test (bool verbose)
{
    //  The engine's own selftest record shapes are in zim_codec; here: the
    //  same seed gives the same bytes, another seed other bytes.
    static const zim_field_t fields[] = {
        {"n", 1, ZIM_FT_UINT, ZIM_P_REQ, 0, 0, 0, UINT64_MAX, 0, 0, NULL, NULL, "", ""},
        {"s", 1, ZIM_FT_ID, ZIM_P_REQ, 8, 0, 1, ZIM_ID_MAX, 0, 0, NULL, NULL, "", ""}};
    static const zim_record_t rec = {"t", "T", "", 7,   ZIM_SHAPE_ARRAY, 2, 2, 2, 24, fields, NULL,
                                     0,   0,   0,  NULL};
    zim_wr_t a, b;
    zim_wr_init (&a);
    zim_wr_init (&b);
    zim_sample_t s = {1, ZIM_FAULT_NONE, -1, 0, false, false};
    zim_sample_pack (&a, &rec, &s);
    assert (s.sites == 3 && s.expect_ok);
    zim_sample_pack (&b, &rec, &s);
    assert (a.size == b.size && memcmp (a.data, b.data, a.size) == 0);
    assert ((uint8_t)a.data[0] == 0x93 && a.data[1] == 7);
    //  A drop of the last (required) field is applied and must fail.
    zim_wr_reset (&b);
    s = (zim_sample_t){1, ZIM_FAULT_DROP, 2, 0, false, false};
    zim_sample_pack (&b, &rec, &s);
    assert (s.applied && !s.expect_ok && (uint8_t)b.data[0] == 0x92);
    //  A drop of a middle field would shift the rest: not applied.
    zim_wr_reset (&b);
    s = (zim_sample_t){1, ZIM_FAULT_DROP, 1, 0, false, false};
    zim_sample_pack (&b, &rec, &s);
    assert (!s.applied);
    zim_wr_free (&a);
    zim_wr_free (&b);
    if (verbose)
        printf ("(samples ok) ");
}
