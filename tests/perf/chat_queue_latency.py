"""How soon a chat's queued message starts after the answer before it ends, measured,
not asserted.

    python -m tests.perf.chat_queue_latency [--rounds N] [--before DIR]

Starts its own Redis, one front-end and one worker (fake provider) on 127.0.0.1. Each
round, a chat's first message is sent (``POST /v1/chat``, read in a thread) and, while
its answer runs, a second one with ``multitask: "enqueue"``; the figure is the time from
the first answer's ``finish`` reaching the client to the second answer's ``start``
reaching it (both over the same front-end, so what the streams themselves cost is on both
sides). With ``--before DIR`` the same rounds run again with the code of DIR (another
checkout: its processes run with ``PYTHONPATH=DIR``), and both are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.chat_tabs import body, user
from tests.support.procs import redis_server, start_frontend, start_worker, stop_all


class Reader:
    """One ``POST /v1/chat`` read in a thread: when each event type first arrived."""

    def __init__(self, url: str, payload: dict[str, Any]) -> None:
        self.first: dict[str, float] = {}
        self.thread = threading.Thread(target=self._run, args=(url, payload), daemon=True)
        self.thread.start()

    def _run(self, url: str, payload: dict[str, Any]) -> None:
        with httpx.stream("POST", url, json=payload, timeout=60) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                kind = json.loads(line[6:]).get("type", "")
                self.first.setdefault(kind, time.monotonic())

    def wait(self, kind: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while kind not in self.first:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {kind!r} within {timeout} s")
            time.sleep(0.002)
        return self.first[kind]


def measure(rounds: int, code: str | None) -> list[float]:
    env = {"PYTHONPATH": code} if code else {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        frontend = start_frontend(redis.url, Path(tmp), "frontend", env)
        worker = start_worker(redis.url, Path(tmp), "worker", {"WORKER_FAKE_DELAY_MS": "20", **env})
        try:
            api = f"{frontend.url}/v1/chat"
            gaps = []
            for i in range(rounds):
                chat = f"latency-{i}"
                first = Reader(api, body(chat, user(f"first {i}", "u1")))
                first.wait("text-delta")  # its answer runs
                queued = Reader(api, body(chat, user(f"second {i}", "u2"), multitask="enqueue"))
                queued.wait("data-queued")
                ended = first.wait("finish")
                started = queued.wait("start")
                queued.wait("finish")
                gaps.append(started - ended)
            return gaps
        finally:
            stop_all([worker, frontend])


def summary(gaps: list[float]) -> tuple[float, float, float]:
    ms = sorted(g * 1000 for g in gaps)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return statistics.median(ms), p95, ms[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--before", help="another checkout, measured the same way")
    args = parser.parse_args()
    rows = [("project", summary(measure(args.rounds, None)))]
    if args.before:
        rows.append(("before", summary(measure(args.rounds, args.before))))
    print(f"a queued message's start after its predecessor's end, {args.rounds} rounds (ms):")
    print(f"{'':10} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, (p50, p95, top) in rows:
        print(f"{name:10} {p50:8.1f} {p95:8.1f} {top:8.1f}")
    if len(rows) == 2:
        (_, a), (_, b) = rows
        ratios = "  ".join(f"{x / y:.2f}x" if y else "-" for x, y in zip(a, b, strict=True))
        print(f"{'ratio':10} {ratios}  (project / before)")


if __name__ == "__main__":
    main()
