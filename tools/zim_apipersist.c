/*  zim_apipersist.c: persisted pushes of the backend API
    (zim_apipersist.h): SENDs from the system sender, their acks back.
*/
#include "tools/zim_apipersist.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <unistd.h>

//  One user of a push.
typedef struct {
    char uid[ZIM_ID_MAX + 1]; //  the user
    uint64_t seq;             //  its inbox seq, once acked
    int err;                  //  the wire code of a failure, else 0
    bool done;                //  acked or failed
} s_user_t;

//  One push in flight; users[i] was sent with conn first_conn + i.
typedef struct {
    uint64_t req;        //  the caller's request id
    uint64_t first_conn; //  conn of users[0]
    s_user_t *users;     //  in request order
    uint32_t n;          //  how many
    uint32_t pending;    //  not done yet
    int64_t deadline_ms; //  monotonic
} s_push_t;

struct _zim_apipersist_t {
    char *program;         //  for log lines
    zsock_t *sock;         //  DEALER to one broker
    char *broker;          //  its endpoint, or NULL
    zlistx_t *pushes;      //  s_push_t in flight, oldest first
    uint64_t next_conn;    //  conn ids of the SENDs
    zim_wr_t wr;           //  SEND being encoded
    zim_ratelog_t ratelog; //  undecodable answers
};

static void s_push_destroy (s_push_t **push_p)
{
    s_push_t *push = *push_p;
    if (!push)
        return;
    free (push->users);
    free (push);
    *push_p = NULL;
}

zim_apipersist_t *zim_apipersist_new (const char *program, const zim_curve_t *curve)
{
    zim_apipersist_t *self = zim_calloc (1, sizeof *self);
    self->program = zim_strdup (program);
    self->sock = zim_curve_socket (curve, ZMQ_DEALER, NULL, 64 << 20);
    if (!self->sock) {
        zim_apipersist_destroy (&self);
        return NULL;
    }
    char identity[64];
    snprintf (identity, sizeof identity, "api-persist:%d:%u", (int)getpid (),
              (unsigned)randof (1 << 30));
    zsock_set_identity (self->sock, identity);
    zsock_set_sndhwm (self->sock, 100000);
    self->pushes = zlistx_new ();
    zlistx_set_destructor (self->pushes, (zlistx_destructor_fn *)s_push_destroy);
    self->next_conn = 1;
    zim_wr_init (&self->wr);
    return self;
}

void zim_apipersist_destroy (zim_apipersist_t **self_p)
{
    zim_apipersist_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    zlistx_destroy (&self->pushes);
    zim_wr_free (&self->wr);
    free (self->broker);
    free (self->program);
    free (self);
    *self_p = NULL;
}

void zim_apipersist_use_broker (zim_apipersist_t *self, const char *endpoint)
{
    if (self->broker && streq (self->broker, endpoint))
        return;
    if (self->broker)
        zsock_disconnect (self->sock, "%s", self->broker);
    free (self->broker);
    self->broker = NULL;
    if (zsock_connect (self->sock, "%s", endpoint)) {
        zsys_error ("%s: API: cannot connect to broker %s", self->program, endpoint);
        return;
    }
    self->broker = zim_strdup (endpoint);
}

void zim_apipersist_map (zim_apipersist_t *self, zframe_t *frame)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_map_t map;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_unpack (&rd, fields, &map))
        return;
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t m;
        if (zim_member_unpack (&map.members, &m))
            return;
        if (m.alive && zim_str_eq (m.role, "broker") && m.endpoint.len) {
            char endpoint[300];
            zim_str_copy (m.endpoint, endpoint, sizeof endpoint);
            zim_apipersist_use_broker (self, endpoint);
            return;
        }
    }
}

zsock_t *zim_apipersist_sock (zim_apipersist_t *self)
{
    return self->sock;
}

size_t zim_apipersist_inflight (zim_apipersist_t *self)
{
    return zlistx_size (self->pushes);
}

const char *zim_apipersist_check (json_t *users, json_t *id)
{
    if (id && (!json_is_string (id) || !zim_cid_valid (zim_str (json_string_value (id)))))
        return "id must be 1..64 printable ASCII characters";
    if (json_array_size (users) > ZIM_APIPERSIST_MAX_USERS)
        return "at most 1000 users with persist";
    size_t i;
    json_t *u;
    json_array_foreach (users, i,
                        u) if (json_is_string (u) &&
                               streq (json_string_value (u),
                                      ZIM_SYSTEM_UID)) return "the system sender " ZIM_SYSTEM_UID
                                                              " gets no pushes";
    return NULL;
}

//  The idempotency key of id's message to uid: "api-" + 40 hex digits.
static void s_cid (const char *id, const char *uid, char *cid)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    size_t ilen = strlen (id), ulen = strlen (uid);
    char *text = zim_malloc (ilen + ulen + 2);
    memcpy (text, id, ilen);
    text[ilen] = '\n';
    memcpy (text + ilen + 1, uid, ulen + 1);
    EVP_Digest (text, ilen + ulen + 1, md, &mdlen, EVP_sha256 (), NULL);
    free (text);
    strcpy (cid, "api-");
    for (int i = 0; i < 20; i++)
        snprintf (cid + 4 + 2 * i, 3, "%02x", md[i]);
}

int zim_apipersist_start (zim_apipersist_t *self, uint64_t req, const char *app, const char *id,
                          json_t *users, zim_str_t body, const char **why)
{
    if (!self->broker) {
        *why = "no broker known yet";
        return -1;
    }
    char rid[40];
    if (!id) {
        uint8_t raw[16];
        RAND_bytes (raw, sizeof raw);
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf (rid + 2 * i, 3, "%02x", raw[i]);
        id = rid;
    }
    s_push_t *push = zim_calloc (1, sizeof *push);
    push->req = req;
    push->n = push->pending = (uint32_t)json_array_size (users);
    push->users = zim_calloc (push->n, sizeof (s_user_t));
    push->first_conn = self->next_conn;
    self->next_conn += push->n;
    push->deadline_ms = zclock_mono () + ZIM_APIPERSIST_TIMEOUT_MS;
    void *sock = zsock_resolve (self->sock);
    for (uint32_t i = 0; i < push->n; i++) {
        s_user_t *u = &push->users[i];
        snprintf (u->uid, sizeof u->uid, "%s", json_string_value (json_array_get (users, i)));
        char cid[48];
        s_cid (id, u->uid, cid);
        zim_send_t m;
        memset (&m, 0, sizeof m);
        m.who.conn = push->first_conn + i;
        m.who.app = zim_str (app);
        m.who.uid = zim_str (ZIM_SYSTEM_UID);
        m.who.device = zim_str ("api");
        m.cid = zim_str (cid);
        m.to = zim_str (u->uid);
        m.body = body;
        zim_wr_reset (&self->wr);
        zim_send_pack (&self->wr, &m);
        if (zmq_send (sock, self->wr.data, self->wr.size, ZMQ_DONTWAIT) != (int)self->wr.size) {
            u->done = true;
            u->err = ZIM_ERR_UNAVAILABLE;
            push->pending--;
        }
    }
    zlistx_add_end (self->pushes, push);
    if (push->pending == 0)
        push->deadline_ms = 0; //  answered by the next zim_apipersist_late
    return 0;
}

//  The answer to a push whose users are all done.
static int s_answer (s_push_t *push, char **json)
{
    json_t *users = json_object ();
    int worst = 0;
    for (uint32_t i = 0; i < push->n; i++) {
        s_user_t *u = &push->users[i];
        if (u->done && !u->err)
            json_object_set_new (users, u->uid, json_integer ((json_int_t)u->seq));
        else if (worst != ZIM_ERR_CID_CONFLICT)
            worst = u->err == ZIM_ERR_CID_CONFLICT ? u->err : u->err ? u->err : ZIM_ERR_TIMEOUT;
    }
    json_t *doc;
    int status = 200;
    if (!worst)
        doc = json_pack ("{s:o}", "users", users);
    else {
        status = worst == ZIM_ERR_CID_CONFLICT ? 409 : 503;
        doc = json_pack (
            "{s:{s:s, s:s, s:i}, s:o}", "error", "code", status == 409 ? "conflict" : "unavailable",
            "text",
            status == 409 ? "this id named a push with other data to these users: nothing stored "
                            "for them"
                          : "not every user's message was stored: retry with the same id",
            "zim_code", worst, "users", users);
    }
    *json = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    return status;
}

//  Takes one client frame for conn; returns the push it completed or NULL.
static s_push_t *s_frame (zim_apipersist_t *self, uint64_t conn, const zim_sframe_t *f)
{
    for (s_push_t *push = zlistx_first (self->pushes); push; push = zlistx_next (self->pushes)) {
        if (conn < push->first_conn || conn >= push->first_conn + push->n)
            continue;
        s_user_t *u = &push->users[conn - push->first_conn];
        if (u->done || (f->op != ZIM_SOP_ACK && f->op != ZIM_SOP_ERROR))
            return NULL;
        u->done = true;
        if (f->op == ZIM_SOP_ACK)
            u->seq = f->seq;
        else
            u->err = (int)f->code;
        return --push->pending == 0 ? push : NULL;
    }
    return NULL; //  a push answered already (late)
}

uint64_t zim_apipersist_handle (zim_apipersist_t *self, int *status, char **json)
{
    zframe_t *frame = zframe_recv (self->sock);
    if (!frame)
        return 0;
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_out_t out;
    uint64_t done = 0;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_OUT ||
        zim_out_unpack (&rd, fields, &out) || out.nconns != 1) {
        zim_ratelog_warn (&self->ratelog, self->program,
                          "API: dropped an undecodable broker answer");
        zframe_destroy (&frame);
        return 0;
    }
    uint64_t conn;
    zim_rd_t frames;
    zim_rd_init (&frames, out.frames.ptr, out.frames.len);
    zim_sframe_t f;
    const char *why;
    if (zim_rd_uint (&out.conns, &conn) == 0 && zim_sframe_unpack (&frames, &f, &why) == 0) {
        s_push_t *push = s_frame (self, conn, &f);
        if (push) {
            *status = s_answer (push, json);
            done = push->req;
            zlistx_delete (self->pushes, zlistx_find (self->pushes, push));
        }
    }
    zframe_destroy (&frame);
    return done;
}

uint64_t zim_apipersist_late (zim_apipersist_t *self, int64_t now_ms, int *status, char **json)
{
    for (s_push_t *push = zlistx_first (self->pushes); push; push = zlistx_next (self->pushes))
        if (push->deadline_ms <= now_ms) {
            uint64_t req = push->req;
            *status = s_answer (push, json);
            zlistx_delete (self->pushes, zlistx_cursor (self->pushes));
            return req;
        }
    return 0;
}

//  -------------------------------------------------------------------------
//  Selftest: a ROUTER playing the broker.

void zim_apipersist_test (bool verbose)
{
    (void)verbose;
    zsock_t *broker = zsock_new_router ("inproc://zim-apipersist-test");
    zim_apipersist_t *self = zim_apipersist_new ("test", NULL);
    json_t *users = json_pack ("[s, s]", "alice", "bob");
    assert (!zim_apipersist_check (users, NULL));
    json_t *bad = json_pack ("[s]", ZIM_SYSTEM_UID);
    assert (zim_apipersist_check (bad, NULL));
    json_decref (bad);
    bad = json_string ("");
    assert (zim_apipersist_check (users, bad));
    json_decref (bad);
    const char *why = NULL;
    assert (zim_apipersist_start (self, 7, "demo", "x", users, zim_str ("\xa2hi"), &why) == -1);
    zim_apipersist_use_broker (self, "inproc://zim-apipersist-test");
    //  Twice the same id: the same cids, per user.
    char cids[4][64];
    for (int round = 0; round < 2; round++) {
        assert (zim_apipersist_start (self, 7 + (uint64_t)round, "demo", "order-1", users,
                                      zim_str ("\xa2hi"), &why) == 0);
        for (int i = 0; i < 2; i++) {
            zmsg_t *msg = zmsg_recv (broker);
            zframe_t *gw = zmsg_first (msg);
            zframe_t *body = zmsg_next (msg);
            zim_rd_t rd;
            int kind;
            uint32_t fields;
            zim_send_t m;
            zim_rd_init (&rd, zframe_data (body), zframe_size (body));
            assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_SEND);
            assert (zim_send_unpack (&rd, fields, &m) == 0);
            assert (zim_str_eq (m.who.uid, ZIM_SYSTEM_UID) &&
                    zim_str_eq (m.to, i ? "bob" : "alice"));
            assert (m.cid.len == 44);
            zim_str_copy (m.cid, cids[2 * round + i], 64);
            //  The broker's answer: an ack (seq 5 + i), or for bob in the
            //  second round a conflict.
            zim_wr_t fr, wr;
            zim_wr_init (&fr);
            zim_wr_init (&wr);
            if (round == 1 && i == 1)
                zim_sframe_pack (&fr, &(zim_sframe_t){.op = ZIM_SOP_ERROR,
                                                      .code = ZIM_ERR_CID_CONFLICT,
                                                      .text = zim_str ("conflict"),
                                                      .cid = m.cid});
            else
                zim_cframe_ack (&fr, m.cid, 100 + (uint64_t)i, 5 + (uint64_t)i, 1);
            uint64_t conn = m.who.conn;
            zim_out_encode (&wr, &conn, 1, (zim_str_t){(const char *)fr.data, fr.size});
            zsock_send (broker, "fb", gw, wr.data, wr.size);
            zim_wr_free (&fr);
            zim_wr_free (&wr);
            zmsg_destroy (&msg);
        }
        int status = 0;
        char *json = NULL;
        uint64_t req = 0;
        while (!req)
            req = zim_apipersist_handle (self, &status, &json);
        assert (req == 7 + (uint64_t)round);
        if (round == 0)
            assert (status == 200 && streq (json, "{\"users\":{\"alice\":5,\"bob\":6}}"));
        else
            assert (status == 409 && strstr (json, "\"conflict\"") && strstr (json, "\"alice\":5"));
        free (json);
    }
    assert (streq (cids[0], cids[2]) && streq (cids[1], cids[3]) && !streq (cids[0], cids[1]));
    //  No answer: 503 after the deadline.
    assert (zim_apipersist_start (self, 9, "demo", NULL, users, zim_str ("\xc0"), &why) == 0);
    int status;
    char *json = NULL;
    assert (zim_apipersist_late (self, zclock_mono (), &status, &json) == 0);
    assert (zim_apipersist_late (self, zclock_mono () + ZIM_APIPERSIST_TIMEOUT_MS + 1, &status,
                                 &json) == 9);
    assert (status == 503 && strstr (json, "unavailable"));
    free (json);
    assert (zim_apipersist_inflight (self) == 0);
    json_decref (users);
    zim_apipersist_destroy (&self);
    zsock_destroy (&broker);
}
