"""The typed model of what the harness handles: the guest walker's configuration, its report (tasks, frames,
verdicts, summary), the CFI oracle's answer, the vCPU registers, and the truths the harness adds.

The C++ side (`framecert guest-walk`, `framecert guest-cfi`; docs/design.md "JSON of a walk") speaks JSON;
it is parsed here, once, by `WalkReport.from_json` / `CfiReport.from_json`, and every other module reads
attributes. Addresses are ints here (the JSON has "0x..." strings). `to_json()` gives back the same schema,
plus the harness's own additions (`truths`, `self_consistency`, `false_reliable`, `crosscheck`, timings and
the accounting in the summary), which is what `framecert-guest walk --json` writes: the schema
framecert-guest-walk/1 (docs/schemas/guest-walk.schema.json, named by the report's "schema" field). Keys this
model does not know are kept (`extra`) and written back unchanged, so a field the C++ side adds is never lost.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import GuestError

Json = Dict[str, Any]

# The walk report's schema and version, its "schema" field (docs/schemas/guest-walk.schema.json): what
# `framecert guest-walk` writes, and what to_json() writes back with the harness's additions.
GUEST_WALK_SCHEMA = "framecert-guest-walk/1"


def address(value: Any) -> int:
    """A number of the walker's JSON: an int, or a "0x..." string (also "0": a null pointer)."""
    if isinstance(value, bool) or value is None:
        raise GuestError(f"not an address: {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        raise GuestError(f"not an address: {value!r}") from None


def _extra(data: Json, known) -> Json:
    return {k: v for k, v in data.items() if k not in known}


# ---- the walker's input ----
@dataclass
class ModuleConfig:
    """A loaded guest module: its .ko, its metadata (sections at 0), where the guest loaded each section, and
    the objects linked into it (their STACK_FRAME_NON_STANDARD annotations; the .ko drops them)."""
    name: str
    object: Path
    metadata: Path
    sections: Dict[str, int]
    objects: List[Path] = field(default_factory=list)

    def to_json(self) -> Json:
        return {"name": self.name, "object": str(self.object), "metadata": str(self.metadata),
                "sections": {s: hex(a) for s, a in self.sections.items()}, "objects": [str(o) for o in self.objects]}


@dataclass
class WalkConfig:
    """What `framecert guest-walk` and `guest-cfi` load before the freeze (harness/cli/guest_walk_command.cpp)."""
    ram: Path
    vmlinux: Path
    metadata: Path
    modules: List[ModuleConfig] = field(default_factory=list)

    def to_json(self) -> Json:
        return {"ram": str(self.ram), "vmlinux": str(self.vmlinux), "metadata": str(self.metadata),
                "modules": [m.to_json() for m in self.modules]}


@dataclass
class Registers:
    """One vCPU's registers at the freeze (from the gdbstub)."""
    cpu: int
    rip: int = 0
    rsp: int = 0
    rbp: int = 0
    cs: int = 0
    cr3: int = 0
    extra: Json = field(default_factory=dict)  # the gdbstub's other registers

    @classmethod
    def from_json(cls, data: Json) -> "Registers":
        known = ("cpu", "rip", "rsp", "rbp", "cs", "cr3")
        return cls(cpu=int(data["cpu"]), **{k: address(data.get(k, 0)) for k in known[1:]},
                   extra=_extra(data, known))

    def request(self) -> Json:
        """The walker's register request for this vCPU."""
        return {"cpu": self.cpu, "rip": self.rip, "rsp": self.rsp, "rbp": self.rbp, "cs": self.cs, "cr3": self.cr3}

    def to_json(self) -> Json:
        """The registers in a report: every value "0x..." like the report's other addresses."""
        regs = {**self.extra, **self.request()}
        return {k: hex(v) if isinstance(v, int) and not isinstance(v, bool) and k != "cpu" else v
                for k, v in regs.items()}


# ---- the walker's report ----
@dataclass
class Frame:
    pc: int
    symbol: Optional[str] = None
    offset: int = 0
    object: str = ""
    trust: Optional[str] = None  # None: the walker's report gave none
    sp: int = 0
    fp: int = 0
    call_at_end: bool = False  # a return address right after its function's last call (see guest_walk_command)
    extra: Json = field(default_factory=dict)

    KNOWN = ("pc", "symbol", "offset", "object", "trust", "sp", "fp", "call_at_end")

    @classmethod
    def from_json(cls, data: Json) -> "Frame":
        return cls(pc=address(data["pc"]), symbol=data.get("symbol"), offset=int(data.get("offset") or 0),
                   object=data.get("object", ""), trust=data.get("trust"), sp=address(data.get("sp", 0)),
                   fp=address(data.get("fp", 0)), call_at_end=bool(data.get("call_at_end", False)),
                   extra=_extra(data, cls.KNOWN))

    def name(self) -> str:
        """symbol+0xoff, or the pc where there is no symbol."""
        return f"{self.symbol}+{self.offset:#x}" if self.symbol else hex(self.pc)

    def to_json(self) -> Json:
        return {**self.extra, "pc": hex(self.pc), "symbol": self.symbol, "offset": self.offset, "object": self.object,
                "trust": self.trust, "sp": hex(self.sp), "fp": hex(self.fp), "call_at_end": self.call_at_end}


def _frames(data) -> List[Frame]:
    return [Frame.from_json(f) for f in data or []]


@dataclass
class CfaCheck:
    """The metadata-only walk beside the frame-pointer walk (a self-consistency check, never a truth)."""
    agrees: bool
    frame_count: int
    reliable: bool = False
    reason: Optional[str] = None
    reason_frame: Optional[int] = None
    detail: str = ""
    frames: Optional[List[Frame]] = None  # only where it differs
    extra: Json = field(default_factory=dict)

    KNOWN = ("agrees", "frame_count", "reliable", "reason", "reason_frame", "detail", "frames")

    @classmethod
    def from_json(cls, data: Json) -> "CfaCheck":
        return cls(agrees=bool(data["agrees"]), frame_count=int(data.get("frame_count", 0)),
                   reliable=bool(data.get("reliable", False)), reason=data.get("reason"),
                   reason_frame=data.get("reason_frame"), detail=data.get("detail", ""),
                   frames=_frames(data["frames"]) if "frames" in data else None, extra=_extra(data, cls.KNOWN))

    def to_json(self) -> Json:
        out: Json = {**self.extra, "reliable": self.reliable, "reason": self.reason, "reason_frame": self.reason_frame,
                     "detail": self.detail, "agrees": self.agrees, "frame_count": self.frame_count}
        if self.frames is not None:
            out["frames"] = [f.to_json() for f in self.frames]
        return out


@dataclass
class TruthVerdict:
    """One independent truth's verdict on a trace (truth.py): agree, disagree, no-truth or not-run."""
    verdict: str
    detail: str = ""
    full: Optional[bool] = None  # whether the whole trace was checked (where the truth can tell)
    evidence: Json = field(default_factory=dict)  # e.g. the shadow's entries, drgn's frames

    def to_json(self) -> Json:
        out: Json = {"verdict": self.verdict, "detail": self.detail}
        if self.full is not None:
            out["full"] = self.full
        out.update(self.evidence)
        return out


@dataclass
class Task:
    """One task of a walk: who it is, where its stack is, the trace and its verdict; and, once the harness
    has done its accounting (truth.attach), what each truth says of it."""
    address: int = 0  # task_struct
    pid: int = 0
    tgid: int = 0
    ppid: Optional[int] = None
    comm: str = ""
    state: Any = None  # __state (an int); None: the walker's report gave none
    cpu: int = -1
    running: bool = False
    vcpu: int = -1
    user_mode: bool = False
    on_cpu: Any = None
    kthread: bool = True
    idle: bool = False
    stack: int = 0
    thread_sp: int = 0
    switches: Optional[int] = None
    note: str = ""
    patch_state: Optional[int] = None
    reliable: bool = False
    reason: Optional[str] = None
    reason_frame: Optional[int] = None
    detail: str = ""
    frames: List[Frame] = field(default_factory=list)
    cfa_check: Optional[CfaCheck] = None
    extra: Json = field(default_factory=dict)
    # The harness's accounting (truth.attach, report.finish_report).
    truths: Dict[str, TruthVerdict] = field(default_factory=dict)
    self_consistency: str = "not-run"
    false_reliable: bool = False
    truth_violation: Optional[str] = None
    crosscheck: Dict[str, str] = field(default_factory=dict)

    KNOWN = ("task", "pid", "tgid", "ppid", "comm", "state", "cpu", "running", "vcpu", "user_mode", "on_cpu",
             "kthread", "idle", "stack", "thread_sp", "switches", "note", "patch_state", "reliable", "reason",
             "reason_frame", "detail", "frames", "cfa_check")

    @classmethod
    def from_json(cls, data: Json) -> "Task":
        try:
            return cls(address=address(data.get("task", 0)), pid=int(data.get("pid", 0)),
                       tgid=int(data.get("tgid", 0)), ppid=data.get("ppid"), comm=data.get("comm", ""),
                       state=data.get("state"), cpu=int(data.get("cpu", -1)),
                       running=bool(data.get("running", False)), vcpu=int(data.get("vcpu", -1)),
                       user_mode=bool(data.get("user_mode", False)), on_cpu=data.get("on_cpu"),
                       kthread=bool(data.get("kthread", True)), idle=bool(data.get("idle", False)),
                       stack=address(data.get("stack", 0)), thread_sp=address(data.get("thread_sp", 0)),
                       switches=data.get("switches"), note=data.get("note", ""), patch_state=data.get("patch_state"),
                       reliable=bool(data.get("reliable", False)), reason=data.get("reason"),
                       reason_frame=data.get("reason_frame"), detail=data.get("detail", ""),
                       frames=_frames(data.get("frames")),
                       cfa_check=CfaCheck.from_json(data["cfa_check"]) if data.get("cfa_check") else None,
                       extra=_extra(data, cls.KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise GuestError(f"bad task in the walker's report ({e.__class__.__name__}: {e})") from None

    @property
    def key(self) -> str:
        """pid:comm, how reports name a task."""
        return f"{self.pid}:{self.comm}"

    def outermost_first(self) -> List[Optional[str]]:
        return [f.symbol for f in reversed(self.frames)]

    def to_json(self) -> Json:
        out = {**self.extra, "pid": self.pid, "tgid": self.tgid, "ppid": self.ppid, "comm": self.comm,
               "state": self.state, "cpu": self.cpu, "running": self.running, "vcpu": self.vcpu,
               "user_mode": self.user_mode, "on_cpu": self.on_cpu, "kthread": self.kthread, "idle": self.idle,
               "task": hex(self.address), "stack": hex(self.stack), "thread_sp": hex(self.thread_sp),
               "switches": self.switches, "note": self.note, "patch_state": self.patch_state,
               "reliable": self.reliable, "reason": self.reason, "reason_frame": self.reason_frame,
               "detail": self.detail, "frames": [f.to_json() for f in self.frames]}
        if self.cfa_check is not None:
            out["cfa_check"] = self.cfa_check.to_json()
        if self.truths:
            out["truths"] = {n: v.to_json() for n, v in self.truths.items()}
            out["self_consistency"] = self.self_consistency
            out["false_reliable"] = self.false_reliable
        if self.truth_violation is not None:
            out["truth_violation"] = self.truth_violation
        if self.crosscheck:
            out["crosscheck"] = dict(self.crosscheck)
        return out


@dataclass
class Accounting:
    """The truth accounting of one walk (truth.summarize); flattened into the summary's JSON."""
    false_reliable: int = 0
    reliable_checked: int = 0
    truth_coverage: Optional[float] = 0.0
    cfi_complete_reliable: int = 0
    shadow_agree_reliable: int = 0
    no_truth: Dict[str, int] = field(default_factory=dict)
    unreliable_shadow_complete: Dict[str, int] = field(default_factory=dict)
    self_consistency: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> Json:
        return dict(self.__dict__)


@dataclass
class WalkSummary:
    tasks: int = 0
    reliable: int = 0
    unreliable: int = 0
    by_reason: Dict[str, int] = field(default_factory=dict)
    enumerate_ms: float = 0.0
    walk_ms: float = 0.0
    prepare_ms: Optional[float] = None
    # Measured by the harness around the walk (walk.WalkSession), in ms.
    registers_ms: Optional[float] = None
    walker_roundtrip_ms: Optional[float] = None
    parse_ms: Optional[float] = None
    report_bytes: Optional[int] = None
    stop_ms: Optional[float] = None
    freeze_to_verdict_ms: Optional[float] = None  # until every task's verdict is known (the walker's first line)
    freeze_to_report_ms: Optional[float] = None   # until the whole report (frames) is parsed
    # The accounting (truth.attach) and which oracles ran (report.finish_report).
    accounting: Optional[Accounting] = None
    oracle: Optional[str] = None
    shadow_stats: Optional[Dict[str, int]] = None
    extra: Json = field(default_factory=dict)

    KNOWN = ("tasks", "reliable", "unreliable", "by_reason", "enumerate_ms", "walk_ms", "prepare_ms",
             "registers_ms", "walker_roundtrip_ms", "parse_ms", "report_bytes", "stop_ms", "freeze_to_verdict_ms",
             "freeze_to_report_ms")
    _OPTIONAL = KNOWN[6:]

    @classmethod
    def from_json(cls, data: Json) -> "WalkSummary":
        return cls(tasks=int(data.get("tasks", 0)), reliable=int(data.get("reliable", 0)),
                   unreliable=int(data.get("unreliable", 0)), by_reason=dict(data.get("by_reason", {})),
                   enumerate_ms=float(data.get("enumerate_ms", 0.0)), walk_ms=float(data.get("walk_ms", 0.0)),
                   **{k: data.get(k) for k in cls._OPTIONAL}, extra=_extra(data, cls.KNOWN))

    @property
    def false_reliable(self) -> int:
        return self.accounting.false_reliable if self.accounting else 0

    def to_json(self) -> Json:
        out = {**self.extra, "tasks": self.tasks, "reliable": self.reliable, "unreliable": self.unreliable,
               "by_reason": self.by_reason, "enumerate_ms": self.enumerate_ms, "walk_ms": self.walk_ms}
        out.update({k: getattr(self, k) for k in self._OPTIONAL if getattr(self, k) is not None})
        if self.accounting is not None:
            out.update(self.accounting.to_json())
        if self.oracle is not None:
            out["oracle"] = self.oracle
        if self.shadow_stats is not None:
            out["shadow_stats"] = self.shadow_stats
        return out


@dataclass
class CfiFrame:
    pc: int
    cfa: Optional[int] = None
    sp: int = 0
    symbol: Optional[str] = None


@dataclass
class CfiTask:
    """The CFI oracle's unwind of one task (framecert guest-cfi): .debug_frame only, never frame pointers."""
    address: int
    frames: List[CfiFrame] = field(default_factory=list)
    complete: bool = False  # it reached the stack's end
    why: str = ""           # where and why it stopped otherwise

    @classmethod
    def from_json(cls, data: Json) -> "CfiTask":
        return cls(address=address(data["task"]), complete=bool(data.get("complete", False)),
                   why=data.get("why") or "",
                   frames=[CfiFrame(pc=address(f["pc"]), cfa=address(f["cfa"]) if f.get("cfa") is not None else None,
                                    sp=address(f.get("sp", 0)), symbol=f.get("symbol"))
                           for f in data.get("frames", [])])


@dataclass
class CfiReport:
    tasks: Dict[int, CfiTask]  # by task_struct address
    summary: Json = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Json) -> "CfiReport":
        tasks = [CfiTask.from_json(t) for t in data.get("tasks", [])]
        return cls(tasks={t.address: t for t in tasks}, summary=dict(data.get("summary", {})))


@dataclass
class WalkReport:
    """`framecert guest-walk`'s answer to one register request, and what the harness adds to it."""
    tasks: List[Task]
    summary: WalkSummary
    online_cpus: Any = None
    warnings: List[str] = field(default_factory=list)
    kernel_cr3: int = 0
    thread_size: int = 16384
    extra: Json = field(default_factory=dict)
    # Added by the harness.
    registers: List[Registers] = field(default_factory=list)
    shadow: Any = None                  # shadow.Snapshot taken at the freeze (not written out)
    cfi: Optional[CfiReport] = None     # the CFI oracle's answer for the same freeze (not written out)
    prstatus_pids: Optional[Dict[int, int]] = None  # --external: the PIDs written into the dump's notes
    crash_raw: Optional[Json] = None    # --external: what crash printed

    KNOWN = ("schema", "tasks", "summary", "online_cpus", "warnings", "kernel_cr3", "thread_size")

    @classmethod
    def from_json(cls, data: Json) -> "WalkReport":
        if "error" in data:
            raise GuestError(f"guest walk failed: {data['error']}")
        # A report without the field is from a walker before schemas were named: the same fields.
        if data.get("schema", GUEST_WALK_SCHEMA) != GUEST_WALK_SCHEMA:
            raise GuestError(f"the walker's report is {data['schema']!r}; this harness reads {GUEST_WALK_SCHEMA} "
                             "(a framecert binary from another checkout?)")
        try:
            return cls(tasks=[Task.from_json(t) for t in data["tasks"]],
                       summary=WalkSummary.from_json(data.get("summary", {})), online_cpus=data.get("online_cpus"),
                       warnings=list(data.get("warnings", [])), kernel_cr3=address(data.get("kernel_cr3", 0)),
                       thread_size=int(data.get("thread_size", 16384)), extra=_extra(data, cls.KNOWN))
        except (KeyError, TypeError, ValueError) as e:
            raise GuestError(f"the walker's report is malformed ({e.__class__.__name__}: {e})") from None

    def task(self, comm: str) -> List[Task]:
        return [t for t in self.tasks if t.comm == comm]

    def to_json(self) -> Json:
        out = {**self.extra, "schema": GUEST_WALK_SCHEMA, "tasks": [t.to_json() for t in self.tasks],
               "summary": self.summary.to_json(),
               "online_cpus": self.online_cpus, "warnings": self.warnings, "kernel_cr3": hex(self.kernel_cr3),
               "thread_size": self.thread_size, "registers": [r.to_json() for r in self.registers]}
        if self.prstatus_pids is not None:
            out["prstatus_pids"] = self.prstatus_pids
        if self.crash_raw is not None:
            out["crash_raw"] = self.crash_raw
        return out
