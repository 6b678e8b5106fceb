/*  zim_sdk_chans.c: channel positions and csyncs in flight (see
    zim_sdk_chans.h). A user reads a handful of channels and has at most
    max_reads_inflight (4) reads unanswered: arrays searched linearly.
*/
#include "config.h"
#include "sdk/c/zim_sdk_chans.h"
#include "sdk/c/zim_client.h"
#include "msg/zim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One channel's position.
typedef struct {
    char group[ZIM_CLIENT_ID_MAX + 1]; //  the channel
    uint64_t pos;                      //  the highest gseq read
} s_chan_t;

//  One csync in flight.
typedef struct {
    uint64_t rid;                      //  its request id
    char group[ZIM_CLIENT_ID_MAX + 1]; //  the channel it asked for
} s_ask_t;

struct _zim_sdk_chans_t {
    s_chan_t *chans;                      //  positions
    size_t nchans, chans_alloc;           //  how many, room for
    s_ask_t *asks;                        //  csyncs in flight
    size_t nasks, asks_alloc;             //  how many, room for
    char answered[ZIM_CLIENT_ID_MAX + 1]; //  the group of the last answer
};

zim_sdk_chans_t *zim_sdk_chans_new (void)
{
    return (zim_sdk_chans_t *)zim_calloc (1, sizeof (zim_sdk_chans_t));
}

void zim_sdk_chans_destroy (zim_sdk_chans_t **self_p)
{
    zim_sdk_chans_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    free (self->chans);
    free (self->asks);
    free (self);
}

//  The channel's entry, or NULL.
static s_chan_t *s_find (zim_sdk_chans_t *self, const char *group)
{
    for (size_t i = 0; i < self->nchans; i++)
        if (strcmp (self->chans[i].group, group) == 0)
            return &self->chans[i];
    return NULL;
}

uint64_t zim_sdk_chans_pos (zim_sdk_chans_t *self, const char *group)
{
    s_chan_t *c = group ? s_find (self, group) : NULL;
    return c ? c->pos : 0;
}

void zim_sdk_chans_seen (zim_sdk_chans_t *self, const char *group, uint64_t gseq)
{
    if (!group || strlen (group) > ZIM_CLIENT_ID_MAX)
        return;
    s_chan_t *c = s_find (self, group);
    if (!c) {
        if (self->nchans == self->chans_alloc) {
            self->chans_alloc = self->chans_alloc ? 2 * self->chans_alloc : 4;
            self->chans = zim_realloc (self->chans, self->chans_alloc * sizeof *self->chans);
        }
        c = &self->chans[self->nchans++];
        strcpy (c->group, group);
        c->pos = 0;
    }
    if (gseq > c->pos)
        c->pos = gseq;
}

void zim_sdk_chans_ask (zim_sdk_chans_t *self, uint64_t rid, const char *group)
{
    if (strlen (group) > ZIM_CLIENT_ID_MAX)
        return;
    if (self->nasks == self->asks_alloc) {
        self->asks_alloc = self->asks_alloc ? 2 * self->asks_alloc : 4;
        self->asks = zim_realloc (self->asks, self->asks_alloc * sizeof *self->asks);
    }
    self->asks[self->nasks].rid = rid;
    strcpy (self->asks[self->nasks].group, group);
    self->nasks++;
}

const char *zim_sdk_chans_answer (zim_sdk_chans_t *self, uint64_t rid)
{
    for (size_t i = 0; i < self->nasks; i++)
        if (self->asks[i].rid == rid) {
            strcpy (self->answered, self->asks[i].group);
            self->asks[i] = self->asks[--self->nasks];
            return self->answered;
        }
    return NULL;
}

void zim_sdk_chans_disconnected (zim_sdk_chans_t *self)
{
    self->nasks = 0;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>

void zim_sdk_chans_test (bool verbose)
{
    (void)verbose;
    zim_sdk_chans_t *self = zim_sdk_chans_new ();
    assert (zim_sdk_chans_pos (self, "news") == 0 && zim_sdk_chans_pos (self, NULL) == 0);
    //  positions only grow, per channel
    zim_sdk_chans_seen (self, "news", 5);
    zim_sdk_chans_seen (self, "news", 3);
    zim_sdk_chans_seen (self, "sport", 9);
    for (int i = 0; i < 10; i++) {
        char g[16];
        snprintf (g, sizeof g, "c%d", i);
        zim_sdk_chans_seen (self, g, (uint64_t)i);
    }
    assert (zim_sdk_chans_pos (self, "news") == 5 && zim_sdk_chans_pos (self, "sport") == 9);
    assert (zim_sdk_chans_pos (self, "c7") == 7 && zim_sdk_chans_pos (self, "c10") == 0);
    //  an id over 64 bytes is never a channel
    char big[80];
    memset (big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    zim_sdk_chans_seen (self, big, 1);
    zim_sdk_chans_ask (self, 1, big);
    assert (zim_sdk_chans_pos (self, big) == 0 && zim_sdk_chans_answer (self, 1) == NULL);
    //  csyncs in flight: each answered once, with its channel
    for (uint64_t rid = 1; rid <= 6; rid++)
        zim_sdk_chans_ask (self, rid, rid % 2 ? "news" : "sport");
    const char *g = zim_sdk_chans_answer (self, 4);
    assert (g && strcmp (g, "sport") == 0 && zim_sdk_chans_answer (self, 4) == NULL);
    g = zim_sdk_chans_answer (self, 5);
    assert (g && strcmp (g, "news") == 0);
    zim_sdk_chans_disconnected (self);
    assert (zim_sdk_chans_answer (self, 1) == NULL && zim_sdk_chans_answer (self, 6) == NULL);
    assert (zim_sdk_chans_pos (self, "news") == 5); //  positions survive a reconnect
    zim_sdk_chans_destroy (&self);
    zim_sdk_chans_destroy (&self);
    assert (self == NULL);
}
