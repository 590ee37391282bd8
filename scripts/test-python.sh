#!/usr/bin/env bash
# Builds the Python package into a venv and runs its tests: ruff and
# mypy --strict over the package, stubtest, then pytest (tests/python). Expects target/release/gopro and interop/go/bin/
# built (scripts/test.sh does that first); tests that need them skip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/target/py-venv"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q . pytest pytest-timeout pytest-asyncio mypy typing_extensions ruff prometheus_client

export GOPRO_BIN="${GOPRO_BIN:-$root/target/release/gopro}"
export GOPRO_GO_BIN="${GOPRO_GO_BIN:-$root/interop/go/bin}"

# The Python sources (the package, its loop thread, the tests) are linted
# and type-checked like the Rust ones.
"$venv/bin/python" -m ruff check python/gopro tests/python scripts/lib
"$venv/bin/python" -m mypy --strict python/gopro
"$venv/bin/python" -m mypy --strict scripts/lib/tls_heartbeat.py

# stubtest imports the installed package: run it away from the source tree.
(cd "$(mktemp -d)" && "$venv/bin/python" -m mypy.stubtest gopro._gopro)

"$venv/bin/python" -m pytest tests/python -p no:cacheprovider "$@"
