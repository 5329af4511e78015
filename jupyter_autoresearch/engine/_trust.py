"""What the holdout and ``--same-output`` change in a candidate's run: hidden holdout metrics added, the
holdout's names refused from the candidate's own output, outputs that changed, and flags
for the user.

The checking itself happens in :class:`~..isolation._holdout.HoldoutWorker`; this module only
folds its findings into the run's outcomes and verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..isolation._evaluate import Outcome
from ..isolation._holdout import HoldoutResult, HoldoutSpec
from ..protocol._format import number
from ..protocol._hidden import HIDDEN_CHECK
from ..protocol._records import RunRecord
from ..protocol._task import TaskSpec
from ._decide import Refusal

__all__ = ["Measured", "export_refusal", "fold", "overfit_flag", "pick_holdout", "printed_flag", "strip_names"]


@dataclass(frozen=True)
class Measured:
    """A run's evaluations with what the checks found.

    Attributes:
        outcomes: its evaluations (holdout metrics added to the one checked).
        refused: the status and reason the checks give it, if they refuse it.
        flags: what the user should know, by kind.
        incumbent: the best measured again beside each evaluation (``--repeats``).
        exported: the variables it sent back (pickled), the reference for later runs.
        holdout: the metrics the holdout printed for it, in order.
    """

    outcomes: list[Outcome]
    refused: Refusal | None = None
    flags: Mapping[str, str] = field(default_factory=dict)
    incumbent: tuple[float | None, ...] = ()
    exported: bytes | None = None
    holdout: tuple[str, ...] = ()


def strip_names(outcomes: Sequence[Outcome], names: Iterable[str]) -> tuple[list[Outcome], list[str]]:
    """``outcomes`` without the metrics ``names`` (the holdout's), and those they printed."""
    hidden = set(names)
    printed = sorted({n for o in outcomes for n in o.metrics if n in hidden})
    if not printed:
        return list(outcomes), []
    kept = [replace(o, metrics={k: v for k, v in o.metrics.items() if k not in hidden}) for o in outcomes]
    return kept, printed


def export_refusal(outcome: Outcome, spec: HoldoutSpec) -> Refusal | None:
    """Why a candidate cannot be checked: its variables could not be sent, or it no
    longer defines one the checks need. What names the holdout reads to the model as a
    hidden check."""
    if outcome.export_problem:
        return "invalid", outcome.export_problem, f"variables a hidden check reads cannot be sent ({HIDDEN_CHECK})"
    if outcome.exported is None and spec.exports:
        return "invalid", "the evaluator sent back none of the variables the holdout and --same-output need", None
    if outcome.missing:
        same = [n for n in outcome.missing if n in spec.same_output]
        if same:
            return "invalid", f"the cell no longer defines {', '.join(same)} (--same-output compares it)", None
        missing = ", ".join(outcome.missing)
        return (
            "invalid",
            f"the cell no longer defines {missing}, which the holdout reads",
            f"the cell no longer defines {missing}, which a hidden check reads",
        )
    return None


def fold(
    outcomes: Sequence[Outcome],
    index: int,
    result: HoldoutResult,
    holdout_names: Iterable[str],
    flags: Mapping[str, str] | None = None,
) -> Measured:
    """A candidate's evaluations with the findings of the check of ``outcomes[index]``.

    Metrics the holdout prints are the holdout's alone: a candidate that prints one is
    ignored for it and flagged. A changed output refuses the run (``infeasible``, its
    first difference the reason); a failed holdout only flags it (a constraint on a
    holdout metric then finds the metric missing).
    """
    stripped, printed = strip_names(outcomes, {*holdout_names, *result.metrics})
    found = dict(flags or {})
    if printed:
        found["hidden_printed"] = printed_flag(printed)
    if result.error:
        found["holdout_failed"] = result.error
    checked = stripped[index]
    stripped[index] = replace(
        checked,
        metrics={**checked.metrics, **result.metrics},
        problems=(*checked.problems, *result.problems),
        touched=tuple(sorted({*checked.touched, *result.touched})),
    )
    refused: Refusal | None = None
    if result.differences:
        name, difference = next(iter(result.differences.items()))
        refused = ("infeasible", f"output {name} differs from the baseline: {difference}", None)
    return Measured(stripped, refused, found, exported=checked.exported, holdout=tuple(result.metrics))


def printed_flag(printed: Sequence[str]) -> str:
    return f"the cell printed {', '.join(printed)} itself, which only the holdout reports; ignored"


def pick_holdout(task: TaskSpec, names: Sequence[str]) -> str | None:
    """The holdout metric shown beside the primary one: ``holdout_<primary>`` if the
    holdout prints it, else the first metric it prints."""
    if not names:
        return None
    preferred = f"holdout_{task.metric}"
    return preferred if preferred in names else names[0]


def overfit_flag(task: TaskSpec, metrics: Mapping[str, float], previous: RunRecord | None) -> str | None:
    """Why a kept run is suspect: its primary metric beat the previous best, but its
    holdout metric (in ``metrics``) is worse than that best's."""
    holdout = task.holdout
    if holdout is None or previous is None:
        return None
    now, before = metrics.get(holdout), previous.metrics.get(holdout)
    if now is None or before is None or task.better(now, before) >= 0:
        return None
    return f"{task.metric} improved on run {previous.run}, but {holdout} got worse: {number(now)} vs {number(before)}"
