"""`framecert-guest walk`: freeze the guest, walk every task with the C++ guest walker, resume, report.

    session = WalkSession(guest)        # loads vmlinux's DWARF, symbols and metadata (before any freeze)
    report = session.walk()            # QMP stop -> vCPU registers (gdbstub) -> walk -> QMP cont
    session.close()

The C++ side (`framecert guest-walk --serve`, harness/guest/) is started and fully loaded before the freeze,
so the freeze-to-verdict time measured here is QMP stop + registers + the walk itself.
With external=True the frozen state is also dumped (QMP dump-guest-memory, paging) and walked by drgn and by
crash (crosscheck.py); a disagreement on a task called reliable is a false reliable.
"""
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import GuestError
from .gdbstub import GdbStub
from .paths import REPO
from .shadow import ShadowClient
from . import truth

# The guest's own modules: name -> folder in the guest directory holding NAME.ko and its objects.
MODULES = {"fctest": "module", "fcregress": "regress", "fcpatch": "livepatch"}
FRAMECERT_BIN = Path(os.environ.get("FRAMECERT_BIN", REPO / "build" / "harness" / "cli" / "framecert"))


def framecert_bin() -> Path:
    if not FRAMECERT_BIN.is_file():
        raise GuestError(f"{FRAMECERT_BIN} not built (cmake -S . -B build -G Ninja && ninja -C build)")
    return FRAMECERT_BIN


def module_ko(guest_dir: Path, name: str) -> Path:
    return Path(guest_dir) / MODULES[name] / f"{name}.ko"


def module_objects(guest_dir: Path, name: str) -> list:
    """The module's own objects (where STACK_FRAME_NON_STANDARD annotations survive; the .ko drops them)."""
    return [o for o in sorted((Path(guest_dir) / MODULES[name]).glob("*.o")) if not o.name.endswith(".mod.o")]


def guest_metadata(guest_dir: Path) -> dict:
    """Metadata of vmlinux (at its link addresses) and of every guest module (per section), from
    <guest>/metadata/, computed with `framecert check` when missing (the same commands `framecert-guest
    build` runs)."""
    guest_dir = Path(guest_dir)
    out_dir = guest_dir / "metadata"
    out_dir.mkdir(exist_ok=True)
    vmlinux = guest_dir / "linux" / "vmlinux"
    jobs = {"vmlinux": (out_dir / "vmlinux.fcmeta", ["check", "--link-addresses", str(vmlinux), "--metadata", None,
                                                    str(guest_dir / "linux" / "vmlinux.o")])}
    for name in MODULES:
        if module_ko(guest_dir, name).is_file():
            jobs[name] = (out_dir / f"{name}.fcmeta", ["check", "--metadata", None, str(module_ko(guest_dir, name))])
    # Metadata made by another build of the validator is not trusted: remade when framecert changes.
    st = framecert_bin().stat()
    producer = f"{st.st_size:x}-{int(st.st_mtime):x}"
    paths = {}
    for name, (path, cmd) in jobs.items():
        stamp = path.with_suffix(".producer")
        if not path.is_file() or (stamp.read_text().strip() if stamp.is_file() else "") != producer:
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            cmd = [str(framecert_bin())] + [str(tmp) if c is None else c for c in cmd]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode not in (0, 1) or not tmp.is_file():  # 1: findings (the planted bugs)
                raise GuestError(f"cannot compute {name}'s metadata: {' '.join(cmd)}: {r.stderr.strip()[-500:]}")
            tmp.rename(path)
            stamp.write_text(producer + "\n")
        paths[name] = path
    return paths


def module_sections(guest, names=tuple(MODULES)) -> dict:
    """Section load addresses of each loaded module among `names`, from the guest's /sys/module/NAME/sections:
    {name: {section: address}}; a module that is not loaded is absent."""
    script = (f"for m in {' '.join(names)}; do [ -d /sys/module/$m/sections ] || continue; "
              "cd /sys/module/$m/sections && for s in .*; do echo \"FRAMECERT-SECTION $m $s $(cat $s)\"; done; done")
    out = guest.command(script)
    found = {}
    for m in re.finditer(r"FRAMECERT-SECTION (\S+) (\S+) (0x[0-9a-f]+)", out):
        found.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
    for name, sections in found.items():
        if ".text" not in sections:
            raise GuestError(f"no .text address for module {name} in the guest's /sys/module")
    return found


class WalkSession:
    """A loaded guest walker and a gdbstub connection for one running Guest."""

    def __init__(self, guest, modules: bool = True, cfi: bool = False):
        self.guest = guest
        meta = guest_metadata(guest.guest_dir)
        config = {"ram": str(guest.ram_path), "vmlinux": str(guest.guest_dir / "linux" / "vmlinux"),
                  "metadata": str(meta["vmlinux"]), "modules": []}
        if modules:
            for name, sections in module_sections(guest, [m for m in MODULES if m in meta]).items():
                config["modules"].append({"name": name, "object": str(module_ko(guest.guest_dir, name)),
                                          "metadata": str(meta[name]), "sections": sections,
                                          "objects": [str(o) for o in module_objects(guest.guest_dir, name)]})
        self.config = config
        self._tmp = tempfile.TemporaryDirectory(prefix="framecert-walk-")
        self.config_path = Path(self._tmp.name) / "config.json"
        self.config_path.write_text(json.dumps(config))
        self.proc = self.cfi = None
        try:
            self.proc = _start_server("guest-walk", self.config_path)
        except GuestError:
            self.close()
            raise
        ready = self.proc.ready
        self.prepare_ms = json.loads(ready).get("prepare_ms")
        # The CFI oracle (framecert guest-cfi): the same config and register requests, its own unwinder.
        self.cfi = _start_server("guest-cfi", self.config_path) if cfi else None
        # Connecting pauses the VM (QEMU's gdbstub does that on attach): resume it unless it was already paused.
        was_running = guest.qmp("query-status").get("running", False)
        # The ground truth, when the guest runs the shadow-stack plugin: read while the guest is frozen.
        self.shadow = ShadowClient(guest.shadow_socket) if getattr(guest, "shadow_socket", None) else None
        self.gdb = GdbStub(guest.gdb_socket)
        self.gdb.request("?")
        self.gdb.vcpu_threads()
        if was_running:
            guest.qmp("cont")

    def known_functions(self, names) -> set:
        """Which of `names` are text symbols of the running guest kernel or its modules (/proc/kallsyms)."""
        names = [n for n in names if re.fullmatch(r"[A-Za-z_][\w.]*", n)]
        if not names:
            return set()
        out = self.guest.command("awk '$2 ~ /^[tTwW]$/ {print \"FRAMECERT-SYM \" $3}' /proc/kallsyms | grep -x -F "
                                 + " ".join(f"-e 'FRAMECERT-SYM {n}'" for n in names) + " ; true")
        return set(re.findall(r"FRAMECERT-SYM (\S+)", out)) & set(names)

    def close(self):
        if getattr(self, "cfi", None):
            _stop_server(self.cfi)
            self.cfi = None
        if getattr(self, "shadow", None):
            self.shadow.close()
            self.shadow = None
        if getattr(self, "gdb", None):
            self.gdb.close()
            self.gdb = None
        if self.proc:
            _stop_server(self.proc)
            self.proc = None
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def walk_frozen(self) -> dict:
        """The guest must be stopped: reads the registers and walks. Returns the walker's JSON report."""
        t0 = time.perf_counter()
        regs = self.gdb.registers()
        t1 = time.perf_counter()
        req = {"cpus": [{"cpu": r["cpu"], "rip": r["rip"], "rsp": r["rsp"], "rbp": r["rbp"], "cs": r["cs"],
                         "cr3": r["cr3"]} for r in regs]}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError as e:
            line = ""
            if self.proc.poll() is None:
                raise GuestError(f"cannot talk to the guest walker: {e}") from None
        t2 = time.perf_counter()
        if not line:
            raise GuestError(f"the guest walker died: {self.proc.stderr.read().strip()[-500:]}")
        report = json.loads(line)
        t3 = time.perf_counter()
        if "error" in report:
            raise GuestError(f"guest walk failed: {report['error']}")
        self._last_request = req
        report["summary"]["registers_ms"] = (t1 - t0) * 1000
        report["summary"]["walker_roundtrip_ms"] = (t2 - t1) * 1000
        report["summary"]["parse_ms"] = (t3 - t2) * 1000
        report["summary"]["report_bytes"] = len(line)
        report["registers"] = regs
        return report

    def _ask_cfi(self, req: dict) -> dict:
        """The CFI oracle's unwind of the same frozen state (not part of freeze-to-verdict)."""
        try:
            self.cfi.stdin.write(json.dumps(req) + "\n")
            self.cfi.stdin.flush()
            line = self.cfi.stdout.readline()
        except OSError as e:
            raise GuestError(f"cannot talk to the CFI oracle: {e}") from None
        if not line:
            raise GuestError(f"the CFI oracle died: {self.cfi.stderr.read().strip()[-500:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise GuestError(f"CFI oracle: {answer['error']}")
        return answer

    def walk(self, while_frozen=None) -> dict:
        """Freeze, walk, run while_frozen(report) (e.g. dump memory, corrupt and restore), resume."""
        t0 = time.perf_counter()
        self.guest.qmp("stop")
        stopped = time.perf_counter()
        try:
            report = self.walk_frozen()
            report["summary"]["stop_ms"] = (stopped - t0) * 1000
            report["summary"]["freeze_to_verdict_ms"] = (time.perf_counter() - t0) * 1000
            # Not part of freeze-to-verdict: the truth is for checking, not for deciding.
            report["_shadow"] = self.shadow.snapshot() if self.shadow else None
            report["_cfi"] = self._ask_cfi(self._last_request) if self.cfi else None
            if while_frozen:
                while_frozen(report)
        finally:
            self.guest.qmp("cont")
        return report


def finish_report(report: dict, drgn_result=None, crash_result=None, chains=None) -> dict:
    """Adds every task's `truths`, `self_consistency` and `crosscheck`, and the summary's accounting
    (truth.py): false reliables are reliable verdicts an independent truth contradicts."""
    snap = report.pop("_shadow", None)
    cfi = report.pop("_cfi", None)
    truth.attach(report, snap=snap, chains=chains, drgn=drgn_result, crash=crash_result, cfi=cfi)
    for t in report["tasks"]:
        t["crosscheck"] = {"metadata": t["self_consistency"], "shadow": t["truths"]["shadow"]["verdict"],
                           "drgn": t["truths"]["drgn"]["verdict"], "crash": t["truths"]["crash"]["verdict"]}
    report["summary"]["oracle"] = "+".join(n for n, ran in (("shadow", snap is not None), ("cfi", cfi is not None))
                                           if ran) or "none"
    if snap is not None:
        report["summary"]["shadow_stats"] = snap.stats
    return report


def format_table(report: dict) -> str:
    lines = [f"{'PID':>6} {'TID-GROUP':>9} {'COMM':<16} {'STATE':>5} {'CPU':>4} {'VERDICT':<26} {'XCHK':<5} TOP FRAMES"]
    for t in report["tasks"]:
        verdict = "reliable" if t["reliable"] else f"{t['reason']}@{t['reason_frame']}"
        cpu = f"{t['cpu']}{'*' if t['running'] else ''}"
        frames = " < ".join(f["symbol"] or f["pc"] for f in t["frames"][:4])
        if len(t["frames"]) > 4:
            frames += f" < ...({len(t['frames'])})"
        if t.get("user_mode"):
            frames = "(user mode)"
        xc = t.get("crosscheck", {})
        mark = "".join({"agree": "a", "disagree": "d", "no-truth": "n"}.get(xc.get(k, "not-run"), "-")
                       for k in ("shadow", "metadata", "drgn", "crash"))
        lines.append(f"{t['pid']:>6} {t['tgid']:>9} {t['comm']:<16} {t['state']:>5} {cpu:>4} {verdict:<26} {mark:<5} {frames}")
        if t.get("false_reliable"):
            lines.append(f"{'':>6} FALSE RELIABLE: {t.get('truth_violation')}")
    s = report["summary"]
    lines.append("")
    lines.append(f"tasks {s['tasks']}: reliable {s['reliable']}, unreliable {s['unreliable']} "
                 + " ".join(f"{k}={v}" for k, v in sorted(s["by_reason"].items())))
    lines.append(f"freeze->verdict {s.get('freeze_to_verdict_ms', 0):.2f} ms (registers {s.get('registers_ms', 0):.2f} ms, "
                 f"enumerate {s['enumerate_ms']:.2f} ms, walk {s['walk_ms']:.2f} ms); false reliable: "
                 f"{s.get('false_reliable', 0)}   [XCHK: shadow/metadata/drgn/crash: a=agree d=disagree "
                 f"n=no truth -=not run]")
    lines.append(truth_line(s))
    return "\n".join(lines)


def _start_server(command: str, config_path):
    """`framecert <command> --config C --serve`, loaded: its first line said it is ready (kept as .ready)."""
    proc = subprocess.Popen([str(framecert_bin()), command, "--config", str(config_path), "--serve"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.ready = proc.stdout.readline()
    if not proc.ready:
        err = proc.stderr.read().strip()
        _stop_server(proc)
        raise GuestError(f"framecert {command} did not start: {err}")
    return proc


def _stop_server(proc):
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def truth_line(s: dict) -> str:
    """The accounting in one line, every figure with its denominator."""
    if s.get("truth_coverage") is None:
        return "truth: no reliable verdicts to check"
    cov = s.get("truth_coverage") or 0.0
    no_truth = ", ".join(f"{k}: {v}" for k, v in s.get("no_truth", {}).items()) or "none"
    return (f"truth: {s['false_reliable']} false reliable out of {s['reliable_checked']} reliable verdicts the shadow "
            f"checked (coverage {cov:.1%} of {s['reliable']} reliable; unchecked: {no_truth}); self-consistency "
            f"(metadata walk) agree {s['self_consistency']['agree']}, disagree {s['self_consistency']['disagree']}")


class GuestRamWriter:
    """The frozen guest's RAM file opened read-write, for fault-injection tests only: translates kernel virtual
    addresses with a 4-level page-table walk from `cr3`, and remembers every word it changes so restore()
    puts them back before the guest resumes."""

    def __init__(self, ram_path, cr3: int):
        import mmap
        self._f = open(ram_path, "r+b")
        self.mem = mmap.mmap(self._f.fileno(), 0)
        self.cr3 = cr3
        self.saved = []

    def _u64(self, phys: int) -> int:
        return int.from_bytes(self.mem[phys:phys + 8], "little")

    def translate(self, va: int) -> int:
        table = self.cr3 & 0x000ffffffffff000
        for level, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
            entry = self._u64(table + ((va >> shift) & 0x1ff) * 8)
            if not entry & 1:
                raise GuestError(f"{va:#x} not mapped (level {level})")
            if level in (3, 2) and entry & 0x80:  # 1G / 2M page
                return (entry & 0x000fffffffffe000 & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
            table = entry & 0x000ffffffffff000
        return table | (va & 0xfff)

    def read(self, va: int) -> int:
        return self._u64(self.translate(va))

    def write(self, va: int, value: int):
        phys = self.translate(va)
        self.saved.append((phys, bytes(self.mem[phys:phys + 8])))
        self.mem[phys:phys + 8] = (value & (2 ** 64 - 1)).to_bytes(8, "little")

    def restore(self):
        for phys, old in reversed(self.saved):
            self.mem[phys:phys + 8] = old
        self.saved.clear()

    def close(self):
        self.restore()
        self.mem.close()
        self._f.close()
