"""A goal run's outcome read back from the Prefect server: its final state and the
deliverables table it left (``goalflow result RUN_ID``), for whoever started it with
``prefect deployment run`` and has only the run's id."""

from __future__ import annotations

import json
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel

from goalflow.errors import ConfigError
from goalflow.orchestration.goal_run import DELIVERABLES_ARTIFACT

__all__ = ["RunOutcome", "run_outcome"]


class RunOutcome(BaseModel):
    """How a goal run ended, as the server keeps it."""

    flow_run_id: str
    name: str
    state: str
    message: str
    deliverables: dict[str, str]

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED"


async def run_outcome(flow_run_id: str) -> RunOutcome:
    """The state and deliverables of the goal run ``flow_run_id``; a ConfigError that
    says what to check when there is no such run."""
    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        raise ConfigError(
            f"{flow_run_id!r} is not a flow run id: give the UUID that `prefect deployment "
            "run` printed, or that the run's page in the UI shows"
        ) from None
    async with get_client() as client:
        try:
            run = await client.read_flow_run(run_id)
        except ObjectNotFound:
            raise ConfigError(
                f"the Prefect server at {client.api_url} has no flow run {flow_run_id}: "
                "check PREFECT_API_URL"
            ) from None
        tables = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                key=ArtifactFilterKey(any_=[DELIVERABLES_ARTIFACT]),
            ),
            limit=1,
        )
    rows = json.loads(str(tables[0].data)) if tables else []
    return RunOutcome(
        flow_run_id=flow_run_id,
        name=run.name,
        state=run.state.type.value if run.state else "UNKNOWN",
        message=(run.state.message or "") if run.state else "",
        deliverables={str(row["deliverable"]): str(row["value"]) for row in rows},
    )
