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
            "Constraint",
            "ConstraintError",
            "ConstraintsChanged",
            "Decision",
            "EvaluationDone",
            "EvaluationError",
            "EvaluationStarted",
            "Evaluator",
            "Event",
            "ExportError",
            "ForkEvaluator",
            "JournalError",
            "LiteLLMProposer",
            "Limits",
            "MetricParseError",
            "OptionsError",
            "Outcome",
            "Proposal",
            "ProposalContext",
            "ProposalError",
            "ProposalReady",
            "ProposalStarted",
            "Proposer",
            "ReasoningDelta",
            "ReplayProposer",
            "RunRecord",
            "Session",
            "SessionStarted",
            "StateChanged",
            "Stopped",
            "TargetError",
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
        "print(sorted(m for m in ('litellm', 'IPython', 'ipywidgets', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_error_derives_from_the_root() -> None:
    from jupyter_autoresearch import _errors

    for name in _errors.__all__:
        assert issubclass(getattr(_errors, name), jupyter_autoresearch.AutoresearchError)


@pytest.mark.parametrize("command", [["ruff", "check", "jupyter_autoresearch", "tests", "benchmarks"], ["mypy"]])
def test_lint_and_types(command: list[str]) -> None:
    if shutil.which(command[0]) is None:
        pytest.fail(f"{command[0]} is missing: pip install -e '.[test]'")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
