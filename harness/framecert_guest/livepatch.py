"""`patch-check --kernel-compare`: framecert's decisions beside the kernel's own livepatch transition.

The guest's fcpatch.ko (guest/livepatch) patches fctest's fc_block_wait and fc_noframe_caller. Before loading
it, fctest's naps are made long (20 s), so every task sleeping in a patched function stays there through the
comparison. Then: insmod fcpatch.ko (the kernel tries every task at once, then retries every second), freeze,
walk every task and read each task's task_struct.patch_state from the same frozen memory. The kernel's state
for a task is exact at that moment; what it cannot tell is *why* a task is still unpatched (its stack was
unreliable, a patched function was on it, it was running, or it was not retried yet).

Categories (compare_with_kernel): both switched; both blocked; the kernel switched a task framecert blocks
(with the ground truth of known_chains.py: `kernel_unsafe` when the task's true chain holds a patched
function, i.e. the kernel's frame-pointer walk missed it); framecert would switch a task the kernel has not
switched yet.
"""
import time

from . import known_chains, patch_check
from .errors import GuestError
from .report import finish_report
from .walk import WalkSession

PATCH = "fcpatch"
PATCHED_FUNCTIONS = ["fc_block_wait", "fc_noframe_caller"]
LONG_NAP_MS = 20000


def compare(guest, functions, settle: float = 1.0, cfi: bool = False) -> dict:
    guest.command(f"echo {LONG_NAP_MS} > /sys/module/fctest/parameters/nap_ms")
    time.sleep(max(settle, 1.5))  # every fctest sleeper finishes its 1 s nap and starts a long one
    guest.command(f"insmod /lib/modules/{PATCH}.ko")
    t_loaded = time.monotonic()
    with WalkSession(guest, cfi=cfi) as session:  # after the insmod: fcpatch's own code has metadata too
        patch_check.check_functions_known(session, functions)
        report = session.walk()
        frozen_after_s = time.monotonic() - t_loaded
    truths = known_chains.load(guest.guest_dir)
    finish_report(report, chains=truths)
    decisions = [patch_check.decide(t, functions) for t in report.tasks]
    transition = guest.command(f"cat /sys/kernel/livepatch/{PATCH}/transition").strip().splitlines()
    cats = patch_check.compare_with_kernel(decisions)
    for d in cats["kernel-switched-framecert-blocked"]:
        truth = truths.get(d["comm"])
        d["kernel_unsafe"] = bool(truth and set(truth.chain) & set(functions))
    states = {d["patch_state"] for d in decisions}
    if states <= {None, patch_check.KLP_UNDEFINED}:
        raise GuestError("no livepatch transition was in progress at the freeze (patch_state -1 everywhere): "
                         "the transition finished before the walk, or fcpatch.ko did not load")
    blocked = [d for d in decisions if d["decision"] != "may-switch"]
    return {"schema": patch_check.SCHEMA, "functions": sorted(functions), "tasks": decisions,
            "summary": patch_check.summarize(decisions),
            "rounds": [{"round": 0, "tasks": len(decisions), "blocked": len(blocked),
                        "blocked_tasks": [f"{d['pid']}:{d['comm']}" for d in blocked],
                        "freeze_to_verdict_ms": report.summary.freeze_to_verdict_ms}],
            "walk_summary": report.summary.to_json(), "truth": patch_check.truth_over([report.summary]),
            "kernel_compare": {
                "frozen_after_insmod_s": round(frozen_after_s, 2),
                "transition_after_walk": transition[-1] if transition else None,
                "counts": {k: len(v) for k, v in cats.items()},
                "tasks": {k: [f"{d['pid']}:{d['comm']}" for d in v] for k, v in cats.items()},
                "kernel_unsafe": [f"{d['pid']}:{d['comm']}" for d in cats["kernel-switched-framecert-blocked"]
                                  if d["kernel_unsafe"]],
            }}


def format_comparison(result: dict) -> str:
    kc = result["kernel_compare"]
    c = kc["counts"]
    lines = ["", f"kernel livepatch transition of {PATCH} ({', '.join(result['functions'])}), frozen "
                 f"{kc['frozen_after_insmod_s']} s after insmod; transition flag after the walk: "
                 f"{kc['transition_after_walk']}",
             f"  both switched:                        {c['agree-switched']}",
             f"  both blocked:                         {c['agree-blocked']}",
             f"  kernel switched, framecert blocks:    {c['kernel-switched-framecert-blocked']}  "
             f"{', '.join(kc['tasks']['kernel-switched-framecert-blocked'])}",
             f"  framecert may switch, kernel not yet: {c['framecert-may-switch-kernel-not-yet']}  "
             f"{', '.join(kc['tasks']['framecert-may-switch-kernel-not-yet'][:12])}",
             f"  no transition state:                  {c['no-transition']}"]
    if kc["kernel_unsafe"]:
        lines.append(f"  UNSAFE kernel switches (a patched function is on the task's true chain): "
                     f"{', '.join(kc['kernel_unsafe'])}")
    return "\n".join(lines)
