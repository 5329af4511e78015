import os
import textwrap
import time
from pathlib import Path

import pytest

from jupyter_autoresearch import EvaluationSettings, ForkEvaluator, WorkerSetup
from jupyter_autoresearch.isolation._evaluate import imported_modules, scrub_environment


@pytest.fixture
def evaluator(tmp_path: Path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with ForkEvaluator(EvaluationSettings(timeout=3, memory_mb=512)) as ev:
        ev.start(WorkerSetup(folder=tmp_path, preimport=("json",), off_limits=("*.csv",)))
        yield ev


def run(ev: ForkEvaluator, code: str):
    [outcome] = ev.evaluate([textwrap.dedent(code)])
    return outcome


def test_metrics_and_clean_state_per_candidate(evaluator: ForkEvaluator) -> None:
    first = run(evaluator, "import json\nleak = 1\nprint('METRIC x=1.5')")
    second = run(evaluator, "print('METRIC seen=' + str(int('leak' in globals())))")
    assert first.kind == "ok" and first.metrics == {"x": 1.5}
    assert second.metrics == {"seen": 0.0}  # nothing carries over between candidates


def test_crash_reports_the_exception_and_a_traceback_from_the_candidate(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "print('METRIC x=1')\n{}['missing_column']")
    assert outcome.kind == "crash"
    assert outcome.error == "KeyError: 'missing_column'"
    assert 'File "<candidate>", line 2' in outcome.stderr_tail
    assert "_worker" not in outcome.stderr_tail  # the harness's own frames are hidden


def test_nonzero_exit_is_a_crash_and_zero_exit_is_not(evaluator: ForkEvaluator) -> None:
    assert run(evaluator, "import sys\nsys.exit(3)").kind == "crash"
    assert run(evaluator, "import sys\nprint('METRIC x=1')\nsys.exit(0)").kind == "ok"


def test_timeout_kills_the_whole_process_group(evaluator: ForkEvaluator, tmp_path: Path) -> None:
    outcome = run(
        evaluator,
        """
        import subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        open("grandchild.pid", "w").write(str(child.pid))
        time.sleep(60)
    """,
    )
    assert outcome.kind == "timeout" and "timed out after 3" in str(outcome.error)
    pid = int((tmp_path / "grandchild.pid").read_text())
    assert not alive(evaluator, pid)  # the grandchild died with its group


def alive(ev: ForkEvaluator, pid: int) -> bool:
    """Whether ``pid`` (as the worker numbers processes: the sandbox has its own) still runs."""
    outcome = run(
        ev,
        f"""
        try:
            state = open('/proc/{pid}/status').read().split('State:')[1].split()[0]
        except (FileNotFoundError, IndexError):
            state = 'gone'
        print('METRIC alive=' + str(int(state not in ('gone', 'Z'))))
    """,
    )
    return bool(outcome.metrics["alive"])


def test_memory_limit(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "x = bytearray(2 * 1024**3)")
    assert outcome.kind == "crash" and "MemoryError" in str(outcome.error)
    assert "--memory-limit" in str(outcome.error)


def test_output_is_capped_but_metric_lines_survive(tmp_path: Path) -> None:
    with ForkEvaluator(EvaluationSettings(timeout=10, output_cap=1000)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        outcome = run(ev, "print('METRIC early=1')\nfor i in range(100000): print('noise', i)\nprint('METRIC late=2')")
    assert outcome.metrics == {"early": 1.0, "late": 2.0}
    assert len(outcome.stdout_tail) < 1100 and "output truncated" in outcome.stdout_tail


def test_secrets_are_removed_and_cwd_is_the_target_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    monkeypatch.setenv("HARMLESS", "yes")
    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        outcome = run(
            ev,
            """
            import os
            print(sorted(k for k in os.environ if k in ("OPENAI_API_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "HARMLESS")))
            print(os.getcwd())
        """,
        )
    assert "['HARMLESS']" in outcome.stdout_tail
    assert str(tmp_path) in outcome.stdout_tail


def test_figures_come_back_as_png(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nprint('METRIC x=1')")
    assert len(outcome.figures) == 1 and outcome.figures[0].startswith(b"\x89PNG")


def test_off_limits_write_through_python_is_refused(evaluator: ForkEvaluator, tmp_path: Path) -> None:
    outcome = run(evaluator, "open('data.csv', 'w').write('wiped')")
    assert outcome.touched == ("data.csv",)
    assert (tmp_path / "data.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("sandbox", ["off", "on"])
def test_off_limits_write_behind_pythons_back_is_refused_or_restored(tmp_path: Path, sandbox: str) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with ForkEvaluator(EvaluationSettings(timeout=10, sandbox=sandbox)) as ev:  # type: ignore[arg-type]
        ev.start(WorkerSetup(folder=tmp_path, off_limits=("*.csv",)))
        outcome = run(ev, "import os\nos.system('echo wiped > data.csv; echo new > more.csv')\nprint('METRIC x=1')")
    # Confined, the kernel refuses the write (a read-only mount); unconfined, the
    # fingerprints catch it and the file is restored.
    assert set(outcome.touched) == ({"more.csv"} if sandbox == "on" else {"data.csv", "more.csv"})
    assert (tmp_path / "data.csv").read_text() == "a,b\n1,2\n"
    assert not (tmp_path / "more.csv").exists()


def test_reading_off_limits_files_is_fine(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "print('METRIC n=' + str(len(open('data.csv').read())))")
    assert outcome.kind == "ok" and outcome.touched == ()


def test_a_batch_runs_concurrently_and_keeps_order(evaluator: ForkEvaluator) -> None:
    codes = [f"import time\ntime.sleep(0.5)\nprint('METRIC i={i}')" for i in range(3)]
    started = time.monotonic()
    outcomes = evaluator.evaluate(codes)
    assert [o.metrics["i"] for o in outcomes] == [0.0, 1.0, 2.0]
    assert time.monotonic() - started < 1.4  # three 0.5 s sleeps overlapped


def test_setup_code_and_shipped_namespace_are_warm(tmp_path: Path) -> None:
    import cloudpickle

    def shipped(v: int) -> int:
        return v * 2

    namespace = cloudpickle.dumps({"double": shipped, "base": 20})
    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path, setup_code=("offset = 1",), namespace=namespace))
        outcome = run(ev, "print(f'METRIC x={double(base) + offset}')")
    assert outcome.metrics == {"x": 41.0}


def test_failing_setup_is_one_clear_error(tmp_path: Path) -> None:
    from jupyter_autoresearch import EvaluationError

    with (
        ForkEvaluator(EvaluationSettings(timeout=10)) as ev,
        pytest.raises(EvaluationError, match="setup cell 2 failed: NameError"),
    ):
        ev.start(WorkerSetup(folder=tmp_path, setup_code=("a = 1", "b = missing")))


def test_cancel_from_another_thread(evaluator: ForkEvaluator) -> None:
    import threading

    threading.Timer(0.3, evaluator.cancel).start()
    outcome = run(evaluator, "import time\ntime.sleep(30)")
    assert outcome.kind == "cancelled"


def test_helpers() -> None:
    assert imported_modules("import pandas as pd\nfrom cvxpy import Variable\nfrom . import x\nimport a.b") == (
        "pandas",
        "cvxpy",
        "a",
    )
    assert scrub_environment({"OPENAI_API_KEY": "k", "HF_TOKEN": "t", "MY_SECRET_X": "s", "PATH": "/bin"}) == {
        "PATH": "/bin"
    }


def test_nothing_a_candidate_writes_is_executed_by_the_worker(tmp_path: Path) -> None:
    import pickle

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(tmp_path / "pwned"), "w"))

    payload = pickle.dumps(Payload())
    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        bad = run(
            ev,
            f"""
            import os
            for fd in range(3, 256):
                try:
                    os.write(fd, {payload!r})
                except OSError:
                    pass
            os._exit(0)
        """,
        )
        after = run(ev, "import builtins\nprint('METRIC clean=' + str(int(not hasattr(builtins, 'POISON'))))")
    assert bad.kind == "crash" and not (tmp_path / "pwned").exists()
    assert after.kind == "ok" and after.metrics == {"clean": 1.0}


def test_the_last_metric_survives_a_flood_of_metric_lines(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "for i in range(20000): print(f'METRIC loss={i}')\nprint('METRIC val_loss=0.123')")
    assert outcome.metrics == {"loss": 19999.0, "val_loss": 0.123}


def test_a_refused_last_value_keeps_the_earlier_valid_one(evaluator: ForkEvaluator) -> None:
    outcome = run(evaluator, "print('METRIC x=2')\nprint('METRIC x=nan')")
    assert outcome.metrics == {"x": 2.0} and "not finite" in outcome.problems[0]


def test_off_limits_patterns_follow_glob_rules_and_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "sub").mkdir()
    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path, off_limits=("*.csv",)))
        nested = run(ev, "open('sub/out.csv', 'w').write('x')\nprint('METRIC x=1')")
        moved = run(ev, "import os\nos.chdir('sub')\nopen('../data.csv', 'w').write('x')")
    assert nested.kind == "ok" and nested.touched == () and nested.written == ("sub/out.csv",)
    assert moved.kind == "crash" and moved.touched == ("data.csv",)
    assert (tmp_path / "data.csv").read_text() == "a\n"


def test_a_symlink_planted_over_a_protected_file_is_replaced_not_followed(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("keep me")
    with ForkEvaluator(EvaluationSettings(timeout=10, sandbox="off")) as ev:  # the backstop behind the mounts
        ev.start(WorkerSetup(folder=tmp_path, off_limits=("data.csv",)))
        outcome = run(ev, f"import os\nos.system('rm data.csv; ln -s {outside} data.csv')")
    assert outcome.touched == ("data.csv",)
    assert not (tmp_path / "data.csv").is_symlink() and (tmp_path / "data.csv").read_text() == "a\n"
    assert outside.read_text() == "keep me"


def test_candidates_see_no_descriptor_of_the_worker_or_their_siblings(tmp_path: Path) -> None:
    code = "import os, time\ntime.sleep(0.3)\nprint('METRIC fds=' + str(len(os.listdir('/proc/self/fd'))))"
    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        alone = run(ev, code)
        together = ev.evaluate([code] * 4)
    assert {o.metrics["fds"] for o in together} == {alone.metrics["fds"]}
    assert alone.metrics["fds"] <= 6  # stdin, stdout, stderr, the result and exports pipes, listdir's own


def test_starting_and_closing_leaks_no_descriptors_or_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    private = tmp_path / "tmp"  # /tmp is shared with whatever else runs on the machine
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))

    def count() -> tuple[int, int]:
        return len(os.listdir("/proc/self/fd")), len(list(private.iterdir()))

    with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
    before = count()
    assert before[1] == 0
    for _ in range(5):
        with ForkEvaluator(EvaluationSettings(timeout=10)) as ev:
            ev.start(WorkerSetup(folder=tmp_path, off_limits=("*.csv",)))
            run(ev, "print('METRIC x=1')")
    assert count() == before


def test_a_worker_that_dies_during_setup_shows_its_last_words_and_leaves_nothing(tmp_path: Path, sandbox: str) -> None:
    from jupyter_autoresearch import EvaluationError

    session = tmp_path / ".autoresearch" / "s"
    session.mkdir(parents=True)
    dying = "import os, sys\nprint('dying loudly', file=sys.stderr, flush=True)\nos._exit(3)"
    with (
        ForkEvaluator(EvaluationSettings(timeout=10, sandbox=sandbox)) as ev,  # type: ignore[arg-type]
        pytest.raises(EvaluationError, match=r"exited unexpectedly \(exited with status 3\): dying loudly"),
    ):
        ev.start(WorkerSetup(folder=tmp_path, setup_code=(dying,), session_folder=session))
    assert list(session.iterdir()) == []  # its log lived in the session folder, and is gone


def test_submit_returns_at_once_and_each_outcome_arrives_when_it_finishes(evaluator: ForkEvaluator) -> None:
    slow = evaluator.submit("import time\ntime.sleep(60)\nprint('METRIC x=1')")
    quick = evaluator.submit("print('METRIC x=2')")
    assert quick.result(timeout=30).metrics == {"x": 2.0}
    assert not slow.done()  # the quick one did not wait for it
    evaluator.cancel(slow)  # only that one
    assert slow.result(timeout=30).kind == "cancelled"
    assert evaluator.submit("print('METRIC x=3')").result(timeout=30).metrics == {"x": 3.0}
    evaluator.cancel()  # every run, and what is submitted after, until the next start
    assert evaluator.submit("print('METRIC x=4')").result(timeout=30).kind == "cancelled"


def test_a_candidate_started_beside_one_whose_output_has_ended_runs_untouched(evaluator: ForkEvaluator) -> None:
    # The first closes its output early and runs on: the worker closes its ends of those
    # pipes, whose numbers the next candidates' pipes then take. Neither those candidates
    # (closing their siblings' pipes) nor the worker (ending the first) may touch them.
    quiet = evaluator.submit("import os, time\nos.close(1)\nos.close(2)\ntime.sleep(1.0)")
    time.sleep(0.5)
    later = [evaluator.submit(f"import time\ntime.sleep(1.5)\nprint('METRIC x={n}')") for n in range(3)]
    assert [f.result(timeout=30).metrics for f in later] == [{"x": 0.0}, {"x": 1.0}, {"x": 2.0}]
    assert quiet.result(timeout=30).kind == "ok"
