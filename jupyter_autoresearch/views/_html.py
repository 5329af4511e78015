"""HTML views of a session. Every string from a model or a run is escaped here."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape

from ..protocol._format import change, note, number, short
from ..protocol._records import RunRecord, segment_baseline
from ._status import status_style
from ._trust import OVERFIT_MARK, flag_notes, gap, overfit, paired_text

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
    runs: Sequence[RunRecord],
    metric: str | None,
    best: RunRecord | None,
    *,
    columns: Sequence[str] = (),
    holdout: str | None = None,
) -> str:
    """A table of runs: status, primary metric, change against best, secondary metrics, hypothesis.

    With a ``holdout`` metric, kept runs show it beside the primary one with their gap,
    and a kept run whose holdout got worse is marked.
    """
    held = [holdout, "gap"] if holdout else []
    head = ["run", "status", metric or "metric", *held, "vs best", *columns, "hypothesis / reason"]
    rows = ["<tr>" + "".join(f'<th style="{_CELL}">{escape(h)}</th>' for h in head) + "</tr>"]
    reference = best.metric if best else None
    for r in runs:
        shown = []
        if holdout:
            difference = gap(r, metric, holdout) if r.kept else None
            shown = [
                escape(number(r.metrics.get(holdout) if r.kept else None, "")),
                "" if difference is None else escape(f"{difference:+.4g}"),
            ]
        badge = status_badge(r.status)
        if overfit(r):
            badge += f' <span title="{escape(r.flags["overfit"])}" style="color:#c62828">{OVERFIT_MARK}</span>'
        text = " ".join([note(r), *(f"[{n}]" for n in flag_notes(r) if not overfit(r) or n != r.flags["overfit"])])
        cells = [
            str(r.run),
            badge,
            escape(number(r.metric, "")),
            *shown,
            "" if best and r.run == best.run else escape(change(r.metric, reference)),
            *(escape(number(r.metrics.get(c), "")) for c in columns),
            escape(short(text, 160)),
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
    """A run's error, what the checks found, its paired decision and the tails of its output."""
    parts = []
    if record.error:
        # A failed check's reason carries the tail of its output: keep its lines.
        parts.append(f"<div style='white-space:pre-wrap'><b>{escape(record.status)}:</b> {escape(record.error)}</div>")
    if record.model_error:
        parts.append(f"<div style='color:#757575'>the model read: {escape(record.model_error)}</div>")
    for text in flag_notes(record):
        parts.append(f"<div style='color:{status_style('infeasible').colour}'>{OVERFIT_MARK} {escape(text)}</div>")
    if record.paired:
        parts.append(f"<div>{escape(paired_text(record))}</div>")
    for label, text in (("stdout", record.stdout_tail), ("stderr", record.stderr_tail)):
        if text.strip():
            tail = "\n".join(text.rstrip().splitlines()[-30:])
            parts.append(
                f'<div><b>{label}</b></div><pre style="font-size:11px;max-height:200px;overflow:auto;'
                f'margin:0;border:1px solid #eee;padding:4px">{escape(tail)}</pre>'
            )
    return "".join(parts)


def summary_html(
    name: str,
    metric: str | None,
    runs: Sequence[RunRecord],
    best: RunRecord | None,
    state: str,
    latest: int = 15,
    *,
    holdout: str | None = None,
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
        + history_html(shown, metric, best, holdout=holdout)
    )
