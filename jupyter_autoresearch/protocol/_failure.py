"""A model request that failed: it costs an iteration, never a run number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelFailure"]


@dataclass(frozen=True)
class ModelFailure:
    """A failed or cut-off model reply, as written to ``log.jsonl``.

    The log line is ``{"type": "model_failure", ...}`` with no ``run`` field:
    pi-autoresearch's log reader keeps config headers and lines with a numeric ``run``
    only, and ours skips line types it does not read, so neither takes it for a run.

    Attributes:
        segment: the segment the request was made in.
        iteration: the iteration of the loop it cost (from 1, per run of the loop).
        reason: why it failed, in one line.
        model: the model that was asked.
        timestamp: when, in milliseconds since the epoch.
    """

    segment: int
    iteration: int
    reason: str
    model: str = ""
    timestamp: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "model_failure",
            "segment": self.segment,
            "iteration": self.iteration,
            "reason": self.reason,
            "model": self.model,
            "timestamp": self.timestamp,
        }
