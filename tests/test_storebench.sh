#!/bin/sh
# test_storebench.sh: tools/zim-storebench writes its batches through the
# store's group commit into a fresh environment and reports what a commit
# cost: every send stored, pages written counted, the commit's write timed
# as a part of the whole, CPU per send, with and without the write-ahead
# log and its checkpoints; bad usage and an existing --dir are refused.
bench=${ZIM_BIN:-.}/tools/zim-storebench
pass=0 fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); else echo "FAIL: $2"; fail=$((fail + 1)); fi; }
field() { echo "$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/zim-test-storebench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for mode in "none 0" "batch 0" "batch 50"; do
    set -- $mode
    sync=$1
    out=$(TMPDIR=$tmp "$bench" --pairs 5 --batch 20 --commits 10 --sync $sync --checkpoint $2 \
          --json); rc=$?
    ok $rc "zim-storebench --sync $sync --checkpoint $2 exited $rc: $out"
    ok "$(awk -v c="$(field "$out" cpu_us_per_send)" 'BEGIN { exit !(c > 0) }'; echo $?)" \
        "CPU per send measured: $out"
    ok "$([ "$(field "$out" measured)" = 5 ] && echo 0 || echo 1)" "second half measured: $out"
    pages=$(field "$out" pages) commit=$(field "$out" commit_us) write=$(field "$out" write_us)
    # An LMDB commit writes pages; a batch through the log, its record.
    least=5; [ "$2" != 0 ] && [ "$sync" = batch ] && least=0.1
    ok "$(awk -v p="$pages" -v l="$least" 'BEGIN { exit !(p >= l) }'; echo $?)" \
        "pages written per commit: $out"
    ok "$(awk -v c="$commit" -v w="$write" 'BEGIN { exit !(w > 0 && w <= c) }'; echo $?)" \
        "the write is part of the commit: $out"
done
ok "$([ -z "$(ls -A "$tmp")" ] && echo 0 || echo 1)" "its own directories are removed"

# Through the log with a 1 ms window: the window is checkpointed as it goes.
out=$(TMPDIR=$tmp "$bench" --pairs 5 --batch 20 --commits 40 --checkpoint 1 --json); rc=$?
ok $rc "zim-storebench --checkpoint 1 exited $rc: $out"
ok "$(awk -v c="$(field "$out" checkpoints)" 'BEGIN { exit !(c >= 1) }'; echo $?)" \
    "windows checkpointed: $out"
"$bench" --checkpoint -1 >/dev/null 2>&1; rc=$?
ok "$([ $rc = 2 ] && echo 0 || echo 1)" "--checkpoint -1 is refused (exit $rc)"

"$bench" --dir "$tmp/mine" --commits 4 --batch 2 --pairs 2 >/dev/null; rc=$?
ok $rc "zim-storebench --dir a new directory exited $rc"
ok "$([ -f "$tmp/mine/data.mdb" ] && echo 0 || echo 1)" "--dir keeps the store it wrote"
"$bench" --dir "$tmp/mine" >/dev/null 2>&1; rc=$?
ok "$([ $rc = 2 ] && echo 0 || echo 1)" "an existing --dir is refused (exit $rc)"
"$bench" --batch 0 >/dev/null 2>&1; rc=$?
ok "$([ $rc = 2 ] && echo 0 || echo 1)" "--batch 0 is refused (exit $rc)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
