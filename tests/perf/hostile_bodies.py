"""What hostile request bodies cost the viewers on the same front-end, measured, not
asserted: this tree, and another revision beside it.

    .venv/bin/python -m tests.perf.hostile_bodies [--against <rev>] [--seconds 10]
        [--clients 4] [--rounds 1] [--set BROADCASTER_NAME=value ...]

Real processes on 127.0.0.1: a Redis server and one front-end of each tree in turn (keys
and a token secret configured; ``<rev>`` exported with ``git archive``, as
``tests.perf.worker_cpu`` does). An event is appended to a stream every 10 ms straight
into Redis (not through the front-end), and a viewer on the front-end reads it; a probe
asks ``/healthz`` every 50 ms. Three phases of ``--seconds`` each: quiet; ``--clients``
clients sending, as fast as they can, the largest bodies each route allows, with a
token (a chat token on the chat routes, an API key on the others); the same with no
credential. The bodies: ``POST /v1/chat`` of 16 MiB holding as many messages and values
as the bounds allow, the last message invalid (422: all the work, and nothing started),
and a chat of 150,000 tiny messages (413 as it streams in); an AG-UI run of 16 MiB, which
the conversion admits (its last message's content of numbers is dropped): the first run
of a phase starts an answer, which its client then reads until the phase ends (no worker
serves it), and the other runs are 409 ``chat_busy`` once parsed and converted (and the
chat's record read, or for one sent beside the first, its own record written and lost);
``POST /v1/streams/{id}/events`` (413: an event over its limit, once encoded) and
``POST /v1/generations`` (422) of 1 MiB of small values. Printed per tree and phase: the
viewer's inter-event delay (median, 99th percentile, max), ``/healthz``'s answer time,
and the attackers' answers by status.
With ``--rounds``, each tree that many times, which goes first alternating: the machine's
other load then falls on both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from broadcaster.auth import credentials, tokens
from broadcaster.core import connection
from broadcaster.core.eventlog import EventLog
from tests.perf.worker_cpu import exported
from tests.support.procs import ROOT, Proc, free_port, redis_server, spawn, wait_ready

KEY = "bench-key-0123456789"
SECRET = "bench-secret-0123456789abcdef0123456789"
INTERVAL = 0.010
"""Seconds between two appended events: what the viewer's delays are compared with."""
MIB = 1024 * 1024


def _message(i: int, role: str = "user", filler: int = 0, text: str = "x") -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": text}
    if filler:
        part["extra"] = [0] * filler
    return {"id": f"m{i}", "role": role, "parts": [part]}


def chat_bodies(chat: str) -> list[bytes]:
    """The chat route's worst bodies: 16 MiB at the message and value bounds (1,000
    messages, about 95,000 values), the last message invalid; and 150,000 tiny messages."""
    messages = [_message(i, filler=80, text="y" * 16_000) for i in range(999)]
    messages.append(_message(999, role="nobody"))
    big = json.dumps({"id": chat, "messages": messages}).encode()
    tiny = [_message(i, text="hi") for i in range(150_000)]
    tiny[-1]["role"] = "nobody"
    return [big, json.dumps({"id": chat, "messages": tiny}).encode()]


def run_body(thread: str) -> bytes:
    messages = [{"id": f"m{i}", "role": "user", "content": "y" * 16_000} for i in range(999)]
    messages.append({"id": "m999", "role": "user", "content": [0] * 80_000})
    return json.dumps({"threadId": thread, "runId": "r", "messages": messages, "x": 1}).encode()


def small_values(limit: int = MIB - 1024) -> bytes:
    """A JSON event of about ``limit`` bytes of small values (under the value bound)."""
    return json.dumps(
        {"type": "data-x", "data": [0] * 90_000, "pad": "z" * (limit - 300_000)}
    ).encode()


def start_frontend(
    tree: Path, redis_url: str, log_dir: Path, name: str, extra: dict[str, str]
) -> Proc:
    port = free_port()
    env = extra | {
        "PYTHONPATH": str(tree),
        "REDIS_URL": redis_url,
        "BROADCASTER_API_KEYS": credentials.hash_key(KEY),
        "BROADCASTER_TOKEN_SECRET": SECRET,
        "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
        "BROADCASTER_SUBMIT_RATE_PER_MINUTE": "0",
        "BROADCASTER_LOG_LEVEL": "warning",
    }
    proc = spawn(name, ["-m", "broadcaster", "serve", "--port", str(port)], env, log_dir, cwd=tree)
    proc.port = port
    wait_ready(proc, timeout=60)
    return proc


def bodies(credential: bool) -> list[tuple[str, bytes, dict[str, str]]]:
    """Each route's worst body, with its credential (or none)."""
    chat = "bench-chat"
    # The whole-chat claim, which every revision reads.
    token = tokens.mint_token(SECRET, chat=[chat], ttl_seconds=3600)
    chat_head = {"authorization": f"Bearer {token}"} if credential else {}
    key_head = {"authorization": f"Bearer {KEY}"} if credential else {}
    posts = [("/v1/chat", body, chat_head) for body in chat_bodies(chat)]
    posts.append(("/v1/agui/agent/default/run", run_body(chat), chat_head))
    posts.append(("/v1/streams/bench-sink/events", small_values(), key_head))
    posts.append(("/v1/generations", small_values(), key_head))
    return posts


def attacker(  # noqa: PLR0917 (a process's target takes its arguments by position)
    base: str, credential: bool, ready: Any, go: Any, stop: Any, out: Any
) -> None:
    """A process of its own (its work never delays the measuring one): sends the worst
    bodies round the routes from ``go`` until ``stop``; puts its answers' counts."""
    posts = bodies(credential)
    ready.set()
    go.wait()
    seen: Counter[str] = Counter()

    async def post_all(client: httpx.AsyncClient) -> None:
        for i in itertools.count():
            path, body, head = posts[i % len(posts)]
            headers = {**head, "content-type": "application/json"}
            try:
                r = await client.post(path, content=body, headers=headers)
                seen[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            posting = asyncio.create_task(post_all(client))
            # A request in flight at the end is dropped (stop is another process's event).
            while not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            posting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await posting

    asyncio.run(run())
    out.put(dict(seen))


async def viewer(
    base: str, feed: str, stop: asyncio.Event, arrivals: list[float], late: list[float]
) -> None:
    """Reads ``feed``: when each event came, and how long after it was appended."""
    token = credentials.mint_viewer_token(SECRET, feed, 3600)[0]
    url = f"{base}/v1/streams/{feed}/events"
    head = {"authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(timeout=None) as client,
        client.stream("GET", url, headers=head) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                arrivals.append(time.perf_counter())
                late.append(time.time() - json.loads(line[5:])["data"]["at"])
            if stop.is_set():
                return


async def publisher(redis_url: str, feed: str, stop: asyncio.Event) -> None:
    redis = connection.command_client(redis_url)
    log = EventLog(redis)
    try:
        n = 0
        next_at = time.perf_counter()
        while not stop.is_set():
            tick = {"type": "data-tick", "data": {"n": n, "at": time.time()}}
            await log.append(feed, [tick], kind="feed")
            n += 1
            next_at += INTERVAL
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    finally:
        await redis.aclose()


async def prober(base: str, stop: asyncio.Event, times: list[float]) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            await client.get(f"{base}/healthz")
            times.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    base: str, redis_url: str, seconds: float, clients: int, credential: bool | None
) -> dict[str, Any]:
    stop = asyncio.Event()
    feed = f"bench-feed-{credential}"
    arrivals: list[float] = []
    late: list[float] = []
    probes: list[float] = []
    context = multiprocessing.get_context("spawn")  # no fork of a threaded process
    ready = [context.Event() for _ in range(clients if credential is not None else 0)]
    go, done, out = context.Event(), context.Event(), context.Queue()
    attackers = [
        context.Process(target=attacker, args=(base, credential, r, go, done, out)) for r in ready
    ]
    for proc in attackers:
        proc.start()
    for r in ready:
        await asyncio.to_thread(r.wait, 300)
    tasks = [asyncio.create_task(publisher(redis_url, feed, stop))]
    await asyncio.sleep(0.2)
    tasks += [
        asyncio.create_task(viewer(base, feed, stop, arrivals, late)),
        asyncio.create_task(prober(base, stop, probes)),
    ]
    go.set()
    await asyncio.sleep(seconds)
    stop.set()
    done.set()
    seen: Counter[str] = Counter()
    for _ in attackers:
        seen.update(await asyncio.to_thread(out.get, True, 120))
    for proc in attackers:
        proc.join(30)
    for task in tasks:
        task.cancel()
    for failed in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(failed, Exception):
            print(f"a measuring task failed: {failed!r}")
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals[1:])]
    return {
        "gap_p50": pct(gaps, 0.5),
        "gap_p99": pct(gaps, 0.99),
        "gap_max": max(gaps, default=float("nan")),
        "late_p50": pct(late, 0.5) * 1000,
        "late_p99": pct(late, 0.99) * 1000,
        "health_p99": pct(probes, 0.99) * 1000,
        "health_max": max(probes, default=float("nan")) * 1000,
        "answers": dict(seen),
    }


async def measure_tree(
    tree: Path, name: str, seconds: float, clients: int, extra: dict[str, str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp, redis_server(Path(tmp)) as redis:
        front = start_frontend(tree, redis.url, Path(tmp), f"frontend-{name}", extra)
        try:
            base = front.url
            for label, credential in (("quiet", None), ("token", True), ("none", False)):
                found[label] = await phase(base, redis.url, seconds, clients, credential)
        finally:
            front.stop()
    return found


def report(results: dict[str, dict[str, dict[str, Any]]]) -> None:
    head = ("tree", "phase", "late p50", "late p99", "gap p99", "gap max", "/healthz p99")
    print("{:<10} {:<6} {:>8} {:>8} {:>8} {:>8} {:>12} {:>12}  answers".format(*head, "max"))
    for tree, phases in results.items():
        for label, r in phases.items():
            print(
                f"{tree:<10} {label:<6} {r['late_p50']:8.1f} {r['late_p99']:8.1f}"
                f" {r['gap_p99']:8.1f} {r['gap_max']:8.1f}"
                f" {r['health_p99']:12.1f} {r['health_max']:12.1f}  {r['answers']}"
            )
    print(
        f"(milliseconds; an event every {INTERVAL * 1000:.0f} ms; late: from its append to"
        " the viewer; gap: between two events at the viewer)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="a git revision to measure beside this tree")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--rounds", type=int, default=1, help="each tree this many times, the order turning"
    )
    parser.add_argument(
        "--set", action="append", default=[], help="NAME=VALUE, a setting of the front-ends"
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.set)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        trees = [("this", ROOT)]
        if args.against:
            trees.append((args.against[:10], stack.enter_context(exported(args.against))))
        for n in range(args.rounds):
            # The order turns: what the machine's other load does over time falls on both.
            for name, tree in trees[n % len(trees) :] + trees[: n % len(trees)]:
                label = name if args.rounds == 1 else f"{name} r{n + 1}"
                results[label] = asyncio.run(
                    measure_tree(tree, name, args.seconds, args.clients, extra)
                )
    report(results)


if __name__ == "__main__":
    main()
