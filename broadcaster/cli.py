"""Command line: ``serve`` (a front-end) and ``demo`` (everything on the embedded Redis);
``webhooks`` (the deliverer, the dead-letter list, a signing secret), ``providers``,
``tail``, ``bench``, ``hash-key``; ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import importlib.util
import ipaddress
import logging
import sys
from typing import TYPE_CHECKING, Any

from broadcaster.auth.credentials import LEGACY_TOKENS_UNTIL, hash_key, parse_api_keys
from broadcaster.core.logconfig import setup_logging

if TYPE_CHECKING:
    from broadcaster.http.app import BroadcasterApp
    from broadcaster.http.server import DrainingServer
    from broadcaster.http.settings import Settings

# Each command imports what it runs when it runs: ``--version``, ``hash-key`` or a
# mistyped command answers without importing the server (FastAPI, pydantic's models,
# redis-py: a second and a half of CPU), and a server's start imports no other command's
# modules. (The tests' fork server imports what ``serve`` does before it forks:
# tests/support/forkserver.py.)

log = logging.getLogger("broadcaster")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """The secure default: without API keys *and* tokens (a secret or a JWKS), serve only
    on loopback, unless ``--insecure`` says otherwise out loud. (Also stops on other bad
    settings that would otherwise fail only at the first request.)"""
    from broadcaster.core.settings import bad_settings
    from broadcaster.http.access import AccessPolicy

    try:
        keys = parse_api_keys(settings.api_keys)
        settings.served_providers()
        AccessPolicy.from_settings(settings)
    except ValueError as exc:
        bad_settings("broadcaster", str(exc))
    short = [s for s in settings.token_secret_list() if len(s.encode()) < 32]
    if short:
        log.warning(
            "a token secret is shorter than 32 bytes, the least HS256 should have (RFC 7518 "
            "3.2): generate one with python -c 'import secrets; print(secrets.token_hex(32))'"
        )
    if settings.legacy_tokens and settings.reads_guarded():
        log.warning(
            "BROADCASTER_LEGACY_TOKENS=true: legacy v1./c1. tokens are accepted (deprecated, "
            "and unbound to any audience; they stop in %s): mint JWTs and turn this off",
            LEGACY_TOKENS_UNTIL,
        )
    protected = bool(keys) and settings.reads_guarded()
    if protected:
        log.info("access control on: %d API key(s), viewer tokens required", len(keys))
    elif is_loopback(settings.host):
        log.warning(
            "no BROADCASTER_API_KEYS and BROADCASTER_TOKEN_SECRET: serving on loopback "
            "(%s) only; anyone on this machine can create, publish and read",
            settings.host,
        )
    elif settings.insecure:
        log.warning(
            "INSECURE: serving on %s without %s; anyone who can reach this port can start "
            "generations (spending your model budget), publish and read every stream",
            settings.host,
            "API keys" if not keys else "a token secret or a JWKS",
        )
    else:
        raise SystemExit(
            f"refusing to serve on {settings.host} without BROADCASTER_API_KEYS and "
            "BROADCASTER_TOKEN_SECRET (or BROADCASTER_JWKS_URL): set both (see "
            "docs/security.md), listen on "
            "127.0.0.1, or pass --insecure (BROADCASTER_INSECURE=true)"
        )


def _settings(args: argparse.Namespace) -> Settings:
    from broadcaster.core.settings import load_settings
    from broadcaster.http.settings import Settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    if args.insecure:
        overrides["insecure"] = True
    return load_settings(Settings, f"broadcaster {args.command}", **overrides)


def check_port(settings: Settings, prog: str) -> None:
    """Stop at once, saying so, when the HTTP port is taken: before Redis is started or
    joined and a worker started, not after."""
    from broadcaster.core.embedded import port_free

    if not port_free(settings.port, settings.host):
        raise SystemExit(
            f"{prog}: port {settings.port} on {settings.host} is taken (another demo or "
            "server?): choose another with --port or BROADCASTER_PORT "
            "(make demo ARGS='--port 8001')"
        )


def _serve(args: argparse.Namespace) -> None:
    from broadcaster.core.embedded import redis_url
    from broadcaster.http.app import create_app
    from broadcaster.http.resources import refuse_unkept_durability
    from broadcaster.http.server import exit_on_sigterm

    settings = _settings(args)
    setup_logging(settings.log_level, settings.log_format)
    check_exposure(settings)
    if not settings.reuse_port:  # with it, several processes share the port on purpose
        check_port(settings, "broadcaster serve")
    exit_on_sigterm()
    with redis_url(settings) as url:
        refuse_unkept_durability(settings, url, "broadcaster serve")
        app = create_app(settings, url)
        _server(app, settings, reuse_port=settings.reuse_port).run()


def _server(app: BroadcasterApp, settings: Settings, *, reuse_port: bool = False) -> DrainingServer:
    from broadcaster.http.server import make_server

    return make_server(
        app,
        settings.host,
        settings.port,
        settings.shutdown_seconds,
        settings.log_level,
        reuse_port=reuse_port,
        notsent_lowat=settings.socket_notsent_lowat,
        sndbuf=settings.socket_sndbuf,
        gc_freeze=settings.gc_freeze,
        max_header_bytes=settings.max_header_bytes,
        keep_alive_seconds=settings.keep_alive_seconds,
        trusted_proxies=settings.trusted_proxies,
    )


DEMO_TOOLS = "examples.tools:TOOLS"
"""The tools the demo's worker runs unless ``WORKER_TOOLS`` names others: the examples,
found from the repository's root (where ``make demo`` runs)."""


def _demo_tools(tools: str | None) -> str | None:
    if tools is not None:
        return tools
    try:
        found = importlib.util.find_spec(DEMO_TOOLS.partition(":")[0]) is not None
    except ImportError:
        found = False
    if not found:
        log.warning("demo: no example tools (run it from the repository's root to have them)")
        return None
    return DEMO_TOOLS


def _demo(args: argparse.Namespace) -> None:
    from broadcaster.core.embedded import redis_url
    from broadcaster.core.settings import bad_settings, load_settings
    from broadcaster.http.app import create_app
    from broadcaster.http.server import exit_on_sigterm
    from worker.daemon import Worker, unusable_provider
    from worker.settings import WorkerSettings
    from worker.tools import ToolSpecError, load_tools

    settings = _settings(args)
    wsettings = load_settings(WorkerSettings, "broadcaster demo")
    setup_logging(settings.log_level, settings.log_format)
    check_exposure(settings)
    check_port(settings, "broadcaster demo")
    exit_on_sigterm()
    if wsettings.served() == ("anthropic",) and unusable_provider(wsettings):
        wsettings = wsettings.model_copy(update={"provider": "fake", "providers": None})
    unusable = unusable_provider(wsettings)
    if unusable:
        bad_settings("broadcaster demo", f"{unusable}: set it, or leave WORKER_PROVIDERS unset")
    wsettings = wsettings.model_copy(update={"tools": _demo_tools(wsettings.tools)})
    try:
        load_tools(wsettings.tools)  # a bad WORKER_TOOLS stops the demo before it starts
    except ToolSpecError as exc:
        bad_settings("broadcaster demo", str(exc))
    served = ",".join(wsettings.served())
    log.info(
        "demo: the worker uses the %s provider%s, tools: %s",
        served,
        " (set ANTHROPIC_API_KEY for the real model)" if served == "fake" else "",
        wsettings.tools or "none",
    )
    with redis_url(settings) as url:
        app = create_app(settings, url)
        server = _server(app, settings)

        async def main() -> None:
            worker = Worker(wsettings, url)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(worker.run())
                log.info("demo: open %s", _page_url(settings))
                try:
                    await server.serve()
                finally:
                    worker.stop()
                    await task

        asyncio.run(main())


def _page_url(settings: Settings) -> str:
    """Where a browser on this machine opens the demo: a wildcard address (``0.0.0.0``
    in a container) is not one to open."""
    host = settings.host
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        wildcard = False
    if wildcard:
        return f"http://127.0.0.1:{settings.port}/ (listening on {host})"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/"


def _hash_key(args: argparse.Namespace) -> None:
    key = sys.stdin.readline().strip() if args.key == "-" else args.key
    print(hash_key(key))


def _providers(args: argparse.Namespace) -> None:
    """List the providers the deployment has served, or forget one."""
    from broadcaster.core import connection
    from broadcaster.core.embedded import deployment_url
    from broadcaster.core.settings import load_settings
    from broadcaster.generations.jobs import JobQueue
    from broadcaster.http.settings import Settings

    settings = load_settings(Settings, "broadcaster providers")

    url = deployment_url(
        settings, "broadcaster providers"
    )  # the deployment's Redis, never a new one

    async def main() -> int:
        redis = connection.command_client(url, 2)
        try:
            jobs = JobQueue(redis)
            if args.forget:
                if not await jobs.forget(args.forget):
                    print(f"no worker has advertised {args.forget!r}; nothing to forget")
                    return 1
                print(f"forgot {args.forget!r}: requests for it are refused (422) again")
                return 0
            status = await jobs.provider_status()
            for name, state in status.items():
                live = "live workers" if state["live_workers"] else "no live worker"
                print(f"{name}\t{live}\tlast advertised {state['last_seen']}")
            if not status:
                print("no worker has advertised a provider yet")
            return 0
        finally:
            await redis.aclose()

    raise SystemExit(asyncio.run(main()))


def _delegate(module: str, args: argparse.Namespace) -> None:
    """A command whose module defines it (its ``add_arguments`` and ``main``)."""
    raise SystemExit(importlib.import_module(module).main(args))


class _Version(argparse.Action):
    """``--version``: argparse's, with the installed version looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **_: Any) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from broadcaster.core import version

        print(f"{parser.prog} {version()}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser (the docs' CLI reference is generated from it); with
    ``command``, the one given on the command line, only that command's own arguments."""
    parser = argparse.ArgumentParser(prog="python -m broadcaster")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in [
        ("serve", _serve, "run a front-end: the HTTP API and the SSE streams"),
        ("demo", _demo, "run Redis, a front-end and a worker, with the demo page at /"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--host", help="address to listen on (BROADCASTER_HOST, 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (BROADCASTER_PORT, 8000)")
        p.add_argument(
            "--insecure",
            action="store_true",
            help="serve beyond loopback without API keys and a token secret",
        )
        p.set_defaults(func=func)
    hk = sub.add_parser("hash-key", help="print the BROADCASTER_API_KEYS entry for a key")
    hk.add_argument("key", help="the API key (read from stdin if '-')")
    hk.set_defaults(func=_hash_key)
    pv = sub.add_parser("providers", help="list the providers the deployment serves, or forget one")
    pv.add_argument("--forget", metavar="NAME", help="forget a provider no worker serves any more")
    pv.set_defaults(func=_providers)
    # The commands their own modules define: their arguments are added only for the
    # command given (a server's start, ``hash-key`` or a typo imports none of them).
    for name, module, help_ in [
        ("tail", "broadcaster.clients.tail", "follow a stream live and print it as text"),
        (
            "bench",
            "broadcaster.bench.run",
            "load-test a running deployment (viewers, latency, cost)",
        ),
        ("webhooks", "broadcaster.webhooks.cli", "deliver webhooks; list and replay the dead ones"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.set_defaults(func=functools.partial(_delegate, module))
        if command is None or command == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(command=argv[0] if argv else "").parse_args(argv)
    args.func(args)
