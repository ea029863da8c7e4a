"""Each route's documented request body is the model its handler validates it with.

For every operation of the app's ``/openapi.json`` with a JSON body: a request with a body
the document allows goes through the app (in process, on the suite's Redis) while every
model's validator is watched, and one of the models that validated it must have exactly
the documented schema; then bodies that schemathesis makes from the documented schema
(valid and invalid) must be accepted and refused by that model as the schema says, the
schema judged by jsonschema-rs. What JSON Schema cannot say is allowed, by name
(``BEYOND_THE_SCHEMA``). The last tests show that the checks fail where they should: a
route that documents one model and validates another, a hand-written schema, a lax model.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import anyio
import jsonschema_rs
import pytest
import schemathesis
from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet

from broadcaster.auth import credentials
from broadcaster.generations.request import GenerationRequest
from broadcaster.http import openapi_requests
from broadcaster.http.app import create_app
from broadcaster.http.minting import TokenBody
from broadcaster.http.settings import Settings
from tests.support import long_form
from tests.support.schema_cases import for_each_case

pytestmark = [pytest.mark.anyio, long_form.mark]

EXAMPLES = long_form.budget(6, 60)
"""Bodies schemathesis makes per operation and mode (valid, invalid)."""

RAW_DATA = {"PUT /v1/stream/{path}", "POST /v1/stream/{path}"}
"""A Durable Stream's appends: the stream's own data in its content type, no model's
(their headers are described by hand, ``openapi_durable``)."""

SECRET = secrets.token_hex(16)
KEY = "every-right-" + secrets.token_hex(8)
"""An API key with every right: it opens every route (a worker's, an admin's, a chat's)."""

PATH_VALUES = {"agent_id": "default"}
"""Path parameters the request to the app takes as given: an agent the deployment serves
(another is 404 before its body is read)."""


def _document() -> dict[str, Any]:
    """The app's ``/openapi.json`` (the app only built: no Redis needed)."""
    return create_app(Settings(), "redis://127.0.0.1:1").openapi()


def body_operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``METHOD /path`` -> the documented JSON body schema, of every operation with one."""
    found = {}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content and f"{method.upper()} {path}" not in RAW_DATA:
                found[f"{method.upper()} {path}"] = content["application/json"]["schema"]
    return found


DOCUMENT = _document()
OPERATIONS = body_operations(DOCUMENT)


# --- which models validate, while a request runs ---


@dataclass
class Watched:
    """The models whose validator ran (``model_validate``, construction)."""

    models: list[type[BaseModel]]


class _Recorder:
    """A model's validator that notes each call, then validates as the model's own."""

    def __init__(self, model: type[BaseModel], inner: Any, seen: Watched) -> None:
        self._model, self._inner, self._seen = model, inner, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def validate_python(self, *args: Any, **kwargs: Any) -> Any:
        self._seen.models.append(self._model)
        return self._inner.validate_python(*args, **kwargs)


def _models(base: type[BaseModel] = BaseModel) -> Iterator[type[BaseModel]]:
    for sub in base.__subclasses__():
        if sub.__module__.startswith(("broadcaster.", "tests.")):
            yield sub
        yield from _models(sub)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Watched:
    """Every model of the project (and the tests) watched while the test runs."""
    seen = Watched([])
    for model in set(_models()):
        inner = model.__dict__.get("__pydantic_validator__")
        if inner is not None and model.__pydantic_complete__:
            monkeypatch.setattr(model, "__pydantic_validator__", _Recorder(model, inner, seen))
    return seen


async def validating_models(
    app: FastAPI, seen: Watched, method: str, path: str, body: Any
) -> list[type[BaseModel]]:
    """The models that validated while the app read this request, up to its answer's
    start (a chat's answer streams on; it is not waited for)."""
    seen.models.clear()
    content = b"" if isinstance(body, NotSet) else json.dumps(body).encode()
    await answer_started(app, method, path, content)
    return list(dict.fromkeys(seen.models))


async def answer_started(app: FastAPI, method: str, path: str, content: bytes) -> int:
    """Send the request to ``app`` over ASGI; its answer's status, once it starts (the
    app is then cancelled, as a client that leaves)."""
    head = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in head.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    sent = [{"type": "http.request", "body": content, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return sent.pop() if sent else {"type": "http.disconnect"}

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                    group.cancel_scope.cancel()

            group.start_soon(app, scope, receive, send)
    return status[0]


def documented_model(
    models: list[type[BaseModel]], documented: dict[str, Any]
) -> type[BaseModel] | str:
    """The model among ``models`` whose schema is ``documented``; else what is wrong."""
    for model in models:
        if openapi_requests.schema(model) == documented:
            return model
    names = ", ".join(m.__name__ for m in models) or "none"
    return f"no model that validated the body has the documented schema (validated: {names})"


# --- the model and its schema agree on bodies ---


def _integral_float(error: Any) -> bool:
    """JSON Schema's integer takes ``2.0``; the models take an integer written as one."""
    value = error.get("input")
    return (
        error["type"] == "int_type"
        and isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
    )


BEYOND_THE_SCHEMA = {
    "base64 data that does not decode, or is not of its media type (a PNG's, a PDF's)": (
        lambda error: (
            error["type"] == "value_error"
            and (error["loc"][-1:] == ("data",) or "data is not" in error["msg"])
        )
    ),
    "an integer written as 2.0": _integral_float,
}
"""What a model refuses that its schema cannot say: a body refused for these alone is no
disagreement."""


def disagreements(
    model: type[BaseModel], documented: dict[str, Any], bodies: list[Any]
) -> list[str]:
    """The bodies ``model`` accepts that ``documented`` refuses, and those it refuses
    that ``documented`` allows (but for ``BEYOND_THE_SCHEMA``)."""
    judge = jsonschema_rs.validator_for(documented)
    found = []
    for body in bodies:
        if isinstance(body, bytes):  # not JSON at all: the body reader's to refuse
            continue
        value = {} if isinstance(body, NotSet) else body
        valid = judge.is_valid(value)
        try:
            model.model_validate(value)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            allowed = all(any(ok(e) for ok in BEYOND_THE_SCHEMA.values()) for e in errors)
            if valid and not allowed:
                found.append(f"refused, though the schema allows it: {_shown(value, errors)}")
            continue
        if not valid:
            found.append(f"accepted, though the schema refuses it: {_shown(value, None)}")
    return found


def _shown(value: Any, errors: list[Any] | None) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)[:300]
    if errors:
        text += f" ({errors[0]['loc']}: {errors[0]['msg']})"
    return text


# --- bodies from the document ---


@cache
def _api() -> Any:
    return schemathesis.openapi.from_dict(DOCUMENT)


def drawn(label: str, examples: int) -> list[Case]:
    """Requests schemathesis makes for the operation, ``examples`` of each mode."""
    operation = next(r.ok() for r in _api().get_all_operations() if r.ok().label == label)
    cases: list[Case] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @for_each_case(operation.as_strategy(generation_mode=mode), examples)
        def draw(case: Case) -> None:
            cases.append(case)

        draw()
    return cases


@pytest.fixture(scope="module")
async def app(redis_url: str) -> AsyncIterator[FastAPI]:
    """A front-end that takes every body: tokens on (a token route answers 409 without),
    ``KEY`` known, on the suite's Redis."""
    keys = f"{credentials.hash_key(KEY)}:{'+'.join(sorted(credentials.RIGHTS))}"
    # A worker's claim answers at once (204) when no job is queued.
    settings = Settings(token_secret=SECRET, api_keys=keys, worker_claim_wait_seconds=0)  # type: ignore[arg-type]
    application = create_app(settings, redis_url)
    async with application.router.lifespan_context(application):
        yield application


_TOOL_TURNS = [
    {"role": "user", "content": "add 1 and 2"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "adding", "signature": ""},
            {"type": "text", "text": "Adding."},
            {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1, "b": 2}},
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "3"}],
    },
]
BLOCK_BODIES = {
    "text": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    "a tool's turn": _TOOL_TURNS,
    "an image by URL": [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}
            ],
        }
    ],
    "a type of its own": [{"role": "user", "content": [{"type": "my_block", "x": 1}]}],
}
"""Messages of each kind of content block a generation's request takes."""


@pytest.mark.parametrize("kind", sorted(BLOCK_BODIES))
def test_every_kind_of_block_the_model_takes_the_document_allows(kind: str) -> None:
    # The schema's blocks are a ``oneOf``: one of them alone must match each block (a
    # checked type matched the pass-through block's pattern too, and was refused).
    body = {"messages": BLOCK_BODIES[kind], "max_tokens": 8}
    GenerationRequest.model_validate(body)
    judge = jsonschema_rs.validator_for(OPERATIONS["POST /v1/generations"])
    errors = [e.message[:300] for e in judge.iter_errors(body)]
    assert not errors, errors


def test_every_json_body_of_the_document_is_checked_here() -> None:
    """The operations with a request body: a JSON one (each checked below), or the
    Durable Streams' raw data."""
    with_body = {
        f"{method.upper()} {path}"
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    }
    assert len(OPERATIONS) >= 15, sorted(OPERATIONS)
    assert with_body == set(OPERATIONS) | RAW_DATA


@pytest.mark.parametrize("label", sorted(OPERATIONS))
async def test_the_documented_body_is_the_model_its_handler_validates(
    app: FastAPI, watched: Watched, label: str
) -> None:
    documented = OPERATIONS[label]
    cases = drawn(label, EXAMPLES)
    valid = jsonschema_rs.validator_for(documented)
    sent = next(
        c for c in cases if not isinstance(c.body, bytes) and valid.is_valid(_value(c.body))
    )
    method, path = label.split(" ", 1)
    path = path.format_map({**(sent.path_parameters or {}), **PATH_VALUES})
    models = await validating_models(app, watched, method, path, sent.body)
    model = documented_model(models, documented)
    assert not isinstance(model, str), f"{label}: {model}"
    found = disagreements(model, documented, [c.body for c in cases])
    assert not found, f"{label}, {model.__name__}:\n" + "\n".join(found[:10])


def _value(body: Any) -> Any:
    return {} if isinstance(body, NotSet) else body


# --- the checks can fail ---


class Documented(BaseModel):
    ttl_seconds: int


class Validated(BaseModel):
    ttl_seconds: int
    sub: str


def _app_of(model: type[BaseModel], openapi_extra: dict[str, Any]) -> FastAPI:
    """A route documenting its body by ``openapi_extra`` and validating it as ``model``."""
    small = FastAPI()

    @small.post("/x", openapi_extra=openapi_extra)
    async def route(request: Request) -> None:
        with contextlib.suppress(ValidationError):
            model.model_validate(json.loads(await request.body()))

    return small


HAND_WRITTEN = {
    "type": "object",
    "properties": {"ttl_seconds": {"type": "integer", "minimum": 1}, "sub": {"type": "string"}},
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("validates", "openapi_extra"),
    [
        (Validated, openapi_requests.body(Documented)),
        (TokenBody, {"requestBody": {"content": {"application/json": {"schema": HAND_WRITTEN}}}}),
    ],
    ids=["another model", "hand-written"],
)
async def test_a_body_documented_apart_from_its_model_is_found(
    watched: Watched, validates: type[BaseModel], openapi_extra: dict[str, Any]
) -> None:
    small = _app_of(validates, openapi_extra)
    documented = body_operations(small.openapi())["POST /x"]
    models = await validating_models(small, watched, "POST", "/x", {"ttl_seconds": 1})
    assert models == [validates]
    assert isinstance(documented_model(models, documented), str)
    assert documented_model(models, openapi_requests.schema(validates)) is validates


class Lax(BaseModel):
    wait_seconds: float
    name: str = ""


def test_a_model_laxer_or_stricter_than_its_schema_is_found() -> None:
    documented = openapi_requests.schema(Lax)
    assert disagreements(Lax, documented, [{"wait_seconds": 1}, {"wait_seconds": 1.5}]) == []
    lax = disagreements(Lax, documented, [{"wait_seconds": False}, {"wait_seconds": "2"}])
    assert len(lax) == 2 and all(f.startswith("accepted") for f in lax), lax
    stricter = {**documented, "properties": {**documented["properties"], "name": {}}}
    strict = disagreements(Lax, stricter, [{"wait_seconds": 1, "name": 3}])
    assert len(strict) == 1 and strict[0].startswith("refused"), strict
