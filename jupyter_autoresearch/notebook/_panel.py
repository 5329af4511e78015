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
from ..protocol._format import change, number
from ..protocol._records import RunRecord, segment_baseline
from ..views._cells import variant_cell
from ..views._html import code_diff_html, error_html, history_html, notice_html, output_html
from ..views._plot import figure_png, metric_figure

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
        self.state = session.state
        self.detail = ""
        self.current_run: int | None = None
        self.phase = ""
        self.tokens = session.total_tokens
        self.cost = session.total_cost_usd
        self.cost_known = any(r.cost_usd is not None for r in session.runs)
        self.model_failures = 0
        self.page = 0
        self.streaming: int | None = None  # the run whose reasoning is shown
        self.flight: dict[int, tuple[str, float]] = {}  # run -> (what it is doing, since when)
        self._ticking = False
        self._reasoning: list[str] = []
        self._lock = threading.Lock()
        self._draw_lock = threading.RLock()  # the history is drawn from a timer and from controls

        self.error_line = w.HTML()
        self.header = w.HTML()
        self.inflight = w.HTML()
        self.reasoning = w.HTML(layout=w.Layout(max_height="220px", overflow="auto"))
        self.history = w.HTML()
        self.older = w.Button(description="Older", icon="arrow-left", layout=w.Layout(width="90px"))
        self.newer = w.Button(description="Newer", icon="arrow-right", layout=w.Layout(width="90px"))
        self.page_label = w.Label()
        self.run_picker = w.Dropdown(description="Run", options=[], layout=w.Layout(width="320px"))
        self.run_detail = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="720px"))
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.pause_button = w.Button(description="Pause", icon="pause")
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
        self.steer_button = w.Button(description="Steer", icon="comment")
        self.message = w.HTML()
        self.delivery = w.HTML()
        self._undelivered = False
        self.rows = w.VBox()
        self.add_row = w.Button(description="Add constraint", icon="plus")
        self.apply = w.Button(description="Apply constraints", icon="check", button_style="primary")
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
        self.export_button = w.Button(description="Export", icon="download")
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
        self.run_picker.observe(lambda change: self._show_run(change["new"]), "value")
        self.export_button.on_click(lambda _: self._export())
        for constraint in session.task.constraints:
            self._add_row(constraint.expression, constraint.op, f"{constraint.bound:g}")

        self._reasoning_throttle = _Throttle(self._flush_reasoning, 1 / REDRAWS_PER_SECOND)
        self._header_throttle = _Throttle(self._draw_header, 1 / REDRAWS_PER_SECOND)
        self._runs_throttle = _Throttle(self._draw_runs, 1 / REDRAWS_PER_SECOND, defer=True)
        tabs = w.Tab(
            children=[
                w.VBox([self.history, w.HBox([self.older, self.newer, self.page_label])]),
                w.VBox([self.run_picker, self.run_detail]),
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
                self.inflight,
                w.HBox([self.stop_button, self.pause_button, self.max_iterations]),
                w.HBox([self.steer_text, self.steer_button]),
                self.message,
                self.delivery,
                w.HTML("<b>Reasoning</b>"),
                self.reasoning,
                tabs,
            ],
            layout=w.Layout(border="1px solid #ddd", padding="6px"),
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
            self.state, self.started = "running", time.monotonic()
        elif isinstance(event, ProposalStarted):
            self.current_run, self.phase, self.streaming = event.run, "asking the model", event.run
            self._in_flight(event.run, "asking the model")
            with self._lock:
                self._reasoning = []
            self._reasoning_throttle.now()
        elif isinstance(event, ProposalReady):
            self.tokens += event.tokens or 0
            self.cost += event.cost_usd or 0.0
            self.cost_known = self.cost_known or event.cost_usd is not None
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
        elif isinstance(event, ProposalFailed):
            self.phase, self.model_failures = "", self.model_failures + 1
            self._in_flight(event.run, None)
            self.message.value = notice_html(
                f"The model failed, no run ({event.consecutive} of {event.limit} in a row before the "
                f"session stops): {event.reason}"
            )
        elif isinstance(event, (Decision, BaselineDone, TaskInferred)):
            self.phase = ""
            self._runs_throttle.poke()
        elif isinstance(event, ConstraintsChanged):
            self.message.value = notice_html(
                f"Segment {event.segment}: constraints now {', '.join(event.constraints) or 'none'}"
            )
            self._runs_throttle.poke()
        elif isinstance(event, Notice):
            self.message.value = notice_html(f"Warning: {event.text}")
        elif isinstance(event, StateChanged):
            self.state = event.state
            self.pause_button.description = "Resume" if event.state == "paused" else "Pause"
            self.pause_button.icon = "play" if event.state == "paused" else "pause"
        elif isinstance(event, Stopped):
            self.state, self.phase = "stopped", ""
            with self._lock:
                self.flight.clear()
            if event.reason == "error":  # one red line on top, where it is seen
                self.detail = "error"
                self.error_line.value = error_html(event.detail)
            else:
                self.detail = f"{event.reason}: {event.detail}"
            for button in (self.stop_button, self.pause_button, self.steer_button, self.apply):
                button.disabled = True
            self._reasoning_throttle.now()
            self._runs_throttle.now()
        self._header_throttle.poke()

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
        self.reasoning.value = (
            f"<div style='color:#757575;font-size:11px'>{escape(title)}</div>"
            f"<pre style='white-space:pre-wrap;margin:0;font-size:12px'>{escape(text)}</pre>"
        )

    def _draw_header(self) -> None:
        s = self.session
        best = s.best_run
        first = segment_baseline(s.runs, best.segment if best else s.segment)
        baseline = first.metric if first else None
        metric = s.task.metric or "(inferring)"
        best_text = "-"
        if best is not None and best.metric is not None:
            best_text = f"{number(best.metric)} (run {best.run}) {change(best.metric, baseline)}".rstrip()
        limit = s.limits.max_iterations
        iteration = f"{s.iteration} of {limit}" if limit else str(s.iteration)
        elapsed = time.monotonic() - self.started if self.state != "idle" else 0
        state = self.state + (f" ({self.detail})" if self.detail else "")
        if self.phase and self.state == "running":
            state += f", run {self.current_run}: {self.phase}"
        confidence = best.confidence if best is not None else None
        items = [
            ("session", s.name),
            ("model", s.proposer.model if s.proposer else "-"),
            ("iteration", iteration),
            (f"baseline {metric}", number(baseline)),
            ("best", best_text),
            ("confidence", f"{confidence:.2f}" if confidence is not None else "-"),
            ("tokens", f"{self.tokens:,}"),
            *([("model failures", str(self.model_failures))] if self.model_failures else []),
            ("cost", f"${self.cost:.4f}" if self.cost_known else "unknown price"),
            ("elapsed", f"{elapsed:.0f}s"),
            ("state", state),
        ]
        cells = "".join(
            f"<span style='margin-right:14px'><span style='color:#757575'>{escape(k)}</span> <b>{escape(v)}</b></span>"
            for k, v in items
        )
        self.header.value = f"<div style='line-height:1.8'>{cells}</div>"
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
        self.inflight.value = f"<div style='line-height:1.8'><span style='color:#757575'>in flight</span> {items}</div>"
        if not self._ticking:
            self._ticking = True
            timer = threading.Timer(1.0, self._tick)
            timer.daemon = True
            timer.start()

    def _tick(self) -> None:
        self._ticking = False
        self._header_throttle.poke()

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
        metric = s.task.metric
        columns = [n for n in dict.fromkeys(k for r in runs[-50:] for k in r.metrics) if n != metric][:5]
        self.history.value = history_html(shown, metric, s.best_run, columns=columns)
        self.page_label.value = f"page {self.page + 1} of {pages} ({len(runs)} runs)"
        self.older.disabled = self.page >= pages - 1
        self.newer.disabled = self.page == 0
        options = [
            (f"#{r.run} {r.status} {'' if r.metric is None else f'{r.metric:.8g}'}", r.run)
            for r in reversed(runs[-200:])
        ]
        if [o[1] for o in self.run_picker.options] != [o[1] for o in options]:
            selected = self.run_picker.value
            self.run_picker.options = options
            if selected in {o[1] for o in options}:
                self.run_picker.value = selected
        if runs:
            self.chart.value = figure_png(metric_figure(runs, metric, s.task.direction))
        self._draw_header()

    def _page(self, step: int) -> None:
        self.page = max(0, self.page + step)
        self._draw_runs()

    def _show_run(self, run: int | None) -> None:
        runs = {r.run: r for r in self.session.runs}
        record = runs.get(run) if run is not None else None
        if record is None:
            self.run_detail.value = ""
            return
        parent = runs.get(record.parent) if record.parent is not None else None
        title = f"run {record.run} against run {parent.run}" if parent else f"run {record.run}"
        hypothesis = f"<div><i>{escape(record.hypothesis)}</i></div>" if record.hypothesis else ""
        self.run_detail.value = (
            hypothesis + code_diff_html(parent.code if parent else "", record.code, title=title) + output_html(record)
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
        self.message.value = f"Note for the next prompt: <i>{escape(' '.join(note.split()))}</i>"

    def _add_row(self, expression: str, op: str, bound: str) -> None:
        row = w.HBox(
            [
                w.Text(
                    value=expression,
                    placeholder="metric expression, e.g. cs_contacts / users",
                    layout=w.Layout(width="300px"),
                ),
                w.Dropdown(options=list(OPERATORS), value=op, layout=w.Layout(width="70px")),
                w.Text(value=bound, placeholder="bound", layout=w.Layout(width="110px")),
                w.Button(icon="trash", tooltip="Remove this constraint", layout=w.Layout(width="40px")),
                w.HTML(),
            ]
        )
        row.children[3].on_click(lambda _: self._remove_row(row))
        self.rows.children = (*self.rows.children, row)

    def _remove_row(self, row: w.HBox) -> None:
        self.rows.children = tuple(r for r in self.rows.children if r is not row)

    def constraint_texts(self) -> tuple[list[str], list[str]]:
        """The editor's rows as constraint texts, and the rows' problems (checked inline)."""
        texts, problems = [], []
        for index, row in enumerate(self.rows.children, 1):
            expression, op, bound, _, note = row.children
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
            f"Applied: {escape(', '.join(applied) or 'no constraints')}; a new segment starts at the next iteration."
        )

    def _export(self) -> None:
        target = self.export_target.value
        if target == "copy":
            self.show_copy_box()
            return
        if self.export is None:
            self.export_message.value = "Export is not available here."
            return
        self.export_message.value = "<span style='color:#757575'>exporting…</span>"
        try:
            self.export(target, self.export_arg.value, self._exported)
        except AutoresearchError as err:
            self._exported(False, str(err))

    def _exported(self, ok: bool, text: str) -> None:
        """Show an export's outcome; the cell exports report only once the page confirmed."""
        self.export_message.value = escape(text) if ok else error_html(text)

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
        self.delivery.value = f"<span style='color:#ef6c00'>{escape(text)}</span>"
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
