"""The panel under load: a fast token stream and a thousand-run history.

    python benchmarks/panel_throughput.py

Measures, in one run, the cost per streamed token with the panel subscribed against a
bare subscriber (so the ratio is the panel's overhead), how many redraws the
throttle lets through, and how long one full redraw of a 1,000-run history takes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> None:
    import jupyter_autoresearch as ar
    from jupyter_autoresearch.notebook._panel import Panel
    from jupyter_autoresearch.protocol._records import RunRecord

    folder = Path(tempfile.mkdtemp())
    (folder / "bench.py").write_text("print('METRIC x=1')\n")
    (folder / "rec.jsonl").write_text('{"type": "config", "name": "b", "metricName": "x"}\n')
    session = ar.create_session(folder / "bench.py", maximize="x", model=f"replay:{folder / 'rec.jsonl'}")
    session._runs = [
        RunRecord(
            run=i,
            segment=i // 400,
            status=("keep", "discard", "infeasible", "crash")[i % 4],
            metric=None if i % 4 == 3 else float(i % 97),
            metrics={"x": float(i % 97), "cost": 1.0},
            code=f"print({i})",
            hypothesis=f"idea {i} " * 5,
        )
        for i in range(1, 1001)
    ]
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
    draws = []
    for _ in range(5):
        start = time.perf_counter()
        panel._draw_runs()
        draws.append(time.perf_counter() - start)
    print(f"full redraw with 1,000 runs (table page + run list + chart): {statistics.median(draws) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
