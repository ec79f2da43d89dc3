"""Prefect Blocks: configuration saved on the Prefect server, editable in the UI."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from goalflow.budget import Price
from goalflow.llm import LLMConfig, StructuredMode
from goalflow.sandbox_run import DEFAULT_IMAGE, SandboxConfig

__all__ = ["DockerSandbox", "LLMProvider"]

_SIZE = r"^[1-9][0-9]*[bkmg]?$"


class LLMProvider(Block):
    """An OpenAI-compatible model endpoint: where it is, which model, what it costs."""

    _block_type_name = "goalflow LLM provider"
    _block_type_slug = "goalflow-llm-provider"
    _description = "An OpenAI-compatible endpoint, model and prices for goalflow."

    base_url: str | None = Field(
        default=None, description="Base URL of the endpoint; empty means OpenAI's."
    )
    api_key: SecretStr | None = Field(default=None, description="API key of the endpoint.")
    model: str = Field(default="gpt-4o-mini", description="Model to ask.")
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per million input/output tokens, by model; overrides goalflow's "
        "table and prices models it does not know.",
    )
    structured_mode: StructuredMode = Field(
        default="auto", description="json_schema, json_object with a schema, or auto."
    )
    timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for an answer.")
    max_retries: int = Field(
        default=4, ge=0, description="Retries on rate limits, server errors and timeouts."
    )

    def to_config(self, model: str | None = None) -> LLMConfig:
        return LLMConfig(
            model=model or self.model,
            base_url=self.base_url,
            api_key=self.api_key,
            prices=self.prices,
            structured_mode=self.structured_mode,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )


class DockerSandbox(Block):
    """Where and within which limits goalflow runs model-written programs (code tasks).

    Closed by default: no network, a read-only root, a non-root user with no
    capabilities, and limits on memory, CPU, processes, time and output.
    """

    _block_type_name = "goalflow Docker sandbox"
    _block_type_slug = "goalflow-docker-sandbox"
    _description = "The Docker engine, image and limits goalflow's code tasks run under."

    docker_host: str | None = Field(
        default=None,
        description="Docker engine URL (unix://, tcp://, ssh://); empty means DOCKER_HOST "
        "or the local socket.",
    )
    image: str = Field(
        default=DEFAULT_IMAGE,
        description="Image with python3 to run programs in; the default is built by "
        "`goalflow sandbox build`, any other (e.g. python:3.12-slim) must be on the engine.",
    )
    memory: str = Field(
        default="256m",
        pattern=_SIZE,
        description="Memory limit, e.g. 256m; swap is limited to the same, so none extra.",
    )
    cpus: float = Field(default=1.0, gt=0, description="CPUs a program may use, e.g. 0.5.")
    pids_limit: int = Field(
        default=64, ge=8, description="Most processes and threads at once (stops fork bombs)."
    )
    timeout: float = Field(
        default=60.0, gt=0, description="Seconds a program may run before it is killed."
    )
    output_cap: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Bytes of stdout and of stderr kept; the rest is counted and dropped.",
    )
    work_size: str = Field(
        default="64m",
        pattern=_SIZE,
        description="Size of the writable working directory and of /tmp (in memory).",
    )
    network: bool = Field(
        default=False, description="Give programs a network; off, they have none at all."
    )
    user: str = Field(
        default="65534:65534",
        description="uid:gid programs run as (65534 is 'nobody'); never root.",
    )

    def to_config(self) -> SandboxConfig:
        return SandboxConfig(
            docker_host=self.docker_host,
            image=self.image,
            memory=self.memory,
            cpus=self.cpus,
            pids_limit=self.pids_limit,
            timeout=self.timeout,
            output_cap=self.output_cap,
            work_size=self.work_size,
            network=self.network,
            user=self.user,
        )
