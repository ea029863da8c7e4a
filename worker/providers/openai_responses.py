"""The OpenAI provider on the Responses API (``WORKER_OPENAI_API=responses``), through the
official async SDK, with the response run in the background and stored
(``background: true, store: true``).

A background response runs on at OpenAI whatever becomes of the stream that created it.
Each event's output is appended with a ``ResumePoint`` (the response id, the event's
``sequence_number``, the translator's state), so a worker that takes over streams the
same response again from there (``starting_after``) at no token cost; a response that is
gone is called again. Leaving the call early cancels the response, unless another
worker may be streaming it (taken over, Redis out of reach, handed back at shutdown).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx2
import openai
from openai import AsyncStream
from openai.types.responses import ResponseStreamEvent
from redis import exceptions as redis_errors

from broadcaster.core.eventlog import StaleWriter
from worker.providers.base import HANDED_BACK, REATTACH, RESUME_FIELD, ProviderError, cache_key
from worker.providers.openai import classify, make_client
from worker.providers.openai_request import Untranslatable
from worker.providers.openai_responses_request import responses_params
from worker.providers.openai_responses_stream import ResponseFailed, ResponsesTranslator
from worker.providers.parts import ModelEvent, ResumePoint, Shown

log = logging.getLogger("worker.generation")

LIVE = frozenset({"queued", "in_progress", "completed", "incomplete"})
"""The statuses of a response whose events can be streamed again."""

_KEEP_RUNNING = (StaleWriter, redis_errors.RedisError, OSError)
"""Leaving the call for these leaves the response running: another worker has the
generation, or will have it once the lease runs out, and re-attaches to it."""

CANCEL_TIMEOUT_S = 5.0


class OpenAIResponsesProvider:
    def __init__(
        self, read_timeout: float, client: openai.AsyncOpenAI | None = None, *, caching: bool = True
    ) -> None:
        self.client = client or make_client(httpx2.Timeout(read_timeout, connect=10.0))
        self.caching = caching
        """Each response names its prompt cache (``prompt_cache_key``: ``cache_key``)."""

    @asynccontextmanager
    async def stream(self, request: dict[str, Any]) -> AsyncIterator[AsyncIterator[ModelEvent]]:
        reattach = request.get(REATTACH)
        translator, prelude = _translator(reattach)
        try:
            stream = await self._open(request, reattach)
        except openai.APIError as exc:
            raise classify(exc) from exc
        try:
            yield _events(stream, translator, prelude)
        except _KEEP_RUNNING:
            raise
        except asyncio.CancelledError as exc:
            if HANDED_BACK not in exc.args:
                await self._cancel(translator)
            raise
        except BaseException:
            await self._cancel(translator)
            raise
        else:
            await self._cancel(translator)
        finally:
            await stream.close()

    async def _open(
        self, request: dict[str, Any], reattach: dict[str, Any] | None
    ) -> AsyncStream[ResponseStreamEvent]:
        if reattach is not None:
            point = reattach["point"]
            log.info("re-attaching to response %s after event %d", point["id"], point["after"])
            return await self.client.responses.retrieve(
                point["id"], stream=True, starting_after=int(point["after"])
            )
        try:
            params = responses_params(request)
        except Untranslatable as exc:
            raise ProviderError(
                f"the openai provider (Responses API) cannot send this request: {exc}",
                retryable=False,
                kind="client_error",
            ) from exc
        key = cache_key(request)
        if self.caching and key is not None:
            params["prompt_cache_key"] = key
        # stream=True is in params: the call returns a stream of events.
        return cast(AsyncStream[ResponseStreamEvent], await self.client.responses.create(**params))

    async def _cancel(self, translator: ResponsesTranslator) -> None:
        """Cancel the response if it has not completed: no more tokens are billed."""
        if translator.finished or translator.response_id is None:
            return
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                await self.client.responses.cancel(translator.response_id)
            log.info("response %s cancelled", translator.response_id)
        except (openai.APIError, httpx2.HTTPError, TimeoutError) as exc:
            log.warning("response %s: cancel failed: %s", translator.response_id, exc)

    async def reattachable(self, point: dict[str, Any]) -> bool:
        """The response at ``point`` is still there and can be streamed again."""
        try:
            response = await self.client.responses.retrieve(str(point["id"]))
        except (openai.APIError, httpx2.HTTPError) as exc:
            log.info("response %s cannot be re-attached to: %s", point.get("id"), exc)
            return False
        return response.status in LIVE

    async def aclose(self) -> None:
        await self.client.close()


def _translator(
    reattach: dict[str, Any] | None,
) -> tuple[ResponsesTranslator, list[ModelEvent]]:
    """A fresh translator, or the lost worker's, with the events that bring the mapper to
    where it was (``Shown``)."""
    if reattach is None:
        return ResponsesTranslator(), []
    translator = ResponsesTranslator.resumed(reattach["point"]["state"])
    prelude: list[ModelEvent] = [Shown(e) for e in translator.reopen(reattach["tool_inputs"])]
    return translator, prelude


def resume_point(translator: ResponsesTranslator, sequence_number: int) -> dict[str, str]:
    """The metadata that lets a successor go on after event ``sequence_number``."""
    point = {"id": translator.response_id, "after": sequence_number, "state": translator.snapshot()}
    return {RESUME_FIELD: json.dumps(point, separators=(",", ":"))}


async def _events(
    stream: AsyncStream[ResponseStreamEvent],
    translator: ResponsesTranslator,
    prelude: list[ModelEvent],
) -> AsyncIterator[ModelEvent]:
    """The Responses events as neutral events, each one's followed by the resume point
    after it; what the SDK raises mid-stream becomes a ProviderError."""
    for shown in prelude:
        yield shown
    try:
        async for event in stream:
            data = event.model_dump(mode="json")
            found = translator.feed(data)
            seq = data.get("sequence_number")
            if found and isinstance(seq, int) and translator.response_id:
                found.append(ResumePoint(resume_point(translator, seq)))
            for one in found:
                yield one
            if translator.finished:
                return
    except ResponseFailed as exc:
        raise ProviderError(
            f"model provider error mid-stream: {exc}", retryable=True, kind="mid_stream"
        ) from exc
    except (openai.APIError, httpx2.HTTPError) as exc:
        raise classify(exc) from exc
