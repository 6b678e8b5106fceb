#!/bin/sh
# test_sdk_c.sh: the C SDK as an app developer gets it. `make install
# DESTDIR=...` of this build into a temp dir must put zim_client.h,
# zim_client.pc and libzimclient in place; a small program compiled with
# nothing but `pkg-config --cflags --libs zim_client` (PKG_CONFIG_PATH and
# PKG_CONFIG_SYSROOT_DIR pointing into the temp dir) must build, link only
# the public API, and chat through a real zim-server on ephemeral ports.
# Environment (set by tests/Makemodule.am): ZIM_SERVER, ZIM_CLI, ZIMCTL, MAKE, CC,
# PKG_CONFIG, ZIM_TOP_BUILDDIR (the build to install), ZIM_SDK_CFLAGS and
# ZIM_SDK_LDFLAGS (the sanitizer flags of a --enable-sanitizers build).
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIMCTL=${ZIMCTL:-./zimctl}
ZIM_CLI=${ZIM_CLI:-./zim-cli}
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
top=${ZIM_TOP_BUILDDIR:-.}
pass=0 fail=0
# Under the build dir, as asked of tests; removed at the end.
work=$(mktemp -d "$top/sdk-c-test.XXXXXX") || exit 99
dest="$work/dest"
log="$work/server.log"
pid=

cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && echo "$2" | sed 's/^/    /'; }

#   1. make install into DESTDIR (the prefix configure chose, under $dest).
#   MAKEFLAGS is dropped so a parallel `make check` does not lend us its jobs.
if out=$(MAKEFLAGS='' "$MAKE" -s -C "$top" install DESTDIR="$dest" 2>&1); then
    ok "make install DESTDIR=..."
else
    bad "make install DESTDIR=..." "$out"
    echo "$pass passed, $fail failed"
    exit 1
fi
pc=$(find "$dest" -name zim_client.pc -path '*/pkgconfig/*' | head -n 1)
hdr=$(find "$dest" -name zim_client.h | head -n 1)
lib=$(find "$dest" -name 'libzimclient.so*' | head -n 1)
[ -n "$pc" ] && ok "installs zim_client.pc ($(echo "$pc" | sed "s|^$dest||"))" || bad "installs zim_client.pc"
[ -n "$hdr" ] && ok "installs zim_client.h" || bad "installs zim_client.h"
[ -n "$lib" ] && ok "installs libzimclient.so" || bad "installs libzimclient.so"
[ -n "$pc" ] && [ -n "$hdr" ] && [ -n "$lib" ] || { echo "$pass passed, $fail failed"; exit 1; }

#   2. pkg-config: the .pc names the configured prefix; the sysroot maps it
#   into $dest.
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
export PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$("$PKG_CONFIG" --cflags --libs zim_client 2>&1) && ok "pkg-config --cflags --libs zim_client: $flags" \
    || bad "pkg-config --cflags --libs zim_client" "$flags"
echo "$flags" | grep -q -- "-I$dest" && echo "$flags" | grep -q -- "-L$dest" \
    && ok "pkg-config flags point into the installed tree" || bad "pkg-config flags point into the installed tree" "$flags"

#   The library exports the SDK's API only, not the msg/ codecs inside it.
if command -v nm >/dev/null 2>&1; then
    priv=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDB]$/ { print $3 }' |
        grep -v -E '^(zim_client_|zim_loop_|zim_body_to_json$|zim_json_string$)' |
        grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' || true)
    [ -z "$priv" ] && ok "libzimclient exports only the public API" \
        || bad "libzimclient exports only the public API" "$priv"
fi

#   3. A small app, built from the installed header and library only.
cat >"$work/app.c" <<'EOF'
#include <zim_client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int authed, acks, msgs, errors, closed, pages;
    size_t page_count;
    char body[64];
    unsigned long long ack_seq, msg_seq;
} state_t;

static void on_state (zim_client_t *c, zim_client_state_t s, int code, void *arg)
{
    state_t *st = arg;
    if (s == ZIM_CLIENT_AUTHED)
        st->authed++;
    if (s == ZIM_CLIENT_CLOSED)
        st->closed = code ? code : -1;
}
static void on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    state_t *st = arg;
    st->acks++;
    st->ack_seq = a->seq;
}
static void on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    state_t *st = arg;
    st->errors++;
    fprintf (stderr, "app: error %d: %s\n", e->code, e->text);
}
static void on_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    state_t *st = arg;
    char *json = zim_body_to_json (m->body, m->body_len);
    st->msgs++;
    st->msg_seq = m->seq;
    snprintf (st->body, sizeof st->body, "%s from %s", json ? json : "?", m->from);
    free (json);
}

static void on_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    state_t *st = arg;
    st->pages++;
    st->page_count = p->count;
}

//  Runs the loop until *flag is non-zero or 10 s pass.
static int wait_for (zim_loop_t *loop, const int *flag)
{
    for (int i = 0; i < 200 && !*flag; i++)
        zim_loop_run (loop, 50);
    return *flag ? 0 : -1;
}

#define CHECK(cond, what)                                                                     \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf (stderr, "app: failed: %s\n", what);                                      \
            return 1;                                                                          \
        }                                                                                      \
    } while (0)

int main (int argc, char **argv)
{
    //  Offline basics: helpers and config validation.
    char *s = zim_json_string ("a\"b");
    CHECK (s && strcmp (s, "\"a\\\"b\"") == 0, "zim_json_string");
    free (s);
    const unsigned char mp[] = {0x81, 0xa1, 'k', 0x2a}; //  {"k":42}
    s = zim_body_to_json (mp, sizeof mp);
    CHECK (s && strcmp (s, "{\"k\":42}") == 0, "zim_body_to_json");
    free (s);
    CHECK (zim_body_to_json (mp, 2) == NULL, "zim_body_to_json refuses a truncated value");
    zim_loop_t *loop = zim_loop_new ();
    CHECK (loop, "zim_loop_new");
    zim_client_config_t bad = {0};
    CHECK (zim_client_new (loop, &bad) == NULL, "zim_client_new without a token is NULL");
    if (argc < 4) {
        zim_loop_destroy (&loop);
        return 0;
    }

    //  Online: alice sends to bob through the real server.
    const char *url = argv[1];
    state_t a = {0}, b = {0};
    zim_client_config_t cfg = {0};
    cfg.url = url;
    cfg.on_state = on_state;
    cfg.on_ack = on_ack;
    cfg.on_error = on_error;
    cfg.on_msg = on_msg;
    cfg.on_page = on_page;
    cfg.token = argv[2];
    cfg.arg = &a;
    //  wss://: argv[4] is the PEM file of the CA to trust (the server's
    //  self-signed certificate); argv[5] "refused" expects the handshake
    //  to fail (a certificate nobody vouched for).
    cfg.tls_ca_file = argc > 4 && argv[4][0] ? argv[4] : NULL;
    if (argc > 5 && strcmp (argv[5], "refused") == 0) {
        zim_client_t *c = zim_client_new (loop, &cfg);
        CHECK (c && wait_for (loop, &a.closed) == 0 && !a.authed, "an untrusted certificate is refused");
        zim_client_destroy (&c);
        zim_loop_destroy (&loop);
        printf ("app: refused as it should be (%d)\n", a.closed);
        return 0;
    }
    zim_client_t *alice = zim_client_new (loop, &cfg);
    cfg.token = argv[3];
    cfg.arg = &b;
    zim_client_t *bob = zim_client_new (loop, &cfg);
    CHECK (alice && bob, "zim_client_new");
    CHECK (wait_for (loop, &a.authed) == 0 && wait_for (loop, &b.authed) == 0, "both authenticate");
    CHECK (strncmp (zim_client_uid (alice), "alice", 5) == 0, "zim_client_uid is the token's sub");
    CHECK (zim_client_state (bob) == ZIM_CLIENT_AUTHED, "zim_client_state");
    //  Give the server a moment to register bob's route: an auth_ok can
    //  reach the client before the router knows the connection (a server-side
    //  race reported separately), and this test is about the SDK.
    for (int i = 0; i < 6; i++)
        zim_loop_run (loop, 50);
    char cid[ZIM_CLIENT_CID_SIZE];
    CHECK (zim_client_send_text (alice, zim_client_uid (bob), NULL, "hello from C", cid) == 0 && cid[0],
           "zim_client_send_text");
    CHECK (zim_client_unacked (alice) == 1, "one send awaits its ack");
    CHECK (wait_for (loop, &a.acks) == 0 && a.ack_seq == 1, "the ack comes, seq 1");
    CHECK (wait_for (loop, &b.msgs) == 0, "bob receives it live");
    char expected[64];
    snprintf (expected, sizeof expected, "\"hello from C\" from %s", zim_client_uid (alice));
    CHECK (strcmp (b.body, expected) == 0 && b.msg_seq == 1,
           "the message is alice's text, seq 1");
    uint64_t rid = 0;
    CHECK (zim_client_sync (bob, 0, 10, &rid) == 0 && rid, "zim_client_sync");
    CHECK (wait_for (loop, &b.pages) == 0 && b.page_count == 1, "the sync page holds the message");
    CHECK (a.errors == 0 && b.errors == 0, "no errors");
    zim_client_close (alice);
    CHECK (wait_for (loop, &a.closed) == 0 && a.closed == -1, "zim_client_close ends with code 0");
    zim_client_destroy (&alice);
    zim_client_destroy (&bob);
    zim_loop_destroy (&loop);
    printf ("app: ok (%s)\n", cid);
    return 0;
}
EOF
# shellcheck disable=SC2086
if out=$("$CC" $ZIM_SDK_CFLAGS -o "$work/app" "$work/app.c" $flags $ZIM_SDK_LDFLAGS 2>&1); then
    ok "an app compiles and links with the pkg-config flags alone"
else
    bad "an app compiles and links with the pkg-config flags alone" "$out"
    echo "$pass passed, $fail failed"
    exit 1
fi
#   The second app: receipts, the conversation list, groups and channels.
cat >"$work/chat.c" <<'EOF'
/*  chat.c: receipts, the conversation list, groups and channels through the
    installed SDK against a real zim-server. argv: URL, then the tokens of
    alice, bob and carol. The server holds group "team" (alice, bob, carol)
    and channel "news" (alice, bob), and reads csync_max_behind = 5. */
#include <zim_client.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXM 64

typedef struct {
    const char *name;
    int authed, acks, errors, receipts, convs, groups, pages;
    unsigned long long ack_seq, ack_gseq;
    //  live messages
    int msgs;
    zim_client_msg_t msg[MAXM]; //  body not kept
    char body[MAXM][32];
    //  the last receipt
    char r_conv[ZIM_CLIENT_CONV_MAX + 1], r_user[ZIM_CLIENT_ID_MAX + 1];
    int r_has_read, r_has_delivered;
    unsigned long long r_read, r_delivered;
    //  the last convs: the entry of `want_conv`
    const char *want_conv;
    int conv_found;
    zim_client_conv_t conv;
    char conv_body[32];
    //  the last groups
    size_t ngroups;
    zim_client_group_t group[8];
    //  the last page
    int page_reset;
    char page_group[ZIM_CLIENT_ID_MAX + 1];
    size_t page_count;
    unsigned long long page_gseq_first, page_gseq_last;
    int page_seq_zero;
    //  live channel messages
    int channels;
    unsigned long long channel_gseq;
    char channel_group[ZIM_CLIENT_ID_MAX + 1];
    //  pushes from the backend
    int pushes, push_anonymous;
    char push_body[64];
} st_t;

static void on_state (zim_client_t *c, zim_client_state_t s, int code, void *arg)
{
    st_t *st = arg;
    if (s == ZIM_CLIENT_AUTHED)
        st->authed++;
}
static void on_ack (zim_client_t *c, const zim_client_ack_t *a, void *arg)
{
    st_t *st = arg;
    st->acks++;
    st->ack_seq = a->seq;
    st->ack_gseq = a->gseq;
}
static void on_error (zim_client_t *c, const zim_client_error_t *e, void *arg)
{
    st_t *st = arg;
    st->errors++;
    fprintf (stderr, "chat: %s: error %d: %s\n", st->name, e->code, e->text);
}
static void on_msg (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    st_t *st = arg;
    if (st->msgs == MAXM)
        return;
    st->msg[st->msgs] = *m;
    char *json = zim_body_to_json (m->body, m->body_len);
    snprintf (st->body[st->msgs], sizeof st->body[0], "%s", json ? json : "?");
    free (json);
    st->msgs++;
}
static void on_channel (zim_client_t *c, const zim_client_msg_t *m, void *arg)
{
    st_t *st = arg;
    st->channels++;
    st->channel_gseq = m->gseq;
    snprintf (st->channel_group, sizeof st->channel_group, "%s", m->group);
}
static void on_receipt (zim_client_t *c, const zim_client_receipt_t *r, void *arg)
{
    st_t *st = arg;
    st->receipts++;
    snprintf (st->r_conv, sizeof st->r_conv, "%s", r->conv);
    snprintf (st->r_user, sizeof st->r_user, "%s", r->user);
    st->r_has_read = r->has_read;
    st->r_read = r->read;
    st->r_has_delivered = r->has_delivered;
    st->r_delivered = r->delivered;
}
static void on_convs (zim_client_t *c, const zim_client_convs_t *l, void *arg)
{
    st_t *st = arg;
    st->conv_found = 0;
    for (size_t i = 0; i < l->count; i++)
        if (strcmp (l->convs[i].conv, st->want_conv) == 0) {
            st->conv = l->convs[i];
            char *json = zim_body_to_json (l->convs[i].body, l->convs[i].body_len);
            snprintf (st->conv_body, sizeof st->conv_body, "%s", json ? json : "?");
            free (json);
            st->conv.body = NULL;
            st->conv_found = 1;
        }
    st->convs++;
}
static void on_groups (zim_client_t *c, const zim_client_groups_t *l, void *arg)
{
    st_t *st = arg;
    st->ngroups = l->count;
    for (size_t i = 0; i < l->count && i < 8; i++)
        st->group[i] = l->groups[i];
    st->groups++;
}
static void on_page (zim_client_t *c, const zim_client_page_t *p, void *arg)
{
    st_t *st = arg;
    st->page_reset = p->reset;
    snprintf (st->page_group, sizeof st->page_group, "%s", p->group ? p->group : "");
    st->page_count = p->count;
    st->page_gseq_first = p->count ? p->msgs[0].gseq : 0;
    st->page_gseq_last = p->count ? p->msgs[p->count - 1].gseq : 0;
    st->page_seq_zero = 1;
    for (size_t i = 0; i < p->count; i++)
        if (p->msgs[i].seq || strcmp (p->msgs[i].group, "news"))
            st->page_seq_zero = 0;
    st->pages++;
}

static void on_push (zim_client_t *c, const zim_client_room_t *m, void *arg)
{
    st_t *st = arg;
    char *json = zim_body_to_json (m->body, m->body_len);
    snprintf (st->push_body, sizeof st->push_body, "%s", json ? json : "?");
    free (json);
    st->push_anonymous = m->room == NULL && m->from == NULL;
    st->pushes++;
}

static zim_loop_t *loop;

//  Runs the loop until *counter reaches want, for at most ms.
static int wait_n (const int *counter, int want, int ms)
{
    for (int i = 0; i < ms / 20 && *counter < want; i++)
        zim_loop_run (loop, 20);
    return *counter >= want ? 0 : -1;
}

#define CHECK(cond, what)                                                                     \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf (stderr, "chat: failed: %s (line %d)\n", what, __LINE__);                  \
            return 1;                                                                          \
        }                                                                                      \
    } while (0)

static zim_client_t *client (const char *url, const char *token, const char *device, st_t *st)
{
    zim_client_config_t cfg = {0};
    cfg.url = url;
    cfg.token = token;
    cfg.device = device;
    cfg.on_state = on_state;
    cfg.on_ack = on_ack;
    cfg.on_error = on_error;
    cfg.on_msg = on_msg;
    cfg.on_page = on_page;
    cfg.on_receipt = on_receipt;
    cfg.on_convs = on_convs;
    cfg.on_groups = on_groups;
    cfg.on_push = on_push;
    cfg.on_channel = on_channel;
    cfg.arg = st;
    return zim_client_new (loop, &cfg);
}

//  from sends probes to `to` until every client of tos got one live: their
//  routes are known to the server (an auth_ok may reach a client before
//  the router knows its connection). Returns how many it sent, or -1.
static int probe (zim_client_t *from, const char *to, st_t **tos, int n)
{
    for (int attempt = 1; attempt <= 20; attempt++) {
        int before[4];
        for (int i = 0; i < n; i++)
            before[i] = tos[i]->msgs;
        if (zim_client_send_text (from, to, NULL, "probe", NULL))
            return -1;
        int got = 0;
        for (int t = 0; t < 25 && got < n; t++) {
            zim_loop_run (loop, 20);
            got = 0;
            for (int i = 0; i < n; i++)
                got += tos[i]->msgs > before[i];
        }
        if (got == n)
            return attempt;
    }
    return -1;
}

int main (int argc, char **argv)
{
    if (argc < 5)
        return 2;
    const char *url = argv[1];
    loop = zim_loop_new ();
    st_t a1 = {"alice/phone"}, a2 = {"alice/laptop"}, b = {"bob"}, k = {"carol"};
    zim_client_t *A1 = client (url, argv[2], "phone", &a1);
    zim_client_t *A2 = client (url, argv[2], "laptop", &a2);
    zim_client_t *B = client (url, argv[3], NULL, &b);
    zim_client_t *K = client (url, argv[4], NULL, &k);
    CHECK (A1 && A2 && B && K, "zim_client_new");
    CHECK (!wait_n (&a1.authed, 1, 10000) && !wait_n (&a2.authed, 1, 10000) &&
               !wait_n (&b.authed, 1, 10000) && !wait_n (&k.authed, 1, 10000),
           "all four authenticate");
    const char *alice = zim_client_uid (A1), *bob = zim_client_uid (B), *carol = zim_client_uid (K);
    char pconv[ZIM_CLIENT_CONV_MAX + 1];
    snprintf (pconv, sizeof pconv, "p:%s:%s", alice, bob); //  alice < bob in the script
    st_t *to_bob[] = {&b, &a2}, *to_carol[] = {&k};
    int from_alice = probe (A1, bob, to_bob, 2);
    CHECK (from_alice > 0, "bob and alice's laptop get alice's messages live");
    CHECK (probe (A1, carol, to_carol, 1) > 0, "carol gets alice's messages live");
    CHECK (probe (B, alice, (st_t *[]){&a1}, 1) > 0, "alice's phone gets bob's messages live");

    //  1. Unread, read, receipts to the peer's devices.
    int acks = a1.acks, bm = b.msgs;
    CHECK (zim_client_send_text (A1, bob, NULL, "m1", NULL) == 0, "send m1");
    CHECK (zim_client_send_text (A1, bob, NULL, "m2", NULL) == 0, "send m2");
    CHECK (wait_n (&a1.acks, acks + 2, 10000) == 0 && wait_n (&b.msgs, bm + 2, 10000) == 0,
           "m1 and m2 are acked and reach bob");
    unsigned long long alice_m2 = a1.ack_seq, bob_m2 = b.msg[b.msgs - 1].seq;
    CHECK (strcmp (b.body[b.msgs - 1], "\"m2\"") == 0 && strcmp (b.msg[b.msgs - 1].conv, pconv) == 0,
           "bob's last message is m2 in p:alice:bob");
    from_alice += 2;
    b.want_conv = pconv;
    int n = b.convs;
    CHECK (zim_client_convs (B, 20, 0, NULL) == 0 && wait_n (&b.convs, n + 1, 10000) == 0,
           "bob's conversation list comes");
    CHECK (b.conv_found && b.conv.unread == (unsigned long long)from_alice && b.conv.read == 0,
           "bob has every message of alice unread");
    CHECK (b.conv.seq == bob_m2 && strcmp (b.conv.from, alice) == 0 &&
               strcmp (b.conv_body, "\"m2\"") == 0,
           "the entry's last message is m2");
    int r1 = a1.receipts, r2 = a2.receipts, rb = b.receipts;
    CHECK (zim_client_read (B, pconv, bob_m2) == 0, "zim_client_read");
    CHECK (zim_client_read (B, "p:zed:zzz", 1) == 0, "a conversation of others is sent (refused by the server)");
    CHECK (wait_n (&b.receipts, rb + 1, 10000) == 0 && strcmp (b.r_user, bob) == 0 &&
               b.r_has_read && b.r_read == bob_m2,
           "bob's connection gets his cursors");
    CHECK (wait_n (&b.errors, 1, 10000) == 0, "reading another's conversation is refused");
    CHECK (wait_n (&a1.receipts, r1 + 1, 10000) == 0 && wait_n (&a2.receipts, r2 + 1, 10000) == 0,
           "both of alice's devices get bob's receipt");
    CHECK (strcmp (a1.r_conv, pconv) == 0 && strcmp (a1.r_user, bob) == 0 && a1.r_has_read &&
               a1.r_read == alice_m2,
           "alice's phone: bob read up to alice's seq of m2");
    CHECK (strcmp (a2.r_user, bob) == 0 && a2.r_read == alice_m2,
           "alice's laptop: the same");
    n = b.convs;
    CHECK (zim_client_convs (B, 20, 0, NULL) == 0 && wait_n (&b.convs, n + 1, 10000) == 0 &&
               b.conv_found && b.conv.unread == 0 && b.conv.read == bob_m2,
           "after the read, bob's unread is 0 and his read cursor is m2's seq");
    CHECK (b.conv.peer_read == 0, "alice has read nothing of bob's yet");

    //  2. Receipts across two devices of one user: bob writes, alice's
    //  laptop marks it delivered, then her phone reads it.
    int am1 = a1.msgs, am2 = a2.msgs;
    acks = b.acks;
    CHECK (zim_client_send_text (B, alice, NULL, "r1", NULL) == 0, "send r1");
    CHECK (wait_n (&b.acks, acks + 1, 10000) == 0 && wait_n (&a1.msgs, am1 + 1, 10000) == 0 &&
               wait_n (&a2.msgs, am2 + 1, 10000) == 0,
           "r1 reaches both of alice's devices");
    unsigned long long bob_r1 = b.ack_seq, alice_r1 = a1.msg[a1.msgs - 1].seq;
    CHECK (a2.msg[a2.msgs - 1].seq == alice_r1, "one seq for both devices");
    r1 = a1.receipts, r2 = a2.receipts, rb = b.receipts;
    CHECK (zim_client_delivered (A2, pconv, alice_r1) == 0, "zim_client_delivered");
    CHECK (wait_n (&a2.receipts, r2 + 1, 10000) == 0 && strcmp (a2.r_user, alice) == 0 &&
               a2.r_delivered == alice_r1,
           "alice's laptop gets its cursors back");
    CHECK (wait_n (&a1.receipts, r1 + 1, 10000) == 0 && strcmp (a1.r_user, alice) == 0 &&
               a1.r_has_delivered && a1.r_delivered == alice_r1,
           "alice's phone hears her laptop's delivered cursor");
    CHECK (wait_n (&b.receipts, rb + 1, 10000) == 0 && strcmp (b.r_user, alice) == 0 &&
               b.r_has_delivered && b.r_delivered == bob_r1,
           "bob hears alice's delivered, in his seq of r1");
    a1.want_conv = pconv;
    n = a1.convs;
    CHECK (zim_client_convs (A1, 0, 0, NULL) == 0 && wait_n (&a1.convs, n + 1, 10000) == 0 &&
               a1.conv_found && a1.conv.unread >= 1 && a1.conv.delivered == alice_r1 &&
               a1.conv.peer_read == alice_m2,
           "alice's list: r1 unread, delivered, bob's read cursor in her seqs");
    r2 = a2.receipts, rb = b.receipts;
    CHECK (zim_client_read (A1, pconv, alice_r1) == 0, "alice reads on her phone");
    CHECK (wait_n (&a2.receipts, r2 + 1, 10000) == 0 && strcmp (a2.r_user, alice) == 0 &&
               a2.r_has_read && a2.r_read == alice_r1,
           "alice's laptop hears her phone's read cursor");
    CHECK (wait_n (&b.receipts, rb + 1, 10000) == 0 && b.r_has_read && b.r_read == bob_r1,
           "bob hears alice read r1");
    n = a1.convs;
    CHECK (zim_client_convs (A1, 0, 0, NULL) == 0 && wait_n (&a1.convs, n + 1, 10000) == 0 &&
               a1.conv.unread == 0,
           "alice's unread is 0");

    //  3. A group send reaches every member, with group and seq.
    int km = k.msgs;
    bm = b.msgs;
    acks = a1.acks;
    CHECK (zim_client_send_group (A1, "team", NULL, "\xa7hi team", 8, NULL) == 0, "send to team");
    CHECK (wait_n (&a1.acks, acks + 1, 10000) == 0 && a1.ack_gseq >= 1 && a1.ack_seq > 0,
           "the group send is acked with a gseq and alice's seq");
    CHECK (wait_n (&k.msgs, km + 1, 10000) == 0 && wait_n (&b.msgs, bm + 1, 10000) == 0,
           "carol and bob get it live");
    zim_client_msg_t *km_ = &k.msg[k.msgs - 1];
    CHECK (strcmp (km_->group, "team") == 0 && strcmp (km_->conv, "g:team") == 0 && km_->seq > 0 &&
               strcmp (k.body[k.msgs - 1], "\"hi team\"") == 0 && strcmp (km_->from, alice) == 0,
           "carol's copy names the group, with her inbox seq");
    k.want_conv = "g:team";
    n = k.convs;
    CHECK (zim_client_convs (K, 0, 0, NULL) == 0 && wait_n (&k.convs, n + 1, 10000) == 0 &&
               k.conv_found && k.conv.unread == 1 && k.conv.seq == km_->seq,
           "carol's list has g:team with one unread");

    //  4. Channels: groups with heads; csync from far behind resets.
    for (int i = 1; i <= 8; i++) {
        char body[16];
        body[0] = (char)0xa5;
        snprintf (body + 1, sizeof body - 1, "new %d", i);
        acks = a1.acks;
        CHECK (zim_client_send_group (A1, "news", NULL, body, 6, NULL) == 0, "send to news");
        CHECK (wait_n (&a1.acks, acks + 1, 10000) == 0 && a1.ack_gseq == (unsigned)i && a1.ack_seq == 0,
               "a channel send is acked with its gseq, seq 0");
    }
    n = b.groups;
    CHECK (zim_client_groups (B, NULL) == 0 && wait_n (&b.groups, n + 1, 10000) == 0,
           "bob's groups come");
    int seen_team = 0, seen_news = 0;
    for (size_t i = 0; i < b.ngroups; i++) {
        if (strcmp (b.group[i].group, "team") == 0)
            seen_team = !b.group[i].channel && b.group[i].head >= 1 && b.group[i].members == 3;
        if (strcmp (b.group[i].group, "news") == 0)
            seen_news = b.group[i].channel && b.group[i].head == 8 && b.group[i].pos == 0 &&
                        b.group[i].members == 2;
    }
    CHECK (b.ngroups == 2 && seen_team && seen_news, "team (group) and news (channel, head 8, pos 0)");
    n = b.pages;
    CHECK (zim_client_csync (B, "news", 6, 0, NULL) == 0 && wait_n (&b.pages, n + 1, 10000) == 0,
           "csync from 6");
    CHECK (!b.page_reset && strcmp (b.page_group, "news") == 0 && b.page_count == 2 &&
               b.page_gseq_first == 7 && b.page_gseq_last == 8 && b.page_seq_zero,
           "2 behind: gseq 7 and 8, no reset, no inbox seq");
    n = b.pages;
    CHECK (zim_client_csync (B, "news", 0, 2, NULL) == 0 && wait_n (&b.pages, n + 1, 10000) == 0,
           "csync from 0");
    CHECK (b.page_reset && b.page_count == 2 && b.page_gseq_last == 8,
           "8 behind (over 5): reset, the newest page");
    CHECK (zim_client_channel_pos (B, "news") == 8, "bob's position is the head");
    acks = a1.acks;
    CHECK (zim_client_send_group (A1, "news", NULL, "\xa5new 9", 6, NULL) == 0 &&
               wait_n (&a1.acks, acks + 1, 10000) == 0,
           "one more news");
    //  (bob's csyncs put his connection in the channel's live room: gseq 9
    //  may come live to on_channel, and moves his position if it does)
    wait_n (&b.channels, 1, 1000);
    int live9 = b.channels > 0;
    CHECK (!live9 || (b.channel_gseq == 9 && zim_client_channel_pos (B, "news") == 9),
           "gseq 9 live moves bob's position to 9");
    n = b.pages;
    CHECK (zim_client_csync (B, "news", live9 ? 8 : -1, 0, NULL) == 0 &&
               wait_n (&b.pages, n + 1, 10000) == 0 && !b.page_reset && b.page_count == 1 &&
               b.page_gseq_first == 9,
           "csync from the position (or from 8): just gseq 9");
    //  after its csync bob is in the channel's live room: alice's next
    //  messages come live (at most once: until the server has put bob's
    //  connection there one may pass by, so alice sends until one comes)
    for (int i = 0; i < 20 && b.channels == 0; i++) {
        acks = a1.acks;
        CHECK (zim_client_send_group (A1, "news", NULL, "\xa4live", 5, NULL) == 0 &&
                   wait_n (&a1.acks, acks + 1, 10000) == 0,
               "a live news");
        wait_n (&b.channels, 1, 500);
    }
    CHECK (b.channels > 0 && strcmp (b.channel_group, "news") == 0 && b.channel_gseq >= 9 &&
               b.channel_gseq <= a1.ack_gseq,
           "bob gets a channel message live (on_channel, with its gseq)");
    n = k.errors;
    CHECK (zim_client_csync (K, "news", 0, 0, NULL) == 0 && wait_n (&k.errors, n + 1, 10000) == 0,
           "carol is no member of news: refused");

    //  5. A push from the app's backend: argv[5] is the command that makes
    //  it (curl to the push API), for bob.
    if (argc > 5) {
        CHECK (system (argv[5]) == 0, "the backend pushes");
        CHECK (wait_n (&b.pushes, 1, 10000) == 0 && b.push_anonymous &&
                   strcmp (b.push_body, "{\"text\":\"pushed\"}") == 0,
               "bob gets the push: its body, no room, no sender");
        CHECK (a1.pushes == 0 && k.pushes == 0, "nobody else does");
    }

    CHECK (a1.errors == 0 && a2.errors == 0 && b.errors == 1, "no other errors");
    zim_client_destroy (&A1);
    zim_client_destroy (&A2);
    zim_client_destroy (&B);
    zim_client_destroy (&K);
    zim_loop_destroy (&loop);
    printf ("chat: ok\n");
    return 0;
}
EOF
# shellcheck disable=SC2086
if out=$("$CC" $ZIM_SDK_CFLAGS -o "$work/chat" "$work/chat.c" $flags $ZIM_SDK_LDFLAGS 2>&1); then
    ok "the receipts/groups app compiles and links with the pkg-config flags alone"
else
    bad "the receipts/groups app compiles and links with the pkg-config flags alone" "$out"
fi
libdir=$(dirname "$lib")
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/app" 2>&1) \
    && ok "the app's offline API checks pass" || bad "the app's offline API checks pass" "$out"

#   4. The same app against a real zim-server.
#   With WSS beside ws: a self-signed certificate made here (issue 12, item 5).
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" \
    -days 2 -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    >/dev/null 2>&1 || { bad "openssl makes a self-signed certificate"; exit 1; }
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/other-key.pem" -out "$work/other.pem" \
    -days 2 -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    >/dev/null 2>&1 || { bad "openssl makes a second certificate"; exit 1; }
#   A channel reader more than 5 behind gets the newest page (reset).
printf 'store\n    csync_max_behind = 5\n' >"$work/zim.cfg"
"$ZIM_SERVER" -c "$work/zim.cfg" --port 0 --admin 'tcp://127.0.0.1:*' --data "$work/data" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --tls-port 0 --tcp 0 \
    --api 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q " ready: " "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 150 ] && { bad "zim-server starts" "$(cat "$log")"; echo "$pass passed, $fail failed"; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$log")
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$log")
wss_port=$(sed -n 's/.*, WSS on \([0-9]*\).*/\1/p' "$log")
tcp_port=$(sed -n 's/.*, raw TCP on \([0-9]*\).*/\1/p' "$log")
api_port=$(sed -n 's/.* api=http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log")
export ZIM_DATA="$work/data"     # zimctl finds the admin key there
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice) || bad "zimctl token" "$alice"
bob=$("$ZIMCTL" -e "$admin" token --app demo --uid bob) || bad "zimctl token" "$bob"
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$work/app" "ws://127.0.0.1:$port/ws" "$alice" "$bob" 2>&1) \
    && ok "the app authenticates, sends, is acked and delivers through zim-server" \
    || bad "the app authenticates, sends, is acked and delivers through zim-server" "$out"
#   The same over wss://, trusting the server's certificate; a client that
#   trusts another certificate is refused.
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice2) || bad "zimctl token" "$alice"
bob=$("$ZIMCTL" -e "$admin" token --app demo --uid bob2) || bad "zimctl token" "$bob"
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$work/app" "wss://127.0.0.1:$wss_port/ws" "$alice" "$bob" "$work/cert.pem" 2>&1) \
    && ok "the same over wss:// (TLS, self-signed certificate as tls_ca_file)" \
    || bad "the same over wss:// (TLS, self-signed certificate as tls_ca_file)" "$out"
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$work/app" "wss://127.0.0.1:$wss_port/ws" "$alice" "$bob" "$work/other.pem" refused 2>&1) \
    && ok "wss:// with a CA file that does not vouch for the server is refused" \
    || bad "wss:// with a CA file that does not vouch for the server is refused" "$out"
#   And over raw TCP (tcp://, issue 12 item 6).
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice3) || bad "zimctl token" "$alice"
bob=$("$ZIMCTL" -e "$admin" token --app demo --uid bob3) || bad "zimctl token" "$bob"
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$work/app" "tcp://127.0.0.1:$tcp_port" "$alice" "$bob" 2>&1) \
    && ok "the same over raw TCP (tcp://)" || bad "the same over raw TCP (tcp://)" "$out"

#   Receipts across two devices of a user and to the peer, the list's
#   unread counts, a group send, channel csync and its reset: group "team"
#   and channel "news" made through the admin endpoint.
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice4) || bad "zimctl token" "$alice"
bob=$("$ZIMCTL" -e "$admin" token --app demo --uid bob4) || bad "zimctl token" "$bob"
carol=$("$ZIMCTL" -e "$admin" token --app demo --uid carol4) || bad "zimctl token" "$carol"
out=$("$ZIMCTL" -e "$admin" groups create --app demo --group team --members alice4,bob4,carol4 2>&1) \
    && ok "zimctl groups create team" || bad "zimctl groups create team" "$out"
out=$("$ZIMCTL" -e "$admin" groups create --app demo --group news --channel --members alice4,bob4 2>&1) \
    && ok "zimctl groups create news --channel" || bad "zimctl groups create news --channel" "$out"
#   With curl, bob also gets a push from the backend API (on_push).
push=
if command -v curl >/dev/null 2>&1 && [ -n "$api_port" ]; then
    push="curl -s -f -o /dev/null -H 'Authorization: Bearer $(cat "$work/data/app-demo.apikey")' \
-d '{\"users\":[\"bob4\"],\"data\":{\"text\":\"pushed\"}}' http://127.0.0.1:$api_port/v1/push/users"
fi
out=$(LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$work/chat" "ws://127.0.0.1:$port/ws" "$alice" "$bob" "$carol" ${push:+"$push"} 2>&1) \
    && ok "read/delivered receipts, convs, groups and csync${push:+, a backend push} through zim-server" \
    || bad "read/delivered receipts, convs, groups and csync${push:+, a backend push} through zim-server" "$out"

#   The same through zim-cli (built on the SDK): carol's list has g:team
#   with one unread; read answers her cursors; then it has none.
url="ws://127.0.0.1:$port/ws"
out=$("$ZIM_CLI" -u "$url" -t "$carol" convs 2>&1)
team=$(echo "$out" | grep '"conv":"g:team"')
seq=$(echo "$team" | sed -n 's/.*"seq":\([0-9]*\).*/\1/p')
echo "$team" | grep -q '"unread":1,' && [ -n "$seq" ] \
    && ok "zim-cli convs: g:team with 1 unread (seq $seq)" || bad "zim-cli convs: g:team with 1 unread" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$carol" read g:team "$seq" 2>&1)
[ "$out" = "{\"conv\":\"g:team\",\"user\":\"carol4\",\"read\":$seq,\"delivered\":$seq}" ] \
    && ok "zim-cli read g:team: the cursors come back" || bad "zim-cli read g:team: the cursors come back" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$carol" convs 2>&1)
echo "$out" | grep '"conv":"g:team"' | grep -q '"unread":0,' \
    && ok "zim-cli convs: g:team has 0 unread after the read" || bad "zim-cli convs: g:team has 0 unread after the read" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$carol" read p:zed:zzz 1 2>&1); rc=$?
[ $rc -eq 3 ] && echo "$out" | grep -q 4030 \
    && ok "zim-cli read of another's conversation: 4030, exit 3" || bad "zim-cli read of another's conversation: 4030, exit 3" "rc=$rc $out"
out=$("$ZIM_CLI" -u "$url" -t "$carol" read team 1 2>&1); rc=$?
[ $rc -eq 1 ] && ok "zim-cli read of a string that is no conversation: usage, exit 1" \
    || bad "zim-cli read of a string that is no conversation: usage, exit 1" "rc=$rc $out"
out=$("$ZIM_CLI" -u "$url" -t "$bob" groups 2>&1)
echo "$out" | grep -q '^{"group":"news","kind":"channel","head":9,"joined":0,"members":2}$' \
    && echo "$out" | grep -q '^{"group":"team","kind":"group",' \
    && ok "zim-cli groups: news (channel, head 9) and team" || bad "zim-cli groups: news (channel, head 9) and team" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$bob" csync news --since 7 2>&1)
[ "$(echo "$out" | sed -n 's/^{"gseq":\([0-9]*\),.*"group":"news"}$/\1/p' | tr '\n' ' ')" = "8 9 " ] \
    && ! echo "$out" | grep -q reset \
    && ok "zim-cli csync news --since 7: gseq 8 and 9" || bad "zim-cli csync news --since 7: gseq 8 and 9" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$bob" csync news --limit 2 2>&1)
[ "$(echo "$out" | head -n 1)" = '{"reset":true}' ] && [ "$(echo "$out" | grep -c '"gseq"')" -eq 2 ] \
    && echo "$out" | tail -n 1 | grep -q '^{"gseq":9,' \
    && ok "zim-cli csync news from 0 (9 behind, over 5): reset, the newest 2" \
    || bad "zim-cli csync news from 0 (9 behind, over 5): reset, the newest 2" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$carol" csync news 2>&1); rc=$?
[ $rc -eq 3 ] && echo "$out" | grep -q 4040 \
    && ok "zim-cli csync by a non-member: 4040, exit 3" || bad "zim-cli csync by a non-member: 4040, exit 3" "rc=$rc $out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
