"""Compact replays (``?compact=1``, and the chat routes' full replays): a late joiner of a
long answer gets each run of deltas of one part as one event, with the id of the last
folded event, and rebuilds the very same message. Real front-end, the AI SDK's own reader
(tests/clients/aisdk/read.mjs) for the rebuilt message."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broadcaster.core.events import Event
from broadcaster.fanout.compact import fold
from tests.support import node_host
from tests.support.procs import ROOT, Proc, own_redis, read_sse, start_frontend

pytestmark = pytest.mark.anyio

READ = ROOT / "tests" / "clients" / "aisdk" / "read.mjs"


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    logs: Path = tmp_path_factory.mktemp("compact")
    redis = own_redis(logs / "redis")
    fe = start_frontend(redis.url, logs, "compact-frontend")
    try:
        yield fe
    finally:
        fe.stop()
        redis.stop()


def answer(deltas: int, seed: int = 1) -> list[dict[str, object]]:
    """An AI SDK answer of ``deltas`` small deltas: reasoning, a tool's input, text."""
    rng = random.Random(seed)
    words = ["Redis ", "streams ", "fan ", "out", ", ", "é", "🙂 ", "\n", '"q" ']
    third = deltas // 3
    events: list[dict[str, object]] = [{"type": "start", "messageId": "m1"}, {"type": "start-step"}]
    events.append({"type": "reasoning-start", "id": "r0"})
    events += [
        {"type": "reasoning-delta", "id": "r0", "delta": rng.choice(words)} for _ in range(third)
    ]
    events.append({"type": "reasoning-end", "id": "r0"})
    events.append({"type": "tool-input-start", "toolCallId": "c1", "toolName": "lookup"})
    pieces = ['{"q": "', *("ab" for _ in range(third - 2)), '"}']
    events += [
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": p} for p in pieces
    ]
    events.append(
        {
            "type": "tool-input-available",
            "toolCallId": "c1",
            "toolName": "lookup",
            "input": {"q": "ab" * (third - 2)},
        }
    )
    events.append({"type": "text-start", "id": "t0"})
    events += [
        {"type": "text-delta", "id": "t0", "delta": rng.choice(words)}
        for _ in range(deltas - 2 * third)
    ]
    events += [{"type": "text-end", "id": "t0"}, {"type": "finish-step"}, {"type": "finish"}]
    return events


async def publish(client: httpx.AsyncClient, url: str, events: list[dict[str, object]]) -> str:
    sid = "compact-" + secrets.token_hex(4)
    for i in range(0, len(events), 500):
        r = await client.post(f"{url}/v1/streams/{sid}/events", json=events[i : i + 500])
        assert r.status_code == 201, r.text
    return sid


def test_folding_keeps_ids_and_text() -> None:
    events = [
        Event(1, "text-start", b'{"type":"text-start","id":"t"}', "a1"),
        Event(2, "text-delta", b'{"type":"text-delta","id":"t","delta":"He"}', "a2"),
        Event(3, "text-delta", b'{"type":"text-delta","id":"t","delta":"llo"}', "a3"),
        Event(4, "text-delta", b'{"type":"text-delta","id":"u","delta":"!"}', "a4"),
        Event(5, "text-delta", b'{"type":"text-delta","id":"u","delta":"?","x":1}', "a5"),
        Event(6, "text-end", b'{"type":"text-end","id":"t"}', "a6"),
    ]
    out = list(fold(events))
    assert [(e.seq, e.tag) for e in out] == [(1, "a1"), (3, "a3"), (4, "a4"), (5, "a5"), (6, "a6")]
    assert json.loads(out[1].data) == {"type": "text-delta", "id": "t", "delta": "Hello"}
    assert out[3].data == events[4].data  # a delta with more fields is left alone


async def test_a_late_joiner_of_a_long_answer_gets_a_compact_replay(frontend: Proc) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        events = answer(4000)
        sid = await publish(client, frontend.url, events)
        url = f"{frontend.url}/v1/streams/{sid}/events"
        full = await read_sse(client, url)
        compact = await read_sse(client, url + "?compact=1")
    assert full.done and compact.done
    assert [e.json() for e in full.typed()] == events
    n_full, n_compact = len(full.typed()), len(compact.typed())
    ratio_events, ratio_bytes = n_full / n_compact, len(full.raw) / len(compact.raw)
    print(
        f"compact replay of a {len(events)}-event answer (4,000 deltas): {n_compact} events, "
        f"{len(compact.raw)} bytes, against {n_full} events, {len(full.raw)} bytes: "
        f"{ratio_events:.0f}x fewer events, {ratio_bytes:.1f}x fewer bytes"
    )
    assert ratio_events >= 20 and ratio_bytes >= 20
    # The same message, rebuilt by the AI SDK itself, byte for byte.
    whole, folded = await asyncio.gather(_sdk(url), _sdk(url + "?compact=1"))
    assert folded == whole
    # Each folded event's id is its last event's: a resume from it is exact.
    middle = compact.typed()[len(compact.typed()) // 2]
    async with httpx.AsyncClient(timeout=60) as client:
        rest = await read_sse(client, url, last_event_id=str(middle.id))
    seq = int(str(middle.id).split(".")[0])
    assert [e.json() for e in rest.typed()] == events[seq:]


async def test_live_events_are_never_folded(frontend: Proc) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        events = answer(30)
        sid = await publish(client, frontend.url, events[:10])  # not ended: a live stream
        url = f"{frontend.url}/v1/streams/{sid}/events?compact=1"
        reading = asyncio.create_task(read_sse(client, url))
        await asyncio.sleep(0.5)
        for event in events[10:]:  # one at a time, each its own live event
            r = await client.post(f"{frontend.url}/v1/streams/{sid}/events", json=event)
            assert r.status_code == 201
        got = await asyncio.wait_for(reading, 30)
    live = [e.json() for e in got.typed()][-(len(events) - 10) :]
    assert live == events[10:]


async def _sdk(url: str) -> dict[str, object]:
    code, out, err = await asyncio.to_thread(node_host.run, READ, [url], 60)
    assert code == 0, err
    message = json.loads(out.splitlines()[-1])
    keep = ("message_id", "role", "part_types", "text_parts", "reasoning_parts", "tools")
    return {k: message[k] for k in keep}
