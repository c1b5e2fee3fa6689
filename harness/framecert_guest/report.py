"""A walk report finished and shown: every truth's verdict attached (truth.py), the per-task cross-check
summary, and the table `framecert-guest walk` prints."""
from typing import Dict, Optional

from . import truth
from .model import TruthVerdict, WalkReport, WalkSummary


def finish_report(report: WalkReport, drgn_result: Optional[Dict[int, TruthVerdict]] = None,
                  crash_result: Optional[Dict[int, TruthVerdict]] = None, chains=None) -> WalkReport:
    """Adds every task's `truths`, `self_consistency` and `crosscheck`, and the summary's accounting
    (truth.py): false reliables are reliable verdicts an independent truth contradicts."""
    truth.attach(report, snap=report.shadow, chains=chains, drgn=drgn_result, crash=crash_result, cfi=report.cfi)
    for t in report.tasks:
        t.crosscheck = {"metadata": t.self_consistency, "shadow": t.truths["shadow"].verdict,
                        "drgn": t.truths["drgn"].verdict, "crash": t.truths["crash"].verdict}
    ran = (("shadow", report.shadow is not None), ("cfi", report.cfi is not None))
    report.summary.oracle = "+".join(n for n, r in ran if r) or "none"
    if report.shadow is not None:
        report.summary.shadow_stats = report.shadow.stats
    return report


_MARK = {"agree": "a", "disagree": "d", "no-truth": "n"}


# The letters of ps and /proc/PID/stat for a task's __state (as the kernel's task_state_index() picks them):
# the highest of the reported bits, R when none; TASK_IDLE (uninterruptible, no load) is I. These bits are the
# same in 6.1 and 6.12.
_STATE_LETTERS = "SDTtXZP"
_TASK_REPORT = 0x7f
_TASK_IDLE = 0x402


def state_name(state) -> str:
    """`R`, `S`, `D`, `I`... for a numeric task state; anything else (an empty or textual state) as it is."""
    if state is None:
        return ""
    if not isinstance(state, int) or isinstance(state, bool):
        return str(state)
    if state & _TASK_IDLE == _TASK_IDLE:
        return "I"
    bits = state & _TASK_REPORT
    return "R" if not bits else _STATE_LETTERS[bits.bit_length() - 1]


def format_table(report: WalkReport, frames: Optional[int] = 4) -> str:
    """The walk as a table, a task a line: its state letter (ps's), verdict, cross-checks and its first
    `frames` frames (None: every frame, like crash's `bt`)."""
    lines = [f"{'PID':>6} {'TID-GROUP':>9} {'COMM':<16} {'STATE':>5} {'CPU':>4} {'VERDICT':<26} {'XCHK':<5} "
             f"{'TOP FRAMES' if frames is not None else 'FRAMES'}"]
    for t in report.tasks:
        verdict = "reliable" if t.reliable else f"{t.reason}@{t.reason_frame}"
        cpu = f"{t.cpu}{'*' if t.running else ''}"
        shown = t.frames if frames is None else t.frames[:frames]
        text = " < ".join(f.symbol or hex(f.pc) for f in shown)
        if len(shown) < len(t.frames):
            text += f" < ...({len(t.frames)})"
        if t.user_mode:
            text = "(user mode)"
        mark = "".join(_MARK.get(t.crosscheck.get(k, "not-run"), "-") for k in ("shadow", "metadata", "drgn", "crash"))
        lines.append(f"{t.pid:>6} {t.tgid:>9} {t.comm:<16} {state_name(t.state):>5} {cpu:>4} {verdict:<26} {mark:<5} "
                     f"{text}")
        if t.false_reliable:
            lines.append(f"{'':>6} FALSE RELIABLE: {t.truth_violation}")
    s = report.summary
    lines.append("")
    lines.append(f"tasks {s.tasks}: reliable {s.reliable}, unreliable {s.unreliable} "
                 + " ".join(f"{k}={v}" for k, v in sorted(s.by_reason.items())))
    lines.append(f"freeze->verdict {s.freeze_to_verdict_ms or 0:.2f} ms (registers {s.registers_ms or 0:.2f} ms, "
                 f"enumerate {s.enumerate_ms:.2f} ms, walk {s.walk_ms:.2f} ms); false reliable: "
                 f"{s.false_reliable}   [XCHK: shadow/metadata/drgn/crash: a=agree d=disagree "
                 f"n=no truth -=not run]")
    lines.append(truth_line(s))
    return "\n".join(lines)


def truth_line(s: WalkSummary) -> str:
    """The accounting in one line, every figure with its denominator."""
    a = s.accounting
    if a is None or a.truth_coverage is None:
        return "truth: no reliable verdicts to check"
    no_truth = ", ".join(f"{k}: {v}" for k, v in a.no_truth.items()) or "none"
    return (f"truth: {a.false_reliable} false reliable out of {a.reliable_checked} reliable verdicts the shadow "
            f"checked (coverage {a.truth_coverage:.1%} of {s.reliable} reliable; unchecked: {no_truth}); "
            f"self-consistency (metadata walk) agree {a.self_consistency.get('agree', 0)}, disagree "
            f"{a.self_consistency.get('disagree', 0)}")
