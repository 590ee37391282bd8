#!/usr/bin/env bash
# Runs every test in every language. Installs what it needs first, so it
# works on a fresh machine. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Each step says how long the run has taken so far, to see where CI time goes.
step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

step "Rust: format and lints"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
# Features add code and remove none: the command's features cover the
# default build's code, in one pass over the workspace.
cargo clippy --workspace --all-targets --features gopro/cli -- -D warnings
cargo clippy -p gopro --no-default-features -- -D warnings

step "Rust: build the gopro command and the Go peer used by the tests"
cargo build --release -p gopro --features cli
(cd interop/go && go vet ./... && go build -o bin/ ./cmd/...)

step "Go: interop peer"
(cd interop/go && go test ./...)

step "TLS: test certificates, and the Go, openssl and CPython TLS peers against each other"
scripts/test-tls-certs.sh

step "Rust: tests"
# systemd-socket-activate (Debian's systemd package) for the socket-activation test.
command -v systemd-socket-activate >/dev/null ||
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y systemd; }
export GOPRO_BIN="$root/target/release/gopro"
export GOPRO_GO_BIN="$root/interop/go/bin"
cargo test --workspace --all-targets --features gopro/cli
cargo test --workspace --doc

step "Rust: the crate as published: its documentation and package"
RUSTDOCFLAGS="-D warnings" cargo doc -p gopro --no-deps --all-features
cargo publish --dry-run -p gopro --allow-dirty

# The no_std codec, the C and Python layers have their own scripts; each
# installs what it needs.
for part in nostd c python; do
  if [ -x "scripts/test-$part.sh" ]; then
    step "$part"
    "scripts/test-$part.sh"
  fi
done
step "Deploy: three gopro serve behind HAProxy, a rolling restart and a SIGKILL under load"
scripts/test-deploy.sh
step "Wireshark dissector"; scripts/test-wireshark.sh
step "Soak: 15 s of churn and pipelined load against gopro serve"; scripts/soak.sh 15
step "Fuzz: 45 s per target from the seed corpora in fuzz/corpus"; scripts/fuzz.sh 45
