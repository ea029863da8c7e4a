"""Measuring processes under load: RSS sampled over time, open file descriptors, Redis
client connections, Prometheus figures, and latency percentiles. Used by the slow-viewer
and churn scenarios (tests/test_slow_viewer.py, tests/test_churn.py, tests/soak.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import redis as redis_sync


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (sockets included)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def redis_clients(client: redis_sync.Redis) -> int:
    """Connections the Redis server has open, this one included."""
    return len(client.client_list())


def metric(base_url: str, name: str) -> float:
    """One unlabelled figure from a front-end's ``/metrics``."""
    return sample(httpx.get(base_url + "/metrics", timeout=10).text, name)


def sample(exposition: str, name: str, labels: str = "") -> float:
    """One sample of a ``/metrics`` exposition: ``name`` with ``labels`` (``a="b"``, in
    the exposition's order; none for an unlabelled one)."""
    for line in exposition.splitlines():
        if line.startswith(f"{name}{labels} ") or line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} not in /metrics:\n{exposition[:2000]}")


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 and max of ``values`` (which must not be empty)."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2], ordered[min(n - 1, int(n * 0.99))], ordered[-1]


class RssCurve:
    """Samples the RSS of named processes every ``interval`` seconds, in a thread (the
    test's event loop may be busy), from ``start()`` until ``stop()``."""

    def __init__(self, pids: dict[str, int], interval: float = 2.0) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._start = time.monotonic()

    def start(self) -> RssCurve:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def run(self) -> None:
        while True:
            self.sample()
            if self._halt.wait(self.interval):
                return

    def sample(self) -> None:
        now = time.monotonic() - self._start
        sizes = {}
        for name, pid in self.pids.items():
            try:
                sizes[name] = rss_kb(pid)
            except (OSError, RuntimeError):
                sizes[name] = 0  # gone
        self.samples.append((now, sizes))

    def stop(self) -> None:
        self._halt.set()
        self._thread.join()
        self.sample()

    def peak_mb(self, name: str) -> float:
        return max(s[name] for _, s in self.samples) / 1024

    def table(self) -> str:
        """The curve in MB, one line per sample, for the report."""
        names = list(self.pids)
        lines = ["t_s " + " ".join(names)]
        for t, sizes in self.samples:
            lines.append(f"{t:5.0f} " + " ".join(f"{sizes[n] / 1024:.1f}" for n in names))
        return "\n".join(lines)
