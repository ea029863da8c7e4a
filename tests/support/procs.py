"""Test helpers: real processes on 127.0.0.1, started by the tests (and by the performance
runs of tests/perf) and stopped by pid, and a small SSE client that records exactly what
came over the wire."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis, ServerNotFound, free_port
from broadcaster.generations.request import PROVIDERS
from tests.support import forkserver, starts

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """A child process of the test, with its log file."""

    name: str
    popen: subprocess.Popen[bytes] | forkserver.Forked
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        stop_all([self], sig, timeout)
        code = self.popen.returncode
        assert code is not None, f"{self.name} outlived its stop"
        return int(code)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@dataclass
class Deployment:
    """Front-ends and a worker on one Redis (the ``deployment`` fixture)."""

    redis_url: str
    frontends: list[Proc]
    worker: Proc


def run_in_group(
    args: list[str], timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)`` in a process group of its
    own: past ``timeout`` the whole group is killed (the servers a bench or a comparison
    started too, not only the command itself), then ``TimeoutExpired`` is raised."""
    with subprocess.Popen(
        args,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    ) as popen:
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.communicate()
            raise
    return subprocess.CompletedProcess(args, popen.returncode, out, err)


def spawn(
    name: str,
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    *,
    cwd: Path | None = None,
    program: str = sys.executable,
    fork: bool = False,
    inherit: bool = True,
) -> Proc:
    """``program`` (this Python) with ``args``, in ``cwd`` (``log_dir``), its output in
    ``log_dir``/``name``.log. ``fork``: from the test process's fork server when it can
    start it as a new interpreter would (tests/support/forkserver.py), skipping the
    imports; what measures a start does not ask for it. ``inherit=False``: ``env`` is its
    whole environment, not added to the test process's."""
    log_path = log_dir / f"{name}.log"
    full_env = {**(os.environ if inherit else {}), **env, "PYTHONUNBUFFERED": "1"}
    where = cwd or log_dir
    server = forkserver.for_start(program, args, full_env, where) if fork else None
    starts.record(name, args, forked=server is not None)
    if server is not None:
        log_path.write_bytes(b"")
        return Proc(name, server.start(args, full_env, where, log_path), log_path)
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(
            [program, *args],
            cwd=str(where),
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Proc(name, popen, log_path)


def run_python(
    args: list[str],
    timeout: float,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python args`` to its end, as ``run_in_group([sys.executable, *args], timeout,
    env=env, cwd=cwd)`` runs it (``env``, when given, is its whole environment; a session
    of its own, killed whole past ``timeout``; its output and errors captured apart), but
    forked from the test process's fork server when that starts it as a new interpreter
    would: a command line's run then costs milliseconds of CPU, not a second of imports."""
    full_env = dict(os.environ if env is None else env)
    where = cwd or Path.cwd()
    server = forkserver.for_start(sys.executable, args, full_env, where)
    starts.record("run", args, forked=server is not None)
    if server is None:
        return run_in_group([sys.executable, *args], timeout, env=full_env, cwd=cwd)
    with tempfile.TemporaryDirectory(prefix="broadcaster-run-") as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        forked = server.start(args, full_env, where, out, err_path=err, session=True)
        try:
            code = forked.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(forked.pid, signal.SIGKILL)
            forked.wait()
            raise
        text = (out.read_text(errors="replace"), err.read_text(errors="replace"))
    return subprocess.CompletedProcess([sys.executable, *args], code, *text)


def stop_all(procs: list[Proc], sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """``sig`` to every process still running, all at once (several stop in the time of
    one), then each waited for ``timeout`` s and killed if still there."""
    running = [p for p in procs if p.popen.poll() is None]
    for p in running:
        os.kill(p.pid, sig)
    for p in running:
        try:
            p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.popen.wait()


def wait_port(proc: Proc, timeout: float = 30) -> None:
    """Until ``proc.port`` takes a TCP connection: any server, whether or not it has
    ``/readyz``; ``RuntimeError`` with the end of its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.log_path.name} exited {proc.popen.returncode}:\n{proc.log()[-2000:]}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", proc.port or 0), 0.5),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.log_path.name}: port {proc.port} not open after {timeout} s")


def listening(port: int) -> int:
    """Sockets listening on ``port`` (IPv4): one per process of a ``reuse_port`` group."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def wait_listening(port: int, procs: list[Proc], timeout: float = 60) -> None:
    """Until every one of ``procs`` listens on ``port`` (sharing it): the first to answer
    says nothing of the others, which the kernel would not give connections to yet."""
    deadline = time.monotonic() + timeout
    while listening(port) < len(procs):
        for proc in procs:
            if not proc.alive():
                tail = proc.log()[-2000:]
                raise RuntimeError(f"{proc.log_path.name} exited {proc.popen.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{listening(port)} of {len(procs)} front-ends listen on {port}")
        time.sleep(0.1)


def start_frontend(
    redis_url: str, log_dir: Path, name: str = "frontend", env: dict[str, str] | None = None
) -> Proc:
    port = free_port()
    proc = spawn(
        name,
        ["-m", "broadcaster", "serve", "--port", str(port)],
        {"REDIS_URL": redis_url, "BROADCASTER_LOG_LEVEL": "info", **(env or {})},
        log_dir,
        fork=True,
    )
    proc.port = port
    try:
        wait_ready(proc)
    except BaseException:
        proc.stop(signal.SIGKILL)  # not left behind by the test that gave up on it
        raise
    return proc


def start_worker(
    redis_url: str, log_dir: Path, name: str = "worker", env: dict[str, str] | None = None
) -> Proc:
    proc = spawn(
        name,
        ["-m", "worker", "run"],
        {
            "REDIS_URL": redis_url,
            "WORKER_PROVIDER": "fake",
            "WORKER_FAKE_DELAY_MS": "5",
            **(env or {}),
        },
        log_dir,
        fork=True,
    )
    # A worker that serves agents imports their frameworks first (seconds of CPU): on two
    # busy cores that is well beyond what a plain worker takes, so allow a minute.
    deadline = time.monotonic() + 60
    while "provider" not in proc.log():
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop(signal.SIGKILL)  # not left behind by the test that gave up on it
            raise RuntimeError(f"worker did not start:\n{proc.log()}")
        time.sleep(0.05)
    return proc


def tool_worker_env(anthropic_url: str, root: Path) -> dict[str, str]:
    """A worker on a fake Anthropic API at ``anthropic_url`` that runs the test tools
    (``tests/support/worker_tools.py``), its runs and gate in ``root``, appending each
    event on its own (no merge window)."""
    return {
        "WORKER_PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "ANTHROPIC_API_KEY": "test",
        **tools_env(root),
    }


def tools_env(root: Path) -> dict[str, str]:
    """A worker's settings to run the test tools, their runs and gate in ``root``, each
    event appended on its own (no merge window)."""
    return {
        "WORKER_MERGE_MS": "0",
        "WORKER_TOOLS": "tests.support.worker_tools:TOOLS",
        "TOOL_RUNS_FILE": str(root / "runs.jsonl"),
        "TOOL_GATE_FILE": str(root / "gate"),
        "PYTHONPATH": str(ROOT),
    }


def advertise_providers(redis_url: str, providers: tuple[str, ...] = PROVIDERS) -> None:
    """Say in Redis, for an hour, that a worker serves ``providers``: what a worker that
    takes no job would say. For tests whose generations must stay queued (no worker
    runs), which the front-end would otherwise refuse for want of one."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        for provider in providers:
            client.set(keys.provider_key(provider), "1", ex=3600)
            client.hset(keys.PROVIDERS_SEEN_KEY, provider, int(time.time() * 1000))
    finally:
        client.close()


def own_redis(directory: Path) -> EmbeddedRedis:
    """A Redis server of the test's own (the caller stops it); fails, never skips, without
    one."""
    redis = EmbeddedRedis(directory, persistent=False)
    try:
        redis.start(reuse=False)
    except ServerNotFound as exc:
        pytest.fail(f"this test needs a Redis server: {exc}", pytrace=False)
    return redis


@contextlib.contextmanager
def redis_server(directory: Path, pin: bool = False) -> Iterator[EmbeddedRedis]:
    """A Redis of the caller's own in ``directory``, stopped on the way out; with ``pin``
    on a core of its own (``pinned``). For the performance runs: without a Redis server
    it raises ``ServerNotFound`` (``own_redis`` fails the test)."""
    server = EmbeddedRedis(directory, persistent=False)
    with pinned(pin):
        server.start(reuse=False)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def pinned(pin: bool) -> Iterator[None]:
    """With ``pin``: processes started inside run on CPU 0, everything started after on
    the other CPUs (affinity is inherited). Redis then has a core of its own, as on a
    machine of its own, and its CPU per event does not depend on how many front-end
    processes share its core; without it, on 2 cores, more front-ends mean more
    preemption and cache misses for Redis, which its CPU time shows."""
    if not pin:
        yield
        return
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin-redis needs at least 2 CPUs")
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus[1:]))


def wait_ready(proc: Proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(proc.url + "/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready in {timeout}s:\n{proc.log()}")


# --- SSE ---


@dataclass
class SSEEvent:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEResult:
    status: int
    headers: httpx.Headers
    raw: bytes = b""
    events: list[SSEEvent] = field(default_factory=list)
    retry: int | None = None
    comments: int = 0

    @property
    def ids(self) -> list[int]:
        return [int(e.id.split(".")[0]) for e in self.events if e.id is not None]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].data == "[DONE]"

    def typed(self) -> list[SSEEvent]:
        return [e for e in self.events if e.event is not None]


def parse_sse(raw: bytes) -> tuple[list[SSEEvent], int | None, int]:
    """Parse an SSE body the way a browser does (blank line dispatches)."""
    events: list[SSEEvent] = []
    retry = None
    comments = 0
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        eid = etype = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                eid = value
            elif name == "event":
                etype = value
            elif name == "data":
                data.append(value)
            elif name == "retry":
                retry = int(value)
        if data:
            events.append(SSEEvent(eid, etype, "\n".join(data)))
    return events, retry, comments


async def read_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    headers: dict[str, str] | None = None,
    started: Callable[[], object] | None = None,
) -> SSEResult:
    """Read an SSE response to its end (or until ``stop_after`` events arrived);
    ``started()`` is called once its first event with an id has arrived whole."""
    headers = {"accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    async with client.stream("GET", url, headers=headers) as resp:
        result = SSEResult(resp.status_code, resp.headers)
        if resp.status_code != 200:
            result.raw = await resp.aread()
            return result
        buf = bytearray()
        async for chunk in resp.aiter_raw():
            buf += chunk
            if started is not None and (at := buf.find(b"id: ")) >= 0 and b"\n\n" in buf[at:]:
                started()
                started = None
            if stop_after is not None and buf.count(b"\nid: ") + buf.startswith(b"id: ") >= (
                stop_after
            ):
                complete = bytes(buf[: buf.rfind(b"\n\n") + 2])
                events, _, _ = parse_sse(complete)
                if len([e for e in events if e.id]) >= stop_after:
                    buf = bytearray(complete)
                    break
        result.raw = bytes(buf)
    result.events, result.retry, result.comments = parse_sse(result.raw)
    return result


@contextlib.contextmanager
def processes(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()
