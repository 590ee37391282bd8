# Shell functions shared by the scripts that build and run the C library;
# sourced, not run.
#
# Cargo builds gopro-c as `libgopro_c.{a,so}` (its Rust library is named
# gopro_c, as the core already has the name gopro and gopro-c is an rlib
# too, for the fuzz crate); C programs link `libgopro`.

# stage_libgopro DIR DEST: copies DIR/libgopro_c.{a,so} to
# DEST/libgopro.{a,so}.
stage_libgopro() {
  mkdir -p "$2"
  cp "$1/libgopro_c.a" "$2/libgopro.a"
  cp "$1/libgopro_c.so" "$2/libgopro.so"
}

# wait_for FILE SED_SCRIPT: prints the first line that `sed -n SED_SCRIPT`
# makes of FILE, waiting up to 10 s for it; prints nothing if none comes.
wait_for() {
  local found=""
  for _ in $(seq 100); do
    found=$(sed -n "$2" "$1" | head -n 1)
    [ -n "$found" ] && break
    sleep 0.1
  done
  printf '%s' "$found"
}
