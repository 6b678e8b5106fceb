/*  zim_push.c: the push bridge. Takes the offline-push records of one or
    more stores (their admin endpoints: zim-server's, or each zim-store's in
    a cluster) and POSTs each as a JSON document to a webhook, the shape an
    APNs/FCM relay takes. At least once: a record leaves its store only
    when the bridge acknowledges it (posted, given up after its attempts,
    or muted); a bridge that dies takes the unacknowledged ones again when
    it restarts. Records of a muted conversation that do not mention the
    user are acknowledged without a POST.

    HTTP through libcurl (docs/ARCHITECTURE.md, "Libraries"): HTTPS,
    redirects, proxies and keep-alive are what a webhook needs, and none
    of it is zim's to write.
*/
#include "config.h"
#include "msg/zim_admin.h"
#include "msg/zim_curve.h"
#include "msg/zim_msg.h"
#include "msg/zim_util.h"

#include <curl/curl.h>
#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>

#define S_SOURCES_MAX 64 //  stores, at most

static void s_usage (FILE *out)
{
    fprintf (out,
             "Usage: zim-push --webhook URL [-e ENDPOINT]... [OPTIONS]\n"
             "\n"
             "Delivers the offline-push queue of zim stores to a webhook: one JSON POST\n"
             "per record {app, user, conv, from, id, seq, ts, count, preview, mention,\n"
             "badge}; a 2xx answer acknowledges it. Failed POSTs are retried with a\n"
             "doubling backoff, then dropped and counted.\n"
             "\n"
             "Options:\n"
             "  -w, --webhook URL       where to POST (http or https)\n"
             "  -e, --endpoint EP       a store's admin endpoint (default %s);\n"
             "                          give one per store shard in a cluster\n"
             "  -k, --key KEY           admin key (default: as zimctl finds it)\n"
             "      --keys DIR          CURVE keys of a node that uses CURVE (as zimctl)\n"
             "      --client NAME       the CURVE client key pair (default admin)\n"
             "  -H, --header 'K: V'     an HTTP header for every POST (repeatable)\n"
             "      --attempts N        POSTs per record before it is dropped (8)\n"
             "      --backoff MS        wait after the first failure, doubled after each (250)\n"
             "      --backoff-max MS    longest wait (30000)\n"
             "      --batch N           records taken per request (100)\n"
             "      --window N          records held at once (1000)\n"
             "      --poll MS           wait when a queue is empty (500)\n"
             "      --timeout MS        one POST, at most (5000)\n"
             "  -v, --verbose           log every POST\n"
             "  -h, --help              this text\n"
             "\n"
             "Exit status: 0 after SIGINT/SIGTERM, 2 usage.\n",
             ZIM_ADMIN_ENDPOINT);
}

//  One store the bridge takes records from.
typedef struct {
    const char *endpoint; //  its admin endpoint
    uint64_t after;       //  the last qid taken
    int64_t next_ms;      //  when to take again (monotonic)
    zim_wr_t acks[4];     //  qids to acknowledge per outcome, comma-separated
    size_t nacks[4];      //  how many
    bool down;            //  its last call failed (logged once)
} s_source_t;

//  One record on its way to the webhook.
typedef struct {
    s_source_t *source; //  where it came from
    uint64_t qid;       //  its queue position there
    char *body;         //  the JSON document
    int attempts;       //  POSTs so far
    int64_t due_ms;     //  when to POST next (monotonic)
} s_record_t;

//  The bridge.
typedef struct {
    const char *key;            //  admin key
    zim_curve_t *curve;         //  CURVE client keys, or NULL
    const char *webhook;        //  URL
    struct curl_slist *headers; //  for every POST
    CURL *curl;                 //  one handle: its connection is kept alive
    uint64_t attempts, backoff, backoff_max, batch, window, poll, timeout;
    bool verbose;                                //  log every POST
    s_source_t sources[S_SOURCES_MAX];           //  the stores
    size_t nsources;                             //  how many
    zlistx_t *records;                           //  s_record_t held, in arrival order
    uint64_t delivered, dropped, muted, retries; //  counters
    int64_t next_report_ms;                      //  the next counters line
} s_bridge_t;

//  One admin call to a source; returns the result (caller owns) or NULL.
static char *s_call (s_bridge_t *self, s_source_t *src, const char *const *args)
{
    char *text = NULL;
    int code =
        zim_admin_call_curve (src->endpoint, self->curve, self->key, 5000, "pushq", args, &text);
    if (code == 0) {
        if (src->down)
            zsys_info ("zim-push: %s answers again", src->endpoint);
        src->down = false;
        return text;
    }
    if (!src->down)
        zsys_warning ("zim-push: %s: %s (%d); trying again", src->endpoint,
                      text ? text : zim_strerror (code), code);
    src->down = code == ZIM_ERR_UNAVAILABLE;
    free (text);
    return NULL;
}

//  Queues qid of src for acknowledgement as outcome.
static void s_ack (s_source_t *src, int outcome, uint64_t qid)
{
    char buf[24];
    int len = snprintf (buf, sizeof buf, "%s%" PRIu64, src->nacks[outcome] ? "," : "", qid);
    zim_wr_raw (&src->acks[outcome], buf, (size_t)len);
    src->nacks[outcome]++;
}

//  Sends the queued acknowledgements of src (kept for the next round if
//  its store does not answer).
static void s_flush_acks (s_bridge_t *self, s_source_t *src)
{
    static const char *names[] = {"", "delivered", "dropped", "muted"};
    for (int o = 1; o < 4; o++) {
        if (!src->nacks[o])
            continue;
        zim_wr_raw (&src->acks[o], "", 1);
        const char *args[] = {"ack", names[o], src->acks[o].data, NULL};
        char *text = s_call (self, src, args);
        src->acks[o].size--;
        if (text) {
            zim_wr_reset (&src->acks[o]);
            src->nacks[o] = 0;
        }
        free (text);
    }
}

//  The webhook document of a taken record (caller owns).
static char *s_document (json_t *rec)
{
    json_t *doc =
        json_pack ("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "app",
                   json_object_get (rec, "app"), "user", json_object_get (rec, "uid"), "conv",
                   json_object_get (rec, "conv"), "from", json_object_get (rec, "from"), "id",
                   json_object_get (rec, "id"), "seq", json_object_get (rec, "seq"), "ts",
                   json_object_get (rec, "ts"), "count", json_object_get (rec, "count"), "preview",
                   json_object_get (rec, "preview"), "mention", json_object_get (rec, "mention"),
                   "badge", json_object_get (rec, "badge"));
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    return text;
}

//  Takes what src has after its last qid, within the window.
static void s_take (s_bridge_t *self, s_source_t *src, int64_t now)
{
    size_t room = self->window - zlistx_size (self->records);
    if (room == 0 || now < src->next_ms)
        return;
    char after[24], max[24];
    snprintf (after, sizeof after, "%" PRIu64, src->after);
    snprintf (max, sizeof max, "%" PRIu64, room < self->batch ? (uint64_t)room : self->batch);
    const char *args[] = {"take", after, max, NULL};
    char *text = s_call (self, src, args);
    json_t *o = text ? json_loads (text, 0, NULL) : NULL;
    free (text);
    json_t *records = json_object_get (o, "records");
    size_t i;
    json_t *rec;
    json_array_foreach (records, i, rec)
    {
        uint64_t qid = (uint64_t)json_integer_value (json_object_get (rec, "qid"));
        if (qid > src->after)
            src->after = qid;
        if (json_is_true (json_object_get (rec, "muted")) &&
            !json_is_true (json_object_get (rec, "mention"))) {
            self->muted++;
            s_ack (src, ZIM_PUSHQ_MUTED, qid);
            continue;
        }
        s_record_t *r = zim_calloc (1, sizeof *r);
        *r = (s_record_t){src, qid, s_document (rec), 0, now};
        zlistx_add_end (self->records, r);
    }
    //  An empty (or unreachable) queue is asked again after poll.
    src->next_ms = json_array_size (records) ? now : now + (int64_t)self->poll;
    json_decref (o);
}

//  POSTs one document; returns the HTTP status (0: no answer).
static long s_post (s_bridge_t *self, const char *body)
{
    curl_easy_setopt (self->curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform (self->curl);
    long status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo (self->curl, CURLINFO_RESPONSE_CODE, &status);
    else if (self->verbose)
        zsys_info ("zim-push: POST failed: %s", curl_easy_strerror (rc));
    return status;
}

//  POSTs the records that are due; returns the ms until the next is due
//  (-1: none held).
static int64_t s_deliver (s_bridge_t *self)
{
    int64_t next = -1;
    s_record_t *r = zlistx_first (self->records);
    while (r) {
        int64_t now = zclock_mono ();
        if (r->due_ms > now) {
            if (next < 0 || r->due_ms - now < next)
                next = r->due_ms - now;
            r = zlistx_next (self->records);
            continue;
        }
        long status = r->body ? s_post (self, r->body) : 400;
        r->attempts++;
        //  A 4xx other than 408 and 429 says the document itself is refused:
        //  sending it again cannot help.
        bool ok = status >= 200 && status < 300;
        bool refused = status >= 400 && status < 500 && status != 408 && status != 429;
        if (self->verbose)
            zsys_info ("zim-push: qid %" PRIu64 " attempt %d: HTTP %ld", r->qid, r->attempts,
                       status);
        if (ok || refused || r->attempts >= (int)self->attempts) {
            if (ok)
                self->delivered++;
            else {
                self->dropped++;
                zsys_warning ("zim-push: record %" PRIu64 " of %s dropped after %d attempt(s) "
                              "(last HTTP %ld)",
                              r->qid, r->source->endpoint, r->attempts, status);
            }
            s_ack (r->source, ok ? ZIM_PUSHQ_DELIVERED : ZIM_PUSHQ_DROPPED, r->qid);
            free (r->body);
            free (zlistx_detach_cur (self->records));
            r = zlistx_next (self->records);
            continue;
        }
        self->retries++;
        uint64_t wait = self->backoff << (r->attempts - 1 < 20 ? r->attempts - 1 : 20);
        r->due_ms = now + (int64_t)(wait < self->backoff_max ? wait : self->backoff_max);
        r = zlistx_next (self->records);
    }
    return next;
}

//  Logs the counters every 10 s when they changed.
static void s_report (s_bridge_t *self, bool force)
{
    static uint64_t last = UINT64_MAX;
    uint64_t sum = self->delivered + self->dropped + self->muted + self->retries;
    if (!force && (zclock_mono () < self->next_report_ms || sum == last))
        return;
    self->next_report_ms = zclock_mono () + 10000;
    last = sum;
    zsys_info ("zim-push: delivered %" PRIu64 " dropped %" PRIu64 " muted %" PRIu64
               " retries %" PRIu64 " held %zu",
               self->delivered, self->dropped, self->muted, self->retries,
               zlistx_size (self->records));
}

//  Reads a number option within [min, max]; -1 if it is not one.
static int s_number (const char *name, const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (zim_parse_u64 (text, out) == 0 && *out >= min && *out <= max)
        return 0;
    fprintf (stderr, "zim-push: bad %s '%s' (%" PRIu64 "..%" PRIu64 ")\n", name, text, min, max);
    return -1;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {{"webhook", required_argument, NULL, 'w'},
                                            {"endpoint", required_argument, NULL, 'e'},
                                            {"key", required_argument, NULL, 'k'},
                                            {"keys", required_argument, NULL, 'K'},
                                            {"client", required_argument, NULL, 'L'},
                                            {"header", required_argument, NULL, 'H'},
                                            {"attempts", required_argument, NULL, 'a'},
                                            {"backoff", required_argument, NULL, 'b'},
                                            {"backoff-max", required_argument, NULL, 'B'},
                                            {"batch", required_argument, NULL, 'n'},
                                            {"window", required_argument, NULL, 'W'},
                                            {"poll", required_argument, NULL, 'p'},
                                            {"timeout", required_argument, NULL, 't'},
                                            {"verbose", no_argument, NULL, 'v'},
                                            {"help", no_argument, NULL, 'h'},
                                            {"version", no_argument, NULL, 'V'},
                                            {NULL, 0, NULL, 0}};
    s_bridge_t self_s = {.attempts = 8,
                         .backoff = 250,
                         .backoff_max = 30000,
                         .batch = 100,
                         .window = 1000,
                         .poll = 500,
                         .timeout = 5000},
               *self = &self_s;
    const char *keys = NULL, *client = NULL;
    int c, rc = 0;
    while ((c = getopt_long (argc, argv, "w:e:k:H:vh", options, NULL)) != -1 && rc == 0) {
        switch (c) {
        case 'w':
            self->webhook = optarg;
            break;
        case 'e':
            if (self->nsources == S_SOURCES_MAX) {
                fprintf (stderr, "zim-push: at most %d endpoints\n", S_SOURCES_MAX);
                return 2;
            }
            self->sources[self->nsources++].endpoint = optarg;
            break;
        case 'k':
            self->key = optarg;
            break;
        case 'K':
            keys = optarg;
            break;
        case 'L':
            client = optarg;
            break;
        case 'H':
            self->headers = curl_slist_append (self->headers, optarg);
            break;
        case 'a':
            rc = s_number ("attempts", optarg, 1, 1000, &self->attempts);
            break;
        case 'b':
            rc = s_number ("backoff", optarg, 1, 3600000, &self->backoff);
            break;
        case 'B':
            rc = s_number ("backoff-max", optarg, 1, 3600000, &self->backoff_max);
            break;
        case 'n':
            rc = s_number ("batch", optarg, 1, 1000, &self->batch);
            break;
        case 'W':
            rc = s_number ("window", optarg, 1, 100000, &self->window);
            break;
        case 'p':
            rc = s_number ("poll", optarg, 1, 600000, &self->poll);
            break;
        case 't':
            rc = s_number ("timeout", optarg, 1, 600000, &self->timeout);
            break;
        case 'v':
            self->verbose = true;
            break;
        case 'h':
            s_usage (stdout);
            return 0;
        case 'V':
            printf ("zim-push %s\n", PACKAGE_VERSION);
            return 0;
        default:
            rc = -1;
        }
    }
    if (rc || optind < argc || !self->webhook) {
        if (rc == 0)
            fprintf (stderr, "zim-push: %s\n",
                     self->webhook ? "unexpected argument" : "needs --webhook URL");
        fprintf (stderr, "Try 'zim-push --help'.\n");
        curl_slist_free_all (self->headers);
        return 2;
    }
    if (self->nsources == 0)
        self->sources[self->nsources++].endpoint = ZIM_ADMIN_ENDPOINT;
    for (size_t i = 0; i < self->nsources; i++)
        for (int o = 0; o < 4; o++)
            zim_wr_init (&self->sources[i].acks[o]);
    char *owned_key = self->key ? NULL : zim_admin_key_default ();
    char *owned_keys = keys ? NULL : zim_admin_keys_default ();
    self->key = self->key ? self->key : owned_key;
    keys = keys ? keys : owned_keys;
    if (!self->key) {
        fprintf (stderr, "zim-push: no admin key: use -k, $ZIM_ADMIN_KEY or run next to "
                         "./zim-data/admin.key\n");
        free (owned_keys);
        curl_slist_free_all (self->headers);
        return 2;
    }
    zsys_init ();
    if (keys && !(self->curve = zim_curve_load_client (keys, client ? client : "admin", false))) {
        fprintf (stderr, "zim-push: no usable CURVE client keys in %s\n", keys);
        free (owned_key);
        free (owned_keys);
        curl_slist_free_all (self->headers);
        return 2;
    }
    curl_global_init (CURL_GLOBAL_DEFAULT);
    self->curl = curl_easy_init ();
    self->headers = curl_slist_append (self->headers, "Content-Type: application/json");
    curl_easy_setopt (self->curl, CURLOPT_URL, self->webhook);
    curl_easy_setopt (self->curl, CURLOPT_HTTPHEADER, self->headers);
    curl_easy_setopt (self->curl, CURLOPT_TIMEOUT_MS, (long)self->timeout);
    curl_easy_setopt (self->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (self->curl, CURLOPT_USERAGENT, "zim-push/" PACKAGE_VERSION);
    self->records = zlistx_new ();
    zsys_info ("zim-push: %zu store(s) -> %s (attempts %" PRIu64 ", backoff %" PRIu64 " ms)",
               self->nsources, self->webhook, self->attempts, self->backoff);

    while (!zsys_interrupted) {
        int64_t now = zclock_mono (), wait = (int64_t)self->poll;
        for (size_t i = 0; i < self->nsources; i++) {
            s_take (self, &self->sources[i], now);
            int64_t until = self->sources[i].next_ms - zclock_mono ();
            wait = until < wait ? (until > 0 ? until : 0) : wait;
        }
        int64_t due = s_deliver (self);
        for (size_t i = 0; i < self->nsources; i++)
            s_flush_acks (self, &self->sources[i]);
        s_report (self, false);
        if (due >= 0 && due < wait)
            wait = due;
        if (wait > 0)
            zclock_sleep ((int)wait);
    }
    //  What is held stays in its store: the next bridge takes it again.
    for (size_t i = 0; i < self->nsources; i++)
        s_flush_acks (self, &self->sources[i]);
    s_report (self, true);
    s_record_t *r;
    while ((r = zlistx_detach (self->records, NULL))) {
        free (r->body);
        free (r);
    }
    zlistx_destroy (&self->records);
    for (size_t i = 0; i < self->nsources; i++)
        for (int o = 0; o < 4; o++)
            zim_wr_free (&self->sources[i].acks[o]);
    curl_easy_cleanup (self->curl);
    curl_slist_free_all (self->headers);
    curl_global_cleanup ();
    zim_curve_destroy (&self->curve);
    free (owned_key);
    free (owned_keys);
    return 0;
}
