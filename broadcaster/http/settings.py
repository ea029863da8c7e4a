"""The front-end's settings (``BROADCASTER_*``), read once at the entry point and passed
down. A command-line flag overrides its variable."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from broadcaster.core.request import PROVIDERS, Defaults
from broadcaster.core.settings import RedisSettings
from broadcaster.webhooks.settings import WebhookSettings


class Settings(RedisSettings, WebhookSettings):
    """The front-end (``python -m broadcaster serve``); its ``BROADCASTER_WEBHOOK_*``
    settings are ``WebhookSettings``'."""

    model_config = SettingsConfigDict(env_prefix="BROADCASTER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    keepalive_seconds: float = Field(15.0, gt=0)
    """A ``: ping`` comment goes out after this much silence on an SSE response."""
    retry_ms: int = Field(1000, ge=0)
    """The ``retry:`` an EventSource waits before reconnecting."""
    quiet_check_seconds: float = Field(60.0, gt=0)
    """A watched stream that is not ended and heard nothing for this long is checked
    against the log: a lost last message would otherwise go unnoticed."""
    pubsub_probe_seconds: float = Field(5.0, gt=0)
    """How often each pub/sub connection is pinged and its channels' homes checked (a
    connection can stay attached to a dead or partitioned node)."""
    ds_long_poll_seconds: float = Field(20.0, gt=0, le=600)
    """How long a Durable Streams ``live=long-poll`` read waits for data before 204."""
    ds_wait_replicas: int = Field(0, ge=0, le=16)
    """Durable Streams writes are acknowledged only once this many replicas have them
    (``WAIT``): a failover then loses nothing acknowledged. 0: as soon as the primary has
    them (Redis's replication is asynchronous)."""
    ds_wait_ms: int = Field(1000, ge=1)
    """How long a write waits for those replicas; then 503 (retry: producers are
    deduplicated)."""
    topic_linger_seconds: float = Field(5.0, ge=0)
    """A stream stays watched this long after its last viewer left, so the next long-poll
    or a reconnecting viewer finds it subscribed (0: stop watching at once)."""
    presence_heartbeat_seconds: float = Field(10.0, gt=0)
    """Each front-end says it is alive this often; one silent for two heartbeats (a
    ``kill -9``) has its viewers dropped from the counts within three."""
    viewer_buffer: int = Field(1024, ge=1)
    """Live events buffered per viewer; beyond, it catches up from Redis itself."""
    slow_viewer_timeout: float = Field(30.0, gt=0)
    """A viewer whose socket accepts nothing for this long is cut off (it resumes later)."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest request body (413 beyond)."""
    chat_max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest ``POST /v1/chat`` body (413 beyond): the AI SDK sends the whole chat each
    time, its files as ``data:`` URLs."""
    max_tokens_limit: int = Field(64000, ge=1)
    """Largest ``max_tokens`` a generation request may ask for."""
    default_provider: Literal["anthropic", "openai"] = "anthropic"
    """The provider of a request that names none."""
    providers: str | None = None
    """Comma-separated providers the deployment serves (``anthropic,openai``). A request
    for one of them is queued even while no worker is alive; one for any other is refused
    (422). Unset: the default provider, and every provider a worker has ever advertised."""
    chat_multitask: Literal["reject", "enqueue", "interrupt", "steer"] = "reject"
    """What a chat submit does while the chat's answer runs, unless its body says
    (``multitask``): refuse (409 ``chat_busy``), wait for its turn, cancel the running
    answer, or steer it at its next step."""
    chat_queue_max: int = Field(4, ge=1, le=100)
    """Messages a chat may hold waiting for their turn (``enqueue``); beyond, 409
    ``chat_queue_full``."""
    queued_timeout_seconds: float = Field(600.0, gt=0)
    """A generation no worker has worked on for this long (queued and never taken, or its
    worker died and none took it over) ends with ``error``."""
    default_model: str = "claude-sonnet-4-5"
    """The model of an Anthropic request that names none."""
    default_openai_model: str = "gpt-4.1-mini"
    """The model of an OpenAI request that names none (set it to the model your
    OpenAI-compatible server serves, such as ``llama3.2`` on Ollama)."""
    default_max_tokens: int = Field(1024, ge=1)
    abandon_after_seconds: float | None = Field(None, gt=0)
    """A generation that has had no viewer for this long is cancelled (its stream ends
    with ``abort``, reason ``abandoned``), unless its request says otherwise. Unset: a
    generation runs to its end whoever watches."""
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

    def served_providers(self) -> frozenset[str] | None:
        """``BROADCASTER_PROVIDERS`` parsed (None when unset); ValueError names an unknown
        provider."""
        if self.providers is None:
            return None
        names = frozenset(n.strip() for n in self.providers.split(",") if n.strip())
        unknown = names - set(PROVIDERS)
        if unknown or not names:
            raise ValueError(
                f"BROADCASTER_PROVIDERS: unknown provider(s) {sorted(unknown) or '(none)'}; "
                f"known: {', '.join(PROVIDERS)}"
            )
        return names

    def request_defaults(self) -> Defaults:
        """What a generation request that leaves them out gets, and its limits."""
        return Defaults(
            provider=self.default_provider,
            models=(("anthropic", self.default_model), ("openai", self.default_openai_model)),
            max_tokens=self.default_max_tokens,
            max_tokens_limit=self.max_tokens_limit,
            webhook_origins=self.webhook_origins(),
            abandon_after_seconds=self.abandon_after_seconds,
        )
