/*  zim_datadir.c: data directory and secrets (zim_datadir.h).
 */
#include "tools/zim_datadir.h"
#include "gateway/zim_token.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

struct _zim_datadir_t {
    char *path;         //  the data directory
    char *admin_key;    //  key every admin request must carry
    zhash_t *secrets;   //  app name -> HS256 secret (apps that have one)
    zconfig_t *apps;    //  the apps section (borrowed from the config), or NULL
    bool dev_defaults;  //  no apps configured: app "demo", secret in DIR
    zim_curve_t *curve; //  the cluster key pair, NULL without CURVE
    char *clients;      //  KEYS/clients, NULL without CURVE
};

//  Reads a one-line secret file, or creates it with a fresh random secret
//  (mode 0600). Creation is atomic (a private temp file linked into place),
//  so nodes starting together on one data dir agree on one secret. Caller
//  owns return value; NULL on failure (logged).
static char *s_secret_file (const char *path)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        FILE *f = fopen (path, "r");
        if (f) {
            char buf[256] = "";
            if (!fgets (buf, sizeof buf, f))
                buf[0] = 0;
            fclose (f);
            buf[strcspn (buf, "\r\n")] = 0;
            if (buf[0])
                return zim_strdup (buf);
            zsys_error ("%s is empty: delete it to have a new secret generated", path);
            return NULL;
        }
        char tmp[4200];
        snprintf (tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid ());
        char *secret = zim_token_secret_new ();
        mode_t old = umask (077);
        f = fopen (tmp, "w");
        umask (old);
        if (!f || fprintf (f, "%s\n", secret) < 0 || fflush (f) != 0 || fsync (fileno (f)) != 0 ||
            fclose (f) != 0) {
            zsys_error ("cannot write %s: %s", tmp, strerror (errno));
            free (secret);
            unlink (tmp);
            return NULL;
        }
        int rc = link (tmp, path);
        int err = errno;
        unlink (tmp);
        if (rc == 0) {
            zsys_info ("generated %s", path);
            return secret;
        }
        free (secret);
        if (err != EEXIST) {
            zsys_error ("cannot create %s: %s", path, strerror (err));
            return NULL;
        }
        //  Someone else made it first: read theirs.
    }
    return NULL;
}

void zim_datadir_destroy (zim_datadir_t **self_p)
{
    zim_datadir_t *self = *self_p;
    if (!self)
        return;
    zhash_destroy (&self->secrets);
    zim_curve_destroy (&self->curve);
    if (self->admin_key)
        explicit_bzero (self->admin_key, strlen (self->admin_key));
    free (self->admin_key);
    free (self->clients);
    free (self->path);
    free (self);
    *self_p = NULL;
}

//  Reads the apps section: every app needs a valid name and a secret of
//  16+ characters or a public key. Returns 0 or -1 (logged).
static int s_read_apps (zim_datadir_t *self, const char *program)
{
    for (zconfig_t *app = self->apps ? zconfig_child (self->apps) : NULL; app;
         app = zconfig_next (app)) {
        const char *secret = zconfig_get (app, "secret", "");
        const char *public_key = zconfig_get (app, "public_key", "");
        if (!zim_uid_valid (zim_str (zconfig_name (app))) ||
            (strlen (secret) < 16 && !*public_key) || (*secret && strlen (secret) < 16)) {
            zsys_error ("%s: app '%s' needs a valid name ([A-Za-z0-9_.@-], 1-64) and a secret "
                        "of 16+ characters or a public_key",
                        program, zconfig_name (app));
            return -1;
        }
        if (*secret)
            zhash_insert (self->secrets, zconfig_name (app), (void *)secret); //  copied
    }
    return 0;
}

zim_datadir_t *zim_datadir_open (zconfig_t *conf, const char *program)
{
    zim_datadir_t *self = zim_calloc (1, sizeof *self);
    self->secrets = zhash_new ();
    zhash_autofree (self->secrets);
    self->path = zim_strdup (zconfig_get (conf, "server/data", "./zim-data"));
    //  Workers starting together race to create it: one that lost the race
    //  finds it made (zsys_dir_create fails with EEXIST).
    if (zsys_dir_create ("%s", self->path) && !zsys_file_exists (self->path)) {
        zsys_error ("%s: cannot create data directory %s: %s", program, self->path,
                    strerror (errno));
        goto failed;
    }
    char path[4096];
    self->apps = zconfig_locate (conf, "apps");
    if (self->apps && !zconfig_child (self->apps))
        self->apps = NULL;
    if (s_read_apps (self, program))
        goto failed;
    if (!self->apps) {
        self->dev_defaults = true;
        snprintf (path, sizeof path, "%s/app-demo.secret", self->path);
        char *secret = s_secret_file (path);
        if (!secret)
            goto failed;
        zhash_insert (self->secrets, "demo", secret); //  copied
        explicit_bzero (secret, strlen (secret));
        free (secret);
    }
    const char *key = zconfig_get (conf, "server/admin_key", NULL);
    if (key && *key)
        self->admin_key = zim_strdup (key);
    else {
        snprintf (path, sizeof path, "%s/admin.key", self->path);
        self->admin_key = s_secret_file (path);
        if (!self->admin_key)
            goto failed;
    }
    //  zim_nodeconf has checked it and made it "1" or "0".
    if (streq (zconfig_get (conf, "curve/enabled", "0"), "1")) {
        char keys[4096];
        snprintf (keys, sizeof keys, "%s", zconfig_get (conf, "curve/keys", ""));
        if (!*keys)
            snprintf (keys, sizeof keys, "%s/curve", self->path);
        self->curve = zim_curve_load_node (keys);
        if (!self->curve) {
            zsys_error ("%s: curve/enabled needs the cluster key pair in %s (zimctl keygen %s)",
                        program, keys, keys);
            goto failed;
        }
        self->clients = zsys_sprintf ("%s/clients", keys);
    }
    return self;
failed:
    zim_datadir_destroy (&self);
    return NULL;
}

const char *zim_datadir_path (zim_datadir_t *self)
{
    return self->path;
}

const char *zim_datadir_admin_key (zim_datadir_t *self)
{
    return self->admin_key;
}

bool zim_datadir_dev_defaults (zim_datadir_t *self)
{
    return self->dev_defaults;
}

const char *zim_datadir_secret (zim_datadir_t *self, const char *app)
{
    return (const char *)zhash_lookup (self->secrets, app);
}

void zim_datadir_apply_apps (zim_datadir_t *self, zactor_t *gateway)
{
    if (self->dev_defaults) {
        zstr_sendx (gateway, "SET", "app_secret", "demo", zim_datadir_secret (self, "demo"), NULL);
        return;
    }
    for (zconfig_t *app = zconfig_child (self->apps); app; app = zconfig_next (app))
        for (zconfig_t *kv = zconfig_child (app); kv; kv = zconfig_next (kv)) {
            char key[128];
            snprintf (key, sizeof key, "app_%s", zconfig_name (kv));
            zstr_sendx (gateway, "SET", key, zconfig_name (app),
                        zconfig_value (kv) ? zconfig_value (kv) : "", NULL);
        }
}

const zim_curve_t *zim_datadir_curve (zim_datadir_t *self)
{
    return self->curve;
}

const char *zim_datadir_clients (zim_datadir_t *self)
{
    return self->clients;
}

//  -------------------------------------------------------------------------
//  Selftest

//  Receives one SET from the pipe end of a fake actor: "KEY NAME VALUE".
static char *s_test_set (zsock_t *pipe)
{
    zmsg_t *msg = zmsg_recv (pipe);
    assert (msg);
    char *cmd = zmsg_popstr (msg), *key = zmsg_popstr (msg), *name = zmsg_popstr (msg),
         *value = zmsg_popstr (msg);
    assert (streq (cmd, "SET"));
    char *line = zsys_sprintf ("%s %s %s", key, name, value);
    free (cmd);
    free (key);
    free (name);
    free (value);
    zmsg_destroy (&msg);
    return line;
}

static void s_test_actor (zsock_t *pipe, void *args)
{
    (void)args;
    zsock_signal (pipe, 0);
    //  Echo what it is sent, until $TERM.
    while (true) {
        zmsg_t *msg = zmsg_recv (pipe);
        if (!msg)
            break;
        char *first = zmsg_popstr (msg);
        bool term = first && streq (first, "$TERM");
        zmsg_pushstr (msg, first ? first : "");
        free (first);
        if (term) {
            zmsg_destroy (&msg);
            break;
        }
        zmsg_send (&msg, pipe);
    }
}

void zim_datadir_test (bool verbose)
{
    char dir[] = "/tmp/zim-datadir-test-XXXXXX";
    assert (mkdtemp (dir));
    char data[300];
    snprintf (data, sizeof data, "%s/data", dir);

    //  Dev defaults: a demo secret and an admin key, generated once, 0600.
    zconfig_t *conf = zconfig_new ("root", NULL);
    zconfig_put (conf, "server/data", data);
    zim_datadir_t *dd = zim_datadir_open (conf, "test");
    assert (dd && zim_datadir_dev_defaults (dd));
    assert (strlen (zim_datadir_admin_key (dd)) == 64);
    char *demo = zim_strdup (zim_datadir_secret (dd, "demo"));
    assert (strlen (demo) == 64 && zim_datadir_curve (dd) == NULL);
    char path[400];
    struct stat st;
    snprintf (path, sizeof path, "%s/app-demo.secret", data);
    assert (stat (path, &st) == 0 && (st.st_mode & 077) == 0);
    zim_datadir_destroy (&dd);
    dd = zim_datadir_open (conf, "test"); //  the same secret again
    assert (streq (zim_datadir_secret (dd, "demo"), demo));
    zactor_t *gw = zactor_new (s_test_actor, NULL);
    zim_datadir_apply_apps (dd, gw);
    char *line = s_test_set (zactor_sock (gw));
    char *want = zsys_sprintf ("app_secret demo %s", demo);
    assert (streq (line, want));
    free (line);
    free (want);
    zim_datadir_destroy (&dd);

    //  Configured apps: each key goes to the gateway as app_KEY.
    zconfig_put (conf, "apps/chat/secret", "0123456789abcdef");
    zconfig_put (conf, "apps/chat/audience", "chat-users");
    zconfig_put (conf, "apps/signed/public_key", "/etc/zim/signed.pem");
    zconfig_put (conf, "server/admin_key", "an admin key");
    dd = zim_datadir_open (conf, "test");
    assert (dd && !zim_datadir_dev_defaults (dd));
    assert (streq (zim_datadir_admin_key (dd), "an admin key"));
    assert (streq (zim_datadir_secret (dd, "chat"), "0123456789abcdef"));
    assert (zim_datadir_secret (dd, "signed") == NULL && zim_datadir_secret (dd, "demo") == NULL);
    zim_datadir_apply_apps (dd, gw);
    const char *expect[] = {"app_secret chat 0123456789abcdef", "app_audience chat chat-users",
                            "app_public_key signed /etc/zim/signed.pem"};
    for (size_t i = 0; i < 3; i++) {
        line = s_test_set (zactor_sock (gw));
        assert (streq (line, expect[i]));
        free (line);
    }
    zim_datadir_destroy (&dd);
    zactor_destroy (&gw);

    //  An app with a short secret and no public key is refused.
    zconfig_put (conf, "apps/weak/secret", "short");
    assert (zim_datadir_open (conf, "test") == NULL);
    zconfig_put (conf, "apps/weak/secret", "0123456789abcdef");
    zconfig_put (conf, "apps/bad name/secret", "0123456789abcdef");
    assert (zim_datadir_open (conf, "test") == NULL);
    zconfig_destroy (&conf);

    //  CURVE: on only with the keys there.
    conf = zconfig_new ("root", NULL);
    zconfig_put (conf, "server/data", data);
    zconfig_put (conf, "curve/enabled", "1");
    assert (zim_datadir_open (conf, "test") == NULL);
    snprintf (path, sizeof path, "%s/curve", data);
    assert (zim_curve_keygen_cluster (path) == 1);
    dd = zim_datadir_open (conf, "test");
    assert (dd && zim_datadir_curve (dd) && strstr (zim_datadir_clients (dd), "/curve/clients"));
    zim_datadir_destroy (&dd);
    zconfig_destroy (&conf);

    free (demo);
    char cmd[400];
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert (system (cmd) == 0);
    if (verbose)
        zsys_info ("datadir: secrets, apps and keys behave");
}
