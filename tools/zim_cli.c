/*  zim_cli.c: zim-cli, a terminal client for zim over the C SDK. Sends a
    message and prints its ack, listens (sync from the cursor, then live) and
    prints messages as JSON lines, pages a conversation's history, marks a
    conversation read or delivered, lists conversations and groups, reads a
    channel.
*/
#include "config.h"
#include "sdk/c/zim_client.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Exit codes.
#define EXIT_USAGE 1   //  bad command line
#define EXIT_CONN 2    //  could not connect or authenticate, or the connection died
#define EXIT_SERVER 3  //  the server answered with an error
#define EXIT_TIMEOUT 4 //  no answer (or not enough messages) in time

#define DEFAULT_URL "ws://127.0.0.1:7700/ws"

static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: zim-cli [-u URL] [-d DEVICE] [-t TOKEN] COMMAND [ARGS] [OPTIONS]\n"
             "\n"
             "A terminal client for a zim server. Output is JSON, one object per line.\n"
             "\n"
             "Commands:\n"
             "  send TO TEXT [--cid CID] [--timeout S]\n"
             "        send TEXT (as a msgpack string body) to user TO; print the ack,\n"
             "        {\"cid\":...,\"id\":...,\"seq\":...,\"ts\":...}, once the server has stored\n"
             "        it. --cid sets the client message id (default: a fresh random one);\n"
             "        sending again with the same cid returns the original ack.\n"
             "  listen [--since SEQ] [--count N] [--timeout S]\n"
             "        sync the inbox from SEQ (default: after this device's stored cursor),\n"
             "        following pages until none is left, then print live messages as\n"
             "        they come: "
             "{\"seq\":...,\"id\":...,\"from\":...,\"to\":...,\"body\":...,\"ts\":...}.\n"
             "        Every seq is printed once and in order (gaps are filled by sync);\n"
             "        what was printed is acknowledged with a cursor, so the next listen\n"
             "        without --since starts after it. Stops after N messages (exit 0)\n"
             "        or when S seconds have passed (exit 0 without --count, else 4).\n"
             "  history PEER [--limit N] [--before ID] [--timeout S]\n"
             "        print the conversation with PEER, newest first, at most N messages\n"
             "        (server default 100), with ids below ID (default: from the newest).\n"
             "        If more are left, a last line {\"more\":true,\"before\":ID} says\n"
             "        where to continue.\n"
             "  ping [--timeout S]\n"
             "        connect, authenticate, ping; print {\"uid\":...,\"rtt_us\":...}.\n"
             "  read CONV SEQ / delivered CONV SEQ [--timeout S]\n"
             "        mark conversation CONV (p:A:B or g:GROUP) read (delivered) up to\n"
             "        SEQ, a seq of this user's inbox; print the cursors the server\n"
             "        answers: {\"conv\":...,\"user\":...,\"read\":...,\"delivered\":...}.\n"
             "  convs [--limit N] [--before ID] [--timeout S]\n"
             "        print the conversation list, most recent first: {\"conv\":...,\n"
             "        \"id\":...,\"from\":...,\"ts\":...,\"body\":...,\"seq\":...,\"unread\":...,\n"
             "        \"read\":...,\"delivered\":...} (and peer_read, peer_delivered, muted\n"
             "        when set); {\"more\":true,\"before\":ID} if more are left.\n"
             "  groups [--timeout S]\n"
             "        print this user's groups and channels: {\"group\":...,\"kind\":...,\n"
             "        \"head\":...,\"joined\":...,\"members\":...}.\n"
             "  csync GROUP [--since GSEQ] [--limit N] [--timeout S]\n"
             "        print channel GROUP's messages after GSEQ (default 0), oldest\n"
             "        first, each with its gseq; a first line {\"reset\":true} when the\n"
             "        reader was too far behind and got the newest ones instead;\n"
             "        {\"more\":true,\"since\":GSEQ} if more are left.\n"
             "\n"
             "Options:\n"
             "  -u, --url URL        server WebSocket URL (default %s)\n"
             "  -t, --token TOKEN    the client token (default: $ZIM_TOKEN); mint one with\n"
             "                       zimctl token --app APP --uid UID\n"
             "  -d, --device DEVICE  device name, which owns the sync cursor\n"
             "                       (default: the server's \"default\")\n"
             "      --timeout S      seconds to wait (every command but listen: default 10;\n"
             "                       listen default: forever)\n"
             "  -h, --help           this text\n"
             "\n"
             "Bodies are printed as JSON: strings as strings, msgpack bin as base64\n"
             "strings, maps with non-string keys with those keys as strings.\n"
             "\n"
             "Exit status: 0 success, 1 usage, 2 connection or authentication failure,\n"
             "3 the server returned an error, 4 timeout.\n"
             "\n"
             "Examples:\n"
             "  export ZIM_TOKEN=$(zimctl token --app demo --uid alice)\n"
             "  zim-cli send bob \"hello bob\"\n"
             "  zim-cli -t \"$BOB\" listen --timeout 10\n"
             "  zim-cli -t \"$BOB\" -d laptop listen --since 0 --count 5\n"
             "  zim-cli history bob --limit 20\n"
             "  zim-cli convs --limit 10\n"
             "  zim-cli read p:alice:bob 42\n"
             "  zim-cli csync news --since 100\n"
             "  zim-cli -u ws://chat.example.com:7700/ws ping\n",
             DEFAULT_URL);
}

//  What the run is doing and how it ended.
typedef enum {
    CMD_SEND,
    CMD_LISTEN,
    CMD_HISTORY,
    CMD_PING,
    CMD_READ,
    CMD_DELIVERED,
    CMD_CONVS,
    CMD_GROUPS,
    CMD_CSYNC
} s_cmd_t;

typedef struct {
    s_cmd_t cmd;                   //  the command
    zim_client_t *client;          //  our connection
    bool done;                     //  stop the loop
    int status;                    //  exit status once done
    char cid[ZIM_CLIENT_CID_SIZE]; //  send: our cid
    uint64_t rid;                  //  history, convs, groups, csync: the request id
    const char *conv;              //  read, delivered: the conversation
    uint64_t count;                //  listen: stop after this many (0: no limit)
    uint64_t printed;              //  listen: messages printed
    uint64_t ping_t;               //  ping: when it went out
    char error[300];               //  the last error, for the exit message
    int error_code;                //  its code
} s_run_t;

static volatile sig_atomic_t s_interrupted = 0;

static void s_on_signal (int sig)
{
    (void)sig;
    s_interrupted = 1;
}

//  Monotonic clock in microseconds.
static uint64_t s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

//  Ends the run with status, closing the connection politely.
static void s_finish (s_run_t *run, int status)
{
    if (run->done)
        return;
    run->done = true;
    run->status = status;
}

//  Prints one message as a JSON line.
static void s_print_msg (const zim_client_msg_t *m)
{
    char *body = zim_body_to_json (m->body, m->body_len);
    char *from = zim_json_string (m->from);
    char *to = zim_json_string (m->to);
    if (m->seq)
        printf ("{\"seq\":%" PRIu64 ",", m->seq);
    else if (m->gseq)
        printf ("{\"gseq\":%" PRIu64 ",", m->gseq);
    else
        printf ("{");
    printf ("\"id\":%" PRIu64 ",\"from\":%s,\"to\":%s,\"body\":%s,\"ts\":%" PRIu64, m->id, from, to,
            body ? body : "null", m->ts);
    if (m->group[0]) {
        char *group = zim_json_string (m->group);
        printf (",\"group\":%s", group);
        free (group);
    }
    printf ("}\n");
    free (body);
    free (from);
    free (to);
}

static void s_on_state (zim_client_t *c, zim_client_state_t state, int code, void *arg)
{
    s_run_t *run = arg;
    if (state == ZIM_CLIENT_AUTHED && run->cmd == CMD_PING) {
        run->ping_t = s_now_us ();
        zim_client_ping (c, run->ping_t);
    }
    if (state != ZIM_CLIENT_CLOSED || run->done)
        return;
    //  closed before we were done: the connection failed
    if (code && !run->error[0])
        snprintf (run->error, sizeof run->error, "connection closed (code %d)", code);
    else if (!run->error[0])
        snprintf (run->error, sizeof run->error, "connection closed");
    s_finish (run, EXIT_CONN);
}

static void s_on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    s_run_t *run = arg;
    //  keep a server's reason (a refused token) over the client's "closed
    //  before the ack" that follows it
    if (!(e->code < 1000 && run->error_code >= 4000)) {
        run->error_code = e->code;
        snprintf (run->error, sizeof run->error, "%s%s (code %d)",
                  e->code == ZIM_CLIENT_ERR_BAD_TOKEN || e->code == ZIM_CLIENT_ERR_TOKEN_EXPIRED
                      ? "authentication failed: "
                      : "",
                  e->text, e->code);
    }
    if (run->cmd == CMD_LISTEN && !run->done)
        fprintf (stderr, "zim-cli: %s\n", run->error); //  listen goes on
    if (run->done)
        return;
    //  answers to our request are server errors; the rest is about the
    //  connection, which closes next (auth failures) or stays up
    if ((e->cid && run->cmd == CMD_SEND && strcmp (e->cid, run->cid) == 0) ||
        (e->has_rid && e->rid == run->rid && run->rid) ||
        //  read and delivered carry no rid: a server error now is theirs
        ((run->cmd == CMD_READ || run->cmd == CMD_DELIVERED) && e->code >= 4000)) {
        if (e->code < 1000)
            s_finish (run, EXIT_CONN); //  our request died with the connection
        else
            s_finish (run, EXIT_SERVER);
    }
}

static void s_on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    s_run_t *run = arg;
    if (run->cmd != CMD_SEND || strcmp (a->cid, run->cid) != 0)
        return;
    char *cid = zim_json_string (a->cid);
    printf ("{\"cid\":%s,\"id\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"ts\":%" PRIu64 "}\n", cid, a->id,
            a->seq, a->ts);
    free (cid);
    s_finish (run, 0);
}

static void s_on_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    s_run_t *run = arg;
    if (run->cmd != CMD_LISTEN || run->done)
        return;
    s_print_msg (m);
    run->printed++;
    if (m->seq)
        zim_client_cursor (c, m->seq); //  coalesced: one cursor frame per write
    if (run->count && run->printed >= run->count)
        s_finish (run, 0);
}

static void s_on_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    s_run_t *run = arg;
    if ((run->cmd != CMD_HISTORY && run->cmd != CMD_CSYNC) || p->rid != run->rid)
        return;
    if (p->reset)
        printf ("{\"reset\":true}\n");
    for (size_t i = 0; i < p->count; i++)
        s_print_msg (&p->msgs[i]);
    if (p->more && p->count > 0 && run->cmd == CMD_HISTORY)
        printf ("{\"more\":true,\"before\":%" PRIu64 "}\n", p->msgs[p->count - 1].id);
    else if (p->more && p->count > 0)
        printf ("{\"more\":true,\"since\":%" PRIu64 "}\n", p->msgs[p->count - 1].gseq);
    s_finish (run, 0);
}

static void s_on_receipt (zim_client_t *c, const zim_client_receipt_t *r, void *arg)
{
    s_run_t *run = arg;
    //  the answer to our read: this user's cursors of our conversation
    if ((run->cmd != CMD_READ && run->cmd != CMD_DELIVERED) || strcmp (r->conv, run->conv) != 0 ||
        strcmp (r->user, zim_client_uid (c)) != 0)
        return;
    char *conv = zim_json_string (r->conv);
    char *user = zim_json_string (r->user);
    printf ("{\"conv\":%s,\"user\":%s", conv, user);
    if (r->has_read)
        printf (",\"read\":%" PRIu64, r->read);
    if (r->has_delivered)
        printf (",\"delivered\":%" PRIu64, r->delivered);
    printf ("}\n");
    free (conv);
    free (user);
    s_finish (run, 0);
}

static void s_on_convs (zim_client_t *c, const zim_client_convs_t *l, void *arg)
{
    s_run_t *run = arg;
    if (run->cmd != CMD_CONVS || l->rid != run->rid)
        return;
    for (size_t i = 0; i < l->count; i++) {
        const zim_client_conv_t *e = &l->convs[i];
        char *conv = zim_json_string (e->conv);
        char *from = zim_json_string (e->from);
        char *body = zim_body_to_json (e->body, e->body_len);
        printf ("{\"conv\":%s,\"id\":%" PRIu64 ",\"from\":%s,\"ts\":%" PRIu64
                ",\"body\":%s,\"seq\":%" PRIu64 ",\"unread\":%" PRIu64 ",\"read\":%" PRIu64
                ",\"delivered\":%" PRIu64,
                conv, e->id, from, e->ts, body ? body : "null", e->seq, e->unread, e->read,
                e->delivered);
        if (e->peer_read)
            printf (",\"peer_read\":%" PRIu64, e->peer_read);
        if (e->peer_delivered)
            printf (",\"peer_delivered\":%" PRIu64, e->peer_delivered);
        if (e->muted)
            printf (",\"muted\":%" PRIu64, e->muted);
        printf ("}\n");
        free (conv);
        free (from);
        free (body);
    }
    if (l->more && l->count > 0)
        printf ("{\"more\":true,\"before\":%" PRIu64 "}\n", l->convs[l->count - 1].id);
    s_finish (run, 0);
}

static void s_on_groups (zim_client_t *c, const zim_client_groups_t *l, void *arg)
{
    s_run_t *run = arg;
    if (run->cmd != CMD_GROUPS || l->rid != run->rid)
        return;
    for (size_t i = 0; i < l->count; i++) {
        const zim_client_group_t *g = &l->groups[i];
        char *group = zim_json_string (g->group);
        printf ("{\"group\":%s,\"kind\":\"%s\",\"head\":%" PRIu64 ",\"joined\":%" PRIu64
                ",\"members\":%" PRIu64 "}\n",
                group, g->channel ? "channel" : "group", g->head, g->joined, g->members);
        free (group);
    }
    s_finish (run, 0);
}

static void s_on_pong (zim_client_t *c, uint64_t t, void *arg)
{
    s_run_t *run = arg;
    if (run->cmd != CMD_PING || t != run->ping_t)
        return;
    char *uid = zim_json_string (zim_client_uid (c));
    printf ("{\"uid\":%s,\"rtt_us\":%" PRIu64 "}\n", uid, s_now_us () - t);
    free (uid);
    s_finish (run, 0);
}

//  Parses a decimal unsigned integer that fills the whole string.
static int s_parse_u64 (const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull (s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

//  Parses seconds (may have a fraction) into milliseconds.
static int s_parse_secs (const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod (s, &end);
    if (errno || *end || end == s || !(v > 0) || v > 1e7)
        return -1;
    *ms = (uint64_t)(v * 1000 + 0.999); //  round up: 0.0001 s is 1 ms, not 0
    return 0;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},     {"token", required_argument, NULL, 't'},
        {"device", required_argument, NULL, 'd'},  {"help", no_argument, NULL, 'h'},
        {"since", required_argument, NULL, 'S'},   {"count", required_argument, NULL, 'C'},
        {"timeout", required_argument, NULL, 'W'}, {"limit", required_argument, NULL, 'L'},
        {"before", required_argument, NULL, 'B'},  {"cid", required_argument, NULL, 'I'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0}};
    const char *url = DEFAULT_URL, *token = getenv ("ZIM_TOKEN"), *device = NULL, *cid = NULL;
    const char *since_arg = NULL, *count_arg = NULL, *limit_arg = NULL, *before_arg = NULL;
    uint64_t timeout_ms = 0;
    bool has_timeout = false;
    int c;
    while ((c = getopt_long (argc, argv, "u:t:d:h", options, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'd':
            device = optarg;
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        case 'V':
            printf ("zim-cli %s\n", PACKAGE_VERSION);
            return 0;
        case 'S':
            since_arg = optarg;
            break;
        case 'C':
            count_arg = optarg;
            break;
        case 'L':
            limit_arg = optarg;
            break;
        case 'B':
            before_arg = optarg;
            break;
        case 'I':
            cid = optarg;
            break;
        case 'W':
            if (s_parse_secs (optarg, &timeout_ms)) {
                fprintf (stderr, "zim-cli: bad --timeout '%s' (seconds, > 0)\n", optarg);
                return EXIT_USAGE;
            }
            has_timeout = true;
            break;
        default:
            fprintf (stderr, "Try 'zim-cli --help'.\n");
            return EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    if (nargs < 1) {
        s_usage (stderr);
        return EXIT_USAGE;
    }
    s_run_t run;
    memset (&run, 0, sizeof run);
    const char *cmd = args[0];
    int want_args;
    if (strcmp (cmd, "send") == 0) {
        run.cmd = CMD_SEND;
        want_args = 3;
    } else if (strcmp (cmd, "listen") == 0) {
        run.cmd = CMD_LISTEN;
        want_args = 1;
    } else if (strcmp (cmd, "history") == 0) {
        run.cmd = CMD_HISTORY;
        want_args = 2;
    } else if (strcmp (cmd, "ping") == 0) {
        run.cmd = CMD_PING;
        want_args = 1;
    } else if (strcmp (cmd, "read") == 0 || strcmp (cmd, "delivered") == 0) {
        run.cmd = cmd[0] == 'r' ? CMD_READ : CMD_DELIVERED;
        want_args = 3;
    } else if (strcmp (cmd, "convs") == 0) {
        run.cmd = CMD_CONVS;
        want_args = 1;
    } else if (strcmp (cmd, "groups") == 0) {
        run.cmd = CMD_GROUPS;
        want_args = 1;
    } else if (strcmp (cmd, "csync") == 0) {
        run.cmd = CMD_CSYNC;
        want_args = 2;
    } else {
        fprintf (stderr, "zim-cli: unknown command '%s'. Try 'zim-cli --help'.\n", cmd);
        return EXIT_USAGE;
    }
    if (nargs != want_args) {
        fprintf (stderr, "zim-cli: %s takes %d argument%s. Try 'zim-cli --help'.\n", cmd,
                 want_args - 1, want_args == 2 ? "" : "s");
        return EXIT_USAGE;
    }
    //  options that belong to another command are mistakes worth reporting
    if ((since_arg && run.cmd != CMD_LISTEN && run.cmd != CMD_CSYNC) ||
        (count_arg && run.cmd != CMD_LISTEN)) {
        fprintf (stderr, "zim-cli: --since is for listen and csync, --count for listen\n");
        return EXIT_USAGE;
    }
    if ((limit_arg && run.cmd != CMD_HISTORY && run.cmd != CMD_CONVS && run.cmd != CMD_CSYNC) ||
        (before_arg && run.cmd != CMD_HISTORY && run.cmd != CMD_CONVS)) {
        fprintf (stderr, "zim-cli: --limit is for history, convs and csync, --before for "
                         "history and convs\n");
        return EXIT_USAGE;
    }
    uint64_t mark_seq = 0;
    if ((run.cmd == CMD_READ || run.cmd == CMD_DELIVERED) &&
        (s_parse_u64 (args[2], &mark_seq) || mark_seq == 0)) {
        fprintf (stderr, "zim-cli: %s takes a seq (a number above 0)\n", cmd);
        return EXIT_USAGE;
    }
    if (cid && run.cmd != CMD_SEND) {
        fprintf (stderr, "zim-cli: --cid is for send\n");
        return EXIT_USAGE;
    }
    if (!token || !*token) {
        fprintf (stderr, "zim-cli: no token: give -t TOKEN or set ZIM_TOKEN "
                         "(zimctl token --app APP --uid UID mints one)\n");
        return EXIT_USAGE;
    }
    uint64_t since = 0, limit = 0, before = 0;
    if ((since_arg && (s_parse_u64 (since_arg, &since) || since > INT64_MAX)) ||
        (count_arg && (s_parse_u64 (count_arg, &run.count) || run.count == 0)) ||
        (limit_arg && (s_parse_u64 (limit_arg, &limit) || limit == 0 || limit > UINT32_MAX)) ||
        (before_arg && s_parse_u64 (before_arg, &before))) {
        fprintf (stderr, "zim-cli: --since, --count, --limit and --before take a number\n");
        return EXIT_USAGE;
    }
    if (!has_timeout && run.cmd != CMD_LISTEN)
        timeout_ms = 10000;

    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    signal (SIGPIPE, SIG_IGN);
    zim_loop_t *loop = zim_loop_new ();
    if (!loop) {
        fprintf (stderr, "zim-cli: cannot start the network loop\n");
        return EXIT_CONN;
    }
    zim_client_config_t cfg = {0};
    cfg.url = url;
    cfg.token = token;
    cfg.device = device;
    cfg.on_state = s_on_state;
    cfg.on_error = s_on_error;
    cfg.on_ack = s_on_ack;
    cfg.on_msg = s_on_msg;
    cfg.on_page = s_on_page;
    cfg.on_pong = s_on_pong;
    cfg.on_receipt = s_on_receipt;
    cfg.on_convs = s_on_convs;
    cfg.on_groups = s_on_groups;
    cfg.arg = &run;
    if (run.cmd == CMD_LISTEN) {
        cfg.auto_sync = true;
        cfg.has_since = since_arg != NULL;
        cfg.since = since;
    }
    if (has_timeout && timeout_ms < 10000)
        cfg.connect_timeout_ms = (uint32_t)timeout_ms;
    run.client = zim_client_new (loop, &cfg);
    if (!run.client) {
        fprintf (stderr, "zim-cli: bad URL '%s' (ws://HOST[:PORT]/PATH) or device name\n", url);
        zim_loop_destroy (&loop);
        return EXIT_USAGE;
    }
    int rc = 0;
    const char *what = "a valid user id";
    if (run.cmd == CMD_SEND)
        rc = zim_client_send_text (run.client, args[1], cid, args[2], run.cid);
    else if (run.cmd == CMD_HISTORY)
        rc = zim_client_history (run.client, args[1], before, (uint32_t)limit, &run.rid);
    else if (run.cmd == CMD_READ || run.cmd == CMD_DELIVERED) {
        run.conv = args[1];
        what = "a conversation (p:A:B with A < B, or g:GROUP)";
        rc = run.cmd == CMD_READ ? zim_client_read (run.client, args[1], mark_seq)
                                 : zim_client_delivered (run.client, args[1], mark_seq);
    } else if (run.cmd == CMD_CONVS)
        rc = zim_client_convs (run.client, (uint32_t)limit, before, &run.rid);
    else if (run.cmd == CMD_GROUPS)
        rc = zim_client_groups (run.client, &run.rid);
    else if (run.cmd == CMD_CSYNC) {
        what = "a valid group id";
        rc = zim_client_csync (run.client, args[1], (int64_t)since, (uint32_t)limit, &run.rid);
    }
    if (rc) {
        fprintf (stderr, "zim-cli: %s is not %s%s\n", args[1], what,
                 cid ? ", or the cid is not 1-64 printable characters" : "");
        zim_client_destroy (&run.client);
        zim_loop_destroy (&loop);
        return EXIT_USAGE;
    }

    uint64_t deadline = timeout_ms ? s_now_us () + timeout_ms * 1000 : 0;
    bool timed_out = false;
    while (!run.done) {
        int wait = 200;
        if (deadline) {
            uint64_t now = s_now_us ();
            if (now >= deadline) {
                timed_out = true;
                break;
            }
            if ((deadline - now) / 1000 < (uint64_t)wait)
                wait = (int)((deadline - now) / 1000) + 1;
        }
        if (s_interrupted)
            break;
        zim_loop_run (loop, wait);
        fflush (stdout);
    }
    fflush (stdout);
    int status = run.status;
    if (!run.done) {
        if (run.cmd == CMD_LISTEN)
            status = (timed_out && run.count) ? EXIT_TIMEOUT : 0;
        else
            status = EXIT_TIMEOUT;
    }
    if (status == EXIT_TIMEOUT) {
        if (run.cmd == CMD_LISTEN)
            fprintf (stderr, "zim-cli: timeout: %" PRIu64 " of %" PRIu64 " messages\n", run.printed,
                     run.count);
        else
            fprintf (stderr, "zim-cli: timeout: no answer within %" PRIu64 " ms%s%s\n", timeout_ms,
                     run.error[0] ? "; last error: " : "", run.error);
    } else if (status == EXIT_CONN || status == EXIT_SERVER)
        fprintf (stderr, "zim-cli: %s%s\n", status == EXIT_CONN ? "connection failed: " : "",
                 run.error);

    //  Close politely: this also writes the last cursor.
    if (zim_client_state (run.client) != ZIM_CLIENT_CLOSED) {
        zim_client_close (run.client);
        uint64_t until = s_now_us () + 2000000;
        while (zim_client_state (run.client) != ZIM_CLIENT_CLOSED && s_now_us () < until)
            zim_loop_run (loop, 100);
    }
    zim_client_destroy (&run.client);
    zim_loop_destroy (&loop);
    return status;
}
