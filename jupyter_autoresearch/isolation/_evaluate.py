"""Evaluate candidate cells in isolation; knows nothing about models.

:class:`ForkEvaluator` starts one warm worker process (:mod:`._worker`) per session and
asks it to fork a clean child per candidate.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from ..protocol._errors import EvaluationError
from ..protocol._metrics import parse_metrics
from ..protocol._redact import is_secret_name
from ..protocol._settings import EvaluationSettings

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
    """

    folder: Path
    setup_code: tuple[str, ...] = ()
    namespace: bytes | None = None
    preimport: tuple[str, ...] = ()
    off_limits: tuple[str, ...] = ()


class Evaluator(ABC):
    """Runs candidate cells in isolation. Use as a context manager or call :meth:`close`."""

    @abstractmethod
    def start(self, setup: WorkerSetup) -> None:
        """Prepare the warm state; raises EvaluationError if the setup fails."""

    @abstractmethod
    def evaluate(self, codes: Sequence[str]) -> list[Outcome]:
        """Run each code concurrently and return their outcomes in the same order."""

    @abstractmethod
    def protect(self, patterns: Sequence[str]) -> None:
        """Replace the off-limits patterns (relative globs) from the next evaluation on."""

    def cancel(self) -> None:  # noqa: B027 - optional: an evaluator may have nothing to cancel
        """Kill the candidates that are running now (called from another thread)."""

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

    The worker also refuses writes to them from Python (an audit hook); this guard is
    the backstop for writes that bypass Python's file API.
    """

    def __init__(self, folder: Path, patterns: Sequence[str]) -> None:
        self.folder = folder
        self.patterns = tuple(patterns)
        self._backup = Path(tempfile.mkdtemp(prefix="autoresearch-offlimits-"))
        self._known: dict[str, tuple[int, int, int, str]] = {}
        self.snapshot()

    def _paths(self) -> set[str]:
        found: set[str] = set()
        for pattern in self.patterns:
            for path in glob.glob(pattern, root_dir=self.folder, recursive=True):
                if (self.folder / path).is_file():
                    found.add(os.path.normpath(path))
        return found

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


class ForkEvaluator(Evaluator):
    """Evaluates candidates in children forked from one warm worker process.

    Args:
        settings: the timeout, memory limit and output cap of each candidate.

    Example:
        >>> from pathlib import Path
        >>> with ForkEvaluator(EvaluationSettings(timeout=10)) as evaluator:
        ...     evaluator.start(WorkerSetup(folder=Path(".")))
        ...     [outcome] = evaluator.evaluate(["print('METRIC x=1')"])
        >>> outcome.metrics["x"]
        1.0
    """

    def __init__(self, settings: EvaluationSettings | None = None) -> None:
        if sys.platform == "win32":  # pragma: no cover
            raise EvaluationError("evaluation needs os.fork, which Windows lacks; use WSL")
        self.settings = settings or EvaluationSettings()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._guard: OffLimitsGuard | None = None
        self._ids = 0
        self._cancelled = False
        self._log: Path | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.setup: WorkerSetup | None = None

    def start(self, setup: WorkerSetup) -> None:
        self.close()
        self._cancelled = False
        ours, theirs = socket.socketpair()
        handle, log_path = tempfile.mkstemp(prefix="autoresearch-worker-", suffix=".log")
        os.close(handle)
        self._log = Path(log_path)
        env = scrub_environment(os.environ)
        env["MPLBACKEND"] = "Agg"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("_worker.py")), str(theirs.fileno())],
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
        self.setup = setup
        self._guard = OffLimitsGuard(setup.folder, setup.off_limits) if setup.off_limits else None
        self._send(
            (
                "setup",
                {
                    "setup_code": list(setup.setup_code),
                    "namespace": setup.namespace,
                    "preimport": list(setup.preimport),
                    "off_limits": list(setup.off_limits),
                },
            )
        )
        reply = self._receive("ready")
        if reply.get("error"):
            error = EvaluationError(f"{reply['error']}; fix that cell, or leave it out with --setup-cells")
            self.close()
            raise error

    def evaluate(self, codes: Sequence[str]) -> list[Outcome]:
        if self._conn is None:
            raise EvaluationError("the evaluator is not started: call start() first")
        if self._guard:
            self._guard.snapshot()
        ids = []
        for code in codes:
            self._ids += 1
            ids.append(self._ids)
            request = {
                "id": self._ids,
                "code": code,
                "timeout": self.settings.timeout,
                "memory_mb": self.settings.memory_mb,
                "output_cap": self.settings.output_cap,
            }
            self._send(("run", request))
        if self._cancelled:
            self._send(("cancel", None))  # a stop that came while the requests were sent
        reports: dict[int, dict[str, Any]] = {}
        while len(reports) < len(ids):
            report = self._receive("done")
            reports[report["id"]] = report
        changed = self._guard.check_and_restore() if self._guard else []
        outcomes = [self._outcome(reports[i], changed, len(ids)) for i in ids]
        imported = sorted({m for r in reports.values() for m in r["imported"]})
        if imported:
            # Later candidates find these warm; the worker refuses modules a candidate
            # could have planted (in the target's folder, or newer than the worker).
            self._send(("warm", imported))
        return outcomes

    def protect(self, patterns: Sequence[str]) -> None:
        if self._conn is None or self.setup is None:
            raise EvaluationError("the evaluator is not started: call start() first")
        if self._guard is not None:
            self._guard.close()
        self._guard = OffLimitsGuard(self.setup.folder, patterns) if patterns else None
        self._send(("protect", list(patterns)))

    def _outcome(self, report: dict[str, Any], changed: list[str], batch: int) -> Outcome:
        parsed = parse_metrics(report["metric_text"])
        touched = list(report["touched"])
        if changed and (touched or batch == 1):
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
        )

    def cancel(self) -> None:
        self._cancelled = True  # sticky until the next start(): the session is stopping
        if self._conn is not None:
            try:
                self._send(("cancel", None))
            except OSError:
                pass

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._send(("exit", None))
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill(self._proc)
            self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def _send(self, message: tuple[str, Any]) -> None:
        assert self._conn is not None
        with self._send_lock:  # cancel() may send from another thread
            self._conn.send(message)

    def _receive(self, expected: str) -> dict[str, Any]:
        assert self._conn is not None and self._proc is not None
        while not self._conn.poll(0.2):
            if self._proc.poll() is not None:
                raise EvaluationError(
                    f"the evaluation worker exited unexpectedly ({self._proc.returncode}): {self._log_tail()}"
                )
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError) as err:
            raise EvaluationError(f"lost the evaluation worker: {err}") from None
        assert kind == expected, (kind, expected)
        return dict(payload)

    def _log_tail(self) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace").strip()[-500:]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()
