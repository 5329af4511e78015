"""jupyter-autoresearch: let a language model run experiments on your notebook.

``%load_ext jupyter_autoresearch`` adds the ``%%autoresearch`` magic; the same engine
runs headless with ``jupyter-autoresearch run``. The Python API::

    import jupyter_autoresearch as ar
    session = ar.create_session("optimise.py", maximize="revenue_millions",
                                constraints=["spend_millions <= 30"], model="openai/gpt-5-mini")
    session.run()
    session.runs_dataframe()
"""

from .engine._events import (
    BaselineDone,
    Calibrated,
    Calibrating,
    CheckStarted,
    ConstraintsChanged,
    Decision,
    EvaluationDone,
    EvaluationRunning,
    EvaluationStarted,
    Event,
    Notice,
    ProposalFailed,
    ProposalReady,
    ProposalStarted,
    ReasoningDelta,
    SessionStarted,
    StateChanged,
    Stopped,
    TaskInferred,
)
from .engine._factory import create_session, load_session
from .engine._session import Session
from .isolation._dask import DaskEvaluator
from .isolation._evaluate import Evaluator, ForkEvaluator, Outcome, WorkerSetup, imported_modules
from .proposers._propose import Proposal, ProposalContext, Proposer
from .proposers._replay import ReplayProposer
from .protocol._checks import Check
from .protocol._constraints import Constraint, parse_constraint
from .protocol._errors import (
    AutoresearchError,
    BaselineError,
    ConstraintError,
    EvaluationError,
    ExportError,
    JournalError,
    MetricParseError,
    OptionsError,
    ProposalError,
    SessionError,
    TargetError,
)
from .protocol._metrics import metric, parse_metrics
from .protocol._records import RunRecord
from .protocol._settings import EvaluationSettings, ModelSettings
from .protocol._task import Limits, TaskDraft, TaskSpec, Threshold

__version__ = "0.1.0"

__all__ = [
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
    "EvaluationRunning",
    "EvaluationSettings",
    "EvaluationStarted",
    "Evaluator",
    "Event",
    "ExportError",
    "ForkEvaluator",
    "JournalError",
    "Limits",
    "LiteLLMProposer",
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


def __getattr__(name: str) -> object:
    # litellm and IPython take seconds to import: only on first use.
    if name == "LiteLLMProposer":
        from .proposers._litellm import LiteLLMProposer

        return LiteLLMProposer
    if name == "sessions":
        from .notebook._registry import sessions

        return sessions
    raise AttributeError(f"module 'jupyter_autoresearch' has no attribute {name!r}")


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext jupyter_autoresearch``: register the magics."""
    from .notebook._magics import load_ipython_extension as load

    load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-autoresearch"}]
