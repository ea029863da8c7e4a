"""What one client may hold or cost, and the answers past it (docs/security.md, "Limits").

- **Open responses per client.** Every SSE response (every route's) and every Durable
  Streams long-poll holds a ``Slot`` from the moment it is admitted until it ends, on
  every path (its last event, the client gone, a slow viewer cut off, a drain): counted
  per token subject and per client address, in this process (``Slots``).
- **Refusals an EventSource follows.** A browser's ``EventSource`` gives up for good on
  any status but 200. Refused for want of room (``Refused``: the admission rate, a
  connection limit), it gets a 200 ``text/event-stream`` holding only a jittered
  ``retry:`` and a comment, and no ``id:``: it reconnects by itself, later, with the
  ``Last-Event-ID`` it had. Every other client gets the status (503 ``busy`` or 429
  ``too_many_connections``) with ``Retry-After``.
- **Fork bytes per minute**, counted in Redis like the rate limit (``charge_fork``,
  ``auth/quota.py``).

(Redis out of memory, a write refused at its ``maxmemory``, is ``errors.py``'s: 507.)
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import Response
from redis.asyncio import Redis

from broadcaster.auth import quota
from broadcaster.http.errors import ApiError, error_response
from broadcaster.http.proxies import UNTRUSTED

RETRY_MS = (1000, 3000)
"""The ``retry:`` a refused EventSource gets, at random in this range (ms)."""


class Refused(ApiError):
    """No room for this response: 503 ``busy`` (this front-end's limits) or 429
    ``too_many_connections`` (the client's), with ``Retry-After``; an EventSource gets a
    ``retry:`` instead (``refused_answer``)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int) -> None:
        super().__init__(status, code, message, headers={"retry-after": str(retry_after)})
        self.retry_after = retry_after


def is_eventsource(request: Request) -> bool:
    """Whether the request looks like a browser's ``EventSource``: it asks for
    ``text/event-stream`` without caching (the HTML standard's fetch of an event source
    sets both) and carries ``Sec-Fetch-Dest: empty``, which only browsers send and pages
    cannot set. ``fetch``-based readers (the AI SDK, Durable Streams clients) do not
    send ``Cache-Control: no-cache``, and non-browser clients (``StreamClient``) no
    ``Sec-Fetch-*``: they see the status and its ``Retry-After``."""
    h = request.headers
    return (
        request.method == "GET"
        and "text/event-stream" in h.get("accept", "")
        and "no-cache" in (h.get("cache-control", "") + h.get("pragma", ""))
        and h.get("sec-fetch-dest") == "empty"
    )


def retry_body() -> bytes:
    """A jittered ``retry:`` and a comment saying why: no event, no ``id:``."""
    ms = random.randint(*RETRY_MS)
    return b"retry: %d\n: busy; reconnect in %d ms\n\n" % (ms, ms)


async def refused_answer(request: Request, exc: Exception) -> Response:
    """The handler of ``Refused``: the retry frame for an EventSource (unless
    ``busy_eventsource_retry`` is off), else the JSON error with ``Retry-After``."""
    assert isinstance(exc, Refused)
    settings = request.app.state.settings
    if settings.busy_eventsource_retry and is_eventsource(request):
        return Response(
            retry_body(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"},
        )
    response = error_response(exc.status, exc.code, exc.message)
    response.headers["retry-after"] = str(exc.retry_after)
    return response


def client_address(request: Request) -> str | None:
    """The client's address: the socket's peer, or, behind a trusted proxy, the last
    hop of ``X-Forwarded-For`` that is not one (uvicorn's proxy headers middleware has
    put it in the scope: ``Settings.trusted_proxies``). Looked at once per request (a
    forwarded header not believed is counted once)."""
    scope = request.scope
    if "broadcaster.client_address" in scope:
        known: str | None = scope["broadcaster.client_address"]
        return known
    client = scope.get("client")
    address = str(client[0]) if client else None
    if address is not None:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded is not None:
            _untrusted_proxy(address, forwarded)
        elif "forwarded" in request.headers:
            forwarded_unread(address)
    scope["broadcaster.client_address"] = address
    return address


def peer_address(peer: str, forwarded: str, behind: str | None) -> str:
    """``client_address`` of a request from ``peer`` with ``X-Forwarded-For: forwarded``:
    ``behind`` when the peer is a trusted proxy (its client), else the peer itself."""
    if behind:
        return behind
    _untrusted_proxy(peer, forwarded)
    return peer


def forwarded_unread(peer: str) -> None:
    """A request from ``peer`` carried ``Forwarded`` (RFC 7239) and no
    ``X-Forwarded-For``: the front-end reads only the latter, so its client is ``peer``,
    whatever ``peer`` is. The transport calls this for the requests it answers itself."""
    UNTRUSTED.seen(peer, "forwarded")


def _untrusted_proxy(address: str, forwarded: str) -> None:
    """Count a request from ``address`` with ``X-Forwarded-For: forwarded`` whose peer is
    not a trusted proxy. A trusted proxy's client is one of the header's hops (uvicorn
    put it in the scope); an untrusted peer is not."""
    if address not in (h.strip() for h in forwarded.split(",")):
        UNTRUSTED.seen(address, "x-forwarded-for")


class Slot:
    """One open response's place in the counts; ``release`` once it ends (again is a
    no-op)."""

    __slots__ = ("_slots", "address", "subject")

    def __init__(self, slots: Slots | None, subject: str | None, address: str | None) -> None:
        self._slots = slots
        self.subject = subject
        self.address = address

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.put_back(self)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Released if the block raises: the response it was taken for will not be."""
        try:
            yield
        except BaseException:
            self.release()
            raise


class Slots:
    """Open responses of this process: in all, per token subject and per client
    address."""

    def __init__(self, per_subject: int, per_address: int) -> None:
        self.per_subject = per_subject
        self.per_address = per_address
        self.open = 0
        self.subjects: Counter[str] = Counter()
        self.addresses: Counter[str] = Counter()

    def check(self, subject: str | None, address: str | None) -> None:
        """Refused (429) if one more response would pass either client's limit."""
        if subject is not None and self.per_subject and self.subjects[subject] >= self.per_subject:
            raise _too_many(f"{self.per_subject} open responses of this token's subject")
        if address is not None and self.per_address and self.addresses[address] >= self.per_address:
            raise _too_many(f"{self.per_address} open responses from this address")

    def take(self, subject: str | None, address: str | None) -> Slot:
        """A slot for one more response (``check`` first: refused past a limit)."""
        self.check(subject, address)
        self.open += 1
        if subject is not None:
            self.subjects[subject] += 1
        if address is not None:
            self.addresses[address] += 1
        return Slot(self, subject, address)

    def put_back(self, slot: Slot) -> None:
        self.open -= 1
        for counts, name in ((self.subjects, slot.subject), (self.addresses, slot.address)):
            if name is not None:
                counts[name] -= 1
                if counts[name] <= 0:
                    del counts[name]


def _too_many(what: str) -> Refused:
    return Refused(429, "too_many_connections", f"at most {what} on this front-end; retry", 2)


# --- forks ---


def fork_payer(request: Request, key_name: str | None) -> str:
    """Whom a fork's bytes are counted against: the API key (``key_name``), or the token
    (its subject), as the rate limit counts them; without keys configured, the client's
    address."""
    name = key_name or getattr(request.state, "rate_name", None)
    if name:
        return str(name)
    return "a:" + (client_address(request) or "-")


def _fork_quota(payer: str) -> str:
    return "fork-bytes:" + payer


def _fork_refused(limit: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"over {limit} bytes of forks per minute; nothing was forked",
        headers={"retry-after": str(quota.retry_after())},
    )


async def fork_room(redis: Redis, payer: str, limit: int) -> None:
    """429 before anything is made when ``payer`` has spent this minute's budget."""
    if limit and await quota.spent(redis, _fork_quota(payer)) >= limit:
        raise _fork_refused(limit)


class ForkBudget:
    """What one fork has copied, charged a page at a time (``charge_fork``)."""

    def __init__(self, redis: Redis, payer: str, limit: int) -> None:
        self.redis, self.payer, self.limit = redis, payer, limit
        self.charged = 0

    async def charge(self, n: int) -> None:
        await charge_fork(self.redis, self.payer, n, self.limit, self.charged)
        self.charged += n


async def charge_fork(redis: Redis, payer: str, n: int, limit: int, charged: int) -> None:
    """Count ``n`` more bytes copied by a fork against ``payer``'s budget of ``limit``
    per clock minute (``charged``: what this fork was charged before). Past the budget
    the bytes are given back and the fork is refused: 413 ``fork_too_large`` if it alone
    is larger than a minute's budget, else 429 with ``Retry-After``."""
    if not limit or not n:
        return
    spent = await quota.charge(redis, _fork_quota(payer), n)
    if spent.total <= limit:
        return
    await quota.refund(redis, spent, n)
    if charged + n > limit:
        raise ApiError(
            413,
            "fork_too_large",
            f"the fork copies more than BROADCASTER_FORK_BYTES_PER_MINUTE ({limit} bytes); "
            "nothing was forked",
        )
    raise _fork_refused(limit)
