/*  zim_timers.c: an intrusive FIFO of deadlines (see zim_timers.h).
 */
#include "gateway/zim_timers.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdlib.h>

struct _zim_timers_t {
    zim_timer_t *head; //  the oldest (first due)
    zim_timer_t *tail; //  the newest
    size_t size;       //  how many are queued
};

zim_timers_t *zim_timers_new (void)
{
    return (zim_timers_t *)zim_calloc (1, sizeof (zim_timers_t));
}

void zim_timers_destroy (zim_timers_t **self_p)
{
    zim_timers_t *self = *self_p;
    if (!self)
        return;
    while (self->head)
        zim_timer_stop (self->head);
    free (self);
    *self_p = NULL;
}

void zim_timer_stop (zim_timer_t *timer)
{
    zim_timers_t *self = timer->queue;
    if (!self)
        return;
    if (timer->prev)
        timer->prev->next = timer->next;
    else
        self->head = timer->next;
    if (timer->next)
        timer->next->prev = timer->prev;
    else
        self->tail = timer->prev;
    timer->prev = timer->next = NULL;
    timer->queue = NULL;
    self->size--;
}

void zim_timers_start (zim_timers_t *self, zim_timer_t *timer, int64_t due_ms, void *arg)
{
    zim_timer_stop (timer);
    timer->due_ms = due_ms;
    timer->arg = arg;
    timer->queue = self;
    timer->prev = self->tail;
    timer->next = NULL;
    if (self->tail)
        self->tail->next = timer;
    else
        self->head = timer;
    self->tail = timer;
    self->size++;
}

bool zim_timer_active (const zim_timer_t *timer)
{
    return timer->queue != NULL;
}

zim_timer_t *zim_timers_expired (zim_timers_t *self, int64_t now_ms)
{
    return self->head && self->head->due_ms <= now_ms ? self->head : NULL;
}

int64_t zim_timers_next_due (const zim_timers_t *self)
{
    return self->head ? self->head->due_ms : INT64_MAX;
}

size_t zim_timers_size (const zim_timers_t *self)
{
    return self->size;
}

void zim_timers_test (bool verbose)
{
    (void)verbose;
    zim_timers_t *q = zim_timers_new ();
    zim_timer_t t[4] = {{0}};
    int owners[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++)
        zim_timers_start (q, &t[i], 100 + i * 10, &owners[i]);
    assert (zim_timers_size (q) == 4 && zim_timers_next_due (q) == 100);
    assert (zim_timers_expired (q, 99) == NULL);
    assert (zim_timers_expired (q, 100) == &t[0] && t[0].arg == &owners[0]);
    //  Restarting moves to the tail; stopping unlinks from anywhere.
    zim_timers_start (q, &t[0], 200, &owners[0]);
    zim_timer_stop (&t[2]);
    zim_timer_stop (&t[2]); //  twice is harmless
    assert (!zim_timer_active (&t[2]) && zim_timer_active (&t[1]));
    assert (zim_timers_size (q) == 3);
    //  What expires comes out in due order: 1, 3, then 0.
    int order[3], n = 0;
    zim_timer_t *e;
    while ((e = zim_timers_expired (q, 1000))) {
        order[n++] = *(int *)e->arg;
        zim_timer_stop (e);
    }
    assert (n == 3 && order[0] == 1 && order[1] == 3 && order[2] == 0);
    assert (zim_timers_size (q) == 0 && zim_timers_expired (q, 1000) == NULL);
    assert (zim_timers_next_due (q) == INT64_MAX);
    //  Destroying stops what is left.
    zim_timers_start (q, &t[1], 5, NULL);
    zim_timers_destroy (&q);
    assert (!zim_timer_active (&t[1]) && q == NULL);
}
