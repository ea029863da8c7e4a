"""The committer's rounds packed by ``committer.pack``: the same RESP bytes redis-py's
``pack_commands`` sends, for every kind of argument the write paths hand it (a script's
keys and arguments, a barrier, a ``WAIT``), and a clear refusal of anything else."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection

from broadcaster.core.committer import pack


def _redis_py(commands: list[tuple[Any, ...]]) -> bytes:
    return b"".join(Connection().pack_commands(commands))


def test_the_same_bytes_as_redis_py_for_every_argument_kind() -> None:
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "0" * 40, 2, "{s}:log", b"{s}:meta", "é€😀", -7, 0, 3.25, 1e-9),
        ("SET", "barrier:{s}", 12, "PX", 10_000),
        ("WAITAOF", 1, 1, 10),
        ("PUBLISH", "ch", b"\x00\r\n\xff" * 1000),  # binary, and past redis-py's cutoff
        ("XADD", "k", "*", "", b""),  # empty arguments
    ]
    assert pack(commands) == _redis_py(commands)


def test_an_argument_redis_py_refuses_is_refused() -> None:
    for bad in (None, True, [1], {"a": 1}):
        with pytest.raises(TypeError):
            pack([("SET", "k", bad)])
