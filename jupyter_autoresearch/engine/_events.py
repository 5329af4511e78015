"""Events the engine publishes, in order, to its subscribers (panel, CLI, frontend bridge)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..protocol._calibration import Spread
from ..protocol._records import RunRecord
from ..protocol._task import TaskSpec, Threshold

__all__ = [
    "BaselineDone",
    "Calibrated",
    "Calibrating",
    "CheckStarted",
    "ConstraintsChanged",
    "Decision",
    "EvaluationDone",
    "EvaluationRunning",
    "EvaluationStarted",
    "Event",
    "Notice",
    "ProposalFailed",
    "ProposalReady",
    "ProposalStarted",
    "ReasoningDelta",
    "SessionStarted",
    "StateChanged",
    "Stopped",
    "Subscriber",
    "TaskInferred",
]


@dataclass(frozen=True)
class Event:
    """Base of every event; ``session`` is the session's name."""

    session: str


@dataclass(frozen=True)
class SessionStarted(Event):
    task: TaskSpec
    model: str
    resumed: bool
    runs: int


@dataclass(frozen=True)
class TaskInferred(Event):
    """The model read the cell and its baseline metrics and drafted the task."""

    task: TaskSpec


@dataclass(frozen=True)
class BaselineDone(Event):
    record: RunRecord


@dataclass(frozen=True)
class ProposalStarted(Event):
    """A model request begins; ``predicted_usd`` is the most it could cost, when known."""

    run: int
    iteration: int
    model: str = ""
    predicted_usd: float | None = None


@dataclass(frozen=True)
class ReasoningDelta(Event):
    run: int
    text: str


@dataclass(frozen=True)
class ProposalReady(Event):
    run: int
    hypothesis: str
    code: str
    problem: str | None
    done: str | None
    tokens: int | None
    cost_usd: float | None


@dataclass(frozen=True)
class ProposalFailed(Event):
    """A model request failed or its reply was cut off: logged, no run made.

    ``run`` is the number the run would have had; ``consecutive`` counts the failures in
    a row, and the session stops when it reaches ``limit`` (``--max-model-failures``).
    """

    run: int
    reason: str
    consecutive: int
    limit: int


@dataclass(frozen=True)
class EvaluationStarted(Event):
    run: int
    repeat: int
    repeats: int


@dataclass(frozen=True)
class EvaluationRunning(Event):
    """A candidate started running on ``worker`` (``local``, or a Dask worker's address)."""

    run: int
    repeat: int
    worker: str


@dataclass(frozen=True)
class EvaluationDone(Event):
    run: int
    repeat: int
    kind: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    worker: str = ""
    queued_s: float = 0.0


@dataclass(frozen=True)
class CheckStarted(Event):
    """A correctness check of a run that would be kept began; ``label`` names it."""

    run: int
    label: str


@dataclass(frozen=True)
class Decision(Event):
    """A run was judged and logged; ``best`` is the segment's best after it, and
    ``holdout`` the holdout metric to show beside the primary one, if there is one."""

    record: RunRecord
    best: RunRecord | None
    holdout: str | None = None


@dataclass(frozen=True)
class ConstraintsChanged(Event):
    """The loop continues under other constraints: in a new segment, or (``again``) in
    one it made earlier under the same rules.

    ``now_infeasible`` lists kept runs the rules refuse; ``winner`` is the run re-measured
    as the segment's best (the best run that meets the rules by its recorded metrics, if
    it is not in the segment yet); ``best`` is the segment's best so far.
    """

    constraints: tuple[str, ...]
    segment: int
    now_infeasible: tuple[int, ...] = ()
    winner: int | None = None
    again: bool = False
    best: RunRecord | None = None


@dataclass(frozen=True)
class StateChanged(Event):
    """``running`` or ``paused`` (``stopped`` comes as :class:`Stopped`)."""

    state: str


@dataclass(frozen=True)
class Notice(Event):
    """One line the user should read that does not stop the loop (the sandbox is off,
    the log was repaired)."""

    text: str


@dataclass(frozen=True)
class Calibrating(Event):
    """The unchanged cell is about to run ``runs`` times to measure the noise."""

    runs: int


@dataclass(frozen=True)
class Calibrated(Event):
    """The noise was measured: each metric's spread, and the keep threshold it set
    (None when ``--min-improvement`` was given, which then stays)."""

    metric: str
    spreads: Mapping[str, Spread]
    threshold: Threshold | None


@dataclass(frozen=True)
class Stopped(Event):
    """The loop ended; ``reason`` is why (see ``STOP_REASONS``); ``best`` is the session's
    best (by the holdout metric with ``--select-by holdout``)."""

    reason: str
    detail: str
    best: RunRecord | None
    runs: int


Subscriber = Callable[[Event], None]
