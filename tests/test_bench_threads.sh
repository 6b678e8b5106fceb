#!/bin/sh
# test_bench_threads.sh: tools/bench-threads against a real zim-server with
# a small paced p2p run: every actor's thread is named and reported (CPU
# and wakeups per message), the total line is there, nothing is missing,
# and bad usage exits 2. Not a timing check.
tool=${srcdir:-..}/tools/bench-threads
build=${ZIM_BIN:-.}
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && printf '%s\n' "$2" | sed 's/^/    /'; }

out=$("$tool" --build "$build" -- --pairs 5 --messages 40 --rate 2000 2>&1); rc=$?
if [ $rc -eq 0 ]; then ok "a small run exits 0"; else bad "a small run exited $rc" "$out"; fi
for t in zim-store zim-router zim-broker zim-gateway; do
    if printf '%s\n' "$out" | grep -q "^  $t  *CPU .* wakeups [0-9.]*/msg"; then
        ok "thread $t reported"
    else
        bad "no line for thread $t" "$out"
    fi
done
if printf '%s\n' "$out" | grep -q '200 delivered, 0 missing' &&
   printf '%s\n' "$out" | grep -q '^  all threads  *CPU  *[0-9.]* us/msg'; then
    ok "every message delivered, the total reported"
else
    bad "the bench line or the total is wrong" "$out"
fi
"$tool" --bogus >/dev/null 2>&1; rc=$?
if [ $rc -eq 2 ]; then ok "an unknown option exits 2"; else bad "an unknown option exited $rc"; fi
"$tool" --build /nonexistent >/dev/null 2>&1; rc=$?
if [ $rc -eq 3 ]; then ok "a build without zim-server exits 3"; else bad "a missing build exited $rc"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
