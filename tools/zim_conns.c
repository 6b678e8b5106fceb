/*  zim_conns.c: zim-bench conns (see zim_conns.h).

    The parent mints one token per 50 connections (users stay under the
    gateway's max_conns_per_user, 64 by default), samples the gateway
    processes' VmRSS, forks the client processes and collects one report
    line from each after connecting and one after holding. Each client
    process runs one epoll loop over its share of the connections: a
    non-blocking connect from 127.0.0.x (IP_BIND_ADDRESS_NO_PORT, so the
    kernel picks the port at connect time per source address), the HTTP
    upgrade with the token in the query, then the auth_ok frame. A few
    hundred handshakes are in flight per process at once, so the listen
    backlog (somaxconn) does not overflow.
*/
#include "tools/zim_conns.h"
#include "msg/zim_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define S_PER_USER 50         //  connections per user (and token)
#define S_PER_PROC 18000      //  connections per client process at most
#define S_INFLIGHT 2048       //  handshakes in flight, over all processes
#define S_CONNECT_MS 60000    //  a connection not authenticated by then failed
#define S_BUF 384             //  input bytes kept per connection

const char *zim_conns_usage =
    "conns: N authenticated connections, held. Options:\n"
    "  --count N       connections (default 1000)\n"
    "  --hold S        seconds to hold them once all are up (default 10)\n"
    "  --sources K     loopback source addresses 127.0.0.1..K (default 1; each\n"
    "                  gives about 28,000 ports towards one server port)\n"
    "  --procs P       client processes (default: one per 18,000 connections)\n"
    "  --heartbeat S   seconds between application pings per connection (20)\n"
    "  --pid PID       a gateway process whose VmRSS to sample (repeatable; the\n"
    "                  per-connection figure is the growth of their sum over N)\n";

//  One connection's state.
enum { S_CONNECTING, S_UPGRADING, S_AUTHING, S_UP, S_DEAD };

typedef struct {
    int fd;           //  the socket, -1 once closed
    uint8_t state;    //  S_*
    uint16_t len;     //  bytes in buf
    uint32_t token;   //  which token
    int64_t due_ms;   //  next heartbeat, or the connect deadline
    char buf[S_BUF];  //  input not yet parsed
} s_conn_t;

typedef struct {
    char host[64];
    int port;
    char path[128];
    char **tokens;
    uint32_t ntokens;
    uint32_t count, hold_s, sources, procs, heartbeat_s;
} s_opts_t;

static int64_t s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  VmRSS of pid in KiB, 0 if unknown.
static long s_rss_kib (int pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen (path, "r");
    long kib = 0;
    if (!f)
        return 0;
    while (fgets (line, sizeof line, f))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kib = atol (line + 6);
    fclose (f);
    return kib;
}

static long s_rss_sum (const int *pids, int npids)
{
    long sum = 0;
    for (int i = 0; i < npids; i++)
        sum += s_rss_kib (pids[i]);
    return sum;
}

//  Sends a masked client frame (opcode op, payload of len < 126).
static int s_send_frame (int fd, int op, const void *payload, size_t len)
{
    uint8_t f[2 + 4 + 125];
    f[0] = (uint8_t)(0x80 | op);
    f[1] = (uint8_t)(0x80 | len);
    uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy (f + 2, mask, 4);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return send (fd, f, 6 + len, MSG_NOSIGNAL) == (ssize_t)(6 + len) ? 0 : -1;
}

typedef struct {
    const s_opts_t *o;
    int ep;
    s_conn_t *conns;
    uint32_t n;          //  connections of this process
    uint32_t next;       //  the next one to start
    uint32_t inflight;   //  handshakes under way
    uint32_t max_inflight;
    uint32_t up, failed, dropped;
    int64_t last_up_us;  //  when the last one authenticated
    uint64_t pongs;      //  application pongs received
} s_proc_t;

static void s_fail (s_proc_t *p, s_conn_t *c)
{
    if (c->state == S_UP)
        p->dropped++;
    else if (c->state != S_DEAD) {
        p->failed++;
        p->inflight--;
    }
    if (c->fd >= 0)
        close (c->fd);
    c->fd = -1;
    c->state = S_DEAD;
}

//  Starts connection i: socket, bind to its source address, connect.
static void s_start (s_proc_t *p, uint32_t i, uint32_t global)
{
    s_conn_t *c = &p->conns[i];
    c->token = (global / S_PER_USER) % p->o->ntokens;
    c->due_ms = s_now_ms () + S_CONNECT_MS;
    c->state = S_CONNECTING;
    p->inflight++;
    c->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        s_fail (p, c);
        return;
    }
    int one = 1;
    setsockopt (c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl (0x7f000001u + global % p->o->sources);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)p->o->port)};
    inet_pton (AF_INET, p->o->host, &dst.sin_addr);
    if (bind (c->fd, (struct sockaddr *)&src, sizeof src) ||
        (connect (c->fd, (struct sockaddr *)&dst, sizeof dst) && errno != EINPROGRESS)) {
        s_fail (p, c);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
    if (epoll_ctl (p->ep, EPOLL_CTL_ADD, c->fd, &ev))
        s_fail (p, c);
}

//  Parses the frames in c->buf; returns -1 when the connection is lost.
static int s_frames (s_proc_t *p, s_conn_t *c)
{
    size_t at = 0;
    while (c->len - at >= 2) {
        uint8_t *f = (uint8_t *)c->buf + at;
        int op = f[0] & 0x0f;
        size_t plen = f[1] & 0x7f, h = 2;
        if (plen == 126) {
            if (c->len - at < 4)
                break;
            plen = (size_t)f[2] << 8 | f[3];
            h = 4;
        } else if (plen == 127)
            return -1; //  nothing this large is expected
        if (h + plen > S_BUF)
            return -1;
        if (c->len - at < h + plen)
            break;
        if (op == 0x8)
            return -1; //  closed by the server
        if (op == 0x9 && s_send_frame (c->fd, 0xA, f + h, plen))
            return -1;
        if (op == 0x2 && c->state == S_AUTHING) {
            if (!memmem (f + h, plen, "auth_ok", 7))
                return -1;
            c->state = S_UP;
            p->up++;
            p->inflight--;
            p->last_up_us = s_now_us ();
            c->due_ms = s_now_ms () + (int64_t)p->o->heartbeat_s * 1000 +
                        (int64_t)(rand () % (p->o->heartbeat_s * 1000 + 1));
        } else if (op == 0x2)
            p->pongs++;
        at += h + plen;
    }
    memmove (c->buf, c->buf + at, c->len - at);
    c->len = (uint16_t)(c->len - at);
    return 0;
}

static void s_on_event (s_proc_t *p, uint32_t i, uint32_t events)
{
    s_conn_t *c = &p->conns[i];
    if (c->state == S_DEAD)
        return;
    if (c->state == S_CONNECTING) {
        if (!(events & EPOLLOUT))
            return;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        char req[2560];
        int n = snprintf (req, sizeof req,
                          "GET %s?token=%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n",
                          p->o->path, p->o->tokens[c->token], p->o->host, p->o->port);
        if (err || n >= (int)sizeof req || send (c->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
            s_fail (p, c);
            return;
        }
        c->state = S_UPGRADING;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl (p->ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t r = recv (c->fd, c->buf + c->len, S_BUF - c->len, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        s_fail (p, c);
        return;
    }
    c->len = (uint16_t)(c->len + r);
    if (c->state == S_UPGRADING) {
        char *end = memmem (c->buf, c->len, "\r\n\r\n", 4);
        if (!end) {
            if (c->len == S_BUF)
                s_fail (p, c);
            return;
        }
        if (c->len < 12 || memcmp (c->buf + 9, "101", 3) != 0) {
            s_fail (p, c);
            return;
        }
        size_t used = (size_t)(end + 4 - c->buf);
        memmove (c->buf, c->buf + used, c->len - used);
        c->len = (uint16_t)(c->len - used);
        c->state = S_AUTHING;
    }
    if (s_frames (p, c))
        s_fail (p, c);
}

//  Runs until every connection is up or failed (phase 0), or until
//  until_ms (phase 1, heartbeats going).
static void s_run (s_proc_t *p, const uint32_t *global, int phase, int64_t until_ms)
{
    struct epoll_event evs[512];
    int64_t next_sweep = s_now_ms () + 100;
    while (true) {
        while (phase == 0 && p->next < p->n && p->inflight < p->max_inflight) {
            s_start (p, p->next, global[p->next]);
            p->next++;
        }
        if (phase == 0 && p->next == p->n && p->inflight == 0)
            return;
        int64_t now = s_now_ms ();
        if (phase == 1 && now >= until_ms)
            return;
        int n = epoll_wait (p->ep, evs, 512, 50);
        for (int k = 0; k < n; k++)
            s_on_event (p, evs[k].data.u32, evs[k].events);
        now = s_now_ms ();
        if (now < next_sweep)
            continue;
        next_sweep = now + 100;
        //  Heartbeats due (an application ping, answered by a pong) and
        //  handshakes past their deadline.
        for (uint32_t i = 0; i < p->next; i++) {
            s_conn_t *c = &p->conns[i];
            if (c->state == S_DEAD || c->due_ms > now)
                continue;
            if (c->state != S_UP)
                s_fail (p, c);
            else if (s_send_frame (c->fd, 0x2, "\x81\xa2op\xa4ping", 9))
                s_fail (p, c);
            else
                c->due_ms = now + (int64_t)p->o->heartbeat_s * 1000;
        }
    }
}

//  One client process: connects its share, reports, holds, reports.
static int s_child (const s_opts_t *o, uint32_t index, int out)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
    }
    s_proc_t p;
    memset (&p, 0, sizeof p);
    p.o = o;
    p.ep = epoll_create1 (EPOLL_CLOEXEC);
    uint32_t *global = zim_calloc (o->count / o->procs + 1, sizeof *global);
    for (uint32_t g = index; g < o->count; g += o->procs)
        global[p.n++] = g;
    p.conns = zim_calloc (p.n + 1, sizeof *p.conns);
    p.max_inflight = S_INFLIGHT / o->procs > 32 ? S_INFLIGHT / o->procs : 32;
    srand (index + 1);
    s_run (&p, global, 0, 0);
    dprintf (out, "up %u failed %u last_us %" PRId64 "\n", p.up, p.failed, p.last_up_us);
    //  Hold until the parent closes our end of the report pipe's partner.
    char go;
    if (read (out, &go, 1) != 1) //  out is a socketpair: the parent writes the hold time
        return 1;
    s_run (&p, global, 1, s_now_ms () + (int64_t)o->hold_s * 1000);
    dprintf (out, "dropped %u pongs %" PRIu64 "\n", p.dropped, p.pongs);
    return 0;
}

//  Reads one line from fd into buf.
static int s_line (int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read (fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = 0;
    return 0;
}

int zim_conns_main (int argc, char **argv, const char *url, zim_conns_mint_fn *mint, void *arg)
{
    static const struct option options[] = {
        {"count", required_argument, NULL, 'n'},   {"hold", required_argument, NULL, 'H'},
        {"sources", required_argument, NULL, 's'}, {"procs", required_argument, NULL, 'p'},
        {"heartbeat", required_argument, NULL, 'b'}, {"pid", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0}};
    s_opts_t o = {.count = 1000, .hold_s = 10, .sources = 1, .heartbeat_s = 20};
    int pids[64], npids = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long (argc, argv, "", options, NULL)) != -1) {
        uint64_t v = 0;
        if (ch == '?' || zim_parse_u64 (optarg, &v) || v > 10000000 ||
            (v == 0 && ch != 'H' && ch != 'p')) {
            fprintf (stderr, "zim-bench conns: bad option. Try 'zim-bench --help'.\n");
            return 2;
        }
        if (ch == 'n')
            o.count = (uint32_t)v;
        else if (ch == 'H')
            o.hold_s = (uint32_t)v;
        else if (ch == 's')
            o.sources = v > 254 ? 254 : (uint32_t)v;
        else if (ch == 'p')
            o.procs = (uint32_t)v;
        else if (ch == 'b')
            o.heartbeat_s = (uint32_t)v;
        else if (ch == 'P' && npids < 64)
            pids[npids++] = (int)v;
    }
    if (sscanf (url, "ws://%63[^:/]:%d%127s", o.host, &o.port, o.path) != 3) {
        fprintf (stderr, "zim-bench conns: URL must be ws://IPV4:PORT/PATH\n");
        return 2;
    }
    if (!o.procs)
        o.procs = (o.count + S_PER_PROC - 1) / S_PER_PROC;
    if (o.procs > 64)
        o.procs = 64;
    if ((uint64_t)o.count > (uint64_t)o.sources * 28000)
        fprintf (stderr, "zim-bench conns: %u connections need about %u --sources\n", o.count,
                 o.count / 28000 + 1);

    //  Tokens: one per S_PER_USER connections, for fresh users.
    o.ntokens = (o.count + S_PER_USER - 1) / S_PER_USER;
    o.tokens = zim_calloc (o.ntokens, sizeof *o.tokens);
    unsigned run = (unsigned)(s_now_us () & 0xffffff);
    for (uint32_t i = 0; i < o.ntokens; i++) {
        char uid[64];
        snprintf (uid, sizeof uid, "c%06x-%u", run, i);
        o.tokens[i] = mint (arg, uid);
        if (!o.tokens[i])
            return 3;
    }
    long rss_before = s_rss_sum (pids, npids);
    signal (SIGPIPE, SIG_IGN);
    int64_t t0 = s_now_us ();
    int *fds = zim_calloc (o.procs, sizeof *fds);
    pid_t *kids = zim_calloc (o.procs, sizeof *kids);
    for (uint32_t i = 0; i < o.procs; i++) {
        int sv[2];
        if (socketpair (AF_UNIX, SOCK_STREAM, 0, sv))
            return 3;
        kids[i] = fork ();
        if (kids[i] == 0) {
            close (sv[0]);
            _exit (s_child (&o, i, sv[1]));
        }
        close (sv[1]);
        fds[i] = sv[0];
    }
    uint64_t up = 0, failed = 0, dropped = 0, pongs = 0;
    int64_t last_us = t0;
    char line[256];
    for (uint32_t i = 0; i < o.procs; i++) {
        unsigned u = 0, f = 0;
        int64_t l = 0;
        if (s_line (fds[i], line, sizeof line) ||
            sscanf (line, "up %u failed %u last_us %" SCNd64, &u, &f, &l) != 3) {
            fprintf (stderr, "zim-bench conns: client process %u died\n", i);
            failed += o.count / o.procs;
            continue;
        }
        up += u;
        failed += f;
        if (l > last_us)
            last_us = l;
    }
    double secs = (double)(last_us - t0) / 1e6;
    printf ("connected: %" PRIu64 " of %u in %.2f s (%.0f connects/s), %" PRIu64
            " failed, %u client processes, %u source addresses\n",
            up, o.count, secs, secs > 0 ? (double)up / secs : 0.0, failed, o.procs, o.sources);
    fflush (stdout);
    //  Let the gateway settle (handshake tables freed), then sample.
    sleep (1);
    long rss_up = s_rss_sum (pids, npids);
    for (uint32_t i = 0; i < o.procs; i++)
        if (write (fds[i], "g", 1) != 1)
            fprintf (stderr, "zim-bench conns: client process %u is gone\n", i);
    long rss_peak = rss_up;
    int64_t hold_end = s_now_us () + (int64_t)o.hold_s * 1000000;
    while (npids && s_now_us () < hold_end - 1500000) {
        sleep (1);
        long r = s_rss_sum (pids, npids);
        rss_peak = r > rss_peak ? r : rss_peak;
    }
    for (uint32_t i = 0; i < o.procs; i++) {
        unsigned d = 0;
        uint64_t pg = 0;
        if (s_line (fds[i], line, sizeof line) ||
            sscanf (line, "dropped %u pongs %" SCNu64, &d, &pg) != 2) {
            fprintf (stderr, "zim-bench conns: client process %u died while holding\n", i);
            continue;
        }
        dropped += d;
        pongs += pg;
    }
    for (uint32_t i = 0; i < o.procs; i++) {
        close (fds[i]);
        waitpid (kids[i], NULL, 0);
    }
    printf ("held: %u s, %" PRIu64 " dropped, %" PRIu64 " heartbeat pongs\n", o.hold_s, dropped,
            pongs);
    if (npids && up)
        printf ("gateway memory: %.2f KiB per connection (VmRSS %ld KiB before, %ld KiB "
                "with %" PRIu64 " up, %ld KiB peak while held; %d process(es))\n",
                (double)(rss_up - rss_before) / (double)up, rss_before, rss_up, up, rss_peak,
                npids);
    for (uint32_t i = 0; i < o.ntokens; i++)
        free (o.tokens[i]);
    free (o.tokens);
    free (fds);
    free (kids);
    return failed || dropped || up < o.count ? 1 : 0;
}
