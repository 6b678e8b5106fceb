/*  test_api.c: the backend push API (docs/API.md) of a real zim-server,
    driven by libcurl over one kept-alive HTTP connection, with real
    WebSocket clients receiving: push to users (every device), to rooms
    (one copy per connection in several of them), to one device, to all;
    online devices, a room's count and distinct users, the top rooms, the
    app's totals; a raw msgpack body; every refusal (400, 401, 403, 404,
    405, 413) with its JSON error and nothing delivered. Groups over HTTP;
    msgpack request bodies; in a cluster, pushes across gateways, distinct
    users over two gateways and a persisted push. Persisted pushes and
    pipelined requests: tests/test_api_pipe.c.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "tests/zim_apikit.h"
#include "tests/zim_clustertest.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST (test_api)
{
    tk_client_t *phone = tk_login_ok (&ak_srv, "alice", "phone");
    tk_client_t *laptop = tk_login_ok (&ak_srv, "alice", "laptop");
    tk_client_t *bob = tk_login_ok (&ak_srv, "bob", "phone");
    json_t *doc;

    //  Push to users: every connection of each, a count per user.
    long st = ak_call ("POST", "/v1/push/users",
                      "{\"users\":[\"alice\",\"carol\"],\"data\":{\"text\":\"hi\"}}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 2);
    json_t *users = json_object_get (doc, "users");
    ck_assert_int_eq (json_integer_value (json_object_get (users, "alice")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (users, "carol")), 0);
    json_decref (doc);
    const char hi[] = "\x81\xa4text\xa2hi";
    ak_expect_body (phone, "push", hi, sizeof hi - 1);
    ak_expect_body (laptop, "push", hi, sizeof hi - 1);
    ak_nothing (bob, "push");

    //  Push to rooms: one copy per connection, even in both rooms.
    ak_join (phone, "lobby");
    ak_join (phone, "news");
    ak_join (bob, "lobby");
    st = ak_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\",\"news\"],\"data\":\"r\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ak_expect_body (phone, "room", "\xa1r", 2);
    ak_nothing (phone, "room");
    ak_expect_body (bob, "room", "\xa1r", 2);
    ak_nothing (laptop, "room");

    //  Push to one device.
    st = ak_call ("POST", "/v1/push/conns",
                 "{\"targets\":[{\"user\":\"alice\",\"device\":\"laptop\"}],\"data\":1}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    ak_expect_body (laptop, "push", "\x01", 1);
    ak_nothing (phone, "push");

    //  Push to all: every connection of the app.
    st = ak_call ("POST", "/v1/push/all", "{\"data\":[true,null,1.5]}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    const char all[] = "\x93\xc3\xc0\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00";
    tk_client_t *everyone[] = {phone, laptop, bob};
    for (int i = 0; i < 3; i++)
        ak_expect_body (everyone[i], "push", all, sizeof all - 1);

    //  A raw msgpack body, the targets in the query.
    st = ak_call_typed ("POST", "/v1/push/users?users=bob", "\xa2hi", 3, "application/msgpack",
                       ak_srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ak_expect_body (bob, "push", "\xa2hi", 3);

    //  Online devices per user.
    st = ak_call ("GET", "/v1/online?users=alice,bob,carol", NULL, &doc);
    ck_assert_int_eq (st, 200);
    json_t *online = json_object_get (doc, "online");
    ck_assert_int_eq (json_array_size (json_object_get (online, "alice")), 2);
    ck_assert_str_eq (json_string_value (json_array_get (json_object_get (online, "bob"), 0)),
                      "phone");
    ck_assert_int_eq (json_array_size (json_object_get (online, "carol")), 0);
    json_decref (doc);
    //  A room's connections and distinct users (counted once a second:
    //  wait for them): lobby has alice's phone and bob, news both of
    //  alice's devices (one user); the top rooms, the app's totals.
    ak_join (laptop, "news");
    json_int_t lobby = 0, lobby_users = 0, news = 0, news_users = 0;
    for (int tries = 0; tries < 50 && (lobby != 2 || lobby_users != 2 || news != 2); tries++) {
        st = ak_call ("GET", "/v1/rooms/lobby", NULL, &doc);
        ck_assert_int_eq (st, 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        lobby_users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        st = ak_call ("GET", "/v1/rooms/news", NULL, &doc);
        ck_assert_int_eq (st, 200);
        news = json_integer_value (json_object_get (doc, "online"));
        news_users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        if (lobby != 2 || lobby_users != 2 || news != 2)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 2);
    ck_assert_int_eq (lobby_users, 2);
    ck_assert_int_eq (news, 2);
    ck_assert_int_eq (news_users, 1);
    st = ak_call ("GET", "/v1/rooms?top=1", NULL, &doc);
    ck_assert_int_eq (st, 200);
    json_t *top = json_object_get (doc, "rooms");
    ck_assert_int_eq (json_array_size (top), 1);
    ck_assert_str_eq (json_string_value (json_object_get (json_array_get (top, 0), "room")),
                      "lobby");
    json_decref (doc);
    st = ak_call ("GET", "/v1/stats", NULL, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 3);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "users")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "rooms")), 2);
    json_decref (doc);
    //  All of it over one kept-alive connection.
    long connects = -1;
    curl_easy_getinfo (ak_curl, CURLINFO_NUM_CONNECTS, &connects);
    ck_assert_int_eq (connects, 0);

    //  Refusals: JSON errors, nothing delivered.
    ak_refused (ak_call_typed ("GET", "/v1/stats", NULL, 0, "application/json", NULL, &doc), &doc,
               401, "unauthorized");
    ak_refused (ak_call_typed ("GET", "/v1/stats", NULL, 0, "application/json",
                             "not-the-key-not-the-key", &doc),
               &doc, 403, "forbidden");
    ak_refused (ak_call ("GET", "/v1/nothing", NULL, &doc), &doc, 404, "not_found");
    ak_refused (ak_call ("GET", "/v1/push/users", NULL, &doc), &doc, 405, "method_not_allowed");
    ak_refused (ak_call ("POST", "/v1/stats", "{}", &doc), &doc, 405, "method_not_allowed");
    ak_refused (ak_call ("POST", "/v1/push/users", "{\"users\":[\"alice\"", &doc), &doc, 400,
               "bad_json");
    ak_refused (ak_call ("POST", "/v1/push/users", "{\"users\":[\"alice\"]}", &doc), &doc, 400,
               "bad_field");
    ak_refused (ak_call ("POST", "/v1/push/users", "{\"users\":\"alice\",\"data\":1}", &doc), &doc,
               400, "bad_field");
    //  One bad user among good ones: nothing pushed to the good one.
    ak_refused (ak_call ("POST", "/v1/push/users", "{\"users\":[\"alice\",\"no one\"],\"data\":1}",
                       &doc),
               &doc, 400, "bad_field");
    ak_refused (ak_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\",\"bad room\"],\"data\":1}",
                       &doc),
               &doc, 400, "bad_field");
    ak_refused (ak_call_typed ("POST", "/v1/push/users?users=bob", "\xa2hi\x01", 4,
                             "application/msgpack", ak_srv.apikey, &doc),
               &doc, 400, "bad_body");
    ak_refused (ak_call ("GET", "/v1/online", NULL, &doc), &doc, 400, "bad_field");
    ak_refused (ak_call ("GET", "/v1/rooms?top=0", NULL, &doc), &doc, 400, "bad_field");
    ak_nothing (phone, "push");
    ak_nothing (bob, "room");
    //  Over 1 MiB: 413.
    size_t big = (1 << 20) + 100;
    char *huge = malloc (big + 1);
    memset (huge, ' ', big);
    huge[big] = 0;
    ak_refused (ak_call ("POST", "/v1/push/all", huge, &doc), &doc, 413, "too_large");
    free (huge);

    //  The same through the admin endpoint (what zimctl push/online/rooms
    //  send).
    char *text = NULL;
    const char *push_args[] = {"demo", "users", "alice", "{\"via\":\"admin\"}", NULL};
    ck_assert_int_eq (zim_admin_call_curve (ak_srv.admin, ak_srv.curve, ak_srv.key, 10000, "push",
                                            push_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"alice\":2"), "%s", text);
    free (text);
    const char via[] = "\x81\xa3" "via" "\xa5" "admin";
    ak_expect_body (phone, "push", via, sizeof via - 1);
    ak_expect_body (laptop, "push", via, sizeof via - 1);
    const char *online_args[] = {"demo", "bob", NULL};
    ck_assert_int_eq (zim_admin_call_curve (ak_srv.admin, ak_srv.curve, ak_srv.key, 10000, "online",
                                            online_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"bob\":[\"phone\"]"), "%s", text);
    free (text);
    const char *rooms_args[] = {"demo", "", "5", NULL};
    ck_assert_int_eq (zim_admin_call_curve (ak_srv.admin, ak_srv.curve, ak_srv.key, 10000, "rooms",
                                            rooms_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"lobby\""), "%s", text);
    free (text);
    const char *bad_args[] = {"demo", "users", "not a user", "1", NULL};
    ck_assert_int_eq (zim_admin_call_curve (ak_srv.admin, ak_srv.curve, ak_srv.key, 10000, "push",
                                            bad_args, &text),
                      ZIM_ERR_BAD_FIELD);
    free (text);
    ak_nothing (phone, "push");
    //  And through zimctl itself.
    const char *zimctl = getenv ("ZIMCTL");
    if (!zimctl)
        zimctl = "./zimctl";
    char cmd[1024];
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s push users bob --app demo --data '\"cli\"'", zimctl,
              ak_srv.admin, ak_srv.key);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    char out[512] = "";
    size_t got = fread (out, 1, sizeof out - 1, p);
    out[got] = 0;
    ck_assert_int_eq (pclose (p), 0);
    ck_assert_msg (strstr (out, "\"bob\":1"), "zimctl push: %s", out);
    ak_expect_body (bob, "push", "\xa3" "cli", 4);
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s rooms --app demo lobby", zimctl, ak_srv.admin, ak_srv.key);
    p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    got = fread (out, 1, sizeof out - 1, p);
    out[got] = 0;
    ck_assert_int_eq (pclose (p), 0);
    ck_assert_msg (strstr (out, "\"online\":2"), "zimctl rooms: %s", out);

    //  The backend puts users in and out of rooms: every connection of
    //  theirs gets joined / left.
    //  (nobody has no connection: nothing to join; under UBSan this once
    //  sorted a NULL list at the router.)
    st = ak_call ("POST", "/v1/rooms/stage/join", "{\"users\":[\"alice\",\"carol\",\"nobody\"]}",
                 &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (doc, "users"), "alice")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (doc, "users"), "nobody")), 0);
    json_decref (doc);
    tk_frame_t tf;
    ck_assert_int_eq (tk_expect (phone, "joined", 10000, &tf), 0);
    ck_assert_int_eq (tk_expect (laptop, "joined", 10000, &tf), 0);
    //  The router knows the room once the gateway reported it (a moment
    //  after the answer): wait for it, then push.
    json_int_t staged = 0;
    for (int tries = 0; tries < 50 && staged == 0; tries++) {
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/stage", NULL, &doc), 200);
        staged = json_integer_value (json_object_get (doc, "online"));
        json_decref (doc);
        if (staged == 0)
            usleep (100000);
    }
    ck_assert_int_gt (staged, 0);
    st = ak_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"stage\"],\"data\":\"s\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ak_expect_body (laptop, "room", "\xa1s", 2);
    st = ak_call ("POST", "/v1/rooms/stage/leave", "{\"users\":[\"alice\"]}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ck_assert_int_eq (tk_expect (laptop, "left", 10000, &tf), 0);
    ak_refused (ak_call ("POST", "/v1/rooms/bad%20room/join", "{\"users\":[\"alice\"]}", &doc), &doc,
               400, "bad_room");
    ak_refused (ak_call ("POST", "/v1/rooms/stage/join", "{\"users\":\"alice\"}", &doc), &doc, 400,
               "bad_field");
    ak_refused (ak_call ("POST", "/v1/disconnect", "{\"device\":\"phone\"}", &doc), &doc, 400,
               "bad_field");

    //  Disconnect one device: closed with 4056, the other stays.
    st = ak_call ("POST", "/v1/disconnect", "{\"user\":\"alice\",\"device\":\"laptop\"}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    for (int i = 0; i < 500 && !tk_closed (laptop); i++)
        tk_recv (laptop, 20, &tf);
    ck_assert_int_eq (tk_close_status (laptop), ZIM_ERR_DISCONNECTED);
    ak_nothing (phone, "push");
    //  Disconnect a user: its tokens issued until now are refused.
    char *old = tk_token (&ak_srv, "bob", 3600);
    ck_assert_ptr_nonnull (old);
    st = ak_call ("POST", "/v1/disconnect", "{\"user\":\"bob\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    for (int i = 0; i < 500 && !tk_closed (bob); i++)
        tk_recv (bob, 20, &tf);
    ck_assert_int_eq (tk_close_status (bob), ZIM_ERR_DISCONNECTED);
    char query[2048];
    snprintf (query, sizeof query, "token=%s", old);
    free (old);
    tk_client_t *again = tk_connect (&ak_srv, query, NULL);
    ck_assert_ptr_nonnull (again);
    for (int i = 0; i < 500 && !tk_closed (again); i++)
        tk_recv (again, 20, &tf);
    ck_assert_int_eq (tk_close_status (again), ZIM_ERR_DISCONNECTED);
    tk_close (&again);
    sleep (2); //  a token issued after the disconnect (iat has seconds)
    again = tk_login_ok (&ak_srv, "bob", "tablet");
    ak_nothing (again, "error");
    tk_close (&again);

    tk_close (&phone);
    tk_close (&laptop);
    tk_close (&bob);
}
END_TEST

static int s_strcmp (const void *a, const void *b)
{
    return strcmp (*(const char *const *)a, *(const char *const *)b);
}

//  The members of group id as a comma-separated list ("" if none), or
//  NULL with the status of a refusal in *status.
static char *s_members (const char *id, long *status)
{
    char path[128];
    snprintf (path, sizeof path, "/v1/groups/%s", id);
    json_t *doc;
    *status = ak_call ("GET", path, NULL, &doc);
    if (*status != 200) {
        json_decref (doc);
        return NULL;
    }
    //  Sorted, whatever order the store keeps.
    json_t *members = json_object_get (doc, "members");
    size_t n = json_array_size (members);
    const char **names = calloc (n + 1, sizeof (char *));
    for (size_t i = 0; i < n; i++)
        names[i] = json_string_value (json_array_get (members, i));
    qsort (names, n, sizeof (char *), s_strcmp);
    char *list = calloc (1, 8192);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat (list, ",");
        strcat (list, names[i]);
    }
    free (names);
    json_decref (doc);
    return list;
}

//  Groups over HTTP: each endpoint, each refusal, nothing half-applied;
//  a member gets the group's messages. Msgpack bodies on every POST.
START_TEST (test_api_groups)
{
    json_t *doc;
    long st = ak_call ("POST", "/v1/groups",
                      "{\"group\":\"crew\",\"kind\":\"group\",\"members\":[\"alice\",\"bob\"]}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_str_eq (json_string_value (json_object_get (doc, "kind")), "group");
    json_decref (doc);
    char *list = s_members ("crew", &st);
    ck_assert_str_eq (list, "alice,bob");
    free (list);
    //  It exists: 409 with the store's 4043, the members unchanged.
    ak_group_refused (ak_call ("POST", "/v1/groups", "{\"group\":\"crew\",\"members\":[\"carol\"]}",
                             &doc),
                     &doc, 409, "exists", ZIM_ERR_GROUP_EXISTS);
    //  Members: one add and one remove in one go.
    st = ak_call ("POST", "/v1/groups/crew/members", "{\"add\":[\"carol\"],\"remove\":[\"bob\"]}",
                 &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    list = s_members ("crew", &st);
    ck_assert_str_eq (list, "alice,carol");
    free (list);
    //  Refused whole: one bad uid among good ones changes nothing.
    ak_group_refused (ak_call ("POST", "/v1/groups/crew/members",
                             "{\"add\":[\"dave\",\"no one\"],\"remove\":[\"alice\"]}", &doc),
                     &doc, 400, "bad_field", 0);
    ak_group_refused (ak_call ("POST", "/v1/groups/crew/members", "{}", &doc), &doc, 400,
                     "bad_field", 0);
    ak_group_refused (ak_call ("POST", "/v1/groups", "{\"group\":\"x\",\"kind\":\"room\"}", &doc),
                     &doc, 400, "bad_field", 0);
    ak_group_refused (ak_call ("POST", "/v1/groups", "[1]", &doc), &doc, 400, "bad_json", 0);
    ak_group_refused (ak_call ("PUT", "/v1/groups/crew", "{}", &doc), &doc, 405,
                     "method_not_allowed", 0);
    ak_group_refused (ak_call ("GET", "/v1/groups/crew/nothing", NULL, &doc), &doc, 404,
                     "not_found", 0);
    list = s_members ("crew", &st);
    ck_assert_str_eq (list, "alice,carol");
    free (list);
    //  Over the group size limit (500): 4042, nothing made.
    size_t size = 600 * 12 + 64;
    char *big = malloc (size);
    size_t len = (size_t)snprintf (big, size, "{\"group\":\"huge\",\"members\":[");
    for (int i = 0; i < 501; i++)
        len += (size_t)snprintf (big + len, size - len, "%s\"m%d\"", i ? "," : "", i);
    snprintf (big + len, size - len, "]}");
    ak_group_refused (ak_call ("POST", "/v1/groups", big, &doc), &doc, 400, "group_full",
                     ZIM_ERR_GROUP_FULL);
    free (big);
    ck_assert_ptr_null (s_members ("huge", &st));
    ck_assert_int_eq (st, 404);
    ak_group_refused (ak_call ("POST", "/v1/groups/nobody/members", "{\"add\":[\"alice\"]}", &doc),
                     &doc, 404, "no_group", ZIM_ERR_NO_GROUP);

    //  A member posts; another member gets it live.
    tk_client_t *alice = tk_login_ok (&ak_srv, "alice", "phone");
    tk_client_t *carol = tk_login_ok (&ak_srv, "carol", "phone");
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "group");
    zim_wr_cstr (&wr, "crew");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "g-1");
    zim_wr_cstr (&wr, "body");
    zim_wr_cstr (&wr, "yo");
    ck_assert_int_eq (tk_send_wr (alice, &wr), 0);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
    ck_assert_int_eq (tk_expect (carol, "msg", 10000, &f), 0);

    //  Upgrade to a channel, then delete: 404 afterwards.
    st = ak_call ("POST", "/v1/groups/crew/upgrade", "{}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_str_eq (json_string_value (json_object_get (doc, "kind")), "channel");
    json_decref (doc);
    st = ak_call ("DELETE", "/v1/groups/crew", NULL, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ck_assert_ptr_null (s_members ("crew", &st));
    ck_assert_int_eq (st, 404);
    ak_group_refused (ak_call ("DELETE", "/v1/groups/crew", NULL, &doc), &doc, 404, "no_group",
                     ZIM_ERR_NO_GROUP);

    //  Msgpack bodies: the same fields as the JSON, on every POST.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "group");
    zim_wr_cstr (&wr, "mp");
    zim_wr_cstr (&wr, "kind");
    zim_wr_cstr (&wr, "channel");
    zim_wr_cstr (&wr, "members");
    zim_wr_array (&wr, 1);
    zim_wr_cstr (&wr, "carol");
    st = ak_call_typed ("POST", "/v1/groups", (const char *)wr.data, wr.size, "application/msgpack",
                       ak_srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_str_eq (json_string_value (json_object_get (doc, "kind")), "channel");
    json_decref (doc);
    list = s_members ("mp", &st);
    ck_assert_str_eq (list, "carol");
    free (list);
    //  A push: data forwarded byte for byte (a bin inside is kept).
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "users");
    zim_wr_array (&wr, 1);
    zim_wr_cstr (&wr, "carol");
    zim_wr_cstr (&wr, "data");
    const char data[] = "\x92\xa1x\x7f";
    zim_wr_raw (&wr, data, sizeof data - 1);
    st = ak_call_typed ("POST", "/v1/push/users", (const char *)wr.data, wr.size,
                       "application/msgpack", ak_srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    ak_expect_body (carol, "push", data, sizeof data - 1);
    //  A room join and a push to all, as msgpack.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "users");
    zim_wr_array (&wr, 1);
    zim_wr_cstr (&wr, "carol");
    st = ak_call_typed ("POST", "/v1/rooms/deck/join", (const char *)wr.data, wr.size,
                       "application/msgpack", ak_srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (doc, "users"), "carol")), 1);
    json_decref (doc);
    ck_assert_int_eq (tk_expect (carol, "joined", 10000, &f), 0);
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "data");
    zim_wr_cstr (&wr, "all");
    st = ak_call_typed ("POST", "/v1/push/all", (const char *)wr.data, wr.size,
                       "application/msgpack", ak_srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ak_expect_body (carol, "push", "\xa3" "all", 4);
    //  Not one msgpack map: 400 bad_body, nothing done.
    ak_refused (ak_call_typed ("POST", "/v1/groups", "\x81\xa5group", 7, "application/msgpack",
                             ak_srv.apikey, &doc),
               &doc, 400, "bad_body");
    ak_refused (ak_call_typed ("POST", "/v1/rooms/deck/leave", "\x91\xa1x", 3, "application/msgpack",
                             ak_srv.apikey, &doc),
               &doc, 400, "bad_body");
    ak_nothing (carol, "left");
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&carol);
}
END_TEST

//  In a cluster: the API of gw-1 pushes to a user and a room on gw-2.
START_TEST (test_api_cluster)
{
    tk_node_t *gw1 = ct_node ("gw-1");
    ck_assert_int_gt (gw1->srv.api_port, 0);
    ck_assert_int_ge (strlen (gw1->srv.apikey), 16);
    ak_srv.api_port = gw1->srv.api_port;
    snprintf (ak_srv.apikey, sizeof ak_srv.apikey, "%s", gw1->srv.apikey);
    tk_client_t *bob = ct_login ("gw-2", "bob", "phone");
    ct_wait_routes (1);
    ak_join (bob, "lobby");
    json_t *doc;
    //  Routes and room interest reach the router within a second or two.
    json_int_t reached = 0;
    for (int tries = 0; tries < 50 && reached == 0; tries++) {
        ck_assert_int_eq (ak_call ("POST", "/v1/push/users", "{\"users\":[\"bob\"],\"data\":\"u\"}",
                                  &doc),
                          200);
        reached = json_integer_value (json_object_get (doc, "connections"));
        json_decref (doc);
        if (reached == 0)
            usleep (200000);
    }
    ck_assert_int_eq (reached, 1);
    ak_expect_body (bob, "push", "\xa1u", 2);
    json_int_t lobby = 0;
    for (int tries = 0; tries < 50 && lobby == 0; tries++) {
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        json_decref (doc);
        if (lobby == 0)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 1);
    ck_assert_int_eq (ak_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":\"r\"}",
                              &doc),
                      200);
    json_decref (doc);
    ak_expect_body (bob, "room", "\xa1r", 2);
    //  Distinct users across gateways: alice on gw-1 and on gw-2, bob on
    //  gw-2, all in lobby: three connections, two users.
    tk_client_t *a1 = ct_login ("gw-1", "alice", "phone");
    tk_client_t *a2 = ct_login ("gw-2", "alice", "laptop");
    ak_join (a1, "lobby");
    ak_join (a2, "lobby");
    json_int_t users = 0;
    lobby = 0;
    for (int tries = 0; tries < 50 && (lobby != 3 || users != 2); tries++) {
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        if (lobby != 3 || users != 2)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 3);
    ck_assert_int_eq (users, 2);
    //  alice leaves on gw-1: still in on gw-2; then there too: bob alone.
    tk_close (&a1);
    for (int tries = 0; tries < 50 && lobby != 2; tries++) {
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        if (lobby != 2)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 2);
    ck_assert_int_eq (users, 2);
    tk_close (&a2);
    for (int tries = 0; tries < 50 && (lobby != 1 || users != 1); tries++) {
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        if (lobby != 1 || users != 1)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 1);
    ck_assert_int_eq (users, 1);
    //  A persisted push through gw-1's API goes to the map's first live
    //  broker (503 until gw-1 has a map): stored, and live on gw-2.
    json_int_t seq = 0;
    for (int tries = 0; tries < 50 && seq == 0; tries++) {
        long st = ak_call ("POST", "/v1/push/users",
                          "{\"users\":[\"bob\"],\"data\":\"c\",\"persist\":true,\"id\":\"c-1\"}",
                          &doc);
        ck_assert (st == 200 || st == 503);
        seq = json_integer_value (json_object_get (json_object_get (doc, "users"), "bob"));
        json_decref (doc);
        if (seq == 0)
            usleep (200000);
    }
    ck_assert_int_eq (seq, 1);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (bob, "msg", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 1);
    ck_assert_str_eq (f.from, "_system");
    tk_close (&bob);
    curl_easy_cleanup (ak_curl);
    ak_curl = NULL;
}
END_TEST

static void s_cluster_setup (void)
{
    ak_curl = curl_easy_init ();
    ck_assert_ptr_nonnull (ak_curl);
    ct_setup ();
}

int main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create ("api");
    TCase *tc = tcase_create ("api");
    tcase_add_checked_fixture (tc, ak_setup, ak_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_api);
    tcase_add_test (tc, test_api_groups);
    suite_add_tcase (s, tc);
    ct_add_with (s, test_api_cluster, s_cluster_setup);
    int rc = tk_run (s);
    curl_global_cleanup ();
    return rc;
}
