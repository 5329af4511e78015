"""Build sessions: :func:`create_session` and :func:`load_session`."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..isolation._dask import DaskEvaluator
from ..isolation._evaluate import Evaluator, ForkEvaluator, WorkerSetup, imported_modules
from ..journal._journal import read_log, session_folder
from ..proposers._propose import Proposer
from ..proposers._replay import ReplayProposer
from ..protocol._constraints import parse_constraints
from ..protocol._errors import OptionsError, ProposalError
from ..protocol._metrics import is_metric_name
from ..protocol._settings import ModelSettings
from ..protocol._task import Limits, TaskSpec
from ._options import RunConfig, SetupCells, api_layer, convert, magic_layer, option, options_doc
from ._session import Session
from ._target import Target, load_target

__all__ = ["config_for", "create_session", "load_session", "make_evaluator", "make_proposer", "session_from_config"]


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


def config_for(target: Target, *layers: Mapping[str, Any]) -> RunConfig:
    """The table's defaults, then the target's ``%%autoresearch`` line, then ``layers``."""
    return RunConfig.resolve(magic_layer(target.magic_line) if target.magic_line else {}, *layers)


def session_from_config(
    target: Target,
    config: RunConfig,
    *,
    namespace: bytes | None = None,
    proposer: Proposer | None = None,
    evaluator: Evaluator | None = None,
) -> Session:
    """Build a runnable session for ``target`` (the CLI, the magic and the API all come here).

    Args:
        namespace: the user's variables, pickled (the magic); then no setup code runs.
    """
    name = config.output.session or target.path.stem
    folder = session_folder(target.path, name)
    off_limits_given = "off_limits" in config.given
    task = config.task if off_limits_given else replace(config.task, off_limits=data_files(target))
    proposer = proposer or make_proposer(config.model, folder=target.folder)
    code = setup_code(target, config.output.setup_cells) if namespace is None else ()
    preimport = tuple(dict.fromkeys(m for c in (*code, target.code) for m in imported_modules(c)))
    setup = WorkerSetup(
        folder=target.folder,
        setup_code=code,
        namespace=namespace,
        preimport=preimport,
        # Proposed data files are protected once the baseline showed it does not write them.
        off_limits=task.off_limits if off_limits_given else (),
        session_folder=folder,
    )
    return Session(
        name=name,
        folder=folder,
        code=target.code,
        task=task,
        limits=config.limits,
        proposer=proposer,
        evaluator=evaluator or make_evaluator(config, folder=target.folder),
        setup=setup,
        constraints_given="constraint" in config.given,
        off_limits_given=off_limits_given,
        target=replace(target, setup_code=target.setup_code or code),
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
