"""Line charts rendered server-side as inline SVG: no chart library to vendor, nothing to run in
the browser, and the numbers stay readable (a table of the same data sits under each chart)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#64748b"]
MAX_LINES = 6


@dataclass(frozen=True, slots=True)
class Chart:
    svg: str
    legend: list[tuple[str, str, int]]  # (name, colour, total)


def _top(series: dict[str, list[int]]) -> dict[str, list[int]]:
    """The busiest lines, the rest summed into 'other' so a chart stays legible."""
    ranked = sorted(series.items(), key=lambda kv: -sum(kv[1]))
    top = dict(ranked[:MAX_LINES])
    rest = ranked[MAX_LINES:]
    if rest:
        n = len(rest[0][1])
        top["other"] = [sum(values[i] for _, values in rest) for i in range(n)]
    return top


def _label(ts: int, step: int) -> str:
    t = dt.datetime.fromtimestamp(ts)
    return t.strftime("%H:%M") if step < 86400 and step < 6 * 3600 else t.strftime("%m-%d %H:%M")


def line_chart(
    title: str, buckets: list[int], series: dict[str, list[int]], *, width: int = 640
) -> Chart:
    height, left, right, top, bottom = 200, 44, 8, 10, 24
    lines = _top(series)
    peak = max((max(v) for v in lines.values() if v), default=0) or 1
    n = max(len(buckets), 2)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + plot_w * i / (n - 1)

    def y(v: int) -> float:
        return top + plot_h * (1 - v / peak)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'class="chart" preserveAspectRatio="none">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" class="axis"/>',
    ]
    for frac in (0.5, 1.0):
        yy = y(int(peak * frac))
        parts.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{width - right}" y2="{yy:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{yy + 4:.1f}" text-anchor="end">{int(peak * frac):,}</text>'
        )
    step = buckets[1] - buckets[0] if len(buckets) > 1 else 3600
    for i in (0, len(buckets) // 2, len(buckets) - 1):
        if 0 <= i < len(buckets):
            anchor = "start" if i == 0 else "end" if i == len(buckets) - 1 else "middle"
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="{anchor}">'
                f"{_label(buckets[i], step)}</text>"
            )
    legend = []
    for idx, (name, values) in enumerate(lines.items()):
        colour = PALETTE[idx % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        legend.append((name, colour, sum(values)))
    if not lines:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
            "no requests in this period</text>"
        )
    parts.append("</svg>")
    return Chart(svg="".join(parts), legend=legend)
