"""The special-section formats of each kernel (issue 15): every fixture of tests/fixtures/validator-6.12 is
checked by framecert twice and compared, finding for finding, with the objtool of the same kernel: with
`--kernel-version 6.12` against objtool 6.12, and without it (6.1's formats, unless the object shows its
own) against objtool 6.1. The two objtools disagree on these fixtures, so a framecert that ignored the
version, or read one kernel's layout for both, fails one of the comparisons."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "tests" / "fixtures" / "validator-6.12").glob("*.S"))
FRAMECERT = Path(os.environ.get("FRAMECERT_BIN", REPO / "build" / "harness" / "cli" / "framecert"))
OBJTOOL_6_1 = Path("/usr/lib/linux-kbuild-6.1/tools/objtool/objtool")
OBJTOOL_6_12 = sorted(Path("/usr/lib").glob("linux-kbuild-6.12*/tools/objtool/objtool.real-x86"))


def findings(tool: str, out: str) -> list:
    return sorted(m.group(1) for m in re.finditer(rf"warning: {tool}: (.*)", out))


def run(cmd) -> str:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), f"{cmd}: exit {r.returncode}: {r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    built = {}
    for src in FIXTURES:
        obj = out / (src.stem + ".o")
        subprocess.run(["gcc", "-c", "-o", str(obj), str(src)], check=True)
        built[src.name] = obj
    return built


def test_the_reference_objtools_are_installed():
    assert OBJTOOL_6_1.is_file() and OBJTOOL_6_12, "scripts/setup installs linux-kbuild-6.1 and -6.12"


@pytest.mark.parametrize("name", [f.name for f in FIXTURES])
def test_each_kernel_version_agrees_with_its_own_objtool(objects, name):
    obj = objects[name]
    theirs_6_12 = findings("objtool", run([OBJTOOL_6_12[-1], "--stackval", "--dry-run", obj]))
    theirs_6_1 = findings("objtool", run([OBJTOOL_6_1, "--stackval", "--dry-run", obj]))
    ours_6_12 = findings("framecert", run([FRAMECERT, "check", "--kernel-version", "6.12", obj]))
    assert ours_6_12 == theirs_6_12, f"6.12: framecert {ours_6_12}, objtool {theirs_6_12}"
    ours_default = findings("framecert", run([FRAMECERT, "check", obj]))
    if "objtool: .altinstructions size not a multiple of 12" in " ".join(f"objtool: {t}" for t in theirs_6_1):
        # objtool 6.1 cannot read a 6.10+ object at all; framecert reads the layout off the object instead.
        assert ours_default == theirs_6_12, ours_default
    else:
        assert ours_default == theirs_6_1, f"6.1: framecert {ours_default}, objtool {theirs_6_1}"
    # The fixtures are chosen so that the two kernels' objtools disagree: each comparison can fail.
    assert theirs_6_1 != theirs_6_12


def test_a_bad_kernel_version_is_a_usage_error(objects):
    r = subprocess.run([str(FRAMECERT), "check", "--kernel-version", "six", str(next(iter(objects.values())))],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a kernel version" in r.stderr, r.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
