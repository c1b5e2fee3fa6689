"""The guest's ground truth: the call chains fctest.ko's and fcregress.ko's kthreads really sleep in
(expected-chains.json, regress-expected.json in the guest directory), as an oracle for every walk.

A trace of one of these kthreads that is called reliable must not skip any frame of its true chain: if it
shows chain[j], it must show chain[0..j] as its outermost frames, in order. (It may stop short of the chain's
end or go elsewhere below it: a kthread caught between two naps is in kthread_should_stop, or running.) A
planted bug's kthread asleep in its chain cannot pass: the frame-pointer trace skips (or loses) the top of
the chain. A violation is a false reliable.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .model import Accounting, Task, TruthVerdict, WalkReport


@dataclass
class KnownChain:
    """A kthread's true chain, outermost first down to the function it naps in; `sleeps_in`: the kernel's
    frames below that while it sleeps (innermost last)."""
    chain: List[str]
    verdict: str
    sleeps_in: List[str] = field(default_factory=list)
    function: Optional[str] = None  # the regression variant's function


def thread_entry(guest_dir: Path) -> List[str]:
    """The kernel's frames above ret_from_fork in a kthread's chain: none up to 6.6; since 6.7 the assembly
    ret_from_fork_asm calls the C ret_from_fork (read from the guest kernel's System.map, not its version)."""
    try:
        symbols = (Path(guest_dir) / "linux" / "System.map").read_text()
    except OSError:
        return []
    return ["ret_from_fork_asm"] if " ret_from_fork_asm\n" in symbols else []


def load(guest_dir: Path) -> Dict[str, KnownChain]:
    """comm -> its known chain, from expected-chains.json (fctest) and regress-expected.json (fcregress)."""
    out = {}
    entry = thread_entry(guest_dir)

    def chain(frames: List[str]) -> List[str]:
        return entry + frames if frames[:1] == ["ret_from_fork"] else frames
    fctest = json.loads((Path(guest_dir) / "expected-chains.json").read_text())["kthreads"]
    for comm, e in fctest.items():
        out[comm] = KnownChain(chain(e["chain"]), e["verdict"], e.get("sleeps_in", []))
    regress = Path(guest_dir) / "regress-expected.json"
    if regress.is_file():
        r = json.loads(regress.read_text())
        for comm, e in r["kthreads"].items():
            out[comm] = KnownChain(chain(e["chain"]), e["verdict"], r["sleeps_in"], e["function"])
    return out


def outermost_first(task: Task) -> List[Optional[str]]:
    return task.outermost_first()


def violation(task: Task, truth: Optional[KnownChain]) -> Optional[str]:
    """Why this reliable trace cannot be right, or None."""
    if not task.reliable or truth is None:
        return None
    trace = outermost_first(task)
    chain = truth.chain
    deepest = max((j for j, f in enumerate(chain) if f in trace), default=-1)
    if deepest >= 0 and trace[:deepest + 1] != chain[:deepest + 1]:
        return f"reliable trace {trace} skips frames of the true chain {chain}"
    return None


def judge(task: Task, truth: KnownChain) -> TruthVerdict:
    """The known chain's verdict on a reliable trace. `full`: the kthread was asleep in its nap, so the whole
    trace is known — its chain then the kernel's sleeping frames — and must equal it frame for frame (kernel
    frames included); otherwise only the module part is checked."""
    why = violation(task, truth)
    if why:
        return TruthVerdict("disagree", why, full=False)
    trace = outermost_first(task)
    whole = truth.chain + truth.sleeps_in
    if task.reliable and truth.sleeps_in and trace and trace[-1] == whole[-1] and truth.chain[-1] in trace:
        if trace != whole:
            return TruthVerdict("disagree", f"reliable trace {trace} is not the whole known chain {whole}", full=True)
        return TruthVerdict("agree", f"the whole chain, {len(whole)} frames", full=True)
    return TruthVerdict("agree", "the module part of the chain only", full=False)


def check(report: WalkReport, truths: Dict[str, KnownChain]) -> int:
    """Marks every task whose reliable trace contradicts the ground truth (`truth_violation`, and
    `false_reliable`); returns how many were newly marked."""
    marked = 0
    for t in report.tasks:
        why = violation(t, truths.get(t.comm)) if t.kthread else None
        if why:
            t.truth_violation = why
            if not t.false_reliable:
                t.false_reliable = True
                marked += 1
    if marked:
        if report.summary.accounting is None:
            report.summary.accounting = Accounting()
        report.summary.accounting.false_reliable += marked
    return marked


def expected_unreliable(guest_dir: Path) -> Dict[str, Optional[str]]:
    """The kthreads whose traces must be unreliable (planted bugs: fctest's entries with verdict unreliable,
    fcregress's of kind "bug"): comm -> the expected reason, None where any reason will do."""
    out: Dict[str, Optional[str]] = {}
    fctest = json.loads((Path(guest_dir) / "expected-chains.json").read_text())["kthreads"]
    for comm, e in fctest.items():
        if e.get("verdict") == "unreliable":
            out[comm] = e.get("reason")
    regress = Path(guest_dir) / "regress-expected.json"
    if regress.is_file():
        for comm, e in json.loads(regress.read_text())["kthreads"].items():
            if e.get("kind") == "bug":
                out[comm] = e.get("reason")
    return dict(sorted(out.items()))
