"""Proposers turn the task and its history into the next candidate cell.

:class:`Proposer` is the extension point; :class:`LiteLLMProposer` asks a language
model (``jupyter_autoresearch._litellm``), :class:`ReplayProposer` replays a recorded log.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._answer import parse_answer
from ._errors import JournalError, ProposalError
from ._records import RunRecord
from ._task import TaskSpec

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
    recorded: Mapping[str, object] = field(default_factory=dict)

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
        self.config: dict[str, object] = {}
        self.proposals: list[RunRecord] = []
        self.done: dict[int, str] = {}  # segment -> the recorded DONE reason
        self._served: dict[int, int] = {}  # segment -> proposals handed out by this replay
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        path = self.path / "log.jsonl" if self.path.is_dir() else self.path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ProposalError(
                f"cannot read the recording {path}: {err.strerror}; check the path after replay:"
            ) from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    break  # a recording cut short by a kill: its last line is partial
                raise JournalError(f"{path}:{number} is not valid JSON; repair or remove that line") from None
            if data.get("type") == "config":
                self.config = self.config or data
            elif data.get("type") == "done":
                self.done[int(data.get("segment", 0))] = str(data.get("reason") or "")
            elif "run" in data:
                record = RunRecord.from_json(data)
                if not record.is_baseline:
                    self.proposals.append(record)

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
            record = None
            reason = self.done.get(context.segment)
            text = f"DONE: {reason or f'the recording has no more proposals for segment {context.segment}'}"
        if on_delta is not None:
            on_delta(text)
        return Proposal.from_text(text, model=self.model, recorded=record.asi if record else {})

    def complete(self, system: str, user: str, on_delta: DeltaCallback | None = None) -> Proposal:
        config = self.config
        if not config.get("metricName"):
            return super().complete(system, user, on_delta)
        verb = "lower" if config.get("bestDirection") == "lower" else "higher"
        lines = [
            f"Objective: {config.get('objective') or config.get('name') or ''}",
            f"Primary: {config['metricName']} ({verb})",
        ]
        if config.get("secondaryMetrics"):
            lines.append(f"Secondary: {', '.join(map(str, config['secondaryMetrics']))}")  # type: ignore[call-overload]
        lines.append("Constraints:")
        lines += [f"- {c}" for c in config.get("constraints") or []]  # type: ignore[attr-defined]
        lines.append("Off limits:")
        lines += [f"- {p}" for p in config.get("offLimits") or []]  # type: ignore[attr-defined]
        text = "\n".join(lines)
        if on_delta is not None:
            on_delta(text)
        return Proposal(text=text, model=self.model)


def _answer_text(hypothesis: str, code: str) -> str:
    return f"Hypothesis: {hypothesis}\n```python\n{code.rstrip()}\n```\n"
