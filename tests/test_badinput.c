/*  test_badinput.c: every kind of bad client input gets its documented
    error (docs/PROTOCOL.md, "Errors") while another pair of clients keeps
    chatting on the same server.
*/
#include "gateway/zim_token.h"
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static tk_server_t srv;
static tk_client_t *carol, *dave; //  the bystanders
static int rounds;                //  bystander messages so far

static void s_setup (void)
{
    const char *extra[] = {"-c", "tk-badinput.cfg", NULL};
    FILE *cfg = fopen ("tk-badinput.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    //  A small rate limit so that the flood case is quick to provoke.
    fprintf (cfg, "gateway\n    send_rate = 50\n    send_burst = 100\n");
    fclose (cfg);
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
    carol = tk_login_ok (&srv, "carol", "phone");
    dave = tk_login_ok (&srv, "dave", "phone");
    rounds = 0;
}

static void s_teardown (void)
{
    tk_close (&carol);
    tk_close (&dave);
    tk_server_cleanup (&srv);
}

//  The bystanders still chat: one message carol -> dave, acked and delivered.
static void s_bystanders_chat (void)
{
    char cid[32];
    snprintf (cid, sizeof cid, "bystander-%d", ++rounds);
    ck_assert_int_eq (tk_send_text (carol, "dave", cid, cid), 0);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (carol, "ack", 5000, &f), 0);
    ck_assert_str_eq (f.cid, cid);
    ck_assert_int_eq (tk_expect (dave, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, cid);
}

//  Expects an error frame with code on c.
static void s_expect_error (tk_client_t *c, int code, tk_frame_t *f)
{
    ck_assert_int_eq (tk_expect (c, "error", 5000, f), 0);
    ck_assert_int_eq (f->code, code);
}

//  Reads the demo app's secret from the server's data dir.
static void s_secret (char *buf, size_t size)
{
    char path[300];
    snprintf (path, sizeof path, "%s/app-demo.secret", srv.data);
    FILE *f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    ck_assert_ptr_nonnull (fgets (buf, (int) size, f));
    fclose (f);
    buf[strcspn (buf, "\r\n")] = 0;
}

START_TEST (test_malformed_msgpack)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    ck_assert_int_eq (tk_send_raw (m, "\xc1\xc1\xc1", 3, false), 0);
    s_expect_error (m, ZIM_ERR_MALFORMED, &f);
    //  Truncated map.
    ck_assert_int_eq (tk_send_raw (m, "\x84\xa2op\xa4send", 8, false), 0);
    s_expect_error (m, ZIM_ERR_MALFORMED, &f);
    //  A text message is not a frame.
    ck_assert_int_eq (tk_send_raw (m, "{\"op\":\"send\"}", 13, true), 0);
    s_expect_error (m, ZIM_ERR_MALFORMED, &f);
    s_bystanders_chat ();
    //  The connection still works.
    ck_assert_int_eq (tk_send_raw (m, "\x81\xa2op\xa4ping", 9, false), 0);
    ck_assert_int_eq (tk_expect (m, "pong", 5000, &f), 0);
    tk_close (&m);
}
END_TEST

START_TEST (test_wrong_field_types)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_uint (&wr, 42);
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "w1");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "x");
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
    ck_assert_str_eq (f.cid, "w1");
    //  Missing body.
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "dave");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "w2");
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
    //  A recipient that is not a user id.
    ck_assert_int_eq (tk_send_text (m, "no spaces allowed", "w3", "x"), 0);
    s_expect_error (m, ZIM_ERR_BAD_RECIPIENT, &f);
    ck_assert_str_eq (f.cid, "w3");
    //  op of the wrong type.
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "op");
    zim_wr_uint (&wr, 1);
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
    s_bystanders_chat ();
    //  dave got nothing from mallory.
    ck_assert_int_eq (tk_recv (dave, 200, &f), -1);
    zim_wr_free (&wr);
    tk_close (&m);
}
END_TEST

START_TEST (test_oversized_frame_closes)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    size_t size = 70 * 1024;
    char *big = calloc (1, size);
    memcpy (big, "\x84\xa2op\xa4send", 8);
    ck_assert_int_eq (tk_send_raw (m, big, size, false), 0);
    free (big);
    s_expect_error (m, ZIM_ERR_TOO_LARGE, &f);
    //  Then the server closes the connection.
    while (tk_recv (m, 3000, &f) == 0)
        ;
    ck_assert (tk_closed (m));
    s_bystanders_chat ();
    tk_close (&m);
}
END_TEST

START_TEST (test_unknown_op)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    ck_assert_int_eq (tk_send_raw (m, "\x81\xa2op\xa6launch", 11, false), 0);
    s_expect_error (m, ZIM_ERR_UNKNOWN_OP, &f);
    s_bystanders_chat ();
    tk_close (&m);
}
END_TEST

START_TEST (test_send_before_auth)
{
    int status = 0;
    tk_client_t *m = tk_connect (&srv, "", &status);
    ck_assert_ptr_nonnull (m);
    tk_frame_t f;
    ck_assert_int_eq (tk_send_text (m, "dave", "e1", "sneaky"), 0);
    s_expect_error (m, ZIM_ERR_AUTH_REQUIRED, &f);
    s_bystanders_chat ();
    //  dave got nothing but the bystander message.
    ck_assert_int_eq (tk_recv (dave, 200, &f), -1);
    //  Authenticating with a frame then works.
    char *token = tk_token (&srv, "mallory", 60);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, token);
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    ck_assert_int_eq (tk_expect (m, "auth_ok", 5000, &f), 0);
    free (token);
    zim_wr_free (&wr);
    tk_close (&m);
}
END_TEST

START_TEST (test_bad_signature_and_expired_token)
{
    char secret[256], query[2048];
    s_secret (secret, sizeof secret);
    uint64_t now = (uint64_t) time (NULL);
    char *forged = zim_token_sign ("not-the-secret-at-all-0123456789", "demo", "carol", now + 600);
    char *expired = zim_token_sign (secret, "demo", "carol", now - 10);
    tk_frame_t f;
    int status = 0;
    //  At the upgrade: 403 and no WebSocket.
    snprintf (query, sizeof query, "token=%s", forged);
    ck_assert_ptr_null (tk_connect (&srv, query, &status));
    ck_assert_int_eq (status, 403);
    snprintf (query, sizeof query, "token=%s", expired);
    ck_assert_ptr_null (tk_connect (&srv, query, &status));
    ck_assert_int_eq (status, 403);
    ck_assert_ptr_null (tk_connect (&srv, "token=garbage", &status));
    ck_assert_int_eq (status, 403);
    s_bystanders_chat ();
    //  In an auth frame: the documented error codes.
    tk_client_t *m = tk_connect (&srv, "", &status);
    ck_assert_ptr_nonnull (m);
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, forged);
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_BAD_TOKEN, &f);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, expired);
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_TOKEN_EXPIRED, &f);
    //  Still unauthenticated.
    ck_assert_int_eq (tk_send_text (m, "dave", "e2", "x"), 0);
    s_expect_error (m, ZIM_ERR_AUTH_REQUIRED, &f);
    s_bystanders_chat ();
    zim_wr_free (&wr);
    free (forged);
    free (expired);
    tk_close (&m);
}
END_TEST

START_TEST (test_spoofed_from)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "dave");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "s1");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "I am carol");
    zim_wr_cstr (&wr, "from");
    zim_wr_cstr (&wr, "carol");
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    s_expect_error (m, ZIM_ERR_FORBIDDEN, &f);
    ck_assert_str_eq (f.cid, "s1");
    s_bystanders_chat ();
    ck_assert_int_eq (tk_recv (dave, 200, &f), -1);
    //  Naming oneself as from is allowed; the server still sets it.
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "dave");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "s2");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "honest");
    zim_wr_cstr (&wr, "from");
    zim_wr_cstr (&wr, "mallory");
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    ck_assert_int_eq (tk_expect (m, "ack", 5000, &f), 0);
    ck_assert_int_eq (tk_expect (dave, "msg", 5000, &f), 0);
    ck_assert_str_eq (f.from, "mallory");
    zim_wr_free (&wr);
    tk_close (&m);
}
END_TEST

START_TEST (test_flood_is_rate_limited)
{
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[32];
    for (int i = 0; i < 300; i++) {
        snprintf (cid, sizeof cid, "f%d", i);
        tk_enc_send (&wr, "mallory2", cid, "spam");
    }
    ck_assert_int_eq (tk_send_wr (m, &wr), 0);
    int acks = 0, limited = 0;
    while (acks + limited < 300 && tk_recv (m, 5000, &f) == 0) {
        if (strcmp (f.op, "ack") == 0)
            acks++;
        else if (strcmp (f.op, "error") == 0 && f.code == ZIM_ERR_RATE_LIMITED)
            limited++;
    }
    ck_assert_int_eq (acks + limited, 300);
    ck_assert_int_ge (acks, 100);
    ck_assert_int_ge (limited, 150);
    s_bystanders_chat ();
    zim_wr_free (&wr);
    tk_close (&m);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("badinput");
    TCase *tc = tcase_create ("badinput");
    tcase_set_timeout (tc, 60);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_malformed_msgpack);
    tcase_add_test (tc, test_wrong_field_types);
    tcase_add_test (tc, test_oversized_frame_closes);
    tcase_add_test (tc, test_unknown_op);
    tcase_add_test (tc, test_send_before_auth);
    tcase_add_test (tc, test_bad_signature_and_expired_token);
    tcase_add_test (tc, test_spoofed_from);
    tcase_add_test (tc, test_flood_is_rate_limited);
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
