"""The scheduler runs a task graph with real asyncio timing and fake task bodies.

Each fake task sleeps for a set time and records when it started and ended, what it
was given, and how many tasks were running alongside it; the tests check the order
and overlap a user would see in the run's timeline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from goalflow.core.rules import priority_order
from goalflow.core.scheduler import GraphRun, TaskOutcome, TaskStatus, run_graph
from goalflow.core.task import TaskSpec
from goalflow.errors import ConfigError
from tests.helpers import spec

SHORT = 0.02


@dataclass
class FakeRunner:
    """A ``run_task`` whose tasks sleep, then return ``"<output> from <id>"`` values."""

    seconds: dict[str, float] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    leave_out: dict[str, str] = field(default_factory=dict)
    default_seconds: float = SHORT
    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    start_order: list[str] = field(default_factory=list)
    received: dict[str, dict[str, str]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    running: int = 0
    peak: int = 0
    started_event: dict[str, asyncio.Event] = field(default_factory=dict)

    def event(self, task_id: str) -> asyncio.Event:
        return self.started_event.setdefault(task_id, asyncio.Event())

    async def __call__(self, task: TaskSpec, inputs: dict[str, str]) -> dict[str, str]:
        self.started[task.id] = time.monotonic()
        self.start_order.append(task.id)
        self.received[task.id] = dict(inputs)
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.event(task.id).set()
        try:
            await asyncio.sleep(self.seconds.get(task.id, self.default_seconds))
        except asyncio.CancelledError:
            self.cancelled.add(task.id)
            raise
        finally:
            self.running -= 1
            self.ended[task.id] = time.monotonic()
        if task.id in self.fail:
            raise self.fail[task.id]
        return {
            name: f"{name} from {task.id}"
            for name in task.outputs
            if name != self.leave_out.get(task.id)
        }


def statuses(outcomes: dict[str, TaskOutcome]) -> dict[str, TaskStatus]:
    return {tid: outcome.status for tid, outcome in outcomes.items()}


async def test_a_consumer_starts_after_its_producers_and_gets_exactly_its_inputs() -> None:
    tasks = [
        spec("load", ["path"], ["rows"]),
        spec("units", [], ["unit"]),
        spec("slow", [], ["noise"]),
        spec("sum", ["rows", "unit", "scale"], ["total"]),
    ]
    runner = FakeRunner(seconds={"load": 0.05, "units": SHORT, "slow": 0.1})
    outcomes = await run_graph(
        tasks, {"path": "/data.csv", "scale": "2", "unused": "x"}, runner, concurrency=4
    )
    assert statuses(outcomes) == dict.fromkeys(["load", "units", "slow", "sum"], "completed")
    assert runner.started["sum"] >= runner.ended["load"]
    assert runner.started["sum"] >= runner.ended["units"]
    assert runner.received["load"] == {"path": "/data.csv"}
    assert runner.received["sum"] == {
        "rows": "rows from load",
        "unit": "unit from units",
        "scale": "2",
    }
    assert outcomes["sum"].outputs == {"total": "total from sum"}


async def test_ready_work_starts_at_once_without_waiting_for_a_level() -> None:
    # a is slow; b -> c is a fast, independent chain. c must not wait for a.
    tasks = [spec("a"), spec("b"), spec("c", ["b_out"])]
    runner = FakeRunner(seconds={"a": 0.3, "b": SHORT, "c": SHORT})
    outcomes = await run_graph(tasks, {}, runner, concurrency=3)
    assert statuses(outcomes) == {"a": "completed", "b": "completed", "c": "completed"}
    assert runner.started["c"] < runner.ended["a"]
    assert outcomes["c"].finished is not None and outcomes["a"].finished is not None
    assert outcomes["c"].finished < outcomes["a"].finished


async def test_never_more_tasks_at_once_than_the_concurrency_limit() -> None:
    tasks = [spec(f"t{i}") for i in range(10)]
    runner = FakeRunner()
    outcomes = await run_graph(tasks, {}, runner, concurrency=3)
    assert set(statuses(outcomes).values()) == {"completed"}
    assert runner.peak == 3


async def test_with_one_slot_ready_tasks_start_in_priority_order() -> None:
    tasks = [
        spec("alpha", value=2, effort=2),  # 1.0 per effort
        spec("beta", value=1, effort=1),  # 1.0, loses the tie on id to alpha
        spec("mid", value=3, effort=1),  # 3.0
        spec("zeta", value=1, effort=4),  # the longest path: critical
    ]
    runner = FakeRunner(default_seconds=0.005)
    await run_graph(tasks, {}, runner, concurrency=1)
    assert runner.start_order == ["zeta", "mid", "alpha", "beta"]
    assert runner.start_order == priority_order(tasks)
    assert runner.peak == 1


async def test_a_failure_skips_its_dependants_and_lets_independent_work_finish() -> None:
    tasks = [
        spec("fetch"),
        spec("parse", ["fetch_out"]),
        spec("report", ["parse_out"]),
        spec("other"),
        spec("other_report", ["other_out"]),
    ]
    runner = FakeRunner(fail={"fetch": RuntimeError("HTTP 503 from the source")})
    outcomes = await run_graph(tasks, {}, runner, concurrency=2)
    assert statuses(outcomes) == {
        "fetch": "failed",
        "parse": "skipped",
        "report": "skipped",
        "other": "completed",
        "other_report": "completed",
    }
    assert outcomes["fetch"].error == "HTTP 503 from the source"
    parse_reason = outcomes["parse"].error
    assert parse_reason is not None
    assert "'fetch'" in parse_reason and "failed" in parse_reason
    report_reason = outcomes["report"].error
    assert report_reason is not None and "failed" in report_reason
    assert set(runner.started) == {"fetch", "other", "other_report"}
    assert outcomes["other_report"].outputs == {
        "other_report_out": "other_report_out from other_report"
    }


async def test_a_task_whose_input_never_appears_is_skipped_not_left_pending() -> None:
    tasks = [spec("a"), spec("orphan", ["nobody_makes_this"])]
    runner = FakeRunner()
    outcomes = await run_graph(tasks, {}, runner, concurrency=2)
    assert statuses(outcomes) == {"a": "completed", "orphan": "skipped"}
    assert outcomes["orphan"].error == "not run: its inputs were never produced"
    assert "orphan" not in runner.started


async def test_a_transitive_skip_names_the_task_that_actually_failed() -> None:
    tasks = [spec("fetch"), spec("parse", ["fetch_out"]), spec("report", ["parse_out"])]
    runner = FakeRunner(fail={"fetch": RuntimeError("boom")})
    outcomes = await run_graph(tasks, {}, runner, concurrency=1)
    reason = outcomes["report"].error
    assert reason is not None
    assert "'fetch'" in reason
    assert "'parse', which failed" not in reason


async def test_an_exception_without_a_message_fails_the_task_with_its_type() -> None:
    runner = FakeRunner(fail={"a": TimeoutError()})
    outcomes = await run_graph([spec("a")], {}, runner, concurrency=1)
    assert outcomes["a"].status == "failed"
    assert outcomes["a"].error == "TimeoutError"


async def test_a_task_missing_a_declared_output_fails_naming_it() -> None:
    tasks = [spec("split", [], ["head", "tail"]), spec("use_tail", ["tail"])]
    runner = FakeRunner(leave_out={"split": "tail"})
    outcomes = await run_graph(tasks, {}, runner, concurrency=2)
    assert outcomes["split"].status == "failed"
    error = outcomes["split"].error
    assert error is not None
    assert "tail" in error and "head" not in error
    assert outcomes["use_tail"].status == "skipped"
    assert "use_tail" not in runner.started


async def test_cancelling_the_run_cancels_the_running_tasks() -> None:
    tasks = [spec("long_a"), spec("long_b"), spec("later", ["long_a_out"])]
    runner = FakeRunner(seconds={"long_a": 30, "long_b": 30})
    run = asyncio.ensure_future(run_graph(tasks, {}, runner, concurrency=2))
    await asyncio.wait_for(
        asyncio.gather(runner.event("long_a").wait(), runner.event("long_b").wait()), 1
    )
    cancelled_at = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert runner.cancelled == {"long_a", "long_b"}
    assert runner.running == 0
    assert max(runner.ended.values()) - cancelled_at < 0.5
    assert "later" not in runner.started


async def test_a_held_run_lets_the_running_tasks_finish_and_starts_no_other() -> None:
    tasks = [spec("running"), spec("next", ["running_out"]), spec("waiting")]
    runner = FakeRunner(seconds={"running": 0.2})
    graph = GraphRun(tasks, {}, runner, concurrency=1)
    run = asyncio.ensure_future(graph.run())
    await asyncio.wait_for(runner.event("running").wait(), 1)
    graph.hold("the money is spent")
    outcomes = await asyncio.wait_for(run, 2)

    assert statuses(outcomes) == {"running": "completed", "next": "skipped", "waiting": "skipped"}
    assert runner.start_order == ["running"]
    assert outcomes["next"].error == "not run: the money is spent"


async def test_on_change_reports_each_start_and_end_as_it_happens() -> None:
    seen: list[tuple[str, TaskStatus]] = []
    tasks = [spec("draft"), spec("review", ["draft_out"]), spec("publish", ["review_out"])]
    runner = FakeRunner(fail={"review": ValueError("too short")})
    outcomes = await run_graph(
        tasks,
        {},
        runner,
        concurrency=1,
        on_change=lambda outcome: seen.append((outcome.task_id, outcome.status)),
    )
    assert seen == [
        ("draft", "running"),
        ("draft", "completed"),
        ("review", "running"),
        ("review", "failed"),
        ("publish", "skipped"),
    ]
    assert outcomes["review"].error == "too short"


@pytest.mark.parametrize("concurrency", [0, -1])
async def test_a_concurrency_below_one_is_refused(concurrency: int) -> None:
    runner = FakeRunner()
    with pytest.raises(ConfigError, match=f"concurrency must be at least 1, got {concurrency}"):
        await run_graph([spec("a")], {}, runner, concurrency=concurrency)
    assert runner.started == {}


async def test_outcome_durations_match_the_time_each_task_took() -> None:
    tasks = [spec("quick"), spec("slow"), spec("after", ["quick_out"])]
    runner = FakeRunner(seconds={"quick": SHORT, "slow": 0.1, "after": SHORT})
    outcomes = await run_graph(tasks, {}, runner, concurrency=3)
    for tid, seconds in [("quick", SHORT), ("slow", 0.1), ("after", SHORT)]:
        outcome = outcomes[tid]
        assert outcome.duration is not None
        assert seconds - 0.002 <= outcome.duration < seconds + 0.1, (tid, outcome.duration)
        assert outcome.started is not None and outcome.started <= runner.started[tid]


async def test_a_skipped_task_has_no_duration() -> None:
    runner = FakeRunner(fail={"a": RuntimeError("no")})
    outcomes = await run_graph([spec("a"), spec("b", ["a_out"])], {}, runner, concurrency=1)
    assert outcomes["b"].status == "skipped"
    assert outcomes["b"].started is None
    assert outcomes["b"].duration is None
