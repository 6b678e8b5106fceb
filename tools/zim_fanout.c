/*  zim_fanout.c: the receivers of the fan-out benchmarks (zim_fanout.h).

    The parent maps one shared region (a header with the stop flag, then
    one slot per client process: counters and a latency histogram) and
    forks the processes. Each runs one epoll loop over its share of the
    connections: a non-blocking connect from 127.0.0.x (as zim-bench conns),
    the handshake (WebSocket upgrade with the token in the query, auth_ok,
    join; or MQTT CONNECT, SUBSCRIBE at QoS 0), then reads: every read goes
    into one scratch buffer behind the connection's unparsed rest, complete
    frames are handled there and only an incomplete tail is kept per
    connection, so 10,000 connections cost little memory. The counters are
    published to the slot after each turn; the parent polls them.
*/
#include "tools/zim_fanout.h"
#include "tools/zim_fanwire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define S_PER_PROC 18000        //  connections per client process at most
#define S_INFLIGHT 1024         //  handshakes in flight, over all processes
#define S_CONNECT_MS 60000      //  a connection not ready by then failed
#define S_HEARTBEAT_MS 20000    //  application ping per connection (idle_timeout is 90 s)
#define S_RETRIES 3             //  connects tried again after a failed handshake
#define S_SCRATCH (256 * 1024)  //  bytes read at once, at least
#define S_MAX_FRAME (16u << 20) //  a larger WebSocket frame or MQTT packet is an error

enum {
    S_CONNECTING,
    S_UPGRADING,
    S_AUTHING,
    S_JOINING,
    S_CONNACK,
    S_SUBACK,
    S_UP,
    S_DEAD,
    S_RETRY
};

//  One connection.
typedef struct {
    int fd;         //  the socket, -1 once closed
    uint8_t state;  //  S_*
    uint32_t token; //  WS: which token
    int64_t due_ms; //  handshake deadline, then the next heartbeat
    uint8_t *rest;  //  bytes read but not yet parsed (an incomplete frame)
    uint32_t rest_len, rest_cap;
    uint8_t *frag; //  WS: payload of a fragmented message so far
    uint32_t frag_len, frag_cap;
    int64_t last_n;  //  number of the last message received, -1 none
    uint32_t got;    //  distinct messages received
    uint8_t *seen;   //  bitmap of the message numbers received
    uint8_t retries; //  connects tried again after a failed handshake
} s_conn_t;

//  A process's figures, in its shared slot.
typedef struct {
    uint64_t up, failed, closed, delivered, duplicates, out_of_order, unexpected, errors;
    uint64_t t_first, t_last, min_conn;
    uint64_t acked;   //  publisher: `published` answers
    uint64_t retried; //  handshakes that failed and were tried again
    int done;         //  the process wrote its last figures
    zim_benchkit_hist_t hist;
} s_slot_t;

//  The shared region's header.
typedef struct {
    int stop; //  the parent asks every process to finish
} s_head_t;

//  One client process (or the publisher, in the caller's process).
typedef struct {
    const zim_fanout_config_t *cfg;
    char *const *tokens; //  cfg->tokens, or the publisher's one
    uint32_t per_token;
    int ep; //  epoll
    s_conn_t *conns;
    uint32_t *global; //  global index of each connection
    uint32_t n, next, inflight, max_inflight;
    uint32_t src_base; //  first source address of this run
    s_slot_t local;    //  figures, copied to slot after each turn
    s_slot_t *slot;    //  where the parent reads them
    uint8_t *scratch;  //  read buffer
    size_t scratch_cap;
    uint32_t bitmap_bytes; //  per connection
    bool publisher;        //  the publishing connection: its copies are not checked
} s_proc_t;

static int64_t s_now_ms (void)
{
    return (int64_t)(zim_benchkit_now_us () / 1000);
}

static void *s_alloc (void *old, size_t size)
{
    void *p = realloc (old, size ? size : 1);
    if (!p) {
        fprintf (stderr, "zim_fanout: out of memory\n");
        abort ();
    }
    return p;
}

static void s_fail (s_proc_t *p, s_conn_t *c)
{
    if (c->state != S_UP && c->state != S_DEAD && c->state != S_RETRY && c->retries < S_RETRIES &&
        !p->publisher) {
        //  A handshake that failed (a full backlog, a port in TIME_WAIT)
        //  is tried again from the sweep, a few times.
        c->retries++;
        p->local.retried++;
        p->inflight--;
        if (c->fd >= 0)
            close (c->fd);
        c->fd = -1;
        c->state = S_RETRY;
        c->rest_len = c->frag_len = 0;
        return;
    }
    if (c->state == S_RETRY) {
        p->local.failed++;
        c->state = S_DEAD;
        return;
    }
    if (c->state == S_UP)
        p->local.closed++;
    else if (c->state != S_DEAD) {
        p->local.failed++;
        p->inflight--;
    }
    if (c->fd >= 0)
        close (c->fd);
    c->fd = -1;
    c->state = S_DEAD;
    free (c->rest);
    free (c->frag);
    c->rest = c->frag = NULL;
    c->rest_len = c->rest_cap = c->frag_len = c->frag_cap = 0;
}

static void s_ready (s_proc_t *p, s_conn_t *c)
{
    c->state = S_UP;
    p->local.up++;
    p->inflight--;
    c->due_ms = s_now_ms () + S_HEARTBEAT_MS + rand () % S_HEARTBEAT_MS;
}

//  A stamped message arrived on c at now.
static void s_record (s_proc_t *p, s_conn_t *c, const uint8_t *stamp, uint32_t len, uint64_t now)
{
    if (p->publisher)
        return;
    uint64_t t;
    uint32_t index, n;
    if (len < ZIM_BENCHKIT_STAMP) {
        p->local.unexpected++;
        return;
    }
    zim_benchkit_unstamp (stamp, &t, &index, &n);
    if (n >= p->cfg->messages) {
        p->local.unexpected++;
        return;
    }
    if (c->seen[n / 8] & (1u << (n % 8))) {
        p->local.duplicates++;
        return;
    }
    c->seen[n / 8] |= (uint8_t)(1u << (n % 8));
    if ((int64_t)n < c->last_n)
        p->local.out_of_order++;
    c->last_n = n;
    c->got++;
    p->local.delivered++;
    if (!p->local.t_first)
        p->local.t_first = now;
    p->local.t_last = now;
    zim_benchkit_hist_add (&p->local.hist, now > t ? now - t : 0);
}

//  One msgpack map from a zim server; returns the byte after it or NULL.
static const uint8_t *s_on_map (s_proc_t *p, s_conn_t *c, const uint8_t *q, const uint8_t *end,
                                uint64_t now)
{
    uint64_t pairs = 0;
    if (q >= end)
        return NULL;
    if ((*q & 0xf0) == 0x80)
        pairs = *q++ & 0x0f;
    else if (*q == 0xde && end - q >= 3) {
        pairs = (uint64_t)q[1] << 8 | q[2];
        q += 3;
    } else
        return NULL;
    const uint8_t *op = NULL, *body = NULL, *text = NULL;
    uint32_t oplen = 0, bodylen = 0, textlen = 0;
    uint64_t code = 0;
    for (uint64_t i = 0; i < pairs && q; i++) {
        const uint8_t *key;
        uint32_t klen = 0;
        q = zim_fanwire_mp_skip (q, end, 0, &key, &klen);
        if (!q)
            return NULL;
        if (klen == 2 && memcmp (key, "op", 2) == 0)
            q = zim_fanwire_mp_skip (q, end, 0, &op, &oplen);
        else if (klen == 4 && memcmp (key, "body", 4) == 0)
            q = zim_fanwire_mp_skip (q, end, 0, &body, &bodylen);
        else if (klen == 4 && memcmp (key, "text", 4) == 0)
            q = zim_fanwire_mp_skip (q, end, 0, &text, &textlen);
        else if (klen == 4 && memcmp (key, "code", 4) == 0 && q < end) {
            if (*q <= 0x7f)
                code = *q;
            else if (*q == 0xcd && end - q >= 3)
                code = (uint64_t)q[1] << 8 | q[2];
            q = zim_fanwire_mp_skip (q, end, 0, NULL, NULL);
        } else
            q = zim_fanwire_mp_skip (q, end, 0, NULL, NULL);
    }
    if (!q || !op)
        return q;
    const char *want = p->cfg->op ? p->cfg->op : "room";
    if (oplen == strlen (want) && memcmp (op, want, oplen) == 0) {
        if (body)
            s_record (p, c, body, bodylen, now);
        else
            p->local.unexpected++;
    } else if (oplen == 7 && memcmp (op, "auth_ok", 7) == 0 && c->state == S_AUTHING) {
        if (p->cfg->room) {
            uint8_t f[200];
            size_t n = 0;
            f[n++] = 0x82;
            n += zim_fanwire_mp_str (f + n, "op");
            n += zim_fanwire_mp_str (f + n, "join");
            n += zim_fanwire_mp_str (f + n, "room");
            n += zim_fanwire_mp_str (f + n, p->cfg->room);
            c->state = S_JOINING;
            if (zim_fanwire_ws_send (c->fd, 0x2, f, n))
                return NULL;
        } else
            s_ready (p, c);
    } else if (oplen == 6 && memcmp (op, "joined", 6) == 0 && c->state == S_JOINING)
        s_ready (p, c);
    else if (oplen == 9 && memcmp (op, "published", 9) == 0)
        p->local.acked++;
    else if (oplen == 5 && memcmp (op, "error", 5) == 0) {
        if (p->local.errors++ < 5)
            fprintf (stderr, "zim-bench: error %" PRIu64 " from the server: %.*s\n", code,
                     (int)textlen, text ? (const char *)text : "");
        if (c->state != S_UP)
            return NULL;
    }
    return q;
}

//  A whole WebSocket message's payload: msgpack maps back to back.
static int s_on_message (s_proc_t *p, s_conn_t *c, const uint8_t *q, size_t len, uint64_t now)
{
    const uint8_t *end = q + len;
    while (q && q < end)
        q = s_on_map (p, c, q, end, now);
    return q ? 0 : -1;
}

//  WebSocket frames at buf; returns the bytes used (complete frames), or -1.
static int64_t s_ws_frames (s_proc_t *p, s_conn_t *c, const uint8_t *buf, size_t len, uint64_t now)
{
    size_t at = 0;
    while (len - at >= 2 && c->state != S_DEAD) {
        bool fin;
        int op;
        size_t h;
        uint64_t plen;
        int got = zim_fanwire_ws_frame (buf + at, len - at, S_MAX_FRAME, &fin, &op, &h, &plen);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        const uint8_t *f = buf + at;
        const uint8_t *pl = f + h;
        if (op == 0x8)
            return -1;
        if (op == 0x9) {
            if (zim_fanwire_ws_send (c->fd, 0xA, pl, plen))
                return -1;
        } else if (op == 0x2 && fin) {
            if (s_on_message (p, c, pl, plen, now))
                return -1;
        } else if (op == 0x2 || op == 0x0) {
            if (c->frag_len + plen > S_MAX_FRAME)
                return -1;
            if (c->frag_len + plen > c->frag_cap) {
                c->frag_cap = (uint32_t)(c->frag_len + plen) * 2;
                c->frag = s_alloc (c->frag, c->frag_cap);
            }
            memcpy (c->frag + c->frag_len, pl, plen);
            c->frag_len += (uint32_t)plen;
            if (fin) {
                int rc = s_on_message (p, c, c->frag, c->frag_len, now);
                c->frag_len = 0;
                if (rc)
                    return -1;
            }
        } else if (op != 0xA)
            p->local.unexpected++; //  text: zim sends none
        at += h + plen;
    }
    return (int64_t)at;
}

//  MQTT packets at buf; returns the bytes used, or -1.
static int64_t s_mqtt_packets (s_proc_t *p, s_conn_t *c, const uint8_t *buf, size_t len,
                               uint64_t now)
{
    size_t at = 0;
    while (at < len && c->state != S_DEAD) {
        const uint8_t *f = buf + at;
        size_t hdr, rem;
        int got = zim_fanwire_mqtt_packet (f, len - at, S_MAX_FRAME, &hdr, &rem);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        const uint8_t *q = f + hdr;
        switch (f[0] & 0xf0) {
        case 0x20: //  CONNACK
            if (c->state != S_CONNACK || rem != 2 || q[1] != 0)
                return -1;
            if (p->publisher) {
                s_ready (p, c);
                break;
            }
            c->state = S_SUBACK;
            if (zim_fanwire_mqtt_subscribe (c->fd, p->cfg->room))
                return -1;
            break;
        case 0x90: //  SUBACK
            if (c->state != S_SUBACK || rem != 3 || q[2] != 0)
                return -1;
            s_ready (p, c);
            break;
        case 0x30: { //  PUBLISH
            int qos = (f[0] >> 1) & 3;
            if (rem < 2)
                return -1;
            size_t tl = (size_t)q[0] << 8 | q[1], skip = 2 + tl + (qos ? 2 : 0);
            if (skip > rem)
                return -1;
            s_record (p, c, q + skip, (uint32_t)(rem - skip), now);
            break;
        }
        case 0xd0: //  PINGRESP
            break;
        default:
            return -1;
        }
        at += hdr + rem;
    }
    return (int64_t)at;
}

//  Starts connection i: socket, bind to its source address, connect.
static void s_start (s_proc_t *p, uint32_t i)
{
    const zim_fanout_config_t *cfg = p->cfg;
    s_conn_t *c = &p->conns[i];
    uint32_t g = p->global[i];
    c->token = g / p->per_token;
    c->due_ms = s_now_ms () + S_CONNECT_MS;
    c->state = S_CONNECTING;
    c->last_n = -1;
    p->inflight++;
    c->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        s_fail (p, c);
        return;
    }
    int one = 1;
    setsockopt (c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint32_t sources = cfg->sources ? cfg->sources : 1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl (0x7f000001u + (p->src_base + g) % sources);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)cfg->port)};
    inet_pton (AF_INET, cfg->host, &dst.sin_addr);
    if (bind (c->fd, (struct sockaddr *)&src, sizeof src) ||
        (connect (c->fd, (struct sockaddr *)&dst, sizeof dst) && errno != EINPROGRESS)) {
        s_fail (p, c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
    if (epoll_ctl (p->ep, EPOLL_CTL_ADD, c->fd, &ev))
        s_fail (p, c);
}

//  The socket connected: sends the upgrade or CONNECT.
static void s_on_connected (s_proc_t *p, uint32_t i)
{
    const zim_fanout_config_t *cfg = p->cfg;
    s_conn_t *c = &p->conns[i];
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        s_fail (p, c);
        return;
    }
    int rc;
    if (cfg->proto == ZIM_FANOUT_WS) {
        rc = zim_fanwire_ws_upgrade (c->fd, cfg->path ? cfg->path : "/ws", p->tokens[c->token],
                                     p->global[i], cfg->host, cfg->port);
        c->state = S_UPGRADING;
    } else {
        char id[64];
        snprintf (id, sizeof id, "fanout-%d-%u", (int)getpid (), p->global[i]);
        rc = zim_fanwire_mqtt_connect (c->fd, id);
        c->state = S_CONNACK;
    }
    if (rc) {
        s_fail (p, c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl (p->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void s_on_readable (s_proc_t *p, uint32_t i)
{
    s_conn_t *c = &p->conns[i];
    if (p->scratch_cap < (size_t)c->rest_len + S_SCRATCH / 2) {
        p->scratch_cap = (size_t)c->rest_len + S_SCRATCH;
        p->scratch = s_alloc (p->scratch, p->scratch_cap);
    }
    size_t have = c->rest_len;
    if (have)
        memcpy (p->scratch, c->rest, have);
    ssize_t r = recv (c->fd, p->scratch + have, p->scratch_cap - have, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        s_fail (p, c);
        return;
    }
    uint64_t now = zim_benchkit_now_us ();
    size_t len = have + (size_t)r, at = 0;
    uint8_t *buf = p->scratch;
    if (c->state == S_UPGRADING) {
        uint8_t *end = memmem (buf, len, "\r\n\r\n", 4);
        if (!end) {
            if (len > 8192)
                s_fail (p, c);
            else {
                c->rest = s_alloc (c->rest, len);
                memcpy (c->rest, buf, len);
                c->rest_len = (uint32_t)len;
            }
            return;
        }
        if (len < 12 || memcmp (buf + 9, "101", 3) != 0) {
            if (p->local.failed < 3)
                fprintf (
                    stderr, "zim-bench: upgrade refused: %.*s\n",
                    (int)(memchr (buf, '\r', len) ? (uint8_t *)memchr (buf, '\r', len) - buf : 0),
                    (const char *)buf);
            s_fail (p, c);
            return;
        }
        at = (size_t)(end + 4 - buf);
        c->state = S_AUTHING;
    }
    int64_t used = p->cfg->proto == ZIM_FANOUT_WS ? s_ws_frames (p, c, buf + at, len - at, now)
                                                  : s_mqtt_packets (p, c, buf + at, len - at, now);
    if (used < 0) {
        s_fail (p, c);
        return;
    }
    if (c->state == S_DEAD)
        return;
    at += (size_t)used;
    c->rest_len = (uint32_t)(len - at);
    if (c->rest_len > c->rest_cap) {
        c->rest_cap = c->rest_len;
        c->rest = s_alloc (c->rest, c->rest_cap);
    }
    if (c->rest_len)
        memcpy (c->rest, buf + at, c->rest_len);
}

//  One turn of the loop: events for up to timeout_ms, then the sweep of
//  deadlines and heartbeats when due.
static void s_turn (s_proc_t *p, int timeout_ms, int64_t *next_sweep)
{
    struct epoll_event evs[512];
    while (p->next < p->n && p->inflight < p->max_inflight)
        s_start (p, p->next++);
    int n = epoll_wait (p->ep, evs, 512, timeout_ms);
    for (int k = 0; k < n; k++) {
        uint32_t i = evs[k].data.u32;
        s_conn_t *c = &p->conns[i];
        if (c->state == S_DEAD)
            continue;
        if (c->state == S_CONNECTING) {
            if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                s_on_connected (p, i);
        } else if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            s_on_readable (p, i);
    }
    int64_t now = s_now_ms ();
    if (now < *next_sweep)
        return;
    *next_sweep = now + 200;
    for (uint32_t i = 0; i < p->next; i++) {
        s_conn_t *c = &p->conns[i];
        if (c->state == S_RETRY) {
            s_start (p, i);
            continue;
        }
        if (c->state == S_DEAD || c->due_ms > now)
            continue;
        if (c->state != S_UP)
            s_fail (p, c);
        else if (p->cfg->proto == ZIM_FANOUT_WS) {
            static const uint8_t ping[] = {0x81, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g'};
            if (zim_fanwire_ws_send (c->fd, 0x2, ping, sizeof ping))
                s_fail (p, c);
            else
                c->due_ms = now + S_HEARTBEAT_MS;
        } else
            c->due_ms = now + S_HEARTBEAT_MS; //  MQTT: keepalive is off
    }
}

//  Copies the figures to the shared slot (the parent reads them any time:
//  a torn read of one counter only shows a stale value).
static void s_publish (s_proc_t *p)
{
    s_slot_t *s = p->slot, *l = &p->local;
    __atomic_store_n (&s->up, l->up, __ATOMIC_RELAXED);
    __atomic_store_n (&s->failed, l->failed, __ATOMIC_RELAXED);
    __atomic_store_n (&s->closed, l->closed, __ATOMIC_RELAXED);
    __atomic_store_n (&s->delivered, l->delivered, __ATOMIC_RELAXED);
    __atomic_store_n (&s->errors, l->errors, __ATOMIC_RELAXED);
}

static void s_proc_init (s_proc_t *p, const zim_fanout_config_t *cfg, uint32_t index,
                         uint32_t procs, uint32_t src_base)
{
    memset (p, 0, sizeof *p);
    p->cfg = cfg;
    p->tokens = cfg->tokens;
    p->per_token = cfg->per_token ? cfg->per_token : 1;
    p->ep = epoll_create1 (EPOLL_CLOEXEC);
    p->global = s_alloc (NULL, ((size_t)cfg->count / procs + 1) * sizeof *p->global);
    for (uint32_t g = index; g < cfg->count; g += procs)
        p->global[p->n++] = g;
    p->conns = s_alloc (NULL, ((size_t)p->n + 1) * sizeof *p->conns);
    memset (p->conns, 0, ((size_t)p->n + 1) * sizeof *p->conns);
    p->bitmap_bytes = (cfg->messages + 7) / 8;
    for (uint32_t i = 0; i < p->n; i++) {
        p->conns[i].fd = -1;
        p->conns[i].seen = s_alloc (NULL, p->bitmap_bytes ? p->bitmap_bytes : 1);
        memset (p->conns[i].seen, 0, p->bitmap_bytes ? p->bitmap_bytes : 1);
    }
    p->max_inflight = S_INFLIGHT / procs > 32 ? S_INFLIGHT / procs : 32;
    p->src_base = src_base;
    p->scratch_cap = S_SCRATCH;
    p->scratch = s_alloc (NULL, p->scratch_cap);
    p->slot = &p->local;
}

static void s_proc_free (s_proc_t *p)
{
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->conns[i].fd >= 0)
            close (p->conns[i].fd);
        free (p->conns[i].rest);
        free (p->conns[i].frag);
        free (p->conns[i].seen);
    }
    free (p->conns);
    free (p->global);
    free (p->scratch);
    if (p->ep >= 0)
        close (p->ep);
}

//  One client process: runs until the parent asks it to stop.
static void s_child (const zim_fanout_config_t *cfg, uint32_t index, uint32_t procs,
                     uint32_t src_base, s_head_t *head, s_slot_t *slot)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
    }
    signal (SIGPIPE, SIG_IGN);
    signal (SIGINT, SIG_IGN); //  the parent stops us, or its death does
    signal (SIGTERM, SIG_DFL);
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () == 1)
        _exit (1);
    srand (index + 1);
    s_proc_t p;
    s_proc_init (&p, cfg, index, procs, src_base);
    p.slot = slot;
    int64_t next_sweep = s_now_ms () + 200;
    while (!__atomic_load_n (&head->stop, __ATOMIC_ACQUIRE)) {
        s_turn (&p, 20, &next_sweep);
        s_publish (&p);
    }
    p.local.min_conn = UINT64_MAX;
    for (uint32_t i = 0; i < p.n; i++)
        if (p.conns[i].state == S_UP && p.conns[i].got < p.local.min_conn)
            p.local.min_conn = p.conns[i].got;
    if (p.local.min_conn == UINT64_MAX)
        p.local.min_conn = 0;
    p.local.done = 0;
    memcpy (slot, &p.local, sizeof *slot);
    __atomic_store_n (&slot->done, 1, __ATOMIC_RELEASE);
    s_proc_free (&p);
}

struct _zim_fanout_t {
    zim_fanout_config_t cfg;
    uint32_t procs;
    void *shm;
    size_t shm_size;
    s_head_t *head;
    s_slot_t *slots;
    pid_t *kids;
    bool stopped;
};

zim_fanout_t *zim_fanout_new (const zim_fanout_config_t *cfg)
{
    zim_fanout_t *self = s_alloc (NULL, sizeof *self);
    memset (self, 0, sizeof *self);
    self->cfg = *cfg;
    self->procs = cfg->procs ? cfg->procs : (cfg->count + S_PER_PROC - 1) / S_PER_PROC;
    if (self->procs == 0)
        self->procs = 1;
    if (self->procs > cfg->count)
        self->procs = cfg->count ? cfg->count : 1;
    size_t slot_size = (sizeof (s_slot_t) + 63) / 64 * 64;
    self->shm_size = 64 + slot_size * self->procs;
    self->shm =
        mmap (NULL, self->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (self->shm == MAP_FAILED) {
        fprintf (stderr, "zim-bench: mmap: %s\n", strerror (errno));
        free (self);
        return NULL;
    }
    self->head = self->shm;
    self->slots = (s_slot_t *)((uint8_t *)self->shm + 64);
    self->kids = s_alloc (NULL, self->procs * sizeof *self->kids);
    uint32_t src_base = (uint32_t)(zim_benchkit_now_us () % 251);
    fflush (NULL);
    for (uint32_t i = 0; i < self->procs; i++) {
        self->kids[i] = fork ();
        if (self->kids[i] == 0) {
            s_child (&self->cfg, i, self->procs, src_base, self->head, &self->slots[i]);
            _exit (0);
        }
        if (self->kids[i] < 0) {
            fprintf (stderr, "zim-bench: fork: %s\n", strerror (errno));
            self->procs = i;
            zim_fanout_destroy (&self);
            return NULL;
        }
    }
    return self;
}

uint32_t zim_fanout_dead (zim_fanout_t *self)
{
    uint32_t dead = 0;
    for (uint32_t i = 0; i < self->procs; i++) {
        if (self->kids[i] <= 0) {
            dead++;
            continue;
        }
        int st;
        if (waitpid (self->kids[i], &st, WNOHANG) == self->kids[i]) {
            fprintf (stderr, "zim-bench: client process %u exited (status 0x%x)\n", i, st);
            self->kids[i] = -1;
            dead++;
        }
    }
    return dead;
}

uint64_t zim_fanout_wait_ready (zim_fanout_t *self, uint32_t timeout_ms)
{
    uint64_t until = zim_benchkit_now_us () + (uint64_t)timeout_ms * 1000;
    uint64_t up = 0, failed = 0;
    while (true) {
        up = failed = 0;
        for (uint32_t i = 0; i < self->procs; i++) {
            up += __atomic_load_n (&self->slots[i].up, __ATOMIC_RELAXED);
            failed += __atomic_load_n (&self->slots[i].failed, __ATOMIC_RELAXED);
        }
        if (up + failed >= self->cfg.count || zim_benchkit_now_us () >= until ||
            zim_fanout_dead (self))
            break;
        zim_benchkit_sleep_us (10000);
    }
    return up;
}

uint64_t zim_fanout_delivered (zim_fanout_t *self)
{
    uint64_t d = 0;
    for (uint32_t i = 0; i < self->procs; i++)
        d += __atomic_load_n (&self->slots[i].delivered, __ATOMIC_RELAXED);
    return d;
}

void zim_fanout_stop (zim_fanout_t *self, zim_fanout_result_t *r)
{
    memset (r, 0, sizeof *r);
    __atomic_store_n (&self->head->stop, 1, __ATOMIC_RELEASE);
    r->min_conn = UINT64_MAX;
    for (uint32_t i = 0; i < self->procs; i++) {
        if (self->kids[i] > 0) {
            int st;
            uint64_t until = zim_benchkit_now_us () + 10000000;
            while (waitpid (self->kids[i], &st, WNOHANG) == 0) {
                if (zim_benchkit_now_us () > until) {
                    kill (self->kids[i], SIGKILL);
                    waitpid (self->kids[i], &st, 0);
                    break;
                }
                zim_benchkit_sleep_us (5000);
            }
            self->kids[i] = -1;
        }
        s_slot_t *s = &self->slots[i];
        if (!__atomic_load_n (&s->done, __ATOMIC_ACQUIRE)) {
            fprintf (stderr, "zim-bench: client process %u did not report\n", i);
            r->failed += self->cfg.count / self->procs;
            continue;
        }
        r->up += s->up;
        r->failed += s->failed;
        r->closed += s->closed;
        r->delivered += s->delivered;
        r->duplicates += s->duplicates;
        r->out_of_order += s->out_of_order;
        r->unexpected += s->unexpected;
        r->errors += s->errors;
        r->retried += s->retried;
        if (s->t_first && (!r->t_first || s->t_first < r->t_first))
            r->t_first = s->t_first;
        if (s->t_last > r->t_last)
            r->t_last = s->t_last;
        if (s->up && s->min_conn < r->min_conn)
            r->min_conn = s->min_conn;
        zim_benchkit_hist_merge (&r->hist, &s->hist);
    }
    if (r->min_conn == UINT64_MAX)
        r->min_conn = 0;
    self->stopped = true;
}

void zim_fanout_destroy (zim_fanout_t **self_p)
{
    zim_fanout_t *self = *self_p;
    if (!self)
        return;
    if (!self->stopped) {
        __atomic_store_n (&self->head->stop, 1, __ATOMIC_RELEASE);
        for (uint32_t i = 0; i < self->procs; i++)
            if (self->kids[i] > 0)
                waitpid (self->kids[i], NULL, 0);
    }
    munmap (self->shm, self->shm_size);
    free (self->kids);
    free (self);
    *self_p = NULL;
}

//  -------------------------------------------------------------------------
//  The publisher

struct _zim_fanout_pub_t {
    zim_fanout_config_t cfg; //  count 1
    char *token;
    char *tokens[1];
    s_proc_t p;
    int64_t next_sweep;
    uint8_t *frame;
    size_t frame_cap;
};

zim_fanout_pub_t *zim_fanout_pub_new (const zim_fanout_config_t *cfg, const char *token,
                                      uint32_t timeout_ms)
{
    zim_fanout_pub_t *self = s_alloc (NULL, sizeof *self);
    memset (self, 0, sizeof *self);
    self->cfg = *cfg;
    self->cfg.count = 1;
    self->cfg.procs = 1;
    self->token = strdup (token ? token : "");
    self->tokens[0] = self->token;
    self->cfg.tokens = self->tokens;
    self->cfg.per_token = 1;
    s_proc_init (&self->p, &self->cfg, 0, 1, 0);
    self->p.publisher = true;
    self->next_sweep = s_now_ms () + 200;
    uint64_t until = zim_benchkit_now_us () + (uint64_t)timeout_ms * 1000;
    while (self->p.local.up + self->p.local.failed == 0 && zim_benchkit_now_us () < until)
        s_turn (&self->p, 10, &self->next_sweep);
    if (self->p.local.up == 0) {
        fprintf (stderr, "zim-bench: the publisher did not connect\n");
        zim_fanout_pub_destroy (&self);
    }
    return self;
}

int zim_fanout_pub_send (zim_fanout_pub_t *self, const uint8_t *body, size_t len)
{
    s_conn_t *c = &self->p.conns[0];
    if (c->state != S_UP)
        return -1;
    if (self->frame_cap < len + 300) {
        self->frame_cap = len + 300;
        self->frame = s_alloc (self->frame, self->frame_cap);
    }
    const char *room = self->cfg.room ? self->cfg.room : "";
    if (self->cfg.proto == ZIM_FANOUT_WS)
        return zim_fanwire_ws_publish (c->fd, room, body, len, self->frame);
    return zim_fanwire_mqtt_publish (c->fd, room, body, len, self->frame);
}

void zim_fanout_pub_poll (zim_fanout_pub_t *self, int timeout_ms)
{
    s_turn (&self->p, timeout_ms, &self->next_sweep);
}

void zim_fanout_pub_counts (zim_fanout_pub_t *self, uint64_t *acked, uint64_t *errors, bool *open)
{
    *acked = self->p.local.acked;
    *errors = self->p.local.errors;
    *open = self->p.conns[0].state == S_UP;
}

void zim_fanout_pub_destroy (zim_fanout_pub_t **self_p)
{
    zim_fanout_pub_t *self = *self_p;
    if (!self)
        return;
    s_proc_free (&self->p);
    free (self->frame);
    free (self->token);
    free (self);
    *self_p = NULL;
}
