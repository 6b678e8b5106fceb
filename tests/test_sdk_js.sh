#!/bin/sh
# test_sdk_js.sh: the JavaScript SDK's own tests (sdk/js, node --test):
# byte-exact vectors, the client against a mock gateway, and against a real
# zim-server ($ZIM_BIN/zim-server) that the tests start themselves (with
# $ZIM_BIN/zimctl for groups: convs.test.mjs). Builds
# the SDK (tsc, esbuild) in a copy under the build tree, so a read-only
# source tree works, and checks that the checked-in demo bundle
# sdk/js/demo/zim-client.js is what the sources build to.
# Skipped (77) only when node is missing; see sdk/js/test/env.sh.
srcdir=${srcdir:-.}
ZIM_BIN=${ZIM_BIN:-$(pwd)}
[ -f "$srcdir/sdk/js/test/env.sh" ] || { echo "FAIL: no sdk/js/test/env.sh in $srcdir"; exit 1; }
. "$srcdir/sdk/js/test/env.sh"      # $sdk, $modules; exit 77 without node
[ -x "$ZIM_BIN/zim-server" ] || { echo "FAIL: no $ZIM_BIN/zim-server"; exit 1; }
[ -x "$ZIM_BIN/zimctl" ] || { echo "FAIL: no $ZIM_BIN/zimctl"; exit 1; }
ZIM_BIN=$(cd "$ZIM_BIN" && pwd)
vectors=$(cd "$srcdir/tests/vectors" && pwd)/ || { echo "FAIL: no tests/vectors in $srcdir"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/zim-sdk-js-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
. "$srcdir/sdk/js/test/build.sh"    # the SDK compiled in $work
cd "$work" || exit 1
node scripts/bundle.mjs || { echo "FAIL: esbuild bundle"; exit 1; }
if ! cmp -s demo/zim-client.js "$sdk/demo/zim-client.js"; then
    echo "FAIL: sdk/js/demo/zim-client.js is stale: cd sdk/js && npm run build, and commit it"
    exit 1
fi
ZIM_BIN=$ZIM_BIN ZIM_VECTORS=$vectors ZIM_JS_SERVER_LOG=$work/zim-server.log \
    node --test --test-reporter=tap test/*.test.mjs
rc=$?
if [ $rc -ne 0 ]; then
    for f in "$work"/zim-server.log*; do
        [ -f "$f" ] || continue
        echo "--- the integration tests' zim-server log ($(basename "$f")):"
        cat "$f"
    done
fi
exit $rc
