"""The loop of one :meth:`Session.run`: start, then keep runs in flight until a stop rule fires.

Up to ``parallel`` runs are in flight at once. Each asks the model (one request), is
evaluated (``repeats`` times), and is decided on its own, against the segment's best at
the moment it is decided; then the next run starts. Runs are numbered in the order their
requests were made and may be decided in another order. A model request that fails costs
its iteration and is logged; only a fatal one (a refused key, an unknown model) or
``--max-model-failures`` of them in a row end the session.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..isolation._evaluate import Outcome
from ..journal._document import task_document
from ..journal._journal import Journal
from ..proposers._propose import Proposal, ProposalContext
from ..protocol._answer import syntax_problem
from ..protocol._errors import ProposalError
from ..protocol._records import RunRecord
from ._decide import Verdict, judge, stop_rule
from ._events import (
    Decision,
    EvaluationDone,
    EvaluationRunning,
    EvaluationStarted,
    ProposalFailed,
    ProposalReady,
    ProposalStarted,
    ReasoningDelta,
    SessionStarted,
)
from ._recorder import Recorder
from ._segments import baseline, new_segment, resume

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Loop", "StopRequested"]


class StopRequested(Exception):
    """Raised inside the loop (from a stream callback) to abandon the current step."""


@dataclass
class _Flight:
    """A run in flight: its number and the best it changes, then its model request, its
    proposal and its evaluations."""

    number: int
    parent: RunRecord
    asking: concurrent.futures.Future[Proposal | ProposalError] | None = None
    proposal: Proposal | None = None
    evaluation: concurrent.futures.Future[Outcome] | None = None
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def waiting_on(self) -> concurrent.futures.Future[Any]:
        future = self.asking or self.evaluation
        assert future is not None
        return future


class Loop:
    """One run of a session's loop; :meth:`run` returns why it stopped."""

    def __init__(self, session: Session, journal: Journal) -> None:
        assert session.proposer is not None and session.evaluator is not None and session.setup is not None
        self.session, self.journal = session, journal
        self.proposer, self.evaluator = session.proposer, session.evaluator
        self.recorder = Recorder(session, journal)
        self.failures = 0  # model requests that failed in a row

    def run(self) -> tuple[str, str]:
        self.start()
        return self.pipeline()

    def start(self) -> None:
        """Read the log, start the worker, check the model, then the baseline or resume."""
        s = self.session
        s.iteration, s.spent_usd, s.started_at = 0, 0.0, time.monotonic()
        history = self.journal.read()
        with s._lock:
            # In run order: runs in flight at once are logged in the order they were decided.
            s._runs, s._configs = sorted(history.runs, key=lambda r: r.run), list(history.configs)
            # Every record carries the notes so far: the latest holds them all.
            noted = [r.asi["notes"] for r in s._runs if r.asi.get("notes")]
            s.notes = list(noted[-1]) if noted else s.notes
        s._emit(SessionStarted(s.name, s.task, self.proposer.model, bool(s._runs), len(s._runs)))
        self.proposer.prepare()  # slow imports in the background, while the worker starts
        assert s.setup is not None
        self.evaluator.start(s.setup)
        self.proposer.check()  # before the baseline: a misconfigured model costs nothing
        if s._runs:
            resume(self)
        else:
            baseline(self)

    # -- runs in flight -------------------------------------------------------------------
    def pipeline(self) -> tuple[str, str]:
        """Keep up to ``parallel`` runs in flight; returns why the loop stopped.

        A stop rule or the model's DONE starts no new run and lets those in flight
        finish; Stop ends at once (the session cancels what runs); a pause or new
        constraints wait until nothing is in flight.
        """
        s = self.session
        width = s.limits.parallel
        flight: list[_Flight] = []
        ending: tuple[str, str] | None = None
        pool = concurrent.futures.ThreadPoolExecutor(width, thread_name_prefix="autoresearch-model")
        try:
            while True:
                if s._stop.is_set():
                    return s._stop_reason
                if not flight:
                    if ending is not None:
                        return ending
                    s._running.wait()
                    if s._stop.is_set():
                        continue
                    self.apply_pending_constraints()
                while ending is None and len(flight) < width and s._running.is_set() and not self.rules_pending():
                    ending = self.stop_rule()
                    if ending is None:
                        flight.append(self.begin(pool, flight))
                if not flight:
                    continue
                waiting = {run.waiting_on: run for run in flight}
                done, _ = concurrent.futures.wait(waiting, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    run = waiting[future]
                    finished, reason = self.advance(run)
                    if finished:
                        flight.remove(run)
                    if reason is not None and ending is None:
                        ending = ("done", reason)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a request still streaming stops at its next token

    def stop_rule(self) -> tuple[str, str] | None:
        s = self.session
        assert s.started_at is not None
        return stop_rule(
            s.limits,
            iteration=s.iteration,  # requests made, those in flight included
            segment_runs=s.segment_runs(),
            spent_usd=s.spent_usd,
            elapsed_s=time.monotonic() - s.started_at,
        )

    def rules_pending(self) -> bool:
        """New constraints wait for the runs in flight: those are judged under the old ones."""
        with self.session._lock:
            return self.session._pending_constraints is not None

    def begin(self, pool: concurrent.futures.ThreadPoolExecutor, flight: Sequence[_Flight]) -> _Flight:
        """Start a run: its number, the best it changes, and its model request."""
        s = self.session
        number = max([self.next_run(), *(run.number + 1 for run in flight)])
        s.iteration += 1
        context = self.context()
        s._emit(ProposalStarted(s.name, number, s.iteration))
        run = _Flight(number, context.best)
        run.asking = pool.submit(self.ask, number, context)
        return run

    def advance(self, run: _Flight) -> tuple[bool, str | None]:
        """Take the answer or outcome ``run`` waited for; whether the run is over, and
        the model's DONE reason when it said so without code."""
        s = self.session
        if run.asking is not None:
            answer = run.asking.result()  # a fatal model error, or a stop, ends the loop here
            run.asking = None
            return self.answered(run, answer)
        assert run.evaluation is not None and run.proposal is not None
        outcome = run.evaluation.result()
        run.evaluation = None
        if outcome.kind == "cancelled":
            self.check_stop()  # stopped: nothing is decided
            outcome = replace(outcome, kind="crash")
        run.outcomes.append(outcome)
        s._emit(
            EvaluationDone(
                s.name,
                run.number,
                len(run.outcomes),
                outcome.kind,
                dict(outcome.metrics),
                outcome.duration_s,
                outcome.worker,
                outcome.queued_s,
            )
        )
        if outcome.kind == "ok" and len(run.outcomes) < s.limits.repeats:
            self.submit(run)
            return False, None
        self.decide(run.number, run.proposal, run.parent, run.outcomes)
        return True, None

    def answered(self, run: _Flight, answer: Proposal | ProposalError) -> tuple[bool, str | None]:
        s = self.session
        if isinstance(answer, ProposalError):
            self.failed(run.number, answer)
            if self.failures >= s.limits.max_model_failures:
                raise ProposalError(
                    f"{self.failures} model requests in a row failed (--max-model-failures "
                    f"{s.limits.max_model_failures}); the last: {answer}",
                    model=self.proposer.model,
                )
            return True, None
        self.failures = 0
        s.spent_usd += answer.cost_usd or 0.0
        s._emit(ProposalReady(s.name, run.number, answer.hypothesis, answer.code, answer.problem, answer.done,
                              answer.tokens, answer.cost_usd))  # fmt: skip
        if answer.ideas:
            self.journal.add_ideas(list(answer.ideas))
        if answer.done and not answer.code:
            return True, answer.done  # DONE is not a run; no new run starts after it
        proposal = replace(answer, problem=answer.problem or syntax_problem(answer.code))
        if not proposal.code or proposal.problem:
            self.decide(run.number, proposal, run.parent, None)
            return True, None
        run.proposal = proposal
        self.submit(run)
        return False, None

    def submit(self, run: _Flight) -> None:
        """Start the next evaluation of ``run``'s code."""
        s = self.session
        assert run.proposal is not None
        repeat = len(run.outcomes) + 1
        s._emit(EvaluationStarted(s.name, run.number, repeat, s.limits.repeats))
        run.evaluation = self.evaluator.submit(run.proposal.code, self.running(run.number, repeat))

    def running(self, run: int, repeat: int) -> Callable[[str], None]:
        """The evaluator's ``on_start``: says where the candidate of ``run`` runs."""
        s = self.session
        return lambda worker: s._emit(EvaluationRunning(s.name, run, repeat, worker))

    def ask(self, run: int, context: ProposalContext) -> Proposal | ProposalError:
        """One request; a non-fatal failure comes back as the error, a fatal one is raised."""
        s = self.session

        def on_delta(text: str) -> None:
            self.check_stop()
            s._emit(ReasoningDelta(s.name, run, text))

        try:
            return self.proposer.propose(context, on_delta)
        except ProposalError as err:
            if err.fatal:
                raise
            return err

    def failed(self, run: int, error: ProposalError) -> None:
        self.failures += 1
        s = self.session
        self.recorder.failure(str(error), model=self.proposer.model)
        s._emit(ProposalFailed(s.name, run, str(error), self.failures, s.limits.max_model_failures))

    def evaluate(self, runs: Sequence[int], codes: Sequence[str]) -> list[list[Outcome]]:
        """Evaluate ``codes`` (of ``runs``) together, ``repeats`` times; outcomes per code
        (the baseline, and a new segment's re-measured best)."""
        s = self.session
        results: list[list[Outcome]] = [[] for _ in codes]
        repeats = s.limits.repeats
        for repeat in range(1, repeats + 1):
            futures = []
            for run, code in zip(runs, codes, strict=True):
                s._emit(EvaluationStarted(s.name, run, repeat, repeats))
                futures.append(self.evaluator.submit(code, self.running(run, repeat)))
            outcomes = [future.result() for future in futures]
            self.check_stop()
            for run, result, outcome in zip(runs, results, outcomes, strict=True):
                result.append(outcome)
                s._emit(
                    EvaluationDone(
                        s.name, run, repeat, outcome.kind, dict(outcome.metrics), outcome.duration_s,
                        outcome.worker, outcome.queued_s,
                    )
                )  # fmt: skip
            if all(o.kind != "ok" for o in outcomes):
                break  # every candidate failed: repeating cannot change that
        return results

    def decide(self, run: int, proposal: Proposal, parent: RunRecord, outcomes: list[Outcome] | None) -> None:
        s = self.session
        if outcomes is None:
            verdict = Verdict("invalid", None, {}, (), proposal.problem or "the answer has no code")
        else:
            verdict = judge(s.task, outcomes, s.best_run, s.limits.min_improvement)
        record = self.recorder.run(
            run,
            s.segment,
            verdict,
            outcomes or [],
            code=proposal.code,
            parent=parent.run,
            hypothesis=proposal.hypothesis,
            proposal=proposal,
        )
        s._emit(Decision(s.name, record, s.best_run))

    # -- helpers ---------------------------------------------------------------------------
    def context(self) -> ProposalContext:
        s = self.session
        parent = self.parent()
        with s._lock:
            notes = tuple(s.notes)
        return ProposalContext(
            task=s.task,
            history=s.runs,
            best=parent,
            segment=s.segment,
            ideas=tuple(self.journal.read_ideas()),
            notes=notes,
            document=task_document(s.task, s.runs, name=s.name, best=parent),
        )

    def parent(self) -> RunRecord:
        """The code the next proposal changes: the segment's best, or its baseline."""
        s = self.session
        best = s.best_run
        if best is not None:
            return best
        segment = s.segment_runs()
        return segment[0] if segment else s.runs[-1]

    def next_run(self) -> int:
        runs = self.session.runs
        return runs[-1].run + 1 if runs else 1

    def protect(self) -> None:
        """Hand the task's off-limits files to the evaluator when they changed."""
        s = self.session
        assert s.setup is not None
        if tuple(s.task.off_limits) != tuple(s.setup.off_limits):
            s.setup = replace(s.setup, off_limits=tuple(s.task.off_limits))
            self.evaluator.protect(s.setup.off_limits)

    def apply_pending_constraints(self) -> None:
        s = self.session
        with s._lock:
            pending, s._pending_constraints = s._pending_constraints, None
        if pending is not None and set(pending) != set(s.task.constraints):
            new_segment(self, pending)

    def check_stop(self) -> None:
        if self.session._stop.is_set():
            raise StopRequested
