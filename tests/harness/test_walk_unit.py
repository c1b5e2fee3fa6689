"""The guest walk's pure-Python parts, no VM: the gdbstub register block, the PRSTATUS fix for drgn, the
page-table walk of the fault-injection writer, crash's output and the report's totals."""
import struct

from conftest import REPO  # noqa: F401  (puts harness/ on sys.path)
from framecert_guest import crosscheck, gdbstub, ram_writer, report
from framecert_guest.model import Task, TruthVerdict, WalkReport


def test_g_packet_offsets():
    raw = bytearray(gdbstub.G_SIZE)
    struct.pack_into("<Q", raw, 48, 0x1111)       # rbp
    struct.pack_into("<Q", raw, 56, 0x2222)       # rsp
    struct.pack_into("<Q", raw, 128, 0xffffffff81000000)  # rip
    struct.pack_into("<I", raw, 140, 0x10)        # cs
    struct.pack_into("<Q", raw, 204, 0x1a0c000)   # cr3
    regs = gdbstub.parse_g(raw.hex())
    assert (regs["rbp"], regs["rsp"], regs["rip"], regs["cs"], regs["cr3"]) == (0x1111, 0x2222, 0xffffffff81000000,
                                                                                0x10, 0x1a0c000)


def _core_with_prstatus(path, pids):
    notes = b""
    for pid in pids:
        desc = bytearray(336)
        struct.pack_into("<i", desc, 32, pid)
        notes += struct.pack("<III", 5, len(desc), 1) + b"CORE\0\0\0\0" + bytes(desc)
    ehdr = bytearray(64)
    ehdr[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", ehdr, 32, 64)            # e_phoff
    struct.pack_into("<HH", ehdr, 54, 56, 1)        # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(notes), len(notes), 4)
    path.write_bytes(bytes(ehdr) + phdr + notes)


def test_prstatus_pids_become_the_running_tasks(tmp_path):
    core = tmp_path / "vmcore"
    _core_with_prstatus(core, [1, 2])  # QEMU: vCPU index + 1
    tasks = [Task.from_json(t) for t in ({"pid": 41, "running": True, "vcpu": 0},
                                         {"pid": 0, "running": True, "vcpu": 1},
                                         {"pid": 1, "running": False, "vcpu": -1})]
    written = crosscheck.fix_prstatus_pids(core, tasks)
    assert written[0] == 41 and written[1] not in (0, 1, 2)
    data = core.read_bytes()
    first = 64 + 56 + 12 + 8
    assert struct.unpack_from("<i", data, first + 32)[0] == 41


def test_ram_writer_walks_four_levels_and_restores(tmp_path):
    ram = bytearray(64 * 4096)
    cr3, pdpt, pd, pt, page = 0x1000, 0x2000, 0x3000, 0x4000, 0x9000
    va = 0xffff888000123458
    idx = [(va >> s) & 0x1ff for s in (39, 30, 21, 12)]
    for table, i, nxt in ((cr3, idx[0], pdpt), (pdpt, idx[1], pd), (pd, idx[2], pt), (pt, idx[3], page)):
        struct.pack_into("<Q", ram, table + 8 * i, nxt | 3)
    struct.pack_into("<Q", ram, page + 0x458, 0xabcdef)
    path = tmp_path / "ram"
    path.write_bytes(bytes(ram))
    w = ram_writer.GuestRamWriter(path, cr3)
    assert w.translate(va) == page + 0x458 and w.read(va) == 0xabcdef
    w.write(va, 0x42)
    assert w.read(va) == 0x42
    w.close()  # restores
    assert struct.unpack_from("<Q", path.read_bytes(), page + 0x458)[0] == 0xabcdef


def test_finish_report_counts_false_reliables():
    def task(addr, reliable):
        return {"task": addr, "pid": 1, "reliable": reliable, "frames": [{"pc": "0xffffffff81000010"}],
                "cfa_check": {"agrees": True, "frame_count": 1}}
    rep = WalkReport.from_json({"tasks": [task("0x1", True), task("0x2", False), task("0x3", True)], "summary": {}})
    drgn = {0x1: TruthVerdict("agree"), 0x2: TruthVerdict("disagree", "x"), 0x3: TruthVerdict("disagree", "y")}
    report.finish_report(rep, drgn, None)
    assert rep.summary.false_reliable == 1
    assert rep.tasks[2].false_reliable and not rep.tasks[1].false_reliable
    assert rep.tasks[0].crosscheck == {"metadata": "agree", "shadow": "not-run", "drgn": "agree", "crash": "not-run"}
    # drgn's agreement is no coverage: it follows rbp where a function has no CFI.
    assert rep.summary.accounting.truth_coverage == 0.0 and rep.summary.oracle == "none"
    # The report written out (--json) has the walker's schema plus the accounting.
    out = rep.to_json()
    assert out["summary"]["false_reliable"] == 1 and out["tasks"][2]["false_reliable"]
    assert out["tasks"][0]["task"] == "0x1" and out["tasks"][0]["frames"][0]["pc"] == "0xffffffff81000010"


def test_crash_bt_lines_parse():
    m = crosscheck.CRASH_TASK.match('PID: 37       TASK: ffff8880003d0000  CPU: 0    COMMAND: "fc_chain"')
    assert m.group(2) == "ffff8880003d0000"
    m = crosscheck.CRASH_FRAME.match(" #4 [ffff888000273f50] secondary_startup_64_no_verify at ffffffff81000132")
    assert m.group(3) == "secondary_startup_64_no_verify" and int(m.group(4), 16) == 0xffffffff81000132


def test_the_verdict_line_must_repeat_the_report():
    """walk.check_verdicts: the walker's first line (what a decision may act on) against its own report."""
    import pytest
    from framecert_guest.errors import GuestError
    from framecert_guest.walk import check_verdicts
    rep = WalkReport.from_json({"tasks": [{"task": "0x10", "pid": 7, "reliable": True, "frames": []},
                                          {"task": "0x20", "pid": 8, "reliable": False, "reason": "no-metadata",
                                           "frames": []}], "summary": {}})
    check_verdicts([["0x10", 7, True, None], ["0x20", 8, False, "no-metadata"]], rep)
    for wrong in ([["0x10", 7, True, None], ["0x20", 8, True, None]],          # a verdict flipped
                  [["0x10", 7, True, None]],                                    # a task missing
                  [["0x10", 7, True, None], ["0x20", 8, False, "too-deep"]],    # another reason
                  [["0x10", 7, True]],                                          # malformed
                  None):                                                        # no line
        with pytest.raises(GuestError):
            check_verdicts(wrong, rep)
