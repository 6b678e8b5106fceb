/*  zim_sdk_inbox.c: inbox order. last_seq is the highest seq handed over
    in order; everything above it that arrived early waits in `held`
    (sorted by seq): live frames copied whole, and the seqs of the user's
    own acks (no frame). One sync of ours is in flight at most; its pages
    are followed while they say `more`. A missing seq gets a grace period
    (a live message may still be on its way) before a sync fetches it; the
    deadline is never pushed back by later arrivals.
*/
#include "config.h"
#include "sdk/c/zim_sdk_inbox.h"
#include "sdk/c/zim_sdk_frame.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <stdlib.h>
#include <string.h>

#define S_HELD_MAX 4096         //  live messages held back
#define S_HELD_BYTES (4u << 20) //  and their bytes
#define S_GAP_GRACE_US 300000   //  wait this long for a missing seq before syncing
#define S_RETRY_US 1000000      //  after a failed sync, wait this long
#define S_SYNC_TIMEOUT_US 15000000 //  a sync unanswered this long is asked again

//  A live message held back until the seqs before it are in, or an own
//  ack's seq (frame NULL) that fills a place in the order.
typedef struct {
    uint64_t seq;         //  its inbox seq
    unsigned char *frame; //  copy of the raw msg frame, or NULL
    size_t len;           //  bytes of frame
} s_held_t;

struct _zim_sdk_inbox_t {
    zim_sdk_inbox_hooks_t hooks; //  what we ask of the owner
    void *arg;                   //  the hooks' argument
    bool ordered;                //  false: deliver as it comes
    int64_t start;               //  sync after this before anything is delivered
    uint32_t limit;              //  messages per sync page
    int64_t last_seq;            //  highest seq delivered in order, -1 none
    bool online;                 //  syncs can go out
    bool gone;                   //  deliver said the owner is gone
    bool syncing;                //  one of our syncs is in flight
    uint64_t sync_timeouts;      //  syncs asked again for want of an answer
    uint64_t sync_rid;           //  its request id
    bool resync;                 //  sync again (held overflow, failed sync)
    uint64_t not_before;         //  no sync before this (mono us), after a failure
    s_held_t *held;              //  held messages, sorted by seq
    size_t nheld, held_alloc;    //  how many, and room for
    size_t held_bytes;           //  their frames' bytes
    zim_sdk_timer_t t_gap;       //  syncs when a gap outlives its grace
};

static void s_settle (zim_sdk_inbox_t *self);

//  Frees every held message.
static void s_held_clear (zim_sdk_inbox_t *self)
{
    for (size_t i = 0; i < self->nheld; i++)
        free (self->held[i].frame);
    self->nheld = 0;
    self->held_bytes = 0;
}

//  Holds a live message (frame) or an own seq (frame NULL) until its turn.
//  On overflow everything held is dropped and a sync will fetch it instead.
static void s_hold (zim_sdk_inbox_t *self, uint64_t seq, const void *frame, size_t len)
{
    for (size_t i = 0; i < self->nheld; i++)
        if (self->held[i].seq == seq)
            return; //  a duplicate
    if (self->nheld >= S_HELD_MAX || self->held_bytes + len > S_HELD_BYTES) {
        s_held_clear (self);
        self->resync = true;
        return;
    }
    if (self->nheld == self->held_alloc) {
        self->held_alloc = self->held_alloc ? self->held_alloc * 2 : 16;
        self->held = zim_realloc (self->held, self->held_alloc * sizeof *self->held);
    }
    size_t i = self->nheld;
    while (i > 0 && self->held[i - 1].seq > seq) {
        self->held[i] = self->held[i - 1];
        i--;
    }
    self->held[i].seq = seq;
    self->held[i].len = len;
    self->held[i].frame = NULL;
    if (frame) {
        self->held[i].frame = zim_malloc (len);
        memcpy (self->held[i].frame, frame, len);
    }
    self->held_bytes += len;
    self->nheld++;
}

//  Hands one message over and moves last_seq; false if the owner is gone.
static bool s_deliver (zim_sdk_inbox_t *self, const zim_client_msg_t *m)
{
    if (m->seq && (int64_t)m->seq > self->last_seq)
        self->last_seq = (int64_t)m->seq;
    if (!self->hooks.deliver (self->arg, m))
        self->gone = true;
    return !self->gone;
}

//  Delivers held messages that are next in order.
static void s_drain (zim_sdk_inbox_t *self)
{
    if (self->last_seq < 0 && self->nheld > 0)
        self->last_seq = (int64_t)self->held[0].seq - 1;
    size_t i = 0;
    while (i < self->nheld && !self->gone) {
        s_held_t *h = &self->held[i];
        if ((int64_t)h->seq <= self->last_seq) {
            i++;
            continue;
        }
        if ((int64_t)h->seq != self->last_seq + 1)
            break;
        if (h->frame) {
            zim_rd_t rd;
            zim_client_msg_t m;
            zim_rd_init (&rd, h->frame, h->len);
            if (zim_sdk_frame_msg (&rd, &m) == 0 && !s_deliver (self, &m))
                return; //  the owner is gone, and we with it
        }
        self->last_seq = (int64_t)h->seq;
        i++;
    }
    if (i > 0) {
        for (size_t j = 0; j < i; j++) {
            self->held_bytes -= self->held[j].len;
            free (self->held[j].frame);
        }
        memmove (self->held, self->held + i, (self->nheld - i) * sizeof *self->held);
        self->nheld -= i;
    }
}

//  Sends one of our syncs, from last_seq (or the configured start).
static void s_sync (zim_sdk_inbox_t *self)
{
    int64_t since = self->last_seq >= 0 ? self->last_seq : self->start;
    self->syncing = true;
    self->resync = false;
    //  While it is out, the gap timer is its deadline: an answer that never
    //  comes must not hold every later live message back for good.
    zim_sdk_timer_stop (&self->t_gap);
    zim_sdk_timer_start_by (&self->t_gap, S_SYNC_TIMEOUT_US);
    self->sync_rid = self->hooks.sync (self->arg, since, self->limit);
}

//  The gap timer: a seq is still missing, or a sync is due again.
static void s_gap_timer (void *arg)
{
    zim_sdk_inbox_t *self = arg;
    if (self->syncing && self->online && !self->gone) {
        //  No answer to our sync: ask again (a late page has another rid
        //  and is ignored).
        self->sync_timeouts++;
        s_sync (self);
        return;
    }
    if (self->online && !self->syncing && !self->gone && (self->nheld > 0 || self->resync))
        s_sync (self);
}

//  After each event: with a gap (or a sync due) and no sync in flight, arm
//  the gap timer, keeping a deadline already set.
static void s_settle (zim_sdk_inbox_t *self)
{
    if (self->gone || !self->ordered || !self->online || self->syncing)
        return;
    if (self->nheld == 0 && !self->resync) {
        zim_sdk_timer_stop (&self->t_gap);
        return;
    }
    uint64_t delay = self->resync ? 0 : S_GAP_GRACE_US;
    uint64_t now = zim_mono_us ();
    if (self->not_before > now + delay)
        delay = self->not_before - now;
    zim_sdk_timer_start_by (&self->t_gap, delay);
}

zim_sdk_inbox_t *zim_sdk_inbox_new (zim_loop_t *loop, bool ordered, int64_t start, uint32_t limit,
                                    const zim_sdk_inbox_hooks_t *hooks, void *arg)
{
    zim_sdk_inbox_t *self = zim_calloc (1, sizeof *self);
    self->hooks = *hooks;
    self->arg = arg;
    self->ordered = ordered;
    self->start = start < 0 ? -1 : start;
    self->limit = limit;
    self->last_seq = -1;
    zim_sdk_timer_init (&self->t_gap, loop, s_gap_timer, self);
    return self;
}

void zim_sdk_inbox_destroy (zim_sdk_inbox_t **self_p)
{
    zim_sdk_inbox_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    zim_sdk_timer_fini (&self->t_gap);
    s_held_clear (self);
    free (self->held);
    free (self);
}

int64_t zim_sdk_inbox_last_seq (zim_sdk_inbox_t *self)
{
    return self->last_seq;
}

void zim_sdk_inbox_connected (zim_sdk_inbox_t *self)
{
    self->online = true;
    self->not_before = 0;
    if (self->ordered && !self->gone)
        s_sync (self);
}

void zim_sdk_inbox_disconnected (zim_sdk_inbox_t *self)
{
    self->online = false;
    self->syncing = false;
    zim_sdk_timer_stop (&self->t_gap);
}

bool zim_sdk_inbox_owns (zim_sdk_inbox_t *self, uint64_t rid)
{
    return self->syncing && rid == self->sync_rid;
}

void zim_sdk_inbox_page (zim_sdk_inbox_t *self, const zim_client_msg_t *msgs, size_t n, bool more)
{
    if (self->gone)
        return;
    for (size_t i = 0; i < n; i++)
        if (self->last_seq < 0 || (int64_t)msgs[i].seq > self->last_seq)
            if (!s_deliver (self, &msgs[i]))
                return;
    self->syncing = false;
    //  follow `more` whatever the page held; an empty page that says more
    //  would ask the same question again, so it ends the round
    if (more && n > 0)
        s_sync (self);
    else {
        s_drain (self);
        if (self->resync && !self->gone)
            s_sync (self);
    }
    s_settle (self);
}

void zim_sdk_inbox_failed (zim_sdk_inbox_t *self)
{
    self->syncing = false;
    self->resync = true;
    self->not_before = zim_mono_us () + S_RETRY_US;
    s_settle (self);
}

void zim_sdk_inbox_live (zim_sdk_inbox_t *self, const void *raw, size_t len,
                         const zim_client_msg_t *msg)
{
    if (self->gone)
        return;
    int64_t seq = (int64_t)msg->seq;
    if (!self->ordered || seq == 0)
        s_deliver (self, msg);
    else if (self->syncing)
        s_hold (self, msg->seq, raw, len);
    else if (self->last_seq < 0 || seq == self->last_seq + 1) {
        if (s_deliver (self, msg))
            s_drain (self);
    } else if (seq > self->last_seq) {
        s_hold (self, msg->seq, raw, len);
        s_drain (self);
    }
    //  else: a duplicate of something delivered; dropped
    s_settle (self);
}

void zim_sdk_inbox_own (zim_sdk_inbox_t *self, uint64_t seq)
{
    if (self->gone || seq == 0)
        return;
    if (!self->ordered) {
        if ((int64_t)seq > self->last_seq)
            self->last_seq = (int64_t)seq;
        return;
    }
    if (self->syncing || (self->last_seq >= 0 && (int64_t)seq > self->last_seq + 1)) {
        s_hold (self, seq, NULL, 0);
        if (!self->syncing)
            s_drain (self);
    } else if ((int64_t)seq > self->last_seq) {
        self->last_seq = (int64_t)seq;
        s_drain (self);
    }
    s_settle (self);
}

//  ---------------------------------------------------------------------
//  Selftest: the inbox driven by hand, its syncs and deliveries recorded.

#include <assert.h>

//  What the hooks saw.
typedef struct {
    uint64_t seqs[64]; //  seqs delivered, in order
    size_t delivered;  //  how many
    int64_t since;     //  since of the last sync, -2 none
    uint32_t limit;    //  and its limit
    int syncs;         //  syncs sent
    uint64_t rid;      //  the last sync's rid
    size_t stop_after; //  deliver says gone after this many (0: never)
} s_t_seen_t;

static bool s_t_deliver (void *arg, const zim_client_msg_t *m)
{
    s_t_seen_t *s = arg;
    if (s->delivered < 64)
        s->seqs[s->delivered] = m->seq;
    s->delivered++;
    return !(s->stop_after && s->delivered >= s->stop_after);
}

static uint64_t s_t_sync (void *arg, int64_t since, uint32_t limit)
{
    s_t_seen_t *s = arg;
    s->since = since;
    s->limit = limit;
    s->syncs++;
    return ++s->rid;
}

//  A page of messages first..last for the last sync.
static void s_t_page (zim_sdk_inbox_t *in, uint64_t first, uint64_t last, bool more)
{
    zim_client_msg_t msgs[64];
    size_t n = 0;
    for (uint64_t seq = first; seq && seq <= last; seq++) {
        memset (&msgs[n], 0, sizeof msgs[n]);
        msgs[n].seq = seq;
        msgs[n].id = 1000 + seq;
        msgs[n].body = "\xc0";
        msgs[n++].body_len = 1;
    }
    zim_sdk_inbox_page (in, msgs, n, more);
}

//  A live message with this seq.
static void s_t_live (zim_sdk_inbox_t *in, uint64_t seq)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_item_t item = {seq, 1000 + seq, 1, zim_str ("alice"), zim_str ("bob"), {"\xc0", 1}};
    zim_cframe_msg (&wr, &item);
    zim_client_msg_t m;
    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_sdk_frame_msg (&rd, &m) == 0 && m.seq == seq);
    zim_sdk_inbox_live (in, wr.data, wr.size, &m);
    zim_wr_free (&wr);
}

//  True if the delivered seqs are exactly first..last.
static bool s_t_delivered (s_t_seen_t *s, uint64_t first, uint64_t last)
{
    if (s->delivered != last - first + 1)
        return false;
    for (uint64_t i = 0; i < s->delivered; i++)
        if (s->seqs[i] != first + i)
            return false;
    return true;
}

void zim_sdk_inbox_test (bool verbose)
{
    (void)verbose;
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);
    s_t_seen_t seen;
    memset (&seen, 0, sizeof seen);
    zim_sdk_inbox_hooks_t hooks = {s_t_deliver, s_t_sync};
    zim_sdk_inbox_t *in = zim_sdk_inbox_new (loop, true, 0, 1000, &hooks, &seen);

    //  In order, once: a sync from the start on connecting; live 4 during
    //  it is held; pages followed while they say more, whatever they hold.
    zim_sdk_inbox_connected (in);
    assert (seen.syncs == 1 && seen.since == 0 && seen.limit == 1000);
    assert (zim_sdk_inbox_owns (in, seen.rid) && !zim_sdk_inbox_owns (in, seen.rid + 1));
    s_t_live (in, 4);
    assert (seen.delivered == 0);
    s_t_page (in, 1, 2, true);
    assert (s_t_delivered (&seen, 1, 2) && seen.syncs == 2 && seen.since == 2);
    s_t_page (in, 2, 4, false); //  2 again, and 4 held: duplicates
    assert (s_t_delivered (&seen, 1, 4) && zim_sdk_inbox_last_seq (in) == 4);
    assert (!zim_sdk_inbox_owns (in, seen.rid) && !zim_sdk_timer_armed (&in->t_gap));
    //  live 5; 5 again dropped; 7 held until 6, the seq of our own ack
    s_t_live (in, 5);
    s_t_live (in, 5);
    s_t_live (in, 7);
    assert (s_t_delivered (&seen, 1, 5) && in->nheld == 1);
    assert (zim_sdk_timer_armed (&in->t_gap));
    zim_sdk_inbox_own (in, 6);
    assert (seen.delivered == 6 && seen.seqs[5] == 7 && zim_sdk_inbox_last_seq (in) == 7);
    assert (in->nheld == 0 && !zim_sdk_timer_armed (&in->t_gap));

    //  A real gap: 9 without 8. The grace deadline is not pushed back by
    //  later arrivals; when it runs, a sync from 7 fills the gap.
    s_t_live (in, 9);
    uint64_t due = in->t_gap.due_us;
    assert (zim_sdk_timer_armed (&in->t_gap) && seen.syncs == 2);
    s_t_live (in, 10);
    assert (in->t_gap.due_us == due && in->nheld == 2);
    s_gap_timer (in);
    assert (seen.syncs == 3 && seen.since == 7);
    s_t_page (in, 8, 10, false);
    assert (seen.delivered == 9 && seen.seqs[8] == 10 && in->nheld == 0);

    //  A reconnect in the middle of a sync resumes from the last seq
    //  delivered: 11..20 came, then the connection dropped.
    zim_sdk_inbox_disconnected (in);
    zim_sdk_inbox_connected (in);
    assert (seen.syncs == 4 && seen.since == 10);
    s_t_page (in, 11, 20, true);
    assert (seen.syncs == 5 && seen.since == 20);
    zim_sdk_inbox_disconnected (in);
    assert (!zim_sdk_inbox_owns (in, seen.rid));
    zim_sdk_inbox_connected (in);
    assert (seen.syncs == 6 && seen.since == 20);
    //  a page that says more but holds nothing ends the round
    s_t_page (in, 0, 0, true);
    assert (seen.syncs == 6 && !zim_sdk_inbox_owns (in, seen.rid));

    //  A failed sync is tried again after S_RETRY_US, not sooner, even when
    //  a gap shows meanwhile.
    s_t_live (in, 22);
    s_gap_timer (in);
    assert (seen.syncs == 7 && seen.since == 20);
    uint64_t t0 = zim_mono_us ();
    zim_sdk_inbox_failed (in);
    s_t_live (in, 23);
    assert (zim_sdk_timer_armed (&in->t_gap) && in->t_gap.due_us >= t0 + S_RETRY_US);
    s_gap_timer (in);
    assert (seen.syncs == 8 && seen.since == 20);
    s_t_page (in, 21, 23, false);
    assert (zim_sdk_inbox_last_seq (in) == 23 && in->nheld == 0);

    //  Too much held: everything is dropped and a sync fetches it.
    zim_sdk_inbox_own (in, 25); //  24 missing
    for (uint64_t seq = 26; seq < 26 + S_HELD_MAX; seq++)
        s_t_live (in, seq);
    assert (in->nheld < S_HELD_MAX && in->resync && zim_sdk_timer_armed (&in->t_gap));
    s_gap_timer (in);
    assert (seen.syncs == 9 && seen.since == 23 && !in->resync);
    //  ... and that sync's answer never comes: asked again at its
    //  deadline (the timer is armed while it is out); a late answer to the
    //  old one is not ours.
    uint64_t lost = seen.rid;
    assert (in->syncing && zim_sdk_timer_armed (&in->t_gap));
    s_gap_timer (in);
    assert (seen.syncs == 10 && in->sync_timeouts == 1 && seen.since == 23);
    assert (!zim_sdk_inbox_owns (in, lost) && zim_sdk_inbox_owns (in, seen.rid));

    //  An owner gone inside deliver stops the page where it is.
    size_t before = seen.delivered;
    seen.stop_after = before + 2;
    s_t_page (in, 24, 30, true);
    assert (seen.delivered == before + 2 && seen.syncs == 10);
    s_t_live (in, 31);
    assert (seen.delivered == before + 2);
    zim_sdk_inbox_destroy (&in);
    assert (in == NULL);

    //  Unordered: delivered as they come; own seqs raise the last seq.
    memset (&seen, 0, sizeof seen);
    in = zim_sdk_inbox_new (loop, false, -1, 100, &hooks, &seen);
    zim_sdk_inbox_connected (in);
    assert (seen.syncs == 0);
    s_t_live (in, 3);
    s_t_live (in, 2);
    zim_sdk_inbox_own (in, 9);
    assert (seen.delivered == 2 && seen.seqs[1] == 2 && zim_sdk_inbox_last_seq (in) == 9);
    zim_sdk_inbox_destroy (&in);

    //  Starting after the stored cursor (-1) until something is delivered.
    memset (&seen, 0, sizeof seen);
    in = zim_sdk_inbox_new (loop, true, -1, 100, &hooks, &seen);
    zim_sdk_inbox_connected (in);
    assert (seen.since == -1 && seen.limit == 100);
    s_t_page (in, 41, 42, false);
    assert (zim_sdk_inbox_last_seq (in) == 42);
    zim_sdk_inbox_destroy (&in);
    zim_loop_destroy (&loop);
}
