"""What the agent tests (tests/integration/test_agents*.py) ask of a stack serving
agents: the providers live workers serve, an answer's status, events, text and the UI
message the AI SDK assembles of it, a chat message sent, and the marks the test agents
record (``AGENT_MARKS``, tests/support/agents.py) in the stack's directory."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support import node_host
from tests.support.agents import marks
from tests.support.aisdk import AISDK_DIR, missing_prerequisites
from tests.support.chat_tabs import body, events, user
from tests.support.stacks import Stack


def live(stack: Stack) -> set[str]:
    """The providers a live worker serves (``/readyz``)."""
    providers = httpx.get(f"{stack.url}/readyz").json()["providers"]
    return {name for name, p in providers.items() if p["live_workers"]}


def stack_marks(stack: Stack, what: str) -> list[dict[str, Any]]:
    """The marks of one kind the stack's agents recorded (``marks.jsonl`` in its root)."""
    assert stack.root is not None
    return marks(stack.root / "marks.jsonl", what)


def status(stack: Stack, generation: str) -> str:
    found: str = httpx.get(f"{stack.url}/v1/generations/{generation}").json()["status"]
    return found


def stored(stack: Stack, generation: str) -> list[dict[str, Any]]:
    """A finished generation's events, as its stream replays them."""
    return events(httpx.get(f"{stack.url}/v1/streams/{generation}/events", timeout=30).content)


def sdk_message(stack: Stack, generation: str, *args: str) -> dict[str, Any]:
    """The UI message the AI SDK assembles from the generation's stream."""
    missing = missing_prerequisites()
    assert not missing, "; ".join(missing)
    url = f"{stack.url}/v1/streams/{generation}/events"
    code, out, err = node_host.run(AISDK_DIR / "read.mjs", [url, *args], timeout=90)
    assert code == 0, f"read.mjs exited with {code}: {err}\n{stack.logs()}"
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def send(stack: Stack, chat: str, words: str, provider: str, **extra: Any) -> httpx.Response:
    """A chat's first message, its answer read to the end."""
    sent = body(chat, user(words, f"{chat}-u1"), provider=provider, **extra)
    return httpx.post(stack.api, json=sent, timeout=60)


def turn_text(stack: Stack, generation: str) -> str:
    """The answer's text so far (its turn, as ``GET /v1/generations/{id}`` folds it)."""
    turn = httpx.get(f"{stack.url}/v1/generations/{generation}").json()
    return "".join(b["text"] for b in turn.get("content") or [] if b["type"] == "text")


def running_text(stack: Stack, chat: str) -> bool:
    """The chat's answer is running and has shown some text: the answer's own, not the
    question's (until the answer's first event is stored, the last message listed is the
    user's, whose text would say so before the model was even asked)."""
    listed = httpx.get(f"{stack.api}/{chat}/messages").json()
    messages = listed.get("messages") or []
    last = messages[-1] if messages else {}
    parts = last.get("parts", []) if last.get("role") == "assistant" else []
    return listed.get("status") == "running" and any(p.get("text") for p in parts)
