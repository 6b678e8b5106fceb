/*  test_chat.c: black-box tests of 1:1 chat against a real zim-server
    process, over real WebSockets: delivery, multi-device, offline sync,
    idempotent retry, ordering, crash durability, history and cursors.
*/
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

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

START_TEST (test_two_clients_chat_and_third_device)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *alice2 = tk_login_ok (&srv, "alice", "laptop");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    tk_frame_t f;

    ck_assert_int_eq (tk_send_text (alice, "bob", "a1", "hello bob"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    ck_assert_str_eq (f.cid, "a1");
    ck_assert_uint_eq (f.seq, 1);
    uint64_t id = f.id;
    ck_assert_uint_gt (id, 0);

    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.from, "alice");
    ck_assert_str_eq (f.to, "bob");
    ck_assert_str_eq (f.body, "hello bob");
    ck_assert_uint_eq (f.id, id);
    ck_assert_uint_eq (f.seq, 1);

    //  The sender's other device sees its own message, with alice's seq.
    ck_assert_int_eq (tk_expect (alice2, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "hello bob");
    ck_assert_str_eq (f.from, "alice");
    ck_assert_uint_eq (f.seq, 1);

    //  And back the other way: both of alice's devices get it.
    ck_assert_int_eq (tk_send_text (bob, "alice", "b1", "hi alice"), 0);
    ck_assert_int_eq (tk_expect (bob, "ack", 5000, &f), 0);
    ck_assert_uint_eq (f.seq, 2);
    ck_assert_int_eq (tk_expect (alice, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "hi alice");
    ck_assert_uint_eq (f.seq, 2);
    ck_assert_int_eq (tk_expect (alice2, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "hi alice");
    //  The sending device itself gets an ack, not a copy.
    ck_assert_int_eq (tk_recv (bob, 300, &f), -1);

    tk_close (&alice);
    tk_close (&alice2);
    tk_close (&bob);
}
END_TEST

START_TEST (test_offline_recipient_syncs_in_order)
{
    enum { N = 250 };
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_frame_t f;
    char cid[32], body[32];
    zim_wr_t wr;
    zim_wr_init (&wr);
    for (int i = 1; i <= N; i++) {
        snprintf (cid, sizeof cid, "c%d", i);
        snprintf (body, sizeof body, "m%d", i);
        tk_enc_send (&wr, "carol", cid, body);
        if (i % 50 == 0)
            ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    }
    for (int i = 1; i <= N; i++) {
        ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
        ck_assert_uint_eq (f.seq, (uint64_t) i);
    }
    //  carol was never online: a sync from 0 pages through everything.
    tk_client_t *carol = tk_login_ok (&srv, "carol", "tablet");
    uint64_t next = 1;
    bool more = true;
    for (int page = 0; more && page < 20; page++) {
        ck_assert_int_eq (tk_sync (carol, (int64_t) next - 1, 100, 7 + page), 0);
        ck_assert_int_eq (tk_expect (carol, "page", 5000, &f), 0);
        ck_assert_uint_eq (f.rid, (uint64_t) (7 + page));
        for (uint32_t i = 0; i < f.nmsgs; i++) {
            ck_assert_uint_eq (f.seqs[i], next);
            if (i < 64) {
                snprintf (body, sizeof body, "m%llu", (unsigned long long) next);
                ck_assert_str_eq (f.bodies[i], body);
            }
            next++;
        }
        more = f.more;
    }
    ck_assert (!more);
    ck_assert_uint_eq (next - 1, N);
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&carol);
}
END_TEST

START_TEST (test_retry_same_cid_is_idempotent)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (alice, "dave", "same", "once"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    uint64_t id = f.id, seq = f.seq;
    //  A retry, even from a new connection, returns the original ack.
    tk_close (&alice);
    alice = tk_login_ok (&srv, "alice", "phone");
    ck_assert_int_eq (tk_send_text (alice, "dave", "same", "once"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    ck_assert_uint_eq (f.id, id);
    ck_assert_uint_eq (f.seq, seq);
    //  A new cid is a new message.
    ck_assert_int_eq (tk_send_text (alice, "dave", "other", "twice"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    ck_assert_uint_eq (f.seq, seq + 1);
    //  dave's inbox holds each message once.
    tk_client_t *dave = tk_login_ok (&srv, "dave", "phone");
    ck_assert_int_eq (tk_sync (dave, 0, 100, 1), 0);
    ck_assert_int_eq (tk_expect (dave, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 2);
    ck_assert_uint_eq (f.seqs[0], 1);
    ck_assert_uint_eq (f.seqs[1], 2);
    ck_assert_uint_eq (f.ids[0], id);
    tk_close (&alice);
    tk_close (&dave);
}
END_TEST

START_TEST (test_ten_thousand_pipelined_in_order)
{
    enum { N = 10000 };
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[32], body[32];
    for (int i = 1; i <= N; i++) {
        snprintf (cid, sizeof cid, "p%d", i);
        snprintf (body, sizeof body, "%d", i);
        tk_enc_send (&wr, "bob", cid, body);
        if (i % 100 == 0)
            ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    }
    tk_frame_t f;
    int got = 0, acks = 0;
    while (got < N) {
        ck_assert_int_eq (tk_expect (bob, "msg", 10000, &f), 0);
        got++;
        ck_assert_uint_eq (f.seq, (uint64_t) got);
        ck_assert_int_eq (atoi (f.body), got);
    }
    while (acks < N) {
        ck_assert_int_eq (tk_recv (alice, 10000, &f), 0);
        if (strcmp (f.op, "ack") == 0) {
            acks++;
            snprintf (cid, sizeof cid, "p%d", acks);
            ck_assert_str_eq (f.cid, cid);
        }
        else
            ck_assert_msg (strcmp (f.op, "error") != 0, "error %lld %s", (long long) f.code,
                           f.text);
    }
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

//  500 acked messages, kill -9, restart on the same data: erin's inbox
//  holds them all, gap-free, and alice's seq goes on after them.
static void s_kill9_check (const char *const *extra)
{
    tk_server_cleanup (&srv);
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
    enum { N = 500 };
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[32], body[32];
    for (int i = 1; i <= N; i++) {
        snprintf (cid, sizeof cid, "k%d", i);
        snprintf (body, sizeof body, "k%d", i);
        tk_enc_send (&wr, "erin", cid, body);
        if (i % 25 == 0)
            ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    }
    tk_frame_t f;
    for (int i = 1; i <= N; i++)
        ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
    tk_close (&alice);
    char data[256];
    snprintf (data, sizeof data, "%s", srv.data);
    tk_server_stop (&srv, SIGKILL);
    ck_assert_int_eq (tk_server_start (&srv, data, extra), 0);
    tk_client_t *erin = tk_login_ok (&srv, "erin", "phone");
    uint64_t next = 1;
    for (int page = 0; page < 10 && next <= N; page++) {
        ck_assert_int_eq (tk_sync (erin, (int64_t) next - 1, 1000, 1), 0);
        ck_assert_int_eq (tk_expect (erin, "page", 5000, &f), 0);
        for (uint32_t i = 0; i < f.nmsgs; i++)
            ck_assert_uint_eq (f.seqs[i], next++);
        if (!f.more)
            break;
    }
    ck_assert_uint_eq (next - 1, N);
    //  And the sender's inbox seq goes on without a gap.
    alice = tk_login_ok (&srv, "alice", "phone");
    ck_assert_int_eq (tk_send_text (alice, "erin", "after", "after"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    ck_assert_uint_eq (f.seq, N + 1);
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&erin);
}

START_TEST (test_kill9_after_acks_loses_nothing)
{
    //  The default fsync policy, as a user runs it.
    const char *extra[] = {"--sync", "batch", NULL};
    s_kill9_check (extra);
}
END_TEST

START_TEST (test_kill9_before_checkpoint_replays_the_log)
{
    //  No checkpoint for an hour: every acked message is in the
    //  write-ahead log only when the server dies, and comes back from it.
    char conf[64];
    snprintf (conf, sizeof conf, "./wal-%d.conf", (int)getpid ());
    FILE *file = fopen (conf, "w");
    ck_assert_ptr_nonnull (file);
    fprintf (file, "store\n    checkpoint_ms = 3600000\n");
    fclose (file);
    const char *extra[] = {"--sync", "batch", "-c", conf, NULL};
    s_kill9_check (extra);
    static char log[1 << 16];
    ck_assert_int_gt (tk_read_file (srv.log, log, sizeof log), 0);
    ck_assert_msg (strstr (log, "from the write-ahead log"), "the restart applied the log: %s",
                   log);
    unlink (conf);
}
END_TEST

START_TEST (test_history_and_cursor)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_frame_t f;
    char cid[16];
    for (int i = 1; i <= 5; i++) {
        snprintf (cid, sizeof cid, "h%d", i);
        ck_assert_int_eq (tk_send_text (alice, "frank", cid, cid), 0);
        ck_assert_int_eq (tk_expect (alice, "ack", 5000, &f), 0);
    }
    //  History is newest first and pages by id.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "history");
    zim_wr_cstr (&wr, "peer");
    zim_wr_cstr (&wr, "frank");
    zim_wr_cstr (&wr, "limit");
    zim_wr_uint (&wr, 3);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 5);
    ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    ck_assert_int_eq (tk_expect (alice, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.rid, 5);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert (f.more);
    ck_assert_str_eq (f.bodies[0], "h5");
    ck_assert_str_eq (f.bodies[2], "h3");
    uint64_t before = f.ids[2];
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "history");
    zim_wr_cstr (&wr, "peer");
    zim_wr_cstr (&wr, "frank");
    zim_wr_cstr (&wr, "before");
    zim_wr_uint (&wr, before);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 6);
    ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    ck_assert_int_eq (tk_expect (alice, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 2);
    ck_assert (!f.more);
    ck_assert_str_eq (f.bodies[0], "h2");
    ck_assert_str_eq (f.bodies[1], "h1");

    //  frank acks up to seq 3; a sync without since starts after it.
    tk_client_t *frank = tk_login_ok (&srv, "frank", "phone");
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "cursor");
    zim_wr_cstr (&wr, "seq");
    zim_wr_uint (&wr, 3);
    ck_assert_int_eq (tk_send_wr (frank, &wr), 0);
    usleep (200000);
    ck_assert_int_eq (tk_sync (frank, -1, 100, 9), 0);
    ck_assert_int_eq (tk_expect (frank, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 2);
    ck_assert_uint_eq (f.seqs[0], 4);
    ck_assert_uint_eq (f.seqs[1], 5);
    //  Another device of frank has its own cursor: it sees all five.
    tk_client_t *frank2 = tk_login_ok (&srv, "frank", "tablet");
    ck_assert_int_eq (tk_sync (frank2, -1, 100, 10), 0);
    ck_assert_int_eq (tk_expect (frank2, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.nmsgs, 5);
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&frank);
    tk_close (&frank2);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("chat");
    TCase *tc = tcase_create ("chat");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_two_clients_chat_and_third_device);
    tcase_add_test (tc, test_offline_recipient_syncs_in_order);
    tcase_add_test (tc, test_retry_same_cid_is_idempotent);
    tcase_add_test (tc, test_ten_thousand_pipelined_in_order);
    tcase_add_test (tc, test_kill9_after_acks_loses_nothing);
    tcase_add_test (tc, test_kill9_before_checkpoint_replays_the_log);
    tcase_add_test (tc, test_history_and_cursor);
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
