/*  zim_sdk_sendq.c: unacked sends as a list in send order. Acks come in
    send order, so a lookup by cid nearly always stops at the head.
*/
#include "config.h"
#include "sdk/c/zim_sdk_sendq.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A send awaiting its ack.
typedef struct s_send {
    struct s_send *next, *prev;    //  list in send order
    uint64_t serial;               //  order of addition (zim_sdk_sendq_mark)
    bool inflight;                 //  queued or written on the connection
    uint64_t since_us;             //  when it was queued, if in flight
    char cid[ZIM_CLIENT_CID_SIZE]; //  its client message id
    size_t len;                    //  bytes of frame
    unsigned char frame[];         //  the encoded send frame
} s_send_t;

struct _zim_sdk_sendq_t {
    s_send_t *head, *tail; //  sends in send order
    size_t count;          //  how many
    uint32_t max;          //  the window
    uint64_t serial;       //  serial of the next send
    char cid_prefix[33];   //  prefix of generated cids
    uint64_t cid_counter;  //  suffix of the last generated cid
};

zim_sdk_sendq_t *zim_sdk_sendq_new (uint32_t max_unacked, const char *cid_prefix)
{
    zim_sdk_sendq_t *self = zim_calloc (1, sizeof *self);
    self->max = max_unacked;
    self->serial = 1;
    snprintf (self->cid_prefix, sizeof self->cid_prefix, "%s", cid_prefix);
    return self;
}

//  Unlinks and frees one send.
static void s_remove (zim_sdk_sendq_t *self, s_send_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        self->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        self->tail = p->prev;
    self->count--;
    free (p);
}

void zim_sdk_sendq_destroy (zim_sdk_sendq_t **self_p)
{
    zim_sdk_sendq_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    while (self->head)
        s_remove (self, self->head);
    free (self);
}

void zim_sdk_sendq_new_cid (zim_sdk_sendq_t *self, char *cid)
{
    snprintf (cid, ZIM_CLIENT_CID_SIZE, "%s.%" PRIu64, self->cid_prefix, ++self->cid_counter);
}

bool zim_sdk_sendq_room (zim_sdk_sendq_t *self)
{
    return self->count < self->max;
}

int zim_sdk_sendq_add (zim_sdk_sendq_t *self, const char *cid, const void *frame, size_t len,
                       uint64_t now)
{
    if (self->count >= self->max)
        return -1;
    s_send_t *p = zim_malloc (sizeof *p + len);
    memset (p, 0, sizeof *p);
    snprintf (p->cid, sizeof p->cid, "%s", cid);
    p->serial = self->serial++;
    p->inflight = now != 0;
    p->since_us = now;
    p->len = len;
    memcpy (p->frame, frame, len);
    p->prev = self->tail;
    if (self->tail)
        self->tail->next = p;
    else
        self->head = p;
    self->tail = p;
    self->count++;
    return 0;
}

size_t zim_sdk_sendq_dispatch (zim_sdk_sendq_t *self, uint64_t now, zim_sdk_sendq_write_fn *write,
                               void *arg)
{
    size_t n = 0;
    for (s_send_t *p = self->head; p; p = p->next)
        if (!p->inflight) {
            write (arg, p->frame, p->len);
            p->inflight = true;
            p->since_us = now;
            n++;
        }
    return n;
}

//  The send with this cid, or NULL.
static s_send_t *s_find (zim_sdk_sendq_t *self, zim_str_t cid)
{
    for (s_send_t *p = self->head; p; p = p->next)
        if (zim_str_eq (cid, p->cid))
            return p;
    return NULL;
}

bool zim_sdk_sendq_has (zim_sdk_sendq_t *self, zim_str_t cid)
{
    return s_find (self, cid) != NULL;
}

int zim_sdk_sendq_remove (zim_sdk_sendq_t *self, zim_str_t cid)
{
    s_send_t *p = s_find (self, cid);
    if (!p)
        return -1;
    s_remove (self, p);
    return 0;
}

int zim_sdk_sendq_requeue (zim_sdk_sendq_t *self, zim_str_t cid)
{
    s_send_t *p = s_find (self, cid);
    if (!p)
        return -1;
    p->inflight = false;
    return 0;
}

void zim_sdk_sendq_requeue_all (zim_sdk_sendq_t *self)
{
    for (s_send_t *p = self->head; p; p = p->next)
        p->inflight = false;
}

//  True if p was written before now - age.
static bool s_expired (const s_send_t *p, uint64_t now, uint64_t age)
{
    return p->inflight && now - p->since_us > age;
}

size_t zim_sdk_sendq_expire (zim_sdk_sendq_t *self, uint64_t now, uint64_t age)
{
    size_t n = 0;
    for (s_send_t *p = self->head; p; p = p->next)
        if (s_expired (p, now, age)) {
            p->inflight = false;
            n++;
        }
    return n;
}

uint64_t zim_sdk_sendq_mark (zim_sdk_sendq_t *self)
{
    return self->serial;
}

bool zim_sdk_sendq_take (zim_sdk_sendq_t *self, uint64_t mark, zim_sdk_sendq_which_t which,
                         uint64_t now, uint64_t age, char *cid)
{
    for (s_send_t *p = self->head; p; p = p->next) {
        if (p->serial >= mark)
            continue;
        if ((which == ZIM_SDK_SENDQ_INFLIGHT && !p->inflight) ||
            (which == ZIM_SDK_SENDQ_EXPIRED && !s_expired (p, now, age)))
            continue;
        memcpy (cid, p->cid, sizeof p->cid);
        s_remove (self, p);
        return true;
    }
    return false;
}

size_t zim_sdk_sendq_size (zim_sdk_sendq_t *self)
{
    return self->count;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include "msg/zim_msg.h"
#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  Appends the first byte of each frame written to a string.
static void s_t_write (void *arg, const void *frame, size_t len)
{
    char *out = arg;
    assert (len == 1);
    size_t n = strlen (out);
    out[n] = *(const char *)frame;
    out[n + 1] = 0;
}

void zim_sdk_sendq_test (bool verbose)
{
    (void)verbose;
    zim_sdk_sendq_t *q = zim_sdk_sendq_new (4, "abcdefghijkl");
    char cid[ZIM_CLIENT_CID_SIZE], cid2[ZIM_CLIENT_CID_SIZE];
    zim_sdk_sendq_new_cid (q, cid);
    zim_sdk_sendq_new_cid (q, cid2);
    assert (streq (cid, "abcdefghijkl.1") && streq (cid2, "abcdefghijkl.2"));
    assert (zim_cid_valid (zim_str (cid)));

    //  a: in flight; b, c: waiting; d: in flight; the window is full
    uint64_t mark0 = zim_sdk_sendq_mark (q);
    assert (zim_sdk_sendq_add (q, "a", "a", 1, 100) == 0);
    assert (zim_sdk_sendq_add (q, "b", "b", 1, 0) == 0);
    assert (zim_sdk_sendq_add (q, "c", "c", 1, 0) == 0);
    assert (zim_sdk_sendq_add (q, "d", "d", 1, 900) == 0);
    assert (!zim_sdk_sendq_room (q) && zim_sdk_sendq_add (q, "e", "e", 1, 0) == -1);
    assert (zim_sdk_sendq_size (q) == 4 && zim_sdk_sendq_has (q, zim_str ("c")));
    assert (mark0 == 1);

    //  waiting ones are written in send order
    char out[16] = "";
    assert (zim_sdk_sendq_dispatch (q, 1000, s_t_write, out) == 2 && streq (out, "bc"));
    out[0] = 0;
    assert (zim_sdk_sendq_dispatch (q, 1000, s_t_write, out) == 0);
    //  in flight for longer than 1000 (a since 100): waiting again
    assert (zim_sdk_sendq_expire (q, 1500, 1000) == 1);
    assert (zim_sdk_sendq_dispatch (q, 2000, s_t_write, out) == 1 && streq (out, "a"));
    //  a requeued send goes out again; ack (remove) by cid
    assert (zim_sdk_sendq_requeue (q, zim_str ("c")) == 0);
    assert (zim_sdk_sendq_requeue (q, zim_str ("x")) == -1);
    assert (zim_sdk_sendq_remove (q, zim_str ("b")) == 0);
    assert (zim_sdk_sendq_remove (q, zim_str ("b")) == -1);
    out[0] = 0;
    assert (zim_sdk_sendq_dispatch (q, 3000, s_t_write, out) == 1 && streq (out, "c"));

    //  take: the oldest match added before the mark; EXPIRED by age
    //  (now: a since 2000, c since 3000, d since 900)
    assert (
        zim_sdk_sendq_take (q, zim_sdk_sendq_mark (q), ZIM_SDK_SENDQ_EXPIRED, 3500, 2000, cid) &&
        streq (cid, "d"));
    assert (
        !zim_sdk_sendq_take (q, zim_sdk_sendq_mark (q), ZIM_SDK_SENDQ_EXPIRED, 3500, 2000, cid));
    uint64_t mark = zim_sdk_sendq_mark (q);
    assert (zim_sdk_sendq_add (q, "f", "f", 1, 0) == 0); //  added while failing: not taken
    zim_sdk_sendq_requeue_all (q);
    assert (!zim_sdk_sendq_take (q, mark, ZIM_SDK_SENDQ_INFLIGHT, 0, 0, cid));
    assert (zim_sdk_sendq_take (q, mark, ZIM_SDK_SENDQ_ALL, 0, 0, cid) && streq (cid, "a"));
    assert (zim_sdk_sendq_take (q, mark, ZIM_SDK_SENDQ_ALL, 0, 0, cid) && streq (cid, "c"));
    assert (!zim_sdk_sendq_take (q, mark, ZIM_SDK_SENDQ_ALL, 0, 0, cid));
    assert (zim_sdk_sendq_size (q) == 1 && zim_sdk_sendq_has (q, zim_str ("f")));
    zim_sdk_sendq_destroy (&q);
    assert (q == NULL);
}
