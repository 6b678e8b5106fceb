/*  zim_listener.c: a shared listening socket on libuv (see zim_listener.h).
 */
#include "gateway/zim_listener.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

//  Accepts per readable event at most, so clients are served between.
#define S_ACCEPTS 256
//  The listen backlog (the kernel caps it at net.core.somaxconn).
#define S_BACKLOG 4096

struct _zim_listener_t {
    uv_poll_t poll;       //  on the listening socket; first (handle -> self)
    int fd;               //  the listening socket
    int port;             //  the port bound
    zim_listener_fn *fn;  //  gets each accepted socket
    void *arg;            //  its argument
    bool closed;          //  zim_listener_close ran
};

static void s_on_readable (uv_poll_t *handle, int status, int events)
{
    (void)events;
    zim_listener_t *self = (zim_listener_t *)handle;
    if (status < 0 || self->closed)
        return;
    for (int i = 0; i < S_ACCEPTS; i++) {
        int fd = accept4 (self->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break; //  EAGAIN, or out of descriptors: the next event retries
        self->fn (self->arg, fd);
    }
}

zim_listener_t *zim_listener_new (uv_loop_t *loop, const char *iface, int port,
                                  zim_listener_fn *fn, void *arg)
{
    return zim_listener_bind (loop, iface, port, true, fn, arg);
}

zim_listener_t *zim_listener_bind (uv_loop_t *loop, const char *iface, int port, bool reuse_port,
                                   zim_listener_fn *fn, void *arg)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    if (iface && *iface && strcmp (iface, "*") != 0 &&
        inet_pton (AF_INET, iface, &sa.sin_addr) != 1)
        return NULL;
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port)
        setsockopt (fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t len = sizeof sa;
    if (bind (fd, (struct sockaddr *)&sa, sizeof sa) || listen (fd, S_BACKLOG) ||
        getsockname (fd, (struct sockaddr *)&sa, &len)) {
        close (fd);
        return NULL;
    }
    zim_listener_t *self = (zim_listener_t *)zim_calloc (1, sizeof *self);
    self->fd = fd;
    self->port = ntohs (sa.sin_port);
    self->fn = fn;
    self->arg = arg;
    if (uv_poll_init (loop, &self->poll, fd) || uv_poll_start (&self->poll, UV_READABLE, s_on_readable)) {
        close (fd);
        free (self);
        return NULL;
    }
    return self;
}

void zim_listener_destroy (zim_listener_t **self_p)
{
    zim_listener_t *self = *self_p;
    if (!self)
        return;
    assert (self->closed);
    free (self);
    *self_p = NULL;
}

int zim_listener_port (zim_listener_t *self)
{
    return self->port;
}

void zim_listener_close (zim_listener_t *self)
{
    if (self->closed)
        return;
    self->closed = true;
    uv_close ((uv_handle_t *)&self->poll, NULL);
    close (self->fd);
}

//  -------------------------------------------------------------------------
//  Selftest: two listeners share one port; a connection is accepted.

static void s_test_accept (void *arg, int fd)
{
    (*(int *)arg)++;
    close (fd);
}

static void s_test_timer (uv_timer_t *timer)
{
    int *accepted = (int *)timer->data;
    if (*accepted > 0)
        uv_stop (timer->loop);
}

void zim_listener_test (bool verbose)
{
    (void)verbose;
    uv_loop_t loop;
    assert (uv_loop_init (&loop) == 0);
    int accepted = 0;
    zim_listener_t *a = zim_listener_new (&loop, "127.0.0.1", 0, s_test_accept, &accepted);
    assert (a);
    zim_listener_t *b =
        zim_listener_new (&loop, "127.0.0.1", zim_listener_port (a), s_test_accept, &accepted);
    assert (b && zim_listener_port (b) == zim_listener_port (a));
    assert (zim_listener_new (&loop, "not an address", 0, s_test_accept, &accepted) == NULL);
    //  Without reuse_port the port is not shared.
    assert (zim_listener_bind (&loop, "127.0.0.1", zim_listener_port (a), false, s_test_accept,
                               &accepted) == NULL);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)zim_listener_port (a))};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    uv_timer_t timer;
    uv_timer_init (&loop, &timer);
    timer.data = &accepted;
    uv_timer_start (&timer, s_test_timer, 10, 10);
    uv_run (&loop, UV_RUN_DEFAULT); //  until accepted (a hang is the failure)
    assert (accepted == 1);
    close (fd);
    uv_close ((uv_handle_t *)&timer, NULL);
    zim_listener_close (a);
    zim_listener_close (b);
    uv_run (&loop, UV_RUN_DEFAULT);
    assert (uv_loop_close (&loop) == 0);
    zim_listener_destroy (&a);
    zim_listener_destroy (&b);
}
