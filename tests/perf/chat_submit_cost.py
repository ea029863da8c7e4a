"""A submit to a long chat against a submit to a short one, measured, not asserted.

    python -m tests.perf.chat_submit_cost [--turns N] [--submits N]

Starts its own Redis and one front-end (no worker: each answer stays queued, and is
stopped before the next submit, untimed) on 127.0.0.1, seeds two chats
(``PUT /v1/chat/{id}/messages``): one of ``--turns`` turns, one of a single turn. Then,
alternating between them, ``--submits`` submits of one new message each as the AI SDK
sends it with ``prepareSendMessagesRequest`` (``{id, message}``), each timed from the
request to the answer's first bytes (the submit's whole work: the record read and
written, the model request built and stored, the job queued). Beside it, the record's
own write, measured on the same Redis: the submit script adding one message to each
chat's history, against the whole history written again (what every submit did before
the server kept the history). Prints the median and p95 of each, side by side, and the
ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from broadcaster.chat.records import Chats, NewTurn
from tests.support.procs import redis_server, start_frontend, stop_all

SAID = "A sentence of an ordinary length, as a person would write in a chat. "


def message(mid: str, role: str, text: str) -> dict[str, Any]:
    return {"id": mid, "role": role, "parts": [{"type": "text", "text": text}]}


def chat_of(turns: int) -> list[dict[str, Any]]:
    messages = []
    for i in range(turns):
        messages.append(message(f"u{i}", "user", f"question {i}: {SAID}"))
        messages.append(message(f"a{i}", "assistant", f"answer {i}: {SAID * 3}"))
    return messages


def summary(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def submit(client: httpx.Client, chat: str, n: int) -> float:
    """One ``{id, message}`` submit, timed to the answer's first bytes; then stopped."""
    body = {"id": chat, "message": message(f"n{n}", "user", f"one more: {SAID}")}
    start = time.perf_counter()
    with client.stream("POST", "/v1/chat", json=body) as response:
        response.raise_for_status()
        next(response.iter_raw())
        took = time.perf_counter() - start
    client.post(f"/v1/chat/{chat}/stop").raise_for_status()
    return took


async def record_writes(
    redis_url: str, sizes: dict[str, int], rounds: int
) -> dict[str, list[float]]:
    """The submit script alone: one message added (``keep``) and the whole history
    written again, on chats of ``sizes`` messages of their own."""
    redis = Redis.from_url(redis_url)
    chats = Chats(redis, 3600)
    out: dict[str, list[float]] = {}
    try:
        for name, count in sizes.items():
            history = chat_of(count // 2)
            chat = f"script-{name}"
            await chats.submit(chat, None, NewTurn("g0", "m0", history))
            seen, length = "g0", len(history)
            for way in ("add one", "write all"):
                times = []
                for r in range(rounds):
                    new = message(f"x{r}", "user", SAID)
                    if way == "add one":
                        turn = NewTurn(f"g{way}{r}", "m", [new], keep=length)
                    else:
                        turn = NewTurn(f"g{way}{r}", "m", [*history, new])
                    start = time.perf_counter()
                    assert await chats.submit(chat, seen, turn)
                    times.append(time.perf_counter() - start)
                    seen, length = (
                        turn.generation,
                        length + 1 if way == "add one" else len(history) + 1,
                    )
                out[f"{way}, {name}"] = times
    finally:
        await redis.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--submits", type=int, default=20)
    args = parser.parse_args()
    env = {
        "BROADCASTER_CHAT_MAX_MESSAGES": str(4 * args.turns + 100),
        "BROADCASTER_CHAT_MAX_BODY_BYTES": str(256 * 1024 * 1024),
        "BROADCASTER_RATE_LIMIT_PER_MINUTE": "100000",
        "BROADCASTER_MAX_JSON_VALUES": str(100 * args.turns + 100_000),
    }
    chats = {"long": chat_of(args.turns), "short": chat_of(1)}
    times: dict[str, list[float]] = {name: [] for name in chats}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        frontend = start_frontend(redis.url, Path(tmp), "frontend", env)
        try:
            with httpx.Client(base_url=frontend.url, timeout=300) as client:
                for name, history in chats.items():
                    put = client.put(f"/v1/chat/{name}/messages", json={"messages": history})
                    put.raise_for_status()
                submit(client, "short", -1)  # warm: the first request of a process
                for n in range(args.submits):
                    for name in chats:  # alternating, so a slower stretch hits both
                        times[name].append(submit(client, name, n))
        finally:
            stop_all([frontend])
        sizes = {"long": 2 * args.turns, "short": 2}
        scripts = asyncio.run(record_writes(redis.url, sizes, args.submits))
    print(f"POST /v1/chat {{id, message}}: a {args.turns}-turn chat against a 1-turn one,")
    print(f"{args.submits} submits each, alternating (ms to the answer's first bytes):")
    print(f"{'':>22}{'p50':>10}{'p95':>10}")
    for name in chats:
        p50, p95 = summary(times[name])
        print(f"{name:>22}{p50:>10.2f}{p95:>10.2f}")
    ratio = [a / b for a, b in zip(summary(times["long"]), summary(times["short"]), strict=True)]
    print(f"{'ratio long/short':>22}{ratio[0]:>9.2f}x{ratio[1]:>9.2f}x")
    print()
    print("The record's write alone (the submit script, ms):")
    for name, took in scripts.items():
        p50, p95 = summary(took)
        print(f"{name:>22}{p50:>10.2f}{p95:>10.2f}")
    for way in ("add one", "write all"):
        long, short = summary(scripts[f"{way}, long"]), summary(scripts[f"{way}, short"])
        print(f"{way + ' long/short':>22}{long[0] / short[0]:>9.2f}x{long[1] / short[1]:>9.2f}x")


if __name__ == "__main__":
    main()
