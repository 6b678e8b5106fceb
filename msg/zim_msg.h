/*  zim_msg.h: the message catalogue. Every backbone message between actors
    and every client frame on the WebSocket, declared once in
    msg/zim_catalog.def and expanded here into C types and typed codecs.

    Backbone messages are one ZeroMQ frame (after any ROUTER routing id)
    holding a msgpack array whose first element is the kind:
        [kind, field, field, ...]
    Client frames are msgpack maps with string keys; one WebSocket binary
    message carries one or more frames back to back (docs/PROTOCOL.md).

    For every record NAME of the catalogue there is a struct zim_NAME_t and
        kinds:    void zim_NAME_pack (zim_wr_t *wr, const zim_NAME_t *m);
                  int zim_NAME_unpack (zim_rd_t *rd, uint32_t fields, zim_NAME_t *m);
                  (after zim_msg_kind has read the header and the kind)
        records:  void zim_NAME_pack (zim_wr_t *wr, const zim_NAME_t *m);
                  int zim_NAME_unpack (zim_rd_t *rd, zim_NAME_t *m);
                  (list elements: read the next one from a list's reader)
        frames:   void zim_NAME_pack (zim_wr_t *wr, const zim_NAME_t *m);
                  int zim_NAME_unpack (zim_rd_t *rd, zim_NAME_t *m, const char **why);
    A kind whose last field is a list packs its header and the list's count
    (n<list>): the caller then packs that many elements. Decoders are strict:
    a missing field, a field of the wrong type, a string over its limit, a
    wrong field count or an unknown kind fails with a ZIM_E* code, never a
    crash. Decoded structs hold borrowed views into the buffer they were
    decoded from: they are valid while that buffer lives.
*/
#ifndef ZIM_MSG_H_INCLUDED
#define ZIM_MSG_H_INCLUDED

#include "msg/zim_codec.h"
#include "msg/zim_id.h"
#include "msg/zim_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

//  ---------------------------------------------------------------------
//  Error codes. Codec and store errors are negative ZIM_E* values inside the
//  server (the codec's are in zim_codec.h); the client sees the positive
//  wire codes below (docs/PROTOCOL.md).

#define ZIM_ESTORE -7 //  the store failed (LMDB error, disk full)
#define ZIM_EFULL -8  //  a bounded queue is full: retry later
//  The groups' refusals inside the server (GPOSTED, GADMIN_R, GREAD_R
//  status); zim_group_wire maps them to the wire codes 4040-4044.
#define ZIM_ENOTMEMBER -20  //  the user is not a member
#define ZIM_ENOGROUP -21    //  no such group
#define ZIM_EGROUPFULL -22  //  over max_group_size / max_channel_size
#define ZIM_EEXISTS -23     //  the group exists already
#define ZIM_ENOTCHANNEL -24 //  not a channel

//  Wire error codes, sent in {"op":"error","code":N,...} frames.
#define ZIM_ERR_MALFORMED 4000      //  frame is not valid msgpack or not a map
#define ZIM_ERR_BAD_FIELD 4001      //  required field missing or of wrong type
#define ZIM_ERR_TOO_LARGE 4002      //  frame over the gateway's max_frame
#define ZIM_ERR_UNKNOWN_OP 4003     //  op is not one the server knows
#define ZIM_ERR_BAD_RECIPIENT 4004  //  "to" or "peer" is not a valid user id
#define ZIM_ERR_CID_CONFLICT 4009   //  cid already names a different message
#define ZIM_ERR_AUTH_REQUIRED 4010  //  an op other than auth/ping before auth
#define ZIM_ERR_BAD_TOKEN 4011      //  token malformed or signature wrong
#define ZIM_ERR_TOKEN_EXPIRED 4012  //  token's exp is in the past
#define ZIM_ERR_ALREADY_AUTHED 4013 //  a second auth on one connection
#define ZIM_ERR_AUTH_TIMEOUT 4014   //  no successful auth within auth_timeout
#define ZIM_ERR_AUTH_FAILURES 4015  //  too many failed auth attempts
#define ZIM_ERR_TOKEN_NOT_YET 4016  //  token's nbf is in the future
#define ZIM_ERR_TOKEN_CLAIMS 4017   //  token's aud or iss is not the app's
#define ZIM_ERR_TOKEN_ALG 4018      //  token's alg is not one the app allows
#define ZIM_ERR_TOO_MANY_READS 4028 //  too many sync/history requests in flight
#define ZIM_ERR_FORBIDDEN 4030      //  frame speaks for another user (from)
#define ZIM_ERR_TOO_MANY_CONNS 4031 //  the user has max_conns_per_user connections
#define ZIM_ERR_RATE_LIMITED 4029   //  over the per-connection send rate
//  Rooms and signals (docs/PROTOCOL.md "Rooms").
#define ZIM_ERR_NOT_IN_ROOM 4050      //  publish/leave of a room the connection is not in
#define ZIM_ERR_TOO_MANY_ROOMS 4051   //  the connection is in max_rooms_per_conn rooms
#define ZIM_ERR_BAD_ROOM 4052         //  room is not 1..128 bytes of A-Z a-z 0-9 _ . : @ / -
#define ZIM_ERR_PUBLISH_DENIED 4053   //  the app's client_publish does not allow it
#define ZIM_ERR_ROOM_DENIED 4054      //  the token's rooms claim does not name the room
#define ZIM_ERR_SIGNAL_RATE 4055      //  over the per-connection signal rate
#define ZIM_ERR_DISCONNECTED 4056     //  the app's backend cut the connection (POST /v1/disconnect)
#define ZIM_ERR_NOT_MEMBER 4040     //  the user is not a member of the group
#define ZIM_ERR_NO_GROUP 4041       //  no such group
#define ZIM_ERR_GROUP_FULL 4042     //  the group would pass its kind's member limit
#define ZIM_ERR_GROUP_EXISTS 4043   //  a group of that id exists already
#define ZIM_ERR_NOT_CHANNEL 4044    //  csync of a group that is not a channel
#define ZIM_ERR_IDLE_TIMEOUT 4080   //  nothing received within idle_timeout
#define ZIM_ERR_SLOW_CONSUMER 4090  //  send queue to the client overflowed
#define ZIM_ERR_INTERNAL 5000       //  server fault; retry may succeed
#define ZIM_ERR_UNAVAILABLE 5030    //  backpressure or node down: retry
#define ZIM_ERR_TIMEOUT 5040        //  store did not answer in time: retry

//  Returns a short text for a ZIM_E* code or a wire code.
const char *zim_strerror (int code);

//  Values of catalogue fields.
#define ZIM_SIDE_FROM 1           //  APPEND item sides: only the sender's inbox
#define ZIM_SIDE_TO 2             //  only the recipient's
#define ZIM_SIDE_BOTH 3           //  both (the default, not written)
#define ZIM_APPEND_STORED 0       //  APPENDED status: stored now
#define ZIM_APPEND_DUPLICATE 1    //  seen before: id, seqs and ts are the original's
#define ZIM_APPEND_CONFLICT 2     //  the cid names a message with another recipient or body
#define ZIM_READ_SYNC 0           //  READ mode: the inbox after seq from, oldest first
#define ZIM_READ_HISTORY 1        //  the peer conversation below id from, newest first
#define ZIM_MARK_READ 1           //  RECEIPT/MARK what: the read cursor
#define ZIM_MARK_DELIVERED 2      //  the delivered cursor
#define ZIM_MARK_MUTE 3           //  push muted until value (ms; 0 unmutes)
#define ZIM_MARK_PEER_READ 4      //  MARK: reader read uid's messages up to message id value
#define ZIM_MARK_PEER_DELIVERED 5 //  MARK: reader got uid's messages up to message id value
#define ZIM_PUSHQ_STAT 1          //  PUSH_Q op: depth and oldest record
#define ZIM_PUSHQ_TAKE 2          //  records after a qid
#define ZIM_PUSHQ_ACK 3           //  remove records, with an outcome
#define ZIM_PUSHQ_DELIVERED 1     //  PUSH_Q outcome: posted to the webhook
#define ZIM_PUSHQ_DROPPED 2       //  given up after the bridge's attempts
#define ZIM_PUSHQ_MUTED 3         //  not posted: muted and not mentioned
#define ZIM_API_PUSH_USERS 1      //  API_Q op: a push frame to every connection of users
#define ZIM_API_PUSH_ROOMS 2      //  a room frame to every connection in rooms, once each
#define ZIM_API_PUSH_CONNS 3      //  a push frame to the connections of (user, device)s
#define ZIM_API_ONLINE 4          //  the devices online of users
#define ZIM_API_ROOM 5            //  one room's connections
#define ZIM_API_TOP 6             //  the n rooms with most connections
#define ZIM_API_STATS 7           //  totals of the app
#define ZIM_API_PUSH_ALL 8        //  a push frame to every connection of the app
#define ZIM_API_ROOM_JOIN 9       //  every connection of users joins room
#define ZIM_API_ROOM_LEAVE 10     //  every connection of users leaves room
#define ZIM_API_DISCONNECT 11     //  close the connections of (user, device); refuse its tokens
#define ZIM_CTL_JOIN 1            //  CONN_CTL what: join room
#define ZIM_CTL_LEAVE 2           //  leave room
#define ZIM_CTL_CLOSE 3           //  close (4056), and refuse the user's tokens issued until now
#define ZIM_GROUP_GROUP 1         //  group kind: write fan-out into every member's inbox
#define ZIM_GROUP_CHANNEL 2       //  read fan-out: stored once in the group's log
#define ZIM_GADMIN_CREATE 1       //  GADMIN op: a new group with its first members
#define ZIM_GADMIN_MEMBERS 2      //  add and remove members
#define ZIM_GADMIN_GET 3          //  the group and its members
#define ZIM_GADMIN_DELETE 4       //  the group goes (its stored messages stay)
#define ZIM_GADMIN_UPGRADE 5      //  a group becomes a channel, never back
#define ZIM_GADMIN_READERS 6      //  how many members read a message (groups <= 200)
#define ZIM_GREAD_LOG 0           //  GREAD mode: a channel's log after a gseq
#define ZIM_GREAD_LIST 1          //  the reader's groups
#define ZIM_GREAD_JOBS 2          //  unfinished fan-out jobs (gjob records)

//  ---------------------------------------------------------------------
//  The catalogue, expanded. Kind codes: ZIM_MSG_<NAME>.

#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc) ZIM_X_KINDENUM_##shape (title, code)
#define ZIM_X_KINDENUM_KIND(title, code) ZIM_MSG_##title = code,
#define ZIM_X_KINDENUM_GROUP(title, code)
#define ZIM_X_KINDENUM_RECORD(title, code)
#define ZIM_X_KINDENUM_MAP(title, code)
#define ZIM_X_KINDENUM_FRAMES(title, code)
typedef enum {
#include "msg/zim_catalog.def"
} zim_msg_kind_t;

//  Ops of the client and server frames: ZIM_OP_* from the client,
//  ZIM_SOP_* from the server.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_OP
#define ZIM_X_OP(rec, ENUM, name, doc) ENUM,
typedef enum {
    ZIM_OP_UNKNOWN = 0,
#include "msg/zim_catalog.def"
} zim_op_t;

//  The structs. Each field is a member of the type its catalogue type
//  says; a list is a reader NAME plus its count nNAME; ZIM_HAS fields get a
//  bool has_NAME.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#undef ZIM_X_F
#undef ZIM_X_END
#define ZIM_X_BEGIN(name, shape, title, code, doc)                                                 \
    typedef struct {                                                                               \
        ZIM_X_HEAD_##shape
#define ZIM_X_HEAD_GROUP
#define ZIM_X_HEAD_RECORD
#define ZIM_X_HEAD_KIND
#define ZIM_X_HEAD_MAP
#define ZIM_X_HEAD_FRAMES                                                                          \
    zim_op_t op;                                                                                   \
    zim_str_t op_name;
#define ZIM_X_F(rec, f, type, lo, hi, maxlen, pres, sub)                                           \
    ZIM_X_MEMBER_##type (f, sub, hi) ZIM_X_HASM_##pres (f)
#define ZIM_X_MEMBER_UINT(f, sub, hi) uint64_t f;
#define ZIM_X_MEMBER_INT(f, sub, hi) int64_t f;
#define ZIM_X_MEMBER_BOOL(f, sub, hi) bool f;
#define ZIM_X_MEMBER_STR(f, sub, hi) zim_str_t f;
#define ZIM_X_MEMBER_ID(f, sub, hi) zim_str_t f;
#define ZIM_X_MEMBER_RAW(f, sub, hi) zim_str_t f;
#define ZIM_X_MEMBER_BIN(f, sub, hi) zim_str_t f;
#define ZIM_X_MEMBER_GROUP(f, sub, hi) zim_##sub##_t f;
#define ZIM_X_MEMBER_NESTED(f, sub, hi) zim_##sub##_t f;
#define ZIM_X_MEMBER_LIST(f, sub, hi)                                                              \
    zim_rd_t f;                                                                                    \
    uint32_t n##f;
#define ZIM_X_MEMBER_LISTS ZIM_X_MEMBER_LIST
#define ZIM_X_MEMBER_UINTS ZIM_X_MEMBER_LIST
#define ZIM_X_MEMBER_ARGS(f, sub, hi)                                                              \
    zim_str_t f[hi];                                                                               \
    uint32_t n##f;
#define ZIM_X_HASM_ZIM_REQ(f)
#define ZIM_X_HASM_ZIM_OPT(def) ZIM_X_NOTHING
#define ZIM_X_HASM_ZIM_NIL(def) ZIM_X_NOTHING
#define ZIM_X_HASM_ZIM_HAS(f) bool has_##f;
#define ZIM_X_NOTHING(f)
#define ZIM_X_END(name)                                                                            \
    }                                                                                              \
    zim_##name##_t;
#include "msg/zim_catalog.def"

//  The field tables, for the engine, tests and tools: zim_rec_<name>.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc) extern const zim_record_t zim_rec_##name;
#include "msg/zim_catalog.def"

//  The typed wrappers.
#include "msg/zim_catalog_x.h"
#undef ZIM_X_BEGIN
#define ZIM_X_BEGIN(name, shape, title, code, doc) ZIM_X_TYPED_##shape (name)
#define ZIM_X_TYPED_GROUP(name)
#define ZIM_X_TYPED_PACK(name)                                                                     \
    static inline void zim_##name##_pack (zim_wr_t *wr, const zim_##name##_t *m)                   \
    {                                                                                              \
        zim_codec_pack (wr, &zim_rec_##name, m);                                                   \
    }
#define ZIM_X_TYPED_KIND(name)                                                                     \
    ZIM_X_TYPED_PACK (name)                                                                        \
    static inline int zim_##name##_unpack (zim_rd_t *rd, uint32_t fields, zim_##name##_t *m)       \
    {                                                                                              \
        return zim_codec_unpack_fields (rd, fields, &zim_rec_##name, m);                           \
    }
#define ZIM_X_TYPED_RECORD(name)                                                                   \
    ZIM_X_TYPED_PACK (name)                                                                        \
    static inline int zim_##name##_unpack (zim_rd_t *rd, zim_##name##_t *m)                        \
    {                                                                                              \
        return zim_codec_unpack (rd, &zim_rec_##name, m);                                          \
    }
#define ZIM_X_TYPED_MAP ZIM_X_TYPED_RECORD
#define ZIM_X_TYPED_FRAMES(name)                                                                   \
    ZIM_X_TYPED_PACK (name)                                                                        \
    static inline int zim_##name##_unpack (zim_rd_t *rd, zim_##name##_t *m, const char **why)      \
    {                                                                                              \
        return zim_codec_unpack_frame (rd, &zim_rec_##name, m, why);                               \
    }
#include "msg/zim_catalog.def"

#define ZIM_X_UNDEF
#include "msg/zim_catalog_x.h"
#undef ZIM_X_UNDEF

//  Every record of the catalogue, in declaration order.
extern const zim_record_t *const zim_catalog[];
extern const size_t zim_catalog_size;

//  ---------------------------------------------------------------------
//  Backbone messages

//  Reads the array header and the kind of a backbone message. On success
//  *kind is set and rd points at the first field; *fields is the number of
//  fields after the kind. Returns 0 or ZIM_EMALFORMED.
int zim_msg_kind (zim_rd_t *rd, int *kind, uint32_t *fields);

//  The record of kind code kind, or NULL.
const zim_record_t *zim_msg_record (int kind);

//  The largest struct of any kind or record, for callers that decode a
//  message of any kind into one buffer.
#define ZIM_MSG_MAX_SIZE 1024

//  Decodes a whole backbone message of any kind into m (ZIM_MSG_MAX_SIZE
//  bytes, aligned): the kind, every field, every element of every list,
//  and nothing after. Returns 0 or a ZIM_E* code; *rec gets the kind's
//  record when the kind is known (else NULL).
int zim_msg_unpack (const void *data, size_t size, const zim_record_t **rec, void *m);

//  Appends a readable rendering of a backbone message or of client frames
//  to out (NUL-terminated), for logs and tests, e.g.
//  SEND{who={conn=4 app="demo" ...} cid="c1" to="bob" body="hi"}. A
//  message that does not decode is shown as msgpack with the error.
void zim_msg_text (zim_wr_t *out, const void *data, size_t size);

//  Typed encoders that take their list elements or fields as arguments.

//  OUT: write frames (one or more encoded client frames) to each of
//  conns[0..nconns) on the receiving gateway; a connection that has gone is
//  skipped silently. Read the ids from out.conns with zim_rd_uint.
void zim_out_encode (zim_wr_t *wr, const uint64_t *conns, uint32_t nconns, zim_str_t frames);

//  The kinds that end with a list, from their fields: the header, then the
//  caller packs that many elements with the element's _pack (for ROUTE_R,
//  per key zim_route_list_begin and its zim_route_pack).
#define zim_presence_begin(wr, gateway, reset, nitems)                                             \
    zim_presence_pack ((wr), &(zim_presence_t){(gateway), (reset), {NULL, NULL}, (nitems)})
#define zim_route_q_begin(wr, req, nkeys)                                                          \
    zim_route_q_pack ((wr), &(zim_route_q_t){(req), {NULL, NULL}, (nkeys)})
#define zim_route_r_begin(wr, req, nlists)                                                         \
    zim_route_r_pack ((wr), &(zim_route_r_t){(req), {NULL, NULL}, (nlists)})
#define zim_route_list_begin(wr, nroutes) zim_wr_array ((wr), (nroutes))
#define zim_append_begin(wr, req, nitems)                                                          \
    zim_append_pack ((wr), &(zim_append_t){(req), {NULL, NULL}, (nitems)})
#define zim_appended_begin(wr, req, nitems)                                                        \
    zim_appended_pack ((wr), &(zim_appended_t){(req), {NULL, NULL}, (nitems)})
#define zim_page_begin(wr, req, status, more, nitems)                                              \
    zim_page_pack ((wr), &(zim_page_t){(req), (status), (more), {NULL, NULL}, (nitems)})
#define zim_map_begin(wr, router, instance, version, nmembers)                                     \
    zim_map_pack ((wr), &(zim_map_t){(router), (instance), (version), {NULL, NULL}, (nmembers)})

//  A ROUTE_Q key from its two fields, and back.
static inline void zim_route_key (zim_wr_t *wr, zim_str_t app, zim_str_t uid)
{
    zim_route_key_t m = {app, uid};
    zim_route_key_pack (wr, &m);
}
static inline int zim_route_key_next (zim_rd_t *rd, zim_str_t *app, zim_str_t *uid)
{
    zim_route_key_t m;
    int rc = zim_route_key_unpack (rd, &m);
    *app = m.app;
    *uid = m.uid;
    return rc;
}

//  ---------------------------------------------------------------------
//  Client frames (WebSocket)

//  Decodes one client frame from rd. Returns 0, or a wire code
//  (ZIM_ERR_MALFORMED, ZIM_ERR_BAD_FIELD, ZIM_ERR_UNKNOWN_OP) with *why set
//  to a static text naming the problem. On ZIM_ERR_BAD_FIELD and
//  ZIM_ERR_UNKNOWN_OP the frame itself was well-formed and rd has moved past
//  it, so the next frame in the same message can still be read; on
//  ZIM_ERR_MALFORMED the rest of the message must be dropped. f->cid is set
//  whenever the frame carried a string cid, so the error can name it.
int zim_cframe_decode (zim_rd_t *rd, zim_cframe_t *f, const char **why);

//  Server frame encoders; each appends one map to wr.
//  {"op":"auth_ok","app":A,"uid":U,"device":D}
void zim_cframe_auth_ok (zim_wr_t *wr, zim_str_t app, zim_str_t uid, zim_str_t device);
//  {"op":"pong"[,"t":T]}; t.ptr NULL means no t.
void zim_cframe_pong (zim_wr_t *wr, zim_str_t t);
//  {"op":"ack","cid":C,"id":ID,"seq":S,"ts":MS}
void zim_cframe_ack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts);
//  {"op":"ack","cid":C,"id":ID,"seq":S,"ts":MS,"gseq":G}: a group send's
void zim_cframe_gack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts,
                      uint64_t gseq);
//  The wire code (4040-4044, 4001, 5000) of a ZIM_E* status of the groups.
int zim_group_wire (int64_t status);
//  {"op":"error","code":N,"text":T[,"cid":C][,"rid":R]}; cid.ptr NULL or
//  has_rid false omit those keys; text NULL is zim_strerror (code).
void zim_cframe_error (zim_wr_t *wr, int code, const char *text, zim_str_t cid, bool has_rid,
                       uint64_t rid);
//  {"op":"msg","seq":S,"id":ID,"from":F,"to":T,"conv":C,"body":B,"ts":MS}
//  for a stored message (seq 0: no seq key). A group message (item->to is
//  "g:GROUP") has to and group GROUP and conv "g:GROUP"; its seq is the
//  reader's inbox seq (a channel's messages come as csync pages instead).
void zim_cframe_msg (zim_wr_t *wr, const zim_item_t *item);
//  The event of a group message from "$join" or "$leave" ("join",
//  "leave"), or a NULL view for a message of a member (or not of a group).
zim_str_t zim_group_event (zim_str_t group, zim_str_t from);
//  {"op":"page","rid":R,"more":M,"msgs":[...]}; write count items after it
//  with zim_cframe_page_item.
void zim_cframe_page_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count);
//  One page entry: the msg map without "op" (and without "seq" if 0).
void zim_cframe_page_item (zim_wr_t *wr, const zim_item_t *item);

//  {"op":"receipt","conv":C,"user":U[,"read":R][,"delivered":D]}: user's
//  cursors of conv, seqs of the receiving user's inbox (has_*: present).
void zim_cframe_receipt (zim_wr_t *wr, zim_str_t conv, zim_str_t user, bool has_read, uint64_t read,
                         bool has_delivered, uint64_t delivered);
//  {"op":"convs","rid":R,"more":M,"convs":[...]}; write count sconv maps
//  after it (zim_sconv_pack).
void zim_cframe_convs_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count);

void zim_msg_test (bool verbose);

//  ---------------------------------------------------------------------
#ifdef __cplusplus
}
#endif
#endif
