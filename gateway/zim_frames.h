/*  zim_frames.h: what the gateway does with client frames and with what
    the brokers send back. A client message is decoded frame by frame
    (msg/zim_msg.h), each frame checked (authentication, cid and device,
    sender identity, recipient, send and read limits) and turned into a
    backbone request for the broker that owns the sender; refusals are
    answered with their documented error, naming the request's cid or rid.
    A broker's OUT is written to the sessions it names, as an answer to a
    read (a page, or an error naming a rid) or as live traffic.
*/
#ifndef ZIM_FRAMES_H_INCLUDED
#define ZIM_FRAMES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/zim_edge.h"
#include "gateway/zim_session.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Handles one complete client message: one or more frames back to back.
//  binary is false for a WebSocket text message (refused with 4000).
void zim_frames_message (zim_edge_t *edge, zim_session_t *session, const uint8_t *data, size_t size,
                         bool binary);

//  Authenticates session with token (from the URL or an auth frame) and,
//  if device is not NULL, names its device (a valid cid). On success the
//  client gets auth_ok and the routers PRESENCE up; returns 0. Otherwise
//  returns the wire code (token refused, or 4031 when the user has
//  max_conns_per_user connections here) and answers nothing.
int zim_frames_auth (zim_edge_t *edge, zim_session_t *session, const char *token, size_t len,
                     const char *device);

//  Handles one backbone message from a broker (OUT).
void zim_frames_out (zim_edge_t *edge, const void *data, size_t size);

//  Self test of this class.
void zim_frames_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
