"""The goal runner image: goalflow (this checkout) installed, for Docker work pools.

Built with no registry and no network inside the build: pip on this machine downloads
goalflow's dependencies as wheels from the configured package index (the same versions
as this environment, so the container's Prefect matches the worker's), and the engine
builds a two-stage Dockerfile from them on top of a base that has ``python3`` (3.11 or
later) with its ``venv`` module:

    deps stage:  base + /opt/goalflow venv + the dependency wheels   (cached while the
                                                                      pins do not change)
    final stage: base + that venv + goalflow's own wheel + flows/, deployments/

The default base is the sandbox image (``goalflow sandbox build``: Debian bookworm from
Debian packages). The image runs as ``nobody`` with its working directory at
``/opt/goalflow/project``, which is where the ``goal-docker`` deployment looks for its
entrypoint.
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from goalflow.errors import ConfigError, SandboxUnavailableError
from goalflow.sandbox.config import DEFAULT_IMAGE, SandboxConfig
from goalflow.sandbox.image import build_from_context, image_facts, run_in_image

__all__ = [
    "DEFAULT_RUNNER_IMAGE",
    "IMAGE_PROJECT_DIR",
    "PROJECT_ROOT",
    "RunnerImage",
    "build_runner_image",
    "missing_runner_image",
    "runner_image_status",
    "source_digest",
]

DEFAULT_RUNNER_IMAGE = "goalflow-runner:latest"

PROJECT_ROOT = Path(__file__).resolve().parents[3]
IMAGE_PROJECT_DIR = "/opt/goalflow/project"
PROJECT_FILES = ("flows", "deployments", "prefect.yaml")
SOURCE_LABEL = "goalflow.source"  # source_digest of the checkout an image was built from
# Prints the base's marker environment (PEP 508), as packaging computes it: pip on this
# machine evaluates markers for its own Python, so the base's are applied afterwards.
_PYTHON_PROBE = """import json, os, platform, sys, venv
i = sys.implementation
print(json.dumps({
    "implementation_name": i.name,
    "implementation_version": ".".join(map(str, i.version[:3])),
    "os_name": os.name, "platform_machine": platform.machine(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(), "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}))
sys.exit(0 if sys.version_info >= (3, 11) else 3)
"""

DOCKERFILE = f"""\
ARG BASE
FROM ${{BASE}} AS deps
COPY pip.whl requirements.txt constraints.txt /build/
COPY wheels /build/wheels
RUN python3 -m venv --without-pip /opt/goalflow \\
 && /opt/goalflow/bin/python /build/pip.whl/pip install --quiet --no-index --no-cache-dir \\
    --disable-pip-version-check --find-links /build/wheels \\
    -r /build/requirements.txt -c /build/constraints.txt

FROM ${{BASE}}
COPY --from=deps /opt/goalflow /opt/goalflow
COPY pip.whl /build/
COPY dist /build/dist
RUN /opt/goalflow/bin/python /build/pip.whl/pip install --quiet --no-index --no-cache-dir \\
    --disable-pip-version-check --no-deps /build/dist/*.whl \\
 && rm -rf /build
COPY project {IMAGE_PROJECT_DIR}
ENV PATH=/opt/goalflow/bin:/usr/local/bin:/usr/bin:/bin \\
    HOME=/tmp PREFECT_HOME=/tmp/.prefect LANG=C.UTF-8 PYTHONUNBUFFERED=1
LABEL goalflow.runner="1"
WORKDIR {IMAGE_PROJECT_DIR}
USER 65534:65534
CMD ["prefect", "version"]
ARG SOURCE
LABEL {SOURCE_LABEL}="${{SOURCE}}"
"""


@dataclass(frozen=True)
class RunnerImage:
    """What a build made."""

    tag: str
    image_id: str
    base: str
    python: str
    seconds: float


def missing_runner_image(image: str, where: str) -> str:
    """The message for a Docker pool whose image the engine does not have."""
    return (
        f"the goal runner image {image!r} is not on the Docker engine at {where}: build it "
        f"with `goalflow image build --tag {image}` on the worker's machine (or name an image "
        "the engine has in the deployment's job variable `image`)"
    )


async def runner_image_status(
    config: SandboxConfig, image: str, project: Path | None = None
) -> tuple[bool, str]:
    """Whether ``image`` is on ``config``'s engine (and, given a ``project`` checkout,
    built from its current sources), and a line saying so or how to fix it."""
    try:
        found = await asyncio.to_thread(image_facts, config, image)
    except SandboxUnavailableError as e:
        return False, f"cannot check the goal runner image {image!r}: {e}"
    if found is None:
        return False, missing_runner_image(image, config.where)
    built, labels = found
    current = None if project is None else await asyncio.to_thread(source_digest, project)
    if current is not None and labels.get(SOURCE_LABEL) != current:
        return False, (
            f"the goal runner image {image!r} was built from other sources than the "
            f"checkout at {project}: rebuild it with `goalflow image build --tag {image}`"
        )
    return True, f"goal runner image {image!r}: present ({built[:19]})"


def source_digest(project: Path) -> str:
    """A digest of what the image takes from ``project`` (code, flows, deployments)."""
    digest = hashlib.sha256()
    paths = [project / "pyproject.toml", project / "src", *(project / n for n in PROJECT_FILES)]
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            generated = any(p == "__pycache__" or p.endswith(".egg-info") for p in file.parts)
            if file.is_file() and not generated:
                digest.update(str(file.relative_to(project)).encode() + b"\0")
                digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


async def build_runner_image(
    config: SandboxConfig,
    *,
    base: str = DEFAULT_IMAGE,
    tag: str = DEFAULT_RUNNER_IMAGE,
    project: Path = PROJECT_ROOT,
    no_cache: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> RunnerImage:
    """Build the runner image ``tag`` from ``project`` on top of ``base``."""
    started = time.monotonic()
    if not (project / "pyproject.toml").is_file() or not (project / "flows").is_dir():
        raise ConfigError(
            f"{project} is not a goalflow checkout (no pyproject.toml and flows/): run "
            "`goalflow image build` from a source checkout, or pass --project DIR"
        )
    engine = config.model_copy(update={"image": base})
    if await asyncio.to_thread(image_facts, engine, base) is None:
        fix = (
            "build it with `sudo goalflow sandbox build`"
            if base == DEFAULT_IMAGE
            else "pull or import it first (the build itself reaches no registry)"
        )
        raise ConfigError(
            f"the base image {base!r} is not on the Docker engine at {config.where}: {fix}, "
            "or pass --base IMAGE with python3 (3.11 or later) and its venv module"
        )
    try:
        probed = await asyncio.to_thread(
            run_in_image, engine, base, ["python3", "-c", _PYTHON_PROBE]
        )
    except SandboxUnavailableError as e:
        raise ConfigError(
            f"the base image {base!r} cannot hold goalflow: it needs python3 3.11 or later "
            f"with the venv module ({e})"
        ) from e
    markers: dict[str, str] = json.loads(probed)
    python = markers["python_version"]
    folder = await asyncio.to_thread(tempfile.mkdtemp, prefix="goalflow-image-")
    context = Path(folder)
    try:
        say(f"wheels for Python {python} from the package index (pip)")
        await asyncio.to_thread(_prepare_context, context, project, markers, say)
        say(f"building {tag} on {base} at {config.where}")
        buildargs = {"BASE": base, "SOURCE": await asyncio.to_thread(source_digest, project)}
        built = await asyncio.to_thread(
            build_from_context,
            config,
            str(context),
            tag,
            buildargs=buildargs,
            no_cache=no_cache,
            say=say,
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, context, ignore_errors=True)
    return RunnerImage(tag, built, base, python, round(time.monotonic() - started, 1))


def _prepare_context(
    context: Path, project: Path, markers: dict[str, str], say: Callable[[str], None]
) -> None:
    python = markers["python_version"]
    dist, wheels = context / "dist", context / "wheels"
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = context / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(project / "src", source / "src", ignore=skip)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (project / name).is_file():
            shutil.copy2(project / name, source / name)
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source))
    shutil.rmtree(source)
    wheel = next(dist.glob("goalflow-*.whl"))
    requirements = _requirements(wheel)
    (context / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    same_python = python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    pins = _constraints(requirements, same_python)
    (context / "constraints.txt").write_text(pins, encoding="utf-8")
    cross = [] if same_python else ["--python-version", python, "--only-binary=:all:"]
    wanted = [*requirements, "pip"]
    for _ in range(5):  # each round adds what the base's markers need; a few suffice
        (context / "wanted.txt").write_text("\n".join(wanted) + "\n", encoding="utf-8")
        _pip(
            "download", "--quiet", "--dest", str(wheels), *cross,
            "-r", str(context / "wanted.txt"), "-c", str(context / "constraints.txt"),
        )  # fmt: skip
        wanted = _missing_for(wheels, requirements, markers)
        if not wanted:
            break
    if wanted:
        raise ConfigError(
            f"pip found no wheels for {', '.join(wanted)}, which Python {python} of the base "
            "image needs: pick a base whose Python matches this machine's"
        )
    pip_wheel = next(wheels.glob("pip-*.whl"))
    pip_wheel.rename(context / "pip.whl")
    say(f"{sum(1 for _ in wheels.iterdir())} wheels, {_megabytes(wheels):.0f} MB")
    target = context / "project"
    target.mkdir()
    for name in PROJECT_FILES:
        source = project / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, target / name)
    (context / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise ConfigError(
            f"`pip {args[0]}` failed (exit {done.returncode}) while preparing the image:\n"
            f"{tail}\nCheck that the package index pip uses here is reachable "
            "(`pip config list`)"
        )


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return list(metadata.get_all("Requires-Dist") or [])


def _requirements(wheel: Path) -> list[str]:
    """goalflow's own runtime requirements, from the wheel's metadata (no extras)."""
    return [r for r in _requires(wheel) if "extra ==" not in r]


def _missing_for(wheels: Path, roots: list[str], markers: dict[str, str]) -> list[str]:
    """Requirements the base's Python needs that no downloaded wheel satisfies by name
    (e.g. ``async-timeout; python_full_version < "3.11.3"`` on Debian's 3.11.2)."""
    have = {canonicalize_name(w.name.split("-")[0]): w for w in wheels.glob("*.whl")}
    missing: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    pending = [(Requirement(r), "") for r in roots]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({**markers, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in have:
            requirement.marker = None  # true for the base; pip would judge it for this Python
            missing[name] = str(requirement)
            continue
        for wanted_extra in ["", *sorted(requirement.extras)]:
            if (name, wanted_extra) in seen:
                continue
            seen.add((name, wanted_extra))
            for needed in _requires(have[name]):
                found = Requirement(needed)
                in_extra = found.marker is not None and "extra" in str(found.marker)
                if in_extra == bool(wanted_extra):
                    pending.append((found, wanted_extra))
    return sorted(missing.values())


def _constraints(requirements: list[str], same_python: bool) -> str:
    """Pins to this environment's versions of ``requirements`` and what they need (all of
    them for the same Python; Prefect's alone otherwise, whose wheels may differ)."""
    pins: dict[str, str] = {}
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: pip resolves it freely
        if "+" in dist.version:
            continue
        pins[name] = dist.version
        for needed in dist.requires or []:
            found = Requirement(needed)
            if found.marker is None or found.marker.evaluate({"extra": ""}):
                pending.append(found)
    if not same_python:
        pins = {k: v for k, v in pins.items() if k == "prefect"}
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.iterdir()) / 1e6
