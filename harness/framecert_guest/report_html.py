"""The stress run as one self-contained HTML page: the totals, a grid of tasks x rounds coloured by verdict,
and every unreliable or disagreeing stack in full (identical stacks of one task grouped over rounds)."""
import html
from typing import Dict, List, Tuple

_COLOURS = ["#f0a030", "#d0c020", "#50a0e0", "#a070d0", "#e070b0", "#70c0c0", "#c08050", "#8090a0"]
_RELIABLE, _FALSE, _ABSENT, _ERROR = "#3c9a4c", "#e01010", "#eeeeee", "#606060"


def _pid_of(key: str) -> int:
    try:
        return int(key.split(":", 1)[0])
    except ValueError:
        return -1


def render(report: dict, title: str = "framecert stress run") -> str:
    s = report["summary"]
    rounds = report["rounds"]
    reasons = sorted({v for r in rounds for v in r["verdicts"].values()} - {"reliable", "FALSE-RELIABLE"})
    colour = {reason: _COLOURS[i % len(_COLOURS)] for i, reason in enumerate(reasons)}
    colour.update({"reliable": _RELIABLE, "FALSE-RELIABLE": _FALSE})
    tasks = sorted({k for r in rounds for k in r["verdicts"]}, key=lambda k: (_pid_of(k), k))
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>",
           "body{font:13px sans-serif;margin:1.5em} table.g{border-collapse:collapse}",
           "table.g td{width:9px;height:11px;padding:0;border:1px solid #fff}",
           "table.g th{font-weight:normal;text-align:right;padding-right:6px;white-space:nowrap;font-family:monospace}",
           ".k{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}",
           "pre{background:#f6f6f6;padding:6px;margin:4px 0 10px 0} .bad{color:#e01010;font-weight:bold}",
           "table.s td{padding:2px 10px 2px 0}</style></head><body>",
           f"<h1>{e(title)}</h1><table class='s'>"]
    fr = s["false_reliable"]
    rows = [("rounds", s["rounds"]), ("seed / workload", f"{s['seed']} / {s['workload']}"),
            ("task walks", s["tasks_walked"]), ("reliable", s["reliable"]), ("unreliable", s["unreliable"]),
            ("by reason", ", ".join(f"{k} {v}" for k, v in s["by_reason"].items()) or "none"),
            ("running tasks (unwound / reliable)", f"{s['running_tasks']} ({s['running_unwound']} / "
                                                   f"{s['running_reliable']})"),
            ("freeze → verdict (median / max ms)",
             f"{s['freeze_to_verdict_ms']['median']} / {s['freeze_to_verdict_ms']['max']}"),
            ("false reliable", f"<span class='{'bad' if fr else ''}'>{fr}</span>"),
            ("harness errors", s["harness_errors"])]
    out += [f"<tr><td>{e(k)}</td><td>{v if k == 'false reliable' else e(str(v))}</td></tr>" for k, v in rows]
    out.append("</table><h2>Verdicts: tasks × rounds</h2><p>")
    out += [f"<span class='k' style='background:{c}'></span>{e(k)}" for k, c in colour.items()]
    out.append(f"<span class='k' style='background:{_ABSENT}'></span>task not present"
               f"<span class='k' style='background:{_ERROR}'></span>harness error</p>")
    out.append("<table class='g'><tr><th></th>" + "".join(
        f"<td title='round {r['round']}'></td>" for r in rounds) + "</tr>")
    for key in tasks:
        cells = []
        for r in rounds:
            v = r["verdicts"].get(key)
            bg = _ERROR if r["harness_error"] else colour.get(v, _ABSENT) if v else _ABSENT
            tip = f"round {r['round']}: {v or r['harness_error'] or 'absent'}"
            cells.append(f"<td style='background:{bg}' title='{e(tip)}'></td>")
        out.append(f"<tr><th>{e(key)}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    errors = [r for r in rounds if r["harness_error"]]
    if errors:
        out.append("<h2>Harness errors</h2><ul>" + "".join(
            f"<li>round {r['round']}: {e(r['harness_error'])}</li>" for r in errors) + "</ul>")
    out.append("<h2>Unreliable and disagreeing stacks</h2>")
    groups: Dict[tuple, Tuple[dict, List[int]]] = {}
    for r in rounds:
        for key, st in r["stacks"].items():
            sig = (key, st["reason"], tuple(st["frames"]), str(st.get("truth_violation")))
            groups.setdefault(sig, (st, []))[1].append(r["round"])
    for (key, reason, frames, _), (st, rnds) in sorted(groups.items(), key=lambda g: (_pid_of(g[0][0]), g[0])):
        bad = st.get("truth_violation") or "disagree" in (st.get("crosscheck") or {}).values()
        head = (f"{key}: {'FALSE RELIABLE' if st.get('truth_violation') else reason}"
                f" at frame {st['reason_frame']}" + (" (running)" if st["running"] else "")
                + f" — rounds {', '.join(map(str, rnds[:40]))}{' …' if len(rnds) > 40 else ''}")
        body = "\n".join(f"#{i:<2} {f}" for i, f in enumerate(frames))
        extra = "\n".join(x for x in (st.get("detail"), st.get("truth_violation"),
                                      f"cross-checks: {st.get('crosscheck')}") if x)
        out.append(f"<details{' open' if bad else ''}><summary class='{'bad' if bad else ''}'>{e(head)}</summary>"
                   f"<pre>{e(body)}\n\n{e(extra)}</pre></details>")
    out.append("</body></html>")
    return "\n".join(out)


def write(report: dict, path: str, title: str = "framecert stress run"):
    with open(path, "w") as f:
        f.write(render(report, title))
