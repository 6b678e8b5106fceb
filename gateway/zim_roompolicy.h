/*  zim_roompolicy.h: who may do what with rooms on this gateway. Per app:
    who may join (app_join NAME open|token: token means only the rooms the
    token's "rooms" claim names, exactly or by a prefix ending in "*") and
    who may publish (app_client_publish NAME none|members); a token's
    claims (its payload, read again after verification); and the users the
    backend disconnected (POST /v1/disconnect), whose tokens issued until
    then are refused (at most 100,000 users; a restart forgets them).
*/
#ifndef ZIM_ROOMPOLICY_H_INCLUDED
#define ZIM_ROOMPOLICY_H_INCLUDED

#include "msg/zim_msg.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _zim_roompolicy_t zim_roompolicy_t;

//  Patterns kept from one token's "rooms" claim.
#define ZIM_ROOMPOLICY_MAX_CLAIMS 64

//  Creates the policy: every app open, members publish. Caller owns
//  return value.
zim_roompolicy_t *zim_roompolicy_new (void);
void zim_roompolicy_destroy (zim_roompolicy_t **self_p);

//  SET app_join NAME open|token, SET app_client_publish NAME none|members.
//  Return 0, or -1 with *why set.
int zim_roompolicy_set_join (zim_roompolicy_t *self, const char *app, const char *value,
                             const char **why);
int zim_roompolicy_set_publish (zim_roompolicy_t *self, const char *app, const char *value,
                                const char **why);
//  True if app's joins follow the token's rooms claim; if its clients may
//  not publish.
bool zim_roompolicy_join_by_token (zim_roompolicy_t *self, const char *app);
bool zim_roompolicy_publish_none (zim_roompolicy_t *self, const char *app);

//  The claims of a token verified before (its payload as JSON), or NULL.
//  Caller owns return value.
json_t *zim_roompolicy_claims (const char *token, size_t len);
//  Whether one of patterns[0..n) (a token's rooms claim) names room.
bool zim_roompolicy_claimed (char *const *patterns, uint32_t n, zim_str_t room);

//  The backend disconnected (app, uid) at now_s: its tokens issued (iat)
//  until then are refused.
void zim_roompolicy_revoke (zim_roompolicy_t *self, zim_str_t app, zim_str_t uid, uint64_t now_s);
//  True if a token of (app, uid) with claims is refused so.
bool zim_roompolicy_revoked (zim_roompolicy_t *self, const char *app, const char *uid,
                             json_t *claims);

//  Self test of this class.
void zim_roompolicy_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
