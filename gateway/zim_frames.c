/*  zim_frames.c: client frames to backbone requests, and broker answers to
    client frames (see zim_frames.h).
*/
#include "gateway/zim_frames.h"
#include "gateway/zim_links.h"
#include "gateway/zim_rooms.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_conv.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <inttypes.h>

//  Largest page a sync or history may ask for.
#define S_READ_LIMIT_MAX 1000
//  Largest conversation list page.
#define S_CONVS_LIMIT_MAX 100

static const zim_str_t s_nocid = {NULL, 0};

//  A cid as an error frame names it: at most ZIM_ID_MAX bytes, cut at a
//  UTF-8 character boundary, so that a client can tell which send failed
//  and stop retrying it, and its string decoder does not choke.
static zim_str_t s_cid_echo (zim_str_t cid)
{
    if (!cid.ptr || cid.len <= ZIM_ID_MAX)
        return cid;
    size_t len = ZIM_ID_MAX;
    while (len > 0 && ((uint8_t)cid.ptr[len] & 0xc0) == 0x80)
        len--;
    return (zim_str_t){cid.ptr, len};
}

//  Fills the session part of a backbone request.
static zim_who_t s_who (zim_session_t *session)
{
    zim_who_t who = {zim_session_id (session), zim_str (zim_session_app (session)),
                     zim_str (zim_session_uid (session)), zim_str (zim_session_device (session))};
    return who;
}

//  Forwards edge->wr to the session's broker. Returns 0, or -1 after
//  answering 5030 (cid/rid name the request).
static int s_forward (zim_edge_t *edge, zim_session_t *session, zim_str_t cid, bool has_rid,
                      uint64_t rid)
{
    if (zim_links_forward (edge->links, zim_session_app (session), zim_session_uid (session)) == 0)
        return 0;
    edge->unavailable++;
    zim_shell_warn (edge->shell, "broker queue full or broker unreachable: answered 5030 to %s/%s",
                    zim_session_app (session), zim_session_uid (session));
    zim_session_error (session, ZIM_ERR_UNAVAILABLE, "broker unavailable, retry", cid, has_rid,
                       rid);
    return -1;
}

int zim_frames_auth (zim_edge_t *edge, zim_session_t *session, const char *token, size_t len,
                     const char *device)
{
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1], who[48];
    snprintf (who, sizeof who, "connection %" PRIu64, zim_session_id (session));
    int rc = zim_edge_verify_token (edge, token, len, who, app, uid);
    if (rc)
        return rc;
    if (device)
        zim_session_set_device (session, device);
    rc = zim_sessions_admit (edge->sessions, session, app, uid);
    if (rc)
        return rc;
    zim_rooms_on_auth (edge, session, token, len);
    zim_wr_reset (&edge->fr);
    zim_cframe_auth_ok (&edge->fr, zim_str (app), zim_str (uid),
                        zim_str (zim_session_device (session)));
    zim_session_write (session, edge->fr.data, edge->fr.size, false);
    return 0;
}

//  An auth frame: a bad device is a bad field; a refused token counts
//  towards max_auth_failures, after which the connection closes (4015).
static void s_auth_frame (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    if (zim_session_authed (session)) {
        zim_session_error (session, ZIM_ERR_ALREADY_AUTHED, "already authenticated", s_nocid, false,
                           0);
        return;
    }
    char device[ZIM_ID_MAX + 1];
    if (f->device.ptr) {
        if (!zim_cid_valid (f->device)) {
            edge->bad_frames++;
            zim_session_error (session, ZIM_ERR_BAD_FIELD,
                               "device must be 1..64 printable ASCII characters", s_nocid, false,
                               0);
            return;
        }
        zim_str_copy (f->device, device, sizeof device);
    }
    int rc =
        zim_frames_auth (edge, session, f->token.ptr, f->token.len, f->device.ptr ? device : NULL);
    if (rc == 0)
        return;
    if (rc == ZIM_ERR_TOO_MANY_CONNS) {
        zim_session_fail (session, rc, "too many connections for this user", rc);
        return;
    }
    zim_session_error (session, rc, zim_strerror (rc), s_nocid, false, 0);
    if (zim_session_auth_failed (session) >= edge->max_auth_failures) {
        edge->auth_failures_closed++;
        zim_shell_warn (edge->shell, "connection %" PRIu64 ": %" PRIu64 " failed auth: closed",
                        zim_session_id (session), edge->max_auth_failures);
        zim_session_fail (session, ZIM_ERR_AUTH_FAILURES, "too many failed auth attempts",
                          ZIM_ERR_AUTH_FAILURES);
    }
}

//  A send: a valid cid, no other sender, a valid recipient, within the rate.
static void s_send (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    const char *app = zim_session_app (session), *uid = zim_session_uid (session);
    zim_str_t cid = s_cid_echo (f->cid);
    if (!zim_cid_valid (f->cid)) {
        edge->bad_frames++;
        zim_shell_warn (edge->shell,
                        "%s/%s sent a cid of %zu bytes that is not 1..64 printable "
                        "ASCII: refused (4001)",
                        app, uid, f->cid.len);
        zim_session_error (session, ZIM_ERR_BAD_FIELD,
                           "cid must be 1..64 printable ASCII characters", cid, false, 0);
        return;
    }
    if (f->has_from && !zim_str_eq (f->from, uid)) {
        zim_shell_warn (edge->shell, "%s/%s tried to send as \"%.*s\": refused (4030)", app, uid,
                        (int)(f->from.len > 64 ? 64 : f->from.len), f->from.ptr);
        zim_session_error (session, ZIM_ERR_FORBIDDEN, "from names another user", cid, false, 0);
        return;
    }
    if (f->has_group == (f->to.ptr != NULL)) { //  groups: one of to and group
        zim_session_error (session, ZIM_ERR_BAD_FIELD, "send needs to or group", cid, false, 0);
        return;
    }
    if (!f->has_group && !zim_uid_valid (f->to)) {
        zim_session_error (session, ZIM_ERR_BAD_RECIPIENT, "to is not a valid user id", cid, false,
                           0);
        return;
    }
    if (!zim_session_take_send (session, zim_edge_now_ms ())) {
        edge->rate_limited++;
        zim_shell_warn (edge->shell, "%s/%s over the send rate (%" PRIu64 "/s): answered 4029", app,
                        uid, edge->send_rate);
        zim_session_error (session, ZIM_ERR_RATE_LIMITED, "rate limited", cid, false, 0);
        return;
    }
    zim_send_t m = {s_who (session), f->cid, f->to, f->body};
    zim_wr_reset (&edge->wr);
    if (f->has_group) //  groups: GSEND (broker/zim_gfan.h)
        zim_gsend_pack (&edge->wr, &(zim_gsend_t){s_who (session), f->cid, f->group, f->body});
    else
        zim_send_pack (&edge->wr, &m);
    edge->sends++;
    s_forward (edge, session, cid, false, 0);
}

//  A sync or history: a valid peer, within the reads in flight and the
//  read rate. Every refusal names the rid.
static void s_read (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    const char *app = zim_session_app (session), *uid = zim_session_uid (session);
    if (f->op == ZIM_OP_HISTORY && !zim_uid_valid (f->peer)) {
        zim_session_error (session, ZIM_ERR_BAD_RECIPIENT, "peer is not a valid user id", s_nocid,
                           f->has_rid, f->rid);
        return;
    }
    int rc = zim_session_read_begin (session, zim_edge_now_ms ());
    if (rc == ZIM_ERR_TOO_MANY_READS) {
        edge->reads_too_many++;
        zim_shell_warn (edge->shell,
                        "%s/%s has %" PRIu64 " reads unanswered (max_reads_inflight): 4028", app,
                        uid, edge->max_reads_inflight);
        zim_session_error (session, rc, "too many reads in flight: wait for their pages", s_nocid,
                           f->has_rid, f->rid);
        return;
    }
    if (rc) {
        edge->reads_rate_limited++;
        zim_shell_warn (edge->shell, "%s/%s over the read rate (%" PRIu64 "/s): answered 4029", app,
                        uid, edge->read_rate);
        zim_session_error (session, rc, "read rate limited", s_nocid, f->has_rid, f->rid);
        return;
    }
    uint64_t limit = f->limit > S_READ_LIMIT_MAX ? S_READ_LIMIT_MAX : f->limit;
    zim_wr_reset (&edge->wr);
    if (f->op == ZIM_OP_CONVS) {
        zim_convs_get_t m = {s_who (session), f->rid,
                             limit > S_CONVS_LIMIT_MAX ? S_CONVS_LIMIT_MAX : limit, f->before};
        zim_convs_get_pack (&edge->wr, &m);
    } else if (f->op == ZIM_OP_GROUPS || f->op == ZIM_OP_CSYNC) { //  groups: GGET
        bool log = f->op == ZIM_OP_CSYNC;
        zim_gget_pack (&edge->wr, &(zim_gget_t){s_who (session), f->rid, log ? ZIM_GREAD_LOG
                                                                            : ZIM_GREAD_LIST,
                                                log ? f->group : zim_str (""),
                                                f->since < 0 ? 0 : (uint64_t)f->since, limit});
    } else if (f->op == ZIM_OP_SYNC) {
        zim_sync_t m = {s_who (session), f->rid, f->since, limit};
        zim_sync_pack (&edge->wr, &m);
    } else {
        zim_history_t m = {s_who (session), f->rid, f->peer, f->before, limit};
        zim_history_pack (&edge->wr, &m);
    }
    if (s_forward (edge, session, s_nocid, f->has_rid, f->rid))
        zim_session_read_cancel (session);
    else
        edge->reads++;
}

//  A read, delivered or mute: a conversation the user takes part in,
//  within the send rate (each costs a store write and, moved, deliveries).
static void s_receipt (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    const char *app = zim_session_app (session), *uid = zim_session_uid (session);
    zim_str_t peer;
    int rc = zim_conv_check (f->conv, zim_str (uid), &peer);
    if (rc) {
        edge->bad_frames++;
        zim_shell_warn (edge->shell, "%s/%s sent %.*s for a conv it does not take part in (%d)",
                        app, uid, (int)f->op_name.len, f->op_name.ptr, rc);
        zim_session_error (session, rc,
                           rc == ZIM_ERR_FORBIDDEN ? "not a conversation of this user"
                                                   : "conv must be p:UID:UID or g:GROUP",
                           s_nocid, false, 0);
        return;
    }
    if (!zim_session_take_send (session, zim_edge_now_ms ())) {
        edge->rate_limited++;
        zim_shell_warn (edge->shell, "%s/%s over the send rate (%" PRIu64 "/s): answered 4029", app,
                        uid, edge->send_rate);
        zim_session_error (session, ZIM_ERR_RATE_LIMITED, "rate limited", s_nocid, false, 0);
        return;
    }
    uint64_t what = f->op == ZIM_OP_READ        ? ZIM_MARK_READ
                    : f->op == ZIM_OP_DELIVERED ? ZIM_MARK_DELIVERED
                                                : ZIM_MARK_MUTE;
    zim_receipt_t m = {s_who (session), f->conv, what, what == ZIM_MARK_MUTE ? f->until : f->seq};
    zim_wr_reset (&edge->wr);
    zim_receipt_pack (&edge->wr, &m);
    s_forward (edge, session, s_nocid, false, 0);
}

//  The app went to the background or came back: its route says so (its
//  messages are then pushed as well as delivered).
static void s_state (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    if (zim_session_background (session) == f->background)
        return;
    zim_session_set_background (session, f->background);
    zim_links_presence (edge->links, session, true);
}

//  Handles one decoded frame.
static void s_frame (zim_edge_t *edge, zim_session_t *session, const zim_cframe_t *f)
{
    if (f->op == ZIM_OP_PING) {
        zim_wr_reset (&edge->fr);
        zim_cframe_pong (&edge->fr, f->has_t ? f->t : s_nocid);
        zim_session_write (session, edge->fr.data, edge->fr.size, false);
        return;
    }
    if (f->op == ZIM_OP_AUTH) {
        s_auth_frame (edge, session, f);
        return;
    }
    if (!zim_session_authed (session)) {
        zim_session_error (session, ZIM_ERR_AUTH_REQUIRED, "authenticate first",
                           f->op == ZIM_OP_SEND ? s_cid_echo (f->cid) : s_nocid, f->has_rid,
                           f->rid);
        return;
    }
    switch (f->op) {
    case ZIM_OP_SEND:
        s_send (edge, session, f);
        break;
    case ZIM_OP_SYNC:
    case ZIM_OP_HISTORY:
    case ZIM_OP_CONVS:
    case ZIM_OP_GROUPS: //  groups
    case ZIM_OP_CSYNC:
        s_read (edge, session, f);
        break;
    case ZIM_OP_READ:
    case ZIM_OP_DELIVERED:
    case ZIM_OP_MUTE:
        s_receipt (edge, session, f);
        break;
    case ZIM_OP_STATE:
        s_state (edge, session, f);
        break;
    case ZIM_OP_CURSOR: {
        zim_cursor_t m = {s_who (session), f->seq};
        zim_wr_reset (&edge->wr);
        zim_cursor_pack (&edge->wr, &m);
        s_forward (edge, session, s_nocid, false, 0);
        break;
    }
    default:
        if (!zim_rooms_frame (edge, session, f)) //  join, leave, publish, signal
            zim_session_error (session, ZIM_ERR_UNKNOWN_OP, "unknown op", s_nocid, false, 0);
        break;
    }
}

void zim_frames_message (zim_edge_t *edge, zim_session_t *session, const uint8_t *data, size_t size,
                         bool binary)
{
    if (!binary) {
        edge->bad_frames++;
        zim_session_error (session, ZIM_ERR_MALFORMED,
                           "text messages are not accepted: send msgpack in binary messages",
                           s_nocid, false, 0);
        return;
    }
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    while (zim_rd_left (&rd) > 0 && !zim_session_closing (session)) {
        zim_cframe_t f;
        const char *why = NULL;
        int rc = zim_cframe_decode (&rd, &f, &why);
        edge->frames_in++;
        if (rc == 0) {
            s_frame (edge, session, &f);
            continue;
        }
        edge->bad_frames++;
        zim_shell_warn (edge->shell, "connection %" PRIu64 " (%s): bad frame: %s (%d)",
                        zim_session_id (session),
                        zim_session_authed (session) ? zim_session_uid (session)
                                                     : "unauthenticated",
                        why ? why : zim_strerror (rc), rc);
        zim_session_error (session, rc, why ? why : zim_strerror (rc), s_cid_echo (f.cid),
                           f.has_rid, f.rid);
        if (rc == ZIM_ERR_MALFORMED)
            break; //  cannot find the next frame
    }
}

//  True if frames begin with the answer to a read: a page or convs, or an error
//  naming a rid (the broker names one in every error it answers a read with).
static bool s_is_reply (zim_str_t frames)
{
    zim_rd_t rd;
    zim_rd_init (&rd, frames.ptr, frames.len);
    uint32_t n;
    bool page = false, error = false, rid = false;
    if (zim_rd_map (&rd, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key, op;
        if (zim_rd_str (&rd, &key))
            return false;
        if (zim_str_eq (key, "op") && zim_rd_str (&rd, &op) == 0) {
            page = zim_str_eq (op, "page") || zim_str_eq (op, "convs") || zim_str_eq (op, "groups");
            error = zim_str_eq (op, "error");
            continue;
        }
        rid |= zim_str_eq (key, "rid");
        if (zim_rd_skip (&rd, NULL))
            return false;
    }
    return page || (error && rid);
}

void zim_frames_out (zim_edge_t *edge, const void *data, size_t size)
{
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    int kind;
    uint32_t fields;
    zim_out_t out;
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_OUT ||
        zim_out_unpack (&rd, fields, &out)) {
        edge->bad_messages++;
        zim_shell_warn (edge->shell, "dropped an undecodable backbone message (%zu bytes)", size);
        return;
    }
    //  An answer goes to the one connection that asked.
    bool reply = out.nconns == 1 && s_is_reply (out.frames);
    for (uint32_t i = 0; i < out.nconns; i++) {
        uint64_t id;
        if (zim_rd_uint (&out.conns, &id))
            break;
        zim_session_t *session = zim_sessions_lookup (edge->sessions, id);
        if (session)
            zim_session_write (session, out.frames.ptr, out.frames.len, reply);
        else
            edge->out_gone++; //  closed since the broker asked for its route
    }
}

//  -------------------------------------------------------------------------
//  Selftest: sessions without sockets, a ROUTER playing the broker.

//  What a session was sent, frame by frame; then "written" away.
typedef struct {
    int n;           //  frames
    char op[8][16];  //  their ops
    int code[8];     //  error codes
    char cid[8][80]; //  cids ("" if none)
    int64_t rid[8];  //  rids (-1 if none)
} s_test_out_t;

static void s_test_take (zim_session_t *session, s_test_out_t *t)
{
    memset (t, 0, sizeof *t);
    size_t size;
    const uint8_t *data = zim_session_output (session, &size);
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    while (zim_rd_left (&rd) > 0 && t->n < 8) {
        uint32_t pairs;
        assert (zim_rd_map (&rd, &pairs) == 0);
        t->rid[t->n] = -1;
        for (uint32_t i = 0; i < pairs; i++) {
            zim_str_t key, v;
            uint64_t u;
            assert (zim_rd_str (&rd, &key) == 0);
            if (zim_str_eq (key, "op") && zim_rd_str (&rd, &v) == 0)
                zim_str_copy (v, t->op[t->n], sizeof t->op[0]);
            else if (zim_str_eq (key, "cid") && zim_rd_str (&rd, &v) == 0)
                zim_str_copy (v, t->cid[t->n], sizeof t->cid[0]);
            else if (zim_str_eq (key, "code") && zim_rd_uint (&rd, &u) == 0)
                t->code[t->n] = (int)u;
            else if (zim_str_eq (key, "rid") && zim_rd_uint (&rd, &u) == 0)
                t->rid[t->n] = (int64_t)u;
            else
                assert (zim_rd_skip (&rd, NULL) == 0);
        }
        t->n++;
    }
    zim_session_writable (session);
}

//  Feeds session one frame built in wr.
static void s_test_feed (zim_edge_t *edge, zim_session_t *session, zim_wr_t *wr)
{
    zim_frames_message (edge, session, (const uint8_t *)wr->data, wr->size, true);
    zim_wr_reset (wr);
}

//  Encodes {"op":"send","to":"bob","cid":cid,"body":"x"}.
static void s_test_send (zim_wr_t *wr, const char *cid)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, "bob");
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, "x");
}

//  Encodes {"op":op,"rid":rid, key: value (a string, if key)}.
static void s_test_op (zim_wr_t *wr, const char *op, uint64_t rid, const char *key,
                       const char *value)
{
    zim_wr_map (wr, key ? 3 : 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, op);
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
    if (key) {
        zim_wr_cstr (wr, key);
        zim_wr_cstr (wr, value);
    }
}

void zim_frames_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    const char *secret = "frames-secret-frames-secret";
    assert (zim_shell_set (edge->shell, "app_secret", "demo", secret) == 0);
    edge->max_reads_inflight = 2;
    zsock_t *broker = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (broker, "tcp://127.0.0.1:*");
    char ep[64];
    snprintf (ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    assert (zim_links_connect (edge->links, "broker", ep) == 0);
    zim_wr_t wr;
    zim_wr_init (&wr);
    s_test_out_t t;
    uint64_t now = zim_now_ms () / 1000;
    char *good = zim_token_sign (secret, "demo", "alice", now + 60);

    //  Before auth: 4010 naming the cid; a bad device: 4001.
    zim_session_t *s = zim_sessions_open (edge->sessions, NULL);
    s_test_send (&wr, "c0");
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 1 && t.code[0] == ZIM_ERR_AUTH_REQUIRED && streq (t.cid[0], "c0"));
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "auth");
    zim_wr_cstr (&wr, "token");
    zim_wr_cstr (&wr, good);
    zim_wr_cstr (&wr, "device");
    zim_wr_cstr (&wr, "bad device");
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 1 && t.code[0] == ZIM_ERR_BAD_FIELD && !zim_session_authed (s));
    //  Three bad tokens: three 4011, then 4015 and the close.
    for (int i = 0; i < 3; i++) {
        zim_wr_map (&wr, 2);
        zim_wr_cstr (&wr, "op");
        zim_wr_cstr (&wr, "auth");
        zim_wr_cstr (&wr, "token");
        zim_wr_cstr (&wr, "not.a.token");
    }
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 4 && t.code[0] == ZIM_ERR_BAD_TOKEN && t.code[2] == ZIM_ERR_BAD_TOKEN);
    assert (t.code[3] == ZIM_ERR_AUTH_FAILURES && zim_session_closing (s));
    assert (edge->auth_failures == 3 && edge->auth_failures_closed == 1);
    zim_sessions_close (edge->sessions, &s);

    //  A good token: auth_ok.
    s = zim_sessions_open (edge->sessions, NULL);
    assert (zim_frames_auth (edge, s, good, strlen (good), "phone") == 0);
    s_test_take (s, &t);
    assert (t.n == 1 && streq (t.op[0], "auth_ok") && zim_session_authed (s));

    //  cids: too long (echoed cut to 64 bytes), empty, non-printable: 4001.
    char cid[100];
    memset (cid, 'x', sizeof cid - 1);
    cid[sizeof cid - 1] = 0;
    const char *cids[] = {cid, "", "tab\there"};
    for (size_t i = 0; i < 3; i++)
        s_test_send (&wr, cids[i]);
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 3 && t.code[0] == ZIM_ERR_BAD_FIELD && strlen (t.cid[0]) == ZIM_ID_MAX);
    assert (t.code[1] == ZIM_ERR_BAD_FIELD && streq (t.cid[1], ""));
    assert (t.code[2] == ZIM_ERR_BAD_FIELD && streq (t.cid[2], "tab\there"));
    //  A cut never splits a UTF-8 character.
    zim_str_t utf = s_cid_echo (zim_str ("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9x\xc3\xa9"));
    assert (utf.len == 64);
    utf = s_cid_echo (zim_str ("x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                               "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
    assert (utf.len == 63);

    //  Reads: a bad field and a bad peer name their rid; two go to the
    //  broker, the third waits its turn (4028).
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 9);
    zim_wr_cstr (&wr, "since");
    zim_wr_int (&wr, -5);
    s_test_op (&wr, "history", 10, "peer", "no one");
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 2 && t.code[0] == ZIM_ERR_BAD_FIELD && t.rid[0] == 9);
    assert (t.code[1] == ZIM_ERR_BAD_RECIPIENT && t.rid[1] == 10);
    //  Wait until the DEALER is connected (ZMQ_IMMEDIATE refuses before).
    int64_t deadline = zclock_mono () + 10000;
    zim_wr_reset (&edge->wr);
    zim_wr_cstr (&edge->wr, "probe");
    while (zim_links_forward (edge->links, "demo", "alice") != 0 && zclock_mono () < deadline)
        zclock_sleep (20);
    zmsg_t *probe = zmsg_recv (broker);
    assert (probe && zframe_streq (zmsg_last (probe), "\xa5probe"));
    zmsg_destroy (&probe);
    s_test_op (&wr, "sync", 11, NULL, NULL);
    s_test_op (&wr, "history", 12, "peer", "bob");
    s_test_op (&wr, "sync", 13, NULL, NULL);
    s_test_feed (edge, s, &wr);
    s_test_take (s, &t);
    assert (t.n == 1 && t.code[0] == ZIM_ERR_TOO_MANY_READS && t.rid[0] == 13);
    assert (edge->reads == 2 && edge->reads_too_many == 1 && zim_session_reads (s) == 2);
    for (int i = 0; i < 2; i++) {
        zmsg_t *msg = zmsg_recv (broker);
        zim_rd_t rd;
        zim_rd_init (&rd, zframe_data (zmsg_last (msg)), zframe_size (zmsg_last (msg)));
        int kind;
        uint32_t fields;
        assert (zim_msg_kind (&rd, &kind, &fields) == 0);
        assert (kind == (i == 0 ? ZIM_MSG_SYNC : ZIM_MSG_HISTORY));
        zmsg_destroy (&msg);
    }

    //  The broker's answers: a page and an error naming a rid are replies
    //  (their slots come back once written); a live msg is not.
    zim_wr_t fr;
    zim_wr_init (&fr);
    uint64_t id = zim_session_id (s);
    zim_cframe_page_begin (&fr, 11, false, 0);
    zim_out_encode (&wr, &id, 1, (zim_str_t){(const char *)fr.data, fr.size});
    zim_frames_out (edge, wr.data, wr.size);
    assert (zim_session_pending_replies (s) == fr.size);
    zim_wr_reset (&wr);
    zim_wr_reset (&fr);
    zim_cframe_error (&fr, ZIM_ERR_TIMEOUT, "store timeout", s_nocid, true, 12);
    zim_out_encode (&wr, &id, 1, (zim_str_t){(const char *)fr.data, fr.size});
    zim_frames_out (edge, wr.data, wr.size);
    size_t replies = zim_session_pending_replies (s);
    assert (replies > fr.size);
    zim_wr_reset (&wr);
    zim_wr_reset (&fr);
    zim_item_t item = {1, 2, 3, zim_str ("bob"), zim_str ("alice"), zim_str ("\xa2hi")};
    zim_cframe_msg (&fr, &item);
    uint64_t ids[2] = {id, 999};
    zim_out_encode (&wr, ids, 2, (zim_str_t){(const char *)fr.data, fr.size});
    zim_frames_out (edge, wr.data, wr.size);
    zim_wr_reset (&wr);
    assert (edge->out_gone == 1); //  999 is not held: counted, not an error
    assert (zim_session_pending_replies (s) == replies && zim_session_pending (s) > replies);
    s_test_take (s, &t);
    assert (t.n == 3 && streq (t.op[0], "page") && streq (t.op[2], "msg"));
    assert (zim_session_reads (s) == 0);
    //  Garbage from a broker is counted; a text message gets 4000.
    zim_frames_out (edge, "\x92\x0a", 2);
    assert (edge->bad_messages == 1);
    zim_frames_message (edge, s, (const uint8_t *)"{}", 2, false);
    s_test_take (s, &t);
    assert (t.n == 1 && t.code[0] == ZIM_ERR_MALFORMED);

    zim_wr_free (&wr);
    zim_wr_free (&fr);
    free (good);
    zim_edge_destroy (&edge);
    zsock_destroy (&broker);
}
