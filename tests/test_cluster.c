/*  test_cluster.c: black-box tests of a zim cluster: zim-router, two
    zim-store shards, two zim-brokers and two zim-gateways as separate
    processes on ephemeral loopback ports, spoken to over real WebSockets.
    Cross-gateway chat, placement of users on shards, and kill -9 of each
    node type while clients keep working; and a cluster with two routers
    that fails over from one to the other (docs/ARCHITECTURE.md, "The
    cluster"; BRIEF.md guarantees 1, 2, 4 and 5).
*/
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "tests/zim_clustertest.h"

#include <check.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST (test_cross_gateway_chat)
{
    char a[32], b[32], carol[32], dave[32];
    //  Sender and recipient on different shards: the two-shard write.
    ct_pick ("alice", 0, -1, a, sizeof a);
    ct_pick ("bob", 1, -1, b, sizeof b);
    ct_pick ("carol", 1, -1, carol, sizeof carol);
    ct_pick ("dave", 0, -1, dave, sizeof dave);
    tk_client_t *alice = ct_login ("gw-1", a, "phone");
    tk_client_t *bob = ct_login ("gw-2", b, "phone");
    tk_client_t *carol1 = ct_login ("gw-1", carol, "phone");
    tk_client_t *carol2 = ct_login ("gw-2", carol, "laptop");
    tk_client_t *dv = ct_login ("gw-1", dave, "phone");
    ct_wait_routes (5);
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
        on[ct_shard_of (users[i])]++;
    }
    ck_assert_msg (on[0] >= 3 && on[1] >= 3, "users not spread: %d and %d", on[0], on[1]);
    //  Each user sends one message to the next one, logged in on
    //  alternate gateways; some pairs share a shard, most do not.
    tk_client_t *c[U];
    for (int i = 0; i < U; i++)
        c[i] = ct_login (i % 2 ? "gw-2" : "gw-1", users[i], "phone");
    ct_wait_routes (U);
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
    //  mdb_dump, another process, sees the shards' LMDB files as of their
    //  last checkpoints (store/checkpoint_ms, 50 ms; the write-ahead log
    //  holds the rest): wait until every user shows on its shard, then a
    //  little more, so that a user on the wrong shard would show too.
    for (int tries = 0; tries < 200; tries++) {
        int missing = 0;
        for (int s = 0; s < 2; s++) {
            char env[400];
            snprintf (env, sizeof env, "%s/%s", ct_cl.dir, ct_shard_names[s]);
            zhash_t *found = s_dump_users (env, "seqs");
            for (int i = 0; i < U; i++) {
                char user[600];
                snprintf (user, sizeof user, "demo/%s", users[i]);
                if (ct_shard_of (users[i]) == s && !zhash_lookup (found, user))
                    missing++;
            }
            zhash_destroy (&found);
        }
        if (missing == 0)
            break;
        zclock_sleep (50);
    }
    zclock_sleep (400);
    //  Each shard holds the inboxes and seq counters of its users, and of
    //  nobody else.
    for (int s = 0; s < 2; s++) {
        char env[400];
        snprintf (env, sizeof env, "%s/%s", ct_cl.dir, ct_shard_names[s]);
        const char *dbs[] = {"inbox", "seqs"};
        for (int d = 0; d < 2; d++) {
            zhash_t *found = s_dump_users (env, dbs[d]);
            for (int i = 0; i < U; i++) {
                char user[600];
                snprintf (user, sizeof user, "demo/%s", users[i]);
                bool here = zhash_lookup (found, user) != NULL;
                ck_assert_msg (here == (ct_shard_of (users[i]) == s),
                               "%s: %s is %s in %s's %s database", ct_shard_names[s], users[i],
                               here ? "wrongly" : "not", ct_shard_names[s], dbs[d]);
                zhash_delete (found, user);
            }
            ck_assert_msg (zhash_size (found) == 0, "%s's %s database has %zu unknown users",
                           ct_shard_names[s], dbs[d], zhash_size (found));
            zhash_destroy (&found);
        }
    }
    //  Every user reads its inbox back from its own shard.
    for (int i = 0; i < U; i++) {
        uint64_t *ids;
        size_t n = ct_inbox (c[i], users[i], &ids);
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
    ct_sender_t s[NS];
    char uid[32], r1[32], r2[32];
    for (int i = 0; i < NS; i++) {
        char prefix[16];
        snprintf (prefix, sizeof prefix, "snd%d_", i);
        ct_pick (prefix, -1, i % 2, uid, sizeof uid);
        ct_sender_init (&s[i], i, i < 2 ? "gw-1" : "gw-2", uid);
    }
    ct_pick ("rcpa", -1, -1, r1, sizeof r1);
    ct_pick ("rcpb", -1, -1, r2, sizeof r2);
    ct_device_t d[ND];
    ct_device_init (&d[0], "gw-1", r1, "phone");
    ct_device_init (&d[1], "gw-2", r1, "laptop");
    ct_device_init (&d[2], "gw-2", r2, "phone");
    const char *to[] = {r1, r2};
    ct_wait_routes (NS + ND);

    ct_stream (s, NS, d, ND, to, 2, true, 1500);
    tk_node_t *broker = ct_node ("broker-1");
    tk_node_stop (broker, SIGKILL);
    //  The gateways see the broker leave the map within ~4 s and move its
    //  senders to broker-2; until then their sends fail with 5030.
    ct_stream (s, NS, d, ND, to, 2, true, 5500);
    ct_drain (s, NS, d, ND, 20000);
    int sent = 0, errors = 0, resends = 0;
    int64_t slowest = 0;
    for (int i = 0; i < NS; i++) {
        sent += s[i].n;
        resends += s[i].resends;
        if (ct_broker_of (s[i].uid) == 0)
            errors += s[i].errors + s[i].timeouts;
        if (s[i].max_ack_ms > slowest)
            slowest = s[i].max_ack_ms;
        ct_sender_check_seqs (&s[i]);
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
            ct_device_pump (&d[i], 50);
            uint64_t *want;
            size_t n = ct_acked_to (s, NS, d[i].uid, &want);
            for (size_t k = 0; k < n; k++)
                missing += !ct_device_has (&d[i], want[k]);
            free (want);
        }
    }
    for (int i = 0; i < ND; i++) {
        uint64_t *want;
        size_t n = ct_acked_to (s, NS, d[i].uid, &want);
        size_t lost = 0;
        for (size_t k = 0; k < n; k++)
            lost += !ct_device_has (&d[i], want[k]);
        //  Distinct seqs carry distinct messages: no message twice.
        uint64_t *got = (uint64_t *)zim_calloc (d[i].max_seq + 1, sizeof (uint64_t));
        size_t ngot = 0;
        for (uint64_t q = 1; q <= d[i].max_seq; q++)
            if (d[i].ids[q])
                got[ngot++] = d[i].ids[q];
        qsort (got, ngot, sizeof (uint64_t), ct_cmp_u64);
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
    ct_check_inbox (d[0].c, r1, s, NS);
    ct_check_inbox (d[2].c, r2, s, NS);
    ck_assert_int_eq (tk_cluster_wait (&ct_cl, 5000), 0);
    for (int i = 0; i < NS; i++)
        ct_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        ct_device_destroy (&d[i]);
}
END_TEST

START_TEST (test_kill9_router_routes_rebuild)
{
    char a[32], b[32];
    ct_pick ("ra", -1, -1, a, sizeof a);
    ct_pick ("rb", -1, -1, b, sizeof b);
    ct_sender_t alice;
    ct_sender_init (&alice, 0, "gw-1", a);
    ct_device_t bob;
    ct_device_init (&bob, "gw-2", b, "phone");
    ct_wait_routes (2);
    ct_send_all (&alice, b, 1, 10000);
    ct_device_pump (&bob, 1);
    int64_t until = zclock_mono () + 5000;
    while (!ct_device_has (&bob, alice.out[0].id) && zclock_mono () < until)
        ct_device_pump (&bob, 20);
    ck_assert_msg (ct_device_has (&bob, alice.out[0].id), "no live delivery before the kill");

    tk_node_t *router = ct_node ("router-1");
    tk_node_stop (router, SIGKILL);
    //  Without a router the sends are still stored and acked (after
    //  route_timeout), and the recipient finds them by sync.
    ct_send_all (&alice, b, 10, 15000);
    ck_assert_int_eq (tk_node_start (&ct_cl, router), 0);
    int64_t back = zclock_mono ();
    //  Routes rebuild: a live message reaches bob again within 5 s.
    int64_t live_ms = ct_live_again (&alice, b, &bob, back, 5000);
    fprintf (stderr, "test_cluster: router restart: live delivery again after %lld ms\n",
             (long long)live_ms);
    //  (the 0.5 s over 5 s is for the message's own trip)
    ck_assert_msg (live_ms >= 0 && live_ms <= 5500,
                   "no live delivery within 5 s of the router's restart (%lld ms)",
                   (long long)live_ms);
    ct_sender_check_seqs (&alice);
    ct_check_inbox (bob.c, b, &alice, 1);
    ck_assert_int_eq (tk_cluster_wait (&ct_cl, 5000), 0);
    ct_sender_destroy (&alice);
    ct_device_destroy (&bob);
}
END_TEST

START_TEST (test_kill9_gateway_clients_move)
{
    char a[32], b[32];
    ct_pick ("ga", -1, -1, a, sizeof a);
    ct_pick ("gb", -1, -1, b, sizeof b);
    ct_sender_t alice, bob;
    ct_sender_init (&alice, 0, "gw-1", a);
    ct_sender_init (&bob, 1, "gw-2", b);
    ct_device_t alice_in;
    ct_device_init (&alice_in, "gw-1", a, "laptop");
    ct_wait_routes (3);
    //  bob's sends are in flight when his gateway dies.
    for (int i = 0; i < 20; i++)
        ct_sender_add (&bob, a);
    tk_node_stop (ct_node ("gw-2"), SIGKILL);
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
    ct_send_all (&alice, b, 5, 10000);
    //  bob reconnects to the other gateway, resends what was not acked
    //  (same cids) and syncs what he missed.
    tk_close (&bob.c);
    bob.c = ct_login ("gw-1", b, "phone");
    for (int k = 0; k < bob.n; k++)
        if (!bob.out[k].acked) {
            bob.out[k].sent_ms = zclock_mono ();
            bob.resends++;
            ck_assert_int_eq (tk_send_text (bob.c, bob.out[k].to, bob.out[k].cid, bob.out[k].cid),
                              0);
        }
    int64_t deadline = zclock_mono () + 10000;
    while (bob.unacked > 0 && zclock_mono () < deadline)
        ct_sender_pump (&bob);
    ck_assert_msg (bob.unacked == 0, "bob: %d sends not acked after reconnecting", bob.unacked);
    fprintf (stderr,
             "test_cluster: gateway kill: bob resent %d of his 20 sends after reconnecting\n",
             bob.resends);
    //  Both inboxes hold every acked message once, sent and received.
    ct_sender_t both[2] = {alice, bob};
    ct_check_inbox (bob.c, b, both, 2);
    ct_check_inbox (alice.c, a, both, 2);
    //  alice's laptop got each of bob's messages once (after dropping
    //  repeated seqs).
    deadline = zclock_mono () + 5000;
    size_t have = 0;
    while (have < 20 && zclock_mono () < deadline) {
        ct_device_pump (&alice_in, 50);
        have = 0;
        for (int k = 0; k < bob.n; k++)
            have += ct_device_has (&alice_in, bob.out[k].id);
    }
    ck_assert_msg (have == 20, "alice got %zu of bob's 20 messages live", have);
    //  bob is live on gw-1 now.
    ct_device_t bob_in;
    ct_device_init (&bob_in, "gw-1", b, "tablet");
    ct_send_all (&alice, b, 1, 10000);
    deadline = zclock_mono () + 5000;
    while (!ct_device_has (&bob_in, alice.out[alice.n - 1].id) && zclock_mono () < deadline)
        ct_device_pump (&bob_in, 20);
    ck_assert_msg (ct_device_has (&bob_in, alice.out[alice.n - 1].id),
                   "no live delivery to bob on gw-1");
    ct_sender_destroy (&alice);
    ct_sender_destroy (&bob);
    ct_device_destroy (&alice_in);
    ct_device_destroy (&bob_in);
}
END_TEST

START_TEST (test_kill9_store_shard_restart)
{
    //  Senders and recipients on both shards; store-1 crashes and comes back.
    enum { NS = 3, ND = 2 };
    char uid[32], r1[32], r2[32];
    ct_sender_t s[NS];
    ct_pick ("sa", 0, -1, uid, sizeof uid);
    ct_sender_init (&s[0], 0, "gw-1", uid);
    ct_pick ("sb", 1, -1, uid, sizeof uid);
    ct_sender_init (&s[1], 1, "gw-2", uid);
    ct_pick ("sc", 0, -1, uid, sizeof uid);
    ct_sender_init (&s[2], 2, "gw-2", uid);
    ct_pick ("ta", 0, -1, r1, sizeof r1);
    ct_pick ("tb", 1, -1, r2, sizeof r2);
    ct_device_t d[ND];
    ct_device_init (&d[0], "gw-1", r1, "phone");
    ct_device_init (&d[1], "gw-2", r2, "phone");
    const char *to[] = {r1, r2};

    ct_stream (s, NS, d, ND, to, 2, true, 1000);
    tk_node_t *store = ct_node ("store-1");
    tk_node_stop (store, SIGKILL);
    ct_stream (s, NS, d, ND, to, 2, true, 1000);
    ck_assert_int_eq (tk_node_start (&ct_cl, store), 0);
    ct_stream (s, NS, d, ND, to, 2, true, 2000);
    ct_drain (s, NS, d, ND, 30000);
    int errors = 0;
    int64_t slowest = 0;
    for (int i = 0; i < NS; i++) {
        errors += s[i].errors + s[i].timeouts;
        if (s[i].max_ack_ms > slowest)
            slowest = s[i].max_ack_ms;
        ct_sender_check_seqs (&s[i]);
    }
    fprintf (stderr,
             "test_cluster: store restart: %d messages, %d errors or timeouts, slowest ack "
             "%lld ms\n",
             s[0].n + s[1].n + s[2].n, errors, (long long)slowest);
    //  The crash was felt: sends failed, or waited for the shard to return.
    ck_assert_msg (errors > 0 || slowest > 500, "no send noticed the store crash");
    //  Every acked message is in its recipient's inbox, once.
    ct_check_inbox (d[0].c, r1, s, NS);
    ct_check_inbox (d[1].c, r2, s, NS);
    //  And in each sender's own inbox (its other devices sync from it).
    for (int i = 0; i < NS; i++)
        ct_check_inbox (s[i].c, s[i].uid, s, NS);
    ck_assert_int_eq (tk_cluster_wait (&ct_cl, 5000), 0);
    for (int i = 0; i < NS; i++)
        ct_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        ct_device_destroy (&d[i]);
}
END_TEST

//  ---------------------------------------------------------------------
//  Two routers: router-1, router-2, one store, two brokers, two gateways;
//  every node (routers too) joins both routers.

static void s_setup_two_routers (void)
{
    ck_assert_int_eq (tk_cluster_start_routers (&ct_cl, 2, 1, 2, 2), 0);
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
static size_t s_not_live (ct_sender_t *senders, int ns, const int *from, ct_device_t *d,
                          const char *when, int64_t t0)
{
    size_t missing = 0;
    for (int i = 0; i < ns; i++)
        for (int k = from[i]; k < senders[i].n; k++) {
            ct_out_t *o = &senders[i].out[k];
            if (!o->acked || (strcmp (o->to, d->uid) != 0 && strcmp (senders[i].uid, d->uid) != 0))
                continue;
            if (!ct_device_has (d, o->id) && missing++ < 5)
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
static void s_chat (ct_sender_t *senders, const char *const *to, ct_device_t *devices, int nd,
                    bool produce, int duration_ms)
{
    int64_t end = zclock_mono () + duration_ms;
    while (zclock_mono () < end) {
        int64_t now = zclock_mono ();
        for (int i = 0; i < 2; i++) {
            ct_sender_t *s = &senders[i];
            if (produce && now >= s->next_ms && s->unacked < 32) {
                ct_sender_add (s, to[i]);
                s->next_ms = now + 10;
            }
            ct_sender_pump (s);
        }
        for (int i = 0; i < nd; i++)
            ct_device_pump (&devices[i], 1);
    }
}

//  The acks of a sender that also receives: distinct seqs of its inbox
//  (what it receives takes seqs between).
static void s_sender_check_distinct (ct_sender_t *s)
{
    uint64_t *seqs = ct_sender_acked_seqs (s);
    for (int k = 1; k < s->n; k++)
        ck_assert_msg (seqs[k] != seqs[k - 1] && seqs[k - 1] > 0,
                       "%s: two acks name seq %llu: a message was stored twice", s->uid,
                       (unsigned long long)seqs[k]);
    free (seqs);
}

//  The number of messages of each sender so far (where the next phase
//  starts).
static void s_marks (ct_sender_t *senders, int ns, int *marks)
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
            json = tk_cluster_status (&ct_cl, ct_node (gws[g]));
            ck_assert_msg (json != NULL, "%s: no status", gws[g]);
            m1 = ct_stat (json, "router-1", "members");
            m2 = ct_stat (json, "router-2", "members");
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
    ct_pick ("twa", -1, -1, a, sizeof a);
    ct_pick ("twb", -1, -1, b, sizeof b);
    ct_sender_t s[NS];
    ct_sender_init (&s[0], 0, "gw-1", a);
    ct_sender_init (&s[1], 1, "gw-2", b);
    ct_device_t d[ND];
    ct_device_init (&d[0], "gw-2", b, "laptop");
    ct_device_init (&d[1], "gw-1", a, "laptop");
    const char *to[] = {b, a};
    //  Presence goes to both routers: both hold the 4 sessions.
    ct_wait_routes_on ("router-1", 4, 5000);
    ct_wait_routes_on ("router-2", 4, 5000);
    ct_send_all (&s[0], b, 1, 5000);
    ct_send_all (&s[1], a, 1, 5000);
    int marks[NS] = {0, 0};
    ct_stream (s, NS, d, ND, NULL, 0, false, 500);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, marks, &d[i], "before the kill", zclock_mono ()) == 0,
                       "%s: no live delivery with both routers up", d[i].label);

    //  A steady stream both ways; router-1 dies in the middle of it.
    int before[NS], after[NS];
    s_marks (s, NS, before);
    s_chat (s, to, d, ND, true, 500);
    tk_node_stop (ct_node ("router-1"), SIGKILL);
    int64_t killed = zclock_mono ();
    //  The brokers' I/O threads see router-1's connection close a moment
    //  after the kill: what is sent in the first 300 ms is counted with the
    //  messages in flight at the kill, not asserted.
    s_chat (s, to, d, ND, true, 300);
    s_marks (s, NS, after);
    s_chat (s, to, d, ND, true, 500);
    ct_drain (s, NS, d, ND, 5000);
    ct_stream (s, NS, d, ND, NULL, 0, false, 2000);
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
    ck_assert_int_eq (tk_cluster_wait (&ct_cl, 8000), 0);
    const char *others[] = {"router-2", "broker-1", "gw-2"};
    for (int i = 0; i < 3; i++) {
        char *json = tk_cluster_status (&ct_cl, ct_node (others[i]));
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
    tk_node_t *r1 = ct_node ("router-1");
    ck_assert_int_eq (tk_node_start (&ct_cl, r1), 0);
    int64_t back = zclock_mono ();
    int restart[NS];
    s_marks (s, NS, restart);
    int64_t whole_ms = -1;
    while (whole_ms < 0 && zclock_mono () - back < 5000) {
        s_chat (s, to, d, ND, true, 100);
        char *json = tk_cluster_status (&ct_cl, ct_node ("gw-1"));
        if (ct_stat (json, "router-1", "routes") >= 4)
            whole_ms = zclock_mono () - back;
        free (json);
    }
    ct_drain (s, NS, d, ND, 5000);
    ct_stream (s, NS, d, ND, NULL, 0, false, 1000);
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
    ct_drain (s, NS, d, ND, 5000);
    ct_stream (s, NS, d, ND, NULL, 0, false, 1000);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, whole, &d[i], "router-1 back", back) == 0,
                       "%s: messages not delivered live with both routers up again", d[i].label);

    //  Its routes are really whole: with router-2 gone, live delivery goes
    //  on through router-1 alone. Killed while nothing is in flight.
    ct_stream (s, NS, d, ND, NULL, 0, false, 200);
    tk_node_stop (ct_node ("router-2"), SIGKILL);
    s_marks (s, NS, after);
    ct_send_all (&s[0], b, 10, 5000);
    ct_send_all (&s[1], a, 10, 5000);
    ct_stream (s, NS, d, ND, NULL, 0, false, 2000);
    for (int i = 0; i < ND; i++)
        ck_assert_msg (s_not_live (s, NS, after, &d[i], "router-2 killed", zclock_mono ()) == 0,
                       "%s: messages not delivered live through the restarted router-1",
                       d[i].label);

    //  Nothing acked is missing or stored twice: both inboxes hold every
    //  acked message once (those not delivered live are found by sync).
    for (int i = 0; i < NS; i++)
        s_sender_check_distinct (&s[i]);
    ct_check_inbox (d[0].c, b, s, NS);
    ct_check_inbox (d[1].c, a, s, NS);
    for (int i = 0; i < NS; i++)
        ct_sender_destroy (&s[i]);
    for (int i = 0; i < ND; i++)
        ct_device_destroy (&d[i]);
}
END_TEST

//  ---------------------------------------------------------------------
//  Stalls (issue 10 #3): a node stopped with SIGSTOP for longer than
//  One case per test, so that CK_RUN_CASE=NAME runs one of them.
static void s_add (Suite *s, const TTest *test)
{
    ct_add_with (s, test, ct_setup);
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
    ct_add_with (s, test_two_routers_failover, s_setup_two_routers);
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
