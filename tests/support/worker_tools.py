"""Tools for the tests of tools that run in the worker (``WORKER_TOOLS=
tests.support.worker_tools:TOOLS``, with the repository's root on ``PYTHONPATH``).

Each run is recorded, one JSON line per event, in the file ``TOOL_RUNS_FILE`` names (the
worker processes' environment), so a test can count how often a tool ran, in any
process, even one killed with SIGKILL. ``gate`` (idempotent) and ``gate_once`` (not) wait until the
file ``TOOL_GATE_FILE`` names exists, so a test can kill a worker while a tool runs.

The lists named ``BAD_*`` are specs ``WORKER_TOOLS`` must refuse.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from worker.tools import Tool

OBJECT = {"type": "object", "properties": {"n": {"type": "integer"}}}


def record(name: str, what: str, tool_input: Any = None) -> None:
    path = os.environ.get("TOOL_RUNS_FILE")
    if path:
        line = {"tool": name, "what": what, "input": tool_input, "pid": os.getpid()}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")


def runs(path: Path, tool: str, what: str = "end") -> int:
    """How many times ``tool`` reached ``what`` (``start`` or ``end``) in ``path``."""
    if not path.exists():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sum(1 for line in lines if line["tool"] == tool and line["what"] == what)


async def add(args: dict[str, Any]) -> dict[str, Any]:
    record("add", "start", args)
    result = {"sum": int(args.get("a", 0)) + int(args.get("b", 0))}
    record("add", "end", args)
    return result


async def fail(args: dict[str, Any]) -> Any:
    record("fail", "start", args)
    raise RuntimeError("the tool broke")


async def slow(args: dict[str, Any]) -> Any:
    record("slow", "start", args)
    await asyncio.sleep(3600)
    return {"late": True}


async def big(args: dict[str, Any]) -> Any:
    record("big", "start", args)
    return {"blob": "x" * int(args.get("n", 100_000))}


async def gate(args: dict[str, Any]) -> Any:
    record("gate", "start", args)
    path = Path(os.environ.get("TOOL_GATE_FILE", "/nonexistent/gate"))
    # The test, another process, opens the gate: a file is the signal both can see.
    while not path.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.02)
    record("gate", "end", args)
    return {"opened": True}


async def gate_once(args: dict[str, Any]) -> Any:
    """``gate``, for a tool that must not run twice (not idempotent)."""
    record("gate_once", "start", args)
    path = Path(os.environ.get("TOOL_GATE_FILE", "/nonexistent/gate"))
    while not path.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.02)
    record("gate_once", "end", args)
    return {"opened": True}


async def approved_add(args: dict[str, Any]) -> dict[str, Any]:
    record("approved_add", "start", args)
    result = {"sum": int(args.get("a", 0)) + int(args.get("b", 0))}
    record("approved_add", "end", args)
    return result


async def transfer(args: dict[str, Any]) -> dict[str, Any]:
    record("transfer", "start", args)
    record("transfer", "end", args)
    return {"sent": args.get("amount")}


async def gated_approval(args: dict[str, Any]) -> Any:
    """``gate``, but only once a person approved it: a worker can be killed in it."""
    record("gated_approval", "start", args)
    path = Path(os.environ.get("TOOL_GATE_FILE", "/nonexistent/gate"))
    while not path.exists():  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.02)
    record("gated_approval", "end", args)
    return {"opened": True}


TOOLS = [
    Tool(
        "add",
        "Add two integers.",
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        add,
    ),
    Tool("fail", "Always fails.", OBJECT, fail),
    Tool("slow", "Never answers in time.", OBJECT, slow),
    Tool("big", "Answers with n bytes.", OBJECT, big),
    Tool("gate", "Waits for the test's gate file.", OBJECT, gate, idempotent=True),
    Tool("gate_once", "Waits for the test's gate file; must not run twice.", OBJECT, gate_once),
    Tool(
        "approved_add",
        "Add two integers, once a person approves.",
        {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        approved_add,
        needs_approval=True,
    ),
    Tool(
        "transfer",
        "Send an amount; over 100 needs a person's approval, which times out after 1 s.",
        {"type": "object", "properties": {"amount": {"type": "integer"}}},
        transfer,
        needs_approval=lambda args: int(args.get("amount", 0)) > 100,
        approval_timeout_s=1.0,
    ),
    Tool(
        "gated_approval",
        "Waits for the test's gate file, once a person approves.",
        OBJECT,
        gated_approval,
        needs_approval=True,
    ),
]


def _sync_tool(args: dict[str, Any]) -> Any:
    return args


BAD_NOT_A_LIST = TOOLS[0]
BAD_SYNC = [Tool("sync", "Not async.", OBJECT, _sync_tool)]  # type: ignore[arg-type]
BAD_NAME = [Tool("has space", "Bad name.", OBJECT, add)]
BAD_SCHEMA = [Tool("arr", "Not an object schema.", {"type": "array"}, add)]
BAD_DUPLICATE = [TOOLS[0], TOOLS[0]]
BAD_ITEM = [{"name": "dict", "description": "", "input_schema": OBJECT}]
