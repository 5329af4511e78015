"""The loop: baseline, propose, evaluate, decide, log, repeat until a stop rule fires.

One blocking :meth:`Session.run`; :meth:`Session.start` runs it in a thread for the
notebook. Controls (stop, pause, steer, constraints) are thread-safe and take effect at
the next iteration boundary, except stop, which also cancels the model call and the
running candidates.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..isolation._evaluate import Evaluator, Outcome, WorkerSetup
from ..journal._journal import Journal, SessionLog
from ..proposers._prompt import INFERENCE_SYSTEM, inference_request, parse_task_draft, task_document
from ..proposers._propose import Proposal, ProposalContext, Proposer
from ..protocol._constraints import Constraint, parse_constraints
from ..protocol._errors import AutoresearchError, BaselineError, ConstraintError, OptionsError
from ..protocol._records import RunRecord, SegmentConfig
from ..protocol._task import Limits, TaskSpec
from ._decide import Verdict, best_of, confidence, judge
from ._events import (
    BaselineDone,
    ConstraintsChanged,
    Decision,
    EvaluationDone,
    EvaluationStarted,
    Event,
    ProposalReady,
    ProposalStarted,
    ReasoningDelta,
    SessionStarted,
    StateChanged,
    Stopped,
    Subscriber,
    TaskInferred,
)
from ._target import Target

if TYPE_CHECKING:
    import pandas

__all__ = ["STOP_REASONS", "Session"]

log = logging.getLogger("jupyter_autoresearch")

#: Why a loop can end.
STOP_REASONS = ("max-iterations", "plateau", "done", "max-cost", "max-time", "user", "interrupted", "error")
_TAIL = 4000


class _StopRequested(Exception):
    """Raised inside the loop (from a stream callback) to abandon the current step."""


class Session:
    """An autoresearch session: one benchmark cell, its task, its history on disk.

    Create one with :func:`jupyter_autoresearch.create_session` or load one with
    :func:`jupyter_autoresearch.load_session`; the constructor is internal.
    """

    def __init__(
        self,
        *,
        name: str,
        folder: Path,
        code: str,
        task: TaskSpec,
        limits: Limits,
        proposer: Proposer | None,
        evaluator: Evaluator | None,
        setup: WorkerSetup | None,
        constraints_given: bool = True,
        off_limits_given: bool = True,
        history: SessionLog | None = None,
        target: Target | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.folder = folder
        self.code = code
        self.task = task
        self.limits = limits
        self.proposer = proposer
        self.evaluator = evaluator
        self.setup = setup
        self.constraints_given = constraints_given
        self.off_limits_given = off_limits_given
        self.state = "idle" if proposer is not None else "stopped"
        self.warnings: tuple[str, ...] = history.warnings if history else ()
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.error: AutoresearchError | None = None
        self.iteration = 0
        self.spent_usd = 0.0
        self.started_at: float | None = None
        self.notes: list[str] = []
        self.read_only = history is not None and history.foreign
        self._runs: list[RunRecord] = list(history.runs) if history else []
        self._configs: list[SegmentConfig] = list(history.configs) if history else []
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._pending_constraints: tuple[str, ...] | None = None
        self._stop_reason = ("user", "stopped by the user")
        self._thread: threading.Thread | None = None
        self._journal: Journal | None = None

    # -- reading -------------------------------------------------------------------
    @property
    def runs(self) -> tuple[RunRecord, ...]:
        """Every run so far, oldest first (frozen records)."""
        with self._lock:
            return tuple(self._runs)

    @property
    def segment(self) -> int:
        with self._lock:
            if self._configs:
                return max(c.segment for c in self._configs)
            return self._runs[-1].segment if self._runs else 0

    def segment_runs(self, segment: int | None = None) -> tuple[RunRecord, ...]:
        wanted = self.segment if segment is None else segment
        return tuple(r for r in self.runs if r.segment == wanted)

    @property
    def best_run(self) -> RunRecord | None:
        """The best kept run of the current segment (the one later runs must beat)."""
        return best_of(self.segment_runs(), self.task.direction)

    @property
    def baseline_run(self) -> RunRecord | None:
        """The first run of the session (the unchanged cell)."""
        runs = self.runs
        return runs[0] if runs else None

    @property
    def total_cost_usd(self) -> float:
        return sum(r.cost_usd or 0.0 for r in self.runs)

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens or 0 for r in self.runs)

    def runs_dataframe(self) -> pandas.DataFrame:
        """The history as a pandas DataFrame, one row per run, metrics as columns."""
        import pandas as pd

        rows = []
        for r in self.runs:
            row: dict[str, Any] = {
                "run": r.run,
                "segment": r.segment,
                "status": r.status,
                "metric": r.metric,
            }
            row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
            row.update(
                hypothesis=r.hypothesis or r.description,
                parent=r.parent,
                error=r.error,
                duration_s=r.duration_s,
                tokens=r.tokens,
                cost_usd=r.cost_usd,
                confidence=r.confidence,
                code=r.code,
            )
            rows.append(row)
        return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()

    @property
    def history(self) -> pandas.DataFrame:
        """The runs as a DataFrame (same as :meth:`runs_dataframe`)."""
        return self.runs_dataframe()

    @property
    def best(self) -> RunRecord | None:
        """The best kept run of the current segment: ``.code``, ``.metrics``, ``.run``."""
        return self.best_run

    def plot(self, ax: Any = None) -> Any:
        """Plot the primary metric per run (kept runs marked, best so far, failures distinct).

        Args:
            ax: a matplotlib Axes to draw into; by default a new pyplot figure.

        Returns:
            The matplotlib Axes.
        """
        from ..views._plot import draw_metric

        if ax is None:
            import matplotlib.pyplot as plt

            ax = plt.figure(figsize=(8, 3.5)).add_subplot()
            ax.set_title(f"autoresearch session {self.name}")
        return draw_metric(ax, self.runs, self.task.metric, self.task.direction)

    def _repr_html_(self) -> str:
        from ..views._html import summary_html

        state = self.state if not self.stop_reason else f"stopped ({self.stop_reason})"
        return summary_html(self.name, self.task.metric, self.runs, self.best_run, state)

    def __repr__(self) -> str:
        best = self.best_run
        shown = f", best run {best.run}: {best.metric:.8g}" if best and best.metric is not None else ""
        return f"<Session {self.name!r}: {self.state}, {len(self.runs)} runs{shown}>"

    def summary(self) -> dict[str, Any]:
        """The object ``--json`` prints."""

        def brief(record: RunRecord | None, code: bool = False) -> dict[str, Any] | None:
            if record is None:
                return None
            data: dict[str, Any] = {
                "run": record.run,
                "metric": record.metric,
                "metrics": dict(record.metrics),
            }
            if code:
                data["code"] = record.code
            return data

        return {
            "session": self.name,
            "folder": str(self.folder),
            "stop_reason": self.stop_reason,
            "runs": len(self.runs),
            "baseline": brief(self.baseline_run),
            "best": brief(self.best_run, code=True),
        }

    # -- subscribers -----------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every event; returns a function that unsubscribes."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def _emit(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, type(event).__name__)

    # -- controls (any thread) -------------------------------------------------------
    def stop(self, *, interrupted: bool = False) -> None:
        """Stop the loop: the model call and running candidates are abandoned.

        Args:
            interrupted: log the stop as an interrupt (Ctrl-C, a kernel interrupt).
        """
        self._stop_reason = (
            ("interrupted", "interrupted (Ctrl-C or kernel interrupt)")
            if interrupted
            else ("user", "stopped by the user")
        )
        self._stop.set()
        self._running.set()
        if self.evaluator is not None and self.state in ("running", "paused"):
            self.evaluator.cancel()

    def _transition(self, expected: str, state: str) -> bool:
        with self._lock:  # the loop may be ending in another thread
            if self.state != expected:
                return False
            self.state = state
        return True

    def pause(self) -> None:
        """Pause before the next iteration."""
        if self._transition("running", "paused"):
            self._running.clear()
            self._emit(StateChanged(self.name, "paused"))

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        if self._transition("paused", "running"):
            self._running.set()
            self._emit(StateChanged(self.name, "running"))

    def steer(self, note: str) -> None:
        """Add a note from the analyst to every following prompt."""
        note = " ".join(note.split())
        if not note:
            raise OptionsError("the steering note is empty: write what the model should try or avoid")
        with self._lock:
            self.notes.append(note)

    def set_max_iterations(self, value: int | None) -> None:
        self.limits = replace(self.limits, max_iterations=value)

    def known_metrics(self) -> set[str]:
        return {name for r in self.runs for name in r.metrics}

    @property
    def pending_constraints(self) -> tuple[str, ...] | None:
        """Constraints set with :meth:`set_constraints` that the next iteration will apply."""
        with self._lock:
            return self._pending_constraints

    def check_names(self, constraint: Constraint) -> Constraint:
        """``constraint`` if every metric it names was reported by some run.

        Raises:
            ConstraintError: it names a metric no run reported.
        """
        known = self.known_metrics()
        unknown = sorted(constraint.names - known) if known else []
        if unknown:
            raise ConstraintError(
                f"constraint {constraint} names {', '.join(unknown)}, which no run "
                f"reported (known: {', '.join(sorted(known))})"
            )
        return constraint

    def set_constraints(self, texts: Sequence[str]) -> tuple[str, ...]:
        """Replace the constraint set; a new segment starts at the next iteration.

        Raises:
            ConstraintError: a constraint is malformed or names a metric no run reported.
        """
        parsed = parse_constraints(texts)
        for constraint in parsed:
            self.check_names(constraint)
        canonical = tuple(str(c) for c in parsed)
        with self._lock:
            self._pending_constraints = canonical
        return canonical

    def start(self) -> threading.Thread:
        """Run the loop in a background thread (the notebook's way); returns the thread."""
        if self._thread is not None and self._thread.is_alive():
            raise OptionsError(f"session {self.name} is already running")
        self._thread = threading.Thread(target=self._run_quietly, name=f"autoresearch-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        """Block until a loop started with :meth:`start` ends."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run_quietly(self) -> None:
        try:
            self.run()
        except AutoresearchError as err:
            self.error = err  # already reported through the Stopped event
        except Exception as err:
            log.exception("autoresearch session %s failed", self.name)
            self.error = AutoresearchError(f"{type(err).__name__}: {err}")

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Session:
        """Run the loop until a stop rule fires; returns the session.

        Raises:
            BaselineError: the unchanged cell crashes or prints no primary metric.
            ConstraintError: a constraint names a metric the baseline never printed.
            ProposalError: the model cannot be reached after retries.
        """
        if self.read_only or self.proposer is None or self.evaluator is None or self.setup is None:
            raise OptionsError(f"session {self.name} was loaded read-only and cannot run")
        with self._lock:
            if self.state in ("running", "paused"):
                raise OptionsError(f"session {self.name} is already running")
            self.state, self.stop_reason, self.stop_detail, self.error = "running", None, "", None
        self.iteration, self.spent_usd, self.started_at = 0, 0.0, time.monotonic()
        self._stop.clear()
        self._running.set()
        reason, detail = "error", ""
        try:
            journal = self._journal = Journal(self.folder)
            history = journal.read()
            with self._lock:
                self._runs, self._configs = list(history.runs), list(history.configs)
                # Every record carries the notes so far: the latest holds them all.
                noted = [r.asi["notes"] for r in self._runs if r.asi.get("notes")]
                self.notes = list(noted[-1]) if noted else self.notes
            self._emit(SessionStarted(self.name, self.task, self.proposer.model, bool(self._runs), len(self._runs)))
            self.evaluator.start(self.setup)
            if self._runs:
                self._resume()
            else:
                self._baseline()
            reason, detail = self._loop()
        except _StopRequested:
            reason, detail = self._stop_reason
        except KeyboardInterrupt:
            reason, detail = "interrupted", "interrupted (Ctrl-C or kernel interrupt)"
        except AutoresearchError as err:
            reason, detail = "error", str(err)
            self.error = err
            raise
        except Exception as err:
            log.exception("autoresearch session %s failed", self.name)
            reason, detail = "error", f"internal error: {type(err).__name__}: {err}"
            self.error = AutoresearchError(f"{detail} (please report it)")
            raise self.error from err
        finally:
            self.evaluator.close()
            if self._journal is not None:
                self._journal.close()
            self._journal = None
            with self._lock:
                self.state, self.stop_reason, self.stop_detail = "stopped", reason, detail
            self._emit(Stopped(self.name, reason, detail, self.best_run, len(self._runs)))
        return self

    def _loop(self) -> tuple[str, str]:
        while True:
            self._running.wait()
            if self._stop.is_set():
                return self._stop_reason
            self._apply_pending_constraints()
            reason = self._stop_rule()
            if reason:
                return reason
            done = self._iterate()
            if done is not None:
                return "done", done

    def _stop_rule(self) -> tuple[str, str] | None:
        limits = self.limits
        if limits.max_iterations is not None and self.iteration >= limits.max_iterations:
            return "max-iterations", f"reached --max-iterations {limits.max_iterations}"
        if limits.plateau:
            tail = 0
            for record in reversed(self.segment_runs()[1:]):
                if record.kept:
                    break
                tail += 1
            if tail >= limits.plateau:
                return "plateau", f"{tail} runs in a row without improvement (--plateau {limits.plateau})"
        if limits.max_cost is not None and self.spent_usd >= limits.max_cost:
            return "max-cost", f"spent ${self.spent_usd:.4f} of --max-cost ${limits.max_cost:g}"
        assert self.started_at is not None
        elapsed = time.monotonic() - self.started_at
        if limits.max_time is not None and elapsed >= limits.max_time:
            return "max-time", f"ran {elapsed:.0f}s of --max-time {limits.max_time:g}s"
        return None

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _StopRequested

    # -- baseline and resume ----------------------------------------------------------------
    def _evaluate(self, runs: Sequence[int], codes: Sequence[str]) -> list[list[Outcome]]:
        """Evaluate ``codes`` (of ``runs``) together, ``repeats`` times; outcomes per code."""
        assert self.evaluator is not None
        results: list[list[Outcome]] = [[] for _ in codes]
        repeats = self.limits.repeats
        for repeat in range(1, repeats + 1):
            for run in runs:
                self._emit(EvaluationStarted(self.name, run, repeat, repeats))
            self._check_stop()
            outcomes = self.evaluator.evaluate(codes)
            self._check_stop()
            for run, result, outcome in zip(runs, results, outcomes, strict=True):
                result.append(outcome)
                self._emit(
                    EvaluationDone(self.name, run, repeat, outcome.kind, dict(outcome.metrics), outcome.duration_s)
                )
            if all(o.kind != "ok" for o in outcomes):
                break  # every candidate failed: repeating cannot change that
        return results

    def _baseline(self) -> None:
        outcomes = self._evaluate([1], [self.code])[0]
        failed = next((o for o in outcomes if o.kind != "ok"), None)
        if failed is not None:
            what = "timed out" if failed.kind == "timeout" else "crashed"
            raise BaselineError.from_outcome(failed.kind, what, failed.stderr_tail or (failed.error or ""))
        metrics = outcomes[0].metrics
        written = {path for outcome in outcomes for path in outcome.written}
        if not self.off_limits_given:
            # Files the cell itself writes are its outputs, not data to protect.
            self.task = replace(self.task, off_limits=tuple(p for p in self.task.off_limits if p not in written))
        if self.task.metric is None:
            self._infer_task(metrics, written)
        self._protect()
        assert self.task.metric is not None
        if self.task.metric not in metrics:
            printed = ", ".join(metrics) or "no METRIC lines"
            problems = "; ".join(outcomes[0].problems)
            raise BaselineError(
                f"the baseline printed no METRIC {self.task.metric} (it printed {printed}"
                f"{'; ' + problems if problems else ''}); print it with "
                f'print(f"METRIC {self.task.metric}={{value}}") or jupyter_autoresearch.metric()',
                status="invalid",
                stderr_tail=outcomes[0].stderr_tail,
            )
        for constraint in self.task.constraints:
            unknown = sorted(constraint.names - metrics.keys())
            if unknown:
                raise ConstraintError(
                    f"constraint {constraint} names {', '.join(unknown)}, which the baseline "
                    f"never printed (it printed {', '.join(metrics)}); fix the name or print it"
                )
        self._write_config(0)
        verdict = judge(self.task, outcomes, None)
        status = "keep" if verdict.status == "keep" else verdict.status
        record = self._record(
            1,
            0,
            verdict,
            outcomes,
            code=self.code,
            parent=None,
            hypothesis="Baseline: the cell as written.",
            baseline=True,
            status=status,
        )
        self._emit(BaselineDone(self.name, record))
        self._emit(Decision(self.name, record, self.best_run))

    def _protect(self) -> None:
        """Hand the task's off-limits files to the evaluator when they changed."""
        assert self.evaluator is not None and self.setup is not None
        if tuple(self.task.off_limits) != tuple(self.setup.off_limits):
            self.setup = replace(self.setup, off_limits=tuple(self.task.off_limits))
            self.evaluator.protect(self.setup.off_limits)

    def _infer_task(self, metrics: Mapping[str, float], written: set[str]) -> None:
        assert self.proposer is not None and self.setup is not None
        files = sorted(
            str(p.relative_to(self.setup.folder))
            for p in self.setup.folder.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )[:50]
        answer = self.proposer.complete(
            INFERENCE_SYSTEM,
            inference_request(self.code, metrics, files),
            lambda text: self._emit(ReasoningDelta(self.name, 0, text)),
        )
        self.spent_usd += answer.cost_usd or 0.0
        draft = parse_task_draft(answer.text, metrics)
        constraints = self.task.constraint_texts or draft.constraints
        off_limits = self.task.off_limits or tuple(
            p for p in draft.off_limits if (self.setup.folder / p).exists() and p not in written
        )
        self.task = replace(
            self.task.with_constraints(constraints),
            metric=draft.metric,
            direction=draft.direction,
            objective=self.task.objective or draft.objective,
            secondary=draft.secondary,
            off_limits=off_limits,
        )
        self._emit(TaskInferred(self.name, self.task))

    def _resume(self) -> None:
        config = self._configs[-1] if self._configs else None
        if config is None:
            return
        if self.task.metric is None:
            self.task = replace(
                self.task,
                metric=config.metric_name,
                direction=config.direction,  # type: ignore[arg-type]
                objective=self.task.objective or config.objective,
                secondary=self.task.secondary or config.secondary,
            )
        elif (self.task.metric, self.task.direction) != (config.metric_name, config.direction):
            raise OptionsError(
                f"session {self.name} optimises {config.metric_name} ({config.direction} is "
                f"better), not {self.task.metric} ({self.task.direction}); choose another "
                "--session name to start a new session"
            )
        if not self.off_limits_given:
            self.task = replace(self.task, off_limits=config.off_limits)
        self._protect()
        if not self.constraints_given:
            self.task = self.task.with_constraints(list(config.constraints))
        elif set(self.task.constraint_texts) != set(config.constraints):
            self._new_segment(self.task.constraint_texts)

    def _apply_pending_constraints(self) -> None:
        with self._lock:
            pending, self._pending_constraints = self._pending_constraints, None
        if pending is not None and set(pending) != set(self.task.constraint_texts):
            self._new_segment(pending)

    def _new_segment(self, constraints: Sequence[str]) -> None:
        """Start a segment under new rules: re-evaluate the best code as its baseline."""
        parent = self._parent()
        segment = self.segment + 1
        self.task = self.task.with_constraints(list(constraints))
        self._write_config(segment)
        now_infeasible = tuple(
            r.run for r in self.runs if r.kept and not r.is_baseline and self.task.violations(r.metrics)
        )
        self._emit(ConstraintsChanged(self.name, self.task.constraint_texts, segment, now_infeasible))
        run = self._next_run()
        outcomes = self._evaluate([run], [parent.code])[0]
        verdict = judge(self.task, outcomes, None)
        record = self._record(
            run,
            segment,
            verdict,
            outcomes,
            code=parent.code,
            parent=parent.run,
            hypothesis=f"Run {parent.run} re-evaluated under the new constraints.",
            baseline=True,
        )
        self._emit(Decision(self.name, record, self.best_run))

    def _write_config(self, segment: int) -> None:
        assert self._journal is not None and self.task.metric is not None
        config = SegmentConfig(
            name=self.task.title,
            metric_name=self.task.metric,
            direction=self.task.direction,
            unit=self.task.unit,
            constraints=self.task.constraint_texts,
            off_limits=self.task.off_limits,
            objective=self.task.objective,
            secondary=self.task.secondary,
            segment=segment,
            timestamp=_now_ms(),
        )
        self._journal.append_config(config)
        with self._lock:
            self._configs.append(config)

    # -- one iteration -------------------------------------------------------------------
    def _parent(self) -> RunRecord:
        best = self.best_run
        if best is not None:
            return best
        segment = self.segment_runs()
        return segment[0] if segment else self.runs[-1]

    def _next_run(self) -> int:
        runs = self.runs
        return runs[-1].run + 1 if runs else 1

    def _context(self) -> ProposalContext:
        assert self._journal is not None
        parent = self._parent()
        document = task_document(self.task, self.runs, name=self.name, best=parent)
        with self._lock:
            notes = tuple(self.notes)
        return ProposalContext(
            task=self.task,
            history=self.runs,
            best=parent,
            segment=self.segment,
            ideas=tuple(self._journal.read_ideas()),
            notes=notes,
            document=document,
        )

    def _ask(self, run: int, context: ProposalContext) -> Proposal:
        assert self.proposer is not None
        self._emit(ProposalStarted(self.name, run, self.iteration))

        def on_delta(text: str) -> None:
            self._check_stop()
            self._emit(ReasoningDelta(self.name, run, text))

        proposal = self.proposer.propose(context, on_delta)
        self._emit(
            ProposalReady(
                self.name,
                run,
                proposal.hypothesis,
                proposal.code,
                proposal.problem,
                proposal.done,
                proposal.tokens,
                proposal.cost_usd,
            )
        )
        return proposal

    def _iterate(self) -> str | None:
        """One iteration (``parallel`` proposals); returns the DONE reason if the model gave one."""
        limits = self.limits
        width = limits.parallel
        if limits.max_iterations is not None:
            width = max(1, min(width, limits.max_iterations - self.iteration))
        first = self._next_run()
        context = self._context()
        if width == 1:
            proposals = [self._ask(first, context)]
        else:
            with concurrent.futures.ThreadPoolExecutor(width) as pool:
                proposals = list(pool.map(lambda i: self._ask(first + i, context), range(width)))
        self._check_stop()
        self.iteration += len(proposals)
        self.spent_usd += sum(p.cost_usd or 0.0 for p in proposals)
        done = next((p.done for p in proposals if p.done), None)
        runnable = [(first + i, p) for i, p in enumerate(proposals) if p.code and not p.problem]
        outcomes = self._evaluate([run for run, _ in runnable], [p.code for _, p in runnable]) if runnable else []
        results = dict(zip((run for run, _ in runnable), outcomes, strict=True))
        for offset, proposal in enumerate(proposals):
            run = first + offset
            if proposal.done and not proposal.code:
                continue  # DONE is not a run; it ends the loop below
            self._decide(run, proposal, context.best, results.get(run))
        assert self._journal is not None
        ideas = [idea for p in proposals for idea in p.ideas]
        if ideas:
            self._journal.add_ideas(ideas)
        return done if done and not runnable else None

    def _decide(self, run: int, proposal: Proposal, parent: RunRecord, outcomes: list[Outcome] | None) -> None:
        if outcomes is None:
            verdict = Verdict("invalid", None, {}, (), proposal.problem or "the answer has no code")
        else:
            verdict = judge(self.task, outcomes, self.best_run, self.limits.min_improvement)
        record = self._record(
            run,
            self.segment,
            verdict,
            outcomes or [],
            code=proposal.code,
            parent=parent.run,
            hypothesis=proposal.hypothesis,
            proposal=proposal,
        )
        self._emit(Decision(self.name, record, self.best_run))

    def _record(
        self,
        run: int,
        segment: int,
        verdict: Verdict,
        outcomes: Sequence[Outcome],
        *,
        code: str,
        parent: int | None,
        hypothesis: str,
        proposal: Proposal | None = None,
        baseline: bool = False,
        status: str | None = None,
    ) -> RunRecord:
        assert self._journal is not None
        last = outcomes[-1] if outcomes else None
        asi: dict[str, Any] = {"hypothesis": hypothesis}
        if baseline:
            asi["baseline"] = True
        if proposal is not None and (verdict.status == "invalid" or proposal.problem):
            asi["answer"] = proposal.text[-4000:]
        with self._lock:
            if self.notes:
                asi["notes"] = list(self.notes)
        figures = self._journal.save_figures(run, last.figures) if last and last.figures else ()
        record = RunRecord(
            run=run,
            segment=segment,
            status=status or verdict.status,  # type: ignore[arg-type]
            metric=verdict.metric,
            metrics=verdict.metrics,
            code=code,
            hypothesis=hypothesis,
            description=hypothesis,
            parent=parent,
            timestamp=_now_ms(),
            duration_s=round(sum(o.duration_s for o in outcomes), 4) if outcomes else None,
            tokens=proposal.tokens if proposal else None,
            cost_usd=proposal.cost_usd if proposal else None,
            model=proposal.model if proposal else None,
            error=verdict.error,
            constraints=self.task.constraint_texts,
            stdout_tail=last.stdout_tail[-_TAIL:] if last else "",
            stderr_tail=last.stderr_tail[-_TAIL:] if last else "",
            repeats=verdict.repeats,
            figures=figures,
            asi=asi,
        )
        segment_runs = [r for r in self.runs if r.segment == segment] + [record]
        record = replace(record, confidence=confidence(segment_runs, self.task.direction))
        self._journal.append_run(record)
        with self._lock:
            self._runs.append(record)
        best = self.best_run
        if best is not None and best.run == record.run:
            self._journal.write_best(record.code)
        self._journal.write_document(task_document(self.task, self.runs, name=self.name, best=best))
        return record


def _now_ms() -> int:
    return int(time.time() * 1000)
