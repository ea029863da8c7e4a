"""One default TLS context for every HTTP client a test process makes (tests/conftest.py).

The tests make thousands of short-lived httpx clients (``httpx.get``, a client per
check, the provider SDKs' clients in-process), every one of them for plain HTTP to
127.0.0.1. httpx builds the default TLS context of each new client anyway, and that
loads certifi's bundle of about 140 certificates: 36 ms of CPU, where the request itself
costs 1.5 ms (``httpx.get`` to a local server, measured here). ``wait_ready`` alone, one
``httpx.get`` every 50 ms while a front-end starts, paid it some ten times per start;
a sampling profile of a whole run found a tenth of the suite's Python samples loading
certificates.

``share_default_contexts`` makes httpx (and httpx2, which the Anthropic SDK uses) build
that default context once per process and hand the same one to every client that asks
for the default (``verify=True``, no client certificate, the same ``SSL_CERT_*``
variables). A client given its own context or ``verify=`` keeps it. The product's
processes are not touched: this runs in the test processes only."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from types import ModuleType
from typing import Any


def share_default_contexts() -> None:
    import httpx._transports.default as httpx_transports
    import httpx2._transports.default as httpx2_transports

    for module in (httpx_transports, httpx2_transports):
        _share(module)


def _share(transports: ModuleType) -> None:
    make: Callable[..., ssl.SSLContext] = transports.create_ssl_context
    if getattr(make, "shared", False):
        return
    made: dict[tuple[Any, ...], ssl.SSLContext] = {}

    def create_ssl_context(
        verify: ssl.SSLContext | str | bool = True, cert: Any = None, trust_env: bool = True
    ) -> ssl.SSLContext:
        if verify is not True or cert is not None:
            return make(verify=verify, cert=cert, trust_env=trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in made:
            made[key] = make(verify=True, trust_env=trust_env)
        return made[key]

    create_ssl_context.shared = True  # type: ignore[attr-defined]
    transports.create_ssl_context = create_ssl_context
