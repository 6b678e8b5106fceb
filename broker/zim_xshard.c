/*  zim_xshard.c: second halves of cross-shard sends, written in order per
    recipient shard and repaired by the broker when a write fails (see
    zim_xshard.h).
*/
#include "broker/zim_xshard.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>

//  Request ids of second-half writes have the top bit set, so that an
//  APPENDED tells which class it answers.
#define S_REQ_BIT (1ULL << 63)
//  The first wait before a failed repair is tried again, and the longest.
#define S_BACKOFF_MIN_US 100000
#define S_BACKOFF_MAX_US 2000000
//  A first write adopted after its batch timed out is kept this many
//  store_timeouts for a late answer, then given up.
#define S_LATE_TIMEOUTS 10

//  One second half.
typedef struct {
    void *owner;          //  its send's owner (batch); NULL once forgotten
    void *item;           //  its send, told of the outcome; NULL: nobody
    zim_append_item_t ai; //  what to write: views into the send, or into copy
    char *copy;           //  the bytes of ai once the send is gone
} s_half_t;

//  A growable list of halves.
typedef struct {
    s_half_t *v;  //  the halves, in first-write order
    size_t n;     //  how many
    size_t alloc; //  room
} s_halves_t;

//  What one recipient shard has going.
typedef struct {
    s_halves_t wait;     //  due and not written yet
    s_halves_t sent;     //  in the write in flight (when it carries new ones)
    s_halves_t repairs;  //  failed: written again, first, until the shard has them
    size_t repairs_sent; //  the first repairs, when the write in flight carries them
    uint64_t req;        //  the write in flight, 0 if none
    uint64_t sent_us;    //  when it went
    uint64_t retry_us;   //  repairs are not tried again before this
    uint64_t backoff_us; //  the wait after the next failed try
} s_lane_t;

//  A first write still unanswered whose sends were answered already.
typedef struct {
    uint64_t req;     //  its request id (to the sender's shard)
    uint64_t born_us; //  when it was adopted
    uint32_t n;       //  its items
    s_half_t *halves; //  per item: its second half (ai.id 0: none needed)
    int *shards;      //  per item: the recipient's shard
} s_late_t;

struct _zim_xshard_t {
    zim_shell_t *shell;                //  log lines
    zim_shards_t *shards;              //  where to write
    const zim_broker_limits_t *limits; //  store_timeout, max_batch_bytes, max_inflight
    zim_broker_stats_t *stats;         //  counters
    zim_xshard_done_fn *done;          //  outcome of each half
    void *ctx;                         //  for done
    s_lane_t lanes[ZIM_SHARDS_MAX];    //  per recipient shard
    size_t repairs;                    //  halves in every lane's repairs
    zlistx_t *late;                    //  s_late_t adopted first writes
    uint64_t next_req;                 //  request id counter
    zim_wr_t wr;                       //  APPEND being encoded
};

static void s_late_destroy (s_late_t **late_p)
{
    s_late_t *late = *late_p;
    if (!late)
        return;
    for (uint32_t i = 0; i < late->n; i++)
        free (late->halves[i].copy);
    free (late->halves);
    free (late->shards);
    zim_free (late_p);
}

zim_xshard_t *zim_xshard_new (zim_shell_t *shell, zim_shards_t *shards,
                              const zim_broker_limits_t *limits, zim_broker_stats_t *stats,
                              zim_xshard_done_fn *done, void *ctx)
{
    zim_xshard_t *self = zim_calloc (1, sizeof *self);
    *self = (zim_xshard_t){.shell = shell,
                           .shards = shards,
                           .limits = limits,
                           .stats = stats,
                           .done = done,
                           .ctx = ctx};
    self->late = zlistx_new ();
    zlistx_set_destructor (self->late, (zlistx_destructor_fn *)s_late_destroy);
    zim_wr_init (&self->wr);
    return self;
}

static void s_halves_free (s_halves_t *list)
{
    for (size_t i = 0; i < list->n; i++)
        free (list->v[i].copy);
    free (list->v);
    *list = (s_halves_t){0};
}

void zim_xshard_destroy (zim_xshard_t **self_p)
{
    zim_xshard_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < ZIM_SHARDS_MAX; i++) {
        s_halves_free (&self->lanes[i].wait);
        s_halves_free (&self->lanes[i].sent);
        s_halves_free (&self->lanes[i].repairs);
    }
    zlistx_destroy (&self->late);
    zim_wr_free (&self->wr);
    free (self);
    *self_p = NULL;
}

char *zim_xshard_hold (zim_append_item_t *ai)
{
    zim_str_t *parts[] = {&ai->app, &ai->from, &ai->to, &ai->cid, &ai->body};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++)
        total += parts[i]->len;
    char *copy = zim_malloc (total), *at = copy;
    for (size_t i = 0; i < 5; i++) {
        if (parts[i]->len)
            memcpy (at, parts[i]->ptr, parts[i]->len);
        parts[i]->ptr = at;
        at += parts[i]->len;
    }
    return copy;
}

//  Appends a half to a list.
static void s_push (s_halves_t *list, const s_half_t *half)
{
    if (list->n == list->alloc) {
        list->alloc = list->alloc ? 2 * list->alloc : 16;
        list->v = zim_realloc (list->v, list->alloc * sizeof *list->v);
    }
    list->v[list->n++] = *half;
}

//  Makes a half independent of its send: its bytes copied, nobody told.
static void s_orphan (s_half_t *half)
{
    if (!half->copy)
        half->copy = zim_xshard_hold (&half->ai);
    half->owner = half->item = NULL;
}

//  Moves halves into the repairs of lane (at its front or its end),
//  telling their sends err.
static void s_to_repairs (zim_xshard_t *self, s_lane_t *lane, s_half_t *halves, size_t n,
                          bool front, int err)
{
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        void *owner = halves[i].owner, *item = halves[i].item;
        s_orphan (&halves[i]);
        if (item)
            self->done (self->ctx, owner, item, err, 0);
    }
    s_halves_t *rep = &lane->repairs;
    if (rep->n + n > rep->alloc) {
        rep->alloc = rep->n + n + 16;
        rep->v = zim_realloc (rep->v, rep->alloc * sizeof *rep->v);
    }
    if (front) {
        memmove (rep->v + n, rep->v, rep->n * sizeof *rep->v);
        memcpy (rep->v, halves, n * sizeof *halves);
    } else
        memcpy (rep->v + rep->n, halves, n * sizeof *halves);
    rep->n += n;
    self->repairs += n;
}

//  Every half still waiting in lane goes behind the repairs: none may be
//  written before them.
static void s_block (zim_xshard_t *self, s_lane_t *lane)
{
    s_to_repairs (self, lane, lane->wait.v, lane->wait.n, false, ZIM_ERR_UNAVAILABLE);
    lane->wait.n = 0;
}

bool zim_xshard_blocked (zim_xshard_t *self, int shard)
{
    if (shard < 0 || shard >= ZIM_SHARDS_MAX)
        return false;
    return self->lanes[shard].repairs.n > 0 || self->repairs >= self->limits->max_inflight;
}

int zim_xshard_add (zim_xshard_t *self, int shard, void *owner, void *item,
                    const zim_append_item_t *ai)
{
    assert (shard >= 0 && shard < ZIM_SHARDS_MAX);
    s_lane_t *lane = &self->lanes[shard];
    s_half_t half = {owner, item, *ai, NULL};
    if (lane->repairs.n) {
        s_orphan (&half);
        s_to_repairs (self, lane, &half, 1, false, 0);
        return ZIM_ERR_UNAVAILABLE;
    }
    s_push (&lane->wait, &half);
    return 0;
}

void zim_xshard_repair (zim_xshard_t *self, int shard, const zim_append_item_t *ai)
{
    assert (shard >= 0 && shard < ZIM_SHARDS_MAX);
    s_lane_t *lane = &self->lanes[shard];
    s_block (self, lane);
    s_half_t half = {NULL, NULL, *ai, NULL};
    s_orphan (&half);
    s_to_repairs (self, lane, &half, 1, false, 0);
    zim_shell_warn (self->shell,
                    "a send to %.*s was stored on its sender's shard after its deadline: "
                    "its second half to store shard %s is written by this broker",
                    (int)ai->to.len, ai->to.ptr, zim_shards_name (self->shards, shard));
}

void zim_xshard_adopt (zim_xshard_t *self, uint64_t req, uint32_t n, const int *shards,
                       const zim_append_item_t *halves)
{
    s_late_t *late = zim_calloc (1, sizeof *late);
    *late = (s_late_t){req, zim_mono_us (), n, zim_calloc (n, sizeof (s_half_t)),
                       zim_malloc (n * sizeof (int))};
    for (uint32_t i = 0; i < n; i++) {
        late->shards[i] = shards[i];
        if (shards[i] >= 0) {
            late->halves[i].ai = halves[i];
            late->halves[i].copy = zim_xshard_hold (&late->halves[i].ai);
        }
    }
    zlistx_add_end (self->late, late);
}

//  An adopted first write is answered: the halves of what it stored
//  become repairs.
static void s_late_answered (zim_xshard_t *self, s_late_t *late, zim_rd_t *rd, uint32_t fields)
{
    zim_appended_t ap;
    if (zim_appended_unpack (rd, fields, &ap) || ap.nitems != late->n)
        return;
    for (uint32_t i = 0; i < late->n; i++) {
        zim_appended_item_t res;
        if (zim_appended_item_unpack (&ap.items, &res))
            return;
        if (late->shards[i] >= 0 &&
            (res.status == ZIM_APPEND_STORED || res.status == ZIM_APPEND_DUPLICATE)) {
            late->halves[i].ai.id = res.id;
            late->halves[i].ai.ts = res.ts;
            zim_xshard_repair (self, late->shards[i], &late->halves[i].ai);
        }
    }
}

//  Encodes up to max_batch_bytes of halves[0..n) into one APPEND; returns
//  how many went in (at least one).
static size_t s_encode (zim_xshard_t *self, uint64_t req, const s_half_t *halves, size_t n)
{
    size_t count = 0, bytes = 0;
    while (count < n && count < 65536) {
        const zim_append_item_t *ai = &halves[count].ai;
        size_t size = 64 + ai->app.len + ai->from.len + ai->to.len + ai->cid.len + ai->body.len;
        if (count && bytes + size > self->limits->max_batch_bytes)
            break;
        bytes += size;
        count++;
    }
    zim_wr_reset (&self->wr);
    zim_append_begin (&self->wr, req, (uint32_t)count);
    for (size_t i = 0; i < count; i++)
        zim_append_item_pack (&self->wr, &halves[i].ai);
    return count;
}

//  A write failed (what): the lane's repairs wait before the next try.
static void s_failed (zim_xshard_t *self, int shard, uint64_t now_us, const char *what)
{
    s_lane_t *lane = &self->lanes[shard];
    lane->retry_us = now_us + (lane->backoff_us ? lane->backoff_us : S_BACKOFF_MIN_US);
    lane->backoff_us = lane->backoff_us ? 2 * lane->backoff_us : 2 * S_BACKOFF_MIN_US;
    if (lane->backoff_us > S_BACKOFF_MAX_US)
        lane->backoff_us = S_BACKOFF_MAX_US;
    zim_shell_warn (self->shell,
                    "second halves to store shard %s: %s; %zu wait to be written again and "
                    "cross-shard sends to its users get 5030 until they are",
                    zim_shards_name (self->shards, shard), what, lane->repairs.n);
}

//  Sends the next write of one lane, if it has none in flight.
static void s_flush_lane (zim_xshard_t *self, int shard, uint64_t now_us)
{
    s_lane_t *lane = &self->lanes[shard];
    if (lane->req || (!lane->repairs.n && !lane->wait.n))
        return;
    if (lane->repairs.n && now_us < lane->retry_us)
        return;
    uint64_t req = S_REQ_BIT | ++self->next_req;
    if (lane->repairs.n) {
        size_t n = s_encode (self, req, lane->repairs.v, lane->repairs.n);
        if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == -1) {
            s_failed (self, shard, now_us, "the shard is down or far behind");
            return;
        }
        lane->repairs_sent = n;
    } else {
        size_t n = s_encode (self, req, lane->wait.v, lane->wait.n);
        if (zim_shards_send (self->shards, shard, self->wr.data, self->wr.size) == -1) {
            s_block (self, lane);
            s_failed (self, shard, now_us, "the shard is down or far behind");
            return;
        }
        for (size_t i = 0; i < n; i++)
            s_push (&lane->sent, &lane->wait.v[i]);
        memmove (lane->wait.v, lane->wait.v + n, (lane->wait.n - n) * sizeof *lane->wait.v);
        lane->wait.n -= n;
    }
    lane->req = req;
    lane->sent_us = now_us;
}

void zim_xshard_flush (zim_xshard_t *self, uint64_t now_us)
{
    size_t n = zim_shards_size (self->shards);
    for (size_t i = 0; i < n && i < ZIM_SHARDS_MAX; i++)
        s_flush_lane (self, (int)i, now_us);
}

//  The write in flight of a lane failed as a whole (err for its sends).
static void s_write_failed (zim_xshard_t *self, int shard, int err, uint64_t now_us,
                            const char *what)
{
    s_lane_t *lane = &self->lanes[shard];
    if (!lane->repairs_sent) {
        s_to_repairs (self, lane, lane->sent.v, lane->sent.n, true, err);
        lane->sent.n = 0;
        s_block (self, lane);
    }
    lane->repairs_sent = 0;
    lane->req = 0;
    s_failed (self, shard, now_us, what);
}

//  The store's result for one half: 0 (it has it), ZIM_ERR_CID_CONFLICT,
//  or a retryable code.
static int s_result (const s_half_t *half, const zim_appended_item_t *res)
{
    if (res->status == ZIM_APPEND_STORED || res->status == ZIM_APPEND_DUPLICATE)
        //  A duplicate under another id: the shard holds another message
        //  under this cid.
        return res->id == half->ai.id ? 0 : ZIM_ERR_CID_CONFLICT;
    if (res->status == ZIM_APPEND_CONFLICT)
        return ZIM_ERR_CID_CONFLICT;
    return res->status == ZIM_EFULL ? ZIM_ERR_UNAVAILABLE : ZIM_ERR_INTERNAL;
}

int zim_xshard_appended (zim_xshard_t *self, uint64_t req, zim_rd_t *rd, uint32_t fields)
{
    if (!(req & S_REQ_BIT)) {
        s_late_t *late;
        for (late = zlistx_first (self->late); late; late = zlistx_next (self->late))
            if (late->req == req)
                break;
        if (!late)
            return -1;
        zlistx_detach_cur (self->late);
        s_late_answered (self, late, rd, fields);
        s_late_destroy (&late);
        return 0;
    }
    int shard = 0;
    size_t nshards = zim_shards_size (self->shards);
    while ((size_t)shard < nshards && self->lanes[shard].req != req)
        shard++;
    if ((size_t)shard == nshards)
        return 0; //  abandoned already: its halves are being repaired
    s_lane_t *lane = &self->lanes[shard];
    uint64_t now = zim_mono_us ();
    bool repairs = lane->repairs_sent > 0;
    s_half_t *halves = repairs ? lane->repairs.v : lane->sent.v;
    size_t n = repairs ? lane->repairs_sent : lane->sent.n;
    zim_appended_t ap;
    zim_appended_item_t *res = zim_malloc (n * sizeof *res);
    bool ok = zim_appended_unpack (rd, fields, &ap) == 0 && ap.nitems == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = zim_appended_item_unpack (&ap.items, &res[i]) == 0;
    if (!ok) {
        self->stats->bad++;
        free (res);
        s_write_failed (self, shard, ZIM_ERR_INTERNAL, now, "the shard answered a bad APPENDED");
        return 0;
    }
    //  Halves the shard has leave; the others stay, in order, as repairs.
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        s_half_t half = halves[i];
        int err = s_result (&half, &res[i]);
        if (err == ZIM_ERR_CID_CONFLICT)
            zim_shell_warn (self->shell,
                            "store shard %s holds another message under cid %.*s of %.*s: "
                            "the send is refused (4009)",
                            zim_shards_name (self->shards, shard), (int)half.ai.cid.len,
                            half.ai.cid.ptr, (int)half.ai.from.len, half.ai.from.ptr);
        if (err == 0 || err == ZIM_ERR_CID_CONFLICT) {
            if (half.item)
                self->done (self->ctx, half.owner, half.item, err, res[i].to_seq);
            else if (err == 0)
                self->stats->repaired++;
            free (half.copy);
        } else
            halves[kept++] = half;
    }
    free (res);
    if (repairs) {
        memmove (halves + kept, halves + n, (lane->repairs.n - n) * sizeof *halves);
        lane->repairs.n -= n - kept;
        self->repairs -= n - kept;
        lane->repairs_sent = 0;
    } else {
        //  Failed new halves go first in the repairs, before any that came
        //  after them.
        s_to_repairs (self, lane, halves, kept, true, ZIM_ERR_UNAVAILABLE);
        lane->sent.n = 0;
        if (kept)
            s_block (self, lane);
    }
    lane->req = 0;
    if (kept)
        s_failed (self, shard, now, "the shard refused some");
    else {
        lane->backoff_us = 0;
        lane->retry_us = 0;
        if (repairs && lane->repairs.n == 0)
            zim_shell_warn (self->shell,
                            "store shard %s has every second half again: cross-shard sends "
                            "to its users resume",
                            zim_shards_name (self->shards, shard));
    }
    s_flush_lane (self, shard, now);
    return 0;
}

void zim_xshard_forget (zim_xshard_t *self, void *owner)
{
    for (size_t s = 0; s < ZIM_SHARDS_MAX; s++) {
        s_halves_t *lists[] = {&self->lanes[s].wait, &self->lanes[s].sent};
        for (size_t l = 0; l < 2; l++)
            for (size_t i = 0; i < lists[l]->n; i++)
                if (lists[l]->v[i].owner == owner)
                    s_orphan (&lists[l]->v[i]);
    }
}

void zim_xshard_tick (zim_xshard_t *self, uint64_t now_us)
{
    s_late_t *late;
    while ((late = zlistx_first (self->late)) &&
           now_us - late->born_us > S_LATE_TIMEOUTS * self->limits->store_timeout_us) {
        zlistx_detach (self->late, NULL);
        zim_shell_warn (self->shell,
                        "a store never answered a write of %u sends: their second halves are "
                        "left to their senders' retries",
                        late->n);
        s_late_destroy (&late);
    }
    size_t n = zim_shards_size (self->shards);
    for (size_t s = 0; s < n && s < ZIM_SHARDS_MAX; s++) {
        s_lane_t *lane = &self->lanes[s];
        if (lane->req && now_us - lane->sent_us > self->limits->store_timeout_us) {
            self->stats->store_timeouts++;
            s_write_failed (self, (int)s, ZIM_ERR_TIMEOUT, now_us, "no answer in time");
        }
        s_flush_lane (self, (int)s, now_us);
    }
}

size_t zim_xshard_repairs (zim_xshard_t *self)
{
    return self->repairs;
}

bool zim_xshard_waiting (zim_xshard_t *self)
{
    if (zlistx_size (self->late))
        return true;
    size_t n = zim_shards_size (self->shards);
    for (size_t s = 0; s < n && s < ZIM_SHARDS_MAX; s++)
        if (self->lanes[s].req || self->lanes[s].repairs.n || self->lanes[s].wait.n)
            return true;
    return false;
}

//  -------------------------------------------------------------------------
//  Selftest: ROUTERs playing two store shards, driven by hand.

//  What the done callback heard.
typedef struct {
    int err[16];      //  per item index
    uint64_t seq[16]; //  to_seq per item index
    int calls;        //  how many
} s_test_heard_t;

static void s_test_done (void *ctx, void *owner, void *item, int err, uint64_t to_seq)
{
    s_test_heard_t *heard = (s_test_heard_t *)ctx;
    int index = (int)(intptr_t)item - 1;
    assert (owner == (void *)heard && index >= 0 && index < 16);
    heard->err[index] = err;
    heard->seq[index] = to_seq;
    heard->calls++;
}

//  Queues half number index (its cid is "c<index>") for shard.
static int s_test_add (zim_xshard_t *xs, s_test_heard_t *heard, int shard, int index)
{
    static char cids[16][8];
    snprintf (cids[index], sizeof cids[index], "c%d", index);
    zim_append_item_t ai = {100 + (uint64_t)index, 5,
                            zim_str ("demo"),      zim_str ("alice"),
                            zim_str ("bob"),       zim_str (cids[index]),
                            {"\xa1x", 2},          ZIM_SIDE_TO};
    return zim_xshard_add (xs, shard, heard, (void *)(intptr_t)(index + 1), &ai);
}

//  The store side: the next APPEND on store (within timeout_ms), its
//  request id and its items' ids; returns how many items, -1 if none came.
static int s_test_take (zsock_t *store, int timeout_ms, uint64_t *req, uint64_t *ids)
{
    zsock_set_rcvtimeo (store, timeout_ms);
    zmsg_t *msg = zmsg_recv (store);
    if (!msg)
        return -1;
    zframe_t *body = zmsg_last (msg);
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_append_t ap;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_APPEND);
    assert (zim_append_unpack (&rd, fields, &ap) == 0);
    *req = ap.req;
    for (uint32_t i = 0; i < ap.nitems; i++) {
        zim_append_item_t ai;
        assert (zim_append_item_unpack (&ap.items, &ai) == 0 && ai.sides == ZIM_SIDE_TO);
        ids[i] = ai.id;
    }
    zmsg_destroy (&msg);
    return (int)ap.nitems;
}

//  Answers an APPEND of n items with status each (to_seq 10 + id - 100).
static void s_test_answer (zim_xshard_t *xs, uint64_t req, const uint64_t *ids, int n,
                           int64_t status)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_appended_begin (&wr, req, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        zim_appended_item_t res = {status, ids[i], 0, 10 + ids[i] - 100, 5};
        zim_appended_item_pack (&wr, &res);
    }
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    assert (zim_xshard_appended (xs, req, &rd, fields) == 0);
    zim_wr_free (&wr);
}

void zim_xshard_test (bool verbose)
{
    static const zim_shell_class_t cls = {.role = "broker"};
    zim_shell_t *shell = zim_shell_new (NULL, &cls, NULL, "broker-t");
    zim_broker_limits_t limits = {
        .store_timeout_us = 60000000, .max_batch_bytes = 1 << 20, .max_inflight = 100};
    zim_broker_stats_t stats = {0};
    zim_shards_t *shards = zim_shards_new (shell);
    zsock_t *sa = zsock_new (ZMQ_ROUTER);
    assert (zsock_bind (sa, "inproc://xshard-test-a") == 0);
    assert (zim_shards_add_names (shards, "xa,xb") == 0);
    //  Shard b is down at first: an endpoint nobody listens on (inproc
    //  would queue for a later bind). An abstract ipc name of this process:
    //  a tcp port released for the purpose could be taken by another
    //  process before the test binds it again (seen under load).
    zsock_t *sb = NULL;
    char b_endpoint[64];
    snprintf (b_endpoint, sizeof b_endpoint, "ipc://@zim-xshard-test-%d-%u", (int)getpid (),
              (unsigned)zim_mono_us ());
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_map_begin (&wr, zim_str ("router-1"), 1, 1, 2);
    const char *members[2][2] = {{"xa", "inproc://xshard-test-a"}, {"xb", b_endpoint}};
    for (int i = 0; i < 2; i++) {
        zim_member_t m = {zim_str (members[i][0]),
                          zim_str ("store"),
                          zim_str (members[i][1]),
                          1,
                          zim_str (""),
                          true,
                          0,
                          zim_str ("{}")};
        zim_member_pack (&wr, &m);
    }
    assert (zim_shards_map (shards, wr.data, wr.size) == 0);
    zim_wr_free (&wr);
    int a = streq (zim_shards_name (shards, 0), "xa") ? 0 : 1, b = 1 - a;
    s_test_heard_t heard = {0};
    zim_xshard_t *xs = zim_xshard_new (shell, shards, &limits, &stats, s_test_done, &heard);
    uint64_t req, ids[16];

    //  Two halves in one write; a third waits while it is in flight.
    assert (s_test_add (xs, &heard, a, 0) == 0 && s_test_add (xs, &heard, a, 1) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    assert (s_test_take (sa, 1000, &req, ids) == 2 && ids[0] == 100 && ids[1] == 101);
    assert (zim_xshard_waiting (xs));
    assert (s_test_add (xs, &heard, a, 2) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    uint64_t req2, ids2[16];
    assert (s_test_take (sa, 50, &req2, ids2) == -1);
    s_test_answer (xs, req, ids, 2, ZIM_APPEND_STORED);
    assert (heard.calls == 2 && heard.err[0] == 0 && heard.seq[1] == 11);
    //  The answer sent the next one.
    assert (s_test_take (sa, 1000, &req, ids) == 1 && ids[0] == 102);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_DUPLICATE);
    assert (heard.calls == 3 && heard.err[2] == 0 && heard.seq[2] == 12);

    //  Another message under the cid on that shard: refused, not repaired.
    assert (s_test_add (xs, &heard, a, 3) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    assert (s_test_take (sa, 1000, &req, ids) == 1);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_CONFLICT);
    assert (heard.err[3] == ZIM_ERR_CID_CONFLICT && !zim_xshard_blocked (xs, a));

    //  A failed write: its halves are repaired, and so is every half due
    //  later for that shard; new sends to it are held meanwhile.
    assert (s_test_add (xs, &heard, a, 4) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    assert (s_test_take (sa, 1000, &req, ids) == 1 && ids[0] == 104);
    assert (s_test_add (xs, &heard, a, 5) == 0); //  waits behind it
    s_test_answer (xs, req, ids, 1, ZIM_ESTORE);
    assert (heard.err[4] == ZIM_ERR_UNAVAILABLE && heard.err[5] == ZIM_ERR_UNAVAILABLE);
    assert (zim_xshard_blocked (xs, a) && !zim_xshard_blocked (xs, b));
    assert (zim_xshard_repairs (xs) == 2);
    int calls = heard.calls;
    assert (s_test_add (xs, &heard, a, 6) == ZIM_ERR_UNAVAILABLE);
    assert (heard.calls == calls && zim_xshard_repairs (xs) == 3);
    //  Not before the backoff; then all three, in order.
    zim_xshard_flush (xs, zim_mono_us ());
    assert (s_test_take (sa, 20, &req, ids) == -1);
    zim_xshard_tick (xs, zim_mono_us () + 200000);
    assert (s_test_take (sa, 1000, &req, ids) == 3);
    assert (ids[0] == 104 && ids[1] == 105 && ids[2] == 106);
    s_test_answer (xs, req, ids, 3, ZIM_APPEND_STORED);
    assert (zim_xshard_repairs (xs) == 0 && !zim_xshard_blocked (xs, a));
    assert (stats.repaired == 3 && heard.calls == calls);

    //  A shard that is down (nobody bound): the write fails at once and
    //  becomes a repair; once it is up, the repair goes through.
    assert (s_test_add (xs, &heard, b, 7) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    assert (heard.err[7] == ZIM_ERR_UNAVAILABLE && zim_xshard_blocked (xs, b));
    sb = zsock_new (ZMQ_ROUTER);
    assert (zsock_bind (sb, "%s", b_endpoint) == 0);
    int n = -1;
    for (int tries = 0; tries < 100 && n == -1; tries++) {
        zim_xshard_tick (xs, zim_mono_us () + 3000000);
        n = s_test_take (sb, 20, &req, ids);
    }
    assert (n == 1 && ids[0] == 107);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_DUPLICATE);
    assert (!zim_xshard_blocked (xs, b) && stats.repaired == 4);

    //  No answer in time: repaired. Its owner forgotten meanwhile: nobody
    //  is told, the half is still written.
    assert (s_test_add (xs, &heard, b, 8) == 0);
    zim_xshard_flush (xs, zim_mono_us ());
    assert (s_test_take (sb, 1000, &req, ids) == 1);
    calls = heard.calls;
    zim_xshard_forget (xs, &heard);
    limits.store_timeout_us = 1000;
    zclock_sleep (2);
    zim_xshard_tick (xs, zim_mono_us ());
    assert (zim_xshard_blocked (xs, b) && stats.store_timeouts == 1 && heard.calls == calls);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_STORED); //  too late: ignored
    zim_xshard_tick (xs, zim_mono_us () + 3000000);
    assert (s_test_take (sb, 1000, &req, ids) == 1 && ids[0] == 108);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_DUPLICATE);
    assert (!zim_xshard_blocked (xs, b) && heard.calls == calls);

    //  A half whose first write was answered late is a repair at once.
    zim_append_item_t late = {200,
                              5,
                              zim_str ("demo"),
                              zim_str ("carol"),
                              zim_str ("bob"),
                              zim_str ("late"),
                              {"\xa1y", 2},
                              ZIM_SIDE_TO};
    zim_xshard_repair (xs, a, &late);
    assert (zim_xshard_blocked (xs, a));
    zim_xshard_tick (xs, zim_mono_us ());
    assert (s_test_take (sa, 1000, &req, ids) == 1 && ids[0] == 200);
    s_test_answer (xs, req, ids, 1, ZIM_APPEND_STORED);
    assert (!zim_xshard_blocked (xs, a) && !zim_xshard_waiting (xs));

    //  Repairs at their bound hold every cross-shard send.
    limits.max_inflight = 1;
    late.id = 201;
    zim_xshard_repair (xs, a, &late);
    assert (zim_xshard_blocked (xs, a) && zim_xshard_blocked (xs, b));
    //  Destroyed with a repair pending: its copy is freed.
    zsock_destroy (&sb);
    zim_shards_destroy (&shards);
    zim_xshard_destroy (&xs);
    zim_xshard_destroy (&xs);
    zsock_destroy (&sa);
    zim_shell_destroy (&shell);
    if (verbose)
        zsys_info ("xshard: order per shard, repairs, holds and deadlines behave");
}
