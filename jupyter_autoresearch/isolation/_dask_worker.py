"""What runs on each Dask worker: a warm evaluation worker, and one task per candidate.

:class:`WarmWorkerPlugin` is registered by :class:`~._dask.DaskEvaluator`; the
scheduler hands it to every worker, present and future, so the cell's setup (the
uploaded folder, the setup cells, the shipped variables) travels once per worker.
Each Dask worker then holds a :class:`~._evaluate.ForkEvaluator`, the same warm worker
(and sandbox) as a local session; :func:`evaluate_candidate` is the task that asks it
to fork one child per candidate. A candidate never runs in the Dask worker's process.

Imported only on Dask workers and by :mod:`._dask`, since it needs ``distributed``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from distributed import Worker, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from ..protocol._checks import Check
from ..protocol._errors import EvaluationError
from ..protocol._settings import EvaluationSettings
from ._evaluate import ForkEvaluator, Outcome, WorkerSetup
from ._upload import make_read_only, unpack_folder

__all__ = ["WarmWorkerPlugin", "evaluate_candidate", "sandboxed"]

#: How long a candidate that reached a worker still setting up waits for it.
SETUP_WAIT_S = 600.0


class WarmWorkerPlugin(WorkerPlugin):
    """Starts the warm evaluation worker on a Dask worker, and stops it with the plugin.

    Args:
        setup: the warm state; its folder is the target's (a shared folder), or only
            names the folder ``archive`` unpacks into.
        archive: the target's folder from :func:`~._upload.pack_folder`, or None when
            the workers read the folder at its own path.
        settings: those of the :class:`ForkEvaluator` on each worker.
    """

    def __init__(self, setup: WorkerSetup, archive: bytes | None, settings: EvaluationSettings) -> None:
        self.spec = setup
        self.archive = archive
        self.settings = settings
        self.evaluator: ForkEvaluator | None = None
        self.failure: str | None = None
        self.folder: Path | None = None
        self._scratch: Path | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[object, Future[Outcome]] = {}
        self._protected: tuple[str, ...] = setup.off_limits

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_ready", "_lock"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ready = threading.Event()
        self._lock = threading.Lock()

    async def setup(self, worker: Worker) -> None:
        # Off the event loop: the setup cells may take minutes, and the worker must keep
        # answering the scheduler meanwhile.
        try:
            await asyncio.to_thread(self._start, Path(worker.local_directory), worker.address)
        finally:
            self._ready.set()

    def _start(self, local: Path, address: str) -> None:
        try:
            folder = self.spec.folder
            if self.archive is not None:
                self._scratch = Path(tempfile.mkdtemp(prefix="autoresearch-", dir=local))
                folder = self._scratch / (self.spec.folder.name or "target")
                unpack_folder(self.archive, folder)
                self.archive = None  # unpacked: no need to hold it in memory
                make_read_only(folder, self.spec.off_limits)
            elif not folder.is_dir():
                raise EvaluationError(
                    f"{folder} is not a folder on Dask worker {address}; with --shared-folder every worker "
                    "must read the target's folder at the same path (or leave it out to upload the folder)"
                )
            self.folder = folder
            evaluator = ForkEvaluator(self.settings)
            evaluator.start(replace(self.spec, folder=folder))
            self.evaluator = evaluator
        except Exception as err:
            self.failure = f"Dask worker {address} could not start its evaluation worker: {err}"
            raise EvaluationError(self.failure) from None

    def teardown(self, worker: Worker) -> None:
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        # A task that leaves ``executing`` other than by finishing was cancelled (the
        # session stopped, or gave up on it): its candidate must not run on unseen.
        if start == "executing" and finish not in ("memory", "error"):
            with self._lock:
                future = self._running.get(key)
            if future is not None and self.evaluator is not None:
                self.evaluator.cancel(future)

    def run(self, key: object, code: str, off_limits: tuple[str, ...], check: Check | None = None) -> Outcome:
        """Evaluate ``code`` in a child of the warm worker, or run ``check`` of it (called in a
        Dask task's thread)."""
        self._ready.wait(SETUP_WAIT_S)
        evaluator = self.evaluator
        if evaluator is None:
            raise EvaluationError(self.failure or "this Dask worker's evaluation worker has stopped")
        with self._lock:
            if off_limits != self._protected:  # the session changed them since this worker started
                if self._scratch is not None and self.folder is not None:  # our copy, not a shared folder
                    make_read_only(self.folder, off_limits, before=self._protected)
                evaluator.protect(off_limits)
                self._protected = off_limits
            future = evaluator.submit(code) if check is None else evaluator.submit_check(code, check)
            self._running[key] = future
        try:
            return future.result()
        finally:
            with self._lock:
                self._running.pop(key, None)


def evaluate_candidate(
    plugin: str, code: str, off_limits: tuple[str, ...], check: Check | None = None
) -> tuple[Outcome, str, float]:
    """The Dask task of one candidate (or of a correctness check of it): its outcome, the
    worker's address, and seconds spent here."""
    started = time.monotonic()
    worker = get_worker()
    warm = worker.plugins.get(plugin)
    if not isinstance(warm, WarmWorkerPlugin):
        raise EvaluationError(f"Dask worker {worker.address} has no evaluation worker for this session")
    key = worker.get_current_task()
    worker.log_event(plugin, {"key": key, "worker": worker.address})  # the session shows it in flight here
    outcome = warm.run(key, code, off_limits, check)
    return outcome, worker.address, time.monotonic() - started


def sandboxed(plugin: str, dask_worker: Worker) -> bool:
    """Whether this worker's evaluation worker runs in the sandbox (for ``Client.run``)."""
    warm = dask_worker.plugins.get(plugin)
    return isinstance(warm, WarmWorkerPlugin) and warm.evaluator is not None and warm.evaluator.sandboxed
