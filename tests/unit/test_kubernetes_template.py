"""The goal-k8s deployment's Job, rendered as Prefect's Kubernetes worker renders it and
loaded with the official ``kubernetes`` client's models: no cluster runs here, so what
can be checked without one is checked here.

A model round trip (manifest -> V1Job -> dict) drops any field Kubernetes does not know
and keeps the types the API expects, so comparing both ends catches a misspelled field
or a number rendered as a string; the models' own validation catches missing required
fields (a container's name, a secret reference's key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, V1Job, V1Namespace, V1ServiceAccount

from goalflow.deploy.work_pools import (
    K8S_POOL,
    load_template,
    render_kubernetes_job,
    template_variables,
)
from goalflow.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RUN_ENV = {
    "PREFECT_API_URL": "http://prefect-server.prefect.svc.cluster.local:4200/api",
    "PREFECT__FLOW_RUN_ID": "0b9a3a51-6f6f-4f7e-9d43-2b1b8c1a1c11",
}


def _deployment(name: str) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return next(d for d in config["deployments"] if d["name"] == name)


def _load(manifest: dict[str, Any], model: str) -> Any:
    class Response:
        data = json.dumps(manifest)

    return ApiClient().deserialize(Response(), model)


def _round_trip(manifest: dict[str, Any]) -> tuple[V1Job, dict[str, Any]]:
    job = _load(manifest, "V1Job")
    return job, ApiClient().sanitize_for_serialization(job)


def _goal_k8s_job() -> dict[str, Any]:
    variables = _deployment("goal-k8s")["work_pool"]["job_variables"]
    return render_kubernetes_job(load_template(), variables, RUN_ENV)


def test_every_job_variable_of_goal_k8s_is_a_variable_of_the_template() -> None:
    deployment = _deployment("goal-k8s")

    assert deployment["work_pool"]["name"] == K8S_POOL
    assert set(deployment["work_pool"]["job_variables"]) <= template_variables(load_template())


def test_the_goal_k8s_job_is_a_valid_kubernetes_job() -> None:
    manifest = _goal_k8s_job()

    job, loaded = _round_trip(manifest)

    assert loaded == manifest  # nothing unknown dropped, no type coerced
    pod = job.spec.template.spec
    assert job.kind == "Job" and job.metadata.namespace == "goalflow"
    assert pod.service_account_name == "goalflow-runner" and pod.restart_policy == "Never"
    assert pod.security_context.run_as_non_root is True
    (container,) = pod.containers
    assert container.image == "goalflow-runner:latest"
    assert container.args == ["prefect", "flow-run", "execute"]
    assert container.resources.requests == {"cpu": "500m", "memory": "512Mi"}
    assert container.resources.limits == {"cpu": "2", "memory": "2Gi"}
    assert container.security_context.read_only_root_filesystem is True


def test_the_api_key_comes_from_a_secret_and_never_as_a_literal() -> None:
    manifest = _goal_k8s_job()

    job, _ = _round_trip(manifest)

    env = {e.name: e for e in job.spec.template.spec.containers[0].env}
    key = env["OPENAI_API_KEY"]
    assert key.value is None
    assert key.value_from.secret_key_ref.name == "goalflow-llm"
    assert key.value_from.secret_key_ref.key == "api-key"
    # The worker's own variables and the deployment's env come before it, as values.
    assert env["PREFECT_API_URL"].value == RUN_ENV["PREFECT_API_URL"]
    assert env["GOALFLOW_SANDBOX"].value == "off"
    assert not [e for e in env.values() if "KEY" in e.name and e.value]


def test_job_variables_given_at_run_time_reach_the_job() -> None:
    variables = {
        "image": "registry.example/goalflow-runner:0.1.0",
        "namespace": "goals",
        "memory_limit": "4Gi",
        "api_key_secret": "team-llm",
        "env": {"OPENAI_BASE_URL": "https://llm.example/v1"},
    }

    job, loaded = _round_trip(render_kubernetes_job(load_template(), variables, RUN_ENV))

    container = job.spec.template.spec.containers[0]
    assert container.image == variables["image"] and job.metadata.namespace == "goals"
    assert container.resources.limits["memory"] == "4Gi"
    env = {e.name: e for e in container.env}
    assert env["OPENAI_API_KEY"].value_from.secret_key_ref.name == "team-llm"
    assert env["OPENAI_BASE_URL"].value == "https://llm.example/v1"
    assert loaded["spec"]["ttlSecondsAfterFinished"] == 3600  # an integer, as Kubernetes wants


def test_the_template_alone_renders_a_valid_job_from_its_defaults() -> None:
    manifest = render_kubernetes_job(load_template(), {}, RUN_ENV)

    _, loaded = _round_trip(manifest)

    assert loaded == manifest


def test_a_job_variable_the_template_lacks_is_refused() -> None:
    with pytest.raises(ConfigError, match="cpu_limits"):
        render_kubernetes_job(load_template(), {"cpu_limits": "2"}, RUN_ENV)


def test_the_cluster_objects_the_jobs_need_are_valid() -> None:
    documents = list(
        yaml.safe_load_all((ROOT / "deployments/kubernetes/runner.yaml").read_text("utf-8"))
    )
    models = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount"}

    loaded = [_load(d, models[d["kind"]]) for d in documents]

    assert [type(o) for o in loaded] == [V1Namespace, V1ServiceAccount]
    for document, model in zip(documents, loaded, strict=True):
        assert ApiClient().sanitize_for_serialization(model) == document
    assert (
        loaded[1].metadata.name
        == _deployment("goal-k8s")["work_pool"]["job_variables"]["service_account_name"]
    )
