#!/bin/sh
# test_sdk_c.sh: the C SDK as an app developer gets it. `make install
# DESTDIR=...` of this build into a temp dir must put zim_client.h,
# zim_client.pc and libzimclient in place; a small program compiled with
# nothing but `pkg-config --cflags --libs zim_client` (PKG_CONFIG_PATH and
# PKG_CONFIG_SYSROOT_DIR pointing into the temp dir) must build, link only
# the public API, and chat through a real zim-server on ephemeral ports.
# Environment (set by tests/Makemodule.am): ZIM_SERVER, ZIMCTL, MAKE, CC,
# PKG_CONFIG, ZIM_TOP_BUILDDIR (the build to install), ZIM_SDK_CFLAGS and
# ZIM_SDK_LDFLAGS (the sanitizer flags of a --enable-sanitizers build).
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIMCTL=${ZIMCTL:-./zimctl}
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
"$ZIM_SERVER" --port 0 --admin 'tcp://127.0.0.1:*' --data "$work/data" \
    --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --tls-port 0 --tcp 0 >"$log" 2>&1 &
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

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
