/*  zim_slots.c: a table of requests in flight (see zim_slots.h).
 */
#include "broker/zim_slots.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <string.h>

struct _zim_slots_t {
    char *slots;       //  n slots of size bytes
    size_t n;          //  how many
    size_t size;       //  bytes of one
    size_t busy;       //  slots in use
    uint64_t tag;      //  the bit every request id of this table has
    uint64_t reserved; //  bits no request id has (other tables' tags)
    uint64_t next;     //  request id counter (without the tag)
};

zim_slots_t *zim_slots_new (size_t n, size_t slot_size, uint64_t tag, uint64_t reserved)
{
    assert (n > 0 && slot_size >= sizeof (zim_slot_t));
    zim_slots_t *self = zim_calloc (1, sizeof *self);
    self->slots = zim_calloc (n, slot_size);
    self->n = n;
    self->size = slot_size;
    self->tag = tag;
    self->reserved = reserved | tag;
    return self;
}

void zim_slots_destroy (zim_slots_t **self_p)
{
    zim_slots_t *self = *self_p;
    if (!self)
        return;
    free (self->slots);
    free (self);
    *self_p = NULL;
}

zim_slot_t *zim_slots_at (zim_slots_t *self, size_t i)
{
    assert (i < self->n);
    return (zim_slot_t *)(self->slots + i * self->size);
}

zim_slot_t *zim_slots_take (zim_slots_t *self, zframe_t *gw, uint64_t conn)
{
    uint64_t req = ++self->next & ~self->reserved;
    zim_slot_t *slot = zim_slots_at (self, req % self->n);
    if (slot->stage != 0 || zframe_size (gw) > sizeof slot->gw)
        return NULL;
    slot->req = req | self->tag;
    slot->since_us = zim_mono_us ();
    slot->gw_len = zframe_size (gw);
    memcpy (slot->gw, zframe_data (gw), slot->gw_len);
    slot->conn = conn;
    self->busy++;
    return slot;
}

void zim_slots_free (zim_slots_t *self, zim_slot_t *slot)
{
    assert (slot->stage != 0);
    slot->stage = 0;
    self->busy--;
}

zim_slot_t *zim_slots_find (zim_slots_t *self, uint64_t req, int stage)
{
    zim_slot_t *slot = zim_slots_at (self, (req & ~self->tag) % self->n);
    if (slot->stage == 0 || slot->req != req || (stage && slot->stage != stage))
        return NULL;
    return slot;
}

size_t zim_slots_size (zim_slots_t *self)
{
    return self->n;
}

size_t zim_slots_busy (zim_slots_t *self)
{
    return self->busy;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_slots_test (bool verbose)
{
    typedef struct {
        zim_slot_t head;
        int mine;
    } t_slot_t;
    uint64_t tag = (uint64_t)1 << 62, other = (uint64_t)1 << 63;
    zim_slots_t *self = zim_slots_new (4, sizeof (t_slot_t), tag, other);
    zframe_t *gw = zframe_new ("gw-1", 4);
    //  Ids carry the tag, never the reserved bit; found by id and stage.
    t_slot_t *a = (t_slot_t *)zim_slots_take (self, gw, 7);
    assert (a && (a->head.req & tag) && !(a->head.req & other) && a->head.conn == 7);
    assert (a->head.gw_len == 4 && memcmp (a->head.gw, "gw-1", 4) == 0);
    a->head.stage = 2;
    a->mine = 5;
    assert (zim_slots_find (self, a->head.req, 2) == &a->head);
    assert (zim_slots_find (self, a->head.req, 0) == &a->head);
    assert (zim_slots_find (self, a->head.req, 1) == NULL);
    assert (zim_slots_find (self, a->head.req + 1, 2) == NULL);
    assert (zim_slots_busy (self) == 1);
    //  Four ids on: the same slot, busy: refused; once free, taken again.
    for (int i = 0; i < 3; i++) {
        zim_slot_t *s = zim_slots_take (self, gw, 1);
        assert (s);
        s->stage = 1;
    }
    assert (zim_slots_take (self, gw, 1) == NULL);
    zim_slots_free (self, &a->head);
    assert (zim_slots_find (self, a->head.req, 0) == NULL);
    for (size_t i = 0; i < zim_slots_size (self); i++)
        if (zim_slots_at (self, i)->stage)
            zim_slots_free (self, zim_slots_at (self, i));
    assert (zim_slots_busy (self) == 0);
    //  A routing id longer than a slot holds: refused.
    char big[300];
    memset (big, 'g', sizeof big);
    zframe_t *long_gw = zframe_new (big, sizeof big);
    assert (zim_slots_take (self, long_gw, 1) == NULL);
    zframe_destroy (&long_gw);
    zframe_destroy (&gw);
    zim_slots_destroy (&self);
    if (verbose)
        zsys_info ("slots: ids, stages, a full slot, long routing ids");
}
