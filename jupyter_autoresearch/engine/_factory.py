"""Build sessions: :func:`create_session` and :func:`load_session`."""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..isolation._evaluate import Evaluator, ForkEvaluator, WorkerSetup, imported_modules
from ..journal._journal import read_log, session_folder
from ..proposers._propose import Proposer, ReplayProposer
from ..protocol._constraints import parse_constraints
from ..protocol._errors import OptionsError, ProposalError
from ..protocol._metrics import is_metric_name
from ..protocol._task import Limits, TaskSpec, Threshold, parse_duration
from ._options import RunOptions, parse_magic_line
from ._session import Session
from ._target import Target, load_target

__all__ = ["create_session", "load_session", "make_proposer", "session_from_options"]


def make_proposer(model: str | None, api_base: str | None = None, *, folder: Path | None = None) -> Proposer:
    """The proposer for a model string: ``replay:PATH`` or any litellm model.

    Raises:
        ProposalError: no model is configured.
    """
    load_dotenv(folder)
    model = model or os.environ.get("AUTORESEARCH_MODEL")
    api_base = api_base or os.environ.get("AUTORESEARCH_API_BASE")
    if not model:
        raise ProposalError(
            "no model configured: pass --model (e.g. openai/gpt-5-mini), set AUTORESEARCH_MODEL, "
            "or replay a recording with --model replay:PATH"
        )
    if model.startswith("replay:"):
        path = Path(model.removeprefix("replay:")).expanduser()
        if not path.is_absolute() and folder is not None and not path.exists():
            path = folder / path
        return ReplayProposer(path, label=model)
    from ..proposers._litellm import LiteLLMProposer

    return LiteLLMProposer(model=model, api_base=api_base)


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


def _setup_code(target: Target, choice: str | None) -> tuple[str, ...]:
    if choice is None or choice == "above":
        return target.setup_code
    if choice == "none":
        return ()
    try:
        wanted = [int(part) for part in choice.split(",") if part.strip()]
    except ValueError:
        raise OptionsError(
            f"--setup-cells {choice!r} is not understood; write 'above', 'none' or numbers like 1,3"
        ) from None
    if target.path.suffix != ".ipynb":
        raise OptionsError("--setup-cells numbers only apply to notebooks")
    import nbformat

    from ._target import plain_python

    cells = [c for c in nbformat.read(target.path, as_version=4).cells if c.cell_type == "code"]
    bad = [n for n in wanted if not 1 <= n <= len(cells)]
    if bad:
        raise OptionsError(f"--setup-cells {bad[0]} is out of range: the notebook has {len(cells)} code cells")
    return tuple(plain_python(cells[n - 1].source) for n in wanted)


def notebook_options(target: Target, options: RunOptions) -> RunOptions:
    """Defaults, then the options on the ``%%autoresearch`` line, then ``options`` on top."""
    layered = RunOptions()
    if target.magic_line:
        layered = layered.merged_under(parse_magic_line(target.magic_line))
    return layered.merged_under(options)


def session_from_options(
    target: Target,
    options: RunOptions,
    *,
    namespace: bytes | None = None,
    proposer: Proposer | None = None,
    evaluator: Evaluator | None = None,
) -> Session:
    """Build a runnable session for ``target`` from parsed options (CLI and magic)."""
    if options.maximize and options.minimize:
        raise OptionsError("give --maximize or --minimize, not both")
    metric = options.maximize or options.minimize
    name = options.session or target.path.stem
    folder = session_folder(target.path, name)
    constraints = parse_constraints(options.constraint or ())
    off_limits = options.off_limits if options.off_limits is not None else data_files(target)
    task = TaskSpec(
        metric=metric,
        direction="lower" if options.minimize else "higher",
        constraints=constraints,
        off_limits=tuple(p for p in off_limits if p != "none"),
        objective=options.objective,
    )
    limits = Limits(
        max_iterations=options.max_iterations,
        plateau=options.plateau or None,
        max_cost=options.max_cost,
        max_time=parse_duration(options.max_time),
        min_improvement=Threshold.parse(options.min_improvement),
        repeats=options.repeats,
        parallel=options.parallel,
    )
    if options.timeout <= 0:
        raise OptionsError(f"--timeout {options.timeout:g} must be positive")
    proposer = proposer or make_proposer(options.model, options.api_base, folder=target.folder)
    setup_code = _setup_code(target, options.setup_cells) if namespace is None else ()
    preimport = tuple(dict.fromkeys(m for code in (*setup_code, target.code) for m in imported_modules(code)))
    setup = WorkerSetup(
        folder=target.folder,
        setup_code=setup_code,
        namespace=namespace,
        preimport=preimport,
        # Proposed data files are protected once the baseline showed it does not write them.
        off_limits=task.off_limits if options.off_limits is not None else (),
    )
    return Session(
        name=name,
        folder=folder,
        code=target.code,
        task=task,
        limits=limits,
        proposer=proposer,
        evaluator=evaluator or ForkEvaluator(timeout=options.timeout, memory_mb=options.memory_limit or None),
        setup=setup,
        constraints_given=options.constraint is not None,
        off_limits_given=options.off_limits is not None,
        target=replace(target, setup_code=target.setup_code or setup_code),
    )


def create_session(
    target: str | Path,
    *,
    maximize: str | None = None,
    minimize: str | None = None,
    constraints: Sequence[str] | None = None,
    off_limits: Sequence[str] | None = None,
    objective: str = "",
    model: str | None = None,
    api_base: str | None = None,
    proposer: Proposer | None = None,
    evaluator: Evaluator | None = None,
    name: str | None = None,
    cell: int | None = None,
    **limits: object,
) -> Session:
    """Create (or resume) a session on a script or notebook; call ``run()`` or ``start()``.

    Args:
        target: a ``.py`` file, or a ``.ipynb`` with a ``%%autoresearch`` cell.
        maximize: the primary metric when higher is better (or ``minimize``); with
            neither, the model infers the task from the cell and its baseline metrics.
        constraints: rules every kept run must meet, e.g. ``["spend_millions <= 30"]``.
        off_limits: globs of files candidates must not change (default: its data files).
        model: a litellm model string, or ``replay:PATH``.
        proposer: a :class:`Proposer` instead of ``model``.
        name: the session name; the same name resumes the session.
        **limits: any other run option by its CLI name with ``_`` (``max_iterations=30``,
            ``plateau=5``, ``repeats=3``, ``min_improvement="1%"``, ``timeout=60``).

    Raises:
        TargetError, OptionsError, ConstraintError, ProposalError: bad input, one line each.

    Example:
        >>> session = create_session("optimise.py", maximize="revenue_millions",
        ...     constraints=["spend_millions <= 30"], model="openai/gpt-5-mini")  # doctest: +SKIP
        >>> session.run().best_run.metric  # doctest: +SKIP
        110.1627
    """
    loaded = load_target(target, cell=cell)
    values: dict[str, object] = {
        "maximize": maximize,
        "minimize": minimize,
        "objective": objective,
        "model": model,
        "api_base": api_base,
        "session": name,
        "constraint": tuple(constraints) if constraints is not None else None,
        "off_limits": tuple(off_limits) if off_limits is not None else None,
    }
    unknown = set(limits) - set(RunOptions.__dataclass_fields__)
    if unknown:
        raise OptionsError(f"create_session() got unknown option {sorted(unknown)[0]!r}")
    values.update(limits)
    given = frozenset(k for k, v in values.items() if v is not None)
    options = RunOptions(**{k: v for k, v in values.items() if k in given}, given=given)  # type: ignore[arg-type]
    return session_from_options(loaded, notebook_options(loaded, options), proposer=proposer, evaluator=evaluator)


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
