/*  test_api.c: the backend push API (docs/API.md) of a real zim-server,
    driven by libcurl over one kept-alive HTTP connection, with real
    WebSocket clients receiving: push to users (every device), to rooms
    (one copy per connection in several of them), to one device, to all;
    online devices, a room's count and distinct users, the top rooms, the
    app's totals; a raw msgpack body; every refusal (400, 401, 403, 404,
    405, 413) with its JSON error and nothing delivered. Groups over HTTP;
    msgpack request bodies; persisted pushes (live, synced, idempotent,
    durable across kill -9, through zimctl, with the C SDK); pipelined
    requests on a raw socket answered in order, a long query target; in a
    cluster, pushes across gateways, distinct users over two gateways and a
    persisted push.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "sdk/c/zim_client.h"
#include "tests/zim_clustertest.h"
#include "tests/zim_testkit.h"

#include <curl/curl.h>
#include <jansson.h>

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

static tk_server_t srv;
static CURL *curl;

static void s_setup (void)
{
    ck_assert_int_eq (tk_server_start (&srv, NULL, NULL), 0);
    ck_assert_int_gt (srv.api_port, 0);
    ck_assert_int_ge (strlen (srv.apikey), 16);
    curl = curl_easy_init ();
    ck_assert_ptr_nonnull (curl);
}

static void s_teardown (void)
{
    curl_easy_cleanup (curl);
    tk_server_stop (&srv, SIGTERM);
    //  The server's log: what ASan, LSan and UBSan found (sanitizer builds).
    FILE *f = fopen (srv.log, "r");
    char line[1024];
    int found = 0;
    while (f && fgets (line, sizeof line, f))
        if (strstr (line, "AddressSanitizer") || strstr (line, "LeakSanitizer") ||
            strstr (line, "runtime error:")) {
            fprintf (stderr, "%s: %s", srv.log, line);
            found++;
        }
    if (f)
        fclose (f);
    tk_server_cleanup (&srv);
    ck_assert_int_eq (found, 0);
}

//  What an answer held.
typedef struct {
    char *data;
    size_t len;
} s_buf_t;

static size_t s_collect (char *ptr, size_t size, size_t n, void *arg)
{
    s_buf_t *b = (s_buf_t *)arg;
    b->data = realloc (b->data, b->len + size * n + 1);
    memcpy (b->data + b->len, ptr, size * n);
    b->len += size * n;
    b->data[b->len] = 0;
    return size * n;
}

//  Calls method path with body (NULL: none) and key (NULL: no
//  Authorization); returns the status, *doc the JSON answer (or NULL).
static long s_call_typed (const char *method, const char *path, const char *body, size_t blen,
                          const char *type, const char *key, json_t **doc)
{
    char url[512], auth[300], ctype[128];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", srv.api_port, path);
    struct curl_slist *headers = NULL;
    if (key) {
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", key);
        headers = curl_slist_append (headers, auth);
    }
    snprintf (ctype, sizeof ctype, "Content-Type: %s", type);
    headers = curl_slist_append (headers, ctype);
    s_buf_t b = {NULL, 0};
    curl_easy_reset (curl);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 20L);
    if (body) {
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long)blen);
    }
    CURLcode rc = curl_easy_perform (curl);
    ck_assert_msg (rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror (rc));
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (headers);
    *doc = b.data ? json_loads (b.data, 0, NULL) : NULL;
    if (getenv ("ZIM_API_DEBUG"))
        fprintf (stderr, "%s %s -> %ld %s\n", method, path, 0L, b.data ? b.data : "(none)");
    ck_assert_msg (*doc, "%s %s: the answer is not JSON: %s", method, path, b.data ? b.data : "");
    free (b.data);
    return status;
}

static long s_call (const char *method, const char *path, const char *body, json_t **doc)
{
    return s_call_typed (method, path, body, body ? strlen (body) : 0, "application/json",
                         srv.apikey, doc);
}

//  Expects a refusal with status and error code.
static void s_refused (long status, json_t **doc_p, long want, const char *code)
{
    json_t *doc = *doc_p;
    char *text = json_dumps (doc, JSON_COMPACT);
    ck_assert_msg (status == want && json_object_get (doc, "error"), "%ld %s, not %ld %s", status,
                   text, want, code);
    free (text);
    json_t *err = json_object_get (doc, "error");
    ck_assert_str_eq (json_string_value (json_object_get (err, "code")), code);
    ck_assert (json_string_length (json_object_get (err, "text")) > 0);
    json_decref (doc);
}

static tk_client_t *s_login (const char *uid, const char *device)
{
    tk_client_t *c = tk_login (&srv, uid, device);
    ck_assert_ptr_nonnull (c);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "auth_ok", 5000, &f), 0);
    return c;
}

//  Sends {"op":op,"room":room} (join, leave) and waits for the answer.
static void s_join (tk_client_t *c, const char *room)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "join");
    zim_wr_cstr (&wr, "room");
    zim_wr_cstr (&wr, room);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "joined", 10000, &f), 0);
}

//  The next frame of c with op; its body's bytes into body (size).
static void s_expect_body (tk_client_t *c, const char *op, const char *body, size_t size)
{
    tk_frame_t f;
    ck_assert_msg (tk_expect (c, op, 10000, &f) == 0, "no %s frame (a body of %zu bytes)", op,
                   size);
    zim_rd_t rd;
    zim_sframe_t m;
    const char *why;
    zim_rd_init (&rd, f.raw, f.raw_len);
    ck_assert_int_eq (zim_sframe_unpack (&rd, &m, &why), 0);
    ck_assert_msg (m.body.len == size && memcmp (m.body.ptr, body, size) == 0,
                   "%s: another body (%zu bytes)", op, m.body.len);
    ck_assert (m.ts > 1700000000000ULL);
    ck_assert_ptr_null (m.from.ptr); //  the backend pushed: no from
}

//  Pings c; no frame with op may come before the pong.
static void s_nothing (tk_client_t *c, const char *op)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "ping");
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f;
    do {
        ck_assert_int_eq (tk_recv (c, 10000, &f), 0);
        ck_assert_msg (strcmp (f.op, op), "an unexpected %s frame", op);
    } while (strcmp (f.op, "pong"));
}

START_TEST (test_api)
{
    tk_client_t *phone = s_login ("alice", "phone");
    tk_client_t *laptop = s_login ("alice", "laptop");
    tk_client_t *bob = s_login ("bob", "phone");
    json_t *doc;

    //  Push to users: every connection of each, a count per user.
    long st = s_call ("POST", "/v1/push/users",
                      "{\"users\":[\"alice\",\"carol\"],\"data\":{\"text\":\"hi\"}}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 2);
    json_t *users = json_object_get (doc, "users");
    ck_assert_int_eq (json_integer_value (json_object_get (users, "alice")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (users, "carol")), 0);
    json_decref (doc);
    const char hi[] = "\x81\xa4text\xa2hi";
    s_expect_body (phone, "push", hi, sizeof hi - 1);
    s_expect_body (laptop, "push", hi, sizeof hi - 1);
    s_nothing (bob, "push");

    //  Push to rooms: one copy per connection, even in both rooms.
    s_join (phone, "lobby");
    s_join (phone, "news");
    s_join (bob, "lobby");
    st = s_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\",\"news\"],\"data\":\"r\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    s_expect_body (phone, "room", "\xa1r", 2);
    s_nothing (phone, "room");
    s_expect_body (bob, "room", "\xa1r", 2);
    s_nothing (laptop, "room");

    //  Push to one device.
    st = s_call ("POST", "/v1/push/conns",
                 "{\"targets\":[{\"user\":\"alice\",\"device\":\"laptop\"}],\"data\":1}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    s_expect_body (laptop, "push", "\x01", 1);
    s_nothing (phone, "push");

    //  Push to all: every connection of the app.
    st = s_call ("POST", "/v1/push/all", "{\"data\":[true,null,1.5]}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    const char all[] = "\x93\xc3\xc0\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00";
    tk_client_t *everyone[] = {phone, laptop, bob};
    for (int i = 0; i < 3; i++)
        s_expect_body (everyone[i], "push", all, sizeof all - 1);

    //  A raw msgpack body, the targets in the query.
    st = s_call_typed ("POST", "/v1/push/users?users=bob", "\xa2hi", 3, "application/msgpack",
                       srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    s_expect_body (bob, "push", "\xa2hi", 3);

    //  Online devices per user.
    st = s_call ("GET", "/v1/online?users=alice,bob,carol", NULL, &doc);
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
    s_join (laptop, "news");
    json_int_t lobby = 0, lobby_users = 0, news = 0, news_users = 0;
    for (int tries = 0; tries < 50 && (lobby != 2 || lobby_users != 2 || news != 2); tries++) {
        st = s_call ("GET", "/v1/rooms/lobby", NULL, &doc);
        ck_assert_int_eq (st, 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        lobby_users = json_integer_value (json_object_get (doc, "users"));
        json_decref (doc);
        st = s_call ("GET", "/v1/rooms/news", NULL, &doc);
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
    st = s_call ("GET", "/v1/rooms?top=1", NULL, &doc);
    ck_assert_int_eq (st, 200);
    json_t *top = json_object_get (doc, "rooms");
    ck_assert_int_eq (json_array_size (top), 1);
    ck_assert_str_eq (json_string_value (json_object_get (json_array_get (top, 0), "room")),
                      "lobby");
    json_decref (doc);
    st = s_call ("GET", "/v1/stats", NULL, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 3);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "users")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "rooms")), 2);
    json_decref (doc);
    //  All of it over one kept-alive connection.
    long connects = -1;
    curl_easy_getinfo (curl, CURLINFO_NUM_CONNECTS, &connects);
    ck_assert_int_eq (connects, 0);

    //  Refusals: JSON errors, nothing delivered.
    s_refused (s_call_typed ("GET", "/v1/stats", NULL, 0, "application/json", NULL, &doc), &doc,
               401, "unauthorized");
    s_refused (s_call_typed ("GET", "/v1/stats", NULL, 0, "application/json",
                             "not-the-key-not-the-key", &doc),
               &doc, 403, "forbidden");
    s_refused (s_call ("GET", "/v1/nothing", NULL, &doc), &doc, 404, "not_found");
    s_refused (s_call ("GET", "/v1/push/users", NULL, &doc), &doc, 405, "method_not_allowed");
    s_refused (s_call ("POST", "/v1/stats", "{}", &doc), &doc, 405, "method_not_allowed");
    s_refused (s_call ("POST", "/v1/push/users", "{\"users\":[\"alice\"", &doc), &doc, 400,
               "bad_json");
    s_refused (s_call ("POST", "/v1/push/users", "{\"users\":[\"alice\"]}", &doc), &doc, 400,
               "bad_field");
    s_refused (s_call ("POST", "/v1/push/users", "{\"users\":\"alice\",\"data\":1}", &doc), &doc,
               400, "bad_field");
    //  One bad user among good ones: nothing pushed to the good one.
    s_refused (s_call ("POST", "/v1/push/users", "{\"users\":[\"alice\",\"no one\"],\"data\":1}",
                       &doc),
               &doc, 400, "bad_field");
    s_refused (s_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\",\"bad room\"],\"data\":1}",
                       &doc),
               &doc, 400, "bad_field");
    s_refused (s_call_typed ("POST", "/v1/push/users?users=bob", "\xa2hi\x01", 4,
                             "application/msgpack", srv.apikey, &doc),
               &doc, 400, "bad_body");
    s_refused (s_call ("GET", "/v1/online", NULL, &doc), &doc, 400, "bad_field");
    s_refused (s_call ("GET", "/v1/rooms?top=0", NULL, &doc), &doc, 400, "bad_field");
    s_nothing (phone, "push");
    s_nothing (bob, "room");
    //  Over 1 MiB: 413.
    size_t big = (1 << 20) + 100;
    char *huge = malloc (big + 1);
    memset (huge, ' ', big);
    huge[big] = 0;
    s_refused (s_call ("POST", "/v1/push/all", huge, &doc), &doc, 413, "too_large");
    free (huge);

    //  The same through the admin endpoint (what zimctl push/online/rooms
    //  send).
    char *text = NULL;
    const char *push_args[] = {"demo", "users", "alice", "{\"via\":\"admin\"}", NULL};
    ck_assert_int_eq (zim_admin_call_curve (srv.admin, srv.curve, srv.key, 10000, "push",
                                            push_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"alice\":2"), "%s", text);
    free (text);
    const char via[] = "\x81\xa3" "via" "\xa5" "admin";
    s_expect_body (phone, "push", via, sizeof via - 1);
    s_expect_body (laptop, "push", via, sizeof via - 1);
    const char *online_args[] = {"demo", "bob", NULL};
    ck_assert_int_eq (zim_admin_call_curve (srv.admin, srv.curve, srv.key, 10000, "online",
                                            online_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"bob\":[\"phone\"]"), "%s", text);
    free (text);
    const char *rooms_args[] = {"demo", "", "5", NULL};
    ck_assert_int_eq (zim_admin_call_curve (srv.admin, srv.curve, srv.key, 10000, "rooms",
                                            rooms_args, &text),
                      0);
    ck_assert_msg (strstr (text, "\"lobby\""), "%s", text);
    free (text);
    const char *bad_args[] = {"demo", "users", "not a user", "1", NULL};
    ck_assert_int_eq (zim_admin_call_curve (srv.admin, srv.curve, srv.key, 10000, "push",
                                            bad_args, &text),
                      ZIM_ERR_BAD_FIELD);
    free (text);
    s_nothing (phone, "push");
    //  And through zimctl itself.
    const char *zimctl = getenv ("ZIMCTL");
    if (!zimctl)
        zimctl = "./zimctl";
    char cmd[1024];
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s push users bob --app demo --data '\"cli\"'", zimctl,
              srv.admin, srv.key);
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    char out[512] = "";
    size_t got = fread (out, 1, sizeof out - 1, p);
    out[got] = 0;
    ck_assert_int_eq (pclose (p), 0);
    ck_assert_msg (strstr (out, "\"bob\":1"), "zimctl push: %s", out);
    s_expect_body (bob, "push", "\xa3" "cli", 4);
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s rooms --app demo lobby", zimctl, srv.admin, srv.key);
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
    st = s_call ("POST", "/v1/rooms/stage/join", "{\"users\":[\"alice\",\"carol\",\"nobody\"]}",
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
        ck_assert_int_eq (s_call ("GET", "/v1/rooms/stage", NULL, &doc), 200);
        staged = json_integer_value (json_object_get (doc, "online"));
        json_decref (doc);
        if (staged == 0)
            usleep (100000);
    }
    ck_assert_int_gt (staged, 0);
    st = s_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"stage\"],\"data\":\"s\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    s_expect_body (laptop, "room", "\xa1s", 2);
    st = s_call ("POST", "/v1/rooms/stage/leave", "{\"users\":[\"alice\"]}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ck_assert_int_eq (tk_expect (laptop, "left", 10000, &tf), 0);
    s_refused (s_call ("POST", "/v1/rooms/bad%20room/join", "{\"users\":[\"alice\"]}", &doc), &doc,
               400, "bad_room");
    s_refused (s_call ("POST", "/v1/rooms/stage/join", "{\"users\":\"alice\"}", &doc), &doc, 400,
               "bad_field");
    s_refused (s_call ("POST", "/v1/disconnect", "{\"device\":\"phone\"}", &doc), &doc, 400,
               "bad_field");

    //  Disconnect one device: closed with 4056, the other stays.
    st = s_call ("POST", "/v1/disconnect", "{\"user\":\"alice\",\"device\":\"laptop\"}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    for (int i = 0; i < 500 && !tk_closed (laptop); i++)
        tk_recv (laptop, 20, &tf);
    ck_assert_int_eq (tk_close_status (laptop), ZIM_ERR_DISCONNECTED);
    s_nothing (phone, "push");
    //  Disconnect a user: its tokens issued until now are refused.
    char *old = tk_token (&srv, "bob", 3600);
    ck_assert_ptr_nonnull (old);
    st = s_call ("POST", "/v1/disconnect", "{\"user\":\"bob\"}", &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    for (int i = 0; i < 500 && !tk_closed (bob); i++)
        tk_recv (bob, 20, &tf);
    ck_assert_int_eq (tk_close_status (bob), ZIM_ERR_DISCONNECTED);
    char query[2048];
    snprintf (query, sizeof query, "token=%s", old);
    free (old);
    tk_client_t *again = tk_connect (&srv, query, NULL);
    ck_assert_ptr_nonnull (again);
    for (int i = 0; i < 500 && !tk_closed (again); i++)
        tk_recv (again, 20, &tf);
    ck_assert_int_eq (tk_close_status (again), ZIM_ERR_DISCONNECTED);
    tk_close (&again);
    sleep (2); //  a token issued after the disconnect (iat has seconds)
    again = s_login ("bob", "tablet");
    s_nothing (again, "error");
    tk_close (&again);

    tk_close (&phone);
    tk_close (&laptop);
    tk_close (&bob);
}
END_TEST

//  Expects a refusal of the groups endpoints: status, code and the store's
//  wire code (0: none).
static void s_group_refused (long status, json_t **doc_p, long want, const char *code, int zim)
{
    json_t *err = json_object_get (*doc_p, "error");
    ck_assert_int_eq (json_integer_value (json_object_get (err, "zim_code")), zim);
    s_refused (status, doc_p, want, code);
}

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
    *status = s_call ("GET", path, NULL, &doc);
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
    long st = s_call ("POST", "/v1/groups",
                      "{\"group\":\"crew\",\"kind\":\"group\",\"members\":[\"alice\",\"bob\"]}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_str_eq (json_string_value (json_object_get (doc, "kind")), "group");
    json_decref (doc);
    char *list = s_members ("crew", &st);
    ck_assert_str_eq (list, "alice,bob");
    free (list);
    //  It exists: 409 with the store's 4043, the members unchanged.
    s_group_refused (s_call ("POST", "/v1/groups", "{\"group\":\"crew\",\"members\":[\"carol\"]}",
                             &doc),
                     &doc, 409, "exists", ZIM_ERR_GROUP_EXISTS);
    //  Members: one add and one remove in one go.
    st = s_call ("POST", "/v1/groups/crew/members", "{\"add\":[\"carol\"],\"remove\":[\"bob\"]}",
                 &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    list = s_members ("crew", &st);
    ck_assert_str_eq (list, "alice,carol");
    free (list);
    //  Refused whole: one bad uid among good ones changes nothing.
    s_group_refused (s_call ("POST", "/v1/groups/crew/members",
                             "{\"add\":[\"dave\",\"no one\"],\"remove\":[\"alice\"]}", &doc),
                     &doc, 400, "bad_field", 0);
    s_group_refused (s_call ("POST", "/v1/groups/crew/members", "{}", &doc), &doc, 400,
                     "bad_field", 0);
    s_group_refused (s_call ("POST", "/v1/groups", "{\"group\":\"x\",\"kind\":\"room\"}", &doc),
                     &doc, 400, "bad_field", 0);
    s_group_refused (s_call ("POST", "/v1/groups", "[1]", &doc), &doc, 400, "bad_json", 0);
    s_group_refused (s_call ("PUT", "/v1/groups/crew", "{}", &doc), &doc, 405,
                     "method_not_allowed", 0);
    s_group_refused (s_call ("GET", "/v1/groups/crew/nothing", NULL, &doc), &doc, 404,
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
    s_group_refused (s_call ("POST", "/v1/groups", big, &doc), &doc, 400, "group_full",
                     ZIM_ERR_GROUP_FULL);
    free (big);
    ck_assert_ptr_null (s_members ("huge", &st));
    ck_assert_int_eq (st, 404);
    s_group_refused (s_call ("POST", "/v1/groups/nobody/members", "{\"add\":[\"alice\"]}", &doc),
                     &doc, 404, "no_group", ZIM_ERR_NO_GROUP);

    //  A member posts; another member gets it live.
    tk_client_t *alice = s_login ("alice", "phone");
    tk_client_t *carol = s_login ("carol", "phone");
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
    st = s_call ("POST", "/v1/groups/crew/upgrade", "{}", &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_str_eq (json_string_value (json_object_get (doc, "kind")), "channel");
    json_decref (doc);
    st = s_call ("DELETE", "/v1/groups/crew", NULL, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    ck_assert_ptr_null (s_members ("crew", &st));
    ck_assert_int_eq (st, 404);
    s_group_refused (s_call ("DELETE", "/v1/groups/crew", NULL, &doc), &doc, 404, "no_group",
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
    st = s_call_typed ("POST", "/v1/groups", (const char *)wr.data, wr.size, "application/msgpack",
                       srv.apikey, &doc);
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
    st = s_call_typed ("POST", "/v1/push/users", (const char *)wr.data, wr.size,
                       "application/msgpack", srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    json_decref (doc);
    s_expect_body (carol, "push", data, sizeof data - 1);
    //  A room join and a push to all, as msgpack.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "users");
    zim_wr_array (&wr, 1);
    zim_wr_cstr (&wr, "carol");
    st = s_call_typed ("POST", "/v1/rooms/deck/join", (const char *)wr.data, wr.size,
                       "application/msgpack", srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    ck_assert_int_eq (json_integer_value (json_object_get (json_object_get (doc, "users"), "carol")), 1);
    json_decref (doc);
    ck_assert_int_eq (tk_expect (carol, "joined", 10000, &f), 0);
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "data");
    zim_wr_cstr (&wr, "all");
    st = s_call_typed ("POST", "/v1/push/all", (const char *)wr.data, wr.size,
                       "application/msgpack", srv.apikey, &doc);
    ck_assert_int_eq (st, 200);
    json_decref (doc);
    s_expect_body (carol, "push", "\xa3" "all", 4);
    //  Not one msgpack map: 400 bad_body, nothing done.
    s_refused (s_call_typed ("POST", "/v1/groups", "\x81\xa5group", 7, "application/msgpack",
                             srv.apikey, &doc),
               &doc, 400, "bad_body");
    s_refused (s_call_typed ("POST", "/v1/rooms/deck/leave", "\x91\xa1x", 3, "application/msgpack",
                             srv.apikey, &doc),
               &doc, 400, "bad_body");
    s_nothing (carol, "left");
    zim_wr_free (&wr);
    tk_close (&alice);
    tk_close (&carol);
}
END_TEST

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
    tk_client_t *alice = s_login ("alice", "phone");
    json_t *doc;
    tk_frame_t f;
    //  One message of alice's own first: the push takes the next seq.
    ck_assert_int_eq (tk_send_text (alice, "bob", "a-1", "hello"), 0);
    ck_assert_int_eq (tk_expect (alice, "ack", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 1);
    const char *push = "{\"users\":[\"alice\",\"carol\"],\"data\":\"p1\",\"persist\":true,"
                       "\"id\":\"order-1\"}";
    ck_assert_int_eq (s_call ("POST", "/v1/push/users", push, &doc), 200);
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
    ck_assert_int_eq (s_call ("POST", "/v1/push/users", push, &doc), 200);
    ck_assert (json_equal (doc, copy));
    json_decref (doc);
    json_decref (copy);
    //  The same id with other data stores nothing: 409.
    s_refused (s_call ("POST", "/v1/push/users",
                       "{\"users\":[\"carol\"],\"data\":\"other\",\"persist\":true,\"id\":\"order-1\"}",
                       &doc),
               &doc, 409, "conflict");
    //  carol was offline: she finds it by sync, once.
    tk_client_t *carol = s_login ("carol", "laptop");
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 1);
    ck_assert_uint_eq (f.seqs[0], 1);
    ck_assert_str_eq (f.bodies[0], "p1");
    //  A push without an id is stored too.
    ck_assert_int_eq (s_call ("POST", "/v1/push/users",
                              "{\"users\":[\"carol\"],\"data\":\"p2\",\"persist\":true}", &doc),
                      200);
    ck_assert_int_eq (s_seq_of (doc, "carol"), 2);
    ck_assert_int_eq (tk_expect (carol, "msg", 10000, &f), 0);
    ck_assert_uint_eq (f.seq, 2);
    //  Refusals: nothing stored.
    s_refused (s_call ("POST", "/v1/push/rooms",
                       "{\"rooms\":[\"lobby\"],\"data\":1,\"persist\":true}", &doc),
               &doc, 400, "bad_field");
    s_refused (s_call ("POST", "/v1/push/users",
                       "{\"users\":[\"carol\"],\"data\":1,\"persist\":\"yes\"}", &doc),
               &doc, 400, "bad_field");
    s_refused (s_call ("POST", "/v1/push/users",
                       "{\"users\":[\"carol\"],\"data\":1,\"persist\":true,\"id\":\"\"}", &doc),
               &doc, 400, "bad_field");
    s_refused (s_call ("POST", "/v1/push/users",
                       "{\"users\":[\"_system\"],\"data\":1,\"persist\":true}", &doc),
               &doc, 400, "bad_field");
    s_nothing (carol, "msg");
    //  Nobody logs in as the system sender.
    tk_client_t *sys = tk_login (&srv, "_system", "phone");
    if (sys) {
        ck_assert_int_ne (tk_expect (sys, "auth_ok", 3000, &f), 0);
        tk_close (&sys);
    }

    //  Acked means durable: kill -9 right after the answer, restart.
    ck_assert_int_eq (s_call ("POST", "/v1/push/users",
                              "{\"users\":[\"carol\"],\"data\":\"p3\",\"persist\":true,"
                              "\"id\":\"order-3\"}",
                              &doc),
                      200);
    ck_assert_int_eq (s_seq_of (doc, "carol"), 3);
    tk_server_stop (&srv, SIGKILL);
    tk_close (&alice);
    tk_close (&carol);
    char data[256];
    snprintf (data, sizeof data, "%s", srv.data);
    ck_assert_int_eq (tk_server_start (&srv, data, NULL), 0);
    carol = s_login ("carol", "laptop");
    s_sync_all (carol, &f);
    ck_assert_uint_eq (f.nmsgs, 3);
    ck_assert_uint_eq (f.seqs[2], 3);
    ck_assert_str_eq (f.bodies[2], "p3");
    //  The idempotency key survived too.
    ck_assert_int_eq (s_call ("POST", "/v1/push/users",
                              "{\"users\":[\"carol\"],\"data\":\"p3\",\"persist\":true,"
                              "\"id\":\"order-3\"}",
                              &doc),
                      200);
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
              bin, srv.admin, srv.key, bin, srv.admin, srv.key);
    FILE *p = popen (cmd, "r");
    size_t n = fread (out, 1, sizeof out - 1, p);
    out[n] = 0;
    ck_assert_int_eq (pclose (p), 0);
    ck_assert_msg (strstr (out, "{\"users\":{\"carol\":4}}\n{\"users\":{\"carol\":4}}"), "%s",
                   out);
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
    char *token = tk_token (&srv, "dora", 3600);
    ck_assert_ptr_nonnull (token);
    char url[128];
    snprintf (url, sizeof url, "ws://127.0.0.1:%d/ws", srv.ws_port);
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
    ck_assert_int_eq (s_call ("POST", "/v1/push/users",
                              "{\"users\":[\"dora\"],\"data\":\"s1\",\"persist\":true,\"id\":\"s-1\"}",
                              &doc),
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
    ck_assert_int_eq (s_call ("POST", "/v1/push/users",
                              "{\"users\":[\"dora\"],\"data\":\"s2\",\"persist\":true,\"id\":\"s-2\"}",
                              &doc),
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

//  In a cluster: the API of gw-1 pushes to a user and a room on gw-2.
START_TEST (test_api_cluster)
{
    tk_node_t *gw1 = ct_node ("gw-1");
    ck_assert_int_gt (gw1->srv.api_port, 0);
    ck_assert_int_ge (strlen (gw1->srv.apikey), 16);
    srv.api_port = gw1->srv.api_port;
    snprintf (srv.apikey, sizeof srv.apikey, "%s", gw1->srv.apikey);
    tk_client_t *bob = ct_login ("gw-2", "bob", "phone");
    ct_wait_routes (1);
    s_join (bob, "lobby");
    json_t *doc;
    //  Routes and room interest reach the router within a second or two.
    json_int_t reached = 0;
    for (int tries = 0; tries < 50 && reached == 0; tries++) {
        ck_assert_int_eq (s_call ("POST", "/v1/push/users", "{\"users\":[\"bob\"],\"data\":\"u\"}",
                                  &doc),
                          200);
        reached = json_integer_value (json_object_get (doc, "connections"));
        json_decref (doc);
        if (reached == 0)
            usleep (200000);
    }
    ck_assert_int_eq (reached, 1);
    s_expect_body (bob, "push", "\xa1u", 2);
    json_int_t lobby = 0;
    for (int tries = 0; tries < 50 && lobby == 0; tries++) {
        ck_assert_int_eq (s_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        lobby = json_integer_value (json_object_get (doc, "online"));
        json_decref (doc);
        if (lobby == 0)
            usleep (200000);
    }
    ck_assert_int_eq (lobby, 1);
    ck_assert_int_eq (s_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":\"r\"}",
                              &doc),
                      200);
    json_decref (doc);
    s_expect_body (bob, "room", "\xa1r", 2);
    //  Distinct users across gateways: alice on gw-1 and on gw-2, bob on
    //  gw-2, all in lobby: three connections, two users.
    tk_client_t *a1 = ct_login ("gw-1", "alice", "phone");
    tk_client_t *a2 = ct_login ("gw-2", "alice", "laptop");
    s_join (a1, "lobby");
    s_join (a2, "lobby");
    json_int_t users = 0;
    lobby = 0;
    for (int tries = 0; tries < 50 && (lobby != 3 || users != 2); tries++) {
        ck_assert_int_eq (s_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
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
        ck_assert_int_eq (s_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
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
        ck_assert_int_eq (s_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
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
        long st = s_call ("POST", "/v1/push/users",
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
    curl_easy_cleanup (curl);
    curl = NULL;
}
END_TEST

//  Connects a raw TCP socket to the server's API.
static int s_raw_connect (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge (fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)srv.api_port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (connect (fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

//  Reads the next HTTP answer of fd (buffered in b): returns its status,
//  *doc its JSON body.
static long s_raw_answer (int fd, s_buf_t *b, json_t **doc)
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
        s_collect (chunk, 1, (size_t)n, b);
    }
}

//  Appends to out a POST of body to path with the API key.
static void s_raw_post (char *out, size_t size, const char *path, const char *body)
{
    size_t len = strlen (out);
    snprintf (out + len, size - len,
              "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
              path, srv.apikey, strlen (body), body);
}

//  Pipelining (docs/API.md): requests written in one send() are served
//  concurrently and answered strictly in order, though the ones refused
//  at once (a missing group, bad JSON) finish before the pushes that wait
//  for the router; each push is delivered. Then a query target over the
//  4 KiB the API once read (600 users in ?users=).
START_TEST (test_api_pipeline)
{
    tk_client_t *alice = s_login ("alice", "phone");
    s_join (alice, "lobby");
    char all[16384] = "";
    s_raw_post (all, sizeof all, "/v1/push/users", "{\"users\":[\"alice\"],\"data\":\"p1\"}");
    size_t len = strlen (all);
    snprintf (all + len, sizeof all - len,
              "GET /v1/groups/nothing HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n", srv.apikey);
    s_raw_post (all, sizeof all, "/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":\"p2\"}");
    s_raw_post (all, sizeof all, "/v1/push/users", "{\"users\":[\"alice\"");
    s_raw_post (all, sizeof all, "/v1/push/users",
                "{\"users\":[\"alice\",\"bob\"],\"data\":\"p3\"}");
    int fd = s_raw_connect ();
    ck_assert_int_eq (send (fd, all, strlen (all), 0), (ssize_t)strlen (all));
    s_buf_t b = {NULL, 0};
    json_t *doc;
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    ck_assert_int_eq (json_integer_value (json_object_get (doc, "connections")), 1);
    ck_assert_ptr_nonnull (json_object_get (doc, "users"));
    json_decref (doc);
    s_group_refused (s_raw_answer (fd, &b, &doc), &doc, 404, "no_group", 4041);
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    json_t *rooms = json_object_get (doc, "rooms");
    ck_assert_int_eq (json_integer_value (json_object_get (rooms, "lobby")), 1);
    json_decref (doc);
    s_refused (s_raw_answer (fd, &b, &doc), &doc, 400, "bad_json");
    ck_assert_int_eq (s_raw_answer (fd, &b, &doc), 200);
    json_t *users = json_object_get (doc, "users");
    ck_assert_int_eq (json_integer_value (json_object_get (users, "alice")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (users, "bob")), 0);
    json_decref (doc);
    ck_assert_uint_eq (b.len, 0);
    //  Each push delivered (the pushes to users in order: one router).
    s_expect_body (alice, "push", "\xa2p1", 3);
    s_expect_body (alice, "push", "\xa2p3", 3);
    s_nothing (alice, "push");
    //  A target of 600 users (some 6 KiB): read whole, every user answered.
    char target[8192];
    len = (size_t)snprintf (target, sizeof target, "/v1/online?users=alice");
    for (int i = 0; i < 599; i++)
        len += (size_t)snprintf (target + len, sizeof target - len, ",user%04d", i);
    ck_assert_uint_gt (len, 4096);
    snprintf (all, sizeof all, "GET %s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n", target,
              srv.apikey);
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

static void s_cluster_setup (void)
{
    curl = curl_easy_init ();
    ck_assert_ptr_nonnull (curl);
    ct_setup ();
}

int main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create ("api");
    TCase *tc = tcase_create ("api");
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_set_timeout (tc, 120);
    tcase_add_test (tc, test_api);
    tcase_add_test (tc, test_api_groups);
    tcase_add_test (tc, test_api_persist);
    tcase_add_test (tc, test_api_persist_sdk);
    tcase_add_test (tc, test_api_pipeline);
    suite_add_tcase (s, tc);
    ct_add_with (s, test_api_cluster, s_cluster_setup);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    curl_global_cleanup ();
    return failed ? 1 : 0;
}
