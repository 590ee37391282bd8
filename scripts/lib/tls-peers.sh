# Foreign TLS clients for GoPro servers, as shell functions: openssl s_client
# sending raw frame bytes. Source this file (bash); it needs openssl and
# coreutils. Tested by scripts/test-tls-certs.sh against the Go peer.
#
#   tls_s_client_exchange HOST PORT REQUEST_HEX REPLY_LEN [s_client options...]
#       sends the bytes REQUEST_HEX over TLS, prints the first REPLY_LEN bytes
#       of the reply as lower-case hex; status 1 with s_client's output on
#       stderr when the handshake fails or fewer bytes arrive within
#       TLS_PEER_TIMEOUT seconds (default 5).
#   tls_heartbeat_s_client HOST PORT CAFILE SERVER_NAME [s_client options...]
#       a verified handshake (CA, host name, SNI) and an empty HEARTBEAT
#       (474f010000000000), which must come back byte for byte. Extra options
#       such as `-cert client.pem -key client.key` or `-tls1_2` are passed on.
#
# The recipe, by hand:
#   printf '\x47\x4f\x01\x00\x00\x00\x00\x00' | openssl s_client -quiet \
#     -connect 127.0.0.1:PORT -CAfile ca.pem -servername localhost \
#     -verify_hostname localhost -verify_return_error | head -c 8 | od -An -tx1
# but -quiet implies -ign_eof, so s_client then waits for the server to
# close (Ctrl-C). The functions below pass -no_ign_eof and keep s_client's
# stdin open until the reply is in: closing stdin earlier would make it hang
# up before the reply arrives.

# tls_hex_bytes HEX: writes the bytes spelled by HEX (e.g. 474f01) to stdout.
tls_hex_bytes() {
  printf '%b' "$(printf '%s' "$1" | sed 's/../\\x&/g')"
}

tls_s_client_exchange() {
  local host=$1 port=$2 request=$3 want=$4
  shift 4
  local tmp status=0 got pid fd deadline
  tmp=$(mktemp -d)
  mkfifo "$tmp/in"
  # -quiet keeps stdout for the server's bytes only (verification and
  # session chatter go to stderr); -no_ign_eof, after it, makes s_client
  # close the connection and exit once its stdin is closed.
  openssl s_client -quiet -no_ign_eof -verify_return_error -connect "$host:$port" "$@" \
    <"$tmp/in" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  exec {fd}>"$tmp/in"
  # s_client may already have given up (a refused certificate): the write
  # then meets a closed pipe, which must not kill the calling shell.
  (trap '' PIPE && tls_hex_bytes "$request" >&"$fd") 2>/dev/null || true
  deadline=$((SECONDS + ${TLS_PEER_TIMEOUT:-5}))
  while [ "$(stat -c %s "$tmp/out")" -lt "$want" ] && kill -0 "$pid" 2>/dev/null &&
    [ "$SECONDS" -lt "$deadline" ]; do
    sleep 0.02
  done
  exec {fd}>&-
  # s_client exits on its own once stdin is closed; the kill only matters
  # when the server stalls a handshake past the deadline.
  if [ "$SECONDS" -ge "$deadline" ]; then kill "$pid" 2>/dev/null || true; fi
  wait "$pid" || status=$?
  got=$(stat -c %s "$tmp/out")
  if [ "$got" -lt "$want" ]; then
    echo "tls_s_client_exchange: $got of $want reply bytes from $host:$port (s_client status $status):" >&2
    cat "$tmp/err" >&2
    rm -rf "$tmp"
    return 1
  fi
  head -c "$want" "$tmp/out" | od -An -v -tx1 | tr -d ' \n'
  echo
  rm -rf "$tmp"
}

tls_heartbeat_s_client() {
  local host=$1 port=$2 ca=$3 name=$4 reply
  shift 4
  local heartbeat=474f010000000000
  reply=$(tls_s_client_exchange "$host" "$port" "$heartbeat" 8 \
    -CAfile "$ca" -servername "$name" -verify_hostname "$name" "$@") || return 1
  if [ "$reply" != "$heartbeat" ]; then
    echo "tls_heartbeat_s_client: reply $reply, want $heartbeat" >&2
    return 1
  fi
}
