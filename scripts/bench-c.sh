#!/usr/bin/env bash
# C ABI benchmarks, each a ratio against the Rust core in the same run:
# - decoding 1,000,000 frames with 32-byte bodies through the C decoder
#   handle vs through gopro::Decoder directly (target: FFI cost <= 20%);
# - 100,000 pipelined MESSAGE requests (64 in flight) against `gopro serve`
#   through the C client vs the Rust blocking client (target: >= 90%);
# - one client shared: 8 threads calling gopro_client_request vs one thread
#   (target: >= 3x), and gopro_client_submit from one thread with 64 in
#   flight vs the Rust client's pipeline at the same depth (target: >= 0.8x).
# Usage: scripts/bench-c.sh   (prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/c-lib.sh
. scripts/c-lib.sh
N=${N:-100000}
DEPTH=${DEPTH:-64}

cargo build --release -p gopro --features cli
cargo build --release -p gopro-c --lib --example bench_decode --example bench_client
out="$root/target/c-bench"
mkdir -p "$out"
lib="$root/target/release"
stage_libgopro "$lib" "$out/lib"
for b in bench_decode bench_client bench_shared; do
  extra=()
  [ "$b" = bench_shared ] && extra=(-lpthread)
  cc -std=c11 -O2 -I"$root/include" -o "$out/$b" "gopro-c/bench/$b.c" \
    -L"$out/lib" -lgopro -Wl,-rpath,"$out/lib" "${extra[@]}"
done

"$lib/gopro" serve --listen 127.0.0.1:0 2>"$out/serve.log" &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
addr=$(wait_for "$out/serve.log" 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p')
[ -n "$addr" ] || { echo "gopro serve did not start" >&2; exit 1; }

value() { awk '{print $2}'; }
best() { # best of 3 runs of a client bench
  local best=0 v
  for _ in 1 2 3; do
    v=$("$@" | value)
    best=$(awk -v a="$best" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
  done
  echo "$best"
}
rust_out=$("$lib/examples/bench_decode")
rust_dec=$(echo "$rust_out" | sed -n 's/^rust_decode_frames_per_s //p')
rust_inp=$(echo "$rust_out" | sed -n 's/^rust_in_place_frames_per_s //p')
c_out=$("$out/bench_decode")
c_dec=$(echo "$c_out" | sed -n 's/^c_decode_frames_per_s //p')
c_many=$(echo "$c_out" | sed -n 's/^c_decode_many_frames_per_s //p')
rust_cli=$(best "$lib/examples/bench_client" "$addr" "$N" "$DEPTH")
c_cli=$(best "$out/bench_client" "$addr" "$N" "$DEPTH")
c_one=$(best "$out/bench_shared" "$addr" "$((N / 4))" threads 1)
c_eight=$(best "$out/bench_shared" "$addr" "$N" threads 8)
c_submit=$(best "$out/bench_shared" "$addr" "$N" submit "$DEPTH")

awk -v rd="$rust_dec" -v ri="$rust_inp" -v cd="$c_dec" -v cm="$c_many" -v rc="$rust_cli" -v cc="$c_cli" -v n="$N" -v d="$DEPTH" -v c1="$c_one" -v c8="$c_eight" -v cs="$c_submit" 'BEGIN {
  printf "| work | C ABI | Rust core | ratio |\n|---|---:|---:|---:|\n"
  printf "| decode 1,000,000 frames, 32 B bodies, vs the core'"'"'s decode() (owned bodies) | %.1f M frames/s | %.1f M frames/s | **%.2f** |\n", cd/1e6, rd/1e6, cd/rd
  printf "| decode 1,000,000 frames, 32 B bodies, vs the core'"'"'s decode_in_place() (same work) | %.1f M frames/s | %.1f M frames/s | **%.2f** |\n", cd/1e6, ri/1e6, cd/ri
  printf "| the same with gopro_decoder_next_many (256 frames a call) vs decode_in_place() | %.1f M frames/s | %.1f M frames/s | **%.2f** |\n", cm/1e6, ri/1e6, cm/ri
  printf "| %d pipelined requests, %d in flight, vs gopro serve | %.0f k replies/s | %.0f k replies/s | **%.2f** |\n", n, d, cc/1e3, rc/1e3, cc/rc
  printf "| gopro_client_submit from one thread, %d in flight, vs the Rust pipeline at that depth | %.0f k replies/s | %.0f k replies/s | **%.2f** |\n", d, cs/1e3, rc/1e3, cs/rc
  printf "| 8 threads sharing one client (gopro_client_request) vs one thread | %.0f k replies/s | %.0f k replies/s (1 thread) | **%.2f** |\n", c8/1e3, c1/1e3, c8/c1
}'
