"""The language-model proposer, on litellm (imported lazily and in the background: it takes seconds)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..protocol._errors import ProposalError
from ..protocol._settings import ModelSettings
from ..protocol._task import TaskDraft
from ._prompt import INFERENCE_SYSTEM, SYSTEM, inference_request, parse_task_draft, proposal_request
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


def preload_litellm(model: str | None = None) -> threading.Thread:
    """Import litellm in a background thread, so that nobody waits for it who need not.

    With ``model``, also load what its first request would load (the HTTP transport and
    the token counter litellm prices a reply with), so that the first proposal is quick.
    """

    def warm_up() -> None:
        litellm = import_litellm()
        if model is None:
            return
        try:
            import httpcore  # noqa: F401 - httpx imports its transport on the first request

            litellm.token_counter(model=model, text="warm up")
        except Exception:
            pass  # only a warm-up: the request itself says what is wrong

    thread = threading.Thread(target=warm_up, name="autoresearch-litellm-import", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class _Price:
    """A model's price per token in US dollars, and its own reply limit when litellm knows it."""

    prompt: float
    completion: float
    max_reply: int | None


def _price(litellm: Any, model: str) -> _Price | None:
    """The model's entry in litellm's price map, or None when it has no real price."""
    # cost_per_token silently prices some unmapped models at 0: require a real price entry.
    names = [model, model.split("/", 1)[-1]]
    entry = next((litellm.model_cost[n] for n in names if n in litellm.model_cost), None)
    if not entry or (entry.get("input_cost_per_token") is None and entry.get("output_cost_per_token") is None):
        return None
    limit = entry.get("max_output_tokens") or entry.get("max_tokens")
    return _Price(
        float(entry.get("input_cost_per_token") or 0.0),
        float(entry.get("output_cost_per_token") or 0.0),
        int(limit) if isinstance(limit, (int, float)) and limit > 0 else None,
    )


def _cost(litellm: Any, model: str, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """Price of a call in US dollars, or None when litellm has no price for the model."""
    if prompt_tokens is None or completion_tokens is None or _price(litellm, model) is None:
        return None
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        return None
    return float(prompt_cost + completion_cost)


_TRANSIENT = ("APIConnectionError", "Timeout", "ServiceUnavailableError", "InternalServerError", "RateLimitError")


@dataclass(frozen=True)
class _Answer:
    text: str
    tokens: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None


class LiteLLMProposer(Proposer):
    """Asks a language model through litellm, one streamed request per iteration.

    Args:
        settings: the model string (``openai/gpt-5-mini``, ``anthropic/...``,
            ``ollama/qwen2.5-coder``; with ``api_base``, ``openai/<name>`` talks to any
            OpenAI-compatible server), retries, request timeout and temperature.

    Retries, with exponential backoff, cover rate limits, server and connection errors
    before any text has streamed (litellm's own ``num_retries`` needs tenacity and also
    retries authentication errors, and the OpenAI client's retries only cover
    OpenAI-style providers, so the loop is here). A reply that fails after that, or is
    cut off mid-stream, raises a non-fatal :class:`ProposalError`: the iteration is lost,
    not the session. A refused key or an unknown model or provider is fatal.

    Example:
        >>> proposer = LiteLLMProposer(ModelSettings("ollama/qwen2.5-coder"))  # doctest: +SKIP
    """

    def __init__(self, settings: ModelSettings) -> None:
        if not settings.model:
            raise ProposalError.no_model()
        self.settings = settings
        self.model = settings.model

    # -- before the baseline -------------------------------------------------------------
    def prepare(self) -> None:
        preload_litellm(self.model)

    def check(self) -> None:
        """Refuse, in one line, an unknown provider, a missing key or an unreachable server."""
        litellm = import_litellm()
        model, api_base = self.model, self.settings.api_base
        try:
            litellm.get_llm_provider(model, api_base=api_base)
        except Exception:
            raise _failure(ValueError("LLM Provider NOT provided"), model, api_base, "", transient=False) from None
        if api_base:
            _check_reachable(api_base, model)
            return  # an OpenAI-compatible server may need no key; a refused one stops the loop
        missing = [
            name
            for name in litellm.validate_environment(model=model).get("missing_keys", [])
            if "KEY" in name or "TOKEN" in name
        ]
        if missing:
            where = f" or in {self.settings.env_file}" if self.settings.env_file else ""
            raise ProposalError(
                f"{missing[0]} is not set, and litellm needs it for {model}: set it in the environment{where}",
                model=model,
            )

    # -- asking ----------------------------------------------------------------------------
    def propose(self, context: ProposalContext, on_delta: DeltaCallback | None = None) -> Proposal:
        answer = self._ask(SYSTEM, proposal_request(context), on_delta)
        return Proposal.from_text(
            answer.text,
            tokens=answer.tokens,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost_usd=answer.cost_usd,
            model=self.model,
        )

    def estimate_cost(self, context: ProposalContext) -> float | None:
        """The most the next request could cost: its prompt's tokens (litellm's counter) and the
        reply's token limit, at the model's price; None when litellm has no price for it."""
        litellm = import_litellm()
        price = _price(litellm, self.model)
        if price is None:
            return None
        try:
            prompt = litellm.token_counter(model=self.model, messages=_messages(SYSTEM, proposal_request(context)))
        except Exception:
            return None  # no counter for this model: the cap is checked after each request only
        return float(prompt) * price.prompt + self._reply_limit(litellm) * price.completion

    def _reply_limit(self, litellm: Any) -> int:
        price = _price(litellm, self.model)
        limit = self.settings.max_reply_tokens
        return min(limit, price.max_reply) if price is not None and price.max_reply else limit

    def infer_task(
        self,
        code: str,
        metrics: Mapping[str, float],
        files: Sequence[str],
        on_delta: DeltaCallback | None = None,
    ) -> TaskDraft:
        answer = self._ask(INFERENCE_SYSTEM, inference_request(code, metrics, files), on_delta)
        return replace(parse_task_draft(answer.text, metrics), tokens=answer.tokens, cost_usd=answer.cost_usd)

    def _ask(self, system: str, user: str, on_delta: DeltaCallback | None) -> _Answer:
        litellm = import_litellm()
        settings = self.settings
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": _messages(system, user),
            "max_tokens": self._reply_limit(litellm),
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": settings.timeout,
            "max_retries": 0,  # one retry policy: ours, below
        }
        if settings.api_base:
            kwargs["api_base"] = settings.api_base
            if self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "none"  # local OpenAI-compatible servers need no key
        if settings.temperature is not None:
            kwargs["temperature"] = settings.temperature
        parts: list[str] = []
        usage: Any = None
        for attempt in range(settings.num_retries + 1):
            parts, usage, aborted = [], None, None
            stream: Any = None
            try:
                stream = litellm.completion(**kwargs)
                for chunk in stream:
                    usage = getattr(chunk, "usage", None) or usage
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                        if on_delta is not None:
                            try:
                                on_delta(parts[-1])
                            except BaseException as stop:
                                aborted = stop
                                break
            except Exception as err:
                transient = isinstance(err, tuple(getattr(litellm, n) for n in _TRANSIENT))
                # Nothing is retried once text has streamed: the user saw it already.
                if transient and not parts and attempt < settings.num_retries:
                    time.sleep(min(0.5 * 2**attempt, 8.0))
                    continue
                raise _failure(err, self.model, settings.api_base, "".join(parts), transient) from None
            finally:
                # Closed here, in this thread: a stream left to the garbage collector can be
                # closed in the middle of a later request, which then waits forever on the
                # connection pool's lock that request holds.
                if stream is not None:
                    stream.close()
            if aborted is not None:
                raise aborted
            break
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        return _Answer(
            text="".join(parts),
            tokens=(prompt_tokens or 0) + (completion_tokens or 0) if usage is not None else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=_cost(litellm, self.model, prompt_tokens, completion_tokens),
        )


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _check_reachable(api_base: str, model: str) -> None:
    url = urlsplit(api_base)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ProposalError(f"--api-base {api_base!r} is not an http(s) URL; write e.g. http://127.0.0.1:8000/v1")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ProposalError(
            f"cannot reach --api-base {api_base} ({reason}); start the server or fix the URL", model=model
        ) from None


def _failure(err: Exception, model: str, api_base: str | None, streamed: str, transient: bool) -> ProposalError:
    """The one-line ProposalError for a failed request: fatal when asking again cannot help."""
    name = type(err).__name__
    where = f" at {api_base}" if api_base else ""
    text = " ".join(str(getattr(err, "message", err)).split())[:300]
    if name == "AuthenticationError":
        return ProposalError(
            f"the model provider refused the API key for {model} ({text}); set the key in the environment "
            "or a .env file",
            model=model,
        )
    if "Provider NOT provided" in text:
        return ProposalError(
            f"model {model!r} names no provider; write it as provider/model, e.g. openai/gpt-5-mini", model=model
        )
    if name in ("NotFoundError", "BadRequestError") and "model" in text.lower():
        return ProposalError(f"model {model} was not found{where} ({text}); check --model", model=model)
    if streamed:
        return ProposalError(
            f"the reply of {model} was cut off after {len(streamed)} characters ({name}: {text})",
            model=model,
            fatal=False,
        )
    if transient:
        return ProposalError(
            f"cannot reach {model}{where} after retries ({name}: {text}); check --api-base and the server",
            model=model,
            fatal=False,
        )
    return ProposalError(f"the request to {model}{where} failed ({name}: {text})", model=model, fatal=False)
