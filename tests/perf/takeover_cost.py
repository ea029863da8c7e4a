"""What a worker lost mid-answer costs, continuing the cut answer against restarting it:
measured side by side in one run, not asserted.

    python -m tests.perf.takeover_cost [--rounds N] [--words W] [--cut C]

For each way (``WORKER_TAKEOVER=restart``, the old way, and ``continue``) and each of
``N`` rounds: real processes on 127.0.0.1 (one Redis, one front-end, workers on the real
``anthropic`` SDK against the local fake Anthropic server), a generation whose answer is
``W`` words (one output token each, 10 ms apart); the worker streaming it is killed
(``kill -9``) after ``C`` words and another takes it over after the lease. Prints, per
way: the output tokens the model streamed in all (billed), the time from the takeover to
the answer's end and from the kill to it (the lease is the same for both), and what the
AI SDK 6's stock reader (tests/clients/aisdk/read.mjs) shows after the end, from the
start: the characters of its text against the answer's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.browser import run_node_script
from tests.support.fake_anthropic import FakeAnthropicServer, stall, text_reply
from tests.support.faults import (
    Cluster,
    create_generation,
    owned_by,
    poll,
    stream_meta,
    wait_status,
)
from tests.support.polling import until
from tests.support.procs import ROOT

READER = ROOT / "tests" / "clients" / "aisdk" / "read.mjs"
DELAY_S = 0.01


def _words(n: int) -> list[str]:
    return [f"word{i} " for i in range(n)]


async def _at_seq(r: Any, gid: str, seq: int) -> bool:
    return int(stream_meta(r, gid).get("seq", 0)) >= seq


async def one_round(
    model: FakeAnthropicServer, cluster: Cluster, way: str, words: list[str], cut: int
) -> dict[str, float]:
    """One generation cut after ``cut`` words and taken over: its figures."""
    before = sum(x.deltas_sent for x in model.exchanges)
    model.enqueue([*text_reply(words)[: 2 + cut], stall()])
    if way == "restart":
        model.enqueue(text_reply(words, chunk_delay=DELAY_S))
    env = {"WORKER_TAKEOVER": way}
    victim = await asyncio.to_thread(cluster.add_worker, env)
    fe = cluster.frontends[0].url
    r = cluster.client()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
        gid = await create_generation(client, fe, f"{way} takeover", max_tokens=4096)
        await poll(lambda: _at_seq(r, gid, 3 + cut), "the words before the cut")
        killed = time.monotonic()
        victim.stop(signal.SIGKILL)
        rescuer = await asyncio.to_thread(cluster.add_worker, env)
        await until(lambda: owned_by(r, gid, rescuer), "the takeover", 30)
        taken = time.monotonic()
        await wait_status(client, fe, gid, {"completed"}, 60)
        ended = time.monotonic()
    r.close()
    rescuer.stop()
    code, out, err = await asyncio.to_thread(
        run_node_script, READER, [f"{fe}/v1/streams/{gid}/events"], 90
    )
    assert code == 0, err
    shown = json.loads(out.strip().splitlines()[-1])["text"]
    return {
        "billed": sum(x.deltas_sent for x in model.exchanges) - before,
        "takeover_to_end_s": ended - taken,
        "kill_to_end_s": ended - killed,
        "shown_chars": len(shown),
        "answer_chars": len("".join(words)),
    }


async def measure(rounds: int, n_words: int, cut: int) -> dict[str, list[dict[str, float]]]:
    words = _words(n_words)
    results: dict[str, list[dict[str, float]]] = {"restart": [], "continue": []}
    with tempfile.TemporaryDirectory() as tmp, FakeAnthropicServer() as model:
        model.will_continue("".join(words), chunk_delay=DELAY_S)
        with Cluster(Path(tmp), frontends_n=1, workers_n=0) as cluster:
            cluster.worker_env = {
                "WORKER_PROVIDER": "anthropic",
                "ANTHROPIC_BASE_URL": model.base_url,
                "ANTHROPIC_API_KEY": "test",
                "WORKER_MERGE_MS": "0",
            }
            for _ in range(rounds):
                for way, rows in results.items():  # interleaved: both see the same machine
                    rows.append(await one_round(model, cluster, way, words, cut))
    return results


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(results: dict[str, list[dict[str, float]]], n_words: int, cut: int) -> str:
    lines = [
        f"answer of {n_words} words (one token each, {DELAY_S * 1000:.0f} ms apart), worker "
        f"killed after {cut}; medians of {len(results['restart'])} rounds",
        f"{'way':<10} {'tokens billed':>13} {'takeover→end s':>15} {'kill→end s':>11} "
        f"{'ai 6 shows (chars)':>19}",
    ]
    for way, rows in results.items():
        shown = _median(rows, "shown_chars") / _median(rows, "answer_chars")
        lines.append(
            f"{way:<10} {_median(rows, 'billed'):>13.0f} "
            f"{_median(rows, 'takeover_to_end_s'):>15.2f} "
            f"{_median(rows, 'kill_to_end_s'):>11.2f} {shown:>18.2f}x"
        )
    billed = _median(results["restart"], "billed") / _median(results["continue"], "billed")
    faster = _median(results["restart"], "takeover_to_end_s") / _median(
        results["continue"], "takeover_to_end_s"
    )
    lines.append(f"restart/continue: {billed:.2f}x the tokens, {faster:.2f}x the time to finish")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--cut", type=int, default=100)
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds, args.words, args.cut))
    print(report(results, args.words, args.cut))


if __name__ == "__main__":
    main()
