"""Names from outside that are no names (a line break, another control character, a digit
or a letter outside ASCII) on a real front-end and Redis: each refused with a clear
answer before it reaches Redis, a header or an SSE line, never stored and never a
dropped connection. And the Lua scripts, called directly as another program (or an
older client, whose checks let a final newline through) could call them, refusing the
names the Python side refuses.

The front-end has no worker, its providers advertised: a chat submit that got through
would leave a job in the queue, which is how "before any model call" is checked.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis.exceptions import ResponseError

from broadcaster.core import connection, keys
from broadcaster.core.embedded import EmbeddedRedis
from broadcaster.core.eventlog import EventLog, script
from broadcaster.core.events import InvalidEvent
from broadcaster.durable.storage import ds_script
from broadcaster.webhooks.outbox import Outbox
from tests.support.procs import Proc, read_sse, start_frontend

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}

BAD_IDS = [
    "abc%0A",  # the security review's: a final newline
    "abc%0D",
    "%0Aabc",
    "abc%0D%0A",
    "ab%0Ac",
    "abc%00",
    "abc%09",
    "abc%7F",  # DEL
    "abc%C2%85",  # NEL, a C1 control character
    "abc%D9%A3",  # an Arabic-Indic digit three
    "abc%C3%A9",  # a letter outside ASCII
]
"""Stream and chat ids as they appear in a URL's path (percent-encoded)."""

BAD_TYPES = ["x\n", "x\r", "\nx", "x\r\n", "a\nb", "x\x00", "x\x7f", "x\x85", "x٣", "é", "x\u2028"]


@pytest.fixture(scope="module")
def stack(
    idle_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, str]]:
    """A front-end on the idle Redis (no worker, its providers advertised, so that
    generations and chats are accepted and queued)."""
    logs: Path = tmp_path_factory.mktemp("names")
    frontend = start_frontend(idle_redis.url, logs, "names-frontend")
    try:
        yield frontend, idle_redis.url
    finally:
        frontend.stop()


@pytest.fixture
def url(stack: tuple[Proc, str]) -> str:
    return stack[0].url


@pytest.fixture
def store(stack: tuple[Proc, str]) -> Iterator[redis_sync.Redis]:
    client = redis_sync.Redis.from_url(stack[1])
    yield client
    client.close()


def foreign(name: bytes) -> bool:
    """Whether a key or a stream name holds a byte outside printable ASCII."""
    return any(b < 0x20 or b > 0x7E for b in name)


def leaked(store: redis_sync.Redis) -> list[bytes]:
    """Keys, and names announced in the groups' indexes, that hold a control character or
    a byte outside ASCII: what a name that got through would leave behind."""
    found = [k for k in store.scan_iter(count=1000) if foreign(k)]
    for key in keys.names_keys():
        found += [n for n in store.zrange(key, 0, -1) if foreign(n)]
    return found


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    body = r.json()
    assert body["message"], body
    if code is not None:
        assert body["error"] == code, body


# --- paths ---


async def test_a_path_with_a_final_newline_names_no_route(
    url: str, store: redis_sync.Redis
) -> None:
    """Routes are matched by patterns ending in ``$``, which also matches before a final
    newline: without a check of its own, ``/v1/stream/a%0A`` reached the route as ``a``."""
    sid = new_id("tail")
    path = f"/v1/stream/names/{sid}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for method, bad in (
            ("PUT", path + "%0A"),
            ("POST", f"/v1/streams/{sid}/events%0A"),
            ("POST", "/v1/generations%0A"),
            ("GET", "/healthz%0A"),
            ("GET", f"/v1/events%0A?stream={sid}"),
        ):
            r = await client.request(method, bad, json={"type": "x", "prompt": "hi"})
            assert_error(r, 404, "not_found")
        r = await client.get(path)
        assert_error(r, 404, "not_found")  # the PUT created nothing at the path without it
        r = await client.get(f"/v1/streams/{sid}/events")
        assert_error(r, 404, "not_found")
        r = await client.get("/healthz")
        assert r.status_code == 200
    assert leaked(store) == []


# --- events and stream ids ---


async def test_an_event_type_with_a_line_break_is_422_and_nothing_is_stored(
    url: str, store: redis_sync.Redis
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for bad in BAD_TYPES:
            sid = new_id("p")
            for body in ({"type": bad}, [{"type": "data-ok"}, {"type": bad}]):
                r = await client.post(f"/v1/streams/{sid}/events", json=body)
                assert_error(r, 422, "invalid_event")
            r = await client.get(f"/v1/streams/{sid}/events")
            assert_error(r, 404, "not_found")  # nothing was stored, not even the first
        sid = new_id("p")
        r = await client.post(f"/v1/streams/{sid}/events", json={"type": "data-ok"})
        assert r.status_code == 201, r.text  # the route itself takes a good one
    assert not store.exists(keys.meta_key("p1\n"))
    assert leaked(store) == []


async def test_a_stream_id_with_a_line_break_is_refused_on_every_route(
    url: str, store: redis_sync.Redis
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for bad in BAD_IDS:
            for method, path in (
                ("POST", f"/v1/streams/{bad}/events"),
                ("GET", f"/v1/streams/{bad}/events"),  # the SSE route's own fast path
                ("GET", f"/v1/streams/{bad}/viewers"),
                ("POST", f"/v1/streams/{bad}/tokens"),
                ("GET", f"/v1/generations/{bad}"),
                ("POST", f"/v1/generations/{bad}/cancel"),
                ("POST", f"/v1/generations/{bad}/approvals"),
            ):
                r = await client.request(method, path, json={"type": "x"})
                assert_error(r, 404, "not_found")
            r = await client.get(f"/v1/streams/{bad}/events", headers={"last-event-id": "3"})
            assert_error(r, 404, "not_found")
            for param in ("stream", "prefix"):
                r = await client.get(f"/v1/events?{param}={bad}")
                assert_error(r, 400, "bad_request")
            r = await client.get(f"/v1/events?stream=fine&prefix={bad}")
            assert_error(r, 400, "bad_request")
        for bad_id in ("abc\n", "abc\r", "ab٣", "abc\x85"):
            r = await client.post("/v1/generations", json={"prompt": "hi", "id": bad_id})
            assert_error(r, 422, "invalid_request")
    assert leaked(store) == []


async def test_resume_points_with_a_line_break_or_a_foreign_digit_are_400(
    url: str, store: redis_sync.Redis
) -> None:
    sid = new_id("ended")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        r = await client.post(
            f"/v1/streams/{sid}/events", json=[{"type": "a"}, {"type": "b"}, {"type": "finish"}]
        )
        assert r.status_code == 201, r.text
        ok = await read_sse(client, url + f"/v1/streams/{sid}/events?last_event_id=2")
        assert ok.status == 200 and ok.ids == [3]
        for bad in ("2%0A", "%0A2", "2%0D", "2%09", "2.%0A", "%D9%A2", "%EF%BC%92", "2.%C3%A9"):
            r = await client.get(f"/v1/streams/{sid}/events?last_event_id={bad}")
            assert_error(r, 400, "bad_resume_point")
        for raw in (b"\xd9\xa2", b"2\x85", b"2.\xc3\xa9"):  # header bytes, decoded as Latin-1
            r = await client.get(f"/v1/streams/{sid}/events", headers={"last-event-id": raw})
            assert_error(r, 400, "bad_resume_point")

        many = f"/v1/events?stream={sid}&last_event_id="
        r = await client.get(many + f"-.~{sid}=3")
        assert r.status_code == 204, r.text  # the well-formed point: the end, seen
        for bad in (f"-.~{sid}=3%0A", f"-.~{sid}=%D9%A3", "-%0A", f"-.~{sid}%0A=3", "%0A-"):
            r = await client.get(many + bad)
            assert_error(r, 400, "bad_resume_point")
    assert leaked(store) == []


# --- chats ---


def chat_body(**fields: Any) -> dict[str, Any]:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    return {"messages": [message], "trigger": "submit-message", **fields}


def queued_jobs(store: redis_sync.Redis) -> int:
    return sum(int(store.xlen(keys.jobs_key(p))) for p in ("anthropic", "openai"))


async def test_a_chat_id_with_a_line_break_is_422_before_any_model_call(
    url: str, store: redis_sync.Redis
) -> None:
    before = queued_jobs(store)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for bad in ("abc\n", "abc\r\n", "\nabc", "abc\x00", "abc\x85", "ab٣", "abé"):
            for field in ("id", "chatId"):
                r = await client.post("/v1/chat", json=chat_body(**{field: bad}))
                assert_error(r, 422, "invalid_request")
        assert queued_jobs(store) == before, "a refused chat queued a job for a model"
        assert leaked(store) == []

        for bad in BAD_IDS:
            for method, path in (
                ("GET", f"/v1/chat/{bad}/stream"),
                ("GET", f"/v1/chat/{bad}/messages"),
                ("GET", f"/v1/chat/{bad}/viewers"),
                ("POST", f"/v1/chat/{bad}/stop"),
                ("POST", f"/v1/chat/{bad}/approvals"),
                ("POST", f"/v1/chat/{bad}/tokens"),
            ):
                r = await client.request(method, path, json={})
                assert_error(r, 404, "not_found")

        # A good submit does queue its model call: the count above could have moved.
        chat = new_id("chat")
        async with client.stream("POST", "/v1/chat", json=chat_body(id=chat)) as r:
            assert r.status_code == 200
            assert r.headers["x-chat-id"] == chat
            generation = r.headers["x-generation-id"]
        assert queued_jobs(store) == before + 1
        # Run ids: chat~generation~base, the base in ASCII digits.
        for bad_base in ("1%0A", "%0A1", "%C2%B2", "%D9%A1", "1%C2%85"):
            r = await client.get(f"/v1/chat/{chat}~{generation}~{bad_base}/stream")
            assert_error(r, 404, "not_found")
        r = await client.get(f"/v1/chat/{chat}%0A~{generation}~0/stream")
        assert_error(r, 404, "not_found")
    assert leaked(store) == []


# --- Durable Streams ---


async def test_a_durable_streams_offset_with_a_line_break_is_400_with_a_body(
    url: str, store: redis_sync.Redis
) -> None:
    path = f"/v1/stream/names/{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        r = await client.put(path, headers=JSON, content=b'[{"a":1}]')
        assert r.status_code == 201, r.text
        r = await client.get(path + "?offset=0000000000000000_0000000000000000")
        assert r.status_code == 200 and r.json() == [{"a": 1}]
        for bad in (
            "0_0%0A",  # the security review's: the connection was dropped, no answer
            "%0A0_0",
            "0_0%0D",
            "0_0%0D%0A",
            "-1%0A",
            "now%0A",
            "%D9%A0_0",
            "0_%D9%A0",
            "0_0%C2%85",
        ):
            for live in ("", "&live=long-poll", "&live=sse"):
                r = await client.get(f"{path}?offset={bad}{live}")
                assert_error(r, 400, "bad_request")
                assert "offset" in r.json()["message"]
        for raw in (b"0_0\x85", b"\xd9\xa0_0", b"0_\xef\xbc\x90"):  # header bytes, as Latin-1
            fork = {"stream-forked-from": path, "stream-fork-offset": raw}
            r = await client.put(path + "-fork", headers={**JSON, **fork})
            assert_error(r, 400, "bad_request")
    assert leaked(store) == []


async def test_durable_streams_paths_and_headers_refuse_control_characters(
    url: str, store: redis_sync.Redis
) -> None:
    base = f"/v1/stream/names/{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for bad in (
            "a%0Ab",
            "a%0D",
            "%0A",
            "a%00",
            "a%7F",
            "a%C2%85",
            "a%C2%9F",
            "a%FF",
            "%ED%A0%80",
        ):
            for method in ("PUT", "POST", "GET", "HEAD", "DELETE"):
                r = await client.request(method, f"{base}/{bad}", headers=JSON, content=b"[1]")
                assert r.status_code == 404, (bad, method, r.status_code)
                if method != "HEAD":
                    assert r.json()["error"] == "not_found"
        # Wider than a stream id: any letter, and a real U+FFFD (valid UTF-8), are paths.
        for good in ("caf%C3%A9", "%EF%BF%BD", "a.b/c d"):
            r = await client.put(f"{base}/{good}", headers=JSON, content=b"[1]")
            assert r.status_code == 201, (good, r.text)
            r = await client.get(f"{base}/{good}")
            assert r.status_code == 200 and r.json() == [1]

        path = f"{base}/produced"
        r = await client.put(path, headers=JSON)
        assert r.status_code == 201
        producer = {"producer-id": "p-1", "producer-epoch": "0", "producer-seq": "0"}
        for header, raw in (
            ("producer-id", b"p\x85"),
            ("producer-id", b"p\xc3\xa9"),
            ("producer-id", b"p:1"),
            ("producer-epoch", b"\xd9\xa3"),
            ("producer-seq", b"1\xc2\xb2"),
        ):
            r = await client.post(path, headers={**JSON, **producer, header: raw}, content=b"[1]")
            assert_error(r, 400, "bad_request")
        r = await client.post(path, headers={**JSON, **producer}, content=b"[1]")
        assert r.status_code == 200, r.text

        r = await client.put(f"{base}/ttl", headers={**JSON, "stream-ttl": b"\xd9\xa3"})
        assert_error(r, 400, "bad_request")
        r = await client.put(
            f"{base}/fork", headers={**JSON, "stream-forked-from": b"/v1/stream/a\x85"}
        )
        assert_error(r, 404, "not_found")
        # A media type outside ASCII is no media type: the stream is bytes.
        r = await client.put(f"{base}/typed", headers={"content-type": b"t\xc3\xa9xt/plain"})
        assert r.status_code == 201
        r = await client.head(f"{base}/typed")
        assert r.headers["content-type"] == "application/octet-stream"
    assert leaked(store) == []


# --- the Lua scripts, called directly ---


class OldClient(EventLog):
    """An event log whose own check of types lets anything through, as an older client
    (a final newline passed ``re.match`` and ``$``) or another program would: what it
    sends reaches the append script unchecked."""

    def checked(self, events: Sequence[dict[str, Any]]) -> list[tuple[str, bytes]]:
        return [(e["type"], json.dumps(e).encode()) for e in events]


async def test_the_append_script_refuses_what_the_python_side_refuses(
    stack: tuple[Proc, str], store: redis_sync.Redis
) -> None:
    redis = connection.command_client(stack[1])
    try:
        event_log = EventLog(redis)
        append = redis.register_script(script("append.lua"))

        def call_keys(stream_id: str) -> list[str]:
            return [
                *keys.stream_keys(stream_id),
                keys.outbox_key(stream_id),
                keys.names_key(stream_id),
                keys.waiting_key(stream_id),
                keys.steer_key(stream_id),
            ]

        sid = new_id("direct")
        good = event_log._args(sid, [{"type": "data-ok"}], kind="feed")
        for etype in [*BAD_TYPES, "", "x" * 65, "-x", "X"]:
            args = [*good[:-2], etype, good[-1]]
            assert await append(keys=call_keys(sid), args=args) == [b"INVALID", 0], etype
        for data in (b'{"a":"\n"}', b"{}\r", b"\n"):
            args = [*good[:-2], "data-ok", data]
            assert await append(keys=call_keys(sid), args=args) == [b"INVALID", 0], data
        for name in ("direct\n", "direct\r", "dir\x85", "dir٣", "x" * 65, "a}:b", "a b"):
            args = event_log._args(name, [{"type": "data-ok"}], kind="feed")
            assert await append(keys=call_keys(name), args=args) == [b"INVALID", 0], name
        assert not await redis.exists(keys.meta_key(sid), keys.log_key(sid))
        assert await append(keys=call_keys(sid), args=good) == [b"OK", 1]

        old = OldClient(redis)
        with pytest.raises(InvalidEvent):
            await old.append(new_id("old"), [{"type": "x\n"}], kind="feed")
        with pytest.raises(InvalidEvent):
            await old.append_many([(new_id("old"), [{"type": "data-ok"}, {"type": "é"}])])
        assert await old.append(new_id("old"), [{"type": "data-ok"}], kind="feed") == 1
    finally:
        await redis.aclose()
    assert leaked(store) == []


async def test_the_scripts_that_name_a_stream_refuse_a_name_that_is_none(
    stack: tuple[Proc, str], store: redis_sync.Redis
) -> None:
    """The scripts that announce a new stream (its name goes to every ``/v1/events``
    connection following a prefix) and the outbox's, called with names no front-end
    sends: an error, nothing written."""
    redis = connection.command_client(stack[1])
    try:
        create = redis.register_script(script("create_generation.lua", "broadcaster.generations"))
        ds_create = redis.register_script(ds_script("ds_create.lua"))
        outbox_add = redis.register_script(script("outbox_add.lua", "broadcaster.webhooks"))
        for name in ("gen\n", "gen\r", "g\x85", "g٣", "x" * 65):
            with pytest.raises(ResponseError, match="INVALID"):
                await create(keys=[keys.meta_key(name), keys.names_key(name)], args=["{}", 60])
            ds_args = ["application/json", "", "", "", "", "", "", "", 60, "", "PUBLISH", 1024]
            with pytest.raises(ResponseError, match="INVALID"):
                await ds_create(keys=[*keys.ds_keys(name), keys.names_key(name)], args=ds_args)
        sid = new_id("hooked")
        for stream_id, etype in (
            (sid + "\n", "stream.occupied"),
            (sid, "stream.occupied\n"),
            (sid, "stream..occupied"),
            (sid, "stream."),
            (sid, "stream"),
            (sid, "stréam.occupied"),
        ):
            with pytest.raises(ResponseError, match="INVALID"):
                await outbox_add(
                    keys=[keys.meta_key(sid), keys.outbox_key(sid)],
                    args=[stream_id, etype, "{}", 100],
                )
        # The well-formed calls go through (the outbox: a stream that asked for none).
        assert await create(keys=[keys.meta_key(sid), keys.names_key(sid)], args=["{}", 60]) == 1
        assert await Outbox(redis).add(sid, "stream.occupied", {}) is False
        with pytest.raises(ValueError):
            await Outbox(redis).add(sid + "\n", "stream.occupied", {})
    finally:
        await redis.aclose()
    assert leaked(store) == []
