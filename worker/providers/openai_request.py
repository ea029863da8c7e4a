"""A stored generation request (Anthropic's Messages shape) as Chat Completions parameters.

Pure. What has no equivalent is one rule (``broadcaster.generations.openai_scope``): the
front-end refuses it for ``openai``, and a request that reaches the worker all the same
fails here with ``Untranslatable``, before the model is called. The translation, field
by field, is tabled in docs/api/generations.md, "The ``openai`` provider".
"""

from __future__ import annotations

import json
from typing import Any

from broadcaster.generations.openai_scope import as_blocks, openai_problems

__all__ = ["Untranslatable", "chat_params", "reasoning_effort"]

Params = dict[str, Any]


class Untranslatable(ValueError):
    """Part of the request has no Chat Completions equivalent."""


def reasoning_effort(budget_tokens: int) -> str:
    if budget_tokens < 4096:
        return "low"
    if budget_tokens < 16384:
        return "medium"
    return "high"


def chat_params(
    request: dict[str, Any],
    max_tokens_param: str = "max_completion_tokens",
    continue_final_message: bool = False,
) -> Params:
    """The ``chat.completions.create`` arguments for a stored generation request. A
    request that continues a cut answer (``_continue``: its last turn is the synthetic
    user turn after the partial assistant turn) is sent, to a server that can
    (``continue_final_message``), as the partial assistant message continued in place."""
    problems = openai_problems(request)
    if problems:
        raise Untranslatable(problems[0][1])
    messages = _system(request.get("system")) + _messages(request)
    in_place = bool(request.get("_continue")) and continue_final_message
    if in_place:
        messages = messages[:-1]
    params: Params = {
        "model": request["model"],
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        max_tokens_param: request["max_tokens"],
    }
    params |= _tools(request.get("tools"), request.get("tool_choice"))
    params |= _options(request)
    if in_place:
        extra = {"continue_final_message": True, "add_generation_prompt": False}
        params["extra_body"] = {**params.get("extra_body", {}), **extra}
    return params


def _options(request: dict[str, Any]) -> Params:
    params: Params = {}
    for name in ("temperature", "top_p"):
        if request.get(name) is not None:
            params[name] = request[name]
    if request.get("stop_sequences"):
        params["stop"] = request["stop_sequences"]
    if request.get("top_k") is not None:
        params["extra_body"] = {"top_k": request["top_k"]}
    thinking = request.get("thinking") or {}
    if thinking.get("type") == "enabled":
        params["reasoning_effort"] = reasoning_effort(thinking["budget_tokens"])
    tier = request.get("service_tier")
    if tier:
        params["service_tier"] = "default" if tier == "standard_only" else tier
    user_id = (request.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str):
        params["user"] = user_id
    return params


def _system(system: Any) -> list[Params]:
    if not system:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    return [{"role": "system", "content": "\n\n".join(b["text"] for b in system)}]


def _messages(request: dict[str, Any]) -> list[Params]:
    if not request.get("messages"):
        return [{"role": "user", "content": request["prompt"]}]
    out: list[Params] = []
    for role, blocks in _turns(request["messages"]):
        if role == "assistant":
            out.append(_assistant(blocks))
        else:
            out += _user(blocks)
    return out


def _turns(messages: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive messages of one role as one turn, as Anthropic takes them (a tool call
    and its text may come in two assistant messages; Chat Completions wants the tool
    messages right after the one assistant message that holds the calls)."""
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        blocks = as_blocks(message["content"])
        if turns and turns[-1][0] == message["role"]:
            turns[-1][1].extend(blocks)
        else:
            turns.append((message["role"], list(blocks)))
    return turns


def _assistant(blocks: list[dict[str, Any]]) -> Params:
    texts: list[str] = []
    calls: list[Params] = []
    for block in blocks:
        kind = block["type"]
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            arguments = json.dumps(block["input"], ensure_ascii=False)
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
    # No text: null beside tool calls (as OpenAI sends it), else an empty string, which
    # every server takes, unlike a message with neither.
    message: Params = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[dict[str, Any]]) -> list[Params]:
    # Tool results answer the assistant turn just before: their messages come first.
    results = [_tool_message(b) for b in blocks if b["type"] == "tool_result"]
    parts = [_part(b) for b in blocks if b["type"] != "tool_result"]
    if not parts:
        return results
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]
    return [*results, {"role": "user", "content": parts}]


def _tool_message(block: dict[str, Any]) -> Params:
    content = block.get("content")
    if isinstance(content, list):  # text parts only (``openai_scope``)
        content = "\n".join(part["text"] for part in content)
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content or ""}


def _part(block: dict[str, Any]) -> Params:
    kind = block["type"]
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _url(block["source"])}}
    if kind == "document":
        return _document(block)
    return {"type": "text", "text": block["text"]}


def _url(source: dict[str, Any]) -> str:
    if source["type"] == "url":
        return str(source["url"])
    return f"data:{source['media_type']};base64,{source['data']}"


def _document(block: dict[str, Any]) -> Params:
    source = block["source"]
    kind = source["type"]
    if kind == "base64":
        file = {"filename": block.get("title") or "document.pdf", "file_data": _url(source)}
        return {"type": "file", "file": file}
    if kind == "text":
        return {"type": "text", "text": source["data"]}
    # A document of text parts (``openai_scope`` lets no other through).
    return {"type": "text", "text": "\n".join(p["text"] for p in as_blocks(source["content"]))}


def _tools(tools: Any, choice: Any) -> Params:
    if not tools:
        return {}
    functions = []
    for tool in tools:  # custom tools only (``openai_scope``)
        function: Params = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        functions.append({"type": "function", "function": function})
    params: Params = {"tools": functions}
    if choice:
        params["tool_choice"] = _tool_choice(choice)
        if choice.get("disable_parallel_tool_use"):
            params["parallel_tool_calls"] = False
    return params


def _tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice["type"]
    if kind == "tool":
        return {"type": "function", "function": {"name": choice["name"]}}
    return {"auto": "auto", "any": "required", "none": "none"}[kind]
