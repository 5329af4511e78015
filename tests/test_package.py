"""The package's public surface and code quality gates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jupyter_autoresearch

ROOT = Path(__file__).resolve().parent.parent


def test_exported_members_are_pinned() -> None:
    assert sorted(jupyter_autoresearch.__all__) == sorted(
        [
            "AutoresearchError",
            "BaselineDone",
            "BaselineError",
            "Calibrated",
            "Calibrating",
            "Check",
            "CheckStarted",
            "Constraint",
            "ConstraintError",
            "ConstraintsChanged",
            "DaskEvaluator",
            "Decision",
            "EvaluationDone",
            "EvaluationError",
            "EvaluationSettings",
            "EvaluationRunning",
            "EvaluationStarted",
            "Evaluator",
            "Event",
            "ExportError",
            "ForkEvaluator",
            "JournalError",
            "LiteLLMProposer",
            "Limits",
            "MetricParseError",
            "ModelSettings",
            "Notice",
            "OptionsError",
            "Outcome",
            "Proposal",
            "ProposalContext",
            "ProposalError",
            "ProposalFailed",
            "ProposalReady",
            "ProposalStarted",
            "Proposer",
            "ReasoningDelta",
            "ReplayProposer",
            "RunRecord",
            "Session",
            "SessionError",
            "SessionStarted",
            "StateChanged",
            "Stopped",
            "TargetError",
            "TaskDraft",
            "TaskInferred",
            "TaskSpec",
            "Threshold",
            "WorkerSetup",
            "create_session",
            "imported_modules",
            "load_ipython_extension",
            "load_session",
            "metric",
            "parse_constraint",
            "parse_metrics",
            "sessions",
        ]
    )
    for name in jupyter_autoresearch.__all__:
        assert getattr(jupyter_autoresearch, name) is not None


def test_importing_the_package_does_not_import_heavy_modules() -> None:
    code = (
        "import sys, jupyter_autoresearch; "
        "heavy = ('litellm', 'IPython', 'ipywidgets', 'pandas', 'matplotlib', 'distributed'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_error_derives_from_the_root() -> None:
    from jupyter_autoresearch.protocol import _errors

    for name in _errors.__all__:
        assert issubclass(getattr(_errors, name), jupyter_autoresearch.AutoresearchError)


@pytest.mark.parametrize("command", [["ruff", "check", "jupyter_autoresearch", "tests", "benchmarks"], ["mypy"]])
def test_lint_and_types(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is missing: pip install -e '.[test]'")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


#: The design's layers, inside out: a module may import its own layer and those before it.
LAYERS = ["protocol", "isolation", "journal", "proposers", "views", "engine", "notebook", "cli"]


def _imported_layers(path: Path) -> set[str]:
    """The package folders a module imports from (relative or absolute imports)."""
    import ast

    package = path.relative_to(ROOT).parts[:-1]  # ('jupyter_autoresearch', 'engine')
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
            if parts[:1] == ["jupyter_autoresearch"]:
                found.add(parts[1] if len(parts) > 1 and parts[1] in LAYERS else "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "jupyter_autoresearch":
                    found.add(parts[1] if len(parts) > 1 and parts[1] in LAYERS else "")
    return found


def test_inner_layers_never_import_outer_ones() -> None:
    package = ROOT / "jupyter_autoresearch"
    assert sorted(p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)
    wrong = []
    for layer in LAYERS:
        for module in (package / layer).rglob("*.py"):
            for imported in _imported_layers(module):
                # "" is the package root: only its public API, which the outermost layers may use.
                if imported == "" or LAYERS.index(imported) > LAYERS.index(layer):
                    if not (imported == "" and layer == "cli"):
                        wrong.append(f"{module.relative_to(ROOT)} imports {imported or 'jupyter_autoresearch'}")
    assert wrong == []


def test_readme_lists_the_layers_of_the_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = [layer for layer in LAYERS if f"`{layer}/`" in readme]
    assert listed == LAYERS
