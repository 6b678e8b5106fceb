/*  zim_routes.c: the presence table (zim_routes.h). A hash from "app/uid"
    to the small list of that user's live connections (gateway, conn,
    device), and a count of routes per gateway, which the router publishes
    so that a gateway can see when the router's view of it differs from its
    own sessions.
*/
#include "router/zim_routes.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>

//  One live connection of a user.
typedef struct {
    char *gateway; //  gateway node name (its ZeroMQ routing id)
    uint64_t conn; //  connection id on that gateway
    char *device;  //  device name the session authenticated with
    bool bg;       //  the app said it is in the background (offline push too)
} s_route_t;

//  All live connections of one user.
typedef struct {
    s_route_t *routes; //  array of count entries
    size_t count;      //  live connections
    size_t alloc;      //  allocated entries
} s_user_t;

struct _zim_routes_t {
    zhashx_t *users;    //  "app/uid" -> s_user_t
    zhashx_t *gateways; //  gateway name -> uint64_t routes held for it
    uint64_t routes;    //  routes in the table
};

static void s_user_destroy (void **item)
{
    s_user_t *user = *item;
    if (!user)
        return;
    for (size_t i = 0; i < user->count; i++) {
        free (user->routes[i].gateway);
        free (user->routes[i].device);
    }
    free (user->routes);
    free (user);
    *item = NULL;
}

static void s_count_destroy (void **item)
{
    zim_free ((uint64_t **)item);
}

zim_routes_t *zim_routes_new (void)
{
    zim_routes_t *self = zim_calloc (1, sizeof *self);
    self->users = zhashx_new ();
    zhashx_set_destructor (self->users, s_user_destroy);
    self->gateways = zhashx_new ();
    zhashx_set_destructor (self->gateways, s_count_destroy);
    return self;
}

void zim_routes_destroy (zim_routes_t **self_p)
{
    zim_routes_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->users);
    zhashx_destroy (&self->gateways);
    free (self);
    *self_p = NULL;
}

//  Writes "app/uid" into buf (both ids exclude '/').
static void s_key (char *buf, zim_str_t app, zim_str_t uid)
{
    memcpy (buf, app.ptr, app.len);
    buf[app.len] = '/';
    memcpy (buf + app.len + 1, uid.ptr, uid.len);
    buf[app.len + 1 + uid.len] = 0;
}

//  Adds delta (+1 or -1) to the route count of gateway.
static void s_count (zim_routes_t *self, const char *gateway, int delta)
{
    uint64_t *count = zhashx_lookup (self->gateways, gateway);
    if (!count) {
        assert (delta > 0);
        count = zim_calloc (1, sizeof *count);
        zhashx_insert (self->gateways, gateway, count);
    }
    *count += delta;
    if (*count == 0)
        zhashx_delete (self->gateways, gateway);
    self->routes += delta;
}

//  Removes route i from user, keeping the others.
static void s_user_remove (zim_routes_t *self, s_user_t *user, size_t i)
{
    s_count (self, user->routes[i].gateway, -1);
    free (user->routes[i].gateway);
    free (user->routes[i].device);
    user->routes[i] = user->routes[--user->count];
}

void zim_routes_apply (zim_routes_t *self, zim_str_t gateway, const zim_presence_item_t *it)
{
    char key[2 * ZIM_ID_MAX + 2];
    s_key (key, it->app, it->uid);
    s_user_t *user = zhashx_lookup (self->users, key);
    //  Drop any entry for this (gateway, conn): an up replaces it, a down ends it.
    if (user)
        for (size_t i = 0; i < user->count; i++)
            if (user->routes[i].conn == it->conn && zim_str_eq (gateway, user->routes[i].gateway)) {
                s_user_remove (self, user, i);
                break;
            }
    if (it->up) {
        if (!user) {
            user = zim_calloc (1, sizeof *user);
            zhashx_insert (self->users, key, user);
        }
        if (user->count == user->alloc) {
            user->alloc = user->alloc ? user->alloc * 2 : 2;
            user->routes = zim_realloc (user->routes, user->alloc * sizeof *user->routes);
        }
        s_route_t *route = &user->routes[user->count++];
        route->gateway = zim_str_dup (gateway);
        route->conn = it->conn;
        route->device = zim_str_dup (it->device);
        route->bg = it->bg;
        s_count (self, route->gateway, +1);
    } else if (user && user->count == 0)
        zhashx_delete (self->users, key);
}

void zim_routes_reset (zim_routes_t *self, zim_str_t gateway)
{
    char name[ZIM_ID_MAX + 1];
    zim_str_copy (gateway, name, sizeof name);
    if (!zhashx_lookup (self->gateways, name))
        return; //  nothing held for it: no need to walk every user
    zlistx_t *keys = zhashx_keys (self->users);
    for (char *key = zlistx_first (keys); key; key = zlistx_next (keys)) {
        s_user_t *user = zhashx_lookup (self->users, key);
        for (size_t i = 0; i < user->count;)
            if (zim_str_eq (gateway, user->routes[i].gateway))
                s_user_remove (self, user, i);
            else
                i++;
        if (user->count == 0)
            zhashx_delete (self->users, key);
    }
    zlistx_destroy (&keys);
}

size_t zim_routes_encode (zim_routes_t *self, zim_wr_t *wr, zim_str_t app, zim_str_t uid)
{
    char key[2 * ZIM_ID_MAX + 2];
    s_key (key, app, uid);
    s_user_t *user = zhashx_lookup (self->users, key);
    size_t count = user ? user->count : 0;
    zim_route_list_begin (wr, (uint32_t)count);
    for (size_t r = 0; r < count; r++) {
        zim_route_t route = {zim_str (user->routes[r].gateway), user->routes[r].conn,
                             zim_str (user->routes[r].device), user->routes[r].bg};
        zim_route_pack (wr, &route);
    }
    return count;
}

void zim_routes_app_counts (zim_routes_t *self, zim_str_t app, uint64_t *users, uint64_t *routes)
{
    char prefix[ZIM_ID_MAX + 2];
    snprintf (prefix, sizeof prefix, "%.*s/", (int)app.len, app.ptr);
    size_t plen = strlen (prefix);
    *users = *routes = 0;
    for (s_user_t *user = zhashx_first (self->users); user; user = zhashx_next (self->users))
        if (strncmp ((const char *)zhashx_cursor (self->users), prefix, plen) == 0) {
            (*users)++;
            *routes += user->count;
        }
}

size_t zim_routes_users (zim_routes_t *self)
{
    return zhashx_size (self->users);
}

uint64_t zim_routes_count (zim_routes_t *self)
{
    return self->routes;
}

uint64_t zim_routes_of (zim_routes_t *self, const char *gateway)
{
    uint64_t *count = zhashx_lookup (self->gateways, gateway);
    return count ? *count : 0;
}

json_t *zim_routes_per_gateway (zim_routes_t *self)
{
    json_t *obj = json_object ();
    for (uint64_t *count = zhashx_first (self->gateways); count;
         count = zhashx_next (self->gateways))
        json_object_set_new (obj, (const char *)zhashx_cursor (self->gateways),
                             json_integer ((json_int_t)*count));
    return obj;
}

//  -------------------------------------------------------------------------
//  Selftest

//  The conns of (demo, uid) as a ROUTE_R list would carry them; returns
//  how many (first 8 in conns).
static size_t s_test_lookup (zim_routes_t *self, const char *uid, uint64_t *conns)
{
    zim_wr_t wr;
    zim_wr_init (&wr);
    size_t n = zim_routes_encode (self, &wr, zim_str ("demo"), zim_str (uid));
    zim_rd_t rd;
    zim_rd_init (&rd, wr.data, wr.size);
    uint32_t count;
    assert (zim_rd_array (&rd, &count) == 0 && count == n);
    for (uint32_t i = 0; i < count; i++) {
        zim_route_t route;
        assert (zim_route_unpack (&rd, &route) == 0);
        if (i < 8)
            conns[i] = route.conn;
    }
    assert (zim_rd_left (&rd) == 0);
    zim_wr_free (&wr);
    return n;
}

void zim_routes_test (bool verbose)
{
    zim_routes_t *routes = zim_routes_new ();
    uint64_t conns[8];
    zim_presence_item_t up = {true, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone"),
                              false};
    zim_routes_apply (routes, zim_str ("gw-1"), &up);
    up.conn = 2;
    up.uid = zim_str ("bob");
    zim_routes_apply (routes, zim_str ("gw-1"), &up);
    up.conn = 7;
    up.uid = zim_str ("alice");
    zim_routes_apply (routes, zim_str ("gw-2"), &up);
    //  The same (gateway, conn) again replaces, not adds.
    zim_routes_apply (routes, zim_str ("gw-2"), &up);
    assert (zim_routes_count (routes) == 3 && zim_routes_users (routes) == 2);
    assert (zim_routes_of (routes, "gw-1") == 2 && zim_routes_of (routes, "gw-2") == 1);
    assert (s_test_lookup (routes, "alice", conns) == 2);
    assert (s_test_lookup (routes, "bob", conns) == 1 && conns[0] == 2);
    assert (s_test_lookup (routes, "carol", conns) == 0);

    //  A down removes exactly that route.
    zim_presence_item_t down = {false, 1, zim_str ("demo"), zim_str ("alice"), zim_str ("phone"),
                                false};
    zim_routes_apply (routes, zim_str ("gw-1"), &down);
    assert (s_test_lookup (routes, "alice", conns) == 1 && conns[0] == 7);
    //  A down for a route that is not there changes nothing.
    zim_routes_apply (routes, zim_str ("gw-1"), &down);
    assert (zim_routes_count (routes) == 2);

    json_t *per = zim_routes_per_gateway (routes);
    assert (json_integer_value (json_object_get (per, "gw-1")) == 1);
    assert (json_integer_value (json_object_get (per, "gw-2")) == 1);
    json_decref (per);

    //  A reset forgets all routes of one gateway, and its count.
    zim_routes_reset (routes, zim_str ("gw-2"));
    assert (s_test_lookup (routes, "alice", conns) == 0);
    assert (s_test_lookup (routes, "bob", conns) == 1);
    assert (zim_routes_of (routes, "gw-2") == 0 && zim_routes_users (routes) == 1);
    per = zim_routes_per_gateway (routes);
    assert (json_object_size (per) == 1 && !json_object_get (per, "gw-2"));
    json_decref (per);
    zim_routes_reset (routes, zim_str ("gw-9")); //  unknown: no-op
    assert (zim_routes_count (routes) == 1);
    zim_routes_destroy (&routes);
    zim_routes_destroy (&routes); //  idempotent
    if (verbose)
        zsys_info ("routes: apply, lookup, reset and per-gateway counts behave");
}
