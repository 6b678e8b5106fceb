/*  test_edge.c: the client edge holds against what a client can do to it
    (issue 10, "The client edge" and the gateway side of "A user with a
    large backlog"), each case over real WebSockets against a real
    zim-server: read floods, connections that never authenticate or keep
    failing, bad cids and devices, errors that must name their rid, too
    many connections of one user, /dev/token behind a proxy, pages larger
    than max_pending, a 1:1 burst to a connection that stops reading.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "tests/zim_rawws.h"
#include "tests/zim_testkit.h"

#include <check.h>
#include <inttypes.h>
#include <czmq.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tk_server_t srv;
static bool started;

//  Starts zim-server on 127.0.0.1 with config (the text of a config file).
static void s_start (const char *config)
{
    FILE *cfg = fopen ("tk-edge.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fputs (config, cfg);
    fclose (cfg);
    const char *extra[] = {"-c", "tk-edge.cfg", "--interface", "127.0.0.1", NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
    started = true;
}

static void s_teardown (void)
{
    if (started)
        tk_server_cleanup (&srv);
    started = false;
}

//  A connection without a token (to authenticate by frame, or never).
static tk_client_t *s_anonymous (void)
{
    int status = 0;
    tk_client_t *c = tk_connect (&srv, "", &status);
    ck_assert_ptr_nonnull (c);
    return c;
}

//  Expects an error frame with code next on c (other frames are skipped).
static void s_expect_error (tk_client_t *c, int code, tk_frame_t *f)
{
    ck_assert_int_eq (tk_expect (c, "error", 5000, f), 0);
    ck_assert_int_eq (f->code, code);
}

//  Waits until the server closed c; returns the close status.
static int s_wait_closed (tk_client_t *c, int timeout_ms)
{
    tk_frame_t f;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (!tk_closed (c) && zclock_mono () < deadline)
        tk_recv (c, 200, &f);
    ck_assert (tk_closed (c));
    return tk_close_status (c);
}

//  Sends an auth frame with token (and device, if not NULL).
static void s_auth (tk_client_t *c, const char *token, const char *device)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, device ? 3 : 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, token);
    if (device) {
        zim_wr_cstr (&wr, "device");
        zim_wr_cstr (&wr, device);
    }
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  The server's resident memory in KiB.
static long s_rss_kib (void)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int)srv.pid);
    FILE *f = fopen (path, "r");
    ck_assert_ptr_nonnull (f);
    long kib = -1;
    while (fgets (line, sizeof line, f))
        if (sscanf (line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose (f);
    return kib;
}

//  Sends n messages of size bytes from `from` to `to`, pipelined, and
//  waits for every ack.
static void s_fill_inbox (tk_client_t *from, const char *to, int n, size_t size)
{
    char *body = malloc (size + 1);
    memset (body, 'b', size);
    body[size] = 0;
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[48];
    for (int i = 0; i < n; i++) {
        snprintf (cid, sizeof cid, "fill-%s-%d", to, i);
        tk_enc_send (&wr, to, cid, body);
        if (wr.size > 48000 || i == n - 1)
            ck_assert_int_eq (tk_send_wr (from, &wr), 0);
    }
    tk_frame_t f;
    for (int i = 0; i < n; i++)
        ck_assert_int_eq (tk_expect (from, "ack", 10000, &f), 0);
    zim_wr_free (&wr);
    free (body);
}

//  ---------------------------------------------------------------------
//  Read floods: four clients each send one 60 KB message of ~2,000 syncs
//  after another. Another pair keeps chatting (every ack within the test's
//  time), and the server stays small: reads are bounded per connection.

typedef struct {
    char token[2048];    //  the flooder's token
    volatile bool *stop; //  set when the flood ends
    long refused, pages; //  4028/4029 answers and pages seen
    long messages;       //  flood messages sent
} s_flooder_t;

static void *s_flooder (void *arg)
{
    s_flooder_t *self = (s_flooder_t *)arg;
    zim_wr_t wr;
    zim_wr_init (&wr);
    tk_frame_t *f = malloc (sizeof *f);
    char query[2200];
    snprintf (query, sizeof query, "token=%s", self->token);
    tk_client_t *c = NULL;
    while (!*self->stop) {
        if (!c || tk_closed (c)) {
            tk_close (&c);
            c = tk_connect (&srv, query, NULL);
            if (!c || tk_expect (c, "auth_ok", 2000, f))
                continue;
        }
        for (uint64_t rid = 1; wr.size < 60000; rid++) {
            zim_wr_map (&wr, 4);
            zim_wr_cstr (&wr, "op");
            zim_wr_cstr (&wr, "sync");
            zim_wr_cstr (&wr, "since");
            zim_wr_uint (&wr, 0);
            zim_wr_cstr (&wr, "limit");
            zim_wr_uint (&wr, 1000);
            zim_wr_cstr (&wr, "rid");
            zim_wr_uint (&wr, rid);
        }
        tk_send_wr (c, &wr);
        self->messages++;
        //  Read what came back for a moment, as a client that wants its
        //  pages would.
        int64_t until = zclock_mono () + 20;
        while (zclock_mono () < until && tk_recv (c, 5, f) == 0) {
            if (strcmp (f->op, "page") == 0)
                self->pages++;
            else if (strcmp (f->op, "error") == 0 &&
                     (f->code == ZIM_ERR_TOO_MANY_READS || f->code == ZIM_ERR_RATE_LIMITED))
                self->refused++;
        }
    }
    tk_close (&c);
    free (f);
    zim_wr_free (&wr);
    return NULL;
}

START_TEST (test_read_flood)
{
    //  ASan keeps freed memory in quarantine (256 MiB by default): bound it,
    //  so that the server's RSS shows what it holds, not what it freed.
    char asan[512];
    snprintf (asan, sizeof asan, "%s%squarantine_size_mb=16",
              getenv ("ASAN_OPTIONS") ? getenv ("ASAN_OPTIONS") : "",
              getenv ("ASAN_OPTIONS") ? ":" : "");
    setenv ("ASAN_OPTIONS", asan, 1);
    s_start ("gateway\n    max_frame = 65536\n");
    //  Each flooder's inbox holds 200 messages of 1 KB: a page is ~200 KB.
    tk_client_t *filler = tk_login_ok (&srv, "filler", "x");
    s_flooder_t flooders[4];
    volatile bool stop = false;
    for (int i = 0; i < 4; i++) {
        char uid[16];
        snprintf (uid, sizeof uid, "flooder%d", i);
        s_fill_inbox (filler, uid, 200, 1000);
        memset (&flooders[i], 0, sizeof flooders[i]);
        char *token = tk_token (&srv, uid, 3600);
        ck_assert_ptr_nonnull (token);
        snprintf (flooders[i].token, sizeof flooders[i].token, "%s", token);
        free (token);
        flooders[i].stop = &stop;
    }
    tk_close (&filler);
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    long rss_before = s_rss_kib ();

    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create (&threads[i], NULL, s_flooder, &flooders[i]);
    zclock_sleep (1000); //  the flood is under way
    //  alice and bob chat through it: 50 messages, one at a time.
    int64_t start = zclock_mono (), worst = 0;
    tk_frame_t f;
    int acked = 0, delivered = 0;
    for (int i = 0; i < 50 && zclock_mono () - start < 20000; i++) {
        char cid[16];
        snprintf (cid, sizeof cid, "m%d", i);
        int64_t sent = zclock_mono ();
        ck_assert_int_eq (tk_send_text (alice, "bob", cid, cid), 0);
        if (tk_expect (alice, "ack", 20000, &f) == 0 && strcmp (f.cid, cid) == 0)
            acked++;
        if (tk_expect (bob, "msg", 20000, &f) == 0)
            delivered++;
        if (zclock_mono () - sent > worst)
            worst = zclock_mono () - sent;
    }
    int64_t took = zclock_mono () - start;
    long rss_during = s_rss_kib ();
    stop = true;
    long refused = 0, pages = 0, messages = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join (threads[i], NULL);
        refused += flooders[i].refused;
        pages += flooders[i].pages;
        messages += flooders[i].messages;
    }
    fprintf (stderr,
             "read flood: %ld flood messages (~2000 syncs each), %ld pages, %ld refused; "
             "50 sends took %" PRId64 " ms (worst %" PRId64 " ms); server %ld -> %ld KiB\n",
             messages, pages, refused, took, worst, rss_before, rss_during);
    ck_assert_int_eq (acked, 50);
    ck_assert_int_eq (delivered, 50);
    ck_assert_int_lt (took, 15000);
    ck_assert_int_gt (refused, 0);
    ck_assert_int_gt (pages, 0);
    //  Bounded: at most 4 reads of ~200 KB in flight per flooder.
    ck_assert_int_lt (rss_during - rss_before, 100 * 1024);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

//  At most max_reads_inflight reads wait per connection (4028), and at
//  most read_rate a second after read_burst (4029), each naming its rid.
START_TEST (test_read_limits)
{
    s_start ("gateway\n    max_reads_inflight = 2\n    read_burst = 3\n    read_rate = 1\n");
    tk_client_t *c = tk_login_ok (&srv, "carol", "x");
    zim_wr_t wr;
    zim_wr_init (&wr);
    for (int i = 1; i <= 4; i++) {
        zim_wr_map (&wr, 2);
        zim_wr_cstr (&wr, "op");
        zim_wr_cstr (&wr, "sync");
        zim_wr_cstr (&wr, "rid");
        zim_wr_uint (&wr, (uint64_t)i);
    }
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    tk_frame_t f;
    int pages = 0;
    bool refused[5] = {false};
    for (int n = 0; n < 4; n++) {
        ck_assert_int_eq (tk_recv (c, 5000, &f), 0);
        if (strcmp (f.op, "page") == 0)
            pages++;
        else {
            ck_assert_str_eq (f.op, "error");
            ck_assert_int_eq (f.code, ZIM_ERR_TOO_MANY_READS);
            ck_assert (f.rid == 3 || f.rid == 4);
            refused[f.rid] = true;
        }
    }
    ck_assert (pages == 2 && refused[3] && refused[4]);
    //  The pages came back: two more may go, but the bucket has one left.
    for (int i = 5; i <= 6; i++) {
        zim_wr_map (&wr, 2);
        zim_wr_cstr (&wr, "op");
        zim_wr_cstr (&wr, "sync");
        zim_wr_cstr (&wr, "rid");
        zim_wr_uint (&wr, (uint64_t)i);
    }
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    ck_assert_int_eq (tk_expect (c, "error", 5000, &f), 0);
    ck_assert_int_eq (f.code, ZIM_ERR_RATE_LIMITED);
    ck_assert_int_eq (f.rid, 6);
    zim_wr_free (&wr);
    tk_close (&c);
}
END_TEST

//  A connection that never authenticates is closed after auth_timeout
//  (4014) even though it pings; one that authenticated is not.
START_TEST (test_auth_deadline)
{
    s_start ("gateway\n    auth_timeout = 2\n");
    tk_client_t *lurker = s_anonymous ();
    tk_client_t *dave = tk_login_ok (&srv, "dave", "x");
    tk_frame_t f;
    int64_t start = zclock_mono ();
    bool got = false;
    while (zclock_mono () - start < 6000 && !tk_closed (lurker)) {
        //  The server may have closed already: then the write fails.
        if (tk_send_raw (lurker, "\x81\xa2op\xa4ping", 9, false) != 0)
            break;
        if (tk_recv (lurker, 300, &f) == 0 && strcmp (f.op, "error") == 0) {
            ck_assert_int_eq (f.code, ZIM_ERR_AUTH_TIMEOUT);
            got = true;
        }
    }
    ck_assert (got);
    ck_assert_int_eq (s_wait_closed (lurker, 2000), ZIM_ERR_AUTH_TIMEOUT);
    ck_assert_int_ge (zclock_mono () - start, 1500);
    //  dave is still there.
    ck_assert_int_eq (tk_send_raw (dave, "\x81\xa2op\xa4ping", 9, false), 0);
    ck_assert_int_eq (tk_expect (dave, "pong", 5000, &f), 0);
    tk_close (&lurker);
    tk_close (&dave);
}
END_TEST

//  After max_auth_failures failed auth frames: 4015 and a close. Fewer
//  failures, then a good token: authenticated.
START_TEST (test_auth_failures)
{
    s_start ("gateway\n    max_auth_failures = 3\n");
    tk_client_t *m = s_anonymous ();
    tk_frame_t f;
    for (int i = 0; i < 3; i++) {
        s_auth (m, "not.a.token", NULL);
        s_expect_error (m, ZIM_ERR_BAD_TOKEN, &f);
    }
    s_expect_error (m, ZIM_ERR_AUTH_FAILURES, &f);
    ck_assert_int_eq (s_wait_closed (m, 3000), ZIM_ERR_AUTH_FAILURES);
    tk_close (&m);

    m = s_anonymous ();
    for (int i = 0; i < 2; i++) {
        s_auth (m, "not.a.token", NULL);
        s_expect_error (m, ZIM_ERR_BAD_TOKEN, &f);
    }
    char *token = tk_token (&srv, "erin", 60);
    s_auth (m, token, "laptop");
    ck_assert_int_eq (tk_expect (m, "auth_ok", 5000, &f), 0);
    free (token);
    tk_close (&m);
}
END_TEST

//  A cid over 64 bytes, empty or not printable gets 4001 naming it (cut
//  to 64 bytes), so the client can stop retrying; so does a bad device in
//  an auth frame.
START_TEST (test_bad_cid_and_device)
{
    s_start ("");
    tk_client_t *m = tk_login_ok (&srv, "mallory", "x");
    tk_frame_t f;
    char cid[101];
    memset (cid, 'c', 100);
    cid[100] = 0;
    const char *cids[] = {cid, "", "new\nline", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof cids / sizeof cids[0]; i++) {
        ck_assert_int_eq (tk_send_text (m, "dave", cids[i], "x"), 0);
        s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
        char expect[72];
        snprintf (expect, sizeof expect, "%.64s", cids[i]);
        ck_assert_str_eq (f.cid, expect);
    }
    //  A good cid still works.
    ck_assert_int_eq (tk_send_text (m, "dave", "good-cid", "x"), 0);
    ck_assert_int_eq (tk_expect (m, "ack", 5000, &f), 0);
    ck_assert_str_eq (f.cid, "good-cid");
    tk_close (&m);

    m = s_anonymous ();
    char *token = tk_token (&srv, "mallory", 60);
    s_auth (m, token, "two words");
    s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
    s_auth (m, token, "");
    s_expect_error (m, ZIM_ERR_BAD_FIELD, &f);
    s_auth (m, token, "tablet");
    ck_assert_int_eq (tk_expect (m, "auth_ok", 5000, &f), 0);
    free (token);
    tk_close (&m);
}
END_TEST

//  Errors for a bad sync or history carry the request's rid, so a client
//  fails the request at once instead of waiting out its timeout.
START_TEST (test_read_errors_carry_rid)
{
    s_start ("");
    tk_client_t *c = tk_login_ok (&srv, "frank", "x");
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 77);
    zim_wr_cstr (&wr, "since");
    zim_wr_cstr (&wr, "yesterday");
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    tk_frame_t f;
    s_expect_error (c, ZIM_ERR_BAD_FIELD, &f);
    ck_assert_int_eq (f.rid, 77);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "history");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 78);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0); //  no peer
    s_expect_error (c, ZIM_ERR_BAD_FIELD, &f);
    ck_assert_int_eq (f.rid, 78);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "history");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 79);
    zim_wr_cstr (&wr, "peer");
    zim_wr_cstr (&wr, "not a user");
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    s_expect_error (c, ZIM_ERR_BAD_RECIPIENT, &f);
    ck_assert_int_eq (f.rid, 79);
    zim_wr_free (&wr);
    tk_close (&c);
}
END_TEST

//  One user may hold max_conns_per_user connections on a gateway: the
//  next one gets 4031 and is closed; once one closes, there is room again.
START_TEST (test_conns_per_user)
{
    s_start ("gateway\n    max_conns_per_user = 3\n");
    tk_client_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = tk_login_ok (&srv, "gina", "x");
    char *token = tk_token (&srv, "gina", 60);
    char query[2048];
    snprintf (query, sizeof query, "token=%s", token);
    tk_client_t *extra = tk_connect (&srv, query, NULL);
    ck_assert_ptr_nonnull (extra);
    tk_frame_t f;
    s_expect_error (extra, ZIM_ERR_TOO_MANY_CONNS, &f);
    ck_assert_int_eq (s_wait_closed (extra, 3000), ZIM_ERR_TOO_MANY_CONNS);
    tk_close (&extra);
    //  The same by an auth frame.
    extra = s_anonymous ();
    s_auth (extra, token, NULL);
    s_expect_error (extra, ZIM_ERR_TOO_MANY_CONNS, &f);
    ck_assert_int_eq (s_wait_closed (extra, 3000), ZIM_ERR_TOO_MANY_CONNS);
    tk_close (&extra);
    //  Another user is not affected; gina has room once one closes.
    tk_client_t *hank = tk_login_ok (&srv, "hank", "x");
    tk_close (&c[0]);
    int64_t deadline = zclock_mono () + 5000;
    tk_client_t *again = NULL;
    while (!again && zclock_mono () < deadline) {
        again = tk_connect (&srv, query, NULL);
        if (again && tk_expect (again, "auth_ok", 2000, &f) != 0)
            tk_close (&again);
    }
    ck_assert_ptr_nonnull (again);
    free (token);
    tk_close (&again);
    tk_close (&hank);
    tk_close (&c[1]);
    tk_close (&c[2]);
}
END_TEST

//  /dev/token (dev defaults on 127.0.0.1) answers a client on this
//  machine, but never a request that came through a proxy.
START_TEST (test_dev_token_not_behind_proxy)
{
    s_start ("");
    char body[2048];
    ck_assert_int_eq (zim_rawws_http_get ("127.0.0.1", srv.ws_port, "/dev/token?uid=ivy", NULL,
                                          body, sizeof body),
                      200);
    ck_assert_ptr_nonnull (strstr (body, "\"token\":"));
    const char *proxies[] = {"X-Forwarded-For: 203.0.113.7\r\n", "X-Real-IP: 203.0.113.7\r\n",
                             "Forwarded: for=203.0.113.7\r\n", "Via: 1.1 proxy\r\n",
                             "X-Forwarded-Host: chat.example\r\n"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
        ck_assert_int_eq (zim_rawws_http_get ("127.0.0.1", srv.ws_port, "/dev/token?uid=ivy",
                                              proxies[i], NULL, 0),
                          404);
}
END_TEST

//  With configured apps there are no dev tokens, even if asked for.
START_TEST (test_dev_token_not_with_apps)
{
    s_start ("apps\n    myapp\n        secret = \"a-secret-of-at-least-16\"\n");
    ck_assert_int_eq (
        zim_rawws_http_get ("127.0.0.1", srv.ws_port, "/dev/token?uid=ivy", NULL, NULL, 0), 404);
}
END_TEST

//  A page the client asked for is not a slow consumer even when it is
//  larger than max_pending; live traffic beyond it still is (4090).
START_TEST (test_page_is_not_slow_consumer)
{
    s_start ("gateway\n    max_pending = 65536\n");
    tk_client_t *alice = tk_login_ok (&srv, "alice", "x");
    s_fill_inbox (alice, "bob", 60, 4000); //  a page of ~240 KB
    tk_client_t *bob = tk_login_ok (&srv, "bob", "x");
    ck_assert_int_eq (tk_sync (bob, 0, 1000, 5), 0);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (bob, "page", 10000, &f), 0);
    ck_assert_int_eq (f.rid, 5);
    ck_assert_int_eq (f.nmsgs, 60);
    ck_assert (!tk_closed (bob));

    //  Live: bob stops reading while alice sends 32 KB messages; once the
    //  kernel buffers are full and 64 KiB wait in the gateway, bob is cut
    //  (the server's counters say when: kernel buffers differ by machine).
    char *big = malloc (32001);
    memset (big, 'L', 32000);
    big[32000] = 0;
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[32];
    bool counted = false;
    for (int i = 0; i < 4000 && !counted; i++) {
        snprintf (cid, sizeof cid, "live-%d", i);
        tk_enc_send (&wr, "bob", cid, big);
        ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
        ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
        if (i % 50 == 49) {
            char *status = NULL;
            ck_assert_int_eq (zim_admin_call (srv.admin, srv.key, 5000, "status", NULL, &status),
                              0);
            counted = strstr (status, "\"slow_consumer_drops\":1") != NULL;
            free (status);
        }
    }
    ck_assert (counted);
    bool cut = false;
    while (tk_recv (bob, 5000, &f) == 0)
        cut |= strcmp (f.op, "error") == 0 && f.code == ZIM_ERR_SLOW_CONSUMER;
    ck_assert (cut);
    ck_assert_int_eq (tk_close_status (bob), ZIM_ERR_SLOW_CONSUMER);
    zim_wr_free (&wr);
    free (big);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

//  A counter of the gateway from the server's status.
static long s_stat (const char *name)
{
    char *status = NULL;
    ck_assert_int_eq (zim_admin_call (srv.admin, srv.key, 5000, "status", NULL, &status), 0);
    char key[64];
    snprintf (key, sizeof key, "\"%s\":", name);
    const char *p = strstr (status, key);
    ck_assert_msg (p, "no %s in the status", name);
    long value = strtol (p + strlen (key), NULL, 10);
    free (status);
    return value;
}

//  A burst of 1:1 messages to a connection that stops reading until its
//  socket is full: the gateway writes straight to the socket while it
//  takes the bytes, then (libwebsockets holding the rest of a write) waits
//  for the writable callback (write_requests). Once the reader reads again
//  every message arrives, complete and in order, and nothing was cut.
START_TEST (test_p2p_burst_while_not_reading)
{
    s_start ("gateway\n    max_pending = 16777216\n");
    tk_client_t *alice = tk_login_ok (&srv, "alice", "x");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "x");
    long asked0 = s_stat ("write_requests");
    char *body = malloc (16001);
    memset (body, 'p', 16000);
    body[16000] = 0;
    zim_wr_t wr;
    zim_wr_init (&wr);
    char cid[32];
    tk_frame_t f;
    int sent = 0, more = -1;
    //  Until the gateway had to wait for bob's socket, then 20 more.
    while (more != 0 && sent < 1000) {
        snprintf (cid, sizeof cid, "b-%d", sent);
        snprintf (body, 16001, "%06d ", sent);
        body[7] = 'p';
        zim_wr_reset (&wr);
        tk_enc_send (&wr, "bob", cid, body);
        ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
        ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
        sent++;
        if (more > 0)
            more--;
        else if (sent % 10 == 0 && s_stat ("write_requests") > asked0)
            more = 20;
    }
    ck_assert_msg (more == 0, "bob's socket never filled in %d messages", sent);
    if (getenv ("ZIM_TEST_VERBOSE"))
        fprintf (stderr, "p2p burst: %d messages of 16 KB, %ld writable requests\n", sent,
                 s_stat ("write_requests") - asked0);
    ck_assert (!tk_closed (bob));
    for (int i = 0; i < sent; i++) {
        do
            ck_assert_int_eq (tk_recv (bob, 10000, &f), 0);
        while (strcmp (f.op, "msg"));
        ck_assert_int_eq (atoi (f.body), i);
        ck_assert_uint_gt (f.raw_len, 16000);
    }
    ck_assert_int_eq (s_stat ("slow_consumer_drops"), 0);
    zim_wr_free (&wr);
    free (body);
    tk_close (&alice);
    tk_close (&bob);
}
END_TEST

static Suite *s_suite (void)
{
    Suite *s = suite_create ("edge");
    TCase *tc = tcase_create ("edge");
    tcase_set_timeout (tc, 90);
    tcase_add_checked_fixture (tc, NULL, s_teardown);
    tcase_add_test (tc, test_read_flood);
    tcase_add_test (tc, test_read_limits);
    tcase_add_test (tc, test_auth_deadline);
    tcase_add_test (tc, test_auth_failures);
    tcase_add_test (tc, test_bad_cid_and_device);
    tcase_add_test (tc, test_read_errors_carry_rid);
    tcase_add_test (tc, test_conns_per_user);
    tcase_add_test (tc, test_dev_token_not_behind_proxy);
    tcase_add_test (tc, test_dev_token_not_with_apps);
    tcase_add_test (tc, test_page_is_not_slow_consumer);
    tcase_add_test (tc, test_p2p_burst_while_not_reading);
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
