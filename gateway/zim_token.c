/*  zim_token.c: JWT signing and verification (see zim_token.h).

    libjwt picks the algorithm from the token's own header and verifies with
    whatever key it is given: handed an RSA public key's PEM and a token
    that says HS256, it would check an HMAC keyed with the PEM text (the
    classic algorithm confusion). So the header and the app are read here
    first, the algorithm is checked against what the app's keys allow, and
    libjwt only gets the one key that belongs to that algorithm.
*/
#include "gateway/zim_token.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <time.h>

//  The code and name of each reason, in zim_token_reason_t order.
static const struct {
    int code;
    const char *name;
} s_reasons[ZIM_TOKEN_REASONS] = {
    {0, "ok"},
    {ZIM_ERR_BAD_TOKEN, "malformed"},
    {ZIM_ERR_BAD_TOKEN, "unknown_app"},
    {ZIM_ERR_BAD_TOKEN, "bad_signature"},
    {ZIM_ERR_TOKEN_EXPIRED, "expired"},
    {ZIM_ERR_TOKEN_NOT_YET, "not_yet_valid"},
    {ZIM_ERR_TOKEN_CLAIMS, "bad_audience"},
    {ZIM_ERR_TOKEN_CLAIMS, "bad_issuer"},
    {ZIM_ERR_TOKEN_ALG, "alg_refused"},
};

int zim_token_code (zim_token_reason_t reason)
{
    return reason < ZIM_TOKEN_REASONS ? s_reasons[reason].code : ZIM_ERR_BAD_TOKEN;
}

const char *zim_token_reason_name (zim_token_reason_t reason)
{
    return reason < ZIM_TOKEN_REASONS ? s_reasons[reason].name : "?";
}

//  Value of one base64url character, or -1.
static int s_b64_val (char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

//  Strict base64url decode: alphabet only, no padding, no impossible
//  length, unused trailing bits zero (so each value has one spelling).
//  Returns the decoded length or -1; out holds size bytes.
static ssize_t s_b64url_decode (const char *in, size_t len, uint8_t *out, size_t size)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = s_b64_val (in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= size)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return -1;
    return (ssize_t)o;
}

//  Decodes one base64url part holding a JSON object. Caller owns return
//  value; NULL if it is not one.
static json_t *s_json_part (const char *part, size_t len)
{
    uint8_t text[ZIM_TOKEN_MAX];
    ssize_t n = s_b64url_decode (part, len, text, sizeof text);
    if (n <= 0)
        return NULL;
    //  Duplicate keys are refused: which one would count?
    json_t *json = json_loadb ((const char *)text, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (json && !json_is_object (json)) {
        json_decref (json);
        json = NULL;
    }
    return json;
}

//  A string claim that must be a valid id, or a zero view.
static zim_str_t s_id_claim (json_t *claims, const char *name)
{
    json_t *v = json_object_get (claims, name);
    zim_str_t s = {NULL, 0};
    if (json_is_string (v)) {
        s.ptr = json_string_value (v);
        s.len = json_string_length (v);
    }
    return zim_uid_valid (s) ? s : (zim_str_t){NULL, 0};
}

//  A NumericDate claim: 0 absent, 1 present (into *out), -1 not a number.
static int s_time_claim (json_t *claims, const char *name, double *out)
{
    json_t *v = json_object_get (claims, name);
    if (!v)
        return 0;
    if (!json_is_number (v))
        return -1;
    *out = json_number_value (v);
    return 1;
}

//  True if aud (a string or an array of strings) names audience.
static bool s_aud_names (json_t *aud, const char *audience)
{
    if (json_is_string (aud))
        return streq (json_string_value (aud), audience);
    size_t i;
    json_t *v;
    json_array_foreach (aud, i, v)
    {
        if (json_is_string (v) && streq (json_string_value (v), audience))
            return true;
    }
    return false;
}

//  Checks alg against what app's keys allow; sets the key libjwt must use.
static zim_token_reason_t s_key_for (const zim_app_t *app, const char *alg, jwt_alg_t *jalg,
                                     const unsigned char **key, int *key_len, const char **why)
{
    size_t pem_len = 0;
    const char *pem = zim_app_key_pem (app, &pem_len);
    if (streq (alg, "HS256") && zim_app_secret (app)) {
        *jalg = JWT_ALG_HS256;
        *key = (const unsigned char *)zim_app_secret (app);
        *key_len = (int)strlen (zim_app_secret (app));
        return ZIM_TOKEN_OK;
    }
    if ((streq (alg, "RS256") && zim_app_key_type (app) == ZIM_APP_KEY_RS256) ||
        (streq (alg, "ES256") && zim_app_key_type (app) == ZIM_APP_KEY_ES256)) {
        *jalg = streq (alg, "RS256") ? JWT_ALG_RS256 : JWT_ALG_ES256;
        *key = (const unsigned char *)pem;
        *key_len = (int)pem_len;
        return ZIM_TOKEN_OK;
    }
    *why = streq (alg, "HS256") ? "alg HS256 but the app has no secret"
           : streq (alg, "RS256") || streq (alg, "ES256")
               ? "alg needs a public key of that type, and the app has none"
               : "alg is none of HS256, RS256, ES256";
    return ZIM_TOKEN_ALG_REFUSED;
}

//  Checks the claims of a token whose signature is good.
static zim_token_reason_t s_claims (const zim_app_t *app, json_t *claims, uint64_t now_s,
                                    uint64_t leeway_s, const char **why)
{
    double exp = 0, nbf = 0, iat = 0;
    int has_exp = s_time_claim (claims, "exp", &exp);
    int has_nbf = s_time_claim (claims, "nbf", &nbf);
    if (!s_id_claim (claims, "sub").ptr) {
        *why = "sub is missing or not a valid user id";
        return ZIM_TOKEN_MALFORMED;
    }
    if (zim_str_eq (s_id_claim (claims, "sub"), ZIM_SYSTEM_UID)) {
        *why = "sub is the reserved system sender " ZIM_SYSTEM_UID;
        return ZIM_TOKEN_MALFORMED;
    }
    if (has_exp != 1 || has_nbf < 0 || s_time_claim (claims, "iat", &iat) < 0) {
        *why = "exp missing, or exp/nbf/iat not a number";
        return ZIM_TOKEN_MALFORMED;
    }
    double now = (double)now_s, leeway = (double)leeway_s;
    if (now >= exp + leeway) {
        *why = "expired (exp)";
        return ZIM_TOKEN_EXPIRED;
    }
    if (has_nbf && now + leeway < nbf) {
        *why = "not yet valid (nbf)";
        return ZIM_TOKEN_NOT_YET_VALID;
    }
    if (zim_app_audience (app) &&
        !s_aud_names (json_object_get (claims, "aud"), zim_app_audience (app))) {
        *why = "aud does not name the app's audience";
        return ZIM_TOKEN_BAD_AUDIENCE;
    }
    json_t *iss = json_object_get (claims, "iss");
    if (zim_app_issuer (app) &&
        (!json_is_string (iss) || !streq (json_string_value (iss), zim_app_issuer (app)))) {
        *why = "iss is not the app's issuer";
        return ZIM_TOKEN_BAD_ISSUER;
    }
    return ZIM_TOKEN_OK;
}

zim_token_reason_t zim_token_verify (const zim_apps_t *apps, const char *token, size_t len,
                                     uint64_t now_s, uint64_t leeway_s, char *app_out,
                                     char *uid_out, const char **why)
{
    const char *dummy;
    why = why ? why : &dummy;
    *why = "malformed: not three base64url parts of JSON objects";
    if (!token || len == 0 || len > ZIM_TOKEN_MAX || !apps)
        return ZIM_TOKEN_MALFORMED;
    //  Exactly three parts; the signature may be empty only to be refused
    //  as alg none below.
    const char *dot1 = memchr (token, '.', len);
    const char *dot2 = dot1 ? memchr (dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr (dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) || memchr (token, 0, len))
        return ZIM_TOKEN_MALFORMED;
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = len - (size_t)(dot2 + 1 - token);
    json_t *header = s_json_part (token, hlen);
    json_t *claims = header ? s_json_part (dot1 + 1, plen) : NULL;
    jwt_t *jwt = NULL;
    zim_token_reason_t rc = ZIM_TOKEN_MALFORMED;
    if (!claims)
        goto done;
    const char *alg = json_string_value (json_object_get (header, "alg"));
    if (!alg) {
        *why = "malformed: no alg in the header";
        goto done;
    }
    if (json_object_get (header, "crit")) {
        *why = "malformed: crit header extensions are not supported";
        goto done;
    }
    if (strcasecmp (alg, "none") == 0) {
        *why = "alg none";
        rc = ZIM_TOKEN_ALG_REFUSED;
        goto done;
    }
    zim_str_t app_name = s_id_claim (claims, "app");
    if (!app_name.ptr) {
        *why = "malformed: app is missing or not a valid id";
        goto done;
    }
    const zim_app_t *app = zim_apps_lookup (apps, app_name);
    if (!app) {
        *why = "unknown app";
        rc = ZIM_TOKEN_UNKNOWN_APP;
        goto done;
    }
    jwt_alg_t jalg;
    const unsigned char *key;
    int key_len;
    rc = s_key_for (app, alg, &jalg, &key, &key_len, why);
    if (rc)
        goto done;
    //  libjwt's base64 decoder is lenient (padding, stray bits): a second
    //  spelling of a good signature must not pass, so check it strictly.
    uint8_t sig[ZIM_TOKEN_MAX];
    if (slen == 0 || s_b64url_decode (dot2 + 1, slen, sig, sizeof sig) <= 0) {
        *why = "no signature, or not canonical base64url";
        rc = ZIM_TOKEN_BAD_SIGNATURE;
        goto done;
    }
    char text[ZIM_TOKEN_MAX + 1];
    memcpy (text, token, len);
    text[len] = 0;
    if (jwt_decode (&jwt, text, key, key_len) != 0 || jwt_get_alg (jwt) != jalg) {
        *why = "bad signature";
        rc = ZIM_TOKEN_BAD_SIGNATURE;
        goto done;
    }
    rc = s_claims (app, claims, now_s, leeway_s, why);
    if (rc == ZIM_TOKEN_OK) {
        *why = "ok";
        if (app_out)
            zim_str_copy (app_name, app_out, ZIM_ID_MAX + 1);
        if (uid_out)
            zim_str_copy (s_id_claim (claims, "sub"), uid_out, ZIM_ID_MAX + 1);
    }
done:
    jwt_free (jwt);
    json_decref (header);
    json_decref (claims);
    return rc;
}

//  Signs claims (a JSON object text) with alg and key through libjwt.
//  Caller owns return value; NULL on failure.
static char *s_sign_json (jwt_alg_t alg, const unsigned char *key, int key_len, const char *claims)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (jwt_new (&jwt) == 0 && jwt_add_grants_json (jwt, claims) == 0 &&
        jwt_set_alg (jwt, alg, key, key_len) == 0)
        token = jwt_encode_str (jwt);
    jwt_free (jwt);
    return token;
}

char *zim_token_sign (const char *secret, const char *app, const char *uid, uint64_t exp)
{
    if (!secret || !*secret || !app || !uid || !zim_uid_valid (zim_str (app)) ||
        !zim_uid_valid (zim_str (uid)))
        return NULL;
    json_t *claims = json_pack ("{s:s, s:s, s:I, s:I}", "sub", uid, "app", app, "exp",
                                (json_int_t)exp, "iat", (json_int_t)time (NULL));
    char *text = json_dumps (claims, JSON_COMPACT);
    json_decref (claims);
    char *token = text ? s_sign_json (JWT_ALG_HS256, (const unsigned char *)secret,
                                      (int)strlen (secret), text)
                       : NULL;
    free (text);
    return token;
}

char *zim_token_sign_json (const char *secret, const json_t *claims)
{
    if (!secret || !*secret || !json_is_object (claims))
        return NULL;
    char *text = json_dumps (claims, JSON_COMPACT);
    char *token = text ? s_sign_json (JWT_ALG_HS256, (const unsigned char *)secret,
                                      (int)strlen (secret), text)
                       : NULL;
    free (text);
    return token;
}

char *zim_token_secret_new (void)
{
    uint8_t bytes[32];
    if (RAND_bytes (bytes, sizeof bytes) != 1) {
        //  No entropy means no safe secret: refuse to run rather than guess.
        fprintf (stderr, "zim: RAND_bytes failed: cannot make a secret\n");
        abort ();
    }
    char *hex = zim_malloc (2 * sizeof bytes + 1);
    for (size_t i = 0; i < sizeof bytes; i++)
        snprintf (hex + 2 * i, 3, "%02x", bytes[i]);
    OPENSSL_cleanse (bytes, sizeof bytes);
    return hex;
}

//  -------------------------------------------------------------------------
//  Selftest

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

//  Writes the base64url (no padding) of data into out, which must hold
//  4 * ceil(len / 3) + 1 bytes.
static void s_b64url_encode (const uint8_t *data, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = s_b64[v >> 18];
        out[o++] = s_b64[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = s_b64[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = s_b64[v & 63];
    }
    out[o] = 0;
}

//  An HS256 token over raw header and claims texts, signed with secret
//  (the bytes libjwt would not produce: odd headers, bad JSON). Caller
//  owns return value.
static char *s_test_raw (const char *secret, const char *header, const char *claims)
{
    size_t hl = strlen (header), cl = strlen (claims);
    char *token = zim_malloc ((hl + cl) * 2 + 128);
    s_b64url_encode ((const uint8_t *)header, hl, token);
    size_t n = strlen (token);
    token[n++] = '.';
    s_b64url_encode ((const uint8_t *)claims, cl, token + n);
    n = strlen (token);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    assert (HMAC (EVP_sha256 (), secret, (int)strlen (secret), (const uint8_t *)token, n, mac,
                  &mac_len));
    token[n++] = '.';
    s_b64url_encode (mac, mac_len, token + n);
    return token;
}

//  Verifies a C-string token at now with no leeway.
static zim_token_reason_t s_verify (const zim_apps_t *apps, const char *token, uint64_t now,
                                    char *app, char *uid)
{
    return zim_token_verify (apps, token, token ? strlen (token) : 0, now, 0, app, uid, NULL);
}

//  Private key PEM of a fresh key of type, its public half written to
//  path. Caller owns return value.
static char *s_test_keypair (bool rsa, const char *path)
{
    EVP_PKEY *pkey = rsa ? EVP_RSA_gen (2048) : EVP_EC_gen ("P-256");
    assert (pkey);
    FILE *f = fopen (path, "w");
    assert (f && PEM_write_PUBKEY (f, pkey) == 1);
    fclose (f);
    BIO *bio = BIO_new (BIO_s_mem ());
    assert (PEM_write_bio_PrivateKey (bio, pkey, NULL, NULL, 0, NULL, NULL) == 1);
    char *data;
    long len = BIO_get_mem_data (bio, &data);
    char *pem = zim_malloc ((size_t)len + 1);
    memcpy (pem, data, (size_t)len);
    pem[len] = 0;
    BIO_free (bio);
    EVP_PKEY_free (pkey);
    return pem;
}

//  Signs claims with alg under a key given as text. Caller owns return value.
static char *s_test_sign (jwt_alg_t alg, const char *key, const char *claims)
{
    char *token = s_sign_json (alg, (const unsigned char *)key, (int)strlen (key), claims);
    assert (token);
    return token;
}

void zim_token_test (bool verbose)
{
    const char *secret = "s3cret-s3cret-s3cret";
    zim_apps_t *apps = zim_apps_new ();
    const char *why;
    assert (zim_apps_set_secret (apps, "demo", secret, &why) == 0);
    assert (zim_apps_set_secret (apps, "other", "another-secret-entirely", &why) == 0);
    uint64_t now = (uint64_t)time (NULL);
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1];

    //  Round trip.
    char *token = zim_token_sign (secret, "demo", "alice@x.y", now + 60);
    assert (token);
    if (verbose)
        printf ("\n    token: %s\n", token);
    assert (s_verify (apps, token, now, app, uid) == ZIM_TOKEN_OK);
    assert (streq (app, "demo") && streq (uid, "alice@x.y"));
    assert (s_verify (apps, token, now, NULL, NULL) == ZIM_TOKEN_OK);

    //  Expired (exp is exclusive), with a leeway, and only if genuine.
    assert (s_verify (apps, token, now + 60, app, uid) == ZIM_TOKEN_EXPIRED);
    assert (zim_token_verify (apps, token, strlen (token), now + 60, 5, app, uid, &why) ==
            ZIM_TOKEN_OK);
    assert (zim_token_verify (apps, token, strlen (token), now + 65, 5, app, uid, &why) ==
            ZIM_TOKEN_EXPIRED);
    char *forged_expired = zim_token_sign ("wrong", "demo", "alice", now - 10);
    assert (s_verify (apps, forged_expired, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
    free (forged_expired);

    //  Wrong secret; unknown app; another app's token under our secret.
    char *wrong = zim_token_sign ("not-the-secret", "demo", "alice", now + 60);
    assert (s_verify (apps, wrong, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
    free (wrong);
    char *unknown = zim_token_sign (secret, "nosuchapp", "alice", now + 60);
    assert (s_verify (apps, unknown, now, app, uid) == ZIM_TOKEN_UNKNOWN_APP);
    free (unknown);
    char *cross = zim_token_sign (secret, "other", "alice", now + 60);
    assert (s_verify (apps, cross, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
    free (cross);

    //  Tampering: another sub under the same signature, every character
    //  flipped, every truncation, padding, non-canonical bits, a 4th part.
    {
        char claims[256], forged[ZIM_TOKEN_MAX], enc[512];
        char *dot1 = strchr (token, '.'), *dot2 = strrchr (token, '.');
        snprintf (claims, sizeof claims,
                  "{\"sub\":\"mallory\",\"app\":\"demo\",\"exp\":%" PRIu64 "}", now + 60);
        s_b64url_encode ((const uint8_t *)claims, strlen (claims), enc);
        snprintf (forged, sizeof forged, "%.*s.%s%s", (int)(dot1 - token), token, enc, dot2);
        assert (s_verify (apps, forged, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
        size_t len = strlen (token);
        for (size_t i = 0; i < len; i++) {
            memcpy (forged, token, len + 1);
            forged[i] = forged[i] == 'A' ? 'B' : 'A';
            assert (zim_token_verify (apps, forged, len, now, 0, app, uid, NULL) != 0);
        }
        for (size_t cut = 0; cut < len; cut++)
            assert (zim_token_verify (apps, token, cut, now, 0, app, uid, NULL) != 0);
        snprintf (forged, sizeof forged, "%s=", token);
        assert (s_verify (apps, forged, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
        memcpy (forged, token, len + 1);
        forged[len - 1] = s_b64[s_b64_val (forged[len - 1]) ^ 1];
        assert (s_verify (apps, forged, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
        snprintf (forged, sizeof forged, "%s.AAAA", token);
        assert (s_verify (apps, forged, now, app, uid) == ZIM_TOKEN_MALFORMED);
    }

    //  Every ordinary claim type a backend may add is accepted: arrays,
    //  nested objects, non-ASCII strings, floats, booleans, null, many.
    char claims[2048];
    int n = snprintf (claims, sizeof claims,
                      "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":%" PRIu64 ".5,\"iat\":%" PRIu64
                      ".25,\"nbf\":%" PRIu64 ",\"roles\":[\"admin\",1,{\"x\":[]}],"
                      "\"profile\":{\"name\":\"Zo\\u00eb \\u6f22\\u5b57\",\"age\":7.5},"
                      "\"verified\":true,\"banned\":false,\"nick\":null,\"jti\":\"j-1\"",
                      now + 60, now, now - 1);
    for (int i = 0; i < 40; i++)
        n += snprintf (claims + n, sizeof claims - (size_t)n, ",\"c%d\":%d", i, i);
    snprintf (claims + n, sizeof claims - (size_t)n, "}");
    char *t = s_test_sign (JWT_ALG_HS256, secret, claims);
    assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_OK && streq (uid, "alice"));
    free (t);

    //  nbf in the future: not yet valid, unless within the leeway.
    snprintf (claims, sizeof claims,
              "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":%" PRIu64 ",\"nbf\":%" PRIu64 "}",
              now + 600, now + 30);
    t = s_test_sign (JWT_ALG_HS256, secret, claims);
    assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_NOT_YET_VALID);
    assert (zim_token_verify (apps, t, strlen (t), now, 30, app, uid, NULL) == ZIM_TOKEN_OK);
    free (t);

    //  alg none (signed or not), other algs, broken headers.
    snprintf (claims, sizeof claims, "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":%" PRIu64 "}",
              now + 60);
    const struct {
        const char *header;
        zim_token_reason_t reason;
    } headers[] = {{"{\"alg\":\"none\",\"typ\":\"JWT\"}", ZIM_TOKEN_ALG_REFUSED},
                   {"{\"alg\":\"NONE\"}", ZIM_TOKEN_ALG_REFUSED},
                   {"{\"alg\":\"HS512\"}", ZIM_TOKEN_ALG_REFUSED},
                   {"{\"alg\":\"hs256\"}", ZIM_TOKEN_ALG_REFUSED},
                   {"{\"alg\":\"RS256\"}", ZIM_TOKEN_ALG_REFUSED},
                   {"{\"typ\":\"JWT\"}", ZIM_TOKEN_MALFORMED},
                   {"{\"alg\":\"HS256\",\"alg\":\"HS256\"}", ZIM_TOKEN_MALFORMED},
                   {"{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", ZIM_TOKEN_MALFORMED},
                   {"{\"alg\":256}", ZIM_TOKEN_MALFORMED},
                   {"[]", ZIM_TOKEN_MALFORMED}};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        t = s_test_raw (secret, headers[i].header, claims);
        assert (s_verify (apps, t, now, app, uid) == headers[i].reason);
        *(strrchr (t, '.') + 1) = 0; //  the unsigned form "header.claims."
        assert (s_verify (apps, t, now, app, uid) == headers[i].reason);
        free (t);
    }
    //  A good header with whitespace and a kid verifies; unsigned it does not.
    t = s_test_raw (secret, " { \"alg\" : \"HS256\" , \"kid\":\"k1\" } ", claims);
    assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_OK && streq (uid, "alice"));
    *(strrchr (t, '.') + 1) = 0;
    assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
    free (t);

    //  Bad claims: missing, wrong types, invalid ids, bad JSON.
    const char *bad_claims[] = {
        "{\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"alice\",\"exp\":9999999999}",
        "{\"sub\":\"alice\",\"app\":\"demo\"}",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":\"9999999999\"}",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":9999999999,\"nbf\":true}",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":9999999999,\"iat\":\"now\"}",
        "{\"sub\":7,\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"al ice\",\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"\",\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"al\\u0000ce\",\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":9999999999}x",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":9999999999,}",
        "{\"sub\":\"alice\",\"sub\":\"bob\",\"app\":\"demo\",\"exp\":9999999999}",
        "{\"sub\":\"alice\",\"app\":\"demo\",\"exp\":9999999999",
        "",
        "null",
        "[1]",
    };
    for (size_t i = 0; i < sizeof bad_claims / sizeof bad_claims[0]; i++) {
        t = s_test_raw (secret, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", bad_claims[i]);
        assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_MALFORMED);
        free (t);
    }

    //  aud and iss, when the app names them.
    assert (zim_apps_set_audience (apps, "other", "chat", &why) == 0);
    assert (zim_apps_set_issuer (apps, "other", "auth", &why) == 0);
    const struct {
        const char *extra;
        zim_token_reason_t reason;
    } auds[] = {{",\"aud\":\"chat\",\"iss\":\"auth\"", ZIM_TOKEN_OK},
                {",\"aud\":[\"web\",\"chat\"],\"iss\":\"auth\"", ZIM_TOKEN_OK},
                {",\"aud\":\"web\",\"iss\":\"auth\"", ZIM_TOKEN_BAD_AUDIENCE},
                {",\"aud\":[\"web\"],\"iss\":\"auth\"", ZIM_TOKEN_BAD_AUDIENCE},
                {",\"iss\":\"auth\"", ZIM_TOKEN_BAD_AUDIENCE},
                {",\"aud\":\"chat\",\"iss\":\"evil\"", ZIM_TOKEN_BAD_ISSUER},
                {",\"aud\":\"chat\"", ZIM_TOKEN_BAD_ISSUER},
                {",\"aud\":\"chat\",\"iss\":[\"auth\"]", ZIM_TOKEN_BAD_ISSUER}};
    for (size_t i = 0; i < sizeof auds / sizeof auds[0]; i++) {
        snprintf (claims, sizeof claims,
                  "{\"sub\":\"bob\",\"app\":\"other\",\"exp\":%" PRIu64 "%s}", now + 60,
                  auds[i].extra);
        t = s_test_sign (JWT_ALG_HS256, "another-secret-entirely", claims);
        assert (s_verify (apps, t, now, app, uid) == auds[i].reason);
        free (t);
    }

    //  RS256 and ES256 with a public key per app.
    char dir[] = "/tmp/zim-token-test.XXXXXX";
    assert (mkdtemp (dir));
    char rsa_pub[64], ec_pub[64], rsa2_pub[64];
    snprintf (rsa_pub, sizeof rsa_pub, "%s/rsa.pub", dir);
    snprintf (ec_pub, sizeof ec_pub, "%s/ec.pub", dir);
    snprintf (rsa2_pub, sizeof rsa2_pub, "%s/rsa2.pub", dir);
    char *rsa_key = s_test_keypair (true, rsa_pub);
    char *ec_key = s_test_keypair (false, ec_pub);
    char *rsa2_key = s_test_keypair (true, rsa2_pub);
    assert (zim_apps_set_public_key (apps, "rs", rsa_pub, &why) == 0);
    assert (zim_apps_set_public_key (apps, "es", ec_pub, &why) == 0);
    //  "both" has a secret and an RSA key: HS256 and RS256.
    assert (zim_apps_set_public_key (apps, "both", rsa_pub, &why) == 0);
    assert (zim_apps_set_secret (apps, "both", "both-secret-both-secret", &why) == 0);
    const char *names[] = {"rs", "es", "both"};
    for (size_t i = 0; i < 3; i++) {
        const char *name = names[i];
        bool ec = streq (name, "es");
        snprintf (claims, sizeof claims,
                  "{\"sub\":\"carol\",\"app\":\"%s\",\"exp\":%" PRIu64 ",\"x\":[1.5,true]}", name,
                  now + 60);
        t = s_test_sign (ec ? JWT_ALG_ES256 : JWT_ALG_RS256, ec ? ec_key : rsa_key, claims);
        assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_OK);
        assert (streq (app, name) && streq (uid, "carol"));
        free (t);
        //  Signed by another key of the right type: bad signature.
        if (!ec) {
            t = s_test_sign (JWT_ALG_RS256, rsa2_key, claims);
            assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_BAD_SIGNATURE);
            free (t);
        }
        //  The other public-key alg: refused.
        t = s_test_sign (ec ? JWT_ALG_RS256 : JWT_ALG_ES256, ec ? rsa_key : ec_key, claims);
        assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_ALG_REFUSED);
        free (t);
        //  Confusion: HS256 keyed with the public key's PEM text.
        size_t pem_len;
        const char *pem = zim_app_key_pem (zim_apps_lookup (apps, zim_str (name)), &pem_len);
        t = s_test_sign (JWT_ALG_HS256, pem, claims);
        assert (s_verify (apps, t, now, app, uid) ==
                (streq (name, "both") ? ZIM_TOKEN_BAD_SIGNATURE : ZIM_TOKEN_ALG_REFUSED));
        free (t);
        //  Expired, genuinely signed.
        snprintf (claims, sizeof claims, "{\"sub\":\"carol\",\"app\":\"%s\",\"exp\":%" PRIu64 "}",
                  name, now - 1);
        t = s_test_sign (ec ? JWT_ALG_ES256 : JWT_ALG_RS256, ec ? ec_key : rsa_key, claims);
        assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_EXPIRED);
        free (t);
    }
    //  HS256 for "both" with its secret still works.
    t = zim_token_sign ("both-secret-both-secret", "both", "dan", now + 60);
    assert (s_verify (apps, t, now, app, uid) == ZIM_TOKEN_OK);
    free (t);
    unlink (rsa_pub);
    unlink (ec_pub);
    unlink (rsa2_pub);
    rmdir (dir);
    free (rsa_key);
    free (ec_key);
    free (rsa2_key);

    //  Garbage, empty, huge.
    const char *garbage[] = {"",
                             ".",
                             "..",
                             "...",
                             "a.b.c",
                             "garbage",
                             "\xff\xfe.\x01.\x02",
                             "eyJhbGciOiJIUzI1NiJ9..",
                             "====.====.===="};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        assert (s_verify (apps, garbage[i], now, app, uid) == ZIM_TOKEN_MALFORMED);
    assert (zim_token_verify (apps, NULL, 0, now, 0, app, uid, NULL) == ZIM_TOKEN_MALFORMED);
    size_t huge_len = 1 << 20;
    char *huge = zim_malloc (huge_len + 1);
    memset (huge, 'A', huge_len);
    huge[huge_len] = 0;
    memcpy (huge, token, strlen (token));
    assert (s_verify (apps, huge, now, app, uid) == ZIM_TOKEN_MALFORMED);
    free (huge);

    //  Codes and names.
    assert (zim_token_code (ZIM_TOKEN_OK) == 0);
    assert (zim_token_code (ZIM_TOKEN_BAD_SIGNATURE) == ZIM_ERR_BAD_TOKEN);
    assert (zim_token_code (ZIM_TOKEN_EXPIRED) == ZIM_ERR_TOKEN_EXPIRED);
    assert (zim_token_code (ZIM_TOKEN_NOT_YET_VALID) == ZIM_ERR_TOKEN_NOT_YET);
    assert (zim_token_code (ZIM_TOKEN_BAD_ISSUER) == ZIM_ERR_TOKEN_CLAIMS);
    assert (zim_token_code (ZIM_TOKEN_ALG_REFUSED) == ZIM_ERR_TOKEN_ALG);
    assert (streq (zim_token_reason_name (ZIM_TOKEN_NOT_YET_VALID), "not_yet_valid"));

    //  Signing refuses what it could not verify.
    assert (zim_token_sign ("", "demo", "alice", now) == NULL);
    assert (zim_token_sign ("k", "de mo", "alice", now) == NULL);
    assert (zim_token_sign ("k", "demo", "\"alice\"", now) == NULL);

    //  Secrets: 64 hex digits, different every time.
    char *s1 = zim_token_secret_new (), *s2 = zim_token_secret_new ();
    assert (strlen (s1) == 64 && strspn (s1, "0123456789abcdef") == 64);
    assert (!streq (s1, s2));
    free (s1);
    free (s2);

    free (token);
    zim_apps_destroy (&apps);
}
