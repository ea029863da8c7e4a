"""The fault-injection harness: a deployment of real processes on 127.0.0.1, viewers that
behave like a browser's EventSource, and the check of what every viewer received against
the stream itself.

* ``Cluster``: one Redis server (on a fixed port, so it can be restarted in place, with
  or without its data), two front-ends and two workers, each a separate process stopped
  by pid.
* ``Viewer``: reads one stream as EventSource does. It records every frame *as it came
  over the wire* (no de-duplication, so a duplicate shows), reconnects after any end
  without ``[DONE]`` with ``Last-Event-ID`` set to the last id it received, honours
  ``retry:``, and moves to the other front-end after a failure, as nginx's
  ``proxy_next_upstream`` does. It stops at ``[DONE]``, at 204, and when the server says
  it cannot resume (409) or does not know the stream (404): ``outcome`` says which.
* ``verdict``: the received sequence against ``XRANGE`` of the stream: events checked,
  lost, duplicated, out of order, and whether the bodies are the stored ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis as redis_sync

from broadcaster.clients.stream_client import _sse as sse_frames  # the client's browser-like parser
from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis, free_port
from tests.support import polling
from tests.support.procs import Proc, start_frontend, start_worker

FAST_WORKER_ENV = {
    "WORKER_LEASE_SECONDS": "2",
    "WORKER_CANCEL_POLL_SECONDS": "0.1",
    "WORKER_RETRY_BASE_SECONDS": "0.1",
    "WORKER_GRACE_SECONDS": "3",
}
"""Short leases and backoffs, so takeovers happen within a test's patience."""

poll = polling.poll
"""Kept here for the modules that still import it from this one (``polling`` is its home)."""


@dataclass
class Cluster:
    """One Redis, ``frontends`` front-ends and ``workers`` workers, on 127.0.0.1."""

    root: Path
    frontends_n: int = 2
    workers_n: int = 2
    persistent: bool = True
    frontend_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    redis_args: list[str] = field(default_factory=list)
    """More of Redis's configuration, as command-line options (``--appendfsync always``)."""
    redis: EmbeddedRedis | None = None
    frontends: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    _spawned: int = 0
    _paused: set[int] = field(default_factory=set)

    @property
    def redis_url(self) -> str:
        assert self.redis is not None
        return self.redis.url

    @property
    def redis_port(self) -> int:
        assert self.redis is not None and self.redis.port is not None
        return self.redis.port

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.frontends if p.alive()]

    def start(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(
            self.root / "redis",
            port=free_port(),
            persistent=self.persistent,
            extra_args=self.redis_args,
        )
        self.redis.start(reuse=False)
        for _ in range(self.frontends_n):
            self.add_frontend()
        for _ in range(self.workers_n):
            self.add_worker()
        return self

    def add_frontend(self, env: dict[str, str] | None = None) -> Proc:
        self._spawned += 1
        proc = start_frontend(
            self.redis_url,
            self.root,
            f"frontend-{self._spawned}",
            {**self.frontend_env, **(env or {})},
        )
        self.frontends.append(proc)
        return proc

    def add_worker(self, env: dict[str, str] | None = None) -> Proc:
        self._spawned += 1
        proc = start_worker(
            self.redis_url,
            self.root,
            f"worker-{self._spawned}",
            {**FAST_WORKER_ENV, **self.worker_env, **(env or {})},
        )
        self.workers.append(proc)
        return proc

    def restart_redis(
        self,
        *,
        keep_data: bool = True,
        down_seconds: float = 0.0,
        restore: Path | None = None,
        sig: int = signal.SIGKILL,
    ) -> None:
        """Kill Redis (SIGKILL; ``sig=SIGTERM`` stops it gracefully: it writes its AOF to
        disk and exits) and start it again on the same port, with the same options. With
        ``keep_data=False`` its data folder is emptied first: it comes back having lost
        every write, as after a failover to a replica that was far behind. With
        ``restore`` (a copy made by ``snapshot_redis``) it comes back from that older
        copy: it lost only the writes made since."""
        assert self.redis is not None
        port = self.redis.port
        self.redis.stop(sig)
        if not keep_data or restore is not None:
            for path in self.redis.data_dir.rglob("*"):
                if path.is_file() and path.name != "redis.log":
                    path.unlink()
        if restore is not None:
            shutil.copytree(restore, self.redis.data_dir, dirs_exist_ok=True)
        time.sleep(down_seconds)
        self.redis = EmbeddedRedis(
            self.redis.data_dir, port=port, persistent=self.persistent, extra_args=self.redis_args
        )
        self.redis.start(reuse=False)

    def snapshot_redis(self, dest: Path) -> Path:
        """Copy Redis's data files as they are on disk now (the AOF, fsync'd each second),
        for ``restart_redis(restore=...)``: an older copy, as a replica that was behind or
        a backup would be."""
        assert self.redis is not None
        shutil.copytree(
            self.redis.data_dir, dest, ignore=shutil.ignore_patterns("redis.log", "redis.port")
        )
        return dest

    def pause(self, proc: Proc) -> None:
        """SIGSTOP: the process is alive but does nothing (a long GC pause, a frozen VM)."""
        os.kill(proc.pid, signal.SIGSTOP)
        self._paused.add(proc.pid)

    def resume(self, proc: Proc) -> None:
        os.kill(proc.pid, signal.SIGCONT)
        self._paused.discard(proc.pid)

    def client(self) -> redis_sync.Redis:
        return redis_sync.Redis.from_url(self.redis_url)

    def stop(self) -> None:
        for proc in [*self.frontends, *self.workers]:
            if proc.pid in self._paused:
                self.resume(proc)
            proc.stop()
        if self.redis is not None:
            self.redis.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log()[-3000:]}" for p in self.frontends + self.workers)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is not None:
            print(self.logs())  # shown by pytest with the failure


@dataclass
class Received:
    seq: int
    type: str
    data: str
    at: float = 0.0
    """``time.monotonic()`` when it arrived."""
    id: str = ""
    """The SSE id as sent (``<seq>.<history tag>``): what goes back as ``Last-Event-ID``."""


class ViewerGaveUp(Exception):
    pass


@dataclass
class Viewer:
    """One EventSource-like viewer of ``stream_id`` over the front-ends ``urls``."""

    urls: list[str]
    stream_id: str
    read_delay: float = 0.0
    """Seconds to wait after each frame: a slow reader (its socket buffer fills)."""
    patience: float = 60.0
    """Seconds without any progress (an event) after which the viewer fails the test."""
    start_after: int | None = None
    received: list[Received] = field(default_factory=list)
    connects: int = 0
    outcome: str = ""
    """``done`` ([DONE] after the terminal event), ``204``, ``409`` or ``404``."""
    reconnect_gaps: list[float] = field(default_factory=list)
    """Seconds from each dropped connection to the next event received."""
    _next: int = 0

    @staticmethod
    def _loop_time(monotonic: float) -> float:
        """``time.monotonic()`` instant as the event loop's clock (for timeouts)."""
        return asyncio.get_running_loop().time() + (monotonic - time.monotonic())

    @property
    def last_id(self) -> str | None:
        if self.received:
            last = self.received[-1]
            return last.id or str(last.seq)
        return None if self.start_after is None else str(self.start_after)

    async def run(self, client: httpx.AsyncClient) -> Viewer:
        retry_s = 1.0
        last_progress = time.monotonic()
        dropped_at: float | None = None
        failures = 0
        while True:
            if time.monotonic() - last_progress > self.patience:
                raise ViewerGaveUp(
                    f"viewer of {self.stream_id}: no progress for {self.patience:.0f}s "
                    f"after {len(self.received)} events and {self.connects} connections"
                )
            base = self.urls[self._next % len(self.urls)]
            headers = {"accept": "text/event-stream"}
            if self.last_id is not None:
                headers["last-event-id"] = self.last_id
            try:
                # Patience holds inside a response too: one that sends only pings for
                # longer is a hang, and fails the test naming the stream.
                async with (
                    asyncio.timeout_at(self._loop_time(last_progress + self.patience)) as limit,
                    client.stream(
                        "GET", f"{base}/v1/streams/{self.stream_id}/events", headers=headers
                    ) as resp,
                ):
                    self.connects += 1
                    if resp.status_code in (204, 404, 409):
                        await resp.aread()
                        self.outcome = str(resp.status_code)
                        return self
                    if resp.status_code != 200:
                        raise httpx.TransportError(f"status {resp.status_code}")
                    failures = 0
                    async for frame in sse_frames(resp.aiter_lines()):
                        if isinstance(frame, int):
                            retry_s = frame / 1000
                            continue
                        if frame.data == "[DONE]":
                            self.outcome = "done"
                            return self
                        if frame.id is None:
                            continue
                        now = time.monotonic()
                        if dropped_at is not None:
                            self.reconnect_gaps.append(now - dropped_at)
                            dropped_at = None
                        last_progress = now
                        limit.reschedule(self._loop_time(now + self.patience))
                        seq = int(frame.id.split(".")[0])
                        self.received.append(
                            Received(seq, frame.event or "", frame.data, now, frame.id)
                        )
                        if self.read_delay:
                            await asyncio.sleep(self.read_delay)
            except httpx.HTTPError:
                failures += 1
            except TimeoutError:
                raise ViewerGaveUp(
                    f"viewer of {self.stream_id}: an open response (on {base}) gave no event "
                    f"for {self.patience:.0f}s after seq {self.last_id} "
                    f"({self.connects} connections)"
                ) from None
            # Ended without [DONE] (a drain, a dropped connection): EventSource reconnects.
            if dropped_at is None:
                dropped_at = time.monotonic()
            self._next += 1
            await asyncio.sleep(retry_s if failures <= 1 else min(2.0, 0.2 * failures))


@dataclass
class Verdict:
    stream_id: str
    stored: int
    received: int
    lost: list[int]
    duplicated: list[int]
    out_of_order: bool
    bodies_match: bool
    outcome: str

    @property
    def consistent(self) -> bool:
        """What it received is the stream itself: no repeat, in order, every body the
        stored one. A viewer told to start over (409) or that the stream is gone (404) may
        have received less, but never a spliced stream."""
        return not self.duplicated and not self.out_of_order and self.bodies_match

    @property
    def exact(self) -> bool:
        """Every stored event exactly once, in order, with its stored body."""
        return (
            not self.lost
            and not self.duplicated
            and not self.out_of_order
            and self.bodies_match
            and self.received == self.stored
        )


def stored_events(client: redis_sync.Redis, stream_id: str) -> list[Received]:
    entries = client.xrange(keys.log_key(stream_id))
    return [
        Received(int(eid.split(b"-")[0]), f[b"t"].decode(), f[b"d"].decode())
        for eid, f in entries  # type: ignore[union-attr]
    ]


def verdict(viewer: Viewer, stored: list[Received]) -> Verdict:
    """What ``viewer`` received against the stream as Redis holds it."""
    got = [r.seq for r in viewer.received]
    if viewer.start_after:
        stored = [s for s in stored if s.seq > viewer.start_after]
    want = [s.seq for s in stored]
    seen: set[int] = set()
    duplicated = []
    for seq in got:
        if seq in seen:
            duplicated.append(seq)
        seen.add(seq)
    by_seq = {s.seq: s for s in stored}
    bodies = all(
        r.seq in by_seq and by_seq[r.seq].data == r.data and by_seq[r.seq].type == r.type
        for r in viewer.received
    )
    return Verdict(
        viewer.stream_id,
        len(want),
        len(got),
        lost=sorted(set(want) - seen),
        duplicated=duplicated,
        out_of_order=got != sorted(got),
        bodies_match=bodies,
        outcome=viewer.outcome,
    )


async def create_generation(client: httpx.AsyncClient, base: str, prompt: str, **extra: Any) -> str:
    resp = await client.post(f"{base}/v1/generations", json={"prompt": prompt, **extra})
    assert resp.status_code == 202, resp.text
    gid: str = resp.json()["id"]
    return gid


async def wait_status(
    client: httpx.AsyncClient, base: str, gid: str, statuses: set[str], within: float = 60
) -> dict[str, Any]:
    """Poll ``GET /v1/generations/{id}`` until its status is one of ``statuses``."""
    last: list[dict[str, Any]] = [{}]

    async def probe() -> dict[str, Any] | None:
        with contextlib.suppress(httpx.HTTPError):
            resp = await client.get(f"{base}/v1/generations/{gid}")
            if resp.status_code == 200:
                last[0] = resp.json()
                return last[0] if last[0]["status"] in statuses else None
        return None

    what = f"generation {gid} in {statuses}"
    return await polling.poll(probe, what, within, every=0.1, context=lambda: str(last[0]))


def report(title: str, verdicts: list[Verdict], **figures: object) -> str:
    """One printed line per scenario, for docs/reliability.md."""
    checked = sum(v.received for v in verdicts)
    lost = sum(len(v.lost) for v in verdicts)
    dup = sum(len(v.duplicated) for v in verdicts)
    extra = " ".join(f"{k}={v}" for k, v in figures.items())
    line = (
        f"[{title}] viewers={len(verdicts)} events_checked={checked} lost={lost} "
        f"duplicated={dup} {extra}"
    )
    print(line)
    return line


def reply_types(n_chunks: int) -> list[str]:
    """A generation's event types for one model reply of one text block."""
    return [
        "start",
        "start-step",
        "text-start",
        *["text-delta"] * n_chunks,
        "text-end",
        "finish-step",
        "finish",
    ]


def stream_meta(client: redis_sync.Redis, stream_id: str) -> dict[str, str]:
    """The stream's metadata hash (kind, seq, status, owner, attempt, ...), decoded."""
    raw: dict[bytes, bytes] = client.hgetall(keys.meta_key(stream_id))  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


def owner_pid(owner: str | None) -> int | None:
    """The pid in a worker's consumer name (``<host>-<pid>-<hex>``)."""
    if not owner:
        return None
    return int(owner.rsplit("-", 2)[1])


def owned_by(client: redis_sync.Redis, stream_id: str, proc: Proc) -> bool:
    """The stream's owner is ``proc`` (the pid in the owner's consumer name)."""
    return owner_pid(stream_meta(client, stream_id).get("owner")) == proc.pid


async def readyz(client: httpx.AsyncClient, url: str) -> int:
    """``GET /readyz``'s status, or 0 if the front-end does not answer."""
    try:
        return (await client.get(f"{url}/readyz", timeout=2)).status_code
    except httpx.HTTPError:
        return 0
