"""Bad input against a real front-end (docs/reliability.md, "Bad input"): schemathesis generates
requests from the app's own ``/openapi.json`` (valid and invalid, for every operation),
then hypothesis throws malformed bodies, odd stream ids and resume points at the routes.
Every answer must be a 2xx/3xx or a JSON 4xx with ``error`` and ``message``: never a 5xx
(503 aside, which is the documented "busy, retry" answer). Afterwards the server still
serves a real publish and read, and its log holds no unhandled exception.

The front-end is a uvicorn process on 127.0.0.1 with a Redis server of this module's own
(no worker reads its job queue, so generations simply stay queued).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from broadcaster.core import keys
from broadcaster.core.embedded import EmbeddedRedis
from tests.support.procs import Proc, advertise_providers, read_sse, start_frontend

SCHEMA_EXAMPLES = 40
"""schemathesis examples per operation and mode: ~600 requests, ~20 s on 2 cores."""
HTTP_EXAMPLES = 60
"""hypothesis examples per HTTP property below."""

TALLY: Counter[str] = Counter()
"""Requests sent and statuses seen, printed at the end (docs/reliability.md)."""


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("fuzz-redis"), persistent=False)
    server.start(reuse=False)
    advertise_providers(server.url)  # generation requests reach the queue, not only 422
    yield server
    server.stop()


@pytest.fixture(scope="module")
def frontend(fuzz_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_frontend(
        fuzz_redis.url,
        tmp_path_factory.mktemp("fuzz"),
        "frontend-fuzz",
        env={
            "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
            "BROADCASTER_MAX_BODY_BYTES": "65536",
            "BROADCASTER_MAX_EVENT_BYTES": "4096",
        },
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def http(frontend: Proc) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=frontend.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def ended_stream(http: httpx.Client) -> str:
    """A stream of three events that has ended: reading it always finishes."""
    sid = "ended-" + secrets.token_hex(4)
    r = http.post(
        f"/v1/streams/{sid}/events", json=[{"type": "a"}, {"type": "b"}, {"type": "finish"}]
    )
    assert r.status_code == 201, r.text
    return sid


def check_answer(status: int, body: bytes, what: object, method: str = "GET") -> None:
    """A client's mistake is a JSON 4xx with ``error`` and ``message``; never a 5xx
    other than the documented 503 (busy, Redis unavailable). (An answer to HEAD has no
    body by definition.)"""
    TALLY[f"{status // 100}xx"] += 1
    assert status < 500 or status == 503, (status, body[:300], what)
    if (400 <= status < 500 or status == 503) and method != "HEAD":
        payload = json.loads(body)
        assert isinstance(payload, dict), (status, body[:300], what)
        assert isinstance(payload.get("error"), str), (status, body[:300], what)
        assert isinstance(payload.get("message"), str), (status, body[:300], what)


# --- schemathesis, from the app's own OpenAPI schema ---


def api_operations(frontend: Proc) -> list[Any]:
    schema = schemathesis.openapi.from_url(frontend.url + "/openapi.json")
    schema.config.update(request_timeout=10)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error(frontend: Proc, mode: GenerationMode) -> None:
    """Every operation of /openapi.json, with data that fits its schema (positive) and
    data that breaks it (negative)."""
    operations = api_operations(frontend)
    session = requests.Session()
    skipped: list[str] = []
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=SCHEMA_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Case) -> None:
            # Sent with requests, streaming: a stream that has not ended answers 200 and
            # never finishes, and its status and headers are what matters here.
            kwargs = case.as_transport_kwargs(base_url=frontend.url)
            with session.request(**kwargs, stream=True, timeout=10) as response:
                body = b"" if response.status_code == 200 else response.content
            TALLY["schemathesis"] += 1
            check_answer(response.status_code, body, case.as_curl_command(), case.method)

        try:
            run()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters or body.
            assert mode is GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    # No invalid request exists for /healthz and /readyz, nor for the Durable Streams
    # routes, whose one parameter is any path (their headers are checked by the
    # conformance suite, tests/clients/test_durable_conformance.py).
    free = {"GET /healthz", "GET /readyz"} | {
        f"{m} /v1/stream/{{path}}" for m in ("GET", "HEAD", "PUT", "POST", "DELETE")
    }
    assert set(skipped) <= free, skipped


# --- hypothesis: bodies, ids and resume points over HTTP ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
generation_like = st.fixed_dictionaries(
    {},
    optional={
        "prompt": json_values,
        "messages": st.lists(
            st.fixed_dictionaries({}, optional={"role": json_values, "content": json_values}),
            max_size=2,
        )
        | json_values,
        "model": json_values,
        "max_tokens": json_values,
        "system": json_values,
        "id": st.text(max_size=80) | json_values,
        "metadata": json_values,
        "extra": json_values,
    },
)
"""Requests shaped like a generation request, with every field any JSON at all."""


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


BAD_BODIES = [
    b"",
    b"{",
    b'{"type": "x", "a": ',  # truncated
    b'{"type": "x"}garbage',
    b'{"type": "x", "a": "\xff\xfe"}',  # invalid UTF-8
    b'{"type": "x", "a": "\\ud800"}',  # a lone surrogate
    b'{"type": "x", "a": NaN}',
    b'{"type": "x", "a": 1' + b"0" * 5000 + b"}",  # over Python's int digit limit
    nested(100_000).encode(),
    ('{"type": "x", "a": ' + nested(keys.MAX_JSON_DEPTH) + "}").encode(),
    b"\x00\x01\x02",
]


@settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None)
@given(body=st.binary(max_size=300) | st.sampled_from(BAD_BODIES))
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark
def test_raw_bodies_get_4xx(http: httpx.Client, body: bytes) -> None:
    for path in ("/v1/streams/raw-body/events", "/v1/generations", "/v1/chat"):
        r = http.post(path, content=body, headers={"content-type": "application/json"})
        check_answer(r.status_code, r.content, body[:100])


@settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None)
@given(request=generation_like)
@example(request={"prompt": "x", "max_tokens": True})
@example(request={"prompt": "x", "system": "\udfff"})
@example(request={"prompt": "x", "metadata": {"a": float("nan")}})
def test_generation_requests_get_202_or_4xx(http: httpx.Client, request: dict[str, Any]) -> None:
    try:
        body = json.dumps(request).encode()
    except ValueError:
        return  # not expressible as JSON text at all
    r = http.post("/v1/generations", content=body, headers={"content-type": "application/json"})
    check_answer(r.status_code, r.content, request)
    if r.status_code == 202:
        assert isinstance(request.get("prompt"), str) != isinstance(request.get("messages"), list)


@settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None)
@given(event=json_values | st.lists(json_values, max_size=3))
def test_event_bodies_get_201_or_4xx(http: httpx.Client, event: Any) -> None:
    try:
        body = json.dumps(event).encode()
    except ValueError:
        return
    sid = "ev-" + secrets.token_hex(6)
    r = http.post(f"/v1/streams/{sid}/events", content=body)
    check_answer(r.status_code, r.content, event)


ODD_IDS = [
    "/",
    "a/",
    "a*",
    "{x}",
    "a:b",
    "../x",
    "..",
    "x" * 10_000,
    "x" * 65,
    "%00",
    " ",
    "é",
    "a/b",
]


@settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None)
@given(stream_id=st.text(min_size=1, max_size=100) | st.sampled_from(ODD_IDS))
def test_odd_stream_ids_never_reach_redis(http: httpx.Client, stream_id: str) -> None:
    # Dots too: a client would make ".." of "/v1/streams/../events" a step up the path.
    quoted = quote(stream_id, safe="").replace(".", "%2E")
    valid = keys.STREAM_ID_RE.match(stream_id) is not None
    answers = [
        http.post(f"/v1/streams/{quoted}/events", json={"type": "x"}),
        http.get(f"/v1/generations/{quoted}"),
        http.post(f"/v1/generations/{quoted}/cancel"),
        http.get(f"/v1/streams/{quoted}/events", headers={"last-event-id": "999999"}),
    ]
    for r in answers:
        check_answer(r.status_code, r.content, stream_id)
        if not valid:
            assert r.status_code in (404, 405, 422), (stream_id, r.status_code)
    if valid:
        assert answers[0].status_code in (201, 409)


resume_points = (
    st.integers().map(str)
    | st.integers(min_value=-(10**30), max_value=10**30).map(str)
    | st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
    | st.sampled_from(["-1", "1" * 10_000, "9" * 19, "3.", "3.abc", "3.a.b", "0", "00", "+3"])
)


@settings(max_examples=HTTP_EXAMPLES, deadline=None, database=None)
@given(point=resume_points)
def test_resume_points_get_a_clear_answer(
    http: httpx.Client, ended_stream: str, point: str
) -> None:
    """The stream has ended at seq 3: 200 (the rest), 204 (seen it all), 409 (past the
    end) or 400 (not an id): nothing else, as a header or as the query parameter."""
    url = f"/v1/streams/{ended_stream}/events"
    for r in (
        http.get(url, headers={"last-event-id": point}),
        http.get(url, params={"last_event_id": point}),
    ):
        check_answer(r.status_code, r.content, point)
        assert r.status_code in (200, 204, 400, 409), (point, r.status_code)
        if r.status_code == 200:
            assert r.content.endswith(b"data: [DONE]\n\n")


# --- limits, each enforced (event size and events/bytes per stream: tests/test_security.py) ---


def test_a_body_over_the_limit_is_413_declared_or_not(http: httpx.Client) -> None:
    big = json.dumps({"type": "x", "blob": "y" * 70_000}).encode()  # limit here: 65536
    declared = http.post("/v1/streams/big/events", content=big)
    assert declared.status_code == 413 and declared.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts as it reads
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = http.post("/v1/streams/big/events", content=chunks())
    assert streamed.status_code == 413 and streamed.json()["error"] == "too_large"


def test_deep_nesting_is_refused_not_a_500(http: httpx.Client) -> None:
    """Regression: content nested ~960 deep parsed, then json.dumps hit the recursion
    limit storing the generation request, and the front-end answered 500."""
    # Where parsing succeeds but encoding fails depends on the stack depth at each call:
    # sweep the window around it (the 500 was at 960 here).
    for depth in range(900, 1000, 2):
        deep = nested(depth, "")
        for path, body in [
            (
                "/v1/generations",
                '{"messages": [{"role": "user", "content": [{"a": ' + deep + "}]}]}",
            ),
            ("/v1/generations", '{"prompt": "x", "metadata": {"a": ' + deep + "}}"),
            ("/v1/streams/deep/events", '{"type": "x", "a": ' + deep + "}"),
        ]:
            r = http.post(path, content=body)
            assert r.status_code == 422, (depth, r.text)
            assert r.json()["error"] in ("too_deep", "invalid_json"), r.text
    r = http.post("/v1/streams/deep/events", content=nested(keys.MAX_JSON_DEPTH + 1, "{}"))
    assert r.status_code == 422 and r.json()["error"] == "too_deep"
    at_limit = '{"type": "x", "a": ' + nested(keys.MAX_JSON_DEPTH - 1) + "}"
    assert http.post("/v1/streams/deep/events", content=at_limit).status_code == 201


def test_a_slash_in_a_stream_id_is_404_not_a_redirect(http: httpx.Client) -> None:
    """Regression: ``/v1/generations/%2F`` was answered 307 (FastAPI's trailing-slash
    redirect) instead of the contract's 404 for a bad id."""
    for path in ("/v1/generations/%2F", "/v1/streams/%2F/events", "/v1/generations/a%2F"):
        r = http.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", (path, r.text)


def test_generation_requests_that_json_cannot_carry_are_422(http: httpx.Client) -> None:
    """Regression: a lone surrogate in ``system`` or NaN in ``metadata`` was queued (202)
    although no model provider can be sent it; ``max_tokens: true`` was taken as 1."""
    for body in (
        b'{"prompt": "x", "system": "\\udfff"}',
        b'{"prompt": "x", "metadata": {"\\ud800": 1}}',
        b'{"prompt": "x", "metadata": {"a": NaN}}',
        b'{"prompt": "x", "max_tokens": true}',
        b'{"prompt": "x", "max_tokens": "5"}',
    ):
        r = http.post("/v1/generations", content=body)
        assert r.status_code == 422, (body, r.text)


# --- and the server still serves ---


@pytest.mark.anyio
async def test_the_server_still_serves_after_the_fuzzing(frontend: Proc) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(frontend.url + "/healthz")).status_code == 200
        assert (await client.get(frontend.url + "/readyz")).status_code == 200
        sid = "after-" + secrets.token_hex(4)
        r = await client.post(
            f"{frontend.url}/v1/streams/{sid}/events",
            json=[{"type": "data-x", "n": 1}, {"type": "finish"}],
        )
        assert r.status_code == 201
        result = await read_sse(client, f"{frontend.url}/v1/streams/{sid}/events")
        assert result.ids == [1, 2] and result.done
    assert frontend.alive()
    log = frontend.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
    print(
        f"[bad input] requests={sum(v for k, v in TALLY.items() if k.endswith('xx'))} {dict(TALLY)}"
    )
