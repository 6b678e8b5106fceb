/*  zim_tcp.c: raw TCP clients of the gateway (see zim_tcp.h): the
    listener, each connection's socket on the loop, the length framing in
    both directions, and the transport its session writes through.
*/
#include "gateway/zim_tcp.h"
#include "gateway/zim_frames.h"
#include "gateway/zim_listener.h"
#include "gateway/zim_sessions.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

//  Bytes one read() takes; reads per readable event (then other
//  connections get their turn).
#define S_RBUF 16384
#define S_READS 4
//  Frames gathered into one writev (two iovecs each: length, frame).
#define S_IOV 64
//  A closing connection sends what is left and a FIN, then reads (and
//  drops) until the peer's FIN, at most this long: closing with unread
//  input would send a RST that can destroy the error frame in flight.
#define S_LINGER_MS 2000

typedef struct s_conn s_conn_t;
struct s_conn {
    uv_poll_t poll;         //  on fd; first (handle -> conn)
    zim_tcp_t *tcp;         //  our listener
    int fd;                 //  the socket
    zim_session_t *session; //  NULL once it ended
    s_conn_t *prev, *next;  //  in tcp->conns, or in tcp->lingering once closing
    s_conn_t *next_flush;   //  in tcp->flush
    uint8_t hdr[4];         //  the length of the packet coming in
    uint32_t hdr_got;       //  bytes of hdr so far (4: in a payload)
    uint32_t body_left;     //  payload bytes of that packet still to come
    uint8_t *tx;            //  framed bytes the socket did not take yet
    size_t tx_off;          //  sent of them
    size_t tx_len;          //  bytes in tx
    size_t tx_cap;          //  allocated
    int events;             //  UV_READABLE, UV_WRITABLE watched
    bool queued;            //  in tcp->flush
    bool serving;           //  in s_conn_serve: a write request means "again"
    bool again;             //  the session asked to write while serving
    bool broken;            //  the socket failed: no more writing
    bool closing;           //  the session ended: sending what is left, then FIN
    bool shut;              //  FIN sent
    bool freed;             //  its handle is closing
    int64_t linger_ms;      //  closing: freed at this time at the latest
};

struct _zim_tcp_t {
    zim_edge_t *edge;         //  settings, counters, sessions
    uv_loop_t *loop;          //  the gateway's loop
    zim_listener_t *listener; //  the listening socket
    uv_idle_t idle;           //  runs while connections wait to be flushed
    uv_timer_t timer;         //  frees lingering connections past their time
    s_conn_t *conns;          //  connections with a session
    s_conn_t *lingering;      //  connections closing
    s_conn_t *flush;          //  connections to serve at the next turn
    zim_tcp_kick_fn *kick;    //  after input
    void *arg;                //  its argument
    bool closed;              //  zim_tcp_close ran
    uint8_t rbuf[S_RBUF];     //  what read() returns
};

static void s_conn_serve (s_conn_t *c);
static void s_on_idle (uv_idle_t *handle);

//  ---------------------------------------------------------------------
//  Lists

static void s_list_add (s_conn_t **head, s_conn_t *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void s_list_remove (s_conn_t **head, s_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

//  ---------------------------------------------------------------------
//  A connection's socket

static void s_on_poll (uv_poll_t *handle, int status, int events);

static void s_conn_watch (s_conn_t *c, int events)
{
    if (c->events != events && !c->freed) {
        uv_poll_start (&c->poll, events, s_on_poll);
        c->events = events;
    }
}

static void s_conn_free_cb (uv_handle_t *handle)
{
    s_conn_t *c = (s_conn_t *)handle;
    free (c->tx);
    free (c);
}

//  Closes the socket; the memory goes once libuv let go of the handle.
//  The session must have ended.
static void s_conn_free (s_conn_t *c)
{
    zim_tcp_t *t = c->tcp;
    assert (!c->session);
    if (c->freed)
        return;
    c->freed = true;
    s_list_remove (c->closing ? &t->lingering : &t->conns, c);
    if (c->queued) //  rare: a connection that failed with a flush due
        for (s_conn_t **p = &t->flush; *p; p = &(*p)->next_flush)
            if (*p == c) {
                *p = c->next_flush;
                break;
            }
    uv_close ((uv_handle_t *)&c->poll, s_conn_free_cb);
    close (c->fd);
}

static void s_on_timer (uv_timer_t *handle)
{
    zim_tcp_t *t = (zim_tcp_t *)handle->data;
    int64_t now = zim_edge_now_ms ();
    s_conn_t *next;
    for (s_conn_t *c = t->lingering; c; c = next) {
        next = c->next;
        if (now >= c->linger_ms)
            s_conn_free (c);
    }
    if (!t->lingering)
        uv_timer_stop (handle);
}

//  The session is over: closing says whether what is queued still goes
//  out (then a FIN, then linger), or the socket is simply closed.
static void s_conn_end (s_conn_t *c, bool graceful)
{
    zim_tcp_t *t = c->tcp;
    if (c->session) {
        zim_sessions_close (t->edge->sessions, &c->session); //  PRESENCE down
        if (t->kick)
            t->kick (t->arg);
    }
    if (!graceful || c->broken || t->closed) {
        s_conn_free (c);
        return;
    }
    if (c->closing)
        return;
    s_list_remove (&t->conns, c);
    c->closing = true;
    s_list_add (&t->lingering, c);
    c->linger_ms = zim_edge_now_ms () + S_LINGER_MS;
    if (!uv_is_active ((uv_handle_t *)&t->timer))
        uv_timer_start (&t->timer, s_on_timer, S_LINGER_MS / 4, S_LINGER_MS / 4);
}

//  Appends bytes to tx, compacting it first.
static void s_tx_put (s_conn_t *c, const void *data, size_t size)
{
    if (c->tx_off) {
        memmove (c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
    }
    if (c->tx_len + size > c->tx_cap) {
        size_t cap = c->tx_cap ? c->tx_cap : 4096;
        while (cap < c->tx_len + size)
            cap *= 2;
        c->tx = (uint8_t *)zim_realloc (c->tx, cap);
        c->tx_cap = cap;
    }
    memcpy (c->tx + c->tx_len, data, size);
    c->tx_len += size;
}

//  Sends what waits in tx. Returns 0 (all of it sent or the socket is
//  full) or -1 (the socket failed).
static int s_tx_send (s_conn_t *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t n = send (c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            c->broken = true;
            return -1;
        }
        c->tx_off += (size_t)n;
    }
    c->tx_off = c->tx_len = 0;
    if (c->tx_cap > 65536) { //  give back what a burst needed
        zim_free (&c->tx);
        c->tx_cap = 0;
    }
    return 0;
}

static void s_be32 (uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

//  The session's transport: want_write. The next loop turn serves it.
static void s_io_want_write (void *arg)
{
    s_conn_t *c = (s_conn_t *)arg;
    zim_tcp_t *t = c->tcp;
    if (c->serving) {
        c->again = true;
        return;
    }
    if (c->queued || c->freed)
        return;
    c->queued = true;
    c->next_flush = t->flush;
    t->flush = c;
    if (!uv_is_active ((uv_handle_t *)&t->idle))
        uv_idle_start (&t->idle, s_on_idle);
}

//  The session's transport: write. Each frame goes after its length, as
//  many as fit in one writev; what the socket does not take waits in tx.
static int s_io_write (void *arg, const uint8_t *data, size_t size)
{
    s_conn_t *c = (s_conn_t *)arg;
    struct iovec iov[2 * S_IOV];
    uint8_t lens[S_IOV][4];
    zim_rd_t rd;
    zim_rd_init (&rd, data, size);
    bool stuck = c->tx_len > c->tx_off; //  then everything goes to tx
    while (zim_rd_left (&rd) > 0) {
        int n = 0;
        size_t total = 0;
        while (n < S_IOV && zim_rd_left (&rd) > 0) {
            const uint8_t *start = rd.pos;
            size_t len = zim_rd_left (&rd);
            if (zim_rd_skip (&rd, NULL) == 0)
                len = (size_t)(rd.pos - start);
            else //  not msgpack (we encode every frame): the rest as one
                zim_rd_init (&rd, start + len, 0);
            s_be32 (lens[n], (uint32_t)len);
            iov[2 * n] = (struct iovec){lens[n], 4};
            iov[2 * n + 1] = (struct iovec){(void *)start, len};
            total += 4 + len;
            n++;
        }
        ssize_t sent = 0;
        if (!stuck) {
            sent = writev (c->fd, iov, 2 * n);
            while (sent < 0 && errno == EINTR)
                sent = writev (c->fd, iov, 2 * n);
            if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                c->broken = true;
                return -1;
            }
            if (sent < 0)
                sent = 0;
        }
        if ((size_t)sent < total) {
            //  Keep the rest of this batch, from the byte the socket
            //  stopped at, and everything after it.
            size_t skip = (size_t)sent;
            for (int i = 0; i < 2 * n; i++) {
                if (skip >= iov[i].iov_len) {
                    skip -= iov[i].iov_len;
                    continue;
                }
                s_tx_put (c, (uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip);
                skip = 0;
            }
            stuck = true;
        }
    }
    if (stuck)
        s_conn_watch (c, UV_READABLE | UV_WRITABLE);
    return 0;
}

static const zim_session_io_t s_io = {s_io_want_write, s_io_write};

//  Writes what the session has, as long as the socket takes it; once the
//  session ended, sends the FIN after the last byte.
static void s_conn_serve (s_conn_t *c)
{
    c->serving = true;
    for (int i = 0; i < 8 && !c->freed; i++) {
        if (c->tx_len > c->tx_off) {
            if (c->events & UV_WRITABLE)
                break; //  the writable event comes back here
            if (s_tx_send (c)) {
                s_conn_end (c, false);
                break;
            }
            if (c->tx_len > c->tx_off) {
                s_conn_watch (c, UV_READABLE | UV_WRITABLE);
                break;
            }
        }
        if (!c->session) { //  closing, and all of it sent
            if (!c->shut) {
                shutdown (c->fd, SHUT_WR);
                c->shut = true;
            }
            break;
        }
        c->again = false;
        if (zim_session_writable (c->session) < 0) {
            s_conn_end (c, true);
            continue; //  the FIN, once tx is empty
        }
        if (!c->again)
            break;
    }
    c->serving = false;
}

static void s_on_idle (uv_idle_t *handle)
{
    zim_tcp_t *t = (zim_tcp_t *)handle->data;
    s_conn_t *list = t->flush;
    t->flush = NULL;
    while (list) {
        s_conn_t *c = list;
        list = c->next_flush;
        c->queued = false;
        s_conn_serve (c);
    }
    if (!t->flush)
        uv_idle_stop (handle);
    if (t->kick)
        t->kick (t->arg);
}

//  Takes in bytes of the stream: lengths and payloads; each complete
//  payload goes to zim_frames as one message.
static void s_conn_parse (s_conn_t *c, const uint8_t *p, size_t len)
{
    zim_edge_t *edge = c->tcp->edge;
    zim_session_t *session = c->session;
    zim_sessions_touch (edge->sessions, session);
    while (len > 0 && c->session && !zim_session_closing (session)) {
        if (c->hdr_got < 4) {
            size_t take = 4 - c->hdr_got < len ? 4 - c->hdr_got : len;
            memcpy (c->hdr + c->hdr_got, p, take);
            c->hdr_got += (uint32_t)take;
            p += take;
            len -= take;
            if (c->hdr_got < 4)
                break;
            uint32_t size = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
                            (uint32_t)c->hdr[2] << 8 | c->hdr[3];
            if (size > edge->max_frame) {
                //  The stream cannot be followed past a length not taken.
                edge->too_large++;
                zim_shell_warn (edge->shell,
                                "connection %" PRIu64 " (%s, tcp): length %" PRIu32
                                " over max_frame (%" PRIu64 " bytes): closed",
                                zim_session_id (session),
                                zim_session_authed (session) ? zim_session_uid (session)
                                                             : "unauthenticated",
                                size, edge->max_frame);
                zim_session_fail (session, ZIM_ERR_TOO_LARGE, "message too large",
                                  ZIM_ERR_TOO_LARGE);
                break;
            }
            c->body_left = size;
            if (size > 0)
                continue;
            //  An empty packet: input, nothing to answer (a heartbeat).
            c->hdr_got = 0;
            continue;
        }
        size_t take = c->body_left < len ? c->body_left : len;
        bool final = take == c->body_left;
        const uint8_t *msg;
        size_t size;
        int rc = zim_session_receive (session, p, take, final, &msg, &size);
        p += take;
        len -= take;
        c->body_left -= (uint32_t)take;
        if (final)
            c->hdr_got = 0;
        if (rc == 1)
            zim_frames_message (edge, session, msg, size, true);
    }
}

static void s_conn_read (s_conn_t *c)
{
    zim_tcp_t *t = c->tcp;
    for (int i = 0; i < S_READS && !c->freed; i++) {
        ssize_t n = recv (c->fd, t->rbuf, sizeof t->rbuf, 0);
        if (n > 0) {
            if (c->session)
                s_conn_parse (c, t->rbuf, (size_t)n);
            //  closing: dropped until the peer's FIN
            if ((size_t)n < sizeof t->rbuf)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        //  The peer closed or the socket failed (a keepalive timeout
        //  included): nothing more can be said.
        if (c->session)
            s_conn_end (c, false);
        else
            s_conn_free (c);
        return;
    }
    if (!c->freed && c->session && t->kick)
        t->kick (t->arg);
}

static void s_on_poll (uv_poll_t *handle, int status, int events)
{
    s_conn_t *c = (s_conn_t *)handle;
    if (status < 0) {
        if (c->session)
            s_conn_end (c, false);
        else
            s_conn_free (c);
        return;
    }
    if (events & UV_WRITABLE) {
        s_conn_watch (c, UV_READABLE);
        s_conn_serve (c);
    }
    if (!c->freed && (events & UV_READABLE))
        s_conn_read (c);
}

//  ---------------------------------------------------------------------
//  The listener

static void s_on_accept (void *arg, int fd)
{
    zim_tcp_t *t = (zim_tcp_t *)arg;
    zim_edge_t *edge = t->edge;
    if (t->closed) {
        close (fd);
        return;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (edge->ping_interval_s) {
        //  The heartbeat: the kernel probes an idle connection every
        //  ping_interval and drops it after two unanswered probes; data
        //  not acknowledged for two intervals and 10 s drops it too (as
        //  unanswered WebSocket PINGs do).
        int secs = (int)edge->ping_interval_s, count = 2;
        unsigned int user_ms = (unsigned int)(2 * edge->ping_interval_s * 1000 + 10000);
        setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
        setsockopt (fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs);
        setsockopt (fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
        setsockopt (fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof user_ms);
    }
    s_conn_t *c = (s_conn_t *)zim_calloc (1, sizeof *c);
    c->tcp = t;
    c->fd = fd;
    if (uv_poll_init (t->loop, &c->poll, fd)) {
        zim_shell_warn (edge->shell, "raw TCP: cannot watch an accepted connection: closed");
        close (fd);
        free (c);
        return;
    }
    s_list_add (&t->conns, c);
    s_conn_watch (c, UV_READABLE);
    c->session = zim_sessions_open_io (edge->sessions, &s_io, c);
}

zim_tcp_t *zim_tcp_new (zim_edge_t *edge, uv_loop_t *loop, const char *iface, int port,
                        bool reuse_port, zim_tcp_kick_fn *kick, void *arg)
{
    zim_tcp_t *self = (zim_tcp_t *)zim_calloc (1, sizeof *self);
    self->listener = zim_listener_bind (loop, iface, port, reuse_port, s_on_accept, self);
    if (!self->listener) {
        free (self);
        return NULL;
    }
    self->edge = edge;
    self->loop = loop;
    self->kick = kick;
    self->arg = arg;
    uv_idle_init (loop, &self->idle);
    self->idle.data = self;
    uv_timer_init (loop, &self->timer);
    self->timer.data = self;
    return self;
}

void zim_tcp_destroy (zim_tcp_t **self_p)
{
    zim_tcp_t *self = *self_p;
    if (!self)
        return;
    assert (self->closed);
    zim_listener_destroy (&self->listener);
    free (self);
    *self_p = NULL;
}

int zim_tcp_port (zim_tcp_t *self)
{
    return zim_listener_port (self->listener);
}

void zim_tcp_stop_accepting (zim_tcp_t *self)
{
    zim_listener_close (self->listener);
}

void zim_tcp_close (zim_tcp_t *self)
{
    if (self->closed)
        return;
    self->closed = true;
    zim_listener_close (self->listener);
    uv_idle_stop (&self->idle);
    uv_close ((uv_handle_t *)&self->idle, NULL);
    uv_timer_stop (&self->timer);
    uv_close ((uv_handle_t *)&self->timer, NULL);
    while (self->conns) {
        s_conn_t *c = self->conns;
        if (c->session)
            zim_sessions_close (self->edge->sessions, &c->session);
        s_conn_free (c);
    }
    while (self->lingering)
        s_conn_free (self->lingering);
}

//  -------------------------------------------------------------------------
//  Selftest: a listener on a loop of its own and blocking client sockets
//  in the same thread; the loop runs between the client's steps.

#include <arpa/inet.h>
#include <poll.h>

static int s_test_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert (fd >= 0 && connect (fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

//  Runs the loop until fd can be read (a hang is the failure: 10 s).
static void s_test_turns (uv_loop_t *loop, int fd)
{
    int64_t until = zim_edge_now_ms () + 10000;
    while (zim_edge_now_ms () < until) {
        uv_run (loop, UV_RUN_NOWAIT);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll (&p, 1, 5) > 0)
            return;
    }
    assert (!"no answer from the gateway");
}

//  Sends a packet: the length, then the payload.
static void s_test_send (int fd, const void *data, uint32_t size)
{
    uint8_t len[4];
    s_be32 (len, size);
    assert (send (fd, len, 4, 0) == 4);
    assert (size == 0 || send (fd, data, size, 0) == (ssize_t)size);
}

//  Reads exactly size bytes, running the loop while they come. Returns
//  0, or -1 if the server closed first.
static int s_test_read (uv_loop_t *loop, int fd, void *buf, size_t size)
{
    size_t got = 0;
    while (got < size) {
        s_test_turns (loop, fd);
        ssize_t n = recv (fd, (uint8_t *)buf + got, size - got, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

//  Receives a packet and decodes its one frame: op and code. Returns the
//  op (caller owns it), or NULL if the server closed instead; a payload of
//  other than one map fails the test.
static char *s_test_recv (uv_loop_t *loop, int fd, int64_t *code)
{
    uint8_t len[4], buf[512];
    if (s_test_read (loop, fd, len, 4))
        return NULL;
    uint32_t size =
        (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 | (uint32_t)len[2] << 8 | len[3];
    assert (size <= sizeof buf && s_test_read (loop, fd, buf, size) == 0);
    zim_rd_t rd;
    zim_rd_init (&rd, buf, size);
    char *op = NULL;
    uint32_t n;
    assert (zim_rd_map (&rd, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        zim_str_t key, val;
        assert (zim_rd_str (&rd, &key) == 0);
        if (zim_str_eq (key, "op") && zim_rd_str (&rd, &val) == 0)
            op = zim_str_dup (val);
        else if (zim_str_eq (key, "code") && code)
            assert (zim_rd_int (&rd, code) == 0);
        else
            assert (zim_rd_skip (&rd, NULL) == 0);
    }
    assert (zim_rd_left (&rd) == 0 && op); //  exactly one frame
    return op;
}

static void s_test_expect (uv_loop_t *loop, int fd, const char *op, int64_t code)
{
    int64_t got = 0;
    char *actual = s_test_recv (loop, fd, &got);
    assert (actual && streq (actual, op) && (!code || got == code));
    free (actual);
}

void zim_tcp_test (bool verbose)
{
    (void)verbose;
    uv_loop_t loop;
    assert (uv_loop_init (&loop) == 0);
    zim_edge_t *edge = zim_edge_new (NULL, NULL);
    edge->max_frame = 1024;
    zim_tcp_t *tcp = zim_tcp_new (edge, &loop, "127.0.0.1", 0, false, NULL, NULL);
    assert (tcp && zim_tcp_port (tcp) > 0);
    //  Not shared without reuse_port.
    assert (!zim_tcp_new (edge, &loop, "127.0.0.1", zim_tcp_port (tcp), false, NULL, NULL));
    int fd = s_test_connect (zim_tcp_port (tcp));
    const uint8_t ping[] = "\x81\xa2op\xa4ping"; //  {"op":"ping"}, 9 bytes

    //  A ping, in one packet: a pong in one.
    s_test_send (fd, ping, 9);
    s_test_expect (&loop, fd, "pong", 0);
    assert (edge->connections == 1);
    //  Two frames in one packet: two packets back (one write).
    uint8_t two[18];
    memcpy (two, ping, 9);
    memcpy (two + 9, ping, 9);
    s_test_send (fd, two, 18);
    s_test_expect (&loop, fd, "pong", 0);
    s_test_expect (&loop, fd, "pong", 0);
    //  A packet in pieces: half a length, then the rest a byte at a time.
    uint8_t whole[13] = {0, 0, 0, 9};
    memcpy (whole + 4, ping, 9);
    assert (send (fd, whole, 2, 0) == 2);
    for (int i = 0; i < 20; i++)
        uv_run (&loop, UV_RUN_NOWAIT);
    for (size_t i = 2; i < sizeof whole; i++) {
        assert (send (fd, whole + i, 1, 0) == 1);
        uv_run (&loop, UV_RUN_NOWAIT);
    }
    s_test_expect (&loop, fd, "pong", 0);
    //  An empty packet is input and gets no answer; the next ping does.
    s_test_send (fd, NULL, 0);
    s_test_send (fd, ping, 9);
    s_test_expect (&loop, fd, "pong", 0);
    //  Bad input gets the WebSocket errors: not msgpack (4000), a send
    //  before auth (4010).
    s_test_send (fd, "\xc1", 1);
    s_test_expect (&loop, fd, "error", ZIM_ERR_MALFORMED);
    const uint8_t send_op[] = "\x84\xa2op\xa4send\xa2to\xa3"
                              "bob\xa3"
                              "cid\xa2"
                              "c1\xa4"
                              "body\xa1x";
    s_test_send (fd, send_op, sizeof send_op - 1);
    s_test_expect (&loop, fd, "error", ZIM_ERR_AUTH_REQUIRED);
    assert (edge->bad_frames == 1);
    //  A length over max_frame: 4002, then the FIN, although the client
    //  sends more (it is read and dropped: no RST over the error).
    assert (send (fd, "\xff\xff\xff\xff", 4, 0) == 4);
    assert (send (fd, two, 18, 0) == 18);
    s_test_expect (&loop, fd, "error", ZIM_ERR_TOO_LARGE);
    uint8_t byte;
    assert (s_test_read (&loop, fd, &byte, 1) == -1);
    assert (edge->too_large == 1 && edge->connections == 0);
    close (fd);

    //  Output the client does not read waits in the gateway until
    //  max_pending: then 4090 alone, and the FIN.
    edge->max_pending = 4096;
    fd = s_test_connect (zim_tcp_port (tcp));
    s_test_send (fd, ping, 9);
    s_test_expect (&loop, fd, "pong", 0);
    zim_session_t *session = zim_sessions_first (edge->sessions);
    assert (session);
    uint8_t chunk[1000];
    memset (chunk, 0, sizeof chunk);
    chunk[0] = 0xc5; //  bin 16 of 997 bytes: one msgpack value
    chunk[1] = 997 >> 8;
    chunk[2] = 997 & 0xff;
    for (int i = 0; i < 10000 && !zim_session_closing (session); i++) {
        zim_session_write (session, chunk, sizeof chunk, false);
        uv_run (&loop, UV_RUN_NOWAIT);
    }
    assert (zim_session_closing (session) && edge->slow_consumer_drops == 1);
    //  Read the bins the kernel held, then the error.
    int64_t code = 0;
    for (;;) {
        uint8_t len[4];
        assert (s_test_read (&loop, fd, len, 4) == 0);
        if (len[2] == 3 && len[3] == 0xe8) { //  a bin of 1000 bytes
            assert (s_test_read (&loop, fd, chunk, sizeof chunk) == 0);
            continue;
        }
        //  Not a bin: put the length back in front of the error frame.
        uint8_t frame[4 + 256];
        uint32_t size = (uint32_t)len[2] << 8 | len[3];
        assert (len[0] == 0 && len[1] == 0 && size < 256);
        assert (s_test_read (&loop, fd, frame, size) == 0);
        zim_rd_t rd;
        zim_rd_init (&rd, frame, size);
        uint32_t n;
        assert (zim_rd_map (&rd, &n) == 0);
        for (uint32_t k = 0; k < n; k++) {
            zim_str_t key;
            assert (zim_rd_str (&rd, &key) == 0);
            if (zim_str_eq (key, "code"))
                assert (zim_rd_int (&rd, &code) == 0);
            else
                assert (zim_rd_skip (&rd, NULL) == 0);
        }
        break;
    }
    assert (code == ZIM_ERR_SLOW_CONSUMER);
    assert (s_test_read (&loop, fd, &byte, 1) == -1);
    close (fd);

    //  A connection open at the end is closed with the listener.
    fd = s_test_connect (zim_tcp_port (tcp));
    s_test_send (fd, ping, 9);
    s_test_expect (&loop, fd, "pong", 0);
    assert (edge->connections == 1);
    zim_tcp_close (tcp);
    uv_run (&loop, UV_RUN_DEFAULT);
    assert (edge->connections == 0);
    assert (recv (fd, &byte, 1, 0) <= 0);
    close (fd);
    assert (uv_loop_close (&loop) == 0);
    zim_tcp_destroy (&tcp);
    zim_tcp_destroy (&tcp);
    zim_edge_destroy (&edge);
}
