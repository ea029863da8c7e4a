"""The pure parts of a takeover that continues a cut answer: the seam trim, the events of
the continuation joined to the open part, the plan of a cut step (what closes its parts,
how it goes on), the request the model is sent, and the folds of a restarted step."""

from __future__ import annotations

from typing import Any

from broadcaster.chat.ui_message import UIMessageFold
from broadcaster.generations.content import fold
from worker.continuation import (
    CONTINUE_PROMPT,
    CUT_TOOL,
    continuation_request,
    partial_turn,
    plan_cut,
    plan_restart,
)
from worker.providers.openai_request import chat_params
from worker.splice import Seam, SeamTrim
from worker.transcript import plan_resume, split_steps

Event = dict[str, Any]


def trimmed(partial: str, deltas: list[str]) -> str:
    trim = SeamTrim(partial)
    return "".join(trim.feed(d) for d in deltas) + trim.end()


# ---- the seam trim


def test_the_repeated_last_words_are_dropped_across_deltas() -> None:
    partial = "The quick brown fox jum"
    assert trimmed(partial, ["brown", " fox", " jumps", " over", " the dog."]) == "ps over the dog."
    assert trimmed(partial, ["b", "r", "own fox jumps over"]) == "ps over"


def test_a_repeat_after_a_trailing_space_or_with_a_leading_one() -> None:
    assert trimmed("I like ", ["like cheese", " a lot"]) == "cheese a lot"
    assert trimmed("I like", [" like cheese"]) == " cheese"
    assert trimmed("I like ", [" cheese"]) == "cheese"  # no double space at the seam


def test_no_repeat_leaves_the_continuation_as_it_is() -> None:
    assert trimmed("The quick brown fox jum", ["ps over"]) == "ps over"
    assert trimmed("Hello", [" world"]) == " world"
    # a letter that happens to end the partial text is no repeat: matched from a word start
    assert trimmed("I saw a cat", ["t food"]) == "t food"


def test_nothing_is_shown_while_the_continuation_may_still_be_a_repeat() -> None:
    trim = SeamTrim("one two three four")
    assert trim.feed("thr") == "" and trim.feed("ee fo") == ""
    assert trim.feed("ur five") == " five"
    assert trim.feed(" six") == " six"  # decided: the rest passes at once
    assert trim.dropped == "three four"


def test_the_window_bounds_how_far_back_a_repeat_is_looked_for() -> None:
    words = " ".join(f"w{i}" for i in range(100))
    trim = SeamTrim(words, window=20)
    assert trim.feed("w0 w1 w2") == "w0 w1 w2"  # far back: not a repeat, shown
    trim = SeamTrim(words, window=20)
    assert trim.feed("w98 w99 next") == " next"


def test_a_block_that_ends_while_held_is_shown_trimmed() -> None:
    trim = SeamTrim("alpha beta gamma")
    assert trim.feed("gam") == ""
    assert trim.end() == ""  # only (the start of) a repeat
    trim = SeamTrim("alpha beta gamma")
    assert trim.feed("beta gamma") == "" and trim.end() == ""
    trim = SeamTrim("alpha beta gamma")
    assert trim.feed(" ") == "" and trim.end() == " "  # whitespace alone is shown at the end


# ---- the continuation's events, joined to the open part


def test_the_continuation_streams_into_the_open_part() -> None:
    seam = Seam("t0", SeamTrim("It is 5 and"))
    events = [
        {"type": "start-step"},
        {"type": "text-start", "id": "a2-t0"},
        {"type": "text-delta", "id": "a2-t0", "delta": "5 and"},
        {"type": "text-delta", "id": "a2-t0", "delta": " more."},
        {"type": "text-end", "id": "a2-t0"},
    ]
    assert seam.apply(events) == [
        {"type": "text-delta", "id": "t0", "delta": " more."},
        {"type": "text-end", "id": "t0"},
    ]


def test_with_no_open_part_the_first_text_block_is_a_new_part_trimmed() -> None:
    seam = Seam(None, SeamTrim("done. Then"))
    out = seam.apply(
        [
            {"type": "reasoning-start", "id": "a2-r0"},
            {"type": "text-start", "id": "a2-t1"},
            {"type": "text-delta", "id": "a2-t1", "delta": "Then we"},
            {"type": "text-end", "id": "a2-t1"},
            {"type": "text-start", "id": "a2-t2"},
            {"type": "text-delta", "id": "a2-t2", "delta": "Then"},
        ]
    )
    assert out == [
        {"type": "reasoning-start", "id": "a2-r0"},
        {"type": "text-start", "id": "a2-t1"},
        {"type": "text-delta", "id": "a2-t1", "delta": " we"},
        {"type": "text-end", "id": "a2-t1"},
        {"type": "text-start", "id": "a2-t2"},  # only the first block is at the seam
        {"type": "text-delta", "id": "a2-t2", "delta": "Then"},
    ]


# ---- the plan of a cut step

SIGNED = {"anthropic": {"signature": "sig"}}
THOUGHT = [
    {"type": "reasoning-start", "id": "r0"},
    {"type": "reasoning-delta", "id": "r0", "delta": "hmm"},
    {"type": "reasoning-delta", "id": "r0", "delta": "", "providerMetadata": SIGNED},
]
TEXT = [
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "The answer is"},
]
CUT_INPUT = [
    {"type": "tool-input-start", "toolCallId": "u1", "toolName": "add"},
    {"type": "tool-input-delta", "toolCallId": "u1", "inputTextDelta": '{"a": 1'},
]


def test_cut_mid_text_continues_the_open_part_with_the_signed_thinking() -> None:
    events = [*THOUGHT, *TEXT]
    cut = plan_cut(events)
    assert cut.mode == "continue" and cut.open_text == "t1"
    assert cut.partial_text == "The answer is"
    assert cut.closing == [{"type": "reasoning-end", "id": "r0"}]  # whole, its end held back
    assert partial_turn(events, cut.dropped) == [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "The answer is"},
    ]


def test_cut_mid_thinking_alone_restarts_the_step() -> None:
    events = THOUGHT[:2]  # no signature yet
    cut = plan_cut(events)
    assert cut.mode == "restart"
    assert cut.closing == [{"type": "reasoning-end", "id": "r0"}, {"type": "finish-step"}]
    assert partial_turn(events, cut.dropped) == []


def test_cut_mid_thinking_after_text_drops_the_thinking_and_continues() -> None:
    events = [*TEXT, {"type": "text-end", "id": "t1"}, *THOUGHT[:2]]
    cut = plan_cut(events)
    assert cut.mode == "continue" and cut.open_text is None
    assert partial_turn(events, cut.dropped) == [{"type": "text", "text": "The answer is"}]


def test_cut_mid_tool_input_closes_the_call_and_never_sends_it() -> None:
    events = [*TEXT, {"type": "text-end", "id": "t1"}, *CUT_INPUT]
    cut = plan_cut(events)
    assert cut.mode == "continue"
    assert cut.closing == [
        {
            "type": "tool-input-error",
            "toolCallId": "u1",
            "toolName": "add",
            "input": {},
            "errorText": CUT_TOOL,
        }
    ]
    assert partial_turn(events, cut.dropped) == [{"type": "text", "text": "The answer is"}]
    # once closed, the call is no part of the folded turn (it never gets a result)
    assert fold([*events, *cut.closing]) == [{"type": "text", "text": "The answer is"}]
    assert plan_cut(CUT_INPUT).mode == "restart"  # nothing else shown: nothing to go on from


def test_a_whole_tool_call_before_the_cut_runs_as_a_whole_step() -> None:
    whole = [
        *CUT_INPUT,
        {"type": "tool-input-available", "toolCallId": "u1", "toolName": "add", "input": {}},
    ]
    cut = plan_cut([*TEXT, *whole])
    assert cut.mode == "tools"
    assert cut.closing == [{"type": "text-end", "id": "t1"}]


def test_nothing_shown_in_the_step_goes_on_in_it_without_a_partial_turn() -> None:
    cut = plan_cut([])
    assert cut.mode == "continue" and cut.closing == [] and cut.open_text is None


def test_restart_closes_the_open_text_too() -> None:
    cut = plan_restart([*THOUGHT, *TEXT])
    assert cut.mode == "restart"
    assert cut.closing == [
        {"type": "reasoning-end", "id": "r0"},
        {"type": "text-end", "id": "t1"},
        {"type": "finish-step"},
    ]


# ---- the request the model is sent


def test_the_continuation_request_ends_with_the_synthetic_user_turn() -> None:
    request = {"prompt": "what is it?", "max_tokens": 50, "model": "m"}
    turn = [{"type": "text", "text": "The answer is"}]
    sent = continuation_request(request, turn)
    assert sent["messages"] == [
        {"role": "user", "content": "what is it?"},
        {"role": "assistant", "content": turn},
        {"role": "user", "content": [{"type": "text", "text": CONTINUE_PROMPT}]},
    ]
    assert continuation_request(request, []) is request


def test_openai_continues_the_final_message_where_the_server_offers_it() -> None:
    request = {"prompt": "q", "max_tokens": 50, "model": "m", "top_k": 5}
    sent = continuation_request(request, [{"type": "text", "text": "The answer is"}])
    plain = chat_params(sent)
    assert plain["messages"][-1] == {"role": "user", "content": CONTINUE_PROMPT}
    assert "continue_final_message" not in plain.get("extra_body", {})
    in_place = chat_params(sent, continue_final_message=True)
    assert in_place["messages"][-1] == {"role": "assistant", "content": "The answer is"}
    assert in_place["extra_body"] == {
        "top_k": 5,
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    assert "extra_body" not in chat_params({**request, "top_k": None}, continue_final_message=True)


# ---- a restarted step in the folds and the next step's messages

NOTICE = {"type": "data-continued", "transient": True, "data": {"attempt": 2, "mode": "restart"}}
RESTARTED = [
    {"type": "start", "messageId": "m"},
    {"type": "start-step"},
    *THOUGHT[:2],
    NOTICE,
    {"type": "reasoning-end", "id": "r0"},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "a2-t0"},
    {"type": "text-delta", "id": "a2-t0", "delta": "Whole."},
    {"type": "text-end", "id": "a2-t0"},
]


def test_a_restarted_step_is_not_in_the_folded_answer_nor_in_the_steps() -> None:
    assert fold(RESTARTED) == [{"type": "text", "text": "Whole."}]
    ui = UIMessageFold({"id": "m", "role": "assistant", "parts": []})
    for event in [*RESTARTED, {"type": "finish-step"}, {"type": "finish"}]:
        ui.feed(event)
    assert ui.parts == [
        {"type": "step-start"},
        {"type": "text", "text": "Whole.", "state": "done"},
    ]
    steps = split_steps(RESTARTED)
    assert len(steps) == 1 and steps[0].turns()[0]["content"] == [
        {"type": "text", "text": "Whole."}
    ]
    # steps_done counts every start-step of the stream, the restarted one too
    assert plan_resume(RESTARTED, steps_done=2).cut is None


def test_a_continued_step_folds_to_one_text() -> None:
    continued = [
        {"type": "start", "messageId": "m"},
        {"type": "start-step"},
        *TEXT,
        {**NOTICE, "data": {"attempt": 2, "mode": "continue"}},
        {"type": "text-delta", "id": "t1", "delta": " 42."},
        {"type": "text-end", "id": "t1"},
    ]
    assert fold(continued) == [{"type": "text", "text": "The answer is 42."}]
    ui = UIMessageFold({"id": "m", "role": "assistant", "parts": []})
    for event in continued:
        ui.feed(event)
    assert ui.parts[1] == {"type": "text", "text": "The answer is 42.", "state": "done"}
