/*  zim_catalog_x.h: the X-macro plumbing for msg/zim_catalog.def. Included
    with no guard, once before each expansion of the catalogue: it maps the
    declaration macros of the .def onto six internal ones and resets those
    to expand to nothing, so an expansion (a "pass") redefines only the ones
    it needs:
        ZIM_X_BEGIN (name, shape, title, code, doc)   a record starts;
                    shape is GROUP, RECORD, KIND, MAP or FRAMES
        ZIM_X_F (rec, f, type, lo, hi, maxlen, pres, sub)  a field; type is
                    UINT INT BOOL STR ID RAW BIN GROUP NESTED LIST LISTS
                    UINTS ARGS; lo/hi: range or max length or max count;
                    sub: the inlined, nested or listed record (or none)
        ZIM_X_END (name)                              the record ends
        ZIM_X_OP (rec, ENUM, name, doc), ZIM_X_KEY (rec, op, f, need),
        ZIM_X_OP_END (rec, op)                        ops of a FRAMES record
    With ZIM_X_UNDEF defined it only removes every macro it made.
*/
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#undef ZIM_X_OP
#undef ZIM_X_KEY
#undef ZIM_X_OP_END
#ifdef ZIM_X_UNDEF
#undef ZIM_GROUP
#undef ZIM_RECORD
#undef ZIM_KIND
#undef ZIM_MAP
#undef ZIM_FRAMES
#undef ZIM_END
#undef ZIM_UINT
#undef ZIM_UINT_IN
#undef ZIM_INT
#undef ZIM_INT_IN
#undef ZIM_BOOL
#undef ZIM_STR
#undef ZIM_ID
#undef ZIM_RAW
#undef ZIM_BIN
#undef ZIM_INLINE
#undef ZIM_NESTED
#undef ZIM_LIST
#undef ZIM_LISTS
#undef ZIM_UINTS
#undef ZIM_ARGS
#undef ZIM_OP
#undef ZIM_NEED
#undef ZIM_MAY
#undef ZIM_OP_END
#undef ZIM_CATALOG_X_FRONT
#else
#define ZIM_X_BEGIN(name, shape, title, code, doc)
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub)
#define ZIM_X_END(name)
#define ZIM_X_OP(rec, ENUM, name, doc)
#define ZIM_X_KEY(rec, op, f, need)
#define ZIM_X_OP_END(rec, op)
#ifndef ZIM_CATALOG_X_FRONT
#define ZIM_CATALOG_X_FRONT
//  The declarations of the .def, onto the internal form. The presence
//  tokens ZIM_REQ, ZIM_OPT (d), ZIM_HAS and ZIM_NIL (d) are never macros:
//  passes paste them onto prefixes (S_xxx_##pres).
#define ZIM_GROUP(name, doc) ZIM_X_BEGIN (name, GROUP, name, -1, doc)
#define ZIM_RECORD(name, doc) ZIM_X_BEGIN (name, RECORD, name, -1, doc)
#define ZIM_KIND(name, NAME, code, doc) ZIM_X_BEGIN (name, KIND, NAME, code, doc)
#define ZIM_MAP(name, doc) ZIM_X_BEGIN (name, MAP, name, -1, doc)
#define ZIM_FRAMES(name, doc) ZIM_X_BEGIN (name, FRAMES, name, -1, doc)
#define ZIM_END(name) ZIM_X_END (name)
#define ZIM_UINT(rec, f, pres) ZIM_X_F (rec, f, UINT, 0, UINT64_MAX, 0, pres, none)
#define ZIM_UINT_IN(rec, f, lo, hi, pres) ZIM_X_F (rec, f, UINT, lo, hi, 0, pres, none)
#define ZIM_INT(rec, f, pres) ZIM_X_F (rec, f, INT, INT64_MIN, INT64_MAX, 0, pres, none)
#define ZIM_INT_IN(rec, f, lo, hi, pres) ZIM_X_F (rec, f, INT, lo, hi, 0, pres, none)
#define ZIM_BOOL(rec, f, pres) ZIM_X_F (rec, f, BOOL, 0, 1, 0, pres, none)
#define ZIM_STR(rec, f, maxlen, pres) ZIM_X_F (rec, f, STR, 0, maxlen, 0, pres, none)
#define ZIM_ID(rec, f, pres) ZIM_X_F (rec, f, ID, 1, ZIM_ID_MAX, 0, pres, none)
#define ZIM_RAW(rec, f, pres) ZIM_X_F (rec, f, RAW, 0, 0, 0, pres, none)
#define ZIM_BIN(rec, f, maxlen, pres) ZIM_X_F (rec, f, BIN, 0, maxlen, 0, pres, none)
#define ZIM_INLINE(rec, f, group) ZIM_X_F (rec, f, GROUP, 0, 0, 0, ZIM_REQ, group)
#define ZIM_NESTED(rec, f, r, pres) ZIM_X_F (rec, f, NESTED, 0, 0, 0, pres, r)
#define ZIM_LIST(rec, f, r) ZIM_X_F (rec, f, LIST, 0, 0, 0, ZIM_REQ, r)
#define ZIM_LISTS(rec, f, r) ZIM_X_F (rec, f, LISTS, 0, 0, 0, ZIM_REQ, r)
#define ZIM_UINTS(rec, f) ZIM_X_F (rec, f, UINTS, 0, 0, 0, ZIM_REQ, none)
#define ZIM_ARGS(rec, f, max, maxlen) ZIM_X_F (rec, f, ARGS, 0, max, maxlen, ZIM_REQ, none)
#define ZIM_OP(rec, ENUM, name, doc) ZIM_X_OP (rec, ENUM, name, doc)
#define ZIM_NEED(rec, op, f) ZIM_X_KEY (rec, op, f, true)
#define ZIM_MAY(rec, op, f) ZIM_X_KEY (rec, op, f, false)
#define ZIM_OP_END(rec, op) ZIM_X_OP_END (rec, op)
#endif
#endif
