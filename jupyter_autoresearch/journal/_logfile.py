"""Reading session logs: ours (``log.jsonl``) and pi-autoresearch's.

Pure parsing of the log format, shared by the journal and the replay proposer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol._errors import JournalError
from ..protocol._records import RunRecord, SegmentConfig

__all__ = ["LOG", "SessionLog", "find_log", "read_log"]

LOG = "log.jsonl"
_PI_LOGS = ("autoresearch.jsonl", ".auto/log.jsonl")


def find_log(path: Path) -> Path:
    """The log file behind ``path``: a log file, a session folder or a pi-autoresearch folder."""
    if path.is_file():
        return path
    for candidate in (LOG, *_PI_LOGS):
        if (path / candidate).is_file():
            return path / candidate
    if not path.exists():
        raise JournalError(f"{path} does not exist; give a session folder or a log.jsonl file")
    raise JournalError(f"{path} holds no session log (looked for {LOG}, {', '.join(_PI_LOGS)})")


@dataclass(frozen=True)
class SessionLog:
    """What a log file holds.

    Attributes:
        configs: the config headers, one per segment.
        runs: every run record, oldest first.
        foreign: True for a pi-autoresearch log (read-only here).
        warnings: lines that were skipped, and why.
        done: recorded ``{"type": "done"}`` reasons by segment (replay recordings).
    """

    path: Path
    configs: tuple[SegmentConfig, ...] = ()
    runs: tuple[RunRecord, ...] = ()
    foreign: bool = False
    warnings: tuple[str, ...] = ()
    done: Mapping[int, str] = field(default_factory=dict)


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
    done: dict[int, str] = {}
    warnings: list[str] = []
    foreign = log.name != LOG or log.parent.name == ".auto"
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
            if data.get("type") == "done":
                done[int(data.get("segment", 0))] = str(data.get("reason") or "")
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
    return SessionLog(log, tuple(configs), tuple(runs), foreign, tuple(warnings), done)


def _config_for(configs: list[SegmentConfig], segment: int) -> SegmentConfig:
    matching = [c for c in configs if c.segment == segment]
    return matching[-1] if matching else configs[-1]
