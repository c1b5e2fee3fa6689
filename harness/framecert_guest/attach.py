"""Attaching to a guest that `framecert-guest boot` keeps running, so that `walk --attach` freezes and walks
it without booting one of its own.

`boot` writes ATTACH_FILE into the guest's run directory; an AttachedGuest reads it and talks to the same
QEMU over its second QMP monitor, the gdbstub and the command channel (the boot process uses none of
those). It owns nothing: stop() only closes its connections, and the guest runs on.
"""
import json
import tempfile
from pathlib import Path

from .errors import GuestError
from .guest_dir import load_manifest
from .qemu import RUN_PREFIX, Guest, _pid_alive
from .qmp import QmpClient

ATTACH_FILE = "attach.json"


def publish(guest: Guest):
    """Called by `boot` once the guest is ready."""
    if guest.proc is None or guest.run_dir is None:
        raise GuestError("publish: the guest is not running")
    info = {"qemu_pid": guest.proc.pid, "guest_dir": str(guest.guest_dir), "ram": str(guest.ram_path),
            "smp": guest.smp, "mem_mb": guest.mem_mb}
    tmp = guest.run_dir / f"{ATTACH_FILE}.tmp"
    tmp.write_text(json.dumps(info))
    tmp.rename(guest.run_dir / ATTACH_FILE)


def running_guests() -> list:
    """Run directories of guests that `boot` keeps running now."""
    out = []
    for d in sorted(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*")):
        f = d / ATTACH_FILE
        try:
            info = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(info.get("qemu_pid", -1)):
            out.append(d)
    return out


def find(run_dir=None) -> Path:
    if run_dir:
        return Path(run_dir)
    found = running_guests()
    if len(found) != 1:
        raise GuestError(f"{len(found)} guests are running under `framecert-guest boot`"
                         + (f" ({', '.join(map(str, found))}): name one with --attach RUN_DIR" if found else
                            ": start one, or walk without --attach"))
    return found[0]


class AttachedGuest(Guest):
    def __init__(self, run_dir):
        run_dir = Path(run_dir)
        try:
            info = json.loads((run_dir / ATTACH_FILE).read_text())
        except (OSError, ValueError) as e:
            raise GuestError(f"{run_dir} is not the run directory of a guest started by boot ({e})") from None
        self.guest_dir = Path(info["guest_dir"])
        self.manifest = load_manifest(self.guest_dir)
        self.smp, self.mem_mb = info["smp"], info["mem_mb"]
        self.files, self.cmdline = {}, ""
        self.proc = None
        self.qemu_pid = info["qemu_pid"]
        self.run_dir, self.ram_path = run_dir, Path(info["ram"])
        self._cmd_sock = None
        self.started_at = self.ready_at = None
        if not _pid_alive(self.qemu_pid):
            raise GuestError(f"the guest of {run_dir} is not running any more (QEMU pid {self.qemu_pid})")
        self._qmp = QmpClient.connect(str(self.attach_qmp_socket))

    def start(self):
        raise GuestError("an attached guest is already running")

    def check_alive(self):
        if not _pid_alive(self.qemu_pid):
            raise GuestError(f"the attached guest's QEMU (pid {self.qemu_pid}) has exited")

    def stop(self):
        """Lets go of the guest; it keeps running under its `boot` process."""
        if self._qmp:
            self._qmp.close()
            self._qmp = None
        if self._cmd_sock:
            self._cmd_sock.close()
            self._cmd_sock = None

    def __enter__(self):
        return self
