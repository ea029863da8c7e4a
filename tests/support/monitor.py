"""What Redis runs while a block of a test runs, seen by Redis itself (``MONITOR``), so a
test can count the commands that touch one stream's keys and ignore a front-end's own
background work (the webhook deliverer's sweep, the overdue-job sweep, heartbeats), which
``INFO commandstats`` counts with everything else."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from broadcaster.core import connection

MOST = 200_000  # commands kept; a window that runs more fails rather than grows


@dataclass
class Seen:
    """The commands run in the window, each as its words (name upper-cased first)."""

    commands: list[list[str]] = field(default_factory=list)

    def touching(self, text: str, names: Iterable[str] | None = None) -> list[list[str]]:
        """The commands with ``text`` in one of their arguments, of ``names`` if given."""
        wanted = {n.upper() for n in names} if names is not None else None
        return [
            c
            for c in self.commands
            if (wanted is None or c[0] in wanted) and any(text in a for a in c[1:])
        ]

    def named(self, *names: str) -> list[list[str]]:
        wanted = {n.upper() for n in names}
        return [c for c in self.commands if c[0] in wanted]


@asynccontextmanager
async def commands_seen(redis_url: str) -> AsyncIterator[Seen]:
    """Every command Redis runs from entering the block to leaving it. On leaving, an
    ``ECHO`` of a fresh token is sent and the monitor is read up to it, so nothing run in
    the window is missed for being read late."""
    seen = Seen()
    watcher = connection.command_client(redis_url)
    marker = "window-end-" + secrets.token_hex(8)
    ended = asyncio.Event()
    try:
        async with watcher.monitor() as monitor:

            async def read() -> None:
                while True:
                    info = await monitor.next_command()
                    words = info["command"].split(" ")
                    words[0] = words[0].upper()
                    if words[0] == "ECHO" and marker in words[1:]:
                        ended.set()
                        return
                    if len(seen.commands) >= MOST:
                        raise AssertionError(f"more than {MOST} commands in the window")
                    seen.commands.append(words)

            reader = asyncio.create_task(read())
            try:
                yield seen
                sender = connection.command_client(redis_url)
                try:
                    await sender.echo(marker)
                finally:
                    await sender.aclose()
                await asyncio.wait_for(reader, 30)
            finally:
                if not reader.done():
                    reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    finally:
        await watcher.aclose()
    assert ended.is_set()
