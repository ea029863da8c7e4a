"""A relay to Redis that loses one reply: the command that names ``needle`` reaches Redis
and runs, and its connection is cut before the reply comes back, as a failover or a
network fault does to a client between its write and the answer.

    with ReplyCut(redis_port, needle) as relay:
        ...  # a process given relay.url as its REDIS_URL
        assert relay.cut == 1

A ``-NOSCRIPT`` reply (redis-py's first ``EVALSHA`` of a script Redis does not have yet)
goes through: the command did not run, and the client loads the script and sends it
again, whose reply is the one lost. Only the first ``cuts`` such replies are lost; every
other byte is relayed as it comes (``relay.Relay``: its own thread and loop).
"""

from __future__ import annotations

import asyncio

from tests.support.relay import Ended, Relay


class ReplyCut(Relay):
    """The relay on 127.0.0.1 (``url``); ``cut``: the replies lost so far; ``answered``:
    the needle's replies relayed since."""

    def __init__(self, upstream_port: int, needle: bytes, cuts: int = 1) -> None:
        super().__init__(upstream_port)
        self.needle = needle
        self.cuts = cuts
        self.cut = 0
        self.answered = 0
        """Replies to the needle's command relayed (after the cuts): a write sent again
        has been answered once this counts it."""

    def state(self) -> list[bool]:
        return [False]  # the next reply on this connection is the needle's

    async def requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, armed: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            if self.needle in data:
                armed[0] = True  # before Redis can answer
            writer.write(data)
            await writer.drain()

    async def replies(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, armed: list[bool]
    ) -> None:
        while data := await reader.read(65536):
            if armed[0]:
                armed[0] = False
                if not data.startswith(b"-NOSCRIPT"):
                    if self.cut < self.cuts:
                        self.cut += 1
                        raise Ended  # the reply is dropped and the connection cut
                    self.answered += 1
            writer.write(data)
            await writer.drain()
