#!/bin/sh
# test_api_curl.sh: the backend push API (docs/API.md) driven by the curl
# command, as an app backend's shell script would: the answers and error
# documents of a real zim-server, a persisted push that a real client
# (zim-cli) then reads from its inbox, a retry that stores nothing twice,
# and a group's life (create, get, members, delete, 404). Skipped (77)
# without curl (tools/dev installs it).
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIMCTL=${ZIMCTL:-./zimctl}
ZIM_CLI=${ZIM_CLI:-./zim-cli}
pass=0 fail=0

command -v curl >/dev/null 2>&1 || { echo "SKIP: curl is not installed (tools/dev test installs it)"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/zim-api-curl.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && echo "    $2"; }
# check NAME WANT GOT: GOT contains WANT
check() { case "$3" in *"$2"*) ok "$1" ;; *) bad "$1" "want $2 in: $3" ;; esac; }

log=$work/server.log
"$ZIM_SERVER" --port 0 --interface 127.0.0.1 --admin 'tcp://127.0.0.1:*' --api 127.0.0.1:0 \
    --data "$work/data" >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q " ready: " "$log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL: zim-server did not start"; cat "$log"; exit 1
    fi
    sleep 0.1
done
url=$(sed -n 's/.* ready: ws=\([^ ]*\) .*/\1/p' "$log")
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$log")
api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$log")
key=$(cat "$work/data/app-demo.apikey")
[ -n "$api" ] && [ -n "$key" ] || { echo "FAIL: no api= in the ready line or no API key"; cat "$log"; exit 1; }
export ZIM_DATA="$work/data"

# api CURL-ARGS...: prints the body, then a last line with the HTTP status.
api() { curl -s -w '\n%{http_code}' "$@"; }
auth="Authorization: Bearer $key"

out=$(api -H "$auth" "$api/v1/stats")
check "GET /v1/stats" "200" "$(echo "$out" | tail -n 1)"
out=$(api "$api/v1/stats")
check "no key: 401" "401" "$(echo "$out" | tail -n 1)"
check "no key: a JSON error document" '"error":{' "$out"
out=$(api -H "Authorization: Bearer wrong" "$api/v1/stats")
check "a key of no app: 403" "403" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" -H 'Content-Type: application/json' -d '{"users":["alice"],' "$api/v1/push/users")
check "bad JSON: 400" "400" "$(echo "$out" | tail -n 1)"

# A persisted push: stored in alice's inbox (from _system), answered with
# her seq; the same request id again stores nothing and answers the same.
req='{"users":["alice"],"data":{"text":"from curl"},"persist":true,"id":"curl-1"}'
out=$(api -H "$auth" -H 'Content-Type: application/json' -d "$req" "$api/v1/push/users")
check "persisted push: 200" "200" "$(echo "$out" | tail -n 1)"
check "persisted push: alice's seq" '"alice":1' "$out"
out=$(api -H "$auth" -H 'Content-Type: application/json' -d "$req" "$api/v1/push/users")
check "the same id again: the same seq" '"alice":1' "$out"
alice=$("$ZIMCTL" -e "$admin" token --app demo --uid alice) || bad "zimctl token" "$alice"
out=$("$ZIM_CLI" -u "$url" -t "$alice" listen --since 0 --timeout 3 2>&1)
check "alice's inbox has the push from _system" '"from":"_system"' "$out"
check "with its body" 'from curl' "$out"
[ "$(echo "$out" | grep -c '"seq"')" -eq 1 ] && ok "stored once" || bad "stored once" "$out"

# A group's life.
out=$(api -H "$auth" -d '{"group":"crew","kind":"group","members":["alice","bob"]}' "$api/v1/groups")
check "POST /v1/groups" "200" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" -d '{"group":"crew","kind":"group","members":["alice"]}' "$api/v1/groups")
check "the same group again: 409" "409" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" -d '{"add":["carol"],"remove":["bob"]}' "$api/v1/groups/crew/members")
check "POST /v1/groups/crew/members" "200" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" "$api/v1/groups/crew")
check "GET /v1/groups/crew" "200" "$(echo "$out" | tail -n 1)"
check "its members" '"carol"' "$out"
case "$out" in *'"bob"'*) bad "bob left" "$out" ;; *) ok "bob left" ;; esac
out=$(api -H "$auth" -X DELETE "$api/v1/groups/crew")
check "DELETE /v1/groups/crew" "200" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" "$api/v1/groups/crew")
check "a deleted group: 404" "404" "$(echo "$out" | tail -n 1)"
out=$(api -H "$auth" -X PUT "$api/v1/groups/crew")
check "PUT: 405" "405" "$(echo "$out" | tail -n 1)"

kill -0 "$pid" 2>/dev/null && ok "the server is still serving" || bad "the server is still serving"
if grep -q 'ERROR: AddressSanitizer\|runtime error' "$log"; then
    bad "no sanitizer report in the server's log" "$(grep -m3 'ERROR\|runtime error' "$log")"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ] || { cat "$log"; exit 1; }
