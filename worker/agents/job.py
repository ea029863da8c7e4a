"""What an agent is handed: one generation's job (``AgentJob``), and the one way it asks
for a person's approval.

An agent is called once per attempt: at the generation's start, again after a person
decided an approval it asked for (the generation held no worker meanwhile), and again
when a worker takes the generation over from one that was lost or handed it back. Each
time ``events`` holds what the log already has, so the agent goes on from there
(``steps``: the answer's steps so far) instead of starting over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.transcript import latest_attempt, split_steps
from worker.usage import Usage

Chunk = dict[str, Any]
"""An AI SDK UI message chunk (``{"type": "text-delta", ...}``) or an Anthropic raw
stream event (``{"type": "content_block_delta", ...}``), as a dict."""

AgentFn = Callable[["AgentJob"], AsyncIterator[Chunk]]
"""An agent: an async generator function (or any callable returning an async iterator)
of chunks, given the job."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A person's decision on one tool call."""

    approved: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Asked:
    """A tool call that waits for a person's decision."""

    call_id: str
    name: str
    input: Any


class ApprovalPending(BaseException):
    """Raised by ``AgentJob.approval`` in the agent when a person must decide first: the
    agent stops there, the generation waits holding no worker, and the agent is called
    again once the decision is in the log. A ``BaseException``, so that an agent's own
    ``except Exception`` does not swallow it."""

    def __init__(self, asked: Sequence[Asked]) -> None:
        super().__init__(", ".join(a.name for a in asked))
        self.asked = tuple(asked)


@dataclass
class AgentJob:
    """One generation, as an agent sees it."""

    id: str
    """The generation's id (its stream)."""
    agent: str
    """The name the agent is served under (the request's ``provider``)."""
    request: dict[str, Any]
    """The stored request, as the front-end checked it."""
    events: list[Chunk] = field(default_factory=list)
    """The events already in the generation's log when this attempt began (empty for a
    new generation): after a decision or a takeover, what was shown so far."""
    usage: Usage | None = None
    """What this run's model calls used so far, as the agent's framework counts them: set
    it (or add each call's) before the next ``start-step`` and before the agent ends, and
    each step reports what was added since the one before. None (nothing reported): the
    worker counts a token per streamed delta."""
    _steering: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation (Anthropic's message shape): a prompt as one user turn."""
        given = self.request.get("messages")
        if isinstance(given, list):
            return given
        return [{"role": "user", "content": str(self.request.get("prompt") or "")}]

    @property
    def prompt(self) -> str:
        """The text of the last user turn."""
        content = self.messages[-1].get("content") if self.messages else ""
        if isinstance(content, str):
            return content
        return "".join(
            str(b.get("text")) for b in content or [] if isinstance(b, dict) and "text" in b
        )

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The request's tools: the client's, which the client runs (a call of one ends the
        answer with ``finishReason: tool-calls``)."""
        return list(self.request.get("tools") or [])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.request.get("metadata") or {})

    @property
    def chat_id(self) -> str | None:
        """The chat this answer belongs to (``/v1/chat``), or None."""
        found = self.request.get("chat_id")
        return found if isinstance(found, str) else None

    @property
    def steps(self) -> list[list[Chunk]]:
        """The answer's steps so far, each its events after its ``start-step`` (a step a
        takeover restarted is left out)."""
        return [s.events for s in split_steps(latest_attempt(self.events))]

    @property
    def decisions(self) -> dict[str, Decision]:
        """The decisions in the log, by tool call id."""
        found: dict[str, Decision] = {}
        for e in self.events:
            data = e.get("data")
            if e.get("type") == "data-approval" and isinstance(data, dict):
                reason = data.get("reason")
                found.setdefault(
                    str(data.get("toolCallId")),
                    Decision(
                        bool(data.get("approved")), reason if isinstance(reason, str) else None
                    ),
                )
        return found

    def approval(self, call_id: str, name: str, tool_input: Any) -> Decision:
        """The person's decision on this call, if the log has one; else raises
        ``ApprovalPending`` (let it propagate): the worker shows the call with a
        ``tool-approval-request`` and the generation waits for the decision."""
        return self.approvals([Asked(call_id, name, tool_input)])[call_id]

    def approvals(self, asked: Sequence[Asked]) -> dict[str, Decision]:
        """``approval`` for several calls of one step: every undecided one is asked at once."""
        decided = self.decisions
        undecided = [a for a in asked if a.call_id not in decided]
        if undecided:
            raise ApprovalPending(undecided)
        return {a.call_id: decided[a.call_id] for a in asked}

    def steering(self) -> list[str]:
        """The chat messages sent to steer this answer since the last call, each once:
        read it at the start of each step (after yielding ``start-step``)."""
        taken, self._steering = self._steering, []
        return taken

    def steer(self, texts: Sequence[str]) -> None:
        """Hand the agent steering messages (the worker does, at a step's start)."""
        self._steering.extend(texts)


__all__ = ["AgentFn", "AgentJob", "ApprovalPending", "Asked", "Chunk", "Decision"]
