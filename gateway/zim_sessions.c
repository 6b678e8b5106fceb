/*  zim_sessions.c: the table of client connections, per-user counts and
    the idle and auth deadlines (see zim_sessions.h).
*/
#include "gateway/zim_sessions.h"
#include "gateway/zim_links.h"
#include "gateway/zim_rooms.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <czmq.h>
#include <inttypes.h>
#include <libwebsockets.h>

struct _zim_sessions_t {
    zim_edge_t *edge;     //  settings and counters
    zhashx_t *by_id;      //  conn id -> zim_session_t (owned)
    zhashx_t *per_user;   //  "app:uid" -> connection count (as a pointer)
    zim_timers_t *idle;   //  every session: closes after idle_timeout
    zim_timers_t *unauth; //  sessions without a token: close after auth_timeout
    zim_timers_t *ping;   //  every session: a PING each ping_interval
    uint64_t next_id;     //  the last id given
};

//  Hash and comparison of uint64 ids stored in the key pointer.
static size_t s_id_hash (const void *key)
{
    uint64_t k = (uint64_t)(uintptr_t)key;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

static int s_id_cmp (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void s_session_free (void **item)
{
    zim_session_destroy ((zim_session_t **)item);
}

zim_sessions_t *zim_sessions_new (zim_edge_t *edge)
{
    zim_sessions_t *self = (zim_sessions_t *)zim_calloc (1, sizeof *self);
    self->edge = edge;
    self->by_id = zhashx_new ();
    zhashx_set_key_hasher (self->by_id, s_id_hash);
    zhashx_set_key_comparator (self->by_id, s_id_cmp);
    zhashx_set_key_duplicator (self->by_id, NULL);
    zhashx_set_key_destructor (self->by_id, NULL);
    zhashx_set_destructor (self->by_id, s_session_free);
    self->per_user = zhashx_new ();
    self->idle = zim_timers_new ();
    self->unauth = zim_timers_new ();
    self->ping = zim_timers_new ();
    return self;
}

void zim_sessions_destroy (zim_sessions_t **self_p)
{
    zim_sessions_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->by_id); //  sessions stop their timers
    zhashx_destroy (&self->per_user);
    zim_timers_destroy (&self->idle);
    zim_timers_destroy (&self->unauth);
    zim_timers_destroy (&self->ping);
    free (self);
    *self_p = NULL;
}

//  Writes the per-user key "app:uid" (':' is in no id) into buf.
static void s_user_key (char *buf, size_t size, const char *app, const char *uid)
{
    snprintf (buf, size, "%s:%s", app, uid);
}

//  Opens a session on wsi or on io (arg); pings if wsi.
static zim_session_t *s_open (zim_sessions_t *self, struct lws *wsi, const zim_session_io_t *io,
                              void *arg)
{
    zim_edge_t *edge = self->edge;
    zim_session_t *session = zim_session_new (edge, ++self->next_id, wsi);
    if (io)
        zim_session_set_io (session, io, arg);
    zhashx_insert (self->by_id, (void *)(uintptr_t)zim_session_id (session), session);
    int64_t now = zim_edge_now_ms ();
    zim_timers_start (self->idle, zim_session_idle_timer (session),
                      now + (int64_t)edge->idle_timeout_ms, session);
    zim_timers_start (self->unauth, zim_session_auth_timer (session),
                      now + (int64_t)edge->auth_timeout_ms, session);
    if (edge->ping_interval_s && !io)
        zim_timers_start (self->ping, zim_session_ping_timer (session),
                          now + (int64_t)edge->ping_interval_s * 1000, session);
    edge->connections++;
    return session;
}

zim_session_t *zim_sessions_open (zim_sessions_t *self, struct lws *wsi)
{
    return s_open (self, wsi, NULL, NULL);
}

zim_session_t *zim_sessions_open_io (zim_sessions_t *self, const zim_session_io_t *io, void *arg)
{
    return s_open (self, NULL, io, arg);
}

void zim_sessions_close (zim_sessions_t *self, zim_session_t **session_p)
{
    zim_session_t *session = *session_p;
    if (!session)
        return;
    zim_edge_t *edge = self->edge;
    if (zim_session_authed (session)) {
        char key[2 * ZIM_ID_MAX + 2];
        s_user_key (key, sizeof key, zim_session_app (session), zim_session_uid (session));
        uintptr_t n = (uintptr_t)zhashx_lookup (self->per_user, key);
        if (n > 1)
            zhashx_update (self->per_user, key, (void *)(n - 1));
        else
            zhashx_delete (self->per_user, key);
        edge->authed--;
        zim_links_presence (edge->links, session, false);
        zim_rooms_forget (edge, session);
    }
    edge->connections--;
    zhashx_delete (self->by_id, (void *)(uintptr_t)zim_session_id (session)); //  destroys it
    *session_p = NULL;
}

zim_session_t *zim_sessions_lookup (zim_sessions_t *self, uint64_t id)
{
    return (zim_session_t *)zhashx_lookup (self->by_id, (void *)(uintptr_t)id);
}

void zim_sessions_touch (zim_sessions_t *self, zim_session_t *session)
{
    if (zim_session_closing (session))
        return;
    int64_t now = zim_edge_now_ms ();
    zim_session_heard (session, now);
    zim_timers_start (self->idle, zim_session_idle_timer (session),
                      now + (int64_t)self->edge->idle_timeout_ms, session);
}

size_t zim_sessions_user_count (zim_sessions_t *self, const char *app, const char *uid)
{
    char key[2 * ZIM_ID_MAX + 2];
    s_user_key (key, sizeof key, app, uid);
    return (size_t)(uintptr_t)zhashx_lookup (self->per_user, key);
}

int zim_sessions_admit (zim_sessions_t *self, zim_session_t *session, const char *app,
                        const char *uid)
{
    zim_edge_t *edge = self->edge;
    char key[2 * ZIM_ID_MAX + 2];
    s_user_key (key, sizeof key, app, uid);
    uintptr_t n = (uintptr_t)zhashx_lookup (self->per_user, key);
    if (n >= edge->max_conns_per_user) {
        edge->too_many_conns++;
        zim_shell_warn (edge->shell,
                        "connection %" PRIu64 ": %s/%s already has %" PRIu64
                        " connections here (max_conns_per_user): refused with 4031",
                        zim_session_id (session), app, uid, (uint64_t)n);
        return ZIM_ERR_TOO_MANY_CONNS;
    }
    zhashx_update (self->per_user, key, (void *)(n + 1));
    zim_session_set_identity (session, app, uid);
    zim_timer_stop (zim_session_auth_timer (session));
    edge->authed++;
    zim_links_presence (edge->links, session, true);
    return 0;
}

void zim_sessions_sweep (zim_sessions_t *self, int64_t now_ms)
{
    zim_edge_t *edge = self->edge;
    zim_timer_t *timer;
    //  A session that fails stops both its timers, so each loop ends. The
    //  auth deadline first: it says more than idleness (a late tick can
    //  find both past).
    while ((timer = zim_timers_expired (self->unauth, now_ms))) {
        zim_session_t *session = (zim_session_t *)timer->arg;
        edge->auth_timeouts++;
        zim_shell_warn (edge->shell,
                        "connection %" PRIu64 ": no valid token within auth_timeout: closed",
                        zim_session_id (session));
        zim_session_fail (session, ZIM_ERR_AUTH_TIMEOUT, "authenticate within auth_timeout",
                          ZIM_ERR_AUTH_TIMEOUT);
    }
    while (edge->idle_timeout_ms && (timer = zim_timers_expired (self->idle, now_ms))) {
        edge->idle_closed++;
        zim_session_fail ((zim_session_t *)timer->arg, ZIM_ERR_IDLE_TIMEOUT,
                          "idle timeout: nothing received", ZIM_ERR_IDLE_TIMEOUT);
    }
    //  Heartbeats: a PING each ping_interval; a peer not heard from (not
    //  even a PONG) for two intervals and 10 s is gone: hang up, as
    //  libwebsockets' own validity policy did.
    int64_t interval = (int64_t)edge->ping_interval_s * 1000;
    while ((timer = zim_timers_expired (self->ping, now_ms))) {
        zim_session_t *session = (zim_session_t *)timer->arg;
        if (now_ms - zim_session_heard_ms (session) > 2 * interval + 10000) {
            edge->ping_timeouts++;
            zim_shell_warn (edge->shell,
                            "connection %" PRIu64 ": no answer to PINGs for %" PRId64 " s: closed",
                            zim_session_id (session),
                            (now_ms - zim_session_heard_ms (session)) / 1000);
            zim_session_close (session, LWS_CLOSE_STATUS_GOINGAWAY); //  stops the timer
        } else {
            zim_session_ping (session);
            zim_timers_start (self->ping, timer, now_ms + interval, session);
        }
    }
}

int64_t zim_sessions_next_due (zim_sessions_t *self)
{
    int64_t due = zim_timers_next_due (self->unauth);
    if (self->edge->idle_timeout_ms && zim_timers_next_due (self->idle) < due)
        due = zim_timers_next_due (self->idle);
    if (zim_timers_next_due (self->ping) < due)
        due = zim_timers_next_due (self->ping);
    return due;
}

zim_session_t *zim_sessions_first (zim_sessions_t *self)
{
    return (zim_session_t *)zhashx_first (self->by_id);
}

zim_session_t *zim_sessions_next (zim_sessions_t *self)
{
    return (zim_session_t *)zhashx_next (self->by_id);
}

size_t zim_sessions_size (zim_sessions_t *self)
{
    return zhashx_size (self->by_id);
}

//  -------------------------------------------------------------------------
//  Selftest: sessions without sockets; no router is connected, so the
//  PRESENCE sent on admit and close goes nowhere.

void zim_sessions_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    edge->max_conns_per_user = 2;
    edge->idle_timeout_ms = 4000;
    edge->auth_timeout_ms = 2000;
    zim_sessions_t *sessions = edge->sessions;
    zim_session_t *a = zim_sessions_open (sessions, NULL);
    zim_session_t *b = zim_sessions_open (sessions, NULL);
    zim_session_t *c = zim_sessions_open (sessions, NULL);
    zim_session_t *d = zim_sessions_open (sessions, NULL);
    //  Every deadline below is judged against a time taken after the
    //  opens, so a slow machine cannot make it pass early.
    int64_t now = zim_edge_now_ms ();
    assert (edge->connections == 4 && zim_sessions_size (sessions) == 4);
    assert (zim_sessions_lookup (sessions, zim_session_id (b)) == b);
    assert (zim_sessions_lookup (sessions, 999) == NULL);

    //  Two connections per user, the third is refused.
    assert (zim_sessions_admit (sessions, a, "demo", "alice") == 0);
    assert (zim_sessions_admit (sessions, b, "demo", "alice") == 0);
    assert (zim_sessions_admit (sessions, c, "demo", "alice") == ZIM_ERR_TOO_MANY_CONNS);
    assert (!zim_session_authed (c) && edge->too_many_conns == 1);
    assert (zim_sessions_user_count (sessions, "demo", "alice") == 2 && edge->authed == 2);
    assert (zim_sessions_admit (sessions, c, "other", "alice") == 0); //  another app
    size_t n = 0;
    for (zim_session_t *s = zim_sessions_first (sessions); s; s = zim_sessions_next (sessions))
        n += zim_session_authed (s);
    assert (n == 3);
    zim_sessions_close (sessions, &b);
    assert (b == NULL && edge->authed == 2 && edge->connections == 3);
    assert (zim_sessions_user_count (sessions, "demo", "alice") == 1);

    //  Deadlines: an unauthenticated session closes after auth_timeout
    //  (4014) even if it keeps sending; idle ones after idle_timeout (4080).
    zim_sessions_sweep (sessions, now);
    assert (!zim_session_closing (d));
    zclock_sleep (200); //  a's idle deadline moves past now + 4200
    zim_sessions_touch (sessions, d);
    zim_sessions_touch (sessions, a);
    zim_sessions_sweep (sessions, now + 2000);
    assert (zim_session_closing (d) && edge->auth_timeouts == 1 && edge->idle_closed == 0);
    zim_sessions_sweep (sessions, now + 4000);
    assert (zim_session_closing (c) && edge->idle_closed == 1); //  c was never touched
    assert (!zim_session_closing (a));
    zim_sessions_sweep (sessions, now + 10000);
    assert (zim_session_closing (a) && edge->idle_closed == 2);
    zim_sessions_close (sessions, &d);
    zim_sessions_destroy (&edge->sessions); //  frees a and c
    zim_edge_destroy (&edge);
}
