"""What the model reads (the prompts) and the session's task document."""

from __future__ import annotations

import pytest

from jupyter_autoresearch import ProposalContext, ProposalError, RunRecord, TaskSpec, parse_constraint
from jupyter_autoresearch.journal._document import run_table, task_document
from jupyter_autoresearch.proposers._prompt import inference_request, parse_task_draft, proposal_request

TASK = TaskSpec(
    metric="revenue",
    constraints=(parse_constraint("spend <= 30"),),
    off_limits=("data.csv",),
    objective="Fund the best campaigns.",
    secondary=("spend",),
)


def record(run: int, status: str, metric: float | None, **fields: object) -> RunRecord:
    return RunRecord(run=run, segment=0, status=status, metric=metric, metrics={"revenue": metric or 0, "spend": 29},
                     **fields)  # type: ignore[arg-type]  # fmt: skip


HISTORY = (
    record(1, "keep", 100.0, code="plan()\n", hypothesis="Baseline."),
    record(2, "crash", None, hypothesis="use a solver", error="ImportError: no solver",
           stderr_tail="Traceback\nImportError: no solver\n"),
    record(3, "invalid", None, error="the answer has no code", asi={"answer": "I think we should rank."}),
    record(4, "discard", 99.0, hypothesis="rank by users", error="revenue 99 vs best 100: not better"),
)  # fmt: skip


def test_the_task_document_says_what_to_do_and_what_was_tried() -> None:
    document = task_document(TASK, HISTORY, name="plan", best=HISTORY[0])
    assert document.startswith("# plan\n\n## Objective\nFund the best campaigns.\n")
    assert "- primary: `revenue` (higher is better)" in document and "- secondary: `spend`" in document
    assert "- `spend <= 30`" in document and "- `data.csv`" in document
    assert "| 2 | 0 | crash | - | spend=29 | use a solver [ImportError: no solver] |" in document
    assert document.endswith("Best so far: run 1, revenue = 100.\n")


def test_the_run_table_shows_the_latest_runs() -> None:
    many = tuple(record(i, "discard", float(i)) for i in range(1, 41))
    table = run_table(many, "revenue", rows=30)
    assert table.startswith("(10 earlier runs not shown)") and "| 40 |" in table and "| 10 |" not in table
    assert run_table((), "revenue") == "(no runs yet)"


def test_the_iteration_prompt_learns_from_failures_and_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "tok-secret-123456")
    context = ProposalContext(
        task=TASK,
        history=HISTORY,
        best=HISTORY[0],
        ideas=("try a MILP",),
        notes=("prefer numpy", "tok-secret-123456"),
        document="# the document\n",
    )
    prompt = proposal_request(context)
    assert prompt.startswith("# the document\n")  # the session's prompt.md, as given
    assert "## Last crash (run 2)\nImportError: no solver\n```\nTraceback\nImportError: no solver\n```" in prompt
    assert "- run 4 (discard): revenue 99 vs best 100: not better" in prompt
    assert (
        "## Your last answer could not be used\nthe answer has no code. It was:\n~~~\nI think we should rank." in prompt
    )
    assert "## Ideas backlog\n- try a MILP" in prompt and "- prefer numpy" in prompt
    assert "## Current best cell (run 1, revenue = 100)\n```python\nplan()\n```" in prompt
    assert "tok-secret-123456" not in prompt and "[SERVICE_TOKEN redacted]" in prompt


def test_the_setup_request_and_its_answer() -> None:
    request = inference_request("print('METRIC revenue=1')", {"revenue": 1.0, "spend": 2.0}, ["data.csv"])
    assert "## Metrics it printed\n- revenue = 1\n- spend = 2" in request and "- data.csv" in request
    draft = parse_task_draft(
        "Objective: more revenue.\n**Primary:** `revenue` (maximize)\nSecondary: spend, unknown\n"
        "Constraints:\n- spend <= 30\n- a prose rule\n- clicks >= 3\nOff limits:\n- data.csv\n",
        {"revenue": 1.0, "spend": 2.0},
    )
    assert (draft.metric, draft.direction, draft.objective) == ("revenue", "higher", "more revenue.")
    assert draft.secondary == ("spend",) and draft.constraints == ("spend <= 30",) and draft.off_limits == ("data.csv",)
    with pytest.raises(ProposalError, match=r"could not infer a primary metric the cell prints \(revenue\)"):
        parse_task_draft("Primary: profit (higher)", {"revenue": 1.0})
