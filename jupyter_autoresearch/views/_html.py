"""HTML views of a session. Every string from a model or a run is escaped here."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape

from ..protocol._format import change, note, number, short
from ..protocol._records import RunRecord, segment_baseline
from ._status import status_style

__all__ = ["code_diff_html", "error_html", "history_html", "notice_html", "output_html", "status_badge", "summary_html"]

_CELL = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #e0e0e0"


def error_html(text: str) -> str:
    """One line of error text, red, escaped."""
    return f"<span style='color:{status_style('crash').colour}'>{escape(text)}</span>"


def notice_html(text: str) -> str:
    """One line of notice text (a new segment, a failed model request), orange, escaped."""
    return f"<span style='color:{status_style('infeasible').colour}'>{escape(text)}</span>"


def status_badge(status: str) -> str:
    colour = status_style(status).colour
    return (
        f'<span style="background:{colour};color:white;border-radius:3px;padding:0 5px;'
        f'font-size:11px">{escape(status)}</span>'
    )


def history_html(
    runs: Sequence[RunRecord], metric: str | None, best: RunRecord | None, *, columns: Sequence[str] = ()
) -> str:
    """A table of runs: status, primary metric, change against best, secondary metrics, hypothesis."""
    head = ["run", "status", metric or "metric", "vs best", *columns, "hypothesis / reason"]
    rows = ["<tr>" + "".join(f'<th style="{_CELL}">{escape(h)}</th>' for h in head) + "</tr>"]
    reference = best.metric if best else None
    for r in runs:
        cells = [
            str(r.run),
            status_badge(r.status),
            escape(number(r.metric, "")),
            "" if best and r.run == best.run else escape(change(r.metric, reference)),
            *(escape(number(r.metrics.get(c), "")) for c in columns),
            escape(short(note(r), 140)),
        ]
        weight = "font-weight:600;" if best is not None and r.run == best.run else ""
        rows.append(f'<tr style="{weight}">' + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
    return '<table style="border-collapse:collapse;font-size:12px;width:100%">' + "".join(rows) + "</table>"


def code_diff_html(parent: str, code: str, *, title: str = "") -> str:
    """A unified diff of a run's code against its parent's, coloured, escaped."""
    lines = list(difflib.unified_diff(parent.splitlines(), code.splitlines(), "parent", "run", lineterm=""))
    if not lines:
        lines = ["(same code as its parent)"] if parent else code.splitlines()
    styled = []
    for line in lines:
        colour = "#1b5e20" if line.startswith("+") else "#b71c1c" if line.startswith("-") else "#37474f"
        background = "#e8f5e9" if line.startswith("+") else "#ffebee" if line.startswith("-") else "transparent"
        styled.append(f'<div style="color:{colour};background:{background}">{escape(line) or "&nbsp;"}</div>')
    heading = f"<div><b>{escape(title)}</b></div>" if title else ""
    return (
        f'{heading}<div style="font-family:monospace;font-size:12px;white-space:pre;overflow-x:auto;'
        f'max-height:320px;overflow-y:auto;border:1px solid #e0e0e0;padding:4px">{"".join(styled)}</div>'
    )


def output_html(record: RunRecord) -> str:
    """A run's error and the tails of its output."""
    parts = []
    if record.error:
        # A failed check's reason carries the tail of its output: keep its lines.
        parts.append(f"<div style='white-space:pre-wrap'><b>{escape(record.status)}:</b> {escape(record.error)}</div>")
    for label, text in (("stdout", record.stdout_tail), ("stderr", record.stderr_tail)):
        if text.strip():
            tail = "\n".join(text.rstrip().splitlines()[-30:])
            parts.append(
                f'<div><b>{label}</b></div><pre style="font-size:11px;max-height:200px;overflow:auto;'
                f'margin:0;border:1px solid #eee;padding:4px">{escape(tail)}</pre>'
            )
    return "".join(parts)


def summary_html(
    name: str, metric: str | None, runs: Sequence[RunRecord], best: RunRecord | None, state: str, latest: int = 15
) -> str:
    """The rich display of a session object; the baseline is the first run of the best's segment."""
    first = segment_baseline(runs, best.segment if best else runs[-1].segment) if runs else None
    baseline = first.metric if first else None
    best_text = "none yet"
    if best is not None:
        best_text = f"run {best.run}: {number(best.metric)} {escape(change(best.metric, baseline))}"
    shown = runs[-latest:]
    more = (
        f"<div style='color:#757575'>{len(runs) - len(shown)} earlier runs not shown</div>"
        if len(runs) > len(shown)
        else ""
    )
    return (
        f"<div><b>autoresearch session {escape(name)}</b> — {escape(state)}; {len(runs)} runs; "
        f"{escape(metric or '')} baseline {escape(number(baseline))}, best {best_text}</div>{more}"
        + history_html(shown, metric, best)
    )
