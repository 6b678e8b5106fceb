/*  test_loop.c: the gateway's libuv loop (issue 12) against a real
    zim-server over real WebSockets: thousands of authenticated
    connections served at once, heartbeats (WebSocket PINGs from the
    gateway's timer queue) on every one of them, idle timeouts, client
    messages larger than the 512-byte receive buffer and messages the
    client fragments itself (reassembled up to max_frame), and a clean
    shutdown that closes every connection with 1001.
*/
#include "msg/zim_msg.h"
#include "tests/zim_rawws.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Connections of the big test, and how many share one user (under the
//  default max_conns_per_user, 64).
#define S_CONNS 3000
#define S_PER_USER 50

static tk_server_t srv;
static bool started;

static void s_start (const char *config)
{
    FILE *cfg = fopen ("tk-loop.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fputs (config, cfg);
    fclose (cfg);
    const char *extra[] = {"-c", "tk-loop.cfg", "--interface", "127.0.0.1", NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
    started = true;
}

static void s_teardown (void)
{
    if (started)
        tk_server_cleanup (&srv);
    started = false;
}

//  Connects with token; NULL if the upgrade failed.
static zim_rawws_t *s_connect (const char *token)
{
    char path[2048];
    snprintf (path, sizeof path, "/ws?token=%s", token);
    return zim_rawws_connect ("127.0.0.1", srv.ws_port, path, NULL);
}

//  The next binary message on ws holds op ("auth_ok", "ack", ...) and, if
//  code is not 0, that error code. Returns true if so.
static bool s_expect (zim_rawws_t *ws, const char *op, int code, int timeout_ms)
{
    int opcode = 0;
    char *data = NULL;
    size_t len = 0;
    if (zim_rawws_recv (ws, timeout_ms, &opcode, &data, &len) != 0)
        return false;
    char want[32];
    int n = snprintf (want, sizeof want, "op%c%s", (char)(0xa0 | strlen (op)), op);
    bool ok = opcode == ZIM_WS_BINARY && memmem (data, len, want, (size_t)n) != NULL;
    if (ok && code) {
        uint8_t c[3] = {0xcd, (uint8_t)(code >> 8), (uint8_t)code};
        ok = memmem (data, len, c, 3) != NULL;
    }
    free (data);
    return ok;
}

//  An app-level ping (op ping): answered by a pong from the gateway.
static void s_app_ping (zim_rawws_t *ws)
{
    ck_assert_int_eq (zim_rawws_send (ws, ZIM_WS_BINARY, "\x81\xa2op\xa4ping", 9), 0);
}

//  Waits for a close on ws; returns its status.
static int s_closed (zim_rawws_t *ws, int timeout_ms)
{
    int64_t until = zclock_mono () + timeout_ms;
    int opcode;
    char *data;
    size_t len;
    while (zim_rawws_close_status (ws) < 0 && zclock_mono () < until) {
        int rc = zim_rawws_recv (ws, 200, &opcode, &data, &len);
        if (rc == 0)
            free (data);
        else if (rc == -2)
            break;
    }
    return zim_rawws_close_status (ws);
}

//  Reads what waits on the first n connections without blocking: each
//  one's auth_ok (marked in authed) and the gateway's PINGs, answered. A
//  connection that answers no PING for 2 intervals + 10 s is hung up, and
//  connecting thousands can take longer than that on a loaded machine
//  (28 s seen under ASan with other builds running).
static void s_pump (zim_rawws_t **ws, bool *authed, int n)
{
    for (int j = 0; j < n; j++) {
        int opcode;
        char *data;
        size_t len;
        while (zim_rawws_recv (ws[j], 0, &opcode, &data, &len) == 0) {
            char want[] = "op\xa7" "auth_ok";
            bool ok = !authed[j] && opcode == ZIM_WS_BINARY &&
                      memmem (data, len, want, sizeof want - 1) != NULL;
            free (data);
            ck_assert_msg (ok, "connection %d: a message other than one auth_ok", j);
            authed[j] = true;
        }
    }
}

//  S_CONNS authenticated connections; PINGs reach every one; a send from
//  each is answered; $TERM closes them all with 1001 and the server exits.
START_TEST (test_thousands)
{
    s_start ("gateway\n    ping_interval = 1\n    idle_timeout = 60\n");
    zim_rawws_t **ws = (zim_rawws_t **)calloc (S_CONNS, sizeof *ws);
    bool *authed = (bool *)calloc (S_CONNS, sizeof *authed);
    char *token = NULL;
    int64_t t0 = zclock_mono (), pumped = t0;
    for (int i = 0; i < S_CONNS; i++) {
        if (zclock_mono () - pumped > 1000) {
            s_pump (ws, authed, i);
            pumped = zclock_mono ();
        }
        if (i % S_PER_USER == 0) {
            free (token);
            char uid[32];
            snprintf (uid, sizeof uid, "loop%d", i / S_PER_USER);
            token = tk_token (&srv, uid, 600);
            ck_assert_ptr_nonnull (token);
        }
        ws[i] = s_connect (token);
        ck_assert_msg (ws[i] != NULL, "connection %d refused", i);
    }
    free (token);
    for (int i = 0; i < S_CONNS; i++)
        ck_assert_msg (authed[i] || s_expect (ws[i], "auth_ok", 0, 10000), "no auth_ok on %d", i);
    free (authed);
    fprintf (stderr, "test_loop: %d connections up in %" PRId64 " ms\n", S_CONNS,
             zclock_mono () - t0);
    //  Every connection is served: an app ping each, a pong each.
    for (int i = 0; i < S_CONNS; i++)
        s_app_ping (ws[i]);
    for (int i = 0; i < S_CONNS; i++)
        ck_assert_msg (s_expect (ws[i], "pong", 0, 10000), "no pong on %d", i);
    //  Every connection gets the gateway's PINGs (each second): after two
    //  seconds each has answered at least one while receiving its pong.
    zclock_sleep (2200);
    for (int i = 0; i < S_CONNS; i++)
        s_app_ping (ws[i]);
    for (int i = 0; i < S_CONNS; i++) {
        ck_assert_msg (s_expect (ws[i], "pong", 0, 10000), "no second pong on %d", i);
        ck_assert_msg (zim_rawws_pings (ws[i]) >= 1, "no PING on %d", i);
    }
    //  A clean stop: every connection hears 1001 (going away).
    tk_server_stop (&srv, SIGTERM);
    for (int i = 0; i < S_CONNS; i++) {
        ck_assert_int_eq (s_closed (ws[i], 5000), 1001);
        zim_rawws_destroy (&ws[i]);
    }
    free (ws);
}
END_TEST

//  Idle timeout (answering PINGs is not input), messages over the receive
//  buffer in one frame and in client fragments, over max_frame in fragments.
//  A client that answers the gateway's PINGs and sends nothing else is
//  alive: it stays connected past two intervals + 10 s (lws 4.1 reports no
//  PONG without a payload, so the gateway's PINGs carry one).
START_TEST (test_pongs_keep_alive)
{
    s_start ("gateway\n    ping_interval = 1\n    idle_timeout = 60\n");
    char *token = tk_token (&srv, "pongs", 600);
    ck_assert_ptr_nonnull (token);
    zim_rawws_t *ws = s_connect (token);
    free (token);
    ck_assert_ptr_nonnull (ws);
    ck_assert (s_expect (ws, "auth_ok", 0, 10000));
    int64_t until = zclock_mono () + 15000;
    while (zclock_mono () < until) {
        int opcode;
        char *data;
        size_t len;
        int rc = zim_rawws_recv (ws, 200, &opcode, &data, &len);
        if (rc == 0)
            free (data);
        ck_assert_msg (rc == -1, "a message or a close (%d) while only answering PINGs", rc);
    }
    ck_assert_int_ge (zim_rawws_pings (ws), 10);
    ck_assert_int_eq (zim_rawws_close_status (ws), -1);
    s_app_ping (ws);
    ck_assert (s_expect (ws, "pong", 0, 10000));
    zim_rawws_destroy (&ws);
}
END_TEST

START_TEST (test_idle_fragments)
{
    s_start ("gateway\n    ping_interval = 1\n    idle_timeout = 2\n    max_frame = 8192\n");
    char *token = tk_token (&srv, "frag", 600);
    ck_assert_ptr_nonnull (token);
    char *token2 = tk_token (&srv, "quiet", 600);
    ck_assert_ptr_nonnull (token2);
    zim_rawws_t *quiet = s_connect (token2);
    free (token2);
    zim_rawws_t *ws = s_connect (token);
    ck_assert (quiet && ws);
    ck_assert (s_expect (quiet, "auth_ok", 0, 5000) && s_expect (ws, "auth_ok", 0, 5000));

    //  A 5000-byte send in one frame: lws hands it over in 512-byte pieces.
    char body[5000];
    memset (body, 'b', sizeof body - 1);
    body[sizeof body - 1] = 0;
    zim_wr_t wr;
    zim_wr_init (&wr);
    tk_enc_send (&wr, "someone", "c1", body);
    ck_assert_int_eq (zim_rawws_send (ws, ZIM_WS_BINARY, wr.data, wr.size), 0);
    ck_assert (s_expect (ws, "ack", 0, 5000));
    //  The same, fragmented by the client into three frames.
    zim_wr_reset (&wr);
    tk_enc_send (&wr, "someone", "c2", body);
    size_t third = wr.size / 3;
    ck_assert_int_eq (zim_rawws_send_frame (ws, false, ZIM_WS_BINARY, wr.data, third), 0);
    ck_assert_int_eq (zim_rawws_send_frame (ws, false, ZIM_WS_CONT, wr.data + third, third), 0);
    ck_assert_int_eq (
        zim_rawws_send_frame (ws, true, ZIM_WS_CONT, wr.data + 2 * third, wr.size - 2 * third), 0);
    ck_assert (s_expect (ws, "ack", 0, 5000));

    //  Over max_frame in fragments: 4002, closed with 1009.
    char chunk[3000];
    memset (chunk, 0, sizeof chunk);
    ck_assert_int_eq (zim_rawws_send_frame (ws, false, ZIM_WS_BINARY, chunk, sizeof chunk), 0);
    ck_assert_int_eq (zim_rawws_send_frame (ws, false, ZIM_WS_CONT, chunk, sizeof chunk), 0);
    ck_assert_int_eq (zim_rawws_send_frame (ws, true, ZIM_WS_CONT, chunk, sizeof chunk), 0);
    ck_assert (s_expect (ws, "error", ZIM_ERR_TOO_LARGE, 5000));
    ck_assert_int_eq (s_closed (ws, 5000), 1009);
    zim_rawws_destroy (&ws);
    //  The quiet one answered PINGs but sent nothing: 4080 after 2 s.
    ck_assert (s_expect (quiet, "error", ZIM_ERR_IDLE_TIMEOUT, 5000));
    ck_assert_int_eq (s_closed (quiet, 5000), ZIM_ERR_IDLE_TIMEOUT);
    ck_assert_int_ge (zim_rawws_pings (quiet), 1);
    zim_rawws_destroy (&quiet);

    zim_wr_free (&wr);
    free (token);
    tk_server_stop (&srv, SIGTERM);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("loop");
    TCase *tc = tcase_create ("loop");
    tcase_set_timeout (tc, 180);
    tcase_add_checked_fixture (tc, NULL, s_teardown);
    tcase_add_test (tc, test_thousands);
    tcase_add_test (tc, test_idle_fragments);
    tcase_add_test (tc, test_pongs_keep_alive);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
