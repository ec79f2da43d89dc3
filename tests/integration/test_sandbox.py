"""The Docker sandbox's contract, against the real engine (``make docker`` starts it).

One class of behaviours any sandbox backend must have: files in and out, inputs as
variables and outputs printed (the code-task protocol), no network, a read-only system,
limits on processes, memory, time and output, an unprivileged process, and no container
left behind whatever happened, cancellation included.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Iterator

import pytest

from goalflow.core.protocol import input_variables
from goalflow.errors import SandboxUnavailableError
from goalflow.sandbox.config import SandboxConfig
from goalflow.sandbox.engine import LABEL, Sandbox, check

LIMITS = SandboxConfig(timeout=20, memory="128m", pids_limit=32, output_cap=4096)


def _leftovers() -> list[str]:
    """Sandbox containers and volumes on the engine, as the docker command sees them."""
    found = []
    for kind in ("ps -a", "volume ls"):
        listed = subprocess.run(
            ["docker", *kind.split(), "-q", "--filter", f"label={LABEL}"],
            capture_output=True,
            text=True,
            check=True,
        )
        found += listed.stdout.split()
    return found


@pytest.fixture(scope="module", autouse=True)
async def engine() -> None:
    status = await check(LIMITS)
    assert status.ready, status.message  # a failure here says how to fix the engine


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    assert not _leftovers(), "a previous run left sandbox containers or volumes"
    yield
    assert not _leftovers(), "this run left sandbox containers or volumes behind"


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


class TestDockerSandbox:
    async def test_output_files_come_back_and_a_missing_one_is_reported(
        self, sandbox: Sandbox
    ) -> None:
        program = "open('report.txt', 'w').write('done')\nprint('hello')\n"

        result = await sandbox.run(program, {}, ["report.txt", "summary.txt"])

        assert result.exit_code == 0 and result.stdout == "hello\n"
        assert result.outputs == {"report.txt": b"done"}
        assert result.missing == ["summary.txt"]
        assert result.failure == (
            'it did not hand back summary.txt: print one JSON object with the keys "report.txt", '
            '"summary.txt"'
        )

    async def test_inputs_are_variables_and_one_output_is_what_the_program_prints(
        self, sandbox: Sandbox
    ) -> None:
        files = {"numbers": b"4 8 15 16 23 42", "prices.csv": "item,price\nth\u00e9,3\n".encode()}
        program = (
            "print(sum(int(x) for x in numbers.split()))\n"
            "assert prices_csv == open('prices.csv', encoding='utf-8').read()\n"
        )

        result = await sandbox.run(program, files, ["total"], variables=input_variables(files))

        assert result.failure is None, result.stderr
        assert result.outputs == {"total": b"108"} and result.missing == []

    async def test_several_outputs_come_back_as_the_json_object_printed_last(
        self, sandbox: Sandbox
    ) -> None:
        program = (
            "import json\n"
            "values = sorted(int(x) for x in numbers.split())\n"
            "print('sorted', len(values), 'numbers')\n"
            "print(json.dumps({'low': values[0], 'high': values[-1], 'word': 'caf\u00e9'}))\n"
        )
        files = {"numbers": b"15 4 42 8"}

        result = await sandbox.run(
            program, files, ["low", "high", "word"], variables=input_variables(files)
        )

        assert result.failure is None, result.stderr
        assert result.outputs == {"low": b"4", "high": b"42", "word": "caf\u00e9".encode()}

    async def test_a_program_that_prints_nothing_is_told_which_output_is_missing(
        self, sandbox: Sandbox
    ) -> None:
        result = await sandbox.run("answer = 108\n", {}, ["total"])

        assert result.exit_code == 0 and result.missing == ["total"]
        assert result.failure == "it printed nothing: print the value of total"

    async def test_a_program_that_prints_nothing_hands_back_its_output_variable(
        self, sandbox: Sandbox
    ) -> None:
        result = await sandbox.run("total = 100 + 8\n", {}, ["total"])

        assert result.failure is None and result.outputs == {"total": b"108"}

    async def test_ten_megabytes_printed_as_the_output_are_capped_and_reported(
        self, sandbox: Sandbox
    ) -> None:
        program = "import sys\nfor _ in range(10):\n    sys.stdout.write('7' * (1 << 20))\n"

        result = await sandbox.run(program, {}, ["total"])

        assert result.exit_code == 0 and result.truncated
        assert result.outputs == {} and result.missing == ["total"]
        assert result.failure == (
            f"it printed 10485760 bytes, more than the {LIMITS.output_cap} the sandbox keeps, "
            "so total would arrive cut short: print only the result"
        )

    async def test_a_traceback_shows_the_program_s_own_lines(self, sandbox: Sandbox) -> None:
        files = {"numbers": b"4 8"}
        program = "import sys\nprint('reading', file=sys.stderr)\ntotal = int(numbers)\n"

        result = await sandbox.run(program, files, ["total"], variables=input_variables(files))

        assert result.failure == (
            "it exited with code 1 (ValueError: invalid literal for int() with base 10: '4 8')"
        )
        assert result.stderr.splitlines()[:4] == [
            "reading",
            "Traceback (most recent call last):",
            '  File "/work/.program.py", line 3, in <module>',
            "    total = int(numbers)",
        ]
        assert result.stderr.endswith("ValueError: invalid literal for int() with base 10: '4 8'\n")

    async def test_inputs_arrive_intact_text_and_binary(self, sandbox: Sandbox) -> None:
        text = "naïve café, 東京\nline two\n".encode()
        binary = bytes(range(256)) * 64
        program = (
            "import hashlib\n"
            "for name in ('notes.txt', 'blob.bin'):\n"
            "    data = open(name, 'rb').read()\n"
            "    open(name + '.sha', 'w').write(hashlib.sha256(data).hexdigest())\n"
            "open('copy.bin', 'wb').write(open('blob.bin', 'rb').read())\n"
        )

        result = await sandbox.run(
            program,
            {"notes.txt": text, "blob.bin": binary},
            ["notes.txt.sha", "blob.bin.sha", "copy.bin"],
        )

        assert result.failure is None, result.stderr
        assert result.outputs["notes.txt.sha"].decode() == hashlib.sha256(text).hexdigest()
        assert result.outputs["blob.bin.sha"].decode() == hashlib.sha256(binary).hexdigest()
        assert result.outputs["copy.bin"] == binary

    async def test_the_network_cannot_be_reached(self) -> None:
        # The host listens on the Docker bridge; a container with a network reaches it,
        # which shows the probe works, and the sandbox's container does not.
        gateway_of = (
            "import socket, struct\n"
            "for line in open('/proc/net/route').readlines()[1:]:\n"
            "    f = line.split()\n"
            "    if f[1] == '00000000':\n"
            "        print(socket.inet_ntoa(struct.pack('<L', int(f[2], 16))))\n"
        )
        networked = Sandbox(SandboxConfig(timeout=20, network=True))
        gateway = (await networked.run(gateway_of, {}, [])).stdout.strip()
        assert gateway, "a container with a network has a default route"
        server = await asyncio.start_server(lambda r, w: w.close(), gateway, 0)
        port = server.sockets[0].getsockname()[1]
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(({gateway!r}, {port}), timeout=5).close()\n"
            "    print('connected')\n"
            "except OSError as e:\n"
            "    print('refused:', e)\n"
            "print(sorted(n for _, n in socket.if_nameindex()))\n"
        )
        async with server:
            control = await networked.run(probe, {}, [])
            closed = await Sandbox(LIMITS).run(probe, {}, [])

        assert control.stdout.startswith("connected"), control.stdout + control.stderr
        assert closed.stdout.startswith("refused: [Errno 101] Network is unreachable")
        assert closed.stdout.endswith("['lo']\n")  # no interface but loopback

    async def test_writing_outside_the_working_directory_fails(self, sandbox: Sandbox) -> None:
        program = (
            "for path in ['/etc/x', '/usr/x', '/root/x', '/var/tmp/x', '/x', '/home/x',\n"
            "             '/work/ok', '/tmp/scratch']:\n"
            "    try:\n"
            "        open(path, 'w').write('x')\n"
            "        print(path, 'written')\n"
            "    except OSError as e:\n"
            "        print(path, e.strerror)\n"
        )

        result = await sandbox.run(program, {}, [])

        lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
        outside = {p: r for p, r in lines.items() if p not in ("/work/ok", "/tmp/scratch")}
        assert len(outside) == 6
        assert set(outside.values()) <= {"Read-only file system", "Permission denied"}
        assert lines["/work/ok"] == "written" and lines["/tmp/scratch"] == "written"

    async def test_forking_stops_at_the_pids_limit(self, sandbox: Sandbox) -> None:
        program = (
            "import errno, os, time\n"
            "children = 0\n"
            "while True:\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError as e:\n"
            "        print(children, errno.errorcode[e.errno])\n"
            "        break\n"
            "    if pid == 0:\n"
            "        os.close(1); os.close(2); time.sleep(60); os._exit(0)\n"
            "    children += 1\n"
        )

        result = await sandbox.run(program, {}, [])

        children, error = result.stdout.split()
        assert error == "EAGAIN"
        assert 0 < int(children) < LIMITS.pids_limit

    async def test_a_fork_bomb_is_contained_and_the_machine_stays_usable(self) -> None:
        bomb = (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
        )
        sandbox = Sandbox(SandboxConfig(timeout=6, pids_limit=32))

        running = asyncio.create_task(sandbox.run(bomb, {}, []))
        await asyncio.sleep(3)  # the bomb is at its limit by now
        started = time.monotonic()
        for _ in range(10):
            await asyncio.to_thread(subprocess.run, ["true"], check=True)
        spawn_seconds = (time.monotonic() - started) / 10
        result = await running

        assert spawn_seconds < 0.5  # the host still starts processes at once
        assert result.timed_out and result.exit_code is None

    async def test_allocating_past_the_memory_limit_is_reported_as_oom(
        self, sandbox: Sandbox
    ) -> None:
        result = await sandbox.run("data = b'x' * (512 << 20)\nprint(len(data))", {}, [])

        assert result.oom_killed and not result.timed_out
        assert result.exit_code == 137
        assert result.failure == "it was killed for using more than its memory limit of 128m"

    async def test_a_plain_failure_is_not_reported_as_oom(self, sandbox: Sandbox) -> None:
        result = await sandbox.run("import sys\nsys.exit('bad input')", {}, [])

        assert result.exit_code == 1 and not result.oom_killed
        assert result.stderr == "bad input\n"
        assert result.failure == "it exited with code 1 (bad input)"

    async def test_an_endless_loop_is_killed_at_the_timeout(self) -> None:
        sandbox = Sandbox(SandboxConfig(timeout=2))
        started = time.monotonic()

        result = await sandbox.run("print('start', flush=True)\nwhile True: pass", {}, [])

        assert result.timed_out and result.exit_code is None and not result.oom_killed
        assert result.stdout == "start\n"  # what it printed before is kept
        assert result.failure == "it was stopped at the time limit of 2 s"
        assert 2 <= time.monotonic() - started < 10

    async def test_a_flood_of_output_is_capped(self, sandbox: Sandbox) -> None:
        program = "import sys\nfor _ in range(20_000):\n    sys.stdout.write('y' * 999 + '\\n')\n"

        result = await sandbox.run(program, {}, [])

        assert result.exit_code == 0 and result.truncated
        kept, note = result.stdout.rsplit("\n[", 1)
        assert kept == ("y" * 999 + "\n") * 4 + "y" * (4096 - 4000)
        assert note == "output truncated: 20000000 bytes in all, the first 4096 kept]"

    async def test_the_program_runs_unprivileged(self, sandbox: Sandbox) -> None:
        program = (
            "import os\n"
            "print(os.getuid(), os.getgid())\n"
            "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "for key in ('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs'):\n"
            "    print(key, status[key].strip())\n"
        )

        result = await sandbox.run(program, {}, [])

        assert result.stdout.splitlines() == [
            "65534 65534",
            "CapEff 0000000000000000",
            "CapPrm 0000000000000000",
            "CapBnd 0000000000000000",
            "NoNewPrivs 1",
        ]

    async def test_a_cancelled_run_leaves_nothing_behind(self, sandbox: Sandbox) -> None:
        running = asyncio.create_task(sandbox.run("import time\ntime.sleep(60)", {}, []))
        for _ in range(100):  # until its container exists
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(_leftovers):
                break
        assert await asyncio.to_thread(_leftovers), "the run never started a container"

        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    async def test_cancelling_while_the_container_is_created_leaves_nothing_behind(
        self, sandbox: Sandbox
    ) -> None:
        for delay in (0.0, 0.01, 0.03, 0.06):
            running = asyncio.create_task(sandbox.run("print(1)", {}, []))
            await asyncio.sleep(delay)
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            assert not _leftovers(), f"cancelled after {delay} s, a container stayed"

    async def test_a_missing_image_says_how_to_get_one(self) -> None:
        sandbox = Sandbox(SandboxConfig(image="goalflow-no-such-image:never"))

        with pytest.raises(SandboxUnavailableError, match="goalflow sandbox build"):
            await sandbox.run("print(1)", {}, [])
