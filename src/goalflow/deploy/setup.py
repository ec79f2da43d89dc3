"""``goalflow setup``: what a Prefect server needs before goals run as deployments.

Idempotent, so CI can run it on every job: the work pools (process, Docker,
Kubernetes; see ``goalflow.deploy.work_pools``) are created when missing, goalflow's Block
types are registered, the shared rate limit each saved ``LLMProvider`` block names is
created or sized from its ``requests_per_minute``, and each automation defined in
``goalflow/deploy/automations`` (``*.yaml``, shipped in the package; each loads with
``prefect automation create -f``) is created, or updated in place when one of that name
exists (duplicates of the name are removed).

The automation that runs a deployment, ``goalflow-reflect-on-stall``, is that
deployment's trigger in ``prefect.yaml``: ``prefect deploy`` creates it with the
``reflect`` deployment. ``reflect_after`` changes its window on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from goalflow.orchestration.blocks import BLOCK_TYPES, LLMProvider
from goalflow.orchestration.shared_limit import ensure_global_limit
from goalflow.sandbox.config import SandboxConfig

__all__ = [
    "AUTOMATIONS_DIR",
    "REFLECT_ON_STALL",
    "TIME_BACKSTOP",
    "SetupReport",
    "load_automations",
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


def load_automations(
    directory: Path = AUTOMATIONS_DIR, *, time_backstop: float | None = None
) -> list[AutomationCore]:
    """The automation definitions; ``time_backstop`` replaces the ``within`` of the time
    backstop."""
    automations = []
    for path, data in _definitions(directory):
        try:
            if data["name"] == TIME_BACKSTOP and time_backstop is not None:
                data["trigger"]["within"] = time_backstop
            automations.append(AutomationCore.model_validate(data))
        except (KeyError, TypeError, ValidationError) as e:
            raise ConfigError(f"the automation definition {path} cannot be used: {e}") from e
    return automations


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
    automations = load_automations(time_backstop=time_backstop)
    k8s_template = load_template()
    report = SetupReport()
    try:
        async with get_client() as client:
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
            await _tune_reflect_trigger(client, report, reflect_after)
            await _ensure_shared_limits(client, report)
    except httpx.HTTPError as e:
        raise ConfigError(
            f"cannot set up the Prefect server at {api_url}: {type(e).__name__}: {e}. Start "
            "it (`goalflow server start`, or `prefect server start`) or fix PREFECT_API_URL"
        ) from e
    ready, line = await runner_image_status(SandboxConfig(), docker_image)
    report.lines.append(line if ready else f"warning: {line}")
    return report


async def _tune_reflect_trigger(
    client: PrefectClient, report: SetupReport, reflect_after: float | None
) -> None:
    """Check the reflect deployment's trigger is on the server; set its window if asked."""
    found = await client.read_automations_by_name(REFLECT_ON_STALL)
    if not found:
        report.lines.append(
            f"automation {REFLECT_ON_STALL!r} is missing: it is the reflect deployment's "
            "trigger, which `prefect --no-prompt deploy -n reflect` creates"
            + (", then run goalflow setup --reflect-after again" if reflect_after else "")
        )
        return
    automation = found[0]
    if reflect_after is None or getattr(automation.trigger, "within", None) == reflect_after:
        report.lines.append(f"automation {REFLECT_ON_STALL!r}: present (prefect deploy)")
        return
    trigger = automation.trigger.model_copy(update={"within": reflect_after})
    fields = set(AutomationCore.model_fields) - {"owner_resource"}  # not for an update
    core = AutomationCore.model_validate(
        automation.model_dump(include=fields) | {"trigger": trigger}
    )
    await client.update_automation(automation.id, core)
    report.lines.append(
        f"automation {REFLECT_ON_STALL!r}: updated (a goal is asked to reflect after "
        f"{reflect_after:g} s without progress)"
    )


async def _ensure_shared_limits(client: PrefectClient, report: SetupReport) -> None:
    """The shared rate limit each saved LLMProvider block names (one per endpoint),
    created or sized from the block's requests_per_minute."""
    documents = await client.read_block_documents_by_type(
        LLMProvider.get_block_type_slug(), include_secrets=False
    )
    for document in documents:
        name, data = document.name, document.data
        limit, rpm = data.get("shared_limit"), data.get("requests_per_minute")
        if not limit:
            continue
        if not rpm:
            report.lines.append(
                f"warning: LLMProvider block {name!r} names shared_limit {limit!r} but no "
                "requests_per_minute: set it on the block, then run goalflow setup again"
            )
            continue
        report.lines.append(f"{await ensure_global_limit(limit, int(rpm))} (block {name!r})")


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
