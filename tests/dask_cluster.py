"""A real Dask cluster on 127.0.0.1 for the tests: a scheduler and workers as processes.

Started with the ``dask`` command of this environment (``dask scheduler``, ``dask worker
--nworkers 1 --nthreads 1``), each in its own process group, and stopped by pid. Every
process of the cluster, and everything they start (warm workers, candidates), carries a
marker in its environment, so a test can find what is still running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DASK = str(Path(sys.executable).with_name("dask"))
MARKER_VARIABLE = "AUTORESEARCH_TEST_CLUSTER"


class DaskCluster:
    """A scheduler and named workers; :meth:`close` stops all of them by pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.marker = f"cluster-{secrets.token_hex(6)}"
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._file = folder / "scheduler.json"
        self.scheduler = self._start(
            "scheduler",
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(self._file)],
        )
        deadline = time.monotonic() + 60
        while not self._file.exists() or not self._file.read_text().strip():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start: {self.log('scheduler')}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give it a moment to be complete
        self.address: str = json.loads(self._file.read_text())["address"]
        self._client: Any = None

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, MARKER_VARIABLE: self.marker}
        with open(self.folder / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [DASK, *args],
                cwd=self.folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def add_worker(self, name: str, wait: bool = True) -> None:
        """Start ``dask worker`` named ``name`` (one process, one thread)."""
        local = self.folder / f"{name}-space"
        local.mkdir(exist_ok=True)
        self.workers[name] = self._start(
            name,
            [
                "worker", self.address, "--name", name, "--nworkers", "1", "--nthreads", "1",
                "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(local),
            ],
        )  # fmt: skip
        if wait:
            self.wait_for(name)

    def client(self) -> Any:
        """A client of the test's own, to look at the cluster."""
        if self._client is None:
            from distributed import Client

            self._client = Client(self.address, timeout=30, set_as_default=False)
        return self._client

    def names(self) -> dict[str, str]:
        """Worker name -> address, of the workers the scheduler knows now."""
        info = self.client().scheduler_info()["workers"]
        return {str(w["name"]): address for address, w in info.items()}

    def wait_for(self, *names: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not set(names) <= set(self.names()):
            for name in names:
                if self.workers[name].poll() is not None:
                    raise RuntimeError(f"dask worker {name} ended: {self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dask workers {names} did not join: {self.names()}")
            time.sleep(0.05)

    def running(self, timeout: float = 60) -> str:
        """The name of the worker that is running a task, once one is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = {address for address, keys in self.client().processing().items() if keys}
            for name, address in self.names().items():
                if address in busy:
                    return name
            time.sleep(0.05)
        raise RuntimeError("no worker started a task")

    def kill(self, name: str) -> None:
        """Kill worker ``name`` (its whole process group) with SIGKILL, as a lost machine."""
        process = self.workers.pop(name)
        _kill_group(process)
        deadline = time.monotonic() + 60
        while name in self.names() and time.monotonic() < deadline:
            time.sleep(0.05)

    def processes(self, holding: str = "") -> list[int]:
        """Live processes started by this cluster (by the environment marker), whose
        command line holds ``holding``."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if f"{MARKER_VARIABLE}={self.marker}".encode() in environ and state != "Z":
                if holding.encode() in cmdline:
                    found.append(int(entry))
        return found

    def close(self) -> list[int]:
        """Stop every process by pid; returns the pids of strays that had to be killed."""
        if self._client is not None:
            self._client.close()
        for process in [*self.workers.values(), self.scheduler]:
            _kill_group(process)
        self.workers.clear()
        deadline = time.monotonic() + 15  # warm workers see their Dask worker gone and end
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        strays = self.processes()
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return strays


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
