"""Harness faults, each with the same assertion: a clear one-line error (or, where the harness can recover, the
recovery), a non-zero exit where a command fails, a bounded time, and no QEMU process or RAM file left behind.

  QEMU killed mid-walk; QEMU killed under a running stress run (recovered: the guest is restarted, the round
  is a harness error); the guest kernel panics; the QMP connection closes; the RAM file is truncated while
  frozen; vmlinux missing or without debug info; a damaged guest cache (rebuilt) and a directory that is no
  guest at all."""
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from framecert_guest import qemu, walk
from framecert_guest.errors import GuestError

CLI = REPO / "scripts" / "framecert-guest"


def _qemus_for(path_fragment: str) -> list:
    """QEMU processes whose command line mentions path_fragment."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmd and path_fragment in cmd:
            found.append(int(d.name))
    return found


def _assert_cleaned_up(guest):
    assert guest.proc is None or guest.proc.poll() is not None
    assert not guest.ram_path.exists(), guest.ram_path
    assert not guest.run_dir.exists(), guest.run_dir
    assert not _qemus_for(str(guest.run_dir))


@contextlib.contextmanager
def _booted_and_checked(guest_dir):
    """A booted guest; afterwards, whatever happened, stopped, and nothing of it may be left."""
    guest = qemu.Guest(guest_dir, smp=2).start()
    try:
        guest.wait_ready(timeout=300)
        yield guest
    finally:
        guest.stop()
    _assert_cleaned_up(guest)


def test_qemu_killed_mid_walk(guest_dir):
    with _booted_and_checked(guest_dir) as guest, walk.WalkSession(guest) as session:
        t0 = time.monotonic()
        with pytest.raises(GuestError) as e:
            session.walk(while_frozen=lambda report: os.kill(guest.proc.pid, signal.SIGKILL))
        assert time.monotonic() - t0 < 30
        assert "\n" not in str(e.value)


def test_guest_panic_is_one_clear_error(guest_dir):
    with _booted_and_checked(guest_dir) as guest:
        t0 = time.monotonic()
        with pytest.raises(qemu.GuestPanic, match="Kernel panic - not syncing: sysrq triggered crash"):
            guest.command("echo c > /proc/sysrq-trigger", timeout=60)
        assert time.monotonic() - t0 < 60


def test_qmp_connection_closing(guest_dir):
    with _booted_and_checked(guest_dir) as guest, walk.WalkSession(guest) as session:
        guest._qmp._sock.shutdown(2)  # the connection goes away under the session
        with pytest.raises(GuestError) as e:
            session.walk()
        assert "\n" not in str(e.value)


def test_ram_file_truncated_while_frozen(guest_dir):
    errors = []
    with _booted_and_checked(guest_dir) as guest, walk.WalkSession(guest) as session:
        def truncate_then_walk_again(report):
            assert report.tasks
            os.truncate(guest.ram_path, 1 << 20)
            try:
                session.walk_frozen()
            except GuestError as e:
                errors.append(str(e))
        try:
            session.walk(while_frozen=truncate_then_walk_again)
        except GuestError as e:  # QEMU's own RAM is that file: on resume QEMU itself dies of SIGBUS
            assert "\n" not in str(e)
        assert session.walker.alive(), "the walker died (SIGBUS?)"
    assert errors and "shrank" in errors[0] and "\n" not in errors[0], errors


def _fake_guest(guest_dir: Path, tmp: Path, vmlinux) -> Path:
    """A guest directory sharing every artefact of the real one but linux/vmlinux (vmlinux=None: missing)."""
    fake = tmp / "guest"
    fake.mkdir()
    for entry in guest_dir.iterdir():
        if entry.name not in ("linux", "vmlinux", "metadata"):
            os.symlink(entry.resolve(), fake / entry.name)
    # The metadata is cached by build-id: computed for the real vmlinux, it is not redone for a stripped copy.
    (fake / "linux").mkdir()
    os.symlink((guest_dir / "linux" / "vmlinux.o").resolve(), fake / "linux" / "vmlinux.o")
    if vmlinux is not None:
        vmlinux(fake / "linux" / "vmlinux")
    return fake


@pytest.mark.parametrize("case", ["missing", "no-debug-info"])
def test_vmlinux_missing_or_without_debug_info(guest_dir, tmp_path, case):
    real = guest_dir / "linux" / "vmlinux"
    make = None if case == "missing" else (
        lambda dst: subprocess.run(["objcopy", "--strip-debug", str(real), str(dst)], check=True))
    fake = _fake_guest(guest_dir, tmp_path, make)
    t0 = time.monotonic()
    r = subprocess.run([CLI, "walk", "--guest-dir", str(fake)], capture_output=True, text=True, timeout=300)
    assert time.monotonic() - t0 < 200
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("framecert-guest: error:")]
    assert len(errors) == 1, r.stderr
    assert "vmlinux" in errors[0] and ("DWARF" in errors[0] or "No such file" in errors[0]), errors[0]
    assert "Traceback" not in r.stderr
    assert not _qemus_for(str(fake))


def test_damaged_guest_cache_is_rebuilt(guest_dir):
    ko = guest_dir / "regress" / "fcregress.ko"
    with open(ko, "r+b") as f:
        f.truncate(100)
    r = subprocess.run([CLI, "build"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "is damaged (fcregress.ko is 100 bytes" in r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]) == guest_dir
    assert ko.stat().st_size > 100


def test_a_directory_that_is_no_guest(tmp_path):
    (tmp_path / "manifest.json").write_text("{ not json")
    r = subprocess.run([CLI, "walk", "--guest-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("framecert-guest: error:") and "not a built guest" in r.stderr


def test_qemu_killed_under_a_stress_run_is_recovered(guest_dir, tmp_path):
    out = tmp_path / "stress.json"
    proc = subprocess.Popen([CLI, "stress", "--guest-dir", str(guest_dir), "--rounds", "40", "--seed", "5",
                             "--workload", "boot", "--json", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:  # a few rounds in, kill this run's QEMU (not another test's guest)
            seen.append(line)
            if line.startswith("[stress] round 3 "):
                break
        mine = [p for p in _qemus_for(str(guest_dir))
                if int(Path(f"/proc/{p}/stat").read_text().split()[3]) == proc.pid]
        assert len(mine) == 1, "".join(seen)
        os.kill(mine[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.is_file(), err[-3000:]
    report = json.loads(out.read_text())
    assert [r["round"] for r in report["rounds"]] == list(range(40))
    assert report["summary"]["harness_errors"] >= 1, report["summary"]
    assert any("guest restarted" in (r["harness_error"] or "") for r in report["rounds"])
    assert report["summary"]["false_reliable"] == 0
    assert proc.returncode == 1 and "harness errors" in err
    assert not _qemus_for(str(guest_dir))  # VM tests run one at a time: any QEMU left would be this run's
    assert not list(Path("/dev/shm").glob(f"{qemu.SHM_PREFIX}{proc.pid}-*"))
