"""Text for what the checks found, shared by the terminal, HTML and panel views: the holdout
metric beside the search metric and their gap, runs that overfit, the paired decision of
``--repeats``, and the noise measured by ``--calibrate``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..protocol._calibration import Spread
from ..protocol._format import number
from ..protocol._records import RunRecord
from ..protocol._task import Threshold

__all__ = [
    "OVERFIT_MARK",
    "calibration_lines",
    "comparable",
    "flag_notes",
    "gap",
    "holdout_text",
    "overfit",
    "paired_text",
]

#: How a run whose search metric improved while its holdout worsened is marked.
OVERFIT_MARK = "⚠"


def comparable(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two series can share a chart's axis: the distance between their ranges is no
    more than the wider range (a holdout of the same kind as the search metric)."""
    distance = max(min(b) - max(a), min(a) - max(b), 0.0)
    return distance <= max(max(a) - min(a), max(b) - min(b))


def gap(record: RunRecord, metric: str | None, holdout: str | None) -> float | None:
    """The holdout metric minus the search metric (None when either is missing)."""
    if metric is None or holdout is None:
        return None
    search, held = record.metrics.get(metric), record.metrics.get(holdout)
    return None if search is None or held is None else held - search


def holdout_text(record: RunRecord, metric: str | None, holdout: str | None) -> str:
    """``holdout_mape=0.142 (gap +0.061)`` for a run the holdout scored, else ""."""
    if holdout is None or holdout not in record.metrics:
        return ""
    difference = gap(record, metric, holdout)
    shown = f" (gap {difference:+.4g})" if difference is not None else ""
    mark = f" {OVERFIT_MARK} holdout worse" if overfit(record) else ""
    return f"{holdout}={number(record.metrics[holdout])}{shown}{mark}"


def overfit(record: RunRecord) -> bool:
    """Kept for its search metric while its holdout metric got worse."""
    return "overfit" in record.flags


def flag_notes(record: RunRecord) -> list[str]:
    """What the user should know about a run, one line each."""
    return [text for text in record.flags.values() if text]


def paired_text(record: RunRecord) -> str:
    """The decision against the best measured again (``--repeats``), in one line."""
    paired = record.paired
    if not paired:
        return ""
    gain, noise, need, median = (float(paired.get(k) or 0.0) for k in ("gain", "noise", "need", "incumbent_metric"))
    margin = max(noise, need)
    again = f"run {paired.get('incumbent')} measured again (median {number(median)} over {paired.get('pairs')} rounds)"
    if record.kept:
        return f"beat {again}: gain {gain:.4g} > margin {margin:.4g}"
    return f"against {again}: gain {gain:.4g}, not more than margin {margin:.4g}"


def calibration_lines(metric: str, spreads: Mapping[str, Spread], threshold: Threshold | None) -> list[str]:
    """Each metric's spread, then the keep threshold it set (or that it left alone)."""
    lines = [f"{name}: {spread}" for name, spread in spreads.items()]
    if threshold is not None:
        lines.append(f"keep threshold: {metric} must improve by more than {threshold.value:.4g} (from the spread)")
    else:
        lines.append("keep threshold: --min-improvement, as given")
    return lines
