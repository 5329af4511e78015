"""Writing what the loop decided: run records, segment headers and model failures, into the
session's history and its journal (with ``best.py`` and the task document kept current)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..isolation._evaluate import Outcome
from ..journal._document import task_document
from ..journal._journal import Journal
from ..proposers._propose import Proposal
from ..protocol._failure import ModelFailure
from ..protocol._hidden import model_record, model_runs, model_task
from ..protocol._records import RunRecord, SegmentConfig
from ._decide import Verdict, confidence

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Recorder", "now_ms"]

_TAIL = 4000


def now_ms() -> int:
    return int(time.time() * 1000)


class Recorder:
    """Appends to one session's history and journal."""

    def __init__(self, session: Session, journal: Journal) -> None:
        self.session = session
        self.journal = journal

    def run(
        self,
        run: int,
        segment: int,
        verdict: Verdict,
        outcomes: Sequence[Outcome],
        *,
        code: str,
        parent: int | None,
        hypothesis: str,
        proposal: Proposal | None = None,
        baseline: bool = False,
        status: str | None = None,
        flags: Mapping[str, str] | None = None,
    ) -> RunRecord:
        """Log one judged run; returns its record."""
        session = self.session
        with session._lock:
            header = session._configs[-1].segment if session._configs else segment
        if header != segment:  # back in a segment made earlier: its header again, so pi reads the rules
            self.config(segment)
        last = outcomes[-1] if outcomes else None
        asi: dict[str, Any] = {"hypothesis": hypothesis}
        if baseline:
            asi["baseline"] = True
        if proposal is not None and verdict.status == "invalid" and proposal.text:
            asi["answer"] = proposal.text[-4000:]
        with session._lock:
            if session.notes:
                asi["notes"] = list(session.notes)
        figures = self.journal.save_figures(run, last.figures) if last and last.figures else ()
        record = RunRecord(
            run=run,
            segment=segment,
            status=status or verdict.status,  # type: ignore[arg-type]
            metric=verdict.metric,
            metrics=verdict.metrics,
            code=code,
            hypothesis=hypothesis,
            description=hypothesis,
            parent=parent,
            timestamp=now_ms(),
            duration_s=round(sum(o.duration_s for o in outcomes), 4) if outcomes else None,
            worker=", ".join(dict.fromkeys(o.worker for o in outcomes if o.worker)) or None,
            queued_s=round(sum(o.queued_s for o in outcomes), 4) if outcomes else None,
            tokens=proposal.tokens if proposal else None,
            cost_usd=proposal.cost_usd if proposal else None,
            model=proposal.model if proposal else None,
            error=verdict.error,
            constraints=session.task.constraint_texts,
            stdout_tail=last.stdout_tail[-_TAIL:] if last else "",
            stderr_tail=last.stderr_tail[-_TAIL:] if last else "",
            repeats=verdict.repeats,
            figures=figures,
            asi=asi,
            model_error=verdict.model_error,
            flags=flags or {},
            paired=verdict.paired,
        )
        segment_runs = [r for r in session.runs if r.segment == segment] + [record]
        record = replace(record, confidence=confidence(segment_runs, session.task.direction))
        self.journal.append_run(record)
        with session._lock:
            # Kept in run order: with runs in flight at once, they are decided in any order.
            bisect.insort(session._runs, record, key=lambda r: r.run)
        best = session.best
        if best is not None and best.run == record.run:
            self.journal.write_best(record.code)
        self.document()
        return record

    def document(self) -> None:
        """Rewrite the task document (``prompt.md``), the model's view of the session:
        nothing hidden from it is in there."""
        session = self.session
        task, best = session.task, session.best_run
        self.journal.write_document(
            task_document(
                model_task(task),
                model_runs(session.runs, task),
                name=session.name,
                best=model_record(best, task) if best is not None else None,
            )
        )

    def config(self, segment: int) -> SegmentConfig:
        """Log the header that opens ``segment`` under the task's current rules."""
        session = self.session
        task = session.task
        assert task.metric is not None
        config = SegmentConfig(
            name=task.title,
            metric_name=task.metric,
            direction=task.direction,
            unit=task.unit,
            constraints=task.constraint_texts,
            off_limits=task.off_limits,
            objective=task.objective,
            secondary=task.secondary,
            segment=segment,
            timestamp=now_ms(),
            hidden=task.hidden,
            holdout=task.holdout,
        )
        self.journal.append_config(config)
        with session._lock:
            session._configs.append(config)
        return config

    def failure(self, reason: str, *, model: str) -> ModelFailure:
        """Log a failed model request (no run number is used)."""
        failure = ModelFailure(
            segment=self.session.segment,
            iteration=self.session.iteration,
            reason=reason,
            model=model,
            timestamp=now_ms(),
        )
        self.journal.append_failure(failure)
        return failure
