"""Honest accounting of a walk: which independent truth checked which verdict.

Every task of a walk report gets `truths`: {name: {"verdict": "agree" | "disagree" | "no-truth" |
"not-run", "detail"}} for each truth:

- `shadow`     — the emulator's shadow call stacks (shadow.py): independent of frame pointers and metadata;
- `known_chain` — the guest's own kthreads parked on known chains (known_chains.py); it checks only the
                  part of the chain it knows, so its "agree" does not count as coverage;
- `drgn`, `crash` — external tools on a dump (crosscheck.py); drgn falls back to following rbp where a
                  function has no CFI, so their "agree" does not count as coverage either;

and the metadata-only walk's result as `self_consistency` (it reads the same metadata the walker used, and a
reliable verdict it disagrees with is already demoted by the unwinder: it can never reveal a false reliable).

The summary: `false_reliable` (reliable verdicts any truth contradicts), `truth_coverage` (the fraction of
reliable verdicts that a truth which counts — the shadow — checked), `no_truth` (why the others were not),
`self_consistency`, and per reason how many unreliable traces the shadow shows to be complete and right
(candidates for false unreliables).
"""
from . import known_chains, shadow

COVERING = ("shadow",)                # truths whose "agree" proves a reliable verdict
ALL = ("shadow", "known_chain", "drgn", "crash")


def _verdict(v, detail=""):
    return {"verdict": v, "detail": detail}


def attach(report: dict, snap=None, chains=None, drgn=None, crash=None) -> dict:
    """Fills every task's `truths` and the summary's accounting; returns the report."""
    thread_size = report.get("thread_size", 16384)
    regs = report.get("registers", [])
    for t in report["tasks"]:
        truths = {}
        truths["shadow"] = shadow.judge(t, snap, regs, thread_size) if snap else _verdict("not-run")
        if chains is not None and t.get("kthread", True) and t["comm"] in chains:
            why = known_chains.violation(t, chains[t["comm"]])
            truths["known_chain"] = _verdict("disagree", why) if why else _verdict("agree")
        else:
            truths["known_chain"] = _verdict("not-run" if chains is None else "no-truth", "no known chain")
        for name, result in (("drgn", drgn), ("crash", crash)):
            got = (result or {}).get(str(t.get("task")))
            truths[name] = _verdict(got["verdict"], got.get("detail", "")) if got else _verdict("not-run")
        t["truths"] = truths
        cfa = t.get("cfa_check")
        if cfa and (t["reliable"] or cfa["frame_count"]):
            t["self_consistency"] = "agree" if cfa["agrees"] else "disagree"
        else:
            t["self_consistency"] = "not-run"
        contradicted = [n for n in ALL if truths[n]["verdict"] == "disagree"]
        t["false_reliable"] = bool(t["reliable"] and contradicted)
        if t["false_reliable"]:
            t["truth_violation"] = "; ".join(f"{n}: {truths[n]['detail']}" for n in contradicted)
    report["summary"].update(summarize(report["tasks"], oracle_ran=snap is not None))
    return report


def summarize(tasks: list, oracle_ran: bool = True) -> dict:
    reliable = [t for t in tasks if t["reliable"]]
    checked = [t for t in reliable if any(t["truths"][n]["verdict"] in ("agree", "disagree") for n in COVERING)]
    no_truth = {}
    for t in reliable:
        if t not in checked:
            why = t["truths"]["shadow"]["detail"] or t["truths"]["shadow"]["verdict"]
            no_truth[why] = no_truth.get(why, 0) + 1
    complete_but_unreliable = {}
    for t in tasks:
        if not t["reliable"] and t["truths"]["shadow"]["verdict"] == "agree":
            complete_but_unreliable[t["reason"]] = complete_but_unreliable.get(t["reason"], 0) + 1
    consistency = {"agree": 0, "disagree": 0}
    for t in tasks:
        if t["self_consistency"] in consistency:
            consistency[t["self_consistency"]] += 1
    return {
        "false_reliable": sum(1 for t in tasks if t["false_reliable"]),
        "reliable_checked": len(checked),
        "truth_coverage": (round(len(checked) / len(reliable), 4) if reliable else None) if oracle_ran else 0.0,
        "shadow_agree_reliable": sum(1 for t in reliable if t["truths"]["shadow"]["verdict"] == "agree"),
        "no_truth": dict(sorted(no_truth.items())),
        "unreliable_shadow_complete": dict(sorted(complete_but_unreliable.items())),
        "self_consistency": consistency,
    }
