"""What the checks after a candidate cost: sending its result out, comparing it with the
baseline's (--same-output) and running a holdout on it, in the checking worker.

Measured side by side, interleaved so machine noise hits all alike, for a candidate whose
result is a DataFrame of 10,000 and of 1,000,000 rows (5 float columns):

  bare       ForkEvaluator.evaluate() of the candidate, nothing sent back
  export     the same, sending ``result`` back cloudpickled (export=("result",))
  checks     HoldoutWorker.check() of what it sent: unpickled with the baseline's, compared
             (pandas.testing), and a holdout that reads it

    python benchmarks/holdout_cost.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from jupyter_autoresearch import EvaluationSettings, ForkEvaluator, WorkerSetup  # noqa: E402
from jupyter_autoresearch.isolation._holdout import HoldoutSpec, HoldoutWorker  # noqa: E402

CELL = """\
import numpy as np
import pandas as pd

result = pd.DataFrame(np.random.default_rng(0).normal(size=({rows}, 5)), columns=list("abcde"))
print("METRIC x=1")
"""
HOLDOUT = "print(f\"METRIC holdout_x={float(result['a'].mean()):.6f}\")\n"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(folder: Path, rows: int, runs: int) -> None:
    code = CELL.format(rows=rows)
    setup = WorkerSetup(folder=folder, preimport=("numpy", "pandas", "cloudpickle"))
    settings = EvaluationSettings(timeout=120)
    spec = HoldoutSpec(holdout=HOLDOUT, holdout_name="holdout.py", inputs=("result",), same_output=("result",))
    with ForkEvaluator(settings) as evaluator:
        evaluator.start(setup)
        worker = HoldoutWorker(spec, settings)
        worker.start(setup)
        try:
            [baseline] = evaluator.evaluate([code], export=("result",))
            assert baseline.exported is not None
            worker.reference(baseline.exported)
            samples: dict[str, list[float]] = {"bare": [], "export": [], "checks": []}

            def check() -> None:
                [result] = worker.check([baseline.exported])
                assert not result.differences and result.metrics, result

            for _ in range(runs):
                samples["bare"].append(timed(lambda: evaluator.evaluate([code])))
                samples["export"].append(timed(lambda: evaluator.evaluate([code], export=("result",))))
                samples["checks"].append(timed(check))
        finally:
            worker.close()
    bare, export, checks = (statistics.median(samples[k]) * 1000 for k in ("bare", "export", "checks"))
    size = len(baseline.exported) / 2**20
    print(
        f"{rows:>9,} rows ({size:.1f} MiB pickled): candidate {bare:.0f} ms, sending the result back "
        f"+{export - bare:.0f} ms, checks {checks:.0f} ms; a checked candidate costs "
        f"{(export + checks) / bare:.2f}x ({runs} runs each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for rows in (10_000, 1_000_000):
            measure(Path(folder), rows, args.runs)


if __name__ == "__main__":
    main()
