"""Noise measured, not assumed: ``--calibrate K`` runs the unchanged cell K times before
the loop (an A/A test), reports each metric's spread, logs it, and sets the keep
threshold from the primary metric's spread unless ``--min-improvement`` was given."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..protocol._calibration import Calibration, Spread, noise_threshold
from ..protocol._errors import BaselineError
from ..protocol._task import Threshold
from ._events import Calibrated, Calibrating
from ._recorder import now_ms

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["calibrate"]


def calibrate(loop: Loop) -> Calibration:
    """Measure the unchanged cell ``--calibrate`` times; returns what was logged.

    Raises:
        BaselineError: a calibration run failed (the cell is not repeatable as it is).
    """
    session = loop.session
    runs, metric = session.limits.calibrate, session.task.metric
    assert metric is not None
    session._emit(Calibrating(session.name, runs))
    values: dict[str, list[float]] = {}
    for index in range(1, runs + 1):
        loop.check_stop()
        [outcome] = loop.evaluator.evaluate([session.code])
        if outcome.kind != "ok":
            raise BaselineError.from_outcome(
                outcome.kind,
                f"failed in calibration run {index} of {runs} ({outcome.error or outcome.kind})",
                outcome.stderr_tail,
            )
        for name, value in outcome.metrics.items():
            values.setdefault(name, []).append(value)
    spreads = {name: Spread.of(found) for name, found in values.items()}
    threshold = None
    if not session.min_improvement_given and metric in spreads:
        amount = noise_threshold(spreads[metric], session.limits.repeats)
        threshold = Threshold(amount, calibrated=True)
        session.limits = replace(session.limits, min_improvement=threshold)
    calibration = Calibration(
        segment=session.segment,
        runs=runs,
        spreads=spreads,
        threshold=threshold.value if threshold else None,
        metric=metric,
        timestamp=now_ms(),
    )
    loop.journal.append_calibration(calibration)
    session._emit(Calibrated(session.name, metric, spreads, threshold))
    return calibration
