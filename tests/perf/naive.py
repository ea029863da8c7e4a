"""The naive design, for the comparison only (tests/perf/compare.py): what a tutorial
would write. One blocking ``XREAD`` per viewer on a shared redis-py client, each event
parsed and re-encoded per viewer, one chunk per event, through FastAPI's
``StreamingResponse`` under plain uvicorn. Given a pool large enough to work at all
(redis-py's default pool of 100 connections fails at the 101st viewer).

usage: python -m tests.perf.naive PORT REDIS_URL
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis

from broadcaster.core import keys

TERMINAL = {b"finish", b"error", b"abort"}


def make_app(redis_url: str) -> FastAPI:
    app = FastAPI()
    redis = Redis.from_url(redis_url, max_connections=20_000, socket_timeout=None)

    @app.get("/v1/streams/{stream_id}/events")
    async def events(stream_id: str) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            key = keys.log_key(stream_id)  # the project's layout: the same events
            last = "0-0"
            yield b"retry: 1000\n\n"
            while True:
                reply = await redis.xread({key: last}, block=15_000, count=100)
                if not reply:
                    yield b": ping\n\n"
                    continue
                for _key, entries in reply:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        seq = last.split("-")[0]
                        frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (
                            seq.encode(),
                            fields[b"t"],
                            fields[b"d"],
                        )
                        yield frame
                        if fields[b"t"] in TERMINAL:
                            yield b"data: [DONE]\n\n"
                            return

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make_app(redis_url), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
