#!/usr/bin/env bash
# The Rust client shared by many callers (`gopro bench --callers`), against
# `gopro serve` on one connection, in rounds; each round runs every variant
# once, so a slow spell of the machine weighs on all of them:
# - 64 tasks sharing the connection, one request at a time each, vs one task
#   (target: >= 10x) and vs the explicit pipeline at depth 64 on the same
#   connection (target: >= 0.9x).
# Prints a Markdown table: the median of the rounds' ratios, and in brackets
# the lowest and highest round.
# Usage: scripts/bench-shared.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/c-lib.sh
. scripts/c-lib.sh
rounds=${1:-5}
seconds=${2:-3}
cargo build --release -p gopro --features cli
gopro=target/release/gopro
out=$(mktemp -d)
"$gopro" serve --listen 127.0.0.1:0 2>"$out/serve.log" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true; rm -rf "$out"' EXIT
addr=$(wait_for "$out/serve.log" 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p')
[ -n "$addr" ] || { echo "gopro serve did not start" >&2; exit 1; }

rate() { # replies/s of one `gopro bench` run on one connection
  "$gopro" bench --addr "$addr" --conns 1 --duration "${seconds}s" --json "$@" |
    sed 's/.*"replies_per_sec":\([0-9.]*\).*/\1/'
}
for _ in $(seq "$rounds"); do
  echo "$(rate --callers 64) $(rate --pipeline 64) $(rate --callers 1)"
done >"$out/rounds"

awk '
function median(a, n,   i, j, t) {
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ n++; c[n] = $1; p[n] = $2; o[n] = $3; rp[n] = $1 / $2; ro[n] = $1 / $3 }
END {
  printf "| work | gopro | baseline | ratio |\n|---|---:|---:|---:|\n"
  printf "| 64 tasks sharing one `Client`, a request at a time each | %.0f k replies/s | the explicit pipeline at depth 64 (`send`/`recv`): %.0f k replies/s | **%.2f×** (%.2f–%.2f) |\n", median(c, n) / 1e3, median(p, n) / 1e3, median(rp, n), rp[1], rp[n]
  printf "| 64 tasks sharing one `Client`, a request at a time each | %.0f k replies/s | one task: %.0f k replies/s | **%.1f×** (%.1f–%.1f) |\n", median(c, n) / 1e3, median(o, n) / 1e3, median(ro, n), ro[1], ro[n]
}' "$out/rounds"
