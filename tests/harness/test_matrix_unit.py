"""The matrix's own arithmetic (harness/framecert_guest/matrix.py), without building anything: the
crosscheck table parsed, the false-unreliable count fed a report where the shadow shows an unreliable trace
complete (it must count it) and one of a planted bug or a running task (it must not), profiles parsed."""
import pytest

from framecert_guest import matrix, profiles
from framecert_guest.errors import UsageError

CROSSCHECK = """objects (Kbuild objtool list + modules + vmlinux.o)     1068
objtool findings                         30
objects where both agree exactly       1067  (99.9%)
"""


def test_crosscheck_counts_come_from_the_table():
    assert matrix.crosscheck_counts(CROSSCHECK) == {"objects": 1068, "agree": 1067}
    assert matrix.crosscheck_counts("garbage") == {"objects": None, "agree": None}


def _report(*stacks):
    verdicts = {key: "reliable" for key, _ in stacks}
    return {"rounds": [{"verdicts": {**verdicts, "9:sleeper": "reliable"}, "stacks": dict(stacks)}]}


def test_false_unreliable_counts_complete_traces_of_sleeping_unplanted_tasks_only():
    complete = {"reason": "frame-skipped", "running": False, "shadow": {"verdict": "agree"}}
    incomplete = {"reason": "frame-skipped", "running": False, "shadow": {"verdict": "disagree"}}
    running = {"reason": "frame-skipped", "running": True, "shadow": {"verdict": "agree"}}
    got = matrix.false_unreliable(_report(("1:a", complete), ("2:b", incomplete), ("3:c", running),
                                          ("4:fcr00", complete)), planted={"fcr00"})
    assert got == {"sleeping": 3, "candidates": 1}  # a, b and the reliable sleeper; only a is a false unreliable


def test_profiles_parse_and_refuse_unknown_ones():
    assert [p.name for p in matrix.parse_profiles(None)] == ["6.1-gcc", "6.1-clang", "6.12-gcc", "6.12-clang"]
    assert matrix.parse_profiles("6.12-clang,6.1") == [profiles.Profile("6.12", "clang"), profiles.Profile("6.1")]
    with pytest.raises(UsageError):
        matrix.parse_profiles("5.4-gcc")


def test_a_false_reliable_or_an_unmeasured_profile_fails_the_matrix():
    good = {"profile": "6.1-gcc", "notes": [], "stress": {"false_reliable": 0}, "walk": {"false_reliable": 0}}
    assert not matrix.failed([good])
    assert matrix.failed([{**good, "stress": {"false_reliable": 1}}])
    assert matrix.failed([{**good, "notes": ["build failed: x"]}])
