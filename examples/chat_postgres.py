"""Chats kept in PostgreSQL: every turn stored from the ``chat.turn.finished`` webhook, and
a chat that expired from Redis seeded back when it is opened (docs/guides/chat-persistence.md).

Run it beside a deployment (``asyncpg`` from PyPI: ``pip install asyncpg``):

    CHATS_DSN=postgresql://app@127.0.0.1/app WEBHOOK_SECRET=whsec_... \\
    BROADCASTER_URL=http://127.0.0.1:8000 BROADCASTER_KEY=... \\
    uvicorn --factory examples.chat_postgres:app_from_env --port 9000
    BROADCASTER_WEBHOOK_URL=http://127.0.0.1:9000/webhooks \\
    BROADCASTER_WEBHOOK_SECRET=whsec_... python -m broadcaster serve

It serves two routes:

* ``POST /webhooks``: the deployment's webhooks, verified (``standardwebhooks``); each
  ``chat.turn.finished`` stored in one transaction with its ``webhook-id`` (delivery is
  at least once: a retry changes nothing). A message is kept at its position in the chat
  (the event's ``positions``): an answer that continues a message takes its place, and a
  turn drops what followed it (an edit cut the chat there).
* ``GET /chats/{id}/messages``: what a page opens a chat with. The deployment's history
  if it still has the chat, else the one kept here, seeded back into the deployment
  (``PUT /v1/chat/{id}/messages``, its owner kept) so that the chat goes on where it was.

The key (``BROADCASTER_KEY``) needs ``read`` and ``generate``. A page asks this app for
the history, then talks to the deployment itself (``useChat``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from standardwebhooks import Webhook

from examples.webhook_receiver import verified

SCHEMA = """
CREATE TABLE IF NOT EXISTS chats (
    id text PRIMARY KEY,
    owner text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS chat_messages (
    chat_id text NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    position integer NOT NULL,
    message_id text NOT NULL,
    message jsonb NOT NULL,
    PRIMARY KEY (chat_id, position)
);
CREATE TABLE IF NOT EXISTS webhooks_seen (
    id text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
"""


async def store_turn(conn: asyncpg.Connection, webhook_id: str, data: dict[str, Any]) -> bool:
    """One turn kept, once: False when this webhook was stored before."""
    async with conn.transaction():
        fresh = await conn.fetchval(
            "INSERT INTO webhooks_seen (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id",
            webhook_id,
        )
        if fresh is None:
            return False
        chat_id = data["chat_id"]
        await conn.execute(
            "INSERT INTO chats (id, owner) VALUES ($1, $2) "
            "ON CONFLICT (id) DO UPDATE SET updated_at = now()",
            chat_id,
            data.get("owner"),
        )
        placed = [
            (p, m)
            for p, m in zip(data["positions"], data["messages"], strict=True)
            if p is not None
        ]
        for position, message in placed:
            await conn.execute(
                "INSERT INTO chat_messages (chat_id, position, message_id, message) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (chat_id, position) "
                "DO UPDATE SET message_id = excluded.message_id, message = excluded.message",
                chat_id,
                position,
                message["id"],
                json.dumps(message),
            )
        if placed:
            last = max(p for p, _ in placed)
            await conn.execute(
                "DELETE FROM chat_messages WHERE chat_id = $1 AND position > $2", chat_id, last
            )
    return True


async def kept_chat(conn: asyncpg.Connection, chat_id: str) -> tuple[str | None, list[Any]] | None:
    """The chat as kept here: its owner and its messages in order; None if unknown."""
    owner = await conn.fetchrow("SELECT owner FROM chats WHERE id = $1", chat_id)
    if owner is None:
        return None
    rows = await conn.fetch(
        "SELECT message FROM chat_messages WHERE chat_id = $1 ORDER BY position", chat_id
    )
    return owner["owner"], [json.loads(r["message"]) for r in rows]


def create_app(dsn: str, secret: str, broadcaster: str, key: str) -> FastAPI:
    """The app: its pool of connections to ``dsn`` made at start-up, the schema with it."""
    webhook = Webhook(secret)
    auth = {"authorization": f"Bearer {key}"}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        async with app.state.pool.acquire() as conn:
            await conn.execute(SCHEMA)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/webhooks", status_code=204)
    async def receive(request: Request) -> Response:
        event = await verified(webhook, request)
        if event is None:
            return Response(status_code=401)
        if event["type"] == "chat.turn.finished":
            async with app.state.pool.acquire() as conn:
                await store_turn(conn, request.headers["webhook-id"], event["data"])
        return Response(status_code=204)

    @app.get("/chats/{chat_id}/messages")
    async def open_chat(chat_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=broadcaster, headers=auth, timeout=30) as client:
            live = await client.get(f"/v1/chat/{chat_id}/messages")
            if live.status_code == 200:
                return {"messages": live.json()["messages"], "from": "broadcaster"}
            if live.status_code != 404:
                raise HTTPException(502, f"the deployment answered {live.status_code}")
            async with app.state.pool.acquire() as conn:
                kept = await kept_chat(conn, chat_id)
            if kept is None:
                return {"messages": [], "from": "new"}
            owner, messages = kept
            body: dict[str, Any] = {"messages": messages}
            if owner and owner.startswith("sub:"):
                body["owner"] = owner.removeprefix("sub:")
            seeded = await client.put(f"/v1/chat/{chat_id}/messages", json=body)
            if seeded.status_code not in (200, 201, 409):  # 409: opened twice at once
                raise HTTPException(502, f"seeding answered {seeded.status_code}")
        return {"messages": messages, "from": "postgres"}

    return app


def app_from_env() -> FastAPI:
    return create_app(
        os.environ["CHATS_DSN"],
        os.environ["WEBHOOK_SECRET"],
        os.environ.get("BROADCASTER_URL", "http://127.0.0.1:8000"),
        os.environ["BROADCASTER_KEY"],
    )
