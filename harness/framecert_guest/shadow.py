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
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GuestError
from .paths import REPO

PLUGIN = Path(os.environ.get("FRAMECERT_SHADOW_PLUGIN", REPO / "build" / "harness" / "shadow" / "libframecert_shadow.so"))
PROTOCOL_HEADER = "framecert-shadow 1"
IDLE_MARKER_FUNCTION = "secondary_startup_64"


def plugin_path() -> Path:
    if not PLUGIN.is_file():
        raise GuestError(f"{PLUGIN} not built (scripts/build): the shadow-stack oracle needs it")
    return PLUGIN


@dataclass
class Snapshot:
    entries: list = field(default_factory=list)  # (slot, return address), slot ascending
    stats: dict = field(default_factory=dict)

    def between(self, low: int, high: int) -> list:
        """Entries with low <= slot < high, innermost (lowest slot) first."""
        import bisect
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


def _hex(v) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _name(frame) -> str:
    return f"{frame['symbol']}+{frame['offset']:#x}" if frame.get("symbol") else frame["pc"]


def task_floor(task: dict, registers: list):
    """The lowest stack address that is the task's own: rsp on its vCPU, thread.sp when asleep."""
    if task.get("running"):
        for r in registers or []:
            if r["cpu"] == task.get("vcpu"):
                return _hex(r["rsp"])
        return None
    return _hex(task["thread_sp"]) if task.get("thread_sp") else None


def judge(task: dict, snap: Snapshot, registers: list, thread_size: int) -> dict:
    """The shadow's verdict on one task's trace: {"verdict": "agree" | "disagree" | "no-truth", "detail"}.
    Judged for every task; a disagreement matters (a false reliable) only where framecert said reliable."""
    low = _hex(task["stack"])
    if not low:
        return {"verdict": "no-truth", "detail": "the task has no stack (exited)"}
    high = low + thread_size
    if task.get("user_mode"):
        left = snap.between(low, high)
        if left:
            return {"verdict": "disagree", "detail": f"running in user mode, yet {len(left)} un-returned kernel "
                                                      f"calls on its stack (innermost {left[0][1]:#x})"}
        return {"verdict": "agree", "detail": "user mode: no un-returned kernel calls"}
    if task.get("note") == "has not run yet":
        return {"verdict": "no-truth", "detail": "never ran: its stack holds only its fork frame and the previous "
                                                 "owner's stale entries, which the shadow cannot tell apart"}
    floor = task_floor(task, registers)
    if floor is None:
        return {"verdict": "no-truth", "detail": "no stack pointer for the task"}
    frames = task["frames"]
    ours = frames[1:] if task.get("running") else frames
    if task.get("idle") and ours and (ours[-1].get("symbol") or "").startswith(IDLE_MARKER_FUNCTION):
        marker = ours[-1]
        ours = ours[:-1]
        slot = _hex(marker["sp"]) - 8
        if any(s == slot for s, _ in snap.between(slot, slot + 8)):
            return {"verdict": "disagree", "detail": f"the idle marker's slot {slot:#x} holds a call's return address"}
    truth = snap.between(floor, high)
    claimed = [(_hex(f["sp"]) - 8, _hex(f["pc"])) for f in ours]
    verdict = _compare(ours, claimed, truth)
    if verdict["verdict"] == "disagree":
        # The evidence, for whoever reads the report: the CPU's un-returned calls on this stack, stale ones
        # (below the stack pointer) included, innermost first.
        verdict["floor"] = hex(floor)
        verdict["shadow"] = [[hex(slot), hex(ret)] for slot, ret in snap.between(low, high)]
    return verdict


def _compare(ours: list, claimed: list, truth: list) -> dict:
    for i, (c, t) in enumerate(zip(claimed, truth)):
        if c != t:
            return {"verdict": "disagree",
                    "detail": f"return frame {i} ({_name(ours[i])}): trace has {c[1]:#x} at slot {c[0]:#x}, the "
                              f"CPU's un-returned call there is {t[1]:#x} at slot {t[0]:#x}"}
    if len(claimed) < len(truth):
        missing = truth[len(claimed)]
        return {"verdict": "disagree",
                "detail": f"the trace stops after {len(claimed)} return frames; the CPU has {len(truth)} un-returned "
                          f"calls (next: {missing[1]:#x} at slot {missing[0]:#x})"}
    if len(claimed) > len(truth):
        extra = ours[len(truth)]
        return {"verdict": "disagree",
                "detail": f"the trace has {len(claimed)} return frames, the CPU only {len(truth)} un-returned calls "
                          f"(no call made {_name(extra)})"}
    return {"verdict": "agree", "detail": f"{len(truth)} return addresses, slot for slot"}
