"""A stored generation request (Anthropic's Messages shape) as Responses API parameters.

Pure. Built on the Chat Completions translation (``openai_request.chat_params``), which
already decides what has an OpenAI equivalent, then reshaped for ``responses.create``
(the table: docs/api/generations.md, "The Responses API"). The response runs in the
background and is stored, so a worker that takes over can stream it again
(``worker.providers.openai_responses``).
"""

from __future__ import annotations

from typing import Any

from worker.providers.openai_request import Untranslatable, chat_params

__all__ = ["responses_params"]

Params = dict[str, Any]

_PARTS = {"text": "input_text", "image_url": "input_image", "file": "input_file"}


def responses_params(request: dict[str, Any]) -> Params:
    """The ``responses.create`` arguments for a stored generation request."""
    if request.get("stop_sequences"):
        raise Untranslatable("stop_sequences has no Responses API equivalent")
    chat = chat_params(request, "max_output_tokens")
    params: Params = {
        "model": chat["model"],
        "stream": True,
        "background": True,
        "store": True,
        "max_output_tokens": chat["max_output_tokens"],
    }
    messages = chat["messages"]
    if messages and messages[0]["role"] == "system":
        params["instructions"] = messages[0]["content"]
        messages = messages[1:]
    params["input"] = [item for m in messages for item in _items(m)]
    if "tools" in chat:
        params["tools"] = [_function(t["function"]) for t in chat["tools"]]
    if "tool_choice" in chat:
        choice = chat["tool_choice"]
        params["tool_choice"] = (
            {"type": "function", "name": choice["function"]["name"]}
            if isinstance(choice, dict)
            else choice
        )
    if "reasoning_effort" in chat:
        params["reasoning"] = {"effort": chat["reasoning_effort"], "summary": "auto"}
    for name in ("temperature", "top_p", "service_tier", "user", "parallel_tool_calls"):
        if name in chat:
            params[name] = chat[name]
    if "extra_body" in chat:
        params["extra_body"] = chat["extra_body"]
    return params


def _function(function: Params) -> Params:
    return {"type": "function", **function}


def _items(message: Params) -> list[Params]:
    role = message["role"]
    if role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message["tool_call_id"],
                "output": message["content"],
            }
        ]
    items: list[Params] = []
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append({"role": role, "content": content})
    elif isinstance(content, list):
        items.append({"role": role, "content": [_part(p) for p in content]})
    for call in message.get("tool_calls") or []:
        function = call["function"]
        items.append(
            {
                "type": "function_call",
                "call_id": call["id"],
                "name": function["name"],
                "arguments": function["arguments"],
            }
        )
    return items


def _part(part: Params) -> Params:
    kind = _PARTS[part["type"]]
    if kind == "input_text":
        return {"type": kind, "text": part["text"]}
    if kind == "input_image":
        return {"type": kind, "image_url": part["image_url"]["url"], "detail": "auto"}
    return {"type": kind, **part["file"]}
