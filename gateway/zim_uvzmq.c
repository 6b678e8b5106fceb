/*  zim_uvzmq.c: ZeroMQ sockets on a libuv loop (see zim_uvzmq.h).
 */
#include "gateway/zim_uvzmq.h"
#include "msg/zim_util.h"

#include <assert.h>

//  Rounds of reading in one prepare or check before the loop goes on to
//  its clients (the idle handle brings it back without blocking).
#define S_ROUNDS 8

//  One watched socket.
typedef struct {
    uv_poll_t poll;     //  on its ZMQ_FD; must stay first (handle -> watch)
    zsock_t *sock;      //  the socket (borrowed)
    zim_uvzmq_t *owner; //  the watcher
    bool dirty;         //  ZMQ_EVENTS must be read before the loop blocks
} s_watch_t;

struct _zim_uvzmq_t {
    uv_loop_t *loop;      //  the loop (borrowed)
    zim_uvzmq_fn *fn;     //  the reader
    void *arg;            //  its argument
    uv_prepare_t prepare; //  before the loop blocks: dirty sockets
    uv_check_t check;     //  after it polled: dirty sockets
    uv_idle_t idle;       //  running while input is left: no blocking
    s_watch_t **watches;  //  the sockets
    size_t size;          //  how many
    size_t dirty;         //  how many are dirty (a hint; 0 means none)
    bool closed;          //  zim_uvzmq_close ran
    bool pumping;         //  s_pump is on the stack (the reader kicked)
};

static void s_mark (s_watch_t *w)
{
    if (!w->dirty) {
        w->dirty = true;
        w->owner->dirty++;
    }
}

static void s_on_idle (uv_idle_t *handle)
{
    (void)handle; //  only keeps the loop from blocking; check pumps
}

//  Reads the dirty sockets while they show POLLIN, a few rounds at most;
//  keeps the idle handle running while input is left.
static void s_pump (zim_uvzmq_t *self)
{
    if (self->pumping || self->closed)
        return;
    self->pumping = true;
    for (int round = 0; round < S_ROUNDS && self->dirty && !self->closed; round++) {
        for (size_t i = 0; i < self->size && !self->closed; i++) {
            s_watch_t *w = self->watches[i];
            if (!w->dirty)
                continue;
            w->dirty = false;
            self->dirty--;
            if (zsock_events (w->sock) & ZMQ_POLLIN) {
                self->fn (self->arg, w->sock);
                s_mark (w); //  read a batch: look again
            }
        }
    }
    self->pumping = false;
    if (self->closed)
        return;
    if (self->dirty)
        uv_idle_start (&self->idle, s_on_idle);
    else
        uv_idle_stop (&self->idle);
}

static void s_on_prepare (uv_prepare_t *handle)
{
    s_pump ((zim_uvzmq_t *)handle->data);
}

static void s_on_check (uv_check_t *handle)
{
    s_pump ((zim_uvzmq_t *)handle->data);
}

static void s_on_poll (uv_poll_t *handle, int status, int events)
{
    (void)status;
    (void)events;
    s_watch_t *w = (s_watch_t *)handle;
    s_mark (w); //  read in the check that follows this poll
}

zim_uvzmq_t *zim_uvzmq_new (uv_loop_t *loop, zim_uvzmq_fn *fn, void *arg)
{
    zim_uvzmq_t *self = (zim_uvzmq_t *)zim_calloc (1, sizeof *self);
    self->loop = loop;
    self->fn = fn;
    self->arg = arg;
    uv_prepare_init (loop, &self->prepare);
    uv_check_init (loop, &self->check);
    uv_idle_init (loop, &self->idle);
    self->prepare.data = self->check.data = self->idle.data = self;
    uv_prepare_start (&self->prepare, s_on_prepare);
    uv_check_start (&self->check, s_on_check);
    return self;
}

void zim_uvzmq_destroy (zim_uvzmq_t **self_p)
{
    zim_uvzmq_t *self = *self_p;
    if (!self)
        return;
    assert (self->closed);
    for (size_t i = 0; i < self->size; i++)
        free (self->watches[i]);
    free (self->watches);
    free (self);
    *self_p = NULL;
}

int zim_uvzmq_watch (zim_uvzmq_t *self, zsock_t *sock)
{
    if (self->closed)
        return -1;
    s_watch_t *w = (s_watch_t *)zim_calloc (1, sizeof *w);
    w->sock = sock;
    w->owner = self;
    if (uv_poll_init (self->loop, &w->poll, zsock_fd (sock)) ||
        uv_poll_start (&w->poll, UV_READABLE, s_on_poll)) {
        free (w);
        return -1;
    }
    self->watches = (s_watch_t **)zim_realloc (self->watches, (self->size + 1) * sizeof w);
    self->watches[self->size++] = w;
    s_mark (w); //  it may hold input already
    return 0;
}

void zim_uvzmq_kick (zim_uvzmq_t *self, zsock_t *sock)
{
    for (size_t i = 0; i < self->size; i++)
        if (!sock || self->watches[i]->sock == sock)
            s_mark (self->watches[i]);
}

void zim_uvzmq_close (zim_uvzmq_t *self)
{
    if (self->closed)
        return;
    self->closed = true;
    for (size_t i = 0; i < self->size; i++)
        uv_close ((uv_handle_t *)&self->watches[i]->poll, NULL);
    uv_close ((uv_handle_t *)&self->prepare, NULL);
    uv_close ((uv_handle_t *)&self->check, NULL);
    uv_close ((uv_handle_t *)&self->idle, NULL);
}

//  -------------------------------------------------------------------------
//  Selftest: two PAIR sockets on one loop play ping-pong, each answer sent
//  from inside the reader (the send that can swallow the ZMQ_FD signal);
//  then a burst queued before the loop runs is read in batches of one.

typedef struct {
    zim_uvzmq_t *uz;
    zsock_t *a, *b;
    int count; //  messages read
    int goal;  //  when to stop
    bool echo; //  answer each message on the other side
} s_test_t;

static void s_test_read (void *arg, zsock_t *sock)
{
    s_test_t *t = (s_test_t *)arg;
    char *s = zstr_recv_nowait (sock); //  one message per call: a batch of one
    if (!s)
        return;
    t->count++;
    int n = atoi (s);
    zstr_free (&s);
    if (t->count >= t->goal)
        zim_uvzmq_close (t->uz);
    else if (t->echo) {
        zstr_sendf (sock, "%d", n + 1);
        zim_uvzmq_kick (t->uz, sock);
    }
}

void zim_uvzmq_test (bool verbose)
{
    (void)verbose;
    for (int pass = 0; pass < 2; pass++) {
        uv_loop_t loop;
        assert (uv_loop_init (&loop) == 0);
        s_test_t t = {0};
        char ep[64];
        snprintf (ep, sizeof ep, "@inproc://uvzmq-test-%d", pass);
        t.a = zsock_new_pair (ep);
        snprintf (ep, sizeof ep, ">inproc://uvzmq-test-%d", pass);
        t.b = zsock_new_pair (ep);
        assert (t.a && t.b);
        t.echo = pass == 0;
        t.goal = pass == 0 ? 2000 : 500;
        t.uz = zim_uvzmq_new (&loop, s_test_read, &t);
        assert (zim_uvzmq_watch (t.uz, t.a) == 0 && zim_uvzmq_watch (t.uz, t.b) == 0);
        if (pass == 0)
            zstr_send (t.a, "0");
        else
            for (int i = 0; i < t.goal; i++)
                zstr_sendf (t.a, "%d", i);
        //  Returns once every handle closed: the goal was reached (a hang
        //  here is the failure this class exists to prevent).
        assert (uv_run (&loop, UV_RUN_DEFAULT) == 0);
        assert (t.count == t.goal);
        assert (uv_loop_close (&loop) == 0);
        zim_uvzmq_destroy (&t.uz);
        assert (t.uz == NULL);
        zsock_destroy (&t.a);
        zsock_destroy (&t.b);
    }
}
