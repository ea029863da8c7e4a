"""The worker's CPU per generation: this tree against another revision of it, side by side
in one run, for each way a model's output reaches the worker.

    .venv/bin/python -m tests.perf.worker_cpu --against <rev> [--generations 5]
        [--tokens 200] [--rounds 5] [--paths anthropic,openai,responses,agent] [--pure]

Real processes on 127.0.0.1: a Redis server and a front-end of this tree, and the local
fake model servers (tests/support): Anthropic's Messages API for the real ``anthropic``
SDK, OpenAI's Chat Completions and Responses APIs for the real ``openai`` SDK, and the
hand-written agent ``echo`` (tests/support/agents.py). ``<rev>`` is exported with
``git archive`` into a temporary folder. Each round, for each path and each tree in
turn (the order rotates), a worker of that tree is started alone (a new interpreter, its
folder first on ``PYTHONPATH``), answers one generation to warm up, then
``--generations`` at once, each ``--tokens`` text deltas 2 ms apart; its CPU over those
(every thread's time on CPU, from the scheduler) divided by the generations is the
figure. The worker is stopped before the next one starts.

``--pure`` measures, instead, only the part that turns a model call's stream into the
contract's events (the provider's translation and the mapping), in process
(``tests/perf/mapping_cost.py`` run for each tree in turn, ``--rounds`` times): the best
figure of each, per generation of ``--tokens`` deltas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.perf.agui_cost import cpu_seconds
from tests.support import fake_openai, fake_openai_responses
from tests.support.fake_anthropic import FakeAnthropicServer, text_reply
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.fake_openai_responses import FakeResponsesServer
from tests.support.faults import FAST_WORKER_ENV, Cluster, create_generation, wait_status
from tests.support.procs import ROOT, Proc, spawn

DELAY_S = 0.002
PATHS = ("anthropic", "openai", "responses", "agent")
EXPORTED = ("broadcaster", "worker", "tests/__init__.py", "tests/support")


@dataclass
class Models:
    anthropic: FakeAnthropicServer
    openai: FakeOpenAIServer
    responses: FakeResponsesServer

    def env(self, path: str) -> dict[str, str]:
        """The worker's settings for ``path``."""
        if path == "anthropic":
            key = {"ANTHROPIC_API_KEY": "test"}
            return {
                "WORKER_PROVIDER": "anthropic",
                "ANTHROPIC_BASE_URL": self.anthropic.base_url,
                **key,
            }
        if path in ("openai", "responses"):
            server = self.openai if path == "openai" else self.responses
            api = "chat-completions" if path == "openai" else "responses"
            return {
                "WORKER_PROVIDER": "openai",
                "WORKER_OPENAI_API": api,
                "OPENAI_BASE_URL": server.base_url,
                "OPENAI_API_KEY": "test",
            }
        return {"WORKER_AGENTS": "echo=tests.support.agents:echo", "WORKER_PROVIDERS": "echo"}

    def enqueue(self, path: str, tokens: int) -> dict[str, Any]:
        """Script one answer of ``tokens`` deltas; the request's fields for ``path``."""
        words = [f"w{j} " for j in range(tokens)]
        if path == "anthropic":
            self.anthropic.enqueue(text_reply(words, chunk_delay=DELAY_S))
            return {"max_tokens": 4096}
        if path == "openai":
            whole = fake_openai.reply(text=words)
            paced = [
                s for step in whole[1 : tokens + 1] for s in (step, fake_openai.delay(DELAY_S))
            ]
            self.openai.enqueue([whole[0], *paced, *whole[tokens + 1 :]])
            return {"provider": "openai", "model": "gpt-test"}
        if path == "responses":
            whole = fake_openai_responses.reply(text=words)
            paced = []
            for step in whole:
                paced.append(step)
                if "output_text.delta" in str(getattr(step, "event", "")):
                    paced.append(fake_openai.delay(DELAY_S))
            self.responses.enqueue(paced)
            return {"provider": "openai", "model": "gpt-test"}
        return {"provider": "echo", "metadata": {"words": tokens, "delay": DELAY_S}}


def start_worker(tree: Path, env: dict[str, str], log_dir: Path, name: str) -> Proc:
    """A worker of ``tree``, as a new interpreter, ready once it logs its providers."""
    full = {"PYTHONPATH": str(tree), **FAST_WORKER_ENV, **env}
    proc = spawn(name, ["-m", "worker", "run"], full, log_dir, cwd=tree, fork=False)
    deadline = time.monotonic() + 60
    while "provider" not in proc.log():
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop(signal.SIGKILL)
            raise RuntimeError(f"worker of {tree} did not start:\n{proc.log()}")
        time.sleep(0.05)
    return proc


async def one_round(
    client: httpx.AsyncClient,
    base: str,
    models: Models,
    path: str,
    worker: Proc,
    *,
    n: int,
    tokens: int,
) -> float:
    """Worker CPU seconds per generation of ``n`` generations of ``path`` at once."""
    started = cpu_seconds(worker.pid)
    made = []
    for i in range(n):
        extra = models.enqueue(path, tokens)
        made.append(await create_generation(client, base, f"round {i}", **extra))
    for gid in made:
        done = await wait_status(client, base, gid, {"completed", "failed"}, 120)
        assert done.get("status") == "completed", done
    return (cpu_seconds(worker.pid) - started) / n


@contextlib.contextmanager
def exported(rev: str) -> Iterator[Path]:
    """The tree of ``rev`` (the parts a worker runs), in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="worker-cpu-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, *EXPORTED],
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp)


async def measure(
    args: argparse.Namespace, trees: dict[str, Path]
) -> dict[tuple[str, str], list[float]]:
    paths = tuple(args.paths.split(","))
    took: dict[tuple[str, str], list[float]] = {(p, t): [] for p in paths for t in trees}
    names = list(trees)
    models = Models(
        FakeAnthropicServer(api_key="test"),
        FakeOpenAIServer(api_key="test"),
        FakeResponsesServer(api_key="test"),
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        models.anthropic,
        models.openai,
        models.responses,
        Cluster(Path(tmp), frontends_n=1, workers_n=0) as cluster,
    ):
        base = cluster.frontends[0].url
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as client:
            for r in range(args.rounds):
                for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
                    for tree in names[r % 2 :] + names[: r % 2]:
                        env = {"REDIS_URL": cluster.redis_url, **models.env(path)}
                        worker = start_worker(trees[tree], env, Path(tmp), f"{path}-{tree}-{r}")
                        try:
                            await one_round(client, base, models, path, worker, n=1, tokens=20)
                            figure = await one_round(
                                client,
                                base,
                                models,
                                path,
                                worker,
                                n=args.generations,
                                tokens=args.tokens,
                            )
                        finally:
                            worker.stop()
                        took[(path, tree)].append(figure)
    return took


def measure_pure(
    args: argparse.Namespace, trees: dict[str, Path]
) -> dict[tuple[str, str], list[float]]:
    """Seconds of CPU per call of the translation and mapping alone, per path and tree."""
    took: dict[tuple[str, str], list[float]] = {}
    names = list(trees)
    script = ROOT / "tests" / "perf" / "mapping_cost.py"
    for r in range(args.rounds):
        for tree in names[r % 2 :] + names[: r % 2]:
            run = subprocess.run(
                [sys.executable, str(script), "--tokens", str(args.tokens), "--calls", "200"],
                env={**os.environ, "PYTHONPATH": str(trees[tree])},
                cwd=trees[tree],
                capture_output=True,
                text=True,
                check=True,
                timeout=600,
            )
            for path, micros in json.loads(run.stdout).items():
                took.setdefault((path, tree), []).append(micros / 1e6)
    return took


def report(
    took: dict[tuple[str, str], list[float]], names: list[str], args: argparse.Namespace
) -> str:
    before, after = names
    what = (
        f"the translation and mapping alone, in process, per call of {args.tokens} deltas"
        if args.pure
        else f"worker CPU per generation of {args.generations} x {args.tokens} deltas at once"
    )
    lines = [f"{args.rounds} rounds; {what}, ms ({before} against {after}):"]
    for path in args.paths.split(","):
        runs = {tree: took[(path, tree)] for tree in names}
        middle = {tree: statistics.median(v) for tree, v in runs.items()}
        best = {tree: min(v) for tree, v in runs.items()}
        cells = [f"{t} median {middle[t] * 1e3:7.3f} best {best[t] * 1e3:7.3f}" for t in names]
        ratios = (
            f"{middle[after] / middle[before]:.2f}x median, {best[after] / best[before]:.2f}x best"
        )
        lines.append(f"  {path:10} " + "  |  ".join(cells) + f"  |  {after}/{before}: {ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--pure", action="store_true", help="the mapping alone, in process")
    args = parser.parse_args()
    with exported(args.against) as old:
        trees = {args.against: old, "this": ROOT}
        took = measure_pure(args, trees) if args.pure else asyncio.run(measure(args, trees))
    print(report(took, list(trees), args))


if __name__ == "__main__":
    main()
