/*  zim_admin.c: codec and client call for the admin protocol (zim_admin.h).
 */
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>

void zim_admin_req_encode (zim_wr_t *wr, const char *key, const char *verb, const char *const *args)
{
    zim_admin_req_t m = {zim_str (key ? key : ""), zim_str (verb), {{NULL, 0}}, 0};
    while (args && args[m.nargs] && m.nargs < ZIM_ADMIN_MAX_ARGS) {
        m.args[m.nargs] = zim_str (args[m.nargs]);
        m.nargs++;
    }
    zim_admin_req_pack (wr, &m);
}

int zim_admin_req_decode (zim_rd_t *rd, zim_admin_req_t *req)
{
    int kind;
    uint32_t fields;
    if (zim_msg_kind (rd, &kind, &fields) || kind != ZIM_MSG_ADMIN)
        return ZIM_EKIND;
    int rc = zim_admin_req_unpack (rd, fields, req);
    return rc ? rc : zim_rd_left (rd) ? ZIM_EMALFORMED : 0;
}

void zim_admin_reply_encode (zim_wr_t *wr, int code, const char *text)
{
    zim_admin_reply_t m = {code, zim_str (text ? text : "")};
    zim_admin_reply_pack (wr, &m);
}

int zim_admin_reply_decode (zim_rd_t *rd, int *code, zim_str_t *text)
{
    int kind;
    uint32_t fields;
    zim_admin_reply_t m;
    if (zim_msg_kind (rd, &kind, &fields) || kind != ZIM_MSG_ADMIN_REPLY)
        return ZIM_EMALFORMED;
    int rc = zim_admin_reply_unpack (rd, fields, &m);
    if (rc == 0 && zim_rd_left (rd))
        rc = ZIM_EMALFORMED;
    if (rc)
        return rc;
    *code = (int)m.code;
    *text = m.text;
    return 0;
}

int zim_admin_call (const char *endpoint, const char *key, int timeout_ms, const char *verb,
                    const char *const *args, char **text)
{
    return zim_admin_call_curve (endpoint, NULL, key, timeout_ms, verb, args, text);
}

int zim_admin_call_curve (const char *endpoint, const zim_curve_t *curve, const char *key,
                          int timeout_ms, const char *verb, const char *const *args, char **text)
{
    *text = NULL;
    zsock_t *sock = zim_curve_socket (curve, ZMQ_DEALER, NULL, ZIM_SHELL_MAX_MSG_SIZE);
    if (!sock) {
        *text = zim_strdup ("cannot create a socket");
        return ZIM_ERR_UNAVAILABLE;
    }
    zsock_set_rcvtimeo (sock, timeout_ms);
    zsock_set_sndtimeo (sock, timeout_ms);
    if (zsock_connect (sock, "%s", endpoint)) {
        zsock_destroy (&sock);
        char buf[300];
        snprintf (buf, sizeof buf, "bad admin endpoint '%s'", endpoint);
        *text = zim_strdup (buf);
        return ZIM_ERR_UNAVAILABLE;
    }
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_admin_req_encode (&wr, key, verb, args);
    int rc = zmq_send (zsock_resolve (sock), wr.data, wr.size, 0);
    zim_wr_free (&wr);
    zframe_t *frame = rc < 0 ? NULL : zframe_recv (sock);
    zsock_destroy (&sock);
    if (!frame) {
        char buf[300];
        snprintf (buf, sizeof buf, "no answer from %s within %d ms (is the server running?%s)",
                  endpoint, timeout_ms,
                  curve ? " does it use CURVE with these keys?"
                        : " if it uses CURVE, give its keys: --keys DIR");
        *text = zim_strdup (buf);
        return ZIM_ERR_UNAVAILABLE;
    }
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    int code;
    zim_str_t reply;
    if (zim_admin_reply_decode (&rd, &code, &reply)) {
        zframe_destroy (&frame);
        *text = zim_strdup ("malformed reply from the admin endpoint");
        return ZIM_ERR_INTERNAL;
    }
    *text = zim_str_dup (reply);
    zframe_destroy (&frame);
    return code;
}

//  Reads the first line of a file; NULL if missing or empty. Caller owns.
static char *s_first_line (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f)
        return NULL;
    char buf[256];
    char *line = fgets (buf, sizeof buf, f);
    fclose (f);
    if (!line)
        return NULL;
    buf[strcspn (buf, "\r\n")] = 0;
    return buf[0] ? zim_strdup (buf) : NULL;
}

char *zim_admin_key_default (void)
{
    const char *env = getenv ("ZIM_ADMIN_KEY");
    if (env && *env)
        return zim_strdup (env);
    const char *data = getenv ("ZIM_DATA");
    char path[4096];
    snprintf (path, sizeof path, "%s/admin.key", data && *data ? data : "./zim-data");
    return s_first_line (path);
}

char *zim_admin_keys_default (void)
{
    char path[4096];
    const char *keys = getenv ("ZIM_KEYS");
    if (keys && *keys)
        return zim_strdup (keys);
    const char *data = getenv ("ZIM_DATA");
    snprintf (path, sizeof path, "%s/curve/cluster.cert", data && *data ? data : "./zim-data");
    if (access (path, R_OK) != 0)
        return NULL;
    *strrchr (path, '/') = 0;
    return zim_strdup (path);
}

void zim_admin_test (bool verbose)
{
    //  A request round trip through a real ROUTER socket.
    zsock_t *server = zsock_new_router ("tcp://127.0.0.1:*");
    assert (server);
    int port = zsock_endpoint (server) ? atoi (strrchr (zsock_endpoint (server), ':') + 1) : 0;
    assert (port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);

    zactor_t *peer = NULL; //  answer in this thread: send first, then poll
    (void)peer;
    zsock_t *client = zsock_new_dealer (endpoint);
    zim_wr_t wr;
    zim_wr_init (&wr);
    const char *args[] = {"demo", "alice", "60", NULL};
    zim_admin_req_encode (&wr, "k3y", "token", args);
    zmq_send (zsock_resolve (client), wr.data, wr.size, 0);
    zmsg_t *msg = zmsg_recv (server);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *id = zmsg_pop (msg);
    zframe_t *body = zmsg_pop (msg);
    zim_rd_t rd;
    zim_rd_init (&rd, zframe_data (body), zframe_size (body));
    zim_admin_req_t req;
    assert (zim_admin_req_decode (&rd, &req) == 0);
    assert (zim_str_eq (req.key, "k3y") && zim_str_eq (req.verb, "token") && req.nargs == 3);
    assert (zim_str_eq (req.args[1], "alice"));
    zim_wr_reset (&wr);
    zim_admin_reply_encode (&wr, 0, "tok");
    zmsg_t *reply = zmsg_new ();
    zmsg_append (reply, &id);
    zmsg_addmem (reply, wr.data, wr.size);
    zmsg_send (&reply, server);
    zframe_t *answer = zframe_recv (client);
    zim_rd_init (&rd, zframe_data (answer), zframe_size (answer));
    int code;
    zim_str_t text;
    assert (zim_admin_reply_decode (&rd, &code, &text) == 0 && code == 0);
    assert (zim_str_eq (text, "tok"));
    zframe_destroy (&answer);
    zframe_destroy (&body);
    zmsg_destroy (&msg);
    zsock_destroy (&client);
    zsock_destroy (&server);

    //  No server: a clear error within the timeout. The port is held by a
    //  listening socket that never answers, so no other test can take it.
    int mute = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    assert (mute >= 0 && bind (mute, (struct sockaddr *)&sa, sizeof sa) == 0);
    assert (listen (mute, 4) == 0 && getsockname (mute, (struct sockaddr *)&sa, &salen) == 0);
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", ntohs (sa.sin_port));
    char *out = NULL;
    assert (zim_admin_call (endpoint, "k", 200, "status", NULL, &out) == ZIM_ERR_UNAVAILABLE);
    close (mute);
    assert (out && strstr (out, "no answer"));
    free (out);
    zim_wr_free (&wr);
    if (verbose)
        printf ("(admin codec ok) ");
}
