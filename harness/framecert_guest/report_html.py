"""The stress run as one self-contained HTML page (no script, nothing fetched):

1. a PASS/FAIL banner: PASS when no reliable verdict was false and no round failed, with the denominator
   (reliable verdicts checked, coverage); the planted bugs' unreliable verdicts counted apart, as expected;
2. what the run stands on: framecert's build, the guest and its profile, the command line, the shard;
3. the totals, every breakdown a table;
4. plots over rounds (svg_plot.py): unreliable verdicts by reason, freeze->verdict latency, truth coverage;
5. a grid of tasks x rounds coloured by verdict, each row and cell linked to its stacks; tasks seen in only a
   few rounds (the fork storm's) share one row;
6. every unreliable or disagreeing stack in full (identical stacks of one task grouped over rounds), frame by
   frame with pc and module.
"""
import html
import math
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from . import svg_plot

_COLOURS = ["#f0a030", "#d0c020", "#50a0e0", "#a070d0", "#e070b0", "#70c0c0", "#c08050", "#8090a0"]
_RELIABLE, _FALSE, _ABSENT, _ERROR = "#3c9a4c", "#e01010", "#eeeeee", "#606060"
_EXPECTED_LINE = "#222222"
_MAX_LINKS = 12  # stacks linked per comm in the short-lived table
RELIABLE, FALSE = "reliable", "FALSE-RELIABLE"
# The stack groups' kinds, in page order, and their headings.
_KINDS = ("false", "other", "expected")
_KIND_HEADINGS = {"false": "False reliable: reliable verdicts an independent truth contradicts",
                  "other": "Other unreliable or disagreeing stacks",
                  "expected": "The planted bugs (expected to be unreliable)"}

_CSS = """
body{font:13px/1.4 sans-serif;margin:1.5em;color:#111;max-width:1400px}
h2{margin-top:1.6em;border-bottom:1px solid #ccc}
.banner{padding:14px 18px;border-radius:6px;margin:0 0 1em 0}
.banner .v{font-size:26px;font-weight:bold;margin-right:12px}
.banner.pass{background:#e3f4e6;border:2px solid #3c9a4c}.banner.pass .v{color:#2c7a3c}
.banner.fail{background:#fde4e4;border:2px solid #e01010}.banner.fail .v{color:#c00000}
.banner p{margin:6px 0 0 0}
table.s{border-collapse:collapse;margin:4px 0 8px 0}
table.s td,table.s th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}
table.s th{font-weight:600;border-bottom:1px solid #ccc}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.g{border-collapse:collapse}.gw{overflow-x:auto;max-width:100%}
table.g td{height:11px;padding:0;border:1px solid #fff}
table.g th.r{font-size:10px;text-align:left;padding:0;color:#555}
table.g td a{display:block;width:100%;height:100%}
table.g th{font-weight:normal;text-align:right;padding-right:6px;white-space:nowrap;font-family:monospace}
.x{background-image:repeating-linear-gradient(45deg,transparent 0 2px,rgba(255,255,255,.75) 2px 4px)}
.k{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
.bad{color:#e01010;font-weight:bold}.exp{color:#555}.tag{font-size:11px;padding:0 5px;border-radius:3px;
background:#e8e8e8;color:#333;margin-left:6px}.tag.bad{background:#fde4e4}
table.f{border-collapse:collapse;font-family:monospace;margin:4px 0 6px 0}
table.f td,table.f th{padding:1px 14px 1px 0;text-align:left}
tr.at{background:#fff3c8;font-weight:bold}
details{margin:2px 0}details>div{margin:4px 0 10px 18px}
code{background:#f3f3f3;padding:0 3px}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _pid_of(key: str) -> int:
    try:
        return int(key.split(":", 1)[0])
    except ValueError:
        return -1


def _comm_of(key: str) -> str:
    return key.split(":", 1)[1] if ":" in key else key


def is_expected(key: str, verdict: Optional[str], expected: Dict[str, Optional[str]]) -> bool:
    """An unreliable verdict the guest plants on purpose: its kthread's reason (or any, where none is named)."""
    if verdict in (None, RELIABLE, FALSE):
        return False
    comm = _comm_of(key)
    return comm in expected and expected[comm] in (None, verdict)


def _table(rows: Sequence[Sequence], head: Optional[Sequence] = None) -> str:
    """Rows of cells as a table (numbers right-aligned), cells escaped unless given as ('html', text)."""
    def cell(v):
        if isinstance(v, tuple) and v and v[0] == "html":
            return f"<td>{v[1]}</td>"
        cls = " class='n'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
        return f"<td{cls}>{_e(v)}</td>"
    out = ["<table class='s'>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    out += ["<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _counts(d: Optional[dict], key_head: str, value_head: str = "count") -> str:
    """A dict of counts as a two-column table ("none" when empty)."""
    if not d:
        return "<p>none</p>"
    return _table([(k, v) for k, v in d.items()], (key_head, value_head))


# ---- what the page computes from the rounds ----
class _Run:
    """The report's rounds seen the way the page shows them: colours per verdict, expected verdicts per round,
    the task rows and the stack groups with their anchors."""

    def __init__(self, report: dict):
        self.summary = report["summary"]
        self.rounds = report["rounds"]
        self.expected: Dict[str, Optional[str]] = self.summary.get("expected_unreliable") or {}
        reasons = sorted({v for r in self.rounds for v in r["verdicts"].values()} - {RELIABLE, FALSE})
        self.colour = {reason: _COLOURS[i % len(_COLOURS)] for i, reason in enumerate(reasons)}
        self.colour.update({RELIABLE: _RELIABLE, FALSE: _FALSE})
        self.reasons = reasons
        self.tasks = sorted({k for r in self.rounds for k in r["verdicts"]}, key=lambda k: (_pid_of(k), k))
        self.groups = self._stack_groups()
        # (task, round) -> the anchor of its stack; task -> the anchor of its first stack
        self.stack_anchor = {(g["key"], rnd): g["id"] for g in self.groups for rnd in g["rounds"]}
        self.task_anchor: Dict[str, str] = {}
        for g in self.groups:
            self.task_anchor.setdefault(g["key"], f"task-{len(self.task_anchor)}")

    def expected_per_round(self) -> List[int]:
        return [sum(1 for k, v in r["verdicts"].items() if is_expected(k, v, self.expected)) for r in self.rounds]

    def expected_by_reason(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for r in self.rounds:
            for k, v in r["verdicts"].items():
                if is_expected(k, v, self.expected):
                    out[v] = out.get(v, 0) + 1
        return out

    def _stack_groups(self) -> List[dict]:
        """Identical stacks of one task over rounds, as one group each: the false reliable ones first, then the
        other unreliable or disagreeing ones, the planted bugs' last; by pid within each."""
        by_sig: Dict[tuple, dict] = {}
        for r in self.rounds:
            for key, st in r["stacks"].items():
                sig = (key, st.get("reason"), tuple(st.get("frames") or ()), str(st.get("truth_violation")))
                by_sig.setdefault(sig, {"key": key, "stack": st, "rounds": []})["rounds"].append(r["round"])
        for g in by_sig.values():
            g["kind"] = self._kind(g["key"], g["stack"])
        groups = sorted(by_sig.values(), key=lambda g: (_KINDS.index(g["kind"]), _pid_of(g["key"]), g["key"],
                                                        g["rounds"][0]))
        for n, g in enumerate(groups):
            g["id"] = f"stack-{n}"
        return groups

    def _kind(self, key: str, stack: dict) -> str:
        if stack.get("truth_violation"):
            return "false"
        return "expected" if is_expected(key, stack.get("reason"), self.expected) else "other"

    def short_lived(self) -> Tuple[List[str], int]:
        """The tasks seen in fewer than `threshold` rounds (never a false reliable one: it keeps its row)."""
        seen = {k: 0 for k in self.tasks}
        falses = set()
        for r in self.rounds:
            for k, v in r["verdicts"].items():
                seen[k] += 1
                if v == FALSE:
                    falses.add(k)
        threshold = min(3, math.ceil(len(self.rounds) / 2))
        return [k for k in self.tasks if seen[k] < threshold and k not in falses], threshold


# ---- the sections ----
def _banner(run: _Run) -> str:
    s = run.summary
    fr, errors = s["false_reliable"], s["harness_errors"]
    passed = not fr and not errors
    checked, reliable = s.get("reliable_checked", 0), s["reliable"]
    coverage = s.get("truth_coverage")
    if s.get("oracle", "none") == "none":
        cov_text = "no independent oracle ran (--oracle none): only the known chains checked"
    else:
        cov_text = f"coverage {coverage:.1%}" if coverage is not None else "coverage n/a (no reliable verdicts)"
    head = (f"<span class='v'>{'PASS' if passed else 'FAIL'}</span>"
            f"<b>{fr} false reliable</b> out of {checked} reliable verdicts checked, {_e(cov_text)} "
            f"(of {reliable} reliable verdicts); <b>{errors} harness error{'' if errors == 1 else 's'}</b>")
    expected = sum(run.expected_per_round())
    other = s["unreliable"] - expected
    planted = ", ".join(sorted(run.expected)) or "none"
    lines = [f"<p class='exp'>{expected} unreliable verdicts are the guest's planted bugs, <b>as expected</b> "
             f"(kthreads {_e(planted)}); {other} other unreliable verdicts (the walker would not vouch for "
             "them: not failures, see <a href='#totals'>by reason</a>).</p>"]
    if not passed:
        lines.append("<p class='bad'>" + "; ".join(x for x in (
            f"{fr} reliable verdict(s) an independent truth contradicts (see the red rows and stacks)" if fr else "",
            f"{errors} round(s) failed (see <a href='#errors'>harness errors</a>)" if errors else "") if x) + "</p>")
    return f"<div class='banner {'pass' if passed else 'fail'}' id='verdict'>{head}{''.join(lines)}</div>"


def _provenance(run: _Run) -> str:
    s = run.summary
    prov = s.get("provenance") or {}
    command = prov.get("command")
    rows = [("framecert", prov.get("framecert") or "not recorded"),
            ("guest", prov.get("guest") or "not recorded"),
            ("profile", prov.get("profile") or "not recorded"),
            ("command", shlex.join(command) if command else "not recorded"),
            ("seed / workload / oracle", f"{s['seed']} / {s['workload']} / {s.get('oracle', 'none')}"),
            ("rounds", f"{s['rounds']} of {s.get('total_rounds') or '?'} (shard {s.get('shard', '1/1')})")]
    out = ["<h2 id='provenance'>What this run stands on</h2>", _table(rows)]
    pieces = prov.get("pieces")
    if pieces:
        out.append("<p>Merged from:</p>" + _table(
            [(p.get("shard"), p.get("job"), p.get("framecert") or "", shlex.join(p["command"]) if p.get("command")
              else "not recorded") for p in pieces], ("shard", "job", "framecert", "command")))
    return "".join(out)


def _totals(run: _Run) -> str:
    s = run.summary
    ftv = s.get("freeze_to_verdict_ms") or {}
    rows = [("task walks", s["tasks_walked"]), ("reliable", s["reliable"]), ("unreliable", s["unreliable"]),
            ("running tasks", s["running_tasks"]), ("… unwound past their own frame", s["running_unwound"]),
            ("… reliable", s["running_reliable"]),
            ("return addresses behind a tracer's trampoline", s.get("hooked_frames", 0)),
            ("… in reliable traces", s.get("hooked_reliable", 0)),
            ("frames in an ftrace trampoline", s.get("trampoline_frames", 0)),
            ("freeze → verdict median (ms)", ftv.get("median")), ("freeze → verdict max (ms)", ftv.get("max")),
            ("false reliable", s["false_reliable"]), ("harness errors", s["harness_errors"])]
    expected = run.expected_by_reason()
    complete = s.get("unreliable_shadow_complete") or {}
    by_reason = [(("html", f"<span class='k' style='background:{run.colour.get(k, _ABSENT)}'></span>{_e(k)}"), v,
                  expected.get(k, 0), v - expected.get(k, 0), complete.get(k, 0))
                 for k, v in s["by_reason"].items()]
    out = ["<h2 id='totals'>Totals</h2>", _table(rows),
           "<h3>Unreliable verdicts by reason</h3>",
           _table(by_reason, ("reason", "verdicts", "expected (planted bugs)", "other",
                              "shadow shows complete (false-unreliable candidates)")) if by_reason else "<p>none</p>",
           "<h3>Reliable verdicts no truth could check</h3>", _counts(s.get("no_truth"), "why", "verdicts"),
           "<h3>Self-consistency (the metadata-only walk; not a truth)</h3>",
           _counts(s.get("self_consistency"), "result", "tasks")]
    return "".join(out)


def _plots(run: _Run) -> str:
    rounds = [r["round"] for r in run.rounds]
    if not rounds:
        return ""
    stacks = [(reason, run.colour[reason], [r["by_reason"].get(reason, 0) for r in run.rounds])
              for reason in sorted({k for r in run.rounds for k in r["by_reason"]}) if reason in run.colour]
    expected = [float(n) for n in run.expected_per_round()]
    latency = [r.get("freeze_to_verdict_ms") for r in run.rounds]
    coverage = [round(100 * r.get("reliable_checked", 0) / r["reliable"], 2) if r["reliable"] else None
                for r in run.rounds]
    return "".join([
        "<h2 id='plots'>Over the rounds</h2>",
        svg_plot.stacked_bars(rounds, stacks, "Unreliable verdicts per round, by reason", "unreliable verdicts",
                              lines=_lines_over_bars(run, expected)),
        svg_plot.line_chart(rounds, [("freeze → verdict", "#3070c0", latency)],
                            "Freeze → every verdict, per round", "milliseconds", unit=" ms"),
        svg_plot.line_chart(rounds, [("reliable verdicts a truth checked", "#3c9a4c", coverage)],
                            "Truth coverage per round", "% of reliable verdicts", y_top=100, unit="%"),
    ])


def _lines_over_bars(run: _Run, expected: List[float]) -> List[svg_plot.Series]:
    """Over the unreliable bars: how many were the planted bugs', and, when there are any, the false reliables."""
    lines: List[svg_plot.Series] = [("of which expected (planted bugs)", _EXPECTED_LINE, expected)]
    if run.summary["false_reliable"]:
        lines.append(("false reliable (not in the bars)", _FALSE, [float(r["false_reliable"]) for r in run.rounds]))
    return lines


def _legend(run: _Run) -> str:
    out = ["<p>"]
    out += [f"<span class='k' style='background:{c}'></span>{_e(k)}" for k, c in run.colour.items()]
    out.append(f"<span class='k' style='background:{_ABSENT}'></span>task not present"
               f"<span class='k' style='background:{_ERROR}'></span>harness error"
               f"<span class='k x' style='background-color:{_COLOURS[0]}'></span>striped: expected (planted bug)"
               "</p>")
    return "".join(out)


def _cell(run: _Run, key: str, r: dict) -> str:
    v = r["verdicts"].get(key)
    bg = _ERROR if r["harness_error"] else run.colour.get(v, _ABSENT) if v else _ABSENT
    expected = is_expected(key, v, run.expected)
    tip = f"round {r['round']}: {v or r['harness_error'] or 'absent'}{' (expected: planted bug)' if expected else ''}"
    anchor = run.stack_anchor.get((key, r["round"]))
    inner = f"<a href='#{anchor}'></a>" if anchor else ""
    return f"<td{' class=x' if expected else ''} style='background-color:{bg}' title='{_e(tip)}'>{inner}</td>"


def _aggregate_cell(run: _Run, keys: set, r: dict) -> str:
    """The short-lived tasks of one round in one cell: the count by verdict, coloured by the worst."""
    got: Dict[str, int] = {}
    for k, v in r["verdicts"].items():
        if k in keys:
            got[v] = got.get(v, 0) + 1
    if r["harness_error"]:
        bg = _ERROR
    elif not got:
        bg = _ABSENT
    else:
        worst = FALSE if FALSE in got else next((v for v in got if v != RELIABLE), RELIABLE)
        bg = run.colour.get(worst, _ABSENT)
    tip = f"round {r['round']}: {sum(got.values())} short-lived tasks" + (
        ": " + ", ".join(f"{v} {n}" for v, n in sorted(got.items())) if got else "")
    return f"<td style='background-color:{bg}' title='{_e(tip)}'><a href='#short-lived'></a></td>"


def _cell_width(run: _Run) -> int:
    """Wide cells for a few rounds, down to 3 px for many: the grid stays about 900 px wide up to 180 rounds
    (then it scrolls sideways in its box). Each cell has a 1 px border on both sides."""
    return max(3, min(22, 900 // max(1, len(run.rounds)) - 2))


def _round_header(run: _Run) -> str:
    """Round numbers over the columns: every round when the cells fit two digits, else one per group."""
    digits = len(str(max((r["round"] for r in run.rounds), default=0)))
    every = max(1, math.ceil((7 * digits + 8) / (_cell_width(run) + 2)))  # a label's width, about 7 px a digit
    cells = []
    for i in range(0, len(run.rounds), every):
        span = min(every, len(run.rounds) - i)
        cells.append(f"<th class='r' colspan='{span}'>{run.rounds[i]['round']}</th>")
    return f"<tr><th>round</th>{''.join(cells)}</tr>"


def _grid(run: _Run) -> str:
    short, threshold = run.short_lived()
    short_set = set(short)
    out = ["<h2 id='grid'>Verdicts: tasks × rounds</h2>",
           "<p>A row per task (pid:comm, linked to its stacks), a column per round (hover for the verdict; a "
           "coloured cell links to its stack).</p>", _legend(run),
           "<div class='gw'><table class='g'>", _round_header(run)]
    for key in run.tasks:
        if key in short_set:
            continue
        anchor = run.task_anchor.get(key)
        name = f"<a href='#{anchor}'>{_e(key)}</a>" if anchor else _e(key)
        mark = " <span class='exp'>(planted bug)</span>" if _comm_of(key) in run.expected else ""
        out.append(f"<tr><th>{name}{mark}</th>{''.join(_cell(run, key, r) for r in run.rounds)}</tr>")
    if short:
        head = f"<a href='#short-lived'>{len(short)} short-lived tasks</a>"
        out.append(f"<tr><th>{head}</th>{''.join(_aggregate_cell(run, short_set, r) for r in run.rounds)}</tr>")
    out.append("</table></div>")
    out.append(_short_lived_table(run, short, threshold))
    return "".join(out)


def _short_lived_table(run: _Run, short: List[str], threshold: int) -> str:
    """The short-lived tasks by comm: how many, in how many rounds, with which verdicts, and their stacks."""
    if not short:
        return "<p id='short-lived'>No short-lived tasks.</p>"
    by_comm: Dict[str, dict] = {}
    for r in run.rounds:
        for k, v in r["verdicts"].items():
            if k in short:
                row = by_comm.setdefault(_comm_of(k), {"tasks": set(), "verdicts": {}})
                row["tasks"].add(k)
                row["verdicts"][v] = row["verdicts"].get(v, 0) + 1
    rows = []
    for comm, row in sorted(by_comm.items()):
        links = [f"<a href='#{run.task_anchor[k]}'>{_e(k)}</a>" for k in sorted(row["tasks"], key=_pid_of)
                 if k in run.task_anchor]
        more = f" … and {len(links) - _MAX_LINKS} more (below)" if len(links) > _MAX_LINKS else ""
        rows.append((comm, len(row["tasks"]), ", ".join(f"{v} {n}" for v, n in sorted(row["verdicts"].items())),
                     ("html", ", ".join(links[:_MAX_LINKS]) + more or "—")))
    return (f"<h3 id='short-lived'>Short-lived tasks ({len(short)}, each seen in fewer than {threshold} "
            f"rounds)</h3>" + _table(rows, ("comm", "tasks", "verdicts", "stacks")))


def _errors(run: _Run) -> str:
    errors = [r for r in run.rounds if r["harness_error"]]
    if not errors:
        return "<h2 id='errors'>Harness errors</h2><p>none</p>"
    rows = [(r["round"], r["harness_error"]) for r in errors]
    return "<h2 id='errors'>Harness errors</h2>" + _table(rows, ("round", "error"))


def _at(st: dict, i: int) -> str:
    """The frame the verdict names (reason_frame), highlighted."""
    return " class='at' title='the frame the verdict names'" if st.get("reason_frame") == i else ""


def _frames_table(st: dict) -> str:
    details = st.get("frame_details")
    if details:
        rows = "".join(f"<tr{_at(st, i)}><td>#{i}</td><td>{_e(f.get('name'))}</td><td>{_e(f.get('pc'))}</td>"
                       f"<td>{_e(f.get('object') or '')}</td></tr>" for i, f in enumerate(details))
        return f"<table class='f'><tr><th>#</th><th>frame</th><th>pc</th><th>module</th></tr>{rows}</table>"
    # Reports from before frame_details: the names alone.
    rows = "".join(f"<tr{_at(st, i)}><td>#{i}</td><td>{_e(f)}</td></tr>" for i, f in enumerate(st.get("frames") or ()))
    return f"<table class='f'><tr><th>#</th><th>frame</th></tr>{rows}</table>"


def _shadow_block(shadow: Optional[dict]) -> str:
    """The shadow call stack's verdict, and the CPU's un-returned calls (slot, return address) it compared."""
    if not shadow:
        return ""
    out = f"<p>shadow call stack: <b>{_e(shadow.get('verdict'))}</b>" + (
        f" — {_e(shadow['detail'])}" if shadow.get("detail") else "") + "</p>"
    calls = shadow.get("shadow") or []
    if calls:
        rows = "".join(f"<tr><td>{_e(slot)}</td><td>{_e(ret)}</td></tr>" for slot, ret in calls)
        out += (f"<details><summary>the CPU's {len(calls)} un-returned calls</summary><table class='f'>"
                f"<tr><th>slot</th><th>return address</th></tr>{rows}</table></details>")
    return out


def _stack_group(run: _Run, g: dict) -> str:
    st, key, rnds = g["stack"], g["key"], g["rounds"]
    false = g["kind"] == "false"
    complete = (st.get("shadow") or {}).get("verdict") == "agree" and not false
    tag = ("<span class='tag bad'>FALSE RELIABLE</span>" if false
           else "<span class='tag'>expected: planted bug</span>" if g["kind"] == "expected"
           else "<span class='tag'>shadow shows it complete: false-unreliable candidate</span>" if complete else "")
    verdict = "reliable" if false else st.get("reason")
    shown = ", ".join(map(str, rnds[:40])) + (" …" if len(rnds) > 40 else "")
    head = (f"{_e(key)}: {_e(verdict)} at frame {_e(st.get('reason_frame'))}"
            f"{' (running)' if st.get('running') else ''} — round{'s' if len(rnds) > 1 else ''} {_e(shown)}")
    body = [_frames_table(st)]
    if st.get("detail"):
        body.append(f"<p>detail: {_e(st['detail'])}</p>")
    if false:
        body.append(f"<p class='bad'>truth: {_e(st['truth_violation'])}</p>")
    if st.get("crosscheck"):
        checks = st["crosscheck"]
        body.append("<table class='s'><tr><th>cross-check</th>" + "".join(f"<th>{_e(k)}</th>" for k in checks)
                    + "</tr><tr><td>result</td>" + "".join(f"<td>{_e(v)}</td>" for v in checks.values())
                    + "</tr></table>")
    body.append(_shadow_block(st.get("shadow")))
    return (f"<details id='{g['id']}'{' open' if false else ''}><summary class='{'bad' if false else ''}'>"
            f"{head}{tag}</summary><div>{''.join(body)}</div></details>")


def _stacks(run: _Run) -> str:
    out = ["<h2 id='stacks'>Unreliable and disagreeing stacks</h2>",
           "<p>Every task's stack where the verdict is unreliable or a cross-check disagrees, identical stacks "
           "grouped over rounds (click to open). An unreliable trace the shadow disagrees with is no failure (the "
           "walker did not vouch for it); a reliable one is (FALSE RELIABLE).</p>"]
    if not run.groups:
        out.append("<p>none</p>")
    kind, placed = None, set()
    for g in run.groups:
        if g["kind"] != kind:
            kind = g["kind"]
            out.append(f"<h3>{_e(_KIND_HEADINGS[kind])}</h3>")
        if g["key"] not in placed:  # the task's anchor, at its first stack
            placed.add(g["key"])
            out.append(f"<a id='{run.task_anchor[g['key']]}'></a>")
        out.append(_stack_group(run, g))
    return "".join(out)


def render(report: dict, title: str = "framecert stress run") -> str:
    run = _Run(report)
    width = _cell_width(run)
    nav = ("<p><a href='#provenance'>provenance</a> · <a href='#totals'>totals</a> · <a href='#plots'>plots</a> · "
           "<a href='#grid'>task grid</a> · <a href='#errors'>harness errors</a> · <a href='#stacks'>stacks</a></p>")
    return "\n".join([
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}table.g td{{width:{width}px;min-width:{width}px}}</style></head><body>",
        f"<h1>{_e(title)}</h1>", _banner(run), nav, _provenance(run), _totals(run), _plots(run), _grid(run),
        _errors(run), _stacks(run), "</body></html>"])


def write(report: dict, path: str, title: str = "framecert stress run"):
    with open(path, "w") as f:
        f.write(render(report, title))
