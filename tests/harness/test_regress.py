"""The regression suite: fcregress.ko, generated from guest/regress/variants.json, holds a kthread sleeping in
every frame-bug variant and in every correct twin. Every bug must be flagged by the validator (in objtool's
words, with objtool agreeing, where objtool sees it; by framecert's own rule, and refused call sites in the
metadata, where only framecert's rbp data flow does) and
judged unreliable by a walk of the booted guest; every twin must be clean and reliable, with exactly its true
chain."""
import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from framecert_guest import known_chains, paths, qemu, walk
from framecert_guest.report import finish_report

CLI = REPO / "scripts" / "framecert-guest"
FRAMECERT = paths.FRAMECERT_BIN


@pytest.fixture(scope="module")
def expected(guest_dir):
    return json.loads((guest_dir / "regress-expected.json").read_text())


def _findings(obj: Path, kernel: str) -> dict:
    """function -> finding texts of `framecert check` on obj (built for kernel release `kernel`)."""
    r = subprocess.run([str(FRAMECERT), "check", "--kernel-version", kernel, str(obj)], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    out = {}
    for m in re.finditer(r"warning: framecert: (\w+)\+0x[0-9a-f]+: (.*)", r.stderr):
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def _call_sites(obj: Path, tmp: Path, kernel: str) -> dict:
    """function -> the flags of its call sites in the metadata (framecert dump)."""
    meta = tmp / (obj.stem + ".fcmeta")
    subprocess.run([str(FRAMECERT), "check", "--kernel-version", kernel, "--metadata", str(meta), str(obj)],
                   capture_output=True, check=False)
    dump = subprocess.run([str(FRAMECERT), "dump", str(meta)], capture_output=True, text=True, check=True).stdout
    out = {}
    for m in re.finditer(r"call returning to \S+ <(\w+)\+0x[0-9a-f]+>: (.*)", dump):
        out.setdefault(m.group(1), []).append(m.group(2).split())
    # Proven tail calls, as ("tail", target) entries of the function that makes them.
    for m in re.finditer(r"tail call at \S+ <(\w+)\+0x[0-9a-f]+> to (.*)", dump):
        out.setdefault(m.group(1), []).append(["tail", m.group(2)])
    return out


def test_validator_flags_every_bug_and_no_twin(guest_dir, expected, tmp_path):
    regress_dir = guest_dir / "regress"
    manifest = json.loads((guest_dir / "manifest.json").read_text())
    kernel = manifest["kernel_release"]
    objects = {o: _findings(regress_dir / o, kernel) for o in ("fcregress_asm.o", "fcregress_c.o")}
    sites = {o: _call_sites(regress_dir / o, tmp_path, kernel) for o in objects}
    objtool = " ".join(manifest["objtool_warnings"]["fcregress.ko"])
    six_ten_or_later = manifest.get("profile", "6.1-gcc").split("-")[0] not in ("6.1",)
    # Kbuild ran framecert beside objtool on the module objects too (issue 17), and they agreed.
    assert manifest["framecert_in_module_kbuild"] == {"ran": True, "disagreements": []}, manifest
    caught = 0
    for comm, k in expected["kthreads"].items():
        fn, found = k["function"], objects[k["object"]].get(k["function"], [])
        calls = sites[k["object"]].get(fn, [])
        if k["kind"] == "twin":
            assert found == [], (fn, found)
            if k.get("tail_call"):  # no call: one proven tail call into the nap
                assert len(calls) == 1 and calls[0][0] == "tail" and "fcr_nap_forever" in calls[0][1], (fn, calls)
            else:
                assert calls and all("frame-valid" in c for c in calls), (fn, calls)
            assert f"objtool: {fn}+" not in objtool
            continue
        if six_ten_or_later and not k["objtool_sees"]:
            # objtool 6.12 sees these bugs by its own rule (a register moved into rbp ends the frame): framecert
            # in 6.12's formats reports what objtool 6.12 reports, first.
            assert found and f"objtool: {fn}+" in objtool and found[0] in objtool, (fn, found)
        else:
            assert found == [k["finding"]], (fn, found)
        if k["objtool_sees"]:
            assert f"objtool: {fn}+" in objtool and k["finding"] in objtool  # the reference agrees
        else:
            # objtool 6.1 cannot see it (rbp overwritten by a plain mov): framecert's own rule, and the metadata
            # must refuse the call site. (objtool 6.12 sees the restore of rbp instead: not asserted here; the
            # kernel crosscheck compares each profile with its own objtool.)
            if not six_ten_or_later:
                assert f"objtool: {fn}+" not in objtool
            assert calls and all("frame-valid" not in c for c in calls), (fn, calls)
        caught += 1
    assert caught == sum(1 for k in expected["kthreads"].values() if k["kind"] == "bug")


def test_walk_judges_every_variant(guest_dir, expected):
    truths = known_chains.load(guest_dir)
    with qemu.Guest(guest_dir, smp=2) as guest:
        guest.wait_ready(timeout=300)
        with walk.WalkSession(guest) as session:
            # A kthread is caught between two naps now and then: retry a few freezes until each is asleep.
            pending = dict(expected["kthreads"])
            for _ in range(5):
                report = finish_report(session.walk())
                assert report.summary.false_reliable == 0
                assert known_chains.check(report, truths) == 0, [t for t in report.tasks if t.truth_violation]
                by_comm = {t.comm: t for t in report.tasks}
                for comm in list(pending):
                    t, k = by_comm[comm], pending[comm]
                    trace = known_chains.outermost_first(t)
                    if t.running or "fcr_nap" not in trace:
                        continue  # not asleep in its chain at this freeze
                    if k["verdict"] == "reliable":
                        assert t.reliable, (comm, k["function"], t.reason, t.detail)
                        # The known chain: this kernel's thread entry above ret_from_fork (6.7+), then the chain.
                        assert trace == truths[comm].chain + expected["sleeps_in"], (comm, trace)
                        assert t.crosscheck["metadata"] == "agree"
                    else:
                        assert not t.reliable, (comm, k["function"], trace)
                        if k["reason"]:
                            assert t.reason == k["reason"], (comm, k["function"], t.reason, t.detail)
                    del pending[comm]
                if not pending:
                    break
            assert not pending, f"never caught asleep in their chain: {sorted(pending)}"
