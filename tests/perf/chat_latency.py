"""What the chat route costs over the generations route, measured, not asserted.

    python -m tests.perf.chat_latency [--rounds N] [--history M]

Starts its own Redis, one front-end and one worker (fake provider, no delay) on 127.0.0.1,
then, ``N`` times each, one after the other: ``POST /v1/chat`` read to ``[DONE]``, and
``POST /v1/generations`` followed by ``GET /v1/streams/{id}/events`` read to ``[DONE]``
(what a proxy in front did before). Prints the median and 95th percentile of the time to
the first byte of the stream and to its end, and the time the pure conversion and fold
take for a chat of ``M`` turns (each with a tool call and its result).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from broadcaster.chat.convert import parse_body, to_request
from broadcaster.chat.ui_message import chat_messages
from broadcaster.generations.request import Defaults
from tests.support.procs import redis_server, start_frontend, start_worker, stop_all


def _user(i: int) -> dict[str, Any]:
    return {"id": f"u{i}", "role": "user", "parts": [{"type": "text", "text": f"question {i}"}]}


def _assistant(i: int) -> dict[str, Any]:
    return {
        "id": f"a{i}",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "text", "text": "Let me look that up. " * 5, "state": "done"},
            {
                "type": "tool-lookup",
                "toolCallId": f"call_{i}",
                "state": "output-available",
                "input": {"q": f"question {i}"},
                "output": {"answer": "forty-two", "sources": list(range(10))},
            },
            {"type": "step-start"},
            {"type": "text", "text": "The answer is forty-two. " * 10, "state": "done"},
        ],
    }


def _chat(turns: int) -> dict[str, Any]:
    messages = [m for i in range(turns) for m in (_user(i), _assistant(i))] + [_user(turns)]
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    return {"id": "bench", "messages": messages, "trigger": "submit-message", "tools": [tool]}


def _timed(client: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[float, float]:
    """(seconds to the first body byte, seconds to the end) of a streamed answer."""
    started = time.perf_counter()
    first = None
    with client.stream(method, url, **kwargs) as resp:
        assert resp.status_code == 200, resp.read()
        body = b""
        for chunk in resp.iter_raw():
            first = first or time.perf_counter()
            body += chunk
        assert body.endswith(b"data: [DONE]\n\n")
    return (first or started) - started, time.perf_counter() - started


def _via_generations(client: httpx.Client, prompt: str) -> tuple[float, float]:
    started = time.perf_counter()
    created = client.post("/v1/generations", json={"prompt": prompt, "max_tokens": 16})
    assert created.status_code == 202, created.text
    first, end = _timed(client, "GET", created.json()["events_url"])
    spent = time.perf_counter() - started - end
    return spent + first, spent + end


def _report(name: str, samples: list[tuple[float, float]]) -> None:
    for label, values in (
        ("first byte", [s[0] for s in samples]),
        ("[DONE]", [s[1] for s in samples]),
    ):
        ms = sorted(v * 1000 for v in values)
        p95 = ms[int(0.95 * (len(ms) - 1))]
        print(f"{name:38} {label:10}  median {statistics.median(ms):6.1f} ms  p95 {p95:6.1f} ms")


def _pure(turns: int) -> None:
    body = _chat(turns)
    started = time.perf_counter()
    to_request(parse_body(body), Defaults())
    convert = time.perf_counter() - started
    events = [{"type": "start-step"}, {"type": "text-start", "id": "t"}]
    events += [{"type": "text-delta", "id": "t", "delta": "word "} for _ in range(2000)]
    started = time.perf_counter()
    chat_messages(body["messages"], "new", events)
    fold = time.perf_counter() - started
    print(f"convert a chat of {2 * turns + 1} messages: {convert * 1000:.1f} ms")
    print(f"fold 2,002 events onto it:          {fold * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--history", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        procs = []
        try:
            procs.append(start_frontend(redis.url, Path(tmp)))
            procs.append(start_worker(redis.url, Path(tmp), env={"WORKER_FAKE_DELAY_MS": "0"}))
            with httpx.Client(base_url=procs[0].url, timeout=30) as client:
                chat, generations = [], []
                for i in range(args.rounds):
                    body = {
                        "id": f"c{i}",
                        "messages": [_user(i)],
                        "trigger": "submit-message",
                        "max_tokens": 16,
                    }
                    chat.append(_timed(client, "POST", "/v1/chat", json=body))
                    generations.append(_via_generations(client, f"question {i}"))
            _report("POST /v1/chat", chat)
            _report("POST /v1/generations + GET events", generations)
        finally:
            stop_all(procs)
    _pure(args.history)


if __name__ == "__main__":
    main()
