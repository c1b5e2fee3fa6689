"""framecert-guest patch-check on the booted guest: the kernel-style decisions, retries, and the comparison
with the kernel's own livepatch transition (fcpatch.ko)."""
import json
import subprocess

from conftest import REPO

CLI = REPO / "scripts" / "framecert-guest"


def _patch_check(guest_dir, tmp_path, *args):
    out = tmp_path / "decisions.json"
    r = subprocess.run([CLI, "patch-check", "--guest-dir", str(guest_dir), "--json", str(out), *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def _by_comm(result, comm):
    found = [d for d in result["tasks"] if d["comm"] == comm]
    assert len(found) == 1, (comm, found)
    return found[0]


def test_frameless_caller_blocks_where_a_bare_fp_walk_would_switch(guest_dir, tmp_path):
    result, table = _patch_check(guest_dir, tmp_path, "--functions", "fc_noframe_caller")
    d = _by_comm(result, "fc_asm_noframe")
    assert d["decision"] == "blocked-unreliable" and d["reason"] == "no-frame-at-call-site", d
    assert d["fp_only"] == "may-switch"  # the frame pointers alone do not show fc_noframe_caller
    assert _by_comm(result, "fc_chain")["decision"] == "may-switch"
    s = result["summary"]
    assert s["tasks"] == len(result["tasks"]) == s["may_switch"] + s["blocked_on_stack"] + s["blocked_unreliable"]
    assert "blocked-unreliable" in table and "fc_asm_noframe" in table


def test_retries_until_the_sleepers_leave_the_patched_function(guest_dir, tmp_path):
    # Readers of fctest/block nap 1 s at a time inside fc_block_wait: with retries, the blocking set shrinks to
    # the tasks that can never switch (the planted bugs and the non-standard function, whatever is patched).
    result, _ = _patch_check(guest_dir, tmp_path, "--functions", "fc_block_wait", "--retry", "8",
                             "--interval", "0.7")
    rounds = result["rounds"]
    assert len(rounds) >= 2
    first_readers = [k for k in rounds[0]["blocked_tasks"] if k.endswith(":cat")]
    assert first_readers, "no task was in fc_block_wait at the first freeze"
    last = rounds[-1]["blocked_tasks"]
    assert not any(k in last for k in first_readers), (first_readers, last)
    assert all(r["blocked"] >= rounds[-1]["blocked"] for r in rounds)
    for d in result["tasks"]:
        if d["decision"] != "may-switch":
            assert d["decision"] == "blocked-unreliable" or d["comm"] == "cat", d


def test_against_the_kernels_livepatch_transition(guest_dir, tmp_path):
    result, table = _patch_check(guest_dir, tmp_path, "--kernel-compare")
    kc = result["kernel_compare"]
    assert kc["counts"]["no-transition"] == 0
    # The planted bug: the kernel's frame-pointer walk does not see fc_noframe_caller and switches the task while
    # the old function is on its stack; framecert refuses.
    d = _by_comm(result, "fc_asm_noframe")
    assert d["decision"] == "blocked-unreliable" and d["patch_state"] == 1
    assert any(k.endswith(":fc_asm_noframe") for k in kc["kernel_unsafe"])
    # Readers asleep in fc_block_wait: both keep them on the old code.
    readers = [d for d in result["tasks"] if d["comm"] == "cat" and d["decision"] == "blocked-on-stack"]
    assert readers and all(d["patch_state"] == 0 and d["function"] == "fc_block_wait" for d in readers)
    # Every task is in exactly one category.
    assert sum(kc["counts"].values()) == len(result["tasks"])
    assert "UNSAFE kernel switches" in table
