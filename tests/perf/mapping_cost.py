"""The worker's CPU to turn one model call's stream into the contract's events, in
process: from the SDK's event objects (or an agent's chunks) through the provider's own
reading and the mapping, per generation, for whichever tree is first on ``PYTHONPATH``
(``tests.perf.worker_cpu --pure`` runs it for two trees side by side; alone it prints one
line).

    PYTHONPATH=<tree> .venv/bin/python tests/perf/mapping_cost.py [--tokens 200] [--calls 200]

The input is made once: what each SDK yields for a text answer of ``--tokens`` deltas
(Anthropic's raw stream events, OpenAI's Chat Completions chunks and Responses events,
built by the SDKs' own ``construct_type`` from what the fake servers send), and an
agent's AI SDK text chunks. Each provider module's event generator is fed them (older
trees name it ``_raw_events``; before the neutral vocabulary, ``worker.providers.parts``,
they yielded Anthropic's raw events), then the mapping.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

NEUTRAL = importlib.util.find_spec("worker.providers.parts") is not None


def _frames(script: list[Any]) -> list[dict[str, Any]]:
    """The data of a fake server's script's frames (not its delays, gates, errors)."""
    from tests.support.anthropic_scripts import Frame

    return [s.data for s in script if isinstance(s, Frame) and "[DONE]" not in s.data]


def _words(tokens: int) -> list[str]:
    return [f"w{i} " for i in range(tokens)]


def anthropic_input(tokens: int) -> list[Any]:
    from anthropic._models import construct_type
    from anthropic.types import RawMessageStreamEvent

    from tests.support.anthropic_scripts import message, text

    datas = _frames(message([text(_words(tokens))]))
    return [construct_type(type_=RawMessageStreamEvent, value=d) for d in datas]


def openai_input(tokens: int) -> list[Any]:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk

    from tests.support import fake_openai

    datas = _frames(fake_openai.reply(text=_words(tokens)))
    filled = [{**d, "id": "chatcmpl-1", "model": "gpt-x"} for d in datas]
    return [construct_type(type_=ChatCompletionChunk, value=d) for d in filled]


def responses_input(tokens: int) -> list[Any]:
    from openai._models import construct_type
    from openai.types.responses import ResponseStreamEvent

    from tests.support import fake_openai_responses as fr

    stored = fr.StoredResponse("resp_1", "gpt-x", [])
    datas = _frames(fr.reply(text=_words(tokens)))
    filled = [{**stored.filled(d), "sequence_number": n} for n, d in enumerate(datas, 1)]
    return [construct_type(type_=ResponseStreamEvent, value=d) for d in filled]


def agent_input(tokens: int) -> list[Any]:
    deltas = [{"type": "text-delta", "id": "a", "delta": w} for w in _words(tokens)]
    return [{"type": "text-start", "id": "a"}, *deltas, {"type": "text-end", "id": "a"}]


async def _stream(given: list[Any]) -> AsyncIterator[Any]:
    for item in given:
        yield item


def _generator(module: str) -> Callable[..., AsyncIterator[Any]]:
    found = importlib.import_module(module)
    return getattr(found, "_events", None) or found._raw_events  # type: ignore[no-any-return]


async def provider_events(module: str, given: list[Any]) -> AsyncIterator[Any]:
    if module.endswith("openai_responses"):
        from worker.providers.openai_responses_stream import ResponsesTranslator

        events = _generator(module)(_stream(given), ResponsesTranslator(), [])
    else:
        events = _generator(module)(_stream(given))
    async for event in events:
        yield event


async def agent_events(given: list[Any]) -> AsyncIterator[Any]:
    from worker.agents.chunks import StepChunks

    if NEUTRAL:
        from worker.providers.parts import MessageStart

        yield MessageStart("agent")
    else:
        yield {"type": "message_start", "message": {"model": "agent", "usage": {}}}
    chunks = StepChunks(frozenset())
    for chunk in given:
        for event in chunks.feed(chunk):
            yield event


PATHS: dict[str, tuple[Callable[[int], list[Any]], str]] = {
    "anthropic": (anthropic_input, "worker.providers.anthropic"),
    "openai": (openai_input, "worker.providers.openai"),
    "responses": (responses_input, "worker.providers.openai_responses"),
    "agent": (agent_input, ""),
}


async def one_call(path: str, given: list[Any]) -> int:
    """Map one call of ``path``; the number of contract events."""
    from worker.mapping import EventMapper

    mapper = EventMapper("m")
    module = PATHS[path][1]
    events = provider_events(module, given) if module else agent_events(given)
    out = 0
    async for event in events:
        out += len(mapper.feed(event))
    return out


async def measure(tokens: int, calls: int) -> dict[str, float]:
    """Microseconds of CPU per call of each path (the best of three runs)."""
    found = {}
    for path, (make, _) in PATHS.items():
        given = make(tokens)
        assert await one_call(path, given) >= tokens  # every delta came out
        runs = []
        for _ in range(3):
            started = time.process_time()
            for _ in range(calls):
                await one_call(path, given)
            runs.append((time.process_time() - started) / calls * 1e6)
        found[path] = min(runs)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.tokens, args.calls))))


if __name__ == "__main__":
    main()
