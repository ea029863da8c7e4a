"""The front-end's fast path is really in use, on real processes: uvloop, httptools and
hiredis are loaded (not silently replaced by the pure-Python fallbacks), start-up's
objects are out of the garbage collector's scans, keepalives reach caught-up viewers, and
BROADCASTER_REUSE_PORT lets several front-end processes serve one port."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx

from broadcaster.core.embedded import free_port
from tests.support.procs import parse_sse, spawn, start_frontend, wait_ready


def test_the_frontend_runs_on_uvloop_httptools_and_hiredis(redis_url: str, tmp_path: Path) -> None:
    fe = start_frontend(redis_url, tmp_path)
    try:
        maps = Path(f"/proc/{fe.pid}/maps").read_text()
        exposition = httpx.get(f"{fe.url}/metrics", timeout=5).text
    finally:
        fe.stop()
    for native in ("uvloop", "httptools", "hiredis"):
        assert f"/{native}/" in maps, f"{native} is not loaded in the front-end"
    # Start-up's objects are frozen, out of every full collection's scan (server.py).
    lines = exposition.splitlines()
    frozen = [ln for ln in lines if ln.startswith("broadcaster_gc_frozen_objects ")]
    assert frozen and float(frozen[0].split()[-1]) > 10_000, frozen
    assert "python_gc_collections_total{generation=" in exposition


def _listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on 127.0.0.1:``port`` (its fds'
    socket inodes against /proc/net/tcp). /readyz cannot tell: with two processes on one
    port, either may answer it."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port and inode in inodes:
                return True
    return False


def test_two_frontends_share_a_port_with_reuse_port(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"REDIS_URL": redis_url, "BROADCASTER_REUSE_PORT": "true"}
    args = ["-m", "broadcaster", "serve", "--port", str(port)]
    first = spawn("fe-a", args, env, tmp_path, fork=True)
    second = spawn("fe-b", args, env, tmp_path, fork=True)
    first.port = second.port = port
    try:
        wait_ready(first)
        wait_ready(second)  # without SO_REUSEPORT the second exits: address in use
        # Either may have answered /readyz: wait until each holds its own listening socket.
        deadline = time.monotonic() + 20
        while not all(_listening(p.pid, port) for p in (first, second)):
            assert second.alive(), second.log()
            assert time.monotonic() < deadline, "both processes never listened on the port"
            time.sleep(0.05)
        first.stop()
        assert second.alive(), second.log()
        # the port still answers, from the process that is left
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        first.stop()
        second.stop()


def test_keepalives_reach_a_caught_up_viewer_and_events_follow(
    redis_url: str, tmp_path: Path
) -> None:
    """A caught-up viewer's pings come from the hub's one keepalive task, straight to its
    socket; live events still arrive after them, and the response ends as it should."""
    fe = start_frontend(redis_url, tmp_path, env={"BROADCASTER_KEEPALIVE_SECONDS": "0.4"})
    sid = "keepalive-" + secrets.token_hex(4)
    url = f"{fe.url}/v1/streams/{sid}/events"
    try:
        httpx.post(url, json={"type": "data-n", "data": 1}, timeout=5).raise_for_status()
        raw = b""
        with httpx.stream("GET", url, timeout=30) as resp:
            assert resp.status_code == 200
            chunks = resp.iter_raw()
            while raw.count(b": ping\n\n") < 3:  # each within 0.4 s of silence
                raw += next(chunks)
            events = [{"type": "data-n", "data": 2}, {"type": "finish"}]
            httpx.post(url, json=events, timeout=5).raise_for_status()
            for chunk in chunks:
                raw += chunk
    finally:
        fe.stop()
    events, _, comments = parse_sse(raw)
    assert [e.id.split(".")[0] for e in events if e.id] == ["1", "2", "3"]
    assert comments >= 3 and raw.endswith(b"data: [DONE]\n\n")
