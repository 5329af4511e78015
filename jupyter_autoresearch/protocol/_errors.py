"""Errors raised by jupyter-autoresearch.

Every error the library raises derives from :class:`AutoresearchError`, so a caller
can catch one class. Adapters (the CLI, the magics) show ``str(err)`` as a single line
and never a traceback; the message states the value, the rule broken and the next step.

::

    AutoresearchError
    ├── OptionsError          a command-line or magic option is malformed
    ├── MetricParseError      a METRIC line or metric name/value is invalid
    ├── ConstraintError       a constraint expression is malformed or names an unknown metric
    ├── TargetError           the file or notebook to optimise cannot be used
    ├── ProposalError         the model could not be asked (configuration, network, auth)
    ├── EvaluationError       the evaluation worker failed (not the candidate itself)
    │   └── BaselineError     the baseline crashed or printed no primary metric
    ├── JournalError          a session folder or log file cannot be read or written
    └── ExportError           the winning cell cannot be exported where asked
"""

from __future__ import annotations

__all__ = [
    "AutoresearchError",
    "BaselineError",
    "ConstraintError",
    "EvaluationError",
    "ExportError",
    "JournalError",
    "MetricParseError",
    "OptionsError",
    "ProposalError",
    "TargetError",
]


class AutoresearchError(Exception):
    """Base class of every error raised by jupyter-autoresearch."""


class OptionsError(AutoresearchError, ValueError):
    """Raised when an option of the CLI, the magic or the Python API is malformed."""


class MetricParseError(AutoresearchError, ValueError):
    """Raised when a metric name or value breaks the METRIC protocol."""


class ConstraintError(AutoresearchError, ValueError):
    """Raised when a constraint cannot be parsed or names a metric nobody prints."""


class TargetError(AutoresearchError):
    """Raised when the target file or notebook is missing or has no benchmark cell."""


class ProposalError(AutoresearchError):
    """Raised when the model cannot be asked: no model configured, bad key, no server."""


class EvaluationError(AutoresearchError):
    """Raised when the evaluation machinery itself fails (not a candidate's crash)."""


class BaselineError(EvaluationError):
    """Raised when the unchanged cell crashes or prints no primary metric.

    Attributes:
        status: the baseline's run status (``crash``, ``timeout``, ``invalid``).
        stderr_tail: the last lines the baseline wrote to stderr.
    """

    def __init__(self, message: str, *, status: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.stderr_tail = stderr_tail

    @classmethod
    def from_outcome(cls, status: str, reason: str, stderr_tail: str) -> BaselineError:
        last = _last_line(stderr_tail)
        detail = f": {last}" if last else ""
        return cls(
            f"the baseline (the unchanged cell) {reason}{detail}; "
            "fix the cell so it runs and prints its METRIC lines, then start again",
            status=status,
            stderr_tail=stderr_tail,
        )


class JournalError(AutoresearchError):
    """Raised when a session folder or log cannot be read or written."""


class ExportError(AutoresearchError):
    """Raised when the winning cell cannot be exported to the requested place."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
