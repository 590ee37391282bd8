#!/usr/bin/env bash
# Tests the Wireshark dissector (contrib/wireshark/gopro.lua) with Debian's
# tshark. It captures one session of `gopro serve` on a free loopback port
# and checks the fields tshark decodes from it, frame by frame:
#
#   stream  what                                            how
#   0       HEARTBEAT x2                                    gopro ping
#   1       MESSAGE "Hello TCP World!" and its echo         gopro send
#   2       application command 200, answered with ERROR    gopro send --command 200
#   3       a 30,000-byte MESSAGE cut into segments         gopro send via gopro proxy --fault throttle
#   4       HEARTBEAT, LOGIN, MESSAGE, reserved 7 in one    scripts/wireshark_clients.py pipelined
#           segment, and their replies
#   5       a header alone in the first segment, its body   ... split
#           in two more
#   6       a bad magic, answered with ERROR                ... bad-magic
#   7       a length of 10 MiB + 1, answered with ERROR     ... too-large
#   8       a HEARTBEAT, then GOAWAY on SIGTERM             ... goaway
#
# The capture is read twice: with the `gopro.port` preference on the
# server's port, and with it elsewhere (so only the heuristic finds GoPro;
# then the bad-magic request is not recognised, everything else is the
# same). With the heuristic disabled too, nothing may be decoded.
#
# Usage: scripts/test-wireshark.sh   (GOPRO_BIN picks the gopro binary;
#                                     otherwise target/release/gopro, built if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lua="$root/contrib/wireshark/gopro.lua"

if ! command -v tshark >/dev/null || ! command -v dumpcap >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y tshark
fi

bin=${GOPRO_BIN:-target/release/gopro}
if [ ! -x "$bin" ]; then
  [ -z "${GOPRO_BIN:-}" ] || { echo "test-wireshark: $bin is not executable" >&2; exit 2; }
  cargo build --release -p gopro --features cli
fi

out=$(mktemp -d)
server= proxy= capture=
cleanup() {
  local pid
  for pid in $proxy $server $capture; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

fail() { echo "test-wireshark: $*" >&2; exit 1; }

# Waits for "listening on ADDR" in a log and prints ADDR.
listening_on() {
  local log=$1 pid=$2 addr=
  for _ in $(seq 100); do
    addr=$(sed -e 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' | head -n 1)
    [ -n "$addr" ] && { echo "$addr"; return; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log" >&2
  fail "no 'listening on' from pid $pid"
}

"$bin" serve --listen 127.0.0.1:0 >"$out/serve.log" 2>&1 &
server=$!
addr=$(listening_on "$out/serve.log" "$server")
port=${addr##*:}

dumpcap -i lo -f "tcp port $port" -w "$out/cap.pcapng" 2>"$out/dumpcap.log" &
capture=$!
# dumpcap opens the interface and sets the filter before it writes the
# file's header and says "Capturing on": a client that connects after both
# is captured.
for _ in $(seq 100); do
  grep -q "Capturing on" "$out/dumpcap.log" && [ -s "$out/cap.pcapng" ] && break
  kill -0 "$capture" 2>/dev/null || { cat "$out/dumpcap.log" >&2; fail "dumpcap exited"; }
  sleep 0.1
done
[ -s "$out/cap.pcapng" ] || { cat "$out/dumpcap.log" >&2; fail "dumpcap did not start"; }

clients="$root/scripts/wireshark_clients.py"

"$bin" ping --addr "$addr" --count 2 --interval 10ms >/dev/null
[ "$("$bin" send --addr "$addr" "Hello TCP World!")" = "MESSAGE Server says: Hello TCP World!" ] ||
  fail "gopro send: unexpected reply"
if "$bin" send --addr "$addr" --command 200 app >"$out/app.log" 2>&1; then
  fail "gopro send --command 200 succeeded"
fi
grep -q "unknown command: 200" "$out/app.log" || { cat "$out/app.log" >&2; fail "no ERROR for command 200"; }

# 10,000-byte pieces every 10 ms (proxy.rs) cut the 30,000-byte body.
"$bin" proxy --upstream "$addr" --fault throttle=1000000 --direction up >"$out/proxy.log" 2>&1 &
proxy=$!
proxy_addr=$(listening_on "$out/proxy.log" "$proxy")
big=$(head -c 30000 /dev/zero | tr '\0' x)
"$bin" send --addr "$proxy_addr" "$big" >"$out/big.log"
[ "$(cat "$out/big.log")" = "MESSAGE Server says: $big" ] || fail "30 KB MESSAGE: unexpected reply"
kill "$proxy"
wait "$proxy" 2>/dev/null || true
proxy=

for mode in pipelined split bad-magic too-large; do
  python3 "$clients" "$mode" "$port"
done

# GOAWAY: a connection is open when the server gets SIGTERM.
mkfifo "$out/ready"
python3 "$clients" goaway "$port" >"$out/ready" &
holder=$!
read -r line <"$out/ready" || true
[ "$line" = ready ] || fail "goaway client did not get ready"
kill -TERM "$server"
wait "$holder" || fail "goaway client failed"
wait "$server" || fail "gopro serve exited with $?"
server=

# dumpcap reads the kernel's buffer every 250 ms at most; give it that time
# twice over, then stop it with SIGINT, which flushes and closes the file.
sleep 0.5
kill -INT "$capture"
wait "$capture" || { cat "$out/dumpcap.log" >&2; fail "dumpcap failed"; }
capture=

# decode [-Y FILTER] TSHARK-ARGS...: the GoPro packets of the capture (that
# also match FILTER), as fields.
decode() {
  local filter=gopro
  if [ "$1" = -Y ]; then
    filter="gopro && ($2)"
    shift 2
  fi
  tshark -X "lua_script:$lua" -r "$out/cap.pcapng" -Y "$filter" -T fields \
    -E aggregator='|' "$@" 2>"$out/tshark.err" || { cat "$out/tshark.err" >&2; fail "tshark failed"; }
  # Lua errors are reported on stderr, or as "Lua Error" in the tree, not as a failed exit.
  if grep -v 'Running as user "root"' "$out/tshark.err" | grep -q .; then
    cat "$out/tshark.err" >&2
    fail "tshark complained"
  fi
}

# One line per stream and direction (c: to the server, s: from it) with the
# values of each field of its frames, in order, however the frames were cut
# into segments: SEP between packets ("|" within one, from decode), a space
# between fields. Usage: per_stream SEP TSHARK-ARGS...
per_stream() {
  local sep=$1
  shift
  decode "$@" | awk -F '\t' -v OFS=' ' -v sep="$sep" -v port="$port" '
    {
      key = $1 " " ($2 == port ? "s" : "c")
      if (!(key in rows)) { order[++n] = key; rows[key] = 1; for (i = 3; i <= NF; i++) v[key, i] = $i; next }
      for (i = 3; i <= NF; i++) if ($i != "") v[key, i] = (v[key, i] == "" ? $i : v[key, i] sep $i)
    }
    END {
      for (j = 1; j <= n; j++) {
        line = order[j]
        for (i = 3; i <= NF; i++) line = line OFS v[order[j], i]
        print line
      }
    }'
}

# Commands, body lengths and reasons.
summary() {
  per_stream '|' "$@" -e tcp.stream -e tcp.srcport -e gopro.command -e gopro.length -e gopro.reason
}

unknown200='unknown command: 200'
too_large='frame body of 10485761 bytes exceeds the limit of 10485760 bytes'
bad_magic='bad magic 0x4730: expected 0x474F ("GO"); the peer does not speak GoPro or the stream is out of sync'
expected_port="0 c 0|0 0|0 
0 s 0|0 0|0 
1 c 1 16 
1 s 1 29 
2 c 200 3 
2 s 3 ${#unknown200} $unknown200
3 c 1 30000 
3 s 1 30013 
4 c 0|2|1|7 0|5|3|1 
4 s 0|2|1|3 0|2|16|18 unknown command: 7
5 c 1 3000 
5 s 1 3013 
6 c 0 0 
6 s 3 ${#bad_magic} $bad_magic
7 c 1 10485761 
7 s 3 ${#too_large} $too_large
8 c 0 4 
8 s 0|4 4|20 server shutting down"

# check NAME EXPECTED COMMAND...: COMMAND's output must be EXPECTED.
check() {
  local name=$1 expected=$2 actual
  shift 2
  actual=$("$@") || fail "$name: $1 failed"
  if [ "$actual" != "$expected" ]; then
    diff -u <(echo "$expected") <(echo "$actual") >&2 || true
    fail "$name: the decoded fields differ from the expected ones"
  fi
  echo "ok: $name"
}

check "port $port" "$expected_port" summary -o "gopro.port:$port"
# Port 1 (tcpmux) is neither the server's port nor a client's.
check "heuristic" "$(grep -v '^6 c ' <<<"$expected_port")" summary -o gopro.port:1
check "heuristic disabled" "" summary -o gopro.port:1 --disable-heuristic gopro_tcp
# A Lua error shows in the tree, not on stderr nor in the exit status.
lua_errors() {
  tshark -X "lua_script:$lua" -o "gopro.port:$1" -r "$out/cap.pcapng" -Y _ws.lua.error 2>>"$out/tshark.err"
}
check "no Lua errors (port)" "" lua_errors "$port"
check "no Lua errors (heuristic)" "" lua_errors 1

# Where the frames were in the segments (the heuristic path, which is the
# harder one for reassembly).
to_server="tcp.dstport == $port"
check "several frames in one segment" "HEARTBEAT, LOGIN, MESSAGE, reserved 7" \
  decode -Y "tcp.stream == 4 && $to_server" -o gopro.port:1 -e _ws.col.Info
# The TCP payload sizes of the client's segments, without the dissector.
payloads() {
  tshark -r "$out/cap.pcapng" -Y "tcp.stream == $1 && $to_server && tcp.len > 0" -T fields -e tcp.len 2>/dev/null |
    paste -sd ' '
}
check "header alone in the first segment" "8 1492 1508" payloads 5
check "frame reassembled from those 3 segments" "3	3008	MESSAGE" \
  decode -Y "tcp.stream == 5 && $to_server" -o gopro.port:1 -e tcp.segment.count -e tcp.reassembled.length -e _ws.col.Info
# How many pieces the proxy's throttle makes depends on timing; at least 2.
segments=$(decode -Y "tcp.stream == 3 && $to_server" -o gopro.port:1 -e tcp.segment.count -e tcp.reassembled.length)
[ "${segments#*$'\t'}" = 30008 ] && [ "${segments%$'\t'*}" -ge 2 ] ||
  fail "30 KB MESSAGE: expected one frame reassembled from 2 or more segments, got '$segments'"
echo "ok: 30 KB MESSAGE reassembled from ${segments%$'\t'*} segments"

# The Info column, packets joined by ", " as the server may write its
# replies to pipelined requests in one segment or several.
check "Info column" "0 c HEARTBEAT, HEARTBEAT
0 s HEARTBEAT, HEARTBEAT
1 c MESSAGE
1 s MESSAGE
2 c application 200
2 s ERROR \"$unknown200\"
3 c MESSAGE
3 s MESSAGE
4 c HEARTBEAT, LOGIN, MESSAGE, reserved 7
4 s HEARTBEAT, LOGIN, MESSAGE, ERROR \"unknown command: 7\"
5 c MESSAGE
5 s MESSAGE
6 c bad magic
6 s ERROR \"$bad_magic\"
7 c MESSAGE (too large)
7 s ERROR \"$too_large\"
8 c HEARTBEAT
8 s HEARTBEAT, GOAWAY \"server shutting down\"" \
  per_stream ', ' -o "gopro.port:$port" -e tcp.stream -e tcp.srcport -e _ws.col.Info

check "expert info" "6 c 0x4730 0 Bad magic 0x4730: expected 0x474F (\"GO\")
7 c 0x474f 10485761 Body of 10485761 bytes exceeds the limit of 10485760 bytes" \
  per_stream '|' -Y 'gopro.bad_magic || gopro.body_too_large' -o "gopro.port:$port" \
  -e tcp.stream -e tcp.srcport -e gopro.magic -e gopro.length -e _ws.expert.message
echo "test-wireshark: all checks passed"
