/*  test_tcp.c: raw TCP clients (issue 12, item 6) against a real
    zim-server started with --tcp, over real sockets: the length framing
    (split packets, several frames in one, an empty packet), a bad length
    prefix and an oversize frame (4002, then a FIN), bad msgpack (4000,
    the connection stays), auth by frame (refused tokens, 4015 after
    three, 4014 after auth_timeout), idle_timeout (4080), and a chat
    between a TCP client and a WebSocket client both ways.
*/
#include "gateway/zim_token.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "tests/zim_testkit.h"

#include <arpa/inet.h>
#include <check.h>
#include <czmq.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static tk_server_t srv;
static bool started;
static int tcp_port;

//  Starts zim-server on 127.0.0.1 with config (a config file's text) and
//  raw TCP on a free port.
static void s_start (const char *config)
{
    FILE *cfg = fopen ("tk-tcp.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fputs (config, cfg);
    fclose (cfg);
    tcp_port = tk_free_port ();
    ck_assert_int_gt (tcp_port, 0);
    char port[16];
    snprintf (port, sizeof port, "%d", tcp_port);
    const char *extra[] = {"-c", "tk-tcp.cfg", "--interface", "127.0.0.1", "--tcp", port, NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
    started = true;
}

static void s_teardown (void)
{
    if (started)
        tk_server_cleanup (&srv);
    started = false;
}

//  ---------------------------------------------------------------------
//  A raw TCP client

static int s_connect (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)tcp_port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void s_send_bytes (int fd, const void *data, size_t size)
{
    ck_assert_int_eq (send (fd, data, size, MSG_NOSIGNAL), (ssize_t)size);
}

//  Sends one packet: the payload's length (4 bytes, big endian), the payload.
static void s_send (int fd, const void *data, size_t size)
{
    uint8_t len[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                      (uint8_t)size};
    s_send_bytes (fd, len, 4);
    if (size)
        s_send_bytes (fd, data, size);
}

static void s_send_wr (int fd, zim_wr_t *wr)
{
    s_send (fd, wr->data, wr->size);
    zim_wr_reset (wr);
}

//  Reads size bytes within timeout_ms. 0, or -1 on EOF, error or timeout.
static int s_read (int fd, void *buf, size_t size, int timeout_ms)
{
    size_t got = 0;
    int64_t until = zclock_mono () + timeout_ms;
    while (got < size) {
        int64_t left = until - zclock_mono ();
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll (&p, 1, (int)left) <= 0)
            return -1;
        ssize_t n = recv (fd, (uint8_t *)buf + got, size - got, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return -1;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

//  One server frame, the fields the tests look at.
typedef struct {
    char op[16];
    int64_t code;
    char from[72];
    char body[256];
    char cid[72];
} s_frame_t;

//  Receives one packet and decodes it; its payload must be exactly one
//  map. 0, or -1 if none came within timeout_ms (or the server closed).
static int s_recv (int fd, s_frame_t *f, int timeout_ms)
{
    memset (f, 0, sizeof *f);
    uint8_t len[4];
    if (s_read (fd, len, 4, timeout_ms))
        return -1;
    uint32_t size =
        (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3];
    ck_assert_uint_le (size, 1 << 20);
    uint8_t *buf = malloc (size ? size : 1);
    ck_assert_int_eq (s_read (fd, buf, size, timeout_ms), 0);
    zim_rd_t rd;
    zim_rd_init (&rd, buf, size);
    uint32_t n;
    ck_assert_int_eq (zim_rd_map (&rd, &n), 0);
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key, val;
        ck_assert_int_eq (zim_rd_str (&rd, &key), 0);
        if (zim_str_eq (key, "op") && zim_rd_str (&rd, &val) == 0)
            zim_str_copy (val, f->op, sizeof f->op);
        else if (zim_str_eq (key, "from") && zim_rd_str (&rd, &val) == 0)
            zim_str_copy (val, f->from, sizeof f->from);
        else if (zim_str_eq (key, "cid") && zim_rd_str (&rd, &val) == 0)
            zim_str_copy (val, f->cid, sizeof f->cid);
        else if (zim_str_eq (key, "body") && zim_rd_str (&rd, &val) == 0)
            zim_str_copy (val, f->body, sizeof f->body);
        else if (zim_str_eq (key, "code"))
            ck_assert_int_eq (zim_rd_int (&rd, &f->code), 0);
        else
            ck_assert_int_eq (zim_rd_skip (&rd, NULL), 0);
    }
    ck_assert_uint_eq (zim_rd_left (&rd), 0); //  one frame per packet
    free (buf);
    return 0;
}

//  Receives frames until one with op (others are dropped).
static void s_expect (int fd, const char *op, int64_t code, s_frame_t *f)
{
    s_frame_t mine;
    f = f ? f : &mine;
    for (;;) {
        ck_assert_msg (s_recv (fd, f, 10000) == 0, "no %s frame came", op);
        if (streq (f->op, op))
            break;
    }
    if (code)
        ck_assert_int_eq (f->code, code);
}

//  The server hung up: EOF (after a FIN) within a generous deadline.
static void s_expect_eof (int fd)
{
    uint8_t byte;
    int64_t until = zclock_mono () + 10000;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ck_assert_int_gt (poll (&p, 1, (int)(until - zclock_mono ())), 0);
        ssize_t n = recv (fd, &byte, 1, 0);
        if (n == 0)
            return;
        ck_assert_msg (n > 0, "a reset instead of a FIN: %s", strerror (errno));
    }
}

static void s_enc_auth (zim_wr_t *wr, const char *token)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "auth");
    zim_wr_cstr (wr, "token");
    zim_wr_cstr (wr, token);
    zim_wr_cstr (wr, "device");
    zim_wr_cstr (wr, "tcp");
}

static void s_enc_ping (zim_wr_t *wr)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "ping");
    zim_wr_cstr (wr, "t");
    zim_wr_uint (wr, 7);
}

//  A TCP client authenticated as uid by an auth frame.
static int s_login (const char *uid)
{
    int fd = s_connect ();
    char *token = tk_token (&srv, uid, 3600);
    ck_assert_ptr_nonnull (token);
    zim_wr_t wr;
    zim_wr_init (&wr);
    s_enc_auth (&wr, token);
    s_send_wr (fd, &wr);
    s_expect (fd, "auth_ok", 0, NULL);
    zim_wr_free (&wr);
    free (token);
    return fd;
}

//  Reads tests/vectors/tcp/NAME.hex (ZIM_VECTORS: the vectors dir) into
//  buf; returns its length.
static size_t s_vector (const char *name, uint8_t *buf, size_t size)
{
    const char *dir = getenv ("ZIM_VECTORS");
    char path[512];
    snprintf (path, sizeof path, "%s/tcp/%s.hex", dir ? dir : "tests/vectors", name);
    FILE *file = fopen (path, "r");
    ck_assert_msg (file != NULL, "no vector %s", path);
    size_t n = 0;
    unsigned int byte;
    while (n < size && fscanf (file, "%2x", &byte) == 1)
        buf[n++] = (uint8_t)byte;
    fclose (file);
    return n;
}

//  ---------------------------------------------------------------------

//  The byte-exact examples of docs/PROTOCOL.md, "Raw TCP", are what the
//  server answers.
START_TEST (test_vectors)
{
    s_start ("");
    int fd = s_connect ();
    const char *pairs[][2] = {{"c2s-ping", "s2c-pong"}, {"c2s-ping+ping", "s2c-pong+pong"}};
    for (size_t i = 0; i < 2; i++) {
        uint8_t out[256], want[256], got[256];
        size_t n = s_vector (pairs[i][0], out, sizeof out);
        size_t m = s_vector (pairs[i][1], want, sizeof want);
        ck_assert_uint_gt (n, 4);
        ck_assert_uint_gt (m, 4);
        s_send_bytes (fd, out, n);
        ck_assert_int_eq (s_read (fd, got, m, 10000), 0);
        ck_assert_mem_eq (got, want, m);
    }
    close (fd);
}
END_TEST

START_TEST (test_framing)
{
    s_start ("gateway\n    max_frame = 4096\n");
    int fd = s_connect ();
    zim_wr_t wr;
    zim_wr_init (&wr);
    s_frame_t f;

    //  A ping gets a pong, before auth too.
    s_enc_ping (&wr);
    s_send_wr (fd, &wr);
    s_expect (fd, "pong", 0, NULL);
    //  Two frames in one packet: two packets back, one frame each.
    s_enc_ping (&wr);
    s_enc_ping (&wr);
    s_send_wr (fd, &wr);
    ck_assert_int_eq (s_recv (fd, &f, 10000), 0);
    ck_assert_str_eq (f.op, "pong");
    ck_assert_int_eq (s_recv (fd, &f, 10000), 0);
    ck_assert_str_eq (f.op, "pong");
    //  A packet in pieces, the length split too.
    s_enc_ping (&wr);
    uint8_t packet[64] = {0, 0, 0, (uint8_t)wr.size};
    memcpy (packet + 4, wr.data, wr.size);
    size_t size = 4 + wr.size;
    zim_wr_reset (&wr);
    for (size_t i = 0; i < size; i += 3) {
        s_send_bytes (fd, packet + i, size - i < 3 ? size - i : 3);
        zclock_sleep (5);
    }
    s_expect (fd, "pong", 0, NULL);
    //  An empty packet is answered by nothing; the connection goes on.
    s_send (fd, NULL, 0);
    s_enc_ping (&wr);
    s_send_wr (fd, &wr);
    ck_assert_int_eq (s_recv (fd, &f, 10000), 0);
    ck_assert_str_eq (f.op, "pong");
    //  Not msgpack: 4000, and the connection stays.
    s_send (fd, "\xc1\xc1", 2);
    s_expect (fd, "error", ZIM_ERR_MALFORMED, NULL);
    //  An unknown op: 4003.
    s_send (fd, "\x81\xa2op\xa4nope", 9);
    s_expect (fd, "error", ZIM_ERR_UNKNOWN_OP, NULL);
    //  A send before auth: 4010.
    tk_enc_send (&wr, "bob", "c1", "hi");
    s_send_wr (fd, &wr);
    s_expect (fd, "error", ZIM_ERR_AUTH_REQUIRED, NULL);
    s_enc_ping (&wr);
    s_send_wr (fd, &wr);
    s_expect (fd, "pong", 0, NULL);

    //  A frame over max_frame (4096): 4002, then a FIN, although the body
    //  follows (the gateway reads and drops it rather than reset).
    uint8_t big[4097];
    memset (big, 0xa0, sizeof big);
    s_send (fd, big, sizeof big);
    s_expect (fd, "error", ZIM_ERR_TOO_LARGE, NULL);
    s_expect_eof (fd);
    close (fd);

    //  A length that is no length (0xffffffff): 4002 and a FIN.
    fd = s_login ("carol");
    s_send_bytes (fd, "\xff\xff\xff\xff\x81\xa2", 6);
    s_expect (fd, "error", ZIM_ERR_TOO_LARGE, NULL);
    s_expect_eof (fd);
    close (fd);
    zim_wr_free (&wr);
}
END_TEST

START_TEST (test_auth)
{
    s_start ("gateway\n    auth_timeout = 2\n");
    zim_wr_t wr;
    zim_wr_init (&wr);
    //  Refused tokens get their codes; the third closes with 4015.
    int fd = s_connect ();
    s_enc_auth (&wr, "not-a-token");
    s_send_wr (fd, &wr);
    s_expect (fd, "error", ZIM_ERR_BAD_TOKEN, NULL);
    //  Expired: signed with the server's demo secret, exp a minute ago.
    char path[400], secret[256] = "";
    snprintf (path, sizeof path, "%s/app-demo.secret", srv.data);
    FILE *file = fopen (path, "r");
    ck_assert_ptr_nonnull (file);
    ck_assert_ptr_nonnull (fgets (secret, sizeof secret, file));
    fclose (file);
    secret[strcspn (secret, "\r\n")] = 0;
    char *expired = zim_token_sign (secret, "demo", "alice", (uint64_t)(zim_now_ms () / 1000 - 60));
    ck_assert_ptr_nonnull (expired);
    s_enc_auth (&wr, expired);
    s_send_wr (fd, &wr);
    s_expect (fd, "error", ZIM_ERR_TOKEN_EXPIRED, NULL);
    s_enc_auth (&wr, "still-not-a-token");
    s_send_wr (fd, &wr);
    s_expect (fd, "error", ZIM_ERR_BAD_TOKEN, NULL);
    s_expect (fd, "error", ZIM_ERR_AUTH_FAILURES, NULL);
    s_expect_eof (fd);
    close (fd);
    free (expired);

    //  No auth within auth_timeout (2 s): 4014, pings or not.
    fd = s_connect ();
    s_enc_ping (&wr);
    s_send_wr (fd, &wr);
    s_expect (fd, "pong", 0, NULL);
    s_expect (fd, "error", ZIM_ERR_AUTH_TIMEOUT, NULL);
    s_expect_eof (fd);
    close (fd);

    //  A good token: auth_ok; a second auth: 4013.
    fd = s_login ("alice");
    char *token = tk_token (&srv, "alice", 3600);
    s_enc_auth (&wr, token);
    s_send_wr (fd, &wr);
    s_expect (fd, "error", ZIM_ERR_ALREADY_AUTHED, NULL);
    close (fd);
    free (token);
    zim_wr_free (&wr);
}
END_TEST

START_TEST (test_idle)
{
    s_start ("gateway\n    idle_timeout = 2\n");
    int fd = s_login ("alice");
    s_expect (fd, "error", ZIM_ERR_IDLE_TIMEOUT, NULL);
    s_expect_eof (fd);
    close (fd);
}
END_TEST

START_TEST (test_chat_tcp_ws)
{
    s_start ("");
    int alice = s_login ("alice");
    tk_client_t *bob = tk_login (&srv, "bob", "phone");
    ck_assert_ptr_nonnull (bob);
    tk_frame_t wf;
    ck_assert_int_eq (tk_expect (bob, "auth_ok", 5000, &wf), 0);
    zim_wr_t wr;
    zim_wr_init (&wr);
    s_frame_t f;

    //  TCP -> WebSocket: alice's ack, bob's message.
    tk_enc_send (&wr, "bob", "a1", "hello over tcp");
    s_send_wr (alice, &wr);
    s_expect (alice, "ack", 0, &f);
    ck_assert_str_eq (f.cid, "a1");
    ck_assert_int_eq (tk_expect (bob, "msg", 10000, &wf), 0);
    ck_assert_str_eq (wf.from, "alice");
    ck_assert_str_eq (wf.body, "hello over tcp");

    //  WebSocket -> TCP, several at once: in order, one frame per packet.
    for (int i = 0; i < 20; i++) {
        char cid[16], body[32];
        snprintf (cid, sizeof cid, "b%d", i);
        snprintf (body, sizeof body, "reply %d", i);
        tk_enc_send (&wr, "alice", cid, body);
    }
    ck_assert_int_eq (tk_send_wr (bob, &wr), 0);
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf (body, sizeof body, "reply %d", i);
        s_expect (alice, "msg", 0, &f);
        ck_assert_str_eq (f.from, "bob");
        ck_assert_str_eq (f.body, body);
    }
    //  Sync over TCP: the page holds both directions.
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    zim_wr_cstr (&wr, "since");
    zim_wr_uint (&wr, 0);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 1);
    s_send_wr (alice, &wr);
    s_expect (alice, "page", 0, NULL);
    close (alice);
    tk_close (&bob);
    zim_wr_free (&wr);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("tcp");
    TCase *tc = tcase_create ("tcp");
    tcase_set_timeout (tc, 90);
    tcase_add_checked_fixture (tc, NULL, s_teardown);
    tcase_add_test (tc, test_vectors);
    tcase_add_test (tc, test_framing);
    tcase_add_test (tc, test_auth);
    tcase_add_test (tc, test_idle);
    tcase_add_test (tc, test_chat_tcp_ws);
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
