"""The METRIC protocol: ``METRIC <name>=<number>`` lines on stdout.

The rule, as pi-autoresearch reads it (its ``parseMetricLines``), made strict where pi
is loose:

- A line is ``^METRIC\\s+<name>=<value>\\s*$``; nothing else in the output is a metric,
  and the last value of a name wins.
- A name is ASCII letters, digits, ``_`` and ``.``, plus the micro sign ``µ`` (U+00B5),
  which is what pi's JavaScript ``[\\w.µ]`` matches. ``__proto__``, ``constructor``,
  ``prototype`` (refused by pi) and every ``__dunder__`` name are reserved.
- A value is an ASCII decimal number: an optional sign, digits with an optional point,
  an optional exponent (``-1.5e-3``, ``.5``, ``7.``). It must be finite. Unlike pi
  (JavaScript's ``Number``), hexadecimal, binary and octal forms are refused, and unlike
  Python's ``float``, so are digits from other scripts (``９９９``), underscores,
  ``nan`` and ``inf``.

The evaluation worker (``isolation/_worker.py``, standard library only) applies the same
value rule to the lines it keeps.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field

from ._errors import MetricParseError

__all__ = [
    "METRIC_LINE",
    "NUMBER",
    "RESERVED_NAMES",
    "ParsedMetrics",
    "check_metric_name",
    "is_metric_name",
    "metric",
    "parse_metrics",
    "parse_number",
]

_NAME_CHARS = r"[A-Za-z0-9_.\u00b5]+"
#: The pi-autoresearch form; nothing else in a run's output is read as a metric.
METRIC_LINE = re.compile(rf"^METRIC\s+({_NAME_CHARS})=(\S+)\s*$")
_NAME = re.compile(rf"^{_NAME_CHARS}$")
#: An ASCII decimal number: sign, digits, point, exponent (``re.ASCII``: ``\d`` is 0-9 only).
NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$", re.ASCII)
#: Names pi-autoresearch refuses (they would reach JavaScript objects' internals).
RESERVED_NAMES = frozenset({"__proto__", "constructor", "prototype"})


@dataclass(frozen=True)
class ParsedMetrics:
    """Metrics read from one output, and the METRIC lines that were refused."""

    values: dict[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a valid, unreserved metric name."""
    return bool(_NAME.match(name)) and name not in RESERVED_NAMES and not _dunder(name)


def _dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def check_metric_name(name: str) -> str:
    """Return ``name`` if it is a valid metric name, else raise MetricParseError."""
    if not _NAME.match(name):
        raise MetricParseError(f"metric name {name!r} is not allowed: use ASCII letters, digits, '_', '.' or 'µ'")
    if name in RESERVED_NAMES or _dunder(name):
        # They collide with object internals downstream (JSON viewers, JavaScript objects).
        raise MetricParseError(f"metric name {name!r} is reserved: choose another name")
    return name


def parse_number(name: str, text: str) -> float:
    """The value of metric ``name`` written as ``text``, by the rule above.

    Raises:
        MetricParseError: ``text`` is not an ASCII decimal number, or not finite.
    """
    if text.lstrip("+-").lower() in ("nan", "inf", "infinity"):
        raise MetricParseError(f"metric {name} has value {text}, which is not finite")
    if not NUMBER.match(text):
        raise MetricParseError(
            f"metric {name} has value {text!r}, which is not a number "
            "(write ASCII digits, an optional sign, point and exponent)"
        )
    value = float(text)
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
            values[check_metric_name(name)] = parse_number(name, text)
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
    number = float(value)
    if not math.isfinite(number):
        raise MetricParseError(f"metric {name} has value {value}, which is not finite")
    print(f"METRIC {name}={number!r}", file=sys.stdout, flush=True)
