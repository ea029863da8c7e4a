"""Usage by user and budgets, end to end: a real front-end with API keys, a token secret,
a daily token budget and a webhook receiver, and a worker (the fake provider) on a Redis
of the module's own. Each test's users are its own (random names), so none sees another's
usage.

- each ended generation is counted once in its user's day (a key's name, a token's
  ``sub``), read back by ``GET /v1/usage`` (the admin right) by day and model, the same
  as the generation's own usage, the webhook's and the Prometheus counters';
- a user who crossed the budget is refused the next submit (429 ``budget_exhausted``,
  ``Retry-After`` to midnight UTC), chat tokens too, and a token's ``daily_tokens``
  lowers it;
- the ``generation.finished`` webhook names the chat, the user, the provider and the
  model.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broadcaster.auth import credentials
from broadcaster.generations.ledger import seconds_to_next_day, today
from tests.support.polling import poll
from tests.support.procs import Proc, parse_sse, start_frontend, start_worker
from tests.support.procs import own_redis as start_redis
from tests.support.usage_calls import bearer, finished, key_name
from tests.support.webhooks import Receiver, webhook_env

pytestmark = pytest.mark.anyio

ADMIN = "adm-" + secrets.token_hex(8)
STARTER = "gen-" + secrets.token_hex(8)
OTHER = "oth-" + secrets.token_hex(8)
TOKEN_SECRET = secrets.token_hex(16)
KEYS = ",".join(
    [
        credentials.hash_key(ADMIN) + ":admin",
        credentials.hash_key(STARTER) + ":generate+tokens+cancel+read",
        credentials.hash_key(OTHER) + ":generate",
    ]
)
BUDGET = 60
"""Tokens a user may use a day here: one long answer (64 output tokens) crosses it."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Proc]:
    base = tmp_path_factory.mktemp("usage")
    redis = start_redis(base / "redis")
    env = webhook_env(
        receiver.url(),
        BROADCASTER_API_KEYS=KEYS,
        BROADCASTER_TOKEN_SECRET=TOKEN_SECRET,
        BROADCASTER_DAILY_TOKEN_BUDGET=str(BUDGET),
        BROADCASTER_RATE_LIMIT_PER_MINUTE="0",
        BROADCASTER_SUBMIT_RATE_PER_MINUTE="0",
    )
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, base, "usage-frontend", env))
        procs.append(start_worker(redis.url, base, "usage-worker", {"WORKER_FAKE_DELAY_MS": "1"}))
        yield procs[0]
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()


def user_message(text: str) -> dict[str, Any]:
    return {
        "id": "u-" + secrets.token_hex(4),
        "role": "user",
        "parts": [{"type": "text", "text": text}],
    }


async def chat_token(client: httpx.AsyncClient, chat: str, **body: Any) -> str:
    r = await client.post(f"/v1/chat/{chat}/tokens", json=body, headers=bearer(STARTER))
    assert r.status_code == 200, r.text
    return str(r.json()["chat_token"])


async def submit(
    client: httpx.AsyncClient, text: str = "hello there", max_tokens: int = 8, **minted: Any
) -> httpx.Response:
    """A new chat's first submit, with a chat token minted for it (``minted``: its
    ``sub``, its ``daily_tokens``)."""
    chat = "chat-" + secrets.token_hex(6)
    token = await chat_token(client, chat, **minted)
    body = {"id": chat, "messages": [user_message(text)], "max_tokens": max_tokens}
    return await client.post("/v1/chat", json=body, headers=bearer(token))


async def viewer(client: httpx.AsyncClient, gid: str) -> dict[str, str]:
    """A viewer token's header for generation ``gid``."""
    r = await client.post(f"/v1/streams/{gid}/tokens", headers=bearer(STARTER))
    assert r.status_code == 200, r.text
    return bearer(r.json()["viewer_token"])


async def report(client: httpx.AsyncClient, user: str, **query: str) -> dict[str, Any]:
    r = await client.get("/v1/usage", params={"user": user, **query}, headers=bearer(ADMIN))
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


async def settled(client: httpx.AsyncClient, user: str, generations: int) -> dict[str, Any]:
    """The user's report once it counts ``generations`` (settling follows the end by a
    wake: a moment, not a step of the request)."""

    async def counted() -> dict[str, Any] | None:
        found = await report(client, user)
        return found if found["generations"] >= generations else None

    return await poll(counted, f"{generations} generations counted for {user}")


async def test_a_key_s_generations_by_day_and_model(frontend: Proc) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        r = await client.post(
            "/v1/generations", json={"prompt": "count me", "max_tokens": 8}, headers=bearer(OTHER)
        )
        assert r.status_code == 202, r.text
        gid, viewer = r.json()["id"], r.json()["viewer_token"]
        found = await settled(client, key_name(OTHER), 1)
        status = (await client.get(f"/v1/generations/{gid}", headers=bearer(viewer))).json()
    assert status["status"] == "completed"
    usage = status["usage"]
    assert set(usage) == {
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    }
    [day] = found["days"]
    assert day["date"] == today()
    [model] = day["models"]
    assert (model["provider"], model["model"], model["generations"]) == (
        status["provider"],
        status["model"],
        1,
    )
    assert {k: model[k] for k in usage} == usage == found["total"]
    total = usage["input_tokens"] + usage["output_tokens"]
    assert model["total_tokens"] == day["total_tokens"] == found["total_tokens"] == total > 0


async def test_only_an_admin_key_reads_usage_and_bad_days_are_422(frontend: Proc) -> None:
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        params = {"user": "anyone"}
        assert (await client.get("/v1/usage", params=params)).status_code == 401
        denied = await client.get("/v1/usage", params=params, headers=bearer(STARTER))
        assert denied.status_code == 403
        for query in ({"from": "2026-13-01"}, {"from": "2026-01-02", "to": "2026-01-01"}):
            r = await client.get("/v1/usage", params=params | query, headers=bearer(ADMIN))
            assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), query
        wide = {"from": "2020-01-01", "to": "2026-01-01"}
        r = await client.get("/v1/usage", params=params | wide, headers=bearer(ADMIN))
        assert r.status_code == 422
        nobody = await report(client, "nobody-" + secrets.token_hex(4), **{"from": "2026-01-01"})
    assert nobody["generations"] == 0 and [d["models"] for d in nobody["days"]] == [[]] * len(
        nobody["days"]
    )


async def test_a_user_over_budget_is_refused_the_next_submit(frontend: Proc) -> None:
    alice, bob = "alice-" + secrets.token_hex(4), "bob-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        crossing = await submit(client, "a long answer", 64, sub=alice)
        assert crossing.status_code == 200, crossing.text
        events, _, _ = parse_sse(crossing.content)
        finish = [e.json() for e in events if e.event == "finish"]
        assert finish, "the answer that crosses the budget finishes"
        found = await settled(client, "sub:" + alice, 1)
        assert found["total_tokens"] >= BUDGET
        again = await submit(client, sub=alice)
        refused = again.json()
        other = await submit(client, sub=bob)
    assert again.status_code == 429 and refused["error"] == "budget_exhausted"
    assert (refused["budget"], refused["used"]) == (BUDGET, found["total_tokens"])
    assert abs(int(again.headers["retry-after"]) - seconds_to_next_day()) <= 5
    assert other.status_code == 200, other.text


async def test_a_token_s_claim_lowers_the_budget_and_never_raises_it(frontend: Proc) -> None:
    low, high = "low-" + secrets.token_hex(4), "high-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        assert (await submit(client, sub=low, daily_tokens=5)).status_code == 200
        crossing = await submit(client, max_tokens=64, sub=high, daily_tokens=10**9)
        assert crossing.status_code == 200
        await settled(client, "sub:" + low, 1)
        await settled(client, "sub:" + high, 1)
        refused = await submit(client, sub=low, daily_tokens=5)
        refused_high = await submit(client, sub=high, daily_tokens=10**9)
        bad = await client.post(
            "/v1/chat/c1/tokens", json={"daily_tokens": -1}, headers=bearer(STARTER)
        )
    assert refused.status_code == 429 and refused.json()["budget"] == 5
    assert refused_high.status_code == 429 and refused_high.json()["budget"] == BUDGET
    assert bad.status_code == 422


async def test_the_webhook_names_chat_user_provider_and_model(
    frontend: Proc, receiver: Receiver
) -> None:
    carol = "carol-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        chat = "chat-" + secrets.token_hex(6)
        token = await chat_token(client, chat, sub=carol)
        body = {"id": chat, "messages": [user_message("hook me")], "max_tokens": 8}
        answered = await client.post("/v1/chat", json=body, headers=bearer(token))
        gid = answered.headers["x-generation-id"]

        data = await poll(partial(finished, receiver, gid), "the generation.finished webhook")
        status = (
            await client.get(f"/v1/generations/{gid}", headers=await viewer(client, gid))
        ).json()
    assert (data["chat_id"], data["user"]) == (chat, "sub:" + carol)
    assert (data["provider"], data["model"]) == (status["provider"], status["model"])
    assert data["usage"] == status["usage"] and data["usage"]["output_tokens"] > 0


async def test_tokens_are_counted_by_kind_provider_and_model(frontend: Proc) -> None:
    dave = "dave-" + secrets.token_hex(4)
    async with httpx.AsyncClient(base_url=frontend.url, timeout=30) as client:
        await submit(client, sub=dave)
        found = await settled(client, "sub:" + dave, 1)
        [model] = found["days"][0]["models"]

        async def counted() -> dict[str, float] | None:
            text = (await client.get("/metrics")).text
            counts = {
                s.labels["kind"]: s.value
                for family in text_string_to_metric_families(text)
                if family.name == "broadcaster_tokens"
                for s in family.samples
                if s.labels.get("model") == model["model"] and s.name.endswith("_total")
            }
            return counts or None

        counts = await poll(counted, "broadcaster_tokens_total")
    assert set(counts) == {
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    }
    # Every generation of this model so far, this test's among them.
    assert counts["output_tokens"] >= model["output_tokens"] > 0
