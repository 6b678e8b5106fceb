/*  zim_codec.h: the table-driven codec engine behind the message catalogue.

    A record (a backbone message, a list element, a client frame) is
    described by a zim_record_t: its shape (array, map, or map with an "op"
    key) and a table of zim_field_t, one per field, giving the field's
    msgpack type, its place in the C struct, its limits and whether it may
    be absent. msg/zim_catalog.def declares every record once and
    msg/zim_msg.[ch] expand it into these tables; the engine encodes,
    strictly decodes, checks, compares and prints any of them, so no message
    kind has a hand-written codec.

    Decoding is zero-copy: strings, bins and raw values come back as views
    into the buffer, and a list comes back as a reader over its elements
    plus their count, to be read one by one with the element's unpack (a
    list that ends a message is not walked until then, so the hot path reads
    every byte once). Every read is checked against the end of the buffer.
*/
#ifndef ZIM_CODEC_H_INCLUDED
#define ZIM_CODEC_H_INCLUDED

#include "msg/zim_mp.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Codec error codes (negative, returned by the decoders).
#define ZIM_EMALFORMED -1 //  not msgpack, truncated, wrong field count or trailing bytes
#define ZIM_ETYPE -2      //  a field has the wrong type
#define ZIM_EMISSING -3   //  a required field is absent
#define ZIM_ETOOLONG -4   //  a string or list is over its limit
#define ZIM_EKIND -5      //  unknown message kind or op
#define ZIM_EVALUE -6     //  a field's value is out of range (bad id, ...)

//  No length limit on a string or bin (beyond the message's own size).
#define ZIM_NOLIMIT UINT64_MAX
//  Identifiers (ZIM_ID fields): 1..ZIM_ID_MAX bytes of 0x21..0x7e.
#define ZIM_ID_MAX 64

//  Field types. Those before ZIM_FT_GROUP take one field on the wire.
typedef enum {
    ZIM_FT_UINT = 1, //  uint64_t, within [min, max]
    ZIM_FT_INT,      //  int64_t, within [(int64_t) min, (int64_t) max]
    ZIM_FT_BOOL,     //  bool
    ZIM_FT_STR,      //  zim_str_t: a str of at most max bytes
    ZIM_FT_ID,       //  zim_str_t: an identifier (see ZIM_ID_MAX)
    ZIM_FT_RAW,      //  zim_str_t: the bytes of any one value
    ZIM_FT_BIN,      //  zim_str_t: a bin of at most max bytes
    ZIM_FT_NESTED,   //  one value holding the record rec
    ZIM_FT_LIST,     //  zim_rd_t + uint32_t count (at aux): elements as elem
    ZIM_FT_GROUP,    //  the fields of rec, inline (arrays only)
    ZIM_FT_ARGS      //  zim_str_t[max] + uint32_t count (at aux): the last fields
} zim_ftype_t;

//  How a field may be absent.
typedef enum {
    ZIM_P_REQ = 0, //  required
    ZIM_P_OPT,     //  optional: absent reads as def, written only when != def
    ZIM_P_HAS,     //  optional, with a bool at aux saying whether it is there
    ZIM_P_NIL      //  like ZIM_P_OPT, and nil reads as absent too
} zim_fieldpres_t;

//  Record shapes.
typedef enum {
    ZIM_SHAPE_ARRAY = 1, //  [field, ...] (a kind: [code, field, ...])
    ZIM_SHAPE_MAP,       //  {"field": value, ...}
    ZIM_SHAPE_FRAMES,    //  a map whose "op" key selects one of ops
    ZIM_SHAPE_GROUP      //  only ever inlined in another record
} zim_shape_t;

typedef struct zim_record_t zim_record_t;

//  A decoded list that is itself a list element (ROUTE_R's lists of routes):
//  a reader at its first element and the element count.
typedef struct {
    zim_rd_t rd; //  read n elements from here
    uint32_t n;  //  how many
} zim_list_t;

//  One field of a record.
typedef struct zim_field_t {
    const char *name;               //  C member name and map key
    uint8_t name_len;               //  strlen (name)
    uint8_t type;                   //  zim_ftype_t
    uint8_t presence;               //  zim_fieldpres_t
    uint16_t offset;                //  of the member in the struct
    uint16_t aux;                   //  LIST/ARGS: the count; ZIM_P_HAS: the bool
    uint64_t min, max;              //  UINT/INT range; STR/BIN max length; ARGS max count
    uint64_t def;                   //  default when absent (INT: int64_t bits)
    uint64_t maxlen;                //  ARGS: max length of each string
    const zim_record_t *rec;        //  GROUP/NESTED: the record
    const struct zim_field_t *elem; //  LIST: one element (type, limits, rec)
    const char *why_type;           //  "<name> must be ...": wrong type
    const char *why_value;          //  "<name> is ...": out of range or too long
} zim_field_t;

//  One op of a ZIM_SHAPE_FRAMES record: which keys it writes, in order.
typedef struct {
    uint16_t field;  //  index into the record's fields
    bool need;       //  required in this op
    const char *why; //  "<op> needs <field>"
} zim_opkey_t;

typedef struct {
    int op;                  //  enum value (zim_op_t)
    const char *name;        //  the "op" string
    uint8_t name_len;        //  strlen (name)
    const zim_opkey_t *keys; //  in writing order
    uint16_t nkeys;
    const char *doc; //  what it is for
} zim_opdesc_t;

//  A record: the engine's whole description of one struct and its wire form.
struct zim_record_t {
    const char *name;  //  "send", "append_item"
    const char *title; //  kinds: "SEND"; others: the name
    const char *doc;   //  one line
    int code;          //  kinds: the kind code; others: -1
    uint8_t shape;     //  zim_shape_t
    uint16_t nfields;  //  entries in fields
    uint16_t min_wire; //  arrays: fewest fields on the wire (groups flattened)
    uint16_t max_wire; //  arrays: most fields on the wire
    uint32_t size;     //  sizeof the struct
    const zim_field_t *fields;
    const zim_opdesc_t *ops; //  FRAMES: its ops
    uint16_t nops;
    uint16_t op_offset;      //  FRAMES: where the op enum (int) lives
    uint16_t op_name_offset; //  FRAMES: where the op string (zim_str_t) lives
    const void *defaults;    //  a struct holding every field's default
};

//  Encodes m as rec: a kind as [code, fields...], a record as [fields...]
//  or a map. A LIST field writes its header (its count) and then the bytes
//  of its reader, which hold already-encoded elements or nothing: a list
//  that ends the record may so be left for the caller to append to.
void zim_codec_pack (zim_wr_t *wr, const zim_record_t *rec, const void *m);

//  Encodes fields [from, to) of an array record or kind (a kind's header is
//  written when from is 0). For a kind whose list is not its last field,
//  the caller writes the elements between two calls.
void zim_codec_pack_range (zim_wr_t *wr, const zim_record_t *rec, const void *m, uint32_t from,
                           uint32_t to);

//  Decodes the fields of a kind whose array header and code were read by
//  zim_msg_kind (fields: the count after the code) into m. A list that
//  ends the message is left unread: m's reader starts at its first element
//  and ends where the message ends. Returns 0 or a ZIM_E* code.
int zim_codec_unpack_fields (zim_rd_t *rd, uint32_t fields, const zim_record_t *rec, void *m);

//  Decodes one value holding rec (a list element, a nested record, a map
//  record) into m. Returns 0 or a ZIM_E* code.
int zim_codec_unpack (zim_rd_t *rd, const zim_record_t *rec, void *m);

//  Decodes one value of the field type f into the member at m (a list
//  element that is not a record: a uint, a string, an inner list).
int zim_codec_unpack_value (zim_rd_t *rd, const zim_field_t *f, void *m);

//  Decodes one ZIM_SHAPE_FRAMES map into the flat struct m, the way a
//  server reads a client: unknown keys skipped, every known key
//  type-checked, the op's required keys enforced. Returns 0;
//  ZIM_EMALFORMED (rd may be anywhere: drop the rest of the message); or,
//  with rd past the frame, ZIM_EKIND (unknown op) or another ZIM_E* code
//  (a bad or missing field). *why gets a static text naming the problem
//  (NULL on success). Fields decode even when the frame is refused, so a
//  refusal can name its cid.
int zim_codec_unpack_frame (zim_rd_t *rd, const zim_record_t *rec, void *m, const char **why);

//  Encodes the op in m (its op member) of a ZIM_SHAPE_FRAMES record.
void zim_codec_pack_frame (zim_wr_t *wr, const zim_record_t *rec, const void *m);

//  Reads every list of m (decoded as rec) to its end, decoding each element
//  and every list inside it, and checks that nothing follows the last
//  element of a list that ended the message. Returns 0 or a ZIM_E* code.
int zim_codec_check (const zim_record_t *rec, const void *m);

//  True if a and b (both decoded or built as rec) hold the same values;
//  lists compare element by element; frames compare their op and the keys
//  of that op.
bool zim_codec_equal (const zim_record_t *rec, const void *a, const void *b);

//  The op descriptor of op name in a FRAMES record, or NULL.
const zim_opdesc_t *zim_codec_op (const zim_record_t *rec, zim_str_t name);

//  The index of the field called name in rec, or -1.
int zim_codec_field (const zim_record_t *rec, const char *name);

void zim_codec_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
