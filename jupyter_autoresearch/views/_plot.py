"""The primary metric per run, as a matplotlib figure (no pyplot: no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..protocol._records import FAILED, RunRecord
from ._status import status_style
from ._trust import comparable, overfit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_metric", "figure_png", "metric_figure"]

_HOLDOUT = "#6a1b9a"  # the holdout metric's colour in the chart

#: Markers of the statuses that have a metric to plot (colours and labels: ``_status``).
_MARKERS: dict[str, dict[str, Any]] = {
    "keep": {"marker": "o", "s": 46},
    "discard": {"marker": "o", "s": 22},
    "infeasible": {"marker": "D", "s": 26},
    "checks_failed": {"marker": "s", "s": 26},
}


def metric_figure(
    runs: Sequence[RunRecord],
    metric: str | None,
    direction: str = "higher",
    *,
    width: float = 7.0,
    height: float = 3.0,
    holdout: str | None = None,
) -> Figure:
    """A standalone figure (no pyplot), for the panel."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    draw_metric(figure.add_subplot(), runs, metric, direction, holdout=holdout)
    figure.tight_layout()
    return figure


def draw_metric(
    axes: Axes, runs: Sequence[RunRecord], metric: str | None, direction: str = "higher", *, holdout: str | None = None
) -> Axes:
    """Kept runs marked, a best-so-far line per segment, infeasible, checks_failed and failed runs distinct.

    With a ``holdout`` metric, the kept runs' holdout values are drawn too (hollow, joined
    by a dashed line; on a second axis when their scale is far from the primary metric's),
    and kept runs whose holdout got worse are ringed.
    """
    measured = [r for r in runs if r.metric is not None]
    for status, marker in _MARKERS.items():
        chosen = [r for r in measured if r.status == status]
        if chosen:
            style = status_style(status)
            axes.scatter(
                [r.run for r in chosen],
                [r.metric or 0.0 for r in chosen],
                zorder=3,
                color=style.colour,
                label=style.label,
                **marker,
            )
    failed = [r for r in runs if r.status in FAILED or r.metric is None]
    if failed:
        # No metric to plot: mark them along the bottom edge so they stay visible.
        axes.scatter(
            [r.run for r in failed],
            [0] * len(failed),
            marker="x",
            color=status_style("crash").colour,
            zorder=3,
            label="failed",
            transform=axes.get_xaxis_transform(),
            clip_on=False,
        )
    for segment in sorted({r.segment for r in runs}):
        xs, ys, best = [], [], None
        for r in runs:
            if r.segment != segment:
                continue
            if r.kept and r.metric is not None:
                better = best is None or (r.metric > best if direction == "higher" else r.metric < best)
                best = r.metric if better else best
            if best is not None:
                xs.append(r.run)
                ys.append(best)
        if xs:
            axes.step(
                xs,
                ys,
                where="post",
                color=status_style("keep").colour,
                alpha=0.6,
                linewidth=1.5,
                label="best so far" if segment == min(r.segment for r in runs) else None,
            )
        starts = [r.run for r in runs if r.segment == segment]
        if segment > 0 and starts:
            axes.axvline(starts[0] - 0.5, color="#607d8b", linestyle="--", linewidth=1)
            axes.annotate(
                f"segment {segment}",
                (starts[0] - 0.4, 1),
                xycoords=("data", "axes fraction"),
                va="top",
                fontsize=8,
                color="#607d8b",
            )
    if holdout is not None:
        _draw_holdout(axes, runs, metric, holdout)
    axes.set_xlabel("run")
    axes.set_ylabel(metric or "metric")
    axes.grid(alpha=0.3)
    if runs:
        axes.legend(fontsize=8, loc="best")
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return axes


def _draw_holdout(axes: Axes, runs: Sequence[RunRecord], metric: str | None, holdout: str) -> None:
    kept = [r for r in runs if r.kept and holdout in r.metrics]
    if not kept:
        return
    xs, ys = [r.run for r in kept], [r.metrics[holdout] for r in kept]
    searched = [r.metric for r in runs if r.metric is not None]
    target = axes
    if searched and not comparable(searched, ys):
        target = axes.twinx()  # another scale: its own axis, labelled
        target.set_ylabel(holdout, color=_HOLDOUT)
    target.plot(xs, ys, linestyle="--", color=_HOLDOUT, linewidth=1, alpha=0.7)
    target.scatter(xs, ys, marker="D", s=30, facecolors="none", edgecolors=_HOLDOUT, zorder=4, label=holdout)
    worse = [r for r in kept if overfit(r)]
    if worse:
        target.scatter(
            [r.run for r in worse],
            [r.metrics[holdout] for r in worse],
            marker="o",
            s=150,
            facecolors="none",
            edgecolors=status_style("crash").colour,
            linewidths=1.5,
            zorder=5,
            label=f"{holdout} worse",
        )
    if target is not axes:
        target.legend(fontsize=8, loc="lower right")


def figure_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg backend."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
