/*  zim_bench.c: zim-bench, the load generator. Mints tokens through the
    admin endpoint, opens sender and recipient WebSocket connections on one
    event loop and measures delivered messages per second and send-to-deliver
    latency on the recipient side, checking that nothing is lost, duplicated
    or reordered. Senders run closed-loop (a new send per ack, as fast as the
    window allows) or, with --rate, open-loop: paced to a schedule, with
    latency counted from each message's scheduled send time.
*/
#include "config.h"
#include "tools/zim_benchkit.h"
#include "tools/zim_conns.h"
#include "tools/zim_gbench.h"
#include "tools/zim_rbench.h"
#include "msg/zim_admin.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"
#include "sdk/c/zim_client.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>

//  Exit codes.
#define EXIT_LOST 1  //  a message was lost, duplicated, reordered or refused
#define EXIT_USAGE 2 //  bad command line
#define EXIT_SETUP 3 //  no tokens, or connections did not come up

#define DEFAULT_URL "ws://127.0.0.1:7700/ws"
//  How long connecting everyone may take (ms).
#define S_SETUP_MS 30000
#define HEADER_SIZE ZIM_BENCHKIT_STAMP //  body bin: send time (8), pair (4), message number (4)
#define S_TICK_US 250  //  --rate: longest sleep between two looks at the network

static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: zim-bench [-u URL] [-e ENDPOINT] [-k KEY] [--app APP] p2p [OPTIONS]\n"
             "\n"
             "Load generator for a running zim server. Mints tokens for fresh users\n"
             "through the admin endpoint, connects them over WebSocket and measures.\n"
             "\n"
             "p2p: 1:1 messages. N senders each send M messages to their own recipient,\n"
             "keeping at most W sends unacknowledged; bodies are msgpack bin holding the\n"
             "send time. Measured at the recipients: delivered messages per second (from\n"
             "the first send to the last delivery), send-to-deliver latency p50/p99/max;\n"
             "at the senders: acks per second and errors. Every message is checked: none\n"
             "lost, none twice, each pair in send order, recipient seqs without gaps.\n"
             "\n"
             "Without --rate (or --rate 0) the senders are closed-loop: each ack lets the\n"
             "next send go, so the run measures peak throughput and the latency under it.\n"
             "With --rate R the senders are open-loop: message k of pair i is due at\n"
             "(k * N + i) / R seconds after the start, R messages/s in total spread evenly\n"
             "over the pairs, sent when due whether or not earlier ones were acked (the\n"
             "window still caps the unacked sends; a send it holds back goes out as soon\n"
             "as an ack makes room). The client then sleeps between looks at the network,\n"
             "at most 0.25 ms, so it does not spin on the server's CPU; a delivery is\n"
             "timed up to 0.25 ms late. Latency counts from the scheduled time, so\n"
             "time spent waiting behind a full window or a slow client loop is included,\n"
             "and 'behind' reports how late sends left versus their schedule. Use it to\n"
             "measure latency at a given load, e.g. at half the peak rate.\n"
             "\n"
             "p2p options:\n"
             "  --pairs N       sender/recipient pairs, one connection each (default 10)\n"
             "  --messages M    messages per sender (default 1000)\n"
             "  --window W      unacked sends per sender (default 64)\n"
             "  --rate R        messages/s offered in total across all pairs, paced\n"
             "                  open-loop (default 0: closed-loop, as fast as the window\n"
             "                  allows)\n"
             "  --size BYTES    body size, at least %d (default 32)\n"
             "  --timeout S     give up S seconds after the first send; with --rate, after\n"
             "                  the last scheduled send (default 60)\n"
             "  --json          print one JSON line instead of the summary\n"
             "\n"
             "%s\n"
             "%s\n"
             "%s\n"
             "Options:\n"
             "  -u, --url URL            WebSocket URL (default %s)\n"
             "  -e, --endpoint ENDPOINT  admin endpoint for tokens (default %s)\n"
             "  -k, --key KEY            admin key (default: $ZIM_ADMIN_KEY, else the file\n"
             "                           $ZIM_DATA/admin.key or ./zim-data/admin.key)\n"
             "      --app APP            app of the users (default demo)\n"
             "  -h, --help               this text\n"
             "      --version            print the version\n"
             "\n"
             "Users are named b<random>-s<i> and b<random>-r<i>, new on every run, so\n"
             "runs do not disturb each other. The client runs on one thread; on a small\n"
             "machine it shares the CPU with the server, and its own CPU time is printed.\n"
             "\n"
             "Exit status: 0 every message delivered once and in order, 1 something was\n"
             "lost, duplicated, reordered or refused, 2 usage, 3 setup failed.\n"
             "\n"
             "Examples:\n"
             "  zim-bench p2p --pairs 50 --messages 2000\n"
             "  zim-bench conns --count 10000 --hold 30 --pid $(pgrep -n zim-server)\n"
             "  zim-bench group --members 500 --senders 10 --messages 2000\n"
             "  zim-bench room --members 10000 --rate 100 --messages 1000\n"
             "  zim-bench push --users 1000 --rate 50000 --messages 100\n"
             "  zim-bench p2p --pairs 50 --messages 2000 --rate 30000   # latency at 30k/s\n"
             "  zim-bench -e tcp://127.0.0.1:7710 -k \"$KEY\" p2p --pairs 50 --window 16 --json\n"
             "  make bench     # several runs against a fresh zim-server, with the medians\n",
             HEADER_SIZE, zim_gbench_usage, zim_conns_usage, zim_rbench_usage, DEFAULT_URL,
             ZIM_ADMIN_ENDPOINT);
}

//  One sender/recipient pair.
typedef struct {
    struct s_bench *bench;   //  the run
    uint32_t index;          //  pair number
    zim_client_t *sender;    //  sends to recipient
    zim_client_t *recipient; //  receives
    char sender_uid[ZIM_CLIENT_ID_MAX + 1];
    char recipient_uid[ZIM_CLIENT_ID_MAX + 1];
    uint32_t sent;     //  sends queued
    uint32_t answered; //  acks + errors
    uint32_t received; //  distinct messages delivered
    int64_t last_n;    //  number of the last message delivered, -1 none
    uint64_t last_seq; //  recipient inbox seq of the last delivery
    uint8_t *seen;     //  bitmap of delivered message numbers
    bool sender_authed, recipient_authed;
} s_pair_t;

typedef struct s_bench {
    uint32_t pairs, messages, window, size;
    uint32_t rate;         //  messages/s offered in total, 0: closed-loop
    s_pair_t *pair;        //  pairs
    uint8_t *body;         //  body template: bin header, then header fields, padding
    size_t body_len;       //  its length
    size_t body_hdr;       //  bytes of the bin header
    uint64_t t_first_send; //  µs
    uint64_t t_last_ack;
    uint64_t t_last_delivery;
    uint64_t acked, errors, delivered, duplicates, out_of_order, seq_gaps, unexpected;
    uint64_t closed;         //  connections lost during the run
    uint32_t senders_closed; //  senders whose connection closed
    uint32_t *latency;       //  µs per delivered message
    uint64_t nlatency;
    uint32_t *lag; //  --rate: µs each send left after its scheduled time
    uint64_t nlag;
    uint32_t authed; //  connections authenticated
    uint32_t failed; //  connections that could not
    bool running;    //  sending has started
    bool stopping;   //  closing at the end: state changes are expected
} s_bench_t;

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

//  Scheduled send time (µs) of message n of pair under --rate.
static uint64_t s_due_us (s_bench_t *b, s_pair_t *pair, uint32_t n)
{
    return zim_benchkit_due_us (b->t_first_send, b->rate, b->pairs, pair->index, n);
}

//  Queues the next message of this pair, stamped with the scheduled send
//  time under --rate, else with the current time.
static void s_send_next (s_pair_t *pair)
{
    s_bench_t *b = pair->bench;
    uint8_t *h = b->body + b->body_hdr;
    uint64_t now = zim_mono_us ();
    uint64_t t = now;
    if (b->rate) {
        t = s_due_us (b, pair, pair->sent);
        b->lag[b->nlag++] = now > t ? (uint32_t)(now - t < UINT32_MAX ? now - t : UINT32_MAX) : 0;
    }
    zim_benchkit_stamp (h, t, pair->index, pair->sent);
    if (zim_client_send (pair->sender, pair->recipient_uid, NULL, b->body, b->body_len, NULL)) {
        fprintf (stderr, "zim-bench: pair %u: send refused by the client (queue full?)\n",
                 pair->index);
        b->errors++;
        pair->answered++;
    }
    pair->sent++;
}

static void s_on_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    s_pair_t *pair = arg;
    s_bench_t *b = pair->bench;
    bool is_sender = c == pair->sender;
    bool *authed = is_sender ? &pair->sender_authed : &pair->recipient_authed;
    if (b->stopping)
        return;
    if (state == ZIM_CLIENT_AUTHED && !*authed) {
        *authed = true;
        b->authed++;
    } else if (state == ZIM_CLIENT_CLOSED) {
        if (!*authed)
            b->failed++;
        else
            b->closed++;
        if (is_sender)
            b->senders_closed++;
        fprintf (stderr, "zim-bench: %s %u: connection closed (code %d)\n",
                 is_sender ? "sender" : "recipient", pair->index, code);
    }
}

static void s_on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    s_pair_t *pair = arg;
    s_bench_t *b = pair->bench;
    if (b->errors < 10 || !b->running)
        fprintf (stderr, "zim-bench: pair %u: %s (code %d)\n", pair->index, e->text, e->code);
    if (!e->cid || c != pair->sender)
        return;
    b->errors++;
    pair->answered++;
    //  a refused send makes room for the next; a lost connection does not
    if (e->code >= 1000 && pair->sent < b->messages && !b->rate)
        s_send_next (pair);
}

static void s_on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    s_pair_t *pair = arg;
    s_bench_t *b = pair->bench;
    b->acked++;
    pair->answered++;
    b->t_last_ack = zim_mono_us ();
    if (pair->sent < b->messages && !b->rate)
        s_send_next (pair);
}

static void s_on_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    s_pair_t *pair = arg;
    s_bench_t *b = pair->bench;
    uint64_t now = zim_mono_us ();
    if (c != pair->recipient) {
        b->unexpected++;
        return;
    }
    //  body: bin header, then send time, pair, number
    const uint8_t *p = m->body;
    if (m->body_len != b->body_len || memcmp (p, b->body, b->body_hdr) != 0) {
        b->unexpected++;
        return;
    }
    p += b->body_hdr;
    uint64_t t;
    uint32_t index, n;
    zim_benchkit_unstamp (p, &t, &index, &n);
    if (index != pair->index || n >= b->messages) {
        b->unexpected++;
        return;
    }
    if (pair->seen[n / 8] & (1u << (n % 8))) {
        b->duplicates++;
        return;
    }
    pair->seen[n / 8] |= (uint8_t)(1u << (n % 8));
    if ((int64_t)n < pair->last_n)
        b->out_of_order++;
    pair->last_n = n;
    if (m->seq && pair->last_seq && m->seq != pair->last_seq + 1)
        b->seq_gaps++;
    pair->last_seq = m->seq;
    pair->received++;
    b->delivered++;
    b->t_last_delivery = now;
    b->latency[b->nlatency++] =
        now > t ? (uint32_t)(now - t < UINT32_MAX ? now - t : UINT32_MAX) : 0;
}

//  --rate: sends every message that is due by now and fits in its pair's
//  window. Returns the time (µs) the next message is due, or 0 if none is
//  left to schedule.
static uint64_t s_pace (s_bench_t *b)
{
    uint64_t now = zim_mono_us ();
    uint64_t next = 0;
    for (uint32_t i = 0; i < b->pairs; i++) {
        s_pair_t *pair = &b->pair[i];
        while (pair->sent < b->messages && pair->sent - pair->answered < b->window &&
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

//  The CURVE keys of the admin endpoint, as zimctl finds them ($ZIM_KEYS,
//  $ZIM_DATA/curve, ./zim-data/curve), or NULL (no CURVE).
static zim_curve_t *s_curve;

//  Mints a token for uid. Caller owns return value; NULL on failure.
static char *s_token (const char *endpoint, const char *key, const char *app, const char *uid)
{
    const char *args[] = {app, uid, "3600", NULL};
    char *text = NULL;
    int rc = zim_admin_call_curve (endpoint, s_curve, key, 5000, "token", args, &text);
    if (rc != 0) {
        fprintf (stderr, "zim-bench: no token for %s from %s: %s (code %d)\n", uid, endpoint,
                 text ? text : "?", rc);
        free (text);
        return NULL;
    }
    size_t n = strlen (text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        text[--n] = 0;
    return text;
}

//  What conns mints its tokens with.
typedef struct {
    const char *endpoint, *key, *app;
} s_mint_t;

static char *s_mint (void *arg, const char *uid)
{
    s_mint_t *m = (s_mint_t *)arg;
    return s_token (m->endpoint, m->key, m->app, uid);
}

//  group's admin calls: the groups verb.
static int s_groups (void *arg, const char *const *args)
{
    s_mint_t *m = (s_mint_t *)arg;
    char *text = NULL;
    int rc = zim_admin_call_curve (m->endpoint, s_curve, m->key, 30000, "groups", args, &text);
    if (rc)
        fprintf (stderr, "zim-bench: groups %s: %s (code %d)\n", args[0], text ? text : "?", rc);
    free (text);
    return rc;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},      {"endpoint", required_argument, NULL, 'e'},
        {"key", required_argument, NULL, 'k'},      {"app", required_argument, NULL, 'A'},
        {"help", no_argument, NULL, 'h'},           {"pairs", required_argument, NULL, 'P'},
        {"messages", required_argument, NULL, 'M'}, {"window", required_argument, NULL, 'W'},
        {"size", required_argument, NULL, 'S'},     {"timeout", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'J'},           {"rate", required_argument, NULL, 'R'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    const char *url = DEFAULT_URL, *endpoint = ZIM_ADMIN_ENDPOINT, *key_arg = NULL, *app = "demo";
    s_bench_t b;
    memset (&b, 0, sizeof b);
    b.pairs = 10;
    b.messages = 1000;
    b.window = 64;
    b.size = 32;
    uint32_t timeout_s = 60;
    bool json = false;
    int c;
    //  conns takes its own options: the common ones come before it.
    int margc = argc;
    for (int i = 1; i < argc; i++)
        if (strcmp (argv[i], "conns") == 0 || strcmp (argv[i], "group") == 0 ||
            strcmp (argv[i], "room") == 0 || strcmp (argv[i], "push") == 0) {
            margc = i;
            break;
        }
    while ((c = getopt_long (margc, argv, "u:e:k:h", options, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 'e':
            endpoint = optarg;
            break;
        case 'k':
            key_arg = optarg;
            break;
        case 'A':
            app = optarg;
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        case 'V':
            printf ("zim-bench %s\n", PACKAGE_VERSION);
            return 0;
        case 'J':
            json = true;
            break;
        case 'R': {
            uint64_t v;
            if (zim_parse_u64 (optarg, &v) || v > 100000000) {
                fprintf (stderr, "zim-bench: bad value '%s' for --rate (0..100000000)\n", optarg);
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
            uint32_t max = c == 'P' ? 10000 : c == 'S' ? 60000 : c == 'T' ? 86400 : 100000000;
            if (zim_benchkit_parse_num (optarg, max, field)) {
                fprintf (stderr, "zim-bench: bad value '%s' for --%s (1..%u)\n", optarg,
                         options[c == 'P'   ? 5
                                 : c == 'M' ? 6
                                 : c == 'W' ? 7
                                 : c == 'S' ? 8
                                            : 9]
                             .name,
                         max);
                return EXIT_USAGE;
            }
            break;
        }
        default:
            fprintf (stderr, "Try 'zim-bench --help'.\n");
            return EXIT_USAGE;
        }
    }
    bool conns = margc < argc;
    if (conns && optind != margc) {
        fprintf (stderr,
                 "zim-bench: what comes before conns, group, room or push must be options\n");
        return EXIT_USAGE;
    }
    if (!conns && (optind >= argc || strcmp (argv[optind], "p2p") != 0 || optind + 1 != argc)) {
        fprintf (stderr,
                 "zim-bench: the scenario is p2p, group, conns, room or push. Try 'zim-bench "
                 "--help'.\n");
        return EXIT_USAGE;
    }
    if (b.size < HEADER_SIZE) {
        fprintf (stderr, "zim-bench: --size must be at least %d\n", HEADER_SIZE);
        return EXIT_USAGE;
    }
    if ((uint64_t)b.pairs * b.messages > 200000000u) {
        fprintf (stderr, "zim-bench: pairs x messages is over 200M\n");
        return EXIT_USAGE;
    }
    char *key = key_arg ? zim_strdup (key_arg) : zim_admin_key_default ();
    if (!key) {
        fprintf (stderr, "zim-bench: no admin key: give -k KEY, set ZIM_ADMIN_KEY, or run "
                         "where zim-data/admin.key is (or set ZIM_DATA)\n");
        return EXIT_USAGE;
    }
    char *keys = zim_admin_keys_default ();
    if (keys && !(s_curve = zim_curve_load_client (keys, "admin", false))) {
        fprintf (stderr, "zim-bench: no usable CURVE client keys in %s\n", keys);
        free (keys);
        free (key);
        return EXIT_USAGE;
    }
    free (keys);
    if (conns) {
        s_mint_t m = {endpoint, key, app};
        const char *sc = argv[optind];
        int rc = strcmp (sc, "group") == 0
                     ? zim_gbench_main (argc - optind, argv + optind, url, app, s_mint, s_groups, &m)
                 : strcmp (sc, "room") == 0 || strcmp (sc, "push") == 0
                     ? zim_rbench_main (argc - optind, argv + optind, url, app, s_mint, &m)
                     : zim_conns_main (argc - optind, argv + optind, url, s_mint, &m);
        free (key);
        zim_curve_destroy (&s_curve);
        return rc;
    }

    //  The body template: msgpack bin of size bytes.
    b.body_hdr = b.size <= 255 ? 2 : 3;
    b.body_len = b.body_hdr + b.size;
    b.body = zim_calloc (1, b.body_len);
    if (b.body_hdr == 2) {
        b.body[0] = 0xc4;
        b.body[1] = (uint8_t)b.size;
    } else {
        b.body[0] = 0xc5;
        b.body[1] = (uint8_t)(b.size >> 8);
        b.body[2] = (uint8_t)b.size;
    }
    memset (b.body + b.body_hdr + HEADER_SIZE, 'x', b.size - HEADER_SIZE);

    //  Fresh users for this run.
    uint32_t rnd = 0;
    if (getrandom (&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)zim_mono_us ();
    char prefix[16];
    snprintf (prefix, sizeof prefix, "b%06x", rnd & 0xffffff);
    b.pair = zim_calloc (b.pairs, sizeof *b.pair);
    b.latency = zim_malloc ((size_t)b.pairs * b.messages * sizeof *b.latency);
    b.lag = b.rate ? zim_malloc ((size_t)b.pairs * b.messages * sizeof *b.lag) : NULL;
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);

    int status = 0;
    zim_loop_t *loop = zim_loop_new ();
    if (!loop) {
        fprintf (stderr, "zim-bench: cannot start the network loop\n");
        return EXIT_SETUP;
    }
    //  Every token first: a client starts connecting (and its connect
    //  timeout runs) as soon as it is made, and the loop does not run while
    //  tokens are minted.
    uint64_t t0 = zim_mono_us ();
    char **tokens = zim_calloc ((size_t)b.pairs * 2, sizeof *tokens);
    for (uint32_t i = 0; i < b.pairs && status == 0; i++) {
        s_pair_t *pair = &b.pair[i];
        pair->bench = &b;
        pair->index = i;
        pair->last_n = -1;
        pair->seen = zim_calloc ((b.messages + 7) / 8, 1);
        snprintf (pair->sender_uid, sizeof pair->sender_uid, "%s-s%u", prefix, i);
        snprintf (pair->recipient_uid, sizeof pair->recipient_uid, "%s-r%u", prefix, i);
        tokens[2 * i] = s_token (endpoint, key, app, pair->sender_uid);
        tokens[2 * i + 1] = tokens[2 * i] ? s_token (endpoint, key, app, pair->recipient_uid) : NULL;
        if (!tokens[2 * i + 1])
            status = EXIT_SETUP;
    }
    uint64_t t_tokens = zim_mono_us ();
    for (uint32_t i = 0; i < b.pairs && status == 0; i++) {
        s_pair_t *pair = &b.pair[i];
        zim_client_config_t cfg = {0};
        cfg.url = url;
        cfg.device = "bench";
        cfg.max_unacked = b.window;
        cfg.connect_timeout_ms = S_SETUP_MS; //  many connections take a while
        cfg.on_state = s_on_state;
        cfg.on_error = s_on_error;
        cfg.on_ack = s_on_ack;
        cfg.on_msg = s_on_msg;
        cfg.arg = pair;
        cfg.token = tokens[2 * i];
        pair->sender = zim_client_new (loop, &cfg);
        cfg.token = tokens[2 * i + 1];
        pair->recipient = zim_client_new (loop, &cfg);
        if (!pair->sender || !pair->recipient) {
            fprintf (stderr, "zim-bench: bad URL '%s'\n", url);
            status = EXIT_USAGE;
        }
    }
    for (uint32_t i = 0; i < 2 * b.pairs; i++)
        free (tokens[i]);
    free (tokens);

    //  Connect everyone before the clock starts.
    uint64_t until = zim_mono_us () + S_SETUP_MS * 1000ull;
    while (status == 0 && b.authed + b.failed < 2 * b.pairs && zim_mono_us () < until &&
           !s_interrupted)
        zim_loop_run (loop, 100);
    if (status == 0 && b.authed < 2 * b.pairs) {
        fprintf (stderr, "zim-bench: only %u of %u connections authenticated\n", b.authed,
                 2 * b.pairs);
        status = EXIT_SETUP;
    }
    uint64_t t_connected = zim_mono_us ();
    double cpu0 = zim_benchkit_cpu_s ();

    if (status == 0) {
        b.running = true;
        b.t_first_send = zim_mono_us ();
        uint64_t total = (uint64_t)b.pairs * b.messages;
        uint64_t deadline = b.t_first_send + (uint64_t)timeout_s * 1000000;
        if (b.rate)
            deadline += (uint64_t)((double)total * 1e6 / b.rate);
        else
            for (uint32_t i = 0; i < b.pairs; i++)
                for (uint32_t w = 0; w < b.window && b.pair[i].sent < b.messages; w++)
                    s_send_next (&b.pair[i]);
        bool grace = false;
        while (!s_interrupted && zim_mono_us () < deadline) {
            uint64_t next = b.rate ? s_pace (&b) : 0;
            if (b.delivered + b.errors >= total && b.acked + b.errors >= total)
                break;
            if (b.senders_closed == b.pairs && !grace) {
                //  nothing more will be sent: wait a little for deliveries
                grace = true;
                if (deadline > zim_mono_us () + 1000000)
                    deadline = zim_mono_us () + 1000000;
            }
            if (next) {
                //  Pacing: a timed zim_loop_run spins through its last
                //  millisecond (libwebsockets polls in whole ms), which on a
                //  small machine takes CPU from the server. Instead, handle
                //  what is ready and, when that was nothing, sleep until the
                //  next send is due, at most S_TICK_US (also when sends wait
                //  for window room): sends leave on time and deliveries are
                //  read (and timed) at most S_TICK_US late.
                uint64_t events = b.acked + b.delivered + b.errors + b.closed;
                zim_loop_run (loop, 0);
                uint64_t now = zim_mono_us ();
                if (events == b.acked + b.delivered + b.errors + b.closed)
                    zim_benchkit_sleep_us (next > now && next - now < S_TICK_US ? next - now : S_TICK_US);
            } else
                zim_loop_run (loop, 50);
        }
    }
    double cpu = zim_benchkit_cpu_s () - cpu0;

    //  Report.
    if (status == 0) {
        char what[600], setup[160];
        snprintf (what, sizeof what, "%u-byte bodies, %s", b.size, url);
        snprintf (setup, sizeof setup, "%.2f s tokens, %.2f s to connect %u connections",
                  (double)(t_tokens - t0) / 1e6, (double)(t_connected - t_tokens) / 1e6,
                  2 * b.pairs);
        zim_benchkit_t r = {
            .program = "zim-bench", .what = what, .setup = setup,
            .pairs = b.pairs, .messages = b.messages, .window = b.window, .size = b.size,
            .rate = b.rate, .acked = b.acked, .delivered = b.delivered, .errors = b.errors,
            .duplicates = b.duplicates, .out_of_order = b.out_of_order,
            .seq_gaps = b.seq_gaps, .unexpected = b.unexpected,
            .t_first_send = b.t_first_send, .t_last_ack = b.t_last_ack,
            .t_last_delivery = b.t_last_delivery, .latency = b.latency,
            .nlatency = b.nlatency, .lag = b.lag, .nlag = b.nlag, .cpu_s = cpu,
            .connect_s = (double)(t_connected - t_tokens) / 1e6};
        if (zim_benchkit_report (&r, json))
            status = EXIT_LOST;
    }

    //  Close politely, briefly.
    b.stopping = true;
    for (uint32_t i = 0; i < b.pairs; i++) {
        if (b.pair[i].sender)
            zim_client_close (b.pair[i].sender);
        if (b.pair[i].recipient)
            zim_client_close (b.pair[i].recipient);
    }
    until = zim_mono_us () + 1000000;
    while (zim_mono_us () < until) {
        bool open = false;
        for (uint32_t i = 0; i < b.pairs && !open; i++)
            open = (b.pair[i].sender && zim_client_state (b.pair[i].sender) != ZIM_CLIENT_CLOSED) ||
                   (b.pair[i].recipient &&
                    zim_client_state (b.pair[i].recipient) != ZIM_CLIENT_CLOSED);
        if (!open)
            break;
        zim_loop_run (loop, 50);
    }
    for (uint32_t i = 0; i < b.pairs; i++) {
        zim_client_destroy (&b.pair[i].sender);
        zim_client_destroy (&b.pair[i].recipient);
        free (b.pair[i].seen);
    }
    zim_loop_destroy (&loop);
    free (b.pair);
    free (b.latency);
    free (b.lag);
    free (b.body);
    free (key);
    zim_curve_destroy (&s_curve);
    return status;
}
