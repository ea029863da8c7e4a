"""A browser's ``EventSource`` refused by a full front-end comes back by itself, in
headless Chromium: the front-end's one connection (``BROADCASTER_MAX_CONNECTIONS=1``) is
held when the page opens its EventSource, which is answered with a ``retry:`` alone
(``viewers/refusals.py``) instead of a 503, after which the HTML standard would have it give
up for good. It reconnects, is refused while the connection is held, and once the
connection is let go it gets every event of the stream, once and in order.
tests/clients/browser/busy.mjs drives the page."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.support.browser import missing_prerequisites
from tests.support.node_script import Script
from tests.support.procs import ROOT, own_redis, start_frontend

SCRIPT = ROOT / "tests" / "clients" / "browser" / "busy.mjs"
ARTIFACTS = ROOT / "tests" / "artifacts"
EVENTS = 5  # then finish


class Holder:
    """Holds an SSE response open on a thread until ``release``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = threading.Event()
        self.status = 0
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the held connection did not open"

    def _hold(self) -> None:
        with httpx.Client(timeout=30) as client, client.stream("GET", self.url) as r:
            self.status = r.status_code
            self.opened.set()
            self._release.wait(60)

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def test_an_eventsource_refused_by_a_full_front_end_comes_back_by_itself(
    tmp_path: Path,
) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)
    redis = own_redis(tmp_path / "redis")
    fe = start_frontend(redis.url, tmp_path, "busy", {"BROADCASTER_MAX_CONNECTIONS": "1"})
    holder: Holder | None = None
    script: Script | None = None
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with httpx.Client(base_url=fe.url, timeout=30) as client:
            for sid in ("held", "watched"):
                r = client.post(f"/v1/streams/{sid}/events", json={"type": "data-step", "n": 1})
                assert r.status_code == 201, r.text
            holder = Holder(f"{fe.url}/v1/streams/held/events")
            assert holder.status == 200
            r = client.get("/v1/streams/watched/events", headers={"accept": "text/event-stream"})
            assert r.status_code == 503 and r.headers["retry-after"], "full, for other clients"
            script = Script(
                [
                    "node",
                    str(SCRIPT),
                    fe.url,
                    str(ARTIFACTS / "busy-browser.png"),
                    str(tmp_path / "profile"),
                    "watched",
                ],
                tmp_path / "busy.stderr",
                profile=tmp_path / "profile",
            )
            refused = script.next_json(timeout=40)
            assert refused["phase"] == "refused", refused
            assert refused["events"] == [], refused
            # Reconnecting (0), not given up (2, what a 503 leads to).
            assert refused["errors"][0]["readyState"] == 0, refused
            assert refused["readyState"] in (0, 1), refused
            assert refused["requests"] and refused["requests"][0].get("status") == 200, refused
            holder.release()
            for n in range(2, EVENTS + 1):
                r = client.post("/v1/streams/watched/events", json={"type": "data-step", "n": n})
                assert r.status_code == 201, r.text
            r = client.post("/v1/streams/watched/events", json={"type": "finish"})
            assert r.status_code == 201, r.text
            script.send("go")
            result = script.next_json(timeout=40)
        assert result["phase"] == "result", result
        seqs = [int(e["id"].split(".")[0]) for e in result["events"]]
        assert seqs == list(range(1, EVENTS + 2)), result["events"]
        assert [e["type"] for e in result["events"]][-1] == "finish"
        assert len(result["requests"]) >= 2, result["requests"]
        assert all(r.get("status") == 200 for r in result["requests"]), result["requests"]
        assert not result["pageErrors"], result["pageErrors"]
        print(
            f"busy: the EventSource was refused {len(result['requests']) - 1} time(s) with a "
            f"retry, then got all {len(seqs)} events"
        )
    finally:
        if script is not None:
            script.stop()
        if holder is not None:
            holder.release()
        fe.stop()
        redis.stop()
