#!/usr/bin/env bash
# Scale-out behind HAProxy (deploy/haproxy/haproxy.cfg, deploy/README.md):
# HAProxy in front of three `gopro serve --proxy-protocol` processes, with
# reconnecting clients going through it: `gopro bench --reconnect` (Rust,
# every reply checked against its own request) and scripts/lib/deploy_load.py
# (Python: gopro.Client threads and gopro.AsyncClient tasks, likewise).
#
#   1. The checked-in configuration is valid (`haproxy -c`); the test runs a
#      copy with its own ports, admin socket and a 200 ms check interval.
#   2. The client's real address: a request from 127.0.0.5 through HAProxy
#      is logged by a server as peer=127.0.0.5:PORT (the PROXY v2 header),
#      while the same request straight to a server is refused (only
#      HAProxy, 127.0.0.1, is trusted).
#   3. Rolling restart under load: each server in turn is drained over the
#      admin socket, sent SIGTERM (it answers what it has, sends GOAWAY and
#      exits), marked DOWN by the health check, started again on its port,
#      seen up by the check and made ready. No call may fail and no reply
#      may be wrong; every connection must have reconnected.
#   4. SIGKILL under load: the busiest server is killed. Only calls in
#      flight on it may fail, and only with the "may have been handled"
#      error (ClientError::Lost / gopro.ConnectionLost); each of its
#      connections reconnects and every caller's later calls succeed;
#      HAProxy marks the server DOWN, and UP again once it is restarted.
#
# Prints requests, re-sent and errors for each phase and client. Installs
# HAProxy (Debian's package) if it is missing. Expects target/release/gopro
# (GOPRO_BIN overrides); Python: the venv of scripts/test-python.sh if it
# has gopro, otherwise `pip install .` into target/py-deploy.
# Usage: scripts/test-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${GOPRO_BIN:-$root/target/release/gopro}

note() { printf -- '--> %s\n' "$*"; }
fail() {
  printf 'test-deploy.sh: FAILED: %s\n' "$*" >&2
  if [ -n "${dir:-}" ] && [ -d "$dir" ]; then
    for log in "$dir"/haproxy.log "$dir"/*.err; do
      [ -s "$log" ] && { printf -- '--- %s (last lines)\n' "${log##*/}" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  exit 1
}

[ -x "$bin" ] || fail "$bin is missing: cargo build --release -p gopro --features cli"
"$bin" bench --help | grep -q -- '--reconnect ' || fail "$bin has no 'bench --reconnect'"

if ! command -v haproxy >/dev/null; then
  note "installing haproxy"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
command -v haproxy >/dev/null || fail "haproxy is not installed"

py="$root/target/py-test/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import gopro' 2>/dev/null; }; then
  py="$root/target/py-deploy/bin/python"
  note "installing the Python package into target/py-deploy"
  [ -x "$py" ] || python3 -m venv "$root/target/py-deploy"
  "$py" -m pip install -q .
fi

dir=$(mktemp -d)
haproxy_pid=
declare -a pid=() port=() load_pids=()
cleanup() {
  local p
  for p in "${load_pids[@]}" "${pid[@]}" $haproxy_pid; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# --- Free loopback ports: HAProxy's (0) and the servers' (1..3).
read -r -a port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')
front="127.0.0.1:${port[0]}"
sock="$dir/admin.sock"

# --- The configuration: the checked-in one is valid, and the test runs it
# with its own ports, socket and a short check interval.
cfg=deploy/haproxy/haproxy.cfg
haproxy -c -q -f "$cfg" || fail "$cfg is not valid"
sed -e "s|stats socket /run/haproxy/gopro.sock |stats socket $sock |" \
  -e "s|bind 127.0.0.1:8888\$|bind $front|" \
  -e "s|server s\([123]\) 127.0.0.1:900[123]\$|server s\1 127.0.0.1:PORT\1|" \
  -e "s|check inter 1s fall 2 rise 2\$|check inter 200ms fall 2 rise 2|" \
  "$cfg" >"$dir/haproxy.cfg"
for i in 1 2 3; do sed -i "s|:PORT$i\$|:${port[$i]}|" "$dir/haproxy.cfg"; done
for want in "stats socket $sock " "bind $front" "inter 200ms" \
  "server s1 127.0.0.1:${port[1]}" "server s2 127.0.0.1:${port[2]}" "server s3 127.0.0.1:${port[3]}"; do
  grep -qF -- "$want" "$dir/haproxy.cfg" || fail "$cfg changed: cannot set '$want' in the test's copy"
done
haproxy -c -q -f "$dir/haproxy.cfg" || fail "the test's copy of $cfg is not valid"

# --- The admin socket.
admin() {
  python3 - "$sock" "$1" <<'PY'
import socket, sys
with socket.socket(socket.AF_UNIX) as s:
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(sys.argv[2].encode() + b"\n")
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
sys.stdout.write(reply.decode())
PY
}
# A field of gopro/sN in `show stat` (status: UP, DOWN, DRAIN, "UP 1/2"...).
stat_of() {
  admin "show stat" | awk -F, -v srv="$1" -v field="$2" '
    NR == 1 { sub(/^# /, ""); for (i = 1; i <= NF; i++) col[$i] = i; next }
    $1 == "gopro" && $2 == srv { print $(col[field]) }'
}
wait_status() { # SERVER STATUS: HAProxy's checks agree within 10 s
  local status=
  for _ in $(seq 100); do
    status=$(stat_of "$1" status)
    [ "$status" = "$2" ] && return 0
    sleep 0.1
  done
  fail "gopro/$1 is '$status' after 10 s, not $2"
}

# --- The servers (each log gathers every run on its port).
plain() { sed -e 's/\x1b\[[0-9;]*m//g' "$@"; }
start_server() { # N
  local n=$1 log="$dir/s$1.log" before
  touch "$log"
  before=$(plain "$log" | grep -c 'listening on' || true)
  "$bin" serve --listen "127.0.0.1:${port[$n]}" --proxy-protocol \
    --trusted-proxies 127.0.0.1/32 --grace 5s >>"$log" 2>&1 &
  pid[$n]=$!
  for _ in $(seq 100); do
    [ "$(plain "$log" | grep -c 'listening on')" -gt "$before" ] && return 0
    kill -0 "${pid[$n]}" 2>/dev/null || fail "server s$n did not start: $(tail -n 3 "$log")"
    sleep 0.1
  done
  fail "server s$n did not start in 10 s"
}
stop_server() { # N SIGNAL: waits for the exit; its status in $stopped
  stopped=0
  kill -"$2" "${pid[$1]}"
  # (Quiet: bash would report a job killed by a signal.)
  { wait "${pid[$1]}"; } 2>/dev/null || stopped=$?
  pid[$1]=
}

for n in 1 2 3; do start_server "$n"; done
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
haproxy_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "HAProxy did not start: $(tail -n 5 "$dir/haproxy.log")"
for n in 1 2 3; do wait_status "s$n" UP; done
note "HAProxy $(haproxy -v | sed -n '1s/HAProxy version \([^ ]*\).*/\1/p') on $front in front of 127.0.0.1:${port[1]}, :${port[2]}, :${port[3]}; health checks pass"

# --- The client's address, through the PROXY header; strangers refused.
probe=$("$py" scripts/lib/deploy_load.py probe --addr "$front" --source 127.0.0.5) ||
  fail "a request from 127.0.0.5 through HAProxy got no reply"
grep -q "connection opened peer=$probe\$" <(plain "$dir"/s[123].log) ||
  fail "no server logged 'connection opened peer=$probe'"
if "$py" scripts/lib/deploy_load.py probe --addr "127.0.0.1:${port[1]}" --source 127.0.0.5 \
  >/dev/null 2>"$dir/direct.out"; then
  fail "127.0.0.5 reached a server directly, past --trusted-proxies"
fi
grep -q 'not a trusted proxy.*peer=127\.0\.0\.5:' <(plain "$dir/s1.log") ||
  fail "s1 did not log the untrusted peer 127.0.0.5"
note "a request from $probe through HAProxy is logged with that address; straight to a server it is refused"

# --- Load: both clients in the background for SECONDS; JSON in DIR/NAME.*.json.
start_load() { # NAME SECONDS
  "$bin" bench --addr "$front" --reconnect --conns 4 --callers 8 --threads 1 \
    --duration "$2s" --json >"$dir/$1.rust.json" 2>"$dir/$1.rust.err" &
  load_pids=($!)
  "$py" scripts/lib/deploy_load.py load --addr "$front" --duration "$2" \
    --clients 2 --threads 4 --tasks 4 >"$dir/$1.py.json" 2>"$dir/$1.py.err" &
  load_pids+=($!)
  load_until=$((SECONDS + $2))
}
wait_load() { # NAME
  wait "${load_pids[0]}" || fail "$1: gopro bench failed: $(tail -n 3 "$dir/$1.rust.err")"
  wait "${load_pids[1]}" || fail "$1: the Python clients failed: $(tail -n 3 "$dir/$1.py.err")"
}
# Checks a phase's figures; prints them. ALLOWED: the error kinds allowed
# for Rust (ClientError::kind) and Python (class names), or "none".
judge() { # NAME RUST_ALLOWED PY_ALLOWED MIN_RECONNECTS_RUST MIN_RECONNECTS_PY
  python3 - "$dir/$1" "$@" <<'PY'
import json, sys
base, name, rust_ok, py_ok, min_rust, min_py = sys.argv[1:]
problems = []
def check(label, report, allowed, min_reconnects, requests, ok, wrong):
    errors = report["errors"]
    bad = {k: n for k, n in errors.items() if k not in allowed.split(",")}
    if bad:
        problems.append(f"{label}: errors not allowed here: {bad}")
    if wrong:
        problems.append(f"{label}: {wrong} wrong replies")
    if report["failing_at_end"]:
        problems.append(f"{label}: {report['failing_at_end']} callers still failing at the end")
    if report["reconnects"] < int(min_reconnects):
        problems.append(f"{label}: {report['reconnects']} reconnects, expected at least {min_reconnects}")
    if ok == 0:
        problems.append(f"{label}: no reply at all")
    print(f"    {name} {label:>6}: {requests} requests, {ok} replies, "
          f"{report['reconnects']} reconnects, {report['resent']} re-sent, "
          f"{sum(errors.values())} errors {errors or ''}".rstrip())
    return sum(errors.values())
rust = json.load(open(f"{base}.rust.json"))
py = json.load(open(f"{base}.py.json"))
rust_errors = check("Rust", rust, rust_ok, min_rust,
                    rust["replies"] + rust["failed"], rust["replies"], 0)
if rust["failed"] != rust_errors:
    problems.append(f"Rust: {rust['failed']} failed but {rust_errors} errors by kind")
py_errors = check("Python", py, py_ok, min_py, py["requests"], py["replies"], py["wrong"])
if py["first_wrong"]:
    problems.append(f"Python: first wrong reply: {py['first_wrong']}")
if py["requests"] != py["replies"] + py["wrong"] + py_errors:
    problems.append(f"Python: {py['requests']} requests but {py['replies']} replies, "
                    f"{py['wrong']} wrong and {py_errors} errors")
with open(f"{base}.totals", "w") as totals:
    print(rust_errors + py_errors, rust["reconnects"] + py["reconnects"], file=totals)
for p in problems:
    print(f"test-deploy.sh: {name}: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# --- Rolling restart: drain, SIGTERM, DOWN, start, up (DRAIN), ready, UP.
note "rolling restart of s1, s2, s3 under load (drain, SIGTERM, start, ready)"
start_load rolling 22
sleep 1.5
for n in 1 2 3; do
  t0=$SECONDS
  admin "set server gopro/s$n state drain" >/dev/null
  wait_status "s$n" DRAIN
  stop_server "$n" TERM
  [ "$stopped" = 0 ] || fail "s$n exited with status $stopped on SIGTERM"
  wait_status "s$n" DOWN
  start_server "$n"
  wait_status "s$n" DRAIN
  admin "set server gopro/s$n state ready" >/dev/null
  wait_status "s$n" UP
  note "s$n restarted in $((SECONDS - t0)) s; $(stat_of "s1" scur)/$(stat_of "s2" scur)/$(stat_of "s3" scur) sessions on s1/s2/s3"
done
[ "$SECONDS" -lt "$load_until" ] || fail "the restarts outlasted the load: give it more time"
wait_load rolling
# Every connection was on a server that restarted: each reconnected.
judge rolling none none 4 3 || fail "the rolling restart lost or broke calls"

# --- SIGKILL: the busiest server dies mid-load, and is started again.
start_load kill 12
sleep 2
victim=1 most=-1
for n in 1 2 3; do
  sessions=$(stat_of "s$n" scur)
  if [ "$sessions" -gt "$most" ]; then victim=$n most=$sessions; fi
done
[ "$most" -gt 0 ] || fail "no server has a session to kill"
note "SIGKILL to s$victim, which has $most of the sessions"
downs=$(grep -c "Server gopro/s$victim is DOWN" "$dir/haproxy.log" || true)
stop_server "$victim" KILL
[ "$stopped" = 137 ] || fail "s$victim exited with status $stopped, not SIGKILL's 137"
wait_status "s$victim" DOWN
start_server "$victim"
wait_status "s$victim" UP
[ $((load_until - SECONDS)) -ge 2 ] || fail "s$victim came back too late to see later calls succeed: give the load more time"
note "HAProxy marked s$victim DOWN, then UP once it was started again"
wait_load kill
# Either client may have had no connection on it (the totals below count).
judge kill lost ConnectionLost 0 0 || fail "the SIGKILL broke more than the calls in flight"
# Each of its sessions was a client's connection, which had to reconnect.
# Calls in flight on them failed (almost always some; none if every reply
# had come and the next requests were not written yet).
read -r lost reconnects <"$dir/kill.totals"
[ "$reconnects" -ge "$most" ] ||
  fail "$reconnects reconnects after the SIGKILL, but s$victim had $most sessions"
note "the SIGKILL cost $lost call(s) in flight on s$victim; its $most connection(s) reconnected"
[ "$(grep -c "Server gopro/s$victim is DOWN" "$dir/haproxy.log")" -gt "$downs" ] ||
  fail "HAProxy's log does not say s$victim went DOWN after the SIGKILL"

for n in 1 2 3; do
  if plain "$dir/s$n.log" | grep -qi panick; then fail "s$n panicked: $(plain "$dir/s$n.log" | grep -i -m1 panick)"; fi
done
note "deploy: no call failed across the rolling restart; after SIGKILL only calls in flight failed, as lost"
