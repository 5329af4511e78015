"""The loop of one :meth:`Session.run`: start, then keep runs in flight until a stop rule fires.

Up to ``parallel`` runs are in flight at once. Each asks the model (one request), is
evaluated (``repeats`` times, beside the best measured again when it repeats), checked (the
holdout, outputs that must not change) and decided on its own, against the segment's best at
the moment it is decided (a run it would keep must pass the correctness checks too); then the
next run starts. Runs are numbered in the order their requests were made and may be decided
in another order. A model request that fails costs its iteration and is logged; only a
fatal one (a refused key, an unknown model) or
``--max-model-failures`` of them in a row end the session.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

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
    EvaluationRunning,
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


@dataclass
class _Flight:
    """A run in flight: its number and the best it changes, then its model request, its
    proposal and its evaluations (with the best's, measured again beside it)."""

    number: int
    parent: RunRecord
    predicted: float | None = None  # the most its request could cost
    asking: concurrent.futures.Future[Proposal | ProposalError] | None = None
    proposal: Proposal | None = None
    evaluation: concurrent.futures.Future[Outcome] | None = None
    measuring: str = "candidate"  # what ``evaluation`` measures: the candidate, or the best beside it
    plan: list[str] = field(default_factory=list)  # the evaluations still to come, in order
    outcomes: list[Outcome] = field(default_factory=list)
    incumbent: RunRecord | None = None  # the best measured again beside it (with --repeats)
    again: list[float | None] = field(default_factory=list)  # the incumbent's metric per round

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
        self.abandoned = threading.Event()  # set when the loop ends: requests still streaming stop
        self.runs_before = 0  # runs the log held when this run of the loop started
        self.estimate: float | None = None  # the most the next request could cost

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
            s._runs, s._configs, s._segment = sorted(history.runs, key=lambda r: r.run), list(history.configs), None
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
        said_done: str | None = None  # the model's DONE: the loop ends once nothing is in flight
        pool = concurrent.futures.ThreadPoolExecutor(width, thread_name_prefix="autoresearch-model")
        try:
            while True:
                if s._stop.is_set():
                    return s._stop_reason
                if not flight:
                    if said_done is not None:
                        return self.done(said_done)  # counts the runs decided after the DONE too
                    if ending is not None:
                        return ending
                    s._running.wait()
                    if s._stop.is_set():
                        continue
                    self.apply_pending_constraints()
                while (
                    ending is None
                    and said_done is None
                    and len(flight) < width
                    and s._running.is_set()
                    and not self.rules_pending()
                ):
                    context = self.context()
                    rule = self.stop_rule(context, flight)
                    if rule is not None and rule[0] == "max-cost" and any(r.asking for r in flight):
                        break  # the requests in flight may cost less than they could: wait for them
                    ending = rule
                    if ending is None:
                        flight.append(self.begin(pool, flight, context))
                if not flight:
                    continue
                waiting = {run.waiting_on: run for run in flight}
                done, _ = concurrent.futures.wait(waiting, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    run = waiting[future]
                    finished, reason = self.advance(run)
                    if finished:
                        flight.remove(run)
                    said_done = said_done or reason
        finally:
            # Requests still streaming stop at their next token, however the loop ended
            # (Stop, Ctrl-C, an error), and those not started never start.
            self.abandoned.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def stop_rule(self, context: ProposalContext, flight: Sequence[_Flight]) -> tuple[str, str] | None:
        """Whether a new run may start; the cost cap counts the most its request could cost,
        and that of the requests still in flight."""
        s = self.session
        assert s.started_at is not None
        self.estimate = self.proposer.estimate_cost(context)
        asking = sum(run.predicted or 0.0 for run in flight if run.asking is not None)
        s.next_cost_usd = None if self.estimate is None else self.estimate + asking
        return stop_rule(
            s.limits,
            iteration=s.iteration,  # requests made, those in flight included
            segment_runs=s.segment_runs(),
            spent_usd=s.spent_usd,
            elapsed_s=time.monotonic() - s.started_at,
            next_cost_usd=s.next_cost_usd,
        )

    def rules_pending(self) -> bool:
        """New constraints wait for the runs in flight: those are judged under the old ones."""
        with self.session._lock:
            return self.session._pending_constraints is not None

    def begin(
        self, pool: concurrent.futures.ThreadPoolExecutor, flight: Sequence[_Flight], context: ProposalContext
    ) -> _Flight:
        """Start a run: its number, the best it changes, and its model request."""
        s = self.session
        number = max([self.next_run(), *(run.number + 1 for run in flight)])
        s.iteration += 1
        s._emit(ProposalStarted(s.name, number, s.iteration, self.proposer.model, self.estimate))
        run = _Flight(number, context.best, predicted=self.estimate)
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
        if run.measuring == "incumbent":
            metric = s.task.metric
            run.again.append(outcome.metrics.get(metric) if outcome.kind == "ok" and metric else None)
        else:
            run.outcomes.append(outcome)
            self.evaluated(run.number, len(run.outcomes), outcome)
            if outcome.kind != "ok":
                run.plan.clear()  # a failed candidate: repeating cannot change that
        if run.plan:
            self.submit(run)
            return False, None
        [measured] = self.inspect([run.outcomes], run.again)
        self.decide(run.number, run.proposal, run.parent, measured, beside=run.incumbent)
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
        repeats, best = s.limits.repeats, s.best_run
        # With repeats, the best is measured again beside the candidate in each round,
        # before or after it in turn, so the two meet the same conditions.
        run.incumbent = best if repeats > 1 and best is not None and best.code else None
        for repeat in range(1, repeats + 1):
            pair = ["candidate", "incumbent"] if repeat % 2 else ["incumbent", "candidate"]
            run.plan += pair if run.incumbent is not None else ["candidate"]
        self.submit(run)
        return False, None

    def submit(self, run: _Flight) -> None:
        """Start the next evaluation of ``run``'s plan: its code, or the best's beside it."""
        s = self.session
        assert run.proposal is not None
        run.measuring = run.plan.pop(0)
        if run.measuring == "incumbent":
            assert run.incumbent is not None
            run.evaluation = self.evaluator.submit(run.incumbent.code)
            return
        repeat = len(run.outcomes) + 1
        s._emit(EvaluationStarted(s.name, run.number, repeat, s.limits.repeats))
        run.evaluation = self.submit_code(run.proposal.code, self.running(run.number, repeat))

    def submit_code(self, code: str, on_start: Callable[[str], None]) -> concurrent.futures.Future[Outcome]:
        """Submit a candidate, asking for the variables the checks read, if any."""
        worker = self.session.holdout_worker
        export = worker.spec.exports if worker is not None else ()
        return self.evaluator.submit(code, on_start, export=export) if export else self.evaluator.submit(code, on_start)

    def evaluated(self, run: int, repeat: int, outcome: Outcome) -> None:
        """Say that an evaluation of ``run`` ended, where, and how long it ran and waited."""
        s = self.session
        s._emit(
            EvaluationDone(
                s.name, run, repeat, outcome.kind, dict(outcome.metrics), outcome.duration_s, outcome.worker,
                outcome.queued_s,
            )
        )  # fmt: skip

    def running(self, run: int, repeat: int) -> Callable[[str], None]:
        """The evaluator's ``on_start``: says where the candidate of ``run`` runs."""
        s = self.session
        return lambda worker: s._emit(EvaluationRunning(s.name, run, repeat, worker))

    def ask(self, run: int, context: ProposalContext) -> Proposal | ProposalError:
        """One request; a non-fatal failure comes back as the error, a fatal one is raised."""
        s = self.session

        def on_delta(text: str) -> None:
            self.check_stop()
            if self.abandoned.is_set():
                raise StopRequested  # the loop has ended without this request
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
        (the baseline, and a segment's re-measured best)."""
        s = self.session
        results: list[list[Outcome]] = [[] for _ in codes]
        repeats = s.limits.repeats
        for repeat in range(1, repeats + 1):
            futures = []
            for run, code in zip(runs, codes, strict=True):
                s._emit(EvaluationStarted(s.name, run, repeat, repeats))
                futures.append(self.submit_code(code, self.running(run, repeat)))
            outcomes = [future.result() for future in futures]
            self.check_stop()
            for run, result, outcome in zip(runs, results, outcomes, strict=True):
                result.append(outcome)
                self.evaluated(run, repeat, outcome)
            if all(o.kind != "ok" for o in outcomes):
                break  # every candidate failed: repeating cannot change that
        return results

    def measure(self, runs: Sequence[int], codes: Sequence[str]) -> list[Measured]:
        """Evaluate ``codes`` together and :meth:`inspect` what they did."""
        return self.inspect(self.evaluate(runs, codes), ())

    def inspect(self, results: list[list[Outcome]], again: Sequence[float | None]) -> list[Measured]:
        """Check each code's outcomes (``--holdout``, ``--same-output``) in the checking
        worker: what the checks found comes with each run's outcomes, as does the best's
        metric measured again beside them (``again``)."""
        s = self.session
        worker = s.holdout_worker
        spec = worker.spec if worker is not None else None
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

    def decide(
        self,
        run: int,
        proposal: Proposal,
        parent: RunRecord,
        measured: Measured | None,
        *,
        beside: RunRecord | None = None,
    ) -> None:
        """Judge and record a run; ``beside``: the best measured again in its rounds."""
        s = self.session
        flags: dict[str, str] = {}
        if measured is None:
            verdict = Verdict("invalid", None, {}, (), proposal.problem or "the answer has no code")
        else:
            best = s.best_run
            # Paired only against the best it was measured beside (with runs in flight at
            # once, another run may have replaced that best meanwhile).
            paired = best is not None and beside is not None and best.run == beside.run
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
