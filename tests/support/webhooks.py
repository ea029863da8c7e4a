"""Webhook receivers for the tests: real uvicorn servers on 127.0.0.1, each in a thread
of the test process, recording every request and answering as the test scripts them;
and the helpers the webhook tests share (settings, clean keys, what was received)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as redis_sync
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from broadcaster.core import keys
from broadcaster.core.embedded import free_port
from tests.support.polling import wait_for

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""The deployments' signing secret in these tests (Standard Webhooks' own example)."""


DATABASE = 7
"""The webhook tests' own database on the suite's Redis: the session's deployment (in
database 0) never takes their jobs, and their webhook keys are theirs alone."""


def own_database(redis_url: str) -> str:
    return f"{redis_url.rsplit('/', 1)[0]}/{DATABASE}"


def webhook_env(url: str | None = None, **extra: str) -> dict[str, str]:
    """A front-end's (or deliverer's) webhook settings with a short schedule."""
    env = {
        "BROADCASTER_WEBHOOK_SECRET": SECRET,
        "BROADCASTER_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "BROADCASTER_WEBHOOK_RETRY_MAX_SECONDS": "1",
        "BROADCASTER_WEBHOOK_RETRY_TOTAL_SECONDS": "600",
        "BROADCASTER_WEBHOOK_TIMEOUT_SECONDS": "2",
        "BROADCASTER_WEBHOOK_POLL_SECONDS": "0.1",
    }
    if url is not None:
        env["BROADCASTER_WEBHOOK_URL"] = url
    return env | extra


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1, in a thread, while inside."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", ws="none"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="receiver", daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for("the receiver did not start", lambda: self.server.started, 10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``answers[path]``: the statuses to answer there, in order, then ``then[path]``
    (200 unless set); or ``decide``, which overrides both when set."""

    answers: dict[str, list[int]] = field(default_factory=dict)
    then: dict[str, int] = field(default_factory=dict)
    decide: Callable[[Received], int] | None = None
    requests: list[Received] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    """Paths whose requests get no answer until ``release()``."""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        self.served = Served(app)
        self.port = self.served.port
        self.gate: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.hanging = 0

    def url(self, path: str = "hooks") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def release(self) -> None:
        """Answer the held requests (and let later ones through)."""
        self.held = set()
        if self.loop is not None and self.gate is not None:
            self.loop.call_soon_threadsafe(self.gate.set)

    async def _handle(self, request: Request) -> Response:
        if request.url.path.lstrip("/") in self.held:
            if self.gate is None:
                self.loop, self.gate = asyncio.get_running_loop(), asyncio.Event()
            self.hanging += 1
            await self.gate.wait()
        got = Received(request.url.path.lstrip("/"), dict(request.headers), await request.body(), 0)
        with self.lock:
            if self.decide is not None:
                got.answered = self.decide(got)
            else:
                queue = self.answers.get(got.path) or []
                got.answered = queue.pop(0) if queue else self.then.get(got.path, 200)
            self.requests.append(got)
        return Response(status_code=got.answered)

    def __enter__(self) -> Receiver:
        self.served.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.__exit__()

    def at(self, path: str = "hooks") -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def accepted(self, path: str = "hooks") -> list[Received]:
        return [r for r in self.at(path) if 200 <= r.answered < 300]


def clear_webhook_keys(client: redis_sync.Redis) -> None:
    """Forget every webhook key (outboxes, deliveries and their groups, the dead-letter
    list, move markers): each test starts from none, on the session's Redis."""
    doomed = [*keys.outbox_keys(), keys.WEBHOOK_DELIVERIES_KEY, keys.WEBHOOK_DEAD_KEY]
    doomed.append(keys.WEBHOOK_DELIVERERS_KEY)
    doomed += list(client.scan_iter(match=keys.webhook_moved_key("*"), count=1000))
    for i in range(0, len(doomed), 500):
        client.delete(*doomed[i : i + 500])
