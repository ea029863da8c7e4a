"""A chat belongs to its user, on a real front-end, worker (fake provider) and Redis, with
two users holding tokens (``sub`` alice and bob) and an API key: the owner recorded when a
chat is made, only the owner (or a key) reads, submits to or deletes it; each user's
``GET /v1/chats`` (newest first, paged, title, status); and each user's lifecycle feed
(``GET /v1/chats/events``): their chats' turns alone, a handful of events per turn,
resumable with ``Last-Event-ID``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broadcaster.auth import credentials, tokens
from tests.support.polling import wait_for
from tests.support.procs import SSEEvent, parse_sse
from tests.support.stacks import Stack, start_stack

ADMIN = "admin-" + secrets.token_hex(8)
SECRET = secrets.token_hex(16)


def token(sub: str | None) -> dict[str, str]:
    minted = tokens.mint_token(SECRET, chat=["*"], sub=sub, ttl_seconds=3600)
    return {"authorization": f"Bearer {minted}"}


ALICE, BOB, NOBODY = token("alice"), token("bob"), token(None)
KEY = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"BROADCASTER_API_KEYS": credentials.hash_key(ADMIN), "BROADCASTER_TOKEN_SECRET": SECRET}
    s = start_stack(
        tmp_path_factory.mktemp("owners"), "owners", {"WORKER_FAKE_DELAY_MS": "1"}, frontend_env=env
    )
    yield s
    s.stop()


def user(words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}


def new_chat(who: str) -> str:
    return f"{who}-" + secrets.token_hex(5)


def submit(stack: Stack, who: dict[str, str], chat: str, words: str) -> httpx.Response:
    got = httpx.get(f"{stack.url}/v1/chat/{chat}/messages", headers=who)
    so_far = got.json()["messages"] if got.status_code == 200 else []
    body = {"id": chat, "messages": [*so_far, user(words, f"u{len(so_far)}")], "max_tokens": 4}
    return httpx.post(f"{stack.url}/v1/chat", json=body, headers=who, timeout=30)


def listed(stack: Stack, who: dict[str, str], **query: Any) -> dict[str, Any]:
    resp = httpx.get(f"{stack.url}/v1/chats", params=query, headers=who)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def test_only_the_owner_or_a_key_uses_a_chat(stack: Stack) -> None:
    chat = new_chat("alice")
    assert submit(stack, ALICE, chat, "Mine").status_code == 200
    url = f"{stack.url}/v1/chat/{chat}"
    for refused in (
        httpx.get(f"{url}/messages", headers=BOB),
        submit(stack, BOB, chat, "Not yours"),
        httpx.post(f"{url}/stop", headers=BOB),
        httpx.get(f"{url}/stream", headers=BOB),
        httpx.delete(url, headers=BOB),
        httpx.get(f"{url}/messages", headers=NOBODY),
    ):
        assert refused.status_code == 403, refused.text
    assert httpx.get(f"{url}/messages", headers=ALICE).status_code == 200
    assert httpx.get(f"{url}/messages", headers=KEY).status_code == 200


def test_each_user_lists_their_own_chats_newest_first(stack: Stack) -> None:
    first, second = new_chat("alice"), new_chat("alice")
    theirs = new_chat("bob")
    for who, chat, words in ((ALICE, first, "First question"), (BOB, theirs, "Bob's")):
        assert submit(stack, who, chat, words).status_code == 200
    assert submit(stack, ALICE, second, "Second   question\nhere").status_code == 200
    mine = listed(stack, ALICE)["chats"]
    ids = [c["id"] for c in mine]
    assert ids.index(second) < ids.index(first) and theirs not in ids
    row = next(c for c in mine if c["id"] == second)
    assert row["title"] == "Second question here" and row["turns"] == 1
    assert row["status"] in ("running", "finished")
    wait_for("finished", lambda: _status(stack, ALICE, second) == "finished")
    assert [c["id"] for c in listed(stack, BOB)["chats"]] == [theirs]
    assert [c["id"] for c in listed(stack, KEY, owner="bob")["chats"]] == [theirs]
    walked, before = [], None
    while True:  # pages of one: every chat once, in order
        page = listed(stack, ALICE, limit=1, **({"before": before} if before else {}))
        walked += [c["id"] for c in page["chats"]]
        before = page["older"]
        if before is None:
            break
    assert walked == ids
    resp = httpx.get(f"{stack.url}/v1/chats", headers=NOBODY)
    assert resp.status_code == 403
    resp = httpx.get(f"{stack.url}/v1/chats", params={"owner": "bob"}, headers=ALICE)
    assert resp.status_code == 403
    assert httpx.get(f"{stack.url}/v1/chats").status_code == 401


def _status(stack: Stack, who: dict[str, str], chat: str) -> str:
    rows = listed(stack, who)["chats"]
    return str(next(c["status"] for c in rows if c["id"] == chat))


def read_feed(
    stack: Stack,
    who: dict[str, str],
    until: str,
    chat: str,
    *,
    resume: str | None = None,
    turn: int | None = None,
) -> list[SSEEvent]:
    """``GET /v1/chats/events`` read until an event of type ``until`` for ``chat`` (and
    its ``turn``, if given)."""
    headers = who | ({"last-event-id": resume} if resume else {})
    with httpx.stream("GET", f"{stack.url}/v1/chats/events", headers=headers, timeout=30) as r:
        assert r.status_code == 200, r.read()
        buf = b""
        for chunk in r.iter_raw():
            buf += chunk
            events, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
            if any(_is(e, until, chat, turn) for e in events):
                return events
    raise AssertionError(f"the feed ended: {buf[-2000:]!r}")


def _is(event: SSEEvent, kind: str, chat: str, turn: int | None) -> bool:
    data = json.loads(event.data)
    return event.event == kind and data.get("chatId") == chat and turn in (None, data.get("turn"))


def test_the_lifecycle_feed_carries_the_owners_turns_alone(stack: Stack) -> None:
    mine, theirs = new_chat("alice"), new_chat("bob")
    assert submit(stack, BOB, theirs, "Bob asks").status_code == 200
    assert submit(stack, ALICE, mine, "Alice asks").status_code == 200
    events = read_feed(stack, ALICE, "chat-turn-finished", mine)
    chats = {json.loads(e.data).get("chatId") for e in events}
    assert theirs not in chats and mine in chats
    of_turn = [e for e in events if json.loads(e.data).get("chatId") == mine]
    assert [e.event for e in of_turn] == ["chat-turn-started", "chat-turn-finished"]
    started, finished = (json.loads(e.data) for e in of_turn)
    assert started["turn"] == finished["turn"] == 1 and finished["status"] == "completed"
    # Resumed after the turn's start: the rest, and nothing before it.
    assert submit(stack, ALICE, mine, "Again").status_code == 200
    after = read_feed(stack, ALICE, "chat-turn-finished", mine, resume=of_turn[0].id, turn=2)
    assert after[0].id == of_turn[1].id
    kinds = [(e.event, json.loads(e.data).get("turn")) for e in after]
    assert kinds[-2:] == [("chat-turn-started", 2), ("chat-turn-finished", 2)]


def test_a_deleted_chat_leaves_its_owners_list_with_a_notice(stack: Stack) -> None:
    chat = new_chat("alice")
    assert submit(stack, ALICE, chat, "Soon gone").status_code == 200
    assert httpx.delete(f"{stack.url}/v1/chat/{chat}", headers=ALICE).status_code == 204
    assert chat not in [c["id"] for c in listed(stack, ALICE)["chats"]]
    events = read_feed(stack, ALICE, "chat-deleted", chat)
    assert json.loads(events[-1].data)["chatId"] == chat
