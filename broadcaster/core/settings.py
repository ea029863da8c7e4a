"""Settings every process shares (where Redis is, stream limits and TTLs), read once at
the entry point from the environment and passed down.

Names fixed by the contract (``REDIS_URL``, ``WORKER_PROVIDER``, …) are used as they are;
the front-end's own settings are ``BROADCASTER_*`` and the worker's ``WORKER_*``. A
command-line flag overrides its variable.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn, TypeVar

from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from broadcaster.core import connection, keys

BAD_SETTINGS_EXIT = 2
"""A process started with a malformed setting exits with this status (as argparse does
for a bad argument), after one line that says which."""

_HIDDEN = ("SECRET", "KEY", "TOKEN", "PASSWORD")
"""A variable whose name holds one of these words has its value left out of messages."""

S = TypeVar("S", bound=BaseSettings)


def bad_settings(prog: str, problem: str) -> NoReturn:
    """Print ``prog: bad settings: problem`` on one line and exit 2."""
    print(f"{prog}: bad settings: {' '.join(problem.split())}", file=sys.stderr)
    raise SystemExit(BAD_SETTINGS_EXIT)


def load_settings(cls: type[S], prog: str, **overrides: Any) -> S:
    """``cls(**overrides)`` read from the environment; a malformed value stops the process
    with one line naming the variable, its value and what it expects (exit 2), not a
    traceback naming a pydantic field."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        bad_settings(prog, "; ".join(describe_error(cls, e) for e in exc.errors()))
    except SettingsError as exc:  # a value that is not the JSON a list or dict wants
        bad_settings(prog, str(exc))


def variable_of(cls: type[BaseSettings], name: str) -> str:
    """The environment variable a field (or the alias an error names) is read from."""
    field = cls.model_fields.get(name)
    if field is None:
        return name  # already the alias: REDIS_URL, BROADCASTER_DATA_DIR, …
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def describe_error(cls: type[BaseSettings], error: ErrorDetails) -> str:
    """One validation error as ``VARIABLE='value': what it expects``."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check of several settings together: its message says which
        return message
    variable = variable_of(cls, str(error["loc"][0]))
    value = error.get("input")
    shown = "(hidden)" if any(w in variable for w in _HIDDEN) else repr(value)[:80]
    return f"{variable}={shown}: {message[:1].lower()}{message[1:]}"


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
    """The name the Sentinels monitor the primary under (required with ``REDIS_SENTINELS``)."""
    data_dir: str = Field(".broadcaster", validation_alias="BROADCASTER_DATA_DIR")
    """Folder of the embedded Redis (its data, log, port file and URL file)."""
    embedded_redis_port: int = Field(
        6379, ge=0, le=65535, validation_alias="BROADCASTER_EMBEDDED_REDIS_PORT"
    )
    """The port the embedded Redis listens on (on 127.0.0.1), so that a client's
    ``redis://localhost:6379/0`` reaches a demo; taken (another Redis), a free port,
    said in the log and written to ``redis.url`` in the data folder. 0: any free port."""
    redis_pool_size: int = Field(64, ge=2, validation_alias="BROADCASTER_REDIS_POOL_SIZE")
    """Connections per process for short commands; more callers wait for a free one."""
    ended_ttl_seconds: int = Field(keys.ENDED_TTL, ge=1, validation_alias="BROADCASTER_ENDED_TTL")
    """An ended stream and its metadata expire this many seconds after its end."""
    idle_ttl_seconds: int = Field(keys.IDLE_TTL, ge=1, validation_alias="BROADCASTER_IDLE_TTL")
    """A stream that is not ended expires after this long without an append (a running
    stream is never trimmed)."""
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
