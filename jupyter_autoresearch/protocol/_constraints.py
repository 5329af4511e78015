"""Constraint expressions: ``<expression> <op> <number>`` over metric names.

Parsed with :mod:`ast` against a whitelist (names, numbers, ``+ - * /``, parentheses);
user text is never evaluated as code.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ._errors import ConstraintError
from ._format import number

__all__ = ["OPERATORS", "Constraint", "parse_constraint", "parse_constraints"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
}
_AST_OPS = {ast.LtE: "<=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">", ast.Eq: "=="}
_BINOPS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint, e.g. ``spend_millions <= 30``.

    Attributes:
        expression: the left-hand side in canonical form (``cs_contacts / users``).
        op: one of ``<=``, ``<``, ``>=``, ``>``, ``==``.
        bound: the right-hand number.
        names: the metric names the expression reads.
    """

    expression: str
    op: str
    bound: float
    names: frozenset[str]

    def __str__(self) -> str:
        return f"{self.expression} {self.op} {_number(self.bound)}"

    def value(self, metrics: Mapping[str, float]) -> float | None:
        """The expression's value on ``metrics``; None when a name is missing."""
        if not self.names <= metrics.keys():
            return None
        return _evaluate(_tree(self.expression), metrics)

    def violation(self, metrics: Mapping[str, float]) -> str | None:
        """Why ``metrics`` break this constraint, or None when they satisfy it."""
        missing = sorted(self.names - metrics.keys())
        if missing:
            return f"{self} needs metric {', '.join(missing)}, which the run did not report"
        try:
            value = self.value(metrics)
        except ZeroDivisionError:
            return f"{self} divides by zero"
        assert value is not None
        if OPERATORS[self.op](value, self.bound):
            return None
        # A metric reads as it was printed; a computed expression to six digits.
        shown = f"{self.expression} = {number(value) if self.expression in self.names else f'{value:.6g}'}"
        return f"{self} is violated ({shown})"


def parse_constraint(text: str) -> Constraint:
    """Parse one constraint.

    Raises:
        ConstraintError: the text is not ``<expression> <op> <number>`` over metric names.

    Example:
        >>> str(parse_constraint("cs_contacts/users<=0.042"))
        'cs_contacts / users <= 0.042'
    """
    source = text.strip()
    if not source:
        raise ConstraintError.malformed(text, "is empty")
    try:
        tree = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ConstraintError.malformed(text, "cannot be read") from None
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        raise ConstraintError.malformed(text, "needs exactly one comparison")
    op = _AST_OPS.get(type(tree.ops[0]))
    if op is None:
        shown = {ast.NotEq: "!=", ast.Is: "is", ast.In: "in"}.get(type(tree.ops[0]), "?")
        raise ConstraintError.malformed(text, f"uses unknown operator {shown!r}")
    bound = _constant(tree.comparators[0])
    if bound is None:
        raise ConstraintError.malformed(text, "must compare against a number")
    names: set[str] = set()
    _check(tree.left, text, names)
    if not names:
        raise ConstraintError.malformed(text, "names no metric")
    return Constraint(ast.unparse(tree.left), op, bound, frozenset(names))


def parse_constraints(texts: Iterable[str]) -> tuple[Constraint, ...]:
    """Parse several constraints, dropping exact duplicates and keeping their order."""
    parsed: dict[str, Constraint] = {}
    for text in texts:
        constraint = parse_constraint(text)
        parsed.setdefault(str(constraint), constraint)
    return tuple(parsed.values())


@functools.lru_cache(maxsize=256)
def _tree(expression: str) -> ast.expr:
    return ast.parse(expression, mode="eval").body


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _constant(node: ast.expr) -> float | None:
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
        and math.isfinite(node.value)
    ):
        return sign * float(node.value)
    return None


def _dotted(node: ast.expr) -> str | None:
    # Metric names may contain dots (``val.loss``), which ast reads as attribute access.
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _check(node: ast.expr, text: str, names: set[str]) -> None:
    name = _dotted(node)
    if name is not None:
        names.add(name)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left, text, names)
        _check(node.right, text, names)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        _check(node.operand, text, names)
    elif _constant(node) is None:
        raise ConstraintError.malformed(
            text, f"may only use metric names, numbers, + - * / and parentheses, not {ast.unparse(node)!r}", form=False
        )


def _evaluate(node: ast.expr, metrics: Mapping[str, float]) -> float:
    name = _dotted(node)
    if name is not None:
        return float(metrics[name])
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_evaluate(node.left, metrics), _evaluate(node.right, metrics))
    if isinstance(node, ast.UnaryOp):
        inner = _evaluate(node.operand, metrics)
        return -inner if isinstance(node.op, ast.USub) else inner
    constant = _constant(node)
    assert constant is not None  # guaranteed by _check at parse time
    return constant
