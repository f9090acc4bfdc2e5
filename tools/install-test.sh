#!/bin/sh
# install-test.sh — installs fieldlm into a temporary prefix and uses it as an
# application developer would: the shared library exports only flm_ names, the
# pkg-config file is enough to build examples/simple.c (shared and static), the
# program runs on the bundled model, and `make uninstall` removes every file.
# Run by `make test-install` (and .ci/run). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
tmp=$(mktemp -d /tmp/fieldlm-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/    /' "$2" | tail -n 20; }

prefix=$tmp/prefix
if make -s install PREFIX="$prefix" BUILD="$BUILD" >"$tmp/install.log" 2>&1; then ok "make install PREFIX=$prefix"
else bad "make install" "$tmp/install.log"; echo "$pass passed, $fail failed"; exit 1; fi

for f in bin/fieldlm lib/libfieldlm.a lib/libfieldlm.so lib/libfieldlm.so.0 include/fieldlm.h lib/pkgconfig/fieldlm.pc; do
  if [ -e "$prefix/$f" ]; then ok "installed $f"; else bad "installed $f"; fi
done

soname=$(objdump -p "$prefix/lib/libfieldlm.so" 2>/dev/null | awk '/SONAME/ {print $2}')
if [ "$soname" = libfieldlm.so.0 ]; then ok "soname is libfieldlm.so.0"; else bad "soname is libfieldlm.so.0 (got '$soname')"; fi

nm -D --defined-only "$prefix/lib/libfieldlm.so" | awk '{print $NF}' | sort -u >"$tmp/exports"
grep -v '^flm_' "$tmp/exports" >"$tmp/foreign" || true
n_exp=$(wc -l <"$tmp/exports")
if [ ! -s "$tmp/foreign" ] && grep -qx flm_open "$tmp/exports" && grep -qx flm_generate "$tmp/exports"; then
  ok "libfieldlm.so exports only flm_ names ($n_exp symbols)"
else bad "libfieldlm.so exports only flm_ names" "$tmp/foreign"; fi

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cflags=$(pkg-config --cflags fieldlm) && libs=$(pkg-config --libs fieldlm) && slibs=$(pkg-config --static --libs fieldlm)
if [ $? = 0 ]; then ok "pkg-config fieldlm: $cflags $libs"; else bad "pkg-config fieldlm"; fi

# Shared: the program finds the library through the install prefix only.
if $CC -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/simple" examples/simple.c $libs >"$tmp/cc.log" 2>&1; then
  ok "examples/simple.c builds with pkg-config --cflags --libs fieldlm"
  if ldd "$tmp/simple" | grep -q "$prefix/lib/libfieldlm.so.0" || LD_LIBRARY_PATH="$prefix/lib" ldd "$tmp/simple" | grep -q "$prefix/lib/libfieldlm.so.0"; then
    ok "simple links libfieldlm.so.0 from the prefix"
  else bad "simple links libfieldlm.so.0 from the prefix"; fi
  if LD_LIBRARY_PATH="$prefix/lib" "$tmp/simple" models/kcc-advisor "Stem borer in paddy" >"$tmp/run.out" 2>"$tmp/run.err" && [ -s "$tmp/run.out" ]; then
    ok "simple (shared) answers on the bundled model"
  else bad "simple (shared) answers on the bundled model" "$tmp/run.err"; fi
else bad "examples/simple.c builds with pkg-config" "$tmp/cc.log"; fi

# Static: the same program against libfieldlm.a and pkg-config --static.
if $CC -std=c11 -Wall -Wextra -Werror $cflags -o "$tmp/simple-static" examples/simple.c "$prefix/lib/libfieldlm.a" $slibs >"$tmp/cc2.log" 2>&1; then
  ok "examples/simple.c builds statically with pkg-config --static --libs fieldlm"
  if "$tmp/simple-static" models/kcc-advisor "Stem borer in paddy" >"$tmp/run2.out" 2>"$tmp/run2.err" && cmp -s "$tmp/run.out" "$tmp/run2.out"; then
    ok "static and shared builds give the same answer"
  else bad "static and shared builds give the same answer" "$tmp/run2.err"; fi
else bad "examples/simple.c builds statically" "$tmp/cc2.log"; fi

if "$prefix/bin/fieldlm" --help >/dev/null 2>&1; then ok "installed fieldlm --help"; else bad "installed fieldlm --help"; fi

make -s uninstall PREFIX="$prefix" >/dev/null 2>&1
left=$(find "$prefix" -type f -o -type l | wc -l)
if [ "$left" = 0 ]; then ok "make uninstall removes every installed file"; else bad "make uninstall leaves $left files"; find "$prefix" -type f -o -type l; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
