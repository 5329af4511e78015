"""Where a segment starts: the baseline (and the task it may infer), a resumed session's
rules, a segment made earlier under the same rules and entered again, and a new segment
under new constraints, whose best (the best run of the session that meets them by its
recorded metrics) is re-measured as its baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..protocol._constraints import Constraint
from ..protocol._errors import BaselineError, ConstraintError, OptionsError
from ..protocol._hidden import hidden_path
from ..protocol._records import RunRecord
from ..protocol._task import TaskSpec
from ._decide import best_satisfying, judge, segment_winner
from ._events import BaselineDone, ConstraintsChanged, Decision, ReasoningDelta, TaskInferred
from ._trust import Measured, export_refusal, fold, pick_holdout

if TYPE_CHECKING:
    from ._loop import Loop

__all__ = ["apply_constraints", "baseline", "enter_segment", "new_segment", "resume"]


def baseline(loop: Loop) -> None:
    """Measure the unchanged cell as run 1; infer the task first if none was given."""
    session = loop.session
    [measured] = loop.measure([1], [session.code])
    outcomes = measured.outcomes
    failed = next((o for o in outcomes if o.kind != "ok"), None)
    if failed is not None:
        what = "timed out" if failed.kind == "timeout" else "crashed"
        raise BaselineError.from_outcome(failed.kind, what, failed.stderr_tail or (failed.error or ""))
    _reference(loop, measured)
    metrics = outcomes[0].metrics
    written = {path for outcome in outcomes for path in outcome.written}
    if not session.off_limits_given:
        # Files the cell itself writes are its outputs, not data to protect.
        session.task = replace(session.task, off_limits=tuple(p for p in session.task.off_limits if p not in written))
    if session.task.metric is None:
        _infer_task(loop, metrics, written)
        if session.holdout_names:  # the one shown beside the primary metric, now known
            session.task = replace(session.task, holdout=pick_holdout(session.task, session.holdout_names))
    loop.protect()
    metric = session.task.metric
    assert metric is not None
    if metric not in metrics:
        raise BaselineError.missing_metric(metric, metrics, outcomes[0].problems, outcomes[0].stderr_tail)
    for constraint in session.task.constraints:
        unknown = constraint.names - metrics.keys()
        if unknown:
            raise ConstraintError.unknown_metrics(str(constraint), unknown, metrics, by_baseline=True)
    loop.recorder.config(0)
    verdict = loop.checked(1, session.code, judge(session.task, outcomes, None))
    if verdict.status == "checks_failed":
        # As pi-autoresearch logs it; the first run that passes the checks is kept.
        first = (verdict.error or "").splitlines()[0]
        session._warn(f"the baseline fails its correctness checks, so no run is best until one passes: {first}")
    record = loop.recorder.run(
        1,
        0,
        verdict,
        outcomes,
        code=session.code,
        parent=None,
        hypothesis="Baseline: the cell as written.",
        baseline=True,
        flags=measured.flags,
    )
    session._emit(BaselineDone(session.name, record))
    session._emit(Decision(session.name, record, session.best_run, session.task.holdout))


def _reference(loop: Loop, measured: Measured) -> None:
    """Keep the unchanged cell's outputs for ``--same-output`` and learn the holdout's
    metrics (hidden from the model from now on); a check that cannot work stops here."""
    session, worker = loop.session, loop.session.holdout_worker
    if worker is None:
        return
    name = worker.spec.holdout_name
    missing = measured.outcomes[0].missing if measured.outcomes else ()
    if missing:
        options = " and ".join(
            flag
            for flag, names in (("--same-output", worker.spec.same_output), ("--holdout-inputs", worker.spec.inputs))
            if set(names) & set(missing)
        )
        raise BaselineError(
            f"the baseline (the unchanged cell) does not define {', '.join(missing)}, which {options} names; "
            "define it in the cell, or name a variable the cell defines",
            status="invalid",
        )
    if measured.refused is not None:
        raise BaselineError(
            f"the baseline (the unchanged cell) cannot be checked: {measured.refused[1]}", status="invalid"
        )
    if "holdout_failed" in measured.flags:
        raise BaselineError(
            f"the holdout failed on the baseline: {measured.flags['holdout_failed']}; fix {name}",
            status="crash",
            stderr_tail=measured.outcomes[0].stderr_tail,
        )
    worker.reference(measured.exported)
    if worker.spec.holdout is None:
        return
    names = tuple(dict.fromkeys((*session.holdout_names, *measured.holdout)))
    if not names:
        raise BaselineError(
            f"{name} printed no METRIC line for the baseline; print its score with "
            'print(f"METRIC holdout_score={value}")',
            status="invalid",
        )
    if session.task.metric in names:
        raise BaselineError(
            f"{name} prints {session.task.metric}, the metric the search optimises; name the holdout's score "
            f"differently, e.g. holdout_{session.task.metric}",
            status="invalid",
        )
    session.holdout_names = names
    session.task = replace(
        session.task,
        hidden=tuple(dict.fromkeys((*session.task.hidden, *names))),
        holdout=session.task.holdout if session.task.holdout in names else pick_holdout(session.task, names),
    )


def _reference_again(loop: Loop) -> None:
    """A resumed session measures the unchanged cell once more for the checks' reference
    (its outputs, the holdout's metrics); it is not a run."""
    session, worker = loop.session, loop.session.holdout_worker
    assert worker is not None
    loop.check_stop()
    [outcome] = loop.evaluator.evaluate([session.code], export=worker.spec.exports)
    if outcome.kind != "ok":
        raise BaselineError.from_outcome(
            outcome.kind, "failed when measured again for the checks", outcome.stderr_tail or (outcome.error or "")
        )
    refused = export_refusal(outcome, worker.spec)
    if refused is not None:
        _reference(loop, Measured([outcome], refused))
    [result] = worker.check([outcome.exported])
    _reference(loop, fold([outcome], 0, result, session.holdout_names))


def _infer_task(loop: Loop, metrics: Mapping[str, float], written: set[str]) -> None:
    """Ask the proposer to draft the task from the cell, its metrics and its folder
    (nothing hidden: no hidden metric, no holdout file)."""
    session = loop.session
    assert session.proposer is not None and session.setup is not None
    folder = session.setup.folder
    hidden = session.task.hidden_files
    files = sorted(
        name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not hidden_path(name := str(p.relative_to(folder)), hidden)
    )
    shown = {k: v for k, v in metrics.items() if k not in session.task.hidden}
    draft = session.proposer.infer_task(
        session.code, shown, files[:50], lambda text: session._emit(ReasoningDelta(session.name, 0, text))
    )
    session.spent_usd += draft.cost_usd or 0.0
    task = session.task
    off_limits = task.off_limits or tuple(p for p in draft.off_limits if (folder / p).exists() and p not in written)
    session.task = replace(
        task.with_constraints(list(task.constraint_texts or draft.constraints)),
        metric=draft.metric,
        direction=draft.direction,
        objective=task.objective or draft.objective,
        secondary=draft.secondary,
        off_limits=off_limits,
    )
    session._emit(TaskInferred(session.name, session.task))


def resume(loop: Loop) -> None:
    """Carry on a logged session: its objective, and the segment made under the given rules.

    A cell (or a rerun of it) whose constraints and objective match a segment the session
    already made goes back to that segment, so running a notebook again never rewrites its
    story; other rules open a new segment.
    """
    session = loop.session
    config = session._configs[-1] if session._configs else None
    if config is None:
        return
    task = session.task
    if task.metric is None:
        session.task = replace(
            task,
            metric=config.metric_name,
            direction=config.direction,  # type: ignore[arg-type]
            objective=task.objective or config.objective,
            secondary=task.secondary or config.secondary,
        )
    elif (task.metric, task.direction) != (config.metric_name, config.direction):
        logged = TaskSpec(metric=config.metric_name, direction="lower" if config.direction == "lower" else "higher")
        raise OptionsError(
            f"session {session.name} optimises {logged.metric} ({logged.direction_text}), not "
            f"{task.metric} ({task.direction}); choose another --session name to start a new session"
        )
    if not session.off_limits_given:
        session.task = replace(session.task, off_limits=config.off_limits)
    # What was hidden from the model stays hidden.
    session.task = replace(session.task, hidden=tuple(dict.fromkeys((*session.task.hidden, *config.hidden))))
    loop.protect()
    if session.holdout_worker is not None:
        _reference_again(loop)
    if not session.constraints_given:
        session.task = session.task.with_constraints(list(config.constraints))  # text from the log
    else:
        apply_constraints(loop, session.task.constraints)


def apply_constraints(loop: Loop, constraints: Sequence[Constraint]) -> None:
    """Continue under ``constraints``: the segment made under them, or a new one.

    The latest segment whose header has the same objective and the same set of rules is
    entered again (nothing is written until its next run); otherwise a segment starts.
    """
    session = loop.session
    wanted = {str(c) for c in constraints}
    task = session.task
    match = next(
        (
            c.segment
            for c in reversed(session._configs)
            if (c.metric_name, c.direction) == (task.metric, task.direction) and set(c.constraints) == wanted
        ),
        None,
    )
    if match is None:
        new_segment(loop, constraints)
    elif match != session.segment:
        enter_segment(loop, match, constraints)
    else:
        session.task = replace(task, constraints=tuple(constraints))


def new_segment(loop: Loop, constraints: Sequence[Constraint]) -> None:
    """Start a segment under new rules. Its baseline is the best run of the session that
    meets them by its recorded metrics, re-measured; when none does, the segment has no
    baseline and the next proposals change the latest best."""
    session = loop.session
    segment = max([c.segment for c in session._configs] + [r.segment for r in session.runs] + [-1]) + 1
    with session._lock:
        session._segment = segment
    session.task = replace(session.task, constraints=tuple(constraints))
    loop.recorder.config(segment)
    winner = best_satisfying(session.runs, session.task)
    _changed(loop, segment, winner, again=False)
    if winner is not None:
        _remeasure(loop, winner, segment)


def enter_segment(loop: Loop, segment: int, constraints: Sequence[Constraint]) -> None:
    """Go back to a segment the session made earlier under the same rules; a better run
    that meets them, found since in another segment, is re-measured into it."""
    session = loop.session
    with session._lock:
        session._segment = segment
    session.task = replace(session.task, constraints=tuple(constraints))
    winner = segment_winner(session.runs, segment, session.task)
    _changed(loop, segment, winner, again=True)
    if winner is not None:
        _remeasure(loop, winner, segment)


def _changed(loop: Loop, segment: int, winner: RunRecord | None, *, again: bool) -> None:
    session = loop.session
    now_infeasible = tuple(
        r.run for r in session.runs if r.kept and not r.is_baseline and session.task.violations(r.metrics)
    )
    session._emit(
        ConstraintsChanged(
            session.name,
            session.task.constraint_texts,
            segment,
            now_infeasible,
            winner=winner.run if winner is not None else None,
            again=again,
            best=session.best_run,
        )
    )


def _remeasure(loop: Loop, winner: RunRecord, segment: int) -> None:
    """Evaluate ``winner``'s code again as a run of ``segment`` (its baseline, feasible or not)."""
    session = loop.session
    run = loop.next_run()
    [measured] = loop.measure([run], [winner.code])
    verdict = judge(session.task, measured.outcomes, session.best_run, refused=measured.refused)
    record = loop.recorder.run(
        run,
        segment,
        loop.checked(run, winner.code, verdict),
        measured.outcomes,
        code=winner.code,
        parent=winner.run,
        hypothesis=f"Run {winner.run} re-measured: the best run that meets these constraints by its recorded metrics.",
        baseline=True,
        flags=measured.flags,
    )
    session._emit(Decision(session.name, record, session.best_run, session.task.holdout))
