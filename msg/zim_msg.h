/*  zim_msg.h: the message catalogue. Every backbone message between actors
    and every client frame on the WebSocket, with its msgpack codec.

    Backbone messages are one ZeroMQ frame (after any ROUTER routing id)
    holding a msgpack array whose first element is the kind:
        [kind, field, field, ...]
    Client frames are msgpack maps with string keys; one WebSocket binary
    message carries one or more frames back to back (docs/PROTOCOL.md).

    Decoders are strict: a missing field, a field of the wrong type, a string
    over its limit, trailing bytes or an unknown kind fails with a ZIM_E*
    code, never a crash. Decoded structs hold borrowed views into the buffer
    they were decoded from: they are valid while that buffer lives.
*/
#ifndef ZIM_MSG_H_INCLUDED
#define ZIM_MSG_H_INCLUDED

#include "msg/zim_mp.h"

#ifdef __cplusplus
extern "C" {
#endif

//  ---------------------------------------------------------------------
//  Error codes. Codec and store errors are negative ZIM_E* values inside the
//  server; the client sees the positive wire codes below (docs/PROTOCOL.md).

#define ZIM_EMALFORMED -1 //  not msgpack, truncated, or trailing bytes
#define ZIM_ETYPE -2      //  a field has the wrong type
#define ZIM_EMISSING -3   //  a required field is absent
#define ZIM_ETOOLONG -4   //  a string or list is over its limit
#define ZIM_EKIND -5      //  unknown message kind or op
#define ZIM_EVALUE -6     //  a field's value is out of range (bad uid, ...)
#define ZIM_ESTORE -7     //  the store failed (LMDB error, disk full)
#define ZIM_EFULL -8      //  a bounded queue is full: retry later

//  Wire error codes, sent in {"op":"error","code":N,...} frames.
#define ZIM_ERR_MALFORMED 4000     //  frame is not valid msgpack or not a map
#define ZIM_ERR_BAD_FIELD 4001     //  required field missing or of wrong type
#define ZIM_ERR_TOO_LARGE 4002     //  frame over the gateway's max_frame
#define ZIM_ERR_UNKNOWN_OP 4003    //  op is not one the server knows
#define ZIM_ERR_BAD_RECIPIENT 4004 //  "to" or "peer" is not a valid user id
#define ZIM_ERR_CID_CONFLICT 4009  //  cid already names a different message
#define ZIM_ERR_AUTH_REQUIRED 4010 //  an op other than auth/ping before auth
#define ZIM_ERR_BAD_TOKEN 4011     //  token malformed or signature wrong
#define ZIM_ERR_TOKEN_EXPIRED 4012 //  token's exp is in the past
#define ZIM_ERR_ALREADY_AUTHED 4013 //  a second auth on one connection
#define ZIM_ERR_AUTH_TIMEOUT 4014  //  no successful auth within auth_timeout
#define ZIM_ERR_AUTH_FAILURES 4015 //  too many failed auth attempts
#define ZIM_ERR_TOKEN_NOT_YET 4016 //  token's nbf is in the future
#define ZIM_ERR_TOKEN_CLAIMS 4017  //  token's aud or iss is not the app's
#define ZIM_ERR_TOKEN_ALG 4018     //  token's alg is not one the app allows
#define ZIM_ERR_TOO_MANY_READS 4028 //  too many sync/history requests in flight
#define ZIM_ERR_FORBIDDEN 4030     //  frame speaks for another user (from)
#define ZIM_ERR_TOO_MANY_CONNS 4031 //  the user has max_conns_per_user connections
#define ZIM_ERR_RATE_LIMITED 4029  //  over the per-connection send rate
#define ZIM_ERR_IDLE_TIMEOUT 4080  //  nothing received within idle_timeout
#define ZIM_ERR_SLOW_CONSUMER 4090 //  send queue to the client overflowed
#define ZIM_ERR_INTERNAL 5000      //  server fault; retry may succeed
#define ZIM_ERR_UNAVAILABLE 5030   //  backpressure or node down: retry
#define ZIM_ERR_TIMEOUT 5040       //  store did not answer in time: retry

//  Returns a short text for a ZIM_E* code or a wire code.
const char *zim_strerror (int code);

//  Limits on identifiers. User ids and app names are 1..64 bytes of
//  [A-Za-z0-9_.@-]; client ids and device names 1..64 printable bytes.
#define ZIM_ID_MAX 64

//  True if s is a valid user id or app name.
bool zim_uid_valid (zim_str_t s);
//  True if s is a valid client message id or device name.
bool zim_cid_valid (zim_str_t s);

//  Writes the peer conversation key for users a and b ("p:" + the smaller
//  uid + ":" + the larger) into buf; returns its length or -1 if too small.
int zim_conv_peer (zim_str_t a, zim_str_t b, char *buf, size_t size);

//  ---------------------------------------------------------------------
//  Client frames (WebSocket). Ops from the client:

typedef enum {
    ZIM_OP_UNKNOWN = 0,
    ZIM_OP_AUTH,    //  {"op":"auth","token":T[,"device":D]}
    ZIM_OP_PING,    //  {"op":"ping"[,"t":any]}
    ZIM_OP_SEND,    //  {"op":"send","to":U,"cid":C,"body":any}
    ZIM_OP_SYNC,    //  {"op":"sync"[,"since":N][,"limit":L][,"rid":R]}
    ZIM_OP_CURSOR,  //  {"op":"cursor","seq":N}
    ZIM_OP_HISTORY, //  {"op":"history","peer":U[,"before":ID][,"limit":L][,"rid":R]}
} zim_op_t;

//  One decoded client frame. Absent optional fields are zero/empty and
//  their has_ flag is false.
typedef struct {
    zim_op_t op;
    zim_str_t op_name; //  the op string as sent (for error messages)
    zim_str_t token;   //  auth
    zim_str_t device;  //  auth, optional
    zim_str_t to;      //  send
    zim_str_t cid;     //  send
    zim_str_t body;    //  send: raw msgpack bytes of any value
    zim_str_t from;    //  send: must not name another user
    bool has_from;
    zim_str_t peer;    //  history
    zim_str_t t;       //  ping: raw value echoed in pong, if any
    bool has_t;
    int64_t since;     //  sync: -1 when absent (use the device cursor)
    uint64_t limit;    //  sync/history: 0 when absent (server default)
    uint64_t seq;      //  cursor
    uint64_t before;   //  history: 0 when absent (newest)
    uint64_t rid;      //  sync/history: request id echoed in the reply
    bool has_rid;
} zim_cframe_t;

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
//  {"op":"error","code":N,"text":T[,"cid":C][,"rid":R]}; cid.ptr NULL or
//  has_rid false omit those keys.
void zim_cframe_error (zim_wr_t *wr, int code, const char *text, zim_str_t cid, bool has_rid,
                       uint64_t rid);
//  A stored message as the client sees it. seq 0 means "no seq" (history).
typedef struct {
    uint64_t seq;   //  the reader's inbox seq
    uint64_t id;    //  server message id
    uint64_t ts;    //  server time, ms since the epoch
    zim_str_t from; //  sender uid
    zim_str_t to;   //  recipient uid
    zim_str_t body; //  raw msgpack value
} zim_item_t;
//  {"op":"msg","seq":S,"id":ID,"from":F,"to":T,"conv":C,"body":B,"ts":MS}
void zim_cframe_msg (zim_wr_t *wr, const zim_item_t *item);
//  {"op":"page","rid":R,"more":M,"msgs":[...]}; write count items after it
//  with zim_cframe_page_item.
void zim_cframe_page_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count);
//  One page entry: the msg map without "op" (and without "seq" if 0).
void zim_cframe_page_item (zim_wr_t *wr, const zim_item_t *item);

//  ---------------------------------------------------------------------
//  Backbone messages. Each is [kind, ...fields]; see docs/ARCHITECTURE.md.

typedef enum {
    ZIM_MSG_SEND = 1,       //  gateway -> broker
    ZIM_MSG_SYNC = 2,       //  gateway -> broker
    ZIM_MSG_HISTORY = 3,    //  gateway -> broker
    ZIM_MSG_CURSOR = 4,     //  gateway -> broker
    ZIM_MSG_OUT = 10,       //  broker -> gateway
    ZIM_MSG_PRESENCE = 20,  //  gateway -> router
    ZIM_MSG_ROUTE_Q = 21,   //  broker -> router
    ZIM_MSG_ROUTE_R = 22,   //  router -> broker
    ZIM_MSG_APPEND = 30,    //  broker -> store
    ZIM_MSG_APPENDED = 31,  //  store -> broker
    ZIM_MSG_READ = 32,      //  broker -> store
    ZIM_MSG_PAGE = 33,      //  store -> broker
    ZIM_MSG_SETCURSOR = 34, //  broker -> store
    ZIM_MSG_HELLO = 50,     //  any node -> every router: heartbeat
    ZIM_MSG_MAP = 51,       //  router -> every node: the cluster map
} zim_msg_kind_t;

//  Reads the array header and the kind of a backbone message. On success
//  *kind is set and rd points at the first field; *fields is the number of
//  fields after the kind. Returns 0 or ZIM_EMALFORMED.
int zim_msg_kind (zim_rd_t *rd, int *kind, uint32_t *fields);

//  Who sent a request through a gateway: the verified session.
typedef struct {
    uint64_t conn;    //  gateway-local connection id: where replies go
    zim_str_t app;    //  app from the token
    zim_str_t uid;    //  user id from the token ("sub")
    zim_str_t device; //  device name from auth (or "default")
} zim_who_t;

//  SEND: [1, conn, app, uid, device, cid, to, body(raw)]
typedef struct {
    zim_who_t who;
    zim_str_t cid;  //  client message id: the idempotency key
    zim_str_t to;   //  recipient uid
    zim_str_t body; //  raw msgpack value
} zim_send_t;
void zim_send_encode (zim_wr_t *wr, const zim_send_t *m);
int zim_send_decode (zim_rd_t *rd, uint32_t fields, zim_send_t *m);

//  SYNC: [2, conn, app, uid, device, rid, since(int; -1 = stored cursor), limit]
typedef struct {
    zim_who_t who;
    uint64_t rid;
    int64_t since;
    uint64_t limit;
} zim_sync_t;
void zim_sync_encode (zim_wr_t *wr, const zim_sync_t *m);
int zim_sync_decode (zim_rd_t *rd, uint32_t fields, zim_sync_t *m);

//  HISTORY: [3, conn, app, uid, device, rid, peer, before, limit]
typedef struct {
    zim_who_t who;
    uint64_t rid;
    zim_str_t peer;
    uint64_t before; //  0 = from the newest
    uint64_t limit;
} zim_history_t;
void zim_history_encode (zim_wr_t *wr, const zim_history_t *m);
int zim_history_decode (zim_rd_t *rd, uint32_t fields, zim_history_t *m);

//  CURSOR: [4, conn, app, uid, device, seq]
typedef struct {
    zim_who_t who;
    uint64_t seq;
} zim_cursor_t;
void zim_cursor_encode (zim_wr_t *wr, const zim_cursor_t *m);
int zim_cursor_decode (zim_rd_t *rd, uint32_t fields, zim_cursor_t *m);

//  OUT: [10, [conn, ...], frames(bin)]: write frames (one or more encoded
//  client frames) to each listed connection of the receiving gateway. A
//  connection that has gone is skipped silently.
typedef struct {
    zim_rd_t conns;  //  reader over the conn ids; read with zim_rd_uint
    uint32_t nconns; //  how many conn ids
    zim_str_t frames;
} zim_out_t;
//  Encodes OUT for conns[0..nconns-1].
void zim_out_encode (zim_wr_t *wr, const uint64_t *conns, uint32_t nconns, zim_str_t frames);
int zim_out_decode (zim_rd_t *rd, uint32_t fields, zim_out_t *m);

//  PRESENCE: [20, gateway, reset(bool), [[up(bool), conn, app, uid, device], ...]]
//  reset true: forget every route of this gateway first (it restarted or
//  re-announces after a router restart).
typedef struct {
    bool up;
    uint64_t conn;
    zim_str_t app, uid, device;
} zim_presence_item_t;
typedef struct {
    zim_str_t gateway; //  the gateway's node name (its ZeroMQ routing id)
    bool reset;
    zim_rd_t items;    //  read with zim_presence_item_next
    uint32_t nitems;
} zim_presence_t;
void zim_presence_begin (zim_wr_t *wr, zim_str_t gateway, bool reset, uint32_t nitems);
void zim_presence_item (zim_wr_t *wr, const zim_presence_item_t *item);
int zim_presence_decode (zim_rd_t *rd, uint32_t fields, zim_presence_t *m);
int zim_presence_item_next (zim_rd_t *rd, zim_presence_item_t *item);

//  ROUTE_Q: [21, req, [[app, uid], ...]]
typedef struct {
    uint64_t req;
    zim_rd_t keys; //  read with zim_route_key_next
    uint32_t nkeys;
} zim_route_q_t;
void zim_route_q_begin (zim_wr_t *wr, uint64_t req, uint32_t nkeys);
void zim_route_key (zim_wr_t *wr, zim_str_t app, zim_str_t uid);
int zim_route_q_decode (zim_rd_t *rd, uint32_t fields, zim_route_q_t *m);
int zim_route_key_next (zim_rd_t *rd, zim_str_t *app, zim_str_t *uid);

//  ROUTE_R: [22, req, [[[gateway, conn, device], ...], ...]]: for each key
//  of the query, in order, the list of its live connections.
typedef struct {
    zim_str_t gateway;
    uint64_t conn;
    zim_str_t device;
} zim_route_t;
typedef struct {
    uint64_t req;
    zim_rd_t lists; //  per key: zim_rd_array then that many zim_route_next
    uint32_t nlists;
} zim_route_r_t;
void zim_route_r_begin (zim_wr_t *wr, uint64_t req, uint32_t nlists);
void zim_route_list_begin (zim_wr_t *wr, uint32_t nroutes);
void zim_route (zim_wr_t *wr, const zim_route_t *route);
int zim_route_r_decode (zim_rd_t *rd, uint32_t fields, zim_route_r_t *m);
int zim_route_next (zim_rd_t *rd, zim_route_t *route);

//  APPEND: [30, req, [[id, ts, app, from, to, cid, body(raw)[, sides]], ...]]
//  Persist each message in the inbox of from and of to (once if they are the
//  same user) and in the peer conversation history, unless (app, from, cid)
//  was stored before. sides (default 3) says which inboxes this store
//  writes when from and to live on different shards: 1 the sender's, 2 the
//  recipient's, 3 both. The idempotency key and the history entry are
//  written on every shard that gets the item.
#define ZIM_SIDE_FROM 1
#define ZIM_SIDE_TO 2
#define ZIM_SIDE_BOTH 3
typedef struct {
    uint64_t id;
    uint64_t ts;
    zim_str_t app, from, to, cid;
    zim_str_t body;
    uint64_t sides; //  ZIM_SIDE_*; encoded only when not ZIM_SIDE_BOTH
} zim_append_item_t;
typedef struct {
    uint64_t req;
    zim_rd_t items; //  read with zim_append_item_next
    uint32_t nitems;
} zim_append_t;
void zim_append_begin (zim_wr_t *wr, uint64_t req, uint32_t nitems);
void zim_append_item (zim_wr_t *wr, const zim_append_item_t *item);
int zim_append_decode (zim_rd_t *rd, uint32_t fields, zim_append_t *m);
int zim_append_item_next (zim_rd_t *rd, zim_append_item_t *item);

//  APPENDED: [31, req, [[status, id, from_seq, to_seq, ts], ...]], one result
//  per APPEND item, in order. status 0: stored now; 1: duplicate (id, seqs
//  and ts are the original's); negative: a ZIM_E* code, nothing stored.
//  to_seq is 0 when from and to are the same user.
#define ZIM_APPEND_STORED 0
#define ZIM_APPEND_DUPLICATE 1
#define ZIM_APPEND_CONFLICT 2 //  the cid names a message with another recipient or body
typedef struct {
    int64_t status;
    uint64_t id;
    uint64_t from_seq;
    uint64_t to_seq;
    uint64_t ts;
} zim_appended_item_t;
typedef struct {
    uint64_t req;
    zim_rd_t items;
    uint32_t nitems;
} zim_appended_t;
void zim_appended_begin (zim_wr_t *wr, uint64_t req, uint32_t nitems);
void zim_appended_item (zim_wr_t *wr, const zim_appended_item_t *item);
int zim_appended_decode (zim_rd_t *rd, uint32_t fields, zim_appended_t *m);
int zim_appended_item_next (zim_rd_t *rd, zim_appended_item_t *item);

//  READ: [32, req, mode, app, uid, device, from, limit, peer]
//  mode 0 (sync): the inbox of uid after seq `from` (from < 0: after the
//  device's stored cursor), oldest first. mode 1 (history): the peer
//  conversation of uid and peer, ids below `from` (0: newest), newest first.
#define ZIM_READ_SYNC 0
#define ZIM_READ_HISTORY 1
typedef struct {
    uint64_t req;
    uint64_t mode;
    zim_str_t app, uid, device;
    int64_t from;
    uint64_t limit;
    zim_str_t peer; //  empty for sync
} zim_read_t;
void zim_read_encode (zim_wr_t *wr, const zim_read_t *m);
int zim_read_decode (zim_rd_t *rd, uint32_t fields, zim_read_t *m);

//  PAGE: [33, req, status, more, [[seq, id, ts, from, to, body(raw)], ...]]
//  status 0 or a negative ZIM_E* code (then the list is empty).
typedef struct {
    uint64_t req;
    int64_t status;
    bool more;
    zim_rd_t items; //  read with zim_page_item_next
    uint32_t nitems;
} zim_page_t;
void zim_page_begin (zim_wr_t *wr, uint64_t req, int64_t status, bool more, uint32_t nitems);
void zim_page_item (zim_wr_t *wr, const zim_item_t *item);
int zim_page_decode (zim_rd_t *rd, uint32_t fields, zim_page_t *m);
int zim_page_item_next (zim_rd_t *rd, zim_item_t *item);

//  SETCURSOR: [34, app, uid, device, seq]: the device has everything up to
//  seq. A cursor never moves backwards.
typedef struct {
    zim_str_t app, uid, device;
    uint64_t seq;
} zim_setcursor_t;
void zim_setcursor_encode (zim_wr_t *wr, const zim_setcursor_t *m);
int zim_setcursor_decode (zim_rd_t *rd, uint32_t fields, zim_setcursor_t *m);

//  HELLO: [50, name, role, endpoint, instance, admin, stats(json)]: every
//  node's heartbeat to every router, once a second. role is gateway,
//  broker, router or store; endpoint is where its service listens (the
//  WebSocket URL for a gateway); instance is random per process start, so a
//  restart is seen; admin is its admin endpoint ("" if none); stats is its
//  STATS counters as one JSON object.
typedef struct {
    zim_str_t name, role, endpoint;
    uint64_t instance;
    zim_str_t admin;
    zim_str_t stats;
} zim_hello_t;
void zim_hello_encode (zim_wr_t *wr, const zim_hello_t *m);
int zim_hello_decode (zim_rd_t *rd, uint32_t fields, zim_hello_t *m);

//  MAP: [51, router, instance, version, [[name, role, endpoint, instance,
//  admin, alive, age_ms, stats], ...]]: the live cluster map a router sends
//  to every member once a second and whenever it changes. Nodes that stop
//  heartbeating are dropped after the router's member_timeout, except store
//  shards, which stay listed with alive false (their users stay placed on
//  them). Members are sorted by name. instance is the router's own.
typedef struct {
    zim_str_t name, role, endpoint;
    uint64_t instance;
    zim_str_t admin;
    bool alive;
    uint64_t age_ms; //  since its last heartbeat
    zim_str_t stats;
} zim_member_t;
typedef struct {
    zim_str_t router;
    uint64_t instance;
    uint64_t version;
    zim_rd_t members; //  read with zim_member_next
    uint32_t nmembers;
} zim_map_t;
void zim_map_begin (zim_wr_t *wr, zim_str_t router, uint64_t instance, uint64_t version,
                    uint32_t nmembers);
void zim_member (zim_wr_t *wr, const zim_member_t *member);
int zim_map_decode (zim_rd_t *rd, uint32_t fields, zim_map_t *m);
int zim_member_next (zim_rd_t *rd, zim_member_t *member);

//  The store shard of a user: a consistent hash ring with 64 points per
//  shard (FNV-1a-64 of "NAME#i"), looked up with FNV-1a-64 of "app\0uid".
//  shards are the shard names (in any order: placement depends on the names only); returns
//  the index into shards, or -1 if there are none. Every node computes the
//  same placement from the same set of names.
typedef struct zim_ring_t zim_ring_t;
zim_ring_t *zim_ring_new (const char *const *shards, size_t nshards);
void zim_ring_destroy (zim_ring_t **self_p);
int zim_ring_lookup (const zim_ring_t *self, zim_str_t app, zim_str_t uid);

//  FNV-1a-64 of "app\0uid": how gateways pick a sender's broker.
uint64_t zim_user_hash (zim_str_t app, zim_str_t uid);

void zim_msg_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
