"""The demo's chat bundle (broadcaster/http/static/chat.js) is exactly what web/chat builds.

The package serves a committed, minified bundle of web/chat/src, the AI SDK and the client
package (clients/js, linked from the checkout), so that no node is needed at run time. This
test builds the client package, rebuilds the bundle with the packages pinned in
web/chat/package-lock.json (installed by ``npm ci --prefix web/chat``, which ``make test``
runs) and compares the bytes, so the committed bundle and its sources cannot drift apart:
after a change to web/chat or clients/js, ``make chat-bundle``. Needs node >= 20 and those
packages; without them it fails and says what to install. It never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import client_js
from tests.support.procs import ROOT

WEB = ROOT / "web" / "chat"
BUNDLE = ROOT / "broadcaster" / "http" / "static" / "chat.js"
INSTALL = "run npm ci --prefix web/chat (make test does this)"


def _installed_differs_from_lock() -> list[str]:
    """Packages whose installed version is not the one the lockfile pins."""
    lock = json.loads((WEB / "package-lock.json").read_text())
    wrong = []
    for path, entry in lock["packages"].items():
        if not path:
            continue
        if entry.get("link"):  # the client package: a link to the checkout's clients/js
            if (WEB / path).resolve() != (WEB / entry["resolved"]).resolve():
                wrong.append(f"{path} is not a link to {entry['resolved']}")
            continue
        manifest = WEB / path / "package.json"
        if not manifest.is_file():
            if not entry.get("optional"):  # other platforms' esbuild binaries are optional
                wrong.append(f"{path} is missing")
            continue
        version = json.loads(manifest.read_text()).get("version")
        if version != entry["version"]:
            wrong.append(f"{path} is {version}, the lockfile pins {entry['version']}")
    return wrong


def test_the_committed_chat_bundle_is_the_rebuild_of_web_chat(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("this test needs node >= 20 to run esbuild", pytrace=False)
    if not (WEB / "node_modules" / "esbuild").is_dir():
        pytest.fail(f"web/chat/node_modules is missing: {INSTALL}", pytrace=False)
    wrong = _installed_differs_from_lock()
    assert not wrong, f"web/chat/node_modules is not the lockfile's ({INSTALL}): {wrong}"
    missing = client_js.missing_prerequisites()
    if missing:
        needs = "\n  ".join(missing)
        pytest.fail(f"the bundle holds clients/js, whose build needs:\n  {needs}", pytrace=False)
    client_js.build()

    rebuilt = tmp_path / "chat.js"
    run = subprocess.run(
        [node, str(WEB / "build.mjs"), str(rebuilt)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, f"web/chat/build.mjs failed:\n{run.stderr}\n{run.stdout}"
    fresh = rebuilt.read_bytes()
    committed = BUNDLE.read_bytes()
    assert fresh == committed, (
        f"broadcaster/http/static/chat.js ({len(committed)} bytes) is not the build of"
        f" web/chat ({len(fresh)} bytes): run make chat-bundle and commit the result"
    )
    # The page loads it, and it holds the AI SDK's Chat (its resume trigger, the chunks it
    # reads) and the client package (named in the banner, with its transport's header).
    page = (BUNDLE.parent / "demo.html").read_text()
    assert '<script src="/static/chat.js" defer></script>' in page
    assert b'"resume-stream"' in committed and b'"tool-output-available"' in committed
    banner = committed.split(b"\n", 1)[0]
    assert banner.startswith(b"/*") and b"@llm-stream-broadcaster/client@" in banner
    assert b"idempotency-key" in committed
    print(f"\nchat bundle: {len(committed)} bytes minified")
