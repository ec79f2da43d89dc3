"""A griffe extension for `make docs` (mkdocs.yml): goalflow's docstrings cross-reference
with Sphinx roles (:class:`~goalflow.errors.GoalFailedError`), which mkdocstrings would
print as written; each becomes inline code of the name it shows (`GoalFailedError`)."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj):`(~?)([^`]+)`")


def _shown(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_shown, obj.docstring.value)
