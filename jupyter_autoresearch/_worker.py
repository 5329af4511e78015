"""The warm evaluation worker: a long-lived process that forks one clean child per run.

Started by :class:`jupyter_autoresearch.ForkEvaluator` as
``python .../_worker.py FD`` (one end of a socket pair). It executes the setup once
(the notebook variables or the cells above the benchmark, and the imports the cell
needs), then answers ``run`` requests by forking: each child inherits that warm state
copy-on-write, so a candidate starts clean in milliseconds instead of a cold Python
start-up. Only the standard library is imported here, so starting the worker is cheap.

Requests (tuples sent over a :class:`multiprocessing.connection.Connection`):
``("setup", dict)``, ``("run", dict)``, ``("cancel", None)``, ``("exit", None)``.
Replies: ``("ready", dict)`` and ``("done", dict)``.
"""

from __future__ import annotations

import fnmatch
import gc
import io
import os
import pickle
import resource
import selectors
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

_METRIC_PREFIX = b"METRIC"
_MAX_METRIC_LINES = 10_000


@dataclass
class _Stream:
    """One captured output stream of a child: a capped tail plus every METRIC line."""

    cap: int
    tail: bytearray = field(default_factory=bytearray)
    partial: bytes = b""
    metric_lines: list[bytes] = field(default_factory=list)
    scan: bool = False
    truncated: bool = False

    def feed(self, data: bytes) -> None:
        self.tail += data
        if len(self.tail) > self.cap:
            del self.tail[: len(self.tail) - self.cap]
            self.truncated = True
        if self.scan:
            # Metric lines are kept apart so a long output never pushes them out of the tail.
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()[-4096:]
            self._keep(lines)

    def finish(self) -> None:
        if self.scan and self.partial:
            self._keep([self.partial])
            self.partial = b""

    def _keep(self, lines: list[bytes]) -> None:
        for line in lines:
            if line.startswith(_METRIC_PREFIX) and len(self.metric_lines) < _MAX_METRIC_LINES:
                self.metric_lines.append(line.rstrip(b"\r"))

    def text(self) -> str:
        body = bytes(self.tail).decode("utf-8", errors="replace")
        return ("[... output truncated ...]\n" + body) if self.truncated else body


@dataclass
class _Child:
    """A forked candidate the worker is waiting for."""

    request: dict[str, Any]
    pid: int
    started: float
    deadline: float
    result_path: str
    streams: dict[int, _Stream]
    pidfd: int | None = None
    status: int | None = None
    timed_out: bool = False
    cancelled: bool = False


class Worker:
    """Holds the warm state and runs candidates in forked children."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.off_limits: list[str] = []
        self.children: dict[int, _Child] = {}
        self.tmp = tempfile.mkdtemp(prefix="autoresearch-worker-")
        self.selector = selectors.DefaultSelector()
        self.selector.register(conn.fileno(), selectors.EVENT_READ, ("conn", None))
        self.warm_modules: set[str] = set()

    # -- setup ---------------------------------------------------------------------
    def setup(self, request: dict[str, Any]) -> dict[str, Any]:
        self.off_limits = list(request.get("off_limits") or [])
        failed: list[str] = []
        for module in request.get("preimport") or []:
            if not self._warm(module):
                failed.append(module)
        if request.get("namespace"):
            # cloudpickle output loads with plain pickle as long as cloudpickle is importable.
            self.namespace.update(pickle.loads(request["namespace"]))
        for index, code in enumerate(request.get("setup_code") or []):
            try:
                exec(compile(code, f"<setup cell {index + 1}>", "exec"), self.namespace)
            except BaseException as err:
                return {
                    "error": f"setup cell {index + 1} failed: {type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                }
        names = sorted(k for k in self.namespace if not k.startswith("__"))
        return {"error": None, "names": names, "unimportable": failed}

    def _warm(self, module: str) -> bool:
        if module in self.warm_modules:
            return True
        try:
            __import__(module)
        except BaseException:
            return False
        self.warm_modules.add(module)
        return True

    # -- running candidates --------------------------------------------------------
    def start(self, request: dict[str, Any]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        result_path = os.path.join(self.tmp, f"{request['id']}.pkl")
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects that exist now are never collected in the child: the collector then
        # does not write to (and so copy) the pages the child shares with us.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through result_path
            os.close(out_r)
            os.close(err_r)
            _child(self, request, out_w, err_w, result_path)
        os.close(out_w)
        os.close(err_w)
        cap = int(request.get("output_cap") or 65536)
        now = time.monotonic()
        child = _Child(
            request=request,
            pid=pid,
            started=now,
            deadline=now + float(request.get("timeout") or 1e9),
            result_path=result_path,
            streams={out_r: _Stream(cap, scan=True), err_r: _Stream(cap)},
        )
        for fd in child.streams:
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, ("stream", pid))
        try:
            child.pidfd = os.pidfd_open(pid)
            self.selector.register(child.pidfd, selectors.EVENT_READ, ("exit", pid))
        except (AttributeError, OSError):
            child.pidfd = None  # no pidfd (not Linux): polled in the loop instead
        self.children[pid] = child

    def kill(self, child: _Child) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)  # the child leads its own process group
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(child.pid, signal.SIGKILL)

    def cancel_all(self) -> None:
        for child in self.children.values():
            child.cancelled = True
            self.kill(child)

    def _drain(self, fd: int, child: _Child) -> bool:
        """Read what ``fd`` has; False once it reached end of file."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if data:
            child.streams[fd].feed(data)
            return True
        self.selector.unregister(fd)
        os.close(fd)
        child.streams[fd].finish()
        return False

    def _reap(self, child: _Child, block: bool) -> bool:
        if child.status is not None:
            return True
        pid, status = os.waitpid(child.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        child.status = status
        if child.pidfd is not None:
            self.selector.unregister(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = None
        return True

    def _finish(self, child: _Child) -> None:
        # The candidate may have left grandchildren holding the pipes open: kill the group.
        self.kill(child)
        for fd in list(child.streams):
            try:
                self.selector.get_key(fd)
            except KeyError:
                continue
            while self._drain(fd, child):
                if not _readable(fd):
                    self.selector.unregister(fd)
                    os.close(fd)
                    child.streams[fd].finish()
                    break
        del self.children[child.pid]
        self.conn.send(("done", _report(child)))

    def loop(self) -> None:
        while True:
            timeout = None
            if self.children:
                nearest = min(c.deadline for c in self.children.values())
                timeout = max(0.0, nearest - time.monotonic())
                if any(c.pidfd is None for c in self.children.values()):
                    timeout = min(timeout, 0.005)
            for key, _ in self.selector.select(timeout):
                kind, pid = key.data
                if kind == "conn":
                    if not self._handle(self.conn.recv()):
                        return
                elif pid in self.children:
                    child = self.children[pid]
                    if kind == "stream":
                        self._drain(key.fd, child)
                    else:
                        self._reap(child, block=True)
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.status is None and now >= child.deadline:
                    child.timed_out = True
                    self.kill(child)
                    self._reap(child, block=True)
                elif child.pidfd is None:
                    self._reap(child, block=False)
                if child.status is not None:
                    self._finish(child)

    def _handle(self, message: tuple[str, Any]) -> bool:
        kind, payload = message
        if kind == "setup":
            self.conn.send(("ready", self.setup(payload)))
        elif kind == "run":
            self.start(payload)
        elif kind == "warm":
            for module in payload:
                self._warm(module)
        elif kind == "cancel":
            self.cancel_all()
        elif kind == "exit":
            self.cancel_all()
            return False
        return True


def _readable(fd: int) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def _report(child: _Child) -> dict[str, Any]:
    out, err = child.streams.values()
    result: dict[str, Any] = {}
    try:
        with open(child.result_path, "rb") as handle:
            result = pickle.load(handle)
        os.unlink(child.result_path)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass  # killed before it could report: judged from its exit status below
    status = child.status or 0
    error: str | None
    if child.cancelled:
        kind, error = "cancelled", "stopped by the user"
    elif child.timed_out:
        kind = "timeout"
        error = f"timed out after {child.request.get('timeout')}s (raise --timeout to allow longer)"
    elif result.get("kind"):
        kind, error = result["kind"], result.get("error")
    elif os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        kind = "crash"
        error = f"killed by signal {signal.Signals(number).name}"
        if number == signal.SIGKILL:
            error += " (out of memory? raise --memory-limit)"
    else:
        kind, error = "crash", f"exited with status {os.waitstatus_to_exitcode(status)}"
    return {
        "id": child.request["id"],
        "kind": kind,
        "error": error,
        "stdout_tail": out.text(),
        "stderr_tail": err.text(),
        "metric_text": b"\n".join(out.metric_lines).decode("utf-8", errors="replace"),
        "duration_s": time.monotonic() - child.started,
        "figures": result.get("figures", []),
        "touched": result.get("touched", []),
        "imported": result.get("imported", []),
    }


def _off_limits_hook(patterns: list[str], touched: list[str]) -> Callable[[str, tuple[Any, ...]], None]:
    root = os.getcwd()

    def matches(path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        full = os.path.realpath(os.path.join(root, os.fsdecode(path)))
        relative = os.path.relpath(full, root)
        for pattern in patterns:
            if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(full, pattern):
                return relative
        return None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        paths: tuple[Any, ...] = ()
        if event == "open" and len(args) >= 3:
            mode, flags = args[1], args[2]
            writes = (mode and any(c in str(mode) for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC)
            )
            paths = (args[0],) if writes else ()
        elif event in ("os.remove", "os.rename", "os.truncate", "shutil.rmtree", "os.rmdir"):
            paths = args[:2] if event == "os.rename" else args[:1]
        for path in paths:
            name = matches(path)
            if name is not None:
                touched.append(name)
                raise PermissionError(f"{name} is off limits for candidates")

    return hook


def _child(
    worker: Worker, request: dict[str, Any], out_w: int, err_w: int, result_path: str
) -> None:  # pragma: no cover - runs in the forked child
    code = 0
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        worker.conn.close()  # the candidate must not speak the worker's protocol
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        limit_mb = request.get("memory_mb")
        if limit_mb:
            mapped = _mapped_bytes()
            limit = mapped + int(limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = _execute(worker, request)
    except BaseException as err:
        result = {"kind": "crash", "error": f"{type(err).__name__}: {err}"}
    try:
        with open(result_path, "wb") as handle:
            pickle.dump(result, handle)
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = 1
    os._exit(code)


def _execute(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
    touched: list[str] = []
    if worker.off_limits:
        sys.addaudithook(_off_limits_hook(worker.off_limits, touched))
    before = set(sys.modules)
    namespace = dict(worker.namespace)
    kind, error = "ok", None
    try:
        exec(compile(request["code"], "<candidate>", "exec"), namespace)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            kind, error = "crash", f"SystemExit: {exit_.code}"
    except BaseException as err:
        # Skip this frame: the traceback starts in the candidate, as in a notebook.
        tb = err.__traceback__.tb_next if err.__traceback__ else None
        traceback.print_exception(type(err), err, tb)
        kind = "crash"
        error = f"{type(err).__name__}: {err}".strip()
        if isinstance(err, MemoryError):
            error += f" (memory limit {request.get('memory_mb')} MB: raise --memory-limit)"
    sys.stdout.flush()
    # Full names: lazily imported submodules (pandas.io.parsers...) are warmed too.
    imported = sorted(set(sys.modules) - before)
    return {
        "kind": kind,
        "error": error,
        "figures": _figures(),
        "touched": touched,
        "imported": imported,
    }


def _figures() -> list[bytes]:  # pragma: no cover - runs in the forked child
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    images = []
    for number in pyplot.get_fignums()[:8]:
        buffer = io.BytesIO()
        pyplot.figure(number).savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        images.append(buffer.getvalue())
    return images


def _mapped_bytes() -> int:  # pragma: no cover - runs in the forked child
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 0


def main() -> None:
    # Started as a script (not -m) so the package is not imported; candidates then see
    # sys.path as ``python cell.py`` run in the target's folder would.
    sys.path[0] = os.getcwd()
    os.environ.setdefault("MPLBACKEND", "Agg")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the engine, which cancels us
    worker = Worker(Connection(int(sys.argv[1])))
    try:
        worker.loop()
    except (EOFError, OSError):
        worker.cancel_all()  # the engine went away: leave no children behind


if __name__ == "__main__":
    main()
