"""The command line, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FILES, metric_cell, write_recording
from llm_server import LLMServer, Reply, answer

from jupyter_autoresearch.cli import main


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_a_script_with_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("double it", metric_cell(2)), ("worse", metric_cell(0))])
    code, out, err = cli(
        "run",
        tmp_path / "bench.py",
        "--maximize",
        "x",
        "--constraint",
        "cost<=1",
        "--model",
        f"replay:{rec}",
        "--json",
        capsys=capsys,
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["session"] == "bench" and summary["stop_reason"] == "done" and summary["runs"] == 3
    assert summary["baseline"] == {"run": 1, "segment": 0, "metric": 1.0, "metrics": {"x": 1.0, "cost": 1.0}}
    assert summary["tokens"] is None and summary["cost_usd"] is None  # a replay asks no model
    assert summary["best"]["run"] == 2 and summary["best"]["code"] == metric_cell(2)
    assert "... double it" in err and "#2   keep" in err and "#3   discard" in err
    assert "best: run 2, x=2" in err
    assert (tmp_path / ".autoresearch" / "bench" / "best.py").read_text() == metric_cell(2)


def test_summary_holds_the_baseline_and_the_best_code(tmp_path: Path) -> None:
    from jupyter_autoresearch import create_session
    from jupyter_autoresearch.cli._summary import summary

    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    session = create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}").run()
    result = summary(session)
    assert result["baseline"]["metric"] == 1 and result["best"]["code"] == metric_cell(2)
    assert result["stop_reason"] == "done" and result["runs"] == 2


def test_run_resumes_the_same_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2)), ("b", metric_cell(3))])
    args = ("run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}", "--max-iterations", "1")
    assert cli(*args, capsys=capsys)[0] == 0
    code, _, err = cli(*args, capsys=capsys)
    assert code == 0 and "resuming session bench" in err and "(2 runs so far)" in err
    assert "#3   keep" in err


def notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def test_run_a_notebook_merges_magic_line_options_and_writes_a_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = write_recording(
        tmp_path / "rec.jsonl",
        [
            ("uses the setup", "print(f'METRIC x={base * 3}')\nprint('METRIC cost=1')"),
            ("worse", metric_cell(0)),
            ("best", metric_cell(9)),
        ],
    )
    nb = notebook(
        tmp_path / "study.ipynb",
        [
            "%load_ext jupyter_autoresearch\nbase = 2",
            f"%%autoresearch --maximize x --max-iterations 1 --model replay:{rec.name}\n"
            "print(f'METRIC x={base}')\nprint('METRIC cost=1')",
            "print('after')",
        ],
    )
    code, _, err = cli("run", nb, "--max-iterations", "3", capsys=capsys)  # the command line wins
    assert code == 0, err
    copy = nbformat.read(tmp_path / "study.autoresearch.ipynb", as_version=4)
    sources = [c.source for c in copy.cells]
    assert (
        sources[0].startswith("%load_ext")
        and sources[1].startswith("%%autoresearch")
        and sources[-1] == "print('after')"
    )
    inserted = [c for c in copy.cells if "autoresearch" in c.metadata]
    assert [c.metadata["autoresearch"]["run"] for c in inserted] == [2, 4]  # run order, below the benchmark
    assert copy.cells.index(inserted[0]) == 2 and copy.cells.index(inserted[1]) == 3
    first = inserted[0]
    assert first.source.startswith("# autoresearch study run 2: x=6 (kept)\n")
    assert first.metadata["autoresearch"] == {
        "session": "study",
        "run": 2,
        "metric": 6.0,
        "metrics": {"x": 6.0, "cost": 1.0},
        "hypothesis": "uses the setup",
    }
    original = nbformat.read(nb, as_version=4)
    assert len(original.cells) == 3  # the user's notebook is never changed


def test_cell_option_picks_a_code_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nb = notebook(tmp_path / "nb.ipynb", ["v = 5", metric_cell(1)])
    rec = write_recording(tmp_path / "rec.jsonl", [])
    code, out, _ = cli(
        "run",
        nb,
        "--cell",
        "2",
        "--maximize",
        "x",
        "--model",
        f"replay:{rec}",
        "--json",
        "--insert",
        "none",
        capsys=capsys,
    )
    assert code == 0 and json.loads(out)["baseline"]["metric"] == 1
    assert not (tmp_path / "nb.autoresearch.ipynb").exists()


def test_show_prints_any_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli("show", FILES / "pi_autoresearch_marketing.jsonl", capsys=capsys)
    assert code == 0
    assert "pi-autoresearch log" in out and "9 runs, 2 segments" in out
    assert "best of segment 0: run 2, revenue_millions=110.1627" in out
    assert "best of segment 1: run 6, revenue_millions=109.8699" in out
    assert "95.9106" in out and "-- segment 1" in out
    code, out, _ = cli("show", FILES / "pi_autoresearch_marketing.jsonl", "--json", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == 9 and json.loads(out.splitlines()[0])["run"] == 1


@pytest.mark.parametrize(
    "args, message, status",
    [
        (["run", "missing.py", "--maximize", "x", "--model", "replay:r"], "missing.py does not exist", 1),
        (["run", "{nb}", "--maximize", "x", "--model", "replay:r"], "has no cell starting with %%autoresearch", 1),
        (["run", "{py}", "--maximize", "x"], "no model configured: pass --model", 1),
        (["run", "{py}", "--maximise", "x"], "unknown option --maximise; did you mean --maximize?", 2),
        (
            ["run", "{py}", "--maximize", "x", "--constraint", "x != 1", "--model", "replay:r"],
            "unknown operator '!='",
            1,
        ),
        (["run", "{py}", "--maximize", "x", "--max-iterations", "many"], "'many' is not a whole number", 2),
        (
            ["run", "{crash}", "--maximize", "x", "--model", "replay:{rec}"],
            "the baseline (the unchanged cell) crashed: KeyError: 'revenue'",
            1,
        ),
        (
            ["run", "{py}", "--maximize", "y", "--model", "replay:{rec}"],
            "the baseline printed no METRIC y (it printed x, cost)",
            1,
        ),
        (
            ["run", "{py}", "--maximize", "x", "--constraint", "spend <= 3", "--model", "replay:{rec}"],
            "names spend, which the baseline never printed",
            1,
        ),
        (["run", "{empty}", "--maximize", "x", "--model", "replay:r"], "empty.py is empty", 1),
        (["show", "nowhere"], "nowhere does not exist", 1),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
    status: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTORESEARCH_MODEL", raising=False)
    (tmp_path / "bench.py").write_text(metric_cell(1))
    (tmp_path / "crash.py").write_text("import pandas as pd\ndf = pd.DataFrame({'a': [1]})\ndf['revenue']\n")
    (tmp_path / "empty.py").write_text("\n")
    notebook(tmp_path / "plain.ipynb", ["x = 1"])
    rec = write_recording(tmp_path / "rec.jsonl", [])
    paths = {"nb": "plain.ipynb", "py": "bench.py", "crash": "crash.py", "rec": str(rec), "empty": "empty.py"}
    code, _, err = cli(*[a.format(**paths) for a in args], capsys=capsys)
    assert code == status
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4


def test_console_script_and_jupyter_subcommand(tmp_path: Path) -> None:
    exe = shutil.which("jupyter-autoresearch")
    if exe is None:
        pytest.skip("the package is not installed (pip install -e .)")
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    for command in ([exe], ["jupyter", "autoresearch"]):
        done = subprocess.run(
            [
                *command,
                "run",
                "bench.py",
                "--maximize",
                "x",
                "--model",
                f"replay:{rec}",
                "--json",
                "--session",
                Path(command[-1]).name.replace("-", "_"),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["best"]["metric"] == 2


class SlowRun:
    """The CLI in a subprocess on a script whose recorded candidates each sleep a while."""

    def __init__(self, folder: Path, proposals: int, sleep: float) -> None:
        (folder / "bench.py").write_text(metric_cell(1))
        slow = [(f"step {i}", metric_cell(i + 2, f"import time\ntime.sleep({sleep})")) for i in range(proposals)]
        rec = write_recording(folder / "rec.jsonl", slow)
        self.folder = folder
        self.command = [sys.executable, "-m", "jupyter_autoresearch.cli", "run", "bench.py", "--maximize", "x",
                        "--model", f"replay:{rec}"]  # fmt: skip
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        self.log = folder / ".autoresearch" / "bench" / "log.jsonl"
        self.process = subprocess.Popen(self.command, cwd=folder, env=self.env, stderr=subprocess.PIPE, text=True)

    def wait_for_runs(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not self.log.exists() or self.log.read_text().count('"run"') < count):
            time.sleep(0.05)

    def logged(self) -> list[int]:
        whole = [json.loads(line) for line in self.log.read_text().splitlines() if line.endswith("}")]
        return [data["run"] for data in whole if "run" in data]


def test_kill_mid_run_then_resume(tmp_path: Path) -> None:
    """A kill -9 mid-session loses nothing that was logged; running again carries on."""
    slow = SlowRun(tmp_path, proposals=8, sleep=0.4)
    slow.wait_for_runs(4)
    slow.process.send_signal(signal.SIGKILL)
    slow.process.wait()
    with open(slow.log, "a") as handle:
        handle.write('{"run": 99, "status": "ke')  # as if the kill landed mid-write
    assert len(slow.logged()) >= 4
    done = subprocess.run([*slow.command, "--json"], cwd=tmp_path, env=slow.env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["runs"] == 9 and summary["best"]["metric"] == 9
    assert slow.logged() == list(range(1, 10))  # numbering carried on; the partial line is gone


def test_ctrl_c_stops_cleanly_with_exit_130(tmp_path: Path) -> None:
    slow = SlowRun(tmp_path, proposals=20, sleep=0.5)
    slow.wait_for_runs(3)
    slow.process.send_signal(signal.SIGINT)
    _, err = slow.process.communicate(timeout=60)
    assert slow.process.returncode == 130
    assert "stopped (interrupted" in err and "Traceback" not in err
    runs = slow.logged()
    assert runs == list(range(1, len(runs) + 1))  # every logged line is whole


def test_insert_best_writes_only_the_winner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2)), ("b", metric_cell(3))])
    nb = notebook(tmp_path / "nb.ipynb", [f"%%autoresearch --maximize x --model replay:{rec.name}\n{metric_cell(1)}"])
    assert cli("run", nb, "--insert", "best", capsys=capsys)[0] == 0
    copy = nbformat.read(tmp_path / "nb.autoresearch.ipynb", as_version=4)
    assert [c.metadata["autoresearch"]["run"] for c in copy.cells if "autoresearch" in c.metadata] == [3]


def test_an_unwritable_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    nb = notebook(tmp_path / "nb.ipynb", [f"%%autoresearch --maximize x --model replay:{rec.name}\n{metric_cell(1)}"])
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = cli("run", nb, "--output", tmp_path / "taken" / "out.ipynb", capsys=capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("jupyter-autoresearch: error: ")


def test_a_failed_model_reply_is_a_line_and_the_loop_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], llm: LLMServer
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add(Reply(answer("cut", metric_cell(5)), cut_after=3), answer("fine", metric_cell(2)), "DONE: ok")
    code, out, err = cli(
        "run", tmp_path / "bench.py", "--maximize", "x", "--model", "openai/test", "--api-base", llm.url, "--json",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0 and json.loads(out)["runs"] == 2
    assert "model failed, no run (1 of 3 in a row before it stops): the reply of openai/test was cut off" in err
    assert "#2   keep" in err


def test_state_errors_exit_1_and_usage_errors_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_autoresearch.journal._journal import Journal

    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [])
    holder = Journal(tmp_path / ".autoresearch" / "bench")  # as if another process ran this session
    try:
        code, _, err = cli("run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}", capsys=capsys)
    finally:
        holder.close()
    assert code == 1 and "session bench is running in another process" in err
    code, _, err = cli("run", tmp_path / "bench.py", "--maximize", "x", "--minimize", "y", capsys=capsys)
    assert code == 2 and "not allowed with argument --maximize" in err


def test_progress_tokens_and_cost_in_the_lines_the_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], llm: LLMServer, priced_model: str
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(5))
    llm.add(
        *(Reply(answer(h, metric_cell(x)), prompt_tokens=1000, completion_tokens=250) for h, x in
          [("better", 7), ("worse", 6), ("best", 9)])
    )  # fmt: skip
    code, out, err = cli(
        "run", tmp_path / "bench.py", "--maximize", "x", "--model", priced_model, "--api-base", llm.url,
        "--max-iterations", "3", "--json", capsys=capsys,
    )  # fmt: skip
    assert code == 0
    lines = err.splitlines()
    # $0.002 a request: 1000 prompt tokens at $1/M and 250 reply tokens at $4/M.
    assert "  cost: $0.0020 for the first request (1,250 tokens); 3 iterations ≈ $0.0060" in lines
    run3 = next(line for line in lines if line.startswith("  #3 "))
    # The live change is against the best before the run: a discard reads how far it fell short.
    assert "x=6" in run3 and "-1 (-14.29%)" in run3 and "best 7" in run3
    assert "1,250 tokens  $0.0020" in run3 and "2/3 runs [" in run3  # not a terminal: the count and ETA
    assert "this run: 3,750 tokens, $0.0060" in err  # the stop line
    assert "      total: 3,750 tokens, $0.0060" in lines  # the final table
    table_row = next(line for line in lines if line.startswith("   3    0  discard"))
    assert "1,250" in table_row and "$0.0020" in table_row
    summary = json.loads(out)
    assert summary["tokens"] == 3750 and summary["cost_usd"] == pytest.approx(0.006)
    assert [u["run"] for u in summary["usage"]] == [2, 3, 4] and summary["usage"][0]["tokens"] == 1250


def test_an_error_prints_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "bench.py").write_text(metric_cell(1))
    code, _, err = cli("run", tmp_path / "bench.py", "--maximize", "x", "--model", "openai/gpt-5-mini", capsys=capsys)
    assert code == 1 and err.count("OPENAI_API_KEY is not set") == 1
