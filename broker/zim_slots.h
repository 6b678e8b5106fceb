/*  zim_slots.h: a table of requests in flight, indexed by request id, for
    the broker's parts that wait for answers (zim_gfan, zim_notify). An
    answer finds its request at once (the id's low bits are its slot), the
    table bounds how many wait, and each request keeps where it came from.

    A part's slot type starts with a zim_slot_t (its first member, head)
    and adds its own fields; the table hands out pointers to it.
*/
#ifndef ZIM_SLOTS_H_INCLUDED
#define ZIM_SLOTS_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  What every slot starts with.
typedef struct {
    int stage;         //  where its request is; 0: the slot is free
    uint64_t req;      //  its request id (the table's tag bit set)
    uint64_t since_us; //  when the stage began (monotonic)
    uint8_t gw[256];   //  routing id of the gateway that asked
    size_t gw_len;     //  its length
    uint64_t conn;     //  the asking connection
} zim_slot_t;

typedef struct _zim_slots_t zim_slots_t;

//  A table of n slots of slot_size bytes each (a zim_slot_t first), all
//  free; request ids carry tag and never a bit of reserved. Caller owns
//  return value.
zim_slots_t *zim_slots_new (size_t n, size_t slot_size, uint64_t tag, uint64_t reserved);
void zim_slots_destroy (zim_slots_t **self_p);

//  The free slot of the next request id for gw's connection conn, its
//  head filled (stage 0 until the caller sets it; the rest of the slot is
//  as its last request left it); NULL when that slot is busy or the
//  routing id is too long.
zim_slot_t *zim_slots_take (zim_slots_t *self, zframe_t *gw, uint64_t conn);

//  Frees slot.
void zim_slots_free (zim_slots_t *self, zim_slot_t *slot);

//  The slot of request req at stage (any stage when 0), or NULL.
zim_slot_t *zim_slots_find (zim_slots_t *self, uint64_t req, int stage);

//  Slot i of the table (0 <= i < its size), busy or not.
zim_slot_t *zim_slots_at (zim_slots_t *self, size_t i);

//  How many slots the table has; how many are busy.
size_t zim_slots_size (zim_slots_t *self);
size_t zim_slots_busy (zim_slots_t *self);

//  Self test of this class.
void zim_slots_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
