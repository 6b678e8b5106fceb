/*  zim_sdk_outq.h: the C SDK's output queue, private to libzimclient.
    Encoded frames wait here for the next write, packed into chunks of
    whole frames of at most max_message bytes: each chunk goes out as one
    WebSocket message, so a burst of frames costs one write.
*/
#ifndef ZIM_SDK_OUTQ_H_INCLUDED
#define ZIM_SDK_OUTQ_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef struct _zim_sdk_outq_t zim_sdk_outq_t;

//  Creates an empty queue. Each chunk has headroom bytes before its
//  payload (for the transport's header); max_message bounds a chunk and
//  max_queue the bytes waiting.
zim_sdk_outq_t *zim_sdk_outq_new (size_t headroom, size_t max_message, size_t max_queue);

//  Destroys the queue and what waits in it.
void zim_sdk_outq_destroy (zim_sdk_outq_t **self_p);

//  Appends one encoded frame, starting a new chunk when the last one would
//  go over max_message. force skips the max_queue bound (for frames that
//  must get out: auth, cursor, resends, syncs).
//  @return 0, or -1 if the queue is full or the frame alone is over max_message
int zim_sdk_outq_push (zim_sdk_outq_t *self, const void *frame, size_t len, bool force);

//  True if a frame of len bytes would be taken without force now.
bool zim_sdk_outq_fits (zim_sdk_outq_t *self, size_t len);

//  The payload of the first chunk and its length in *len, or NULL when the
//  queue is empty. headroom bytes before it are writable.
unsigned char *zim_sdk_outq_front (zim_sdk_outq_t *self, size_t *len);

//  Drops the first chunk.
void zim_sdk_outq_pop (zim_sdk_outq_t *self);

//  Drops everything queued.
void zim_sdk_outq_clear (zim_sdk_outq_t *self);

//  Payload bytes queued.
size_t zim_sdk_outq_size (zim_sdk_outq_t *self);

//  Selftest.
void zim_sdk_outq_test (bool verbose);

#endif
