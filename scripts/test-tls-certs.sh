#!/usr/bin/env bash
# Tests scripts/tls-certs.sh and the foreign TLS peers of scripts/lib against
# the Go interop server:
#   1. the script is idempotent and makes what its header promises: openssl
#      verifies server and client against ca.pem, refuses expired.pem as
#      expired, wrong-host.pem for localhost and other-client.pem;
#   2. the Go server with server.pem (and ca.pem as client CA for mTLS)
#      serves the Go client, openssl s_client (scripts/lib/tls-peers.sh) and
#      CPython's ssl (scripts/lib/tls_heartbeat.py), over TLS 1.2 and 1.3;
#   3. each of those clients refuses the wrong CA, the expired and the
#      wrong-host certificates, and the mTLS server refuses them without a
#      client certificate or with other-client's;
#   4. the same foreign clients (s_client, CPython ssl, Go crypto/tls)
#      against `gopro serve --tls-cert` ($GOPRO_BIN), gopro's client against
#      the Go TLS server, plaintext on TLS and TLS on plaintext, garbage and a
#      1-byte-a-second handshake, and SIGHUP reloads (a bad file keeps the
#      certificate in use).
# Needs openssl (installed by tls-certs.sh when missing), python3 and go.
# Usage: scripts/test-tls-certs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in python3 go; do
  command -v "$tool" >/dev/null || { echo "test-tls-certs: $tool is required" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

failures=0
pass() { printf 'ok   %s\n' "$1"; }
fail() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

# expect_ok DESC CMD...: CMD must succeed.
expect_ok() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$desc"; else fail "$desc"; printf '%s\n' "$out" | sed 's/^/     /'; fi
}

# expect_fail DESC PATTERN CMD...: CMD must fail, its output matching PATTERN
# (a grep -E pattern), so that failing for an unrelated reason is noticed.
expect_fail() {
  local desc=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    fail "$desc (succeeded)"
  elif grep -Eq -- "$pattern" <<<"$out"; then
    pass "$desc"
  else
    fail "$desc (no /$pattern/ in the output)"
    printf '%s\n' "$out" | sed 's/^/     /'
  fi
}

pki=$tmp/pki
echo "== certificates"
scripts/tls-certs.sh "$pki"
sums=$(cd "$pki" && sha256sum ./*)
expect_ok "a second run reports the set up to date" grep -q 'up to date' <(scripts/tls-certs.sh "$pki")
expect_ok "a second run changes nothing" test "$sums" = "$(cd "$pki" && sha256sum ./*)"
rm "$pki/client.key"
scripts/tls-certs.sh "$pki" >/dev/null
expect_ok "a missing file makes a new, complete set" \
  bash -c 'test -s "$1/client.key" && ! cmp -s <(echo "$2") <(cd "$1" && sha256sum ./*)' _ "$pki" "$sums"

for k in "$pki"/*.key; do
  expect_ok "$(basename "$k") is PKCS#8 EC P-256" \
    bash -c 'head -1 "$1" | grep -qx -- "-----BEGIN PRIVATE KEY-----" &&
      openssl pkey -in "$1" -noout -text | grep -q "NIST CURVE: P-256"' _ "$k"
done
expect_ok "openssl verifies server and client against ca.pem" \
  openssl verify -CAfile "$pki/ca.pem" "$pki/server.pem" "$pki/client.pem"
expect_ok "server.pem is valid for localhost and 127.0.0.1" \
  openssl verify -CAfile "$pki/ca.pem" -verify_hostname localhost -verify_ip 127.0.0.1 "$pki/server.pem"
expect_fail "expired.pem has expired" "certificate has expired" \
  openssl verify -CAfile "$pki/ca.pem" "$pki/expired.pem"
expect_fail "wrong-host.pem is not valid for localhost" "hostname mismatch" \
  openssl verify -CAfile "$pki/ca.pem" -verify_hostname localhost "$pki/wrong-host.pem"
expect_fail "wrong-host.pem is not valid for 127.0.0.1" "IP address mismatch" \
  openssl verify -CAfile "$pki/ca.pem" -verify_ip 127.0.0.1 "$pki/wrong-host.pem"
expect_fail "other-client.pem does not chain to ca.pem" "unable to get local issuer" \
  openssl verify -CAfile "$pki/ca.pem" "$pki/other-client.pem"
expect_ok "other-client.pem chains to other-ca.pem" \
  openssl verify -CAfile "$pki/other-ca.pem" "$pki/other-client.pem"
expect_ok "client.pem names device-42" bash -c \
  'openssl x509 -in "$1" -noout -subject -ext subjectAltName | tr -d "\n" |
     grep -q "CN = device-42.*DNS:device-42.example.*URI:spiffe://gopro.test/device/42"' _ "$pki/client.pem"

echo "== Go peer"
(cd interop/go && go build -o "$tmp/bin/" ./cmd/...)

# serve NAME FLAGS...: starts the Go server, sets $port to its port.
serve() {
  local name=$1 i
  shift
  "$tmp/bin/server" -addr 127.0.0.1:0 -quiet "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  for i in $(seq 100); do
    if grep -q '^listening on ' "$tmp/$name.out"; then
      port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
      return 0
    fi
    sleep 0.05
  done
  echo "test-tls-certs: the $name server did not start:" >&2
  cat "$tmp/$name.err" >&2
  exit 1
}
tls_flags() { echo -tls-cert "$pki/$1.pem" -tls-key "$pki/$1.key"; }
# shellcheck disable=SC2046 # word splitting of tls_flags is intended
{
  serve server $(tls_flags server); p_server=$port
  serve mtls $(tls_flags server) -tls-client-ca "$pki/ca.pem"; p_mtls=$port
  serve expired $(tls_flags expired); p_expired=$port
  serve wrong-host $(tls_flags wrong-host); p_wrong=$port
  serve plain; p_plain=$port
}

client() { "$tmp/bin/client" -scenario article "$@"; }
h=127.0.0.1
ca=(-tls-ca "$pki/ca.pem")
expect_ok "Go client -tls-ca ca.pem" client -addr $h:$p_server "${ca[@]}"
expect_ok "Go client -tls-server-name localhost, pipeline" \
  client -addr $h:$p_server "${ca[@]}" -tls-server-name localhost -scenario pipeline
expect_ok "Go client with client.pem, mTLS" \
  client -addr $h:$p_mtls "${ca[@]}" -tls-cert "$pki/client.pem" -tls-key "$pki/client.key"
expect_fail "Go client refuses other-ca" "unknown authority" \
  client -addr $h:$p_server -tls-ca "$pki/other-ca.pem"
expect_fail "Go client refuses expired.pem" "certificate has expired" \
  client -addr $h:$p_expired "${ca[@]}"
expect_fail "Go client refuses wrong-host.pem for localhost" "not localhost" \
  client -addr $h:$p_wrong "${ca[@]}" -tls-server-name localhost
expect_fail "Go client refuses wrong-host.pem for 127.0.0.1" "127.0.0.1" \
  client -addr $h:$p_wrong "${ca[@]}"
expect_fail "mTLS server refuses a client without a certificate" "certificate required" \
  client -addr $h:$p_mtls "${ca[@]}"

echo "== openssl s_client"
# shellcheck source=lib/tls-peers.sh
source scripts/lib/tls-peers.sh
s_client() { tls_heartbeat_s_client $h "$@"; }
expect_ok "HEARTBEAT echoed over TLS 1.3" s_client "$p_server" "$pki/ca.pem" localhost -tls1_3
expect_ok "HEARTBEAT echoed over TLS 1.2" s_client "$p_server" "$pki/ca.pem" localhost -tls1_2
expect_ok "HEARTBEAT echoed, mTLS" \
  s_client "$p_mtls" "$pki/ca.pem" localhost -cert "$pki/client.pem" -key "$pki/client.key"
expect_ok "MESSAGE answered (tls_s_client_exchange)" bash -c '
  source scripts/lib/tls-peers.sh
  # 8 + 15 bytes: header 474f0101 0000000f, then "Server says: hi".
  reply=$(tls_s_client_exchange 127.0.0.1 "$1" 474f0101000000026869 23 -CAfile "$2") &&
    [ "$reply" = "474f01010000000f$(printf "Server says: hi" | od -An -v -tx1 | tr -d " \n")" ]' \
  _ "$p_server" "$pki/ca.pem"
expect_fail "s_client refuses other-ca" "certificate verify failed" \
  s_client "$p_server" "$pki/other-ca.pem" localhost
expect_fail "s_client refuses expired.pem" "certificate has expired" \
  s_client "$p_expired" "$pki/ca.pem" localhost
expect_fail "s_client refuses wrong-host.pem" "hostname mismatch" \
  s_client "$p_wrong" "$pki/ca.pem" localhost
expect_fail "mTLS server refuses s_client without a certificate" "certificate required" \
  s_client "$p_mtls" "$pki/ca.pem" localhost
expect_fail "mTLS server refuses s_client with other-client.pem" "alert unknown ca" \
  s_client "$p_mtls" "$pki/ca.pem" localhost -cert "$pki/other-client.pem" -key "$pki/other-client.key"
expect_fail "s_client reports a plain GoPro server" "0 of 8 reply bytes" s_client "$p_plain" "$pki/ca.pem" localhost

echo "== CPython ssl"
py() { python3 scripts/lib/tls_heartbeat.py $h "$@"; }
expect_ok "HEARTBEAT and MESSAGE over TLS 1.3, by IP SAN" py "$p_server" --ca "$pki/ca.pem" --tls-version 1.3
expect_ok "HEARTBEAT and MESSAGE over TLS 1.2, by name" \
  py "$p_server" --ca "$pki/ca.pem" --server-name localhost --tls-version 1.2
expect_ok "HEARTBEAT and MESSAGE, mTLS" \
  py "$p_mtls" --ca "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key"
expect_fail "python refuses other-ca" "server certificate refused" py "$p_server" --ca "$pki/other-ca.pem"
expect_fail "python refuses expired.pem" "certificate has expired" py "$p_expired" --ca "$pki/ca.pem"
expect_fail "python refuses wrong-host.pem" "not valid for 'localhost'" \
  py "$p_wrong" --ca "$pki/ca.pem" --server-name localhost
expect_fail "mTLS server refuses python without a certificate" "certificate required" \
  py "$p_mtls" --ca "$pki/ca.pem"
expect_fail "mTLS server refuses python with other-client.pem" "FAIL: .*TLS error" \
  py "$p_mtls" --ca "$pki/ca.pem" --cert "$pki/other-client.pem" --key "$pki/other-client.key"
expect_fail "python reports a plain GoPro server" "FAIL: .*(TLS error|closed|reset)" py "$p_plain" --ca "$pki/ca.pem"

echo "== gopro serve as the TLS server, its foreign clients: openssl s_client, CPython ssl, Go crypto/tls"
gopro=${GOPRO_BIN:-target/release/gopro}
[ -x "$gopro" ] || { echo "test-tls-certs: $gopro is not built" >&2; exit 1; }
# gopro_serve NAME ARGS...: starts gopro serve, sets $port to its port.
gopro_serve() {
  local name=$1 i
  shift
  GOPRO_LOG=info "$gopro" serve --listen 127.0.0.1:0 "$@" >/dev/null 2>"$tmp/$name.log" &
  pids+=($!)
  for i in $(seq 200); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/$name.log")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "test-tls-certs: gopro serve ($name) did not start:" >&2
  cat "$tmp/$name.log" >&2
  exit 1
}
gtls() { echo --tls-cert "$pki/$1.pem" --tls-key "$pki/$1.key"; }
# shellcheck disable=SC2046 # word splitting of gtls is intended
{
  gopro_serve g-server $(gtls server); g_server=$port
  gopro_serve g-mtls $(gtls server) --tls-client-ca "$pki/ca.pem"; g_mtls=$port
  gopro_serve g-expired $(gtls expired); g_expired=$port
  gopro_serve g-wrong $(gtls wrong-host); g_wrong=$port
  gopro_serve g-slow $(gtls server) --tls-handshake-timeout 1s; g_slow=$port
  gopro_serve g-plain; g_plain=$port
  gopro_serve g-opt $(gtls server) --tls-client-ca "$pki/ca.pem" --tls-client-auth optional; g_opt=$port
}
expect_ok "s_client: HEARTBEAT echoed by gopro over TLS 1.3" s_client "$g_server" "$pki/ca.pem" localhost -tls1_3
expect_ok "s_client: HEARTBEAT echoed by gopro over TLS 1.2" s_client "$g_server" "$pki/ca.pem" localhost -tls1_2
expect_ok "s_client: HEARTBEAT echoed by gopro, mTLS" \
  s_client "$g_mtls" "$pki/ca.pem" localhost -cert "$pki/client.pem" -key "$pki/client.key"
expect_fail "s_client: gopro's mTLS refuses no certificate" "certificate required|0 of 8 reply bytes" \
  s_client "$g_mtls" "$pki/ca.pem" localhost
expect_fail "s_client: gopro's mTLS refuses other-client.pem" "unknown ca|bad certificate|0 of 8 reply bytes" \
  s_client "$g_mtls" "$pki/ca.pem" localhost -cert "$pki/other-client.pem" -key "$pki/other-client.key"
expect_fail "s_client refuses gopro's expired.pem" "certificate has expired" \
  s_client "$g_expired" "$pki/ca.pem" localhost
expect_fail "s_client refuses gopro's wrong-host.pem" "hostname mismatch" \
  s_client "$g_wrong" "$pki/ca.pem" localhost
expect_ok "python ssl: HEARTBEAT and MESSAGE by gopro over TLS 1.3" py "$g_server" --ca "$pki/ca.pem" --tls-version 1.3
expect_ok "python ssl: HEARTBEAT and MESSAGE by gopro over TLS 1.2, by name" \
  py "$g_server" --ca "$pki/ca.pem" --server-name localhost --tls-version 1.2
expect_ok "python ssl: gopro mTLS" py "$g_mtls" --ca "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key"
expect_fail "python ssl: gopro's mTLS refuses no certificate" "FAIL" py "$g_mtls" --ca "$pki/ca.pem"
expect_fail "python ssl refuses gopro's expired.pem" "certificate has expired" py "$g_expired" --ca "$pki/ca.pem"
expect_ok "python ssl: gopro's optional client auth, no certificate" py "$g_opt" --ca "$pki/ca.pem"
expect_ok "python ssl: gopro's optional client auth, client.pem" \
  py "$g_opt" --ca "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key"
expect_fail "python ssl: gopro's optional client auth still refuses other-client.pem" "FAIL" \
  py "$g_opt" --ca "$pki/ca.pem" --cert "$pki/other-client.pem" --key "$pki/other-client.key"
expect_ok "Go client (crypto/tls) against gopro, all scenarios" \
  "$tmp/bin/client" -scenario all -addr $h:$g_server "${ca[@]}"
expect_ok "Go client (crypto/tls) against gopro, mTLS" \
  client -addr $h:$g_mtls "${ca[@]}" -tls-cert "$pki/client.pem" -tls-key "$pki/client.key"
expect_ok "gopro send --tls-ca against the Go TLS server" \
  "$gopro" send --addr $h:$p_server --tls-ca "$pki/ca.pem" hello
expect_ok "gopro send with a client certificate against the Go mTLS server" \
  "$gopro" send --addr $h:$p_mtls --tls-ca "$pki/ca.pem" --tls-cert "$pki/client.pem" --tls-key "$pki/client.key" hi
expect_ok "gopro ping --tls-ca against the Go TLS server" \
  "$gopro" ping --addr $h:$p_server --tls-ca "$pki/ca.pem" --count 2
expect_ok "gopro bench --tls-ca against gopro serve: replies, no errors" bash -c '
  "$0" bench --addr "$1" --tls-ca "$2" --conns 2 --pipeline 8 --duration 1s --json |
    python3 -c "import json, sys; r = json.load(sys.stdin); assert r[\"replies\"] > 0 and r[\"failed\"] == 0 and not r[\"errors\"], r"' \
  "$gopro" $h:$g_server "$pki/ca.pem"
expect_fail "gopro send refuses the Go server's expired.pem" "certificate expired" \
  "$gopro" send --addr $h:$p_expired --tls-ca "$pki/ca.pem" x
expect_fail "gopro send: plaintext on gopro's TLS port is told so" "this port requires TLS" \
  "$gopro" send --addr $h:$g_server x
expect_fail "gopro send --tls on a plaintext port: the handshake fails" "TLS handshake" \
  "$gopro" send --addr $h:$g_plain --tls-ca "$pki/ca.pem" x
expect_ok "gopro logs the TLS client on its plaintext port" grep -q "TLS client on a plaintext port" "$tmp/g-plain.log"
expect_ok "gopro logs the plaintext client on its TLS port" grep -q "plaintext GoPro client on a TLS port" "$tmp/g-server.log"
# Garbage instead of a ClientHello, and a ClientHello one byte a second:
# both closed (the second at the 1 s handshake deadline) while others are served.
expect_ok "garbage and a 1-byte-a-second handshake are closed; others served meanwhile" python3 - "$g_slow" "$pki/ca.pem" <<'PY'
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
garbage = socket.create_connection(("127.0.0.1", port), timeout=3)
garbage.sendall(b"\x00\x01 not a hello")
try:
    # Closed at once: an end of stream, or a reset for the unread bytes.
    assert garbage.recv(100) == b"", "garbage was answered"
except ConnectionResetError:
    pass
slow = socket.create_connection(("127.0.0.1", port), timeout=5)
start = time.monotonic()
hello = bytes.fromhex("16030100a5010000a10303")
closed_after = None
for b in hello * 3:
    try:
        slow.sendall(bytes([b]))
    except OSError:
        closed_after = time.monotonic() - start
        break
    # Meanwhile a real client is served.
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(bytes.fromhex("474f010000000000"))
            assert tls.recv(8) == bytes.fromhex("474f010000000000")
    time.sleep(0.25)
    slow.settimeout(0.01)
    try:
        if slow.recv(1) == b"":
            closed_after = time.monotonic() - start
            break
    except socket.timeout:
        pass
    except OSError:
        closed_after = time.monotonic() - start
        break
assert closed_after is not None, "the trickling handshake was never closed"
assert 0.8 <= closed_after <= 3.0, f"closed after {closed_after:.2f} s, not at the 1 s deadline"
print(f"trickling handshake closed after {closed_after:.2f} s")
PY
expect_ok "gopro logs the late handshake" grep -q "TLS handshake not finished in time" "$tmp/g-slow.log"
# SIGHUP reloads the certificate files; a bad file keeps the one in use.
cp "$pki/server.pem" "$tmp/reload.pem"; cp "$pki/server.key" "$tmp/reload.key"
gopro_serve g-reload --tls-cert "$tmp/reload.pem" --tls-key "$tmp/reload.key"; g_reload=$port
g_reload_pid=${pids[-1]}
echo "not a certificate" >"$tmp/reload.pem"
kill -HUP "$g_reload_pid"; sleep 0.5
expect_ok "a failed SIGHUP reload is logged and the old certificate stays" \
  bash -c 'grep -q "TLS certificate not reloaded" "$1" && python3 scripts/lib/tls_heartbeat.py 127.0.0.1 "$2" --ca "$3"' \
  _ "$tmp/g-reload.log" "$g_reload" "$pki/ca.pem"
cp "$pki/wrong-host.pem" "$tmp/reload.pem"; cp "$pki/wrong-host.key" "$tmp/reload.key"
kill -HUP "$g_reload_pid"; sleep 0.5
expect_fail "after SIGHUP the new certificate (wrong-host.pem) is served" "not valid for 'localhost'" \
  py "$g_reload" --ca "$pki/ca.pem" --server-name localhost

if [ "$failures" -ne 0 ]; then
  echo "test-tls-certs: $failures check(s) failed" >&2
  exit 1
fi
echo "test-tls-certs: all checks passed"
