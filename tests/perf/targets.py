"""The servers a comparison runs (its targets), by name: the project's front-end (alone,
several on one port, several on ports of their own, another checkout's), the naive
design, the Node peer and the ceiling; each started and stopped by pid
(tests/support/procs.py) and its processes watched while it is measured (``Server``)."""

from __future__ import annotations

import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcaster.core.embedded import free_port
from tests.perf.ceiling import RelaySink
from tests.support.procs import ROOT, Proc, spawn, stop_all, wait_listening, wait_port

PERF = ROOT / "tests" / "perf"
TARGETS = ("project", "naive", "peer", "ceiling")
# Two front-end processes sharing one port (BROADCASTER_REUSE_PORT), where it matters.
MULTI = (*TARGETS, "project-x2")
# Separate front-ends, each on its own port, the viewers spread over them.
FRONTENDS = ("project", "project-fe2", "project-fe4")
BEFORE = "before"
"""The front-end of another checkout (``--before PATH``), run side by side."""
DS = "project-ds"
"""The project's front-end, its viewers reading each stream as a Durable Stream
(``GET /v1/stream/{id}?offset=-1&live=sse``) instead of its SSE route."""
BEFORE_DS = "before-ds"
"""``before``'s front-end, read as ``project-ds`` is."""
MUX = "project-mux"
"""The project's front-end, each of its viewers on a connection that follows many
streams (``GET /v1/events``, ``bench --follow``): its measured stream and a dashboard's
quiet ones."""
LINGER0 = "project-linger0"
"""The project's front-end with ``BROADCASTER_TOPIC_LINGER_SECONDS=0``: a stream is
unwatched as soon as its last reader leaves."""
TARGET_ENV = {LINGER0: {"BROADCASTER_TOPIC_LINGER_SECONDS": "0"}}
FLEET = "project-x8"
"""Eight front-end processes sharing one port (``BROADCASTER_REUSE_PORT``): 100,000 viewers
are 12,500 connections each, and 14,300 each once one is killed, under the 20,000 open
files a process may have here."""
HOLD_FLEET = "project-x16"
"""Sixteen front-end processes on one port: 250,000 viewers are 15,625 connections each,
under the 20,000 open files a process may have here (the hard limit, which a process
without ``CAP_SYS_RESOURCE`` cannot raise)."""
BEFORE_FLEET = "before-x8"
"""The same eight, of the ``--before`` checkout."""
CEILING_FLEET = "ceiling-x8"
"""Eight of the ceiling's processes on one port: the least any server could spend on the
same writes to the same 100,000 viewers, beside the same bench on the same two cores."""

ALL = tuple(
    dict.fromkeys(
        [
            *MULTI,
            *FRONTENDS,
            BEFORE,
            DS,
            LINGER0,
            BEFORE_DS,
            MUX,
            FLEET,
            HOLD_FLEET,
            BEFORE_FLEET,
            CEILING_FLEET,
        ]
    )
)
"""Every target (``--targets``'s default): each scenario runs the ones it lists."""


@dataclass
class Server:
    name: str
    procs: list[Proc]
    urls: list[str]
    sink: Any = None
    env: dict[str, str] = field(default_factory=dict)
    """The environment it was started with, besides the machine's."""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def died(self, spared: int | None = None) -> str:
        """'' while every process runs (but ``spared``, killed on purpose); else their exit
        codes and the end of their logs."""
        gone = [p for p in self.procs if not p.alive() and p.pid != spared]
        return "; ".join(f"exit {p.popen.returncode}: {p.log()[-1500:]!r}" for p in gone)

    def stop(self) -> None:
        stop_all(self.procs)


def start(  # noqa: PLR0917
    target: str,
    redis_url: str,
    logdir: Path,
    keepalive: float,
    before: Path | None = None,
    extra_env: dict[str, str] | None = None,
    *,
    fork: bool = False,
) -> Server:
    """``target``'s server(s), with ``extra_env`` for a front-end (the scenario's); with
    ``fork``, the project's front-ends forked from this process's fork server
    (``tests/support/forkserver.py``) where it can start them as a new interpreter would."""
    if target.startswith("project-fe") or target in (BEFORE, BEFORE_DS):
        return _start_frontends(
            target, redis_url, logdir, keepalive, before, fork=fork, extra_env=extra_env
        )
    port = free_port()
    sink = None
    copies = 1
    cwd = ROOT
    program = sys.executable
    if target.startswith(("project", "before-x")):
        env = {**_frontend_env(redis_url, keepalive), **(extra_env or {})}
        env |= TARGET_ENV.get(target, {})
        args = ["-m", "broadcaster", "serve", "--port", str(port)]
        if target.startswith(("project-x", "before-x")):
            copies = int(target.split("-x", 1)[1])
            env["BROADCASTER_REUSE_PORT"] = "true"
        if target.startswith("before-x"):  # the --before checkout's front-ends
            if before is None:
                raise RuntimeError(f"the {target!r} target needs --before PATH (a checkout)")
            cwd = before.resolve()
            env["PYTHONPATH"] = str(cwd)
    elif target == "naive":
        env = {}
        args = ["-m", "tests.perf.naive", str(port), redis_url]
    elif target == "peer":
        if not (PERF / "node_modules" / "resumable-stream").is_dir():
            raise RuntimeError("the peer needs its npm packages: npm ci --prefix tests/perf")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the peer needs node >= 20 on PATH")
        env = {}
        program = node
        args = [str(PERF / "peer.mjs"), str(port), redis_url]
    elif target.startswith("ceiling"):  # ``ceiling-xN``: N processes on one port
        copies = int(target.split("-x", 1)[1]) if "-x" in target else 1
        relays = [free_port() for _ in range(copies)]
        env = {}
        each = [
            ["-m", "tests.perf.ceiling", str(port), str(relay), str(keepalive)]
            + (["--reuse-port"] if copies > 1 else [])
            for relay in relays
        ]
        sink = RelaySink("127.0.0.1", *relays)
    else:
        raise ValueError(target)
    if not target.startswith("ceiling"):
        each = [args] * copies
    procs: list[Proc] = []
    try:
        for i, args in enumerate(each):
            name = f"{target}-{port}-{i}"
            procs.append(spawn(name, args, env, logdir, cwd=cwd, program=program, fork=fork))
            procs[-1].port = port
        for proc in procs:
            wait_port(proc)
        if copies > 1:
            wait_listening(port, procs)
    except Exception:
        stop_all(procs, signal.SIGKILL)
        raise
    return Server(target, procs, [f"http://127.0.0.1:{port}"], sink, env)


def _frontend_env(redis_url: str, keepalive: float) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "BROADCASTER_LOG_LEVEL": "warning",
        "BROADCASTER_MAX_CONNECTIONS": "20000",
        "BROADCASTER_MAX_VIEWERS_PER_STREAM": "20000",
        # the bench's viewers come from a handful of loopback addresses, not from people
        "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "BROADCASTER_KEEPALIVE_SECONDS": str(keepalive),
    }


def _start_frontends(
    target: str,
    redis_url: str,
    logdir: Path,
    keepalive: float,
    before: Path | None,
    *,
    fork: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``project-feN``: N front-ends, each on its own port; ``before``: one front-end of
    the checkout at ``before`` (same Python, its own code); each with the scenario's
    ``extra_env``, as ``project`` has it."""
    env = {**_frontend_env(redis_url, keepalive), **(extra_env or {})}
    cwd = ROOT
    count = 1
    if target in (BEFORE, BEFORE_DS):
        if before is None:
            raise RuntimeError("the 'before' target needs --before PATH (a checkout)")
        cwd = before.resolve()
        env["PYTHONPATH"] = str(cwd)
    else:
        count = int(target.removeprefix("project-fe"))
    procs: list[Proc] = []
    try:
        for i in range(count):
            port = free_port()
            args = ["-m", "broadcaster", "serve", "--port", str(port)]
            procs.append(spawn(f"{target}-{port}-{i}", args, env, logdir, cwd=cwd, fork=fork))
            procs[-1].port = port
            wait_port(procs[-1])
    except Exception:
        stop_all(procs, signal.SIGKILL)
        raise
    return Server(target, procs, [p.url for p in procs])
