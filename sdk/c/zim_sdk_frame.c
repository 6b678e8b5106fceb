/*  zim_sdk_frame.c: client frame encoders and server frame decoders over
    msg/'s zero-copy msgpack reader and writer. Key order of the encoders
    matches docs/PROTOCOL.md's vectors.
*/
#include "config.h"
#include "sdk/c/zim_sdk_frame.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <string.h>

//  ---------------------------------------------------------------------
//  Client frames.

void zim_sdk_frame_auth (zim_wr_t *wr, const char *token, const char *device)
{
    zim_wr_map (wr, device ? 3 : 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "auth");
    zim_wr_cstr (wr, "token");
    zim_wr_cstr (wr, token);
    if (device) {
        zim_wr_cstr (wr, "device");
        zim_wr_cstr (wr, device);
    }
}

void zim_sdk_frame_ping (zim_wr_t *wr, uint64_t t)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "ping");
    zim_wr_cstr (wr, "t");
    zim_wr_uint (wr, t);
}

void zim_sdk_frame_send (zim_wr_t *wr, const char *to, const char *cid, const void *body,
                         size_t len)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "to");
    zim_wr_cstr (wr, to);
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_raw (wr, body, len);
}

void zim_sdk_frame_send_group (zim_wr_t *wr, const char *group, const char *cid, const void *body,
                               size_t len)
{
    zim_wr_map (wr, 4);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "send");
    zim_wr_cstr (wr, "group");
    zim_wr_cstr (wr, group);
    zim_wr_cstr (wr, "cid");
    zim_wr_cstr (wr, cid);
    zim_wr_cstr (wr, "body");
    zim_wr_raw (wr, body, len);
}

void zim_sdk_frame_sync (zim_wr_t *wr, int64_t since, uint32_t limit, uint64_t rid)
{
    zim_wr_map (wr, 2 + (since >= 0) + (limit > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "sync");
    if (since >= 0) {
        zim_wr_cstr (wr, "since");
        zim_wr_uint (wr, (uint64_t)since);
    }
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

void zim_sdk_frame_cursor (zim_wr_t *wr, uint64_t seq)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "cursor");
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, seq);
}

void zim_sdk_frame_history (zim_wr_t *wr, const char *peer, uint64_t before, uint32_t limit,
                            uint64_t rid)
{
    zim_wr_map (wr, 4 + (limit > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "history");
    zim_wr_cstr (wr, "peer");
    zim_wr_cstr (wr, peer);
    zim_wr_cstr (wr, "before");
    zim_wr_uint (wr, before);
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

void zim_sdk_frame_read (zim_wr_t *wr, const char *op, const char *conv, uint64_t seq)
{
    zim_wr_map (wr, 3);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, op);
    zim_wr_cstr (wr, "conv");
    zim_wr_cstr (wr, conv);
    zim_wr_cstr (wr, "seq");
    zim_wr_uint (wr, seq);
}

void zim_sdk_frame_convs (zim_wr_t *wr, uint32_t limit, uint64_t before, uint64_t rid)
{
    zim_wr_map (wr, 2 + (limit > 0) + (before > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "convs");
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    if (before > 0) {
        zim_wr_cstr (wr, "before");
        zim_wr_uint (wr, before);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

void zim_sdk_frame_groups (zim_wr_t *wr, uint64_t rid)
{
    zim_wr_map (wr, 2);
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "groups");
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

void zim_sdk_frame_csync (zim_wr_t *wr, const char *group, uint64_t since, uint32_t limit,
                          uint64_t rid)
{
    zim_wr_map (wr, 4 + (limit > 0));
    zim_wr_cstr (wr, "op");
    zim_wr_cstr (wr, "csync");
    zim_wr_cstr (wr, "group");
    zim_wr_cstr (wr, group);
    zim_wr_cstr (wr, "since");
    zim_wr_uint (wr, since);
    if (limit > 0) {
        zim_wr_cstr (wr, "limit");
        zim_wr_uint (wr, limit);
    }
    zim_wr_cstr (wr, "rid");
    zim_wr_uint (wr, rid);
}

//  ---------------------------------------------------------------------
//  Server frames.

//  Reads a map key into *key; a key that is not a string is skipped with
//  its value and *key is left empty. Returns 0 or -1.
static int s_key (zim_rd_t *rd, zim_str_t *key)
{
    key->ptr = NULL;
    key->len = 0;
    if (zim_rd_peek (rd) == ZIM_MP_STR)
        return zim_rd_str (rd, key);
    return zim_rd_skip (rd, NULL) || zim_rd_skip (rd, NULL) ? -1 : 0;
}

int zim_sdk_frame_decode (zim_rd_t *rd, zim_sdk_frame_t *f)
{
    memset (f, 0, sizeof *f);
    uint32_t n;
    if (zim_rd_map (rd, &n))
        goto malformed;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key;
        if (s_key (rd, &key))
            goto malformed;
        if (!key.ptr)
            continue;
        int rc = 0;
        if (zim_str_eq (key, "op"))
            rc = zim_rd_str (rd, &f->op);
        else if (zim_str_eq (key, "cid"))
            rc = zim_rd_str (rd, &f->cid);
        else if (zim_str_eq (key, "text"))
            rc = zim_rd_str (rd, &f->text);
        else if (zim_str_eq (key, "uid"))
            rc = zim_rd_str (rd, &f->uid);
        else if (zim_str_eq (key, "app"))
            rc = zim_rd_str (rd, &f->app);
        else if (zim_str_eq (key, "device"))
            rc = zim_rd_str (rd, &f->device);
        else if (zim_str_eq (key, "code")) {
            rc = zim_rd_int (rd, &f->code);
            f->has_code = rc == 0;
        } else if (zim_str_eq (key, "id"))
            rc = zim_rd_uint (rd, &f->id);
        else if (zim_str_eq (key, "seq"))
            rc = zim_rd_uint (rd, &f->seq);
        else if (zim_str_eq (key, "ts"))
            rc = zim_rd_uint (rd, &f->ts);
        else if (zim_str_eq (key, "gseq"))
            rc = zim_rd_uint (rd, &f->gseq);
        else if (zim_str_eq (key, "rid")) {
            rc = zim_rd_uint (rd, &f->rid);
            f->has_rid = rc == 0;
        } else if (zim_str_eq (key, "more"))
            rc = zim_rd_bool (rd, &f->more);
        else if (zim_str_eq (key, "t")) {
            //  t is whatever the ping carried; ours are uints
            if (zim_rd_uint (rd, &f->t))
                rc = zim_rd_skip (rd, NULL);
        } else if (zim_str_eq (key, "room"))
            rc = zim_rd_str (rd, &f->room);
        else if (zim_str_eq (key, "from"))
            rc = zim_rd_str (rd, &f->from);
        else if (zim_str_eq (key, "body"))
            rc = zim_rd_skip (rd, &f->body);
        else if (zim_str_eq (key, "online"))
            rc = zim_rd_uint (rd, &f->online);
        else if (zim_str_eq (key, "conv"))
            rc = zim_rd_str (rd, &f->conv);
        else if (zim_str_eq (key, "user"))
            rc = zim_rd_str (rd, &f->user);
        else if (zim_str_eq (key, "read")) {
            rc = zim_rd_uint (rd, &f->read);
            f->has_read = rc == 0;
        } else if (zim_str_eq (key, "delivered")) {
            rc = zim_rd_uint (rd, &f->delivered);
            f->has_delivered = rc == 0;
        } else if (zim_str_eq (key, "reset"))
            rc = zim_rd_bool (rd, &f->reset);
        else if (zim_str_eq (key, "convs") || zim_str_eq (key, "groups")) {
            rc = zim_rd_array (rd, &f->nlist);
            f->list = *rd;
            for (uint32_t j = 0; rc == 0 && j < f->nlist; j++)
                rc = zim_rd_skip (rd, NULL);
        } else if (zim_str_eq (key, "msgs")) {
            rc = zim_rd_array (rd, &f->nmsgs);
            f->msgs = *rd;
            for (uint32_t j = 0; rc == 0 && j < f->nmsgs; j++)
                rc = zim_rd_skip (rd, NULL);
        } else
            rc = zim_rd_skip (rd, NULL);
        if (rc)
            goto malformed;
    }
    if (!f->op.ptr)
        goto malformed;
    return 0;
malformed:
    return -1;
}

int zim_sdk_frame_copy (char *buf, size_t size, zim_str_t v)
{
    if (v.len >= size)
        return -1;
    if (v.len)
        memcpy (buf, v.ptr, v.len);
    buf[v.len] = 0;
    return 0;
}

int zim_sdk_frame_msg (zim_rd_t *rd, zim_client_msg_t *m)
{
    memset (m, 0, sizeof *m);
    uint32_t n;
    bool has_id = false, has_body = false;
    if (zim_rd_map (rd, &n))
        goto malformed;
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key, v;
        if (s_key (rd, &key))
            goto malformed;
        if (!key.ptr)
            continue;
        int rc;
        if (zim_str_eq (key, "seq"))
            rc = zim_rd_uint (rd, &m->seq);
        else if (zim_str_eq (key, "id")) {
            rc = zim_rd_uint (rd, &m->id);
            has_id = true;
        } else if (zim_str_eq (key, "ts"))
            rc = zim_rd_uint (rd, &m->ts);
        else if (zim_str_eq (key, "from"))
            rc = zim_rd_str (rd, &v) || zim_sdk_frame_copy (m->from, sizeof m->from, v);
        else if (zim_str_eq (key, "to"))
            rc = zim_rd_str (rd, &v) || zim_sdk_frame_copy (m->to, sizeof m->to, v);
        else if (zim_str_eq (key, "conv"))
            rc = zim_rd_str (rd, &v) || zim_sdk_frame_copy (m->conv, sizeof m->conv, v);
        else if (zim_str_eq (key, "group"))
            rc = zim_rd_str (rd, &v) || zim_sdk_frame_copy (m->group, sizeof m->group, v);
        else if (zim_str_eq (key, "gseq"))
            rc = zim_rd_uint (rd, &m->gseq);
        else if (zim_str_eq (key, "body")) {
            rc = zim_rd_skip (rd, &v);
            m->body = v.ptr;
            m->body_len = v.len;
            has_body = true;
        } else
            rc = zim_rd_skip (rd, NULL);
        if (rc)
            goto malformed;
    }
    if (!has_id || !has_body)
        goto malformed;
    return 0;
malformed:
    return -1;
}

int zim_sdk_frame_page (const zim_sdk_frame_t *f, zim_client_msg_t **msgs, size_t *alloc)
{
    //  grown item by item: the count in the array header is the server's
    //  word, the items decoded are not
    zim_rd_t rd = f->msgs;
    for (uint32_t i = 0; i < f->nmsgs; i++) {
        if (i == *alloc) {
            *alloc = *alloc ? *alloc * 2 : 64;
            *msgs = zim_realloc (*msgs, *alloc * sizeof **msgs);
        }
        if (zim_sdk_frame_msg (&rd, &(*msgs)[i]))
            return -1;
    }
    return (int)f->nmsgs;
}

//  Grows *items to hold index i (*alloc entries of size each).
static void s_grow (void **items, size_t *alloc, size_t i, size_t size)
{
    if (i < *alloc)
        return;
    *alloc = *alloc ? *alloc * 2 : 16;
    *items = zim_realloc (*items, *alloc * size);
}

int zim_sdk_frame_conv_list (const zim_sdk_frame_t *f, zim_client_conv_t **convs, size_t *alloc)
{
    //  each entry through the catalogue's sconv (msg/zim_catalog.def):
    //  required keys and types checked, unknown keys skipped
    zim_rd_t rd = f->list;
    for (uint32_t i = 0; i < f->nlist; i++) {
        s_grow ((void **)convs, alloc, i, sizeof **convs);
        zim_sconv_t e;
        zim_client_conv_t *c = &(*convs)[i];
        memset (c, 0, sizeof *c);
        if (zim_sconv_unpack (&rd, &e) || zim_sdk_frame_copy (c->conv, sizeof c->conv, e.conv) ||
            zim_sdk_frame_copy (c->from, sizeof c->from, e.from))
            return -1;
        c->id = e.id;
        c->ts = e.ts;
        c->body = e.body.ptr;
        c->body_len = e.body.len;
        c->seq = e.seq;
        c->unread = e.unread;
        c->read = e.read;
        c->delivered = e.delivered;
        c->peer_read = e.peer_read;
        c->peer_delivered = e.peer_delivered;
        c->muted = e.muted;
    }
    return (int)f->nlist;
}

int zim_sdk_frame_group_list (const zim_sdk_frame_t *f, zim_client_group_t **groups, size_t *alloc)
{
    zim_rd_t rd = f->list;
    for (uint32_t i = 0; i < f->nlist; i++) {
        s_grow ((void **)groups, alloc, i, sizeof **groups);
        zim_sgroup_t e;
        zim_client_group_t *g = &(*groups)[i];
        memset (g, 0, sizeof *g);
        if (zim_sgroup_unpack (&rd, &e) || zim_sdk_frame_copy (g->group, sizeof g->group, e.group))
            return -1;
        g->channel = zim_str_eq (e.kind, "channel");
        g->head = e.gseq;
        g->joined = e.joined;
        g->members = e.members;
    }
    return (int)f->nlist;
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#define streq(a, b) (strcmp ((a), (b)) == 0)

//  Parses a hex string ("83 a2 6f ...") into buf; returns the length.
static size_t s_t_hex (const char *hex, unsigned char *buf, size_t size)
{
    size_t n = 0;
    unsigned int b;
    int used;
    while (n < size && sscanf (hex, " %2x%n", &b, &used) == 1) {
        buf[n++] = (unsigned char)b;
        hex += used;
    }
    return n;
}

//  True if the writer holds exactly the bytes of hex; resets it.
static bool s_t_same (zim_wr_t *wr, const char *hex)
{
    unsigned char buf[256];
    size_t n = s_t_hex (hex, buf, sizeof buf);
    bool same = n == wr->size && memcmp (buf, wr->data, n) == 0;
    zim_wr_reset (wr);
    return same;
}

//  Decodes the one frame the writer holds; resets it. Returns 0 or -1.
static int s_t_decode (zim_wr_t *wr, zim_sdk_frame_t *f, unsigned char *copy, size_t size)
{
    assert (wr->size <= size);
    memcpy (copy, wr->data, wr->size);
    zim_rd_t rd;
    zim_rd_init (&rd, copy, wr->size);
    zim_wr_reset (wr);
    int rc = zim_sdk_frame_decode (&rd, f);
    return rc == 0 && zim_rd_left (&rd) == 0 ? 0 : -1;
}

void zim_sdk_frame_test (bool verbose)
{
    (void)verbose;
    zim_wr_t wr;
    zim_wr_init (&wr);

    //  Client frames are byte for byte the vectors of docs/PROTOCOL.md.
    zim_sdk_frame_auth (&wr, "TOKEN", "phone");
    assert (s_t_same (&wr, "83 a2 6f 70 a4 61 75 74 68 a5 74 6f 6b 65 6e a5 54 4f 4b 45 4e a6 64 "
                           "65 76 69 63 65 a5 70 68 6f 6e 65"));
    zim_sdk_frame_ping (&wr, 1);
    assert (s_t_same (&wr, "82 a2 6f 70 a4 70 69 6e 67 a1 74 01"));
    zim_sdk_frame_send (&wr, "bob", "c1", "\xa2hi", 3);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 73 65 6e 64 a2 74 6f a3 62 6f 62 a3 63 69 64 a2 63 31 "
                           "a4 62 6f 64 79 a2 68 69"));
    //  tests/vectors/groups/c2s-send-group
    zim_sdk_frame_send_group (&wr, "team", "g1", "\xa2hi", 3);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 73 65 6e 64 a5 67 72 6f 75 70 a4 74 65 61 6d a3 63 69 "
                           "64 a2 67 31 a4 62 6f 64 79 a2 68 69"));
    zim_sdk_frame_sync (&wr, 0, 100, 1);
    assert (s_t_same (&wr, "84 a2 6f 70 a4 73 79 6e 63 a5 73 69 6e 63 65 00 a5 6c 69 6d 69 74 64 "
                           "a3 72 69 64 01"));
    zim_sdk_frame_cursor (&wr, 5);
    assert (s_t_same (&wr, "82 a2 6f 70 a6 63 75 72 73 6f 72 a3 73 65 71 05"));
    zim_sdk_frame_history (&wr, "bob", 0, 20, 2);
    assert (s_t_same (&wr, "85 a2 6f 70 a7 68 69 73 74 6f 72 79 a4 70 65 65 72 a3 62 6f 62 a6 62 "
                           "65 66 6f 72 65 00 a5 6c 69 6d 69 74 14 a3 72 69 64 02"));
    //  and the server decodes what we send without since (stored cursor)
    zim_sdk_frame_sync (&wr, -1, 0, 7);
    {
        zim_rd_t rd;
        zim_cframe_t f;
        const char *why;
        zim_rd_init (&rd, wr.data, wr.size);
        assert (zim_cframe_decode (&rd, &f, &why) == 0);
        assert (f.op == ZIM_OP_SYNC && f.since == -1 && f.rid == 7 && f.limit == 0);
        zim_wr_reset (&wr);
    }

    //  An ack and a msg coalesced in one WebSocket message (s2c-ack+msg).
    unsigned char vec[512];
    size_t vlen = s_t_hex (
        "85 a2 6f 70 a3 61 63 6b a3 63 69 64 a2 63 31 a2 69 64 cf 03 7a ec 2c 00 00 10 00 a3 73 "
        "65 71 01 a2 74 73 cf 00 00 01 9a ae 02 a4 00 88 a2 6f 70 a3 6d 73 67 a3 73 65 71 01 a2 "
        "69 64 cf 03 7a ec 2c 00 00 10 00 a4 66 72 6f 6d a5 61 6c 69 63 65 a2 74 6f a3 62 6f 62 "
        "a4 63 6f 6e 76 ab 70 3a 61 6c 69 63 65 3a 62 6f 62 a4 62 6f 64 79 a2 68 69 a2 74 73 cf "
        "00 00 01 9a ae 02 a4 00",
        vec, sizeof vec);
    zim_rd_t rd;
    zim_sdk_frame_t f;
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "ack"));
    assert (zim_str_eq (f.cid, "c1") && f.id == 250772402995204096ull && f.seq == 1);
    const unsigned char *start = rd.pos;
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "msg"));
    assert (zim_rd_left (&rd) == 0);
    zim_client_msg_t m;
    zim_rd_init (&rd, start, (size_t)(vec + vlen - start));
    assert (zim_sdk_frame_msg (&rd, &m) == 0 && m.seq == 1 && streq (m.from, "alice"));
    assert (streq (m.to, "bob") && streq (m.conv, "p:alice:bob") && m.body_len == 3);
    assert (memcmp (m.body, "\xa2hi", 3) == 0 && m.ts == 1763856000000ull);
    //  truncated: malformed
    zim_rd_init (&rd, vec, 20);
    assert (zim_sdk_frame_decode (&rd, &f) == -1);

    //  Errors, pages and pongs as the server encodes them.
    unsigned char buf[1024];
    zim_cframe_error (&wr, ZIM_ERR_UNAVAILABLE, "busy", zim_str (NULL), true, 9);
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && zim_str_eq (f.op, "error"));
    assert (f.has_code && f.code == ZIM_ERR_UNAVAILABLE && f.has_rid && f.rid == 9);
    assert (zim_str_eq (f.text, "busy") && !f.cid.ptr);
    zim_item_t item = {7, 77, 5, zim_str ("alice"), zim_str ("bob"), {"\xc3", 1}};
    zim_cframe_page_begin (&wr, 3, true, 2);
    zim_cframe_page_item (&wr, &item);
    item.seq = 8;
    zim_cframe_page_item (&wr, &item);
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && zim_str_eq (f.op, "page"));
    assert (f.rid == 3 && f.more && f.nmsgs == 2);
    zim_client_msg_t *msgs = NULL;
    size_t alloc = 0;
    assert (zim_sdk_frame_page (&f, &msgs, &alloc) == 2 && alloc >= 2);
    assert (msgs[0].seq == 7 && msgs[1].seq == 8 && msgs[1].id == 77 && streq (msgs[1].to, "bob"));
    free (msgs);
    zim_cframe_pong (&wr, zim_str ("\x2a"));
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && zim_str_eq (f.op, "pong") && f.t == 42);
    zim_cframe_pong (&wr, zim_str ("\xa1x")); //  a t that is not ours: skipped
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && f.t == 0);

    //  Unknown keys and non-string keys are skipped; a known key of the
    //  wrong type, or no op, is malformed.
    zim_wr_map (&wr, 4);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "future");
    zim_wr_cstr (&wr, "x");
    zim_wr_array (&wr, 0);
    zim_wr_uint (&wr, 5);
    zim_wr_cstr (&wr, "five");
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 4);
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && zim_str_eq (f.op, "future"));
    assert (f.has_rid && f.rid == 4);
    zim_wr_map (&wr, 2);
    zim_wr_cstr (&wr, "op");
    zim_wr_cstr (&wr, "ack");
    zim_wr_cstr (&wr, "seq");
    zim_wr_cstr (&wr, "1");
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == -1);
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "rid");
    zim_wr_uint (&wr, 1);
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == -1);

    //  A message needs an id and a body; a from over 64 bytes is refused.
    zim_wr_map (&wr, 1);
    zim_wr_cstr (&wr, "id");
    zim_wr_uint (&wr, 1);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_sdk_frame_msg (&rd, &m) == -1);
    zim_wr_reset (&wr);
    char from[80];
    memset (from, 'a', sizeof from - 1);
    from[sizeof from - 1] = 0;
    item.from = zim_str (from);
    zim_cframe_msg (&wr, &item);
    zim_rd_init (&rd, wr.data, wr.size);
    assert (zim_sdk_frame_msg (&rd, &m) == -1);
    zim_wr_reset (&wr);

    //  Receipts, the list, groups, channels: tests/vectors/receipts/ and
    //  groups/, byte for byte.
    zim_sdk_frame_read (&wr, "read", "p:alice:bob", 5);
    assert (s_t_same (&wr, "83 a2 6f 70 a4 72 65 61 64 a4 63 6f 6e 76 ab 70 3a 61 6c 69 63 65 3a "
                           "62 6f 62 a3 73 65 71 05"));
    zim_sdk_frame_read (&wr, "delivered", "p:alice:bob", 6);
    assert (s_t_same (&wr, "83 a2 6f 70 a9 64 65 6c 69 76 65 72 65 64 a4 63 6f 6e 76 ab 70 3a 61 "
                           "6c 69 63 65 3a 62 6f 62 a3 73 65 71 06"));
    zim_sdk_frame_convs (&wr, 20, 0, 3);
    assert (s_t_same (&wr, "83 a2 6f 70 a5 63 6f 6e 76 73 a5 6c 69 6d 69 74 14 a3 72 69 64 03"));
    zim_sdk_frame_groups (&wr, 4);
    assert (s_t_same (&wr, "82 a2 6f 70 a6 67 72 6f 75 70 73 a3 72 69 64 04"));
    zim_sdk_frame_csync (&wr, "news", 0, 1, 5);
    assert (s_t_same (&wr, "85 a2 6f 70 a5 63 73 79 6e 63 a5 67 72 6f 75 70 a4 6e 65 77 73 a5 73 "
                           "69 6e 63 65 00 a5 6c 69 6d 69 74 01 a3 72 69 64 05"));
    //  and the server's decoder reads what the vectors do not show: convs
    //  with before and no limit, csync without limit
    struct {
        int op;
        uint64_t limit, before, since, rid;
    } cases[] = {{ZIM_OP_CONVS, 0, 77, 0, 8}, {ZIM_OP_CSYNC, 0, 0, 12, 9}};
    zim_sdk_frame_convs (&wr, 0, 77, 8);
    zim_sdk_frame_csync (&wr, "news", 12, 0, 9);
    zim_rd_init (&rd, wr.data, wr.size);
    for (int i = 0; i < 2; i++) {
        zim_cframe_t cf;
        const char *why;
        assert (zim_cframe_decode (&rd, &cf, &why) == 0 && (int)cf.op == cases[i].op);
        assert (cf.limit == cases[i].limit && cf.before == cases[i].before);
        assert (cf.rid == cases[i].rid && (i == 0 || (cf.since == 12 && cf.has_group)));
    }
    zim_wr_reset (&wr);

    //  s2c-receipt
    vlen = s_t_hex ("85 a2 6f 70 a7 72 65 63 65 69 70 74 a4 63 6f 6e 76 ab 70 3a 61 6c 69 63 65 "
                    "3a 62 6f 62 a4 75 73 65 72 a3 62 6f 62 a4 72 65 61 64 01 a9 64 65 6c 69 76 "
                    "65 72 65 64 01",
                    vec, sizeof vec);
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "receipt"));
    assert (zim_str_eq (f.conv, "p:alice:bob") && zim_str_eq (f.user, "bob"));
    assert (f.has_read && f.read == 1 && f.has_delivered && f.delivered == 1);
    zim_cframe_receipt (&wr, zim_str ("g:team"), zim_str ("al"), false, 0, true, 9);
    assert (s_t_decode (&wr, &f, buf, sizeof buf) == 0 && !f.has_read && f.delivered == 9);
    //  s2c-convs
    vlen = s_t_hex ("84 a2 6f 70 a5 63 6f 6e 76 73 a3 72 69 64 03 a4 6d 6f 72 65 c2 a5 63 6f 6e "
                    "76 73 91 89 a4 63 6f 6e 76 ab 70 3a 61 6c 69 63 65 3a 62 6f 62 a2 69 64 cf "
                    "03 7a ec 2c 00 00 10 00 a4 66 72 6f 6d a5 61 6c 69 63 65 a2 74 73 cf 00 00 "
                    "01 9a ae 02 a4 00 a4 62 6f 64 79 a2 68 69 a3 73 65 71 01 a6 75 6e 72 65 61 "
                    "64 01 a4 72 65 61 64 00 a9 64 65 6c 69 76 65 72 65 64 00",
                    vec, sizeof vec);
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "convs"));
    assert (f.rid == 3 && !f.more && f.nlist == 1 && zim_rd_left (&rd) == 0);
    zim_client_conv_t *convs = NULL;
    size_t calloc_ = 0;
    assert (zim_sdk_frame_conv_list (&f, &convs, &calloc_) == 1);
    assert (streq (convs[0].conv, "p:alice:bob") && streq (convs[0].from, "alice"));
    assert (convs[0].id == 250772402995204096ull && convs[0].ts == 1763856000000ull);
    assert (convs[0].seq == 1 && convs[0].unread == 1 && convs[0].read == 0);
    assert (convs[0].body_len == 3 && memcmp (convs[0].body, "\xa2hi", 3) == 0);
    assert (convs[0].peer_read == 0 && convs[0].muted == 0);
    //  an entry without its unread count is malformed
    vec[vlen - 19] = 'X'; //  "unread" -> "unreaX": skipped, so unread is missing
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 &&
            zim_sdk_frame_conv_list (&f, &convs, &calloc_) == -1);
    free (convs);
    //  s2c-groups
    vlen = s_t_hex ("83 a2 6f 70 a6 67 72 6f 75 70 73 a3 72 69 64 04 a6 67 72 6f 75 70 73 91 85 "
                    "a5 67 72 6f 75 70 a4 6e 65 77 73 a4 6b 69 6e 64 a7 63 68 61 6e 6e 65 6c a4 "
                    "67 73 65 71 1e a6 6a 6f 69 6e 65 64 00 a7 6d 65 6d 62 65 72 73 02",
                    vec, sizeof vec);
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "groups") && f.rid == 4);
    zim_client_group_t *groups = NULL;
    size_t galloc = 0;
    assert (zim_sdk_frame_group_list (&f, &groups, &galloc) == 1);
    assert (streq (groups[0].group, "news") && groups[0].channel && groups[0].head == 30);
    assert (groups[0].joined == 0 && groups[0].members == 2 && groups[0].pos == 0);
    free (groups);
    //  s2c-page-csync: reset, and the entry's group and gseq
    vlen = s_t_hex ("85 a2 6f 70 a4 70 61 67 65 a3 72 69 64 05 a4 6d 6f 72 65 c2 a5 72 65 73 65 "
                    "74 c3 a4 6d 73 67 73 91 88 a2 69 64 cf 03 7a ec 2c 00 00 10 00 a4 66 72 6f "
                    "6d a5 61 6c 69 63 65 a2 74 6f a4 6e 65 77 73 a4 63 6f 6e 76 a6 67 3a 6e 65 "
                    "77 73 a4 62 6f 64 79 a2 68 69 a2 74 73 cf 00 00 01 9a ae 02 a4 00 a5 67 72 "
                    "6f 75 70 a4 6e 65 77 73 a4 67 73 65 71 1e",
                    vec, sizeof vec);
    zim_rd_init (&rd, vec, vlen);
    assert (zim_sdk_frame_decode (&rd, &f) == 0 && zim_str_eq (f.op, "page") && f.reset);
    msgs = NULL;
    alloc = 0;
    assert (zim_sdk_frame_page (&f, &msgs, &alloc) == 1);
    assert (streq (msgs[0].group, "news") && msgs[0].gseq == 30 && msgs[0].seq == 0);
    assert (streq (msgs[0].conv, "g:news"));
    free (msgs);
    zim_wr_free (&wr);
}
