"""Run records and session configuration, and their pi-autoresearch compatible JSON form."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["FAILED", "STATUSES", "RunRecord", "SegmentConfig", "Status", "code_id"]

Status = Literal["keep", "discard", "crash", "timeout", "infeasible", "invalid", "violation"]
STATUSES: tuple[Status, ...] = ("keep", "discard", "crash", "timeout", "infeasible", "invalid", "violation")
#: Statuses where the candidate did not produce a usable measurement.
FAILED: frozenset[str] = frozenset({"crash", "timeout", "invalid", "violation"})


def code_id(code: str) -> str:
    """A short content id for a cell, used where pi-autoresearch logs a git commit."""
    return hashlib.sha1(code.encode()).hexdigest()[:7]


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class RunRecord:
    """One run of the loop, as written to ``log.jsonl``.

    Attributes:
        run: the run number, 1 for the first baseline; numbering continues on resume.
        segment: the constraint segment, bumped whenever the constraints change.
        status: keep, discard, crash, timeout, infeasible, invalid or violation.
        metric: the primary metric (the median over repeats), or None.
        metrics: every metric the run reported (median over repeats).
        code: the complete cell the run evaluated.
        hypothesis: the model's reason for trying it.
        parent: the run whose code the model changed.
        error: why a run failed or was not kept, in one line.
    """

    run: int
    segment: int
    status: Status
    metric: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    code: str = ""
    hypothesis: str = ""
    description: str = ""
    parent: int | None = None
    timestamp: int = 0
    duration_s: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    error: str | None = None
    constraints: tuple[str, ...] = ()
    confidence: float | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    repeats: tuple[float, ...] = ()
    figures: tuple[str, ...] = ()
    asi: Mapping[str, Any] = field(default_factory=dict)
    commit: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _frozen(self.metrics))
        object.__setattr__(self, "asi", _frozen(self.asi))

    @property
    def kept(self) -> bool:
        return self.status == "keep"

    @property
    def is_baseline(self) -> bool:
        """The unchanged cell, or a segment's re-evaluated best: not a proposal."""
        return self.parent is None or bool(self.asi.get("baseline"))

    def to_json(self) -> dict[str, Any]:
        """The log line: pi-autoresearch's fields first, then ours."""
        asi = dict(self.asi)
        if self.hypothesis:
            asi.setdefault("hypothesis", self.hypothesis)
        return {
            "run": self.run,
            "commit": self.commit or (code_id(self.code) if self.code else None),
            "metric": self.metric,
            "metrics": dict(self.metrics),
            "status": self.status,
            "description": self.description or self.hypothesis,
            "timestamp": self.timestamp,
            "segment": self.segment,
            "confidence": self.confidence,
            "iterationTokens": self.tokens,
            "asi": asi,
            "code": self.code,
            "parent": self.parent,
            "duration_s": self.duration_s,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
            "model": self.model,
            "error": self.error,
            "constraints": list(self.constraints),
            "repeats": list(self.repeats),
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "figures": list(self.figures),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, metric_name: str | None = None) -> RunRecord:
        """Read a log line written by us or by pi-autoresearch.

        pi-autoresearch keeps the primary metric out of ``metrics``; it is merged back
        under ``metric_name`` so both kinds of log read the same.
        """
        metrics = {
            str(k): float(v)
            for k, v in (data.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        }
        metric = data.get("metric")
        metric = float(metric) if isinstance(metric, (int, float)) else None
        if metric is not None and metric_name and metric_name not in metrics:
            metrics = {metric_name: metric, **metrics}
        asi = data.get("asi") or {}
        status = data.get("status", "discard")
        tokens = data.get("tokens", data.get("iterationTokens"))
        return cls(
            run=int(data["run"]),
            segment=int(data.get("segment") or 0),
            status=status if status in STATUSES else "discard",
            metric=metric,
            metrics=metrics,
            code=str(data.get("code") or ""),
            hypothesis=str(asi.get("hypothesis") or ""),
            description=str(data.get("description") or ""),
            parent=data.get("parent"),
            timestamp=int(data.get("timestamp") or 0),
            duration_s=data.get("duration_s"),
            tokens=int(tokens) if isinstance(tokens, (int, float)) else None,
            cost_usd=data.get("cost_usd"),
            model=data.get("model"),
            error=data.get("error"),
            constraints=tuple(data.get("constraints") or ()),
            confidence=data.get("confidence"),
            stdout_tail=str(data.get("stdout_tail") or ""),
            stderr_tail=str(data.get("stderr_tail") or ""),
            repeats=tuple(float(v) for v in data.get("repeats") or ()),
            figures=tuple(data.get("figures") or ()),
            asi=asi,
            commit=data.get("commit"),
        )


@dataclass(frozen=True)
class SegmentConfig:
    """A config header of the log: starts a segment with its rules."""

    name: str
    metric_name: str
    direction: str = "higher"
    unit: str = ""
    constraints: tuple[str, ...] = ()
    off_limits: tuple[str, ...] = ()
    objective: str = ""
    secondary: tuple[str, ...] = ()
    segment: int = 0
    timestamp: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "config",
            "name": self.name,
            "metricName": self.metric_name,
            "metricUnit": self.unit,
            "bestDirection": self.direction,
            "segment": self.segment,
            "constraints": list(self.constraints),
            "offLimits": list(self.off_limits),
            "objective": self.objective,
            "secondaryMetrics": list(self.secondary),
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, segment: int) -> SegmentConfig:
        return cls(
            name=str(data.get("name") or ""),
            metric_name=str(data.get("metricName") or ""),
            direction="lower" if data.get("bestDirection") == "lower" else "higher",
            unit=str(data.get("metricUnit") or ""),
            constraints=tuple(data.get("constraints") or ()),
            off_limits=tuple(data.get("offLimits") or ()),
            objective=str(data.get("objective") or ""),
            secondary=tuple(data.get("secondaryMetrics") or ()),
            segment=int(data.get("segment", segment)),
            timestamp=int(data.get("timestamp") or 0),
        )
