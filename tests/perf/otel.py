"""Front-end CPU per delivery with traces exported and without, side by side in one run
(docs/history/performance-rounds.md, "Traces").

The same front-end, the same Redis, the same bench (``broadcaster.bench.driver``: one
stream, its viewers, its publisher), started once with the standard ``OTEL_*`` variables
pointing at an OTLP receiver on 127.0.0.1 (``tests/support/otlp.py``) and once without,
alternately (``untraced, traced``, then ``traced, untraced``...), so that a drift of the
machine falls on both. Beside the bench, both get the same 20 publishes a second over
HTTP (``POST /v1/streams/{id}/events``): in the traced runs each is a request span
exported while the viewers are served. Nothing is traced per delivery: what a delivery
costs is what is compared.

    python -m tests.perf.otel          # 1 stream x 1,000 viewers, 200 ev/s, 5 s, 3 rounds
    python -m tests.perf.otel --viewers 1000 --rate 500 --rounds 5
    python -m tests.perf.otel --smoke  # seconds

Prints each run's row, then the CPU per 100,000 deliveries of each configuration (median
over the rounds) and their ratio, traced / untraced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from broadcaster.bench.driver import run_bench
from broadcaster.core.process import raise_nofile_limit
from tests.perf.rounds import _bench_config, _row
from tests.perf.scenarios import SMOKE_SETTLE, Scenario
from tests.perf.targets import start
from tests.support.otlp import OtlpReceiver
from tests.support.procs import redis_server

CONFIGS = ("untraced", "traced")
SIDE_RATE = 20.0
"""Publishes per second over HTTP to a stream of their own, beside the bench's, in both
configurations: each is a traced request (a span exported) in the traced one."""


def _args(viewers: int, rate: int, duration: float, procs: int) -> list[str]:
    return [
        *("--viewers", str(viewers), "--rate", str(rate), "--duration", str(duration)),
        *("--procs", str(procs), "--deadline", "20"),
    ]


async def _side_publishes(url: str, stop: asyncio.Event) -> int:
    """``SIDE_RATE`` publishes a second over HTTP until ``stop``; how many were made."""
    made = 0
    body = {"type": "data-side", "data": {"n": 1}}
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            resp = await client.post(f"{url}/v1/streams/otel-side/events", json=body)
            resp.raise_for_status()
            made += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / SIDE_RATE)
    return made


async def _one_run(
    name: str, args: list[str], env: dict[str, str], redis_: tuple[str, int], tmp: Path
) -> dict[str, Any]:
    s = Scenario(f"otel-{name}", name, args, targets=("project",), env=env)
    server = start("project", redis_[0], tmp, s.keepalive, None, s.env)
    stop = asyncio.Event()
    side = asyncio.create_task(_side_publishes(server.urls[0], stop))
    try:
        result = await run_bench(_bench_config(s, server, redis_, None), server.sink)
    finally:
        stop.set()
        publishes = await side
        died = server.died()
        server.stop()
    if died:
        raise RuntimeError(f"{name}: the front-end exited during the run: {died}")
    return {**_row(name, result, 1), "side_publishes": publishes}


async def compare(args: list[str], rounds: int) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    with (
        tempfile.TemporaryDirectory(prefix="otel-") as tmp,
        redis_server(Path(tmp) / "redis") as server,
        OtlpReceiver() as otlp,
    ):
        assert server.proc is not None
        redis_ = (server.url, server.proc.pid)
        # The SDK's own batching (every 5 s), not the tests' quick one.
        traced = {k: v for k, v in otlp.env("broadcaster").items() if "BSP" not in k}
        envs = {"untraced": {}, "traced": traced}
        for i in range(rounds):
            order = CONFIGS if i % 2 == 0 else CONFIGS[::-1]
            for name in order:
                before = len(otlp.snapshot())
                row = await _one_run(name, args, envs[name], redis_, Path(tmp))
                row["spans_exported"] = len(otlp.snapshot()) - before
                found[name].append(row)
                print(_line(i + 1, name, row), flush=True)
    return found


def _line(round_no: int, name: str, row: dict[str, Any]) -> str:
    return (
        f"round {round_no} {name:>8}: {row['deliveries']:>9,} deliveries, "
        f"{row['delivered_events_per_s']:>10,.0f}/s, front-end CPU "
        f"{row['server_cpu_s_per_100k']:.3f} s per 100k "
        f"(busy {row['server_busy_cpu_s_per_100k']:.3f}), "
        f"p99 {row['p99_ms']:.1f} ms, {row['side_publishes']} side publishes, "
        f"spans exported {row['spans_exported']}"
    )


def summary(found: dict[str, list[dict[str, Any]]]) -> str:
    med = {c: statistics.median(r["server_cpu_s_per_100k"] for r in found[c]) for c in CONFIGS}
    pairs = [
        t["server_cpu_s_per_100k"] / u["server_cpu_s_per_100k"]
        for u, t in zip(found["untraced"], found["traced"], strict=True)
    ]
    return "\n".join(
        [
            "front-end CPU s per 100,000 deliveries (median of the rounds):",
            f"  untraced {med['untraced']:.3f}   traced {med['traced']:.3f}   "
            f"ratio traced/untraced {med['traced'] / med['untraced']:.3f}",
            "  ratio per round: "
            + ", ".join(f"{p:.3f}" for p in pairs)
            + f" (median {statistics.median(pairs):.3f})",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.perf.otel")
    p.add_argument("--viewers", type=int, default=1000)
    p.add_argument("--rate", type=int, default=200, help="events/s offered (200)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds each run (5)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each configuration (3)")
    p.add_argument("--procs", type=int, default=2, help="the bench's viewer processes (2)")
    p.add_argument("--smoke", action="store_true", help="20 viewers, 1 s, 1 round")
    p.add_argument("--json", help="also write every run's row to this file")
    opts = p.parse_args()
    if opts.smoke:
        opts.viewers, opts.rate, opts.duration, opts.rounds, opts.procs = 20, 50, 1.0, 1, 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise_nofile_limit()
    args = _args(opts.viewers, opts.rate, opts.duration, opts.procs)
    if opts.smoke:
        args += SMOKE_SETTLE
    found = asyncio.run(compare(args, opts.rounds))
    print(summary(found))
    if opts.json:
        Path(opts.json).write_text(json.dumps(found, indent=1, default=str))


if __name__ == "__main__":
    main()
