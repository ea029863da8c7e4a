"""The Python client for viewers and for producers without Redis access.

    async with StreamClient("http://127.0.0.1:8000") as client:
        async for event in client.events("job-42"):
            print(event.id, event.type, event.data)

``events()`` yields each event of the stream once, in seq order, and ends after the
terminal event (``finish``, ``error`` or ``abort``). After a dropped connection, a 5xx or
a 429 it reconnects by itself with ``Last-Event-ID``, waiting as the server asks
(``retry:`` and ``Retry-After``) with exponential backoff and jitter. Given several base
URLs (front-ends of one deployment) it moves to the next one after each failure.
Answers that retrying cannot fix raise a ``StreamClientError``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from broadcaster.core import names
from broadcaster.core.events import TERMINAL_TYPES

log = logging.getLogger("broadcaster.client")


@dataclass(frozen=True)
class ClientEvent:
    """One event of a stream: its seq, its type and its JSON object (``type`` included)."""

    id: int
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_TYPES


class StreamClientError(Exception):
    """The server refused the request in a way that retrying cannot fix."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body or {}


class StreamNotFound(StreamClientError):
    """404: no such stream, or it expired."""


class ResumePointAhead(StreamClientError):
    """409 on read: the resume point is past the newest event. Events this client saw are
    no longer in the stream (lost or rebuilt); start over from 0."""

    @property
    def last_event_id(self) -> int | None:
        value = self.body.get("last_event_id")
        return value if isinstance(value, int) else None


class Unauthorized(StreamClientError):
    """401 or 403: a missing, wrong or expired token or API key."""


class PublishRefused(StreamClientError):
    """409 on publish: the stream has ended, is a generation, or is not at
    ``expect_last_event_id`` (then ``last_event_id`` says where it is)."""

    @property
    def last_event_id(self) -> int | None:
        value = self.body.get("last_event_id")
        return value if isinstance(value, int) else None


class StreamUnavailable(Exception):
    """More than ``max_retries`` attempts in a row failed (no connection, 5xx, 429)."""


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class StreamClient:
    def __init__(
        self,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        api_key: str | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retries: int | None = None,
        read_timeout: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        """``base_url``: one front-end, or several of one deployment (tried in turn after
        failures). ``token``: a viewer token, sent as ``Authorization: Bearer`` when
        reading. ``api_key``: the producer key, sent when publishing. ``backoff_base``:
        the first reconnect delay, or the server's ``retry:`` if that is longer; delays
        double per failed attempt up to ``backoff_max`` (plus up to 25 % jitter), and a
        ``Retry-After`` is waited out as given. ``max_retries``:
        failed attempts in a row before ``StreamUnavailable`` (None: never give up).
        ``read_timeout``: silence (no event, no keepalive) after which the connection
        counts as dropped; keep it above the server's keepalive interval (15 s)."""
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url: at least one URL")
        self.base_urls = [u.rstrip("/") for u in urls]
        self._token = token
        self._api_key = api_key
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._max_retries = max_retries
        self._next = 0  # index of the base URL to try next
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(
                read_timeout, connect=connect_timeout, write=10.0, pool=connect_timeout
            ),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- reading ---

    async def events(
        self, stream_id: str, *, last_event_id: int | str | None = None
    ) -> AsyncIterator[ClientEvent]:
        """Every event after ``last_event_id`` (default: from the first), each once and
        in order, until the terminal event. Ends without one on 204, when the resume
        point already was the terminal event."""
        _check_stream_id(stream_id)
        resume = None if last_event_id is None else str(last_event_id)
        last_seq = _seq(resume) if resume is not None else 0
        server_retry: float | None = None
        failures = 0
        while True:
            url = f"{self._base()}/v1/streams/{stream_id}/events"
            headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
            if self._token:
                headers["authorization"] = f"Bearer {self._token}"
            if resume is not None:
                headers["last-event-id"] = resume
            try:
                async with self._http.stream("GET", url, headers=headers) as resp:
                    if resp.status_code == 204:
                        return
                    if resp.status_code != 200:
                        await resp.aread()
                        self._raise_for(resp, reading=True)
                    async for frame in _sse(resp.aiter_lines()):
                        if isinstance(frame, int):
                            server_retry = frame / 1000
                            continue
                        if frame.id is None or frame.data == "[DONE]":
                            continue
                        seq = _seq(frame.id)
                        if seq <= last_seq:
                            continue  # already delivered (defensive: the server dedups)
                        obj = json.loads(frame.data)
                        if not isinstance(obj, dict):
                            raise ValueError(f"event {frame.id}: data is not a JSON object")
                        event = ClientEvent(seq, frame.event or str(obj.get("type")), obj)
                        resume, last_seq, failures = frame.id, seq, 0
                        yield event
                        if event.terminal:
                            return
                raise _Retry("the response ended before the terminal event")
            except (_Retry, httpx2.TransportError) as exc:
                failures += 1
                after = exc.after if isinstance(exc, _Retry) else None
                await self._pause(failures, exc, after, server_retry)

    async def wait(self, stream_id: str, *, last_event_id: int | str | None = None) -> ClientEvent:
        """Follow the stream to its end and return its terminal event."""
        last: ClientEvent | None = None
        async for event in self.events(stream_id, last_event_id=last_event_id):
            last = event
        if last is None:  # 204: the resume point was the terminal event; fetch it
            seq = _seq(str(last_event_id or 0))
            if seq < 1:
                raise StreamClientError(204, "the stream ended without a terminal event")
            return await self.wait(stream_id, last_event_id=seq - 1)
        return last

    # --- publishing ---

    async def publish(
        self,
        stream_id: str,
        events: dict[str, Any] | Sequence[dict[str, Any]],
        *,
        expect_last_event_id: int | None = None,
    ) -> int:
        """``POST /v1/streams/{id}/events``: one event, or a list appended atomically and
        in order. Returns the seq of the last one; raises ``PublishRefused`` on 409.

        Retried after a failed connect, and after a 429 or 503 (the server asks for a
        retry). Other failures are raised: the append may have happened. A 503 can, rarely,
        follow an append whose reply Redis lost; with ``expect_last_event_id`` the retry
        of such an append is refused (``PublishRefused``) instead of appending twice."""
        _check_stream_id(stream_id)
        body = events if isinstance(events, dict) else list(events)
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        params = (
            {}
            if expect_last_event_id is None
            else {"expected_last_event_id": str(expect_last_event_id)}
        )
        failures = 0
        while True:
            url = f"{self._base()}/v1/streams/{stream_id}/events"
            try:
                resp = await self._http.post(url, json=body, headers=headers, params=params)
                if resp.status_code in (429, 503):
                    raise _Retry(f"{resp.status_code} {_message(resp)}", _retry_after(resp))
                if resp.status_code >= 500:
                    raise StreamClientError(resp.status_code, _message(resp), _body(resp))
                if resp.status_code != 201:
                    self._raise_for(resp, reading=False)
                seq: int = resp.json()["last_event_id"]
                return seq
            except (_Retry, httpx2.ConnectError, httpx2.ConnectTimeout) as exc:
                failures += 1
                await self._pause(failures, exc, getattr(exc, "after", None), None)

    # --- internals ---

    def _base(self) -> str:
        return self.base_urls[self._next % len(self.base_urls)]

    async def _pause(
        self, failures: int, exc: Exception, after: float | None, server_retry: float | None
    ) -> None:
        """After a failed attempt: give up past ``max_retries``, else move to the next
        base URL and wait (Retry-After if given, else the backoff)."""
        reason = str(exc) or type(exc).__name__
        if self._max_retries is not None and failures > self._max_retries:
            raise StreamUnavailable(f"giving up after {failures} attempts: {reason}") from exc
        failed = self._base()
        self._next += 1
        base = max(server_retry or 0.0, self._backoff_base)
        delay = min(self._backoff_max, base * 2 ** (failures - 1))
        delay += random.uniform(0, delay / 4)
        if after is not None:
            delay = after + random.uniform(0, 0.1)
        log.warning("%s: %s; retrying on %s in %.1fs", failed, reason, self._base(), delay)
        await asyncio.sleep(delay)

    def _raise_for(self, resp: httpx2.Response, *, reading: bool) -> None:
        status, body, message = resp.status_code, _body(resp), _message(resp)
        if status >= 500:
            raise _Retry(f"{status} {message}", _retry_after(resp))
        if status in (401, 403):
            raise Unauthorized(status, message, body)
        if status == 404:
            raise StreamNotFound(status, message, body)
        if status == 409:
            raise (ResumePointAhead if reading else PublishRefused)(status, message, body)
        raise StreamClientError(status, message, body)


def _body(resp: httpx2.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(resp: httpx2.Response) -> str:
    """The server's error message (its JSON ``message``), else the reason phrase."""
    return str(_body(resp).get("message") or resp.reason_phrase or "")


def _check_stream_id(stream_id: str) -> None:
    """A stream id goes into the URL's path: anything else is refused before a request."""
    if not names.is_stream_id(stream_id):
        raise ValueError(f"invalid stream id {stream_id!r}: use {names.STREAM_ID_PATTERN}")


def _seq(event_id: str) -> int:
    """The seq an event id begins with (a later server version may add ``.suffix``)."""
    point = names.resume_point(event_id) if event_id else None
    if point is None:
        raise ValueError(f"not an event id: {event_id!r}")
    return point[0]


def _retry_after(resp: httpx2.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Frame:
    id: str | None
    event: str | None
    data: str


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[_Frame | int]:
    """SSE parsing as a browser does it: an ``int`` for each ``retry:`` field (ms), a
    ``_Frame`` for each dispatched event; comments are skipped."""
    eid: str | None = None
    etype: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield _Frame(eid, etype, "\n".join(data))
            eid, etype, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            eid = value
        elif name == "event":
            etype = value
        elif name == "retry" and names.is_decimal(value):
            yield int(value)
