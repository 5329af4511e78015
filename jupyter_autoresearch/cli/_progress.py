"""The CLI's live progress: one line per decision, on stderr."""

from __future__ import annotations

import sys
from typing import TextIO

from ..engine._events import (
    BaselineDone,
    ConstraintsChanged,
    Decision,
    Event,
    ProposalReady,
    SessionStarted,
    StateChanged,
    Stopped,
    TaskInferred,
)
from ..protocol._format import change, number, short
from ..protocol._task import TaskSpec

__all__ = ["ProgressPrinter"]

_COLOURS = {
    "keep": "32",
    "discard": "33",
    "infeasible": "35",
    "crash": "31",
    "timeout": "31",
    "invalid": "31",
    "violation": "31",
    "checks_failed": "33;1",
}


class ProgressPrinter:
    """Prints each iteration's hypothesis, metric, decision and the best so far."""

    def __init__(self, stream: TextIO | None = None, *, colour: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.colour = self.stream.isatty() if colour is None else colour
        self.task: TaskSpec | None = None
        self.baseline: float | None = None

    def _paint(self, status: str) -> str:
        text = f"{status:<10}"
        code = _COLOURS.get(status)
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
                self._print(f"  objective: {_goal(event.task)}")
        elif isinstance(event, TaskInferred):
            self.task = event.task
            self._print(f"  inferred objective: {_goal(event.task)}")
            if event.task.objective:
                self._print(f"  ({short(event.task.objective, 100)})")
        elif isinstance(event, ConstraintsChanged):
            self._print(f"  -- segment {event.segment}: constraints now {', '.join(event.constraints) or 'none'}")
            if event.now_infeasible:
                self._print(f"     kept runs now infeasible: {', '.join(map(str, event.now_infeasible))}")
        elif isinstance(event, ProposalReady) and (event.hypothesis or event.problem):
            self._print(f"  ... {short(event.hypothesis or event.problem or '', 110)}")
        elif isinstance(event, BaselineDone):
            self.baseline = event.record.metric
        elif isinstance(event, Decision):
            self._decision(event)
        elif isinstance(event, StateChanged):
            self._print(f"  [{event.state}]")
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


def _goal(task: TaskSpec) -> str:
    verb = "maximize" if task.direction == "higher" else "minimize"
    rules = ", ".join(task.constraint_texts) or "no constraints"
    return f"{verb} {task.metric} subject to {rules}"
