/*  zim_gfan.c: a broker's groups and channels (see zim_gfan.h). Requests
    in flight live in a table of slots indexed by their request id
    (zim_slots.h), as in zim_notify.c.
*/
#include "broker/zim_gfan.h"
#include "broker/zim_slots.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

#define S_EXPIRE_EVERY 100000 //  us between deadline scans

//  Where a request is.
typedef enum {
    S_FREE = 0, //  the slot is free
    S_POST,     //  GPOST sent to the group's shard
    S_FAN,      //  GFANs sent to the shards of the members elsewhere (a job)
    S_ROUTE,    //  acked; ROUTE_Q for the members sent
    S_READ      //  GREAD sent (to every shard for a list)
} s_stage_t;

#define S_POLL_REQ ((uint64_t)1 << 61) //  a jobs poll's request id
#define S_POLL_EVERY 3000000           //  us between polls for unfinished jobs
#define S_JOB_AGE 5000                 //  ms: a job older than this has lost its broker

//  One request in flight.
typedef struct {
    zim_slot_t head;     //  stage (s_stage_t), request id, gateway, connection
    zframe_t *send;      //  POST/FAN/ROUTE: the GSEND (made up for a job found by a poll)
    bool headless;       //  a job found by a poll: nobody to answer
    int gshard;          //  the group's shard
    uint32_t nmembers;   //  FAN/ROUTE: members in acc (gmember records)
    uint32_t pending_fans; //  FAN: GFANs unanswered
    bool fan_failed;     //  FAN: one of them failed
    bool ran_job;        //  GFANs were sent: GDONE when they all succeed
    bool duplicate;      //  the GPOST found the message stored before
    uint64_t id, ts;     //  the stored message
    uint64_t gseq;       //  its gseq
    uint64_t seq;        //  the sender's seq
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
    zim_slots_t *slots;                //  requests in flight (ZIM_GFAN_SLOTS)
    uint64_t next_scan_us;             //  the next deadline scan
    zim_wr_t wr;                       //  backbone messages being encoded
    zim_wr_t lists[ZIM_SHARDS_MAX];    //  a job's members, per shard, comma-separated
    uint64_t next_poll_us;             //  the next poll for unfinished jobs
    uint64_t polls;                    //  poll request counter
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
    self->slots = zim_slots_new (ZIM_GFAN_SLOTS, sizeof (s_slot_t), ZIM_GFAN_REQ,
                                 ZIM_NOTIFY_REQ | S_POLL_REQ);
    zim_wr_init (&self->wr);
    return self;
}

void zim_gfan_destroy (zim_gfan_t **self_p)
{
    zim_gfan_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < ZIM_GFAN_SLOTS; i++) {
        s_slot_t *slot = (s_slot_t *)zim_slots_at (self->slots, i);
        zframe_destroy (&slot->send);
        zim_wr_free (&slot->acc);
    }
    for (size_t i = 0; i < ZIM_SHARDS_MAX; i++)
        zim_wr_free (&self->lists[i]);
    zim_wr_free (&self->wr);
    zim_slots_destroy (&self->slots);
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
    s_slot_t *slot = (s_slot_t *)zim_slots_take (self->slots, gw, conn);
    if (!slot)
        return NULL;
    zim_wr_t acc = slot->acc; //  kept: its buffer is reused
    memset ((char *)slot + sizeof slot->head, 0, sizeof *slot - sizeof slot->head);
    slot->acc = acc;
    zim_wr_reset (&slot->acc);
    return slot;
}

static void s_free (zim_gfan_t *self, s_slot_t *slot)
{
    zframe_destroy (&slot->send);
    zim_slots_free (self->slots, &slot->head);
}

//  The slot of request req at stage, or NULL.
static s_slot_t *s_find (zim_gfan_t *self, uint64_t req, s_stage_t stage)
{
    return (s_slot_t *)zim_slots_find (self->slots, req, (int)stage);
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
    if (slot->headless)
        return;
    zim_gsend_t m;
    s_gsend (slot, &m);
    self->stats->send_errors++;
    zim_deliver_error (self->deliver, slot->head.gw, slot->head.gw_len, slot->head.conn, code, m.cid, false, 0);
}

//  Answers a GGET's reader with an error naming its rid.
static void s_read_error (zim_gfan_t *self, s_slot_t *slot, int code)
{
    zim_deliver_error (self->deliver, slot->head.gw, slot->head.gw_len, slot->head.conn, code,
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
    slot->gshard = shard;
    zim_gpost_t p = {slot->head.req, slot->id,  slot->ts, m.who.app,   m.who.uid,
                     m.cid,     m.group,   m.body,   {NULL, 0},   {NULL, 0}};
    //  A cluster: the store places members with the same ring.
    char names[4096];
    size_t len = 0;
    for (size_t i = 0; zim_shards_size (self->shards) > 1 && i < zim_shards_size (self->shards);
         i++) {
        const char *name = zim_shards_name (self->shards, (int)i);
        int w = snprintf (names + len, sizeof names - len, "%s%s", len ? "," : "", name);
        if (w < 0 || (size_t)w >= sizeof names - len)
            break;
        len += (size_t)w;
    }
    if (len) {
        p.shards = (zim_str_t){names, len};
        p.shard = zim_str (zim_shards_name (self->shards, shard));
    }
    zim_wr_reset (&self->wr);
    zim_gpost_pack (&self->wr, &p);
    if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size)) {
        s_send_error (self, slot, ZIM_ERR_UNAVAILABLE);
        s_free (self, slot);
        return;
    }
    slot->head.stage = S_POST;
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
    if (m.mode == ZIM_GREAD_LOG) {
        //  Kept for the live room a channel's reader joins (s_read_r).
        zim_wr_str (&slot->acc, m.who.app);
        zim_wr_str (&slot->acc, m.who.uid);
        zim_wr_str (&slot->acc, m.group);
    }
    zim_gread_t q = {slot->head.req, m.mode,  m.who.app, m.who.uid,
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
    slot->head.stage = S_READ;
}

void zim_gfan_request (zim_gfan_t *self, zframe_t *gw, zframe_t *frame, int kind)
{
    if (kind == ZIM_MSG_GSEND)
        s_post (self, gw, frame);
    else
        s_get (self, gw, frame);
}

//  -------------------------------------------------------------------------
//  Channels' live rooms: a channel G's online readers are in the room
//  "g:G" (clients cannot join or publish there: the gateway keeps "g:"
//  rooms for this). A reader's connections join it through the routers
//  when a csync of the channel succeeds (the store checked the member);
//  a message is published there once (the routers and gateways write it
//  to each connection in the room: no store write, no per-member
//  routing); those who left since the last message are taken out first.

//  Orders every connection of users (gmembers, n of them) to join or
//  leave (op ZIM_API_ROOM_JOIN or _LEAVE) the live room of group.
static void s_room_order (zim_gfan_t *self, zim_str_t app, zim_str_t group, uint64_t op,
                          zim_rd_t *users, uint32_t n)
{
    char roomb[2 + ZIM_ID_MAX];
    zim_wr_reset (&self->wr);
    zim_api_q_pack (&self->wr, &(zim_api_q_t){.req = ZIM_GFAN_REQ,
                                              .app = app,
                                              .op = op,
                                              .room = s_conv (group, roomb),
                                              .body = {"\xc0", 1},
                                              .ntargets = n});
    for (uint32_t i = 0; i < n; i++) {
        zim_gmember_t gm;
        if (zim_gmember_unpack (users, &gm))
            return;
        zim_api_target_pack (&self->wr, &(zim_api_target_t){gm.uid, zim_str ("")});
    }
    if (!self->router ||
        zmq_send (self->router, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        self->stats->unroutable++; //  no router took it: readers csync
}

//  A channel's new message to its live room: a `room` frame whose body is
//  the message as a csync page has it (with its gseq).
static void s_channel_live (zim_gfan_t *self, s_slot_t *slot, zim_rd_t *left, uint32_t nleft)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    if (nleft)
        s_room_order (self, m.who.app, m.group, ZIM_API_ROOM_LEAVE, left, nleft);
    char convb[2 + ZIM_ID_MAX];
    zim_str_t conv = s_conv (m.group, convb);
    zim_wr_t body;
    zim_wr_init (&body);
    zim_sitem_pack (&body, &(zim_sitem_t){0, slot->id, m.who.uid, m.group, conv, m.body, slot->ts,
                                          m.group, slot->gseq, {NULL, 0}});
    zim_wr_reset (&self->wr);
    zim_room_pub_pack (&self->wr, &(zim_room_pub_t){m.who.app, m.who.uid,
                                                    {(const char *)body.data, body.size},
                                                    {NULL, NULL}, 1});
    zim_room_name_pack (&self->wr, &(zim_room_name_t){conv});
    zim_wr_free (&body);
    if (!self->router ||
        zmq_send (self->router, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        self->stats->unroutable++; //  no router took it: readers csync
}

//  A reader's csync of a channel succeeded: the asking connection joins
//  the channel's live room (a CONN_CTL to its gateway, behind the page;
//  the slot's acc holds app, uid and group).
static void s_channel_join (zim_gfan_t *self, s_slot_t *slot)
{
    zim_rd_t rd;
    zim_str_t app, uid, group;
    zim_rd_init (&rd, slot->acc.data, slot->acc.size);
    if (zim_rd_str (&rd, &app) || zim_rd_str (&rd, &uid) || zim_rd_str (&rd, &group))
        return;
    char roomb[2 + ZIM_ID_MAX];
    zim_wr_reset (&self->wr);
    zim_conn_ctl_pack (&self->wr, &(zim_conn_ctl_t){.app = app,
                                                    .what = ZIM_CTL_JOIN,
                                                    .room = s_conv (group, roomb),
                                                    .uid = zim_str (""),
                                                    .nconns = 1});
    zim_wr_uint (&self->wr, slot->head.conn);
    zim_deliver_ctl (self->deliver, slot->head.gw, slot->head.gw_len, self->wr.data, self->wr.size);
}

//  -------------------------------------------------------------------------
//  Store answers

//  Asks the routers where the members are; without one, done.
static void s_route (zim_gfan_t *self, s_slot_t *slot)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    zim_wr_reset (&self->wr);
    zim_route_q_begin (&self->wr, slot->head.req, slot->nmembers);
    zim_rd_t list;
    zim_rd_init (&list, slot->acc.data, slot->acc.size);
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
    slot->head.stage = S_ROUTE;
    slot->head.since_us = zim_mono_us ();
}

//  The members' fan-out is complete: the job is done (GDONE to the
//  group's shard), the sender acked, the members' copies on their way.
static void s_finish (zim_gfan_t *self, s_slot_t *slot)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    if (slot->ran_job) {
        zim_wr_reset (&self->wr);
        zim_gdone_pack (&self->wr, &(zim_gdone_t){slot->id, slot->seq});
        zim_shards_send (self->shards, slot->gshard, self->wr.data, self->wr.size);
        self->stats->repaired += slot->headless;
    }
    if (slot->headless) {
        s_free (self, slot); //  a job found by a poll: its members sync
        return;
    }
    zim_wr_t *fr = zim_deliver_frame (self->deliver);
    zim_cframe_gack (fr, m.cid, slot->id, slot->seq, slot->ts, slot->gseq);
    zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1);
    self->stats->acks++;
    if (slot->nmembers == 0 || (slot->duplicate && !slot->ran_job)) {
        s_free (self, slot);
        return;
    }
    s_route (self, slot);
}

//  Takes a list of gmembers: those with a seq into the slot's list (the
//  sender's seq noted), those without (on other shards) into per-shard
//  lists. Returns how many had none, or -1 if the list is malformed.
static int s_take_members (zim_gfan_t *self, s_slot_t *slot, zim_rd_t *list, uint32_t n,
                           zim_str_t from)
{
    int remote = 0;
    for (uint32_t i = 0; i < n; i++) {
        zim_gmember_t gm;
        if (zim_gmember_unpack (list, &gm))
            return -1;
        if (gm.seq) {
            zim_gmember_pack (&slot->acc, &gm);
            slot->nmembers++;
            if (gm.uid.len == from.len && memcmp (gm.uid.ptr, from.ptr, from.len) == 0)
                slot->seq = gm.seq;
            continue;
        }
        zim_gsend_t m;
        s_gsend (slot, &m);
        int shard = zim_shards_of (self->shards, m.who.app, gm.uid);
        if (shard < 0 || shard >= ZIM_SHARDS_MAX)
            return -1;
        zim_wr_t *l = &self->lists[shard];
        if (l->size)
            zim_wr_raw (l, ",", 1);
        zim_wr_raw (l, gm.uid.ptr, gm.uid.len);
        remote++;
    }
    return remote;
}

//  Sends a GFAN to every shard with members in self->lists; returns 0, or
//  -1 if one could not be sent (the job stays: a retry or a poll redoes it).
static int s_fan (zim_gfan_t *self, s_slot_t *slot)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    int rc = 0;
    for (size_t sh = 0; sh < ZIM_SHARDS_MAX; sh++) {
        zim_wr_t *l = &self->lists[sh];
        if (!l->size)
            continue;
        zim_gfanout_t g = {slot->head.req, slot->id,   slot->ts, m.who.app,
                           m.who.uid, m.cid,      m.group,  slot->gseq,
                           m.body,    {l->data, l->size}};
        zim_wr_reset (&self->wr);
        zim_gfanout_pack (&self->wr, &g);
        if (zim_shards_send (self->shards, (int)sh, self->wr.data, self->wr.size) == 0)
            slot->pending_fans++;
        else
            rc = -1;
        zim_wr_reset (l);
    }
    slot->ran_job = true;
    slot->head.stage = S_FAN;
    slot->head.since_us = zim_mono_us ();
    return rc;
}

//  Members known: fan out to the other shards, or finish.
static void s_members_known (zim_gfan_t *self, s_slot_t *slot, zim_rd_t *list, uint32_t n)
{
    zim_gsend_t m;
    s_gsend (slot, &m);
    int remote = s_take_members (self, slot, list, n, m.who.uid);
    if (remote < 0) {
        for (size_t sh = 0; sh < ZIM_SHARDS_MAX; sh++)
            zim_wr_reset (&self->lists[sh]);
        self->stats->bad++;
        s_send_error (self, slot, ZIM_ERR_INTERNAL);
        s_free (self, slot);
        return;
    }
    if (remote == 0) {
        s_finish (self, slot);
        return;
    }
    if (s_fan (self, slot)) {
        if (slot->pending_fans == 0) {
            s_send_error (self, slot, ZIM_ERR_UNAVAILABLE);
            s_free (self, slot);
            return;
        }
        //  Some shard did not take its part: when the others have answered,
        //  the sender gets 5030 and the job stays for a retry or a poll.
        slot->fan_failed = true;
    }
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
    slot->duplicate = r.status == ZIM_APPEND_DUPLICATE;
    self->stats->duplicates += slot->duplicate;
    slot->id = r.id;
    slot->ts = r.ts;
    slot->gseq = r.gseq;
    slot->seq = r.seq;
    if (r.kind == ZIM_GROUP_CHANNEL) {
        //  The ack first (it leaves before the deliveries), then the live
        //  room; a duplicate was published the first time.
        zim_gsend_t m;
        s_gsend (slot, &m);
        zim_cframe_gack (zim_deliver_frame (self->deliver), m.cid, slot->id, slot->seq, slot->ts,
                         slot->gseq);
        zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1);
        self->stats->acks++;
        if (!slot->duplicate)
            s_channel_live (self, slot, &r.members, r.nmembers);
        s_free (self, slot);
        return 0;
    }
    s_members_known (self, slot, &r.members, r.nmembers);
    return 0;
}

static int s_fanned (zim_gfan_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_gfanned_t r;
    if (zim_gfanned_unpack (rd, fields, &r))
        return -1;
    s_slot_t *slot = s_find (self, r.req, S_FAN);
    if (!slot)
        return 0;
    if (r.status < 0)
        slot->fan_failed = true;
    else {
        zim_gsend_t m;
        s_gsend (slot, &m);
        if (s_take_members (self, slot, &r.members, r.nmembers, m.who.uid) != 0) {
            slot->fan_failed = true; //  a part without seqs: malformed
            for (size_t sh = 0; sh < ZIM_SHARDS_MAX; sh++)
                zim_wr_reset (&self->lists[sh]);
        }
    }
    if (--slot->pending_fans > 0)
        return 0;
    if (slot->fan_failed) {
        s_send_error (self, slot, ZIM_ERR_UNAVAILABLE);
        s_free (self, slot);
    } else
        s_finish (self, slot);
    return 0;
}

//  A poll's answer: each unfinished job becomes a request of its own.
static void s_jobs (zim_gfan_t *self, int shard, const zim_gread_r_t *r)
{
    zim_rd_t list;
    zim_rd_init (&list, r->items.ptr, r->items.len);
    zframe_t *none = zframe_new ("", 0);
    for (uint64_t i = 0; i < r->count; i++) {
        zim_gjob_t j;
        if (zim_gjob_unpack (&list, &j))
            break;
        s_slot_t *slot = s_take (self, none, 0);
        if (!slot)
            break;
        slot->headless = true;
        slot->gshard = shard;
        slot->id = j.id;
        slot->ts = j.ts;
        slot->gseq = j.gseq;
        zim_wr_reset (&self->wr);
        zim_gsend_pack (&self->wr, &(zim_gsend_t){{0, j.app, j.from, zim_str ("job")}, j.cid,
                                                  j.group, j.body});
        slot->send = zframe_new (self->wr.data, self->wr.size);
        //  Its members as gmembers without seqs.
        zim_wr_t ms;
        zim_wr_init (&ms);
        uint32_t n = 0;
        for (size_t a = 0, b; a < j.members.len; a = b + 1) {
            for (b = a; b < j.members.len && j.members.ptr[b] != ','; b++)
                ;
            zim_gmember_pack (&ms, &(zim_gmember_t){{j.members.ptr + a, b - a}, 0});
            n++;
        }
        zim_rd_t mr;
        zim_rd_init (&mr, ms.data, ms.size);
        zim_shell_warn (self->shell, "finishing the fan-out of group message %" PRIu64
                                     " (%u members on other shards): its broker did not",
                        j.id, n);
        s_members_known (self, slot, &mr, n);
        zim_wr_free (&ms);
    }
    zframe_destroy (&none);
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
    if (zim_deliver_out (self->deliver, slot->head.gw, slot->head.gw_len, &slot->head.conn, 1) == ZIM_EFULL)
        s_read_error (self, slot, ZIM_ERR_UNAVAILABLE);
}

static int s_read_r (zim_gfan_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_gread_r_t r;
    if (zim_gread_r_unpack (rd, fields, &r))
        return -1;
    if (r.req & S_POLL_REQ) {
        if (r.status == 0)
            s_jobs (self, (int)(r.req & 0xffff), &r);
        return 0;
    }
    s_slot_t *slot = s_find (self, r.req, S_READ);
    if (!slot)
        return 0;
    if (r.status && !slot->status)
        slot->status = r.status;
    slot->more |= r.more;
    if (slot->mode == ZIM_GREAD_LOG) {
        if (r.status)
            s_read_error (self, slot, zim_group_wire (r.status));
        else {
            s_read_answer (self, slot, r.reset, r.items, (uint32_t)r.count);
            if (r.kind == ZIM_GROUP_CHANNEL)
                s_channel_join (self, slot);
        }
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
    if (kind == ZIM_MSG_GPOSTED)
        return s_posted (self, rd, fields);
    if (kind == ZIM_MSG_GFANNED)
        return s_fanned (self, rd, fields);
    return s_read_r (self, rd, fields);
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
    zim_rd_init (&list, slot->acc.data, slot->acc.size);
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
        if (zim_deliver_fan (self->deliver, &rr.lists, mine ? slot->head.gw : NULL,
                             mine ? slot->head.gw_len : 0, slot->head.conn)) {
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

//  Asks every shard for jobs a broker left unfinished (a cluster only).
static void s_poll (zim_gfan_t *self, uint64_t now_us)
{
    size_t n = zim_shards_size (self->shards);
    if (n < 2 || now_us < self->next_poll_us)
        return;
    self->next_poll_us = now_us + S_POLL_EVERY;
    uint64_t now_ms = zim_now_ms ();
    for (size_t sh = 0; sh < n; sh++) {
        zim_gread_t q = {ZIM_GFAN_REQ | S_POLL_REQ | ((++self->polls & 0xffff) << 16) | sh,
                         ZIM_GREAD_JOBS, zim_str ("-"), zim_str ("-"), zim_str (""),
                         now_ms - S_JOB_AGE, 100};
        zim_wr_reset (&self->wr);
        zim_gread_pack (&self->wr, &q);
        zim_shards_send (self->shards, (int)sh, self->wr.data, self->wr.size);
    }
}

void zim_gfan_expire (zim_gfan_t *self, uint64_t now_us)
{
    s_poll (self, now_us);
    if (!zim_slots_busy (self->slots) || now_us < self->next_scan_us)
        return;
    self->next_scan_us = now_us + S_EXPIRE_EVERY;
    for (size_t i = 0; i < ZIM_GFAN_SLOTS; i++) {
        s_slot_t *slot = (s_slot_t *)zim_slots_at (self->slots, i);
        if (slot->head.stage == S_FREE)
            continue;
        uint64_t age = now_us - slot->head.since_us;
        if (slot->head.stage == S_ROUTE && age > self->limits->route_timeout_us) {
            self->stats->route_timeouts++;
            s_free (self, slot); //  acked; members sync
        } else if (slot->head.stage != S_ROUTE && age > self->limits->store_timeout_us) {
            self->stats->store_timeouts++;
            if (slot->head.stage == S_POST || slot->head.stage == S_FAN)
                s_send_error (self, slot, ZIM_ERR_TIMEOUT);
            else
                s_read_error (self, slot, ZIM_ERR_TIMEOUT);
            s_free (self, slot);
        }
    }
}

bool zim_gfan_waiting (zim_gfan_t *self)
{
    //  A cluster's broker polls for unfinished jobs: it wakes up.
    return zim_slots_busy (self->slots) > 0 || (self->shards && zim_shards_size (self->shards) > 1);
}

//  -------------------------------------------------------------------------
//  Selftest: the request ids; the flows run in tests/test_groups and tests/test_gchannel.

void zim_gfan_test (bool verbose)
{
    zim_broker_limits_t limits = {0};
    zim_broker_stats_t stats = {0};
    zim_gfan_t *self = zim_gfan_new (NULL, NULL, NULL, NULL, NULL, &limits, &stats);
    zframe_t *gw = zframe_new ("gw-1", 4);
    //  Request ids carry the tag and never the notify part's bit; slots
    //  are found by id and stage only.
    s_slot_t *slot = s_take (self, gw, 7);
    assert (slot && (slot->head.req & ZIM_GFAN_REQ) && !(slot->head.req & ZIM_NOTIFY_REQ));
    slot->head.stage = S_READ;
    assert (s_find (self, slot->head.req, S_READ) == slot);
    assert (s_find (self, slot->head.req, S_POST) == NULL);
    assert (s_find (self, slot->head.req + 1, S_READ) == NULL);
    assert (zim_gfan_waiting (self));
    s_free (self, slot);
    assert (!zim_gfan_waiting (self));
    zframe_destroy (&gw);
    zim_gfan_destroy (&self);
    if (verbose)
        zsys_info ("gfan: request ids and slots");
}
