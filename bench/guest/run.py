#!/usr/bin/python3
"""Freeze -> every verdict for the whole guest, side by side with dump + drgn walking every task of the same
frozen state.

    bench/guest/run.py [--rounds N] [--smp N] [--guest-dir DIR]

framecert: QMP stop, every vCPU's registers over the gdbstub, the C++ guest walker (loaded before the
freeze) enumerating and judging every task from the RAM file, the verdicts back in Python (the walker's first
line; the report with every frame follows and is timed too); then QMP cont. The limit: freeze, registers,
finding the tasks and reading each task's whole stack (the least any walker outside the guest must do).
drgn: QMP dump-guest-memory (paging) of the same frozen state, then drgn (its own process: load vmlinux's
debug info, walk every task) — the route an external tool has to take.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "harness"))
from framecert_guest import crosscheck, qemu, walk  # noqa: E402

DRGN_ALL = r'''
import json, sys, time
t0 = time.perf_counter()
import drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import idle_task
from drgn.helpers.linux.cpumask import for_each_online_cpu
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
try:
    prog.load_debug_info([sys.argv[2]])
except drgn.MissingDebugInfoError:
    pass
t1 = time.perf_counter()
tasks = frames = 0
for task in list(for_each_task(prog)) + [idle_task(prog, cpu) for cpu in for_each_online_cpu(prog)]:
    try:
        frames += len(prog.stack_trace(task))
    except Exception:
        pass
    tasks += 1
t2 = time.perf_counter()
print(json.dumps({"load_ms": (t1 - t0) * 1000, "walk_ms": (t2 - t1) * 1000, "tasks": tasks, "frames": frames}))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--guest-dir")
    args = ap.parse_args()
    if args.guest_dir:
        guest_dir = Path(args.guest_dir)
    else:
        r = subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts" / "framecert-guest"), "build", "-q"],
                           capture_output=True, text=True, check=True)
        guest_dir = Path(r.stdout.strip().splitlines()[-1])
    rows = []
    with qemu.Guest(guest_dir, smp=args.smp) as guest:
        guest.wait_ready(timeout=300)
        with walk.WalkSession(guest) as session:
            time.sleep(1)
            session.walk()  # warm: per-function frame-size analysis is cached across walks
            for _ in range(args.rounds):
                floor = {}

                def read_stacks(report):
                    # Same freeze, after the walk: the time to read every task's whole stack (the floor).
                    answer, _ = session.walker.request_line({**session._last_request, "measure_stack_reads": True})
                    floor["read_stacks_ms"] = answer["summary"]["read_stacks_ms"]

                rep = session.walk(while_frozen=read_stacks)
                s = rep.summary
                frames = sum(len(t.frames) for t in rep.tasks)
                rows.append((s.freeze_to_verdict_ms, s.stop_ms, s.registers_ms, s.enumerate_ms,
                             s.walk_ms, s.tasks, frames, s.reliable, floor["read_stacks_ms"],
                             s.walker_roundtrip_ms, s.parse_ms, s.freeze_to_report_ms))
                time.sleep(0.2)
            with tempfile.TemporaryDirectory(prefix="framecert-bench-") as tmp:
                dump = Path(tmp) / "vmcore"
                t0 = time.perf_counter()
                guest.qmp("stop")
                guest.qmp("dump-guest-memory", paging=True, protocol=f"file:{dump}")
                t1 = time.perf_counter()
                guest.qmp("cont")
                t2 = time.perf_counter()
                r = subprocess.run(["/usr/bin/python3", "-c", DRGN_ALL, str(dump), str(guest_dir / "linux" / "vmlinux")],
                                   capture_output=True, text=True, check=True)
                t3 = time.perf_counter()
                drgn = json.loads(r.stdout)
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    best = lambda i: min(r[i] for r in rows)  # noqa: E731
    dump_ms, drgn_total_ms = (t1 - t0) * 1000, (t3 - t2) * 1000
    drgn_freeze_to_verdict = dump_ms + drgn_total_ms
    print(f"guest: {args.smp} vCPUs, {rows[-1][5]} tasks, {rows[-1][6]} frames; framecert: {args.rounds} freezes (median, best)")
    print(f"{'':34} {'framecert':>16} {'dump + drgn':>14}")
    print(f"{'freeze (QMP stop)':34} {med(1):>9.2f} ({best(1):.2f}) {'':>14}")
    print(f"{'registers (gdbstub, every vCPU)':34} {med(2):>9.2f} ({best(2):.2f}) {'':>14}")
    print(f"{'dump-guest-memory (paging)':34} {'-':>16} {dump_ms:>14.1f}")
    print(f"{'load (drgn: debug info)':34} {'before freeze':>16} {drgn['load_ms']:>14.1f}")
    print(f"{'enumerate tasks':34} {med(3):>9.2f} ({best(3):.2f}) {'':>14}")
    print(f"{'walk + judge every task':34} {med(4):>9.2f} ({best(4):.2f}) {drgn['walk_ms']:>14.1f}")
    print(f"{'walker round trip (incl. JSON)':34} {med(9):>9.2f} ({best(9):.2f}) {'':>14}")
    print(f"{'report parsed (Python)':34} {med(10):>9.2f} ({best(10):.2f}) {'':>14}")
    print(f"{'freeze -> every verdict (ms)':34} {med(0):>9.2f} ({best(0):.2f}) {drgn_freeze_to_verdict:>14.1f}")
    print(f"{'freeze -> whole report parsed':34} {med(11):>9.2f} ({best(11):.2f}) {'':>14}")
    # The floor of any walker outside the guest: freeze, registers, find the tasks, read each one's whole stack.
    limit = [r[1] + r[2] + r[3] + r[8] for r in rows]
    print(f"{'limit: stop+regs+enumerate+read stacks':34} {statistics.median(limit):>9.2f} ({min(limit):.2f}) "
          f"{'':>14}   (reading every stack alone: {med(8):.2f} ms)")
    print(f"freeze -> verdict / limit: {med(0) / statistics.median(limit):.1f}x   target: <= 5 ms and within 3x")
    print(f"{'tasks / frames':34} {rows[-1][5]:>8} / {rows[-1][6]:<5} {drgn['tasks']:>7} / {drgn['frames']:<5}")
    print(f"speed-up (median freeze->verdict): {drgn_freeze_to_verdict / med(0):.0f}x   "
          f"target: < 20 ms and >= 50x")
    print(f"(drgn's process wall time incl. Python start: {drgn_total_ms:.1f} ms; framecert walker load before the "
          f"freeze: {session.prepare_ms:.0f} ms)")


if __name__ == "__main__":
    main()
