"""Replay the proposals of a recorded session log, in order, with no model."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..journal._logfile import read_log
from ..protocol._constraints import parse_constraint
from ..protocol._errors import ProposalError
from ..protocol._task import TaskDraft
from ._propose import DeltaCallback, Proposal, ProposalContext, Proposer

__all__ = ["ReplayProposer"]


class ReplayProposer(Proposer):
    """Replays the proposals recorded in a session log, in order.

    Proposals are matched to segments: in segment ``s`` the replay serves the recorded
    proposals of segment ``s`` that the session has not used yet, then answers ``DONE``
    (with the reason of a recorded ``{"type": "done", "segment": s, "reason": ...}``
    line, if any). That keeps a resumed or re-constrained session in step with its
    recording. The task it infers is the recording's first config header.

    Args:
        path: a ``log.jsonl`` (ours), a session folder, or a recording in the same format.
    """

    def __init__(self, path: str | Path, *, label: str | None = None) -> None:
        self.path = Path(path)
        self.model = label or f"replay:{path}"
        recording = read_log(self.path)
        self.config = recording.configs[0] if recording.configs else None
        self.proposals = [r for r in recording.runs if not r.is_baseline]
        self.done = dict(recording.done)  # segment -> the recorded DONE reason
        self._served: dict[int, int] = {}  # segment -> proposals handed out by this replay
        self._lock = threading.Lock()

    def propose(self, context: ProposalContext, on_delta: DeltaCallback | None = None) -> Proposal:
        logged = sum(1 for r in context.history if r.segment == context.segment and not r.is_baseline)
        with self._lock:  # parallel iterations ask concurrently with the same history
            used = max(logged, self._served.get(context.segment, 0))
            self._served[context.segment] = used + 1
        mine = [r for r in self.proposals if r.segment == context.segment]
        if used < len(mine):
            record = mine[used]
            text = str(record.asi.get("answer") or _answer_text(record.hypothesis, record.code))
        else:
            reason = self.done.get(context.segment)
            text = f"DONE: {reason or f'the recording has no more proposals for segment {context.segment}'}"
        if on_delta is not None:
            on_delta(text)
        # The recording holds answers as the model gave them: read them the same way.
        return Proposal.from_text(text, model=self.model)

    def infer_task(
        self,
        code: str,
        metrics: Mapping[str, float],
        files: Sequence[str],
        on_delta: DeltaCallback | None = None,
    ) -> TaskDraft:
        config = self.config
        if config is None or not config.metric_name:
            return super().infer_task(code, metrics, files, on_delta)
        if config.metric_name not in metrics:
            raise ProposalError(
                f"the recording optimises {config.metric_name}, which the cell does not print "
                f"({', '.join(metrics) or 'nothing'}); pass --maximize METRIC or --minimize METRIC",
                model=self.model,
            )
        return TaskDraft(
            objective=config.objective or config.name,
            metric=config.metric_name,
            direction="lower" if config.direction == "lower" else "higher",
            secondary=tuple(m for m in config.secondary if m in metrics),
            # Rules on metrics this cell does not print could never be checked: left out.
            constraints=tuple(c for c in config.constraints if parse_constraint(c).names <= metrics.keys()),
            off_limits=tuple(config.off_limits),
        )


def _answer_text(hypothesis: str, code: str) -> str:
    return f"Hypothesis: {hypothesis}\n```python\n{code.rstrip()}\n```\n"
