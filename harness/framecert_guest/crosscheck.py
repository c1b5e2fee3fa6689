"""External cross-checks of a walk on the same frozen state, dumped as an ELF vmcore (QMP dump-guest-memory,
paging: true): drgn (python3-drgn; it unwinds the kernel with vmlinux's DWARF CFI, not frame pointers) and
the `crash` utility (`foreach bt`).

Each returns {task address: model.TruthVerdict ("agree", "disagree" or "not-run")}.
Traces are compared by the return addresses (pcs) of their real frames in the kernel: drgn's inlined frames
(`frame.is_inline`, e.g. context_switch inside __schedule) share their caller's pc and are dropped; frames
outside the kernel (a user pc from the user pt_regs) are not ours to compare.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import vmcore
from .errors import GuestError
from .model import Task, TruthVerdict

KERNEL_START = 0xffff800000000000
PYTHON = "/usr/bin/python3"  # Debian's, which has python3-drgn

DRGN_SCRIPT = r'''
import json, sys
import drgn
from drgn.helpers.linux.pid import find_task
dump, vmlinux, modules, tasks = sys.argv[1], sys.argv[2], sys.argv[3:], json.loads(sys.stdin.read())
prog = drgn.Program()
prog.set_core_dump(dump)
paths = [vmlinux] + [m for m in modules if m]
try:
    prog.load_debug_info(paths)
except drgn.MissingDebugInfoError as e:
    print(f"drgn: {e}", file=sys.stderr)
out = {}
for addr in tasks:
    try:
        task = drgn.Object(prog, "struct task_struct *", value=int(addr, 16))
        trace = prog.stack_trace(task)
        frames = []
        for f in trace:
            try:
                name = f.name
            except Exception:
                name = None
            frames.append({"pc": f.pc, "inline": f.is_inline, "name": name})
        out[addr] = {"frames": frames}
    except Exception as e:
        out[addr] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
'''


def dump_guest(guest, path: Path):
    """The frozen guest's memory as an ELF vmcore with page tables (the guest must be stopped)."""
    vmcore.dump_vmcore(guest, path, "elf", paging=True)


def fix_prstatus_pids(dump: Path, tasks: List[Task]) -> Dict[int, int]:
    """QEMU writes each vCPU's NT_PRSTATUS note with pr_pid = vCPU index + 1; a kdump vmcore (what drgn and
    crash expect) has the PID of the task running on that CPU there, and drgn picks a running task's registers
    by that PID. Rewrites the notes with the PIDs of the tasks we found on each vCPU (an unused PID where it
    runs an idle task: they all have PID 0). Returns {vCPU: pid written}."""
    running = {t.vcpu: t.pid for t in tasks if t.running and t.vcpu >= 0}
    written: Dict[int, int] = {}
    with open(dump, "r+b") as f:
        ehdr = f.read(64)
        if ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
            raise GuestError(f"{dump}: not an ELF64 core")
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack("<IIQQQQ", f.read(40))
            if p_type != 4:  # PT_NOTE
                continue
            f.seek(p_offset)
            notes = f.read(p_filesz)
            pos = 0
            while pos + 12 <= len(notes):
                namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
                name = notes[pos + 12:pos + 12 + namesz].rstrip(b"\0")
                desc = pos + 12 + ((namesz + 3) & ~3)
                if name == b"CORE" and ntype == 1 and descsz >= 36:  # NT_PRSTATUS; pr_pid at 32
                    cpu = struct.unpack_from("<i", notes, desc + 32)[0] - 1
                    pid = running.get(cpu, 0) or (0x3ffffff0 + cpu)
                    f.seek(p_offset + desc + 32)
                    f.write(struct.pack("<i", pid))
                    written[cpu] = pid
                pos = desc + ((descsz + 3) & ~3)
    return written


def _ours(task: Task) -> List[int]:
    return [f.pc for f in task.frames if f.pc >= KERNEL_START]


def _compare(ours: List[int], theirs: List[int]) -> TruthVerdict:
    if ours == theirs:
        return TruthVerdict("agree", "")
    n = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return TruthVerdict("disagree", f"first difference at frame {n}: ours {[hex(p) for p in ours]} theirs "
                                    f"{[hex(p) for p in theirs]}")


def drgn_check(dump: Path, vmlinux: Path, modules: Union[str, Path, Sequence[Path], None], tasks: List[Task],
               timeout: float = 300) -> Dict[int, TruthVerdict]:
    """Walks each task (reliable or not) with drgn; compares only what we must stand behind: reliable ones.
    modules: the guest modules' .ko files (one path or a list): drgn gets the debug info of every one of them,
    or it would walk their code by frame pointers alone."""
    wanted = [hex(t.address) for t in tasks]
    mods = [modules] if isinstance(modules, (str, Path)) else list(modules or [])
    r = subprocess.run([PYTHON, "-c", DRGN_SCRIPT, str(dump), str(vmlinux), *map(str, mods)],
                       input=json.dumps(wanted), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise GuestError(f"drgn failed: {r.stderr.strip()[-800:]}")
    theirs = json.loads(r.stdout)
    out = {}
    for t in tasks:
        d = theirs.get(hex(t.address), {"error": "no result"})
        if "error" in d:
            out[t.address] = TruthVerdict("disagree" if t.reliable else "not-run", f"drgn: {d['error']}")
            continue
        pcs = [f["pc"] for f in d["frames"] if not f["inline"] and f["pc"] >= KERNEL_START]
        if t.user_mode:
            pcs = []  # drgn shows the user frames of a task running in user mode: no kernel frames to compare
        if t.running and t.pid == 0 and not t.user_mode:
            out[t.address] = TruthVerdict("not-run", "drgn matches a dump's registers to tasks by PID, and every "
                                                     "idle task has PID 0: it cannot walk a running idle task")
            continue
        res = _compare(_ours(t), pcs)
        res.evidence = {"frames": [f"{f['name']}{' (inline)' if f['inline'] else ''}" for f in d["frames"]]}
        out[t.address] = res
    return out


CRASH_TASK = re.compile(r"^PID:\s*(\d+)\s+TASK:\s*([0-9a-f]+)\s+CPU:\s*(\d+)\s+COMMAND:\s*\"(.*)\"")
CRASH_FRAME = re.compile(r"^\s*#(\d+)\s+\[([0-9a-f]+)\]\s+(\S+)\s+at\s+([0-9a-f]+)")


def crash_check(dump: Path, vmlinux: Path, tasks: List[Task],
                timeout: float = 300) -> Tuple[Dict[int, TruthVerdict], Optional[Dict[str, Any]]]:
    """`crash` on the same dump: `foreach bt`. Tasks crash does not list are `not-run` (with why). Returns the
    verdicts and what crash printed (None when it is not installed)."""
    crash = shutil.which("crash")
    if not crash:
        return {t.address: TruthVerdict("not-run", "crash is not installed") for t in tasks}, None
    with tempfile.NamedTemporaryFile("w", suffix=".crash", delete=False) as cmds:
        cmds.write("foreach bt\nquit\n")
    try:
        r = subprocess.run([crash, "-s", "--no_scroll", "-i", cmds.name, str(vmlinux), str(dump)],
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(cmds.name)
    traces: Dict[int, List[int]] = {}
    cur = None
    for line in r.stdout.splitlines():
        m = CRASH_TASK.match(line)
        if m:
            cur = int(m.group(2), 16)
            traces[cur] = []
            continue
        m = CRASH_FRAME.match(line)
        if m and cur is not None:
            traces[cur].append(int(m.group(4), 16))
    why = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or ["no output"])[-1]
    out = {}
    for t in tasks:
        if t.address not in traces:
            out[t.address] = TruthVerdict("not-run", f"crash lists no such task ({why})")
            continue
        pcs = [p for p in traces[t.address] if p >= KERNEL_START]
        if not pcs:
            out[t.address] = TruthVerdict("not-run", "crash shows no kernel frames for it")
            continue
        # crash attributes a return address right after a function's last call (to a noreturn function, e.g.
        # start_secondary -> cpu_startup_entry) to the next function and drops that frame: compare without
        # those frames, which drgn checks independently.
        ours = [f.pc for f in t.frames if f.pc >= KERNEL_START and not f.call_at_end]
        out[t.address] = _compare(ours, pcs)
    raw = {"tasks_listed": len(traces), "stderr": r.stderr[-2000:], "stdout_head": r.stdout[:2000]}
    return out, raw
