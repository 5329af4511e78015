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
from ..protocol._hidden import model_record, model_runs, model_task
from ..protocol._records import RunRecord
from ._calibrate import calibrate
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
from ._trust import Measured, export_refusal, fold, overfit_flag, printed_flag, strip_names

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["HIDDEN_NOT_ENFORCED", "Loop", "StopRequested"]

#: Without the sandbox, what --holdout-files (and the holdout's code) name is kept from the
#: model but not from a candidate that goes looking for it.
HIDDEN_NOT_ENFORCED = (
    "the holdout's code and files are not hidden from candidates without the sandbox: a candidate could read "
    "them (the model is never shown them)"
)


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
        self.paired_with: int | None = None  # the best measured again beside the last challengers
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
        if s.setup.hidden and not getattr(self.evaluator, "sandboxed", False):
            s._warn(HIDDEN_NOT_ENFORCED)
        if s.holdout_worker is not None:
            s.holdout_worker.on_notice = s._warn
            s.holdout_worker.start(s.holdout_setup or s.setup)
        self.proposer.check()  # before the baseline: a misconfigured model costs nothing
        if s._runs:
            resume(self)
        else:
            baseline(self)
        if s.limits.calibrate:
            calibrate(self)

    def done(self, reason: str) -> tuple[str, str]:
        """The proposer said DONE; on a rerun that added nothing, say the session is up to date."""
        s = self.session
        runs = s.runs
        if self.runs_before == 0 or len(runs) > self.runs_before:
            return "done", reason
        best = s.best
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
        measured = (
            self.measure([run for run, _ in runnable], [p.code for _, p in runnable], incumbent=s.best_run)
            if runnable
            else []
        )
        results = dict(zip((run for run, _ in runnable), measured, strict=True))
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

    def evaluate(
        self,
        runs: Sequence[int],
        codes: Sequence[str],
        *,
        incumbent: RunRecord | None = None,
        export: Sequence[str] = (),
    ) -> tuple[list[list[Outcome]], list[float | None]]:
        """Evaluate ``codes`` (of ``runs``) together, ``repeats`` times; outcomes per code.

        With repeats and an ``incumbent`` (the best), the incumbent is measured again in
        every round, before or after the challengers in turn, so each challenger meets it
        under the same conditions; its primary metric per round is returned too.
        """
        s = self.session
        results: list[list[Outcome]] = [[] for _ in codes]
        again: list[float | None] = []
        repeats = s.limits.repeats
        paired = incumbent if incumbent is not None and repeats > 1 and incumbent.code else None
        self.paired_with = paired.run if paired is not None else None
        for repeat in range(1, repeats + 1):
            for run in runs:
                s._emit(EvaluationStarted(s.name, run, repeat, repeats))
            self.check_stop()
            if paired is not None and repeat % 2 == 0:
                again.append(self.measure_again(paired))
            outcomes = self.evaluator.evaluate(codes, export=export) if export else self.evaluator.evaluate(codes)
            self.check_stop()
            if paired is not None and repeat % 2 == 1 and any(o.kind == "ok" for o in outcomes):
                again.append(self.measure_again(paired))
            for run, result, outcome in zip(runs, results, outcomes, strict=True):
                result.append(outcome)
                s._emit(EvaluationDone(s.name, run, repeat, outcome.kind, dict(outcome.metrics), outcome.duration_s))
            if all(o.kind != "ok" for o in outcomes):
                break  # every candidate failed: repeating cannot change that
        return results, again

    def measure_again(self, incumbent: RunRecord) -> float | None:
        """The incumbent's primary metric, measured once more (None if that failed)."""
        [outcome] = self.evaluator.evaluate([incumbent.code])
        self.check_stop()
        metric = self.session.task.metric
        return outcome.metrics.get(metric) if outcome.kind == "ok" and metric else None

    def measure(
        self, runs: Sequence[int], codes: Sequence[str], *, incumbent: RunRecord | None = None
    ) -> list[Measured]:
        """Evaluate ``codes`` and check each (``--holdout``, ``--same-output``) in the
        checking worker: what the checks found comes with each run's outcomes."""
        s = self.session
        worker = s.holdout_worker
        spec = worker.spec if worker is not None else None
        results, again = self.evaluate(runs, codes, incumbent=incumbent, export=spec.exports if spec else ())
        measured: list[Measured | None] = []
        pending: list[tuple[int, int, dict[str, str]]] = []  # (result, outcome checked, flags)
        for index, outcomes in enumerate(results):
            stripped, printed = strip_names(outcomes, s.holdout_names)
            results[index] = stripped
            flags = {"hidden_printed": printed_flag(printed)} if printed else {}
            first = next((i for i, o in enumerate(stripped) if o.kind == "ok"), None)
            refusal = export_refusal(stripped[first], spec) if spec is not None and first is not None else None
            if spec is None or first is None or refusal is not None:
                measured.append(Measured(stripped, refusal, flags, tuple(again)))
            else:
                measured.append(None)
                pending.append((index, first, flags))
        if pending:
            assert worker is not None
            checks = worker.check([results[i][first].exported for i, first, _ in pending])
            self.check_stop()
            for (index, first, flags), result in zip(pending, checks, strict=True):
                folded = fold(results[index], first, result, s.holdout_names, flags)
                measured[index] = replace(folded, incumbent=tuple(again))
        return [m for m in measured if m is not None]

    def decide(self, run: int, proposal: Proposal, parent: RunRecord, measured: Measured | None) -> None:
        s = self.session
        flags: dict[str, str] = {}
        if measured is None:
            verdict = Verdict("invalid", None, {}, (), proposal.problem or "the answer has no code")
        else:
            best = s.best_run
            # Paired only against the best it was measured beside (with --parallel, an
            # earlier run of the same batch may have just replaced it).
            paired = best is not None and best.run == self.paired_with
            verdict = judge(
                s.task,
                measured.outcomes,
                best,
                s.limits.min_improvement,
                refused=measured.refused,
                incumbent=measured.incumbent if paired else (),
            )
            verdict = self.checked(run, proposal.code, verdict)
            flags = dict(measured.flags)
            if verdict.status == "keep":
                overfit = overfit_flag(s.task, verdict.metrics, best)
                if overfit:
                    flags["overfit"] = overfit
        record = self.recorder.run(
            run,
            s.segment,
            verdict,
            measured.outcomes if measured is not None else [],
            code=proposal.code,
            parent=parent.run,
            hypothesis=proposal.hypothesis,
            proposal=proposal,
            flags=flags,
        )
        s._emit(Decision(s.name, record, s.best_run, s.task.holdout))

    def checked(self, run: int, code: str, verdict: Verdict) -> Verdict:
        """The verdict once the correctness checks ran, if the run would be kept."""
        s = self.session

        def started(check: Check) -> None:
            self.check_stop()
            s._emit(CheckStarted(s.name, run, check.label))

        return run_checks(self.evaluator, s.checks, code, verdict, started=started, after_each=self.check_stop)

    # -- helpers ---------------------------------------------------------------------------
    def context(self) -> ProposalContext:
        """What the proposer reads: the session as the model may see it (nothing hidden)."""
        s = self.session
        task = s.task
        parent = model_record(self.parent(), task)
        history = model_runs(s.runs, task)
        with s._lock:
            notes = tuple(s.notes)
        return ProposalContext(
            task=model_task(task),
            history=history,
            best=parent,
            segment=s.segment,
            ideas=tuple(self.journal.read_ideas()),
            notes=notes,
            document=task_document(model_task(task), history, name=s.name, best=parent),
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
        """Hand the task's off-limits files (and the hidden ones: a candidate must not
        change the holdout's data either) to the evaluator when they changed."""
        s = self.session
        assert s.setup is not None
        wanted = tuple(dict.fromkeys((*s.task.off_limits, *s.holdout_files)))
        if wanted != tuple(s.setup.off_limits):
            s.setup = replace(s.setup, off_limits=wanted)
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
