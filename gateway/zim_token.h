/*  zim_token.h: client tokens. A token is a JWT naming the user (sub), the
    app (app) and an expiry (exp, seconds since the epoch); any other valid
    JSON claims may come with it. It is signed with the app's secret
    (HS256) or with the private half of the app's public key (RS256,
    ES256); see zim_apps.h for which algorithms an app allows.

    Verification (through libjwt, claims through jansson) refuses, each
    with its own reason and wire code: a malformed token or claims, an
    unknown app, alg "none" or an algorithm the app's keys do not allow, a
    bad signature, an expired token (exp), one not yet valid (nbf), and an
    aud or iss other than the app's configured audience and issuer. Claims
    are judged only once the signature is good: a forger learns nothing.

    Minting (zimctl token, /dev/token, tests) is HS256 through libjwt.
*/
#ifndef ZIM_TOKEN_H_INCLUDED
#define ZIM_TOKEN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/zim_apps.h"

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Longest token accepted, in bytes. An HS256 token with a few claims is
//  about 200 bytes, an RS256 one about 600.
#define ZIM_TOKEN_MAX 4096

//  Why a token was refused.
typedef enum {
    ZIM_TOKEN_OK = 0,
    ZIM_TOKEN_MALFORMED,     //  4011: not three base64url parts of JSON, bad claims
    ZIM_TOKEN_UNKNOWN_APP,   //  4011: app names no configured app
    ZIM_TOKEN_BAD_SIGNATURE, //  4011: the signature does not verify
    ZIM_TOKEN_EXPIRED,       //  4012: now >= exp + leeway
    ZIM_TOKEN_NOT_YET_VALID, //  4016: now + leeway < nbf
    ZIM_TOKEN_BAD_AUDIENCE,  //  4017: aud does not name the app's audience
    ZIM_TOKEN_BAD_ISSUER,    //  4017: iss is not the app's issuer
    ZIM_TOKEN_ALG_REFUSED,   //  4018: none, or an alg the app's keys do not allow
    ZIM_TOKEN_REASONS        //  how many there are
} zim_token_reason_t;

//  Signs an HS256 token for uid in app, expiring at exp (seconds since the
//  epoch), with iat set to now.
//  @param secret  the app's secret (any non-empty string)
//  @param app     app name, a valid zim id ([A-Za-z0-9_.@-], 1..64)
//  @param uid     user id, a valid zim id
//  @return the token; NULL if secret is empty or app/uid are not valid ids.
//  Caller owns return value.
char *zim_token_sign (const char *secret, const char *app, const char *uid, uint64_t exp);
//  Signs claims (any JSON object) with HS256 and secret, for tests and
//  tools that need claims beyond sub/app/exp (a "rooms" claim). Caller owns
//  return value; NULL on failure.
char *zim_token_sign_json (const char *secret, const json_t *claims);

//  Verifies a token.
//  @param apps      the apps and their keys
//  @param token     the token bytes (need not be NUL-terminated)
//  @param len       its length (at most ZIM_TOKEN_MAX)
//  @param now_s     current time, seconds since the epoch
//  @param leeway_s  clock skew allowed on exp and nbf, seconds
//  @param app_out   receives the app name (ZIM_ID_MAX + 1 bytes), or NULL
//  @param uid_out   receives the user id (ZIM_ID_MAX + 1 bytes), or NULL
//  @param why       receives a static text on refusal (for the log), or NULL
//  @return ZIM_TOKEN_OK, or why it was refused. The outputs are written
//  only on success.
zim_token_reason_t zim_token_verify (const zim_apps_t *apps, const char *token, size_t len,
                                     uint64_t now_s, uint64_t leeway_s, char *app_out,
                                     char *uid_out, const char **why);

//  The wire error code of a refusal (ZIM_ERR_BAD_TOKEN, ...), 0 for OK.
int zim_token_code (zim_token_reason_t reason);
//  A short name of a reason ("expired", "bad_signature", ...).
const char *zim_token_reason_name (zim_token_reason_t reason);

//  Returns a fresh random secret: 32 random bytes as 64 hex digits.
//  Caller owns return value.
char *zim_token_secret_new (void);

//  Self test of this class.
void zim_token_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
