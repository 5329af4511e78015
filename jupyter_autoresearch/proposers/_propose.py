"""Proposers turn the task and its history into the next candidate cell.

:class:`Proposer` is the extension point; :class:`LiteLLMProposer` asks a language
model (``jupyter_autoresearch._litellm``), :class:`ReplayProposer` replays a recorded log.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..journal._logfile import read_log
from ..protocol._answer import parse_answer
from ..protocol._errors import ProposalError
from ..protocol._records import RunRecord
from ..protocol._task import TaskSpec

__all__ = ["DeltaCallback", "Proposal", "ProposalContext", "Proposer", "ReplayProposer"]

#: Receives each piece of streamed model text as it arrives.
DeltaCallback = Callable[[str], None]


@dataclass(frozen=True)
class ProposalContext:
    """Everything a proposer may use to choose the next change.

    Attributes:
        task: the objective and its rules.
        history: every run of the session so far, oldest first.
        best: the best kept run of the current segment (the code to change).
        segment: the current constraint segment.
        ideas: the backlog of deferred ideas.
        notes: steering notes from the user, newest last.
        document: the task document (``prompt.md``).
    """

    task: TaskSpec
    history: tuple[RunRecord, ...]
    best: RunRecord
    segment: int = 0
    ideas: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    document: str = ""


@dataclass(frozen=True)
class Proposal:
    """One answer of a proposer, parsed.

    Attributes:
        text: the model's raw answer.
        hypothesis: why the change should help.
        code: the complete candidate cell ("" when there is none).
        done: the reason when the model says nothing more is worth trying.
        problem: why the answer cannot be run (the run becomes ``invalid``).
        tokens: prompt plus completion tokens, when known.
        cost_usd: the request's price, or None when the model's price is unknown.
    """

    text: str
    hypothesis: str = ""
    code: str = ""
    done: str | None = None
    ideas: tuple[str, ...] = ()
    problem: str | None = None
    tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    model: str = ""

    @classmethod
    def from_text(cls, text: str, **usage: object) -> Proposal:
        answer = parse_answer(text)
        return cls(
            text=text,
            hypothesis=answer.hypothesis,
            code=answer.code,
            done=answer.done,
            ideas=answer.ideas,
            problem=answer.problem,
            **usage,  # type: ignore[arg-type]
        )


class Proposer(ABC):
    """Proposes candidate cells. Implementations must be safe to call from a worker thread."""

    #: A label for logs and the panel (the litellm model string, ``replay:PATH``).
    model: str = ""

    @abstractmethod
    def propose(self, context: ProposalContext, on_delta: DeltaCallback | None = None) -> Proposal:
        """Return the next proposal; stream its text to ``on_delta`` while it arrives.

        Raises:
            ProposalError: the model cannot be asked at all (configuration, auth, network
                after retries). A malformed answer is not an error: it comes back with
                ``problem`` set.
        """

    def complete(self, system: str, user: str, on_delta: DeltaCallback | None = None) -> Proposal:
        """Answer a free-form request (used once, to infer the task)."""
        raise ProposalError(
            f"{self.model or type(self).__name__} cannot infer the objective; "
            "pass --maximize METRIC or --minimize METRIC"
        )


class ReplayProposer(Proposer):
    """Replays the proposals recorded in a session log, in order.

    Proposals are matched to segments: in segment ``s`` the replay serves the recorded
    proposals of segment ``s`` that the session has not used yet, then answers ``DONE``
    (with the reason of a recorded ``{"type": "done", "segment": s, "reason": ...}``
    line, if any). That keeps a resumed or re-constrained session in step with its
    recording.

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
        return Proposal.from_text(text, model=self.model)

    def complete(self, system: str, user: str, on_delta: DeltaCallback | None = None) -> Proposal:
        config = self.config
        if config is None or not config.metric_name:
            return super().complete(system, user, on_delta)
        lines = [
            f"Objective: {config.objective or config.name}",
            f"Primary: {config.metric_name} ({config.direction})",
        ]
        if config.secondary:
            lines.append(f"Secondary: {', '.join(config.secondary)}")
        lines += ["Constraints:", *(f"- {c}" for c in config.constraints)]
        lines += ["Off limits:", *(f"- {p}" for p in config.off_limits)]
        text = "\n".join(lines)
        if on_delta is not None:
            on_delta(text)
        return Proposal(text=text, model=self.model)


def _answer_text(hypothesis: str, code: str) -> str:
    return f"Hypothesis: {hypothesis}\n```python\n{code.rstrip()}\n```\n"
