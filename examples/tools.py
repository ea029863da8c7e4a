"""Tools a worker runs itself: two small deterministic ones, for the demo and as a model.

Register them with the worker (from the repository's root, so ``examples`` imports)::

    WORKER_TOOLS=examples.tools:TOOLS python -m worker run

A generation's model may then call ``roll_dice`` or ``count_words``: the worker runs the
tool, appends ``tool-output-available`` to the stream, and calls the model again with
the result. With the offline fake provider (``WORKER_PROVIDER=fake``), a prompt that
names a tool ("roll_dice please") makes the fake call it.

``count_words`` waits for a person's approval (``needs_approval=True``): the generation
asks (``tool-approval-request``) and waits, holding no worker, until someone approves or
denies it (the demo's chat tab has the buttons), or the approval times out.

A tool is a ``worker.tools.Tool``: a name, a description, a JSON schema of its input, and
an async function from the parsed input to a JSON-serialisable result. An exception it
raises is shown to the model (and the viewers) as ``tool-output-error``.
"""

from __future__ import annotations

import random
from typing import Any

from worker.tools import Tool


async def roll_dice(args: dict[str, Any]) -> dict[str, Any]:
    """Dice rolled from a seed: the same input always gives the same rolls."""
    sides, count, seed = int(args.get("sides", 6)), int(args.get("count", 2)), args.get("seed", 1)
    if not 2 <= sides <= 1000 or not 1 <= count <= 100:
        raise ValueError("sides must be 2..1000 and count 1..100")
    rng = random.Random(seed)
    rolls = [rng.randint(1, sides) for _ in range(count)]
    return {"rolls": rolls, "total": sum(rolls)}


async def count_words(args: dict[str, Any]) -> dict[str, Any]:
    text = str(args.get("text", ""))
    return {"words": len(text.split()), "characters": len(text)}


TOOLS = [
    Tool(
        name="roll_dice",
        description="Roll dice. The same seed always gives the same rolls.",
        input_schema={
            "type": "object",
            "properties": {
                "sides": {"type": "integer", "minimum": 2, "maximum": 1000, "default": 6},
                "count": {"type": "integer", "minimum": 1, "maximum": 100, "default": 2},
                "seed": {"type": "integer", "default": 1},
            },
        },
        run=roll_dice,
    ),
    Tool(
        name="count_words",
        description="Count the words and characters of a text.",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        run=count_words,
        # A person approves each call first: the demo's chat tab shows Approve and Deny.
        needs_approval=True,
    ),
]
