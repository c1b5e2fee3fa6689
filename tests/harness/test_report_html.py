"""The stress page (report_html.py) rendered from a synthetic report: the PASS/FAIL banner with its
denominator, the planted bugs shown as expected, three SVG plots with labelled axes, the task grid's links
resolving to anchors, short-lived tasks in one row, frames with pc and module, and no Python dict repr
anywhere. Then the same page in headless Chromium (scripts/setup installs it): it loads and renders."""
import copy
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from framecert_guest import report_html, stress

EXPECTED = {"fc_asm_noframe": "no-frame-at-call-site", "fcr12": None}


def _stack(reason, frames, violation=None, shadow="disagree"):
    return {"reason": reason, "reason_frame": 1, "detail": f"{frames[1]} called without a valid frame",
            "running": False, "crosscheck": {"metadata": "agree", "shadow": shadow, "drgn": "not-run"},
            "truth_violation": violation,
            "shadow": {"verdict": shadow, "detail": "slot for slot", "shadow": [["0xffffc90000013f00", "0xa0"]]},
            "frames": frames,
            "frame_details": [{"name": f, "pc": hex(0xffffffffa0000000 + 16 * i), "object": "fctest.ko"}
                              for i, f in enumerate(frames)]}


def _round(rnd, short_lived=True):
    """One round: three long-lived tasks (one planted bug), fcr12 (a bug with no named reason), and a fork
    storm task of its own (seen once: short-lived)."""
    verdicts = {"1:init": "reliable", "39:fc_asm_noframe": "no-frame-at-call-site", "66:fcr12": "no-metadata",
                "41:fc_spin": "reliable"}
    stacks = {"39:fc_asm_noframe": _stack("no-frame-at-call-site", ["fc_asm_sleep+0x1c", "fc_asm_noframe+0x5"]),
              "66:fcr12": _stack("no-metadata", ["fcr_nap+0x1c", "fcr_rbp_clobbered_zero+0x9"])}
    if short_lived:
        verdicts[f"{500 + rnd}:sh"] = "reliable" if rnd % 2 else "no-registers"
        if rnd % 2 == 0:
            stacks[f"{500 + rnd}:sh"] = _stack("no-registers", ["schedule+0x42", "do_wait+0x10"], shadow="agree")
    return {"round": rnd, "delay_ms": 100.0, "tasks": len(verdicts),
            "reliable": sum(v == "reliable" for v in verdicts.values()),
            "unreliable": sum(v != "reliable" for v in verdicts.values()),
            "by_reason": _by_reason(verdicts), "running": 1, "running_unwound": 1, "running_reliable": 1,
            "false_reliable": 0, "harness_error": None,
            "reliable_checked": sum(v == "reliable" for v in verdicts.values()), "shadow_agree_reliable": 2,
            "no_truth": {}, "unreliable_shadow_complete": {}, "self_consistency": {"agree": 4, "disagree": 1},
            "no_truth_tasks": {}, "freeze_to_verdict_ms": 10.0 + rnd, "verdicts": verdicts, "stacks": stacks}


def _by_reason(verdicts):
    out = {}
    for v in verdicts.values():
        if v != "reliable":
            out[v] = out.get(v, 0) + 1
    return out


def synthetic_report(rounds=8):
    records = [_round(r) for r in range(rounds)]
    report = {"rounds": records, "summary": stress.summarize(records, seed=3, workload="storm", oracle="shadow")}
    report["summary"].update({
        "total_rounds": rounds, "shard": "1/1", "job": "0/1", "expected_unreliable": EXPECTED,
        "provenance": {"framecert": "framecert 0.5.0 (commit abc123)", "guest": "f25d913486d7cdcf",
                       "profile": "6.1-gcc", "command": ["scripts/framecert-guest", "stress", "--rounds", "8"]}})
    return report


def with_false_reliable(report):
    """Round 2's fc_spin called reliable, and the shadow says otherwise."""
    report = copy.deepcopy(report)
    r = report["rounds"][2]
    r["verdicts"]["41:fc_spin"] = "FALSE-RELIABLE"
    r["false_reliable"] = 1
    r["stacks"]["41:fc_spin"] = _stack(None, ["fc_spin+0x3", "kthread+0xc2"], violation="shadow: frame 1 differs")
    report["summary"] = {**report["summary"], **stress.summarize(report["rounds"], 3, "storm", "shadow")}
    return report


class _Page(HTMLParser):
    """The page's ids, local links, svg elements and text."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.links, self.svgs, self.text = set(), [], 0, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        self.svgs += tag == "svg"

    def handle_data(self, data):
        self.text.append(data)


def _banner(text):
    return re.search(r"<div class='banner (\w+)' id='verdict'>(.*?)</div>", text, re.S)


def test_pass_banner_gives_the_denominator_and_counts_planted_bugs_as_expected():
    report = synthetic_report()
    text = report_html.render(report)
    kind, banner = _banner(text).groups()
    s = report["summary"]
    assert kind == "pass" and "PASS" in banner and "FAIL" not in banner
    assert (f"0 false reliable</b> out of {s['reliable_checked']} reliable verdicts checked, coverage 100.0%"
            in banner)
    # The planted bugs' 16 unreliable verdicts (2 kthreads x 8 rounds) are counted as expected, not in red.
    assert "16 unreliable verdicts are the guest's planted bugs, <b>as expected</b>" in banner
    assert "class='bad'" not in text and "tag bad" not in text
    assert text.count("<span class='tag'>expected: planted bug</span>") == 2  # a stack group each


def test_fail_banner_on_a_false_reliable_and_on_a_harness_error():
    text = report_html.render(with_false_reliable(synthetic_report()))
    kind, banner = _banner(text).groups()
    assert kind == "fail" and "FAIL" in banner and "1 false reliable" in banner
    assert "FALSE RELIABLE" in text and "shadow: frame 1 differs" in text
    broken = synthetic_report()
    broken["rounds"][5] = stress.error_record(5, 0.1, "guest died")
    broken["summary"] = {**broken["summary"], **stress.summarize(broken["rounds"], 3, "storm", "shadow")}
    kind, banner = _banner(report_html.render(broken)).groups()
    assert kind == "fail" and "1 harness error<" in banner


def test_three_plots_with_labelled_axes():
    text = report_html.render(synthetic_report())
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    assert len(svgs) == 3
    for svg, y_label in zip(svgs, ("unreliable verdicts", "milliseconds", "% of reliable verdicts")):
        assert ">round</text>" in svg and f">{y_label}</text>" in svg
        assert "<line class='axis'" in svg
    assert "no-frame-at-call-site" in svgs[0] and "<rect" in svgs[0]
    assert "<polyline" in svgs[1] and "<polyline" in svgs[2]


def test_every_link_resolves_and_short_lived_tasks_share_one_row():
    text = report_html.render(synthetic_report())
    page = _Page(text)
    assert page.links and set(page.links) <= page.ids, set(page.links) - page.ids
    rows = re.findall(r"<tr><th>(.*?)</th>", text.split("<table class='g'>")[1].split("</table>")[0])
    # round header + 4 long-lived tasks + one row for the 8 tasks seen once
    assert len(rows) == 6 and "8 short-lived tasks" in rows[-1], rows
    # grid cells link to the planted bug's stack; its row header links to the task's anchor
    assert re.search(r"<a href='#task-\d+'>39:fc_asm_noframe</a>", text)


def test_stacks_show_pc_and_module_and_no_dict_repr_anywhere():
    text = report_html.render(with_false_reliable(synthetic_report()))
    assert "0xffffffffa0000010</td><td>fctest.ko" in text
    assert "{'" not in text and '{"' not in text and "': " not in text
    page_text = "".join(_Page(text).text)
    assert "{'" not in page_text and "[[" not in page_text


def test_a_report_from_before_provenance_and_frame_details_still_renders():
    report = synthetic_report()
    for key in ("provenance", "total_rounds", "job", "expected_unreliable"):
        del report["summary"][key]
    for r in report["rounds"]:
        for st in r["stacks"].values():
            del st["frame_details"]
    text = report_html.render(report)
    assert "not recorded" in text and "fc_asm_sleep+0x1c" in text and _banner(text).group(1) == "pass"


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: scripts/setup installs it (Debian package chromium)"
    return found


def test_page_renders_in_headless_chromium(tmp_path):
    page = tmp_path / "stress.html"
    report_html.write(with_false_reliable(synthetic_report()), str(page))
    shot = tmp_path / "stress.png"
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"]
    r = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10000
    # The DOM Chromium built: the banner, the three plots and the grid made it through its parser.
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 3 and 'class="banner fail"' in dom.stdout and 'class="g"' in dom.stdout


@pytest.mark.parametrize("rounds", [1, 400])
def test_few_and_many_rounds(rounds):
    text = report_html.render(synthetic_report(rounds))
    assert text.count("<svg") == 3 and _banner(text).group(1) == "pass"
