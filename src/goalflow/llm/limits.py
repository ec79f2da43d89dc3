"""Reading an endpoint's rate limits from its answers: OpenAI's ``x-ratelimit-*``
headers (``limit``, ``remaining`` and ``reset`` for requests and for tokens, resets as
durations like ``20ms``, ``1s`` or ``6m0s``) and ``retry-after`` / ``retry-after-ms``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from goalflow.core.rates import AnnouncedLimits

__all__ = ["announced_limits", "parse_duration", "retry_after", "too_large"]

_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?$"
)


def parse_duration(text: str) -> float | None:
    """Seconds in ``6m0s``, ``1s``, ``20ms``, ``1h2m3.5s`` or a bare number; None if not one."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not text or match is None:
        return None
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return (
        parts.get("h", 0) * 3600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
        + parts.get("ms", 0) / 1000
    )


def _whole(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def announced_limits(headers: Mapping[str, str]) -> AnnouncedLimits | None:
    """The limits ``headers`` announce; None when they announce none."""

    def said(kind: str) -> tuple[int | None, int | None, float | None]:
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        return (
            _whole(headers.get(f"x-ratelimit-limit-{kind}")),
            _whole(headers.get(f"x-ratelimit-remaining-{kind}")),
            parse_duration(reset) if reset is not None else None,
        )

    requests, tokens = said("requests"), said("tokens")
    if all(value is None for value in (*requests, *tokens)):
        return None
    return AnnouncedLimits(*requests, *tokens)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the endpoint asks to wait: ``retry-after-ms``, else ``retry-after``."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            continue
    return None


def too_large(message: str) -> bool:
    """Whether a 429's ``message`` says no wait can cure it: the request alone exceeds
    the limit (OpenAI: "Request too large for … on tokens per min")."""
    return "request too large" in message.lower()
