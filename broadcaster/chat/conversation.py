"""A chat's turns, as ``POST /v1/chat`` takes them (``submit``, the route's one call): a
submit starts the chat's next answer, or, while an answer runs, waits for its turn
(``enqueue``), steers the running answer (``steer``) or interrupts it; a submit that
carries decisions on the tool calls the answer waits on records them. Also the check
that a run id names one of the chat's answers.

What a caller may not do raises ``Refusal`` (the routes answer it 409); a request that
cannot become a generation request, ``RequestInvalid`` (422); what a generation's start
refuses raises ``generations.start.NotStarted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from broadcaster.chat import binding
from broadcaster.chat.approvals import Approvals, Expired, Mismatch, NoSuchApproval, WaitEnded
from broadcaster.chat.convert import (
    ChatBody,
    approval_responses,
    response_message_id,
    to_request,
)
from broadcaster.chat.messages import so_far
from broadcaster.chat.placing import Placed
from broadcaster.chat.records import ChatRecord, Chats, NewTurn, title_of
from broadcaster.core import tracing
from broadcaster.core.eventlog import UNCLAIMED, AppendRefused, EventLog
from broadcaster.core.logconfig import current_stream
from broadcaster.generations.jobs import JobQueue
from broadcaster.generations.lifecycle import Generations
from broadcaster.generations.request import Defaults
from broadcaster.generations.start import Admission, Admitted, admit, create, start

STEERED = "data-steered"


class Refusal(Exception):
    """A submit the chat refuses as it stands; ``message`` says why."""

    def __init__(self, message: str, generation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.generation = generation
        """The generation in the way, when the answer names it."""


class ChatBusy(Refusal):
    """The chat's answer runs (or another submit started one meanwhile)."""


class QueueFull(Refusal):
    """The chat's queue of waiting messages is full."""


class DecisionTooLate(Refusal):
    """The answer waiting for a decision has ended."""


class NothingToDecide(Refusal):
    """The chat's answer waits on none of the approvals a submit decides."""


class ApprovalExpired(Refusal):
    """A decision came after its approval's deadline."""


class ApprovalMismatch(Refusal):
    """A decision names another tool call, or another input, than its approval's."""


@dataclass(frozen=True, slots=True)
class Stores:
    """What a submit reads and writes: the chats, the generations (and their log), the
    job queue, the approvals."""

    chats: Chats
    generations: Generations
    jobs: JobQueue
    approvals: Approvals

    @property
    def log(self) -> EventLog:
        return self.generations.log


@dataclass(frozen=True, slots=True)
class Rules:
    """What the deployment says about a submit: the generation request's defaults, what
    admits a generation, the ``multitask`` of a submit that names none, and how many
    messages may wait."""

    defaults: Defaults
    admission: Admission
    multitask: str
    queue_max: int


@dataclass(frozen=True, slots=True)
class Answer:
    """What answers a submit: ``generation``'s stream after seq ``base``; for a steer,
    the ``steered`` event alone (the running answer, which every tab follows, shows the
    message)."""

    generation: str
    base: int = 0
    steered: dict[str, Any] | None = None


async def submit(
    stores: Stores,
    rules: Rules,
    chat: ChatBody,
    messages: list[dict[str, Any]],
    *,
    new_id: Callable[[], str],
    room: Callable[[], None],
    job: dict[str, Any] | None = None,
    owner: str = "",
    placed: Placed | None = None,
) -> Answer:
    """A submit's turn, whole: its decisions recorded, or its request admitted and its
    message started, queued, steered in, or started after interrupting the running answer.
    ``room()`` raises when the front-end has no room for the answer's stream (asked once
    admitted, before anything is stored); ``job``: the request, if already converted;
    ``owner``: who asks; ``placed``: where the message goes in the kept history (None: the
    history is the messages as sent)."""
    responses = approval_responses(chat)
    if responses:
        parts = [p.model_dump() for p in chat.messages[-1].parts]
        waited, base = await decide(
            stores.chats, stores.approvals, chat.id, responses, binding.bindings(parts)
        )
        current_stream.set(waited)
        return Answer(waited, base)
    if job is None:
        job = to_request(chat, rules.defaults)
    return await _take_message(
        stores, rules, chat, messages, job, new_id=new_id, room=room, owner=owner, placed=placed
    )


async def _take_message(
    stores: Stores,
    rules: Rules,
    chat: ChatBody,
    messages: list[dict[str, Any]],
    job: dict[str, Any],
    *,
    new_id: Callable[[], str],
    room: Callable[[], None],
    owner: str,
    placed: Placed | None,
) -> Answer:
    """A submit's message, its request admitted: started, queued or steered in, as the
    running answer (if any) and the submit's ``multitask`` say."""
    admitted = await admit(stores.jobs, rules.admission, job["provider"])
    generation = new_id()
    room()
    # The record's head alone: a busy chat is refused without reading its history, which
    # ``kept`` reads only when the messages sent leave out the chat's last answer.
    record = await stores.chats.get(chat.id, whole=False)
    way = await make_way(stores.log, chat, record, rules.multitask)
    if way == "enqueue":
        limit = rules.queue_max
        await enqueue(
            stores.chats, stores.generations, chat, job, generation=generation, limit=limit
        )
        return Answer(generation)
    if way == "steer" and record is not None:
        event, base = await steer(stores.chats, stores.log, chat, record)
        return Answer(record.generation, base, event)
    await start_answer(
        stores.chats,
        stores.generations,
        stores.jobs,
        rules.admission,
        admitted,
        chat=chat,
        messages=messages,
        record=record,
        job=job,
        generation=generation,
        caller=owner,
        placed=placed,
    )
    return Answer(generation)


async def decide(
    chats: Chats,
    approvals: Approvals,
    chat_id: str,
    responses: list[tuple[str, bool, str | None]],
    bound: dict[str, tuple[str | None, str | None]] | None = None,
) -> tuple[str, int]:
    """Record the decisions a submit carries (``approval-responded`` tool parts): the
    first decision on an approval wins (a tab that lost sees what the winner decided).
    ``bound``: the tool call and input hash each decision names (``binding.bindings``).
    The generation that waited, and the seq its answer goes on after."""
    record = await chats.get(chat_id, whole=False)
    generation = record.generation if record else ""
    decided = []
    for approval_id, approved, reason in responses if record else []:
        try:
            call, hashed = (bound or {}).get(approval_id, (None, None))
            decided.append(
                await approvals.decide(
                    generation,
                    approval_id,
                    approved,
                    reason,
                    tool_call_id=call,
                    input_hash=hashed,
                )
            )
        except NoSuchApproval:
            continue
        except Expired:
            raise ApprovalExpired(
                f"chat {chat_id!r}: approval {approval_id!r} expired before this decision"
            ) from None
        except Mismatch as exc:
            raise ApprovalMismatch(f"chat {chat_id!r}: {exc}") from None
        except WaitEnded:
            raise DecisionTooLate(
                f"chat {chat_id!r}: the answer waiting for this decision has ended"
            ) from None
    if record is None or not decided:
        raise NothingToDecide(
            f"chat {chat_id!r}: its answer waits on none of the approvals this request decides"
        )
    return generation, max(d.wait_seq for d in decided)


async def make_way(
    event_log: EventLog, chat: ChatBody, record: ChatRecord | None, default: str
) -> str | None:
    """A chat runs one generation at a time. While one runs (or waits for a person), the
    submit's ``multitask`` (else the deployment's) decides: ``reject`` (``ChatBusy``),
    ``interrupt`` (the running one ends with ``abort``, reason ``interrupted``; a
    regenerate always does this, reason ``cancelled``), or ``enqueue``/``steer``,
    returned for the caller. None: go ahead."""
    if record is None:
        return None
    info = await event_log.info(record.generation)
    if info is None or info.ended:
        return None
    regenerate = chat.trigger == "regenerate-message"
    strategy = "interrupt" if regenerate else (chat.multitask or default)
    if strategy in ("enqueue", "steer") and chat.messages[-1].role == "user":
        return strategy
    if strategy != "interrupt":
        meta = await event_log.fields(record.generation, "status")
        doing = (
            "waits for a tool approval (POST /v1/chat/{id}/approvals)"
            if meta.get("status") == "waiting"
            else "is generating"
        ).format(id=chat.id)
        raise ChatBusy(
            f"chat {chat.id!r} {doing}; stop it (POST /v1/chat/{chat.id}/stop), "
            "regenerate, or send with multitask",
            record.generation,
        )
    reason = "cancelled" if regenerate else "interrupted"
    with contextlib.suppress(AppendRefused):  # ended meanwhile: nothing left to cancel
        await event_log.append(
            record.generation,
            [{"type": "abort", "reason": reason}],
            kind="generation",
            meta={"error": ""},
        )
    return None


async def enqueue(
    chats: Chats,
    generations: Generations,
    chat: ChatBody,
    job: dict[str, Any],
    *,
    generation: str,
    limit: int,
) -> None:
    """``enqueue``: the message's generation ``generation`` is made now (its stream is the
    answer: a transient ``data-queued`` first, then nothing until the pump starts it);
    ``QueueFull`` when ``limit`` messages already wait."""
    job["ui_message_id"] = generation
    job["chat_id"] = chat.id
    await create(generations, generation, job)
    entry = {
        "generation": generation,
        "message": chat.messages[-1].model_dump(),
        "fields": fields(chat),
        "traceparent": tracing.current(),  # its answer, started later, continues this trace
    }
    position = await chats.enqueue(chat.id, entry, limit)
    if not position:
        await generations.discard(generation)
        raise QueueFull(f"chat {chat.id!r} already has {limit} messages waiting")
    notice = {"type": "data-queued", "data": {"position": position}, "transient": True}
    await generations.log.append(generation, [notice], kind="generation", owner=UNCLAIMED)


def fields(chat: ChatBody) -> dict[str, Any]:
    """The body's generation fields, for a message that starts later."""
    return dict(chat.options)


async def steer(
    chats: Chats, event_log: EventLog, chat: ChatBody, record: ChatRecord
) -> tuple[dict[str, Any], int]:
    """``steer``: the message goes to the running generation's next step (the running
    answer, which every tab follows, shows it as a ``data-steer`` part where it entered,
    and goes on). The transient ``data-steered`` event that answers the submit, and the
    running generation's last seq."""
    last = chat.messages[-1]
    text = "".join(
        str((p.model_extra or {}).get("text", "")) for p in last.parts if p.type == "text"
    )
    message = {"id": last.id, "text": text, "message": last.model_dump(), "fields": fields(chat)}
    await chats.steer(chat.id, record.generation, message)
    info = await event_log.info(record.generation)
    notice = {"generationId": record.generation, "messageId": last.id}
    event = {"type": STEERED, "data": notice, "transient": True}
    return event, info.last_seq if info else 0


async def start_answer(
    chats: Chats,
    generations: Generations,
    jobs: JobQueue,
    admission: Admission,
    admitted: Admitted,
    *,
    chat: ChatBody,
    messages: list[dict[str, Any]],
    record: ChatRecord | None,
    job: dict[str, Any],
    generation: str,
    caller: str = "",
    placed: Placed | None = None,
) -> None:
    """Start ``generation`` as the chat's next answer (its UI ``messages`` as sent, after
    the chat so far if they leave its last answer out: ``kept``), if the chat's latest is
    still ``record``'s; ``ChatBusy`` when another submit came first. ``caller`` owns a
    chat this makes. ``placed``: only the messages it pushes after those kept are
    written, if the chat is still as it was read."""
    job["ui_message_id"] = response_message_id(chat.messages, generation)
    job["chat_id"] = chat.id  # a run id names it: its stream checks it is this chat's
    owner = record.owner if record else caller
    seen = record.generation if record else None
    if placed is None:
        messages = await kept(chats, generations.log, chat, record, messages)
        new = NewTurn(generation, job["ui_message_id"], messages, owner, title_of(messages))
    else:
        whole, seen = placed.messages, placed.seen
        starter = next((m for m in reversed(whole) if m.get("role") == "user"), None)
        new = NewTurn(generation, job["ui_message_id"], placed.push, owner, title_of(whole))
        new = dataclasses.replace(new, keep=placed.keep, starter=starter)
    swap = partial(chats.submit, chat.id, seen, new)
    if not await start(generations, jobs, admission, generation, job, admitted=admitted, swap=swap):
        raise ChatBusy(f"another request started chat {chat.id!r} meanwhile")


KEPT_MAX_BYTES = 4 * 1024 * 1024
"""The most a chat's record keeps of earlier turns that a submit left out (its JSON); the
oldest go first beyond it. The messages sent are always kept whole."""


async def kept(
    chats: Chats,
    event_log: EventLog,
    chat: ChatBody,
    record: ChatRecord | None,
    messages: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """The UI messages the chat's record keeps for its next answer. Those sent, when they
    hold the chat's last answer (the AI SDK sends the whole chat), or when they replace
    it (``regenerate-message``). Otherwise (a submit sent again after its answer ended,
    by a client that never saw that answer) the chat so far comes first, its last answer
    folded from its events, then the sent messages it does not hold already: the record
    keeps every turn's answer, and ``GET /v1/chat/{id}/messages`` shows both."""
    if record is None or chat.trigger == "regenerate-message":
        return messages
    if record.message_id in {m.get("id") for m in messages}:
        return messages
    whole = await chats.get(chat.id)
    if whole is None or whole.generation != record.generation:
        raise ChatBusy(f"another request started chat {chat.id!r} meanwhile")
    before = await so_far(event_log, whole)
    if not before:
        return messages
    known = {m.get("id") for m in before}
    added = [m for m in messages if m.get("id") not in known]
    sizes = [len(json.dumps(m, ensure_ascii=False)) for m in before]
    while before and sum(sizes) > KEPT_MAX_BYTES:
        before.pop(0)
        sizes.pop(0)
    return [*before, *added]


async def run_meta(event_log: EventLog, chat_id: str, generation: str) -> dict[str, str] | None:
    """The metadata of ``generation`` if it is one of chat ``chat_id``'s answers (a run
    id names both), else None."""
    meta = await event_log.meta(generation)
    request_json = json.loads(meta.get("request") or "{}") if meta else {}
    if meta is None or request_json.get("chat_id") != chat_id:
        return None
    return meta
