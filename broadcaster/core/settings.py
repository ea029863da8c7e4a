"""Settings every process shares (where Redis is, stream limits and TTLs), read once at
the entry point from the environment and passed down.

Names fixed by the contract (``REDIS_URL``, ``WORKER_PROVIDER``, …) are used as they are;
the front-end's own settings are ``BROADCASTER_*`` and the worker's ``WORKER_*``. A
command-line flag overrides its variable.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcaster.core import connection, keys


class RedisSettings(BaseSettings):
    """Where Redis is. Shared by the front-end and the worker."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    """``redis://``, ``rediss://`` or ``unix://``; unset starts the embedded Redis."""
    redis_cluster: bool = Field(False, validation_alias="REDIS_CLUSTER")
    """``REDIS_URL`` names nodes of a Redis Cluster: ``redis://host:port,host:port``."""
    redis_sentinels: str | None = Field(None, validation_alias="REDIS_SENTINELS")
    """Comma-separated ``host:port`` of Sentinels; ``REDIS_URL`` then gives only the
    credentials, database and TLS options of the data nodes."""
    redis_sentinel_service: str | None = Field(None, validation_alias="REDIS_SENTINEL_SERVICE")
    data_dir: str = Field(".broadcaster", validation_alias="BROADCASTER_DATA_DIR")
    """Folder of the embedded Redis (its data, log and port file)."""
    redis_pool_size: int = Field(64, ge=2, validation_alias="BROADCASTER_REDIS_POOL_SIZE")
    """Connections per process for short commands; more callers wait for a free one."""
    ended_ttl_seconds: int = Field(keys.ENDED_TTL, ge=1, validation_alias="BROADCASTER_ENDED_TTL")
    idle_ttl_seconds: int = Field(keys.IDLE_TTL, ge=1, validation_alias="BROADCASTER_IDLE_TTL")
    max_event_bytes: int = Field(64 * 1024, ge=256, validation_alias="BROADCASTER_MAX_EVENT_BYTES")
    """Largest single event (its JSON); larger ones are refused (413)."""
    max_stream_events: int = Field(100_000, ge=10, validation_alias="BROADCASTER_MAX_STREAM_EVENTS")
    """Events one stream may hold; beyond, only its terminal event is accepted."""
    max_stream_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias="BROADCASTER_MAX_STREAM_BYTES"
    )
    """Bytes of event JSON one stream may hold; beyond, only its terminal event."""

    def engine_url(self) -> str | None:
        """The one URL the clients are made from (see ``connection``): ``REDIS_URL`` for a
        single Redis, ``redis+cluster://…`` or ``redis+sentinel://…`` from the contract's
        variables, None for the embedded Redis. ValueError says what is wrong."""
        url = self.redis_url
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("set REDIS_CLUSTER or REDIS_SENTINELS, not both")
        if self.redis_sentinels:
            if not self.redis_sentinel_service:
                raise ValueError("REDIS_SENTINELS needs REDIS_SENTINEL_SERVICE (the service name)")
            scheme, _, rest = (url or "redis://").partition("://")
            if scheme not in ("redis", "rediss"):
                raise ValueError("with REDIS_SENTINELS, REDIS_URL must be redis:// or rediss://")
            auth, _, tail = rest.rpartition("@")
            path, _, query = tail.partition("?")
            db = path.partition("/")[2].strip("/")
            url = (
                f"{scheme}+sentinel://{auth + '@' if auth else ''}{self.redis_sentinels}"
                f"/{self.redis_sentinel_service}{'/' + db if db else ''}"
                f"{'?' + query if query else ''}"
            )
        elif self.redis_cluster:
            if not url:
                raise ValueError("REDIS_CLUSTER=true needs REDIS_URL naming the cluster's nodes")
            scheme, _, rest = url.partition("://")
            if scheme not in ("redis", "rediss"):
                raise ValueError("with REDIS_CLUSTER, REDIS_URL must be redis:// or rediss://")
            url = f"{scheme}+cluster://{rest}"
        if url:
            # Fail at start-up, not at the first request, on a malformed URL.
            connection.parse_target(url)
        return url
