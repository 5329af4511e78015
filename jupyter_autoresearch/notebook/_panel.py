"""The live ipywidgets panel: header, streamed reasoning, history, chart, controls,
constraint editor and export. It only subscribes to events and calls the session's
public controls. Every model or candidate string is escaped before it becomes HTML.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as w

from ..engine._events import (
    BaselineDone,
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
    ReasoningDelta,
    SessionStarted,
    StateChanged,
    Stopped,
    TaskInferred,
)
from ..engine._session import Session
from ..protocol._constraints import OPERATORS, parse_constraint
from ..protocol._errors import AutoresearchError
from ..protocol._format import change, money, number
from ..protocol._records import RunRecord, segment_baseline
from ..views._cells import variant_cell
from ..views._html import MUTED, NO_MATH, code_diff_html, error_html, grid_html, history_html, notice_html, output_html
from ..views._meter import meter
from ..views._svg import metric_svg
from ..views._trust import calibration_lines, gap

__all__ = ["Exporter", "Panel"]

#: ``export(target, argument, done)``; ``done(ok, message)`` reports the outcome.
Exporter = Callable[[str, str, Callable[[bool, str], None]], None]

#: At most this many redraws per second of each part (reasoning, header, history and chart),
#: however fast tokens and decisions arrive.
REDRAWS_PER_SECOND = 10
PAGE = 15
_REASONING_CHARS = 6000


class _Throttle:
    """Calls ``flush`` at most every ``interval`` seconds; the last call always lands.

    With ``defer``, ``poke`` never flushes in the caller's thread (a timer does), so an
    expensive redraw never holds up the loop that reported the change.
    """

    def __init__(self, flush: Callable[[], None], interval: float, *, defer: bool = False) -> None:
        self.flush, self.interval, self.defer = flush, interval, defer
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a flush is already scheduled: it will show this change too
            wait = self._last + self.interval - time.monotonic()
            if wait > 0 or self.defer:
                self._timer = threading.Timer(max(wait, 0.0), self._fire)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self.flush()

    def _fire(self) -> None:
        with self._lock:
            self._timer, self._last = None, time.monotonic()
        self.flush()

    def now(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last = time.monotonic()
        self.flush()


#: What the confidence figure means, in the header's tooltip.
CONFIDENCE_HELP = (
    "How far the best is from the segment's first run, in units of the spread (median absolute "
    "deviation) of the segment's metrics, as pi-autoresearch computes it. Above 2 the gain is "
    "unlikely to be noise; below 1 it may be. None with fewer than three runs or no spread."
)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Panel:
    """The widget for one session; ``panel.widget`` is what the notebook displays.

    Args:
        session: the session to show and control.
        export: called by the export controls with (target, argument, done); calls
            ``done(ok, message)`` when the export is done (for cells, once the page confirmed),
            or raises ``AutoresearchError``.
    """

    def __init__(self, session: Session, export: Exporter | None = None) -> None:
        self.session = session
        self.export = export
        self.started = time.monotonic()
        self.loop_started: float | None = None  # the first request of this run of the loop
        self.asking_since: float | None = None
        self.predicted: float | None = None  # the most the request in flight could cost
        self.state = session.state
        self.detail = ""
        self.current_run: int | None = None
        self.phase = ""
        self.spent = 0.0  # this run of the loop
        self.model_failures = 0
        self.page = 0
        self._follow = True  # the run detail shows the latest run until one is picked
        self._picking = False
        self.streaming: int | None = None  # the run whose reasoning is shown
        self.flight: dict[int, tuple[str, float]] = {}  # run -> (what it is doing, since when)
        self._reasoning: list[str] = []
        self._lock = threading.Lock()
        self._draw_lock = threading.RLock()  # the history is drawn from a timer and from controls
        self._ticking = threading.Event()

        self.error_line = w.HTML()
        self.header = w.HTML()
        self.progress = w.IntProgress(min=0, max=1, value=0, layout=w.Layout(width="220px"))
        self.progress.add_class("jupyter-autoresearch-progress")
        self.meter = w.HTML()
        # Not flex-shrunk by the panel's column: up to 220 px, then it scrolls.
        self.reasoning = w.HTML(layout=w.Layout(max_height="220px", overflow="auto", flex="0 0 auto"))
        self.inflight = w.HTML()
        self.history = w.HTML()
        self.older = w.Button(description="Older", icon="arrow-left", layout=w.Layout(width="auto"))
        self.newer = w.Button(description="Newer", icon="arrow-right", layout=w.Layout(width="auto"))
        self.page_label = w.Label()
        self.run_picker = w.Dropdown(description="Run", options=[], layout=w.Layout(width="300px"))
        self.base_picker = w.Dropdown(
            description="against", options=[("its parent", 0)], value=0, layout=w.Layout(width="300px")
        )
        self.run_detail = w.HTML()
        self.chart = w.HTML(layout=w.Layout(max_width="760px"))
        self.stop_button = w.Button(
            description="Stop", icon="stop", button_style="danger", layout=w.Layout(width="auto")
        )
        self.pause_button = w.Button(description="Pause", icon="pause", layout=w.Layout(width="auto"))
        self.max_iterations = w.BoundedIntText(
            value=session.limits.max_iterations or 0,
            min=0,
            max=100_000,
            description="Max iter.",
            layout=w.Layout(width="170px"),
        )
        self.steer_text = w.Text(
            placeholder="A note for the next prompt, e.g. 'try an exact solver'", layout=w.Layout(width="420px")
        )
        self.steer_button = w.Button(description="Steer", icon="comment", layout=w.Layout(width="auto"))
        self.message = w.HTML()
        self.delivery = w.HTML()
        self._undelivered = False
        self.rows = w.VBox()
        self.add_row = w.Button(description="Add constraint", icon="plus", layout=w.Layout(width="auto"))
        self.apply = w.Button(
            description="Apply constraints", icon="check", button_style="primary", layout=w.Layout(width="auto")
        )
        self.constraint_error = w.HTML()
        self.export_target = w.Dropdown(
            options=[
                ("Insert best below", "cell"),
                ("Replace benchmark cell", "replace"),
                ("Save as .py", "file"),
                ("New notebook", "notebook"),
                ("Git branch", "branch"),
                ("Copy best code", "copy"),
            ],
            layout=w.Layout(width="200px"),
        )
        self.export_arg = w.Text(placeholder="path or branch name", layout=w.Layout(width="240px"))
        self.export_button = w.Button(description="Export", icon="download", layout=w.Layout(width="auto"))
        self.export_message = w.HTML()
        self.copy_box = w.Textarea(layout=w.Layout(width="100%", height="160px", display="none"))

        self.stop_button.on_click(lambda _: self._control(session.stop))
        self.pause_button.on_click(lambda _: self._toggle_pause())
        self.max_iterations.observe(self._set_max_iterations, "value")
        self.steer_button.on_click(lambda _: self._steer())
        self.add_row.on_click(lambda _: self._add_row("", "<=", ""))
        self.apply.on_click(lambda _: self._apply_constraints())
        self.older.on_click(lambda _: self._page(+1))
        self.newer.on_click(lambda _: self._page(-1))
        self.run_picker.observe(self._picked, "value")
        self.base_picker.observe(lambda change: self._show_run(self.run_picker.value), "value")
        self.export_button.on_click(lambda _: self._export())
        for constraint in session.task.constraints:
            self._add_row(constraint.expression, constraint.op, f"{constraint.bound:g}")

        self._reasoning_throttle = _Throttle(self._flush_reasoning, 1 / REDRAWS_PER_SECOND)
        self._header_throttle = _Throttle(self._draw_header, 1 / REDRAWS_PER_SECOND)
        self._runs_throttle = _Throttle(self._draw_runs, 1 / REDRAWS_PER_SECOND, defer=True)
        tabs = w.Tab(
            children=[
                w.VBox([self.history, w.HBox([self.older, self.newer, self.page_label])]),
                w.VBox([w.HBox([self.run_picker, self.base_picker]), self.run_detail]),
                self.chart,
                w.VBox([self.rows, w.HBox([self.add_row, self.apply]), self.constraint_error]),
                w.VBox(
                    [
                        w.HBox([self.export_target, self.export_arg, self.export_button]),
                        self.export_message,
                        self.copy_box,
                    ]
                ),
            ]
        )
        for index, title in enumerate(["History", "Run detail", "Chart", "Constraints", "Export"]):
            tabs.set_title(index, title)
        self.widget = w.VBox(
            [
                self.error_line,
                self.header,
                w.HBox([self.progress, self.meter], layout=w.Layout(align_items="center")),
                self.inflight,
                w.HBox(
                    [self.stop_button, self.pause_button, self.max_iterations, self.steer_text, self.steer_button],
                    layout=w.Layout(flex_flow="row wrap"),
                ),
                self.message,
                self.delivery,
                w.HTML(f"<b class='{NO_MATH}'>Reasoning</b>"),
                self.reasoning,
                tabs,
            ],
            layout=w.Layout(border="1px solid var(--jp-border-color2, #ddd)", padding="6px"),
        )
        self.widget.add_class("jupyter-autoresearch-panel")
        self.tabs = tabs
        self.refresh()
        self.unsubscribe = session.subscribe(self.on_event)

    # -- events ------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        if isinstance(event, ReasoningDelta):
            if self.streaming is not None and event.run != self.streaming:
                return  # runs in flight at once: the reasoning shown is the latest request's
            with self._lock:
                self._reasoning.append(event.text)
            self._reasoning_throttle.poke()
            return
        if isinstance(event, SessionStarted):
            self.state, self.started, self.loop_started, self.spent = "running", time.monotonic(), None, 0.0
            self.error_line.value = ""
            self._start_ticking()
        elif isinstance(event, ProposalStarted):
            self.current_run, self.phase, self.streaming = event.run, "waiting for the model", event.run
            self.asking_since, self.predicted = time.monotonic(), event.predicted_usd
            self.loop_started = self.loop_started or self.asking_since
            self._in_flight(event.run, "asking the model")
            with self._lock:
                self._reasoning = []
            self._reasoning_throttle.now()
        elif isinstance(event, ProposalReady):
            self.asking_since, self.phase = None, "answer received"
            self.spent += event.cost_usd or 0.0
            if not event.code or event.problem:
                self._in_flight(event.run, None)  # no candidate to run
            self._reasoning_throttle.now()
        elif isinstance(event, EvaluationStarted):
            repeat = f" ({event.repeat}/{event.repeats})" if event.repeats > 1 else ""
            self.current_run, self.phase = event.run, f"evaluating{repeat}"
            self._in_flight(event.run, "waiting for a worker")
        elif isinstance(event, EvaluationRunning):
            self._in_flight(event.run, f"on {event.worker}")
        elif isinstance(event, EvaluationDone):
            self._in_flight(event.run, None)
        elif isinstance(event, Calibrating):
            self.current_run, self.phase = None, f"calibrating ({event.runs} runs of the unchanged cell)"
        elif isinstance(event, Calibrated):
            self.phase = ""
            self.message.value = escape(
                "Noise measured: " + "; ".join(calibration_lines(event.metric, event.spreads, event.threshold))
            )
        elif isinstance(event, CheckStarted):
            self.current_run, self.phase = event.run, f"checking ({event.label})"
        elif isinstance(event, ProposalFailed):
            self.asking_since, self.phase, self.model_failures = None, "", self.model_failures + 1
            self._in_flight(event.run, None)
            self.message.value = notice_html(
                f"The model failed, no run ({event.consecutive} of {event.limit} in a row before the "
                f"session stops): {event.reason}"
            )
        elif isinstance(event, (Decision, BaselineDone, TaskInferred)):
            self.phase = ""
            self._runs_throttle.poke()
        elif isinstance(event, ConstraintsChanged):
            rules = ", ".join(event.constraints) or "none"
            start = (
                f"; run {event.winner} meets them by its recorded metrics and is re-measured"
                if event.winner is not None
                else ("" if event.again else "; no run so far meets them")
            )
            what = (
                f"Back in segment {event.segment}: constraints"
                if event.again
                else (f"Segment {event.segment}: constraints now")
            )
            self.message.value = notice_html(f"{what} {rules}{start}")
            self._runs_throttle.poke()
        elif isinstance(event, Notice):
            self.message.value = notice_html(f"Warning: {event.text}")
        elif isinstance(event, StateChanged):
            self.state = event.state
            self.pause_button.description = "Resume" if event.state == "paused" else "Pause"
            self.pause_button.icon = "play" if event.state == "paused" else "pause"
        elif isinstance(event, Stopped):
            self.state, self.phase, self.asking_since = "stopped", "", None
            self._ticking.clear()
            with self._lock:
                self.flight.clear()
            if event.reason == "error":  # one red line on top, where it is seen
                self.detail = "error"
                self.error_line.value = error_html(event.detail)
            else:
                self.detail = event.detail if event.reason == "up-to-date" else f"{event.reason}: {event.detail}"
            for button in (self.stop_button, self.pause_button, self.steer_button, self.apply):
                button.disabled = True
            self._reasoning_throttle.now()
            self._runs_throttle.now()
        self._header_throttle.poke()

    def _start_ticking(self) -> None:
        """Redraw the header every second while the loop runs: the elapsed time and the wait tick."""
        if self._ticking.is_set():
            return
        self._ticking.set()

        def tick() -> None:
            while self._ticking.is_set():
                time.sleep(1.0)
                if self._ticking.is_set():
                    self._header_throttle.poke()

        threading.Thread(target=tick, name="autoresearch-panel-clock", daemon=True).start()

    def _in_flight(self, run: int, doing: str | None) -> None:
        """Record what ``run`` is doing now (None: it is no longer in flight)."""
        with self._lock:
            if doing is None:
                self.flight.pop(run, None)
            else:
                self.flight[run] = (doing, time.monotonic())

    # -- drawing -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw everything from the session's current state."""
        self._draw_runs()
        self._flush_reasoning()
        self._draw_header()

    def _flush_reasoning(self) -> None:
        with self._lock:
            text = "".join(self._reasoning)
        if len(text) > _REASONING_CHARS:
            text = "…" + text[-_REASONING_CHARS:]
        title = f"run {self.current_run}" if self.current_run else ""
        # Wrapped at spaces, never mid-word (a word longer than the line still wraps).
        self.reasoning.value = (
            f"<div class='{NO_MATH}' style='line-height:1.4'><div style='color:{MUTED};font-size:11px'>"
            f"{escape(title)}</div><pre style='white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;"
            f"margin:0;font-size:12px;line-height:1.4'>{escape(text)}</pre></div>"
        )

    def header_items(self) -> list[tuple[str, str, str]]:
        """The header's labelled values: ``(label, value, tooltip)``."""
        s = self.session
        best = s.best
        first = segment_baseline(s.runs, best.segment if best else s.segment)
        baseline = first.metric if first else None
        metric = s.task.metric or "(inferring)"
        holdout = s.task.holdout
        best_text = "-"
        if best is not None and best.metric is not None:
            best_text = f"{number(best.metric)} (run {best.run}) {change(best.metric, baseline)}".rstrip()
        held: list[tuple[str, str, str]] = []
        if holdout is not None and best is not None and holdout in best.metrics:
            difference = gap(best, s.task.metric, holdout)
            shown = f" (gap {difference:+.4g})" if difference is not None else ""
            held = [
                (
                    f"its {holdout}",
                    f"{number(best.metrics[holdout])}{shown}",
                    "measured on data the model never sees; the gap is its change against the search metric's",
                )
            ]
        limit = s.limits.max_iterations
        confidence = best.confidence if best is not None else None
        runs = s.runs
        tokens = sum(r.tokens or 0 for r in runs)
        priced = [r.cost_usd for r in runs if r.cost_usd is not None]
        cost = f"{money(self.spent)} this run" if priced or self.spent else "unknown price" if tokens else "-"
        cost_tip = f"{money(sum(priced))} over the session's {len(runs)} runs" if priced else ""
        if s.limits.max_cost is not None:
            cost_tip += f"; --max-cost {money(s.limits.max_cost)} is never crossed"
        items = [
            ("session", s.name, ""),
            ("model", s.proposer.model if s.proposer else "-", ""),
            (
                "iteration",
                f"{s.iteration} of {limit}" if limit else str(s.iteration),
                "runs after the baseline, in this run of the loop",
            ),
            (f"baseline {metric}", number(baseline), "the first run of the best's segment"),
            (
                f"best by {holdout}" if s.select_by == "holdout" and holdout else "best",
                best_text,
                f"the kept run of the segment with the best {holdout}, against its baseline"
                if s.select_by == "holdout" and holdout
                else "the best kept run of the segment, against its baseline",
            ),
            *held,
            ("confidence", f"{confidence:.2f}" if confidence is not None else "-", CONFIDENCE_HELP),
            ("tokens", f"{tokens:,}", "prompt and reply tokens of the session's runs"),
            ("cost", cost, cost_tip.lstrip("; ")),
        ]
        if self.predicted is not None and self.state == "running":
            cap = f" of {money(s.limits.max_cost)}" if s.limits.max_cost is not None else ""
            items.append(
                (
                    "next request",
                    f"≤ {money(self.predicted)}{cap}",
                    "the most the next request can cost: its prompt's tokens and the reply limit at the model's price",
                )
            )
        if self.model_failures:
            items.append(("model failures", str(self.model_failures), "failed requests: each costs an iteration"))
        elapsed = time.monotonic() - self.started if self.state != "idle" else 0
        items.append(("elapsed", _duration(elapsed), ""))
        return items

    def state_text(self) -> str:
        """``running · run 4: waiting for the model (12 s)``."""
        state = self.state + (f" ({self.detail})" if self.detail else "")
        if self.phase and self.state == "running":
            phase = self.phase
            if self.asking_since is not None:
                phase += f" ({time.monotonic() - self.asking_since:.0f} s)"
            state += f" · run {self.current_run}: {phase}"
        return state

    def _draw_header(self) -> None:
        s = self.session
        self.header.value = grid_html(self.header_items())
        limit = s.limits.max_iterations
        self.progress.max = max(limit or 1, 1)
        self.progress.value = min(s.iteration, self.progress.max)
        self.progress.layout.display = None if limit else "none"
        elapsed = time.monotonic() - self.loop_started if self.loop_started is not None else 0.0
        running = self.state in ("running", "paused")
        progress = meter(s.iteration, limit, elapsed) if self.loop_started is not None else ""
        self.progress.bar_style = "success" if self.state == "stopped" and not self.detail.startswith("error") else ""
        self.meter.value = (
            f"<span class='{NO_MATH}' style='margin-left:8px;font-variant-numeric:tabular-nums'>"
            f"{escape(progress)}</span>"
            f"<span class='{NO_MATH}' style='margin-left:12px;color:{MUTED}'>{escape(self.state_text())}</span>"
            if running or progress or self.detail
            else f"<span class='{NO_MATH}' style='color:{MUTED}'>{escape(self.state_text())}</span>"
        )
        self._draw_flight()

    def _draw_flight(self) -> None:
        """The runs in flight: what each is doing (where its candidate runs) and for how long.

        Shown with runs in flight at once or candidates elsewhere; redrawn every second
        while there are any, so the times move on between events."""
        now = time.monotonic()
        with self._lock:
            flight = sorted(self.flight.items())
        shown = len(flight) > 1 or any(doing.startswith("on ") and doing != "on local" for _, (doing, _) in flight)
        if not shown or self.state == "stopped":
            self.inflight.value = ""
            return
        items = "".join(
            f"<span style='margin-right:14px'>#{run} {escape(doing)} <b>{now - since:.0f}s</b></span>"
            for run, (doing, since) in flight
        )
        self.inflight.value = (
            f"<div class='{NO_MATH}' style='line-height:1.8'><span style='color:{MUTED}'>in flight</span> {items}</div>"
        )

    def _draw_runs(self) -> None:
        with self._draw_lock:
            self._draw_runs_now()

    def _draw_runs_now(self) -> None:
        s = self.session
        runs = s.runs
        pages = max(1, -(-len(runs) // PAGE))
        self.page = min(self.page, pages - 1)
        end = len(runs) - self.page * PAGE
        shown = list(reversed(runs[max(0, end - PAGE) : end]))  # newest first
        metric, holdout = s.task.metric, s.task.holdout
        columns = [n for n in dict.fromkeys(k for r in runs[-50:] for k in r.metrics) if n not in (metric, holdout)][:5]
        self.history.value = history_html(shown, metric, s.best, columns=columns, holdout=holdout)
        self.page_label.value = f"page {self.page + 1} of {pages} ({len(runs)} runs)"
        self.older.disabled = self.page >= pages - 1
        self.newer.disabled = self.page == 0
        options = [(f"#{r.run} {r.status} {number(r.metric, '')}".rstrip(), r.run) for r in reversed(runs[-200:])]
        if [o[1] for o in self.run_picker.options] != [o[1] for o in options]:
            selected = self.run_picker.value
            base = self.base_picker.value
            self._picking = True
            try:
                self.run_picker.options = options
                self.base_picker.options = [("its parent", 0), *options]
                self.base_picker.value = base if base in {o[1] for o in options} else 0
                if options and (self._follow or selected not in {o[1] for o in options}):
                    self.run_picker.value = options[0][1]  # the latest run, until one is picked
                elif selected in {o[1] for o in options}:
                    self.run_picker.value = selected
            finally:
                self._picking = False
            self._show_run(self.run_picker.value)
        if runs:
            self.chart.value = metric_svg(runs, metric, s.task.direction, holdout=holdout)
        self._draw_header()

    def _page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self._draw_runs()

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._picking:
            self._follow = False  # the user chose a run: stay on it
        self._show_run(change["new"])

    def _show_run(self, run: int | None) -> None:
        """The run's code as a diff against its parent, or against any run chosen in ``against``."""
        runs = {r.run: r for r in self.session.runs}
        record = runs.get(run) if run is not None else None
        if record is None:
            self.run_detail.value = f"<span style='color:{MUTED}'>No run yet.</span>"
            return
        chosen = self.base_picker.value
        base = runs.get(chosen) if chosen else (runs.get(record.parent) if record.parent is not None else None)
        title = f"run {record.run} against run {base.run}" if base else f"run {record.run} (the cell as written)"
        names = (f"run {base.run}" if base else "", f"run {record.run}")
        hypothesis = f"<div class='{NO_MATH}'><i>{escape(record.hypothesis)}</i></div>" if record.hypothesis else ""
        self.run_detail.value = (
            hypothesis
            + code_diff_html(base.code if base else "", record.code, title=title, names=names)
            + output_html(record)
        )

    # -- controls ----------------------------------------------------------------------
    def _control(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except AutoresearchError as err:
            self.message.value = error_html(str(err))

    def _toggle_pause(self) -> None:
        self._control(self.session.resume if self.session.state == "paused" else self.session.pause)

    def _set_max_iterations(self, change: dict[str, Any]) -> None:
        self.session.set_max_iterations(int(change["new"]) or None)
        self._header_throttle.poke()

    def _steer(self) -> None:
        note = self.steer_text.value
        try:
            self.session.steer(note)
        except AutoresearchError as err:
            self.message.value = error_html(str(err))
            return
        self.steer_text.value = ""
        self.message.value = (
            f"<span class='{NO_MATH}'>Note for the next prompt: <i>{escape(' '.join(note.split()))}</i></span>"
        )

    def _add_row(self, expression: str, op: str, bound: str) -> None:
        """A row of the editor: its inputs on one line, its problem (if any) on the line below,
        so an error never squeezes the inputs."""
        inputs = w.HBox(
            [
                w.Text(
                    value=expression,
                    placeholder="metric expression, e.g. cs_contacts / users",
                    layout=w.Layout(width="300px", flex="0 0 auto"),
                ),
                w.Dropdown(options=list(OPERATORS), value=op, layout=w.Layout(width="70px", flex="0 0 auto")),
                w.Text(value=bound, placeholder="bound", layout=w.Layout(width="110px", flex="0 0 auto")),
                w.Button(icon="trash", tooltip="Remove this constraint", layout=w.Layout(width="40px")),
            ]
        )
        row = w.VBox([inputs, w.HTML()])
        inputs.children[3].on_click(lambda _: self._remove_row(row))
        self.rows.children = (*self.rows.children, row)

    def _remove_row(self, row: w.VBox) -> None:
        self.rows.children = tuple(r for r in self.rows.children if r is not row)

    def constraint_texts(self) -> tuple[list[str], list[str]]:
        """The editor's rows as constraint texts, and the rows' problems (checked inline)."""
        texts, problems = [], []
        for index, row in enumerate(self.rows.children, 1):
            inputs, note = row.children
            expression, op, bound, _ = inputs.children
            if not expression.value.strip() and not bound.value.strip():
                note.value = ""
                continue
            text = f"{expression.value} {op.value} {bound.value}"
            try:
                constraint = self.session.check_names(parse_constraint(text))
            except AutoresearchError as err:
                note.value = error_html(str(err))
                problems.append(f"row {index}: {err}")
                continue
            note.value = ""
            texts.append(str(constraint))
        return texts, problems

    def _apply_constraints(self) -> None:
        texts, problems = self.constraint_texts()
        if problems:
            self.constraint_error.value = error_html(f"Not applied: {'; '.join(problems)}")
            return
        try:
            applied = self.session.set_constraints(texts)
        except AutoresearchError as err:
            self.constraint_error.value = error_html(str(err))
            return
        self.constraint_error.value = (
            f"<span class='{NO_MATH}'>Applied: {escape(', '.join(applied) or 'no constraints')}; the loop "
            "continues under them from the next iteration (in the segment made under them, or a new one).</span>"
        )

    def _export(self) -> None:
        target = self.export_target.value
        if target == "copy":
            self.show_copy_box()
            return
        if self.export is None:
            self.export_message.value = "Export is not available here."
            return
        self.export_message.value = f"<span style='color:{MUTED}'>exporting…</span>"
        try:
            self.export(target, self.export_arg.value, self._exported)
        except AutoresearchError as err:
            self._exported(False, str(err))

    def _exported(self, ok: bool, text: str) -> None:
        """Show an export's outcome; the cell exports report only once the page confirmed."""
        self.export_message.value = f"<span class='{NO_MATH}'>{escape(text)}</span>" if ok else error_html(text)

    def show_copy_box(self) -> None:
        best = self.session.best_run
        if best is None:
            self.export_message.value = "No kept run yet."
            return
        self._copy(best.code, "The best code is below: select it and copy (Ctrl+A, Ctrl+C).")

    def _copy(self, code: str, text: str) -> None:
        self.copy_box.value = code
        self.copy_box.layout.display = None
        self.export_message.value = escape(text)

    def show_undelivered(self, records: list[RunRecord], why: str) -> None:
        """Say which accepted runs are not in the notebook yet and why, with their code to copy."""
        if not records:
            if self._undelivered:
                self._undelivered = False
                self.delivery.value = ""
            return
        self._undelivered = True
        runs = ("run " if len(records) == 1 else "runs ") + ", ".join(str(r.run) for r in records)
        text = f"Not in the notebook yet: {runs}. {why[:1].upper()}{why[1:].rstrip('.')}."
        self.delivery.value = notice_html(text)
        metric = self.session.task.metric
        self.copy_box.value = "\n\n".join(variant_cell(self.session.name, r, metric)[0] for r in records)
        self.copy_box.layout.display = None

    # -- text fallback -----------------------------------------------------------------
    def text(self) -> str:
        """One readable paragraph for frontends that cannot show widgets."""
        s = self.session
        best = s.best_run
        shown = (
            f"best run {best.run}: {s.task.metric}={number(best.metric)}"
            if best is not None and best.metric is not None
            else "no kept run yet"
        )
        state = s.state + (f" ({s.stop_reason})" if s.stop_reason else "")
        return (
            f"autoresearch session {s.name}: {state}, {len(s.runs)} runs, {shown}. "
            "The live panel needs ipywidgets (JupyterLab, Notebook 7, VS Code); "
            "%autoresearch status prints the state."
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self.text()
        return bundle
