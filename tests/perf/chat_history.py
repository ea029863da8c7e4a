"""A page of a long chat's history against the whole of it, measured, not asserted.

    python -m tests.perf.chat_history [--turns N] [--limit N] [--reads N]

Starts its own Redis and one front-end (no worker: the chat's answer stays queued, so
the chat is exactly what was sent) on 127.0.0.1, and submits one chat of ``--turns``
turns (a user and an assistant message each, then the new user message) in one
``POST /v1/chat``, as the AI SDK sends a whole chat. Then, one after the other, the
whole history (``GET /v1/chat/{id}/messages``) and its newest page
(``?limit=N``), each ``--reads`` times; prints the median and p95 of each side by side,
and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import redis_server, start_frontend, stop_all


def message(mid: str, role: str, text: str) -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": text}]}


def long_chat(turns: int) -> list[dict[str, Any]]:
    said = "A sentence of an ordinary length, as a person would write in a chat. "
    messages = []
    for i in range(turns):
        messages.append(message(f"u{i}", "user", f"question {i}: {said}"))
        messages.append(message(f"a{i}", "assistant", f"answer {i}: {said * 3}"))
    messages.append(message(f"u{turns}", "user", "and the last question"))
    return messages


def timed(client: httpx.Client, url: str, reads: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(reads):
        start = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
        size = len(response.content)
    return times, size


def summary(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        # One submit of the whole chat: past the deployment's default bounds on a body.
        env = {
            "BROADCASTER_CHAT_MAX_MESSAGES": str(2 * args.turns + 1),
            "BROADCASTER_MAX_JSON_VALUES": str(50 * args.turns + 100_000),
        }
        frontend = start_frontend(redis.url, Path(tmp), "frontend", env)
        try:
            with httpx.Client(base_url=frontend.url, timeout=120) as client:
                body = {"id": "long-chat", "messages": long_chat(args.turns)}
                with client.stream("POST", "/v1/chat", json=body) as response:
                    response.raise_for_status()  # its answer stays queued: no worker
                url = "/v1/chat/long-chat/messages"
                whole, whole_size = timed(client, url, args.reads)
                page, page_size = timed(client, f"{url}?limit={args.limit}", args.reads)
        finally:
            stop_all([frontend])
    rows = [
        ("whole", summary(whole), whole_size),
        (f"page {args.limit}", summary(page), page_size),
    ]
    messages = 2 * args.turns + 1
    print(f"GET /v1/chat/{{id}}/messages of a {args.turns}-turn chat ({messages} messages),")
    print(f"{args.reads} reads each, one after the other (ms):")
    print(f"{'':10} {'p50':>9} {'p95':>9} {'bytes':>11}")
    for name, (p50, p95), size in rows:
        print(f"{name:10} {p50:9.2f} {p95:9.2f} {size:11d}")
    (_, (w50, w95), _), (_, (p50, p95), _) = rows
    print(f"{'ratio':10} {w50 / p50:8.1f}x {w95 / p95:8.1f}x  (whole / page)")


if __name__ == "__main__":
    main()
