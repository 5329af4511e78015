"""The example notebook, executed top to bottom in a real kernel with nbclient (--wait mode)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from conftest import EXAMPLES


@pytest.mark.timeout(600)
def test_marketing_notebook_runs_headless_into_a_small_clean_notebook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As nbclient, papermill and nbconvert run it: no comm warnings, a readable summary, small."""
    from nbclient import NotebookClient

    for name in ("marketing_budget.ipynb", "marketing_budget.session.jsonl", "marketing_campaign_estimations.csv"):
        shutil.copy(EXAMPLES / name, tmp_path)
    notebook = nbformat.read(tmp_path / "marketing_budget.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
        log=logging.getLogger("nbclient-under-test"),
    )
    with caplog.at_level(logging.DEBUG, logger="nbclient-under-test"):
        client.execute()

    assert not [r for r in caplog.records if "comm" in r.getMessage()], (
        caplog.text
    )  # "No handler found for comm target"
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr" and "error" in o.text)
    ]
    assert not errors, errors
    size = len(nbformat.writes(notebook))
    assert size < 150_000, size  # no live panel stored where nobody can use it
    assert "widgets" not in notebook.metadata
    summaries = [
        o.data
        for c in notebook.cells
        for o in c.get("outputs", [])
        if "autoresearch session" in o.get("data", {}).get("text/html", "")
    ]
    assert len(summaries) == 2  # one per %%autoresearch cell
    assert all("stopped" in s["text/html"] and "marketing_budget" in s["text/html"] for s in summaries)
    assert "best run 6: 110.1627" in summaries[0]["text/html"] and "best run 9: 109.8699" in summaries[1]["text/html"]
    assert "95.9106" in summaries[0]["text/html"] and "infeasible" in summaries[0]["text/html"]
    texts = [
        o.data["text/plain"] for c in notebook.cells for o in c.get("outputs", []) if "text/plain" in o.get("data", {})
    ]
    assert not [t for t in texts if "VBox(" in t or "HTML object" in t]
    plain = summaries[0]["text/plain"]
    assert plain.startswith("marketing_budget: stopped (done") and "best run 6: revenue_millions=110.1627" in plain
    assert "   3    0  discard" in plain and "95.9106" in plain  # the history, readable as text

    script = (tmp_path / "best_plan.py").read_text()  # the export cell ran
    assert "def report(chosen)" in script and "contacts @ x <= MAX_CONTACT_RATE * (users @ x)" in script
    plots = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert plots  # the revenue-per-run chart


@pytest.mark.timeout(300)
def test_notebook_with_a_live_model_server(tmp_path: Path, llm) -> None:  # type: ignore[no-untyped-def]
    from llm_server import answer
    from nbclient import NotebookClient

    llm.add(
        answer("double", "print(f'METRIC x={base * 2}')"),
        "Hypothesis: bad\n```python\nraise ValueError('nope')\n```",
        answer("triple", "base = 99  # must not leak\nprint(f'METRIC x={base * 3}')"),
    )
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext jupyter_autoresearch"),
            nbformat.v4.new_code_cell("base = 1"),
            nbformat.v4.new_code_cell(
                f"%%autoresearch --maximize x --model openai/test --api-base {llm.url} "
                "--max-iterations 3 --wait\nprint(f'METRIC x={base}')"
            ),
            nbformat.v4.new_code_cell(
                "assert base == 1, base\nprint(len(_autoresearch.runs), _autoresearch.best.metric)"
            ),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert notebook.cells[3].outputs[0]["text"] == "4 297.0\n"  # the candidate rebinding base stayed in its process
    assert len(llm.requests) == 3
    summary = [o for o in notebook.cells[2].outputs if "text/html" in o.get("data", {})]
    assert len(summary) == 1 and "widgets" not in notebook.metadata  # the summary, no live panel
    html = summary[0]["data"]["text/html"]
    assert "autoresearch session" in html and "stopped (max-iterations" in html
    assert ">crash<" in html and "ValueError: nope" in html


@pytest.mark.timeout(180)
def test_a_kernel_interrupt_stops_a_background_loop(tmp_path: Path) -> None:
    import json

    from jupyter_client.manager import start_new_kernel

    recording = tmp_path / "rec.jsonl"
    lines = [json.dumps({"type": "config", "name": "t", "metricName": "x"})]
    lines += [
        json.dumps(
            {
                "run": i,
                "segment": 0,
                "parent": 1,
                "asi": {"hypothesis": f"h{i}"},
                "code": f"import time\ntime.sleep(0.5)\nprint('METRIC x={i}')",
            }
        )
        for i in range(2, 60)
    ]
    recording.write_text("\n".join(lines) + "\n")
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:

        def run(code: str) -> str:
            reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: outputs.append(msg))
            assert reply["content"]["status"] == "ok", reply
            return "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")

        outputs: list[dict] = []  # type: ignore[type-arg]
        run("%load_ext jupyter_autoresearch")
        run(f"%%autoresearch --maximize x --model replay:{recording.name} --session bg\nprint('METRIC x=1')")
        outputs.clear()
        run("import time\nwhile len(_autoresearch.runs) < 3: time.sleep(0.1)\nprint('running', _autoresearch.state)")
        assert "running running" in "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        manager.interrupt_kernel()
        time.sleep(1)
        outputs.clear()
        text = run("_autoresearch.wait(30)\nprint(_autoresearch.stop_reason)")
        assert text.strip() == "interrupted"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


@pytest.mark.timeout(300)
def test_an_error_with_wait_fails_the_cell_in_one_line_and_stops_the_notebook(tmp_path: Path) -> None:
    from conftest import write_recording
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    write_recording(tmp_path / "rec.jsonl", [])
    notebook = _notebook(
        [
            "%load_ext jupyter_autoresearch",
            "%%autoresearch --maximize x --model replay:rec.jsonl --wait\nprint('METRIC x=' + str(1 / 0))",
            "print('not reached')",
        ]
    )
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with pytest.raises(CellExecutionError) as raised:
        client.execute()
    assert raised.value.ename == "BaselineError"
    [error] = [o for o in notebook.cells[1].outputs if o.output_type == "error"]
    assert error.traceback == [
        "BaselineError: the baseline (the unchanged cell) crashed: ZeroDivisionError: division by zero; "
        "fix the cell so it runs and prints its METRIC lines, then start again"
    ]
    assert notebook.cells[2].outputs == []  # papermill and nbclient stop at the failed cell


@pytest.mark.timeout(300)
def test_an_error_in_the_background_is_one_red_line_on_top_of_the_panel(tmp_path: Path) -> None:
    from conftest import write_recording
    from nbclient import NotebookClient

    write_recording(tmp_path / "rec.jsonl", [])
    notebook = _notebook(
        [
            "%load_ext jupyter_autoresearch",
            "%%autoresearch --maximize x --model replay:rec.jsonl\nprint('METRIC x=' + str(1 / 0))",
            "_autoresearch.wait(60)\nprint(_autoresearch.stop_reason)",
        ]
    )
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    assert notebook.cells[1].outputs[0]["output_type"] == "display_data"  # the panel; the cell succeeded
    assert notebook.cells[2].outputs[0]["text"] == "error\n"
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    html = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    red = [v for v in html if "crashed: ZeroDivisionError: division by zero" in v]
    assert len(red) == 1 and "color:#c62828" in red[0] and "\n" not in red[0]
    assert "white-space:nowrap" in red[0] and "text-overflow:ellipsis" in red[0]  # one line, whole text on hover
    panel = next(m for m in state.values() if "jupyter-autoresearch-panel" in m["state"].get("_dom_classes", []))
    first = panel["state"]["children"][0].removeprefix("IPY_MODEL_")
    assert state[first]["state"]["value"] == red[0]  # on top
