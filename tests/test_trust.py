"""Outputs that must not change (--same-output), noise measured (--calibrate), and the best
measured again beside each challenger (--repeats)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import write_recording

import jupyter_autoresearch as ar
from jupyter_autoresearch import Calibrated
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.isolation._compare import first_difference


def test_first_difference_names_the_first_cell_that_differs() -> None:
    baseline = pd.DataFrame({"region": list("abcdefghijklmnopqrst"), "revenue": [1.5] * 20})
    changed = baseline.copy()
    changed.loc[17, "revenue"] = 1.25
    assert first_difference(changed, baseline) == "row 17, column revenue: 1.25 vs 1.5"
    close = baseline.assign(revenue=baseline["revenue"] * (1 + 1e-10))
    assert first_difference(close, baseline) is None  # within --rtol 1e-7
    assert first_difference(close, baseline, rtol=0) == "row 0, column revenue: 1.50000000015 vs 1.5"
    assert first_difference(baseline.iloc[:19], baseline) == "19 rows vs 20"
    assert first_difference(baseline[["revenue", "region"]], baseline) == (
        "columns ['revenue', 'region'] vs ['region', 'revenue']"
    )
    assert first_difference(baseline.astype({"revenue": "float32"}), baseline) == (
        "column revenue: dtype float32 vs float64"
    )
    assert first_difference(baseline.set_index("region"), baseline.set_index("region")) is None
    assert first_difference(baseline["revenue"], baseline) == "a Series vs a DataFrame"


def test_first_difference_of_arrays_and_plain_values() -> None:
    assert first_difference(np.arange(5.0), np.array([0, 1, 2, 3.5, 4])) == "element 3: 3.0 vs 3.5"
    assert first_difference(np.ones((2, 3)), np.ones((2, 3)) + 1e-9) is None
    assert first_difference(np.ones((2, 3)), np.zeros((3, 2))) == "shape (2, 3) vs (3, 2)"
    assert first_difference(np.float64(1.0), np.float64(1.0 + 1e-12)) is None  # numpy: within tolerance
    assert first_difference(1.0, 1.0 + 1e-12) == "1.0 vs 1.000000000001"  # other values: exactly
    assert first_difference({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3]}) == "key 'b': item 1: 2 vs 3"
    assert first_difference("same", "same") is None and first_difference((1,), [1]) == "a tuple vs a list"


FRAME = """\
import numpy as np
import pandas as pd

revenue = np.full(20, 1.5){change}
result = pd.DataFrame({{"region": [f"r{{i}}" for i in range(20)], "revenue": revenue}})
print("METRIC steps={steps}")
"""


def frame_cell(steps: int, change: str = "") -> str:
    return FRAME.format(steps=steps, change=change)


def test_same_output_refuses_a_changed_frame_and_passes_an_equal_one(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(frame_cell(100))
    recording = write_recording(
        tmp_path / "rec.jsonl",
        [
            ("fewer steps, same frame up to rounding", frame_cell(80, "\nrevenue = revenue * (1 + 1e-12)")),
            ("fewer steps, one value changed", frame_cell(60, "\nrevenue[17] = 1.25")),
            ("no result at all", 'print("METRIC steps=10")'),
            ("float32 is faster", frame_cell(50, "\nrevenue = revenue.astype('float32')")),
        ],
        metric="steps",
        direction="lower",
    )
    session = ar.create_session(
        tmp_path / "bench.py", minimize="steps", same_output=["result"], model=f"replay:{recording}", timeout=20
    )
    session.run()
    _, close, changed, missing, narrowed = session.runs
    assert [r.status for r in session.runs] == ["keep", "keep", "infeasible", "invalid", "infeasible"]
    assert changed.error == "output result differs from the baseline: row 17, column revenue: 1.25 vs 1.5"
    assert missing.error == "the cell no longer defines result (--same-output compares it)"
    assert narrowed.error == "output result differs from the baseline: column revenue: dtype float32 vs float64"
    assert session.best is close


def test_same_output_tolerances_come_from_rtol_and_atol(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(frame_cell(100))
    recording = write_recording(
        tmp_path / "rec.jsonl", [("rounder", frame_cell(80, "\nrevenue = revenue + 1e-6"))], metric="steps"
    )
    strict = ar.create_session(
        tmp_path / "bench.py", minimize="steps", same_output="result", model=f"replay:{recording}", timeout=20
    )
    strict.run()
    assert strict.runs[1].status == "infeasible" and "row 0, column revenue" in str(strict.runs[1].error)
    loose = ar.create_session(
        tmp_path / "bench.py",
        minimize="steps",
        same_output="result",
        atol=1e-5,
        model=f"replay:{recording}",
        session="loose",
        timeout=20,
    )
    loose.run()
    assert loose.runs[1].status == "keep"


def test_a_baseline_without_the_output_stops_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bench.py").write_text('print("METRIC steps=3")\n')
    recording = write_recording(tmp_path / "rec.jsonl", [], metric="steps")
    argv = ["run", str(tmp_path / "bench.py"), "--minimize", "steps", "--same-output", "result"]
    assert main([*argv, "--model", f"replay:{recording}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "jupyter-autoresearch: error: the baseline (the unchanged cell) does not define result, which "
        "--same-output names; define it in the cell, or name a variable the cell defines"
    )


def counter_cell(values: list[float], file: str) -> str:
    """Prints the next of ``values`` each time it runs; ``file`` keeps the count."""
    return (
        "import os\n"
        f"values = {values!r}\n"
        f"n = int(open({file!r}).read()) if os.path.exists({file!r}) else 0\n"
        f"open({file!r}, 'w').write(str(n + 1))\n"
        "print(f'METRIC x={values[min(n, len(values) - 1)]}')\n"
    )


def test_calibrate_sets_the_keep_threshold_from_the_measured_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The baseline measures 10, then the calibration runs 12, 8, 11, 9, 10: median 10, MAD 1.
    (tmp_path / "bench.py").write_text(counter_cell([10, 12, 8, 11, 9, 10], "base.txt"))
    recording = write_recording(
        tmp_path / "rec.jsonl", [("a little better", "print('METRIC x=13')"), ("better", "print('METRIC x=15')")]
    )
    argv = ["run", str(tmp_path / "bench.py"), "--maximize", "x", "--calibrate", "5", "--model", f"replay:{recording}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    threshold = 2 * 2**0.5 * 1.4826  # twice the spread of a difference of two runs: 2 x sqrt(2) x 1.4826 x MAD
    assert "  calibrating: 5 runs of the unchanged cell" in err
    assert "  x: median 10, MAD 1 over 5 runs" in err
    assert f"  keep threshold: x must improve by more than {threshold:.4g} (from the spread)" in err
    session = ar.load_session(tmp_path / ".autoresearch" / "bench")
    small, large = session.runs[1:]
    assert (
        small.status == "discard"
        and small.error == f"x 13 vs best 10: below the threshold {threshold:g} measured by --calibrate"
    )
    assert large.status == "keep"
    logged = [
        json.loads(line) for line in (tmp_path / ".autoresearch" / "bench" / "log.jsonl").read_text().splitlines()
    ]
    [calibration] = [line for line in logged if line.get("type") == "calibration"]
    assert calibration["spreads"]["x"] == {"median": 10, "mad": 1, "values": [12, 8, 11, 9, 10]}
    assert calibration["threshold"] == pytest.approx(threshold) and calibration["runs"] == 5


def test_min_improvement_wins_over_the_calibrated_threshold(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(counter_cell([10, 12, 8, 11, 9, 10], "base.txt"))
    recording = write_recording(tmp_path / "rec.jsonl", [("a little better", "print('METRIC x=13')")])
    events: list[Any] = []
    session = ar.create_session(
        tmp_path / "bench.py", maximize="x", calibrate=5, min_improvement="0.5", model=f"replay:{recording}"
    )
    session.subscribe(events.append)
    session.run()
    [calibrated] = [e for e in events if isinstance(e, Calibrated)]
    assert calibrated.threshold is None and calibrated.spreads["x"].mad == 1
    assert session.runs[1].status == "keep" and session.limits.min_improvement == ar.Threshold(0.5)


def test_a_lucky_best_is_measured_again_and_then_beaten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bench.py").write_text("print('METRIC x=10')\n")
    recording = write_recording(
        tmp_path / "rec.jsonl",
        [
            # 100 in its first three measurements (a lucky streak), 12 ever after.
            ("lucky", counter_cell([100, 100, 100, 12], "lucky.txt")),
            ("really better than 12", "print('METRIC x=20')"),
        ],
    )
    argv = ["run", str(tmp_path / "bench.py"), "--maximize", "x", "--repeats", "3", "--model", f"replay:{recording}"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    session = ar.load_session(tmp_path / ".autoresearch" / "bench")
    _, lucky, better = session.runs
    assert lucky.status == "keep" and lucky.metric == 100
    # Unpaired, 20 against the recorded 100 would have been discarded: the search froze.
    assert better.status == "keep" and better.metric == 20
    assert better.paired is not None and better.paired["incumbent"] == 2
    assert list(better.paired["incumbent_repeats"]) == [12, 12, 12] and better.paired["gain"] == 8
    assert session.best_run is not None and session.best_run.run == 3
    assert "        beat run 2 measured again (median 12 over 3 rounds): gain 8 > margin 0" in err


def test_a_resumed_session_measures_the_reference_again_and_keeps_hiding(tmp_path: Path) -> None:
    (tmp_path / "check.py").write_text("print(f'METRIC holdout_steps={len(result) * 10}')\n")
    (tmp_path / "bench.py").write_text(frame_cell(100))
    options: dict[str, Any] = {
        "minimize": "steps",
        "same_output": ["result"],
        "holdout": "check.py",
        "holdout_inputs": ["result"],
        "timeout": 20,
    }
    first = write_recording(tmp_path / "first.jsonl", [("fewer steps", frame_cell(90))], metric="steps")
    ar.create_session(tmp_path / "bench.py", model=f"replay:{first}", hidden=["secret"], **options).run()
    # The replay serves a segment's proposals after those the session already logged.
    proposals = [("fewer, changed", frame_cell(70, "\nrevenue[3] = 2.0")), ("fewer, same", frame_cell(80))]
    second = write_recording(tmp_path / "second.jsonl", [("fewer steps", frame_cell(90)), *proposals], metric="steps")
    # Two proposals at a time: both are checked together, each against the baseline's frame.
    resumed = ar.create_session(tmp_path / "bench.py", model=f"replay:{second}", parallel=2, **options)
    resumed.run()
    assert [r.status for r in resumed.runs] == ["keep", "keep", "infeasible", "keep"]
    assert resumed.runs[2].error == "output result differs from the baseline: row 3, column revenue: 2.0 vs 1.5"
    assert [r.metrics["holdout_steps"] for r in resumed.runs] == [200, 200, 200, 200]
    assert resumed.task.hidden == ("secret", "holdout_steps")  # hidden before stays hidden


def test_a_refusal_that_names_the_holdout_reads_as_a_hidden_check_to_the_model() -> None:
    from jupyter_autoresearch.engine._decide import judge
    from jupyter_autoresearch.engine._trust import export_refusal
    from jupyter_autoresearch.isolation._holdout import HoldoutSpec

    spec = HoldoutSpec(holdout="print(1)", inputs=("chosen",), same_output=("plan",))
    outcome = ar.Outcome(kind="ok", metrics={"x": 1.0}, exported=b"-", missing=("chosen",))
    refused = export_refusal(outcome, spec)
    verdict = judge(ar.TaskSpec(metric="x"), [outcome], None, refused=refused)
    assert verdict.status == "invalid" and verdict.error == "the cell no longer defines chosen, which the holdout reads"
    assert verdict.model_error == "the cell no longer defines chosen, which a hidden check reads"
    same = export_refusal(ar.Outcome(kind="ok", exported=b"-", missing=("plan",)), spec)
    assert same == ("invalid", "the cell no longer defines plan (--same-output compares it)", None)
