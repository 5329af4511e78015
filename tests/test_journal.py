import json
from pathlib import Path

import pytest

from jupyter_autoresearch import JournalError, RunRecord, load_session
from jupyter_autoresearch.journal._journal import Journal, read_log
from jupyter_autoresearch.protocol._records import SegmentConfig

PI_LOG = Path(__file__).parent / "files" / "pi_autoresearch_marketing.jsonl"


def record(run: int, metric: float, status: str = "keep") -> RunRecord:
    return RunRecord(
        run=run,
        segment=0,
        status=status,
        metric=metric,
        metrics={"x": metric},
        code=f"x={run}",
        hypothesis=f"h{run}",
        parent=None if run == 1 else 1,
    )


def test_pi_autoresearch_log_loads_with_the_published_history() -> None:
    session = load_session(PI_LOG)
    assert session.read_only
    assert len(session.runs) == 9
    assert sorted({r.segment for r in session.runs}) == [0, 1]
    best = {seg: [r for r in session.segment_runs(seg) if r.kept][-1].metric for seg in (0, 1)}
    assert best == {0: 110.1627, 1: 109.8699}
    assert session.best_run.metric == 109.8699
    assert session.task.metric == "revenue_millions" and session.task.direction == "higher"
    assert session.runs[2].status == "discard" and session.runs[2].metric == 95.9106
    # pi keeps the primary metric out of "metrics"; we merge it back in
    assert session.runs[1].metrics["revenue_millions"] == 110.1627
    assert "exact 0/1 knapsack" in session.runs[1].hypothesis
    frame = session.runs_dataframe()
    assert list(frame.index) == list(range(1, 10))
    assert frame.loc[6, "metrics.cs_contacts"] == 3218


def test_pi_folder_layouts_are_found(tmp_path: Path) -> None:
    (tmp_path / ".auto").mkdir()
    (tmp_path / ".auto" / "log.jsonl").write_text(PI_LOG.read_text())
    assert len(load_session(tmp_path).runs) == 9
    other = tmp_path / "other"
    other.mkdir()
    (other / "autoresearch.jsonl").write_text(PI_LOG.read_text())
    assert load_session(other).read_only


def test_append_read_roundtrip_keeps_our_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s")
    journal.append_config(SegmentConfig(name="t", metric_name="x", constraints=("x <= 3",)))
    journal.append_run(record(1, 1.0))
    journal.append_run(
        RunRecord(
            run=2,
            segment=0,
            status="crash",
            metric=None,
            code="boom",
            error="KeyError: 'a'",
            stderr_tail="Traceback...",
            parent=1,
            tokens=12,
            cost_usd=None,
        )
    )
    journal.close()
    log = read_log(tmp_path / "s")
    assert [r.run for r in log.runs] == [1, 2]
    assert log.runs[1].error == "KeyError: 'a'" and log.runs[1].tokens == 12 and log.runs[1].cost_usd is None
    assert log.configs[0].constraints == ("x <= 3",)
    line = json.loads((tmp_path / "s" / "log.jsonl").read_text().splitlines()[2])
    for field in (
        "run",
        "commit",
        "metric",
        "metrics",
        "status",
        "description",
        "timestamp",
        "segment",
        "confidence",
        "asi",
        "code",
        "parent",
        "duration_s",
        "tokens",
        "cost_usd",
        "model",
        "error",
        "constraints",
        "worker",
        "queued_s",
    ):
        assert field in line


def test_a_partial_last_line_is_tolerated_and_cut_before_appending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s")
    journal.append_run(record(1, 1.0))
    journal.close()
    log_file = tmp_path / "s" / "log.jsonl"
    with open(log_file, "a") as handle:
        handle.write('{"run": 2, "segment": 0, "status": "ke')  # killed mid-write
    log = read_log(log_file)
    assert [r.run for r in log.runs] == [1] and "partial line" in log.warnings[0]
    journal = Journal(tmp_path / "s")
    journal.append_run(record(2, 2.0))
    journal.close()
    assert [r.run for r in read_log(log_file).runs] == [1, 2]


def test_a_broken_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    log_file = tmp_path / "log.jsonl"
    log_file.write_text(
        json.dumps(record(1, 1.0).to_json()) + "\nnot json\n" + json.dumps(record(2, 2).to_json()) + "\n"
    )
    with pytest.raises(JournalError, match=r"log.jsonl:2 is not a valid log line"):
        read_log(log_file)


def test_a_session_folder_is_locked_while_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s")
    with pytest.raises(JournalError, match="running in another process"):
        Journal(tmp_path / "s")
    journal.close()
    Journal(tmp_path / "s").close()


def test_missing_paths_are_clear(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        load_session(tmp_path / "nope")
    with pytest.raises(JournalError, match="holds no session log"):
        load_session(tmp_path)


def test_ideas_backlog(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s")
    journal.add_ideas(["try DP", "try MILP"])
    journal.add_ideas(["try DP", "integer cents"])
    assert journal.read_ideas() == ["try DP", "try MILP", "integer cents"]
    journal.close()


def test_a_whole_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "log.jsonl").write_text(json.dumps(record(1, 1.0).to_json()))  # saved by an editor, no newline
    journal = Journal(folder)
    journal.append_run(record(2, 2.0))
    journal.close()
    assert [r.run for r in read_log(folder).runs] == [1, 2]


def test_a_long_partial_fragment_is_cut_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s")
    journal.append_run(record(1, 1.0))
    journal.close()
    with open(tmp_path / "s" / "log.jsonl", "a") as handle:
        handle.write('{"run": 2, "code": "' + "x" * 200_000)  # a big record cut short
    journal = Journal(tmp_path / "s")
    journal.append_run(record(2, 2.0))
    journal.close()
    assert [r.run for r in read_log(tmp_path / "s").runs] == [1, 2]


def _written(path: Path) -> Path:
    path.write_text("{}\n")
    return path


@pytest.mark.parametrize(
    ("damage", "word", "aside"),
    [
        (
            lambda log: log.with_name("other").write_text("{}\n") and log.with_name("other").replace(log),
            "replaced",
            True,
        ),
        (lambda log: log.open("a").write("garbage\n"), "appended to", True),
        (lambda log: log.open("r+").truncate(10), "truncated", True),
        (lambda log: log.unlink(), "deleted", False),
        (lambda log: log.parent.rename(log.parent.with_name("gone")), "deleted", False),  # the whole folder
    ],
)
def test_a_log_damaged_behind_the_journals_back_is_written_again(
    tmp_path: Path, damage: object, word: str, aside: bool
) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "log.jsonl").write_text(json.dumps(record(1, 1.0).to_json()) + "\n")  # there before it opened
    warnings: list[str] = []
    journal = Journal(folder, on_warning=warnings.append)
    journal.append_run(record(2, 2.0))
    damage(folder / "log.jsonl")  # type: ignore[operator]
    journal.append_run(record(3, 3.0))
    journal.close()
    assert [r.run for r in read_log(folder).runs] == [1, 2, 3]
    assert len(warnings) == 1 and f"was {word} behind the journal's back" in warnings[0]
    assert "written again whole (2 lines)" in warnings[0]  # all it held then
    assert [p.name for p in folder.glob("log.jsonl.damaged-*")] == (["log.jsonl.damaged-1"] if aside else [])
    Journal(folder).close()  # the lock moved to the new file: it opens again


def test_a_log_damaged_after_the_last_append_is_repaired_on_close(tmp_path: Path) -> None:
    warnings: list[str] = []
    journal = Journal(tmp_path / "s", on_warning=warnings.append)
    journal.append_run(record(1, 1.0))
    (tmp_path / "s" / "log.jsonl").write_text("")
    journal.close()
    assert [r.run for r in read_log(tmp_path / "s").runs] == [1] and len(warnings) == 1
