"""The run's timeline (``Sampler``: viewers connected, events delivered, the front-ends'
memory, twice a second) and its progress on stderr (``say``)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from broadcaster.bench.groups import Groups
from broadcaster.bench.plan import Plan
from broadcaster.bench.probes import listen_overflows, listen_queue, proc_cpu_seconds, proc_rss_kb

SAMPLE_EVERY = 0.5
"""Seconds between two samples of the timeline (``--plot``, and progress on stderr)."""


class Sampler:
    """The run's timeline, every ``SAMPLE_EVERY`` s from the first viewer's start: viewers
    connected and away, frames received (the viewer processes' latest progress), each
    front-end's RSS; a progress line on stderr every ``--progress`` seconds."""

    def __init__(self, plan: Plan, progress: float) -> None:
        self.phases: list[Groups] = []
        self._pids = plan.pids
        self._target = plan.viewers + len(plan.quiet_sids)
        self._every = progress
        self.origin_ns = time.time_ns()
        self.t: list[float] = []
        self.connected: list[int] = []
        self.frames: list[int] = []
        self.away: list[int] = []
        self.rss_kb: dict[int, list[int]] = {pid: [] for pid in plan.pids}
        self._ports = {port for _, port, _ in plan.endpoints}
        self.server_cpu: list[float] = []
        """The front-ends' CPU seconds so far."""
        self.bench_cpu: list[float] = []
        """The viewer processes' CPU seconds so far."""
        self.accept_queue: list[int] = []
        """Handshakes waiting in the front-ends' accept queues."""
        self.overflows: list[int] = []
        """The machine's accept-queue overflows so far (``probes.listen_overflows``)."""
        self.marks: dict[str, float] = {}
        """Moments of the run, seconds from the origin: window, published, kill."""

    def at(self, what: str, ns: int) -> None:
        self.marks[what] = (ns - self.origin_ns) / 1e9

    def sample(self, accept_queue: int = 0) -> None:
        totals = [g.totals() for g in self.phases]
        self.t.append((time.time_ns() - self.origin_ns) / 1e9)
        self.connected.append(sum(c for c, _, _ in totals))
        self.frames.append(sum(f for _, f, _ in totals))
        self.away.append(sum(a for _, _, a in totals))
        for pid, series in self.rss_kb.items():
            series.append(proc_rss_kb(pid))
        self.server_cpu.append(sum(proc_cpu_seconds(pid) for pid in self._pids))
        self.bench_cpu.append(sum(proc_cpu_seconds(p) for g in self.phases for p in g.pids))
        self.accept_queue.append(accept_queue)
        self.overflows.append(listen_overflows())

    async def run(self) -> None:
        said = 0.0
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            # ``ss`` in a thread: a process started from the loop would hold it
            self.sample(await asyncio.to_thread(listen_queue, self._ports))
            if self._every > 0 and self.t[-1] - said >= self._every:
                said = self.t[-1]
                self._say()

    def _say(self) -> None:
        back = max(0, len(self.t) - 1 - round(self._every / SAMPLE_EVERY))
        rate = (self.frames[-1] - self.frames[back]) / max(1e-9, self.t[-1] - self.t[back])
        away = f", {self.away[-1]:,} reconnecting" if self.away[-1] else ""
        rss = sum(s[-1] for s in self.rss_kb.values())
        memory = f", front-ends {rss / 1024**2:.2f} GiB" if self.rss_kb else ""
        say(
            f"{self.t[-1]:5.0f} s: {self.connected[-1]:,} of {self._target:,} viewers "
            f"connected{away}, {self.frames[-1]:,} events delivered ({rate:,.0f}/s){memory}"
        )

    def figures(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "connected": self.connected,
            "deliveries": self.frames,
            "away": self.away,
            "rss_kb": {str(pid): s for pid, s in self.rss_kb.items()},
            "server_cpu": self.server_cpu,
            "bench_cpu": self.bench_cpu,
            "accept_queue": self.accept_queue,
            "overflows": self.overflows,
            "marks": self.marks,
        }


def say(what: str) -> None:
    """Progress on stderr (the report goes to stdout), to time a profiler by."""
    print(f"bench {time.strftime('%H:%M:%S')}: {what}", file=sys.stderr, flush=True)
