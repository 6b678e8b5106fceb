/*  zim_sdk_chans.h: a C SDK client's channels (docs/PROTOCOL.md, "Groups
    and channels"), private to libzimclient. Channel messages are not in the
    inbox, so the reader keeps its own position in each channel (the highest
    gseq it read); this class keeps those positions, and the csync requests
    in flight with the channel each asked for, so that a page (empty or
    reset included) is told apart and moves the right position.
*/
#ifndef ZIM_SDK_CHANS_H_INCLUDED
#define ZIM_SDK_CHANS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _zim_sdk_chans_t zim_sdk_chans_t;

//  Creates an empty set. Caller owns return value.
zim_sdk_chans_t *zim_sdk_chans_new (void);

//  Destroys the set.
void zim_sdk_chans_destroy (zim_sdk_chans_t **self_p);

//  The position in group: the highest gseq seen, 0 if none.
uint64_t zim_sdk_chans_pos (zim_sdk_chans_t *self, const char *group);

//  The reader has read group up to gseq: its position becomes the larger.
void zim_sdk_chans_seen (zim_sdk_chans_t *self, const char *group, uint64_t gseq);

//  A csync for group went out with rid.
void zim_sdk_chans_ask (zim_sdk_chans_t *self, uint64_t rid, const char *group);

//  Forgets the csync rid. @return the group it asked for (valid until the
//  next call), or NULL if rid was not a csync in flight
const char *zim_sdk_chans_answer (zim_sdk_chans_t *self, uint64_t rid);

//  The connection is gone: no csync in flight will be answered.
void zim_sdk_chans_disconnected (zim_sdk_chans_t *self);

//  Selftest.
void zim_sdk_chans_test (bool verbose);

#endif
