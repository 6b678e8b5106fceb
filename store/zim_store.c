/*  zim_store.c: the store actor. Drains everything the brokers have sent,
    hands the writes to one group commit (zim_commit: one transaction, one
    fsync), then answers: APPENDEDs once committed, READs from a read
    transaction that sees the commit. This file owns the loop, the drain,
    the replies and the timers; what is written and read is in the other
    store classes (zim_store.h lists them).
*/
#include "store/zim_store.h"
#include "store/zim_commit.h"
#include "store/zim_db.h"
#include "store/zim_reader.h"
#include "store/zim_receipts.h"
#include "store/zim_retention.h"
#include "store/zim_storekit.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAP_SIZE (4ULL << 30) //  default LMDB map size
#define S_MAX_BATCH 4096        //  default APPEND items per transaction
#define S_CHECKPOINT_MS 50      //  default ms between checkpoints of the log's window
#define S_WAL_BYTES (16ULL << 20) //  default size of the write-ahead log
#define S_COMMIT_DELAY_US 2000  //  default least µs between group commits under load
#define S_RETENTION 604800      //  default retention, seconds
#define S_PURGE_INTERVAL 60     //  default seconds between purge runs
#define S_PUSH_TTL 86400        //  default seconds a push record waits for the bridge
#define S_PURGE_MAX 10000       //  records deleted per purge transaction
#define S_DRAIN_MAX 4096        //  backbone messages taken per drain
#define S_HWM 10000             //  ROUTER high-water marks, messages

//  One received backbone message, kept until the drain is answered.
typedef struct {
    zmq_msg_t rid;  //  ROUTER routing id of the sender
    zmq_msg_t body; //  the msgpack message
    int kind;       //  ZIM_MSG_APPEND, _READ or _SETCURSOR
    uint64_t req;   //  APPEND: request id to echo
    size_t first;   //  APPEND: index of its first result
    size_t count;   //  APPEND: number of items
} s_pending_t;

typedef struct {
    zim_shell_t *shell; //  pipe commands, settings, STATS, warnings
    zsock_t *router;    //  ROUTER for brokers, NULL until BIND

    //  Settings (zim_store.h).
    char *data;              //  environment directory (the shell owns it)
    zim_fsync_t sync;        //  fsync policy
    uint64_t map_size;       //  LMDB map size in bytes
    uint64_t max_batch;      //  APPEND items per write transaction
    uint64_t retention;      //  seconds; 0 keeps messages forever
    uint64_t purge_every;    //  seconds between purge runs
    uint64_t max_page_bytes; //  longest PAGE, encoded
    uint64_t push_ttl;       //  seconds a push record is kept; 0 for ever
    uint64_t max_group;      //  members of a group, at most
    uint64_t max_channel;    //  members of a channel, at most
    uint64_t max_behind;     //  a csync further behind gets the newest page and reset
    uint64_t checkpoint_ms;  //  ms between checkpoints (sync = batch); 0: no log
    uint64_t wal_bytes;      //  size of the write-ahead log
    uint64_t commit_delay_us; //  least µs from one group commit to the next

    zim_db_t *db;         //  the environment, after START
    zim_commit_t *commit; //  writes APPENDs and SETCURSORs
    zim_reader_t *reader; //  answers READs

    s_pending_t *pend;            //  S_DRAIN_MAX received messages
    size_t npend;                 //  in use
    zim_str_t *writes;            //  bodies of the drain's APPENDs and SETCURSORs
    zim_appended_item_t *results; //  one per APPEND item of the drain
    size_t nresults;              //  in use
    size_t results_alloc;         //  allocated
    zim_wr_t wr;                  //  reply writer, reused
    uint64_t next_purge;          //  mono ms of the next purge run
    uint64_t drain_us;            //  mono µs the last drain began

    //  Counters reported by STATS.
    zim_commit_stats_t w;  //  of the writes (zim_commit counts them)
    uint64_t reads;        //  READs answered
    uint64_t bad_messages; //  malformed backbone messages dropped
    uint64_t purged;       //  messages deleted by retention
    uint64_t reply_drops;  //  answers that could not be sent
} s_store_t;

//  -------------------------------------------------------------------------
//  Answers

//  Sends the reply held in self->wr to the sender of pend.
static void s_reply (s_store_t *self, s_pending_t *pend)
{
    void *sock = zsock_resolve (self->router);
    if (zmq_send (sock, zmq_msg_data (&pend->rid), zmq_msg_size (&pend->rid),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1) {
        self->reply_drops++;
        zim_shell_warn (self->shell,
                        "cannot answer a broker (%s); %" PRIu64
                        " answers dropped so far: the broker is gone or not reading",
                        zmq_strerror (zmq_errno ()), self->reply_drops);
    }
}

//  Serves every READ of the drain from one read transaction.
static void s_read_all (s_store_t *self)
{
    int rc;
    MDB_txn *txn = zim_db_read_begin (self->db, &rc);
    const char *name = zim_shell_name (self->shell);
    if (!txn) {
        self->w.errors++;
        zsys_error ("%s: cannot start a read transaction (%s)", name, mdb_strerror (rc));
    }
    for (size_t p = 0; p < self->npend; p++) {
        s_pending_t *pend = &self->pend[p];
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_read_t m;
        zim_rd_init (&rd, zmq_msg_data (&pend->body), zmq_msg_size (&pend->body));
        if (zim_receipts_kind (pend->kind) == ZIM_RECEIPTS_READ) {
            zim_receipts_t *receipts = zim_commit_receipts (self->commit);
            int bad = zim_msg_kind (&rd, &kind, &fields);
            assert (!bad);
            if ((rc = zim_receipts_read (receipts, txn, kind, &rd, fields, self->max_page_bytes,
                                         &self->wr))) {
                self->w.errors++;
                zsys_error ("%s: read failed (%s): check the disk", name, mdb_strerror (rc));
            }
            self->reads++;
            s_reply (self, pend);
            continue;
        }
        if (pend->kind != ZIM_MSG_READ)
            continue;
        int bad = zim_msg_kind (&rd, &kind, &fields) || zim_read_unpack (&rd, fields, &m);
        assert (!bad);
        if (!txn) {
            zim_wr_reset (&self->wr);
            zim_page_begin (&self->wr, m.req, ZIM_ESTORE, false, 0);
        } else if ((rc =
                        zim_reader_page (self->reader, txn, &m, self->max_page_bytes, &self->wr))) {
            self->w.errors++;
            zsys_error ("%s: read failed (%s): check the disk", name, mdb_strerror (rc));
        }
        self->reads++;
        s_reply (self, pend);
    }
    if (txn)
        zim_db_read_end (self->db);
}

//  -------------------------------------------------------------------------
//  The drain

//  Counts and logs (rate-limited) a malformed backbone message.
static void s_bad (s_store_t *self, const char *why)
{
    self->bad_messages++;
    zim_shell_warn (self->shell,
                    "dropped a malformed backbone message (%s); %" PRIu64
                    " so far: check the sender's version",
                    why, self->bad_messages);
}

//  Checks a received message completely; sets kind, req and count.
//  Returns 0, or -1 with *why set.
static int s_accept (s_pending_t *pend, const char **why)
{
    zim_rd_t rd;
    uint32_t fields;
    zim_rd_init (&rd, zmq_msg_data (&pend->body), zmq_msg_size (&pend->body));
    *why = "not a backbone message";
    if (zim_msg_kind (&rd, &pend->kind, &fields))
        goto malformed;
    if (pend->kind == ZIM_MSG_APPEND) {
        zim_append_t m;
        *why = "bad APPEND";
        if (zim_append_unpack (&rd, fields, &m))
            goto malformed;
        for (uint32_t i = 0; i < m.nitems; i++) {
            zim_append_item_t item;
            if (zim_append_item_unpack (&m.items, &item))
                goto malformed;
        }
        if (zim_rd_left (&m.items))
            goto malformed;
        pend->req = m.req;
        pend->count = m.nitems;
    } else if (pend->kind == ZIM_MSG_READ) {
        zim_read_t m;
        *why = "bad READ";
        if (zim_read_unpack (&rd, fields, &m) || zim_rd_left (&rd))
            goto malformed;
    } else if (pend->kind == ZIM_MSG_SETCURSOR) {
        zim_setcursor_t m;
        *why = "bad SETCURSOR";
        if (zim_setcursor_unpack (&rd, fields, &m) || zim_rd_left (&rd))
            goto malformed;
    } else if (zim_receipts_kind (pend->kind)) {
        if (zim_receipts_check (pend->kind, &rd, fields, why))
            goto malformed;
    } else {
        *why = "unexpected message kind";
        goto malformed;
    }
    return 0;
malformed:
    return -1;
}

//  Receives one message into pend; returns 1 if one was taken (ok tells
//  whether it is one whole frame after the routing id), 0 if none waits.
static int s_recv (void *sock, s_pending_t *pend, bool *ok)
{
    zmq_msg_init (&pend->rid);
    zmq_msg_init (&pend->body);
    if (zmq_msg_recv (&pend->rid, sock, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&pend->rid);
        zmq_msg_close (&pend->body);
        return 0;
    }
    //  ROUTER delivers a routing id then the whole message at once.
    *ok = zmq_msg_more (&pend->rid) && zmq_msg_recv (&pend->body, sock, 0) != -1;
    if (*ok && zmq_msg_more (&pend->body)) {
        *ok = false;
        zmq_msg_t extra;
        zmq_msg_init (&extra);
        while (zmq_msg_recv (&extra, sock, 0) != -1 && zmq_msg_more (&extra))
            ;
        zmq_msg_close (&extra);
    }
    return 1;
}

//  Takes everything waiting on the ROUTER (up to max_batch APPEND items),
//  writes it in one go, then answers: APPENDEDs after the commit, READs
//  from a read transaction that sees it.
static void s_drain (s_store_t *self)
{
    void *sock = zsock_resolve (self->router);
    //  Under load, a group commit waits until commit_delay_us after the
    //  previous one began, so that the writes arriving meanwhile join it:
    //  fewer, larger batches for the same work (sync = batch only).
    self->drain_us = zim_mono_pace (self->drain_us,
                                    self->sync == ZIM_FSYNC_BATCH ? self->commit_delay_us : 0);
    uint64_t max_items = self->sync == ZIM_FSYNC_ALWAYS ? 1 : self->max_batch;
    size_t items = 0, nwrites = 0;
    bool reads = false, ok;
    self->npend = 0;
    self->nresults = 0;
    while (items < max_items && self->npend < S_DRAIN_MAX) {
        s_pending_t *pend = &self->pend[self->npend];
        if (!s_recv (sock, pend, &ok))
            break;
        const char *why = "not one frame";
        if (ok && s_accept (pend, &why) == 0) {
            if (pend->kind == ZIM_MSG_APPEND) {
                pend->first = self->nresults;
                self->nresults += pend->count;
                items += pend->count;
            }
            if (pend->kind == ZIM_MSG_READ || zim_receipts_kind (pend->kind) == ZIM_RECEIPTS_READ)
                reads = true;
            else
                self->writes[nwrites++] =
                    (zim_str_t){zmq_msg_data (&pend->body), zmq_msg_size (&pend->body)};
            self->npend++;
        } else {
            s_bad (self, why);
            zmq_msg_close (&pend->rid);
            zmq_msg_close (&pend->body);
        }
    }
    if (self->nresults > self->results_alloc) {
        self->results_alloc = self->nresults * 2;
        free (self->results);
        self->results = zim_malloc (self->results_alloc * sizeof *self->results);
    }
    if (nwrites)
        zim_commit_write (self->commit, self->writes, nwrites, self->results);
    for (size_t p = 0; p < self->npend; p++) {
        s_pending_t *pend = &self->pend[p];
        if (pend->kind != ZIM_MSG_APPEND)
            continue;
        zim_wr_reset (&self->wr);
        zim_appended_begin (&self->wr, pend->req, (uint32_t)pend->count);
        for (size_t i = 0; i < pend->count; i++)
            zim_appended_item_pack (&self->wr, &self->results[pend->first + i]);
        s_reply (self, pend);
    }
    //  The receipts' answers, by their index among the writes.
    zim_receipts_t *receipts = zim_commit_receipts (self->commit);
    for (size_t p = 0, w = 0; p < self->npend; p++) {
        int mine = zim_receipts_kind (self->pend[p].kind);
        if (self->pend[p].kind == ZIM_MSG_READ || mine == ZIM_RECEIPTS_READ)
            continue;
        zim_str_t answer = mine ? zim_receipts_reply (receipts, w) : (zim_str_t){NULL, 0};
        w++;
        if (answer.len) {
            zim_wr_reset (&self->wr);
            zim_wr_raw (&self->wr, answer.ptr, answer.len);
            s_reply (self, &self->pend[p]);
        }
    }
    if (reads)
        s_read_all (self);
    for (size_t p = 0; p < self->npend; p++) {
        zmq_msg_close (&self->pend[p].rid);
        zmq_msg_close (&self->pend[p].body);
    }
    self->npend = 0;
}

//  -------------------------------------------------------------------------
//  Timers: the background sync of sync = none, and retention

//  One purge run; returns true if more expired messages may be waiting.
static bool s_purge (s_store_t *self)
{
    uint64_t now = zim_now_ms ();
    size_t n = 0;
    int rc = 0;
    if (self->retention && now / 1000 > self->retention)
        rc = zim_retention_purge (self->db, now - self->retention * 1000, S_PURGE_MAX, &n);
    if (rc) {
        self->w.errors++;
        zsys_error ("%s: retention purge failed (%s): check the disk", zim_shell_name (self->shell),
                    mdb_strerror (rc));
        return false;
    }
    if (n > 0) {
        self->purged += n;
        self->w.commits++;
        if (self->sync == ZIM_FSYNC_NONE)
            zim_db_wrote (self->db);
        else
            self->w.fsyncs++;
    }
    bool more = n == S_PURGE_MAX;
    if (self->push_ttl && now / 1000 > self->push_ttl) {
        rc = zim_receipts_expire (zim_commit_receipts (self->commit), now - self->push_ttl * 1000,
                                  S_PURGE_MAX, &n);
        if (rc) {
            self->w.errors++;
            zsys_error ("%s: push queue expiry failed (%s): check the disk",
                        zim_shell_name (self->shell), mdb_strerror (rc));
        }
        if (rc == 0 && n > 0 && self->sync == ZIM_FSYNC_NONE)
            zim_db_wrote (self->db);
        more = more || n == S_PURGE_MAX;
    }
    return more;
}

//  Runs the timers that are due.
static void s_timers (s_store_t *self)
{
    uint64_t now = zim_mono_us () / 1000;
    zim_commit_tick (self->commit, now);
    int synced = zim_db_tick (self->db, now);
    if (synced == 1)
        self->w.fsyncs++;
    else if (synced == -1)
        self->w.errors++;
    if ((self->retention || self->push_ttl) && now >= self->next_purge) {
        bool more = s_purge (self);
        self->next_purge = zim_mono_us () / 1000 + (more ? 10 : self->purge_every * 1000);
    }
}

//  Milliseconds until the next timer, for zmq_poll (-1: none).
static long s_timeout (s_store_t *self)
{
    if (!self->db)
        return -1;
    uint64_t now = zim_mono_us () / 1000, next = zim_db_due_ms (self->db);
    uint64_t due = zim_commit_due_ms (self->commit);
    if (due < next)
        next = due;
    if ((self->retention || self->push_ttl) && self->next_purge < next)
        next = self->next_purge;
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (long)(next - now);
}

//  -------------------------------------------------------------------------
//  The shell's hooks and tables

static int s_set_sync (void *arg, const char *value, const char *value2, const char **why)
{
    (void)value2;
    s_store_t *self = (s_store_t *)arg;
    if (zim_fsync_parse (value, &self->sync) == 0)
        return 0;
    *why = "sync must be always, batch or none";
    return -1;
}

static int s_bind (void *arg, const char *endpoint)
{
    s_store_t *self = (s_store_t *)arg;
    if (!self->router) {
        self->router = zim_shell_socket (self->shell, ZMQ_ROUTER, true);
        if (!self->router)
            return -1;
        zsock_set_rcvhwm (self->router, S_HWM);
        zsock_set_sndhwm (self->router, S_HWM);
        zsock_set_router_mandatory (self->router, 1);
    }
    int port = zsock_bind (self->router, "%s", endpoint);
    if (port == -1)
        zsys_error ("%s: cannot bind %s: %s", zim_shell_name (self->shell), endpoint,
                    zmq_strerror (zmq_errno ()));
    return port;
}

static int s_start (void *arg)
{
    s_store_t *self = (s_store_t *)arg;
    const char *name = zim_shell_name (self->shell);
    if (!self->router) {
        zsys_error ("%s: START without BIND: nothing could reach the store", name);
        return -1;
    }
    if (!self->data) {
        zsys_error ("%s: no data directory: SET data DIR before START", name);
        return -1;
    }
    self->db = zim_db_new (name, self->data, self->sync, self->map_size);
    if (!self->db)
        return -1;
    self->commit = zim_commit_new (self->db, self->shell, &self->w);
    if (zim_commit_recover (self->commit, self->checkpoint_ms, self->wal_bytes)) {
        zim_commit_destroy (&self->commit);
        zim_db_destroy (&self->db);
        return -1;
    }
    self->reader = zim_reader_new (self->db);
    zim_groups_limits (zim_receipts_groups (zim_commit_receipts (self->commit)),
                       &(zim_groups_limits_t){&self->max_group, &self->max_channel,
                                              &self->max_behind});
    self->next_purge = zim_mono_us () / 1000 + self->purge_every * 1000;
    if (self->sync == ZIM_FSYNC_BATCH && self->checkpoint_ms)
        zsys_info ("%s: opened %s (sync batch through the write-ahead log, checkpoint every "
                   "%" PRIu64 " ms, map_size %" PRIu64 ")",
                   name, self->data, self->checkpoint_ms, zim_db_map_size (self->db));
    else
        zsys_info ("%s: opened %s (sync %s, map_size %" PRIu64 ")", name, self->data,
                   zim_fsync_name (self->sync), zim_db_map_size (self->db));
    return 0;
}

static void s_gauges (void *arg, json_t *stats)
{
    s_store_t *self = (s_store_t *)arg;
    uint64_t size = self->db ? zim_db_map_size (self->db) : self->map_size;
    uint64_t used = self->db ? zim_db_map_used (self->db) : 0;
    json_object_set_new (stats, "map_size", json_integer ((json_int_t)size));
    json_object_set_new (stats, "map_used", json_integer ((json_int_t)used));
    if (self->commit)
        zim_receipts_stats (zim_commit_receipts (self->commit), stats);
}

#define S_U64(key, field, min, flags, help)                                                        \
    {                                                                                              \
        key, ZIM_SET_U64, offsetof (s_store_t, field), min, 0, 1, flags, NULL, help                \
    }

static const zim_setting_t s_settings[] = {
    {"data", ZIM_SET_STR, offsetof (s_store_t, data), 0, 0, 0, ZIM_SET_BEFORE_START, NULL,
     "directory of the LMDB environment (required)"},
    {"sync", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_sync,
     "fsync policy: batch (default), always or none"},
    S_U64 ("map_size", map_size, 65536, ZIM_SET_BEFORE_START,
           "LMDB map size, bytes (4 GiB); doubled when full"),
    S_U64 ("max_batch", max_batch, 1, 0, "APPEND items per write transaction (4096)"),
    S_U64 ("checkpoint_ms", checkpoint_ms, 0, ZIM_SET_BEFORE_START,
           "sync batch: ms between checkpoints of the write-ahead log (50; 0: no log, "
           "one LMDB commit per batch)"),
    S_U64 ("wal_size", wal_bytes, 65536, ZIM_SET_BEFORE_START,
           "bytes of the write-ahead log file (16777216)"),
    S_U64 ("commit_delay_us", commit_delay_us, 0, 0,
           "sync batch: µs from one group commit to the next under load (2000; 0: none)"),
    S_U64 ("retention", retention, 0, 0, "seconds messages are kept (604800; 0: forever)"),
    S_U64 ("purge_interval", purge_every, 1, 0, "seconds between retention purges (60)"),
    S_U64 ("max_page_bytes", max_page_bytes, 1024, 0,
           "longest sync/history PAGE, encoded bytes (262144)"),
    S_U64 ("push_ttl", push_ttl, 0, 0,
           "seconds a push record waits for the bridge (86400; 0: for ever)"),
    S_U64 ("max_group_size", max_group, 1, 0, "members of a group, at most (500)"),
    S_U64 ("max_channel_size", max_channel, 1, 0, "members of a channel, at most (100000)"),
    S_U64 ("csync_max_behind", max_behind, 1, 0,
           "a channel sync further behind gets the newest page and reset (10000)"),
    {NULL}};

#define S_COUNTER(name, field)                                                                     \
    {                                                                                              \
        name, offsetof (s_store_t, field)                                                          \
    }

static const zim_counter_t s_counters[] = {S_COUNTER ("appended", w.appended),
                                           S_COUNTER ("duplicates", w.duplicates),
                                           S_COUNTER ("conflicts", w.conflicts),
                                           S_COUNTER ("commits", w.commits),
                                           S_COUNTER ("fsyncs", w.fsyncs),
                                           S_COUNTER ("checkpoints", w.checkpoints),
                                           S_COUNTER ("reads", reads),
                                           S_COUNTER ("cursors", w.cursors),
                                           S_COUNTER ("errors", w.errors),
                                           S_COUNTER ("bad_messages", bad_messages),
                                           S_COUNTER ("batch_max", w.batch_max),
                                           S_COUNTER ("purged", purged),
                                           S_COUNTER ("reply_drops", reply_drops),
                                           {NULL}};

//  For metrics: a high-water mark among the counters; the stats hook's
//  push queue counters (zim_receipts_stats) only grow.
static const char *const s_gauge_counters[] = {"batch_max", NULL};
static const char *const s_totals[] = {"push_added",     "push_coalesced", "push_read",
                                       "push_delivered", "push_dropped",   "push_muted",
                                       "push_expired",   "receipts",       NULL};

static const zim_histogram_t s_histograms[] = {
    {"commit_seconds", offsetof (s_store_t, w.commit_us), zim_histo_latency_us, ZIM_HISTO_LATENCY_N,
     1e-6, "write transactions from begin to commit (and fsync, unless sync = none), seconds"},
    {"commit_write_seconds", offsetof (s_store_t, w.write_us), zim_histo_latency_us,
     ZIM_HISTO_LATENCY_N, 1e-6,
     "of them, the commit: dirty pages written (and fsynced, unless sync = none), seconds"},
    {"batch_size", offsetof (s_store_t, w.batch), zim_histo_sizes, ZIM_HISTO_SIZES_N, 1,
     "APPEND items per committed write transaction"},
    {"checkpoint_seconds", offsetof (s_store_t, w.checkpoint_us), zim_histo_latency_us,
     ZIM_HISTO_LATENCY_N, 1e-6,
     "checkpoints of the write-ahead log's window: its pages written and synced, seconds"},
    {NULL}};

static const zim_shell_class_t s_class = {
    .role = "store",
    .settings = s_settings,
    .counters = s_counters,
    .gauges = s_gauge_counters,
    .totals = s_totals,
    .histograms = s_histograms,
    .bind = s_bind,
    .start = s_start,
    .stats = s_gauges,
};

//  -------------------------------------------------------------------------
//  The actor

void zim_store_actor (zsock_t *pipe, void *args)
{
    (void)args;
    s_store_t *self = zim_calloc (1, sizeof *self);
    self->shell = zim_shell_new (pipe, &s_class, self, "store");
    self->sync = ZIM_FSYNC_BATCH;
    self->map_size = S_MAP_SIZE;
    self->max_batch = S_MAX_BATCH;
    self->checkpoint_ms = S_CHECKPOINT_MS;
    self->wal_bytes = S_WAL_BYTES;
    self->commit_delay_us = S_COMMIT_DELAY_US;
    self->retention = S_RETENTION;
    self->purge_every = S_PURGE_INTERVAL;
    self->push_ttl = S_PUSH_TTL;
    self->max_group = ZIM_GROUPS_MAX_GROUP;
    self->max_channel = ZIM_GROUPS_MAX_CHANNEL;
    self->max_behind = ZIM_GROUPS_MAX_BEHIND;
    self->max_page_bytes = ZIM_READER_BYTES;
    self->pend = zim_calloc (S_DRAIN_MAX, sizeof *self->pend);
    self->writes = zim_calloc (S_DRAIN_MAX, sizeof *self->writes);
    zim_wr_init (&self->wr);
    zsock_signal (pipe, 0);

    while (!zim_shell_terminated (self->shell)) {
        zmq_pollitem_t items[2] = {
            {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0},
            {self->router ? zsock_resolve (self->router) : NULL, 0, ZMQ_POLLIN, 0}};
        int n = self->db ? 2 : 1;
        if (zmq_poll (items, n, s_timeout (self)) == -1) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN)
            zim_shell_handle (self->shell);
        if (n == 2 && (items[1].revents & ZMQ_POLLIN) && !zim_shell_terminated (self->shell))
            s_drain (self);
        if (self->db)
            s_timers (self);
    }

    if (self->db) {
        //  Take what already arrived, so nothing received is left unanswered.
        for (int i = 0; i < 16; i++) {
            zmq_pollitem_t item = {zsock_resolve (self->router), 0, ZMQ_POLLIN, 0};
            if (zmq_poll (&item, 1, 0) <= 0 || !(item.revents & ZMQ_POLLIN))
                break;
            s_drain (self);
        }
        zim_commit_checkpoint (self->commit);
        zim_db_sync (self->db);
    }
    zim_reader_destroy (&self->reader);
    zim_commit_destroy (&self->commit);
    zim_db_destroy (&self->db);
    zsock_destroy (&self->router);
    zim_wr_free (&self->wr);
    free (self->pend);
    free (self->writes);
    free (self->results);
    zim_shell_destroy (&self->shell);
    free (self);
}

//  -------------------------------------------------------------------------
//  Selftest: actors spoken to as a broker does (zim_storekit).

void zim_store_test (bool verbose)
{
    char *top = zim_db_test_dir ();
    char path[256];
    snprintf (path, sizeof path, "%s/nested/db", top); //  START makes the parents
    zim_storekit_item_t *got = zim_calloc (1000, sizeof *got);
    zim_appended_item_t res[64];
    uint64_t now = zim_now_ms (), base = 1ULL << 40; //  base: message ids of the test
    char cids[200][16], texts[200][16];
    for (int i = 0; i < 200; i++) {
        snprintf (cids[i], sizeof cids[i], "c-%d", i);
        snprintf (texts[i], sizeof texts[i], "m-%d", i);
    }
    zim_storekit_msg_t msgs[64];
    bool more;
    int64_t status;
    size_t size;

    //  Three APPENDs back to back (one group commit, most likely): alice ->
    //  bob 60 messages, seqs 1..60 with no gaps for both.
    zim_storekit_t *st = zim_storekit_new (path, NULL);
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < 20; i++)
            msgs[i] = (zim_storekit_msg_t){base + (uint64_t)(a * 20 + i),
                                           now,
                                           "alice",
                                           "bob",
                                           cids[a * 20 + i],
                                           texts[a * 20 + i],
                                           0};
        zim_storekit_append (st, 100 + (uint64_t)a, msgs, 20, ZIM_SIDE_BOTH);
    }
    for (int a = 0; a < 3; a++) {
        zim_storekit_appended (st, 100 + (uint64_t)a, res, 20);
        for (int i = 0; i < 20; i++) {
            uint64_t seq = (uint64_t)(a * 20 + i + 1);
            assert (res[i].status == ZIM_APPEND_STORED && res[i].id == base + seq - 1);
            assert (res[i].from_seq == seq && res[i].to_seq == seq && res[i].ts == now);
        }
    }
    assert (zim_storekit_stat (st, "commits") <= 3 && zim_storekit_stat (st, "fsyncs") <= 3);

    //  Retries: the same words are duplicates answered from the record;
    //  another recipient or body under a stored cid is a conflict, refused,
    //  also inside one APPEND. An id below the greatest; a self message; a
    //  bad item; an id already used by another message.
    msgs[0] = (zim_storekit_msg_t){base + 500, now + 5, "alice", "bob", cids[5], texts[5], 0};
    msgs[1] = (zim_storekit_msg_t){base + 501, now + 5, "alice", "carol", cids[5], texts[5], 0};
    msgs[2] = (zim_storekit_msg_t){base + 502, now + 5, "alice", "bob", cids[5], "other", 0};
    msgs[3] = (zim_storekit_msg_t){1000, now, "alice", "bob", "fresh", "fresh", 0};
    msgs[4] = (zim_storekit_msg_t){1001, now, "alice", "bob", "fresh", "fresh", 0};
    msgs[5] = (zim_storekit_msg_t){1002, now, "alice", "bob", "fresh", "fresh again", 0};
    msgs[6] = (zim_storekit_msg_t){base + 70, now, "alice", "alice", "note", "to self", 0};
    msgs[7] = (zim_storekit_msg_t){base + 71, now, "alice", "b:b", "bad-to", "x", 0};
    msgs[8] = (zim_storekit_msg_t){base + 3, now, "alice", "bob", "id-reused", "x", 0};
    zim_storekit_append (st, 104, msgs, 9, ZIM_SIDE_BOTH);
    zim_storekit_appended (st, 104, res, 9);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].id == base + 5);
    assert (res[0].from_seq == 6 && res[0].to_seq == 6 && res[0].ts == now);
    for (int i = 1; i <= 2; i++)
        assert (res[i].status == ZIM_APPEND_CONFLICT && res[i].id == 0 && res[i].from_seq == 0 &&
                res[i].to_seq == 0 && res[i].ts == 0);
    assert (res[3].status == ZIM_APPEND_STORED && res[3].from_seq == 61 && res[3].to_seq == 61);
    assert (res[4].status == ZIM_APPEND_DUPLICATE && res[4].id == 1000 && res[4].to_seq == 61);
    assert (res[5].status == ZIM_APPEND_CONFLICT);
    assert (res[6].status == ZIM_APPEND_STORED && res[6].from_seq == 62 && res[6].to_seq == 0);
    assert (res[7].status == ZIM_EVALUE && res[8].status == ZIM_EVALUE);
    assert (zim_storekit_stat (st, "appended") == 62 && zim_storekit_stat (st, "duplicates") == 2);
    assert (zim_storekit_stat (st, "conflicts") == 3);
    //  Nothing of the refused sends is anywhere: carol has no message, bob
    //  61, alice's last is her note.
    assert (zim_storekit_read (st, ZIM_READ_SYNC, "carol", 0, 100, "", got, &more, &status,
                               &size) == 0);
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "bob", "", 1000, 1 << 20, got) == 61);
    assert (zim_storekit_read (st, ZIM_READ_SYNC, "alice", 60, 0, "", got, &more, &status, &size) ==
            2);
    assert (streq (got[0].body, "fresh") && streq (got[1].body, "to self") && !more);
    assert (zim_storekit_read (st, ZIM_READ_HISTORY, "bob", 0, 0, "alice", got, &more, &status,
                               &size) == 61);

    //  Cursors, and a READ right behind an APPEND sees it.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_setcursor_t sc = {zim_str ("demo"), zim_str ("alice"), zim_str ("phone"), 20};
    zim_setcursor_pack (&wr, &sc);
    zim_storekit_send (st, &wr);
    msgs[0] = (zim_storekit_msg_t){base + 200, now, "alice", "bob", "race", "race", 0};
    zim_storekit_append (st, 106, msgs, 1, ZIM_SIDE_BOTH);
    zim_storekit_ask (st, ZIM_READ_SYNC, "alice", -1, 100, "");
    zim_storekit_appended (st, 106, res, 1);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 63);
    assert (zim_storekit_page (st, got, &more, &status, &size) == 43);
    assert (got[0].seq == 21 && got[42].seq == 63 && streq (got[42].body, "race"));
    assert (zim_storekit_stat (st, "cursors") == 1);

    //  Malformed messages are dropped and counted; the store still answers.
    void *sock = zsock_resolve (zim_storekit_peer (st));
    zmq_send (sock, "garbage", 7, 0);
    zmq_send (sock, "two", 3, ZMQ_SNDMORE);
    zmq_send (sock, "frames", 6, 0);
    zim_append_begin (&wr, 1, 1);
    zim_wr_array (&wr, 2); //  an item of the wrong arity
    zim_wr_uint (&wr, 1);
    zim_wr_uint (&wr, 2);
    zim_storekit_send (st, &wr);
    zim_wr_array (&wr, 1);
    zim_wr_uint (&wr, 99); //  unknown kind
    zim_storekit_send (st, &wr);
    zim_append_begin (&wr, 1, 0);
    zim_wr_uint (&wr, 0); //  trailing bytes
    zim_storekit_send (st, &wr);
    assert (zim_storekit_read (st, ZIM_READ_SYNC, "alice", 62, 10, "", got, &more, &status,
                               &size) == 1);
    assert (zim_storekit_stat (st, "bad_messages") == 5 && zim_storekit_stat (st, "errors") == 0);

    //  Pages are bounded in encoded bytes (262144 by default), whatever the
    //  limit asked: 600 messages of 4 KB and 100 of 10 KB read to the end,
    //  nothing skipped or repeated, as inbox and as history.
    for (int i = 0; i < 700; i += 50) {
        for (int j = 0; j < 50; j++) {
            bool small = i + j < 600;
            snprintf (cids[j], sizeof cids[j], "big-%d", i + j);
            msgs[j] = (zim_storekit_msg_t){base + 1000 + (uint64_t)(i + j),
                                           now,
                                           "ivan",
                                           small ? "judy" : "kate",
                                           cids[j],
                                           NULL,
                                           small ? 4096 : 10240};
        }
        zim_storekit_append (st, 110, msgs, 50, ZIM_SIDE_BOTH);
        zim_storekit_appended (st, 110, res, 50);
        assert (res[49].status == ZIM_APPEND_STORED);
    }
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "judy", "", 1000, 262144, got) == 600);
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "kate", "", 100, 262144, got) == 100);
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "ivan", "", 0, 262144, got) == 700);
    assert (zim_storekit_read_all (st, ZIM_READ_HISTORY, "judy", "ivan", 1000, 262144, got) == 600);
    assert (zim_storekit_read_all (st, ZIM_READ_HISTORY, "ivan", "kate", 100, 262144, got) == 100);
    zim_storekit_destroy (&st);

    //  Restart on the same directory with smaller pages: data, seqs, keys
    //  and cursors persist; pages follow max_page_bytes.
    const char *small_pages[] = {"max_page_bytes", "65536", "name", "restarted", NULL};
    st = zim_storekit_new (path, small_pages);
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "judy", "", 1000, 65536, got) == 600);
    res[0] = zim_storekit_one (
        st, (zim_storekit_msg_t){base + 300, now, "alice", "bob", "after", "x", 0}, 3);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 64 && res[0].to_seq == 63);
    res[0] = zim_storekit_one (
        st, (zim_storekit_msg_t){base + 301, now, "alice", "bob", "c-0", "m-0", 0}, 3);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].id == base && res[0].from_seq == 1);
    res[0] = zim_storekit_one (
        st, (zim_storekit_msg_t){base + 302, now, "alice", "eve", "c-0", "m-0", 0}, 3);
    assert (res[0].status == ZIM_APPEND_CONFLICT);
    assert (zim_storekit_read (st, ZIM_READ_SYNC, "alice", -1, 2, "", got, &more, &status, &size) ==
            2);
    assert (got[0].seq == 21 && streq (got[0].body, "m-20"));
    zim_storekit_destroy (&st);

    //  sync = none: no fsync on the ack path; $TERM syncs.
    const char *none[] = {"sync", "none", NULL};
    st = zim_storekit_new (path, none);
    for (int i = 0; i < 5; i++)
        msgs[i] = (zim_storekit_msg_t){
            base + 410 + (uint64_t)i, now, "dave", "erin", cids[5 + i], "x", 0};
    zim_storekit_append (st, 109, msgs, 5, ZIM_SIDE_BOTH);
    zim_storekit_appended (st, 109, res, 5);
    assert (res[4].status == ZIM_APPEND_STORED && res[4].from_seq == 5);
    assert (zim_storekit_stat (st, "commits") == 1 && zim_storekit_stat (st, "fsyncs") == 0);
    zim_storekit_destroy (&st);
    st = zim_storekit_new (path, NULL);
    assert (zim_storekit_read_all (st, ZIM_READ_SYNC, "erin", "", 100, 1 << 20, got) == 5);
    zim_storekit_destroy (&st);

    //  Two shards, one message (docs/ARCHITECTURE.md): alice lives on A,
    //  bob and carol on B, dave on C. Phase 1 on the sender's shard fixes
    //  the id; phase 2 on the recipient's carries it.
    zim_storekit_t *sh[3];
    const char *names[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "%s/shard-%s", top, names[i]);
        sh[i] = zim_storekit_new (path, NULL);
    }
    zim_storekit_msg_t x2 = {base + 1, now, "alice", "bob", "x2", "hello bob", 0};
    res[0] = zim_storekit_one (sh[0], x2, ZIM_SIDE_FROM);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 1 && res[0].to_seq == 0);
    res[1] = zim_storekit_one (sh[1], x2, ZIM_SIDE_TO);
    assert (res[1].status == ZIM_APPEND_STORED && res[1].from_seq == 0 && res[1].to_seq == 1);
    //  A retry (new id from its broker) finds the canonical id in phase 1;
    //  phase 2 with it is a duplicate.
    zim_storekit_msg_t retry = x2;
    retry.id = base + 9;
    res[0] = zim_storekit_one (sh[0], retry, ZIM_SIDE_FROM);
    assert (res[0].status == ZIM_APPEND_DUPLICATE && res[0].id == base + 1);
    res[1] = zim_storekit_one (sh[1], x2, ZIM_SIDE_TO);
    assert (res[1].status == ZIM_APPEND_DUPLICATE && res[1].id == base + 1 && res[1].to_seq == 1);
    //  A phase 2 that is not the stored message: another id, another body,
    //  another recipient on the same shard: refused.
    res[1] = zim_storekit_one (sh[1], retry, ZIM_SIDE_TO);
    assert (res[1].status == ZIM_APPEND_CONFLICT);
    retry = x2;
    retry.text = "changed";
    assert (zim_storekit_one (sh[1], retry, ZIM_SIDE_TO).status == ZIM_APPEND_CONFLICT);
    retry = x2;
    retry.to = "carol";
    assert (zim_storekit_one (sh[1], retry, ZIM_SIDE_TO).status == ZIM_APPEND_CONFLICT);
    //  The cid reused for dave: phase 1 refuses it with id 0, and a phase 2
    //  built from that answer cannot store it on dave's shard.
    zim_storekit_msg_t reuse = {base + 20, now, "alice", "dave", "x2", "hello dave", 0};
    res[0] = zim_storekit_one (sh[0], reuse, ZIM_SIDE_FROM);
    assert (res[0].status == ZIM_APPEND_CONFLICT && res[0].id == 0);
    reuse.id = res[0].id;
    reuse.ts = res[0].ts;
    assert (zim_storekit_one (sh[2], reuse, ZIM_SIDE_TO).status == ZIM_EVALUE);
    assert (zim_storekit_read (sh[2], ZIM_READ_SYNC, "dave", 0, 100, "", got, &more, &status,
                               &size) == 0);
    assert (zim_storekit_read (sh[1], ZIM_READ_SYNC, "carol", 0, 100, "", got, &more, &status,
                               &size) == 0);
    assert (zim_storekit_read (sh[1], ZIM_READ_SYNC, "bob", 0, 100, "", got, &more, &status,
                               &size) == 1);
    assert (streq (got[0].body, "hello bob"));
    assert (zim_storekit_stat (sh[0], "conflicts") == 1 &&
            zim_storekit_stat (sh[1], "conflicts") == 3);
    assert (zim_storekit_stat (sh[2], "appended") == 0);
    for (int i = 0; i < 3; i++)
        zim_storekit_destroy (&sh[i]);

    //  Retention: old messages go with their inbox, history and key
    //  entries; seqs continue.
    snprintf (path, sizeof path, "%s/retention", top);
    const char *retain[] = {"retention", "30", "purge_interval", "1", NULL};
    st = zim_storekit_new (path, retain);
    for (int i = 0; i < 7; i++)
        msgs[i] = (zim_storekit_msg_t){base + (uint64_t)i,
                                       i < 5 ? now - 3600 * 1000 : now,
                                       "hal",
                                       "ida",
                                       cids[i],
                                       texts[i],
                                       0};
    zim_storekit_append (st, 120, msgs, 7, ZIM_SIDE_BOTH);
    zim_storekit_appended (st, 120, res, 7);
    for (int i = 0; i < 50 && zim_storekit_stat (st, "purged") < 5; i++)
        zclock_sleep (100);
    assert (zim_storekit_stat (st, "purged") == 5);
    assert (zim_storekit_read (st, ZIM_READ_SYNC, "ida", 0, 100, "", got, &more, &status, &size) ==
            2);
    assert (got[0].seq == 6);
    res[0] = zim_storekit_one (
        st, (zim_storekit_msg_t){base + 10, now, "hal", "ida", cids[0], "again", 0}, 3);
    assert (res[0].status == ZIM_APPEND_STORED && res[0].from_seq == 8 && res[0].to_seq == 8);
    zim_storekit_destroy (&st);

    //  START fails cleanly without a data directory, and when it cannot be
    //  made; the actor still answers.
    zactor_t *store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "BIND", "inproc://zim-store-test", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 1);
    snprintf (path, sizeof path, "%s/file", top);
    FILE *file = fopen (path, "w");
    assert (file);
    fclose (file);
    snprintf (path, sizeof path, "%s/file/db", top);
    zstr_sendx (store, "SET", "data", path, NULL);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 1);
    assert (zim_storekit_actor_stat (store, "appended") == 0 &&
            zim_storekit_actor_stat (store, "map_used") == 0);
    zactor_destroy (&store);

    zim_wr_free (&wr);
    free (got);
    zim_db_test_rmtree (top);
    free (top);
    if (verbose)
        zsys_info ("store: group commit, duplicates and conflicts, shards, pages, restarts");
}
