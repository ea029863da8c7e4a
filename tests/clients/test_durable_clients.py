"""A generation read as a Durable Stream by the protocol's own clients, against what the
project's SSE route shows its viewers of the same generation.

A generation is served at ``/v1/stream/{generation id}`` as a read-only
``application/json`` Durable Stream: one JSON message per event (the event's data
object), closed at the terminal event. So whatever a Durable Streams client reads there
must be, message for message and in order, the data objects of
``GET /v1/streams/{id}/events`` (without its closing ``[DONE]``).

- The TypeScript client (``@durable-streams/client``, tests/clients/durable/follow.mjs)
  follows the generation live from offset -1 while the worker writes it, until the stream
  is closed: in its default live mode (catch-up reads, then SSE) and in long-poll mode.
- The Python client (``durable-streams`` 0.1.0 on PyPI) reads it once it has ended.
  0.1.0 knows nothing of Stream-Closed, so a live read of it would never end: it reads
  with ``live=False``, a page at a time, until a page says it is up to date, and the last
  page must say ``Stream-Closed: true``.

The stack is real processes on 127.0.0.1: a Redis server of the module's own, two
front-ends and one worker with the fake provider, slowed to 40 ms a token so that a
generation lasts about 3 s and the node client follows it live. The Durable Streams reads
go to one front-end and the SSE viewer to the other.

Needs node >= 20 and ``npm ci --prefix tests/clients/durable`` (make test does it);
without them the tests fail and say so. They never skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import durable_streams
import httpx
import pytest

from tests.support import node_host
from tests.support.browser import start_node_script
from tests.support.durable import FOLLOW, require_node_packages
from tests.support.faults import create_generation
from tests.support.procs import Proc, SSEResult, own_redis, read_sse, start_frontend, start_worker
from tests.support.topologies import log_tails

pytestmark = pytest.mark.anyio

FRONTEND_ENV = {"BROADCASTER_DS_LONG_POLL_SECONDS": "0.5"}
WORKER_ENV = {"WORKER_FAKE_DELAY_MS": "40", "WORKER_MERGE_MS": "0"}
TERMINAL = ("finish", "error", "abort")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    """Front-ends a and b, and a worker, on a Redis server of the module's own (so that no
    other worker of the session takes these generations)."""
    logs: Path = tmp_path_factory.mktemp("durable-clients")
    redis = own_redis(logs)
    procs: list[Proc] = []
    try:
        procs.append(start_frontend(redis.url, logs, "ds-clients-frontend-a", FRONTEND_ENV))
        procs.append(start_frontend(redis.url, logs, "ds-clients-frontend-b", FRONTEND_ENV))
        procs.append(start_worker(redis.url, logs, "ds-clients-worker", WORKER_ENV))
        yield procs
    finally:
        for p in procs:
            p.stop()
        redis.stop()


def sse_messages(sse: SSEResult) -> list[Any]:
    """The data objects of a whole SSE read of a generation, which must have reached its
    end (``[DONE]``) after a terminal event."""
    assert sse.status == 200, f"SSE read: {sse.status} {sse.raw[:500]!r}"
    assert sse.done, f"the SSE read did not reach [DONE]: {sse.raw[-500:]!r}"
    messages = [e.json() for e in sse.events if e.data != "[DONE]"]
    assert messages, "the generation has no events"
    assert messages[-1]["type"] in TERMINAL, messages[-1]
    return messages


def same_messages(got: list[Any], expected: list[Any], who: str) -> str:
    """'' when equal, else what differs first (the lists can be long)."""
    if got == expected:
        return ""
    for i, (g, e) in enumerate(zip(got, expected, strict=False)):
        if g != e:
            return f"{who}: message {i} is {g!r}, the SSE viewer's is {e!r}"
    return (
        f"{who}: {len(got)} messages, the SSE viewer got {len(expected)};"
        f" last of each: {got[-1:]!r} / {expected[-1:]!r}"
    )


@pytest.mark.parametrize("live", ["auto", "long-poll"])
async def test_node_client_follows_a_generation_as_its_viewers_see_it(
    stack: list[Proc], live: str
) -> None:
    require_node_packages()
    a, b, _worker = stack
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create_generation(client, a.url, f"follow me ({live})", max_tokens=64)
        # Following from the moment the generation exists: the worker has likely not
        # started it yet, and it runs ~3 s, so the client catches up, then goes live.
        node = start_node_script(FOLLOW, [f"{a.url}/v1/stream/{gid}", live])
        try:
            sse = await read_sse(client, f"{b.url}/v1/streams/{gid}/events")
        finally:
            code, out, err = node_host.finish(node, timeout=90)
    expected = sse_messages(sse)
    assert code == 0, (
        f"follow.mjs ({live}) exited with {code}\nstderr:\n{err}\nstdout:\n{out[-2000:]}\n"
        f"{log_tails(stack)}"
    )
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    problem = same_messages(got, expected, f"@durable-streams/client ({live})")
    assert not problem, problem


def read_with_python_client(url: str) -> tuple[list[Any], dict[str, str]]:
    """Every message of a closed JSON stream with ``durable-streams`` 0.1.0, and the
    headers of its last page: catch-up reads (``live=False``, which 0.1.0 ends after one
    response), each from where the last one ended, until one is up to date."""
    messages: list[Any] = []
    offset = "-1"
    for _ in range(10_000):
        with durable_streams.stream(url, offset=offset, live=False, timeout=30) as res:
            messages += res.read_json()
            if res.up_to_date:
                return messages, {k.lower(): v for k, v in res.headers.items()}
            assert res.offset and res.offset != offset, (
                f"a page at offset {offset} is not up to date, yet gives no next offset"
                f" ({res.offset!r}): {res.headers}"
            )
            offset = res.offset
    raise AssertionError(f"{url}: not up to date after 10,000 pages")


async def test_python_client_reads_a_finished_generation(stack: list[Proc]) -> None:
    a, b, _worker = stack
    async with httpx.AsyncClient(timeout=30) as client:
        gid = await create_generation(client, a.url, "read me in Python", max_tokens=64)
        sse = await read_sse(client, f"{b.url}/v1/streams/{gid}/events")  # to its end
    expected = sse_messages(sse)
    try:
        got, last_headers = read_with_python_client(f"{a.url}/v1/stream/{gid}")
    except (durable_streams.DurableStreamError, durable_streams.FetchError) as exc:
        raise AssertionError(f"durable-streams: {exc!r}\n{log_tails(stack)}") from None
    problem = same_messages(got, expected, "durable-streams (Python)")
    assert not problem, problem
    assert last_headers.get("content-type", "").startswith("application/json"), last_headers
    assert last_headers.get("stream-closed") == "true", (
        f"the last page of an ended generation does not say Stream-Closed: true: {last_headers}"
    )
