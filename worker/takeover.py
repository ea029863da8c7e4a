"""A takeover's plan: what an attempt that finds output in the stream does first,
decided once, before the step loop runs (``worker.step_loop`` follows it). Pure but for
``plan_attempt``, which asks the provider whether a cut model call still runs.

A new generation makes its first model call (``fresh``). One taken over reads what the
stream holds (``worker.transcript.plan_resume``) and plans a ``Call`` (the next step,
or a cut one made again), ``RunTools`` (the last step's output is whole: run the tools
whose output is missing), ``Continue`` (go on from a cut model call,
``worker.continuation``) or ``Reattach`` (the cut call still runs: stream the rest).
A cut step that does not re-attach is first closed by a ``Notice``. ARCHITECTURE.md,
"The worker's plan", has the whole of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.continuation import partial_turn, plan_cut, plan_restart
from worker.providers.base import REATTACH, RESUME_FIELD, Provider, Reattaching
from worker.transcript import Event, Resume, Step, ends_restarted, plan_resume
from worker.usage import Tally

log = logging.getLogger("worker.generation")

LOST_WORKER = "the worker running this generation was lost"
"""Why a cut step goes on (``data-continued``'s ``reason``)."""


@dataclass(frozen=True, slots=True)
class Call:
    """Make the next step's model call."""

    restarts: bool = False
    """The step before was cut and is made again: the call's ``start-step`` says so."""


@dataclass(frozen=True, slots=True)
class RunTools:
    """The last step's model output is whole: run its tools whose output is missing."""

    lost_run: bool
    """A lost worker may have been running the first of them (tools run in order)."""


@dataclass(frozen=True, slots=True)
class Continue:
    """Ask the model to go on from a cut step's partial turn."""

    events: list[Event]
    """The step's events so far, with those that closed its cut parts."""
    turn: list[dict[str, Any]]
    """The partial assistant turn the model is sent (empty: nothing was shown)."""
    open_text: str | None
    """The text part left open, which the continuation streams into."""
    partial_text: str


@dataclass(frozen=True, slots=True)
class Reattach:
    """Stream the rest of the cut step's model call, from its resume point."""

    point: dict[str, Any]
    shown: list[Event]
    """The cut step's events in the stream (after its ``start-step``): the new events
    follow them in the same step."""

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The step's request, naming the call to go on with."""
        return {**request, REATTACH: {"point": self.point, "tool_inputs": self.tool_inputs()}}

    def tool_inputs(self) -> dict[str, str]:
        """The arguments each tool call of the step has shown so far."""
        inputs: dict[str, str] = {}
        for e in self.shown:
            if e.get("type") == "tool-input-delta":
                call = str(e.get("toolCallId"))
                inputs[call] = inputs.get(call, "") + str(e.get("inputTextDelta") or "")
        return inputs


Move = Call | RunTools | Continue | Reattach


@dataclass(frozen=True, slots=True)
class Notice:
    """One append before the loop: a cut step's ``data-continued`` and what closes it."""

    events: list[Event]
    mode: str
    meta: dict[str, str] | None = None
    text_reset: str | None = None
    """The generation's stored text without what a restarted step showed."""


@dataclass
class Progress:
    """How far the attempt is: its steps so far, and what the stream holds."""

    steps: list[Step]
    stream_steps: int
    """``start-step`` events in the whole stream."""
    started: bool
    """The attempt's ``start`` is in the stream."""
    tally: Tally = field(default_factory=Tally)
    id_prefix: str = ""
    """Before the ids of this attempt's text and reasoning parts: set when it goes on from
    a cut step, so that no new part reuses the id of a part the cut call left (the AI SDK
    would append to it, or, with ``WorkflowChatTransport``'s framing repair, drop the new
    start)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What the attempt does first, and the append that comes before it."""

    first: Move
    progress: Progress
    notice: Notice | None = None


def fresh(attempt: int) -> Plan:
    """A generation nothing was written to yet: its first model call."""
    return Plan(Call(), Progress([], 0, started=False, tally=Tally(attempt)))


async def plan_attempt(
    events: Sequence[Event],
    meta: dict[str, str],
    provider: Provider,
    *,
    attempt: int,
    lost_worker: bool,
    mode: str,
) -> Plan:
    """The plan of an attempt that finds ``events`` and ``meta`` in the stream. A cut
    model call whose provider still runs it (``Reattaching``) is re-attached to."""
    resume = plan_resume(events, int(meta.get("steps_done") or 0))
    point = None
    raw = meta.get(RESUME_FIELD)
    if resume.cut is not None and raw and isinstance(provider, Reattaching):
        point = json.loads(raw)
        if await provider.reattachable(point):
            log.info("generation: going on with the model call after event %s", point.get("after"))
        else:
            point = None
    return decide(
        resume, events, meta, attempt=attempt, lost_worker=lost_worker, mode=mode, point=point
    )


def decide(
    resume: Resume,
    events: Sequence[Event],
    meta: dict[str, str],
    *,
    attempt: int,
    lost_worker: bool,
    mode: str,
    point: dict[str, Any] | None = None,
) -> Plan:
    """The plan, from where the stream stands (``resume``). ``lost_worker``: the attempt
    takes over from a worker that was lost or handed it back, not a person's decision.
    ``mode`` is ``WORKER_TAKEOVER``: ``restart`` makes a cut step's call again in a new
    step even where it could continue. ``point``: the cut call can be re-attached to."""
    tally = Tally.resumed(meta, attempt, steps_kept=bool(resume.steps))
    progress = Progress(resume.steps, resume.stream_steps, resume.started, tally)
    cut = resume.cut
    if cut is None:
        if resume.steps and not resume.steps[-1].finished:
            return Plan(RunTools(lost_run=lost_worker), progress)
        return Plan(Call(restarts=ends_restarted(events)), progress)
    if point is not None:
        progress.started, progress.id_prefix = True, _id_prefix(events)
        return Plan(Reattach(point, list(cut.events)), progress)
    return _cut(progress, cut, mode)


def _cut(progress: Progress, cut: Step, mode: str) -> Plan:
    """A step cut off in its model call: closed by a notice, then on (``worker.continuation``)."""
    way = plan_cut(cut.events)
    if mode == "restart" and way.mode == "continue":
        way = plan_restart(cut.events)
    shown = [way.notice(progress.tally.attempt, LOST_WORKER), *way.closing]
    progress.id_prefix = f"a{progress.tally.attempt}-"
    if way.mode == "tools":
        # Its calls were whole: the step's output is, as far as it goes.
        cut.events += shown
        progress.steps.append(cut)
        notice = Notice(shown, way.mode, meta={"steps_done": str(progress.stream_steps)})
        return Plan(RunTools(lost_run=False), progress, notice)
    if way.mode == "restart":
        # The stored text is the answer's: without what the restarted step showed.
        kept = [e for s in progress.steps for e in s.events if e.get("type") == "text-delta"]
        reset = "".join(str(e.get("delta")) for e in kept)
        return Plan(Call(restarts=True), progress, Notice(shown, way.mode, text_reset=reset))
    turn = partial_turn(cut.events, way.dropped)
    going_on = Continue([*cut.events, *shown], turn, way.open_text, way.partial_text)
    return Plan(going_on, progress, Notice(shown, way.mode))


def _id_prefix(events: Sequence[Event]) -> str:
    """The part-id prefix of a cut call's parts: ``a<n>-`` after the latest
    ``data-continued`` (the call was made by a takeover), or a ``data-retry`` before the
    latest ``start`` (streams of older versions)."""
    notices = [e for e in events if e.get("type") == "data-continued"]
    if notices and isinstance(notices[-1].get("data"), dict):
        return f"a{notices[-1]['data'].get('attempt')}-"
    starts = [i for i, e in enumerate(events) if e.get("type") == "start"]
    if not starts or starts[-1] == 0:
        return ""
    before = events[starts[-1] - 1]
    data = before.get("data")
    if before.get("type") == "data-retry" and isinstance(data, dict):
        return f"a{data.get('attempt')}-"
    return ""


__all__ = [
    "Call",
    "Continue",
    "Move",
    "Notice",
    "Plan",
    "Progress",
    "Reattach",
    "RunTools",
    "decide",
    "fresh",
    "plan_attempt",
]
