/*  test_vectors.c: the byte-exact client frames of docs/PROTOCOL.md, kept in
    tests/vectors/NAME.hex, which the SDK tests read too. Client frames must
    decode to the documented fields; server frames must be exactly what the
    server's encoders produce.
        test_vectors              check every vector (ZIM_VECTORS or ./tests/vectors)
        test_vectors --write DIR  regenerate the files (after a protocol change)
*/
#include "msg/zim_msg.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define T_TS 1763856000000ULL                                //  2025-11-23T00:00:00Z in ms
#define T_ID (((T_TS - 1704067200000ULL) << 22) | (1 << 12)) //  as broker 1 makes them

typedef struct {
    const char *name;             //  file name without .hex
    void (*build) (zim_wr_t *wr); //  writes the frame
} s_vector_t;

static void v_auth (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "auth");
    zim_wr_cstr (wr, "token");
    zim_wr_cstr (wr, "TOKEN");
    zim_wr_cstr (wr, "device");
    zim_wr_cstr (wr, "phone");
}

static void v_ping (zim_wr_t *wr)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "ping");
    zim_wr_cstr (wr, "t");
    zim_wr_uint (wr, 1);
}

static void v_send (zim_wr_t *wr)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, "bob");
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, "c1");
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, "hi");
}

static void v_sync (zim_wr_t *wr)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "sync");
    zim_wr_cstr (wr, "since");
    zim_wr_uint (wr, 0);
    zim_wr_cstr (wr, "limit");
    zim_wr_uint (wr, 100);
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 1);
}

static void v_cursor (zim_wr_t *wr)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "cursor");
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, 5);
}

static void v_history (zim_wr_t *wr)
{
    zim_wr_map (wr, 5);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "history");
    zim_wr_cstr (wr, "peer");
    zim_wr_cstr (wr, "bob");
    zim_wr_cstr (wr, "before");
    zim_wr_uint (wr, 0);
    zim_wr_cstr (wr, "limit");
    zim_wr_uint (wr, 20);
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 2);
}

static void v_auth_ok (zim_wr_t *wr)
{
    zim_cframe_auth_ok (wr, zim_str ("demo"), zim_str ("alice"), zim_str ("phone"));
}

static void v_pong (zim_wr_t *wr)
{
    zim_cframe_pong (wr, (zim_str_t){"\x01", 1});
}

static void v_ack (zim_wr_t *wr)
{
    zim_cframe_ack (wr, zim_str ("c1"), T_ID, 1, T_TS);
}

static void v_error (zim_wr_t *wr)
{
    zim_cframe_error (wr, ZIM_ERR_RATE_LIMITED, NULL, zim_str ("c1"), false, 0);
}

static const zim_item_t s_item = {1, T_ID, T_TS, {"alice", 5}, {"bob", 3}, {"\xa2hi", 3}};

static void v_msg (zim_wr_t *wr)
{
    zim_cframe_msg (wr, &s_item);
}

static void v_page (zim_wr_t *wr)
{
    zim_cframe_page_begin (wr, 1, false, 1);
    zim_cframe_page_item (wr, &s_item);
}

static void v_ack_msg (zim_wr_t *wr)
{
    //  Two frames in one WebSocket message: how the gateway coalesces.
    v_ack (wr);
    v_msg (wr);
}

//  Receipts, the conversation list, mute and background state: in
//  tests/vectors/receipts/ until the SDKs speak them (their vector tests
//  want a case for every file of tests/vectors/).
static void v_read (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "read");
    zim_wr_cstr (wr, "conv");
    zim_wr_cstr (wr, "p:alice:bob");
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, 5);
}

static void v_delivered (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "delivered");
    zim_wr_cstr (wr, "conv");
    zim_wr_cstr (wr, "p:alice:bob");
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, 6);
}

static void v_convs (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "convs");
    zim_wr_cstr (wr, "limit");
    zim_wr_uint (wr, 20);
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 3);
}

static void v_mute (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "mute");
    zim_wr_cstr (wr, "conv");
    zim_wr_cstr (wr, "p:alice:bob");
    zim_wr_cstr (wr, "until");
    zim_wr_uint (wr, 0);
}

static void v_state (zim_wr_t *wr)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "state");
    zim_wr_cstr (wr, "background");
    zim_wr_bool (wr, true);
}

static void v_receipt (zim_wr_t *wr)
{
    zim_cframe_receipt (wr, zim_str ("p:alice:bob"), zim_str ("bob"), true, 1, true, 1);
}

static void v_convs_answer (zim_wr_t *wr)
{
    zim_cframe_convs_begin (wr, 3, false, 1);
    zim_sconv_t c = {
        zim_str ("p:alice:bob"), T_ID, zim_str ("alice"), T_TS, {"\xa2hi", 3}, 1, 1, 0, 0, 0, 0, 0};
    zim_sconv_pack (wr, &c);
}

//  Rooms and signals (issue 13): in tests/vectors/rooms/, like receipts.
static void v_join (zim_wr_t *wr)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "join");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, "lobby");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 1);
    zim_wr_cstr (wr, "counts");
    zim_wr_bool (wr, true);
}

static void v_leave (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "leave");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, "lobby");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 2);
}

static void v_publish (zim_wr_t *wr)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "publish");
    zim_wr_cstr (wr, "room");
    zim_wr_cstr (wr, "lobby");
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, "hi");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 3);
}

static void v_signal (zim_wr_t *wr)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "signal");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, "bob");
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, "typing");
}

static void v_joined (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_JOINED,
                                         .room = zim_str ("lobby"),
                                         .has_rid = true,
                                         .rid = 1,
                                         .online = 2});
}

static void v_left (zim_wr_t *wr)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_LEFT, .room = zim_str ("lobby"), .has_rid = true, .rid = 2});
}

static void v_room (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_ROOM,
                                         .room = zim_str ("lobby"),
                                         .body = {"\xa2hi", 3},
                                         .ts = T_TS,
                                         .from = zim_str ("alice")});
}

static void v_published (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_PUBLISHED, .has_rid = true, .rid = 3});
}

static void v_count (zim_wr_t *wr)
{
    zim_sframe_pack (
        wr, &(zim_sframe_t){.op = ZIM_SOP_COUNT, .room = zim_str ("lobby"), .online = 3});
}

static void v_ssignal (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_SIGNAL,
                                         .from = zim_str ("alice"),
                                         .body = {"\xa6typing", 7}});
}

static void v_room_error (zim_wr_t *wr)
{
    zim_cframe_error (wr, ZIM_ERR_NOT_IN_ROOM, NULL, (zim_str_t){NULL, 0}, true, 3);
}

static const s_vector_t s_client_rm[] = {{"rooms/c2s-join", v_join},
                                         {"rooms/c2s-leave", v_leave},
                                         {"rooms/c2s-publish", v_publish},
                                         {"rooms/c2s-signal", v_signal}};
static const s_vector_t s_server_rm[] = {
    {"rooms/s2c-joined", v_joined},       {"rooms/s2c-left", v_left},
    {"rooms/s2c-room", v_room},           {"rooms/s2c-published", v_published},
    {"rooms/s2c-count", v_count},         {"rooms/s2c-signal", v_ssignal},
    {"rooms/s2c-error", v_room_error}};

static const s_vector_t s_client_rc[] = {{"receipts/c2s-read", v_read},
                                         {"receipts/c2s-delivered", v_delivered},
                                         {"receipts/c2s-convs", v_convs},
                                         {"receipts/c2s-mute", v_mute},
                                         {"receipts/c2s-state", v_state}};
static const s_vector_t s_server_rc[] = {{"receipts/s2c-receipt", v_receipt},
                                         {"receipts/s2c-convs", v_convs_answer}};

//  Groups and channels: in tests/vectors/groups/ (docs/PROTOCOL.md,
//  "Groups and channels").
static void v_gsend (zim_wr_t *wr)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "group");
    zim_wr_cstr (wr, "team");
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, "g1");
    zim_wr_cstr (wr, "body");
    zim_wr_cstr (wr, "hi");
}

static void v_groups (zim_wr_t *wr)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "groups");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 4);
}

static void v_csync (zim_wr_t *wr)
{
    zim_wr_map (wr, 5);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "csync");
    zim_wr_cstr (wr, "group");
    zim_wr_cstr (wr, "news");
    zim_wr_cstr (wr, "since");
    zim_wr_uint (wr, 0);
    zim_wr_cstr (wr, "limit");
    zim_wr_uint (wr, 1);
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, 5);
}

static void v_gack (zim_wr_t *wr)
{
    zim_cframe_gack (wr, zim_str ("g1"), T_ID, 3, T_TS, 7);
}

static void v_gmsg (zim_wr_t *wr)
{
    zim_item_t it = {3, T_ID, T_TS, zim_str ("alice"), zim_str ("g:team"), {"\xa2hi", 3}};
    zim_cframe_msg (wr, &it);
}

//  A membership event: {"users": ["dan"]} from "$join".
static void v_gevent (zim_wr_t *wr)
{
    zim_item_t it = {4, T_ID, T_TS, zim_str ("$join"), zim_str ("g:team"),
                     {"\x81\xa5users\x91\xa3" "dan", 12}};
    zim_cframe_msg (wr, &it);
}

static void v_cpage (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_PAGE,
                                         .rid = 5,
                                         .has_rid = true,
                                         .more = false,
                                         .reset = true,
                                         .nmsgs = 1});
    zim_sitem_pack (wr, &(zim_sitem_t){0, T_ID, zim_str ("alice"), zim_str ("news"),
                                       zim_str ("g:news"), {"\xa2hi", 3}, T_TS, zim_str ("news"),
                                       30, {NULL, 0}});
}

static void v_groups_answer (zim_wr_t *wr)
{
    zim_sframe_pack (wr, &(zim_sframe_t){.op = ZIM_SOP_GROUPS, .rid = 4, .has_rid = true,
                                         .ngroups = 1});
    zim_sgroup_pack (wr, &(zim_sgroup_t){zim_str ("news"), zim_str ("channel"), 30, 0, 2});
}

static const s_vector_t s_client_gr[] = {{"groups/c2s-send-group", v_gsend},
                                         {"groups/c2s-groups", v_groups},
                                         {"groups/c2s-csync", v_csync}};
static const s_vector_t s_server_gr[] = {{"groups/s2c-ack-group", v_gack},
                                         {"groups/s2c-msg-group", v_gmsg},
                                         {"groups/s2c-msg-event", v_gevent},
                                         {"groups/s2c-page-csync", v_cpage},
                                         {"groups/s2c-groups", v_groups_answer}};

static const s_vector_t s_client[] = {{"c2s-auth", v_auth},     {"c2s-ping", v_ping},
                                      {"c2s-send", v_send},     {"c2s-sync", v_sync},
                                      {"c2s-cursor", v_cursor}, {"c2s-history", v_history}};
static const s_vector_t s_server[] = {{"s2c-auth_ok", v_auth_ok}, {"s2c-pong", v_pong},
                                      {"s2c-ack", v_ack},         {"s2c-error", v_error},
                                      {"s2c-msg", v_msg},         {"s2c-page", v_page},
                                      {"s2c-ack+msg", v_ack_msg}};

//  Reads NAME.hex into a malloc'd buffer; returns its size or -1.
static long s_load (const char *name, unsigned char **out)
{
    const char *dir = getenv ("ZIM_VECTORS");
    char path[1024];
    snprintf (path, sizeof path, "%s/%s.hex", dir ? dir : "tests/vectors", name);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    unsigned char *buf = malloc (65536);
    long n = 0;
    unsigned int byte;
    while (n < 65536 && fscanf (f, "%2x", &byte) == 1)
        buf[n++] = (unsigned char)byte;
    fclose (f);
    *out = buf;
    return n;
}

//  Compares a vector file with what the encoder writes.
static void s_check_bytes (const s_vector_t *v)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    v->build (&wr);
    unsigned char *file = NULL;
    long n = s_load (v->name, &file);
    ck_assert_msg (n >= 0, "missing vector %s.hex", v->name);
    ck_assert_msg ((size_t)n == wr.size && memcmp (file, wr.data, wr.size) == 0,
                   "vector %s differs from the encoder's output", v->name);
    free (file);
    zim_wr_free (&wr);
}

START_TEST (test_server_frames_byte_exact)
{
    for (size_t i = 0; i < sizeof s_server / sizeof s_server[0]; i++)
        s_check_bytes (&s_server[i]);
    for (size_t i = 0; i < sizeof s_server_rc / sizeof s_server_rc[0]; i++)
        s_check_bytes (&s_server_rc[i]);
    for (size_t i = 0; i < sizeof s_server_rm / sizeof s_server_rm[0]; i++)
        s_check_bytes (&s_server_rm[i]);
    for (size_t i = 0; i < sizeof s_server_gr / sizeof s_server_gr[0]; i++)
        s_check_bytes (&s_server_gr[i]);
}
END_TEST

START_TEST (test_client_frames_decode)
{
    for (size_t i = 0; i < sizeof s_client / sizeof s_client[0]; i++)
        s_check_bytes (&s_client[i]);
    for (size_t i = 0; i < sizeof s_client_rc / sizeof s_client_rc[0]; i++)
        s_check_bytes (&s_client_rc[i]);
    for (size_t i = 0; i < sizeof s_client_rm / sizeof s_client_rm[0]; i++)
        s_check_bytes (&s_client_rm[i]);
    for (size_t i = 0; i < sizeof s_client_gr / sizeof s_client_gr[0]; i++)
        s_check_bytes (&s_client_gr[i]);
    unsigned char *buf;
    zim_rd_t rd;
    zim_cframe_t f;
    const char *why;
    long n = s_load ("c2s-send", &buf);
    zim_rd_init (&rd, buf, (size_t)n);
    ck_assert_int_eq (zim_cframe_decode (&rd, &f, &why), 0);
    ck_assert_int_eq (f.op, ZIM_OP_SEND);
    ck_assert (zim_str_eq (f.to, "bob") && zim_str_eq (f.cid, "c1"));
    ck_assert (f.body.len == 3 && memcmp (f.body.ptr, "\xa2hi", 3) == 0);
    free (buf);
    n = s_load ("c2s-sync", &buf);
    zim_rd_init (&rd, buf, (size_t)n);
    ck_assert_int_eq (zim_cframe_decode (&rd, &f, &why), 0);
    ck_assert (f.op == ZIM_OP_SYNC && f.since == 0 && f.limit == 100 && f.rid == 1);
    free (buf);
    n = s_load ("c2s-history", &buf);
    zim_rd_init (&rd, buf, (size_t)n);
    ck_assert_int_eq (zim_cframe_decode (&rd, &f, &why), 0);
    ck_assert (f.op == ZIM_OP_HISTORY && zim_str_eq (f.peer, "bob") && f.limit == 20);
    free (buf);
    n = s_load ("c2s-auth", &buf);
    zim_rd_init (&rd, buf, (size_t)n);
    ck_assert_int_eq (zim_cframe_decode (&rd, &f, &why), 0);
    ck_assert (f.op == ZIM_OP_AUTH && zim_str_eq (f.token, "TOKEN"));
    free (buf);
}
END_TEST

//  Decodes every frame of a vector with the catalogue's decoder for rec (a
//  frame set); each must decode, encode again and decode the same. Returns
//  the first frame in *first (borrowing *buf, which the caller frees).
static int s_frames (const char *name, const zim_record_t *rec, unsigned char **buf, void *first)
{
    long n = s_load (name, buf);
    ck_assert_msg (n >= 0, "missing vector %s.hex", name);
    zim_rd_t rd;
    zim_rd_init (&rd, *buf, (size_t)n);
    int count = 0;
    while (zim_rd_left (&rd)) {
        _Alignas(max_align_t) char f[ZIM_MSG_MAX_SIZE], g[ZIM_MSG_MAX_SIZE];
        const char *why;
        ck_assert_msg (zim_codec_unpack_frame (&rd, rec, f, &why) == 0, "%s: %s", name, why);
        ck_assert_int_eq (zim_codec_check (rec, f), 0);
        zim_wr_t wr;
        zim_wr_init (&wr);
        zim_codec_pack_frame (&wr, rec, f);
        zim_rd_t again;
        zim_rd_init (&again, wr.data, wr.size);
        ck_assert_int_eq (zim_codec_unpack_frame (&again, rec, g, &why), 0);
        ck_assert (zim_codec_equal (rec, f, g));
        zim_wr_free (&wr);
        if (count++ == 0)
            memcpy (first, f, rec->size);
    }
    return count;
}

START_TEST (test_catalogue_reads_vectors)
{
    unsigned char *buf;
    zim_cframe_t c;
    for (size_t i = 0; i < sizeof s_client / sizeof s_client[0]; i++) {
        ck_assert_int_eq (s_frames (s_client[i].name, &zim_rec_cframe, &buf, &c), 1);
        free (buf);
    }
    //  The server's frames as a client reads them, to the documented values.
    zim_sframe_t f;
    ck_assert_int_eq (s_frames ("s2c-ack+msg", &zim_rec_sframe, &buf, &f), 2);
    ck_assert (f.op == ZIM_SOP_ACK && zim_str_eq (f.cid, "c1") && f.id == T_ID && f.seq == 1);
    ck_assert (f.ts == T_TS);
    free (buf);
    ck_assert_int_eq (s_frames ("s2c-page", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_PAGE && f.has_rid && f.rid == 1 && !f.more && f.nmsgs == 1);
    zim_sitem_t item;
    ck_assert_int_eq (zim_sitem_unpack (&f.msgs, &item), 0);
    ck_assert (item.seq == 1 && item.id == T_ID && zim_str_eq (item.conv, "p:alice:bob"));
    ck_assert (item.body.len == 3 && memcmp (item.body.ptr, "\xa2hi", 3) == 0);
    free (buf);
    ck_assert_int_eq (s_frames ("s2c-error", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_ERROR && f.code == ZIM_ERR_RATE_LIMITED && !f.has_rid);
    ck_assert (zim_str_eq (f.text, "rate limited") && zim_str_eq (f.cid, "c1"));
    free (buf);
    //  Receipts and the list, both ways.
    ck_assert_int_eq (s_frames ("receipts/c2s-read", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_READ && zim_str_eq (c.conv, "p:alice:bob") && c.seq == 5);
    free (buf);
    ck_assert_int_eq (s_frames ("receipts/c2s-mute", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_MUTE && c.until == 0);
    free (buf);
    ck_assert_int_eq (s_frames ("receipts/c2s-state", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_STATE && c.background);
    free (buf);
    ck_assert_int_eq (s_frames ("receipts/s2c-receipt", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_RECEIPT && zim_str_eq (f.user, "bob") && f.has_read && f.read == 1);
    free (buf);
    ck_assert_int_eq (s_frames ("receipts/s2c-convs", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_CONVS && f.rid == 3 && f.nconvs == 1);
    zim_sconv_t conv;
    ck_assert_int_eq (zim_sconv_unpack (&f.convs, &conv), 0);
    ck_assert (conv.unread == 1 && conv.id == T_ID && conv.peer_read == 0);
    free (buf);
    //  Rooms and signals, both ways.
    ck_assert_int_eq (s_frames ("rooms/c2s-join", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_JOIN && zim_str_eq (c.room, "lobby") && c.rid == 1 && c.counts);
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/c2s-publish", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_PUBLISH && c.body.len == 3 && c.rid == 3);
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/c2s-signal", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_SIGNAL && zim_str_eq (c.to, "bob"));
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/c2s-leave", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_LEAVE && c.rid == 2);
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/s2c-joined", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_JOINED && f.online == 2 && f.rid == 1);
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/s2c-room", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_ROOM && zim_str_eq (f.from, "alice") && f.ts == T_TS);
    free (buf);
    ck_assert_int_eq (s_frames ("rooms/s2c-count", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_COUNT && f.online == 3);
    free (buf);
    const char *rooms[] = {"rooms/s2c-left", "rooms/s2c-published", "rooms/s2c-signal",
                           "rooms/s2c-error"};
    for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
        ck_assert_int_eq (s_frames (rooms[i], &zim_rec_sframe, &buf, &f), 1);
        free (buf);
    }
    //  Groups and channels.
    ck_assert_int_eq (s_frames ("groups/c2s-send-group", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_SEND && c.has_group && zim_str_eq (c.group, "team") && !c.to.ptr);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/c2s-csync", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_CSYNC && zim_str_eq (c.group, "news") && c.limit == 1 && c.rid == 5);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/c2s-groups", &zim_rec_cframe, &buf, &c), 1);
    ck_assert (c.op == ZIM_OP_GROUPS && c.rid == 4);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/s2c-ack-group", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_ACK && f.seq == 3 && f.gseq == 7);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/s2c-msg-group", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_MSG && zim_str_eq (f.group, "team") && zim_str_eq (f.to, "team"));
    ck_assert (zim_str_eq (f.conv, "g:team") && f.seq == 3 && f.event.ptr == NULL);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/s2c-msg-event", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_MSG && zim_str_eq (f.group, "team") && zim_str_eq (f.event, "join"));
    ck_assert (zim_str_eq (f.from, "$join") && f.seq == 4 && f.body.len == 12);
    free (buf);
    ck_assert_int_eq (s_frames ("groups/s2c-page-csync", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_PAGE && f.reset && f.nmsgs == 1);
    ck_assert_int_eq (zim_sitem_unpack (&f.msgs, &item), 0);
    ck_assert (item.gseq == 30 && item.seq == 0 && zim_str_eq (item.group, "news"));
    free (buf);
    ck_assert_int_eq (s_frames ("groups/s2c-groups", &zim_rec_sframe, &buf, &f), 1);
    ck_assert (f.op == ZIM_SOP_GROUPS && f.ngroups == 1);
    zim_sgroup_t grp;
    ck_assert_int_eq (zim_sgroup_unpack (&f.groups, &grp), 0);
    ck_assert (grp.gseq == 30 && grp.members == 2 && zim_str_eq (grp.kind, "channel"));
    free (buf);
    const char *rest[] = {"s2c-auth_ok", "s2c-pong", "s2c-ack", "s2c-msg"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        ck_assert_int_eq (s_frames (rest[i], &zim_rec_sframe, &buf, &f), 1);
        free (buf);
    }
}
END_TEST

//  Writes every vector as hex, 16 bytes a line.
static int s_write (const char *dir)
{
    const s_vector_t *sets[] = {s_client,    s_server,    s_client_rc, s_server_rc,
                                s_client_rm, s_server_rm, s_client_gr, s_server_gr};
    size_t counts[] = {sizeof s_client / sizeof s_client[0],
                       sizeof s_server / sizeof s_server[0],
                       sizeof s_client_rc / sizeof s_client_rc[0],
                       sizeof s_server_rc / sizeof s_server_rc[0],
                       sizeof s_client_rm / sizeof s_client_rm[0],
                       sizeof s_server_rm / sizeof s_server_rm[0],
                       sizeof s_client_gr / sizeof s_client_gr[0],
                       sizeof s_server_gr / sizeof s_server_gr[0]};
    char sub[1024];
    snprintf (sub, sizeof sub, "%s/receipts", dir);
    mkdir (sub, 0755);
    snprintf (sub, sizeof sub, "%s/groups", dir);
    mkdir (sub, 0755);
    snprintf (sub, sizeof sub, "%s/rooms", dir);
    mkdir (sub, 0755);
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
        for (size_t i = 0; i < counts[s]; i++) {
            zim_wr_t wr;
            zim_wr_init (&wr);
            sets[s][i].build (&wr);
            char path[1024];
            snprintf (path, sizeof path, "%s/%s.hex", dir, sets[s][i].name);
            FILE *f = fopen (path, "w");
            if (!f)
                return 1;
            for (size_t b = 0; b < wr.size; b++)
                fprintf (f, "%02x%s", (unsigned char)wr.data[b],
                         (b % 16 == 15 || b + 1 == wr.size) ? "\n" : " ");
            fclose (f);
            zim_wr_free (&wr);
        }
    return 0;
}

int main (int argc, char **argv)
{
    if (argc == 3 && strcmp (argv[1], "--write") == 0)
        return s_write (argv[2]);
    Suite *s = suite_create ("vectors");
    TCase *tc = tcase_create ("vectors");
    tcase_add_test (tc, test_server_frames_byte_exact);
    tcase_add_test (tc, test_client_frames_decode);
    tcase_add_test (tc, test_catalogue_reads_vectors);
    suite_add_tcase (s, tc);
    SRunner *sr = srunner_create (s);
    srunner_run_all (sr, CK_NORMAL);
    int failed = srunner_ntests_failed (sr);
    srunner_free (sr);
    return failed ? 1 : 0;
}
