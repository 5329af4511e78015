"""Correctness checks of a run that would be kept: pi-autoresearch's ``autoresearch.checks.sh``.

The loop hands the verdict of every run it would keep to :func:`run_checks`. Each check
runs where candidates run (the warm worker's sandbox, the target's folder), in the order
given; the first that fails (a non-zero exit, a raised exception, a timeout, a changed
off-limits file) makes the run ``checks_failed``, with the tail of the check's output in
its reason, which the next prompt carries. As in pi-autoresearch, a check's time does not
count in the metric, and its output is stdout then stderr, of which the model sees the
last 80 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ..isolation._evaluate import Evaluator, Outcome
from ..protocol._checks import Check
from ..protocol._format import short
from ._decide import Verdict

__all__ = ["OUTPUT_CHARS", "OUTPUT_LINES", "check_failure", "check_output", "run_checks"]

#: Lines of a failed check's output kept in its reason (pi-autoresearch shows the model 80).
OUTPUT_LINES = 80
#: ... and at most this many characters of them.
OUTPUT_CHARS = 4000


def check_output(outcome: Outcome) -> str:
    """The tail of a check's output: stdout, then stderr (as pi-autoresearch joins them)."""
    text = f"{outcome.stdout_tail.rstrip()}\n{outcome.stderr_tail.rstrip()}".strip()
    tail = "\n".join(text.splitlines()[-OUTPUT_LINES:])
    return tail[-OUTPUT_CHARS:]


def check_failure(check: Check, outcome: Outcome) -> str | None:
    """Why ``check`` failed, as a run's reason: a first line that says what happened
    (with the output's last line), then the tail of the output; None when it passed."""
    if outcome.kind == "ok" and not outcome.touched:
        return None
    if outcome.touched:
        why = f"it changed off-limits file {', '.join(outcome.touched)}, restored"
    elif outcome.kind == "timeout":
        why = f"timed out after {check.timeout:g}s; raise --check-timeout to allow longer"
    else:
        why = outcome.error or outcome.kind
    tail = check_output(outcome)
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    head = f"{check.label} failed ({why})"
    if last and last not in why:
        head += f": {short(last, 200)}"
    return f"{head}\n{tail}" if tail else head


def run_checks(
    evaluator: Evaluator,
    checks: Sequence[Check],
    code: str,
    verdict: Verdict,
    *,
    started: Callable[[Check], None] | None = None,
    after_each: Callable[[], None] | None = None,
) -> Verdict:
    """The verdict of a run once its checks ran: unchanged unless it would be kept and a
    check fails, then ``checks_failed`` with the failure as its reason.

    Args:
        evaluator: runs each check where ``code`` ran.
        checks: the checks, run in order until one fails.
        code: the candidate's cell.
        verdict: the run's verdict before the checks.
        started: called before each check (the loop announces it).
        after_each: called after each check (the loop stops there when asked to).
    """
    if verdict.status != "keep" or not checks:
        return verdict
    for check in checks:
        if started is not None:
            started(check)
        outcome = evaluator.check(code, check)
        if after_each is not None:
            after_each()
        reason = check_failure(check, outcome)
        if reason is not None:
            return replace(verdict, status="checks_failed", error=reason)
    return verdict
