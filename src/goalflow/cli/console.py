"""Where the command line writes for people (stderr), and how it fails."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

from goalflow.errors import ConfigError, GoalflowError

__all__ = ["err", "fail"]

err = Console(stderr=True, soft_wrap=True)  # messages stay whole, for grep and logs


def fail(error: GoalflowError, code: int | None = None) -> typer.Exit:
    """Say ``error`` on stderr, as plain text (a ``[local]`` or ``[redacted]`` in it is
    kept, never read as markup); exit ``code``, by default 2 for what the user must
    change and 1 for the rest."""
    err.print(Text.assemble(("error: ", "bold red"), str(error)), highlight=False)
    return typer.Exit(code if code is not None else 2 if isinstance(error, ConfigError) else 1)
