/*  test_push.c: black-box test of offline push: a real zim-server, the
    real zim-push bridge, and a small HTTP receiver in this process (a
    thread on a loopback port). Records are made for a recipient in the
    background, coalesced, removed on read; the bridge retries while the
    receiver is down and delivers once it is up, respects mute unless
    mentioned, computes the badge, drops what the receiver refuses, and
    after a kill -9 of the bridge delivers again what it had not
    acknowledged (at least once). zimctl pushq and zimctl mute too.
*/
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "tests/zim_testkit.h"

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static tk_server_t srv;

//  -------------------------------------------------------------------------
//  The HTTP receiver: one connection at a time (the bridge keeps one alive).

typedef struct {
    int port;             //  where it listens
    int fd;               //  the listening socket, -1 before start
    pthread_t thread;     //  serves it
    pthread_mutex_t lock; //  guards what follows
    volatile bool stop;   //  the thread leaves
    char *bodies[64];     //  the documents received, in order
    int nbodies;          //  how many
    int hang;             //  answer none of the next `hang` requests (keep them open)
    int refuse;           //  answer 400 to the next `refuse` requests
} s_receiver_t;

static s_receiver_t rcv;

//  Reads one request from fd into the bodies; returns 1 for one, 0 at EOF.
static int s_request (int fd, char **body)
{
    char buf[8192] = "";
    size_t len = 0;
    char *end = NULL;
    while (!(end = strstr (buf, "\r\n\r\n"))) {
        ssize_t n = read (fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0 || len + (size_t)n >= sizeof buf - 1)
            return 0;
        len += (size_t)n;
        buf[len] = 0;
    }
    const char *cl = strcasestr (buf, "content-length:");
    size_t want = cl ? (size_t)atol (cl + 15) : 0, head = (size_t)(end + 4 - buf);
    while (len < head + want) {
        ssize_t n = read (fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return 0;
        len += (size_t)n;
    }
    *body = strndup (buf + head, want);
    return 1;
}

static void *s_serve (void *arg)
{
    (void)arg;
    while (!rcv.stop) {
        struct pollfd p = {rcv.fd, POLLIN, 0};
        if (poll (&p, 1, 50) <= 0)
            continue;
        int fd = accept (rcv.fd, NULL, NULL);
        if (fd < 0)
            continue;
        char *body;
        while (!rcv.stop && s_request (fd, &body)) {
            pthread_mutex_lock (&rcv.lock);
            if (rcv.nbodies < 64)
                rcv.bodies[rcv.nbodies++] = body;
            else
                free (body);
            bool hang = rcv.hang > 0, refuse = !hang && rcv.refuse > 0;
            rcv.hang -= hang;
            rcv.refuse -= refuse;
            pthread_mutex_unlock (&rcv.lock);
            if (hang) {
                //  No answer: wait for the bridge to go away.
                char junk[256];
                while (read (fd, junk, sizeof junk) > 0)
                    ;
                break;
            }
            const char *answer = refuse ? "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                                        : "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            if (write (fd, answer, strlen (answer)) < 0)
                break;
        }
        close (fd);
    }
    return NULL;
}

//  Starts listening on rcv.port.
static void s_receiver_start (void)
{
    rcv.fd = socket (AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt (rcv.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)rcv.port)};
    a.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    ck_assert_int_eq (bind (rcv.fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq (listen (rcv.fd, 8), 0);
    rcv.stop = false;
    ck_assert_int_eq (pthread_create (&rcv.thread, NULL, s_serve, NULL), 0);
}

static void s_receiver_stop (void)
{
    if (rcv.fd < 0)
        return;
    rcv.stop = true;
    pthread_join (rcv.thread, NULL);
    close (rcv.fd);
    rcv.fd = -1;
}

//  Documents received so far.
static int s_received (void)
{
    pthread_mutex_lock (&rcv.lock);
    int n = rcv.nbodies;
    pthread_mutex_unlock (&rcv.lock);
    return n;
}

//  Waits until the receiver has n documents.
static void s_wait_received (int n)
{
    for (int i = 0; i < 500 && s_received () < n; i++)
        usleep (20000);
    ck_assert_int_eq (s_received (), n);
}

//  Document i, parsed (caller owns).
static json_t *s_doc (int i)
{
    pthread_mutex_lock (&rcv.lock);
    json_t *o = json_loads (rcv.bodies[i], 0, NULL);
    ck_assert_msg (o != NULL, "not JSON: %s", rcv.bodies[i]);
    pthread_mutex_unlock (&rcv.lock);
    return o;
}

//  -------------------------------------------------------------------------
//  The server, the bridge, the admin calls

static void s_setup (void)
{
    ck_assert_int_eq (tk_server_start (&srv, NULL, NULL), 0);
    memset (&rcv, 0, sizeof rcv);
    pthread_mutex_init (&rcv.lock, NULL);
    rcv.fd = -1;
    rcv.port = tk_free_port ();
    ck_assert_int_gt (rcv.port, 0);
}

static void s_teardown (void)
{
    s_receiver_stop ();
    for (int i = 0; i < rcv.nbodies; i++)
        free (rcv.bodies[i]);
    tk_server_cleanup (&srv);
}

//  Starts zim-push against the server and the receiver's port.
static pid_t s_bridge (int run)
{
    char url[64], log[300];
    snprintf (url, sizeof url, "http://127.0.0.1:%d/push", rcv.port);
    snprintf (log, sizeof log, "%s/push-%d.log", srv.data, run);
    const char *bin = getenv ("ZIM_PUSH") ? getenv ("ZIM_PUSH") : "./zim-push";
    pid_t pid = fork ();
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2 (fd, 1);
        dup2 (fd, 2);
        execl (bin, bin, "-e", srv.admin, "-k", srv.key, "--webhook", url, "--attempts", "50",
               "--backoff", "20", "--backoff-max", "100", "--poll", "20", "--timeout", "10000",
               "-v", (char *)NULL);
        _exit (127);
    }
    return pid;
}

static void s_bridge_stop (pid_t pid, int sig)
{
    kill (pid, sig);
    int status;
    waitpid (pid, &status, 0);
}

//  The store's pushq answer (caller owns).
static json_t *s_pushq (void)
{
    char *text = NULL;
    ck_assert_int_eq (zim_admin_call (srv.admin, srv.key, 5000, "pushq", NULL, &text), 0);
    json_t *o = json_loads (text, 0, NULL);
    free (text);
    return o;
}

//  Waits until the queue holds depth records; returns the pushq answer.
static json_t *s_wait_depth (int64_t depth)
{
    json_t *o = NULL;
    for (int i = 0; i < 500; i++) {
        json_decref (o);
        o = s_pushq ();
        if (json_integer_value (json_object_get (o, "depth")) == depth)
            return o;
        usleep (20000);
    }
    ck_assert_int_eq (json_integer_value (json_object_get (o, "depth")), depth);
    return o;
}

//  Runs zimctl with args against the server; its output into out.
static int s_zimctl (const char *args, char *out, size_t size)
{
    char cmd[1024];
    const char *bin = getenv ("ZIMCTL") ? getenv ("ZIMCTL") : "./zimctl";
    snprintf (cmd, sizeof cmd, "%s -e %s -k %s %s 2>&1", bin, srv.admin, srv.key, args);
    FILE *p = popen (cmd, "r");
    size_t n = fread (out, 1, size - 1, p);
    out[n] = 0;
    return pclose (p);
}

//  Sends one frame: a map of n string or uint pairs (values starting with
//  '#' are uints; "true"/"false" booleans).
static void s_frame (tk_client_t *c, int n, ...)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, (uint32_t)n);
    va_list args;
    va_start (args, n);
    for (int i = 0; i < n; i++) {
        zim_wr_cstr (&wr, va_arg (args, const char *));
        const char *v = va_arg (args, const char *);
        if (v[0] == '#')
            zim_wr_uint (&wr, strtoull (v + 1, NULL, 10));
        else if (strcmp (v, "true") == 0 || strcmp (v, "false") == 0)
            zim_wr_bool (&wr, v[0] == 't');
        else
            zim_wr_cstr (&wr, v);
    }
    va_end (args);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

//  Sends a message with a string body, or a map body {text, mentions:[who]}.
static uint64_t s_send (tk_client_t *c, const char *to, const char *cid, const char *text,
                        const char *mention)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, to);
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, cid);
    zim_wr_cstr (&wr, "body");
    if (mention) {
        zim_wr_map (&wr, 2);
        zim_wr_cstr (&wr, "text");
        zim_wr_cstr (&wr, text);
        zim_wr_cstr (&wr, "mentions");
        zim_wr_array (&wr, 1);
        zim_wr_cstr (&wr, mention);
    } else
        zim_wr_cstr (&wr, text);
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
    tk_frame_t f;
    ck_assert_int_eq (tk_expect (c, "ack", 5000, &f), 0);
    return f.seq;
}

START_TEST (test_push_bridge)
{
    tk_frame_t f;
    //  bob mutes dave, goes to the background, and stays connected.
    tk_client_t *bob = tk_login_ok (&srv, "bob", "phone");
    s_frame (bob, 2, "op", "mute", "conv", "p:bob:dave");
    s_frame (bob, 2, "op", "state", "background", "true");
    s_frame (bob, 1, "op", "ping");
    ck_assert_int_eq (tk_expect (bob, "pong", 5000, &f), 0);
    char out[2048];
    ck_assert_int_eq (s_zimctl ("mute --app demo --uid bob --conv p:bob:erin", out, sizeof out), 0);
    ck_assert (strstr (out, "\"moved\":true"));

    //  alice 3 (one record, count 3; bob still gets them live), dave 1
    //  (muted), erin 1 (muted, but mentions bob), frank 1 (bob reads it:
    //  no record).
    tk_client_t *alice = tk_login_ok (&srv, "alice", "phone"), *dave = tk_login_ok (&srv, "dave", "phone");
    tk_client_t *erin = tk_login_ok (&srv, "erin", "phone"), *frank = tk_login_ok (&srv, "frank", "phone");
    s_send (alice, "bob", "a1", "hello", NULL);
    s_send (alice, "bob", "a2", "are you there", NULL);
    s_send (alice, "bob", "a3", "h\xc3\xa9llo again", NULL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0);
    s_send (dave, "bob", "d1", "psst", NULL);
    s_send (erin, "bob", "e1", "@bob look", "bob");
    s_send (frank, "bob", "f1", "read me", NULL);
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0); //  dave's
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0); //  erin's
    ck_assert_int_eq (tk_expect (bob, "msg", 5000, &f), 0); //  frank's
    ck_assert_str_eq (f.from, "frank");
    json_decref (s_wait_depth (4));
    char seq[24];
    snprintf (seq, sizeof seq, "#%llu", (unsigned long long)f.seq);
    s_frame (bob, 3, "op", "read", "conv", "p:bob:frank", "seq", seq);
    ck_assert_int_eq (tk_expect (bob, "receipt", 5000, &f), 0);
    json_t *o = s_wait_depth (3);
    ck_assert_int_eq (json_integer_value (json_object_get (o, "push_read")), 1);
    ck_assert_int_eq (json_integer_value (json_object_get (o, "push_coalesced")), 2);
    json_decref (o);
    ck_assert_int_eq (s_zimctl ("pushq", out, sizeof out), 0);
    ck_assert_msg (strstr (out, "push queue: 3 records") &&
                       strstr (out, "bob in p:alice:bob from alice, seq 3, 3 message(s)"),
                   "%s", out);

    //  The bridge starts while the receiver is down: the muted record is
    //  acknowledged without a POST, the others are retried...
    pid_t bridge = s_bridge (1);
    json_decref (s_wait_depth (2));
    char log[300], text[65536];
    snprintf (log, sizeof log, "%s/push-1.log", srv.data);
    bool retried = false;
    for (int i = 0; i < 500 && !retried; i++) {
        FILE *fp = fopen (log, "r");
        size_t n = fp ? fread (text, 1, sizeof text - 1, fp) : 0;
        text[n] = 0;
        if (fp)
            fclose (fp);
        retried = strstr (text, "attempt 2: HTTP 0") != NULL;
        usleep (20000);
    }
    ck_assert_msg (retried, "no retry in the bridge's log:\n%s", text);
    //  ... and delivered once it is up: alice's and erin's, once each.
    s_receiver_start ();
    o = s_wait_depth (0);
    ck_assert_int_eq (json_integer_value (json_object_get (o, "push_delivered")), 2);
    ck_assert_int_eq (json_integer_value (json_object_get (o, "push_muted")), 1);
    json_decref (o);
    s_wait_received (2);
    usleep (200000);
    ck_assert_int_eq (s_received (), 2);
    for (int i = 0; i < 2; i++) {
        json_t *doc = s_doc (i);
        const char *conv = json_string_value (json_object_get (doc, "conv"));
        ck_assert_str_eq (json_string_value (json_object_get (doc, "user")), "bob");
        ck_assert_int_eq (json_integer_value (json_object_get (doc, "badge")), 5);
        if (strcmp (conv, "p:alice:bob") == 0) {
            ck_assert_int_eq (json_integer_value (json_object_get (doc, "count")), 3);
            ck_assert_str_eq (json_string_value (json_object_get (doc, "preview")),
                              "h\xc3\xa9llo again");
            ck_assert (json_is_false (json_object_get (doc, "mention")));
            ck_assert_str_eq (json_string_value (json_object_get (doc, "from")), "alice");
        } else {
            ck_assert_str_eq (conv, "p:bob:erin");
            ck_assert (json_is_true (json_object_get (doc, "mention")));
            ck_assert_str_eq (json_string_value (json_object_get (doc, "preview")), "@bob look");
        }
        json_decref (doc);
    }

    //  A refused document (400) is dropped and counted, not retried.
    pthread_mutex_lock (&rcv.lock);
    rcv.refuse = 1;
    pthread_mutex_unlock (&rcv.lock);
    s_send (alice, "bob", "a4", "refused", NULL);
    o = s_wait_depth (0);
    for (int i = 0; i < 500 && json_integer_value (json_object_get (o, "push_dropped")) != 1; i++) {
        json_decref (o);
        usleep (20000);
        o = s_pushq ();
    }
    ck_assert_int_eq (json_integer_value (json_object_get (o, "push_dropped")), 1);
    json_decref (o);
    s_wait_received (3);

    //  At least once: the receiver takes the next POST and never answers;
    //  the bridge dies (kill -9) before its ack; the record is still
    //  queued, and the next bridge delivers it.
    pthread_mutex_lock (&rcv.lock);
    rcv.hang = 1;
    pthread_mutex_unlock (&rcv.lock);
    s_send (alice, "bob", "a5", "once more", NULL);
    s_wait_received (4);
    s_bridge_stop (bridge, SIGKILL);
    json_decref (s_wait_depth (1));
    bridge = s_bridge (2);
    json_decref (s_wait_depth (0));
    s_wait_received (5);
    json_t *first = s_doc (3), *again = s_doc (4);
    ck_assert (json_equal (first, again));
    ck_assert_int_eq (json_integer_value (json_object_get (again, "count")), 1);
    json_decref (first);
    json_decref (again);
    s_bridge_stop (bridge, SIGTERM);

    tk_close (&alice);
    tk_close (&bob);
    tk_close (&dave);
    tk_close (&erin);
    tk_close (&frank);
}
END_TEST

int main (void)
{
    signal (SIGPIPE, SIG_IGN);
    Suite *s = suite_create ("push");
    TCase *tc = tcase_create ("push");
    tcase_set_timeout (tc, 60);
    tcase_add_checked_fixture (tc, s_setup, s_teardown);
    tcase_add_test (tc, test_push_bridge);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
