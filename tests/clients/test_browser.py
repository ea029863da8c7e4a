"""The demo page in a real browser: headless Chromium driven by tests/clients/browser/demo.mjs.

It types a prompt full of HTML markup, starts a generation, drops and resumes the flaky
viewer, and waits for all four panes. Every pane must show exactly the generation's text,
with the markup shown as text and never run. Needs Debian's chromium-headless-shell,
node and the npm packages of tests/clients/browser; without them the test fails and says what to
install. It never skips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import (
    ARTIFACTS,
    PANES,
    SCRIPT,
    missing_prerequisites,
    png_size,
    run_node_script,
    stop_browser_leftovers,
)
from tests.support.procs import Proc, own_redis, start_frontend, start_worker


def test_the_demo_page_in_headless_chromium(tmp_path: Path) -> None:
    missing = missing_prerequisites()
    if missing:
        pytest.fail("the browser test needs:\n  " + "\n  ".join(missing), pytrace=False)

    redis = own_redis(tmp_path / "redis")
    procs: list[Proc] = []
    profile = tmp_path / "chromium-profile"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "demo-browser.png"
    screenshot.unlink(missing_ok=True)
    started = time.monotonic()
    try:
        frontend = start_frontend(redis.url, tmp_path, "frontend")
        procs.append(frontend)
        procs.append(start_worker(redis.url, tmp_path, "worker", {"WORKER_FAKE_DELAY_MS": "40"}))

        code, out, err = run_node_script(
            SCRIPT, [frontend.url, str(screenshot), str(profile)], timeout=90
        )
        elapsed = time.monotonic() - started
        assert code == 0, (
            f"demo.mjs exited with {code}\nstderr:\n{err}\nstdout:\n{out}\n"
            f"front-end log:\n{frontend.log()[-3000:]}\nworker log:\n{procs[1].log()[-3000:]}"
        )
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        (ARTIFACTS / "demo-browser.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nbrowser run: {elapsed:.1f} s, screenshot: {screenshot}")

        gid = result["generation_id"]
        api = httpx.get(f"{frontend.url}/v1/generations/{gid}", timeout=10).json()
    finally:
        stop_browser_leftovers(profile)
        for p in procs:
            p.stop()
        redis.stop()

    prompt = result["prompt"]
    assert "<script>window.__xss=1</script>" in prompt
    assert '<img src=x onerror="window.__xss=2">' in prompt
    assert api["status"] == "completed", api
    assert api["text"].startswith("You said: " + prompt + "\n"), api["text"]

    panes = result["panes"]
    assert set(panes) == set(PANES)
    for name in PANES:
        pane = panes[name]
        assert pane["state"] == "done", (name, pane)
        assert pane["text"] == api["text"], f"pane {name} differs from the API's text"
        assert pane["status"].startswith("finished"), (name, pane["status"])
        assert int(pane["last_id"].split(".")[0]) == api["last_event_id"], (name, pane)

    # The markup was shown as text: nothing ran, no element was made from it.
    assert result["xss_type"] == "undefined", result["xss"]
    assert result["injected"] == {
        "img": 0,
        "script": 0,
        "any_element_besides_blocks": 0,
        "img_in_document": 0,
    }
    assert result["page_errors"] == []
    assert result["http_errors"] == []
    # The page has no favicon and the server none either: the browser's own request 404s.
    others = [e for e in result["console_errors"] if not e["url"].endswith("/favicon.ico")]
    assert others == [], others

    # The flaky viewer really was cut off mid-stream and resumed after its last id.
    dropped = result["flaky_dropped"]
    assert dropped["state"] == "dropped" and dropped["last_id"] != "—", dropped
    assert 0 < dropped["text_length"] < len(api["text"]), dropped
    assert panes["flaky"]["notice"] == f"resumed after id {dropped['last_id']} (?last_event_id)"
    assert panes["late"]["notice"].startswith("joined late"), panes["late"]

    width, height = png_size(screenshot)
    assert screenshot.stat().st_size > 10_000 and width >= 1000 and height >= 600, (
        screenshot.stat().st_size,
        width,
        height,
    )
