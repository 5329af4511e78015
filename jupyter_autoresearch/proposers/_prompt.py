"""What a language model reads and how its answers are read: the system prompts, the
user message of each iteration, and the setup request that infers the task."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..journal._document import task_document
from ..protocol._checks import CANDIDATE_VARIABLE, Check
from ..protocol._constraints import parse_constraint
from ..protocol._errors import ConstraintError, ProposalError
from ..protocol._format import number
from ..protocol._redact import redact
from ..protocol._task import Direction, TaskDraft
from ._propose import ProposalContext

__all__ = ["INFERENCE_SYSTEM", "SYSTEM", "inference_request", "parse_task_draft", "proposal_request"]

SYSTEM = """\
You are an experiment agent working on one notebook cell. The cell is a benchmark: it \
prints lines `METRIC name=value`. Each turn you propose ONE changed version of the cell \
that you expect to improve the primary metric while satisfying every constraint. The \
harness runs your cell in a fresh process, reads its METRIC lines, and keeps it only if \
the primary metric improves and all constraints hold; otherwise it is discarded.

Answer in plain text, exactly in this form:

Hypothesis: <one or two sentences: what you change and why it should help>
```python
<the complete new cell, printing the same METRIC lines>
```

Rules: write the complete cell, not a diff; keep printing every METRIC line the cell \
prints now; do not modify files listed as off limits; do not fake or hard-code metric \
values. You may add lines `Idea: <text>` for promising ideas to try later. When you \
believe nothing more is worth trying, answer with a single line `DONE: <reason>` instead.\
"""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def proposal_request(context: ProposalContext) -> str:
    """The user message of one iteration."""
    task, history = context.task, context.history
    parts = [context.document or task_document(task, history, name=task.title, best=context.best)]
    if context.checks:
        parts.append(_checks_section(context.checks))
    segment_runs = [r for r in history if r.segment == context.segment]
    crashes = [r for r in segment_runs if r.status in ("crash", "timeout")]
    if crashes and (crashes[-1].stderr_tail or crashes[-1].error):
        last = crashes[-1]
        parts.append(f"## Last crash (run {last.run})\n{last.error or ''}\n```\n{_tail(last.stderr_tail)}\n```")
    failed_checks = [r for r in segment_runs if r.status == "checks_failed" and r.error]
    if failed_checks:
        last = failed_checks[-1]
        head, _, output = str(last.error).partition("\n")
        shown = f"\n~~~\n{output}\n~~~" if output.strip() else ""
        parts.append(f"## Last failed check (run {last.run}; its metric was not kept)\n{head}{shown}")
    reasons = [
        f"- run {r.run} ({r.status}): {r.error.splitlines()[0]}"
        for r in segment_runs[-8:]
        if r.status in ("discard", "infeasible", "violation", "invalid", "checks_failed") and r.error
    ]
    if reasons:
        parts.append("## Why recent runs were not kept\n" + "\n".join(reasons))
    invalid = [r for r in history[-3:] if r.status == "invalid" and r.asi.get("answer")]
    if invalid:
        text = str(invalid[-1].asi["answer"])[-1500:]
        parts.append(
            "## Your last answer could not be used\n"
            f"{invalid[-1].error}. It was:\n~~~\n{text}\n~~~\nAnswer in the required form."
        )
    if context.ideas:
        parts.append("## Ideas backlog\n" + "\n".join(f"- {i}" for i in context.ideas[-20:]))
    if context.notes:
        parts.append("## Notes from the analyst (follow them)\n" + "\n".join(f"- {n}" for n in context.notes))
    best = context.best
    parts.append(
        f"## Current best cell (run {best.run}, {task.metric} = {number(best.metric)})\n"
        f"```python\n{best.code.rstrip()}\n```"
    )
    parts.append("Propose the next change.")
    return redact("\n\n".join(parts))


def _checks_section(checks: Sequence[Check]) -> str:
    """What the model must know of the correctness checks (pi-autoresearch tells its agent too)."""
    lines = [
        "## Correctness checks",
        "A run whose metric would be kept is kept only if every check passes; otherwise it is "
        "`checks_failed` and not kept. A check's time does not count in the metric.",
    ]
    for check in checks:
        if check.kind == "command":
            lines.append(
                f"- `{check.source.strip()}`: a shell command run in the cell's folder after your cell, with your "
                f"cell's code in the file ${CANDIDATE_VARIABLE}; it must exit 0."
            )
        else:
            lines.append(
                f"- {check.label}: run after your cell, in the variables your cell leaves; it must not raise:\n"
                f"```python\n{check.source.rstrip()}\n```"
            )
    return "\n".join(lines)


INFERENCE_SYSTEM = """\
You set up an optimisation task for a notebook cell that prints `METRIC name=value` lines. \
Read the cell and the metrics it printed, then answer in exactly this form:

Objective: <one sentence: what the analyst wants>
Primary: <metric name> (higher|lower)
Secondary: <comma-separated other metric names, or none>
Constraints:
- <metric expression> <op> <number>   (only limits you can see in the code or data; op is <=, <, >=, > or ==)
Off limits:
- <data files the cell reads, which must not be changed>
"""


def inference_request(code: str, metrics: Mapping[str, float], files: Sequence[str]) -> str:
    """The user message of the one setup request that infers the task."""
    shown = "\n".join(f"- {k} = {number(v)}" for k, v in metrics.items()) or "- (none)"
    listed = "\n".join(f"- {f}" for f in files) or "- (none)"
    return redact(
        f"## The cell\n```python\n{code.rstrip()}\n```\n\n## Metrics it printed\n{shown}\n\n"
        f"## Files in its folder\n{listed}\n"
    )


_PRIMARY = re.compile(r"^\W*primary\W*:[\s*_]*`?([\w.µ]+)`?\s*\(?\s*(higher|lower|max\w*|min\w*)", re.I | re.M)


def parse_task_draft(text: str, metrics: Mapping[str, float]) -> TaskDraft:
    """Read the inferred task; raises ProposalError when it is unusable."""
    primary = _PRIMARY.search(text)
    if not primary or primary.group(1) not in metrics:
        raise ProposalError(
            "the model could not infer a primary metric the cell prints "
            f"({', '.join(metrics) or 'none'}); pass --maximize METRIC or --minimize METRIC"
        )
    word = primary.group(2).lower()
    direction: Direction = "higher" if word.startswith(("higher", "max")) else "lower"
    objective = re.search(r"^\W*objective\W*:\s*(.+)$", text, re.I | re.M)
    secondary_line = re.search(r"^\W*secondary\W*:\s*(.+)$", text, re.I | re.M)
    secondary = tuple(
        name
        for name in re.split(r"[,\s`]+", secondary_line.group(1) if secondary_line else "")
        if name in metrics and name != primary.group(1)
    )
    constraints: list[str] = []
    for item in _section(text, "constraints"):
        try:
            constraint = parse_constraint(item)
        except ConstraintError:
            continue  # a prose line or a rule we cannot check is left out, not fatal
        if constraint.names <= metrics.keys():
            constraints.append(str(constraint))
    return TaskDraft(
        objective=objective.group(1).strip() if objective else "",
        metric=primary.group(1),
        direction=direction,
        secondary=secondary,
        constraints=tuple(constraints),
        off_limits=tuple(f for f in _section(text, "off limits") if f.lower() != "none"),
    )


def _section(text: str, title: str) -> list[str]:
    match = re.search(rf"^\W*{title}\W*:\s*\n((?:\s*[-*].*\n?)*)", text, re.I | re.M)
    if not match:
        return []
    return [line.strip().lstrip("-*").strip().strip("`") for line in match.group(1).splitlines() if line.strip()]
