"""Accepted runs come back as cells below the benchmark cell, through the bridge.

A subscriber of one session: it inserts accepted runs (or the best at the end), marks
the cells of runs that new constraints refuse wherever they are in the notebook (found
by their metadata, whichever ``%%autoresearch`` cell inserted them), keeps the palette's
best up to date, and tells the panel which cells no page has confirmed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..engine._events import ConstraintsChanged, Decision, Event, Stopped
from ..engine._session import Session
from ..protocol._records import RunRecord
from ..views._cells import variant_cell
from ._bridge import Bridge, Delivery

__all__ = ["NO_EXTENSION", "CellInserter"]

NO_EXTENSION = (
    "The JupyterLab extension is not active in this frontend, so accepted variants are not "
    "inserted as cells: copy them from the box below, or run with --wait to get the best cell "
    "at the end."
)
#: Seconds a page has to confirm an insert before the panel offers the code to copy.
GRACE = 5.0


class CellInserter:
    """Inserts a session's accepted runs as cells and marks the ones new rules refuse.

    Args:
        session: the session to follow.
        link: the bridge to the frontend.
        anchor_cell_id: the benchmark cell's id (None when the frontend sends none).
        mode: ``accepted`` (every kept run), ``best`` (the best, at the end) or ``none``.
        on_undelivered: called with the runs whose cells are not confirmed and why
            (an empty list once they all are).
    """

    def __init__(
        self,
        session: Session,
        link: Bridge,
        anchor_cell_id: str | None,
        mode: str,
        on_undelivered: Callable[[list[RunRecord], str], None] | None = None,
    ) -> None:
        self.session, self.link, self.anchor_cell_id, self.mode = session, link, anchor_cell_id, mode
        self.on_undelivered = on_undelivered
        self._inserts: dict[int, tuple[RunRecord, Delivery | None, float]] = {}
        self._lock = threading.Lock()
        self._reporting = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Decision):
            self._state()
            record = event.record
            if self.mode == "accepted" and record.kept and not record.is_baseline:
                self.insert(record)
        elif isinstance(event, Stopped):
            self._state()
            if self.mode == "best" and event.best is not None and not event.best.is_baseline:
                self.insert(event.best)
        elif isinstance(event, ConstraintsChanged) and self.link.connected:
            note = f"refused by the constraints of segment {event.segment} ({', '.join(event.constraints)})"
            for run in event.now_infeasible:
                self.link.mark(self.session.name, run, note)

    def insert(self, record: RunRecord) -> Delivery | None:
        """Send the run's cell; None when it cannot be sent (no extension, no cell id)."""
        delivery = None
        if self.anchor_cell_id is not None and self.link.connected:
            source, metadata = variant_cell(self.session.name, record, self.session.task.metric)
            delivery = self.link.insert(self.anchor_cell_id, self.session.name, record.run, source, metadata)
        with self._lock:
            self._inserts[record.run] = (record, delivery, time.monotonic())
        if delivery is None:
            self._report()
        else:
            delivery.then(lambda _: self._report())
            timer = threading.Timer(GRACE, self._report)  # the page's time to confirm
            timer.daemon = True
            timer.start()
        return delivery

    def undelivered(self, grace: float = 0.0) -> tuple[list[RunRecord], str]:
        """The runs whose cells no page has confirmed (within ``grace`` seconds), and why."""
        now = time.monotonic()
        with self._lock:
            waiting = [
                (r, d)
                for r, d, sent in self._inserts.values()
                if d is None or d.status == "failed" or (d.status != "done" and now - sent >= grace)
            ]
        if not waiting:
            return [], ""
        records = [r for r, _ in waiting]
        if any(d is None for _, d in waiting) or self.link.refused:
            return records, NO_EXTENSION
        errors = sorted({d.error for _, d in waiting if d is not None and d.error})
        why = (
            f"the notebook page could not insert them ({'; '.join(errors)})"
            if errors
            else "no notebook page confirmed them"
        )
        return records, why + "; they are inserted when a page with the notebook reconnects (reload it)"

    def _report(self) -> None:
        if self.on_undelivered is None:
            return
        # Reports come from acks, timers and the page going away, in their own threads: each
        # looks and tells in one step, so an older look is never told after a newer one.
        with self._reporting:
            self.on_undelivered(*self.undelivered(GRACE * 0.99))

    def _state(self) -> None:
        if not self.link.connected:
            return
        best = self.session.best
        self.link.state(self.session.name, {"run": best.run, "metric": best.metric} if best else None)
