"""The task: what to optimise, under which rules, and when to stop."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from ._constraints import Constraint, parse_constraints
from ._errors import OptionsError
from ._metrics import check_metric_name

__all__ = ["Direction", "Limits", "TaskDraft", "TaskSpec", "Threshold", "direction_text", "parse_duration"]

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Threshold:
    """The noise threshold a run must beat: absolute (``0.01``) or relative (``1%``)."""

    value: float = 0.0
    percent: bool = False
    calibrated: bool = False  # measured by --calibrate, not given

    @classmethod
    def parse(cls, text: str | float) -> Threshold:
        """Read ``"0.01"`` or ``"1%"``.

        Raises:
            OptionsError: the text is not a non-negative number, optionally with ``%``.
        """
        raw = str(text).strip()
        percent = raw.endswith("%")
        try:
            value = float(raw.rstrip("%"))
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise OptionsError(f"--min-improvement {raw!r} is not a non-negative number; write e.g. 0.01 or 1%")
        return cls(value, percent)

    def amount(self, best: float) -> float:
        """The absolute improvement needed over ``best``."""
        return abs(best) * self.value / 100 if self.percent else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{self.value:g}"

    @property
    def source(self) -> str:
        """Where the threshold comes from, as a reason names it."""
        return f"the threshold {self} measured by --calibrate" if self.calibrated else f"--min-improvement {self}"


@dataclass(frozen=True)
class TaskSpec:
    """What the loop optimises.

    Attributes:
        metric: the primary metric's name (None until inferred).
        direction: ``"higher"`` or ``"lower"`` is better.
        constraints: the rules a run must satisfy to be kept.
        off_limits: glob patterns of files candidates must not change.
        objective: the task in prose, for the model and the reader.
        unit: the primary metric's unit, if any.
        secondary: other metrics worth showing.
        hidden: metrics the model never sees (``--hidden``, and what a holdout prints);
            the user sees them everywhere.
        holdout: the holdout metric shown beside the primary one (a hidden metric).
        hidden_files: glob patterns of files whose names and contents the model must
            not learn (holdout code and data).
    """

    metric: str | None = None
    direction: Direction = "higher"
    constraints: tuple[Constraint, ...] = ()
    off_limits: tuple[str, ...] = ()
    objective: str = ""
    unit: str = ""
    secondary: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    holdout: str | None = None
    hidden_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.metric is not None:
            check_metric_name(self.metric)
        if self.direction not in ("higher", "lower"):
            raise OptionsError(f"direction {self.direction!r} must be 'higher' or 'lower'")
        for name in self.hidden:
            check_metric_name(name)
        if self.metric is not None and self.metric in self.hidden:
            raise OptionsError(
                f"--hidden {self.metric}: the primary metric is what the model optimises, so it cannot be "
                "hidden; hide other metrics, or score on hidden data with --holdout",
                option="hidden",
            )

    def is_hidden(self, constraint: Constraint) -> bool:
        """Whether ``constraint`` reads a hidden metric (the model never sees it)."""
        return bool(constraint.names & set(self.hidden))

    def with_constraints(self, texts: tuple[str, ...] | list[str]) -> TaskSpec:
        """A copy of the task with the constraints replaced by ``texts`` (parsed)."""
        return replace(self, constraints=parse_constraints(texts))

    def violations(self, metrics: Mapping[str, float]) -> list[str]:
        """Why ``metrics`` break the constraints (empty when they satisfy all of them)."""
        return [v for c in self.constraints if (v := c.violation(metrics)) is not None]

    @property
    def constraint_texts(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.constraints)

    def better(self, a: float, b: float) -> float:
        """How much ``a`` improves on ``b`` in the task's direction (negative: worse)."""
        return a - b if self.direction == "higher" else b - a

    @property
    def verb(self) -> str:
        """``maximize`` or ``minimize``."""
        return "maximize" if self.direction == "higher" else "minimize"

    @property
    def direction_text(self) -> str:
        """``higher is better`` or ``lower is better``."""
        return direction_text(self.direction)

    @property
    def goal(self) -> str:
        """One line: ``maximize revenue subject to spend <= 30``."""
        rules = ", ".join(self.constraint_texts) or "no constraints"
        return f"{self.verb} {self.metric} subject to {rules}"

    @property
    def title(self) -> str:
        if self.objective:
            return self.objective.strip().splitlines()[0]
        return f"{self.verb.capitalize()} {self.metric}" if self.metric else "Infer the objective"


def direction_text(direction: str) -> str:
    """``higher is better`` or ``lower is better``: the one wording of a direction."""
    return f"{direction} is better"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")


def parse_duration(text: str | float | None) -> float | None:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"`` or ``"2h"``; None stays None."""
    if text is None:
        return None
    match = _DURATION.match(str(text))
    if not match:
        raise OptionsError(f"duration {text!r} is not understood; write e.g. 90s, 15m or 2h")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}[unit]


@dataclass(frozen=True)
class Limits:
    """When the loop stops and how runs are judged.

    Attributes:
        max_iterations: loop iterations after the baseline (None: no cap).
        plateau: stop after this many consecutive runs without a keep (0 or None: never).
        max_cost: stop once the model calls cost this many US dollars.
        max_time: stop after this many seconds of wall-clock time.
        min_improvement: how much a run must beat the best to be kept.
        repeats: evaluations per run; the run's metric is their median, and the best
            is measured again beside each challenger (paired).
        calibrate: runs of the unchanged cell before the loop, to measure the noise.
        parallel: proposals evaluated at a time.
        max_model_failures: stop after this many failed model requests in a row.
    """

    max_iterations: int | None = 20
    plateau: int | None = 20
    max_cost: float | None = None
    max_time: float | None = None
    min_improvement: Threshold = field(default_factory=Threshold)
    repeats: int = 1
    parallel: int = 1
    max_model_failures: int = 3
    calibrate: int = 0

    def __post_init__(self) -> None:
        for name in ("max_iterations", "plateau", "calibrate"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise OptionsError(f"--{name.replace('_', '-')} {value} must be 0 or more")
        for name in ("repeats", "parallel", "max_model_failures"):
            if getattr(self, name) < 1:
                raise OptionsError(f"--{name.replace('_', '-')} {getattr(self, name)} must be 1 or more")
        for name in ("max_cost", "max_time"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise OptionsError(f"--{name.replace('_', '-')} {value} must be positive")


@dataclass(frozen=True)
class TaskDraft:
    """The task a proposer inferred from the cell and its baseline metrics.

    Attributes:
        objective: what the analyst wants, in a sentence.
        metric: the primary metric (one the baseline printed).
        direction: ``"higher"`` or ``"lower"`` is better.
        secondary: other printed metrics worth showing.
        constraints: rules visible in the cell or its data, canonical text.
        off_limits: data files the cell reads, which candidates must not change.
        tokens: tokens the request used, when known.
        cost_usd: the request's price, when known.
    """

    objective: str
    metric: str
    direction: Direction
    secondary: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    off_limits: tuple[str, ...] = ()
    tokens: int | None = None
    cost_usd: float | None = None
