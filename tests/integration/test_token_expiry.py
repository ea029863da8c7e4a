"""Open responses end with their token, on real front-ends and Redis: each kind opened
with a 5-second token ends at its ``exp`` plus the leeway, with its protocol's documented
end (a UI-message stream: ``data-token-expired`` with no id, then the end, no
``[DONE]``; AG-UI: a ``CUSTOM`` ``token-expired`` event; Durable Streams: the close, and
a long-poll's 204), and a chat turn started after it is not delivered; a client that
reconnects with a new token and its ``Last-Event-ID`` loses nothing. Revocation:
``test_token_revocation.py``."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broadcaster.auth import tokens
from tests.support.procs import parse_sse
from tests.support.stacks import Stack, start_stack
from tests.support.token_ends import (
    ADMIN,
    ENV,
    LEEWAY,
    SECRET,
    Opened,
    bearer,
    chat_turn,
    open_response,
)

pytestmark = pytest.mark.anyio

LIFE = 5
"""Seconds a token of these tests lives."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A generation of the fake provider lasts about 20 s at 300 ms a delta: it is still
    # answering when the tokens end.
    env = ENV | {"BROADCASTER_DS_LONG_POLL_SECONDS": "30"}
    s = start_stack(
        tmp_path_factory.mktemp("expiry"),
        "expiry",
        {"WORKER_FAKE_DELAY_MS": "300"},
        frontend_env=env,
    )
    yield s
    s.stop()


def token(**grant: Any) -> tuple[str, float]:
    """A token living ``LIFE`` seconds, and when responses opened with it must end."""
    now = time.time()
    minted = tokens.mint_token(SECRET, ttl_seconds=LIFE, now=now, **grant)
    return minted, int(now) + LIFE + LEEWAY


UI_END = {"type": "data-token-expired", "data": {"reason": "expired"}, "transient": True}


def ui_ended(opened: Opened) -> None:
    """The UI-message stream's documented end: the frame, with no id, and no ``[DONE]``."""
    events, _, _ = parse_sse(opened.raw)
    assert events, opened
    last = events[-1]
    assert (last.event, last.id) == ("data-token-expired", None), opened
    assert last.json() == UI_END
    assert b"[DONE]" not in opened.raw, opened


async def test_every_kind_of_open_response_ends_at_its_tokens_expiry(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as admin_c:
        admin_c.headers.update(bearer(ADMIN))
        # A stream with events, a Durable Stream, and a chat answering (its generation).
        sid = "feed-" + secrets.token_hex(4)
        r = await admin_c.post(f"/v1/streams/{sid}/events", json=[{"type": "data-n", "i": 1}])
        assert r.status_code == 201, r.text
        long_lived = tokens.mint_token(SECRET, read=[sid], ttl_seconds=600)
        newest = await open_response(
            admin_c, "GET", f"/v1/streams/{sid}/events", stop=b"\n\nid: ",
            headers=bearer(long_lived),
        )  # fmt: skip
        await newest.done
        path = "docs-" + secrets.token_hex(4)
        r = await admin_c.put(f"/v1/stream/{path}", headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        chat = "chat-" + secrets.token_hex(4)
        read_tok, ends = token(read=[sid, path, "feed-*"], sub="viewer-1")
        chat_tok, chat_ends = token(chat=[chat], sub="chatter-1")
        assert abs(chat_ends - ends) <= 1
        opened: dict[str, Opened] = {}
        viewer = {"authorization": f"Bearer {read_tok}"}
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as c:
            answer = await chat_turn(c, chat, "a long answer", chat_tok)
            opened["chat answer"] = answer
            gid = answer.headers["x-generation-id"]
            gen_tok, _ = token(read=[gid])
            last_id = newest.first_id()
            asked = (
                ("stream, from the parser", "GET", f"/v1/streams/{sid}/events",
                 {"headers": viewer | {"last-event-id": last_id}}),
                ("stream, the app's", "GET", f"/v1/streams/{sid}/events?caught_up=1",
                 {"headers": viewer}),
                ("stream, by ?token", "GET", f"/v1/streams/{sid}/events?token={read_tok}", {}),
                ("chat resume", "GET", f"/v1/chat/{chat}/stream", {"headers": bearer(chat_tok)}),
                ("chat follow", "GET", f"/v1/chat/{chat}/events", {"headers": bearer(chat_tok)}),
                ("dashboard", "GET", "/v1/events?prefix=feed-", {"headers": viewer}),
                ("dashboard of a chat", "GET", f"/v1/events?chat={chat}",
                 {"headers": bearer(chat_tok)}),
                ("AG-UI generation", "GET", f"/v1/agui/generations/{gid}/events",
                 {"headers": bearer(gen_tok)}),
                ("AG-UI connect", "POST", "/v1/agui/agent/default/connect",
                 {"headers": bearer(chat_tok),
                  "json": {"threadId": chat, "runId": "r1", "messages": []}}),
                ("Durable Streams SSE", "GET", f"/v1/stream/{path}?offset=-1&live=sse",
                 {"headers": viewer}),
                ("Durable Streams long-poll", "GET", f"/v1/stream/{path}?offset=now&live=long-poll",
                 {"headers": viewer}),
            )  # fmt: skip
            # All at once: the token lives a few seconds, and this machine may be busy.
            made = await asyncio.gather(*(open_response(c, m, u, **kw) for _, m, u, kw in asked))
            opened |= {name: o for (name, *_), o in zip(asked, made, strict=True)}
            for name, o in opened.items():
                assert o.status in (200, 204), (name, o)
            await asyncio.wait_for(
                asyncio.gather(*(o.done for o in opened.values())), ends - time.time() + 15
            )
            # A turn started once the tokens ended reaches no response (its answer is not
            # needed: it is stopped once its user message is in the chat).
            await _stop(admin_c, chat)
            after = await chat_turn(admin_c, chat, "after the end", None)
            await _stop(admin_c, chat)
            await asyncio.wait_for(after.done, 30)
    early = {n: round(o.ended_at - ends, 2) for n, o in opened.items() if o.ended_at < ends}
    assert not early, f"ended before the token: {early}"
    print(
        "ended after exp + leeway (s):", {n: round(o.ended_at - ends, 2) for n, o in opened.items()}
    )
    for name in ("chat answer", "stream, from the parser", "stream, the app's",
                 "stream, by ?token", "chat resume", "chat follow", "dashboard",
                 "dashboard of a chat"):  # fmt: skip
        ui_ended(opened[name])
    assert b"after the end" not in opened["chat follow"].raw
    for name in ("AG-UI generation", "AG-UI connect"):
        events, _, _ = parse_sse(opened[name].raw)
        last = events[-1]
        assert last.id is None and last.json() == {
            "type": "CUSTOM",
            "name": "token-expired",
            "value": {"reason": "expired"},
        }, (name, opened[name])
        assert b"RUN_FINISHED" not in opened[name].raw, name  # the run goes on
    ds = opened["Durable Streams SSE"]
    assert b"token" not in ds.raw and ds.raw.rstrip().endswith(b"}"), ds  # just the close
    assert opened["Durable Streams long-poll"].status == 204
    # A request with the ended token: 401, saying so.
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
        r = await c.get(f"/v1/streams/{sid}/events", headers=viewer)
        assert r.status_code == 401 and r.json()["error"] == "token_expired", r.text


async def _stop(client: httpx.AsyncClient, chat: str) -> None:
    r = await client.post(f"/v1/chat/{chat}/stop")
    assert r.status_code in (202, 409), r.text


async def test_a_client_resumes_with_a_new_token_and_loses_nothing(stack: Stack) -> None:
    sid = "resume-" + secrets.token_hex(4)
    total = 80
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as admin_c:
        admin_c.headers.update(bearer(ADMIN))
        r = await admin_c.post(f"/v1/streams/{sid}/events", json=[{"type": "data-n", "i": 0}])
        assert r.status_code == 201

        async def publish() -> None:  # ~10 s of events, through the token's end
            for i in range(1, total):
                await asyncio.sleep(0.12)
                last = i == total - 1
                event = {"type": "finish"} if last else {"type": "data-n", "i": i}
                r = await admin_c.post(f"/v1/streams/{sid}/events", json=event)
                assert r.status_code == 201, r.text

        publishing = asyncio.create_task(publish())
        first, _ = token(read=[sid])
        async with httpx.AsyncClient(base_url=stack.url, timeout=60) as c:
            before = await open_response(c, "GET", f"/v1/streams/{sid}/events?token={first}")
            await before.done
            ui_ended(before)
            seen, _, _ = parse_sse(before.raw)
            last_id = [e.id for e in seen if e.id is not None][-1]
            fresh = tokens.mint_token(SECRET, read=[sid], ttl_seconds=600)
            after = await open_response(
                c,
                "GET",
                f"/v1/streams/{sid}/events?token={fresh}",
                headers={"last-event-id": last_id},
            )
            await asyncio.wait_for(after.done, 60)
        await publishing
    events = [e for e in seen + parse_sse(after.raw)[0] if e.id is not None]
    seqs = [int(e.id.split(".")[0]) for e in events if e.id]
    assert seqs == list(range(1, total + 1)), seqs  # every event once, in order
    assert after.raw.endswith(b"data: [DONE]\n\n")
