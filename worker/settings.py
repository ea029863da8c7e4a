"""Worker settings (``WORKER_*``), read once at the entry point."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from broadcaster.settings import RedisSettings


class WorkerSettings(RedisSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="ignore")

    provider: Literal["anthropic", "fake"] = "anthropic"
    concurrency: int = Field(8, ge=1, le=1000)
    """Generations run at once by one process."""
    merge_ms: float = Field(20.0, ge=0)
    """Deltas arriving within this window are merged into one event (0: one event per
    delta). Keeps a stream from being thousands of one-character events."""
    lease_seconds: float = Field(15.0, ge=1)
    """A job not refreshed for this long is taken over by another worker: the bound on how
    long a killed worker's generation waits."""
    max_attempts: int = Field(3, ge=1)
    """Attempts of one generation across workers (takeovers); then it ends with error."""
    provider_retries: int = Field(4, ge=0)
    """Retries of a provider error that happens before any output, with backoff."""
    retry_base_seconds: float = Field(0.5, ge=0)
    retry_max_seconds: float = Field(20.0, ge=0)
    redis_patience_seconds: float = Field(60.0, gt=0)
    """How long an append is retried while Redis does not answer (it is conditional, so a
    retry never writes twice); then the attempt fails and, after the lease, a worker takes
    the generation over."""
    read_timeout_seconds: float = Field(60.0, gt=0)
    """The model stream is given up after this long without a byte."""
    cancel_poll_seconds: float = Field(0.25, gt=0)
    """How often running generations are checked for a cancel."""
    grace_seconds: float = Field(20.0, ge=0)
    """On SIGTERM: time to finish running generations before handing them back."""
    fake_delay_ms: float = Field(25.0, ge=0)
    """The fake provider's pause between tokens."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    metrics_port: int = Field(0, ge=0, le=65535)
    """Serve Prometheus metrics on this port (0: off)."""
    metrics_host: str = "127.0.0.1"
