"""A chat answer's SSE frames, as the AI SDK's transports read them: an answer ends where
its generation waits for a person (a ``finish`` with ``tool-calls``), and, for
``WorkflowChatTransport``, an end by ``abort`` or ``error`` gets the ``finish`` it
reconnects until it sees."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from broadcaster.core.eventlog import EventLog

LONE_FINISH = b'data: {"type":"finish"}\n\ndata: [DONE]\n\n'
"""What a run's reconnect gets once it holds the whole answer, if that ended with
``abort`` or ``error``: ``WorkflowChatTransport`` reconnects until it sees a ``finish``."""

_APPROVAL_FRAME = b"\nevent: tool-approval-request\n"
_LAST_ID = re.compile(rb"(?:^|\n)id: (\d+)\.[0-9a-f]*\n(?![\s\S]*\nid: )")
SUSPENDED_FINISH = b'data: {"type":"finish","finishReason":"tool-calls"}\n\ndata: [DONE]\n\n'
"""Where an answer ends when its generation waits for a person: the AI SDK's client is
then ready, and its next request (``addToolApprovalResponse``) carries the decision."""
_ENDED_FRAME = re.compile(rb"\nevent: (abort|error)\n")


async def until_waiting(
    event_log: EventLog,
    generation: str,
    chunks: AsyncIterator[bytes],
    *,
    finish_ends: bool = False,
    stop_at_wait: bool = True,
) -> AsyncIterator[bytes]:
    """A submit's answer (and a run's stream): the generation's chunks, ending with a
    ``finish`` (``tool-calls``) once the generation is waiting for a person and this
    answer has shown the requests it waits on. ``finish_ends``: an end by ``abort`` or
    ``error`` gets a ``finish`` before its ``[DONE]`` (what ``WorkflowChatTransport``
    waits for)."""
    ended_badly = False
    try:
        async for chunk in chunks:
            if finish_ends and not ended_badly and _ENDED_FRAME.search(chunk):
                ended_badly = True
            out = chunk
            if ended_badly and chunk.endswith(b"data: [DONE]\n\n"):
                out = chunk[: -len(b"data: [DONE]\n\n")] + LONE_FINISH
            yield out
            if stop_at_wait and _APPROVAL_FRAME in chunk:
                last = _LAST_ID.search(chunk)
                seen = int(last.group(1)) if last else 0
                meta = await event_log.fields(generation, "status", "wait_seq")
                if meta.get("status") == "waiting" and int(meta.get("wait_seq") or 0) <= seen:
                    yield SUSPENDED_FINISH
                    return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
