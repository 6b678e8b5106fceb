/*  zim_msg.c: the catalogue's field tables, expanded from msg/zim_catalog.def
    for the codec engine, the few encoders that take their fields as
    arguments, and the selftest that round-trips and breaks every record
    the catalogue declares.
*/
#include "msg/zim_msg.h"
#include "msg/zim_sample.h"
#include "msg/zim_text.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *zim_strerror (int code)
{
    switch (code) {
    case 0:
        return "ok";
    case ZIM_EMALFORMED:
        return "malformed message";
    case ZIM_ETYPE:
        return "field of the wrong type";
    case ZIM_EMISSING:
        return "required field missing";
    case ZIM_ETOOLONG:
        return "value too long";
    case ZIM_EKIND:
        return "unknown message kind";
    case ZIM_EVALUE:
        return "value out of range";
    case ZIM_ESTORE:
        return "store failure";
    case ZIM_EFULL:
        return "queue full, retry later";
    case ZIM_ERR_MALFORMED:
        return "malformed frame";
    case ZIM_ERR_BAD_FIELD:
        return "bad or missing field";
    case ZIM_ERR_TOO_LARGE:
        return "frame too large";
    case ZIM_ERR_UNKNOWN_OP:
        return "unknown op";
    case ZIM_ERR_BAD_RECIPIENT:
        return "bad recipient";
    case ZIM_ERR_CID_CONFLICT:
        return "cid already used for a different message";
    case ZIM_ERR_AUTH_TIMEOUT:
        return "authentication timeout";
    case ZIM_ERR_AUTH_FAILURES:
        return "too many failed authentication attempts";
    case ZIM_ERR_TOKEN_NOT_YET:
        return "token not yet valid";
    case ZIM_ERR_TOKEN_CLAIMS:
        return "token audience or issuer refused";
    case ZIM_ERR_TOKEN_ALG:
        return "token algorithm refused";
    case ZIM_ERR_TOO_MANY_READS:
        return "too many requests in flight";
    case ZIM_ERR_TOO_MANY_CONNS:
        return "too many connections for this user";
    case ZIM_ERR_AUTH_REQUIRED:
        return "authentication required";
    case ZIM_ERR_BAD_TOKEN:
        return "bad token";
    case ZIM_ERR_TOKEN_EXPIRED:
        return "token expired";
    case ZIM_ERR_ALREADY_AUTHED:
        return "already authenticated";
    case ZIM_ERR_FORBIDDEN:
        return "forbidden";
    case ZIM_ERR_RATE_LIMITED:
        return "rate limited";
    case ZIM_ERR_NOT_IN_ROOM:
        return "not in this room";
    case ZIM_ERR_TOO_MANY_ROOMS:
        return "too many rooms";
    case ZIM_ERR_BAD_ROOM:
        return "bad room name";
    case ZIM_ERR_PUBLISH_DENIED:
        return "publish not allowed";
    case ZIM_ERR_ROOM_DENIED:
        return "room not allowed";
    case ZIM_ERR_SIGNAL_RATE:
        return "signal rate limited";
    case ZIM_ERR_DISCONNECTED:
        return "disconnected by the app";
    case ZIM_ERR_IDLE_TIMEOUT:
        return "idle timeout";
    case ZIM_ENOTMEMBER:
    case ZIM_ERR_NOT_MEMBER:
        return "not a member of the group";
    case ZIM_ENOGROUP:
    case ZIM_ERR_NO_GROUP:
        return "no such group";
    case ZIM_EGROUPFULL:
    case ZIM_ERR_GROUP_FULL:
        return "group too large";
    case ZIM_EEXISTS:
    case ZIM_ERR_GROUP_EXISTS:
        return "group exists already";
    case ZIM_ENOTCHANNEL:
    case ZIM_ERR_NOT_CHANNEL:
        return "not a channel";
    case ZIM_ERR_SLOW_CONSUMER:
        return "slow consumer";
    case ZIM_ERR_INTERNAL:
        return "internal error";
    case ZIM_ERR_UNAVAILABLE:
        return "unavailable, retry later";
    case ZIM_ERR_TIMEOUT:
        return "timeout, retry later";
    default:
        return "unknown error";
    }
}

//  -------------------------------------------------------------------------
//  The catalogue's tables. Each pass expands msg/zim_catalog.def once.

//  Pass: field indexes, S_FI_<rec>_<field>, and field counts S_NF_<rec>.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc) enum {
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub) S_FI_##rec##_##f,
#define ZIM_X_END(name)                                                                            \
    S_NF_##name                                                                                    \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: most wire fields of each array record, S_WMAX_<rec> (a group
//  counts its fields, args their most).
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc) enum { S_WMAX_##name = 0
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub) +S_WMAX_F_##type (sub, hi)
#define S_WMAX_F_GROUP(sub, hi) S_WMAX_##sub
#define S_WMAX_F_ARGS(sub, hi) (hi)
#define S_WMAX_F_UINT(sub, hi) 1
#define S_WMAX_F_INT S_WMAX_F_UINT
#define S_WMAX_F_BOOL S_WMAX_F_UINT
#define S_WMAX_F_STR S_WMAX_F_UINT
#define S_WMAX_F_ID S_WMAX_F_UINT
#define S_WMAX_F_RAW S_WMAX_F_UINT
#define S_WMAX_F_BIN S_WMAX_F_UINT
#define S_WMAX_F_NESTED S_WMAX_F_UINT
#define S_WMAX_F_LIST S_WMAX_F_UINT
#define S_WMAX_F_LISTS S_WMAX_F_UINT
#define S_WMAX_F_UINTS S_WMAX_F_UINT
#define ZIM_X_END(name)                                                                            \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: fewest wire fields, S_WMIN_<rec> (groups are written whole).
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc) enum { S_WMIN_##name = 0
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub) +S_WMIN_F_##type (sub, pres)
#define S_WMIN_F_GROUP(sub, pres) S_WMAX_##sub
#define S_WMIN_F_ARGS(sub, pres) 0
#define S_WMIN_F_UINT(sub, pres) S_ISREQ_##pres
#define S_WMIN_F_INT S_WMIN_F_UINT
#define S_WMIN_F_BOOL S_WMIN_F_UINT
#define S_WMIN_F_STR S_WMIN_F_UINT
#define S_WMIN_F_ID S_WMIN_F_UINT
#define S_WMIN_F_RAW S_WMIN_F_UINT
#define S_WMIN_F_BIN S_WMIN_F_UINT
#define S_WMIN_F_NESTED S_WMIN_F_UINT
#define S_WMIN_F_LIST S_WMIN_F_UINT
#define S_WMIN_F_LISTS S_WMIN_F_UINT
#define S_WMIN_F_UINTS S_WMIN_F_UINT
#define S_ISREQ_ZIM_REQ 1
#define S_ISREQ_ZIM_HAS 0
#define S_ISREQ_ZIM_OPT(def) 0
#define S_ISREQ_ZIM_NIL(def) 0
#define ZIM_X_END(name)                                                                            \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: the element of each list field, s_elem_<rec>_<field> (and for a
//  list of lists the inner element, s_elem2_<rec>_<field>).
#include "msg/zim_catalog_x.h"
#undef ZIM_X_F
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub) S_ELEM_##type (rec, f, sub)
#define S_ELEM_NONE(rec, f, sub)
#define S_ELEM_UINT S_ELEM_NONE
#define S_ELEM_INT S_ELEM_NONE
#define S_ELEM_BOOL S_ELEM_NONE
#define S_ELEM_STR S_ELEM_NONE
#define S_ELEM_ID S_ELEM_NONE
#define S_ELEM_RAW S_ELEM_NONE
#define S_ELEM_BIN S_ELEM_NONE
#define S_ELEM_GROUP S_ELEM_NONE
#define S_ELEM_NESTED S_ELEM_NONE
#define S_ELEM_ARGS S_ELEM_NONE
#define S_ELEM_REC(var, r)                                                                         \
    static const zim_field_t var = {                                                               \
        "",           0,    ZIM_FT_NESTED,      ZIM_P_REQ,   0, 0, 0, 0, 0, 0,                     \
        &zim_rec_##r, NULL, "must be an array", "is invalid"};
#define S_ELEM_LIST(rec, f, sub) S_ELEM_REC (s_elem_##rec##_##f, sub)
#define S_ELEM_LISTS(rec, f, sub)                                                                  \
    S_ELEM_REC (s_elem2_##rec##_##f, sub)                                                          \
    static const zim_field_t s_elem_##rec##_##f = {"",                                             \
                                                   0,                                              \
                                                   ZIM_FT_LIST,                                    \
                                                   ZIM_P_REQ,                                      \
                                                   offsetof (zim_list_t, rd),                      \
                                                   offsetof (zim_list_t, n),                       \
                                                   0,                                              \
                                                   0,                                              \
                                                   0,                                              \
                                                   0,                                              \
                                                   NULL,                                           \
                                                   &s_elem2_##rec##_##f,                           \
                                                   "must be an array",                             \
                                                   "is invalid"};
#define S_ELEM_UINTS(rec, f, sub)                                                                  \
    static const zim_field_t s_elem_##rec##_##f = {"",                                             \
                                                   0,                                              \
                                                   ZIM_FT_UINT,                                    \
                                                   ZIM_P_REQ,                                      \
                                                   0,                                              \
                                                   0,                                              \
                                                   0,                                              \
                                                   UINT64_MAX,                                     \
                                                   0,                                              \
                                                   0,                                              \
                                                   NULL,                                           \
                                                   NULL,                                           \
                                                   #f " must hold non-negative integers",          \
                                                   #f " is out of range"};
#include "msg/zim_catalog.def"

//  Pass: the field tables, s_fields_<rec>.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc) static const zim_field_t s_fields_##name[] = {
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub)                                           \
    {#f,                                                                                           \
     sizeof (#f) - 1,                                                                              \
     S_FT_##type,                                                                                  \
     S_PRES_##pres,                                                                                \
     offsetof (zim_##rec##_t, f),                                                                  \
     S_AUXT_##type (rec, f) + S_AUXP_##pres (rec, f),                                              \
     (uint64_t)(lo),                                                                               \
     (uint64_t)(hi),                                                                               \
     S_DEF_##pres,                                                                                 \
     (uint64_t)(maxlen),                                                                           \
     S_RECP_##type (sub),                                                                          \
     S_ELEMP_##type (rec, f),                                                                      \
     #f " must be " S_WHAT_##type,                                                                 \
     #f S_WHY_##type},
#define ZIM_X_END(name)                                                                            \
    {                                                                                              \
        NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL                                    \
    }                                                                                              \
    }                                                                                              \
    ;
#define S_FT_UINT ZIM_FT_UINT
#define S_FT_INT ZIM_FT_INT
#define S_FT_BOOL ZIM_FT_BOOL
#define S_FT_STR ZIM_FT_STR
#define S_FT_ID ZIM_FT_ID
#define S_FT_RAW ZIM_FT_RAW
#define S_FT_BIN ZIM_FT_BIN
#define S_FT_GROUP ZIM_FT_GROUP
#define S_FT_NESTED ZIM_FT_NESTED
#define S_FT_LIST ZIM_FT_LIST
#define S_FT_LISTS ZIM_FT_LIST
#define S_FT_UINTS ZIM_FT_LIST
#define S_FT_ARGS ZIM_FT_ARGS
#define S_PRES_ZIM_REQ ZIM_P_REQ
#define S_PRES_ZIM_HAS ZIM_P_HAS
#define S_PRES_ZIM_OPT(def) ZIM_P_OPT
#define S_PRES_ZIM_NIL(def) ZIM_P_NIL
#define S_DEF_ZIM_REQ 0
#define S_DEF_ZIM_HAS 0
#define S_DEF_ZIM_OPT(def) (uint64_t) (def)
#define S_DEF_ZIM_NIL(def) (uint64_t) (def)
#define S_ZERO(rec, f) 0
#define S_COUNT(rec, f) offsetof (zim_##rec##_t, n##f)
#define S_AUXT_UINT S_ZERO
#define S_AUXT_INT S_ZERO
#define S_AUXT_BOOL S_ZERO
#define S_AUXT_STR S_ZERO
#define S_AUXT_ID S_ZERO
#define S_AUXT_RAW S_ZERO
#define S_AUXT_BIN S_ZERO
#define S_AUXT_GROUP S_ZERO
#define S_AUXT_NESTED S_ZERO
#define S_AUXT_LIST S_COUNT
#define S_AUXT_LISTS S_COUNT
#define S_AUXT_UINTS S_COUNT
#define S_AUXT_ARGS S_COUNT
#define S_AUXP_ZIM_REQ S_ZERO
#define S_AUXP_ZIM_HAS(rec, f) offsetof (zim_##rec##_t, has_##f)
#define S_AUXP_ZIM_OPT(def) S_ZERO
#define S_AUXP_ZIM_NIL(def) S_ZERO
#define S_NOREC(sub) NULL
#define S_SUBREC(sub) &zim_rec_##sub
#define S_RECP_UINT S_NOREC
#define S_RECP_INT S_NOREC
#define S_RECP_BOOL S_NOREC
#define S_RECP_STR S_NOREC
#define S_RECP_ID S_NOREC
#define S_RECP_RAW S_NOREC
#define S_RECP_BIN S_NOREC
#define S_RECP_GROUP S_SUBREC
#define S_RECP_NESTED S_SUBREC
#define S_RECP_LIST S_NOREC
#define S_RECP_LISTS S_NOREC
#define S_RECP_UINTS S_NOREC
#define S_RECP_ARGS S_NOREC
#define S_NOELEM(rec, f) NULL
#define S_ELEMOF(rec, f) &s_elem_##rec##_##f
#define S_ELEMP_UINT S_NOELEM
#define S_ELEMP_INT S_NOELEM
#define S_ELEMP_BOOL S_NOELEM
#define S_ELEMP_STR S_NOELEM
#define S_ELEMP_ID S_NOELEM
#define S_ELEMP_RAW S_NOELEM
#define S_ELEMP_BIN S_NOELEM
#define S_ELEMP_GROUP S_NOELEM
#define S_ELEMP_NESTED S_NOELEM
#define S_ELEMP_LIST S_ELEMOF
#define S_ELEMP_LISTS S_ELEMOF
#define S_ELEMP_UINTS S_ELEMOF
#define S_ELEMP_ARGS S_NOELEM
#define S_WHAT_UINT "a non-negative integer"
#define S_WHAT_INT "an integer"
#define S_WHAT_BOOL "a boolean"
#define S_WHAT_STR "a string"
#define S_WHAT_ID "a string"
#define S_WHAT_RAW "a msgpack value"
#define S_WHAT_BIN "a bin"
#define S_WHAT_GROUP "fields"
#define S_WHAT_NESTED "an array or a map"
#define S_WHAT_LIST "an array"
#define S_WHAT_LISTS "an array"
#define S_WHAT_UINTS "an array"
#define S_WHAT_ARGS "strings"
#define S_WHY_UINT " is out of range"
#define S_WHY_INT " is out of range"
#define S_WHY_BOOL " is invalid"
#define S_WHY_STR " is too long"
#define S_WHY_ID " must be 1 to 64 printable ASCII characters"
#define S_WHY_RAW " is invalid"
#define S_WHY_BIN " is too long"
#define S_WHY_GROUP " is invalid"
#define S_WHY_NESTED " is invalid"
#define S_WHY_LIST " is invalid"
#define S_WHY_LISTS " is invalid"
#define S_WHY_UINTS " is invalid"
#define S_WHY_ARGS " are too many or too long"
#include "msg/zim_catalog.def"

//  Pass: the keys of each op, s_keys_<rec>_<op>.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_OP
#undef ZIM_X_KEY
#undef ZIM_X_OP_END
#define ZIM_X_OP(rec, ENUM, name, doc) static const zim_opkey_t s_keys_##rec##_##name[] = {
#define ZIM_X_KEY(rec, op, f, need) {S_FI_##rec##_##f, need, #op " needs " #f},
#define ZIM_X_OP_END(rec, op)                                                                      \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: the ops of each record, s_ops_<rec> (empty but for a sentinel
//  outside FRAMES records).
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_OP
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc) static const zim_opdesc_t s_ops_##name[] = {
#define ZIM_X_OP(rec, ENUM, name, doc)                                                             \
    {ENUM,                                                                                         \
     #name,                                                                                        \
     sizeof (#name) - 1,                                                                           \
     s_keys_##rec##_##name,                                                                        \
     sizeof s_keys_##rec##_##name / sizeof s_keys_##rec##_##name[0],                               \
     doc},
#define ZIM_X_END(name)                                                                            \
    {                                                                                              \
        0, NULL, 0, NULL, 0, NULL                                                                  \
    }                                                                                              \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: a struct of every record's defaults, s_defaults_<rec>, for the
//  decoders of maps (which start from it).
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc)                                                 \
    static const zim_##name##_t s_defaults_##name = {S_DEFAULT_##shape
#define S_DEFAULT_GROUP
#define S_DEFAULT_RECORD
#define S_DEFAULT_KIND
#define S_DEFAULT_MAP
#define S_DEFAULT_FRAMES .op = ZIM_OP_UNKNOWN,
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub) S_DEFINIT_##type (f, pres)
#define S_DEFINIT_NUM(f, pres) .f = S_DEFNUM_##pres,
#define S_DEFINIT_NONE(f, pres)
#define S_DEFINIT_UINT S_DEFINIT_NUM
#define S_DEFINIT_INT S_DEFINIT_NUM
#define S_DEFINIT_BOOL S_DEFINIT_NUM
#define S_DEFINIT_STR S_DEFINIT_NONE
#define S_DEFINIT_ID S_DEFINIT_NONE
#define S_DEFINIT_RAW S_DEFINIT_NONE
#define S_DEFINIT_BIN S_DEFINIT_NONE
#define S_DEFINIT_GROUP S_DEFINIT_NONE
#define S_DEFINIT_NESTED S_DEFINIT_NONE
#define S_DEFINIT_LIST S_DEFINIT_NONE
#define S_DEFINIT_LISTS S_DEFINIT_NONE
#define S_DEFINIT_UINTS S_DEFINIT_NONE
#define S_DEFINIT_ARGS S_DEFINIT_NONE
#define S_DEFNUM_ZIM_REQ 0
#define S_DEFNUM_ZIM_HAS 0
#define S_DEFNUM_ZIM_OPT(def) (def)
#define S_DEFNUM_ZIM_NIL(def) (def)
#define ZIM_X_END(name)                                                                            \
    }                                                                                              \
    ;
#include "msg/zim_catalog.def"

//  Pass: the records, zim_rec_<rec>.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc)                                                 \
    _Static_assert(S_NF_##name <= 64, #name ": at most 64 fields (a bit each when decoding)");     \
    const zim_record_t zim_rec_##name = {#name,                                                    \
                                         #title,                                                   \
                                         doc,                                                      \
                                         code,                                                     \
                                         S_SHAPE_##shape,                                          \
                                         S_NF_##name,                                              \
                                         S_WMIN_##name,                                            \
                                         S_WMAX_##name,                                            \
                                         sizeof (zim_##name##_t),                                  \
                                         s_fields_##name,                                          \
                                         s_ops_##name,                                             \
                                         sizeof s_ops_##name / sizeof s_ops_##name[0] - 1,         \
                                         S_OPOFF_##shape (name),                                   \
                                         &s_defaults_##name};
#define S_SHAPE_GROUP ZIM_SHAPE_GROUP
#define S_SHAPE_RECORD ZIM_SHAPE_ARRAY
#define S_SHAPE_KIND ZIM_SHAPE_ARRAY
#define S_SHAPE_MAP ZIM_SHAPE_MAP
#define S_SHAPE_FRAMES ZIM_SHAPE_FRAMES
#define S_OPOFF_NONE(name) 0, 0
#define S_OPOFF_GROUP S_OPOFF_NONE
#define S_OPOFF_RECORD S_OPOFF_NONE
#define S_OPOFF_KIND S_OPOFF_NONE
#define S_OPOFF_MAP S_OPOFF_NONE
#define S_OPOFF_FRAMES(name) offsetof (zim_##name##_t, op), offsetof (zim_##name##_t, op_name)
#include "msg/zim_catalog.def"

//  Pass: the list of every record.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc) &zim_rec_##name,
const zim_record_t *const zim_catalog[] = {
#include "msg/zim_catalog.def"
};
const size_t zim_catalog_size = sizeof zim_catalog / sizeof zim_catalog[0];

//  Pass: kinds by code.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc) S_BYCODE_##shape (name, code)
#define S_BYCODE_NONE(name, code)
#define S_BYCODE_GROUP S_BYCODE_NONE
#define S_BYCODE_RECORD S_BYCODE_NONE
#define S_BYCODE_MAP S_BYCODE_NONE
#define S_BYCODE_FRAMES S_BYCODE_NONE
#define S_BYCODE_KIND(name, code) [code] = &zim_rec_##name,
static const zim_record_t *const s_by_code[256] = {
#include "msg/zim_catalog.def"
};

#define ZIM_X_UNDEF
#include "msg/zim_catalog_x.h"
#undef ZIM_X_UNDEF

//  -------------------------------------------------------------------------
//  Backbone messages

int zim_msg_kind (zim_rd_t *rd, int *kind, uint32_t *fields)
{
    zim_rd_t save = *rd;
    uint32_t n;
    uint64_t k;
    if (zim_rd_array (rd, &n) || n < 1 || zim_rd_uint (rd, &k) || k > 255) {
        *rd = save;
        return ZIM_EMALFORMED;
    }
    *kind = (int)k;
    *fields = n - 1;
    return 0;
}

const zim_record_t *zim_msg_record (int kind)
{
    return kind >= 0 && kind < 256 ? s_by_code[kind] : NULL;
}

int zim_msg_unpack (const void *data, size_t size, const zim_record_t **rec_p, void *m)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    int kind;
    uint32_t fields;
    *rec_p = NULL;
    if (zim_msg_kind (&rd, &kind, &fields))
        return ZIM_EMALFORMED;
    const zim_record_t *rec = zim_msg_record (kind);
    if (!rec)
        return ZIM_EKIND;
    *rec_p = rec;
    int rc = zim_codec_unpack_fields (&rd, fields, rec, m);
    if (rc)
        return rc;
    //  A list that ends the message is read by the check, which also
    //  refuses bytes after its last element.
    if (rec->fields[rec->nfields - 1].type != ZIM_FT_LIST && zim_rd_left (&rd))
        return ZIM_EMALFORMED;
    return zim_codec_check (rec, m);
}

void zim_msg_text (zim_wr_t *out, const void *data, size_t size)
{
    _Alignas(max_align_t) char m[ZIM_MSG_MAX_SIZE];
    const zim_record_t *rec = NULL;
    //  Client frames are maps; a backbone message is an array.
    bool frames =
        size && zim_rd_peek (&(zim_rd_t){data, (const uint8_t *)data + size}) == ZIM_MP_MAP;
    int rc = frames ? 0 : zim_msg_unpack (data, size, &rec, m);
    if (!frames && rc == 0) {
        zim_text_record (out, rec, m);
        zim_text_cstr (out);
        return;
    }
    if (rec)
        zim_wr_raw (out, rec->title, strlen (rec->title));
    if (rc) {
        const char *why = zim_strerror (rc);
        zim_wr_raw (out, "!", 1);
        zim_wr_raw (out, why, strlen (why));
        zim_wr_raw (out, " ", 1);
    }
    zim_text_value (out, data, size);
    zim_text_cstr (out);
}

void zim_out_encode (zim_wr_t *wr, const uint64_t *conns, uint32_t nconns, zim_str_t frames)
{
    zim_out_t m = {{NULL, NULL}, nconns, frames};
    zim_codec_pack_range (wr, &zim_rec_out, &m, 0, 1); //  up to the list's header
    for (uint32_t i = 0; i < nconns; i++)
        zim_wr_uint (wr, conns[i]);
    zim_codec_pack_range (wr, &zim_rec_out, &m, 1, 2);
}

//  -------------------------------------------------------------------------
//  Client frames

int zim_cframe_decode (zim_rd_t *rd, zim_cframe_t *f, const char **why)
{
    int rc = zim_cframe_unpack (rd, f, why);
    if (rc == 0)
        return 0;
    return rc == ZIM_EMALFORMED ? ZIM_ERR_MALFORMED
           : rc == ZIM_EKIND    ? ZIM_ERR_UNKNOWN_OP
                                : ZIM_ERR_BAD_FIELD;
}

//  The server frames are written from the flat zim_sframe_t: only the keys
//  of the op are read (those an op may leave out: when set).
void zim_cframe_auth_ok (zim_wr_t *wr, zim_str_t app, zim_str_t uid, zim_str_t device)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_AUTH_OK, .app = app, .uid = uid, .device = device});
}

void zim_cframe_pong (zim_wr_t *wr, zim_str_t t)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_PONG, .t = t, .has_t = t.ptr != NULL});
}

void zim_cframe_ack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_ACK, .cid = cid, .id = id, .seq = seq, .ts = ts});
}

void zim_cframe_gack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts,
                      uint64_t gseq)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_ACK,
                                         .cid = cid,
                                         .id = id,
                                         .seq = seq,
                                         .ts = ts,
                                         .gseq = gseq});
}

void zim_cframe_error (zim_wr_t *wr, int code, const char *text, zim_str_t cid, bool has_rid,
                       uint64_t rid)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_ERROR,
                                         .code = code,
                                         .text = zim_str (text ? text : zim_strerror (code)),
                                         .cid = cid,
                                         .has_rid = has_rid,
                                         .rid = rid});
}

//  True if a stored message's recipient is a group's conversation key.
static bool s_is_group (zim_str_t to)
{
    return to.len > 2 && to.ptr[0] == 'g' && to.ptr[1] == ':';
}

//  The conversation key of a stored message, into buf.
static zim_str_t s_conv (const zim_item_t *item, char *buf, size_t size)
{
    if (s_is_group (item->to))
        return item->to;
    int len = zim_conv_peer (item->from, item->to, buf, size);
    return (zim_str_t){buf, len > 0 ? (size_t)len : 0};
}

//  The group of a stored message, or a NULL view.
static zim_str_t s_group (const zim_item_t *item)
{
    if (!s_is_group (item->to))
        return (zim_str_t){NULL, 0};
    return (zim_str_t){item->to.ptr + 2, item->to.len - 2};
}

zim_str_t zim_group_event (zim_str_t group, zim_str_t from)
{
    //  "$join" and "$leave" are no user's id ('$' is not in a uid).
    if (!group.ptr || from.len < 2 || from.ptr[0] != '$')
        return (zim_str_t){NULL, 0};
    return (zim_str_t){from.ptr + 1, from.len - 1};
}

void zim_cframe_msg (zim_wr_t *wr, const zim_item_t *item)
{
    char conv[2 * ZIM_ID_MAX + 8];
    zim_str_t group = s_group (item);
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_MSG,
                                         .seq = item->seq,
                                         .id = item->id,
                                         .from = item->from,
                                         .to = group.ptr ? group : item->to,
                                         .conv = s_conv (item, conv, sizeof conv),
                                         .body = item->body,
                                         .ts = item->ts,
                                         .group = group,
                                         .event = zim_group_event (group, item->from)});
}

int zim_group_wire (int64_t status)
{
    switch (status) {
    case ZIM_ENOTMEMBER:
        return ZIM_ERR_NOT_MEMBER;
    case ZIM_ENOGROUP:
        return ZIM_ERR_NO_GROUP;
    case ZIM_EGROUPFULL:
        return ZIM_ERR_GROUP_FULL;
    case ZIM_EEXISTS:
        return ZIM_ERR_GROUP_EXISTS;
    case ZIM_ENOTCHANNEL:
        return ZIM_ERR_NOT_CHANNEL;
    case ZIM_EVALUE:
        return ZIM_ERR_BAD_FIELD;
    case ZIM_EFULL:
        return ZIM_ERR_UNAVAILABLE;
    default:
        return ZIM_ERR_INTERNAL;
    }
}

void zim_cframe_page_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){
                .op = ZIM_SOP_PAGE, .rid = rid, .has_rid = true, .more = more, .nmsgs = count});
}

void zim_cframe_page_item (zim_wr_t *wr, const zim_item_t *item)
{
    char conv[2 * ZIM_ID_MAX + 8];
    zim_str_t group = s_group (item);
    zim_sitem_t m = {item->seq,
                     item->id,
                     item->from,
                     group.ptr ? group : item->to,
                     s_conv (item, conv, sizeof conv),
                     item->body,
                     item->ts,
                     group,
                     0,
                     zim_group_event (group, item->from)};
    zim_sitem_pack (wr, &m);
}

void zim_cframe_receipt (zim_wr_t *wr, zim_str_t conv, zim_str_t user, bool has_read, uint64_t read,
                         bool has_delivered, uint64_t delivered)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_RECEIPT,
                                         .conv = conv,
                                         .user = user,
                                         .has_read = has_read,
                                         .read = read,
                                         .has_delivered = has_delivered,
                                         .delivered = delivered});
}

void zim_cframe_convs_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){
                .op = ZIM_SOP_CONVS, .rid = rid, .has_rid = true, .more = more, .nconvs = count});
}

//  -------------------------------------------------------------------------
//  Selftest

//  Decodes the whole of data as rec, as a strict reader would: every field,
//  every element, nothing after. Returns 0 or a ZIM_E* code.
static int s_decode_all (const zim_record_t *rec, const void *data, size_t size, void *m)
{
    if (rec->code >= 0) {
        const zim_record_t *got;
        int rc = zim_msg_unpack (data, size, &got, m);
        return rc ? rc : got == rec ? 0 : ZIM_EKIND;
    }
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    const char *why;
    int rc = rec->shape == ZIM_SHAPE_FRAMES ? zim_codec_unpack_frame (&rd, rec, m, &why)
                                            : zim_codec_unpack (&rd, rec, m);
    if (rc == 0 && zim_rd_left (&rd))
        rc = ZIM_EMALFORMED;
    return rc ? rc : zim_codec_check (rec, m);
}

//  Fails the selftest, showing what was decoded.
static void s_fail (const zim_record_t *rec, const zim_sample_t *s, const char *what,
                    const zim_wr_t *bytes)
{
    zim_wr_t text;
    zim_wr_init (&text);
    zim_text_value (&text, bytes->data, bytes->size);
    fprintf (stderr, "\ncatalogue selftest: %s seed %u, %s at site %d: %s\n  %s\n", rec->name,
             s->seed, zim_sample_fault_name (s->fault), s->site, what, zim_text_cstr (&text));
    abort ();
}

//  Round-trips and breaks record rec with one seed; returns the number of
//  broken samples checked.
static int s_test_record (const zim_record_t *rec, uint32_t seed)
{
    _Alignas(max_align_t) char m[ZIM_MSG_MAX_SIZE], m2[ZIM_MSG_MAX_SIZE];
    zim_wr_t wr, again;
    zim_wr_init (&wr);
    zim_wr_init (&again);
    zim_sample_t s = {seed, ZIM_FAULT_NONE, -1, 0, false, false};
    zim_sample_pack (&wr, rec, &s);
    int sites = s.sites;
    if (s_decode_all (rec, wr.data, wr.size, m))
        s_fail (rec, &s, "a good sample does not decode", &wr);
    //  Encoding the decoded struct gives the same bytes and the same values.
    zim_codec_pack (&again, rec, m);
    if (again.size != wr.size || memcmp (again.data, wr.data, wr.size))
        s_fail (rec, &s, "re-encoding differs", &again);
    if (s_decode_all (rec, again.data, again.size, m2) || !zim_codec_equal (rec, m, m2))
        s_fail (rec, &s, "re-encoded values differ", &again);
    zim_wr_reset (&again);
    zim_text_record (&again, rec, m);
    //  Every truncation fails.
    for (size_t cut = 0; cut < wr.size; cut++)
        if (s_decode_all (rec, wr.data, cut, m) == 0)
            s_fail (rec, &s, "a truncated sample decodes", &wr);
    //  Every fault at every site fails, or is accepted where it may be.
    int checked = 0;
    for (int fault = ZIM_FAULT_TYPE; fault < ZIM_FAULTS; fault++)
        for (int site = 0; site < sites; site++) {
            zim_sample_t b = {seed, fault, site, 0, false, false};
            zim_wr_reset (&wr);
            zim_sample_pack (&wr, rec, &b);
            if (!b.applied)
                continue;
            checked++;
            int rc = s_decode_all (rec, wr.data, wr.size, m);
            if ((rc == 0) != b.expect_ok)
                s_fail (rec, &b, rc ? "refused" : "accepted", &wr);
            if (rc == 0) {
                //  What was accepted encodes to what decodes the same.
                zim_wr_reset (&again);
                zim_codec_pack (&again, rec, m);
                if (s_decode_all (rec, again.data, again.size, m2) || !zim_codec_equal (rec, m, m2))
                    s_fail (rec, &b, "accepted, but its encoding does not decode the same", &again);
            }
            //  A client frame refused for a field must not be taken for
            //  malformed bytes: the next frame of the message still counts.
            if (rec->shape == ZIM_SHAPE_FRAMES && rc && fault != ZIM_FAULT_EXTRA) {
                zim_rd_t rd;
                const char *why;
                zim_rd_init (&rd, wr.data, wr.size);
                rc = zim_codec_unpack_frame (&rd, rec, m, &why);
                if (rc == ZIM_EMALFORMED || zim_rd_left (&rd) || !why)
                    if (rc) //  a fault inside a page's list shows only in the check
                        s_fail (rec, &b, "refused as malformed, or not past the frame", &wr);
            }
        }
    zim_wr_free (&wr);
    zim_wr_free (&again);
    return checked;
}

//  Writes a frame of pairs string keys and string values (key, value, ...)
//  into wr, then decodes it as a client frame; returns the wire code.
static int s_strs_frame (zim_wr_t *wr, zim_cframe_t *f, const char **why, int pairs, ...)
{
    va_list args;
    va_start (args, pairs);
    zim_wr_reset (wr);
    zim_wr_map (wr, (uint32_t)pairs);
    for (int i = 0; i < 2 * pairs; i++)
        zim_wr_cstr (wr, va_arg (args, const char *));
    va_end (args);
    zim_rd_t rd;
    zim_rd_init (&rd, wr->data, wr->size);
    int rc = zim_cframe_decode (&rd, f, why);
    assert (rc == ZIM_ERR_MALFORMED || zim_rd_left (&rd) == 0);
    return rc;
}

//  Checks the rules of the catalogue that the preprocessor cannot.
static void s_test_declarations (void)
{
    for (size_t r = 0; r < zim_catalog_size; r++) {
        const zim_record_t *rec = zim_catalog[r];
        assert (rec->size <= ZIM_MSG_MAX_SIZE);
        bool optional = false;
        for (uint16_t i = 0; i < rec->nfields; i++) {
            const zim_field_t *f = &rec->fields[i];
            if (rec->shape == ZIM_SHAPE_ARRAY) {
                //  Only trailing fields may be optional; args come last.
                assert (!optional || f->presence != ZIM_P_REQ);
                optional |= f->presence != ZIM_P_REQ || f->type == ZIM_FT_ARGS;
            }
            if (f->type == ZIM_FT_GROUP)
                assert (rec->shape == ZIM_SHAPE_ARRAY || rec->shape == ZIM_SHAPE_GROUP);
            if (f->type == ZIM_FT_LIST && f->elem->type == ZIM_FT_NESTED)
                assert (f->elem->rec->size <= 512);
        }
    }
}

void zim_msg_test (bool verbose)
{
    s_test_declarations ();

    //  Every record, several seeds (every op of a frame record).
    int checked = 0, records = 0;
    for (size_t r = 0; r < zim_catalog_size; r++) {
        const zim_record_t *rec = zim_catalog[r];
        if (rec->shape == ZIM_SHAPE_GROUP)
            continue;
        records++;
        uint32_t seeds = rec->shape == ZIM_SHAPE_FRAMES ? 3u * rec->nops : 6;
        for (uint32_t seed = 0; seed < seeds; seed++)
            checked += s_test_record (rec, seed);
    }

    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_cframe_t f;
    const char *why;
    zim_rd_t rd;

    //  A good send, keys in any order, unknown keys ignored.
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "c1");
    zim_wr_cstr (&wr, "future");
    zim_wr_array (&wr, 1);
    zim_wr_nil (&wr);
    zim_wr_cstr (&wr, "body");
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "text");
    zim_wr_cstr (&wr, "hi");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == 0 && zim_rd_left (&rd) == 0);
    assert (f.op == ZIM_OP_SEND && zim_str_eq (f.to, "bob") && zim_str_eq (f.cid, "c1"));
    assert (f.body.len == 9 && (uint8_t)f.body.ptr[0] == 0x81);
    assert (!f.has_from && f.since == -1 && !f.has_rid);

    //  Missing body (the cid is still there to name), wrong type, a bad
    //  cid, unknown op, not a map, truncated.
    assert (s_strs_frame (&wr, &f, &why, 3, "op", "send", "to", "bob", "cid", "c2") ==
            ZIM_ERR_BAD_FIELD);
    assert (zim_str_eq (f.cid, "c2") && strcmp (why, "send needs body") == 0);
    assert (s_strs_frame (&wr, &f, &why, 2, "op", "cursor", "seq", "12") == ZIM_ERR_BAD_FIELD);
    assert (strcmp (why, "seq must be a non-negative integer") == 0);
    assert (s_strs_frame (&wr, &f, &why, 2, "cid", "c 3", "op", "send") == ZIM_ERR_BAD_FIELD);
    assert (zim_str_eq (f.cid, "c 3") && strstr (why, "cid must be"));
    assert (s_strs_frame (&wr, &f, &why, 1, "op", "launch") == ZIM_ERR_UNKNOWN_OP);
    assert (f.op == ZIM_OP_UNKNOWN);
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_MALFORMED);
    assert (strcmp (why, "frame is not a map") == 0);
    zim_wr_reset (&wr);
    zim_cframe_ack (&wr, zim_str ("c1"), 1, 2, 3); //  a server frame: no such op
    for (size_t cut = 1; cut < wr.size; cut++) {
        zim_rd_init (&rd, wr.data, cut);
        assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_MALFORMED);
    }
    //  A spoofed from is reported to the caller, even when not a string.
    assert (s_strs_frame (&wr, &f, &why, 5, "op", "send", "to", "bob", "cid", "c3", "body", "x",
                          "from", "mallory") == 0);
    assert (f.has_from && zim_str_eq (f.from, "mallory"));
    wr.size -= 8;
    zim_wr_uint (&wr, 1);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_BAD_FIELD && f.has_from);
    //  sync: since nil means absent; a negative since is refused.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    zim_wr_cstr (&wr, "since");
    zim_wr_nil (&wr);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == 0 && f.since == -1 && f.has_rid && f.rid == 0);
    wr.size -= 6;
    zim_wr_int (&wr, -2);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_BAD_FIELD);

    //  The typed wrappers: a SEND through the aliases callers use.
    zim_wr_reset (&wr);
    zim_send_t send = {{42, zim_str ("demo"), zim_str ("alice"), zim_str ("phone")},
                       zim_str ("c1"),
                       zim_str ("bob"),
                       {"\xa2hi", 3}};
    zim_send_pack (&wr, &send);
    zim_rd_init (&rd, wr.data, wr.size);
    int kind;
    uint32_t fields;
    zim_send_t send2;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_SEND);
    assert (zim_send_unpack (&rd, fields, &send2) == 0 && zim_rd_left (&rd) == 0);
    assert (send2.who.conn == 42 && zim_str_eq (send2.who.device, "phone"));
    zim_wr_t text;
    zim_wr_init (&text);
    zim_msg_text (&text, wr.data, wr.size);
    assert (strcmp (text.data, "SEND{who={conn=42 app=\"demo\" uid=\"alice\" device=\"phone\"} "
                               "cid=\"c1\" to=\"bob\" body=\"hi\"}") == 0);
    //  A broken message prints what it is and why.
    zim_wr_reset (&text);
    zim_msg_text (&text, wr.data, wr.size - 1);
    assert (strncmp (text.data, "SEND!", 5) == 0 && strstr (text.data, "!malformed"));

    //  OUT's ids from a C array; APPEND items with and without sides.
    zim_wr_reset (&wr);
    uint64_t conns[] = {1, 5, 9};
    zim_out_encode (&wr, conns, 3, (zim_str_t){"\x80", 1});
    zim_rd_init (&rd, wr.data, wr.size);
    zim_out_t out;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_OUT);
    assert (zim_out_unpack (&rd, fields, &out) == 0 && out.nconns == 3 && out.frames.len == 1);
    uint64_t c;
    assert (zim_rd_uint (&out.conns, &c) == 0 && c == 1 && zim_rd_left (&rd) == 0);
    zim_wr_reset (&wr);
    zim_append_begin (&wr, 8, 2);
    zim_append_item_t si = {
        1,           2,          zim_str ("demo"), zim_str ("a"), zim_str ("b"), zim_str ("c"),
        {"\xc0", 1}, ZIM_SIDE_TO};
    zim_append_item_pack (&wr, &si);
    size_t with_sides = wr.size;
    si.sides = ZIM_SIDE_BOTH;
    zim_append_item_pack (&wr, &si);
    assert (wr.size - with_sides == with_sides - 4 - 1); //  one byte less: no sides
    zim_rd_init (&rd, wr.data, wr.size);
    zim_append_t sap;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_append_unpack (&rd, fields, &sap) == 0);
    zim_append_item_t sgot;
    assert (zim_append_item_unpack (&sap.items, &sgot) == 0 && sgot.sides == ZIM_SIDE_TO);
    assert (zim_append_item_unpack (&sap.items, &sgot) == 0 && sgot.sides == ZIM_SIDE_BOTH);
    assert (zim_rd_left (&sap.items) == 0);

    //  ROUTE_R: a list of lists.
    zim_wr_reset (&wr);
    zim_route_r_begin (&wr, 4, 2);
    zim_route_list_begin (&wr, 1);
    zim_route_t route = {zim_str ("gw-1"), 7, zim_str ("phone"), false};
    zim_route_pack (&wr, &route);
    zim_route_list_begin (&wr, 0);
    const zim_record_t *rec;
    _Alignas(max_align_t) char any[ZIM_MSG_MAX_SIZE];
    assert (zim_msg_unpack (wr.data, wr.size, &rec, any) == 0 && rec == &zim_rec_route_r);
    zim_wr_reset (&text);
    zim_msg_text (&text, wr.data, wr.size);
    assert (strstr (text.data, "lists=[[{gateway=\"gw-1\" conn=7 device=\"phone\" bg=false}] []]"));
    zim_wr_free (&text);
    zim_wr_free (&wr);
    if (verbose)
        printf ("(catalogue: %d records, %d broken samples refused or accepted as declared) ",
                records, checked);
}
