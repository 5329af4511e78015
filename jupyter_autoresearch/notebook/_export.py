"""Export the winning cell: to a script, a new notebook, or a git branch (live-notebook
targets, ``cell`` and ``replace``, go through the JupyterLab extension in the magics)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from ..engine._session import Session
from ..protocol._errors import ExportError
from ..protocol._format import number
from ..protocol._records import RunRecord
from ..views._cells import variant_header

__all__ = ["EXPORT_TARGETS", "export_branch", "export_file", "export_notebook", "winner"]

EXPORT_TARGETS = ("cell", "replace", "file", "notebook", "branch")


def winner(session: Session) -> RunRecord:
    """The run to export: the best of the current segment (by the holdout metric with
    ``--select-by holdout``)."""
    best = session.best
    if best is None:
        raise ExportError(f"session {session.name} has no kept run to export yet; let the loop run first")
    return best


def _setup_code(session: Session) -> tuple[str, ...]:
    return session.target.setup_code if session.target is not None else ()


def export_file(session: Session, path: str | Path) -> Path:
    """Write the winner, after the setup code it needs, as a script."""
    best = winner(session)
    target = _resolve(session, path, ".py")
    if target.exists():
        raise ExportError(f"{target} already exists; choose another path")
    stamp = time.strftime("%Y-%m-%d %H:%M")
    parts = [
        f'"""The winner of autoresearch session {session.name} (exported {stamp}).\n\n'
        f'Run {best.run}: {session.task.metric} = {number(best.metric)}. {best.hypothesis}\n"""'
    ]
    parts += [code.strip() for code in _setup_code(session) if code.strip()]
    parts.append(variant_header(session.name, best, session.task.metric) + "\n" + best.code.strip())
    _write(target, "\n\n\n".join(parts) + "\n")
    return target


def export_notebook(session: Session, path: str | Path) -> Path:
    """Write a new notebook: the setup cells, then the winner."""
    import nbformat

    from ..views._cells import variant_cell

    best = winner(session)
    target = _resolve(session, path, ".ipynb")
    source, metadata = variant_cell(session.name, best, session.task.metric)
    cells = [
        nbformat.v4.new_markdown_cell(
            f"# Winner of autoresearch session `{session.name}`\n\nRun {best.run}: "
            f"`{session.task.metric}` = {number(best.metric)}."
        )
    ]
    cells += [nbformat.v4.new_code_cell(code) for code in _setup_code(session) if code.strip()]
    cells.append(nbformat.v4.new_code_cell(source, metadata=metadata))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    if target.exists():
        raise ExportError(f"{target} already exists; choose another path")
    _write(target, nbformat.writes(notebook) + "\n")
    return target


def _resolve(session: Session, path: str | Path, suffix: str) -> Path:
    """The export's path: relative paths start at the notebook's (or script's) folder,
    and a folder is never created."""
    if not str(path).strip():
        raise ExportError(f"give a path for the {suffix} file to export to")
    target = Path(path).expanduser()
    base = session.target.folder if session.target is not None else Path.cwd()
    if not target.is_absolute():
        target = base / target
    if target.suffix != suffix:
        raise ExportError(f"{target.name} should end in {suffix}")
    if not target.parent.is_dir():
        raise ExportError(
            f"folder {target.parent} does not exist; create it first, or choose a path in an existing "
            f"folder (relative paths start at {base})"
        )
    return target


def _write(path: Path, text: str) -> None:
    try:
        with path.open("x", encoding="utf-8") as file:  # never over a file that appeared meanwhile
            file.write(text)
    except FileExistsError:
        raise ExportError(f"{path} already exists; choose another path") from None
    except OSError as err:
        raise ExportError(f"cannot write {path}: {err.strerror}") from None


def _git(folder: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=folder, input=input, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode != 0:
        raise ExportError(
            f"git {args[0]} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        )
    return done.stdout.strip()


def _winner_file_text(session: Session, best: RunRecord, repo: Path, relative: str) -> str:
    """The target file as committed at HEAD (or on disk), with the benchmark replaced."""
    target = session.target
    assert target is not None
    try:
        original = _git(repo, "show", f"HEAD:{relative}")
    except ExportError:
        original = target.path.read_text(encoding="utf-8")  # not committed yet
    if not target.is_notebook:
        return best.code
    import nbformat

    notebook = nbformat.reads(original, as_version=4)
    index = target.cell_index if target.cell_index is not None else -1
    if target.cell_id:
        index = next((i for i, c in enumerate(notebook.cells) if c.get("id") == target.cell_id), index)
    if not 0 <= index < len(notebook.cells):
        raise ExportError(f"cannot find the benchmark cell in {relative}; export --to notebook instead")
    notebook.cells[index].source = best.code.rstrip("\n")
    notebook.cells[index].outputs = []
    notebook.cells[index].execution_count = None
    return nbformat.writes(notebook) + "\n"


def export_branch(session: Session, name: str) -> str:
    """Finalize as a git branch: the clean change in one commit, the session's notes in a second.

    Built with git plumbing on a temporary index, so the current branch, the index and
    the working tree, and any uncommitted work, are never touched.
    """
    best = winner(session)
    if session.target is None or not session.target.path.exists():
        raise ExportError("branch export needs the notebook or script file on disk; save it first")
    name = name.strip()
    folder = session.target.folder
    try:
        repo = Path(_git(folder, "rev-parse", "--show-toplevel"))
    except (ExportError, FileNotFoundError):
        raise ExportError(f"{folder} is not in a git repository; export --to file instead") from None
    if not name:
        raise ExportError("give the new branch a name, e.g. --to branch autoresearch/best")
    _git(repo, "check-ref-format", "--branch", name)
    if (
        subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"], cwd=repo, capture_output=True
        ).returncode
        == 0
    ):
        raise ExportError(f"branch {name} already exists; choose another name")
    head = _git(repo, "rev-parse", "HEAD")
    relative = session.target.path.resolve().relative_to(repo).as_posix()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", head, env=env)

        def add(path: str, text: str) -> None:
            blob = _git(repo, "hash-object", "-w", "--stdin", input=text)
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)

        add(relative, _winner_file_text(session, best, repo, relative))
        change = _git(
            repo,
            "commit-tree",
            _git(repo, "write-tree", env=env),
            "-p",
            head,
            "-m",
            f"{best.hypothesis or 'Apply the autoresearch winner'}\n\n"
            f"autoresearch session {session.name}, run {best.run}: "
            f"{session.task.metric} = {number(best.metric)}",
        )
        notes = session.folder.resolve().relative_to(repo).as_posix()
        for file in ("log.jsonl", "prompt.md", "ideas.md", "best.py"):
            if (session.folder / file).exists():
                add(f"{notes}/{file}", (session.folder / file).read_text(encoding="utf-8"))
        log = _git(
            repo,
            "commit-tree",
            _git(repo, "write-tree", env=env),
            "-p",
            change,
            "-m",
            f"Add the autoresearch log and notes of session {session.name}",
        )
    _git(repo, "update-ref", f"refs/heads/{name}", log, "")
    return f"branch {name}: {change[:7]} applies run {best.run}, {log[:7]} adds the session log"
