"""The emulator's ground truth: the shadow call stacks the TCG plugin (harness/shadow/) keeps for every kernel
stack, compared with framecert's traces.

The plugin sees every `call` and `ret` the guest executes and keeps, per 16 KiB stack region, the stack
slots of the calls not yet returned from, each with the return address the call pushed. Nothing of it
depends on frame pointers, the validator's metadata or the walker: it is what the CPU did. At a freeze the
harness asks for a snapshot (`ShadowClient.snapshot()`, while the vCPUs are stopped) and `judge()` compares
each task's trace with it:

- the task's own entries are those of its stack region at or above its stack pointer (the vCPU's rsp when
  it runs, thread.sp when it sleeps): entries below are stale (frames abandoned without a `ret`, `call`
  used as a push) and belong to nobody;
- every frame of framecert's trace that is a return address (all but a running task's frame 0, its pc)
  sits in the slot just below its frame's stack pointer; the trace agrees when its (slot, return address)
  pairs are exactly the shadow's entries, innermost to outermost. A function that tail-called away is
  absent from both.
- documented exceptions, each checked precisely: an idle task's outermost frame is the marker head_64.S
  pushes (no call made it: it must have no shadow entry); a task that has never run has only its fork frame
  and stale entries of the stack's previous owner (no truth); a task running in user mode must have no
  entry at all on its kernel stack.
"""
import bisect
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import GuestError
from .model import Frame, Registers, Task, TruthVerdict
from .paths import REPO

PLUGIN = Path(os.environ.get("FRAMECERT_SHADOW_PLUGIN",
                             REPO / "build" / "harness" / "shadow" / "libframecert_shadow.so"))
PROTOCOL_HEADER = "framecert-shadow 1"
IDLE_MARKER_FUNCTION = "secondary_startup_64"


def plugin_path() -> Path:
    if not PLUGIN.is_file():
        raise GuestError(f"{PLUGIN} not built (scripts/build): the shadow-stack oracle needs it")
    return PLUGIN


@dataclass
class Snapshot:
    entries: List[Tuple[int, int]] = field(default_factory=list)  # (slot, return address), slot ascending
    stats: Dict[str, int] = field(default_factory=dict)

    def between(self, low: int, high: int) -> List[Tuple[int, int]]:
        """Entries with low <= slot < high, innermost (lowest slot) first."""
        i = bisect.bisect_left(self.entries, (low, -1))
        out = []
        while i < len(self.entries) and self.entries[i][0] < high:
            out.append(self.entries[i])
            i += 1
        return out


def parse_snapshot(text: str) -> Snapshot:
    lines = text.splitlines()
    if not lines or lines[0] != PROTOCOL_HEADER:
        raise GuestError(f"shadow plugin: unexpected answer {lines[:1]!r}")
    if lines[-1] != "end":
        raise GuestError("shadow plugin: answer cut short (no 'end' line)")
    snap = Snapshot()
    for line in lines[1:-1]:
        parts = line.split()
        if parts[0] == "e" and len(parts) == 3:
            snap.entries.append((int(parts[1], 16), int(parts[2], 16)))
        elif parts[0] == "s" and len(parts) == 3:
            snap.stats[parts[1]] = int(parts[2])
        else:
            raise GuestError(f"shadow plugin: bad line {line!r}")
    snap.entries.sort()
    return snap


class ShadowClient:
    """One connection to the plugin's socket."""

    def __init__(self, path, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise GuestError(f"the shadow plugin's socket {path} did not appear")
            time.sleep(0.02)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError as e:
            self.sock.close()
            raise GuestError(f"cannot connect to the shadow plugin at {path}: {e}") from None
        self._buf = b""

    def _request(self, command: str) -> str:
        try:
            self.sock.sendall(command.encode() + b"\n")
            while not (self._buf.endswith(b"\nend\n") or self._buf.startswith(b"error")):
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise GuestError("the shadow plugin closed its socket (QEMU exited?)")
                self._buf += chunk
        except OSError as e:
            raise GuestError(f"shadow plugin: {e}") from None
        text, self._buf = self._buf.decode(), b""
        if text.startswith("error"):
            raise GuestError(f"shadow plugin: {text.strip()}")
        return text

    def snapshot(self) -> Snapshot:
        return parse_snapshot(self._request("snapshot"))

    def close(self):
        self.sock.close()


def task_floor(task: Task, registers: List[Registers]) -> Optional[int]:
    """The lowest stack address that is the task's own: rsp on its vCPU, thread.sp when asleep."""
    if task.running:
        for r in registers or []:
            if r.cpu == task.vcpu:
                return r.rsp
        return None
    return task.thread_sp or None


def judge(task: Task, snap: Snapshot, registers: List[Registers], thread_size: int) -> TruthVerdict:
    """The shadow's verdict on one task's trace. Judged for every task; a disagreement matters (a false
    reliable) only where framecert said reliable."""
    low = task.stack
    if not low:
        return TruthVerdict("no-truth", "the task has no stack (exited)")
    high = low + thread_size
    if task.user_mode:
        left = snap.between(low, high)
        if left:
            return TruthVerdict("disagree", f"running in user mode, yet {len(left)} un-returned kernel calls on its "
                                            f"stack (innermost {left[0][1]:#x})")
        return TruthVerdict("agree", "user mode: no un-returned kernel calls")
    if task.note == "has not run yet":
        return TruthVerdict("no-truth", "never ran: its stack holds only its fork frame and the previous owner's "
                                        "stale entries, which the shadow cannot tell apart")
    floor = task_floor(task, registers)
    if floor is None:
        return TruthVerdict("no-truth", "no stack pointer for the task")
    frames = task.frames
    ours = frames[1:] if task.running else frames
    if task.idle and ours and (ours[-1].symbol or "").startswith(IDLE_MARKER_FUNCTION):
        marker = ours[-1]
        ours = ours[:-1]
        slot = marker.sp - 8
        if any(s == slot for s, _ in snap.between(slot, slot + 8)):
            return TruthVerdict("disagree", f"the idle marker's slot {slot:#x} holds a call's return address")
    truth = snap.between(floor, high)
    claimed = [(f.sp - 8, f.pc) for f in ours]
    verdict = _compare(ours, claimed, truth)
    if verdict.verdict == "disagree":
        # The evidence, for whoever reads the report: the CPU's un-returned calls on this stack, stale ones
        # (below the stack pointer) included, innermost first.
        verdict.evidence = {"floor": hex(floor),
                            "shadow": [[hex(slot), hex(ret)] for slot, ret in snap.between(low, high)]}
    return verdict


def _compare(ours: List[Frame], claimed: List[Tuple[int, int]], truth: List[Tuple[int, int]]) -> TruthVerdict:
    for i, (c, t) in enumerate(zip(claimed, truth)):
        if c != t:
            return TruthVerdict("disagree", f"return frame {i} ({ours[i].name()}): trace has {c[1]:#x} at slot "
                                            f"{c[0]:#x}, the CPU's un-returned call there is {t[1]:#x} at slot "
                                            f"{t[0]:#x}")
    if len(claimed) < len(truth):
        missing = truth[len(claimed)]
        return TruthVerdict("disagree", f"the trace stops after {len(claimed)} return frames; the CPU has "
                                        f"{len(truth)} un-returned calls (next: {missing[1]:#x} at slot "
                                        f"{missing[0]:#x})")
    if len(claimed) > len(truth):
        extra = ours[len(truth)]
        return TruthVerdict("disagree", f"the trace has {len(claimed)} return frames, the CPU only {len(truth)} "
                                        f"un-returned calls (no call made {extra.name()})")
    return TruthVerdict("agree", f"{len(truth)} return addresses, slot for slot")
