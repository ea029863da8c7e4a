"""Free ports that no other test process on this machine is about to take.

A test picks a port (the OS hands out a free one), then starts a server that binds it a
moment later: a front-end after a second or two of imports. With the suite split over
several processes (pytest-xdist), or two runs on one machine, two processes may be handed
the same free port in that moment, and one server fails to start. So every port handed
out is written, under a file lock, into a list shared by all the test processes on the
machine, and not handed out again for ``HOLD_SECONDS``. ``tests/conftest.py`` makes this
the suite's ``free_port`` (``broadcaster.core.embedded.free_port``, which the tests and
``EmbeddedRedis`` use).
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


def _os_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the OS says is free and no test process took in the last ``HOLD_SECONDS``."""
    with _registry() as taken:
        while str(port := _os_free_port()) in taken:
            pass
        taken[str(port)] = time.time()
    return port


def free_ports_in(low: int, high: int, n: int, also: int | None = None) -> list[int]:
    """``n`` free ports in ``low..high``, taken as ``free_port`` takes one; with ``also``,
    port + ``also`` is free and taken too (a Redis Cluster node's bus port)."""
    with _registry() as taken:
        ports: list[int] = []
        while len(ports) < n:
            p = random.randint(low, high)
            pair = [p] if also is None else [p, p + also]
            if any(str(q) in taken or q in ports or not _bindable(q) for q in pair):
                continue
            ports.append(p)
            taken.update((str(q), time.time()) for q in pair)
    return ports
