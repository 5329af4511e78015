"""The language-model proposer, on litellm (imported lazily: it takes seconds)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ..protocol._errors import ProposalError
from ._prompt import SYSTEM, proposal_request
from ._propose import DeltaCallback, Proposal, ProposalContext, Proposer

__all__ = ["LiteLLMProposer", "import_litellm", "preload_litellm"]

_IMPORT_LOCK = threading.Lock()


def import_litellm() -> Any:
    """Import litellm without letting it fetch its price map from the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # In its default DEV mode litellm loads ./.env at import; we load the target's .env ourselves.
    os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
    with _IMPORT_LOCK:
        import litellm

        litellm.suppress_debug_info = True  # no "Give Feedback" banners printed to stdout
        # Token counting for some model names would fetch a tokenizer from the Hub.
        litellm.disable_hf_tokenizer_download = True
        return litellm


def preload_litellm() -> threading.Thread:
    """Import litellm in a background thread so the kernel's main thread never waits for it."""
    thread = threading.Thread(target=import_litellm, name="autoresearch-litellm-import", daemon=True)
    thread.start()
    return thread


def _cost(litellm: Any, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """Price of a call in US dollars, or None when litellm has no price for the model."""
    if prompt_tokens is None or completion_tokens is None:
        return None
    # cost_per_token silently prices some unmapped models at 0: require a real price entry.
    names = [model, model.split("/", 1)[-1]]
    entry = next((litellm.model_cost[n] for n in names if n in litellm.model_cost), None)
    if not entry or (entry.get("input_cost_per_token") is None and entry.get("output_cost_per_token") is None):
        return None
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost + completion_cost)


def _message(err: Exception, model: str, api_base: str | None) -> str:
    name = type(err).__name__
    where = f" at {api_base}" if api_base else ""
    text = " ".join(str(getattr(err, "message", err)).split())[:300]
    if name == "AuthenticationError":
        return (
            f"the model provider refused the API key for {model} ({text}); set the key in "
            "the environment or a .env file"
        )
    if "Provider NOT provided" in text:
        return f"model {model!r} names no provider; write it as provider/model, e.g. openai/gpt-5-mini"
    if name in ("NotFoundError", "BadRequestError") and "model" in text.lower():
        return f"model {model} was not found{where} ({text}); check --model"
    if name in ("APIConnectionError", "Timeout", "ServiceUnavailableError", "InternalServerError", "RateLimitError"):
        return f"cannot reach {model}{where} after retries ({name}: {text}); check --api-base and the server"
    return f"the request to {model}{where} failed ({name}: {text})"


class LiteLLMProposer(Proposer):
    """Asks a language model through litellm, one streamed request per iteration.

    Args:
        model: a litellm model string (``openai/gpt-5-mini``, ``anthropic/...``,
            ``ollama/qwen2.5-coder``); with ``api_base``, ``openai/<name>`` talks to any
            OpenAI-compatible server.
        api_base: the server's URL, e.g. ``http://127.0.0.1:8000/v1``.
        num_retries: retries, with exponential backoff, on rate limits, server and
            connection errors, before any text has streamed. (litellm's own
            ``num_retries`` needs tenacity and also retries authentication errors, and the
            OpenAI client's retries only cover OpenAI-style providers, so the loop is here.)
        timeout: seconds one request may take.
        temperature: sampling temperature, when the model accepts one.
    """

    def __init__(
        self,
        *,
        model: str,
        api_base: str | None = None,
        num_retries: int = 3,
        timeout: float = 600.0,
        temperature: float | None = None,
    ) -> None:
        self.model = model
        self.api_base = api_base
        self.num_retries = num_retries
        self.timeout = timeout
        self.temperature = temperature

    def propose(self, context: ProposalContext, on_delta: DeltaCallback | None = None) -> Proposal:
        return self.complete(SYSTEM, proposal_request(context), on_delta)

    def complete(self, system: str, user: str, on_delta: DeltaCallback | None = None) -> Proposal:
        litellm = import_litellm()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self.timeout,
            "max_retries": 0,  # one retry policy: ours, below
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "none"  # local OpenAI-compatible servers need no key
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        transient = (
            litellm.RateLimitError,
            litellm.APIConnectionError,
            litellm.InternalServerError,
            litellm.ServiceUnavailableError,
            litellm.Timeout,
        )
        parts: list[str] = []
        usage: Any = None
        for attempt in range(self.num_retries + 1):
            parts, usage, aborted = [], None, None
            try:
                for chunk in litellm.completion(**kwargs):
                    usage = getattr(chunk, "usage", None) or usage
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                        if on_delta is not None:
                            try:
                                on_delta(parts[-1])
                            except BaseException as stop:
                                aborted = stop
                                break
            except transient as err:
                if attempt == self.num_retries or parts:
                    # Nothing is retried once text has streamed: the user saw it already.
                    raise ProposalError(_message(err, self.model, self.api_base)) from None
                time.sleep(min(0.5 * 2**attempt, 8.0))
                continue
            except Exception as err:
                raise ProposalError(_message(err, self.model, self.api_base)) from None
            if aborted is not None:
                raise aborted
            break
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        tokens = (prompt_tokens or 0) + (completion_tokens or 0) if usage is not None else None
        return Proposal.from_text(
            "".join(parts),
            tokens=tokens,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=_cost(litellm, self.model, prompt_tokens, completion_tokens),
            model=self.model,
        )
