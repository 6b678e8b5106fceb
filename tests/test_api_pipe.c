/*  test_api_pipe.c: the backend push API (docs/API.md) of a real
    zim-server, continued from tests/test_api.c: persisted pushes (live,
    synced, idempotent, durable across kill -9, through zimctl, with the C
    SDK); pipelined requests on a raw socket answered in order, a long
    query target.
*/
#include "msg/zim_msg.h"
#include "sdk/c/zim_client.h"
#include "tests/zim_apikit.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  A sync of c from 0: its page (every message in the inbox).
static void s_sync_all (tk_client_t *c, tk_frame_t *f)
{
    ck_assert_int_eq (tk_sync (c, 0, 100, 77), 0);
    ck_assert_int_eq (tk_expect (c, "page", 10000, f), 0);
}

//  The seq of uid in a persisted push's answer doc (0: none); frees doc.
static json_int_t s_seq_of (json_t *doc, const char *uid)
{
    json_int_t seq = json_integer_value (json_object_get (json_object_get (doc, "users"), uid));
    json_decref (doc);
    return seq;
}

//  Persisted pushes: live with the user's seq from the system sender,
//  synced by a device offline at the time, a retry with the same id
//  stored once, and still there after kill -9 and a restart.
START_TEST (test_api_persist)
{
    tk_client_t *alice = tk_login_ok (&ak_srv, "alice", "phone");
    json_t *doc;
    tk_frame_t f;
    //  One message of alice's own first: the push takes the next seq.
    ck_assert_int_eq (tk_send_text (alice, "bob", "a-1", "hello"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 1);
    const char *push = "{\"users\":[\"alice\",\"carol\"],\"data\":\"p1\",\"persist\":true,"
                       "\"id\":\"order-1\"}";
    ck_assert_int_eq (ak_call ("POST", "/v1/push/users", push, &doc), 200);
    json_t *copy = json_deep_copy (doc);
    ck_assert_int_eq (s_seq_of (doc, "alice"), 2);
    ck_assert_int_eq (s_seq_of (json_incref (copy), "carol"), 1);
    //  Live: a msg frame with alice's seq, from the system sender.
    ck_assert_int_eq (tk_expect (alice, "msg", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 2);
    ck_assert_str_eq (f.from, "_system");
    ck_assert_str_eq (f.to, "alice");
    ck_assert_str_eq (f.body, "p1");
    //  A retry with the same id: the same seqs, nothing stored twice.
    ck_assert_int_eq (ak_call ("POST", "/v1/push/users", push, &doc), 200);
    ck_assert (json_equal (doc, copy));
    json_decref (doc);
    json_decref (copy);
    //  The same id with other data stores nothing: 409.
    ak_refused (
        ak_call ("POST", "/v1/push/users",
                 "{\"users\":[\"carol\"],\"data\":\"other\",\"persist\":true,\"id\":\"order-1\"}",
                 &doc),
        &doc, 409, "conflict");
    //  carol was offline: she finds it by sync, once.
    tk_client_t *carol = tk_login_ok (&ak_srv, "carol", "laptop");
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_uint_eq (f.seqs[0], 1);
    ck_assert_str_eq (f.bodies[0], "p1");
    //  A push without an id is stored too.
    ck_assert_int_eq (ak_call ("POST", "/v1/push/users",
                               "{\"users\":[\"carol\"],\"data\":\"p2\",\"persist\":true}", &doc),
                      200);
    ck_assert_int_eq (s_seq_of (doc, "carol"), 2);
    ck_assert_int_eq (tk_expect (carol, "msg", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 2);
    //  Refusals: nothing stored.
    const char *refused[][2] = {
        {"/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":1,\"persist\":true}"},
        {"/v1/push/users", "{\"users\":[\"carol\"],\"data\":1,\"persist\":\"yes\"}"},
        {"/v1/push/users", "{\"users\":[\"carol\"],\"data\":1,\"persist\":true,\"id\":\"\"}"},
        {"/v1/push/users", "{\"users\":[\"_system\"],\"data\":1,\"persist\":true}"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        ak_refused (ak_call ("POST", refused[i][0], refused[i][1], &doc), &doc, 400, "bad_field");
    ak_nothing (carol, "msg");
    //  Nobody logs in as the system sender.
    tk_client_t *sys = tk_login (&ak_srv, "_system", "phone");
    if (sys) {
        ck_assert_int_ne (tk_expect (sys, "auth_ok", 3000, &f), 0);
        tk_close (&sys);
    }

    //  Acked means durable: kill -9 right after the answer, restart.
    const char *order3 = "{\"users\":[\"carol\"],\"data\":\"p3\",\"persist\":true,"
                         "\"id\":\"order-3\"}";
    ck_assert_int_eq (ak_call ("POST", "/v1/push/users", order3, &doc), 200);
    ck_assert_int_eq (s_seq_of (doc, "carol"), 3);
    tk_server_stop (&ak_srv, SIGKILL);
    tk_close (&alice);
    tk_close (&carol);
    char data[256];
    snprintf (data, sizeof data, "%s", ak_srv.data);
    ck_assert_int_eq (tk_server_start (&ak_srv, data, NULL), 0);
    carol = tk_login_ok (&ak_srv, "carol", "laptop");
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_uint_eq (f.seqs[2], 3);
    ck_assert_str_eq (f.bodies[2], "p3");
    //  The idempotency key survived too.
    ck_assert_int_eq (ak_call ("POST", "/v1/push/users", order3, &doc), 200);
    ck_assert_int_eq (s_seq_of (doc, "carol"), 3);
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 3);
    //  The same through the admin endpoint: zimctl push users --persist,
    //  twice with one id: one message.
    char cmd[1024], out[4096];
    const char *bin = getenv ("ZIMCTL") ? getenv ("ZIMCTL") : "./zimctl";
    snprintf (cmd, sizeof cmd,
              "%s -e %s -k %s push users carol --app demo --data '\"p4\"' --persist --id z-1 "
              "2>&1 && %s -e %s -k %s push users carol --app demo --data '\"p4\"' --persist "
              "--id z-1 2>&1",
              bin, ak_srv.admin, ak_srv.key, bin, ak_srv.admin, ak_srv.key);
    ck_assert_int_eq (tk_shell (cmd, out, sizeof out), 0);
    ck_assert_msg (strstr (out, "{\"users\":{\"carol\":4}}\n{\"users\":{\"carol\":4}}"), "%s", out);
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 4);
    ck_assert_str_eq (f.bodies[3], "p4");
    tk_close (&carol);
}
END_TEST

//  What the C SDK client got.
typedef struct {
    int msgs;           //  messages handed over (in seq order)
    uint64_t last_seq;  //  the last one's seq
    char last_from[72]; //  its sender
    int pages;          //  pages
    size_t page_count;  //  the last page's messages
    char page_from[72]; //  its first message's sender
} s_sdk_t;

static void s_sdk_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    (void)c;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->msgs++;
    t->last_seq = m->seq;
    snprintf (t->last_from, sizeof t->last_from, "%s", m->from);
}

static void s_sdk_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    (void)c;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->pages++;
    t->page_count = p->count;
    snprintf (t->page_from, sizeof t->page_from, "%s", p->count ? p->msgs[0].from : "");
}

//  Runs the loop until *flag reaches want (or 15 s).
static void s_sdk_until (zim_loop_t *loop, int *flag, int want)
{
    int64_t deadline = zclock_mono () + 15000;
    while (*flag < want && zclock_mono () < deadline)
        zim_loop_run (loop, 50);
    ck_assert_int_ge (*flag, want);
}

//  The C SDK, unchanged, with persisted pushes: live in order, synced
//  after a reconnect (auto_sync), paged by history of peer _system.
START_TEST (test_api_persist_sdk)
{
    char *token = tk_token (&ak_srv, "dora", 3600);
    ck_assert_ptr_nonnull (token);
    char url[128];
    snprintf (url, sizeof url, "ws://127.0.0.1:%d/ws", ak_srv.ws_port);
    s_sdk_t t = {0};
    zim_client_config_t cfg = {0};
    cfg.url = url;
    cfg.token = token;
    cfg.device = "tablet";
    cfg.auto_sync = true;
    cfg.has_since = true;
    cfg.on_msg = s_sdk_msg;
    cfg.on_page = s_sdk_page;
    cfg.arg = &t;
    zim_loop_t *loop = zim_loop_new ();
    zim_client_t *c = zim_client_new (loop, &cfg);
    ck_assert_int_eq (zim_client_connect (c), 0);
    int64_t deadline = zclock_mono () + 10000;
    while (zim_client_state (c) != ZIM_CLIENT_AUTHED && zclock_mono () < deadline)
        zim_loop_run (loop, 50);
    ck_assert_int_eq (zim_client_state (c), ZIM_CLIENT_AUTHED);
    json_t *doc;
    //  Routes reach the router a moment after auth_ok: the live copy may
    //  miss a device that just came; the seq gap makes the SDK sync.
    ck_assert_int_eq (
        ak_call ("POST", "/v1/push/users",
                 "{\"users\":[\"dora\"],\"data\":\"s1\",\"persist\":true,\"id\":\"s-1\"}", &doc),
        200);
    json_decref (doc);
    s_sdk_until (loop, &t.msgs, 1);
    ck_assert_uint_eq (t.last_seq, 1);
    ck_assert_str_eq (t.last_from, "_system");
    //  Offline: stored; the SDK finds it when it is back.
    zim_client_close (c);
    deadline = zclock_mono () + 10000;
    while (zim_client_state (c) != ZIM_CLIENT_CLOSED && zclock_mono () < deadline)
        zim_loop_run (loop, 50);
    ck_assert_int_eq (zim_client_state (c), ZIM_CLIENT_CLOSED);
    ck_assert_int_eq (
        ak_call ("POST", "/v1/push/users",
                 "{\"users\":[\"dora\"],\"data\":\"s2\",\"persist\":true,\"id\":\"s-2\"}", &doc),
        200);
    json_decref (doc);
    ck_assert_int_eq (zim_client_connect (c), 0);
    s_sdk_until (loop, &t.msgs, 2);
    ck_assert_uint_eq (t.last_seq, 2);
    ck_assert_int_eq (t.msgs, 2);
    //  History with the system sender: both.
    uint64_t rid = 0;
    ck_assert_int_eq (zim_client_history (c, "_system", 0, 10, &rid), 0);
    s_sdk_until (loop, &t.pages, 1);
    ck_assert_uint_eq (t.page_count, 2);
    ck_assert_str_eq (t.page_from, "_system");
    zim_client_destroy (&c);
    zim_loop_destroy (&loop);
    free (token);
}
END_TEST

//  Connects a raw TCP socket to the server's API.
static int s_raw_connect (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)ak_srv.api_port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

//  Reads the next HTTP answer of fd (buffered in b): returns its status,
//  *doc its JSON body.
static long s_raw_answer (int fd, ak_buf_t *b, json_t **doc)
{
    int64_t deadline = zclock_mono () + 10000;
    while (true) {
        char *end = b->data ? strstr (b->data, "\r\n\r\n") : NULL;
        const char *clen = b->data ? strstr (b->data, "Content-Length: ") : NULL;
        if (end && clen && clen < end) {
            size_t hlen = (size_t)(end - b->data) + 4, blen = (size_t)atol (clen + 16);
            if (b->len >= hlen + blen) {
                long status = atol (b->data + 9);
                ck_assert_msg (strncmp (b->data, "HTTP/1.1 ", 9) == 0, "not an answer: %.40s",
                               b->data);
                *doc = json_loadb (b->data + hlen, blen, 0, NULL);
                ck_assert_ptr_nonnull (*doc);
                memmove (b->data, b->data + hlen + blen, b->len - hlen - blen + 1);
                b->len -= hlen + blen;
                return status;
            }
        }
        ck_assert_msg (zclock_mono () < deadline, "no whole answer within 10 s");
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll (&pfd, 1, 100) <= 0)
            continue;
        char chunk[4096];
        ssize_t n = recv (fd, chunk, sizeof chunk, 0);
        ck_assert_int_gt (n, 0);
        ak_collect (chunk, 1, (size_t)n, b);
    }
}

//  Appends to out a POST of body to path with the API key.
static void s_raw_post (char *out, size_t size, const char *path, const char *body)
{
    size_t len = strlen (out);
    snprintf (out + len, size - len,
              "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
              path, ak_srv.apikey, strlen (body), body);
}

//  Pipelining (docs/API.md): requests written in one send() are served
//  concurrently and answered strictly in order, though the ones refused
//  at once (a missing group, bad JSON) finish before the pushes that wait
//  for the router; each push is delivered. Then a query target over the
//  4 KiB the API once read (600 users in ?users=).
START_TEST (test_api_pipeline)
{
    tk_client_t *alice = tk_login_ok (&ak_srv, "alice", "phone");
    ak_join (alice, "lobby");
    char all[16384] = "";
    s_raw_post (all, sizeof all, "/v1/push/users", "{\"users\":[\"alice\"],\"data\":\"p1\"}");
    size_t len = strlen (all);
    snprintf (all + len, sizeof all - len,
              "GET /v1/groups/nothing HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n", ak_srv.apikey);
    s_raw_post (all, sizeof all, "/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":\"p2\"}");
    s_raw_post (all, sizeof all, "/v1/push/users", "{\"users\":[\"alice\"");
    s_raw_post (all, sizeof all, "/v1/push/users",
                "{\"users\":[\"alice\",\"bob\"],\"data\":\"p3\"}");
    int fd = s_raw_connect ();
    ck_assert_int_eq (send (fd, all, strlen (all), 0), (ssize_t)strlen (all));
    ak_buf_t b = {NULL, 0};
    json_t *doc;
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    ck_assert_ptr_nonnull (json_object_get (doc, "users"));
    json_decref (doc);
    ak_group_refused (s_raw_answer (fd, &b, &doc), &doc, 404, "no_group", 4041);
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    json_t *rooms = json_object_get (doc, "rooms");
    ck_assert_int_eq (json_integer_value (json_object_get (rooms, "lobby")), 1);
    json_decref (doc);
    ak_refused (s_raw_answer (fd, &b, &doc), &doc, 400, "bad_json");
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    json_t *users = json_object_get (doc, "users");
    ck_assert_int_eq (json_integer_value (json_object_get (users, "alice")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (users, "bob")), 0);
    json_decref (doc);
    ck_assert_uint_eq (b.len, 0);
    //  Each push delivered (the pushes to users in order: one router).
    ak_expect_body (alice, "push", "\xa2p1", 3);
    ak_expect_body (alice, "push", "\xa2p3", 3);
    ak_nothing (alice, "push");
    //  A target of 600 users (some 6 KiB): read whole, every user answered.
    char target[8192];
    len = (size_t)snprintf (target, sizeof target, "/v1/online?users=alice");
    for (int i = 0; i < 599; i++)
        len += (size_t)snprintf (target + len, sizeof target - len, ",user%04d", i);
    ck_assert_uint_gt (len, 4096);
    snprintf (all, sizeof all, "GET %s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n", target,
              ak_srv.apikey);
    ck_assert_int_eq (send (fd, all, strlen (all), 0), (ssize_t)strlen (all));
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    json_t *online = json_object_get (doc, "online");
    ck_assert_int_eq (json_object_size (online), 600);
    ck_assert_int_eq (json_array_size (json_object_get (online, "alice")), 1);
    ck_assert_ptr_nonnull (json_object_get (online, "user0598"));
    json_decref (doc);
    free (b.data);
    close (fd);
    tk_close (&alice);
}
END_TEST

int main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create ("api_pipe");
    TCase *tc = tcase_create ("api_pipe");
    tcase_add_checked_fixture (tc, ak_setup, ak_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_api_persist);
    tcase_add_test (tc, test_api_persist_sdk);
    tcase_add_test (tc, test_api_pipeline);
    suite_add_tcase (s, tc);
    int rc = tk_run (s);
    curl_global_cleanup ();
    return rc;
}
