#!/bin/sh
# test_browser.sh: the demo chat page end to end in a real browser. Starts
# zim-server (loopback, dev defaults, --www $srcdir/sdk/js/demo) on an
# ephemeral port, then two scripts drive Debian's Chromium headless with
# playwright-core: sdk/js/test/browser/live.mjs (carl and dora: the lobby
# and its online count, unread badges, read ticks, typing, a group chat the
# test makes with zimctl through the admin endpoint), then chat.mjs (alice
# and bob chat, bob goes offline and comes back, both see the right messages).
# On failure: live-*.png or browser-*.png (screenshots), live-console.log or
# browser-console.log (the pages' console) and browser-server.log in ./
#
# Skipped (77) only when node is missing. Missing chromium or npm packages
# is a failure: `tools/dev test` installs them. playwright-core comes from
# the node_modules that sdk/js/test/env.sh finds (sdk/js's own, or in a dist
# tree, e.g. make distcheck, an `npm ci` into $TMPDIR).
srcdir=${srcdir:-.}
ZIM_SERVER=${ZIM_SERVER:-${ZIM_BIN:-.}/zim-server}
ZIM_ZIMCTL=${ZIM_ZIMCTL:-$(dirname "$ZIM_SERVER")/zimctl}
chromium=${ZIM_CHROMIUM:-/usr/bin/chromium}
shots=$(pwd)
[ -f "$srcdir/sdk/js/test/env.sh" ] || { echo "FAIL: no sdk/js/test/env.sh in $srcdir"; exit 1; }
. "$srcdir/sdk/js/test/env.sh"      # $sdk, $modules; exit 77 without node
[ -x "$chromium" ] || { echo "FAIL: $chromium not found: apt-get install chromium (tools/dev test does)"; exit 1; }
[ -x "$ZIM_ZIMCTL" ] || { echo "FAIL: no $ZIM_ZIMCTL"; exit 1; }
[ -f "$sdk/demo/zim-client.js" ] || { echo "FAIL: $sdk/demo/zim-client.js missing (cd sdk/js && npm run build)"; exit 1; }

data=$(mktemp -d "${TMPDIR:-/tmp}/zim-browser-test.XXXXXX")
log=$data/server.log
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

"$ZIM_SERVER" --port 0 --interface 127.0.0.1 --admin 'tcp://127.0.0.1:*' --data "$data" \
    --sync none --www "$sdk/demo" >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q " ready: " "$log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 150 ] && { echo "FAIL: zim-server did not start:"; cat "$log"; exit 1; }
    sleep 0.1
done
port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$log")
admin=$(sed -n 's/.* ready: .* admin=\([^ ]*\) .*/\1/p' "$log")

rm -f browser-alice.png browser-bob.png browser-console.log browser-server.log
rm -f live-carl.png live-dora.png live-console.log
# live.mjs first: its lobby count must not meet alice's and bob's connections.
ZIM_NODE_MODULES=$modules ZIM_CHROMIUM=$chromium ZIM_SHOTS=$shots \
    ZIM_ZIMCTL=$ZIM_ZIMCTL ZIM_ADMIN=$admin ZIM_ADMIN_KEY=$(cat "$data/admin.key") \
    node "$sdk/test/browser/live.mjs" "http://127.0.0.1:$port/" &&
    ZIM_NODE_MODULES=$modules ZIM_CHROMIUM=$chromium ZIM_SHOTS=$shots \
        node "$sdk/test/browser/chat.mjs" "http://127.0.0.1:$port/"
rc=$?
# A server built with ASan+UBSan says so in its log (LeakSanitizer at the
# clean exit): stop it and look.
kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
pid=
if grep -E "AddressSanitizer|LeakSanitizer|runtime error:" "$log"; then
    echo "FAIL: zim-server logged a sanitizer report"
    rc=1
fi
if [ $rc -ne 0 ]; then
    echo "--- zim-server log (tail)"; tail -n 40 "$log"
    cp "$log" browser-server.log
fi
exit $rc
