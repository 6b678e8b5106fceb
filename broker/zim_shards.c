/*  zim_shards.c: the store shards a broker writes to and reads from (see
    zim_shards.h): names in the order first seen, the placement ring over
    them, and one DEALER per shard whose endpoint is known.
*/
#include "broker/zim_shards.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>

//  One store shard.
typedef struct {
    char *name;     //  its node name ("" for zim-server's one store)
    char *endpoint; //  where it is reached, NULL until a map says
    zsock_t *sock;  //  DEALER to it, NULL until then
} s_shard_t;

struct _zim_shards_t {
    zim_shell_t *shell;               //  sockets and log lines
    s_shard_t shards[ZIM_SHARDS_MAX]; //  in the order first seen
    size_t count;                     //  how many
    zim_ring_t *ring;                 //  placement over the names; NULL with
                                      //  zim-server's one store
    bool fixed;                       //  zim-server's one store: maps ignored
};

zim_shards_t *zim_shards_new (zim_shell_t *shell)
{
    zim_shards_t *self = zim_calloc (1, sizeof *self);
    self->shell = shell;
    return self;
}

void zim_shards_destroy (zim_shards_t **self_p)
{
    zim_shards_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        zsock_destroy (&self->shards[i].sock);
        free (self->shards[i].name);
        free (self->shards[i].endpoint);
    }
    zim_ring_destroy (&self->ring);
    free (self);
    *self_p = NULL;
}

//  A DEALER to a store: a few thousand APPENDs queued at most, then sends
//  fail fast and their clients retry.
static zsock_t *s_socket (zim_shards_t *self, const char *endpoint, bool immediate)
{
    zsock_t *sock = zim_shell_socket (self->shell, ZMQ_DEALER, false);
    if (!sock)
        return NULL;
    zsock_set_sndhwm (sock, 10000);
    if (immediate)
        zsock_set_immediate (sock, 1);
    if (zsock_connect (sock, "%s", endpoint) == -1) {
        zsys_error ("%s: cannot connect store at %s", zim_shell_name (self->shell), endpoint);
        zsock_destroy (&sock);
    }
    return sock;
}

int zim_shards_connect (zim_shards_t *self, const char *endpoint)
{
    if (self->count) {
        zsys_error ("%s: CONNECT store %s: store shards are known already",
                    zim_shell_name (self->shell), endpoint);
        return -1;
    }
    zsock_t *sock = s_socket (self, endpoint, false);
    if (!sock)
        return -1;
    //  In one process, what the store has not taken yet at exit is let go
    //  of for a second.
    zsock_set_linger (sock, 1000);
    self->shards[self->count++] = (s_shard_t){zim_strdup (""), zim_strdup (endpoint), sock};
    self->fixed = true;
    return 0;
}

//  The shard called name, added (and the ring rebuilt) if new; -1 when the
//  table is full.
static int s_find (zim_shards_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->count; i++)
        if (strlen (self->shards[i].name) == len && memcmp (self->shards[i].name, name, len) == 0)
            return (int)i;
    if (self->count == ZIM_SHARDS_MAX) {
        zim_shell_warn (self->shell, "more than %d store shards; %.*s ignored", ZIM_SHARDS_MAX,
                        (int)len, name);
        return -1;
    }
    s_shard_t *shard = &self->shards[self->count++];
    *shard = (s_shard_t){zim_calloc (1, len + 1), NULL, NULL};
    memcpy (shard->name, name, len);
    const char *names[ZIM_SHARDS_MAX];
    for (size_t i = 0; i < self->count; i++)
        names[i] = self->shards[i].name;
    zim_ring_destroy (&self->ring);
    self->ring = zim_ring_new (names, self->count);
    zsys_info ("%s: store shard %s joins the placement (%zu shards)", zim_shell_name (self->shell),
               shard->name, self->count);
    return (int)self->count - 1;
}

int zim_shards_add_names (zim_shards_t *self, const char *list)
{
    if (self->fixed) {
        zsys_warning ("%s: shards ignored: this broker has one store (CONNECT store)",
                      zim_shell_name (self->shell));
        return -1;
    }
    const char *at = list + strspn (list, ", ");
    while (*at) {
        size_t len = strcspn (at, ", ");
        if (s_find (self, at, len) == -1)
            return -1;
        at += len;
        at += strspn (at, ", ");
    }
    return 0;
}

//  Points a shard's DEALER at endpoint (a new socket when it moved).
static void s_point (zim_shards_t *self, int index, zim_str_t endpoint)
{
    s_shard_t *shard = &self->shards[index];
    if (shard->endpoint && strlen (shard->endpoint) == endpoint.len &&
        memcmp (shard->endpoint, endpoint.ptr, endpoint.len) == 0)
        return;
    zsock_destroy (&shard->sock);
    free (shard->endpoint);
    shard->endpoint = zim_str_dup (endpoint);
    shard->sock = s_socket (self, shard->endpoint, true);
    if (shard->sock)
        zsys_info ("%s: store shard %s at %s", zim_shell_name (self->shell), shard->name,
                   shard->endpoint);
}

int zim_shards_map (zim_shards_t *self, const void *data, size_t size)
{
    zim_rd_t rd;
    int kind;
    uint32_t fields;
    zim_map_t map;
    zim_rd_init (&rd, data, size);
    if (zim_msg_kind (&rd, &kind, &fields) || kind != ZIM_MSG_MAP ||
        zim_map_unpack (&rd, fields, &map))
        return -1;
    //  Read every member before changing anything: a map that is bad
    //  halfway changes nothing.
    zim_rd_t members = map.members;
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t member;
        if (zim_member_unpack (&members, &member))
            return -1;
    }
    if (self->fixed)
        return 0;
    for (uint32_t i = 0; i < map.nmembers; i++) {
        zim_member_t member;
        zim_member_unpack (&map.members, &member);
        if (!zim_str_eq (member.role, "store") || member.name.len == 0 || member.endpoint.len == 0)
            continue;
        int index = s_find (self, member.name.ptr, member.name.len);
        if (index != -1)
            s_point (self, index, member.endpoint);
    }
    return 0;
}

int zim_shards_of (zim_shards_t *self, zim_str_t app, zim_str_t uid)
{
    if (self->ring)
        return zim_ring_lookup (self->ring, app, uid);
    return self->count ? 0 : -1;
}

int zim_shards_send (zim_shards_t *self, int shard, const void *data, size_t size)
{
    if (shard < 0 || (size_t)shard >= self->count || !self->shards[shard].sock)
        return -1;
    return zmq_send (zsock_resolve (self->shards[shard].sock), data, size, ZMQ_DONTWAIT) == -1 ? -1
                                                                                               : 0;
}

size_t zim_shards_size (zim_shards_t *self)
{
    return self->count;
}

const char *zim_shards_name (zim_shards_t *self, int shard)
{
    if (shard < 0 || (size_t)shard >= self->count)
        return "(none)";
    return self->shards[shard].name;
}

zsock_t *zim_shards_sock (zim_shards_t *self, int shard)
{
    if (shard < 0 || (size_t)shard >= self->count)
        return NULL;
    return self->shards[shard].sock;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Encodes a map of the given (name, role, endpoint) members into wr.
static void s_test_map (zim_wr_t *wr, const char *const (*members)[3], uint32_t n)
{
    zim_wr_reset (wr);
    zim_map_begin (wr, zim_str ("router-1"), 1, 1, n);
    for (uint32_t i = 0; i < n; i++) {
        zim_member_t m = {zim_str (members[i][0]),
                          zim_str (members[i][1]),
                          zim_str (members[i][2]),
                          1,
                          zim_str (""),
                          true,
                          0,
                          zim_str ("{}")};
        zim_member_pack (wr, &m);
    }
}

void zim_shards_test (bool verbose)
{
    //  A shell for sockets and names only: no pipe.
    static const zim_shell_class_t cls = {.role = "broker"};
    zim_shell_t *shell = zim_shell_new (NULL, &cls, NULL, "broker-t");
    zsock_t *store = zsock_new_router ("inproc://shards-test-a");
    assert (store);

    //  No shard yet: nobody is placed, nothing can be sent.
    zim_shards_t *shards = zim_shards_new (shell);
    assert (zim_shards_of (shards, zim_str ("demo"), zim_str ("alice")) == -1);
    assert (zim_shards_send (shards, 0, "x", 1) == -1);
    assert (streq (zim_shards_name (shards, -1), "(none)"));

    //  Names first: placement is known, sockets are not.
    assert (zim_shards_add_names (shards, "store-b, store-a") == 0);
    assert (zim_shards_size (shards) == 2);
    const char *names[] = {"store-a", "store-b"};
    zim_ring_t *ring = zim_ring_new (names, 2);
    int alice_ring = zim_ring_lookup (ring, zim_str ("demo"), zim_str ("alice"));
    int alice = zim_shards_of (shards, zim_str ("demo"), zim_str ("alice"));
    //  Same placement as every other node's ring over the same names.
    assert (streq (zim_shards_name (shards, alice), names[alice_ring]));
    assert (zim_shards_sock (shards, alice) == NULL);
    assert (zim_shards_send (shards, alice, "x", 1) == -1);

    //  A map brings endpoints; a gateway member is not a shard, and a
    //  third store joins the placement.
    zim_wr_t wr;
    zim_wr_init (&wr);
    const char *const members[][3] = {{"gw-1", "gateway", "ws://x"},
                                      {"store-a", "store", "inproc://shards-test-a"},
                                      {"store-b", "store", "inproc://shards-test-b"},
                                      {"store-c", "store", "inproc://shards-test-c"}};
    s_test_map (&wr, members, 4);
    assert (zim_shards_map (shards, wr.data, wr.size) == 0);
    assert (zim_shards_size (shards) == 3);
    int a = 0;
    while (!streq (zim_shards_name (shards, a), "store-a"))
        a++;
    assert (zim_shards_send (shards, a, "hello", 5) == 0);
    zmsg_t *msg = zmsg_recv (store);
    assert (msg && zmsg_size (msg) == 2);
    zframe_t *body = zmsg_last (msg);
    assert (zframe_size (body) == 5 && memcmp (zframe_data (body), "hello", 5) == 0);
    zmsg_destroy (&msg);

    //  The same map again keeps the socket; a moved endpoint replaces it.
    zsock_t *before = zim_shards_sock (shards, a);
    assert (zim_shards_map (shards, wr.data, wr.size) == 0);
    assert (zim_shards_sock (shards, a) == before);
    const char *const moved[][3] = {{"store-a", "store", "inproc://shards-test-a2"}};
    s_test_map (&wr, moved, 1);
    assert (zim_shards_map (shards, wr.data, wr.size) == 0);
    assert (zim_shards_size (shards) == 3);

    //  A bad map, or another message, changes nothing.
    assert (zim_shards_map (shards, "\x93\x33\x01", 3) == -1);
    assert (zim_shards_map (shards, wr.data, wr.size - 1) == -1);
    assert (zim_shards_size (shards) == 3);
    zim_shards_destroy (&shards);
    zim_shards_destroy (&shards);

    //  zim-server's one store: everyone is on it, maps and names are ignored.
    shards = zim_shards_new (shell);
    assert (zim_shards_connect (shards, "inproc://shards-test-a") == 0);
    assert (zim_shards_connect (shards, "inproc://shards-test-b") == -1);
    assert (zim_shards_add_names (shards, "store-x") == -1);
    s_test_map (&wr, members, 4);
    assert (zim_shards_map (shards, wr.data, wr.size) == 0);
    assert (zim_shards_size (shards) == 1);
    assert (zim_shards_of (shards, zim_str ("demo"), zim_str ("anyone")) == 0);
    assert (zim_shards_send (shards, 0, "again", 5) == 0);
    msg = zmsg_recv (store);
    assert (msg);
    zmsg_destroy (&msg);
    zim_shards_destroy (&shards);

    zim_ring_destroy (&ring);
    zim_wr_free (&wr);
    zsock_destroy (&store);
    zim_shell_destroy (&shell);
    if (verbose)
        zsys_info ("shards: placement, map, moved endpoints and the one store behave");
}
