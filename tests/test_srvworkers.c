/*  test_srvworkers.c: zim-server --workers 2. Two gateway worker processes
    share the client port, each a member gw-1.wK of the embedded cluster,
    whose store, router and brokers run in the supervisor over ipc:// in a
    private directory. Clients land on both workers (each worker's
    /metrics says how many it holds); 1:1 messages between users on
    different workers are acked, delivered and synced; a room with members
    on both workers gets a push from the API. The backbone directory is
    mode 0700 and gone after SIGTERM, and the process tree exits; a killed
    worker takes the node down with a log line that says so.
*/
#include "tests/zim_apikit.h"

#include <check.h>
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_USERS 16 //  users connected, one device each

//  The log's text (up to size - 1 bytes), 0-terminated.
static void s_log (char *buf, size_t size)
{
    buf[0] = 0;
    FILE *f = fopen (ak_srv.log, "r");
    if (f) {
        size_t n = fread (buf, 1, size - 1, f);
        buf[n] = 0;
        fclose (f);
    }
}

//  Waits for both workers' ready lines; their metrics ports into mport.
static void s_workers_ready (int mport[2])
{
    char buf[65536];
    mport[0] = mport[1] = 0;
    for (int waited = 0; waited < 15000 && !(mport[0] && mport[1]); waited += 50) {
        s_log (buf, sizeof buf);
        for (int k = 0; k < 2; k++) {
            char needle[64];
            snprintf (needle, sizeof needle, "ready: name=gw-1.w%d ", k);
            char *line = strstr (buf, needle);
            char *m = line ? strstr (line, " metrics=http://127.0.0.1:") : NULL;
            char *nl = line ? strchr (line, '\n') : NULL;
            if (m && nl && m < nl)
                mport[k] = atoi (m + 26);
        }
        if (!(mport[0] && mport[1]))
            usleep (50000);
    }
    ck_assert_msg (mport[0] > 0 && mport[1] > 0, "workers not ready:\n%s", buf);
}

//  The backbone directory named in the supervisor's ready line.
static void s_backbone (char *dir, size_t size)
{
    char buf[65536];
    s_log (buf, sizeof buf);
    char *b = strstr (buf, " backbone=ipc://");
    ck_assert_ptr_nonnull (b);
    size_t len = strcspn (b + 16, " \n");
    ck_assert (len > 1 && len < size);
    snprintf (dir, size, "%.*s", (int)len - 1, b + 16); //  without the last '/'
}

static long s_get (const char *url, char **body);

//  The worker's gauge zim_gateway_authed, from its /metrics.
static int s_authed (int mport)
{
    char url[64], *body = NULL;
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", mport);
    ck_assert_int_eq (s_get (url, &body), 200);
    char *at = body ? strstr (body, "\nzim_gateway_authed{") : NULL;
    ck_assert_msg (at != NULL, "no zim_gateway_authed at %s", url);
    at = strchr (at, '}');
    int n = at ? atoi (at + 2) : -1;
    free (body);
    return n;
}

static char s_www[64]; //  the --www directory, "" if none

//  GET url: its status, the body into *body (caller frees).
static long s_get (const char *url, char **body)
{
    CURL *curl = curl_easy_init ();
    ak_buf_t b = {NULL, 0};
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, ak_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform (curl);
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (curl);
    ck_assert_msg (rc == CURLE_OK, "GET %s: %s", url, curl_easy_strerror (rc));
    *body = b.data;
    return status;
}

//  Starts zim-server --workers 2 as ak_srv, with its API; waits for the
//  workers. Their metrics ports into mport, their pids into kids.
static void s_start (int mport[2], pid_t kids[2])
{
    //  Metrics: the supervisor on PORT, worker K on PORT+1+K.
    int port = tk_free_ports (3);
    ck_assert_int_gt (port, 0);
    char metrics[32];
    snprintf (metrics, sizeof metrics, "127.0.0.1:%d", port);
    //  Files for --www: every worker serves them on the client port.
    snprintf (s_www, sizeof s_www, "./tk-www-XXXXXX");
    ck_assert_ptr_nonnull (mkdtemp (s_www));
    char path[300];
    snprintf (path, sizeof path, "%s/index.html", s_www);
    FILE *f = fopen (path, "w");
    ck_assert_ptr_nonnull (f);
    fputs ("hello from www\n", f);
    fclose (f);
    const char *extra[] = {"--workers", "2",     "--interface", "127.0.0.1", "--metrics",
                           metrics,     "--www", s_www,         NULL};
    ck_assert_int_eq (tk_server_start (&ak_srv, NULL, extra), 0);
    ck_assert_int_gt (ak_srv.api_port, 0);
    ak_curl = curl_easy_init ();
    ck_assert_ptr_nonnull (ak_curl);
    s_workers_ready (mport);
    ck_assert_int_eq (mport[0], port + 1);
    ck_assert_int_eq (mport[1], port + 2);
    ck_assert_int_eq (tk_children (ak_srv.pid, kids, 2), 2);
}

//  Sends text from a to uid until it is acked (a send may meet 5030 while
//  the worker's routes settle); returns the ack.
static void s_send_acked (tk_client_t *a, const char *uid, const char *text, tk_frame_t *f)
{
    bool acked = false;
    for (int tries = 0; tries < 50 && !acked; tries++) {
        char cid[32];
        snprintf (cid, sizeof cid, "%s-%d", text, tries);
        ck_assert_int_eq (tk_send_text (a, uid, cid, text), 0);
        do
            ck_assert_int_eq (tk_recv (a, 5000, f), 0);
        while (strcmp (f->op, "ack") != 0 && strcmp (f->op, "error") != 0);
        if (strcmp (f->op, "error") == 0)
            fprintf (stderr, "send %s: error %d %s\n", text, (int)f->code, f->text);
        acked = strcmp (f->op, "ack") == 0 && f->id > 0 && f->seq > 0;
        if (!acked)
            usleep (100000);
    }
    ck_assert_msg (acked, "no ack for %s", text);
}

//  Waits until pid is gone (a reaped child of another process), 5 s.
static bool s_gone (pid_t pid)
{
    for (int i = 0; i < 250; i++) {
        if (kill (pid, 0) == -1 && errno == ESRCH)
            return true;
        usleep (20000);
    }
    return false;
}

START_TEST (test_two_workers)
{
    int mport[2];
    pid_t kids[2];
    s_start (mport, kids);
    //  The backbone: a private directory of this user.
    char dir[256];
    s_backbone (dir, sizeof dir);
    struct stat st;
    ck_assert_int_eq (stat (dir, &st), 0);
    ck_assert (S_ISDIR (st.st_mode));
    ck_assert_int_eq (st.st_mode & 07777, 0700);
    ck_assert_int_eq (st.st_uid, getuid ());

    //  Users connect one by one; each worker's /metrics says where.
    tk_client_t *c[S_USERS];
    int on[S_USERS], held[2] = {s_authed (mport[0]), s_authed (mport[1])};
    ck_assert (held[0] == 0 && held[1] == 0);
    for (int i = 0; i < S_USERS; i++) {
        char uid[16];
        snprintf (uid, sizeof uid, "u%d", i);
        c[i] = tk_login_ok (&ak_srv, uid, "phone");
        int now[2] = {s_authed (mport[0]), s_authed (mport[1])};
        ck_assert_int_eq (now[0] + now[1], held[0] + held[1] + 1);
        on[i] = now[1] > held[1];
        held[0] = now[0];
        held[1] = now[1];
    }
    ck_assert_msg (held[0] > 0 && held[1] > 0, "sessions per worker: %d and %d", held[0], held[1]);
    int a = -1, b = -1; //  a user on worker 0, one on worker 1
    for (int i = 0; i < S_USERS; i++) {
        if (on[i] == 0 && a < 0)
            a = i;
        if (on[i] == 1 && b < 0)
            b = i;
    }
    char ua[16], ub[16];
    snprintf (ua, sizeof ua, "u%d", a);
    snprintf (ub, sizeof ub, "u%d", b);

    //  The demo page's files (--www) on the client port, from either worker.
    for (int i = 0; i < 6; i++) {
        char url[96], *body = NULL;
        snprintf (url, sizeof url, "http://127.0.0.1:%d/index.html", ak_srv.ws_port);
        ck_assert_int_eq (s_get (url, &body), 200);
        ck_assert_str_eq (body, "hello from www\n");
        free (body);
    }

    //  Each worker's own /metrics on the client port too.
    for (int i = 0; i < 4; i++) {
        char url[96], *body = NULL;
        snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", ak_srv.ws_port);
        ck_assert_int_eq (s_get (url, &body), 200);
        ck_assert_ptr_nonnull (strstr (body, "zim_gateway_authed{node=\"gw-1.w"));
        free (body);
    }

    //  1:1 across the workers, both ways: a durable ack, then delivery.
    tk_frame_t f;
    s_send_acked (c[a], ub, "to-w1", &f);
    uint64_t seq_b = f.seq;
    ck_assert_int_eq (tk_expect (c[b], "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "to-w1");
    ck_assert_str_eq (f.from, ua);
    s_send_acked (c[b], ua, "to-w0", &f);
    ck_assert_int_eq (tk_expect (c[a], "msg", 5000, &f), 0);
    ck_assert_str_eq (f.body, "to-w0");
    ck_assert_str_eq (f.from, ub);
    //  Sync from b's inbox on another device (on whichever worker): the
    //  message is there, committed by the supervisor's store.
    tk_client_t *b2 = tk_login_ok (&ak_srv, ub, "laptop");
    ck_assert_int_eq (tk_sync (b2, 0, 100, 9), 0);
    ck_assert_int_eq (tk_expect (b2, "page", 5000, &f), 0);
    ck_assert_uint_eq (f.rid, 9);
    bool found = false;
    for (uint32_t i = 0; i < f.nmsgs && i < 64; i++)
        found |= f.seqs[i] == seq_b && strcmp (f.bodies[i], "to-w1") == 0;
    ck_assert_msg (found, "to-w1 (seq %" PRIu64 ") not in %s's sync", seq_b, ub);
    tk_close (&b2);

    //  A room with members on both workers: the API's push reaches both.
    ak_join (c[a], "lobby");
    ak_join (c[b], "lobby");
    //  A worker tells the router over ipc:// and the client gets `joined`
    //  without waiting for it (docs/ARCHITECTURE.md, Rooms): a push sent at
    //  once may reach the router first. Wait until it counts both.
    json_t *doc = NULL;
    json_int_t online = 0;
    for (int tries = 0; tries < 100 && online != 2; tries++) {
        if (tries)
            usleep (100000);
        ck_assert_int_eq (ak_call ("GET", "/v1/rooms/lobby", NULL, &doc), 200);
        online = json_integer_value (json_object_get (doc, "online"));
        json_decref (doc);
    }
    ck_assert_int_eq (online, 2);
    ck_assert_int_eq (
        ak_call ("POST", "/v1/push/rooms", "{\"rooms\":[\"lobby\"],\"data\":\"r\"}", &doc), 200);
    json_decref (doc);
    ak_expect_body (c[a], "room", "\xa1r", 2);
    ak_expect_body (c[b], "room", "\xa1r", 2);
    for (int i = 0; i < S_USERS; i++)
        if (i != a && i != b)
            ak_nothing (c[i], "room");

    //  SIGTERM to the supervisor: every process exits, status 0, the
    //  clients are closed (1001) and the backbone directory is gone.
    pid_t sup = ak_srv.pid;
    kill (sup, SIGTERM);
    int status = -1;
    ck_assert_int_eq (waitpid (sup, &status, 0), sup);
    ak_srv.pid = 0;
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    ck_assert (s_gone (kids[0]) && s_gone (kids[1]));
    for (int i = 0; i < S_USERS; i++) {
        while (!tk_closed (c[i]) && tk_recv (c[i], 2000, &f) == 0)
            ;
        ck_assert_int_eq (tk_close_status (c[i]), 1001);
        tk_close (&c[i]);
    }
    ck_assert_int_eq (stat (dir, &st), -1);
    ck_assert_int_eq (errno, ENOENT);
}
END_TEST

START_TEST (test_worker_dies)
{
    int mport[2];
    pid_t kids[2];
    s_start (mport, kids);
    char dir[256];
    s_backbone (dir, sizeof dir);
    //  A worker killed: the node stops as a whole, status 1, and says why.
    kill (kids[1], SIGKILL);
    int status = -1;
    pid_t sup = ak_srv.pid;
    ck_assert_int_eq (waitpid (sup, &status, 0), sup);
    ak_srv.pid = 0;
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    ck_assert (s_gone (kids[0]));
    char buf[65536], line[128];
    s_log (buf, sizeof buf);
    snprintf (line, sizeof line, ", pid %d) was killed by signal 9", (int)kids[1]);
    ck_assert_msg (strstr (buf, line), "no '%s' in the log:\n%s", line, buf);
    //  The whole line: "zim-server: worker K (gw-1.wK, pid P) was killed
    //  by signal 9 (Killed): stopping the whole node; ..."
    char *at = strstr (buf, line);
    while (at > buf && at[-1] != '\n')
        at--;
    ck_assert_int_eq (strncmp (at, "zim-server: worker ", 19), 0);
    ck_assert_ptr_nonnull (strstr (at, "(gw-1.w"));
    ck_assert_ptr_nonnull (strstr (at, "stopping the whole node"));
    struct stat st;
    ck_assert_int_eq (stat (dir, &st), -1);
}
END_TEST

//  Check fixture: the server's log free of sanitizer reports, its data
//  dir removed.
static void s_teardown (void)
{
    if (ak_curl)
        curl_easy_cleanup (ak_curl);
    ak_curl = NULL;
    tk_server_stop (&ak_srv, SIGKILL);
    int found = tk_log_reports (ak_srv.log);
    tk_server_cleanup (&ak_srv);
    if (*s_www) {
        char cmd[128];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", s_www);
        ck_assert_int_eq (system (cmd), 0);
        s_www[0] = 0;
    }
    ck_assert_int_eq (found, 0);
}

int main (void)
{
    Suite *s = suite_create ("srvworkers");
    TCase *tc = tcase_create ("srvworkers");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, NULL, s_teardown);
    tcase_add_test (tc, test_two_workers);
    tcase_add_test (tc, test_worker_dies);
    suite_add_tcase (s, tc);
    return tk_run (s);
}
