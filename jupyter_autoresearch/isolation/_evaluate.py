"""Evaluate candidate cells in isolation; knows nothing about models.

:class:`ForkEvaluator` starts one warm worker process (:mod:`._worker`) per session and
asks it to fork a clean child per candidate.
"""

from __future__ import annotations

import ast
import concurrent.futures
import fcntl
import glob
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Literal

from ..protocol._checks import Check
from ..protocol._errors import EvaluationError
from ..protocol._metrics import parse_metrics
from ..protocol._redact import is_secret_name
from ..protocol._settings import EvaluationSettings
from ._sandbox import Bubblewrap, Sandbox, SandboxUnavailable, find_bubblewrap

__all__ = [
    "Evaluator",
    "ForkEvaluator",
    "OffLimitsGuard",
    "Outcome",
    "WorkerSetup",
    "imported_modules",
    "scrub_environment",
]

OutcomeKind = Literal["ok", "crash", "timeout", "cancelled"]

log = logging.getLogger("jupyter_autoresearch")


@dataclass(frozen=True)
class Outcome:
    """What one evaluation of a candidate produced.

    Attributes:
        kind: ``ok`` (ran to the end), ``crash``, ``timeout`` or ``cancelled``.
        metrics: the METRIC values it printed (the last value of each name).
        problems: METRIC lines that were refused, and why.
        error: one line saying why it failed, when it did.
        touched: off-limits files it tried to change (they were protected or restored).
        written: other files in the target's folder it opened for writing.
        imported: modules it imported that were not warm yet.
        figures: PNG images of the matplotlib figures it left open.
        exported: the variables it was asked to export, cloudpickled (never unpickled
            by the harness: only a checking process does); None when not asked or not
            sent.
        missing: variables it was asked to export and did not define.
        export_problem: why the variables could not be sent, when they could not.
        report: the JSON dict a checking run left in ``__autoresearch_report__``.
        worker: where it ran: ``local``, or a Dask worker's address.
        queued_s: seconds between its submission and its start (waiting for a free
            worker, and the trip to it).
    """

    kind: OutcomeKind
    metrics: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    stdout_tail: str = ""
    stderr_tail: str = ""
    duration_s: float = 0.0
    error: str | None = None
    touched: tuple[str, ...] = ()
    written: tuple[str, ...] = ()
    imported: tuple[str, ...] = ()
    figures: tuple[bytes, ...] = ()
    exported: bytes | None = None
    missing: tuple[str, ...] = ()
    export_problem: str | None = None
    report: Mapping[str, Any] | None = None
    worker: str = ""
    queued_s: float = 0.0


@dataclass(frozen=True)
class WorkerSetup:
    """The warm state every candidate starts from.

    Attributes:
        folder: the working directory of every candidate (the target's folder).
        setup_code: cells executed once in the worker before any candidate (headless
            notebooks: the code cells above the benchmark cell).
        namespace: a cloudpickle of variables shipped from the user's kernel.
        preimport: modules imported once so that candidates find them warm.
        off_limits: glob patterns, relative to ``folder``, of files candidates must not change.
        session_folder: the session's folder: read-only for candidates; the evaluator
            keeps its own files there while it runs (a temporary folder without one).
        hidden: glob patterns, relative to ``folder``, of files candidates must not
            read (holdout data); the sandbox shows them empty.
    """

    folder: Path
    setup_code: tuple[str, ...] = ()
    namespace: bytes | None = None
    preimport: tuple[str, ...] = ()
    off_limits: tuple[str, ...] = ()
    session_folder: Path | None = None
    hidden: tuple[str, ...] = ()


class Evaluator(ABC):
    """Runs candidate cells in isolation. Use as a context manager or call :meth:`close`.

    :meth:`submit` starts one candidate and returns at once, so a caller can keep
    several in flight and take each outcome as it finishes; :meth:`evaluate` is the
    batch form built on it. Both evaluators, local and Dask, are driven alike.

    Attributes:
        on_notice: called with one line the user should read (the sandbox is off, a
            worker was replaced); set by the session that drives the evaluator.
    """

    on_notice: Callable[[str], None] | None = None

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            self.on_notice(text)
        else:
            log.warning("autoresearch: %s", text)

    #: Whether :meth:`evaluate` takes ``export=``: names of variables each candidate sends
    #: back, cloudpickled, for the checks (``--same-output``, ``--holdout-inputs``).
    exports_values: bool = False

    @abstractmethod
    def start(self, setup: WorkerSetup) -> None:
        """Prepare the warm state; raises EvaluationError if the setup fails."""

    @abstractmethod
    def submit(
        self, code: str, on_start: Callable[[str], None] | None = None, *, export: Sequence[str] = ()
    ) -> Future[Outcome]:
        """Start evaluating ``code``; the future's result is its outcome (never an exception).

        ``on_start`` is called, from any thread, with where the candidate runs (``local``,
        or a Dask worker's address) once it has started there. ``export`` names variables
        the run sends back, cloudpickled, in ``Outcome.exported``; an evaluator that cannot
        (``exports_values`` False) is never given any.

        Raises:
            EvaluationError: the evaluator cannot run anything (not started, or its
                worker could not be restarted).
        """

    def evaluate(self, codes: Sequence[str], *, export: Sequence[str] = ()) -> list[Outcome]:
        """Run each code concurrently and return their outcomes in the same order."""
        futures = [self.submit(code, export=export) if export else self.submit(code) for code in codes]
        return [future.result() for future in futures]

    @abstractmethod
    def protect(self, patterns: Sequence[str]) -> None:
        """Replace the off-limits patterns (relative globs) from the next evaluation on."""

    def check(self, code: str, check: Check) -> Outcome:
        """Run a correctness check of the candidate ``code`` where candidates run.

        A check command runs in the target's folder with the candidate's code in the file
        ``$AUTORESEARCH_CANDIDATE``; a check cell runs in the namespace the candidate
        leaves. The outcome is ``ok`` when the check passed.

        Raises:
            EvaluationError: this evaluator cannot run checks.
        """
        raise EvaluationError.cannot_check(type(self).__name__)

    def cancel(self, future: Future[Outcome] | None = None) -> None:  # noqa: B027 - optional
        """Kill the candidate of ``future``, or every candidate running now, after which
        new submissions are cancelled at once until the next :meth:`start` (the session
        is stopping). Called from any thread."""

    def close(self) -> None:  # noqa: B027 - optional: an evaluator may hold nothing
        """Release the worker."""

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scrub_environment(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` without secrets (``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``)."""
    return {key: value for key, value in env.items() if not is_secret_name(key)}


def imported_modules(code: str) -> tuple[str, ...]:
    """Top-level modules a cell imports (``import pandas as pd`` gives ``pandas``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return ()
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return tuple(dict.fromkeys(names))


class OffLimitsGuard:
    """Fingerprints off-limits files and restores them if a run changed them.

    The worker also refuses writes to them from Python (an audit hook), and the sandbox
    mounts them read-only; this guard is the backstop for writes that get past both.

    Args:
        folder: the target's folder; ``patterns`` are relative to it.
        patterns: glob patterns of the protected files.
        backup: an empty folder for the backup copies (removed by :meth:`close`).
    """

    def __init__(self, folder: Path, patterns: Sequence[str], backup: Path) -> None:
        self.folder = folder
        self.patterns = tuple(patterns)
        self._backup = backup
        backup.mkdir(parents=True, exist_ok=True)
        self._known: dict[str, tuple[int, int, int, str]] = {}
        self.snapshot()

    def _paths(self) -> set[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            for path in glob.glob(pattern, root_dir=self.folder, recursive=True):
                if (self.folder / path).is_file():
                    found.add(os.path.normpath(path))
        return found

    def files(self) -> tuple[Path, ...]:
        """The protected files that exist now."""
        return tuple(self.folder / path for path in sorted(self._paths()))

    def _stat(self, path: str) -> tuple[int, int, int]:
        info = (self.folder / path).stat()
        return info.st_size, info.st_mtime_ns, info.st_ino

    def _digest(self, path: str) -> str:
        with open(self.folder / path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def snapshot(self) -> None:
        """Record the protected files as they are now, with a backup copy of each."""
        for path in self._paths():
            stat = self._stat(path)
            if path in self._known and self._known[path][:3] == stat:
                continue
            backup = self._backup / hashlib.sha1(path.encode()).hexdigest()
            shutil.copy2(self.folder / path, backup)
            self._known[path] = (*stat, self._digest(path))

    def check_and_restore(self) -> list[str]:
        """Paths a run created, changed or deleted; each is put back as it was."""
        changed: list[str] = []
        current = self._paths()
        for path in sorted(current - self._known.keys()):
            (self.folder / path).unlink()  # created by a candidate where nothing may be written
            changed.append(path)
        for path, (size, mtime, inode, digest) in self._known.items():
            if path in current and self._stat(path) == (size, mtime, inode):
                continue
            if path in current and self._digest(path) == digest:
                continue
            backup = self._backup / hashlib.sha1(path.encode()).hexdigest()
            # Copy beside it, then rename over it: a symlink planted at the path is
            # replaced, never written through.
            restored = self.folder / f"{path}.autoresearch-restore"
            shutil.copy2(backup, restored)
            os.replace(restored, self.folder / path)
            self._known[path] = (*self._stat(path), digest)
            changed.append(path)
        return changed

    def close(self) -> None:
        shutil.rmtree(self._backup, ignore_errors=True)


class _Scratch:
    """Where an evaluator keeps its own files: the worker's log and off-limits backups.

    In the session folder when there is one, cleared when a worker starts (a killed run
    leaves its files there); otherwise a temporary folder, locked while in use, that
    the next start removes if its owner died. Removed by :meth:`close`.
    """

    _PREFIX = "autoresearch-worker-"

    def __init__(self, session_folder: Path | None) -> None:
        self._lock: IO[bytes] | None = None
        if session_folder is not None:
            self.path = session_folder / "worker"
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True)
            return
        self._remove_stale()
        # Locked before it gets the name other starts look for: between mkdtemp and flock
        # another evaluator's clean-up would take a fresh folder for a stale one.
        starting = Path(tempfile.mkdtemp(prefix="autoresearch-starting-"))
        self._lock = open(starting / "lock", "wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = starting.with_name(self._PREFIX + starting.name.removeprefix("autoresearch-starting-"))
        starting.rename(self.path)

    @classmethod
    def _remove_stale(cls) -> None:
        for folder in Path(tempfile.gettempdir()).glob(f"{cls._PREFIX}*"):
            try:
                with open(folder / "lock", "rb") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while its owner lives
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


#: The fallback warning is said once per process.
_warned_unconfined = False


@dataclass
class _Run:
    """A candidate sent to the worker: its future, and whether it ran alone (so a file
    changed meanwhile can only be its doing)."""

    result: Future[Outcome]
    submitted: float
    alone: bool = True


def _cancelled() -> Outcome:
    return Outcome(kind="cancelled", error="stopped by the user")


class ForkEvaluator(Evaluator):
    """Evaluates candidates in children forked from one warm worker process.

    The worker runs in a sandbox (see :mod:`._sandbox`) where bubblewrap can create
    one. When the worker dies during a run (a candidate killed it, the kernel's
    out-of-memory killer chose it), the runs in flight are reported as crashes and a
    fresh worker starts.

    Args:
        settings: the timeout, memory limit and output cap of each candidate, and the
            sandbox: ``auto`` confines the worker where bubblewrap works here and warns
            once where it does not, ``on`` refuses to run unconfined, ``off`` never
            confines it; ``network`` lets a confined worker use the network.

    Raises:
        EvaluationError: the sandbox is ``on`` and bubblewrap cannot confine a process here.

    Example:
        >>> from pathlib import Path
        >>> with ForkEvaluator(EvaluationSettings(timeout=10)) as evaluator:
        ...     evaluator.start(WorkerSetup(folder=Path(".")))
        ...     [outcome] = evaluator.evaluate(["print('METRIC x=1')"])
        >>> outcome.metrics["x"]
        1.0
    """

    exports_values = True

    def __init__(self, settings: EvaluationSettings | None = None) -> None:
        if sys.platform == "win32":  # pragma: no cover
            raise EvaluationError("evaluation needs os.fork, which Windows lacks; use WSL")
        self.settings = settings or EvaluationSettings()
        self._bubblewrap: Bubblewrap | None = None
        if self.settings.sandbox == "on":
            try:
                self._bubblewrap = find_bubblewrap()
            except SandboxUnavailable as err:
                raise EvaluationError(
                    f"--sandbox on, but {err.reason}; {err.remedy}, or run unconfined with --sandbox auto"
                ) from None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._spawner: concurrent.futures.ThreadPoolExecutor | None = None
        # Three locks, taken in this order and never the other way round: the worker's
        # life (start, replace, stop), the runs in flight with the guard, and the socket.
        self._lock = threading.RLock()
        self._state = threading.Lock()
        self._runs: dict[int, _Run] = {}
        self._send_lock = threading.Lock()
        self._guard: OffLimitsGuard | None = None
        self._scratch: _Scratch | None = None
        self._confined_by: Bubblewrap | None = None
        self._mounted: tuple[Path, ...] = ()
        self._warmed: list[str] = []
        self._broken: EvaluationError | None = None
        self._ids = 0
        self._guards = 0
        self._cancelled = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.setup: WorkerSetup | None = None

    @property
    def sandboxed(self) -> bool:
        """Whether the running worker is confined by the sandbox."""
        return self._confined_by is not None and self._proc is not None

    def start(self, setup: WorkerSetup) -> None:
        with self._lock:
            self.close()
            self._cancelled = False
            self._broken = None
            self._warmed = []
            self.setup = setup
            self._scratch = _Scratch(setup.session_folder)
            self._guard = self._new_guard(setup.off_limits)
            self._confined_by = self._bubblewrap_here()
            try:
                self._spawn()
            except BaseException:
                self.close()
                raise

    def _bubblewrap_here(self) -> Bubblewrap | None:
        global _warned_unconfined
        if self.settings.sandbox == "off":
            return None
        if self._bubblewrap is not None:
            return self._bubblewrap
        try:
            return find_bubblewrap()
        except SandboxUnavailable as err:
            if not _warned_unconfined:
                _warned_unconfined = True
                self._notice(
                    f"sandbox off: {err.reason}, so candidates run with your user's rights and can read "
                    "your files, other processes' environments (API keys) and the network; to confine "
                    f"them, {err.remedy}; or pass --sandbox off to go on without this warning"
                )
            return None

    def _new_guard(self, patterns: Sequence[str]) -> OffLimitsGuard | None:
        if not patterns:
            return None
        assert self.setup is not None and self._scratch is not None
        self._guards += 1
        return OffLimitsGuard(self.setup.folder, patterns, self._scratch.path / f"off-limits-{self._guards}")

    def _read_only(self) -> tuple[Path, ...]:
        """What the sandbox mounts read-only inside the target's folder."""
        assert self.setup is not None
        places = [self.setup.folder / ".autoresearch"]
        if self.setup.session_folder is not None:
            places.append(self.setup.session_folder)
        if self._guard is not None:
            places += self._guard.files()
        return tuple(dict.fromkeys(p.resolve() for p in places if p.exists()))

    def _internal_patterns(self) -> list[str]:
        """Session folders, refused to candidates by the worker's audit hook too."""
        assert self.setup is not None
        folder = self.setup.folder.resolve()
        patterns = [".autoresearch/**"]
        if self.setup.session_folder is not None:
            session = self.setup.session_folder.resolve()
            if folder in session.parents:
                patterns.append(f"{session.relative_to(folder).as_posix()}/**")
        return patterns

    def _spawn(self) -> None:
        """Start a worker for ``self.setup`` and wait until its warm state is ready.

        Always from the evaluator's own thread: the sandbox ends the worker with the
        thread that started it, and the thread that notices a dead worker (its reader)
        ends once it has started the next one.
        """
        if self._spawner is None:
            self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="autoresearch-spawner")
        self._spawner.submit(self._spawn_here).result()

    def _spawn_here(self) -> None:
        assert self.setup is not None and self._scratch is not None
        setup = self.setup
        ours, theirs = socket.socketpair()
        env = scrub_environment(os.environ)
        env["MPLBACKEND"] = "Agg"
        command = [sys.executable, str(Path(__file__).with_name("_worker.py")), str(theirs.fileno())]
        self._mounted = ()
        if self._confined_by is not None:
            self._mounted = self._read_only()
            sandbox = Sandbox.around(
                setup.folder, read_only=self._mounted, holdout=setup.hidden, network=self.settings.network
            )
            command = sandbox.command(self._confined_by) + command
        with open(self._scratch.path / "worker.log", "ab") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=setup.folder,
                env=env,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self._send(
            (
                "setup",
                {
                    "setup_code": list(setup.setup_code),
                    "namespace": setup.namespace,
                    "preimport": list(dict.fromkeys([*setup.preimport, *self._warmed])),
                    "off_limits": [*setup.off_limits, *self._internal_patterns()],
                },
            )
        )
        assert self._proc is not None
        reply = self._receive(self._conn, self._proc)
        if reply is None or reply[0] != "ready":
            raise EvaluationError(f"the evaluation worker exited unexpectedly ({self._ending()}): {self._log_tail()}")
        if reply[1].get("error"):
            raise EvaluationError(f"{reply[1]['error']}; fix that cell, or leave it out with --setup-cells")
        self._reader = threading.Thread(
            target=_read, args=(weakref.ref(self), self._conn, self._proc), name="autoresearch-reader", daemon=True
        )
        self._reader.start()

    def submit(
        self,
        code: str,
        on_start: Callable[[str], None] | None = None,
        *,
        export: Sequence[str] = (),
        inputs: bytes | None = None,
    ) -> Future[Outcome]:
        """Start a run of ``code``; ``inputs`` are bytes it finds still pickled in
        ``__autoresearch_inputs__`` (the checking runs of the holdout)."""
        item = {"code": code, "timeout": self.settings.timeout, "export": list(export), "inputs": inputs}
        return self._submit(item, on_start)

    def evaluate(
        self, codes: Sequence[str], *, export: Sequence[str] = (), inputs: Sequence[bytes | None] | None = None
    ) -> list[Outcome]:
        """Run each code concurrently; outcomes in the same order.

        Args:
            export: variables each run sends back, cloudpickled (``Outcome.exported``).
            inputs: bytes for each run, found still pickled in ``__autoresearch_inputs__``.
        """
        futures = [
            self.submit(code, export=export, inputs=inputs[index] if inputs is not None else None)
            for index, code in enumerate(codes)
        ]
        return [future.result() for future in futures]

    def check(self, code: str, check: Check) -> Outcome:
        return self.submit_check(code, check).result()

    def submit_check(self, code: str, check: Check) -> Future[Outcome]:
        """Start :meth:`check`; its future can be cancelled like a candidate's."""
        # A check cell runs after the candidate runs again: the candidate's time comes first.
        timeout = check.timeout + (self.settings.timeout if check.kind == "cell" else 0.0)
        request = {"kind": check.kind, "source": check.source, "timeout": check.timeout}
        return self._submit({"code": code, "timeout": timeout, "check": request}, None)

    def _submit(self, item: dict[str, Any], on_start: Callable[[str], None] | None) -> Future[Outcome]:
        """Send one request (its ``code``, ``timeout``, for a check ``check``, and ``export``
        and ``inputs``); its future resolves when its report arrives."""
        run = _Run(Future(), time.monotonic())
        with self._lock:
            if self._broken is not None:
                raise self._broken
            if self._conn is None:
                raise EvaluationError("the evaluator is not started: call start() first")
            if self._cancelled:
                run.result.set_result(_cancelled())
                return run.result
            with self._state:
                if self._guard and not self._runs:
                    self._guard.snapshot()
                self._ids += 1
                run.alone = not self._runs
                for other in self._runs.values():
                    other.alone = False
                self._runs[self._ids] = run
            request = {
                **item,
                "id": self._ids,
                "memory_mb": self.settings.memory_mb,
                "output_cap": self.settings.output_cap,
            }
            try:
                self._send(("run", request))
                if self._cancelled:
                    self._send(("cancel", self._ids))  # a stop that came while it was sent
            except OSError:
                pass  # the worker is gone: its reader reports this run with the others
        if on_start is not None:
            on_start("local")  # the worker forks it as soon as the request arrives
        return run.result

    def _finished(self, report: dict[str, Any]) -> None:
        """A run's report arrived: check the off-limits files and resolve its future."""
        with self._state:
            run = self._runs.pop(report["id"], None)
            if run is None:
                return
            changed = self._guard.check_and_restore() if self._guard else []
            outcome = self._outcome(report, changed, run)
            imported = sorted(set(report["imported"]) - set(self._warmed))
            self._warmed += imported
        if imported:
            # Later candidates find these warm; the worker refuses modules a candidate
            # could have planted (in the target's folder, or newer than the worker).
            try:
                self._send(("warm", imported))
            except OSError:
                pass  # ended meanwhile: its replacement imports them at setup
        run.result.set_result(outcome)

    def _lost(self, conn: Connection) -> None:
        """The worker of ``conn`` ended: report its runs as crashes and start a fresh one."""
        while not self._lock.acquire(timeout=0.1):
            if self._conn is not conn:
                return  # stopped on purpose, by a thread that holds the lock
        try:
            if self._conn is not conn:
                return
            with self._state:
                lost, self._runs = self._runs, {}
                if self._guard:
                    self._guard.check_and_restore()  # put back what the run that killed it changed
            ending = self._ending()
            self._respawn(ending)
        finally:
            self._lock.release()
        who = "the candidate" if len(lost) == 1 else f"one of {len(lost)} candidates running at once"
        after = "it could not be restarted" if self._broken else "a fresh worker took over"
        for run in lost.values():
            run.result.set_result(Outcome(kind="crash", error=f"{who} ended the evaluation worker ({ending}); {after}"))

    def _respawn(self, ending: str) -> None:
        """Replace a worker that ended; a failure is kept and raised by the next submit()."""
        self._stop_worker()
        try:
            self._spawn()
        except (EvaluationError, OSError) as err:
            self._stop_worker()
            self._broken = EvaluationError(f"the evaluation worker ended ({ending}) and could not be restarted: {err}")

    def protect(self, patterns: Sequence[str]) -> None:
        with self._lock:
            if self._conn is None or self.setup is None:
                raise EvaluationError("the evaluator is not started: call start() first")
            self.setup = replace(self.setup, off_limits=tuple(patterns))
            with self._state:
                if self._guard is not None:
                    self._guard.close()
                self._guard = self._new_guard(patterns)
            if self._confined_by is not None and self._read_only() != self._mounted:
                # Mounts are fixed when the sandbox is entered: a new worker mounts the new files.
                self._stop_worker()
                self._spawn()
            else:
                self._send(("protect", [*patterns, *self._internal_patterns()]))

    def _outcome(self, report: dict[str, Any], changed: list[str], run: _Run) -> Outcome:
        parsed = parse_metrics(report["metric_text"])
        touched = list(report["touched"])
        if changed and (touched or run.alone):
            touched = sorted(set(touched) | set(changed))
        return Outcome(
            kind=report["kind"],
            metrics=parsed.values,
            problems=parsed.problems,
            stdout_tail=report["stdout_tail"],
            stderr_tail=report["stderr_tail"],
            duration_s=report["duration_s"],
            error=report["error"],
            touched=tuple(touched),
            written=tuple(report["written"]),
            imported=tuple(report["imported"]),
            figures=tuple(report["figures"]),
            exported=report.get("exported"),
            missing=tuple(report.get("missing") or ()),
            export_problem=report.get("export_error"),
            report=report.get("report"),
            worker="local",
            queued_s=round(max(0.0, time.monotonic() - run.submitted - report["duration_s"]), 4),
        )

    def cancel(self, future: Future[Outcome] | None = None) -> None:
        if future is None:
            self._cancelled = True  # sticky until the next start(): the session is stopping
            message: tuple[str, Any] = ("cancel", None)
        else:
            with self._state:
                ids = [i for i, run in self._runs.items() if run.result is future]
            if not ids:
                return  # finished already
            message = ("cancel", ids[0])
        try:
            self._send(message)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._stop_worker()
            if self._spawner is not None:
                self._spawner.shutdown()
                self._spawner = None
            with self._state:
                if self._guard is not None:
                    self._guard.close()
                    self._guard = None
            if self._scratch is not None:
                self._scratch.close()
                self._scratch = None

    def _stop_worker(self) -> None:
        """Stop the worker (the caller holds the lock); runs still in flight are cancelled."""
        conn, proc, reader = self._conn, self._proc, self._reader
        with self._send_lock:
            if conn is not None:
                try:
                    conn.send(("exit", None))
                except OSError:
                    pass
            self._conn = None  # from here its reader knows the end is on purpose
        self._proc, self._reader = None, None
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(proc)
        if reader is not None and reader is not threading.current_thread():
            reader.join()
        if conn is not None:
            conn.close()  # only now: its reader may have been reading it
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        with self._state:
            stopped, self._runs = self._runs, {}
        for run in stopped.values():
            run.result.set_result(_cancelled())

    def _send(self, message: tuple[str, Any]) -> None:
        with self._send_lock:  # the reader and cancel() send from other threads
            if self._conn is None:
                raise BrokenPipeError("the evaluation worker is gone")
            self._conn.send(message)

    @staticmethod
    def _receive(conn: Connection, proc: subprocess.Popen[bytes]) -> tuple[str, dict[str, Any]] | None:
        """The worker's next message, or None once the worker has ended."""
        try:
            while not conn.poll(0.2):
                if proc.poll() is not None and not conn.poll(0):
                    return None
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return None
        return str(kind), dict(payload)

    def _ending(self) -> str:
        """How the worker ended, in words (``killed by signal SIGKILL``)."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill(self._proc)
            return "stopped answering"
        if code > 128 and self._confined_by is not None:
            code = 128 - code  # bubblewrap reports a signal as 128 + its number
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def _log_tail(self) -> str:
        if self._scratch is None or not (self._scratch.path / "worker.log").exists():
            return ""
        return (self._scratch.path / "worker.log").read_text(errors="replace").strip()[-500:]


def _read(evaluator: weakref.ref[ForkEvaluator], conn: Connection, proc: subprocess.Popen[bytes]) -> None:
    """The reader thread of one worker: each report to its run, then the worker's end.

    It holds the evaluator weakly, so an evaluator dropped without close() is still
    collected and its finalizer still stops the worker."""
    while (reply := ForkEvaluator._receive(conn, proc)) is not None:
        owner = evaluator()
        if owner is None:
            return
        owner._finished(reply[1])
        del owner
    owner = evaluator()
    if owner is not None:
        owner._lost(conn)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()
