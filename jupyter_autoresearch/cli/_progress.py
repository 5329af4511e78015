"""The CLI's live progress on stderr: one line per decision, a progress bar, the wait for the model.

In a terminal a tqdm bar stays at the bottom (runs, rate, ETA, elapsed time that keeps
ticking, what the loop is doing: "waiting for the model (12 s)"), and the decision lines are
written above it. Elsewhere (a log file, CI) there is no bar: each decision line ends with
the run count and the time left, and a slow model is noted at 10 s, 30 s, 1 min and every
minute after that, so the output is never silent for long.

With runs in flight at once, or candidates on a Dask cluster, it also says where each
candidate started, and after each decision which runs are still running, where, and for
how long.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..engine._events import (
    Calibrated,
    Calibrating,
    CheckStarted,
    ConstraintsChanged,
    Decision,
    EvaluationDone,
    EvaluationRunning,
    EvaluationStarted,
    Event,
    Notice,
    ProposalFailed,
    ProposalReady,
    ProposalStarted,
    SessionStarted,
    StateChanged,
    Stopped,
    TaskInferred,
)
from ..protocol._format import change, money, number, short, tokens
from ..protocol._records import RunRecord
from ..protocol._task import TaskSpec
from ..views._meter import meter
from ..views._status import status_style
from ..views._trust import calibration_lines, flag_notes, holdout_text, paired_text

__all__ = ["ProgressPrinter"]

#: Seconds of waiting for the model after which a line says so (then every minute).
WAIT_NOTES = (10.0, 30.0, 60.0)


class ProgressPrinter:
    """Prints each iteration's hypothesis, metric, decision, tokens and cost, and the progress.

    Args:
        stream: where to write (stderr).
        colour: colour the statuses (default: when the stream is a terminal).
        total: the iterations of this run of the loop (``--max-iterations``), for the ETA.
        bar: draw a tqdm bar (default: when the stream is a terminal).
        clock: the time source (tests drive it).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        colour: bool | None = None,
        total: int | None = None,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        self.colour = terminal if colour is None else colour
        self.use_bar = terminal if bar is None else bar
        self.total = total
        self.clock = clock
        self.task: TaskSpec | None = None
        self.best: float | None = None  # the segment's best before the run being decided
        self.started = clock()
        self.done = 0  # iterations of this run of the loop
        self.asking_since: float | None = None
        self.notes_given = 0
        self.spent = 0.0
        self.priced = False
        self.tokens = 0
        self.estimated = False
        self.predicted: float | None = None  # the most the request in flight could cost
        self.bar: Any = None
        self._lock = threading.RLock()
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        self.running: dict[int, tuple[str, float]] = {}  # run -> (where, since when)

    # -- output --------------------------------------------------------------------------
    def _paint(self, status: str) -> str:
        text = f"{status:<10}"
        code = status_style(status).ansi
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def _print(self, text: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    # -- events --------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        with self._lock:
            self._on(event)

    def _on(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self.task, self.started = event.task, self.clock()
            what = "resuming" if event.resumed else "starting"
            self._print(
                f"autoresearch: {what} session {event.session} with {event.model}"
                + (f" ({event.runs} runs so far)" if event.resumed else "")
            )
            if event.task.metric:
                self._print(f"  objective: {event.task.goal}")
        elif isinstance(event, TaskInferred):
            self.task = event.task
            self._print(f"  inferred objective: {event.task.goal}")
            if event.task.objective:
                self._print(f"  ({short(event.task.objective, 100)})")
        elif isinstance(event, ConstraintsChanged):
            self._constraints(event)
        elif isinstance(event, ProposalStarted):
            self.asking_since, self.notes_given = self.clock(), 0
            if not self.done and self.bar is None:
                self.started = self.asking_since  # rates and ETAs count the iterations, not the start-up
            self.predicted = event.predicted_usd
            self._start_bar()
            self._status("waiting for the model (0 s)")
        elif isinstance(event, ProposalReady):
            self._ready(event)
        elif isinstance(event, ProposalFailed):
            self._iteration_done()
            self._print(
                f"  --   model failed, no run ({event.consecutive} of {event.limit} in a row before it stops): "
                f"{short(event.reason, 110)}"
            )
        elif isinstance(event, Calibrating):
            self._print(f"  calibrating: {event.runs} runs of the unchanged cell")
        elif isinstance(event, Calibrated):
            for line in calibration_lines(event.metric, event.spreads, event.threshold):
                self._print(f"  {line}")
        elif isinstance(event, EvaluationStarted):
            repeat = f" ({event.repeat}/{event.repeats})" if event.repeats > 1 else ""
            self._status(f"evaluating run {event.run}{repeat}")
        elif isinstance(event, CheckStarted):
            self._status(f"checking run {event.run} ({event.label})")
        elif isinstance(event, EvaluationRunning):
            self.running[event.run] = (event.worker, self.clock())
            if event.worker != "local" or len(self.running) > 1:
                self._print(f"  #{event.run:<3} running on {event.worker}")
        elif isinstance(event, EvaluationDone):
            self.running.pop(event.run, None)
        elif isinstance(event, Decision):
            self._decision(event.record, event.best, event.holdout)
            if self.running:
                now = self.clock()
                flight = (f"#{run} on {where} for {now - since:.0f}s" for run, (where, since) in self.running.items())
                self._print(f"        in flight: {', '.join(flight)}")
        elif isinstance(event, StateChanged):
            self._print(f"  [{event.state}]")
            self._status(event.state)
        elif isinstance(event, Notice):
            self._print(f"  warning: {event.text}")
        elif isinstance(event, Stopped):
            self._stop(event)

    def _constraints(self, event: ConstraintsChanged) -> None:
        rules = ", ".join(event.constraints) or "none"
        if event.again:
            self._print(f"  -- back in segment {event.segment}: constraints {rules}")
        else:
            self._print(f"  -- segment {event.segment}: constraints now {rules}")
        if event.now_infeasible:
            self._print(f"     kept runs now infeasible: {', '.join(map(str, event.now_infeasible))}")
        if event.winner is not None:
            self._print(f"     run {event.winner} meets them by its recorded metrics: re-measured")
        elif not event.again:
            self._print("     no run so far meets them: the next proposals start from the latest best")
        self.best = event.best.metric if event.best is not None else None

    def _ready(self, event: ProposalReady) -> None:
        self._iteration_done()
        self.tokens += event.tokens or 0
        if event.cost_usd is not None:
            self.spent += event.cost_usd
            self.priced = True
            if not self.estimated:
                self.estimated = True
                count = f" ({tokens(event.tokens)})" if event.tokens else ""
                total = f"; {self.total} iterations ≈ {money(event.cost_usd * self.total)}" if self.total else ""
                self._print(f"  cost: {money(event.cost_usd)} for the first request{count}{total}")
        self._status("answer received")
        if event.hypothesis or event.problem:
            self._print(f"  ... {short(event.hypothesis or event.problem or '', 110)}")

    def _decision(self, record: RunRecord, best: RunRecord | None, holdout: str | None) -> None:
        metric = self.task.metric if self.task else "metric"
        baseline = bool(record.asi.get("baseline")) or record.parent is None
        # Against the best before this run: a discard reads as how far it fell short.
        line = (
            f"  #{record.run:<3} {self._paint(record.status)} {metric}={number(record.metric):<12}"
            f" {'' if baseline else change(record.metric, self.best):<22} best {number(best.metric if best else None)}"
        )
        if baseline:
            line += f"  ({'baseline' if record.parent is None else 'segment baseline'})"
        usage = "  ".join(filter(None, [tokens(record.tokens) if record.tokens else "", money(record.cost_usd)]))
        if usage:
            line += f"  {usage}"
        held = holdout_text(record, metric, holdout) if record.kept else ""
        if held:
            line += f"  {held}"
        if not self.use_bar and not baseline and self.done:
            line += f"  {meter(self.done, self.total, self.clock() - self.started)}"
        self._print(line)
        if record.status not in ("keep", "discard") and record.error:
            self._print(f"        {short(record.error, 110)}")
        if record.paired:
            self._print(f"        {paired_text(record)}")
        for note in flag_notes(record):
            self._print(f"        flag: {short(note, 110)}")
        self.best = best.metric if best is not None else None

    def _stop(self, event: Stopped) -> None:
        self._stopped.set()
        with self._lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
        if event.reason == "error":
            return  # the command prints the error itself, once
        if event.reason == "up-to-date":
            self._print(f"autoresearch: {event.detail}")
            return
        best = event.best
        tail = f"; best run {best.run}: {number(best.metric)}" if best else ""
        usage = self._usage()
        self._print(f"autoresearch: stopped ({event.reason}: {event.detail}){tail}{usage}")

    def _usage(self) -> str:
        if not self.tokens and not self.priced:
            return ""
        spent = money(self.spent) if self.priced else "unknown price"
        return f"; this run: {tokens(self.tokens)}, {spent}"

    # -- progress ------------------------------------------------------------------------
    def _iteration_done(self) -> None:
        self.asking_since = None
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def _start_bar(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="autoresearch-progress", daemon=True)
            self._ticker.start()
        if not self.use_bar or self.bar is not None:
            return
        from tqdm import tqdm

        try:
            size = os.get_terminal_size(self.stream.fileno())
            known = size.columns > 0 and size.lines > 0
        except (OSError, ValueError, AttributeError):
            known = False  # a terminal that reports no size (some ptys) gets a fixed one
        self.bar = tqdm(
            total=self.total,
            initial=self.done,
            unit="run",
            file=self.stream,
            dynamic_ncols=known,
            ncols=None if known else 100,
            nrows=None if known else 20,
            leave=False,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}<{remaining}, {rate_fmt}]{postfix}"
            if self.total
            else "{n_fmt} runs [{elapsed}, {rate_fmt}]{postfix}",
        )

    def _status(self, text: str) -> None:
        """What the loop is doing, and the money: spent so far, the most the next request costs."""
        if self.bar is None:
            return
        money_text = []
        if self.priced:
            money_text.append(f"spent {money(self.spent)}")
        if self.predicted is not None and self.asking_since is not None:
            money_text.append(f"this request at most {money(self.predicted)}")
        self.bar.set_postfix_str(" | ".join([text, *money_text]))

    def _tick(self) -> None:
        """Every second: the bar's elapsed time and the wait for the model; notes without a bar."""
        while not self._stopped.wait(1.0):
            with self._lock:
                self.tick()

    def tick(self) -> None:
        """One beat of the ticker (also called by tests with their own clock)."""
        if self.asking_since is None:
            if self.bar is not None:
                self.bar.refresh()
            return
        waited = self.clock() - self.asking_since
        self._status(f"waiting for the model ({waited:.0f} s)")
        if self.bar is None:
            due = WAIT_NOTES[self.notes_given] if self.notes_given < len(WAIT_NOTES) else 60.0 * (self.notes_given - 1)
            if waited >= due:
                self.notes_given += 1
                self._print(f"  .. waiting for the model ({waited:.0f} s)")
