#!/usr/bin/python3
"""What the shadow-stack oracle costs: boot-to-ready and stress rounds per minute, with and without the TCG
plugin (harness/shadow/), measured side by side in one run (runs alternate, so machine load hits both).

    bench/guest/shadow_overhead.py [--boots N] [--rounds N] [--smp N] [--workload NAME] [--guest-dir DIR]

Boot-to-ready: QEMU start to FRAMECERT-GUEST-READY on the console. Rounds per minute: a stress run
(framecert_guest.stress.run, the same code `framecert-guest stress` runs) of --rounds rounds after boot,
wall time of the rounds only; with the plugin, each round also takes the snapshot and compares every task.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "harness"))
from framecert_guest import qemu, stress  # noqa: E402


def boot_to_ready(guest_dir, smp, shadow) -> float:
    with qemu.Guest(guest_dir, smp=smp, shadow=shadow) as g:
        return g.wait_ready(timeout=300)


def rounds_per_minute(guest_dir, smp, workload, rounds, shadow) -> float:
    t0 = time.monotonic()
    rep = stress.run(guest_dir, list(range(rounds)), seed=1, smp=smp, workload=workload,
                     oracle="shadow" if shadow else "none")
    if rep["summary"]["harness_errors"]:
        raise SystemExit(f"stress run failed: {[r['harness_error'] for r in rep['rounds'] if r['harness_error']]}")
    # Boot and workload start are not rounds: take them out with the run's own round timing.
    spent = time.monotonic() - t0
    boot = rep.get("boot_s", 0.0)
    return rounds / max(spent - boot, 1e-9) * 60


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boots", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--workload", default="storm")
    ap.add_argument("--guest-dir")
    a = ap.parse_args()
    guest_dir = a.guest_dir or subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "framecert-guest"),
                                               "build", "-q"], capture_output=True, text=True,
                                              check=True).stdout.strip().splitlines()[-1]
    boots = {False: [], True: []}
    for _ in range(a.boots):
        for shadow in (False, True):
            boots[shadow].append(boot_to_ready(guest_dir, a.smp, shadow))
    rpm = {shadow: rounds_per_minute(guest_dir, a.smp, a.workload, a.rounds, shadow) for shadow in (False, True)}
    b0, b1 = statistics.median(boots[False]), statistics.median(boots[True])
    print(f"guest {guest_dir}, {a.smp} vCPUs (TCG); boots: {a.boots} each, alternating; stress: {a.rounds} rounds "
          f"of '{a.workload}' each")
    print(f"{'what':<34} {'without plugin':>15} {'with plugin':>12} {'ratio':>7}")
    print(f"{'boot to ready (median, s)':<34} {b0:>15.2f} {b1:>12.2f} {b1 / b0:>6.2f}x")
    print(f"{'stress rounds per minute':<34} {rpm[False]:>15.1f} {rpm[True]:>12.1f} {rpm[False] / rpm[True]:>6.2f}x")


if __name__ == "__main__":
    main()
