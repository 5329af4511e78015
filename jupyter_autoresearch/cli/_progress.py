"""The CLI's live progress: one line per decision, on stderr.

With runs in flight at once, or candidates on a Dask cluster, it also says where each
candidate started, and after each decision which runs are still running, where, and for
how long.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..engine._events import (
    BaselineDone,
    ConstraintsChanged,
    Decision,
    EvaluationDone,
    EvaluationRunning,
    Event,
    Notice,
    ProposalFailed,
    ProposalReady,
    SessionStarted,
    StateChanged,
    Stopped,
    TaskInferred,
)
from ..protocol._format import change, number, short
from ..protocol._task import TaskSpec
from ..views._status import status_style

__all__ = ["ProgressPrinter"]


class ProgressPrinter:
    """Prints each iteration's hypothesis, metric, decision and the best so far."""

    def __init__(self, stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.colour = self.stream.isatty() if colour is None else colour
        self.task: TaskSpec | None = None
        self.baseline: float | None = None
        self.running: dict[int, tuple[str, float]] = {}  # run -> (where, since when)

    def _paint(self, status: str) -> str:
        text = f"{status:<10}"
        code = status_style(status).ansi
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionStarted):
            self.task = event.task
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
            self._print(f"  -- segment {event.segment}: constraints now {', '.join(event.constraints) or 'none'}")
            if event.now_infeasible:
                self._print(f"     kept runs now infeasible: {', '.join(map(str, event.now_infeasible))}")
        elif isinstance(event, ProposalReady) and (event.hypothesis or event.problem):
            self._print(f"  ... {short(event.hypothesis or event.problem or '', 110)}")
        elif isinstance(event, ProposalFailed):
            self._print(
                f"  --   model failed, no run ({event.consecutive} of {event.limit} in a row before it stops): "
                f"{short(event.reason, 110)}"
            )
        elif isinstance(event, EvaluationRunning):
            self.running[event.run] = (event.worker, time.monotonic())
            if event.worker != "local" or len(self.running) > 1:
                self._print(f"  #{event.run:<3} running on {event.worker}")
        elif isinstance(event, EvaluationDone):
            self.running.pop(event.run, None)
        elif isinstance(event, BaselineDone):
            self.baseline = event.record.metric
        elif isinstance(event, Decision):
            self._decision(event)
            if self.running:
                now = time.monotonic()
                flight = (f"#{run} on {where} for {now - since:.0f}s" for run, (where, since) in self.running.items())
                self._print(f"        in flight: {', '.join(flight)}")
        elif isinstance(event, StateChanged):
            self._print(f"  [{event.state}]")
        elif isinstance(event, Notice):
            self._print(f"  warning: {event.text}")
        elif isinstance(event, Stopped):
            best = event.best
            tail = f"; best run {best.run}: {number(best.metric)}" if best else ""
            self._print(f"autoresearch: stopped ({event.reason}: {event.detail}){tail}")

    def _decision(self, event: Decision) -> None:
        r = event.record
        metric = self.task.metric if self.task else "metric"
        label = "baseline" if r.asi.get("baseline") else ""
        if label:  # later runs of the segment are compared with its first run, as in pi-autoresearch
            self.baseline = r.metric
        best = event.best
        line = (
            f"  #{r.run:<3} {self._paint(r.status)} {metric}={number(r.metric):<12}"
            f" {change(r.metric, self.baseline):<22} best {number(best.metric if best else None)}"
        )
        if label:
            line += f"  ({'baseline' if r.parent is None else 'segment baseline'})"
        self._print(line)
        if r.status not in ("keep", "discard") and r.error:
            self._print(f"        {short(r.error, 110)}")
