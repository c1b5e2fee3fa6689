"""Small hand-written SVG charts for the stress page (no script, no library, nothing fetched): stacked bars
and lines over rounds, with axes, tick labels, axis titles and a legend.

Rounds sit at evenly spaced positions labelled with their numbers (a shard's rounds are not contiguous).
A value of None is a gap: a round that gave no figure (a harness error, no reliable verdict to check)."""
import html
import math
from typing import List, Optional, Sequence, Tuple

WIDTH, HEIGHT = 960, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 220, 28, 46  # the plot area's margins: the right one holds the legend
Series = Tuple[str, str, Sequence[Optional[float]]]  # (label, colour, one value per round)


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(top: float, count: int = 5) -> List[float]:
    """0 .. at least `top` in about `count` steps of 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _tick_text(value: float, unit: str) -> str:
    text = f"{value:g}" if abs(value) < 1e5 else f"{value:.2g}"
    return text + unit


class _Frame:
    """The axes of one chart: maps round positions and values to pixels and draws the furniture."""

    def __init__(self, rounds: Sequence[int], y_top: float, unit: str = ""):
        self.rounds = list(rounds)
        self.ticks = nice_ticks(y_top)
        self.y_max = self.ticks[-1]
        self.unit = unit
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM
        self.slot = self.plot_w / max(1, len(self.rounds))

    def x(self, i: int) -> float:
        """The centre of round position i."""
        return LEFT + (i + 0.5) * self.slot

    def y(self, value: float) -> float:
        return TOP + self.plot_h * (1 - value / self.y_max)

    def axes(self, title: str, x_label: str, y_label: str) -> List[str]:
        out = [f"<text class='t' x='{LEFT}' y='16'>{_esc(title)}</text>"]
        for t in self.ticks:
            y = self.y(t)
            out.append(f"<line class='grid' x1='{LEFT}' x2='{LEFT + self.plot_w}' y1='{y:.1f}' y2='{y:.1f}'/>")
            out.append(f"<text class='tick' x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor='end'>"
                       f"{_esc(_tick_text(t, self.unit))}</text>")
        every = max(1, math.ceil(len(self.rounds) / 12))  # at most about 12 round labels
        for i in range(0, len(self.rounds), every):
            x = self.x(i)
            out.append(f"<line class='axis' x1='{x:.1f}' x2='{x:.1f}' y1='{TOP + self.plot_h}' "
                       f"y2='{TOP + self.plot_h + 4}'/>")
            out.append(f"<text class='tick' x='{x:.1f}' y='{TOP + self.plot_h + 16}' text-anchor='middle'>"
                       f"{self.rounds[i]}</text>")
        bottom = TOP + self.plot_h
        out.append(f"<line class='axis' x1='{LEFT}' x2='{LEFT + self.plot_w}' y1='{bottom}' y2='{bottom}'/>")
        out.append(f"<line class='axis' x1='{LEFT}' x2='{LEFT}' y1='{TOP}' y2='{bottom}'/>")
        out.append(f"<text class='lab' x='{LEFT + self.plot_w / 2:.1f}' y='{HEIGHT - 8}' text-anchor='middle'>"
                   f"{_esc(x_label)}</text>")
        mid = TOP + self.plot_h / 2
        out.append(f"<text class='lab' x='14' y='{mid:.1f}' text-anchor='middle' "
                   f"transform='rotate(-90 14 {mid:.1f})'>{_esc(y_label)}</text>")
        return out

    def legend(self, entries: List[Tuple[str, str, str]]) -> List[str]:
        """(label, colour, 'box' | 'line') a line each, right of the plot."""
        out = []
        x0 = LEFT + self.plot_w + 16
        for n, (label, colour, kind) in enumerate(entries[:12]):
            y = TOP + 6 + 16 * n
            if kind == "box":
                out.append(f"<rect x='{x0}' y='{y - 9}' width='11' height='11' fill='{colour}'/>")
            else:
                out.append(f"<line x1='{x0 - 2}' x2='{x0 + 13}' y1='{y - 4}' y2='{y - 4}' stroke='{colour}' "
                           "stroke-width='2.5'/>")
            out.append(f"<text class='tick' x='{x0 + 18}' y='{y}'>{_esc(label)}</text>")
        if len(entries) > 12:
            out.append(f"<text class='tick' x='{x0}' y='{TOP + 6 + 16 * 12}'>… {len(entries) - 12} more</text>")
        return out


_STYLE = ("<style>.t{font:bold 13px sans-serif}.tick{font:11px sans-serif;fill:#333}.lab{font:12px sans-serif}"
          ".axis{stroke:#333;stroke-width:1}.grid{stroke:#e4e4e4;stroke-width:1}</style>")


def _svg(body: List[str], label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
            f"viewBox='0 0 {WIDTH} {HEIGHT}' role='img' aria-label='{_esc(label)}'>{_STYLE}"
            + "".join(body) + "</svg>")


def stacked_bars(rounds: Sequence[int], stacks: Sequence[Series], title: str, y_label: str, x_label: str = "round",
                 lines: Sequence[Series] = ()) -> str:
    """One bar per round, stacked by series (counts), with optional lines over them (e.g. how many of the
    counts were expected)."""
    totals = [sum(v[i] or 0 for _, _, v in stacks) for i in range(len(rounds))]
    tops = totals + [v or 0 for _, _, vals in lines for v in vals]
    frame = _Frame(rounds, max(tops, default=0) or 1)
    body = frame.axes(title, x_label, y_label)
    width = max(1.0, frame.slot * 0.8)
    for i, rnd in enumerate(rounds):
        base = 0.0
        for label, colour, values in stacks:
            v = values[i] or 0
            if not v:
                continue
            y0, y1 = frame.y(base), frame.y(base + v)
            body.append(f"<rect x='{frame.x(i) - width / 2:.1f}' y='{y1:.1f}' width='{width:.1f}' "
                        f"height='{y0 - y1:.1f}' fill='{colour}'><title>round {rnd}: {_esc(label)} {v:g}"
                        f"</title></rect>")
            base += v
    for series in lines:
        body += _polyline(frame, series)
    legend = [(label, colour, "box") for label, colour, _ in stacks]
    legend += [(label, colour, "line") for label, colour, _ in lines]
    return _svg(body + frame.legend(legend), title)


def line_chart(rounds: Sequence[int], series: List[Series], title: str, y_label: str, x_label: str = "round",
               y_top: Optional[float] = None, unit: str = "") -> str:
    """A line (with a dot per round) for each series; y from 0 to y_top (default: the largest value)."""
    values = [v for _, _, vals in series for v in vals if v is not None]
    frame = _Frame(rounds, y_top if y_top is not None else (max(values, default=0) or 1), unit)
    body = frame.axes(title, x_label, y_label)
    for s in series:
        body += _polyline(frame, s)
    return _svg(body + frame.legend([(label, colour, "line") for label, colour, _ in series]), title)


def _polyline(frame: _Frame, series: Series) -> List[str]:
    """The series as connected runs of points (a None breaks the line), a dot with a tooltip on each."""
    label, colour, values = series
    out: List[str] = []
    run: List[str] = []
    dots = len(values) <= 200  # beyond that the dots hide the line
    for i, v in enumerate(values):
        if v is None:
            out += _segment(run, colour)
            run = []
            continue
        x, y = frame.x(i), frame.y(v)
        run.append(f"{x:.1f},{y:.1f}")
        if dots:
            out.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='2.6' fill='{colour}'><title>round {frame.rounds[i]}: "
                       f"{_esc(label)} {v:g}{_esc(frame.unit)}</title></circle>")
    return _segment(run, colour) + out


def _segment(points: List[str], colour: str) -> List[str]:
    if len(points) < 2:
        return []
    return [f"<polyline fill='none' stroke='{colour}' stroke-width='2' points='{' '.join(points)}'/>"]
