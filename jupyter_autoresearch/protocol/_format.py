"""Plain-text formatting shared by the terminal, HTML and prompt views."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._records import RunRecord

__all__ = ["change", "note", "number", "short"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def number(value: float | None, missing: str = "-") -> str:
    """A metric value with up to eight significant digits."""
    return missing if value is None else f"{value:.8g}"


def change(value: float | None, reference: float | None) -> str:
    """``+2.2469 (+2.08%)``: ``value`` against ``reference``; empty when equal or unknown."""
    if value is None or reference is None or value == reference:
        return ""
    delta = value - reference
    percent = f" ({delta / abs(reference) * 100:+.2f}%)" if reference else ""
    return f"{delta:+.6g}{percent}"


def short(text: str, width: int) -> str:
    """One line of at most ``width`` characters, without control characters (a model's
    or a candidate's text must not drive the terminal)."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def note(record: RunRecord) -> str:
    """What a run tried and, when it was not kept, why: ``hypothesis [error]``."""
    text = record.hypothesis or record.description
    if record.status != "keep" and record.error:
        return f"{text} [{record.error}]" if text else f"[{record.error}]"
    return text
