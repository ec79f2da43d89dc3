"""The texts the model client itself sends: the re-ask after an invalid structured
answer, and the schema hint for servers that take ``json_object`` only. Every other
prompt is the agent layer's (:mod:`goalflow.agent.prompts`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["CUT_OFF", "reask", "schema_hint"]

CUT_OFF = "the answer was cut off at the token limit: answer more briefly"


def reask(errors: Sequence[str]) -> str:
    """What the model is told when its answer did not validate."""
    return (
        "That answer is not valid:\n- "
        + "\n- ".join(errors)
        + "\nAnswer again with only the corrected JSON object."
    )


def schema_hint(json_schema: dict[str, Any]) -> str:
    """The system message that shows the schema to a server without ``json_schema``."""
    return "Answer with one JSON object that follows this JSON schema:\n" + json.dumps(
        json_schema, separators=(",", ":")
    )
