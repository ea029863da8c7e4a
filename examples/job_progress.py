"""A background job reports its progress on a stream; a viewer follows it.

Start a front-end, then run this example in another shell:

    python -m broadcaster serve                 # http://127.0.0.1:8000, embedded Redis
    python examples/job_progress.py             # publishes over HTTP, follows over SSE

With ``REDIS_URL`` set (the same Redis the front-end uses) the job publishes straight
to Redis with ``broadcaster.Publisher`` instead, as a worker with Redis access would:

    REDIS_URL=redis://127.0.0.1:6379/0 python -m broadcaster serve
    REDIS_URL=redis://127.0.0.1:6379/0 python examples/job_progress.py

Options: ``--url`` (the front-end, default ``$BROADCASTER_URL`` or
http://127.0.0.1:8000), ``--steps`` and ``--delay`` (seconds between steps). With access
control on, set ``BROADCASTER_API_KEY`` (to publish over HTTP) and
``BROADCASTER_VIEWER_TOKEN`` (to read).

Any number of other viewers can watch the same job meanwhile, e.g.
``python -m broadcaster tail <job id>`` or ``curl -N <url>/v1/streams/<job id>/events``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from broadcaster import Publisher
from broadcaster.clients.stream_client import StreamClient

Publish = Callable[[str, dict[str, Any]], Awaitable[int]]


async def job(publish: Publish, job_id: str, steps: int, delay: float) -> None:
    """The background job: some work, a progress event after each step, then ``finish``
    (or ``error`` if the work fails, so that viewers are never left waiting)."""
    try:
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)  # the work of one step
            pct = round(100 * step / steps)
            await publish(job_id, {"type": "data-progress", "pct": pct, "step": step, "of": steps})
    except Exception as exc:
        await publish(job_id, {"type": "error", "errorText": f"job failed: {exc}"})
        raise
    await publish(job_id, {"type": "finish", "finishReason": "stop"})


async def follow(client: StreamClient, job_id: str) -> str:
    """A viewer: print each progress event as it arrives; return how the job ended."""
    async for event in client.events(job_id):
        if event.type == "data-progress":
            pct = int(event.data["pct"])
            bar = "#" * (pct // 5)
            print(f"{job_id} [{bar:<20}] {pct:3d}%  step {event.data['step']}/{event.data['of']}")
        elif event.terminal:
            print(f"{job_id} ended: {event.type}")
            return event.type
    return "ended"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("BROADCASTER_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()

    job_id = "job-" + secrets.token_hex(6)
    redis_url = os.environ.get("REDIS_URL")
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            StreamClient(
                args.url,
                api_key=os.environ.get("BROADCASTER_API_KEY"),
                token=os.environ.get("BROADCASTER_VIEWER_TOKEN"),
            )
        )
        publish: Publish = client.publish  # over HTTP: needs no Redis access
        if redis_url:
            publish = (await stack.enter_async_context(Publisher.from_url(redis_url))).publish
        print(f"job {job_id}: publishing via {'Redis' if redis_url else args.url}")
        # a stream exists from its first event on: announce the job before anyone follows
        await publish(job_id, {"type": "data-progress", "pct": 0, "step": 0, "of": args.steps})
        _, ending = await asyncio.gather(
            job(publish, job_id, args.steps, args.delay), follow(client, job_id)
        )
    return 0 if ending == "finish" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
