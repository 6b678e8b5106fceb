/*  zim_sdk_outq.c: the output queue, a list of chunks. One chunk that the
    queue has emptied is kept for reuse, so a steady trickle of frames does
    not allocate per write.
*/
#include "config.h"
#include "sdk/c/zim_sdk_outq.h"
#include "msg/zim_util.h"

#include <stdlib.h>
#include <string.h>

#define S_CHUNK_MIN 4096  //  first allocation of a chunk's payload
#define S_SPARE_MAX 65536 //  a larger chunk is freed, not kept

//  One block of the queue: whole frames, written as one message.
typedef struct s_chunk {
    struct s_chunk *next; //  next chunk in the queue
    size_t size;          //  payload bytes used
    size_t alloc;         //  payload bytes allocated
    unsigned char *buf;   //  headroom bytes, then the payload
} s_chunk_t;

struct _zim_sdk_outq_t {
    size_t headroom;        //  bytes before each payload
    size_t max_message;     //  payload bytes per chunk
    size_t max_queue;       //  payload bytes queued, unless forced
    s_chunk_t *head, *tail; //  the queue
    s_chunk_t *spare;       //  one free chunk kept for reuse
    size_t queued;          //  payload bytes in the queue
};

zim_sdk_outq_t *zim_sdk_outq_new (size_t headroom, size_t max_message, size_t max_queue)
{
    zim_sdk_outq_t *self = zim_calloc (1, sizeof *self);
    self->headroom = headroom;
    self->max_message = max_message;
    self->max_queue = max_queue;
    return self;
}

//  Frees one chunk.
static void s_chunk_free (s_chunk_t *c)
{
    free (c->buf);
    free (c);
}

void zim_sdk_outq_destroy (zim_sdk_outq_t **self_p)
{
    zim_sdk_outq_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    zim_sdk_outq_clear (self);
    if (self->spare)
        s_chunk_free (self->spare);
    free (self);
}

bool zim_sdk_outq_fits (zim_sdk_outq_t *self, size_t len)
{
    return len <= self->max_message && self->queued + len <= self->max_queue;
}

int zim_sdk_outq_push (zim_sdk_outq_t *self, const void *frame, size_t len, bool force)
{
    if (len > self->max_message)
        return -1;
    if (!force && self->queued + len > self->max_queue)
        return -1;
    s_chunk_t *c = self->tail;
    if (!c || c->size + len > self->max_message) {
        c = self->spare;
        if (c)
            self->spare = NULL;
        else {
            c = zim_calloc (1, sizeof *c);
            c->alloc = S_CHUNK_MIN;
            c->buf = zim_malloc (self->headroom + c->alloc);
        }
        c->size = 0;
        c->next = NULL;
        if (self->tail)
            self->tail->next = c;
        else
            self->head = c;
        self->tail = c;
    }
    if (c->size + len > c->alloc) {
        size_t alloc = c->alloc;
        while (alloc < c->size + len)
            alloc *= 2;
        if (alloc > self->max_message)
            alloc = self->max_message;
        c->buf = zim_realloc (c->buf, self->headroom + alloc);
        c->alloc = alloc;
    }
    memcpy (c->buf + self->headroom + c->size, frame, len);
    c->size += len;
    self->queued += len;
    return 0;
}

unsigned char *zim_sdk_outq_front (zim_sdk_outq_t *self, size_t *len)
{
    if (!self->head)
        return NULL;
    *len = self->head->size;
    return self->head->buf + self->headroom;
}

void zim_sdk_outq_pop (zim_sdk_outq_t *self)
{
    s_chunk_t *c = self->head;
    if (!c)
        return;
    self->head = c->next;
    if (!self->head)
        self->tail = NULL;
    self->queued -= c->size;
    if (!self->spare && c->alloc <= S_SPARE_MAX)
        self->spare = c;
    else
        s_chunk_free (c);
}

void zim_sdk_outq_clear (zim_sdk_outq_t *self)
{
    while (self->head)
        zim_sdk_outq_pop (self);
}

size_t zim_sdk_outq_size (zim_sdk_outq_t *self)
{
    return self->queued;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>

void zim_sdk_outq_test (bool verbose)
{
    (void)verbose;
    //  Frames pack into chunks of at most max_message bytes, and max_queue
    //  bounds what is waiting unless forced.
    zim_sdk_outq_t *q = zim_sdk_outq_new (16, 1000, 2000);
    char frame[400];
    memset (frame, 0x90, sizeof frame);
    size_t len = 0;
    assert (zim_sdk_outq_front (q, &len) == NULL);
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0);
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0);
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0); //  800 + 400 > 1000: second chunk
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0);
    assert (zim_sdk_outq_fits (q, 400) && !zim_sdk_outq_fits (q, 401));
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0);
    assert (zim_sdk_outq_push (q, frame, 400, false) == -1); //  queue full
    assert (zim_sdk_outq_push (q, frame, 400, true) == 0);   //  unless forced
    char big[1001];
    memset (big, 0x91, sizeof big);
    assert (zim_sdk_outq_push (q, big, sizeof big, true) == -1); //  over max_message
    assert (zim_sdk_outq_size (q) == 2400);
    //  chunks come out in order: 800, 800, 800 (the sixth frame)
    unsigned char *p = zim_sdk_outq_front (q, &len);
    assert (p && len == 800 && p[0] == 0x90 && p[799] == 0x90);
    memset (p - 16, 0, 16); //  the headroom is ours to write
    zim_sdk_outq_pop (q);
    assert (zim_sdk_outq_front (q, &len) && len == 800 && zim_sdk_outq_size (q) == 1600);
    zim_sdk_outq_pop (q);
    //  a frame that fits joins the last chunk; the spare one starts the next
    assert (zim_sdk_outq_push (q, "\xc0", 1, false) == 0);
    p = zim_sdk_outq_front (q, &len);
    assert (p && len == 801 && p[800] == 0xc0);
    assert (zim_sdk_outq_push (q, frame, 400, false) == 0);
    zim_sdk_outq_pop (q);
    p = zim_sdk_outq_front (q, &len);
    assert (p && len == 400 && zim_sdk_outq_size (q) == 400);
    zim_sdk_outq_clear (q);
    assert (zim_sdk_outq_size (q) == 0 && zim_sdk_outq_front (q, &len) == NULL);
    zim_sdk_outq_pop (q); //  on an empty queue: nothing
    zim_sdk_outq_destroy (&q);
    assert (q == NULL);
    zim_sdk_outq_destroy (&q);
}
