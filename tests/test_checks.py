"""Correctness checks (``--check CMD``, ``--check-cell N``): run after a run that would be
kept, where candidates run; a failure makes the run ``checks_failed``."""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import need_sandbox, write_recording
from llm_server import LLMServer, answer

import jupyter_autoresearch as ar
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.cli._progress import ProgressPrinter
from jupyter_autoresearch.engine._checks import check_failure, check_output
from jupyter_autoresearch.protocol._settings import CheckSettings
from jupyter_autoresearch.views._html import history_html, output_html
from jupyter_autoresearch.views._plot import metric_figure
from jupyter_autoresearch.views._status import STATUS_STYLES

# Passes unless the candidate sets x = 3; every run logs itself, so the test sees which ran.
CHECK_SCRIPT = """\
echo "run of $(basename "$AUTORESEARCH_CANDIDATE")" >> checks.log
if grep -q 'x = 3' "$AUTORESEARCH_CANDIDATE"; then
  echo "checking the plan"
  echo "AssertionError: x = 3 double-counts segment 7" >&2
  exit 4
fi
echo "all 3 checks passed"
"""


# A check command's guard: it acts only on the candidate of run 2.
ONLY_RUN_2 = "grep -q 'x = 2' \"$AUTORESEARCH_CANDIDATE\" || exit 0"


def cell(x: float) -> str:
    return f"x = {x}\nprint(f'METRIC x={{x}}')\n"


def empty(folder: Path) -> Path:
    """A recording without proposals."""
    return write_recording(folder / "rec.jsonl", [])


def statuses(session: ar.Session) -> list[str]:
    return [r.status for r in session.runs]


def test_a_failing_check_makes_a_would_be_keep_checks_failed_and_the_next_prompt_carries_its_output(
    tmp_path: Path, llm: LLMServer
) -> None:
    (tmp_path / "bench.py").write_text(cell(1))
    (tmp_path / "check.sh").write_text(CHECK_SCRIPT)
    llm.add(
        answer("two", cell(2)),
        answer("three", cell(3)),
        answer("worse", cell(0.5)),
        "DONE: enough",
    )
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model="openai/test",
        api_base=llm.url,
        checks=["bash check.sh"],
        timeout=30,
    )
    session.run()
    assert statuses(session) == ["keep", "keep", "checks_failed", "discard"]
    failed = session.runs[2]
    assert failed.metric == 3 and not failed.kept and session.best_run.run == 2  # measured, never best
    head, _, tail = str(failed.error).partition("\n")
    assert head == (
        "check `bash check.sh` failed (exited with status 4): AssertionError: x = 3 double-counts segment 7"
    )
    assert tail == "checking the plan\nAssertionError: x = 3 double-counts segment 7"  # stdout, then stderr
    # The baseline and both would-be keeps were checked; the discarded run was not.
    assert len((tmp_path / "checks.log").read_text().splitlines()) == 3
    # The model is told about the check up front, and sees the failure's output next time.
    first, after = llm.requests[1]["messages"][1]["content"], llm.requests[3]["messages"][1]["content"]
    assert "## Correctness checks" in first and "`bash check.sh`" in first and "$AUTORESEARCH_CANDIDATE" in first
    assert "## Last failed check (run 3; its metric was not kept)" in after
    assert "checking the plan\nAssertionError: x = 3 double-counts segment 7" in after
    assert "- run 3 (checks_failed): check `bash check.sh` failed (exited with status 4)" in after
    logged = [json.loads(line) for line in (session.folder / "log.jsonl").read_text().splitlines()]
    assert [line["status"] for line in logged if "run" in line] == ["keep", "keep", "checks_failed", "discard"]


def test_passing_checks_keep_the_run(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", [("two", cell(2))])
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{recording}",
        checks=['test -s "$AUTORESEARCH_CANDIDATE"', 'grep -q METRIC "$AUTORESEARCH_CANDIDATE"'],
    )
    started: list[tuple[int, str]] = []
    session.subscribe(lambda e: started.append((e.run, e.label)) if isinstance(e, ar.CheckStarted) else None)
    session.run()
    assert statuses(session) == ["keep", "keep"] and session.best_run.run == 2
    labels = [check.label for check in session.checks]
    assert labels == ['check `test -s "$AUTORESEARCH_CANDIDATE"`', 'check `grep -q METRIC "$AUTORESEARCH_CANDIDATE"`']
    assert started == [(run, label) for run in (1, 2) for label in labels]  # the baseline's, then run 2's


@pytest.mark.parametrize(
    "checks",
    [
        {"checks": [f"{ONLY_RUN_2}; sleep 60"]},
        {"check_cell": 2},
    ],
    ids=["command", "cell"],
)
def test_a_check_that_hangs_times_out_as_a_failure(tmp_path: Path, checks: dict[str, Any]) -> None:
    recording = write_recording(tmp_path / "rec.jsonl", [("two", cell(2)), ("four", cell(4))])
    cells = [
        f"%%autoresearch --maximize x --model replay:{recording.name}\n{cell(1)}",
        "import time\nif x == 2:\n    time.sleep(60)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, tmp_path / "nb.ipynb")
    session = ar.create_session(tmp_path / "nb.ipynb", check_timeout=1, timeout=20, **checks)
    session.run()
    assert statuses(session) == ["keep", "checks_failed", "keep"]  # the hang costs its run, not the session
    label = session.checks[0].label
    assert str(session.runs[1].error) == f"{label} failed (timed out after 1s; raise --check-timeout to allow longer)"


def notebook_with_a_check_cell(tmp_path: Path, magic_line: str = "") -> Path:
    """A notebook whose check cell sits above the benchmark (so it must not run as setup)."""
    recording = write_recording(
        tmp_path / "rec.jsonl",
        [
            ("four", "result = base * 4\nprint(f'METRIC x={result}')"),
            ("five", "result = base * 5\nprint(f'METRIC x={result}')"),
        ],
    )
    cells = [
        "base = 1",
        "assert result % 2 == 0, f'{result} is odd'\nprint('the plan is even')",
        f"%%autoresearch --maximize x --model replay:{recording.name} {magic_line}\n"
        "result = base * 2\nprint(f'METRIC x={result}')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, tmp_path / "nb.ipynb")
    return tmp_path / "nb.ipynb"


def test_a_check_cell_of_a_notebook_run_headless(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = notebook_with_a_check_cell(tmp_path)
    assert main(["run", str(path), "--check-cell", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    session = ar.load_session(summary["folder"])
    assert statuses(session) == ["keep", "keep", "checks_failed"]
    assert [r.metric for r in session.runs] == [2, 4, 5] and summary["best"]["run"] == 2
    error = str(session.runs[2].error)
    assert error.startswith("check cell 2 failed (AssertionError: 5 is odd)\n")
    assert "Traceback" in error and 'File "<check cell>", line 1' in error
    assert "the plan is even" not in error  # the cell failed before printing


def test_a_check_cell_from_the_magic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from jupyter_autoresearch.notebook import _registry

    path = notebook_with_a_check_cell(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=Config())
    try:
        ip.run_line_magic("load_ext", "jupyter_autoresearch")
        ip.user_ns["__session__"] = str(path)  # as ipykernel sets it when JupyterLab names the notebook
        ip.run_cell("base = 1")
        source = nbformat.read(path, as_version=4).cells[2].source
        line, _, body = source.partition("\n")
        ip.run_cell_magic("autoresearch", line.removeprefix("%%autoresearch") + " --check-cell 2 --wait", body)
        session = ip.user_ns["_autoresearch"]
        assert session.name == "nb" and statuses(session) == ["keep", "keep", "checks_failed"]
        assert str(session.runs[2].error).startswith("check cell 2 failed (AssertionError: 5 is odd)")
    finally:
        for session in _registry.sessions().values():
            session.stop()
            session.wait(10)
        _registry._SESSIONS.clear()
        _registry._ORDER.clear()
        InteractiveShell.clear_instance()


@pytest.mark.parametrize(
    "checks, message",
    [
        ({"check_cell": 2}, "--check-cell 2: bench.py is a script, which has no cells; use --check CMD instead"),
        ({"checks": ["  "]}, "checks=['  '] is empty; write the command that checks a run"),
    ],
)
def test_unusable_checks_are_one_line(tmp_path: Path, checks: dict[str, Any], message: str) -> None:
    (tmp_path / "bench.py").write_text(cell(1))
    with pytest.raises(ar.AutoresearchError) as raised:
        ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{empty(tmp_path)}", **checks)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_bad_check_cells_are_one_line(tmp_path: Path) -> None:
    path = notebook_with_a_check_cell(tmp_path)
    for number, message in [
        (9, "--check-cell 9 is out of range: nb.ipynb has 3 code cells"),
        (3, "--check-cell 3 is a %%autoresearch cell; give the number of the cell that checks a run"),
    ]:
        with pytest.raises(ar.TargetError) as raised:
            ar.create_session(path, check_cell=number)
        assert str(raised.value) == message


def test_the_options_work_on_every_front(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_autoresearch.engine._options import RunConfig, argv_layer, magic_layer, new_parser, trait_layer

    expected = CheckSettings(commands=("pytest -q", "ruff check ."), cell=4, timeout=60)
    line = magic_layer("--check 'pytest -q' --check 'ruff check .' --check-cell 4 --check-timeout 60")
    traits = trait_layer({"check": ["pytest -q", "ruff check ."], "check_cell": 4, "check_timeout": 60.0})
    parser = new_parser("x")
    from jupyter_autoresearch.engine._options import CLI, add_options

    add_options(parser, CLI)
    cli = argv_layer(parser.parse_args(["--check", "pytest -q", "--check", "ruff check .", "--check-cell", "4",
                                        "--check-timeout", "60"]))  # fmt: skip
    for layer in (line, traits, cli):
        assert RunConfig.resolve(layer).checks == expected
    assert RunConfig.resolve().checks == CheckSettings(timeout=300)  # pi-autoresearch's default
    (tmp_path / "bench.py").write_text(cell(1))
    session = ar.create_session(
        tmp_path / "bench.py", model=f"replay:{empty(tmp_path)}", checks="pytest -q", check_timeout=5
    )
    assert session.checks == (ar.Check.command("pytest -q", timeout=5),)


def test_a_check_cannot_write_off_limits_files_or_the_session_log(tmp_path: Path) -> None:
    need_sandbox()
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "bench.py").write_text("open('data.csv').read()\n" + cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", [("two", cell(2))])
    log = tmp_path / ".autoresearch" / "bench" / "log.jsonl"
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{recording}",
        off_limits=["data.csv"],
        sandbox="on",
        checks=[f"{ONLY_RUN_2}; echo tampered >> {log}; echo tampered >> data.csv"],
    )
    session.run()
    assert statuses(session) == ["keep", "checks_failed"]
    tail = str(session.runs[1].error).split("\n", 1)[1]
    assert [line.split(": ", 1)[1] for line in tail.splitlines()] == [
        f"line 1: {log}: Read-only file system",  # bash's own words, from inside the sandbox
        "line 1: data.csv: Read-only file system",
    ]
    assert (tmp_path / "data.csv").read_text() == "a\n1\n"
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # nothing but the log's own lines
    assert [line.get("type", "run") for line in lines] == ["config", "run", "run", "stop"]
    assert not list(log.parent.glob("log.jsonl.damaged-*"))
    assert session.warnings == ()


def test_unconfined_a_check_that_changes_off_limits_files_fails_and_the_file_is_restored(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "bench.py").write_text("open('data.csv').read()\n" + cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", [("two", cell(2))])
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{recording}",
        off_limits=["data.csv"],
        sandbox="off",
        checks=[f"{ONLY_RUN_2}; echo tampered >> data.csv"],
    )
    session.run()
    assert statuses(session) == ["keep", "checks_failed"]
    assert str(session.runs[1].error) == (
        f"check `{ONLY_RUN_2}; echo tampered >> data.csv` failed (it changed off-limits file data.csv, restored)"
    )
    assert (tmp_path / "data.csv").read_text() == "a\n1\n"


def test_checks_failed_has_its_colour_in_the_views(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", [("three", cell(3))])
    (tmp_path / "check.sh").write_text(CHECK_SCRIPT)
    session = ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{recording}",
                                checks=["bash check.sh"])  # fmt: skip
    printed = io.StringIO()
    session.subscribe(ProgressPrinter(printed, colour=True))
    session.run()
    style = STATUS_STYLES["checks_failed"]
    assert f"\x1b[{style.ansi}mchecks_failed" in printed.getvalue()
    assert "check `bash check.sh` failed (exited with status 4)" in printed.getvalue()
    assert style.colour in history_html(session.runs, "x", session.best_run)
    detail = output_html(session.runs[1])  # the panel's run detail keeps the output's lines
    assert "white-space:pre-wrap'><b>checks_failed:</b> check `bash check.sh` failed" in detail
    assert "checking the plan\nAssertionError: x = 3 double-counts segment 7" in detail
    figure = metric_figure(session.runs, "x")
    assert "checks failed" in figure.axes[0].get_legend_handles_labels()[1]


def test_an_evaluator_without_checks_is_refused_before_any_run(tmp_path: Path) -> None:
    class Plain(ar.Evaluator):
        def start(self, setup: ar.WorkerSetup) -> None:
            pass

        def submit(self, code: str, on_start: Any = None, *, export: Any = ()) -> Future[ar.Outcome]:
            done: Future[ar.Outcome] = Future()
            done.set_result(ar.Outcome(kind="ok", metrics={"x": 1.0}))
            return done

        def protect(self, patterns: Any) -> None:
            pass

    (tmp_path / "bench.py").write_text(cell(1))
    session = ar.create_session(
        tmp_path / "bench.py", maximize="x", model=f"replay:{empty(tmp_path)}", evaluator=Plain(), checks=["true"]
    )
    with pytest.raises(ar.EvaluationError, match="Plain cannot run correctness checks"):
        session.run()
    assert session.runs == ()


def test_a_stop_during_a_check_abandons_the_run(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", [("two", cell(2))])
    session = ar.create_session(
        tmp_path / "bench.py", maximize="x", model=f"replay:{recording}", checks=[f"{ONLY_RUN_2}; sleep 60"]
    )
    checking = threading.Event()
    session.subscribe(lambda e: checking.set() if isinstance(e, ar.CheckStarted) and e.run == 2 else None)
    session.start()
    assert checking.wait(60)
    session.stop()
    session.wait(30)
    assert session.state == "stopped" and session.stop_reason == "user"
    assert statuses(session) == ["keep"]  # run 2 was not judged without its check


def test_the_output_a_reason_keeps_is_the_tail_stdout_then_stderr() -> None:
    check = ar.Check.command("make test")
    lines = "\n".join(f"line {i}" for i in range(200))
    outcome = ar.Outcome(kind="crash", error="exited with status 2", stdout_tail=lines, stderr_tail="boom\n")
    reason = str(check_failure(check, outcome))
    head, _, tail = reason.partition("\n")
    assert head == "check `make test` failed (exited with status 2): boom"
    assert tail.splitlines() == [f"line {i}" for i in range(121, 200)] + ["boom"]  # the last 80 lines
    wide = ar.Outcome(kind="crash", error="exited with status 1", stderr_tail="x" * 10_000)
    assert len(check_output(wide)) == 4000
    assert check_failure(check, ar.Outcome(kind="ok")) is None
    quiet = check_failure(ar.Check.cell("assert False", 3), ar.Outcome(kind="crash", error="AssertionError"))
    assert quiet == "check cell 3 failed (AssertionError)"  # no output: one line
