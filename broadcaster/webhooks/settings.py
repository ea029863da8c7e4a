"""The webhook settings (``BROADCASTER_WEBHOOK_*``), shared by the front-end (which
decides, when a stream is created, whether its end sends webhooks, and by default runs a
deliverer) and ``python -m broadcaster webhooks run``."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook

from broadcaster.core.durability import DurabilitySettings
from broadcaster.core.names import origin_of
from broadcaster.core.settings import RedisSettings
from broadcaster.webhooks.schedule import RetrySchedule


class WebhookSettings(BaseSettings):
    """Mixed into the front-end's settings and the deliverer's (prefix ``BROADCASTER_``)."""

    webhook_url: str | None = None
    """The deployment's receiver: every generation and feed created gets webhooks here."""
    webhook_secret: SecretStr | None = None
    """``whsec_<base64>``: signs every webhook (Standard Webhooks, HMAC-SHA256)."""
    webhook_allowed_origins: str | None = None
    """Comma-separated origins (``https://hooks.example.com``) a generation's own
    ``webhook_url`` may name; none: the field is refused (422)."""
    webhook_delivery: bool = True
    """Run a deliverer in this front-end when webhooks are configured; false when
    ``python -m broadcaster webhooks run`` delivers instead."""
    webhook_retry_base_seconds: float = Field(1.0, gt=0)
    """The first retry waits up to this long; each next one up to twice the last."""
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    """No wait between two attempts is longer than this."""
    webhook_retry_total_seconds: float = Field(86400.0, gt=0)
    """A delivery is retried until this long after its event; the next failure then puts
    it on the dead-letter list."""
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    """One attempt, connecting included; longer counts as a failure (``timeout``)."""
    webhook_concurrency: int = Field(16, ge=1, le=1000)
    """Attempts in flight per deliverer (and its HTTP connections)."""
    webhook_poll_seconds: float = Field(1.0, gt=0)
    """On a Cluster, how often the outboxes are read; everywhere, the pause before the
    next page of a long retry backlog and between two refreshes of the backlog gauges
    while deliveries settle. Retries themselves are timed to when each is due."""
    webhook_sweep_seconds: float = Field(60.0, gt=0)
    """How often every pending delivery is looked at again whatever the deliverer knows
    (retries another deliverer scheduled, takeovers), the backlog gauges refreshed, and
    deliverers gone looked for."""

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        self.webhook_origins()  # a malformed entry stops the process at start
        if self.webhook_url is not None and origin_of(self.webhook_url) is None:
            raise ValueError("BROADCASTER_WEBHOOK_URL must be an absolute http or https URL")
        if self.webhooks_configured() and self.webhook_secret is None:
            raise ValueError(
                "BROADCASTER_WEBHOOK_URL or BROADCASTER_WEBHOOK_ALLOWED_ORIGINS needs "
                "BROADCASTER_WEBHOOK_SECRET (whsec_<base64>) to sign with"
            )
        if self.webhook_secret is not None:
            try:
                Webhook(self.webhook_secret.get_secret_value())
            except Exception:
                raise ValueError("BROADCASTER_WEBHOOK_SECRET must be whsec_<base64>") from None
        return self

    def webhook_origins(self) -> frozenset[str]:
        """The allow-list, each entry as ``origin_of`` writes it."""
        out = set()
        for entry in (self.webhook_allowed_origins or "").split(","):
            if not entry.strip():
                continue
            origin = origin_of(entry)
            rest = urlsplit(entry.strip())
            if origin is None or rest.path not in ("", "/") or rest.query or rest.fragment:
                raise ValueError(
                    f"BROADCASTER_WEBHOOK_ALLOWED_ORIGINS: {entry.strip()!r} is not an "
                    "origin (scheme://host[:port])"
                )
            out.add(origin)
        return frozenset(out)

    def webhooks_configured(self) -> bool:
        """Whether this deployment sends webhooks at all."""
        return self.webhook_url is not None or bool(self.webhook_origins())

    def retry_schedule(self) -> RetrySchedule:
        return RetrySchedule(
            self.webhook_retry_base_seconds,
            self.webhook_retry_max_seconds,
            self.webhook_retry_total_seconds,
        )


class DelivererSettings(RedisSettings, WebhookSettings, DurabilitySettings):
    """``python -m broadcaster webhooks run`` (and ``dead``, ``replay``); its moves are
    acknowledged under ``BROADCASTER_DURABILITY*``, as the front-end's are
    (``DurabilitySettings``)."""

    model_config = SettingsConfigDict(env_prefix="BROADCASTER_", extra="ignore")

    webhook_metrics_port: int = Field(0, ge=0, le=65535)
    """Serve the deliverer's Prometheus metrics on this port (0: off)."""
    webhook_metrics_host: str = "127.0.0.1"
    """The address the deliverer's ``/metrics`` listens on."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
