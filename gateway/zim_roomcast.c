/*  zim_roomcast.c: paced pushes to all (zim_roomcast.h). */
#include "gateway/zim_roomcast.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_sessions.h"
#include "gateway/zim_token.h"
#include "msg/zim_util.h"

#include <assert.h>
#include <string.h>

//  Pushes paced at once; more are dropped.
#define S_MAX_CASTS 16
//  Apps with a rate of their own.
#define S_MAX_APPS 64

//  A push to every connection of an app, paced at rate.
typedef struct {
    uint64_t *ids;  //  the app's connections when it came
    size_t n, next; //  how many, the next to write to
    uint64_t rate;  //  connections per second
    zim_wr_t frame; //  the frame
} s_cast_t;

//  An app's own rate.
typedef struct {
    char app[ZIM_ID_MAX + 1];
    uint64_t rate; //  connections per second
} s_rate_t;

struct _zim_roomcast_t {
    zim_edge_t *edge;            //  sessions, settings, counters
    s_cast_t casts[S_MAX_CASTS]; //  pushes being paced
    size_t ncasts;               //  how many
    s_rate_t rates[S_MAX_APPS];  //  apps' own rates
    size_t nrates;               //  how many
};

zim_roomcast_t *zim_roomcast_new (zim_edge_t *edge)
{
    zim_roomcast_t *self = (zim_roomcast_t *)zim_calloc (1, sizeof *self);
    self->edge = edge;
    return self;
}

void zim_roomcast_destroy (zim_roomcast_t **self_p)
{
    zim_roomcast_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->ncasts; i++) {
        free (self->casts[i].ids);
        zim_wr_free (&self->casts[i].frame);
    }
    free (self);
    *self_p = NULL;
}

int zim_roomcast_set_rate (zim_roomcast_t *self, const char *app, const char *value,
                           const char **why)
{
    uint64_t rate;
    if (!value || zim_parse_u64 (value, &rate) || rate == 0) {
        *why = "broadcast_rate must be a number of connections per second, 1 or more";
        return -1;
    }
    size_t i = 0;
    while (i < self->nrates && !streq (self->rates[i].app, app))
        i++;
    if (i == self->nrates) {
        if (self->nrates == S_MAX_APPS || !zim_uid_valid (zim_str (app))) {
            *why = "not a valid app name, or too many apps";
            return -1;
        }
        snprintf (self->rates[self->nrates++].app, sizeof self->rates[0].app, "%s", app);
    }
    self->rates[i].rate = rate;
    return 0;
}

//  Writes the next rate connections of cast; true when it is done.
static bool s_step (zim_roomcast_t *self, s_cast_t *cast)
{
    zim_edge_t *edge = self->edge;
    uint64_t budget = edge->max_pending / 2;
    for (uint64_t k = 0; k < cast->rate && cast->next < cast->n; k++) {
        zim_session_t *s = zim_sessions_lookup (edge->sessions, cast->ids[cast->next++]);
        if (!s || zim_session_closing (s))
            continue;
        size_t live = zim_session_pending (s) - zim_session_pending_replies (s);
        if (live + cast->frame.size > budget) {
            edge->room_dropped++;
            continue;
        }
        zim_session_write (s, cast->frame.data, cast->frame.size, false);
        edge->broadcast_deliveries++;
    }
    return cast->next >= cast->n;
}

void zim_roomcast_start (zim_roomcast_t *self, zim_str_t app, zim_str_t frame)
{
    zim_edge_t *edge = self->edge;
    if (self->ncasts == S_MAX_CASTS) {
        edge->broadcasts_dropped++;
        zim_shell_warn (edge->shell, "%d broadcasts being paced already: one dropped", S_MAX_CASTS);
        return;
    }
    s_cast_t *cast = &self->casts[self->ncasts];
    memset (cast, 0, sizeof *cast);
    cast->rate = edge->broadcast_rate;
    for (size_t i = 0; i < self->nrates; i++)
        if (zim_str_eq (app, self->rates[i].app))
            cast->rate = self->rates[i].rate;
    size_t alloc = zim_sessions_size (edge->sessions);
    cast->ids = (uint64_t *)zim_malloc ((alloc ? alloc : 1) * sizeof (uint64_t));
    zim_sessions_t *sessions = edge->sessions;
    for (zim_session_t *s = zim_sessions_first (sessions); s; s = zim_sessions_next (sessions))
        if (zim_session_authed (s) && zim_str_eq (app, zim_session_app (s)))
            cast->ids[cast->n++] = zim_session_id (s);
    zim_wr_init (&cast->frame);
    zim_wr_raw (&cast->frame, frame.ptr, frame.len);
    edge->broadcasts++;
    if (s_step (self, cast)) {
        free (cast->ids);
        zim_wr_free (&cast->frame);
    } else
        self->ncasts++;
}

void zim_roomcast_tick (zim_roomcast_t *self)
{
    for (size_t i = 0; i < self->ncasts;)
        if (s_step (self, &self->casts[i])) {
            free (self->casts[i].ids);
            zim_wr_free (&self->casts[i].frame);
            self->casts[i] = self->casts[--self->ncasts];
        } else
            i++;
}

size_t zim_roomcast_size (zim_roomcast_t *self)
{
    return self->ncasts;
}

//  -------------------------------------------------------------------------
//  Selftest: sessions without sockets.

//  Frames queued to session, then written away.
static size_t s_test_take (zim_session_t *session)
{
    size_t size;
    zim_session_output (session, &size);
    zim_session_writable (session);
    return size;
}

void zim_roomcast_test (bool verbose)
{
    (void)verbose;
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    const char *secret = "cast-secret-cast-secret";
    assert (zim_shell_set (edge->shell, "app_secret", "demo", secret) == 0);
    zim_roomcast_t *self = zim_roomcast_new (edge);
    const char *why;
    assert (zim_roomcast_set_rate (self, "demo", "0", &why) == -1);
    assert (zim_roomcast_set_rate (self, "bad app", "5", &why) == -1);
    assert (zim_roomcast_set_rate (self, "demo", "1", &why) == 0);
    uint64_t now = zim_now_ms () / 1000;
    char *ta = zim_token_sign (secret, "demo", "alice", now + 60);
    char *tb = zim_token_sign (secret, "demo", "bob", now + 60);
    zim_session_t *a = zim_sessions_open (edge->sessions, NULL);
    zim_session_t *b = zim_sessions_open (edge->sessions, NULL);
    assert (zim_frames_auth (edge, a, ta, strlen (ta), NULL) == 0);
    assert (zim_frames_auth (edge, b, tb, strlen (tb), NULL) == 0);
    s_test_take (a);
    s_test_take (b);
    //  One connection a second: one at once, the other at the tick.
    zim_roomcast_start (self, zim_str ("demo"), zim_str ("\x81\xa2op\xa4push"));
    assert (s_test_take (a) + s_test_take (b) == 9 && zim_roomcast_size (self) == 1);
    zim_roomcast_tick (self);
    assert (s_test_take (a) + s_test_take (b) == 9 && zim_roomcast_size (self) == 0);
    assert (edge->broadcasts == 1 && edge->broadcast_deliveries == 2);
    //  At most 16 paced at once.
    for (int i = 0; i < 17; i++)
        zim_roomcast_start (self, zim_str ("demo"), zim_str ("\xc0"));
    assert (zim_roomcast_size (self) == 16 && edge->broadcasts_dropped == 1);
    zim_sessions_close (edge->sessions, &a);
    zim_sessions_close (edge->sessions, &b);
    free (ta);
    free (tb);
    zim_roomcast_destroy (&self);
    zim_edge_destroy (&edge);
}
