"""Forwarded headers this front-end did not believe, counted while it lasts: a proxy it
does not trust makes every client behind it one address to the per-address limit
(``ask.client_address``, ``ask.peer_address``, which call ``UNTRUSTED.seen``), and
the operator hears of it in ``/readyz`` and ``/metrics``, not only once in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

log = logging.getLogger("broadcaster.limits")


class UntrustedForwarders:
    """Requests whose forwarded headers this front-end did not believe (``X-Forwarded-For``
    from an untrusted peer, or ``Forwarded`` alone): every client behind such a peer counts
    as one address, so it says so while it lasts, in ``/readyz`` and a metric."""

    RECENT = 600.0
    """Seconds after the last such request that ``/readyz`` still reports it."""
    PEERS = 16
    """Peers remembered at most (the log names each once)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"x-forwarded-for": 0, "forwarded": 0}
        self.last = 0.0
        self.peers: set[str] = set()

    def seen(self, peer: str, header: str) -> None:
        self.counts[header] += 1
        self.last = time.monotonic()
        if peer in self.peers or len(self.peers) >= self.PEERS:
            return
        self.peers.add(peer)
        what = (
            "forwards requests (X-Forwarded-For) but is not a trusted proxy"
            if header == "x-forwarded-for"
            else "forwards requests with Forwarded and no X-Forwarded-For, which is not read"
        )
        log.warning(
            "%s %s: every client behind it counts as that one address (BROADCASTER_MAX_"
            "CONNECTIONS_PER_ADDRESS); set BROADCASTER_TRUSTED_PROXIES to it (and have it "
            "send X-Forwarded-For), or the limit to 0",
            peer,
            what,
        )

    def collect(self) -> Iterator[Metric]:
        """``broadcaster_untrusted_forwarded_requests_total{header}``, for a registry."""
        family = CounterMetricFamily(
            "broadcaster_untrusted_forwarded_requests",
            "Requests whose forwarded header was not believed, by header: x-forwarded-for "
            "(from a peer not in BROADCASTER_TRUSTED_PROXIES), forwarded (Forwarded with "
            "no X-Forwarded-For: not read). Their clients count as the peer's one address",
            labels=["header"],
        )
        for header, count in self.counts.items():
            family.add_metric([header], count)
        yield family

    def report(self) -> dict[str, float | int] | None:
        """For ``/readyz``: such requests in all, the peers that sent them (up to
        ``PEERS``) and how long ago the last came; None when none came for ``RECENT``
        seconds (or ever)."""
        ago = time.monotonic() - self.last
        if not self.peers or ago > self.RECENT:
            return None
        return {
            "requests": sum(self.counts.values()),
            "peers": len(self.peers),
            "last_seconds_ago": round(ago, 1),
        }


UNTRUSTED = UntrustedForwarders()
"""This process's (as ``contain.Counts``: the front-end's metrics collect it)."""
