/*  zim_token.h: client tokens. A token is a JWT signed with HMAC-SHA256
    (HS256) under the app's secret, with the claims sub (user id), app,
    exp (expiry, seconds since the epoch) and iat (issued at). The gateway
    verifies them; the admin endpoint and app backends sign them.

    Verification is strict and bounded: base64url without padding and with
    canonical trailing bits, a small flat JSON object per part (string and
    non-negative integer values only, no escapes, no duplicate keys), alg
    exactly "HS256" (so "none" is refused), the signature compared in
    constant time, and sub and app checked as zim user ids.
*/
#ifndef ZIM_TOKEN_H_INCLUDED
#define ZIM_TOKEN_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

//  Longest token accepted, in bytes. Real tokens are about 200 bytes.
#define ZIM_TOKEN_MAX 1024

//  Signs a token for uid in app, expiring at exp (seconds since the epoch),
//  with iat set to now.
//  @param secret  the app's secret (any non-empty string)
//  @param app     app name, a valid zim id ([A-Za-z0-9_.@-], 1..64)
//  @param uid     user id, a valid zim id
//  @return the token; NULL if secret is empty or app/uid are not valid ids.
//  Caller owns return value.
char *zim_token_sign (const char *secret, const char *app, const char *uid, uint64_t exp);

//  Verifies a token.
//  @param token    the token bytes (need not be NUL-terminated)
//  @param len      its length
//  @param secrets  app name -> secret (NUL-terminated string)
//  @param now_s    current time, seconds since the epoch
//  @param app_out  receives the app name (ZIM_ID_MAX + 1 bytes), or NULL
//  @param uid_out  receives the user id (ZIM_ID_MAX + 1 bytes), or NULL
//  @return 0 if valid; ZIM_ERR_BAD_TOKEN (malformed, bad base64url or JSON,
//  unknown app, alg not HS256, bad signature, invalid sub or app);
//  ZIM_ERR_TOKEN_EXPIRED (valid signature but exp <= now_s). The outputs
//  are written only on success.
int zim_token_verify (const char *token, size_t len, zhash_t *secrets, uint64_t now_s,
                      char *app_out, char *uid_out);

//  Returns a fresh random secret: 32 random bytes as 64 hex digits.
//  Caller owns return value.
char *zim_token_secret_new (void);

void zim_token_test (bool verbose);

#ifdef __cplusplus
}
#endif
#endif
