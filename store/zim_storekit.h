/*  zim_storekit.h: a store test kit. A real store actor on a directory,
    started as a node would start it, and a DEALER that speaks to it as a
    broker does: APPENDs, READs, SETCURSORs, answers checked as they come.
    The store's selftest (zim_store.c) drives its cases through it.
*/
#ifndef ZIM_STOREKIT_H_INCLUDED
#define ZIM_STOREKIT_H_INCLUDED

#include "msg/zim_msg.h"

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Items zim_storekit_page copies out at most (the rest land on the last).
#define ZIM_STOREKIT_ITEMS 1000

typedef struct _zim_storekit_t zim_storekit_t;

//  What the kit keeps of one PAGE item.
typedef struct {
    uint64_t seq, id; //  the inbox seq and the message id
    char body[16];    //  the body when it is a short msgpack string
} zim_storekit_item_t;

//  A message to append: a string body (text), or a bin of big zero bytes.
typedef struct {
    uint64_t id, ts;                    //  message id and timestamp (ms)
    const char *from, *to, *cid, *text; //  app "demo"
    size_t big;                         //  not 0: the body is a bin this long
} zim_storekit_msg_t;

//  Starts a store on dir with settings (name, value pairs, NULL-terminated;
//  NULL: none), bound on tcp://127.0.0.1:*, and connects a DEALER to it.
//  Caller owns return value.
zim_storekit_t *zim_storekit_new (const char *dir, const char *const *settings);

//  Stops the store ($TERM: it answers what it received, syncs) and closes
//  the DEALER.
void zim_storekit_destroy (zim_storekit_t **self_p);

//  The DEALER (borrowed), to send the store anything by hand.
zsock_t *zim_storekit_peer (zim_storekit_t *self);

//  One counter or gauge of the store's STATS.
uint64_t zim_storekit_stat (zim_storekit_t *self, const char *name);

//  One counter or gauge of any store actor's STATS (one started by hand).
uint64_t zim_storekit_actor_stat (zactor_t *actor, const char *name);

//  Sends the message encoded in wr, then empties wr.
void zim_storekit_send (zim_storekit_t *self, zim_wr_t *wr);

//  Sends one APPEND (request id req) of msgs[0..n), all with sides.
void zim_storekit_append (zim_storekit_t *self, uint64_t req, const zim_storekit_msg_t *msgs,
                          size_t n, uint64_t sides);

//  Receives the APPENDED for req with n results into res (asserts both).
void zim_storekit_appended (zim_storekit_t *self, uint64_t req, zim_appended_item_t *res, size_t n);

//  APPENDs one message and returns the store's result.
zim_appended_item_t zim_storekit_one (zim_storekit_t *self, zim_storekit_msg_t msg, uint64_t sides);

//  Sends a READ (req 9, app "demo", device "phone").
void zim_storekit_ask (zim_storekit_t *self, uint64_t mode, const char *uid, int64_t from,
                       uint64_t limit, const char *peer);

//  Receives a PAGE: returns the item count (copied into out), sets *more
//  and *status; *size is the PAGE's encoded length.
size_t zim_storekit_page (zim_storekit_t *self, zim_storekit_item_t *out, bool *more,
                          int64_t *status, size_t *size);

//  Sends a READ and receives its PAGE (see zim_storekit_page).
size_t zim_storekit_read (zim_storekit_t *self, uint64_t mode, const char *uid, int64_t from,
                          uint64_t limit, const char *peer, zim_storekit_item_t *out, bool *more,
                          int64_t *status, size_t *size);

//  Reads a whole inbox (sync) or conversation (history) page by page with
//  limit, each page at most max_bytes; asserts seqs (ids) follow each
//  other with nothing skipped or repeated. Returns the number of messages.
size_t zim_storekit_read_all (zim_storekit_t *self, uint64_t mode, const char *uid,
                              const char *peer, uint64_t limit, size_t max_bytes,
                              zim_storekit_item_t *got);

//  Selftest: the kit's own round trip on a temporary directory.
void zim_storekit_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
