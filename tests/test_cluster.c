/*  test_cluster.c: black-box tests of a zim cluster: zim-router, two
    zim-store shards, two zim-brokers and two zim-gateways as separate
    processes on ephemeral loopback ports, spoken to over real WebSockets.
    Cross-gateway chat, placement of users on shards, and kill -9 of each
    node type while clients keep working; and a cluster with two routers
    that fails over from one to the other (docs/ARCHITECTURE.md, "The
    cluster"; BRIEF.md guarantees 1, 2, 4 and 5).
*/
#include "msg/zim_admin.h"
#include "msg/zim_curve.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tk_cluster_t cl;
static const char *const s_shard_names[] = {"store-1", "store-2"};

static void s_setup (void)
{
    ck_assert_int_eq (tk_cluster_start (&cl, 2, 2, 2), 0);
}

static void s_teardown (void)
{
    //  Every node still running stops cleanly, and no node of any start
    //  logged a sanitizer report.
    int problems = tk_cluster_stop (&cl);
    tk_cluster_cleanup (&cl);
    ck_assert_msg (problems == 0, "%d node(s) did not stop cleanly or logged a sanitizer report",
                   problems);
}

static tk_node_t *s_node (const char *name)
{
    tk_node_t *n = tk_cluster_node (&cl, name);
    ck_assert_ptr_nonnull (n);
    return n;
}

//  Fails the test if the server closed c: says with which close status and
//  last error frame, and shows the end of the gateway's log.
static void s_check_open (tk_client_t *c, const char *label, const char *gw, const char *last_error)
{
    if (!tk_closed (c))
        return;
    tk_node_t *n = tk_cluster_node (&cl, gw);
    if (n)
        tk_node_log_tail (n, 20);
    ck_abort_msg ("%s: the server closed the connection (close status %d, last error: %s)", label,
                  tk_close_status (c), last_error[0] ? last_error : "none");
}

//  An authenticated client of uid/device on gateway gw.
static tk_client_t *s_login (const char *gw, const char *uid, const char *device)
{
    tk_node_t *n = s_node (gw);
    ck_assert_msg (n->pid > 0, "%s is not running", gw);
    tk_client_t *c = tk_login (&n->srv, uid, device);
    ck_assert_msg (c != NULL, "login %s/%s on %s failed", uid, device, gw);
    tk_frame_t f;
    ck_assert_msg (tk_expect (c, "auth_ok", 5000, &f) == 0, "no auth_ok for %s/%s on %s", uid,
                   device, gw);
    return c;
}

//  The counter field of node name in a status JSON (its last heartbeat's
//  stats), or -1 if the node or the field is not there.
static long s_stat (const char *json, const char *name, const char *field)
{
    char needle[64];
    snprintf (needle, sizeof needle, "{\"name\":\"%s\"", name);
    const char *node = json ? strstr (json, needle) : NULL;
    if (!node)
        return -1;
    const char *next = strstr (node + 1, "{\"name\":");
    snprintf (needle, sizeof needle, "\"%s\":", field);
    const char *at = strstr (node, needle);
    return at && (!next || at < next) ? strtol (at + strlen (needle), NULL, 10) : -1;
}

//  Waits until router holds n routes (as its counters in gw-1's map say:
//  up to 2 s old): a device is reachable live only once its route is
//  there, which is after its auth_ok. Returns how long it waited (ms).
static int64_t s_wait_routes_on (const char *router, int n, int timeout_ms)
{
    tk_node_t *gw = s_node ("gw-1");
    int64_t start = zclock_mono ();
    long routes = -1;
    while (zclock_mono () - start < timeout_ms) {
        char *json = tk_cluster_status (&cl, gw);
        routes = s_stat (json, router, "routes");
        free (json);
        if (routes >= n)
            return zclock_mono () - start;
        usleep (50000);
    }
    ck_abort_msg ("%s has %ld routes, not %d, after %d ms", router, routes, n, timeout_ms);
    return -1;
}

static void s_wait_routes (int n)
{
    s_wait_routes_on ("router-1", n, 10000);
}

//  The shard index (0: store-1) of uid, as every broker computes it.
static int s_shard_of (const char *uid)
{
    zim_ring_t *ring = zim_ring_new (s_shard_names, 2);
    int shard = zim_ring_lookup (ring, zim_str ("demo"), zim_str (uid));
    zim_ring_destroy (&ring);
    return shard;
}

//  The broker index (0: broker-1) of sender uid while both brokers live.
static int s_broker_of (const char *uid)
{
    return (int)(zim_user_hash (zim_str ("demo"), zim_str (uid)) % 2);
}

//  Picks the first uid "prefixN" on the wanted shard and broker (-1: any).
static void s_pick (const char *prefix, int shard, int broker, char *uid, size_t size)
{
    for (int i = 0; i < 100000; i++) {
        snprintf (uid, size, "%s%d", prefix, i);
        if ((shard < 0 || s_shard_of (uid) == shard) && (broker < 0 || s_broker_of (uid) == broker))
            return;
    }
    ck_abort_msg ("no user %s* on shard %d and broker %d", prefix, shard, broker);
}

static int s_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  ---------------------------------------------------------------------
//  Sending with retries, as a client must: the same cid again after 5030 or
//  5040 (200 ms later) or after 2 s without an answer.

#define S_MAX_OUT 4096

//  One message a sender wants acked.
typedef struct {
    char to[32];      //  recipient
    char cid[32];     //  client id, also the body
    int64_t first_ms; //  first send
    int64_t sent_ms;  //  last (re)send
    int64_t retry_ms; //  resend at this time after an error (0: none)
    bool acked;       //  ack received
    uint64_t id, seq; //  from the ack
} s_out_t;

//  A sending client.
typedef struct {
    tk_client_t *c;       //  its connection
    char uid[32];         //  user
    int index;            //  in the cids: "m<index>.<n>"
    s_out_t *out;         //  messages, S_MAX_OUT
    int n;                //  how many created
    int unacked;          //  how many not acked yet
    int64_t next_ms;      //  next new message (steady stream)
    int errors, timeouts; //  5030/5040 answers, resends after silence
    int resends;          //  all resends
    int64_t max_ack_ms;   //  longest first send -> ack
    char gw[16];          //  its gateway
    char last_error[160]; //  the last error frame, for failure messages
} s_sender_t;

static void s_sender_init (s_sender_t *s, int index, const char *gw, const char *uid)
{
    memset (s, 0, sizeof *s);
    s->index = index;
    snprintf (s->uid, sizeof s->uid, "%s", uid);
    snprintf (s->gw, sizeof s->gw, "%s", gw);
    s->out = (s_out_t *)zim_calloc (S_MAX_OUT, sizeof (s_out_t));
    s->c = s_login (gw, uid, "phone");
}

static void s_sender_destroy (s_sender_t *s)
{
    tk_close (&s->c);
    free (s->out);
    s->out = NULL;
}

//  Queues one more message to to and sends it.
static s_out_t *s_sender_add (s_sender_t *s, const char *to)
{
    ck_assert_int_lt (s->n, S_MAX_OUT);
    s_out_t *o = &s->out[s->n];
    snprintf (o->to, sizeof o->to, "%s", to);
    snprintf (o->cid, sizeof o->cid, "m%d.%d", s->index, s->n);
    s->n++;
    s->unacked++;
    o->first_ms = o->sent_ms = zclock_mono ();
    ck_assert_int_eq (tk_send_text (s->c, o->to, o->cid, o->cid), 0);
    return o;
}

//  Takes every frame the sender has now; resends what is due.
static void s_sender_pump (s_sender_t *s)
{
    tk_frame_t f;
    while (tk_recv (s->c, 1, &f) == 0) {
        if (strcmp (f.op, "error") == 0)
            snprintf (s->last_error, sizeof s->last_error, "%lld %.100s (cid %.30s)",
                      (long long)f.code, f.text, f.cid);
        int who = -1, k = -1;
        if (sscanf (f.cid, "m%d.%d", &who, &k) != 2 || who != s->index || k < 0 || k >= s->n)
            continue; //  not an answer to a send
        s_out_t *o = &s->out[k];
        if (strcmp (f.op, "ack") == 0) {
            if (!o->acked) {
                o->acked = true;
                o->id = f.id;
                o->seq = f.seq;
                s->unacked--;
                if (zclock_mono () - o->first_ms > s->max_ack_ms)
                    s->max_ack_ms = zclock_mono () - o->first_ms;
            } else //  a retry of an acked send gets the original ack
                ck_assert_msg (f.id == o->id && f.seq == o->seq,
                               "%s: second ack of %s has id %llu seq %llu, first %llu %llu", s->uid,
                               o->cid, (unsigned long long)f.id, (unsigned long long)f.seq,
                               (unsigned long long)o->id, (unsigned long long)o->seq);
        } else if (strcmp (f.op, "error") == 0) {
            ck_assert_msg (f.code == ZIM_ERR_UNAVAILABLE || f.code == ZIM_ERR_TIMEOUT,
                           "%s: send %s answered error %lld (%s)", s->uid, o->cid,
                           (long long)f.code, f.text);
            s->errors++;
            if (!o->acked)
                o->retry_ms = zclock_mono () + 200;
        }
    }
    s_check_open (s->c, s->uid, s->gw, s->last_error);
    int64_t now = zclock_mono ();
    for (int k = 0; k < s->n; k++) {
        s_out_t *o = &s->out[k];
        if (o->acked)
            continue;
        bool silent = !o->retry_ms && now - o->sent_ms > 2000;
        if ((o->retry_ms && now >= o->retry_ms) || silent) {
            s->timeouts += silent;
            s->resends++;
            o->retry_ms = 0;
            o->sent_ms = now;
            ck_assert_int_eq (tk_send_text (s->c, o->to, o->cid, o->cid), 0);
        }
    }
}

//  Sends n messages to to (cids prefix1..prefixN), pipelined, and waits
//  until all are acked, retrying. The sender must have no other traffic.
static void s_send_all (s_sender_t *s, const char *to, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++)
        s_sender_add (s, to);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (s->unacked > 0 && zclock_mono () < deadline)
        s_sender_pump (s);
    ck_assert_msg (s->unacked == 0, "%s: %d of %d sends not acked in %d ms (%d errors, %d resends)",
                   s->uid, s->unacked, s->n, timeout_ms, s->errors, s->resends);
}

//  The seqs of the sender's acks, sorted; each send must be acked. Caller
//  frees.
static uint64_t *s_sender_acked_seqs (s_sender_t *s)
{
    uint64_t *seqs = (uint64_t *)zim_calloc ((size_t)s->n + 1, sizeof (uint64_t));
    for (int k = 0; k < s->n; k++) {
        ck_assert (s->out[k].acked);
        seqs[k] = s->out[k].seq;
    }
    qsort (seqs, (size_t)s->n, sizeof (uint64_t), s_cmp_u64);
    return seqs;
}

//  Every ack of the sender names a distinct seq of its inbox, 1..n: nothing
//  was stored twice.
static void s_sender_check_seqs (s_sender_t *s)
{
    uint64_t *seqs = s_sender_acked_seqs (s);
    for (int k = 0; k < s->n; k++)
        ck_assert_msg (seqs[k] == (uint64_t)k + 1,
                       "%s: acked seqs are not 1..%d (position %d has %llu): a message "
                       "was stored twice or lost",
                       s->uid, s->n, k, (unsigned long long)seqs[k]);
    free (seqs);
}

//  ---------------------------------------------------------------------
//  Receiving devices: live messages deduplicated by seq, as a client does.

//  A receiving client.
typedef struct {
    tk_client_t *c;       //  its connection
    char uid[32];         //  user
    char label[48];       //  uid/device@gw for messages
    uint64_t *ids;        //  ids[seq]: the message delivered with seq (0: none yet)
    size_t cap;           //  size of ids
    uint64_t max_seq;     //  highest seq seen
    size_t frames;        //  msg frames received, repeats included
    size_t repeats;       //  msg frames with a seq seen before (dropped)
    char gw[16];          //  its gateway
    char last_error[160]; //  the last error frame, for failure messages
} s_device_t;

static void s_device_init (s_device_t *d, const char *gw, const char *uid, const char *device)
{
    memset (d, 0, sizeof *d);
    snprintf (d->uid, sizeof d->uid, "%s", uid);
    snprintf (d->label, sizeof d->label, "%s/%s@%s", uid, device, gw);
    snprintf (d->gw, sizeof d->gw, "%s", gw);
    d->cap = 1024;
    d->ids = (uint64_t *)zim_calloc (d->cap, sizeof (uint64_t));
    d->c = s_login (gw, uid, device);
}

static void s_device_destroy (s_device_t *d)
{
    tk_close (&d->c);
    free (d->ids);
    d->ids = NULL;
}

//  Records one delivery: a seq seen before must carry the same message.
static void s_device_take (s_device_t *d, const tk_frame_t *f)
{
    d->frames++;
    ck_assert_msg (f->seq > 0 && f->id > 0, "%s: msg without seq or id", d->label);
    while (f->seq >= d->cap) {
        d->ids = (uint64_t *)realloc (d->ids, 2 * d->cap * sizeof (uint64_t));
        ck_assert_ptr_nonnull (d->ids);
        memset (d->ids + d->cap, 0, d->cap * sizeof (uint64_t));
        d->cap *= 2;
    }
    if (d->ids[f->seq]) {
        ck_assert_msg (d->ids[f->seq] == f->id,
                       "%s: seq %llu carried two different messages (ids %llu and %llu)", d->label,
                       (unsigned long long)f->seq, (unsigned long long)d->ids[f->seq],
                       (unsigned long long)f->id);
        d->repeats++;
        return;
    }
    d->ids[f->seq] = f->id;
    if (f->seq > d->max_seq)
        d->max_seq = f->seq;
}

//  Takes the device's msg frames for up to timeout_ms (1: what is there).
static void s_device_pump (s_device_t *d, int timeout_ms)
{
    tk_frame_t f;
    int64_t deadline = zclock_mono () + timeout_ms;
    do
        while (tk_recv (d->c, 1, &f) == 0) {
            if (strcmp (f.op, "msg") == 0)
                s_device_take (d, &f);
            else if (strcmp (f.op, "error") == 0)
                snprintf (d->last_error, sizeof d->last_error, "%lld %.120s", (long long)f.code,
                          f.text);
        }
    while (zclock_mono () < deadline && !tk_closed (d->c));
    s_check_open (d->c, d->label, d->gw, d->last_error);
}

//  True if the device got a message with this id live.
static bool s_device_has (const s_device_t *d, uint64_t id)
{
    for (uint64_t seq = 1; seq <= d->max_seq; seq++)
        if (d->ids[seq] == id)
            return true;
    return false;
}

//  Reads uid's whole inbox through client c by sync pages from seq 0: the
//  seqs must be 1..n without a gap. Returns n; *ids_p gets ids by seq-1
//  (caller frees).
static size_t s_inbox (tk_client_t *c, const char *label, uint64_t **ids_p)
{
    size_t n = 0, cap = 1024;
    uint64_t *ids = (uint64_t *)zim_calloc (cap, sizeof (uint64_t));
    tk_frame_t f;
    for (uint64_t rid = 900; rid < 1000; rid++) {
        ck_assert_int_eq (tk_sync (c, (int64_t)n, 1000, rid), 0);
        do
            ck_assert_msg (tk_expect (c, "page", 10000, &f) == 0, "%s: no sync page", label);
        while (f.rid != rid);
        for (uint32_t i = 0; i < f.nmsgs && i < 1024; i++) {
            ck_assert_msg (f.seqs[i] == n + 1, "%s: sync gave seq %llu after %zu", label,
                           (unsigned long long)f.seqs[i], n);
            if (n == cap) {
                cap *= 2;
                ids = (uint64_t *)realloc (ids, cap * sizeof (uint64_t));
                ck_assert_ptr_nonnull (ids);
            }
            ids[n++] = f.ids[i];
        }
        if (!f.more || f.nmsgs == 0)
            break;
    }
    *ids_p = ids;
    return n;
}

//  The acked ids of the senders' messages to or from uid, sorted. Returns
//  the count.
static size_t s_acked_to (s_sender_t *senders, int ns, const char *uid, uint64_t **ids_p)
{
    size_t n = 0;
    for (int i = 0; i < ns; i++)
        n += (size_t)senders[i].n;
    uint64_t *ids = (uint64_t *)zim_calloc (n + 1, sizeof (uint64_t));
    n = 0;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < senders[i].n; k++)
            if (senders[i].out[k].acked &&
                (strcmp (senders[i].out[k].to, uid) == 0 || strcmp (senders[i].uid, uid) == 0))
                ids[n++] = senders[i].out[k].id;
    qsort (ids, n, sizeof (uint64_t), s_cmp_u64);
    *ids_p = ids;
    return n;
}

//  uid's inbox (read by sync through c) holds exactly the acked messages
//  of the senders to or from uid, each once, at seqs 1..n.
static void s_check_inbox (tk_client_t *c, const char *uid, s_sender_t *senders, int ns)
{
    uint64_t *want, *have;
    size_t nwant = s_acked_to (senders, ns, uid, &want);
    size_t nhave = s_inbox (c, uid, &have);
    qsort (have, nhave, sizeof (uint64_t), s_cmp_u64);
    for (size_t i = 1; i < nhave; i++)
        ck_assert_msg (have[i] != have[i - 1], "%s: message %llu is in the inbox twice", uid,
                       (unsigned long long)have[i]);
    size_t missing = 0;
    for (size_t i = 0; i < nwant; i++)
        if (!bsearch (&want[i], have, nhave, sizeof (uint64_t), s_cmp_u64))
            missing++;
    ck_assert_msg (missing == 0, "%s: %zu of %zu acked messages are not in the inbox", uid, missing,
                   nwant);
    ck_assert_msg (nhave == nwant, "%s: inbox has %zu messages, %zu were acked", uid, nhave, nwant);
    free (want);
    free (have);
}

//  Pumps the senders (a steady stream if produce: one new message per
//  sender every 10 ms, at most 32 unacked each, to the recipients in
//  turn) and the devices for duration_ms.
static void s_stream (s_sender_t *senders, int ns, s_device_t *devices, int nd,
                      const char *const *to, int nto, bool produce, int duration_ms)
{
    int64_t end = zclock_mono () + duration_ms;
    while (zclock_mono () < end) {
        int64_t now = zclock_mono ();
        for (int i = 0; i < ns; i++) {
            s_sender_t *s = &senders[i];
            if (produce && now >= s->next_ms && s->unacked < 32) {
                s_sender_add (s, to[(s->n + i) % nto]);
                s->next_ms = now + 10;
            }
            s_sender_pump (s);
        }
        for (int i = 0; i < nd; i++)
            s_device_pump (&devices[i], 1);
    }
}

//  Stops producing and pumps until every send is acked.
static void s_drain (s_sender_t *senders, int ns, s_device_t *devices, int nd, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int unacked = 1;
    while (unacked && zclock_mono () < deadline) {
        s_stream (senders, ns, devices, nd, NULL, 0, false, 20);
        unacked = 0;
        for (int i = 0; i < ns; i++)
            unacked += senders[i].unacked;
    }
    for (int i = 0; i < ns; i++)
        ck_assert_msg (senders[i].unacked == 0,
                       "%s: %d of %d sends never acked in %d ms (%d errors, %d resends)",
                       senders[i].uid, senders[i].unacked, senders[i].n, timeout_ms,
                       senders[i].errors, senders[i].resends);
}

//  ---------------------------------------------------------------------

START_TEST (test_cross_gateway_chat)
{
    char a[32], b[32], carol[32], dave[32];
    //  Sender and recipient on different shards: the two-shard write.
    s_pick ("alice", 0, -1, a, sizeof a);
    s_pick ("bob", 1, -1, b, sizeof b);
    s_pick ("carol", 1, -1, carol, sizeof carol);
    s_pick ("dave", 0, -1, dave, sizeof dave);
    tk_client_t *alice = s_login ("gw-1", a, "phone");
    tk_client_t *bob = s_login ("gw-2", b, "phone");
    tk_client_t *carol1 = s_login ("gw-1", carol, "phone");
    tk_client_t *carol2 = s_login ("gw-2", carol, "laptop");
    tk_client_t *dv = s_login ("gw-1", dave, "phone");
    s_wait_routes (5);
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (alice, b, "x1", "hello across"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
    ck_assert_str_eq (f.cid, "x1");
    ck_assert_uint_eq (f.seq, 1);
    uint64_t id = f.id;
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.from, a);
    ck_assert_str_eq (f.body, "hello across");
    ck_assert_uint_eq (f.id, id);
    ck_assert_uint_eq (f.seq, 1);
    ck_assert_int_eq (tk_send_text (bob, a, "y1", "and back"), 0);
    ck_assert_int_eq (tk_expect (bob, "ack", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 2);
    ck_assert_int_eq (tk_expect (alice, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.from, b);
    ck_assert_str_eq (f.body, "and back");
    ck_assert_uint_eq (f.seq, 2);

    //  carol has a device on each gateway: both get every message, in order.
    enum { N = 50 };
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[16];
    for (int i = 1; i <= N; i++) {
        snprintf (cid, sizeof cid, "d%d", i);
        tk_enc_send (&wr, carol, cid, cid);
    }
    ck_assert_int_eq (tk_send_wr (dv, &wr), 0);
    for (int i = 1; i <= N; i++) {
        ck_assert_int_eq (tk_expect (dv, "ack", 10000, &f), 0);
        ck_assert_uint_eq (f.seq, (uint64_t)i);
    }
    tk_client_t *carols[2] = {carol1, carol2};
    for (int d = 0; d < 2; d++)
        for (int i = 1; i <= N; i++) {
            ck_assert_msg (tk_expect (carols[d], "msg", 5000, &f) == 0,
                           "carol's device %d got %d of %d messages", d + 1, i - 1, N);
            snprintf (cid, sizeof cid, "d%d", i);
            ck_assert_str_eq (f.body, cid);
            ck_assert_uint_eq (f.seq, (uint64_t)i);
        }
    //  What carol sends from gw-1 reaches her device on gw-2 and the
    //  recipient; the sending device gets the ack only.
    ck_assert_int_eq (tk_send_text (carol1, a, "c1", "from carol"), 0);
    ck_assert_int_eq (tk_expect (carol1, "ack", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, N + 1);
    ck_assert_int_eq (tk_expect (carol2, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "from carol");
    ck_assert_str_eq (f.from, carol);
    ck_assert_uint_eq (f.seq, N + 1);
    ck_assert_int_eq (tk_expect (alice, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "from carol");
    ck_assert_uint_eq (f.seq, 3);
    ck_assert_int_eq (tk_recv (carol1, 300, &f), -1);
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&bob);
    tk_close (&carol1);
    tk_close (&carol2);
    tk_close (&dv);
}
END_TEST

//  Decodes mdb_dump -p escapes in place (\\ and \xx). Returns the length.
static size_t s_unescape (char *s)
{
    size_t n = 0;
    for (char *p = s; *p && *p != '\n'; p++) {
        if (*p == '\\' && p[1] == '\\') {
            s[n++] = '\\';
            p++;
        } else if (*p == '\\' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            s[n++] = (char)strtol (hex, NULL, 16);
            p += 2;
        } else
            s[n++] = *p;
    }
    return n;
}

//  The users with keys in one named database of a shard's LMDB
//  environment, read with mdb_dump (lmdb-utils); keys start with [app][uid]
//  (one length byte each). Returns a set of "app/uid".
static zhash_t *s_dump_users (const char *env, const char *db)
{
    char cmd[600];
    snprintf (cmd, sizeof cmd, "mdb_dump -p -s %s '%s' 2>&1", db, env);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    zhash_t *users = zhash_new ();
    char line[4096];
    bool data = false, key = true;
    while (fgets (line, sizeof line, p)) {
        if (!data) {
            data = strncmp (line, "HEADER=END", 10) == 0;
            continue;
        }
        if (strncmp (line, "DATA=END", 8) == 0)
            break;
        ck_assert_msg (line[0] == ' ', "unexpected mdb_dump line: %s", line);
        if (key) {
            size_t n = s_unescape (line + 1);
            const unsigned char *k = (const unsigned char *)line + 1;
            ck_assert_msg (n >= 2 && k[0] + 2u <= n && k[0] + 2u + k[k[0] + 1] <= n,
                           "%s: key of %zu bytes is not [app][uid]...", db, n);
            char user[300];
            snprintf (user, sizeof user, "%.*s/%.*s", k[0], k + 1, k[k[0] + 1], k + k[0] + 2);
            zhash_update (users, user, (void *)"");
        }
        key = !key;
    }
    int rc = pclose (p);
    ck_assert_msg (data && rc == 0, "'%s' failed (exit %d): mdb_dump from lmdb-utils is needed",
                   cmd, rc);
    return users;
}

START_TEST (test_users_spread_over_shards)
{
    enum { U = 16 };
    char users[U][32];
    int on[2] = {0, 0};
    for (int i = 0; i < U; i++) {
        snprintf (users[i], sizeof users[i], "u%d", i);
        on[s_shard_of (users[i])]++;
    }
    ck_assert_msg (on[0] >= 3 && on[1] >= 3, "users not spread: %d and %d", on[0], on[1]);
    //  Each user sends one message to the next one, logged in on
    //  alternate gateways; some pairs share a shard, most do not.
    tk_client_t *c[U];
    for (int i = 0; i < U; i++)
        c[i] = s_login (i % 2 ? "gw-2" : "gw-1", users[i], "phone");
    s_wait_routes (U);
    tk_frame_t f;
    for (int i = 0; i < U; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "s%d", i);
        ck_assert_int_eq (tk_send_text (c[i], users[(i + 1) % U], cid, users[i]), 0);
    }
    //  Each gets its ack and the message of the previous one, in any order.
    for (int i = 0; i < U; i++) {
        bool acked = false, got = false;
        while (!acked || !got) {
            ck_assert_msg (tk_recv (c[i], 10000, &f) == 0, "%s: no %s", users[i],
                           acked ? "message" : "ack");
            if (strcmp (f.op, "ack") == 0)
                acked = true;
            else if (strcmp (f.op, "msg") == 0) {
                ck_assert_str_eq (f.from, users[(i + U - 1) % U]);
                got = true;
            } else
                ck_abort_msg ("%s: unexpected %s %lld %s", users[i], f.op, (long long)f.code,
                              f.text);
        }
    }
    //  Each shard holds the inboxes and seq counters of its users, and of
    //  nobody else.
    for (int s = 0; s < 2; s++) {
        char env[400];
        snprintf (env, sizeof env, "%s/%s", cl.dir, s_shard_names[s]);
        const char *dbs[] = {"inbox", "seqs"};
        for (int d = 0; d < 2; d++) {
            zhash_t *found = s_dump_users (env, dbs[d]);
            for (int i = 0; i < U; i++) {
                char user[600];
                snprintf (user, sizeof user, "demo/%s", users[i]);
                bool here = zhash_lookup (found, user) != NULL;
                ck_assert_msg (here == (s_shard_of (users[i]) == s),
                               "%s: %s is %s in %s's %s database", s_shard_names[s], users[i],
                               here ? "wrongly" : "not", s_shard_names[s], dbs[d]);
                zhash_delete (found, user);
            }
            ck_assert_msg (zhash_size (found) == 0, "%s's %s database has %zu unknown users",
                           s_shard_names[s], dbs[d], zhash_size (found));
            zhash_destroy (&found);
        }
    }
    //  Every user reads its inbox back from its own shard.
    for (int i = 0; i < U; i++) {
        uint64_t *ids;
        size_t n = s_inbox (c[i], users[i], &ids);
        ck_assert_msg (n == 2, "%s: inbox has %zu messages, not 2", users[i], n);
        free (ids);
        tk_close (&c[i]);
    }
}
END_TEST

START_TEST (test_kill9_broker_during_stream)
{
    //  Four senders, two on each broker, two on each gateway; two
    //  recipients, one with a device on each gateway.
    enum { NS = 4, ND = 3 };
    s_sender_t s[NS];
    char uid[32], r1[32], r2[32];
    for (int i = 0; i < NS; i++) {
        char prefix[16];
        snprintf (prefix, sizeof prefix, "snd%d_", i);
        s_pick (prefix, -1, i % 2, uid, sizeof uid);
        s_sender_init (&s[i], i, i < 2 ? "gw-1" : "gw-2", uid);
    }
    s_pick ("rcpa", -1, -1, r1, sizeof r1);
    s_pick ("rcpb", -1, -1, r2, sizeof r2);
    s_device_t d[ND];
    s_device_init (&d[0], "gw-1", r1, "phone");
    s_device_init (&d[1], "gw-2", r1, "laptop");
    s_device_init (&d[2], "gw-2", r2, "phone");
    const char *to[] = {r1, r2};
    s_wait_routes (NS + ND);

    s_stream (s, NS, d, ND, to, 2, true, 1500);
    tk_node_t *broker = s_node ("broker-1");
    tk_node_stop (broker, SIGKILL);
    //  The gateways see the broker leave the map within ~4 s and move its
    //  senders to broker-2; until then their sends fail with 5030.
    s_stream (s, NS, d, ND, to, 2, true, 5500);
    s_drain (s, NS, d, ND, 20000);
    int sent = 0, errors = 0, resends = 0;
    int64_t slowest = 0;
    for (int i = 0; i < NS; i++) {
        sent += s[i].n;
        resends += s[i].resends;
        if (s_broker_of (s[i].uid) == 0)
            errors += s[i].errors + s[i].timeouts;
        if (s[i].max_ack_ms > slowest)
            slowest = s[i].max_ack_ms;
        s_sender_check_seqs (&s[i]);
    }
    fprintf (stderr, "test_cluster: broker kill: slowest ack %lld ms\n", (long long)slowest);
    ck_assert_msg (errors > 0, "broker-1's senders never noticed it was killed");
    //  Every acked message reaches every device of its recipient live, once
    //  after dropping repeated seqs.
    int64_t deadline = zclock_mono () + 10000;
    size_t missing = 1;
    while (missing && zclock_mono () < deadline) {
        missing = 0;
        for (int i = 0; i < ND; i++) {
            s_device_pump (&d[i], 50);
            uint64_t *want;
            size_t n = s_acked_to (s, NS, d[i].uid, &want);
            for (size_t k = 0; k < n; k++)
                missing += !s_device_has (&d[i], want[k]);
            free (want);
        }
    }
    for (int i = 0; i < ND; i++) {
        uint64_t *want;
        size_t n = s_acked_to (s, NS, d[i].uid, &want);
        size_t lost = 0;
        for (size_t k = 0; k < n; k++)
            lost += !s_device_has (&d[i], want[k]);
        //  Distinct seqs carry distinct messages: no message twice.
        uint64_t *got = (uint64_t *)zim_calloc (d[i].max_seq + 1, sizeof (uint64_t));
        size_t ngot = 0;
        for (uint64_t q = 1; q <= d[i].max_seq; q++)
            if (d[i].ids[q])
                got[ngot++] = d[i].ids[q];
        qsort (got, ngot, sizeof (uint64_t), s_cmp_u64);
        for (size_t k = 1; k < ngot; k++)
            ck_assert_msg (got[k] != got[k - 1], "%s: message %llu arrived with two seqs",
                           d[i].label, (unsigned long long)got[k]);
        fprintf (stderr,
                 "test_cluster: broker kill: %s got %zu of %zu acked live (%zu frames, %zu "
                 "repeats dropped); senders: %d messages, %d resends\n",
                 d[i].label, n - lost, n, d[i].frames, d[i].repeats, sent, resends);
        ck_assert_msg (lost == 0, "%s: %zu of %zu acked messages never delivered", d[i].label, lost,
                       n);
        //  A message comes twice only when a client resent it (the stored
        //  one is delivered again with its seq); never on its own.
        ck_assert_msg (d[i].repeats <= (size_t)resends,
                       "%s: %zu repeated deliveries, but only %d resends", d[i].label, d[i].repeats,
                       resends);
        ck_assert_msg (ngot == n, "%s: %zu distinct messages delivered, %zu acked", d[i].label,
                       ngot, n);
        free (got);
        free (want);
    }
    //  And the stores hold each once.
    s_check_inbox (d[0].c, r1, s, NS);
    s_check_inbox (d[2].c, r2, s, NS);
    ck_assert_int_eq (tk_cluster_wait (&cl, 5000), 0);
    for (int i = 0; i < NS; i++)
        s_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        s_device_destroy (&d[i]);
}
END_TEST

START_TEST (test_kill9_router_routes_rebuild)
{
    char a[32], b[32];
    s_pick ("ra", -1, -1, a, sizeof a);
    s_pick ("rb", -1, -1, b, sizeof b);
    s_sender_t alice;
    s_sender_init (&alice, 0, "gw-1", a);
    s_device_t bob;
    s_device_init (&bob, "gw-2", b, "phone");
    s_wait_routes (2);
    s_send_all (&alice, b, 1, 10000);
    s_device_pump (&bob, 1);
    int64_t until = zclock_mono () + 5000;
    while (!s_device_has (&bob, alice.out[0].id) && zclock_mono () < until)
        s_device_pump (&bob, 20);
    ck_assert_msg (s_device_has (&bob, alice.out[0].id), "no live delivery before the kill");

    tk_node_t *router = s_node ("router-1");
    tk_node_stop (router, SIGKILL);
    //  Without a router the sends are still stored and acked (after
    //  route_timeout), and the recipient finds them by sync.
    s_send_all (&alice, b, 10, 15000);
    ck_assert_int_eq (tk_node_start (&cl, router), 0);
    int64_t back = zclock_mono ();
    //  Routes rebuild: a live message reaches bob again within 5 s.
    int first_live = alice.n;
    int64_t live_ms = -1;
    while (live_ms < 0 && zclock_mono () - back < 5000) {
        s_send_all (&alice, b, 1, 10000);
        int64_t wait = zclock_mono () + 300;
        while (zclock_mono () < wait && live_ms < 0) {
            s_device_pump (&bob, 20);
            for (int k = first_live; k < alice.n && live_ms < 0; k++)
                if (s_device_has (&bob, alice.out[k].id))
                    live_ms = zclock_mono () - back;
        }
    }
    fprintf (stderr, "test_cluster: router restart: live delivery again after %lld ms\n",
             (long long)live_ms);
    //  (the 0.5 s over 5 s is for the message's own trip)
    ck_assert_msg (live_ms >= 0 && live_ms <= 5500,
                   "no live delivery within 5 s of the router's restart (%lld ms)",
                   (long long)live_ms);
    s_sender_check_seqs (&alice);
    s_check_inbox (bob.c, b, &alice, 1);
    ck_assert_int_eq (tk_cluster_wait (&cl, 5000), 0);
    s_sender_destroy (&alice);
    s_device_destroy (&bob);
}
END_TEST

START_TEST (test_kill9_gateway_clients_move)
{
    char a[32], b[32];
    s_pick ("ga", -1, -1, a, sizeof a);
    s_pick ("gb", -1, -1, b, sizeof b);
    s_sender_t alice, bob;
    s_sender_init (&alice, 0, "gw-1", a);
    s_sender_init (&bob, 1, "gw-2", b);
    s_device_t alice_in;
    s_device_init (&alice_in, "gw-1", a, "laptop");
    s_wait_routes (3);
    //  bob's sends are in flight when his gateway dies.
    for (int i = 0; i < 20; i++)
        s_sender_add (&bob, a);
    tk_node_stop (s_node ("gw-2"), SIGKILL);
    tk_frame_t f;
    int64_t until = zclock_mono () + 5000;
    while (!tk_closed (bob.c) && zclock_mono () < until)
        if (tk_recv (bob.c, 50, &f) == 0 && strcmp (f.op, "ack") == 0) {
            int who, k;
            if (sscanf (f.cid, "m%d.%d", &who, &k) == 2 && k >= 0 && k < bob.n &&
                !bob.out[k].acked) {
                bob.out[k].acked = true;
                bob.out[k].id = f.id;
                bob.out[k].seq = f.seq;
                bob.unacked--;
            }
        }
    ck_assert_msg (tk_closed (bob.c), "bob's connection to the killed gateway did not close");
    //  Meanwhile alice writes to bob, who is offline.
    s_send_all (&alice, b, 5, 10000);
    //  bob reconnects to the other gateway, resends what was not acked
    //  (same cids) and syncs what he missed.
    tk_close (&bob.c);
    bob.c = s_login ("gw-1", b, "phone");
    for (int k = 0; k < bob.n; k++)
        if (!bob.out[k].acked) {
            bob.out[k].sent_ms = zclock_mono ();
            bob.resends++;
            ck_assert_int_eq (tk_send_text (bob.c, bob.out[k].to, bob.out[k].cid, bob.out[k].cid),
                              0);
        }
    int64_t deadline = zclock_mono () + 10000;
    while (bob.unacked > 0 && zclock_mono () < deadline)
        s_sender_pump (&bob);
    ck_assert_msg (bob.unacked == 0, "bob: %d sends not acked after reconnecting", bob.unacked);
    fprintf (stderr,
             "test_cluster: gateway kill: bob resent %d of his 20 sends after reconnecting\n",
             bob.resends);
    //  Both inboxes hold every acked message once, sent and received.
    s_sender_t both[2] = {alice, bob};
    s_check_inbox (bob.c, b, both, 2);
    s_check_inbox (alice.c, a, both, 2);
    //  alice's laptop got each of bob's messages once (after dropping
    //  repeated seqs).
    deadline = zclock_mono () + 5000;
    size_t have = 0;
    while (have < 20 && zclock_mono () < deadline) {
        s_device_pump (&alice_in, 50);
        have = 0;
        for (int k = 0; k < bob.n; k++)
            have += s_device_has (&alice_in, bob.out[k].id);
    }
    ck_assert_msg (have == 20, "alice got %zu of bob's 20 messages live", have);
    //  bob is live on gw-1 now.
    s_device_t bob_in;
    s_device_init (&bob_in, "gw-1", b, "tablet");
    s_send_all (&alice, b, 1, 10000);
    deadline = zclock_mono () + 5000;
    while (!s_device_has (&bob_in, alice.out[alice.n - 1].id) && zclock_mono () < deadline)
        s_device_pump (&bob_in, 20);
    ck_assert_msg (s_device_has (&bob_in, alice.out[alice.n - 1].id),
                   "no live delivery to bob on gw-1");
    s_sender_destroy (&alice);
    s_sender_destroy (&bob);
    s_device_destroy (&alice_in);
    s_device_destroy (&bob_in);
}
END_TEST

START_TEST (test_kill9_store_shard_restart)
{
    //  Senders and recipients on both shards; store-1 crashes and comes back.
    enum { NS = 3, ND = 2 };
    char uid[32], r1[32], r2[32];
    s_sender_t s[NS];
    s_pick ("sa", 0, -1, uid, sizeof uid);
    s_sender_init (&s[0], 0, "gw-1", uid);
    s_pick ("sb", 1, -1, uid, sizeof uid);
    s_sender_init (&s[1], 1, "gw-2", uid);
    s_pick ("sc", 0, -1, uid, sizeof uid);
    s_sender_init (&s[2], 2, "gw-2", uid);
    s_pick ("ta", 0, -1, r1, sizeof r1);
    s_pick ("tb", 1, -1, r2, sizeof r2);
    s_device_t d[ND];
    s_device_init (&d[0], "gw-1", r1, "phone");
    s_device_init (&d[1], "gw-2", r2, "phone");
    const char *to[] = {r1, r2};

    s_stream (s, NS, d, ND, to, 2, true, 1000);
    tk_node_t *store = s_node ("store-1");
    tk_node_stop (store, SIGKILL);
    s_stream (s, NS, d, ND, to, 2, true, 1000);
    ck_assert_int_eq (tk_node_start (&cl, store), 0);
    s_stream (s, NS, d, ND, to, 2, true, 2000);
    s_drain (s, NS, d, ND, 30000);
    int errors = 0;
    int64_t slowest = 0;
    for (int i = 0; i < NS; i++) {
        errors += s[i].errors + s[i].timeouts;
        if (s[i].max_ack_ms > slowest)
            slowest = s[i].max_ack_ms;
        s_sender_check_seqs (&s[i]);
    }
    fprintf (stderr,
             "test_cluster: store restart: %d messages, %d errors or timeouts, slowest ack "
             "%lld ms\n",
             s[0].n + s[1].n + s[2].n, errors, (long long)slowest);
    //  The crash was felt: sends failed, or waited for the shard to return.
    ck_assert_msg (errors > 0 || slowest > 500, "no send noticed the store crash");
    //  Every acked message is in its recipient's inbox, once.
    s_check_inbox (d[0].c, r1, s, NS);
    s_check_inbox (d[1].c, r2, s, NS);
    //  And in each sender's own inbox (its other devices sync from it).
    for (int i = 0; i < NS; i++)
        s_check_inbox (s[i].c, s[i].uid, s, NS);
    ck_assert_int_eq (tk_cluster_wait (&cl, 5000), 0);
    for (int i = 0; i < NS; i++)
        s_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        s_device_destroy (&d[i]);
}
END_TEST

//  ---------------------------------------------------------------------
//  Two routers: router-1, router-2, one store, two brokers, two gateways;
//  every node (routers too) joins both routers.

static void s_setup_two_routers (void)
{
    ck_assert_int_eq (tk_cluster_start_routers (&cl, 2, 1, 2, 2), 0);
}

//  True if the status JSON lists node name at all (alive or not).
static bool s_listed (const char *json, const char *name)
{
    char needle[64];
    snprintf (needle, sizeof needle, "{\"name\":\"%s\"", name);
    return strstr (json, needle) != NULL;
}

//  How many of the senders' acked messages to or from d's user, among
//  each sender's messages from[i] on (first sent then or later), d has
//  not received live. Prints each one missing (up to 5).
static size_t s_not_live (s_sender_t *senders, int ns, const int *from, s_device_t *d,
                          const char *when, int64_t t0)
{
    size_t missing = 0;
    for (int i = 0; i < ns; i++)
        for (int k = from[i]; k < senders[i].n; k++) {
            s_out_t *o = &senders[i].out[k];
            if (!o->acked || (strcmp (o->to, d->uid) != 0 && strcmp (senders[i].uid, d->uid) != 0))
                continue;
            if (!s_device_has (d, o->id) && missing++ < 5)
                fprintf (stderr,
                         "test_cluster: two routers, %s: %s did not get %s's %s "
                         "(first sent at +%lld ms) live\n",
                         when, d->label, senders[i].uid, o->cid, (long long)(o->first_ms - t0));
        }
    return missing;
}

//  Two senders chat: senders[i] sends to to[i], one new message every
//  10 ms (at most 32 unacked) if produce; both and the devices are pumped
//  for duration_ms.
static void s_chat (s_sender_t *senders, const char *const *to, s_device_t *devices, int nd,
                    bool produce, int duration_ms)
{
    int64_t end = zclock_mono () + duration_ms;
    while (zclock_mono () < end) {
        int64_t now = zclock_mono ();
        for (int i = 0; i < 2; i++) {
            s_sender_t *s = &senders[i];
            if (produce && now >= s->next_ms && s->unacked < 32) {
                s_sender_add (s, to[i]);
                s->next_ms = now + 10;
            }
            s_sender_pump (s);
        }
        for (int i = 0; i < nd; i++)
            s_device_pump (&devices[i], 1);
    }
}

//  The acks of a sender that also receives: distinct seqs of its inbox
//  (what it receives takes seqs between).
static void s_sender_check_distinct (s_sender_t *s)
{
    uint64_t *seqs = s_sender_acked_seqs (s);
    for (int k = 1; k < s->n; k++)
        ck_assert_msg (seqs[k] != seqs[k - 1] && seqs[k - 1] > 0,
                       "%s: two acks name seq %llu: a message was stored twice", s->uid,
                       (unsigned long long)seqs[k]);
    free (seqs);
}

//  The number of messages of each sender so far (where the next phase
//  starts).
static void s_marks (s_sender_t *senders, int ns, int *marks)
{
    for (int i = 0; i < ns; i++)
        marks[i] = senders[i].n;
}

START_TEST (test_two_routers_failover)
{
    enum { NS = 2, ND = 2 };
    //  The cluster map of every gateway shows both routers alive, and each
    //  router knows all 7 nodes (each node says HELLO to both).
    const char *gws[] = {"gw-1", "gw-2"};
    for (int g = 0; g < 2; g++) {
        char *json = NULL;
        int64_t deadline = zclock_mono () + 5000;
        long m1 = -1, m2 = -1;
        while (zclock_mono () < deadline) {
            free (json);
            json = tk_cluster_status (&cl, s_node (gws[g]));
            ck_assert_msg (json != NULL, "%s: no status", gws[g]);
            m1 = s_stat (json, "router-1", "members");
            m2 = s_stat (json, "router-2", "members");
            if (m1 == 7 && m2 == 7)
                break;
            usleep (100000);
        }
        ck_assert_msg (strstr (json, "{\"name\":\"router-1\",\"role\":\"router\"") &&
                           strstr (json, "{\"name\":\"router-2\",\"role\":\"router\""),
                       "%s's status does not list both routers: %s", gws[g], json);
        ck_assert_msg (m1 == 7 && m2 == 7,
                       "%s's status: router-1 has %ld members, router-2 %ld, not 7 each: %s",
                       gws[g], m1, m2, json);
        free (json);
    }
    //  alice (gw-1) and bob (gw-2) chat; each has a second device on the
    //  other side that receives.
    char a[32], b[32];
    s_pick ("twa", -1, -1, a, sizeof a);
    s_pick ("twb", -1, -1, b, sizeof b);
    s_sender_t s[NS];
    s_sender_init (&s[0], 0, "gw-1", a);
    s_sender_init (&s[1], 1, "gw-2", b);
    s_device_t d[ND];
    s_device_init (&d[0], "gw-2", b, "laptop");
    s_device_init (&d[1], "gw-1", a, "laptop");
    const char *to[] = {b, a};
    //  Presence goes to both routers: both hold the 4 sessions.
    s_wait_routes_on ("router-1", 4, 5000);
    s_wait_routes_on ("router-2", 4, 5000);
    s_send_all (&s[0], b, 1, 5000);
    s_send_all (&s[1], a, 1, 5000);
    int marks[NS] = {0, 0};
    s_stream (s, NS, d, ND, NULL, 0, false, 500);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, marks, &d[i], "before the kill", zclock_mono ()) == 0,
                       "%s: no live delivery with both routers up", d[i].label);

    //  A steady stream both ways; router-1 dies in the middle of it.
    int before[NS], after[NS];
    s_marks (s, NS, before);
    s_chat (s, to, d, ND, true, 500);
    tk_node_stop (s_node ("router-1"), SIGKILL);
    int64_t killed = zclock_mono ();
    //  The brokers' I/O threads see router-1's connection close a moment
    //  after the kill: what is sent in the first 300 ms is counted with the
    //  messages in flight at the kill, not asserted.
    s_chat (s, to, d, ND, true, 300);
    s_marks (s, NS, after);
    s_chat (s, to, d, ND, true, 500);
    s_drain (s, NS, d, ND, 5000);
    s_stream (s, NS, d, ND, NULL, 0, false, 2000);
    //  Every message first sent from 300 ms after the kill on is acked and
    //  delivered live (within the 2 s pumped here; in practice at once): the
    //  brokers' DEALER to the routers has ZMQ_IMMEDIATE, and a process killed
    //  on this host closes its connections at once, so router-1's pipe is
    //  gone before the next route query and router-2 answers them all. A
    //  send whose route query router-1 had taken but not answered would be
    //  acked after the brokers' route_timeout without live delivery, and
    //  found by sync below (counted, not asserted: none was seen). Across
    //  hosts, with no FIN or RST, that is up to TCP: no ZMQ heartbeat is
    //  set.
    size_t lost_after = 0, lost_inflight = 0;
    for (int i = 0; i < ND; i++) {
        lost_after += s_not_live (s, NS, after, &d[i], "after router-1's kill", killed);
        lost_inflight += s_not_live (s, NS, before, &d[i], "at router-1's kill", killed);
    }
    lost_inflight -= lost_after;
    fprintf (stderr,
             "test_cluster: two routers, router-1 killed: %d+%d messages sent from 300 ms after "
             "it, %zu not live; %zu sent before that not live\n",
             s[0].n - after[0], s[1].n - after[1], lost_after, lost_inflight);
    ck_assert_msg (lost_after == 0,
                   "%zu messages sent after router-1's kill were acked but not delivered live "
                   "although router-2 was up",
                   lost_after);

    //  The dead router leaves the map of the other router and of every
    //  node (routers are members like the others; only stores stay).
    ck_assert_int_eq (tk_cluster_wait (&cl, 8000), 0);
    const char *others[] = {"router-2", "broker-1", "gw-2"};
    for (int i = 0; i < 3; i++) {
        char *json = tk_cluster_status (&cl, s_node (others[i]));
        ck_assert_msg (json && !s_listed (json, "router-1") && s_listed (json, "router-2"),
                       "%s's map still lists router-1: %s", others[i], json ? json : "no answer");
        free (json);
    }

    //  router-1 comes back empty: the gateways see its new instance in its
    //  map and announce their sessions to it; its routes are whole again
    //  within 5 s. The chat goes on meanwhile, every message acked (after
    //  retries) and stored, but not every one live: the brokers reconnect
    //  to router-1 at once and send it every other route query, which it
    //  answers with no routes until the gateways' announces arrive (up to
    //  a heartbeat later); those messages reach the devices by sync only.
    //  And a gateway may answer a few sends 5030: router-1's first maps
    //  hold only the members that said HELLO so far, and a gateway takes
    //  the brokers of any map as the live ones. Counted and printed.
    tk_node_t *r1 = s_node ("router-1");
    ck_assert_int_eq (tk_node_start (&cl, r1), 0);
    int64_t back = zclock_mono ();
    int restart[NS];
    s_marks (s, NS, restart);
    int64_t whole_ms = -1;
    while (whole_ms < 0 && zclock_mono () - back < 5000) {
        s_chat (s, to, d, ND, true, 100);
        char *json = tk_cluster_status (&cl, s_node ("gw-1"));
        if (s_stat (json, "router-1", "routes") >= 4)
            whole_ms = zclock_mono () - back;
        free (json);
    }
    s_drain (s, NS, d, ND, 5000);
    s_stream (s, NS, d, ND, NULL, 0, false, 1000);
    size_t lost_restart = 0;
    for (int i = 0; i < ND; i++)
        lost_restart += s_not_live (s, NS, restart, &d[i], "router-1 restarting", back);
    int errors = s[0].errors + s[1].errors, timeouts = s[0].timeouts + s[1].timeouts;
    fprintf (stderr,
             "test_cluster: two routers, router-1 restarted: routes whole after %lld ms (as "
             "its counters say); %d+%d messages meanwhile, %zu not live; %d errors, %d "
             "resends after silence in all\n",
             (long long)whole_ms, s[0].n - restart[0], s[1].n - restart[1], lost_restart, errors,
             timeouts);
    //  (the 0.5 s over 5 s is for the status round trip that saw it)
    ck_assert_msg (whole_ms >= 0 && whole_ms <= 5500,
                   "router-1 has not the 4 routes 5 s after its restart (%lld ms)",
                   (long long)whole_ms);
    //  Once they are, every message is delivered live again.
    int whole[NS];
    s_marks (s, NS, whole);
    s_chat (s, to, d, ND, true, 300);
    s_drain (s, NS, d, ND, 5000);
    s_stream (s, NS, d, ND, NULL, 0, false, 1000);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, whole, &d[i], "router-1 back", back) == 0,
                       "%s: messages not delivered live with both routers up again", d[i].label);

    //  Its routes are really whole: with router-2 gone, live delivery goes
    //  on through router-1 alone. Killed while nothing is in flight.
    s_stream (s, NS, d, ND, NULL, 0, false, 200);
    tk_node_stop (s_node ("router-2"), SIGKILL);
    s_marks (s, NS, after);
    s_send_all (&s[0], b, 10, 5000);
    s_send_all (&s[1], a, 10, 5000);
    s_stream (s, NS, d, ND, NULL, 0, false, 2000);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, after, &d[i], "router-2 killed", zclock_mono ()) == 0,
                       "%s: messages not delivered live through the restarted router-1",
                       d[i].label);

    //  Nothing acked is missing or stored twice: both inboxes hold every
    //  acked message once (those not delivered live are found by sync).
    for (int i = 0; i < NS; i++)
        s_sender_check_distinct (&s[i]);
    s_check_inbox (d[0].c, b, s, NS);
    s_check_inbox (d[1].c, a, s, NS);
    for (int i = 0; i < NS; i++)
        s_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        s_device_destroy (&d[i]);
}
END_TEST

//  ---------------------------------------------------------------------
//  Stalls (issue 10 #3): a node stopped with SIGSTOP for longer than
//  member_timeout, as a VM pause or a long swap would, then let go. Live
//  delivery must come back within a few seconds of its return.

//  Stops victim for 5 s, then measures how long after its return a message
//  from alice (on gw-2) reaches bob (on gw-1) live again; asserts it is
//  within 5 s, and that it stays so.
static void s_stall_and_return (const char *victim)
{
    char a[32], b[32];
    s_pick ("sa", -1, -1, a, sizeof a);
    s_pick ("sb", -1, -1, b, sizeof b);
    s_sender_t alice;
    s_sender_init (&alice, 0, "gw-2", a);
    s_device_t bob;
    s_device_init (&bob, "gw-1", b, "phone");
    s_wait_routes (2);
    s_send_all (&alice, b, 1, 10000);
    int64_t until = zclock_mono () + 5000;
    while (!s_device_has (&bob, alice.out[0].id) && zclock_mono () < until)
        s_device_pump (&bob, 20);
    ck_assert_msg (s_device_has (&bob, alice.out[0].id), "no live delivery before the stall");

    tk_node_t *n = s_node (victim);
    ck_assert_int_eq (kill (n->pid, SIGSTOP), 0);
    zclock_sleep (5000); //  the stall itself: longer than member_timeout (3 s)
    ck_assert_int_eq (kill (n->pid, SIGCONT), 0);
    int64_t back = zclock_mono ();
    //  A message sent now may still be acked without live delivery (the
    //  routes are not whole yet): send until one arrives live.
    int first = alice.n;
    int64_t live_ms = -1;
    while (live_ms < 0 && zclock_mono () - back < 8000) {
        s_send_all (&alice, b, 1, 10000);
        int64_t wait = zclock_mono () + 300;
        while (zclock_mono () < wait && live_ms < 0) {
            s_device_pump (&bob, 20);
            for (int k = first; k < alice.n && live_ms < 0; k++)
                if (s_device_has (&bob, alice.out[k].id))
                    live_ms = zclock_mono () - back;
        }
    }
    fprintf (stderr, "test_cluster: %s stalled 5 s: live delivery again %lld ms after its return\n",
             victim, (long long)live_ms);
    s_check_open (bob.c, "bob", "gw-1", "");
    ck_assert_msg (live_ms >= 0 && live_ms <= 5000,
                   "no live delivery within 5 s of %s's return from a 5 s stall (%lld ms)", victim,
                   (long long)live_ms);
    //  ... and it stays: the next messages are live too, each within 2 s.
    for (int i = 0; i < 3; i++) {
        s_send_all (&alice, b, 1, 10000);
        uint64_t id = alice.out[alice.n - 1].id;
        until = zclock_mono () + 2000;
        while (!s_device_has (&bob, id) && zclock_mono () < until)
            s_device_pump (&bob, 20);
        ck_assert_msg (s_device_has (&bob, id), "message %d after the stall was not live", i);
    }
    s_sender_check_seqs (&alice);
    s_check_inbox (bob.c, b, &alice, 1);
    ck_assert_int_eq (tk_cluster_wait (&cl, 10000), 0);
    s_sender_destroy (&alice);
    s_device_destroy (&bob);
}

START_TEST (test_stall_gateway)
{
    s_stall_and_return ("gw-1");
}
END_TEST

START_TEST (test_stall_router)
{
    s_stall_and_return ("router-1");
}
END_TEST

//  ---------------------------------------------------------------------
//  CURVE (issue 10 #4): a peer without the cluster key gets nothing
//  through to any ZeroMQ endpoint of a cluster node.

static void s_setup_curve (void)
{
    ck_assert_int_eq (tk_cluster_start_with (&cl, 1, 1, 1, 1, true), 0);
}

//  The counter field of node name in gw-1's status, -1 if not there.
static long s_stat_of (const char *name, const char *field)
{
    char *json = tk_cluster_status (&cl, s_node ("gw-1"));
    long value = s_stat (json, name, field);
    free (json);
    return value;
}

//  A DEALER to endpoint with keys: NULL (none), or its own key pair and
//  the server key it expects.
static zsock_t *s_probe (const char *endpoint, const zim_curve_t *keys)
{
    zsock_t *sock = zim_curve_socket (keys, ZMQ_DEALER, NULL, 1 << 20);
    ck_assert_ptr_nonnull (sock);
    zsock_set_sndtimeo (sock, 0);
    ck_assert_int_eq (zsock_connect (sock, "%s", endpoint), 0);
    return sock;
}

START_TEST (test_curve_backbone)
{
    char path[300];
    snprintf (path, sizeof path, "%s/curve", cl.dir);
    zim_curve_t *cluster = zim_curve_load_node (path);
    ck_assert_ptr_nonnull (cluster);
    //  A stranger: a key pair of its own, and the cluster's public key
    //  (which is no secret).
    zcert_t *cert = zcert_new ();
    zim_curve_t *stranger = zim_curve_new (zcert_public_txt (cert), zcert_secret_txt (cert),
                                           zim_curve_public (cluster));
    zcert_destroy (&cert);
    ck_assert_ptr_nonnull (stranger);

    //  Every backbone server socket: garbage from a peer that completes a
    //  handshake is counted in bad_messages. Without a key and with a
    //  wrong one nothing arrives; with the cluster key it does (so the
    //  probe would see it).
    const char *targets[] = {"router-1", "store-1", "broker-1"};
    for (size_t t = 0; t < 3; t++) {
        tk_node_t *n = s_node (targets[t]);
        long base = s_stat_of (n->name, "bad_messages");
        ck_assert_int_ge (base, 0);
        zsock_t *none = s_probe (n->bind, NULL), *wrong = s_probe (n->bind, stranger);
        zstr_send (none, "garbage");
        zstr_send (wrong, "garbage");
        zclock_sleep (1500); //  time for a handshake that would succeed
        zsock_t *right = s_probe (n->bind, cluster);
        zstr_send (right, "garbage");
        int64_t until = zclock_mono () + 8000;
        long now = base;
        while (now < base + 1 && zclock_mono () < until) {
            zclock_sleep (200);
            now = s_stat_of (n->name, "bad_messages");
        }
        ck_assert_msg (now == base + 1,
                       "%s: bad_messages %ld, not %ld + 1 after the probe with "
                       "the cluster key",
                       n->name, now, base);
        //  Two more heartbeats: nothing else came.
        zclock_sleep (2500);
        now = s_stat_of (n->name, "bad_messages");
        ck_assert_msg (now == base + 1,
                       "%s: a probe without the cluster key got through "
                       "(bad_messages %ld, expected %ld)",
                       n->name, now, base + 1);
        ck_assert_msg (s_stat_of (n->name, "curve_refused") >= 1,
                       "%s: the wrong key was not refused by ZAP", n->name);
        zsock_destroy (&none);
        zsock_destroy (&wrong);
        zsock_destroy (&right);
    }

    //  The admin endpoint: no answer without an allowed key, even with the
    //  admin key; an answer with the admin client's keys (tk_cluster_status
    //  above) and with the cluster's.
    tk_node_t *gw = s_node ("gw-1");
    char *text = NULL;
    ck_assert_int_eq (zim_admin_call (gw->admin, cl.key, 1000, "status", NULL, &text),
                      ZIM_ERR_UNAVAILABLE);
    zstr_free (&text);
    ck_assert_int_eq (
        zim_admin_call_curve (gw->admin, stranger, cl.key, 1000, "status", NULL, &text),
        ZIM_ERR_UNAVAILABLE);
    zstr_free (&text);
    ck_assert_int_eq (
        zim_admin_call_curve (gw->admin, cluster, cl.key, 2000, "status", NULL, &text), 0);
    zstr_free (&text);

    //  And the cluster works over CURVE: a message from gw-1 to gw-1.
    tk_client_t *alice = s_login ("gw-1", "alice", "phone");
    tk_client_t *bob = s_login ("gw-1", "bob", "phone");
    s_wait_routes (2);
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (alice, "bob", "c1", "over curve"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "over curve");
    tk_close (&alice);
    tk_close (&bob);
    zim_curve_destroy (&stranger);
    zim_curve_destroy (&cluster);
}
END_TEST

//  One case per test, so that CK_RUN_CASE=NAME runs one of them.
static void s_add_with (Suite *s, const TTest *test, SFun setup)
{
    TCase *tc = tcase_create (test->name);
    tcase_set_timeout (tc, 120); //  the kill -9 cases add up their phase budgets
    tcase_add_checked_fixture (tc, setup, s_teardown);
    tcase_add_test (tc, test);
    suite_add_tcase (s, tc);
}

static void s_add (Suite *s, const TTest *test)
{
    s_add_with (s, test, s_setup);
}

static Suite *s_suite (void)
{
    Suite *s = suite_create ("cluster");
    s_add (s, test_cross_gateway_chat);
    s_add (s, test_users_spread_over_shards);
    s_add (s, test_kill9_broker_during_stream);
    s_add (s, test_kill9_router_routes_rebuild);
    s_add (s, test_kill9_gateway_clients_move);
    s_add (s, test_kill9_store_shard_restart);
    s_add_with (s, test_two_routers_failover, s_setup_two_routers);
    s_add (s, test_stall_gateway);
    s_add (s, test_stall_router);
    s_add_with (s, test_curve_backbone, s_setup_curve);
    return s;
}

int main (void)
{
    SRunner *sr = srunner_create (s_suite ());
    srunner_set_fork_status (sr, CK_FORK);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
