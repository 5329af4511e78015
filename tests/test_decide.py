"""The pure rules of the loop: keep or discard, the confidence, when to stop."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_autoresearch import Limits, Outcome, RunRecord, TaskSpec, Threshold, parse_constraint
from jupyter_autoresearch.engine._decide import (
    best_of,
    best_satisfying,
    confidence,
    judge,
    mad,
    median_metrics,
    runs_without_keep,
    segment_winner,
    stop_rule,
)

TASK = TaskSpec(metric="x", constraints=(parse_constraint("cost <= 10"),))


def ok(x: float | None = None, **metrics: float) -> Outcome:
    values = {"cost": 1.0, **metrics}
    if x is not None:
        values["x"] = x
    return Outcome(kind="ok", metrics=values)


def run(number: int, status: str, metric: float | None, repeats: tuple[float, ...] = ()) -> RunRecord:
    return RunRecord(run=number, segment=0, status=status, metric=metric, repeats=repeats)  # type: ignore[arg-type]


def test_mad_and_medians() -> None:
    assert mad([]) == 0 and mad([5]) == 0
    assert mad([1, 2, 3, 4, 100]) == 1
    assert median_metrics([ok(1, y=5), ok(3), ok(2, y=7)]) == {"x": 2, "cost": 1, "y": 6}


@pytest.mark.parametrize(
    "outcomes, best, threshold, status, error",
    [
        ([ok(2)], None, None, "keep", None),  # nothing to beat
        ([ok(2)], run(1, "keep", 1), None, "keep", None),
        ([ok(1)], run(1, "keep", 1), None, "discard", "x 1 vs best 1: not better"),  # equal is not better
        ([ok(0.5)], run(1, "keep", 1), None, "discard", "x 0.5 vs best 1: not better"),
        ([ok(1.5)], run(1, "keep", 1), Threshold(1), "discard", "x 1.5 vs best 1: below --min-improvement 1"),
        ([ok(1.5)], run(1, "keep", 1), Threshold(40, True), "keep", None),
        ([ok(50, cost=50)], run(1, "keep", 1), None, "infeasible", "cost <= 10 is violated (cost = 50)"),
        ([ok()], run(1, "keep", 1), None, "invalid", "the cell printed no METRIC x=<number> line"),
        ([Outcome(kind="crash", error="ValueError: no")], None, None, "crash", "ValueError: no"),
        ([Outcome(kind="timeout", error="timed out after 5s")], None, None, "timeout", "timed out after 5s"),
        ([Outcome(kind="ok", metrics={"x": 9}, touched=("data.csv",))], None, None, "violation",
         "changed off-limits file data.csv (restored)"),
    ],
)  # fmt: skip
def test_judge(outcomes: list[Outcome], best: RunRecord | None, threshold: Any, status: str, error: str | None) -> None:
    verdict = judge(TASK, outcomes, best, threshold)
    assert (verdict.status, verdict.error) == (status, error)


def test_judge_with_repeats_takes_the_median_and_the_noise() -> None:
    best = run(1, "keep", 10, repeats=(10, 8, 12))
    lucky = judge(TASK, [ok(10), ok(14), ok(7)], best)
    assert lucky.metric == 10 and lucky.repeats == (10, 14, 7) and lucky.status == "discard"
    noisy = judge(TASK, [ok(11), ok(9), ok(13)], best)
    assert noisy.status == "discard" and noisy.error == "x 11 vs best 10: within noise (±4 over 3 repeats)"
    clear = judge(TASK, [ok(20), ok(20), ok(20)], best)
    assert clear.status == "keep"


def test_judge_minimizes() -> None:
    task = TaskSpec(metric="x", direction="lower")
    assert judge(task, [ok(0.5)], run(1, "keep", 1)).status == "keep"
    assert judge(task, [ok(2)], run(1, "keep", 1)).status == "discard"


def test_confidence_is_the_best_against_the_baseline_in_mads() -> None:
    runs = [run(1, "keep", 10), run(2, "discard", 9), run(3, "keep", 12), run(4, "discard", 11)]
    assert confidence(runs, "higher") == pytest.approx(2 / 1)
    assert confidence(runs[:2], "higher") is None  # fewer than three values
    assert confidence([run(1, "keep", 5), run(2, "discard", 5), run(3, "discard", 5)], "higher") is None  # no spread


def test_runs_without_keep_count_the_tail_after_the_segment_baseline() -> None:
    assert runs_without_keep([]) == 0
    assert runs_without_keep([run(1, "discard", 1)]) == 0  # the baseline does not count
    assert runs_without_keep([run(1, "keep", 1), run(2, "keep", 2), run(3, "crash", None), run(4, "discard", 1)]) == 2


def test_the_stuck_loop_stop_counts_every_run_that_was_not_kept() -> None:
    # pi-autoresearch's stuck-loop stop, with our finer statuses: a checks_failed run is not a keep either.
    others = ["discard", "crash", "invalid", "infeasible", "checks_failed", "timeout", "violation"]
    tail = [run(i + 2, others[i % len(others)], None) for i in range(20)]
    assert stop(Limits(), segment_runs=[run(1, "keep", 1), *tail[:19]]) is None
    assert stop(Limits(), segment_runs=[run(1, "keep", 1), *tail])[0] == "plateau"  # type: ignore[index]


def stop(limits: Limits, **state: Any) -> tuple[str, str] | None:
    values: dict[str, Any] = {"iteration": 0, "segment_runs": [run(1, "keep", 1)], "spent_usd": 0.0, "elapsed_s": 0.0}
    return stop_rule(limits, **{**values, **state})


def test_stop_rules() -> None:
    assert stop(Limits()) is None
    assert stop(Limits(max_iterations=3), iteration=3) == ("max-iterations", "reached --max-iterations 3")
    assert stop(Limits(max_iterations=None), iteration=10**6) is None
    stuck = [run(1, "keep", 1)] + [run(i, "discard", 0) for i in range(2, 22)]
    assert stop(Limits(), segment_runs=stuck) == ("plateau", "20 runs in a row without improvement (--plateau 20)")
    assert stop(Limits(plateau=None), segment_runs=stuck) is None  # --plateau 0
    assert stop(Limits(plateau=21), segment_runs=stuck) is None
    assert stop(Limits(max_cost=0.5), spent_usd=0.6) == ("max-cost", "spent $0.6000 of --max-cost $0.5")
    assert stop(Limits(max_time=60), elapsed_s=61) == ("max-time", "ran 61s of --max-time 60s")
    assert stop(Limits(max_iterations=1, max_cost=0.5), iteration=1, spent_usd=1)[0] == "max-iterations"  # type: ignore[index]


def measured(number: int, segment: int, status: str, x: float | None, cost: float, code: str = "") -> RunRecord:
    metrics = {"cost": cost} if x is None else {"x": x, "cost": cost}
    return RunRecord(run=number, segment=segment, status=status, metric=x, metrics=metrics, code=code or f"c{number}")  # type: ignore[arg-type]


def test_the_best_that_meets_other_rules_is_judged_from_recorded_metrics() -> None:
    runs = [
        measured(1, 0, "keep", 5, cost=1),
        measured(2, 0, "discard", 4, cost=1),
        measured(3, 0, "infeasible", 9, cost=12),  # refused by cost <= 10, fine under cost <= 20
        measured(4, 0, "crash", None, cost=0),
        measured(5, 0, "keep", 8, cost=6),
        measured(6, 0, "checks_failed", 20, cost=1),  # never a best
    ]
    tight = TaskSpec(metric="x", constraints=(parse_constraint("cost <= 2"),))
    loose = TaskSpec(metric="x", constraints=(parse_constraint("cost <= 20"),))
    assert best_satisfying(runs, tight).run == 1  # whatever the status was in its own segment
    assert best_satisfying(runs, loose).run == 3
    assert best_satisfying(runs, TaskSpec(metric="x", constraints=(parse_constraint("cost <= 0.5"),))) is None
    lower = TaskSpec(metric="x", direction="lower", constraints=(parse_constraint("cost <= 2"),))
    assert best_satisfying(runs, lower).run == 2
    # pi's rule for reading one segment stays: the best kept run, first of equal.
    assert best_of(runs, "higher").run == 5


def test_a_segment_takes_a_better_run_from_elsewhere_once() -> None:
    loose = TaskSpec(metric="x", constraints=(parse_constraint("cost <= 5"),))
    runs = [measured(1, 0, "keep", 1, cost=1), measured(2, 0, "keep", 2, cost=3), measured(3, 1, "keep", 10, cost=1)]
    assert segment_winner(runs, 0, loose).run == 3  # better than segment 0's best, meets its rules
    again = [*runs, measured(4, 0, "keep", 9.5, cost=1, code="c3")]  # run 3 re-measured (a little noise)
    assert segment_winner(again, 0, loose) is None  # its code was measured in the segment: not again
    assert segment_winner(runs[:2], 0, loose) is None  # nothing elsewhere
    assert segment_winner(runs, 2, loose).run == 3  # a new segment takes the best that meets its rules


def test_reasons_keep_the_printed_precision() -> None:
    verdict = judge(TASK, [ok(109.8699)], run(1, "keep", 110.1627))
    assert verdict.error == "x 109.8699 vs best 110.1627: not better"


def test_a_paired_win_replaces_only_the_best_it_was_measured_beside() -> None:
    def kept(run: int, metric: float, beat: int | None = None) -> RunRecord:
        paired = {"incumbent": beat, "gain": 0.01} if beat is not None else None
        return RunRecord(run=run, segment=0, status="keep", metric=metric, paired=paired)

    # Run 3 was best; 5 and 6 were both measured beside it. 6 was decided first (kept by
    # pairing, below 3's lucky first measurement), then 5 was kept against 6, unpaired.
    runs = [kept(1, 0.5), kept(3, 0.80), kept(5, 0.85), kept(6, 0.79, beat=3)]
    assert best_of(runs, "higher").run == 5
    assert best_of(runs[:2] + runs[3:], "higher").run == 6  # alone, 6 replaces the best it beat
