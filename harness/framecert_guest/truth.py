"""Honest accounting of a walk: which independent truth checked which verdict.

Every task of a walk report gets `truths`: {name: {"verdict": "agree" | "disagree" | "no-truth" |
"not-run", "detail"}} for each truth:

- `shadow`     — the emulator's shadow call stacks (shadow.py): independent of frame pointers and metadata;
- `cfi`        — the CFI oracle (framecert guest-cfi): the task unwound from .debug_frame alone; counts as
                  coverage when it reached the stack's end ("no truth at frame N" where a pc has no CFI);
- `sched`      — for a trace that says the task never ran (fork frame only), which the shadow cannot check:
                  the kernel's own context-switch counts must be 0;
- `known_chain` — the guest's own kthreads parked on known chains (known_chains.py); its "agree" counts as
                  coverage only when the kthread was asleep in its nap and the whole trace, kernel frames
                  included, was checked (`full`);
- `drgn`, `crash` — external tools on a dump (crosscheck.py); drgn falls back to following rbp where a
                  function has no CFI, so their "agree" does not count as coverage either;

and the metadata-only walk's result as `self_consistency` (it reads the same metadata the walker used, and a
reliable verdict it disagrees with is already demoted by the unwinder: it can never reveal a false reliable).

The summary: `false_reliable` (reliable verdicts any truth contradicts), `truth_coverage` (the fraction of
reliable verdicts a truth checked whole: the shadow, `sched`, or a full known chain), `no_truth` (why the others
were not),
`self_consistency`, and per reason how many unreliable traces the shadow shows to be complete and right
(candidates for false unreliables).
"""
from typing import Dict, List, Optional

from . import known_chains, shadow
from .model import Accounting, CfiReport, CfiTask, Task, TruthVerdict, WalkReport, address

# The independent truths a run can ask (`--oracle`): which of them this choice starts.
ORACLES = ("shadow", "cfi", "all", "none")


def uses_shadow(oracle: str) -> bool:
    return oracle in ("shadow", "all")


def uses_cfi(oracle: str) -> bool:
    return oracle in ("cfi", "all")


ALL = ("shadow", "sched", "cfi", "known_chain", "drgn", "crash")


def covers(name: str, verdict: TruthVerdict) -> bool:
    """Whether this truth's verdict checked the whole trace: the shadow's always, a known chain's only when
    it knew every frame (`full`), drgn's and crash's never (their frame-pointer fallbacks)."""
    if verdict.verdict not in ("agree", "disagree"):
        return False
    return name in ("shadow", "sched") or (name in ("known_chain", "cfi") and bool(verdict.full))


def cfi_truth(task: Task, theirs: Optional[CfiTask]) -> TruthVerdict:
    """The CFI oracle's unwind (framecert guest-cfi: .debug_frame only, no frame pointers) against the trace:
    the same pcs frame for frame as far as the CFI reached. `full` when it reached the stack's end (then the
    whole trace is checked); where it stopped (a function without CFI: the assembly, the entry code) only the
    frames before count, and the rest has no truth."""
    if theirs is None:
        return TruthVerdict("no-truth", "the CFI oracle did not report this task")
    cfi_pcs = [f.pc for f in theirs.frames]
    ours = [f.pc for f in task.frames]
    if task.user_mode:
        return TruthVerdict("agree", "user mode: no kernel frames", full=True)
    n = min(len(cfi_pcs), len(ours))
    for i in range(n):
        hook = task.frames[i].extra.get("trampoline")
        if hook and cfi_pcs[i] != ours[i] and cfi_pcs[i] == address(hook["pc"]):
            # The slot holds a tracer's trampoline: the CFI unwind reads it as it is and cannot see the record
            # of the original (nor unwind the trampoline), so the frames from here have no CFI truth.
            return TruthVerdict("no-truth", f"frame {i}: the CFI unwind reaches the tracer's trampoline "
                                            f"{hook.get('symbol') or hex(cfi_pcs[i])}", full=False)
        if cfi_pcs[i] != ours[i]:
            sym = task.frames[i].symbol or hex(ours[i])
            return TruthVerdict("disagree", f"frame {i} ({sym}): trace has {ours[i]:#x}, the CFI unwind "
                                            f"{cfi_pcs[i]:#x}", full=False)
    if theirs.complete:
        if len(cfi_pcs) != len(ours):
            return TruthVerdict("disagree", f"the CFI unwind reaches the stack's end in {len(cfi_pcs)} frames, "
                                            f"the trace has {len(ours)}", full=True)
        return TruthVerdict("agree", f"{n} frames, pc for pc", full=True)
    if n < len(cfi_pcs):
        return TruthVerdict("disagree", f"the trace stops after {len(ours)} frames; the CFI unwind found "
                                        f"{len(cfi_pcs)} before it stopped", full=False)
    return TruthVerdict("no-truth", theirs.why or "the CFI unwind stopped", full=False)


def sched_truth(task: Task) -> TruthVerdict:
    """The kernel's own context-switch counts on a trace that says the task has never run (its stack holds
    only the fork frame): the one claim the shadow cannot check, since a recycled stack still holds the
    previous owner's entries. A task that ran has been switched out at least once (nvcsw + nivcsw > 0)."""
    if task.note != "has not run yet":
        return TruthVerdict("not-run", "only for traces of tasks that never ran")
    if task.switches is None:
        return TruthVerdict("no-truth", "no context-switch counts in the report")
    if task.switches == 0 and not task.running:
        return TruthVerdict("agree", "never ran: the kernel switched it out 0 times")
    return TruthVerdict("disagree", f"the trace says the task never ran, but the kernel switched it out "
                                    f"{task.switches} times")


def attach(report: WalkReport, snap: Optional[shadow.Snapshot] = None, chains: Optional[dict] = None,
           drgn: Optional[Dict[int, TruthVerdict]] = None, crash: Optional[Dict[int, TruthVerdict]] = None,
           cfi: Optional[CfiReport] = None) -> WalkReport:
    """Fills every task's `truths` and the summary's accounting; returns the report. drgn and crash: their
    verdicts by task address (crosscheck.py)."""
    for t in report.tasks:
        truths = {}
        truths["shadow"] = (shadow.judge(t, snap, report.registers, report.thread_size) if snap
                            else TruthVerdict("not-run"))
        truths["sched"] = sched_truth(t) if snap or cfi else TruthVerdict("not-run")
        truths["cfi"] = cfi_truth(t, cfi.tasks.get(t.address)) if cfi is not None else TruthVerdict("not-run")
        if chains is not None and t.kthread and t.comm in chains and t.reliable:
            truths["known_chain"] = known_chains.judge(t, chains[t.comm])
        else:
            truths["known_chain"] = TruthVerdict("not-run" if chains is None else "no-truth", "no known chain")
        for name, result in (("drgn", drgn), ("crash", crash)):
            got = (result or {}).get(t.address)
            truths[name] = TruthVerdict(got.verdict, got.detail) if got else TruthVerdict("not-run")
        t.truths = truths
        cfa = t.cfa_check
        if cfa and (t.reliable or cfa.frame_count):
            t.self_consistency = "agree" if cfa.agrees else "disagree"
        else:
            t.self_consistency = "not-run"
        contradicted = [n for n in ALL if truths[n].verdict == "disagree"]
        t.false_reliable = bool(t.reliable and contradicted)
        t.truth_violation = "; ".join(f"{n}: {truths[n].detail}" for n in contradicted) if t.false_reliable else None
    report.summary.accounting = summarize(report.tasks, oracle_ran=snap is not None or cfi is not None)
    return report


def summarize(tasks: List[Task], oracle_ran: bool = True) -> Accounting:
    reliable = [t for t in tasks if t.reliable]
    checked = [t for t in reliable if any(covers(n, t.truths[n]) for n in ALL)]
    checked_ids = {id(t) for t in checked}  # by identity: comparing whole tasks field by field is O(n) each
    no_truth: Dict[str, int] = {}
    for t in reliable:
        if id(t) not in checked_ids:
            ran = [n for n in ("shadow", "cfi") if t.truths[n].verdict != "not-run"] or ["shadow"]
            why = "; ".join(f"{n}: {t.truths[n].detail or t.truths[n].verdict}" for n in ran)
            no_truth[why] = no_truth.get(why, 0) + 1
    complete_but_unreliable: Dict[str, int] = {}
    for t in tasks:
        if not t.reliable and t.truths["shadow"].verdict == "agree":
            reason = t.reason or ""
            complete_but_unreliable[reason] = complete_but_unreliable.get(reason, 0) + 1
    consistency = {"agree": 0, "disagree": 0}
    for t in tasks:
        if t.self_consistency in consistency:
            consistency[t.self_consistency] += 1
    return Accounting(
        false_reliable=sum(1 for t in tasks if t.false_reliable),
        reliable_checked=len(checked),
        truth_coverage=(round(len(checked) / len(reliable), 4) if reliable else None) if oracle_ran else 0.0,
        cfi_complete_reliable=sum(1 for t in reliable if t.truths["cfi"].full and t.truths["cfi"].verdict == "agree"),
        shadow_agree_reliable=sum(1 for t in reliable if t.truths["shadow"].verdict == "agree"),
        no_truth=dict(sorted(no_truth.items())),
        unreliable_shadow_complete=dict(sorted(complete_but_unreliable.items())),
        self_consistency=consistency,
    )
