"""What a provider counted for the prompts it answered, which bounds a new prompt that
repeats their messages far more tightly than a token per byte; kept from one goal to
the next per endpoint, so that a goal's first calls (its plan) are bounded too.

Chat templates set each message apart with special tokens, so a prompt's tokens are its
messages' tokens plus framing. A prompt that repeats messages of an earlier one (same
model) has at most the earlier prompt's counted tokens, plus a token per byte (and the
framing) of each message the earlier one did not have, plus its schema's bytes when
that differs (a provider may write it into the prompt), plus a few tokens for anything
else a provider adds that varies: the earlier prompt's own other messages only make the
bound larger. A goal's calls of one purpose share a long system message (every task,
every review, every plan), and a re-ask repeats its conversation.

The file keeps, per endpoint, each prompt's count beside SHA-256 digests of its
messages and schema: no text of a prompt, no key. A count from an earlier goal is taken
half again, as the model behind a name may have changed since; a goal whose endpoint
counts a prompt above its bound anyway trusts no count from then on, and the file
forgets that endpoint's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goalflow.core.chat import Message
from goalflow.llm.answers import message_bound

__all__ = ["PromptCounts"]

logger = logging.getLogger("goalflow.llm")
_KEEP = 4  # earlier prompts kept per kind (model and system message)
_KINDS = 256  # kinds of prompts kept per endpoint in the file, the latest
_SLACK = 8  # tokens for what varies between two prompts beyond their messages
_EARLIER = 1.5  # a count kept from an earlier goal, times this: the model behind a name
# may have changed since, to one that counts a prompt (somewhat) more tokens


@dataclass(frozen=True)
class _Seen:
    tokens: int  # what the provider counted
    schema: str  # the digest of the answer's schema
    messages: Counter[str]  # the digests of the prompt's messages
    earlier: bool = False  # counted in an earlier goal (read from the file)


class PromptCounts:
    """The counts of one endpoint's prompts, kept in ``store`` (None: for this process
    only) under ``endpoint``."""

    def __init__(self, store: Path | None = None, endpoint: str = "") -> None:
        self._store, self._endpoint = store, endpoint
        self._seen: dict[str, list[_Seen]] = _read(store).get(endpoint, {}) if store else {}
        self._trusted = True
        self._lock = threading.Lock()

    def saw(
        self, model: str, messages: list[Message], json_schema: dict[str, Any], tokens: int
    ) -> None:
        """The provider counted ``tokens`` for this prompt (``messages`` as sent)."""
        if tokens <= 0 or not messages:  # no usage reported: nothing learned
            return
        seen = _Seen(tokens, _schema_digest(json_schema), Counter(_digest(m) for m in messages))
        key = _key(model, messages)
        with self._lock:
            if self._trusted:
                kept = self._seen.pop(key, [])
                self._seen[key] = [*kept, seen][-_KEEP:]  # the latest last

    def distrust(self) -> bool:
        """The endpoint counted a prompt above its bound: no count bounds a prompt any
        more, and the file forgets this endpoint's. Whether the counts were trusted."""
        with self._lock:
            trusted, self._trusted = self._trusted, False
            self._seen.clear()
        return trusted

    def bound(self, model: str, messages: list[Message], json_schema: dict[str, Any]) -> int | None:
        """The prompt's tokens at most, by the earlier prompts it shares messages with;
        None when it shares none with a prompt whose count is known. A count from an
        earlier goal is taken half again: the model behind a name may have changed."""
        if not messages:
            return None
        with self._lock:
            kept = list(self._seen.get(_key(model, messages), ()))
        if not kept:
            return None
        each = [_digest(m) for m in messages]
        sizes = {d: message_bound(m) for d, m in zip(each, messages, strict=True)}
        digests = Counter(each)
        schema, schema_bytes = _schema_digest(json_schema), len(json.dumps(json_schema).encode())
        return _SLACK + min(
            (math.ceil(seen.tokens * _EARLIER) if seen.earlier else seen.tokens)
            + sum(sizes[d] * n for d, n in (digests - seen.messages).items())
            + (0 if seen.schema == schema else schema_bytes)
            for seen in kept
        )

    def save(self) -> None:
        """Write this endpoint's counts to the store, beside the other endpoints'. Two
        goals that save at once: the last one's are kept (it is a cache). A store that
        cannot be written is logged, and only the counts are lost."""
        if self._store is None:
            return
        with self._lock:
            latest = list(self._seen.items())[-_KINDS:]
        everything = _read(self._store)
        everything[self._endpoint] = dict(latest)
        data = {
            endpoint: {
                key: [[s.tokens, s.schema, dict(s.messages)] for s in seen]
                for key, seen in kinds.items()
            }
            for endpoint, kinds in everything.items()
        }
        temporary = None
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self._store.parent, suffix=".tmp")
            with os.fdopen(handle, "w") as out:
                json.dump(data, out)
            os.replace(temporary, self._store)
        except OSError as e:  # the next goal counts bytes, as the first did
            logger.warning("the prompt counts cannot be kept in %s: %s", self._store, e)
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)


def _read(store: Path) -> dict[str, dict[str, list[_Seen]]]:
    """The store's counts by endpoint, as counted in earlier goals; nothing when it is
    missing or unreadable (a cache: the bound falls back to a token per byte)."""
    try:
        data = json.loads(store.read_text())
        return {
            endpoint: {
                key: [
                    _Seen(int(t), str(schema), Counter(digests), earlier=True)
                    for t, schema, digests in seen
                ]
                for key, seen in kinds.items()
            }
            for endpoint, kinds in data.items()
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _key(model: str, messages: list[Message]) -> str:
    """A prompt's kind: its model and its last system message (a call's own instructions,
    also when a schema hint goes before them), or its first message when it has none."""
    system = [m for m in messages if m["role"] == "system"]
    return f"{model} {_digest(system[-1] if system else messages[0])}"


def _schema_digest(json_schema: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(json_schema, sort_keys=True).encode()).hexdigest()


def _digest(message: Message) -> str:
    return hashlib.sha256(f"{message['role']}\0{message['content']}".encode()).hexdigest()
