"""The panel under load: a fast token stream, and decisions arriving faster than it can draw.

    python benchmarks/panel_throughput.py

Measures, in one run: the cost per streamed token with the panel subscribed against a
bare subscriber (so the ratio is the panel's overhead) and how many reasoning redraws
the throttle lets through; then, with 1,000 and with 10,000 runs in the history, how long
one full redraw of the history and chart takes, what a decision costs the loop's thread
(the redraw happens in a timer thread, at most ten times a second) and how many redraws
a burst of decisions causes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def history(count: int) -> list:  # type: ignore[type-arg]
    from jupyter_autoresearch.protocol._records import RunRecord

    return [
        RunRecord(
            run=i,
            segment=i // 400,
            status=("keep", "discard", "infeasible", "crash")[i % 4],
            metric=None if i % 4 == 3 else float(i % 97),
            metrics={"x": float(i % 97), "cost": 1.0},
            code=f"print({i})",
            hypothesis=f"idea {i} " * 5,
        )
        for i in range(1, count + 1)
    ]


def burst(panel, decision, seconds: float = 3.0):  # type: ignore[no-untyped-def]
    """Decisions as fast as a loop's thread can send them for ``seconds``; counts the redraws."""
    drawn: list[float] = []
    draw = panel._draw_runs_now

    def counted() -> None:
        draw()
        drawn.append(time.perf_counter())

    panel._draw_runs_now = counted
    costs: list[float] = []
    started = time.perf_counter()

    def loop() -> None:
        while time.perf_counter() - started < seconds:
            start = time.perf_counter()
            panel.on_event(decision)
            costs.append(time.perf_counter() - start)
            time.sleep(0.001)

    thread = threading.Thread(target=loop)
    thread.start()
    thread.join()
    return len(costs), costs, drawn, time.perf_counter() - started


def main() -> None:
    import jupyter_autoresearch as ar
    from jupyter_autoresearch.notebook._panel import Panel

    folder = Path(tempfile.mkdtemp())
    (folder / "bench.py").write_text("print('METRIC x=1')\n")
    (folder / "rec.jsonl").write_text('{"type": "config", "name": "b", "metricName": "x"}\n')
    session = ar.create_session(folder / "bench.py", maximize="x", model=f"replay:{folder / 'rec.jsonl'}")
    session._runs = history(1000)
    tokens = 20_000

    def stream(subscriber) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for index in range(tokens):
            subscriber(ar.ReasoningDelta(session.name, 7, f"token{index} "))
        return (time.perf_counter() - start) / tokens * 1e6

    bare = statistics.median(stream(lambda event: None) for _ in range(3))
    panel = Panel(session)
    with_panel = statistics.median(stream(panel.on_event) for _ in range(3))
    print(f"per token: bare subscriber {bare:.2f} µs, with the panel {with_panel:.2f} µs")

    # A stream spread over three seconds (about 6,700 tokens a second): count the redraws.
    redraws: list[float] = []
    panel.reasoning.observe(lambda change: redraws.append(time.perf_counter()), "value")
    started = time.perf_counter()
    for index in range(tokens):
        panel.on_event(ar.ReasoningDelta(session.name, 8, f"t{index} "))
        if index % 100 == 0:
            time.sleep(0.015)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)
    print(
        f"reasoning redraws: {len(redraws)} for {tokens:,} tokens over {elapsed:.1f} s "
        f"= {len(redraws) / elapsed:.1f} per second (cap: 10)"
    )

    for count in (1000, 10_000):
        session._runs = history(count)
        panel = Panel(session)
        draws = []
        for _ in range(3):
            start = time.perf_counter()
            panel._draw_runs()
            draws.append(time.perf_counter() - start)
        full = statistics.median(draws)
        decisions, costs, drawn, elapsed = burst(panel, ar.Decision(session.name, session._runs[-1], None))
        time.sleep(full + 0.3)
        print(
            f"{count:,} runs: a full redraw (table page, run list, chart) takes {full * 1000:.0f} ms; "
            f"{decisions:,} decisions in {elapsed:.1f} s cost the loop {statistics.median(costs) * 1e6:.0f} µs each "
            f"(unthrottled: {full * 1000:.0f} ms each) and caused {len(drawn)} redraws "
            f"= {len(drawn) / elapsed:.1f} per second (cap: 10)"
        )


if __name__ == "__main__":
    main()
