"""The shadow-stack oracle's comparison and the truth accounting, on hand-built reports and snapshots (no VM).

Each detector is fed wrong answers — a skipped caller, an extra frame, a frame at the wrong slot, a user-mode
task with kernel calls pending — and must fire; right answers must pass."""
import os
import socket
import threading

import pytest

from framecert_guest import shadow, truth
from framecert_guest.errors import GuestError
from framecert_guest.model import CfiReport, Registers, Task, WalkReport, WalkSummary

STACK = 0xffffc90000010000
SIZE = 0x4000
TOP = STACK + SIZE


def frame(pc, sp, symbol="f"):
    return {"pc": hex(pc), "sp": hex(sp), "symbol": symbol, "offset": 4}


def sleeping_task(frames, thread_sp, reliable=True, **kw):
    """A task as the walker's JSON has it, parsed into the model."""
    t = {"task": "0xffff888000100000", "pid": 42, "comm": "sleeper", "stack": hex(STACK), "thread_sp": hex(thread_sp),
         "running": False, "vcpu": -1, "user_mode": False, "idle": False, "kthread": True, "note": "",
         "reliable": reliable, "reason": None if reliable else "no-frame-at-call-site", "frames": frames,
         "cfa_check": {"agrees": True, "frame_count": len(frames)}}
    t.update(kw)
    return Task.from_json(t)


def regs(*cpus):
    return [Registers.from_json(c) for c in cpus]


def walk_report(tasks, **kw):
    return WalkReport(tasks=tasks, summary=WalkSummary(), **kw)


# A sleeping task's chain: three calls, slot by slot (innermost lowest).
CALLS = [(TOP - 0x100, 0xffffffff81001005), (TOP - 0xc0, 0xffffffff81002005), (TOP - 0x40, 0xffffffff81003005)]
THREAD_SP = TOP - 0x100 - 0x30


def right_frames():
    return [frame(ret, slot + 8) for slot, ret in CALLS]


def snap(entries, **stats):
    return shadow.Snapshot(sorted(entries), stats)


def test_complete_chain_agrees():
    v = shadow.judge(sleeping_task(right_frames(), THREAD_SP), snap(CALLS), [], SIZE)
    assert v.verdict == "agree", v


def test_skipped_caller_is_caught():
    frames = right_frames()
    del frames[1]  # what a frame-pointer walk shows when the middle function called out without a frame
    v = shadow.judge(sleeping_task(frames, THREAD_SP), snap(CALLS), [], SIZE)
    assert v.verdict == "disagree" and "return frame 1" in v.detail


def test_trace_cut_short_and_extra_frame_are_caught():
    v = shadow.judge(sleeping_task(right_frames()[:2], THREAD_SP), snap(CALLS), [], SIZE)
    assert v.verdict == "disagree" and "stops after 2" in v.detail
    extra = right_frames() + [frame(0xffffffff81004005, TOP - 0x8)]
    v = shadow.judge(sleeping_task(extra, THREAD_SP), snap(CALLS), [], SIZE)
    assert v.verdict == "disagree" and "no call made" in v.detail


def test_same_return_address_at_another_slot_is_caught():
    frames = right_frames()
    frames[2]["sp"] = hex(CALLS[2][0] + 8 + 0x10)
    v = shadow.judge(sleeping_task(frames, THREAD_SP), snap(CALLS), [], SIZE)
    assert v.verdict == "disagree"


def test_stale_entries_below_the_stack_pointer_and_other_stacks_are_ignored():
    stale = [(THREAD_SP - 0x80, 0xffffffff81009999), (STACK + SIZE + 0x100, 0xffffffff81008888)]
    v = shadow.judge(sleeping_task(right_frames(), THREAD_SP), snap(CALLS + stale), [], SIZE)
    assert v.verdict == "agree", v


def test_running_task_frame_zero_is_its_pc_and_floor_is_rsp():
    rsp = TOP - 0x120
    frames = [frame(0xffffffff81000abc, rsp)] + right_frames()
    task = sleeping_task(frames, 0, running=True, vcpu=1)
    cpus = regs({"cpu": 0, "rsp": hex(TOP - 0x1000)}, {"cpu": 1, "rsp": hex(rsp)})
    assert shadow.judge(task, snap(CALLS), cpus, SIZE).verdict == "agree"
    # A call the walk skipped between rsp and its first return frame.
    hidden = (rsp + 0x8, 0xffffffff81007005)
    assert shadow.judge(task, snap(CALLS + [hidden]), cpus, SIZE).verdict == "disagree"


def test_user_mode_task_must_have_no_pending_kernel_call():
    task = sleeping_task([], 0, running=True, vcpu=0, user_mode=True)
    cpus = regs({"cpu": 0, "rsp": "0x7ffc0000"})
    assert shadow.judge(task, snap([]), cpus, SIZE).verdict == "agree"
    assert shadow.judge(task, snap(CALLS[:1]), cpus, SIZE).verdict == "disagree"


def test_never_run_task_and_idle_marker():
    fork = sleeping_task([frame(0xffffffff81000100, THREAD_SP + 0x38, "ret_from_fork")], THREAD_SP,
                         note="has not run yet")
    assert shadow.judge(fork, snap(CALLS), [], SIZE).verdict == "no-truth"
    marker_sp = TOP - 0x10
    idle = sleeping_task(right_frames() + [frame(0xffffffff81000050, marker_sp, "secondary_startup_64")],
                         THREAD_SP, idle=True)
    assert shadow.judge(idle, snap(CALLS), [], SIZE).verdict == "agree"
    # No call may have pushed the marker: an entry in its slot is a contradiction.
    v = shadow.judge(idle, snap(CALLS + [(marker_sp - 8, 0xffffffff81000050)]), [], SIZE)
    assert v.verdict == "disagree"


def test_accounting_counts_false_reliables_coverage_and_why_not():
    good = sleeping_task(right_frames(), THREAD_SP)
    bad = sleeping_task(right_frames()[:1] + right_frames()[2:], THREAD_SP, task="0x2", pid=43)
    never = sleeping_task([frame(0xffffffff81000100, THREAD_SP + 0x38)], THREAD_SP, note="has not run yet", pid=44,
                          switches=0)
    ran = sleeping_task([frame(0xffffffff81000100, THREAD_SP + 0x38)], THREAD_SP, note="has not run yet", pid=46,
                        task="0x6", switches=3)
    unrel = sleeping_task(right_frames(), THREAD_SP, reliable=False, pid=45)
    report = walk_report([good, bad, never, unrel, ran], thread_size=SIZE)
    truth.attach(report, snap=snap(CALLS))
    s = report.summary.accounting
    # A "never ran" claim the kernel's switch counts contradict is a false reliable too.
    assert s.false_reliable == 2 and bad.false_reliable and "shadow" in bad.truth_violation
    assert ran.false_reliable and "switched it out 3 times" in ran.truth_violation
    assert never.truths["sched"].verdict == "agree" and not never.false_reliable
    assert s.reliable_checked == 4 and s.truth_coverage == 1.0 and s.no_truth == {}
    # Without the counts the claim is unchecked, and said so.
    never.switches = None
    truth.attach(report, snap=snap(CALLS))
    assert never.truths["sched"].verdict == "no-truth" and report.summary.accounting.reliable_checked == 3
    s = report.summary.accounting
    assert s.unreliable_shadow_complete == {"no-frame-at-call-site": 1}
    assert s.self_consistency == {"agree": 5, "disagree": 0}


def test_accounting_without_an_oracle_claims_no_coverage():
    report = walk_report([sleeping_task(right_frames(), THREAD_SP)])
    truth.attach(report)
    assert report.summary.accounting.truth_coverage == 0.0 and report.summary.false_reliable == 0


# ---- the protocol ----
def test_snapshot_parsing_and_damaged_answers():
    text = "framecert-shadow 1\ne 0xffffc90000013f00 0xffffffff81001005\ns calls 10\ns rets 9\nend\n"
    s = shadow.parse_snapshot(text)
    assert s.entries == [(0xffffc90000013f00, 0xffffffff81001005)] and s.stats == {"calls": 10, "rets": 9}
    with pytest.raises(GuestError, match="unexpected answer"):
        shadow.parse_snapshot("hello\nend\n")
    with pytest.raises(GuestError, match="cut short"):
        shadow.parse_snapshot("framecert-shadow 1\ne 0x1 0x2\n")
    with pytest.raises(GuestError, match="bad line"):
        shadow.parse_snapshot("framecert-shadow 1\nx 1\nend\n")


def test_client_talks_to_a_socket_speaking_the_protocol(tmp_path):
    path = tmp_path / "shadow.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve():
        conn, _ = server.accept()
        with conn:
            buf = b""
            while b"\n" not in buf:
                buf += conn.recv(100)
            # Sent in pieces, as a large snapshot would be.
            for piece in (b"framecert-shadow 1\ne 0x10 0x20\n", b"s calls 1\n", b"end\n"):
                conn.sendall(piece)

    th = threading.Thread(target=serve)
    th.start()
    client = shadow.ShadowClient(path, timeout=5)
    try:
        assert client.snapshot().entries == [(0x10, 0x20)]
    finally:
        client.close()
        th.join()
        server.close()
    with pytest.raises(GuestError, match="did not appear"):
        shadow.ShadowClient(tmp_path / "missing.sock", timeout=0.1)


def test_missing_plugin_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(shadow, "PLUGIN", tmp_path / "nope.so")
    with pytest.raises(GuestError, match="not built"):
        shadow.plugin_path()
    assert os.path.basename(str(shadow.PLUGIN)) == "nope.so"


# ---- the CFI oracle's verdict ----
def _cfi_json(pcs, complete, why=""):
    return {"task": "0xffff888000100000", "frames": [{"pc": hex(p)} for p in pcs], "complete": complete, "why": why}


def _cfi(pcs, complete, why=""):
    """One task of the CFI oracle's answer, parsed into the model."""
    return CfiReport.from_json({"tasks": [_cfi_json(pcs, complete, why)]}).tasks[0xffff888000100000]


def test_cfi_whole_unwind_agrees_and_counts_as_coverage():
    t = sleeping_task(right_frames(), THREAD_SP)
    v = truth.cfi_truth(t, _cfi([ret for _, ret in CALLS], True))
    assert v.verdict == "agree" and v.full and truth.covers("cfi", v)


def test_cfi_catches_a_skipped_caller_even_when_it_stops_early():
    frames = right_frames()
    del frames[1]
    v = truth.cfi_truth(sleeping_task(frames, THREAD_SP), _cfi([ret for _, ret in CALLS[:2]], False, "no CFI"))
    assert v.verdict == "disagree" and "frame 1" in v.detail
    # A whole unwind with one frame more than the trace: the trace skipped a caller.
    v = truth.cfi_truth(sleeping_task(right_frames()[:2], THREAD_SP), _cfi([ret for _, ret in CALLS], True))
    assert v.verdict == "disagree" and v.full


def test_cfi_stopped_early_is_no_truth_and_no_coverage():
    v = truth.cfi_truth(sleeping_task(right_frames(), THREAD_SP), _cfi([CALLS[0][1]], False, "no truth at frame 1"))
    assert v.verdict == "no-truth" and not truth.covers("cfi", v) and "frame 1" in v.detail
    report = walk_report([sleeping_task(right_frames(), THREAD_SP)])
    truth.attach(report, cfi=CfiReport.from_json({"tasks": [_cfi_json([CALLS[0][1]], False, "no truth at frame 1")]}))
    s = report.summary.accounting
    assert s.truth_coverage == 0.0 and s.reliable_checked == 0 and "cfi: no truth at frame 1" in next(iter(s.no_truth))


def test_cfi_stops_without_truth_at_a_hooked_return_address_and_still_catches_other_addresses():
    # Frame 2's return address was replaced by a tracer's trampoline, which the walker recovered: the CFI
    # unwind reads the trampoline from the slot. That is no contradiction, and no truth beyond it.
    tramp = 0xffffffff81c00000
    frames = right_frames()
    frames[2]["trampoline"] = {"pc": hex(tramp), "symbol": "return_to_handler", "slot": hex(CALLS[2][0])}
    cfi_pcs = [ret for _, ret in CALLS[:2]] + [tramp]
    v = truth.cfi_truth(sleeping_task(frames, THREAD_SP), _cfi(cfi_pcs, False, "no CFI for return_to_handler"))
    assert v.verdict == "no-truth" and not v.full and "return_to_handler" in v.detail, v
    # Any other address there is still a contradiction: only the very trampoline the frame names is excused.
    v = truth.cfi_truth(sleeping_task(frames, THREAD_SP), _cfi(cfi_pcs[:2] + [tramp + 8], False, "no CFI"))
    assert v.verdict == "disagree" and "frame 2" in v.detail, v
    # ... and so is a wrong frame before the hooked one.
    v = truth.cfi_truth(sleeping_task(frames, THREAD_SP), _cfi([cfi_pcs[0], 0x1234, tramp], False, "no CFI"))
    assert v.verdict == "disagree" and "frame 1" in v.detail, v
