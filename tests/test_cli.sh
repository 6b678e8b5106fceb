#!/bin/sh
# test_cli.sh: the programs as a user runs them: zim-server on ephemeral
# ports, zimctl minting tokens and reading status, zim-cli sending,
# listening and paging history, zim-bench checking every message.
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIMCTL=${ZIMCTL:-./zimctl}
ZIM_CLI=${ZIM_CLI:-./zim-cli}
ZIM_BENCH=${ZIM_BENCH:-./zim-bench}
pass=0 fail=0
data=$(mktemp -d "${TMPDIR:-/tmp}/zim-cli-test.XXXXXX")
nlog=0
pid=

cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

ok()   { pass=$((pass + 1)); echo "ok - $1"; }
bad()  { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && echo "    $2"; }
# check NAME COMMAND...: the command must succeed.
check() { name=$1; shift; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }

"$ZIM_SERVER" --help | grep -q -- "--port" && ok "zim-server --help" || bad "zim-server --help"
"$ZIM_SERVER" --bogus >/dev/null 2>&1; [ $? -eq 2 ] && ok "zim-server bad option exits 2" || bad "zim-server bad option exits 2"
"$ZIMCTL" --help | grep -q "token --app" && ok "zimctl --help" || bad "zimctl --help"
"$ZIM_CLI" --help 2>&1 | grep -q "listen" && ok "zim-cli --help" || bad "zim-cli --help"

# start_server [ARG...]: zim-server on free ports with $data, in the
# background ($pid), logging to a file of its own ($log: each server's lines
# are read by its own cases, and all of them are shown when a case fails);
# waits for its ready line and sets $admin.
start_server() {
    nlog=$((nlog + 1)); log="$data/server-$nlog.log"
    "$ZIM_SERVER" --port 0 --admin 'tcp://127.0.0.1:*' --data "$data" "$@" >"$log" 2>&1 &
    pid=$!
    i=0
    while ! grep -q " ready: " "$log" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 150 ] && { echo "server did not start:"; cat "$log"; exit 1; }
        sleep 0.1
    done
    admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$log")
}

start_server
port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$log")
url="ws://127.0.0.1:$port/ws"
export ZIM_DATA="$data"     # zimctl finds the admin key there

alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice) && ok "zimctl token" || bad "zimctl token" "$alice"
bob=$("$ZIMCTL" -e "$admin" token --app demo --uid bob --ttl 60) && ok "zimctl token --ttl" || bad "zimctl token --ttl"

out=$("$ZIM_CLI" -u "$url" -t "$alice" send bob "hello bob" 2>&1)
echo "$out" | grep -q '"seq":1' && echo "$out" | grep -q '"id":' && ok "zim-cli send prints the ack" || bad "zim-cli send prints the ack" "$out"
"$ZIM_CLI" -u "$url" -t "$alice" send bob "second" >/dev/null 2>&1 && ok "zim-cli second send" || bad "zim-cli second send"

out=$("$ZIM_CLI" -u "$url" -t "$bob" listen --count 2 --timeout 5 2>&1)
[ "$(echo "$out" | grep -c '"from":"alice"')" -eq 2 ] && echo "$out" | head -n 1 | grep -q '"body":"hello bob"' \
    && ok "zim-cli listen syncs offline messages in order" || bad "zim-cli listen syncs offline messages in order" "$out"
# The cursor was stored: listening again from it finds nothing old.
out=$("$ZIM_CLI" -u "$url" -t "$bob" listen --timeout 1 2>&1)
[ -z "$(echo "$out" | grep '"from"')" ] && ok "zim-cli listen resumes from the stored cursor" || bad "zim-cli listen resumes from the stored cursor" "$out"
out=$("$ZIM_CLI" -u "$url" -t "$bob" listen --since 0 --count 2 --timeout 5 2>&1)
[ "$(echo "$out" | grep -c '"from":"alice"')" -eq 2 ] && ok "zim-cli listen --since 0" || bad "zim-cli listen --since 0" "$out"

out=$("$ZIM_CLI" -u "$url" -t "$alice" history bob --limit 1 2>&1)
echo "$out" | grep -q '"body":"second"' && ok "zim-cli history" || bad "zim-cli history" "$out"

"$ZIM_CLI" -u "$url" -t "not.a.token" send bob x >/dev/null 2>&1
[ $? -ne 0 ] && ok "zim-cli with a bad token fails" || bad "zim-cli with a bad token fails"

out=$("$ZIMCTL" -e "$admin" status 2>&1)
echo "$out" | grep -q "gateway" && echo "$out" | grep -q "store" && ok "zimctl status" || bad "zimctl status" "$out"
out=$("$ZIMCTL" -e "$admin" status --json 2>&1)
echo "$out" | grep -q '"role":"broker"' && echo "$out" | grep -q '"alive":true' && ok "zimctl status --json" || bad "zimctl status --json" "$out"
"$ZIMCTL" -e "$admin" -k wrong status >/dev/null 2>&1
[ $? -eq 1 ] && ok "zimctl with a wrong key is refused" || bad "zimctl with a wrong key is refused"
grep -q "bad key" "$log" && ok "server logs the refused admin key" || bad "server logs the refused admin key"

# zim-bench: every message delivered once, in order, closed and open loop.
key=$(cat "$data/admin.key")
"$ZIM_BENCH" --help | grep -q -- "--rate" && ok "zim-bench --help" || bad "zim-bench --help"
"$ZIM_BENCH" p2p --pairs 0 >/dev/null 2>&1; [ $? -eq 2 ] && ok "zim-bench bad value exits 2" || bad "zim-bench bad value exits 2"
out=$("$ZIM_BENCH" -u "$url" -e "$admin" -k "$key" p2p --pairs 3 --messages 200 --json 2>&1)
echo "$out" | grep -q '"delivered":600,' && echo "$out" | grep -q '"missing":0,"duplicates":0,"out_of_order":0,"seq_gaps":0,"unexpected":0' \
    && ok "zim-bench p2p delivers every message" || bad "zim-bench p2p delivers every message" "$out"
out=$("$ZIM_BENCH" -u "$url" -e "$admin" -k "$key" p2p --pairs 2 --messages 100 --rate 1000 2>&1)
echo "$out" | grep -q "delivered  200 of 200" && echo "$out" | grep -q "offered    1000 msgs/s" \
    && ok "zim-bench --rate paces and delivers" || bad "zim-bench --rate paces and delivers" "$out"

kill "$pid"; wait "$pid"; rc=$?; pid=
[ $rc -eq 0 ] && grep -q "shutting down" "$log" && ok "SIGTERM stops the server cleanly" || bad "SIGTERM stops the server cleanly" "rc=$rc"

# A config file cannot switch dev tokens on (issue 10 #5).
printf 'gateway\n    dev_tokens = 1\n' >"$data/dev.cfg"
out=$("$ZIM_SERVER" -c "$data/dev.cfg" --port 0 --admin 'tcp://127.0.0.1:*' --data "$data" 2>&1)
[ $? -eq 2 ] && echo "$out" | grep -q "gateway/dev_tokens is not a config key" &&
    ok "gateway/dev_tokens in a config file is refused" || bad "gateway/dev_tokens in a config file is refused" "$out"

# CURVE on the admin endpoint: zimctl keygen, then only a client with the
# keys gets an answer (the admin key alone is not enough).
out=$("$ZIMCTL" keygen "$data/curve" 2>&1) && [ -s "$data/curve/cluster.cert_secret" ] &&
    [ -s "$data/curve/admin.cert_secret" ] && [ -s "$data/curve/clients/admin.cert" ] &&
    ok "zimctl keygen" || bad "zimctl keygen" "$out"
perm=$(stat -c %a "$data/curve/cluster.cert_secret")
[ "$perm" = 600 ] && ok "the cluster secret is 0600" || bad "the cluster secret is 0600" "$perm"
out=$("$ZIMCTL" keygen "$data/curve" 2>&1) && echo "$out" | grep -q "^kept" &&
    ok "zimctl keygen keeps existing keys" || bad "zimctl keygen keeps existing keys" "$out"
start_server --curve
grep -q " curve=on" "$log" && ok "zim-server --curve says so" || bad "zim-server --curve says so" "$(cat "$log")"
out=$("$ZIMCTL" -e "$admin" status --json 2>&1)   # keys found in $ZIM_DATA/curve
echo "$out" | grep -q '"alive":true' && ok "zimctl status over CURVE" || bad "zimctl status over CURVE" "$out"
"$ZIMCTL" -e "$admin" --keys "$data/nokeys" status >/dev/null 2>&1
[ $? -eq 2 ] && ok "zimctl --keys without keys exits 2" || bad "zimctl --keys without keys exits 2"
mkdir -p "$data/other" && "$ZIMCTL" keygen "$data/other" >/dev/null && cp "$data/curve/cluster.cert" "$data/other/"
"$ZIMCTL" -e "$admin" -t 1000 --keys "$data/other" status >/dev/null 2>&1
[ $? -eq 3 ] && ok "a client key the node does not know gets no answer" || bad "a client key the node does not know gets no answer"
ZIM_DATA=/nonexistent "$ZIMCTL" -e "$admin" -t 1000 -k "$key" status >/dev/null 2>&1
[ $? -eq 3 ] && ok "no CURVE keys: no answer" || bad "no CURVE keys: no answer"
token=$("$ZIMCTL" -e "$admin" token --app demo --uid alice 2>&1) && [ -n "$token" ] &&
    ok "zimctl token over CURVE" || bad "zimctl token over CURVE" "$token"
kill "$pid"; wait "$pid"; rc=$?; pid=
[ $rc -eq 0 ] && ok "the CURVE server stops cleanly" || bad "the CURVE server stops cleanly" "rc=$rc"

if [ "$fail" -gt 0 ]; then
    for l in "$data"/server-*.log; do echo "--- $(basename "$l") (tail)"; tail -n 60 "$l"; done
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
