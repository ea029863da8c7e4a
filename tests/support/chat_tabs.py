"""What the chat tests share: a user message and a submit's body, a submit read to its
end in a thread (``Tab``, one client's tab), its events, and a wait that shows the
deployment's logs when it fails."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

import httpx

from tests.support.procs import parse_sse


class ChatStack(Protocol):
    """A deployment with its chat API at ``api`` and its processes' logs."""

    @property
    def api(self) -> str: ...

    def logs(self) -> str: ...


def user(words: str, mid: str) -> dict[str, Any]:
    return {"id": mid, "role": "user", "parts": [{"type": "text", "text": words}]}


def body(chat: str, *messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": chat, "messages": list(messages), "trigger": "submit-message", **extra}


def events(raw: bytes) -> list[dict[str, Any]]:
    found, _, _ = parse_sse(raw)
    return [json.loads(e.data) for e in found if e.data and e.data != "[DONE]"]


class Tab:
    """One client's submit, read to its end in a thread."""

    def __init__(self, stack: ChatStack, body: dict[str, Any]) -> None:
        self.response: httpx.Response | None = None
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run, args=(stack, body))
        self.thread.start()

    def _run(self, stack: ChatStack, body: dict[str, Any]) -> None:
        self.response = httpx.post(stack.api, json=body, timeout=60)
        self.ended_at = time.monotonic()

    def result(self) -> httpx.Response:
        self.thread.join(60)
        assert self.response is not None
        return self.response
