/*  zim_msgrec.c: the message record codec (see zim_msgrec.h).
 */
#include "store/zim_msgrec.h"
#include "store/zim_key.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

#define S_HEAD 28 //  fixed part: three integers and four lengths

size_t zim_msgrec_size (const zim_append_item_t *it)
{
    return S_HEAD + it->app.len + it->from.len + it->to.len + it->cid.len + it->body.len;
}

void zim_msgrec_write (void *dest, const zim_append_item_t *it, uint64_t from_seq, uint64_t to_seq)
{
    uint8_t *p = dest;
    zim_be64_put (p, it->ts);
    zim_be64_put (p + 8, from_seq);
    zim_be64_put (p + 16, to_seq);
    const zim_str_t *parts[] = {&it->app, &it->from, &it->to, &it->cid};
    for (int i = 0; i < 4; i++)
        p[24 + i] = (uint8_t)parts[i]->len;
    p += S_HEAD;
    for (int i = 0; i < 4; i++) {
        memcpy (p, parts[i]->ptr, parts[i]->len);
        p += parts[i]->len;
    }
    memcpy (p, it->body.ptr, it->body.len);
}

int zim_msgrec_parse (const MDB_val *v, zim_msgrec_t *r)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < S_HEAD)
        return -1;
    size_t alen = p[24], flen = p[25], tlen = p[26], clen = p[27];
    if (S_HEAD + alen + flen + tlen + clen > v->mv_size)
        return -1;
    r->ts = zim_be64_get (p);
    r->from_seq = zim_be64_get (p + 8);
    r->to_seq = zim_be64_get (p + 16);
    const char *s = (const char *)p + S_HEAD;
    r->app = (zim_str_t){s, alen};
    r->from = (zim_str_t){s + alen, flen};
    r->to = (zim_str_t){s + alen + flen, tlen};
    r->cid = (zim_str_t){s + alen + flen + tlen, clen};
    size_t head = S_HEAD + alen + flen + tlen + clen;
    r->body = (zim_str_t){(const char *)p + head, v->mv_size - head};
    return 0;
}

bool zim_str_same (zim_str_t a, zim_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp (a.ptr, b.ptr, a.len) == 0);
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_msgrec_test (bool verbose)
{
    zim_append_item_t it = {7,
                            1234567,
                            zim_str ("demo"),
                            zim_str ("alice"),
                            zim_str ("bob"),
                            zim_str ("c-1"),
                            {"\xa2hi", 3},
                            ZIM_SIDE_BOTH};
    size_t size = zim_msgrec_size (&it);
    assert (size == 28 + 4 + 5 + 3 + 3 + 3);
    uint8_t buf[64];
    zim_msgrec_write (buf, &it, 11, 12);
    MDB_val v = {size, buf};
    zim_msgrec_t r;
    assert (zim_msgrec_parse (&v, &r) == 0);
    assert (r.ts == 1234567 && r.from_seq == 11 && r.to_seq == 12);
    assert (zim_str_same (r.app, it.app) && zim_str_same (r.from, it.from));
    assert (zim_str_same (r.to, it.to) && zim_str_same (r.cid, it.cid));
    assert (zim_str_same (r.body, it.body));
    assert (!zim_str_same (r.to, r.from) && zim_str_same ((zim_str_t){NULL, 0}, zim_str ("")));

    //  Truncated or inconsistent records are corrupt, never read past.
    v.mv_size = 27;
    assert (zim_msgrec_parse (&v, &r) == -1);
    v.mv_size = 28 + 4 + 5 + 3 + 2;
    assert (zim_msgrec_parse (&v, &r) == -1);
    v.mv_size = 28 + 4 + 5 + 3 + 3; //  an empty body parses (the store never writes one)
    assert (zim_msgrec_parse (&v, &r) == 0 && r.body.len == 0);
    if (verbose)
        zsys_info ("record: round trip and corrupt records hold");
}
