/*  zim_sdk_frame.h: the C SDK's side of the client protocol, private to
    libzimclient: encoders for the frames a client sends (byte for byte the
    vectors of docs/PROTOCOL.md) and lenient decoders for the frames the
    server sends (unknown keys and ops are skipped: a newer server may add
    them; a known key of the wrong type fails the frame).
*/
#ifndef ZIM_SDK_FRAME_H_INCLUDED
#define ZIM_SDK_FRAME_H_INCLUDED

#include "sdk/c/zim_client.h"
#include "msg/zim_mp.h"

//  A decoded server frame; views borrow the received message.
typedef struct {
    zim_str_t op, cid, text, uid, app, device; //  strings, ptr NULL if absent
    int64_t code;                              //  error code
    uint64_t id, seq, ts, rid, t;              //  numbers, 0 if absent
    uint64_t gseq;                             //  a group send's ack: its gseq
    bool has_rid, has_code, more;              //  presence of rid and code; page's more
    zim_rd_t msgs;                             //  page: reader at the first item
    uint32_t nmsgs;                            //  page: how many items
    zim_str_t room, from, body;                //  rooms, pushes, signals (body: raw msgpack)
    uint64_t online;                           //  joined, count
    zim_str_t conv, user;                      //  receipt
    bool has_read, has_delivered;              //  receipt: presence of read, delivered
    uint64_t read, delivered;                  //  receipt: the cursors
    bool reset;                                //  a csync page: the reader was too far behind
    zim_rd_t list;                             //  convs, groups: reader at the first entry
    uint32_t nlist;                            //  convs, groups: how many entries
} zim_sdk_frame_t;

//  {"op":"auth","token":T[,"device":D]}
void zim_sdk_frame_auth (zim_wr_t *wr, const char *token, const char *device);

//  {"op":"ping","t":t}
void zim_sdk_frame_ping (zim_wr_t *wr, uint64_t t);

//  {"op":"send","to":TO,"cid":CID,"body":BODY}; body is one msgpack value.
void zim_sdk_frame_send (zim_wr_t *wr, const char *to, const char *cid, const void *body,
                         size_t len);

//  {"op":"send","group":GROUP,"cid":CID,"body":BODY}: a send to a group.
void zim_sdk_frame_send_group (zim_wr_t *wr, const char *group, const char *cid, const void *body,
                               size_t len);

//  {"op":"sync"[,"since":S][,"limit":L],"rid":R}; since < 0 and limit 0
//  are left out (the device's cursor, the server's default).
void zim_sdk_frame_sync (zim_wr_t *wr, int64_t since, uint32_t limit, uint64_t rid);

//  {"op":"cursor","seq":S}
void zim_sdk_frame_cursor (zim_wr_t *wr, uint64_t seq);

//  {"op":"history","peer":P,"before":B[,"limit":L],"rid":R}
void zim_sdk_frame_history (zim_wr_t *wr, const char *peer, uint64_t before, uint32_t limit,
                            uint64_t rid);

//  {"op":OP,"conv":C,"seq":S}: OP "read" or "delivered".
void zim_sdk_frame_read (zim_wr_t *wr, const char *op, const char *conv, uint64_t seq);

//  {"op":"convs"[,"limit":L][,"before":B],"rid":R}; limit 0 and before 0
//  are left out (the server's default, the newest).
void zim_sdk_frame_convs (zim_wr_t *wr, uint32_t limit, uint64_t before, uint64_t rid);

//  {"op":"groups","rid":R}
void zim_sdk_frame_groups (zim_wr_t *wr, uint64_t rid);

//  {"op":"csync","group":G,"since":S[,"limit":L],"rid":R}
void zim_sdk_frame_csync (zim_wr_t *wr, const char *group, uint64_t since, uint32_t limit,
                          uint64_t rid);

//  Decodes the entries of a convs frame into *convs (grown as needed;
//  *alloc is its size in entries); strings are copied, bodies are views.
//  @return the count, or -1 if an entry is malformed
int zim_sdk_frame_conv_list (const zim_sdk_frame_t *f, zim_client_conv_t **convs, size_t *alloc);

//  Decodes the entries of a groups frame into *groups (as above; pos is 0).
//  @return the count, or -1 if an entry is malformed
int zim_sdk_frame_group_list (const zim_sdk_frame_t *f, zim_client_group_t **groups, size_t *alloc);

//  Decodes one server frame from rd.
//  @return 0, or -1 if malformed (rd is then somewhere inside the frame and
//          the rest of the message must be dropped)
int zim_sdk_frame_decode (zim_rd_t *rd, zim_sdk_frame_t *f);

//  Decodes one message map (a msg frame or a page item) into m; strings
//  are copied, the body is a view. @return 0 or -1
int zim_sdk_frame_msg (zim_rd_t *rd, zim_client_msg_t *m);

//  Decodes the items of a page into *msgs (grown as needed; *alloc is its
//  size in items). @return the count, or -1 if an item is malformed
int zim_sdk_frame_page (const zim_sdk_frame_t *f, zim_client_msg_t **msgs, size_t *alloc);

//  Copies a string view into a fixed buffer. @return 0, or -1 if it does
//  not fit
int zim_sdk_frame_copy (char *buf, size_t size, zim_str_t v);

//  Selftest.
void zim_sdk_frame_test (bool verbose);

#endif
