"""The harness as a library: what `framecert-guest walk`, `patch-check` and `stress` do, returning typed results
instead of printing them. The `framecert` package (harness/framecert) re-exports it:

    import framecert
    with framecert.Guest() as guest:          # the guest for these sources (built or cached), booted
        report = guest.walk()                 # every task frozen at one moment, walked and judged
        for task in report.tasks:
            print(task.pid, task.comm, "reliable" if task.reliable else task.reason)
        check = guest.patch_check(["fc_block_wait"])
        print(check.may_switch, "may switch,", check.blocked, "blocked")
    result = framecert.stress(rounds=20, seed=1)   # boots its own guest
    assert result.false_reliable == 0
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from . import known_chains, patch_check as pc, provenance, qemu, stress as stress_runs
from .build import build
from .errors import UsageError
from .model import WalkReport
from .report import finish_report
from .truth import ORACLES, uses_cfi, uses_shadow
from .walk import WalkSession


def _check_oracle(oracle: str):
    if oracle not in ORACLES:
        raise UsageError(f"unknown oracle {oracle!r} (known: {', '.join(ORACLES)})")


@dataclass(frozen=True)
class Truth:
    """What an independent truth said of the reliable verdicts it checked (docs/verdicts.md, "Truth")."""
    oracle: str
    false_reliable: int
    reliable: int
    reliable_checked: int
    coverage: Optional[float]  # reliable_checked / reliable; None when nothing was reliable


@dataclass(frozen=True)
class Decision:
    """One task's live-patch decision (docs/design.md: klp_try_switch_task's rule on framecert's trace)."""
    pid: int
    comm: str
    decision: str                   # "may-switch", "blocked-on-stack" or "blocked-unreliable"
    function: Optional[str] = None  # blocked-on-stack: the patched function on the stack
    reason: Optional[str] = None    # blocked-unreliable: the verdict's reason


@dataclass(frozen=True)
class PatchCheck:
    functions: List[str]
    decisions: List[Decision]
    truth: Truth
    raw: dict = field(repr=False)  # the JSON report of `patch-check --json`

    @property
    def may_switch(self) -> int:
        return sum(d.decision == "may-switch" for d in self.decisions)

    @property
    def blocked(self) -> int:
        return len(self.decisions) - self.may_switch


@dataclass(frozen=True)
class Stress:
    rounds: int
    seed: int
    workload: str
    tasks_walked: int
    reliable: int
    unreliable: int
    false_reliable: int
    harness_errors: int
    by_reason: Dict[str, int]
    truth_coverage: Optional[float]
    raw: dict = field(repr=False)  # the JSON report of `stress --json` (every round)
    # What the run stands on, as `stress --json` records it: framecert build, guest key, profile, the call.
    provenance: Dict[str, object] = field(default_factory=dict)


class Guest:
    """A booted guest (the one built for these sources, or `guest_dir`) and a walk session on it; use it as a
    context manager: entering boots it and waits until it is ready, leaving stops QEMU."""

    def __init__(self, guest_dir: Union[str, Path, None] = None, smp: int = 2, oracle: str = "shadow",
                 timeout: float = 300):
        _check_oracle(oracle)
        self.guest_dir = Path(guest_dir) if guest_dir else Path(build())
        self.oracle = oracle
        self._timeout = timeout
        self._guest = qemu.Guest(self.guest_dir, smp=smp, shadow=uses_shadow(oracle))
        self._session: Optional[WalkSession] = None

    def __enter__(self) -> "Guest":
        self._guest.__enter__()
        try:
            self._guest.wait_ready(timeout=self._timeout)
            self._session = WalkSession(self._guest, cfi=uses_cfi(self.oracle)).__enter__()
        except BaseException:
            self._guest.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._session is not None:
                self._session.__exit__(*exc)
        finally:
            self._session = None
            self._guest.__exit__(*exc)

    def _live(self) -> WalkSession:
        if self._session is None:
            raise UsageError("the guest is not running: use it as `with framecert.Guest() as guest:`")
        return self._session

    def walk(self) -> WalkReport:
        """Freezes the guest, walks and judges every task, resumes; every verdict checked by the oracle."""
        return finish_report(self._live().walk(), chains=known_chains.load(self.guest_dir))

    def patch_check(self, functions: Sequence[str], retries: int = 0, interval: float = 1.0) -> PatchCheck:
        """May a live patch of `functions` switch each task now (with kernel-style retries)?"""
        if not functions:
            raise UsageError("patch_check needs the patched functions")
        session = self._live()
        pc.check_functions_known(session, list(functions))
        raw = pc.run_rounds(session, list(functions), retries=retries, interval=interval,
                            chains=known_chains.load(self.guest_dir))
        return PatchCheck(functions=raw["functions"],
                          decisions=[Decision(d["pid"], d["comm"], d["decision"], d.get("function"), d.get("reason"))
                                     for d in raw["tasks"]],
                          truth=Truth(raw["truth"]["oracle"], raw["truth"]["false_reliable"], raw["truth"]["reliable"],
                                      raw["truth"]["reliable_checked"], raw["truth"]["truth_coverage"]),
                          raw=raw)


def walk(guest_dir: Union[str, Path, None] = None, oracle: str = "shadow") -> WalkReport:
    """Boots a guest, walks it once, stops it."""
    with Guest(guest_dir, oracle=oracle) as guest:
        return guest.walk()


def patch_check(functions: Sequence[str], guest_dir: Union[str, Path, None] = None, retries: int = 0,
                oracle: str = "shadow") -> PatchCheck:
    """Boots a guest, decides once (plus `retries`), stops it."""
    with Guest(guest_dir, oracle=oracle) as guest:
        return guest.patch_check(functions, retries=retries)


def stress(rounds: int, seed: int = 1, workload: str = "storm", oracle: str = "shadow", smp: int = 2,
           guest_dir: Union[str, Path, None] = None) -> Stress:
    """`framecert-guest stress`: `rounds` seeded freezes under `workload`, every task walked and checked."""
    _check_oracle(oracle)
    stress_runs.check_workload(workload)
    if rounds < 1:
        raise UsageError("rounds must be at least 1")
    directory = Path(guest_dir) if guest_dir else Path(build())
    raw = stress_runs.run(directory, stress_runs.select_rounds(rounds), seed, smp=smp, workload=workload, oracle=oracle)
    call = ["framecert.stress", f"rounds={rounds}", f"seed={seed}", f"workload={workload}", f"oracle={oracle}",
            f"smp={smp}", f"guest_dir={directory}"]
    raw["summary"].update(provenance.describe_run(directory, rounds, (1, 1), (0, 1), call))
    s = raw["summary"]
    return Stress(rounds=s["rounds"], seed=s["seed"], workload=s["workload"], tasks_walked=s["tasks_walked"],
                  reliable=s["reliable"], unreliable=s["unreliable"], false_reliable=s["false_reliable"],
                  harness_errors=s["harness_errors"], by_reason=dict(s["by_reason"]),
                  truth_coverage=s.get("truth_coverage"), raw=raw, provenance=dict(s["provenance"]))
