#!/usr/bin/python3
"""Stress throughput: rounds per minute of `framecert-guest stress --jobs J`, the whole command timed (boots,
workload start, every round, the merge), with the shadow-stack oracle on and off, runs alternating so
machine load hits both.

    bench/guest/stress_rate.py [--rounds N] [--jobs J] [--repeat K] [--guest-dir DIR]

Every round waits a random 20-600 ms (the seed's) before its freeze, so with J jobs the rate cannot pass
J * 60 / 0.31 s, about 190 per job: that bound is printed beside the figures.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "harness"))
from framecert_guest import stress  # noqa: E402


def one_run(guest_dir, rounds, jobs, oracle) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stress.json"
        t0 = time.monotonic()
        r = subprocess.run([str(REPO / "scripts" / "framecert-guest"), "stress", "--rounds", str(rounds), "--jobs",
                            str(jobs), "--oracle", oracle, "--guest-dir", guest_dir, "--json", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        spent = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"stress --oracle {oracle} failed (exit {r.returncode}): {r.stderr.strip()[-400:]}")
        summary = json.loads(out.read_text())["summary"]
        if summary.get("harness_errors"):
            raise SystemExit(f"stress --oracle {oracle}: {summary['harness_errors']} harness errors")
    return spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--guest-dir")
    a = ap.parse_args()
    build = subprocess.run([str(REPO / "scripts" / "framecert-guest"), "build", "-q"], capture_output=True, text=True,
                           check=True) if not a.guest_dir else None
    guest_dir = a.guest_dir or build.stdout.strip().splitlines()[-1]
    times = {"shadow": [], "none": []}
    for _ in range(a.repeat):
        for oracle in times:
            times[oracle].append(one_run(guest_dir, a.rounds, a.jobs, oracle))
    waits = [stress.round_delay(1, r) for r in range(a.rounds)]
    bound = a.rounds / (sum(waits) / a.jobs) * 60
    print(f"guest {guest_dir}; {a.rounds} rounds of 'storm', --jobs {a.jobs}, {os.cpu_count()} cores; "
          f"median of {a.repeat} whole-command runs each, alternating")
    print(f"{'oracle':<8} {'wall_s':>8} {'rounds/min':>11} {'limit (waits only)':>19}")
    for oracle, ts in times.items():
        wall = statistics.median(ts)
        print(f"{oracle:<8} {wall:>8.1f} {a.rounds / wall * 60:>11.1f} {bound:>19.1f}")


if __name__ == "__main__":
    main()
