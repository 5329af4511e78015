"""Shared fixtures: a scripted OpenAI-compatible server, work folders, recordings."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).parent))

from llm_server import LLMServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FILES = Path(__file__).parent / "files"


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LLMServer]:
    """A streaming OpenAI-compatible stub on 127.0.0.1, reset before each test that uses it."""
    server = LLMServer().start()
    yield server
    server.close()


@pytest.fixture
def llm(llm_server: LLMServer) -> Iterator[LLMServer]:
    llm_server.reset()
    yield llm_server
    llm_server.reset()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the marketing data, as an analyst's project folder."""
    shutil.copy(EXAMPLES / "marketing_campaign_estimations.csv", tmp_path)
    return tmp_path


def write_recording(
    path: Path,
    proposals: list[tuple[str, str]],
    *,
    segment_of: list[int] | None = None,
    metric: str = "x",
    direction: str = "higher",
) -> Path:
    """A replay recording: one run line per (hypothesis, code)."""
    lines = [json.dumps({"type": "config", "name": "test", "metricName": metric, "bestDirection": direction})]
    for index, (hypothesis, code) in enumerate(proposals):
        segment = segment_of[index] if segment_of else 0
        lines.append(
            json.dumps(
                {"run": index + 2, "segment": segment, "parent": 1, "code": code, "asi": {"hypothesis": hypothesis}}
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def stops_added(log: Path, before: str) -> list[str]:
    """The reasons of the lines a log gained since it read ``before``, which must all be
    stop lines (a rerun that adds no run, no segment and no header)."""
    after = log.read_text()
    assert after.startswith(before), "the log's earlier lines changed"
    added = [json.loads(line) for line in after[len(before) :].splitlines()]
    assert all(line["type"] == "stop" for line in added), added
    return [line["reason"] for line in added]


def metric_cell(value: float | str, extra: str = "") -> str:
    return f"{extra}\nprint('METRIC x={value}')\nprint('METRIC cost=1')\n".lstrip("\n")


def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here (None when it can)."""
    from jupyter_autoresearch.isolation._sandbox import SandboxUnavailable, find_bubblewrap

    try:
        find_bubblewrap()
    except SandboxUnavailable as err:
        return str(err)
    return None


def need_sandbox() -> None:
    """Skip a sandbox test where bubblewrap cannot run, except in CI, where that fails it."""
    problem = sandbox_problem()
    if problem is None:
        return
    if os.environ.get("AUTORESEARCH_REQUIRE_SANDBOX"):
        pytest.fail(f"the sandbox must run here: {problem}")
    pytest.skip(f"no sandbox here: {problem}")


@pytest.fixture(params=["off", "on"])
def sandbox(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs unconfined and in the sandbox."""
    if request.param == "on":
        need_sandbox()
    return str(request.param)


@pytest.fixture
def priced_model() -> Any:
    """A model with a price registered in litellm's map: $1 per million prompt tokens, $4 per
    million reply tokens, replies of at most 500 tokens."""
    from jupyter_autoresearch.proposers._litellm import import_litellm

    litellm = import_litellm()
    name = "openai/priced-test"
    litellm.register_model(
        {name: {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6, "max_output_tokens": 500,
                "litellm_provider": "openai", "mode": "chat"}}
    )  # fmt: skip
    yield name
    litellm.model_cost.pop(name, None)


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh InteractiveShell with the extension loaded, working in a temporary folder."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from jupyter_autoresearch.notebook import _registry

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=Config())
    shell.run_line_magic("load_ext", "jupyter_autoresearch")
    _registry._SESSIONS.clear()
    _registry._ORDER.clear()
    yield shell
    for session in _registry.sessions().values():
        session.stop()
        session.wait(10)
    InteractiveShell.clear_instance()
