"""The PostgreSQL example (``examples/chat_postgres.py``) end to end, on a real
PostgreSQL server (tests/support/postgres.py), a real front-end, worker and Redis: a chat
of two turns kept in the database from the ``chat.turn.finished`` webhooks, the chat
expiring from Redis (a short ``BROADCASTER_CHAT_RETENTION_SECONDS``), opened again
through the example, which seeds it back from PostgreSQL: the same history, and the chat
goes on from there."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from broadcaster.auth import credentials
from broadcaster.core.embedded import free_port
from examples.chat_postgres import create_app
from tests.support.polling import wait_for
from tests.support.postgres import Postgres, postgres
from tests.support.stacks import Stack, start_stack
from tests.support.webhooks import SECRET, webhook_env

KEY = "app-" + secrets.token_hex(8)
AUTH = {"authorization": f"Bearer {KEY}"}
RETENTION_S = 3


class Served:
    """The example's app under uvicorn on 127.0.0.1 (its lifespan on: its pool), in a
    thread, while inside."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        wait_for("the example's app", lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def database() -> Iterator[Postgres]:
    with postgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, app_port: int) -> Iterator[Stack]:
    env = webhook_env(f"http://127.0.0.1:{app_port}/webhooks")
    env["BROADCASTER_API_KEYS"] = credentials.hash_key(KEY)
    env["BROADCASTER_CHAT_RETENTION_SECONDS"] = str(RETENTION_S)
    s = start_stack(
        tmp_path_factory.mktemp("pg"), "pg", {"WORKER_FAKE_DELAY_MS": "1"}, frontend_env=env
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def example(database: Postgres, stack: Stack, app_port: int) -> Iterator[str]:
    app = create_app(database.dsn, SECRET, stack.url, KEY)
    with Served(app, app_port):
        yield f"http://127.0.0.1:{app_port}"


def user(words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}


def rows(dsn: str, chat: str) -> list[tuple[int, str]]:
    async def read() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            got = await conn.fetch(
                "SELECT position, message_id FROM chat_messages WHERE chat_id = $1 "
                "ORDER BY position",
                chat,
            )
        finally:
            await conn.close()
        return [(r["position"], r["message_id"]) for r in got]

    return asyncio.run(read())


def live(stack: Stack, chat: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/chat/{chat}/messages", headers=AUTH, timeout=10)


def say(stack: Stack, chat: str, history: list[dict[str, Any]], words: str, mid: str) -> None:
    body = {"id": chat, "messages": [*history, user(words, mid)], "max_tokens": 4}
    resp = httpx.post(f"{stack.url}/v1/chat", json=body, headers=AUTH, timeout=30)
    assert resp.status_code == 200, resp.text


def test_a_chat_kept_in_postgres_comes_back_the_same(
    stack: Stack, database: Postgres, example: str
) -> None:
    chat = "pg-" + secrets.token_hex(5)
    say(stack, chat, [], "First", "u1")
    wait_for("the first turn in PostgreSQL", lambda: len(rows(database.dsn, chat)) == 2)
    say(stack, chat, live(stack, chat).json()["messages"], "Second", "u2")
    wait_for("both turns in PostgreSQL", lambda: len(rows(database.dsn, chat)) == 4)
    before = live(stack, chat).json()["messages"]
    assert [m for _, m in rows(database.dsn, chat)] == [m["id"] for m in before]
    # The chat expires from Redis: a page that opens it gets it from PostgreSQL.
    wait_for("the chat expired", lambda: live(stack, chat).status_code == 404)
    opened = httpx.get(f"{example}/chats/{chat}/messages", timeout=30).json()
    assert opened["from"] == "postgres" and opened["messages"] == before
    assert live(stack, chat).json()["messages"] == before  # seeded back into the deployment
    say(stack, chat, before, "Third", "u3")
    wait_for("the third turn", lambda: len(rows(database.dsn, chat)) == 6)
    after = httpx.get(f"{example}/chats/{chat}/messages", timeout=30).json()
    assert after["from"] == "broadcaster" and after["messages"][:4] == before
    assert [m for _, m in rows(database.dsn, chat)] == [m["id"] for m in after["messages"]]
    assert httpx.get(f"{example}/chats/never-made/messages").json() == {
        "messages": [],
        "from": "new",
    }


def test_a_forged_or_repeated_webhook_changes_nothing(example: str, database: Postgres) -> None:
    data = {
        "chat_id": "forged",
        "positions": [0],
        "messages": [user("x", "u1")],
    }
    resp = httpx.post(f"{example}/webhooks", json={"type": "chat.turn.finished", "data": data})
    assert resp.status_code == 401
    assert rows(database.dsn, "forged") == []
