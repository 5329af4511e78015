"""The kernel's side of the frontend protocol: golden messages, acks, queueing and reattaching."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FILES, metric_cell, write_recording

import jupyter_autoresearch as ar
from jupyter_autoresearch.notebook._bridge import Bridge, Delivery, parse_page_message
from jupyter_autoresearch.notebook._inserter import NO_EXTENSION, CellInserter
from jupyter_autoresearch.protocol._records import RunRecord
from jupyter_autoresearch.views._cells import variant_cell

GOLDEN = json.loads((FILES / "bridge_messages.json").read_text())


class FakeComm:
    """A comm whose other end is the test: records what the kernel sends."""

    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello
        self.sent: list[dict[str, Any]] = []
        self.receive: Callable[[dict[str, Any]], None] | None = None
        self.close: Callable[[dict[str, Any]], None] | None = None

    def send(self, data: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(data)))  # what crosses the wire is JSON

    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.receive = callback

    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self.close = callback

    def page_says(self, data: dict[str, Any]) -> None:
        assert self.receive is not None
        self.receive({"content": {"comm_id": "c", "data": data}})


@pytest.fixture
def wire() -> tuple[Bridge, list[FakeComm]]:
    comms: list[FakeComm] = []

    def open_comm(hello: Any) -> FakeComm:
        comms.append(FakeComm(hello))
        return comms[-1]

    link = Bridge(open_comm)
    assert link.connect()
    return link, comms


def test_the_golden_exchange(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    comm = comms[0]
    steps = iter(GOLDEN["exchanges"])
    hello = next(steps)
    assert comm.hello == hello["kernel"]
    comm.page_says(hello["page"])
    assert link.page == GOLDEN["page"] and link.version == GOLDEN["version"]

    record = RunRecord(
        run=2,
        segment=0,
        status="keep",
        metric=2.0,
        metrics={"x": 2.0},
        code="print('METRIC x=2')",
        hypothesis="double it",
    )
    source, metadata = variant_cell("s", record, "x")
    made: list[Delivery] = [
        link.insert("anchor", "s", 2, source, metadata),
        link.insert("anchor", "s", 2, source, metadata),
        link.mark("s", 2, "refused by the constraints of segment 1 (x <= 1)"),
        link.replace("anchor", "print('METRIC x=2')"),
        link.replace("gone", "print('METRIC x=2')"),
        link.open("s_best.ipynb"),
    ]
    link.state("s", {"run": 2, "metric": 2.0})
    edits = [next(steps) for _ in made]
    state = next(steps)
    assert comm.sent == [e["kernel"] for e in edits] + [state["kernel"]]
    assert state["page"] is None and link.pending() == made
    for exchange in edits:
        comm.page_says(exchange["page"])
    assert [d.status for d in made] == ["done", "done", "done", "done", "failed", "done"]
    assert made[1].ack == edits[1]["page"] and made[1].ack["created"] is False
    assert made[4].error == "the benchmark cell gone is not in an open notebook"
    assert link.pending() == [made[4]]  # a failed edit is kept for the next page

    export = next(steps)
    asked: list[tuple[str, str]] = []

    def on_export(to: str, arg: str, done: Callable[[bool, str], None]) -> None:
        asked.append((to, arg))
        done(True, "wrote best.py")

    link.on_export = on_export
    comm.page_says(export["page"])
    assert asked == [("file", "best.py")] and comm.sent[-1] == export["kernel"]


def test_page_messages_are_parsed_strictly() -> None:
    for exchange in GOLDEN["exchanges"]:
        if exchange["page"] is not None:
            assert parse_page_message(exchange["page"]) == exchange["page"]
    for bad in [None, [], {"type": "attach"}, {"type": "ack", "request": "r1"}, {"type": "ack", "ok": "yes"},
                {"type": "export", "request": "e", "page": "p", "to": 3, "arg": ""}, {"type": "nope"}]:  # fmt: skip
        assert parse_page_message(bad) is None


def test_edits_wait_for_a_page_and_follow_the_live_one(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    comm = comms[0]
    first = link.insert("anchor", "s", 2, "x = 2\n", {})
    assert first.status == "queued" and comm.sent == []  # no page yet: nothing is lost, nothing sent
    opened = link.open("a.ipynb")
    assert opened.status == "failed" and opened.error == "no notebook page is connected"  # never queued
    comm.page_says({"type": "attach", "page": "old", "version": "0.1.0"})
    assert [m["request"] for m in comm.sent] == [first.request] and comm.sent[0]["page"] == "old"
    second = link.insert("anchor", "s", 3, "x = 3\n", {})
    assert comm.sent[-1]["page"] == "old"

    # The page reloads: the old one never answers, the new one attaches and gets both again.
    comm.sent.clear()
    comm.page_says({"type": "attach", "page": "new", "version": "0.1.0"})
    assert [(m["request"], m["page"]) for m in comm.sent] == [(first.request, "new"), (second.request, "new")]
    comm.page_says({"type": "ack", "request": second.request, "ok": True, "index": 2, "created": True})
    comm.page_says({"type": "ack", "request": first.request, "ok": True, "index": 1, "created": True})
    assert first.status == second.status == "done" and link.pending() == []
    comm.page_says({"type": "ack", "request": first.request, "ok": True})  # a late duplicate is ignored
    assert first.status == "done"


def test_a_failed_edit_is_sent_again_when_a_page_attaches(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    comm = comms[0]
    comm.page_says({"type": "attach", "page": "p", "version": "0.1.0"})
    seen: list[str] = []
    edit = link.replace("anchor", "y = 1").then(lambda d: seen.append(d.status))
    comm.page_says({"type": "ack", "request": edit.request, "ok": False, "error": "not open"})
    assert seen == ["failed"]
    comm.page_says({"type": "attach", "page": "p", "version": "0.1.0"})  # the notebook was opened again
    assert comm.sent[-1] == {**comm.sent[0], "page": "p"}
    comm.page_says({"type": "ack", "request": edit.request, "ok": True})
    assert seen == ["failed", "done"] and link.pending() == []


def test_a_frontend_without_the_extension_refuses_the_comm(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    assert comms[0].close is not None
    comms[0].close({})
    assert link.refused and not link.connected
    edit = link.insert("anchor", "s", 2, "x\n", {})
    assert edit.status == "queued" and len(comms) == 1  # not opened again: nobody would answer


def test_a_comm_closed_after_pages_attached_opens_again(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    comms[0].page_says({"type": "attach", "page": "p", "version": "0.1.0"})
    assert comms[0].close is not None
    comms[0].close({})
    assert not link.refused and link.page is None
    edit = link.insert("anchor", "s", 2, "x\n", {})
    assert len(comms) == 2 and edit.status == "queued"
    comms[1].page_says({"type": "attach", "page": "q", "version": "0.1.0"})
    assert comms[1].sent[-1]["request"] == edit.request


def test_an_export_error_is_the_result(wire: tuple[Bridge, list[FakeComm]]) -> None:
    link, comms = wire
    comms[0].page_says({"type": "export", "request": "e1", "page": "p", "to": "cell", "arg": ""})
    assert comms[0].sent[-1] == {
        "type": "result",
        "request": "e1",
        "page": "p",
        "ok": False,
        "message": "no autoresearch session in this kernel yet; run a %%autoresearch cell first",
    }

    def broken(to: str, arg: str, done: Callable[[bool, str], None]) -> None:
        raise ar.ExportError("session s has no kept run to export yet; let the loop run first")

    link.on_export = broken
    comms[0].page_says({"type": "export", "request": "e2", "page": "p", "to": "cell", "arg": ""})
    assert comms[0].sent[-1]["ok"] is False and "no kept run" in comms[0].sent[-1]["message"]


def test_cells_of_a_session_are_marked_wherever_they_were_inserted(
    tmp_path: Path, wire: tuple[Bridge, list[FakeComm]]
) -> None:
    """A second %%autoresearch cell of the session marks runs the first cell inserted."""
    link, comms = wire
    comm = comms[0]
    comm.page_says({"type": "attach", "page": "p", "version": "0.1.0"})
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(
        tmp_path / "rec.jsonl", [("cheap", metric_cell(2)), ("pricey", metric_cell(3).replace("cost=1", "cost=5"))]
    )
    first = ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}", session="s")
    first.subscribe(CellInserter(first, link, "cell-a", "accepted"))
    first.run()
    inserts = [m for m in comm.sent if m["type"] == "insert"]
    assert [(m["run"], m["anchor_cell_id"]) for m in inserts] == [(2, "cell-a"), (3, "cell-a")]

    empty = write_recording(tmp_path / "empty.jsonl", [])
    second = ar.create_session(
        tmp_path / "bench.py", maximize="x", model=f"replay:{empty}", session="s", constraints=["cost <= 2"]
    )
    second.subscribe(CellInserter(second, link, "cell-b", "accepted"))  # another cell's inserter
    second.run()
    marks = [m for m in comm.sent if m["type"] == "mark"]
    assert [(m["session"], m["run"]) for m in marks] == [("s", 3)]
    assert "anchor_cell_id" not in marks[0] and "cost <= 2" in marks[0]["note"]


def test_the_panel_hears_of_cells_no_page_confirmed(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("better", metric_cell(2))])
    session = ar.create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}")
    reports: list[tuple[list[int], str]] = []
    headless = CellInserter(
        session,
        Bridge(lambda hello: None),
        None,
        "accepted",
        lambda runs, why: reports.append(([r.run for r in runs], why)),
    )
    session.subscribe(headless)
    session.run()
    assert reports[-1] == ([2], NO_EXTENSION)

    comms: list[FakeComm] = []
    link = Bridge(lambda hello: comms.append(FakeComm(hello)) or comms[-1])  # type: ignore[func-returns-value]
    link.connect()
    live = CellInserter(
        session, link, "anchor", "accepted", lambda runs, why: reports.append(([r.run for r in runs], why))
    )
    best = session.best_run
    assert best is not None
    live.insert(best)
    assert live.undelivered(grace=60) == ([], "")  # still within the page's time to answer
    runs, why = live.undelivered()
    assert runs == [best] and "no notebook page confirmed them" in why and "reload" in why
    comms[0].page_says({"type": "attach", "page": "p", "version": "0.1.0"})
    comms[0].page_says(
        {"type": "ack", "request": comms[0].sent[-1]["request"], "ok": True, "index": 1, "created": True}
    )
    assert live.undelivered() == ([], "") and reports[-1] == ([], "")
