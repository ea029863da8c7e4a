"""What binds a decision to the call it approves, and when the call's approval expires.

A ``tool-approval-request`` carries ``expiresAt`` (the wait's deadline, ISO 8601 UTC with
milliseconds, as JavaScript's ``Date.toISOString`` writes it: ``expires_at``). A decision
may name the ``toolCallId`` it decides on and ``inputHash``, the hash of the tool input it approved:
the lowercase hex SHA-256 of the input's canonical JSON, that is its RFC 8785 (JSON
Canonicalization Scheme) form in UTF-8: no whitespace, object members sorted by their
names' UTF-16 code units, strings escaped only where JSON must be (``"``, ``\\``, and
control characters, as ``\\n``, ``\\t``... or ``\\u00XX``), numbers as JavaScript writes
them (``1`` not ``1.0``, ``1e-7``, ``1e+21``). A decision whose call or hash does not match
the approval's is refused (409), and so is one made after the deadline.

Pure: the approvals (``approvals.py``) and the route use it.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from broadcaster.core.events import iso_ms

expires_at = iso_ms
"""``expiresAt`` of a deadline in epoch ms."""


class Mismatch(Exception):
    """The decision names another call, or another input, than the approval's."""


class Expired(Exception):
    """The decision came after the approval's deadline."""


def _number(value: float) -> str:
    """A float as JavaScript's ``Number.prototype.toString`` writes it (ECMA-262's
    Number::toString over the shortest digits that read back, which ``repr`` finds)."""
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or Infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.<digits> x 10^n
    n = int(exponent or 0) + len(whole) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{sign}{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"{sign}0.{'0' * -n}{digits}"
    power = n - 1
    head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{head}e{'+' if power > 0 else '-'}{abs(power)}"


def canonical(value: Any) -> str:
    """``value``'s RFC 8785 form."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):  # past 2**53, as JavaScript reads it: a double
        return str(value) if abs(value) <= 2**53 else _number(float(value))
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        members = (f"{canonical(n)}:{canonical(value[n])}" for n in names)
        return "{" + ",".join(members) + "}"
    raise TypeError(f"not JSON: {type(value).__name__}")


def input_hash(tool_input: Any) -> str:
    """The ``inputHash`` of a tool input."""
    return hashlib.sha256(canonical(tool_input).encode()).hexdigest()


def check(
    approval: dict[str, Any],
    deadline_ms: int,
    now_ms: int,
    tool_call_id: str | None = None,
    hash_: str | None = None,
) -> None:
    """Whether a decision may be made on ``approval`` (its ``toolCallId`` and ``input``):
    ``Expired`` after ``deadline_ms``, ``Mismatch`` for another call or input."""
    if deadline_ms and now_ms > deadline_ms:
        raise Expired(approval.get("approvalId"))
    if tool_call_id is not None and tool_call_id != approval.get("toolCallId"):
        raise Mismatch(f"the approval is for tool call {approval.get('toolCallId')!r}")
    if hash_ is not None and hash_.lower() != input_hash(approval.get("input")):
        raise Mismatch("the approval's tool input is not the one whose hash was sent")


def bindings(parts: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """What a submit's decisions (the ``approval-responded`` tool parts of its last
    message, as a stock ``useChat`` sends them) bind themselves to: each approval id's
    ``toolCallId`` and the hash of the ``input`` the part shows (None where it has
    none)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for part in parts:
        approval = part.get("approval")
        if part.get("state") != "approval-responded" or not isinstance(approval, dict):
            continue
        approval_id, call = approval.get("id"), part.get("toolCallId")
        if not isinstance(approval_id, str):
            continue
        try:
            hashed = input_hash(part["input"]) if "input" in part else None
        except (TypeError, ValueError):
            hashed = "-"  # not JSON the approval's input can be: matches nothing
        found[approval_id] = (call if isinstance(call, str) else None, hashed)
    return found
