"""The session folder's task document (``prompt.md``): objective, metrics, rules, what was tried.

The engine keeps it current; a proposer may put it in its prompt (ours do), and a person
reads it to see where a session stands.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..protocol._format import note, number, short
from ..protocol._records import RunRecord
from ..protocol._redact import redact
from ..protocol._task import TaskSpec

__all__ = ["run_table", "task_document"]

_TABLE_ROWS = 30


def run_table(history: Sequence[RunRecord], metric: str | None, rows: int = _TABLE_ROWS) -> str:
    """A compact markdown table of the latest runs."""
    if not history:
        return "(no runs yet)"
    shown = history[-rows:]
    lines = []
    if len(history) > rows:
        lines.append(f"({len(history) - rows} earlier runs not shown)")
    lines += [
        "| run | seg | status | " + (metric or "metric") + " | other metrics | hypothesis / error |",
        "|---|---|---|---|---|---|",
    ]
    for r in shown:
        others = ", ".join(f"{k}={number(v)}" for k, v in r.metrics.items() if k != metric)
        lines.append(
            f"| {r.run} | {r.segment} | {r.status} | {number(r.metric)} | {short(others, 80)} "
            f"| {short(note(r), 120).replace('|', '/')} |"
        )
    return "\n".join(lines)


def task_document(
    task: TaskSpec,
    history: Sequence[RunRecord],
    *,
    name: str,
    best: RunRecord | None = None,
) -> str:
    """The task document (``prompt.md``): objective, metrics, rules, what was tried."""
    out = [f"# {name}", "", "## Objective", task.objective.strip() or task.title, ""]
    out += ["## Metrics", f"- primary: `{task.metric}` ({task.direction_text})"]
    out += [f"- secondary: `{m}`" for m in task.secondary]
    out += ["", "## Constraints"]
    out += [f"- `{c}`" for c in task.constraints] or ["- none"]
    out += ["", "## Off limits (must not be changed)"]
    out += [f"- `{p}`" for p in task.off_limits] or ["- none"]
    out += ["", "## What has been tried", run_table(history, task.metric)]
    if best is not None:
        out += ["", f"Best so far: run {best.run}, {task.metric} = {number(best.metric)}."]
    return redact("\n".join(out) + "\n")
