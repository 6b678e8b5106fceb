/*  zim_key.c: the store's key encoding (see zim_key.h).
 */
#include "store/zim_key.h"
#include "msg/zim_msg.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

void zim_be64_put (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t zim_be64_get (const void *data)
{
    const uint8_t *p = data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void zim_key_str (zim_key_t *k, zim_str_t s)
{
    assert (s.len < 256 && k->len + 1 + s.len <= sizeof k->buf);
    k->buf[k->len++] = (uint8_t)s.len;
    if (s.len)
        memcpy (k->buf + k->len, s.ptr, s.len);
    k->len += s.len;
}

void zim_key_u64 (zim_key_t *k, uint64_t v)
{
    assert (k->len + 8 <= sizeof k->buf);
    zim_be64_put (k->buf + k->len, v);
    k->len += 8;
}

void zim_key_user (zim_key_t *k, zim_str_t app, zim_str_t uid)
{
    k->len = 0;
    zim_key_str (k, app);
    zim_key_str (k, uid);
}

void zim_key_conv (zim_key_t *k, zim_str_t app, zim_str_t a, zim_str_t b)
{
    char conv[2 + ZIM_ID_MAX + 1 + ZIM_ID_MAX + 1];
    int len = zim_conv_peer (a, b, conv, sizeof conv);
    assert (len > 0);
    k->len = 0;
    zim_key_str (k, app);
    zim_key_str (k, (zim_str_t){conv, (size_t)len});
}

void zim_key_idem (zim_key_t *k, zim_str_t app, zim_str_t from, zim_str_t cid)
{
    k->len = 0;
    zim_key_str (k, app);
    zim_key_str (k, from);
    zim_key_str (k, cid);
}

MDB_val zim_key_val (const zim_key_t *k)
{
    return (MDB_val){k->len, (void *)k->buf};
}

bool zim_key_has_prefix (const MDB_val *key, const zim_key_t *prefix, size_t tail)
{
    return key->mv_size == prefix->len + tail &&
           memcmp (key->mv_data, prefix->buf, prefix->len) == 0;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_key_test (bool verbose)
{
    uint8_t b[8];
    zim_be64_put (b, 0x0102030405060708ULL);
    assert (b[0] == 1 && b[7] == 8 && zim_be64_get (b) == 0x0102030405060708ULL);

    //  Numeric order is memcmp order.
    zim_key_t lo, hi;
    zim_key_user (&lo, zim_str ("demo"), zim_str ("bob"));
    hi = lo;
    zim_key_u64 (&lo, 255);
    zim_key_u64 (&hi, 256);
    assert (lo.len == hi.len && memcmp (lo.buf, hi.buf, lo.len) < 0);

    //  [app][uid] is a prefix of the inbox key; "bo" is not a prefix of "bob".
    zim_key_t user, other;
    zim_key_user (&user, zim_str ("demo"), zim_str ("bob"));
    zim_key_user (&other, zim_str ("demo"), zim_str ("bo"));
    MDB_val v = zim_key_val (&hi);
    assert (zim_key_has_prefix (&v, &user, 8));
    assert (!zim_key_has_prefix (&v, &user, 9));
    assert (!zim_key_has_prefix (&v, &other, 9));
    assert (user.len == 1 + 4 + 1 + 3 && user.buf[0] == 4 && user.buf[5] == 3);

    //  A conversation has one key whatever the order of its users.
    zim_key_t ab, ba;
    zim_key_conv (&ab, zim_str ("demo"), zim_str ("alice"), zim_str ("bob"));
    zim_key_conv (&ba, zim_str ("demo"), zim_str ("bob"), zim_str ("alice"));
    assert (ab.len == ba.len && memcmp (ab.buf, ba.buf, ab.len) == 0);
    assert (memcmp (ab.buf + 6, "p:alice:bob", 11) == 0);

    //  The longest key fits: [app][conv] id with 64-byte ids.
    char id[65];
    memset (id, 'x', 64);
    id[64] = 0;
    zim_key_t big;
    zim_key_conv (&big, zim_str (id), zim_str (id), zim_str (id));
    zim_key_u64 (&big, 1);
    assert (big.len == 1 + 64 + 1 + 131 + 8);
    zim_key_idem (&big, zim_str (id), zim_str (id), zim_str (id));
    assert (big.len == 3 * 65);
    if (verbose)
        zsys_info ("key: encoding and order hold");
}
