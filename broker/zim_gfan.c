/*  zim_gfan.c: a broker's groups and channels (see zim_gfan.h). Requests
    in flight live in a table of slots indexed by their request id, as in
    zim_notify.c: an answer finds its request at once and the table bounds
    them.
*/
#include "broker/zim_gfan.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

#define S_EXPIRE_EVERY 100000 //  us between deadline scans

//  Where a request is.
typedef enum {
    S_FREE = 0, //  the slot is free
    S_POST,     //  GPOST sent to the group's shard
    S_ROUTE,    //  acked; ROUTE_Q for the members sent
    S_READ      //  GREAD sent (to every shard for a list)
} s_stage_t;

//  One request in flight.
typedef struct {
    s_stage_t stage;     //  where it is
    uint64_t req;        //  its request id
    uint64_t since_us;   //  when the stage began (monotonic)
    uint8_t gw[256];     //  routing id of its gateway
    size_t gw_len;       //  its length
    uint64_t conn;       //  the asking connection
    zframe_t *send;      //  POST/ROUTE: the GSEND
    zframe_t *members;   //  ROUTE: the GPOSTED's member list (gmember records)
    uint32_t nmembers;   //  how many
    uint64_t id, ts;     //  ROUTE: the stored message
    uint64_t rid;        //  READ: the client's rid
    int mode;            //  READ: ZIM_GREAD_LOG or _LIST
    size_t pending;      //  READ: answers still due
    zim_wr_t acc;        //  READ list: the groups so far
    uint32_t count;      //  their number
    bool more;           //  some shard had more
    int64_t status;      //  READ: the first error
} s_slot_t;

struct _zim_gfan_t {
    zim_shell_t *shell;                //  log lines
    zim_shards_t *shards;              //  where groups live
    zim_deliver_t *deliver;            //  frames to gateways
    zim_sendq_t *sendq;                //  message ids
    zim_notify_t *notify;              //  push records
    const zim_broker_limits_t *limits; //  the actor's settings
    zim_broker_stats_t *stats;         //  the actor's counters
    void *router;                      //  DEALER to the routers, or NULL
    s_slot_t *slots;                   //  ZIM_GFAN_SLOTS
    size_t busy;                       //  slots in use
    uint64_t next_req;                 //  request id counter (without the tag bit)
    uint64_t next_scan_us;             //  the next deadline scan
    zim_wr_t wr;                       //  backbone messages being encoded
};

zim_gfan_t *zim_gfan_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                          zim_sendq_t *sendq, zim_notify_t *notify,
                          const zim_broker_limits_t *limits, zim_broker_stats_t *stats)
{
    zim_gfan_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    self->shards = shards;
    self->deliver = deliver;
    self->sendq = sendq;
    self->notify = notify;
    self->limits = limits;
    self->stats = stats;
    self->slots = zim_calloc (ZIM_GFAN_SLOTS, sizeof *self->slots);
    zim_wr_init (&self->wr);
    return self;
}

void zim_gfan_destroy (zim_gfan_t **self_p)
{
    zim_gfan_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < ZIM_GFAN_SLOTS; i++) {
        zframe_destroy (&self->slots[i].send);
        zframe_destroy (&self->slots[i].members);
        zim_wr_free (&self->slots[i].acc);
    }
    zim_wr_free (&self->wr);
    free (self->slots);
    free (self);
    *self_p = NULL;
}

void zim_gfan_use_router (zim_gfan_t *self, zsock_t *router)
{
    self->router = router ? zsock_resolve (router) : NULL;
}

//  -------------------------------------------------------------------------
//  Slots

//  A free slot for a new request from gw, or NULL when all are busy.
static s_slot_t *s_take (zim_gfan_t *self, zframe_t *gw, uint64_t conn)
{
    uint64_t req = ++self->next_req & ~(ZIM_GFAN_REQ | ZIM_NOTIFY_REQ);
    s_slot_t *slot = &self->slots[req % ZIM_GFAN_SLOTS];
    if (slot->stage != S_FREE || zframe_size (gw) > sizeof slot->gw)
        return NULL;
    zim_wr_t acc = slot->acc; //  kept: its buffer is reused
    memset (slot, 0, sizeof *slot);
    slot->acc = acc;
    zim_wr_reset (&slot->acc);
    slot->req = req | ZIM_GFAN_REQ;
    slot->since_us = zim_mono_us ();
    slot->gw_len = zframe_size (gw);
    memcpy (slot->gw, zframe_data (gw), slot->gw_len);
    slot->conn = conn;
    self->busy++;
    return slot;
}

static void s_free (zim_gfan_t *self, s_slot_t *slot)
{
    zframe_destroy (&slot->send);
    zframe_destroy (&slot->members);
    slot->stage = S_FREE;
    self->busy--;
}

//  The slot of request req at stage, or NULL.
static s_slot_t *s_find (zim_gfan_t *self, uint64_t req, s_stage_t stage)
{
    s_slot_t *slot = &self->slots[(req & ~ZIM_GFAN_REQ) % ZIM_GFAN_SLOTS];
    if (slot->stage != stage || slot->req != req)
        return NULL;
    return slot;
}

//  The GSEND of a slot, decoded (views into slot->send).
static void s_gsend (s_slot_t *slot, zim_gsend_t *m)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, zframe_data (slot->send), zframe_size (slot->send));
    int bad = zim_msg_kind (&rd, &kind, &fields) || zim_gsend_unpack (&rd, fields, m);
    assert (!bad); //  checked on arrival
}

//  Answers a GSEND's sender with an error naming its cid.
static void s_send_error (zim_gfan_t *self, s_slot_t *slot, int code)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    self->stats->send_errors++;
    zim_deliver_error (self->deliver, slot->gw, slot->gw_len, slot->conn, code, m.cid, false, 0);
}

//  Answers a GGET's reader with an error naming its rid.
static void s_read_error (zim_gfan_t *self, s_slot_t *slot, int code)
{
    zim_deliver_error (self->deliver, slot->gw, slot->gw_len, slot->conn, code,
                       (zim_str_t){NULL, 0}, true, slot->rid);
}

//  "g:GROUP" into buf (2 + 64 bytes).
static zim_str_t s_conv (zim_str_t group, char *buf)
{
    memcpy (buf, "g:", 2);
    memcpy (buf + 2, group.ptr, group.len);
    return (zim_str_t){buf, 2 + group.len};
}

//  -------------------------------------------------------------------------
//  Requests from gateways

static void s_bad (zim_gfan_t *self, zframe_t *gw, const char *what)
{
    self->stats->bad++;
    zim_shell_warn (self->shell, "dropped a malformed %s from gateway %.*s", what,
                    (int)zframe_size (gw), (const char *)zframe_data (gw));
}

static void s_post (zim_gfan_t *self, zframe_t *gw, zframe_t *frame)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_gsend_t m;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || zim_gsend_unpack (&rd, fields, &m) ||
        zim_rd_left (&rd)) {
        s_bad (self, gw, "GSEND");
        return;
    }
    self->stats->sends++;
    char convb[2 + ZIM_ID_MAX];
    zim_str_t conv = s_conv (m.group, convb);
    int shard = zim_shards_of (self->shards, m.who.app, conv);
    s_slot_t *slot = shard < 0 ? NULL : s_take (self, gw, m.who.conn);
    if (!slot) {
        self->stats->no_shard += shard < 0;
        self->stats->rejected_full += shard >= 0;
        self->stats->send_errors++;
        zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m.who.conn,
                           ZIM_ERR_UNAVAILABLE, m.cid, false, 0);
        return;
    }
    slot->send = zframe_dup (frame);
    slot->id = zim_sendq_next_id (self->sendq);
    slot->ts = zim_now_ms ();
    zim_gpost_t p = {slot->req, slot->id, slot->ts, m.who.app, m.who.uid, m.cid, m.group, m.body};
    zim_wr_reset (&self->wr);
    zim_gpost_pack (&self->wr, &p);
    if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size)) {
        s_send_error (self, slot, ZIM_ERR_UNAVAILABLE);
        s_free (self, slot);
        return;
    }
    slot->stage = S_POST;
}

static void s_get (zim_gfan_t *self, zframe_t *gw, zframe_t *frame)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_gget_t m;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || zim_gget_unpack (&rd, fields, &m) ||
        zim_rd_left (&rd) || (m.mode == ZIM_GREAD_LOG && !zim_uid_valid (m.group))) {
        s_bad (self, gw, "GGET");
        return;
    }
    self->stats->reads++;
    char convb[2 + ZIM_ID_MAX];
    int shard = m.mode == ZIM_GREAD_LOG ? zim_shards_of (self->shards, m.who.app,
                                                          s_conv (m.group, convb))
                                        : (zim_shards_size (self->shards) ? 0 : -1);
    s_slot_t *slot = shard < 0 ? NULL : s_take (self, gw, m.who.conn);
    if (!slot) {
        zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), m.who.conn,
                           ZIM_ERR_UNAVAILABLE, (zim_str_t){NULL, 0}, true, m.rid);
        return;
    }
    slot->rid = m.rid;
    slot->mode = (int)m.mode;
    zim_gread_t q = {slot->req, m.mode,  m.who.app, m.who.uid,
                     m.group,   m.since, m.limit};
    zim_wr_reset (&self->wr);
    zim_gread_pack (&self->wr, &q);
    //  A csync asks the group's shard; a list asks every shard (the groups
    //  of a user live on their own shards).
    size_t first = (size_t)shard, last = m.mode == ZIM_GREAD_LOG ? first + 1
                                                                 : zim_shards_size (self->shards);
    for (size_t s = first; s < last; s++)
        if (zim_shards_send (self->shards, (int)s, self->wr.data, self->wr.size) == 0)
            slot->pending++;
    if (slot->pending < last - first) {
        //  Answers already due are dropped as unknown requests later.
        s_read_error (self, slot, ZIM_ERR_UNAVAILABLE);
        s_free (self, slot);
        return;
    }
    slot->stage = S_READ;
}

void zim_gfan_request (zim_gfan_t *self, zframe_t *gw, zframe_t *frame, int kind)
{
    if (kind == ZIM_MSG_GSEND)
        s_post (self, gw, frame);
    else
        s_get (self, gw, frame);
}

//  -------------------------------------------------------------------------
//  Store answers

//  Asks the routers where the members are; without one, done.
static void s_route (zim_gfan_t *self, s_slot_t *slot)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, slot->req, slot->nmembers);
    zim_rd_t list;
    zim_rd_init (&list, zframe_data (slot->members), zframe_size (slot->members));
    for (uint32_t i = 0; i < slot->nmembers; i++) {
        zim_gmember_t gm;
        if (zim_gmember_unpack (&list, &gm))
            break;
        zim_route_key (&self->wr, m.who.app, gm.uid);
    }
    if (!self->router ||
        zmq_send (self->router, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1) {
        s_free (self, slot);
        return;
    }
    slot->stage = S_ROUTE;
    slot->since_us = zim_mono_us ();
}

static int s_posted (zim_gfan_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_gposted_t r;
    if (zim_gposted_unpack (rd, fields, &r))
        return -1;
    s_slot_t *slot = s_find (self, r.req, S_POST);
    if (!slot)
        return 0; //  answered already (timed out)
    if (r.status == ZIM_APPEND_CONFLICT || r.status < 0) {
        if (r.status == ZIM_APPEND_CONFLICT)
            self->stats->cid_conflicts++;
        int code = r.status == ZIM_APPEND_CONFLICT ? ZIM_ERR_CID_CONFLICT
                                                   : zim_group_wire (r.status);
        s_send_error (self, slot, code);
        s_free (self, slot);
        return 0;
    }
    zim_gsend_t m;
    s_gsend (slot, &m);
    zim_wr_t *fr = zim_deliver_frame (self->deliver);
    zim_cframe_gack (fr, m.cid, r.id, r.seq, r.ts, r.gseq);
    zim_deliver_out (self->deliver, slot->gw, slot->gw_len, &slot->conn, 1);
    self->stats->acks++;
    if (r.status == ZIM_APPEND_DUPLICATE || r.nmembers == 0) {
        self->stats->duplicates += r.status == ZIM_APPEND_DUPLICATE;
        s_free (self, slot);
        return 0;
    }
    slot->id = r.id;
    slot->ts = r.ts;
    slot->nmembers = r.nmembers;
    slot->members = zframe_new (r.members.pos, zim_rd_left (&r.members));
    s_route (self, slot);
    return 0;
}

//  Sends a csync page or a groups answer to the reader.
static void s_read_answer (zim_gfan_t *self, s_slot_t *slot, bool reset, zim_str_t items,
                           uint32_t count)
{
    zim_wr_t *fr = zim_deliver_frame (self->deliver);
    if (slot->mode == ZIM_GREAD_LOG)
        zim_sframe_pack (fr, &(zim_sframe_t){.op = ZIM_SOP_PAGE,
                                             .rid = slot->rid,
                                             .has_rid = true,
                                             .more = slot->more,
                                             .reset = reset,
                                             .nmsgs = count});
    else
        zim_sframe_pack (fr, &(zim_sframe_t){.op = ZIM_SOP_GROUPS,
                                             .rid = slot->rid,
                                             .has_rid = true,
                                             .ngroups = count});
    zim_wr_raw (fr, items.ptr, items.len);
    if (zim_deliver_out (self->deliver, slot->gw, slot->gw_len, &slot->conn, 1) == ZIM_EFULL)
        s_read_error (self, slot, ZIM_ERR_UNAVAILABLE);
}

static int s_read_r (zim_gfan_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_gread_r_t r;
    if (zim_gread_r_unpack (rd, fields, &r))
        return -1;
    s_slot_t *slot = s_find (self, r.req, S_READ);
    if (!slot)
        return 0;
    if (r.status && !slot->status)
        slot->status = r.status;
    slot->more |= r.more;
    if (slot->mode == ZIM_GREAD_LOG) {
        if (r.status)
            s_read_error (self, slot, zim_group_wire (r.status));
        else
            s_read_answer (self, slot, r.reset, r.items, (uint32_t)r.count);
        s_free (self, slot);
        return 0;
    }
    zim_wr_raw (&slot->acc, r.items.ptr, r.items.len);
    slot->count += (uint32_t)r.count;
    if (--slot->pending > 0)
        return 0;
    if (slot->status)
        s_read_error (self, slot, zim_group_wire (slot->status));
    else
        s_read_answer (self, slot, false, (zim_str_t){slot->acc.data, slot->acc.size},
                       slot->count);
    s_free (self, slot);
    return 0;
}

int zim_gfan_store (zim_gfan_t *self, int kind, zim_rd_t *rd, uint32_t fields)
{
    return kind == ZIM_MSG_GPOSTED ? s_posted (self, rd, fields) : s_read_r (self, rd, fields);
}

//  -------------------------------------------------------------------------
//  Routes: the members' live copies

void zim_gfan_routed (zim_gfan_t *self, uint64_t req, zframe_t *frame)
{
    s_slot_t *slot = s_find (self, req, S_ROUTE);
    if (!slot)
        return;
    zim_rd_t rd, list;
    int kind;
    uint32_t fields;
    zim_route_r_t rr;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    zim_rd_init (&list, zframe_data (slot->members), zframe_size (slot->members));
    if (zim_msg_kind (&rd, &kind, &fields) || zim_route_r_unpack (&rd, fields, &rr) ||
        rr.nlists != slot->nmembers) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "router answered group send %" PRIu64 " with a bad ROUTE_R",
                        req & ~ZIM_GFAN_REQ);
        s_free (self, slot);
        return;
    }
    zim_gsend_t m;
    s_gsend (slot, &m);
    char convb[2 + ZIM_ID_MAX];
    zim_str_t conv = s_conv (m.group, convb);
    for (uint32_t i = 0; i < slot->nmembers; i++) {
        zim_gmember_t gm;
        if (zim_gmember_unpack (&list, &gm))
            break;
        zim_item_t item = {gm.seq, slot->id, slot->ts, m.who.uid, conv, m.body};
        zim_cframe_msg (zim_deliver_frame (self->deliver), &item);
        bool mine = gm.uid.len == m.who.uid.len && memcmp (gm.uid.ptr, m.who.uid.ptr, gm.uid.len) == 0;
        if (zim_deliver_fan (self->deliver, &rr.lists, mine ? slot->gw : NULL,
                             mine ? slot->gw_len : 0, slot->conn)) {
            self->stats->bad++;
            break;
        }
        if (mine)
            continue;
        uint32_t n;
        const zim_route_t *routes = zim_deliver_routes (self->deliver, &n);
        bool live = false;
        for (uint32_t j = 0; j < n && !live; j++)
            live = !routes[j].bg;
        if (!live)
            zim_notify_offline (self->notify, m.who.app, gm.uid, conv, gm.seq, slot->id, slot->ts,
                                m.who.uid, m.body);
    }
    s_free (self, slot);
}

//  -------------------------------------------------------------------------
//  Deadlines

void zim_gfan_expire (zim_gfan_t *self, uint64_t now_us)
{
    if (!self->busy || now_us < self->next_scan_us)
        return;
    self->next_scan_us = now_us + S_EXPIRE_EVERY;
    for (size_t i = 0; i < ZIM_GFAN_SLOTS; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->stage == S_FREE)
            continue;
        uint64_t age = now_us - slot->since_us;
        if (slot->stage == S_ROUTE && age > self->limits->route_timeout_us) {
            self->stats->route_timeouts++;
            s_free (self, slot); //  acked; members sync
        } else if (slot->stage != S_ROUTE && age > self->limits->store_timeout_us) {
            self->stats->store_timeouts++;
            if (slot->stage == S_POST)
                s_send_error (self, slot, ZIM_ERR_TIMEOUT);
            else
                s_read_error (self, slot, ZIM_ERR_TIMEOUT);
            s_free (self, slot);
        }
    }
}

bool zim_gfan_waiting (zim_gfan_t *self)
{
    return self->busy > 0;
}

//  -------------------------------------------------------------------------
//  Selftest: the request ids; the flows run in tests/test_groups.

void zim_gfan_test (bool verbose)
{
    zim_broker_limits_t limits = {0};
    zim_broker_stats_t stats = {0};
    zim_gfan_t *self = zim_gfan_new (NULL, NULL, NULL, NULL, NULL, &limits, &stats);
    zframe_t *gw = zframe_new ("gw-1", 4);
    //  Request ids carry the tag and never the notify part's bit; slots
    //  are found by id and stage only.
    s_slot_t *slot = s_take (self, gw, 7);
    assert (slot && (slot->req & ZIM_GFAN_REQ) && !(slot->req & ZIM_NOTIFY_REQ));
    slot->stage = S_READ;
    assert (s_find (self, slot->req, S_READ) == slot);
    assert (s_find (self, slot->req, S_POST) == NULL);
    assert (s_find (self, slot->req + 1, S_READ) == NULL);
    assert (zim_gfan_waiting (self));
    s_free (self, slot);
    assert (!zim_gfan_waiting (self));
    zframe_destroy (&gw);
    zim_gfan_destroy (&self);
    if (verbose)
        zsys_info ("gfan: request ids and slots");
}
