"""What the sandbox costs: the same evaluations and worker start-ups, confined and not.

The sandbox is entered once per worker, so a candidate should cost what it costs
unconfined; starting a worker pays bubblewrap's set-up once. Measured side by side,
interleaved so machine noise hits both alike:

  per run     ForkEvaluator.evaluate() of one candidate (the marketing cells)
  start-up    ForkEvaluator.start() until the worker is warm (bare, and with pandas + cvxpy)

    python benchmarks/sandbox_cost.py [--runs 40] [--starts 8]
"""

from __future__ import annotations

import argparse
import functools
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from evaluation_overhead import DATA, WORKLOADS  # noqa: E402

from jupyter_autoresearch import EvaluationSettings, ForkEvaluator, WorkerSetup, imported_modules  # noqa: E402

MODES = ("off", "on")


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def interleaved(actions: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in actions}
    for action in actions.values():
        action()  # warm caches so both start equal
    for _ in range(rounds):
        for name, action in actions.items():
            for _ in range(per_round):
                start = time.perf_counter()
                action()
                results[name].append(time.perf_counter() - start)
    return results


def per_run(folder: Path, runs: int) -> None:
    for title, (code, expected) in WORKLOADS.items():
        setup = WorkerSetup(folder=folder, preimport=imported_modules(code), off_limits=(DATA.name,))
        evaluators = {mode: ForkEvaluator(EvaluationSettings(timeout=60, sandbox=mode)) for mode in MODES}  # type: ignore[arg-type]
        try:
            for evaluator in evaluators.values():
                evaluator.start(setup)
            assert evaluators["on"].sandboxed and not evaluators["off"].sandboxed

            def evaluate(evaluator: ForkEvaluator, code: str = code, expected: float = expected) -> None:
                [outcome] = evaluator.evaluate([code])
                assert outcome.metrics["revenue_millions"] == expected, outcome

            actions = {mode: functools.partial(evaluate, e) for mode, e in evaluators.items()}
            results = interleaved(actions, max(1, runs // 10), 10)
        finally:
            for evaluator in evaluators.values():
                evaluator.close()
        off, on = median_ms(results["off"]), median_ms(results["on"])
        count = len(results["on"])
        print(f"per run, {title}: unconfined {off:.1f} ms, sandboxed {on:.1f} ms ({on / off:.2f}x, {count} runs)")


def start_up(folder: Path, starts: int) -> None:
    cases = {"bare worker": (), "pandas + cvxpy": ("pandas", "cvxpy")}
    for title, preimport in cases.items():
        setup = WorkerSetup(folder=folder, preimport=preimport)

        def start(mode: str, setup: WorkerSetup = setup) -> None:
            with ForkEvaluator(EvaluationSettings(timeout=60, sandbox=mode)) as evaluator:  # type: ignore[arg-type]
                evaluator.start(setup)

        actions = {mode: functools.partial(start, mode) for mode in MODES}
        results = interleaved(actions, starts, 1)
        off, on = median_ms(results["off"]), median_ms(results["on"])
        print(f"start-up, {title}: unconfined {off:.0f} ms, sandboxed {on:.0f} ms (+{on - off:.0f} ms, {starts} each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--starts", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="autoresearch-bench-"))
    try:
        shutil.copy(DATA, folder)
        per_run(folder, args.runs)
        start_up(folder, args.starts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
