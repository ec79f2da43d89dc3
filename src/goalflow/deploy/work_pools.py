"""goalflow's work pools: which exist, their base job templates, and how a job renders.

``goalflow setup`` creates each pool when missing: ``goalflow-process`` (a worker runs
each goal in a process), ``goalflow-docker`` (in a container of the runner image,
``goalflow image build``; prefect-docker's default template, the deployment sets the
image and network) and ``goalflow-k8s`` (a Kubernetes Job from
``goalflow/deploy/kubernetes-job-template.json``, updated in place when it changed).

``render_kubernetes_job`` fills that template the way Prefect's Kubernetes worker does
(variable defaults, then the deployment's job variables, then ``{{ placeholders }}``
replaced, then the run's environment put before the template's own ``env`` entries),
so a template can be checked without a cluster.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from prefect.utilities.templating import apply_values
from prefect.workers.base import BaseJobConfiguration

from goalflow.errors import ConfigError

__all__ = [
    "DOCKER_POOL",
    "K8S_POOL",
    "K8S_TEMPLATE",
    "PROCESS_POOL",
    "load_template",
    "render_kubernetes_job",
    "template_variables",
]

PROCESS_POOL = "goalflow-process"
DOCKER_POOL = "goalflow-docker"
K8S_POOL = "goalflow-k8s"
K8S_TEMPLATE = Path(__file__).resolve().parent / "kubernetes-job-template.json"  # in the package


def load_template(path: Path = K8S_TEMPLATE) -> dict[str, Any]:
    """A base job template file (``job_configuration`` and ``variables``)."""
    try:
        template: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"the base job template {path} cannot be read: {e}") from e
    if not {"job_configuration", "variables"} <= template.keys():
        raise ConfigError(
            f"{path} is no base job template: it needs job_configuration and variables"
        )
    return template


def template_variables(template: dict[str, Any]) -> set[str]:
    """The job variables a deployment may set on a pool with ``template``."""
    return set(template["variables"].get("properties", {}))


def render_kubernetes_job(
    template: dict[str, Any], job_variables: dict[str, Any], run_env: dict[str, str]
) -> dict[str, Any]:
    """The Job manifest a Kubernetes worker would submit for a flow run.

    ``run_env`` stands for what the worker adds to each run's environment
    (PREFECT_API_URL, PREFECT__FLOW_RUN_ID, ...) besides the ``env`` job variable.
    """
    unknown = set(job_variables) - template_variables(template)
    if unknown:
        raise ConfigError(f"job variables the template does not define: {sorted(unknown)}")
    values = BaseJobConfiguration._get_base_config_defaults(
        copy.deepcopy(template["variables"].get("properties", {}))
    )
    values.update(job_variables)
    configuration: dict[str, Any] = apply_values(
        copy.deepcopy(template["job_configuration"]), values
    )
    manifest: dict[str, Any] = configuration["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    env = {**run_env, **(configuration.get("env") or {})}
    own = container.get("env")
    listed = [{"name": k, "value": str(v)} for k, v in env.items()]
    container["env"] = [*listed, *own] if isinstance(own, list) else listed
    if not container.get("args"):
        container["args"] = ["prefect", "flow-run", "execute"]
    return manifest
