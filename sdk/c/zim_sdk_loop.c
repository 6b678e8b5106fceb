/*  zim_sdk_loop.c: the C SDK's event loop. One zim_loop_t is one lws
    context with no listener; its connections (zim_sdk_conn) are client
    wsis. Timers are lws sorted-usec timers that the loop keeps a list of,
    so that zim_loop_destroy can cancel them all before the context goes.

    Memory is never freed inside an lws callback: a connection destroyed
    while the loop is servicing is reaped by zim_loop_run once lws has let go
    of its wsi, and other memory (a client) waits on the graveyard until
    zim_loop_run returns.
*/
#include "config.h"
#include "sdk/c/zim_sdk_loop.h"
#include "sdk/c/zim_sdk_conn.h"
#include "msg/zim_util.h"

#include <stdlib.h>
#include <string.h>

struct _zim_loop_t {
    struct lws_context *ctx;     //  the lws context (client only)
    lws_sorted_usec_list_t wake; //  bounds one zim_loop_run wait
    lws_dll2_owner_t timers;     //  every timer made on this loop
    lws_dll2_owner_t conns;      //  every connection made on this loop
    lws_dll2_owner_t graveyard;  //  memory to free when not busy
    int depth;                   //  > 0 while lws_service runs
    bool destroying;             //  inside zim_loop_destroy: no timers, no callbacks
    uint64_t events;             //  events handled so far (ends a zim_loop_run)
    struct s_ca *cas;            //  client vhosts with their own CA file
};

//  A client vhost trusting the CAs of one file (zim_sdk_loop_vhost).
typedef struct s_ca {
    struct s_ca *next;
    char *file;              //  the PEM file
    char name[32];           //  the vhost's name (lws keeps the pointer)
    struct lws_vhost *vhost; //  freed with the context
} s_ca_t;

//  Memory waiting to be freed.
typedef struct {
    lws_dll2_t member;   //  in the graveyard
    void (*fn) (void *); //  frees it
    void *ptr;           //  the memory
} s_grave_t;

//  ---------------------------------------------------------------------
//  Timers.

static void s_wake (lws_sorted_usec_list_t *sul);

//  lws runs a timer: unarm it, count the event, call its owner. lws runs
//  timers before it polls, and would then poll until the next timer: the
//  wake timer, due now, makes that poll return at once, and zim_loop_run
//  with it.
static void s_timer_run (lws_sorted_usec_list_t *sul)
{
    zim_sdk_timer_t *self = lws_container_of (sul, zim_sdk_timer_t, sul);
    zim_loop_t *loop = self->loop;
    self->armed = false;
    if (loop) {
        loop->events++;
        if (loop->depth > 0)
            lws_sul_schedule (loop->ctx, 0, &loop->wake, s_wake, 0);
    }
    self->fn (self->arg);
}

void zim_sdk_timer_init (zim_sdk_timer_t *self, zim_loop_t *loop, zim_sdk_timer_fn *fn, void *arg)
{
    memset (self, 0, sizeof *self);
    self->fn = fn;
    self->arg = arg;
    if (loop && !loop->destroying) {
        self->loop = loop;
        lws_dll2_add_tail (&self->member, &loop->timers);
    }
}

void zim_sdk_timer_fini (zim_sdk_timer_t *self)
{
    zim_sdk_timer_stop (self);
    if (self->loop)
        lws_dll2_remove (&self->member);
    self->loop = NULL;
}

void zim_sdk_timer_start (zim_sdk_timer_t *self, uint64_t us)
{
    if (!self->loop || self->loop->destroying)
        return;
    self->armed = true;
    self->due_us = zim_mono_us () + us;
    lws_sul_schedule (self->loop->ctx, 0, &self->sul, s_timer_run, (lws_usec_t)us);
}

void zim_sdk_timer_start_by (zim_sdk_timer_t *self, uint64_t us)
{
    if (!self->armed || zim_mono_us () + us < self->due_us)
        zim_sdk_timer_start (self, us);
}

void zim_sdk_timer_stop (zim_sdk_timer_t *self)
{
    if (!self->armed)
        return;
    self->armed = false;
    if (self->loop)
        lws_sul_cancel (&self->sul);
}

bool zim_sdk_timer_armed (const zim_sdk_timer_t *self)
{
    return self->armed;
}

//  ---------------------------------------------------------------------
//  The loop.

struct lws_vhost *zim_sdk_loop_vhost (zim_loop_t *self, const char *ca_file)
{
    size_t n = 0;
    for (s_ca_t *ca = self->cas; ca; ca = ca->next, n++)
        if (strcmp (ca->file, ca_file) == 0)
            return ca->vhost;
    s_ca_t *ca = zim_calloc (1, sizeof *ca);
    snprintf (ca->name, sizeof ca->name, "zim-ca-%zu", n);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = zim_sdk_conn_protocols ();
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = ca_file;
    info.vhost_name = ca->name;
    ca->vhost = lws_create_vhost (self->ctx, &info);
    if (!ca->vhost) {
        free (ca);
        return NULL;
    }
    ca->file = zim_strdup (ca_file);
    ca->next = self->cas;
    self->cas = ca;
    return ca->vhost;
}

struct lws_context *zim_sdk_loop_context (zim_loop_t *self)
{
    return self->ctx;
}

void zim_sdk_loop_event (zim_loop_t *self)
{
    self->events++;
}

bool zim_sdk_loop_busy (zim_loop_t *self)
{
    return self->depth > 0;
}

bool zim_sdk_loop_destroying (zim_loop_t *self)
{
    return self->destroying;
}

void zim_sdk_loop_defer (zim_loop_t *self, void (*fn) (void *), void *ptr)
{
    if (!self || self->depth == 0) {
        fn (ptr);
        return;
    }
    s_grave_t *g = zim_calloc (1, sizeof *g);
    g->fn = fn;
    g->ptr = ptr;
    lws_dll2_add_tail (&g->member, &self->graveyard);
}

void zim_sdk_loop_add_conn (zim_loop_t *self, lws_dll2_t *member)
{
    lws_dll2_add_tail (member, &self->conns);
}

//  Frees what waited on the graveyard, and the dead connections that lws
//  has let go of.
static void s_reap (zim_loop_t *self)
{
    while (self->graveyard.head) {
        s_grave_t *g = lws_container_of (self->graveyard.head, s_grave_t, member);
        lws_dll2_remove (&g->member);
        g->fn (g->ptr);
        free (g);
    }
    lws_start_foreach_dll_safe (struct lws_dll2 *, d, next, self->conns.head)
    {
        zim_sdk_conn_reap (d);
    }
    lws_end_foreach_dll_safe (d, next);
}

//  The wake timer bounds a wait; if it runs before the wait (its time had
//  already come), it re-arms itself 1 ms later so the wait stays short.
static void s_wake (lws_sorted_usec_list_t *sul)
{
    zim_loop_t *self = lws_container_of (sul, zim_loop_t, wake);
    lws_sul_schedule (self->ctx, 0, &self->wake, s_wake, 1000);
}

zim_loop_t *zim_loop_new (void)
{
    //  lws logs notices to stderr by default; a library keeps quiet unless
    //  something is wrong. ZIM_LWS_LOG=N sets the lws log mask.
    const char *env = getenv ("ZIM_LWS_LOG");
    lws_set_log_level (env ? atoi (env) : LLL_ERR, NULL);

    zim_loop_t *self = zim_calloc (1, sizeof *self);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = zim_sdk_conn_protocols ();
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.pt_serv_buf_size = 65536;
    self->ctx = lws_create_context (&info);
    if (!self->ctx) {
        free (self);
        return NULL;
    }
    return self;
}

int zim_loop_run (zim_loop_t *self, int timeout_ms)
{
    //  lws_service returns after one poll round, which may end early (a
    //  timer less than 1 ms away makes poll wait 0 ms): keep servicing until
    //  something of ours happened or the time is up.
    int rc = 0;
    uint64_t events = self->events;
    uint64_t deadline = zim_mono_us () + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
    self->depth++;
    if (timeout_ms == 0) {
        rc = lws_service (self->ctx, -1);
        lws_sul_cancel (&self->wake);
    } else
        do {
            if (timeout_ms > 0) {
                uint64_t now = zim_mono_us ();
                if (now >= deadline)
                    break;
                lws_sul_schedule (self->ctx, 0, &self->wake, s_wake, (lws_usec_t)(deadline - now));
            }
            rc = lws_service (self->ctx, 0);
            lws_sul_cancel (&self->wake);
        } while (rc >= 0 && self->events == events);
    self->depth--;
    if (self->depth == 0)
        s_reap (self);
    return rc < 0 ? -1 : 0;
}

void zim_loop_destroy (zim_loop_t **self_p)
{
    zim_loop_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    //  no timer may outlive the context: stop them all and forget the loop
    while (self->timers.head) {
        zim_sdk_timer_t *t = lws_container_of (self->timers.head, zim_sdk_timer_t, member);
        zim_sdk_timer_fini (t);
    }
    self->destroying = true;
    //  closes every wsi: their callbacks end each connection, silently
    self->depth++;
    lws_context_destroy (self->ctx);
    while (self->cas) {
        s_ca_t *ca = self->cas;
        self->cas = ca->next;
        free (ca->file);
        free (ca);
    }
    self->depth--;
    lws_start_foreach_dll_safe (struct lws_dll2 *, d, next, self->conns.head)
    {
        lws_dll2_remove (d);
        zim_sdk_conn_detach (d);
    }
    lws_end_foreach_dll_safe (d, next);
    s_reap (self);
    free (self);
}

//  ---------------------------------------------------------------------
//  Selftest.

#include <assert.h>

//  Counts runs of a timer.
static void s_t_count (void *arg)
{
    (*(int *)arg)++;
}

//  A timer's owner that frees itself from inside its callback.
typedef struct {
    zim_sdk_timer_t timer; //  its timer
    zim_loop_t *loop;      //  the loop
    int *runs;             //  counts the run
} s_t_owner_t;

static void s_t_owner_free (void *arg)
{
    s_t_owner_t *self = arg;
    zim_sdk_timer_fini (&self->timer);
    free (self);
}

static void s_t_owner_run (void *arg)
{
    s_t_owner_t *self = arg;
    (*self->runs)++;
    zim_sdk_loop_defer (self->loop, s_t_owner_free, self);
}

void zim_sdk_loop_test (bool verbose)
{
    (void)verbose;
    zim_loop_t *loop = zim_loop_new ();
    assert (loop);

    //  The loop waits about as long as asked, with nothing to do (the
    //  first round may return early: lws finishes starting up).
    zim_loop_run (loop, 0);
    zim_loop_run (loop, 10);
    uint64_t t0 = zim_mono_us ();
    assert (zim_loop_run (loop, 50) == 0);
    uint64_t took = zim_mono_us () - t0;
    assert (took >= 40000 && took < 1000000);
    t0 = zim_mono_us ();
    assert (zim_loop_run (loop, 0) == 0);
    assert (zim_mono_us () - t0 < 100000);

    //  A timer runs once, ends the wait early, and can be re-armed or
    //  stopped; start_by keeps the sooner deadline.
    int runs = 0, other = 0;
    zim_sdk_timer_t t, u;
    zim_sdk_timer_init (&t, loop, s_t_count, &runs);
    zim_sdk_timer_init (&u, loop, s_t_count, &other);
    zim_sdk_timer_start (&t, 1000);
    assert (zim_sdk_timer_armed (&t));
    t0 = zim_mono_us ();
    for (int i = 0; i < 100 && runs == 0; i++)
        zim_loop_run (loop, 500);
    assert (runs == 1 && !zim_sdk_timer_armed (&t) && zim_mono_us () - t0 < 500000);
    zim_sdk_timer_start (&t, 1000);
    zim_sdk_timer_stop (&t);
    zim_sdk_timer_start (&u, 5000000);
    zim_sdk_timer_start_by (&u, 1000);    //  sooner: taken
    zim_sdk_timer_start_by (&u, 9000000); //  later: ignored
    for (int i = 0; i < 100 && other == 0; i++)
        zim_loop_run (loop, 500);
    assert (runs == 1 && other == 1);

    //  Memory deferred inside a callback is freed once the loop is not busy
    //  (LSan would see it leak), outside one at once.
    s_t_owner_t *owner = zim_calloc (1, sizeof *owner);
    owner->loop = loop;
    owner->runs = &runs;
    zim_sdk_timer_init (&owner->timer, loop, s_t_owner_run, owner);
    zim_sdk_timer_start (&owner->timer, 0);
    for (int i = 0; i < 100 && runs == 1; i++)
        zim_loop_run (loop, 500);
    assert (runs == 2);
    zim_sdk_loop_defer (loop, free, zim_malloc (10));
    zim_sdk_loop_defer (NULL, free, zim_malloc (10));

    //  Destroying the loop stops what is armed; the timers are left inert.
    zim_sdk_timer_start (&t, 1000);
    zim_loop_destroy (&loop);
    assert (loop == NULL && !zim_sdk_timer_armed (&t));
    zim_sdk_timer_start (&t, 1000);
    assert (!zim_sdk_timer_armed (&t));
    zim_sdk_timer_fini (&t);
    zim_sdk_timer_fini (&u);
}
