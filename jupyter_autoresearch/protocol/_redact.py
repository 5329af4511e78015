"""Keep secrets out of prompts and logs."""

from __future__ import annotations

import os
import re

__all__ = ["is_secret_name", "redact"]

_SECRET = re.compile(r"(_API_KEY|_TOKEN)$|SECRET|PASSWORD", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True for environment variables that hold credentials (``*_API_KEY``, ``*_TOKEN``, ...)."""
    return bool(_SECRET.search(name))


def redact(text: str) -> str:
    """Replace the values of secret environment variables that appear in ``text``."""
    for name, value in os.environ.items():
        if len(value) >= 8 and is_secret_name(name) and value in text:
            text = text.replace(value, f"[{name} redacted]")
    return text
