"""What every example of the hostile-input machine shares: the front-end, the healthy
streams and what was published to them, and the failures collected (not raised, so
hypothesis neither shrinks nor replays)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import rawhttp
from tests.support.hostile_requests import ADMIN
from tests.support.procs import Proc

# --- the world the examples share ---


@dataclass
class Failure:
    """One kind of failure: how often, and its first samples, one per distinct input."""

    count: int = 0
    samples: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """What every example of the machine shares: the front-end, the healthy streams and
    what was published to them, and what went wrong."""

    fe: Proc
    redis_url: str
    run: str
    http: httpx.Client
    jwt: str
    """A token that may read, publish, chat and cancel anything: hostile requests carry it
    (or the admin key), so that they get past access control to the checks behind it."""
    healthy: list[str]
    ds_path: str
    victim: str
    victim_ds: str
    expected: dict[str, list[tuple[Any, Any]]]
    ds_expected: list[Any] = field(default_factory=list)
    ds_producer_seq: int = 0
    sent: int = 0
    open_sent: int = 0
    open_accepted: Counter[str] = field(default_factory=Counter)
    tally: Counter[str] = field(default_factory=Counter)
    failures: dict[str, Failure] = field(default_factory=lambda: defaultdict(Failure))
    serial: int = 0
    examples: int = 0
    steps: int = 0

    @property
    def prefix(self) -> str:
        return f"h{self.run}-"

    def fail(self, kind: str, detail: str, what: str = "") -> None:
        f = self.failures[kind]
        f.count += 1
        if len(f.samples) < 6 and what not in f.samples:
            f.samples[what] = detail[:600]

    def next(self) -> int:
        self.serial += 1
        return self.serial

    # --- requests ---

    def auth(self, jwt: bool = False) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + (self.jwt if jwt else ADMIN).encode())]

    def send(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> rawhttp.RawAnswer | str:
        try:
            return rawhttp.request(
                "127.0.0.1",
                self.fe.port or 0,
                method,
                target,
                headers=headers,
                body=body,
                stream_peek=0.05,
            )
        except rawhttp.NoAnswer as exc:
            return str(exc)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    def hostile(
        self,
        kind: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        what: str = "",
        allowed: tuple[int, ...] | None = None,
    ) -> rawhttp.RawAnswer | None:
        """Send a request that must be refused: a 4xx (one of ``allowed``, if given) with
        a JSON error. Anything else is a failure of ``kind``."""
        self.sent += 1
        answer = self.send(method, target, headers, body)
        shown = f"{method} {target[:160]!r} {what}".strip()
        if isinstance(answer, str):
            self.tally["no answer"] += 1
            self.fail(f"{kind}: no answer (connection dropped)", f"{shown} -> {answer}", what)
            return None
        self.tally[f"{answer.status // 100}xx"] += 1
        status = answer.status
        said = f"{shown} -> {status} {answer.body[:200]!r}"
        if status >= 500:
            self.fail(f"{kind}: a 5xx", said, what)
        elif status < 400:
            self.fail(f"{kind}: accepted ({status})", said, what)
        elif allowed is not None and status not in allowed:
            self.fail(f"{kind}: {status}, not one of {allowed}", said, what)
        else:
            self._check_error_body(kind, method, answer, said, what)
        return answer

    def probe(
        self,
        kind: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        *,
        what: str = "",
    ) -> rawhttp.RawAnswer | None:
        """A request the contract does not call wrong: never a 5xx nor a dropped
        connection; counted among the accepted when it is a 2xx."""
        self.sent += 1
        self.open_sent += 1
        answer = self.send(method, target, headers, body)
        shown = f"{method} {target[:160]!r} {what}".strip()
        if isinstance(answer, str):
            self.tally["no answer"] += 1
            self.fail(f"{kind}: no answer (connection dropped)", f"{shown} -> {answer}", what)
            return None
        self.tally[f"{answer.status // 100}xx"] += 1
        said = f"{shown} -> {answer.status} {answer.body[:200]!r}"
        if answer.status >= 500:
            self.fail(f"{kind}: a 5xx", said, what)
        elif answer.status < 300:
            self.open_accepted[kind] += 1
        elif 400 <= answer.status < 500:
            self._check_error_body(kind, method, answer, said, what)
        return answer

    def _check_error_body(
        self, kind: str, method: str, answer: rawhttp.RawAnswer, said: str, what: str
    ) -> None:
        if method == "HEAD":
            return
        if answer.status == 400 and answer.body == b"Invalid HTTP request received.":
            return  # uvicorn's HTTP parser refused it: before the application
        try:
            payload = json.loads(answer.body)
            ok = isinstance(payload.get("error"), str) and isinstance(payload.get("message"), str)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            self.fail(f"{kind}: an error that is not JSON with error and message", said, what)
