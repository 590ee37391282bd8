#!/usr/bin/env bash
# Builds the C library in release mode and installs it for C and C++ users:
#   PREFIX/lib/libgopro.{so,a}, PREFIX/include/gopro.{h,hpp},
#   PREFIX/lib/pkgconfig/gopro.pc,
#   PREFIX/lib/cmake/gopro/goproConfig{,Version}.cmake (needs cmake)
# Usage: scripts/install-c.sh PREFIX
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs gopro)
# or, in CMake: find_package(gopro 0.1 CONFIG REQUIRED) with
# CMAKE_PREFIX_PATH=PREFIX, and target gopro::gopro or gopro::gopro_static.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
mkdir -p "$1"
prefix=$(cd "$1" && pwd)

# What libgopro.a needs from the system, as rustc reports it; this also
# builds the static library.
native=$(cargo rustc --release -p gopro-c --lib --crate-type staticlib -- \
  --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1 |
  tr ' ' '\n' | grep -E '^-(l|framework)' | paste -sd ' ' -)
if [ -z "$native" ]; then
  echo "install-c.sh: rustc did not report the native static libraries" >&2
  exit 1
fi
cargo build --release -p gopro-c

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 include/gopro.h "$prefix/include/gopro.h"
install -m 644 include/gopro.hpp "$prefix/include/gopro.hpp"
# Cargo names them after the Rust library, gopro_c (see scripts/c-lib.sh).
install -m 755 target/release/libgopro_c.so "$prefix/lib/libgopro.so"
install -m 644 target/release/libgopro_c.a "$prefix/lib/libgopro.a"
cat > "$prefix/lib/pkgconfig/gopro.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: gopro
Description: The GoPro binary TCP protocol: codec, blocking client and server (C ABI)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lgopro
Libs.private: $native
PC
if command -v cmake >/dev/null; then
  cmake -DDEST="$prefix/lib/cmake/gopro" -DVERSION="$version" -DNATIVE="$native" \
    -DPOINTER_SIZE=$(($(getconf LONG_BIT) / 8)) -P gopro-c/cmake/install-config.cmake
else
  echo "install-c.sh: cmake not found; the CMake package (lib/cmake/gopro) is not installed" >&2
fi
echo "installed gopro $version into $prefix"
