"""A chat's queued message meets a full deployment when its turn comes: the chat pump
starts it as every generation starts (``generations.start``), admitted first, and when
admission refuses (too many generations in flight) the message keeps waiting, first in
its chat's queue, its sender's stream open, and starts once there is room.

Real processes: a Redis of the test's own, a front-end that admits two generations in
flight (``BROADCASTER_MAX_GENERATIONS_IN_FLIGHT=2``), a worker on the real ``anthropic``
SDK against the fake API. The deployment is made full by jobs in a queue no worker reads
(the ``openai`` provider's): they count in flight, as jobs nobody took yet do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_py

from broadcaster.core import keys
from tests.support.chat_tabs import Tab, body, events, user
from tests.support.fake_anthropic import gate, message, text
from tests.support.polling import wait_for
from tests.support.stacks import Stack, anthropic_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("pump-admission")
    with anthropic_stack(tmp, {}, {"BROADCASTER_MAX_GENERATIONS_IN_FLIGHT": "2"}) as s:
        yield s


def listed(stack: Stack, chat: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{stack.api}/{chat}/messages").json()
    return found


def test_a_queued_message_refused_as_busy_waits_and_starts_when_there_is_room(
    stack: Stack,
) -> None:
    opened = threading.Event()
    script = message([text(["The first ", "answer."])])
    deltas = [i for i, s in enumerate(script) if getattr(s, "event", "") == "content_block_delta"]
    script.insert(deltas[0] + 1, gate(opened))
    stack.model.route("busy-a", script)
    stack.model.route("busy-b", message([text(["The queued ", "one."])]))
    chat = "chat-busy"
    fillers: list[Any] = []
    queue = keys.jobs_key("openai")  # no worker of this deployment reads it
    client = redis_py.Redis.from_url(stack.redis.url)
    try:
        first = Tab(stack, body(chat, user("busy-a", "u1")))
        running = lambda: listed(stack, chat).get("status") == "running"  # noqa: E731
        wait_for("the first answer", running, context=stack.logs)
        # One generation in flight (the first): the queued message is admitted as sent.
        queued = Tab(stack, body(chat, user("busy-b", "u2"), multitask="enqueue"))
        wait_for("it queued", lambda: bool(listed(stack, chat).get("queued")), context=stack.logs)
        (entry,) = listed(stack, chat)["queued"]
        generation = entry["generation_id"]
        # Two jobs nobody takes: once the first answer ends, two are still in flight.
        fillers = [client.xadd(queue, {"id": f"filler-{n}"}) for n in range(2)]
        opened.set()
        assert events(first.result().content)[-1]["type"] == "finish"
        # Its turn came, and admission refused it: it waits, first in the chat's queue,
        # its generation queued and its sender's stream open; no model call was made.
        time.sleep(2.5)
        waiting = listed(stack, chat)
        assert [e["generation_id"] for e in waiting["queued"]] == [generation]
        status = httpx.get(f"{stack.frontend.url}/v1/generations/{generation}").json()
        assert status["status"] == "queued"
        assert queued.response is None
        assert not [r for r in stack.model.exchanges if "busy-b" in json.dumps(r.body)]
        # Room again: it starts, and its sender's stream is the whole answer.
        client.xdel(queue, *fillers)
        fillers = []
        freed = time.monotonic()
        answer = queued.result()
    finally:
        opened.set()
        if fillers:
            client.xdel(queue, *fillers)
        client.close()
    assert answer.status_code == 200
    got = events(answer.content)
    assert got[0] == {"type": "data-queued", "data": {"position": 1}, "transient": True}
    assert got[1]["type"] == "start" and got[-1]["type"] == "finish"
    assert "".join(e["delta"] for e in got if e["type"] == "text-delta") == "The queued one."
    sent = [r for r in stack.model.exchanges if "busy-b" in json.dumps(r.body)]
    assert len(sent) == 1
    # Within the pump's retry (1 s) and a sweep (0.25 s) of there being room.
    assert sent[0].started_at - freed < 3.0
    history = sent[0].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    final = listed(stack, chat)
    assert final["queued"] == [] and final["status"] == "completed"
    assert [m["id"] for m in final["messages"] if m["role"] == "user"] == ["u1", "u2"]
    assert "waiting message waits" in stack.frontend.log()
    assert "Traceback" not in stack.frontend.log()
