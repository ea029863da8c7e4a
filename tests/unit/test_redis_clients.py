"""The project's Redis clients: every connection they make shares one description of
the library, found once (redis-py would read its package metadata from disk for each)."""

from __future__ import annotations

from unittest import mock

import pytest
from redis import utils

from broadcaster.core import connection

pytestmark = pytest.mark.anyio


async def test_connections_share_one_driver_info_found_once() -> None:
    lookups = []
    real = utils.get_lib_version

    def counted() -> str:
        lookups.append(1)
        return real()

    connection._driver_info.cache_clear()
    with mock.patch.object(utils, "get_lib_version", counted):
        client = connection.command_client("redis://127.0.0.1:1", pool_size=8)
        pool = client.connection_pool
        made = [pool.make_connection() for _ in range(8)]  # as a burst of callers would
        blocking = connection.blocking_client("redis://127.0.0.1:1", 1000)
        made.append(blocking.connection_pool.make_connection())
    infos = {id(c.driver_info) for c in made}
    assert len(infos) == 1 and made[0].driver_info is not None
    assert made[0].driver_info.lib_version == real()
    assert len(lookups) == 1, f"package metadata read {len(lookups)} times"
    await client.aclose()
    await blocking.aclose()
