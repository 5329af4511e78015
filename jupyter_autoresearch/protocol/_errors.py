"""Errors raised by jupyter-autoresearch.

Every error the library raises derives from :class:`AutoresearchError`, so a caller
can catch one class. Each carries the data it is about (the run, the metric, the
constraint, the model, the stderr tail) and builds its message, which states the value,
the rule broken and the next step. Adapters show ``str(err)`` as a single line and
never a traceback; in IPython an error renders as that one line too.

::

    AutoresearchError
    ├── OptionsError          a command-line, magic, config or API option is malformed
    ├── SessionError          the session's state forbids it (already running, read-only, unknown)
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

from collections.abc import Iterable

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
    "SessionError",
    "TargetError",
]


class AutoresearchError(Exception):
    """Base class of every error raised by jupyter-autoresearch."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: a notebook cell fails with one line.
        return [f"{type(self).__name__}: {self}"]


class OptionsError(AutoresearchError, ValueError):
    """Raised when an option of the CLI, the magic, the config or the Python API is malformed.

    Attributes:
        option: the option's name (``max_iterations``), when one is at fault.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class SessionError(AutoresearchError):
    """Raised when the session's state forbids the request: it is already running, it was
    loaded read-only, or there is no such session.

    Attributes:
        session: the session's name, when known.
    """

    def __init__(self, message: str, *, session: str | None = None) -> None:
        super().__init__(message)
        self.session = session

    @classmethod
    def already_running(cls, session: str, *, hint: str = "") -> SessionError:
        return cls(f"session {session} is already running{'; ' + hint if hint else ''}", session=session)

    @classmethod
    def read_only(cls, session: str) -> SessionError:
        return cls(
            f"session {session} was loaded read-only and cannot run; create it with create_session() "
            "or jupyter-autoresearch run to continue it",
            session=session,
        )


class MetricParseError(AutoresearchError, ValueError):
    """Raised when a metric name or value breaks the METRIC protocol.

    Attributes:
        metric: the metric's name, when known.
        value: the refused text, when known.
    """

    def __init__(self, message: str, *, metric: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.metric = metric
        self.value = value


#: How a constraint is written, appended to every "cannot parse" message.
CONSTRAINT_FORM = "write it as '<expression> <op> <number>' with op one of <=, <, >=, >, =="


class ConstraintError(AutoresearchError, ValueError):
    """Raised when a constraint cannot be parsed or names a metric nobody prints.

    Attributes:
        constraint: the constraint's text.
        names: the metric names at fault (unknown ones), if any.
        known: the metric names that were available, if that is the problem.
    """

    def __init__(self, message: str, *, constraint: str, names: Iterable[str] = (), known: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.constraint = constraint
        self.names = tuple(names)
        self.known = tuple(known)

    @classmethod
    def malformed(cls, text: str, problem: str, *, form: bool = True) -> ConstraintError:
        """``text`` is not ``<expression> <op> <number>``; ``problem`` says how."""
        shown = f"constraint {text!r}" if text.strip() else "constraint"
        return cls(f"{shown} {problem}" + (f": {CONSTRAINT_FORM}" if form else ""), constraint=text)

    @classmethod
    def unknown_metrics(
        cls, constraint: str, names: Iterable[str], known: Iterable[str], *, by_baseline: bool = False
    ) -> ConstraintError:
        """``constraint`` names metrics that no run (or the baseline) reported."""
        names, known = sorted(names), list(known)
        if by_baseline:
            message = (
                f"constraint {constraint} names {', '.join(names)}, which the baseline never printed "
                f"(it printed {', '.join(known)}); fix the name or print it"
            )
        else:
            message = (
                f"constraint {constraint} names {', '.join(names)}, which no run reported "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(message, constraint=constraint, names=names, known=known)


class TargetError(AutoresearchError):
    """Raised when the target file or notebook is missing or has no benchmark cell."""


class ProposalError(AutoresearchError):
    """Raised when the model cannot be asked, or its answer failed.

    Attributes:
        model: the model string.
        fatal: True when asking again cannot help (no model configured, a refused key, an
            unknown model or provider): the session stops. False for a failure that costs
            one iteration (a server error after retries, a reply cut off mid-stream).
    """

    def __init__(self, message: str, *, model: str | None = None, fatal: bool = True) -> None:
        super().__init__(message)
        self.model = model
        self.fatal = fatal

    @classmethod
    def no_model(cls) -> ProposalError:
        return cls(
            "no model configured: pass --model (e.g. openai/gpt-5-mini), set AUTORESEARCH_MODEL, "
            "or replay a recording with --model replay:PATH"
        )

    @classmethod
    def cannot_infer(cls, model: str) -> ProposalError:
        return cls(f"{model} cannot infer the objective; pass --maximize METRIC or --minimize METRIC", model=model)


class EvaluationError(AutoresearchError):
    """Raised when the evaluation machinery itself fails (not a candidate's crash).

    Attributes:
        run: the run being evaluated, when known.
    """

    def __init__(self, message: str, *, run: int | None = None) -> None:
        super().__init__(message)
        self.run = run

    @classmethod
    def cannot_check(cls, evaluator: str) -> EvaluationError:
        """An evaluator without :meth:`Evaluator.check` was given correctness checks."""
        return cls(
            f"{evaluator} cannot run correctness checks (--check, --check-cell): implement its check(), "
            "or leave the checks out"
        )


class BaselineError(EvaluationError):
    """Raised when the unchanged cell crashes or prints no primary metric.

    Attributes:
        status: the baseline's run status (``crash``, ``timeout``, ``invalid``).
        metric: the primary metric it failed to print, for ``invalid``.
        stderr_tail: the last lines the baseline wrote to stderr.
    """

    def __init__(self, message: str, *, status: str, stderr_tail: str = "", metric: str | None = None) -> None:
        super().__init__(message, run=1)
        self.status = status
        self.metric = metric
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

    @classmethod
    def missing_metric(
        cls, metric: str, printed: Iterable[str], problems: Iterable[str], stderr_tail: str
    ) -> BaselineError:
        shown = ", ".join(printed) or "no METRIC lines"
        problem = "; ".join(problems)
        return cls(
            f"the baseline printed no METRIC {metric} (it printed {shown}{'; ' + problem if problem else ''}); "
            f'print it with print(f"METRIC {metric}={{value}}") or jupyter_autoresearch.metric()',
            status="invalid",
            stderr_tail=stderr_tail,
            metric=metric,
        )


class JournalError(AutoresearchError):
    """Raised when a session folder or log cannot be read or written."""


class ExportError(AutoresearchError):
    """Raised when the winning cell cannot be exported to the requested place."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
