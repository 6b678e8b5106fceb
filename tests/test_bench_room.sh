#!/bin/sh
# test_bench_room.sh: zim-bench room and zim-bench push (the fan-out
# benchmarks, docs/BENCHMARKS.md section 10) against a real zim-server on
# ephemeral ports, with a few dozen connections: each must print its
# delivered line with every delivery made, nothing missing and nothing
# dropped by the gateway (read from its metrics), and exit 0; a run the API
# refuses must fail. With mosquitto installed, mqtt-bench fanout too. Not a
# timing check: the rates are low and no figure is compared.
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIM_BENCH=${ZIM_BENCH:-./zim-bench}
MQTT_BENCH=${ZIM_BIN:-.}/tools/mqtt-bench
pass=0 fail=0
data=$(mktemp -d "${TMPDIR:-/tmp}/zim-bench-room-test.XXXXXX")
pid= mpid=

cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$mpid" ] && kill "$mpid" 2>/dev/null && wait "$mpid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/    /'; }
# expect NAME TEXT...: every TEXT is in $out and the run exited 0 ($rc).
expect() {
    name=$1; shift
    if [ "$rc" -ne 0 ]; then bad "$name (exit $rc)" "$out"; return; fi
    for t in "$@"; do
        if ! printf '%s\n' "$out" | grep -qF -- "$t"; then bad "$name: no '$t'" "$out"; return; fi
    done
    ok "$name"
}

log="$data/server.log"
"$ZIM_SERVER" --port 0 --admin 'tcp://127.0.0.1:*' --api 127.0.0.1:0 --data "$data" \
    --sync none >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q " ready: " "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 150 ] && { echo "server did not start:"; cat "$log"; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$log")
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$log")
api=$(sed -n 's/.* api=http:\/\/\([^ ]*\) .*/\1/p' "$log")
[ -n "$port" ] && [ -n "$admin" ] && [ -n "$api" ] || { echo "no port, admin or api in:"; cat "$log"; exit 1; }
export ZIM_DATA="$data" # the admin key and app-demo.apikey
bench() { "$ZIM_BENCH" -u "ws://127.0.0.1:$port/ws" -e "$admin" "$@" 2>&1; }

# Client publish, members over two client processes.
out=$(bench room --members 40 --rate 200 --messages 20 --procs 2); rc=$?
expect "room: 40 members x 20 client publishes, all delivered, none dropped" \
    "delivered  800 of 800 deliveries" "20 answered ok, 0 refused" \
    "gateway: 0 room frames dropped, 0 slow connections cut" "(1 of 1 gateways read)" \
    "clients: 0 missing (fewest on one connection 20 of 20), 0 closed" \
    "0 duplicates, 0 out of order, 0 unexpected, 0 error frames"

# The backend publishes (POST /v1/push/rooms).
out=$(bench room --via api --api "$api" --members 30 --rate 100 --messages 10); rc=$?
expect "room --via api: 30 members x 10 backend publishes" \
    "(backend POST /v1/push/rooms)" "delivered  300 of 300 deliveries" \
    "10 answered ok, 0 refused" "gateway: 0 room frames dropped" "clients: 0 missing"

out=$(bench room --members 24 --rate 100 --messages 5 --json); rc=$?
expect "room --json" '"scenario":"room"' '"expected":120,"delivered":120,"missing":0' \
    '"gw_dropped":0,"gw_slow_cuts":0'

# Backend pushes to users: several per request, and one per request.
out=$(bench push --api "$api" --users 30 --rate 3000 --messages 10 --batch 7); rc=$?
expect "push: 30 users x 10 pushes, 7 users per request" \
    "delivered  300 of 300 pushes" "50 requests" "50 answered ok, 0 refused" \
    "clients: 0 missing (fewest on one connection 10 of 10), 0 closed"
out=$(bench push --api "$api" --users 20 --rate 1000 --messages 5 --batch 1 --conns 3); rc=$?
expect "push: one user per request over 3 connections" \
    "delivered  100 of 100 pushes" "100 answered ok, 0 refused" "clients: 0 missing"

# A run that cannot deliver fails: the API refuses a wrong key.
out=$(bench push --api "$api" --api-key not-the-key-of-any-app --users 5 --messages 2 --timeout 1)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "API answered 403" &&
    printf '%s\n' "$out" | grep -q "delivered  0 of 10 pushes"; then
    ok "push with a wrong API key fails (exit 1, 403, 0 of 10 delivered)"
else
    bad "push with a wrong API key fails (exit $rc)" "$out"
fi
out=$(bench room --members 5 --bogus 1); rc=$?
[ "$rc" -eq 2 ] && ok "room: a bad option exits 2" || bad "room: a bad option exits 2 (exit $rc)" "$out"

# Mosquitto's side of tools/bench-compare --room, where it is installed.
mosquitto=$(PATH=$PATH:/usr/sbin:/usr/local/sbin command -v mosquitto || true)
if [ -n "$mosquitto" ] && [ -x "$MQTT_BENCH" ]; then
    mport=
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        p=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 12000))
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$p" >"$data/m.conf"
        "$mosquitto" -c "$data/m.conf" >"$data/m.log" 2>&1 &
        mpid=$!
        for _ in $(seq 30); do grep -q "running" "$data/m.log" && break; sleep 0.1; done
        if kill -0 "$mpid" 2>/dev/null && grep -q "running" "$data/m.log"; then mport=$p; break; fi
        wait "$mpid" 2>/dev/null; mpid=
    done
    out=$("$MQTT_BENCH" -p "$mport" fanout --subscribers 30 --rate 100 --messages 10 2>&1); rc=$?
    expect "mqtt-bench fanout: 30 subscribers x 10 QoS 0 publishes" \
        "delivered  300 of 300 deliveries" "0 missing (fewest on one connection 10 of 10)"
else
    echo "ok - # SKIP mqtt-bench fanout: mosquitto or tools/mqtt-bench not found"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
