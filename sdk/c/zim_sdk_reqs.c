/*  zim_sdk_reqs.c: request ids. A handful are in flight at a time: an
    array searched from the end is all it takes.
*/
#include "config.h"
#include "sdk/c/zim_sdk_reqs.h"
#include "msg/zim_util.h"

#include <stdlib.h>

struct _zim_sdk_reqs_t {
    uint64_t next;  //  the next rid
    uint64_t *rids; //  remembered rids
    size_t n;       //  how many
    size_t alloc;   //  room for
};

zim_sdk_reqs_t *zim_sdk_reqs_new (void)
{
    zim_sdk_reqs_t *self = zim_calloc (1, sizeof *self);
    self->next = 1;
    return self;
}

void zim_sdk_reqs_destroy (zim_sdk_reqs_t **self_p)
{
    zim_sdk_reqs_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    free (self->rids);
    free (self);
}

uint64_t zim_sdk_reqs_rid (zim_sdk_reqs_t *self)
{
    return self->next++;
}

void zim_sdk_reqs_add (zim_sdk_reqs_t *self, uint64_t rid)
{
    if (self->n == self->alloc) {
        self->alloc = self->alloc ? self->alloc * 2 : 8;
        self->rids = zim_realloc (self->rids, self->alloc * sizeof *self->rids);
    }
    self->rids[self->n++] = rid;
}

bool zim_sdk_reqs_remove (zim_sdk_reqs_t *self, uint64_t rid)
{
    for (size_t i = self->n; i-- > 0;)
        if (self->rids[i] == rid) {
            self->rids[i] = self->rids[--self->n];
            return true;
        }
    return false;
}

bool zim_sdk_reqs_take (zim_sdk_reqs_t *self, uint64_t mark, uint64_t *rid)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->rids[i] < mark) {
            *rid = self->rids[i];
            self->rids[i] = self->rids[--self->n];
            return true;
        }
    return false;
}

size_t zim_sdk_reqs_size (zim_sdk_reqs_t *self)
{
    return self->n;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>

void zim_sdk_reqs_test (bool verbose)
{
    (void)verbose;
    zim_sdk_reqs_t *r = zim_sdk_reqs_new ();
    uint64_t a = zim_sdk_reqs_rid (r), b = zim_sdk_reqs_rid (r), c = zim_sdk_reqs_rid (r);
    assert (a == 1 && b == 2 && c == 3);
    zim_sdk_reqs_add (r, a);
    zim_sdk_reqs_add (r, c);
    assert (!zim_sdk_reqs_remove (r, b) && zim_sdk_reqs_remove (r, a));
    assert (!zim_sdk_reqs_remove (r, a) && zim_sdk_reqs_size (r) == 1);
    //  take: only those below the mark; one made meanwhile stays
    for (int i = 0; i < 20; i++)
        zim_sdk_reqs_add (r, zim_sdk_reqs_rid (r));
    uint64_t mark = zim_sdk_reqs_rid (r), rid = 0;
    zim_sdk_reqs_add (r, zim_sdk_reqs_rid (r));
    int taken = 0;
    while (zim_sdk_reqs_take (r, mark, &rid)) {
        assert (rid < mark);
        taken++;
    }
    assert (taken == 21 && zim_sdk_reqs_size (r) == 1);
    assert (zim_sdk_reqs_remove (r, mark + 1));
    zim_sdk_reqs_destroy (&r);
    assert (r == NULL);
}
