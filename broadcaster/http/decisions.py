"""A decision on a tool call an answer waits on (``POST .../approvals``), recorded
(``chat/approvals.py``: the first decision wins) and answered: the decision in force, or
why there is none, with the project's error body."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from broadcaster.chat.approvals import (
    Approvals,
    Decision,
    Expired,
    Mismatch,
    NoSuchApproval,
    WaitEnded,
    parse_decision,
)
from broadcaster.core.logconfig import current_stream
from broadcaster.http.bodies import read_json
from broadcaster.http.errors import ApiError
from broadcaster.http.settings import Settings
from broadcaster.http.submits import parsed


async def decided(
    request: Request,
    approvals: Approvals,
    settings: Settings,
    generation: str | None,
    chat_id: str = "",
) -> JSONResponse:
    """The body's decision on one of ``generation``'s approvals, recorded and answered
    (None: chat ``chat_id`` has no answer, 404 once the body is checked)."""
    body = parsed(parse_decision, await read_json(request, settings.max_body_bytes))
    if generation is None:
        raise ApiError(404, "not_found", f"no chat {chat_id!r} (unknown or expired)")
    current_stream.set(generation)
    try:
        decision: Decision = await approvals.decide(
            generation,
            body.approvalId,
            body.approved,
            body.reason,
            tool_call_id=body.toolCallId,
            input_hash=body.inputHash,
        )
    except Expired:
        raise ApiError(
            409, "approval_expired", f"approval {body.approvalId!r} expired: nothing was decided"
        ) from None
    except Mismatch as exc:
        raise ApiError(409, "approval_mismatch", str(exc)) from None
    except NoSuchApproval:
        raise ApiError(
            404, "not_found", f"generation {generation!r} asks for no approval {body.approvalId!r}"
        ) from None
    except WaitEnded:
        raise ApiError(409, "ended", f"generation {generation!r} has ended") from None
    return JSONResponse(
        {
            "generation_id": generation,
            "approvalId": decision.approval_id,
            "approved": decision.approved,
            "decided": decision.won,
            "resumed": decision.resumed,
        }
    )
