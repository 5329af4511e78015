"""Typed settings of the evaluator, where it runs and the model front, filled once from the options table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ._errors import OptionsError

__all__ = ["SANDBOX_MODES", "EvaluationSettings", "ExecutorSettings", "ModelSettings", "SandboxMode"]

#: ``auto``: confine candidates where bubblewrap works, and say once where it does not;
#: ``on``: refuse to run them unconfined; ``off``: never confine them.
SandboxMode = Literal["auto", "on", "off"]
SANDBOX_MODES: tuple[SandboxMode, ...] = get_args(SandboxMode)


@dataclass(frozen=True)
class EvaluationSettings:
    """How one candidate is run.

    Attributes:
        timeout: seconds a candidate may run before its process group is killed.
        memory_mb: address space a candidate may add to the warm worker's, in MiB
            (None: no limit).
        output_cap: bytes of each output stream kept (the tail); METRIC lines are
            always kept.
        sandbox: whether the worker runs in the bubblewrap sandbox (``auto``, ``on``, ``off``).
        network: let a confined worker use the network (only a private loopback otherwise).
    """

    timeout: float = 600.0
    memory_mb: int | None = 4096
    output_cap: int = 65536
    sandbox: SandboxMode = "auto"
    network: bool = False

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise OptionsError(f"--timeout {self.timeout:g} must be positive")
        if self.memory_mb is not None and self.memory_mb <= 0:
            raise OptionsError(f"--memory-limit {self.memory_mb} must be positive (or None for no limit)")
        if self.sandbox not in SANDBOX_MODES:
            raise OptionsError(f"--sandbox {self.sandbox} is not understood; choose auto, on or off")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where candidates run.

    Attributes:
        executor: ``local`` (forked on this machine), a Dask scheduler's address
            (``tcp://HOST:PORT``), or a ``distributed.Client``; None until resolved from
            ``$AUTORESEARCH_EXECUTOR`` (else ``local``).
        upload_limit_mb: the largest target folder uploaded to each Dask worker.
        shared_folder: the Dask workers read the target's folder at its own path (shared
            storage) instead of an uploaded copy.
    """

    executor: Any = None
    upload_limit_mb: float = 100.0
    shared_folder: bool = False


@dataclass(frozen=True)
class ModelSettings:
    """Which model proposes, and how it is asked.

    Attributes:
        model: a litellm model string (``openai/gpt-5-mini``, ``ollama/qwen2.5-coder``)
            or ``replay:PATH``; None until resolved from ``$AUTORESEARCH_MODEL``.
        api_base: an OpenAI-compatible server's URL, e.g. ``http://127.0.0.1:8000/v1``.
        env_file: the ``.env`` file keys may come from, named when a key is missing.
        num_retries: retries, with exponential backoff, of a request that failed before
            any text arrived (rate limits, server and connection errors).
        timeout: seconds one request may take.
        temperature: sampling temperature, when the model accepts one.
    """

    model: str | None = None
    api_base: str | None = None
    env_file: Path | None = None
    num_retries: int = 3
    timeout: float = 600.0
    temperature: float | None = None
