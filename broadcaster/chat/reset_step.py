"""The AI SDK 7's view of a stream, for the readers that ask for it: a restarted step
dropped from their message by ``reset-step``.

When a worker taking a generation over cannot continue the step it was cut off in (only
unsigned thinking or a cut tool call was shown, or the worker runs with
``WORKER_TAKEOVER=restart``), it closes the cut parts, ends the step, and makes the model
call again in a new step whose ``start-step`` says ``reset: true``. Every reader shows
that coherently as it is: a finished step with closed parts, then the new one (the AI SDK
6 refuses a chunk type it does not know, so that is all it may be sent). A reader of the
AI SDK 7 (``ai`` 7.0.70 or later) knows ``reset-step``: it removes every part of the
current step. Asked for (``wanted``: ``?reset_step=1``, or the header ``X-Reset-Step:
1``, which a ``DefaultChatTransport``'s ``headers`` send on every request), that marked
``start-step`` is served as ``reset-step``: the reader drops the cut step's parts and
the new attempt streams into the same step, as if the cut had not been.

One view for every such reader of a front-end (``VIEW``): the fan-out hands the same
``bytes`` object to every viewer of a stream, so the first viewer's map is kept with it
and every other viewer's is an identity check; a run without the marked event (nearly
all) is the same object, not copied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

MARKED = b'event: start-step\ndata: {"type":"start-step","reset":true}\n'
"""The restarted step's ``start-step`` as the fan-out frames it (``core/sse.encode`` of
the worker's ``RESTARTED_STEP``)."""
RESET = b'event: reset-step\ndata: {"type":"reset-step"}\n'
"""What an AI SDK 7 reader that asked for it is sent in its place (same ``id:``)."""

QUERY = "reset_step"
HEADER = "x-reset-step"
_YES = ("1", "true")


def wanted(headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """The request asks for ``reset-step`` (``?reset_step=1`` or ``X-Reset-Step: 1``)."""
    return (
        headers.get(HEADER, "").strip().lower() in _YES
        or query.get(QUERY, "").strip().lower() in _YES
    )


class ResetView:
    """SSE frames as an AI SDK 7 reader that asked for ``reset-step`` is sent them."""

    __slots__ = ("last_in", "last_out")

    def __init__(self) -> None:
        self.last_in = b""
        self.last_out = b""

    def map(self, data: bytes) -> bytes:
        """``data`` (whole SSE frames) with the marked ``start-step`` served as
        ``reset-step``; the last run mapped is kept, so the next viewer of the same run
        costs an identity check."""
        if data is self.last_in:
            return self.last_out
        out = data.replace(MARKED, RESET) if MARKED in data else data
        self.last_in, self.last_out = data, out
        return out

    def writer(self, write: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
        """``write`` (a socket's) of what ``map`` makes of each write."""
        return lambda data: write(self.map(data))

    async def frames(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A response body's chunks, mapped (``map``)."""
        try:
            async for chunk in chunks:
                yield self.map(chunk)
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


VIEW = ResetView()
"""The view every such reader of this process shares (one front-end, one view)."""


__all__ = ["HEADER", "MARKED", "QUERY", "RESET", "VIEW", "ResetView", "wanted"]
