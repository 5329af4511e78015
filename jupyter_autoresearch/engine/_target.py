"""What to optimise: a ``.py`` file, or the ``%%autoresearch`` cell of a notebook."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol._errors import TargetError

__all__ = ["MAGIC", "Target", "check_cell_code", "load_target", "load_targets", "split_magic"]

MAGIC = "%%autoresearch"
# Line magics and shell escapes cannot run in the plain-Python worker.
_IPYTHON_LINE = re.compile(r"^\s*[%!]")


@dataclass(frozen=True)
class Target:
    """The benchmark cell and the state it starts from.

    Attributes:
        path: the script or notebook.
        code: the benchmark cell (without its ``%%autoresearch`` line).
        setup_code: code cells above it in a notebook, run once in the warm worker.
        magic_line: options written on the ``%%autoresearch`` line.
        cell_index: the benchmark's position among the notebook's cells (0-based).
        cell_id: the benchmark cell's id in the notebook.
    """

    path: Path
    code: str
    setup_code: tuple[str, ...] = ()
    magic_line: str = ""
    cell_index: int | None = None
    cell_id: str | None = None

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def split_magic(source: str) -> tuple[str, str] | None:
    """``(options, body)`` of a cell that starts with ``%%autoresearch``, else None."""
    stripped = source.lstrip("\n")
    first, _, body = stripped.partition("\n")
    if first.split(maxsplit=1)[:1] != [MAGIC]:
        return None
    return first[len(MAGIC) :].strip(), body


def plain_python(source: str) -> str:
    """Drop IPython-only lines (``%magic``, ``!shell``) from a setup cell."""
    return "\n".join(line for line in source.splitlines() if not _IPYTHON_LINE.match(line))


def load_target(path: str | Path, *, cell: int | None = None) -> Target:
    """Read the benchmark from a script or notebook.

    Args:
        path: a ``.py`` file (the whole file is the benchmark) or a ``.ipynb``.
        cell: in a notebook, the N-th code cell (from 1) instead of the
            ``%%autoresearch`` cell.

    Raises:
        TargetError: the file is missing or unreadable, or the notebook has no benchmark.
    """
    file = Path(path)
    if not file.is_file():
        raise TargetError(f"{file} does not exist; give the path of a .py file or a .ipynb notebook")
    if file.suffix != ".ipynb":
        try:
            code = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TargetError(f"cannot read {file}: {err}") from None
        if not code.strip():
            raise TargetError(f"{file} is empty; write the cell that prints METRIC lines first")
        return Target(path=file, code=code)
    return _pick_cell(file, cell)


def load_targets(path: str | Path, *, cell: int | None = None) -> list[Target]:
    """Every benchmark of a file: a script's one, or each ``%%autoresearch`` cell in order.

    Running a notebook headless runs its benchmark cells one after the other, as
    executing the notebook would; later cells of the same session resume it.
    """
    file = Path(path)
    if file.suffix != ".ipynb" or cell is not None or not file.is_file():
        return [load_target(file, cell=cell)]
    notebook = _read_notebook(file)
    indices = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and split_magic(c.source)]
    if not indices:
        return [load_target(file)]  # raises the "no benchmark cell" error
    return [_notebook_target(file, notebook, i) for i in indices]


def _read_notebook(file: Path) -> Any:
    import nbformat

    try:
        return nbformat.read(file, as_version=4)
    except Exception as err:
        raise TargetError(f"{file} is not a readable notebook: {err}") from None


def _pick_cell(file: Path, cell: int | None) -> Target:
    notebook = _read_notebook(file)
    code_cells = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    if cell is not None:
        if not 1 <= cell <= len(code_cells):
            raise TargetError(f"--cell {cell} is out of range: {file} has {len(code_cells)} code cells")
        return _notebook_target(file, notebook, code_cells[cell - 1][0])
    chosen = next((i for i, c in code_cells if split_magic(c.source)), None)
    if chosen is None:
        raise TargetError(
            f"{file} has no cell starting with {MAGIC}; add that line on top of the "
            "benchmark cell, or choose one with --cell N"
        )
    return _notebook_target(file, notebook, chosen)


def _notebook_target(file: Path, notebook: Any, index: int) -> Target:
    code_cells = [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    benchmark = notebook.cells[index]
    magic = split_magic(benchmark.source)
    line, code = magic if magic else ("", benchmark.source)
    if not code.strip():
        raise TargetError(f"the benchmark cell of {file} is empty; write the code that prints METRIC lines")
    setup = tuple(
        plain_python(c.source)
        for i, c in code_cells
        if i < index
        and not split_magic(c.source)
        and "autoresearch" not in c.metadata
        and plain_python(c.source).strip()
    )
    return Target(
        path=file,
        code=code,
        setup_code=setup,
        magic_line=line,
        cell_index=index,
        cell_id=benchmark.get("id"),
    )


def check_cell_code(target: Target, number: int) -> str:
    """The code of the notebook's ``number``-th code cell (counted as ``--cell`` counts
    them), to run as a correctness check; IPython-only lines are left out.

    Raises:
        TargetError: the target is a script, the notebook cannot be found or read, the
            number is out of range, or the cell is a benchmark, empty or does not compile.
    """
    flag = f"--check-cell {number}"
    if not target.is_notebook:
        raise TargetError(f"{flag}: {target.path.name} is a script, which has no cells; use --check CMD instead")
    if not target.path.is_file():
        raise TargetError(
            f"{flag}: the notebook {target.path} was not found (a check cell is read from the saved notebook); "
            "save it, or use --check CMD instead"
        )
    code_cells = [c for c in _read_notebook(target.path).cells if c.cell_type == "code"]
    if not 1 <= number <= len(code_cells):
        raise TargetError(f"{flag} is out of range: {target.path.name} has {len(code_cells)} code cells")
    source = code_cells[number - 1].source
    if split_magic(source):
        raise TargetError(f"{flag} is a {MAGIC} cell; give the number of the cell that checks a run")
    code = plain_python(source)
    if not code.strip():
        raise TargetError(f"{flag} is empty; write the code that checks a run (assert ...) in that cell")
    try:
        compile(code, f"<check cell {number}>", "exec")
    except SyntaxError as err:
        raise TargetError(f"{flag} does not compile (line {err.lineno}: {err.msg})") from None
    return code
