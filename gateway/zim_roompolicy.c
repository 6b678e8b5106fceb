/*  zim_roompolicy.c: who may do what with rooms (zim_roompolicy.h). */
#include "gateway/zim_roompolicy.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

//  Apps with their own room policy.
#define S_MAX_APPS 64
//  Users whose tokens issued until a disconnect are refused, at most.
#define S_MAX_REVOKED 100000

//  Room policy of one app.
typedef struct {
    char app[ZIM_ID_MAX + 1];
    bool join_token;   //  join only rooms the token names
    bool publish_none; //  clients may not publish
} s_app_t;

struct _zim_roompolicy_t {
    s_app_t apps[S_MAX_APPS]; //  apps with a policy of their own
    size_t napps;             //  how many
    zhashx_t *revoked;        //  "app/uid" -> time (s) until which its tokens are refused
};

zim_roompolicy_t *zim_roompolicy_new (void)
{
    zim_roompolicy_t *self = (zim_roompolicy_t *)zim_calloc (1, sizeof *self);
    self->revoked = zhashx_new ();
    zhashx_set_destructor (self->revoked, (zhashx_destructor_fn *)zstr_free);
    return self;
}

void zim_roompolicy_destroy (zim_roompolicy_t **self_p)
{
    zim_roompolicy_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->revoked);
    free (self);
    *self_p = NULL;
}

static s_app_t *s_app (zim_roompolicy_t *self, const char *app, bool make)
{
    for (size_t i = 0; i < self->napps; i++)
        if (streq (self->apps[i].app, app))
            return &self->apps[i];
    if (!make || self->napps == S_MAX_APPS || !zim_uid_valid (zim_str (app)))
        return NULL;
    s_app_t *a = &self->apps[self->napps++];
    memset (a, 0, sizeof *a);
    snprintf (a->app, sizeof a->app, "%s", app);
    return a;
}

int zim_roompolicy_set_join (zim_roompolicy_t *self, const char *app, const char *value,
                             const char **why)
{
    if (!value || (!streq (value, "open") && !streq (value, "token"))) {
        *why = "join must be open or token";
        return -1;
    }
    s_app_t *a = s_app (self, app, true);
    if (!a) {
        *why = "not a valid app name, or too many apps";
        return -1;
    }
    a->join_token = streq (value, "token");
    return 0;
}

int zim_roompolicy_set_publish (zim_roompolicy_t *self, const char *app, const char *value,
                                const char **why)
{
    if (!value || (!streq (value, "none") && !streq (value, "members"))) {
        *why = "client_publish must be none or members";
        return -1;
    }
    s_app_t *a = s_app (self, app, true);
    if (!a) {
        *why = "not a valid app name, or too many apps";
        return -1;
    }
    a->publish_none = streq (value, "none");
    return 0;
}

bool zim_roompolicy_join_by_token (zim_roompolicy_t *self, const char *app)
{
    s_app_t *a = s_app (self, app, false);
    return a && a->join_token;
}

bool zim_roompolicy_publish_none (zim_roompolicy_t *self, const char *app)
{
    s_app_t *a = s_app (self, app, false);
    return a && a->publish_none;
}

//  Strict enough base64url decode of a token part (it was verified before).
static size_t s_b64url (const char *in, size_t len, char *out, size_t size)
{
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '-'             ? 62
                : c == '_'             ? 63
                                       : -1;
        if (v < 0)
            return 0;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == size)
                return 0;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    return n;
}

json_t *zim_roompolicy_claims (const char *token, size_t len)
{
    const char *dot1 = memchr (token, '.', len);
    const char *dot2 = dot1 ? memchr (dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2)
        return NULL;
    char text[4096];
    size_t n = s_b64url (dot1 + 1, (size_t)(dot2 - dot1 - 1), text, sizeof text);
    return n ? json_loadb (text, n, 0, NULL) : NULL;
}

bool zim_roompolicy_claimed (char *const *patterns, uint32_t n, zim_str_t room)
{
    for (uint32_t i = 0; i < n; i++) {
        const char *p = patterns[i];
        size_t len = strlen (p);
        if (len > 0 && p[len - 1] == '*') {
            if (room.len >= len - 1 && memcmp (room.ptr, p, len - 1) == 0)
                return true;
        } else if (zim_str_eq (room, p))
            return true;
    }
    return false;
}

void zim_roompolicy_revoke (zim_roompolicy_t *self, zim_str_t app, zim_str_t uid, uint64_t now_s)
{
    char who[2 * ZIM_ID_MAX + 2], until[32];
    snprintf (who, sizeof who, "%.*s/%.*s", (int)app.len, app.ptr, (int)uid.len, uid.ptr);
    snprintf (until, sizeof until, "%" PRIu64, now_s);
    if (zhashx_size (self->revoked) < S_MAX_REVOKED || zhashx_lookup (self->revoked, who))
        zhashx_update (self->revoked, who, zim_strdup (until));
}

bool zim_roompolicy_revoked (zim_roompolicy_t *self, const char *app, const char *uid,
                             json_t *claims)
{
    char who[2 * ZIM_ID_MAX + 2];
    snprintf (who, sizeof who, "%s/%s", app, uid);
    const char *until = (const char *)zhashx_lookup (self->revoked, who);
    json_t *iat = json_object_get (claims, "iat");
    return until && (!json_is_number (iat) || json_number_value (iat) <= atof (until));
}

void zim_roompolicy_test (bool verbose)
{
    (void)verbose;
    zim_roompolicy_t *self = zim_roompolicy_new ();
    const char *why;
    assert (zim_roompolicy_set_join (self, "strict", "token", &why) == 0);
    assert (zim_roompolicy_set_join (self, "strict", "closed", &why) == -1);
    assert (zim_roompolicy_set_publish (self, "strict", "none", &why) == 0);
    assert (zim_roompolicy_set_publish (self, "bad app", "none", &why) == -1);
    assert (zim_roompolicy_join_by_token (self, "strict") &&
            !zim_roompolicy_join_by_token (self, "demo"));
    assert (zim_roompolicy_publish_none (self, "strict") &&
            !zim_roompolicy_publish_none (self, "demo"));
    char *patterns[] = {"game:*", "news"};
    assert (zim_roompolicy_claimed (patterns, 2, zim_str ("game:42")));
    assert (zim_roompolicy_claimed (patterns, 2, zim_str ("news")));
    assert (!zim_roompolicy_claimed (patterns, 2, zim_str ("newsroom")));
    //  {"sub":"a","iat":100} as a token's payload.
    const char *token = "x.eyJzdWIiOiJhIiwiaWF0IjoxMDB9.y";
    json_t *claims = zim_roompolicy_claims (token, strlen (token));
    assert (json_integer_value (json_object_get (claims, "iat")) == 100);
    assert (!zim_roompolicy_claims ("nodots", 6));
    assert (!zim_roompolicy_revoked (self, "demo", "a", claims));
    zim_roompolicy_revoke (self, zim_str ("demo"), zim_str ("a"), 100);
    assert (zim_roompolicy_revoked (self, "demo", "a", claims));
    zim_roompolicy_revoke (self, zim_str ("demo"), zim_str ("a"), 99);
    assert (!zim_roompolicy_revoked (self, "demo", "a", claims));
    json_decref (claims);
    zim_roompolicy_destroy (&self);
}
