/*  zim_id.c: identifier checks and conversation keys (zim_id.h).
 */
#include "msg/zim_id.h"

#include <assert.h>
#include <stdio.h>

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
    int cmp = min ? memcmp (a.ptr, b.ptr, min) : 0;
    if (cmp > 0 || (cmp == 0 && a.len > b.len)) {
        zim_str_t t = a;
        a = b;
        b = t;
    }
    size_t len = 2 + a.len + 1 + b.len;
    if (len + 1 > size)
        return -1;
    memcpy (buf, "p:", 2);
    if (a.len)
        memcpy (buf + 2, a.ptr, a.len);
    buf[2 + a.len] = ':';
    if (b.len)
        memcpy (buf + 3 + a.len, b.ptr, b.len);
    buf[len] = 0;
    return (int)len;
}

void zim_id_test (bool verbose)
{
    assert (zim_uid_valid (zim_str ("alice.b-c_d@x")));
    assert (!zim_uid_valid (zim_str ("")));
    assert (!zim_uid_valid (zim_str ("a b")));
    assert (!zim_uid_valid (zim_str ("a:b")));
    assert (zim_cid_valid (zim_str ("c:1/é")) == false);
    assert (zim_cid_valid (zim_str ("c:1/~")));
    char conv[64];
    assert (zim_conv_peer (zim_str ("bob"), zim_str ("alice"), conv, sizeof conv) > 0);
    assert (strcmp (conv, "p:alice:bob") == 0);
    assert (zim_conv_peer (zim_str ("alice"), zim_str ("bob"), conv, sizeof conv) > 0);
    assert (strcmp (conv, "p:alice:bob") == 0);
    assert (zim_conv_peer (zim_str ("alice"), zim_str ("bob"), conv, 11) == -1);
    if (verbose)
        printf ("(ids ok) ");
}
