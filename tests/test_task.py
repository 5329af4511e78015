"""The task: objective, wording, thresholds, durations and limits."""

from __future__ import annotations

import pytest

from jupyter_autoresearch import Limits, MetricParseError, OptionsError, TaskSpec, Threshold, parse_constraint
from jupyter_autoresearch.protocol._task import parse_duration


def test_wording_is_defined_once_on_the_task() -> None:
    task = TaskSpec(metric="revenue", constraints=(parse_constraint("spend<=30"),))
    assert (task.verb, task.direction_text, task.title) == ("maximize", "higher is better", "Maximize revenue")
    assert task.goal == "maximize revenue subject to spend <= 30"
    lower = TaskSpec(metric="ms", direction="lower", objective="Faster.\nMore text.")
    assert (lower.verb, lower.direction_text, lower.title) == ("minimize", "lower is better", "Faster.")
    assert lower.goal == "minimize ms subject to no constraints"
    assert TaskSpec().title == "Infer the objective"


def test_better_and_violations() -> None:
    task = TaskSpec(metric="x", direction="lower", constraints=(parse_constraint("a / b <= 1"),))
    assert task.better(1, 3) == 2 and task.better(3, 1) == -2
    assert task.violations({"a": 1, "b": 2}) == []
    assert task.violations({"a": 3, "b": 1}) == ["a / b <= 1 is violated (a / b = 3)"]
    assert task.with_constraints(["b > 0"]).constraint_texts == ("b > 0",)


def test_task_checks_its_values() -> None:
    with pytest.raises(MetricParseError):
        TaskSpec(metric="__class__")
    with pytest.raises(OptionsError, match="direction 'up' must be 'higher' or 'lower'"):
        TaskSpec(metric="x", direction="up")  # type: ignore[arg-type]


def test_thresholds() -> None:
    assert Threshold.parse("0.5") == Threshold(0.5) and Threshold.parse("2%") == Threshold(2, percent=True)
    assert Threshold(2, percent=True).amount(-50) == 1 and Threshold(0.5).amount(100) == 0.5
    assert str(Threshold(2, percent=True)) == "2%" and str(Threshold()) == "0"
    for bad in ("-1", "x", "nan", "inf%"):
        with pytest.raises(OptionsError, match="is not a non-negative number"):
            Threshold.parse(bad)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_limits_check_their_ranges() -> None:
    assert Limits().plateau == 20 and Limits().max_model_failures == 3
    for bad, message in (
        ({"max_iterations": -1}, "--max-iterations -1 must be 0 or more"),
        ({"repeats": 0}, "--repeats 0 must be 1 or more"),
        ({"max_model_failures": 0}, "--max-model-failures 0 must be 1 or more"),
        ({"max_cost": 0}, "--max-cost 0 must be positive"),
    ):
        with pytest.raises(OptionsError, match=message):
            Limits(**bad)  # type: ignore[arg-type]
