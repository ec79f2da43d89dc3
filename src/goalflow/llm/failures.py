"""What an endpoint's refusal means for the user: a goalflow error that says what to
change, never the server's text about keys (:func:`translate`, :func:`redact`)."""

from __future__ import annotations

import re

import openai

from goalflow.errors import (
    LLMAuthError,
    LLMModelNotFoundError,
    LLMRequestError,
    LLMUnreachableError,
)
from goalflow.llm.config import LLMConfig

__all__ = ["redact", "served_models", "translate"]

_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")


async def translate(
    error: openai.APIError, config: LLMConfig, client: openai.AsyncOpenAI
) -> Exception:
    """The goalflow error for ``error``; a 404 lists the models ``client`` serves."""
    where = config.endpoint
    if isinstance(error, openai.APITimeoutError):
        return LLMUnreachableError(
            f"the model endpoint {where} did not answer within {config.timeout:.0f} s "
            f"({config.max_retries} retries): check that it is up, or raise the timeout"
        )
    if isinstance(error, openai.APIConnectionError):
        return LLMUnreachableError(
            f"cannot reach the model endpoint {where}: check OPENAI_BASE_URL (or the "
            "LLMProvider block's base_url) and that the server is running"
        )
    assert isinstance(error, openai.APIStatusError)
    status = error.status_code
    if status in (401, 403):
        return LLMAuthError(
            f"the model endpoint {where} refused the API key (HTTP {status}): set a valid "
            "OPENAI_API_KEY, or the api_key of the LLMProvider block"
        )
    if status == 404:
        served = await served_models(client)
        hint = f"; it serves: {', '.join(served)}" if served else ""
        return LLMModelNotFoundError(
            f"the model endpoint {where} has no model {config.model!r}{hint}. "
            "Choose another with --model or GOALFLOW_MODEL"
        )
    detail = redact(error.message, config)
    if status == 429:  # only a request too large for the limit ends up here
        return LLMRequestError(
            f"the model endpoint {where} refuses a request this large (HTTP 429): "
            f"{detail}. Lower max_tokens or shorten the inputs, or raise the limit"
        )
    return LLMRequestError(
        f"the model endpoint {where} refused the request (HTTP {status}): {detail}"
    )


async def served_models(client: openai.AsyncOpenAI) -> list[str]:
    """The model names the endpoint lists, for a hint; [] when it lists none it can say
    (no /models, an error, an HTML page or any other body that is not a model list)."""
    try:
        page = await client.models.list()
        return sorted({str(model.id) for model in page.data if getattr(model, "id", None)})
    except Exception:  # only a hint: whatever the answer was, the 404 is reported
        return []


def redact(text: str, config: LLMConfig) -> str:
    """``text`` with the configured key, and anything shaped like a key, replaced."""
    if config.api_key:
        text = text.replace(config.api_key.get_secret_value(), "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)
