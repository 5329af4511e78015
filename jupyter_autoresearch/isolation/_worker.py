"""The warm evaluation worker: a long-lived process that forks one clean child per run.

Started by :class:`jupyter_autoresearch.ForkEvaluator` as ``python .../_worker.py FD``
(one end of a socket pair). It executes the setup once (the notebook variables or the
cells above the benchmark, and the imports the cell needs), then answers ``run``
requests by forking: each child inherits that warm state copy-on-write, so a candidate
starts clean in milliseconds instead of a cold Python start-up. Only the standard
library is imported here, so starting the worker is cheap.

Requests (tuples sent over a :class:`multiprocessing.connection.Connection`):
``("setup", dict)``, ``("run", dict)``, ``("protect", list)``, ``("warm", list)``,
``("cancel", id or None)``, ``("exit", None)``. Replies: ``("ready", dict)``, ``("done", dict)``.

A child reports back only through its output pipes and a result pipe carrying JSON:
nothing a candidate writes is ever unpickled or executed here. Variables a run is asked
to ``export`` travel, cloudpickled, through a fourth pipe as bytes that only a checking
process unpickles; a run given ``inputs`` finds those bytes, still pickled, in
``__autoresearch_inputs__``, and a dict it leaves in ``__autoresearch_report__`` comes
back as JSON.

Nothing a candidate starts outlives its run: the worker is a child subreaper, so the
processes a candidate leaves behind (daemons that called ``setsid``, orphans) become
the worker's children, and whenever no candidate is running they are killed.
"""

from __future__ import annotations

import base64
import ctypes
import fnmatch
import gc
import importlib.util
import io
import json
import math
import os
import pickle
import re
import resource
import select
import selectors
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_METRIC_PREFIX = b"METRIC"
_MAX_METRIC_NAMES = 10_000
_MAX_RESULT = 64 * 1024 * 1024
_MAX_EXPORT = 256 * 1024 * 1024  # pickled bytes of the exported variables
_INPUTS, _REPORT = "__autoresearch_inputs__", "__autoresearch_report__"


@dataclass
class _Stream:
    """One captured stream of a child: a capped tail, and the last METRIC lines per name."""

    cap: int
    scan: bool = False
    whole: bool = False  # keep everything (the result pipe), up to _MAX_RESULT
    limit: int = 0  # keep everything up to this many bytes (the exports pipe)
    tail: bytearray = field(default_factory=bytearray)
    partial: bytes = b""
    truncated: bool = False
    closed: bool = False  # its read end was closed here (the number may be another pipe's now)
    # name -> (last line whose value is a finite number, last line): a refused last
    # line must not erase an earlier valid value, and no count of lines loses the last.
    metrics: dict[bytes, tuple[bytes | None, bytes]] = field(default_factory=dict)

    def feed(self, data: bytes) -> None:
        self.tail += data
        limit = self.limit or (_MAX_RESULT if self.whole else self.cap)
        if len(self.tail) > limit:
            del self.tail[: len(self.tail) - limit]
            self.truncated = True
        if self.scan:
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()[-4096:]
            self._keep(lines)

    def finish(self) -> None:
        self.closed = True
        if self.scan and self.partial:
            self._keep([self.partial])
            self.partial = b""

    def _keep(self, lines: list[bytes]) -> None:
        for line in lines:
            if not line.startswith(_METRIC_PREFIX):
                continue
            line = line.rstrip(b"\r")
            head, _, value = line.partition(b"=")
            name = head[len(_METRIC_PREFIX) :].strip()
            previous = self.metrics.pop(name, None)
            if previous is None and len(self.metrics) >= _MAX_METRIC_NAMES:
                continue
            valid = line if _finite(value) else (previous[0] if previous else None)
            self.metrics[name] = (valid, line)  # re-inserted: dict order is last-written order

    def metric_text(self) -> str:
        lines: list[bytes] = []
        for valid, last in self.metrics.values():
            if valid is not None and valid != last:
                lines.append(valid)
            lines.append(last)
        return b"\n".join(lines).decode("utf-8", errors="replace")

    def text(self) -> str:
        body = bytes(self.tail).decode("utf-8", errors="replace")
        return ("[... output truncated ...]\n" + body) if self.truncated else body


# The protocol's value rule (protocol/_metrics.py NUMBER), repeated here because the
# worker imports only the standard library: ASCII digits, sign, point and exponent.
_NUMBER = re.compile(rb"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _finite(value: bytes) -> bool:
    text = value.strip()
    return bool(_NUMBER.match(text)) and math.isfinite(float(text))


@dataclass
class _Child:
    """A forked candidate the worker is waiting for."""

    request: dict[str, Any]
    pid: int
    started: float
    deadline: float
    streams: dict[int, _Stream]
    pidfd: int | None = None
    status: int | None = None
    timed_out: bool = False
    cancelled: bool = False

    def fds(self) -> list[int]:
        """The descriptors still open for this child (a closed one's number may be reused)."""
        return [
            *(fd for fd, s in self.streams.items() if not s.closed),
            *([self.pidfd] if self.pidfd is not None else []),
        ]


class Worker:
    """Holds the warm state and runs candidates in forked children."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pid = os.getpid()
        self.root = os.getcwd()
        self.started = time.time()
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.off_limits: list[str] = []
        self.children: dict[int, _Child] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(conn.fileno(), selectors.EVENT_READ, ("conn", None))
        self.warm_modules: set[str] = set()
        # Processes the setup started (a notebook's cells may): never strays.
        self.own: set[int] = set()

    # -- setup ---------------------------------------------------------------------
    def setup(self, request: dict[str, Any]) -> dict[str, Any]:
        self.off_limits = list(request.get("off_limits") or [])
        for module in request.get("preimport") or []:
            self._warm(module)
        if request.get("namespace"):
            # Sent by the user's own kernel (cloudpickle output loads with plain pickle).
            self.namespace.update(pickle.loads(request["namespace"]))
        for index, code in enumerate(request.get("setup_code") or []):
            try:
                exec(compile(code, f"<setup cell {index + 1}>", "exec"), self.namespace)
            except BaseException as err:
                return {
                    "error": f"setup cell {index + 1} failed: {type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                }
        self.own = children()
        return {"error": None}

    def _warm(self, module: str) -> None:
        """Import ``module`` so later children find it warm, unless a candidate could
        have planted it: it must come from outside the target's folder and predate us."""
        if module in self.warm_modules or module in sys.modules:
            return
        try:
            spec = importlib.util.find_spec(module.split(".")[0])
        except (ImportError, ValueError):
            return
        if spec is None:
            return
        places = [spec.origin or "", *(spec.submodule_search_locations or [])]
        for place in filter(None, places):
            path = os.path.realpath(place)
            if path.startswith(self.root + os.sep):
                return
            try:
                if os.path.exists(path) and os.stat(path).st_mtime > self.started:
                    return
            except OSError:
                return
        try:
            __import__(module)
        except BaseException:
            return
        self.warm_modules.add(module)

    # -- running candidates --------------------------------------------------------
    def start(self, request: dict[str, Any]) -> None:
        check = request.get("check")
        if check is not None and check.get("kind") == "command":
            # Named here, so the worker removes it even when the check is killed.
            name = f"autoresearch-candidate-{self.pid}-{request['id']}.py"
            request["candidate_file"] = os.path.join(tempfile.gettempdir(), name)
        pipes = [os.pipe() for _ in range(4)]  # stdout, stderr, result, exports
        sys.stdout.flush()
        sys.stderr.flush()
        # Objects that exist now are never collected in the child: the collector then
        # does not write to (and so copy) the pages the child shares with us.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reports through its pipes
            for read, _ in pipes:
                os.close(read)
            _child(self, request, *(write for _, write in pipes))
        for _, write in pipes:
            os.close(write)
        cap = int(request.get("output_cap") or 65536)
        now = time.monotonic()
        (out, _), (err, _), (result, _), (exports, _) = pipes
        child = _Child(
            request=request,
            pid=pid,
            started=now,
            deadline=now + float(request.get("timeout") or 1e9),
            streams={
                out: _Stream(cap, scan=True),
                err: _Stream(cap),
                result: _Stream(cap, whole=True),
                exports: _Stream(cap, limit=_MAX_EXPORT + 1),
            },
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
            return
        except (ProcessLookupError, PermissionError):
            pass
        # No group yet: a child killed right after the fork has not called setpgid. Only
        # while it is unreaped, so its pid cannot belong to another process.
        if child.status is None:
            os.kill(child.pid, signal.SIGKILL)

    def cancel_all(self) -> None:
        for child in self.children.values():
            child.cancelled = True
            self.kill(child)

    def cancel_one(self, run: int) -> None:
        for child in self.children.values():
            if child.request["id"] == run:
                child.cancelled = True
                self.kill(child)

    def kill_strays(self) -> None:
        """Kill every process a candidate left behind; call when no candidate runs.

        Orphans come back to the worker (a subreaper); killing one hands its own
        children to us in turn, so repeat until none is left.
        """
        for _ in range(1000):
            strays = children() - self.own - set(self.children)
            if not strays:
                return
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in strays:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def _close(self, fd: int, child: _Child) -> None:
        self.selector.unregister(fd)
        os.close(fd)
        child.streams[fd].finish()

    def _drain(self, fd: int, child: _Child) -> bool:
        """Read what ``fd`` has; False once it reached end of file."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if data:
            child.streams[fd].feed(data)
            return True
        self._close(fd, child)
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
        # The candidate may have left grandchildren holding the pipes open: kill the group,
        # then read what is already in the pipes without waiting for more.
        self.kill(child)
        for fd in [fd for fd, stream in child.streams.items() if not stream.closed]:
            # Only its own: the number of a pipe closed earlier may be another child's now.
            while self._drain(fd, child):
                if not select.select([fd], [], [], 0)[0]:
                    self._close(fd, child)
                    break
        del self.children[child.pid]
        if not self.children:
            self.kill_strays()  # before the report: the run has ended when the engine hears of it
        if child.request.get("candidate_file"):
            try:
                os.unlink(child.request["candidate_file"])
            except OSError:
                pass
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

    def end(self) -> None:
        """Leave no process behind: running candidates, then everything they started."""
        self.cancel_all()
        for child in self.children.values():
            self._reap(child, block=True)
        self.children.clear()
        self.own = set()  # what the setup started ends with the worker too
        self.kill_strays()

    def _handle(self, message: tuple[str, Any]) -> bool:
        kind, payload = message
        if kind == "setup":
            self.conn.send(("ready", self.setup(payload)))
        elif kind == "run":
            self.start(payload)
        elif kind == "protect":
            self.off_limits = list(payload)
        elif kind == "warm":
            for module in payload:
                self._warm(module)
        elif kind == "cancel":
            self.cancel_all() if payload is None else self.cancel_one(payload)
        elif kind == "exit":
            self.end()
            return False
        return True


def children() -> set[int]:
    """The worker's child processes (of every thread)."""
    found: set[int] = set()
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as handle:
                found.update(int(pid) for pid in handle.read().split())
        return found
    except OSError:
        pass  # a kernel without the children files, or no /proc: scan every process's parent
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found  # no /proc (not Linux): nothing was adopted either
    for name in names:
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.add(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _prctl(option: int, value: int) -> bool:
    """``prctl(2)`` where libc has it (Linux); False elsewhere or on failure."""
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0)
    except (AttributeError, OSError):
        return False


def _report(child: _Child) -> dict[str, Any]:
    out, err, result_stream, exports = child.streams.values()
    result: dict[str, Any] = {}
    if not result_stream.truncated:
        try:
            loaded = json.loads(bytes(result_stream.tail) or b"{}")
            result = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            result = {}  # garbage on the result pipe: judged from the exit status below
    status = child.status or 0
    error: str | None
    if child.cancelled:
        kind, error = "cancelled", "stopped by the user"
    elif child.timed_out:
        kind = "timeout"
        option = "--check-timeout" if child.request.get("check") else "--timeout"
        error = f"timed out after {child.request.get('timeout')}s (raise {option} to allow longer)"
    elif result.get("kind") in ("ok", "crash"):
        kind, error = result["kind"], _text(result.get("error")) or None
    elif child.request.get("check") and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
        # A check cell's own timer (see _check_cell) ended it.
        kind = "timeout"
        error = f"timed out after {child.request['check'].get('timeout')}s (raise --check-timeout to allow longer)"
    elif os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        kind = "crash"
        error = f"killed by signal {signal.Signals(number).name}"
        if number == signal.SIGKILL:
            error += " (out of memory? raise --memory-limit)"
    else:
        kind, error = "crash", f"exited with status {os.waitstatus_to_exitcode(status)}"
    figures = []
    for item in result.get("figures", [])[:8] if isinstance(result.get("figures"), list) else []:
        try:
            figures.append(base64.b64decode(str(item), validate=True))
        except ValueError:
            continue
    return {
        "id": child.request["id"],
        "kind": kind,
        "error": error,
        "stdout_tail": out.text(),
        "stderr_tail": err.text(),
        "metric_text": out.metric_text(),
        "duration_s": time.monotonic() - child.started,
        "figures": figures,
        "touched": _strings(result.get("touched")),
        "written": _strings(result.get("written")),
        "imported": _strings(result.get("imported")),
        # Only what was asked for (the candidate holds the pipe's other end either way).
        "exported": (bytes(exports.tail) or None) if child.request.get("export") and not exports.truncated else None,
        "missing": _strings(result.get("missing")),
        "export_error": _text(result.get("export_error")) or None,
        "report": result.get("report") if isinstance(result.get("report"), dict) else None,
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any, limit: int = 1000) -> list[str]:
    return [v for v in value[:limit] if isinstance(v, str)] if isinstance(value, list) else []


def glob_match(path: str, pattern: str) -> bool:
    """Glob semantics, as ``glob.glob``: ``*`` stays within a folder, ``**`` spans folders."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return _match(parts, [p for p in pattern.split("/") if p not in ("", ".")])


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def _off_limits_hook(
    root: str, patterns: list[str], touched: list[str], written: list[str]
) -> Callable[[str, tuple[Any, ...]], None]:
    def relative(path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        # Resolved at the time of the call: the candidate may have changed directory.
        full = os.path.realpath(os.path.join(os.getcwd(), os.fsdecode(path)))
        name = os.path.relpath(full, root)
        return None if name.startswith("..") else name.replace(os.sep, "/")

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
            name = relative(path)
            if name is None:
                continue
            if any(glob_match(name, pattern) for pattern in patterns):
                touched.append(name)
                raise PermissionError(f"{name} is off limits for candidates")
            if len(written) < 1000:
                written.append(name)

    return hook


def _child(  # pragma: no cover - runs in the child, reports through its pipes
    worker: Worker, request: dict[str, Any], out_w: int, err_w: int, result_w: int, exports_w: int
) -> None:
    code = 0
    try:
        # Die with the worker, so a worker that ends takes its running candidates along.
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != worker.pid:
            os._exit(1)  # it ended before we asked
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        # Nothing of the worker's may reach the candidate: its protocol socket, its
        # selector, and the pipes and pidfds of sibling candidates.
        worker.conn.close()
        worker.selector.close()
        for sibling in worker.children.values():
            for fd in sibling.fds():
                os.close(fd)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        limit_mb = request.get("memory_mb")
        if limit_mb:
            limit = _mapped_bytes() + int(limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = _execute(worker, request)
    except BaseException as err:
        result = {"kind": "crash", "error": f"{type(err).__name__}: {err}"}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(exports_w, result.pop("_exported", b""))
        _write_all(result_w, json.dumps(result).encode())
    except BaseException:
        code = 1
    os._exit(code)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - runs in the child
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _execute(worker: Worker, request: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
    check = request.get("check")
    if check is not None:
        if check.get("kind") == "command":
            return _check_command(worker, request, str(check["source"]))
        return _check_cell(worker, request, str(check["source"]), float(check["timeout"]))
    touched: list[str] = []
    written: list[str] = []
    sys.addaudithook(_off_limits_hook(worker.root, worker.off_limits, touched, written))
    before = set(sys.modules)
    namespace = dict(worker.namespace)
    if request.get("inputs") is not None:
        namespace[_INPUTS] = request["inputs"]  # bytes: the code that runs here unpickles them
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
    result: dict[str, Any] = {
        "kind": kind,
        "error": error,
        "figures": [base64.b64encode(png).decode() for png in _figures()],
        "touched": touched,
        "written": sorted(set(written)),
        # Full names: lazily imported submodules (pandas.io.parsers...) are warmed too.
        "imported": sorted(set(sys.modules) - before),
    }
    if kind == "ok" and request.get("export"):
        result.update(_export(namespace, [str(n) for n in request["export"]]))
    report = namespace.get(_REPORT)
    if isinstance(report, dict):
        try:
            json.dumps(report)
            result["report"] = report
        except (TypeError, ValueError) as err:
            result["report"] = {"error": f"the report is not JSON: {err}"}
    return result


def _export(namespace: dict[str, Any], names: list[str]) -> dict[str, Any]:  # pragma: no cover - in the child
    """The variables ``names`` cloudpickled (``_exported``, for the exports pipe), and those
    the run did not define."""
    present = {name: namespace[name] for name in names if name in namespace}
    missing = [name for name in names if name not in namespace]
    try:
        import cloudpickle

        data = cloudpickle.dumps(present)
    except BaseException as err:
        shown = ", ".join(present)
        return {"missing": missing, "export_error": f"cannot send {shown} to the holdout ({type(err).__name__}: {err})"}
    if len(data) > _MAX_EXPORT:
        return {
            "missing": missing,
            "export_error": f"{', '.join(present)} pickled take {len(data) / 2**20:.0f} MiB, more than the "
            f"{_MAX_EXPORT // 2**20} MiB the holdout takes; compare a smaller summary of them",
        }
    return {"missing": missing, "_exported": data}


def _check_command(worker: Worker, request: dict[str, Any], command: str) -> dict[str, Any]:  # pragma: no cover
    """A check command, run by bash in the target's folder, in this child's process group
    (killed whole on timeout), with the candidate's code in ``$AUTORESEARCH_CANDIDATE``."""
    import subprocess

    path = request["candidate_file"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(request["code"])
    env = dict(os.environ, AUTORESEARCH_CANDIDATE=path)
    shell = shutil.which("bash") or "/bin/sh"
    code = subprocess.run([shell, "-c", command], cwd=worker.root, env=env, stdin=subprocess.DEVNULL).returncode
    if code == 0:
        return {"kind": "ok", "error": None}
    if code < 0:
        return {"kind": "crash", "error": f"killed by signal {signal.Signals(-code).name}"}
    return {"kind": "crash", "error": f"exited with status {code}"}


def _check_cell(
    worker: Worker, request: dict[str, Any], source: str, timeout: float
) -> dict[str, Any]:  # pragma: no cover
    """A check cell: the candidate runs again (its output not kept), then the cell in the
    namespace it left, with ``timeout`` seconds of its own (a timer that ends this child)."""
    touched: list[str] = []
    written: list[str] = []
    sys.addaudithook(_off_limits_hook(worker.root, worker.off_limits, touched, written))
    namespace = dict(worker.namespace)
    saved = os.dup(1), os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    failed: str | None = None
    try:
        exec(compile(request["code"], "<candidate>", "exec"), namespace)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            failed = f"SystemExit: {exit_.code}"
    except BaseException as err:
        failed = f"{type(err).__name__}: {err}".strip()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    if failed is not None:
        error = f"the candidate failed when run again before the check cell ({failed})"
        return {"kind": "crash", "error": error, "touched": touched}
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    kind, error = "ok", ""
    try:
        exec(compile(source, "<check cell>", "exec"), namespace)
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            kind, error = "crash", f"SystemExit: {exit_.code}"
    except BaseException as err:
        tb = err.__traceback__.tb_next if err.__traceback__ else None
        traceback.print_exception(type(err), err, tb)
        kind, error = "crash", f"{type(err).__name__}: {err}".strip()
    signal.setitimer(signal.ITIMER_REAL, 0)
    sys.stdout.flush()
    sys.stderr.flush()
    return {"kind": kind, "error": error or None, "touched": touched}


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
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # what candidates leave behind comes back to us
    worker = Worker(Connection(int(sys.argv[1])))
    try:
        worker.loop()
    except (EOFError, OSError):
        worker.end()  # the engine went away: leave no process behind


if __name__ == "__main__":
    main()
