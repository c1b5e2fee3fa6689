"""Unit tests of the live-patch decisions, the ground-truth oracle, stress-run bookkeeping (rounds, shards,
merging, the HTML page) and the regression-module generator — no VM."""
import json
import subprocess
from pathlib import Path

import pytest

from framecert_guest import known_chains, patch_check, regress, report, report_html, stress
from framecert_guest.errors import GuestError
from framecert_guest.known_chains import KnownChain
from framecert_guest.model import Task, WalkReport


def _frames(*symbols):
    """Innermost first, as the walker reports them."""
    return [{"pc": hex(0xffffffff81000000 + i), "symbol": s, "offset": 4} for i, s in enumerate(symbols)]


def _task(pid, comm, symbols, reliable=True, reason=None, reason_frame=None, **kw):
    """A task as the walker's JSON has it, parsed into the model."""
    t = {"pid": pid, "tgid": pid, "comm": comm, "frames": _frames(*symbols), "reliable": reliable, "reason": reason,
         "reason_frame": reason_frame, "running": False, "idle": False, "user_mode": False, "kthread": True,
         "patch_state": None}
    t.update(kw)
    return Task.from_json(t)


CHAIN = ["__schedule", "schedule", "fc_asm_sleep", "fc_asm_noframe", "fc_noframe_caller", "fc_asm_noframe_fn",
         "kthread", "ret_from_fork"]


# ---- decisions ----
def test_unreliable_blocks_even_where_a_bare_walk_would_switch():
    fp_trace = [s for s in CHAIN if s != "fc_noframe_caller"]  # what the frame pointers show
    d = patch_check.decide(_task(39, "fc_asm_noframe", fp_trace, reliable=False, reason="no-frame-at-call-site",
                                 reason_frame=4), ["fc_noframe_caller"])
    assert d["decision"] == "blocked-unreliable" and d["reason"] == "no-frame-at-call-site" and d["frame"] == 4
    assert d["fp_only"] == "may-switch"


def test_patched_function_on_a_reliable_stack_blocks_at_its_frame():
    d = patch_check.decide(_task(7, "cat", ["__schedule", "schedule", "fc_block_wait", "fc_block_read", "vfs_read"]),
                           ["fc_block_wait", "nothing_else"])
    assert (d["decision"], d["function"], d["frame"]) == ("blocked-on-stack", "fc_block_wait", 2)


def test_reliable_stack_without_the_functions_may_switch_and_rules_are_named():
    assert patch_check.decide(_task(1, "init", ["a", "b"]), ["f"])["decision"] == "may-switch"
    assert patch_check.decide(_task(1, "x", ["a"], running=True), ["f"])["rule"] == "running"
    assert patch_check.decide(_task(0, "swapper/0", ["a"], idle=True, running=True), ["f"])["rule"] == "idle"
    user = patch_check.decide(_task(5, "spin", [], user_mode=True, running=True), ["f"])
    assert (user["decision"], user["rule"]) == ("may-switch", "user-mode")


def test_summary_counts_every_decision():
    ds = [patch_check.decide(t, ["f"]) for t in (
        _task(1, "a", ["x"]), _task(2, "b", ["f", "x"]),
        _task(3, "c", ["x"], reliable=False, reason="no-metadata", reason_frame=1))]
    s = patch_check.summarize(ds)
    assert (s["tasks"], s["may_switch"], s["blocked_on_stack"], s["blocked_unreliable"]) == (3, 1, 1, 1)
    assert s["by_function"] == {"f": 1} and s["by_reason"] == {"no-metadata": 1}
    assert s["fp_only_would_switch_unreliable"] == 1


class _FakeSession:
    """Hands out prepared walk reports, one per freeze."""

    def __init__(self, reports):
        self.reports = list(reports)

    def walk(self):
        return self.reports.pop(0)


def _report(tasks):
    rep = WalkReport.from_json({"tasks": [], "summary": {"freeze_to_verdict_ms": 1.0}})
    rep.tasks = tasks
    return rep


def test_retries_stop_once_every_task_may_switch_and_switched_tasks_stay_switched():
    first = _report([_task(1, "a", ["f", "x"]), _task(2, "b", ["x"])])
    # Round 1: b is (say) in f now, but it switched in round 0 already: the kernel does not check it again.
    second = _report([_task(1, "a", ["x"]), _task(2, "b", ["f", "x"])])
    r = patch_check.run_rounds(_FakeSession([first, second, first]), ["f"], retries=5, interval=0)
    assert [x["blocked"] for x in r["rounds"]] == [1, 0]
    assert r["summary"]["may_switch"] == 2
    assert next(d for d in r["tasks"] if d["pid"] == 2)["switched_in_round"] == 0


def test_a_task_born_after_the_first_freeze_starts_in_its_parents_state():
    sh = _task(10, "sh", ["do_wait"])
    first = _report([sh, _task(11, "cat", ["f", "vfs_read"], ppid=10), _task(12, "stuck", ["f"])])
    # Round 1: a new cat (child of the switched sh) is in f too, and so is a child of the blocked task.
    second = _report([sh, _task(13, "cat", ["f", "vfs_read"], ppid=10), _task(12, "stuck", ["f"]),
                      _task(14, "kid", ["f"], ppid=12)])
    r = patch_check.run_rounds(_FakeSession([first, second]), ["f"], retries=1, interval=0)
    by_pid = {d["pid"]: d for d in r["tasks"]}
    assert by_pid[13]["decision"] == "may-switch" and by_pid[13]["inherited_from"] == 10
    assert by_pid[14]["decision"] == "blocked-on-stack" and "inherited_from" not in by_pid[14]
    assert [x["blocked"] for x in r["rounds"]] == [2, 2]


def test_retries_run_out_with_the_blocking_set_reported():
    stuck = _report([_task(1, "a", ["f"])])
    r = patch_check.run_rounds(_FakeSession([stuck] * 3), ["f"], retries=2, interval=0)
    assert [x["blocked_tasks"] for x in r["rounds"]] == [["1:a"]] * 3


def test_kernel_comparison_categories():
    ds = [dict(patch_check.decide(t, ["f"]), patch_state=ps) for t, ps in (
        (_task(1, "a", ["x"]), 1), (_task(2, "b", ["f"]), 0), (_task(3, "c", ["x"], reliable=False,
                                                                     reason="no-metadata"), 1),
        (_task(4, "d", ["x"]), 0), (_task(5, "e", ["x"]), -1))]
    cats = patch_check.compare_with_kernel(ds)
    assert {k: [d["pid"] for d in v] for k, v in cats.items()} == {
        "agree-switched": [1], "agree-blocked": [2], "kernel-switched-framecert-blocked": [3],
        "framecert-may-switch-kernel-not-yet": [4], "no-transition": [5]}


# ---- ground truth ----
TRUTH = KnownChain(chain=list(reversed(CHAIN[2:])), verdict="unreliable", sleeps_in=["schedule", "__schedule"])


def test_truth_flags_a_reliable_trace_that_skips_a_true_frame():
    skipped = _task(39, "fc_asm_noframe", [s for s in CHAIN if s != "fc_noframe_caller"])
    assert "skips frames" in known_chains.violation(skipped, TRUTH)
    cut_at_top = _task(39, "fc_asm_noframe", CHAIN[:4])  # ends at fc_asm_noframe: the callers above are lost
    assert known_chains.violation(cut_at_top, TRUTH)


def test_truth_accepts_the_true_chain_a_partial_one_and_unreliable_traces():
    assert known_chains.violation(_task(39, "fc_asm_noframe", CHAIN), TRUTH) is None
    between_naps = _task(39, "fc_asm_noframe", ["kthread_should_stop", "fc_asm_noframe_fn", "kthread",
                                                "ret_from_fork"])
    assert known_chains.violation(between_naps, TRUTH) is None
    assert known_chains.violation(_task(39, "x", CHAIN[:3], reliable=False), TRUTH) is None


def test_known_chain_checks_the_whole_chain_kernel_frames_included():
    whole = known_chains.judge(_task(39, "fc_asm_noframe", CHAIN), TRUTH)
    assert whole.verdict == "agree" and whole.full
    # A skipped kernel frame (schedule) leaves the module part intact: only the whole-chain check sees it.
    no_schedule = _task(39, "fc_asm_noframe", [s for s in CHAIN if s != "schedule"])
    assert known_chains.violation(no_schedule, TRUTH) is None
    v = known_chains.judge(no_schedule, TRUTH)
    assert v.verdict == "disagree" and v.full and "whole known chain" in v.detail
    between_naps = known_chains.judge(_task(39, "fc_asm_noframe", ["kthread_should_stop", "fc_asm_noframe_fn",
                                                                   "kthread", "ret_from_fork"]), TRUTH)
    assert between_naps.verdict == "agree" and not between_naps.full


def test_truth_check_marks_the_report():
    rep = _report([_task(39, "fc_asm_noframe", [s for s in CHAIN if s != "fc_noframe_caller"]),
                   _task(40, "other", ["a"])])
    assert known_chains.check(rep, {"fc_asm_noframe": TRUTH}) == 1
    assert rep.summary.false_reliable == 1 and rep.tasks[0].false_reliable


# ---- stress bookkeeping ----
def test_shards_and_jobs_partition_the_rounds():
    rounds = 23
    seen = []
    for i in (1, 2, 3):
        for k in range(2):
            seen += stress.select_rounds(rounds, (i, 3), (k, 2))
    assert sorted(seen) == list(range(rounds))


def test_jobs_get_shares_that_wait_about_as_long():
    # Every J-th round would leave one job waiting seconds longer than the other (the run waits for it);
    # the shares' waits differ by less than one round's longest wait, the same for the same seed.
    rounds, seed = 300, 1
    shares = [stress.select_rounds(rounds, (1, 1), (k, 2), seed) for k in range(2)]
    waits = [sum(stress.round_delay(seed, r) for r in share) for share in shares]
    assert abs(waits[0] - waits[1]) < 0.6
    strided = [sum(stress.round_delay(seed, r) for r in range(k, rounds, 2)) for k in range(2)]
    assert abs(strided[0] - strided[1]) > 1.0  # this seed's every-other split is lopsided: the test can fail
    assert shares == [stress.select_rounds(rounds, (1, 1), (k, 2), seed) for k in range(2)]
    assert all(share == sorted(share) for share in shares)


def test_freeze_moments_depend_on_seed_and_round_only():
    assert stress.round_delay(7, 3) == stress.round_delay(7, 3)
    assert stress.round_delay(7, 3) != stress.round_delay(8, 3)
    assert all(0.02 <= stress.round_delay(1, r) <= 0.6 for r in range(100))


def _walk_report(tasks):
    rel = sum(t.reliable for t in tasks)
    by = {}
    for t in tasks:
        if not t.reliable:
            by[t.reason] = by.get(t.reason, 0) + 1
    rep = WalkReport.from_json({"tasks": [], "summary": {"tasks": len(tasks), "reliable": rel,
                                                         "unreliable": len(tasks) - rel, "by_reason": by,
                                                         "freeze_to_verdict_ms": 5.0}})
    rep.tasks = tasks
    return rep


def _stress_report(seed, rounds):
    recs = [stress.round_record(r, 0.1, _walk_report([_task(1, "a", ["x", "y"]),
                                                      _task(2, "b", ["z"], reliable=False, reason="no-metadata",
                                                            reason_frame=0)])) for r in rounds]
    return {"rounds": recs, "summary": stress.summarize(recs, seed, "storm")}


def test_round_record_keeps_the_full_stack_of_every_unreliable_task():
    rec = _stress_report(1, [0])["rounds"][0]
    assert rec["verdicts"] == {"1:a": "reliable", "2:b": "no-metadata"}
    assert list(rec["stacks"]) == ["2:b"] and rec["stacks"]["2:b"]["frames"] == ["z+0x4"]


def test_merge_combines_disjoint_shards_and_refuses_overlaps_or_other_runs():
    merged = stress.merge([_stress_report(5, [1, 3]), _stress_report(5, [0, 2])])
    assert [r["round"] for r in merged["rounds"]] == [0, 1, 2, 3]
    assert merged["summary"]["tasks_walked"] == 8 and merged["summary"]["unreliable"] == 4
    with pytest.raises(GuestError, match="more than one report"):
        stress.merge([_stress_report(5, [1]), _stress_report(5, [1])])
    with pytest.raises(GuestError, match="different runs"):
        stress.merge([_stress_report(5, [1]), _stress_report(6, [2])])


# Issue 17: `--json -` writes only JSON to stdout (the human summary goes to stderr), and merge refuses a
# report that is no stress report in one line, exit 1, no traceback.
def test_merge_json_to_stdout_is_json_alone_and_other_reports_are_refused(tmp_path):
    cli = Path(__file__).resolve().parents[2] / "scripts" / "framecert-guest"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_stress_report(5, [1, 3])))
    b.write_text(json.dumps(_stress_report(5, [0, 2])))
    r = subprocess.run([cli, "merge", str(a), str(b), "--json", "-"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    merged = json.loads(r.stdout)
    assert [x["round"] for x in merged["rounds"]] == [0, 1, 2, 3]
    assert "8 task walks" in r.stderr, "the summary still goes where a user sees it"
    other = tmp_path / "patch.json"
    other.write_text(json.dumps({"freezes": [], "functions": ["f"]}))
    r = subprocess.run([cli, "merge", str(a), str(other)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"framecert-guest: error: {other} is not a stress report"


def test_html_page_shows_grid_stacks_and_false_reliables():
    rep = _stress_report(5, [0, 1])
    page = report_html.render(rep)
    grid = page.split("<table class='g'>")[1].split("</table>")[0]
    assert grid.count("<tr><th>") == 3 and "<tr><th>1:a</th>" in grid  # the rounds, then a row per task
    assert "2:b: no-metadata" in page and "z+0x4" in page
    rep["rounds"][1]["verdicts"]["1:a"] = "FALSE-RELIABLE"
    rep["rounds"][1]["stacks"]["1:a"] = {"reason": None, "reason_frame": None, "running": False, "frames": ["x"],
                                         "truth_violation": "skips frames", "crosscheck": {}}
    rep["summary"]["false_reliable"] = 1
    page = report_html.render(rep)
    assert "1:a: reliable at frame" in page and "FALSE RELIABLE</span>" in page
    assert "class='banner fail'" in page and "<b>1 false reliable</b>" in page


# ---- the regression module's generator ----
def test_every_family_expands_into_bugs_and_twins_with_unique_names(tmp_path):
    exp = regress.generate(tmp_path)
    templates = regress.load_templates()
    n_sets = sum(len(f["sets"]) for f in templates["families"].values()) + sum(
        len(f["sets"]) for f in templates["c_families"].values())
    kthreads = exp["kthreads"]
    assert len(kthreads) == 2 * n_sets
    assert len({k["function"] for k in kthreads.values()}) == len(kthreads)
    assert all(len(comm) <= 15 for comm in kthreads)  # TASK_COMM_LEN
    for k in kthreads.values():
        assert k["chain"][:2] == ["ret_from_fork", "kthread"] and k["chain"][-1] == "fcr_nap"
        # A twin that tail-calls its nap is rightly absent from its own true chain.
        assert (k["function"] in k["chain"]) == (not k["tail_call"])
        assert (k["verdict"] == "reliable") == (k["kind"] == "twin")
    asm = (tmp_path / "fcregress_asm.S").read_text()
    assert "SYM_FUNC_START(fcr_noframe_plain)\n\tcall fcr_nap\n\tRET" in asm
    assert "SYM_FUNC_START(fcr_noframe_plain_ok)\n\tFRAME_BEGIN\n\tcall fcr_nap" in asm
    assert "SYM_FUNC_START(fcr_sibling_framed_plain_ok)\n\tFRAME_BEGIN\n\tFRAME_END\n\tjmp fcr_nap_forever" in asm
    assert sum(k["tail_call"] for k in kthreads.values()) == len(templates["families"]["sibling_framed"]["sets"])
    assert "ASM_CALL_CONSTRAINT" in (tmp_path / "fcregress_c.c").read_text()
    assert json.loads((tmp_path / regress.EXPECTED).read_text()) == exp


# Issue 17: the walk table names states as ps does and shows the whole trace on request.
@pytest.mark.parametrize("state,name", [(0, "R"), (1, "S"), (2, "D"), (1026, "I"), (8193, "S"), (4, "T"), (8, "t"),
                                        (32, "Z"), (64, "P"), (0x102, "D"), ("", "")])
def test_state_letters_are_ps_letters(state, name):
    assert report.state_name(state) == name


def test_walk_table_shows_four_frames_or_all():
    rep = _walk_report([_task(7, "kworker", CHAIN, state=1026)])
    four = report.format_table(rep).splitlines()[1]
    assert " I " in four and "fc_asm_noframe <" in four and f"...({len(CHAIN)})" in four and "ret_from_fork" not in four
    every = report.format_table(rep, frames=None).splitlines()[1]
    assert every.endswith("kthread < ret_from_fork") and "..." not in every
