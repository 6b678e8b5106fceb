#!/bin/sh
# test_docs.sh: every byte-exact vector in tests/vectors/ appears, verbatim,
# in docs/PROTOCOL.md, so the document cannot drift from what the server
# sends (tests/test_vectors checks the files against the encoders).
srcdir=${srcdir:-.}
pass=0 fail=0
for f in "$srcdir"/tests/vectors/*.hex "$srcdir"/tests/vectors/*/*.hex; do
    name=${f#"$srcdir"/tests/vectors/}
    if grep -qF "$(head -n 1 "$f")" "$srcdir/docs/PROTOCOL.md" &&
       awk -v doc="$srcdir/docs/PROTOCOL.md" 'BEGIN { while ((getline l < doc) > 0) d = d l "\n" }
            { v = v $0 "\n" } END { exit index(d, v) ? 0 : 1 }' "$f"; then
        pass=$((pass + 1))
    else
        echo "FAIL: $name.hex is not in docs/PROTOCOL.md"
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
