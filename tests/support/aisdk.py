"""What the Vercel AI SDK tests need: the folder of their Node scripts and npm packages,
and what is missing to run them (each a sentence saying how to install it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from tests.support import node_host
from tests.support.procs import ROOT
from tests.support.stacks import Stack

AISDK_DIR = ROOT / "tests" / "clients" / "aisdk"
CHAT_SCRIPT = AISDK_DIR / "chat.mjs"


def missing_prerequisites() -> list[str]:
    missing = []
    node = shutil.which("node")
    if node is None:
        missing.append("node is missing: install Node.js >= 20 with npm")
    else:
        run = subprocess.run([node, "--version"], check=False, capture_output=True, text=True)
        major = run.stdout.strip().lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < 20:
            missing.append(f"node is {run.stdout.strip() or 'unusable'}: install Node.js >= 20")
    if not (AISDK_DIR / "node_modules" / "ai" / "package.json").is_file():
        missing.append(
            "tests/clients/aisdk/node_modules is missing: run npm ci --prefix tests/clients/aisdk"
            " (make test does this)"
        )
    return missing


def last_json(proc: node_host.Started, stack: Stack, within: float = 90) -> Any:
    """What the script printed last, once it ended well (else its output and the logs)."""
    code, out, err = node_host.finish(proc, within)
    assert code == 0, f"{proc.args}: {code}\n{err}\n{out}\n{stack.logs()}"
    return json.loads(out.strip().splitlines()[-1])


def node(mode: str, request: dict[str, Any]) -> node_host.Started:
    """chat.mjs in ``mode`` with ``request`` on its stdin, running."""
    return node_host.start(CHAT_SCRIPT, [mode], json.dumps(request))


def result(proc: node_host.Started, stack: Stack) -> dict[str, Any]:
    """What chat.mjs printed last, once it ended well (else its output and the logs)."""
    found: dict[str, Any] = last_json(proc, stack)
    return found


def run(mode: str, request: dict[str, Any], stack: Stack) -> dict[str, Any]:
    return result(node(mode, request), stack)


def user(words: str, mid: str = "u1") -> dict[str, Any]:
    """A user's UI message."""
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}
