"""Run options, parsed the same way from the command line and the ``%%autoresearch`` line."""

from __future__ import annotations

import argparse
import difflib
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, NoReturn

from ..protocol._errors import OptionsError

__all__ = ["RunOptions", "add_run_arguments", "parse_magic_line", "parse_run_options"]

INSERT_MODES = ("accepted", "best", "none")


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run; the CLI and the magic fill it from their arguments."""

    maximize: str | None = None
    minimize: str | None = None
    constraint: tuple[str, ...] | None = None
    off_limits: tuple[str, ...] | None = None
    objective: str = ""
    model: str | None = None
    api_base: str | None = None
    max_iterations: int | None = 20
    plateau: int | None = None
    max_cost: float | None = None
    max_time: str | None = None
    min_improvement: str = "0"
    repeats: int = 1
    parallel: int = 1
    timeout: float = 600.0
    memory_limit: int = 4096
    session: str | None = None
    cell: int | None = None
    setup_cells: str | None = None
    insert: str = "accepted"
    output: str | None = None
    wait: bool = False
    json: bool = False
    given: frozenset[str] = field(default_factory=frozenset, compare=False)

    def merged_under(self, over: RunOptions) -> RunOptions:
        """These options with every option given explicitly in ``over`` taking precedence."""
        values = {name: getattr(over, name) for name in over.given}
        if {"maximize", "minimize"} & over.given:
            values.setdefault("maximize", over.maximize)
            values.setdefault("minimize", over.minimize)
        return replace(self, **values, given=self.given | over.given)


class _Parser(argparse.ArgumentParser):
    """argparse that raises OptionsError with a hint instead of exiting."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            words = message.split(":", 1)[1].split()
            option = next((w for w in words if w.startswith("-")), words[0] if words else "")
            known = _option_strings(self)
            close = difflib.get_close_matches(option.split("=")[0], known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; see {self.prog} --help"
            raise OptionsError(f"unknown option {option}{hint}")
        raise OptionsError(f"{message}; see {self.prog} --help")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of ``parser`` and its sub-commands (extras surface at the top level)."""
    found: list[str] = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return found


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_run_arguments(parser: argparse.ArgumentParser, *, notebook: bool) -> None:
    """Declare the options of a run; defaults are suppressed so we know what was given."""
    S = argparse.SUPPRESS
    goal = parser.add_argument_group("objective")
    direction = goal.add_mutually_exclusive_group()
    direction.add_argument("--maximize", metavar="METRIC", default=S, help="primary metric, higher is better")
    direction.add_argument("--minimize", metavar="METRIC", default=S, help="primary metric, lower is better")
    goal.add_argument(
        "--constraint",
        metavar="EXPR",
        action="append",
        default=S,
        help="a rule every kept run must meet, e.g. 'spend_millions <= 30' (repeatable)",
    )
    goal.add_argument(
        "--off-limits",
        metavar="GLOB",
        action="append",
        default=S,
        help="files candidates must not change (repeatable; default: the data files the baseline reads)",
    )
    goal.add_argument("--objective", metavar="TEXT", default=S, help="the task in prose, for the model")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=S,
        help="litellm model string (openai/gpt-5-mini, ollama/qwen2.5-coder, ...) "
        "or replay:PATH; default $AUTORESEARCH_MODEL",
    )
    model.add_argument(
        "--api-base", metavar="URL", default=S, help="an OpenAI-compatible server; default $AUTORESEARCH_API_BASE"
    )
    stop = parser.add_argument_group("stop rules and decisions")
    stop.add_argument(
        "--max-iterations", type=_positive_int, metavar="N", default=S, help="runs after the baseline (default 20)"
    )
    stop.add_argument(
        "--plateau", type=_positive_int, metavar="K", default=S, help="stop after K runs in a row without improvement"
    )
    stop.add_argument(
        "--max-cost", type=_float, metavar="USD", default=S, help="stop once the model calls cost this many dollars"
    )
    stop.add_argument("--max-time", metavar="DURATION", default=S, help="stop after e.g. 30m or 2h")
    stop.add_argument(
        "--min-improvement",
        metavar="X",
        default=S,
        help="a run must beat the best by more than X (absolute, or 1%% relative)",
    )
    stop.add_argument(
        "--repeats",
        type=_positive_int,
        metavar="N",
        default=S,
        help="evaluate each candidate N times and use the median",
    )
    stop.add_argument("--parallel", type=_positive_int, metavar="N", default=S, help="proposals evaluated at a time")
    sandbox = parser.add_argument_group("evaluation")
    sandbox.add_argument("--timeout", type=_float, metavar="SECONDS", default=S, help="per evaluation (default 600)")
    sandbox.add_argument(
        "--memory-limit", type=_positive_int, metavar="MB", default=S, help="memory a candidate may add (default 4096)"
    )
    sandbox.add_argument(
        "--setup-cells",
        metavar="LIST",
        default=S,
        help="notebook cells run once before every candidate: 'above' (the "
        "cells above the benchmark), 'none', or numbers like '1,3'",
    )
    out = parser.add_argument_group("session and output")
    out.add_argument(
        "--session",
        metavar="NAME",
        default=S,
        help="session name (default: the file's or notebook's name); the same name resumes it",
    )
    out.add_argument(
        "--insert",
        choices=INSERT_MODES,
        default=S,
        help="which accepted variants come back as notebook cells (default accepted)",
    )
    if notebook:
        out.add_argument(
            "--wait", action="store_true", default=S, help="block until the loop ends (for nbclient, papermill, CI)"
        )
    else:
        out.add_argument(
            "--cell",
            type=_positive_int,
            metavar="N",
            default=S,
            help="benchmark = the N-th code cell instead of the %%%%autoresearch cell",
        )
        out.add_argument(
            "--output",
            metavar="PATH",
            default=S,
            help="notebook copy that receives the accepted cells (default NAME.autoresearch.ipynb)",
        )
        out.add_argument("--json", action="store_true", default=S, help="print a summary object on stdout at the end")


def options_from_namespace(values: Mapping[str, Any]) -> RunOptions:
    """RunOptions from parsed arguments; ``given`` records which were on the command line."""
    known = {f.name for f in fields(RunOptions)}
    given = {k: v for k, v in values.items() if k in known}
    for name in ("constraint", "off_limits"):
        if name in given:
            given[name] = tuple(given[name])
    return RunOptions(**given, given=frozenset(given))


def parse_run_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, RunOptions]:
    namespace = parser.parse_args(argv)
    return namespace, options_from_namespace(vars(namespace))


_MAGIC_PARSER: _Parser | None = None


def magic_parser() -> _Parser:
    global _MAGIC_PARSER
    if _MAGIC_PARSER is None:
        _MAGIC_PARSER = _Parser(prog="%%autoresearch", allow_abbrev=False, add_help=False)
        add_run_arguments(_MAGIC_PARSER, notebook=True)
    return _MAGIC_PARSER


def parse_magic_line(line: str) -> RunOptions:
    """Options written after ``%%autoresearch``.

    Raises:
        OptionsError: an unknown option, a missing value or unbalanced quotes.

    Example:
        >>> parse_magic_line("--maximize revenue --constraint 'spend <= 30'").constraint
        ('spend <= 30',)
    """
    try:
        argv = shlex.split(line)
    except ValueError as err:
        raise OptionsError(f"cannot read the %%autoresearch line ({err}); check the quotes") from None
    return parse_run_options(magic_parser(), argv)[1]


def new_parser(prog: str, **kwargs: Any) -> _Parser:
    return _Parser(prog=prog, allow_abbrev=False, **kwargs)
