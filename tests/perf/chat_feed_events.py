"""What a user's lifecycle feed carries per turn, against what the turns' answers carry,
counted, not asserted.

    python -m tests.perf.chat_feed_events [--chats N] [--turns N]

Starts its own Redis, one front-end and one worker (the fake provider, which streams a
few dozen text deltas an answer) on 127.0.0.1; one user opens ``GET /v1/chats/events``,
then plays ``--turns`` turns in each of ``--chats`` chats (``{id, message}``, each answer
read to its end). Once every turn is finished on the feed, prints the events the feed
carried (by type) and per turn, beside the events of the turns' answers (what one
connection per chat, or ``/v1/events?chat=``, would have carried).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import parse_sse, redis_server, start_frontend, start_worker, stop_all


def read_feed(url: str, want: int, out: list[dict[str, Any]], ready: threading.Event) -> None:
    """The feed, until ``want`` turns finished on it."""
    with httpx.stream("GET", f"{url}/v1/chats/events", timeout=120) as response:
        response.raise_for_status()
        ready.set()
        buf = b""
        for chunk in response.iter_raw():
            buf += chunk
            events, _, _ = parse_sse(buf[: buf.rfind(b"\n\n") + 2])
            if sum(1 for e in events if e.event == "chat-turn-finished") >= want:
                out.extend(json.loads(e.data) for e in events)
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=3)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    feed: list[dict[str, Any]] = []
    answers = 0
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        frontend = start_frontend(redis.url, Path(tmp), "frontend")
        worker = start_worker(redis.url, Path(tmp), "worker", {"WORKER_FAKE_DELAY_MS": "1"})
        try:
            ready = threading.Event()
            want = args.chats * args.turns
            reader = threading.Thread(target=read_feed, args=(frontend.url, want, feed, ready))
            reader.start()
            ready.wait(30)
            with httpx.Client(base_url=frontend.url, timeout=60) as client:
                for turn in range(args.turns):
                    for chat in range(args.chats):
                        said = {"type": "text", "text": f"question {turn} of chat {chat}"}
                        message = {"id": f"u{turn}", "role": "user", "parts": [said]}
                        body = {"id": f"feed-chat-{chat}", "message": message}
                        answer = client.post("/v1/chat", json=body)
                        answer.raise_for_status()
                        answers += sum(
                            1 for line in answer.text.splitlines() if line.startswith("data: {")
                        )
            reader.join(120)
        finally:
            stop_all([worker, frontend])
    turns = args.chats * args.turns
    kinds = collections.Counter(e["type"] for e in feed if e["type"] != "chat-feed-opened")
    carried = sum(kinds.values())
    print(f"{args.chats} chats x {args.turns} turns = {turns} turns, one user, one feed:")
    for kind, count in sorted(kinds.items()):
        print(f"  {kind:<22}{count:>6}")
    print(f"  {'feed events':<22}{carried:>6}   {carried / turns:.1f} a turn")
    per_turn = f"{answers / turns:.1f} a turn (what a connection per chat carries)"
    print(f"  {'answer events':<22}{answers:>6}   {per_turn}")


if __name__ == "__main__":
    main()
