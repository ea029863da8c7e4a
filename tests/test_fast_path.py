"""The front-end's fast path is really in use, on real processes: uvloop, httptools and
hiredis are loaded (not silently replaced by the pure-Python fallbacks), start-up's
objects are out of the garbage collector's scans, and
BROADCASTER_REUSE_PORT lets several front-end processes serve one port."""

from __future__ import annotations

from pathlib import Path

import httpx

from broadcaster.embedded import free_port
from tests.support import spawn, start_frontend, wait_ready


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


def test_two_frontends_share_a_port_with_reuse_port(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"REDIS_URL": redis_url, "BROADCASTER_REUSE_PORT": "true"}
    args = ["-m", "broadcaster", "serve", "--port", str(port)]
    first = spawn("fe-a", args, env, tmp_path)
    second = spawn("fe-b", args, env, tmp_path)
    first.port = second.port = port
    try:
        wait_ready(first)
        wait_ready(second)  # without SO_REUSEPORT the second exits: address in use
        first.stop()
        assert second.alive(), second.log()
        # the port still answers, from the process that is left
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        first.stop()
        second.stop()
