"""The session folder on disk: ``log.jsonl``, ``prompt.md``, ``ideas.md``, ``best.py``.

The log is append-only and flushed per line, in pi-autoresearch's format plus our own
fields, so a session survives a crash or a kill and resumes where it stopped. Logs of
pi-autoresearch (``autoresearch.jsonl``, ``.auto/log.jsonl``) load as read-only sessions.

The journal cannot silently lose runs: it keeps what the log holds, and before each
append it checks that the file is still the one it opened, as long as it left it. A log
that was deleted, replaced, truncated or written to meanwhile is moved aside
(``log.jsonl.damaged-N``) and written again whole, with a warning.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..protocol._calibration import Calibration
from ..protocol._errors import JournalError
from ..protocol._failure import ModelFailure
from ..protocol._records import RunRecord, SegmentConfig
from ..protocol._redact import redact
from ..protocol._stop import StopLine
from ._logfile import LOG, SessionLog, find_log, read_log

__all__ = ["Journal", "SessionLog", "find_log", "read_log", "session_folder"]

_NAME = re.compile(r"^[\w.-]+$")


def session_folder(target: Path, name: str) -> Path:
    """``.autoresearch/<name>/`` beside the notebook or script."""
    if not _NAME.match(name) or name.startswith("."):
        raise JournalError(f"session name {name!r} is not allowed: use letters, digits, '-', '_' or '.'")
    return target.resolve().parent / ".autoresearch" / name


class Journal:
    """Writes one session folder. Holds an exclusive lock while open.

    Args:
        folder: the session folder (created if missing).
        on_warning: called with one line when the log had to be repaired.

    Raises:
        JournalError: the folder cannot be created, or another process is writing it.
    """

    def __init__(self, folder: Path, on_warning: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self.on_warning = on_warning
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._handle: IO[str] = open(folder / LOG, "a+", encoding="utf-8")
        except OSError as err:
            raise JournalError(f"cannot write the session folder {folder}: {err.strerror}") from None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise JournalError(
                f"session {folder.name} is running in another process; stop it there, "
                "or choose another name with --session"
            ) from None
        self._drop_partial_line()
        # What the log holds, to write it again if it is damaged behind our back.
        with open(self.log_path, "rb") as raw:
            self._content = bytearray(raw.read())
        self._records = sum(1 for line in self._content.splitlines() if line.strip())
        self._mark()

    @property
    def log_path(self) -> Path:
        return self.folder / LOG

    def read(self) -> SessionLog:
        return read_log(self.log_path)

    def _drop_partial_line(self) -> None:
        """Make the log end with a newline before anything is appended.

        A whole record saved without its newline (an editor) gets one; a fragment left
        by a kill mid-write (never a whole record) is cut off, or the next record would
        be glued onto it.
        """
        self._handle.seek(0, os.SEEK_END)
        size = self._handle.tell()
        if size == 0:
            return
        with open(self.log_path, "rb") as raw:
            start = size
            tail = b""
            while start > 0 and b"\n" not in tail:
                start = max(0, start - 65536)
                raw.seek(start)
                tail = raw.read(size - start)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        fragment = tail[cut + 1 :]
        try:
            whole = isinstance(json.loads(fragment), dict)
        except ValueError:
            whole = False
        if whole:
            self._handle.write("\n")
            self._handle.flush()
        else:
            os.truncate(self.log_path, start + cut + 1)
        self._handle.seek(0, os.SEEK_END)

    def _append(self, data: dict[str, Any]) -> None:
        # JSON as JavaScript reads it: a value that cannot be computed is null.
        line = redact(json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False))
        self.check()
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._content += (line + "\n").encode()
        self._records += 1
        self._mark()

    def _mark(self) -> None:
        info = os.fstat(self._handle.fileno())
        self._identity = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def _damage(self) -> str | None:
        """What happened to the log since we last wrote it, if anything."""
        try:
            info = os.stat(self.log_path)
        except FileNotFoundError:
            return "deleted"
        except OSError as err:
            return f"unreadable ({err.strerror})"
        device, inode, size, mtime = self._identity
        if (info.st_dev, info.st_ino) != (device, inode):
            return "replaced"
        if info.st_size < size:
            return "truncated"
        if info.st_size > size:
            return "appended to"
        return None if info.st_mtime_ns == mtime else "overwritten"

    def check(self) -> None:
        """Write the log again from what the journal holds if it was changed behind its back.

        What was there is moved aside to ``log.jsonl.damaged-N``; ``on_warning`` hears of it.

        Raises:
            JournalError: the session folder cannot be written.
        """
        damage = self._damage()
        if damage is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            aside = None
            if os.path.lexists(self.log_path):
                number = 1
                while os.path.lexists(self.folder / f"{LOG}.damaged-{number}"):
                    number += 1
                aside = self.folder / f"{LOG}.damaged-{number}"
                os.rename(self.log_path, aside)
            fresh = self.folder / f"{LOG}.rewrite"
            with open(fresh, "wb") as raw:
                raw.write(self._content)
                raw.flush()
                os.fsync(raw.fileno())
            handle = open(fresh, "a+", encoding="utf-8")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # locked before anyone can find it
            os.replace(fresh, self.log_path)
        except OSError as err:
            raise JournalError(
                f"the session log {self.log_path} was {damage} and cannot be written again: {err}"
            ) from None
        old, self._handle = self._handle, handle
        old.close()
        self._mark()
        kept = f"what was there is in {aside.name}; " if aside else ""
        message = (
            f"the session log {self.log_path} was {damage} behind the journal's back; {kept}"
            f"it was written again whole ({self._records} lines)"
        )
        if self.on_warning is not None:
            self.on_warning(message)

    def append_config(self, config: SegmentConfig) -> None:
        self._append(config.to_json())

    def append_run(self, record: RunRecord) -> None:
        self._append(record.to_json())

    def append_failure(self, failure: ModelFailure) -> None:
        self._append(failure.to_json())

    def append_calibration(self, calibration: Calibration) -> None:
        self._append(calibration.to_json())

    def append_stop(self, stop: StopLine) -> None:
        self._append(stop.to_json())

    def _write_text(self, name: str, text: str) -> Path:
        path = self.folder / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(redact(text), encoding="utf-8")
        os.replace(tmp, path)  # readers never see a half-written file
        return path

    def write_document(self, text: str) -> Path:
        return self._write_text("prompt.md", text)

    def write_best(self, code: str) -> Path:
        return self._write_text("best.py", code)

    def read_ideas(self) -> list[str]:
        path = self.folder / "ideas.md"
        if not path.exists():
            return []
        return [
            line.lstrip("-* ").strip()
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith(("-", "*"))
        ]

    def add_ideas(self, ideas: list[str]) -> None:
        known = set(self.read_ideas())
        fresh = [idea for idea in ideas if idea not in known]
        if not fresh:
            return
        path = self.folder / "ideas.md"
        header = "" if path.exists() else "# Ideas backlog\n\nDeferred ideas; edit freely.\n\n"
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(header + "".join(f"- {redact(idea)}\n" for idea in fresh))

    def save_figures(self, run: int, images: tuple[bytes, ...]) -> tuple[str, ...]:
        names = []
        for index, png in enumerate(images, 1):
            name = f"figures/run-{run}-{index}.png"
            (self.folder / "figures").mkdir(exist_ok=True)
            (self.folder / name).write_bytes(png)
            names.append(name)
        return tuple(names)

    def close(self) -> None:
        """Leave a whole log behind, then release it."""
        if not self._handle.closed:
            try:
                self.check()
            finally:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
                self._handle.close()


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (null), at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
