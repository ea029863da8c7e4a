"""The chaos run's short form (``make chaos`` runs it for minutes): agent generations with
tools while workers are killed (``kill -9``) and stopped (SIGTERM) at random. Every answer
completes or ends with a reason, every viewer gets every event once, and the AI SDK's own
reader reads each completed answer once and whole (``tests/support/chaos.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.chaos import problems
from tests.support import long_form
from tests.support.chaos import Chaos, agent_script, ai_sdk_missing, expected_answer, step_text


def test_the_agent_model_continues_a_cut_step_repeating_two_words() -> None:
    """The harness's own model: after a partial assistant turn and a user turn, it goes on
    from the partial, two words back; after tool results, it answers the next step."""
    cut = step_text(1, 3)[:40]
    body = {
        "messages": [
            {"role": "user", "content": "chaos 7: 3 steps"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "add"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            {"role": "assistant", "content": [{"type": "text", "text": cut}]},
            {"role": "user", "content": "Continue exactly where you stopped."},
        ]
    }
    deltas = [
        s.data["delta"]["text"]
        for s in agent_script(body)
        if getattr(s, "event", "") == "content_block_delta" and "text" in s.data["delta"]
    ]
    resumed = "".join(deltas)
    assert step_text(1, 3).endswith(resumed)
    assert 0 < len(step_text(1, 3)) - len(resumed) < len(cut)  # it repeats a little
    assert expected_answer(3).startswith(step_text(0, 3) + step_text(1, 3))


ACTS = long_form.budget(4, 6)
"""The monkey's acts, kill -9 and SIGTERM in turn (six at the full budget, ``make
test-long``); each starts a worker."""


@long_form.mark
@pytest.mark.anyio
# About 40 s alone at the full budget; each act a worker start, slower with three other
# test processes beside.
@pytest.mark.timeout(300)
async def test_answers_survive_workers_killed_and_stopped_at_random(tmp_path: Path) -> None:
    assert not (missing := ai_sdk_missing()), missing
    generations = long_form.budget(8, 12)
    run = Chaos(
        tmp_path,
        seconds=0,
        generations=generations,
        workers=3,
        steps=3,
        pause=(1.0, 2.5),
        acts=ACTS,
    )
    figures = await run.run()
    print("\n".join(figures.lines()))
    assert (figures.killed, figures.stopped) == (ACTS // 2, ACTS // 2), figures.lines()
    assert not problems(figures), problems(figures)[:5]
    assert figures.completed + sum(figures.failed.values()) == figures.generations
