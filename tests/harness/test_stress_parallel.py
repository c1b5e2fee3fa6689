"""Stress at scale, the GNU parallel form of docs/stress-at-scale.md, on this machine: two shards started by
`parallel` (one guest at a time: two TCG guests on two cores starve each other), each finding its shard with
`--shard auto/2` from PARALLEL_SEQ, then `merge`: every round exactly once, the provenance of both pieces."""
import json
import os
import shutil
import subprocess

from conftest import REPO

CLI = REPO / "scripts" / "framecert-guest"
ROUNDS = 4


def test_gnu_parallel_shards_merge_into_the_whole_run(guest_dir, tmp_path):
    parallel = shutil.which("parallel")
    assert parallel, "GNU parallel is not installed: scripts/setup installs it (Debian package parallel)"
    # Only GNU parallel's variables may name the shard (a CI runner inside a Slurm job must not confuse it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "JOB_COMPLETION_INDEX"}
    r = subprocess.run([parallel, "--will-cite", "-j1", "--halt", "now,fail=1",
                        str(CLI), "stress", "--guest-dir", str(guest_dir), "--rounds", str(ROUNDS), "--seed", "5",
                        "--workload", "boot", "--shard", "auto/2", "--json", str(tmp_path / "shard{}.json"),
                        ":::", "1", "2"], capture_output=True, text=True, timeout=1800, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    pieces = [json.loads((tmp_path / f"shard{i}.json").read_text()) for i in (1, 2)]
    assert sorted(p["summary"]["shard"] for p in pieces) == ["1/2", "2/2"]

    merged, page = tmp_path / "merged.json", tmp_path / "merged.html"
    m = subprocess.run([str(CLI), "merge", str(tmp_path / "shard2.json"), str(tmp_path / "shard1.json"),
                        "--json", str(merged), "--html", str(page)], capture_output=True, text=True, timeout=120)
    assert m.returncode == 0, m.stderr
    report = json.loads(merged.read_text())
    s = report["summary"]
    assert [x["round"] for x in report["rounds"]] == list(range(ROUNDS))  # every round, once, in order
    assert s["rounds"] == s["total_rounds"] == ROUNDS and s["shard"] == "1/1"
    assert s["tasks_walked"] == sum(p["summary"]["tasks_walked"] for p in pieces)
    assert s["false_reliable"] == 0 and s["harness_errors"] == 0
    prov = s["provenance"]
    assert prov["guest"] == guest_dir.name.removeprefix("guest-") and prov["profile"]
    assert sorted(p["shard"] for p in prov["pieces"]) == ["1/2", "2/2"]
    assert "class='banner pass'" in page.read_text()

    # A shard given twice instead of both: refused, one line.
    again = subprocess.run([str(CLI), "merge", str(tmp_path / "shard1.json"), str(tmp_path / "shard1.json")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "shard 1/2 is in more than one report" in again.stderr
