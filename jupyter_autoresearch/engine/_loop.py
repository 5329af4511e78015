"""The loop of one :meth:`Session.run`: start, then iterate until a stop rule fires.

Each iteration asks the proposer (``parallel`` requests at once), evaluates the
candidates together, judges each against the segment's best (a run it would keep must
pass the correctness checks too), and records it. A model request that fails costs its
iteration and is logged; only a fatal one (a refused key, an unknown model) or
``--max-model-failures`` of them in a row end the session.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..isolation._evaluate import Evaluator, Outcome
from ..journal._document import task_document
from ..journal._journal import Journal
from ..proposers._propose import Proposal, ProposalContext
from ..protocol._answer import syntax_problem
from ..protocol._checks import Check
from ..protocol._errors import EvaluationError, ProposalError
from ..protocol._format import number
from ..protocol._records import RunRecord
from ._checks import run_checks
from ._decide import Verdict, judge, stop_rule
from ._events import (
    CheckStarted,
    Decision,
    EvaluationDone,
    EvaluationStarted,
    ProposalFailed,
    ProposalReady,
    ProposalStarted,
    ReasoningDelta,
    SessionStarted,
)
from ._recorder import Recorder
from ._segments import apply_constraints, baseline, resume

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Loop", "StopRequested"]


class StopRequested(Exception):
    """Raised inside the loop (from a stream callback) to abandon the current step."""


class Loop:
    """One run of a session's loop; :meth:`run` returns why it stopped."""

    def __init__(self, session: Session, journal: Journal) -> None:
        assert session.proposer is not None and session.evaluator is not None and session.setup is not None
        self.session, self.journal = session, journal
        self.proposer, self.evaluator = session.proposer, session.evaluator
        self.recorder = Recorder(session, journal)
        self.failures = 0  # model requests that failed in a row
        self.runs_before = 0  # runs the log held when this run of the loop started
        self.estimate: float | None = None  # the most the next request could cost

    def run(self) -> tuple[str, str]:
        s = self.session
        self.start()
        while True:
            s._running.wait()
            if s._stop.is_set():
                return s._stop_reason
            self.apply_pending_constraints()
            assert s.started_at is not None
            width, context = self.width(), self.context()
            self.estimate = self.proposer.estimate_cost(context)
            s.next_cost_usd = None if self.estimate is None else self.estimate * width
            reason = stop_rule(
                s.limits,
                iteration=s.iteration,
                segment_runs=s.segment_runs(),
                spent_usd=s.spent_usd,
                elapsed_s=time.monotonic() - s.started_at,
                next_cost_usd=s.next_cost_usd,
            )
            if reason:
                return reason
            done = self.iterate(width, context)
            if done is not None:
                return self.done(done)

    def start(self) -> None:
        """Read the log, start the worker, check the model, then the baseline or resume."""
        s = self.session
        s.iteration, s.spent_usd, s.started_at = 0, 0.0, time.monotonic()
        history = self.journal.read()
        with s._lock:
            s._runs, s._configs, s._segment = list(history.runs), list(history.configs), None
            self.runs_before = len(s._runs)
            # Every record carries the notes so far: the latest holds them all.
            noted = [r.asi["notes"] for r in s._runs if r.asi.get("notes")]
            s.notes = list(noted[-1]) if noted else s.notes
        s._emit(SessionStarted(s.name, s.task, self.proposer.model, bool(s._runs), len(s._runs)))
        self.proposer.prepare()  # slow imports in the background, while the worker starts
        assert s.setup is not None
        if s.checks and type(self.evaluator).check is Evaluator.check:
            raise EvaluationError.cannot_check(type(self.evaluator).__name__)  # before any run
        self.evaluator.start(s.setup)
        self.proposer.check()  # before the baseline: a misconfigured model costs nothing
        if s._runs:
            resume(self)
        else:
            baseline(self)

    def done(self, reason: str) -> tuple[str, str]:
        """The proposer said DONE; on a rerun that added nothing, say the session is up to date."""
        s = self.session
        runs = s.runs
        if self.runs_before == 0 or len(runs) > self.runs_before:
            return "done", reason
        best = s.best_run
        shown = f"best run {best.run} {number(best.metric)}" if best is not None else "no kept run"
        return "up-to-date", f"session {s.name} is up to date: {len(runs)} runs, {shown}"

    # -- one iteration -------------------------------------------------------------------
    def width(self) -> int:
        """Requests of the next iteration: ``parallel``, but no more than the iterations left."""
        s, limits = self.session, self.session.limits
        if limits.max_iterations is not None:
            return max(1, min(limits.parallel, limits.max_iterations - s.iteration))
        return limits.parallel

    def iterate(self, width: int, context: ProposalContext) -> str | None:
        """Ask, evaluate, decide and record ``width`` proposals; the DONE reason, if any."""
        s, limits = self.session, self.session.limits
        first = self.next_run()
        if width == 1:
            answers = [self.ask(first, context)]
        else:
            with concurrent.futures.ThreadPoolExecutor(width) as pool:
                answers = list(pool.map(lambda i: self.ask(first + i, context), range(width)))
        self.check_stop()
        s.iteration += len(answers)
        runs: list[tuple[int, Proposal]] = []  # proposals that become runs, numbered in order
        for offset, answer in enumerate(answers):
            if isinstance(answer, ProposalError):
                self.failed(first + offset, answer)
                continue
            self.failures = 0
            s.spent_usd += answer.cost_usd or 0.0
            number = first + len(runs)
            s._emit(ProposalReady(s.name, number, answer.hypothesis, answer.code, answer.problem, answer.done,
                                  answer.tokens, answer.cost_usd))  # fmt: skip
            if answer.code or not answer.done:  # DONE is not a run; it ends the loop below
                runs.append((number, replace(answer, problem=answer.problem or syntax_problem(answer.code))))
        runnable = [(run, p) for run, p in runs if p.code and not p.problem]
        outcomes = self.evaluate([run for run, _ in runnable], [p.code for _, p in runnable]) if runnable else []
        results = dict(zip((run for run, _ in runnable), outcomes, strict=True))
        for run, proposal in runs:
            self.decide(run, proposal, context.best, results.get(run))
        ideas = [idea for a in answers if isinstance(a, Proposal) for idea in a.ideas]
        if ideas:
            self.journal.add_ideas(ideas)
        if self.failures >= limits.max_model_failures:
            last = answers[-1]
            raise ProposalError(
                f"{self.failures} model requests in a row failed (--max-model-failures "
                f"{limits.max_model_failures}); the last: {last}",
                model=self.proposer.model,
            )
        done = next((a.done for a in answers if isinstance(a, Proposal) and a.done), None)
        return done if done and not runnable else None

    def ask(self, run: int, context: ProposalContext) -> Proposal | ProposalError:
        """One request; a non-fatal failure comes back as the error, a fatal one is raised."""
        s = self.session
        s._emit(ProposalStarted(s.name, run, s.iteration, self.proposer.model, self.estimate))

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
        """Evaluate ``codes`` (of ``runs``) together, ``repeats`` times; outcomes per code."""
        s = self.session
        results: list[list[Outcome]] = [[] for _ in codes]
        repeats = s.limits.repeats
        for repeat in range(1, repeats + 1):
            for run in runs:
                s._emit(EvaluationStarted(s.name, run, repeat, repeats))
            self.check_stop()
            outcomes = self.evaluator.evaluate(codes)
            self.check_stop()
            for run, result, outcome in zip(runs, results, outcomes, strict=True):
                result.append(outcome)
                s._emit(EvaluationDone(s.name, run, repeat, outcome.kind, dict(outcome.metrics), outcome.duration_s))
            if all(o.kind != "ok" for o in outcomes):
                break  # every candidate failed: repeating cannot change that
        return results

    def decide(self, run: int, proposal: Proposal, parent: RunRecord, outcomes: list[Outcome] | None) -> None:
        s = self.session
        if outcomes is None:
            verdict = Verdict("invalid", None, {}, (), proposal.problem or "the answer has no code")
        else:
            verdict = self.checked(run, proposal.code, judge(s.task, outcomes, s.best_run, s.limits.min_improvement))
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

    def checked(self, run: int, code: str, verdict: Verdict) -> Verdict:
        """The verdict once the correctness checks ran, if the run would be kept."""
        s = self.session

        def started(check: Check) -> None:
            self.check_stop()
            s._emit(CheckStarted(s.name, run, check.label))

        return run_checks(self.evaluator, s.checks, code, verdict, started=started, after_each=self.check_stop)

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
            checks=s.checks,
        )

    def parent(self) -> RunRecord:
        """The code the next proposal changes: the segment's best, or its first run, or (in a
        segment no run met yet) the latest kept run of the session, the best it had before."""
        s = self.session
        best = s.best_run
        if best is not None:
            return best
        segment = s.segment_runs()
        if segment:
            return segment[0]
        runs = s.runs
        return next((r for r in reversed(runs) if r.kept), runs[-1])

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
            apply_constraints(self, pending)

    def check_stop(self) -> None:
        if self.session._stop.is_set():
            raise StopRequested
