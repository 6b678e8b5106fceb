#!/usr/bin/env bash
# test_cluster_netns.sh: the example cluster on three "hosts", network
# namespaces joined by veth pairs to a bridge in a fourth one, so that the
# nodes really talk over a network and not over loopback:
#   host 1 (10.77.0.1): router-1, store-1, broker-1, gw-1
#   host 2 (10.77.0.2): store-2, broker-2, gw-2
#   host 3 (10.77.0.3): the clients (zimctl, zim-cli)
# It checks that every node is in the map, chats across the hosts, cuts host
# 2 off the network (its nodes leave the map, store-2 stays marked down, a
# send between host-1 users still works), heals the cut, and checks that
# the cluster is whole again and a message reaches a user on host 2.
# Needs root, 'ip netns' and nsenter; opt in with ZIM_NETNS=1 (else: skipped).
# shellcheck disable=SC2015 # ok never fails: "A && ok || bad" is if-else
bin=${ZIM_BIN:-.}
if [ "${ZIM_NETNS:-0}" != 1 ]; then
    echo "SKIP: set ZIM_NETNS=1 (as root) to run the cluster across network namespaces"
    exit 77
fi
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
    echo "SKIP: needs root, ip (iproute2) and nsenter (util-linux)"
    exit 77
fi
pass=0 fail=0
tag="zt$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/zim-netns.XXXXXX")
pids=""

cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    for n in h1 h2 h3 sw; do ip netns del "$tag-$n" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/    /'; }
# in_ns HOST COMMAND...: runs (execs) COMMAND in a host's network namespace.
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$tag-$ns" -- "$@"; }

# The network: a bridge in namespace sw, one veth pair per host.
setup_net() {
    ip netns add "$tag-sw" || return 1
    in_ns sw ip link add br0 type bridge || return 1
    in_ns sw ip link set br0 up || return 1
    for i in 1 2 3; do
        ip netns add "$tag-h$i" || return 1
        ip link add "$tag-$i" type veth peer name "$tag-$i-b" || return 1
        ip link set "$tag-$i" netns "$tag-h$i" || return 1
        ip link set "$tag-$i-b" netns "$tag-sw" || return 1
        in_ns sw ip link set "$tag-$i-b" master br0 up || return 1
        in_ns "h$i" ip addr add "10.77.0.$i/24" dev "$tag-$i" || return 1
        in_ns "h$i" ip link set "$tag-$i" up || return 1
        in_ns "h$i" ip link set lo up || return 1
    done
}

# start HOST PROGRAM NAME ARGS...: starts a node in a host's namespace and
# waits for its ready line.
start() {
    local host=$1 program=$2 name=$3 waited=0
    shift 3
    # nsenter execs the program (ip netns exec forks): $! is the node.
    nsenter --net="/run/netns/$tag-$host" -- "$bin/$program" --name "$name" -d "$work/data" "$@" \
        >"$work/$name.log" 2>&1 &
    pids="$pids $!"
    eval "pid_$(echo "$name" | tr - _)=$!"
    until grep -q "$program ready:" "$work/$name.log"; do
        sleep 0.1
        waited=$((waited + 1))
        if [ $waited -ge 100 ]; then
            bad "$name starts" "$(tail -n 20 "$work/$name.log")"
            return 1
        fi
    done
}

# alive: how many nodes gw-1's map shows alive, asked from host 3.
alive() {
    ZIM_DATA="$work/data" in_ns h3 "$bin/zimctl" -e tcp://10.77.0.1:7710 -t 1000 status --json 2>/dev/null |
        grep -o '"alive":true' | wc -l
}

# wait_alive N SECONDS: waits until the map shows N nodes alive.
wait_alive() {
    local i
    for i in $(seq 1 $(($2 * 5))); do
        [ "$(alive)" -eq "$1" ] && return 0
        sleep 0.2
    done
    return 1
}

# token UID: a client token, from gw-1's admin endpoint.
token() { ZIM_DATA="$work/data" in_ns h3 "$bin/zimctl" -e tcp://10.77.0.1:7710 token --app demo --uid "$1"; }

# chat FROM GW_FROM TO GW_TO TEXT: TO listens on GW_TO, FROM sends on
# GW_FROM; true if TO got TEXT live.
chat() {
    local out="$work/listen.$$.$RANDOM" tf tt
    tf=$(token "$1") && tt=$(token "$3") || return 1
    in_ns h3 "$bin/zim-cli" -u "ws://$4/ws" -t "$tt" listen --timeout 8 >"$out" 2>&1 &
    local lp=$!
    sleep 1
    in_ns h3 "$bin/zim-cli" -u "ws://$2/ws" -t "$tf" send "$3" "$5" --timeout 8 >/dev/null 2>&1 || {
        kill "$lp" 2>/dev/null
        return 1
    }
    local i
    for i in $(seq 1 40); do
        grep -q "$5" "$out" && break
        sleep 0.1
    done
    kill "$lp" 2>/dev/null
    wait "$lp" 2>/dev/null
    grep -q "$5" "$out"
}

mkdir -p "$work/data"
if ! setup_net; then
    echo "SKIP: cannot create network namespaces here"
    exit 77
fi

R=tcp://10.77.0.1:7720
cfg="$work/broker.cfg"
printf 'broker\n    shards = "store-1,store-2"\n' >"$cfg"
start h1 zim-router router-1 --bind "$R" --admin tcp://10.77.0.1:7714 &&
    start h1 zim-store store-1 --bind tcp://10.77.0.1:7741 --router "$R" --admin tcp://10.77.0.1:7715 &&
    start h2 zim-store store-2 --bind tcp://10.77.0.2:7742 --router "$R" --admin tcp://10.77.0.2:7716 &&
    start h1 zim-broker broker-1 -c "$cfg" --bind tcp://10.77.0.1:7731 --node-id 1 --router "$R" --admin tcp://10.77.0.1:7712 &&
    start h2 zim-broker broker-2 -c "$cfg" --bind tcp://10.77.0.2:7732 --node-id 2 --router "$R" --admin tcp://10.77.0.2:7713 &&
    start h1 zim-gateway gw-1 --interface 10.77.0.1 -p 7700 --router "$R" --admin tcp://10.77.0.1:7710 &&
    start h2 zim-gateway gw-2 --interface 10.77.0.2 -p 7800 --router "$R" --admin tcp://10.77.0.2:7711 ||
    { echo "$pass passed, $fail failed"; exit 1; }
ok "7 nodes started on 2 hosts"

wait_alive 7 10 && ok "the map shows 7 nodes alive" || bad "the map shows 7 nodes alive" "$(alive) alive"
st=$(ZIM_DATA="$work/data" in_ns h3 "$bin/zimctl" -e tcp://10.77.0.2:7711 status 2>&1)
printf '%s' "$st" | grep -q 'store-2 .*yes *tcp://10.77.0.2:7742' && ok "gw-2's status shows the whole cluster" ||
    bad "gw-2's status shows the whole cluster" "$st"
chat alice 10.77.0.1:7700 bob 10.77.0.2:7800 "across-hosts-1" && ok "chat from gw-1 to gw-2" ||
    bad "chat from gw-1 to gw-2"
chat bob 10.77.0.2:7800 alice 10.77.0.1:7700 "across-hosts-2" && ok "chat from gw-2 to gw-1" ||
    bad "chat from gw-2 to gw-1"

# Which users live on store-1 (each sends itself a message, then store-1's
# seqs database names its users).
for i in 0 1 2 3 4 5 6 7; do
    in_ns h3 "$bin/zim-cli" -u ws://10.77.0.1:7700/ws -t "$(token "u$i")" send "u$i" "self" >/dev/null 2>&1
done
# The store writes its LMDB file at checkpoints (store/checkpoint_ms, 50 ms;
# the write-ahead log holds the rest): mdb_dump, another process, sees them.
sleep 0.5
# shellcheck disable=SC2046 # one word per user
set -- $(mdb_dump -p -s seqs "$work/data/store-1" 2>/dev/null | sed -n 's/^ \\04demo\\02\(u[0-7]\)$/\1/p')
if [ $# -ge 2 ]; then
    ok "store-1 holds users $*"
    u1=$1 u2=$2
else
    bad "store-1 holds 2 of u0..u7" "$*"
    u1=u0 u2=u1
fi

# Cut host 2 off: its gateway, broker and store leave the map (the store
# stays listed, down).
in_ns sw ip link set "$tag-2-b" down
wait_alive 4 10 && ok "host 2 cut off: 4 nodes alive" || bad "host 2 cut off: 4 nodes alive" "$(alive) alive"
st=$(ZIM_DATA="$work/data" in_ns h3 "$bin/zimctl" -e tcp://10.77.0.1:7710 status 2>&1)
printf '%s' "$st" | grep -q 'store-2 .* no ' && ok "store-2 stays in the map, down" ||
    bad "store-2 stays in the map, down" "$st"
# Two users of store-1 still chat (on gw-1, through broker-1).
chat "$u1" 10.77.0.1:7700 "$u2" 10.77.0.1:7700 "during-the-cut" && ok "store-1's users chat during the cut" ||
    bad "store-1's users chat during the cut"

in_ns sw ip link set "$tag-2-b" up
wait_alive 7 15 && ok "healed: 7 nodes alive again" || bad "healed: 7 nodes alive again" "$(alive) alive"
chat alice 10.77.0.1:7700 bob 10.77.0.2:7800 "after-the-cut" && ok "chat across hosts after the cut" ||
    bad "chat across hosts after the cut"

for name in gw-1 gw-2 broker-1 broker-2 router-1 store-1 store-2; do
    p=$(eval echo "\$pid_$(echo "$name" | tr - _)")
    kill -TERM "$p" 2>/dev/null
done
( sleep 10; for p in $pids; do kill -9 "$p" 2>/dev/null; done ) &
killer=$!
stopped=0
for p in $pids; do wait "$p" && stopped=$((stopped + 1)); done
kill "$killer" 2>/dev/null
pids=""
[ $stopped -eq 7 ] && ok "every node stops cleanly on SIGTERM" ||
    bad "every node stops cleanly on SIGTERM" "$stopped of 7 exited with status 0"
san=$(grep -l "Sanitizer\|runtime error:" "$work"/*.log 2>/dev/null)
[ -z "$san" ] && ok "no sanitizer report in the logs" || bad "no sanitizer report in the logs" "$san"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
