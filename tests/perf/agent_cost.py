"""What an agent costs the worker per token against the built-in Anthropic path: worker
CPU per streamed token, the three paths measured in rotating rounds of one run, with the
ratios (an agent's adapter must not be the bottleneck).

    .venv/bin/python -m tests.perf.agent_cost [--generations 5] [--tokens 400] [--rounds 5]

Real processes on 127.0.0.1: a Redis server of its own, one front-end and three workers.
One serves ``anthropic`` on the real ``anthropic`` SDK against the local fake Anthropic
server (tests/support), one only the agent ``echo`` (tests/support/agents.py, a plain
async callable yielding AI SDK text chunks), one only the OpenAI Agents SDK agent
``assistant`` (tests/support/openai_agents.py: the SDK's Chat Completions model against
the local fake OpenAI server, through worker/agents/openai_agents.py). Each round starts
``--generations`` generations at once on one of them, each answering ``--tokens`` text
deltas 2 ms apart, and waits for them all to complete. The worker's CPU (its threads'
time on CPU, from the scheduler) over the round, divided by the tokens streamed, is the
figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.perf.agui_cost import cpu_seconds
from tests.support.fake_anthropic import FakeAnthropicServer, text_reply
from tests.support.fake_openai import FakeOpenAIServer, delay, reply
from tests.support.faults import Cluster, create_generation, wait_status
from tests.support.procs import ROOT, Proc

DELAY_S = 0.002
KINDS = ("anthropic", "agent", "openai-agents")


def _openai_answer(tokens: int) -> list[Any]:
    """``tokens`` text chunks ``DELAY_S`` apart, in OpenAI's Chat Completions stream."""
    whole = reply(text=[f"w{j} " for j in range(tokens)])
    paced = [s for step in whole[1 : tokens + 1] for s in (step, delay(DELAY_S))]
    return [whole[0], *paced, *whole[tokens + 1 :]]


async def one_round(
    kind: str,
    worker: Proc,
    base: str,
    model: FakeAnthropicServer,
    oai: FakeAnthropicServer,  # the fake OpenAI server (its ``with`` types it so)
    *,
    n: int,
    tokens: int,
) -> float:
    """Worker CPU seconds per token of one round of ``n`` generations on ``kind``."""
    started = cpu_seconds(worker.pid)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client:
        made = []
        for i in range(n):
            if kind == "anthropic":
                model.enqueue(text_reply([f"w{j} " for j in range(tokens)], chunk_delay=DELAY_S))
                made.append(await create_generation(client, base, f"round {i}", max_tokens=4096))
            elif kind == "openai-agents":
                oai.enqueue(_openai_answer(tokens))
                made.append(
                    await create_generation(client, base, f"round {i}", provider="assistant")
                )
            else:
                metadata = {"words": tokens, "delay": DELAY_S}
                made.append(
                    await create_generation(
                        client, base, f"round {i}", provider="echo", metadata=metadata
                    )
                )
        for gid in made:
            done = await wait_status(client, base, gid, {"completed", "failed"}, 120)
            assert done.get("status") == "completed", done
    return (cpu_seconds(worker.pid) - started) / (n * tokens)


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    took: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeAnthropicServer(api_key="test") as model,
        FakeOpenAIServer(api_key="test") as oai,
        Cluster(Path(tmp), frontends_n=1, workers_n=0) as cluster,
    ):
        workers = {
            "anthropic": cluster.add_worker(
                {
                    "WORKER_PROVIDER": "anthropic",
                    "ANTHROPIC_BASE_URL": model.base_url,
                    "ANTHROPIC_API_KEY": "test",
                }
            ),
            "agent": cluster.add_worker(
                {
                    "WORKER_AGENTS": "echo=tests.support.agents:echo",
                    "WORKER_PROVIDERS": "echo",
                    "PYTHONPATH": str(ROOT),
                }
            ),
            "openai-agents": cluster.add_worker(
                {
                    "WORKER_AGENTS": "assistant=tests.support.openai_agents:assistant",
                    "WORKER_PROVIDERS": "assistant",
                    "OPENAI_AGENTS_FAKE_URL": oai.base_url,
                    "PYTHONPATH": str(ROOT),
                }
            ),
        }
        base = cluster.frontends[0].url
        for kind in KINDS:  # warm up both paths
            await one_round(kind, workers[kind], base, model, oai, n=1, tokens=50)
        for r in range(args.rounds):
            for kind in KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]:
                took[kind].append(
                    await one_round(
                        kind,
                        workers[kind],
                        base,
                        model,
                        oai,
                        n=args.generations,
                        tokens=args.tokens,
                    )
                )
    return took


def report(took: dict[str, list[float]], args: argparse.Namespace) -> str:
    best = {kind: min(v) for kind, v in took.items()}
    middle = {kind: statistics.median(v) for kind, v in took.items()}
    lines = [
        f"{args.generations} generations x {args.tokens} tokens at once, {args.rounds} rounds"
        " each; worker CPU per token:"
    ]
    for kind in KINDS:
        rounds = " ".join(f"{v * 1e6:.1f}" for v in took[kind])
        lines.append(
            f"  {kind:13} best {best[kind] * 1e6:6.1f} us, median {middle[kind] * 1e6:6.1f} us"
            f"  (rounds: {rounds})"
        )
    lines.append(
        f"  agent / anthropic: best {best['agent'] / best['anthropic']:.2f}x,"
        f" median {middle['agent'] / middle['anthropic']:.2f}x"
    )
    lines.append(
        f"  openai-agents / anthropic: best {best['openai-agents'] / best['anthropic']:.2f}x,"
        f" median {middle['openai-agents'] / middle['anthropic']:.2f}x"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(report(asyncio.run(measure(args)), args))


if __name__ == "__main__":
    main()
