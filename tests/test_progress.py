"""The CLI's progress output, fed events with a clock the test moves."""

from __future__ import annotations

import io

from jupyter_autoresearch import (
    Decision,
    ProposalReady,
    ProposalStarted,
    RunRecord,
    SessionStarted,
    Stopped,
    TaskSpec,
)
from jupyter_autoresearch.cli._progress import ProgressPrinter
from jupyter_autoresearch.views._meter import meter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(run: int, status: str, metric: float, **extra: object) -> RunRecord:
    return RunRecord(run=run, segment=0, status=status, metric=metric, parent=None if run == 1 else 1, **extra)  # type: ignore[arg-type]


def test_a_slow_model_is_never_silent_without_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, total=5, clock=clock)
    printer(SessionStarted("s", TaskSpec(metric="x"), "openai/slow", False, 0))
    printer(ProposalStarted("s", 2, 0, "openai/slow", None))
    for _ in range(1, 75):
        clock.now += 1
        printer.tick()
    notes = [line for line in stream.getvalue().splitlines() if "waiting" in line]
    assert notes == [
        "  .. waiting for the model (10 s)",
        "  .. waiting for the model (30 s)",
        "  .. waiting for the model (60 s)",
    ]
    printer(ProposalReady("s", 2, "h", "code", None, None, 100, None))
    clock.now += 30
    printer.tick()  # the answer came: no more notes
    assert stream.getvalue().count("waiting") == 3


def test_the_bar_in_a_terminal_shows_count_eta_the_wait_and_the_money() -> None:
    stream, clock = Terminal(), Clock()
    printer = ProgressPrinter(stream, total=4, clock=clock, colour=False)
    printer(SessionStarted("s", TaskSpec(metric="x"), "m", False, 0))
    printer(Decision("s", record(1, "keep", 1.0), record(1, "keep", 1.0)))
    printer(ProposalStarted("s", 2, 0, "m", 0.0125))
    clock.now += 12
    printer.tick()
    assert "0/4 runs" in stream.getvalue() and "waiting for the model (12 s)" in stream.getvalue()
    assert "this request at most $0.0125" in stream.getvalue()
    printer(ProposalReady("s", 2, "h", "code", None, None, 900, 0.004))
    printer(Decision("s", record(2, "keep", 2.0, tokens=900, cost_usd=0.004), record(2, "keep", 2.0)))
    text = stream.getvalue()
    assert "1/4 runs" in text and "spent $0.0040" in text
    assert "#2   keep       x=2" in text and "+1 (+100.00%)" in text and "900 tokens  $0.0040" in text
    assert "runs [" not in text.split("#2")[1].splitlines()[0]  # with a bar the line needs no count
    printer(Stopped("s", "max-iterations", "reached --max-iterations 4", record(2, "keep", 2.0), 2))
    assert printer.bar is None and "this run: 900 tokens, $0.0040" in stream.getvalue()


def test_the_meter_reads_count_elapsed_eta_and_rate() -> None:
    assert meter(3, 20, 12.0) == "3/20 runs [00:12<01:08,  4.00s/run]"
    assert meter(3, None, 12.0).startswith("3 runs [00:12, ")
