/*  zim_storekit.c: a store actor and a DEALER speaking to it as a broker
    does, for tests (see zim_storekit.h).
*/
#include "store/zim_storekit.h"
#include "store/zim_db.h"
#include "store/zim_store.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <jansson.h>
#include <string.h>

struct _zim_storekit_t {
    zactor_t *actor; //  the store
    zsock_t *peer;   //  DEALER connected to its ROUTER
};

zim_storekit_t *zim_storekit_new (const char *dir, const char *const *settings)
{
    zim_storekit_t *self = zim_calloc (1, sizeof *self);
    self->actor = zactor_new (zim_store_actor, NULL);
    zstr_sendx (self->actor, "SET", "data", dir, NULL);
    for (int i = 0; settings && settings[i]; i += 2)
        zstr_sendx (self->actor, "SET", settings[i], settings[i + 1], NULL);
    zstr_sendx (self->actor, "BIND", "tcp://127.0.0.1:*", NULL);
    assert (zsock_wait (self->actor) == 0);
    zstr_sendx (self->actor, "START", NULL);
    assert (zsock_wait (self->actor) == 0);
    zstr_sendx (self->actor, "PORT", NULL);
    char *port = zstr_recv (self->actor);
    self->peer = zsock_new_dealer (NULL);
    assert (self->peer && zsock_connect (self->peer, "tcp://127.0.0.1:%s", port) == 0);
    zsock_set_rcvtimeo (self->peer, 5000);
    zstr_free (&port);
    return self;
}

void zim_storekit_destroy (zim_storekit_t **self_p)
{
    zim_storekit_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->peer);
    zactor_destroy (&self->actor);
    zim_free (self_p);
}

zsock_t *zim_storekit_peer (zim_storekit_t *self)
{
    return self->peer;
}

uint64_t zim_storekit_actor_stat (zactor_t *actor, const char *name)
{
    zstr_sendx (actor, "STATS", NULL);
    char *text = zstr_recv (actor);
    json_t *stats = json_loads (text, 0, NULL);
    json_t *v = json_object_get (stats, name);
    assert (json_is_integer (v));
    uint64_t n = (uint64_t)json_integer_value (v);
    json_decref (stats);
    zstr_free (&text);
    return n;
}

uint64_t zim_storekit_stat (zim_storekit_t *self, const char *name)
{
    return zim_storekit_actor_stat (self->actor, name);
}

void zim_storekit_send (zim_storekit_t *self, zim_wr_t *wr)
{
    int rc = zmq_send (zsock_resolve (self->peer), wr->data, wr->size, 0);
    assert (rc == (int)wr->size);
    zim_wr_reset (wr);
}

//  Sends one APPEND of msgs[0..n), all with sides.
void zim_storekit_append (zim_storekit_t *self, uint64_t req, const zim_storekit_msg_t *msgs,
                          size_t n, uint64_t sides)
{
    zim_wr_t wr, body;
    zim_wr_init (&wr);
    zim_wr_init (&body);
    zim_append_begin (&wr, req, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        zim_wr_reset (&body);
        if (msgs[i].big) {
            char *blob = zim_calloc (1, msgs[i].big);
            zim_wr_bin (&body, (zim_str_t){blob, msgs[i].big});
            free (blob);
        } else
            zim_wr_cstr (&body, msgs[i].text);
        zim_append_item_t item = {msgs[i].id,
                                  msgs[i].ts,
                                  zim_str ("demo"),
                                  zim_str (msgs[i].from),
                                  zim_str (msgs[i].to),
                                  zim_str (msgs[i].cid),
                                  {body.data, body.size},
                                  sides};
        zim_append_item_pack (&wr, &item);
    }
    zim_storekit_send (self, &wr);
    zim_wr_free (&wr);
    zim_wr_free (&body);
}

//  Receives the next answer, which must be a message of kind want; sets
//  rd at its first field. Caller owns return value (rd points into it).
static zframe_t *s_recv (zim_storekit_t *self, int want, zim_rd_t *rd, uint32_t *fields)
{
    zframe_t *frame = zframe_recv (self->peer);
    assert (frame);
    int kind;
    zim_rd_init (rd, zframe_data (frame), zframe_size (frame));
    assert (zim_msg_kind (rd, &kind, fields) == 0 && kind == want);
    return frame;
}

//  Receives the APPENDED for req with n results into res.
void zim_storekit_appended (zim_storekit_t *self, uint64_t req, zim_appended_item_t *res, size_t n)
{
    zim_rd_t rd;
    uint32_t fields;
    zim_appended_t m;
    zframe_t *frame = s_recv (self, ZIM_MSG_APPENDED, &rd, &fields);
    assert (zim_appended_unpack (&rd, fields, &m) == 0 && m.req == req && m.nitems == n);
    for (size_t i = 0; i < n; i++)
        assert (zim_appended_item_unpack (&m.items, &res[i]) == 0);
    zframe_destroy (&frame);
}

//  APPENDs one message and returns its result.
zim_appended_item_t zim_storekit_one (zim_storekit_t *self, zim_storekit_msg_t msg, uint64_t sides)
{
    zim_appended_item_t res;
    zim_storekit_append (self, 1, &msg, 1, sides);
    zim_storekit_appended (self, 1, &res, 1);
    return res;
}

//  Sends a READ.
void zim_storekit_ask (zim_storekit_t *self, uint64_t mode, const char *uid, int64_t from,
                       uint64_t limit, const char *peer)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_read_t r = {9,    mode,  zim_str ("demo"), zim_str (uid), zim_str ("phone"),
                    from, limit, zim_str (peer)};
    zim_read_pack (&wr, &r);
    zim_storekit_send (self, &wr);
    zim_wr_free (&wr);
}

//  Receives a PAGE: returns the item count (copied into out), sets *more
//  and *status; *size is the PAGE's encoded length.
size_t zim_storekit_page (zim_storekit_t *self, zim_storekit_item_t *out, bool *more,
                          int64_t *status, size_t *size)
{
    zim_rd_t rd;
    uint32_t fields;
    zim_page_t m;
    zframe_t *frame = s_recv (self, ZIM_MSG_PAGE, &rd, &fields);
    assert (zim_page_unpack (&rd, fields, &m) == 0 && m.req == 9);
    *more = m.more;
    *status = m.status;
    *size = zframe_size (frame);
    for (uint32_t i = 0; i < m.nitems; i++) {
        zim_item_t item;
        assert (zim_item_unpack (&m.items, &item) == 0);
        zim_storekit_item_t *o = &out[i < ZIM_STOREKIT_ITEMS ? i : ZIM_STOREKIT_ITEMS - 1];
        memset (o, 0, sizeof *o);
        o->seq = item.seq;
        o->id = item.id;
        zim_rd_t brd;
        zim_str_t text;
        zim_rd_init (&brd, item.body.ptr, item.body.len);
        if (zim_rd_str (&brd, &text) == 0)
            zim_str_copy (text, o->body, sizeof o->body);
    }
    size_t n = m.nitems;
    zframe_destroy (&frame);
    return n;
}

//  Sends a READ and receives its PAGE (see zim_storekit_page).
size_t zim_storekit_read (zim_storekit_t *self, uint64_t mode, const char *uid, int64_t from,
                          uint64_t limit, const char *peer, zim_storekit_item_t *out, bool *more,
                          int64_t *status, size_t *size)
{
    zim_storekit_ask (self, mode, uid, from, limit, peer);
    return zim_storekit_page (self, out, more, status, size);
}

//  Reads a whole inbox (sync) or conversation (history) page by page with
//  limit, each page at most max_bytes; checks seqs (ids) follow each other
//  with nothing skipped or repeated. Returns the number of messages.
size_t zim_storekit_read_all (zim_storekit_t *self, uint64_t mode, const char *uid,
                              const char *peer, uint64_t limit, size_t max_bytes,
                              zim_storekit_item_t *got)
{
    bool more = true;
    int64_t status, from = 0;
    size_t total = 0, size;
    uint64_t last = mode == ZIM_READ_SYNC ? 0 : UINT64_MAX;
    while (more) {
        size_t n =
            zim_storekit_read (self, mode, uid, from, limit, peer, got, &more, &status, &size);
        assert (status == 0 && size <= max_bytes && (n > 0 || !more));
        for (size_t i = 0; i < n; i++) {
            assert (mode == ZIM_READ_SYNC ? got[i].seq == last + 1 : got[i].id < last);
            last = mode == ZIM_READ_SYNC ? got[i].seq : got[i].id;
        }
        total += n;
        from = (int64_t)last;
    }
    return total;
}

//  -------------------------------------------------------------------------
//  Selftest: the kit's round trip, on which the store's selftest relies.

void zim_storekit_test (bool verbose)
{
    char *dir = zim_db_test_dir ();
    const char *settings[] = {"sync", "none", "name", "kit", NULL};
    zim_storekit_t *kit = zim_storekit_new (dir, settings);
    assert (kit && zim_storekit_peer (kit));
    uint64_t now = zim_now_ms (), base = 1ULL << 40;
    zim_storekit_msg_t msgs[3] = {{base, now, "alice", "bob", "k-1", "one", 0},
                                  {base + 1, now, "alice", "bob", "k-2", "two", 0},
                                  {base + 2, now, "alice", "bob", "k-3", NULL, 300}};
    zim_appended_item_t res[3];
    zim_storekit_append (kit, 7, msgs, 3, ZIM_SIDE_BOTH);
    zim_storekit_appended (kit, 7, res, 3);
    for (int i = 0; i < 3; i++)
        assert (res[i].status == ZIM_APPEND_STORED && res[i].to_seq == (uint64_t)i + 1);
    res[0] = zim_storekit_one (kit, msgs[0], ZIM_SIDE_BOTH);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].id == base);

    //  A page copies seqs, ids and short string bodies; a bin body is "".
    zim_storekit_item_t got[4];
    bool more;
    int64_t status;
    size_t size;
    assert (zim_storekit_read (kit, ZIM_READ_SYNC, "bob", 0, 10, "", got, &more, &status, &size) ==
            3);
    assert (!more && status == 0 && size > 300);
    assert (got[0].seq == 1 && got[0].id == base && streq (got[0].body, "one"));
    assert (streq (got[1].body, "two") && streq (got[2].body, ""));
    assert (zim_storekit_read_all (kit, ZIM_READ_HISTORY, "alice", "bob", 1, 1 << 20, got) == 3);

    //  A hand-made message through send; the counters through both stats.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_setcursor_pack (
        &wr, &(zim_setcursor_t){zim_str ("demo"), zim_str ("bob"), zim_str ("phone"), 2});
    zim_storekit_send (kit, &wr);
    assert (wr.size == 0);
    zim_storekit_ask (kit, ZIM_READ_SYNC, "bob", -1, 10, "");
    assert (zim_storekit_page (kit, got, &more, &status, &size) == 1 && got[0].seq == 3);
    assert (zim_storekit_stat (kit, "appended") == 3 && zim_storekit_stat (kit, "cursors") == 1);
    assert (zim_storekit_stat (kit, "duplicates") == 1);
    zim_wr_free (&wr);
    zim_storekit_destroy (&kit);
    zim_storekit_destroy (&kit);
    assert (!kit);
    zim_db_test_rmtree (dir);
    free (dir);
    if (verbose)
        zsys_info ("storekit: appends, pages, cursors and stats round trip");
}
