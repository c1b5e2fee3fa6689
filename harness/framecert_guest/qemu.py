"""The Guest launcher: one QEMU (TCG) running the built guest, and everything needed to never leak it.

    with Guest(guest_dir, smp=2, mem_mb=512) as g:
        g.wait_ready(timeout=300)
        g.qmp("stop"); ...; g.qmp("cont")
        print(g.task_counts())

Guest RAM is a shared file in /dev/shm (file offset = guest-physical address while RAM <= 2 GiB: the
machine's RAM then sits below the PCI hole in one piece), so the host can read a frozen guest's memory
directly. QMP, the gdbstub and the guest's command channel (its second serial port) are unix sockets in a
private run directory.

Leaks: stop() kills QEMU's whole process group and removes the RAM file and the run directory; it runs
from __exit__, from atexit, and (see install_signal_handlers) on SIGTERM/SIGINT. If the launcher itself
is SIGKILLed, QEMU dies with it (PR_SET_PDEATHSIG) and the next Guest.start() sweeps the orphaned files.
PR_SET_PDEATHSIG fires when the *thread* that started QEMU exits: call start() from a thread that lives as
long as the guest (the main thread, normally).
"""
import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Set

from .errors import GuestError
from .guest_dir import load_manifest
from .procs import die_with_parent, end_process_group
from .shadow import plugin_path as shadow_plugin_path
from .qmp import QmpClient

QEMU = "qemu-system-x86_64"
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "framecert-"
RUN_PREFIX = "framecert-run-"
READY_MARKER = "FRAMECERT-GUEST-READY"
CMD_DONE = re.compile(r"FRAMECERT-CMD-DONE rc=(\d+)")
TASKS_LINE = re.compile(r"FRAMECERT-TASKS processes=(\d+) threads=(\d+)")
PANIC = re.compile(r"Kernel panic - not syncing.*")
# panic=-1: reboot at once on panic, which -no-reboot turns into QEMU exiting.
CMDLINE = "console=ttyS0 nokaslr panic=-1"  # default loglevel: fctest's pr_info lines reach the console
FW_CFG_PREFIX = "opt/framecert/"  # QEMU wants user fw_cfg names under opt/
FW_CFG_FILES = "/sys/firmware/qemu_fw_cfg/by_name/opt/framecert"
MAX_SMP = 8          # the guest kernel's CONFIG_NR_CPUS
MAX_MEM_MB = 2048    # above this, part of RAM moves above 4 GiB and file offsets stop matching addresses

_live: Set["Guest"] = set()  # started, not yet stopped: what atexit and the signal handlers must clean up


class GuestPanic(GuestError):
    """The guest kernel panicked."""


class Guest:
    def __init__(self, guest_dir, smp: int = 2, mem_mb: int = 512, cmdline_extra: str = "", qemu: str = QEMU,
                 files: Optional[dict] = None, shadow: bool = False):
        """files: {name: host path} handed to the guest through fw_cfg, readable there (e.g. a livepatch
        module to insmod) as FW_CFG_FILES/<name>/raw; see guest_file().
        shadow: load the shadow-stack plugin (shadow.py), the ground truth of every kernel stack, from boot on."""
        if not 1 <= smp <= MAX_SMP:
            raise GuestError(f"--smp must be between 1 and {MAX_SMP}, not {smp}")
        if not 128 <= mem_mb <= MAX_MEM_MB:
            raise GuestError(f"--mem must be between 128 and {MAX_MEM_MB} MiB, not {mem_mb}")
        self.guest_dir = Path(guest_dir)
        self.manifest = load_manifest(self.guest_dir)
        self.smp, self.mem_mb, self.qemu = smp, mem_mb, qemu
        self.cmdline = f"{CMDLINE} {cmdline_extra}".strip()
        self.files: Dict[str, Path] = {}
        for name, path in (files or {}).items():
            if not re.fullmatch(r"[\w.-]+", name) or not Path(path).is_file():
                raise GuestError(f"cannot hand {path!r} to the guest as {name!r} (a plain name and a file, please)")
            self.files[name] = Path(path).resolve()
        self.shadow_plugin = shadow_plugin_path() if shadow else None
        self.proc: Optional[subprocess.Popen] = None
        self.run_dir: Optional[Path] = None   # set by start()
        self.ram_path: Optional[Path] = None  # set by start()
        self._qmp: Optional[QmpClient] = None
        self._cmd_sock: Optional[socket.socket] = None
        self.started_at: Optional[float] = None
        self.ready_at: Optional[float] = None

    # ---- paths inside the run directory ----
    def _in_run_dir(self, name: str) -> Path:
        if self.run_dir is None:
            raise GuestError("guest not started")
        return self.run_dir / name

    @property
    def serial_log(self) -> Path:
        return self._in_run_dir("serial.log")

    @property
    def qmp_socket(self) -> Path:
        return self._in_run_dir("qmp.sock")

    @property
    def gdb_socket(self) -> Path:
        return self._in_run_dir("gdb.sock")

    @property
    def cmd_socket(self) -> Path:
        return self._in_run_dir("cmd.sock")

    @property
    def shadow_socket(self) -> Optional[Path]:
        """The shadow-stack plugin's socket, or None when the guest runs without it."""
        return self._in_run_dir("shadow.sock") if self.shadow_plugin else None

    @property
    def attach_qmp_socket(self) -> Path:
        """A second QMP monitor, for another framecert-guest process attaching to this guest (attach.py)."""
        return self._in_run_dir("qmp-attach.sock")

    def qemu_args(self) -> list:
        d, mem = self.guest_dir, f"{self.mem_mb}M"
        return [
            self.qemu, "-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot",
            "-machine", "pc,memory-backend=mem", "-m", mem,
            "-object", f"memory-backend-file,id=mem,size={mem},mem-path={self.ram_path},share=on",
            # One CPU per socket: even without ACPI the MP table then lists every CPU.
            "-smp", f"{self.smp},sockets={self.smp},cores=1,threads=1",
            "-kernel", str(d / "bzImage"), "-initrd", str(d / "initramfs.cpio.gz"), "-append", self.cmdline,
            "-device", "vmcoreinfo",
            "-serial", f"file:{self.serial_log}",
            "-chardev", f"socket,id=cmd,path={self.cmd_socket},server=on,wait=off", "-serial", "chardev:cmd",
            "-chardev", f"socket,id=gdb,path={self.gdb_socket},server=on,wait=off", "-gdb", "chardev:gdb",
            "-qmp", f"unix:{self.qmp_socket},server=on,wait=off",
            "-qmp", f"unix:{self.attach_qmp_socket},server=on,wait=off",
        ] + [a for name, path in self.files.items() for a in ("-fw_cfg", f"name={FW_CFG_PREFIX}{name},file={path}")] \
          + (["-plugin", f"file={self.shadow_plugin},sock={self.shadow_socket}"] if self.shadow_plugin else [])

    # ---- life cycle ----
    def start(self) -> "Guest":
        if self.proc:
            raise GuestError("guest already started")
        sweep_orphans()
        tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{tag}-"))
        self.ram_path = SHM_DIR / f"{SHM_PREFIX}{tag}"
        _live.add(self)
        self.started_at = time.monotonic()
        try:
            with open(self.run_dir / "qemu.out", "w") as out:
                self.proc = subprocess.Popen(self.qemu_args(), stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             preexec_fn=die_with_parent)
            self._wait_for(self.qmp_socket, timeout=30)
            self._qmp = QmpClient.connect(str(self.qmp_socket))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for(self, path: Path, timeout: float):
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise GuestError(f"QEMU did not create {path.name} within {timeout:.0f} s")
            time.sleep(0.02)

    def check_alive(self):
        """Raises GuestPanic / GuestError if QEMU has exited."""
        if self.proc is None:
            raise GuestError("guest not started")
        if self.proc.poll() is None:
            return
        panic = PANIC.search(self.serial_text())
        if panic:
            raise GuestPanic(f"guest kernel panicked: {panic.group(0).strip()}")
        out = self._in_run_dir("qemu.out").read_text(errors="replace").strip().splitlines()
        raise GuestError(f"QEMU exited with status {self.proc.returncode}"
                         + (f": {out[-1]}" if out else f"; last console line: {self.last_console_line()!r}"))

    def wait_ready(self, timeout: float = 300, on_poll=None) -> float:
        """Waits for the ready marker; returns seconds since start. Raises on panic, QEMU exit, timeout.
        on_poll(guest), if given, runs at every poll (e.g. to echo the console)."""
        deadline = time.monotonic() + timeout
        while True:
            if on_poll:
                on_poll(self)
            text = self.serial_text()
            panic = PANIC.search(text)
            if panic:
                raise GuestPanic(f"guest kernel panicked: {panic.group(0).strip()}")
            if READY_MARKER in text:
                self.ready_at = time.monotonic()
                return self.ready_at - (self.started_at or self.ready_at)
            self.check_alive()
            if time.monotonic() > deadline:
                raise GuestError(f"guest not ready after {timeout:.0f} s; last console line: "
                                 f"{self.last_console_line()!r}")
            time.sleep(0.05)

    def stop(self):
        """Idempotent: ends QEMU (politely, then by force) and removes every file the guest made."""
        if self._qmp:
            if self.proc and self.proc.poll() is None:
                try:
                    self._qmp.execute("quit")
                except GuestError:
                    pass
            self._qmp.close()
            self._qmp = None
        if self._cmd_sock:
            self._cmd_sock.close()
            self._cmd_sock = None
        if self.proc:
            end_process_group(self.proc)
        if self.ram_path:
            try:
                self.ram_path.unlink()
            except FileNotFoundError:
                pass
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # ---- talking to it ----
    def qmp(self, command: str, **arguments):
        if not self._qmp:
            raise GuestError("guest not running")
        return self._qmp.execute(command, arguments or None)

    def serial_text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except (FileNotFoundError, TypeError):
            return ""

    def last_console_line(self) -> str:
        lines = [ln for ln in self.serial_text().splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def command(self, line: str, timeout: float = 60) -> str:
        """Runs a command in the guest (see guest/initramfs/init): returns its console output.

        Raises GuestError if it does not finish in time or exits non-zero."""
        if "\n" in line:
            raise GuestError("a guest command is one line")
        if not self._cmd_sock:
            self._cmd_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._cmd_sock.connect(str(self.cmd_socket))
        start = len(self.serial_log.read_bytes())
        self._cmd_sock.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            out = self.serial_log.read_bytes()[start:].decode(errors="replace")
            done = CMD_DONE.search(out)
            if done:
                if done.group(1) != "0":
                    raise GuestError(f"guest command {line!r} failed (rc={done.group(1)})")
                return out[:done.start()]
            self.check_alive()
            if time.monotonic() > deadline:
                paused = not self.qmp("query-status").get("running", True)
                raise GuestError(f"guest command {line!r} did not finish within {timeout:.0f} s"
                                 + (" (the VM is paused: QMP stop, or a gdb attached)" if paused else ""))
            time.sleep(0.05)

    @staticmethod
    def guest_file(name: str) -> str:
        """Where the guest reads a file handed over with files={name: ...} (copy it before insmod: the raw
        fw_cfg file is read-only and unseekable)."""
        return f"{FW_CFG_FILES}/{name}/raw"

    def quiesce(self) -> dict:
        """Stops the workload's forking loops and returns every thread of the guest then, {tid: comm}, as its
        own /proc lists them (see guest/initramfs/init): until resume(), the task set stays exactly this,
        but for kernel workers the kernel starts or ends by itself."""
        out = self.command("quiesce", timeout=120)
        m = re.search(r"FRAMECERT-TIDS count=(\d+)", out)
        tids = {int(t): c for t, c in re.findall(r"FRAMECERT-TID (\d+) (\S*)", out)}
        if not m or int(m.group(1)) != len(tids):
            raise GuestError("guest did not list its threads completely")
        return tids

    def resume(self):
        self.command("resume")

    def task_counts(self) -> dict:
        """The guest's own count from /proc, asked for now: {"processes": N, "threads": M}."""
        m = TASKS_LINE.search(self.command("tasks"))
        if not m:
            raise GuestError("guest did not print its task counts")
        return {"processes": int(m.group(1)), "threads": int(m.group(2))}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans():
    """Removes RAM files and run directories whose launcher process no longer exists."""
    candidates = list(SHM_DIR.glob(f"{SHM_PREFIX}*")) + list(Path(tempfile.gettempdir()).glob(f"{RUN_PREFIX}*"))
    for path in candidates:
        m = re.match(rf"(?:{RUN_PREFIX}|{SHM_PREFIX})(\d+)-", path.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass


def stop_all():
    for guest in list(_live):
        guest.stop()


def install_signal_handlers():
    """SIGTERM (and SIGHUP) become SystemExit, so `with Guest(...)` blocks and atexit clean up as for
    Ctrl-C (SIGINT, already KeyboardInterrupt). For programs; a library must not do this by itself."""
    def handler(signum, frame):
        print(f"framecert-guest: {signal.Signals(signum).name}: cleaning up", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


atexit.register(stop_all)
