"""Variant cells: how an accepted run looks as a notebook cell, and where it goes.

The live notebook gets these cells through the JupyterLab extension; a headless run
writes them into a copy of the notebook with nbformat. Both use the same text,
metadata and position rule (run order: each new variant below the previous one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol._errors import ExportError
from ..protocol._format import number
from ..protocol._records import RunRecord

__all__ = [
    "INFEASIBLE_PREFIX",
    "Insertion",
    "insertion_index",
    "mark_infeasible",
    "variant_cell",
    "write_notebook_copy",
]

INFEASIBLE_PREFIX = "# autoresearch: INFEASIBLE: "


def variant_header(session: str, record: RunRecord, metric: str | None) -> str:
    value = number(record.metric, "n/a")
    return f"# autoresearch {session} run {record.run}: {metric or 'metric'}={value} (kept)"


def variant_cell(session: str, record: RunRecord, metric: str | None) -> tuple[str, dict[str, Any]]:
    """The source and metadata of the cell for an accepted run."""
    source = variant_header(session, record, metric) + "\n" + record.code.rstrip() + "\n"
    metadata = {
        "autoresearch": {
            "session": session,
            "run": record.run,
            "metric": record.metric,
            "metrics": dict(record.metrics),
            "hypothesis": record.hypothesis,
        }
    }
    return source, metadata


def mark_infeasible(source: str, note: str) -> str:
    """Prefix a variant's source with the infeasibility note (once)."""
    if source.startswith(INFEASIBLE_PREFIX):
        return source
    return f"{INFEASIBLE_PREFIX}{note}\n{source}"


def insertion_index(cells: Sequence[Any], anchor: int, session: str, run: int) -> int:
    """Below the anchor, in the block of this session's variants that follows it, before the
    first later run (the rule of the extension's ``insertionIndex``)."""
    index = anchor + 1
    while index < len(cells):
        meta = cells[index].get("metadata", {}).get("autoresearch", {})
        if meta.get("session") != session or (isinstance(meta.get("run"), int) and meta["run"] > run):
            break
        index += 1
    return index


def _cell_id(session: str, run: int) -> str:
    return "ar-" + hashlib.sha1(f"{session}:{run}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Insertion:
    """Variant cells to place below one benchmark cell."""

    anchor: int
    session: str
    metric: str | None
    records: Sequence[RunRecord]
    infeasible: Mapping[int, str] = field(default_factory=dict)


def write_notebook_copy(source: Path, output: Path, insertions: Sequence[Insertion]) -> Path:
    """Copy the notebook with each insertion's cells below its anchor; returns ``output``.

    Raises:
        ExportError: the output's folder does not exist (it is never created) or the
            file cannot be written.
    """
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    # Variants already in the notebook (a kernel inserted them, or an earlier copy was run)
    # are found by their metadata and only marked; the others are inserted.
    present = {
        (meta.get("session"), meta.get("run")): cell
        for cell in notebook.cells
        if isinstance(meta := cell.get("metadata", {}).get("autoresearch"), dict)
    }
    # Bottom-up, so that inserting below one anchor never moves the ones above it.
    for insertion in sorted(insertions, key=lambda i: i.anchor, reverse=True):
        for record in insertion.records:
            note = insertion.infeasible.get(record.run)
            existing = present.get((insertion.session, record.run))
            if existing is not None:
                if note:
                    existing.source = mark_infeasible(existing.source, note)
                    existing.metadata["autoresearch"]["infeasible"] = note
                continue
            text, metadata = variant_cell(insertion.session, record, insertion.metric)
            if note:
                text = mark_infeasible(text, note)
                metadata["autoresearch"]["infeasible"] = note
            cell = nbformat.v4.new_code_cell(source=text, metadata=metadata)
            cell.id = _cell_id(insertion.session, record.run)  # the same copy every time it is written
            index = insertion_index(notebook.cells, insertion.anchor, insertion.session, record.run)
            notebook.cells.insert(index, cell)
            present[(insertion.session, record.run)] = cell
    if not output.parent.is_dir():
        raise ExportError(
            f"folder {output.parent} does not exist; create it, or choose an output in an existing folder"
        )
    try:
        nbformat.write(notebook, output)
    except OSError as err:
        raise ExportError(f"cannot write {output}: {err.strerror}") from None
    return output
