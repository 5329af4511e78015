"""The primary metric per run, as a matplotlib figure (no pyplot: no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..protocol._records import FAILED, RunRecord
from ._status import status_style

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_metric", "figure_png", "metric_figure"]

#: Markers of the statuses that have a metric to plot (colours and labels: ``_status``).
_MARKERS: dict[str, dict[str, Any]] = {
    "keep": {"marker": "o", "s": 46},
    "discard": {"marker": "o", "s": 22},
    "infeasible": {"marker": "D", "s": 26},
    "checks_failed": {"marker": "s", "s": 26},
}


def metric_figure(
    runs: Sequence[RunRecord], metric: str | None, direction: str = "higher", *, width: float = 7.0, height: float = 3.0
) -> Figure:
    """A standalone figure (no pyplot), for the panel."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    draw_metric(figure.add_subplot(), runs, metric, direction)
    figure.tight_layout()
    return figure


def draw_metric(axes: Axes, runs: Sequence[RunRecord], metric: str | None, direction: str = "higher") -> Axes:
    """Kept runs marked, a best-so-far line per segment, infeasible, checks_failed and failed runs distinct."""
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
    axes.set_xlabel("run")
    axes.set_ylabel(metric or "metric")
    axes.grid(alpha=0.3)
    if runs:
        axes.legend(fontsize=8, loc="best")
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return axes


def figure_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg backend."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
