"""The METRIC protocol: ``METRIC <name>=<number>`` lines on stdout."""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

from ._errors import MetricParseError

__all__ = ["METRIC_LINE", "ParsedMetrics", "check_metric_name", "metric", "parse_metrics"]

#: The pi-autoresearch form; nothing else in a run's output is read as a metric.
METRIC_LINE = re.compile(r"^METRIC\s+([\w.µ]+)=(\S+)\s*$")
_NAME = re.compile(r"^[\w.µ]+$")


@dataclass(frozen=True)
class ParsedMetrics:
    """Metrics read from one output, and the METRIC lines that were refused."""

    values: dict[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def check_metric_name(name: str) -> str:
    """Return ``name`` if it is a valid metric name, else raise MetricParseError."""
    if not _NAME.match(name):
        raise MetricParseError(f"metric name {name!r} is not allowed: use letters, digits, '_', '.' or 'µ'")
    if name.startswith("__") and name.endswith("__"):
        # Dunder names collide with object internals downstream (JSON viewers, JS objects).
        raise MetricParseError(f"metric name {name!r} is reserved: choose another name")
    return name


def _parse_value(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MetricParseError(f"metric {name} has value {text!r}, which is not a number") from None
    if not math.isfinite(value):
        raise MetricParseError(f"metric {name} has value {text}, which is not finite")
    return value


def parse_metrics(output: str) -> ParsedMetrics:
    """Read every ``METRIC name=value`` line of ``output``; the last value of a name wins.

    Lines with a reserved name or a value that is not a finite number are refused and
    reported in ``problems`` (a refused line does not erase an earlier valid value).

    Example:
        >>> parse_metrics("hello\\nMETRIC loss=0.5\\nMETRIC loss=0.25\\n").values
        {'loss': 0.25}
    """
    values: dict[str, float] = {}
    problems: list[str] = []
    for line in output.splitlines():
        match = METRIC_LINE.match(line)
        if not match:
            continue
        name, text = match.groups()
        try:
            values[check_metric_name(name)] = _parse_value(name, text)
        except MetricParseError as err:
            problems.append(str(err))
    return ParsedMetrics(values, tuple(problems))


def metric(name: str, value: float) -> None:
    """Print ``METRIC name=value`` so the harness records ``value`` under ``name``.

    Raises:
        MetricParseError: the name is not allowed or the value is not a finite number.

    Example:
        >>> metric("revenue_millions", 110.1627)
        METRIC revenue_millions=110.1627
    """
    check_metric_name(name)
    number = _parse_value(name, repr(float(value)))
    print(f"METRIC {name}={number!r}", file=sys.stdout, flush=True)
