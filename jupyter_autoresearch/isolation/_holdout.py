"""The holdout and the ``--same-output`` comparison after each candidate, in a warm worker
of their own.

A candidate's worker sends back the variables they need, cloudpickled, as bytes it
never unpickles; the engine hands those bytes on, still pickled, to this second worker,
where a forked child unpickles them (with the baseline's, for ``--same-output``),
compares the outputs and runs the holdout (``--holdout``) on the named inputs. The
holdout's METRIC lines are the run's hidden metrics. The holdout's code and the files it
reads stay out of the candidate's worker: only this one reads them.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..protocol._errors import EvaluationError
from ..protocol._settings import EvaluationSettings
from ._evaluate import ForkEvaluator, WorkerSetup, imported_modules

__all__ = ["HoldoutResult", "HoldoutSpec", "HoldoutWorker"]

_RUN = "__autoresearch_checks__['run'](globals())"


@dataclass(frozen=True)
class HoldoutSpec:
    """What to check after each candidate.

    Attributes:
        holdout: the holdout's code, or None.
        holdout_name: how the holdout is named in tracebacks and messages (its file, or
            ``cell N``).
        inputs: the candidate's variables the holdout reads.
        same_output: variables whose value must stay the baseline's.
        rtol: relative tolerance of the comparison.
        atol: absolute tolerance of the comparison.
    """

    holdout: str | None = None
    holdout_name: str = "<holdout>"
    inputs: tuple[str, ...] = ()
    same_output: tuple[str, ...] = ()
    rtol: float = 1e-7
    atol: float = 0.0

    @property
    def exports(self) -> tuple[str, ...]:
        """The variables each candidate sends back for these checks."""
        return tuple(dict.fromkeys((*self.same_output, *self.inputs)))


@dataclass(frozen=True)
class HoldoutResult:
    """What the checks found for one candidate.

    Attributes:
        metrics: the holdout's METRIC values (hidden metrics).
        problems: METRIC lines of the holdout that were refused.
        differences: for each output that is not the baseline's, its first difference.
        error: why the checks failed (the holdout crashed or timed out), when they did.
        touched: off-limits files the checking run changed (restored).
        stderr_tail: what the holdout wrote to stderr, for the user.
    """

    metrics: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    differences: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    touched: tuple[str, ...] = ()
    stderr_tail: str = ""


class HoldoutWorker:
    """Runs a :class:`HoldoutSpec` after each candidate, in a worker of its own.

    Args:
        spec: what to check.
        settings: the timeout, memory limit and output cap of each checking run.
    """

    def __init__(self, spec: HoldoutSpec, settings: EvaluationSettings | None = None) -> None:
        self.spec = spec
        self.settings = settings or EvaluationSettings()
        self._evaluator: ForkEvaluator | None = None
        self._reference: bytes | None = None
        #: Where the checking worker's notices go (the sandbox is off, it was replaced).
        self.on_notice: Callable[[str], None] | None = None

    def start(self, setup: WorkerSetup) -> None:
        """Start the checking worker from ``setup`` (the state the holdout starts from).

        Raises:
            EvaluationError: the setup cells, or the holdout's compilation, failed.
        """
        self.close()
        settings = {
            "holdout": self.spec.holdout,
            "holdout_name": self.spec.holdout_name,
            "inputs": list(self.spec.inputs),
            "same_output": list(self.spec.same_output),
            "rtol": self.spec.rtol,
            "atol": self.spec.atol,
        }
        source = Path(__file__).with_name("_compare.py").read_text(encoding="utf-8")
        driver = (
            "__autoresearch_checks__ = {'__name__': 'autoresearch_checks'}\n"
            f"exec(compile({source!r}, 'autoresearch-checks', 'exec'), __autoresearch_checks__)\n"
            f"__autoresearch_checks__['configure']({settings!r})\n"
        )
        needed = ["cloudpickle", *(("numpy", "pandas") if self.spec.same_output else ())]
        needed += imported_modules(self.spec.holdout or "")
        self._evaluator = ForkEvaluator(self.settings)
        self._evaluator.on_notice = self.on_notice
        self._evaluator.start(
            replace(
                setup,
                setup_code=(*setup.setup_code, driver),
                preimport=tuple(dict.fromkeys((*setup.preimport, *needed))),
                hidden=(),  # the holdout reads what candidates must not
            )
        )

    def reference(self, exported: bytes | None) -> None:
        """Keep the baseline's exported variables (pickled) to compare candidates with."""
        self._reference = exported

    def check(self, exported: Sequence[bytes | None]) -> list[HoldoutResult]:
        """Check candidates by the variables they sent back (None: none were asked for),
        together; results in order."""
        if self._evaluator is None:
            raise EvaluationError("the holdout worker is not started: call start() first")
        nothing = pickle.dumps({})
        inputs = [pickle.dumps((data or nothing, self._reference)) for data in exported]
        outcomes = self._evaluator.evaluate([_RUN] * len(inputs), inputs=inputs)
        results = []
        for outcome in outcomes:
            report: Mapping[str, Any] = outcome.report or {}
            differences = report.get("differences") if isinstance(report.get("differences"), dict) else {}
            error = None
            if outcome.kind != "ok":
                error = f"{self.spec.holdout_name} failed: {outcome.error or outcome.kind}"
            elif report.get("error"):
                error = str(report["error"])
            unset = [str(n) for n in report.get("unset") or ()]
            if unset:
                error = f"the baseline does not define {', '.join(unset)}, which --same-output compares"
            results.append(
                HoldoutResult(
                    metrics=dict(outcome.metrics),
                    problems=outcome.problems,
                    differences={str(k): str(v) for k, v in (differences or {}).items()},
                    error=error,
                    touched=outcome.touched,
                    stderr_tail=outcome.stderr_tail,
                )
            )
        return results

    def cancel(self) -> None:
        if self._evaluator is not None:
            self._evaluator.cancel()

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None
