"""The primary metric per run as inline SVG, for the panel: it follows JupyterLab's theme.

Text, axes and grid take JupyterLab's CSS variables (with light fallbacks elsewhere), the
markers keep the status colours of every view, each marker names its run, status, value and
hypothesis when hovered, and the plot area is padded so no marker is clipped at an edge.
Every string from a run is escaped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from html import escape

from ..protocol._format import number, short
from ..protocol._records import FAILED, RunRecord
from ._status import status_style
from ._trust import comparable, overfit

__all__ = ["metric_svg"]

_TEXT = "var(--jp-ui-font-color2, #616161)"
_GRID = "var(--jp-border-color2, #e0e0e0)"
_AXIS = "var(--jp-border-color1, #bdbdbd)"
_FONT = "var(--jp-ui-font-family, sans-serif)"
#: Marker shape and radius of the statuses that have a metric to plot.
_MARKERS = {"keep": ("circle", 5.0), "discard": ("circle", 3.5), "infeasible": ("diamond", 4.5),
            "checks_failed": ("square", 4.0)}  # fmt: skip
_SYMBOLS = {"circle": "●", "diamond": "◆", "square": "■"}
_PAD = 10.0  # pixels between the outermost marker and the plot's edge
_HOLDOUT = "#8e24aa"  # the holdout metric's colour, readable on light and dark backgrounds


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values between ``low`` and ``high`` (1, 2 or 5 times a power of ten apart)."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * m for m in (1, 2, 5, 10) if power * m >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _marker(shape: str, x: float, y: float, r: float, colour: str, title: str) -> str:
    tip = f"<title>{title}</title>"
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{colour}">{tip}</circle>'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" fill="{colour}">{tip}</rect>'
    points = f"{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} {x - r:.1f},{y:.1f}"
    return f'<polygon points="{points}" fill="{colour}">{tip}</polygon>'


def metric_svg(
    runs: Sequence[RunRecord],
    metric: str | None,
    direction: str = "higher",
    *,
    width: int = 720,
    height: int = 260,
    limit: int = 500,
    holdout: str | None = None,
) -> str:
    """An SVG chart (with an HTML legend) of the primary metric per run.

    Kept runs are large dots, discarded ones small, infeasible ones diamonds, failed runs
    crosses along the bottom; a step line is the best so far of each segment, and dashed
    lines divide the segments. With a ``holdout`` metric, the kept runs' holdout values are
    hollow diamonds joined by a dashed line (on an axis of their own, at the right, when
    their scale is far from the primary metric's), and runs whose holdout got worse are
    ringed. Only the latest ``limit`` runs are drawn.
    """
    if not runs:
        return f"<div style='color:{_TEXT}'>No runs yet.</div>"
    shown = list(runs[-limit:])
    values = [r.metric for r in shown if r.metric is not None and r.status not in FAILED]
    kept_held = [r for r in shown if holdout is not None and r.kept and holdout in r.metrics]
    held_values = [r.metrics[holdout] for r in kept_held] if holdout is not None else []
    shared = bool(held_values) and (not values or comparable(values, held_values))
    if shared:
        values = values + held_values
    left, right, top, bottom = 58.0, 58.0 if held_values and not shared else 12.0, 14.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom
    first, last = shown[0].run, shown[-1].run
    low, high = _span(values)
    low2, high2 = _span(held_values)

    def x(run: int) -> float:
        return left + _PAD + (0 if last == first else (run - first) / (last - first) * (plot_w - 2 * _PAD))

    def y(value: float) -> float:
        return top + _PAD + (high - value) / (high - low) * (plot_h - 2 * _PAD)

    def y_held(value: float) -> float:
        if shared:
            return y(value)
        return top + _PAD + (high2 - value) / (high2 - low2) * (plot_h - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="max-width:100%;height:auto;font-family:{_FONT};font-size:11px" role="img" '
        f'aria-label="{escape(metric or "metric")} per run">'
    ]
    for tick in _ticks(low, high):
        ty = y(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{_GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="{_TEXT}">{escape(number(tick))}</text>'
        )
    for tick in _ticks(first, last, 8) if last > first else [first]:
        if tick != int(tick):
            continue
        tx = x(int(tick))
        parts.append(
            f'<text x="{tx:.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="{_TEXT}">{int(tick)}</text>'
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="{_AXIS}"/>'
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="{_TEXT}">run</text>'
        f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="{_TEXT}" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(metric or "metric")}</text>'
    )
    # Segment dividers wherever the segment changes from one run to the next.
    for before, after in itertools.pairwise(shown):
        if before.segment != after.segment:
            dx = (x(before.run) + x(after.run)) / 2
            parts.append(
                f'<line x1="{dx:.1f}" x2="{dx:.1f}" y1="{top}" y2="{top + plot_h}" stroke="{_TEXT}" '
                f'stroke-dasharray="4 3" opacity="0.7"/>'
                f'<text x="{dx + 3:.1f}" y="{top + 11}" fill="{_TEXT}">segment {after.segment}</text>'
            )
    # The best so far of each segment, as a step line.
    keep = status_style("keep").colour
    best: dict[int, float] = {}
    points: dict[int, list[tuple[float, float]]] = {}
    for r in shown:
        if r.kept and r.metric is not None:
            held = best.get(r.segment)
            improves = held is None or (r.metric > held if direction == "higher" else r.metric < held)
            best[r.segment] = r.metric if improves else held  # type: ignore[assignment]
        if r.segment in best:
            line = points.setdefault(r.segment, [])
            if line:
                line.append((x(r.run), line[-1][1]))
            line.append((x(r.run), y(best[r.segment])))
    for line in points.values():
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in line)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{keep}" stroke-width="1.5" opacity="0.6"/>')
    seen: set[str] = set()
    for r in shown:
        hypothesis = f" — {short(r.hypothesis, 100)}" if r.hypothesis else ""
        title = escape(f"run {r.run} · {r.status} · {number(r.metric)}{hypothesis}")
        style = status_style(r.status)
        if r.status in FAILED or r.metric is None:
            cx, cy = x(r.run), top + plot_h - 4
            parts.append(
                f'<g stroke="{status_style("crash").colour}" stroke-width="2"><title>{title}</title>'
                f'<line x1="{cx - 4:.1f}" y1="{cy - 4:.1f}" x2="{cx + 4:.1f}" y2="{cy + 4:.1f}"/>'
                f'<line x1="{cx - 4:.1f}" y1="{cy + 4:.1f}" x2="{cx + 4:.1f}" y2="{cy - 4:.1f}"/></g>'
            )
            seen.add("failed")
            continue
        shape, radius = _MARKERS.get(r.status, ("circle", 3.5))
        parts.append(_marker(shape, x(r.run), y(r.metric), radius, style.colour, title))
        seen.add(r.status)
    if kept_held and holdout is not None:
        parts.extend(_holdout_marks(kept_held, holdout, x, y_held))
        if not shared:
            for tick in _ticks(low2, high2):
                parts.append(
                    f'<text x="{width - right + 6}" y="{y_held(tick) + 4:.1f}" fill="{_HOLDOUT}">'
                    f"{escape(number(tick))}</text>"
                )
            parts.append(
                f'<text x="{width - 10}" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="{_HOLDOUT}" '
                f'transform="rotate(90 {width - 10} {top + plot_h / 2:.1f})">{escape(holdout)}</text>'
            )
    parts.append("</svg>")
    legend = [
        f"<span style='margin-right:12px;white-space:nowrap'><span style='color:{status_style(s).colour}'>"
        f"{_SYMBOLS[_MARKERS[s][0]]}</span> {escape(status_style(s).label)}</span>"
        for s in _MARKERS
        if s in seen
    ]
    if "failed" in seen:
        legend.append(f"<span style='color:{status_style('crash').colour}'>✕</span> failed")
    legend.append(f"<span style='margin-left:12px;color:{keep}'>―</span> best so far")
    if kept_held and holdout is not None:
        legend.append(f"<span style='margin-left:12px;color:{_HOLDOUT}'>◇</span> {escape(holdout)} of kept runs")
        if any(overfit(r) for r in kept_held):
            legend.append(
                f"<span style='margin-left:12px;color:{status_style('crash').colour}'>○</span> {escape(holdout)} worse"
            )
    more = f" (the latest {len(shown)} of {len(runs)} runs)" if len(shown) < len(runs) else ""
    return (
        f"<div style='color:{_TEXT};font-size:11px;margin-bottom:2px'>{''.join(legend)}{escape(more)}</div>"
        + "".join(parts)
    )


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The range to draw ``values`` over (never empty)."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if low == high:
        low, high = low - (abs(low) or 1) * 0.05, high + (abs(high) or 1) * 0.05
    return low, high


def _holdout_marks(
    held: Sequence[RunRecord], holdout: str, x: Callable[[int], float], y: Callable[[float], float]
) -> list[str]:
    """The kept runs' holdout values: hollow diamonds on a dashed line, overfit runs ringed."""
    points = [(x(r.run), y(r.metrics[holdout]), r) for r in held]
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
    parts = [f'<polyline points="{path}" fill="none" stroke="{_HOLDOUT}" stroke-dasharray="5 3" opacity="0.7"/>']
    ring = status_style("crash").colour
    for px, py, r in points:
        title = escape(f"run {r.run} · {holdout} {number(r.metrics[holdout])}" + (" · worse" if overfit(r) else ""))
        diamond = f"{px:.1f},{py - 5:.1f} {px + 5:.1f},{py:.1f} {px:.1f},{py + 5:.1f} {px - 5:.1f},{py:.1f}"
        parts.append(
            f'<polygon points="{diamond}" fill="none" stroke="{_HOLDOUT}" stroke-width="1.5"><title>{title}</title>'
            "</polygon>"
        )
        if overfit(r):
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="9" fill="none" stroke="{ring}" stroke-width="1.5"/>')
    return parts
