#!/usr/bin/env bash
# test_cluster_tool.sh: tools/cluster as an operator runs it, on the example
# configs of docs/examples/cluster/ with every port moved by one random
# offset (the fixed ports 7700-7800 may be taken by another run): up starts
# all 7 nodes and zimctl status on gw-1's admin endpoint shows them alive;
# pid and log files; a broker killed with -9 is started again by
# 'up DIR broker-1'; down stops every node cleanly. The cluster's behaviour
# is tested by tests/test_cluster.
# ok never fails, so "A && ok || bad" is if-then-else here.
# shellcheck disable=SC2015
srcdir=${srcdir:-.}
bin=${ZIM_BIN:-.}
tool="$srcdir/tools/cluster"
pass=0 fail=0
work=$(mktemp -d "${TMPDIR:-/tmp}/zim-cluster-tool.XXXXXX")
dir="$work/run"

cleanup() {
    "$tool" --bin "$bin" --configs "$work/cfg" --force --timeout 5 down "$dir" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/    /'; }

"$tool" --help | grep -q "up DIR" && ok "tools/cluster --help" || bad "tools/cluster --help"
"$tool" bogus "$dir" >/dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command exits 2" || bad "unknown command exits 2"
"$tool" up >/dev/null 2>&1; [ $? -eq 2 ] && ok "up without DIR exits 2" || bad "up without DIR exits 2"
"$tool" --bin "$work" up "$dir" >/dev/null 2>&1; [ $? -eq 2 ] && ok "up without programs exits 2" || bad "up without programs exits 2"

# listening PORT: true if something accepts connections on 127.0.0.1:PORT.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The example configs, every port P moved to P - 7700 + base.
shift_configs() {
    rm -rf "$work/cfg" && mkdir -p "$work/cfg" || return 1
    for f in "$srcdir"/docs/examples/cluster/*.cfg; do
        awk -v base="$1" '{
            while (match($0, /(:|= )7[78][0-9][0-9]/)) {
                lead = substr($0, RSTART, RLENGTH - 4)
                port = substr($0, RSTART + RLENGTH - 4, 4) - 7700 + base
                $0 = substr($0, 1, RSTART - 1) lead "@" port substr($0, RSTART + RLENGTH)
            }
            gsub(/@/, ""); print }' "$f" >"$work/cfg/$(basename "$f")" || return 1
    done
}

started=no
for attempt in 1 2 3; do
    # A block of 101 ports in 20000-31999, below the kernel's ephemeral
    # ports (32768 up) that other tests bind, with nothing listening.
    base=$(( (($$ + attempt * 7919) % 60) * 200 + 20000 ))
    busy=no
    for p in 0 10 11 12 13 14 15 16 20 31 32 41 42 100; do
        listening $((base + p)) && busy=yes
    done
    [ "$busy" = yes ] && continue
    shift_configs "$base" || { bad "copy the example configs"; break; }
    if out=$("$tool" --bin "$bin" --configs "$work/cfg" up "$dir" 2>&1); then
        started=yes
        break
    fi
    # A port taken between the probe and the bind: try another base.
    if ! printf '%s' "$out" | grep -q "in use"; then
        bad "tools/cluster up" "$out"
        break
    fi
    rm -rf "$dir"
done

if [ "$started" = yes ]; then
    ok "tools/cluster up (ports moved by $((base - 7700)))"
    admin="tcp://127.0.0.1:$((base + 10))"
    printf '%s' "$out" | grep -q "7 nodes alive" && ok "up waits until 7 nodes are alive" ||
        bad "up waits until 7 nodes are alive" "$out"
    n=0
    for name in router-1 store-1 store-2 broker-1 broker-2 gw-1 gw-2; do
        [ -s "$dir/$name.pid" ] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null &&
            grep -q "ready: name=$name " "$dir/$name.log" && n=$((n + 1))
    done
    [ "$n" -eq 7 ] && ok "a pid file and a log per node" || bad "a pid file and a log per node" "$n of 7"
    [ -d "$dir/store-1" ] && [ -d "$dir/store-2" ] && ok "store data under DIR" || bad "store data under DIR"
    st=$(ZIM_DATA="$dir" "$bin/zimctl" -e "$admin" status 2>&1)
    alive=$(printf '%s\n' "$st" | grep -c ' yes ')
    [ "$alive" -eq 7 ] && ok "zimctl status on gw-1 shows 7 nodes alive" ||
        bad "zimctl status on gw-1 shows 7 nodes alive" "$st"
    "$tool" --bin "$bin" --configs "$work/cfg" status "$dir" >/dev/null 2>&1 &&
        ok "tools/cluster status" || bad "tools/cluster status"
    # The example runs with CURVE: up made the keys, and a client without
    # them gets no answer even with the admin key.
    if grep -q "enabled = 1" "$work/cfg/gw-1.cfg"; then
        [ -s "$dir/curve/cluster.cert_secret" ] && [ -s "$dir/curve/clients/admin.cert" ] &&
            ok "up made the CURVE keys" || bad "up made the CURVE keys"
        ZIM_DATA=/nonexistent "$bin/zimctl" -e "$admin" -k "$(cat "$dir/admin.key")" -t 1000 \
            status >/dev/null 2>&1
        [ $? -eq 3 ] && ok "no answer without the CURVE keys" || bad "no answer without the CURVE keys"
    fi

    kill -9 "$(cat "$dir/broker-1.pid")"
    sleep 0.2
    "$tool" --bin "$bin" --configs "$work/cfg" status "$dir" >/dev/null 2>&1
    [ $? -eq 1 ] && ok "status exits 1 with a node down" || bad "status exits 1 with a node down"
    out=$("$tool" --bin "$bin" --configs "$work/cfg" up "$dir" broker-1 2>&1) &&
        printf '%s' "$out" | grep -q "broker-1 ready" && ok "up DIR broker-1 restarts it" ||
        bad "up DIR broker-1 restarts it" "$out"
    out=$("$tool" --bin "$bin" --configs "$work/cfg" up "$dir" gw-1 2>&1) &&
        printf '%s' "$out" | grep -q "gw-1: already running" && ok "up leaves a running node alone" ||
        bad "up leaves a running node alone" "$out"

    out=$("$tool" --bin "$bin" --configs "$work/cfg" down "$dir" 2>&1)
    rc=$?
    left=$(ls "$dir"/*.pid 2>/dev/null)
    [ $rc -eq 0 ] && [ -z "$left" ] && [ "$(printf '%s\n' "$out" | grep -c 'stopped after')" -eq 7 ] &&
        ok "down stops all 7 cleanly" || bad "down stops all 7 cleanly" "$out"
    san=$(grep -l "Sanitizer\|runtime error:" "$dir"/*.log 2>/dev/null)
    [ -z "$san" ] && ok "no sanitizer report in the logs" || bad "no sanitizer report in the logs" "$san"
elif [ "$fail" -eq 0 ]; then
    echo "SKIP: no free block of ports for the cluster"
    exit 77
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
