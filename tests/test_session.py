"""The loop: statuses, stop rules, resume, controls, events, decisions."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import metric_cell, write_recording
from llm_server import LLMServer, Reply, answer

import jupyter_autoresearch as ar
from jupyter_autoresearch import (
    BaselineError,
    ConstraintError,
    ConstraintsChanged,
    Decision,
    ReasoningDelta,
    Stopped,
    create_session,
    load_session,
)


def make(
    tmp_path: Path,
    proposals: list[tuple[str, str]],
    *,
    code: str | None = None,
    segment_of: list[int] | None = None,
    **options: Any,
) -> ar.Session:
    (tmp_path / "bench.py").write_text(code or metric_cell(1))
    recording = write_recording(tmp_path / "rec.jsonl", proposals, segment_of=segment_of)
    options.setdefault("maximize", "x")
    options.setdefault("timeout", 5)
    return create_session(tmp_path / "bench.py", model=f"replay:{recording}", **options)


def statuses(session: ar.Session) -> list[str]:
    return [r.status for r in session.runs]


def test_every_status(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    session = make(
        tmp_path,
        [
            ("better", metric_cell(2)),
            ("worse", metric_cell(0.5)),
            ("equal is not better", metric_cell(2)),
            ("crash", "raise ValueError('bad idea')"),
            ("slow", "import time\ntime.sleep(30)"),
            ("breaks the budget", metric_cell(9).replace("cost=1", "cost=50")),
            ("forgets the metric", "print('METRIC cost=1')"),
            ("touches data", "open('data.csv', 'w').write('')\n" + metric_cell(5)),
        ],
        code="open('data.csv').read()\n" + metric_cell(1),
        constraints=["cost <= 10"],
        timeout=1,
    )
    session.run()
    assert statuses(session) == [
        "keep",
        "keep",
        "discard",
        "discard",
        "crash",
        "timeout",
        "infeasible",
        "invalid",
        "violation",
    ]
    runs = session.runs
    assert runs[3].error == "x 2 vs best 2: not better"
    assert runs[4].error == "ValueError: bad idea" and "bad idea" in runs[4].stderr_tail
    assert "timed out" in str(runs[5].error)
    assert runs[6].error == "cost <= 10 is violated (cost = 50)"
    assert "printed no METRIC x=" in str(runs[7].error)
    assert runs[8].error == "changed off-limits file data.csv (restored)"
    assert (tmp_path / "data.csv").read_text() == "a\n1\n"
    assert session.task.off_limits == ("data.csv",)  # proposed from the cell's own data file
    assert session.best_run.run == 2 and session.stop_reason == "done"
    assert (session.folder / "best.py").read_text() == metric_cell(2)
    document = (session.folder / "prompt.md").read_text()
    assert "`cost <= 10`" in document and "`data.csv`" in document and "| 6 | 0 | timeout |" in document


def test_invalid_answer_from_the_model_is_logged_and_shown_next_time(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add("I would sort the table differently.", answer("fix", metric_cell(3)), "DONE: enough")
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url)
    session.run()
    assert statuses(session) == ["keep", "invalid", "keep"]
    assert "neither a ```python block" in str(session.runs[1].error)
    assert "I would sort the table differently." in llm.requests[1]["messages"][1]["content"]
    assert session.stop_reason == "done" and "enough" in session.stop_detail


@pytest.mark.parametrize(
    "rule, options, runs",
    [
        ("max-iterations", {"max_iterations": 2}, 3),
        ("plateau", {"plateau": 2}, 4),  # keep, then two discards
    ],
)
def test_count_based_stop_rules(tmp_path: Path, rule: str, options: dict[str, Any], runs: int) -> None:
    session = make(
        tmp_path,
        [("a", metric_cell(2)), ("b", metric_cell(1)), ("c", metric_cell(1)), ("d", metric_cell(5))],
        **options,
    )
    session.run()
    assert session.stop_reason == rule and len(session.runs) == runs


def test_max_time(tmp_path: Path) -> None:
    slow = [(f"h{i}", metric_cell(i + 2, "import time\ntime.sleep(0.4)")) for i in range(10)]
    session = make(tmp_path, slow, max_time="1s")
    started = time.monotonic()
    session.run()
    assert session.stop_reason == "max-time"
    assert 2 <= len(session.runs) < 6 and time.monotonic() - started < 5


def test_calls_are_priced_from_litellms_map(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.default = lambda request: Reply(answer("again", metric_cell(1)), prompt_tokens=1000, completion_tokens=1000)
    # gpt-4o-mini is in litellm's bundled price map: $0.00075 per call here
    session = create_session(
        tmp_path / "bench.py", maximize="x", model="openai/gpt-4o-mini", api_base=llm.url, max_iterations=3
    )
    session.run()
    assert [r.cost_usd for r in session.runs[1:]] == [pytest.approx(0.00075)] * 3
    assert session.total_tokens == 6000 and session.total_cost_usd == pytest.approx(0.00225)


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_cost_cap_is_never_crossed(tmp_path: Path, llm: LLMServer, priced_model: str, parallel: int) -> None:
    from jupyter_autoresearch.proposers._litellm import import_litellm

    litellm = import_litellm()
    (tmp_path / "bench.py").write_text(metric_cell(1))

    def reply(request: dict[str, Any]) -> Reply:
        # The server counts the prompt as the model would; the reply uses 200 of its 500 tokens.
        prompt = litellm.token_counter(model=priced_model, messages=request["messages"])
        return Reply(answer("again", metric_cell(1)), prompt_tokens=prompt, completion_tokens=200)

    llm.default = reply
    started: list[ar.ProposalStarted] = []
    session = create_session(
        tmp_path / "bench.py", maximize="x", model=priced_model, api_base=llm.url, max_cost=0.01, plateau=0,
        parallel=parallel,
    )  # fmt: skip
    session.subscribe(lambda e: started.append(e) if isinstance(e, ar.ProposalStarted) else None)
    session.run()
    assert session.stop_reason == "max-cost" and "could cost up to" in session.stop_detail
    spent = session.total_cost_usd
    assert 0.005 < spent <= 0.01  # the cap is never crossed...
    # ...and the loop stopped only when one more request could (with two in flight, it
    # waited for the one still asking rather than stopping on what it might cost).
    assert session.next_cost_usd is not None and spent + session.next_cost_usd > 0.01
    assert session.next_cost_usd == pytest.approx(started[-1].predicted_usd, rel=0.05)
    assert len(started) == len(session.runs) - 1
    assert all(request["max_tokens"] == 500 for request in llm.requests)  # the model's own reply limit
    # Each prediction bounds its request: the counted prompt, and the whole reply limit.
    for event, record in zip(started, session.runs[1:], strict=False):
        assert event.predicted_usd is not None and record.cost_usd is not None
        assert record.cost_usd <= event.predicted_usd == pytest.approx(record.cost_usd + 300 * 4e-6)


def test_unknown_prices_are_recorded_as_null(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add(answer("h", metric_cell(2)), "DONE: ok")
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/no-such-model-xyz", api_base=llm.url)
    session.run()
    assert session.runs[1].cost_usd is None and session.runs[1].tokens == 160


def test_stop_from_another_thread_abandons_the_running_candidate(tmp_path: Path) -> None:
    session = make(tmp_path, [("slow", "import time\ntime.sleep(60)")], timeout=120)
    session.subscribe(
        lambda e: isinstance(e, ar.EvaluationStarted) and e.run == 2 and threading.Timer(0.3, session.stop).start()
    )
    started = time.monotonic()
    session.run()
    assert session.stop_reason == "user" and time.monotonic() - started < 10
    assert len(session.runs) == 1  # the abandoned run is not logged as a result


def test_stop_during_streaming(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add(Reply(answer("long " * 200, metric_cell(2)), chunk=5, delay=0.01))
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url)
    deltas: list[str] = []

    def on_event(event: ar.Event) -> None:
        if isinstance(event, ReasoningDelta):
            deltas.append(event.text)
            if len(deltas) == 5:
                session.stop()

    session.subscribe(on_event)
    session.run()
    assert session.stop_reason == "user" and 5 <= len(deltas) < 50


def test_pause_and_resume(tmp_path: Path) -> None:
    session = make(tmp_path, [("a", metric_cell(2)), ("b", metric_cell(3))])
    paused = threading.Event()

    def on_event(event: ar.Event) -> None:
        if isinstance(event, Decision) and event.record.run == 2:
            session.pause()
            paused.set()

    session.subscribe(on_event)
    thread = session.start()
    assert paused.wait(20)
    time.sleep(0.5)
    assert session.state == "paused" and len(session.runs) == 2
    session.resume()
    thread.join(20)
    assert len(session.runs) == 3 and session.stop_reason == "done"


def test_a_raising_subscriber_does_not_break_the_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    session = make(tmp_path, [("a", metric_cell(2))])
    seen: list[str] = []
    session.subscribe(lambda e: 1 / 0)
    session.subscribe(lambda e: seen.append(type(e).__name__))
    session.run()
    assert statuses(session) == ["keep", "keep"]
    assert seen == [
        "SessionStarted",
        "EvaluationStarted",
        "EvaluationRunning",
        "EvaluationDone",
        "BaselineDone",
        "Decision",
        "ProposalStarted",
        "ReasoningDelta",
        "ProposalReady",
        "EvaluationStarted",
        "EvaluationRunning",
        "EvaluationDone",
        "Decision",
        "ProposalStarted",
        "ReasoningDelta",
        "ProposalReady",
        "Stopped",
    ]
    assert "subscriber" in caplog.text


def test_resume_continues_numbering_best_and_history(tmp_path: Path) -> None:
    proposals = [("a", metric_cell(2)), ("b", metric_cell(1)), ("c", metric_cell(4))]
    first = make(tmp_path, proposals, max_iterations=2)
    first.run()
    assert [r.run for r in first.runs] == [1, 2, 3]
    second = make(tmp_path, proposals)
    second.run()
    assert [r.run for r in second.runs] == [1, 2, 3, 4]
    assert second.runs[3].metric == 4 and second.runs[3].parent == 2
    assert second.best_run.run == 4
    assert len(load_session(second.folder).runs) == 4


def test_resume_with_other_objective_is_refused(tmp_path: Path) -> None:
    make(tmp_path, [], max_iterations=0).run()
    with pytest.raises(
        ar.OptionsError, match=r"optimises x \(higher is better\), not x \(lower\); choose another --session"
    ):
        make(tmp_path, [], maximize=None, minimize="x").run()


def test_constraints_edited_mid_run_open_a_new_segment(tmp_path: Path) -> None:
    proposals = [
        ("cheap", metric_cell(2)),
        ("pricey", metric_cell(5).replace("cost=1", "cost=8")),
        ("after", metric_cell(3)),
        ("after2", metric_cell(4).replace("cost=1", "cost=3")),
    ]
    session = make(tmp_path, proposals, segment_of=[0, 0, 1, 1])
    events: list[ar.Event] = []

    def on_event(event: ar.Event) -> None:
        events.append(event)
        if isinstance(event, Decision) and event.record.run == 3:
            session.set_constraints(["cost <= 2"])

    session.subscribe(on_event)
    session.run()
    runs = session.runs
    assert [(r.run, r.segment, r.status) for r in runs] == [
        (1, 0, "keep"),
        (2, 0, "keep"),
        (3, 0, "keep"),
        # The best run that meets cost <= 2 by its recorded metrics (run 2, not the latest best, run 3)
        # is re-measured as the segment's baseline.
        (4, 1, "keep"),
        (5, 1, "keep"),
        (6, 1, "infeasible"),
    ]
    assert runs[3].parent == 2 and runs[3].asi["baseline"] and runs[3].code == runs[1].code
    changed = next(e for e in events if isinstance(e, ConstraintsChanged))
    assert changed.constraints == ("cost <= 2",) and changed.segment == 1 and changed.now_infeasible == (3,)
    assert changed.winner == 2 and not changed.again
    assert session.best_run.run == 5
    log = load_session(session.folder)
    assert [c.constraints for c in log._configs] == [(), ("cost <= 2",)]


def test_constraint_edits_are_validated(tmp_path: Path) -> None:
    session = make(tmp_path, [], max_iterations=0)
    session.run()
    with pytest.raises(ConstraintError, match=r"names spend, which no run reported \(known: cost, x\)"):
        session.set_constraints(["spend <= 3"])
    with pytest.raises(ConstraintError, match="unknown operator"):
        session.set_constraints(["cost != 3"])


def test_resuming_with_new_constraints_starts_a_segment(tmp_path: Path) -> None:
    make(tmp_path, [("a", metric_cell(2))]).run()
    second = make(
        tmp_path, [("a", metric_cell(2)), ("b", metric_cell(3))], segment_of=[0, 1], constraints=["cost <= 1"]
    )
    second.run()
    assert [(r.run, r.segment, r.status) for r in second.runs] == [
        (1, 0, "keep"),
        (2, 0, "keep"),
        (3, 1, "keep"),
        (4, 1, "keep"),
    ]
    assert second.runs[2].asi["baseline"] and second.runs[2].parent == 2


def test_a_rerun_with_a_live_model_continues_the_session(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    values = iter(range(2, 100))
    llm.default = lambda request: Reply(answer("more", metric_cell(next(values))))

    def run() -> ar.Session:
        return create_session(
            tmp_path / "bench.py", maximize="x", constraints=["cost <= 5"], model="openai/test",
            api_base=llm.url, max_iterations=2,
        ).run()  # fmt: skip

    run()
    second = run()  # --max-iterations counts per run of the command, as n_trials per optimize call
    assert [(r.run, r.segment, r.metric) for r in second.runs] == [(n, 0, n) for n in range(1, 6)]
    assert not any(r.is_baseline for r in second.runs[1:])  # nothing changed: nothing re-measured
    assert second.runs[3].parent == 3 and second.best_run.run == 5
    headers = [line for line in (second.folder / "log.jsonl").read_text().splitlines() if '"type":"config"' in line]
    assert len(headers) == 1


def test_cells_go_back_to_the_segment_they_made(tmp_path: Path) -> None:
    """Two cells of one session, run again and again: each continues its own segment, whose best
    is the best run of the session that meets its rules."""
    loose, strict = ["cost <= 5"], ["cost <= 1"]
    proposals = [
        ("loose a", metric_cell(2).replace("cost=1", "cost=3")),
        ("strict a", metric_cell(10)),  # cost 1: meets the loose rules too
        ("loose b", metric_cell(4).replace("cost=1", "cost=4")),
    ]

    def cell(constraints: list[str]) -> tuple[ar.Session, list[ar.Event]]:
        session = make(tmp_path, proposals, segment_of=[0, 1, 0], constraints=constraints, max_iterations=1)
        events: list[ar.Event] = []
        session.subscribe(events.append)
        session.run()
        return session, [e for e in events if isinstance(e, ConstraintsChanged)]

    cell(loose)
    session, changed = cell(strict)
    # Segment 1 starts from the best run that meets cost <= 1 by its recorded metrics: the baseline.
    assert [(r.run, r.segment, r.status, r.parent) for r in session.runs[2:]] == [(3, 1, "keep", 1), (4, 1, "keep", 3)]
    assert changed[0].winner == 1 and changed[0].now_infeasible == (2,) and not changed[0].again

    session, changed = cell(loose)
    # Back in segment 0, where run 4 of segment 1 (x=10, cost 1) is now the best that meets cost <= 5:
    # it is re-measured into the segment once, then the loop goes on there.
    assert changed[0].again and changed[0].segment == 0 and changed[0].winner == 4
    assert [(r.run, r.segment, r.status, r.parent) for r in session.runs[4:]] == [
        (5, 0, "keep", 4),
        (6, 0, "discard", 5),
    ]
    assert session.best_run.run == 5
    log = (session.folder / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["segment"] for line in log if '"type":"config"' in line] == [0, 1, 0]
    assert [r.segment for r in load_session(session.folder).runs] == [0, 0, 1, 1, 0, 0]

    for constraints, best in ((loose, 5), (strict, 4)):  # nothing new: nothing re-measured, nothing added
        session, changed = cell(constraints)
        assert session.stop_reason == "up-to-date" and len(session.runs) == 6 and session.best_run.run == best
        assert all(e.winner is None for e in changed)
        assert session.stop_detail == f"session bench is up to date: 6 runs, best run {best} 10"
    # The log gained only the two reruns' stop lines.
    after = (session.folder / "log.jsonl").read_text().splitlines()
    assert after[: len(log)] == log and [json.loads(line)["reason"] for line in after[len(log) :]] == ["up-to-date"] * 2


def counter_cell(values: list[float], file: str = "n.txt") -> str:
    """A cell that prints the next of ``values`` each time it runs (noise, made repeatable);
    ``file`` keeps its count, so that each cell has its own sequence."""
    return (
        "import os\n"
        f"values = {values!r}\n"
        f"n = int(open({file!r}).read()) if os.path.exists({file!r}) else 0\n"
        f"open({file!r}, 'w').write(str(n + 1))\n"
        "print(f'METRIC x={values[n % len(values)]}')\n"
    )


def test_repeats_take_the_median_and_measure_the_best_again_beside_each_run(tmp_path: Path) -> None:
    session = make(
        tmp_path,
        [
            ("lucky", counter_cell([10.0, 14.0, 7.0], "lucky.txt")),
            ("clearly better", "print('METRIC x=20')"),
        ],
        code=counter_cell([10.0, 8.0, 12.0], "base.txt"),
        repeats=3,
    )
    session.run()
    baseline, lucky, better = session.runs
    assert baseline.repeats == (10.0, 8.0, 12.0) and baseline.metric == 10.0
    # the baseline is measured again in each round: 10, 8, 12 beside 10, 14, 7
    assert lucky.repeats == (10.0, 14.0, 7.0) and lucky.metric == 10.0 and lucky.status == "discard"
    assert lucky.paired is not None and list(lucky.paired["incumbent_repeats"]) == [10.0, 8.0, 12.0]
    assert lucky.paired["gain"] == 0 and "paired over 3 repeats): not better" in str(lucky.error)
    assert better.status == "keep" and better.repeats == (20.0, 20.0, 20.0)
    assert better.paired is not None and (better.paired["gain"], better.paired["noise"]) == (10.0, 2.0)


def test_noise_threshold_from_spread(tmp_path: Path) -> None:
    session = make(
        tmp_path,
        [("slightly", counter_cell([12.0, 6.0, 13.0], "c.txt"))],
        code=counter_cell([10.0, 8.0, 12.0], "base.txt"),
        repeats=3,
    )
    session.run()
    assert session.runs[1].metric == 12.0  # paired gains 2, -2, 1: median 1, MAD 1
    assert session.runs[1].status == "discard" and "within noise (±1 over 3 repeats)" in str(session.runs[1].error)


@pytest.mark.parametrize(
    "threshold, status", [("0.5", "discard"), ("0.05", "keep"), ("60%", "discard"), ("40%", "keep")]
)
def test_min_improvement(tmp_path: Path, threshold: str, status: str) -> None:
    session = make(tmp_path, [("h", metric_cell(1.5))], min_improvement=threshold)
    session.run()
    assert session.runs[1].status == status


def test_minimize(tmp_path: Path) -> None:
    session = make(tmp_path, [("lower", metric_cell(0.5)), ("higher", metric_cell(2))], maximize=None, minimize="x")
    session.run()
    assert statuses(session) == ["keep", "keep", "discard"]


def test_parallel_proposals_are_evaluated_together(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    values = iter([3, 2, 5, 4])
    lock = threading.Lock()

    def reply(request: dict[str, Any]) -> Reply:
        with lock:
            value = next(values, None)
        if value is None:
            return Reply("DONE: out of ideas")
        return Reply(answer(f"try {value}", metric_cell(value, "import time\ntime.sleep(0.3)")))

    llm.default = reply
    session = create_session(
        tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url, parallel=2, max_iterations=4
    )
    session.run()
    runs = session.runs
    assert [r.run for r in runs] == [1, 2, 3, 4, 5]
    assert session.best_run.metric == 5
    assert len(llm.requests) == 4  # one request per run


def test_one_request_per_iteration_and_the_prompt_learns_from_failures(
    tmp_path: Path, llm: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-in-a-prompt-123")
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add(
        answer("crash it", "import missing_module_xyz"),
        answer("worse", metric_cell(0.5)) + "Idea: try a MILP\n",
        answer("fine", metric_cell(2)),
        "DONE: done",
    )
    session = create_session(
        tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url, constraints=["cost <= 3"]
    )
    session.subscribe(lambda e: isinstance(e, Decision) and e.record.run == 2 and session.steer("prefer numpy"))
    session.run()
    assert len(llm.requests) == 4 and len(session.runs) == 4
    third = llm.requests[2]["messages"][1]["content"]
    assert "ModuleNotFoundError: No module named 'missing_module_xyz'" in third
    assert "## Notes from the analyst" in third and "prefer numpy" in third
    assert "`cost <= 3`" in third
    fourth = llm.requests[3]["messages"][1]["content"]
    assert "run 3 (discard): x 0.5 vs best 1: not better" in fourth
    assert "try a MILP" in fourth  # the ideas backlog
    assert "print('METRIC x=2')" in fourth  # the current best code
    assert all("sk-never-in-a-prompt-123" not in str(r) for r in llm.requests)
    assert "sk-never" not in (session.folder / "log.jsonl").read_text()
    assert (session.folder / "ideas.md").read_text().count("try a MILP") == 1


def test_task_inference_makes_one_setup_request(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "bench.py").write_text("open('data.csv').read()\n" + metric_cell(1))
    llm.add(
        "Objective: make x as large as possible without raising cost.\n"
        "Primary: x (higher)\nSecondary: cost\nConstraints:\n- cost <= 1\n- a prose rule\nOff limits:\n- data.csv\n",
        answer("better", metric_cell(2)),
        "DONE: enough",
    )
    session = create_session(tmp_path / "bench.py", model="openai/test", api_base=llm.url)
    inferred: list[ar.TaskSpec] = []
    session.subscribe(lambda e: isinstance(e, ar.TaskInferred) and inferred.append(e.task))
    session.run()
    assert inferred and inferred[0].metric == "x" and inferred[0].direction == "higher"
    assert session.task.constraint_texts == ("cost <= 1",)
    assert "print('METRIC x=1')" in llm.requests[0]["messages"][1]["content"]
    assert "- x = 1" in llm.requests[0]["messages"][1]["content"]
    assert len(llm.requests) == 3 and statuses(session) == ["keep", "keep"]
    document = (session.folder / "prompt.md").read_text()
    assert "make x as large as possible" in document and "`x` (higher is better)" in document


def test_no_setup_request_when_the_objective_is_given(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add("DONE: nothing to do")
    create_session(tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url).run()
    assert len(llm.requests) == 1 and "Propose the next change" in llm.requests[0]["messages"][1]["content"]


def test_baseline_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"crashed: ZeroDivisionError: division by zero; fix the cell"):
        make(tmp_path, [], code="1 / 0").run()
    with pytest.raises(BaselineError, match=r"printed no METRIC y \(it printed x, cost\)"):
        make(tmp_path, [], maximize="y").run()
    with pytest.raises(BaselineError, match=r"metric x has value nan, which is not finite"):
        make(tmp_path, [], code="print('METRIC x=nan')").run()
    with pytest.raises(ConstraintError, match=r"names spend, which the baseline never printed"):
        make(tmp_path, [], constraints=["spend <= 3"]).run()


def test_stopped_event_carries_reason_and_best(tmp_path: Path) -> None:
    session = make(tmp_path, [("a", metric_cell(2))])
    stopped: list[Stopped] = []
    session.subscribe(lambda e: isinstance(e, Stopped) and stopped.append(e))
    session.run()
    assert stopped[0].reason == "done" and stopped[0].best.run == 2 and stopped[0].runs == 2


def test_model_and_key_from_a_dotenv_file_beside_the_target(
    tmp_path: Path, llm: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AUTORESEARCH_MODEL", "AUTORESEARCH_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "")  # recorded, so whatever .env loads is undone after the test
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(
        f"AUTORESEARCH_MODEL=openai/test\nAUTORESEARCH_API_BASE={llm.url}\nOPENAI_API_KEY=sk-from-dotenv-0123456789\n"
    )
    (tmp_path / "bench.py").write_text(metric_cell(1))
    llm.add(
        answer("leak?", "import os\nprint('KEY=' + str(os.environ.get('OPENAI_API_KEY')))\n" + metric_cell(2)),
        "DONE: ok",
    )
    session = create_session(tmp_path / "bench.py", maximize="x")
    session.run()
    assert session.proposer.model == "openai/test"
    headers = {k.lower(): v for k, v in llm.headers[0].items()}
    assert headers["authorization"] == "Bearer sk-from-dotenv-0123456789"
    assert "KEY=None" in session.runs[1].stdout_tail  # candidates never see the key
    assert all("sk-from-dotenv" not in str(request) for request in llm.requests)


def test_replay_with_parallel_serves_each_proposal_once(tmp_path: Path) -> None:
    session = make(tmp_path, [(f"h{i}", metric_cell(i + 2)) for i in range(5)], parallel=2)
    session.run()
    assert [r.metric for r in session.runs] == [1, 2, 3, 4, 5, 6]


def test_default_off_limits_leave_out_files_the_cell_writes(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n")
    (tmp_path / "results.json").write_text("{}")  # from an earlier run by hand
    code = "open('data.csv').read()\nopen('results.json', 'w').write('{}')\n" + metric_cell(1)
    session = make(tmp_path, [("touch data", "open('data.csv', 'w').write('')\n" + metric_cell(5))], code=code)
    session.run()
    assert session.task.off_limits == ("data.csv",)
    assert [r.status for r in session.runs] == ["keep", "violation"]


def test_stop_while_paused_abandons_the_running_candidate(tmp_path: Path) -> None:
    session = make(tmp_path, [("slow", "import time\ntime.sleep(60)")], timeout=120)

    def on_event(event: ar.Event) -> None:
        if isinstance(event, ar.EvaluationStarted) and event.run == 2:
            session.pause()
            threading.Timer(0.3, session.stop).start()

    session.subscribe(on_event)
    started = time.monotonic()
    session.run()
    assert session.stop_reason == "user" and time.monotonic() - started < 15


def test_a_session_locked_elsewhere_fails_cleanly(tmp_path: Path) -> None:
    from jupyter_autoresearch.journal._journal import Journal

    session = make(tmp_path, [])
    holder = Journal(session.folder)  # as if the CLI were running this session
    try:
        with pytest.raises(ar.JournalError, match="running in another process"):
            session.run()
        assert session.state == "stopped" and session.stop_reason == "error"
    finally:
        holder.close()
    session.run()  # and it can run once the other process let go
    assert session.stop_reason == "done"


def test_steering_notes_do_not_multiply_on_resume(tmp_path: Path) -> None:
    proposals = [(f"h{i}", metric_cell(i + 2)) for i in range(6)]
    first = make(tmp_path, proposals, max_iterations=2)
    first.subscribe(lambda e: isinstance(e, Decision) and e.record.run == 1 and first.steer("keep it simple"))
    first.run()
    for _ in range(2):
        again = make(tmp_path, proposals, max_iterations=1)
        again.run()
    assert again.notes == ["keep it simple"]


def test_an_unknown_model_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    session = create_session(tmp_path / "bench.py", maximize="x", model="gpt5-nonsense")
    with pytest.raises(ar.ProposalError, match="names no provider; write it as provider/model"):
        session.run()
    assert session.stop_reason == "error" and "names no provider" in session.stop_detail
    assert session.runs == ()  # refused before the baseline ran


def litellm_session(tmp_path: Path, llm: LLMServer, **options: Any) -> ar.Session:
    """A session asking the test server, with one quick retry before a request counts as failed."""
    (tmp_path / "bench.py").write_text(metric_cell(1))
    proposer = ar.LiteLLMProposer(ar.ModelSettings("openai/test", api_base=llm.url, num_retries=1))
    return create_session(tmp_path / "bench.py", maximize="x", proposer=proposer, **options)


def failure_lines(session: ar.Session) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (session.folder / "log.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("type") == "model_failure"]


def test_a_failed_model_request_costs_an_iteration_not_the_session(tmp_path: Path, llm: LLMServer) -> None:
    llm.add(
        Reply(status=500),  # fails, and so does its retry:
        Reply(status=500),
        Reply(answer("cut off", metric_cell(3)), cut_after=2),  # the stream ends before the reply does
        answer("fine", metric_cell(2)),
        Reply("abc" * 150, chunk=3),  # litellm's repeated-chunk guard cuts this one
        "DONE: enough",
    )
    session = litellm_session(tmp_path, llm)
    failed: list[ar.ProposalFailed] = []
    session.subscribe(lambda e: isinstance(e, ar.ProposalFailed) and failed.append(e))
    session.run()
    assert statuses(session) == ["keep", "keep"] and [r.run for r in session.runs] == [1, 2]  # no number used
    assert session.stop_reason == "done" and session.iteration == 5
    assert [(e.run, e.consecutive, e.limit) for e in failed] == [(2, 1, 3), (2, 2, 3), (3, 1, 3)]
    assert "cannot reach openai/test" in failed[0].reason and "InternalServerError" in failed[0].reason
    assert "was cut off after" in failed[1].reason
    assert "repeating the same chunk" in failed[2].reason
    lines = failure_lines(session)
    assert [line["reason"] for line in lines] == [e.reason for e in failed]
    assert all("run" not in line and line["segment"] == 0 for line in lines)  # never read as a run
    assert [r.run for r in load_session(session.folder).runs] == [1, 2]  # our reader skips them


def test_model_failures_in_a_row_stop_the_session(tmp_path: Path, llm: LLMServer) -> None:
    llm.default = lambda request: Reply(status=503)
    session = litellm_session(tmp_path, llm, max_model_failures=2)
    with pytest.raises(ar.ProposalError, match=r"2 model requests in a row failed \(--max-model-failures 2\)"):
        session.run()
    assert statuses(session) == ["keep"] and len(failure_lines(session)) == 2
    assert session.stop_reason == "error" and "cannot reach openai/test" in session.stop_detail
    assert len(llm.requests) == 4  # two iterations, each a request and one retry


def test_a_refused_key_stops_at_once(tmp_path: Path, llm: LLMServer) -> None:
    llm.add(Reply(status=401))
    session = litellm_session(tmp_path, llm)
    with pytest.raises(ar.ProposalError, match="refused the API key for openai/test") as raised:
        session.run()
    assert raised.value.fatal and raised.value.model == "openai/test"
    assert statuses(session) == ["keep"] and failure_lines(session) == [] and len(llm.requests) == 1


def test_a_missing_key_is_named_before_the_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / "bench.py").write_text(metric_cell(1))
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/gpt-5-mini")
    with pytest.raises(ar.ProposalError) as raised:
        session.run()
    assert str(raised.value) == (
        "OPENAI_API_KEY is not set, and litellm needs it for openai/gpt-5-mini: set it in the environment "
        f"or in {tmp_path / '.env'}"
    )
    assert session.runs == () and session.stop_reason == "error"


def test_an_unreachable_server_is_named_before_the_baseline(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "bench.py").write_text(metric_cell(1))
    url = f"http://127.0.0.1:{port}/v1"
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/test", api_base=url)
    with pytest.raises(ar.ProposalError, match=rf"cannot reach --api-base {url} \(.*\); start the server or fix"):
        session.run()
    assert session.runs == ()


def test_the_stuck_loop_stop_is_on_by_default(tmp_path: Path) -> None:
    session = make(tmp_path, [(f"worse {i}", metric_cell(0.5)) for i in range(25)], max_iterations=30)
    session.run()
    assert session.stop_reason == "plateau" and len(session.runs) == 21
    assert session.stop_detail == "20 runs in a row without improvement (--plateau 20)"
    session = make(
        tmp_path, [(f"worse {i}", metric_cell(0.5)) for i in range(25)], plateau=0, name="off", max_iterations=30
    )
    session.run()
    assert session.stop_reason == "done" and len(session.runs) == 26


def test_state_errors_are_session_errors(tmp_path: Path) -> None:
    session = make(tmp_path, [("slow", "import time\ntime.sleep(30)")], timeout=60)
    session.start()
    deadline = time.monotonic() + 30
    while session.state != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(ar.SessionError, match="session bench is already running") as raised:
        session.start()
    assert raised.value.session == "bench"
    with pytest.raises(ar.SessionError, match="already running"):
        session.run()
    session.stop()
    session.wait(30)
    with pytest.raises(ar.SessionError, match="was loaded read-only and cannot run"):
        load_session(session.folder).run()


def test_parallel_runs_are_in_flight_together_and_each_is_judged_when_decided(tmp_path: Path) -> None:
    # Whichever request gets it, the waiter finishes only after the quick one has run (a
    # file), then a second more, so the quick one is decided first even on a busy machine:
    # both were in flight at once.
    waiter = (
        "import os, time\n"
        "for _ in range(1200):\n"
        "    if os.path.exists('quick.done'):\n"
        "        time.sleep(1.0)\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        "print(f\"METRIC saw={int(os.path.exists('quick.done'))}\")\n" + metric_cell(2)
    )
    quick = "open('quick.done', 'w').close()\n" + metric_cell(3)
    session = make(tmp_path, [("wait", waiter), ("quick", quick)], parallel=2, timeout=120)
    session.run()
    runs = {r.hypothesis: r for r in session.runs}
    assert runs["wait"].metrics["saw"] == 1.0
    # Against the best when it was asked for (the baseline, 1) it would be kept; it is
    # judged against the best when it is decided: the quick run's 3.
    assert runs["quick"].status == "keep" and runs["wait"].status == "discard"
    assert runs["wait"].error == "x 2 vs best 3: not better"
    assert runs["wait"].parent == runs["quick"].parent == 1
    assert [r.run for r in session.runs] == [1, 2, 3]  # numbered in the order they were asked for
    log = (tmp_path / ".autoresearch" / "bench" / "log.jsonl").read_text().splitlines()
    logged = [line for line in map(json.loads, log) if "run" in line]
    assert [line["asi"]["hypothesis"] for line in logged][1:] == ["quick", "wait"]  # written as decided
    assert all(line["worker"] == "local" and line["queued_s"] >= 0 for line in logged)
    resumed = load_session(tmp_path / ".autoresearch" / "bench")
    assert [r.run for r in resumed.runs] == [1, 2, 3]


def test_each_run_of_the_loop_logs_why_it_stopped(tmp_path: Path) -> None:
    session = make(tmp_path, [("better", metric_cell(2))], max_iterations=1)
    session.run()
    session.run()  # a rerun: the recording has nothing more, so the proposer says DONE
    lines = [json.loads(line) for line in (session.folder / "log.jsonl").read_text().splitlines()]
    stops = [{k: v for k, v in line.items() if k != "timestamp"} for line in lines if line.get("type") == "stop"]
    assert stops == [
        {"type": "stop", "reason": "max-iterations", "detail": session_detail(stops, 0), "runs": 2},
        {"type": "stop", "reason": "up-to-date", "detail": session.stop_detail, "runs": 2},
    ]
    assert lines[-1]["type"] == "stop" and all("run" not in line for line in lines if line.get("type") == "stop")
    assert [r.run for r in load_session(session.folder).runs] == [1, 2]  # not a run to any reader


def session_detail(stops: list[dict[str, Any]], index: int) -> str:
    detail = stops[index]["detail"]
    assert isinstance(detail, str) and detail
    return detail


def test_requests_still_streaming_stop_when_the_loop_ends(tmp_path: Path, llm: LLMServer) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    lock, served = threading.Lock(), []

    def reply(request: dict[str, Any]) -> Reply:
        with lock:
            served.append(1)
            first = len(served) == 1
        # The first request streams for seconds; the second is refused, which ends the loop.
        return Reply(answer("slow", metric_cell(2)), chunk=2, delay=0.05) if first else Reply("no", status=401)

    llm.default = reply
    session = create_session(tmp_path / "bench.py", maximize="x", model="openai/test", api_base=llm.url, parallel=2)
    deltas: list[float] = []
    session.subscribe(lambda e: deltas.append(time.monotonic()) if isinstance(e, ar.ReasoningDelta) else None)
    with pytest.raises(ar.ProposalError, match="refused the API key"):
        session.run()
    ended = time.monotonic()
    time.sleep(1.0)
    assert deltas and not [t for t in deltas if t > ended + 0.2]  # nothing streams on after the loop
