/*  zim_conv.c: conversation keys (see zim_conv.h).
 */
#include "msg/zim_conv.h"
#include "msg/zim_id.h"
#include "msg/zim_msg.h"

#include <assert.h>
#include <czmq.h>
#include <string.h>

//  memcmp order of two views, shorter first on a tie (as zim_conv_peer).
static int s_cmp (zim_str_t a, zim_str_t b)
{
    size_t min = a.len < b.len ? a.len : b.len;
    int cmp = min ? memcmp (a.ptr, b.ptr, min) : 0;
    return cmp ? cmp : (a.len > b.len) - (a.len < b.len);
}

int zim_conv_parse (zim_str_t conv, zim_conv_t *out)
{
    memset (out, 0, sizeof *out);
    if (!conv.ptr || conv.len < 3 || conv.len > ZIM_CONV_MAX || conv.ptr[1] != ':')
        return -1;
    zim_str_t rest = {conv.ptr + 2, conv.len - 2};
    if (conv.ptr[0] == 'g') {
        out->group = true;
        out->id = rest;
        return zim_uid_valid (rest) ? 0 : -1;
    }
    if (conv.ptr[0] != 'p')
        return -1;
    //  User ids hold no ':', so the first one splits the key.
    const char *colon = memchr (rest.ptr, ':', rest.len);
    if (!colon)
        return -1;
    out->a = (zim_str_t){rest.ptr, (size_t)(colon - rest.ptr)};
    out->b = (zim_str_t){colon + 1, rest.len - out->a.len - 1};
    return zim_uid_valid (out->a) && zim_uid_valid (out->b) && s_cmp (out->a, out->b) <= 0 ? 0 : -1;
}

int zim_conv_check (zim_str_t conv, zim_str_t uid, zim_str_t *peer)
{
    zim_conv_t c;
    *peer = (zim_str_t){NULL, 0};
    if (zim_conv_parse (conv, &c))
        return ZIM_ERR_BAD_FIELD;
    if (c.group)
        return 0;
    if (s_cmp (c.a, uid) == 0)
        *peer = c.b;
    else if (s_cmp (c.b, uid) == 0)
        *peer = c.a;
    else
        return ZIM_ERR_FORBIDDEN;
    return 0;
}

//  -------------------------------------------------------------------------
//  Selftest

void zim_conv_test (bool verbose)
{
    zim_conv_t c;
    zim_str_t peer;
    assert (zim_conv_parse (zim_str ("p:alice:bob"), &c) == 0 && !c.group);
    assert (zim_str_eq (c.a, "alice") && zim_str_eq (c.b, "bob"));
    assert (zim_conv_parse (zim_str ("g:team-1"), &c) == 0 && c.group &&
            zim_str_eq (c.id, "team-1"));
    //  What zim_conv_peer makes always parses, in both orders of the users.
    char key[ZIM_CONV_MAX + 1];
    const char *pairs[][2] = {{"bob", "alice"}, {"al", "alice"}, {"a", "a"}, {"Z", "a"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert (zim_conv_peer (zim_str (pairs[i][0]), zim_str (pairs[i][1]), key, sizeof key) > 0);
        assert (zim_conv_parse (zim_str (key), &c) == 0);
        assert (zim_conv_check (zim_str (key), zim_str (pairs[i][0]), &peer) == 0);
        assert (zim_str_eq (peer, pairs[i][1]));
    }
    //  Not keys: order, empty users, bad ids, prefixes, lengths.
    const char *bad[] = {"p:bob:alice", "p::bob", "p:alice:", "p:alice", "p:a:b:c", "x:alice:bob",
                         "g:",          "g:a b",  "p",        "",        "pp:a:b",  "p:al ice:bob"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert (zim_conv_parse (zim_str (bad[i]), &c) == -1);
    char longest[ZIM_CONV_MAX + 2];
    memset (longest, 'a', sizeof longest);
    memcpy (longest, "g:", 2);
    longest[ZIM_CONV_MAX + 1] = 0;
    assert (zim_conv_parse (zim_str (longest), &c) == -1);
    //  Who takes part.
    assert (zim_conv_check (zim_str ("p:alice:bob"), zim_str ("carol"), &peer) ==
            ZIM_ERR_FORBIDDEN);
    assert (zim_conv_check (zim_str ("p:alice:bob"), zim_str ("bob"), &peer) == 0);
    assert (zim_str_eq (peer, "alice"));
    assert (zim_conv_check (zim_str ("g:team"), zim_str ("carol"), &peer) == 0 && peer.len == 0);
    assert (zim_conv_check (zim_str ("p:b:a"), zim_str ("a"), &peer) == ZIM_ERR_BAD_FIELD);
    if (verbose)
        zsys_info ("conv: keys parse, participants checked");
}
