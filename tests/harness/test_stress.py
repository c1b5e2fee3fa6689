"""A short stress run on the booted guest (the README's test command runs it): seeded freezes under the storm
workload, every task walked and cross-checked each round, zero false reliables; and the same rounds run as two
shards (one guest each, in parallel with --jobs) merge into one report."""
import json
import subprocess

from conftest import REPO

CLI = REPO / "scripts" / "framecert-guest"
ROUNDS = 10


def _stress(guest_dir, tmp_path, name, *args):
    out, page = tmp_path / f"{name}.json", tmp_path / f"{name}.html"
    r = subprocess.run([CLI, "stress", "--guest-dir", str(guest_dir), "--json", str(out), "--html", str(page), *args],
                       capture_output=True, text=True, timeout=1200)
    return r, (json.loads(out.read_text()) if out.is_file() else None), page


def test_short_stress_run_has_no_false_reliable(guest_dir, tmp_path):
    r, report, page = _stress(guest_dir, tmp_path, "run", "--rounds", str(ROUNDS), "--seed", "11")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = report["summary"]
    assert s["rounds"] == ROUNDS and [x["round"] for x in report["rounds"]] == list(range(ROUNDS))
    assert s["false_reliable"] == 0 and s["harness_errors"] == 0
    # Every reliable verdict is checked by an independent truth: the shadow oracle, and for tasks that never
    # ran (fork frame only) the kernel's context-switch counts.
    assert s["oracle"] == "shadow" and s["truth_coverage"] >= 0.99, s
    assert s["shadow_agree_reliable"] >= 0.9 * s["reliable"], s
    assert s["tasks_walked"] == sum(x["tasks"] for x in report["rounds"]) and s["tasks_walked"] > 50 * ROUNDS
    # The planted bugs are unreliable in every round where their kthread sleeps: the reasons show up.
    assert s["by_reason"].get("no-frame-at-call-site", 0) >= ROUNDS
    assert "[stress] round" in r.stderr  # the progress line
    text = page.read_text()
    assert "fc_asm_noframe" in text and "no-frame-at-call-site" in text and f"{s['tasks_walked']}" in text


def test_shards_in_parallel_merge_into_the_whole_run(guest_dir, tmp_path):
    r, report, _ = _stress(guest_dir, tmp_path, "jobs", "--rounds", "6", "--seed", "11", "--jobs", "2",
                           "--workload", "boot")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [x["round"] for x in report["rounds"]] == list(range(6))
    # Shard 2/2 alone, then merged with shard 1/2: the same rounds, and the same freeze moments as above.
    r1, a, _ = _stress(guest_dir, tmp_path, "s1", "--rounds", "6", "--seed", "11", "--shard", "1/2",
                       "--workload", "boot")
    assert r1.returncode == 0 and [x["round"] for x in a["rounds"]] == [0, 2, 4]
    assert [x["delay_ms"] for x in a["rounds"]] == [x["delay_ms"] for x in report["rounds"] if x["round"] % 2 == 0]
    merged = tmp_path / "merged.json"
    m = subprocess.run([CLI, "merge", str(tmp_path / "s1.json"), str(tmp_path / "jobs.json"), "--json", str(merged)],
                       capture_output=True, text=True)
    # a shard of a 2-way split with a whole run: refused (they overlap)
    assert m.returncode == 1 and "split the run differently" in m.stderr
    r2, b, _ = _stress(guest_dir, tmp_path, "s2", "--rounds", "6", "--seed", "11", "--shard", "2/2",
                       "--workload", "boot")
    assert r2.returncode == 0
    m = subprocess.run([CLI, "merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--json", str(merged)],
                       capture_output=True, text=True)
    assert m.returncode == 0, m.stderr
    both = json.loads(merged.read_text())
    assert [x["round"] for x in both["rounds"]] == list(range(6))
    assert both["summary"]["tasks_walked"] == a["summary"]["tasks_walked"] + b["summary"]["tasks_walked"]
