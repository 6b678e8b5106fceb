/*  test_workers.c: zim-gateway --workers 2 (node gw-9) in a real cluster
    (1 router, 1 store, 1 broker, gateway gw-1): both workers take connections on the one client
    port, each is its own cluster member (a message reaches a user's
    devices on both), and SIGTERM to the supervisor stops both cleanly,
    every connection closed with 1001. The small version of the 200k
    benchmark (docs/BENCHMARKS.md). The workers share the raw TCP port
    (--tcp) and the WSS port (--tls-port) too: TCP devices on both get the
    message and a FIN at the end; TLS handshakes (openssl s_client,
    verifying the self-signed certificate) succeed on whichever worker.
*/
#include "msg/zim_msg.h"
#include "tests/zim_rawws.h"
#include "tests/zim_testkit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <check.h>
#include <czmq.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_DEVICES 40 //  devices per user: bob, carol
#define S_USERS 2
#define S_TCP 20 //  raw TCP devices of dave

//  A raw TCP client authenticated as uid/device by an auth frame, or -1.
static int s_tcp_login (int port, const char *token, const char *device)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (fd < 0 || connect (fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, token);
    zim_wr_cstr (&wr, "device");
    zim_wr_cstr (&wr, device);
    uint8_t len[4] = {0, 0, (uint8_t)(wr.size >> 8), (uint8_t)wr.size};
    bool sent = send (fd, len, 4, 0) == 4 && send (fd, wr.data, wr.size, 0) == (ssize_t)wr.size;
    zim_wr_free (&wr);
    if (!sent) {
        close (fd);
        return -1;
    }
    return fd;
}

//  Whether the next packet on fd (within 5 s) holds op; false on EOF.
static bool s_tcp_expect (int fd, const char *op)
{
    uint8_t buf[4096];
    size_t need = 4, got = 0;
    while (got < need) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll (&p, 1, 5000) <= 0)
            return false;
        ssize_t n = recv (fd, buf + got, need - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
        if (got == 4) {
            need = 4 + ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]);
            if (need > sizeof buf)
                return false;
        }
    }
    char text[64];
    snprintf (text, sizeof text, "\xa2op%c%s", (char)(0xa0 | strlen (op)), op);
    return memmem (buf + 4, need - 4, text, strlen (text)) != NULL;
}

//  Whether fd ends with a FIN (EOF) within 5 s, after any frames.
static bool s_tcp_eof (int fd)
{
    uint8_t buf[4096];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll (&p, 1, 5000) <= 0)
            return false;
        ssize_t n = recv (fd, buf, sizeof buf, 0);
        if (n == 0)
            return true;
        if (n < 0)
            return false;
    }
}

static tk_cluster_t cl;

//  Sockets open in process pid.
static int s_sockets (pid_t pid)
{
    char path[64], link[64];
    snprintf (path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir (path);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir (d))) {
        char fd[400];
        snprintf (fd, sizeof fd, "%.63s/%.255s", path, e->d_name);
        ssize_t len = readlink (fd, link, sizeof link - 1);
        if (len > 0) {
            link[len] = 0;
            n += strncmp (link, "socket:", 7) == 0;
        }
    }
    if (d)
        closedir (d);
    return n;
}

//  Lines of file holding text.
static int s_count (const char *file, const char *text, int *port)
{
    FILE *f = fopen (file, "r");
    char line[1024];
    int n = 0;
    while (f && fgets (line, sizeof line, f)) {
        char *at = strstr (line, text);
        if (at) {
            n++;
            char *ws = strstr (line, "ws=ws://127.0.0.1:");
            if (ws && port)
                *port = atoi (ws + 18);
        }
    }
    if (f)
        fclose (f);
    return n;
}

START_TEST (test_two_workers)
{
    ck_assert_int_eq (tk_cluster_start (&cl, 1, 1, 1), 0); //  gw-1 besides
    const char *bin = getenv ("ZIM_BIN");
    char program[512], admin[64], log[300];
    snprintf (program, sizeof program, "%s/zim-gateway", bin && *bin ? bin : ".");
    snprintf (admin, sizeof admin, "tcp://127.0.0.1:%d", tk_free_port ());
    snprintf (log, sizeof log, "%s/gw-workers.log", cl.dir);
    char cert[400], key[400], cmd[1400], tcp_port[16], tls_port[16];
    snprintf (cert, sizeof cert, "%s/cert.pem", cl.dir);
    snprintf (key, sizeof key, "%s/key.pem", cl.dir);
    snprintf (cmd, sizeof cmd,
              "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
              "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
              key, cert);
    ck_assert_int_eq (system (cmd), 0);
    snprintf (tcp_port, sizeof tcp_port, "%d", tk_free_port ());
    snprintf (tls_port, sizeof tls_port, "%d", tk_free_port ());
    ck_assert_str_ne (tcp_port, tls_port);
    //  Metrics: worker K serves on PORT+K, so both must be free.
    int mport = tk_free_ports (2);
    ck_assert_int_gt (mport, 0);
    char metrics[32];
    snprintf (metrics, sizeof metrics, "127.0.0.1:%d", mport);
    pid_t sup = fork ();
    ck_assert_int_ge (sup, 0);
    if (sup == 0) {
        FILE *out = freopen (log, "w", stdout);
        (void)out;
        dup2 (STDOUT_FILENO, STDERR_FILENO);
        const char *argv[] = {program, "--workers", "2", "--name", "gw-9", "--admin", admin,
                              "--data", cl.dir, "--router", cl.router, "--port", "0",
                              "--interface", "127.0.0.1", "--tcp", tcp_port, "--tls-cert", cert,
                              "--tls-key", key, "--tls-port", tls_port, "--metrics", metrics,
                              cl.curve ? "--curve" : NULL, NULL};
        execv (program, (char **)argv);
        _exit (127);
    }
    int port = 0;
    for (int i = 0; i < 200 && s_count (log, "ready:", &port) < 2; i++)
        zclock_sleep (50);
    ck_assert_int_eq (s_count (log, "ready:", &port), 2);
    ck_assert_int_gt (port, 0);
    pid_t kids[4];
    ck_assert_int_eq (tk_children (sup, kids, 4), 2);
    int base[2] = {s_sockets (kids[0]), s_sockets (kids[1])};

    //  The connections: alice, and S_DEVICES devices of bob and carol.
    tk_server_t srv;
    memset (&srv, 0, sizeof srv);
    srv.ws_port = port;
    snprintf (srv.admin, sizeof srv.admin, "%s", admin);
    snprintf (srv.key, sizeof srv.key, "%s", cl.key);
    srv.curve = cl.keys;
    tk_client_t *dev[S_USERS][S_DEVICES];
    tk_frame_t f;
    for (int u = 0; u < S_USERS; u++)
        for (int i = 0; i < S_DEVICES; i++) {
            char device[16];
            snprintf (device, sizeof device, "d%d", i);
            dev[u][i] = tk_login (&srv, u ? "carol" : "bob", device);
            ck_assert_ptr_nonnull (dev[u][i]);
            ck_assert_int_eq (tk_expect (dev[u][i], "auth_ok", 5000, &f), 0);
        }
    tk_client_t *alice = tk_login (&srv, "alice", "phone");
    ck_assert_ptr_nonnull (alice);
    ck_assert_int_eq (tk_expect (alice, "auth_ok", 5000, &f), 0);
    //  Both workers took connections on the one port.
    int got0 = s_sockets (kids[0]) - base[0], got1 = s_sockets (kids[1]) - base[1];
    ck_assert_msg (got0 > 5 && got1 > 5, "connections per worker: %d and %d", got0, got1);
    //  ... and on the raw TCP port: dave's devices.
    int tcp[S_TCP];
    char *dave = tk_token (&srv, "dave", 600);
    ck_assert_ptr_nonnull (dave);
    for (int i = 0; i < S_TCP; i++) {
        char device[16];
        snprintf (device, sizeof device, "t%d", i);
        tcp[i] = s_tcp_login (atoi (tcp_port), dave, device);
        ck_assert_int_ge (tcp[i], 0);
        ck_assert_msg (s_tcp_expect (tcp[i], "auth_ok"), "tcp device %d not authenticated", i);
    }
    free (dave);
    int tcp0 = s_sockets (kids[0]) - base[0] - got0, tcp1 = s_sockets (kids[1]) - base[1] - got1;
    ck_assert_msg (tcp0 > 2 && tcp1 > 2, "tcp connections per worker: %d and %d", tcp0, tcp1);
    //  Each worker's metrics on its own port.
    ck_assert_int_eq (zim_rawws_http_get ("127.0.0.1", mport, "/metrics", NULL, NULL, 0), 200);
    ck_assert_int_eq (zim_rawws_http_get ("127.0.0.1", mport + 1, "/metrics", NULL, NULL, 0), 200);
    //  WSS handshakes, verified against the certificate, on both workers
    //  (the kernel spreads them; 10 all on one worker: 1 in 512).
    for (int i = 0; i < 10; i++) {
        snprintf (cmd, sizeof cmd,
                  "openssl s_client -connect 127.0.0.1:%s -CAfile '%s' -verify_return_error "
                  "</dev/null >/dev/null 2>&1",
                  tls_port, cert);
        ck_assert_msg (system (cmd) == 0, "TLS handshake %d on the WSS port failed", i);
    }

    //  Each worker is a cluster member with its routes: alice's message
    //  reaches every device of bob and carol, on either worker. A send may
    //  meet 5030 while the maps settle: retried.
    for (int u = 0; u < S_USERS; u++) {
        const char *to = u ? "carol" : "bob";
        bool acked = false;
        for (int tries = 0; tries < 50 && !acked; tries++) {
            char cid[16];
            snprintf (cid, sizeof cid, "c%d-%d", u, tries);
            ck_assert_int_eq (tk_send_text (alice, to, cid, "hello"), 0);
            ck_assert_int_eq (tk_recv (alice, 5000, &f), 0);
            acked = strcmp (f.op, "ack") == 0;
            if (!acked)
                zclock_sleep (100);
        }
        ck_assert (acked);
        for (int i = 0; i < S_DEVICES; i++)
            ck_assert_msg (tk_expect (dev[u][i], "msg", 5000, &f) == 0, "%s/d%d got nothing", to,
                           i);
    }
    bool acked = false;
    for (int tries = 0; tries < 50 && !acked; tries++) {
        char cid[16];
        snprintf (cid, sizeof cid, "t-%d", tries);
        ck_assert_int_eq (tk_send_text (alice, "dave", cid, "hello tcp"), 0);
        ck_assert_int_eq (tk_recv (alice, 5000, &f), 0);
        acked = strcmp (f.op, "ack") == 0;
        if (!acked)
            zclock_sleep (100);
    }
    ck_assert (acked);
    for (int i = 0; i < S_TCP; i++)
        ck_assert_msg (s_tcp_expect (tcp[i], "msg"), "dave/t%d got nothing over TCP", i);

    //  SIGTERM to the supervisor: both workers close every connection
    //  with 1001 and exit, then it does, with status 0.
    kill (sup, SIGTERM);
    int status = -1;
    ck_assert_int_eq (waitpid (sup, &status, 0), sup);
    ck_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    for (int u = 0; u < S_USERS; u++)
        for (int i = 0; i < S_DEVICES; i++) {
            while (!tk_closed (dev[u][i]) && tk_recv (dev[u][i], 2000, &f) == 0)
                ;
            ck_assert_int_eq (tk_close_status (dev[u][i]), 1001);
            tk_close (&dev[u][i]);
        }
    for (int i = 0; i < S_TCP; i++) {
        ck_assert_msg (s_tcp_eof (tcp[i]), "dave/t%d: no FIN at the stop", i);
        close (tcp[i]);
    }
    tk_close (&alice);
    ck_assert_int_eq (s_count (log, "ERROR: AddressSanitizer", NULL), 0);
    ck_assert_int_eq (s_count (log, "LeakSanitizer", NULL), 0);
    ck_assert_int_eq (tk_cluster_stop (&cl), 0);
}
END_TEST

static void s_teardown (void)
{
    tk_cluster_cleanup (&cl);
}

int main (void)
{
    Suite *s = suite_create ("workers");
    TCase *tc = tcase_create ("workers");
    tcase_set_timeout (tc, 120);
    tcase_add_checked_fixture (tc, NULL, s_teardown);
    tcase_add_test (tc, test_two_workers);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
