"""Plain-text views of a session: the history table."""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol._format import change, money, note, number, short
from ..protocol._records import RunRecord, SegmentConfig, segment_baseline
from ..protocol._task import direction_text
from ._trust import OVERFIT_MARK, gap, overfit

__all__ = ["history_table"]


def history_table(
    runs: Sequence[RunRecord],
    metric: str | None,
    *,
    configs: Sequence[SegmentConfig] = (),
    width: int = 60,
    holdout: str | None = None,
) -> str:
    """A fixed-width table of runs, one line each, segments separated.

    Each run is compared with the first run of its own segment, as pi-autoresearch does.
    A segment whose header names another metric or direction says so on its separator.
    With a ``holdout`` metric, kept runs show it beside the search metric with their gap;
    a kept run whose holdout got worse is marked.
    """
    if not runs:
        return "(no runs)"
    held = f"  {holdout:>16}  {'gap':>10}" if holdout else ""
    usage = any(r.tokens is not None or r.cost_usd is not None for r in runs)  # a model answered, not a replay
    spend = f"  {'tokens':>8}  {'cost':>9}" if usage else ""
    columns = f"{'run':>4}  {'seg':>3}  {'status':<13}  {metric or 'metric':>16}  {'vs baseline':>20}"
    header = f"{columns}{held}{spend}  hypothesis"
    lines = [header, "-" * min(len(header) + width, 140)]
    segment: int | None = None
    shown: tuple[str | None, str | None] = (metric, None)
    baselines = {s: segment_baseline(runs, s) for s in {r.segment for r in runs}}
    for r in runs:
        if r.segment != segment:
            rules = [] if segment is None else [f"constraints {', '.join(r.constraints) or 'none'}"]
            config = next((c for c in reversed(configs) if c.segment == r.segment), None)
            if config is not None:
                if config.metric_name != shown[0] or (segment is not None and config.direction != shown[1]):
                    rules.insert(0, f"{config.metric_name or 'metric'}, {direction_text(config.direction)}")
                shown = (config.metric_name, config.direction)
            segment = r.segment
            if rules:
                lines.append(f"{'':>4}  -- segment {segment}: {'; '.join(rules)}")
        first = baselines[r.segment]
        status = f"{r.status} {OVERFIT_MARK}" if overfit(r) else r.status
        beside = ""
        if holdout:
            value = r.metrics.get(holdout) if r.kept else None
            difference = gap(r, metric, holdout) if r.kept else None
            beside = f"  {number(value, ''):>16}  {'' if difference is None else f'{difference:+.4g}':>10}"
        spent = f"  {'' if r.tokens is None else f'{r.tokens:,}':>8}  {money(r.cost_usd):>9}" if usage else ""
        lines.append(
            f"{r.run:>4}  {r.segment:>3}  {status:<13}  {number(r.metric):>16}  "
            f"{change(r.metric, first.metric if first else None):>20}{beside}{spent}  {short(note(r), width)}"
        )
    if usage:
        priced = [r.cost_usd for r in runs if r.cost_usd is not None]
        cost = money(sum(priced)) if priced else "unknown price"
        lines.append(f"{'':>4}  total: {sum(r.tokens or 0 for r in runs):,} tokens, {cost}")
    return "\n".join(lines)
