"""Build sessions: :func:`create_session` and :func:`load_session`."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..isolation._dask import DaskEvaluator
from ..isolation._evaluate import Evaluator, ForkEvaluator, WorkerSetup, imported_modules
from ..isolation._holdout import HoldoutSpec, HoldoutWorker
from ..journal._journal import read_log, session_folder
from ..proposers._propose import Proposer
from ..proposers._replay import ReplayProposer
from ..protocol._checks import Check
from ..protocol._constraints import parse_constraints
from ..protocol._errors import OptionsError, ProposalError
from ..protocol._metrics import is_metric_name
from ..protocol._settings import CheckSettings, ModelSettings, TrustSettings
from ..protocol._task import Limits, TaskSpec
from ._options import RunConfig, SetupCells, api_layer, convert, magic_layer, option, options_doc
from ._session import Session
from ._target import Target, check_cell_code, load_target

__all__ = [
    "Holdout",
    "checks_for",
    "config_for",
    "create_session",
    "holdout_of",
    "load_session",
    "make_evaluator",
    "make_proposer",
    "session_from_config",
]


def make_proposer(settings: ModelSettings, *, folder: Path | None = None) -> Proposer:
    """The proposer for a model string: ``replay:PATH`` or any litellm model.

    The model and server default to ``$AUTORESEARCH_MODEL`` and ``$AUTORESEARCH_API_BASE``,
    read after the ``.env`` file beside the target.

    Raises:
        ProposalError: no model is configured.
    """
    load_dotenv(folder)
    model = settings.model or os.environ.get("AUTORESEARCH_MODEL")
    if not model:
        raise ProposalError.no_model()
    if model.startswith("replay:"):
        path = Path(model.removeprefix("replay:")).expanduser()
        if not path.is_absolute() and folder is not None and not path.exists():
            path = folder / path
        return ReplayProposer(path, label=model)
    from ..proposers._litellm import LiteLLMProposer

    return LiteLLMProposer(
        replace(
            settings,
            model=model,
            api_base=settings.api_base or os.environ.get("AUTORESEARCH_API_BASE") or None,
            env_file=settings.env_file or (folder / ".env" if folder is not None else None),
        )
    )


def make_evaluator(config: RunConfig, *, folder: Path | None = None) -> Evaluator:
    """The evaluator for the executor: the local warm fork, or a Dask cluster.

    The executor defaults to ``$AUTORESEARCH_EXECUTOR`` (read after the ``.env`` file
    beside the target), else ``local``.

    Raises:
        OptionsError: ``$AUTORESEARCH_EXECUTOR`` is not an executor, or Dask is missing.
    """
    settings = config.executor
    executor = settings.executor
    if executor is None:
        load_dotenv(folder)
        given = os.environ.get("AUTORESEARCH_EXECUTOR", "").strip()
        executor = convert(option("executor"), given, "$AUTORESEARCH_EXECUTOR=") if given else "local"
    if executor == "local":
        return ForkEvaluator(config.evaluation)
    return DaskEvaluator(
        executor,
        config.evaluation,
        upload_limit_mb=settings.upload_limit_mb,
        shared_folder=settings.shared_folder,
    )


def load_dotenv(folder: Path | None) -> None:
    """Read ``.env`` beside the target (and in the working directory); never overrides."""
    import dotenv

    for base in filter(None, (folder, Path.cwd())):
        if (base / ".env").is_file():
            dotenv.load_dotenv(base / ".env", override=False)


def data_files(target: Target) -> tuple[str, ...]:
    """Files the cell names in string literals that exist beside it (its data files)."""
    found: list[str] = []
    for code in (*target.setup_code, target.code):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 300:
                text = node.value
                path = target.folder / text
                if "\n" not in text and path.suffix not in (".py", "") and _is_file(path):
                    found.append(os.path.normpath(text))
    return tuple(dict.fromkeys(found))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def setup_code(target: Target, choice: SetupCells) -> tuple[str, ...]:
    """The code the worker runs once before any candidate (headless runs).

    ``above``: the code cells above the benchmark; ``none``: nothing; numbers: the code
    cells whose saved ``In [N]`` execution counts they are (as in a kernel).

    Raises:
        OptionsError: numbers for a script, or numbers no saved cell carries.
    """
    if choice == "above":
        return target.setup_code
    if choice == "none":
        return ()
    shown = ",".join(map(str, choice))
    if not target.is_notebook:
        raise OptionsError(f"--setup-cells {shown}: In [N] numbers only apply to notebooks", option="setup_cells")
    import nbformat

    from ._target import plain_python

    cells = {
        c.get("execution_count"): c
        for c in nbformat.read(target.path, as_version=4).cells
        if c.cell_type == "code" and c.get("execution_count")
    }
    missing = [n for n in choice if n not in cells]
    if missing:
        saved = ", ".join(f"[{n}]" for n in sorted(cells)) or "none (it was saved without outputs)"
        raise OptionsError(
            f"--setup-cells {missing[0]}: no code cell of {target.path.name} was saved as In [{missing[0]}] "
            f"(its cells show {saved}); give those numbers, 'above' or 'none'",
            option="setup_cells",
        )
    return tuple(plain_python(cells[n].source) for n in choice)


def checks_for(target: Target, settings: CheckSettings) -> tuple[Check, ...]:
    """The correctness checks of ``settings``: the commands, then the check cell.

    Raises:
        TargetError: the check cell cannot be used (see :func:`check_cell_code`).
    """
    checks = [Check.command(command, timeout=settings.timeout) for command in settings.commands]
    if settings.cell is not None:
        code = check_cell_code(target, settings.cell)
        checks.append(Check.cell(code, settings.cell, timeout=settings.timeout))
    return tuple(checks)


@dataclass(frozen=True)
class Holdout:
    """The holdout's code and where it comes from.

    Attributes:
        code: its source.
        name: how messages and tracebacks name it (the file's name, or ``cell N``).
        setup_code: in a notebook run headless, the code cells above it (its state).
        hidden: files that hold its code, relative to the target's folder: hidden from
            candidates in the sandbox.
    """

    code: str
    name: str
    setup_code: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()


def holdout_of(target: Target, trust: TrustSettings) -> Holdout | None:
    """Read the holdout (``--holdout FILE.py`` or ``--holdout-cell N``), if there is one.

    Raises:
        OptionsError: the file or cell is missing, is the benchmark, or does not compile.
    """
    if trust.holdout is not None:
        path = trust.holdout.expanduser()
        if not path.is_absolute() and not path.exists():
            path = target.folder / path
        if not path.is_file():
            raise OptionsError(
                f"--holdout {trust.holdout} does not exist; give the Python file that scores a candidate "
                "on the data it never sees",
                option="holdout",
            )
        try:
            code = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise OptionsError(f"cannot read --holdout {trust.holdout}: {err}", option="holdout") from None
        hidden: tuple[str, ...] = (
            (os.path.relpath(path.resolve(), target.folder),) if _inside(path, target.folder) else ()
        )
        return Holdout(_compiles(code, path.name, "--holdout"), path.name, (), hidden)
    if trust.holdout_cell is None:
        return None
    number = trust.holdout_cell
    if not target.is_notebook or not target.path.is_file():
        raise OptionsError(
            f"--holdout-cell {number} needs the notebook's file ({target.path.name} was not found): save the "
            "notebook, or give the holdout as --holdout FILE.py",
            option="holdout_cell",
        )
    import nbformat

    from ._target import plain_python, split_magic

    cells = [(i, c) for i, c in enumerate(nbformat.read(target.path, as_version=4).cells) if c.cell_type == "code"]
    if not 1 <= number <= len(cells):
        raise OptionsError(
            f"--holdout-cell {number} is out of range: {target.path.name} has {len(cells)} code cells",
            option="holdout_cell",
        )
    index, cell = cells[number - 1]
    if split_magic(cell.source) or index == target.cell_index:
        raise OptionsError(
            f"--holdout-cell {number} is the benchmark cell; give the cell that scores a candidate on hidden data",
            option="holdout_cell",
        )
    code = _compiles(plain_python(cell.source), f"cell {number}", "--holdout-cell")
    above = tuple(
        plain_python(c.source)
        for i, c in cells
        if i < index
        and i != target.cell_index
        and not split_magic(c.source)
        and "autoresearch" not in c.metadata
        and plain_python(c.source).strip()
    )
    # The notebook (and its copies) hold the holdout's code.
    stem = target.path.stem
    hidden = (target.path.name, f"{stem}.autoresearch.ipynb", f".ipynb_checkpoints/{stem}*")
    return Holdout(code, f"cell {number}", above, hidden)


def _compiles(code: str, name: str, option: str) -> str:
    try:
        compile(code, name, "exec")
    except SyntaxError as err:
        raise OptionsError(
            f"{option} {name} does not compile (line {err.lineno}: {err.msg})", option=option[2:].replace("-", "_")
        ) from None
    return code


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def config_for(target: Target, *layers: Mapping[str, Any]) -> RunConfig:
    """The table's defaults, then the target's ``%%autoresearch`` line, then ``layers``."""
    return RunConfig.resolve(magic_layer(target.magic_line) if target.magic_line else {}, *layers)


def session_from_config(
    target: Target,
    config: RunConfig,
    *,
    namespace: bytes | None = None,
    holdout_namespace: bytes | None = None,
    proposer: Proposer | None = None,
    evaluator: Evaluator | None = None,
) -> Session:
    """Build a runnable session for ``target`` (the CLI, the magic and the API all come here).

    Args:
        namespace: the user's variables, pickled (the magic); then no setup code runs.
        holdout_namespace: the variables the holdout starts from, pickled (the magic).
    """
    name = config.output.session or target.path.stem
    folder = session_folder(target.path, name)
    off_limits_given = "off_limits" in config.given
    trust = config.trust
    holdout = holdout_of(target, trust)
    task = config.task if off_limits_given else replace(config.task, off_limits=data_files(target))
    checks = checks_for(target, config.checks)
    # Never named to the model: the holdout's data, and its script (a notebook is not secret).
    script = holdout.hidden if holdout is not None and trust.holdout is not None else ()
    task = replace(task, hidden_files=tuple(dict.fromkeys((*trust.holdout_files, *script))))
    proposer = proposer or make_proposer(config.model, folder=target.folder)
    # A check cell runs after a candidate, never as a setup cell.
    cell_checks = {check.source for check in checks if check.kind == "cell"}
    target = replace(target, setup_code=tuple(c for c in target.setup_code if c not in cell_checks))
    code = setup_code(target, config.output.setup_cells) if namespace is None else ()
    if holdout is not None:
        code = tuple(c for c in code if c.strip() != holdout.code.strip())  # never run where candidates run
    preimport = tuple(dict.fromkeys(m for c in (*code, target.code) for m in imported_modules(c)))
    if trust.exports:
        preimport += ("cloudpickle",)
    setup = WorkerSetup(
        folder=target.folder,
        setup_code=code,
        namespace=namespace,
        preimport=preimport,
        # Proposed data files are protected once the baseline showed it does not write them.
        off_limits=tuple(dict.fromkeys((*(task.off_limits if off_limits_given else ()), *trust.holdout_files))),
        session_folder=folder,
        hidden=tuple(dict.fromkeys((*task.hidden_files, *(holdout.hidden if holdout else ())))),
    )
    evaluator = evaluator or make_evaluator(config, folder=target.folder)
    holdout_worker, holdout_setup = None, None
    if trust.active:
        if trust.exports and not evaluator.exports_values:
            raise OptionsError(
                f"{type(evaluator).__name__} cannot send a candidate's variables to the holdout; "
                "--same-output and --holdout-inputs need the local executor (--executor local)",
                option="same_output" if trust.same_output else "holdout_inputs",
            )
        spec = HoldoutSpec(
            holdout=holdout.code if holdout else None,
            holdout_name=holdout.name if holdout else "<holdout>",
            inputs=trust.holdout_inputs,
            same_output=trust.same_output,
            rtol=trust.rtol,
            atol=trust.atol,
        )
        holdout_worker = HoldoutWorker(spec, config.evaluation)
        above = holdout.setup_code if holdout is not None and holdout.setup_code and namespace is None else code
        holdout_setup = replace(
            setup,
            setup_code=above,
            namespace=holdout_namespace if holdout_namespace is not None else namespace,
            preimport=tuple(
                dict.fromkeys(m for c in (*above, holdout.code if holdout else "") for m in imported_modules(c))
            ),
            hidden=(),
            session_folder=None,  # its scratch files apart from the candidates' worker's
        )
    return Session(
        name=name,
        folder=folder,
        code=target.code,
        task=task,
        limits=config.limits,
        proposer=proposer,
        evaluator=evaluator,
        setup=setup,
        constraints_given="constraint" in config.given,
        off_limits_given=off_limits_given,
        target=replace(target, setup_code=target.setup_code or code),
        checks=checks,
        holdout_worker=holdout_worker,
        holdout_setup=holdout_setup,
        select_by=trust.select_by,
        min_improvement_given="min_improvement" in config.given,
        holdout_files=trust.holdout_files,
    )


def create_session(
    target: str | Path,
    *,
    proposer: Proposer | None = None,
    evaluator: Evaluator | None = None,
    **options: Any,
) -> Session:
    """Create (or resume) a session on a script or notebook; call ``run()`` or ``start()``.

    Args:
        target: a ``.py`` file, or a ``.ipynb`` with a ``%%autoresearch`` cell (the options on
            its line apply under these).
        proposer: a :class:`Proposer` instead of ``model``.
        evaluator: an :class:`Evaluator` instead of the warm-fork one.
        **options: any run option by keyword; ``None`` leaves an option unset. The list
            follows.

    Raises:
        TargetError, OptionsError, ConstraintError, ProposalError: bad input, one line each.

    Example:
        >>> session = create_session("optimise.py", maximize="revenue_millions",
        ...     constraints=["spend_millions <= 30"], model="openai/gpt-5-mini")  # doctest: +SKIP
        >>> session.run().best_run.metric  # doctest: +SKIP
        110.1627

    Options:
    """
    layer = api_layer(options)
    loaded = load_target(target, cell=layer.get("cell"))
    return session_from_config(loaded, config_for(loaded, layer), proposer=proposer, evaluator=evaluator)


create_session.__doc__ = (create_session.__doc__ or "") + options_doc() + "\n"


def load_session(path: str | Path) -> Session:
    """Load any session folder or log (ours or pi-autoresearch's) to inspect it.

    Example:
        >>> s = load_session("tests/files/pi_autoresearch_marketing.jsonl")  # doctest: +SKIP
        >>> s.best_run.metric  # doctest: +SKIP
        109.8699
    """
    history = read_log(Path(path))
    config = history.configs[-1] if history.configs else None
    task = TaskSpec(
        # pi-autoresearch takes any text as the metric's name; one we cannot use is not shown.
        metric=config.metric_name if config and is_metric_name(config.metric_name) else None,
        direction="lower" if config and config.direction == "lower" else "higher",
        constraints=parse_constraints(config.constraints) if config else (),
        objective=config.objective or config.name if config else "",
        hidden=tuple(n for n in config.hidden if is_metric_name(n)) if config else (),
        holdout=config.holdout if config and config.holdout and is_metric_name(config.holdout) else None,
    )
    folder = history.path.parent
    if folder.name == ".auto":  # pi-autoresearch's layout: the project folder names it
        folder = folder.parent
    name = folder.name if history.path.name == "log.jsonl" else history.path.stem
    return Session(
        name=name,
        folder=folder,
        code=history.runs[0].code if history.runs else "",
        task=task,
        limits=Limits(),
        proposer=None,
        evaluator=None,
        setup=None,
        history=history,
    )
