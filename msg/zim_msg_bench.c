/*  zim_msg_bench.c: a micro benchmark of the hot-path codecs, for comparing
    two builds of msg/ by instruction count (valgrind --tool=callgrind is
    repeatable on a busy machine, wall time is not). One round encodes and
    decodes what one send costs the backbone and the client side, one
    function per message so callgrind shows each:
        s_cframe     decodes the client's send frame
        s_send       encodes and decodes a SEND
        s_append     an APPEND of 16 items
        s_appended   an APPENDED of 16 results
        s_out        an ack and a msg frame, each in an OUT (encode, decode)
    Run:
        zim-msg-bench [ROUNDS]      (default 100000)
        valgrind --tool=callgrind --toggle-collect=s_round msg/zim-msg-bench 20000
        callgrind_annotate --inclusive=yes callgrind.out.PID | grep s_
    It uses only the public codec API, so the same file builds against an
    older msg/ for a before/after comparison.
*/
#include "msg/zim_msg.h"

#include <stdio.h>
#include <stdlib.h>

#define S_ITEMS 16

static uint64_t s_sink; //  keeps results alive so nothing is optimised away

static const uint8_t s_c2s_send[] = {0x84, 0xa2, 'o', 'p', 0xa4, 's',  'e',  'n', 'd', 0xa2, 't',
                                     'o',  0xa3, 'b', 'o', 'b',  0xa3, 'c',  'i', 'd', 0xa2, 'c',
                                     '1',  0xa4, 'b', 'o', 'd',  'y',  0xa2, 'h', 'i'};

//  The client's send frame, decoded by the gateway.
__attribute__ ((noinline)) static void s_cframe (zim_cframe_t *f)
{
    zim_rd_t rd;
    const char *why;
    zim_rd_init (&rd, s_c2s_send, sizeof s_c2s_send);
    if (zim_cframe_decode (&rd, f, &why) == 0)
        s_sink += f->body.len;
}

//  SEND gateway -> broker.
__attribute__ ((noinline)) static void s_send (zim_wr_t *wr, const zim_send_t *send)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_wr_reset (wr);
    zim_send_pack (wr, send);
    zim_rd_init (&rd, wr->data, wr->size);
    zim_send_t got;
    if (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_send_unpack (&rd, fields, &got) == 0)
        s_sink += got.who.conn;
}

//  APPEND broker -> store, 16 items.
__attribute__ ((noinline)) static void s_append (zim_wr_t *wr, const zim_send_t *send, uint64_t n)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_wr_reset (wr);
    zim_append_begin (wr, n, S_ITEMS);
    for (uint32_t i = 0; i < S_ITEMS; i++) {
        zim_append_item_t ai = {
            n + i,    1763856000000ULL, send->who.app, send->who.uid,
            send->to, send->cid,        send->body,    i % 2 ? ZIM_SIDE_FROM : ZIM_SIDE_BOTH};
        zim_append_item_pack (wr, &ai);
    }
    zim_rd_init (&rd, wr->data, wr->size);
    zim_append_t ap;
    if (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_append_unpack (&rd, fields, &ap) == 0)
        for (uint32_t i = 0; i < ap.nitems; i++) {
            zim_append_item_t it;
            if (zim_append_item_unpack (&ap.items, &it))
                break;
            s_sink += it.id + it.sides;
        }
}

//  APPENDED store -> broker, 16 results.
__attribute__ ((noinline)) static void s_appended (zim_wr_t *wr, uint64_t n)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_wr_reset (wr);
    zim_appended_begin (wr, n, S_ITEMS);
    for (uint32_t i = 0; i < S_ITEMS; i++) {
        zim_appended_item_t res = {0, n + i, 1000 + i, 2000 + i, 1763856000000ULL};
        zim_appended_item_pack (wr, &res);
    }
    zim_rd_init (&rd, wr->data, wr->size);
    zim_appended_t aps;
    if (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_appended_unpack (&rd, fields, &aps) == 0)
        for (uint32_t i = 0; i < aps.nitems; i++) {
            zim_appended_item_t res;
            if (zim_appended_item_unpack (&aps.items, &res))
                break;
            s_sink += res.to_seq;
        }
}

//  The ack and the msg frames, each in an OUT broker -> gateway, decoded.
__attribute__ ((noinline)) static void s_out (zim_wr_t *wr, zim_wr_t *fr, const zim_send_t *send,
                                              uint64_t n)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_wr_reset (fr);
    zim_cframe_ack (fr, send->cid, n, 7, 1763856000000ULL);
    zim_wr_reset (wr);
    uint64_t conn = n;
    zim_out_encode (wr, &conn, 1, (zim_str_t){fr->data, fr->size});
    zim_item_t msg = {8, n, 1763856000000ULL, send->who.uid, send->to, send->body};
    zim_wr_reset (fr);
    zim_cframe_msg (fr, &msg);
    zim_wr_reset (wr);
    zim_out_encode (wr, &conn, 1, (zim_str_t){fr->data, fr->size});
    zim_rd_init (&rd, wr->data, wr->size);
    zim_out_t out;
    if (zim_msg_kind (&rd, &kind, &fields) == 0 && zim_out_unpack (&rd, fields, &out) == 0)
        s_sink += out.frames.len;
}

//  One round of encodes and decodes; wr and fr are reused buffers.
__attribute__ ((noinline)) static void s_round (zim_wr_t *wr, zim_wr_t *fr, uint64_t n)
{
    zim_cframe_t f;
    s_cframe (&f);
    zim_send_t send = {
        {n, zim_str ("demo"), zim_str ("alice"), zim_str ("phone")}, f.cid, f.to, f.body};
    s_send (wr, &send);
    s_append (wr, &send, n);
    s_appended (wr, n);
    s_out (wr, fr, &send, n);
}

int main (int argc, char **argv)
{
    long rounds = argc > 1 ? atol (argv[1]) : 100000;
    zim_wr_t wr, fr;
    zim_wr_init (&wr);
    zim_wr_init (&fr);
    for (long i = 0; i < rounds; i++)
        s_round (&wr, &fr, (uint64_t)i);
    zim_wr_free (&wr);
    zim_wr_free (&fr);
    printf ("%ld rounds (sink %llu)\n", rounds, (unsigned long long)s_sink);
    return 0;
}
