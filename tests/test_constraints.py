import pytest

from jupyter_autoresearch import ConstraintError, parse_constraint
from jupyter_autoresearch.protocol._constraints import parse_constraints


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("spend_millions<=30", "spend_millions <= 30"),
        ("cs_contacts / users <= 0.042", "cs_contacts / users <= 0.042"),
        ("(a + b) * 2 - c > -1.5", "(a + b) * 2 - c > -1.5"),
        ("val.loss < 1e-3", "val.loss < 0.001"),
        ("x == 3", "x == 3"),
        ("x >= 0", "x >= 0"),
    ],
)
def test_parse_and_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_constraint(text)) == canonical


def test_evaluation() -> None:
    rate = parse_constraint("cs_contacts / users <= 0.042")
    assert rate.names == {"cs_contacts", "users"}
    assert rate.violation({"cs_contacts": 3218, "users": 85_470}) is None
    assert "is violated (cs_contacts / users = 0.05)" in str(rate.violation({"cs_contacts": 5, "users": 100}))
    assert "needs metric users" in str(rate.violation({"cs_contacts": 5}))
    assert "divides by zero" in str(rate.violation({"cs_contacts": 5, "users": 0}))
    assert parse_constraint("x < 1").violation({"x": 1}) is not None  # strict
    assert parse_constraint("x == 0.3").violation({"x": 0.1 + 0.2}) is None  # float tolerance


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x != 3", "unknown operator '!='"),
        ("x =< 3", "cannot be read"),
        ("x", "exactly one comparison"),
        ("0 < x < 1", "exactly one comparison"),
        ("x <= y", "must compare against a number"),
        ("3 <= 4", "names no metric"),
        ("__import__('os').system('echo hi') <= 1", "may only use metric names"),
        ("x ** 2 <= 4", "may only use metric names"),
        ("f(x) <= 4", "may only use metric names"),
        ("x <= 1e999", "must compare against a number"),
        ("", "empty"),
    ],
)
def test_bad_constraints_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConstraintError, match=None) as info:
        parse_constraint(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicates_are_dropped_in_order() -> None:
    parsed = parse_constraints(["b <= 1", "a>=0", "b<=1"])
    assert [str(c) for c in parsed] == ["b <= 1", "a >= 0"]
