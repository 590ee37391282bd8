#!/usr/bin/env bash
# Soak test: keeps connections opening and closing under pipelined load
# against `gopro serve` for SECONDS (default 60), then checks that
#   1. no reply was lost or wrong (every reply is checked by its client),
#   2. the server's open file descriptors are back to their baseline once
#      every client has closed (after a settle time of up to 5 s),
#   3. its resident memory is flat: the largest RSS sample of the last third
#      of the run exceeds that of the first third by at most 20 % or 4 MiB,
#      whichever is larger (samples every 200 ms).
#
# The load, all at once:
#   - long-lived: `gopro bench`, 8 connections x pipeline 16;
#   - churn: `gopro bench --reconnect-every 64`, 2 connections x pipeline 8,
#     each closed and replaced after 64 replies;
#   - abrupt: a Python client that loops over short connections that send a
#     few pipelined frames, check their replies, then close cleanly, close
#     in the middle of a frame or a header, reset (RST) mid-frame, or close
#     with replies unread.
#
# Usage: scripts/soak.sh [SECONDS]     (GOPRO_BIN picks the gopro binary;
#                                       otherwise target/release/gopro, built if needed)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [SECONDS]" >&2; exit 2 ;;
esac
[ "$secs" -ge 3 ] || { echo "soak: SECONDS must be at least 3" >&2; exit 2; }

bin=${GOPRO_BIN:-target/release/gopro}
if ! { [ -x "$bin" ] && "$bin" bench --help 2>/dev/null | grep -q -- --reconnect-every; }; then
  [ -z "${GOPRO_BIN:-}" ] || { echo "soak: $bin has no 'bench --reconnect-every'" >&2; exit 2; }
  echo "soak: building $bin"
  cargo build --release -p gopro --features cli
fi

out=$(mktemp -d)
server=
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

"$bin" serve --listen 127.0.0.1:0 >"$out/serve.out" 2>"$out/serve.log" &
server=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -e 's/\x1b\[[0-9;]*m//g' "$out/serve.log" "$out/serve.out" |
    sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "soak: the server did not start" >&2
  cat "$out/serve.log" >&2
  exit 1
fi

fd_count() { local fds=(/proc/"$server"/fd/*); echo "${#fds[@]}"; }
rss_kib() {
  local key value _
  while read -r key value _; do
    if [ "$key" = VmRSS: ]; then echo "$value"; return; fi
  done <"/proc/$server/status"
}

sleep 0.3
fds_baseline=$(fd_count)
rss_start=$(rss_kib)
echo "soak: ${secs}s against gopro serve on $addr (pid $server), fds $fds_baseline, RSS $rss_start KiB"

# RSS sampler, until the load is over.
(
  while [ ! -e "$out/load-done" ] && kill -0 "$server" 2>/dev/null; do
    rss_kib
    sleep 0.2
  done
) >"$out/rss" 2>/dev/null &
sampler=$!
pids+=("$sampler")

"$bin" bench --addr "$addr" --threads 1 --conns 8 --pipeline 16 --size 64 \
  --duration "${secs}s" --json >"$out/long.json" 2>"$out/long.err" &
long=$!
pids+=("$long")
"$bin" bench --addr "$addr" --threads 1 --conns 2 --pipeline 8 --size 200 \
  --command heartbeat --reconnect-every 64 \
  --duration "${secs}s" --json >"$out/churn.json" 2>"$out/churn.err" &
churn=$!
pids+=("$churn")

python3 - "$addr" "$secs" >"$out/abrupt.json" 2>"$out/abrupt.err" <<'PY' &
"""Short and abrupt connections; checks every reply it reads; prints JSON."""
import json, os, random, socket, struct, sys, time

host, port = sys.argv[1].rsplit(":", 1)
addr = (host, int(port))
until = time.monotonic() + float(sys.argv[2])
HEARTBEAT, MESSAGE = 0, 1
stats = {"connections": 0, "requests": 0, "replies": 0, "unread": 0,
         "clean": 0, "mid_body": 0, "mid_header": 0, "reset": 0, "no_read": 0,
         "errors": []}
rng = random.Random(1)


def frame(command, body):
    return struct.pack(">HBBI", 0x474F, 1, command, len(body)) + body


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def check_replies(sock, sent):
    for command, body in sent:
        magic, version, got, length = struct.unpack(">HBBI", recv_exact(sock, 8))
        reply = recv_exact(sock, length)
        want = body if command == HEARTBEAT else b"Server says: " + body
        if (magic, version, got) != (0x474F, 1, command) or reply != want:
            raise ValueError(f"wrong reply: command {got}, {length} bytes, "
                             f"wanted command {command}, {len(want)} bytes")
        stats["replies"] += 1


def one(kind):
    sent = [(rng.choice((HEARTBEAT, MESSAGE)), os.urandom(rng.randrange(0, 300)))
            for _ in range(rng.randrange(1, 9))]
    sock = socket.create_connection(addr, timeout=10)
    stats["connections"] += 1
    try:
        sock.sendall(b"".join(frame(c, b) for c, b in sent))
        stats["requests"] += len(sent)
        if kind == "no_read":  # close with the replies still coming
            stats["unread"] += len(sent)
            return
        if kind == "mid_body":  # a header and part of its body
            sock.sendall(frame(MESSAGE, b"x" * 100)[: 8 + rng.randrange(0, 100)])
        elif kind == "mid_header":
            sock.sendall(frame(HEARTBEAT, b"")[: rng.randrange(1, 8)])
        elif kind == "reset":  # RST instead of FIN, mid-frame
            sock.sendall(frame(MESSAGE, b"y" * 1000)[:500])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        check_replies(sock, sent)
    finally:
        sock.close()


kinds = ["clean", "mid_body", "mid_header", "reset", "no_read"]
i = 0
while time.monotonic() < until and len(stats["errors"]) < 10:
    kind = kinds[i % len(kinds)]
    i += 1
    try:
        one(kind)
        stats[kind] += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported
        stats["errors"].append(f"{kind}: {type(e).__name__}: {e}")
print(json.dumps(stats))
sys.exit(1 if stats["errors"] else 0)
PY
abrupt=$!
pids+=("$abrupt")

fail=()
wait "$long" || fail+=("long-lived bench failed: $(tail -n 3 "$out/long.err")")
wait "$churn" || fail+=("churn bench failed: $(tail -n 3 "$out/churn.err")")
wait "$abrupt" || fail+=("abrupt client failed: $(tail -n 5 "$out/abrupt.err") $(cat "$out/abrupt.json")")
touch "$out/load-done"
wait "$sampler" || true

alive=yes
kill -0 "$server" 2>/dev/null || { alive=no; fail+=("the server died"); }

# File descriptors: back to the baseline once the server has seen every close.
fds_end=$fds_baseline
if [ $alive = yes ]; then
  for _ in $(seq 50); do
    fds_end=$(fd_count)
    [ "$fds_end" -le "$fds_baseline" ] && break
    sleep 0.1
  done
  [ "$fds_end" -le "$fds_baseline" ] || fail+=("fds: $fds_end open at the end, baseline $fds_baseline")
fi
if grep -qi panick "$out/serve.log"; then fail+=("the server panicked: $(grep -i -m1 panick "$out/serve.log")"); fi

report=$(python3 - "$out" "$secs" <<'PY'
import json, os, statistics, sys

out, secs = sys.argv[1], sys.argv[2]


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


long, churn, abrupt = load("long.json"), load("churn.json"), load("abrupt.json")
with open(os.path.join(out, "rss")) as f:
    rss = [int(line) for line in f if line.strip().isdigit()]
requests = long.get("replies", 0) + churn.get("replies", 0) + abrupt.get("requests", 0)
checked = long.get("replies", 0) + churn.get("replies", 0) + abrupt.get("replies", 0)
conns = long.get("connections", 0) + churn.get("connections", 0) + abrupt.get("connections", 0)
print(f"requests        {requests}  (long-lived {long.get('replies', 0)}, churn {churn.get('replies', 0)}, "
      f"abrupt {abrupt.get('requests', 0)})")
print(f"replies checked {checked}  (the abrupt client left {abrupt.get('unread', 0)} unread on purpose)")
print(f"connections     {conns}  (long-lived {long.get('connections', 0)}, churn {churn.get('connections', 0)}, "
      f"abrupt {abrupt.get('connections', 0)}: " +
      ", ".join(f"{k} {abrupt.get(k, 0)}" for k in ("clean", "mid_body", "mid_header", "reset", "no_read")) + ")")
ok = True
if len(rss) < 6:
    print(f"RSS             only {len(rss)} samples")
    ok = False
else:
    third = len(rss) // 3
    first, last = rss[:third], rss[-third:]
    bound = max(max(first) * 20 // 100, 4096)
    growth = max(last) - max(first)
    ok = growth <= bound
    print(f"RSS             start {rss[0]} KiB, end {rss[-1]} KiB, max {max(rss)} KiB over {len(rss)} samples")
    print(f"RSS thirds      first: max {max(first)} median {int(statistics.median(first))} KiB; "
          f"last: max {max(last)} median {int(statistics.median(last))} KiB; "
          f"growth {growth:+d} KiB, bound +{bound} KiB (20 % or 4 MiB, whichever is larger)")
print("rss-ok" if ok else "rss-FAIL")
PY
) || fail+=("could not summarize: $report")

echo "${report%$'\n'*}"
echo "fds             baseline $fds_baseline, end $fds_end (after all clients closed)"
case $report in *rss-FAIL) fail+=("RSS grew beyond the bound") ;; esac

if [ ${#fail[@]} -eq 0 ]; then
  echo "soak: PASS"
else
  for reason in "${fail[@]}"; do echo "soak: $reason"; done
  echo "soak: FAIL"
  exit 1
fi
