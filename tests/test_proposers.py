"""One contract for every proposer: litellm against the test server, replay, and a custom one.

The custom proposer below is the README's "write your own proposer" example, as short.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import write_recording
from llm_server import LLMServer, Reply, answer

import jupyter_autoresearch as ar

CELL = "BATCH = 1\nprint(f'METRIC seconds={10 / BATCH}')\nprint('METRIC memory_gb=1')\n"


def with_batch(size: int) -> str:
    return CELL.replace("BATCH = 1", f"BATCH = {size}")


class TryBatchSizes(ar.Proposer):
    """Tries batch sizes from a list, one per iteration, then says it is done."""

    model = "batch-sizes"

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = list(sizes)

    def propose(self, context: ar.ProposalContext, on_delta: Any = None) -> ar.Proposal:
        if not self.sizes:
            return ar.Proposal(done="every batch size was tried")
        size = self.sizes.pop(0)
        code = re.sub(r"BATCH = \d+", f"BATCH = {size}", context.best.code)
        return ar.Proposal(hypothesis=f"batch size {size}", code=code)


INFERENCE = "Objective: train faster.\nPrimary: seconds (lower)\nSecondary: memory_gb\nConstraints:\n- memory_gb <= 4\n"


def litellm(tmp_path: Path, llm: LLMServer, sizes: list[int]) -> ar.Proposer:
    replies = [answer(f"batch size {size}", with_batch(size)) for size in sizes]
    lock = threading.Lock()

    def reply(request: dict[str, Any]) -> Reply:
        if "You set up an optimisation task" in request["messages"][0]["content"]:
            return Reply(INFERENCE)
        with lock:
            return Reply(replies.pop(0) if replies else "DONE: every batch size was tried", chunk=9)

    llm.default = reply
    return ar.LiteLLMProposer(ar.ModelSettings("openai/test", api_base=llm.url))


def replay(tmp_path: Path, llm: LLMServer, sizes: list[int]) -> ar.Proposer:
    proposals = [(f"batch size {size}", with_batch(size)) for size in sizes]
    recording = write_recording(tmp_path / "rec.jsonl", proposals, metric="seconds", direction="lower")
    return ar.ReplayProposer(recording)


def custom(tmp_path: Path, llm: LLMServer, sizes: list[int]) -> ar.Proposer:
    return TryBatchSizes(sizes)


PROPOSERS: dict[str, Callable[[Path, LLMServer, list[int]], ar.Proposer]] = {
    "litellm": litellm,
    "replay": replay,
    "custom": custom,
}


@pytest.fixture(params=list(PROPOSERS))
def build(request: pytest.FixtureRequest, tmp_path: Path, llm: LLMServer) -> Callable[[list[int]], ar.Proposer]:
    (tmp_path / "train.py").write_text(CELL)
    return lambda sizes: PROPOSERS[request.param](tmp_path, llm, sizes)


def session(tmp_path: Path, proposer: ar.Proposer, **options: Any) -> ar.Session:
    options.setdefault("minimize", "seconds")
    return ar.create_session(tmp_path / "train.py", proposer=proposer, **options)


def test_a_session_keeps_the_better_cells_and_ends_when_the_proposer_is_done(
    tmp_path: Path, build: Callable[[list[int]], ar.Proposer]
) -> None:
    done = session(tmp_path, build([4, 2, 8])).run()
    assert [(r.run, r.status, r.metric) for r in done.runs] == [
        (1, "keep", 10.0),
        (2, "keep", 2.5),
        (3, "discard", 5.0),
        (4, "keep", 1.25),
    ]
    assert done.best.code == with_batch(8) and done.best.hypothesis == "batch size 8"
    assert done.stop_reason == "done"


def test_the_context_holds_the_task_the_history_and_the_best_code(
    tmp_path: Path, build: Callable[[list[int]], ar.Proposer]
) -> None:
    proposer = build([4])
    seen: list[ar.ProposalContext] = []
    original = proposer.propose

    def spy(context: ar.ProposalContext, on_delta: Any = None) -> ar.Proposal:
        seen.append(context)
        return original(context, on_delta)

    proposer.propose = spy  # type: ignore[method-assign]
    session(tmp_path, proposer, constraints=["memory_gb <= 4"]).run()
    first, second = seen[:2]
    assert first.task.metric == "seconds" and first.task.constraint_texts == ("memory_gb <= 4",)
    assert [r.run for r in first.history] == [1] and first.best.code == CELL
    assert second.best.run == 2 and second.best.code == with_batch(4)
    assert "# train" in first.document and "`memory_gb <= 4`" in first.document  # the session's prompt.md


def test_streamed_text_is_the_answer(tmp_path: Path, build: Callable[[list[int]], ar.Proposer]) -> None:
    done = session(
        tmp_path,
        build(
            [],
        ),
        max_iterations=0,
    ).run()  # a baseline to propose from
    context = ar.ProposalContext(task=done.task, history=done.runs, best=done.runs[0])
    proposer = build([4])
    deltas: list[str] = []
    proposal = proposer.propose(context, deltas.append)
    assert proposal.code == with_batch(4) and proposal.hypothesis == "batch size 4"
    assert "".join(deltas) == proposal.text  # streamed, or (custom) no text at all
    assert isinstance(proposer.propose(context), ar.Proposal)  # on_delta is optional


def test_infer_task_drafts_a_task_or_says_how_to_give_one(
    tmp_path: Path, build: Callable[[list[int]], ar.Proposer]
) -> None:
    proposer = build([])
    metrics = {"seconds": 10.0, "memory_gb": 1.0}
    try:
        draft = proposer.infer_task(CELL, metrics, ["train.py"])
    except ar.ProposalError as err:
        assert isinstance(proposer, TryBatchSizes)  # the default: it cannot
        assert "pass --maximize METRIC or --minimize METRIC" in str(err)
        return
    assert isinstance(draft, ar.TaskDraft)
    assert draft.metric == "seconds" and draft.direction == "lower"


def test_parallel_requests_are_safe(tmp_path: Path, build: Callable[[list[int]], ar.Proposer]) -> None:
    done = session(tmp_path, build([4, 2, 8, 5]), parallel=2).run()
    assert sorted(r.metric or 0 for r in done.runs[1:]) == [1.25, 2.0, 2.5, 5.0], [
        (r.run, r.status, r.error, r.stderr_tail) for r in done.runs
    ]
    assert [r.run for r in done.runs] == [1, 2, 3, 4, 5]


def test_check_and_prepare_pass_when_the_proposer_can_work(build: Callable[[list[int]], ar.Proposer]) -> None:
    proposer = build([])
    proposer.prepare()
    proposer.check()
    assert proposer.model


def test_every_stream_is_closed_by_the_request_that_read_it(llm: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stream left to the garbage collector may be closed in the middle of a later request,
    # which then waits forever for the connection pool it holds: each is closed at once.
    from jupyter_autoresearch.proposers._litellm import import_litellm

    litellm = import_litellm()
    real, opened = litellm.completion, []

    def completion(**kwargs: Any) -> Any:
        opened.append(real(**kwargs))
        return opened[-1]

    monkeypatch.setattr(litellm, "completion", completion)
    llm.add(answer("read to the end", with_batch(2)), Reply(answer("stopped while streaming", with_batch(3)), chunk=4))
    proposer = ar.LiteLLMProposer(ar.ModelSettings("openai/test", api_base=llm.url))
    best = ar.RunRecord(run=1, segment=0, status="keep", metric=10.0, code=CELL)
    context = ar.ProposalContext(task=ar.TaskSpec(metric="seconds", direction="lower"), history=(best,), best=best)
    assert proposer.propose(context).code == with_batch(2)

    def stop(text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        proposer.propose(context, stop)
    assert len(opened) == 2 and all(stream._closed for stream in opened)
