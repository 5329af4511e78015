"""Proposers turn the task and its history into the next candidate cell.

:class:`Proposer` is the extension point: a proposer owns its prompts and how it reads
its answers; the engine hands it a :class:`ProposalContext` and gets back a
:class:`Proposal`, and once, when no objective was given, asks it to draft the task
(:meth:`Proposer.infer_task`). :class:`~._litellm.LiteLLMProposer` asks a language model,
:class:`~._replay.ReplayProposer` replays a recorded log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..protocol._answer import parse_answer
from ..protocol._checks import Check
from ..protocol._errors import ProposalError
from ..protocol._records import RunRecord
from ..protocol._task import TaskDraft, TaskSpec

__all__ = ["DeltaCallback", "Proposal", "ProposalContext", "Proposer"]

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
        document: the session's task document (``prompt.md``).
        checks: the correctness checks a run that would be kept must pass.
    """

    task: TaskSpec
    history: tuple[RunRecord, ...]
    best: RunRecord
    segment: int = 0
    ideas: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    document: str = ""
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Proposal:
    """One answer of a proposer.

    Attributes:
        hypothesis: why the change should help.
        code: the complete candidate cell ("" when there is none).
        text: the raw answer, when there is one (kept with an unusable answer).
        done: the reason when the proposer says nothing more is worth trying.
        ideas: ideas worth trying later (they go to the backlog).
        problem: why the answer cannot be run (the run becomes ``invalid``).
        tokens: prompt plus completion tokens, when known.
        cost_usd: the request's price, or None when the model's price is unknown.
        model: the model that answered.
    """

    hypothesis: str = ""
    code: str = ""
    text: str = ""
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
        """Read an answer in the plain-text form (``Hypothesis:`` and a fenced block, or ``DONE:``)."""
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
    """Proposes candidate cells. Implementations must be safe to call from a worker thread.

    Only :meth:`propose` is required::

        class Doubler(Proposer):
            def propose(self, context, on_delta=None):
                code = context.best.code.replace("x = 1", "x = 2")
                return Proposal(hypothesis="a larger x", code=code)
    """

    #: A label for logs and the panel (the litellm model string, ``replay:PATH``).
    model: str = ""

    @abstractmethod
    def propose(self, context: ProposalContext, on_delta: DeltaCallback | None = None) -> Proposal:
        """Return the next proposal; stream its text to ``on_delta`` while it arrives.

        Raises:
            ProposalError: the proposer cannot answer. With ``fatal`` (a refused key, an
                unknown model) the session stops; otherwise the failure costs one
                iteration. A malformed answer is not an error: it comes back with
                ``problem`` set.
        """

    def infer_task(
        self,
        code: str,
        metrics: Mapping[str, float],
        files: Sequence[str],
        on_delta: DeltaCallback | None = None,
    ) -> TaskDraft:
        """Draft the task from the benchmark cell, its baseline metrics and the files beside it.

        Asked once, when no ``--maximize``/``--minimize`` was given.

        Raises:
            ProposalError: this proposer cannot infer a task (the default).
        """
        raise ProposalError.cannot_infer(self.model or type(self).__name__)

    def estimate_cost(self, context: ProposalContext) -> float | None:
        """The most :meth:`propose` with ``context`` could cost, in US dollars; None when unknown.

        The loop asks before each request and stops rather than cross ``--max-cost``.
        """
        return None

    def prepare(self) -> None:  # noqa: B027 - optional: most proposers need no warm-up
        """Start slow set-up work in the background (called as the session starts)."""

    def check(self) -> None:  # noqa: B027 - optional: most proposers cannot be misconfigured
        """Raise a fatal :class:`ProposalError` if asking cannot work (called before the baseline)."""
