/*  zim_rbench.c: zim-bench room and zim-bench push (see zim_rbench.h).

    The receivers are tools/zim_fanout's client processes; this file mints
    their tokens, paces the publisher in this process (message k is due at
    k / R s after the start and stamped with that time, so a publisher that
    falls behind counts its lateness in the latency), and reads the
    gateways' counters before and after. Backend requests go over plain
    sockets, pipelined on keep-alive connections: libcurl no longer
    pipelines HTTP/1.1, and the answers here are short (Content-Length, no
    chunking), so a few dozen lines do it with one send per request.
*/
#include "tools/zim_rbench.h"
#include "tools/zim_benchkit.h"
#include "tools/zim_fanout.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_PER_USER 50     //  room: connections per user (max_conns_per_user is 64)
#define S_SETUP_MS 120000 //  connecting and joining everyone may take this long
#define S_MAX_GW 64       //  gateways whose metrics are read

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

const char *zim_rbench_usage =
    "room: N connections in one room, a publisher publishing M messages at R\n"
    "msgs/s (each stamped with its scheduled time). Reported: deliveries/s\n"
    "(from the first publish to the last delivery), publish-to-delivery p50/p99,\n"
    "deliveries missing at the clients, and the gateways' room_dropped (slow\n"
    "connections' frames dropped) read from their metrics before and after.\n"
    "  zim-bench room [--members N] [--rate R] [--messages M] [--gateways G]\n"
    "                 [--via client|api] [--procs P] [--sources K] [--size B]\n"
    "                 [--metrics HOST:PORT] [--api HOST:PORT] [--api-key KEY]\n"
    "                 [--timeout S] [--json]\n"
    "        (defaults: N 1000, R 100, M 200, G 1, via client, P one per 5,000\n"
    "        members, K 4, B 32). --via client: the publisher is a connection\n"
    "        in the room sending `publish`; --via api: POST /v1/push/rooms with\n"
    "        a msgpack body. --gateways G: the URL's port is shared by G gateway\n"
    "        workers (zim-gateway --workers G): their counters are read from\n"
    "        --metrics HOST:PORT .. PORT+G-1 (without it, from the URL's\n"
    "        /metrics, which is one worker's when G > 1).\n"
    "push: N users online (one connection each), the backend pushing M\n"
    "messages to each over HTTP keep-alive (POST /v1/push/users, msgpack body,\n"
    "K users per request), R user pushes/s offered. Reported: delivered user\n"
    "pushes/s, push-to-delivery p50/p99, missing, the HTTP answers.\n"
    "  zim-bench push [--users N] [--rate R] [--messages M] [--batch K]\n"
    "                 [--conns C] [--window W] [--api HOST:PORT] [--api-key KEY]\n"
    "                 [--procs P] [--sources K] [--timeout S] [--json]\n"
    "        (defaults: N 1000, R 50000, M 100, K 100, C 2, W 32 requests in\n"
    "        flight per connection; the API at 127.0.0.1:7701, its key from\n"
    "        $ZIM_API_KEY, $ZIM_DATA/app-demo.apikey or ./zim-data/app-demo.apikey)\n";

//  -------------------------------------------------------------------------
//  HTTP: small blocking requests (metrics) and a pipelined client (pushes)

//  Connects a TCP socket to host:port; -1 on failure.
static int s_tcp (const char *host, int port, bool nonblock)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    if (fd < 0 || inet_pton (AF_INET, host, &a.sin_addr) != 1 ||
        connect (fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblock) {
        struct timeval tv = {0, 0};
        setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    return fd;
}

//  GETs http://host:port/metrics; returns the body (caller frees) or NULL.
static char *s_get_metrics (const char *host, int port)
{
    int fd = s_tcp (host, port, false);
    if (fd < 0)
        return NULL;
    struct timeval tv = {5, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[200];
    int n =
        snprintf (req, sizeof req,
                  "GET /metrics HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n", host, port);
    if (send (fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close (fd);
        return NULL;
    }
    //  Read until the server closes or the body is complete (a metrics
    //  port may keep the connection open after its answer).
    size_t len = 0, cap = 65536, want = SIZE_MAX;
    char *buf = malloc (cap);
    ssize_t r;
    while (buf && len < want && (r = recv (fd, buf + len, cap - len - 1, 0)) > 0) {
        len += (size_t)r;
        buf[len] = 0;
        char *end = want == SIZE_MAX ? strstr (buf, "\r\n\r\n") : NULL;
        if (end) {
            char *cl = strcasestr (buf, "\r\nContent-Length:");
            if (cl && cl < end)
                want = (size_t)(end + 4 - buf) + strtoull (cl + 17, NULL, 10);
        }
        if (cap - len < 4096) {
            char *more = realloc (buf, cap *= 2);
            if (!more)
                free (buf);
            buf = more;
        }
    }
    close (fd);
    if (buf)
        buf[len] = 0;
    return buf;
}

//  Sum of the values of metric name (any labels) in a metrics text.
static uint64_t s_metric (const char *text, const char *name)
{
    uint64_t sum = 0;
    size_t nl = strlen (name);
    for (const char *p = text; p && *p; p = strchr (p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp (p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            const char *v = strchr (p, ' ');
            if (v)
                sum += strtoull (v + 1, NULL, 10);
        }
    return sum;
}

//  The gateways' counters that say something was dropped or not delivered.
typedef struct {
    uint64_t room_dropped, slow_cuts, deliveries, out_gone, authed[S_MAX_GW];
    uint32_t read; //  endpoints that answered
} s_gwstats_t;

static void s_read_gateways (const char *host, const int *ports, uint32_t n, s_gwstats_t *st)
{
    memset (st, 0, sizeof *st);
    for (uint32_t i = 0; i < n; i++) {
        char *text = s_get_metrics (host, ports[i]);
        if (!text)
            continue;
        st->read++;
        st->room_dropped += s_metric (text, "zim_gateway_room_dropped_total");
        st->slow_cuts += s_metric (text, "zim_gateway_slow_consumer_drops_total");
        st->deliveries += s_metric (text, "zim_gateway_room_deliveries_total");
        st->out_gone += s_metric (text, "zim_gateway_out_gone_total") +
                        s_metric (text, "zim_gateway_out_closing_total");
        st->authed[i] = s_metric (text, "zim_gateway_authed");
        free (text);
    }
}

//  One keep-alive connection with pipelined requests.
typedef struct {
    int fd;
    uint32_t inflight; //  requests sent, not answered
    char *in;          //  answer bytes not yet parsed
    size_t in_len, in_cap;
} s_http_t;

typedef struct {
    s_http_t *conn;
    uint32_t nconns, window;
    const char *host;
    int port;
    const char *key;
    uint64_t sent, ok, failed; //  requests
    uint64_t reached;          //  "connections" summed over the 200 answers
    char *req;                 //  request buffer
    size_t req_cap;
} s_api_t;

static int s_api_open (s_api_t *api)
{
    api->conn = calloc (api->nconns, sizeof *api->conn);
    for (uint32_t i = 0; i < api->nconns; i++) {
        api->conn[i].fd = s_tcp (api->host, api->port, false);
        if (api->conn[i].fd < 0) {
            fprintf (stderr, "zim-bench: cannot connect to the API at %s:%d: %s\n", api->host,
                     api->port, strerror (errno));
            return -1;
        }
        api->conn[i].in_cap = 65536;
        api->conn[i].in = malloc (api->conn[i].in_cap);
    }
    return 0;
}

static void s_api_close (s_api_t *api)
{
    for (uint32_t i = 0; api->conn && i < api->nconns; i++) {
        if (api->conn[i].fd >= 0)
            close (api->conn[i].fd);
        free (api->conn[i].in);
    }
    free (api->conn);
    free (api->req);
}

//  Parses the complete answers in c; -1 if the connection is unusable.
static int s_api_answers (s_api_t *api, s_http_t *c)
{
    size_t at = 0;
    while (c->in_len - at > 12) {
        char *p = c->in + at;
        char *end = memmem (p, c->in_len - at, "\r\n\r\n", 4);
        if (!end)
            break;
        *end = 0;
        char *cl = strcasestr (p, "\r\nContent-Length:");
        size_t blen = cl ? strtoull (cl + 17, NULL, 10) : 0;
        size_t hlen = (size_t)(end + 4 - p);
        if (c->in_len - at < hlen + blen) {
            *end = '\r';
            break;
        }
        int status = atoi (p + 9);
        char *body = end + 4;
        if (status == 200) {
            api->ok++;
            char save = body[blen];
            body[blen] = 0;
            char *conns = strstr (body, "\"connections\":");
            if (conns)
                api->reached += strtoull (conns + 14, NULL, 10);
            else { //  rooms: {"rooms":{"R":N}}
                char *colon = strstr (body, "\":");
                colon = colon ? strstr (colon + 2, "\":") : NULL;
                if (colon)
                    api->reached += strtoull (colon + 2, NULL, 10);
            }
            body[blen] = save;
        } else {
            if (api->failed++ < 5)
                fprintf (stderr, "zim-bench: API answered %d: %.*s\n", status, (int)blen, body);
        }
        c->inflight--;
        at += hlen + blen;
    }
    memmove (c->in, c->in + at, c->in_len - at);
    c->in_len -= at;
    return 0;
}

//  Reads what the API connections have, waiting up to timeout_ms.
static void s_api_poll (s_api_t *api, int timeout_ms)
{
    struct pollfd pfd[64];
    uint32_t n = api->nconns < 64 ? api->nconns : 64;
    for (uint32_t i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = api->conn[i].fd, .events = POLLIN};
    if (poll (pfd, n, timeout_ms) <= 0)
        return;
    for (uint32_t i = 0; i < n; i++) {
        s_http_t *c = &api->conn[i];
        if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) || c->fd < 0)
            continue;
        if (c->in_cap - c->in_len < 16384) {
            c->in_cap *= 2;
            c->in = realloc (c->in, c->in_cap);
        }
        ssize_t r = recv (c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1, MSG_DONTWAIT);
        if (r > 0) {
            c->in_len += (size_t)r;
            s_api_answers (api, c);
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
            fprintf (stderr, "zim-bench: the API closed a connection\n");
            api->failed += c->inflight;
            close (c->fd);
            c->fd = -1;
        }
    }
}

//  The connection with the most room, or NULL if every one is full.
static s_http_t *s_api_pick (s_api_t *api)
{
    s_http_t *best = NULL;
    for (uint32_t i = 0; i < api->nconns; i++) {
        s_http_t *c = &api->conn[i];
        if (c->fd >= 0 && c->inflight < api->window && (!best || c->inflight < best->inflight))
            best = c;
    }
    return best;
}

//  Sends POST path?query with a msgpack body on c; -1 on failure.
static int s_api_post (s_api_t *api, s_http_t *c, const char *path, const char *query,
                       const uint8_t *body, size_t blen)
{
    size_t need = strlen (query) + blen + 512;
    if (api->req_cap < need) {
        api->req_cap = need * 2;
        api->req = realloc (api->req, api->req_cap);
    }
    int h = snprintf (api->req, api->req_cap,
                      "POST %s?%s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/msgpack\r\nContent-Length: %zu\r\n\r\n",
                      path, query, api->host, api->port, api->key, blen);
    memcpy (api->req + h, body, blen);
    size_t len = (size_t)h + blen, off = 0;
    while (off < len) {
        ssize_t n = send (c->fd, api->req + off, len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else
            return -1;
    }
    c->inflight++;
    api->sent++;
    return 0;
}

//  -------------------------------------------------------------------------
//  The runs

typedef struct {
    bool push; //  push, else room
    uint32_t members, rate, messages, gateways, procs, sources, size, timeout_s;
    uint32_t batch, conns, window;
    bool via_api, json;
    const char *metrics; //  HOST:PORT of the first gateway worker's metrics
    const char *api;     //  HOST:PORT
    const char *api_key;
    char host[64], path[128];
    int port;
} s_opts_t;

//  The API key: given, $ZIM_API_KEY, or the dev default's file.
static char *s_api_key (const char *given)
{
    if (given)
        return strdup (given);
    const char *env = getenv ("ZIM_API_KEY");
    if (env && *env)
        return strdup (env);
    char path[600];
    const char *data = getenv ("ZIM_DATA");
    snprintf (path, sizeof path, "%s/app-demo.apikey", data && *data ? data : "./zim-data");
    FILE *f = fopen (path, "r");
    char line[300] = "";
    if (!f || !fgets (line, sizeof line, f)) {
        if (f)
            fclose (f);
        return NULL;
    }
    fclose (f);
    line[strcspn (line, "\r\n ")] = 0;
    return strdup (line);
}

static int s_parse_opts (int argc, char **argv, s_opts_t *o)
{
    static const struct option options[] = {
        {"members", required_argument, NULL, 'N'},  {"users", required_argument, NULL, 'N'},
        {"rate", required_argument, NULL, 'R'},     {"messages", required_argument, NULL, 'M'},
        {"gateways", required_argument, NULL, 'G'}, {"procs", required_argument, NULL, 'P'},
        {"sources", required_argument, NULL, 's'},  {"size", required_argument, NULL, 'S'},
        {"timeout", required_argument, NULL, 'T'},  {"batch", required_argument, NULL, 'K'},
        {"conns", required_argument, NULL, 'C'},    {"window", required_argument, NULL, 'W'},
        {"via", required_argument, NULL, 'v'},      {"metrics", required_argument, NULL, 'm'},
        {"api", required_argument, NULL, 'a'},      {"api-key", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'J'},           {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long (argc, argv, "", options, NULL)) != -1) {
        uint32_t *field = c == 'N'   ? &o->members
                          : c == 'R' ? &o->rate
                          : c == 'M' ? &o->messages
                          : c == 'G' ? &o->gateways
                          : c == 'P' ? &o->procs
                          : c == 's' ? &o->sources
                          : c == 'S' ? &o->size
                          : c == 'T' ? &o->timeout_s
                          : c == 'K' ? &o->batch
                          : c == 'C' ? &o->conns
                          : c == 'W' ? &o->window
                                     : NULL;
        uint32_t max = c == 'G' || c == 'C' ? S_MAX_GW : c == 's' ? 254 : 100000000;
        if (field) {
            if (zim_benchkit_parse_num (optarg, max, field)) {
                fprintf (stderr, "zim-bench: bad value '%s' (1..%u)\n", optarg, max);
                return -1;
            }
        } else if (c == 'v' && (!strcmp (optarg, "client") || !strcmp (optarg, "api")))
            o->via_api = !strcmp (optarg, "api");
        else if (c == 'm')
            o->metrics = optarg;
        else if (c == 'a')
            o->api = optarg;
        else if (c == 'k')
            o->api_key = optarg;
        else if (c == 'J')
            o->json = true;
        else {
            fprintf (stderr, "zim-bench: bad option. Try 'zim-bench --help'.\n");
            return -1;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "zim-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->size < ZIM_BENCHKIT_STAMP || o->size > 60000) {
        fprintf (stderr, "zim-bench: --size must be %d..60000\n", ZIM_BENCHKIT_STAMP);
        return -1;
    }
    if (o->batch > o->members)
        o->batch = o->members;
    return 0;
}

//  The stamped body, a msgpack bin of o->size bytes; returns its length.
static size_t s_body (uint8_t *buf, uint32_t size, uint64_t t, uint32_t index, uint32_t n)
{
    size_t h = 0;
    if (size <= 255) {
        buf[h++] = 0xc4;
        buf[h++] = (uint8_t)size;
    } else {
        buf[h++] = 0xc5;
        buf[h++] = (uint8_t)(size >> 8);
        buf[h++] = (uint8_t)size;
    }
    memset (buf + h, 'x', size);
    zim_benchkit_stamp (buf + h, t, index, n);
    return h + size;
}

//  HOST:PORT, or http://HOST:PORT[/] as the server's ready line prints the
//  API's address.
static int s_hostport (const char *text, char *host, size_t hsize, int *port)
{
    if (strncmp (text, "http://", 7) == 0)
        text += 7;
    const char *colon = strrchr (text, ':');
    if (!colon || (size_t)(colon - text) >= hsize)
        return -1;
    memcpy (host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    *port = atoi (colon + 1);
    return *port > 0 ? 0 : -1;
}

static double s_cpu_all (void)
{
    struct rusage ru;
    getrusage (RUSAGE_CHILDREN, &ru);
    return zim_benchkit_cpu_s () + (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int zim_rbench_main (int argc, char **argv, const char *url, const char *app,
                     zim_rbench_mint_fn *mint, void *arg)
{
    (void)app;
    s_opts_t o = {.members = 1000,
                  .rate = 100,
                  .messages = 200,
                  .gateways = 1,
                  .sources = 4,
                  .size = 32,
                  .timeout_s = 30,
                  .batch = 100,
                  .conns = 2,
                  .window = 32};
    o.push = strcmp (argv[0], "push") == 0;
    if (o.push) {
        o.rate = 50000;
        o.messages = 100;
    }
    if (s_parse_opts (argc, argv, &o))
        return 2;
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    if (sscanf (url, "ws://%63[^:/]:%d%127s", o.host, &o.port, o.path) != 3) {
        fprintf (stderr, "zim-bench: the URL must be ws://IPV4:PORT/PATH\n");
        return 2;
    }
    if (!o.procs)
        o.procs = (o.members + 4999) / 5000;
    char api_host[64] = "127.0.0.1";
    int api_port = 7701;
    if (o.api && s_hostport (o.api, api_host, sizeof api_host, &api_port)) {
        fprintf (stderr, "zim-bench: --api wants HOST:PORT\n");
        return 2;
    }
    char *api_key = NULL;
    if (o.push || o.via_api) {
        api_key = s_api_key (o.api_key);
        if (!api_key) {
            fprintf (stderr, "zim-bench: no API key: give --api-key, set ZIM_API_KEY, or run "
                             "where zim-data/app-demo.apikey is (or set ZIM_DATA)\n");
            return 2;
        }
    }
    //  The gateways' metrics: the URL's port, or --metrics PORT .. PORT+G-1.
    int mports[S_MAX_GW];
    char mhost[64];
    snprintf (mhost, sizeof mhost, "%s", o.host);
    uint32_t nm = 1;
    mports[0] = o.port;
    if (o.metrics) {
        if (s_hostport (o.metrics, mhost, sizeof mhost, &mports[0])) {
            fprintf (stderr, "zim-bench: --metrics wants HOST:PORT\n");
            free (api_key);
            return 2;
        }
        nm = o.gateways;
        for (uint32_t i = 1; i < nm; i++)
            mports[i] = mports[0] + (int)i;
    } else if (o.gateways > 1)
        fprintf (stderr,
                 "zim-bench: %u gateways but no --metrics: the drops read are those of "
                 "whichever worker answers the URL's /metrics\n",
                 o.gateways);

    //  Tokens: room members share users (S_PER_USER connections each); push
    //  needs one user per connection.
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)zim_benchkit_now_us ();
    rnd &= 0xffffff;
    uint32_t per_token = o.push ? 1 : S_PER_USER;
    uint32_t ntokens = (o.members + per_token - 1) / per_token;
    char **tokens = calloc (ntokens + 1, sizeof *tokens);
    char **uids = calloc (ntokens + 1, sizeof *uids);
    char room[64];
    snprintf (room, sizeof room, "bench-%06x", rnd);
    uint64_t t0 = zim_benchkit_now_us ();
    int status = 0;
    for (uint32_t i = 0; i <= ntokens && status == 0; i++) {
        char uid[64];
        if (i < ntokens)
            snprintf (uid, sizeof uid, "%c%06x-u%u", o.push ? 'p' : 'r', rnd, i);
        else
            snprintf (uid, sizeof uid, "r%06x-pub", rnd);
        uids[i] = strdup (uid);
        if (i == ntokens && (o.push || o.via_api))
            break; //  no publishing connection
        tokens[i] = mint (arg, uid);
        if (!tokens[i])
            status = 3;
    }
    uint64_t t_tokens = zim_benchkit_now_us ();
    s_gwstats_t before, after;
    s_read_gateways (mhost, mports, nm, &before);
    if (before.read < nm)
        fprintf (stderr, "zim-bench: only %u of %u gateways' metrics answered\n", before.read, nm);
    uint64_t t_fan = zim_benchkit_now_us (); //  the connecting starts

    zim_fanout_config_t cfg = {.proto = ZIM_FANOUT_WS,
                               .host = o.host,
                               .port = o.port,
                               .path = o.path,
                               .count = o.members,
                               .procs = o.procs,
                               .sources = o.sources,
                               .tokens = tokens,
                               .per_token = per_token,
                               .room = o.push ? NULL : room,
                               .op = o.push ? "push" : "room",
                               .messages = o.messages};
    zim_fanout_t *fan = status ? NULL : zim_fanout_new (&cfg);
    if (!status && !fan)
        status = 3;
    uint64_t up = fan ? zim_fanout_wait_ready (fan, S_SETUP_MS) : 0;
    if (status == 0 && up < o.members) {
        fprintf (stderr, "zim-bench: only %" PRIu64 " of %u connections %s\n", up, o.members,
                 o.push ? "authenticated" : "authenticated and joined");
        status = 3;
    }
    uint64_t t_ready = zim_benchkit_now_us ();
    s_read_gateways (mhost, mports, nm, &after); //  where the connections went
    zim_fanout_pub_t *pub = NULL;
    s_api_t api = {.nconns = o.push ? o.conns : 1,
                   .window = o.window,
                   .host = api_host,
                   .port = api_port,
                   .key = api_key};
    if (status == 0 && !o.push && !o.via_api &&
        !(pub = zim_fanout_pub_new (&cfg, tokens[ntokens], 10000)))
        status = 3;
    if (status == 0 && (o.push || o.via_api) && s_api_open (&api))
        status = 3;

    //  Publish, paced: request k is due at t_start + k * per / rate.
    uint64_t requests =
        o.push ? (uint64_t)o.messages * ((o.members + o.batch - 1) / o.batch) : o.messages;
    uint32_t groups = o.push ? (o.members + o.batch - 1) / o.batch : 1;
    double per = o.push ? (double)o.batch : 1.0; //  deliveries per request, per connection
    uint64_t expect = (uint64_t)o.members * o.messages;
    uint64_t t_start = 0, t_end = 0, sent = 0, behind_max = 0;
    zim_benchkit_hist_t behind;
    memset (&behind, 0, sizeof behind);
    double cpu0 = s_cpu_all ();
    size_t qcap = (size_t)o.batch * 80 + 16;
    char *query = malloc (qcap);
    uint8_t body[70000];
    if (status == 0) {
        t_start = zim_benchkit_now_us () + 1000;
        uint64_t deadline = 0;
        while (true) {
            uint64_t now = zim_benchkit_now_us ();
            while (sent < requests) {
                uint64_t due = t_start + (uint64_t)((double)sent * per * 1e6 / o.rate);
                if (due > now)
                    break;
                uint32_t m = (uint32_t)(sent / groups), g = (uint32_t)(sent % groups);
                size_t blen = s_body (body, o.size, due, g, m);
                int rc = 0;
                if (pub)
                    rc = zim_fanout_pub_send (pub, body, blen);
                else {
                    s_http_t *c = s_api_pick (&api);
                    bool any = false;
                    for (uint32_t i = 0; i < api.nconns; i++)
                        any = any || api.conn[i].fd >= 0;
                    if (any && !c)
                        break; //  every connection's window is full: wait for answers
                    if (!any)
                        rc = -1;
                    else if (o.push) {
                        size_t q = (size_t)snprintf (query, qcap, "users=");
                        for (uint32_t u = g * o.batch; u < o.members && u < (g + 1) * o.batch; u++)
                            q += (size_t)snprintf (query + q, qcap - q, "%s%s",
                                                   u == g * o.batch ? "" : ",", uids[u]);
                        rc = s_api_post (&api, c, "/v1/push/users", query, body, blen);
                    } else {
                        snprintf (query, qcap, "rooms=%s", room);
                        rc = s_api_post (&api, c, "/v1/push/rooms", query, body, blen);
                    }
                }
                if (rc) {
                    fprintf (stderr, "zim-bench: the publisher's connection is gone\n");
                    requests = sent;
                    break;
                }
                zim_benchkit_hist_add (&behind, now - due);
                if (now - due > behind_max)
                    behind_max = now - due;
                sent++;
            }
            if (sent == requests && !deadline) {
                t_end = zim_benchkit_now_us ();
                deadline = t_end + (uint64_t)o.timeout_s * 1000000;
            }
            if (deadline && (zim_fanout_delivered (fan) >= expect || now > deadline))
                break;
            if (s_interrupted) {
                fprintf (stderr, "zim-bench: interrupted\n");
                status = 1;
                break;
            }
            if (zim_fanout_dead (fan)) {
                status = 3;
                break;
            }
            //  Wait for the next due time (at most 1 ms), reading answers.
            uint64_t next = sent < requests
                                ? t_start + (uint64_t)((double)sent * per * 1e6 / o.rate)
                                : now + 1000;
            int wait_ms = next > now + 1000 ? 1 : 0;
            if (pub)
                zim_fanout_pub_poll (pub, wait_ms);
            else
                s_api_poll (&api, wait_ms);
            now = zim_benchkit_now_us ();
            if (!wait_ms && next > now && next - now < 1000)
                zim_benchkit_sleep_us (next - now);
        }
        //  The last answers.
        uint64_t until = zim_benchkit_now_us () + 2000000;
        uint64_t acked = 0, perr = 0;
        bool open = true;
        while (zim_benchkit_now_us () < until) {
            if (pub) {
                zim_fanout_pub_counts (pub, &acked, &perr, &open);
                if (acked + perr >= sent || !open)
                    break;
                zim_fanout_pub_poll (pub, 10);
            } else {
                if (api.ok + api.failed >= api.sent)
                    break;
                s_api_poll (&api, 10);
            }
        }
    }
    zim_fanout_result_t r;
    memset (&r, 0, sizeof r);
    if (fan)
        zim_fanout_stop (fan, &r);
    double cpu = s_cpu_all () - cpu0;
    s_gwstats_t mid = after;
    s_read_gateways (mhost, mports, nm, &after);

    if (status == 0) {
        uint64_t packed = 0, perr = 0;
        bool open = true;
        if (pub)
            zim_fanout_pub_counts (pub, &packed, &perr, &open);
        else {
            packed = api.ok;
            perr = api.failed;
        }
        uint64_t missing = expect > r.delivered ? expect - r.delivered : 0;
        uint64_t dropped = after.room_dropped - before.room_dropped;
        uint64_t cuts = after.slow_cuts - before.slow_cuts;
        uint64_t gone = after.out_gone - before.out_gone;
        double secs = r.t_last > t_start ? (double)(r.t_last - t_start) / 1e6 : 0;
        double rate = secs > 0 ? (double)r.delivered / secs : 0;
        double p50 = zim_benchkit_hist_pct_ms (&r.hist, 50);
        double p99 = zim_benchkit_hist_pct_ms (&r.hist, 99);
        double pmax = zim_benchkit_hist_pct_ms (&r.hist, 100);
        double b99 = zim_benchkit_hist_pct_ms (&behind, 99);
        const char *what = o.push ? "pushes" : "deliveries";
        char spread[400] = "";
        size_t sl = 0;
        for (uint32_t i = 0; i < nm && nm > 1 && sl < sizeof spread - 24; i++)
            sl += (size_t)snprintf (spread + sl, sizeof spread - sl, "%s%" PRIu64, i ? "/" : "",
                                    mid.authed[i] - before.authed[i]);
        if (o.json)
            printf ("{\"scenario\":\"%s\",\"members\":%u,\"rate\":%u,\"messages\":%u,"
                    "\"gateways\":%u,\"via\":\"%s\",\"batch\":%u,\"size\":%u,\"procs\":%u,"
                    "\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"publish_errors\":%" PRIu64
                    ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"missing\":%" PRIu64
                    ",\"duplicates\":%" PRIu64 ",\"out_of_order\":%" PRIu64
                    ",\"unexpected\":%" PRIu64 ",\"closed\":%" PRIu64 ",\"errors\":%" PRIu64
                    ",\"gw_dropped\":%" PRIu64 ",\"gw_slow_cuts\":%" PRIu64
                    ",\"gw_out_gone\":%" PRIu64 ",\"elapsed_s\":%.3f,\"deliveries_per_s\":%.1f,"
                    "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"behind_p99_ms\":%.3f,"
                    "\"client_cpu_s\":%.3f,\"connect_s\":%.3f,\"tokens_s\":%.3f,"
                    "\"retried\":%" PRIu64 "}\n",
                    o.push ? "push" : "room", o.members, o.rate, o.messages, o.gateways,
                    o.push      ? "api"
                    : o.via_api ? "api"
                                : "client",
                    o.push ? o.batch : 1, o.size, o.procs, sent, packed, perr, expect, r.delivered,
                    missing, r.duplicates, r.out_of_order, r.unexpected, r.closed, r.errors,
                    dropped, cuts, gone, secs, rate, p50, p99, pmax, b99, cpu,
                    (double)(t_ready - t_fan) / 1e6, (double)(t_tokens - t0) / 1e6, r.retried);
        else {
            if (o.push)
                printf ("zim-bench push: %u users online, %u pushes each at %u user pushes/s "
                        "offered, %u users per request, %u HTTP connections, %s\n",
                        o.members, o.messages, o.rate, o.batch, o.conns, url);
            else
                printf ("zim-bench room: %u members in one room, %u messages at %u msgs/s (%s), "
                        "%u-byte bodies, %u gateway(s), %s\n",
                        o.members, o.messages, o.rate,
                        o.via_api ? "backend POST /v1/push/rooms" : "client publish", o.size,
                        o.gateways, url);
            printf ("  setup      %.2f s tokens, %.2f s to connect %u connections (%u client "
                    "processes, %" PRIu64 " handshakes tried again)%s%s\n",
                    (double)(t_tokens - t0) / 1e6, (double)(t_ready - t_fan) / 1e6, o.members,
                    o.procs, r.retried, *spread ? "; per gateway " : "", spread);
            printf ("  published  %" PRIu64 " requests in %.3f s, %" PRIu64 " answered ok, %" PRIu64
                    " refused; behind schedule p99 %.2f ms, max %.2f ms\n",
                    sent, t_end > t_start ? (double)(t_end - t_start) / 1e6 : 0, packed, perr, b99,
                    (double)behind_max / 1e3);
            printf ("  delivered  %" PRIu64 " of %" PRIu64 " %s in %.3f s: %.0f %s/s\n",
                    r.delivered, expect, what, secs, rate, what);
            printf ("  latency    p50 %.2f ms, p99 %.2f ms, max %.2f ms (scheduled %s to "
                    "delivery)\n",
                    p50, p99, pmax, o.push ? "push" : "publish");
            printf ("  drops      gateway: %" PRIu64 " room frames dropped, %" PRIu64
                    " slow connections cut, %" PRIu64 " deliveries to gone connections (%u of %u "
                    "gateways read); clients: %" PRIu64
                    " missing (fewest on one connection %" PRIu64 " of %u), %" PRIu64 " closed\n",
                    dropped, cuts, gone, after.read, nm, missing, r.min_conn, o.messages, r.closed);
            printf ("  problems   %" PRIu64 " duplicates, %" PRIu64 " out of order, %" PRIu64
                    " unexpected, %" PRIu64 " error frames\n",
                    r.duplicates, r.out_of_order, r.unexpected, r.errors);
            printf ("  client     %.2f s CPU (%.2f us per delivery)\n", cpu,
                    r.delivered ? cpu * 1e6 / (double)r.delivered : 0);
        }
        if (missing || r.duplicates || r.unexpected || r.errors || perr || dropped || cuts ||
            r.closed || sent < requests || (!o.push && r.out_of_order))
            status = 1;
    }
    zim_fanout_pub_destroy (&pub);
    zim_fanout_destroy (&fan);
    s_api_close (&api);
    for (uint32_t i = 0; i <= ntokens; i++) {
        free (tokens[i]);
        free (uids[i]);
    }
    free (tokens);
    free (uids);
    free (query);
    free (api_key);
    return status;
}
