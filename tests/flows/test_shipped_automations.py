"""The automation definitions goalflow ships load with Prefect's own CLI, as a user who
reads them would try (`prefect automation create -f`), not only through `goalflow setup`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from goalflow.deploy.setup import AUTOMATIONS_DIR

PREFECT = Path(sys.executable).parent / "prefect"


@pytest.mark.parametrize("path", sorted(AUTOMATIONS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_each_shipped_automation_is_created_by_prefects_cli(
    path: Path, prefect_server: str
) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}

    def prefect(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PREFECT), "--no-prompt", *args], env=env, capture_output=True, text=True
        )

    created = prefect("automation", "create", "--from-file", str(path))

    assert created.returncode == 0, created.stdout + created.stderr
    ids = re.findall(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", created.stdout
    )
    assert len(ids) == 1, created.stdout
    shown = prefect("automation", "inspect", "--id", ids[0], "--yaml")
    name = yaml.safe_load(path.read_text(encoding="utf-8"))["name"]
    assert f"name: {name}" in shown.stdout
    # not left on the session's server, where it would act on other tests' runs
    assert prefect("automation", "delete", "--id", ids[0]).returncode == 0
