"""``python -m broadcaster webhooks run | dead | replay | secret``: the deliverer as a
process of its own, the dead-letter list for an operator, and a new signing secret."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from broadcaster.core import connection
from broadcaster.core.durability import Durability, DurabilityUnsupported, Policy
from broadcaster.core.embedded import deployment_url, redis_url
from broadcaster.core.logconfig import setup_logging
from broadcaster.core.names import is_entry_id
from broadcaster.core.process import MetricsServer
from broadcaster.core.settings import load_settings
from broadcaster.webhooks.compose import iso
from broadcaster.webhooks.deliverer import Deliverer, DeliveryConfig
from broadcaster.webhooks.metrics import WebhookMetrics
from broadcaster.webhooks.queue import DeliveryQueue
from broadcaster.webhooks.settings import DelivererSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="webhooks_command", required=True)
    sub.add_parser("run", help="deliver webhooks (instead of, or beside, the front-ends)")
    dead = sub.add_parser("dead", help="list the dead-letter list, oldest first")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    dead.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    sub.add_parser(
        "secret",
        help="print a new signing secret (whsec_…) for BROADCASTER_WEBHOOK_SECRET and your "
        "receiver",
    )
    replay = sub.add_parser("replay", help="deliver dead deliveries again")
    replay.add_argument("--all", action="store_true", help="every dead delivery")
    replay.add_argument("ids", nargs="*", help="dead-letter entry ids (from 'dead')")


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def main(args: argparse.Namespace) -> int:
    if args.webhooks_command == "secret":  # needs no setting and no Redis
        print(new_secret())
        return 0
    settings = load_settings(DelivererSettings, f"broadcaster webhooks {args.webhooks_command}")
    setup_logging(settings.log_level, settings.log_format)
    if args.webhooks_command == "replay" and bool(args.ids) == bool(args.all):
        raise SystemExit("webhooks replay: give --all or entry ids, not both")
    malformed = [i for i in getattr(args, "ids", []) if not is_entry_id(i)]
    if malformed:
        raise SystemExit(
            f"webhooks replay: not a dead-letter entry id: {', '.join(malformed)} "
            "(ids look like 1795371633000-0: see 'webhooks dead')"
        )
    if args.webhooks_command == "run":
        with redis_url(settings) as url:
            asyncio.run(_run(settings, url))
        return 0
    # Inspecting a deployment: its Redis, never a new embedded one.
    url = deployment_url(settings, f"broadcaster webhooks {args.webhooks_command}")
    if args.webhooks_command == "dead":
        return asyncio.run(_dead(url, args.limit, args.json))
    return asyncio.run(_replay(url, args.ids, args.all))


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[Redis]:
    redis = connection.command_client(url, 8)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _run(settings: DelivererSettings, url: str) -> None:
    if not settings.webhooks_configured():
        raise SystemExit(
            "webhooks run: set BROADCASTER_WEBHOOK_URL (or BROADCASTER_WEBHOOK_ALLOWED_ORIGINS "
            "for generations' own URLs) and BROADCASTER_WEBHOOK_SECRET"
        )
    registry = CollectorRegistry()
    metrics_server = None
    if settings.webhook_metrics_port:
        metrics_server = await MetricsServer(registry).start(
            settings.webhook_metrics_host, settings.webhook_metrics_port
        )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    config = DeliveryConfig.from_settings(settings)
    try:
        async with _client(url) as redis:
            durability = Durability(redis, Policy.of(settings))
            try:
                await durability.check_at_start()
            except DurabilityUnsupported as exc:  # said in one line, as a bad setting is
                raise SystemExit(f"webhooks run: {exc}") from None
            try:
                metrics = WebhookMetrics(registry)
                grace = config.timeout
                async with Deliverer(
                    redis, url, config, metrics, grace=grace, durability=durability
                ):
                    await stopping.wait()
            finally:
                await durability.aclose()
    finally:
        if metrics_server is not None:
            await metrics_server.stop()


async def _dead(url: str, limit: int, as_json: bool) -> int:
    async with _client(url) as redis:
        dead = await DeliveryQueue(redis).dead_list(limit)
    for d in dead:
        row = {
            "entry": d.entry_id,
            "webhook_id": d.delivery.webhook_id,
            "type": d.delivery.type,
            "stream": d.delivery.stream_id,
            "to": d.delivery.to or "(deployment)",
            "attempts": d.attempts,
            "reason": d.reason,
            "failed_at": iso(d.failed_at),
        }
        if as_json:
            print(json.dumps(row | {"body": json.loads(d.delivery.body)}))
        else:
            print("  ".join(str(v) for v in row.values()))
    if not as_json:
        print(f"{len(dead)} dead deliveries", file=sys.stderr)
    return 0


async def _replay(url: str, ids: list[str], every: bool) -> int:
    unknown: list[str] = []
    async with _client(url) as redis:
        queue = DeliveryQueue(redis)
        if every:
            put = 0
            while batch := [d.entry_id for d in await queue.dead_list(500)]:
                put += len(await queue.replay(batch))
        else:
            found = await queue.replay(ids)
            put = len(found)
            unknown = [i for i in dict.fromkeys(ids) if i not in found]
    print(f"{put} deliveries queued again")
    if every or not unknown:
        return 0
    print(f"broadcaster webhooks replay: no dead delivery {', '.join(unknown)}", file=sys.stderr)
    return 1
