"""Taking over a generation whose model call outlived its worker: go on with that call.

A provider whose calls run on without the worker that made them (OpenAI's background
responses, ``worker.providers.openai_responses``) leaves a resume point in the stream's
metadata (``RESUME_FIELD``), written in the same append as the output it follows. When a
worker takes such a generation over in the middle of a model call, it does not show
a notice and continue or make the call again: the step goes on, its parts keep their ids, and
the provider streams the rest of the same call from the point. The takeover costs no
token and the viewer sees no text twice.

Used only when the provider says the call can still be streamed (``reattachable``);
otherwise the takeover goes the usual way (``worker.transcript.plan_resume``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from worker.providers.base import RESUME_FIELD, Provider, Reattaching
from worker.step_loop import Progress
from worker.transcript import Event, Reattach, Resume, latest_attempt, split_steps

log = logging.getLogger("worker.generation")


async def reattached(
    provider: Provider, events: Sequence[Event], meta: dict[str, str], plan: Resume
) -> Progress | None:
    """Where the attempt starts if it can go on with the cut model call, else None."""
    raw = meta.get(RESUME_FIELD)
    steps = split_steps(latest_attempt(events))
    if not (plan.cut is not None and raw and steps and isinstance(provider, Reattaching)):
        return None
    point = json.loads(raw)
    if not await provider.reattachable(point):
        return None
    log.info("generation: going on with the model call after event %s", point.get("after"))
    usage = json.loads(meta["usage"]) if plan.steps and meta.get("usage") else None
    return Progress(
        plan.steps,
        plan.stream_steps - 1,  # the cut step is counted again when its call ends
        started=True,
        usage=usage,
        model=meta.get("steps_model") or None,
        id_prefix=_id_prefix(events),
        reattach=Reattach(point, list(steps[-1].events)),
    )


def _id_prefix(events: Sequence[Event]) -> str:
    """The part-id prefix of the cut call's parts: ``a<n>-`` after the latest
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
