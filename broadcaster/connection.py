"""Redis clients, made with the settings that avoid redis-py's known traps.

* Short commands share one *blocking* pool of bounded size: a burst of viewers waits for a
  free connection instead of failing at the pool's limit.
* The shared reader gets its own single connection with a socket timeout above its block
  time (redis-py's default 5 s timeout and retries would break a blocking XREAD) and no
  hidden retries: the reader handles errors itself and resumes from its own cursors.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff


def command_client(url: str, pool_size: int = 64, timeout: float = 5.0) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout * 2,  # waiting for a free connection
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def blocking_client(url: str, block_ms: int) -> Redis:
    """A single-connection client for one blocking reader (XREAD / XREADGROUP BLOCK)."""
    return Redis.from_url(
        url,
        single_connection_client=True,
        socket_timeout=block_ms / 1000 + 5.0,
        socket_connect_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
    )
