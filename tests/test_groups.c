/*  test_groups.c: black-box tests of groups against a real zim-server
    process, over real WebSockets and its admin endpoint: a group chat
    among three users with one offline (live copies with each member's own
    seq, the offline member's sync and push record), the refusals (not a
    member 4040, no group 4041, too large 4042, exists 4043, to and group
    4001, cid conflict 4009) and an idempotent retry, kill -9 of
    zim-server during fan-outs into a 500-member group (every member has
    each acked message exactly once, in one order, no gap), zimctl groups,
    and a group whose members live on two store shards. Channels, events
    and history: tests/test_gchannel.c.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_ring.h"
#include "tests/zim_clustertest.h"
#include "tests/zim_groupkit.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MEMBERS 500 //  the big group: the sender and 499 others
#define S_SENDS 300   //  messages sent into it around the kill

static void s_setup (void)
{
    gk_start ("tk-groups.cfg");
}

//  Sends and expects error code.
static void s_gsend_refused (tk_client_t *c, const char *group, const char *cid, const char *text,
                             int code)
{
    tk_frame_t f;
    gk_gsend (c, group, cid, text);
    gk_answer (c, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert_int_eq (f.code, code);
    ck_assert_str_eq (f.cid, cid);
}

START_TEST (test_group_chat_one_offline)
{
    char out[4096];
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "team", "group",
                               "alice,bob,carol", NULL),
                      0);
    ck_assert (strstr (out, "\"added\":3"));
    tk_client_t *phone = tk_login_ok (&gk_srv, "alice", "phone");
    tk_client_t *laptop = tk_login_ok (&gk_srv, "alice", "laptop");
    tk_client_t *bob = tk_login_ok (&gk_srv, "bob", "phone");
    //  bob has a 1:1 message first: group seqs are each member's own.
    ck_assert_int_eq (tk_send_text (bob, "alice", "b0", "hi alice"), 0);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (bob, "ack", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (phone, "msg", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (laptop, "msg", 10000, &f), 0);

    //  alice writes three: acked with her seq and the gseq; bob gets each
    //  with his seq, alice's laptop with hers, carol is offline.
    for (int i = 0; i < 3; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "a%d", i);
        snprintf (body, sizeof body, "hello %d", i);
        gk_gsend_ack (phone, "team", cid, body, &f);
        gk_gfields_t g;
        gk_fields (&f, &g);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 2);
        ck_assert_uint_eq (g.gseq, (uint64_t)i + 1);
        gk_expect_msg (bob, "alice", "team", (uint64_t)i + 2, body);
        gk_expect_msg (laptop, "alice", "team", (uint64_t)i + 2, body);
    }
    //  The sender's own connection gets no copy of its message.
    ck_assert_int_eq (tk_expect (phone, "msg", 300, &f), -1);
    //  bob answers: gseq 4.
    gk_gsend_ack (bob, "team", "b1", "hi all", &f);
    gk_gfields_t g;
    gk_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 4);
    gk_expect_msg (phone, "bob", "team", 5, "hi all");

    //  carol was offline: one push record for the group conversation
    //  (coalesced), and her sync has all four in order.
    //  (the broker queues push records after the live copies: wait for it)
    char *text = NULL;
    for (int i = 0; i < 250; i++) {
        free (text);
        text = NULL;
        ck_assert_int_eq (zim_admin_call (gk_srv.admin, gk_srv.key, 5000, "pushq", NULL, &text), 0);
        if (strstr (text, "\"depth\":1"))
            break;
        usleep (20000);
    }
    ck_assert_msg (strstr (text, "\"depth\":1"), "%s", text);
    free (text);
    tk_client_t *carol = tk_login_ok (&gk_srv, "carol", "phone");
    ck_assert_int_eq (tk_sync (carol, 0, 100, 7), 0);
    ck_assert_int_eq (tk_expect (carol, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 4);
    ck_assert (!f.more);
    for (uint32_t i = 0; i < 4; i++)
        ck_assert_uint_eq (f.seqs[i], i + 1);
    ck_assert_str_eq (f.bodies[0], "hello 0");
    ck_assert_str_eq (f.bodies[3], "hi all");

    //  Read counts: carol read all four (her seq 4), bob up to his seq 3
    //  (gseq 2).
    zim_wr_t rw;
    zim_wr_init (&rw);
    zim_wr_map (&rw, 3);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "read");
    zim_wr_cstr (&rw, "conv");
    zim_wr_cstr (&rw, "g:team");
    zim_wr_cstr (&rw, "seq");
    zim_wr_uint (&rw, 4);
    ck_assert_int_eq (tk_send_wr (carol, &rw), 0);
    ck_assert_int_eq (tk_expect (carol, "receipt", 10000, &f), 0);
    zim_wr_map (&rw, 3);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "read");
    zim_wr_cstr (&rw, "conv");
    zim_wr_cstr (&rw, "g:team");
    zim_wr_cstr (&rw, "seq");
    zim_wr_uint (&rw, 3);
    ck_assert_int_eq (tk_send_wr (bob, &rw), 0);
    ck_assert_int_eq (tk_expect (bob, "receipt", 10000, &f), 0);
    zim_wr_free (&rw);
    ck_assert_int_eq (gk_admin (out, sizeof out, "readers", "demo", "team", "2", NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"readers\":2,"), "%s", out);
    ck_assert_int_eq (gk_admin (out, sizeof out, "readers", "demo", "team", "4", NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"readers\":1,"), "%s", out);
    ck_assert_int_eq (gk_admin (out, sizeof out, "readers", "demo", "team", "9", NULL, NULL),
                      ZIM_ERR_BAD_FIELD);

    //  The conversation list has the group: bob's unread is what he has
    //  not read of the others' messages (gseq 3; his own gseq 4 is not).
    zim_wr_init (&rw);
    zim_wr_map (&rw, 2);
    zim_wr_cstr (&rw, "op");
    zim_wr_cstr (&rw, "convs");
    zim_wr_cstr (&rw, "rid");
    zim_wr_uint (&rw, 11);
    ck_assert_int_eq (tk_send_wr (bob, &rw), 0);
    zim_wr_free (&rw);
    ck_assert_int_eq (tk_expect (bob, "convs", 10000, &f), 0);
    {
        zim_rd_t rd;
        zim_sframe_t m;
        const char *why;
        zim_rd_init (&rd, f.raw, f.raw_len);
        ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
        bool found = false;
        for (uint32_t i = 0; i < m.nconvs; i++) {
            zim_sconv_t cv;
            ck_assert_int_eq (zim_sconv_unpack (&m.convs, &cv), 0);
            if (zim_str_eq (cv.conv, "g:team")) {
                found = true;
                ck_assert_uint_eq (cv.unread, 1);
                ck_assert_uint_eq (cv.seq, 5);
                ck_assert (zim_str_eq (cv.from, "bob"));
            }
        }
        ck_assert (found);
    }

    //  groups: carol's list has the group with its head.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "groups");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 9);
    ck_assert_int_eq (tk_send_wr (carol, &wr), 0);
    zim_wr_free (&wr);
    ck_assert_int_eq (tk_expect (carol, "groups", 10000, &f), 0);
    gk_fields (&f, &g);
    ck_assert_uint_eq (f.rid, 9);
    ck_assert_uint_eq (g.ngroups, 1);
    ck_assert (strstr ((const char *)f.raw, "team") || memmem (f.raw, f.raw_len, "team", 4));

    tk_close (&phone);
    tk_close (&laptop);
    tk_close (&bob);
    tk_close (&carol);
}
END_TEST

START_TEST (test_group_refusals_and_retry)
{
    char out[8192];
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "ops", "group", "erin,fay", NULL),
                      0);
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "ops", "group", "x", NULL),
                      ZIM_ERR_GROUP_EXISTS);
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "nope", "x", "-", NULL),
                      ZIM_ERR_NO_GROUP);
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "ops", "ok,not:valid", "-",
                               NULL),
                      ZIM_ERR_BAD_FIELD);
    //  501 members: too large, and nothing of it kept.
    char list[4096] = "";
    for (int i = 0; i <= 500; i++) {
        char one[8];
        snprintf (one, sizeof one, "%sm%03d", i ? "," : "", i);
        strcat (list, one);
    }
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "huge", "group", list, NULL),
                      ZIM_ERR_GROUP_FULL);
    ck_assert_int_eq (gk_admin (out, sizeof out, "get", "demo", "huge", NULL, NULL, NULL),
                      ZIM_ERR_NO_GROUP);

    tk_client_t *erin = tk_login_ok (&gk_srv, "erin", "phone");
    tk_client_t *fay = tk_login_ok (&gk_srv, "fay", "phone");
    tk_client_t *gus = tk_login_ok (&gk_srv, "gus", "phone");
    s_gsend_refused (gus, "ops", "g1", "let me in", ZIM_ERR_NOT_MEMBER);
    s_gsend_refused (erin, "nope", "e0", "anyone?", ZIM_ERR_NO_GROUP);
    //  Both to and group: 4001.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "group");
    zim_wr_cstr (&wr, "ops");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "fay");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "e9");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "x");
    ck_assert_int_eq (tk_send_wr (erin, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f, again;
    gk_answer (erin, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert_int_eq (f.code, ZIM_ERR_BAD_FIELD);

    //  A retry with the same cid: the same ack, fay gets it once.
    gk_gsend_ack (erin, "ops", "e1", "standup at 10", &f);
    gk_expect_msg (fay, "erin", "ops", 1, "standup at 10");
    gk_gsend_ack (erin, "ops", "e1", "standup at 10", &again);
    ck_assert_uint_eq (again.id, f.id);
    ck_assert_uint_eq (again.seq, f.seq);
    ck_assert_int_eq (tk_expect (fay, "msg", 500, &again), -1);
    //  The same cid with another body: a conflict.
    s_gsend_refused (erin, "ops", "e1", "standup at 11", ZIM_ERR_CID_CONFLICT);

    //  Removed: refused from then on; gus added: gets what follows only.
    ck_assert_int_eq (gk_admin (out, sizeof out, "members", "demo", "ops", "gus", "fay", NULL), 0);
    ck_assert_msg (strstr (out, "\"added\":1") && strstr (out, "\"removed\":1"), "%s", out);
    s_gsend_refused (fay, "ops", "f1", "still here?", ZIM_ERR_NOT_MEMBER);
    gk_gsend_ack (erin, "ops", "e2", "welcome gus", &f);
    gk_expect_msg (gus, "erin", "ops", 2, "welcome gus"); //  1: his join event
    ck_assert_int_eq (gk_admin (out, sizeof out, "get", "demo", "ops", NULL, NULL, NULL), 0);
    ck_assert_msg (strstr (out, "\"count\":2") && strstr (out, "\"erin\"") &&
                       strstr (out, "\"gus\"") && !strstr (out, "\"fay\""),
                   "%s", out);
    //  Deleted: gone for everyone.
    ck_assert_int_eq (gk_admin (out, sizeof out, "delete", "demo", "ops", NULL, NULL, NULL), 0);
    s_gsend_refused (erin, "ops", "e3", "hello?", ZIM_ERR_NO_GROUP);
    tk_close (&erin);
    tk_close (&fay);
    tk_close (&gus);
}
END_TEST

//  One member's inbox: every message of ids[0..n) exactly once, in that
//  order, seqs 1..n with no gap.
static void s_check_member (const char *uid, const uint64_t *ids, int n)
{
    tk_client_t *c = tk_login_ok (&gk_srv, uid, "check");
    tk_frame_t f;
    ck_assert_int_eq (tk_sync (c, 0, 1000, 1), 0);
    ck_assert_int_eq (tk_expect (c, "page", 10000, &f), 0);
    ck_assert_msg ((int)f.nmsgs == n && !f.more, "%s has %u messages, not %d", uid, f.nmsgs, n);
    for (int i = 0; i < n; i++) {
        ck_assert_uint_eq (f.seqs[i], (uint64_t)i + 1);
        ck_assert_msg (f.ids[i] == ids[i], "%s: message %d is %llu, not %llu", uid, i,
                       (unsigned long long)f.ids[i], (unsigned long long)ids[i]);
    }
    tk_close (&c);
}

START_TEST (test_group_kill9_during_fanout)
{
    //  "sender" and 499 others.
    char list[4096] = "sender";
    for (int i = 1; i < S_MEMBERS; i++) {
        char one[8];
        snprintf (one, sizeof one, ",m%03d", i);
        strcat (list, one);
    }
    char out[256];
    ck_assert_int_eq (gk_admin (out, sizeof out, "create", "demo", "big", "group", list, NULL), 0);
    ck_assert_msg (strstr (out, "\"members\":500"), "%s", out);

    //  All sends pipelined; the server is killed once a third are acked.
    tk_client_t *c = tk_login_ok (&gk_srv, "sender", "phone");
    zim_wr_t wr;
    zim_wr_init (&wr);
    for (int i = 0; i < S_SENDS; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "k%d", i);
        snprintf (body, sizeof body, "m %d", i);
        gk_enc_gsend (&wr, "big", cid, body);
        if ((i + 1) % 20 == 0)
            ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    }
    zim_wr_free (&wr);
    uint64_t acked[S_SENDS] = {0};
    int nacked = 0;
    tk_frame_t f;
    while (nacked < S_SENDS / 3 && tk_recv (c, 10000, &f) == 0)
        if (strcmp (f.op, "ack") == 0) {
            int i = atoi (f.cid + 1);
            ck_assert (i >= 0 && i < S_SENDS);
            acked[i] = f.id;
            nacked++;
        }
    ck_assert_int_ge (nacked, S_SENDS / 3);
    tk_server_stop (&gk_srv, SIGKILL);
    tk_close (&c);

    //  Restart on the same data; send everything again with the same cids.
    const char *extra[] = {"-c", "tk-groups.cfg", NULL};
    char data[256];
    snprintf (data, sizeof data, "%s", gk_srv.data);
    ck_assert_int_eq (tk_server_start (&gk_srv, data, extra), 0);
    c = tk_login_ok (&gk_srv, "sender", "phone");
    uint64_t ids[S_SENDS];
    for (int i = 0; i < S_SENDS; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "k%d", i);
        snprintf (body, sizeof body, "m %d", i);
        gk_gsend_ack (c, "big", cid, body, &f);
        gk_gfields_t g;
        gk_fields (&f, &g);
        ids[i] = f.id;
        //  An ack from before the kill names the same message.
        ck_assert (!acked[i] || acked[i] == f.id);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 1);
        ck_assert_uint_eq (g.gseq, (uint64_t)i + 1);
    }
    tk_close (&c);
    //  Every member: each message once, in send order, no gap.
    s_check_member ("sender", ids, S_SENDS);
    for (int i = 1; i < S_MEMBERS; i++) {
        char uid[8];
        snprintf (uid, sizeof uid, "m%03d", i);
        s_check_member (uid, ids, S_SENDS);
    }
}
END_TEST

START_TEST (test_zimctl_groups)
{
    char cmd[1024], out[4096];
    const char *bin = getenv ("ZIMCTL") ? getenv ("ZIMCTL") : "./zimctl";
    snprintf (cmd, sizeof cmd,
              "%s -e %s -k %s groups create --app demo --group crew --members lea,max 2>&1 && "
              "%s -e %s -k %s groups add --app demo --group crew --members ned 2>&1 && "
              "%s -e %s -k %s groups get --app demo --group crew 2>&1",
              bin, gk_srv.admin, gk_srv.key, bin, gk_srv.admin, gk_srv.key, bin, gk_srv.admin, gk_srv.key);
    ck_assert_int_eq (tk_shell (cmd, out, sizeof out), 0);
    ck_assert_msg (strstr (out, "\"members\":[\"lea\",\"max\",\"ned\"]"), "%s", out);
    ck_assert_msg (strstr (out, "\"added\":1"), "%s", out);
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s groups get --app demo --group none 2>&1", bin,
              gk_srv.admin, gk_srv.key);
    ck_assert_int_eq (WEXITSTATUS (tk_shell (cmd, out, sizeof out)), 1);
    ck_assert_msg (strstr (out, "4041"), "%s", out);
}
END_TEST

//  -------------------------------------------------------------------------
//  A cluster of two store shards: a group whose members live on both.

//  A name prefix+N whose key (key_prefix + name) lands on shard.
static void s_pick (const char *key_prefix, const char *prefix, int shard, char *out, size_t size)
{
    const char *names[] = {"store-1", "store-2"};
    zim_ring_t *ring = zim_ring_new (names, 2);
    for (int i = 0; i < 1000; i++) {
        char key[80];
        snprintf (out, size, "%s%d", prefix, i);
        snprintf (key, sizeof key, "%s%s", key_prefix, out);
        if (zim_ring_lookup (ring, zim_str ("demo"), zim_str (key)) == shard)
            break;
    }
    zim_ring_destroy (&ring);
}

//  Sends to a group until acked, retrying 5030 with the same cid (a node
//  that has not seen the whole map yet, a shard that is down).
static void s_cluster_gsend (tk_client_t *c, const char *group, const char *cid, const char *text,
                             tk_frame_t *f)
{
    for (int tries = 0;; tries++) {
        gk_gsend (c, group, cid, text);
        gk_answer (c, f);
        if (strcmp (f->op, "ack") == 0)
            return;
        ck_assert_msg ((f->code == ZIM_ERR_UNAVAILABLE || f->code == ZIM_ERR_TIMEOUT) && tries < 100,
                       "%s: error %lld", cid, (long long)f->code);
        usleep (100000);
    }
}

//  The sync page of uid (from 0) into f.
static void s_cluster_sync (const char *uid, tk_frame_t *f)
{
    tk_client_t *c = ct_login ("gw-1", uid, "phone");
    ck_assert_int_eq (tk_sync (c, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (c, "page", 10000, f), 0);
    tk_close (&c);
}

START_TEST (test_group_across_shards)
{
    //  The group on shard 1 (store-1); a and d there, b and c on store-2.
    char group[32], a[32], b[32], c[32], d[32], list[160], out[1024];
    s_pick ("g:", "crew", 0, group, sizeof group);
    s_pick ("", "a", 0, a, sizeof a);
    s_pick ("", "b", 1, b, sizeof b);
    s_pick ("", "c", 1, c, sizeof c);
    s_pick ("", "d", 0, d, sizeof d);
    snprintf (list, sizeof list, "%s,%s,%s,%s", a, b, c, d);
    tk_node_t *s1 = tk_cluster_node (&ct_cl, "store-1"), *s2 = tk_cluster_node (&ct_cl, "store-2");
    const char *args[] = {"create", "demo", group, "group", list, NULL};
    char *text = NULL;
    ck_assert_int_eq (zim_admin_call_curve (s1->admin, ct_cl.keys, ct_cl.key, 5000, "groups", args, &text),
                      0);
    free (text);

    //  a (store-1) sends five: b (store-2) gets each live with its seq.
    tk_client_t *ca = ct_login ("gw-1", a, "phone"), *cb = ct_login ("gw-1", b, "phone");
    tk_frame_t f;
    for (int i = 0; i < 5; i++) {
        char cid[16], body[16];
        snprintf (cid, sizeof cid, "x%d", i);
        snprintf (body, sizeof body, "x %d", i);
        s_cluster_gsend (ca, group, cid, body, &f);
        ck_assert_uint_eq (f.seq, (uint64_t)i + 1);
        gk_expect_msg (cb, a, group, (uint64_t)i + 1, body);
    }
    //  b answers from store-2: its ack names its own seq, a gets it.
    s_cluster_gsend (cb, group, "y0", "y 0", &f);
    gk_gfields_t g;
    gk_fields (&f, &g);
    ck_assert_uint_eq (f.seq, 6);
    ck_assert_uint_eq (g.gseq, 6);
    gk_expect_msg (ca, b, group, 6, "y 0");
    //  c (offline, store-2) and d (store-1): all six in order from their
    //  own shards.
    s_cluster_sync (c, &f);
    ck_assert_uint_eq (f.nmsgs, 6);
    ck_assert_str_eq (f.bodies[0], "x 0");
    ck_assert_str_eq (f.bodies[5], "y 0");
    s_cluster_sync (d, &f);
    ck_assert_uint_eq (f.nmsgs, 6);
    ck_assert_uint_eq (f.seqs[5], 6);

    //  store-2 dies: a's send is stored on store-1 with its job, and
    //  cannot finish (5030). store-2 comes back: a broker's poll finishes
    //  the job without any retry; the retry then finds it done.
    tk_close (&cb);
    tk_node_stop (s2, SIGKILL);
    gk_gsend (ca, group, "z0", "z 0");
    gk_answer (ca, &f);
    ck_assert_str_eq (f.op, "error");
    ck_assert (f.code == ZIM_ERR_UNAVAILABLE || f.code == ZIM_ERR_TIMEOUT);
    ck_assert_int_eq (tk_node_start (&ct_cl, s2), 0);
    ck_assert_int_eq (tk_cluster_wait (&ct_cl, 20000), 0);
    bool done = false;
    for (int i = 0; i < 300 && !done; i++) {
        s_cluster_sync (c, &f);
        done = f.nmsgs == 7;
        if (!done)
            usleep (100000);
    }
    ck_assert_msg (done, "the job was not finished: c has %u messages", f.nmsgs);
    ck_assert_str_eq (f.bodies[6], "z 0");
    ck_assert_uint_eq (f.seqs[6], 7);
    uint64_t id = f.ids[6];
    s_cluster_gsend (ca, group, "z0", "z 0", &f);
    ck_assert_uint_eq (f.id, id);
    gk_fields (&f, &g);
    ck_assert_uint_eq (g.gseq, 7);
    ck_assert_uint_eq (f.seq, 7);
    s_cluster_sync (b, &f);
    ck_assert_uint_eq (f.nmsgs, 7);
    ck_assert_uint_eq (f.ids[6], id);
    //  e (store-2) joins through store-1's admin endpoint: the join event
    //  reaches e's inbox on store-2 by the brokers' job poll (no broker
    //  wrote it), and b's (store-2, a member) too.
    char e[32];
    s_pick ("", "e", 1, e, sizeof e);
    const char *add[] = {"members", "demo", group, e, "-", NULL};
    ck_assert_int_eq (zim_admin_call_curve (s1->admin, ct_cl.keys, ct_cl.key, 5000, "groups", add, &text),
                      0);
    free (text);
    done = false;
    for (int i = 0; i < 300 && !done; i++) {
        s_cluster_sync (e, &f);
        done = f.nmsgs == 1;
        if (!done)
            usleep (100000);
    }
    ck_assert_msg (done, "the join event did not reach %s on store-2", e);
    ck_assert_uint_eq (f.seqs[0], 1);
    char users[128];
    tk_client_t *ce = ct_login ("gw-1", e, "phone");
    ck_assert_int_eq (tk_sync (ce, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (ce, "page", 10000, &f), 0);
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
    ck_assert (strstr (users, e));
    tk_close (&ce);
    ce = ct_login ("gw-1", b, "phone");
    ck_assert_int_eq (tk_sync (ce, 0, 100, 2), 0);
    ck_assert_int_eq (tk_expect (ce, "page", 10000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 8);
    ck_assert_int_eq (gk_events (&f, "join", users, sizeof users), 1);
    tk_close (&ce);
    (void)out;
    tk_close (&ca);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("groups");
    TCase *tc = tcase_create ("groups");
    tcase_set_timeout (tc, 240);
    tcase_add_checked_fixture (tc, s_setup, gk_teardown);
    tcase_add_test (tc, test_group_chat_one_offline);
    tcase_add_test (tc, test_group_refusals_and_retry);
    tcase_add_test (tc, test_group_kill9_during_fanout);
    tcase_add_test (tc, test_zimctl_groups);
    suite_add_tcase (s, tc);
    TCase *tcc = tcase_create ("cluster");
    tcase_set_timeout (tcc, 180);
    tcase_add_checked_fixture (tcc, ct_setup_shards, ct_teardown);
    tcase_add_test (tcc, test_group_across_shards);
    suite_add_tcase (s, tcc);
    return tk_run (s);
}
