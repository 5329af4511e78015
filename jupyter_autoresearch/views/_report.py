"""Plain-text views of a session: the history table."""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol._format import change, number, short
from ..protocol._records import RunRecord

__all__ = ["history_table"]


def history_table(runs: Sequence[RunRecord], metric: str | None, *, width: int = 60) -> str:
    """A fixed-width table of runs, one line each, segments separated."""
    if not runs:
        return "(no runs)"
    baseline = runs[0].metric
    header = f"{'run':>4}  {'seg':>3}  {'status':<10}  {metric or 'metric':>16}  {'vs baseline':>20}  hypothesis"
    lines = [header, "-" * min(len(header) + width, 140)]
    segment = runs[0].segment
    for r in runs:
        if r.segment != segment:
            segment = r.segment
            constraints = ", ".join(r.constraints) or "none"
            lines.append(f"{'':>4}  -- segment {segment}: constraints {constraints}")
        note = r.hypothesis or r.description
        if r.status != "keep" and r.error:
            note = f"{note} [{r.error}]" if note else f"[{r.error}]"
        lines.append(
            f"{r.run:>4}  {r.segment:>3}  {r.status:<10}  {number(r.metric):>16}  "
            f"{change(r.metric, baseline):>20}  {short(note, width)}"
        )
    return "\n".join(lines)
