"""Candidates on a real Dask cluster: a scheduler and workers on 127.0.0.1, as processes.

The same isolation as a local run on every worker, the setup sent once per worker, the
target's folder uploaded (or shared), workers lost mid-run, an unreachable scheduler,
and a stop that cancels what is in flight. Every process is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import metric_cell, write_recording
from dask_cluster import DaskCluster

import jupyter_autoresearch as ar
from jupyter_autoresearch import DaskEvaluator, EvaluationError, EvaluationSettings, ForkEvaluator, WorkerSetup
from jupyter_autoresearch.journal._logfile import read_log

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and two workers, shared by the tests that lose no worker."""
    running = DaskCluster(tmp_path_factory.mktemp("cluster"))
    try:
        running.add_worker("w1", wait=False)
        running.add_worker("w2", wait=False)
        running.wait_for("w1", "w2")
        yield running
    finally:
        assert running.close() == []  # nothing the cluster started outlived it


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A cluster of the test's own, for tests that kill workers (no worker started yet)."""
    running = DaskCluster(tmp_path / "cluster-space")
    try:
        yield running
    finally:
        assert running.close() == []


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "data.csv").write_text("a,b\n1,2\n")
    return folder


def outcome_of(evaluator: DaskEvaluator, code: str) -> ar.Outcome:
    return evaluator.submit(textwrap.dedent(code)).result(timeout=120)


def test_candidates_run_in_a_warm_worker_on_each_dask_worker(cluster: DaskCluster, project: Path) -> None:
    setup = WorkerSetup(
        folder=project,
        setup_code=("import random\nSETUP = random.random()",),  # one value per warm worker
        off_limits=("*.csv",),
    )
    probe = """
        import sys
        assert open('data.csv').read() == 'a,b\\n1,2\\n'  # the uploaded folder is the working directory
        print(f'METRIC setup={SETUP}')
        print(f"METRIC in_dask={int('distributed' in sys.modules)}")
    """
    with DaskEvaluator(cluster.address, EvaluationSettings(timeout=3, memory_mb=256)) as evaluator:
        evaluator.start(setup)
        outcomes = evaluator.evaluate([textwrap.dedent(probe)] * 6)
        assert {o.kind for o in outcomes} == {"ok"}
        workers = {o.worker for o in outcomes}
        assert workers <= set(cluster.names().values()) and len(workers) == 2
        # The setup ran once per worker, not once per candidate: one value per worker.
        by_worker = {(o.worker, o.metrics["setup"]) for o in outcomes}
        assert len(by_worker) == 2 and len({value for _, value in by_worker}) == 2
        # A candidate is a fork of the warm worker (a bare Python), never of the Dask worker.
        assert {o.metrics["in_dask"] for o in outcomes} == {0.0}

        crashed = outcome_of(evaluator, "{}['missing']")
        assert crashed.kind == "crash" and crashed.error == "KeyError: 'missing'"
        slow = outcome_of(evaluator, "import time\ntime.sleep(60)")
        assert slow.kind == "timeout" and "timed out after 3" in str(slow.error)
        hog = outcome_of(evaluator, "x = bytearray(2 * 1024**3)")
        assert hog.kind == "crash" and "--memory-limit" in str(hog.error)
        flood = outcome_of(evaluator, "for i in range(200000): print('noise', i)\nprint('METRIC late=2')")
        assert flood.metrics == {"late": 2.0} and "output truncated" in flood.stdout_tail
        touched = outcome_of(evaluator, "open('data.csv', 'w').write('gone')\nprint('METRIC x=1')")
        assert touched.kind == "crash" and touched.touched == ("data.csv",)
        # The worker's copy is intact, and so, of course, is the file here.
        intact = outcome_of(evaluator, "assert open('data.csv').read() == 'a,b\\n1,2\\n'\nprint('METRIC ok=1')")
        assert intact.metrics == {"ok": 1.0}
        assert (project / "data.csv").read_text() == "a,b\n1,2\n"
        assert cluster.processes("_worker.py")  # the warm workers
    # Closing removes the plugin: the warm workers end and the uploaded copies are gone.
    deadline = time.monotonic() + 30
    while cluster.processes("_worker.py") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.processes("_worker.py") == []
    assert not list(cluster.folder.glob("w*-space/**/autoresearch-*"))


def test_statuses_and_metrics_are_those_of_a_local_run(cluster: DaskCluster, tmp_path: Path) -> None:
    proposals = [
        ("better", metric_cell(2)),
        ("worse", metric_cell(0.5)),
        ("crash", "raise ValueError('bad idea')"),
        ("slow", "import time\ntime.sleep(30)"),
        ("breaks the budget", metric_cell(9).replace("cost=1", "cost=50")),
        ("forgets the metric", "print('METRIC cost=1')"),
        ("not python", "def broken(:\n    pass"),
        ("touches data", "open('data.csv', 'w').write('')\n" + metric_cell(5)),
        (
            "reads data",
            "rows = open('data.csv').read().split()\nprint(f'METRIC x={len(rows) + 5}')\nprint('METRIC cost=1')",
        ),
    ]
    results = {}
    for executor in ("local", "dask"):
        folder = tmp_path / executor
        folder.mkdir()
        (folder / "data.csv").write_text("a\n1\n")
        (folder / "bench.py").write_text("open('data.csv').read()\n" + metric_cell(1))
        recording = write_recording(folder / "rec.jsonl", proposals)
        evaluator = DaskEvaluator(cluster.address, EvaluationSettings(timeout=1.0)) if executor == "dask" else None
        session = ar.create_session(
            folder / "bench.py",
            maximize="x",
            constraints=["cost <= 10"],
            model=f"replay:{recording}",
            timeout=1,
            evaluator=evaluator,
        )
        session.run()
        results[executor] = [(r.run, r.status, r.metric, dict(r.metrics), r.error) for r in session.runs]
    assert results["dask"] == results["local"]
    assert [status for _, status, *_ in results["dask"]] == [
        "keep", "keep", "discard", "crash", "timeout", "infeasible", "invalid", "invalid", "violation", "keep",
    ]  # fmt: skip


def test_correctness_checks_run_on_the_workers_as_they_run_locally(cluster: DaskCluster, tmp_path: Path) -> None:
    proposals = [
        ("better", metric_cell(2)),
        ("better, but wrong", "# bad\n" + metric_cell(3)),
        ("better still", "open('made.txt', 'w').write('x')\n" + metric_cell(4)),
    ]
    # A command that reads the candidate's code, and one that reads what it wrote in its folder.
    checks = ['! grep -q bad "$AUTORESEARCH_CANDIDATE"', "test ! -e made.txt || grep -q x made.txt"]
    results = {}
    for executor in ("local", "dask"):
        folder = tmp_path / executor
        folder.mkdir()
        (folder / "bench.py").write_text(metric_cell(1))
        recording = write_recording(folder / "rec.jsonl", proposals)
        session = ar.create_session(
            folder / "bench.py",
            maximize="x",
            model=f"replay:{recording}",
            checks=checks,
            executor=cluster.address if executor == "dask" else "local",
        )
        session.run()
        results[executor] = [(r.run, r.status, r.metric) for r in session.runs]
        if executor == "dask":
            assert {r.worker for r in session.runs} <= set(cluster.names().values())
            assert "bad" in (session.runs[2].error or "")
    assert results["dask"] == results["local"]
    assert [status for _, status, _ in results["dask"]] == ["keep", "keep", "checks_failed", "keep"]


def test_two_candidates_run_at_once_on_two_workers(cluster: DaskCluster, tmp_path: Path) -> None:
    # The folder is shared: each candidate waits until both have started (no clock involved).
    wait_for_both = """
        import os, time
        open(f'started-{N}', 'w').close()
        for _ in range(600):
            if os.path.exists('started-1') and os.path.exists('started-2'):
                break
            time.sleep(0.05)
        print(f"METRIC together={int(os.path.exists('started-1') and os.path.exists('started-2'))}")
    """
    with DaskEvaluator(cluster.address, EvaluationSettings(timeout=60), shared_folder=True) as evaluator:
        evaluator.start(WorkerSetup(folder=tmp_path))
        first, second = evaluator.evaluate([textwrap.dedent(wait_for_both).replace("{N}", str(n)) for n in (1, 2)])
    assert first.metrics == second.metrics == {"together": 1.0}
    assert first.worker != second.worker


def test_a_session_with_parallel_two_on_two_workers(cluster: DaskCluster, tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    proposals = [(f"try {n}", metric_cell(n, f"import time\ntime.sleep({n % 2} * 0.3)")) for n in (2, 3, 5, 4, 6)]
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{write_recording(tmp_path / 'rec.jsonl', proposals)}",
        parallel=2,
        evaluator=DaskEvaluator(cluster.address, EvaluationSettings(timeout=30)),
    )
    session.run()
    assert [r.run for r in session.runs] == [1, 2, 3, 4, 5, 6]
    # In the order the log has them (as decided), each was judged against the best then.
    log = (tmp_path / ".autoresearch" / "bench" / "log.jsonl").read_text().splitlines()
    best = None
    for line in (json.loads(text) for text in log):
        if "run" not in line:
            continue
        assert line["outcome"] == ("keep" if best is None or line["metric"] > best else "discard")
        best = line["metric"] if line["outcome"] == "keep" else best
        assert line["worker"] in cluster.names().values()
    assert session.best_run.metric == 6


def test_a_worker_lost_mid_run_costs_one_more_run_then_a_crash(own_cluster: DaskCluster, project: Path) -> None:
    cluster = own_cluster
    cluster.add_worker("w1", wait=False)
    cluster.add_worker("w2", wait=False)
    cluster.wait_for("w1", "w2")
    notices: list[str] = []
    slow = "import time\ntime.sleep(3)\nprint('METRIC x=1')"
    with DaskEvaluator(cluster.address, EvaluationSettings(timeout=60)) as evaluator:
        evaluator.on_notice = notices.append
        evaluator.start(WorkerSetup(folder=project))

        # Lost once: Dask runs it once more on the worker that remains.
        future = evaluator.submit(slow)
        first = cluster.running()
        cluster.kill(first)
        outcome = future.result(timeout=120)
        remaining = next(iter(cluster.names()))
        assert outcome.kind == "ok" and outcome.metrics == {"x": 1.0}
        assert outcome.worker == cluster.names()[remaining]
        assert len(notices) == 1 and "was lost while running a candidate; it runs once more" in notices[0]

        # Lost twice: a crash that names both workers; it is not tried a third time.
        future = evaluator.submit(slow)
        second = cluster.running()
        lost_first = cluster.names()[second]
        cluster.kill(second)
        cluster.add_worker("w3")
        assert cluster.running() == "w3"
        lost_second = cluster.names()["w3"]
        cluster.kill("w3")
        outcome = future.result(timeout=120)
        assert outcome.kind == "crash"
        assert (
            outcome.error == f"lost with its Dask worker twice ({lost_first}, then {lost_second} on its one more run)"
        )

        # The evaluator goes on with the workers there are.
        cluster.add_worker("w4")
        after = evaluator.submit("print('METRIC x=2')").result(timeout=120)
        assert after.kind == "ok" and after.worker == cluster.names()["w4"]


def test_with_no_worker_left_the_evaluator_stops_in_one_line(own_cluster: DaskCluster, project: Path) -> None:
    own_cluster.add_worker("w1")
    with DaskEvaluator(own_cluster.address, EvaluationSettings(timeout=60), worker_wait=2) as evaluator:
        evaluator.start(WorkerSetup(folder=project))
        future = evaluator.submit("import time\ntime.sleep(60)")
        own_cluster.kill(own_cluster.running())
        outcome = future.result(timeout=60)
        expected = (
            f"no Dask worker is left at {own_cluster.address} (waited 2s for one); start some with: "
            f"dask worker {own_cluster.address}, then run the session again to resume it"
        )
        assert outcome.kind == "crash" and outcome.error == expected
        with pytest.raises(EvaluationError) as caught:
            evaluator.submit("print('METRIC x=1')")
        assert str(caught.value) == expected


def test_a_lost_scheduler_is_a_crash_then_one_line(own_cluster: DaskCluster, project: Path) -> None:
    from dask_cluster import _kill_group

    own_cluster.add_worker("w1")
    with DaskEvaluator(own_cluster.address, EvaluationSettings(timeout=60)) as evaluator:
        evaluator.start(WorkerSetup(folder=project))
        future = evaluator.submit("import time\ntime.sleep(60)")
        own_cluster.running()
        _kill_group(own_cluster.scheduler)
        expected = (
            f"lost the connection to the Dask scheduler at {own_cluster.address}; once it is back, "
            "run the session again to resume it"
        )
        assert future.result(timeout=60) == ar.Outcome(kind="crash", error=expected)
        with pytest.raises(EvaluationError, match="lost the connection to the Dask scheduler"):
            evaluator.submit("print('METRIC x=1')")


def test_a_candidate_that_kills_its_dask_worker_is_logged_as_a_crash(own_cluster: DaskCluster, tmp_path: Path) -> None:
    for name in ("w1", "w2"):  # each nanny restarts its worker once the candidate killed it
        own_cluster.add_worker(name, wait=False)
    own_cluster.wait_for("w1", "w2")
    # Unconfined, a candidate can find its Dask worker: the parent of its warm worker.
    kill_dask_worker = textwrap.dedent(
        """
        import os, signal
        stat = open(f'/proc/{os.getppid()}/stat').read()
        os.kill(int(stat.rsplit(')', 1)[1].split()[1]), signal.SIGKILL)
        """
    )
    (tmp_path / "bench.py").write_text(metric_cell(1))
    proposals = [("kill", kill_dask_worker), ("fine", metric_cell(2))]
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{write_recording(tmp_path / 'rec.jsonl', proposals)}",
        evaluator=DaskEvaluator(own_cluster.address, EvaluationSettings(timeout=30, sandbox="off")),
    )
    session.run()
    assert [r.status for r in session.runs] == ["keep", "crash", "keep"]
    assert str(session.runs[1].error).startswith("lost with its Dask worker twice (tcp://127.0.0.1:")
    runs = read_log(tmp_path / ".autoresearch" / "bench").runs
    assert [r.status for r in runs] == ["keep", "crash", "keep"]


def test_an_unreachable_scheduler_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    (tmp_path / "bench.py").write_text(metric_cell(1))
    session = ar.create_session(
        tmp_path / "bench.py",
        maximize="x",
        model=f"replay:{write_recording(tmp_path / 'rec.jsonl', [('a', metric_cell(2))])}",
        evaluator=DaskEvaluator(f"tcp://127.0.0.1:{port}", connect_timeout=2),
    )
    with pytest.raises(EvaluationError) as caught:
        session.run()
    assert str(caught.value) == (
        f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port} (no answer within 2s); "
        "check the address, or start one with: dask scheduler"
    )
    assert session.runs == ()  # nothing ran


def test_stop_cancels_the_candidates_in_flight(cluster: DaskCluster, project: Path) -> None:
    marker = f"{cluster.marker}-sleeper"
    sleep = "import time; time.sleep(99)"
    sleeper = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', '{sleep}', '{marker}'])"
    with DaskEvaluator(cluster.address, EvaluationSettings(timeout=300)) as evaluator:
        evaluator.start(WorkerSetup(folder=project))
        futures = [evaluator.submit(sleeper) for _ in range(2)]
        deadline = time.monotonic() + 60
        while len(cluster.processes(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(cluster.processes(marker)) == 2
        threading.Thread(target=evaluator.cancel).start()  # as Stop does, from another thread
        outcomes = [f.result(timeout=60) for f in futures]
        assert [o.kind for o in outcomes] == ["cancelled", "cancelled"]
        assert evaluator.submit(sleeper).result(timeout=10).kind == "cancelled"  # until the next start
        deadline = time.monotonic() + 30
        while cluster.processes(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cluster.processes(marker) == []  # killed on the workers, not left to finish


def test_a_folder_over_the_upload_limit_is_one_line(cluster: DaskCluster, project: Path) -> None:
    (project / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    with DaskEvaluator(cluster.address, upload_limit_mb=1) as evaluator, pytest.raises(EvaluationError) as caught:
        evaluator.start(WorkerSetup(folder=project))
    assert str(caught.value) == (
        f"the target's folder {project} holds 2.0 MB, over the upload limit of 1 MB; raise --upload-limit, "
        "or put the folder on storage every Dask worker reads at the same path and pass --shared-folder"
    )


def test_a_shared_folder_the_workers_cannot_see_is_one_line(cluster: DaskCluster, tmp_path: Path) -> None:
    folder = tmp_path / "here-only"
    folder.mkdir()
    with DaskEvaluator(cluster.address, shared_folder=True) as evaluator:
        shutil.rmtree(folder)  # gone by the time the workers look for it
        with pytest.raises(EvaluationError) as caught:
            evaluator.start(WorkerSetup(folder=folder))
    assert f"{folder} is not a folder on Dask worker tcp://127.0.0.1:" in str(caught.value)
    assert "with --shared-folder every worker must read the target's folder at the same path" in str(caught.value)


def test_a_failing_setup_cell_is_one_line(cluster: DaskCluster, project: Path) -> None:
    with DaskEvaluator(cluster.address) as evaluator, pytest.raises(EvaluationError) as caught:
        evaluator.start(WorkerSetup(folder=project, setup_code=("raise RuntimeError('no data')",)))
    assert "could not start its evaluation worker: setup cell 1 failed: RuntimeError: no data" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_without_distributed_the_executor_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(EvaluationError) as caught:
        DaskEvaluator("tcp://10.0.0.1:8786")
    assert str(caught.value) == (
        '--executor tcp://10.0.0.1:8786 needs Dask\'s distributed package: pip install "jupyter-autoresearch[dask]"'
    )


def test_local_and_dask_evaluators_take_the_same_calls(cluster: DaskCluster, project: Path) -> None:
    """submit() returns at once; each outcome arrives when its candidate finishes."""
    settings = EvaluationSettings(timeout=30)
    for evaluator in (ForkEvaluator(settings), DaskEvaluator(cluster.address, settings)):
        with evaluator:
            evaluator.start(WorkerSetup(folder=project))
            slow = evaluator.submit("import time\ntime.sleep(60)\nprint('METRIC x=1')")
            quick = evaluator.submit("print('METRIC x=2')")
            assert quick.result(timeout=60).metrics == {"x": 2.0}
            assert not slow.done()  # the quick one did not wait for it
            evaluator.cancel(slow)
            assert slow.result(timeout=60).kind == "cancelled"
            assert evaluator.submit("print('METRIC x=3')").result(timeout=60).kind == "ok"


def test_the_upload_follows_links_and_leaves_records_behind(tmp_path: Path) -> None:
    from jupyter_autoresearch.isolation._upload import make_read_only, pack_folder, unpack_folder

    project, elsewhere, copy = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "copy"
    (project / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "data.csv").write_text("a\n1\n")
    (project / "sub" / "more.txt").write_text("more")
    (elsewhere / "big.csv").write_text("linked")
    (project / "linked").symlink_to(elsewhere, target_is_directory=True)
    (project / "loop").symlink_to(project, target_is_directory=True)  # a link back up is taken once
    for skipped in (".autoresearch/bench", ".git", "__pycache__"):
        (project / skipped).mkdir(parents=True)
        (project / skipped / "file").write_text("not uploaded")
    unpack_folder(pack_folder(project, limit_mb=1), copy)
    files = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    assert files == ["data.csv", "linked/big.csv", "sub/more.txt"]
    assert (copy / "linked" / "big.csv").read_text() == "linked" and not (copy / "linked").is_symlink()

    def writable(path: Path) -> bool:  # by its mode (root may write anyway)
        return bool(path.stat().st_mode & 0o222)

    make_read_only(copy, ["*.csv"])
    assert not writable(copy / "data.csv") and writable(copy / "sub" / "more.txt")
    make_read_only(copy, ["sub/*"], before=["*.csv"])  # the session changed its off-limits files
    assert writable(copy / "data.csv") and not writable(copy / "sub" / "more.txt")


# -- the command line ----------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    from jupyter_autoresearch.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


#: Two candidates that each wait for the other to start: on workers of one thread each,
#: they can only both finish when they run at once on two workers (a shared folder).
MEET = (
    "import os, glob, time, uuid\n"
    "open(f'started-{uuid.uuid4().hex}', 'w').close()\n"
    "for _ in range(1200):\n"
    "    if len(glob.glob('started-*')) >= 2:\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "print(f\"METRIC met={int(len(glob.glob('started-*')) >= 2)}\")\n"
)


def test_the_command_line_runs_two_at_once_on_two_workers(
    cluster: DaskCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", MEET + metric_cell(2)), ("b", MEET + metric_cell(3))])
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}",
                    "--executor", cluster.address, "--parallel", "2", "--shared-folder")  # fmt: skip
    assert code == 0, err
    runs = read_log(tmp_path / ".autoresearch" / "bench").runs
    assert sorted(r.metrics.get("met") for r in runs[1:]) == [1.0, 1.0]  # they met: both ran at once
    workers = set(cluster.names().values())
    assert {r.worker for r in runs[1:]} == workers  # one on each worker
    assert all(r.queued_s is not None and r.duration_s is not None for r in runs)
    for worker in workers:
        assert f"running on {worker}" in err
    assert "in flight: #" in err  # the other run, when the first was decided


def test_the_executor_comes_from_the_environment_too(
    cluster: DaskCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORESEARCH_EXECUTOR", cluster.address)
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}")
    assert code == 0, err
    runs = read_log(tmp_path / ".autoresearch" / "bench").runs
    assert [r.status for r in runs] == ["keep", "keep"]
    assert {r.worker for r in runs} <= set(cluster.names().values())


def test_an_unreachable_scheduler_on_the_command_line_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dask.config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", f"replay:{rec}",
                        "--executor", f"tcp://127.0.0.1:{port}")  # fmt: skip
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"jupyter-autoresearch: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} (no answer "
        "within 2s); check the address, or start one with: dask scheduler"
    )
    assert (
        not (tmp_path / ".autoresearch" / "bench" / "log.jsonl").exists()
        or read_log(tmp_path / ".autoresearch" / "bench").runs == ()
    )


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ("tcp//nowhere", "--executor 'tcp//nowhere' is not understood; give local, or a Dask scheduler's address"),
        ("tcp://10.0.0.1:8786", "--executor 'tcp://10.0.0.1:8786' needs Dask's distributed package: pip install"),
    ],
)
def test_a_bad_executor_or_a_missing_extra_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, executor: str, message: str
) -> None:
    import sys

    if "needs" in message:
        monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    (tmp_path / "bench.py").write_text(metric_cell(1))
    code, err = cli(capsys, "run", tmp_path / "bench.py", "--maximize", "x", "--model", "replay:none.jsonl",
                    "--executor", executor)  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert message in err.strip().splitlines()[-1]


def test_the_magic_ships_the_kernels_variables_to_the_workers(cluster: DaskCluster, ip: Any, tmp_path: Path) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [("scale it", "print(f'METRIC x={base * 2}')")])
    ip.run_cell("base = 21")
    line = f"--maximize x --model replay:{rec} --executor {cluster.address} --wait"
    ip.run_cell_magic("autoresearch", line, "print(f'METRIC x={base}')")
    session = ip.user_ns["_autoresearch"]
    assert session.stop_reason == "done" and [r.metric for r in session.runs] == [21.0, 42.0]
    assert {r.worker for r in session.runs} <= set(cluster.names().values())
