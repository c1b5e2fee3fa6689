#!/usr/bin/env bash
# Issue 17: `cmake --install` puts the binary, the unwinder library, its headers, a pkg-config file and a CMake
# package in place, and a program outside the tree builds against them both ways and runs.
# Usage: check_install.sh BUILD_DIR FIXTURE_ELF   (a scratch prefix under $TMPDIR, removed at the end)
set -euo pipefail
build=$1 elf=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/framecert include/framecert/unwinder/unwind.h lib/libframecert_unwinder.a \
         lib/pkgconfig/framecert-unwinder.pc lib/cmake/framecert/framecert-config.cmake; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
"$prefix/bin/framecert" --version
"$prefix/bin/framecert" check --metadata "$work/m.fcmeta" "$elf" || [ $? -eq 1 ]  # findings are fine
expected_id=$(readelf -n "$elf" | awk '/Build ID/ {print $3}')

# 1. pkg-config, with the prefix moved after installation.
mv "$prefix" "$work/moved"
prefix=$work/moved
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2046
c++ -O1 -o "$work/by_pkgconfig" "$here/uses_unwinder.cpp" $(pkg-config --cflags --libs framecert-unwinder)
out=$("$work/by_pkgconfig" "$work/m.fcmeta" "$elf")
echo "pkg-config: $out"
case $out in *"build-id $expected_id, image build-id $expected_id") ;; *) echo "unexpected: $out" >&2; exit 1 ;; esac

# 2. The CMake package.
cmake -S "$here/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/consumer" >/dev/null
out2=$("$work/consumer/uses_unwinder" "$work/m.fcmeta" "$elf")
echo "cmake: $out2"
[ "$out2" = "$out" ] || { echo "the two builds disagree" >&2; exit 1; }
echo "install: ok"
