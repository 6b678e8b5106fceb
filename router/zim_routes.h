/*  zim_routes.h: the router's presence table. Which (app, user) is
    connected on which gateway connection, learnt from the gateways'
    PRESENCE messages and read by brokers' ROUTE_Q queries. Soft state:
    after a router restart the gateways announce their sessions again.
*/
#ifndef ZIM_ROUTES_H_INCLUDED
#define ZIM_ROUTES_H_INCLUDED

#include "msg/zim_msg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_routes_t zim_routes_t;

//  Creates an empty table. Caller owns return value.
zim_routes_t *zim_routes_new (void);
void zim_routes_destroy (zim_routes_t **self_p);

//  Applies one PRESENCE item of gateway: an up adds (or replaces) the route
//  of (gateway, conn), a down removes it.
void zim_routes_apply (zim_routes_t *self, zim_str_t gateway, const zim_presence_item_t *item);

//  Forgets every route of gateway (it restarted, re-announces, or left the
//  map).
void zim_routes_reset (zim_routes_t *self, zim_str_t gateway);

//  Appends the route list of (app, uid) to a ROUTE_R being built in wr
//  (zim_route_list_begin, then one zim_route_pack per connection). Returns how
//  many routes it wrote.
size_t zim_routes_encode (zim_routes_t *self, zim_wr_t *wr, zim_str_t app, zim_str_t uid);

//  Users of app with at least one route, and their routes (walks every
//  user: for the push API's stats, not for a hot path).
void zim_routes_app_counts (zim_routes_t *self, zim_str_t app, uint64_t *users, uint64_t *routes);
//  Users with at least one route.
size_t zim_routes_users (zim_routes_t *self);
//  Routes in the table.
uint64_t zim_routes_count (zim_routes_t *self);
//  Routes held for one gateway (0 if none).
uint64_t zim_routes_of (zim_routes_t *self, const char *gateway);
//  An object {"GATEWAY": routes, ...} with every gateway that has routes.
//  Caller owns return value (json_decref).
json_t *zim_routes_per_gateway (zim_routes_t *self);

//  Self test of this class.
void zim_routes_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
