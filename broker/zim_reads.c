/*  zim_reads.c: sync, history and cursors through the user's store shard,
    and the pages held behind sends (see zim_reads.h).
*/
#include "broker/zim_reads.h"
#include "msg/zim_util.h"

#include <assert.h>

//  A sync or history request waiting for its PAGE.
typedef struct {
    uint64_t req;     //  store request id
    zframe_t *gw;     //  gateway routing id
    uint64_t conn;    //  connection on that gateway
    uint64_t rid;     //  client's request id
    uint64_t born_us; //  when it was sent
} s_read_t;

//  A page answered while batches received before it were in flight.
typedef struct {
    uint64_t after; //  sent once no batch with req <= after is in flight
    zframe_t *gw;   //  gateway routing id
    uint64_t conn;  //  connection on that gateway
    uint64_t rid;   //  client's request id (for a 5030 if it cannot go)
    uint8_t *frame; //  the client frame
    size_t size;    //  its size
} s_parked_t;

struct _zim_reads_t {
    zim_shell_t *shell;                //  log lines
    zim_shards_t *shards;              //  where users live
    zim_deliver_t *deliver;            //  answers
    const zim_broker_limits_t *limits; //  store_timeout, max_parked
    zim_broker_stats_t *stats;         //  counters
    zlistx_t *reads;                   //  s_read_t in flight, oldest first
    zlistx_t *parked;                  //  s_parked_t held, oldest first
    size_t parked_bytes;               //  their frames' bytes
    bool parked_full;                  //  the last page to park found no room
    uint64_t next_req;                 //  request id counter
    zim_wr_t wr;                       //  READ and SETCURSOR being encoded
};

static void s_read_destroy (s_read_t **read_p)
{
    if (*read_p)
        zframe_destroy (&(*read_p)->gw);
    zim_free (read_p);
}

static void s_parked_destroy (s_parked_t **parked_p)
{
    if (*parked_p) {
        zframe_destroy (&(*parked_p)->gw);
        free ((*parked_p)->frame);
    }
    zim_free (parked_p);
}

zim_reads_t *zim_reads_new (zim_shell_t *shell, zim_shards_t *shards, zim_deliver_t *deliver,
                            const zim_broker_limits_t *limits, zim_broker_stats_t *stats)
{
    zim_reads_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    self->shards = shards;
    self->deliver = deliver;
    self->limits = limits;
    self->stats = stats;
    self->reads = zlistx_new ();
    zlistx_set_destructor (self->reads, (zlistx_destructor_fn *)s_read_destroy);
    self->parked = zlistx_new ();
    zlistx_set_destructor (self->parked, (zlistx_destructor_fn *)s_parked_destroy);
    zim_wr_init (&self->wr);
    return self;
}

void zim_reads_destroy (zim_reads_t **self_p)
{
    zim_reads_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy (&self->reads);
    zlistx_destroy (&self->parked);
    zim_wr_free (&self->wr);
    free (self);
    *self_p = NULL;
}

//  Sends an error to the connection of a read, with its rid.
static void s_error (zim_reads_t *self, zframe_t *gw, uint64_t conn, int code, uint64_t rid)
{
    zim_deliver_error (self->deliver, zframe_data (gw), zframe_size (gw), conn, code,
                       (zim_str_t){NULL, 0}, true, rid);
}

//  Answers a read the broker could not decode, if its connection and rid
//  (fields 1 and 5 of SYNC and HISTORY alike) can be read.
static void s_malformed (zim_reads_t *self, zframe_t *gw, zim_rd_t *rd, uint32_t fields)
{
    self->stats->bad++;
    zim_shell_warn (self->shell, "dropped a malformed read request from gateway %.*s",
                    (int)zframe_size (gw), (const char *)zframe_data (gw));
    uint64_t conn, rid;
    if (fields >= 5 && zim_rd_uint (rd, &conn) == 0 && zim_rd_skip (rd, NULL) == 0 &&
        zim_rd_skip (rd, NULL) == 0 && zim_rd_skip (rd, NULL) == 0 && zim_rd_uint (rd, &rid) == 0)
        s_error (self, gw, conn, ZIM_ERR_INTERNAL, rid);
}

void zim_reads_request (zim_reads_t *self, zframe_t *gw, int kind, zim_rd_t *rd, uint32_t fields)
{
    zim_rd_t start = *rd;
    zim_read_t r;
    uint64_t conn, rid;
    if (kind == ZIM_MSG_SYNC) {
        zim_sync_t m;
        if (zim_sync_unpack (rd, fields, &m) || zim_rd_left (rd)) {
            s_malformed (self, gw, &start, fields);
            return;
        }
        r = (zim_read_t){0,       ZIM_READ_SYNC, m.who.app,   m.who.uid, m.who.device,
                         m.since, m.limit,       zim_str ("")};
        conn = m.who.conn;
        rid = m.rid;
    } else {
        zim_history_t m;
        if (zim_history_unpack (rd, fields, &m) || zim_rd_left (rd)) {
            s_malformed (self, gw, &start, fields);
            return;
        }
        //  before 0 (or past INT64_MAX): from the newest.
        int64_t before = (int64_t)m.before;
        r = (zim_read_t){0,      ZIM_READ_HISTORY, m.who.app, m.who.uid, m.who.device,
                         before, m.limit,          m.peer};
        if (before < 0)
            r.from = INT64_MAX;
        conn = m.who.conn;
        rid = m.rid;
    }
    r.req = ++self->next_req;
    zim_wr_reset (&self->wr);
    zim_read_pack (&self->wr, &r);
    int shard = zim_shards_of (self->shards, r.app, r.uid);
    if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == -1) {
        s_error (self, gw, conn, ZIM_ERR_UNAVAILABLE, rid);
        return;
    }
    s_read_t *read = zim_calloc (1, sizeof *read);
    *read = (s_read_t){r.req, zframe_dup (gw), conn, rid, zim_mono_us ()};
    self->stats->reads++;
    zlistx_add_end (self->reads, read);
}

void zim_reads_cursor (zim_reads_t *self, zim_rd_t *rd, uint32_t fields)
{
    zim_cursor_t m;
    if (zim_cursor_unpack (rd, fields, &m) || zim_rd_left (rd)) {
        self->stats->bad++;
        zim_shell_warn (self->shell, "dropped a malformed CURSOR");
        return;
    }
    zim_setcursor_t sc = {m.who.app, m.who.uid, m.who.device, m.seq};
    zim_wr_reset (&self->wr);
    zim_setcursor_pack (&self->wr, &sc);
    int shard = zim_shards_of (self->shards, sc.app, sc.uid);
    if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == -1)
        zim_shell_warn (self->shell, "store shard %s of %.*s unavailable: cursor not moved",
                        zim_shards_name (self->shards, shard), (int)sc.uid.len, sc.uid.ptr);
    self->stats->cursors++;
}

//  Sends a page frame (the deliverer's frame buffer) to its connection; one
//  its gateway's byte budget cannot take becomes a 5030 (the client syncs
//  again).
static void s_send_page (zim_reads_t *self, zframe_t *gw, uint64_t conn, uint64_t rid)
{
    if (zim_deliver_out (self->deliver, zframe_data (gw), zframe_size (gw), &conn, 1) == ZIM_EFULL)
        s_error (self, gw, conn, ZIM_ERR_UNAVAILABLE, rid);
}

int zim_reads_page (zim_reads_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields, uint64_t last)
{
    s_read_t *read;
    for (read = zlistx_first (self->reads); read; read = zlistx_next (self->reads))
        if (read->req == req)
            break;
    zim_page_t page;
    //  Read every item before writing any, so that a bad one changes nothing.
    bool ok = zim_page_unpack (rd, fields, &page) == 0;
    if (ok) {
        zim_rd_t items = page.items;
        for (uint32_t i = 0; ok && i < page.nitems; i++) {
            zim_item_t item;
            ok = zim_item_unpack (&items, &item) == 0;
        }
        ok = ok && zim_rd_left (&items) == 0;
    }
    if (!read)
        return ok ? 0 : -1;
    zlistx_detach_cur (self->reads);
    if (!ok || page.status) {
        int code = !ok                         ? ZIM_ERR_INTERNAL
                   : page.status == ZIM_EVALUE ? ZIM_ERR_BAD_RECIPIENT
                   : page.status == ZIM_EFULL  ? ZIM_ERR_UNAVAILABLE
                                               : ZIM_ERR_INTERNAL;
        s_error (self, read->gw, read->conn, code, read->rid);
        s_read_destroy (&read);
        return ok ? 0 : -1;
    }
    zim_wr_t *fr = zim_deliver_frame (self->deliver);
    zim_cframe_page_begin (fr, read->rid, page.more, page.nitems);
    for (uint32_t i = 0; i < page.nitems; i++) {
        zim_item_t item;
        zim_item_unpack (&page.items, &item);
        zim_cframe_page_item (fr, &item);
    }
    if (!last && zlistx_size (self->parked) == 0)
        s_send_page (self, read->gw, read->conn, read->rid);
    else {
        bool full = self->parked_bytes + fr->size > self->limits->max_parked;
        if (full != self->parked_full) {
            self->parked_full = full;
            if (full)
                zim_shell_warn (self->shell,
                                "%zu bytes of pages wait for earlier sends (max_parked): "
                                "further syncs get 5030 until they drain",
                                self->parked_bytes);
            else
                zsys_info ("%s: pages waiting for sends are below max_parked again",
                           zim_shell_name (self->shell));
        }
        if (full) {
            self->stats->parked_refused++;
            s_error (self, read->gw, read->conn, ZIM_ERR_UNAVAILABLE, read->rid);
        } else {
            s_parked_t *parked = zim_calloc (1, sizeof *parked);
            s_parked_t *prev = zlistx_last (self->parked);
            parked->after = prev && prev->after > last ? prev->after : last;
            parked->gw = read->gw;
            read->gw = NULL;
            parked->conn = read->conn;
            parked->rid = read->rid;
            parked->frame = zim_malloc (fr->size);
            memcpy (parked->frame, fr->data, fr->size);
            parked->size = fr->size;
            self->parked_bytes += parked->size;
            zlistx_add_end (self->parked, parked);
        }
    }
    s_read_destroy (&read);
    return 0;
}

void zim_reads_release (zim_reads_t *self, uint64_t head)
{
    s_parked_t *parked;
    while ((parked = zlistx_first (self->parked)) && (!head || parked->after < head)) {
        zlistx_detach (self->parked, NULL);
        zim_wr_t *fr = zim_deliver_frame (self->deliver);
        zim_wr_raw (fr, parked->frame, parked->size);
        s_send_page (self, parked->gw, parked->conn, parked->rid);
        self->parked_bytes -= parked->size;
        s_parked_destroy (&parked);
    }
}

void zim_reads_expire (zim_reads_t *self, uint64_t now_us)
{
    s_read_t *read;
    while ((read = zlistx_first (self->reads)) &&
           now_us - read->born_us > self->limits->store_timeout_us) {
        zlistx_detach (self->reads, NULL);
        self->stats->store_timeouts++;
        s_error (self, read->gw, read->conn, ZIM_ERR_TIMEOUT, read->rid);
        s_read_destroy (&read);
    }
}

bool zim_reads_waiting (zim_reads_t *self)
{
    return zlistx_size (self->reads) > 0;
}

//  -------------------------------------------------------------------------
//  Selftest: a ROUTER playing the store, another the broker's front, and a
//  DEALER playing the gateway, over inproc.

typedef struct {
    zim_shell_t *shell;
    zim_broker_limits_t limits;
    zim_broker_stats_t stats;
    zim_shards_t *shards;
    zim_deliver_t *deliver;
    zim_reads_t *reads;
    zsock_t *store, *front, *gw;
    zframe_t *gw_id;
    zim_wr_t wr;
} s_test_t;

//  The next frame the gateway gets: its op, code and rid (0 if none).
static void s_test_answer (s_test_t *t, const char *op, int64_t code, uint64_t rid)
{
    zim_deliver_peek_t got;
    assert (zim_deliver_recv (t->gw, &got, NULL, 0) == 0);
    if (!streq (got.op, op) || got.code != code || got.rid != rid)
        zsys_error ("reads test: got %s %" PRId64 " rid %" PRIu64 ", not %s %" PRId64
                    " rid %" PRIu64,
                    got.op, got.code, got.rid, op, code, rid);
    assert (streq (got.op, op) && got.code == code && got.rid == rid);
}

//  Sends a SYNC for bob with rid through the relay.
static void s_test_sync (s_test_t *t, uint64_t rid)
{
    zim_sync_t m = {{7, zim_str ("demo"), zim_str ("bob"), zim_str ("d")}, rid, 0, 0};
    zim_wr_reset (&t->wr);
    zim_sync_pack (&t->wr, &m);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, t->wr.data, t->wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_reads_request (t->reads, t->gw_id, kind, &rd, fields);
}

//  The store side: takes the READ and returns its request id.
static uint64_t s_test_read_req (s_test_t *t)
{
    zmsg_t *msg = zmsg_recv (t->store);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *body = zmsg_last (msg);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_read_t r;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_READ);
    assert (zim_read_unpack (&rd, fields, &r) == 0 && zim_str_eq (r.uid, "bob"));
    zmsg_destroy (&msg);
    return r.req;
}

//  Hands the relay a PAGE for req with status and one message.
static int s_test_page (s_test_t *t, uint64_t req, int64_t status, uint64_t last)
{
    zim_wr_reset (&t->wr);
    zim_page_begin (&t->wr, req, status, false, status ? 0 : 1);
    zim_item_t item = {1, 2, 3, zim_str ("alice"), zim_str ("bob"), {"\xa2hi", 3}};
    if (!status)
        zim_item_pack (&t->wr, &item);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    uint64_t got;
    zim_rd_init (&rd, t->wr.data, t->wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_rd_t at = rd;
    assert (zim_rd_uint (&at, &got) == 0 && got == req);
    return zim_reads_page (t->reads, req, &rd, fields, last);
}

void zim_reads_test (bool verbose)
{
    s_test_t t = {0};
    static const zim_shell_class_t cls = {.role = "broker"};
    t.shell = zim_shell_new (NULL, &cls, NULL, "broker-t");
    t.limits = (zim_broker_limits_t){
        .store_timeout_us = 60000000, .max_parked = 1 << 20, .max_out_bytes = 1 << 20};
    t.store = zsock_new (ZMQ_ROUTER);
    assert (zsock_bind (t.store, "inproc://reads-test-store") == 0);
    t.front = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (t.front, 1);
    assert (zsock_bind (t.front, "inproc://reads-test-front") == 0);
    t.gw = zsock_new (ZMQ_DEALER);
    zsock_set_identity (t.gw, "gw-t");
    zsock_set_rcvtimeo (t.gw, 2000);
    zsock_connect (t.gw, "inproc://reads-test-front");
    zstr_send (t.gw, "hello");
    zmsg_t *hello = zmsg_recv (t.front);
    zmsg_destroy (&hello);
    t.gw_id = zframe_new ("gw-t", 4);
    zim_wr_init (&t.wr);
    t.shards = zim_shards_new (t.shell);
    t.deliver = zim_deliver_new (t.shell, &t.limits, &t.stats);
    zim_deliver_use (t.deliver, t.front);
    t.reads = zim_reads_new (t.shell, t.shards, t.deliver, &t.limits, &t.stats);

    //  No shard known: 5030 at once, with the rid.
    s_test_sync (&t, 11);
    s_test_answer (&t, "error", ZIM_ERR_UNAVAILABLE, 11);
    assert (!zim_reads_waiting (t.reads));

    //  A page with nothing in flight goes out at once.
    assert (zim_shards_connect (t.shards, "inproc://reads-test-store") == 0);
    s_test_sync (&t, 12);
    assert (zim_reads_waiting (t.reads) && t.stats.reads == 1);
    assert (s_test_page (&t, s_test_read_req (&t), 0, 0) == 0);
    s_test_answer (&t, "page", 0, 12);

    //  A store error carries the rid too; a bad peer is the client's fault.
    s_test_sync (&t, 13);
    assert (s_test_page (&t, s_test_read_req (&t), ZIM_EVALUE, 0) == 0);
    s_test_answer (&t, "error", ZIM_ERR_BAD_RECIPIENT, 13);
    s_test_sync (&t, 14);
    assert (s_test_page (&t, s_test_read_req (&t), ZIM_ESTORE, 0) == 0);
    s_test_answer (&t, "error", ZIM_ERR_INTERNAL, 14);

    //  A malformed PAGE: 5000 with the rid, and the caller counts it.
    s_test_sync (&t, 15);
    uint64_t req = s_test_read_req (&t);
    zim_rd_t rd;
    zim_rd_init (&rd, "\x01\x02", 2);
    assert (zim_reads_page (t.reads, req, &rd, 3, 0) == -1);
    s_test_answer (&t, "error", ZIM_ERR_INTERNAL, 15);
    //  A PAGE for nothing in flight is dropped.
    assert (s_test_page (&t, 999, 0, 0) == 0);

    //  A malformed SYNC whose connection and rid can be read is answered.
    zim_wr_reset (&t.wr);
    zim_wr_array (&t.wr, 6);
    zim_wr_uint (&t.wr, ZIM_MSG_SYNC);
    zim_wr_uint (&t.wr, 7);
    zim_wr_cstr (&t.wr, "demo");
    zim_wr_cstr (&t.wr, "bob");
    zim_wr_cstr (&t.wr, "d");
    zim_wr_uint (&t.wr, 16);
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, t.wr.data, t.wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_reads_request (t.reads, t.gw_id, kind, &rd, fields);
    s_test_answer (&t, "error", ZIM_ERR_INTERNAL, 16);
    assert (t.stats.bad == 1);

    //  Behind batches 5 and 6: held until both completed, then in order.
    s_test_sync (&t, 17);
    assert (s_test_page (&t, s_test_read_req (&t), 0, 5) == 0);
    s_test_sync (&t, 18);
    assert (s_test_page (&t, s_test_read_req (&t), 0, 6) == 0);
    s_test_sync (&t, 19);
    assert (s_test_page (&t, s_test_read_req (&t), 0, 0) == 0); //  behind the held ones
    zim_reads_release (t.reads, 5);                             //  batch 5 still in flight
    zsock_set_rcvtimeo (t.gw, 50);
    assert (zframe_recv (t.gw) == NULL);
    zim_reads_release (t.reads, 6); //  5 is done, 6 is not
    s_test_answer (&t, "page", 0, 17);
    assert (zframe_recv (t.gw) == NULL);
    zsock_set_rcvtimeo (t.gw, 2000);
    zim_reads_release (t.reads, 0); //  none in flight
    s_test_answer (&t, "page", 0, 18);
    s_test_answer (&t, "page", 0, 19);

    //  No room to hold: 5030 with the rid, counted.
    t.limits.max_parked = 10;
    s_test_sync (&t, 20);
    assert (s_test_page (&t, s_test_read_req (&t), 0, 9) == 0);
    s_test_answer (&t, "error", ZIM_ERR_UNAVAILABLE, 20);
    assert (t.stats.parked_refused == 1);

    //  No answer in time: 5040 with the rid.
    t.limits.store_timeout_us = 1000;
    s_test_sync (&t, 21);
    s_test_read_req (&t);
    zclock_sleep (5);
    zim_reads_expire (t.reads, zim_mono_us ());
    s_test_answer (&t, "error", ZIM_ERR_TIMEOUT, 21);
    assert (!zim_reads_waiting (t.reads) && t.stats.store_timeouts == 1);

    //  A cursor becomes SETCURSOR on the user's shard.
    zim_cursor_t cursor = {{7, zim_str ("demo"), zim_str ("bob"), zim_str ("d")}, 3};
    zim_wr_reset (&t.wr);
    zim_cursor_pack (&t.wr, &cursor);
    zim_rd_init (&rd, t.wr.data, t.wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    zim_reads_cursor (t.reads, &rd, fields);
    zmsg_t *msg = zmsg_recv (t.store);
    zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_SETCURSOR);
    zmsg_destroy (&msg);
    assert (t.stats.cursors == 1);

    zim_reads_destroy (&t.reads);
    zim_reads_destroy (&t.reads);
    zim_deliver_destroy (&t.deliver);
    zim_shards_destroy (&t.shards);
    zframe_destroy (&t.gw_id);
    zim_wr_free (&t.wr);
    zsock_destroy (&t.gw);
    zsock_destroy (&t.front);
    zsock_destroy (&t.store);
    zim_shell_destroy (&t.shell);
    if (verbose)
        zsys_info ("reads: relay, rids on every error, held pages and deadlines behave");
}
