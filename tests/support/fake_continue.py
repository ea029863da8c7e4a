"""How the local Anthropic server (``fake_anthropic``) answers a request to go on with a
cut answer, as a model does: from where the partial answer stopped, first repeating its
last few words (so the worker's seam trim has something to trim).

A test registers the whole answer the model "means" (``FakeAnthropicServer.will_continue``).
A request is a continuation when its last turn is a user turn asking to continue and the
turn before it is the assistant's partial answer (the worker's synthetic continue turn);
the registered answer that starts with the partial text is the one continued.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CONTINUE_MARK = "continue exactly where you stopped"
"""What the synthetic user turn says (case aside), as worker.continuation's prompt does."""


@dataclass(frozen=True)
class Answer:
    text: str
    repeat_words: int = 3
    chunk_delay: float = 0.0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        str(b.get("text") or "") for b in content if isinstance(b, dict) and b.get("type") == "text"
    )


def partial_answer(body: Any) -> str | None:
    """The partial assistant text a continuation request goes on from, or None."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or len(messages) < 2:
        return None
    ask, partial = messages[-1], messages[-2]
    if not (isinstance(ask, dict) and isinstance(partial, dict)):
        return None
    if ask.get("role") != "user" or partial.get("role") != "assistant":
        return None
    if not _text(ask.get("content")).strip().lower().startswith(CONTINUE_MARK):
        return None
    return _text(partial.get("content"))


def continuation_chunks(partial: str, answer: Answer) -> list[str] | None:
    """The deltas of the continuation: the partial's last words again, then the rest of
    the answer, a word a delta; None if the answer does not start with the partial."""
    if not answer.text.startswith(partial):
        return None
    starts = [m.start() for m in re.finditer(r"\S+", partial)]
    back = starts[-answer.repeat_words] if len(starts) >= answer.repeat_words else 0
    rest = partial[back:] + answer.text[len(partial) :]
    return re.findall(r"\s*\S+\s*|\s+", rest) or [rest]


__all__ = ["CONTINUE_MARK", "Answer", "continuation_chunks", "partial_answer"]
