"""Tools that run in the worker: the registry a deployment names (``WORKER_TOOLS``,
``module:LIST``) and running one call of a tool, bounded in time and in the size of its
output.

A tool is a ``Tool(name, description, schema, fn)``; ``needs_approval`` (a bool or a
function of the arguments) makes the generation wait for a person, holding no worker
(``worker.step_loop``); ``idempotent=True`` lets a call whose worker was lost run again.
Specs are checked when the worker starts. How to write and register one:
docs/ai-sdk.md and docs/guides/tool-approvals.md.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from broadcaster.core import names

Event = dict[str, Any]

TOOL_NAME = names.TOOL_NAME_RE
"""Anthropic's rule for a custom tool's name (the request's own tools follow it too):
``names.is_tool_name``."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the worker runs: ``run`` takes the parsed input (a JSON object) and returns a
    JSON-serialisable result; an exception it raises is shown to the model as an error."""

    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Awaitable[Any]]
    needs_approval: bool | Callable[[dict[str, Any]], bool] = False
    """Whether a call waits for a person's decision first: always, or when this predicate
    of its input says so."""
    approval_timeout_s: float | None = None
    """How long a call waits for that decision before it is denied (None: the worker's
    default, ``WORKER_TOOL_APPROVAL_TIMEOUT_SECONDS``)."""
    idempotent: bool = False
    """Running a call twice does no harm: a call whose worker was lost while it ran is run
    again by the worker that takes the generation over. Otherwise (the default) that call
    is not run again (it may have acted): it ends with ``tool-output-error``
    ("interrupted: the worker running it was lost"), which the model is told."""

    def definition(self) -> dict[str, Any]:
        """The tool as the model is offered it (an Anthropic custom tool)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


class ToolSpecError(ValueError):
    """``WORKER_TOOLS`` names something that is not a valid list of tools."""


class ToolClash(ValueError):
    """A request brings a tool with the name of one of the worker's."""


def _problem(tool: Any) -> str | None:
    """What is wrong with a registered tool, if anything."""
    if not isinstance(tool, Tool):
        return f"{tool!r} is not a worker.tools.Tool"
    if not names.is_tool_name(tool.name):
        return f"tool name {tool.name!r} must match {names.TOOL_NAME_PATTERN}"
    if not isinstance(tool.description, str):
        return f"tool {tool.name}: description must be a string"
    schema = tool.input_schema
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return f'tool {tool.name}: input_schema must be a JSON schema with "type": "object"'
    if not inspect.iscoroutinefunction(tool.run):
        return f"tool {tool.name}: run must be an async function"
    if not isinstance(tool.needs_approval, bool) and not callable(tool.needs_approval):
        return f"tool {tool.name}: needs_approval must be a bool or a function of the input"
    if not isinstance(tool.idempotent, bool):
        return f"tool {tool.name}: idempotent must be a bool"
    timeout = tool.approval_timeout_s
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        return f"tool {tool.name}: approval_timeout_s must be a positive number of seconds"
    return None


def import_named(
    part: str, setting: str = "WORKER_TOOLS", error: type[ValueError] = ToolSpecError
) -> Any:
    """The attribute ``package.module:attribute`` names; ``error`` naming ``setting`` and
    what is wrong (shared with ``WORKER_AGENTS``)."""
    module_name, _, attr = part.strip().partition(":")
    if not module_name or not attr:
        raise error(f"{setting}: {part!r} is not of the form package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{setting}: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise error(f"{setting}: {module_name} has no attribute {attr!r}") from None


def load_tools(spec: str | None) -> tuple[Tool, ...]:
    """The tools ``spec`` names (``pkg.mod:attr[,pkg2.mod:attr]``, each attr a list of
    ``Tool``), checked; ``ToolSpecError`` naming the first problem."""
    tools: list[Tool] = []
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        found = import_named(part)
        if not isinstance(found, list | tuple):
            raise ToolSpecError(f"WORKER_TOOLS: {part} is not a list of tools")
        for tool in found:
            if (problem := _problem(tool)) is not None:
                raise ToolSpecError(f"WORKER_TOOLS: {part}: {problem}")
            if any(t.name == tool.name for t in tools):
                raise ToolSpecError(f"WORKER_TOOLS: tool name {tool.name!r} is registered twice")
            tools.append(tool)
    return tuple(tools)


def _output_error(call_id: str, text: str) -> Event:
    return {"type": "tool-output-error", "toolCallId": call_id, "errorText": text}


@dataclass(frozen=True, slots=True)
class ToolBox:
    """The worker's tools, and how long and how much each call may take."""

    tools: Mapping[str, Tool]
    timeout_s: float = 30.0
    max_output_bytes: int = 65536
    approval_timeout_s: float = 300.0

    @classmethod
    def of(
        cls,
        tools: Iterable[Tool],
        timeout_s: float,
        max_output_bytes: int,
        approval_timeout_s: float = 300.0,
    ) -> ToolBox:
        return cls({t.name: t for t in tools}, timeout_s, max_output_bytes, approval_timeout_s)

    def runs(self, name: Any) -> bool:
        return isinstance(name, str) and name in self.tools

    def needs_approval(self, name: str, tool_input: Any) -> bool:
        """Whether this call of the worker's tool ``name`` waits for a person first. A
        predicate that fails asks for approval: the safe side."""
        wants = self.tools[name].needs_approval
        if isinstance(wants, bool):
            return wants
        try:
            return bool(wants(tool_input if isinstance(tool_input, dict) else {}))
        except Exception:
            return True

    def idempotent(self, name: str) -> bool:
        """Whether a call of ``name`` cut off with its worker may simply run again."""
        return self.tools[name].idempotent

    def deferred(self, name: str) -> bool:
        """Whether an approved call of ``name`` is run by the provider at its next step
        rather than here (an agent's own tool, ``worker.sessions``)."""
        return False

    def approval_timeout(self, name: str) -> float:
        """How long a call of ``name`` waits for its decision."""
        return self.tools[name].approval_timeout_s or self.approval_timeout_s

    def offer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request with the worker's tools after its own (unchanged without any);
        ``ToolClash`` if the request brings a tool of the same name."""
        if not self.tools:
            return request
        own = request.get("tools") or []
        clash = sorted({t.get("name") for t in own} & set(self.tools))
        if clash:
            raise ToolClash(
                f"the request's tool {clash[0]!r} has the name of a tool the worker runs; rename it"
            )
        mine = [t.definition() for t in self.tools.values()]
        return {**request, "tools": [*own, *mine], "_worker_tools": list(self.tools)}

    async def call(self, call_id: str, name: str, tool_input: Any) -> Event:
        """Run one call: ``tool-output-available`` with its output, or
        ``tool-output-error`` (an exception, a timeout, an output too large or not JSON)."""
        tool = self.tools[name]
        if not isinstance(tool_input, dict):
            return _output_error(call_id, f"tool {name}: its input is not a JSON object")
        try:
            async with asyncio.timeout(self.timeout_s):
                output = await tool.run(tool_input)
        except TimeoutError:
            return _output_error(call_id, f"tool {name} timed out after {self.timeout_s:g} s")
        except Exception as exc:
            return _output_error(call_id, f"tool {name} failed: {type(exc).__name__}: {exc}")
        try:
            data = json.dumps(output, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return _output_error(call_id, f"tool {name}: its output is not JSON ({exc})")
        size = len(data.encode())
        if size > self.max_output_bytes:
            return _output_error(
                call_id,
                f"tool {name}: its output is {size} bytes, over the limit of "
                f"{self.max_output_bytes}",
            )
        return {"type": "tool-output-available", "toolCallId": call_id, "output": json.loads(data)}


__all__ = ["Tool", "ToolBox", "ToolClash", "ToolSpecError", "load_tools"]
