# sdk/js/test/build.sh: sourced (POSIX sh) after env.sh, with $work set to
# an empty directory the caller removes. Copies the SDK's sources, tests and
# demo into $work and compiles them there (tsc into $work/dist), so a
# read-only source tree (make distcheck) works and the source tree's dist/
# is never touched. Used by tests/test_sdk_js.sh and tests/test_backlog.sh.
for f in package.json tsconfig.json src scripts test demo; do cp -R "$sdk/$f" "$work/"; done
chmod -R u+w "$work"
ln -s "$modules" "$work/node_modules"
(cd "$work" && node node_modules/typescript/bin/tsc -p tsconfig.json) || { echo "FAIL: tsc"; exit 1; }
