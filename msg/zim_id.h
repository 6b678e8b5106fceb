/*  zim_id.h: identifiers and the keys built from them. User ids and app
    names are 1..64 bytes of [A-Za-z0-9_.@-]; client message ids and device
    names 1..64 printable ASCII bytes (the catalogue's ZIM_ID fields); a
    peer conversation is named by its two users.
*/
#ifndef ZIM_ID_H_INCLUDED
#define ZIM_ID_H_INCLUDED

#include "msg/zim_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The reserved sender of the backend's persisted pushes (docs/API.md):
//  no token may name it (gateway/zim_token.c).
#define ZIM_SYSTEM_UID "_system"

//  True if s is a valid user id or app name.
bool zim_uid_valid (zim_str_t s);
//  True if s is a valid client message id or device name.
bool zim_cid_valid (zim_str_t s);

//  Writes the peer conversation key for users a and b ("p:" + the smaller
//  uid + ":" + the larger) into buf; returns its length or -1 if too small.
int zim_conv_peer (zim_str_t a, zim_str_t b, char *buf, size_t size);

void zim_id_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
