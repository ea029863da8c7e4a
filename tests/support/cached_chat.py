"""A chat driven turn by turn through ``POST /v1/chat`` of a stack whose worker calls the
local Anthropic server (``stacks.anthropic_stack``), as the AI SDK drives it (each turn
sends the whole history back), with a turn whose worker is killed mid-answer and taken
over: what the prompt-caching test and the cost benchmark share."""

from __future__ import annotations

import secrets
import signal
import threading
from typing import Any

import httpx

from tests.support.fake_anthropic import gate, text_reply
from tests.support.polling import wait_for
from tests.support.procs import parse_sse
from tests.support.stacks import Stack

SYSTEM = "You answer questions about streams of events, briefly and exactly. " * 80
"""A system prompt of about 1,400 tokens (by the local server's count): over the 1,024 a
prefix needs before Anthropic caches it."""


def ui(role: str, text: str) -> dict[str, Any]:
    """A UI message of one text part."""
    parts = [{"type": "text", "text": text}]
    return {"id": f"{role}-{secrets.token_hex(4)}", "role": role, "parts": parts}


def question(n: int) -> dict[str, Any]:
    return ui("user", f"Question {n}: what does a stream carry, and to whom? " * 3)


def answer_words(n: int) -> list[str]:
    """The chunks of turn ``n``'s answer: about 130 tokens."""
    return [f"{w} " for w in f"Answer {n}: the stream carries numbered events. ".split()] * 8


def submit(
    stack: Stack,
    chat: str,
    messages: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> str:
    """One turn of the chat, its answer read to the end: the generation's id."""
    body = {"id": chat, "messages": messages, "system": SYSTEM, "max_tokens": 300, **extra}
    r = httpx.post(stack.api, json=body, headers=headers or {}, timeout=60)
    assert r.status_code == 200, r.text
    events, _, _ = parse_sse(r.content)
    ends = [e.event for e in events if e.event in ("finish", "error")]
    assert ends == ["finish"], f"{ends}: {r.text[-2000:]}"
    return r.headers["x-generation-id"]


def history(stack: Stack, chat: str, headers: dict[str, str] | None = None) -> list[Any]:
    """The chat so far, as the AI SDK keeps it (UI messages)."""
    r = httpx.get(f"{stack.url}/v1/chat/{chat}/messages", headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["messages"]
    return found


def turns(
    stack: Stack, chat: str, count: int, headers: dict[str, str] | None = None, cut_at: int = 0
) -> None:
    """``count`` turns of the chat (each answer scripted on the local server), turn
    ``cut_at`` (if any) with its worker killed mid-answer and taken over."""
    messages: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        messages = [*messages, question(n)]
        if n == cut_at:
            taken_over(stack, chat, messages, answer_words(n), headers)
        else:
            stack.model.enqueue(text_reply(answer_words(n)))
            submit(stack, chat, messages, headers)
        messages = history(stack, chat, headers)


def taken_over(
    stack: Stack,
    chat: str,
    messages: list[dict[str, Any]],
    words: list[str],
    headers: dict[str, str] | None = None,
) -> str:
    """A turn whose worker is killed (``kill -9``) once the answer's first words are shown,
    and another worker continues it (the local server answers the request to go on with
    the rest): the generation's id. The stack's worker is the new one after."""
    held = threading.Event()
    script = text_reply(words)
    stack.model.enqueue([*script[:8], gate(held), *script[8:]])
    stack.model.will_continue("".join(words))
    first = stack.model.request_count
    body = {"id": chat, "messages": messages, "system": SYSTEM, "max_tokens": 300}
    victim = stack.worker
    assert victim is not None, "the stack has no worker"
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", stack.api, json=body, headers=headers or {}) as answer,
    ):
        gid = answer.headers["x-generation-id"]
        wait_for("text shown", lambda: words[0].strip() in _text(stack, gid), 30, 0.02, stack.logs)
        victim.stop(signal.SIGKILL)
        stack.worker = stack.add_worker()
        stack.more_workers.remove(stack.worker)
        gone_on = first + 1
        wait_for(
            "the continuation", lambda: stack.model.request_count > gone_on, 60, 0.05, stack.logs
        )
        answer.read()
    held.set()
    return gid


def _text(stack: Stack, gid: str) -> str:
    r = httpx.get(f"{stack.url}/v1/generations/{gid}", timeout=10)
    return str(r.json().get("text") or "") if r.status_code == 200 else ""
