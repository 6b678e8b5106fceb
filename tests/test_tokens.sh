#!/bin/sh
# test_tokens.sh: tokens as app backends mint them, with a standard JWT
# library (node's jsonwebtoken), checked by a real zim-server over a real
# WebSocket (zim-cli authenticates with an auth frame): every ordinary claim
# type is accepted; expired, not yet valid, wrong secret, alg none, RS256
# with the wrong key, HS256 keyed with the public key, and a wrong aud or
# iss are refused, each with its code (docs/PROTOCOL.md, "Errors").
# Skipped (77) without node. jsonwebtoken comes from $ZIM_JWT_MODULES, else
# is installed once with npm into $TMPDIR/zim-jwt-deps-VERSION (outside the
# build tree, like sdk/js/test/env.sh does for the SDK's packages).
ZIM_SERVER=${ZIM_SERVER:-./zim-server}
ZIM_CLI=${ZIM_CLI:-./zim-cli}
ZIMCTL=${ZIMCTL:-./zimctl}
JWT_VERSION=9.0.2
pass=0 fail=0

command -v node >/dev/null 2>&1 || { echo "SKIP: node is not installed (tools/dev test installs it)"; exit 77; }
command -v openssl >/dev/null 2>&1 || { echo "SKIP: openssl is not installed"; exit 77; }
modules=${ZIM_JWT_MODULES:-}
if [ -z "$modules" ]; then
    deps=${TMPDIR:-/tmp}/zim-jwt-deps-$JWT_VERSION
    if [ ! -f "$deps/node_modules/jsonwebtoken/package.json" ]; then
        # Into a directory of its own, renamed into place when complete, so
        # that runs at the same time never see a half-done install.
        echo "installing jsonwebtoken@$JWT_VERSION into $deps"
        tmp=$(mktemp -d "$deps.XXXXXX") &&
            (cd "$tmp" && npm install --no-save --no-audit --no-fund --ignore-scripts \
                "jsonwebtoken@$JWT_VERSION" >npm.log 2>&1) ||
            { cat "$tmp/npm.log" 2>/dev/null; rm -rf "$tmp"; echo "FAIL: npm install jsonwebtoken failed"; exit 1; }
        if [ -f "$deps/node_modules/jsonwebtoken/package.json" ]; then
            rm -rf "$tmp"                       # another run finished first
        else
            rm -rf "$deps" && mv -T "$tmp" "$deps" || rm -rf "$tmp"
        fi
    fi
    modules=$deps/node_modules
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/zim-tokens-test.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ok()   { pass=$((pass + 1)); echo "ok - $1"; }
bad()  { fail=$((fail + 1)); echo "not ok - $1"; [ -n "$2" ] && echo "    $2"; }

# Keys: an RSA pair, a second RSA pair (the wrong key), a P-256 pair.
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null &&
    openssl rsa -in "$work/rsa.pem" -pubout -out "$work/rsa.pub" 2>/dev/null &&
    openssl genrsa -out "$work/rsa2.pem" 2048 2>/dev/null &&
    openssl ecparam -name prime256v1 -genkey -noout -out "$work/ec.pem" 2>/dev/null &&
    openssl ec -in "$work/ec.pem" -pubout -out "$work/ec.pub" 2>/dev/null ||
    { echo "FAIL: openssl could not make the keys"; exit 1; }
printf 'hs-secret-0123456789abcdef' >"$work/hs.key"
printf 'wrong-secret-0123456789abcdef' >"$work/wrong.key"
printf 'claims-secret-0123456789abcdef' >"$work/claims.key"

# mint.js ALG KEYFILE CLAIMS-JSON [OPTIONS-JSON]: a token from jsonwebtoken.
cat >"$work/mint.js" <<'EOF'
const jwt = require('jsonwebtoken');
const fs = require('fs');
const [alg, keyfile, claims, options] = process.argv.slice(2);
const key = keyfile === '-' ? null : fs.readFileSync(keyfile);
process.stdout.write(jwt.sign(JSON.parse(claims), key,
                              Object.assign({algorithm: alg}, JSON.parse(options || '{}'))));
EOF
mint() { NODE_PATH=$modules node "$work/mint.js" "$@"; }

# Every ordinary claim type, as real app backends add them.
# (jsonwebtoken counts expiresIn and notBefore from the claims' iat.)
rich='{"sub":"alice","app":"APP","iat":NOW.25,"roles":["admin","ops",3],"profile":{"name":"Zoë 漢字","age":41.5,"tags":[]},"verified":true,"banned":false,"nick":null,"jti":"6f1c","c01":1,"c02":2,"c03":3,"c04":4,"c05":5,"c06":6,"c07":7,"c08":8,"c09":9,"c10":10,"c11":11,"c12":12,"c13":13,"c14":14,"c15":15,"c16":16,"c17":17,"c18":18,"c19":19,"c20":20}'
claims() { echo "$rich" | sed -e "s/\"APP\"/\"$1\"/" -e "s/NOW/$(date +%s)/"; }

# gateway/auth_timeout is longer than zim-cli's --timeout 10 of a refused
# token: a refused auth frame leaves the connection open, and when the
# server's auth_timeout (10 s by default) fired first its 4014 replaced the
# refusal's code in zim-cli's last error (seen on a loaded machine).
full_config() {
    cat <<EOF
gateway
    auth_timeout = 60
apps
    hs
        secret = "$(cat "$work/hs.key")"
    rs
        public_key = "$work/rsa.pub"
    es
        public_key = "$work/ec.pub"
    claims
        secret = "$(cat "$work/claims.key")"
        audience = "chat.example"
        issuer = "https://auth.example"
EOF
}

# start CONFIG: zim-server on ephemeral ports; sets $pid, $url; 0 or 1.
start() {
    printf '%s\n' "$1" >"$work/zim.cfg"
    rm -rf "$work/data"
    "$ZIM_SERVER" -c "$work/zim.cfg" --port 0 --admin 'tcp://127.0.0.1:*' --data "$work/data" \
        >"$work/server.log" 2>&1 &
    pid=$!
    i=0
    while ! grep -q " ready: " "$work/server.log" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 150 ] || ! kill -0 "$pid" 2>/dev/null; then pid=; return 1; fi
        sleep 0.1
    done
    port=$(sed -n 's/.* ready: ws=ws:\/\/[^:]*:\([0-9]*\)\/ws.*/\1/p' "$work/server.log")
    url="ws://127.0.0.1:$port/ws"
    admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' "$work/server.log")
    return 0
}

# Apps with a secret, an RSA key, an EC key, and an audience and issuer
# (the process shell passes every key of apps/NAME to the gateway).
start "$(full_config)" || { cat "$work/server.log"; echo "FAIL: zim-server did not start"; exit 1; }

# accept NAME TOKEN: zim-cli authenticates and pings.
accept() {
    if out=$("$ZIM_CLI" -u "$url" -t "$2" ping --timeout 5 2>&1) && echo "$out" | grep -q '"uid":"alice"'; then
        ok "$1"
    else
        bad "$1" "$out"
    fi
}
# refuse NAME CODE TOKEN: the auth frame is answered with error CODE.
refuse() {
    out=$("$ZIM_CLI" -u "$url" -t "$3" ping --timeout 10 2>&1)   # answered at once
    if echo "$out" | grep -q "(code $2)"; then ok "$1"; else bad "$1" "expected code $2, got: $out"; fi
}

accept "HS256 with every ordinary claim type" "$(mint HS256 "$work/hs.key" "$(claims hs)" '{"expiresIn":600}')"
accept "HS256 with nbf in the past and a float exp" \
    "$(mint HS256 "$work/hs.key" '{"sub":"alice","app":"hs","exp":4102444800.5}' '{"notBefore":-10}')"
refuse "expired" 4012 "$(mint HS256 "$work/hs.key" "$(claims hs)" '{"expiresIn":-10}')"
refuse "not yet valid (nbf)" 4016 "$(mint HS256 "$work/hs.key" "$(claims hs)" '{"expiresIn":600,"notBefore":300}')"
refuse "wrong secret" 4011 "$(mint HS256 "$work/wrong.key" "$(claims hs)" '{"expiresIn":600}')"
refuse "unknown app" 4011 "$(mint HS256 "$work/hs.key" "$(claims nosuchapp)" '{"expiresIn":600}')"
refuse "alg none" 4018 "$(mint none - "$(claims hs)" '{"expiresIn":600}')"
refuse "RS256 to an app with only a secret" 4018 "$(mint RS256 "$work/rsa.pem" "$(claims hs)" '{"expiresIn":600}')"

accept "RS256 with the app's key" "$(mint RS256 "$work/rsa.pem" "$(claims rs)" '{"expiresIn":600}')"
accept "ES256 with the app's key" "$(mint ES256 "$work/ec.pem" "$(claims es)" '{"expiresIn":600}')"
refuse "RS256 signed with the wrong key" 4011 "$(mint RS256 "$work/rsa2.pem" "$(claims rs)" '{"expiresIn":600}')"
refuse "HS256 keyed with the app's public key (alg confusion)" 4018 \
    "$(mint HS256 "$work/rsa.pub" "$(claims rs)" '{"expiresIn":600}')"
refuse "ES256 to an app with an RSA key" 4018 "$(mint ES256 "$work/ec.pem" "$(claims rs)" '{"expiresIn":600}')"
refuse "RS256 expired" 4012 "$(mint RS256 "$work/rsa.pem" "$(claims rs)" '{"expiresIn":-10}')"
accept "aud and iss as the app names them" "$(mint HS256 "$work/claims.key" "$(claims claims)" \
    '{"expiresIn":600,"audience":["web","chat.example"],"issuer":"https://auth.example"}')"
refuse "wrong aud" 4017 "$(mint HS256 "$work/claims.key" "$(claims claims)" \
    '{"expiresIn":600,"audience":"web","issuer":"https://auth.example"}')"
refuse "wrong iss" 4017 "$(mint HS256 "$work/claims.key" "$(claims claims)" \
    '{"expiresIn":600,"audience":"chat.example","issuer":"https://evil.example"}')"

# Every refusal was logged with its reason and counted by reason.
grep -q "token refused (alg_refused)" "$work/server.log" && grep -q "token refused (not_yet_valid)" "$work/server.log" &&
    ok "refusals are logged with their reason" || bad "refusals are logged with their reason" "$(grep 'token refused' "$work/server.log" | head -n 3)"
stats=$(ZIM_DATA=$work/data "$ZIMCTL" -e "$admin" status --json 2>&1)
echo "$stats" | grep -q '"token_expired":[1-9]' && echo "$stats" | grep -q '"token_not_yet_valid":[1-9]' &&
    echo "$stats" | grep -q '"token_alg_refused":[1-9]' && echo "$stats" | grep -q '"token_bad_signature":[1-9]' &&
    ok "refusals are counted by reason (zimctl status)" || bad "refusals are counted by reason (zimctl status)" "$stats"

if [ $fail -gt 0 ]; then
    echo "--- zim-server log (tail)"; tail -n 60 "$work/server.log"
fi
echo "# $pass passed, $fail failed"
[ $fail -eq 0 ]
