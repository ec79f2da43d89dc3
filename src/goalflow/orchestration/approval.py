"""A person approves, edits or rejects a plan before it runs.

:func:`review_plan` pauses the flow run it is called in (Prefect's in-process pause with
run input, so a run called directly, not by a worker, keeps its state and goes on in the
same process) and waits for a :class:`PlanDecision`: the form the Prefect UI shows
under *Resume*, and what ``goalflow approve`` sends through the API
(:func:`send_decision`).

- ``approve`` runs the plan as shown.
- ``edit`` runs the corrected plan in the ``plan`` field (JSON, the format that
  ``goalflow plan -o`` writes; the field starts out holding the plan shown). It is
  checked with the same rules as any plan.
- ``reject`` ends the run with :class:`PlanRejectedError`; ``note`` says why.

A decision that cannot be used (an edit that is not valid JSON or breaks the plan rules,
a changed plan sent with ``approve``) does not lose the run: it pauses again, with the
errors at the top of the form, until the time runs out. No usable decision within
``wait_seconds`` rejects the plan. That deadline is the gate's own: the pause on the
server lasts :data:`PAUSE_GRACE_SECONDS` longer, so that the run ends with goalflow's
message instead of Prefect's "paused and never resumed".

The gate is not tied to the first plan: pass ``subject`` (e.g. "revised plan") and a
``check`` with the rules the revision must meet to reuse it for revisions.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import apause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for
from pydantic import Field, ValidationError, create_model

from goalflow.core.plan import Plan
from goalflow.core.report import plan_markdown
from goalflow.core.rules import describe_validation_error
from goalflow.errors import ConfigError, PlanRejectedError

__all__ = [
    "PAUSE_GRACE_SECONDS",
    "POLL_SECONDS",
    "Approval",
    "Decision",
    "PlanDecision",
    "review_plan",
    "run_url",
    "send_decision",
    "waiting_plan",
]

Decision = Literal["approve", "edit", "reject"]
POLL_SECONDS = 1
PAUSE_GRACE_SECONDS = 30
_PLAN_HELP = (
    "For 'edit': the plan to run instead, as JSON (the format of `goalflow plan -o`). "
    "It starts out as the plan shown; change it here."
)
# The Prefect UI shows a string property with this format as a JSON editor.
_JSON_EDITOR: dict[str, Any] = {"format": "json-string"}

WaitCallback = Callable[[Plan, str, float, Sequence[str]], None]
"""Told each time the gate waits: the plan, the flow run id, seconds left, and why the
last decision could not be used (empty the first time)."""


class PlanDecision(RunInput):
    """A person's decision on a plan that waits for approval."""

    decision: Decision = Field(
        description="approve: run the plan as shown; edit: run the plan in the 'plan' "
        "field instead; reject: end the run."
    )
    plan: str = Field(default="", description=_PLAN_HELP, json_schema_extra=_JSON_EDITOR)
    note: str = Field(
        default="", description="Why; a rejection's note is shown in the run's final state."
    )


@dataclass(frozen=True)
class Approval:
    """An approved plan: the one shown, or the person's edit of it."""

    plan: Plan
    edited: bool
    note: str = ""


def run_url(flow_run_id: str | UUID) -> str | None:
    """The flow run's page in the Prefect UI, when a UI address is known."""
    return url_for("flow-run", obj_id=str(flow_run_id))


async def review_plan(
    plan: Plan,
    *,
    wait_seconds: float,
    subject: str = "plan",
    check: Callable[[Plan], list[str]] | None = None,
    on_wait: WaitCallback | None = None,
) -> Approval:
    """Pause the current flow run until a person approves or edits ``plan``.

    Raises :class:`PlanRejectedError` on a rejection or when no usable decision came
    within ``wait_seconds``. ``check`` lists the rules an edited plan breaks
    (default: :meth:`Plan.errors`).
    """
    run_id = flow_run.get_id()
    if not run_id:
        raise ConfigError(f"approving a {subject} pauses a Prefect flow run: call it in one")
    check = check or (lambda p: p.errors())
    logger = get_run_logger()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    shown = plan.model_dump_json(indent=2)
    problems: list[str] = []
    while (left := deadline - loop.time()) > 0:
        until = datetime.now(UTC) + timedelta(seconds=left)
        logger.info(
            "the %s waits for approval until %s UTC: Resume it in the UI (%s) or run "
            "`goalflow approve %s` [--plan FILE | --reject --note TEXT]",
            subject,
            f"{until:%H:%M:%S}",
            run_url(run_id) or "no UI address known",
            run_id,
        )
        if on_wait:
            on_wait(plan, run_id, left, problems)
        form = _form(shown, _description(plan, subject, problems, until))
        try:
            async with asyncio.timeout(left):
                answer = await apause_flow_run(
                    wait_for_input=form,
                    timeout=math.ceil(left) + PAUSE_GRACE_SECONDS,
                    poll_interval=POLL_SECONDS,
                )
        except (TimeoutError, FlowPauseTimeout):
            break
        except ValidationError as e:  # resumed without a usable form
            problems = describe_validation_error(e)
        else:
            judged = _judge(answer, plan, shown, subject, check)
            if isinstance(judged, Approval):
                logger.info("the %s was %s", subject, "edited" if judged.edited else "approved")
                return judged
            problems = judged
        logger.warning("the decision cannot be used, waiting again: %s", "; ".join(problems))
    raise PlanRejectedError(
        f"nobody approved the {subject} within {wait_seconds:g} s, so it was rejected",
        timed_out=True,
    )


def _form(shown: str, description: str) -> type[PlanDecision]:
    """The decision form for one pause: the plan field starts out as the plan shown."""
    form = create_model(
        "PlanDecision",
        __base__=PlanDecision,
        plan=(str, Field(default=shown, description=_PLAN_HELP, json_schema_extra=_JSON_EDITOR)),
    )
    form._description = description
    return form


def _description(plan: Plan, subject: str, problems: Sequence[str], until: datetime) -> str:
    lines = [
        f"**The {subject} waits for your decision.** With none by {until:%Y-%m-%d %H:%M} "
        "UTC it is rejected.\n",
        "- **approve** runs it as shown below.",
        "- **edit** runs the plan in the *plan* field instead: change the JSON there.",
        "- **reject** ends the run; say why in *note*.\n",
    ]
    if problems:
        lines += ["**Your last decision could not be used:**\n"]
        lines += [f"- {problem}" for problem in problems]
        lines.append("")
    lines.append(plan_markdown(plan))
    return "\n".join(lines)


def _judge(
    answer: PlanDecision,
    plan: Plan,
    shown: str,
    subject: str,
    check: Callable[[Plan], list[str]],
) -> Approval | list[str]:
    """The approval a decision makes, or what is wrong with it; raises on a rejection."""
    note = answer.note.strip()
    text = answer.plan.strip()
    if answer.decision == "reject":
        reason = f": {note}" if note else " (no reason given)"
        raise PlanRejectedError(f"the {subject} was rejected{reason}", note=note)
    if answer.decision == "approve":
        if text and text != shown.strip() and _parsed(text) != plan:
            return [
                "the plan was changed but the decision is 'approve': choose 'edit' to run "
                "the changed plan, or restore the plan shown"
            ]
        return Approval(plan=plan, edited=False, note=note)
    if not text:
        return ["'edit' needs the plan to run in the plan field, as JSON"]
    try:
        edited = Plan.model_validate_json(text)
    except ValidationError as e:
        return [
            f"the edited plan is not a valid goalflow plan: {line}"
            for line in describe_validation_error(e)
        ]
    # The run's goal stays the one it was started with.
    edited = edited.model_copy(update={"goal": plan.goal})
    errors = check(edited)
    if errors:
        return [f"the edited plan breaks the plan rules: {error}" for error in errors]
    return Approval(plan=edited, edited=True, note=note)


def _parsed(text: str) -> Plan | None:
    try:
        return Plan.model_validate_json(text)
    except ValidationError:
        return None


async def _waiting_run(flow_run_id: UUID) -> dict[str, str]:
    """The run input keys of a run that waits for a decision; a clear error otherwise."""
    async with get_client() as client:
        try:
            run = await client.read_flow_run(flow_run_id)
        except ObjectNotFound as e:
            raise ConfigError(
                f"the Prefect server at {client.api_url} has no flow run {flow_run_id}: "
                "check the id, and that PREFECT_API_URL names the server the run is on"
            ) from e
    state = run.state
    keyset = state.state_details.run_input_keyset if state else None
    if state is None or not state.is_paused() or not keyset:
        now = state.name if state else "no state"
        raise ConfigError(
            f"flow run {flow_run_id} ({run.name}) is not waiting for approval (it is {now}); "
            "only a run started with --approve (or approve=true) that is Paused can be approved"
        )
    return dict(keyset)


async def waiting_plan(flow_run_id: UUID) -> str:
    """The plan that ``flow_run_id`` waits to have approved, as JSON."""
    keyset = await _waiting_run(flow_run_id)
    async with get_client() as client:
        schema = await client.read_flow_run_input(flow_run_id, keyset["schema"])
    default = _schema_default(schema)
    if default is None:
        raise ConfigError(f"flow run {flow_run_id} waits for input, but not for a plan decision")
    return default


def _schema_default(schema: str) -> str | None:
    try:
        data = json.loads(schema)
        default = data["properties"]["plan"]["default"]
    except (ValueError, KeyError, TypeError):
        return None
    return default if isinstance(default, str) else None


async def send_decision(
    flow_run_id: UUID, decision: Decision, *, plan: Plan | None = None, note: str = ""
) -> None:
    """Resume a run that waits for approval with ``decision``, as the UI's form does."""
    await _waiting_run(flow_run_id)
    run_input = PlanDecision(
        decision=decision,
        plan=plan.model_dump_json(indent=2) if plan else "",
        note=note,
    ).model_dump()
    async with get_client() as client:
        response = await client.resume_flow_run(flow_run_id, run_input=run_input)
    if response.status != SetStateStatus.ACCEPT:
        reason = getattr(response.details, "reason", None) or response.status.value
        raise ConfigError(f"the Prefect server did not take the decision: {reason}")
