"""`framecert-guest stress`: many freezes at random moments under a stressing workload, every task walked and
cross-checked each time.

Round r's freeze moment comes from Random(f"{seed}:{r}") alone, so a round is reproducible whichever shard or
job runs it. Per round: tasks walked, reliable / unreliable by reason, running tasks unwound, false reliables
(reliable traces an independent truth contradicts: the emulator's shadow call stacks with --oracle shadow,
the guest's known chains; truth.py), how many reliable verdicts a truth checked, and harness errors. Reports
merge (merge()) when rounds were spread over jobs or machines.
"""
import random
import statistics
import sys
import time
from typing import Dict, List, Optional

from . import known_chains, qemu, shards
from .errors import GuestError, UsageError
from .model import WalkReport
from .report import finish_report
from .truth import uses_cfi, uses_shadow
from .walk import WalkSession

# Extra load started in the guest before the first round, one command each (the boot workload always runs:
# guest/initramfs/init). Each line runs in the background in the guest and lasts until the guest stops.
STORM = [
    # fork/exec storm
    "while :; do /bin/busybox true; done &",
    # timers: a stream of 1 ms sleeps in 4 threads
    "fcload timers &",
    # pipes: bulk data through a pipe between two processes
    "while :; do dd if=/dev/zero bs=65536 count=64 2>/dev/null | md5sum > /dev/null; done &",
    # file I/O on tmpfs
    "while :; do dd if=/dev/zero of=/tmp/storm bs=65536 count=16 2>/dev/null; rm -f /tmp/storm; done &",
    # a busy device: the serial port's transmit interrupts, 50 lines a second
    "while :; do echo FRAMECERT-STORM-TICK; usleep 20000; done > /dev/console &",
]
TRACING = "/sys/kernel/debug/tracing"
# Tracers that put their own code between callers and callees, set up before the load starts. Code patching
# under TCG with several vCPUs crashed the guest (an int3 oops at a half-patched __fentry__ site), so every
# secondary CPU is taken offline while the tracer is switched on and brought back afterwards.
_OFFLINE = "for c in /sys/devices/system/cpu/cpu[1-9]*/online; do echo 0 > $c; done"
_ONLINE = "for c in /sys/devices/system/cpu/cpu[1-9]*/online; do echo 1 > $c; done"
TRACERS = {
    # every kernel function through ftrace's trampoline
    "function": [f"echo function > {TRACING}/current_tracer"],
    # every kernel function's return address replaced by return_to_handler while it runs
    "function_graph": [f"echo function_graph > {TRACING}/current_tracer"],
    # the same on a filtered set: the scheduler, sleeps, the VFS and the test module
    "function_graph_filtered": [f"echo '*sched* *sleep* vfs_* ksys_* fc_*' > {TRACING}/set_ftrace_filter",
                                f"echo function_graph > {TRACING}/current_tracer"],
    # kretprobes: the return address of each probed function replaced by the rethook trampoline
    "kretprobe": [f"echo 'r:fc_r1 schedule_timeout' >> {TRACING}/kprobe_events",
                  f"echo 'r:fc_r2 do_nanosleep' >> {TRACING}/kprobe_events",
                  f"echo 'r:fc_r3 pipe_read' >> {TRACING}/kprobe_events",
                  f"echo 'r:fc_r4 fc_level3' >> {TRACING}/kprobe_events",
                  f"echo 1 > {TRACING}/events/kprobes/enable"],
}
# Both at once: the probed functions' return slots hooked by two tracers (each record names the same slot).
TRACERS["function_graph_kretprobe"] = TRACERS["function_graph"] + TRACERS["kretprobe"]
WORKLOADS: Dict[str, List[str]] = {"boot": [], "storm": STORM, **{name: STORM for name in TRACERS}}


def check_workload(workload: str):
    if workload not in WORKLOADS:
        raise UsageError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})")


def setup_commands(workload: str) -> list:
    """What runs in the guest before the load: the tracer, switched on with one CPU online."""
    if workload not in TRACERS:
        return []
    return [_OFFLINE, *TRACERS[workload], _ONLINE, f"cat {TRACING}/current_tracer {TRACING}/kprobe_events"]


# The report's schema and version, its "schema" field (docs/schemas/stress.schema.json): a run's, a --jobs run's
# and a merge's report alike.
SCHEMA = "framecert-stress/1"
MAX_GUEST_RESTARTS = 3
_DETAIL_FRAMES = 64


def round_delay(seed: int, rnd: int, lo: float = 0.02, hi: float = 0.6) -> float:
    return random.Random(f"{seed}:{rnd}").uniform(lo, hi)


def select_rounds(rounds: int, shard=(1, 1), job=(0, 1), seed: int = 1) -> list:
    """Shard I of N takes rounds r with r % N == I-1. Job k of J within it gets a share of those whose waits
    (round_delay, known from the seed) add up to about the others' shares: the jobs finish together instead of
    the run waiting for the one that drew the longest waits. Deterministic: the same arguments, the same rounds."""
    index, count = shard
    mine = [r for r in range(rounds) if r % count == index - 1]
    k, jobs = job
    if jobs == 1:
        return mine
    # Longest wait first, each to the job with the least waiting so far (ties: the lower job).
    delay = {r: round_delay(seed, r) for r in mine}
    load = [0.0] * jobs
    share: List[List[int]] = [[] for _ in range(jobs)]
    for r in sorted(mine, key=lambda r: (-delay[r], r)):
        j = min(range(jobs), key=lambda j: (load[j], j))
        load[j] += delay[r]
        share[j].append(r)
    return sorted(share[k])


def round_record(rnd: int, delay: float, report: WalkReport) -> dict:
    """The per-round part of the report: totals, every task's verdict, and the full stack of every task that
    is unreliable or disagrees with a cross-check."""
    tasks = report.tasks
    s = report.summary
    a = s.accounting
    running = [t for t in tasks if t.running]
    verdicts: Dict[str, str] = {}
    stacks: Dict[str, dict] = {}
    for t in tasks:
        key = t.key
        if t.false_reliable:
            verdicts[key] = "FALSE-RELIABLE"
        else:
            verdicts[key] = "reliable" if t.reliable else (t.reason or "")
        disagrees = "disagree" in t.crosscheck.values()
        if not t.reliable or disagrees or t.false_reliable:
            shadow = t.truths.get("shadow")
            stacks[key] = {"reason": t.reason, "reason_frame": t.reason_frame, "detail": t.detail,
                           "running": t.running, "crosscheck": t.crosscheck or None,
                           "truth_violation": t.truth_violation,
                           "shadow": shadow.to_json() if shadow else None,
                           "frames": [f.name() for f in t.frames[:_DETAIL_FRAMES]],
                           # The same frames with their pc and object (module), for the page; "frames" stays
                           # the names alone, as older reports have it.
                           "frame_details": [{"name": f.name(), "pc": hex(f.pc), "object": f.object}
                                             for f in t.frames[:_DETAIL_FRAMES]]}
    return {"round": rnd, "delay_ms": round(delay * 1000, 1), "tasks": len(tasks), "reliable": s.reliable,
            "unreliable": s.unreliable, "by_reason": s.by_reason, "running": len(running),
            "running_unwound": sum(1 for t in running if len(t.frames) > 1),
            "running_reliable": sum(1 for t in running if t.reliable),
            # Return addresses a tracer had replaced with its trampoline, recovered from the task's records
            # (frames carrying `trampoline`), and the reliable traces that went through one.
            "hooked_frames": sum(1 for t in tasks for f in t.frames if f.extra.get("trampoline")),
            "hooked_reliable": sum(1 for t in tasks if t.reliable and any(f.extra.get("trampoline") for f in t.frames)),
            # ftrace's dynamic trampolines the walker knew at this freeze, and the frames found in one.
            "ftrace_trampolines": len(report.extra.get("ftrace_trampolines", [])),
            "trampoline_frames": sum(1 for t in tasks for f in t.frames if f.object == "[ftrace trampoline]"),
            "false_reliable": s.false_reliable, "harness_error": None,
            "reliable_checked": a.reliable_checked if a else 0,
            "shadow_agree_reliable": a.shadow_agree_reliable if a else 0,
            "cfi_complete_reliable": a.cfi_complete_reliable if a else 0,
            "no_truth": a.no_truth if a else {},
            "unreliable_shadow_complete": a.unreliable_shadow_complete if a else {},
            "self_consistency": a.self_consistency if a else {},
            "no_truth_tasks": {t.key: t.truths["shadow"].detail for t in tasks
                               if t.reliable and "shadow" in t.truths
                               and t.truths["shadow"].verdict not in ("agree", "disagree")},
            "freeze_to_verdict_ms": round(s.freeze_to_verdict_ms or 0, 2),
            "verdicts": verdicts, "stacks": stacks}


def error_record(rnd: int, delay: float, message: str) -> dict:
    """A round that failed: round_record's fields, nothing walked."""
    return {"round": rnd, "delay_ms": round(delay * 1000, 1), "tasks": 0, "reliable": 0, "unreliable": 0,
            "by_reason": {}, "running": 0, "running_unwound": 0, "running_reliable": 0, "hooked_frames": 0,
            "hooked_reliable": 0, "ftrace_trampolines": 0, "trampoline_frames": 0, "false_reliable": 0,
            "harness_error": message, "reliable_checked": 0, "shadow_agree_reliable": 0, "cfi_complete_reliable": 0,
            "no_truth": {}, "unreliable_shadow_complete": {}, "self_consistency": {}, "no_truth_tasks": {},
            "freeze_to_verdict_ms": None, "verdicts": {}, "stacks": {}}


def _add_counts(rounds: list, key: str) -> dict:
    out: Dict[str, int] = {}
    for r in rounds:
        for k, v in r.get(key, {}).items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def summarize(rounds: list, seed: int, workload: str, oracle: str = "none") -> dict:
    by_reason = _add_counts(rounds, "by_reason")
    reliable = sum(r["reliable"] for r in rounds)
    checked = sum(r.get("reliable_checked", 0) for r in rounds)
    times = [r["freeze_to_verdict_ms"] for r in rounds if r["freeze_to_verdict_ms"] is not None]
    return {"rounds": len(rounds), "tasks_walked": sum(r["tasks"] for r in rounds),
            "reliable": reliable, "unreliable": sum(r["unreliable"] for r in rounds),
            "by_reason": by_reason,
            "running_tasks": sum(r["running"] for r in rounds),
            "running_unwound": sum(r["running_unwound"] for r in rounds),
            "running_reliable": sum(r["running_reliable"] for r in rounds),
            "hooked_frames": sum(r.get("hooked_frames", 0) for r in rounds),
            "hooked_reliable": sum(r.get("hooked_reliable", 0) for r in rounds),
            "trampoline_frames": sum(r.get("trampoline_frames", 0) for r in rounds),
            "false_reliable": sum(r["false_reliable"] for r in rounds),
            "reliable_checked": checked,
            "truth_coverage": round(checked / reliable, 4) if reliable else None,
            "shadow_agree_reliable": sum(r.get("shadow_agree_reliable", 0) for r in rounds),
            "cfi_complete_reliable": sum(r.get("cfi_complete_reliable", 0) for r in rounds),
            "no_truth": _add_counts(rounds, "no_truth"),
            "unreliable_shadow_complete": _add_counts(rounds, "unreliable_shadow_complete"),
            "self_consistency": _add_counts(rounds, "self_consistency"),
            "oracle": oracle,
            "harness_errors": sum(1 for r in rounds if r["harness_error"]),
            "freeze_to_verdict_ms": {"median": round(statistics.median(times), 2) if times else None,
                                     "max": max(times) if times else None},
            "seed": seed, "workload": workload}


class _Runner:
    """One guest (restarted if it dies), its walk session and the ground truth."""

    def __init__(self, guest_dir, smp: int, workload: str, oracle: str = "shadow"):
        self.guest_dir, self.smp, self.workload, self.oracle = guest_dir, smp, workload, oracle
        self.guest: Optional[qemu.Guest] = None
        self.session: Optional[WalkSession] = None
        self.truths = known_chains.load(guest_dir)
        self.restarts = 0

    def start(self):
        self.guest = qemu.Guest(self.guest_dir, smp=self.smp, shadow=uses_shadow(self.oracle)).start()
        self.guest.wait_ready(timeout=300)
        # The walker first (it asks the guest where its modules are): under a tracer on every function the
        # guest answers commands several times slower.
        self.session = WalkSession(self.guest, cfi=uses_cfi(self.oracle))
        for cmd in setup_commands(self.workload):
            self.guest.command(cmd, timeout=300)  # switching a tracer on patches every function: slow under TCG
        for cmd in WORKLOADS[self.workload]:
            self.guest.command(cmd, timeout=120)

    def stop(self):
        if self.session:
            self.session.close()
            self.session = None
        if self.guest:
            self.guest.stop()
            self.guest = None

    def restart(self):
        self.stop()
        self.restarts += 1
        if self.restarts > MAX_GUEST_RESTARTS:
            raise GuestError(f"the guest died {self.restarts} times; giving up")
        self.start()

    def one_round(self, rnd: int, delay: float) -> dict:
        time.sleep(delay)
        if self.session is None:
            raise GuestError("no walk session")
        report = finish_report(self.session.walk(), chains=self.truths)
        return round_record(rnd, delay, report)


def run(guest_dir, rounds: list, seed: int, smp: int = 2, workload: str = "storm", progress=None,
        total: Optional[int] = None, oracle: str = "shadow") -> dict:
    """Runs the given round numbers on one guest; returns the report (rounds + summary)."""
    check_workload(workload)
    runner = _Runner(guest_dir, smp, workload, oracle)
    records = []
    t0 = time.monotonic()
    try:
        runner.start()
        # Let the extra load get going before the first freeze: the first round's own wait counts toward it.
        warmup = 1.0 if WORKLOADS[workload] else 0.2
        time.sleep(max(0.0, warmup - (round_delay(seed, rounds[0]) if rounds else 0.0)))
        boot_s = time.monotonic() - t0
        for n, rnd in enumerate(rounds):
            delay = round_delay(seed, rnd)
            try:
                rec = runner.one_round(rnd, delay)
            except GuestError as e:
                rec = error_record(rnd, delay, str(e))
                alive = runner.guest.proc.poll() is None if runner.guest and runner.guest.proc else False
                if not alive:
                    rec["harness_error"] += " (guest restarted)"
                    runner.restart()
            records.append(rec)
            if progress:
                progress(n + 1, len(rounds), rec, summarize(records, seed, workload, oracle), total)
    finally:
        runner.stop()
    # boot_s: start to first round (boot, workload start), for bench/guest/shadow_overhead.py's rounds/minute.
    return {"schema": SCHEMA, "rounds": records, "summary": summarize(records, seed, workload, oracle),
            "boot_s": round(boot_s, 2)}


def merge(reports: list) -> dict:
    """Combines the reports of one run's shards (or of one shard's --jobs children) into one. Refuses reports
    of different runs, a shard or job missing or repeated (shards.check_together), and rounds that are not
    exactly the merged shard's."""
    if not reports:
        raise GuestError("nothing to merge")
    summaries = [r["summary"] for r in reports]
    shard = shards.check_together(summaries)
    by_round = {}
    for rep in reports:
        for r in rep["rounds"]:
            if r["round"] in by_round:
                raise GuestError(f"merge: round {r['round']} is in more than one report")
            by_round[r["round"]] = r
    first = summaries[0]
    _check_rounds_cover(sorted(by_round), first.get("total_rounds"), shard)
    rounds = [by_round[k] for k in sorted(by_round)]
    summary = summarize(rounds, first["seed"], first["workload"], first.get("oracle", "none"))
    summary.update({"total_rounds": first.get("total_rounds"), "shard": f"{shard[0]}/{shard[1]}", "job": "0/1"})
    if any("provenance" in s for s in summaries):
        summary["provenance"] = shards.merged_provenance(summaries, list(sys.argv))
    expected: dict = {}
    for s in summaries:
        expected.update(s.get("expected_unreliable") or {})
    summary["expected_unreliable"] = dict(sorted(expected.items()))
    return {"schema": SCHEMA, "rounds": rounds, "summary": summary}


def check_mergeable(report, name: str) -> None:
    """Refuses, in one line, what merge() cannot read: a report naming another schema (UsageError: exit 2),
    or one without the field that is no stress report (reports from before schemas were named have none)."""
    schema = report.get("schema") if isinstance(report, dict) else None
    if schema is not None and schema != SCHEMA:
        raise UsageError(f"{name}: a {schema} report; merge combines stress reports ({SCHEMA}) only")
    if (not isinstance(report, dict) or not isinstance(report.get("rounds"), list)
            or not isinstance(report.get("summary"), dict) or "seed" not in report["summary"]):
        raise GuestError(f"{name} is not a stress report")


def _check_rounds_cover(have: list, total: Optional[int], shard) -> None:
    """The merged rounds are exactly the merged shard's (reports from before total_rounds was recorded: not
    checked)."""
    if total is None:
        return
    want = select_rounds(total, shard)
    if have != want:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        raise GuestError(f"merge: the rounds are not those of shard {shard[0]}/{shard[1]} of {total}: "
                         f"missing {missing[:8]}, not in it {extra[:8]}")


def progress_line(done: int, count: int, rec: dict, so_far: dict, total=None):
    err = f" ERROR {rec['harness_error']}" if rec["harness_error"] else ""
    print(f"[stress] round {rec['round']} ({done}/{count}{f' of {total}' if total else ''}): tasks {rec['tasks']}, "
          f"unreliable {rec['unreliable']}, running {rec['running']}, {rec['freeze_to_verdict_ms']} ms | total: "
          f"walked {so_far['tasks_walked']}, false reliable {so_far['false_reliable']}, "
          f"errors {so_far['harness_errors']}{err}", file=sys.stderr, flush=True)


def format_summary(report: dict) -> str:
    s = report["summary"]
    reasons = ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()) or "none"
    return "\n".join([
        f"stress: {s['rounds']} rounds (seed {s['seed']}, workload {s['workload']}): {s['tasks_walked']} task walks",
        f"  reliable {s['reliable']}, unreliable {s['unreliable']} ({reasons})",
        f"  running tasks {s['running_tasks']}: unwound past their own frame {s['running_unwound']}, "
        f"reliable {s['running_reliable']}",
        f"  return addresses behind a tracer's trampoline: {s.get('hooked_frames', 0)} frames, in "
        f"{s.get('hooked_reliable', 0)} reliable traces; frames in an ftrace trampoline: "
        f"{s.get('trampoline_frames', 0)}",
        f"  freeze->verdict median {s['freeze_to_verdict_ms']['median']} ms, max {s['freeze_to_verdict_ms']['max']} ms",
        f"  FALSE RELIABLE: {s['false_reliable']}   harness errors: {s['harness_errors']}",
        "  " + truth_summary(s),
    ])


def truth_summary(s: dict) -> str:
    """What the false-reliable figure stands on: its denominator and what was left unchecked."""
    if s.get("oracle", "none") == "none":
        return ("truth: no independent oracle ran (--oracle none): only the known chains of the guest's own "
                "kthreads were checked")
    if not s["reliable"]:
        return "truth: no reliable verdicts to check"
    unchecked = ", ".join(f"{k} ({v})" for k, v in s["no_truth"].items()) or "none"
    complete = ", ".join(f"{k} {v}" for k, v in s["unreliable_shadow_complete"].items()) or "none"
    return (f"truth ({s['oracle']}): {s['false_reliable']} false reliable out of {s['reliable_checked']} reliable "
            f"verdicts checked = coverage {s['truth_coverage']:.2%} of {s['reliable']}; shadow agrees on "
            f"{s['shadow_agree_reliable']}, the CFI unwind on {s.get('cfi_complete_reliable', 0)} (whole); unchecked: "
            f"{unchecked}\n  unreliable traces the shadow shows complete "
            f"(false-unreliable candidates): {complete}; self-consistency (metadata walk, not a truth): "
            f"{s['self_consistency']}")
