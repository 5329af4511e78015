"""Harness cost per evaluation, measured side by side on the marketing baseline.

Three ways to run the same cell, each timed end to end from the caller's side:
  cold      `python optimise.py` in a new process (what a terminal loop pays),
  inprocess exec() of the code in this process, pandas already imported (the floor),
  warmfork  ForkEvaluator: a forked child of the warm worker, output captured and parsed.

    python benchmarks/evaluation_overhead.py [--runs 30]

Prints medians and the two ratios the design sets targets for
(cold / warmfork >= 10, warmfork / inprocess <= 1.5).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "marketing_campaign_estimations.csv"
BASELINE = '''\
import pandas as pd

BUDGET = 30_000_000

df = pd.read_csv("marketing_campaign_estimations.csv", sep="\\t")
df["roi"] = df["revenue"] / df["marketing_spending"]
df = df.sort_values("roi", ascending=False)
chosen = df[df["marketing_spending"].cumsum() <= BUDGET]

print(f"METRIC revenue_millions={chosen['revenue'].sum() / 1e6:.4f}")
print(f"METRIC spend_millions={chosen['marketing_spending'].sum() / 1e6:.4f}")
'''


def timed(action, runs: int) -> list[float]:
    action()  # warm caches (disk, imports) so every contender starts equal
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    from jupyter_autoresearch import ForkEvaluator, WorkerSetup

    folder = Path(tempfile.mkdtemp(prefix="autoresearch-bench-"))
    shutil.copy(DATA, folder)
    (folder / "optimise.py").write_text(BASELINE)
    os.chdir(folder)
    import pandas  # noqa: F401 - the in-process contender has pandas warm, like the worker

    def cold() -> None:
        done = subprocess.run([sys.executable, "optimise.py"], capture_output=True, text=True)
        assert "METRIC revenue_millions=107.9158" in done.stdout, done.stderr

    def inprocess() -> None:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(BASELINE, "<cell>", "exec"), {"__name__": "__main__"})
        assert "METRIC revenue_millions=107.9158" in buffer.getvalue()

    with ForkEvaluator(timeout=60) as evaluator:
        evaluator.start(WorkerSetup(folder=folder, preimport=("pandas",),
                                    off_limits=("marketing_campaign_estimations.csv",)))

        def warmfork() -> None:
            [outcome] = evaluator.evaluate([BASELINE])
            assert outcome.metrics["revenue_millions"] == 107.9158, outcome

        # Interleave the contenders so machine noise hits them alike.
        results: dict[str, list[float]] = {"cold": [], "inprocess": [], "warmfork": []}
        for _ in range(max(1, args.runs // 10)):
            for name, action in (("cold", cold), ("inprocess", inprocess), ("warmfork", warmfork)):
                results[name] += timed(action, 10)
    median = {name: statistics.median(samples) * 1000 for name, samples in results.items()}
    for name, value in median.items():
        spread = statistics.quantiles([s * 1000 for s in results[name]], n=4)
        print(f"{name:>10}: median {value:8.2f} ms   (quartiles {spread[0]:.2f} .. {spread[2]:.2f} ms, "
              f"{len(results[name])} runs)")
    print(f"cold / warmfork      = {median['cold'] / median['warmfork']:.1f}x   (target >= 10x)")
    print(f"warmfork / inprocess = {median['warmfork'] / median['inprocess']:.2f}x   (target <= 1.5x)")
    print(f"warmfork - inprocess = {median['warmfork'] - median['inprocess']:.2f} ms per evaluation")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
