#!/usr/bin/env bash
# The codec without std: builds the `gopro` crate for a bare-metal target
# (thumbv7em-none-eabihf, a Cortex-M4F), so that any use of std outside the
# `std` feature fails here; builds the two firmware images of
# examples/no_std and holds their flash size to a budget; runs the codec's
# tests on the host without std, with and without `alloc`.
# Usage: scripts/test-nostd.sh   (run by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> no_std: %s\n' "$*"; }

target=thumbv7em-none-eabihf
# Flash budgets (text + rodata) of the images, about twice what they take
# (README.md, "The codec on a device"): a change that drags in core::fmt or
# a panic path per call shows up here.
slices_budget=6144
frames_budget=14336

rustup target add "$target"
# `size` comes with binutils, which the host linker (cc) needs anyway.
command -v size >/dev/null || { echo "no_std: size (binutils) not found" >&2; exit 1; }

step "the crate for $target: no features, then alloc"
cargo build -p gopro --no-default-features --target "$target"
cargo build -p gopro --no-default-features --features alloc --target "$target"
cargo clippy -p gopro --no-default-features --features alloc -- -D warnings

step "examples/no_std: lints, release images, their size"
example=(--manifest-path examples/no_std/Cargo.toml --release --target "$target" --target-dir "$root/target")
(cd examples/no_std && cargo fmt -- --check)
cargo clippy "${example[@]}" --bin slices -- -D warnings
cargo clippy "${example[@]}" --features alloc --bin frames -- -D warnings
cargo build "${example[@]}" --bin slices
cargo build "${example[@]}" --features alloc --bin frames
images="$root/target/$target/release"
size "$images/slices" "$images/frames"
check_size() { # image budget
  local text
  text=$(size "$images/$1" | awk 'NR == 2 { print $1 }')
  if [ "$text" -gt "$2" ]; then
    echo "no_std: $1 takes $text bytes of flash, over its budget of $2" >&2
    exit 1
  fi
  echo "$1: $text bytes of flash (budget $2)"
}
check_size slices "$slices_budget"
check_size frames "$frames_budget"

step "the codec's tests on the host: no_std without and with alloc"
cargo test -p gopro --no-default-features --lib
cargo test -p gopro --no-default-features --features alloc --lib --test vectors --test proptest
