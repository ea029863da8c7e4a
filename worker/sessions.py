"""Providers whose calls share one running state over an attempt: an agent
(``worker.agents``) runs once per attempt, and each of its steps is one call of the step
loop, so the loop's lease, merge window, stop, approvals, steering and takeover hold for
it as for a model.

``run_generation`` opens a session of such a provider after its claim and closes it
when the attempt ends, however it ends (the agent's task is then cancelled and awaited).
A session's calls end a step with ``GOES_ON`` as their finish reason when the agent's
next step follows; it says which tool calls wait for a person (``tools``, whose ``deferred``
calls the agent runs itself once decided).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from worker.providers.base import Provider
from worker.tools import ToolBox

GOES_ON = "agent_step"
"""A session's call's finish reason (``Stop``): this step ended and the agent's next one
follows in the next call (the step loop then ends the step, hands the steering messages
over and calls again)."""

History = Callable[[], Awaitable[list[dict[str, Any]]]]
"""The events in the generation's log so far (anything pending written first)."""


@dataclass(frozen=True, slots=True)
class Opening:
    """What a session is opened with."""

    stream_id: str
    request: dict[str, Any]
    history: History
    approval_timeout_s: float


class Session(Provider, Protocol):
    """One attempt's provider: its calls are the agent's steps."""

    @property
    def tools(self) -> ToolBox:
        """The calls this session asks a person about, as tools the step loop gates."""
        ...


@runtime_checkable
class Sessions(Protocol):
    """A provider served as sessions (an agent)."""

    def session(self, opening: Opening) -> AbstractAsyncContextManager[Session]: ...
