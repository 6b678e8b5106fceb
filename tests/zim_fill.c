/*  zim_fill.c: builds a backlog for tests/test_backlog.sh. Sends COUNT
    messages from the token's user to TO through the C SDK, one at a time
    (the next goes out when the previous one is acked), so the recipient's
    inbox holds them in numbering order even when a send has to be retried.
    Message i (from 1) is a msgpack string of exactly SIZES[(i - 1) % n]
    bytes: "m%06d " and then 'x' up to the size, so a reader can check the
    order and the length of every body.

    Usage: zim_fill URL TOKEN TO COUNT SIZE[,SIZE...]
    Exit: 0 every message acked, 1 a send failed or timed out, 2 usage.
*/
#include "sdk/c/zim_client.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_SIZES_MAX 64        //  sizes in the cycle
#define S_TIMEOUT_MS 120000   //  the whole run
#define S_BODY_MAX (1u << 20) //  largest body asked for

typedef struct {
    const char *to;            //  recipient
    uint64_t count;            //  messages to send
    size_t sizes[S_SIZES_MAX]; //  body sizes, cycled
    size_t nsizes;             //  how many
    uint64_t sent, acked;      //  progress
    unsigned char *body;       //  scratch body
    int failed;                //  a send failed: its code
    zim_client_t *client;      //  the sender
} s_fill_t;

//  Monotonic milliseconds.
static uint64_t s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

//  Queues message number sent + 1; returns 0 or -1.
static int s_send_next (s_fill_t *self)
{
    uint64_t n = self->sent + 1;
    size_t size = self->sizes[(n - 1) % self->nsizes];
    size_t hdr;
    if (size < 32) {
        self->body[0] = (unsigned char)(0xa0 | size);
        hdr = 1;
    } else if (size < 256) {
        self->body[0] = 0xd9;
        self->body[1] = (unsigned char)size;
        hdr = 2;
    } else if (size < 65536) {
        self->body[0] = 0xda;
        self->body[1] = (unsigned char)(size >> 8);
        self->body[2] = (unsigned char)size;
        hdr = 3;
    } else {
        self->body[0] = 0xdb;
        for (int i = 0; i < 4; i++)
            self->body[1 + i] = (unsigned char)(size >> (24 - 8 * i));
        hdr = 5;
    }
    char head[16];
    int len = snprintf (head, sizeof head, "m%06" PRIu64 " ", n);
    memset (self->body + hdr, 'x', size);
    memcpy (self->body + hdr, head, (size_t)len < size ? (size_t)len : size);
    if (zim_client_send (self->client, self->to, NULL, self->body, hdr + size, NULL))
        return -1;
    self->sent = n;
    return 0;
}

static void s_on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    (void)c;
    (void)a;
    s_fill_t *self = arg;
    self->acked++;
    if (self->sent < self->count && s_send_next (self)) {
        fprintf (stderr, "zim_fill: cannot queue message %" PRIu64 "\n", self->sent + 1);
        self->failed = -1;
    }
}

static void s_on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    (void)c;
    s_fill_t *self = arg;
    fprintf (stderr, "zim_fill: error %d: %s%s%s\n", e->code, e->text, e->cid ? " cid " : "",
             e->cid ? e->cid : "");
    //  retryable errors are retried by the SDK and never reach here with a cid
    if (e->cid)
        self->failed = e->code;
}

int main (int argc, char **argv)
{
    if (argc != 6) {
        fprintf (stderr, "usage: zim_fill URL TOKEN TO COUNT SIZE[,SIZE...]\n");
        return 2;
    }
    s_fill_t self = {0};
    self.to = argv[3];
    char *end;
    self.count = strtoull (argv[4], &end, 10);
    if (*end || self.count == 0) {
        fprintf (stderr, "zim_fill: bad COUNT %s\n", argv[4]);
        return 2;
    }
    size_t biggest = 0;
    for (const char *p = argv[5]; *p;) {
        unsigned long long v = strtoull (p, &end, 10);
        if (end == p || v < 8 || v > S_BODY_MAX || self.nsizes == S_SIZES_MAX ||
            (*end && *end != ',')) {
            fprintf (stderr, "zim_fill: bad SIZES %s (8..%u bytes each)\n", argv[5], S_BODY_MAX);
            return 2;
        }
        self.sizes[self.nsizes++] = (size_t)v;
        biggest = v > biggest ? (size_t)v : biggest;
        p = *end ? end + 1 : end;
    }
    if (self.nsizes == 0)
        return 2;
    self.body = malloc (biggest + 8);

    zim_loop_t *loop = zim_loop_new ();
    zim_client_config_t cfg = {0};
    cfg.url = argv[1];
    cfg.token = argv[2];
    cfg.reconnect = true;
    cfg.retry = true;
    cfg.ack_timeout_ms = 5000;
    cfg.backoff_min_ms = 50;
    cfg.backoff_max_ms = 1000;
    cfg.on_ack = s_on_ack;
    cfg.on_error = s_on_error;
    cfg.arg = &self;
    self.client = loop ? zim_client_new (loop, &cfg) : NULL;
    if (!self.client || s_send_next (&self)) {
        fprintf (stderr, "zim_fill: cannot start (url %s)\n", argv[1]);
        return 1;
    }
    uint64_t deadline = s_now_ms () + S_TIMEOUT_MS;
    while (self.acked < self.count && !self.failed && s_now_ms () < deadline)
        zim_loop_run (loop, 100);
    int rc = 0;
    if (self.acked < self.count) {
        fprintf (stderr, "zim_fill: %" PRIu64 " of %" PRIu64 " acked%s\n", self.acked, self.count,
                 self.failed ? "" : " (timeout)");
        rc = 1;
    }
    zim_client_close (self.client);
    for (int i = 0; i < 40 && zim_client_state (self.client) != ZIM_CLIENT_CLOSED; i++)
        zim_loop_run (loop, 50);
    zim_client_destroy (&self.client);
    zim_loop_destroy (&loop);
    free (self.body);
    return rc;
}
