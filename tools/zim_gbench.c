/*  zim_gbench.c: zim-bench group (see zim_gbench.h). One thread, the C
    SDK's event loop, as zim-bench p2p.
*/
#include "tools/zim_gbench.h"
#include "tools/zim_benchkit.h"
#include "msg/zim_util.h"
#include "sdk/c/zim_client.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define S_SETUP_MS 60000 //  connecting everyone may take this long
#define S_EVENTS_MAX 64  //  join events a receiver may get while the group is made
#define S_CHUNK 3000     //  bytes of uids per admin request (its arguments hold 4096)

const char *zim_gbench_usage =
    "group: S senders, members of one group of M members (or a channel),\n"
    "send N messages each, W unacked at most. Reported: acked messages/s and,\n"
    "for a group, durable member inbox writes/s (acks x M: an ack leaves after\n"
    "the message is in every member's inbox); at K other connected members,\n"
    "send-to-deliver latency, every message once, each sender's in order, seqs\n"
    "without gaps. A channel stores each message once: its members read it with\n"
    "csync (and get it live in its room once they did; the bench's do not), so\n"
    "nothing is delivered live here and K is 0.\n"
    "  zim-bench group [--members M] [--senders S] [--messages N] [--window W]\n"
    "                  [--online K] [--kind group|channel] [--group NAME]\n"
    "                  [--settle MS] [--json]\n"
    "        (defaults: M 500, S 10, N 1000, W 64, K 10, a new random group;\n"
    "        --group: its id, e.g. one the ring places on the store shard whose\n"
    "        admin endpoint -e is, in a cluster; --settle: wait MS after making\n"
    "        the group, e.g. 4000 in a cluster, where the join events of the\n"
    "        members added after its creation reach other shards by the\n"
    "        brokers' poll for jobs, every 3 s)\n";

typedef struct s_gb s_gb_t;

//  One connected member: a sender or a receiver.
typedef struct {
    s_gb_t *gb;          //  the run
    uint32_t index;      //  sender number, or receiver number
    bool sender;         //  sends (else only receives)
    zim_client_t *client;
    char uid[ZIM_CLIENT_ID_MAX + 1];
    uint32_t sent, answered;
    bool authed;
    int64_t *last_n;     //  receiver: per sender, number of its last message, -1 none
    uint64_t last_seq;   //  receiver: inbox seq of the last delivery
    uint64_t *seqs;      //  receiver: the inbox seqs delivered, in arrival order
    uint32_t received;   //  receiver: messages delivered (and seqs held)
} s_member_t;

struct s_gb {
    uint32_t members, senders, messages, window, online;
    bool channel;
    char group[ZIM_CLIENT_ID_MAX + 1];
    s_member_t *conn;      //  senders, then receivers
    uint32_t nconn;
    uint8_t body[2 + ZIM_BENCHKIT_STAMP + 16];
    uint32_t authed, failed;
    uint64_t acked, errors, delivered, duplicates, out_of_order, seq_gaps, unexpected;
    uint64_t seq_unordered; //  deliveries whose seq was not the last one's + 1 (two brokers)
    uint64_t events;        //  join events the receivers got (not counted as messages)
    uint64_t t_first, t_last_ack, t_last_delivery;
    uint32_t *latency;
    uint64_t nlatency;
};

static void s_send_next (s_member_t *m)
{
    s_gb_t *gb = m->gb;
    zim_benchkit_stamp (gb->body + 2, zim_benchkit_now_us (), m->index, m->sent);
    if (zim_client_send_group (m->client, gb->group, NULL, gb->body, sizeof gb->body, NULL)) {
        gb->errors++;
        m->answered++;
    }
    m->sent++;
}

static void s_on_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    (void)c;
    s_member_t *m = arg;
    if (state == ZIM_CLIENT_AUTHED && !m->authed) {
        m->authed = true;
        m->gb->authed++;
    } else if (state == ZIM_CLIENT_CLOSED && !m->authed) {
        m->gb->failed++;
        fprintf (stderr, "zim-bench: %s could not connect (code %d)\n", m->uid, code);
    }
}

static void s_on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    (void)c;
    s_member_t *m = arg;
    if (m->gb->errors < 10)
        fprintf (stderr, "zim-bench: %s: %s (code %d)\n", m->uid, e->text, e->code);
    if (!e->cid || !m->sender)
        return;
    m->gb->errors++;
    m->answered++;
}

static void s_on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    (void)c;
    (void)a;
    s_member_t *m = arg;
    m->gb->acked++;
    m->answered++;
    m->gb->t_last_ack = zim_benchkit_now_us ();
    if (m->sent < m->gb->messages)
        s_send_next (m);
}

static void s_on_msg (zim_client_t *c, const zim_client_msg_t *msg, void *arg)
{
    (void)c;
    s_member_t *m = arg;
    s_gb_t *gb = m->gb;
    uint64_t now = zim_benchkit_now_us ();
    if (m->sender)
        return; //  its copies of the others' messages: not measured
    if (msg->from[0] == '$') {
        //  A join event of the group being made (members added after its
        //  creation): not a message, but its seq is the member's (on
        //  another shard than the group's, its job may put it after the
        //  first messages).
        if (m->received < (uint64_t)gb->senders * gb->messages + S_EVENTS_MAX)
            m->seqs[m->received++] = msg->seq;
        gb->events++;
        return;
    }
    if (msg->body_len != sizeof gb->body || strcmp (msg->group, gb->group) != 0) {
        gb->unexpected++;
        return;
    }
    uint64_t t;
    uint32_t index, n;
    zim_benchkit_unstamp ((const uint8_t *)msg->body + 2, &t, &index, &n);
    if (index >= gb->senders || n >= gb->messages) {
        gb->unexpected++;
        return;
    }
    if ((int64_t)n <= m->last_n[index]) {
        if ((int64_t)n == m->last_n[index])
            gb->duplicates++;
        else
            gb->out_of_order++;
        return;
    }
    m->last_n[index] = n;
    if (m->last_seq && msg->seq != m->last_seq + 1)
        gb->seq_unordered++;
    m->last_seq = msg->seq;
    m->seqs[m->received] = msg->seq;
    m->received++;
    gb->delivered++;
    gb->t_last_delivery = now;
    gb->latency[gb->nlatency++] = now > t ? (uint32_t)(now - t) : 0;
}

static int s_cmp (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int s_cmp64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

//  Gaps in the seqs m received (sorted: each one the previous + 1). With
//  one broker they arrive in seq order; with several, two brokers' live
//  copies may cross, and only the whole set tells a gap.
static uint64_t s_gaps (s_member_t *m)
{
    uint64_t gaps = 0;
    qsort (m->seqs, m->received, sizeof *m->seqs, s_cmp64);
    for (uint32_t i = 1; i < m->received; i++)
        gaps += m->seqs[i] != m->seqs[i - 1] + 1;
    return gaps;
}

//  Makes the group: created with the first chunk of members, the rest
//  added. Returns 0 or -1.
static int s_make_group (s_gb_t *gb, const char *app, const char *prefix,
                         zim_gbench_admin_fn *admin, void *arg)
{
    char *list = zim_malloc (S_CHUNK + 80);
    uint32_t i = 0;
    bool first = true;
    int rc = 0;
    while (i < gb->members && rc == 0) {
        size_t len = 0;
        list[0] = 0;
        for (; i < gb->members && len < S_CHUNK; i++) {
            char uid[ZIM_CLIENT_ID_MAX + 1];
            if (i < gb->senders)
                snprintf (uid, sizeof uid, "%s-s%u", prefix, i);
            else
                snprintf (uid, sizeof uid, "%s-m%u", prefix, i - gb->senders);
            len += (size_t)snprintf (list + len, S_CHUNK + 80 - len, "%s%s", len ? "," : "", uid);
        }
        const char *create[] = {"create", app, gb->group, gb->channel ? "channel" : "group", list,
                                NULL};
        const char *add[] = {"members", app, gb->group, list, "-", NULL};
        rc = admin (arg, first ? create : add);
        first = false;
    }
    free (list);
    return rc ? -1 : 0;
}

int zim_gbench_main (int argc, char **argv, const char *url, const char *app,
                     zim_gbench_mint_fn *mint, zim_gbench_admin_fn *admin, void *arg)
{
    static const struct option options[] = {
        {"members", required_argument, NULL, 'M'}, {"senders", required_argument, NULL, 'S'},
        {"messages", required_argument, NULL, 'N'}, {"window", required_argument, NULL, 'W'},
        {"online", required_argument, NULL, 'K'},  {"kind", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'J'},          {"group", required_argument, NULL, 'G'},
        {"settle", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0}};
    s_gb_t gb = {.members = 500, .senders = 10, .messages = 1000, .window = 64, .online = 10};
    bool json = false;
    const char *group = NULL;
    uint32_t settle_ms = 0;
    int c;
    optind = 1;
    while ((c = getopt_long (argc, argv, "", options, NULL)) != -1) {
        uint32_t *field = c == 'M'   ? &gb.members
                          : c == 'S' ? &gb.senders
                          : c == 'N' ? &gb.messages
                          : c == 'W' ? &gb.window
                          : c == 'K' ? &gb.online
                          : c == 'T' ? &settle_ms
                                     : NULL;
        if (field) {
            if (zim_benchkit_parse_num (optarg, c == 'N' || c == 'T' ? 10000000 : 200000, field)) {
                fprintf (stderr, "zim-bench: bad value '%s'\n", optarg);
                return 2;
            }
        } else if (c == 'k' && (strcmp (optarg, "group") == 0 || strcmp (optarg, "channel") == 0))
            gb.channel = strcmp (optarg, "channel") == 0;
        else if (c == 'J')
            json = true;
        else if (c == 'G' && strlen (optarg) > 0 && strlen (optarg) < sizeof gb.group)
            group = optarg;
        else {
            fprintf (stderr, "zim-bench: group [--members M] [--senders S] [--messages N] "
                             "[--window W] [--online K] [--kind group|channel] [--group NAME] "
                             "[--settle MS] [--json]\n");
            return 2;
        }
    }
    if (gb.channel)
        gb.online = 0;
    if (gb.senders > gb.members || gb.senders + gb.online > gb.members || optind != argc) {
        fprintf (stderr, "zim-bench: senders + online must be at most members\n");
        return 2;
    }
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)zim_benchkit_now_us ();
    char prefix[16];
    snprintf (prefix, sizeof prefix, "g%06x", rnd & 0xffffff);
    snprintf (gb.group, sizeof gb.group, "%s-grp", prefix);
    if (group)
        snprintf (gb.group, sizeof gb.group, "%s", group);
    gb.body[0] = 0xc4;
    gb.body[1] = ZIM_BENCHKIT_STAMP + 16;
    memset (gb.body + 2 + ZIM_BENCHKIT_STAMP, 'x', 16);
    uint64_t t0 = zim_benchkit_now_us ();
    if (s_make_group (&gb, app, prefix, admin, arg)) {
        fprintf (stderr, "zim-bench: could not make the group (admin groups refused it: is "
                         "store/max_group_size large enough?)\n");
        return 3;
    }
    uint64_t t_made = zim_benchkit_now_us ();
    if (settle_ms)
        usleep ((useconds_t)settle_ms * 1000);

    zim_loop_t *loop = zim_loop_new ();
    gb.nconn = gb.senders + gb.online;
    gb.conn = zim_calloc (gb.nconn, sizeof *gb.conn);
    gb.latency = zim_malloc (((size_t)gb.online * gb.senders * gb.messages + 1) * sizeof (uint32_t));
    int status = 0;
    for (uint32_t i = 0; i < gb.nconn && status == 0; i++) {
        s_member_t *m = &gb.conn[i];
        m->gb = &gb;
        m->sender = i < gb.senders;
        m->index = m->sender ? i : i - gb.senders;
        if (m->sender)
            snprintf (m->uid, sizeof m->uid, "%s-s%u", prefix, i);
        else
            snprintf (m->uid, sizeof m->uid, "%s-m%u", prefix, i - gb.senders);
        m->last_n = zim_malloc (gb.senders * sizeof *m->last_n);
        m->seqs = zim_malloc (((size_t)gb.senders * gb.messages + S_EVENTS_MAX) * sizeof *m->seqs);
        for (uint32_t s = 0; s < gb.senders; s++)
            m->last_n[s] = -1;
        char *token = mint (arg, m->uid);
        if (!token) {
            status = 3;
            break;
        }
        zim_client_config_t cfg = {0};
        cfg.url = url;
        cfg.token = token;
        cfg.device = "bench";
        cfg.max_unacked = gb.window;
        cfg.connect_timeout_ms = S_SETUP_MS;
        cfg.on_state = s_on_state;
        cfg.on_error = s_on_error;
        cfg.on_ack = s_on_ack;
        cfg.on_msg = s_on_msg;
        cfg.arg = m;
        m->client = zim_client_new (loop, &cfg);
        free (token);
        if (!m->client)
            status = 2;
    }
    uint64_t until = zim_benchkit_now_us () + S_SETUP_MS * 1000ull;
    while (status == 0 && gb.authed + gb.failed < gb.nconn && zim_benchkit_now_us () < until)
        zim_loop_run (loop, 100);
    if (status == 0 && gb.authed < gb.nconn) {
        fprintf (stderr, "zim-bench: only %u of %u connections authenticated\n", gb.authed,
                 gb.nconn);
        status = 3;
    }
    double cpu0 = zim_benchkit_cpu_s ();
    uint64_t total = (uint64_t)gb.senders * gb.messages;
    uint64_t expect = total * gb.online;
    if (status == 0) {
        gb.t_first = zim_benchkit_now_us ();
        for (uint32_t i = 0; i < gb.senders; i++)
            for (uint32_t w = 0; w < gb.window && gb.conn[i].sent < gb.messages; w++)
                s_send_next (&gb.conn[i]);
        uint64_t deadline = gb.t_first + 120000000ull;
        while (zim_benchkit_now_us () < deadline &&
               (gb.acked + gb.errors < total || gb.delivered < expect))
            zim_loop_run (loop, 50);
    }
    double cpu = zim_benchkit_cpu_s () - cpu0;
    for (uint32_t i = gb.senders; i < gb.nconn && status == 0; i++)
        gb.seq_gaps += s_gaps (&gb.conn[i]);
    if (status == 0) {
        double secs = (double)(gb.t_last_ack - gb.t_first) / 1e6;
        double rate = secs > 0 ? (double)gb.acked / secs : 0;
        double writes = gb.channel ? rate : rate * gb.members;
        qsort (gb.latency, gb.nlatency, sizeof *gb.latency, s_cmp);
        double p50 = gb.nlatency ? gb.latency[gb.nlatency / 2] / 1e3 : 0;
        double p99 = gb.nlatency ? gb.latency[gb.nlatency * 99 / 100] / 1e3 : 0;
        double pmax = gb.nlatency ? gb.latency[gb.nlatency - 1] / 1e3 : 0;
        bool bad = gb.errors || gb.acked != total || gb.delivered != expect || gb.duplicates ||
                   gb.out_of_order || gb.seq_gaps || gb.unexpected;
        if (json)
            printf ("{\"kind\":\"%s\",\"members\":%u,\"senders\":%u,\"messages\":%u,"
                    "\"window\":%u,\"online\":%u,\"acked\":%" PRIu64 ",\"errors\":%" PRIu64
                    ",\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"inbox_writes_per_s\":%.0f,"
                    "\"delivered\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"duplicates\":%" PRIu64
                    ",\"out_of_order\":%" PRIu64 ",\"seq_gaps\":%" PRIu64
                    ",\"seq_unordered\":%" PRIu64 ",\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,\"client_cpu_s\":%.2f,"
                    "\"setup_s\":%.2f}\n",
                    gb.channel ? "channel" : "group", gb.members, gb.senders, gb.messages,
                    gb.window, gb.online, gb.acked, gb.errors, secs, rate, writes, gb.delivered,
                    expect, gb.duplicates, gb.out_of_order, gb.seq_gaps, gb.seq_unordered, p50,
                    p99, pmax, cpu,
                    (double)(t_made - t0) / 1e6);
        else {
            printf ("zim-bench group: %s of %u members, %u senders x %u messages, window %u, "
                    "%s\n",
                    gb.channel ? "channel" : "group", gb.members, gb.senders, gb.messages,
                    gb.window, url);
            printf ("  made in %.2f s; acked %" PRIu64 "/%" PRIu64 " in %.3f s: %.0f msgs/s",
                    (double)(t_made - t0) / 1e6, gb.acked, total, secs, rate);
            if (!gb.channel)
                printf (", %.0f durable member inbox writes/s", writes);
            printf ("\n  %u members connected: %" PRIu64 "/%" PRIu64
                    " delivered, latency p50 %.2f ms p99 %.2f ms max %.2f ms\n",
                    gb.online, gb.delivered, expect, p50, p99, pmax);
            printf ("  errors %" PRIu64 ", duplicates %" PRIu64 ", out of order %" PRIu64
                    ", seq gaps %" PRIu64 " (live arrivals out of seq order %" PRIu64
                    "), unexpected %" PRIu64 ", join events %" PRIu64 "; client CPU %.2f s\n",
                    gb.errors, gb.duplicates, gb.out_of_order, gb.seq_gaps, gb.seq_unordered,
                    gb.unexpected, gb.events, cpu);
        }
        if (bad)
            status = 1;
    }
    for (uint32_t i = 0; i < gb.nconn; i++) {
        if (gb.conn[i].client)
            zim_client_close (gb.conn[i].client);
    }
    until = zim_benchkit_now_us () + 500000;
    while (zim_benchkit_now_us () < until)
        zim_loop_run (loop, 50);
    for (uint32_t i = 0; i < gb.nconn; i++) {
        zim_client_destroy (&gb.conn[i].client);
        free (gb.conn[i].last_n);
        free (gb.conn[i].seqs);
    }
    zim_loop_destroy (&loop);
    free (gb.conn);
    free (gb.latency);
    return status;
}
