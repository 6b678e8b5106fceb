# sdk/js/test/env.sh: sourced by tests/test_browser.sh and tests/test_sdk_js.sh
# (POSIX sh). Needs $srcdir. Sets $sdk (absolute sdk/js of the source tree)
# and $modules (a node_modules holding sdk/js's npm packages): from
# $ZIM_NODE_MODULES, else $sdk/node_modules, else, in a tree without them (a
# dist tarball under make distcheck), `npm ci` of $sdk/package-lock.json into
# $TMPDIR/zim-js-deps-HASH: outside the build tree, so distclean stays clean,
# and reused while the lock file is unchanged (needs the npm registry once).
# Exits 77 when node is missing, 1 when node is too old or npm fails.
sdk=$(cd "$srcdir/sdk/js" 2>/dev/null && pwd) || { echo "FAIL: no sdk/js in $srcdir"; exit 1; }
command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed (tools/dev test installs it)"; exit 77; }
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
    { echo "FAIL: node $(node --version) is too old, the SDK needs node >= 20 (tools/dev test installs it)"; exit 1; }
modules=${ZIM_NODE_MODULES:-}
if [ -z "$modules" ] && [ -d "$sdk/node_modules/playwright-core" ]; then
    modules=$sdk/node_modules
fi
if [ -z "$modules" ]; then
    deps=${TMPDIR:-/tmp}/zim-js-deps-$(cksum <"$sdk/package-lock.json" | cut -d' ' -f1)
    if [ ! -f "$deps/node_modules/.package-lock.json" ]; then
        # Into a directory of its own, renamed into place when complete:
        # test runs at the same time (several build trees, make -j) never
        # see or remove each other's half-done install.
        echo "no node_modules in $sdk: npm ci into $deps"
        tmp=$(mktemp -d "$deps.XXXXXX") && cp "$sdk/package.json" "$sdk/package-lock.json" "$tmp/" &&
            chmod u+w "$tmp"/* && (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline >npm.log 2>&1) ||
            { cat "$tmp/npm.log"; rm -rf "$tmp"; echo "FAIL: npm ci failed; run 'cd sdk/js && npm ci' (tools/dev test does)"; exit 1; }
        if [ -f "$deps/node_modules/.package-lock.json" ]; then
            rm -rf "$tmp"                       # another run finished first
        else
            rm -rf "$deps" && mv -T "$tmp" "$deps" || rm -rf "$tmp"
        fi
    fi
    modules=$deps/node_modules
fi
[ -d "$modules/playwright-core" ] && [ -d "$modules/typescript" ] ||
    { echo "FAIL: the npm packages are not in $modules: cd sdk/js && npm ci (tools/dev test does)"; exit 1; }
