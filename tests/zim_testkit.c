/*  zim_testkit.c: real server processes and real WebSocket clients for the
    black-box tests (see zim_testkit.h).
*/
#include "tests/zim_testkit.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "tests/zim_rawws.h"

#include <check.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

ssize_t tk_read_file (const char *path, char *buf, size_t size)
{
    int fd = open (path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read (fd, buf, size - 1);
    close (fd);
    if (n >= 0)
        buf[n] = 0;
    return n;
}

int tk_server_start (tk_server_t *srv, const char *data, const char *const *extra)
{
    memset (srv, 0, sizeof *srv);
    if (data)
        snprintf (srv->data, sizeof srv->data, "%s", data);
    else {
        snprintf (srv->data, sizeof srv->data, "./tk-data-XXXXXX");
        if (!mkdtemp (srv->data))
            return -1;
    }
    static int starts = 0;
    snprintf (srv->log, sizeof srv->log, "%s/server-%d-%d.log", srv->data, (int)getpid (),
              ++starts);
    const char *server = getenv ("ZIM_SERVER");
    if (!server)
        server = "./zim-server";
    const char *argv[32] = {server,    "--port", "0",    "--admin", "tcp://127.0.0.1:*", "--data",
                            srv->data, "--sync", "none", "--api",   "127.0.0.1:0"};
    int argc = 11;
    for (int i = 0; extra && extra[i] && argc < 30; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0)
        tk_exec_logged (srv->log, server, argv);
    srv->pid = pid;
    //  Wait for the ready line: "... ready: ws=ws://H:PORT/ws admin=EP data=..."
    char buf[65536];
    for (int waited = 0; waited < 15000; waited += 20) {
        if (tk_read_file (srv->log, buf, sizeof buf) > 0) {
            char *ready = strstr (buf, " ready: ws=");
            char *admin = ready ? strstr (ready, " admin=") : NULL;
            char *nl = admin ? strchr (admin, '\n') : NULL;
            if (ready && admin && nl) {
                char *colon = strchr (ready + 16, ':');
                srv->ws_port = colon ? atoi (colon + 1) : 0;
                sscanf (admin + 7, "%63s", srv->admin);
                char *api = strstr (ready, " api=http://");
                char *api_colon = api && api < nl ? strchr (api + 12, ':') : NULL;
                srv->api_port = api_colon ? atoi (api_colon + 1) : 0;
                break;
            }
        }
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            srv->pid = 0;
            fprintf (stderr, "zim-server exited early; log:\n%s\n", buf);
            return -1;
        }
        usleep (20000);
    }
    char path[300];
    snprintf (path, sizeof path, "%s/app-demo.apikey", srv->data);
    if (tk_read_file (path, srv->apikey, sizeof srv->apikey) > 0)
        srv->apikey[strcspn (srv->apikey, "\r\n")] = 0;
    snprintf (path, sizeof path, "%s/admin.key", srv->data);
    if (srv->ws_port <= 0 || tk_read_file (path, srv->key, sizeof srv->key) <= 0) {
        fprintf (stderr, "zim-server did not become ready; log:\n%s\n", buf);
        tk_server_stop (srv, SIGKILL);
        return -1;
    }
    srv->key[strcspn (srv->key, "\r\n")] = 0;
    return 0;
}

void tk_exec_logged (const char *log, const char *program, const char *const *argv)
{
    int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2 (fd, 1);
        dup2 (fd, 2);
        close (fd);
    }
    execv (program, (char *const *)argv);
    fprintf (stderr, "cannot exec %s: %s\n", program, strerror (errno));
    _exit (127);
}

void tk_reap (pid_t *pid, int sig)
{
    if (*pid <= 0)
        return;
    kill (*pid, sig);
    int status;
    waitpid (*pid, &status, 0);
    *pid = 0;
}

void tk_server_stop (tk_server_t *srv, int sig)
{
    tk_reap (&srv->pid, sig);
}

void tk_server_cleanup (tk_server_t *srv)
{
    tk_server_stop (srv, SIGKILL);
    if (srv->data[0] && strncmp (srv->data, "./tk-data-", 10) == 0) {
        char cmd[300];
        snprintf (cmd, sizeof cmd, "rm -rf '%s'", srv->data);
        if (system (cmd) != 0)
            fprintf (stderr, "could not remove %s\n", srv->data);
    }
}

char *tk_token (tk_server_t *srv, const char *uid, int ttl)
{
    char ttl_s[16];
    snprintf (ttl_s, sizeof ttl_s, "%d", ttl);
    const char *args[] = {"demo", uid, ttl_s, NULL};
    char *text = NULL;
    int code = zim_admin_call_curve (srv->admin, srv->curve, srv->key, 5000, "token", args, &text);
    if (code != 0) {
        fprintf (stderr, "token for %s failed: %d %s\n", uid, code, text ? text : "");
        free (text);
        return NULL;
    }
    return text;
}

struct tk_client {
    zim_rawws_t *ws; //  the connection
    char *buf;       //  last binary message received
    size_t len;      //  its length
    zim_rd_t rd;     //  frames not yet returned from buf
    bool closed;     //  the server closed the connection
};

tk_client_t *tk_connect (tk_server_t *srv, const char *query, int *status)
{
    char path[4096];
    snprintf (path, sizeof path, "/ws%s%s", query && *query ? "?" : "", query ? query : "");
    int http = 0;
    zim_rawws_t *ws = zim_rawws_connect ("127.0.0.1", srv->ws_port, path, &http);
    if (status)
        *status = http;
    if (!ws)
        return NULL;
    tk_client_t *self = zim_calloc (1, sizeof *self);
    self->ws = ws;
    return self;
}

void tk_close (tk_client_t **self_p)
{
    tk_client_t *self = *self_p;
    if (!self)
        return;
    zim_rawws_destroy (&self->ws);
    free (self->buf);
    free (self);
    *self_p = NULL;
}

int tk_send_raw (tk_client_t *self, const void *data, size_t len, bool text)
{
    return zim_rawws_send (self->ws, text ? 1 : 2, data, len);
}

int tk_send_wr (tk_client_t *self, zim_wr_t *wr)
{
    int rc = tk_send_raw (self, wr->data, wr->size, false);
    zim_wr_reset (wr);
    return rc;
}

void tk_enc_send (zim_wr_t *wr, const char *to, const char *cid, const char *text)
{
    tk_enc_send_at (wr, "to", to, cid, text);
}

void tk_enc_send_at (zim_wr_t *wr, const char *field, const char *dest, const char *cid,
                     const char *text)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, field);
    zim_wr_cstr (wr, dest);
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, text);
}

int tk_send_text (tk_client_t *self, const char *to, const char *cid, const char *text)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    tk_enc_send (&wr, to, cid, text);
    int rc = tk_send_wr (self, &wr);
    zim_wr_free (&wr);
    return rc;
}

int tk_sync (tk_client_t *self, int64_t since, uint64_t limit, uint64_t rid)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, since >= 0 ? 4 : 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    if (since >= 0) {
        zim_wr_cstr (&wr, "since");
        zim_wr_int (&wr, since);
    }
    zim_wr_cstr (&wr, "limit");
    zim_wr_uint (&wr, limit);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, rid);
    int rc = tk_send_wr (self, &wr);
    zim_wr_free (&wr);
    return rc;
}

//  Copies a string value into a fixed buffer, truncating.
static void s_copy (zim_str_t v, char *buf, size_t size)
{
    size_t n = v.len < size - 1 ? v.len : size - 1;
    memcpy (buf, v.ptr, n);
    buf[n] = 0;
}

//  Decodes one page entry (a map) into slot i of f.
static int s_decode_item (zim_rd_t *rd, tk_frame_t *f, uint32_t i)
{
    uint32_t pairs;
    if (zim_rd_map (rd, &pairs))
        return -1;
    for (uint32_t k = 0; k < pairs; k++) {
        zim_str_t key, s;
        uint64_t u;
        if (zim_rd_str (rd, &key))
            return -1;
        if (zim_str_eq (key, "seq") && zim_rd_uint (rd, &u) == 0) {
            if (i < 1024)
                f->seqs[i] = u;
        } else if (zim_str_eq (key, "id") && zim_rd_uint (rd, &u) == 0) {
            if (i < 1024)
                f->ids[i] = u;
        } else if (zim_str_eq (key, "body") && zim_rd_peek (rd) == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            if (i < 64)
                s_copy (s, f->bodies[i], sizeof f->bodies[i]);
        } else if (zim_rd_skip (rd, NULL))
            return -1;
    }
    return 0;
}

//  Decodes one server frame map.
static int s_decode (zim_rd_t *rd, tk_frame_t *f)
{
    memset (f, 0, offsetof (tk_frame_t, seqs));
    uint32_t pairs;
    if (zim_rd_map (rd, &pairs))
        return -1;
    for (uint32_t k = 0; k < pairs; k++) {
        zim_str_t key, s;
        if (zim_rd_str (rd, &key))
            return -1;
        zim_mp_type_t type = zim_rd_peek (rd);
        if (zim_str_eq (key, "op") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->op, sizeof f->op);
        } else if (zim_str_eq (key, "code") && zim_rd_int (rd, &f->code) == 0)
            ;
        else if (zim_str_eq (key, "text") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->text, sizeof f->text);
        } else if (zim_str_eq (key, "cid") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->cid, sizeof f->cid);
        } else if (zim_str_eq (key, "from") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->from, sizeof f->from);
        } else if (zim_str_eq (key, "to") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->to, sizeof f->to);
        } else if (zim_str_eq (key, "body") && type == ZIM_MP_STR) {
            zim_rd_str (rd, &s);
            s_copy (s, f->body, sizeof f->body);
        } else if (zim_str_eq (key, "id") && zim_rd_uint (rd, &f->id) == 0)
            ;
        else if (zim_str_eq (key, "seq") && zim_rd_uint (rd, &f->seq) == 0)
            ;
        else if (zim_str_eq (key, "ts") && zim_rd_uint (rd, &f->ts) == 0)
            ;
        else if (zim_str_eq (key, "rid") && zim_rd_uint (rd, &f->rid) == 0)
            ;
        else if (zim_str_eq (key, "more") && zim_rd_bool (rd, &f->more) == 0)
            ;
        else if (zim_str_eq (key, "msgs") && type == ZIM_MP_ARRAY) {
            zim_rd_array (rd, &f->nmsgs);
            for (uint32_t i = 0; i < f->nmsgs; i++)
                if (s_decode_item (rd, f, i))
                    return -1;
        } else if (zim_rd_skip (rd, NULL))
            return -1;
    }
    return 0;
}

int tk_recv (tk_client_t *self, int timeout_ms, tk_frame_t *f)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zim_rd_left (&self->rd) == 0) {
        if (self->closed)
            return -1;
        int left = (int)(deadline - zclock_mono ());
        if (left <= 0)
            return -1;
        int opcode = 0;
        char *data = NULL;
        size_t len = 0;
        int rc = zim_rawws_recv (self->ws, left, &opcode, &data, &len);
        if (rc == -2 || (rc == 0 && opcode == 8)) {
            self->closed = true;
            free (data);
            return -1;
        }
        if (rc != 0) {
            free (data);
            return -1;
        }
        if (opcode != 2) {
            free (data);
            continue;
        }
        free (self->buf);
        self->buf = data;
        self->len = len;
        zim_rd_init (&self->rd, self->buf, self->len);
    }
    const uint8_t *start = self->rd.pos;
    if (s_decode (&self->rd, f)) {
        zim_rd_init (&self->rd, NULL, 0);
        return -1;
    }
    f->raw = start;
    f->raw_len = (size_t)(self->rd.pos - start);
    return 0;
}

int tk_expect (tk_client_t *self, const char *op, int timeout_ms, tk_frame_t *f)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        int left = (int)(deadline - zclock_mono ());
        if (left <= 0 || tk_recv (self, left, f))
            return -1;
        if (strcmp (f->op, op) == 0)
            return 0;
    }
}

bool tk_closed (tk_client_t *self)
{
    return self->closed;
}

tk_client_t *tk_login (tk_server_t *srv, const char *uid, const char *device)
{
    char *token = tk_token (srv, uid, 3600);
    if (!token)
        return NULL;
    char query[2048];
    snprintf (query, sizeof query, "token=%s&device=%s", token, device);
    free (token);
    int status = 0;
    tk_client_t *c = tk_connect (srv, query, &status);
    if (!c)
        fprintf (stderr, "login %s/%s failed: HTTP %d\n", uid, device, status);
    return c;
}

tk_client_t *tk_login_ok (tk_server_t *srv, const char *uid, const char *device)
{
    tk_client_t *c = tk_login (srv, uid, device);
    ck_assert_msg (c != NULL, "login %s/%s: no connection", uid, device);
    tk_frame_t f;
    ck_assert_msg (tk_expect (c, "auth_ok", 5000, &f) == 0, "login %s/%s: no auth_ok", uid, device);
    return c;
}

void tk_ping (tk_client_t *c)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "ping");
    ck_assert_int_eq (tk_send_wr (c, &wr), 0);
    zim_wr_free (&wr);
}

int tk_shell (const char *cmd, char *out, size_t size)
{
    FILE *p = popen (cmd, "r");
    ck_assert_ptr_nonnull (p);
    size_t n = fread (out, 1, size - 1, p);
    out[n] = 0;
    return pclose (p);
}

int tk_run (Suite *s)
{
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}

int tk_close_status (tk_client_t *c)
{
    return zim_rawws_close_status (c->ws);
}

int tk_free_port (void)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in addr;
        memset (&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        int port = -1;
        if (bind (fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
            getsockname (fd, (struct sockaddr *)&addr, &len) == 0)
            port = ntohs (addr.sin_port);
        close (fd);
        //  czmq's "tcp://...:*" takes the first free port from 49152 up:
        //  stay below, or a node of a test running beside us may take the
        //  port of ours that is down for a restart.
        if (port > 0 && port < 49152)
            return port;
    }
    return -1;
}

//  Whether port on 127.0.0.1 can be bound now.
static bool s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool ok = fd >= 0 && bind (fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close (fd);
    return ok;
}

int tk_free_ports (int n)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int port = tk_free_port ();
        bool all = port > 0;
        for (int k = 1; all && k < n; k++)
            all = port + k < 49152 && s_port_free (port + k);
        if (all)
            return port;
    }
    return -1;
}

int tk_children (pid_t pid, pid_t *kids, int max)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen (path, "r");
    int n = 0, k;
    while (f && n < max && fscanf (f, "%d", &k) == 1)
        kids[n++] = (pid_t)k;
    if (f)
        fclose (f);
    return n;
}

int tk_log_reports (const char *path)
{
    //  ASan, LSan, UBSan and TSan say so in a line.
    static const char *const reports[] = {"AddressSanitizer", "LeakSanitizer",
                                          "runtime error:", "ThreadSanitizer"};
    int problems = 0;
    FILE *f = fopen (path, "r");
    char line[1024];
    while (f && fgets (line, sizeof line, f))
        for (size_t r = 0; r < sizeof reports / sizeof reports[0]; r++)
            if (strstr (line, reports[r])) {
                fprintf (stderr, "%s: %s", path, line);
                problems++;
                break;
            }
    if (f)
        fclose (f);
    return problems;
}
