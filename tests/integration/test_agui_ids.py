"""Every frame of an AG-UI answer carries an ``id:``, the prelude that re-opens a message
on a resumed connection included: its frames carry the resume point they leave the client
at, so a reconnection from any of them sends the same again. An in-process front-end on
a real Redis, the generation's events appended straight to its log."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.inprocess import serving

pytestmark = pytest.mark.anyio

Frame = tuple[str | None, dict[str, object]]


def _frames(body: str) -> list[Frame]:
    """``(id, event)`` of each data frame; None for a frame with no ``id:`` line."""
    out: list[Frame] = []
    for frame in body.split("\n\n"):
        lines = frame.split("\n")
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if data:
            ids = [line[4:] for line in lines if line.startswith("id: ")]
            out.append((ids[0] if ids else None, json.loads(data[0])))
    return out


async def test_every_frame_carries_an_id_the_prelude_its_resume_point(redis_url: str) -> None:
    async with serving(redis_url, {}) as front:
        sid = "agui-ids-1"
        await front.log.append(sid, [{"type": "start"}, {"type": "start-step"}], kind="feed")
        await front.log.append(sid, [{"type": "text-start", "id": "t0"}], kind="feed")
        for _ in range(2):  # two runs of text deltas, each mapped as one
            words = [{"type": "text-delta", "id": "t0", "delta": f"w{n}"} for n in range(3)]
            await front.log.append(sid, words, kind="feed")
        # A step started in a step: two AG-UI events of one chunk (the first's id ``:0``).
        tail = [{"type": "text-end", "id": "t0"}, {"type": "start-step"}, {"type": "finish"}]
        await front.log.append(sid, tail, kind="feed")
        url = f"http://127.0.0.1:{front.port}/v1/agui/generations/{sid}/events"
        async with httpx.AsyncClient(timeout=10) as client:

            async def read(last: str | None = None) -> list[Frame]:
                headers = {} if last is None else {"last-event-id": last}
                answer = await client.get(url, headers=headers)
                assert answer.status_code == 200, answer.text
                return _frames(answer.text)

            whole = await read()
            assert whole[0][1]["type"] == "RUN_STARTED"
            assert all(eid for eid, _ in whole), whole
            # Inside the message (after its second delta): the prelude re-opens the run,
            # the step and the message, each frame with the resume point as its id.
            contents = [i for i, (_, e) in enumerate(whole) if e["type"] == "TEXT_MESSAGE_CONTENT"]
            cut = whole[contents[1]][0]
            assert cut is not None
            rest = await read(cut)
            prelude = rest[:3]
            assert [e["type"] for _, e in prelude] == [
                "RUN_STARTED",
                "STEP_STARTED",
                "TEXT_MESSAGE_START",
            ]
            assert [eid for eid, _ in prelude] == [cut] * 3
            assert rest[3:] == whole[contents[1] + 1 :]
            # A reconnection from a prelude frame's id: the same again.
            assert await read(prelude[-1][0]) == rest
            # A cut between two events of one chunk (its id ``<seq>.<tag>:<n>``).
            inner = next(i for i, (eid, _) in enumerate(whole) if eid and ":" in eid)
            after = await read(whole[inner][0])
            assert all(eid for eid, _ in after), after
            assert after[-(len(whole) - inner - 1) :] == whole[inner + 1 :]
            assert {eid for eid, e in after[: len(after) - (len(whole) - inner - 1)]} == {
                whole[inner][0]
            }
