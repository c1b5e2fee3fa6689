"""`--shard auto` read from Slurm, Kubernetes and GNU parallel environments, its usage errors (exit 2, one line,
before any guest is built), and `merge` refusing reports that are not the pieces of one run (no VM)."""
import json
import subprocess

import pytest
from conftest import REPO

from framecert_guest import shards, stress
from framecert_guest.errors import GuestError, UsageError

CLI = REPO / "scripts" / "framecert-guest"


@pytest.mark.parametrize("text, spec", [("2/5", (2, 5)), ("auto", (None, None)), ("auto/4", (None, 4))])
def test_parse(text, spec):
    assert shards.parse(text) == spec


@pytest.mark.parametrize("text", ["0/3", "4/3", "x/3", "auto/0", "auto/x", "auto/", "3"])
def test_parse_refuses(text):
    with pytest.raises(ValueError):
        shards.parse(text)


@pytest.mark.parametrize("env, spec, want", [
    # Slurm: --array=0-3 and --array=1-4 both give shards 1..4; the count is Slurm's own
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}, (None, None), (1, 4)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (None, None), (4, 4)),
    # --array=10-40:10
    ({"SLURM_ARRAY_TASK_ID": "30", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "10",
      "SLURM_ARRAY_TASK_COUNT": "4"}, (None, 4), (3, 4)),
    # Kubernetes indexed Job: 0-based, the count from auto/N or FRAMECERT_SHARD_COUNT
    ({"JOB_COMPLETION_INDEX": "0"}, (None, 3), (1, 3)),
    ({"JOB_COMPLETION_INDEX": "2", "FRAMECERT_SHARD_COUNT": "3"}, (None, None), (3, 3)),
    # GNU parallel: 1-based
    ({"PARALLEL_SEQ": "2"}, (None, 2), (2, 2)),
    # an explicit I/N ignores the environment
    ({"PARALLEL_SEQ": "7"}, (1, 2), (1, 2)),
])
def test_resolve(env, spec, want):
    assert shards.resolve(spec, env) == want


@pytest.mark.parametrize("env, spec, message", [
    ({}, (None, None), "no scheduler's shard index"),
    ({"PARALLEL_SEQ": "3"}, (None, 2), "out of range 1..2"),
    ({"PARALLEL_SEQ": "1"}, (None, None), "no shard count"),
    ({"JOB_COMPLETION_INDEX": "x"}, (None, 2), "is not a number"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (None, None),
     "out of range 1..4"),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (None, 3), "shard counts disagree"),
    ({"SLURM_ARRAY_TASK_ID": "15", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "10"}, (None, 4),
     "not on the array's steps"),
    ({"SLURM_ARRAY_TASK_ID": "1", "PARALLEL_SEQ": "1"}, (None, 2), "ambiguous"),
])
def test_resolve_refuses(env, spec, message):
    with pytest.raises(UsageError, match=message):
        shards.resolve(spec, env)


def test_shard_auto_errors_are_usage_errors_before_any_build(tmp_path):
    """Exit 2, one line; --guest-dir names a directory that does not exist, so reaching the guest would fail
    differently (and a build would take minutes)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PARALLEL_SEQ": "3"}
    r = subprocess.run([str(CLI), "stress", "--rounds", "4", "--shard", "auto/2", "--guest-dir",
                        str(tmp_path / "none")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "out of range 1..2" in r.stderr and "Traceback" not in r.stderr


# ---- merge ----
def _piece(shard="1/2", job="0/1", total=4, seed=1, workload="boot", guest="abc", profile="6.1-gcc",
           build="framecert 0.5.0 (commit 1234567)"):
    index, count = shards.split(shard, "shard")
    k, jobs = shards.split(job, "job")
    records = [stress.error_record(r, 0.1, "x") | {"harness_error": None}
               for r in stress.select_rounds(total, (index, count), (k, jobs))]
    summary = stress.summarize(records, seed, workload, "shadow")
    summary.update({"total_rounds": total, "shard": shard, "job": job, "expected_unreliable": {"fcr00": None},
                    "provenance": {"framecert": build, "guest": guest, "profile": profile,
                                   "command": ["framecert-guest", "stress", "--shard", shard]}})
    return {"rounds": records, "summary": summary}


def test_merge_of_every_shard_covers_every_round_once():
    merged = stress.merge([_piece("2/2"), _piece("1/2")])
    assert [r["round"] for r in merged["rounds"]] == [0, 1, 2, 3]
    s = merged["summary"]
    assert s["shard"] == "1/1" and s["total_rounds"] == 4 and s["expected_unreliable"] == {"fcr00": None}
    assert s["provenance"]["guest"] == "abc" and len(s["provenance"]["pieces"]) == 2


def test_merge_of_one_shards_jobs_is_that_shard():
    merged = stress.merge([_piece("2/3", "0/2", total=9), _piece("2/3", "1/2", total=9)])
    assert [r["round"] for r in merged["rounds"]] == [1, 4, 7] and merged["summary"]["shard"] == "2/3"


@pytest.mark.parametrize("pieces, message", [
    ([_piece("1/2"), _piece("2/2", seed=2)], "different runs: seed"),
    ([_piece("1/2"), _piece("2/2", total=6)], "different runs: total rounds"),
    ([_piece("1/2"), _piece("2/2", workload="storm")], "different runs: workload"),
    ([_piece("1/2"), _piece("2/2", guest="def")], "different runs: guest"),
    ([_piece("1/2"), _piece("2/2", profile="6.12-clang")], "different runs: profile"),
    ([_piece("1/2"), _piece("2/2", build="framecert 0.5.0 (commit 89abcde)")], "different runs: framecert build"),
    ([_piece("1/2")], "shards 2/2 missing|shard 2/2 missing"),
    ([_piece("1/3"), _piece("3/3")], "shard 2/3 missing"),
    ([_piece("1/2"), _piece("1/2"), _piece("2/2")], "shard 1/2 is in more than one report"),
    ([_piece("1/2"), _piece("2/3")], "split the run differently"),
    ([_piece("1/1"), _piece("1/2")], "split the run differently"),
    ([_piece("1/2", "0/2"), _piece("2/2")], "shard 1/2 job 1/2 is missing"),
    ([_piece("1/2", "0/2"), _piece("1/2", "0/2"), _piece("1/2", "1/2")], "job 0/2 is in more than one report"),
])
def test_merge_refuses(pieces, message):
    with pytest.raises(GuestError, match=message):
        stress.merge(pieces)


def test_merge_refuses_rounds_outside_the_shards():
    a, b = _piece("1/2"), _piece("2/2")
    b["rounds"] = b["rounds"][:1]  # shard 2/2 lost round 3
    with pytest.raises(GuestError, match=r"missing \[3\]"):
        stress.merge([a, b])


def test_merge_command_refuses_in_one_line(tmp_path):
    paths = []
    for name, piece in (("a", _piece("1/2")), ("b", _piece("2/2", seed=5))):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(piece))
    r = subprocess.run([str(CLI), "merge", *map(str, paths)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "different runs: seed" in r.stderr
