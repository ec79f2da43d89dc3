"""What one sandboxed program run costs: create -> result -> removed.

Runs a small program (read one input file, write one output file) through goalflow's
Docker sandbox ``--runs`` times, one after another, and times each whole run: creating
the container, copying the files in, running the program, reading the output back and
removing the container and its volume. For scale it also times a plain
``docker run --rm --network none IMAGE python3 -c pass`` (the docker command, no files,
no limits) and reports the program's own run time inside the sandbox. Prints a table,
then one JSON line. Needs the engine and the image (``make docker``).

    .venv/bin/python benchmarks/sandbox.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
from typing import Any

from goalflow.sandbox.config import SandboxConfig
from goalflow.sandbox.engine import Sandbox, check

PROGRAM = "open('total', 'w').write(str(sum(int(x) for x in open('numbers').read().split())))"
FILES = {"numbers": " ".join(str(n) for n in range(1000)).encode()}


def _summary(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(ordered[max(0, round(0.9 * len(ordered)) - 1)], 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
    }


async def bench_sandbox(config: SandboxConfig, runs: int) -> tuple[list[float], list[float]]:
    """Whole-run and program-only seconds of ``runs`` sandboxed runs."""
    sandbox = Sandbox(config)
    await sandbox.run(PROGRAM, FILES, ["total"])  # warm-up: first use of the image
    whole, program = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = await sandbox.run(PROGRAM, FILES, ["total"])
        whole.append(time.perf_counter() - started)
        program.append(result.seconds)
        assert result.outputs == {"total": b"499500"}, result
    return whole, program


def bench_docker_run(image: str, runs: int) -> list[float]:
    plain = []
    for _ in range(runs):
        started = time.perf_counter()
        command = ["docker", "run", "--rm", "--network", "none", image, "python3", "-c", "pass"]
        subprocess.run(command, check=True)
        plain.append(time.perf_counter() - started)
    return plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    config = SandboxConfig()
    status = asyncio.run(check(config))
    if not status.ready:
        raise SystemExit(status.message)
    whole, program = asyncio.run(bench_sandbox(config, runs))
    plain = bench_docker_run(config.image, runs)
    report: dict[str, Any] = {
        "engine": status.message,
        "runs": runs,
        "rows": {
            "sandboxed run (create -> result -> removed)": _summary(whole),
            "  of which the program (exec, to exit)": _summary(program),
            "docker run --rm python3 -c pass (CLI)": _summary(plain),
        },
        "sandbox_vs_docker_run": round(statistics.median(whole) / statistics.median(plain), 2),
    }
    print(report["engine"])
    print(f"{'':46} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for label, row in report["rows"].items():
        print(
            f"{label:46} {row['median_s']:8.3f} {row['p90_s']:8.3f} "
            f"{row['min_s']:8.3f} {row['max_s']:8.3f}"
        )
    print(f"median sandboxed run / median docker run --rm: {report['sandbox_vs_docker_run']}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
