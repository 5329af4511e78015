"""Why a run of the loop ended, as the log keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["StopLine"]


@dataclass(frozen=True)
class StopLine:
    """The end of one run of the loop, as written to ``log.jsonl``.

    The line is ``{"type": "stop", ...}`` with no ``run`` field, so pi-autoresearch's
    reader (config headers and numbered runs only) and ours pass over it.

    Attributes:
        reason: one of the stop reasons (``max-iterations``, ``plateau``, ``done``,
            ``up-to-date``, ``max-cost``, ``max-time``, ``user``, ``interrupted``, ``error``).
        detail: what it means here, in one line.
        runs: the runs the session holds at the end.
        timestamp: when, in milliseconds since the epoch.
    """

    reason: str
    detail: str
    runs: int
    timestamp: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "stop",
            "reason": self.reason,
            "detail": self.detail,
            "runs": self.runs,
            "timestamp": self.timestamp,
        }
