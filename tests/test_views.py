"""Pure renderers of run records: text tables, HTML, the chart's styles, one look per status."""

from __future__ import annotations

import pytest

from jupyter_autoresearch import RunRecord
from jupyter_autoresearch.protocol._format import change, money, note, number, short, tokens
from jupyter_autoresearch.views._html import error_html, history_html, output_html, status_badge, summary_html
from jupyter_autoresearch.views._report import history_table
from jupyter_autoresearch.views._status import STATUS_STYLES, status_style

RUNS = [
    RunRecord(run=1, segment=0, status="keep", metric=100.0, metrics={"x": 100.0, "cost": 1}, hypothesis="Baseline."),
    RunRecord(run=2, segment=0, status="crash", metric=None, hypothesis="<b>bold</b>", error="KeyError: 'x'",
              stderr_tail="Traceback\nKeyError: 'x'\n"),
    RunRecord(run=3, segment=1, status="keep", metric=102.5, metrics={"x": 102.5, "cost": 2}, hypothesis="more",
              constraints=("cost <= 2",)),
    RunRecord(run=4, segment=1, status="keep", metric=105.0, metrics={"x": 105.0, "cost": 2}, hypothesis="most",
              constraints=("cost <= 2",)),
]  # fmt: skip


def test_formatting() -> None:
    # A metric reads as the cell printed it; the float noise of a median or a sum does not show.
    assert number(110.16271234) == "110.16271234" and number(110.1627) == "110.1627" and number(48.0) == "48"
    assert number(0.1 + 0.2) == "0.3" and number(1e-05) == "1e-05" and number(None) == "-" and number(None, "") == ""
    assert change(102.5, 100) == "+2.5 (+2.50%)" and change(1, 1) == "" and change(None, 1) == ""
    assert change(110.1627, 107.9158) == "+2.2469 (+2.08%)" and change(109.8699, 110.1627) == "-0.2928 (-0.27%)"
    assert change(1.00000001, 1) == "+1e-08 (+0.00%)"
    assert money(0.0123456) == "$0.0123" and money(0.000042) == "$0.000042" and money(None) == ""
    assert tokens(3410) == "3,410 tokens" and tokens(None) == ""
    assert short("a\x1b[31m  b\n c", 80) == "a [31m b c" and short("abcdef", 4) == "abc…"
    assert note(RUNS[1]) == "<b>bold</b> [KeyError: 'x']" and note(RUNS[0]) == "Baseline."


def test_every_status_has_one_style() -> None:
    assert set(STATUS_STYLES) >= {"keep", "discard", "crash", "timeout", "infeasible", "invalid", "violation"}
    assert status_style("keep").colour == "#2e7d32" and status_style("keep").ansi == "32"
    assert status_style("something new").colour == "#424242"  # unknown statuses still render


def test_the_text_history_separates_segments() -> None:
    table = history_table(RUNS, "x")
    lines = table.splitlines()
    assert lines[0].split() == ["run", "seg", "status", "x", "vs", "baseline", "hypothesis"]
    assert "-- segment 1: constraints cost <= 2" in table
    assert lines[3].split()[:3] == ["2", "0", "crash"] and "[KeyError: 'x']" in lines[3]
    assert "+2.5 (+2.44%)" in lines[6]  # against the first run of its own segment
    assert history_table([], "x") == "(no runs)"


def test_html_escapes_every_string_from_a_run() -> None:
    html = history_html(RUNS, "x", RUNS[3], columns=["cost"])
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert html.count("<tr") == 6 and status_badge("crash") in html  # a header, four runs, a segment divider
    assert status_style("crash").colour in status_badge("crash")
    assert "Traceback\nKeyError: &#x27;x&#x27;" in output_html(RUNS[1])
    assert "&lt;script&gt;</div>" in error_html("<script>") and "title='&lt;script&gt;'" in error_html("<script>")
    summary = summary_html("s<1>", "x", RUNS, RUNS[3], "stopped")
    assert "s&lt;1&gt;" in summary and "run 4: 105 +2.5 (+2.44%)" in summary


@pytest.mark.parametrize("count, shown", [(3, 3), (40, 15)])
def test_the_summary_shows_the_latest_runs(count: int, shown: int) -> None:
    runs = [RunRecord(run=i, segment=0, status="discard", metric=float(i)) for i in range(1, count + 1)]
    html = summary_html("s", "x", runs, None, "idle")
    assert html.count("<tr") == shown + 1 and ("earlier runs not shown" in html) == (count > shown)


HELD = [
    RunRecord(run=1, segment=0, status="keep", metric=9.0, metrics={"mape": 9.0, "holdout_mape": 9.2}),
    RunRecord(run=2, segment=0, status="keep", metric=7.6, metrics={"mape": 7.6, "holdout_mape": 8.4}),
    RunRecord(run=3, segment=0, status="keep", metric=6.4, metrics={"mape": 6.4, "holdout_mape": 12.9},
              flags={"overfit": "mape improved on run 2, but holdout_mape got worse: 12.9 vs 8.4"}),
    RunRecord(run=4, segment=0, status="discard", metric=8.9, metrics={"mape": 8.9, "holdout_mape": 25.3},
              paired={"incumbent": 3, "incumbent_metric": 6.5, "gain": -2.4, "noise": 0.1, "need": 0, "pairs": 3},
              flags={"hidden_printed": "the cell printed holdout_mape itself, which only the holdout reports"}),
]  # fmt: skip


def test_kept_runs_show_the_holdout_beside_the_search_metric_and_overfitting_is_marked() -> None:
    from jupyter_autoresearch.views._trust import holdout_text, paired_text

    table = history_table(HELD, "mape", holdout="holdout_mape").splitlines()
    assert table[0].split() == ["run", "seg", "status", "mape", "vs", "baseline", "holdout_mape", "gap", "hypothesis"]
    assert table[3].split()[:5] == ["2", "0", "keep", "7.6", "-1.4"] and table[3].split()[6:8] == ["8.4", "+0.8"]
    assert table[4].split()[:4] == ["3", "0", "keep", "⚠"] and "+6.5" in table[4]
    assert "25.3" not in table[5]  # only kept runs show the holdout
    assert holdout_text(HELD[2], "mape", "holdout_mape") == "holdout_mape=12.9 (gap +6.5) ⚠ holdout worse"
    assert holdout_text(HELD[1], "mape", None) == ""
    assert paired_text(HELD[3]) == (
        "against run 3 measured again (median 6.5 over 3 rounds): gain -2.4, not more than margin 0.1"
    )
    html = history_html(HELD, "mape", HELD[2], holdout="holdout_mape")
    assert "<th" in html and "holdout_mape</th>" in html and "gap</th>" in html
    assert 'title="mape improved on run 2, but holdout_mape got worse: 12.9 vs 8.4"' in html
    assert "[the cell printed holdout_mape itself" in html
    detail = output_html(HELD[3])
    assert "gain -2.4, not more than margin 0.1" in detail and "printed holdout_mape itself" in detail


def test_the_chart_draws_the_holdout_too() -> None:
    from jupyter_autoresearch.views._plot import metric_figure

    figure = metric_figure(HELD, "mape", "lower", holdout="holdout_mape")
    [axes] = figure.axes  # on the same scale: one axis
    labels = axes.get_legend_handles_labels()[1]
    assert "holdout_mape" in labels and "holdout_mape worse" in labels
    held = next(c for c in axes.collections if c.get_label() == "holdout_mape")
    assert [tuple(p) for p in held.get_offsets()] == [(1, 9.2), (2, 8.4), (3, 12.9)]  # kept runs
    worse = next(c for c in axes.collections if c.get_label() == "holdout_mape worse")
    assert [tuple(p) for p in worse.get_offsets()] == [(3, 12.9)]
    scaled = [
        RunRecord(run=r.run, segment=0, status=r.status, metric=r.metric, metrics={**r.metrics, "holdout_mape": 1e4})
        for r in HELD
    ]
    assert len(metric_figure(scaled, "mape", "lower", holdout="holdout_mape").axes) == 2  # its own axis


def test_the_panel_chart_draws_the_holdout_on_its_own_scale_when_it_differs() -> None:
    from jupyter_autoresearch.views._svg import metric_svg

    svg = metric_svg(HELD, "mape", "lower", holdout="holdout_mape")
    # Kept runs' holdout values as hollow diamonds, the overfit run ringed, both in the legend.
    assert svg.count("run 1 · holdout_mape 9.2") == 1 and "run 3 · holdout_mape 12.9 · worse" in svg
    assert "25.3" not in svg  # a discarded run's holdout is not drawn
    assert "holdout_mape of kept runs" in svg and "holdout_mape worse" in svg and svg.count('r="9"') == 1
    assert "rotate(90" not in svg  # the same scale: one axis
    scaled = [
        RunRecord(run=r.run, segment=0, status=r.status, metric=r.metric, metrics={**r.metrics, "holdout_mape": 1e4})
        for r in HELD
    ]
    assert "rotate(90" in metric_svg(scaled, "mape", "lower", holdout="holdout_mape")  # its own axis, labelled
    assert "holdout_mape" not in metric_svg(HELD, "mape", "lower")


def test_cell_headers_keep_the_printed_precision() -> None:
    from jupyter_autoresearch.views._cells import variant_cell

    record = RunRecord(run=6, segment=0, status="keep", metric=110.1627, code="x = 1\n")
    source, _ = variant_cell("marketing_budget", record, "revenue_millions")
    assert source.startswith("# autoresearch marketing_budget run 6: revenue_millions=110.1627 (kept)\n")
