"""The generation request (``POST /v1/generations``): Anthropic's Messages request, checked
before anything is stored or queued, so that a mistake is a 422 naming the field rather
than a generation that fails at the model.

The front-end validates with :func:`validate_request`; the worker reads the stored request
back and translates it for its provider. The stored request is the body *as sent* (minus
``id`` and nulls), with the deployment's defaults filled in: the models below only check
it, so a field Anthropic adds to a content block tomorrow passes through untouched
(the blocks: ``blocks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from broadcaster.core import names
from broadcaster.generations.blocks import (
    BLOCK_TYPES,
    Message,
    PassThrough,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    as_blocks,
)
from broadcaster.generations.openai_scope import openai_problems

PROVIDERS: tuple[str, ...] = ("anthropic", "openai")
"""The built-in model providers: a request naming one is checked against its API."""


MIN_THINKING_BUDGET = 1024
"""Anthropic's smallest ``thinking.budget_tokens``."""

MAX_TEMPERATURE = {"anthropic": 1.0, "openai": 2.0}
"""Each API's own range of ``temperature`` (from 0)."""

SERVICE_TIERS = {
    "anthropic": frozenset({"auto", "standard_only"}),
    "openai": frozenset({"auto", "default", "flex", "scale", "priority", "standard_only"}),
}
"""Values of ``service_tier`` per provider (``standard_only`` is sent to OpenAI as
``default``, its meaning there)."""

MAX_STEPS = 100
"""The most steps (model calls, with the worker's tools run between them) a request may
ask for in ``max_steps``; each worker caps it further (``WORKER_MAX_STEPS``)."""

DEFAULT_MAX_STEPS = 5
"""The steps of a generation whose request does not say."""


MAX_USER_ID = 256
"""Anthropic's longest ``metadata.user_id``."""


class RequestInvalid(ValueError):
    """A request that is not the documented shape: ``details`` name each field."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True, slots=True)
class Defaults:
    """What the deployment fills in, and its limits."""

    provider: str = "anthropic"
    models: tuple[tuple[str, str], ...] = (
        ("anthropic", "claude-sonnet-4-5"),
        ("openai", "gpt-4.1-mini"),
    )
    max_tokens: int = 1024
    max_tokens_limit: int = 64000
    abandon_after_seconds: float | None = None
    """A generation nobody watches for this long is cancelled (``abandoned``), unless its
    request says otherwise (``BROADCASTER_ABANDON_AFTER_SECONDS``; None: never)."""
    webhook_origins: frozenset[str] = frozenset()
    """Origins (``origin_of``) a request's ``webhook_url`` may name
    (``BROADCASTER_WEBHOOK_ALLOWED_ORIGINS``); none: the field is refused."""

    def model(self, provider: str) -> str:
        """The default model of a built-in provider; an agent's is its own name."""
        return dict(self.models).get(provider, provider)


MAX_ABANDON_AFTER = 7 * 24 * 3600
"""Longest ``abandon_after_seconds`` (a week: a generation runs no longer)."""

MAX_WEBHOOK_URL = 2048
"""Longest ``webhook_url`` a request may give."""


# ---- tools and options


class InputSchema(PassThrough):
    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


def _versioned_tool(kind: str) -> str:
    # Anthropic's own tool types carry the date of their version; anything else (an
    # OpenAI-style "function" tool, a typo) is refused here rather than by the model.
    if not names.is_server_tool_type(kind):
        raise ValueError(
            "must be 'custom' (or absent) for a tool of yours, or one of Anthropic's tool "
            "types such as 'web_search_20250305'"
        )
    return kind


class CustomTool(PassThrough):
    type: Literal["custom"] | None = None
    name: str = Field(pattern=names.TOOL_NAME_PATTERN)
    description: str | None = None
    input_schema: InputSchema


class ServerTool(PassThrough):
    """One of Anthropic's own tools (``web_search_20250305``, ...): no input_schema."""

    type: Annotated[
        str,
        AfterValidator(_versioned_tool),
        WithJsonSchema({"type": "string", "pattern": names.SERVER_TOOL_TYPE_PATTERN}),
    ]
    name: str = Field(min_length=1, max_length=128)


def _tool_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "server"


Tool = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_tag),
]


class ToolChoiceMode(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["auto", "any", "none"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["tool"]
    name: str = Field(min_length=1)
    disable_parallel_tool_use: bool | None = None


class ThinkingEnabled(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=MIN_THINKING_BUDGET, strict=True)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingAdaptive(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["disabled"]


Thinking = ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled


class GenerationOptions(BaseModel):
    """What a generation is asked to be, besides its input: Anthropic's Messages request's
    options, plus ``provider``, ``metadata``, ``max_steps`` (the model calls a generation
    may make, the worker's tools run between them) and the front-end's own. A chat body
    takes them too."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(None, min_length=1, max_length=200)
    max_tokens: int | None = Field(None, ge=1)
    system: (
        Annotated[
            list[TextBlock],
            BeforeValidator(as_blocks, json_schema_input_type=str | list[TextBlock]),
        ]
        | None
    ) = None
    metadata: dict[str, Any] | None = None
    provider: str | None = Field(None, pattern=names.PROVIDER_NAME_PATTERN)
    """A built-in provider (``anthropic``, ``openai``), or any other a worker advertises
    (an agent it serves, docs/agents.md): whether the deployment serves it is the
    admission's question (``start.admit``), answered 422 naming the live ones."""
    tools: list[Tool] | None = None
    tool_choice: Annotated[ToolChoiceMode | ToolChoiceTool, Field(discriminator="type")] | None = (
        None
    )
    thinking: Annotated[Thinking, Field(discriminator="type")] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=1)
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = None
    service_tier: str | None = None
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    webhook_url: str | None = Field(None, min_length=1, max_length=MAX_WEBHOOK_URL)
    abandon_after_seconds: float | None = Field(None, ge=0, le=MAX_ABANDON_AFTER)
    """Cancel the generation once it has had no viewer for this long (0: never, whatever
    the deployment's default)."""


ONE_INPUT: dict[str, Any] = {
    "oneOf": [
        {"properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
        {"properties": {"messages": {"type": "array"}}, "required": ["messages"]},
    ]
}
"""``_one_input`` as JSON Schema: exactly one of the two is given (and not null)."""


class GenerationRequest(GenerationOptions):
    """``POST /v1/generations``: exactly one of ``prompt`` or ``messages``; the rest is
    Anthropic's Messages request, plus ``provider``, ``id``, ``metadata`` and
    ``max_steps`` (``GenerationOptions``). Every value of JSON's own type (no ``"1"`` or
    ``true`` for 1)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_INPUT)
    prompt: str | None = Field(None, min_length=1)
    messages: list[Message] | None = Field(None, min_length=1)
    id: str | None = Field(None, pattern=names.STREAM_ID_PATTERN)

    @model_validator(mode="after")
    def _one_input(self) -> GenerationRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        return self


# ---- checks across fields


_Where = tuple[str | int, ...]
_Problem = tuple[_Where, str]


def _settings_problems(req: GenerationRequest, provider: str, max_tokens: int) -> list[_Problem]:
    problems: list[_Problem] = []
    if isinstance(req.thinking, ThinkingEnabled) and req.thinking.budget_tokens >= max_tokens:
        problems.append(
            (("thinking", "budget_tokens"), f"must be less than max_tokens ({max_tokens})")
        )
    top = MAX_TEMPERATURE.get(provider, 2.0)
    if req.temperature is not None and req.temperature > top:
        problems.append((("temperature",), f"must be between 0 and {top:g} for {provider}"))
    tiers = SERVICE_TIERS.get(provider)
    if req.service_tier is not None and tiers is not None and req.service_tier not in tiers:
        problems.append((("service_tier",), f"must be one of {sorted(tiers)} for {provider}"))
    user_id = (req.metadata or {}).get("user_id")
    if isinstance(user_id, str) and len(user_id) > MAX_USER_ID:
        problems.append((("metadata", "user_id"), f"at most {MAX_USER_ID} characters"))
    return problems


def _thinking_problems(req: GenerationRequest, provider: str) -> list[_Problem]:
    """Anthropic's limits on sampling while the model thinks: it refuses the request."""
    if provider != "anthropic" or not isinstance(req.thinking, ThinkingEnabled | ThinkingAdaptive):
        return []
    problems: list[_Problem] = []
    if req.temperature is not None and req.temperature != 1:
        problems.append((("temperature",), "must be 1 (or unset) while thinking"))
    if req.top_k is not None:
        problems.append((("top_k",), "cannot be set while thinking"))
    if req.top_p is not None and req.top_p < 0.95:
        problems.append((("top_p",), "must be between 0.95 and 1 while thinking"))
    if req.tool_choice is not None and req.tool_choice.type not in ("auto", "none"):
        problems.append((("tool_choice", "type"), "must be auto or none while thinking"))
    return problems


def _tool_problems(req: GenerationRequest) -> list[_Problem]:
    names = [t.name for t in req.tools or []]
    problems: list[_Problem] = [
        (("tools", i, "name"), f"tool name {name!r} is used twice")
        for i, name in enumerate(names)
        if name in names[:i]
    ]
    if isinstance(req.tool_choice, ToolChoiceTool) and req.tool_choice.name not in names:
        problems.append((("tool_choice", "name"), f"no tool named {req.tool_choice.name!r}"))
    return problems


@dataclass(frozen=True, slots=True)
class _Turn:
    """Consecutive messages of one role, which Anthropic merges into one turn: their
    blocks, each with its location as the client wrote it."""

    role: str
    first: int  # the index of its first message
    blocks: list[tuple[_Where, Any]]


def _turns(messages: list[Message]) -> list[_Turn]:
    turns: list[_Turn] = []
    for m, msg in enumerate(messages):
        if not turns or turns[-1].role != msg.role:
            turns.append(_Turn(msg.role, m, []))
        turns[-1].blocks.extend(
            (("messages", m, "content", b), blk) for b, blk in enumerate(msg.content)
        )
    return turns


def _turn_problems(messages: list[Message]) -> list[_Problem]:
    """Anthropic's rules for tool turns (consecutive messages of one role being one
    turn): a tool_result answers a tool_use of the assistant turn just before it; every
    tool_use of a turn is answered by the next user turn, whose content starts with the
    results; tool calls and thinking belong to the assistant."""
    problems: list[_Problem] = []
    seen_ids: set[str] = set()
    asked: set[str] = set()  # tool_use ids of the previous assistant turn
    for turn in _turns(messages):
        if turn.role == "assistant":
            problems += _assistant_problems(turn, seen_ids)
            asked = {b.id for _, b in turn.blocks if isinstance(b, ToolUseBlock)}
            continue
        problems += _user_problems(turn, asked)
        asked = set()
    return problems


def _assistant_problems(turn: _Turn, seen_ids: set[str]) -> list[_Problem]:
    problems: list[_Problem] = []
    for where, block in turn.blocks:
        if isinstance(block, ToolResultBlock):
            problems.append((where, "tool_result belongs in a user turn"))
        elif isinstance(block, ToolUseBlock):
            if block.id in seen_ids:
                problems.append(((*where, "id"), "tool_use id used twice"))
            seen_ids.add(block.id)
    return problems


def _user_problems(turn: _Turn, asked: set[str]) -> list[_Problem]:
    problems: list[_Problem] = []
    answered: set[str] = set()
    results_over = False
    for where, block in turn.blocks:
        if isinstance(block, ToolResultBlock):
            if block.tool_use_id not in asked:
                problems.append(
                    (
                        (*where, "tool_use_id"),
                        f"no tool_use with id {block.tool_use_id!r} in the assistant turn "
                        "just before",
                    )
                )
            elif results_over:
                problems.append((where, "tool_result blocks must come first in the turn"))
            answered.add(block.tool_use_id)
        else:
            results_over = True
            if isinstance(block, ToolUseBlock | ThinkingBlock | RedactedThinkingBlock):
                problems.append((where, f"{block.type} belongs in an assistant turn"))
    problems += [
        (("messages", turn.first, "content"), f"tool_use {tool_id!r} has no tool_result here")
        for tool_id in sorted(asked - answered)
    ]
    return problems


def _webhook_problems(req: GenerationRequest, defaults: Defaults) -> list[_Problem]:
    """A ``webhook_url`` must be on an origin the deployment allows: the front-end would
    otherwise make requests, signed with its secret, to any address a client names."""
    if req.webhook_url is None:
        return []
    origin = names.origin_of(req.webhook_url)
    if origin is None:
        return [(("webhook_url",), "must be an absolute http or https URL")]
    if origin not in defaults.webhook_origins:
        return [
            (
                ("webhook_url",),
                f"origin {origin} is not allowed (BROADCASTER_WEBHOOK_ALLOWED_ORIGINS)",
            )
        ]
    return []


# ---- the entry point


_UNION_TAGS: dict[str, frozenset[str]] = {
    "#": BLOCK_TYPES | {"other", "custom", "server"},  # after a list index
    "source": frozenset({"base64", "url", "text", "content"}),
    "thinking": frozenset({"enabled", "adaptive", "disabled"}),
    "tool_choice": frozenset({"auto", "any", "none", "tool"}),
}


def _clean_loc(loc: tuple[str | int, ...]) -> list[str | int]:
    """pydantic's location without the union members it tried (``tool_use``, ``base64``,
    ...), so that it names the field as the client wrote it."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and i:
            before = "#" if isinstance(loc[i - 1], int) else str(loc[i - 1])
            if part in _UNION_TAGS.get(before, ()):
                continue
        if isinstance(part, str) and "[" in part:  # str | list[...] members
            continue
        out.append(part)
    return out


def dotted(loc: list[str | int]) -> str:
    """``["messages", 0, "content"]`` as ``messages[0].content``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"


def _invalid(problems: list[tuple[list[str | int], str]]) -> RequestInvalid:
    details = [{"loc": loc, "msg": msg} for loc, msg in problems]
    unknown = [str(loc[0]) for loc, msg in problems if len(loc) == 1 and msg == "unknown field"]
    if unknown:
        message = "unknown fields: " + ", ".join(unknown)
    else:
        shown = "; ".join(f"{dotted(loc)}: {msg}" for loc, msg in problems[:3])
        message = f"invalid generation request: {shown}"
    return RequestInvalid(message[:1000], details)


def _parse(body: Any) -> GenerationRequest:
    try:
        return GenerationRequest.model_validate(body)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False, include_context=False, include_input=False):
            msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append((_clean_loc(e["loc"]), msg))
        raise _invalid(problems) from None


def validate_request(body: Any, defaults: Defaults) -> dict[str, Any]:
    """The request to store for a body, with the deployment's defaults filled in; or
    ``RequestInvalid`` naming what is wrong."""
    req = _parse(body)
    provider = req.provider or defaults.provider
    max_tokens = req.max_tokens or defaults.max_tokens
    # The limit is on what clients ask for; the deployment's own default is its choice.
    if req.max_tokens is not None and max_tokens > defaults.max_tokens_limit:
        raise RequestInvalid(
            f"max_tokens is limited to {defaults.max_tokens_limit}",
            [{"loc": ["max_tokens"], "msg": f"at most {defaults.max_tokens_limit}"}],
        )
    problems = _settings_problems(req, provider, max_tokens) + _tool_problems(req)
    problems += _thinking_problems(req, provider)
    if provider == "openai":
        problems += openai_problems(body)
    problems += _turn_problems(req.messages or [])
    problems += _webhook_problems(req, defaults)
    if problems:
        raise _invalid([(list(loc), msg) for loc, msg in problems])
    stored = {k: v for k, v in body.items() if k != "id" and v is not None}
    stored["provider"] = provider
    model = defaults.model(provider)
    if model is not None:
        stored.setdefault("model", model)
    stored["max_tokens"] = max_tokens
    abandon = req.abandon_after_seconds
    if abandon is None:
        abandon = defaults.abandon_after_seconds
    if abandon:
        stored["abandon_after_seconds"] = abandon
    else:
        stored.pop("abandon_after_seconds", None)
    return stored
