"""Hidden metrics and the holdout: the model never reads them, the user sees them everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_recording
from llm_server import LLMServer, Reply, answer

import jupyter_autoresearch as ar
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.engine._loop import HIDDEN_NOT_ENFORCED

SCORING = """\
def report(chosen):
    print(f"METRIC score={chosen}")
    print(f"METRIC secret_cost={chosen * 1000 + 242.17:.2f}")
"""
HOLDOUT = """\
import csv
rows = list(csv.reader(open("latest.csv")))  # ZQXJ holdout code
print(f"METRIC holdout_score={chosen * 1.5 + 0.123:.3f}")
print(f"METRIC holdout_rows={len(rows)}")
"""


def cell(chosen: int, extra: str = "") -> str:
    return f"from scoring import report\n\nchosen = {chosen}\nreport(chosen)\n{extra}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scoring.py").write_text(SCORING)
    (tmp_path / "holdout.py").write_text(HOLDOUT)
    (tmp_path / "latest.csv").write_text("month,value\nZQXJ-holdout-row,7\n")
    (tmp_path / "bench.py").write_text(cell(3))
    return tmp_path


def prompts(server: LLMServer) -> str:
    return "\n".join(str(m.get("content")) for request in server.requests for m in request["messages"])


def test_hidden_metrics_and_the_holdout_never_reach_the_model(project: Path, llm: LLMServer) -> None:
    llm.add(
        answer("a larger choice", cell(5)),
        answer("much larger", cell(9)),  # breaks the hidden constraint
        answer("a bit larger, and one more printed line", cell(6, 'print("METRIC holdout_score=0")')),
    )
    session = ar.create_session(
        project / "bench.py",
        maximize="score",
        hidden=["secret_cost"],
        constraints=["secret_cost <= 8000"],
        holdout="holdout.py",
        holdout_inputs=["chosen"],
        holdout_files=["latest.csv"],
        model="openai/test-model",
        api_base=llm.url,
        max_iterations=3,
        timeout=20,
    )
    session.run()
    runs = session.runs
    assert [r.status for r in runs] == ["keep", "keep", "infeasible", "keep"]
    assert session.task.holdout == "holdout_score" and session.holdout_names == ("holdout_score", "holdout_rows")
    assert set(session.task.hidden) == {"secret_cost", "holdout_score", "holdout_rows"}
    # The user sees every hidden metric, and the full reason.
    assert runs[0].metrics == {"score": 3, "secret_cost": 3242.17, "holdout_score": 4.623, "holdout_rows": 2}
    assert runs[2].error == "secret_cost <= 8000 is violated (secret_cost = 9242.17)"
    assert runs[2].model_error == "refused by a hidden check"
    # A holdout metric the candidate prints itself is ignored, and the run flagged.
    assert runs[3].metrics["holdout_score"] == 9.123
    assert "holdout_score itself" in runs[3].flags["hidden_printed"]

    seen = prompts(llm)
    assert len(llm.requests) == 3
    assert "refused by a hidden check" in seen and "- run 3 (infeasible): refused by a hidden check" in seen
    for secret in ("secret_cost", "242.17", "8000", "holdout", "4.623", "7.623", "ZQXJ", "latest.csv", "csv.reader"):
        assert secret not in seen, secret
    document = (project / ".autoresearch" / "bench" / "prompt.md").read_text()
    for secret in ("secret_cost", "242.17", "holdout", "latest.csv"):
        assert secret not in document, secret

    # Everywhere else they are shown: the log, the DataFrame, the headers.
    lines = [json.loads(line) for line in (project / ".autoresearch" / "bench" / "log.jsonl").read_text().splitlines()]
    header = lines[0]
    assert header["hiddenMetrics"] == ["secret_cost", "holdout_score", "holdout_rows"]
    assert header["holdoutMetric"] == "holdout_score"
    logged = [line for line in lines if "run" in line]
    assert logged[2]["model_error"] == "refused by a hidden check" and logged[3]["flags"]["hidden_printed"]
    frame = session.runs_dataframe()
    assert list(frame["metrics.holdout_score"]) == [4.623, 7.623, 13.623, 9.123]
    assert frame.loc[4, "flags"] == {"hidden_printed": runs[3].flags["hidden_printed"]}


def test_the_task_the_model_drafts_never_names_hidden_metrics_or_files(project: Path, llm: LLMServer) -> None:
    llm.add(Reply("Objective: a high score.\nPrimary: score (higher)\nSecondary: none\nConstraints:\nOff limits:\n"))
    session = ar.create_session(
        project / "bench.py",
        hidden=["secret_cost"],
        holdout="holdout.py",
        holdout_inputs=["chosen"],
        holdout_files=["latest.csv"],
        model="openai/test-model",
        api_base=llm.url,
        max_iterations=1,
        timeout=20,
    )
    session.run()
    assert session.task.metric == "score"
    setup = prompts(llm)
    assert "- score = 3" in setup and "- bench.py" in setup and "- scoring.py" in setup
    for secret in ("secret_cost", "3242", "holdout", "latest.csv"):
        assert secret not in setup, secret


def test_the_primary_metric_cannot_be_hidden(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(project / "bench.py"), "--maximize", "score", "--hidden", "score", "--model", "replay:x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--hidden score: the primary metric is what the model optimises, so it cannot be hidden" in err


def test_holdout_code_and_data_are_unreadable_from_a_candidate_in_the_sandbox(project: Path, sandbox: str) -> None:
    peek = (
        "import sys\n"
        "def peek(name):\n"
        "    try:\n"
        "        return open(name).read()\n"
        "    except OSError as err:  # the sandbox refuses it\n"
        "        return ''\n"
        "seen = peek('latest.csv') + peek('holdout.py')\n"
        "print(f'METRIC peek={len(seen)}')\n"
        "print(seen, file=sys.stderr)\n"
    )
    recording = write_recording(project / "rec.jsonl", [("look around", cell(4, peek))], metric="score")
    session = ar.create_session(
        project / "bench.py",
        maximize="score",
        holdout="holdout.py",
        holdout_inputs=["chosen"],
        holdout_files=["latest.csv"],
        model=f"replay:{recording}",
        sandbox=sandbox,
        timeout=20,
    )
    session.run()
    baseline, looked = session.runs
    # The holdout, in its own worker, reads its data in either case.
    assert baseline.metrics["holdout_rows"] == 2 and looked.metrics["holdout_rows"] == 2
    if sandbox == "on":
        assert looked.metrics["peek"] == 0 and "ZQXJ" not in looked.stderr_tail
        assert HIDDEN_NOT_ENFORCED not in session.warnings
    else:
        assert looked.metrics["peek"] > 0 and "ZQXJ" in looked.stderr_tail
        assert HIDDEN_NOT_ENFORCED in session.warnings  # said in one line


def test_a_holdout_cell_headless_never_runs_where_candidates_run_nor_reaches_the_model(
    project: Path, llm: LLMServer
) -> None:
    import nbformat

    holdout_cell = HOLDOUT.replace("chosen * 1.5", "chosen * 2.5")
    cells = ["from scoring import report\nscale = 1", holdout_cell, f"%%autoresearch --maximize score\n{cell(3)}"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, project / "study.ipynb")
    llm.add(answer("larger", cell(4)))
    session = ar.create_session(
        project / "study.ipynb",
        holdout_cell=2,
        holdout_inputs="chosen",
        holdout_files="latest.csv",
        model="openai/test-model",
        api_base=llm.url,
        max_iterations=1,
        timeout=20,
    )
    session.run()
    assert [r.metrics["holdout_score"] for r in session.runs] == [7.623, 10.123]
    assert session.setup is not None and session.holdout_setup is not None
    assert session.setup.setup_code == ("from scoring import report\nscale = 1",)  # not the holdout cell
    assert session.holdout_setup.setup_code == ("from scoring import report\nscale = 1",)
    assert {"latest.csv", "study.ipynb"} <= set(session.setup.hidden)
    seen = prompts(llm)
    assert "ZQXJ" not in seen and "csv.reader" not in seen and "holdout" not in seen


def test_a_holdout_that_breaks_on_the_baseline_stops_in_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "holdout.py").write_text("print(f'METRIC holdout_score={undefined_name}')\n")
    recording = write_recording(project / "rec.jsonl", [], metric="score")
    argv = ["run", str(project / "bench.py"), "--maximize", "score", "--holdout", "holdout.py"]
    assert main([*argv, "--model", f"replay:{recording}"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "jupyter-autoresearch: error: the holdout failed on the baseline: holdout.py failed: NameError: name "
        "'undefined_name' is not defined; fix holdout.py"
    )
