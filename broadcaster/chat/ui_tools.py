"""A UI message's tool parts as the AI SDK's client updates them from the stream's
``tool-*`` chunks (``processUIMessageStream``'s ``updateToolPart`` and
``updateDynamicToolPart``): static parts (``tool-<name>``) and ``dynamic-tool`` parts,
with their ``title``, ``toolMetadata``, ``inputEncoding`` and the provider's metadata
of the call and of its result. Pure.

A field the SDK sets to ``undefined`` is left out (``MISSING``), as ``JSON.stringify``
leaves it out of the message a page stores.
"""

from __future__ import annotations

from typing import Any

from broadcaster.chat.partial_json import MISSING

Part = dict[str, Any]

_RESULT_STATES = ("output-available", "output-error")


def put(target: dict[str, Any], key: str, value: Any) -> None:
    """``target[key] = value`` as JavaScript does it: ``undefined`` leaves no key."""
    if value is MISSING:
        target.pop(key, None)
    else:
        target[key] = value


def given(value: Any) -> bool:
    """JavaScript's ``value != null``: neither ``undefined`` nor ``null``."""
    return value is not MISSING and value is not None


def is_tool(part: Part) -> bool:
    kind = str(part.get("type", ""))
    return kind == "dynamic-tool" or kind.startswith("tool-")


def is_static(part: Part) -> bool:
    return str(part.get("type", "")).startswith("tool-")


def static_name(part: Part) -> str:
    """The tool's name of a static part: its type after ``tool-``."""
    return str(part.get("type", "")).split("-", 1)[1]


def update(
    parts: list[Part], step: list[Part], options: dict[str, Any], existing: Part | None
) -> None:
    """A tool part brought to ``options`` (its ``state`` and fields; ``dynamic`` says
    which kind): ``existing``, else the current ``step``'s part of that call and kind,
    else a new part at the end of ``parts``."""
    dynamic = options.get("dynamic") is True
    call = options["toolCallId"]
    part = existing or next(
        (
            p
            for p in step
            if (p.get("type") == "dynamic-tool" if dynamic else is_static(p))
            and p.get("toolCallId") == call
        ),
        None,
    )
    if part is None:
        parts.append(_new(options, dynamic))
        return
    part["state"] = options["state"]
    if dynamic:
        part["toolName"] = options["toolName"]
    else:
        part["type"] = f"tool-{options['toolName']}"
    for key in ("input", "output", "errorText", "rawInput"):
        put(part, key, options.get(key, MISSING))
    encoding = options.get("inputEncoding", MISSING)
    put(part, "inputEncoding", encoding if given(encoding) else MISSING)
    put(part, "preliminary", options.get("preliminary", MISSING))
    for key in ("title", "toolMetadata"):
        if options.get(key, MISSING) is not MISSING:
            part[key] = options[key]
    executed = options.get("providerExecuted", MISSING)
    put(
        part,
        "providerExecuted",
        executed if given(executed) else part.get("providerExecuted", MISSING),
    )
    _provider_metadata(part, options)


def _provider_metadata(part: Part, options: dict[str, Any]) -> None:
    meta = options.get("providerMetadata", MISSING)
    if given(meta):
        result = options["state"] in _RESULT_STATES
        part["resultProviderMetadata" if result else "callProviderMetadata"] = meta


def _new(options: dict[str, Any], dynamic: bool) -> Part:
    get = options.get
    fields: tuple[str, ...]
    if dynamic:
        head = {"type": "dynamic-tool", "toolName": options["toolName"]}
        fields = ("input", "output", "errorText", "preliminary", "providerExecuted", "title")
    else:
        head = {"type": f"tool-{options['toolName']}"}
        fields = ("title", "input", "output", "rawInput", "errorText", "providerExecuted")
        fields += ("preliminary",)
    part: Part = {**head, "toolCallId": options["toolCallId"], "state": options["state"]}
    for key in fields:
        put(part, key, get(key, MISSING))
    if get("toolMetadata", MISSING) is not MISSING:
        part["toolMetadata"] = options["toolMetadata"]
    if given(get("inputEncoding", MISSING)):
        part["inputEncoding"] = options["inputEncoding"]
    _provider_metadata(part, options)
    return part


def invocation(parts: list[Part], step: list[Part], call_id: str) -> Part | None:
    """The tool part of call ``call_id``: the current step's, else the latest of the
    message's (the SDK's ``getToolInvocation``; None where it would throw)."""
    for part in step:
        if is_tool(part) and part.get("toolCallId") == call_id:
            return part
    for part in reversed(parts):
        if is_tool(part) and part.get("toolCallId") == call_id:
            return part
    return None
