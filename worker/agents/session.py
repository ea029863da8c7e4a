"""An agent served as a provider (``AgentProvider``): one session per attempt of a
generation (``worker.sessions``), in which the agent runs once, in a task of its own,
and each of its steps is one call of the worker's step loop.

The agent's chunks go through a bounded queue; a call reads them up to the agent's next
step, where the task waits for the loop (which ends the step and hands over steering,
``AgentJob.steering``). A call ends the answer when the agent ends, asks a person
(``ApprovalPending``) or fails. Closing the session cancels the agent's task and awaits
it, closing its iterator and any model call it was making.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from worker.agents.chunks import AgentError, StepChunks, boundary
from worker.agents.job import AgentFn, AgentJob, ApprovalPending
from worker.providers.base import ProviderError
from worker.providers.parts import MessageEnd, MessageStart, ModelEvent, Stop
from worker.sessions import GOES_ON, Opening
from worker.tools import ToolBox
from worker.usage import Usage, since

log = logging.getLogger("worker.agents")

QUEUE_SIZE = 64
"""Chunks the agent may run ahead of the appends (then it waits)."""

_END = object()


@dataclass(frozen=True, slots=True)
class AgentTools(ToolBox):
    """The calls an agent asks a person about, gated by the step loop like tools that
    need approval, and run by the agent itself once approved (``deferred``)."""

    gated: set[str] = field(default_factory=set)

    def runs(self, name: Any) -> bool:
        return isinstance(name, str) and name in self.gated

    def needs_approval(self, name: str, tool_input: Any) -> bool:
        return True

    def idempotent(self, name: str) -> bool:
        return False

    def deferred(self, name: str) -> bool:
        return True

    def approval_timeout(self, name: str) -> float:
        return self.approval_timeout_s

    def offer(self, request: dict[str, Any]) -> dict[str, Any]:
        return request  # an agent brings its own tools


class AgentProvider:
    """Serves one agent under its name."""

    def __init__(self, name: str, agent: AgentFn) -> None:
        self.name = name
        self.agent = agent

    @asynccontextmanager
    async def session(self, opening: Opening) -> AsyncIterator[AgentSession]:
        events = await opening.history()
        tools = AgentTools({}, approval_timeout_s=opening.approval_timeout_s)
        tools.gated.update(_asked_names(events))
        session = AgentSession(self, opening, tools)
        try:
            yield session
        finally:
            await session.aclose()

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        raise ProviderError(f"agent {self.name} runs only in a session", retryable=False)
        yield  # pragma: no cover - a generator, for the context manager

    async def aclose(self) -> None:
        return None


class AgentSession:
    """One attempt's run of the agent."""

    def __init__(self, provider: AgentProvider, opening: Opening, tools: AgentTools) -> None:
        self.provider = provider
        self.opening = opening
        self.tools = tools
        self.job: AgentJob | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        self._gate = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reported = Usage()
        """The framework's count as the steps so far reported it."""
        self._client_tools = frozenset(
            str(t.get("name")) for t in opening.request.get("tools") or [] if isinstance(t, dict)
        )

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        yield self._step(request)

    async def _step(self, request: dict[str, Any]) -> AsyncIterator[ModelEvent]:
        """One step of the agent, as one model call's events."""
        if self.job is None:
            self.job = AgentJob(
                self.opening.stream_id,
                self.provider.name,
                self.opening.request,
                await self.opening.history(),
            )
            self._task = asyncio.create_task(self._drive(self.job), name=f"agent-{self.job.id}")
        else:
            self.job.steer(_steering(request))
            self._gate.set()  # the agent waits at its step's start: go on
        chunks = StepChunks(self._client_tools)
        yield MessageStart(self.provider.name)
        stop: str | None = None
        while stop is None:
            item = await self._queue.get()
            stop, events = self._take(item, chunks)
            for event in events:
                yield event
        for event in chunks.close():
            yield event
        yield Stop(stop, usage=self._step_usage(chunks))
        yield MessageEnd()

    def _step_usage(self, chunks: StepChunks) -> Usage:
        """The step's usage: what the framework counted since the step before
        (``AgentJob.usage``), else a token a delta."""
        counted = self.job.usage if self.job is not None else None
        if counted is None:
            return Usage(output=chunks.deltas)
        step, self._reported = since(counted, self._reported), counted
        return step

    def _take(self, item: Any, chunks: StepChunks) -> tuple[str | None, list[ModelEvent]]:
        """One item of the agent's: the events it makes and, if the step ends there, why
        (the contract's finish reason, or ``GOES_ON``)."""
        if item is _END:
            client = chunks.client_calls or chunks.finish == "tool-calls"
            return ("tool-calls" if client else "stop"), []
        if isinstance(item, ApprovalPending):
            self.tools.gated.update(a.name for a in item.asked)
            return "tool-calls", chunks.asked(item.asked)
        if isinstance(item, BaseException):
            raise _failed(item)
        if boundary(item):
            if chunks.output:
                return GOES_ON, []  # its next step: the loop calls again
            self._gate.set()  # nothing shown in this step yet: go on at once
            return None, []
        try:
            return None, chunks.feed(item)
        except AgentError as exc:
            raise _failed(exc) from exc

    async def _drive(self, job: AgentJob) -> None:
        """Run the agent, its chunks to the queue; wait at each step's start."""
        try:
            agent = self.provider.agent(job)
            try:
                async for chunk in agent:
                    await self._queue.put(chunk)
                    if isinstance(chunk, dict) and boundary(chunk):
                        await self._gate.wait()
                        self._gate.clear()
            finally:
                aclose = getattr(agent, "aclose", None)
                if aclose is not None:
                    await aclose()
            await self._queue.put(_END)
        except ApprovalPending as exc:
            await self._queue.put(exc)
        except Exception as exc:
            log.warning("agent %s failed: %s: %s", self.provider.name, type(exc).__name__, exc)
            await self._queue.put(exc)

    async def aclose(self) -> None:
        """Cancel the agent's task and wait for it (its iterator is closed)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _failed(exc: BaseException) -> ProviderError:
    message = str(exc) if isinstance(exc, AgentError) else f"{type(exc).__name__}: {exc}"
    return ProviderError(f"the agent failed: {message}", retryable=False)


def _steering(request: dict[str, Any]) -> list[str]:
    """The steering messages the step loop put in the request's last user turn (its text
    blocks after the tool results, ``worker.transcript.Step.turns``)."""
    messages = request.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") != "user" or not isinstance(last.get("content"), list):
        return []
    return [str(b["text"]) for b in last["content"] if b.get("type") == "text" and b.get("text")]


def _asked_names(events: list[dict[str, Any]]) -> set[str]:
    """The tools of the calls that asked a person, in the log (a decision's resume)."""
    names = {
        str(e.get("toolCallId")): str(e.get("toolName"))
        for e in events
        if e.get("type") == "tool-input-available"
    }
    return {
        names[str(e.get("toolCallId"))]
        for e in events
        if e.get("type") == "tool-approval-request" and str(e.get("toolCallId")) in names
    }


__all__ = ["AgentProvider", "AgentSession", "AgentTools"]
