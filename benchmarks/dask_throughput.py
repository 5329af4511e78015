"""Candidates per second on Dask against the local warm fork, measured side by side.

Two clusters on 127.0.0.1 (``dask scheduler`` with one ``dask worker``, and another
with two; each worker one process, one thread) and the local ForkEvaluator, driven the
same way: ``submit()`` keeps as many candidates in flight as there are workers, and
takes each outcome as it finishes. Rounds are interleaved so machine noise hits every
contender alike.

  throughput  a CPU-bound cell (a pure-Python loop of a few hundred ms): candidates
              per second, local (1 in flight), Dask with 1 worker, Dask with 2 workers
              (2 in flight), and local with 2 in flight for reference.
  overhead    a cell that only prints its metric, one at a time: the time per
              candidate, local against Dask; the difference is what Dask adds.

    python benchmarks/dask_throughput.py [--candidates 12] [--rounds 3] [--runs 40]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from dask_cluster import DaskCluster  # noqa: E402

from jupyter_autoresearch import DaskEvaluator, EvaluationSettings, Evaluator, ForkEvaluator, WorkerSetup  # noqa: E402

CPU_BOUND = """\
total = 0
for i in range(4_000_000):
    total += i * i % 7
print(f"METRIC total={total}")
"""
TRIVIAL = "print('METRIC x=1')\n"


def throughput(evaluator: Evaluator, code: str, count: int, width: int, ran: list[float] | None = None) -> float:
    """Candidates per second with ``width`` in flight, over ``count`` candidates; each
    candidate's own run time goes to ``ran``."""
    start = time.perf_counter()
    pending: set[concurrent.futures.Future[object]] = set()
    submitted = done = 0
    while done < count:
        while submitted < count and len(pending) < width:
            pending.add(evaluator.submit(code))  # type: ignore[arg-type]
            submitted += 1
        finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in finished:
            outcome = future.result()
            assert outcome.kind == "ok", outcome  # type: ignore[attr-defined]
            if ran is not None:
                ran.append(outcome.duration_s)  # type: ignore[attr-defined]
        done += len(finished)
    return count / (time.perf_counter() - start)


def latency(evaluator: Evaluator, code: str) -> float:
    start = time.perf_counter()
    outcome = evaluator.submit(code).result()
    assert outcome.kind == "ok", outcome
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12, help="candidates per round and contender")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40, help="trivial candidates per contender for the overhead")
    args = parser.parse_args()
    space = Path(tempfile.mkdtemp(prefix="autoresearch-bench-"))
    target = space / "target"
    target.mkdir()
    one, two = DaskCluster(space / "one"), DaskCluster(space / "two")
    evaluators: list[Evaluator] = []
    try:
        one.add_worker("a", wait=False)
        two.add_worker("b1", wait=False)
        two.add_worker("b2", wait=False)
        one.wait_for("a")
        two.wait_for("b1", "b2")
        contenders: dict[str, tuple[Evaluator, int]] = {
            "local": (ForkEvaluator(EvaluationSettings(timeout=120)), 1),
            "dask, 1 worker": (DaskEvaluator(one.address, EvaluationSettings(timeout=120)), 1),
            "dask, 2 workers": (DaskEvaluator(two.address, EvaluationSettings(timeout=120)), 2),
            "local, 2 in flight": (ForkEvaluator(EvaluationSettings(timeout=120)), 2),
        }
        for evaluator, _ in contenders.values():
            evaluators.append(evaluator)
            evaluator.start(WorkerSetup(folder=target))
            throughput(evaluator, CPU_BOUND, 2, 2)  # warm: first tasks, imports, caches

        rates: dict[str, list[float]] = {name: [] for name in contenders}
        ran: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, (evaluator, width) in contenders.items():
                rates[name].append(throughput(evaluator, CPU_BOUND, args.candidates, width, ran[name]))
        print(f"CPU-bound cell, {args.candidates} candidates x {args.rounds} rounds (median candidates/s, and")
        print("the median time one candidate ran: longer with two at once means the cores were not free):")
        for name, values in rates.items():
            value, alone = statistics.median(values), statistics.median(ran[name])
            rounds = ", ".join(f"{v:.2f}" for v in rates[name])
            print(f"  {name:>20}: {value:6.2f}/s   ran {alone:.2f} s each   (rounds: {rounds})")

        def ratio(top: str, bottom: str) -> str:
            # Per round, then the median: contenders of one round ran minutes apart at most.
            per_round = [a / b for a, b in zip(rates[top], rates[bottom], strict=True)]
            return f"{statistics.median(per_round):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in per_round)})"

        print(f"  dask 2 workers / 1 worker = {ratio('dask, 2 workers', 'dask, 1 worker')}   target >= 1.7x")
        print(f"  dask 1 worker / local     = {ratio('dask, 1 worker', 'local')}")
        print(f"  local 2 in flight / 1     = {ratio('local, 2 in flight', 'local')}   what two cores gave")

        pairs: dict[str, Callable[[], float]] = {
            "local": lambda: latency(contenders["local"][0], TRIVIAL),
            "dask": lambda: latency(contenders["dask, 1 worker"][0], TRIVIAL),
        }
        times: dict[str, list[float]] = {name: [] for name in pairs}
        for _ in range(args.runs):
            for name, measure in pairs.items():
                times[name].append(measure())
        ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
        print(f"Trivial cell, one at a time, {args.runs} runs each (median ms per candidate):")
        for name, value in ms.items():
            quartiles = statistics.quantiles([t * 1000 for t in times[name]], n=4)
            print(f"  {name:>20}: {value:7.2f} ms   (quartiles {quartiles[0]:.2f} .. {quartiles[2]:.2f})")
        print(f"  Dask overhead per candidate = {ms['dask'] - ms['local']:.2f} ms")
    finally:
        for evaluator in evaluators:
            evaluator.close()
        for cluster in (one, two):
            cluster.close()
        shutil.rmtree(space, ignore_errors=True)


if __name__ == "__main__":
    main()
