"""A generation that waits for a person: what the one append that suspends it writes.

The Python worker's step loop (``worker/step_loop.py``) and the worker protocol's append
(``leases.Leases.append`` with a ``wait``) suspend a generation alike: one
``tool-approval-request`` chunk per call (each saying when it expires), and, in the same
atomic append, the stream's state (``status: waiting``, an owner no worker holds, the
calls asked about, the deadline) and what goes with it (the ``approval.requested``
webhook, the deadline in the waiting set). No worker holds it then: a decision, or the
deadline's denial, queues its job again (``chat/approvals.py``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broadcaster.core.events import iso_ms


@dataclass(frozen=True, slots=True)
class Ask:
    """A tool call to ask a person about; ``approval_id`` kept when it was asked before
    (a takeover asks again under the same id)."""

    call_id: str
    tool_name: str
    input: Any
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class Suspension:
    """The chunks to append (after the batch's own) and the append's ``meta`` and
    ``extras``."""

    requests: list[dict[str, Any]]
    meta: dict[str, str]
    extras: dict[str, Any]


def suspension(stream_id: str, asks: Sequence[Ask], wait_s: float, seq_before: int) -> Suspension:
    """What suspends generation ``stream_id`` on ``asks`` for ``wait_s`` seconds, when the
    requests follow seq ``seq_before``."""
    deadline_ms = int((time.time() + wait_s) * 1000)
    requests = [
        {
            "type": "tool-approval-request",
            "approvalId": a.approval_id or f"apr_{secrets.token_urlsafe(12)}",
            "toolCallId": a.call_id,
            "expiresAt": iso_ms(deadline_ms),
        }
        for a in asks
    ]
    approvals = [
        {
            "approvalId": r["approvalId"],
            "toolCallId": a.call_id,
            "toolName": a.tool_name,
            "input": a.input,
        }
        for r, a in zip(requests, asks, strict=True)
    ]
    last_seq = seq_before + len(requests)
    wait = {
        "approvals": approvals,
        "deadline_ms": deadline_ms,
        "seq": last_seq,
        "asked_ms": int(time.time() * 1000),  # the wait's start: its span and its metric
    }
    meta = {
        "status": "waiting",
        "owner": f"wait:{secrets.token_hex(6)}",
        "wait": _compact(wait),
        "wait_seq": str(last_seq),
        "decided": "{}",
    }
    hook = {"id": stream_id, "approvals": approvals, "deadline_ms": deadline_ms}
    extras = {"outbox": ["approval.requested", _compact(hook)], "zadd": deadline_ms}
    return Suspension(requests, meta, extras)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
