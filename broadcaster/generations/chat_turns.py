"""A chat's model turns, as its record keeps them beside its UI messages
(``keys.chat_model_key``: one entry a message, converted and checked when the message
was added), made into a model request's messages; and a job that names them
(``history``) rather than carrying them, resolved when a worker takes it.

An entry is ``{"i": id, "r": role, "t": [[role, blocks], ...]}``, with ``"s"`` (its
text) for a system message, ``"d"`` (the user messages it steered in) for an answer, and
``"e"`` (why) for a message that does not convert. Joined, they are what converting the
whole chat gives: the user messages an answer steered in left out, consecutive turns
of one role merged, system texts after the request's own ``system``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from redis.asyncio import Redis

from broadcaster.core import keys

HISTORY = "history"
"""The job field that names its chat's turns: ``{"chat": id}``."""


class TurnsGone(Exception):
    """A job's turns are not in its chat's record any more (the chat deleted or expired,
    or seeded again since the job was made)."""


def merged(turns: list[list[Any]]) -> list[dict[str, Any]]:
    """Anthropic's alternating turns: empty ones dropped, neighbours of a role joined."""
    out: list[dict[str, Any]] = []
    for role, blocks in turns:
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": list(blocks)})
    return out


def with_system(given: Any, texts: list[dict[str, Any]]) -> Any:
    """The request's ``system`` with the chat's system messages' texts after it."""
    if not texts:
        return given
    before = [{"type": "text", "text": given}] if isinstance(given, str) else given or []
    return [*before, *texts] if isinstance(before, list) else before


def assemble(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The model messages and the system texts of a chat's entries, in order; a message
    that did not convert raises ``TurnsGone``."""
    steered = {s for e in entries if e.get("r") == "assistant" for s in e.get("d") or ()}
    system = [{"type": "text", "text": e["s"]} for e in entries if e.get("s")]
    turns: list[list[Any]] = []
    for entry in entries:
        if "e" in entry:
            raise TurnsGone(f"message {entry.get('i')!r} cannot be sent to the model: {entry['e']}")
        if entry.get("r") == "user" and entry.get("i") in steered:
            continue
        turns += entry.get("t") or []
    return merged(turns), system


def naming(job: dict[str, Any], chat_id: str, system: Any) -> dict[str, Any]:
    """A checked request made from a chat's end (its messages those the check needed,
    its ``system`` with theirs joined) as the job that names the chat's turns instead:
    ``system`` is the request's own, as given."""
    out = {k: v for k, v in job.items() if k not in ("messages", "system")}
    if system is not None:
        out["system"] = system
    out[HISTORY] = {"chat": chat_id}
    return out


async def resolve(redis: Redis, request: dict[str, Any], generation: str) -> dict[str, Any]:
    """``request`` as a provider takes it: a job that names its chat's turns gets them
    (read in one transaction with the record, which says how many are the job's); any
    other is returned as it is (a job made before the record kept turns)."""
    named = request.get(HISTORY)
    if not isinstance(named, dict):
        return request
    chat_id = str(named.get("chat"))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.chat_key(chat_id), "model_for", "model_upto")
        pipe.lrange(keys.chat_model_key(chat_id), 0, -1)
        (owner, upto), items = await pipe.execute()
    count = int(upto or -1)
    if (owner or b"").decode() != generation or count < 0 or len(items) < count:
        raise TurnsGone(f"chat {chat_id!r} no longer holds the history this answer was asked with")
    entries = [json.loads(item) for item in cast(list[bytes], items)[:count]]
    messages, system = assemble(entries)
    if not messages:
        raise TurnsGone(f"chat {chat_id!r} holds nothing to send to the model")
    out = {k: v for k, v in request.items() if k != HISTORY}
    out["messages"] = messages
    if system:
        out["system"] = with_system(request.get("system"), system)
    return out
