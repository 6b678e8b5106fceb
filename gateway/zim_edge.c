/*  zim_edge.c: the gateway's settings table, counters and defaults, and the
    token check every way in (query, auth frame) goes through.
*/
#include "gateway/zim_edge.h"
#include "gateway/zim_links.h"
#include "gateway/zim_rooms.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

//  SET interface ADDR: "" or "*" means every address.
static int s_set_iface (void *base, const char *value, const char *value2, const char **why)
{
    (void)value2;
    (void)why;
    zim_edge_t *self = (zim_edge_t *)base;
    zim_free (&self->iface);
    if (*value && !streq (value, "*"))
        self->iface = zim_strdup (value);
    return 0;
}

//  SET app_secret NAME SECRET
static int s_set_app_secret (void *base, const char *value, const char *value2, const char **why)
{
    return zim_apps_set_secret (((zim_edge_t *)base)->apps, value, value2, why);
}

//  SET app_public_key NAME PATH
static int s_set_app_key (void *base, const char *value, const char *value2, const char **why)
{
    return zim_apps_set_public_key (((zim_edge_t *)base)->apps, value, value2, why);
}

//  SET app_audience NAME AUD
static int s_set_app_aud (void *base, const char *value, const char *value2, const char **why)
{
    return zim_apps_set_audience (((zim_edge_t *)base)->apps, value, value2, why);
}

//  SET app_issuer NAME ISS
static int s_set_app_iss (void *base, const char *value, const char *value2, const char **why)
{
    return zim_apps_set_issuer (((zim_edge_t *)base)->apps, value, value2, why);
}

//  SET app_broadcast_rate NAME N
static int s_set_app_cast (void *base, const char *value, const char *value2, const char **why)
{
    return zim_rooms_set_broadcast_rate (((zim_edge_t *)base)->rooms, value, value2, why);
}

//  SET app_api_key NAME KEY: for the process shell's API endpoint; the
//  gateway has nothing to do with it (accepted so that it is not logged as
//  an unknown key).
static int s_set_app_api_key (void *base, const char *value, const char *value2, const char **why)
{
    (void)base;
    (void)value;
    (void)value2;
    (void)why;
    return 0;
}

//  SET app_join NAME open|token
static int s_set_app_join (void *base, const char *value, const char *value2, const char **why)
{
    return zim_rooms_set_join (((zim_edge_t *)base)->rooms, value, value2, why);
}

//  SET app_client_publish NAME none|members
static int s_set_app_publish (void *base, const char *value, const char *value2, const char **why)
{
    return zim_rooms_set_publish (((zim_edge_t *)base)->rooms, value, value2, why);
}

//  SET tcp_port / tls_port N: a port, 0 (ephemeral), or off/-1 (none).
static int s_set_opt_port (int64_t *field, const char *value, const char **why)
{
    uint64_t n;
    if (streq (value, "off") || streq (value, "-1") || streq (value, "")) {
        *field = -1;
        return 0;
    }
    if (zim_parse_u64 (value, &n) || n > 65535) {
        *why = "must be a port 0..65535 (0: ephemeral) or off";
        return -1;
    }
    *field = (int64_t)n;
    return 0;
}

static int s_set_tcp_port (void *base, const char *value, const char *value2, const char **why)
{
    (void)value2;
    return s_set_opt_port (&((zim_edge_t *)base)->tcp_port, value, why);
}

static int s_set_tls_port (void *base, const char *value, const char *value2, const char **why)
{
    (void)value2;
    return s_set_opt_port (&((zim_edge_t *)base)->tls_port, value, why);
}

#define S_U64(key, field, min, max, scale, flags, help)                                            \
    {                                                                                              \
        key, ZIM_SET_U64, offsetof (zim_edge_t, field), min, max, scale, flags, NULL, help         \
    }
#define S_FN(key, fn, help)                                                                        \
    {                                                                                              \
        key, ZIM_SET_FN, 0, 0, 0, 0, 0, fn, help                                                   \
    }

const zim_setting_t zim_edge_settings[] = {
    S_U64 ("port", port, 0, 65535, 1, ZIM_SET_BEFORE_START,
           "client port: WebSocket at /ws, HTTP beside it (7700; 0 = ephemeral)"),
    {"interface", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_iface,
     "listen address (default: all)"},
    {"www", ZIM_SET_STR, offsetof (zim_edge_t, www), 0, 0, 0, 0, NULL,
     "serve the files of this directory over HTTP (default: none)"},
    {"dev_tokens", ZIM_SET_BOOL, offsetof (zim_edge_t, dev_tokens), 0, 0, 0, ZIM_SET_BEFORE_START,
     NULL,
     "serve GET /dev/token (only the process shell's dev defaults set it; honoured only for "
     "the app demo alone on a loopback interface)"},
    {"reuse_port", ZIM_SET_BOOL, offsetof (zim_edge_t, reuse_port), 0, 0, 0,
     ZIM_SET_BEFORE_START, NULL,
     "share the client port with other processes (SO_REUSEPORT; set for --workers)"},
    {"tcp_port", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_tcp_port,
     "raw TCP client port: the same msgpack frames, each after its length as 4 bytes big "
     "endian (off by default; 0 = ephemeral)"},
    {"tls_port", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_tls_port,
     "WSS port beside the plain client port (off by default: with tls_cert the client port "
     "itself is WSS; 0 = ephemeral)"},
    {"tls_cert", ZIM_SET_STR, offsetof (zim_edge_t, tls_cert), 0, 0, 0, ZIM_SET_BEFORE_START, NULL,
     "PEM certificate (chain) file: TLS for WebSocket clients (with tls_key)"},
    {"tls_key", ZIM_SET_STR, offsetof (zim_edge_t, tls_key), 0, 0, 0, ZIM_SET_BEFORE_START, NULL,
     "PEM private key file of tls_cert"},
    S_U64 ("max_frame", max_frame, 256, 16 << 20, 1, 0,
           "largest client message, bytes (65536); larger gets 4002 and a close"),
    S_U64 ("idle_timeout", idle_timeout_ms, 0, 86400, 1000, 0,
           "seconds without input before 4080 and a close (90; 0 = never)"),
    S_U64 ("ping_interval", ping_interval_s, 0, 29999, 1, ZIM_SET_BEFORE_START,
           "seconds between WebSocket PINGs (30; 0 = none)"),
    S_U64 ("send_rate", send_rate, 1, 0, 1, 0, "sends per second per connection (1000)"),
    S_U64 ("send_burst", send_burst, 1, 0, 1, 0, "send bucket size (20000)"),
    S_U64 ("read_rate", read_rate, 1, 0, 1, 0,
           "syncs and history reads per second per connection (50); beyond: 4029"),
    S_U64 ("read_burst", read_burst, 1, 0, 1, 0, "read bucket size (100)"),
    S_U64 ("max_reads_inflight", max_reads_inflight, 1, 64, 1, 0,
           "reads per connection not yet answered (4); beyond: 4028"),
    S_U64 ("max_pending", max_pending, 4096, 0, 1, 0,
           "live output bytes queued to one client before 4090 and a close (1048576); "
           "answers to its own reads do not count"),
    S_U64 ("auth_timeout", auth_timeout_ms, 1, 3600, 1000, 0,
           "seconds a connection may stay unauthenticated before 4014 and a close (10)"),
    S_U64 ("max_auth_failures", max_auth_failures, 1, 1000, 1, 0,
           "failed auth frames on one connection before 4015 and a close (3)"),
    S_U64 ("max_conns_per_user", max_conns_per_user, 1, 1000000, 1, 0,
           "connections of one user on this gateway; beyond: 4031 and a close (64)"),
    S_U64 ("token_leeway", token_leeway_s, 0, 3600, 1, 0,
           "seconds of clock skew allowed on a token's exp and nbf (0)"),
    S_FN ("app_secret", s_set_app_secret, "app_secret NAME SECRET: HS256 tokens of app NAME"),
    S_FN ("app_public_key", s_set_app_key,
          "app_public_key NAME PATH: PEM public key of app NAME (RSA: RS256, P-256: ES256)"),
    S_FN ("app_audience", s_set_app_aud, "app_audience NAME AUD: tokens of NAME must name AUD"),
    S_FN ("app_issuer", s_set_app_iss, "app_issuer NAME ISS: tokens of NAME must have iss ISS"),
    //  rooms and signals (zim_rooms)
    S_U64 ("max_rooms_per_conn", max_rooms_per_conn, 1, 100000, 1, 0,
           "rooms one connection may be in (128); beyond: 4051"),
    S_U64 ("signal_rate", signal_rate, 1, 0, 1, 0, "signals per second per connection (10)"),
    S_U64 ("signal_burst", signal_burst, 1, 0, 1, 0, "signal bucket size (20); beyond: 4055"),
    S_U64 ("broadcast_rate", broadcast_rate, 1, 0, 1, 0,
           "a push to all reaches this many connections a second (10000)"),
    S_FN ("app_broadcast_rate", s_set_app_cast,
          "app_broadcast_rate NAME N: a push to all of NAME reaches N connections a second"),
    S_FN ("app_api_key", s_set_app_api_key,
          "app_api_key NAME KEY: the push API's key (read by the API endpoint, not the gateway)"),
    S_FN ("app_join", s_set_app_join,
          "app_join NAME open|token: who may join rooms of NAME (open; token: the rooms its "
          "token's rooms claim names)"),
    S_FN ("app_client_publish", s_set_app_publish,
          "app_client_publish NAME none|members: may clients publish to rooms they are in "
          "(members)"),
    {NULL}};

#define S_COUNTER(name)                                                                            \
    {                                                                                              \
#name, offsetof(zim_edge_t, name)                                                          \
    }
#define S_TOKEN(name, reason)                                                                      \
    {                                                                                              \
        "token_" name, offsetof (zim_edge_t, token_refused[reason])                                \
    }

const char *const zim_edge_gauges[] = {"connections", "authed", NULL};

const zim_counter_t zim_edge_counters[] = {S_COUNTER (connections),
                                           S_COUNTER (authed),
                                           S_COUNTER (frames_in),
                                           S_COUNTER (frames_out),
                                           S_COUNTER (writes),
                                           S_COUNTER (write_requests),
                                           S_COUNTER (sends),
                                           S_COUNTER (reads),
                                           S_COUNTER (errors_sent),
                                           S_COUNTER (bad_frames),
                                           S_COUNTER (rate_limited),
                                           S_COUNTER (reads_rate_limited),
                                           S_COUNTER (reads_too_many),
                                           S_COUNTER (idle_closed),
                                           S_COUNTER (slow_consumer_drops),
                                           S_COUNTER (auth_failures),
                                           S_COUNTER (auth_timeouts),
                                           S_COUNTER (ping_timeouts),
                                           S_COUNTER (auth_failures_closed),
                                           S_COUNTER (too_many_conns),
                                           S_COUNTER (too_large),
                                           S_COUNTER (unavailable),
                                           S_COUNTER (bad_messages),
                                           S_COUNTER (out_gone),
                                           S_COUNTER (out_closing),
                                           S_COUNTER (presence_dropped),
                                           S_COUNTER (reannounces),
                                           S_COUNTER (http_requests),
                                           S_COUNTER (dev_tokens_served),
                                           S_COUNTER (dev_tokens_refused),
                                           S_TOKEN ("malformed", ZIM_TOKEN_MALFORMED),
                                           S_TOKEN ("unknown_app", ZIM_TOKEN_UNKNOWN_APP),
                                           S_TOKEN ("bad_signature", ZIM_TOKEN_BAD_SIGNATURE),
                                           S_TOKEN ("expired", ZIM_TOKEN_EXPIRED),
                                           S_TOKEN ("not_yet_valid", ZIM_TOKEN_NOT_YET_VALID),
                                           S_TOKEN ("bad_audience", ZIM_TOKEN_BAD_AUDIENCE),
                                           S_TOKEN ("bad_issuer", ZIM_TOKEN_BAD_ISSUER),
                                           S_TOKEN ("alg_refused", ZIM_TOKEN_ALG_REFUSED),
                                           S_COUNTER (room_joins),
                                           S_COUNTER (room_leaves),
                                           S_COUNTER (room_refused),
                                           S_COUNTER (room_publishes),
                                           S_COUNTER (room_deliveries),
                                           S_COUNTER (room_dropped),
                                           S_COUNTER (signals),
                                           S_COUNTER (signals_refused),
                                           S_COUNTER (broadcasts),
                                           S_COUNTER (broadcasts_dropped),
                                           S_COUNTER (broadcast_deliveries),
                                           {NULL}};

//  The shell class of a selftest edge: the tables, no hooks.
static const zim_shell_class_t s_bare_class = {
    .role = "gateway",
    .settings = zim_edge_settings,
    .counters = zim_edge_counters,
};

zim_edge_t *zim_edge_new (zsock_t *pipe, const zim_shell_class_t *cls)
{
    zim_edge_t *self = (zim_edge_t *)zim_calloc (1, sizeof *self);
    self->shell = zim_shell_new (pipe, cls ? cls : &s_bare_class, self, "gw-1");
    self->port = 7700;
    self->max_frame = 65536;
    self->idle_timeout_ms = 90 * 1000;
    self->ping_interval_s = 30;
    self->send_rate = 1000;
    self->send_burst = 20000;
    self->read_rate = 50;
    self->read_burst = 100;
    self->max_reads_inflight = 4;
    self->max_pending = 1048576;
    self->auth_timeout_ms = 10 * 1000;
    self->max_auth_failures = 3;
    self->max_conns_per_user = 64;
    self->tcp_port = -1; //  raw TCP: off
    self->tls_port = -1; //  WSS beside plain: none
    self->apps = zim_apps_new ();
    zim_wr_init (&self->wr);
    zim_wr_init (&self->fr);
    self->sessions = zim_sessions_new (self);
    self->links = zim_links_new (self);
    self->max_rooms_per_conn = 128;
    self->signal_rate = 10;
    self->signal_burst = 20;
    self->broadcast_rate = 10000;
    self->rooms = zim_rooms_new (self);
    return self;
}

void zim_edge_destroy (zim_edge_t **self_p)
{
    zim_edge_t *self = *self_p;
    if (!self)
        return;
    zim_sessions_destroy (&self->sessions);
    zim_rooms_destroy (&self->rooms);
    zim_links_destroy (&self->links);
    zim_apps_destroy (&self->apps);
    zim_wr_free (&self->wr);
    zim_wr_free (&self->fr);
    free (self->iface);
    zim_shell_destroy (&self->shell); //  frees the ZIM_SET_STR fields
    free (self);
    *self_p = NULL;
}

int zim_edge_verify_token (zim_edge_t *self, const char *token, size_t len, const char *who,
                           char *app, char *uid)
{
    const char *why = NULL;
    zim_token_reason_t reason = zim_token_verify (self->apps, token, len, zim_now_ms () / 1000,
                                                  self->token_leeway_s, app, uid, &why);
    if (reason == ZIM_TOKEN_OK)
        return 0;
    self->auth_failures++;
    self->token_refused[reason]++;
    zim_shell_warn (self->shell, "%s: token refused (%s): %s", who, zim_token_reason_name (reason),
                    why ? why : "?");
    return zim_token_code (reason);
}

int64_t zim_edge_now_ms (void)
{
    return (int64_t)(zim_mono_us () / 1000);
}

//  Asks STATS of a selftest edge; returns one counter.
static json_int_t s_test_counter (zim_edge_t *edge, const char *name)
{
    json_t *stats = zim_shell_stats (edge->shell);
    json_int_t v = json_integer_value (json_object_get (stats, name));
    json_decref (stats);
    return v;
}

void zim_edge_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    zim_shell_t *shell = edge->shell;
    //  Settings through the shell, scaled where they are seconds.
    assert (zim_shell_set (shell, "idle_timeout", "3", NULL) == 0 && edge->idle_timeout_ms == 3000);
    assert (zim_shell_set (shell, "auth_timeout", "0", NULL) == -1);
    assert (zim_shell_set (shell, "max_reads_inflight", "65", NULL) == -1);
    assert (zim_shell_set (shell, "interface", "*", NULL) == 0 && edge->iface == NULL);
    assert (zim_shell_set (shell, "interface", "127.0.0.1", NULL) == 0 &&
            streq (edge->iface, "127.0.0.1"));
    assert (zim_shell_set (shell, "www", "/srv/www", NULL) == 0 && streq (edge->www, "/srv/www"));
    assert (zim_shell_set (shell, "dev_tokens", "1", NULL) == 0 && edge->dev_tokens);
    assert (zim_shell_set (shell, "app_secret", "demo", "secret-secret-secret") == 0);
    assert (zim_shell_set (shell, "app_secret", "demo", NULL) == -1);
    assert (zim_shell_set (shell, "app_secret", "old", "old-spelling-secret") == 0);
    assert (zim_shell_set (shell, "app_audience", "demo", "chat") == 0);
    assert (zim_shell_set (shell, "app_public_key", "demo", "/nonexistent.pem") == -1);
    assert (zim_apps_size (edge->apps) == 2);

    //  A refused token is counted by reason and in auth_failures.
    char app[ZIM_ID_MAX + 1], uid[ZIM_ID_MAX + 1];
    uint64_t now = zim_now_ms () / 1000;
    char *t = zim_token_sign ("old-spelling-secret", "old", "alice", now + 60);
    assert (zim_edge_verify_token (edge, t, strlen (t), "test", app, uid) == 0);
    assert (streq (app, "old") && streq (uid, "alice"));
    free (t);
    t = zim_token_sign ("old-spelling-secret", "old", "alice", now - 1);
    assert (zim_edge_verify_token (edge, t, strlen (t), "test", app, uid) == ZIM_ERR_TOKEN_EXPIRED);
    free (t);
    t = zim_token_sign ("secret-secret-secret", "demo", "alice", now + 60); //  no aud
    assert (zim_edge_verify_token (edge, t, strlen (t), "test", app, uid) == ZIM_ERR_TOKEN_CLAIMS);
    free (t);
    assert (zim_edge_verify_token (edge, "x.y.z", 5, "test", app, uid) == ZIM_ERR_BAD_TOKEN);
    assert (s_test_counter (edge, "auth_failures") == 3);
    assert (s_test_counter (edge, "token_expired") == 1);
    assert (s_test_counter (edge, "token_bad_audience") == 1);
    assert (s_test_counter (edge, "token_malformed") == 1);
    assert (s_test_counter (edge, "token_bad_signature") == 0);
    int64_t a = zim_edge_now_ms ();
    assert (a > 0 && zim_edge_now_ms () >= a);
    zim_edge_destroy (&edge);
    zim_edge_destroy (&edge);
}
