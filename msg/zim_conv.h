/*  zim_conv.h: conversation keys as receipts, the conversation list and
    the push queue name them. A 1:1 conversation is "p:" + the smaller uid
    + ":" + the larger (zim_conv_peer, msg/zim_id.h); a group or channel
    conversation is "g:" + the group id. A user takes part in "p:A:B" when
    it is A or B; in "g:ID" when the group says so (its membership is the
    groups' business, not this check's).
*/
#ifndef ZIM_CONV_H_INCLUDED
#define ZIM_CONV_H_INCLUDED

#include "msg/zim_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Longest conversation key: "p:" + 64 + ":" + 64.
#define ZIM_CONV_MAX (2 + 64 + 1 + 64)

//  A parsed conversation key: views into the key.
typedef struct {
    bool group;     //  "g:": a group or channel
    zim_str_t a, b; //  "p:": its two users, a < b (a == b: notes to oneself)
    zim_str_t id;   //  "g:": the group id
} zim_conv_t;

//  Parses a conversation key.
//  @return 0, or -1 if it is not one (a uid that is not valid, "p:" users
//  out of order, an unknown prefix, too long)
int zim_conv_parse (zim_str_t conv, zim_conv_t *out);

//  Parses conv and checks that uid takes part in it; *peer gets the other
//  user of a "p:" conversation (uid itself for notes to oneself) and an
//  empty view for a group.
//  @return 0, ZIM_ERR_BAD_FIELD (not a conversation key) or
//  ZIM_ERR_FORBIDDEN ("p:" without uid)
int zim_conv_check (zim_str_t conv, zim_str_t uid, zim_str_t *peer);

//  Self test of this class.
void zim_conv_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
