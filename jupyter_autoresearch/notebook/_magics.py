"""``%%autoresearch`` and ``%autoresearch``: the notebook front of the engine."""

from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any, TypeVar, cast

from IPython.core.display_functions import display
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from traitlets import Enum, Float, Int, Unicode

from ..engine._factory import load_session, session_from_options
from ..engine._options import RunOptions, new_parser, parse_magic_line
from ..engine._session import Session
from ..engine._target import Target, plain_python
from ..protocol._errors import AutoresearchError, ExportError, OptionsError
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


@magics_class
class AutoresearchMagics(Magics):
    """The ``%%autoresearch`` cell magic and the ``%autoresearch`` line magic.

    Every trait is a default for the magic line, e.g. ``%config AutoresearchMagics.model
    = "openai/gpt-5-mini"``; options on the magic line win.
    """

    model = Unicode(None, allow_none=True, help="litellm model string, or replay:PATH.").tag(config=True)
    api_base = Unicode(None, allow_none=True, help="URL of an OpenAI-compatible server.").tag(config=True)
    max_iterations = Int(20, help="Runs after the baseline.").tag(config=True)
    timeout = Float(600.0, help="Seconds one evaluation may take.").tag(config=True)
    memory_limit = Int(4096, help="MiB of memory a candidate may add.").tag(config=True)
    repeats = Int(1, help="Evaluations per candidate; the median counts.").tag(config=True)
    parallel = Int(1, help="Proposals evaluated at a time.").tag(config=True)
    insert = Enum(["accepted", "best", "none"], "accepted", help="Which accepted variants come back as cells.").tag(
        config=True
    )
    min_improvement = Unicode("0", help="How much a run must beat the best by (absolute or %).").tag(config=True)

    @property
    def _ip(self) -> Any:
        """The shell; always set once the magics are registered."""
        assert self.shell is not None
        return self.shell

    def _defaults(self) -> RunOptions:
        values = {
            name: getattr(self, name)
            for name in (
                "model",
                "api_base",
                "max_iterations",
                "timeout",
                "memory_limit",
                "repeats",
                "parallel",
                "insert",
                "min_improvement",
            )
        }
        return RunOptions(**values)

    @staticmethod
    def _fail(err: AutoresearchError) -> None:
        print(f"autoresearch: {err}", file=sys.stderr)

    # -- %%autoresearch ----------------------------------------------------------------
    @cell_magic
    def autoresearch(self, line: str, cell: str) -> None:
        """Make this cell the benchmark and start the loop; see ``jupyter-autoresearch run --help``."""
        try:
            self._start(line, cell)
        except AutoresearchError as err:
            self._fail(err)

    def _start(self, line: str, cell: str) -> None:
        options = self._defaults().merged_under(parse_magic_line(line))
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
            path=Path.cwd() / f"{stem}.ipynb", code=cell, setup_code=setup_code, magic_line=line, cell_id=cell_id
        )
        name = options.session or stem
        running = self._running(name)
        if running is not None:
            raise OptionsError(
                f"session {name} is already running; stop it with %autoresearch stop {name} or choose another --session"
            )
        # --setup-cells named In[] cells, resolved above: the worker runs target.setup_code.
        session = session_from_options(target, replace(options, setup_cells=None), namespace=namespace)
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
        if not (options.model or "").startswith("replay:"):
            from ..proposers._litellm import preload_litellm

            preload_litellm()  # seconds of import, off the kernel's main thread
        if not options.wait:
            session.start()
            return
        try:
            session.run()
        except AutoresearchError as err:
            self._fail(err)
        finally:
            if panel is not None:
                panel.refresh()
                if shown is not None:
                    shown.update(panel)  # the final state for frontends without widgets
        history = history_table(session.runs, session.task.metric)
        display({"text/html": session._repr_html_(), "text/plain": f"{_status(session)}\n{history}"}, raw=True)
        best = session.best_run
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

    def _ship(self, names: set[str], setup_cells: str | None) -> tuple[bytes | None, tuple[str, ...]]:
        """Pickle the user's variables the cell reads; the In[] cells that define them, for export."""
        import cloudpickle

        user_ns = self._ip.user_ns
        hidden = getattr(self.shell, "user_ns_hidden", {})
        history: list[str] = list(user_ns.get("In", []))
        if setup_cells:
            try:
                numbers = [int(n) for n in setup_cells.split(",") if n.strip()]
            except ValueError:
                raise OptionsError(f"--setup-cells {setup_cells!r}: give In[] numbers like 3,5") from None
            bad = [n for n in numbers if not 0 < n < len(history)]
            if bad:
                raise OptionsError(f"--setup-cells {bad[0]}: there is no In[{bad[0]}] in this kernel")
            return None, tuple(plain_python(history[n]) for n in numbers)
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
        """``%autoresearch status|stop|pause|resume|steer NOTE|constraints [EXPR ...]|history|session|export``."""
        try:
            return self._line(line)
        except AutoresearchError as err:
            self._fail(err)
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
        except OptionsError:
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
    best = session.best_run
    shown = (
        f"best run {best.run}: {session.task.metric}={best.metric:.8g}"
        if best and best.metric is not None
        else "no kept run"
    )
    state = session.state + (f" ({session.stop_reason}: {session.stop_detail})" if session.stop_reason else "")
    return f"{session.name}: {state}; {len(session.runs)} runs; {shown}"


def _line_parser() -> argparse.ArgumentParser:
    parser = new_parser("%autoresearch", add_help=False)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("status", "stop", "pause", "resume", "history"):
        commands.add_parser(name, add_help=False).add_argument("--session")
    steer = commands.add_parser("steer", add_help=False)
    steer.add_argument("note", nargs="+")
    steer.add_argument("--session")
    constraints = commands.add_parser("constraints", add_help=False)
    constraints.add_argument("expressions", nargs="*")
    constraints.add_argument("--session")
    session = commands.add_parser("session", add_help=False)
    session.add_argument("name", nargs="?")
    session.add_argument("--session")
    export = commands.add_parser("export", add_help=False)
    export.add_argument("--to", choices=EXPORT_TARGETS, default="cell")
    export.add_argument("arg", nargs="*")
    export.add_argument("--session")
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
