"""`framecert-guest patch-check`: may a live patch of these functions switch each task now?

Per task, the decision the kernel's klp_try_switch_task() makes, from framecert's walk of the frozen guest:
  blocked-unreliable  the trace is not proven complete (the reason and frame say why): the kernel's
                      stack_trace_save_tsk_reliable() failing;
  blocked-on-stack    a patched function is on the reliable trace (which one, at which frame);
  may-switch          reliable and none of the functions on it.
Where the kernel cannot decide at all, framecert still does, and says by which rule (`rule`):
  sleeping   walked from thread.sp (the kernel's own case);
  running    walked from its frozen vCPU's registers with the metadata's CFA rule at that pc (the kernel
             refuses running tasks: klp_try_switch_task() returns -EBUSY for them);
  idle       a CPU's idle task (the kernel switches those in the idle loop, not by a stack check).
`fp_only` is what a bare frame-pointer walk would decide (the functions on the FP trace, its verdict
ignored): where it says may-switch and framecert says blocked-unreliable, a kernel that trusted the bare
walk would switch a task that may still be in old code.
"""
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .errors import GuestError
from .model import Frame, Task, WalkSummary
from .report import finish_report

KLP_UNDEFINED, KLP_UNPATCHED, KLP_PATCHED = -1, 0, 1
# The report's schema and version, its "schema" field (docs/schemas/patch-check.schema.json); livepatch.py's
# --kernel-compare report is the same report with `kernel_compare` added.
SCHEMA = "framecert-patch-check/1"


def _rule(task: Task) -> str:
    if task.idle:
        return "idle"
    return "running" if task.running else "sleeping"


def _first_on_stack(frames: List[Frame], functions) -> Tuple[Optional[str], Optional[int]]:
    for i, f in enumerate(frames):
        if f.symbol in functions:
            return f.symbol, i
    return None, None


def decide(task: Task, functions: Iterable[str]) -> dict:
    """One task of a walk report -> its decision record (the contract's fields plus rule and fp_only)."""
    functions = set(functions)
    func, frame = _first_on_stack(task.frames, functions)
    fp_only = "blocked-on-stack" if func else "may-switch"
    shadow = task.truths.get("shadow")
    out = {"pid": task.pid, "tgid": task.tgid, "ppid": task.ppid, "comm": task.comm,
           "rule": _rule(task),
           "function": None, "frame": None, "reason": None, "fp_only": fp_only,
           "patch_state": task.patch_state,
           # The independent truth on the trace the decision stands on (truth.py), when one ran.
           "truth": shadow.verdict if shadow else "not-run",
           "false_reliable": task.false_reliable}
    if task.user_mode:
        # Stopped in user space: no kernel function can be on its kernel stack (only the user pt_regs are).
        out["decision"] = "may-switch"
        out["rule"] = "user-mode"
    elif not task.reliable:
        out.update(decision="blocked-unreliable", reason=task.reason, frame=task.reason_frame)
    elif func:
        out.update(decision="blocked-on-stack", function=func, frame=frame)
    else:
        out["decision"] = "may-switch"
    return out


def summarize(decisions) -> dict:
    s: Dict[str, Any] = {"tasks": len(decisions), "may_switch": 0, "blocked_on_stack": 0, "blocked_unreliable": 0,
                         "by_reason": {}, "by_function": {}, "by_rule": {}}
    for d in decisions:
        s[d["decision"].replace("-", "_")] += 1
        s["by_rule"][d["rule"]] = s["by_rule"].get(d["rule"], 0) + 1
        if d["decision"] == "blocked-unreliable":
            s["by_reason"][d["reason"]] = s["by_reason"].get(d["reason"], 0) + 1
        elif d["decision"] == "blocked-on-stack":
            s["by_function"][d["function"]] = s["by_function"].get(d["function"], 0) + 1
    s["fp_only_would_switch_unreliable"] = sum(1 for d in decisions if d["decision"] == "blocked-unreliable"
                                               and d["fp_only"] == "may-switch")
    s["false_reliable"] = sum(1 for d in decisions if d["false_reliable"])
    return s


def check_functions_known(session, functions):
    """Every function name must be a symbol of vmlinux or a loaded guest module: a typo must not read as
    'no task is in it, everybody may switch'."""
    known = session.known_functions(functions)
    missing = [f for f in functions if f not in known]
    if missing:
        raise GuestError(f"unknown function(s): {', '.join(missing)} (not in vmlinux or a loaded module)")


def run_rounds(session, functions, retries: int = 0, interval: float = 1.0, progress=None, chains=None) -> dict:
    """Freezes and decides; with retries, resumes and re-freezes like the kernel's transition work until
    every task may switch or the retries run out. A task that may switch once counts as switched from then
    on (the kernel does not check it again); a task first seen in a later round starts in its parent's state,
    as klp_copy_process() makes a child inherit it: switched if the parent was, decided by its stack if not."""
    switched: dict = {}
    rounds: List[dict] = []
    seen: set = set()
    truth_rounds: List[WalkSummary] = []
    last = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(interval)
        report = finish_report(session.walk(), chains=chains)
        truth_rounds.append(report.summary)
        decisions = [decide(t, functions) for t in report.tasks]
        for d in decisions:
            key = d["pid"] or (0, d["comm"])  # the idle tasks all have pid 0
            if key not in switched and attempt and key not in seen and d.get("ppid") in switched:
                switched[key] = switched[d["ppid"]]
                d["inherited_from"] = d["ppid"]
            if key in switched:
                d.update(decision="may-switch", switched_in_round=switched[key])
            elif d["decision"] == "may-switch":
                switched[key] = attempt
            seen.add(key)
        blocked = [d for d in decisions if d["decision"] != "may-switch"]
        rounds.append({"round": attempt, "tasks": len(decisions), "blocked": len(blocked),
                       "blocked_tasks": [f"{d['pid']}:{d['comm']}" for d in blocked],
                       "freeze_to_verdict_ms": report.summary.freeze_to_verdict_ms})
        if progress:
            progress(attempt, len(decisions), len(blocked))
        last = (report, decisions)
        if not blocked:
            break
    assert last is not None  # retries >= 0: one freeze at least
    report, decisions = last
    return {"schema": SCHEMA, "functions": sorted(functions), "tasks": decisions, "summary": summarize(decisions),
            "rounds": rounds, "walk_summary": report.summary.to_json(), "truth": truth_over(truth_rounds)}


def truth_over(summaries: List[WalkSummary]) -> dict:
    """The truth accounting of every freeze of a patch-check (each decided from its own walk)."""
    out: Dict[str, Any] = {"walks": len(summaries), "false_reliable": 0, "reliable": 0, "reliable_checked": 0}
    for s in summaries:
        out["false_reliable"] += s.false_reliable
        out["reliable"] += s.reliable
        out["reliable_checked"] += s.accounting.reliable_checked if s.accounting else 0
    out["truth_coverage"] = round(out["reliable_checked"] / out["reliable"], 4) if out["reliable"] else None
    out["oracle"] = (summaries[-1].oracle or "none") if summaries else "none"
    return out


def format_truth(t: dict) -> str:
    if t["oracle"] == "none":
        return "truth: no independent oracle ran (--oracle none)"
    cov = f"{t['truth_coverage']:.1%}" if t["truth_coverage"] is not None else "n/a"
    return (f"truth ({t['oracle']}): {t['false_reliable']} false reliable out of {t['reliable_checked']} reliable "
            f"verdicts checked (coverage {cov} of {t['reliable']}) over {t['walks']} freeze(s)")


def compare_with_kernel(decisions) -> dict:
    """framecert's decisions beside the kernel's task_struct.patch_state read from the same frozen memory
    during a patching transition (KLP_PATCHED: the kernel switched the task; KLP_UNPATCHED: not yet)."""
    cats: Dict[str, List[dict]] = {"agree-switched": [], "agree-blocked": [], "kernel-switched-framecert-blocked": [],
                                   "framecert-may-switch-kernel-not-yet": [], "no-transition": []}
    for d in decisions:
        ps = d.get("patch_state")
        if ps is None or ps == KLP_UNDEFINED:
            cats["no-transition"].append(d)
        elif ps == KLP_PATCHED:
            cats["agree-switched" if d["decision"] == "may-switch" else "kernel-switched-framecert-blocked"].append(d)
        else:
            cats["agree-blocked" if d["decision"] != "may-switch" else "framecert-may-switch-kernel-not-yet"].append(d)
    return cats


def format_table(result: dict) -> str:
    lines = [f"{'PID':>6} {'COMM':<16} {'RULE':<9} {'DECISION':<19} {'WHY':<34} {'BARE-FP':<17} KERNEL"]
    for d in result["tasks"]:
        if d["decision"] == "blocked-on-stack":
            why = f"{d['function']} at frame {d['frame']}"
        elif d["decision"] == "blocked-unreliable":
            why = f"{d['reason']} at frame {d['frame']}"
        else:
            why = ""
        ps = {None: "", KLP_UNDEFINED: "", KLP_UNPATCHED: "unpatched", KLP_PATCHED: "patched"}.get(
            d.get("patch_state"), str(d.get("patch_state")))
        lines.append(f"{d['pid']:>6} {d['comm']:<16} {d['rule']:<9} {d['decision']:<19} {why:<34} "
                     f"{d['fp_only']:<17} {ps}")
    s = result["summary"]
    lines.append("")
    lines.append(f"functions: {', '.join(result['functions'])}")
    lines.append(f"tasks {s['tasks']}: may-switch {s['may_switch']}, blocked-on-stack {s['blocked_on_stack']} "
                 f"{s['by_function'] or ''}, blocked-unreliable {s['blocked_unreliable']} {s['by_reason'] or ''}")
    if s["fp_only_would_switch_unreliable"]:
        lines.append(f"a bare frame-pointer walk would have let {s['fp_only_would_switch_unreliable']} of the "
                     "blocked-unreliable tasks switch")
    if len(result["rounds"]) > 1:
        lines.append("retries: blocked " + " -> ".join(str(r["blocked"]) for r in result["rounds"]))
    if result.get("truth"):
        lines.append(format_truth(result["truth"]))
    return "\n".join(lines)
