"""How long a killed worker's answer stands still: the time from ``kill -9`` of the
worker streaming it to the next text event a viewer receives, with the worker's
liveness (``WORKER_LIVENESS=connection``, the default) against the lease alone
(``lease``, the behaviour before), side by side in one run. Measured, not asserted.

    python -m tests.perf.worker_kill [--kills 20] [--topology single|cluster|sentinel]

Real processes on 127.0.0.1: one Redis (or a Cluster, or Sentinel), one front-end,
workers on the real ``anthropic`` SDK against the local fake Anthropic server, every
setting at its default (``WORKER_LEASE_SECONDS`` 15, ``WORKER_LIVENESS_SECONDS`` 1). Each
round starts a worker, which takes a new generation; the model shows some words and then
stalls, so the answer only goes on once another worker takes it over. A second worker
is started and given time to be ready (its liveness subscription settled), a viewer
reads the answer, and the first worker is killed. The rounds alternate between the two
ways, so both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from broadcaster.generations.liveness import SETTLE_S
from tests.support.fake_anthropic import FakeAnthropicServer, stall, text_reply
from tests.support.faults import (
    Viewer,
    create_generation,
    owned_by,
    stored_events,
    stream_meta,
    wait_status,
)
from tests.support.liveness import TOPOLOGIES, Deployment, deployment, settled
from tests.support.polling import until
from tests.support.procs import Proc

WAYS = ("connection", "lease")
WORDS = [f"word{i} " for i in range(60)]
CUT = 20
"""Words the killed worker shows before the model stalls."""


@dataclass(frozen=True, slots=True)
class Kill:
    way: str
    to_text_s: float
    """From the kill to the first text event after it, as the viewer received it."""
    to_notice_s: float
    """From the kill to the takeover's ``data-continued``."""


async def one_kill(d: Deployment, model: FakeAnthropicServer, way: str, n: int) -> Kill:
    env = {"WORKER_LIVENESS": way}
    victim = await asyncio.to_thread(d.add_worker, env)
    model.enqueue([*text_reply(WORDS)[: 2 + CUT], stall()])
    r = d.client()
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=2)) as http:
        gid = await create_generation(http, d.url, f"kill {n} ({way})", max_tokens=4096)
        await until(lambda: owned_by(r, gid, victim), "the first worker's claim", 30)
        shown = WORDS[CUT - 1].strip()
        await until(lambda: _text(r, gid).endswith(shown), "the words before the stall")
        rescuer = await asyncio.to_thread(d.add_worker, env)
        await _ready(r, rescuer, way)
        viewer = Viewer([d.url], gid, patience=90)
        async with anyio.create_task_group() as tg:
            tg.start_soon(viewer.run, http)
            await until(lambda: len(viewer.received) >= 2 + CUT, "the viewer caught up", 30)
            killed = time.monotonic()
            victim.stop(signal.SIGKILL)
            last = int(stream_meta(r, gid)["seq"])
            await wait_status(http, d.url, gid, {"completed"}, 90)
        rescuer.stop()
    r.close()
    after = [e for e in viewer.received if e.seq > last]
    text = next(e for e in after if e.type == "text-delta")
    notice = next(e for e in after if e.type == "data-continued")
    return Kill(way, text.at - killed, notice.at - killed)


def _text(r: Any, gid: str) -> str:
    """What the stream's text deltas spell so far."""
    deltas = (json.loads(e.data) for e in stored_events(r, gid) if e.type == "text-delta")
    return "".join(d.get("delta", "") for d in deltas).rstrip()


async def _ready(r: Any, rescuer: Proc, way: str) -> None:
    """The second worker up and, with liveness, judging (its subscription settled); the
    lease-only one is given the same time, for the same machine."""
    if way == "connection":
        await until(lambda: settled(r, rescuer), "the second worker ready", 30)
    else:
        await asyncio.sleep(SETTLE_S + 0.2)


def quantile(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[round(q * 100) - 1]


def report(kills: list[Kill], topology: str) -> str:
    lines = [
        f"worker kill -9 on {topology} Redis: {len(kills)} kills, "
        f"{datetime.datetime.now(datetime.UTC):%d %b %Y %H:%M} UTC, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}",
        f"{'way':<12}{'kills':>6}  {'kill → next text event: p50':>28} {'p99':>7} {'max':>7}"
        f"   {'kill → data-continued: p50':>27} {'max':>7}",
    ]
    p50s: dict[str, float] = {}
    for way in WAYS:
        rows = [k for k in kills if k.way == way]
        if not rows:
            continue
        text = [k.to_text_s for k in rows]
        notice = [k.to_notice_s for k in rows]
        p50s[way] = statistics.median(text)
        lines.append(
            f"{way:<12}{len(rows):>6}  {p50s[way]:>26.2f} s {quantile(text, 0.99):>5.2f} s "
            f"{max(text):>5.2f} s   {statistics.median(notice):>25.2f} s {max(notice):>5.2f} s"
        )
    if len(p50s) == 2:
        lines.append(f"lease / connection, p50: {p50s['lease'] / p50s['connection']:.1f}x")
    return "\n".join(lines)


async def measure(kills: int, topology: str, ways: tuple[str, ...]) -> list[Kill]:
    found: list[Kill] = []
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropicServer() as model:
        model.will_continue("".join(WORDS), chunk_delay=0.01)
        env = {
            "WORKER_PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": model.base_url,
            "ANTHROPIC_API_KEY": "test",
            "WORKER_MERGE_MS": "0",
        }
        with deployment(topology, Path(tmp), env) as d:
            for n in range(kills):
                for way in ways:
                    kill = await one_kill(d, model, way, n)
                    print(f"kill {n + 1:>2} {way:<10} {kill.to_text_s:6.2f} s", flush=True)
                    found.append(kill)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills of each way")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="single")
    parser.add_argument("--ways", default=",".join(WAYS), help="connection,lease")
    args = parser.parse_args()
    ways = tuple(w for w in args.ways.split(",") if w in WAYS)
    with contextlib.suppress(KeyboardInterrupt):
        kills = asyncio.run(measure(args.kills, args.topology, ways))
        print(report(kills, args.topology))


if __name__ == "__main__":
    main()
