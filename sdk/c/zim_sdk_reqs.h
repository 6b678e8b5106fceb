/*  zim_sdk_reqs.h: the C SDK's request ids, private to libzimclient. Every
    sync and history request carries a rid; the application's requests
    (zim_client_sync, zim_client_history) are remembered until their page
    or error arrives, so that a connection lost before the answer fails
    each of them once, and an answer that is not ours is told apart.
*/
#ifndef ZIM_SDK_REQS_H_INCLUDED
#define ZIM_SDK_REQS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _zim_sdk_reqs_t zim_sdk_reqs_t;

//  Creates an empty set; rids start at 1.
zim_sdk_reqs_t *zim_sdk_reqs_new (void);

//  Destroys the set.
void zim_sdk_reqs_destroy (zim_sdk_reqs_t **self_p);

//  A fresh rid, larger than every rid before it (not remembered).
uint64_t zim_sdk_reqs_rid (zim_sdk_reqs_t *self);

//  Remembers rid until zim_sdk_reqs_remove or _take.
void zim_sdk_reqs_add (zim_sdk_reqs_t *self, uint64_t rid);

//  Forgets rid. @return true if it was remembered
bool zim_sdk_reqs_remove (zim_sdk_reqs_t *self, uint64_t rid);

//  Forgets one remembered rid below mark (a zim_sdk_reqs_rid value taken
//  before), so that requests made meanwhile are left alone.
//  @return true and *rid, or false if none is left
bool zim_sdk_reqs_take (zim_sdk_reqs_t *self, uint64_t mark, uint64_t *rid);

//  Remembered rids.
size_t zim_sdk_reqs_size (zim_sdk_reqs_t *self);

//  Selftest.
void zim_sdk_reqs_test (bool verbose);

#endif
