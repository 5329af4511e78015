"""Noise measured before the loop (``--calibrate K``): each metric's spread over K runs of
the unchanged cell, and the keep threshold it gives."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._records import finite

__all__ = ["Calibration", "Spread", "noise_threshold"]

#: The MAD of a normal distribution times this is its standard deviation.
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Spread:
    """One metric over the calibration runs: median, median absolute deviation, values."""

    median: float
    mad: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        middle = statistics.median(values)
        deviation = statistics.median(abs(v - middle) for v in values) if len(values) > 1 else 0.0
        return cls(middle, deviation, tuple(values))

    def __str__(self) -> str:
        return f"median {self.median:.6g}, MAD {self.mad:.2g} over {len(self.values)} runs"


def noise_threshold(spread: Spread, repeats: int = 1) -> float:
    """How much a run must beat the best by to be more than noise.

    Twice the standard deviation of the difference of two measurements (each a median of
    ``repeats``): ``2 × √2 × 1.4826 × MAD / √repeats``. 0 when the metric did not vary.
    """
    return 2 * math.sqrt(2) * _MAD_TO_SD * spread.mad / math.sqrt(max(repeats, 1))


@dataclass(frozen=True)
class Calibration:
    """The log line of a calibration (no ``run``: pi-autoresearch's reader skips it).

    Attributes:
        segment: the segment it was measured in.
        runs: how many times the unchanged cell ran.
        spreads: each metric's spread.
        threshold: the keep threshold it set, or None when ``--min-improvement`` was given.
        metric: the primary metric the threshold is for.
    """

    segment: int
    runs: int
    spreads: Mapping[str, Spread] = field(default_factory=dict)
    threshold: float | None = None
    metric: str | None = None
    timestamp: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "calibration",
            "segment": self.segment,
            "runs": self.runs,
            "metric": self.metric,
            "threshold": finite(self.threshold),
            "spreads": {
                name: {"median": finite(s.median), "mad": finite(s.mad), "values": [finite(v) for v in s.values]}
                for name, s in self.spreads.items()
            },
            "timestamp": self.timestamp,
        }
