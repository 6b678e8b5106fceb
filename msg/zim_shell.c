/*  zim_shell.c: the pipe protocol, settings table, STATS and peer-warning
    limiter shared by every actor (see zim_shell.h). An actor's own loop
    calls zim_shell_handle when its pipe is readable; everything the four
    actors used to repeat lives here once.
*/
#include "msg/zim_shell.h"
#include "msg/zim_curve.h"
#include "msg/zim_util.h"
#include "msg/zim_zap.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct _zim_shell_t {
    zsock_t *pipe;                //  the actor's pipe (borrowed)
    const zim_shell_class_t *cls; //  the actor's table and hooks
    void *self;                   //  the actor's state
    char *name;                   //  node name, in every log line
    int port;                     //  what PORT answers
    bool started;                 //  START succeeded
    bool terminated;              //  $TERM or closed pipe
    uint64_t max_msg_size;        //  ZMQ_MAXMSGSIZE of backbone sockets
    zim_ratelog_t ratelog;        //  peer-triggered warnings
    char curve_public[41];        //  the cluster's public key (Z85), "" without CURVE
    char curve_secret[41];        //  the cluster's secret key (Z85), "" without CURVE
    zim_curve_t *curve;           //  made from both at the first socket
};

//  Reads a CURVE key setting into the 41-byte field at base + offset.
static int s_set_key (char *field, const char *value, const char **why)
{
    if (*value && strlen (value) != 40) {
        *why = "not a 40-character Z85 key";
        return -1;
    }
    snprintf (field, 41, "%s", value);
    return 0;
}

static int s_set_curve_public (void *self, const char *value, const char *value2,
                               const char **why)
{
    (void) value2;
    return s_set_key (((zim_shell_t *) self)->curve_public, value, why);
}

static int s_set_curve_secret (void *self, const char *value, const char *value2,
                               const char **why)
{
    (void) value2;
    return s_set_key (((zim_shell_t *) self)->curve_secret, value, why);
}

//  Settings every actor has, handled by the shell itself.
static const zim_setting_t s_common[] = {
    {"max_msg_size", ZIM_SET_U64, offsetof (zim_shell_t, max_msg_size), 4096, 0, 1,
     ZIM_SET_BEFORE_START, NULL,
     "largest backbone message accepted, bytes (64 MiB); bigger ones drop the peer"},
    {"curve_public_key", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_curve_public,
     "the cluster's CURVE public key (Z85): with curve_secret_key, CURVE on every backbone "
     "socket"},
    {"curve_secret_key", ZIM_SET_FN, 0, 0, 0, 0, ZIM_SET_BEFORE_START, s_set_curve_secret,
     "the cluster's CURVE secret key (Z85)"},
    {NULL}};

zim_shell_t *zim_shell_new (zsock_t *pipe, const zim_shell_class_t *cls, void *self,
                            const char *name)
{
    zim_shell_t *shell = zim_calloc (1, sizeof *shell);
    shell->pipe = pipe;
    shell->cls = cls;
    shell->self = self;
    shell->name = zim_strdup (name);
    shell->max_msg_size = ZIM_SHELL_MAX_MSG_SIZE;
    //  An actor's thread is named after its role ("zim-store"), for top -H,
    //  perf and tools/bench-threads.
    if (pipe && cls->role) {
        char thread[16];
        snprintf (thread, sizeof thread, "zim-%s", cls->role);
        pthread_setname_np (pthread_self (), thread);
    }
    for (const zim_histogram_t *h = cls->histograms; h && h->name; h++)
        zim_histo_init ((zim_histo_t *)((char *)self + h->offset), h->bounds, h->nbounds);
    return shell;
}

void zim_shell_destroy (zim_shell_t **self_p)
{
    zim_shell_t *shell = *self_p;
    if (!shell)
        return;
    //  The string settings the shell set belong to it.
    for (const zim_setting_t *s = shell->cls->settings; s && s->key; s++)
        if (s->type == ZIM_SET_STR) {
            char **field = (char **)((char *)shell->self + s->offset);
            zim_free (field);
        }
    zim_curve_destroy (&shell->curve);
    free (shell->name);
    explicit_bzero (shell, sizeof *shell);
    free (shell);
    *self_p = NULL;
}

const char *zim_shell_name (zim_shell_t *self)
{
    return self->name;
}

zsock_t *zim_shell_pipe (zim_shell_t *self)
{
    return self->pipe;
}

bool zim_shell_started (zim_shell_t *self)
{
    return self->started;
}

bool zim_shell_terminated (zim_shell_t *self)
{
    return self->terminated;
}

void zim_shell_terminate (zim_shell_t *self)
{
    self->terminated = true;
}

void zim_shell_set_port (zim_shell_t *self, int port)
{
    self->port = port;
}

//  Reads a boolean word; returns 0 or -1.
static int s_parse_bool (const char *value, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (streq (value, yes[i])) {
            *out = true;
            return 0;
        }
        if (streq (value, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

//  Applies one row of a table to base; returns 0 or -1 with *why set.
static int s_apply (zim_shell_t *self, const zim_setting_t *s, void *base, const char *value,
                    const char *value2, const char **why)
{
    if ((s->flags & ZIM_SET_BEFORE_START) && self->started) {
        *why = "cannot change after START";
        return -1;
    }
    void *field = (char *)base + s->offset;
    switch (s->type) {
    case ZIM_SET_U64: {
        uint64_t v, scale = s->scale ? s->scale : 1;
        if (zim_parse_u64 (value, &v)) {
            *why = "not a non-negative integer";
            return -1;
        }
        if (v < s->min || (s->max && v > s->max) || (v && UINT64_MAX / v < scale)) {
            *why = "out of range";
            return -1;
        }
        *(uint64_t *)field = v * scale;
        return 0;
    }
    case ZIM_SET_STR: {
        char **str = (char **)field;
        free (*str);
        *str = *value ? zim_strdup (value) : NULL;
        return 0;
    }
    case ZIM_SET_BOOL:
        if (s_parse_bool (value, (bool *)field)) {
            *why = "not a boolean (1/0, true/false, yes/no, on/off)";
            return -1;
        }
        return 0;
    case ZIM_SET_FN:
        *why = "bad value";
        return s->fn (base, value, value2, why);
    }
    *why = "bad settings table";
    return -1;
}

int zim_shell_set (zim_shell_t *self, const char *key, const char *value, const char *value2)
{
    if (!key || !value) {
        zsys_warning ("%s: SET needs a key and a value", self->name);
        return -1;
    }
    if (streq (key, "name")) {
        if (!*value) {
            zsys_warning ("%s: SET name: empty name refused", self->name);
            return -1;
        }
        free (self->name);
        self->name = zim_strdup (value);
        return 0;
    }
    const zim_setting_t *tables[2] = {s_common, self->cls->settings};
    void *bases[2] = {self, self->self};
    for (size_t t = 0; t < 2; t++)
        for (const zim_setting_t *s = tables[t]; s && s->key; s++) {
            if (!streq (s->key, key))
                continue;
            const char *why = NULL;
            if (s_apply (self, s, bases[t], value, value2, &why) == 0)
                return 0;
            //  Secrets stay out of the log.
            zsys_warning ("%s: SET %s = '%s' ignored: %s", self->name, key,
                          strstr (key, "secret") ? "(not shown)" : value, why ? why : "bad value");
            return -1;
        }
    zsys_warning ("%s: SET %s ignored: no such %s setting", self->name, key, self->cls->role);
    return -1;
}

json_t *zim_shell_stats (zim_shell_t *self)
{
    json_t *stats = json_object ();
    for (const zim_counter_t *c = self->cls->counters; c && c->name; c++) {
        uint64_t v = *(const uint64_t *)((const char *)self->self + c->offset);
        json_object_set_new (stats, c->name, json_integer ((json_int_t)v));
    }
    if (self->cls->stats)
        self->cls->stats (self->self, stats);
    return stats;
}

//  Answers STATS with one compact JSON object.
static void s_stats (zim_shell_t *self)
{
    json_t *stats = zim_shell_stats (self);
    char *text = json_dumps (stats, JSON_COMPACT);
    json_decref (stats);
    zstr_send (self->pipe, text ? text : "{}");
    free (text);
}

//  True if name is in the NULL-ended list.
static bool s_listed (const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (streq (*list, name))
            return true;
    return false;
}

void zim_shell_metrics (zim_shell_t *self, zim_metrics_t *m)
{
    const char *role = self->cls->role;
    char label[256], name[160], help[256];
    zim_metrics_label (label, sizeof label, "node", self->name);
    for (const zim_counter_t *c = self->cls->counters; c && c->name; c++) {
        uint64_t v = *(const uint64_t *)((const char *)self->self + c->offset);
        snprintf (name, sizeof name, "zim_%s_%s", role, c->name);
        bool gauge = s_listed (self->cls->gauges, c->name);
        snprintf (help, sizeof help, "%s STATS %s \"%s\" (docs/OPERATIONS.md, \"Metrics\")", role,
                  gauge ? "gauge" : "counter", c->name);
        if (gauge)
            zim_metrics_gauge (m, name, help, label, (double)v);
        else
            zim_metrics_counter (m, name, help, label, v);
    }
    if (self->cls->stats) {
        json_t *stats = json_object ();
        self->cls->stats (self->self, stats);
        const char *key;
        json_t *value;
        json_object_foreach (stats, key, value)
        {
            if (!json_is_number (value) && !json_is_boolean (value))
                continue;
            double v = json_is_boolean (value) ? (json_is_true (value) ? 1 : 0)
                                               : json_number_value (value);
            snprintf (name, sizeof name, "zim_%s_%s", role, key);
            bool total = s_listed (self->cls->totals, key);
            snprintf (help, sizeof help, "%s STATS %s \"%s\" (docs/OPERATIONS.md, \"Metrics\")",
                      role, total ? "counter" : "gauge", key);
            if (total)
                zim_metrics_counter (m, name, help, label, v < 0 ? 0 : (uint64_t)v);
            else
                zim_metrics_gauge (m, name, help, label, v);
        }
        json_decref (stats);
    }
    for (const zim_histogram_t *h = self->cls->histograms; h && h->name; h++) {
        snprintf (name, sizeof name, "zim_%s_%s", role, h->name);
        zim_metrics_histo (m, name, h->help, label,
                           (const zim_histo_t *)((const char *)self->self + h->offset), h->scale);
    }
}

//  Answers METRICS: one frame per family.
static void s_metrics (zim_shell_t *self)
{
    zim_metrics_t *m = zim_metrics_new ();
    zim_shell_metrics (self, m);
    zmsg_t *reply = zmsg_new ();
    for (size_t i = 0; i < zim_metrics_size (m); i++) {
        char *family = zim_metrics_family (m, i);
        zmsg_addstr (reply, family);
        free (family);
    }
    if (zmsg_size (reply) == 0)
        zmsg_addstr (reply, "");
    zim_metrics_destroy (&m);
    zmsg_send (&reply, self->pipe);
}

int zim_shell_handle (zim_shell_t *self)
{
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg) {
        self->terminated = true;
        return -1;
    }
    char *cmd = zmsg_popstr (msg);
    if (cmd && streq (cmd, "MAP")) {
        //  Its one frame is a binary MAP message, not a string.
        zframe_t *frame = zmsg_pop (msg);
        if (frame && self->cls->map)
            self->cls->map (self->self, frame);
        zframe_destroy (&frame);
        zstr_free (&cmd);
        zmsg_destroy (&msg);
        return 0;
    }
    char *a1 = zmsg_popstr (msg), *a2 = zmsg_popstr (msg), *a3 = zmsg_popstr (msg);
    if (!cmd || streq (cmd, "$TERM"))
        self->terminated = true;
    else if (streq (cmd, "SET"))
        zim_shell_set (self, a1, a2, a3);
    else if (streq (cmd, "BIND")) {
        int port = -1;
        if (!a1)
            zsys_error ("%s: BIND needs an endpoint", self->name);
        else if (self->started)
            zsys_error ("%s: BIND %s after START refused", self->name, a1);
        else if (!self->cls->bind)
            zsys_error ("%s: a %s does not bind", self->name, self->cls->role);
        else
            port = self->cls->bind (self->self, a1);
        if (port > 0)
            self->port = port;
        zsock_signal (self->pipe, port == -1 ? 1 : 0);
    } else if (streq (cmd, "CONNECT")) {
        int rc = -1;
        if (!a1 || !a2)
            zsys_error ("%s: CONNECT needs a role and an endpoint", self->name);
        else if (!self->cls->connect)
            zsys_error ("%s: a %s connects to nothing", self->name, self->cls->role);
        else
            rc = self->cls->connect (self->self, a1, a2);
        zsock_signal (self->pipe, rc == -1 ? 1 : 0);
    } else if (streq (cmd, "START")) {
        int rc = 0;
        if (!self->started) {
            rc = self->cls->start ? self->cls->start (self->self) : 0;
            self->started = rc == 0;
        }
        zsock_signal (self->pipe, rc == -1 ? 1 : 0);
    } else if (streq (cmd, "PORT"))
        zstr_sendf (self->pipe, "%d", self->port);
    else if (streq (cmd, "STATS"))
        s_stats (self);
    else if (streq (cmd, "METRICS"))
        s_metrics (self);
    else
        zsys_warning ("%s: unknown command '%s' ignored", self->name, cmd);
    zstr_free (&cmd);
    zstr_free (&a1);
    zstr_free (&a2);
    zstr_free (&a3);
    zmsg_destroy (&msg);
    return self->terminated ? -1 : 0;
}

void zim_shell_warn (zim_shell_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    zim_ratelog_vwarn (&self->ratelog, self->name, format, args);
    va_end (args);
}

zsock_t *zim_shell_socket (zim_shell_t *self, int type, bool server)
{
    if (!self->curve && (*self->curve_public || *self->curve_secret)) {
        self->curve = zim_curve_new (self->curve_public, self->curve_secret, self->curve_public);
        if (!self->curve) {
            zsys_error ("%s: curve_public_key and curve_secret_key are not one CURVE key pair",
                        self->name);
            return NULL;
        }
    }
    int64_t max = self->max_msg_size > INT64_MAX ? INT64_MAX : (int64_t) self->max_msg_size;
    zsock_t *sock = zim_curve_socket (self->curve, type, server ? ZIM_ZAP_BACKBONE : NULL, max);
    if (!sock)
        zsys_error ("%s: cannot make a backbone socket", self->name);
    return sock;
}

//  -------------------------------------------------------------------------
//  Log limiter

void zim_ratelog_vwarn (zim_ratelog_t *rl, const char *who, const char *format, va_list args)
{
    int64_t now = (int64_t)(zim_mono_us () / 1000);
    uint32_t burst = rl->burst ? rl->burst : 10, window = rl->window_ms ? rl->window_ms : 10000;
    if (rl->window_start == 0 || now - rl->window_start >= window) {
        if (rl->dropped)
            zsys_warning ("%s: %" PRIu32 " more warnings suppressed (at most %" PRIu32
                          " per %" PRIu32 " ms)",
                          who, rl->dropped, burst, window);
        rl->window_start = now;
        rl->lines = 0;
        rl->dropped = 0;
    }
    if (rl->lines >= burst) {
        rl->dropped++;
        return;
    }
    rl->lines++;
    char line[1024];
    vsnprintf (line, sizeof line, format, args);
    zsys_warning ("%s: %s", who, line);
}

void zim_ratelog_warn (zim_ratelog_t *rl, const char *who, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    zim_ratelog_vwarn (rl, who, format, args);
    va_end (args);
}

//  -------------------------------------------------------------------------
//  Selftest: a small actor built on the shell, driven through its pipe.

typedef struct {
    zim_shell_t *shell;
    uint64_t limit; //  U64 setting, scaled by 1000
    char *label;    //  STR setting
    bool flag;      //  BOOL setting
    char pair[32];  //  FN setting: "value/value2"
    uint64_t hits;  //  a counter
    int bound;      //  bind hook calls
    int maps;       //  map hook calls
    zim_histo_t lat; //  a histogram, observed by START
} s_test_actor_t;

static int s_test_pair (void *self, const char *value, const char *value2, const char **why)
{
    s_test_actor_t *t = (s_test_actor_t *)self;
    if (!value2) {
        *why = "needs two values";
        return -1;
    }
    snprintf (t->pair, sizeof t->pair, "%s/%s", value, value2);
    return 0;
}

static int s_test_bind (void *self, const char *endpoint)
{
    s_test_actor_t *t = (s_test_actor_t *)self;
    t->bound++;
    return streq (endpoint, "bad") ? -1 : 4242;
}

static int s_test_start (void *self)
{
    s_test_actor_t *t = (s_test_actor_t *)self;
    t->hits++;
    zim_histo_observe (&t->lat, 1500);
    return 0;
}

static void s_test_gauges (void *self, json_t *stats)
{
    s_test_actor_t *t = (s_test_actor_t *)self;
    json_object_set_new (stats, "label", json_string (t->label ? t->label : ""));
    json_object_set_new (stats, "flag", json_boolean (t->flag));
    json_object_set_new (stats, "limit", json_integer ((json_int_t)t->limit));
    json_object_set_new (stats, "pair", json_string (t->pair));
    json_object_set_new (stats, "maps", json_integer (t->maps));
}

static void s_test_map (void *self, zframe_t *frame)
{
    s_test_actor_t *t = (s_test_actor_t *)self;
    if (zframe_size (frame) == 3 && memcmp (zframe_data (frame), "\x93\x01\x02", 3) == 0)
        t->maps++;
}

static const zim_setting_t s_test_settings[] = {
    {"limit", ZIM_SET_U64, offsetof (s_test_actor_t, limit), 1, 100, 1000, ZIM_SET_BEFORE_START,
     NULL, "a limit"},
    {"label", ZIM_SET_STR, offsetof (s_test_actor_t, label), 0, 0, 0, 0, NULL, "a label"},
    {"flag", ZIM_SET_BOOL, offsetof (s_test_actor_t, flag), 0, 0, 0, 0, NULL, "a flag"},
    {"pair", ZIM_SET_FN, 0, 0, 0, 0, 0, s_test_pair, "two values"},
    {NULL}};

static const zim_counter_t s_test_counters[] = {{"hits", offsetof (s_test_actor_t, hits)}, {NULL}};

static const char *const s_test_totals[] = {"maps", NULL};
static const zim_histogram_t s_test_histograms[] = {
    {"start_seconds", offsetof (s_test_actor_t, lat), zim_histo_latency_us, ZIM_HISTO_LATENCY_N,
     1e-6, "time to start"},
    {NULL}};

static const zim_shell_class_t s_test_class = {
    .role = "test",
    .settings = s_test_settings,
    .counters = s_test_counters,
    .totals = s_test_totals,
    .histograms = s_test_histograms,
    .bind = s_test_bind,
    .start = s_test_start,
    .stats = s_test_gauges,
    .map = s_test_map,
};

static void s_test_actor (zsock_t *pipe, void *args)
{
    s_test_actor_t self = {0};
    self.shell = zim_shell_new (pipe, &s_test_class, &self, "test-1");
    zsock_signal (pipe, 0);
    while (zim_shell_handle (self.shell) == 0)
        ;
    zim_shell_destroy (&self.shell);
}

//  Asks STATS and returns the parsed object. Caller owns return value.
static json_t *s_test_stats (zactor_t *actor)
{
    zstr_send (actor, "STATS");
    char *text = zstr_recv (actor);
    json_t *stats = json_loads (text, 0, NULL);
    zstr_free (&text);
    assert (stats);
    return stats;
}

void zim_shell_test (bool verbose)
{
    zactor_t *actor = zactor_new (s_test_actor, NULL);
    assert (actor);
    zstr_sendx (actor, "SET", "limit", "7", NULL);
    zstr_sendx (actor, "SET", "limit", "700", NULL); //  over max: ignored
    zstr_sendx (actor, "SET", "limit", "x", NULL);   //  not a number: ignored
    zstr_sendx (actor, "SET", "label", "hello", NULL);
    zstr_sendx (actor, "SET", "label", "world", NULL); //  replaces (and frees) hello
    zstr_sendx (actor, "SET", "flag", "yes", NULL);
    zstr_sendx (actor, "SET", "flag", "maybe", NULL); //  ignored
    zstr_sendx (actor, "SET", "pair", "a", "b", NULL);
    zstr_sendx (actor, "SET", "pair", "lonely", NULL); //  refused by its parser
    zstr_sendx (actor, "SET", "nosuch", "1", NULL);
    zstr_sendx (actor, "SET", "max_msg_size", "100000", NULL);
    zstr_sendx (actor, "BIND", "bad", NULL);
    assert (zsock_wait (actor) == 1);
    zstr_sendx (actor, "BIND", "tcp://x", NULL);
    assert (zsock_wait (actor) == 0);
    zstr_send (actor, "PORT");
    char *port = zstr_recv (actor);
    assert (streq (port, "4242"));
    zstr_free (&port);
    zstr_sendx (actor, "CONNECT", "store", "inproc://x", NULL); //  no hook: fails
    assert (zsock_wait (actor) == 1);

    json_t *stats = s_test_stats (actor);
    assert (json_integer_value (json_object_get (stats, "limit")) == 7000);
    assert (streq (json_string_value (json_object_get (stats, "label")), "world"));
    assert (json_is_true (json_object_get (stats, "flag")));
    assert (streq (json_string_value (json_object_get (stats, "pair")), "a/b"));
    assert (json_integer_value (json_object_get (stats, "hits")) == 0);
    json_decref (stats);

    zstr_send (actor, "START");
    assert (zsock_wait (actor) == 0);
    zstr_send (actor, "START"); //  a second START is a no-op
    assert (zsock_wait (actor) == 0);
    zstr_sendx (actor, "SET", "limit", "9", NULL); //  before-start only: ignored
    zstr_sendx (actor, "BIND", "tcp://y", NULL);   //  after START: refused
    assert (zsock_wait (actor) == 1);
    zmsg_t *map = zmsg_new ();
    zmsg_addstr (map, "MAP");
    zmsg_addmem (map, "\x93\x01\x02", 3);
    zmsg_send (&map, actor);
    stats = s_test_stats (actor);
    assert (json_integer_value (json_object_get (stats, "limit")) == 7000);
    assert (json_integer_value (json_object_get (stats, "hits")) == 1);
    assert (json_integer_value (json_object_get (stats, "maps")) == 1);
    json_decref (stats);

    //  METRICS: one frame per family, merged into one text.
    zstr_send (actor, "METRICS");
    zmsg_t *families = zmsg_recv (actor);
    assert (families && zmsg_size (families) == 5);
    zim_metrics_t *m = zim_metrics_new ();
    char *family;
    while ((family = zmsg_popstr (families))) {
        assert (zim_metrics_merge (m, family, strlen (family)) == 0);
        free (family);
    }
    zmsg_destroy (&families);
    char *text = zim_metrics_text (m);
    assert (strstr (
        text, "# TYPE zim_test_hits_total counter\nzim_test_hits_total{node=\"test-1\"} 1\n"));
    assert (strstr (text, "# TYPE zim_test_limit gauge\nzim_test_limit{node=\"test-1\"} 7000\n"));
    assert (strstr (text, "zim_test_flag{node=\"test-1\"} 1\n"));
    assert (strstr (text, "zim_test_maps_total{node=\"test-1\"} 1\n"));
    assert (!strstr (text, "zim_test_label") && !strstr (text, "zim_test_pair"));
    assert (strstr (text, "zim_test_start_seconds_bucket{node=\"test-1\",le=\"0.001\"} 0\n"));
    assert (strstr (text, "zim_test_start_seconds_bucket{node=\"test-1\",le=\"0.0025\"} 1\n"));
    assert (strstr (text, "zim_test_start_seconds_sum{node=\"test-1\"} 0.0015\n"));
    assert (strstr (text, "zim_test_start_seconds_count{node=\"test-1\"} 1\n"));
    free (text);
    zim_metrics_destroy (&m);
    zactor_destroy (&actor);

    //  The limiter: 3 lines per window pass, the rest are counted.
    zim_ratelog_t rl = {.burst = 3, .window_ms = 50};
    for (int i = 0; i < 10; i++)
        zim_ratelog_warn (&rl, "test", "peer line %d", i);
    assert (rl.lines == 3 && rl.dropped == 7);
    zclock_sleep (60);
    zim_ratelog_warn (&rl, "test", "after the window"); //  reports the 7, then logs
    assert (rl.lines == 1 && rl.dropped == 0);

    //  CURVE: a shell given the cluster key pair makes CURVE sockets; a
    //  server socket needs the process's ZAP handler; a pair whose halves
    //  do not match makes no socket at all.
    zcert_t *cert = zcert_new (), *other = zcert_new ();
    s_test_actor_t state = {0};
    zim_shell_t *shell = zim_shell_new (NULL, &s_test_class, &state, "curve-1");
    assert (zim_shell_set (shell, "curve_public_key", "short", NULL) == -1);
    assert (zim_shell_set (shell, "curve_public_key", zcert_public_txt (cert), NULL) == 0);
    assert (zim_shell_set (shell, "curve_secret_key", zcert_secret_txt (cert), NULL) == 0);
    zsock_t *sock = zim_shell_socket (shell, ZMQ_DEALER, false);
    assert (sock && zsock_mechanism (sock) == ZMQ_CURVE && !zsock_curve_server (sock));
    zsock_destroy (&sock);
    zim_zap_t *zap = zim_zap_new (zcert_public_txt (cert), NULL);
    assert (zap || zim_zap_running ());
    sock = zim_shell_socket (shell, ZMQ_ROUTER, true);
    assert (sock && zsock_curve_server (sock));
    zsock_destroy (&sock);
    zim_zap_destroy (&zap);
    zim_shell_destroy (&shell);
    shell = zim_shell_new (NULL, &s_test_class, &state, "curve-2");
    zim_shell_set (shell, "curve_public_key", zcert_public_txt (other), NULL);
    zim_shell_set (shell, "curve_secret_key", zcert_secret_txt (cert), NULL);
    assert (zim_shell_socket (shell, ZMQ_DEALER, false) == NULL);
    zim_shell_destroy (&shell);
    zcert_destroy (&cert);
    zcert_destroy (&other);
    if (verbose)
        zsys_info ("shell: settings, commands, stats and limiter behave");
}
