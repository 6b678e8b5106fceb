/*  zim_client.h: the C client SDK for zim. Connects to a zim gateway over
    WebSocket (ws://HOST:7700/ws), authenticates with a token, sends messages
    and receives acks, live messages and sync/history pages; marks
    conversations read or delivered and gets receipts; lists conversations,
    groups and channels and reads channels (docs/PROTOCOL.md).

    Many clients share one event loop (zim_loop_t), which one thread drives
    with zim_loop_run (). Nothing here is thread-safe: create, use and destroy
    a loop and its clients from one thread. Callbacks run only from inside
    zim_loop_run (); a callback may call any function here, destroy included.

    Frames queued while connected are written together: on each writable
    event, everything queued (up to max_message bytes) goes out as ONE
    WebSocket message, so a burst of sends costs one write().

    Optional behaviour, all off by default:
    - reconnect: after a lost connection, connect again with jittered
      exponential backoff;
    - retry: keep each send until its ack; after a reconnect, a retryable
      error such as 5030, or ack_timeout_ms without an answer, send it again
      with the same cid, which the server answers with the original ack and
      never stores twice;
    - auto_sync: keep the inbox in order: sync on every authentication (from
      the last seq seen), detect gaps in live seqs and fill them by sync, drop
      duplicates. Messages, synced or live, arrive through on_msg in seq
      order, each once.

    This header is self-contained: it needs only the C standard headers.
*/
#ifndef ZIM_CLIENT_H_INCLUDED
#define ZIM_CLIENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  ---------------------------------------------------------------------
//  Error codes. Server errors use the wire codes of docs/PROTOCOL.md
//  (4000..5999: 4011 bad token, 4012 token expired, 4029 rate limited,
//  5030 unavailable, ...). The client adds these, below 1000:

#define ZIM_CLIENT_ERR_CONNECT 1 //  could not connect or upgrade (refused, DNS, HTTP error)
#define ZIM_CLIENT_ERR_LOST 2    //  the connection closed before the answer came
#define ZIM_CLIENT_ERR_TIMEOUT                                                                     \
    3                             //  no auth_ok within connect_timeout_ms, or the server
                                  //  went silent (no frame for 2 ping intervals)
#define ZIM_CLIENT_ERR_PROTOCOL 4 //  the server sent something we could not decode

//  Wire codes the client acts on (the full list is in docs/PROTOCOL.md).
#define ZIM_CLIENT_ERR_BAD_TOKEN 4011 //  also an HTTP 403 at the upgrade
#define ZIM_CLIENT_ERR_TOKEN_EXPIRED 4012

//  Sizes. User ids, cids and device names are 1..64 bytes.
#define ZIM_CLIENT_ID_MAX 64
#define ZIM_CLIENT_CID_SIZE (ZIM_CLIENT_ID_MAX + 1) //  buffer for a cid with its NUL
#define ZIM_CLIENT_CONV_MAX 160                     //  "p:" + uid + ":" + uid

typedef struct _zim_loop_t zim_loop_t;
typedef struct _zim_client_t zim_client_t;

//  Connection states reported through on_state.
typedef enum {
    ZIM_CLIENT_CONNECTING = 1, //  TCP connect and WebSocket upgrade under way
    ZIM_CLIENT_OPEN,           //  WebSocket open, authentication under way
    ZIM_CLIENT_AUTHED,         //  auth_ok received: sends flow
    ZIM_CLIENT_WAITING,        //  connection lost; reconnecting after a backoff delay
    ZIM_CLIENT_CLOSED          //  closed for good (until zim_client_connect)
} zim_client_state_t;

//  An ack: the message is durably stored. Views are valid during the callback.
typedef struct {
    const char *cid; //  the client message id of the send
    uint64_t id;     //  server message id
    uint64_t seq;    //  the message's seq in the sender's inbox
    uint64_t ts;     //  server time, ms since the epoch
    uint64_t gseq;   //  a group send's: its place in the group's log (0 otherwise)
} zim_client_ack_t;

//  An error: from the server ({"op":"error"}) or from the client (codes
//  below 1000, e.g. a send whose ack was lost with the connection).
typedef struct {
    int code;         //  wire code or ZIM_CLIENT_ERR_*
    const char *text; //  what went wrong, for people
    const char *cid;  //  the send it answers, or NULL
    bool has_rid;     //  true if it answers a sync or history request
    uint64_t rid;     //  that request's id
} zim_client_error_t;

//  A message, live or from a page. Strings are NUL-terminated copies that
//  are valid during the callback; body points at the raw msgpack value.
typedef struct {
    uint64_t seq;                       //  the reader's inbox seq; 0 in history pages
    uint64_t id;                        //  server message id
    uint64_t ts;                        //  server time, ms since the epoch
    char from[ZIM_CLIENT_ID_MAX + 1];   //  sender uid
    char to[ZIM_CLIENT_ID_MAX + 1];     //  recipient uid
    char conv[ZIM_CLIENT_CONV_MAX + 1]; //  conversation key ("" if absent)
    const void *body;                   //  the body: exactly one msgpack value
    size_t body_len;                    //  its length in bytes
    char group[ZIM_CLIENT_ID_MAX + 1];  //  a group's or channel's message: the group ("" else)
    uint64_t gseq;                      //  a channel's (csync): its place in the log
} zim_client_msg_t;

//  A page answering zim_client_sync, zim_client_history or zim_client_csync.
typedef struct {
    uint64_t rid;                 //  the request id
    bool more;                    //  true if more messages follow (ask again)
    const zim_client_msg_t *msgs; //  the messages: oldest first for sync and
                                  //  csync, newest first for history
    size_t count;                 //  how many
    //  csync only (NULL and false otherwise):
    const char *group; //  the channel the page is of
    bool reset;        //  the reader was too far behind (docs/PROTOCOL.md,
                       //  store/csync_max_behind): these are the newest
                       //  messages, not those after since. Drop what you had
                       //  of the channel and read on from the page's last gseq.
} zim_client_page_t;

//  A receipt (docs/PROTOCOL.md, "Receipts and the conversation list"):
//  user's cursors in conv, as seqs of THIS user's inbox. user is this user
//  (the answer to zim_client_read/_delivered, or another device of ours
//  moved them) or the other side of a "p:" conversation ("user has read my
//  messages up to my seq read"). Values only grow: keep the largest seen.
typedef struct {
    const char *conv;   //  the conversation ("p:A:B" or "g:GROUP")
    const char *user;   //  whose cursors
    bool has_read;      //  read is present
    uint64_t read;      //  read up to this seq
    bool has_delivered; //  delivered is present
    uint64_t delivered; //  delivered up to this seq
} zim_client_receipt_t;

//  One conversation of the list. Strings are NUL-terminated copies valid
//  during the callback; body points at the raw msgpack value.
typedef struct {
    char conv[ZIM_CLIENT_CONV_MAX + 1]; //  the conversation
    uint64_t id;                        //  its last message: server id,
    char from[ZIM_CLIENT_ID_MAX + 1];   //  sender,
    uint64_t ts;                        //  time (ms since the epoch),
    const void *body;                   //  body (one msgpack value),
    size_t body_len;                    //  its length,
    uint64_t seq;                       //  and seq in this user's inbox
    uint64_t unread;                    //  messages of others after the read cursor
    uint64_t read;                      //  this user's read cursor (a seq of its inbox; 0: none)
    uint64_t delivered;                 //  this user's delivered cursor
    uint64_t peer_read;                 //  "p:": the other side's read cursor, in this user's
                                        //  seqs (0: none)
    uint64_t peer_delivered;            //  "p:": the other side's delivered cursor
    uint64_t muted;                     //  push muted until (ms since the epoch; 0: not muted)
} zim_client_conv_t;

//  A page of the conversation list, most recent first (zim_client_convs).
typedef struct {
    uint64_t rid;                   //  the request id
    bool more;                      //  more follow: ask again with before = the last id
    const zim_client_conv_t *convs; //  the conversations
    size_t count;                   //  how many
} zim_client_convs_t;

//  One group or channel of the user (zim_client_groups).
typedef struct {
    char group[ZIM_CLIENT_ID_MAX + 1]; //  the group id (its conversation is "g:" + group)
    bool channel;                      //  a channel (read with zim_client_csync), not a group
                                       //  (whose messages come through the inbox)
    uint64_t head;                     //  the gseq of its newest message
    uint64_t joined;                   //  the user reads the messages after this gseq
    uint64_t members;                  //  how many members
    uint64_t pos;                      //  channel: this client's position, the highest gseq
                                       //  it read by csync (at least joined); head - pos
                                       //  messages are waiting. Group: 0
} zim_client_group_t;

//  The answer to zim_client_groups.
typedef struct {
    uint64_t rid;                     //  the request id
    const zim_client_group_t *groups; //  the groups and channels
    size_t count;                     //  how many
} zim_client_groups_t;

//  Callbacks; any may be NULL. arg is the config's arg.
typedef void (zim_client_state_fn) (zim_client_t *client, zim_client_state_t state, int code,
                                    void *arg);
typedef void (zim_client_ack_fn) (zim_client_t *client, const zim_client_ack_t *ack, void *arg);
typedef void (zim_client_error_fn) (zim_client_t *client, const zim_client_error_t *error,
                                    void *arg);
typedef void (zim_client_msg_fn) (zim_client_t *client, const zim_client_msg_t *msg, void *arg);
typedef void (zim_client_page_fn) (zim_client_t *client, const zim_client_page_t *page, void *arg);
typedef void (zim_client_pong_fn) (zim_client_t *client, uint64_t t, void *arg);

typedef void (zim_client_receipt_fn) (zim_client_t *client, const zim_client_receipt_t *receipt,
                                      void *arg);
typedef void (zim_client_convs_fn) (zim_client_t *client, const zim_client_convs_t *convs,
                                    void *arg);
typedef void (zim_client_groups_fn) (zim_client_t *client, const zim_client_groups_t *groups,
                                     void *arg);

//  Rooms, pushes and signals (docs/PROTOCOL.md, "Rooms and live signals").
//  Views are valid during the callback; bodies are one msgpack value.
typedef struct {
    const char *room; //  the room
    const char *from; //  the publishing user, NULL when the app's backend published
    const void *body; //  the body
    size_t body_len;  //  its length
    uint64_t ts;      //  server time, ms since the epoch
} zim_client_room_t;
//  A room message (room), a push from the backend (room NULL, from NULL), or
//  a signal (room NULL, from the sender, ts 0).
typedef void (zim_client_room_fn) (zim_client_t *client, const zim_client_room_t *m, void *arg);
//  joined (online: the room's connections) or, with online -1, left: the
//  answer to zim_client_join/leave, a rejoin after a reconnect, or the
//  backend's order.
typedef void (zim_client_joined_fn) (zim_client_t *client, const char *room, int64_t online,
                                     void *arg);
//  A room's connections changed (joined with counts).
typedef void (zim_client_count_fn) (zim_client_t *client, const char *room, uint64_t online,
                                    void *arg);

//  Client configuration. Zero means "default" for every number; strings are
//  copied by zim_client_new. Start from {0} and set what you need.
typedef struct {
    const char *url;    //  ws://HOST:PORT/PATH or wss://..., or tcp://HOST:PORT for the
                        //  gateway's raw TCP port (docs/PROTOCOL.md, "Raw TCP"; not with
                        //  token_in_url) (default ws://127.0.0.1:7700/ws)
    const char *token;  //  the JWT (required)
    const char *device; //  device name for the sync cursor (NULL: the server's "default")
    bool token_in_url;  //  authenticate with ?token=&device= instead of an auth frame

    size_t max_queue;            //  bytes queued and not yet written (default 1 MiB)
    uint32_t max_unacked;        //  sends awaiting their ack (default 10000)
    size_t max_message;          //  bytes per WebSocket message written (default 65536,
                                 //  the server's max_frame); a bigger frame is refused
    uint32_t connect_timeout_ms; //  connect + upgrade + auth (default 10000)
    uint32_t ping_interval_ms;   //  app-level ping period while authed (default 30000);
                                 //  no frame for 2 periods closes with ERR_TIMEOUT
    bool no_ping;                //  true: never ping (and never time out on silence)

    bool reconnect;          //  reconnect after a loss (not after 4011/4012)
    uint32_t backoff_min_ms; //  first reconnect delay (default 250)
    uint32_t backoff_max_ms; //  largest reconnect delay (default 30000)
    bool retry;              //  resend unacked sends with the same cid after a
                             //  reconnect or a retryable error (4029, 5000, 5030, 5040)
    uint32_t ack_timeout_ms; //  0: off. A send written this long ago without an ack is
                             //  resent (retry) or fails with ZIM_CLIENT_ERR_TIMEOUT
    bool auto_sync;          //  keep the inbox in order through on_msg (see above)
    bool has_since;          //  auto_sync: false = start after the device's stored
    uint64_t since;          //  cursor; true = start after seq `since` (0: everything)
    uint32_t sync_limit;     //  messages per sync page (default 1000, the server max)

    zim_client_state_fn *on_state; //  state changes, with an error code when closing
    zim_client_ack_fn *on_ack;     //  a send was stored
    zim_client_error_fn *on_error; //  a request failed, or the server reported an error
    zim_client_msg_fn *on_msg;     //  a live message (and with auto_sync, synced ones)
    zim_client_page_fn *on_page;   //  a page for zim_client_sync, _history or _csync
    zim_client_pong_fn *on_pong;   //  the answer to zim_client_ping
    void *arg;                     //  passed to every callback
    //  Rooms, pushes and signals (may be NULL).
    zim_client_room_fn *on_room;     //  a room message
    zim_client_room_fn *on_push;     //  a push from the app's backend
    zim_client_room_fn *on_signal;   //  a live signal
    zim_client_joined_fn *on_joined; //  joined or left a room
    zim_client_count_fn *on_count;   //  a room's count changed

    const char *tls_ca_file; //  wss://: trust the certificate authorities of this PEM file
                             //  (e.g. a self-signed server certificate) instead of the
                             //  system's (NULL)
    //  Receipts, the conversation list, groups (may be NULL).
    zim_client_receipt_fn *on_receipt; //  a receipt
    zim_client_convs_fn *on_convs;     //  a page of the conversation list
    zim_client_groups_fn *on_groups;   //  the user's groups and channels
    //  A channel's new message, live after a zim_client_csync of it (at most
    //  once; msg->group and msg->gseq set; docs/PROTOCOL.md "Live channel
    //  messages"). A gseq above zim_client_channel_pos + 1 means some were
    //  missed: csync from the position (since -1). NULL: they come to
    //  on_room as room "g:GROUP" frames whose body is the message's map.
    zim_client_msg_fn *on_channel;
} zim_client_config_t;

//  ---------------------------------------------------------------------
//  The loop.

//  Creates an event loop for clients. Returns NULL if libwebsockets could
//  not create its context.
zim_loop_t *zim_loop_new (void);

//  Destroys the loop. Destroy its clients first; a client still alive is
//  disconnected and left unusable (zim_client_destroy still frees it).
void zim_loop_destroy (zim_loop_t **self_p);

//  Handles network events and timers: returns once at least one client
//  event was handled (a message, a write, a state change, a timer) or when
//  timeout_ms has passed (0: handle what is ready without waiting; < 0: wait
//  as long as it takes).
//  @return 0, or -1 if the loop failed
int zim_loop_run (zim_loop_t *self, int timeout_ms);

//  ---------------------------------------------------------------------
//  A client: one WebSocket connection as one user and device.

//  Creates a client and starts connecting at the next zim_loop_run.
//  @return the client, or NULL if cfg is invalid (no token, bad url)
zim_client_t *zim_client_new (zim_loop_t *loop, const zim_client_config_t *cfg);

//  Destroys the client at once, without callbacks: queued frames are
//  dropped, the connection is closed.
void zim_client_destroy (zim_client_t **self_p);

//  Connects again after ZIM_CLIENT_CLOSED (e.g. after zim_client_set_token).
//  @return 0, or -1 if the client is not closed
int zim_client_connect (zim_client_t *self);

//  Replaces the token used from the next connection on.
void zim_client_set_token (zim_client_t *self, const char *token);

//  Writes what is queued, then closes the connection; on_state reports
//  ZIM_CLIENT_CLOSED with code 0 when it is done. No reconnect follows.
void zim_client_close (zim_client_t *self);

//  The current state.
zim_client_state_t zim_client_state (zim_client_t *self);

//  The user id from auth_ok ("" before the first authentication).
const char *zim_client_uid (zim_client_t *self);

//  Queues a send. The body is one msgpack value (copied).
//  @param to      recipient user id
//  @param cid     client message id, or NULL to generate a unique one
//  @param cid_out if not NULL, receives the cid (ZIM_CLIENT_CID_SIZE bytes)
//  @return 0, or -1 if the queue or the unacked window is full, the cid or
//          to is invalid, or the frame is over max_message
int zim_client_send (zim_client_t *self, const char *to, const char *cid, const void *body,
                     size_t len, char *cid_out);

//  Queues a send to a group or channel (docs/PROTOCOL.md, "Groups and
//  channels"); its ack carries gseq. As zim_client_send, with the group id
//  instead of the recipient.
int zim_client_send_group (zim_client_t *self, const char *group, const char *cid, const void *body,
                           size_t len, char *cid_out);

//  Queues a send whose body is the msgpack string text. As zim_client_send.
int zim_client_send_text (zim_client_t *self, const char *to, const char *cid, const char *text,
                          char *cid_out);

//  Asks for the inbox after seq since (-1: after the device's stored cursor),
//  at most limit messages (0: server default). The answer is on_page.
//  With auto_sync on, use on_msg instead: its own syncs never reach on_page.
//  @return 0 and *rid_out (if not NULL) set to the request id, or -1 (queue full)
int zim_client_sync (zim_client_t *self, int64_t since, uint32_t limit, uint64_t *rid_out);

//  Tells the server this device has processed everything up to seq. Cheap:
//  calls are coalesced and only the highest seq goes out with the next write.
//  @return 0, or -1 if seq is 0
int zim_client_cursor (zim_client_t *self, uint64_t seq);

//  Asks for the conversation with peer, newest first, ids below before
//  (0: from the newest), at most limit (0: server default). Answer: on_page.
//  @return 0 and *rid_out set, or -1 (invalid peer, queue full)
int zim_client_history (zim_client_t *self, const char *peer, uint64_t before, uint32_t limit,
                        uint64_t *rid_out);

//  Sends {"op":"ping","t":t}; on_pong gets t back.
//  @return 0, or -1 if the queue is full
int zim_client_ping (zim_client_t *self, uint64_t t);

//  Joins room (1..128 bytes of A-Z a-z 0-9 _ . : @ / -): on_joined when the
//  server answers, on_error (with the request's rid) if it refuses. The
//  client joins it again after every reconnect until zim_client_leave.
//  counts: on_count when the room's count changes.
//  @return 0, or -1 (bad room name, queue full)
int zim_client_join (zim_client_t *self, const char *room, bool counts);
//  Leaves room (and stops rejoining it). @return 0, or -1
int zim_client_leave (zim_client_t *self, const char *room);
//  Publishes body (one msgpack value) to every connection in room, this one
//  included; live only. A refusal comes to on_error with *rid_out.
//  @return 0, or -1 (not connected, bad room, queue full)
int zim_client_publish (zim_client_t *self, const char *room, const void *body, size_t len,
                        uint64_t *rid_out);
//  Sends a live signal (typing...) to every connection of user to. Not
//  stored, not acknowledged. @return 0, or -1 (not connected, bad user id)
int zim_client_signal (zim_client_t *self, const char *to, const void *body, size_t len);

//  Receipts, the conversation list, groups and channels (docs/PROTOCOL.md,
//  "Receipts and the conversation list", "Groups and channels"). Each is
//  queued like zim_client_sync: written once authenticated, and not sent
//  again after a lost connection (requests with a rid then fail with
//  ZIM_CLIENT_ERR_LOST).

//  Marks conv ("p:A:B" with this user as A or B, or "g:GROUP") read up to
//  seq, a seq of this user's inbox (e.g. the newest message on screen).
//  The server answers with on_receipt (this user's cursors now); the
//  other side's devices get a receipt too. A refusal (4001 bad conv, 4030
//  not this user's, 4029) comes to on_error without cid or rid.
//  @return 0, or -1 (bad conv, seq 0, queue full)
int zim_client_read (zim_client_t *self, const char *conv, uint64_t seq);

//  As zim_client_read, for "arrived on a device".
int zim_client_delivered (zim_client_t *self, const char *conv, uint64_t seq);

//  Asks for the conversation list, most recent first, at most limit
//  entries (0: the server's default, 20; at most 100), those whose last
//  message id is below before (0: from the newest). The answer is on_convs.
//  @return 0 and *rid_out (if not NULL) set, or -1 (queue full)
int zim_client_convs (zim_client_t *self, uint32_t limit, uint64_t before, uint64_t *rid_out);

//  Asks for this user's groups and channels, each with its head and, for
//  channels, this client's position. The answer is on_groups.
//  @return 0 and *rid_out set, or -1 (queue full)
int zim_client_groups (zim_client_t *self, uint64_t *rid_out);

//  Asks for a channel's messages after gseq since (-1: after this client's
//  position in it, see zim_client_group_t.pos), at most limit (0: the
//  server's default, 100). The answer is on_page with group set, each
//  message with group and gseq (no seq), oldest first; page->reset says
//  the reader was too far behind and got the newest messages instead.
//  Refusals (4040 not a member, 4041 no such group, 4044 not a channel)
//  come to on_error with the rid.
//  @return 0 and *rid_out set, or -1 (bad group id, queue full)
int zim_client_csync (zim_client_t *self, const char *group, int64_t since, uint32_t limit,
                      uint64_t *rid_out);

//  This client's position in a channel: the highest gseq a csync page
//  brought (or the joined of a groups answer), 0 if none.
uint64_t zim_client_channel_pos (zim_client_t *self, const char *group);

//  Sends awaiting an ack (queued, written, or waiting for a retry).
size_t zim_client_unacked (zim_client_t *self);

//  The highest inbox seq this client has seen in order (auto_sync), or -1.
int64_t zim_client_last_seq (zim_client_t *self);

//  ---------------------------------------------------------------------
//  Helpers.

//  Converts one msgpack value to JSON: strings are escaped (invalid UTF-8
//  becomes U+FFFD), bin and ext become base64 strings (ext as
//  {"ext":TYPE,"data":B64}), map keys that are not strings are written as
//  strings of their JSON text, NaN and infinities become null.
//  @return a NUL-terminated string, or NULL if the bytes are not exactly one
//          msgpack value. Caller owns return value (free ()).
char *zim_body_to_json (const void *msgpack, size_t len);

//  Writes s as a JSON string (with quotes) into a new string; bytes that are
//  not UTF-8 become U+FFFD. Caller owns return value (free ()).
char *zim_json_string (const char *s);

//  Selftest of the offline parts: frame codecs against the protocol's
//  byte-exact vectors, JSON conversion, queueing and coalescing.
void zim_client_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
