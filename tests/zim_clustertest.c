/*  zim_clustertest.c: helpers of the cluster black-box tests
    (zim_clustertest.h).
*/
#include "tests/zim_clustertest.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

tk_cluster_t ct_cl;
const char *const ct_shard_names[] = {"store-1", "store-2"};

void ct_setup (void)
{
    ck_assert_int_eq (tk_cluster_start (&ct_cl, 2, 2, 2), 0);
}

void ct_setup_shards (void)
{
    ck_assert_int_eq (tk_cluster_start (&ct_cl, 2, 1, 1), 0);
}

void ct_teardown (void)
{
    //  Every node still running stops cleanly, and no node of any start
    //  logged a sanitizer report.
    int problems = tk_cluster_stop (&ct_cl);
    tk_cluster_cleanup (&ct_cl);
    ck_assert_msg (problems == 0, "%d node(s) did not stop cleanly or logged a sanitizer report",
                   problems);
}

tk_node_t *ct_node (const char *name)
{
    tk_node_t *n = tk_cluster_node (&ct_cl, name);
    ck_assert_ptr_nonnull (n);
    return n;
}

//  Fails the test if the server closed c: says with which close status and
//  last error frame, and shows the end of the gateway's log.
void ct_check_open (tk_client_t *c, const char *label, const char *gw, const char *last_error)
{
    if (!tk_closed (c))
        return;
    tk_node_t *n = tk_cluster_node (&ct_cl, gw);
    if (n)
        tk_node_log_tail (n, 20);
    ck_abort_msg ("%s: the server closed the connection (close status %d, last error: %s)", label,
                  tk_close_status (c), last_error[0] ? last_error : "none");
}

//  An authenticated client of uid/device on gateway gw.
tk_client_t *ct_login (const char *gw, const char *uid, const char *device)
{
    tk_node_t *n = ct_node (gw);
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
long ct_stat (const char *json, const char *name, const char *field)
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
int64_t ct_wait_routes_on (const char *router, int n, int timeout_ms)
{
    tk_node_t *gw = ct_node ("gw-1");
    int64_t start = zclock_mono ();
    long routes = -1;
    while (zclock_mono () - start < timeout_ms) {
        char *json = tk_cluster_status (&ct_cl, gw);
        routes = ct_stat (json, router, "routes");
        free (json);
        if (routes >= n)
            return zclock_mono () - start;
        usleep (50000);
    }
    ck_abort_msg ("%s has %ld routes, not %d, after %d ms", router, routes, n, timeout_ms);
    return -1;
}

void ct_wait_routes (int n)
{
    ct_wait_routes_on ("router-1", n, 10000);
}

//  The shard index (0: store-1) of uid, as every broker computes it.
int ct_shard_of (const char *uid)
{
    zim_ring_t *ring = zim_ring_new (ct_shard_names, 2);
    int shard = zim_ring_lookup (ring, zim_str ("demo"), zim_str (uid));
    zim_ring_destroy (&ring);
    return shard;
}

//  The broker index (0: broker-1) of sender uid while both brokers live.
int ct_broker_of (const char *uid)
{
    return (int)(zim_user_hash (zim_str ("demo"), zim_str (uid)) % 2);
}

//  Picks the first uid "prefixN" on the wanted shard and broker (-1: any).
void ct_pick (const char *prefix, int shard, int broker, char *uid, size_t size)
{
    for (int i = 0; i < 100000; i++) {
        snprintf (uid, size, "%s%d", prefix, i);
        if ((shard < 0 || ct_shard_of (uid) == shard) &&
            (broker < 0 || ct_broker_of (uid) == broker))
            return;
    }
    ck_abort_msg ("no user %s* on shard %d and broker %d", prefix, shard, broker);
}

int ct_cmp_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  ---------------------------------------------------------------------
//  Sending with retries, as a client must: the same cid again after 5030 or
//  5040 (200 ms later) or after 2 s without an answer.

void ct_sender_init (ct_sender_t *s, int index, const char *gw, const char *uid)
{
    memset (s, 0, sizeof *s);
    s->index = index;
    snprintf (s->uid, sizeof s->uid, "%s", uid);
    snprintf (s->gw, sizeof s->gw, "%s", gw);
    s->out = (ct_out_t *)zim_calloc (CT_MAX_OUT, sizeof (ct_out_t));
    s->c = ct_login (gw, uid, "phone");
}

void ct_sender_destroy (ct_sender_t *s)
{
    tk_close (&s->c);
    free (s->out);
    s->out = NULL;
}

//  Queues one more message to to and sends it.
ct_out_t *ct_sender_add (ct_sender_t *s, const char *to)
{
    ck_assert_int_lt (s->n, CT_MAX_OUT);
    ct_out_t *o = &s->out[s->n];
    snprintf (o->to, sizeof o->to, "%s", to);
    snprintf (o->cid, sizeof o->cid, "m%d.%d", s->index, s->n);
    s->n++;
    s->unacked++;
    o->first_ms = o->sent_ms = zclock_mono ();
    ck_assert_int_eq (tk_send_text (s->c, o->to, o->cid, o->cid), 0);
    return o;
}

//  Takes every frame the sender has now; resends what is due.
void ct_sender_pump (ct_sender_t *s)
{
    tk_frame_t f;
    while (tk_recv (s->c, 1, &f) == 0) {
        if (strcmp (f.op, "error") == 0)
            snprintf (s->last_error, sizeof s->last_error, "%lld %.100s (cid %.30s)",
                      (long long)f.code, f.text, f.cid);
        int who = -1, k = -1;
        if (sscanf (f.cid, "m%d.%d", &who, &k) != 2 || who != s->index || k < 0 || k >= s->n)
            continue; //  not an answer to a send
        ct_out_t *o = &s->out[k];
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
    ct_check_open (s->c, s->uid, s->gw, s->last_error);
    int64_t now = zclock_mono ();
    for (int k = 0; k < s->n; k++) {
        ct_out_t *o = &s->out[k];
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
void ct_send_all (ct_sender_t *s, const char *to, int n, int timeout_ms)
{
    for (int i = 0; i < n; i++)
        ct_sender_add (s, to);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (s->unacked > 0 && zclock_mono () < deadline)
        ct_sender_pump (s);
    ck_assert_msg (s->unacked == 0, "%s: %d of %d sends not acked in %d ms (%d errors, %d resends)",
                   s->uid, s->unacked, s->n, timeout_ms, s->errors, s->resends);
}

//  The seqs of the sender's acks, sorted; each send must be acked. Caller
//  frees.
uint64_t *ct_sender_acked_seqs (ct_sender_t *s)
{
    uint64_t *seqs = (uint64_t *)zim_calloc ((size_t)s->n + 1, sizeof (uint64_t));
    for (int k = 0; k < s->n; k++) {
        ck_assert (s->out[k].acked);
        seqs[k] = s->out[k].seq;
    }
    qsort (seqs, (size_t)s->n, sizeof (uint64_t), ct_cmp_u64);
    return seqs;
}

//  Every ack of the sender names a distinct seq of its inbox, 1..n: nothing
//  was stored twice.
void ct_sender_check_seqs (ct_sender_t *s)
{
    uint64_t *seqs = ct_sender_acked_seqs (s);
    for (int k = 0; k < s->n; k++)
        ck_assert_msg (seqs[k] == (uint64_t)k + 1,
                       "%s: acked seqs are not 1..%d (position %d has %llu): a message "
                       "was stored twice or lost",
                       s->uid, s->n, k, (unsigned long long)seqs[k]);
    free (seqs);
}

//  ---------------------------------------------------------------------
//  Receiving devices: live messages deduplicated by seq, as a client does.

void ct_device_init (ct_device_t *d, const char *gw, const char *uid, const char *device)
{
    memset (d, 0, sizeof *d);
    snprintf (d->uid, sizeof d->uid, "%s", uid);
    snprintf (d->label, sizeof d->label, "%s/%s@%s", uid, device, gw);
    snprintf (d->gw, sizeof d->gw, "%s", gw);
    d->cap = 1024;
    d->ids = (uint64_t *)zim_calloc (d->cap, sizeof (uint64_t));
    d->c = ct_login (gw, uid, device);
}

void ct_device_destroy (ct_device_t *d)
{
    tk_close (&d->c);
    free (d->ids);
    d->ids = NULL;
}

//  Records one delivery: a seq seen before must carry the same message.
void ct_device_take (ct_device_t *d, const tk_frame_t *f)
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
void ct_device_pump (ct_device_t *d, int timeout_ms)
{
    tk_frame_t f;
    int64_t deadline = zclock_mono () + timeout_ms;
    do
        while (tk_recv (d->c, 1, &f) == 0) {
            if (strcmp (f.op, "msg") == 0)
                ct_device_take (d, &f);
            else if (strcmp (f.op, "error") == 0)
                snprintf (d->last_error, sizeof d->last_error, "%lld %.120s", (long long)f.code,
                          f.text);
        }
    while (zclock_mono () < deadline && !tk_closed (d->c));
    ct_check_open (d->c, d->label, d->gw, d->last_error);
}

//  True if the device got a message with this id live.
bool ct_device_has (const ct_device_t *d, uint64_t id)
{
    for (uint64_t seq = 1; seq <= d->max_seq; seq++)
        if (d->ids[seq] == id)
            return true;
    return false;
}

//  Reads uid's whole inbox through client c by sync pages from seq 0: the
//  seqs must be 1..n without a gap. Returns n; *ids_p gets ids by seq-1
//  (caller frees).
size_t ct_inbox (tk_client_t *c, const char *label, uint64_t **ids_p)
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
size_t ct_acked_to (ct_sender_t *senders, int ns, const char *uid, uint64_t **ids_p)
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
    qsort (ids, n, sizeof (uint64_t), ct_cmp_u64);
    *ids_p = ids;
    return n;
}

//  uid's inbox (read by sync through c) holds exactly the acked messages
//  of the senders to or from uid, each once, at seqs 1..n.
void ct_check_inbox (tk_client_t *c, const char *uid, ct_sender_t *senders, int ns)
{
    uint64_t *want, *have;
    size_t nwant = ct_acked_to (senders, ns, uid, &want);
    size_t nhave = ct_inbox (c, uid, &have);
    qsort (have, nhave, sizeof (uint64_t), ct_cmp_u64);
    for (size_t i = 1; i < nhave; i++)
        ck_assert_msg (have[i] != have[i - 1], "%s: message %llu is in the inbox twice", uid,
                       (unsigned long long)have[i]);
    size_t missing = 0;
    for (size_t i = 0; i < nwant; i++)
        if (!bsearch (&want[i], have, nhave, sizeof (uint64_t), ct_cmp_u64))
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
void ct_stream (ct_sender_t *senders, int ns, ct_device_t *devices, int nd, const char *const *to,
                int nto, bool produce, int duration_ms)
{
    int64_t end = zclock_mono () + duration_ms;
    while (zclock_mono () < end) {
        int64_t now = zclock_mono ();
        for (int i = 0; i < ns; i++) {
            ct_sender_t *s = &senders[i];
            if (produce && now >= s->next_ms && s->unacked < 32) {
                ct_sender_add (s, to[(s->n + i) % nto]);
                s->next_ms = now + 10;
            }
            ct_sender_pump (s);
        }
        for (int i = 0; i < nd; i++)
            ct_device_pump (&devices[i], 1);
    }
}

//  Stops producing and pumps until every send is acked.
void ct_drain (ct_sender_t *senders, int ns, ct_device_t *devices, int nd, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int unacked = 1;
    while (unacked && zclock_mono () < deadline) {
        ct_stream (senders, ns, devices, nd, NULL, 0, false, 20);
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

int64_t ct_live_again (ct_sender_t *s, const char *to, ct_device_t *d, int64_t since,
                       int timeout_ms)
{
    int first = s->n;
    while (zclock_mono () - since < timeout_ms) {
        ct_send_all (s, to, 1, 10000);
        int64_t wait = zclock_mono () + 300;
        while (zclock_mono () < wait) {
            ct_device_pump (d, 20);
            for (int k = first; k < s->n; k++)
                if (ct_device_has (d, s->out[k].id))
                    return zclock_mono () - since;
        }
    }
    return -1;
}

void ct_add_with (Suite *s, const TTest *test, SFun setup)
{
    TCase *tc = tcase_create (test->name);
    tcase_set_timeout (tc, 120); //  the kill -9 cases add up their phase budgets
    tcase_add_checked_fixture (tc, setup, ct_teardown);
    tcase_add_test (tc, test);
    suite_add_tcase (s, tc);
}
