#!/usr/bin/env bash
# Python benchmarks (not part of the tests): gopro.Decoder, gopro.Client,
# gopro.AsyncClient and gopro.Server against pure-Python equivalents.
# Prints a Markdown table of ratios. Usage: scripts/bench-python.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/py-venv"

cargo build --release -p gopro --features cli
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q .
GOPRO_BIN="$root/target/release/gopro" "$venv/bin/python" scripts/bench_python.py "$@"
