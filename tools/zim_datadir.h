/*  zim_datadir.h: a node's data directory and secrets. Creates the
    directory, reads the apps of the config (or makes the dev defaults: app
    "demo" with a secret generated in DIR/app-demo.secret), the admin key
    (server/admin_key or DIR/admin.key, generated), and, with curve/enabled,
    the cluster's CURVE keys (curve/keys, default DIR/curve).
*/
#ifndef ZIM_DATADIR_H_INCLUDED
#define ZIM_DATADIR_H_INCLUDED

#include "msg/zim_curve.h"

#include <czmq.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_datadir_t zim_datadir_t;

//  Opens the data directory that conf names (server/data, default
//  ./zim-data), creating what is missing. program prefixes log lines.
//  Returns NULL if an app is invalid (a name that is not a zim id; neither
//  a secret of 16+ characters nor a public_key) or a file cannot be read
//  or made (logged). Caller owns return value.
zim_datadir_t *zim_datadir_open (zconfig_t *conf, const char *program);
void zim_datadir_destroy (zim_datadir_t **self_p);

//  The directory.
const char *zim_datadir_path (zim_datadir_t *self);
//  The key every admin request must carry.
const char *zim_datadir_admin_key (zim_datadir_t *self);
//  True with no apps section: app "demo" with a generated secret.
bool zim_datadir_dev_defaults (zim_datadir_t *self);
//  The HS256 secret of app, or NULL (unknown app, or one with a public key
//  only: its backend mints its tokens).
const char *zim_datadir_secret (zim_datadir_t *self, const char *app);
//  Sends a gateway actor its apps: SET app_K NAME VALUE for every key K of
//  each apps/NAME section (app_secret for the dev defaults' demo).
void zim_datadir_apply_apps (zim_datadir_t *self, zactor_t *gateway);

//  The node's CURVE keys (the cluster key pair), NULL without
//  curve/enabled. Borrowed.
const zim_curve_t *zim_datadir_curve (zim_datadir_t *self);
//  The directory of the client certificates allowed on the admin endpoint
//  (KEYS/clients), NULL without CURVE.
const char *zim_datadir_clients (zim_datadir_t *self);

//  Self test of this class.
void zim_datadir_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
