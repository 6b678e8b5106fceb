/*  zim_sdk_sendq.h: the C SDK's unacked sends, private to libzimclient.
    Every send stays here, with a copy of its encoded frame, from
    zim_client_send until its ack or its failure, in send order: written on
    the connection (in flight) or waiting to be written (no connection yet,
    lost with one, or held back after a retryable error). Generates cids.
*/
#ifndef ZIM_SDK_SENDQ_H_INCLUDED
#define ZIM_SDK_SENDQ_H_INCLUDED

#include "sdk/c/zim_client.h"
#include "msg/zim_mp.h"

typedef struct _zim_sdk_sendq_t zim_sdk_sendq_t;

//  Writes one waiting send's frame (zim_sdk_sendq_dispatch).
typedef void (zim_sdk_sendq_write_fn) (void *arg, const void *frame, size_t len);

//  Which sends zim_sdk_sendq_take takes.
typedef enum {
    ZIM_SDK_SENDQ_ALL,      //  any
    ZIM_SDK_SENDQ_INFLIGHT, //  those in flight
    ZIM_SDK_SENDQ_EXPIRED   //  those in flight since before a given time
} zim_sdk_sendq_which_t;

//  Creates an empty queue that holds at most max_unacked sends. Generated
//  cids are cid_prefix (1..32 printable characters) "." and a counter.
zim_sdk_sendq_t *zim_sdk_sendq_new (uint32_t max_unacked, const char *cid_prefix);

//  Destroys the queue and its sends.
void zim_sdk_sendq_destroy (zim_sdk_sendq_t **self_p);

//  Writes a fresh cid into cid (ZIM_CLIENT_CID_SIZE bytes).
void zim_sdk_sendq_new_cid (zim_sdk_sendq_t *self, char *cid);

//  True if one more send fits the window.
bool zim_sdk_sendq_room (zim_sdk_sendq_t *self);

//  Adds a send (its frame is copied): in flight since now (the caller has
//  queued the frame), or, with now 0, waiting.
//  @return 0, or -1 if the window is full
int zim_sdk_sendq_add (zim_sdk_sendq_t *self, const char *cid, const void *frame, size_t len,
                       uint64_t now);

//  Hands every waiting send to write, in send order, and marks it in flight
//  since now. @return how many
size_t zim_sdk_sendq_dispatch (zim_sdk_sendq_t *self, uint64_t now, zim_sdk_sendq_write_fn *write,
                               void *arg);

//  True if a send with this cid is in the queue.
bool zim_sdk_sendq_has (zim_sdk_sendq_t *self, zim_str_t cid);

//  Removes the send with this cid (acked, or failed for good).
//  @return 0, or -1 if there is none
int zim_sdk_sendq_remove (zim_sdk_sendq_t *self, zim_str_t cid);

//  Marks the send with this cid as waiting, to be written again.
//  @return 0, or -1 if there is none
int zim_sdk_sendq_requeue (zim_sdk_sendq_t *self, zim_str_t cid);

//  Marks every send as waiting (the connection is gone).
void zim_sdk_sendq_requeue_all (zim_sdk_sendq_t *self);

//  Marks the sends in flight since before now - age as waiting.
//  @return how many
size_t zim_sdk_sendq_expire (zim_sdk_sendq_t *self, uint64_t now, uint64_t age);

//  A mark for zim_sdk_sendq_take: sends added after it are never taken
//  with it, so failing sends can run callbacks that send again.
uint64_t zim_sdk_sendq_mark (zim_sdk_sendq_t *self);

//  Removes the oldest send added before mark that matches which (for
//  EXPIRED: in flight since before now - age) and copies its cid into cid.
//  @return true if there was one
bool zim_sdk_sendq_take (zim_sdk_sendq_t *self, uint64_t mark, zim_sdk_sendq_which_t which,
                         uint64_t now, uint64_t age, char *cid);

//  Sends in the queue.
size_t zim_sdk_sendq_size (zim_sdk_sendq_t *self);

//  Selftest.
void zim_sdk_sendq_test (bool verbose);

#endif
