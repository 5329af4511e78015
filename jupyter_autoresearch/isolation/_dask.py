"""Evaluate candidates on a Dask cluster: the same warm worker on every Dask worker.

:class:`DaskEvaluator` connects to a running scheduler (or uses a ``distributed.Client``
it is given), uploads the target's folder once per worker (or lets the workers read it
on shared storage), and registers :class:`~._dask_worker.WarmWorkerPlugin`, which keeps
a :class:`~._evaluate.ForkEvaluator` on each worker. Every candidate is one Dask task;
Dask chooses the worker, and we write no scheduler of our own.

A worker lost while running a candidate: Dask runs that task once more elsewhere; lost
a second time, it is reported as a crash naming both workers, and the session goes on
with the workers that remain. ``distributed`` is imported only when a cluster is used.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..protocol._checks import Check
from ..protocol._errors import EvaluationError
from ..protocol._settings import EvaluationSettings
from ._evaluate import Evaluator, Outcome, WorkerSetup
from ._upload import pack_folder

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Future as DaskFuture

__all__ = ["DaskEvaluator", "require_distributed"]

log = logging.getLogger("jupyter_autoresearch")

INSTALL_HINT = 'pip install "jupyter-autoresearch[dask]"'


def require_distributed(address: str) -> None:
    """Raise EvaluationError (one line, with the install command) when ``distributed`` is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise EvaluationError(f"--executor {address} needs Dask's distributed package: {INSTALL_HINT}") from None


@dataclass
class _Candidate:
    """One submitted candidate: its result, its current Dask task, and the workers it was lost with."""

    code: str
    result: concurrent.futures.Future[Outcome]
    submitted: float
    on_start: Callable[[str], None] | None = None
    check: Check | None = None  # a correctness check of the code, instead of a run of it
    task: DaskFuture[Any] | None = None
    lost: list[str] = field(default_factory=list)


class DaskEvaluator(Evaluator):
    """Evaluates candidates on a Dask cluster, each in a child forked from a warm worker
    that runs on every Dask worker (with the timeout, memory limit, output cap, off-limits
    protection and sandbox of a local session).

    Args:
        executor: the scheduler's address (``tcp://HOST:PORT``) or a ``distributed.Client``.
        settings: the timeout, memory limit, output cap and sandbox of each candidate,
            applied by the warm worker on every Dask worker.
        upload_limit_mb: the largest target folder uploaded to the workers.
        shared_folder: the workers read the target's folder at its own path (shared
            storage) instead of an uploaded copy.
        connect_timeout: seconds to reach the scheduler (by default Dask's own setting,
            ``distributed.comm.timeouts.connect``).
        worker_wait: seconds to wait for a first worker, and for a new one when every
            worker was lost.

    Example:
        >>> from pathlib import Path
        >>> with DaskEvaluator("tcp://127.0.0.1:8786", EvaluationSettings(timeout=60)) as ev:  # doctest: +SKIP
        ...     ev.start(WorkerSetup(folder=Path(".")))
        ...     outcome = ev.submit("print('METRIC x=1')").result()
        >>> outcome.metrics["x"], outcome.worker  # doctest: +SKIP
        (1.0, 'tcp://10.0.0.7:40211')
    """

    def __init__(
        self,
        executor: str | Client,
        settings: EvaluationSettings | None = None,
        *,
        upload_limit_mb: float = 100.0,
        shared_folder: bool = False,
        connect_timeout: float | None = None,
        worker_wait: float = 60.0,
    ) -> None:
        self.address = executor if isinstance(executor, str) else str(getattr(executor.scheduler, "address", ""))
        if isinstance(executor, str):
            require_distributed(executor)
        self._given: Client | None = None if isinstance(executor, str) else executor
        self.upload_limit_mb = upload_limit_mb
        self.shared_folder = shared_folder
        self.connect_timeout = connect_timeout
        self.worker_wait = worker_wait
        self.settings = settings or EvaluationSettings()
        self.client: Client | None = None
        self.setup: WorkerSetup | None = None
        self._plugin: str | None = None
        self._lock = threading.Lock()
        self._candidates: dict[str, _Candidate] = {}  # by the key of their current Dask task
        self._keys = itertools.count(1)
        self._cancelled = False
        self._broken: EvaluationError | None = None
        self._chores = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="autoresearch-dask")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, setup: WorkerSetup) -> None:
        self.close()
        self._cancelled, self._broken = False, None
        archive = None if self.shared_folder else pack_folder(setup.folder, self.upload_limit_mb)
        self.client = self._connect()
        try:
            self._wait_for_workers()
            self.setup = setup
            self._plugin = f"autoresearch-{uuid.uuid4().hex[:12]}"
            self.client.subscribe_topic("all", self._on_cluster_event)
            self.client.subscribe_topic(self._plugin, self._on_started)
            # Each worker keeps its scratch files (its log, backups of off-limits files) in a
            # folder of its own: the session's folder is this machine's.
            self._register(replace(setup, session_folder=None), archive)
            self._check_sandbox()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> Client:
        if self._given is not None:
            return self._given
        import dask.config
        from dask.utils import parse_timedelta
        from distributed import Client

        timeout = self.connect_timeout
        if timeout is None:
            timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="s") or 30.0
        try:
            return Client(self.address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            # distributed retries a refused connection until the timeout: say it plainly.
            reason = f"no answer within {timeout:g}s" if "Timed out" in str(err) else str(err)
            raise EvaluationError(
                f"cannot reach the Dask scheduler at {self.address} ({reason.splitlines()[0]}); "
                "check the address, or start one with: dask scheduler"
            ) from None
        except ValueError as err:  # an address distributed cannot parse
            raise EvaluationError(
                f"--executor {self.address} is not a Dask scheduler address ({err}); give tcp://HOST:PORT"
            ) from None

    def _wait_for_workers(self) -> None:
        assert self.client is not None
        try:
            self.client.wait_for_workers(1, timeout=self.worker_wait)
        except TimeoutError:
            raise EvaluationError(
                f"the Dask scheduler at {self.address} has no workers after {self.worker_wait:g}s; "
                f"start some with: dask worker {self.address}"
            ) from None

    def _register(self, setup: WorkerSetup, archive: bytes | None) -> None:
        from ._dask_worker import WarmWorkerPlugin

        assert self.client is not None and self._plugin is not None
        try:
            self.client.register_plugin(WarmWorkerPlugin(setup, archive, self.settings), name=self._plugin)
        except EvaluationError:
            raise
        except Exception as err:
            text = f"{type(err).__name__}: {err}".splitlines()[0]
            hint = ""
            if isinstance(err, ImportError | AttributeError | TypeError):
                hint = "; every Dask worker needs jupyter-autoresearch installed, the same version as here"
            raise EvaluationError(f"the Dask workers could not start their evaluation workers: {text}{hint}") from None

    def _check_sandbox(self) -> None:
        """Say once which workers run candidates unconfined (no bubblewrap there)."""
        from ._dask_worker import sandboxed

        assert self.client is not None
        if self.settings.sandbox == "off":
            return
        confined = self.client.run(sandboxed, self._plugin)
        open_ = sorted(worker for worker, inside in confined.items() if not inside)
        if open_:
            self._notice(
                f"sandbox off on {len(open_)} of {len(confined)} Dask workers ({', '.join(open_[:3])}"
                f"{', ...' if len(open_) > 3 else ''}): candidates there run with the worker's rights; install "
                "bubblewrap on them, or pass --sandbox off to go on without this warning"
            )

    def close(self) -> None:
        self.cancel()
        client, plugin = self.client, self._plugin
        self.client, self._plugin = None, None
        if client is not None and client.status == "running":  # else: nothing left to tell the cluster
            try:
                client.unsubscribe_topic("all")
                if plugin is not None:
                    client.unsubscribe_topic(plugin)
                if plugin is not None:
                    client.unregister_worker_plugin(plugin)  # stops the warm workers, removes the copies
            except Exception as err:  # the cluster may be gone already: nothing left to stop
                log.debug("autoresearch: closing the Dask plugin failed: %s", err)
        if client is not None and client is not self._given:
            client.close()

    # -- evaluation ------------------------------------------------------------------------
    def submit(
        self, code: str, on_start: Callable[[str], None] | None = None, *, export: Sequence[str] = ()
    ) -> concurrent.futures.Future[Outcome]:
        if export:  # exports_values is False: the session refuses the options that need it first
            raise EvaluationError("a Dask executor cannot send a candidate's variables back; use --executor local")
        return self._start(_Candidate(code, concurrent.futures.Future(), time.monotonic(), on_start))

    def check(self, code: str, check: Check) -> Outcome:
        """Run a correctness check of ``code`` on a Dask worker, in a child of its warm worker
        (as a candidate runs: same sandbox, folder and limits)."""
        candidate = _Candidate(code, concurrent.futures.Future(), time.monotonic(), check=check)
        return self._start(candidate).result()

    def _start(self, candidate: _Candidate) -> concurrent.futures.Future[Outcome]:
        if self._broken is not None:
            raise self._broken
        if self.client is None or self.setup is None:
            raise EvaluationError("the evaluator is not started: call start() first")
        if self._cancelled:
            candidate.result.set_result(_cancelled())
        else:
            self._send(candidate)
        return candidate.result

    def _send(self, candidate: _Candidate) -> None:
        """Submit ``candidate`` as a new Dask task (a first run, or the one more run after a loss)."""
        from ._dask_worker import evaluate_candidate

        assert self.client is not None and self.setup is not None
        key = f"{self._plugin}-{next(self._keys)}"
        with self._lock:
            if self._cancelled:  # a Stop since submit() looked: cancel() has taken its snapshot
                candidate.result.set_result(_cancelled())
                return
            self._candidates[key] = candidate
        candidate.task = self.client.submit(
            evaluate_candidate,
            self._plugin,
            candidate.code,
            tuple(self.setup.off_limits),
            candidate.check,
            key=key,
            pure=False,
        )
        candidate.task.add_done_callback(self._on_done)

    def _on_done(self, task: DaskFuture[Any]) -> None:
        with self._lock:
            candidate = self._candidates.pop(str(task.key), None)
        if candidate is None or candidate.result.done():
            return  # already given up on (lost twice, or stopped)
        try:
            if task.status == "finished":
                outcome, worker, spent = task.result()
                queued = max(0.0, time.monotonic() - candidate.submitted - spent)
                candidate.result.set_result(replace(outcome, worker=worker, queued_s=round(queued, 4)))
            elif task.status == "cancelled":  # not by us: ours are taken out of _candidates first
                candidate.result.set_result(Outcome(kind="crash", error=self._cancelled_elsewhere()))
            else:
                self._on_error(candidate, task.exception())
        except Exception as err:  # never leave a caller waiting on a future nobody will resolve
            if not candidate.result.done():
                candidate.result.set_result(Outcome(kind="crash", error=f"{type(err).__name__}: {err}"))

    def _cancelled_elsewhere(self) -> str:
        if self.client is not None and self.client.status == "running":
            return "its Dask task was cancelled from outside this session"
        self._broken = EvaluationError(
            f"lost the connection to the Dask scheduler at {self.address}; once it is back, "
            "run the session again to resume it"
        )
        return str(self._broken)

    def _on_error(self, candidate: _Candidate, error: BaseException | None) -> None:
        from distributed.scheduler import KilledWorker

        if isinstance(error, KilledWorker):  # a scheduler that allows no rerun raises at once
            worker = error.last_worker.address
            if worker not in candidate.lost:
                candidate.lost.append(worker)
            if len(candidate.lost) < 2:
                self._send(candidate)
                return
            candidate.result.set_result(self._lost_twice(candidate))
            return
        text = str(error) if isinstance(error, EvaluationError) else f"{type(error).__name__}: {error}"
        candidate.result.set_result(Outcome(kind="crash", error=text.splitlines()[0] if text else "the task failed"))

    def _on_started(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker began a candidate's task (on the client's event loop: quick)."""
        _, message = event
        with self._lock:
            candidate = self._candidates.get(str(message.get("key")))
        if candidate is not None and candidate.on_start is not None:
            try:
                candidate.on_start(str(message.get("worker", "")))
            except Exception:  # a subscriber's problem must not break the client's loop
                log.exception("autoresearch: the on_start callback failed")

    def _on_cluster_event(self, event: tuple[float, dict[str, Any]]) -> None:
        # Called on the client's event loop: record, and leave the waiting to a thread.
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        worker = str(message.get("worker", ""))
        lost_twice = []
        with self._lock:
            for key in message.get("processing-tasks", ()):
                candidate = self._candidates.get(str(key))
                if candidate is None or worker in candidate.lost:
                    continue
                candidate.lost.append(worker)
                if len(candidate.lost) >= 2:
                    lost_twice.append(candidate)
                else:
                    self._notice(f"Dask worker {worker} was lost while running a candidate; it runs once more")
        for candidate in lost_twice:
            if not candidate.result.done():  # its task may have ended meanwhile
                candidate.result.set_result(self._lost_twice(candidate))
            if candidate.task is not None:
                self._chores.submit(candidate.task.cancel)
        if self._candidates:
            self._chores.submit(self._check_workers_left)

    def _lost_twice(self, candidate: _Candidate) -> Outcome:
        first, second = candidate.lost[:2]
        return Outcome(
            kind="crash",
            error=f"lost with its Dask worker twice ({first}, then {second} on its one more run)",
            worker=second,
        )

    def _check_workers_left(self) -> None:
        """Every worker gone: wait ``worker_wait`` for a new one, then give up on the candidates."""
        deadline = time.monotonic() + self.worker_wait
        while self.client is not None and time.monotonic() < deadline:
            try:
                if self.client.scheduler_info()["workers"]:
                    return
            except Exception:
                break  # the scheduler itself is gone
            time.sleep(0.5)
        self._broken = EvaluationError(
            f"no Dask worker is left at {self.address} (waited {self.worker_wait:g}s for one); "
            f"start some with: dask worker {self.address}, then run the session again to resume it"
        )
        with self._lock:
            waiting, self._candidates = list(self._candidates.values()), {}
        for candidate in waiting:
            if not candidate.result.done():
                candidate.result.set_result(Outcome(kind="crash", error=str(self._broken)))

    def protect(self, patterns: Sequence[str]) -> None:
        if self.setup is None:
            raise EvaluationError("the evaluator is not started: call start() first")
        # Each task carries the patterns, so workers that join later protect them too.
        self.setup = replace(self.setup, off_limits=tuple(patterns))

    def cancel(self, future: concurrent.futures.Future[Outcome] | None = None) -> None:
        with self._lock:
            if future is None:
                self._cancelled = True  # sticky until the next start(): the session is stopping
            chosen = {k: c for k, c in self._candidates.items() if future is None or c.result is future}
            for key in chosen:
                del self._candidates[key]
        tasks = [c.task for c in chosen.values() if c.task is not None]
        if tasks and self.client is not None and self.client.status == "running":
            # The worker's plugin sees its task released and kills the candidate's child.
            self.client.cancel(tasks)
        for candidate in chosen.values():
            if not candidate.result.done():
                candidate.result.set_result(_cancelled())


def _cancelled() -> Outcome:
    return Outcome(kind="cancelled", error="stopped by the user")
