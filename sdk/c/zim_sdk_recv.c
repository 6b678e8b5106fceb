/*  zim_sdk_recv.c: the client class's answers (see zim_sdk_client.h):
    decodes each frame the server sends and hands it to the part of the
    client it belongs to: acks and send errors to the send queue, pages to
    the inbox (auto_sync) or the request that asked, csync pages to the
    channel positions, receipts, the conversation list and groups, rooms,
    pushes and signals to the application's callbacks.
*/
#include "config.h"
#include "sdk/c/zim_sdk_client.h"
#include "sdk/c/zim_sdk_frame.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  auth_ok: the connection is usable.
static void s_on_auth_ok (zim_client_t *self, const zim_sdk_frame_t *f)
{
    zim_sdk_frame_copy (self->uid, sizeof self->uid, f->uid);
    zim_sdk_conn_ready (self->conn);
    self->state = ZIM_CLIENT_AUTHED;
    zim_sdk_inbox_connected (self->inbox); //  its sync goes out first
    zim_sdk_client_queue_waiting (self);
    //  Every room joined before is joined again.
    for (size_t i = 0; i < zim_sdk_rooms_size (self->rooms); i++) {
        bool counts;
        const char *room = zim_sdk_rooms_name (self->rooms, i, &counts);
        uint64_t rid = zim_sdk_reqs_rid (self->reqs);
        zim_sdk_frame_join (&self->wr, room, rid, counts);
        if (zim_sdk_client_queue (self, true) == 0)
            zim_sdk_reqs_add (self->reqs, rid);
    }
    if (!self->cfg.no_ping)
        zim_sdk_timer_start (&self->t_ping, (uint64_t)self->cfg.ping_interval_ms * 1000);
    if (self->cfg.ack_timeout_ms)
        zim_sdk_timer_start (&self->t_ack, (uint64_t)self->cfg.ack_timeout_ms * 250);
    zim_sdk_client_emit_state (self, ZIM_CLIENT_AUTHED, 0);
}

//  ack: a send is stored.
static void s_on_ack (zim_client_t *self, const zim_sdk_frame_t *f)
{
    char cid[ZIM_CLIENT_CID_SIZE];
    if (zim_sdk_frame_copy (cid, sizeof cid, f->cid) || zim_sdk_sendq_remove (self->sendq, f->cid))
        return; //  not ours, or a duplicate ack (a retry raced the first answer)
    self->retry_attempt = 0;
    zim_sdk_inbox_own (self->inbox, f->seq);
    if (!zim_sdk_client_quiet (self) && self->cfg.on_ack) {
        zim_client_ack_t a = {cid, f->id, f->seq, f->ts, f->gseq};
        self->cfg.on_ack (self, &a, self->cfg.arg);
    }
}

//  Retryable server errors: the same send may succeed later.
static bool s_retryable (int64_t code)
{
    return code == ZIM_ERR_RATE_LIMITED || code == ZIM_ERR_INTERNAL ||
           code == ZIM_ERR_UNAVAILABLE || code == ZIM_ERR_TIMEOUT;
}

//  error: a request failed, or the connection is in trouble.
static void s_on_error (zim_client_t *self, const zim_sdk_frame_t *f)
{
    char text[256], cid[ZIM_CLIENT_CID_SIZE];
    size_t n = f->text.len < sizeof text - 1 ? f->text.len : sizeof text - 1;
    memcpy (text, f->text.ptr ? f->text.ptr : "", n);
    text[n] = 0;
    int code = (int)f->code;
    if (f->cid.ptr) {
        if (zim_sdk_frame_copy (cid, sizeof cid, f->cid) ||
            !zim_sdk_sendq_has (self->sendq, f->cid))
            return;
        if (self->cfg.retry && s_retryable (code)) {
            zim_sdk_sendq_requeue (self->sendq, f->cid);
            zim_sdk_timer_start (&self->t_retry,
                                 zim_sdk_conn_backoff_us (self->conn, self->retry_attempt++));
            return;
        }
        zim_sdk_sendq_remove (self->sendq, f->cid);
        zim_sdk_client_emit_error (self, code, text, cid, false, 0);
        return;
    }
    if (f->has_rid) {
        zim_sdk_chans_answer (self->chans, f->rid); //  a csync's: no longer in flight
        if (zim_sdk_inbox_owns (self->inbox, f->rid))
            zim_sdk_inbox_failed (self->inbox); //  our own sync: tried again shortly
        else if (zim_sdk_reqs_remove (self->reqs, f->rid))
            zim_sdk_client_emit_error (self, code, text, NULL, true, f->rid);
        return;
    }
    //  A connection-level error. Before auth_ok an auth failure ends the
    //  connection: nothing else can work with this token.
    if (self->state == ZIM_CLIENT_OPEN &&
        (zim_sdk_client_token_refused (code) || code == ZIM_ERR_AUTH_REQUIRED)) {
        zim_sdk_conn_fail (self->conn, code, text);
        zim_sdk_client_emit_error (self, code, text, NULL, false, 0);
        return;
    }
    //  the server may be about to close (4080, 4090, 4002): remember why
    if (code == ZIM_ERR_IDLE_TIMEOUT || code == ZIM_ERR_SLOW_CONSUMER || code == ZIM_ERR_TOO_LARGE)
        zim_sdk_conn_note (self->conn, code, text);
    zim_sdk_client_emit_error (self, code, text, NULL, false, 0);
}

//  page: the answer to our sync (the inbox's) or to the application's
//  sync, history or csync.
static void s_on_page (zim_client_t *self, const zim_sdk_frame_t *f)
{
    int n = zim_sdk_frame_page (f, &self->page_msgs, &self->page_alloc);
    bool own = zim_sdk_inbox_owns (self->inbox, f->rid);
    const char *group = own ? NULL : zim_sdk_chans_answer (self->chans, f->rid);
    if (n < 0) {
        if (own)
            zim_sdk_inbox_failed (self->inbox);
        else
            zim_sdk_reqs_remove (self->reqs, f->rid);
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed page", NULL,
                                   f->has_rid, f->rid);
        return;
    }
    if (own) {
        zim_sdk_inbox_page (self->inbox, self->page_msgs, (size_t)n, f->more);
        return;
    }
    //  a channel's page moves our position in it, reset or not (a reset
    //  page holds the newest messages: the position jumps ahead)
    for (int i = 0; group && i < n; i++)
        zim_sdk_chans_seen (self->chans, group, self->page_msgs[i].gseq);
    if (zim_sdk_reqs_remove (self->reqs, f->rid) && !zim_sdk_client_quiet (self) &&
        self->cfg.on_page) {
        zim_client_page_t p = {f->rid,    f->more, self->page_msgs,
                               (size_t)n, group,   group && f->reset};
        self->cfg.on_page (self, &p, self->cfg.arg);
    }
}

//  receipt: cursors of a conversation moved (ours, or the other side's).
static void s_on_receipt (zim_client_t *self, const zim_sdk_frame_t *f)
{
    char conv[ZIM_CLIENT_CONV_MAX + 1], user[ZIM_CLIENT_ID_MAX + 1];
    if (zim_sdk_frame_copy (conv, sizeof conv, f->conv) ||
        zim_sdk_frame_copy (user, sizeof user, f->user) || !f->conv.ptr || !f->user.ptr) {
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed receipt", NULL, false,
                                   0);
        return;
    }
    if (!zim_sdk_client_quiet (self) && self->cfg.on_receipt) {
        zim_client_receipt_t r = {conv, user, f->has_read, f->read, f->has_delivered, f->delivered};
        self->cfg.on_receipt (self, &r, self->cfg.arg);
    }
}

//  convs: a page of the conversation list.
static void s_on_convs (zim_client_t *self, const zim_sdk_frame_t *f)
{
    int n = zim_sdk_frame_conv_list (f, &self->convs, &self->convs_alloc);
    if (!zim_sdk_reqs_remove (self->reqs, f->rid))
        return; //  not asked for (or asked on a connection that is gone)
    if (n < 0)
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed convs", NULL, true,
                                   f->rid);
    else if (!zim_sdk_client_quiet (self) && self->cfg.on_convs) {
        zim_client_convs_t c = {f->rid, f->more, self->convs, (size_t)n};
        self->cfg.on_convs (self, &c, self->cfg.arg);
    }
}

//  groups: the user's groups and channels, each channel with our position.
static void s_on_groups (zim_client_t *self, const zim_sdk_frame_t *f)
{
    int n = zim_sdk_frame_group_list (f, &self->groups, &self->groups_alloc);
    if (!zim_sdk_reqs_remove (self->reqs, f->rid))
        return;
    if (n < 0) {
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed groups", NULL, true,
                                   f->rid);
        return;
    }
    for (int i = 0; i < n; i++) {
        zim_client_group_t *g = &self->groups[i];
        if (!g->channel)
            continue;
        //  nothing before the join point is ours to read
        zim_sdk_chans_seen (self->chans, g->group, g->joined);
        g->pos = zim_sdk_chans_pos (self->chans, g->group);
    }
    if (!zim_sdk_client_quiet (self) && self->cfg.on_groups) {
        zim_client_groups_t gs = {f->rid, self->groups, (size_t)n};
        self->cfg.on_groups (self, &gs, self->cfg.arg);
    }
}

//  A room frame of a channel's live room "g:GROUP" (its body: the message
//  as a csync page entry has it) to on_channel. The position moves only
//  when nothing was missed (a gap is the app's csync from the position).
//  @return true if it was one and on_channel took it.
static bool s_on_channel (zim_client_t *self, const zim_sdk_frame_t *f)
{
    if (!self->cfg.on_channel || f->room.len < 3 || memcmp (f->room.ptr, "g:", 2) != 0 ||
        !f->body.ptr)
        return false;
    zim_rd_t rd;
    zim_rd_init (&rd, f->body.ptr, f->body.len);
    zim_client_msg_t m;
    if (zim_sdk_frame_msg (&rd, &m) || !m.group[0] || !m.gseq) {
        zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL,
                                   "malformed channel message from the server", NULL, false, 0);
        return true;
    }
    if (m.gseq == zim_sdk_chans_pos (self->chans, m.group) + 1)
        zim_sdk_chans_seen (self->chans, m.group, m.gseq);
    if (!zim_sdk_client_quiet (self))
        self->cfg.on_channel (self, &m, self->cfg.arg);
    return true;
}

//  Rooms, pushes and signals: joined, left, published, count, room, push,
//  signal.
static void s_on_live (zim_client_t *self, const zim_sdk_frame_t *f)
{
    char room[130] = "", from[ZIM_CLIENT_ID_MAX + 1] = "";
    zim_sdk_frame_copy (room, sizeof room, f->room);
    zim_sdk_frame_copy (from, sizeof from, f->from);
    bool joined = zim_str_eq (f->op, "joined"), left = zim_str_eq (f->op, "left");
    if (joined || left || zim_str_eq (f->op, "published")) {
        if (f->has_rid)
            zim_sdk_reqs_remove (self->reqs, f->rid);
        if ((joined || left) && !zim_sdk_client_quiet (self) && self->cfg.on_joined)
            self->cfg.on_joined (self, room, joined ? (int64_t)f->online : -1, self->cfg.arg);
        return;
    }
    if (zim_str_eq (f->op, "count")) {
        if (!zim_sdk_client_quiet (self) && self->cfg.on_count)
            self->cfg.on_count (self, room, f->online, self->cfg.arg);
        return;
    }
    if (zim_str_eq (f->op, "room") && s_on_channel (self, f))
        return;
    zim_client_room_t m = {NULL, f->from.ptr ? from : NULL, f->body.ptr, f->body.len, f->ts};
    zim_client_room_fn *fn = NULL;
    if (zim_str_eq (f->op, "room")) {
        m.room = room;
        fn = self->cfg.on_room;
    } else if (zim_str_eq (f->op, "push"))
        fn = self->cfg.on_push;
    else if (zim_str_eq (f->op, "signal"))
        fn = self->cfg.on_signal;
    if (fn && f->body.ptr && !zim_sdk_client_quiet (self))
        fn (self, &m, self->cfg.arg);
}

int zim_sdk_recv_message (void *arg, const unsigned char *data, size_t len)
{
    zim_client_t *self = arg;
    zim_rd_t rd;
    zim_rd_init (&rd, data, len);
    while (zim_rd_left (&rd) > 0 && !self->dead) {
        const unsigned char *start = rd.pos;
        zim_sdk_frame_t f;
        if (zim_sdk_frame_decode (&rd, &f)) {
            zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL,
                                       "malformed frame from the server", NULL, false, 0);
            return 0;
        }
        if (zim_str_eq (f.op, "msg")) {
            zim_rd_t mr;
            zim_client_msg_t m;
            size_t n = (size_t)(rd.pos - start);
            zim_rd_init (&mr, start, n);
            if (zim_sdk_frame_msg (&mr, &m) == 0)
                zim_sdk_inbox_live (self->inbox, start, n, &m);
            else
                zim_sdk_client_emit_error (self, ZIM_CLIENT_ERR_PROTOCOL, "malformed msg", NULL,
                                           false, 0);
        } else if (zim_str_eq (f.op, "ack"))
            s_on_ack (self, &f);
        else if (zim_str_eq (f.op, "page"))
            s_on_page (self, &f);
        else if (zim_str_eq (f.op, "error"))
            s_on_error (self, &f);
        else if (zim_str_eq (f.op, "auth_ok"))
            s_on_auth_ok (self, &f);
        else if (zim_str_eq (f.op, "pong")) {
            if (!zim_sdk_client_quiet (self) && self->cfg.on_pong)
                self->cfg.on_pong (self, f.t, self->cfg.arg);
        } else if (zim_str_eq (f.op, "receipt"))
            s_on_receipt (self, &f);
        else if (zim_str_eq (f.op, "convs"))
            s_on_convs (self, &f);
        else if (zim_str_eq (f.op, "groups"))
            s_on_groups (self, &f);
        else
            s_on_live (self, &f);
        //  other ops: from a newer server; ignored
    }
    return self->dead ? -1 : 0;
}

//  ---------------------------------------------------------------------
//  Selftest: frames fed by hand to a client that never connects.

#include <assert.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  What the selftest's callbacks saw.
typedef struct {
    int acks, errors, msgs, pages, states, receipts, convs, groups;
    uint64_t last_msg_seq, page_rid, error_rid, page_first_gseq;
    int last_error;
    zim_client_state_t state;
    bool page_reset;                        //  the last page's reset
    char page_group[ZIM_CLIENT_ID_MAX + 1]; //  the last page's group ("" NULL)
    zim_client_receipt_t receipt;           //  the last receipt (strings below)
    char receipt_conv[ZIM_CLIENT_CONV_MAX + 1], receipt_user[ZIM_CLIENT_ID_MAX + 1];
    zim_client_conv_t conv;      //  the first entry of the last convs
    bool convs_more;             //  its more
    zim_client_group_t group[2]; //  the first two of the last groups
    size_t ngroups;              //  how many it had
    int channels;                //  live channel messages
    uint64_t channel_gseq;       //  the last one's gseq
} s_seen_t;

//  Writes an empty page frame answering rid, with reset true on the wire.
static void s_t_reset_page (zim_wr_t *wr, uint64_t rid)
{
    zim_wr_map (wr, 5);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "page");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
    zim_wr_cstr (wr, "more");
    zim_wr_bool (wr, false);
    zim_wr_cstr (wr, "reset");
    zim_wr_bool (wr, true);
    zim_wr_cstr (wr, "msgs");
    zim_wr_array (wr, 0);
}

static void s_t_channel (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    assert (streq (m->group, "news") && streq (m->from, "alice"));
    s->channels++;
    s->channel_gseq = m->gseq;
}

static void s_t_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    (void)c, (void)a;
    ((s_seen_t *)arg)->acks++;
}

static void s_t_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->errors++;
    s->last_error = e->code;
    s->error_rid = e->has_rid ? e->rid : 0;
}

static void s_t_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->msgs++;
    s->last_msg_seq = m->seq;
}

static void s_t_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->pages++;
    s->page_rid = p->rid;
    s->page_reset = p->reset;
    snprintf (s->page_group, sizeof s->page_group, "%s", p->group ? p->group : "");
    s->page_first_gseq = p->count ? p->msgs[0].gseq : 0;
}

static void s_t_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    (void)c, (void)code;
    s_seen_t *s = arg;
    s->states++;
    s->state = state;
}

static void s_t_receipt (zim_client_t *c, const zim_client_receipt_t *r, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->receipts++;
    s->receipt = *r;
    snprintf (s->receipt_conv, sizeof s->receipt_conv, "%s", r->conv);
    snprintf (s->receipt_user, sizeof s->receipt_user, "%s", r->user);
}

static void s_t_convs (zim_client_t *c, const zim_client_convs_t *l, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->convs++;
    s->convs_more = l->more;
    if (l->count)
        s->conv = l->convs[0];
}

static void s_t_groups (zim_client_t *c, const zim_client_groups_t *l, void *arg)
{
    (void)c;
    s_seen_t *s = arg;
    s->groups++;
    s->ngroups = l->count;
    for (size_t i = 0; i < l->count && i < 2; i++)
        s->group[i] = l->groups[i];
}

//  Feeds what the writer holds to the client, as if it had arrived.
static void s_t_feed (zim_client_t *c, zim_wr_t *wr)
{
    zim_sdk_recv_message (c, (const unsigned char *)wr->data, wr->size);
    zim_wr_reset (wr);
}

//  The since of the last sync in c's output queue (-2: none), its rid in
//  *rid; empties the queue.
static int64_t s_t_queued_sync (zim_client_t *c, uint64_t *rid)
{
    int64_t since = -2;
    size_t len;
    unsigned char *chunk;
    while ((chunk = zim_sdk_outq_front (c->outq, &len))) {
        zim_rd_t rd;
        zim_rd_init (&rd, chunk, len);
        while (zim_rd_left (&rd)) {
            zim_cframe_t f;
            const char *why;
            assert (zim_cframe_decode (&rd, &f, &why) == 0);
            if (f.op == ZIM_OP_SYNC) {
                since = f.since;
                *rid = f.rid;
            }
        }
        zim_sdk_outq_pop (c->outq);
    }
    return since;
}

//  What the client queued for the wire, and a reader over it.
static zim_wr_t s_t_out;
static zim_rd_t s_t_rd;

//  The next frame the client queued, decoded into *f (its views valid
//  until the next call). The chunks are taken as one run: several frames
//  written at once share a chunk. Returns 0, or -1 if none is queued.
static int s_t_next_frame (zim_client_t *c, zim_cframe_t *f)
{
    if (!zim_rd_left (&s_t_rd)) {
        zim_wr_reset (&s_t_out);
        size_t len;
        unsigned char *chunk;
        while ((chunk = zim_sdk_outq_front (c->outq, &len))) {
            zim_wr_raw (&s_t_out, chunk, len);
            zim_sdk_outq_pop (c->outq);
        }
        zim_rd_init (&s_t_rd, s_t_out.data, s_t_out.size);
    }
    if (!zim_rd_left (&s_t_rd))
        return -1;
    const char *why;
    assert (zim_cframe_decode (&s_t_rd, f, &why) == 0);
    return 0;
}

//  One conversation entry as the server encodes it.
static void s_t_sconv (zim_wr_t *wr, const char *conv, uint64_t id, uint64_t unread, uint64_t read,
                       uint64_t peer_read)
{
    zim_sconv_t e = {zim_str (conv),
                     id,
                     zim_str ("alice"),
                     1000,
                     {"\xa2hi", 3},
                     7,
                     unread,
                     read,
                     read,
                     peer_read,
                     0,
                     0};
    zim_sconv_pack (wr, &e);
}

void zim_sdk_recv_test (bool verbose)
{
    (void)verbose;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);
    s_seen_t seen;
    memset (&seen, 0, sizeof seen);
    zim_client_config_t cfg = {0};
    cfg.url = "ws://127.0.0.1:1/ws";
    cfg.token = "tok";
    cfg.on_ack = s_t_ack;
    cfg.on_error = s_t_error;
    cfg.on_msg = s_t_msg;
    cfg.on_page = s_t_page;
    cfg.on_state = s_t_state;
    cfg.on_receipt = s_t_receipt;
    cfg.on_convs = s_t_convs;
    cfg.on_groups = s_t_groups;
    cfg.on_channel = s_t_channel;
    cfg.arg = &seen;
    zim_item_t item = {
        1, 250772402995204096ull, 1, zim_str ("alice"), zim_str ("bob"), {"\xa2hi", 3}};
    uint64_t rid = 0;
    zim_client_t *c;

    //  auto_sync: auth_ok sends the inbox's sync before the waiting sends;
    //  its pages go to on_msg, a user sync's to on_page; errors for either
    //  go where they belong.
    cfg.auto_sync = true;
    cfg.has_since = true;
    cfg.since = 0;
    c = zim_client_new (loop, &cfg);
    assert (zim_sdk_conn_cancel (c->conn)); //  the loop runs below: no real attempt
    assert (zim_client_send_text (c, "alice", "own2", "mine", NULL) == 0);
    c->state = ZIM_CLIENT_OPEN;
    zim_cframe_auth_ok (&wr, zim_str ("demo"), zim_str ("bob"), zim_str ("default"));
    s_t_feed (c, &wr);
    assert (seen.state == ZIM_CLIENT_AUTHED && streq (zim_client_uid (c), "bob"));
    assert (s_t_queued_sync (c, &rid) == 0);
    zim_cframe_page_begin (&wr, rid, false, 1);
    zim_cframe_page_item (&wr, &item);
    s_t_feed (c, &wr);
    assert (seen.msgs == 1 && seen.pages == 0 && zim_client_last_seq (c) == 1);
    zim_cframe_ack (&wr, zim_str ("own2"), 99, 2, 1);
    s_t_feed (c, &wr);
    assert (seen.acks == 1 && zim_client_last_seq (c) == 2);
    uint64_t urid = 0;
    assert (zim_client_sync (c, 0, 10, &urid) == 0 && urid != rid);
    zim_cframe_page_begin (&wr, urid, false, 1);
    zim_cframe_page_item (&wr, &item);
    s_t_feed (c, &wr);
    assert (seen.pages == 1 && seen.page_rid == urid && seen.msgs == 1);
    //  a gap (4 without 3): after the grace, the inbox syncs from 2; a
    //  5030 for it is not the application's business
    item.seq = 4;
    zim_cframe_msg (&wr, &item);
    s_t_feed (c, &wr);
    for (int i = 0; i < 100 && s_t_queued_sync (c, &rid) != 2; i++)
        zim_loop_run (loop, 20);
    zim_cframe_error (&wr, ZIM_ERR_UNAVAILABLE, "busy", zim_str (NULL), true, rid);
    s_t_feed (c, &wr);
    assert (seen.errors == 0);
    assert (zim_client_history (c, "alice", 0, 10, &urid) == 0);
    zim_cframe_error (&wr, ZIM_ERR_BAD_FIELD, "no", zim_str (NULL), true, urid);
    s_t_feed (c, &wr);
    assert (seen.errors == 1 && seen.error_rid == urid);
    //  an unknown op and unknown keys are ignored
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "future");
    zim_wr_cstr (&wr, "x");
    zim_wr_array (&wr, 0);
    s_t_feed (c, &wr);
    assert (seen.errors == 1);
    zim_client_destroy (&c);

    //  Receipts, the conversation list, groups and channels.
    memset (&seen, 0, sizeof seen);
    cfg.auto_sync = false;
    c = zim_client_new (loop, &cfg);
    assert (zim_sdk_conn_cancel (c->conn));
    c->state = ZIM_CLIENT_OPEN;
    zim_cframe_auth_ok (&wr, zim_str ("demo"), zim_str ("bob"), zim_str ("default"));
    s_t_feed (c, &wr);
    assert (seen.state == ZIM_CLIENT_AUTHED);
    //  read and delivered go out as their vectors; bad keys stay home
    assert (zim_client_read (c, "p:alice:bob", 5) == 0);
    assert (zim_client_delivered (c, "g:team", 6) == 0);
    assert (zim_client_read (c, "p:bob:alice", 5) == -1); //  users out of order
    assert (zim_client_read (c, "x:alice", 5) == -1);
    assert (zim_client_read (c, "p:alice:bob", 0) == -1);
    assert (zim_client_read (c, NULL, 1) == -1);
    zim_cframe_t cf;
    assert (s_t_next_frame (c, &cf) == 0);
    assert (cf.op == ZIM_OP_READ && zim_str_eq (cf.conv, "p:alice:bob") && cf.seq == 5);
    assert (s_t_next_frame (c, &cf) == 0);
    assert (cf.op == ZIM_OP_DELIVERED && zim_str_eq (cf.conv, "g:team") && cf.seq == 6);
    assert (s_t_next_frame (c, &cf) == -1);
    //  a receipt: the other side read up to our seq 4 (no delivered key)
    zim_cframe_receipt (&wr, zim_str ("p:alice:bob"), zim_str ("alice"), true, 4, false, 0);
    s_t_feed (c, &wr);
    assert (seen.receipts == 1 && streq (seen.receipt_conv, "p:alice:bob"));
    assert (streq (seen.receipt_user, "alice") && seen.receipt.has_read && seen.receipt.read == 4);
    assert (!seen.receipt.has_delivered);
    //  one without conv is the server's mistake
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "receipt");
    zim_wr_cstr (&wr, "user");
    zim_wr_cstr (&wr, "alice");
    zim_wr_cstr (&wr, "read");
    zim_wr_uint (&wr, 1);
    s_t_feed (c, &wr);
    assert (seen.receipts == 1 && seen.errors == 1 && seen.last_error == ZIM_CLIENT_ERR_PROTOCOL);

    //  convs: the answer reaches on_convs with its entries; one nobody asked
    //  for is dropped; a malformed entry fails the request with its rid
    uint64_t crid = 0;
    assert (zim_client_convs (c, 20, 0, &crid) == 0 && crid);
    assert (s_t_next_frame (c, &cf) == 0 && cf.op == ZIM_OP_CONVS && cf.limit == 20);
    assert (cf.rid == crid);
    zim_cframe_convs_begin (&wr, crid, true, 2);
    s_t_sconv (&wr, "p:alice:bob", 90, 3, 2, 6);
    s_t_sconv (&wr, "g:team", 80, 0, 7, 0);
    s_t_feed (c, &wr);
    assert (seen.convs == 1 && seen.convs_more && streq (seen.conv.conv, "p:alice:bob"));
    assert (seen.conv.id == 90 && seen.conv.unread == 3 && seen.conv.read == 2);
    assert (seen.conv.peer_read == 6 && streq (seen.conv.from, "alice") && seen.conv.seq == 7);
    assert (seen.conv.body == NULL || seen.conv.body_len == 3);
    zim_cframe_convs_begin (&wr, crid, false, 0); //  answered already
    s_t_feed (c, &wr);
    assert (seen.convs == 1);
    assert (zim_client_convs (c, 0, 90, &crid) == 0);
    assert (s_t_next_frame (c, &cf) == 0 && cf.before == 90 && cf.limit == 0);
    zim_cframe_convs_begin (&wr, crid, false, 1);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "conv");
    zim_wr_cstr (&wr, "p:alice:bob");
    s_t_feed (c, &wr);
    assert (seen.convs == 1 && seen.errors == 2 && seen.error_rid == crid);

    //  groups: channels get our position, at least their join point
    uint64_t grid = 0;
    assert (zim_client_groups (c, &grid) == 0);
    assert (s_t_next_frame (c, &cf) == 0 && cf.op == ZIM_OP_GROUPS && cf.rid == grid);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "groups");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, grid);
    zim_wr_cstr (&wr, "groups");
    zim_wr_array (&wr, 2);
    zim_sgroup_t sg = {zim_str ("team"), zim_str ("group"), 12, 0, 3};
    zim_sgroup_pack (&wr, &sg);
    zim_sgroup_t sc = {zim_str ("news"), zim_str ("channel"), 50, 10, 900};
    zim_sgroup_pack (&wr, &sc);
    s_t_feed (c, &wr);
    assert (seen.groups == 1 && seen.ngroups == 2);
    assert (streq (seen.group[0].group, "team") && !seen.group[0].channel);
    assert (seen.group[0].head == 12 && seen.group[0].pos == 0 && seen.group[0].members == 3);
    assert (streq (seen.group[1].group, "news") && seen.group[1].channel);
    assert (seen.group[1].head == 50 && seen.group[1].joined == 10 && seen.group[1].pos == 10);
    assert (zim_client_channel_pos (c, "news") == 10);

    //  csync from our position: a page moves it; a reset page says so
    uint64_t srid = 0;
    assert (zim_client_csync (c, "bad id!", 0, 0, &srid) == -1);
    assert (zim_client_csync (c, "news", -1, 5, &srid) == 0);
    assert (s_t_next_frame (c, &cf) == 0 && cf.op == ZIM_OP_CSYNC);
    assert (zim_str_eq (cf.group, "news") && cf.since == 10 && cf.limit == 5 && cf.rid == srid);
    zim_item_t gitem = {0, 99, 1, zim_str ("alice"), zim_str ("g:news"), {"\xa2hi", 3}};
    zim_cframe_page_begin (&wr, srid, false, 2);
    for (uint64_t g = 11; g <= 12; g++) {
        //  a csync entry: the msg map without seq, with group and gseq
        zim_wr_map (&wr, 8);
        zim_wr_cstr (&wr, "id");
        zim_wr_uint (&wr, gitem.id + g);
        zim_wr_cstr (&wr, "from");
        zim_wr_cstr (&wr, "alice");
        zim_wr_cstr (&wr, "to");
        zim_wr_cstr (&wr, "news");
        zim_wr_cstr (&wr, "conv");
        zim_wr_cstr (&wr, "g:news");
        zim_wr_cstr (&wr, "body");
        zim_wr_cstr (&wr, "hi");
        zim_wr_cstr (&wr, "ts");
        zim_wr_uint (&wr, 1);
        zim_wr_cstr (&wr, "group");
        zim_wr_cstr (&wr, "news");
        zim_wr_cstr (&wr, "gseq");
        zim_wr_uint (&wr, g);
    }
    s_t_feed (c, &wr);
    assert (seen.pages == 1 && seen.page_rid == srid && streq (seen.page_group, "news"));
    assert (!seen.page_reset && seen.page_first_gseq == 11);
    assert (zim_client_channel_pos (c, "news") == 12);
    //  live channel messages (room "g:news", the entry as body): the next
    //  one moves the position, one after a gap does not
    for (uint64_t g = 13; g <= 15; g += 2) {
        zim_wr_map (&wr, 4);
        zim_wr_cstr (&wr, "op");
        zim_wr_cstr (&wr, "room");
        zim_wr_cstr (&wr, "room");
        zim_wr_cstr (&wr, "g:news");
        zim_wr_cstr (&wr, "ts");
        zim_wr_uint (&wr, 1);
        zim_wr_cstr (&wr, "body");
        zim_wr_map (&wr, 5);
        zim_wr_cstr (&wr, "id");
        zim_wr_uint (&wr, gitem.id + g);
        zim_wr_cstr (&wr, "from");
        zim_wr_cstr (&wr, "alice");
        zim_wr_cstr (&wr, "body");
        zim_wr_cstr (&wr, "hi");
        zim_wr_cstr (&wr, "group");
        zim_wr_cstr (&wr, "news");
        zim_wr_cstr (&wr, "gseq");
        zim_wr_uint (&wr, g);
        s_t_feed (c, &wr);
        assert (seen.channel_gseq == g && zim_client_channel_pos (c, "news") == 13);
    }
    assert (seen.channels == 2 && seen.pages == 1);
    assert (zim_client_csync (c, "news", -1, 0, &srid) == 0);
    assert (s_t_next_frame (c, &cf) == 0 && cf.since == 13);
    s_t_reset_page (&wr, srid);
    s_t_feed (c, &wr);
    assert (seen.pages == 2 && seen.page_reset && streq (seen.page_group, "news"));
    //  a sync page is not a channel's, even with reset on the wire
    assert (zim_client_sync (c, 0, 1, &rid) == 0);
    zim_sdk_outq_clear (c->outq);
    s_t_reset_page (&wr, rid);
    s_t_feed (c, &wr);
    assert (seen.pages == 3 && !seen.page_reset && seen.page_group[0] == 0);
    //  a refused csync reaches on_error with its rid, once
    assert (zim_client_csync (c, "sport", 0, 0, &srid) == 0);
    zim_cframe_error (&wr, ZIM_ERR_NOT_MEMBER, "not a member", zim_str (NULL), true, srid);
    s_t_feed (c, &wr);
    assert (seen.errors == 3 && seen.error_rid == srid && seen.last_error == ZIM_ERR_NOT_MEMBER);
    assert (zim_sdk_chans_answer (c->chans, srid) == NULL);
    zim_client_destroy (&c);
    zim_loop_destroy (&loop);
    zim_wr_free (&wr);
    zim_wr_free (&s_t_out);
    memset (&s_t_rd, 0, sizeof s_t_rd);
}
