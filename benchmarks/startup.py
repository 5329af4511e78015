"""Start-up: from the baseline's end to the first proposal's run, and the marginal iteration.

    python benchmarks/startup.py [--sessions 3]

Each session runs in a fresh Python process (so litellm, pandas and the rest are imported
cold, as in a new kernel or a CLI run) on the marketing baseline cell, asking litellm for
real against the local OpenAI-compatible test server (``tests/llm_server.py``), which
answers at once. Two ways, side by side:

  background  as shipped: litellm is imported in a thread while the worker starts and the
              model configuration is checked before the baseline;
  on demand   litellm imported by the first request, after the baseline (as before).

Printed, medians over the sessions: the time from the end of the baseline to the start of
the first proposal's evaluation, the marginal iteration (request, evaluation, decision,
log) and a cold ``python cell.py`` of the same cell, and their ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from evaluation_overhead import BASELINE  # noqa: E402
from llm_server import LLMServer, Reply, answer  # noqa: E402

CHILD = """
import json, sys, time
import jupyter_autoresearch as ar

folder, url, mode = sys.argv[1], sys.argv[2], sys.argv[3]


class OnDemand(ar.LiteLLMProposer):
    def prepare(self):
        pass

    def check(self):
        pass


settings = ar.ModelSettings("openai/test", api_base=url)
proposer = ar.LiteLLMProposer(settings) if mode == "background" else OnDemand(settings)
stamps = {}


def on_event(event):
    now = time.perf_counter()
    if isinstance(event, ar.BaselineDone):
        stamps["baseline_done"] = now
    elif isinstance(event, ar.EvaluationStarted):
        stamps.setdefault(f"run{event.run}", now)


session = ar.create_session(folder + "/optimise.py", maximize="revenue_millions", proposer=proposer,
                            max_iterations=12, name=mode)
session.subscribe(on_event)
session.run()
print(json.dumps(stamps))
"""


def session_times(folder: Path, url: str, mode: str) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), url, mode], capture_output=True, text=True, env=env, check=True
    )
    stamps = json.loads(done.stdout.strip().splitlines()[-1])
    first = stamps["run2"] - stamps["baseline_done"]
    starts = [stamps[f"run{run}"] for run in range(4, 13)]  # steady state, past the first requests
    marginal = statistics.median(b - a for a, b in itertools.pairwise(starts))
    return first, marginal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    server = LLMServer().start()
    variant = BASELINE.replace("ascending=False)", 'ascending=False, kind="stable")')
    server.default = lambda request: Reply(answer("a stable sort", variant), chunk=400)
    results: dict[str, list[tuple[float, float]]] = {"background": [], "on demand": []}
    cold: list[float] = []
    try:
        for _ in range(args.sessions):
            for mode in results:
                folder = Path(tempfile.mkdtemp())
                shutil.copy(ROOT / "examples" / "marketing_campaign_estimations.csv", folder)
                (folder / "optimise.py").write_text(BASELINE)
                results[mode].append(session_times(folder, server.url, mode.split()[0]))
                start = time.perf_counter()
                subprocess.run([sys.executable, "optimise.py"], cwd=folder, capture_output=True, check=True)
                cold.append(time.perf_counter() - start)
                shutil.rmtree(folder)
    finally:
        server.close()
    cold_s = statistics.median(cold)
    print(f"cold `python cell.py`: {cold_s * 1000:.0f} ms")
    for mode, times in results.items():
        first = statistics.median(t[0] for t in times)
        marginal = statistics.median(t[1] for t in times)
        print(
            f"{mode:>10}: baseline end -> first proposal's run {first:.2f} s; marginal iteration "
            f"{marginal * 1000:.0f} ms ({cold_s / marginal:.1f}x cheaper than a cold run)"
        )


if __name__ == "__main__":
    main()
