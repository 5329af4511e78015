"""The options table: one declaration per option, typed values, layers, help and the README."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import ROOT, metric_cell, write_recording

import jupyter_autoresearch as ar
from jupyter_autoresearch.cli import main
from jupyter_autoresearch.engine import _options
from jupyter_autoresearch.engine._options import (
    API,
    CLI,
    CONFIG,
    MAGIC,
    OPTIONS,
    RunConfig,
    api_layer,
    magic_layer,
    options_for,
    options_table,
    trait_layer,
)
from jupyter_autoresearch.protocol._settings import TrustSettings


def words(text: str) -> str:
    """``text`` with argparse's line wrapping undone."""
    return " ".join(text.split())


def test_the_readme_table_is_the_options_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- options table:[^\n]*-->\n(.*?)\n<!-- end of options table -->", readme, re.S)
    assert table is not None, "the README lost its generated options table"
    assert table.group(1) == options_table()


def test_run_help_lists_every_command_line_option_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    shown = words(capsys.readouterr().out)
    assert shown.startswith("usage: jupyter-autoresearch run")
    for option in options_for(CLI):
        assert option.flag in shown
        assert words(_options._help(option).replace("%%", "%")) in shown, option.name
    for option in set(OPTIONS) - set(options_for(CLI)):
        assert option.flag not in shown  # --wait is the magic's


def test_every_subcommand_prints_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["-h"], ["show", "--help"], ["run", "-h"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: jupyter-autoresearch"), argv
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("jupyter-autoresearch ")


def test_magic_help_lists_every_magic_option() -> None:
    shown = words(_options.magic_parser().format_help())
    for option in options_for(MAGIC):
        assert option.flag in shown and words(_options._help(option).replace("%%", "%")) in shown
    with pytest.raises(_options.HelpShown):
        magic_layer("--help")


def test_every_option_reaches_each_place_it_applies() -> None:
    from jupyter_autoresearch.notebook._magics import AutoresearchMagics

    traits = AutoresearchMagics.class_traits(config=True)
    assert set(traits) == {o.name for o in options_for(CONFIG)}
    for option in options_for(CONFIG):
        assert traits[option.name].help.startswith(option.help)
    cli = _options.new_parser("x")
    _options.add_options(cli, CLI)
    assert {a.dest for a in cli._actions} - {"help"} == {o.name for o in options_for(CLI)}
    accepted = set(api_layer({o.api_name: o.default for o in options_for(API) if o.default is not None}))
    assert accepted == {o.name for o in options_for(API) if o.default is not None}
    config = RunConfig.resolve()
    for option in OPTIONS:  # and each lands in a field of a typed setting
        part, field = option.destination
        if part != "direction":
            assert getattr(getattr(config, part), field) == option.typed_default, option.name


def test_values_are_typed_once() -> None:
    layer = magic_layer(
        "--maximize x --constraint 'a/b<=1' --constraint 'c >= 2' --max-time 30m --min-improvement 1% "
        "--setup-cells 1,3 --memory-limit 0 --plateau 0 --timeout 5 --off-limits none"
    )
    config = RunConfig.resolve(layer)
    assert config.task.metric == "x" and config.task.direction == "higher"
    assert [str(c) for c in config.task.constraints] == ["a / b <= 1", "c >= 2"]
    assert config.limits.max_time == 1800 and config.limits.min_improvement == ar.Threshold(1, percent=True)
    assert config.limits.plateau == 0  # turns the stuck-loop stop off
    assert config.output.setup_cells == (1, 3)
    assert config.evaluation == ar.EvaluationSettings(timeout=5, memory_mb=None)
    assert config.task.off_limits == () and "off_limits" in config.given


def test_defaults_come_from_the_table() -> None:
    config = RunConfig.resolve()
    assert config.limits == ar.Limits() and config.limits.plateau == 20 and config.limits.max_model_failures == 3
    assert config.evaluation == ar.EvaluationSettings() and config.evaluation.timeout == 600
    assert config.output.insert == "accepted" and config.output.setup_cells == "above"
    assert config.given == frozenset()


def test_layers_stack_defaults_traits_line_then_command_line() -> None:
    traits = trait_layer({"max_iterations": 50, "model": "openai/a", "repeats": 3, "maximize": "x"})
    line = magic_layer("--max-iterations 7 --model openai/b --minimize y")
    cli = api_layer({"max_iterations": 9})
    config = RunConfig.resolve(traits, line, cli)
    assert config.limits.max_iterations == 9  # the command line (or the API) wins
    assert config.model.model == "openai/b"  # the line over the traits
    assert config.limits.repeats == 3  # the traits over the defaults
    assert config.task.metric == "y" and config.task.direction == "lower"  # a direction replaces the other
    assert config.limits.parallel == 1  # the default


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: magic_layer("--max-iterations many"), "--max-iterations 'many' is not a whole number"),
        (lambda: magic_layer("--repeats 0"), "--repeats '0' must be 1 or more"),
        (lambda: magic_layer("--max-time soon"), "--max-time 'soon' is not a duration; write e.g. 90s, 15m or 2h"),
        (lambda: magic_layer("--min-improvement -1"), "is not a non-negative number; write e.g. 0.01 or 1%"),
        (lambda: magic_layer("--setup-cells two"), "write 'above', 'none' or In [N] numbers like 1,3"),
        (lambda: magic_layer("--insert some"), "invalid choice: 'some'"),
        (lambda: magic_layer("--maximise x"), "unknown option --maximise; did you mean --maximize?"),
        (lambda: magic_layer("--maximize x --minimize y"), "not allowed with argument --maximize"),
        (lambda: api_layer({"max_iterations": "many"}), "max_iterations='many' is not a whole number"),
        (lambda: api_layer({"max_iteration": 3}), "got unknown option 'max_iteration'; did you mean max_iterations?"),
        (lambda: api_layer({"timeout": -1}), "timeout=-1 must be a positive number"),
        (lambda: trait_layer({"max_time": "soon"}), "AutoresearchMagics.max_time = 'soon' is not a duration"),
        (lambda: RunConfig.resolve(api_layer({"maximize": "x", "minimize": "y"})), "not both"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(make: Any, message: str) -> None:
    with pytest.raises(ar.OptionsError) as raised:
        make()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_bad_constraint_says_what_is_wrong() -> None:
    with pytest.raises(ar.ConstraintError, match="uses unknown operator '!='") as raised:
        magic_layer("--constraint 'x != 1'")
    assert raised.value.constraint == "x != 1"


def test_create_session_checks_its_keywords(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    with pytest.raises(ar.OptionsError, match="did you mean constraints"):
        ar.create_session(tmp_path / "bench.py", constraintz=["x <= 1"])
    assert "max_model_failures:" in (ar.create_session.__doc__ or "")  # the docstring lists the table


def test_setup_cells_are_in_numbers_in_a_notebook_file_as_in_a_kernel(tmp_path: Path) -> None:
    rec = write_recording(tmp_path / "rec.jsonl", [])
    cells = [
        nbformat.v4.new_code_cell("base = 1", execution_count=4),
        nbformat.v4.new_code_cell("base = 10", execution_count=7),
        nbformat.v4.new_code_cell(
            f"%%autoresearch --maximize x --model replay:{rec.name}\nprint(f'METRIC x={{base}}')"
        ),
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "nb.ipynb")
    assert ar.create_session(tmp_path / "nb.ipynb").run().runs[0].metric == 10  # above: both, in order
    session = ar.create_session(tmp_path / "nb.ipynb", setup_cells="4", name="four").run()
    assert session.runs[0].metric == 1  # In [4] only
    with pytest.raises(
        ar.OptionsError, match=r"no code cell of nb.ipynb was saved as In \[5\] \(its cells show \[4\], \[7\]\)"
    ):
        ar.create_session(tmp_path / "nb.ipynb", setup_cells=[5])


TRUST_LINE = (
    "--maximize x --hidden cost --hidden secret,other --holdout check.py --holdout-inputs chosen,model "
    "--holdout-files 'data/latest*.csv' --select-by holdout --same-output result --same-output table "
    "--rtol 1e-3 --atol 0.5 --calibrate 5"
)


def test_the_holdout_options_are_typed_the_same_on_the_line_the_command_line_the_traits_and_the_api() -> None:
    from jupyter_autoresearch.cli import _parser

    expected = RunConfig.resolve(magic_layer(TRUST_LINE))
    assert expected.task.hidden == ("cost", "secret", "other")
    assert expected.trust == TrustSettings(
        holdout=Path("check.py"),
        holdout_inputs=("chosen", "model"),
        holdout_files=("data/latest*.csv",),
        same_output=("result", "table"),
        rtol=1e-3,
        atol=0.5,
        select_by="holdout",
    )
    assert expected.limits.calibrate == 5
    values: dict[str, Any] = {
        "maximize": "x",
        "hidden": ["cost", "secret", "other"],
        "holdout": "check.py",
        "holdout_inputs": ["chosen", "model"],
        "holdout_files": ["data/latest*.csv"],
        "select_by": "holdout",
        "same_output": ["result", "table"],
        "rtol": 1e-3,
        "atol": 0.5,
        "calibrate": 5,
    }
    cli = _options.argv_layer(_parser().parse_args(["run", "t.py", *shlex.split(TRUST_LINE)]))
    for layer in (cli, trait_layer(values), api_layer(values)):
        config = RunConfig.resolve(layer)
        assert (config.task.hidden, config.trust, config.limits.calibrate) == (
            expected.task.hidden,
            expected.trust,
            5,
        )


@pytest.mark.parametrize(
    "line, message",
    [
        ("--holdout a.py --holdout-cell 3", "give --holdout FILE.py or --holdout-cell N, not both"),
        ("--holdout-inputs chosen", "--holdout-inputs chosen needs a holdout to read them"),
        ("--select-by holdout", "--select-by holdout needs a holdout metric"),
        ("--same-output 'not a name'", "'not a name' is not a variable name"),
        ("--rtol -1", "--rtol '-1' must be 0 or a positive number"),
        ("--calibrate -2", "--calibrate '-2' must be 0 or more"),
        ("--hidden 'bad name'", "'bad name'"),
    ],
)
def test_bad_holdout_options_are_one_line(line: str, message: str) -> None:
    with pytest.raises(ar.AutoresearchError) as info:
        RunConfig.resolve(magic_layer(f"--maximize x {line}"))
    assert message in str(info.value) and "\n" not in str(info.value)
