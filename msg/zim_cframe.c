/*  zim_cframe.c: the client's side of the catalogue: the texts of the wire
    error codes, the map from the groups' store statuses to them, the client
    frame decoder's wire codes, and the writers of the server frames the
    gateway and the broker send (all through the catalogue's sframe codec).
*/
#include "msg/zim_cframe.h"
#include "msg/zim_conv.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
    case ZIM_ERR_NOT_IN_ROOM:
        return "not in this room";
    case ZIM_ERR_TOO_MANY_ROOMS:
        return "too many rooms";
    case ZIM_ERR_BAD_ROOM:
        return "bad room name";
    case ZIM_ERR_PUBLISH_DENIED:
        return "publish not allowed";
    case ZIM_ERR_ROOM_DENIED:
        return "room not allowed";
    case ZIM_ERR_SIGNAL_RATE:
        return "signal rate limited";
    case ZIM_ERR_DISCONNECTED:
        return "disconnected by the app";
    case ZIM_ERR_IDLE_TIMEOUT:
        return "idle timeout";
    case ZIM_ENOTMEMBER:
    case ZIM_ERR_NOT_MEMBER:
        return "not a member of the group";
    case ZIM_ENOGROUP:
    case ZIM_ERR_NO_GROUP:
        return "no such group";
    case ZIM_EGROUPFULL:
    case ZIM_ERR_GROUP_FULL:
        return "group too large";
    case ZIM_EEXISTS:
    case ZIM_ERR_GROUP_EXISTS:
        return "group exists already";
    case ZIM_ENOTCHANNEL:
    case ZIM_ERR_NOT_CHANNEL:
        return "not a channel";
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

//  -------------------------------------------------------------------------
//  Client frames

int zim_cframe_decode (zim_rd_t *rd, zim_cframe_t *f, const char **why)
{
    int rc = zim_cframe_unpack (rd, f, why);
    if (rc == 0)
        return 0;
    return rc == ZIM_EMALFORMED ? ZIM_ERR_MALFORMED
           : rc == ZIM_EKIND    ? ZIM_ERR_UNKNOWN_OP
                                : ZIM_ERR_BAD_FIELD;
}

//  The server frames are written from the flat zim_sframe_t: only the keys
//  of the op are read (those an op may leave out: when set).
void zim_cframe_auth_ok (zim_wr_t *wr, zim_str_t app, zim_str_t uid, zim_str_t device)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_AUTH_OK, .app = app, .uid = uid, .device = device});
}

void zim_cframe_pong (zim_wr_t *wr, zim_str_t t)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_PONG, .t = t, .has_t = t.ptr != NULL});
}

void zim_cframe_ack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_ACK, .cid = cid, .id = id, .seq = seq, .ts = ts});
}

void zim_cframe_gack (zim_wr_t *wr, zim_str_t cid, uint64_t id, uint64_t seq, uint64_t ts,
                      uint64_t gseq)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_ACK,
                                         .cid = cid,
                                         .id = id,
                                         .seq = seq,
                                         .ts = ts,
                                         .gseq = gseq});
}

void zim_cframe_error (zim_wr_t *wr, int code, const char *text, zim_str_t cid, bool has_rid,
                       uint64_t rid)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_ERROR,
                                         .code = code,
                                         .text = zim_str (text ? text : zim_strerror (code)),
                                         .cid = cid,
                                         .has_rid = has_rid,
                                         .rid = rid});
}

//  True if a stored message's recipient is a group's conversation key.
static bool s_is_group (zim_str_t to)
{
    return to.len > 2 && to.ptr[0] == 'g' && to.ptr[1] == ':';
}

//  The conversation key of a stored message, into buf.
static zim_str_t s_conv (const zim_item_t *item, char *buf, size_t size)
{
    if (s_is_group (item->to))
        return item->to;
    int len = zim_conv_peer (item->from, item->to, buf, size);
    return (zim_str_t){buf, len > 0 ? (size_t)len : 0};
}

//  The group of a stored message, or a NULL view.
static zim_str_t s_group (const zim_item_t *item)
{
    if (!s_is_group (item->to))
        return (zim_str_t){NULL, 0};
    return (zim_str_t){item->to.ptr + 2, item->to.len - 2};
}

zim_str_t zim_group_event (zim_str_t group, zim_str_t from)
{
    //  "$join" and "$leave" are no user's id ('$' is not in a uid).
    if (!group.ptr || from.len < 2 || from.ptr[0] != '$')
        return (zim_str_t){NULL, 0};
    return (zim_str_t){from.ptr + 1, from.len - 1};
}

void zim_cframe_msg (zim_wr_t *wr, const zim_item_t *item)
{
    char conv[2 * ZIM_ID_MAX + 8];
    zim_str_t group = s_group (item);
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_MSG,
                                         .seq = item->seq,
                                         .id = item->id,
                                         .from = item->from,
                                         .to = group.ptr ? group : item->to,
                                         .conv = s_conv (item, conv, sizeof conv),
                                         .body = item->body,
                                         .ts = item->ts,
                                         .group = group,
                                         .event = zim_group_event (group, item->from)});
}

int zim_group_wire (int64_t status)
{
    switch (status) {
    case ZIM_ENOTMEMBER:
        return ZIM_ERR_NOT_MEMBER;
    case ZIM_ENOGROUP:
        return ZIM_ERR_NO_GROUP;
    case ZIM_EGROUPFULL:
        return ZIM_ERR_GROUP_FULL;
    case ZIM_EEXISTS:
        return ZIM_ERR_GROUP_EXISTS;
    case ZIM_ENOTCHANNEL:
        return ZIM_ERR_NOT_CHANNEL;
    case ZIM_EVALUE:
        return ZIM_ERR_BAD_FIELD;
    case ZIM_EFULL:
        return ZIM_ERR_UNAVAILABLE;
    default:
        return ZIM_ERR_INTERNAL;
    }
}

void zim_cframe_page_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){
                .op = ZIM_SOP_PAGE, .rid = rid, .has_rid = true, .more = more, .nmsgs = count});
}

void zim_cframe_page_item (zim_wr_t *wr, const zim_item_t *item)
{
    char conv[2 * ZIM_ID_MAX + 8];
    zim_str_t group = s_group (item);
    zim_sitem_t m = {item->seq,
                     item->id,
                     item->from,
                     group.ptr ? group : item->to,
                     s_conv (item, conv, sizeof conv),
                     item->body,
                     item->ts,
                     group,
                     0,
                     zim_group_event (group, item->from)};
    zim_sitem_pack (wr, &m);
}

void zim_cframe_receipt (zim_wr_t *wr, zim_str_t conv, zim_str_t user, bool has_read, uint64_t read,
                         bool has_delivered, uint64_t delivered)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_RECEIPT,
                                         .conv = conv,
                                         .user = user,
                                         .has_read = has_read,
                                         .read = read,
                                         .has_delivered = has_delivered,
                                         .delivered = delivered});
}

void zim_cframe_convs_begin (zim_wr_t *wr, uint64_t rid, bool more, uint32_t count)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){
                .op = ZIM_SOP_CONVS, .rid = rid, .has_rid = true, .more = more, .nconvs = count});
}

//  -------------------------------------------------------------------------
//  Selftest

//  Writes a frame of pairs string keys and string values (key, value, ...)
//  into wr, then decodes it as a client frame; returns the wire code.
static int s_strs_frame (zim_wr_t *wr, zim_cframe_t *f, const char **why, int pairs, ...)
{
    va_list args;
    va_start (args, pairs);
    zim_wr_reset (wr);
    zim_wr_map (wr, (uint32_t)pairs);
    for (int i = 0; i < 2 * pairs; i++)
        zim_wr_cstr (wr, va_arg (args, const char *));
    va_end (args);
    zim_rd_t rd;
    zim_rd_init (&rd, wr->data, wr->size);
    int rc = zim_cframe_decode (&rd, f, why);
    assert (rc == ZIM_ERR_MALFORMED || zim_rd_left (&rd) == 0);
    return rc;
}

void zim_cframe_test (bool verbose)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    zim_cframe_t f;
    const char *why;
    zim_rd_t rd;

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
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == 0 && zim_rd_left (&rd) == 0);
    assert (f.op == ZIM_OP_SEND && zim_str_eq (f.to, "bob") && zim_str_eq (f.cid, "c1"));
    assert (f.body.len == 9 && (uint8_t)f.body.ptr[0] == 0x81);
    assert (!f.has_from && f.since == -1 && !f.has_rid);

    //  Missing body (the cid is still there to name), wrong type, a bad
    //  cid, unknown op, not a map, truncated.
    assert (s_strs_frame (&wr, &f, &why, 3, "op", "send", "to", "bob", "cid", "c2") ==
            ZIM_ERR_BAD_FIELD);
    assert (zim_str_eq (f.cid, "c2") && strcmp (why, "send needs body") == 0);
    assert (s_strs_frame (&wr, &f, &why, 2, "op", "cursor", "seq", "12") == ZIM_ERR_BAD_FIELD);
    assert (strcmp (why, "seq must be a non-negative integer") == 0);
    assert (s_strs_frame (&wr, &f, &why, 2, "cid", "c 3", "op", "send") == ZIM_ERR_BAD_FIELD);
    assert (zim_str_eq (f.cid, "c 3") && strstr (why, "cid must be"));
    assert (s_strs_frame (&wr, &f, &why, 1, "op", "launch") == ZIM_ERR_UNKNOWN_OP);
    assert (f.op == ZIM_OP_UNKNOWN);
    zim_wr_reset (&wr);
    zim_wr_array (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_MALFORMED);
    assert (strcmp (why, "frame is not a map") == 0);
    zim_wr_reset (&wr);
    zim_cframe_ack (&wr, zim_str ("c1"), 1, 2, 3); //  a server frame: no such op
    for (size_t cut = 1; cut < wr.size; cut++) {
        zim_rd_init (&rd, wr.data, cut);
        assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_MALFORMED);
    }
    //  A spoofed from is reported to the caller, even when not a string.
    assert (s_strs_frame (&wr, &f, &why, 5, "op", "send", "to", "bob", "cid", "c3", "body", "x",
                          "from", "mallory") == 0);
    assert (f.has_from && zim_str_eq (f.from, "mallory"));
    wr.size -= 8;
    zim_wr_uint (&wr, 1);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_BAD_FIELD && f.has_from);
    //  sync: since nil means absent; a negative since is refused.
    zim_wr_reset (&wr);
    zim_wr_map (&wr, 3);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "sync");
    zim_wr_cstr (&wr, "since");
    zim_wr_nil (&wr);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == 0 && f.since == -1 && f.has_rid && f.rid == 0);
    wr.size -= 6;
    zim_wr_int (&wr, -2);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 0);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_cframe_decode (&rd, &f, &why) == ZIM_ERR_BAD_FIELD);

    zim_wr_free (&wr);
    if (verbose)
        printf ("(client frames) ");
}
