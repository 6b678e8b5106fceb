#!/bin/sh
# test_backlog.sh: a user with a large backlog syncs it to the end, and pages
# through its history, with both SDKs (issue 10 #1). zim-server on ephemeral
# ports; tests/zim_fill (the C SDK, one send at a time) builds each backlog:
#   1. 600 messages of 4 KB: `zim-cli listen --since 0` (the C SDK, its
#      default page limit) prints all 600, in seq order, once, and exits 0;
#   2. `zim-cli history --limit 1000`, following `before` from page to page,
#      prints the same 600, newest first, once;
#   3. the same two with a mix of body sizes up to max_frame (64 KiB);
#   4. the JS SDK (sdk/js/test/backlog.e2e.mjs, its own zim-server): 100
#      messages of ~10 KB and a mix up to max_frame, synced with the default
#      options and paged by history(); skipped when node is missing.
# Before the server bounds pages in bytes and stops counting an asked-for
# page as slow-consumer output, 1-3 fail: the gateway cuts the connection
# (4090) at the first page, and zim-cli exits 2 having printed nothing.
# Environment (tests/Makemodule.am): ZIM_SERVER, ZIMCTL, ZIM_CLI, ZIM_FILL,
# srcdir.
srcdir=${srcdir:-.}
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIMCTL=${ZIMCTL:-./zimctl}
ZIM_CLI=${ZIM_CLI:-./zim-cli}
ZIM_FILL=${ZIM_FILL:-./tests/zim_fill}
# the JS tests run elsewhere: their zim-server by absolute path
server_abs=$(cd "$(dirname "$ZIM_SERVER")" && pwd)/$(basename "$ZIM_SERVER")
pass=0 fail=0
work=$(mktemp -d "${TMPDIR:-/tmp}/zim-backlog-test.XXXXXX") || exit 99
log="$work/server.log"
pid=

cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && echo "$2" | head -n 40 | sed 's/^/    /'; }
finish() {
    [ "$fail" -gt 0 ] && { echo "--- zim-server log (tail)"; tail -n 40 "$log"; }
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}

# check_msgs MODE COUNT SIZES FILE: FILE holds zim-cli's JSON lines. MODE
# sync: the messages are 1..COUNT, each with seq = its number; MODE history:
# COUNT..1 (newest first), without seq. Every body is "mNNNNNN x..." of the
# size that zim_fill gave message NNNNNN. Prints what is wrong, if anything.
check_msgs() {
    awk -v mode="$1" -v count="$2" -v sizes="$3" '
        BEGIN { n = split(sizes, sz, ","); i = 0; err = "" }
        /"more":true/ { next }
        /"body":/ {
            i++
            want = mode == "sync" ? i : count - i + 1
            seq = "none"
            if (match($0, /^\{"seq":[0-9]+,/)) seq = substr($0, 8, RLENGTH - 8) + 0
            b = $0; sub(/.*"body":"/, "", b); sub(/".*/, "", b)
            num = substr(b, 2, 6) + 0
            if (err == "" && (num != want || length(b) != sz[(want - 1) % n + 1] ||
                              (mode == "sync" ? seq != want : seq != "none")))
                err = sprintf("line %d: seq %s, body m%06d of %d bytes; want message %d of %d bytes",
                              i, seq, num, length(b), want, sz[(want - 1) % n + 1])
        }
        END {
            if (err == "" && i != count) err = sprintf("%d messages, want %d", i, count)
            if (err != "") print err
        }' "$4"
}

# history_all TOKEN PEER OUT: pages the conversation with zim-cli history
# --limit 1000 until a page says no more; every page goes to OUT. Sets
# $pages, and $why to what went wrong if a zim-cli run failed.
history_all() {
    : >"$3"
    pages=0 before= why=
    while [ $pages -lt 1000 ]; do
        pages=$((pages + 1))
        "$ZIM_CLI" -u "$url" -t "$1" history "$2" --limit 1000 ${before:+--before "$before"} \
            --timeout 60 >"$work/page.out" 2>"$work/page.err"
        rc=$?
        if [ $rc -ne 0 ]; then
            why="page $pages (before ${before:-none}): zim-cli exited $rc: $(cat "$work/page.err")"
            return
        fi
        cat "$work/page.out" >>"$3"
        before=$(sed -n 's/^{"more":true,"before":\([0-9]*\)}$/\1/p' "$work/page.out")
        [ -z "$before" ] && return
    done
    why="still more after $pages pages"
}

# backlog NAME TO COUNT SIZES: alice sends COUNT messages to TO with zim_fill;
# TO syncs them with zim-cli listen --since 0 and pages them with history.
backlog() {
    name=$1 to=$2 count=$3 sizes=$4
    token=$("$ZIMCTL" -e "$admin" token --app demo --uid "$to") || { bad "zimctl token $to" "$token"; return; }
    if out=$("$ZIM_FILL" "$url" "$alice" "$to" "$count" "$sizes" 2>&1); then
        ok "$name: $count messages stored for $to"
    else
        bad "$name: $count messages stored for $to" "$out"
        return
    fi
    "$ZIM_CLI" -u "$url" -t "$token" listen --since 0 --count "$count" --timeout 120 \
        >"$work/listen.out" 2>"$work/listen.err"
    rc=$?
    why=$(check_msgs sync "$count" "$sizes" "$work/listen.out")
    if [ $rc -eq 0 ] && [ -z "$why" ]; then
        ok "$name: zim-cli listen --since 0 prints all $count in seq order, once, exit 0"
    else
        bad "$name: zim-cli listen --since 0 prints all $count in seq order, once, exit 0" \
            "exit $rc; $(grep -c '"body"' "$work/listen.out") printed; ${why:-}
$(cat "$work/listen.err")"
    fi
    history_all "$token" alice "$work/history.out"
    [ -z "$why" ] && why=$(check_msgs history "$count" "$sizes" "$work/history.out")
    if [ -z "$why" ]; then
        ok "$name: zim-cli history pages all $count, newest first, once ($pages pages)"
    else
        bad "$name: zim-cli history pages all $count, newest first, once" "$why"
    fi
}

"$ZIM_SERVER" --port 0 --admin 'tcp://127.0.0.1:*' --data "$work/data" --sync none >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q " ready: " "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 300 ] && { bad "zim-server starts" "$(cat "$log")"; finish; }
    kill -0 "$pid" 2>/dev/null || { bad "zim-server starts" "$(cat "$log")"; finish; }
    sleep 0.1
done
port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$log")
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$log")
url="ws://127.0.0.1:$port/ws"
export ZIM_DATA="$work/data"     # zimctl finds the admin key there
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice) || { bad "zimctl token" "$alice"; finish; }

#   1, 2: the backlog of issue 10 #1.
backlog "4 KB" bob 600 4096
#   3: every size a send can have, up to what fits in a 64 KiB frame.
backlog "mixed sizes" carol 60 8,65400,300,4096,30000,10450,65000,1000,50000,20

#   4: the JS SDK, against its own zim-server.
jslog=$work/js-server.log
out=$(
    [ -f "$srcdir/sdk/js/test/env.sh" ] || { echo "FAIL: no sdk/js/test/env.sh in $srcdir"; exit 1; }
    . "$srcdir/sdk/js/test/env.sh"      # $sdk, $modules; exit 77 without node
    work=$work/js && mkdir "$work" || exit 1
    . "$srcdir/sdk/js/test/build.sh"    # the SDK compiled in $work
    cd "$work" && ZIM_SERVER=$server_abs ZIM_JS_SERVER_LOG=$jslog \
        node --test --test-reporter=tap test/backlog.e2e.mjs 2>&1
)
rc=$?
echo "$out" | sed 's/^/    # /'
if [ $rc -eq 77 ]; then
    echo "ok - JS SDK backlogs # SKIP node is not installed"
elif [ $rc -eq 0 ]; then
    ok "JS SDK: 100 messages of ~10 KB and a mix up to max_frame sync to the end and page by history"
else
    bad "JS SDK: 100 messages of ~10 KB and a mix up to max_frame sync to the end and page by history"
    [ -f "$jslog" ] && { echo "--- the JS tests' zim-server log (tail)"; tail -n 40 "$jslog"; }
fi
finish
