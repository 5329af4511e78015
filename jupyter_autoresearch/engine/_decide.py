"""The pure rules of the loop: keep or discard a run, the best run, the confidence, and when to stop."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..isolation._evaluate import Outcome
from ..protocol._format import number
from ..protocol._hidden import HIDDEN_CHECK, hidden_path
from ..protocol._records import RunRecord, Status
from ..protocol._task import Limits, TaskSpec, Threshold

__all__ = [
    "MEASURED",
    "STOP_REASONS",
    "Refusal",
    "Verdict",
    "best_of",
    "best_satisfying",
    "better",
    "confidence",
    "judge",
    "mad",
    "median_metrics",
    "runs_without_keep",
    "segment_winner",
    "select_best",
    "stop_rule",
]

#: Why checks refused a run: its status, the reason, and the reason as the model reads it
#: (None: the same) when the first names something hidden from it.
Refusal = tuple[Status, str, str | None]

#: Why a loop can end ("up-to-date": a rerun whose proposer had nothing new).
STOP_REASONS = (
    "max-iterations",
    "plateau",
    "done",
    "up-to-date",
    "max-cost",
    "max-time",
    "user",
    "interrupted",
    "error",
)
#: Statuses whose recorded metrics measured the cell (what another segment's rules may judge).
MEASURED = frozenset({"keep", "discard", "infeasible"})


@dataclass(frozen=True)
class Verdict:
    """The status of a run and, when it was not kept, why.

    ``model_error`` is the reason as the model reads it, when ``error`` names something
    hidden from it; ``paired`` is the decision against the re-measured best (``--repeats``).
    """

    status: Status
    metric: float | None
    metrics: Mapping[str, float]
    repeats: tuple[float, ...]
    error: str | None = None
    model_error: str | None = None
    paired: Mapping[str, object] | None = None


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    return statistics.median(abs(v - middle) for v in values)


def median_metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Each metric's median over the repeats that reported it."""
    names = dict.fromkeys(name for o in outcomes for name in o.metrics)
    return {n: statistics.median(o.metrics[n] for o in outcomes if n in o.metrics) for n in names}


def judge(
    task: TaskSpec,
    outcomes: Sequence[Outcome],
    best: RunRecord | None,
    threshold: Threshold | None = None,
    *,
    refused: Refusal | None = None,
    incumbent: Sequence[float | None] = (),
) -> Verdict:
    """Decide a run's status from its evaluations.

    Failures come first (an off-limits change, a timeout, a crash, a refusal by the
    checks run after it, no primary metric), then the constraints, then the comparison
    with the best kept run of the segment: the run is kept only if it beats it by more
    than the threshold and, with repeats, by more than the two runs' spreads (MAD)
    together. Equal is not better.

    Args:
        refused: the status and reason the checks gave (an output that changed, a
            variable the checks need that the cell no longer defines).
        incumbent: the best run measured again beside each evaluation of this one
            (``--repeats``; None where that measurement failed). The comparison then
            uses the paired differences: their median must beat the threshold and
            their spread (MAD).
    """
    assert task.metric is not None
    touched = sorted({path for o in outcomes for path in o.touched})
    metrics = median_metrics(outcomes)
    primary = [o.metrics[task.metric] for o in outcomes if task.metric in o.metrics]
    metric = metrics.get(task.metric)

    def verdict(
        status: Status,
        error: str | None = None,
        model_error: str | None = None,
        paired: dict[str, object] | None = None,
    ) -> Verdict:
        return Verdict(status, metric, metrics, tuple(primary), error, model_error, paired)

    if touched:
        error = f"changed off-limits file {', '.join(touched)} (restored)"
        if any(hidden_path(path, task.hidden_files) for path in touched):
            return verdict("violation", error, "changed a file it must not touch (restored)")
        return verdict("violation", error)
    for kind in ("timeout", "crash"):
        failed = [o for o in outcomes if o.kind == kind]
        if failed:
            return verdict("timeout" if kind == "timeout" else "crash", failed[0].error or kind)
    if refused is not None:
        return verdict(*refused)
    if metric is None:
        refused_lines = [p for o in outcomes for p in o.problems if p.startswith(f"metric {task.metric} ")]
        reason = refused_lines[0] if refused_lines else f"the cell printed no METRIC {task.metric}=<number> line"
        return verdict("invalid", reason)
    broken = [(task.is_hidden(c), v) for c in task.constraints if (v := c.violation(metrics)) is not None]
    if broken:
        error = "; ".join(v for _, v in broken)
        if any(hidden for hidden, _ in broken):
            shown = [v for hidden, v in broken if not hidden] + [HIDDEN_CHECK]
            return verdict("infeasible", error, "; ".join(shown))
        return verdict("infeasible", error)
    if best is None or best.metric is None:
        return verdict("keep")
    threshold = threshold or Threshold()
    pairs = [
        (o.metrics[task.metric], b)
        for o, b in zip(outcomes, incumbent, strict=False)
        if task.metric in o.metrics and b is not None
    ]
    if pairs:
        return _judge_paired(task, metric, pairs, best, threshold, verdict)
    gain = task.better(metric, best.metric)
    need = threshold.amount(best.metric)
    noise = mad(primary) + mad(best.repeats)
    if gain > max(need, noise) and gain > 0:
        return verdict("keep")
    why = _why_not(gain, need, noise, threshold, len(primary))
    return verdict("discard", f"{task.metric} {number(metric)} vs best {number(best.metric)}: {why}")


def _why_not(gain: float, need: float, noise: float, threshold: Threshold, repeats: int) -> str:
    if noise > need and gain > 0:
        return f"within noise (±{noise:.4g} over {repeats} repeats)"
    if need > 0 and gain > 0:
        return f"below {threshold.source}"
    return "not better"


def _judge_paired(
    task: TaskSpec,
    metric: float,
    pairs: Sequence[tuple[float, float]],
    best: RunRecord,
    threshold: Threshold,
    verdict: Callable[..., Verdict],
) -> Verdict:
    """Keep or discard against the best measured again in the same rounds.

    Each round's difference cancels what the rounds share (the machine's load, a warm
    cache); the median difference must beat the threshold and the differences' MAD.
    """
    again = statistics.median(b for _, b in pairs)
    gains = [task.better(c, b) for c, b in pairs]
    gain, noise, need = statistics.median(gains), mad(gains), threshold.amount(again)
    paired: dict[str, object] = {
        "incumbent": best.run,
        "incumbent_metric": again,
        "incumbent_repeats": [b for _, b in pairs],
        "gain": gain,
        "noise": noise,
        "need": need,
        "pairs": len(pairs),
    }
    if gain > max(need, noise) and gain > 0:
        return verdict("keep", paired=paired)
    why = _why_not(gain, need, noise, threshold, len(pairs))
    return verdict(
        "discard",
        f"{task.metric} {number(metric)} vs run {best.run} measured again {number(again)} (paired over {len(pairs)} "
        f"repeats): {why}",
        paired=paired,
    )


def better(value: float, than: float, direction: str) -> bool:
    """Strictly better in ``direction`` (pi-autoresearch's ``isBetter``)."""
    return value > than if direction == "higher" else value < than


def best_of(runs: Sequence[RunRecord], direction: str) -> RunRecord | None:
    """The best run among ``runs`` (one segment's), as pi-autoresearch chooses it.

    The kept run with the best metric in ``direction``; of equal values the first
    (pi's compaction summary, ``bestRun``, and its confidence both keep the first).
    Runs without a metric are never best. A run kept by a paired comparison
    (``--repeats``) beat the best of its time measured again beside it, so it replaces that
    run whatever its first measurement said; only that run: with runs in flight at once, a
    later-numbered run may have been decided against another best.
    """
    best: RunRecord | None = None
    for run in runs:
        if not run.kept or run.metric is None:
            continue
        beat = best is not None and run.paired is not None and run.paired.get("incumbent") == best.run
        if best is None or best.metric is None or better(run.metric, best.metric, direction) or beat:
            best = run
    return best


def select_best(runs: Sequence[RunRecord], task: TaskSpec, by: str = "search") -> RunRecord | None:
    """The run to export and show as ``best`` among one segment's kept runs.

    ``by="search"``: :func:`best_of`. ``by="holdout"``: the kept run with the best holdout
    metric (the task's direction; of equal values the first), or :func:`best_of` when no
    kept run has one.
    """
    if by != "holdout" or task.holdout is None:
        return best_of(runs, task.direction)
    chosen: RunRecord | None = None
    for run in runs:
        value = run.metrics.get(task.holdout)
        if not run.kept or value is None:
            continue
        if chosen is None or better(value, chosen.metrics[task.holdout], task.direction):
            chosen = run
    return chosen or best_of(runs, task.direction)


def best_satisfying(runs: Sequence[RunRecord], task: TaskSpec) -> RunRecord | None:
    """The best run among ``runs`` whose recorded metrics meet ``task``'s constraints.

    Any run that measured the cell counts (kept, discarded or infeasible under the rules
    of its own segment); failures never do. Best in the task's direction, first of equal.
    """
    best: RunRecord | None = None
    for run in runs:
        if run.status not in MEASURED or run.metric is None or task.violations(run.metrics):
            continue
        if best is None or best.metric is None or better(run.metric, best.metric, task.direction):
            best = run
    return best


def segment_winner(runs: Sequence[RunRecord], segment: int, task: TaskSpec) -> RunRecord | None:
    """The run to re-measure into ``segment`` as its best, or None.

    The best run of the session (``runs``) that meets the segment's rules (``task``) by
    its recorded metrics, when it is better than the segment's own best and its code was
    not measured in the segment yet: so a segment's best is the best run of the whole
    session that satisfies its constraints, re-measured once, and a segment entered again
    with nothing new re-measures nothing.
    """
    inside = [r for r in runs if r.segment == segment]
    measured = {r.code for r in inside}
    winner = best_satisfying([r for r in runs if r.segment != segment and r.code not in measured], task)
    current = best_of(inside, task.direction)
    if winner is None or winner.metric is None:
        return None
    if current is not None and current.metric is not None and not better(winner.metric, current.metric, task.direction):
        return None
    return winner


def confidence(segment_runs: Sequence[RunRecord], direction: str) -> float | None:
    """How far the best is from the segment's baseline, in units of the metric's spread.

    pi-autoresearch's ``computeConfidence``: |best kept - baseline| / MAD, where the MAD
    is over the segment's metrics above 0 (a crash logged at 0 is left out), the best is
    the first best kept metric above 0, and the baseline is the segment's first run.
    None with fewer than three metrics above 0, no spread, no kept run, a best equal to
    the baseline, or a result that is not a finite number (pi's dashboard shows Infinity
    there; its log, through ``JSON.stringify``, null).
    """
    values = [r.metric for r in segment_runs if r.metric is not None and r.metric > 0]
    if len(values) < 3:
        return None
    spread = mad(values)
    baseline = segment_runs[0].metric
    if spread == 0 or baseline is None:
        return None
    best = None
    for r in segment_runs:
        if r.kept and r.metric is not None and r.metric > 0 and (best is None or better(r.metric, best, direction)):
            best = r.metric
    if best is None or best == baseline:
        return None
    value = abs(best - baseline) / spread
    return value if math.isfinite(value) else None


def runs_without_keep(segment_runs: Sequence[RunRecord]) -> int:
    """How many runs in a row, at the end of a segment, were not kept (its baseline aside)."""
    tail = 0
    for record in reversed(segment_runs[1:]):
        if record.kept:
            break
        tail += 1
    return tail


def stop_rule(
    limits: Limits,
    *,
    iteration: int,
    segment_runs: Sequence[RunRecord],
    spent_usd: float,
    elapsed_s: float,
    next_cost_usd: float | None = None,
) -> tuple[str, str] | None:
    """The stop rule that fires before the next iteration, as ``(reason, detail)``, or None.

    Args:
        limits: the session's limits.
        iteration: iterations done in this run of the loop.
        segment_runs: the current segment's runs, its baseline first.
        spent_usd: what the model calls of this run of the loop cost.
        elapsed_s: seconds since this run of the loop started.
        next_cost_usd: the most the next iteration's requests could cost, when known: the
            cap is never crossed, so the loop stops when this could take it over.
    """
    if limits.max_iterations is not None and iteration >= limits.max_iterations:
        return "max-iterations", f"reached --max-iterations {limits.max_iterations}"
    if limits.plateau:
        tail = runs_without_keep(segment_runs)
        if tail >= limits.plateau:
            return "plateau", f"{tail} runs in a row without improvement (--plateau {limits.plateau})"
    if limits.max_cost is not None and spent_usd >= limits.max_cost:
        return "max-cost", f"spent ${spent_usd:.4f} of --max-cost ${limits.max_cost:g}"
    if limits.max_cost is not None and next_cost_usd is not None and spent_usd + next_cost_usd > limits.max_cost:
        return "max-cost", (
            f"spent ${spent_usd:.4f}; the next request could cost up to ${next_cost_usd:.4f}, "
            f"over --max-cost ${limits.max_cost:g}"
        )
    if limits.max_time is not None and elapsed_s >= limits.max_time:
        return "max-time", f"ran {elapsed_s:.0f}s of --max-time {limits.max_time:g}s"
    return None
