/*  zim_msg.c: codecs for the client frames and the backbone messages
    declared in zim_msg.h. Decoders check every field's presence and type and
    leave through one malformed exit; encoders append to a zim_wr_t.
*/
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

const char *zim_strerror (int code)
{
    switch (code) {
    case 0:
        return "ok";
    case ZIM_EMALFORMED:
        return "malformed message";
    case ZIM_ETYPE:
        return "field of the wrong type";
    case ZIM_EMISSING:
        return "required field missing";
    case ZIM_ETOOLONG:
        return "value too long";
    case ZIM_EKIND:
        return "unknown message kind";
    case ZIM_EVALUE:
        return "value out of range";
    case ZIM_ESTORE:
        return "store failure";
    case ZIM_EFULL:
        return "queue full, retry later";
    case ZIM_ERR_MALFORMED:
        return "malformed frame";
    case ZIM_ERR_BAD_FIELD:
        return "bad or missing field";
    case ZIM_ERR_TOO_LARGE:
        return "frame too large";
    case ZIM_ERR_UNKNOWN_OP:
        return "unknown op";
    case ZIM_ERR_BAD_RECIPIENT:
        return "bad recipient";
    case ZIM_ERR_CID_CONFLICT:
        return "cid already used for a different message";
    case ZIM_ERR_AUTH_TIMEOUT:
        return "authentication timeout";
    case ZIM_ERR_AUTH_FAILURES:
        return "too many failed authentication attempts";
    case ZIM_ERR_TOKEN_NOT_YET:
        return "token not yet valid";
    case ZIM_ERR_TOKEN_CLAIMS:
        return "token audience or issuer refused";
    case ZIM_ERR_TOKEN_ALG:
        return "token algorithm refused";
    case ZIM_ERR_TOO_MANY_READS:
        return "too many requests in flight";
    case ZIM_ERR_TOO_MANY_CONNS:
        return "too many connections for this user";
    case ZIM_ERR_AUTH_REQUIRED:
        return "authentication required";
    case ZIM_ERR_BAD_TOKEN:
        return "bad token";
    case ZIM_ERR_TOKEN_EXPIRED:
        return "token expired";
    case ZIM_ERR_ALREADY_AUTHED:
        return "already authenticated";
    case ZIM_ERR_FORBIDDEN:
        return "forbidden";
    case ZIM_ERR_RATE_LIMITED:
        return "rate limited";
    case ZIM_ERR_IDLE_TIMEOUT:
        return "idle timeout";
    case ZIM_ERR_SLOW_CONSUMER:
        return "slow consumer";
    case ZIM_ERR_INTERNAL:
        return "internal error";
    case ZIM_ERR_UNAVAILABLE:
        return "unavailable, retry later";
    case ZIM_ERR_TIMEOUT:
        return "timeout, retry later";
    default:
        return "unknown error";
    }
}

bool zim_uid_valid (zim_str_t s)
{
    if (!s.ptr || s.len == 0 || s.len > ZIM_ID_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool zim_cid_valid (zim_str_t s)
{
    if (!s.ptr || s.len == 0 || s.len > ZIM_ID_MAX)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < 0x21 || s.ptr[i] > 0x7e)
            return false;
    return true;
}

int zim_conv_peer (zim_str_t a, zim_str_t b, char *buf, size_t size)
{
    size_t min = a.len < b.len ? a.len : b.len;
    int cmp = memcmp (a.ptr, b.ptr, min);
    if (cmp > 0 || (cmp == 0 && a.len > b.len)) {
        zim_str_t t = a;
        a = b;
        b = t;
    }
    size_t len = 2 + a.len + 1 + b.len;
    if (len + 1 > size)
        return -1;
    memcpy (buf, "p:", 2);
    memcpy (buf + 2, a.ptr, a.len);
    buf[2 + a.len] = ':';
    memcpy (buf + 3 + a.len, b.ptr, b.len);
    buf[len] = 0;
    return (int) len;
}

//  -------------------------------------------------------------------------
//  Client frames

//  Maps an op string to its enum.
static zim_op_t s_op_lookup (zim_str_t name)
{
    static const struct {
        const char *name;
        zim_op_t op;
    } ops[] = {{"send", ZIM_OP_SEND}, {"ping", ZIM_OP_PING},       {"cursor", ZIM_OP_CURSOR},
               {"sync", ZIM_OP_SYNC}, {"history", ZIM_OP_HISTORY}, {"auth", ZIM_OP_AUTH}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (zim_str_eq (name, ops[i].name))
            return ops[i].op;
    return ZIM_OP_UNKNOWN;
}

int zim_cframe_decode (zim_rd_t *rd, zim_cframe_t *f, const char **why)
{
    memset (f, 0, sizeof *f);
    f->since = -1;
    const char *bad = NULL; //  first bad field, if any
    bool has_op = false, has_token = false, has_to = false, has_cid = false, has_body = false,
         has_peer = false, has_seq = false;
    uint32_t pairs;
    if (zim_rd_map (rd, &pairs)) {
        *why = zim_rd_skip (rd, NULL) == 0 ? "frame is not a map" : "not valid msgpack";
        return ZIM_ERR_MALFORMED;
    }
    for (uint32_t i = 0; i < pairs; i++) {
        zim_str_t key;
        if (zim_rd_str (rd, &key)) {
            if (zim_rd_skip (rd, NULL) || zim_rd_skip (rd, NULL))
                goto malformed;
            if (!bad)
                bad = "map keys must be strings";
            continue;
        }
        zim_rd_t at = *rd;
        int rc = -1;
        zim_mp_type_t type = zim_rd_peek (rd);
        if (zim_str_eq (key, "op")) {
            rc = zim_rd_str (rd, &f->op_name);
            has_op = rc == 0;
            if (rc && !bad)
                bad = "op must be a string";
        }
        else if (zim_str_eq (key, "token")) {
            rc = zim_rd_str (rd, &f->token);
            has_token = rc == 0;
            if (rc && !bad)
                bad = "token must be a string";
        }
        else if (zim_str_eq (key, "device")) {
            rc = zim_rd_str (rd, &f->device);
            if (rc && !bad)
                bad = "device must be a string";
        }
        else if (zim_str_eq (key, "to")) {
            rc = zim_rd_str (rd, &f->to);
            has_to = rc == 0;
            if (rc && !bad)
                bad = "to must be a string";
        }
        else if (zim_str_eq (key, "cid")) {
            rc = zim_rd_str (rd, &f->cid);
            has_cid = rc == 0;
            if (rc && !bad)
                bad = "cid must be a string";
        }
        else if (zim_str_eq (key, "body")) {
            rc = zim_rd_skip (rd, &f->body);
            if (rc)
                goto malformed;
            has_body = true;
        }
        else if (zim_str_eq (key, "from")) {
            rc = zim_rd_str (rd, &f->from);
            f->has_from = true; //  present at all: a non-string is still a claim
            if (rc && !bad)
                bad = "from must be a string";
        }
        else if (zim_str_eq (key, "peer")) {
            rc = zim_rd_str (rd, &f->peer);
            has_peer = rc == 0;
            if (rc && !bad)
                bad = "peer must be a string";
        }
        else if (zim_str_eq (key, "t")) {
            rc = zim_rd_skip (rd, &f->t);
            if (rc)
                goto malformed;
            f->has_t = true;
        }
        else if (zim_str_eq (key, "since")) {
            if (type == ZIM_MP_NIL)
                rc = zim_rd_nil (rd);
            else {
                rc = zim_rd_int (rd, &f->since);
                if (rc == 0 && f->since < 0)
                    rc = -1;
            }
            if (rc && !bad)
                bad = "since must be a non-negative integer";
        }
        else if (zim_str_eq (key, "limit")) {
            rc = zim_rd_uint (rd, &f->limit);
            if (rc && !bad)
                bad = "limit must be a non-negative integer";
        }
        else if (zim_str_eq (key, "seq")) {
            rc = zim_rd_uint (rd, &f->seq);
            has_seq = rc == 0;
            if (rc && !bad)
                bad = "seq must be a non-negative integer";
        }
        else if (zim_str_eq (key, "before")) {
            rc = zim_rd_uint (rd, &f->before);
            if (rc && !bad)
                bad = "before must be a non-negative integer";
        }
        else if (zim_str_eq (key, "rid")) {
            rc = zim_rd_uint (rd, &f->rid);
            f->has_rid = rc == 0;
            if (rc && !bad)
                bad = "rid must be a non-negative integer";
        }
        else
            rc = -1; //  unknown keys are skipped: newer clients may add fields
        if (rc) {
            *rd = at;
            if (zim_rd_skip (rd, NULL))
                goto malformed;
        }
    }
    if (!has_op) {
        *why = bad ? bad : "op missing";
        return ZIM_ERR_BAD_FIELD;
    }
    f->op = s_op_lookup (f->op_name);
    if (f->op == ZIM_OP_UNKNOWN) {
        *why = "unknown op";
        return ZIM_ERR_UNKNOWN_OP;
    }
    if (bad) {
        *why = bad;
        return ZIM_ERR_BAD_FIELD;
    }
    switch (f->op) {
    case ZIM_OP_AUTH:
        if (!has_token)
            bad = "auth needs token";
        break;
    case ZIM_OP_SEND:
        if (!has_to)
            bad = "send needs to";
        else if (!has_cid)
            bad = "send needs cid";
        else if (!has_body)
            bad = "send needs body";
        break;
    case ZIM_OP_CURSOR:
        if (!has_seq)
            bad = "cursor needs seq";
        break;
    case ZIM_OP_HISTORY:
        if (!has_peer)
            bad = "history needs peer";
        break;
    default:
        break;
    }
    if (bad) {
        *why = bad;
        return ZIM_ERR_BAD_FIELD;
    }
    *why = NULL;
    return 0;
malformed:
    *why = "not valid msgpack";
    return ZIM_ERR_MALFORMED;
}

void zim_cframe_auth_ok (zim_wr_t *wr, zim_str_t app, zim_str_t uid, zim_str_t device)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "auth_ok");
    zim_wr_cstr (wr, "app");
    zim_wr_str (wr, app);
    zim_wr_cstr (wr, "uid");
    zim_wr_str (wr, uid);
    zim_wr_cstr (wr, "device");
    zim_wr_str (wr, device);
}

void zim_cframe_pong (zim_wr_t *wr, zim_str_t t)
{
    zim_wr_map (wr, t.ptr ? 2 : 1);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "pong");
    if (t.ptr) {
        zim_wr_cstr (wr, "t");
        zim_wr_raw (wr, t.ptr, t.len);
    }
}

void zim_cframe_ack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts)
{
    zim_wr_map (wr, 5);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "ack");
    zim_wr_cstr (wr, "cid");
    zim_wr_str (wr, cid);
    zim_wr_cstr (wr, "id");
    zim_wr_uint (wr, id);
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, seq);
    zim_wr_cstr (wr, "ts");
    zim_wr_uint (wr, ts);
}

void zim_cframe_error (zim_wr_t *wr, int code, const char *text, zim_str_t cid, bool has_rid,
                       uint64_t rid)
{
    zim_wr_map (wr, 3 + (cid.ptr ? 1 : 0) + (has_rid ? 1 : 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "error");
    zim_wr_cstr (wr, "code");
    zim_wr_int (wr, code);
    zim_wr_cstr (wr, "text");
    zim_wr_cstr (wr, text ? text : zim_strerror (code));
    if (cid.ptr) {
        zim_wr_cstr (wr, "cid");
        zim_wr_str (wr, cid);
    }
    if (has_rid) {
        zim_wr_cstr (wr, "rid");
        zim_wr_uint (wr, rid);
    }
}

//  Writes the message fields shared by "msg" frames and page items.
static void s_item_fields (zim_wr_t *wr, const zim_item_t *item)
{
    char conv[2 * ZIM_ID_MAX + 8];
    int clen = zim_conv_peer (item->from, item->to, conv, sizeof conv);
    if (item->seq) {
        zim_wr_cstr (wr, "seq");
        zim_wr_uint (wr, item->seq);
    }
    zim_wr_cstr (wr, "id");
    zim_wr_uint (wr, item->id);
    zim_wr_cstr (wr, "from");
    zim_wr_str (wr, item->from);
    zim_wr_cstr (wr, "to");
    zim_wr_str (wr, item->to);
    zim_wr_cstr (wr, "conv");
    zim_wr_str (wr, (zim_str_t){conv, clen > 0 ? (size_t) clen : 0});
    zim_wr_cstr (wr, "body");
    if (item->body.len)
        zim_wr_raw (wr, item->body.ptr, item->body.len);
    else
        zim_wr_nil (wr);
    zim_wr_cstr (wr, "ts");
    zim_wr_uint (wr, item->ts);
}

void zim_cframe_msg (zim_wr_t *wr, const zim_item_t *item)
{
    zim_wr_map (wr, 7 + (item->seq ? 1 : 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "msg");
    s_item_fields (wr, item);
}

void zim_cframe_page_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "page");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
    zim_wr_cstr (wr, "more");
    zim_wr_bool (wr, more);
    zim_wr_cstr (wr, "msgs");
    zim_wr_array (wr, count);
}

void zim_cframe_page_item (zim_wr_t *wr, const zim_item_t *item)
{
    zim_wr_map (wr, 6 + (item->seq ? 1 : 0));
    s_item_fields (wr, item);
}

//  -------------------------------------------------------------------------
//  Backbone messages

int zim_msg_kind (zim_rd_t *rd, int *kind, uint32_t *fields)
{
    zim_rd_t save = *rd;
    uint32_t n;
    uint64_t k;
    if (zim_rd_array (rd, &n) || n < 1 || zim_rd_uint (rd, &k) || k > 255) {
        *rd = save;
        return ZIM_EMALFORMED;
    }
    *kind = (int) k;
    *fields = n - 1;
    return 0;
}

//  Field readers that jump to the decoder's malformed exit on failure.
#define RD_UINT(rd, out)                                                                           \
    if (zim_rd_uint ((rd), (out)))                                                                 \
    goto malformed
#define RD_INT(rd, out)                                                                            \
    if (zim_rd_int ((rd), (out)))                                                                  \
    goto malformed
#define RD_STR(rd, out)                                                                            \
    if (zim_rd_str ((rd), (out)))                                                                  \
    goto malformed
#define RD_ID(rd, out)                                                                             \
    if (zim_rd_str ((rd), (out)) || (out)->len > ZIM_ID_MAX)                                       \
    goto malformed
#define RD_BOOL(rd, out)                                                                           \
    if (zim_rd_bool ((rd), (out)))                                                                 \
    goto malformed

static void s_who_encode (zim_wr_t *wr, const zim_who_t *who)
{
    zim_wr_uint (wr, who->conn);
    zim_wr_str (wr, who->app);
    zim_wr_str (wr, who->uid);
    zim_wr_str (wr, who->device);
}

static int s_who_decode (zim_rd_t *rd, zim_who_t *who)
{
    RD_UINT (rd, &who->conn);
    RD_ID (rd, &who->app);
    RD_ID (rd, &who->uid);
    RD_ID (rd, &who->device);
    return 0;
malformed:
    return -1;
}

void zim_send_encode (zim_wr_t *wr, const zim_send_t *m)
{
    zim_wr_array (wr, 8);
    zim_wr_uint (wr, ZIM_MSG_SEND);
    s_who_encode (wr, &m->who);
    zim_wr_str (wr, m->cid);
    zim_wr_str (wr, m->to);
    zim_wr_raw (wr, m->body.ptr, m->body.len);
}

int zim_send_decode (zim_rd_t *rd, uint32_t fields, zim_send_t *m)
{
    if (fields != 7 || s_who_decode (rd, &m->who))
        goto malformed;
    RD_ID (rd, &m->cid);
    RD_ID (rd, &m->to);
    if (zim_rd_skip (rd, &m->body))
        goto malformed;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_sync_encode (zim_wr_t *wr, const zim_sync_t *m)
{
    zim_wr_array (wr, 8);
    zim_wr_uint (wr, ZIM_MSG_SYNC);
    s_who_encode (wr, &m->who);
    zim_wr_uint (wr, m->rid);
    zim_wr_int (wr, m->since);
    zim_wr_uint (wr, m->limit);
}

int zim_sync_decode (zim_rd_t *rd, uint32_t fields, zim_sync_t *m)
{
    if (fields != 7 || s_who_decode (rd, &m->who))
        goto malformed;
    RD_UINT (rd, &m->rid);
    RD_INT (rd, &m->since);
    RD_UINT (rd, &m->limit);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_history_encode (zim_wr_t *wr, const zim_history_t *m)
{
    zim_wr_array (wr, 9);
    zim_wr_uint (wr, ZIM_MSG_HISTORY);
    s_who_encode (wr, &m->who);
    zim_wr_uint (wr, m->rid);
    zim_wr_str (wr, m->peer);
    zim_wr_uint (wr, m->before);
    zim_wr_uint (wr, m->limit);
}

int zim_history_decode (zim_rd_t *rd, uint32_t fields, zim_history_t *m)
{
    if (fields != 8 || s_who_decode (rd, &m->who))
        goto malformed;
    RD_UINT (rd, &m->rid);
    RD_ID (rd, &m->peer);
    RD_UINT (rd, &m->before);
    RD_UINT (rd, &m->limit);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_cursor_encode (zim_wr_t *wr, const zim_cursor_t *m)
{
    zim_wr_array (wr, 6);
    zim_wr_uint (wr, ZIM_MSG_CURSOR);
    s_who_encode (wr, &m->who);
    zim_wr_uint (wr, m->seq);
}

int zim_cursor_decode (zim_rd_t *rd, uint32_t fields, zim_cursor_t *m)
{
    if (fields != 5 || s_who_decode (rd, &m->who))
        goto malformed;
    RD_UINT (rd, &m->seq);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_out_encode (zim_wr_t *wr, const uint64_t *conns, uint32_t nconns, zim_str_t frames)
{
    zim_wr_array (wr, 3);
    zim_wr_uint (wr, ZIM_MSG_OUT);
    zim_wr_array (wr, nconns);
    for (uint32_t i = 0; i < nconns; i++)
        zim_wr_uint (wr, conns[i]);
    zim_wr_bin (wr, frames);
}

int zim_out_decode (zim_rd_t *rd, uint32_t fields, zim_out_t *m)
{
    if (fields != 2 || zim_rd_array (rd, &m->nconns))
        goto malformed;
    m->conns = *rd;
    for (uint32_t i = 0; i < m->nconns; i++) {
        uint64_t conn;
        RD_UINT (rd, &conn);
    }
    if (zim_rd_bin (rd, &m->frames))
        goto malformed;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_presence_begin (zim_wr_t *wr, zim_str_t gateway, bool reset, uint32_t nitems)
{
    zim_wr_array (wr, 4);
    zim_wr_uint (wr, ZIM_MSG_PRESENCE);
    zim_wr_str (wr, gateway);
    zim_wr_bool (wr, reset);
    zim_wr_array (wr, nitems);
}

void zim_presence_item (zim_wr_t *wr, const zim_presence_item_t *item)
{
    zim_wr_array (wr, 5);
    zim_wr_bool (wr, item->up);
    zim_wr_uint (wr, item->conn);
    zim_wr_str (wr, item->app);
    zim_wr_str (wr, item->uid);
    zim_wr_str (wr, item->device);
}

int zim_presence_decode (zim_rd_t *rd, uint32_t fields, zim_presence_t *m)
{
    if (fields != 3)
        goto malformed;
    RD_ID (rd, &m->gateway);
    RD_BOOL (rd, &m->reset);
    if (zim_rd_array (rd, &m->nitems))
        goto malformed;
    m->items = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_presence_item_next (zim_rd_t *rd, zim_presence_item_t *item)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 5)
        goto malformed;
    RD_BOOL (rd, &item->up);
    RD_UINT (rd, &item->conn);
    RD_ID (rd, &item->app);
    RD_ID (rd, &item->uid);
    RD_ID (rd, &item->device);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_route_q_begin (zim_wr_t *wr, uint64_t req, uint32_t nkeys)
{
    zim_wr_array (wr, 3);
    zim_wr_uint (wr, ZIM_MSG_ROUTE_Q);
    zim_wr_uint (wr, req);
    zim_wr_array (wr, nkeys);
}

void zim_route_key (zim_wr_t *wr, zim_str_t app, zim_str_t uid)
{
    zim_wr_array (wr, 2);
    zim_wr_str (wr, app);
    zim_wr_str (wr, uid);
}

int zim_route_q_decode (zim_rd_t *rd, uint32_t fields, zim_route_q_t *m)
{
    if (fields != 2)
        goto malformed;
    RD_UINT (rd, &m->req);
    if (zim_rd_array (rd, &m->nkeys))
        goto malformed;
    m->keys = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_route_key_next (zim_rd_t *rd, zim_str_t *app, zim_str_t *uid)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 2)
        goto malformed;
    RD_ID (rd, app);
    RD_ID (rd, uid);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_route_r_begin (zim_wr_t *wr, uint64_t req, uint32_t nlists)
{
    zim_wr_array (wr, 3);
    zim_wr_uint (wr, ZIM_MSG_ROUTE_R);
    zim_wr_uint (wr, req);
    zim_wr_array (wr, nlists);
}

void zim_route_list_begin (zim_wr_t *wr, uint32_t nroutes)
{
    zim_wr_array (wr, nroutes);
}

void zim_route (zim_wr_t *wr, const zim_route_t *route)
{
    zim_wr_array (wr, 3);
    zim_wr_str (wr, route->gateway);
    zim_wr_uint (wr, route->conn);
    zim_wr_str (wr, route->device);
}

int zim_route_r_decode (zim_rd_t *rd, uint32_t fields, zim_route_r_t *m)
{
    if (fields != 2)
        goto malformed;
    RD_UINT (rd, &m->req);
    if (zim_rd_array (rd, &m->nlists))
        goto malformed;
    m->lists = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_route_next (zim_rd_t *rd, zim_route_t *route)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 3)
        goto malformed;
    RD_ID (rd, &route->gateway);
    RD_UINT (rd, &route->conn);
    RD_ID (rd, &route->device);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_append_begin (zim_wr_t *wr, uint64_t req, uint32_t nitems)
{
    zim_wr_array (wr, 3);
    zim_wr_uint (wr, ZIM_MSG_APPEND);
    zim_wr_uint (wr, req);
    zim_wr_array (wr, nitems);
}

void zim_append_item (zim_wr_t *wr, const zim_append_item_t *item)
{
    bool sides = item->sides && item->sides != ZIM_SIDE_BOTH;
    zim_wr_array (wr, sides ? 8 : 7);
    zim_wr_uint (wr, item->id);
    zim_wr_uint (wr, item->ts);
    zim_wr_str (wr, item->app);
    zim_wr_str (wr, item->from);
    zim_wr_str (wr, item->to);
    zim_wr_str (wr, item->cid);
    zim_wr_raw (wr, item->body.ptr, item->body.len);
    if (sides)
        zim_wr_uint (wr, item->sides);
}

int zim_append_decode (zim_rd_t *rd, uint32_t fields, zim_append_t *m)
{
    if (fields != 2)
        goto malformed;
    RD_UINT (rd, &m->req);
    if (zim_rd_array (rd, &m->nitems))
        goto malformed;
    m->items = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_append_item_next (zim_rd_t *rd, zim_append_item_t *item)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || (n != 7 && n != 8))
        goto malformed;
    RD_UINT (rd, &item->id);
    RD_UINT (rd, &item->ts);
    RD_ID (rd, &item->app);
    RD_ID (rd, &item->from);
    RD_ID (rd, &item->to);
    RD_ID (rd, &item->cid);
    if (zim_rd_skip (rd, &item->body))
        goto malformed;
    item->sides = ZIM_SIDE_BOTH;
    if (n == 8) {
        RD_UINT (rd, &item->sides);
        if (item->sides < ZIM_SIDE_FROM || item->sides > ZIM_SIDE_BOTH)
            goto malformed;
    }
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_appended_begin (zim_wr_t *wr, uint64_t req, uint32_t nitems)
{
    zim_wr_array (wr, 3);
    zim_wr_uint (wr, ZIM_MSG_APPENDED);
    zim_wr_uint (wr, req);
    zim_wr_array (wr, nitems);
}

void zim_appended_item (zim_wr_t *wr, const zim_appended_item_t *item)
{
    zim_wr_array (wr, 5);
    zim_wr_int (wr, item->status);
    zim_wr_uint (wr, item->id);
    zim_wr_uint (wr, item->from_seq);
    zim_wr_uint (wr, item->to_seq);
    zim_wr_uint (wr, item->ts);
}

int zim_appended_decode (zim_rd_t *rd, uint32_t fields, zim_appended_t *m)
{
    if (fields != 2)
        goto malformed;
    RD_UINT (rd, &m->req);
    if (zim_rd_array (rd, &m->nitems))
        goto malformed;
    m->items = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_appended_item_next (zim_rd_t *rd, zim_appended_item_t *item)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 5)
        goto malformed;
    RD_INT (rd, &item->status);
    RD_UINT (rd, &item->id);
    RD_UINT (rd, &item->from_seq);
    RD_UINT (rd, &item->to_seq);
    RD_UINT (rd, &item->ts);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_read_encode (zim_wr_t *wr, const zim_read_t *m)
{
    zim_wr_array (wr, 9);
    zim_wr_uint (wr, ZIM_MSG_READ);
    zim_wr_uint (wr, m->req);
    zim_wr_uint (wr, m->mode);
    zim_wr_str (wr, m->app);
    zim_wr_str (wr, m->uid);
    zim_wr_str (wr, m->device);
    zim_wr_int (wr, m->from);
    zim_wr_uint (wr, m->limit);
    zim_wr_str (wr, m->peer);
}

int zim_read_decode (zim_rd_t *rd, uint32_t fields, zim_read_t *m)
{
    if (fields != 8)
        goto malformed;
    RD_UINT (rd, &m->req);
    RD_UINT (rd, &m->mode);
    if (m->mode > ZIM_READ_HISTORY)
        goto malformed;
    RD_ID (rd, &m->app);
    RD_ID (rd, &m->uid);
    RD_ID (rd, &m->device);
    RD_INT (rd, &m->from);
    RD_UINT (rd, &m->limit);
    RD_ID (rd, &m->peer);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_page_begin (zim_wr_t *wr, uint64_t req, int64_t status, bool more, uint32_t nitems)
{
    zim_wr_array (wr, 5);
    zim_wr_uint (wr, ZIM_MSG_PAGE);
    zim_wr_uint (wr, req);
    zim_wr_int (wr, status);
    zim_wr_bool (wr, more);
    zim_wr_array (wr, nitems);
}

void zim_page_item (zim_wr_t *wr, const zim_item_t *item)
{
    zim_wr_array (wr, 6);
    zim_wr_uint (wr, item->seq);
    zim_wr_uint (wr, item->id);
    zim_wr_uint (wr, item->ts);
    zim_wr_str (wr, item->from);
    zim_wr_str (wr, item->to);
    zim_wr_raw (wr, item->body.ptr, item->body.len);
}

int zim_page_decode (zim_rd_t *rd, uint32_t fields, zim_page_t *m)
{
    if (fields != 4)
        goto malformed;
    RD_UINT (rd, &m->req);
    RD_INT (rd, &m->status);
    RD_BOOL (rd, &m->more);
    if (zim_rd_array (rd, &m->nitems))
        goto malformed;
    m->items = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_page_item_next (zim_rd_t *rd, zim_item_t *item)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 6)
        goto malformed;
    RD_UINT (rd, &item->seq);
    RD_UINT (rd, &item->id);
    RD_UINT (rd, &item->ts);
    RD_ID (rd, &item->from);
    RD_ID (rd, &item->to);
    if (zim_rd_skip (rd, &item->body))
        goto malformed;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_setcursor_encode (zim_wr_t *wr, const zim_setcursor_t *m)
{
    zim_wr_array (wr, 5);
    zim_wr_uint (wr, ZIM_MSG_SETCURSOR);
    zim_wr_str (wr, m->app);
    zim_wr_str (wr, m->uid);
    zim_wr_str (wr, m->device);
    zim_wr_uint (wr, m->seq);
}

int zim_setcursor_decode (zim_rd_t *rd, uint32_t fields, zim_setcursor_t *m)
{
    if (fields != 4)
        goto malformed;
    RD_ID (rd, &m->app);
    RD_ID (rd, &m->uid);
    RD_ID (rd, &m->device);
    RD_UINT (rd, &m->seq);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Decodes one client frame from a buffer, expecting it to use all bytes.
static int s_decode_one (const zim_wr_t *wr, zim_cframe_t *f, const char **why)
{
    zim_rd_t rd;
    zim_rd_init (&rd, wr->data, wr->size);
    return zim_cframe_decode (&rd, f, why);
}

//  ---------------------------------------------------------------------
//  Membership

void zim_hello_encode (zim_wr_t *wr, const zim_hello_t *m)
{
    zim_wr_array (wr, 7);
    zim_wr_uint (wr, ZIM_MSG_HELLO);
    zim_wr_str (wr, m->name);
    zim_wr_str (wr, m->role);
    zim_wr_str (wr, m->endpoint);
    zim_wr_uint (wr, m->instance);
    zim_wr_str (wr, m->admin);
    zim_wr_str (wr, m->stats);
}

int zim_hello_decode (zim_rd_t *rd, uint32_t fields, zim_hello_t *m)
{
    if (fields != 6)
        goto malformed;
    RD_ID (rd, &m->name);
    RD_ID (rd, &m->role);
    RD_STR (rd, &m->endpoint);
    RD_UINT (rd, &m->instance);
    RD_STR (rd, &m->admin);
    RD_STR (rd, &m->stats);
    if (m->endpoint.len > 256 || m->admin.len > 256)
        goto malformed;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

void zim_map_begin (zim_wr_t *wr, zim_str_t router, uint64_t instance, uint64_t version,
                    uint32_t nmembers)
{
    zim_wr_array (wr, 5);
    zim_wr_uint (wr, ZIM_MSG_MAP);
    zim_wr_str (wr, router);
    zim_wr_uint (wr, instance);
    zim_wr_uint (wr, version);
    zim_wr_array (wr, nmembers);
}

void zim_member (zim_wr_t *wr, const zim_member_t *member)
{
    zim_wr_array (wr, 8);
    zim_wr_str (wr, member->name);
    zim_wr_str (wr, member->role);
    zim_wr_str (wr, member->endpoint);
    zim_wr_uint (wr, member->instance);
    zim_wr_str (wr, member->admin);
    zim_wr_bool (wr, member->alive);
    zim_wr_uint (wr, member->age_ms);
    zim_wr_str (wr, member->stats);
}

int zim_map_decode (zim_rd_t *rd, uint32_t fields, zim_map_t *m)
{
    if (fields != 4)
        goto malformed;
    RD_ID (rd, &m->router);
    RD_UINT (rd, &m->instance);
    RD_UINT (rd, &m->version);
    if (zim_rd_array (rd, &m->nmembers))
        goto malformed;
    m->members = *rd;
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

int zim_member_next (zim_rd_t *rd, zim_member_t *member)
{
    uint32_t n;
    if (zim_rd_array (rd, &n) || n != 8)
        goto malformed;
    RD_ID (rd, &member->name);
    RD_ID (rd, &member->role);
    RD_STR (rd, &member->endpoint);
    RD_UINT (rd, &member->instance);
    RD_STR (rd, &member->admin);
    RD_BOOL (rd, &member->alive);
    RD_UINT (rd, &member->age_ms);
    RD_STR (rd, &member->stats);
    return 0;
malformed:
    return ZIM_EMALFORMED;
}

//  ---------------------------------------------------------------------
//  Placement

#define S_RING_POINTS 64

typedef struct {
    uint64_t point; //  position on the ring
    int shard;      //  index into the caller's shard list
} s_point_t;

struct zim_ring_t {
    s_point_t *points; //  sorted by point
    size_t npoints;
};

static uint64_t s_fnv (uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *) data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

#define S_FNV_BASIS 0xcbf29ce484222325ULL

uint64_t zim_user_hash (zim_str_t app, zim_str_t uid)
{
    uint64_t h = s_fnv (S_FNV_BASIS, app.ptr, app.len);
    h = s_fnv (h, "", 1);
    return s_fnv (h, uid.ptr, uid.len);
}

//  Mixes the bits of h, so that nearby FNV values spread over the ring.
static uint64_t s_mix (uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static int s_point_cmp (const void *a, const void *b)
{
    const s_point_t *x = (const s_point_t *) a, *y = (const s_point_t *) b;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->shard - y->shard;
}

zim_ring_t *zim_ring_new (const char *const *shards, size_t nshards)
{
    zim_ring_t *self = (zim_ring_t *) zim_calloc (1, sizeof (zim_ring_t));
    self->points = (s_point_t *) zim_calloc (nshards * S_RING_POINTS + 1, sizeof (s_point_t));
    for (size_t i = 0; i < nshards; i++)
        for (int v = 0; v < S_RING_POINTS; v++) {
            char label[128];
            int len = snprintf (label, sizeof label, "%s#%d", shards[i], v);
            s_point_t *pt = &self->points[self->npoints++];
            pt->point = s_mix (s_fnv (S_FNV_BASIS, label, (size_t) len));
            pt->shard = (int) i;
        }
    qsort (self->points, self->npoints, sizeof (s_point_t), s_point_cmp);
    return self;
}

void zim_ring_destroy (zim_ring_t **self_p)
{
    if (!*self_p)
        return;
    free ((*self_p)->points);
    free (*self_p);
    *self_p = NULL;
}

int zim_ring_lookup (const zim_ring_t *self, zim_str_t app, zim_str_t uid)
{
    if (!self || self->npoints == 0)
        return -1;
    uint64_t h = s_mix (zim_user_hash (app, uid));
    //  The first point at or after h, wrapping around.
    size_t lo = 0, hi = self->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->points[mid].point < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return self->points[lo == self->npoints ? 0 : lo].shard;
}

void zim_msg_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_cframe_t f;
    const char *why;

    //  A good send, keys in any order, unknown keys ignored.
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "c1");
    zim_wr_cstr (&wr, "future");
    zim_wr_array (&wr, 1);
    zim_wr_nil (&wr);
    zim_wr_cstr (&wr, "body");
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "text");
    zim_wr_cstr (&wr, "hi");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    assert (s_decode_one (&wr, &f, &why) == 0);
    assert (f.op == ZIM_OP_SEND && zim_str_eq (f.to, "bob") && zim_str_eq (f.cid, "c1"));
    assert (f.body.len == 9 && (uint8_t) f.body.ptr[0] == 0x81);
    assert (!f.has_from);

    //  Missing body, wrong type, unknown op, not a map, truncated.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "c2");
    assert (s_decode_one (&wr, &f, &why) == ZIM_ERR_BAD_FIELD);
    assert (zim_str_eq (f.cid, "c2"));
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "cursor");
    zim_wr_cstr (&wr, "seq");
    zim_wr_cstr (&wr, "12");
    assert (s_decode_one (&wr, &f, &why) == ZIM_ERR_BAD_FIELD);
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "launch");
    assert (s_decode_one (&wr, &f, &why) == ZIM_ERR_UNKNOWN_OP);
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 0);
    assert (s_decode_one (&wr, &f, &why) == ZIM_ERR_MALFORMED);
    zim_wr_reset (&wr);
    zim_cframe_ack (&wr, zim_str ("c1"), 1, 2, 3); //  a server frame: no such op
    for (size_t cut = 1; cut < wr.size; cut++) {
        zim_rd_t rd;
        zim_rd_init (&rd, wr.data, cut);
        assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_MALFORMED);
    }
    //  A spoofed from is reported to the caller.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 5);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "send");
    zim_wr_cstr (&wr, "to");
    zim_wr_cstr (&wr, "bob");
    zim_wr_cstr (&wr, "cid");
    zim_wr_cstr (&wr, "c3");
    zim_wr_cstr (&wr, "body");
    zim_wr_nil (&wr);
    zim_wr_cstr (&wr, "from");
    zim_wr_cstr (&wr, "mallory");
    assert (s_decode_one (&wr, &f, &why) == 0 && f.has_from && zim_str_eq (f.from, "mallory"));

    //  Ids and conversations.
    assert (zim_uid_valid (zim_str ("alice.b-c_d@x")));
    assert (!zim_uid_valid (zim_str ("")));
    assert (!zim_uid_valid (zim_str ("a b")));
    assert (!zim_uid_valid (zim_str ("a:b")));
    char conv[64];
    assert (zim_conv_peer (zim_str ("bob"), zim_str ("alice"), conv, sizeof conv) > 0);
    assert (strcmp (conv, "p:alice:bob") == 0);
    assert (zim_conv_peer (zim_str ("alice"), zim_str ("bob"), conv, sizeof conv) > 0);
    assert (strcmp (conv, "p:alice:bob") == 0);

    //  Backbone round trips.
    zim_wr_reset (&wr);
    zim_send_t send = {{42, zim_str ("demo"), zim_str ("alice"), zim_str ("phone")},
                       zim_str ("c1"),
                       zim_str ("bob"),
                       {"\xa2hi", 3}};
    zim_send_encode (&wr, &send);
    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    int kind;
    uint32_t fields;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_SEND);
    zim_send_t send2;
    assert (zim_send_decode (&rd, fields, &send2) == 0);
    assert (send2.who.conn == 42 && zim_str_eq (send2.who.device, "phone"));
    assert (send2.body.len == 3 && memcmp (send2.body.ptr, "\xa2hi", 3) == 0);
    assert (zim_rd_left (&rd) == 0);
    //  Every truncation fails cleanly.
    for (size_t cut = 0; cut < wr.size; cut++) {
        zim_rd_init (&rd, wr.data, cut);
        if (zim_msg_kind (&rd, &kind, &fields) == 0)
            assert (zim_send_decode (&rd, fields, &send2) != 0);
    }

    zim_wr_reset (&wr);
    zim_append_begin (&wr, 7, 2);
    zim_append_item_t ai = {99, 1000, zim_str ("demo"), zim_str ("a"), zim_str ("b"),
                            zim_str ("c"), {"\xc0", 1}, ZIM_SIDE_BOTH};
    zim_append_item (&wr, &ai);
    ai.id = 100;
    zim_append_item (&wr, &ai);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_APPEND);
    zim_append_t ap;
    assert (zim_append_decode (&rd, fields, &ap) == 0 && ap.req == 7 && ap.nitems == 2);
    zim_append_item_t got;
    assert (zim_append_item_next (&ap.items, &got) == 0 && got.id == 99);
    assert (zim_append_item_next (&ap.items, &got) == 0 && got.id == 100);
    assert (zim_rd_left (&ap.items) == 0);

    zim_wr_reset (&wr);
    uint64_t conns[] = {1, 5, 9};
    zim_out_encode (&wr, conns, 3, (zim_str_t){"\x80", 1});
    zim_rd_init (&rd, wr.data, wr.size);
    zim_out_t out;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_OUT);
    assert (zim_out_decode (&rd, fields, &out) == 0 && out.nconns == 3 && out.frames.len == 1);
    uint64_t c;
    assert (zim_rd_uint (&out.conns, &c) == 0 && c == 1);

    zim_wr_reset (&wr);
    zim_page_begin (&wr, 3, 0, true, 1);
    zim_item_t item = {5, 77, 1234, zim_str ("a"), zim_str ("b"), {"\x01", 1}};
    zim_page_item (&wr, &item);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_page_t page;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_PAGE);
    assert (zim_page_decode (&rd, fields, &page) == 0 && page.more && page.nitems == 1);
    zim_item_t item2;
    assert (zim_page_item_next (&page.items, &item2) == 0 && item2.seq == 5 && item2.id == 77);

    //  Wrong field count is malformed, not a crash.
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 2);
    zim_wr_uint (&wr, ZIM_MSG_SEND);
    zim_wr_uint (&wr, 1);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0);
    assert (zim_send_decode (&rd, fields, &send2) == ZIM_EMALFORMED);

    //  APPEND items with sides round-trip; 3 is the default and not sent.
    zim_wr_reset (&wr);
    zim_append_begin (&wr, 8, 2);
    zim_append_item_t si = {1, 2, zim_str ("demo"), zim_str ("a"), zim_str ("b"), zim_str ("c"),
                            {"\xc0", 1}, ZIM_SIDE_TO};
    zim_append_item (&wr, &si);
    si.sides = ZIM_SIDE_BOTH;
    zim_append_item (&wr, &si);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_append_t sap;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_append_decode (&rd, fields, &sap) == 0);
    zim_append_item_t sgot;
    assert (zim_append_item_next (&sap.items, &sgot) == 0 && sgot.sides == ZIM_SIDE_TO);
    assert (zim_append_item_next (&sap.items, &sgot) == 0 && sgot.sides == ZIM_SIDE_BOTH);

    //  HELLO and MAP round-trip.
    zim_wr_reset (&wr);
    zim_hello_t hello = {zim_str ("gw-1"), zim_str ("gateway"), zim_str ("ws://h:7700/ws"), 42,
                         zim_str ("tcp://127.0.0.1:7710"), zim_str ("{}")};
    zim_hello_encode (&wr, &hello);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_hello_t hgot;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_HELLO);
    assert (zim_hello_decode (&rd, fields, &hgot) == 0 && hgot.instance == 42);
    assert (zim_str_eq (hgot.role, "gateway") && zim_str_eq (hgot.admin, "tcp://127.0.0.1:7710"));
    zim_wr_reset (&wr);
    zim_map_begin (&wr, zim_str ("router-1"), 7, 3, 1);
    zim_member_t mem = {zim_str ("store-1"), zim_str ("store"), zim_str ("tcp://h:1"), 9,
                        zim_str (""), false, 4500, zim_str ("{\"appended\":1}")};
    zim_member (&wr, &mem);
    zim_rd_init (&rd, wr.data, wr.size);
    zim_map_t map;
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && kind == ZIM_MSG_MAP);
    assert (zim_map_decode (&rd, fields, &map) == 0 && map.version == 3 && map.nmembers == 1);
    zim_member_t mgot;
    assert (zim_member_next (&map.members, &mgot) == 0 && !mgot.alive && mgot.age_ms == 4500);
    assert (zim_str_eq (mgot.name, "store-1") && zim_rd_left (&map.members) == 0);
    //  A truncated MAP is refused.
    zim_rd_init (&rd, wr.data, wr.size - 3);
    assert (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_map_decode (&rd, fields, &map) == 0);
    assert (zim_member_next (&map.members, &mgot) == ZIM_EMALFORMED);

    //  The ring: the same placement whatever the order of the names; a new
    //  shard takes about its share of users, all moved to it; spread is fair.
    const char *two[] = {"store-1", "store-2"}, *owt[] = {"store-2", "store-1"};
    const char *three[] = {"store-1", "store-2", "store-3"};
    zim_ring_t *r2 = zim_ring_new (two, 2), *r2b = zim_ring_new (owt, 2);
    zim_ring_t *r3 = zim_ring_new (three, 3);
    int count[3] = {0, 0, 0}, moved = 0;
    for (int i = 0; i < 3000; i++) {
        char uid[32];
        snprintf (uid, sizeof uid, "user%d", i);
        int a = zim_ring_lookup (r2, zim_str ("demo"), zim_str (uid));
        int b = zim_ring_lookup (r2b, zim_str ("demo"), zim_str (uid));
        int n3 = zim_ring_lookup (r3, zim_str ("demo"), zim_str (uid));
        assert (a >= 0 && a < 2 && strcmp (two[a], owt[b]) == 0);
        count[a]++;
        if (strcmp (three[n3], two[a]) != 0) {
            assert (n3 == 2); //  only ever to the new shard
            moved++;
        }
    }
    assert (count[0] > 1000 && count[1] > 1000);
    assert (moved > 600 && moved < 1400);
    assert (zim_ring_lookup (NULL, zim_str ("demo"), zim_str ("x")) == -1);
    zim_ring_destroy (&r2);
    zim_ring_destroy (&r2b);
    zim_ring_destroy (&r3);
    zim_wr_free (&wr);
    if (verbose)
        printf ("(catalogue ok) ");
}
