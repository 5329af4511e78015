"""How each run status looks, in every view: one table of colours and labels."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STATUS_STYLES", "StatusStyle", "status_style"]


@dataclass(frozen=True)
class StatusStyle:
    """The look of one status.

    Attributes:
        colour: the HTML colour (badges, chart markers).
        ansi: the terminal colour code (the CLI's progress lines).
        label: the chart legend's word for runs of this status.
    """

    colour: str
    ansi: str
    label: str


STATUS_STYLES: dict[str, StatusStyle] = {
    "keep": StatusStyle("#2e7d32", "32", "kept"),
    "discard": StatusStyle("#757575", "33", "discarded"),
    "infeasible": StatusStyle("#ef6c00", "35", "infeasible"),
    "crash": StatusStyle("#c62828", "31", "crashed"),
    "timeout": StatusStyle("#ad1457", "31", "timed out"),
    "invalid": StatusStyle("#6a1b9a", "31", "invalid"),
    "violation": StatusStyle("#b71c1c", "31", "violations"),
    "checks_failed": StatusStyle("#8d6e00", "33;1", "checks failed"),
}
_UNKNOWN = StatusStyle("#424242", "", "other")


def status_style(status: str) -> StatusStyle:
    """The style of ``status`` (a neutral grey for a status this version does not know)."""
    return STATUS_STYLES.get(status, _UNKNOWN)
