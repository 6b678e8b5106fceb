/*  test_idem.c: black-box tests of idempotent send against a real
    zim-server, over real WebSockets (BRIEF.md guarantee 2; issue 10 #2): a
    retry with the same cid, recipient and body gets the original ack and
    the original message again; the same cid with another recipient or
    body is refused with 4009 and changes nothing, for anyone.
*/
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tk_server_t srv;

static void s_setup (void)
{
    ck_assert_int_eq (tk_server_start (&srv, NULL, NULL), 0);
}

static void s_teardown (void)
{
    tk_server_cleanup (&srv);
}

//  Sends and returns the ack (fails the test on anything else).
static tk_frame_t s_sent (tk_client_t *c, const char *to, const char *cid, const char *body)
{
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (c, to, cid, body), 0);
    ck_assert_int_eq (tk_recv (c, 5000, &f), 0);
    ck_assert_msg (strcmp (f.op, "ack") == 0, "send %s: %s %lld %s", cid, f.op, (long long)f.code,
                   f.text);
    ck_assert_str_eq (f.cid, cid);
    return f;
}

//  The next frame on c is the message body with seq, from from.
static void s_got (tk_client_t *c, const char *from, const char *body, uint64_t seq)
{
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.from, from);
    ck_assert_str_eq (f.body, body);
    ck_assert_uint_eq (f.seq, seq);
}

//  c gets nothing within ms.
static void s_nothing (tk_client_t *c, const char *who, int ms)
{
    tk_frame_t f;
    int rc = tk_recv (c, ms, &f);
    ck_assert_msg (rc == -1, "%s got %s (seq %llu, body '%s') and should have got nothing", who,
                   f.op, (unsigned long long)f.seq, f.body);
}

//  The reused cid as issue 10 tells it: alice's x2 to bob is acked as bob's
//  seq 3; x2 again to carol, with another body, must not be acked, nor
//  reach carol (whose seq 3 is still to come), nor be stored.
START_TEST (test_reused_cid_is_refused)
{
    tk_client_t *eve = tk_login_ok (&srv, "eve", "phone");
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    tk_client_t *carol = tk_login_ok (&srv, "carol", "phone");
    tk_client_t *dave = tk_login_ok (&srv, "dave", "phone");
    //  bob and carol hold two messages each.
    for (int i = 1; i <= 2; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "eb%d", i);
        s_sent (eve, "bob", cid, "from eve");
        s_got (bob, "eve", "from eve", (uint64_t)i);
        snprintf (cid, sizeof cid, "ec%d", i);
        s_sent (eve, "carol", cid, "from eve");
        s_got (carol, "eve", "from eve", (uint64_t)i);
    }

    tk_frame_t ack = s_sent (alice, "bob", "x2", "for bob");
    s_got (bob, "alice", "for bob", 3);

    //  The same cid to carol with another body: refused, with its cid.
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (alice, "carol", "x2", "for carol"), 0);
    ck_assert_int_eq (tk_recv (alice, 5000, &f), 0);
    ck_assert_msg (strcmp (f.op, "error") == 0 && f.code == ZIM_ERR_CID_CONFLICT,
                   "a reused cid got %s %lld, not error 4009", f.op, (long long)f.code);
    ck_assert_str_eq (f.cid, "x2");
    s_nothing (carol, "carol", 500);
    s_nothing (bob, "bob", 100);

    //  The same cid and recipient with another body: refused too.
    ck_assert_int_eq (tk_send_text (alice, "bob", "x2", "changed"), 0);
    ck_assert_int_eq (tk_expect (alice, "error", 5000, &f), 0);
    ck_assert_int_eq (f.code, ZIM_ERR_CID_CONFLICT);
    s_nothing (bob, "bob", 300);

    //  carol's next real message gets the seq it should, and carol's inbox
    //  holds eve's two and dave's, nothing else.
    s_sent (dave, "carol", "d1", "from dave");
    s_got (carol, "dave", "from dave", 3);
    ck_assert_int_eq (tk_sync (carol, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (carol, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_str_eq (f.bodies[2], "from dave");
    //  bob's holds x2 once, with its first body; alice's holds x2 once.
    ck_assert_int_eq (tk_sync (bob, 0, 100, 2), 0);
    ck_assert_int_eq (tk_expect (bob, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_uint_eq (f.ids[2], ack.id);
    ck_assert_str_eq (f.bodies[2], "for bob");
    ck_assert_int_eq (tk_sync (alice, 0, 100, 3), 0);
    ck_assert_int_eq (tk_expect (alice, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_uint_eq (f.ids[0], ack.id);
    tk_close (&eve);
    tk_close (&alice);
    tk_close (&bob);
    tk_close (&carol);
    tk_close (&dave);
}
END_TEST

//  A true retry (same cid, recipient and body), from another connection:
//  the original ack, and the original message delivered again (the first
//  delivery may have been lost), with its seq, id and body.
START_TEST (test_true_retry_redelivers_the_original)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    tk_frame_t first = s_sent (alice, "bob", "r1", "once");
    s_got (bob, "alice", "once", 1);
    tk_close (&alice);
    alice = tk_login_ok (&srv, "alice", "laptop");
    tk_frame_t again = s_sent (alice, "bob", "r1", "once");
    ck_assert_uint_eq (again.id, first.id);
    ck_assert_uint_eq (again.seq, first.seq);
    ck_assert_uint_eq (again.ts, first.ts);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    ck_assert_uint_eq (f.id, first.id);
    ck_assert_uint_eq (f.seq, 1);
    ck_assert_str_eq (f.body, "once");
    //  Stored once.
    ck_assert_int_eq (tk_sync (bob, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (bob, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 1);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("idem");
    TCase *tc = tcase_create ("idem");
    tcase_set_timeout (tc, 60);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_reused_cid_is_refused);
    tcase_add_test (tc, test_true_retry_redelivers_the_original);
    suite_add_tcase (s, tc);
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
