"""Run records and config headers, and their log lines (ours and pi-autoresearch's)."""

from __future__ import annotations

import json

from jupyter_autoresearch import RunRecord
from jupyter_autoresearch.protocol._failure import ModelFailure
from jupyter_autoresearch.protocol._records import SegmentConfig, code_id


def test_a_record_round_trips_through_its_log_line() -> None:
    record = RunRecord(
        run=3,
        segment=1,
        status="infeasible",
        metric=110.5,
        metrics={"revenue": 110.5, "spend": 31.0},
        code="plan()\n",
        hypothesis="exact solver",
        description="exact solver",
        parent=2,
        error="spend <= 30 is violated (spend = 31)",
        constraints=("spend <= 30",),
        repeats=(110.5,),
        asi={"hypothesis": "exact solver", "notes": ["prefer numpy"]},
        commit=code_id("plan()\n"),
    )
    line = json.loads(json.dumps(record.to_json()))
    assert line["commit"] == code_id("plan()\n") and line["description"] == "exact solver"
    assert RunRecord.from_json(line) == record
    assert record.is_baseline is False and RunRecord(run=1, segment=0, status="keep", metric=1).is_baseline


def test_a_pi_autoresearch_line_merges_the_primary_metric() -> None:
    line = {"run": 2, "commit": "abc1234", "metric": 9.5, "metrics": {"ms": 3}, "status": "keep", "description": "d"}
    record = RunRecord.from_json(line, metric_name="total_ms")
    assert record.metrics == {"total_ms": 9.5, "ms": 3} and record.commit == "abc1234"


def test_config_headers_use_pi_autoresearch_field_names() -> None:
    config = SegmentConfig(name="n", metric_name="x", direction="lower", constraints=("a <= 1",), segment=2)
    line = config.to_json()
    assert line["type"] == "config" and line["metricName"] == "x" and line["bestDirection"] == "lower"
    assert SegmentConfig.from_json(line, segment=0) == config


def test_a_model_failure_line_is_not_a_run() -> None:
    line = ModelFailure(segment=1, iteration=4, reason="cut off", model="openai/x", timestamp=5).to_json()
    assert line == {"type": "model_failure", "segment": 1, "iteration": 4, "reason": "cut off", "model": "openai/x",
                    "timestamp": 5}  # fmt: skip
    assert "run" not in line  # pi-autoresearch reads only lines with a numeric run (and config headers)
