"""Reading session logs: ours (``log.jsonl``) and pi-autoresearch's.

Pure parsing of the log format, shared by the journal and the replay proposer.

A log is read as pi-autoresearch 1.6 reads it (``extensions/pi-autoresearch/jsonl.ts``,
``reconstructJsonlState``) unless it is one of ours, which is told by its content: our
config headers carry ``segment`` (or another key of ours) and our run lines carry ``code``
(replay recordings too). pi's rules:

- each line is JSON as JavaScript parses it (no ``NaN``/``Infinity``); a line that is not
  an object is skipped (we say so in a warning);
- a ``{"type": "config"}`` header starts a new segment if any run came before it (so
  headers before the first run all open segment 0, and the segment number is the count of
  headers read, not a run's own ``segment`` field); its ``name``, ``metricName`` and
  ``metricUnit`` replace the previous ones when they are strings, and ``bestDirection``
  is ``higher`` only when it says so (pi's default is lower);
- a line with a number ``run`` is a run (see :meth:`RunRecord.from_pi` for its
  defaults); any other line is not.

Our own logs keep our rules: the recorded ``segment`` fields, our defaults, and a broken
line anywhere but at the end is an error rather than silently lost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..protocol._errors import JournalError
from ..protocol._records import RunRecord, SegmentConfig

__all__ = ["LOG", "SessionLog", "find_log", "read_log"]

LOG = "log.jsonl"
#: pi-autoresearch's session files, ``.auto/<current>`` or ``<legacy>`` (its ``paths.ts``).
_PI_FILES = {
    "log.jsonl": "autoresearch.jsonl",
    "prompt.md": "autoresearch.md",
    "ideas.md": "autoresearch.ideas.md",
    "checks.sh": "autoresearch.checks.sh",
    "measure.sh": "autoresearch.sh",
    "config.json": "autoresearch.config.json",
    "research.json": "autoresearch.research.json",
    "ideation.jsonl": "autoresearch.ideation.jsonl",
}
_AUTO = ".auto"
#: Keys only our config headers (and replay recordings') carry; pi writes name, metricName,
#: metricUnit and bestDirection.
_OUR_HEADER_KEYS = frozenset(
    {
        "segment",
        "constraints",
        "offLimits",
        "objective",
        "secondaryMetrics",
        "recorded",
        "hiddenMetrics",
        "holdoutMetric",
    }
)


def _pi_file(folder: Path, current: str) -> Path:
    """pi's choice between ``.auto/<current>`` and the legacy flat file.

    As pi's ``sessionFilePath``: if any ``.auto/`` session file (or ``.auto/hooks``)
    exists, the ``.auto/`` layout is used for every file and legacy files are ignored;
    otherwise the legacy file if it exists.
    """
    auto = folder / _AUTO
    if any((auto / name).exists() for name in _PI_FILES) or (auto / "hooks").exists():
        return auto / current
    legacy = folder / _PI_FILES[current]
    return legacy if legacy.exists() else auto / current


def _pi_workdir(folder: Path) -> Path:
    """The folder pi keeps its files in: ``workingDir`` of its config file, if set."""
    try:
        config = json.loads(_pi_file(folder, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return folder
    workdir = config.get("workingDir") if isinstance(config, dict) else None
    return folder / workdir if isinstance(workdir, str) and workdir else folder


def find_log(path: Path) -> Path:
    """The log file behind ``path``: a log file, a session folder or a pi-autoresearch folder.

    In a folder, our ``log.jsonl`` comes first; otherwise the log pi-autoresearch 1.6 would
    read there: ``.auto/log.jsonl`` when the folder has the ``.auto/`` layout (a legacy
    ``autoresearch.jsonl`` beside it is then ignored, as pi ignores it), else
    ``autoresearch.jsonl``; in the folder its ``.auto/config.json`` names as
    ``workingDir``, if any.
    """
    if path.is_file():
        return path
    if not path.exists():
        raise JournalError(f"{path} does not exist; give a session folder or a log.jsonl file")
    if (path / LOG).is_file():
        return path / LOG
    pi_log = _pi_file(_pi_workdir(path), "log.jsonl")
    if pi_log.is_file():
        return pi_log
    looked = f"{LOG}, {_AUTO}/log.jsonl, {_PI_FILES['log.jsonl']}"
    if pi_log.parent.name == _AUTO and (pi_log.parent.parent / _PI_FILES["log.jsonl"]).is_file():
        looked += f"; {_PI_FILES['log.jsonl']} is ignored because {_AUTO}/ exists, as pi-autoresearch does"
    raise JournalError(f"{path} holds no session log (looked for {looked})")


@dataclass(frozen=True)
class SessionLog:
    """What a log file holds.

    Attributes:
        configs: the config headers, oldest first, each with the segment it opens.
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

    def config_of(self, segment: int) -> SegmentConfig | None:
        """The header of ``segment`` (the last one, if several opened it)."""
        return next((c for c in reversed(self.configs) if c.segment == segment), None)


class _NotJson(ValueError):
    """A constant JavaScript's ``JSON.parse`` refuses (``NaN``, ``Infinity``)."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def read_log(path: Path, *, as_pi: bool | None = None) -> SessionLog:
    """Read a log written by us or by pi-autoresearch.

    Args:
        path: a log file or a folder holding one (see :func:`find_log`).
        as_pi: read with pi-autoresearch's rules (True), ours (False), or by what the
            file holds (None). ``True`` shows what pi makes of one of our logs.

    A partial last line (the process was killed mid-write) is skipped with a warning.
    In a pi-autoresearch log any broken line is skipped with a warning, as pi skips it;
    in ours a broken line elsewhere is an error.

    Raises:
        JournalError: the file cannot be read, or one of our lines other than the last
            is broken.
    """
    log = find_log(path)
    try:
        lines = log.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise JournalError(f"cannot read {log}: {err}") from None
    # (line index, the object or None, why pi could not read it: empty when it can)
    entries: list[tuple[int, dict[str, Any] | None, str]] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_refuse_constant)
            why = ""
        except _NotJson as err:
            # pi cannot read it; our own older logs may hold such a number: we can.
            data, why = json.loads(line), str(err)
        except ValueError as err:
            data, why = None, str(err)
        if data is not None and not isinstance(data, dict):
            data, why = None, "not an object"
        entries.append((index, data, why))
    if as_pi is None:
        as_pi = not _ours(entries, log)
    last = len(lines) - 1
    if as_pi:
        return _read_pi(log, entries, last)
    return _read_ours(log, entries, last)


def _ours(entries: list[tuple[int, dict[str, Any] | None, str]], log: Path) -> bool:
    """Whether the log is one of ours (or a recording), told by its content."""
    parsed = [data for _, data, _ in entries if data is not None]
    if not parsed:
        return log.name == LOG and log.parent.name != _AUTO
    return any(
        bool(_OUR_HEADER_KEYS & d.keys()) if d.get("type") == "config" else ("code" in d or "outcome" in d)
        for d in parsed
    )


def _skip(log: Path, index: int, last: int, why: str) -> str:
    if index == last:  # no newline after it: the write was cut short
        return f"{log.name}:{index + 1} is a partial line (an interrupted write); skipped"
    return f"{log.name}:{index + 1} is not a valid log line ({why}); skipped, as pi-autoresearch skips it"


def _read_pi(log: Path, entries: list[tuple[int, dict[str, Any] | None, str]], last: int) -> SessionLog:
    configs: list[SegmentConfig] = []
    runs: list[RunRecord] = []
    warnings: list[str] = []
    # pi's state before any header: these are its defaults.
    current = SegmentConfig(name="", metric_name="metric", direction="lower")
    segment = 0
    for index, data, why in entries:
        if data is None or why:
            warnings.append(_skip(log, index, last, why))
            continue
        if data.get("type") == "config":
            if runs:
                segment += 1
            current = _pi_config(current, data, segment)
            configs.append(current)
            continue
        if isinstance(data.get("run"), bool) or not isinstance(data.get("run"), (int, float)):
            continue  # not a run for pi: hook entries, markers, other tools' lines
        if not configs:
            configs.append(current)  # a run before any header: pi's defaults open segment 0
        runs.append(RunRecord.from_pi(data, segment=segment, metric_name=current.metric_name))
    return SessionLog(log, tuple(configs), tuple(runs), True, tuple(warnings), {})


def _pi_config(previous: SegmentConfig, data: Mapping[str, Any], segment: int) -> SegmentConfig:
    """pi's ``updateConfig``: string fields replace the previous ones; direction resets."""

    def text(key: str, fallback: str) -> str:
        value = data.get(key)
        return value if isinstance(value, str) else fallback

    return replace(
        previous,
        name=text("name", previous.name),
        metric_name=text("metricName", previous.metric_name),
        unit=text("metricUnit", previous.unit),
        direction="higher" if data.get("bestDirection") == "higher" else "lower",
        segment=segment,
        timestamp=int(data["timestamp"]) if isinstance(data.get("timestamp"), (int, float)) else 0,
    )


def _read_ours(log: Path, entries: list[tuple[int, dict[str, Any] | None, str]], last: int) -> SessionLog:
    configs: list[SegmentConfig] = []
    runs: list[RunRecord] = []
    done: dict[int, str] = {}
    warnings: list[str] = []
    for index, data, why in entries:
        try:
            if data is None:
                raise ValueError(why)
            if data.get("type") == "config":
                configs.append(SegmentConfig.from_json(data, segment=len(configs)))
                continue
            if data.get("type") == "done":
                done[int(data.get("segment", 0))] = str(data.get("reason") or "")
                continue
            if "type" in data:
                continue  # a line kind this version does not know: not a run
            segment = int(data.get("segment", max(len(configs) - 1, 0)))
            header = _config_for(configs, segment)
            runs.append(
                RunRecord.from_json({**data, "segment": segment}, metric_name=header.metric_name if header else None)
            )
        except (ValueError, KeyError, TypeError) as err:
            if index == last:
                warnings.append(_skip(log, index, last, str(err)))
                continue
            raise JournalError(
                f"{log}:{index + 1} is not a valid log line ({err}); repair or remove that line"
            ) from None
    return SessionLog(log, tuple(configs), tuple(runs), False, tuple(warnings), done)


def _config_for(configs: list[SegmentConfig], segment: int) -> SegmentConfig | None:
    matching = [c for c in configs if c.segment == segment]
    return matching[-1] if matching else (configs[-1] if configs else None)
