"""What ``goalflow run`` shows while a goal runs: a live table on a terminal, one line
per event elsewhere (CI logs)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from goalflow.core.budget import Ledger
from goalflow.core.plan import Plan
from goalflow.core.progress import Observer
from goalflow.core.scheduler import TaskOutcome

__all__ = ["ProgressView"]


class ProgressView(Observer):
    """A live table on a terminal; one line per event elsewhere (CI logs)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.states: dict[str, TaskOutcome] = {}
        self.ledger: Ledger | None = None
        self.max_seconds: float | None = None
        self.total = 0
        self.last_step = ""  # planning steps, settlements, waits for the rate limit
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(console=console, refresh_per_second=4, get_renderable=self._render)

    def __enter__(self) -> ProgressView:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.stop()

    def attach(self, ledger: Ledger, max_seconds: float | None) -> None:
        self.ledger, self.max_seconds = ledger, max_seconds

    def step(self, message: str) -> None:
        self.last_step = message
        self._say(message)

    def awaiting_approval(
        self, plan: Plan, flow_run_id: str, seconds_left: float, problems: Sequence[str]
    ) -> None:
        from goalflow.orchestration.approval import run_url

        lines = []
        if problems:
            lines += ["the decision could not be used:", *(f"  - {p}" for p in problems)]
        else:
            lines.append(f"plan: {plan.leaf_count()} tasks")
            for task in plan.walk():
                if not task.subtasks:
                    uses = f" <- {', '.join(task.inputs)}" if task.inputs else ""
                    lines.append(f"  {task.id}: {task.title}{uses} -> {', '.join(task.outputs)}")
        command = f"goalflow approve {flow_run_id}"
        url = run_url(flow_run_id)
        lines += [
            f"the plan waits for approval; with no decision within {seconds_left:.0f} s it is "
            "rejected",
            *([f"  in the UI: {url} (Resume)"] if url else []),
            f"  approve:   {command}",
            f"  edit:      {command} --show > plan.json; edit it; {command} --plan plan.json",
            f'  reject:    {command} --reject --note "why"',
        ]
        self.console.print("\n".join(lines), highlight=False, markup=False)

    def plan_ready(self, plan: Plan) -> None:
        self.total = sum(1 for _ in plan.walk())
        self._say(f"plan ready: {plan.leaf_count()} tasks")

    def task_changed(self, path: str, outcome: TaskOutcome) -> None:
        self.states[path] = outcome
        detail = f" ({outcome.error})" if outcome.error else ""
        status = "cached" if outcome.cached else outcome.status
        self._say(f"{status:>9}  {path}: {outcome.title}{detail}")

    def _say(self, line: str) -> None:
        if self.live:
            self.live.refresh()
        else:
            self.console.print(line, highlight=False, markup=False)

    def _render(self) -> Table:
        counts = Counter("cached" if o.cached else o.status for o in self.states.values())
        counts["pending"] += self.total - len(self.states)
        table = Table.grid(padding=(0, 2))
        summary = "  ".join(
            f"{s}: {counts[s]}"
            for s in ("pending", "running", "completed", "cached", "failed", "skipped", "cancelled")
            if counts[s] or s != "cached"
        )
        usage = self.ledger.summary() if self.ledger else None
        spend = ""
        if usage:
            spend = f"tokens: {usage.prompt_tokens}+{usage.completion_tokens}  "
            spend += f"cost: ${usage.cost_usd:.4f}"
            if usage.limit_usd:
                spend += f" of ${usage.limit_usd:g}"
        elapsed = time.monotonic() - self.started
        clock = f"elapsed: {elapsed:.0f} s"
        if self.max_seconds is not None:
            clock += f"  time left: {max(0.0, self.max_seconds - elapsed):.0f} s"
        table.add_row(f"{summary}  {spend}  {clock}")
        if self.last_step:
            table.add_row(Text(f"  {self.last_step}"))  # plain text, never rich markup
        for path, outcome in self.states.items():
            if outcome.status == "running":
                table.add_row(f"  ▶ {path}: {outcome.title}")
        return table
