#!/bin/sh
# Regenerates the offline golden cases from a live fs_threads: builds it and offline_capture, freezes a fresh
# fs_threads, saves each thread (registers, stack bytes, expected trace and verdict) with the program and
# its metadata under tests/unwinder/offline/fs_threads/. Review `git diff` before committing: the expected
# verdicts are what the walker says today.
# Usage: tests/unwinder/offline/generate.sh [BUILD_DIR]
set -e
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-build}
ninja -C "$B" -j2 offline_capture fs_threads >/dev/null
"$B/tests/unwinder/offline_capture" "$here"
du -sh "$here/fs_threads"
