/*  zim_apps.c: apps and their token keys (see zim_apps.h). A public key is
    read and checked once, when it is set: a gateway that cannot use it says
    so at start, not at the first token.
*/
#include "gateway/zim_apps.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest PEM file read (a 4096-bit RSA public key is about 800 bytes).
#define S_PEM_MAX 16384

struct _zim_app_t {
    char *name;        //  the app's name, a valid id
    char *secret;      //  HS256 secret, or NULL
    char *key_pem;     //  public key, PEM text, or NULL
    size_t key_len;    //  its length
    zim_app_key_t key; //  what the key allows
    char *audience;    //  tokens must name it in aud, or NULL
    char *issuer;      //  tokens must name it in iss, or NULL
};

struct _zim_apps_t {
    zhashx_t *apps; //  name -> zim_app_t
};

static void s_app_destroy (void **item)
{
    zim_app_t *app = (zim_app_t *)*item;
    if (!app)
        return;
    free (app->name);
    if (app->secret)
        OPENSSL_cleanse (app->secret, strlen (app->secret));
    free (app->secret);
    free (app->key_pem);
    free (app->audience);
    free (app->issuer);
    free (app);
    *item = NULL;
}

zim_apps_t *zim_apps_new (void)
{
    zim_apps_t *self = (zim_apps_t *)zim_calloc (1, sizeof *self);
    self->apps = zhashx_new ();
    zhashx_set_destructor (self->apps, s_app_destroy);
    return self;
}

void zim_apps_destroy (zim_apps_t **self_p)
{
    zim_apps_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->apps);
    free (self);
    *self_p = NULL;
}

//  The app called name, made if new. Call it once the value is known to be
//  good, so that a refused setting leaves no empty app behind.
static zim_app_t *s_app (zim_apps_t *self, const char *name)
{
    zim_app_t *app = (zim_app_t *)zhashx_lookup (self->apps, name);
    if (!app) {
        app = (zim_app_t *)zim_calloc (1, sizeof *app);
        app->name = zim_strdup (name);
        zhashx_insert (self->apps, name, app);
    }
    return app;
}

//  Checks the app name and a non-empty value; returns 0 or -1 with *why.
static int s_check (const char *name, const char *value, const char **why)
{
    if (!name || !zim_uid_valid (zim_str (name))) {
        *why = "app name must be 1..64 of A-Z a-z 0-9 _ . @ -";
        return -1;
    }
    if (!value || !*value) {
        *why = "needs a non-empty value";
        return -1;
    }
    return 0;
}

//  Replaces *field by a copy of value.
static void s_set_text (char **field, const char *value)
{
    free (*field);
    *field = zim_strdup (value);
}

int zim_apps_set_secret (zim_apps_t *self, const char *app, const char *secret, const char **why)
{
    if (s_check (app, secret, why))
        return -1;
    zim_app_t *a = s_app (self, app);
    if (a->secret)
        OPENSSL_cleanse (a->secret, strlen (a->secret));
    s_set_text (&a->secret, secret);
    return 0;
}

int zim_apps_set_audience (zim_apps_t *self, const char *app, const char *audience,
                           const char **why)
{
    if (s_check (app, audience, why))
        return -1;
    s_set_text (&s_app (self, app)->audience, audience);
    return 0;
}

int zim_apps_set_issuer (zim_apps_t *self, const char *app, const char *issuer, const char **why)
{
    if (s_check (app, issuer, why))
        return -1;
    s_set_text (&s_app (self, app)->issuer, issuer);
    return 0;
}

//  What a PEM public key allows; ZIM_APP_KEY_NONE (with *why) if nothing.
static zim_app_key_t s_key_type (const char *pem, size_t len, const char **why)
{
    BIO *bio = BIO_new_mem_buf (pem, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL) : NULL;
    BIO_free (bio);
    zim_app_key_t type = ZIM_APP_KEY_NONE;
    if (!pkey)
        *why = "not a PEM public key (BEGIN PUBLIC KEY)";
    else if (EVP_PKEY_base_id (pkey) == EVP_PKEY_RSA) {
        if (EVP_PKEY_bits (pkey) >= 2048)
            type = ZIM_APP_KEY_RS256;
        else
            *why = "RSA key shorter than 2048 bits";
    } else if (EVP_PKEY_base_id (pkey) == EVP_PKEY_EC) {
        char group[64] = "";
        size_t glen = 0;
        if (EVP_PKEY_get_group_name (pkey, group, sizeof group, &glen) == 1 &&
            (streq (group, "prime256v1") || streq (group, "P-256")))
            type = ZIM_APP_KEY_ES256;
        else
            *why = "EC key not on P-256 (only ES256 is supported)";
    } else
        *why = "neither an RSA nor an EC key";
    EVP_PKEY_free (pkey);
    return type;
}

int zim_apps_set_public_key (zim_apps_t *self, const char *app, const char *path, const char **why)
{
    if (s_check (app, path, why))
        return -1;
    FILE *file = fopen (path, "rb");
    if (!file) {
        *why = "cannot open the key file";
        return -1;
    }
    char *pem = (char *)zim_malloc (S_PEM_MAX + 1);
    size_t len = fread (pem, 1, S_PEM_MAX + 1, file);
    fclose (file);
    zim_app_key_t type = ZIM_APP_KEY_NONE;
    if (len == 0 || len > S_PEM_MAX)
        *why = "key file empty or over 16 KiB";
    else
        type = s_key_type (pem, len, why);
    if (type == ZIM_APP_KEY_NONE) {
        free (pem);
        return -1;
    }
    pem[len] = 0;
    zim_app_t *a = s_app (self, app);
    free (a->key_pem);
    a->key_pem = pem;
    a->key_len = len;
    a->key = type;
    return 0;
}

const zim_app_t *zim_apps_lookup (const zim_apps_t *self, zim_str_t name)
{
    char key[ZIM_ID_MAX + 1];
    if (!zim_uid_valid (name))
        return NULL;
    zim_str_copy (name, key, sizeof key);
    return (const zim_app_t *)zhashx_lookup (self->apps, key);
}

size_t zim_apps_size (const zim_apps_t *self)
{
    return zhashx_size (self->apps);
}

const char *zim_app_name (const zim_app_t *app)
{
    return app->name;
}

const char *zim_app_secret (const zim_app_t *app)
{
    return app->secret;
}

const char *zim_app_key_pem (const zim_app_t *app, size_t *len)
{
    if (len)
        *len = app->key_len;
    return app->key_pem;
}

zim_app_key_t zim_app_key_type (const zim_app_t *app)
{
    return app->key;
}

const char *zim_app_audience (const zim_app_t *app)
{
    return app->audience;
}

const char *zim_app_issuer (const zim_app_t *app)
{
    return app->issuer;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Writes text to path.
static void s_test_write (const char *path, const char *text)
{
    FILE *f = fopen (path, "w");
    assert (f);
    fputs (text, f);
    fclose (f);
}

//  Writes the public half of a fresh key (EVP_RSA_gen / EVP_EC_gen) to path.
static void s_test_key_file (EVP_PKEY *pkey, const char *path)
{
    FILE *f = fopen (path, "w");
    assert (f && PEM_write_PUBKEY (f, pkey) == 1);
    fclose (f);
}

void zim_apps_test (bool verbose)
{
    zim_apps_t *apps = zim_apps_new ();
    const char *why = NULL;
    assert (zim_apps_set_secret (apps, "demo", "s3cret-s3cret-s3cret", &why) == 0);
    assert (zim_apps_set_secret (apps, "de mo", "x", &why) == -1 && why);
    assert (zim_apps_set_secret (apps, "demo", "", &why) == -1);
    assert (zim_apps_set_audience (apps, "demo", "chat.example", &why) == 0);
    assert (zim_apps_set_issuer (apps, "demo", "https://auth.example", &why) == 0);
    assert (zim_apps_size (apps) == 1);
    const zim_app_t *app = zim_apps_lookup (apps, zim_str ("demo"));
    assert (app && streq (zim_app_name (app), "demo"));
    assert (streq (zim_app_secret (app), "s3cret-s3cret-s3cret"));
    assert (streq (zim_app_audience (app), "chat.example"));
    assert (streq (zim_app_issuer (app), "https://auth.example"));
    assert (zim_app_key_type (app) == ZIM_APP_KEY_NONE && !zim_app_key_pem (app, NULL));
    assert (!zim_apps_lookup (apps, zim_str ("other")));
    assert (!zim_apps_lookup (apps, zim_str ("")));

    //  Keys: RSA 2048 allows RS256, P-256 ES256; the rest is refused.
    char dir[] = "/tmp/zim-apps-test.XXXXXX";
    assert (mkdtemp (dir));
    char rsa[64], ec[64], small[64], p384[64], junk[64], priv[64];
    snprintf (rsa, sizeof rsa, "%s/rsa.pub", dir);
    snprintf (ec, sizeof ec, "%s/ec.pub", dir);
    snprintf (small, sizeof small, "%s/small.pub", dir);
    snprintf (p384, sizeof p384, "%s/p384.pub", dir);
    snprintf (junk, sizeof junk, "%s/junk.pub", dir);
    snprintf (priv, sizeof priv, "%s/ec.key", dir);
    EVP_PKEY *k = EVP_RSA_gen (2048);
    s_test_key_file (k, rsa);
    EVP_PKEY_free (k);
    k = EVP_EC_gen ("P-256");
    s_test_key_file (k, ec);
    FILE *f = fopen (priv, "w");
    assert (f && PEM_write_PrivateKey (f, k, NULL, NULL, 0, NULL, NULL) == 1);
    fclose (f);
    EVP_PKEY_free (k);
    k = EVP_RSA_gen (1024);
    s_test_key_file (k, small);
    EVP_PKEY_free (k);
    k = EVP_EC_gen ("P-384");
    s_test_key_file (k, p384);
    EVP_PKEY_free (k);
    s_test_write (junk,
                  "-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n");

    assert (zim_apps_set_public_key (apps, "rs", rsa, &why) == 0);
    assert (zim_apps_set_public_key (apps, "es", ec, &why) == 0);
    assert (zim_app_key_type (zim_apps_lookup (apps, zim_str ("rs"))) == ZIM_APP_KEY_RS256);
    assert (zim_app_key_type (zim_apps_lookup (apps, zim_str ("es"))) == ZIM_APP_KEY_ES256);
    size_t len = 0;
    assert (strstr (zim_app_key_pem (zim_apps_lookup (apps, zim_str ("es")), &len),
                    "BEGIN PUBLIC KEY") &&
            len > 0);
    const char *refused[] = {small, p384, junk, priv, "/nonexistent/key.pem", ""};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        why = NULL;
        assert (zim_apps_set_public_key (apps, "bad", refused[i], &why) == -1 && why);
        if (verbose)
            zsys_info ("apps: key %s refused: %s", refused[i], why);
    }
    assert (!zim_apps_lookup (apps, zim_str ("bad"))); //  refused: no empty app left
    //  A refused key leaves the one before in place.
    assert (zim_apps_set_public_key (apps, "es", small, &why) == -1);
    assert (zim_app_key_type (zim_apps_lookup (apps, zim_str ("es"))) == ZIM_APP_KEY_ES256);
    const char *files[] = {rsa, ec, small, p384, junk, priv};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        unlink (files[i]);
    rmdir (dir);
    zim_apps_destroy (&apps);
    zim_apps_destroy (&apps); //  idempotent
}
