"""What the command line prints when a session ends: the history table, the kept runs and
the best, and the ``--json`` summary object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from ..protocol._format import number
from ..views._report import history_table

if TYPE_CHECKING:
    from ..engine._session import Session
    from ..protocol._records import RunRecord

__all__ = ["print_summary", "summary"]


def summary(session: Session) -> dict[str, Any]:
    """The object ``--json`` prints."""

    def brief(record: RunRecord | None, code: bool = False) -> dict[str, Any] | None:
        if record is None:
            return None
        data: dict[str, Any] = {
            "run": record.run,
            "segment": record.segment,
            "metric": record.metric,
            "metrics": dict(record.metrics),
        }
        if code:
            data["code"] = record.code
        return data

    return {
        "session": session.name,
        "folder": str(session.folder),
        "stop_reason": session.stop_reason,
        "runs": len(session.runs),
        "baseline": brief(session.baseline_run),
        "best": brief(session.best, code=True),
        "holdout": session.task.holdout,
        "select_by": session.select_by,
        # Model usage over the session's runs (null when no model was asked or its price is unknown).
        "tokens": sum(r.tokens or 0 for r in session.runs) if any(r.tokens is not None for r in session.runs) else None,
        "cost_usd": session.total_cost_usd if any(r.cost_usd is not None for r in session.runs) else None,
        "usage": [
            {"run": r.run, "tokens": r.tokens, "cost_usd": r.cost_usd}
            for r in session.runs
            if r.tokens is not None or r.cost_usd is not None
        ],
    }


def print_summary(session: Session, stream: TextIO) -> None:
    """The history, the chain of kept runs of the current segment (and of their holdout
    metric), and the best run (by the holdout with ``--select-by holdout``) and its code."""
    metric, holdout = session.task.metric, session.task.holdout
    print(file=stream)
    print(history_table(session.runs, metric, holdout=holdout), file=stream)
    best = session.best
    if best is not None:
        kept = [r for r in session.segment_runs() if r.kept]
        print(f"\n{metric} (segment {session.segment}): {' -> '.join(number(r.metric) for r in kept)}", file=stream)
        if holdout:
            chain = " -> ".join(number(r.metrics.get(holdout)) for r in kept)
            print(f"{holdout} (hidden from the model): {chain}", file=stream)
        by = f" by {holdout}" if session.select_by == "holdout" and holdout else ""
        held = f", {holdout}={number(best.metrics.get(holdout))}" if holdout else ""
        print(
            f"best{by}: run {best.run}, {metric}={number(best.metric)}{held}; code in {session.folder / 'best.py'}\n",
            file=stream,
        )
