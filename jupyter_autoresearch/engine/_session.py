"""A session: one benchmark cell, its task, its history on disk, and the controls of its loop.

One blocking :meth:`Session.run` (the loop itself is :mod:`._loop`); :meth:`Session.start`
runs it in a thread for the notebook. Controls (stop, pause, steer, constraints) are
thread-safe and take effect at the next iteration boundary, except stop, which also
cancels the model call and the running candidates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..isolation._evaluate import Evaluator, WorkerSetup
from ..isolation._holdout import HoldoutWorker
from ..journal._journal import Journal, SessionLog
from ..proposers._propose import Proposer
from ..protocol._checks import Check
from ..protocol._constraints import Constraint, parse_constraints
from ..protocol._errors import AutoresearchError, ConstraintError, OptionsError, SessionError
from ..protocol._format import number
from ..protocol._records import RunRecord, SegmentConfig
from ..protocol._stop import StopLine
from ..protocol._task import Limits, TaskSpec
from ._decide import STOP_REASONS, best_of, select_best
from ._events import Event, Notice, StateChanged, Stopped, Subscriber
from ._loop import Loop, StopRequested
from ._recorder import now_ms
from ._target import Target

if TYPE_CHECKING:
    import pandas

__all__ = ["STOP_REASONS", "Session"]

log = logging.getLogger("jupyter_autoresearch")


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
        checks: Sequence[Check] = (),
        holdout_worker: HoldoutWorker | None = None,
        holdout_setup: WorkerSetup | None = None,
        select_by: str = "search",
        min_improvement_given: bool = False,
        holdout_files: tuple[str, ...] = (),
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
        #: Correctness checks a run that would be kept must pass (``--check``, ``--check-cell``).
        self.checks = tuple(checks)
        self.min_improvement_given = min_improvement_given
        #: The checks after each candidate (holdout, same outputs), in a worker of their
        #: own started from ``holdout_setup``.
        self.holdout_worker = holdout_worker
        self.holdout_setup = holdout_setup
        #: Which metric picks :attr:`best`: ``search`` or ``holdout``.
        self.select_by = select_by
        #: The metrics the holdout prints (hidden; a candidate's own are ignored).
        self.holdout_names: tuple[str, ...] = ()
        #: The files the holdout reads: protected like off-limits files.
        self.holdout_files = holdout_files
        self.state = "idle" if proposer is not None else "stopped"
        self.warnings: tuple[str, ...] = history.warnings if history else ()
        self.stop_reason: str | None = None
        self.stop_detail = ""
        self.error: AutoresearchError | None = None
        self.iteration = 0
        self.spent_usd = 0.0
        self.next_cost_usd: float | None = None  # the most the next iteration's requests could cost
        self.started_at: float | None = None
        self.notes: list[str] = []
        self.read_only = history is not None and history.foreign
        runs = list(history.runs) if history else []
        if not self.read_only:  # ours are logged as decided, which runs in flight at once make out of order
            runs.sort(key=lambda r: r.run)
        self._runs: list[RunRecord] = runs
        self._configs: list[SegmentConfig] = list(history.configs) if history else []
        self._segment: int | None = None  # the segment the loop adds to, once it chose one
        self._subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._pending_constraints: tuple[Constraint, ...] | None = None
        self._stop_reason = ("user", "stopped by the user")
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------
    @property
    def runs(self) -> tuple[RunRecord, ...]:
        """Every run so far, oldest first (frozen records)."""
        with self._lock:
            return tuple(self._runs)

    @property
    def segment(self) -> int:
        """The segment the loop adds runs to: the one under the current rules.

        Before a loop chose one, the segment of the log's last header (a rerun may go back
        to an earlier segment with the same rules, so it is not always the highest number).
        """
        with self._lock:
            if self._segment is not None:
                return self._segment
            if self._configs:
                return self._configs[-1].segment
            return self._runs[-1].segment if self._runs else 0

    def segment_runs(self, segment: int | None = None) -> tuple[RunRecord, ...]:
        wanted = self.segment if segment is None else segment
        return tuple(r for r in self.runs if r.segment == wanted)

    @property
    def best_run(self) -> RunRecord | None:
        """The best kept run of the current segment (the one later runs must beat).

        A segment starts from the best run of the session that meets its rules by its
        recorded metrics, re-measured into it, so this is also the best of the session
        under the current constraints.
        """
        return best_of(self.segment_runs(), self.task.direction)

    @property
    def best(self) -> RunRecord | None:
        """The best kept run of the current segment, as exports and ``best.py`` take it:
        by the primary metric, or with ``--select-by holdout`` by the holdout metric.
        ``.code``, ``.metrics``, ``.run``."""
        return select_best(self.segment_runs(), self.task, self.select_by)

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

    def known_metrics(self) -> set[str]:
        return {name for r in self.runs for name in r.metrics}

    def runs_dataframe(self) -> pandas.DataFrame:
        """The history as a pandas DataFrame, one row per run, metrics as columns."""
        from ..views._dataframe import runs_dataframe

        return runs_dataframe(self.runs)

    @property
    def history(self) -> pandas.DataFrame:
        """The runs as a DataFrame (same as :meth:`runs_dataframe`)."""
        return self.runs_dataframe()

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
        return draw_metric(ax, self.runs, self.task.metric, self.task.direction, holdout=self.task.holdout)

    def _repr_html_(self) -> str:
        from ..views._html import summary_html

        state = self.state if not self.stop_reason else f"stopped ({self.stop_reason})"
        return summary_html(self.name, self.task.metric, self.runs, self.best, state, holdout=self.task.holdout)

    def __repr__(self) -> str:
        best = self.best_run
        shown = f", best run {best.run}: {number(best.metric)}" if best and best.metric is not None else ""
        return f"<Session {self.name!r}: {self.state}, {len(self.runs)} runs{shown}>"

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

    def _warn(self, text: str) -> None:
        """One line for the user that does not stop the loop (the sandbox is off, the log was repaired)."""
        with self._lock:
            self.warnings = (*self.warnings, text)
        self._emit(Notice(self.name, text))

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
            if self.holdout_worker is not None:
                self.holdout_worker.cancel()

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

    @property
    def pending_constraints(self) -> tuple[str, ...] | None:
        """Constraints set with :meth:`set_constraints` that the next iteration will apply."""
        with self._lock:
            pending = self._pending_constraints
        return None if pending is None else tuple(str(c) for c in pending)

    def check_names(self, constraint: Constraint) -> Constraint:
        """``constraint`` if every metric it names was reported by some run.

        Raises:
            ConstraintError: it names a metric no run reported.
        """
        known = self.known_metrics()
        unknown = constraint.names - known if known else set()
        if unknown:
            raise ConstraintError.unknown_metrics(str(constraint), unknown, known)
        return constraint

    def set_constraints(self, texts: Sequence[str]) -> tuple[str, ...]:
        """Replace the constraint set; a new segment starts at the next iteration.

        Raises:
            ConstraintError: a constraint is malformed or names a metric no run reported.
        """
        parsed = parse_constraints(texts)
        for constraint in parsed:
            self.check_names(constraint)
        with self._lock:
            self._pending_constraints = parsed
        return tuple(str(c) for c in parsed)

    def start(self) -> threading.Thread:
        """Run the loop in a background thread (the notebook's way); returns the thread.

        Raises:
            SessionError: the loop is already running.
        """
        if self._thread is not None and self._thread.is_alive():
            raise SessionError.already_running(self.name)
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
        except AutoresearchError:
            pass  # kept in self.error and reported through the Stopped event
        except Exception:
            log.exception("autoresearch session %s failed", self.name)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> Session:
        """Run the loop until a stop rule fires; returns the session.

        Raises:
            SessionError: the session was loaded read-only, or it is already running.
            ProposalError: the model cannot be used (unknown provider or model, missing or
                refused key, unreachable server), or failed ``--max-model-failures`` times
                in a row.
            BaselineError: the unchanged cell crashes or prints no primary metric.
            ConstraintError: a constraint names a metric the baseline never printed.
        """
        if self.read_only or self.proposer is None or self.evaluator is None or self.setup is None:
            raise SessionError.read_only(self.name)
        with self._lock:
            if self.state in ("running", "paused"):
                raise SessionError.already_running(self.name)
            self.state, self.stop_reason, self.stop_detail, self.error = "running", None, "", None
        self._stop.clear()
        self._running.set()
        reason, detail = "error", ""
        journal: Journal | None = None
        try:
            journal = Journal(self.folder, on_warning=self._warn)
            self.evaluator.on_notice = self._warn
            reason, detail = Loop(self, journal).run()
        except StopRequested:
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
            if self.holdout_worker is not None:
                self.holdout_worker.close()
            if journal is not None:
                try:
                    journal.append_stop(StopLine(reason, detail, len(self._runs), now_ms()))
                except AutoresearchError as err:  # an unwritable log already said so; never hide the reason
                    log.warning("autoresearch: the stop reason was not logged: %s", err)
                journal.close()
            with self._lock:
                self.state, self.stop_reason, self.stop_detail = "stopped", reason, detail
            self._emit(Stopped(self.name, reason, detail, self.best, len(self._runs)))
        return self
