"""Preparing the runner image's wheels for the base image's Python, not this one's.

pip judges environment markers for the Python it runs on; the base's may differ (Debian
bookworm's 3.11.2 needs ``async-timeout`` where 3.11.7 does not), so what the base
needs beyond pip's answer is worked out from the wheels' metadata and the base's own
marker environment.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from goalflow.deploy.runner_image import _constraints, _missing_for, source_digest

BOOKWORM = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.2",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_release": "6.1.0",
    "platform_system": "Linux",
    "platform_version": "#1 SMP",
    "python_full_version": "3.11.2",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "sys_platform": "linux",
}


def _wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", metadata)


def test_a_requirement_only_the_base_python_needs_is_found(tmp_path: Path) -> None:
    _wheel(tmp_path, "app", "1.0", "redis>=5")
    _wheel(tmp_path, "redis", "5.0", 'async-timeout>=4.0.3; python_full_version < "3.11.3"')

    assert _missing_for(tmp_path, ["app"], BOOKWORM) == ["async-timeout>=4.0.3"]
    newer = BOOKWORM | {"python_full_version": "3.11.7"}
    assert _missing_for(tmp_path, ["app"], newer) == []


def test_extras_are_followed_and_other_extras_ignored(tmp_path: Path) -> None:
    _wheel(tmp_path, "app", "1.0", "uvicorn[standard]")
    _wheel(tmp_path, "uvicorn", "0.30", 'httptools; extra == "standard"', 'pytest; extra == "dev"')

    assert _missing_for(tmp_path, ["app"], BOOKWORM) == ["httptools"]


def test_pins_follow_this_environment_for_what_goalflow_needs() -> None:
    import prefect

    same = _constraints(["prefect>=3.9,<4"], same_python=True).splitlines()
    other = _constraints(["prefect>=3.9,<4"], same_python=False).splitlines()

    assert f"prefect=={prefect.__version__}" in same and len(same) > 20
    assert any(line.startswith("pydantic==") for line in same)  # prefect's own needs
    assert other == [f"prefect=={prefect.__version__}"]


def test_the_source_digest_follows_what_goes_into_the_image(tmp_path: Path) -> None:
    for name in ("src/goalflow/plan.py", "flows/goal.py", "tests/test_x.py", "pyproject.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    first = source_digest(tmp_path)

    (tmp_path / "tests/test_x.py").write_text("x = 2\n")
    assert source_digest(tmp_path) == first  # tests are not in the image
    (tmp_path / "src/goalflow/plan.py").write_text("x = 2\n")
    assert source_digest(tmp_path) != first
