"""Every option of a run, declared once.

Each row of :data:`OPTIONS` gives an option's name, how its value becomes a typed value,
its default, its help and where it applies: the ``jupyter-autoresearch run`` command line
(``cli``), the ``%%autoresearch`` line (``magic``), a trait of ``AutoresearchMagics``
(``config``) and ``create_session(**options)`` (``api``). The argparse parsers, the
traits, the keyword check of ``create_session`` and the README's option table are
generated from it. Adding an option is adding a row (and reading its value where it is
used, from :class:`RunConfig`).

Values arrive in layers, lowest first: the table's defaults, the ``%config`` traits, the
``%%autoresearch`` line, then the command line or the Python API. Each layer is converted
to typed values once (:func:`convert`); :meth:`RunConfig.resolve` stacks them.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from ..isolation._dask import INSTALL_HINT
from ..protocol._constraints import Constraint, parse_constraints
from ..protocol._errors import OptionsError
from ..protocol._settings import (
    SANDBOX_MODES,
    CheckSettings,
    EvaluationSettings,
    ExecutorSettings,
    ModelSettings,
    TrustSettings,
)
from ..protocol._task import Direction, Limits, TaskSpec, Threshold, parse_duration

__all__ = [
    "API",
    "CLI",
    "CONFIG",
    "MAGIC",
    "OPTIONS",
    "HelpShown",
    "Option",
    "OutputSettings",
    "RunConfig",
    "SetupCells",
    "add_options",
    "api_layer",
    "argv_layer",
    "convert",
    "magic_layer",
    "magic_parser",
    "new_parser",
    "option",
    "options_doc",
    "options_for",
    "options_table",
    "trait_layer",
]

CLI, MAGIC, CONFIG, API = "cli", "magic", "config", "api"
_EVERYWHERE = frozenset({CLI, MAGIC, CONFIG, API})
_WHERE_NAMES = {CLI: "CLI", MAGIC: "magic", CONFIG: "%config", API: "API"}

#: ``above``, ``none``, or In [N] numbers (execution counts) of cells run once in the worker.
SetupCells = Literal["above", "none"] | tuple[int, ...]
Kind = Literal["text", "int", "float", "flag", "list", "choice"]


class _Invalid(Exception):
    """A value an option refuses; the text follows the value in the message ("is not ...")."""


# -- value parsers: a raw value (command-line text, or a Python value) -> a typed value --------
def _text(value: object) -> str:
    if isinstance(value, (str, Path)):
        return str(value)
    raise _Invalid("is not text")


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid("is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise _Invalid("is not a whole number") from None


def _count(value: object) -> int:
    number = _whole(value)
    if number < 0:
        raise _Invalid("must be 0 or more")
    return number


def _at_least_one(value: object) -> int:
    number = _whole(value)
    if number < 1:
        raise _Invalid("must be 1 or more")
    return number


def _real(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid("is not a number")
    try:
        return float(value)
    except ValueError:
        raise _Invalid("is not a number") from None


def _positive(value: object) -> float:
    number = _real(value)
    if not number > 0 or number == float("inf"):
        raise _Invalid("must be a positive number")
    return number


def _non_negative(value: object) -> float:
    number = _real(value)
    if not 0 <= number < float("inf"):
        raise _Invalid("must be 0 or a positive number")
    return number


def _megabytes(value: object) -> int | None:
    return _count(value) or None  # 0: no limit


def _duration(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value > 0:
            return float(value)
        raise _Invalid("must be positive")
    try:
        seconds = parse_duration(_text(value))
    except OptionsError:
        raise _Invalid("is not a duration; write e.g. 90s, 15m or 2h") from None
    if not seconds:
        raise _Invalid("must be positive")
    return seconds


def _threshold(value: object) -> Threshold:
    if isinstance(value, Threshold):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Invalid("is not a number")
    try:
        return Threshold.parse(value)
    except OptionsError:
        raise _Invalid("is not a non-negative number; write e.g. 0.01 or 1%") from None


def _setup_cells(value: object) -> SetupCells:
    if isinstance(value, (list, tuple)):
        return tuple(_at_least_one(v) for v in value)
    text = _text(value).strip()
    if text in ("above", "none"):
        return text  # type: ignore[return-value]
    if not re.fullmatch(r"\d+(\s*,\s*\d+)*", text):
        raise _Invalid("is not understood; write 'above', 'none' or In [N] numbers like 1,3")
    return tuple(_at_least_one(part) for part in text.split(","))


def _items(value: object) -> tuple[str, ...]:
    """A repeatable option's values: one text, or several."""
    if isinstance(value, (str, Path)):
        return (str(value),)
    if isinstance(value, Iterable):
        return tuple(_text(item) for item in value)
    raise _Invalid("is not text or a list of texts")


def _commands(value: object) -> tuple[str, ...]:
    commands = _items(value)
    if any(not command.strip() for command in commands):
        raise _Invalid("is empty; write the command that checks a run, e.g. 'pytest -q'")
    return commands


def _names(value: object) -> tuple[str, ...]:
    """Names given one per option or comma-separated (``chosen,model``)."""
    names = tuple(name.strip() for item in _items(value) for name in item.split(",") if name.strip())
    return tuple(dict.fromkeys(names))


def _constraints(value: object) -> tuple[Constraint, ...]:
    return parse_constraints(_items(value))  # a ConstraintError says what is wrong


def _off_limits(value: object) -> tuple[str, ...]:
    return tuple(p for p in _items(value) if p != "none")  # "none": protect nothing


def _path(value: object) -> Path:
    return Path(_text(value))


def _executor(value: object) -> Any:
    if not isinstance(value, (str, Path)):
        if hasattr(value, "submit") and hasattr(value, "scheduler"):  # a distributed.Client, from Python
            return value
        raise _Invalid("is not 'local', a Dask scheduler's address or a distributed.Client")
    text = str(value).strip()
    if text == "local":
        return text
    if not re.fullmatch(r"(?:[a-z+]+://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):\d+/?", text):
        raise _Invalid("is not understood; give local, or a Dask scheduler's address like tcp://HOST:PORT")
    try:
        missing = importlib.util.find_spec("distributed") is None
    except (ImportError, ValueError):  # a broken or blocked installation
        missing = True
    if missing:
        raise _Invalid(f"needs Dask's distributed package: {INSTALL_HINT}")
    return text


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid("is not True or False")


@dataclass(frozen=True)
class Option:
    """One option.

    Attributes:
        name: the Python name (``max_iterations``); the flag is ``--max-iterations``.
        help: what it does, for ``--help``, the traits and the README.
        group: the heading it is listed under.
        kind: how it is written: ``text``, ``int``, ``float``, ``flag``, ``list``
            (repeatable) or ``choice``.
        default: the default as a user would write it; its typed value is ``parse(default)``.
        parse: turns a raw value into the typed value; raises ``_Invalid``.
        metavar: the placeholder in usage lines.
        choices: the values a ``choice`` takes.
        where: where it applies: ``cli``, ``magic``, ``config``, ``api``.
        keyword: its name in ``create_session`` when that differs from ``name``.
        shown_default: how the default reads in help, when it is not a plain value.
        into: the :class:`RunConfig` part its value goes to (``task``, ``limits``,
            ``evaluation``, ``checks``, ``model``, ``trust``, ``output``); by default its group's.
        field: the field of that part, when it differs from ``name``.
    """

    name: str
    help: str
    group: str
    kind: Kind = "text"
    default: Any = None
    parse: Callable[[Any], Any] = _text
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    where: frozenset[str] = _EVERYWHERE
    keyword: str = ""
    shown_default: str = ""
    into: str = ""
    field: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def api_name(self) -> str:
        return self.keyword or self.name

    @property
    def destination(self) -> tuple[str, str]:
        """``(part, field)`` of :class:`RunConfig` that holds the value."""
        return self.into or _PARTS[self.group], self.field or self.name

    @property
    def typed_default(self) -> Any:
        return None if self.default is None else self.parse(self.default)

    @property
    def default_text(self) -> str:
        """The default as help shows it ("" when there is nothing worth saying)."""
        if self.shown_default:
            return self.shown_default
        if self.default is None or self.default is False or self.default in ("", ()):
            return ""
        return str(self.default)


_OBJECTIVE = "objective"
_MODEL = "model"
_STOP = "stop rules and decisions"
_EVALUATION = "evaluation"
_CHECKS = "correctness checks"
_TRUST = "holdout and hidden metrics"
_OUTPUT = "session and output"
_PARTS = {
    _OBJECTIVE: "task",
    _MODEL: "model",
    _STOP: "limits",
    _EVALUATION: "evaluation",
    _CHECKS: "checks",
    _TRUST: "trust",
    _OUTPUT: "output",
}

#: The options of a run, in the order they are listed.
OPTIONS: tuple[Option, ...] = (
    # The direction options set the task's metric and direction together (see RunConfig.resolve).
    Option("maximize", "primary metric, higher is better (with neither, the model infers the task)", _OBJECTIVE,
           metavar="METRIC", into="direction"),
    Option("minimize", "primary metric, lower is better", _OBJECTIVE, metavar="METRIC", into="direction"),
    Option("constraint", "a rule every kept run must meet, e.g. 'cs_contacts / users <= 0.042' (repeatable)",
           _OBJECTIVE, kind="list", default=(), parse=_constraints, metavar="EXPR", keyword="constraints",
           field="constraints"),
    Option("off_limits", "files candidates must not change (repeatable; 'none' protects nothing)", _OBJECTIVE,
           kind="list", default=(), parse=_off_limits, metavar="GLOB", shown_default="the data files the cell reads"),
    Option("objective", "the task in prose, for the model", _OBJECTIVE, default="", metavar="TEXT"),
    Option("model", "litellm model string (openai/gpt-5-mini, ollama/qwen2.5-coder, ...) or replay:PATH", _MODEL,
           metavar="MODEL", shown_default="$AUTORESEARCH_MODEL"),
    Option("api_base", "an OpenAI-compatible server", _MODEL, metavar="URL", shown_default="$AUTORESEARCH_API_BASE"),
    Option("max_reply_tokens", "the most tokens a model reply may use (the request's limit; --max-cost counts on "
           "it before each request)", _MODEL, kind="int", default=16384, parse=_at_least_one, metavar="N"),
    Option("max_iterations", "runs after the baseline, per run of the loop (a rerun adds as many more)", _STOP,
           kind="int", default=20, parse=_count, metavar="N"),
    Option("plateau", "stop after K runs in a row without a keep (0: never)", _STOP, kind="int", default=20,
           parse=_count, metavar="K"),
    Option("max_cost", "never spend more than this many US dollars on model calls: before each request its "
           "cost is bounded (prompt tokens, reply limit, the model's price) and the loop stops if it could cross "
           "the cap", _STOP, kind="float", parse=_positive,
           metavar="USD"),
    Option("max_time", "stop after this long, e.g. 30m or 2h", _STOP, parse=_duration, metavar="DURATION"),
    Option("max_model_failures", "stop after K failed model requests in a row (each failure costs an iteration)",
           _STOP, kind="int", default=3, parse=_at_least_one, metavar="K"),
    Option("min_improvement", "a run must beat the best by more than X (absolute, or 1% relative)", _STOP,
           default="0", parse=_threshold, metavar="X"),
    Option("repeats", "evaluate each candidate N times and use the median; the best is measured again beside "
           "each one (paired, interleaved)", _STOP, kind="int", default=1, parse=_at_least_one, metavar="N"),
    Option("calibrate", "run the unchanged cell K times before the loop, report each metric's spread and set the "
           "keep threshold from it (unless --min-improvement is given; 0: off)", _STOP, kind="int", default=0,
           parse=_count, metavar="K"),
    Option("parallel", "runs in flight at once, each one model request, then its evaluation", _STOP, kind="int",
           default=1, parse=_at_least_one, metavar="N"),
    Option("timeout", "seconds one evaluation may take", _EVALUATION, kind="float", default=600, parse=_positive,
           metavar="SECONDS"),
    Option("memory_limit", "MiB of memory a candidate may add (0: no limit)", _EVALUATION, kind="int", default=4096,
           parse=_megabytes, metavar="MB", field="memory_mb"),
    Option("sandbox", "confine candidates with bubblewrap: 'auto' where it works here, 'on' or refuse to start, "
           "'off'", _EVALUATION, kind="choice", default="auto", choices=SANDBOX_MODES),
    Option("network", "let confined candidates use the network (otherwise only a private loopback)", _EVALUATION,
           kind="flag", default=False, parse=_flag),
    Option("executor", "where candidates run: 'local', or a Dask scheduler's address tcp://HOST:PORT (the dask "
           "extra); in Python also a distributed.Client", _EVALUATION, parse=_executor, metavar="WHERE",
           shown_default="$AUTORESEARCH_EXECUTOR, else local", into="executor"),
    Option("upload_limit", "MB of the target's folder uploaded to each Dask worker", _EVALUATION, kind="float",
           default=100, parse=_positive, metavar="MB", into="executor", field="upload_limit_mb"),
    Option("shared_folder", "Dask workers read the target's folder at its own path (shared storage), not an upload",
           _EVALUATION, kind="flag", default=False, parse=_flag, into="executor"),
    Option("setup_cells", "the state candidates start from: 'above' (the cells above the benchmark; in a kernel, "
           "the variables the cell reads), 'none', or the In [N] numbers of cells to run once in the worker, "
           "like 1,3", _EVALUATION, default="above", parse=_setup_cells, metavar="LIST", into="output"),
    Option("check", "a shell command that must exit 0 after a run that would be kept, or the run is "
           "checks_failed; it runs in the candidate's sandbox and folder, with the candidate's code in the file "
           "$AUTORESEARCH_CANDIDATE (repeatable)", _CHECKS, kind="list", default=(), parse=_commands, metavar="CMD",
           keyword="checks", field="commands"),
    Option("check_cell", "a code cell of the notebook (the N-th, as --cell counts) that must run without raising "
           "in the namespace a run that would be kept leaves, or the run is checks_failed", _CHECKS, kind="int",
           parse=_at_least_one, metavar="N", field="cell"),
    Option("check_timeout", "seconds each check may take (a timeout fails it)", _CHECKS, kind="float", default=300,
           parse=_positive, metavar="SECONDS", field="timeout"),
    Option("hidden", "a metric the model never sees: not in prompts, history or reasons; you see it everywhere "
           "(repeatable)", _TRUST, kind="list", default=(), parse=_names, metavar="NAME", into="task"),
    Option("holdout", "a script that scores each candidate on data it never sees, in a process of its own; its "
           "METRIC lines are hidden metrics", _TRUST, parse=_path, metavar="FILE.py"),
    Option("holdout_cell", "in a notebook, the N-th code cell (counted as --cell counts) is the holdout instead",
           _TRUST, kind="int", parse=_at_least_one, metavar="N"),
    Option("holdout_inputs", "the candidate's variables the holdout reads, sent from its process (cloudpickled), "
           "e.g. chosen,model", _TRUST, kind="list", default=(), parse=_names, metavar="NAMES"),
    Option("holdout_files", "files the holdout reads: hidden from candidates in the sandbox, protected, never "
           "named to the model (repeatable)", _TRUST, kind="list", default=(), parse=_items, metavar="GLOB"),
    Option("select_by", "which metric picks the best kept run for export and best", _TRUST, kind="choice",
           default="search", choices=("search", "holdout")),
    Option("same_output", "a variable whose value must stay the baseline's, else the run is infeasible "
           "(pandas and numpy aware; repeatable)", _TRUST, kind="list", default=(), parse=_names, metavar="NAME"),
    Option("rtol", "relative tolerance of --same-output for numbers, arrays and frames", _TRUST, kind="float",
           default=1e-7, parse=_non_negative, metavar="X", shown_default="1e-7"),
    Option("atol", "absolute tolerance of --same-output", _TRUST, kind="float", default=0, parse=_non_negative,
           metavar="X"),
    Option("session", "the session to create or resume (same name: it resumes)", _OUTPUT, metavar="NAME",
           keyword="name", shown_default="the file's or notebook's name"),
    Option("insert", "which accepted variants come back as notebook cells", _OUTPUT, kind="choice",
           default="accepted", choices=("accepted", "best", "none"), where=frozenset({CLI, MAGIC, CONFIG})),
    Option("wait", "block until the loop ends (for nbclient, papermill, CI)", _OUTPUT, kind="flag", default=False,
           parse=_flag, where=frozenset({MAGIC, CONFIG})),
    Option("cell", "benchmark = the N-th code cell instead of the %%autoresearch cell", _OUTPUT, kind="int",
           parse=_at_least_one, metavar="N", where=frozenset({CLI, API})),
    Option("output", "the notebook copy that receives the accepted cells", _OUTPUT, parse=_path, metavar="PATH",
           where=frozenset({CLI}), shown_default="NAME.autoresearch.ipynb"),
    Option("json", "print a summary object on stdout at the end", _OUTPUT, kind="flag", default=False, parse=_flag,
           where=frozenset({CLI})),
)  # fmt: skip

_BY_NAME = {option.name: option for option in OPTIONS}


def options_for(where: str) -> tuple[Option, ...]:
    return tuple(option for option in OPTIONS if where in option.where)


# -- typed settings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputSettings:
    """Which session, and what comes back where (the ``session and output`` options)."""

    session: str | None = None
    insert: str = "accepted"
    setup_cells: SetupCells = "above"
    cell: int | None = None
    output: Path | None = None
    wait: bool = False
    json: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Every option of a run as typed values, resolved from the layers once.

    Attributes:
        task: the objective (metric, direction, constraints, off-limits, prose).
        limits: stop rules and decision thresholds.
        evaluation: how candidates run.
        checks: the correctness checks of a run that would be kept.
        model: which model proposes (``model`` None until resolved from the environment).
        output: session name, inserted cells, setup cells, CLI output.
        trust: holdout, outputs that must not change, how the best is selected.
        executor: where candidates run (this machine, or a Dask cluster).
        given: the options some layer set explicitly (above the table's defaults).
    """

    task: TaskSpec = field(default_factory=TaskSpec)
    limits: Limits = field(default_factory=Limits)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    given: frozenset[str] = frozenset()

    @classmethod
    def resolve(cls, *layers: Mapping[str, Any]) -> RunConfig:
        """Stack typed layers (lowest first) on the table's defaults.

        ``--maximize`` and ``--minimize`` are one choice: a layer giving either replaces both.

        Raises:
            OptionsError: both directions in one layer, or a limit out of range.
        """
        values = {option.name: option.typed_default for option in OPTIONS}
        given: set[str] = set()
        for layer in layers:
            if "maximize" in layer and "minimize" in layer:
                raise OptionsError("give --maximize or --minimize, not both", option="maximize")
            if {"maximize", "minimize"} & layer.keys():
                values["maximize"] = values["minimize"] = None
            values.update(layer)
            given |= layer.keys()
        parts: dict[str, dict[str, Any]] = {part: {} for part in (*_PARTS.values(), "executor")}
        for option in OPTIONS:
            part, name = option.destination
            if part in parts:
                parts[part][name] = values[option.name]
        metric = values["maximize"] or values["minimize"]
        direction: Direction = "lower" if values["minimize"] else "higher"
        return cls(
            task=TaskSpec(metric=metric, direction=direction, **parts["task"]),
            limits=Limits(**parts["limits"]),
            evaluation=EvaluationSettings(**parts["evaluation"]),
            checks=CheckSettings(**parts["checks"]),
            model=ModelSettings(**parts["model"]),
            output=OutputSettings(**parts["output"]),
            trust=TrustSettings(**parts["trust"]),
            executor=ExecutorSettings(**parts["executor"]),
            given=frozenset(given),
        )


# -- layers ------------------------------------------------------------------------------------
def convert(option: Option, value: Any, label: str) -> Any:
    """The typed value of ``value`` for ``option``; ``label`` names it in the message.

    Raises:
        OptionsError: the value is not one the option takes.
        ConstraintError: a constraint cannot be parsed.
    """
    try:
        typed = option.parse(value)
    except _Invalid as why:
        raise OptionsError(f"{label}{value!r} {why}", option=option.name) from None
    if option.choices and typed not in option.choices:
        raise OptionsError(f"{label}{value!r} is not one of {', '.join(option.choices)}", option=option.name)
    return typed


def _unknown(name: str, known: Iterable[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def api_layer(values: Mapping[str, Any], *, caller: str = "create_session()") -> dict[str, Any]:
    """Typed values of Python keyword arguments (``None`` means not given).

    Raises:
        OptionsError: an unknown keyword (with the closest known one) or a bad value.
    """
    # The keyword (``constraints``, ``name``) or the option's own name (``constraint``, ``session``).
    options = {name: option for option in options_for(API) for name in {option.api_name, option.name}}
    layer: dict[str, Any] = {}
    for keyword, value in values.items():
        option = options.get(keyword)
        if option is None:
            known = [option.api_name for option in options_for(API)]
            raise OptionsError(f"{caller} got unknown option {keyword!r}{_unknown(keyword, known)}", option=keyword)
        if value is not None:
            if option.name in layer:
                raise OptionsError(f"{caller} got {option.api_name} twice (as {option.name}= too)", option=keyword)
            layer[option.name] = convert(option, value, f"{keyword}=")
    return layer


def trait_layer(values: Mapping[str, Any], *, owner: str = "AutoresearchMagics") -> dict[str, Any]:
    """Typed values of the traits that differ from the table's defaults."""
    layer: dict[str, Any] = {}
    for option in options_for(CONFIG):
        value = values.get(option.name)
        if value is not None and value != option.default:  # None: not set
            layer[option.name] = convert(option, value, f"{owner}.{option.name} = ")
    return layer


def argv_layer(namespace: argparse.Namespace) -> dict[str, Any]:
    """Typed values of the options an argparse namespace holds (only those given)."""
    layer: dict[str, Any] = {}
    for name, value in vars(namespace).items():
        option = _BY_NAME.get(name)
        if option is not None:
            layer[name] = convert(option, value, f"{option.flag} ")
    return layer


# -- argparse ------------------------------------------------------------------------------------
class HelpShown(Exception):
    """``--help`` printed the usage; the caller ends here (exit code ``status``)."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that raises OptionsError with a hint instead of exiting."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            words = message.split(":", 1)[1].split()
            option = next((w for w in words if w.startswith("-")), words[0] if words else "")
            hint = _unknown(option.split("=")[0], _option_strings(self)) or f"; see {self.prog} --help"
            raise OptionsError(f"unknown option {option}{hint}")
        raise OptionsError(f"{message}; see {self.prog} --help")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._print_message(message)
        raise HelpShown(status)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of ``parser`` and its sub-commands (extras surface at the top level)."""
    found: list[str] = []
    for action in parser._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return found


def new_parser(prog: str, **kwargs: Any) -> _Parser:
    return _Parser(prog=prog, allow_abbrev=False, **kwargs)


def _help(option: Option) -> str:
    text = option.help
    if option.default_text:
        text += f" (default {option.default_text})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_options(parser: argparse.ArgumentParser, where: str) -> None:
    """Declare the options that apply ``where``; defaults are suppressed so that the
    namespace holds only what was given."""
    groups: dict[str, Any] = {}
    direction: Any = None
    for option in options_for(where):
        group = groups.get(option.group) or groups.setdefault(option.group, parser.add_argument_group(option.group))
        if option.name in ("maximize", "minimize"):
            direction = direction or group.add_mutually_exclusive_group()
            group = direction
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(option)}
        if option.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = option.metavar
            if option.kind == "list":
                kwargs["action"] = "append"
            if option.choices:
                kwargs["choices"] = option.choices
                kwargs.pop("metavar")
        group.add_argument(option.flag, **kwargs)


_MAGIC_PARSER: _Parser | None = None


def magic_parser() -> _Parser:
    """The parser of the ``%%autoresearch`` line."""
    global _MAGIC_PARSER
    if _MAGIC_PARSER is None:
        _MAGIC_PARSER = new_parser(
            "%%autoresearch",
            description="Make this cell the benchmark and start the loop. Options here apply over the "
            "AutoresearchMagics traits (%config); the command line's apply over these.",
        )
        add_options(_MAGIC_PARSER, MAGIC)
    return _MAGIC_PARSER


def magic_layer(line: str) -> dict[str, Any]:
    """Typed values of the options written after ``%%autoresearch``.

    Raises:
        OptionsError: an unknown option, a missing or bad value, or unbalanced quotes.
        HelpShown: ``--help`` printed the usage.

    Example:
        >>> [str(c) for c in magic_layer("--maximize revenue --constraint 'spend<=30'")["constraint"]]
        ['spend <= 30']
    """
    try:
        argv = shlex.split(line)
    except ValueError as err:
        raise OptionsError(f"cannot read the %%autoresearch line ({err}); check the quotes") from None
    return argv_layer(magic_parser().parse_args(argv))


# -- documentation -------------------------------------------------------------------------------
def _where(option: Option) -> str:
    names = [_WHERE_NAMES[w] for w in (CLI, MAGIC, CONFIG, API) if w in option.where]
    if option.keyword and API in option.where:
        names[-1] = f"API (`{option.keyword}=`)"
    return ", ".join(names)


def options_table() -> str:
    """The README's option table (a test keeps the README equal to it)."""
    lines = ["| option | default | where | what it does |", "|---|---|---|---|"]
    for option in OPTIONS:
        placeholder = option.metavar or "\\|".join(option.choices)  # a pipe would end the table cell
        usage = option.flag if option.kind == "flag" else f"{option.flag} {placeholder}"
        default = option.default_text or "-"
        text = option.help.replace("|", "\\|")
        lines.append(f"| `{usage}` | {default} | {_where(option)} | {text} |")
    return "\n".join(lines)


def options_doc(where: str = API) -> str:
    """An ``Args:``-style list of the options that apply ``where`` (for docstrings)."""
    lines = []
    for option in options_for(where):
        default = f" Default: {option.default_text}." if option.default_text else ""
        lines.append(f"    {option.api_name if where == API else option.name}: {option.help}.{default}")
    return "\n".join(lines)


def option(name: str) -> Option:
    """The row of the option called ``name``."""
    return _BY_NAME[name]
