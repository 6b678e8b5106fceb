/*  zim_apps.h: the apps a gateway accepts tokens for, and how each one's
    tokens are checked: an HMAC secret (HS256), a PEM public key (RS256 or
    ES256, from the key's type), and optionally the audience and issuer its
    tokens must name. The algorithms an app allows follow from its keys
    alone, never from a token: that is what refuses algorithm confusion.

    Filled by the gateway's settings (SET app_secret NAME SECRET,
    app_public_key NAME PATH, app_audience NAME AUD, app_issuer NAME ISS);
    read by zim_token_verify.
*/
#ifndef ZIM_APPS_H_INCLUDED
#define ZIM_APPS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "msg/zim_mp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_apps_t zim_apps_t;
typedef struct _zim_app_t zim_app_t;

//  The public-key algorithm of an app, from its key's type.
typedef enum {
    ZIM_APP_KEY_NONE = 0, //  no public key
    ZIM_APP_KEY_RS256,    //  an RSA key of 2048 bits or more
    ZIM_APP_KEY_ES256,    //  an EC key on P-256
} zim_app_key_t;

//  Creates an empty set. Caller owns return value.
zim_apps_t *zim_apps_new (void);
void zim_apps_destroy (zim_apps_t **self_p);

//  Each setter creates the app if it is new, and replaces what it sets.
//  Each returns 0, or -1 with *why set to a static text (the app name is
//  not a valid id, the value is empty, the key file cannot be used).
int zim_apps_set_secret (zim_apps_t *self, const char *app, const char *secret, const char **why);
//  Reads the PEM public key (SubjectPublicKeyInfo, "BEGIN PUBLIC KEY") at
//  path now: RSA (2048 bits or more) allows RS256, EC P-256 allows ES256.
int zim_apps_set_public_key (zim_apps_t *self, const char *app, const char *path, const char **why);
int zim_apps_set_audience (zim_apps_t *self, const char *app, const char *audience,
                           const char **why);
int zim_apps_set_issuer (zim_apps_t *self, const char *app, const char *issuer, const char **why);

//  The app called name, or NULL.
const zim_app_t *zim_apps_lookup (const zim_apps_t *self, zim_str_t name);
//  How many apps there are.
size_t zim_apps_size (const zim_apps_t *self);

//  An app's settings; NULL (or ZIM_APP_KEY_NONE) when not set.
const char *zim_app_name (const zim_app_t *app);
const char *zim_app_secret (const zim_app_t *app);
//  The PEM text of the public key and its length.
const char *zim_app_key_pem (const zim_app_t *app, size_t *len);
zim_app_key_t zim_app_key_type (const zim_app_t *app);
const char *zim_app_audience (const zim_app_t *app);
const char *zim_app_issuer (const zim_app_t *app);

//  Self test of this class.
void zim_apps_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
