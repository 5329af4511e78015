"""What to optimise: a script, or the %%autoresearch cells of a notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from jupyter_autoresearch import TargetError
from jupyter_autoresearch.engine._target import load_target, load_targets, plain_python, split_magic


def write_notebook(path: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("notes"))
    nbformat.write(nb, path)
    return path


def test_split_magic_and_plain_python() -> None:
    assert split_magic("\n%%autoresearch --maximize x\nprint(1)") == ("--maximize x", "print(1)")
    assert split_magic("%%autoresearchx\nprint(1)") is None and split_magic("print(1)") is None
    assert plain_python("%load_ext x\nimport os\n!ls\n  %time y = 1\nz = 2") == "import os\nz = 2"


def test_a_script_is_its_own_benchmark(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text("print('METRIC x=1')\n")
    target = load_target(tmp_path / "bench.py")
    assert target.code == "print('METRIC x=1')\n" and target.setup_code == () and not target.is_notebook
    assert target.folder == tmp_path.resolve()


def test_a_notebook_benchmark_and_the_cells_above_it(tmp_path: Path) -> None:
    nb = write_notebook(
        tmp_path / "study.ipynb",
        ["%load_ext jupyter_autoresearch\nbase = 2", "%%autoresearch --maximize x\nprint(base)", "after = 1",
         "%%autoresearch --maximize x --session two\nprint(after)"],
    )  # fmt: skip
    first = load_target(nb)
    assert (first.code, first.magic_line, first.cell_index) == ("print(base)", "--maximize x", 2)
    assert first.setup_code == ("base = 2",) and first.cell_id
    both = load_targets(nb)
    assert [t.magic_line for t in both] == ["--maximize x", "--maximize x --session two"]
    assert both[1].setup_code == ("base = 2", "after = 1")  # other benchmark cells are not setup
    chosen = load_target(nb, cell=3)
    assert chosen.code == "after = 1" and chosen.magic_line == ""


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing.py", "missing.py does not exist"),
        (lambda p: (p / "e.py").write_text("  \n") and p / "e.py", "e.py is empty"),
        (lambda p: write_notebook(p / "n.ipynb", ["x = 1"]), "has no cell starting with %%autoresearch"),
        (lambda p: write_notebook(p / "n.ipynb", ["%%autoresearch\n"]), "the benchmark cell of"),
        (lambda p: (p / "b.ipynb").write_text("{not json") and p / "b.ipynb", "is not a readable notebook"),
    ],
)
def test_unusable_targets_are_one_line(tmp_path: Path, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TargetError, match=message):
        load_target(setup(tmp_path))
    nb = write_notebook(tmp_path / "ok.ipynb", ["x = 1"])
    with pytest.raises(TargetError, match=r"--cell 5 is out of range: .* has 1 code cells"):
        load_target(nb, cell=5)
