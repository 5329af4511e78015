import math

import pytest

from jupyter_autoresearch import MetricParseError, metric, parse_metrics
from jupyter_autoresearch.isolation._worker import _finite
from jupyter_autoresearch.protocol._metrics import NUMBER, is_metric_name


def test_last_value_wins_and_other_output_is_ignored() -> None:
    parsed = parse_metrics("loss=3\nMETRIC loss=0.5\nmetric loss=9\nMETRIC loss=0.25\n")
    assert parsed.values == {"loss": 0.25}
    assert parsed.problems == ()


def test_names_with_dots_and_micro_sign_and_trailing_spaces() -> None:
    parsed = parse_metrics("METRIC val.loss=1e-3  \nMETRIC t_µs=12\n")
    assert parsed.values == {"val.loss": 0.001, "t_µs": 12.0}


@pytest.mark.parametrize(
    "line",
    [
        "METRIC x=nan",
        "METRIC x=inf",
        "METRIC x=-inf",
        "METRIC x=abc",
        "METRIC x=1e999",  # overflows to infinity
        "METRIC x=９９９",  # fullwidth digits: float() reads them, pi's Number() does not
        "METRIC x=١٢",  # Arabic-Indic digits
        "METRIC x=1_000",  # float() reads underscores
        "METRIC x=0x1A",  # pi's Number() reads hexadecimal; an ASCII decimal rule does not
        "METRIC x=1e",
        "METRIC x=.",
    ],
)
def test_non_finite_or_non_numeric_values_are_refused(line: str) -> None:
    parsed = parse_metrics(f"METRIC x=1\n{line}\n")
    assert parsed.values == {"x": 1.0}  # the refused line does not erase the earlier value
    assert len(parsed.problems) == 1 and "metric x has value" in parsed.problems[0]


@pytest.mark.parametrize(
    "value, number", [("-1.5e-3", -0.0015), ("+7", 7.0), (".5", 0.5), ("5.", 5.0), ("1E+3", 1000.0)]
)
def test_values_are_ascii_decimal_numbers(value: str, number: float) -> None:
    assert parse_metrics(f"METRIC x={value}\n").values == {"x": number}


@pytest.mark.parametrize("name", ["__proto__", "__class__", "constructor", "prototype", "__init__"])
def test_reserved_names_are_refused(name: str) -> None:
    parsed = parse_metrics(f"METRIC {name}=1\n")
    assert parsed.values == {}
    assert "reserved" in parsed.problems[0]


@pytest.mark.parametrize(
    "name, ok",
    [
        ("t_µs", True),
        ("val.loss", True),
        ("__init", True),
        ("latência", False),
        ("t_μs", False),
        ("x-y", False),
        ("Ｘ", False),
    ],
)
def test_names_are_ascii_as_pi_reads_them(name: str, ok: bool) -> None:
    # pi's [\w.µ] without the u flag: ASCII letters, digits, _, . and the micro sign U+00B5
    # (the Greek mu U+03BC in "t_μs" is another letter).
    assert is_metric_name(name) is ok
    assert (name in parse_metrics(f"METRIC {name}=1\n").values) is ok


def test_the_worker_keeps_values_by_the_same_rule() -> None:
    samples = ["1", "-1.5e-3", ".5", "5.", "+7", "1e308", "1e999", "nan", "inf", "９９９", "1_000", "0x1A", "abc", ""]
    for text in samples:
        expected = bool(NUMBER.match(text)) and text != "1e999"
        assert _finite(text.encode()) is expected, text


def test_lines_that_do_not_match_the_protocol_exactly_are_not_metrics() -> None:
    text = "  METRIC x=1\nMETRIC x = 1\nMETRIC x=1 extra\nprefix METRIC y=2\nMETRICx=3\n"
    assert parse_metrics(text).values == {}


def test_metric_helper_prints_a_parseable_line(capsys: pytest.CaptureFixture[str]) -> None:
    metric("revenue_millions", 110.1627)
    out = capsys.readouterr().out
    assert out == "METRIC revenue_millions=110.1627\n"
    assert parse_metrics(out).values == {"revenue_millions": 110.1627}


@pytest.mark.parametrize("name, value", [("bad name", 1.0), ("__class__", 1.0), ("x", math.nan)])
def test_metric_helper_refuses_bad_input(name: str, value: float) -> None:
    with pytest.raises(MetricParseError):
        metric(name, value)
