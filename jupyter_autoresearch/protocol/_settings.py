"""Typed settings of the evaluator, where it runs, the model front and the holdout, filled once from the options
table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ._errors import OptionsError

__all__ = [
    "SANDBOX_MODES",
    "CheckSettings",
    "EvaluationSettings",
    "ExecutorSettings",
    "ModelSettings",
    "SandboxMode",
    "TrustSettings",
]

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
class CheckSettings:
    """The correctness checks of a run, as given (the notebook's cell is read later).

    Attributes:
        commands: shell commands that must exit 0 (``--check``, repeatable).
        cell: the notebook's N-th code cell, counted as ``--cell`` counts them, whose code
            must run without raising (``--check-cell``).
        timeout: seconds each check may take (``--check-timeout``; pi-autoresearch's
            checks default to 300 as well).
    """

    commands: tuple[str, ...] = ()
    cell: int | None = None
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise OptionsError(f"--check-timeout {self.timeout:g} must be positive")
        if self.cell is not None and self.cell < 1:
            raise OptionsError(f"--check-cell {self.cell} must be 1 or more")


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
        max_reply_tokens: the most tokens a reply may use (the request's ``max_tokens``, at
            most the model's own limit); with the prompt's tokens, it bounds what a request
            can cost before it is sent.
    """

    model: str | None = None
    api_base: str | None = None
    env_file: Path | None = None
    num_retries: int = 3
    timeout: float = 600.0
    temperature: float | None = None
    max_reply_tokens: int = 16384

    def __post_init__(self) -> None:
        if self.max_reply_tokens < 1:
            raise OptionsError(f"--max-reply-tokens {self.max_reply_tokens} must be 1 or more")


@dataclass(frozen=True)
class TrustSettings:
    """What is checked after each candidate, outside its process.

    Attributes:
        holdout: a Python file that scores each candidate on data it never sees; its
            METRIC lines are hidden metrics.
        holdout_cell: in a notebook, the N-th code cell (as ``--cell`` counts) instead.
        holdout_inputs: the candidate's variables the holdout reads (sent cloudpickled).
        holdout_files: glob patterns of the files the holdout reads: hidden from
            candidates (in the sandbox) and never named to the model.
        same_output: variables whose value must stay the baseline's.
        rtol: relative tolerance of ``same_output`` for numbers, arrays and frames.
        atol: absolute tolerance of ``same_output``.
        select_by: ``search`` (the primary metric) or ``holdout``: which metric picks
            the best kept run for export and ``best``.
    """

    holdout: Path | None = None
    holdout_cell: int | None = None
    holdout_inputs: tuple[str, ...] = ()
    holdout_files: tuple[str, ...] = ()
    same_output: tuple[str, ...] = ()
    rtol: float = 1e-7
    atol: float = 0.0
    select_by: Literal["search", "holdout"] = "search"

    def __post_init__(self) -> None:
        if self.holdout is not None and self.holdout_cell is not None:
            raise OptionsError("give --holdout FILE.py or --holdout-cell N, not both", option="holdout")
        if self.holdout_inputs and not self.has_holdout:
            raise OptionsError(
                f"--holdout-inputs {','.join(self.holdout_inputs)} needs a holdout to read them: "
                "add --holdout FILE.py (or --holdout-cell N in a notebook)",
                option="holdout_inputs",
            )
        if self.select_by == "holdout" and not self.has_holdout:
            raise OptionsError(
                "--select-by holdout needs a holdout metric: add --holdout FILE.py (or --holdout-cell N)",
                option="select_by",
            )
        for name in (*self.holdout_inputs, *self.same_output):
            if not name.isidentifier():
                raise OptionsError(f"{name!r} is not a variable name; name variables the cell defines")
        if self.rtol < 0 or self.atol < 0:
            raise OptionsError("--rtol and --atol must be 0 or more")

    @property
    def has_holdout(self) -> bool:
        return self.holdout is not None or self.holdout_cell is not None

    @property
    def exports(self) -> tuple[str, ...]:
        """The candidate's variables sent to the checks after each run."""
        return tuple(dict.fromkeys((*self.same_output, *self.holdout_inputs)))

    @property
    def active(self) -> bool:
        """Whether anything is checked after each candidate."""
        return self.has_holdout or bool(self.same_output)
