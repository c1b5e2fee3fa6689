"""Every report against its schema in docs/schemas/ (docs/design.md, "Command-line contracts"), no VM.

Real reports, made here by the code that writes them: `framecert check --json` on objects assembled here,
`framecert walk --pid --json` on processes started here, the guest walk's C++ writer on a hand-built walk
(guest_report_sample), and the harness's walk, patch-check (with and without --kernel-compare), stress,
merge and matrix reports from their own writers, fed the samples the other unit tests use. Each must match
its schema, and a stricter copy of it that allows no field the schema does not describe. Then every schema
is fed wrong reports (a required field gone, an address as an int, another schema's name, a reliable verdict
with a reason) and must refuse them; every schema file is a valid schema with a description for every field;
and merge refuses what is not a stress report."""
import copy
import json
import os
import re
import subprocess
import types
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO
from test_decisions_unit import _FakeSession, _report, _task
from test_shards_unit import _piece

from framecert_guest import livepatch, matrix, patch_check, paths, provenance, shadow, stress
from framecert_guest.errors import GuestError
from framecert_guest.model import CfiReport, Registers, TruthVerdict, WalkReport
from framecert_guest.report import finish_report

SCHEMAS = REPO / "docs" / "schemas"
KINDS = ["check", "walk", "guest-walk", "patch-check", "stress", "matrix"]
CLI = REPO / "scripts" / "framecert-guest"
SAMPLE = Path(os.environ.get("FRAMECERT_GUEST_REPORT_SAMPLE",
                             REPO / "build" / "tests" / "harness" / "guest_report_sample"))


def load(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text())


def strict(schema):
    """The schema with no undescribed field allowed: every object schema that lists its properties gets
    additionalProperties false (the real schemas allow more: adding a field keeps the version)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def errors(kind: str, report, schema=None) -> list:
    v = jsonschema.Draft202012Validator(schema or load(kind))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(report)]


def assert_valid(kind: str, report: dict):
    """As written: through JSON (int keys become strings), against the schema and its strict copy."""
    written = json.loads(json.dumps(report))
    assert written.get("schema") == f"framecert-{kind}/1"
    assert errors(kind, written) == []
    assert errors(kind, written, strict(load(kind))) == [], "a field the schema does not describe"
    return written


# ---- the C++ reports ----
def _assemble(tmp: Path, name: str, source: str, link: bool = False) -> Path:
    src = tmp / f"{name}.S"
    src.write_text(source + '\n\t.section .note.GNU-stack,"",@progbits\n')
    obj = tmp / f"{name}.o"
    subprocess.run(["as", "-o", obj, src], check=True)
    if not link:
        return obj
    subprocess.run(["ld", "-static", "--build-id", "-o", tmp / name, obj], check=True)
    return tmp / name


FUNC = "\t.globl {0}\n\t.type {0}, @function\n{0}:\n{1}\t.size {0}, .-{0}\n"
FRAMED_CALL = "\tpushq %rbp\n\tmovq %rsp, %rbp\n\tcall g\n\tpopq %rbp\n\tret\n"


def _napper(noframe: bool) -> str:
    """_start -> outer -> nap, asleep in nanosleep after printing "ready"; with CFI for libunwind. `noframe`:
    outer calls without a frame (a frame-pointer walk skips _start: unreliable)."""
    outer = ("\t.cfi_startproc\n\tcall nap\n\tret\n\t.cfi_endproc\n" if noframe else
             "\t.cfi_startproc\n\tpushq %rbp\n\t.cfi_def_cfa_offset 16\n\t.cfi_offset rbp, -16\n\tmovq %rsp, %rbp\n"
             "\t.cfi_def_cfa_register rbp\n\tcall nap\n\tpopq %rbp\n\t.cfi_def_cfa rsp, 8\n\tret\n\t.cfi_endproc\n")
    nap = ("\t.cfi_startproc\n\tpushq %rbp\n\t.cfi_def_cfa_offset 16\n\t.cfi_offset rbp, -16\n\tmovq %rsp, %rbp\n"
           "\t.cfi_def_cfa_register rbp\n\tmovl $1, %eax\n\tmovl $1, %edi\n\tleaq ready(%rip), %rsi\n"
           "\tmovl $6, %edx\n\tsyscall\n1:\tmovl $35, %eax\n\tleaq ts(%rip), %rdi\n\txorl %esi, %esi\n\tsyscall\n"
           "\tjmp 1b\n\t.cfi_endproc\n")
    start = "\t.cfi_startproc\n\t.cfi_undefined rip\n\txorl %ebp, %ebp\n\tcall outer\n\thlt\n\t.cfi_endproc\n"
    return ("\t.text\n" + FUNC.format("_start", start) + FUNC.format("outer", outer) + FUNC.format("nap", nap) +
            '\t.section .rodata\nready:\t.ascii "ready\\n"\n\t.balign 8\nts:\t.quad 1, 0\n')


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("schemas")


@pytest.fixture(scope="module")
def check_report(work):
    """A clean object, one with a positional finding (and its path), one with a finding without a position,
    and a file that is no ELF object (its error)."""
    objects = [_assemble(work, "framed", "\t.text\n" + FUNC.format("f", FRAMED_CALL)),
               _assemble(work, "noframe", "\t.text\n" + FUNC.format("f", "\tcall g\n\tret\n")),
               _assemble(work, "fallthrough", "\t.text\n" + FUNC.format("f", "\tnop\n") + FUNC.format("g", "\tret\n"))]
    (work / "not-elf.o").write_text("no ELF here\n")
    r = subprocess.run([str(paths.framecert_bin()), "check", "--json", *map(str, objects), str(work / "not-elf.o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr  # the unusable object
    report = json.loads(r.stdout)
    findings = [f for o in report["objects"] for f in o.get("findings", [])]
    assert {"offset", "path"} <= set(findings[0]) and "offset" not in findings[1], findings
    return report


@pytest.fixture(scope="module")
def walk_reports(work):
    """`framecert walk --pid --json --oracle libunwind` on a process with a reliable trace, and on one whose
    trace is unreliable."""
    out = []
    for noframe in (False, True):
        exe = _assemble(work, f"napper{int(noframe)}", _napper(noframe), link=True)
        proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            r = subprocess.run([str(paths.framecert_bin()), "walk", "--json", "--pid", str(proc.pid), "--oracle",
                                "libunwind", "--cache-dir", str(work / "cache")],
                               capture_output=True, text=True, timeout=120)
        finally:
            proc.kill()
            proc.wait()
        assert r.returncode == (1 if noframe else 0), r.stderr
        out.append(json.loads(r.stdout))
    assert out[1]["threads"][0]["reason"] == "no-frame-at-call-site"
    return out


@pytest.fixture(scope="module")
def guest_walk_report():
    assert SAMPLE.is_file(), f"{SAMPLE}: not built (ninja -C build guest_report_sample)"
    return json.loads(subprocess.run([str(SAMPLE)], capture_output=True, text=True, check=True).stdout)


def test_check_report_matches_its_schema(check_report):
    assert_valid("check", check_report)


def test_walk_reports_match_their_schema(walk_reports):
    for report in walk_reports:
        assert_valid("walk", report)


def test_guest_walk_report_matches_its_schema(guest_walk_report):
    assert_valid("guest-walk", guest_walk_report)


# ---- the harness's reports ----
STACK = 0xffffc90000010000


def harness_walk(sample: dict) -> WalkReport:
    """The C++ sample parsed and finished as `framecert-guest walk --external` does: registers, the shadow
    (which contradicts the sleeper's reliable trace: a false reliable, with its evidence), the CFI oracle,
    drgn and crash, the dump's PIDs."""
    report = WalkReport.from_json(copy.deepcopy(sample))
    s = report.summary  # the timings walk.WalkSession adds
    s.registers_ms, s.walker_roundtrip_ms, s.parse_ms, s.report_bytes, s.stop_ms = 0.3, 4.1, 0.6, 5210, 0.2
    s.freeze_to_verdict_ms, s.freeze_to_report_ms = 3.9, 5.3
    report.registers = [Registers.from_json({"cpu": 0, "rip": 0x401000, "rsp": 0x7ffc0000, "rbp": 0, "cs": 0x33,
                                             "cr3": 0x1a0c000, "rax": 5, "eflags": 0x246, "fs_base": 0x7f0000})]
    sleeper = report.tasks[0]
    slots = [(f.sp - 8, f.pc) for f in sleeper.frames]
    report.shadow = shadow.Snapshot(sorted(slots[:1] + slots[2:]), {"calls": 9, "returns": 7})
    report.cfi = CfiReport.from_json({"tasks": [{"task": hex(sleeper.address), "complete": True,
                                                 "frames": [{"pc": hex(f.pc), "cfa": hex(f.sp), "sp": hex(f.sp)}
                                                            for f in sleeper.frames]}]})
    drgn = {sleeper.address: TruthVerdict("agree", "", evidence={"frames": ["schedule", "a (inline)", "b"]})}
    crash = {sleeper.address: TruthVerdict("not-run", "crash lists no such task")}
    report.prstatus_pids = {0: 77}
    report.crash_raw = {"tasks_listed": 3, "stderr": "", "stdout_head": "PID: 42 ..."}
    finish_report(report, drgn, crash, chains={})
    assert sleeper.false_reliable and sleeper.truths["shadow"].evidence["shadow"]
    return report


def test_harness_walk_report_matches_the_guest_walk_schema(guest_walk_report):
    written = assert_valid("guest-walk", harness_walk(guest_walk_report).to_json())
    assert written["registers"][0]["rip"] == "0x401000" and written["registers"][0]["eflags"] == "0x246"
    assert written["ftrace_trampolines"] == guest_walk_report["ftrace_trampolines"], "unknown fields kept"


def test_the_model_reads_the_field_and_refuses_another_version(guest_walk_report):
    report = WalkReport.from_json(guest_walk_report)
    assert "schema" not in report.extra and report.to_json()["schema"] == guest_walk_report["schema"]
    assert WalkReport.from_json({k: v for k, v in guest_walk_report.items() if k != "schema"}).tasks
    with pytest.raises(GuestError, match="framecert-guest-walk/2"):
        WalkReport.from_json({**guest_walk_report, "schema": "framecert-guest-walk/2"})


def patch_check_report() -> dict:
    """Retries: a task that switched, one born of a switched parent, one blocked throughout."""
    sh = _task(10, "sh", ["do_wait"])
    first = _report([sh, _task(11, "cat", ["f", "vfs_read"], ppid=10), _task(12, "stuck", ["f"]),
                     _task(15, "lost", ["x"], reliable=False, reason="no-metadata", reason_frame=0)])
    second = _report([sh, _task(13, "cat", ["f", "vfs_read"], ppid=10), _task(12, "stuck", ["f"])])
    return patch_check.run_rounds(_FakeSession([first, second]), ["f"], retries=1, interval=0)


def test_patch_check_report_matches_its_schema():
    written = assert_valid("patch-check", patch_check_report())
    assert {"inherited_from", "switched_in_round"} <= {k for d in written["tasks"] for k in d}


def kernel_compare_report(monkeypatch, sample: dict) -> dict:
    """livepatch.compare() on a stand-in guest and walk session: the real writer of --kernel-compare."""
    class Session:
        def __init__(self, guest, cfi=False):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def known_functions(self, names):
            return set(names)

        def walk(self):
            return WalkReport.from_json(copy.deepcopy(sample))

    guest = types.SimpleNamespace(guest_dir=Path("/nonexistent"),
                                  command=lambda cmd, **kw: "1\n" if cmd.endswith("/transition") else "")
    monkeypatch.setattr(livepatch, "WalkSession", Session)
    monkeypatch.setattr(livepatch.known_chains, "load", lambda guest_dir: {})
    monkeypatch.setattr(livepatch.time, "sleep", lambda s: None)
    return livepatch.compare(guest, ["b"])


def test_kernel_compare_report_matches_the_patch_check_schema(monkeypatch, guest_walk_report):
    written = assert_valid("patch-check", kernel_compare_report(monkeypatch, guest_walk_report))
    assert written["kernel_compare"]["counts"]["kernel-switched-framecert-blocked"] == 1


def stress_report(monkeypatch, sample: dict, work: Path) -> dict:
    """stress.run() on a stand-in guest (rounds walked from the sample; round 1 fails), with the provenance
    `framecert-guest stress` adds."""
    class Runner:
        def __init__(self, guest_dir, smp, workload, oracle="shadow"):
            self.guest = types.SimpleNamespace(proc=types.SimpleNamespace(poll=lambda: None))

        def start(self):
            pass

        def stop(self):
            pass

        def one_round(self, rnd, delay):
            if rnd == 1:
                raise GuestError("QMP: connection closed")
            return stress.round_record(rnd, delay, harness_walk(sample))

    monkeypatch.setattr(stress, "_Runner", Runner)
    monkeypatch.setattr(stress.time, "sleep", lambda s: None)
    report = stress.run(work / "guest-0123", [0, 1, 2], seed=7, workload="function_graph", oracle="shadow")
    report["summary"].update(provenance.describe_run(work / "guest-0123", 3, (1, 1), (0, 1),
                                                     ["framecert-guest", "stress", "--rounds", "3"]))
    return report


def test_stress_report_matches_its_schema(monkeypatch, guest_walk_report, work):
    written = assert_valid("stress", stress_report(monkeypatch, guest_walk_report, work))
    assert written["rounds"][1]["harness_error"] and "42:fc_chain" in written["rounds"][0]["stacks"]


def test_merged_report_matches_the_stress_schema():
    merged = stress.merge([_piece("2/2"), _piece("1/2")])
    assert merged["schema"] == stress.SCHEMA and merged["summary"]["provenance"]["pieces"]
    assert_valid("stress", merged)


def test_matrix_report_matches_its_schema(monkeypatch, guest_walk_report, work, tmp_path):
    """matrix.measure() with every command it runs answered by the reports above (their schema fields too:
    the matrix reads them); the second profile's build fails."""
    reports = {"walk": harness_walk(guest_walk_report).to_json(),
               "patch-check": kernel_compare_report(monkeypatch, guest_walk_report),
               "stress": stress_report(monkeypatch, guest_walk_report, work)}

    def run(cmd, profile, log, **env):
        cmd = [str(c) for c in cmd]
        if "build" in cmd:
            ok = profile.cc == "gcc"
            return subprocess.CompletedProcess(cmd, 0 if ok else 1, f"{tmp_path}/guest-{profile.name}\n" if ok else "",
                                               "" if ok else "make: *** [vmlinux] Error 2")
        if cmd[0].endswith("kernel-crosscheck"):
            return subprocess.CompletedProcess(cmd, 0, "objects (all)   1068\nobjects where both agree exactly  1067\n",
                                               "")
        Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps(reports[cmd[2]]))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(matrix, "_run", run)
    monkeypatch.setattr(matrix.known_chains, "expected_unreliable", lambda guest: {"fc_asm_noframe": None})
    rows = matrix.run(matrix.parse_profiles("6.1-gcc,6.1-clang"), 2, tmp_path / "matrix.log")
    written = assert_valid("matrix", matrix.report(2, rows))
    assert {"walk", "patch_check", "stress"} <= set(written["profiles"][0]) and written["profiles"][1]["notes"]


# ---- wrong reports are refused ----
def _del(path):
    def change(r):
        *head, last = path
        for k in head:
            r = r[k]
        del r[last]
    return change


def _set(path, value):
    def change(r):
        *head, last = path
        for k in head:
            r = r[k]
        r[last] = value
    return change


WRONG = [
    ("check", "no summary", _del(["summary"])),
    ("check", "no findings count", _del(["summary", "findings"])),
    ("check", "instructions as text", _set(["objects", 0, "instructions"], "3")),
    ("check", "an offset without func_offset", _del(["objects", 1, "findings", 0, "func_offset"])),
    ("check", "another schema", _set(["schema"], "framecert-walk/1")),
    ("walk", "an address as an int", _set(["threads", 0, "frames", 0, "pc"], 4198400)),
    ("walk", "an address in decimal", _set(["threads", 0, "frames", 0, "sp"], "4198400")),
    ("walk", "no verdict", _del(["threads", 0, "reliable"])),
    ("walk", "reliable with a reason", _set(["threads", 0, "reason"], "no-metadata")),
    ("walk", "a reason not in the list", _set(["threads", 1, "reason"], "bad-luck")),
    ("walk", "unknown trust", _set(["threads", 0, "frames", 0, "trust"], "hope")),
    ("walk", "version 2", _set(["schema"], "framecert-walk/2")),
    ("guest-walk", "a task address as an int", _set(["tasks", 0, "task"], 0xffff888000100000)),
    ("guest-walk", "kernel_cr3 as an int", _set(["kernel_cr3"], 0x1a0c000)),
    ("guest-walk", "no pid", _del(["tasks", 0, "pid"])),
    ("guest-walk", "unreliable without a reason", _set(["tasks", 2, "reason"], None)),
    ("guest-walk", "no summary", _del(["summary"])),
    ("guest-walk", "walk_ms as text", _set(["summary", "walk_ms"], "3.5")),
    ("patch-check", "an unknown decision", _set(["tasks", 0, "decision"], "maybe")),
    ("patch-check", "pid as text", _set(["tasks", 0, "pid"], "10")),
    ("patch-check", "no truth", _del(["truth"])),
    ("stress", "no seed", _del(["summary", "seed"])),
    ("stress", "a frame's pc as an int", _set(["rounds", 0, "stacks", "42:fc_chain", "frame_details", 0, "pc"], 1)),
    ("stress", "a shard that is not I/N", _set(["summary", "shard"], "1 of 1")),
    ("stress", "a patch-check report", _set(["schema"], "framecert-patch-check/1")),
    ("matrix", "rounds as text", _set(["rounds"], "2")),
    ("matrix", "a row without its profile", _del(["profiles", 0, "profile"])),
    ("matrix", "negative tasks", _set(["profiles", 0, "walk", "tasks"], -1)),
]


@pytest.fixture(scope="module")
def valid_reports(check_report, walk_reports, guest_walk_report, work):
    mp = pytest.MonkeyPatch()
    try:
        stress_rep = stress_report(mp, guest_walk_report, work)
    finally:
        mp.undo()
    matrix_rep = matrix.report(2, [{"profile": "6.1-gcc", "notes": [], "walk": {"tasks": 3, "false_reliable": 0}}])
    return {"check": check_report, "walk": {**walk_reports[0], "threads": walk_reports[0]["threads"] +
                                            walk_reports[1]["threads"]},
            "guest-walk": guest_walk_report, "patch-check": patch_check_report(),
            "stress": json.loads(json.dumps(stress_rep)), "matrix": matrix_rep}


@pytest.mark.parametrize("kind, what, change", WRONG, ids=[f"{k}: {w}" for k, w, _ in WRONG])
def test_a_wrong_report_is_refused(valid_reports, kind, what, change):
    report = copy.deepcopy(valid_reports[kind])
    assert errors(kind, report) == []
    change(report)
    assert errors(kind, report), f"{kind}: {what} passed"


def test_every_kind_is_fed_wrong_reports():
    assert {k for k, _, _ in WRONG} == set(KINDS)


# ---- the schemas themselves ----
def _described(node, defs, where, missing):
    """Every field a schema defines has a description (if/then/else only constrain fields defined elsewhere)."""
    if isinstance(node, list):
        for i, n in enumerate(node):
            _described(n, defs, f"{where}/{i}", missing)
        return
    if not isinstance(node, dict):
        return
    for name, prop in node.get("properties", {}).items():
        target = defs.get(prop.get("$ref", "").removeprefix("#/$defs/"), {})
        if "description" not in prop and "description" not in target:
            missing.append(f"{where}/properties/{name}")
    for key, value in node.items():
        if key in ("if", "then", "else"):
            continue
        if key != "properties":
            _described(value, defs, f"{where}/{key}", missing)
        else:
            for name, prop in value.items():
                _described(prop, defs, f"{where}/properties/{name}", missing)


def test_every_schema_file_is_a_valid_schema_and_describes_every_field():
    files = sorted(SCHEMAS.iterdir())
    assert [f.name for f in files] == sorted(f"{k}.schema.json" for k in KINDS)
    for f in files:
        s = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(s)
        kind = f.name.removesuffix(".schema.json")
        assert s["properties"]["schema"]["const"] == f"framecert-{kind}/1" and "schema" in s["required"]
        assert s["$id"].endswith(f"/framecert-{kind}/1") and s["title"] and s["description"], f.name
        missing: list = []
        _described(s, s.get("$defs", {}), f.name, missing)
        assert missing == [], "fields without a description"


def test_the_reasons_are_the_unwinders():
    """A reason added to the unwinder (unwinder/trace.cpp) must be added to the schemas too."""
    reasons = set(re.findall(r'\{Reason::(?!None)\w+, "([a-z-]+)"\}', (REPO / "unwinder" / "trace.cpp").read_text()))
    assert len(reasons) > 15
    for kind in ("walk", "guest-walk", "patch-check", "stress"):
        assert set(load(kind)["$defs"]["reason"]["enum"]) == reasons, kind


# ---- merge reads stress reports only ----
def _merge(tmp_path, *reports):
    files = []
    for i, rep in enumerate(reports):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(rep))
    return files, subprocess.run([str(CLI), "merge", *map(str, files)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("schema", ["framecert-patch-check/1", "framecert-stress/2", 7])
def test_merge_refuses_another_schema_in_one_line(tmp_path, schema):
    other = {**_piece("2/2"), "schema": schema}
    files, r = _merge(tmp_path, {**_piece("1/2"), "schema": stress.SCHEMA}, other)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (f"framecert-guest: error: {files[1]}: a {schema} report; merge combines stress "
                                f"reports ({stress.SCHEMA}) only")


def test_merge_refuses_a_patch_check_report_without_the_field(tmp_path):
    """A patch-check report from before schemas were named has rounds and a summary too."""
    old = {k: v for k, v in patch_check_report().items() if k != "schema"}
    files, r = _merge(tmp_path, _piece("1/1"), old)
    assert r.returncode == 1 and r.stderr.strip() == f"framecert-guest: error: {files[1]} is not a stress report"


def test_merge_takes_reports_with_and_without_the_field(tmp_path):
    files, r = _merge(tmp_path, {**_piece("1/2"), "schema": stress.SCHEMA}, _piece("2/2"))
    assert r.returncode == 0, r.stderr
