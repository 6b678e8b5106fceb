/*  zim_storeadmin.c: the store's admin verbs (see zim_storeadmin.h).
 */
#include "tools/zim_storeadmin.h"
#include "msg/zim_conv.h"
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>

#define S_TIMEOUT_MS 5000 //  how long a verb waits for the store
#define S_QIDS_MAX 1024   //  records one ack names, at most

struct _zim_storeadmin_t {
    zsock_t *sock; //  DEALER to the store
    uint64_t req;  //  request id counter
    zim_wr_t wr;   //  the request
};

zim_storeadmin_t *zim_storeadmin_new (const char *endpoint, const zim_curve_t *curve)
{
    zsock_t *sock = zim_curve_socket (curve, ZMQ_DEALER, NULL, ZIM_SHELL_MAX_MSG_SIZE);
    if (!sock)
        return NULL;
    if (zsock_connect (sock, "%s", endpoint) == -1) {
        zsys_error ("cannot connect the admin endpoint to the store at %s", endpoint);
        zsock_destroy (&sock);
        return NULL;
    }
    zim_storeadmin_t *self = zim_calloc (1, sizeof *self);
    self->sock = sock;
    zim_wr_init (&self->wr);
    return self;
}

void zim_storeadmin_destroy (zim_storeadmin_t **self_p)
{
    zim_storeadmin_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy (&self->sock);
    zim_wr_free (&self->wr);
    free (self);
    *self_p = NULL;
}

//  Sends self->wr and waits for the answer of kind `kind` to request req;
//  returns it (caller owns) or NULL after the timeout.
static zframe_t *s_call (zim_storeadmin_t *self, uint64_t req, int kind)
{
    if (zmq_send (zsock_resolve (self->sock), self->wr.data, self->wr.size, ZMQ_DONTWAIT) == -1)
        return NULL;
    int64_t deadline = zclock_mono () + S_TIMEOUT_MS;
    while (zclock_mono () < deadline) {
        zmq_pollitem_t item = {zsock_resolve (self->sock), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)(deadline - zclock_mono ())) <= 0)
            continue;
        zframe_t *frame = zframe_recv (self->sock);
        zim_rd_t rd;
        int got;
        uint32_t fields;
        uint64_t id;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        if (zim_msg_kind (&rd, &got, &fields) == 0 && got == kind && zim_rd_uint (&rd, &id) == 0 &&
            id == req)
            return frame;
        zframe_destroy (&frame); //  the late answer of an earlier call
    }
    return NULL;
}

//  Parses "1,2,3" into wr as uints; returns how many, or -1.
static int s_qids (zim_str_t list, zim_wr_t *wr)
{
    char buf[4097];
    if (zim_str_copy (list, buf, sizeof buf))
        return -1;
    int n = 0;
    for (char *save, *tok = strtok_r (buf, ",", &save); tok; tok = strtok_r (NULL, ",", &save)) {
        uint64_t qid;
        if (zim_parse_u64 (tok, &qid) || ++n > S_QIDS_MAX)
            return -1;
        zim_wr_uint (wr, qid);
    }
    return n;
}

//  A PUSH_Q from the verb's arguments; returns 0 or -1 (wrong arguments).
static int s_push_q (zim_storeadmin_t *self, const zim_admin_req_t *req, uint64_t id)
{
    zim_push_q_t m = {id, ZIM_PUSHQ_STAT, 0, 0, 0, {NULL, NULL}, 0};
    zim_wr_t qids;
    zim_wr_init (&qids);
    char a[24] = "", b[24] = "";
    int rc = 0;
    if (req->nargs == 3 && zim_str_eq (req->args[0], "take")) {
        m.op = ZIM_PUSHQ_TAKE;
        rc = zim_str_copy (req->args[1], a, sizeof a) || zim_str_copy (req->args[2], b, sizeof b) ||
                     zim_parse_u64 (a, &m.after) || zim_parse_u64 (b, &m.max)
                 ? -1
                 : 0;
    } else if (req->nargs == 3 && zim_str_eq (req->args[0], "ack")) {
        m.op = ZIM_PUSHQ_ACK;
        m.outcome = zim_str_eq (req->args[1], "delivered") ? ZIM_PUSHQ_DELIVERED
                    : zim_str_eq (req->args[1], "dropped") ? ZIM_PUSHQ_DROPPED
                    : zim_str_eq (req->args[1], "muted")   ? ZIM_PUSHQ_MUTED
                                                           : 0;
        int n = s_qids (req->args[2], &qids);
        rc = m.outcome && n > 0 ? 0 : -1;
        m.nqids = n > 0 ? (uint32_t)n : 0;
    } else if (req->nargs != 0)
        rc = -1;
    if (rc == 0) {
        zim_wr_reset (&self->wr);
        zim_push_q_pack (&self->wr, &m);
        zim_wr_raw (&self->wr, qids.data, qids.size);
    }
    zim_wr_free (&qids);
    return rc;
}

//  A MARK (mute) from the verb's arguments; returns 0 or -1.
static int s_mute (zim_storeadmin_t *self, const zim_admin_req_t *req, uint64_t id)
{
    char until[24];
    zim_mark_t m = {id, req->args[0], req->args[1], req->args[2], ZIM_MARK_MUTE, 0, zim_str ("")};
    zim_conv_t c;
    if (req->nargs != 4 || !zim_uid_valid (m.app) || !zim_uid_valid (m.uid) ||
        zim_conv_parse (m.conv, &c) || zim_str_copy (req->args[3], until, sizeof until) ||
        zim_parse_u64 (until, &m.value))
        return -1;
    zim_wr_reset (&self->wr);
    zim_mark_pack (&self->wr, &m);
    return 0;
}

//  A GADMIN from the groups verb's arguments; returns 0 or -1.
static int s_gadmin (zim_storeadmin_t *self, const zim_admin_req_t *req, uint64_t id)
{
    static const char *const ops[] = {NULL,     "create",  "members", "get",
                                      "delete", "upgrade", "readers"};
    zim_gadmin_t m = {id, 0, {NULL, 0}, {NULL, 0}, 0, false, zim_str (""), zim_str (""), 0};
    if (req->nargs < 3)
        return -1;
    for (uint64_t op = 1; op < sizeof ops / sizeof ops[0]; op++)
        if (zim_str_eq (req->args[0], ops[op]))
            m.op = op;
    m.app = req->args[1];
    m.group = req->args[2];
    if (!m.op || !zim_uid_valid (m.app) || !zim_uid_valid (m.group))
        return -1;
    //  "-" is an empty list.
    zim_str_t a = req->nargs > 3 ? req->args[3] : zim_str ("-");
    zim_str_t b = req->nargs > 4 ? req->args[4] : zim_str ("-");
    if (m.op == ZIM_GADMIN_CREATE) {
        //  create APP GROUP [group|channel] [MEMBERS] [history]
        if (req->nargs > 6 || (req->nargs > 3 && !zim_str_eq (a, "group") &&
                               !zim_str_eq (a, "channel")))
            return -1;
        m.kind = zim_str_eq (a, "channel") ? ZIM_GROUP_CHANNEL : ZIM_GROUP_GROUP;
        m.add = zim_str_eq (b, "-") ? zim_str ("") : b;
        if (req->nargs == 6 && !zim_str_eq (req->args[5], "history"))
            return -1;
        m.history_for_new = req->nargs == 6;
    } else if (m.op == ZIM_GADMIN_MEMBERS) {
        //  members APP GROUP ADD REMOVE ("-": none)
        if (req->nargs != 5)
            return -1;
        m.add = zim_str_eq (a, "-") ? zim_str ("") : a;
        m.remove = zim_str_eq (b, "-") ? zim_str ("") : b;
    } else if (m.op == ZIM_GADMIN_READERS) {
        //  readers APP GROUP GSEQ
        char num[24];
        if (req->nargs != 4 || zim_str_copy (a, num, sizeof num) || zim_parse_u64 (num, &m.gseq))
            return -1;
    } else if (req->nargs != 3)
        return -1;
    zim_wr_reset (&self->wr);
    zim_gadmin_pack (&self->wr, &m);
    return 0;
}

//  The wire code of a refusal by the store.
static int s_code (int64_t status)
{
    return status == ZIM_EVALUE ? ZIM_ERR_BAD_FIELD
           : status <= ZIM_ENOTMEMBER && status >= ZIM_ENOTCHANNEL ? zim_group_wire (status)
                                                                   : ZIM_ERR_INTERNAL;
}

char *zim_storeadmin_verb (void *arg, const zim_admin_req_t *req, int *code, char *text,
                           size_t size)
{
    zim_storeadmin_t *self = (zim_storeadmin_t *)arg;
    bool pushq = zim_str_eq (req->verb, "pushq"), mute = zim_str_eq (req->verb, "mute");
    *code = ZIM_ERR_UNKNOWN_OP;
    if (zim_str_eq (req->verb, "groups")) {
        uint64_t id = ++self->req;
        if (s_gadmin (self, req, id)) {
            *code = ZIM_ERR_BAD_FIELD;
            snprintf (text, size,
                      "groups create APP GROUP [group|channel] [U,U,...|-] [history] | "
                      "members APP GROUP ADD|- REMOVE|- | get|delete|upgrade APP GROUP | "
                      "readers APP GROUP GSEQ");
            return NULL;
        }
        zframe_t *frame = s_call (self, id, ZIM_MSG_GADMIN_R);
        if (!frame) {
            *code = ZIM_ERR_UNAVAILABLE;
            snprintf (text, size, "the store did not answer in %d ms", S_TIMEOUT_MS);
            return NULL;
        }
        zim_rd_t rd;
        int kind;
        uint32_t fields;
        zim_gadmin_r_t r;
        char *result = NULL;
        zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
        zim_msg_kind (&rd, &kind, &fields);
        int bad = zim_gadmin_r_unpack (&rd, fields, &r);
        if (!bad && r.status == 0)
            result = zim_str_dup (r.json);
        else {
            int64_t status = bad ? ZIM_EMALFORMED : r.status;
            *code = s_code (status);
            snprintf (text, size, "the store refused it (%s)", zim_strerror ((int)status));
        }
        zframe_destroy (&frame);
        if (result)
            *code = 0;
        return result;
    }
    if (!pushq && !mute)
        return NULL;
    uint64_t id = ++self->req;
    if ((pushq ? s_push_q (self, req, id) : s_mute (self, req, id)) != 0) {
        *code = ZIM_ERR_BAD_FIELD;
        snprintf (text, size,
                  pushq ? "pushq [take AFTER MAX | ack delivered|dropped|muted QID,QID,...]"
                        : "mute APP UID CONV UNTIL (ms since the epoch; 0 unmutes)");
        return NULL;
    }
    zframe_t *frame = s_call (self, id, pushq ? ZIM_MSG_PUSH_R : ZIM_MSG_MARKED);
    if (!frame) {
        *code = ZIM_ERR_UNAVAILABLE;
        snprintf (text, size, "the store did not answer in %d ms", S_TIMEOUT_MS);
        return NULL;
    }
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    char *result = NULL;
    int64_t status = ZIM_EMALFORMED;
    zim_rd_init (&rd, zframe_data (frame), zframe_size (frame));
    zim_msg_kind (&rd, &kind, &fields);
    if (pushq) {
        zim_push_r_t r;
        if (zim_push_r_unpack (&rd, fields, &r) == 0 && (status = r.status) == 0)
            result = zim_str_dup (r.json);
    } else {
        zim_marked_t r;
        if (zim_marked_unpack (&rd, fields, &r) == 0 && (status = r.status) == 0)
            result = zsys_sprintf ("{\"moved\":%s}", r.moved ? "true" : "false");
    }
    zframe_destroy (&frame);
    if (!result) {
        *code = status == ZIM_EVALUE ? ZIM_ERR_BAD_FIELD : ZIM_ERR_INTERNAL;
        snprintf (text, size, "the store refused it (%s)", zim_strerror ((int)status));
    } else
        *code = 0;
    return result;
}

//  -------------------------------------------------------------------------
//  Selftest: a real store actor, asked through the verbs.

#include "store/zim_store.h"
#include "store/zim_db.h"

//  Runs verb with args (NULL-terminated); returns the result or NULL with
//  *code.
static char *s_test_verb (zim_storeadmin_t *sa, const char *verb, const char *const *args,
                          int *code)
{
    zim_admin_req_t req = {zim_str ("key"), zim_str (verb), {{NULL, 0}}, 0};
    for (; args && args[req.nargs]; req.nargs++)
        req.args[req.nargs] = zim_str (args[req.nargs]);
    char text[256];
    return zim_storeadmin_verb (sa, &req, code, text, sizeof text);
}

void zim_storeadmin_test (bool verbose)
{
    char *dir = zim_db_test_dir ();
    zactor_t *store = zactor_new (zim_store_actor, NULL);
    zstr_sendx (store, "SET", "data", dir, NULL);
    zstr_sendx (store, "SET", "sync", "none", NULL);
    zstr_sendx (store, "BIND", "inproc://zim-storeadmin-test", NULL);
    assert (zsock_wait (store) == 0);
    zstr_sendx (store, "START", NULL);
    assert (zsock_wait (store) == 0);
    zim_storeadmin_t *sa = zim_storeadmin_new ("inproc://zim-storeadmin-test", NULL);
    assert (sa);

    //  A record, queued as a broker would.
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_push_add_pack (&wr, &(zim_push_add_t){{NULL, NULL}, 1});
    zim_push_item_pack (&wr, &(zim_push_item_t){zim_str ("demo"), zim_str ("bob"),
                                                zim_str ("p:alice:bob"), 1, 77, zim_now_ms (),
                                                zim_str ("alice"), zim_str ("hi"), false});
    zsock_t *broker = zsock_new_dealer ("inproc://zim-storeadmin-test");
    zmq_send (zsock_resolve (broker), wr.data, wr.size, 0);

    int code;
    char *json = NULL;
    for (int i = 0; i < 100; i++) {
        free (json);
        json = s_test_verb (sa, "pushq", NULL, &code);
        assert (code == 0 && json);
        if (strstr (json, "\"depth\":1"))
            break;
        zclock_sleep (10);
    }
    assert (strstr (json, "\"depth\":1") && strstr (json, "\"uid\":\"bob\""));
    free (json);
    const char *take[] = {"take", "0", "10", NULL};
    json = s_test_verb (sa, "pushq", take, &code);
    assert (code == 0 && strstr (json, "\"records\":[{") && strstr (json, "\"preview\":\"hi\""));
    free (json);
    const char *mute[] = {"demo", "bob", "p:alice:bob", "99999999999999", NULL};
    json = s_test_verb (sa, "mute", mute, &code);
    assert (code == 0 && streq (json, "{\"moved\":true}"));
    free (json);
    json = s_test_verb (sa, "pushq", take, &code);
    assert (code == 0 && strstr (json, "\"muted\":true"));
    free (json);
    const char *ack[] = {"ack", "muted", "5,1", NULL};
    json = s_test_verb (sa, "pushq", ack, &code);
    assert (code == 0 && streq (json, "{\"removed\":1}"));
    free (json);
    //  Wrong arguments; another verb.
    const char *bad[] = {"ack", "lost", "1", NULL};
    assert (s_test_verb (sa, "pushq", bad, &code) == NULL && code == ZIM_ERR_BAD_FIELD);
    const char *bad_conv[] = {"demo", "bob", "p:bob:alice", "0", NULL};
    assert (s_test_verb (sa, "mute", bad_conv, &code) == NULL && code == ZIM_ERR_BAD_FIELD);
    assert (s_test_verb (sa, "dance", NULL, &code) == NULL && code == ZIM_ERR_UNKNOWN_OP);

    zim_wr_free (&wr);
    zsock_destroy (&broker);
    zim_storeadmin_destroy (&sa);
    zim_storeadmin_destroy (&sa);
    zactor_destroy (&store);
    zim_db_test_rmtree (dir);
    free (dir);
    if (verbose)
        zsys_info ("storeadmin: pushq, take, ack and mute through a real store");
}
