"""Run records and session configuration, and their pi-autoresearch compatible JSON form.

A run line is written so that pi-autoresearch reads it as we mean it: ``status`` holds
one of pi's four statuses (keep, discard, crash, checks_failed; pi reads any other value
as keep), and our finer status goes in ``outcome``. Numbers are finite or null, so each
line is JSON as JavaScript's ``JSON.parse`` reads it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "FAILED",
    "PI_STATUS",
    "STATUSES",
    "RunRecord",
    "SegmentConfig",
    "Status",
    "code_id",
    "finite",
    "segment_baseline",
]

Status = Literal["keep", "discard", "crash", "timeout", "infeasible", "invalid", "violation", "checks_failed"]
STATUSES: tuple[Status, ...] = (
    "keep",
    "discard",
    "crash",
    "timeout",
    "infeasible",
    "invalid",
    "violation",
    "checks_failed",
)
#: Statuses where the candidate did not produce a usable measurement.
FAILED: frozenset[str] = frozenset({"crash", "timeout", "invalid", "violation"})
#: Our status as pi-autoresearch's: a failure is a crash, a refused measurement a discard.
PI_STATUS: Mapping[str, str] = MappingProxyType(
    {
        "keep": "keep",
        "discard": "discard",
        "crash": "crash",
        "checks_failed": "checks_failed",
        "timeout": "crash",
        "invalid": "crash",
        "violation": "crash",
        "infeasible": "discard",
    }
)


def code_id(code: str) -> str:
    """A short content id for a cell, used where pi-autoresearch logs a git commit."""
    return hashlib.sha1(code.encode()).hexdigest()[:7]


def finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def segment_baseline(runs: Sequence[RunRecord], segment: int) -> RunRecord | None:
    """The first run of ``segment``: what pi-autoresearch compares that segment's runs with."""
    return next((r for r in runs if r.segment == segment), None)


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


def _finite_values(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-safe copy: numbers that are not finite become null, lists are copied."""
    if mapping is None:
        return None
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, float):
            out[key] = finite(value)
        elif isinstance(value, (list, tuple)):
            out[key] = [finite(v) if isinstance(v, float) else v for v in value]
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class RunRecord:
    """One run of the loop, as written to ``log.jsonl``.

    Attributes:
        run: the run number, 1 for the first baseline; numbering continues on resume.
        segment: the constraint segment, bumped whenever the constraints change.
        status: keep, discard, crash, timeout, infeasible, invalid, violation or
            checks_failed (pi-autoresearch's correctness checks failed).
        metric: the primary metric (the median over repeats), or None.
        metrics: every metric the run reported (median over repeats).
        code: the complete cell the run evaluated.
        hypothesis: the model's reason for trying it.
        parent: the run whose code the model changed.
        error: why a run failed or was not kept, in one line.
        model_error: the reason as the model reads it, when ``error`` names something
            hidden from it (a hidden metric, a holdout file).
        flags: what the user should know about the run, by kind (``overfit``: the
            primary metric improved but the holdout worsened; ``hidden_printed``: the cell
            printed a holdout metric itself, which was ignored; ``holdout_failed``).
        paired: with ``--repeats``, the decision against the best measured again beside
            this run: ``incumbent`` (its run), ``incumbent_metric`` and
            ``incumbent_repeats``, ``gain`` (median paired improvement), ``noise`` (its
            MAD), ``need`` (the threshold), ``pairs``.
        duration_s: seconds its evaluations ran (all repeats).
        worker: where it ran: ``local``, or the Dask worker's address (several, comma
            separated, when its repeats ran on different workers).
        queued_s: seconds its evaluations waited for a worker (all repeats).
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
    model_error: str | None = None
    flags: Mapping[str, str] = field(default_factory=dict)
    paired: Mapping[str, Any] | None = None
    worker: str | None = None
    queued_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", _frozen(self.metrics))
        object.__setattr__(self, "asi", _frozen(self.asi))
        object.__setattr__(self, "flags", _frozen(self.flags))
        if self.paired is not None:
            object.__setattr__(self, "paired", _frozen(self.paired))

    @property
    def kept(self) -> bool:
        return self.status == "keep"

    @property
    def is_baseline(self) -> bool:
        """The unchanged cell, or a segment's re-evaluated best: not a proposal."""
        return self.parent is None or bool(self.asi.get("baseline"))

    def to_json(self) -> dict[str, Any]:
        """The log line: pi-autoresearch's fields first, as pi spells them, then ours."""
        asi = dict(self.asi)
        if self.hypothesis:
            asi.setdefault("hypothesis", self.hypothesis)
        return {
            "run": self.run,
            "commit": self.commit or (code_id(self.code) if self.code else ""),
            "metric": finite(self.metric),
            "metrics": {k: v for k, v in self.metrics.items() if finite(v) is not None},
            "status": PI_STATUS[self.status],
            "description": self.description or self.hypothesis,
            "timestamp": self.timestamp,
            "segment": self.segment,
            "confidence": finite(self.confidence),
            "asi": asi,
            "outcome": self.status,
            "code": self.code,
            "parent": self.parent,
            "duration_s": finite(self.duration_s),
            "worker": self.worker,
            "queued_s": finite(self.queued_s),
            "tokens": self.tokens,
            "cost_usd": finite(self.cost_usd),
            "model": self.model,
            "error": self.error,
            "constraints": list(self.constraints),
            "repeats": [v for v in self.repeats if finite(v) is not None],
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "figures": list(self.figures),
            "model_error": self.model_error,
            "flags": dict(self.flags),
            "paired": _finite_values(self.paired),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, metric_name: str | None = None) -> RunRecord:
        """Read a run line of our own log (or replay recording).

        pi-autoresearch keeps the primary metric out of ``metrics``; it is merged back
        under ``metric_name`` so both kinds of log read the same. pi-autoresearch's own
        logs are read by the journal with pi's rules, then built with :meth:`from_pi`.
        """
        status = data.get("outcome", data.get("status", "discard"))
        tokens = finite(data.get("tokens"))
        return cls._build(
            data,
            metric=finite(data.get("metric")),
            status=status if status in STATUSES else "discard",
            segment=int(data.get("segment") or 0),
            metric_name=metric_name,
            code=str(data.get("code") or ""),
            parent=data.get("parent"),
            tokens=int(tokens) if tokens is not None else None,
            confidence=finite(data.get("confidence")),
            extra={
                "duration_s": finite(data.get("duration_s")),
                "worker": data.get("worker") if isinstance(data.get("worker"), str) else None,
                "queued_s": finite(data.get("queued_s")),
                "cost_usd": finite(data.get("cost_usd")),
                "model": data.get("model"),
                "error": data.get("error"),
                "constraints": tuple(data.get("constraints") or ()),
                "stdout_tail": str(data.get("stdout_tail") or ""),
                "stderr_tail": str(data.get("stderr_tail") or ""),
                "repeats": tuple(v for v in map(finite, data.get("repeats") or ()) if v is not None),
                "figures": tuple(data.get("figures") or ()),
                "model_error": data.get("model_error") if isinstance(data.get("model_error"), str) else None,
                "flags": {str(k): str(v) for k, v in (data.get("flags") or {}).items()},
                "paired": data.get("paired") if isinstance(data.get("paired"), Mapping) else None,
            },
        )

    @classmethod
    def from_pi(cls, data: Mapping[str, Any], *, segment: int, metric_name: str | None) -> RunRecord:
        """Read a run line of a pi-autoresearch log as pi 1.6 does (``jsonl.ts`` ``runFrom``).

        What pi does not find it defaults: no number ``metric`` is 0 (pi logs crashes at 0),
        a ``status`` other than discard, crash or checks_failed is keep, the segment is the
        one the config headers read so far make (the line's own ``segment`` is ignored).
        """
        status = data.get("status")
        return cls._build(
            data,
            metric=finite(data.get("metric")) or 0.0,
            status=status if status in ("discard", "crash", "checks_failed") else "keep",
            segment=segment,
            metric_name=metric_name,
            code="",
            parent=None,
            tokens=None,
            confidence=finite(data.get("confidence")),
            extra={},
        )

    @classmethod
    def _build(
        cls,
        data: Mapping[str, Any],
        *,
        metric: float | None,
        status: str,
        segment: int,
        metric_name: str | None,
        code: str,
        parent: Any,
        tokens: int | None,
        confidence: float | None,
        extra: Mapping[str, Any],
    ) -> RunRecord:
        raw = data.get("metrics")
        metrics = {
            str(k): number
            for k, v in (raw.items() if isinstance(raw, Mapping) else ())
            if (number := finite(v)) is not None
        }
        if metric is not None and metric_name and metric_name not in metrics:
            metrics = {metric_name: metric, **metrics}
        asi = data.get("asi")
        asi = asi if isinstance(asi, Mapping) else {}
        description = data.get("description")
        timestamp = finite(data.get("timestamp"))
        commit = data.get("commit")
        return cls(
            run=int(data["run"]),
            segment=segment,
            status=status,  # type: ignore[arg-type]
            metric=metric,
            metrics=metrics,
            code=code,
            hypothesis=str(asi.get("hypothesis") or ""),
            description=description if isinstance(description, str) else "",
            parent=parent,
            timestamp=int(timestamp) if timestamp is not None else 0,
            tokens=tokens,
            confidence=confidence,
            asi=asi,
            commit=commit if isinstance(commit, str) and commit else None,
            **extra,
        )


@dataclass(frozen=True)
class SegmentConfig:
    """A config header of the log: starts a segment with its rules (``hidden``: the
    metrics the model never sees; ``holdout``: the one shown beside the primary)."""

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
    hidden: tuple[str, ...] = ()
    holdout: str | None = None

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
            "hiddenMetrics": list(self.hidden),
            "holdoutMetric": self.holdout,
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
            hidden=tuple(data.get("hiddenMetrics") or ()),
            holdout=data.get("holdoutMetric") if isinstance(data.get("holdoutMetric"), str) else None,
        )
