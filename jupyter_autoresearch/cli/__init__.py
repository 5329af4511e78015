"""The command line: ``jupyter-autoresearch run TARGET`` and ``jupyter-autoresearch show PATH``.

Exit codes: 0 the loop ended by a stop rule (or ``--help``); 1 an error (one line on
stderr); 2 a usage error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..protocol._errors import AutoresearchError, OptionsError

if TYPE_CHECKING:
    from ..engine._session import Session
    from ..protocol._records import RunRecord
    from ..views._cells import Insertion

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from ..engine._options import CLI, add_options, new_parser

    parser = new_parser(
        "jupyter-autoresearch",
        description=(
            "Let a language model run experiments on a cell: it proposes a change, the harness "
            "runs it in isolation, keeps it if the metric improved, and repeats."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="optimise a .py file or a notebook's %%autoresearch cell",
        description="Run the loop on TARGET: a .py file printing METRIC lines, or a .ipynb "
        "whose benchmark cell starts with %%autoresearch (options on that line apply under "
        "these).",
        allow_abbrev=False,
    )
    run.add_argument("target", help="a .py file or a .ipynb notebook")
    add_options(run, CLI)
    show = commands.add_parser(
        "show",
        help="print the history of a session folder or log",
        description="Print the history of a session folder or log, ours or pi-autoresearch's.",
        allow_abbrev=False,
    )
    show.add_argument("path", help="a session folder, a log.jsonl, or a pi-autoresearch log")
    show.add_argument("--json", action="store_true", help="print the runs as JSON lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jupyter-autoresearch`` console script."""
    from ..engine._options import HelpShown

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        args = _parser().parse_args(argv)
        if args.command == "show":
            return _show(Path(args.path), as_json=args.json)
        return _run(args)
    except HelpShown as shown:  # --help, --version
        return shown.status
    except OptionsError as err:
        print(f"jupyter-autoresearch: error: {err}", file=sys.stderr)
        return 2
    except AutoresearchError as err:
        print(f"jupyter-autoresearch: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a file we were asked to read or write
        print(f"jupyter-autoresearch: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jupyter-autoresearch: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from ..engine._factory import config_for, session_from_config
    from ..engine._options import argv_layer
    from ..engine._target import load_targets
    from ..views._cells import Insertion, write_notebook_copy
    from ._progress import ProgressPrinter
    from ._summary import print_summary, summary

    cli = argv_layer(args)
    targets = load_targets(args.target, cell=cli.get("cell"))
    insertions: list[Insertion] = []
    summaries = []
    latest = {}  # session name -> its last run, whose constraints judge all its variants
    for target in targets:
        config = config_for(target, cli)
        session = session_from_config(target, config)
        session.subscribe(ProgressPrinter(sys.stderr, total=session.limits.max_iterations))
        # SIGTERM (a CI job cancelled) ends the loop like Ctrl-C: logged, worker cleaned up.
        signal.signal(
            signal.SIGTERM,
            # Not stop() here: the handler may interrupt this thread mid-send to the worker.
            lambda *_, current=session: threading.Thread(target=current.stop, daemon=True).start(),
        )
        session.run()
        latest[session.name] = session
        summaries.append(summary(session))
        if session.stop_reason != "up-to-date":
            print_summary(session, sys.stderr)
        if target.is_notebook and target.cell_index is not None:
            insertions.append(
                Insertion(
                    anchor=target.cell_index,
                    session=session.name,
                    metric=session.task.metric,
                    records=_to_insert(session, config.output.insert),
                    infeasible={},
                )
            )
        if session.stop_reason == "interrupted":
            break
    if any(i.records for i in insertions):
        insertions = [_with_infeasible(i, latest[i.session]) for i in insertions]
        output = config.output.output or targets[0].path.with_suffix(".autoresearch.ipynb")
        write_notebook_copy(targets[0].path, output, insertions)
        print(f"accepted cells written to {output}", file=sys.stderr)
    if config.output.json:
        result = dict(summaries[-1])
        if len(summaries) > 1:
            result["cells"] = summaries
        print(json.dumps(result, indent=2))
    return 130 if session.stop_reason == "interrupted" else 0


def _to_insert(session: Session, mode: str) -> list[RunRecord]:
    """The variants below a benchmark cell: the kept runs of the segment it maps to (its
    story so far, so a rerun writes the same copy)."""
    if mode == "none":
        return []
    kept = [r for r in session.segment_runs() if r.kept and not r.is_baseline]
    if mode == "best":
        best = session.best  # by the holdout with --select-by holdout
        return [best] if best is not None and best in kept else []
    return kept


def _with_infeasible(insertion: Insertion, session: Session) -> Insertion:
    """Variants the session's final constraints refuse are marked, not removed."""
    from dataclasses import replace

    notes = {}
    for record in insertion.records:
        broken = session.task.violations(record.metrics)
        if broken:
            notes[record.run] = "; ".join(broken)
    return replace(insertion, infeasible=notes)


def _show(path: Path, *, as_json: bool) -> int:
    from ..engine._decide import best_of
    from ..engine._factory import load_session
    from ..journal._logfile import read_log
    from ..protocol._format import number
    from ..views._report import history_table

    history = read_log(path)
    session = load_session(history.path)
    for warning in history.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if as_json:
        for record in session.runs:
            print(json.dumps(record.to_json()))
        return 0
    kind = "pi-autoresearch log" if session.read_only else "session"
    segments = sorted({r.segment for r in session.runs})
    print(f"{kind} {session.name}: {len(session.runs)} runs, {len(segments)} segments; {session.task.title}")
    print(history_table(session.runs, session.task.metric, configs=history.configs, holdout=session.task.holdout))
    for segment in segments:
        config = history.config_of(segment)
        metric = config.metric_name if config else session.task.metric
        best = best_of(session.segment_runs(segment), config.direction if config else session.task.direction)
        if best is not None:
            print(f"best of segment {segment}: run {best.run}, {metric}={number(best.metric)}")
    return 0
