"""The walk session: freeze the guest, walk every task with the C++ guest walker, resume.

    session = WalkSession(guest)        # loads vmlinux's DWARF, symbols and metadata (before any freeze)
    report = session.walk()            # QMP stop -> vCPU registers (gdbstub) -> walk -> QMP cont
    session.close()

The C++ side (`framecert guest-walk --serve`, harness/guest/) is started and fully loaded before the freeze,
so the freeze-to-verdict time measured here is QMP stop + registers + the walk itself. The report is parsed
once into the typed model (model.WalkReport); judging it is report.py's and truth.py's business.
"""
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import guest_dir as gd
from .errors import GuestError
from .gdbstub import GdbStub
from .guest_query import known_functions, module_sections
from .metadata import guest_metadata
from .model import CfiReport, ModuleConfig, WalkConfig, WalkReport, address
from .serve import Server
from .shadow import ShadowClient


def walk_config(guest, modules: bool = True) -> WalkConfig:
    """What the walker loads for this running guest: its RAM, vmlinux, the metadata of both, and every loaded
    guest module with its section addresses (asked of the guest)."""
    meta = guest_metadata(guest.guest_dir)
    config = WalkConfig(ram=Path(guest.ram_path), vmlinux=gd.vmlinux(guest.guest_dir), metadata=meta["vmlinux"])
    if modules:
        for name, sections in module_sections(guest, [m for m in gd.MODULES if m in meta]).items():
            config.modules.append(ModuleConfig(name=name, object=gd.module_ko(guest.guest_dir, name),
                                               metadata=meta[name], sections=sections,
                                               objects=gd.module_objects(guest.guest_dir, name)))
    return config


def check_verdicts(verdicts, report: WalkReport):
    """The walker's verdict line must be the report's verdicts, task by task: the line is what a decision may
    act on first, so a difference is the walker's error, never let through."""
    if not isinstance(verdicts, list):
        raise GuestError("the guest walker sent no verdict line")
    seen = {}
    for v in verdicts:
        try:
            task, pid, reliable, reason = v
            seen[address(task)] = (int(pid), bool(reliable), reason)
        except (TypeError, ValueError, GuestError):
            raise GuestError(f"the guest walker's verdict line is malformed: {v!r}") from None
    full = {t.address: (t.pid, t.reliable, t.reason) for t in report.tasks}
    if seen != full:
        differ = sorted(hex(a) for a in set(seen) | set(full) if seen.get(a) != full.get(a))
        raise GuestError(f"the guest walker's verdict line and its report differ for tasks {', '.join(differ[:5])}")


class WalkSession:
    """A loaded guest walker (and, with cfi=True, the CFI oracle) and a gdbstub connection for one running
    Guest."""

    def __init__(self, guest, modules: bool = True, cfi: bool = False):
        self.guest = guest
        self.walker: Optional[Server] = None
        self.cfi: Optional[Server] = None
        self.shadow: Optional[ShadowClient] = None
        self.gdb: Optional[GdbStub] = None
        self._last_request: Dict[str, List[Dict[str, int]]] = {"cpus": []}
        self.config = walk_config(guest, modules)
        # The C++ side reads its configuration from a file (harness/cli/guest_request.h).
        self._tmp = tempfile.TemporaryDirectory(prefix="framecert-walk-")
        self.config_path = Path(self._tmp.name) / "config.json"
        self.config_path.write_text(json.dumps(self.config.to_json()))
        try:
            self.walker = Server("guest-walk", self.config_path, "the guest walker")
            self.prepare_ms = self.walker.ready.get("prepare_ms")
            # The CFI oracle (framecert guest-cfi): the same config and register requests, its own unwinder.
            self.cfi = Server("guest-cfi", self.config_path, "the CFI oracle") if cfi else None
            # Connecting pauses the VM (QEMU's gdbstub does that on attach): resume it unless it was paused.
            was_running = guest.qmp("query-status").get("running", False)
            # The ground truth, when the guest runs the shadow-stack plugin: read while the guest is frozen.
            self.shadow = ShadowClient(guest.shadow_socket) if getattr(guest, "shadow_socket", None) else None
            self.gdb = GdbStub(guest.gdb_socket)
            self.gdb.request("?")
            self.gdb.vcpu_threads()
            if was_running:
                guest.qmp("cont")
        except BaseException:
            self.close()
            raise

    def known_functions(self, names) -> set:
        return known_functions(self.guest, names)

    def close(self):
        for name in ("cfi", "shadow", "gdb", "walker"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
                setattr(self, name, None)
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def walk_frozen(self) -> WalkReport:
        """The guest must be stopped: reads the registers and walks."""
        if self.walker is None or self.gdb is None:
            raise GuestError("the walk session is closed")
        t0 = time.perf_counter()
        regs = self.gdb.registers()
        t1 = time.perf_counter()
        req = {"cpus": [r.request() for r in regs]}
        # Every task's verdict comes first, in a small line of its own; then the report with the frames.
        verdicts, _ = self.walker.request_line({**req, "verdicts_first": True})
        self.verdicts_at = time.perf_counter()
        answer, line = self.walker.next_line()
        t2 = time.perf_counter()
        report = WalkReport.from_json(answer)
        t3 = time.perf_counter()
        check_verdicts(verdicts.get("verdicts"), report)
        self._last_request = req
        s = report.summary
        s.registers_ms, s.walker_roundtrip_ms, s.parse_ms = (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000
        s.report_bytes = len(line)
        report.registers = regs
        return report

    verdicts_at = 0.0  # perf_counter() when the last walk's verdict line arrived

    def walk(self, while_frozen: Optional[Callable[[WalkReport], None]] = None) -> WalkReport:
        """Freeze, walk, run while_frozen(report) (e.g. dump memory, corrupt and restore), resume."""
        t0 = time.perf_counter()
        self.guest.qmp("stop")
        stopped = time.perf_counter()
        try:
            report = self.walk_frozen()
            report.summary.stop_ms = (stopped - t0) * 1000
            report.summary.freeze_to_report_ms = (time.perf_counter() - t0) * 1000
            report.summary.freeze_to_verdict_ms = (self.verdicts_at - t0) * 1000
            # Not part of freeze-to-verdict: the truth is for checking, not for deciding.
            report.shadow = self.shadow.snapshot() if self.shadow else None
            if self.cfi:
                report.cfi = CfiReport.from_json(self.cfi.request_line(self._last_request)[0])
            if while_frozen:
                while_frozen(report)
        finally:
            self.guest.qmp("cont")
        return report
