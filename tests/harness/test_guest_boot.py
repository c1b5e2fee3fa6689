"""Builds the guest (or takes it from the cache), boots it, checks the workload, and checks that nothing
is left behind: no QEMU process, no RAM file in /dev/shm, no run directory — also when the launcher is
killed or the guest panics."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from framecert_guest import qemu

CLI = REPO / "scripts" / "framecert-guest"
KTHREADS = ["fc_chain", "fc_asm_framed", "fc_asm_noframe", "fc_nonstd", "fc_spin"]
BOOT_TIMEOUT = 300  # seconds to the ready marker under TCG on a busy 2-core host (measured: ~20 s)


@pytest.fixture(scope="module")
def guest_dir():
    r = subprocess.run([CLI, "build"], capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, r.stderr[-2000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_dir() and (path / "manifest.json").is_file()
    return path


def _qemu_processes_using(ram_path) -> list:
    """PIDs whose command line mentions this guest's RAM file (a leftover QEMU would)."""
    found = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if str(ram_path).encode() in (d / "cmdline").read_bytes():
                found.append(int(d.name))
        except OSError:
            pass
    return found


def _assert_nothing_left(ram_path, run_dir=None):
    deadline = time.monotonic() + 10
    while _qemu_processes_using(ram_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _qemu_processes_using(ram_path) == []
    assert not Path(ram_path).exists()
    if run_dir:
        assert not Path(run_dir).exists()


def test_build_is_cached_and_complete(guest_dir):
    start = time.monotonic()
    r = subprocess.run([CLI, "build"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert r.stdout.strip().splitlines()[-1] == str(guest_dir)
    assert time.monotonic() - start < 10, "a cached build must return at once"
    manifest = json.loads((guest_dir / "manifest.json").read_text())
    for name in ("bzImage", "vmlinux", "vmlinux.o", "fctest.ko", "initramfs.cpio.gz", "expected-chains.json"):
        assert (guest_dir / name).stat().st_size > 0, name
    # The planted bug is seen by the kernel's own objtool, and did not fail the build.
    assert any("fc_asm_noframe" in w and "call without frame pointer save/setup" in w
               for w in manifest["objtool_warnings"]["fctest.ko"])
    config = (guest_dir / "config").read_text()
    for option in ("CONFIG_FRAME_POINTER=y", "CONFIG_UNWINDER_FRAME_POINTER=y", "CONFIG_STACK_VALIDATION=y",
                   "CONFIG_LIVEPATCH=y", "CONFIG_DEBUG_INFO=y"):
        assert option in config.splitlines()
    assert "# CONFIG_UNWINDER_ORC is not set" in config


def test_boot_workload_and_clean_shutdown(guest_dir):
    start = time.monotonic()
    handed = guest_dir / "expected-chains.json"
    with qemu.Guest(guest_dir, smp=2, mem_mb=512, files={"chains.json": handed}) as g:
        ram_path, run_dir = g.ram_path, g.run_dir
        assert ram_path.exists()
        ready = g.wait_ready(timeout=BOOT_TIMEOUT)
        log = g.serial_text()
        print(f"boot to ready: {ready:.1f} s")

        assert "FRAMECERT-MODULE loaded=1" in log
        assert "fctest: loaded, 5 kthreads" in log
        for name in KTHREADS:
            assert re.search(rf"FRAMECERT-KTHREAD name={name} pid=\d+", log), name
            assert re.search(rf"fctest: kthread {name} pid=\d+", log), name
        assert "FRAMECERT-CPUS online=0-1" in log
        first = re.search(r"FRAMECERT-TASKS processes=(\d+) threads=(\d+)", log)
        assert first and int(first.group(2)) > int(first.group(1)) > 30  # kthreads + workload + threads

        # The workload runs: its tasks are there, in their states (asked through the command channel).
        ps = g.command("ps -o pid,stat,args")
        for what in ("fcload futex", "fcload poll", "fcload threads", "fcload spin", "sleep 2147483", "cat"):
            assert what in ps, what
        counts = g.task_counts()
        assert counts["threads"] >= counts["processes"] + 5  # fcload threads has 6
        chains = json.loads(g.command("cat /sys/kernel/debug/fctest/chains"))
        assert set(chains["kthreads"]) == set(KTHREADS)

        # Files handed over through fw_cfg arrive intact (how a later livepatch module gets in).
        assert json.loads(g.command(f"cat {g.guest_file('chains.json')}")) == json.loads(handed.read_text())

        # The kernel's own FP unwinder shows the planted bug: fc_noframe_caller is skipped.
        stacks = g.command("stacks")
        noframe = stacks.split("FRAMECERT-STACK name=fc_asm_noframe")[1].split("FRAMECERT-STACK")[0]
        assert "fc_asm_noframe" in noframe and "fc_noframe_caller" not in noframe
        chain = stacks.split("FRAMECERT-STACK name=fc_chain ")[1].split("FRAMECERT-STACK")[0]
        assert all(f in chain for f in ("fc_level3", "fc_level2", "fc_level1", "fc_chain_fn"))

        # Freeze and thaw over QMP.
        g.qmp("stop")
        assert g.qmp("query-status")["status"] == "paused"
        g.qmp("cont")
        assert g.qmp("query-status")["status"] == "running"
    _assert_nothing_left(ram_path, run_dir)
    assert time.monotonic() - start < BOOT_TIMEOUT + 60


def _launch_cli_boot(guest_dir, *extra):
    return subprocess.Popen([CLI, "boot", "--quiet", "--guest-dir", str(guest_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _ram_path_from(stderr_lines) -> str:
    for line in stderr_lines:
        if line.strip().startswith("RAM"):
            return line.split()[-1]
    return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_launcher_leaves_nothing(guest_dir, sig):
    p = _launch_cli_boot(guest_dir)
    lines = []
    deadline = time.monotonic() + BOOT_TIMEOUT
    while _ram_path_from(lines) is None:
        line = p.stderr.readline()
        assert line or p.poll() is None, "".join(lines)
        lines.append(line)
        assert time.monotonic() < deadline, "".join(lines)
    ram_path = _ram_path_from(lines)
    assert Path(ram_path).exists() and _qemu_processes_using(ram_path)
    p.send_signal(sig)
    p.wait(timeout=60)
    assert p.returncode != 0 or sig == signal.SIGINT
    _assert_nothing_left(ram_path)


def test_panic_is_a_clear_error_and_leaves_nothing(guest_dir):
    # No init in the initramfs: the kernel panics ("No working init found"), QEMU exits (panic=-1).
    before = set(Path("/dev/shm").glob(f"{qemu.SHM_PREFIX}{os.getpid()}-*"))
    with qemu.Guest(guest_dir, cmdline_extra="rdinit=/nonexistent init=/nonexistent") as g:
        ram_path = g.ram_path
        with pytest.raises(qemu.GuestPanic, match="Kernel panic"):
            g.wait_ready(timeout=BOOT_TIMEOUT)
    _assert_nothing_left(ram_path)
    assert set(Path("/dev/shm").glob(f"{qemu.SHM_PREFIX}{os.getpid()}-*")) == before


def test_walk_attaches_to_a_booted_guest_and_leaves_it_running(guest_dir, tmp_path):
    p = _launch_cli_boot(guest_dir)
    try:
        lines, run_dir = [], None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while run_dir is None:
            line = p.stderr.readline()
            assert line or p.poll() is None, "".join(lines)
            lines.append(line)
            m = re.search(r"walk --attach (\S+)", line)
            run_dir = m.group(1) if m else None
            assert time.monotonic() < deadline, "".join(lines)
        ram_path = _ram_path_from(lines) or next(ln.split()[-1] for ln in p.stderr if ln.strip().startswith("RAM"))
        for attempt in range(2):  # attaching twice: the first walk let go of everything it held
            out = tmp_path / f"walk{attempt}.json"
            r = subprocess.run([CLI, "walk", "--attach", "--settle", "0.2", "--json", str(out)], capture_output=True,
                               text=True, timeout=300)
            assert r.returncode == 0, r.stderr[-3000:]
            report = json.loads(out.read_text())
            comms = {t["comm"] for t in report["tasks"]}
            assert set(KTHREADS) <= comms and report["summary"]["tasks"] > 50
            assert p.poll() is None and _qemu_processes_using(ram_path), "the booted guest must keep running"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    _assert_nothing_left(ram_path)
    r = subprocess.run([CLI, "walk", "--attach"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "0 guests are running" in r.stderr
