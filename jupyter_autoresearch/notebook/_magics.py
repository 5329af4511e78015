"""``%%autoresearch`` and ``%autoresearch``: the notebook front of the engine."""

from __future__ import annotations

import argparse
import ast
import os
import shlex
from collections.abc import Callable
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any, TypeVar, cast

from IPython.core.display_functions import display
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Bool, Enum, Float, Int, List, TraitType, Unicode

from ..engine._factory import holdout_of, load_session, session_from_config
from ..engine._options import (
    CONFIG,
    HelpShown,
    Option,
    RunConfig,
    SetupCells,
    magic_layer,
    new_parser,
    options_for,
    trait_layer,
)
from ..engine._session import Session
from ..engine._target import Target, plain_python
from ..protocol._errors import ExportError, OptionsError, SessionError
from ..protocol._format import number
from ..views._cells import variant_cell
from ..views._report import history_table
from ._bridge import Delivery, bridge, current_cell_id
from ._export import EXPORT_TARGETS, export_branch, export_file, export_notebook, winner
from ._inserter import CellInserter
from ._panel import Panel
from ._registry import current, register

__all__ = ["AutoresearchMagics", "load_ipython_extension"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _named_line_magic(name: str) -> Callable[[_F], _F]:
    """``@line_magic(name)``; IPython types that decorator as a union, narrowed here."""
    return cast(Callable[[_F], _F], line_magic(name))


def _names_read(code: str) -> set[str]:
    tree = ast.parse(code)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at top level (assignments, defs, imports, loops)."""
    try:
        tree = ast.parse(plain_python(source))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            for target in ast.walk(node):
                if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store):
                    names.add(target.id)
    return names


def _trait(option: Option) -> TraitType[Any, Any]:
    """The ``AutoresearchMagics`` trait of an option, with the option's help."""
    text = option.help + (f" (default {option.default_text})" if option.default_text else "")
    trait: TraitType[Any, Any]  # None is allowed everywhere: it means "not set"
    if option.kind == "int":
        trait = Int(option.default, allow_none=True, help=text)
    elif option.kind == "float":
        trait = Float(option.default, allow_none=True, help=text)
    elif option.kind == "flag":
        trait = Bool(bool(option.default), help=text)
    elif option.kind == "list":
        trait = List(Unicode(), default_value=None, allow_none=True, help=text)
    elif option.kind == "choice":
        trait = Enum(list(option.choices), option.default, help=text)
    else:
        trait = Unicode(option.default, allow_none=True, help=text)
    return trait.tag(config=True)


@magics_class
class AutoresearchMagics(Magics):
    """The ``%%autoresearch`` cell magic and the ``%autoresearch`` line magic.

    Every option of the magic line is also a trait, a default for every cell, e.g.
    ``%config AutoresearchMagics.model = "openai/gpt-5-mini"`` or
    ``c.AutoresearchMagics.max_iterations = 50`` in an IPython profile; options on the magic
    line win. The traits are generated from the options table (``engine/_options.py``).
    """

    # One trait per option that applies to %config, declared where the options are.
    for _option in options_for(CONFIG):
        locals()[_option.name] = _trait(_option)
    del _option

    @property
    def _ip(self) -> Any:
        """The shell; always set once the magics are registered."""
        assert self.shell is not None
        return self.shell

    def _config(self, line: str) -> RunConfig:
        """The table's defaults, then the traits, then the options on ``line``."""
        traits = trait_layer({o.name: getattr(self, o.name) for o in options_for(CONFIG)})
        return RunConfig.resolve(traits, magic_layer(line))

    # -- %%autoresearch ----------------------------------------------------------------
    @cell_magic
    def autoresearch(self, line: str, cell: str) -> None:
        """Make this cell the benchmark and start the loop; ``%%autoresearch --help`` lists the options.

        A mistake (a bad option, a variable that cannot be sent to the worker) fails the
        cell with one line. With ``--wait`` an error of the loop fails the cell too, so
        nbclient and papermill stop; without it the loop runs in the background and an
        error shows as one red line on top of its panel.
        """
        try:
            self._start(line, cell)
        except HelpShown:
            return

    def _start(self, line: str, cell: str) -> None:
        config = self._config(line)
        options = config.output
        if not cell.strip():
            raise OptionsError(
                "the %%autoresearch cell is empty: write the code that prints METRIC lines below the magic line"
            )
        try:
            names = _names_read(cell)
        except SyntaxError as err:
            raise OptionsError(
                f"the cell does not compile (line {err.lineno}: {err.msg}); candidates run as "
                "plain Python, so IPython syntax (%magics, !commands) is not allowed"
            ) from None
        namespace, setup_code = self._ship(names, options.setup_cells)
        stem = self._notebook_stem()
        cell_id = current_cell_id()
        target = Target(
            path=self._notebook_path(stem), code=cell, setup_code=setup_code, magic_line=line, cell_id=cell_id
        )
        name = options.session or stem
        if self._running(name) is not None:
            raise SessionError.already_running(
                name, hint=f"stop it with %autoresearch stop --session {name}, or choose another --session"
            )
        # The holdout starts from the variables it reads too; they go to its worker only.
        holdout = holdout_of(target, config.trust)
        holdout_namespace = None
        if holdout is not None and options.setup_cells == "above":
            holdout_namespace, _ = self._ship(names | _names_read(holdout.code), "above")
        # The state the worker starts from was resolved above (shipped variables or In[] cells).
        resolved = replace(config, output=replace(options, setup_cells="above"))
        session = session_from_config(target, resolved, namespace=namespace, holdout_namespace=holdout_namespace)
        register(session)
        self._ip.user_ns["_autoresearch"] = session
        link = bridge()
        if cell_id is not None:
            link.connect()  # JupyterLab sends cell ids; headless runners get no comm
        link.on_export = lambda to, arg, done: self.export(current(), to, arg, done)
        # Under nbclient, papermill or nbconvert (no cell ids, no Jupyter server), --wait
        # leaves only the final summary: a live panel has nobody to watch it there.
        live = not options.wait or cell_id is not None or "JPY_SESSION_NAME" in os.environ
        panel = Panel(session, export=lambda to, arg, done: self.export(session, to, arg, done)) if live else None
        session.subscribe(
            CellInserter(session, link, cell_id, options.insert, panel.show_undelivered if panel else None)
        )
        shown = display(panel, display_id=True) if panel is not None else None
        if not (session.proposer and session.proposer.model.startswith("replay:")):
            from ..proposers._litellm import preload_litellm

            preload_litellm()  # seconds of import, off the kernel's main thread
        if not options.wait:
            session.start()
            return
        try:
            session.run()  # an error fails the cell: one line, and nbclient/papermill stop
        finally:
            if panel is not None:
                panel.refresh()
                if shown is not None:
                    shown.update(panel)  # the final state for frontends without widgets
        history = history_table(session.runs, session.task.metric, holdout=session.task.holdout)
        display({"text/html": session._repr_html_(), "text/plain": f"{_status(session)}\n{history}"}, raw=True)
        best = session.best
        if options.insert != "none" and best is not None and not best.is_baseline and (cell_id is None or link.refused):
            source, _ = variant_cell(session.name, best, session.task.metric)
            self._ip.set_next_input(source, replace=False)  # frontends without our extension

    def _running(self, name: str) -> Session | None:
        from ._registry import sessions

        session = sessions().get(name)
        return session if session is not None and session.state in ("running", "paused") else None

    def _notebook_stem(self) -> str:
        # jupyter_server tells the kernel its notebook's path; elsewhere there is none.
        name = os.environ.get("JPY_SESSION_NAME") or self._ip.user_ns.get("__session__") or ""
        stem = Path(str(name)).stem if str(name).endswith(".ipynb") else ""
        return stem or "notebook"

    def _notebook_path(self, stem: str) -> Path:
        """The notebook's file (where ``--check-cell`` reads its cell), as jupyter_server names
        it to the kernel; otherwise ``STEM.ipynb`` in the working directory."""
        name = str(os.environ.get("JPY_SESSION_NAME") or self._ip.user_ns.get("__session__") or "")
        if name.endswith(".ipynb"):
            for path in (Path(name), Path.cwd() / Path(name).name):
                if path.is_absolute() and path.is_file():
                    return path
        return Path.cwd() / f"{stem}.ipynb"

    def _ship(self, names: set[str], setup_cells: SetupCells) -> tuple[bytes | None, tuple[str, ...]]:
        """The worker's starting state: with ``above``, the user's variables the cell reads
        (pickled) and the In[] cells that define them (for export); with ``none``, nothing;
        with numbers, those In[] cells, run in the worker."""
        import cloudpickle

        user_ns = self._ip.user_ns
        hidden = getattr(self.shell, "user_ns_hidden", {})
        history: list[str] = list(user_ns.get("In", []))
        if setup_cells == "none":
            return None, ()
        if setup_cells != "above":
            bad = [n for n in setup_cells if not 0 < n < len(history)]
            if bad:
                raise OptionsError(f"--setup-cells {bad[0]}: there is no In[{bad[0]}] in this kernel")
            return None, tuple(plain_python(history[n]) for n in setup_cells)
        chosen = {n: user_ns[n] for n in sorted(names) if n in user_ns and n not in hidden and not n.startswith("_")}
        for name, value in chosen.items():
            try:
                cloudpickle.dumps(value)
            except Exception as err:
                defining = [i for i in range(len(history) - 1, 0, -1) if name in _bound_names(history[i])]
                where = f" {defining[0]}" if defining else " N"
                raise OptionsError(
                    f"cannot send variable {name!r} ({type(value).__name__}) to the evaluation worker "
                    f"({type(err).__name__}); create it inside the cell, or rebuild it there with "
                    f"--setup-cells{where} (the In[] number of the cell that defines it)"
                ) from None
        cells: set[int] = set()
        for name in chosen:
            defining = [i for i in range(1, len(history)) if name in _bound_names(history[i])]
            if defining:
                cells.add(defining[-1])  # the latest definition is the one in the namespace
        return (cloudpickle.dumps(chosen) if chosen else None), tuple(plain_python(history[i]) for i in sorted(cells))

    # -- export ------------------------------------------------------------------------
    def export(self, session: Session, to: str, arg: str, done: Callable[[bool, str], None]) -> None:
        """Export the session's winner; ``done(ok, message)`` reports the outcome, for cell
        edits once the notebook page confirmed them. Bad requests raise ``ExportError``."""
        if to not in EXPORT_TARGETS:
            raise ExportError(f"unknown export target {to!r}; use one of {', '.join(EXPORT_TARGETS)}")
        if to == "file":
            done(True, f"wrote {export_file(session, arg or f'{session.name}_best.py')}")
            return
        if to == "branch":
            done(True, export_branch(session, arg or f"autoresearch/{session.name}"))
            return
        link = bridge()
        if to == "notebook":
            path = export_notebook(session, arg or f"{session.name}_best.ipynb")
            if link.page is None:
                done(True, f"wrote {path}")
                return
            # The page opens it relative to the notebook it belongs to.
            folder = session.target.folder if session.target is not None else Path.cwd()
            link.open(os.path.relpath(path, folder)).then(
                lambda d: done(True, f"wrote {path}" + (" and opened it" if d.status == "done" else ""))
            )
            return
        best = winner(session)
        cell_id = session.target.cell_id if session.target is not None else None
        if to == "replace":
            if cell_id is None or not link.connected:
                raise ExportError(
                    "replacing the benchmark cell needs the JupyterLab extension; use --to cell, or --to file PATH"
                )
            link.replace(cell_id, best.code.rstrip("\n")).then(
                lambda d: done(
                    d.status == "done",
                    f"replaced the benchmark cell with run {best.run} (undo with Ctrl+Z in the cell)"
                    if d.status == "done"
                    else f"could not replace the benchmark cell ({d.error}); it is retried when the page reconnects",
                )
            )
            return
        source, metadata = variant_cell(session.name, best, session.task.metric)
        if cell_id is not None and link.connected:
            link.insert(cell_id, session.name, best.run, source, metadata).then(
                lambda d: done(d.status == "done", _inserted(best.run, d))
            )
            return
        self._ip.set_next_input(source, replace=False)
        done(True, f"run {best.run} offered as the next cell")

    def _export_line(self, session: Session, to: str, arg: str) -> None:
        """``%autoresearch export``: prints the outcome, or shows it once the page confirms."""
        import ipywidgets as w

        outcome: list[tuple[bool, str]] = []
        status: list[Any] = []

        def done(ok: bool, text: str) -> None:
            if not status:
                outcome.append((ok, text))
            else:
                color = "inherit" if ok else "#c62828"
                status[0].value = f"<span style='color:{color}'>autoresearch: {escape(text)}</span>"

        self.export(session, to, arg, done)
        if outcome:
            ok, text = outcome[-1]
            if not ok:
                raise ExportError(text)
            print(f"autoresearch: {text}")
            return
        status.append(w.HTML("<span style='color:#757575'>autoresearch: waiting for the notebook page…</span>"))
        display(status[0])

    # -- %autoresearch -----------------------------------------------------------------
    @_named_line_magic("autoresearch")
    def autoresearch_line(self, line: str) -> Any:
        """``%autoresearch status|stop|pause|resume|steer NOTE|constraints [EXPR ...]|history|session|export``;
        ``%autoresearch --help`` (or ``COMMAND --help``) says more. An error fails the cell with one line."""
        try:
            return self._line(line)
        except HelpShown:
            return None

    def _line(self, line: str) -> Any:
        try:
            argv = shlex.split(line)
        except ValueError as err:
            raise OptionsError(f"cannot read the %autoresearch line ({err}); check the quotes") from None
        args = _line_parser().parse_args(argv or ["status"])
        if args.command == "session":
            return self._session(args.name or args.session)
        session = self._session(args.session)
        if args.command == "status":
            print(_status(session))
        elif args.command in ("stop", "pause", "resume"):
            getattr(session, args.command)()
            print(f"autoresearch: {args.command} sent to session {session.name}")
        elif args.command == "steer":
            session.steer(" ".join(args.note))
            print(f"autoresearch: the next prompt of {session.name} carries the note")
        elif args.command == "constraints":
            if args.expressions:
                applied = session.set_constraints(args.expressions)
                print(
                    f"autoresearch: constraints of {session.name} set to {', '.join(applied) or 'none'}; "
                    "a new segment starts at the next iteration"
                )
            else:
                print("\n".join(session.task.constraint_texts) or "(no constraints)")
                if session.pending_constraints is not None:
                    print(f"pending, from the next iteration: {', '.join(session.pending_constraints) or 'none'}")
        elif args.command == "history":
            return session.history
        elif args.command == "export":
            self._export_line(session, args.to, " ".join(args.arg))
        return None

    def _session(self, name: str | None) -> Session:
        try:
            return current(name)
        except SessionError:
            folder = Path.cwd() / ".autoresearch" / (name or self._notebook_stem())
            if name is not None and folder.is_dir():
                return load_session(folder)  # a session from an earlier kernel, read-only
            raise


def _inserted(run: int, delivery: Delivery) -> str:
    if delivery.status != "done":
        return f"could not insert run {run} ({delivery.error}); it is retried when the page reconnects"
    if delivery.ack is not None and delivery.ack.get("created") is False:
        return f"run {run} is already in the notebook (cell {delivery.ack.get('index', 0) + 1})"
    return f"inserted run {run} below the benchmark cell"


def _status(session: Session) -> str:
    best = session.best
    shown = (
        f"best run {best.run}: {session.task.metric}={number(best.metric)}"
        if best and best.metric is not None
        else "no kept run"
    )
    state = session.state + (f" ({session.stop_reason}: {session.stop_detail})" if session.stop_reason else "")
    return f"{session.name}: {state}; {len(session.runs)} runs; {shown}"


def _line_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "%autoresearch",
        description="Control and inspect the sessions of this kernel (the latest one, or --session NAME).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("--session", metavar="NAME", help="the session (default: the latest one)")
        return sub

    command("status", "one line: state, runs and best")
    command("stop", "stop the loop; the running candidate is abandoned")
    command("pause", "pause before the next iteration")
    command("resume", "continue after pause")
    command("history", "the runs as a DataFrame")
    command("steer", "add a note to every following prompt").add_argument("note", nargs="+", help="the note")
    command("constraints", "show the constraints, or set new ones (a new segment starts)").add_argument(
        "expressions", nargs="*", metavar="EXPR", help="constraints like 'spend_millions <= 30'"
    )
    command("session", "the Session object").add_argument("name", nargs="?", help="the session's name")
    export = command("export", "export the best run: " + " | ".join(EXPORT_TARGETS))
    export.add_argument("--to", choices=EXPORT_TARGETS, default="cell", help="where to (default: cell)")
    export.add_argument("arg", nargs="*", metavar="PATH", help="the file, notebook or branch name")
    return parser


def _stop_on_interrupt(ipython: Any) -> None:
    """Make a kernel interrupt also stop the loops running in the background.

    ipykernel ignores SIGINT while idle and puts back ``kernel.saved_sigint_handler``
    after each request, so that is where the handler goes; a loop run with --wait is
    stopped by the KeyboardInterrupt the interrupt raises in its cell.
    """
    kernel = getattr(ipython, "kernel", None)
    previous = getattr(kernel, "saved_sigint_handler", None)
    if kernel is None or previous is None or getattr(previous, "autoresearch", False):
        return

    def handler(signum: int, frame: Any) -> None:
        from ._registry import sessions

        for session in sessions().values():
            if session.state in ("running", "paused"):
                session.stop(interrupted=True)
        if callable(previous):
            previous(signum, frame)

    handler.autoresearch = True  # type: ignore[attr-defined]
    kernel.saved_sigint_handler = handler


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics, stop loops on kernel interrupts, and, in JupyterLab, open the
    comm to the extension early (so the page has attached before the first loop)."""
    ipython.register_magics(AutoresearchMagics)
    _stop_on_interrupt(ipython)
    if current_cell_id() is not None:
        bridge().connect()
