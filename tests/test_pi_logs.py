"""pi-autoresearch logs read exactly as pi-autoresearch 1.6 reads them, and ours readable by pi.

Every expected value below comes from pi's own rules applied by hand to the fixture
(``extensions/pi-autoresearch/jsonl.ts`` for reading, ``computeConfidence`` and the
compaction summary's ``bestRun`` in ``index.ts``/``compaction.ts``, ``paths.ts`` for
the file), as the comment next to it works out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import FILES, metric_cell, write_recording

from jupyter_autoresearch import Decision, JournalError, RunRecord, create_session, load_session
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.engine._decide import best_of, confidence
from jupyter_autoresearch.journal._logfile import find_log, read_log
from jupyter_autoresearch.protocol._records import STATUSES
from jupyter_autoresearch.views._plot import metric_figure
from jupyter_autoresearch.views._status import STATUS_STYLES

MARKETING = FILES / "pi_autoresearch_marketing.jsonl"


def show(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["show", str(path)]) == 0
    return capsys.readouterr().out


def strict_json(line: str) -> Any:
    """Parse as JavaScript's JSON.parse does: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_published_marketing_log_best_is_the_first_of_equal_values(capsys: pytest.CaptureFixture[str]) -> None:
    session = load_session(MARKETING)
    # Segment 1 keeps runs 6, 7 and 9, all at 109.8699: pi names the first.
    assert session.best_run is not None and session.best_run.run == 6
    assert best_of(session.segment_runs(0), "higher").run == 2  # type: ignore[union-attr]
    out = show(MARKETING, capsys)
    assert "best of segment 0: run 2, revenue_millions=110.1627" in out
    assert "best of segment 1: run 6, revenue_millions=109.8699" in out
    # Run 7 compares with run 6, the first run of segment 1 (equal: no change shown), not run 1.
    run7 = next(line for line in out.splitlines() if line.lstrip().startswith("7 "))
    assert "109.8699" in run7 and "%" not in run7


def test_a_reinitialised_log_numbers_segments_by_its_headers() -> None:
    log = read_log(FILES / "pi_reinit.jsonl")
    assert log.foreign and not log.warnings
    assert [r.segment for r in log.runs] == [0] * 6 + [1] * 5
    assert [(c.segment, c.metric_name, c.direction, c.unit) for c in log.configs] == [
        (0, "total_ms", "lower", "ms"),
        (1, "throughput_ops", "higher", "ops"),
    ]
    # The metric name of a segment is its own header's.
    assert log.runs[0].metrics == {"total_ms": 101, "peak_mb": 48}
    assert log.runs[6].metrics == {"throughput_ops": 200, "peak_mb": 49}
    assert [r.status for r in log.runs][:6] == ["keep", "crash", "keep", "checks_failed", "discard", "keep"]
    assert log.runs[1].metric == 0 and log.runs[8].metric == 0  # crashes, logged at 0


def test_best_is_the_best_kept_metric_of_the_segment_in_its_direction() -> None:
    session = load_session(FILES / "pi_reinit.jsonl")
    assert session.task.metric == "throughput_ops" and session.task.direction == "higher"
    # Segment 1 (higher): kept 200, 260 (run 8), 260 (run 10): the first of the best.
    assert session.best_run is not None and session.best_run.run == 8
    # Segment 0 (lower): every kept run (175, 150) is slower than the baseline (101): pi names run 1,
    # where "the last kept run" named run 6.
    assert best_of(session.segment_runs(0), "lower").run == 1  # type: ignore[union-attr]
    # checks_failed (run 4, 90 ms, faster than all) is not kept, so never best.
    assert session.runs[3].status == "checks_failed" and not session.runs[3].kept


def test_confidence_leaves_crashes_at_zero_out_of_the_spread() -> None:
    log = read_log(FILES / "pi_reinit.jsonl")
    directions = {0: "lower", 1: "higher"}
    recomputed = []
    for index, run in enumerate(log.runs):
        segment = [r for r in log.runs[: index + 1] if r.segment == run.segment]
        recomputed.append(confidence(segment, directions[run.segment]))
    # What pi recorded with each run (its "confidence" field) is what our rule gives.
    assert recomputed == [r.confidence for r in log.runs]
    # Run 9 (a crash at 0): only 200 and 260 are above 0, fewer than three values: None.
    # Counting the 0 would give values 200, 260, 0: median 200, MAD 60, (260 - 200) / 60 = 1.0.
    assert recomputed[8] is None
    # Run 11: values 200, 260, 260, 230 (the crash left out): median 245, deviations
    # 45, 15, 15, 15, MAD 15; best kept 260 against baseline 200: 60 / 15 = 4.0.
    assert recomputed[10] == 4.0
    # Segment 0: the best kept metric (101, run 1) is the baseline itself: None throughout.
    assert recomputed[:6] == [None] * 6


def test_confidence_matches_what_pi_recorded_in_the_published_log() -> None:
    log = read_log(MARKETING)
    recomputed = [
        confidence([r for r in log.runs[: i + 1] if r.segment == run.segment], "higher")
        for i, run in enumerate(log.runs)
    ]
    # Run 3: 107.9158, 110.1627, 95.9106: median 107.9158, MAD 2.2469; (110.1627 - 107.9158) / 2.2469 = 1.
    assert recomputed == [r.confidence for r in log.runs] == [None, None, 1, 2, None, None, None, None, None]


def test_confidence_is_never_infinite() -> None:
    def run(n: int, metric: float) -> RunRecord:
        return RunRecord(run=n, segment=0, status="keep", metric=metric)

    # 0.1 and 0.2, then 1e308: MAD 0.1, (1e308 - 0.1) / 0.1 overflows: None, not Infinity.
    assert confidence([run(1, 0.1), run(2, 0.2), run(3, 1e308)], "higher") is None
    assert confidence([run(1, 0.1), run(2, 0.2), run(3, 0.4)], "higher") == pytest.approx(3.0)


def test_two_headers_before_the_first_run_open_one_segment() -> None:
    session = load_session(FILES / "pi_two_headers.jsonl")
    assert [r.segment for r in session.runs] == [0, 0, 0] and session.segment == 0
    # The second header (lower is better) is the one in force.
    assert session.task.direction == "lower"
    assert session.best_run is not None and session.best_run.run == 2  # 11 ms


def test_runs_saying_segment_2_under_one_header_are_in_its_segment() -> None:
    session = load_session(FILES / "pi_segment_field.jsonl")
    assert {r.segment for r in session.runs} == {0} and session.segment == 0
    assert session.best_run is not None and session.best_run.run == 17  # 790 kb, lower is better


def test_defaults_for_what_pi_does_not_write_and_lines_it_cannot_read() -> None:
    log = read_log(FILES / "pi_defaults.jsonl")
    assert [r.run for r in log.runs] == [1, 2, 5, 6]
    # No status: keep; a status pi does not know ("timeout"): keep; no metric: 0.
    assert [(r.status, r.metric) for r in log.runs] == [("keep", 0.92), ("discard", 0), ("keep", 0.88), ("keep", 0.81)]
    # No bestDirection: lower is better; no unit: "".
    assert (log.configs[0].direction, log.configs[0].unit) == ("lower", "")
    # Only numbers are metrics (pi's metricMapFrom drops true and "x").
    assert dict(log.runs[3].metrics) == {"loss": 0.81, "acc": 0.7}
    # A broken line, a line with Infinity and a JSON array are skipped with a warning each;
    # the hook entry is no run and no warning.
    assert [w.split(" ")[0] for w in log.warnings] == [
        "pi_defaults.jsonl:4",
        "pi_defaults.jsonl:6",
        "pi_defaults.jsonl:7",
    ]
    assert "skipped, as pi-autoresearch skips it" in log.warnings[0]
    session = load_session(FILES / "pi_defaults.jsonl")
    assert session.best_run is not None and session.best_run.run == 6
    # 0.92, 0.88, 0.81: median 0.88, MAD 0.04; |0.81 - 0.92| / 0.04 = 2.75.
    assert confidence(session.runs, "lower") == pytest.approx(2.75)


def test_runs_before_any_header_get_pi_defaults(tmp_path: Path) -> None:
    log_file = tmp_path / "autoresearch.jsonl"
    log_file.write_text('{"run":1,"metric":5}\n{"run":2,"metric":4}\n')
    session = load_session(tmp_path)
    assert session.task.metric == "metric" and session.task.direction == "lower"
    assert session.best_run is not None and session.best_run.run == 2


def test_a_metric_name_we_cannot_use_still_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "autoresearch.jsonl"
    log_file.write_text(
        '{"type":"config","name":"Latency","metricName":"p95 latência","bestDirection":"lower"}\n'
        '{"run":1,"metric":5,"status":"keep"}\n{"run":2,"metric":4,"status":"keep"}\n'
    )
    session = load_session(log_file)
    assert session.task.metric is None and session.best_run.run == 2  # type: ignore[union-attr]
    assert "best of segment 0: run 2, p95 latência=4" in show(log_file, capsys)


def test_pi_1_6_reads_dot_auto_when_both_layouts_are_there(tmp_path: Path) -> None:
    both = FILES / "pi_both_layouts"
    assert find_log(both) == both / ".auto" / "log.jsonl"
    session = load_session(both)
    assert session.name == "pi_both_layouts" and session.task.metric == "score" and len(session.runs) == 2
    # Only a legacy log: that one.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(both / "autoresearch.jsonl", legacy)
    assert find_log(legacy) == legacy / "autoresearch.jsonl"
    # Any .auto/ session file puts pi in the .auto/ layout: the legacy log is then ignored.
    (legacy / ".auto").mkdir()
    (legacy / ".auto" / "prompt.md").write_text("# rules\n")
    with pytest.raises(JournalError, match=r"autoresearch.jsonl is ignored because .auto/ exists"):
        find_log(legacy)


def test_working_dir_of_the_pi_config_is_followed(tmp_path: Path) -> None:
    (tmp_path / ".auto").mkdir()
    (tmp_path / ".auto" / "config.json").write_text('{"workingDir": "bench"}')
    shutil.copytree(FILES / "pi_both_layouts", tmp_path / "bench")
    assert find_log(tmp_path) == tmp_path / "bench" / ".auto" / "log.jsonl"


def test_show_compares_runs_with_the_first_run_of_their_segment(capsys: pytest.CaptureFixture[str]) -> None:
    out = show(FILES / "pi_reinit.jsonl", capsys)
    lines = {line.split()[0]: line for line in out.splitlines() if line[:4].strip().isdigit()}
    assert "+60 (+30.00%)" in lines["8"]  # 260 against run 7 (200), not against run 1 (101 ms)
    assert "+74 (+73.27%)" in lines["3"]  # 175 against run 1 (101)
    assert "checks_failed" in lines["4"]
    assert "-- segment 1: throughput_ops, higher is better; constraints none" in out
    assert "best of segment 0: run 1, total_ms=101" in out
    assert "best of segment 1: run 8, throughput_ops=260" in out


def test_checks_failed_is_counted_in_every_view() -> None:
    session = load_session(FILES / "pi_reinit.jsonl")
    frame = session.runs_dataframe()
    assert frame["status"].value_counts().to_dict() == {"keep": 6, "crash": 2, "discard": 2, "checks_failed": 1}
    assert set(STATUSES) <= set(STATUS_STYLES)
    html = session._repr_html_()
    assert STATUS_STYLES["checks_failed"].colour in html
    figure = metric_figure(session.runs, session.task.metric, session.task.direction)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "checks failed" in labels


def test_our_logs_are_readable_by_pi(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "bench.py").write_text("open('data.csv').read()\n" + metric_cell(0.1))
    proposals = [
        ("a bit better", metric_cell(0.2)),
        ("huge", metric_cell("1e308")),
        ("crash", "raise ValueError('no')"),
        ("over budget", metric_cell(9).replace("cost=1", "cost=50")),
        ("no metric", "print('METRIC cost=1')"),
        ("fullwidth digits", metric_cell("９９９")),
        ("touches data", "open('data.csv', 'w').write('')\n" + metric_cell(5)),
        ("after the new rules", metric_cell(2)),
    ]
    recording = write_recording(tmp_path / "rec.jsonl", proposals, segment_of=[0] * 7 + [1])
    session = create_session(
        tmp_path / "bench.py",
        maximize="x",
        constraints=["cost <= 10"],
        off_limits=["data.csv"],
        model=f"replay:{recording}",
        timeout=5,
    )

    def on_event(event: object) -> None:
        if isinstance(event, Decision) and event.record.run == 8:
            session.set_constraints(["cost <= 5"])

    session.subscribe(on_event)
    session.run()
    ours = [(r.run, r.segment, r.status) for r in session.runs]
    assert ours == [
        (1, 0, "keep"),
        (2, 0, "keep"),
        (3, 0, "keep"),  # 1e308
        (4, 0, "crash"),
        (5, 0, "infeasible"),
        (6, 0, "invalid"),
        (7, 0, "invalid"),  # METRIC x=９９９: not an ASCII number
        (8, 0, "violation"),
        (9, 1, "keep"),  # run 3 re-evaluated under the new rules
        (10, 1, "discard"),
    ]
    assert "９９９" in (session.runs[6].error or "") and "not a number" in (session.runs[6].error or "")
    # 0.1, 0.2, then 1e308: MAD 0.1, the confidence overflows; recorded as null, not Infinity.
    assert session.runs[2].confidence is None
    lines = (session.folder / "log.jsonl").read_text(encoding="utf-8").splitlines()
    parsed = [strict_json(line) for line in lines]  # every line is JSON as JavaScript reads it
    runs = [d for d in parsed if "run" in d]
    assert all("iterationTokens" not in d for d in runs)
    assert all(isinstance(d["commit"], str) and isinstance(d["status"], str) for d in runs)
    # pi's four statuses in "status" (pi reads any other value as keep); ours in "outcome".
    assert [d["status"] for d in runs] == [
        "keep", "keep", "keep", "crash", "discard", "crash", "crash", "crash", "keep", "discard",
    ]  # fmt: skip
    assert [d["outcome"] for d in runs] == [status for _, _, status in ours]
    # What pi makes of it: the same runs, segments (counted from our headers), metric and best.
    as_pi = read_log(session.folder, as_pi=True)
    assert [(r.run, r.segment) for r in as_pi.runs] == [(run, segment) for run, segment, _ in ours]
    assert [c.metric_name for c in as_pi.configs] == ["x", "x"] and as_pi.configs[-1].direction == "higher"
    pi_best = best_of([r for r in as_pi.runs if r.segment == 1], "higher")
    assert pi_best is not None and session.best_run is not None and pi_best.run == session.best_run.run == 9
    # And we read our own statuses back.
    assert [r.status for r in load_session(session.folder).runs] == [status for _, _, status in ours]


def test_every_status_round_trips_through_our_log_line() -> None:
    for status in STATUSES:
        record = RunRecord(run=1, segment=0, status=status, metric=1.0, code="x=1")
        assert RunRecord.from_json(strict_json(json.dumps(record.to_json()))).status == status


def test_a_log_is_told_ours_or_pi_s_by_its_content(tmp_path: Path) -> None:
    # A recording holding only our header (constraints, objective) keeps them: read as ours.
    ours = tmp_path / "rec.jsonl"
    ours.write_text('{"type":"config","name":"t","metricName":"x","constraints":["cost <= 2"],"objective":"o"}\n')
    log = read_log(ours)
    assert not log.foreign and log.configs[0].constraints == ("cost <= 2",)
    # pi's own header alone, whatever the file is called: pi's rules.
    theirs = tmp_path / "log.jsonl"
    theirs.write_text('{"type":"config","name":"t","metricName":"x","metricUnit":"","bestDirection":"lower"}\n')
    assert read_log(theirs).foreign
