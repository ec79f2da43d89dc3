"""The live view of ``goalflow run`` on a terminal: what it shows besides the counts."""

from __future__ import annotations

import io

from rich.console import Console

from goalflow.cli.progress import ProgressView


def test_the_live_view_shows_the_latest_step_as_plain_text() -> None:
    out = io.StringIO()
    view = ProgressView(Console(file=out, force_terminal=True, width=120))

    view.step("waiting 42 s for the rate limit (task [local] draft)")
    Console(file=out, width=120).print(view._render())

    shown = out.getvalue()
    assert "waiting 42 s for the rate limit (task [local] draft)" in shown  # no markup eaten
