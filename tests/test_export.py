"""Exports of the winner: a script, a notebook, and a git branch that leaves the user's work alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import metric_cell, write_recording

from jupyter_autoresearch import ExportError, create_session
from jupyter_autoresearch.notebook._export import export_branch, export_file, export_notebook


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "analyst@example.com")
    git(tmp_path, "config", "user.name", "Analyst")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("base = 1"),
            nbformat.v4.new_code_cell("%%autoresearch --maximize x\nprint(f'METRIC x={base}')"),
        ]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "study.ipynb")
    git(tmp_path, "add", "study.ipynb")
    git(tmp_path, "commit", "-qm", "the analysis")
    return tmp_path


def finished_session(folder: Path):  # type: ignore[no-untyped-def]
    rec = write_recording(folder / "rec.jsonl", [("add one", "print(f'METRIC x={base + 1}')")])
    session = create_session(folder / "study.ipynb", model=f"replay:{rec}")
    session.run()
    return session


def test_branch_holds_the_change_then_the_log_and_touches_nothing_else(repo: Path) -> None:
    session = finished_session(repo)
    (repo / "study.ipynb").write_text((repo / "study.ipynb").read_text().replace("base = 1", "base = 1  # wip"))
    (repo / "scratch.txt").write_text("uncommitted work")
    status_before = git(repo, "status", "--porcelain")
    message = export_branch(session, "autoresearch/best")
    assert message.startswith("branch autoresearch/best:")
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == status_before  # working tree and index untouched
    assert "# wip" in (repo / "study.ipynb").read_text()
    log = git(repo, "log", "--format=%s", "autoresearch/best").splitlines()
    assert log == ["Add the autoresearch log and notes of session study", "add one", "the analysis"]
    changed = git(repo, "show", "--name-only", "--format=", "autoresearch/best~1").splitlines()
    assert changed == ["study.ipynb"]
    notebook = nbformat.reads(git(repo, "show", "autoresearch/best:study.ipynb"), as_version=4)
    assert notebook.cells[1].source == "print(f'METRIC x={base + 1}')"
    assert notebook.cells[0].source == "base = 1"  # from HEAD, not the uncommitted edit
    notes = git(repo, "show", "--name-only", "--format=", "autoresearch/best").splitlines()
    assert set(notes) == {
        ".autoresearch/study/log.jsonl",
        ".autoresearch/study/prompt.md",
        ".autoresearch/study/best.py",
    }
    with pytest.raises(ExportError, match="branch autoresearch/best already exists"):
        export_branch(session, "autoresearch/best")
    with pytest.raises(ExportError, match="git check-ref-format failed"):
        export_branch(session, "bad..name")


def test_branch_outside_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text(metric_cell(1))
    rec = write_recording(tmp_path / "rec.jsonl", [("h", metric_cell(2))])
    session = create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}")
    session.run()
    with pytest.raises(ExportError, match="is not in a git repository; export --to file instead"):
        export_branch(session, "x")


def test_script_and_notebook_exports_carry_the_setup_cells(repo: Path) -> None:
    session = finished_session(repo)
    script = export_file(session, "winner.py")
    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    assert namespace["base"] == 1
    notebook = nbformat.read(export_notebook(session, "winner.ipynb"), as_version=4)
    assert [c.source for c in notebook.cells[1:2]] == ["base = 1"]
    assert notebook.cells[-1].metadata["autoresearch"]["run"] == 2
    with pytest.raises(ExportError, match="already exists"):
        export_notebook(session, "winner.ipynb")
    with pytest.raises(ExportError, match=r"should end in \.py"):
        export_file(session, "winner.txt")


def test_nothing_to_export_before_a_keep(tmp_path: Path) -> None:
    (tmp_path / "bench.py").write_text("print('METRIC x=1')\nprint('METRIC cost=5')")
    rec = write_recording(tmp_path / "rec.jsonl", [])
    session = create_session(tmp_path / "bench.py", maximize="x", model=f"replay:{rec}", constraints=["cost <= 1"])
    session.run()
    with pytest.raises(ExportError, match="has no kept run to export yet"):
        export_file(session, "x.py")


def test_exports_never_create_folders_and_start_at_the_notebook(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = finished_session(repo)
    elsewhere = repo / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the kernel's working folder moved: paths still start at the notebook
    for export, name in ((export_file, "results/best.py"), (export_notebook, "results/best.ipynb")):
        with pytest.raises(ExportError) as caught:
            export(session, name)
        assert str(caught.value) == (
            f"folder {repo / 'results'} does not exist; create it first, or choose a path in an existing "
            f"folder (relative paths start at {repo})"
        )
        assert not (repo / "results").exists() and not (elsewhere / "results").exists()
    with pytest.raises(ExportError, match="folder /no-such-folder does not exist"):
        export_file(session, "/no-such-folder/best.py")
    assert not Path("/no-such-folder").exists()
    assert export_file(session, "best.py") == repo / "best.py" and not (elsewhere / "best.py").exists()
    (repo / "results").mkdir()
    assert export_notebook(session, "results/best.ipynb").is_file()


def test_the_cli_copy_of_a_notebook_goes_only_into_an_existing_folder(tmp_path: Path) -> None:
    from jupyter_autoresearch.views._cells import write_notebook_copy

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "a.ipynb")
    with pytest.raises(ExportError, match=r"folder .*missing does not exist; create it"):
        write_notebook_copy(tmp_path / "a.ipynb", tmp_path / "missing" / "a.out.ipynb", [])
    assert not (tmp_path / "missing").exists()
