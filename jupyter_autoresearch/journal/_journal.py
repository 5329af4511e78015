"""The session folder on disk: ``log.jsonl``, ``prompt.md``, ``ideas.md``, ``best.py``.

The log is append-only and flushed per line, in pi-autoresearch's format plus our own
fields, so a session survives a crash or a kill and resumes where it stopped. Logs of
pi-autoresearch (``autoresearch.jsonl``, ``.auto/log.jsonl``) load as read-only sessions.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import IO, Any

from ..protocol._errors import JournalError
from ..protocol._failure import ModelFailure
from ..protocol._records import RunRecord, SegmentConfig
from ..protocol._redact import redact
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

    Raises:
        JournalError: the folder cannot be created, or another process is writing it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
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
        line = redact(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def append_config(self, config: SegmentConfig) -> None:
        self._append(config.to_json())

    def append_run(self, record: RunRecord) -> None:
        self._append(record.to_json())

    def append_failure(self, failure: ModelFailure) -> None:
        self._append(failure.to_json())

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
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
