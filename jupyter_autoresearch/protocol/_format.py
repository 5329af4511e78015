"""Plain-text formatting shared by the terminal, HTML and prompt views."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._records import RunRecord

__all__ = ["change", "money", "note", "number", "short", "tokens"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def number(value: float | None, missing: str = "-") -> str:
    """A metric value as the cell printed it: ``110.1627``, never rounded to ``110.163``.

    Up to twelve significant digits, which any printed value fits and which hides the float
    noise of a median or a sum (``0.30000000000000004`` reads ``0.3``).
    """
    return missing if value is None else f"{value:.12g}"


def _decimals(value: float) -> int:
    """Digits after the point in ``number(value)``."""
    mantissa, _, exponent = number(value).partition("e")
    digits = len(mantissa.partition(".")[2])
    return max(0, digits - int(exponent or 0))


def change(value: float | None, reference: float | None) -> str:
    """``+2.2469 (+2.08%)``: ``value`` against ``reference``, at the precision they were printed
    with; empty when equal or unknown."""
    if value is None or reference is None or value == reference:
        return ""
    delta = round(value - reference, max(_decimals(value), _decimals(reference)))
    percent = f" ({delta / abs(reference) * 100:+.2f}%)" if reference else ""
    return f"{delta:+.12g}{percent}"


def money(value: float | None) -> str:
    """``$0.0123`` (``$0.000042`` below a tenth of a cent); empty when the price is unknown."""
    if value is None:
        return ""
    return f"${value:.4f}" if value == 0 or value >= 0.001 else f"${value:.6f}"


def tokens(count: int | None) -> str:
    """``3,410 tokens``; empty when unknown."""
    return "" if count is None else f"{count:,} tokens"


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
