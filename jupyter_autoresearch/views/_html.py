"""HTML views of a session. Every string from a model or a run is escaped here.

Colours of text, borders and backgrounds come from JupyterLab's theme variables (with light
fallbacks for other frontends), so the views read well in the light and the dark theme; the
status colours are the same everywhere. Containers carry ``tex2jax_ignore``, so a ``$`` in a
price or in a model's text is never typeset as mathematics by the widget's renderer.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape

from ..protocol._format import change, note, number, short
from ..protocol._records import RunRecord, segment_baseline
from ._status import status_style
from ._trust import OVERFIT_MARK, flag_notes, gap, overfit, paired_text

__all__ = [
    "MUTED",
    "NO_MATH",
    "code_diff_html",
    "error_html",
    "grid_html",
    "history_html",
    "notice_html",
    "output_html",
    "status_badge",
    "summary_html",
]

#: Secondary text and borders, from the theme.
MUTED = "var(--jp-ui-font-color2, #757575)"
_BORDER = "var(--jp-border-color2, #e0e0e0)"
_CODE_FONT = "var(--jp-code-font-family, monospace)"
#: The class that keeps MathJax away from a block.
NO_MATH = "tex2jax_ignore"
_CELL = f"padding:3px 8px;text-align:left;vertical-align:top;border-bottom:1px solid {_BORDER}"
_NUMBER = _CELL + ";white-space:nowrap;font-variant-numeric:tabular-nums"
# Two lines at most; the whole text is in the cell's tooltip.
_CLAMP = "display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden;min-width:16em"


def error_html(text: str) -> str:
    """One line of error text, red, escaped; the whole text is in its tooltip."""
    colour = status_style("crash").colour
    return (
        f"<div class='{NO_MATH}' title='{escape(text)}' style='color:{colour};background:rgba(198,40,40,0.08);"
        f"line-height:1.6;border-left:3px solid {colour};padding:2px 8px;white-space:nowrap;overflow:hidden;"
        f"text-overflow:ellipsis'>{escape(text)}</div>"
    )


def notice_html(text: str) -> str:
    """One line of notice text (a new segment, a failed model request), orange, escaped."""
    return f"<span class='{NO_MATH}' style='color:{status_style('infeasible').colour}'>{escape(text)}</span>"


def status_badge(status: str) -> str:
    colour = status_style(status).colour
    return (
        f'<span style="background:{colour};color:white;border-radius:3px;padding:0 5px;'
        f'font-size:11px;white-space:nowrap">{escape(status)}</span>'
    )


def grid_html(items: Sequence[tuple[str, str, str]]) -> str:
    """Labelled values in a grid: each ``(label, value, tooltip)`` a small label over its value.

    A value never breaks from its label; one that does not fit ends in an ellipsis, with the
    whole text (and the tooltip, when given: its label is underlined with dots) on hover.
    """
    cells = []
    for label, value, tip in items:
        title = escape(f"{value}\n{tip}" if tip else value)
        hint = f";text-decoration:underline dotted {MUTED};text-underline-offset:2px;cursor:help" if tip else ""
        span = ";grid-column:span 2" if len(value) > 20 else ""  # a long value takes two columns
        cells.append(
            f"<div title='{title}' style='min-width:0{span}'>"
            f"<div style='color:{MUTED};font-size:11px;white-space:nowrap{hint}'>{escape(label)}</div>"
            f"<div style='font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis'>"
            f"{escape(value)}</div></div>"
        )
    return (
        f"<div class='{NO_MATH}' style='display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));"
        f"gap:6px 16px;margin:2px 0 6px 0;line-height:1.35'>{''.join(cells)}</div>"
    )


def history_html(
    runs: Sequence[RunRecord],
    metric: str | None,
    best: RunRecord | None,
    *,
    columns: Sequence[str] = (),
    holdout: str | None = None,
    dividers: bool = True,
) -> str:
    """A table of runs: run, segment, status, primary metric, change against the best, secondary
    metrics, hypothesis (two lines at most). A divider row names the constraints where the
    segment changes from one row to the next.

    With a ``holdout`` metric, kept runs show it beside the primary one with their gap,
    and a kept run whose holdout got worse is marked.
    """
    held = [holdout, "gap"] if holdout else []
    head = ["run", "seg", "status", metric or "metric", *held, "vs best", *columns, "hypothesis / reason"]
    rows = ["<tr>" + "".join(f'<th style="{_NUMBER}">{escape(h)}</th>' for h in head) + "</tr>"]
    reference = best.metric if best else None
    previous: RunRecord | None = None
    for r in runs:
        if dividers and previous is not None and previous.segment != r.segment:
            rows.append(_divider(previous, r, len(head)))
        previous = r
        shown = []
        if holdout:
            difference = gap(r, metric, holdout) if r.kept else None
            shown = [
                escape(number(r.metrics.get(holdout) if r.kept else None, "")),
                "" if difference is None else escape(f"{difference:+.4g}"),
            ]
        badge = status_badge(r.status)
        if overfit(r):
            colour = status_style("crash").colour
            badge += f' <span title="{escape(r.flags["overfit"])}" style="color:{colour}">{OVERFIT_MARK}</span>'
        text = " ".join([note(r), *(f"[{n}]" for n in flag_notes(r) if not overfit(r) or n != r.flags["overfit"])])
        cells = [
            f'<td style="{_NUMBER}">{r.run}</td>',
            f'<td style="{_NUMBER}">{r.segment}</td>',
            f'<td style="{_NUMBER}">{badge}</td>',
            f'<td style="{_NUMBER}">{escape(number(r.metric, ""))}</td>',
            *(f'<td style="{_NUMBER}">{value}</td>' for value in shown),
            f'<td style="{_NUMBER}">{"" if best and r.run == best.run else escape(change(r.metric, reference))}</td>',
            *(f'<td style="{_NUMBER}">{escape(number(r.metrics.get(c), ""))}</td>' for c in columns),
            f'<td style="{_CELL};width:100%"><div style="{_CLAMP}" title="{escape(text)}">'
            f"{escape(short(text, 400))}</div></td>",
        ]
        weight = "font-weight:600;" if best is not None and r.run == best.run else ""
        rows.append(f'<tr style="{weight}">' + "".join(cells) + "</tr>")
    return (
        f'<table class="{NO_MATH}" style="border-collapse:collapse;font-size:12px;width:100%;line-height:1.4">'
        + "".join(rows)
        + "</table>"
    )


def _divider(above: RunRecord, below: RunRecord, span: int) -> str:
    """The row between two segments: the rules of the one above and of the one below."""

    def rules(run: RunRecord) -> str:
        return f"segment {run.segment}: {', '.join(run.constraints) or 'no constraints'}"

    return (
        f'<tr><td colspan="{span}" style="{_CELL};color:{MUTED};font-size:11px;border-bottom:1px dashed {MUTED};'
        f'border-top:1px dashed {MUTED}">▲ {escape(rules(above))}&emsp;▼ {escape(rules(below))}</td></tr>'
    )


def code_diff_html(before: str, code: str, *, title: str = "", names: tuple[str, str] = ("before", "after")) -> str:
    """A unified diff of ``code`` against ``before``, coloured for either theme, escaped."""
    lines = list(difflib.unified_diff(before.splitlines(), code.splitlines(), *names, lineterm=""))
    if not lines:
        lines = ["(the same code)"] if before else code.splitlines()
    styled = []
    for line in lines:
        if line.startswith("+") and not line.startswith("+++"):
            background = "rgba(76,175,80,0.18)"
        elif line.startswith("-") and not line.startswith("---"):
            background = "rgba(244,67,54,0.18)"
        else:
            background = "transparent"
        styled.append(f'<div style="background:{background}">{escape(line) or "&nbsp;"}</div>')
    heading = f"<div style='margin:4px 0'><b>{escape(title)}</b></div>" if title else ""
    return (
        f'{heading}<div class="{NO_MATH}" style="font-family:{_CODE_FONT};font-size:12px;white-space:pre;'
        f"line-height:1.45;"
        f"overflow-x:auto;max-height:360px;overflow-y:auto;border:1px solid {_BORDER};padding:4px;"
        f'color:var(--jp-content-font-color1, inherit)">{"".join(styled)}</div>'
    )


def output_html(record: RunRecord) -> str:
    """A run's error, what the checks found, its paired decision and the tails of its output."""
    parts = []
    if record.error:
        # A failed check's reason carries the tail of its output: keep its lines.
        parts.append(
            f"<div class='{NO_MATH}' style='line-height:1.4;margin:4px 0;white-space:pre-wrap'>"
            f"<b>{escape(record.status)}:</b> "
            f"{escape(record.error)}</div>"
        )
    if record.model_error:
        parts.append(f"<div class='{NO_MATH}' style='color:{MUTED}'>the model read: {escape(record.model_error)}</div>")
    warn = status_style("infeasible").colour
    for text in flag_notes(record):
        parts.append(f"<div class='{NO_MATH}' style='color:{warn}'>{OVERFIT_MARK} {escape(text)}</div>")
    if record.paired:
        parts.append(f"<div class='{NO_MATH}'>{escape(paired_text(record))}</div>")
    for label, text in (("stdout", record.stdout_tail), ("stderr", record.stderr_tail)):
        if text.strip():
            tail = "\n".join(text.rstrip().splitlines()[-30:])
            parts.append(
                f'<div><b>{label}</b></div><pre class="{NO_MATH}" style="font-size:11px;max-height:200px;'
                f'overflow:auto;margin:0;border:1px solid {_BORDER};padding:4px">{escape(tail)}</pre>'
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
        f"<div style='color:{MUTED}'>{len(runs) - len(shown)} earlier runs not shown</div>"
        if len(runs) > len(shown)
        else ""
    )
    return (
        f"<div class='{NO_MATH}'><b>autoresearch session {escape(name)}</b> — {escape(state)}; {len(runs)} runs; "
        f"{escape(metric or '')} baseline {escape(number(baseline))}, best {best_text}</div>{more}"
        + history_html(shown, metric, best, holdout=holdout)
    )
