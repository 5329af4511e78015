"""The model's answer format: a hypothesis and one fenced Python block, or ``DONE:``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Answer", "parse_answer"]

_FENCE = re.compile(r"^```[ \t]*([\w+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_HYPOTHESIS = re.compile(r"^\W{0,3}hypothesis\W{0,3}:\**\s*(.+?)(?=\n\s*\n|\n```|\Z)", re.I | re.M | re.S)
_DONE = re.compile(r"^\W{0,3}DONE\W{0,3}:\s*(.*)$", re.MULTILINE)
_IDEA = re.compile(r"^\s*(?:[-*]\s*)?idea:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_PYTHON_TAGS = {"", "python", "py", "python3", "ipython"}


@dataclass(frozen=True)
class Answer:
    """A parsed answer.

    Attributes:
        hypothesis: why the change should help (may be empty).
        code: the complete new cell, or "" when the answer has none.
        done: the reason given with ``DONE:``, or None.
        ideas: ``Idea: ...`` lines, deferred to the backlog.
        problem: why the answer cannot be run, or None.
    """

    hypothesis: str = ""
    code: str = ""
    done: str | None = None
    ideas: tuple[str, ...] = ()
    problem: str | None = None


def syntax_problem(code: str) -> str | None:
    """Why ``code`` does not compile as Python, or None."""
    try:
        compile(code, "<candidate>", "exec")
    except SyntaxError as err:
        return f"SyntaxError: {err.msg} (line {err.lineno}: {(err.text or '').strip()[:80]})"
    except ValueError as err:  # e.g. null bytes
        return f"the code cannot be compiled: {err}"
    return None


def parse_answer(text: str) -> Answer:
    """Parse the model's plain-text answer.

    The last fenced block tagged ``python`` (or untagged) is the code. ``DONE: reason``
    counts only when there is no code.

    Example:
        >>> a = parse_answer("Hypothesis: sort first.\\n```python\\nprint(1)\\n```")
        >>> a.hypothesis, a.code
        ('sort first.', 'print(1)\\n')
    """
    ideas = tuple(m.strip() for m in _IDEA.findall(text))
    match = _HYPOTHESIS.search(text)
    hypothesis = " ".join(match.group(1).split()) if match else ""
    blocks = [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]
    if blocks:
        code = blocks[-1]
        if not code.strip():
            return Answer(hypothesis, "", None, ideas, "the answer's code block is empty")
        return Answer(hypothesis, code, None, ideas, syntax_problem(code))
    done = _DONE.search(text)
    if done:
        return Answer(hypothesis, "", done.group(1).strip() or "no reason given", ideas)
    if "```" in text:
        problem = "the answer has no complete ```python block (is a closing ``` missing?)"
    else:
        problem = "the answer has neither a ```python block with the new cell nor a DONE: line"
    return Answer(hypothesis, "", None, ideas, problem)
