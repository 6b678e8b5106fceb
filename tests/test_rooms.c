/*  test_rooms.c: black-box tests of rooms and live signals over real
    WebSockets: join/joined with online counts, count frames, publish to
    every member (and not to those who left), many rooms per connection,
    every refusal with its code (4050 not a member, 4051 too many rooms,
    4052 bad room name, 4053 publish not allowed, 4054 room not in the
    token's claim, 4055 signal rate, 4004 bad signal recipient), signals
    to every connection of a user. Against zim-server, and in a cluster of
    separate processes: a room spanning two gateways, counts summed across
    them, interest rebuilt after a router restart, counts healed after a
    gateway is killed.
*/
#include "gateway/zim_token.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "sdk/c/zim_client.h"
#include "msg/zim_util.h"
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

//  A decoded server frame, with the room keys tk_frame_t lacks.
typedef struct {
    char op[16];
    int64_t code;
    bool has_rid;
    uint64_t rid;
    char room[136], from[72], body[64];
    uint64_t online, ts;
} s_frame_t;

//  Receives the next frame on c within timeout_ms; 0 or -1.
static int s_recv (tk_client_t *c, int timeout_ms, s_frame_t *out)
{
    tk_frame_t f;
    if (tk_recv (c, timeout_ms, &f))
        return -1;
    memset (out, 0, sizeof *out);
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    zim_str_copy (m.op_name, out->op, sizeof out->op);
    out->code = m.code;
    out->has_rid = m.has_rid;
    out->rid = m.rid;
    zim_str_copy (m.room, out->room, sizeof out->room);
    zim_str_copy (m.from, out->from, sizeof out->from);
    out->online = m.online;
    out->ts = m.ts;
    //  A string body, as text.
    zim_rd_t body;
    zim_str_t text;
    zim_rd_init (&body, m.body.ptr, m.body.len);
    if (m.body.ptr && zim_rd_str (&body, &text) == 0) {
        if (text.len >= sizeof out->body) //  a long body: its start
            text.len = sizeof out->body - 1;
        zim_str_copy (text, out->body, sizeof out->body);
    }
    return 0;
}

//  Receives frames on c until one with op (others dropped); 0 or -1.
static int s_expect (tk_client_t *c, const char *op, int timeout_ms, s_frame_t *f)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline)
        if (s_recv (c, (int)(deadline - zclock_mono ()), f) == 0 && streq (f->op, op))
            return 0;
    return -1;
}

//  Expects an error with code (and rid if rid >= 0) as c's next error.
static void s_expect_error (tk_client_t *c, int code, int64_t rid)
{
    s_frame_t f;
    ck_assert_int_eq (s_expect (c, "error", 10000, &f), 0);
    ck_assert_int_eq (f.code, code);
    if (rid >= 0) {
        ck_assert (f.has_rid);
        ck_assert_int_eq (f.rid, rid);
    }
}

//  Sends {"op":op,"room":room,"rid":rid[,"counts":true][,"body":body]}.
static void s_room_op (tk_client_t *c, const char *op, const char *room, uint64_t rid, bool counts,
                       const char *body)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3 + counts + (body != NULL));
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, op);
    zim_wr_cstr (&wr, "room");
    zim_wr_cstr (&wr, room);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, rid);
    if (counts) {
        zim_wr_cstr (&wr, "counts");
        zim_wr_bool (&wr, true);
    }
    if (body) {
        zim_wr_cstr (&wr, "body");
        zim_wr_cstr (&wr, body);
    }
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  Sends {"op":"signal","to":to,"body":body}.
static void s_signal (tk_client_t *c, const char *to, const char *body)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "signal");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, to);
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, body);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  Joins room on c and returns the online count of its joined.
static uint64_t s_join (tk_client_t *c, const char *room, uint64_t rid, bool counts)
{
    s_room_op (c, "join", room, rid, counts, NULL);
    s_frame_t f;
    ck_assert_int_eq (s_expect (c, "joined", 10000, &f), 0);
    ck_assert_str_eq (f.room, room);
    ck_assert (f.has_rid);
    ck_assert_int_eq (f.rid, rid);
    return f.online;
}

//  Waits for a count frame of room on c saying online; fails otherwise.
static void s_expect_count (tk_client_t *c, const char *room, uint64_t online, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    s_frame_t f;
    uint64_t last = 0;
    while (zclock_mono () < deadline) {
        if (s_expect (c, "count", (int)(deadline - zclock_mono ()), &f))
            break;
        ck_assert_str_eq (f.room, room);
        last = f.online;
        if (f.online == online)
            return;
    }
    ck_abort_msg ("no count %llu for %s (last %llu)", (unsigned long long)online, room,
                  (unsigned long long)last);
}

//  A ping answered: every frame queued before it on c has been read.
static void s_sync_ping (tk_client_t *c, bool no_room_before)
{
    tk_ping (c);
    s_frame_t f;
    do {
        ck_assert_int_eq (s_recv (c, 10000, &f), 0);
        if (no_room_before)
            ck_assert_msg (strcmp (f.op, "room"), "a room frame after leaving");
    } while (strcmp (f.op, "pong"));
}

static void s_setup (void)
{
    FILE *cfg = fopen ("tk-rooms.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fprintf (cfg, "gateway\n    max_rooms_per_conn = 3\n    signal_rate = 1\n"
                  "    signal_burst = 3\n");
    fclose (cfg);
    const char *extra[] = {"-c", "tk-rooms.cfg", NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
}

static void s_teardown (void)
{
    tk_server_stop (&srv, SIGTERM);
    tk_server_cleanup (&srv);
}

START_TEST (test_rooms)
{
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    tk_client_t *carol = tk_login_ok (&srv, "carol", "phone");
    //  joined carries online; a member with counts sees the count move.
    ck_assert_int_eq (s_join (alice, "lobby", 1, true), 1);
    ck_assert_int_eq (s_join (bob, "lobby", 2, false), 2);
    s_expect_count (alice, "lobby", 2, 10000);
    //  A joined again is answered again (idempotent).
    ck_assert_int_eq (s_join (bob, "lobby", 3, false), 2);

    //  bob publishes: published to him, a room frame to every member.
    s_room_op (bob, "publish", "lobby", 5, false, "hello");
    s_frame_t f;
    ck_assert_int_eq (s_expect (bob, "published", 10000, &f), 0);
    ck_assert (f.has_rid && f.rid == 5);
    tk_client_t *members[] = {alice, bob};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (s_expect (members[i], "room", 10000, &f), 0);
        ck_assert_str_eq (f.room, "lobby");
        ck_assert_str_eq (f.body, "hello");
        ck_assert_str_eq (f.from, "bob");
        ck_assert (f.ts > 1700000000000ULL);
    }

    //  Refusals, each with its code and rid.
    s_room_op (carol, "publish", "lobby", 10, false, "x");
    s_expect_error (carol, ZIM_ERR_NOT_IN_ROOM, 10);
    s_room_op (carol, "leave", "lobby", 11, false, NULL);
    s_expect_error (carol, ZIM_ERR_NOT_IN_ROOM, 11);
    s_room_op (carol, "join", "bad room", 12, false, NULL);
    s_expect_error (carol, ZIM_ERR_BAD_ROOM, 12);
    char longroom[140];
    memset (longroom, 'r', 129);
    longroom[129] = 0;
    s_room_op (carol, "join", longroom, 13, false, NULL);
    s_expect_error (carol, ZIM_ERR_BAD_ROOM, 13);
    //  Many rooms per connection, up to max_rooms_per_conn (3 here).
    ck_assert_int_eq (s_join (carol, "r1", 14, false), 1);
    ck_assert_int_eq (s_join (carol, "a:b/c@d.e-f_G", 15, false), 1);
    ck_assert_int_eq (s_join (carol, "lobby", 16, false), 3);
    s_room_op (carol, "join", "r4", 17, false, NULL);
    s_expect_error (carol, ZIM_ERR_TOO_MANY_ROOMS, 17);
    //  A join without room is a bad field.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "join");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 18);
    ck_assert_int_eq (tk_send_wr (carol, &wr), 0);
    s_expect_error (carol, ZIM_ERR_BAD_FIELD, 18);
    s_expect_count (alice, "lobby", 3, 10000);

    //  alice leaves: left, and the next publish does not reach her.
    s_room_op (alice, "leave", "lobby", 20, false, NULL);
    ck_assert_int_eq (s_expect (alice, "left", 10000, &f), 0);
    ck_assert_str_eq (f.room, "lobby");
    ck_assert_int_eq (f.rid, 20);
    s_room_op (carol, "publish", "lobby", 21, false, "second");
    ck_assert_int_eq (s_expect (bob, "room", 10000, &f), 0);
    ck_assert_str_eq (f.body, "second");
    ck_assert_int_eq (s_expect (carol, "room", 10000, &f), 0);
    s_sync_ping (alice, true);

    //  A closed connection leaves its rooms: bob (counts) sees 1 after
    //  carol goes.
    ck_assert_int_eq (s_join (bob, "r1", 22, true), 2);
    tk_close (&carol);
    s_expect_count (bob, "r1", 1, 10000);

    //  Signals reach every connection of the recipient, from the sender.
    tk_client_t *bob2 = tk_login_ok (&srv, "bob", "laptop");
    s_signal (alice, "bob", "typing");
    tk_client_t *bobs[] = {bob, bob2};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq (s_expect (bobs[i], "signal", 10000, &f), 0);
        ck_assert_str_eq (f.from, "alice");
        ck_assert_str_eq (f.body, "typing");
    }
    s_signal (alice, "not a user", "x");
    s_expect_error (alice, ZIM_ERR_BAD_RECIPIENT, -1);
    //  Over the signal rate (burst 3, 1/s): 4055.
    for (int i = 0; i < 6; i++)
        s_signal (alice, "bob", "typing");
    s_expect_error (alice, ZIM_ERR_SIGNAL_RATE, -1);
    //  Before auth, a join is 4010.
    tk_client_t *anon = tk_connect (&srv, "", NULL);
    ck_assert_ptr_nonnull (anon);
    s_room_op (anon, "join", "lobby", 30, false, NULL);
    s_expect_error (anon, ZIM_ERR_AUTH_REQUIRED, 30);

    zim_wr_free (&wr);
    tk_close (&anon);
    tk_close (&alice);
    tk_close (&bob);
    tk_close (&bob2);
}
END_TEST

//  The policy of an app: join only what the token's rooms claim names,
//  no client publishing.
#define S_SECRET "rooms-test-secret-0123456789abcdef"

static void s_policy_setup (void)
{
    FILE *cfg = fopen ("tk-rooms-policy.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fprintf (cfg, "apps\n    demo\n        secret = %s\n    strict\n        secret = %s\n"
                  "        join = token\n        client_publish = none\n",
             S_SECRET, S_SECRET);
    fclose (cfg);
    const char *extra[] = {"-c", "tk-rooms-policy.cfg", NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
}

//  Logs uid of app in with a token carrying rooms (a JSON array text, or
//  NULL for none).
static tk_client_t *s_login_claims (const char *app, const char *uid, const char *rooms)
{
    json_t *claims = json_pack ("{s:s, s:s, s:I}", "sub", uid, "app", app, "exp",
                                (json_int_t)(zim_now_ms () / 1000 + 600));
    if (rooms)
        json_object_set_new (claims, "rooms", json_loads (rooms, 0, NULL));
    char *token = zim_token_sign_json (S_SECRET, claims);
    json_decref (claims);
    ck_assert_ptr_nonnull (token);
    char query[2048];
    snprintf (query, sizeof query, "token=%s", token);
    free (token);
    tk_client_t *c = tk_connect (&srv, query, NULL);
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

START_TEST (test_rooms_policy)
{
    tk_client_t *c = s_login_claims ("strict", "carol", "[\"game:*\", \"news\"]");
    ck_assert_int_eq (s_join (c, "game:42", 1, false), 1);
    ck_assert_int_eq (s_join (c, "news", 2, false), 1);
    s_room_op (c, "join", "newsroom", 3, false, NULL);
    s_expect_error (c, ZIM_ERR_ROOM_DENIED, 3);
    s_room_op (c, "join", "gam", 4, false, NULL);
    s_expect_error (c, ZIM_ERR_ROOM_DENIED, 4);
    s_room_op (c, "publish", "news", 5, false, "x");
    s_expect_error (c, ZIM_ERR_PUBLISH_DENIED, 5);
    //  Without the claim nothing can be joined in strict.
    tk_client_t *d = s_login_claims ("strict", "dave", NULL);
    s_room_op (d, "join", "news", 6, false, NULL);
    s_expect_error (d, ZIM_ERR_ROOM_DENIED, 6);
    //  Apps are apart: demo's lobby is open and does not count strict's.
    tk_client_t *e = s_login_claims ("demo", "erin", NULL);
    ck_assert_int_eq (s_join (e, "news", 7, false), 1);
    s_room_op (e, "publish", "news", 8, false, "demo news");
    s_frame_t f;
    ck_assert_int_eq (s_expect (e, "room", 10000, &f), 0);
    ck_assert_str_eq (f.body, "demo news");
    s_sync_ping (c, true);
    tk_close (&c);
    tk_close (&d);
    tk_close (&e);
}
END_TEST

//  In a cluster: a room across two gateways.
START_TEST (test_rooms_cluster)
{
    tk_client_t *a = ct_login ("gw-1", "alice", "phone");
    tk_client_t *b = ct_login ("gw-2", "bob", "phone");
    ct_wait_routes (2);
    s_join (a, "lobby", 1, true);
    s_join (b, "lobby", 2, true);
    //  The router sums both gateways: both see 2.
    s_expect_count (a, "lobby", 2, 15000);
    s_expect_count (b, "lobby", 2, 15000);
    //  A publish on gw-1 reaches bob on gw-2, once.
    s_room_op (a, "publish", "lobby", 3, false, "across");
    s_frame_t f;
    ck_assert_int_eq (s_expect (b, "room", 10000, &f), 0);
    ck_assert_str_eq (f.body, "across");
    ck_assert_str_eq (f.from, "alice");
    ck_assert_int_eq (s_expect (a, "room", 10000, &f), 0);
    s_sync_ping (b, true);
    //  A signal across gateways.
    s_signal (b, "alice", "typing");
    ck_assert_int_eq (s_expect (a, "signal", 10000, &f), 0);
    ck_assert_str_eq (f.from, "bob");

    //  The router restarts: the gateways announce their rooms again, and a
    //  publish reaches gw-2 within seconds.
    tk_node_t *router = ct_node ("router-1");
    tk_node_stop (router, SIGKILL);
    ck_assert_int_eq (tk_node_start (&ct_cl, router), 0);
    int64_t deadline = zclock_mono () + 20000;
    bool got = false;
    for (int n = 0; !got && zclock_mono () < deadline; n++) {
        char body[32];
        snprintf (body, sizeof body, "after-%d", n);
        s_room_op (a, "publish", "lobby", 100 + (uint64_t)n, false, body);
        int64_t until = zclock_mono () + 500;
        while (!got && zclock_mono () < until)
            if (s_recv (b, (int)(until - zclock_mono ()), &f) == 0 && streq (f.op, "room"))
                got = true;
    }
    ck_assert_msg (got, "no room message reached gw-2 after the router restarted");

    //  gw-2 dies: the router drops its members, alice sees 1.
    tk_node_stop (ct_node ("gw-2"), SIGKILL);
    tk_close (&b);
    s_expect_count (a, "lobby", 1, 20000);
    tk_close (&a);
}
END_TEST

//  The C SDK: what its callbacks saw.
typedef struct {
    int joined, rooms, signals, counts;
    char last_from[72], last_body[64];
    int64_t last_online;
} s_sdk_t;

static void s_sdk_joined (zim_client_t *c, const char *room, int64_t online, void *arg)
{
    (void)c;
    (void)room;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->joined++;
    t->last_online = online;
}

static void s_sdk_room (zim_client_t *c, const zim_client_room_t *m, void *arg)
{
    (void)c;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->rooms++;
    snprintf (t->last_from, sizeof t->last_from, "%s", m->from ? m->from : "");
    zim_rd_t rd;
    zim_str_t text;
    zim_rd_init (&rd, m->body, m->body_len);
    if (zim_rd_str (&rd, &text) == 0)
        zim_str_copy (text, t->last_body, sizeof t->last_body);
}

static void s_sdk_signal (zim_client_t *c, const zim_client_room_t *m, void *arg)
{
    (void)c;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->signals++;
    snprintf (t->last_from, sizeof t->last_from, "%s", m->from ? m->from : "");
}

static void s_sdk_count (zim_client_t *c, const char *room, uint64_t online, void *arg)
{
    (void)c;
    (void)room;
    s_sdk_t *t = (s_sdk_t *)arg;
    t->counts++;
    t->last_online = (int64_t)online;
}

//  Runs the loop until *flag reaches want (or 15 s).
static void s_sdk_until (zim_loop_t *loop, int *flag, int want)
{
    int64_t deadline = zclock_mono () + 15000;
    while (*flag < want && zclock_mono () < deadline)
        zim_loop_run (loop, 50);
    ck_assert_int_ge (*flag, want);
}

START_TEST (test_rooms_sdk_c)
{
    char *token = tk_token (&srv, "sdk", 3600);
    ck_assert_ptr_nonnull (token);
    char url[128];
    snprintf (url, sizeof url, "ws://127.0.0.1:%d/ws", srv.ws_port);
    s_sdk_t t = {0};
    zim_client_config_t cfg = {0};
    cfg.url = url;
    cfg.token = token;
    cfg.reconnect = true;
    cfg.backoff_max_ms = 500;
    cfg.on_joined = s_sdk_joined;
    cfg.on_room = s_sdk_room;
    cfg.on_signal = s_sdk_signal;
    cfg.on_count = s_sdk_count;
    cfg.arg = &t;
    zim_loop_t *loop = zim_loop_new ();
    zim_client_t *c = zim_client_new (loop, &cfg);
    ck_assert_ptr_nonnull (c);
    ck_assert_int_eq (zim_client_join (c, "bad room", false), -1);
    ck_assert_int_eq (zim_client_join (c, "lobby", true), 0); //  before auth: at auth_ok
    ck_assert_int_eq (zim_client_connect (c), 0);
    s_sdk_until (loop, &t.joined, 1);
    ck_assert_int_eq (t.last_online, 1);
    //  A raw client joins and publishes; the SDK client hears it, and the count.
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    s_join (bob, "lobby", 1, false);
    s_sdk_until (loop, &t.counts, 1);
    s_room_op (bob, "publish", "lobby", 2, false, "from bob");
    s_sdk_until (loop, &t.rooms, 1);
    ck_assert_str_eq (t.last_from, "bob");
    ck_assert_str_eq (t.last_body, "from bob");
    s_signal (bob, "sdk", "typing");
    s_sdk_until (loop, &t.signals, 1);
    ck_assert_str_eq (t.last_from, "bob");
    //  The SDK publishes: bob gets it.
    uint64_t rid = 0;
    ck_assert_int_eq (zim_client_publish (c, "lobby", "\xa3sdk", 4, &rid), 0);
    ck_assert_int_eq (zim_client_signal (c, "bob", "\xc0", 1), 0);
    int64_t deadline = zclock_mono () + 10000;
    s_frame_t f;
    bool got = false;
    while (!got && zclock_mono () < deadline) {
        zim_loop_run (loop, 20);
        if (s_recv (bob, 20, &f) == 0 && streq (f.op, "room") && streq (f.from, "sdk"))
            got = true; //  (bob's own publish came back to him first)
    }
    ck_assert (got);
    ck_assert_str_eq (f.from, "sdk");
    tk_close (&bob);
    //  The server restarts on the same port: the SDK reconnects and joins
    //  lobby again by itself.
    char port[16];
    snprintf (port, sizeof port, "%d", srv.ws_port);
    tk_server_stop (&srv, SIGTERM);
    const char *extra[] = {"-c", "tk-rooms.cfg", "--port", port, NULL};
    char data[256];
    snprintf (data, sizeof data, "%s", srv.data);
    int joined = t.joined;
    ck_assert_int_eq (tk_server_start (&srv, data, extra), 0);
    s_sdk_until (loop, &t.joined, joined + 1);
    tk_client_t *carol = tk_login_ok (&srv, "carol", "phone");
    s_join (carol, "lobby", 3, false);
    int rooms = t.rooms;
    s_room_op (carol, "publish", "lobby", 4, false, "after restart");
    s_sdk_until (loop, &t.rooms, rooms + 1);
    ck_assert_str_eq (t.last_body, "after restart");
    ck_assert_int_eq (zim_client_leave (c, "lobby"), 0);
    tk_close (&carol);
    zim_client_destroy (&c);
    zim_loop_destroy (&loop);
    free (token);
}
END_TEST

//  The gateway counter name from its status.
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

static void s_burst_setup (void)
{
    FILE *cfg = fopen ("tk-rooms-burst.cfg", "w");
    ck_assert_ptr_nonnull (cfg);
    fprintf (cfg, "gateway\n    max_pending = 65536\n");
    fclose (cfg);
    const char *extra[] = {"-c", "tk-rooms-burst.cfg", NULL};
    ck_assert_int_eq (tk_server_start (&srv, NULL, extra), 0);
}

//  Reads n room frames of a burst on c: each must carry the next number.
static void s_expect_burst (tk_client_t *c, int *next, int n)
{
    s_frame_t f;
    while (n > 0) {
        ck_assert_int_eq (s_recv (c, 10000, &f), 0);
        if (strcmp (f.op, "room"))
            continue; //  the publisher's published
        ck_assert_int_eq (atoi (f.body), *next);
        (*next)++;
        n--;
    }
}

//  A room burst while one member stops reading: the gateway writes output
//  straight to the sockets that take it (zim_session_flush_all) and asks
//  for a writable callback only where the socket is full. The members that
//  read get every frame, complete and in order; the one that stopped has
//  frames dropped and counted (room_dropped), not a 4090 cut, and once it
//  reads again it gets what was not dropped, in order, and what follows.
START_TEST (test_rooms_burst_slow_member)
{
    tk_client_t *pub = tk_login_ok (&srv, "alice", "phone");
    tk_client_t *fast = tk_login_ok (&srv, "bob", "phone");
    tk_client_t *slow = tk_login_ok (&srv, "carol", "phone");
    s_join (pub, "burst", 1, false);
    s_join (fast, "burst", 2, false);
    s_join (slow, "burst", 3, false);
    long writes0 = s_stat ("writes"), asked0 = s_stat ("write_requests");
    //  2,000-byte bodies "000042 xxx...", 8 at a time, until the gateway
    //  dropped frames for carol (her socket and the gateway's budget full).
    char body[2001];
    memset (body, 'x', sizeof body - 1);
    body[sizeof body - 1] = 0;
    int sent = 0, pub_next = 0, fast_next = 0;
    long dropped = 0;
    while (dropped == 0 && sent < 20000) {
        for (int i = 0; i < 8; i++, sent++) {
            char num[8];
            snprintf (num, sizeof num, "%06d ", sent);
            memcpy (body, num, 7);
            s_room_op (pub, "publish", "burst", 100 + (uint64_t)sent, false, body);
        }
        s_expect_burst (pub, &pub_next, 8);
        s_expect_burst (fast, &fast_next, 8);
        if (sent % 400 == 0)
            dropped = s_stat ("room_dropped");
    }
    ck_assert_msg (dropped > 0, "no room frame dropped for the slow member in %d", sent);
    //  Writing went mostly without writable callbacks (one per member per
    //  loop turn before).
    long writes = s_stat ("writes") - writes0, asked = s_stat ("write_requests") - asked0;
    ck_assert_msg (asked * 2 < writes, "%ld writable requests for %ld writes", asked, writes);
    ck_assert_int_eq (s_stat ("slow_consumer_drops"), 0);
    if (getenv ("ZIM_TEST_VERBOSE"))
        fprintf (stderr, "burst: %d published, %ld dropped, %ld writes, %ld writable requests\n",
                 sent, dropped, writes, asked);

    //  carol reads again: what she gets is in order, with gaps, and she
    //  is still a member: a last message reaches all three.
    int last = -1, got = 0;
    s_frame_t f;
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "ping");
    ck_assert_int_eq (tk_send_wr (slow, &wr), 0);
    zim_wr_free (&wr);
    do {
        ck_assert_int_eq (s_recv (slow, 10000, &f), 0);
        if (streq (f.op, "room")) {
            ck_assert_int_gt (atoi (f.body), last);
            last = atoi (f.body);
            got++;
        }
    } while (strcmp (f.op, "pong"));
    ck_assert_int_gt (got, 0);
    ck_assert_int_lt (got, sent);
    snprintf (body, sizeof body, "%06d end", sent);
    s_room_op (pub, "publish", "burst", 99999, false, body);
    tk_client_t *all[] = {pub, fast, slow};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq (s_expect (all[i], "room", 10000, &f), 0);
        ck_assert_int_eq (atoi (f.body), sent);
    }
    ck_assert (!tk_closed (slow));
    tk_close (&pub);
    tk_close (&fast);
    tk_close (&slow);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("rooms");
    TCase *tc = tcase_create ("rooms");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rooms);
    suite_add_tcase (s, tc);
    tc = tcase_create ("sdk_c");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rooms_sdk_c);
    suite_add_tcase (s, tc);
    tc = tcase_create ("policy");
    tcase_add_checked_fixture (tc, s_policy_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rooms_policy);
    suite_add_tcase (s, tc);
    tc = tcase_create ("burst");
    tcase_add_checked_fixture (tc, s_burst_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_rooms_burst_slow_member);
    suite_add_tcase (s, tc);
    ct_add_with (s, test_rooms_cluster, ct_setup);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
