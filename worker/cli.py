"""``python -m worker run [--concurrency N] [--provider anthropic,openai|fake]``."""

from __future__ import annotations

import argparse
import asyncio
import signal

from broadcaster.core import tracing, version
from broadcaster.core.embedded import redis_url
from broadcaster.core.logconfig import setup_logging
from broadcaster.core.settings import bad_settings, load_settings
from worker.agents.spec import AgentSpecError, load_agents
from worker.daemon import Worker, unusable_provider
from worker.settings import WorkerSettings
from worker.tools import ToolSpecError, load_tools


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (the docs' CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(prog="python -m worker")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an LLM worker process")
    run.add_argument("--concurrency", type=int, help="generations at once (WORKER_CONCURRENCY, 8)")
    run.add_argument(
        "--provider",
        help="providers served, comma-separated: anthropic, openai, or fake alone "
        "(WORKER_PROVIDERS, else WORKER_PROVIDER)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    overrides = {
        k: v
        for k, v in {"concurrency": args.concurrency, "providers": args.provider}.items()
        if v is not None
    }
    settings = load_settings(WorkerSettings, "worker", **overrides)
    setup_logging(settings.log_level, settings.log_format)
    try:
        load_tools(settings.tools)  # a bad spec stops the worker before anything starts
        load_agents(settings.agents)
    except (ToolSpecError, AgentSpecError) as exc:
        bad_settings("worker", str(exc))
    unusable = unusable_provider(settings)
    if unusable:  # refused now, not found out by each generation's viewers
        bad_settings("worker", f"{unusable}: set it, or serve another provider (--provider)")
    with redis_url(settings, "worker") as url:
        asyncio.run(_run(settings, url))


async def _run(settings: WorkerSettings, url: str) -> None:
    tracing.setup("broadcaster-worker")  # only with OTEL_EXPORTER_OTLP_ENDPOINT set
    worker = Worker(settings, url)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await tracing.close()
