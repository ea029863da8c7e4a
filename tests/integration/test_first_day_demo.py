"""The demo as a new user starts it, on real processes: a taken port stops it before it
starts anything; its embedded Redis listens on a known port (6379 unless taken, then a
free one, said and written to ``redis.url``); and the README's snippets run against it,
twice in a row."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broadcaster.core.settings import RedisSettings
from tests.support.ports import free_port
from tests.support.procs import ROOT, Proc, run_in_group, run_python, spawn, wait_ready

README = (ROOT / "README.md").read_text()


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROADCASTER_", "WORKER_", "REDIS_", "ANTHROPIC_", "OPENAI_"))
    }
    # Any free port for the embedded Redis unless a test names one (conftest's rule).
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "WORKER_FAKE_DELAY_MS": "1",
        "BROADCASTER_EMBEDDED_REDIS_PORT": "0",
        **extra,
    }


@contextmanager
def listening_on(port: int) -> Iterator[None]:
    """Another server on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        yield


@contextmanager
def demo(cwd: Path, port: int, **env: str) -> Iterator[Proc]:
    args = ["-m", "broadcaster", "demo", "--port", str(port)]
    proc = spawn("demo", args, _env(**env), cwd, fork=True)
    proc.port = port
    try:
        wait_ready(proc, 30)
        yield proc
    finally:
        code = proc.stop(signal.SIGTERM)
        assert code == 0, proc.log()


def test_a_taken_port_stops_the_demo_before_anything_starts(tmp_path: Path) -> None:
    port = free_port()
    with listening_on(port):
        done = run_python(
            ["-m", "broadcaster", "demo", "--port", str(port)], 60, env=_env(), cwd=tmp_path
        )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert f"broadcaster demo: port {port} on 127.0.0.1 is taken" in out
    assert "--port or BROADCASTER_PORT" in out
    assert "open http" not in out and "Redis" not in out and "worker" not in out, out
    assert not (tmp_path / ".broadcaster").exists(), "no Redis was started or joined"


def _snippets(redis_port: int, http_port: int) -> tuple[str, str, str]:
    """The README's job feed and Durable Streams lines (shell) and its Publisher block
    (Python), pointed at the test's ports."""
    job = "\n".join(line for line in README.splitlines() if re.search(r"^job=|\$job\b", line))
    durable = "\n".join(line for line in README.splitlines() if re.search(r"^path=|\$path\b", line))
    [publisher] = [
        b for b in re.findall(r"^```python\n(.*?)^```", README, re.S | re.M) if "Publisher" in b
    ]
    assert job.count("curl") == 2 and durable.count("curl") == 4 and "from_url" in publisher
    imports, _, body = publisher.partition("\nasync with")
    program = f"import asyncio\n{imports}\n\nasync def main():\n"
    program += textwrap.indent("async with" + body, "    ") + "\nasyncio.run(main())\n"

    def point(text: str) -> str:
        return text.replace(":8000", f":{http_port}").replace(":6379", f":{redis_port}")

    return point(job), point(durable), point(program)


def test_the_readme_snippets_run_twice_against_the_demo(tmp_path: Path) -> None:
    assert RedisSettings.model_fields["embedded_redis_port"].default == 6379
    assert 'Publisher.from_url("redis://localhost:6379/0")' in README
    redis_port, http_port = free_port(), free_port()
    job, durable, program = _snippets(redis_port, http_port)
    with demo(tmp_path, http_port, BROADCASTER_EMBEDDED_REDIS_PORT=str(redis_port)) as proc:
        url = f"redis://127.0.0.1:{redis_port}/0"
        assert f"started embedded Redis at {url}" in proc.log()
        assert (tmp_path / ".broadcaster" / "redis.url").read_text() == url + "\n"
        for _ in range(2):
            ran = run_in_group(["bash", "-ec", job], 60)
            assert ran.returncode == 0 and '"error"' not in ran.stdout, ran
            ran = run_in_group(["bash", "-ec", durable], 60)
            assert ran.returncode == 0, ran
            assert ran.stdout.rstrip().endswith('[{"pct":10},{"pct":20}]'), ran.stdout
            ran = run_in_group([sys.executable, "-c", program], 60, env=_env())
            assert ran.returncode == 0, ran


def test_a_taken_redis_port_is_said_and_its_url_written(tmp_path: Path) -> None:
    taken = free_port()
    with (
        listening_on(taken),
        demo(tmp_path, free_port(), BROADCASTER_EMBEDDED_REDIS_PORT=str(taken)) as proc,
    ):
        url = (tmp_path / ".broadcaster" / "redis.url").read_text().strip()
        assert url != f"redis://127.0.0.1:{taken}/0"
        assert f"port {taken} is taken (another Redis?): the embedded Redis listens on {url}" in (
            proc.log()
        )
    assert not (tmp_path / ".broadcaster" / "redis.url").exists(), "removed with its Redis"


pytestmark = pytest.mark.anyio


def _listening_on_every_interface(port: int) -> bool:
    """Whether a socket listens on 0.0.0.0:``port`` (IPv4)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(r[3] == "0A" and r[1] == f"00000000:{port:04X}" for r in rows)


def test_the_demo_listens_on_the_host_it_is_told_as_in_the_image(tmp_path: Path) -> None:
    """As the Dockerfile documents it: ``--host 0.0.0.0`` (a container's loopback is not
    the host's), said insecure without keys, refused without ``--insecure``; the example
    tools found in the working directory, where the image copies them."""
    app = tmp_path / "app"
    # What the image holds (COPY examples/ with .dockerignore): not the npm packages.
    shutil.copytree(
        ROOT / "examples",
        app / "examples",
        ignore=shutil.ignore_patterns("node_modules", "__pycache__"),
    )
    port = free_port()
    args = [sys.executable, "-m", "broadcaster", "demo", "--host", "0.0.0.0", "--port", str(port)]
    env = {k: v for k, v in _env().items() if k != "PYTHONPATH"}
    refused = run_in_group(args, 60, env=env, cwd=app)
    assert refused.returncode != 0
    assert "refusing to serve on 0.0.0.0" in refused.stderr and "--insecure" in refused.stderr
    proc = spawn("demo-image", [*args[1:], "--insecure"], env, app, cwd=app)
    proc.port = port
    try:
        wait_ready(proc, 30)
        assert _listening_on_every_interface(port)
        assert "INSECURE: serving on 0.0.0.0" in proc.log()
        assert "tools: examples.tools:TOOLS" in proc.log()
        assert f"demo: open http://127.0.0.1:{port}/ (listening on 0.0.0.0)" in proc.log()
    finally:
        assert proc.stop() == 0, proc.log()
