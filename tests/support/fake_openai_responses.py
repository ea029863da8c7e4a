"""A local stand-in for OpenAI's Responses API, speaking its streaming wire format, with
background responses kept in memory.

Point the real ``openai`` SDK at it (``base_url=srv.base_url`` or ``OPENAI_BASE_URL``; the
URL ends in ``/v1``). It is the fake Anthropic server's HTTP machinery (a real TCP server on
127.0.0.1, scripts, records) with the Responses routes:

* ``POST /v1/responses`` (``stream: true``, ``background: true``, ``store: true``, else
  400) creates a response and plays its script in the background, on the server's loop,
  whatever becomes of the connection: every event gets the next ``sequence_number`` and
  is kept. The connection streams the events as they come (``event: <type>`` and
  ``data: <json>``), until the response ends or the client leaves.
* ``GET /v1/responses/{id}?stream=true&starting_after=N`` streams the same response again,
  from the event after ``N`` (those kept, then the rest as they come); without
  ``stream``, the response object. An unknown or expired (``srv.expire(id)``) response is
  404.
* ``POST /v1/responses/{id}/cancel`` stops the script; the response is ``cancelled``.

Scripts are lists of ``Frame``\\ s (one event each, without ``sequence_number``; ``{id}``
and ``{model}`` are filled in) and ``Gate``\\ s, ``Delay``\\ s; an ``HttpError`` first
answers the create instead::

    srv.enqueue(reply(reasoning=["Thinking"], text=["Hel", "lo"]))
    srv.enqueue(reply(calls=[call("call_1", "add", ['{"a": 1', ', "b": 2}'])]))
    srv.enqueue([*reply(text=["a", "b"])[:8], gate(opened), *reply(text=["a", "b"])[8:]])
    srv.enqueue([*reply(text=["a"])[:6], stream_error("boom")])
    srv.enqueue([http_error(429)])

The completed response's usage says what the API says: ``input_tokens`` (all input)
with ``input_tokens_details.cached_tokens``, ``output_tokens`` with
``output_tokens_details.reasoning_tokens``. With a prompt cache
(``FakeResponsesServer(cache=OpenAICache())``) the input counts are what the cache billed
for the request's ``instructions`` and input items under its ``prompt_cache_key``, and
``exchange.bill`` of the create keeps it.

Like the real API it refuses (400) a ``function_call_output`` that answers no
``function_call`` before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.support.fake_anthropic import (
    Delay,
    Exchange,
    FakeAnthropicServer,
    Frame,
    Gate,
    HttpError,
    Script,
    _chunk,
    _ClientGone,
    _Conn,
    delay,
    gate,
)
from tests.support.fake_openai import error_body, http_error
from tests.support.prompt_cache import Bill, OpenAICache

__all__ = [
    "FakeResponsesServer",
    "call",
    "delay",
    "failed",
    "gate",
    "http_error",
    "reply",
    "stream_error",
    "url_citation",
]

TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})


def _event(kind: str, **data: Any) -> Frame:
    return Frame(kind, {"type": kind, **data})


def _response(status: str, **extra: Any) -> dict[str, Any]:
    """A response object; ``{id}`` and ``{model}`` are filled in as it plays."""
    return {
        "id": "{id}",
        "object": "response",
        "created_at": 1700000000,
        "model": "{model}",
        "status": status,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "background": True,
        "error": None,
        "incomplete_details": None,
        "usage": None,
        **extra,
    }


@dataclass(frozen=True)
class Call:
    call_id: str
    name: str
    fragments: tuple[str, ...]


def call(call_id: str, name: str, fragments: Sequence[str]) -> Call:
    """A function call whose arguments stream in ``fragments``."""
    return Call(call_id, name, tuple(fragments))


def _reasoning(oi: int, chunks: Sequence[str]) -> Script:
    item = {"type": "reasoning", "id": f"rs_{oi}", "summary": []}
    part = {"type": "summary_text", "text": ""}
    where = {"item_id": item["id"], "output_index": oi, "summary_index": 0}
    whole = {"type": "summary_text", "text": "".join(chunks)}
    return [
        _event("response.output_item.added", output_index=oi, item=item),
        _event("response.reasoning_summary_part.added", **where, part=part),
        *(_event("response.reasoning_summary_text.delta", **where, delta=c) for c in chunks),
        _event("response.reasoning_summary_text.done", **where, text=whole["text"]),
        _event("response.reasoning_summary_part.done", **where, part=whole),
        _event("response.output_item.done", output_index=oi, item={**item, "summary": [whole]}),
    ]


def url_citation(url: str, title: str, start: int = 0, end: int = 0) -> dict[str, Any]:
    """A Responses ``url_citation`` annotation."""
    return {
        "type": "url_citation",
        "url": url,
        "title": title,
        "start_index": start,
        "end_index": end,
    }


def _message(oi: int, chunks: Sequence[str], annotations: Sequence[dict[str, Any]] = ()) -> Script:
    item = {"type": "message", "id": f"msg_{oi}", "role": "assistant", "status": "in_progress"}
    where = {"item_id": item["id"], "output_index": oi, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    whole = {**part, "text": "".join(chunks), "annotations": list(annotations)}
    done = {**item, "status": "completed", "content": [whole]}
    return [
        _event("response.output_item.added", output_index=oi, item={**item, "content": []}),
        _event("response.content_part.added", **where, part=part),
        *(_event("response.output_text.delta", **where, delta=c, logprobs=[]) for c in chunks),
        *(
            _event(
                "response.output_text.annotation.added", **where, annotation_index=n, annotation=a
            )
            for n, a in enumerate(annotations)
        ),
        _event("response.output_text.done", **where, text=whole["text"], logprobs=[]),
        _event("response.content_part.done", **where, part=whole),
        _event("response.output_item.done", output_index=oi, item=done),
    ]


def _function_call(oi: int, c: Call) -> Script:
    item = {
        "type": "function_call",
        "id": f"fc_{oi}",
        "call_id": c.call_id,
        "name": c.name,
        "arguments": "",
        "status": "in_progress",
    }
    where = {"item_id": item["id"], "output_index": oi}
    arguments = "".join(c.fragments)
    done = {**item, "arguments": arguments, "status": "completed"}
    return [
        _event("response.output_item.added", output_index=oi, item=item),
        *(_event("response.function_call_arguments.delta", **where, delta=f) for f in c.fragments),
        _event("response.function_call_arguments.done", **where, arguments=arguments),
        _event("response.output_item.done", output_index=oi, item=done),
    ]


def reply(
    *,
    text: Sequence[str] = (),
    reasoning: Sequence[str] = (),
    calls: Sequence[Call] = (),
    input_tokens: int = 12,
    output_tokens: int | None = None,
    cached_tokens: int = 0,
    reasoning_tokens: int | None = None,
    annotations: Sequence[dict[str, Any]] = (),
) -> Script:
    """A whole response: created, in progress, a reasoning summary, a message (its
    ``annotations`` added after its text), function
    calls (in that order, each present if given), completed with its usage (output tokens
    one per chunk and call, reasoning tokens one per reasoning chunk, by default)."""
    steps: Script = [
        _event("response.created", response=_response("queued")),
        _event("response.in_progress", response=_response("in_progress")),
    ]
    oi = itertools.count()
    if reasoning:
        steps += _reasoning(next(oi), reasoning)
    if text:
        steps += _message(next(oi), text, annotations)
    for c in calls:
        steps += _function_call(next(oi), c)
    out = output_tokens if output_tokens is not None else len(text) + len(reasoning) + len(calls)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens},
        "output_tokens": out,
        "output_tokens_details": {
            "reasoning_tokens": len(reasoning) if reasoning_tokens is None else reasoning_tokens
        },
        "total_tokens": input_tokens + out,
    }
    steps.append(_event("response.completed", response=_response("completed", usage=usage)))
    return steps


def stream_error(message: str = "The server had an error", code: str = "server_error") -> Frame:
    """An ``error`` event, as the API sends when a stream fails."""
    return _event("error", code=code, message=message, param=None)


def failed(message: str = "The model failed", code: str = "server_error") -> Frame:
    """``response.failed``: the response ends with an error."""
    error = {"code": code, "message": message}
    return _event("response.failed", response=_response("failed", error=error))


@dataclass
class StoredResponse:
    """A background response: its events so far, with their sequence numbers."""

    id: str
    model: str
    script: Script
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "queued"
    expired: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    bill: Bill | None = None

    def filled(self, data: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(data).replace('"{id}"', json.dumps(self.id))
        out = dict(json.loads(text.replace('"{model}"', json.dumps(self.model))))
        usage = (out.get("response") or {}).get("usage")
        if self.bill is not None and isinstance(usage, dict):
            usage |= {
                "input_tokens": self.bill.total,
                "input_tokens_details": {"cached_tokens": self.bill.cache_read},
                "total_tokens": self.bill.total + int(usage.get("output_tokens") or 0),
            }
        return out

    def as_json(self) -> dict[str, Any]:
        return self.filled(_response(self.status))


class FakeResponsesServer(FakeAnthropicServer):
    """``with FakeResponsesServer() as srv:``; ``srv.base_url`` ends in ``/v1``."""

    def __init__(
        self, *, api_key: str | None = None, port: int = 0, cache: OpenAICache | None = None
    ) -> None:
        super().__init__(
            api_key=api_key, default_script=reply(text=["Hello", " there."]), port=port
        )
        self.cache = cache
        self.stored: dict[str, StoredResponse] = {}
        self.cancelled: list[str] = []
        self._players: set[asyncio.Task[None]] = set()
        self._response_ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """Stop the background responses still playing (awaited), then the server."""
        loop = self._loop
        if loop is not None and self._thread is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                asyncio.run_coroutine_threadsafe(self._stop_players(), loop).result(10)
        super().stop()

    async def _stop_players(self) -> None:
        players = list(self._players)
        for player in players:
            player.cancel()
        await asyncio.gather(*players, return_exceptions=True)

    # ---- what the tests read

    @property
    def created(self) -> int:
        """Responses created (each a model call a real API bills)."""
        with self._cond:
            return len(self.stored)

    def retrievals(self) -> list[Exchange]:
        """The ``GET /v1/responses/{id}`` requests that streamed a response again."""
        return [e for e in self.exchanges if e.method == "GET" and "stream=true" in e.path]

    def status(self, response_id: str) -> str:
        with self._cond:
            return self.stored[response_id].status

    def wait_cancelled(self, n: int = 1, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.cancelled) >= n, timeout)

    def expire(self, response_id: str) -> None:
        """The response is gone, as after its retention period: 404 from now on."""
        with self._cond:
            self.stored[response_id].expired = True

    # ---- routes

    def _next_script(self, body: Any) -> Script:
        items = body.get("input") if isinstance(body, dict) else None
        last = str(items[-1]) if isinstance(items, list) and items else ""
        for marker, queue in self._routes.items():
            if queue and marker in last:
                return queue.popleft()
        return self._scripts.popleft() if self._scripts else list(self._default)

    async def _answer(
        self,
        conn: _Conn,
        *,
        method: str,
        target: str,
        headers: dict[str, str],
        raw_body: bytes,
        keep_alive: bool,
    ) -> None:
        path, _, query = target.partition("?")
        exchange = self._record(conn, method, target, headers, raw_body)
        error, stored, after = self._route(method, path, parse_qs(query), headers, exchange.body)
        if stored is not None and method == "POST" and path.rstrip("/") == "/v1/responses":
            exchange.bill = stored.bill
        if error is not None:
            await self._send_json(conn, error, keep_alive)
        elif stored is None:
            pass  # answered in _route's JSON
        elif after is None:
            await self._send_json(conn, HttpError(200, stored.as_json(), {}), keep_alive)
        else:
            await self._stream(conn, exchange, stored, after)
        self._finish(exchange)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
    ) -> tuple[HttpError | None, StoredResponse | None, int | None]:
        """(an error, or the response and where to stream it from: None for its JSON)."""
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            return _simple(401, "invalid_api_key", "Incorrect API key provided"), None, None
        parts = path.strip("/").split("/")
        if parts[:2] != ["v1", "responses"]:
            return _simple(404, "not_found_error", f"no route {path}"), None, None
        if len(parts) == 2 and method == "POST":
            return self._create(body)
        with self._cond:
            stored = self.stored.get(parts[2]) if len(parts) > 2 else None
        if stored is None or stored.expired:
            return (
                _simple(404, "not_found_error", f"No response found with id '{parts[2:3]}'."),
                None,
                None,
            )
        if len(parts) == 4 and parts[3] == "cancel" and method == "POST":
            self._cancel(stored)
            return None, stored, None
        if len(parts) == 3 and method == "GET":
            if query.get("stream") == ["true"]:
                return None, stored, int(query.get("starting_after", ["0"])[0])
            return None, stored, None
        return _simple(405, "invalid_request_error", f"{method} {path}"), None, None

    def _create(self, body: Any) -> tuple[HttpError | None, StoredResponse | None, int | None]:
        if not isinstance(body, dict) or not all(
            body.get(k) is True for k in ("stream", "background", "store")
        ):
            return (
                _simple(
                    400, "invalid_request_error", "the fake runs background stored streams only"
                ),
                None,
                None,
            )
        problem = _calls_problem(body.get("input"))
        if problem is not None:
            return _simple(400, "invalid_request_error", problem), None, None
        with self._cond:
            script = self._next_script(body)
        if script and isinstance(script[0], HttpError):
            return script[0], None, None
        rid = f"resp_fake_{next(self._response_ids):04d}"
        stored = StoredResponse(rid, str(body.get("model") or "gpt-fake"), script)
        if self.cache is not None:
            prompt = [body.get("instructions") or "", *body["input"]]
            with self._cond:
                stored.bill = self.cache.bill(prompt, body.get("prompt_cache_key"))
        with self._cond:
            self.stored[rid] = stored
            self._cond.notify_all()
        player = asyncio.get_running_loop().create_task(self._play_in_background(stored))
        self._players.add(player)
        player.add_done_callback(self._players.discard)
        return None, stored, 0

    def _cancel(self, stored: StoredResponse) -> None:
        with self._cond:
            if stored.status not in TERMINAL:
                stored.status = "cancelled"
            self.cancelled.append(stored.id)
            self._cond.notify_all()

    # ---- the background player and the streams

    async def _play_in_background(self, stored: StoredResponse) -> None:
        for step in stored.script:
            if stored.status == "cancelled":
                break
            if isinstance(step, Delay):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Gate):
                # Opened by the test's thread; a cancel ends the wait too.
                opened = False
                while not opened and stored.status != "cancelled":
                    opened = await asyncio.to_thread(step.opened.wait, 0.05)
            elif isinstance(step, Frame):
                data = stored.filled(step.data)
                response = data.get("response")
                with self._cond:
                    if isinstance(response, dict):
                        stored.status = str(response.get("status"))
                    data["sequence_number"] = len(stored.events) + 1
                    stored.events.append(data)
                if data["type"] == "error":
                    stored.status = "failed"
            async with stored.changed:
                stored.changed.notify_all()
        if stored.status not in TERMINAL:
            stored.status = "cancelled" if stored.status == "cancelled" else "incomplete"
        async with stored.changed:
            stored.changed.notify_all()

    async def _stream(
        self, conn: _Conn, exchange: Exchange, stored: StoredResponse, after: int
    ) -> None:
        """The events after ``after``, as they come, until the response ends or the client
        leaves (the response plays on)."""
        head = [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream; charset=utf-8",
            "transfer-encoding: chunked",
            "connection: close",
        ]
        watcher = asyncio.create_task(_until_eof(conn))
        try:
            await conn.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            sent = after
            while True:
                while sent < len(stored.events):
                    data = stored.events[sent]
                    sent += 1
                    payload = f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()
                    await conn.write(_chunk(payload))
                    exchange.frames_sent += 1
                if stored.status in TERMINAL and sent >= len(stored.events):
                    break
                if watcher.done():
                    raise _ClientGone
                async with stored.changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stored.changed.wait(), 0.05)
            await conn.write(b"0\r\n\r\n")
        except _ClientGone:
            self._client_left(exchange)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            conn.writer.close()


async def _until_eof(conn: _Conn) -> None:
    """Returns when the client has closed its end (it sends nothing while it reads)."""
    with contextlib.suppress(ConnectionError, OSError):
        while await conn._fill():
            pass


def _simple(status: int, kind: str, message: str) -> HttpError:
    return HttpError(status, error_body(message, kind), {})


def _calls_problem(items: Any) -> str | None:
    """What the API says of a function_call_output that answers no function_call."""
    if not isinstance(items, list) or not items:
        return "input: must be a non-empty array"
    called: set[str] = set()
    for n, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call":
            called.add(str(item.get("call_id")))
        elif kind == "function_call_output" and item.get("call_id") not in called:
            return (
                "No tool call found for function call output with call_id "
                f"{item.get('call_id')} (input[{n}])."
            )
    return None
