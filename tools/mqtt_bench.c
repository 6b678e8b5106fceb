/*  mqtt_bench.c: mqtt-bench, an MQTT 3.1.1 QoS 1 load generator, so that zim
    can be measured side by side with an MQTT broker (tools/bench-compare).
    Same method as zim-bench p2p: sender/recipient pairs on one epoll loop
    over raw TCP sockets, delivered messages per second and send-to-deliver
    latency measured at the recipients, every message checked: none lost,
    none twice, each pair in send order. Closed-loop (a publish per PUBACK)
    or, with --rate, open-loop paced exactly as zim-bench --rate.
*/
#include "config.h"
#include "tools/mqtt_fanout.h"
#include "tools/zim_benchkit.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

//  Exit codes, as zim-bench.
#define EXIT_LOST 1  //  a message was lost, duplicated, reordered or refused
#define EXIT_USAGE 2 //  bad command line
#define EXIT_SETUP 3 //  connections or subscriptions did not come up

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT "1883"
#define HEADER_SIZE ZIM_BENCHKIT_STAMP       //  body: send time (8), pair (4), message number (4)
#define READ_CHUNK 65536     //  bytes asked of each read ()
#define MAX_PACKET (1 << 20) //  larger incoming packets are a protocol error
#define S_TICK_US 250        //  --rate: longest sleep between two looks at the sockets

//  MQTT 3.1.1 control packet types (high nibble of the first byte).
#define MQTT_CONNECT 0x10
#define MQTT_CONNACK 0x20
#define MQTT_PUBLISH 0x30
#define MQTT_PUBACK 0x40
#define MQTT_SUBSCRIBE 0x80
#define MQTT_SUBACK 0x90
#define MQTT_PINGRESP 0xd0
#define MQTT_DISCONNECT 0xe0

static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: mqtt-bench [-H HOST] [-p PORT] [p2p] [OPTIONS]\n"
             "       mqtt-bench [-H HOST] [-p PORT] fanout [OPTIONS]\n"
             "\n"
             "MQTT 3.1.1 load generator for a running broker (Mosquitto, say), with the\n"
             "method of zim-bench p2p, so the two can be compared (tools/bench-compare).\n"
             "\n"
             "N senders each publish M messages at QoS 1 to their own topic, keeping at\n"
             "most W publishes without PUBACK; each topic has one recipient subscribed at\n"
             "QoS 1, which PUBACKs every delivery. Bodies hold the send time. Measured at\n"
             "the recipients: delivered messages per second (from the first send to the\n"
             "last delivery), send-to-deliver latency p50/p99/max; at the senders: PUBACKs\n"
             "per second. Every message is checked: none lost, none twice, each pair in\n"
             "send order. One thread, one epoll loop, raw TCP sockets with TCP_NODELAY;\n"
             "the packets queued for a connection in one loop turn go out in one write.\n"
             "\n"
             "With --rate R the senders are open-loop, as in zim-bench: message k of pair\n"
             "i is due at (k * N + i) / R seconds after the start, published when due\n"
             "(the window still caps publishes without PUBACK); between looks at the\n"
             "sockets the client sleeps at most 0.25 ms; latency counts from the\n"
             "scheduled time and 'behind' says how late publishes left.\n"
             "\n"
             "Options:\n"
             "  -H, --host HOST    broker host (default %s)\n"
             "  -p, --port PORT    broker port (default %s)\n"
             "  --pairs N          sender/recipient pairs, one connection each (default 10)\n"
             "  --messages M       messages per sender (default 1000)\n"
             "  --window W         publishes without PUBACK per sender, 1..65535 (default 64)\n"
             "  --rate R           messages/s offered in total across all pairs, paced\n"
             "                     open-loop (default 0: closed-loop, as fast as the\n"
             "                     window allows)\n"
             "  --size BYTES       payload size, at least %d (default 32)\n"
             "  --timeout S        give up S seconds after the first send; with --rate, after\n"
             "                     the last scheduled send (default 60)\n"
             "  --write-each       one write () per packet instead of one per connection and\n"
             "                     loop turn: the load of a naive client, more broker wakeups\n"
             "  --json             print one JSON line (zim-bench's keys) instead of the summary\n"
             "  -h, --help         this text\n"
             "  --version          print the version\n"
             "\n"
             "Client ids and topics are mqtt-bench-<random>-s<i>, -r<i> and\n"
             "mqtt-bench/<random>/<i>, new on every run, clean sessions, keepalive off.\n"
             "\n"
             "%s\n"
             "Exit status: 0 every message delivered once and in order, 1 something was\n"
             "lost, duplicated, reordered or refused, 2 usage, 3 setup failed.\n"
             "\n"
             "Examples:\n"
             "  mqtt-bench -p 1883 --pairs 50 --messages 2000 --window 64\n"
             "  mqtt-bench -p 1883 fanout --subscribers 10000 --rate 100 --messages 1000\n"
             "  tools/bench-compare     # zim-server and mosquitto, side by side\n",
             DEFAULT_HOST, DEFAULT_PORT, HEADER_SIZE, mqtt_fanout_usage);
}

typedef enum {
    S_CONNACK, //  CONNECT sent, waiting for CONNACK
    S_SUBACK,  //  recipient: SUBSCRIBE sent, waiting for SUBACK
    S_READY,   //  connected (and subscribed)
    S_CLOSED   //  socket closed
} s_state_t;

struct s_pair;

//  One TCP connection to the broker.
typedef struct {
    struct s_pair *pair; //  the pair it belongs to
    bool is_sender;      //  sender, else recipient
    int fd;              //  socket, -1 once closed
    s_state_t state;     //  protocol state
    uint8_t *in;         //  bytes read, not yet parsed
    size_t in_len;       //  bytes in in
    size_t in_cap;       //  size of in
    uint8_t *out;        //  packets queued; those from out_off on are not yet written
    size_t out_off;      //  bytes of out already written
    size_t out_len;      //  bytes in out
    size_t out_cap;      //  size of out
    bool dirty;          //  on the flush list
    bool want_out;       //  EPOLLOUT registered (a write was short)
} s_conn_t;

//  One sender/recipient pair.
typedef struct s_pair {
    struct s_bench *bench; //  the run
    uint32_t index;        //  pair number
    s_conn_t sender;       //  publishes to topic
    s_conn_t recipient;    //  subscribed to topic
    char topic[64];        //  the pair's topic
    uint16_t topic_len;    //  its length
    uint32_t sent;         //  publishes queued
    uint32_t inflight;     //  publishes without PUBACK
    uint8_t *pending;      //  bitmap of packet ids without PUBACK (65536 bits)
    int64_t last_n;        //  number of the last message delivered, -1 none
    uint8_t *seen;         //  bitmap of delivered message numbers
} s_pair_t;

//  The run.
typedef struct s_bench {
    uint32_t pairs, messages, window, size; //  shape of the run
    uint32_t rate;                          //  messages/s offered in total, 0: closed-loop
    s_pair_t *pair;                         //  pairs
    int epfd;                               //  epoll instance
    s_conn_t **dirty;                       //  connections with queued output
    size_t ndirty;                          //  entries in dirty
    uint8_t *body;                          //  payload template
    uint64_t t_first_send;                  //  µs, monotonic
    uint64_t t_last_ack;                    //  µs, last PUBACK
    uint64_t t_last_delivery;               //  µs, last delivery
    uint64_t acked, errors, delivered, duplicates, out_of_order, unexpected; //  counts
    uint64_t closed;         //  connections lost after they were ready
    uint32_t senders_closed; //  senders whose connection closed
    uint32_t *latency;       //  µs per delivered message
    uint64_t nlatency;       //  entries in latency
    uint32_t *lag;           //  --rate: µs each publish left after its scheduled time
    uint64_t nlag;           //  entries in lag
    uint32_t ready;          //  connections ready (recipients subscribed)
    uint32_t failed;         //  connections that could not get ready
    bool running;            //  sending has started
    bool stopping;           //  closing at the end: closes are expected
    bool write_each;         //  one write per packet, as a naive client does
} s_bench_t;

static volatile sig_atomic_t s_interrupted = 0;

static void s_flush (s_conn_t *conn);

static void s_on_signal (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

//  Allocates or aborts: out of memory ends a benchmark anyway.
static void *s_alloc (void *old, size_t size)
{
    void *p = realloc (old, size ? size : 1);
    if (!p) {
        fprintf (stderr, "mqtt-bench: out of memory\n");
        abort ();
    }
    return p;
}

//  Returns room for n more bytes at the end of conn's output, marking it for
//  the flush at the end of this loop turn.
static uint8_t *s_out_reserve (s_conn_t *conn, size_t n)
{
    s_bench_t *b = conn->pair->bench;
    if (conn->out_len + n > conn->out_cap && conn->out_off) {
        //  written bytes make room; moved only here, so no memmove per write
        memmove (conn->out, conn->out + conn->out_off, conn->out_len - conn->out_off);
        conn->out_len -= conn->out_off;
        conn->out_off = 0;
    }
    if (conn->out_len + n > conn->out_cap) {
        size_t cap = conn->out_cap ? conn->out_cap : 4096;
        while (cap < conn->out_len + n)
            cap *= 2;
        conn->out = s_alloc (conn->out, cap);
        conn->out_cap = cap;
    }
    if (!conn->dirty) {
        conn->dirty = true;
        b->dirty[b->ndirty++] = conn;
    }
    uint8_t *p = conn->out + conn->out_len;
    conn->out_len += n;
    return p;
}

//  Writes an MQTT fixed header (type byte, remaining length) at p; returns bytes written.
static size_t s_fixed_header (uint8_t *p, uint8_t type, size_t rem)
{
    size_t n = 0;
    p[n++] = type;
    do {
        uint8_t digit = rem % 128;
        rem /= 128;
        p[n++] = rem ? digit | 0x80 : digit;
    } while (rem);
    return n;
}

//  Bytes of a fixed header for this remaining length.
static size_t s_fixed_header_size (size_t rem)
{
    return rem < 128 ? 2 : rem < 16384 ? 3 : rem < 2097152 ? 4 : 5;
}

//  Writes an MQTT UTF-8 string (16-bit big-endian length, bytes) at p; returns bytes written.
static size_t s_string (uint8_t *p, const char *s, size_t len)
{
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy (p + 2, s, len);
    return 2 + len;
}

//  Queues CONNECT: clean session, keepalive off, client id id.
static void s_send_connect (s_conn_t *conn, const char *id)
{
    static const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0};
    size_t idlen = strlen (id);
    size_t rem = sizeof vh + 2 + idlen;
    uint8_t *p = s_out_reserve (conn, s_fixed_header_size (rem) + rem);
    p += s_fixed_header (p, MQTT_CONNECT, rem);
    memcpy (p, vh, sizeof vh);
    s_string (p + sizeof vh, id, idlen);
}

//  Queues SUBSCRIBE to the pair's topic at QoS 1, packet id 1.
static void s_send_subscribe (s_conn_t *conn)
{
    s_pair_t *pair = conn->pair;
    size_t rem = 2 + 2 + pair->topic_len + 1;
    uint8_t *p = s_out_reserve (conn, s_fixed_header_size (rem) + rem);
    p += s_fixed_header (p, MQTT_SUBSCRIBE | 0x02, rem);
    *p++ = 0;
    *p++ = 1;
    p += s_string (p, pair->topic, pair->topic_len);
    *p = 1;
}

//  Queues PUBACK for packet id pid.
static void s_send_puback (s_conn_t *conn, uint16_t pid)
{
    uint8_t *p = s_out_reserve (conn, 4);
    p[0] = MQTT_PUBACK;
    p[1] = 2;
    p[2] = (uint8_t)(pid >> 8);
    p[3] = (uint8_t)pid;
    if (conn->pair->bench->write_each)
        s_flush (conn);
}

//  Scheduled send time (µs) of message n of pair under --rate.
static uint64_t s_due_us (s_bench_t *b, s_pair_t *pair, uint32_t n)
{
    return zim_benchkit_due_us (b->t_first_send, b->rate, b->pairs, pair->index, n);
}

//  Queues the pair's next message as a QoS 1 PUBLISH stamped with the time
//  now, or with its scheduled time under --rate.
static void s_send_next (s_pair_t *pair)
{
    s_bench_t *b = pair->bench;
    uint64_t now = zim_benchkit_now_us (), t = now;
    if (b->rate) {
        t = s_due_us (b, pair, pair->sent);
        b->lag[b->nlag++] = now > t ? (uint32_t)(now - t < UINT32_MAX ? now - t : UINT32_MAX) : 0;
    }
    uint16_t pid = (uint16_t)(pair->sent % 65535 + 1);
    if (pair->pending[pid / 8] & (1u << (pid % 8))) {
        //  only if PUBACKs came back far out of order: a broker bug
        fprintf (stderr, "mqtt-bench: pair %u: packet id %u still without PUBACK\n", pair->index,
                 pid);
        b->errors++;
        pair->sent++;
        return;
    }
    size_t rem = 2 + pair->topic_len + 2 + b->size;
    uint8_t *p = s_out_reserve (&pair->sender, s_fixed_header_size (rem) + rem);
    p += s_fixed_header (p, MQTT_PUBLISH | 0x02, rem);
    p += s_string (p, pair->topic, pair->topic_len);
    *p++ = (uint8_t)(pid >> 8);
    *p++ = (uint8_t)pid;
    memcpy (p, b->body, b->size);
    zim_benchkit_stamp (p, t, pair->index, pair->sent);
    pair->pending[pid / 8] |= (uint8_t)(1u << (pid % 8));
    pair->inflight++;
    pair->sent++;
    if (b->write_each)
        s_flush (&pair->sender);
}

//  Closes conn's socket and accounts for it; why is logged unless the run is ending.
static void s_close (s_conn_t *conn, const char *why)
{
    s_bench_t *b = conn->pair->bench;
    if (conn->state == S_CLOSED)
        return;
    if (!b->stopping) {
        fprintf (stderr, "mqtt-bench: %s %u: connection closed: %s\n",
                 conn->is_sender ? "sender" : "recipient", conn->pair->index, why);
        if (conn->state == S_READY) {
            b->closed++;
            if (conn->is_sender)
                b->senders_closed++;
        } else
            b->failed++;
    }
    conn->state = S_CLOSED;
    close (conn->fd); //  also removes it from the epoll set
    conn->fd = -1;
    conn->out_off = conn->out_len = 0;
}

//  Writes conn's queued output; arms EPOLLOUT when the socket takes less.
static void s_flush (s_conn_t *conn)
{
    s_bench_t *b = conn->pair->bench;
    if (conn->state == S_CLOSED)
        return;
    while (conn->out_off < conn->out_len) {
        ssize_t n =
            send (conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            s_close (conn, strerror (errno));
            return;
        }
        conn->out_off += (size_t)n;
    }
    if (conn->out_off == conn->out_len)
        conn->out_off = conn->out_len = 0;
    bool want = conn->out_len > 0;
    if (want != conn->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = conn};
        if (epoll_ctl (b->epfd, EPOLL_CTL_MOD, conn->fd, &ev) == 0)
            conn->want_out = want;
    }
}

//  Writes the output of every connection that queued some this loop turn.
static void s_flush_all (s_bench_t *b)
{
    for (size_t i = 0; i < b->ndirty; i++) {
        b->dirty[i]->dirty = false;
        s_flush (b->dirty[i]);
    }
    b->ndirty = 0;
}

//  Handles a PUBLISH delivered to a recipient (flags: low nibble of the first byte).
static int s_on_publish (s_conn_t *conn, uint8_t flags, const uint8_t *p, size_t len)
{
    s_pair_t *pair = conn->pair;
    s_bench_t *b = pair->bench;
    uint64_t now = zim_benchkit_now_us ();
    int qos = (flags >> 1) & 3;
    if (len < 2)
        return -1;
    size_t tlen = (size_t)p[0] << 8 | p[1];
    if (len < 2 + tlen + (qos ? 2 : 0))
        return -1;
    const uint8_t *topic = p + 2;
    p += 2 + tlen;
    len -= 2 + tlen;
    if (qos) {
        uint16_t pid = (uint16_t)(p[0] << 8 | p[1]);
        p += 2;
        len -= 2;
        if (qos == 1)
            s_send_puback (conn, pid);
    }
    if (conn->is_sender || qos != 1 || tlen != pair->topic_len ||
        memcmp (topic, pair->topic, tlen) != 0 || len != b->size) {
        b->unexpected++;
        return 0;
    }
    uint64_t t;
    uint32_t index, n;
    zim_benchkit_unstamp (p, &t, &index, &n);
    if (index != pair->index || n >= b->messages ||
        memcmp (p + HEADER_SIZE, b->body + HEADER_SIZE, b->size - HEADER_SIZE) != 0) {
        b->unexpected++;
        return 0;
    }
    if (pair->seen[n / 8] & (1u << (n % 8))) {
        b->duplicates++;
        return 0;
    }
    pair->seen[n / 8] |= (uint8_t)(1u << (n % 8));
    if ((int64_t)n < pair->last_n)
        b->out_of_order++;
    pair->last_n = n;
    b->delivered++;
    b->t_last_delivery = now;
    b->latency[b->nlatency++] =
        now > t ? (uint32_t)(now - t < UINT32_MAX ? now - t : UINT32_MAX) : 0;
    return 0;
}

//  Handles one complete packet from the broker; -1 on a protocol error.
static int s_on_packet (s_conn_t *conn, uint8_t first, const uint8_t *p, size_t len)
{
    s_pair_t *pair = conn->pair;
    s_bench_t *b = pair->bench;
    switch (first & 0xf0) {
    case MQTT_CONNACK:
        if (conn->state != S_CONNACK || len != 2)
            return -1;
        if (p[1] != 0) {
            fprintf (stderr, "mqtt-bench: broker refused the connection (CONNACK code %u)\n", p[1]);
            return -1;
        }
        if (conn->is_sender) {
            conn->state = S_READY;
            b->ready++;
        } else {
            conn->state = S_SUBACK;
            s_send_subscribe (conn);
        }
        return 0;
    case MQTT_SUBACK:
        if (conn->state != S_SUBACK || len != 3 || p[0] != 0 || p[1] != 1)
            return -1;
        if (p[2] != 1) {
            fprintf (stderr, "mqtt-bench: broker granted %s to %s (SUBACK code 0x%02x)\n",
                     p[2] == 0x80 ? "no subscription" : "another QoS than 1", pair->topic, p[2]);
            return -1;
        }
        conn->state = S_READY;
        b->ready++;
        return 0;
    case MQTT_PUBACK: {
        if (!conn->is_sender || conn->state != S_READY || len != 2)
            return -1;
        uint16_t pid = (uint16_t)(p[0] << 8 | p[1]);
        if (!(pair->pending[pid / 8] & (1u << (pid % 8)))) {
            b->unexpected++;
            return 0;
        }
        pair->pending[pid / 8] &= (uint8_t) ~(1u << (pid % 8));
        pair->inflight--;
        b->acked++;
        b->t_last_ack = zim_benchkit_now_us ();
        if (pair->sent < b->messages && !b->rate)
            s_send_next (pair);
        return 0;
    }
    case MQTT_PUBLISH:
        if (conn->state != S_READY)
            return -1;
        return s_on_publish (conn, first & 0x0f, p, len);
    case MQTT_PINGRESP:
        return 0;
    default:
        return -1;
    }
}

//  Reads what the socket has and handles every complete packet.
static void s_on_readable (s_conn_t *conn)
{
    if (conn->in_cap - conn->in_len < READ_CHUNK) {
        size_t cap = conn->in_cap ? conn->in_cap * 2 : 2 * READ_CHUNK;
        while (cap - conn->in_len < READ_CHUNK)
            cap *= 2;
        conn->in = s_alloc (conn->in, cap);
        conn->in_cap = cap;
    }
    ssize_t n = read (conn->fd, conn->in + conn->in_len, conn->in_cap - conn->in_len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        s_close (conn, n == 0 ? "closed by the broker" : strerror (errno));
        return;
    }
    conn->in_len += (size_t)n;
    size_t at = 0;
    while (conn->state != S_CLOSED) {
        //  fixed header: type byte, then 1 to 4 bytes of remaining length
        const uint8_t *p = conn->in + at;
        size_t avail = conn->in_len - at, rem = 0, hdr = 1;
        bool complete = false;
        for (unsigned shift = 0; hdr < avail && hdr <= 4; shift += 7) {
            uint8_t digit = p[hdr++];
            rem |= (size_t)(digit & 0x7f) << shift;
            if (!(digit & 0x80)) {
                complete = true;
                break;
            }
        }
        if (!complete && hdr > 4) {
            s_close (conn, "malformed remaining length from the broker");
            return;
        }
        if (rem > MAX_PACKET) {
            s_close (conn, "packet from the broker is too large");
            return;
        }
        if (!complete || avail - hdr < rem)
            break;
        if (s_on_packet (conn, p[0], p + hdr, rem)) {
            char why[64];
            snprintf (why, sizeof why, "unexpected or malformed packet 0x%02x", p[0]);
            s_close (conn, why);
            return;
        }
        at += hdr + rem;
    }
    if (conn->state == S_CLOSED)
        return;
    memmove (conn->in, conn->in + at, conn->in_len - at);
    conn->in_len -= at;
}

//  Runs the loop for up to timeout_ms: socket events, then one flush per dirty connection.
static void s_loop_run (s_bench_t *b, int timeout_ms)
{
    struct epoll_event ev[256];
    s_flush_all (b);
    int n = epoll_wait (b->epfd, ev, 256, timeout_ms);
    for (int i = 0; i < n; i++) {
        s_conn_t *conn = ev[i].data.ptr;
        if (conn->state == S_CLOSED)
            continue;
        if (ev[i].events & EPOLLOUT)
            s_flush (conn);
        if (conn->state != S_CLOSED && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            s_on_readable (conn);
    }
    s_flush_all (b);
}

//  Opens conn to the broker and queues CONNECT as client id; -1 if the socket fails.
static int s_conn_open (s_bench_t *b, s_conn_t *conn, const struct addrinfo *ai, const char *id)
{
    conn->fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (conn->fd < 0) {
        fprintf (stderr, "mqtt-bench: socket: %s\n", strerror (errno));
        conn->state = S_CLOSED;
        return -1;
    }
    int one = 1;
    setsockopt (conn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect (conn->fd, ai->ai_addr, ai->ai_addrlen)) {
        fprintf (stderr, "mqtt-bench: cannot connect: %s\n", strerror (errno));
        close (conn->fd);
        conn->fd = -1;
        conn->state = S_CLOSED;
        return -1;
    }
    fcntl (conn->fd, F_SETFL, fcntl (conn->fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = conn};
    if (epoll_ctl (b->epfd, EPOLL_CTL_ADD, conn->fd, &ev)) {
        fprintf (stderr, "mqtt-bench: epoll_ctl: %s\n", strerror (errno));
        close (conn->fd);
        conn->fd = -1;
        conn->state = S_CLOSED;
        return -1;
    }
    conn->state = S_CONNACK;
    s_send_connect (conn, id);
    return 0;
}

//  --rate: publishes every message that is due by now and fits in its
//  pair's window. Returns when the next message is due (µs), 0 if none is left.
static uint64_t s_pace (s_bench_t *b)
{
    uint64_t now = zim_benchkit_now_us (), next = 0;
    for (uint32_t i = 0; i < b->pairs; i++) {
        s_pair_t *pair = &b->pair[i];
        if (pair->sender.state != S_READY)
            continue;
        while (pair->sent < b->messages && pair->inflight < b->window &&
               s_due_us (b, pair, pair->sent) <= now)
            s_send_next (pair);
        if (pair->sent < b->messages) {
            uint64_t due = s_due_us (b, pair, pair->sent);
            if (next == 0 || due < next)
                next = due;
        }
    }
    return next;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {{"host", required_argument, NULL, 'H'},
                                            {"port", required_argument, NULL, 'p'},
                                            {"help", no_argument, NULL, 'h'},
                                            {"version", no_argument, NULL, 'V'},
                                            {"json", no_argument, NULL, 'J'},
                                            {"pairs", required_argument, NULL, 'P'},
                                            {"messages", required_argument, NULL, 'M'},
                                            {"window", required_argument, NULL, 'W'},
                                            {"size", required_argument, NULL, 'S'},
                                            {"timeout", required_argument, NULL, 'T'},
                                            {"write-each", no_argument, NULL, 'E'},
                                            {"rate", required_argument, NULL, 'R'},
                                            {NULL, 0, NULL, 0}};
    const char *host = DEFAULT_HOST, *port = DEFAULT_PORT;
    s_bench_t b;
    memset (&b, 0, sizeof b);
    b.pairs = 10;
    b.messages = 1000;
    b.window = 64;
    b.size = 32;
    uint32_t timeout_s = 60;
    bool json = false;
    int c;
    //  fanout takes its own options: the common ones come before it.
    int margc = argc;
    for (int i = 1; i < argc; i++)
        if (strcmp (argv[i], "fanout") == 0) {
            margc = i;
            break;
        }
    while ((c = getopt_long (margc, argv, "H:p:h", options, NULL)) != -1) {
        switch (c) {
        case 'H':
            host = optarg;
            break;
        case 'p':
            port = optarg;
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        case 'V':
            printf ("mqtt-bench %s\n", PACKAGE_VERSION);
            return 0;
        case 'J':
            json = true;
            break;
        case 'E':
            b.write_each = true;
            break;
        case 'R': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull (optarg, &end, 10);
            if (errno || end == optarg || *end || *optarg == '-' || v > 100000000) {
                fprintf (stderr, "mqtt-bench: bad value '%s' for --rate (0..100000000)\n", optarg);
                return EXIT_USAGE;
            }
            b.rate = (uint32_t)v;
            break;
        }
        case 'P':
        case 'M':
        case 'W':
        case 'S':
        case 'T': {
            uint32_t *field = c == 'P'   ? &b.pairs
                              : c == 'M' ? &b.messages
                              : c == 'W' ? &b.window
                              : c == 'S' ? &b.size
                                         : &timeout_s;
            uint32_t max = c == 'P'   ? 10000
                           : c == 'W' ? 65535
                           : c == 'S' ? 60000
                           : c == 'T' ? 86400
                                      : 100000000;
            const char *name = c == 'P'   ? "pairs"
                               : c == 'M' ? "messages"
                               : c == 'W' ? "window"
                               : c == 'S' ? "size"
                                          : "timeout";
            if (zim_benchkit_parse_num (optarg, max, field)) {
                fprintf (stderr, "mqtt-bench: bad value '%s' for --%s (1..%u)\n", optarg, name,
                         max);
                return EXIT_USAGE;
            }
            break;
        }
        default:
            fprintf (stderr, "Try 'mqtt-bench --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (margc < argc) {
        if (optind != margc) {
            fprintf (stderr, "mqtt-bench: what comes before fanout must be options\n");
            return EXIT_USAGE;
        }
        return mqtt_fanout_main (argc - margc, argv + margc, host, atoi (port));
    }
    if (optind < argc && strcmp (argv[optind], "p2p") == 0)
        optind++;
    if (optind != argc) {
        fprintf (stderr, "mqtt-bench: unexpected argument '%s'. Try 'mqtt-bench --help'.\n",
                 argv[optind]);
        return EXIT_USAGE;
    }
    if (b.size < HEADER_SIZE) {
        fprintf (stderr, "mqtt-bench: --size must be at least %d\n", HEADER_SIZE);
        return EXIT_USAGE;
    }
    if ((uint64_t)b.pairs * b.messages > 200000000u) {
        fprintf (stderr, "mqtt-bench: pairs x messages is over 200M\n");
        return EXIT_USAGE;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo (host, port, &hints, &ai);
    if (gai) {
        fprintf (stderr, "mqtt-bench: cannot resolve %s port %s: %s\n", host, port,
                 gai_strerror (gai));
        return EXIT_USAGE;
    }

    //  Two sockets per pair: make sure the descriptor limit allows them.
    struct rlimit rl;
    rlim_t need = (rlim_t)2 * b.pairs + 32;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit (RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < need) {
            fprintf (stderr, "mqtt-bench: %u pairs need %llu descriptors, the limit is %llu\n",
                     b.pairs, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
            freeaddrinfo (ai);
            return EXIT_SETUP;
        }
    }

    //  Payload template: header fields are stamped per message, then padding.
    b.body = s_alloc (NULL, b.size);
    memset (b.body, 0, HEADER_SIZE);
    memset (b.body + HEADER_SIZE, 'x', b.size - HEADER_SIZE);

    //  Fresh client ids and topics for this run.
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)zim_benchkit_now_us ();
    rnd &= 0xffffff;
    b.pair = s_alloc (NULL, (size_t)b.pairs * sizeof *b.pair);
    memset (b.pair, 0, (size_t)b.pairs * sizeof *b.pair);
    b.dirty = s_alloc (NULL, (size_t)2 * b.pairs * sizeof *b.dirty);
    b.latency = s_alloc (NULL, (size_t)b.pairs * b.messages * sizeof *b.latency);
    b.lag = b.rate ? s_alloc (NULL, (size_t)b.pairs * b.messages * sizeof *b.lag) : NULL;
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);

    int status = 0;
    b.epfd = epoll_create1 (EPOLL_CLOEXEC);
    if (b.epfd < 0) {
        fprintf (stderr, "mqtt-bench: epoll_create1: %s\n", strerror (errno));
        status = EXIT_SETUP;
    }
    for (uint32_t i = 0; i < b.pairs; i++) {
        s_pair_t *pair = &b.pair[i];
        pair->bench = &b;
        pair->index = i;
        pair->last_n = -1;
        pair->seen = s_alloc (NULL, (b.messages + 7) / 8);
        memset (pair->seen, 0, (b.messages + 7) / 8);
        pair->pending = s_alloc (NULL, 65536 / 8);
        memset (pair->pending, 0, 65536 / 8);
        pair->topic_len =
            (uint16_t)snprintf (pair->topic, sizeof pair->topic, "mqtt-bench/%06x/%u", rnd, i);
        pair->sender = (s_conn_t){.pair = pair, .is_sender = true, .fd = -1, .state = S_CLOSED};
        pair->recipient = (s_conn_t){.pair = pair, .fd = -1, .state = S_CLOSED};
    }
    uint64_t t0 = zim_benchkit_now_us ();
    for (uint32_t i = 0; i < b.pairs && status == 0; i++) {
        char id[64];
        snprintf (id, sizeof id, "mqtt-bench-%06x-s%u", rnd, i);
        if (s_conn_open (&b, &b.pair[i].sender, ai, id))
            status = EXIT_SETUP;
        snprintf (id, sizeof id, "mqtt-bench-%06x-r%u", rnd, i);
        if (status == 0 && s_conn_open (&b, &b.pair[i].recipient, ai, id))
            status = EXIT_SETUP;
    }
    freeaddrinfo (ai);
    if (status)
        fprintf (stderr, "mqtt-bench: could not open the connections to %s port %s\n", host, port);

    //  Connect and subscribe everyone before the clock starts.
    uint64_t until = zim_benchkit_now_us () + 30000000;
    while (status == 0 && b.ready + b.failed < 2 * b.pairs && zim_benchkit_now_us () < until && !s_interrupted)
        s_loop_run (&b, 100);
    if (status == 0 && b.ready < 2 * b.pairs) {
        fprintf (stderr, "mqtt-bench: only %u of %u connections connected and subscribed\n",
                 b.ready, 2 * b.pairs);
        status = EXIT_SETUP;
    }
    uint64_t t_connected = zim_benchkit_now_us ();
    double cpu0 = zim_benchkit_cpu_s ();

    uint64_t total = (uint64_t)b.pairs * b.messages;
    if (status == 0) {
        b.running = true;
        b.t_first_send = zim_benchkit_now_us ();
        uint64_t deadline = b.t_first_send + (uint64_t)timeout_s * 1000000;
        if (b.rate)
            deadline += (uint64_t)((double)total * 1e6 / b.rate);
        else
            for (uint32_t i = 0; i < b.pairs; i++)
                for (uint32_t w = 0; w < b.window && b.pair[i].sent < b.messages; w++)
                    s_send_next (&b.pair[i]);
        bool grace = false;
        while (!s_interrupted && zim_benchkit_now_us () < deadline) {
            uint64_t next = b.rate ? s_pace (&b) : 0;
            if (b.delivered + b.errors >= total && b.acked + b.errors >= total)
                break;
            if (b.senders_closed == b.pairs && !grace) {
                //  nothing more will be sent: wait a little for deliveries
                grace = true;
                if (deadline > zim_benchkit_now_us () + 1000000)
                    deadline = zim_benchkit_now_us () + 1000000;
            }
            if (next) {
                //  as zim-bench: handle what is ready, and sleep (at most
                //  S_TICK_US) only when that was nothing
                uint64_t events = b.acked + b.delivered + b.errors + b.closed;
                s_loop_run (&b, 0);
                uint64_t now = zim_benchkit_now_us ();
                if (events == b.acked + b.delivered + b.errors + b.closed)
                    zim_benchkit_sleep_us (next > now && next - now < S_TICK_US ? next - now : S_TICK_US);
            } else
                s_loop_run (&b, 50);
        }
    }
    double cpu = zim_benchkit_cpu_s () - cpu0;

    //  Report, with zim-bench's keys.
    if (status == 0) {
        char what[600], setup[160];
        snprintf (what, sizeof what, "%u-byte payloads, QoS 1, %s port %s", b.size, host, port);
        snprintf (setup, sizeof setup, "%.2f s to connect and subscribe %u connections",
                  (double)(t_connected - t0) / 1e6, 2 * b.pairs);
        zim_benchkit_t r = {
            .program = "mqtt-bench", .what = what, .setup = setup,
            .pairs = b.pairs, .messages = b.messages, .window = b.window, .size = b.size,
            .rate = b.rate, .acked = b.acked, .delivered = b.delivered, .errors = b.errors,
            .duplicates = b.duplicates, .out_of_order = b.out_of_order,
            .unexpected = b.unexpected, .t_first_send = b.t_first_send,
            .t_last_ack = b.t_last_ack, .t_last_delivery = b.t_last_delivery,
            .latency = b.latency, .nlatency = b.nlatency, .lag = b.lag, .nlag = b.nlag,
            .cpu_s = cpu, .connect_s = (double)(t_connected - t0) / 1e6};
        if (zim_benchkit_report (&r, json))
            status = EXIT_LOST;
    }

    //  Close politely: DISCONNECT, flushed, then the sockets.
    b.stopping = true;
    for (uint32_t i = 0; i < b.pairs; i++) {
        s_conn_t *conns[2] = {&b.pair[i].sender, &b.pair[i].recipient};
        for (int k = 0; k < 2; k++)
            if (conns[k]->state != S_CLOSED) {
                uint8_t *p = s_out_reserve (conns[k], 2);
                p[0] = MQTT_DISCONNECT;
                p[1] = 0;
            }
    }
    s_flush_all (&b);
    for (uint32_t i = 0; i < b.pairs; i++) {
        s_close (&b.pair[i].sender, "end");
        s_close (&b.pair[i].recipient, "end");
        free (b.pair[i].sender.in);
        free (b.pair[i].sender.out);
        free (b.pair[i].recipient.in);
        free (b.pair[i].recipient.out);
        free (b.pair[i].seen);
        free (b.pair[i].pending);
    }
    if (b.epfd >= 0)
        close (b.epfd);
    free (b.pair);
    free (b.dirty);
    free (b.latency);
    free (b.lag);
    free (b.body);
    return status;
}
