"""Free ports that no other test process on this machine is about to take.

A test picks a port (the OS hands out a free one), then starts a server that binds it a
moment later: a front-end after a second or two of imports. With the suite split over
several processes (pytest-xdist), or two runs on one machine, two processes may be handed
the same free port in that moment, and one server fails to start. So every port handed
out is written, under a file lock, into a list shared by all the test processes on the
machine, and not handed out again for ``HOLD_SECONDS``. ``tests/conftest.py`` makes this
the suite's ``free_port`` (``broadcaster.core.embedded.free_port``, which the tests and
``EmbeddedRedis`` use).

The ports are picked outside the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), from which every outgoing connection on the
machine takes its local port: a port in it that was free when picked may be some client
socket's by the time the server binds it ("Address already in use").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HOLD_SECONDS = 300.0
"""How long a handed-out port stays taken: longer than any server takes to bind it, and
than a test (120 s at most) that stops a server and starts it again on its port."""

REGISTRY = Path(tempfile.gettempdir()) / f"broadcaster-test-ports-{os.getuid()}.json"


@contextlib.contextmanager
def _registry() -> Iterator[dict[str, float]]:
    """The ports handed out recently (port -> when), locked for the ``with`` block and
    written back at its end."""
    with open(REGISTRY.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                taken: dict[str, float] = json.loads(REGISTRY.read_text())
            except (OSError, ValueError):
                taken = {}
            now = time.time()
            taken = {p: t for p, t in taken.items() if now - t < HOLD_SECONDS}
            yield taken
            tmp = REGISTRY.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(taken))
            tmp.replace(REGISTRY)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


LOWEST = 10000
"""The lowest port handed out (below: well-known and registered services)."""


def _ephemeral() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (Linux's default
    when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _spans(also: int = 0) -> list[range]:
    """Where a port (and port + ``also``) may be picked: outside the ephemeral range."""
    low, high = _ephemeral()
    spans = [range(LOWEST, low - also), range(max(LOWEST, high + 1), 65536 - also)]
    spans = [s for s in spans if len(s) > 1000]
    if not spans:
        raise RuntimeError(
            f"the ephemeral port range {low}-{high} leaves no room for test servers' ports"
        )
    return spans


def _candidate(also: int = 0) -> int:
    spans = _spans(also)
    span = random.choices(spans, weights=[len(s) for s in spans])[0]
    return random.choice(span)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port that is free, outside the ephemeral range, and that no test process took in
    the last ``HOLD_SECONDS``."""
    return free_ports(1)[0]


def free_ports(n: int, also: int | None = None) -> list[int]:
    """``n`` ports taken as ``free_port`` takes one; with ``also``, port + ``also`` is free
    and taken too (a Redis Cluster node's bus port)."""
    with _registry() as taken:
        ports: list[int] = []
        while len(ports) < n:
            p = _candidate(also or 0)
            pair = [p] if also is None else [p, p + also]
            if any(str(q) in taken or q in ports or not _bindable(q) for q in pair):
                continue
            ports.append(p)
            taken.update((str(q), time.time()) for q in pair)
    return ports
