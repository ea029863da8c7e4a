"""A generation's usage in its shapes (the AI SDK's ``LanguageModelUsage``, the API's
snake_case), checked against the installed ``ai`` package's own type; a user's budget."""

from __future__ import annotations

import re

import pytest

from broadcaster.core.events import USAGE_KINDS, Usage
from broadcaster.generations.ledger import _models, day_of, seconds_to_next_day
from broadcaster.http.access import Caller
from broadcaster.http.budgets import budget_of
from tests.support.procs import ROOT

AI_TYPES = ROOT / "tests/clients/aisdk/node_modules/ai/dist/index.d.ts"


def _type_fields(text: str, name: str) -> dict[str, set[str]]:
    """The fields of TypeScript type ``name`` and of its nested object fields, read from a
    declaration file (deprecated fields left out)."""
    start = text.index(f"type {name} = {{")
    depth, i = 0, text.index("{", start)
    body_start = i
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            break
        i += 1
    body = re.sub(
        r"/\*\*.*?\*/",
        lambda m: "@deprecated" if "@deprecated" in m[0] else "",
        text[body_start + 1 : i],
        flags=re.S,
    )
    fields: dict[str, set[str]] = {"": set()}
    nested = ""
    deprecated = False
    for raw in body.splitlines():
        line = raw.strip()
        if line == "@deprecated":
            deprecated = True
            continue
        found = re.match(r"(\w+)\??:\s*(\{)?", line)
        if found and not deprecated:
            (fields[nested] if nested else fields[""]).add(found[1])
            if found[2]:
                nested = found[1]
                fields[nested] = set()
        if line.startswith("};") or line == "}":
            nested = ""
        deprecated = False
    return fields


def test_the_finish_usage_is_the_ai_sdk_language_model_usage() -> None:
    if not AI_TYPES.exists():
        pytest.fail(f"the ai package is not installed at {AI_TYPES}: run make (npm ci)")
    fields = _type_fields(AI_TYPES.read_text(), "LanguageModelUsage")
    fields[""].discard("raw")  # the provider's own usage, optional: not carried
    shown = Usage(10, 5, 3, 2, 1).ai_sdk()
    assert set(shown) == fields[""]
    assert set(shown["inputTokenDetails"]) == fields["inputTokenDetails"]
    assert set(shown["outputTokenDetails"]) == fields["outputTokenDetails"]


def test_input_is_all_input() -> None:
    usage = Usage(input=100, output=20, cache_read=70, cache_write=20, reasoning=5)
    shown = usage.ai_sdk()
    assert shown["inputTokens"] == 100 and shown["totalTokens"] == 120
    assert shown["inputTokenDetails"] == {
        "noCacheTokens": 10,
        "cacheReadTokens": 70,
        "cacheWriteTokens": 20,
    }
    assert shown["outputTokenDetails"] == {"textTokens": 15, "reasoningTokens": 5}
    assert Usage.from_ai_sdk(shown) == usage
    assert Usage.from_snake(usage.snake()) == usage
    assert list(usage.snake()) == list(USAGE_KINDS)


def test_sums_and_bad_counts() -> None:
    assert Usage(1, 2, 3, 4, 5) + Usage(10, 20, 30, 40, 50) == Usage(11, 22, 33, 44, 55)
    garbage = {"input_tokens": -3, "output_tokens": True, "cache_read_tokens": "9"}
    assert Usage.from_snake(garbage | {"reasoning_tokens": float("inf")}) == Usage()
    assert Usage.from_snake(None) == Usage() == Usage.from_ai_sdk([1])
    old = {"inputTokens": 9, "cachedInputTokens": 4, "reasoningTokens": 2}
    assert Usage.from_ai_sdk(old) == Usage(input=9, cache_read=4, reasoning=2)


@pytest.mark.parametrize(
    ("setting", "claim", "budget"),
    [(0, None, None), (1000, None, 1000), (1000, 300, 300), (1000, 5000, 1000), (0, 40, 40)],
)
def test_a_claim_lowers_the_budget_and_never_raises_it(
    setting: int, claim: int | None, budget: int | None
) -> None:
    assert budget_of(Caller("u", claim), setting) == budget


def test_days_and_their_end() -> None:
    assert day_of(86400 * 3 - 1) == "1970-01-03"
    assert seconds_to_next_day(86400 * 3 - 1) == 1
    assert seconds_to_next_day(86400 * 3) == 86400


def test_a_day_read_back_by_model() -> None:
    fields = {
        b"total": b"40",
        b"anthropic\tclaude\tinput_tokens": b"30",
        b"anthropic\tclaude\toutput_tokens": b"10",
        b"anthropic\tclaude\tgenerations": b"2",
        b"openai\tgpt\tcache_read_tokens": b"0",
    }
    [claude, gpt] = _models(fields)
    assert (claude.provider, claude.model, claude.generations) == ("anthropic", "claude", 2)
    assert claude.usage == Usage(input=30, output=10)
    assert claude.body()["total_tokens"] == 40 and gpt.model == "gpt"


def test_the_periodic_sweep_reads_a_few_groups_and_every_group_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle deployment's sweep reads ``SWEEP_GROUPS`` sets a round, the same on every
    front-end at the same time, and every set within ``SLOT_GROUPS / SWEEP_GROUPS``
    rounds."""
    from broadcaster.core import keys
    from broadcaster.generations import settling

    settler = settling.Settler(None, lambda _: None, sweep_every=60.0)  # type: ignore[arg-type]
    seen: list[str] = []
    rounds = keys.SLOT_GROUPS // settling.SWEEP_GROUPS
    for at in range(rounds):
        monkeypatch.setattr(settling.time, "time", lambda at=at: 1_000_020.0 + 60.0 * at)
        turn = settler._turn()
        assert len(turn) == settling.SWEEP_GROUPS
        assert settler._turn() == turn  # another front-end in the same minute: the same
        seen += turn
    assert sorted(seen) == sorted(keys.unsettled_keys())
