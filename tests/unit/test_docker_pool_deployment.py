"""The goal-docker deployment sets only job variables prefect-docker's worker knows,
with the values docs/scaling-out.md promises (no registry pull, host network, no socket)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect_docker.worker import DockerWorker

from goalflow.deploy.runner_image import DEFAULT_RUNNER_IMAGE, IMAGE_PROJECT_DIR
from goalflow.deploy.work_pools import DOCKER_POOL, template_variables

ROOT = Path(__file__).resolve().parents[2]


def _goal_docker() -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return dict(next(d for d in config["deployments"] if d["name"] == "goal-docker"))


def test_every_job_variable_of_goal_docker_is_one_the_docker_worker_takes() -> None:
    pool = _goal_docker()["work_pool"]

    assert pool["name"] == DOCKER_POOL
    template = DockerWorker.get_default_base_job_template()
    assert set(pool["job_variables"]) <= template_variables(template)


def test_goal_docker_runs_the_runner_image_without_the_docker_socket() -> None:
    deployment = _goal_docker()
    variables = deployment["work_pool"]["job_variables"]

    assert variables["image"] == DEFAULT_RUNNER_IMAGE
    assert variables["image_pull_policy"] == "Never" and variables["network_mode"] == "host"
    assert not [v for v in variables.get("volumes", []) if "docker.sock" in v]
    step = deployment["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == IMAGE_PROJECT_DIR  # where the image holds flows/
