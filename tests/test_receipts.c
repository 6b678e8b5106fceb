/*  test_receipts.c: black-box tests of read/delivered receipts and the
    conversation list against a real zim-server process, over real
    WebSockets: receipts both ways across devices, cursors that never move
    back, who may mark what, and `convs` after a restart (clean and kill -9)
    with exact unread counts. In a cluster, users on two store shards:
    the other side's seq found on its own shard, the push record queued on
    the recipient's shard and removed there by its read.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "tests/zim_clustertest.h"
#include "tests/zim_testkit.h"

#include <jansson.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tk_server_t srv;

static void s_setup (void)
{
    ck_assert_int_eq (tk_server_start (&srv, NULL, NULL), 0);
}

static void s_teardown (void)
{
    tk_server_cleanup (&srv);
}

//  Sends {"op":op,"conv":conv,"seq":seq} (read, delivered).
static void s_mark (tk_client_t *c, const char *op, const char *conv, uint64_t seq)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, op);
    zim_wr_cstr (&wr, "conv");
    zim_wr_cstr (&wr, conv);
    zim_wr_cstr (&wr, "seq");
    zim_wr_uint (&wr, seq);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  A receipt frame's fields (-1: absent).
typedef struct {
    char conv[140], user[72];
    int64_t read, delivered;
} s_receipt_t;

//  Waits for the next receipt on c; 0 or -1.
static int s_receipt (tk_client_t *c, int timeout_ms, s_receipt_t *r)
{
    tk_frame_t f;
    if (tk_expect (c, "receipt", timeout_ms, &f))
        return -1;
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    zim_str_copy (m.conv, r->conv, sizeof r->conv);
    zim_str_copy (m.user, r->user, sizeof r->user);
    r->read = m.has_read ? (int64_t)m.read : -1;
    r->delivered = m.has_delivered ? (int64_t)m.delivered : -1;
    return 0;
}

//  Expects a receipt on c about user in conv with read and delivered (-1:
//  absent).
static void s_expect (tk_client_t *c, const char *conv, const char *user, int64_t read,
                      int64_t delivered)
{
    s_receipt_t r;
    ck_assert_int_eq (s_receipt (c, 5000, &r), 0);
    ck_assert_str_eq (r.conv, conv);
    ck_assert_str_eq (r.user, user);
    ck_assert_int_eq (r.read, read);
    ck_assert_int_eq (r.delivered, delivered);
}

//  Sends n messages from c to `to`; waits for their acks; returns the last
//  seq. A send answered 5030 (a cluster node that has not seen the whole
//  map yet) is sent again with its cid, as a client does.
static uint64_t s_send (tk_client_t *c, const char *to, const char *tag, int n)
{
    tk_frame_t f;
    for (int i = 0; i < n; i++) {
        char cid[32], body[32];
        snprintf (cid, sizeof cid, "%s-%d", tag, i);
        snprintf (body, sizeof body, "%s %d", tag, i);
        for (int tries = 0;; tries++) {
            ck_assert_int_eq (tk_send_text (c, to, cid, body), 0);
            do
                ck_assert_int_eq (tk_recv (c, 5000, &f), 0);
            while (strcmp (f.op, "ack") && strcmp (f.op, "error"));
            if (strcmp (f.op, "ack") == 0)
                break;
            ck_assert_msg (f.code == ZIM_ERR_UNAVAILABLE && tries < 50, "error %lld",
                           (long long)f.code);
            usleep (100000);
        }
    }
    return f.seq;
}

START_TEST (test_receipts_both_ways_across_devices)
{
    const char *ab = "p:alice:bob";
    tk_client_t *phone = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *laptop = tk_login_ok (&srv, "alice", "laptop");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    //  alice 1, 2, 3 -> bob (bob's seqs 1, 2, 3); bob 4 -> alice (seq 4 for both).
    ck_assert_uint_eq (s_send (phone, "bob", "a", 3), 3);
    ck_assert_uint_eq (s_send (bob, "alice", "b", 1), 4);

    //  bob got everything: delivered 3. bob's device gets his cursors,
    //  alice's devices get bob's delivered cursor in alice's seqs.
    s_mark (bob, "delivered", ab, 3);
    s_expect (bob, ab, "bob", 0, 3);
    s_expect (phone, ab, "bob", -1, 3);
    s_expect (laptop, ab, "bob", -1, 3);
    //  bob read up to 2.
    s_mark (bob, "read", ab, 2);
    s_expect (bob, ab, "bob", 2, 3);
    s_expect (phone, ab, "bob", 2, -1);
    s_expect (laptop, ab, "bob", 2, -1);
    //  Backwards, or the same: ignored, answered with the cursors as they
    //  are; alice hears nothing.
    s_mark (bob, "read", ab, 1);
    s_expect (bob, ab, "bob", 2, 3);
    s_mark (bob, "delivered", ab, 3);
    s_expect (bob, ab, "bob", 2, 3);
    s_receipt_t r;
    ck_assert_int_eq (s_receipt (phone, 300, &r), -1);

    //  alice reads bob's message (her seq 4) on her phone: her laptop hears
    //  it (read 4, delivered 4), bob hears it in his seqs (his message is
    //  his seq 4).
    s_mark (phone, "read", ab, 4);
    s_expect (phone, ab, "alice", 4, 4);
    s_expect (laptop, ab, "alice", 4, 4);
    s_expect (bob, ab, "alice", 4, -1);
    //  Read up to her own newer message: a cursor names messages of the
    //  other side (one's own are read), so nothing moves: her phone gets
    //  the cursors as they are, her laptop and bob hear nothing.
    ck_assert_uint_eq (s_send (laptop, "bob", "c", 1), 5);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (phone, "msg", 5000, &f), 0);
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    s_mark (phone, "read", ab, 5);
    s_expect (phone, ab, "alice", 4, 4);
    ck_assert_int_eq (s_receipt (laptop, 300, &r), -1);
    ck_assert_int_eq (s_receipt (bob, 300, &r), -1);

    //  Only the two of them: carol gets 4030; a bad key 4001; notes to
    //  oneself are accepted (one's own messages: nothing to name).
    tk_client_t *carol = tk_login_ok (&srv, "carol", "phone");
    s_mark (carol, "read", ab, 1);
    ck_assert_int_eq (tk_expect (carol, "error", 5000, &f), 0);
    ck_assert_int_eq (f.code, ZIM_ERR_FORBIDDEN);
    s_mark (carol, "read", "p:bob:alice", 1);
    ck_assert_int_eq (tk_expect (carol, "error", 5000, &f), 0);
    ck_assert_int_eq (f.code, ZIM_ERR_BAD_FIELD);
    ck_assert_uint_eq (s_send (carol, "carol", "note", 1), 1);
    s_mark (carol, "read", "p:carol:carol", 1);
    s_expect (carol, "p:carol:carol", "carol", 0, 0);
    tk_close (&carol);
    tk_close (&phone);
    tk_close (&laptop);
    tk_close (&bob);
}
END_TEST

//  One conversation of a convs answer.
typedef struct {
    char conv[140], from[72], body[64];
    uint64_t id, seq, unread, read, delivered, peer_read, muted;
} s_conv_t;

//  Asks for convs (limit, before) with rid; fills up to max entries;
//  returns how many, *more as the page says.
static uint32_t s_convs (tk_client_t *c, uint64_t limit, uint64_t before, uint64_t rid,
                         s_conv_t *out, uint32_t max, bool *more)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "convs");
    zim_wr_cstr (&wr, "limit");
    zim_wr_uint (&wr, limit);
    zim_wr_cstr (&wr, "before");
    zim_wr_uint (&wr, before);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, rid);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "convs", 5000, &f), 0);
    ck_assert_uint_eq (f.rid, rid);
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    *more = m.more;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m.nconvs; i++) {
        zim_sconv_t sc;
        ck_assert_int_eq (zim_sconv_unpack (&m.convs, &sc), 0);
        if (n == max)
            continue;
        s_conv_t *o = &out[n++];
        memset (o, 0, sizeof *o);
        zim_str_copy (sc.conv, o->conv, sizeof o->conv);
        zim_str_copy (sc.from, o->from, sizeof o->from);
        zim_rd_t body;
        zim_str_t text;
        zim_rd_init (&body, sc.body.ptr, sc.body.len);
        if (zim_rd_str (&body, &text) == 0)
            zim_str_copy (text, o->body, sizeof o->body);
        o->id = sc.id, o->seq = sc.seq, o->unread = sc.unread, o->read = sc.read;
        o->delivered = sc.delivered, o->peer_read = sc.peer_read, o->muted = sc.muted;
    }
    return n;
}

//  bob's list as the test expects it whatever restarts happened.
static void s_check_bob (tk_client_t *bob)
{
    s_conv_t c[8];
    bool more;
    ck_assert_uint_eq (s_convs (bob, 10, 0, 1, c, 8, &more), 3);
    ck_assert (!more);
    //  Most recent first: dave's message, bob's own answer to alice, carol.
    ck_assert_str_eq (c[0].conv, "p:bob:dave");
    ck_assert_uint_eq (c[0].unread, 2);
    ck_assert_str_eq (c[0].body, "d 1");
    ck_assert_str_eq (c[1].conv, "p:alice:bob");
    ck_assert_str_eq (c[1].from, "bob");
    ck_assert_str_eq (c[1].body, "b 0");
    //  alice's 4 (bob's seqs 2..5), bob read 3 of them (up to his seq 4);
    //  his own answer is never unread.
    ck_assert_uint_eq (c[1].unread, 1);
    ck_assert_uint_eq (c[1].read, 4);
    ck_assert_uint_eq (c[1].peer_read, 6); //  alice read bob's answer (his seq 6)
    ck_assert_str_eq (c[2].conv, "p:bob:carol");
    ck_assert_uint_eq (c[2].unread, 0);
    ck_assert_uint_eq (c[2].read, c[2].seq);
    ck_assert (c[0].id > c[1].id && c[1].id > c[2].id);
    //  Paged: one at a time, from the last id.
    uint64_t before = 0;
    const char *order[] = {"p:bob:dave", "p:alice:bob", "p:bob:carol"};
    for (int i = 0; i < 3; i++) {
        s_conv_t one;
        ck_assert_uint_eq (s_convs (bob, 1, before, 10 + i, &one, 1, &more), 1);
        ck_assert_str_eq (one.conv, order[i]);
        ck_assert (more == (i < 2));
        before = one.id;
    }
}

START_TEST (test_convs_after_restart)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    tk_client_t *carol = tk_login_ok (&srv, "carol", "phone");
    tk_client_t *dave = tk_login_ok (&srv, "dave", "phone");
    //  bob's inbox: carol 1, alice 2..5, bob's answer 6, dave 7, 8.
    s_send (carol, "bob", "c", 1);
    s_send (alice, "bob", "a", 4);
    s_send (bob, "alice", "b", 1);
    s_send (dave, "bob", "d", 2);
    s_mark (bob, "read", "p:bob:carol", 1);
    s_mark (bob, "read", "p:alice:bob", 4);   //  alice's first three
    s_mark (alice, "read", "p:alice:bob", 5); //  bob's answer, alice's seq 5
    s_receipt_t r;
    //  The receipts reached bob: his own three, then alice's.
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (s_receipt (bob, 5000, &r), 0);
    tk_close (&alice);
    tk_close (&carol);
    tk_close (&dave);
    s_check_bob (bob);
    tk_close (&bob);

    //  A clean restart, then a crash: the list is what it was.
    char data[256];
    snprintf (data, sizeof data, "%s", srv.data);
    for (int round = 0; round < 2; round++) {
        tk_server_stop (&srv, round == 0 ? SIGTERM : SIGKILL);
        ck_assert_int_eq (tk_server_start (&srv, data, NULL), 0);
        bob = tk_login_ok (&srv, "bob", "phone");
        s_check_bob (bob);
        //  alice's list: bob's answer unread for nobody (she read it).
        alice = tk_login_ok (&srv, "alice", "laptop");
        s_conv_t c[4];
        bool more;
        ck_assert_uint_eq (s_convs (alice, 0, 0, 3, c, 4, &more), 1);
        ck_assert_str_eq (c[0].conv, "p:alice:bob");
        ck_assert_uint_eq (c[0].unread, 0);
        ck_assert_uint_eq (c[0].peer_read, 3); //  bob read her first three (her seqs 1..3)
        tk_close (&alice);
        tk_close (&bob);
    }
}
END_TEST

//  -------------------------------------------------------------------------
//  Two store shards

//  The push queue depth of a store node.
static int64_t s_depth (const char *store)
{
    char *text = NULL;
    tk_node_t *n = tk_cluster_node (&ct_cl, store);
    ck_assert_int_eq (zim_admin_call_curve (n->admin, ct_cl.keys, ct_cl.key, 5000, "pushq", NULL, &text),
                      0);
    json_t *o = json_loads (text, 0, NULL);
    int64_t depth = json_integer_value (json_object_get (o, "depth"));
    json_decref (o);
    free (text);
    return depth;
}

START_TEST (test_receipts_across_shards)
{
    char alice_id[32], bob_id[32], conv[80];
    ct_pick ("alice", 0, -1, alice_id, sizeof alice_id);
    ct_pick ("bob", 1, -1, bob_id, sizeof bob_id);
    snprintf (conv, sizeof conv, "p:%s:%s", alice_id, bob_id);
    //  bob is offline: two messages of alice, one push record on his shard.
    tk_client_t *alice = ct_login ("gw-1", alice_id, "phone");
    ck_assert_uint_eq (s_send (alice, bob_id, "x", 2), 2);
    for (int i = 0; i < 250 && s_depth ("store-2") != 1; i++)
        usleep (20000);
    ck_assert_int_eq (s_depth ("store-2"), 1);
    ck_assert_int_eq (s_depth ("store-1"), 0);
    //  bob reads them: his shard moves his cursor and drops the record;
    //  alice's shard finds her seq of the message (2): her device hears it.
    tk_client_t *bob = ct_login ("gw-1", bob_id, "phone");
    s_mark (bob, "read", conv, 2);
    s_expect (bob, conv, bob_id, 2, 2);
    s_expect (alice, conv, bob_id, 2, -1);
    ck_assert_int_eq (s_depth ("store-2"), 0);
    //  And back: bob answers (alice's seq 3), alice reads it on her shard,
    //  bob's shard answers with his seq of it (3).
    ck_assert_uint_eq (s_send (bob, alice_id, "y", 1), 3);
    s_mark (alice, "read", conv, 3);
    s_expect (alice, conv, alice_id, 3, 3);
    s_expect (bob, conv, alice_id, 3, -1);
    //  Each side's list, from its own shard, with the other side's cursor.
    s_conv_t c[2];
    bool more;
    ck_assert_uint_eq (s_convs (alice, 10, 0, 5, c, 2, &more), 1);
    ck_assert_str_eq (c[0].conv, conv);
    ck_assert_uint_eq (c[0].unread, 0);
    ck_assert_uint_eq (c[0].peer_read, 2);
    ck_assert_uint_eq (s_convs (bob, 10, 0, 6, c, 2, &more), 1);
    ck_assert_uint_eq (c[0].unread, 0);
    ck_assert_uint_eq (c[0].peer_read, 3);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("receipts");
    TCase *tc = tcase_create ("receipts");
    tcase_set_timeout (tc, 60);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_receipts_both_ways_across_devices);
    tcase_add_test (tc, test_convs_after_restart);
    suite_add_tcase (s, tc);
    TCase *tcc = tcase_create ("cluster");
    tcase_set_timeout (tcc, 120);
    tcase_add_checked_fixture (tcc, ct_setup_shards, ct_teardown);
    tcase_add_test (tcc, test_receipts_across_shards);
    suite_add_tcase (s, tcc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
