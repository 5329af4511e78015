"""HTML views of a session. Every string from a model or a run is escaped here."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape

from ..protocol._format import change, number, short
from ..protocol._records import RunRecord, segment_baseline

__all__ = ["STATUS_COLOURS", "code_diff_html", "history_html", "status_badge", "summary_html"]

STATUS_COLOURS = {
    "keep": "#2e7d32",
    "discard": "#757575",
    "infeasible": "#ef6c00",
    "crash": "#c62828",
    "timeout": "#ad1457",
    "invalid": "#6a1b9a",
    "violation": "#b71c1c",
    "checks_failed": "#8d6e00",
}
_CELL = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #e0e0e0"


def status_badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#424242")
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
        note = r.hypothesis or r.description
        if r.status != "keep" and r.error:
            note = f"{note} — {r.error}" if note else r.error
        cells = [
            str(r.run),
            status_badge(r.status),
            escape(number(r.metric, "")),
            "" if best and r.run == best.run else escape(change(r.metric, reference)),
            *(escape(number(r.metrics.get(c), "")) for c in columns),
            escape(short(note, 140)),
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
        parts.append(f"<div><b>{escape(record.status)}:</b> {escape(record.error)}</div>")
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
