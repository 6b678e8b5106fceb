/*  zim_shell.c: the pipe protocol, settings table, STATS and peer-warning
    limiter shared by every actor (see zim_shell.h). An actor's own loop
    calls zim_shell_handle when its pipe is readable; everything the four
    actors used to repeat lives here once.
*/
#include "msg/zim_shell.h"
#include "msg/zim_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Backbone messages larger than this are refused by libzmq (the peer is
//  disconnected): far above the largest legitimate message (a broker batch
//  is bounded in bytes well below it), far below what would hurt.
#define S_MAX_MSG_SIZE_DEFAULT (64ull << 20)

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
};

//  Settings every actor has, handled by the shell itself.
static const zim_setting_t s_common[] = {
    {"max_msg_size", ZIM_SET_U64, offsetof (zim_shell_t, max_msg_size), 4096, 0, 1,
     ZIM_SET_BEFORE_START, NULL,
     "largest backbone message accepted, bytes (64 MiB); bigger ones drop the peer"},
    {NULL}};

zim_shell_t *zim_shell_new (zsock_t *pipe, const zim_shell_class_t *cls, void *self,
                            const char *name)
{
    zim_shell_t *shell = zim_calloc (1, sizeof *shell);
    shell->pipe = pipe;
    shell->cls = cls;
    shell->self = self;
    shell->name = zim_strdup (name);
    shell->max_msg_size = S_MAX_MSG_SIZE_DEFAULT;
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
    free (shell->name);
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
            zsys_warning ("%s: SET %s = '%s' ignored: %s", self->name, key, value,
                          why ? why : "bad value");
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
    zsock_t *sock = zsock_new (type);
    if (!sock) {
        zsys_error ("%s: cannot make a socket: %s", self->name, zmq_strerror (zmq_errno ()));
        return NULL;
    }
    zsock_set_linger (sock, 0);
    int64_t max = self->max_msg_size > INT64_MAX ? INT64_MAX : (int64_t)self->max_msg_size;
    zmq_setsockopt (zsock_resolve (sock), ZMQ_MAXMSGSIZE, &max, sizeof max);
    (void)server; //  CURVE: server sockets authenticate, clients present keys
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

static const zim_shell_class_t s_test_class = {
    .role = "test",
    .settings = s_test_settings,
    .counters = s_test_counters,
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
    zactor_destroy (&actor);

    //  The limiter: 3 lines per window pass, the rest are counted.
    zim_ratelog_t rl = {.burst = 3, .window_ms = 50};
    for (int i = 0; i < 10; i++)
        zim_ratelog_warn (&rl, "test", "peer line %d", i);
    assert (rl.lines == 3 && rl.dropped == 7);
    zclock_sleep (60);
    zim_ratelog_warn (&rl, "test", "after the window"); //  reports the 7, then logs
    assert (rl.lines == 1 && rl.dropped == 0);
    if (verbose)
        zsys_info ("shell: settings, commands, stats and limiter behave");
}
