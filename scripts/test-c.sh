#!/usr/bin/env bash
# Tests of the C ABI (gopro-c): header freshness, C and C++ tests (gopro.h
# and the C++ API gopro.hpp) against the real library, under ASan+UBSan and
# Valgrind, the codec-only build, and the install for pkg-config and CMake.
# The TLS tests use certificates made by scripts/tls-certs.sh and the Go
# peer's TLS server ($GOPRO_GO_BIN, else interop/go/bin, built if missing).
# Installs what it needs first.
# Usage: scripts/test-c.sh   (run by scripts/test.sh after target/release/gopro is built)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/c-lib.sh
. scripts/c-lib.sh

step() { printf '\n==> c: %s\n' "$*"; }

CBINDGEN_VERSION=0.29.4
if [ "$(cbindgen --version 2>/dev/null || true)" != "cbindgen $CBINDGEN_VERSION" ]; then
  step "installing cbindgen $CBINDGEN_VERSION"
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked
fi
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null || missing+=(gcc)
command -v c++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update && apt-get install -y "${missing[@]}"
fi

out="$root/target/c-tests"
rm -rf "$out"
mkdir -p "$out"
serve_pid=""
proxy_pids=()
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; fi
  for pid in ${proxy_pids[@]+"${proxy_pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

step "TLS test certificates, the Go TLS server"
certs="$out/tls"
scripts/tls-certs.sh "$certs"
mkdir -p "$out/tls-work"
go_bin="${GOPRO_GO_BIN:-$root/interop/go/bin}"
if [ ! -x "$go_bin/server" ]; then
  (cd interop/go && go build -o bin/ ./cmd/...)
  go_bin="$root/interop/go/bin"
fi

step "include/gopro.h is what cbindgen $CBINDGEN_VERSION generates"
cbindgen --quiet --crate gopro-c --output "$out/gopro.h"
if ! diff -u include/gopro.h "$out/gopro.h"; then
  echo "include/gopro.h is stale: run cbindgen --crate gopro-c --output include/gopro.h" >&2
  exit 1
fi

step "build libgopro (release) and the Rust peer"
cargo build --release -p gopro-c --lib --example rust_peer
lib="$out/lib"
stage_libgopro "$root/target/release" "$lib"
gopro="${GOPRO_BIN:-$root/target/release/gopro}"
if [ ! -x "$gopro" ]; then
  cargo build --release -p gopro --features cli
fi

warn=(-Wall -Wextra -Werror -pedantic -I"$root/include")
static_libs=(-lpthread -ldl -lm -lrt -lutil -lgcc_s)
c_tests=(test_vectors test_codec test_client test_shared test_restart test_server test_faults test_tls
  test_metrics test_proxy)
cpp_tests=(test_cpp test_hpp test_hpp_tls)
src="$root/gopro-c/tests/c"

step "codec-only build (no runtime): the codec tests linked against it"
cargo build --release -p gopro-c --lib --no-default-features --target-dir "$root/target/c-codec-only"
codec_lib="$out/codec-only"
stage_libgopro "$root/target/c-codec-only/release" "$codec_lib"
if nm -D --defined-only "$codec_lib/libgopro.so" | grep -q 'gopro_client_\|gopro_server_'; then
  echo "the codec-only library exports client or server functions" >&2
  exit 1
fi
for t in test_vectors test_codec; do
  cc -std=c11 "${warn[@]}" -DGOPRO_NO_RUNTIME -o "$out/${t}_codec_only" "$src/$t.c" \
    "$codec_lib/libgopro.a" "${static_libs[@]}"
done
c++ -std=c++17 "${warn[@]}" -DGOPRO_NO_RUNTIME -o "$out/decode_codec_only" examples/cpp/decode.cpp \
  "$codec_lib/libgopro.a" "${static_libs[@]}"
"$out/test_vectors_codec_only" tests/vectors/frames.txt
"$out/test_codec_codec_only"
"$out/decode_codec_only" >/dev/null

step "compile the C and C++ tests and examples (shared library)"
rpath=(-L"$lib" -lgopro -Wl,-rpath,"$lib" -lpthread)
for t in "${c_tests[@]}"; do
  cc -std=c11 "${warn[@]}" -g -o "$out/$t" "$src/$t.c" "${rpath[@]}"
done
for t in "${cpp_tests[@]}"; do
  c++ -std=c++17 "${warn[@]}" -g -o "$out/$t" "$src/$t.cpp" "${rpath[@]}"
done
cc -std=c11 "${warn[@]}" -o "$out/echo_client" examples/c/echo_client.c "${rpath[@]}"
for e in decode server; do
  c++ -std=c++17 "${warn[@]}" -o "$out/$e" "examples/cpp/$e.cpp" "${rpath[@]}"
done

step "compile the same tests with ASan+UBSan (static library)"
san=(-g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
for t in "${c_tests[@]}"; do
  cc -std=c11 "${warn[@]}" "${san[@]}" -o "$out/${t}_asan" "$src/$t.c" "$lib/libgopro.a" \
    "${static_libs[@]}"
done
for t in "${cpp_tests[@]}"; do
  c++ -std=c++17 "${warn[@]}" "${san[@]}" -o "$out/${t}_asan" "$src/$t.cpp" \
    "$lib/libgopro.a" "${static_libs[@]}"
done

step "start gopro serve"
"$gopro" serve --listen 127.0.0.1:0 2>"$out/serve.log" &
serve_pid=$!
addr=$(wait_for "$out/serve.log" 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p')
if [ -z "$addr" ]; then
  cat "$out/serve.log" >&2
  echo "gopro serve did not start" >&2
  exit 1
fi
echo "gopro serve on $addr"

step "start a gopro proxy per fault in front of it"
# FAULT,DIRECTION: test_faults gets FAULT,DIRECTION,ADDR for each.
faults=(none,both chunk1,both delay=10ms,both throttle=4000000,both
  reset-after=100000,up reset-after=25,down stop-after=100000,both stop-after=25,down
  half-close,down half-close=25,down half-close,up)
fault_args=()
for spec in "${faults[@]}"; do
  n=${#proxy_pids[@]}
  # Created here: the background job opens it only once it has forked.
  : >"$out/proxy-$n.out"
  "$gopro" proxy --listen 127.0.0.1:0 --upstream "$addr" --fault "${spec%,*}" \
    --direction "${spec#*,}" >"$out/proxy-$n.out" 2>"$out/proxy-$n.log" &
  proxy_pids+=($!)
  proxy_addr=$(wait_for "$out/proxy-$n.out" 's/^listening on //p')
  if [ -z "$proxy_addr" ]; then
    cat "$out/proxy-$n.log" >&2
    echo "gopro proxy --fault ${spec%,*} did not start" >&2
    exit 1
  fi
  fault_args+=("$spec,$proxy_addr")
done

export GOPRO_TEST_STATUS_LOG="$out/statuses.log"
# Runs every test binary with the suffix $1, under the command in $2...
run_all() {
  local suffix=$1
  shift
  "$@" "$out/test_vectors$suffix" tests/vectors/frames.txt
  "$@" "$out/test_codec$suffix"
  "$@" "$out/test_client$suffix" "$addr"
  "$@" "$out/test_shared$suffix" "$addr"
  "$@" "$out/test_restart$suffix" "$gopro"
  "$@" "$out/test_faults$suffix" "${fault_args[@]}"
  "$@" "$out/test_server$suffix"
  "$@" "$out/test_metrics$suffix"
  "$@" "$out/test_proxy$suffix"
  "$@" "$out/test_cpp$suffix"
  "$@" "$out/test_hpp$suffix" "$gopro"
  "$@" "$out/test_tls$suffix" "$gopro" "$go_bin/server" "$certs" "$root/scripts/lib" "$out/tls-work"
  "$@" "$out/test_hpp_tls$suffix" "$certs" "$out/tls-work"
}

step "C and C++ tests"
run_all ""
"$out/echo_client" "$addr" "from the example" | grep -qx "1 Server says: from the example"
"$out/decode" | grep -qx 'frame: command 1, 16 byte body "Hello TCP World!"'
[ "$("$out/server")" = $'16 HELLO\nERROR nothing to shout' ]

step "the C server against the Rust client"
mkfifo "$out/server.in"
"$out/test_server" --serve <"$out/server.in" >"$out/server.out" &
server_pid=$!
exec {server_stdin}>"$out/server.in" # the server serves until this closes
port=$(wait_for "$out/server.out" 's/^PORT //p')
[ -n "$port" ] || { echo "the C server did not start" >&2; exit 1; }
"$root/target/release/examples/rust_peer" "127.0.0.1:$port"
if "$gopro" send --help >/dev/null 2>&1; then
  "$gopro" send --addr "127.0.0.1:$port" --command 16 "from gopro send" | grep -q "c:from gopro send"
  if "$gopro" send --addr "127.0.0.1:$port" --command 17 "x" >/dev/null 2>&1; then
    echo "gopro send should fail on the C handler's ERROR" >&2
    exit 1
  fi
  echo "gopro send got the C server's replies"
fi
exec {server_stdin}>&-
wait "$server_pid"
cat "$out/server.out"

step "ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_all _asan

step "Valgrind"
run_all "" valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible \
  --suppressions="$src/valgrind.supp"

step "every status reached on purpose"
# IO_ERROR needs an operating-system failure other than a closed or reset
# connection, and PANIC (19) a bug: neither can be provoked from outside.
# INVALID_STATE (18) is no longer returned (NOTHING_IN_FLIGHT and
# BLOCKING_IN_RUNTIME took its two cases).
for s in $(seq 1 25); do
  case "$s" in 16|18|19) continue ;; esac
  grep -qx "$s" "$out/statuses.log" || { echo "status $s was never reached" >&2; exit 1; }
done

step "install with pkg-config, build an application, run it"
prefix="$out/prefix"
scripts/install-c.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 "${warn[@]}" -o "$out/app" examples/c/echo_client.c $(pkg-config --cflags --libs gopro)
LD_LIBRARY_PATH="$prefix/lib" "$out/app" "$addr" "installed" | grep -qx "1 Server says: installed"
# shellcheck disable=SC2046
cc -std=c11 "${warn[@]}" -o "$out/app_static" examples/c/echo_client.c \
  $(pkg-config --cflags gopro) "$prefix/lib/libgopro.a" $(pkg-config --libs-only-other --static gopro) \
  $(pkg-config --static --libs gopro | tr ' ' '\n' | grep -v -- '-lgopro' | paste -sd ' ' -)
"$out/app_static" "$addr" "static" | grep -qx "1 Server says: static"

step "CMake: build examples/cmake against the installed package, moved elsewhere"
# The package finds its files from where it lies: it names no path.
if grep -rq "$prefix" "$prefix/lib/cmake/gopro"; then
  echo "the CMake package names the install prefix $prefix" >&2
  exit 1
fi
moved="$out/moved-prefix"
mv "$prefix" "$moved"
cmake -S examples/cmake -B "$out/cmake" --log-level=WARNING -DCMAKE_PREFIX_PATH="$moved" \
  -DCMAKE_C_FLAGS="${warn[*]}" -DCMAKE_CXX_FLAGS="${warn[*]}"
cmake --build "$out/cmake" -j 2 -- --quiet
for p in codec_c codec_c_static server_cpp server_cpp_static; do
  "$out/cmake/$p"
done
# gopro::gopro links the shared library by name, gopro::gopro_static none.
readelf -d "$out/cmake/server_cpp" | grep -q 'NEEDED.*\[libgopro\.so\]'
if readelf -d "$out/cmake/server_cpp_static" | grep -q 'libgopro'; then
  echo "server_cpp_static needs libgopro.so" >&2
  exit 1
fi
# The version file: this version is found exactly, the next minor one
# (which may break the 0.x API) is not.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}
minor=$(echo "$version" | cut -d. -f2)
mkdir -p "$out/cmake-version"
cat >"$out/cmake-version/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.14)
project(gopro_version NONE)
find_package(gopro $major.$((minor + 1)) CONFIG QUIET)
if(gopro_FOUND)
  message(FATAL_ERROR "find_package(gopro $major.$((minor + 1))) accepted gopro \${gopro_VERSION}")
endif()
find_package(gopro $version EXACT CONFIG REQUIRED)
CMAKE
cmake -S "$out/cmake-version" -B "$out/cmake-version/build" --log-level=WARNING \
  -DCMAKE_PREFIX_PATH="$moved" >/dev/null

step "all C tests passed"
