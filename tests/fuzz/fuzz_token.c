/*  fuzz_token.c: the whole token verifier (zim_token_verify), as the
    gateway runs it on a client's auth, against two apps: "demo" with an
    HS256 secret, an ES256 public key, an audience and an issuer; "rsa"
    with an HS256 secret and an RS256 public key. The first byte picks how
    the rest is used:
        0  the token itself, as a client sends it
        1  header JSON, a 0 byte, claims JSON: signed here with the app's
           HS256 secret, so the claims checks behind the signature are
           reached; verified only if alg is HS256
        2  the same, signed ES256 with the test private key below;
           verified only if alg is ES256
        3  the same, HMAC-SHA256 keyed with the RSA public key's PEM text
           (algorithm confusion): never verified
    Every accepted token names a valid app and user, is not expired, and
    was signed with what its alg says. The keys are test keys made for
    this harness; nothing else uses them.
*/
#include "gateway/zim_apps.h"
#include "gateway/zim_token.h"
#include "msg/zim_id.h"
#include "msg/zim_util.h"
#include "tests/fuzz/zim_fuzz.h"

#include <assert.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  "now" for every run (2023-11-14): the seeds' exp lie after it.
#define S_NOW 1700000000
#define S_LEEWAY 30
#define S_SECRET_DEMO "fuzz-demo-secret-fuzz-demo-secret"
#define S_SECRET_RSA "fuzz-rsa-secret-fuzz-rsa-secret"

static const char s_ec_private[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHSGjtXpd54hHcBit\n"
    "J/AWz9wh3QKtcAkL0Z4+xQ26aXShRANCAAT5PUPMG33MJ+a1vczSQtxMh8ckl4Pr\n"
    "scVtBIwc0hpiGZzP3NJ9GlOdJ9HjLmCGkyQKSztW9VpJP9j37vyTKkjU\n"
    "-----END PRIVATE KEY-----\n";
static const char s_ec_public[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE+T1DzBt9zCfmtb3M0kLcTIfHJJeD\n"
    "67HFbQSMHNIaYhmcz9zSfRpTnSfR4y5ghpMkCks7VvVaST/Y9+78kypI1A==\n"
    "-----END PUBLIC KEY-----\n";
static const char s_rsa_public[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwpnw8DfF4zAUHjfPrjF4\n"
    "lgergr2xh8Tsvn2QGwJdWuok6so3+OvHkc3wQFPGdBT+wAavOd7D7BYn8QjvO8Et\n"
    "zMfoAlPnxFVwUGgs4/oTzdcwXusmoHGPfACSNimY6yP7hGIzdyKJdUCapRbJI+vl\n"
    "N30fwA3OlaSQBA19zUPVtMORfDvNJkDxHVgVSB4KTRiMFUze8xCBVvU1Cb1HmEoq\n"
    "gSgIUY5HDEqW6bDXv06UOY3CXappv/eQKS6GLodzPz7uUOEzk9yZ1NumW1aFtAfv\n"
    "MhUkHJEg9iFKyIEXu0mJoCze8AYJAkpja1ABnJfPSHQuEZ4bF1gFPJ1PxMQNXrwT\n"
    "WQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static zim_apps_t *s_apps;

//  True if a (NULL: no) is b.
static bool s_eq (const char *a, const char *b)
{
    return a && strcmp (a, b) == 0;
}
static EVP_PKEY *s_ec_key;

//  Writes a PEM to a temporary file and gives it to app as its key.
static void s_set_key (const char *app, const char *pem)
{
    char path[] = "/tmp/zim-fuzz-token-XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    assert (write (fd, pem, strlen (pem)) == (ssize_t)strlen (pem));
    close (fd);
    const char *why;
    assert (zim_apps_set_public_key (s_apps, app, path, &why) == 0);
    unlink (path);
}

static void s_setup (void)
{
    const char *why;
    s_apps = zim_apps_new ();
    assert (zim_apps_set_secret (s_apps, "demo", S_SECRET_DEMO, &why) == 0);
    s_set_key ("demo", s_ec_public);
    assert (zim_apps_set_audience (s_apps, "demo", "zim", &why) == 0);
    assert (zim_apps_set_issuer (s_apps, "demo", "backend", &why) == 0);
    assert (zim_apps_set_secret (s_apps, "rsa", S_SECRET_RSA, &why) == 0);
    s_set_key ("rsa", s_rsa_public);
    BIO *bio = BIO_new_mem_buf (s_ec_private, -1);
    s_ec_key = PEM_read_bio_PrivateKey (bio, NULL, NULL, NULL);
    BIO_free (bio);
    assert (s_ec_key);
}

static size_t s_b64url (const uint8_t *data, size_t len, char *out)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | data[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64[(acc >> bits) & 63];
        }
    }
    if (bits)
        out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = 0;
    return o;
}

//  The signature of input[0..len) for mode (1..3) into sig; its length.
static size_t s_sign (int mode, const char *input, size_t len, uint8_t *sig)
{
    unsigned int n = 0;
    if (mode == 1 || mode == 3) {
        const char *key = mode == 1 ? S_SECRET_DEMO : s_rsa_public;
        assert (HMAC (EVP_sha256 (), key, (int)strlen (key), (const uint8_t *)input, len, sig,
                      &n));
        return n;
    }
    //  ES256: ECDSA over SHA-256, r and s as 32 bytes each (not DER).
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    uint8_t der[128];
    size_t der_len = sizeof der;
    assert (EVP_DigestSignInit (ctx, NULL, EVP_sha256 (), NULL, s_ec_key) == 1);
    assert (EVP_DigestSign (ctx, der, &der_len, (const uint8_t *)input, len) == 1);
    EVP_MD_CTX_free (ctx);
    const uint8_t *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG (NULL, &p, (long)der_len);
    assert (es);
    assert (BN_bn2binpad (ECDSA_SIG_get0_r (es), sig, 32) == 32);
    assert (BN_bn2binpad (ECDSA_SIG_get0_s (es), sig + 32, 32) == 32);
    ECDSA_SIG_free (es);
    return 64;
}

//  The alg of a header JSON text, if it has a string one; else "".
static void s_alg (const uint8_t *header, size_t len, char *alg, size_t size)
{
    *alg = 0;
    json_t *h = json_loadb ((const char *)header, len, JSON_REJECT_DUPLICATES, NULL);
    const char *a = json_string_value (json_object_get (h, "alg"));
    if (a)
        snprintf (alg, size, "%s", a);
    json_decref (h);
}

ZIM_FUZZ_TARGET (token)
{
    if (!s_apps)
        s_setup ();
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    data++, size--;
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1], alg[32] = "";
    zim_token_reason_t rc;
    if (mode == 0)
        rc = zim_token_verify (s_apps, (const char *)data, size, S_NOW, S_LEEWAY, app, uid, NULL);
    else {
        const uint8_t *zero = memchr (data, 0, size);
        if (!zero || size > ZIM_TOKEN_MAX)
            return 0;
        size_t hlen = (size_t)(zero - data), clen = size - hlen - 1;
        s_alg (data, hlen, alg, sizeof alg);
        //  base64url of header and claims, a dot between, then the
        //  signature's.
        char *token = malloc (2 * size + 200);
        assert (token);
        size_t len = s_b64url (data, hlen, token);
        token[len++] = '.';
        len += s_b64url (zero + 1, clen, token + len);
        uint8_t sig[64];
        size_t slen = s_sign (mode, token, len, sig);
        token[len++] = '.';
        len += s_b64url (sig, slen, token + len);
        const char *why = NULL;
        rc = zim_token_verify (s_apps, token, len, S_NOW, S_LEEWAY, app, uid, &why);
        assert (why && *why);
        free (token);
        if (rc == ZIM_TOKEN_OK) {
            assert ((mode == 1 && s_eq (alg, "HS256")) || (mode == 2 && s_eq (alg, "ES256")));
            //  Its claims are what was checked: exp and nbf around now,
            //  the app's audience and issuer.
            json_t *claims = json_loadb ((const char *)zero + 1, clen, 0, NULL);
            assert (json_is_object (claims));
            double exp = json_number_value (json_object_get (claims, "exp"));
            assert (json_is_number (json_object_get (claims, "exp")) && exp + S_LEEWAY > S_NOW);
            json_t *nbf = json_object_get (claims, "nbf");
            assert (!nbf || json_number_value (nbf) <= S_NOW + S_LEEWAY);
            assert (s_eq (json_string_value (json_object_get (claims, "sub")), uid));
            if (s_eq (app, "demo"))
                assert (s_eq (json_string_value (json_object_get (claims, "iss")), "backend"));
            json_decref (claims);
        }
    }
    assert (rc < ZIM_TOKEN_REASONS);
    assert (zim_token_code (rc) == 0 || zim_token_code (rc) >= 4000);
    if (rc == ZIM_TOKEN_OK) {
        assert (s_eq (app, "demo") || s_eq (app, "rsa"));
        assert (zim_uid_valid (zim_str (uid)));
    }
    return 0;
}
