"""What the model may read of a session: the task, the runs and the reasons, without
anything hidden from it.

Hidden metrics (``--hidden``, and every metric a holdout prints) and hidden files (the
holdout's code and data) are shown to the user everywhere, but the model reads the
session only through these views: the proposer's context and the task document
(``prompt.md``) are built from them, so no proposer, ours or a custom one, can see them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import replace

from ._constraints import parse_constraint
from ._errors import ConstraintError
from ._metrics import METRIC_LINE
from ._records import RunRecord
from ._task import TaskSpec

__all__ = ["HIDDEN_CHECK", "hidden_path", "model_record", "model_runs", "model_task", "without_metric_lines"]

#: How a refusal by a hidden check reads to the model.
HIDDEN_CHECK = "refused by a hidden check"


def hidden_path(path: str, patterns: Iterable[str]) -> bool:
    """Whether ``path`` (relative to the target's folder) matches a hidden glob."""
    normal = path.replace("\\", "/").removeprefix("./")
    return any(fnmatch.fnmatchcase(normal, p.removeprefix("./")) or normal == p for p in patterns)


def model_task(task: TaskSpec) -> TaskSpec:
    """The task as the model reads it: no hidden metric, constraint or file."""
    return replace(
        task,
        constraints=tuple(c for c in task.constraints if not task.is_hidden(c)),
        secondary=tuple(m for m in task.secondary if m not in task.hidden),
        off_limits=tuple(p for p in task.off_limits if not hidden_path(p, task.hidden_files)),
        hidden=(),
        holdout=None,
        hidden_files=(),
    )


def without_metric_lines(text: str, names: Iterable[str]) -> str:
    """``text`` without the METRIC lines of ``names``."""
    hidden = set(names)
    if not hidden or "METRIC" not in text:
        return text
    kept = []
    for line in text.splitlines(keepends=True):
        match = METRIC_LINE.match(line.rstrip("\r\n"))
        if match is None or match.group(1) not in hidden:
            kept.append(line)
    return "".join(kept)


def model_record(record: RunRecord, task: TaskSpec) -> RunRecord:
    """A run as the model reads it: hidden metrics, flags and hidden reasons left out."""
    hidden = set(task.hidden)
    return replace(
        record,
        metrics={k: v for k, v in record.metrics.items() if k not in hidden},
        error=record.model_error or record.error,
        model_error=None,
        flags={},
        constraints=tuple(c for c in record.constraints if not _names_hidden(c, hidden)),
        stdout_tail=without_metric_lines(record.stdout_tail, hidden),
        stderr_tail=without_metric_lines(record.stderr_tail, hidden),
    )


def model_runs(runs: Sequence[RunRecord], task: TaskSpec) -> tuple[RunRecord, ...]:
    """Every run as the model reads it."""
    if not task.hidden and not task.hidden_files and not any(r.model_error or r.flags for r in runs):
        return tuple(runs)
    return tuple(model_record(r, task) for r in runs)


def _names_hidden(constraint: str, hidden: set[str]) -> bool:
    try:
        return bool(parse_constraint(constraint).names & hidden)
    except ConstraintError:
        return False
