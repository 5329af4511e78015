"""Correctness checks: what must hold, beyond the metrics, for a run to be kept.

pi-autoresearch's ``autoresearch.checks.sh`` for notebook cells: a shell command
(``--check CMD``) or a code cell of the notebook (``--check-cell N``) that runs after a
candidate whose metric would be kept. A check that fails (a non-zero exit, a raised
exception, a timeout) makes the run ``checks_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._errors import OptionsError

__all__ = ["CANDIDATE_VARIABLE", "Check", "CheckKind"]

CheckKind = Literal["command", "cell"]

#: The environment variable that gives a check command the path of the candidate's code.
CANDIDATE_VARIABLE = "AUTORESEARCH_CANDIDATE"


@dataclass(frozen=True)
class Check:
    """One correctness check.

    Attributes:
        kind: ``command``: a shell command, run by ``bash -c`` in the target's folder, with
            the candidate's code in the file ``$AUTORESEARCH_CANDIDATE``; ``cell``: Python
            code run in the namespace the candidate left (the candidate runs again first,
            in a fresh fork, its output not kept).
        source: the command, or the cell's code.
        label: how messages name it (``check `pytest -q```, ``check cell 5``).
        timeout: seconds the check may take (a check cell: after the candidate ran again).

    Example:
        >>> Check.command("pytest -q").label
        'check `pytest -q`'
    """

    kind: CheckKind
    source: str
    label: str
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise OptionsError(f"{self.label} is empty: write the command or code that checks a run")
        if not self.timeout > 0:
            raise OptionsError(f"--check-timeout {self.timeout:g} must be positive")

    @classmethod
    def command(cls, text: str, *, timeout: float = 300.0) -> Check:
        """A shell command; it fails with a non-zero exit status."""
        return cls("command", text, f"check `{text.strip()}`", timeout)

    @classmethod
    def cell(cls, code: str, number: int, *, timeout: float = 300.0) -> Check:
        """The code of the notebook's ``number``-th code cell; it fails by raising."""
        return cls("cell", code, f"check cell {number}", timeout)
