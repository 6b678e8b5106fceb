/*  zim_cframe.h: the client's side of the message catalogue: wire error
    texts, the client frame decoder and the server frame writers. The frame
    types (zim_cframe_t, zim_sframe_t, zim_sitem_t, ...) are the
    catalogue's (msg/zim_msg.h, which includes this header).
*/
#ifndef ZIM_CFRAME_H_INCLUDED
#define ZIM_CFRAME_H_INCLUDED

#include "msg/zim_msg.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Returns a short text for a ZIM_E* code or a wire code.
const char *zim_strerror (int code);

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

void zim_cframe_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
