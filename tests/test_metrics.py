import math

import pytest

from jupyter_autoresearch import MetricParseError, metric, parse_metrics


def test_last_value_wins_and_other_output_is_ignored() -> None:
    parsed = parse_metrics("loss=3\nMETRIC loss=0.5\nmetric loss=9\nMETRIC loss=0.25\n")
    assert parsed.values == {"loss": 0.25}
    assert parsed.problems == ()


def test_names_with_dots_and_micro_sign_and_trailing_spaces() -> None:
    parsed = parse_metrics("METRIC val.loss=1e-3  \nMETRIC t_µs=12\n")
    assert parsed.values == {"val.loss": 0.001, "t_µs": 12.0}


@pytest.mark.parametrize("line", ["METRIC x=nan", "METRIC x=inf", "METRIC x=-inf", "METRIC x=abc"])
def test_non_finite_or_non_numeric_values_are_refused(line: str) -> None:
    parsed = parse_metrics(f"METRIC x=1\n{line}\n")
    assert parsed.values == {"x": 1.0}  # the refused line does not erase the earlier value
    assert len(parsed.problems) == 1 and "metric x has value" in parsed.problems[0]


@pytest.mark.parametrize("name", ["__proto__", "__class__"])
def test_reserved_names_are_refused(name: str) -> None:
    parsed = parse_metrics(f"METRIC {name}=1\n")
    assert parsed.values == {}
    assert "reserved" in parsed.problems[0]


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
