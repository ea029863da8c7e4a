"""An idle front-end sends Redis at most one command a second: nothing polls.

Two front-ends on a Redis of the test's own, with the job queues made (so that the
overdue round reads what a deployment's does), nothing happening. Every command Redis
receives is seen with ``MONITOR``, and each is put down to the process whose socket sent
it (the client's port, found among each process's sockets in ``/proc``). What remains of
an idle front-end: its viewer-count heartbeat (every 10 s: a ``ZADD`` and a ``ZRANGE``),
the probe of its wake channels' connection (a ``PING`` every 5 s), the look for starts
cut off between their steps (a ``ZRANGEBYSCORE`` every 10 s), and rounds of a minute
that a 10 s window may or may not hold: the chats' queue (an ``EXISTS``), 8 of the 256
waiting sets (a ``ZRANGEBYSCORE`` each), the overdue generations (a ``SET`` and an
``XINFO GROUPS`` per job queue); and every two minutes 4 of the 256 sets of generations
whose usage is unsettled (a ``ZRANGEBYSCORE`` each). Over two minutes that is about 0.7
commands a second (docs/history/performance-rounds.md, "An idle front-end").

The same with webhooks configured (each front-end runs a deliverer): its two blocking
reads (the outboxes, the deliveries: one ``XREADGROUP`` each per 30 s) and its sweep (a
minute: ``XPENDING``, ``ZADD``, ``ZRANGEBYSCORE``, ``XLEN``, ``XRANGE``) add about 0.1 a
second
(docs/webhooks.md, "Cost").

Both cases idle at once, each on a Redis of its own: the plain case's window passes
within the longer one of the case with webhooks.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_sync

from broadcaster.chat.records import Chats
from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations
from tests.support.polling import wait_for
from tests.support.procs import Proc, own_redis, start_frontend, stop_all
from tests.support.webhooks import webhook_env

pytestmark = pytest.mark.anyio

SETTLE_S = 2.0
"""After the front-ends listen on the wake channels: their first rounds done."""
WINDOW_S = 10.0
WEBHOOKS_WINDOW_S = 65.0
"""With webhooks: long enough to hold a sweep (a minute) and two of each blocking read."""
MONITOR_LINE = re.compile(rb'^\+\d+\.\d+ \[\d+ [^\]]*:(\d+)\] "([^"]+)"')


def _ports_of(pid: int) -> set[int]:
    """The local ports of ``pid``'s TCP sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _monitor(port: int, seconds: float) -> list[tuple[int, str]]:
    """(client port, command) of every command Redis ran for ``seconds``."""
    seen: list[tuple[int, str]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"MONITOR\r\n")
        buffer = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            assert chunk, "Redis closed the MONITOR connection"
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                match = MONITOR_LINE.match(line)
                if match:
                    seen.append((int(match[1]), match[2].decode().upper()))
    return seen


WEBHOOKS = webhook_env(
    "http://127.0.0.1:9/hooks",
    BROADCASTER_WEBHOOK_POLL_SECONDS="1",
    BROADCASTER_WEBHOOK_RETRY_BASE_SECONDS="1",
    BROADCASTER_WEBHOOK_RETRY_MAX_SECONDS="3600",
)
"""A deployment's webhook settings (the receiver is never called: nothing happens)."""


@dataclass
class Idle:
    """Two idle front-ends on a Redis of their own, and what ``MONITOR`` sees them send
    over ``window`` s (read in a thread of the module's)."""

    frontends: list[Proc]
    window: float
    seen: Future[list[tuple[int, str]]]


def _listening(url: str, n: int) -> bool:
    """``n`` clients listen on the first wake channel."""
    with redis_sync.Redis.from_url(url) as client:
        return int(client.pubsub_numsub(keys.wake_channels()[0])[0][1]) >= n


async def _make_job_queues(url: str) -> None:
    redis = connection.command_client(url)
    try:
        await JobQueue(redis).ensure_group()
    finally:
        await redis.aclose()


def _watched_after_settling(port: int, window: float) -> list[tuple[int, str]]:
    time.sleep(SETTLE_S)
    return _monitor(port, window)


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, Idle]]:
    """Both cases (without and with webhooks) idle at once, each on a Redis of its own,
    so that the plain case (started second) and its window pass within the webhooks'
    longer window."""
    servers: list[EmbeddedRedis] = []
    frontends: list[Proc] = []
    with ThreadPoolExecutor(2) as pool:
        try:
            cases = {}
            for webhooks in (True, False):  # the longer window first
                root = tmp_path_factory.mktemp("idle-webhooks" if webhooks else "idle-plain")
                server = own_redis(root / "redis")
                servers.append(server)
                asyncio.run(_make_job_queues(server.url))
                env = WEBHOOKS if webhooks else None
                pair = [start_frontend(server.url, root, f"idle-{i}", env) for i in range(2)]
                frontends += pair
                # Start-up is over once both listen on the wake channels (then each looks
                # at what it may have missed: a round of the chats' queue, every waiting
                # set): SETTLE_S later the window opens.
                listening = functools.partial(_listening, server.url, len(pair))
                wait_for("both front-ends listening on the wakes", listening)
                window = WEBHOOKS_WINDOW_S if webhooks else WINDOW_S
                assert server.port is not None
                seen = pool.submit(_watched_after_settling, server.port, window)
                cases[webhooks] = Idle(pair, window, seen)
            yield cases
        finally:
            stop_all(frontends)
            for server in servers:
                server.stop()


@pytest.mark.parametrize("webhooks", [False, True], ids=["plain", "webhooks"])
async def test_an_idle_front_end_sends_at_most_one_command_a_second(
    idle: dict[bool, Idle], webhooks: bool
) -> None:
    case = idle[webhooks]
    seen = await asyncio.wrap_future(case.seen)
    owners = {port: fe.name for fe in case.frontends for port in _ports_of(fe.pid)}
    window = case.window
    per_frontend: dict[str, Counter[str]] = {fe.name: Counter() for fe in case.frontends}
    for port, command in seen:
        if port in owners:
            per_frontend[owners[port]][command] += 1
    for name, commands in per_frontend.items():
        total = sum(commands.values())
        print(
            f"{name}: {total} commands in {window:g} s idle "
            f"({total / window:.2f}/s): {dict(commands)}"
        )
    for name, commands in per_frontend.items():
        total = sum(commands.values())
        # Its wake channels' connection is probed every 5 s: seen, so counted here.
        assert commands["PING"] >= 1, f"{name}: none of its commands was put down to it"
        assert total <= window, f"{name}: {total} commands in {window:g} s idle"
        if webhooks:  # its deliverer is there, reading
            assert commands["XREADGROUP"] >= 2, f"{name}: no deliverer's reads"


async def test_the_wake_channels_carry_ends_waits_and_chats(redis_url: str) -> None:
    """What wakes the pump and the approvals is published: a generation's end and a new
    deadline in a waiting set by the append itself, a chat with something waiting by
    ``Chats``; a feed's end and its events wake nothing."""
    redis = connection.command_client(redis_url)
    event_log = EventLog(redis)
    generations = Generations(event_log)
    gid, feed, chat = (f"wake-{what}-{secrets.token_hex(4)}" for what in ("gen", "feed", "chat"))
    listener = redis.pubsub()
    try:
        await listener.subscribe(*keys.wake_channels())
        for _ in keys.wake_channels():  # the confirmations
            assert await listener.get_message(timeout=5) is not None
        await event_log.append(feed, [{"type": "a"}, {"type": "finish"}], kind="feed")
        assert await generations.create(gid, {"prompt": "x"})
        assert await generations.claim(gid, "w") is not None
        await event_log.append(gid, [{"type": "start"}], kind="generation", owner="w")
        deadline = int(time.time() * 1000) + 60_000
        await event_log.append(
            gid, [{"type": "data-n"}], kind="generation", owner="w", extras={"zadd": deadline}
        )
        await Chats(redis, 60).pending(chat)
        await event_log.append(gid, [{"type": "finish"}], kind="generation", owner="w")
        heard: list[tuple[str, str]] = []
        while len(heard) < 3:
            message = await listener.get_message(timeout=5)
            assert message is not None, f"only {heard} published"
            heard.append((message["channel"].decode(), message["data"].decode()))
        assert await listener.get_message(timeout=0.2) is None, "nothing more"
    finally:
        await listener.aclose()
        await redis.zrem(keys.CHATS_PENDING_KEY, chat)
        await redis.aclose()
    assert heard == [
        (keys.wake_channel(gid), f"wait {deadline} {gid}"),
        (keys.wake_channel(chat), f"chat {chat}"),
        (keys.wake_channel(gid), f"end {gid}"),
    ]
