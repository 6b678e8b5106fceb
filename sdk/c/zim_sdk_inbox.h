/*  zim_sdk_inbox.h: the C SDK's inbox order (auto_sync), private to
    libzimclient. Hands the user's inbox to the application in seq order,
    each message once: syncs from the last seq delivered on every
    (re)connection, follows a page's `more` until the server has no more
    (whatever each page holds), holds live messages that arrive during a
    sync or ahead of a missing seq, fills gaps by a sync after a short
    grace, counts the seqs of the user's own acked sends, drops duplicates.
    A sync cut short by a lost connection resumes from the last seq
    delivered, not from where it started.
*/
#ifndef ZIM_SDK_INBOX_H_INCLUDED
#define ZIM_SDK_INBOX_H_INCLUDED

#include "sdk/c/zim_sdk_loop.h"

typedef struct _zim_sdk_inbox_t zim_sdk_inbox_t;

//  What the inbox asks of its owner.
typedef struct {
    //  Hands one message to the application. Returns false if the owner
    //  is gone: the inbox then stops where it is.
    bool (*deliver) (void *arg, const zim_client_msg_t *msg);
    //  Sends a sync after since (-1: after the device's stored cursor) for
    //  at most limit messages; returns its request id (not 0).
    uint64_t (*sync) (void *arg, int64_t since, uint32_t limit);
} zim_sdk_inbox_hooks_t;

//  Creates an inbox. ordered false: messages are delivered as they come,
//  no sync is made, and the last seq is the highest seen. start: the seq
//  to sync after when no message was delivered yet (-1: the device's
//  stored cursor). limit: messages per sync page.
zim_sdk_inbox_t *zim_sdk_inbox_new (zim_loop_t *loop, bool ordered, int64_t start, uint32_t limit,
                                    const zim_sdk_inbox_hooks_t *hooks, void *arg);

//  Destroys the inbox and what it holds.
void zim_sdk_inbox_destroy (zim_sdk_inbox_t **self_p);

//  The highest seq delivered in order (or seen, unordered), -1 if none.
int64_t zim_sdk_inbox_last_seq (zim_sdk_inbox_t *self);

//  The connection is ready for requests: sync from the last seq.
void zim_sdk_inbox_connected (zim_sdk_inbox_t *self);

//  The connection is gone: the sync in flight will get no answer; no sync
//  goes out until zim_sdk_inbox_connected.
void zim_sdk_inbox_disconnected (zim_sdk_inbox_t *self);

//  True if rid is the inbox's own sync in flight (its answer goes to
//  zim_sdk_inbox_page or _failed).
bool zim_sdk_inbox_owns (zim_sdk_inbox_t *self, uint64_t rid);

//  The answer to the inbox's sync: n messages, oldest first, and whether
//  the server has more.
void zim_sdk_inbox_page (zim_sdk_inbox_t *self, const zim_client_msg_t *msgs, size_t n, bool more);

//  The inbox's sync was answered with an error: it is tried again later.
void zim_sdk_inbox_failed (zim_sdk_inbox_t *self);

//  A live message (raw: its whole encoded frame, kept if it must wait).
void zim_sdk_inbox_live (zim_sdk_inbox_t *self, const void *raw, size_t len,
                         const zim_client_msg_t *msg);

//  The seq of one of the user's own sends, from its ack: this connection
//  gets no message for it, yet it takes a place in the order.
void zim_sdk_inbox_own (zim_sdk_inbox_t *self, uint64_t seq);

//  Selftest.
void zim_sdk_inbox_test (bool verbose);

#endif
