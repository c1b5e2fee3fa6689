"""Boots the guest, freezes it, walks every task (scripts/framecert-guest walk's machinery) and checks the
verdicts against the guest's own view: the task count from its /proc, fctest's known chains
(expected-chains.json), the metadata-only walk, drgn and crash on a dump of the same frozen state; then
corrupts stack words of a sleeping task in the frozen RAM file (restored before resuming) and checks that no
wrong trace is ever called reliable."""
import copy
import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from framecert_guest import crosscheck, known_chains, qemu, vmcore, walk
from framecert_guest import guest_dir as gd
from framecert_guest.ram_writer import GuestRamWriter
from framecert_guest.report import finish_report, format_table

CLI = REPO / "scripts" / "framecert-guest"
SMP = 2


@pytest.fixture(scope="module")
def session(guest_dir):
    with qemu.Guest(guest_dir, smp=SMP) as guest:
        guest.wait_ready(timeout=300)
        with walk.WalkSession(guest) as s:
            yield s


@pytest.fixture(scope="module")
def expected(guest_dir):
    return json.loads((guest_dir / "expected-chains.json").read_text())["kthreads"]


def _task(report, comm):
    found = report.task(comm)
    assert len(found) == 1, f"{comm}: {len(found)} tasks"
    return found[0]


def _outermost_first(task):
    return [f.symbol for f in reversed(task.frames)]


def test_walk_every_task_and_judge(session, expected, guest_dir):
    guest = session.guest
    # The guest lists its threads with its forking loops stopped, so the frozen task set must equal it.
    listed = guest.quiesce()
    holder = {}

    def external(report):
        holder["dir"] = tempfile.mkdtemp(prefix="framecert-dump-")
        holder["dump"] = Path(holder["dir"]) / "vmcore"
        crosscheck.dump_guest(guest, holder["dump"])
        # The same freeze in makedumpfile's kdump-compressed format, walked offline below.
        holder["kdump"] = vmcore.dump_vmcore(guest, Path(holder["dir"]) / "vmcore.kdump", "kdump")

    try:
        report = session.walk(while_frozen=external)
    finally:
        guest.resume()
    try:
        # Offline, from each dump of this freeze: the live walk's verdicts and frames, task by task.
        for dump in (holder["dump"], holder["kdump"]):
            _assert_same_walk(vmcore.walk_vmcore(dump, guest_dir), report, dump.name)
        # The guest directory holds copies of the .ko files without the NAME.o they were linked from: the
        # modules' STACK_FRAME_NON_STANDARD lists are unknown, so nothing in them is vouched for.
        bare = vmcore.walk_vmcore(holder["kdump"], guest_dir, module_dirs=[guest_dir])
        assert not _task(bare, "fc_nonstd").reliable
        assert _task(bare, "fc_chain").reason == "no-metadata"
        # A file named fctest.ko that is not the loaded module (here fcregress's, with its NAME.o): refused by
        # build-id, so fctest's code is unknown rather than judged with another module's metadata.
        wrong = Path(holder["dir"]) / "wrong"
        wrong.mkdir()
        regress_ko = gd.module_ko(guest_dir, "fcregress")
        shutil.copy(regress_ko, wrong / "fctest.ko")
        shutil.copy(regress_ko.with_suffix(".o"), wrong / "fctest.o")
        mixed = vmcore.walk_vmcore(holder["kdump"], guest_dir, module_dirs=[wrong])
        assert _task(mixed, "fc_chain").reason == "return-address-not-text"
        assert any("is not the loaded module" in w for w in mixed.warnings), mixed.warnings
        crosscheck.fix_prstatus_pids(holder["dump"], report.tasks)
        drgn = crosscheck.drgn_check(holder["dump"], guest_dir / "linux" / "vmlinux",
                                     guest_dir / "module" / "fctest.ko", report.tasks)
        crash, _ = crosscheck.crash_check(holder["dump"], guest_dir / "linux" / "vmlinux", report.tasks)
    finally:
        shutil.rmtree(holder["dir"], ignore_errors=True)
    finish_report(report, drgn, crash)
    print(format_table(report))
    tasks = report.tasks

    # Every task: the idle task of each CPU plus exactly the threads the quiesced guest's /proc listed.
    idle = [t for t in tasks if t.pid == 0]
    assert len(idle) == SMP and all(t.idle for t in idle)
    ours = {t.pid: t.comm for t in tasks if t.pid != 0}
    assert len(ours) == len(tasks) - SMP, "a pid walked twice"
    assert set(ours) == set(listed), (f"the guest listed but the walk missed: {set(listed) - set(ours)}; "
                                      f"walked but not listed: {set(ours) - set(listed)}")
    # task_struct.comm is /proc's comm cut to 15 characters (/proc adds a kthread's full name, a worker's queue).
    assert all(listed[p].startswith(ours[p]) for p in ours), [(p, ours[p], listed[p]) for p in ours
                                                              if not listed[p].startswith(ours[p])]
    assert len(tasks) == len(listed) + SMP

    # fctest's kthreads.
    for name in ("fc_chain", "fc_asm_framed"):
        t = _task(report, name)
        assert t.reliable, (name, t.reason, t.detail)
        exp = expected[name]
        # The kernel's thread entry above ret_from_fork (ret_from_fork_asm since 6.7), then the known chain.
        chain = known_chains.thread_entry(guest_dir) + exp["chain"]
        assert _outermost_first(t) == chain + exp["sleeps_in"], (name, _outermost_first(t))
    t = _task(report, "fc_asm_noframe")
    assert not t.reliable and t.reason == "no-frame-at-call-site"
    assert t.frames[t.reason_frame].symbol == "fc_asm_noframe"
    assert not _task(report, "fc_nonstd").reliable

    # Cross-checks: every reliable trace agrees with the metadata-only walk and with drgn; crash agrees
    # wherever it can walk the task; no false reliable.
    for t in tasks:
        if t.reliable:
            assert t.crosscheck["metadata"] == "agree", t
            assert t.crosscheck["drgn"] in ("agree", "not-run"), t
            assert t.crosscheck["crash"] in ("agree", "not-run"), t
    # drgn walks every reliable task but a running idle task (drgn finds a running task's registers by PID,
    # and every idle task has PID 0).
    not_run = [t for t in tasks if t.reliable and t.crosscheck["drgn"] == "not-run"]
    assert all(t.pid == 0 and t.running for t in not_run), not_run
    assert report.summary.false_reliable == 0


def _walk_facts(report):
    return {t.address: (t.pid, t.comm, t.reliable, t.reason, t.reason_frame, [(f.pc, f.sp) for f in t.frames])
            for t in report.tasks}


def _assert_same_walk(offline, live, what):
    """A dump's walk must equal the live walk of the same freeze: every task, verdict, reason and frame."""
    got, want = _walk_facts(offline), _walk_facts(live)
    assert got.keys() == want.keys(), (what, set(got) ^ set(want))
    differ = {hex(a): (got[a], want[a]) for a in got if got[a] != want[a]}
    assert not differ, (what, differ)


def test_same_walk_comparison_sees_a_difference(session):
    """_assert_same_walk fires when a single frame of a single task differs."""
    report = session.walk()
    changed = copy.deepcopy(report)
    _assert_same_walk(changed, report, "unchanged")
    victim = next(t for t in changed.tasks if t.frames)
    victim.frames[-1].pc += 1
    with pytest.raises(AssertionError):
        _assert_same_walk(changed, report, "planted")


def _frames(task):
    return [(f.pc, f.sp) for f in task.frames]


def test_corrupted_stack_words_are_never_reliable(session):
    """Fault injection in the frozen guest's RAM: every corruption of fc_chain's frame chain turns the verdict
    unreliable; random stack words changed anywhere in its stack never yield a different reliable trace."""
    results = []

    def corrupt(report):
        true = _task(report, "fc_chain")
        assert true.reliable
        writer = GuestRamWriter(session.guest.ram_path, report.kernel_cr3)
        try:
            fr = true.frames
            # The frame record of frame k (for k >= 1) is at fr[k].fp: [saved rbp][return address of k+1].
            rec = {k: fr[k].fp for k in range(1, len(fr) - 1)}
            targeted = [
                ("skip a frame: saved rbp -> the next record", rec[5], writer.read(rec[6])),
                ("saved rbp zeroed", rec[4], 0),
                ("saved rbp points to itself", rec[3], rec[3]),
                ("saved rbp misaligned", rec[6], rec[6] + 4 + 16),
                ("return address -> another frame's", rec[5] + 8, fr[8].pc),
                ("return address -> mid-function", rec[6] + 8, writer.read(rec[6] + 8) + 1),
                ("return address -> a stack address", rec[4] + 8, rec[4]),
                ("saved rbp -> outside the stack", rec[7], 0xffff888000001000),
            ]
            for what, addr, value in targeted:
                writer.write(addr, value)
                got = _task(session.walk_frozen(), "fc_chain")
                writer.restore()
                results.append((what, got.reliable, got.reason, _frames(got) == _frames(true)))
            rng = random.Random(7)
            lo, hi = fr[0].sp - 64, true.stack + 16384
            for _ in range(60):
                words = rng.randint(1, 3)
                for _ in range(words):
                    addr = rng.randrange(lo, hi, 8)
                    old = writer.read(addr)
                    value = rng.choice([old ^ (1 << rng.randrange(64)), rng.getrandbits(64), old + 8, old - 8, 0,
                                        fr[rng.randrange(1, len(fr))].pc])
                    writer.write(addr, value)
                got = _task(session.walk_frozen(), "fc_chain")
                writer.restore()
                results.append(("random", got.reliable, got.reason, _frames(got) == _frames(true)))
            # Restored exactly: the same reliable trace again.
            again = _task(session.walk_frozen(), "fc_chain")
            results.append(("restored", again.reliable, again.reason, _frames(again) == _frames(true)))
        finally:
            writer.close()

    session.walk(while_frozen=corrupt)
    from collections import Counter
    print(Counter((w if w != "random" else "random", "reliable" if r else reason) for w, r, reason, _ in results))
    for what, reliable, reason, same in results[:8]:
        assert not reliable, f"{what}: still reliable"
    wrong = [r for r in results if r[1] and not r[3]]
    assert wrong == [], f"false reliable after corruption: {wrong}"
    assert results[-1][1] and results[-1][3], "the restored stack must walk exactly as before"
    # The guest keeps running normally after the restore.
    assert session.guest.task_counts()["threads"] > 0
