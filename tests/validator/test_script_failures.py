"""scripts/framecert-objtool and scripts/kernel-crosscheck when framecert fails or answers wrongly.

framecert's contract is exit 0 (clean), 1 (findings), 2 (unusable input); anything else is a crash. Both
scripts must count a crash, or exit 2, as a disagreement instead of reading the missing output as "no
findings, agreed". Stand-in framecert and objtool scripts (written here, passed via FRAMECERT and
FRAMECERT_REAL_OBJTOOL / OBJTOOL) give each wrong answer on purpose; the objects are never read.
"""
import os
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
FINDING = "f+0x5: call without frame pointer save/setup"

# framecert stand-ins: the object is the last argument ("check OBJ"). Only objects named *bad.o get the
# wrong answer, so kernel-crosscheck's other object (vmlinux.o) shows the stand-ins agree otherwise.
FRAMECERT = {
    "segv": "ulimit -c 0; kill -SEGV $$",  # a segfault prints nothing
    "abort": 'echo "free(): invalid pointer" >&2; ulimit -c 0; kill -ABRT $$',  # glibc's last words
    "exit2": 'echo "framecert: $obj: not an ELF object" >&2; exit 2',
    "silent": "exit 0",  # no findings where objtool has one
    "finding": f'echo "$obj: warning: framecert: {FINDING}" >&2; exit 1',
}
OBJTOOL = {
    "finding": f'echo "$obj: warning: objtool: {FINDING}"; exit 0',
    "clean": "exit 0",
    # objtool 6.1 on an object it cannot use: a warning-shaped line, non-zero exit
    "exits3": "exit 3",  # a non-zero status to tell apart, nothing printed: not a refusal
    "refuses": "echo \"$obj: warning: objtool: gelf_getehdr: invalid \\`Elf' handle\"; exit 1",
}


def stand_in(dir_: Path, name: str, bad_body: str, good_body: str) -> Path:
    p = dir_ / name
    p.write_text(f'#!/bin/sh\nfor obj; do :; done\ncase $obj in\n  *bad.o) {bad_body} ;;\n'
                 f'  *) {good_body} ;;\nesac\n')
    p.chmod(0o755)
    return p


def tools(tmp_path: Path, framecert: str, objtool: str):
    """(framecert, objtool) stand-ins: the named behaviour on *bad.o, agreement on a finding elsewhere."""
    fc = stand_in(tmp_path, "framecert", FRAMECERT[framecert], FRAMECERT["finding"])
    ot = stand_in(tmp_path, "objtool", OBJTOOL[objtool], OBJTOOL["finding"])
    return fc, ot


def wrapper(tmp_path: Path, framecert: str, objtool: str, strict: bool):
    fc, ot = tools(tmp_path, framecert, objtool)
    obj = tmp_path / "bad.o"
    obj.write_bytes(b"not read")
    env = dict(os.environ, FRAMECERT=str(fc), FRAMECERT_REAL_OBJTOOL=str(ot))
    env.pop("FRAMECERT_STRICT", None)
    if strict:
        env["FRAMECERT_STRICT"] = "1"
    r = subprocess.run([str(SCRIPTS / "framecert-objtool"), "--stackval", str(obj)], env=env, cwd=tmp_path,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    return r, str(obj)


def crosscheck(tmp_path: Path, framecert: str, objtool: str, jobs=None):
    """kernel-crosscheck on a fake guest tree: linux/drivers/bad.o (named by its .cmd file) and vmlinux.o."""
    fc, ot = tools(tmp_path, framecert, objtool)
    tree = tmp_path / "guest" / "linux"
    (tree / "drivers").mkdir(parents=True)
    (tree / "drivers" / "bad.o").write_bytes(b"not read")
    (tree / "drivers" / ".bad.o.cmd").write_text(
        "cmd_drivers/bad.o := gcc -c -o drivers/bad.o drivers/bad.c ; ./tools/objtool/objtool --stackval "
        "drivers/bad.o\n")
    (tree / "vmlinux.o").write_bytes(b"not read")
    env = dict(os.environ, FRAMECERT=str(fc), OBJTOOL=str(ot))
    jobs_args = ["-j", str(jobs)] if jobs is not None else []
    return subprocess.run([str(SCRIPTS / "kernel-crosscheck"), *jobs_args, str(tmp_path / "guest")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def row(out: str, label: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith(label)]
    assert len(lines) == 1, out
    return lines[0][len(label):].split()[0]


# --- the wrapper ------------------------------------------------------------------------------------

FAILURES = {
    "segv": "framecert failed (exit 139: killed by SIGSEGV): no output",
    "abort": "framecert failed (exit 134: killed by SIGABRT): free(): invalid pointer",
    "exit2": "framecert failed (exit 2: could not use the object): framecert: {obj}: not an ELF object",
}


@pytest.mark.parametrize("framecert", ["segv", "abort", "exit2"])
def test_wrapper_strict_fails_when_framecert_fails(tmp_path, framecert):
    r, obj = wrapper(tmp_path, framecert, "finding", strict=True)
    assert r.returncode == 1, r.stdout
    assert f"framecert-objtool: {obj}: " + FAILURES[framecert].format(obj=obj) in r.stdout
    assert "only objtool" not in r.stdout  # a failed run's findings are not compared
    assert f"{obj}: warning: objtool: {FINDING}" in r.stdout  # objtool's own output still shown


@pytest.mark.parametrize("framecert", ["segv", "abort", "exit2"])
@pytest.mark.parametrize("objtool,status", [("finding", 0), ("clean", 0), ("exits3", 3)])
def test_wrapper_lenient_prints_the_failure_and_keeps_objtools_status(tmp_path, framecert, objtool, status):
    r, obj = wrapper(tmp_path, framecert, objtool, strict=False)
    assert r.returncode == status, r.stdout
    assert f"framecert-objtool: {obj}: " + FAILURES[framecert].format(obj=obj) in r.stdout


def test_wrapper_silent_framecert_is_a_disagreement(tmp_path):
    r, obj = wrapper(tmp_path, "silent", "finding", strict=False)
    assert r.returncode == 0, r.stdout
    assert f"framecert-objtool: {obj}: only objtool: {FINDING}" in r.stdout
    r, obj = wrapper(tmp_path, "silent", "finding", strict=True)
    assert r.returncode == 1, r.stdout
    assert "framecert failed" not in r.stdout


def test_wrapper_both_refusing_the_object_is_agreement(tmp_path):
    r, obj = wrapper(tmp_path, "exit2", "refuses", strict=True)
    assert r.returncode == 1, r.stdout  # objtool's status: objtool failed
    assert "framecert-objtool:" not in r.stdout
    assert f"framecert: {obj}: not an ELF object" in r.stdout


def test_wrapper_agreement_is_quiet(tmp_path):
    r, obj = wrapper(tmp_path, "finding", "finding", strict=True)
    assert r.returncode == 0, r.stdout
    assert "framecert-objtool:" not in r.stdout


# --- kernel-crosscheck ------------------------------------------------------------------------------

@pytest.mark.parametrize("framecert", ["segv", "abort", "exit2"])
@pytest.mark.parametrize("objtool", ["finding", "clean"])
def test_crosscheck_lists_a_framecert_failure_as_a_difference(tmp_path, framecert, objtool):
    r = crosscheck(tmp_path, framecert, objtool)
    assert r.returncode == 1, r.stdout
    assert row(r.stdout, "objects where both agree exactly") == "1", r.stdout
    assert row(r.stdout, "framecert failed (crash or exit 2)") == "1", r.stdout
    diffs = r.stdout.split("\ndifferences:\n", 1)[1]
    obj = str(tmp_path / "guest" / "linux" / "drivers" / "bad.o")
    expected = FAILURES[framecert].format(obj=obj)
    objtool_line = f"    objtool:   {FINDING}\n" if objtool == "finding" else "    objtool:   \n"
    assert f"drivers/bad.o\n    {expected}\n{objtool_line}" in diffs, r.stdout
    assert "vmlinux.o" not in diffs


def test_crosscheck_silent_framecert_is_a_difference(tmp_path):
    r = crosscheck(tmp_path, "silent", "finding")
    assert r.returncode == 1, r.stdout
    assert row(r.stdout, "framecert failed (crash or exit 2)") == "0", r.stdout
    assert f"drivers/bad.o\n    objtool:   {FINDING}\n" in r.stdout.split("\ndifferences:\n", 1)[1]


def test_crosscheck_both_refusing_the_object_is_agreement(tmp_path):
    r = crosscheck(tmp_path, "exit2", "refuses")
    assert r.returncode == 0, r.stdout
    assert row(r.stdout, "framecert failed (crash or exit 2)") == "0", r.stdout
    assert row(r.stdout, "refused by both tools") == "1", r.stdout
    assert "differences:" not in r.stdout


def test_crosscheck_agreement_exits_0(tmp_path):
    r = crosscheck(tmp_path, "finding", "finding")
    assert r.returncode == 0, r.stdout
    assert row(r.stdout, "objects where both agree exactly") == "2", r.stdout
    assert row(r.stdout, "framecert failed (crash or exit 2)") == "0", r.stdout
    assert "differences:" not in r.stdout


# Issue 17: -j runs objects side by side; the report is the same, in list order, whatever the count.
def test_crosscheck_report_is_the_same_with_any_job_count(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = crosscheck(tmp_path / "a", "silent", "finding", jobs=1)
    two = crosscheck(tmp_path / "b", "silent", "finding", jobs=2)
    assert one.returncode == two.returncode == 1
    assert one.stdout.replace(str(tmp_path / "a"), "") == two.stdout.replace(str(tmp_path / "b"), "")


@pytest.mark.parametrize("args", [["-j", "0"], ["-j"], ["--jobs", "x"], ["--frobnicate"]])
def test_crosscheck_bad_options_exit_2(args):
    r = subprocess.run([str(SCRIPTS / "kernel-crosscheck"), *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("kernel-crosscheck: "), r.stderr


# Issue 15: a 32-bit object (boot or real-mode code Kbuild may give objtool) is not checked by framecert: the
# wrapper says so and keeps objtool's output and status; the crosscheck lists it apart, never as agreement.
ELF32_HEADER = b"\x7fELF\x01\x01\x01" + b"\x00" * 57


def test_wrapper_says_a_32_bit_object_is_not_checked(tmp_path):
    fc, ot = tools(tmp_path, "segv", "finding")  # a framecert run on it would crash: it must not run
    obj = tmp_path / "bad.o"
    obj.write_bytes(ELF32_HEADER)
    env = dict(os.environ, FRAMECERT=str(fc), FRAMECERT_REAL_OBJTOOL=str(ot), FRAMECERT_STRICT="1")
    r = subprocess.run([str(SCRIPTS / "framecert-objtool"), "--stackval", str(obj)], env=env, cwd=tmp_path,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert r.returncode == 0, r.stdout  # objtool's status
    assert f"framecert-objtool: {obj}: not checked by framecert (a 32-bit object)" in r.stdout
    assert FINDING in r.stdout and "framecert failed" not in r.stdout


def test_crosscheck_lists_32_bit_objects_apart_from_agreement(tmp_path):
    tree = tmp_path / "guest" / "linux"
    (tree / "arch").mkdir(parents=True)
    (tree / "arch" / "pm.o").write_bytes(ELF32_HEADER)
    (tree / "arch" / ".pm.o.cmd").write_text(
        "cmd_arch/pm.o := gcc -m32 ; ./tools/objtool/objtool --stackval arch/pm.o\n")
    r = crosscheck(tmp_path, "finding", "finding")  # bad.o and vmlinux.o agree; pm.o is 32-bit
    assert r.returncode == 0, r.stdout
    assert row(r.stdout, "objects (Kbuild objtool list + modules + vmlinux.o)") == "3", r.stdout
    assert row(r.stdout, "objects where both agree exactly") == "2", r.stdout
    assert "of 2 64-bit objects" in r.stdout
    assert row(r.stdout, "32-bit objects (framecert: not checked)") == "1", r.stdout
