"""Issue 17: the Python API (`import framecert`). Unit part: the package is importable by Debian's interpreter
from anywhere after scripts/setup, names one version with the build, and refuses bad arguments before it
looks for a guest. VM part (test_api_on_the_guest, label vm): a walk, a patch-check and a short stress run
through the API on the real guest, with the truth checked."""
import os
import re
import subprocess

import pytest

from conftest import REPO

import framecert
from framecert_guest import livepatch


def _cmake_version():
    return re.search(r"project\(framecert VERSION (\S+)", (REPO / "CMakeLists.txt").read_text()).group(1)


def test_importable_from_anywhere_after_setup(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(["/usr/bin/python3", "-c", "import framecert; print(framecert.__file__, framecert.__version__)"],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, f"scripts/setup makes `import framecert` work (its .pth file): {r.stderr}"
    path, version = r.stdout.split()
    assert path == str(REPO / "harness" / "framecert" / "__init__.py"), \
        f"the .pth names another checkout ({path}): run this checkout's scripts/setup"
    assert version == _cmake_version()


def test_one_version_everywhere():
    assert framecert.__version__ == _cmake_version()
    pyproject = (REPO / "harness" / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == _cmake_version()


@pytest.mark.parametrize("call", [lambda: framecert.Guest(oracle="bogus"),
                                  lambda: framecert.stress(rounds=1, workload="foo"),
                                  lambda: framecert.stress(rounds=0)])
def test_bad_arguments_are_refused_before_any_build(call, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(framecert.UsageError):
        call()
    assert not (tmp_path / "cache").exists()


def test_a_guest_outside_with_is_refused(tmp_path):
    g = framecert.Guest.__new__(framecert.Guest)  # constructed without booting: no session
    g._session = None
    with pytest.raises(framecert.UsageError, match="with framecert.Guest"):
        g.walk()


def test_api_on_the_guest(guest_dir):
    with framecert.Guest(guest_dir) as guest:
        report = guest.walk()
        assert len(report.tasks) > 20
        assert report.summary.false_reliable == 0
        assert any(t.reliable for t in report.tasks)
        assert report.summary.accounting and report.summary.accounting.reliable_checked > 0, "the oracle checked"
        check = guest.patch_check(livepatch.PATCHED_FUNCTIONS)
        assert check.may_switch + check.blocked == len(check.decisions) > 20
        assert {d.decision for d in check.decisions} <= {"may-switch", "blocked-on-stack", "blocked-unreliable"}
        assert check.truth.false_reliable == 0 and check.truth.oracle == "shadow"
    result = framecert.stress(rounds=2, seed=3, guest_dir=guest_dir)
    assert (result.rounds, result.seed, result.workload) == (2, 3, "storm")
    assert result.false_reliable == 0 and result.harness_errors == 0
    assert result.tasks_walked == result.reliable + result.unreliable > 0
    # What the run stands on, as `stress --json` records it (merge and the page read it).
    assert result.provenance["guest"] == guest_dir.name.removeprefix("guest-")
    assert result.provenance["framecert"].startswith("framecert ") and "commit" in result.provenance["framecert"]
    assert result.provenance["command"][:3] == ["framecert.stress", "rounds=2", "seed=3"]
    assert result.raw["summary"]["provenance"] == result.provenance and result.raw["schema"] == "framecert-stress/1"
