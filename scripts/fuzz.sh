#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, on the stable
# toolchain (cargo-fuzz with `-s none`: no sanitizer, panics still caught),
# starting from the committed seed corpora. Fails on any crash; prints the
# executions per target at the end. Installs cargo-fuzz if missing.
# Usage: scripts/fuzz.sh [SECONDS]   (per target; default $FUZZ_SECONDS or 60)
# Crash inputs are left in fuzz/artifacts/<target>/; replay one with
#   cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${FUZZ_SECONDS:-60}}
# libFuzzer reads -max_total_time=0 as "no limit": at least 1 second.
case "$seconds" in
  '' | *[!0-9]* | 0 | 0*) echo "usage: scripts/fuzz.sh [SECONDS], SECONDS >= 1" >&2; exit 2 ;;
esac
targets=(decode decode_split c_decoder session)

step() { printf '\n==> fuzz: %s\n' "$*"; }

if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.'; then
  step "installing cargo-fuzz 0.13"
  cargo install cargo-fuzz --version '^0.13' --locked
fi

# The fuzz crate is outside the workspace, so the workspace's fmt and
# clippy runs do not see it.
step "format and lints of the fuzz crate"
(cd fuzz && cargo fmt -- --check)
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

step "build the fuzz targets"
cargo fuzz build -s none

# Runs add what they find to their first corpus directory: run from a copy
# of the committed corpus, so that the checkout stays clean.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# libFuzzer runs one process per target, on one core: the targets run side
# by side, as many at a time as there are cores (same time per target).
jobs=$(nproc 2>/dev/null || echo 1)
run_target() { # target; writes $work/$t.log and $work/$t.status
  local t=$1 status=0
  mkdir -p "$work/corpus/$t"
  cp -R "fuzz/corpus/$t/." "$work/corpus/$t/"
  cargo fuzz run -s none "$t" "$work/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=60 -print_final_stats=1 >"$work/$t.log" 2>&1 || status=$?
  echo "$status" >"$work/$t.status"
}
step "${targets[*]} for ${seconds}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait

summary=()
failed=()
for t in "${targets[@]}"; do
  log="$work/$t.log"
  status=$(cat "$work/$t.status" 2>/dev/null || echo missing)
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)
  if [ "$status" != 0 ] || [ -z "$runs" ]; then
    tail -n 60 "$log" >&2
    failed+=("$t")
    summary+=("$(printf '%-13s FAILED (exit %s); inputs in fuzz/artifacts/%s/' "$t" "$status" "$t")")
  else
    summary+=("$(printf '%-13s %s' "$t" "$runs")")
  fi
done

step "summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
