#!/usr/bin/env bash
# The server benchmark: gopro serve against three baselines, server pinned to
# one core, load generator to the other. Options go to scripts/bench/server.py.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { apt-get update && apt-get install -y util-linux; }
cargo build --release -p gopro --features cli --bins --examples
(cd interop/go && go build -o bin/ ./cmd/...)
# (--tls makes its certificates with scripts/tls-certs.sh.)
exec python3 scripts/bench/server.py "$@"
