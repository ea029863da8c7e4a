"""Settings, read once at the entry point from the environment and passed down.

Names fixed by the contract (``REDIS_URL``, ``WORKER_PROVIDER``, …) are used as they are;
the front-end's own settings are ``BROADCASTER_*`` and the worker's ``WORKER_*``. A
command-line flag overrides its variable.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broadcaster import connection, keys


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


class Settings(RedisSettings):
    """The front-end (``python -m broadcaster serve``)."""

    model_config = SettingsConfigDict(env_prefix="BROADCASTER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    keepalive_seconds: float = Field(15.0, gt=0)
    """A ``: ping`` comment goes out after this much silence on an SSE response."""
    retry_ms: int = Field(1000, ge=0)
    """The ``retry:`` an EventSource waits before reconnecting."""
    read_block_ms: int = Field(5000, ge=100)
    """How long the shared reader's XREAD blocks."""
    viewer_buffer: int = Field(1024, ge=1)
    """Live events buffered per viewer; beyond, it catches up from Redis itself."""
    slow_viewer_timeout: float = Field(30.0, gt=0)
    """A viewer whose socket accepts nothing for this long is cut off (it resumes later)."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest request body (413 beyond)."""
    max_tokens_limit: int = Field(64000, ge=1)
    """Largest ``max_tokens`` a generation request may ask for."""
    default_model: str = "claude-sonnet-4-5"
    default_max_tokens: int = Field(1024, ge=1)
    reuse_port: bool = False
    """Bind with SO_REUSEPORT, so several ``serve`` processes share one port and the
    kernel spreads connections over them: one process per core (docs/performance.md)."""
    shutdown_seconds: float = Field(8.0, gt=0)
    """On SIGTERM, open responses are ended at once; this bounds the whole shutdown."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    """``json``: one object per line with ``stream_id`` on lines about a stream."""

    # --- access control (see docs/security.md) ---
    api_keys: str | None = None
    """Comma-separated ``sha256:<hex>[:right+right]`` digests of the producers' API keys."""
    token_secret: SecretStr | None = None
    """Signs viewer tokens; with it, reading a stream needs a token for that stream."""
    token_ttl_seconds: int = Field(3600, ge=1)
    """Lifetime of the viewer token returned by ``POST /v1/generations``."""
    token_max_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    """Longest lifetime ``POST /v1/streams/{id}/tokens`` grants."""
    insecure: bool = False
    """Serve beyond loopback without API keys and a token secret (logged loudly)."""
    cors_origins: str | None = None
    """Comma-separated origins allowed to call the API from a browser; none by default."""

    # --- limits, per front-end process unless said otherwise ---
    max_connections: int = Field(10_000, ge=1)
    """Open SSE responses; beyond, 503 with Retry-After."""
    max_viewers_per_stream: int = Field(5_000, ge=1)
    """Open SSE responses on one stream; beyond, 503 with Retry-After."""
    max_generations_in_flight: int = Field(1_000, ge=1)
    """Queued plus running generations, across the deployment; beyond, 503."""
    rate_limit_per_minute: int = Field(600, ge=0)
    """Requests per API key per minute, shared by all front-ends through Redis (0: off)."""
