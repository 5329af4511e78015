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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._errors import JournalError
from ._records import RunRecord, SegmentConfig
from ._redact import redact

__all__ = ["Journal", "SessionLog", "find_log", "read_log", "session_folder"]

_LOG = "log.jsonl"
_PI_LOGS = ("autoresearch.jsonl", ".auto/log.jsonl")
_NAME = re.compile(r"^[\w.-]+$")


def session_folder(target: Path, name: str) -> Path:
    """``.autoresearch/<name>/`` beside the notebook or script."""
    if not _NAME.match(name) or name.startswith("."):
        raise JournalError(f"session name {name!r} is not allowed: use letters, digits, '-', '_' or '.'")
    return target.resolve().parent / ".autoresearch" / name


def find_log(path: Path) -> Path:
    """The log file behind ``path``: a log file, a session folder or a pi-autoresearch folder."""
    if path.is_file():
        return path
    for candidate in (_LOG, *_PI_LOGS):
        if (path / candidate).is_file():
            return path / candidate
    if not path.exists():
        raise JournalError(f"{path} does not exist; give a session folder or a log.jsonl file")
    raise JournalError(f"{path} holds no session log (looked for {_LOG}, {', '.join(_PI_LOGS)})")


@dataclass(frozen=True)
class SessionLog:
    """What a log file holds.

    Attributes:
        configs: the config headers, one per segment.
        runs: every run record, oldest first.
        foreign: True for a pi-autoresearch log (read-only here).
        warnings: lines that were skipped, and why.
    """

    path: Path
    configs: tuple[SegmentConfig, ...] = ()
    runs: tuple[RunRecord, ...] = ()
    foreign: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


def read_log(path: Path) -> SessionLog:
    """Read a log written by us or by pi-autoresearch.

    A partial last line (the process was killed mid-write) is skipped with a warning;
    a malformed line anywhere else is an error.

    Raises:
        JournalError: the file cannot be read, or a line other than the last is broken.
    """
    log = find_log(path)
    try:
        lines = log.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise JournalError(f"cannot read {log}: {err}") from None
    configs: list[SegmentConfig] = []
    runs: list[RunRecord] = []
    warnings: list[str] = []
    foreign = log.name != _LOG or log.parent.name == ".auto"
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            if data.get("type") == "config":
                configs.append(SegmentConfig.from_json(data, segment=max(len(configs), 0)))
                continue
            if "type" in data:
                continue  # a line kind this version does not know: not a run
            segment = int(data.get("segment", max(len(configs) - 1, 0)))
            metric_name = _config_for(configs, segment).metric_name if configs else None
            runs.append(RunRecord.from_json({**data, "segment": segment}, metric_name=metric_name))
        except (ValueError, KeyError, TypeError) as err:
            if index == len(lines) - 1:  # no newline after it: the write was cut short
                warnings.append(f"{log.name}:{index + 1} is a partial line (an interrupted write); skipped")
                continue
            raise JournalError(
                f"{log}:{index + 1} is not a valid log line ({err}); repair or remove that line"
            ) from None
    return SessionLog(log, tuple(configs), tuple(runs), foreign, tuple(warnings))


def _config_for(configs: list[SegmentConfig], segment: int) -> SegmentConfig:
    matching = [c for c in configs if c.segment == segment]
    return matching[-1] if matching else configs[-1]


class Journal:
    """Writes one session folder. Holds an exclusive lock while open.

    Raises:
        JournalError: the folder cannot be created, or another process is writing it.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._handle: IO[str] = open(folder / _LOG, "a+", encoding="utf-8")
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
        return self.folder / _LOG

    def read(self) -> SessionLog:
        return read_log(self.log_path)

    def _drop_partial_line(self) -> None:
        # A kill mid-write leaves a line without its newline; appending after it would
        # glue two records together, so that fragment (never a whole record) is cut off.
        self._handle.seek(0, os.SEEK_END)
        size = self._handle.tell()
        if size == 0:
            return
        with open(self.log_path, "rb") as raw:
            raw.seek(max(0, size - 65536))
            tail = raw.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        os.truncate(self.log_path, keep)
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
