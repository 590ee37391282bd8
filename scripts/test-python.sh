#!/usr/bin/env bash
# Tests the Python package as it is shipped: the abi3 wheel, built once, is
# installed into a fresh venv and everything runs there with no Rust
# toolchain on PATH: ruff and mypy --strict over the sources, stubtest over
# the installed package, then pytest (tests/python), which checks that it
# imports the installed package. The sdist is built too, its metadata and the
# wheel's are checked by twine, and it is compiled by pip into another fresh
# venv, where a frame goes through the installed codec.
# Expects target/release/gopro and interop/go/bin/ built (scripts/test.sh
# does that first); tests that need them skip otherwise.
# Usage: scripts/test-python.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=$(command -v python3)
build_venv="$root/target/py-build"
test_venv="$root/target/py-test"
sdist_venv="$root/target/py-sdist"
dist="$root/target/py-dist"
# stubtest and the sdist smoke test run in here, away from the source tree.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

note() { printf -- '--> %s\n' "$*"; }
fail() { printf 'test-python.sh: %s\n' "$*" >&2; exit 1; }

# --- Build the wheel (once) and the sdist, with the maturin that pip would
# use (the range of pyproject.toml's build-system).
if [ ! -x "$build_venv/bin/python" ]; then
  "$py" -m venv "$build_venv"
fi
"$build_venv/bin/python" -m pip install -q --upgrade pip "maturin>=1.16,<2" twine
rm -rf "$dist"
start=$SECONDS
"$build_venv/bin/maturin" build --release --out "$dist/wheel"
"$build_venv/bin/maturin" sdist --out "$dist/sdist"
note "wheel and sdist built in $((SECONDS - start)) s"
wheels=("$dist"/wheel/gopro-*-cp39-abi3-*.whl)
sdists=("$dist"/sdist/gopro-*.tar.gz)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || fail "expected one abi3 wheel in $dist/wheel"
[ "${#sdists[@]}" -eq 1 ] && [ -f "${sdists[0]}" ] || fail "expected one sdist in $dist/sdist"
note "wheel: ${wheels[0]##*/}"
# The metadata an index would show (README rendering included) is valid.
"$build_venv/bin/twine" check --strict "${wheels[0]}" "${sdists[0]}"

# --- The test environment: PATH without any directory that holds cargo,
# rustc or rustup, so nothing in it can build Rust.
no_rust_path=""
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [ -n "$dir" ] || continue
  if [ -e "$dir/cargo" ] || [ -e "$dir/rustc" ] || [ -e "$dir/rustup" ]; then
    continue
  fi
  no_rust_path="${no_rust_path:+$no_rust_path:}$dir"
done
rm -rf "$test_venv"
"$py" -m venv "$test_venv"
test_env=(
  env -u VIRTUAL_ENV -u PYTHONPATH "PATH=$test_venv/bin:$no_rust_path"
  "GOPRO_BIN=${GOPRO_BIN:-$root/target/release/gopro}"
  "GOPRO_GO_BIN=${GOPRO_GO_BIN:-$root/interop/go/bin}"
)
# Exits 0 only if the shell ran and found neither (a broken env fails too).
"${test_env[@]}" sh -c 'for t in cargo rustc; do
    if command -v "$t"; then exit 1; fi
  done' || fail "cargo or rustc is reachable in the test environment (printed above)"
tpy=("${test_env[@]}" "$test_venv/bin/python")

"${tpy[@]}" -m pip install -q --upgrade pip
"${tpy[@]}" -m pip install -q "${wheels[0]}" pytest pytest-timeout pytest-asyncio mypy \
  typing_extensions ruff prometheus_client
site=$("${tpy[@]}" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')
# conftest.py refuses to run unless gopro and its native module come from here.
export GOPRO_INSTALLED_IN="$site"

# The Python sources (the package, its loop thread, the tests) are linted
# and type-checked like the Rust ones.
"${tpy[@]}" -m ruff check python/gopro tests/python scripts/lib
"${tpy[@]}" -m mypy --strict python/gopro
"${tpy[@]}" -m mypy --strict scripts/lib/tls_heartbeat.py

# stubtest and pytest run against the installed package; stubtest runs away
# from the source tree, and conftest.py checks where pytest's gopro is from.
(cd "$scratch" && "${tpy[@]}" -m mypy.stubtest gopro._gopro)
"${tpy[@]}" -m pytest tests/python -p no:cacheprovider "$@"

# --- The sdist compiles (with Rust) and works. It is unpacked and its files
# made newer than anything built, so that cargo compiles gopro and gopro-py
# from the sdist's own files (checked below), while the dependencies, the
# same versions with the same features, come from the wheel's build in
# target/. No pip cache: a wheel cached by an earlier run would skip the
# compilation this checks.
rm -rf "$sdist_venv"
"$py" -m venv "$sdist_venv"
start=$SECONDS
sdist_src="$scratch/sdist-src"
mkdir -p "$sdist_src"
tar -xzf "${sdists[0]}" -C "$sdist_src"
find "$sdist_src" -type f -exec touch {} +
CARGO_TARGET_DIR="$root/target" "$sdist_venv/bin/python" -m pip install -v --no-cache-dir \
  "$sdist_src"/gopro-* >"$dist/sdist-install.log" 2>&1 \
  || { tail -40 "$dist/sdist-install.log"; fail "the sdist did not install"; }
for crate in gopro gopro-py; do
  grep -q "Compiling $crate v.*$sdist_src" "$dist/sdist-install.log" \
    || fail "pip did not compile $crate from the sdist (see $dist/sdist-install.log)"
done
note "sdist compiled and installed in $((SECONDS - start)) s"
sdist_site=$("$sdist_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')
(cd "$scratch" && "$sdist_venv/bin/python" - "$sdist_site" <<'EOF'
import sys
from pathlib import Path

import gopro

assert Path(gopro._gopro.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), gopro.__file__
wire = gopro.encode(gopro.Command.MESSAGE, b"from the sdist")
assert wire[:8] == bytes.fromhex("474f01010000000e"), wire.hex()
assert gopro.decode(wire) == gopro.Frame(gopro.Command.MESSAGE, b"from the sdist")
decoder = gopro.Decoder()
decoder.feed(wire[:3])
assert decoder.frames() == []
decoder.feed(wire[3:])
assert [f.body for f in decoder.frames()] == [b"from the sdist"]
print("sdist smoke: encode/decode round trip OK with", gopro.__version__)
EOF
)
