"""The history as a pandas DataFrame (pandas is imported on use, as an optional view)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..protocol._records import RunRecord

if TYPE_CHECKING:
    import pandas

__all__ = ["runs_dataframe"]


def runs_dataframe(runs: Sequence[RunRecord]) -> pandas.DataFrame:
    """One row per run, indexed by run number; each metric is a ``metrics.<name>`` column."""
    import pandas as pd

    rows = []
    for r in runs:
        row: dict[str, Any] = {"run": r.run, "segment": r.segment, "status": r.status, "metric": r.metric}
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update(
            hypothesis=r.hypothesis or r.description,
            parent=r.parent,
            error=r.error,
            duration_s=r.duration_s,
            tokens=r.tokens,
            cost_usd=r.cost_usd,
            confidence=r.confidence,
            flags=dict(r.flags),
            code=r.code,
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
