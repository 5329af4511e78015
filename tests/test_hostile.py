"""Hostile candidates: each fault a candidate could cause, unconfined and in the sandbox.

A candidate that leaves a daemon behind, kills its worker, reads another process's
environment, or damages the session's log. Every process a test starts is stopped by
its pid, and every network test stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import metric_cell, need_sandbox, write_recording

import jupyter_autoresearch as ar
from jupyter_autoresearch import EvaluationSettings, ForkEvaluator, WorkerSetup
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.journal._logfile import read_log

ROOT = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def host_processes(marker: str) -> list[int]:
    """Processes on this machine whose command line holds ``marker`` (not zombies)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(name))
    return found


def daemon(marker: str) -> str:
    """A candidate that forks, calls setsid and forks a long sleep, as a daemon does."""
    return textwrap.dedent(
        f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{marker}"])
            os._exit(0)
        os.wait()
        print('METRIC x=2')
        """
    )


# -- 1. a daemon outlives the run ----------------------------------------------------------
def test_a_daemon_does_not_outlive_its_run(tmp_path: Path, sandbox: str) -> None:
    marker = str(4_000_000 + secrets.randbelow(1_000_000))  # a sleep no one else runs
    try:
        with ForkEvaluator(EvaluationSettings(timeout=30, sandbox=sandbox)) as ev:  # type: ignore[arg-type]
            ev.start(WorkerSetup(folder=tmp_path))
            [outcome] = ev.evaluate([daemon(marker)])
            assert outcome.kind == "ok"
            assert host_processes(marker) == []  # gone as soon as the run is reported
            # Daemons of a batch's candidates too, once the batch is done.
            outcomes = ev.evaluate([daemon(marker), daemon(marker), "print('METRIC x=1')"])
            assert [o.kind for o in outcomes] == ["ok"] * 3
            assert host_processes(marker) == []
    finally:
        for pid in host_processes(marker):
            os.kill(pid, signal.SIGKILL)


def test_processes_started_by_the_setup_are_not_strays(tmp_path: Path, sandbox: str) -> None:
    marker = str(5_000_000 + secrets.randbelow(1_000_000))
    setup = f"import subprocess\nhelper = subprocess.Popen(['sleep', '{marker}'])"
    try:
        with ForkEvaluator(EvaluationSettings(timeout=30, sandbox=sandbox)) as ev:  # type: ignore[arg-type]
            ev.start(WorkerSetup(folder=tmp_path, setup_code=(setup,)))
            [outcome] = ev.evaluate(
                ["import os\nos.kill(helper.pid, 0)  # raises if it is gone\nprint('METRIC alive=1')"]
            )
            assert outcome.metrics == {"alive": 1.0}
            assert len(host_processes(marker)) == 1  # the worker's own helper is kept
        assert host_processes(marker) == []  # and ends with the worker
    finally:
        for pid in host_processes(marker):
            os.kill(pid, signal.SIGKILL)


# -- 2. a candidate kills its worker ---------------------------------------------------------
KILL_WORKER = "import os\nos.kill(os.getppid(), 9)"


def test_a_killed_worker_is_replaced_and_the_run_is_a_crash(tmp_path: Path, sandbox: str) -> None:
    with ForkEvaluator(EvaluationSettings(timeout=30, sandbox=sandbox)) as ev:  # type: ignore[arg-type]
        ev.start(WorkerSetup(folder=tmp_path, setup_code=("warm = 41",)))
        [killed] = ev.evaluate([KILL_WORKER])
        [after] = ev.evaluate(["print(f'METRIC x={warm + 1}')"])
        both = ev.evaluate([KILL_WORKER, "import time\ntime.sleep(5)\nprint('METRIC x=1')"])
        [again] = ev.evaluate(["print('METRIC x=3')"])
    assert killed.kind == "crash"
    assert killed.error == (
        "the candidate ended the evaluation worker (killed by signal SIGKILL); a fresh worker took over"
    )
    assert after.kind == "ok" and after.metrics == {"x": 42.0}  # the fresh worker has the warm state
    assert [o.kind for o in both] == ["crash", "crash"]
    assert "one of 2 candidates running at once ended the evaluation worker" in str(both[1].error)
    assert again.metrics == {"x": 3.0}


def test_the_loop_goes_on_after_a_candidate_kills_its_worker(
    tmp_path: Path, sandbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("kill", KILL_WORKER), ("fine", metric_cell(2))])
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}",
                    "--sandbox", sandbox)  # fmt: skip
    assert code == 0, err
    assert "#2   crash" in err and "the candidate ended the evaluation worker (killed by signal SIGKILL)" in err
    assert "#3   keep" in err
    runs = read_log(tmp_path / ".autoresearch" / "bench").runs
    assert [(r.run, r.status) for r in runs] == [(1, "keep"), (2, "crash"), (3, "keep")]
    assert "the candidate ended the evaluation worker" in str(runs[1].error)


def test_the_notebooks_background_loop_goes_on_after_a_killed_worker(tmp_path: Path, sandbox: str) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("kill", KILL_WORKER), ("fine", metric_cell(2))])
    session = ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}", sandbox=sandbox)
    session.start()  # as %%autoresearch does
    session.wait(120)
    assert session.stop_reason == "done"
    assert [r.status for r in session.runs] == ["keep", "crash", "keep"]


def test_a_worker_that_cannot_be_restarted_stops_the_loop_cleanly(
    tmp_path: Path, sandbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import nbformat

    once = "import os\nif os.path.exists('started'):\n    raise RuntimeError('only once')\nopen('started', 'w').close()"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(once), nbformat.v4.new_code_cell("%%autoresearch\n" + metric_cell(1))]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    rec = write_recording(tmp_path / "rec.jsonl", [("kill", KILL_WORKER), ("never", metric_cell(3))])
    code, err = cli(capsys, "run", tmp_path / "nb.ipynb", "--maximize", "x", "--model", f"replay:{rec}",
                    "--sandbox", sandbox)  # fmt: skip
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("jupyter-autoresearch: error: the evaluation worker ended (killed by signal SIGKILL)")
    assert "could not be restarted: setup cell 1 failed: RuntimeError: only once" in last
    assert err.count("the evaluation worker ended") == 1  # the error is printed once, as the last line
    runs = read_log(tmp_path / ".autoresearch" / "nb").runs
    assert [r.status for r in runs] == ["keep", "crash"]  # the run that ended it is logged
    assert "it could not be restarted" in str(runs[1].error)


# -- 3. a candidate reads an API key from another process's environment ---------------------
SCAN = """
import os
key = os.environ.get('PLANTED_MARKER', 'unset')
found = seen = procs = 0
for name in os.listdir('/proc'):
    if not name.isdigit():
        continue
    procs += 1
    try:
        found += b'sk-planted-' in open(f'/proc/{name}/environ', 'rb').read()
        seen += b'jupyter_autoresearch.cli' in open(f'/proc/{name}/cmdline', 'rb').read()
    except OSError:
        pass
print(f'METRIC found={found}')
print(f'METRIC seen={seen}')
print(f'METRIC procs={procs}')
"""


def test_a_planted_key_is_out_of_reach_only_in_the_sandbox(tmp_path: Path, sandbox: str) -> None:
    (tmp_path / "scan.py").write_text(SCAN)
    rec = write_recording(tmp_path / "rec.jsonl", [])
    key = f"sk-planted-{secrets.token_hex(8)}"
    env = {**os.environ, "OPENAI_API_KEY": key, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_autoresearch.cli", "run", "scan.py", "--maximize", "found",
         "--model", f"replay:{rec}", "--sandbox", sandbox],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [baseline] = read_log(tmp_path / ".autoresearch" / "scan").runs
    if sandbox == "on":
        # Its own PID namespace: bubblewrap's init, the worker and the candidate, nothing else.
        assert baseline.metrics == {"found": 0.0, "seen": 0.0, "procs": 3.0}
    else:
        # Unconfined, the command line's environment is readable: the reason for the sandbox.
        assert baseline.metrics["found"] >= 1 and baseline.metrics["seen"] >= 1
    assert key not in (tmp_path / ".autoresearch" / "scan" / "log.jsonl").read_text()


# -- 4. a candidate damages the session's log ------------------------------------------------
DAMAGE = {
    "append": "echo 'not json' >> .autoresearch/bench/log.jsonl",
    "truncate": ": > .autoresearch/bench/log.jsonl",
    "delete": "rm .autoresearch/bench/log.jsonl",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_log_is_moved_aside_and_written_again(
    tmp_path: Path, sandbox: str, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    hostile = f"import os\nos.system({DAMAGE[damage]!r})\nprint('METRIC x=2')\nprint('METRIC cost=1')"
    rec = write_recording(tmp_path / "rec.jsonl", [("damage", hostile), ("next", metric_cell(3))])
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}",
                    "--sandbox", sandbox)  # fmt: skip
    assert code == 0, err
    folder = tmp_path / ".autoresearch" / "bench"
    log = read_log(folder)
    assert [r.run for r in log.runs] == [1, 2, 3] and len(log.configs) == 1 and not log.warnings
    aside = sorted(p.name for p in folder.glob("log.jsonl.damaged-*"))
    if sandbox == "on":
        assert "warning" not in err and aside == []  # the kernel refused the write
        return
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert len(warnings) == 1
    what = {"append": "appended to", "truncate": "truncated", "delete": "deleted"}[damage]
    assert f"was {what} behind the journal's back" in warnings[0]
    if damage == "delete":
        assert aside == []
    else:
        assert aside == ["log.jsonl.damaged-1"]
        assert ("not json" in (folder / aside[0]).read_text()) == (damage == "append")


def test_writing_the_log_from_python_is_a_violation(
    tmp_path: Path, sandbox: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    hostile = "open('.autoresearch/bench/log.jsonl', 'a').write('{}')\nprint('METRIC x=5')"
    rec = write_recording(tmp_path / "rec.jsonl", [("damage", hostile)])
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}",
                    "--sandbox", sandbox)  # fmt: skip
    assert code == 0, err
    runs = read_log(tmp_path / ".autoresearch" / "bench").runs
    assert [r.status for r in runs] == ["keep", "violation"]
    assert "warning" not in err


# -- 5. no litter --------------------------------------------------------------------------
def test_a_killed_command_line_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    private = tmp_path / "tmp"
    private.mkdir()
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "bench.py").write_text("import time\nopen('data.csv').read()\ntime.sleep(0.3)\n" + metric_cell(1))
    slow = [(f"step {i}", f"import time\ntime.sleep(0.3)\n{metric_cell(i + 2)}") for i in range(30)]
    rec = write_recording(tmp_path / "rec.jsonl", slow)
    env = {**os.environ, "TMPDIR": str(private), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "jupyter_autoresearch.cli", "run", "bench.py", "--maximize", "x",
               "--model", f"replay:{rec}", "--off-limits", "data.csv"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    log = tmp_path / ".autoresearch" / "bench" / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"run"') < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(0.5)  # the worker notices and ends
    assert list(private.iterdir()) == []  # its files were in the session folder all along
    scratch = tmp_path / ".autoresearch" / "bench" / "worker"
    assert scratch.is_dir()
    done = subprocess.run([*command, "--max-iterations", "1"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not scratch.exists() and list(private.iterdir()) == []


def test_a_temporary_folder_left_by_a_killed_process_is_removed_on_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    script = (
        "from pathlib import Path\nimport sys, time\n"
        "from jupyter_autoresearch import EvaluationSettings, ForkEvaluator, WorkerSetup\n"
        f"ev = ForkEvaluator(EvaluationSettings(timeout=10))\nev.start(WorkerSetup(folder=Path({str(tmp_path)!r})))\n"
        "print('ready', flush=True)\ntime.sleep(60)\n"
    )
    env = {**os.environ, "TMPDIR": str(private), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    finally:
        process.kill()
        process.wait()
    [left] = list(private.iterdir())
    assert left.name.startswith("autoresearch-worker-")
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    with ForkEvaluator(EvaluationSettings(timeout=10, sandbox="off")) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        assert not left.exists()
        [mine] = list(private.iterdir())
    assert not mine.exists()


def test_logged_numbers_are_json_that_javascript_reads(tmp_path: Path) -> None:
    from jupyter_autoresearch.journal._journal import Journal

    journal = Journal(tmp_path / "s")
    record = ar.RunRecord(run=1, segment=0, status="keep", metric=1.0, metrics={"x": 1.0}, code="",
                          confidence=float("inf"), duration_s=float("nan"))  # fmt: skip
    journal.append_run(record)
    journal.close()
    line = (tmp_path / "s" / "log.jsonl").read_text()

    def refuse(name: str) -> None:
        raise ValueError(name)

    data = json.loads(line, parse_constant=refuse)  # NaN, Infinity: not JSON
    assert data["confidence"] is None and data["duration_s"] is None


def test_need_sandbox_fails_instead_of_skipping_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_autoresearch.isolation import _sandbox

    monkeypatch.setattr(_sandbox, "_candidates", lambda: [])
    _sandbox._probe_all.cache_clear()
    try:
        monkeypatch.setenv("AUTORESEARCH_REQUIRE_SANDBOX", "1")
        with pytest.raises(pytest.fail.Exception, match="the sandbox must run here: bubblewrap is not installed"):
            need_sandbox()
        monkeypatch.delenv("AUTORESEARCH_REQUIRE_SANDBOX")
        with pytest.raises(pytest.skip.Exception):
            need_sandbox()
    finally:
        _sandbox._probe_all.cache_clear()
