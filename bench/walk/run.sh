#!/bin/sh
# Prints framecert vs libunwind-ptrace walk times for 100 threads x 50 frames (both in the same freeze).
# Usage: bench/walk/run.sh [BUILD_DIR] [THREADS] [DEPTH] [ROUNDS]
set -e
B=${1:-build}
ninja -C "$B" -j2 walk_bench >/dev/null
exec "$B/bench/walk/walk_bench" "${2:-100}" "${3:-50}" "${4:-5}"
