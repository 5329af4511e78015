"""The notebook front without a browser: magics in an in-process IPython, widget state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import metric_cell, stops_added, write_recording
from llm_server import LLMServer, Reply, answer

import jupyter_autoresearch as ar


def magic(ip: Any, line: str, cell: str) -> None:
    ip.run_cell_magic("autoresearch", line, cell)


def test_wait_runs_the_loop_and_leaves_the_final_panel(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(
        tmp_path / "rec.jsonl", [("scale it", "print(f'METRIC x={base * 2}')\nprint('METRIC cost=1')")]
    )
    ip.run_cell("base = 21")
    magic(
        ip,
        f"--maximize x --model replay:{rec} --session s1 --wait",
        "print(f'METRIC x={base}')\nprint('METRIC cost=1')",
    )
    session = ip.user_ns["_autoresearch"]
    assert session.name == "s1" and session.state == "stopped" and session.stop_reason == "done"
    assert [r.metric for r in session.runs] == [21.0, 42.0]
    assert ip.user_ns["base"] == 21  # candidates never touch the user's namespace
    assert session.best.code.startswith("print(f'METRIC x={base * 2}')")
    assert list(session.history.index) == [1, 2]
    assert "<b>autoresearch session s1</b>" in session._repr_html_()
    assert ar.sessions()["s1"] is session


def test_magic_returns_at_once_and_the_kernel_stays_usable(ip: Any, tmp_path: Path) -> None:
    slow = [(f"h{i}", metric_cell(i + 2, "import time\ntime.sleep(0.3)")) for i in range(5)]
    rec = write_recording(tmp_path / "rec.jsonl", slow)
    started = time.monotonic()
    magic(ip, f"--maximize x --model replay:{rec}", metric_cell(1))
    assert time.monotonic() - started < 3
    session = ip.user_ns["_autoresearch"]
    assert session.state in ("idle", "running")
    result = ip.run_cell("answer = 6 * 7")  # another cell runs while the loop works
    assert result.success and ip.user_ns["answer"] == 42
    assert session.state == "running" or len(session.runs) < 6
    session.wait(60)
    assert session.stop_reason == "done" and len(session.runs) == 6


def test_line_magics_control_a_running_session(ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = [(f"h{i}", metric_cell(i + 2, "import time\ntime.sleep(0.3)")) for i in range(20)]
    rec = write_recording(tmp_path / "rec.jsonl", slow)
    magic(ip, f"--maximize x --model replay:{rec} --session ctl", metric_cell(1))
    session = ip.run_line_magic("autoresearch", "session")
    assert session is ip.user_ns["_autoresearch"]
    deadline = time.monotonic() + 30
    while len(session.runs) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    ip.run_line_magic("autoresearch", 'steer "prefer numpy" --session ctl')
    assert session.notes == ["prefer numpy"]
    ip.run_line_magic("autoresearch", "constraints 'cost <= 1'")
    ip.run_line_magic("autoresearch", "status")
    assert "ctl: running" in capsys.readouterr().out
    while session.segment == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    ip.run_line_magic("autoresearch", "stop")
    session.wait(30)
    assert session.stop_reason == "user"
    assert ip.run_line_magic("autoresearch", "history").shape[0] == len(session.runs)
    ip.run_line_magic("autoresearch", "constraints")
    assert "cost <= 1" in capsys.readouterr().out


def failed_cell(ip: Any, capsys: pytest.CaptureFixture[str], source: str) -> tuple[Exception, str]:
    """Run a cell that must fail; its error and everything it printed."""
    result = ip.run_cell(source)
    captured = capsys.readouterr()
    assert not result.success and result.error_in_exec is not None
    return result.error_in_exec, captured.out + captured.err


@pytest.mark.parametrize(
    "line, cell, message",
    [
        ("--maximise x", "print(1)", "unknown option --maximise; did you mean --maximize?"),
        ("--maximize x --model replay:r", "   \n", "the %%autoresearch cell is empty"),
        ("--maximize x --model replay:r", "%time x = 1", "candidates run as plain Python"),
        ("--maximize x --constraint 'x !! 1' --model replay:r", "print(1)", "cannot be read"),
        ("--maximize x --model 'replay:r", "print(1)", "check the quotes"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    ip: Any, capsys: pytest.CaptureFixture[str], line: str, cell: str, message: str
) -> None:
    error, shown = failed_cell(ip, capsys, f"%%autoresearch {line}\n{cell}")
    assert isinstance(error, ar.AutoresearchError) and message in str(error)
    assert message in shown and "Traceback" not in shown and len(shown.strip().splitlines()) == 1


def test_missing_primary_metric_is_reported_in_wait_mode(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [])
    error, shown = failed_cell(
        ip, capsys, f"%%autoresearch --maximize revenue --model replay:{rec} --wait\nprint('METRIC cost=1')"
    )
    assert isinstance(error, ar.BaselineError) and error.metric == "revenue"
    assert "the baseline printed no METRIC revenue (it printed cost)" in shown and "Traceback" not in shown


def test_a_variable_that_cannot_be_shipped_is_named(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell("import threading\nlock = threading.Lock()", store_history=True)
    _, shown = failed_cell(
        ip, capsys, "%%autoresearch --maximize x --model replay:r\nwith lock:\n    print('METRIC x=1')"
    )
    assert "cannot send variable 'lock' (lock) to the evaluation worker" in shown
    assert "--setup-cells 1 (the In[] number of the cell that defines it)" in shown


def test_setup_cells_rebuild_state_in_the_worker(ip: Any, tmp_path: Path) -> None:
    ip.run_cell("import threading\nlock = threading.Lock()\nvalue = 5", store_history=True)
    rec = write_recording(tmp_path / "rec.jsonl", [])
    magic(ip, f"--maximize x --model replay:{rec} --setup-cells 1 --wait", "with lock:\n    print(f'METRIC x={value}')")
    assert ip.user_ns["_autoresearch"].runs[0].metric == 5


def test_traitlets_config_sets_defaults_and_the_line_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm: LLMServer
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    config = Config()
    config.AutoresearchMagics.model = "openai/test"
    config.AutoresearchMagics.api_base = llm.url
    config.AutoresearchMagics.max_iterations = 1
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "jupyter_autoresearch")
    llm.add(answer("a", metric_cell(2)), answer("b", metric_cell(3)), answer("c", metric_cell(4)))
    shell.run_cell_magic("autoresearch", "--maximize x --wait --session cfg", metric_cell(1))
    assert len(shell.user_ns["_autoresearch"].runs) == 2  # max_iterations 1 from config
    shell.run_cell_magic("autoresearch", "--maximize x --wait --session cfg --max-iterations 2", metric_cell(1))
    assert len(shell.user_ns["_autoresearch"].runs) == 4  # the magic line wins, and the session resumed
    InteractiveShell.clear_instance()


def test_panel_state_follows_the_session(ip: Any, tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    rec = write_recording(
        tmp_path / "rec.jsonl",
        [
            ("better", metric_cell(2)),
            ("pricey", metric_cell(5).replace("cost=1", "cost=9")),
            ("crash", "raise KeyError('x')"),
        ],
    )
    session = ar.create_session(_script(tmp_path), maximize="x", model=f"replay:{rec}", constraints=["cost <= 2"])
    panel = Panel(session)
    session.run()
    history = panel.history.value
    assert history.count("<tr") == 5 and ">keep<" in history and ">infeasible<" in history and ">crash<" in history
    assert "cost &lt;= 2 is violated" in history
    header = dict((label, value) for label, value, _ in panel.header_items())
    assert header["best"] == "2 (run 2) +1 (+100.00%)" and header["baseline x"] == "1"
    assert "display:grid" in panel.header.value  # labelled values in a grid, never one run-on line
    assert "stopped" in panel.meter.value and panel.stop_button.disabled
    assert panel.progress.max == 20 and panel.progress.value == 4  # three proposals and DONE, of 20
    chart = panel.chart.value
    assert chart.count("<svg") == 1 and "var(--jp-ui-font-color2" in chart  # follows the theme
    assert "<title>run 3 · infeasible · 5 — pricey</title>" in chart and "failed" in chart
    # The run detail shows the latest run without a pick, against its parent.
    assert panel.run_picker.value == 4 and "against run 2" in panel.run_detail.value
    panel.run_picker.value = 3
    assert "+print(&#x27;METRIC x=5&#x27;)" in panel.run_detail.value
    assert "run 3 against run 2" in panel.run_detail.value
    panel.base_picker.value = 1  # any two runs
    assert "run 3 against run 1" in panel.run_detail.value
    assert [row.children[0].children[0].value for row in panel.rows.children] == ["cost"]


def test_the_panel_shows_the_runs_in_flight_and_one_stream(tmp_path: Path) -> None:
    from jupyter_autoresearch.engine._events import (
        EvaluationDone,
        EvaluationRunning,
        EvaluationStarted,
        ProposalStarted,
        ReasoningDelta,
        Stopped,
    )
    from jupyter_autoresearch.notebook._panel import Panel

    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    session = ar.create_session(_script(tmp_path), maximize="x", model=f"replay:{rec}")
    panel = Panel(session)
    name = session.name
    panel.on_event(ProposalStarted(name, 2, 1))
    panel.on_event(ReasoningDelta(name, 2, "first idea"))
    panel.on_event(ProposalStarted(name, 3, 2))
    panel.on_event(ReasoningDelta(name, 2, " <b>late</b>"))  # the older stream goes on, unseen
    panel.on_event(ReasoningDelta(name, 3, "second idea"))
    panel.on_event(EvaluationStarted(name, 2, 1, 1))
    panel.on_event(EvaluationRunning(name, 2, 1, "tcp://10.0.0.7:40211"))
    panel._draw_header()
    panel._flush_reasoning()
    assert "#2 on tcp://10.0.0.7:40211" in panel.inflight.value and "#3 asking the model" in panel.inflight.value
    assert "second idea" in panel.reasoning.value and "late" not in panel.reasoning.value
    panel.on_event(EvaluationDone(name, 2, 1, "ok"))
    panel._draw_header()
    assert "#2" not in panel.inflight.value  # one run in flight, on this machine: nothing to add
    panel.on_event(Stopped(name, "done", "no more", None, 1))
    panel._draw_header()
    assert panel.inflight.value == ""


def test_a_repaired_log_is_a_warning_in_the_panel(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    # Unconfined, so the candidate can reach the log; the journal writes it again.
    wipe = "import os\nos.system('rm .autoresearch/bench/log.jsonl')\n" + metric_cell(2)
    rec = write_recording(tmp_path / "rec.jsonl", [("wipe", wipe)])
    session = ar.create_session(_script(tmp_path), maximize="x", model=f"replay:{rec}", sandbox="off")
    panel = Panel(session)
    session.run()
    assert "Warning: the session log" in panel.message.value and "was deleted" in panel.message.value
    assert session.warnings and [r.run for r in ar.load_session(session.folder).runs] == [1, 2]


def test_constraint_editor_refuses_bad_rows_inline_and_applies_good_ones(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    slow = [(f"h{i}", metric_cell(i + 2, "import time\ntime.sleep(0.2)")) for i in range(30)]
    rec = write_recording(tmp_path / "rec.jsonl", slow, segment_of=[0] * 10 + [1] * 20)
    session = ar.create_session(_script(tmp_path), maximize="x", model=f"replay:{rec}")
    panel = Panel(session)
    session.start()
    deadline = time.monotonic() + 30
    while len(session.runs) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    panel._add_row("spend", "<=", "3")
    panel._add_row("cost", "<=", "abc")
    panel._apply_constraints()
    assert "Not applied" in panel.constraint_error.value
    # The problem of a row is on the line below its inputs.
    assert "names spend, which no run reported" in panel.rows.children[0].children[1].value
    assert "must compare against a number" in panel.rows.children[1].children[1].value
    panel._remove_row(panel.rows.children[0])
    panel.rows.children[0].children[0].children[2].value = "0.5"
    panel._apply_constraints()
    assert "Applied: cost &lt;= 0.5" in panel.constraint_error.value
    deadline = time.monotonic() + 30
    while not session.segment_runs(1) and time.monotonic() < deadline:
        time.sleep(0.05)
    session.stop()
    session.wait(30)
    segment_one = session.segment_runs(1)
    assert segment_one and segment_one[0].status == "infeasible"  # cost=1 > 0.5 now
    assert "Segment 1: constraints now cost &lt;= 0.5" in panel.message.value


def test_model_text_reaches_the_panel_escaped(tmp_path: Path, llm: LLMServer) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    llm.add(Reply(f"Hypothesis: {evil}\n```python\nprint('{evil}')\nprint('METRIC x=2')\n```", chunk=7), "DONE: x")
    session = ar.create_session(_script(tmp_path), maximize="x", model="openai/test", api_base=llm.url)
    panel = Panel(session)
    deltas: list[str] = []
    session.subscribe(lambda e: isinstance(e, ar.ReasoningDelta) and deltas.append(e.text))
    session.run()
    panel.run_picker.value = 2
    shown = panel.history.value + panel.reasoning.value + panel.run_detail.value + panel.header.value
    assert "<script>" not in shown and "<img" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in panel.history.value
    assert "&lt;img src=x onerror=alert(2)&gt;" in panel.run_detail.value
    assert len(deltas) > 5


def test_reasoning_redraws_are_throttled(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    session = ar.create_session(
        _script(tmp_path), maximize="x", model=f"replay:{write_recording(tmp_path / 'r.jsonl', [])}"
    )
    panel = Panel(session)
    redraws = []
    panel.reasoning.observe(lambda change: redraws.append(time.monotonic()), "value")
    started = time.monotonic()
    for index in range(3000):  # a fast token stream
        panel.on_event(ar.ReasoningDelta(session.name, 2, f"t{index} "))
    time.sleep(0.25)
    elapsed = time.monotonic() - started
    assert len(redraws) <= elapsed * 10 + 2
    assert "t2999" in panel.reasoning.value  # the last delta always lands


def test_history_and_chart_redraws_are_throttled_and_off_the_loop_thread(tmp_path: Path) -> None:
    import threading

    from jupyter_autoresearch.notebook._panel import Panel
    from jupyter_autoresearch.protocol._records import RunRecord

    session = ar.create_session(
        _script(tmp_path), maximize="x", model=f"replay:{write_recording(tmp_path / 'r.jsonl', [])}"
    )
    session._runs = [RunRecord(run=i, segment=0, status="keep", metric=float(i)) for i in range(1, 301)]
    panel = Panel(session)
    drawn: list[str] = []
    draw = panel._draw_runs_now

    def counted() -> None:
        drawn.append(threading.current_thread().name)
        draw()

    panel._draw_runs_now = counted  # type: ignore[method-assign]
    started = time.monotonic()
    for index in range(2000):  # decisions far faster than ten a second
        panel.on_event(ar.Decision(session.name, session._runs[index % 300], None))
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    assert 1 <= len(drawn) <= (elapsed + 0.5) * 10 + 2
    assert threading.current_thread().name not in drawn  # the loop's thread never draws a decision
    session._runs.append(RunRecord(run=301, segment=0, status="crash", metric=None))
    panel.on_event(ar.Stopped(session.name, "done", "enough", None, 301))
    assert ">301<" in panel.history.value  # the last state always lands


def test_long_histories_page(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import PAGE, Panel
    from jupyter_autoresearch.protocol._records import RunRecord

    session = ar.create_session(
        _script(tmp_path), maximize="x", model=f"replay:{write_recording(tmp_path / 'r.jsonl', [])}"
    )
    session._runs = [
        RunRecord(run=i, segment=0, status="discard", metric=float(i), metrics={"x": float(i)}, code="")
        for i in range(1, 1001)
    ]
    panel = Panel(session)
    assert panel.history.value.count("<tr") == PAGE + 1 and ">1000<" in panel.history.value
    panel._page(+1)
    assert ">985<" in panel.history.value and ">1000<" not in panel.history.value
    assert panel.page_label.value == "page 2 of 67 (1000 runs)"


def test_export_to_file_and_notebook_and_without_frontend(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbformat

    rec = write_recording(tmp_path / "rec.jsonl", [("better", "print(f'METRIC x={base + 1}')")])
    ip.run_cell("base = 1", store_history=True)
    magic(ip, f"--maximize x --model replay:{rec} --session ex --wait", "print(f'METRIC x={base}')")
    ip.run_line_magic("autoresearch", "export --to file best.py")
    script = (tmp_path / "best.py").read_text()
    assert "base = 1" in script and "print(f'METRIC x={base + 1}')" in script
    ns: dict[str, Any] = {}
    exec(compile(script, "best.py", "exec"), ns)  # the exported script runs on its own
    ip.run_line_magic("autoresearch", "export --to notebook best.ipynb")
    notebook = nbformat.read(tmp_path / "best.ipynb", as_version=4)
    assert [c.cell_type for c in notebook.cells] == ["markdown", "code", "code"]
    assert notebook.cells[2].metadata["autoresearch"]["run"] == 2
    _, shown = failed_cell(ip, capsys, "%autoresearch export --to replace")
    assert "replacing the benchmark cell needs the JupyterLab extension" in shown


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "bench.py"
    path.write_text(metric_cell(1))
    return path


def test_the_panel_reads_as_text_where_widgets_cannot_show(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [("better", metric_cell(2))])
    magic(ip, f"--maximize x --model replay:{rec} --session txt", metric_cell(1))
    ip.user_ns["_autoresearch"].wait(30)
    out = capsys.readouterr().out
    assert "VBox(" not in out
    assert "autoresearch session txt: " in out and "The live panel needs ipywidgets" in out


@pytest.mark.parametrize(
    "source, usage",
    [
        ("%%autoresearch --help\nprint(1)", "usage: %%autoresearch"),
        ("%%autoresearch -h\nprint(1)", "usage: %%autoresearch"),
        ("%autoresearch --help", "usage: %autoresearch"),
        ("%autoresearch -h", "usage: %autoresearch"),
        *[
            (f"%autoresearch {command} --help", f"usage: %autoresearch {command}")
            for command in ("status", "stop", "pause", "resume", "history", "steer", "constraints", "session", "export")
        ],
    ],
)
def test_help_everywhere(ip: Any, capsys: pytest.CaptureFixture[str], source: str, usage: str) -> None:
    result = ip.run_cell(source)
    shown = capsys.readouterr()
    assert result.success and shown.out.startswith(usage) and not shown.err
    assert "_autoresearch" not in ip.user_ns  # help starts nothing


def test_every_option_is_a_trait_of_the_magics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    config = Config()
    config.AutoresearchMagics.model = f"replay:{rec}"
    config.AutoresearchMagics.maximize = "x"
    config.AutoresearchMagics.constraint = ["cost <= 1"]
    config.AutoresearchMagics.max_time = "10m"
    config.AutoresearchMagics.plateau = 0
    config.AutoresearchMagics.max_model_failures = 5
    config.AutoresearchMagics.min_improvement = "1%"
    config.AutoresearchMagics.wait = True
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "jupyter_autoresearch")
    shell.run_cell_magic("autoresearch", "--session traits", metric_cell(1))
    session = shell.user_ns["_autoresearch"]
    assert session.state == "stopped" and len(session.runs) == 2  # --wait came from the config
    assert session.task.constraint_texts == ("cost <= 1",) and session.task.metric == "x"
    assert session.limits.max_time == 600 and session.limits.plateau == 0
    assert session.limits.max_model_failures == 5 and str(session.limits.min_improvement) == "1%"
    InteractiveShell.clear_instance()


def test_line_magic_errors_fail_the_cell_in_one_line(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    error, shown = failed_cell(ip, capsys, "%autoresearch stop")
    assert isinstance(error, ar.SessionError)
    assert shown.strip() == "SessionError: no autoresearch session in this kernel yet; run a %%autoresearch cell first"
    error, shown = failed_cell(ip, capsys, "%autoresearch launch")
    assert isinstance(error, ar.OptionsError) and "invalid choice: 'launch'" in shown


def test_a_failed_model_request_shows_on_the_panel(tmp_path: Path, llm: LLMServer) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    llm.add(Reply(answer("<cut>", metric_cell(5)), cut_after=2), answer("fine", metric_cell(2)), "DONE: ok")
    session = ar.create_session(_script(tmp_path), maximize="x", model="openai/test", api_base=llm.url)
    panel = Panel(session)
    messages: list[str] = []
    panel.message.observe(lambda change: messages.append(change["new"]), "value")
    session.run()
    assert any("The model failed, no run (1 of 3 in a row before the session stops)" in m for m in messages)
    assert ("model failures", "1") in [(label, value) for label, value, _ in panel.header_items()]
    assert len(session.runs) == 2


def test_a_holdout_cell_in_a_kernel_gets_its_data_and_candidates_never_do(ip: Any, tmp_path: Path) -> None:
    import pickle

    import nbformat

    # The notebook as saved: a setup cell, the holdout cell (code cell 2), the benchmark.
    holdout = "print(f'METRIC holdout_x={sum(latest) * chosen}')"
    benchmark = "chosen = base\nresult = [1, 2, 3]\nprint(f'METRIC x={chosen}')"
    cells = ["base = 2\nlatest = [1.0, 2.0]", holdout, f"%%autoresearch --maximize x\n{benchmark}"]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(notebook, tmp_path / "notebook.ipynb")
    ip.run_cell("base = 2\nlatest = [1.0, 2.0]")
    rec = write_recording(
        tmp_path / "rec.jsonl",
        [
            ("larger", benchmark.replace("chosen = base", "chosen = base + 1")),
            ("larger, other result", benchmark.replace("chosen = base", "chosen = base + 2").replace("3]", "4]")),
        ],
    )
    magic(
        ip,
        f"--maximize x --holdout-cell 2 --holdout-inputs chosen --same-output result --model replay:{rec} --wait",
        benchmark,
    )
    session = ip.user_ns["_autoresearch"]
    assert [r.status for r in session.runs] == ["keep", "keep", "infeasible"]
    assert [r.metrics.get("holdout_x") for r in session.runs] == [6.0, 9.0, 12.0]
    assert session.runs[2].error == "output result differs from the baseline: item 2: 4 vs 3"
    assert session.task.holdout == "holdout_x" and "holdout_x" in session.task.hidden
    # The kernel's variables the holdout reads go to its worker only.
    assert set(pickle.loads(session.setup.namespace)) == {"base"}
    assert set(pickle.loads(session.holdout_setup.namespace)) == {"base", "latest"}
    assert "notebook.ipynb" in session.setup.hidden


def test_the_holdout_options_are_traits_of_the_magics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "check.py").write_text("print(f'METRIC holdout_x={x * 10}')\n")
    cell = (
        "import numpy as np\nx = 3\nshares = np.ones(3) * (1 + x / 100)\nprint(f'METRIC x={x}')\nprint('METRIC cost=1')"
    )
    rec = write_recording(tmp_path / "rec.jsonl", [("a", cell.replace("x = 3", "x = 4"))])
    config = Config()
    config.AutoresearchMagics.model = f"replay:{rec}"
    config.AutoresearchMagics.maximize = "x"
    config.AutoresearchMagics.hidden = ["cost"]
    config.AutoresearchMagics.holdout = "check.py"
    config.AutoresearchMagics.holdout_inputs = ["x"]
    config.AutoresearchMagics.select_by = "holdout"
    config.AutoresearchMagics.same_output = ["shares"]
    config.AutoresearchMagics.rtol = 0.5
    config.AutoresearchMagics.atol = 0.0
    config.AutoresearchMagics.calibrate = 2
    config.AutoresearchMagics.wait = True
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "jupyter_autoresearch")
    shell.run_cell_magic("autoresearch", "--session checks", cell)
    session = shell.user_ns["_autoresearch"]
    assert session.task.hidden == ("cost", "holdout_x") and session.select_by == "holdout"
    assert session.holdout_worker is not None and session.holdout_worker.spec.rtol == 0.5
    assert session.limits.min_improvement.calibrated  # --calibrate 2 set it
    # shares moved by 1%, within --rtol 0.5, so the output is the same; the holdout says 40.
    assert [r.status for r in session.runs] == ["keep", "keep"] and session.best.metrics["holdout_x"] == 40
    InteractiveShell.clear_instance()


def test_the_panel_shows_the_holdout_its_gap_and_the_measured_noise(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    (tmp_path / "check.py").write_text("print(f'METRIC holdout_x={30 if x == 3 else 15}')\n")
    (tmp_path / "bench.py").write_text("x = 3\nprint(f'METRIC x={x}')\n")
    rec = write_recording(tmp_path / "rec.jsonl", [("larger", "x = 4\nprint(f'METRIC x={x}')\n")])
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        holdout="check.py",
        holdout_inputs=["x"],
        select_by="holdout",
        calibrate=2,
        model=f"replay:{rec}",
    )
    panel = Panel(session)
    session.run()
    header = panel.header.value
    assert "best by holdout_x" in header and "3 (run 1)" in header  # the holdout picks the baseline
    assert "its holdout_x" in header and "30 (gap +27)" in header
    history = panel.history.value
    assert "holdout_x</th>" in history and "⚠" in history and "x improved on run 1, but holdout_x got worse" in history
    assert "Noise measured: x: median 3, MAD 0 over 2 runs" in panel.message.value
    assert "holdout_x of kept runs" in panel.chart.value and "run 2 · holdout_x 15 · worse" in panel.chart.value


def test_the_notebook_in_a_kernel_after_the_command_line_tells_its_story(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example run headless, then opened and run in a kernel: the same segments, nothing added."""
    import shutil

    import nbformat
    from conftest import EXAMPLES

    from jupyter_autoresearch.cli import main

    for name in ("marketing_budget.ipynb", "marketing_budget.session.jsonl", "marketing_campaign_estimations.csv"):
        shutil.copy(EXAMPLES / name, tmp_path)
    assert main(["run", str(tmp_path / "marketing_budget.ipynb")]) == 0
    log = tmp_path / ".autoresearch" / "marketing_budget" / "log.jsonl"
    written = log.read_text()
    sessions = []
    for cell in nbformat.read(tmp_path / "marketing_budget.ipynb", as_version=4).cells:
        if "load_session" in cell.source:
            break  # the cells after the two benchmarks read the log
        if cell.cell_type != "code":
            continue
        assert ip.run_cell(cell.source).success
        if cell.source.startswith("%%autoresearch"):
            sessions.append(ip.user_ns["_autoresearch"])
    assert stops_added(log, written) == ["up-to-date", "up-to-date"]
    shown = [(s.stop_reason, s.segment, s.best_run.run) for s in sessions]
    assert shown == [("up-to-date", 0, 6), ("up-to-date", 1, 9)]
    assert "is up to date: 10 runs, best run 6 110.1627" in sessions[0].stop_detail


def test_the_panel_shows_progress_the_wait_for_the_model_and_the_money(
    tmp_path: Path, llm: LLMServer, priced_model: str
) -> None:
    from jupyter_autoresearch.notebook._panel import CONFIDENCE_HELP, Panel

    slow = Reply(answer("slow", metric_cell(2)), chunk=4, delay=0.15, prompt_tokens=1000, completion_tokens=250)
    llm.add(slow, Reply(answer("fast", metric_cell(3)), prompt_tokens=1000, completion_tokens=250))
    session = ar.create_session(
        _script(tmp_path), maximize="x", model=priced_model, api_base=llm.url, max_iterations=2, max_cost=1
    )
    panel = Panel(session)
    session.start()
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while session.state != "stopped" and time.monotonic() < deadline:
        seen.append(panel.state_text())
        time.sleep(0.1)
    session.wait(30)
    waiting = [t for t in seen if "waiting for the model (" in t]
    assert waiting and any("waiting for the model (1 s)" in t or "waiting for the model (2 s)" in t for t in waiting)
    assert panel.progress.max == 2 and panel.progress.value == 2
    assert "2/2 runs [" in panel.meter.value  # count, elapsed, ETA, rate
    items = {label: (value, tip) for label, value, tip in panel.header_items()}
    assert items["cost"][0] == "$0.0040 this run" and "never crossed" in items["cost"][1]
    assert items["tokens"][0] == "2,500"
    assert items["confidence"][1] == CONFIDENCE_HELP and "underline dotted" in panel.header.value
    assert "elapsed" in items


def test_the_history_has_a_segment_column_and_dividers(tmp_path: Path) -> None:
    from jupyter_autoresearch.notebook._panel import Panel

    proposals = [("a", metric_cell(2)), ("b", metric_cell(3)), ("c", metric_cell(4))]
    rec = write_recording(tmp_path / "rec.jsonl", proposals, segment_of=[0, 1, 1])
    session = ar.create_session(_script(tmp_path), maximize="x", model=f"replay:{rec}", max_iterations=1)
    session.run()
    session = ar.create_session(
        _script(tmp_path), maximize="x", model=f"replay:{rec}", constraints=["cost <= 1"], max_iterations=1
    )
    panel = Panel(session)
    session.run()
    history = panel.history.value
    assert ">seg</th>" in history
    assert "▲ segment 1: cost &lt;= 1&emsp;▼ segment 0: no constraints" in history  # newest first
    assert "-webkit-line-clamp:2" in history  # rows one or two lines high
