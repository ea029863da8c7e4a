"""Redis clients, made with the settings that avoid redis-py's known traps.

* Short commands share one *blocking* pool of bounded size: a burst of viewers waits for a
  free connection instead of failing at the pool's limit.
* The shared reader gets its own single connection with a socket timeout above its block
  time (redis-py's default 5 s timeout and retries would break a blocking XREAD) and no
  hidden retries: the reader handles errors itself and resumes from its own cursors.

Both take the URL as it is, so everything redis-py reads from a URL works: a password
(``redis://:pw@host``), an ACL user (``redis://user:pw@host``), TLS (``rediss://``) with
``ssl_ca_certs``, ``ssl_cert_reqs``, ``ssl_certfile``/``ssl_keyfile`` … as query
parameters.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError

log = logging.getLogger("broadcaster.redis")

AUTH_LOG_INTERVAL = 30.0
"""Seconds between two log lines about refused credentials for the same server and user:
a load balancer polling /readyz would otherwise write one line per poll."""

_auth_logged: dict[tuple[str, str], float] = {}


async def _handshake(conn: AbstractConnection) -> None:
    """redis-py's own handshake (AUTH, CLIENT SETINFO, SELECT), plus a log line when the
    server refuses the credentials. Without it the error reaches only the caller, and a
    front-end's /readyz shows a bare 503. The line names the user and the server, never
    the password."""
    try:
        # No health check (a PING first) on a socket just opened: that is also what
        # redis-py does when it reconnects, and a check here that fails would reconnect
        # and come back here, without end (RecursionError on a plaintext URL to a TLS port).
        await conn.on_connect_check_health(check_health=False)
    except AuthenticationError as exc:
        path = getattr(conn, "path", None)
        host = path or f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        where = f"{host} db {conn.db}"
        user = conn.username or "default"
        now = time.monotonic()
        last = _auth_logged.get((where, user))
        if last is None or now - last >= AUTH_LOG_INTERVAL:
            _auth_logged[(where, user)] = now
            log.error(
                "Redis authentication failed for user %r at %s (%s); "
                "check the user name and password in REDIS_URL",
                user,
                where,
                str(exc).rstrip("."),
            )
        raise


def command_client(url: str, pool_size: int = 64, timeout: float = 5.0) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=timeout * 2,  # waiting for a free connection
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 2),
        redis_connect_func=_handshake,
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
        redis_connect_func=_handshake,
    )
