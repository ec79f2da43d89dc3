"""``goalflow setup``: what a Prefect server needs before goals run as deployments.

Idempotent, so CI can run it on every job: the work pools (process, Docker,
Kubernetes; see ``goalflow.deploy.work_pools``) are created when missing, goalflow's Block
types are registered, and each automation defined in ``goalflow/deploy/automations``
(``*.yaml``, shipped in the package) is created, or updated in place when one of that
name exists (duplicates of the name are removed). An automation that runs a deployment
names it (``deployment: flow/name``, goalflow's own field); it is created once that
deployment exists, so run ``goalflow setup`` again after ``prefect deploy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import yaml
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound
from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type
from pydantic import ValidationError

from goalflow.deploy.runner_image import DEFAULT_RUNNER_IMAGE, runner_image_status
from goalflow.deploy.work_pools import DOCKER_POOL, K8S_POOL, load_template
from goalflow.errors import ConfigError
from goalflow.orchestration.blocks import BLOCK_TYPES
from goalflow.sandbox.config import SandboxConfig

__all__ = [
    "AUTOMATIONS_DIR",
    "REFLECT_ON_STALL",
    "TIME_BACKSTOP",
    "SetupReport",
    "load_automations",
    "named_deployments",
    "setup_server",
]

AUTOMATIONS_DIR = Path(__file__).resolve().parent / "automations"  # shipped in the package
TIME_BACKSTOP = "goalflow-time-backstop"
REFLECT_ON_STALL = "goalflow-reflect-on-stall"


@dataclass
class SetupReport:
    """What ``setup_server`` did, one line per object, for the CLI to print."""

    lines: list[str] = field(default_factory=list)


def _definitions(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    definitions = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"the automation definition {path} cannot be used: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"the automation definition {path} is not a YAML mapping")
        definitions.append((path, data))
    if not definitions:
        raise ConfigError(f"no automation definitions (*.yaml) in {directory}")
    return definitions


def named_deployments(directory: Path = AUTOMATIONS_DIR) -> list[str]:
    """The deployments (``flow/name``) that the automations run."""
    return sorted(
        {
            action["deployment"]
            for _, data in _definitions(directory)
            for action in data.get("actions", [])
            if isinstance(action, dict) and "deployment" in action
        }
    )


def load_automations(
    directory: Path = AUTOMATIONS_DIR,
    *,
    time_backstop: float | None = None,
    reflect_after: float | None = None,
    deployment_ids: Mapping[str, UUID] | None = None,
) -> list[AutomationCore]:
    """The automation definitions; ``time_backstop`` and ``reflect_after`` replace the
    ``within`` of the time backstop and of reflect-on-stall. An automation that runs a
    deployment missing from ``deployment_ids`` (``flow/name`` -> id) is left out."""
    automations = []
    for path, data in _definitions(directory):
        try:
            within = {TIME_BACKSTOP: time_backstop, REFLECT_ON_STALL: reflect_after}
            if within.get(data["name"]) is not None:
                data["trigger"]["within"] = within[data["name"]]
            if not _resolve_deployments(data, deployment_ids or {}):
                continue
            automations.append(AutomationCore.model_validate(data))
        except (KeyError, TypeError, ValidationError) as e:
            raise ConfigError(f"the automation definition {path} cannot be used: {e}") from e
    return automations


def _resolve_deployments(data: dict[str, Any], ids: Mapping[str, UUID]) -> bool:
    """Replace each action's ``deployment`` name by its id; False when one is unknown."""
    for action in data.get("actions", []):
        if isinstance(action, dict) and "deployment" in action:
            name = action.pop("deployment")
            if name not in ids:
                return False
            action["deployment_id"] = str(ids[name])
    return True


async def setup_server(
    *,
    work_pool: str,
    time_backstop: float | None = None,
    reflect_after: float | None = None,
    api_url: str,
    docker_image: str = DEFAULT_RUNNER_IMAGE,
) -> SetupReport:
    """Create or update the work pools, Block types and automations on the server.

    ``docker_image`` is looked for on the local Docker engine (DOCKER_HOST): a Docker
    worker there needs it, and its absence is reported with the command that builds it.
    """
    load_automations(time_backstop=time_backstop, reflect_after=reflect_after)  # check first
    k8s_template = load_template()
    report = SetupReport()
    try:
        async with get_client() as client:
            ids: dict[str, UUID] = {}
            for name in named_deployments():
                try:
                    ids[name] = (await client.read_deployment_by_name(name)).id
                except ObjectNotFound:
                    report.lines.append(
                        f"deployment {name!r} is missing: the automations that run it are "
                        "left out; deploy it (prefect --no-prompt deploy -n "
                        f"{name.split('/')[-1]}), then run goalflow setup again"
                    )
            automations = load_automations(
                time_backstop=time_backstop, reflect_after=reflect_after, deployment_ids=ids
            )
            await _ensure_pool(client, report, work_pool, "process")
            await _ensure_pool(client, report, DOCKER_POOL, "docker")
            await _ensure_pool(client, report, K8S_POOL, "kubernetes", k8s_template)
            for block_type in BLOCK_TYPES:
                await block_type.aregister_type_and_schema(client=client)
            names = ", ".join(b.get_block_type_slug() for b in BLOCK_TYPES)
            report.lines.append(f"block types registered: {names}")
            for automation in automations:
                existing = await client.read_automations_by_name(automation.name)
                for extra in existing[1:]:
                    await client.delete_automation(extra.id)
                if existing:
                    await client.update_automation(existing[0].id, automation)
                    report.lines.append(f"automation {automation.name!r}: updated")
                else:
                    await client.create_automation(automation)
                    report.lines.append(f"automation {automation.name!r}: created")
    except httpx.HTTPError as e:
        raise ConfigError(
            f"cannot set up the Prefect server at {api_url}: {type(e).__name__}: {e}. Start "
            "it (`goalflow server start`, or `prefect server start`) or fix PREFECT_API_URL"
        ) from e
    ready, line = await runner_image_status(SandboxConfig(), docker_image)
    report.lines.append(line if ready else f"warning: {line}")
    return report


async def _ensure_pool(
    client: PrefectClient,
    report: SetupReport,
    name: str,
    kind: str,
    template: dict[str, Any] | None = None,
) -> None:
    """Create pool ``name`` when missing; a given ``template`` is kept up to date."""
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        if template is None and kind != "process":
            template = await get_default_base_job_template_for_infrastructure_type(kind)
            if template is None:
                report.lines.append(
                    f"work pool {name!r} ({kind}): skipped, no template for {kind} workers "
                    f"here (pip install prefect-{kind})"
                )
                return
        create = WorkPoolCreate(name=name, type=kind, base_job_template=template or {})
        await client.create_work_pool(create)
        report.lines.append(f"work pool {name!r} ({kind}): created")
        return
    if template is not None and pool.base_job_template != template:
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
        report.lines.append(f"work pool {pool.name!r} ({pool.type}): template updated")
    else:
        report.lines.append(f"work pool {pool.name!r} ({pool.type}): exists")
