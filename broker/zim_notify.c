/*  zim_notify.c: a broker's receipts, conversation lists and offline push
    (see zim_notify.h). Requests in flight live in a table of slots indexed
    by their request id (zim_slots.h).
*/
#include "broker/zim_notify.h"
#include "broker/zim_slots.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

#define S_PREVIEW 100         //  bytes of a push preview, at most
#define S_PUSH_BATCH 1000     //  push records per PUSH_ADD, at most
#define S_EXPIRE_EVERY 100000 //  us between deadline scans

//  Where a request is.
typedef enum {
    S_FREE = 0, //  the slot is free
    S_MARK,     //  MARK sent to the reader's shard
    S_PEER,     //  MARK PEER_* sent to the other side's shard
    S_ROUTE,    //  ROUTE_Q sent
    S_CONVS     //  CONVS_Q sent
} s_stage_t;

//  One request in flight.
typedef struct {
    zim_slot_t head;             //  stage (s_stage_t), request id, gateway, connection
    uint64_t rid;                //  CONVS: the client's rid
    char app[ZIM_ID_MAX + 1];    //  the reader
    char uid[ZIM_ID_MAX + 1];    //
    char conv[ZIM_CONV_MAX + 1]; //  the conversation
    char peer[ZIM_ID_MAX + 1];   //  its other side ("p:"), "" for a group or oneself
    int what;                    //  ZIM_MARK_READ, _DELIVERED, _MUTE
    uint64_t read, delivered;    //  the reader's cursors now
    uint64_t peer_id;            //  the other side's newest message the move covered
    uint64_t peer_seq;           //  its seq in the other side's inbox, 0 unknown
} s_slot_t;

//  Push records waiting for one shard.
typedef struct {
    zim_wr_t items; //  encoded push_item records
    uint32_t count; //  how many
} s_batch_t;

struct _zim_notify_t {
    zim_shell_t *shell;                //  log lines
    zim_shards_t *shards;              //  where users live
    zim_deliver_t *deliver;            //  frames to gateways
    const zim_broker_limits_t *limits; //  the actor's settings
    zim_broker_stats_t *stats;         //  the actor's counters
    void *router;                      //  DEALER to the routers, or NULL
    zim_slots_t *slots;                //  requests in flight (ZIM_NOTIFY_SLOTS)
    uint64_t next_scan_us;             //  the next deadline scan
    s_batch_t push[ZIM_SHARDS_MAX];    //  push records per shard
    bool pushing;                      //  some batch holds records
    zim_wr_t wr;                       //  backbone messages being encoded
};

zim_notify_t *zim_notify_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                              const zim_broker_limits_t *limits, zim_broker_stats_t *stats)
{
    zim_notify_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    self->shards = shards;
    self->deliver = deliver;
    self->limits = limits;
    self->stats = stats;
    self->slots = zim_slots_new (ZIM_NOTIFY_SLOTS, sizeof (s_slot_t), ZIM_NOTIFY_REQ, 0);
    zim_wr_init (&self->wr);
    return self;
}

void zim_notify_destroy (zim_notify_t **self_p)
{
    zim_notify_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < ZIM_SHARDS_MAX; i++)
        zim_wr_free (&self->push[i].items);
    zim_wr_free (&self->wr);
    zim_slots_destroy (&self->slots);
    free (self);
    *self_p = NULL;
}

void zim_notify_use_router (zim_notify_t *self, zsock_t *router)
{
    self->router = router ? zsock_resolve (router) : NULL;
}

//  True if a and b hold the same bytes.
static bool s_same (zim_str_t a, zim_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

//  -------------------------------------------------------------------------
//  Slots

//  A free slot for a new request from gw, or NULL when all are busy.
static s_slot_t *s_take (zim_notify_t *self, zframe_t *gw, uint64_t conn)
{
    s_slot_t *slot = (s_slot_t *)zim_slots_take (self->slots, gw, conn);
    if (slot) //  all but the head, as new
        memset ((char *)slot + sizeof slot->head, 0, sizeof *slot - sizeof slot->head);
    return slot;
}

static void s_free (zim_notify_t *self, s_slot_t *slot)
{
    zim_slots_free (self->slots, &slot->head);
}

//  The slot of request req at stage (any stage but S_FREE when 0), or NULL.
static s_slot_t *s_find (zim_notify_t *self, uint64_t req, s_stage_t stage)
{
    return (s_slot_t *)zim_slots_find (self->slots, req, (int)stage);
}

//  Answers the asking connection with an error (a CONVS's names its rid).
static void s_error (zim_notify_t *self, s_slot_t *slot, int code)
{
    zim_deliver_error (self->deliver, slot->head.gw, slot->head.gw_len, slot->head.conn, code,
                       (zim_str_t){NULL, 0}, slot->head.stage == S_CONVS, slot->rid);
}

//  The reader's receipt (both cursors) into the frame buffer.
static void s_own_receipt (zim_notify_t *self, s_slot_t *slot)
{
    zim_cframe_receipt (zim_deliver_frame (self->deliver), zim_str (slot->conv),
                        zim_str (slot->uid), true, slot->read, true, slot->delivered);
}

//  Answers the asking connection alone and ends the request.
static void s_answer (zim_notify_t *self, s_slot_t *slot)
{
    s_own_receipt (self, slot);
    zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1);
    s_free (self, slot);
}

//  -------------------------------------------------------------------------
//  Receipts

//  Asks the router for the reader's routes and, when the other side's
//  cursor moved, the other side's; without a router, answers the asker.
static void s_route (zim_notify_t *self, s_slot_t *slot)
{
    bool peer = slot->peer_seq && *slot->peer;
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, slot->head.req, peer ? 2 : 1);
    zim_route_key (&self->wr, zim_str (slot->app), zim_str (slot->uid));
    if (peer)
        zim_route_key (&self->wr, zim_str (slot->app), zim_str (slot->peer));
    if (!self->router ||
        zmq_send (self->router, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1) {
        s_answer (self, slot);
        return;
    }
    slot->head.stage = S_ROUTE;
    slot->head.since_us = zim_mono_us ();
}

//  Sends a MARK for slot to shard; returns 0 or -1 (the shard cannot take it).
static int s_mark (zim_notify_t *self, s_slot_t *slot, int shard, const char *uid, int what,
                   uint64_t value, const char *reader)
{
    zim_mark_t m = {
        slot->head.req, zim_str (slot->app), zim_str (uid), zim_str (slot->conv), (uint64_t)what,
        value,     zim_str (reader)};
    zim_wr_reset (&self->wr);
    zim_mark_pack (&self->wr, &m);
    return zim_shards_send (self->shards, shard, self->wr.data, self->wr.size);
}

//  The reader's MARK was answered.
static void s_marked (zim_notify_t *self, s_slot_t *slot, const zim_marked_t *m)
{
    if (m->status) {
        s_error (self, slot, m->status == ZIM_EVALUE ? ZIM_ERR_FORBIDDEN : ZIM_ERR_INTERNAL);
        s_free (self, slot);
        return;
    }
    if (slot->what == ZIM_MARK_MUTE) {
        s_free (self, slot);
        return;
    }
    slot->read = m->read;
    slot->delivered = m->delivered;
    slot->peer_id = m->peer_id;
    slot->peer_seq = m->peer_seq;
    if (!m->moved) {
        s_answer (self, slot);
        return;
    }
    if (slot->peer_id && *slot->peer && slot->peer_seq == 0) {
        //  The other side lives on another shard: it finds its seq there.
        int shard = zim_shards_of (self->shards, zim_str (slot->app), zim_str (slot->peer));
        int what = slot->what == ZIM_MARK_READ ? ZIM_MARK_PEER_READ : ZIM_MARK_PEER_DELIVERED;
        if (shard >= 0 &&
            s_mark (self, slot, shard, slot->peer, what, slot->peer_id, slot->uid) == 0) {
            slot->head.stage = S_PEER;
            slot->head.since_us = zim_mono_us ();
            return;
        }
    }
    s_route (self, slot);
}

//  The routes came: the reader's devices and the other side's get receipts.
static void s_routed (zim_notify_t *self, s_slot_t *slot, zframe_t *frame)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_route_r_t rr;
    bool peer = slot->peer_seq && *slot->peer;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || zim_route_r_unpack (&rd, fields, &rr) ||
        rr.nlists != (peer ? 2u : 1u)) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "router answered receipt %" PRIu64 " with a bad ROUTE_R",
                        slot->head.req & ~ZIM_NOTIFY_REQ);
        s_answer (self, slot);
        return;
    }
    s_own_receipt (self, slot);
    zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1);
    bool bad = zim_deliver_fan (self->deliver, &rr.lists, slot->head.gw, slot->head.gw_len, slot->head.conn);
    if (!bad && peer) {
        //  The other side sees the reader's cursor in its own seqs.
        bool read = slot->what == ZIM_MARK_READ;
        zim_cframe_receipt (zim_deliver_frame (self->deliver), zim_str (slot->conv),
                            zim_str (slot->uid), read, slot->peer_seq, !read, slot->peer_seq);
        bad = zim_deliver_fan (self->deliver, &rr.lists, NULL, 0, 0);
    }
    if (bad) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "router answered receipt %" PRIu64 " with a bad ROUTE_R",
                        slot->head.req & ~ZIM_NOTIFY_REQ);
    }
    s_free (self, slot);
}

void zim_notify_routed (zim_notify_t *self, uint64_t req, zframe_t *frame)
{
    s_slot_t *slot = s_find (self, req, S_ROUTE);
    if (slot)
        s_routed (self, slot, frame);
}

//  -------------------------------------------------------------------------
//  Requests from gateways

//  Counts and logs a malformed request; answers 4001 when it can.
static void s_bad (zim_notify_t *self, zframe_t *gw, const char *what)
{
    self->stats->bad++;
    zim_shell_warn (self->shell, "dropped a malformed %s from gateway %.*s", what,
                    (int)zframe_size (gw), (const char *)zframe_data (gw));
}

static void s_receipt (zim_notify_t *self, zframe_t *gw, zim_rd_t *rd, uint32_t fields)
{
    zim_receipt_t m;
    zim_str_t peer;
    if (zim_receipt_unpack (rd, fields, &m) || zim_rd_left (rd)) {
        s_bad (self, gw, "RECEIPT");
        return;
    }
    self->stats->receipts++;
    int rc = zim_conv_check (m.conv, m.who.uid, &peer);
    if (rc) {
        zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m.who.conn, rc,
                           (zim_str_t){NULL, 0}, false, 0);
        return;
    }
    int shard = zim_shards_of (self->shards, m.who.app, m.who.uid);
    s_slot_t *slot = shard < 0 ? NULL : s_take (self, gw, m.who.conn);
    if (!slot) {
        self->stats->no_shard += shard < 0;
        zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m.who.conn,
                           ZIM_ERR_UNAVAILABLE, (zim_str_t){NULL, 0}, false, 0);
        return;
    }
    zim_str_copy (m.who.app, slot->app, sizeof slot->app);
    zim_str_copy (m.who.uid, slot->uid, sizeof slot->uid);
    zim_str_copy (m.conv, slot->conv, sizeof slot->conv);
    if (!s_same (peer, m.who.uid))
        zim_str_copy (peer, slot->peer, sizeof slot->peer);
    slot->what = (int)m.what;
    slot->head.stage = S_MARK;
    if (s_mark (self, slot, shard, slot->uid, slot->what, m.value, "")) {
        s_error (self, slot, ZIM_ERR_UNAVAILABLE);
        s_free (self, slot);
    }
}

static void s_convs (zim_notify_t *self, zframe_t *gw, zim_rd_t *rd, uint32_t fields)
{
    zim_convs_get_t m;
    if (zim_convs_get_unpack (rd, fields, &m) || zim_rd_left (rd)) {
        s_bad (self, gw, "CONVS");
        return;
    }
    self->stats->reads++;
    int shard = zim_shards_of (self->shards, m.who.app, m.who.uid);
    s_slot_t *slot = shard < 0 ? NULL : s_take (self, gw, m.who.conn);
    if (slot) {
        slot->head.stage = S_CONVS;
        slot->rid = m.rid;
        zim_convs_q_t q = {slot->head.req, m.who.app, m.who.uid, m.limit, m.before};
        zim_wr_reset (&self->wr);
        zim_convs_q_pack (&self->wr, &q);
        if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == 0)
            return;
        s_free (self, slot);
    }
    zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m.who.conn,
                       ZIM_ERR_UNAVAILABLE, (zim_str_t){NULL, 0}, true, m.rid);
}

void zim_notify_request (zim_notify_t *self, zframe_t *gw, int kind, zim_rd_t *rd, uint32_t fields)
{
    if (kind == ZIM_MSG_RECEIPT)
        s_receipt (self, gw, rd, fields);
    else
        s_convs (self, gw, rd, fields);
}

//  -------------------------------------------------------------------------
//  Store answers

//  A CONVS_R: the client's convs frame, its maps copied as they are.
static int s_convs_r (zim_notify_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_convs_r_t m;
    if (zim_convs_r_unpack (rd, fields, &m))
        return -1;
    zim_rd_t items = m.items;
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_sconv_t c;
        if (zim_sconv_unpack (&items, &c))
            return -1;
    }
    if (zim_rd_left (&items))
        return -1;
    s_slot_t *slot = s_find (self, m.req, S_CONVS);
    if (!slot)
        return 0; //  timed out: answered 5040 already
    if (m.status) {
        s_error (self, slot, ZIM_ERR_INTERNAL);
    } else {
        zim_wr_t *fr = zim_deliver_frame (self->deliver);
        zim_cframe_convs_begin (fr, slot->rid, m.more, m.nitems);
        zim_wr_raw (fr, m.items.pos, (size_t)(m.items.end - m.items.pos));
        if (zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1) == ZIM_EFULL)
            s_error (self, slot, ZIM_ERR_UNAVAILABLE);
    }
    s_free (self, slot);
    return 0;
}

int zim_notify_store (zim_notify_t *self, int kind, zim_rd_t *rd, uint32_t fields)
{
    if (kind == ZIM_MSG_CONVS_R)
        return s_convs_r (self, rd, fields);
    zim_marked_t m;
    if (zim_marked_unpack (rd, fields, &m) || zim_rd_left (rd))
        return -1;
    s_slot_t *slot = s_find (self, m.req, 0);
    if (slot && slot->head.stage == S_MARK)
        s_marked (self, slot, &m);
    else if (slot && slot->head.stage == S_PEER) {
        if (m.status == 0)
            slot->peer_seq = m.peer_seq;
        s_route (self, slot);
    }
    return 0;
}

//  -------------------------------------------------------------------------
//  Offline push

void zim_notify_preview (zim_str_t body, zim_str_t uid, size_t max, zim_str_t *preview,
                         bool *mention)
{
    *preview = (zim_str_t){NULL, 0};
    *mention = false;
    zim_rd_t rd;
    uint32_t pairs;
    zim_str_t text = {NULL, 0};
    zim_rd_init (&rd, body.ptr, body.len);
    if (zim_rd_peek (&rd) == ZIM_MP_STR)
        zim_rd_str (&rd, &text);
    else if (zim_rd_map (&rd, &pairs) == 0)
        for (uint32_t i = 0; i < pairs; i++) {
            zim_str_t key, s;
            uint32_t n;
            if (zim_rd_str (&rd, &key))
                break;
            if (zim_str_eq (key, "text") && zim_rd_peek (&rd) == ZIM_MP_STR)
                zim_rd_str (&rd, &text);
            else if (zim_str_eq (key, "mentions") && zim_rd_peek (&rd) == ZIM_MP_ARRAY &&
                     zim_rd_array (&rd, &n) == 0) {
                for (uint32_t j = 0; j < n; j++)
                    if (zim_rd_peek (&rd) == ZIM_MP_STR && zim_rd_str (&rd, &s) == 0)
                        *mention |= s_same (s, uid) || zim_str_eq (s, "all");
                    else if (zim_rd_skip (&rd, NULL))
                        return;
            } else if (zim_rd_skip (&rd, NULL))
                break;
        }
    if (!text.ptr)
        return;
    size_t len = text.len;
    if (len > max) {
        //  Cut before a continuation byte: never inside a character.
        len = max;
        while (len > 0 && ((uint8_t)text.ptr[len] & 0xc0) == 0x80)
            len--;
    }
    *preview = (zim_str_t){text.ptr, len};
}

void zim_notify_offline (zim_notify_t *self, zim_str_t app, zim_str_t uid, zim_str_t conv,
                         uint64_t seq, uint64_t id, uint64_t ts, zim_str_t from, zim_str_t body)
{
    int shard = zim_shards_of (self->shards, app, uid);
    if (shard < 0 || shard >= ZIM_SHARDS_MAX || seq == 0)
        return;
    s_batch_t *batch = &self->push[shard];
    zim_push_item_t it = {app, uid, conv, seq, id, ts, from, {NULL, 0}, false};
    zim_notify_preview (body, uid, S_PREVIEW, &it.preview, &it.mention);
    zim_push_item_pack (&batch->items, &it);
    batch->count++;
    self->pushing = true;
    self->stats->pushes++;
    if (batch->count >= S_PUSH_BATCH)
        zim_notify_flush (self);
}

void zim_notify_sent (void *arg, const zim_send_t *m, const zim_appended_item_t *res,
                      const zim_route_t *routes, uint32_t n)
{
    zim_notify_t *self = (zim_notify_t *)arg;
    if (s_same (m->to, m->who.uid))
        return;
    for (uint32_t i = 0; routes && i < n; i++)
        if (!routes[i].bg)
            return; //  a device in the foreground has it live
    char conv[ZIM_CONV_MAX + 1];
    int len = zim_conv_peer (m->who.uid, m->to, conv, sizeof conv);
    if (len > 0)
        zim_notify_offline (self, m->who.app, m->to, (zim_str_t){conv, (size_t)len}, res->to_seq,
                            res->id, res->ts, m->who.uid, m->body);
}

void zim_notify_flush (zim_notify_t *self)
{
    if (!self->pushing)
        return;
    for (size_t s = 0; s < ZIM_SHARDS_MAX; s++) {
        s_batch_t *batch = &self->push[s];
        if (!batch->count)
            continue;
        zim_wr_reset (&self->wr);
        zim_push_add_pack (&self->wr, &(zim_push_add_t){{NULL, NULL}, batch->count});
        zim_wr_raw (&self->wr, batch->items.data, batch->items.size);
        if (zim_shards_send (self->shards, (int)s, self->wr.data, self->wr.size)) {
            self->stats->push_lost += batch->count;
            zim_shell_warn (self->shell,
                            "store shard %s cannot take %u push records now: not queued",
                            zim_shards_name (self->shards, (int)s), batch->count);
        }
        zim_wr_reset (&batch->items);
        batch->count = 0;
    }
    self->pushing = false;
}

//  -------------------------------------------------------------------------
//  Deadlines

void zim_notify_expire (zim_notify_t *self, uint64_t now_us)
{
    if (!zim_slots_busy (self->slots) || now_us < self->next_scan_us)
        return;
    self->next_scan_us = now_us + S_EXPIRE_EVERY;
    for (size_t i = 0; i < ZIM_NOTIFY_SLOTS; i++) {
        s_slot_t *slot = (s_slot_t *)zim_slots_at (self->slots, i);
        if (slot->head.stage == S_FREE)
            continue;
        uint64_t age = now_us - slot->head.since_us;
        if (slot->head.stage == S_ROUTE && age > self->limits->route_timeout_us)
            s_answer (self, slot); //  the asker at least
        else if (slot->head.stage == S_PEER && age > self->limits->store_timeout_us)
            s_route (self, slot); //  the reader's devices at least
        else if (age > self->limits->store_timeout_us && slot->head.stage != S_ROUTE) {
            self->stats->store_timeouts++;
            s_error (self, slot, ZIM_ERR_TIMEOUT);
            s_free (self, slot);
        }
    }
}

bool zim_notify_waiting (zim_notify_t *self)
{
    return zim_slots_busy (self->slots) > 0;
}

//  -------------------------------------------------------------------------
//  Selftest: the body conventions; the flows run in the broker's selftest
//  and in tests/test_receipts.

void zim_notify_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_str_t preview;
    bool mention;
    //  A string body: its start, cut at a character boundary.
    zim_wr_cstr (&wr, "h\xc3\xa9llo world");
    zim_notify_preview ((zim_str_t){(const char *)wr.data, wr.size}, zim_str ("bob"), 2, &preview,
                        &mention);
    assert (preview.len == 1 && preview.ptr[0] == 'h' && !mention);
    zim_notify_preview ((zim_str_t){(const char *)wr.data, wr.size}, zim_str ("bob"), 100, &preview,
                        &mention);
    assert (preview.len == 12);
    //  A map: "text" and "mentions" (other keys skipped, whatever they hold).
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "img");
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "w");
    zim_wr_uint (&wr, 640);
    zim_wr_cstr (&wr, "mentions");
    zim_wr_array (&wr, 3);
    zim_wr_uint (&wr, 7);
    zim_wr_cstr (&wr, "carol");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "text");
    zim_wr_cstr (&wr, "@bob look");
    zim_str_t body = {(const char *)wr.data, wr.size};
    zim_notify_preview (body, zim_str ("bob"), 100, &preview, &mention);
    assert (zim_str_eq (preview, "@bob look") && mention);
    zim_notify_preview (body, zim_str ("dave"), 100, &preview, &mention);
    assert (!mention);
    //  Neither: no preview; a cut body reads what it can.
    zim_wr_reset (&wr);
    zim_wr_bin (&wr, zim_str ("raw"));
    zim_notify_preview ((zim_str_t){(const char *)wr.data, wr.size}, zim_str ("bob"), 100, &preview,
                        &mention);
    assert (preview.len == 0 && !mention);
    zim_notify_preview ((zim_str_t){(const char *)body.ptr, 5}, zim_str ("bob"), 100, &preview,
                        &mention);
    assert (preview.len == 0);
    zim_wr_free (&wr);
    if (verbose)
        zsys_info ("notify: previews and mentions read from bodies");
}
