"""The worker protocol (``/v1/worker``, docs/worker-protocol.md) against a real front-end
and Redis: a worker that is not Python claims a job of its provider, writes it under its
lease, renews it, hands it back, reads stop and steering; a writer whose lease lapsed is
fenced; bad input is a clear 4xx. No Python worker runs: the test is the HTTP worker.

One stack for the module (a front-end with a one-second lease, so a lapse is quick);
each test uses a provider of its own, so no test claims another's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from broadcaster.auth import credentials
from tests.support.procs import read_sse, start_frontend
from tests.support.stacks import Stack, start_stack

LEASE_SECONDS = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("worker-protocol")
    env = {
        "BROADCASTER_WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "BROADCASTER_WORKER_CLAIM_WAIT_SECONDS": "10",
    }
    s = start_stack(base, "proto", None, frontend_env=env)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.frontend.url, timeout=30) as client:
        yield client


def claim(api: httpx.Client, provider: str, wait: float = 5) -> dict[str, Any]:
    r = api.post("/v1/worker/claim", json={"provider": provider, "wait_seconds": wait})
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def start(api: httpx.Client, provider: str, prompt: str = "Say hi") -> str:
    """A generation for ``provider``: first advertised by a claim that finds nothing."""
    r = api.post("/v1/worker/claim", json={"provider": provider, "wait_seconds": 0})
    assert r.status_code == 204, r.text
    r = api.post("/v1/generations", json={"provider": provider, "prompt": prompt})
    assert r.status_code == 202, r.text
    gid: str = r.json()["id"]
    return gid


def append(
    api: httpx.Client, job: dict[str, Any], after: int, events: list[dict[str, Any]]
) -> httpx.Response:
    return api.post(
        f"/v1/worker/jobs/{job['generation_id']}/events",
        json={"lease": job["lease"], "after": after, "events": events},
    )


def renew(api: httpx.Client, job: dict[str, Any]) -> httpx.Response:
    return api.post(f"/v1/worker/jobs/{job['generation_id']}/lease", json={"lease": job["lease"]})


def release(api: httpx.Client, job: dict[str, Any]) -> httpx.Response:
    return api.post(f"/v1/worker/jobs/{job['generation_id']}/release", json={"lease": job["lease"]})


OPENING = [
    {"type": "start", "messageId": "m1"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t1"},
    {"type": "text-delta", "id": "t1", "delta": "Hel"},
]
ENDING = [
    {"type": "text-delta", "id": "t1", "delta": "lo."},
    {"type": "text-end", "id": "t1"},
    {"type": "finish-step"},
    {"type": "finish"},
]


def events_of(stack: Stack, gid: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            found = await read_sse(client, f"{stack.frontend.url}/v1/streams/{gid}/events")
        assert found.status == 200, found.raw
        return [e.json() for e in found.typed()]

    return asyncio.run(read())


def test_a_claim_advertises_its_provider_and_waits_for_nothing_with_no_job(
    stack: Stack, api: httpx.Client
) -> None:
    r = api.post("/v1/worker/claim", json={"provider": "proto-idle", "wait_seconds": 0.2})
    assert r.status_code == 204
    providers = api.get("/readyz").json()["providers"]
    assert providers["proto-idle"]["live_workers"] is True
    # A provider nobody ever served is refused; this one is queued.
    refused = api.post("/v1/generations", json={"provider": "proto-never", "prompt": "hi"})
    assert refused.status_code == 422
    assert (
        api.post("/v1/generations", json={"provider": "proto-idle", "prompt": "hi"}).status_code
        == 202
    )


def test_a_job_is_claimed_written_and_finished(stack: Stack, api: httpx.Client) -> None:
    gid = start(api, "proto-run", "Say hello")
    job = claim(api, "proto-run")
    assert job["generation_id"] == gid
    assert job["last_event_id"] == 0 and job["events"] == [] and job["events_complete"]
    assert job["request"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert job["message_id"] == gid and job["attempt"] == 1
    assert job["signals"] == {"stop": False, "ended": None, "steer": []}

    first = append(api, job, 0, OPENING)
    assert first.status_code == 200, first.text
    assert first.json()["last_event_id"] == 4 and first.json()["duplicate"] is False
    # The same batch again (its answer lost): recognised, not written twice.
    again = append(api, job, 0, OPENING)
    assert again.status_code == 200 and again.json() == {**first.json(), "duplicate": True}
    # Another batch at a seq the stream is not at: refused, and told where it is.
    wrong = append(api, job, 2, ENDING)
    assert wrong.status_code == 409
    assert wrong.json()["error"] == "seq_mismatch" and wrong.json()["last_event_id"] == 4
    assert renew(api, job).json()["signals"]["stop"] is False

    done = append(api, job, 4, ENDING)
    assert done.status_code == 200, done.text
    assert done.json()["signals"] == {"stop": True, "ended": "finish", "steer": []}
    status = api.get(f"/v1/generations/{gid}").json()
    assert status["status"] == "completed" and status["text"] == "Hello."
    assert [e["type"] for e in events_of(stack, gid)] == [e["type"] for e in OPENING + ENDING]
    # Its job is done: nothing left to claim.
    assert (
        api.post("/v1/worker/claim", json={"provider": "proto-run", "wait_seconds": 0}).status_code
        == 204
    )


def test_a_writer_whose_lease_lapsed_is_fenced_and_its_successor_goes_on(
    stack: Stack, api: httpx.Client
) -> None:
    gid = start(api, "proto-lapse")
    first = claim(api, "proto-lapse")
    assert append(api, first, 0, OPENING).status_code == 200
    # The first writer stops renewing (a pause, a partition): after its lease the job
    # is taken over, with what it wrote.
    second = claim(api, "proto-lapse", wait=LEASE_SECONDS * 10)
    assert second["generation_id"] == gid and second["lease"] != first["lease"]
    assert second["attempt"] == 2 and second["last_event_id"] == 4
    assert second["events"] == OPENING

    for refused in (append(api, first, 4, ENDING), renew(api, first), release(api, first)):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "fenced"
    assert append(api, second, 4, ENDING).status_code == 200
    assert api.get(f"/v1/generations/{gid}").json()["text"] == "Hello."


def test_a_job_handed_back_is_taken_over_at_once(stack: Stack, api: httpx.Client) -> None:
    gid = start(api, "proto-back")
    first = claim(api, "proto-back")
    assert append(api, first, 0, OPENING[:2]).status_code == 200
    r = release(api, first)
    assert r.status_code == 200 and r.json() == {"generation_id": gid, "status": "queued"}
    second = claim(api, "proto-back", wait=0.5)  # no lease to wait for
    assert second["generation_id"] == gid and second["events"] == OPENING[:2]
    assert append(api, first, 2, ENDING).json()["error"] == "fenced"
    assert append(api, second, 2, ENDING[-1:]).status_code == 200


def test_a_stop_reaches_the_worker(stack: Stack, api: httpx.Client) -> None:
    gid = start(api, "proto-stop")
    job = claim(api, "proto-stop")
    assert append(api, job, 0, OPENING).status_code == 200
    assert api.post(f"/v1/generations/{gid}/cancel").status_code == 202
    renewed = renew(api, job)
    assert renewed.status_code == 200
    assert renewed.json()["signals"] == {"stop": True, "ended": "abort", "steer": []}
    late = append(api, job, 4, ENDING)
    assert late.status_code == 409 and late.json()["error"] == "ended"
    assert late.json()["ended"] == "abort"
    assert api.get(f"/v1/generations/{gid}").json()["status"] == "cancelled"


def test_steering_messages_reach_the_worker_and_leave_once_recorded(
    stack: Stack, api: httpx.Client
) -> None:
    api.post("/v1/worker/claim", json={"provider": "proto-steer", "wait_seconds": 0})
    chat = "proto-steer-chat"
    first = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Write a poem"}]}
    body = {"id": chat, "messages": [first], "provider": "proto-steer"}
    with api.stream("POST", "/v1/chat", json=body) as answer:
        assert answer.status_code == 200
        job = claim(api, "proto-steer")
        assert job["chat_id"] == chat
        assert append(api, job, 0, OPENING).status_code == 200
        second = {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Shorter!"}]}
        steer = {**body, "messages": [first, second], "multitask": "steer"}
        assert api.post("/v1/chat", json=steer).status_code == 200
        signals = renew(api, job).json()["signals"]
        assert signals["steer"] == [{"id": "u2", "text": "Shorter!"}]
        recorded = [
            {"type": "text-end", "id": "t1"},
            {"type": "finish-step"},
            {"type": "data-steer", "id": "u2", "data": signals["steer"][0]},
        ]
        after = append(api, job, 4, recorded)
        assert after.status_code == 200 and after.json()["signals"]["steer"] == []
        assert append(api, job, 7, [{"type": "finish"}]).status_code == 200
        types = [line for line in answer.iter_lines() if line.startswith("data: {")]
    assert any('"data-steer"' in line for line in types)


def test_a_worker_asks_a_person_and_gets_the_decision_with_its_next_claim(
    stack: Stack, api: httpx.Client
) -> None:
    """An append with ``wait``: the front-end writes a ``tool-approval-request`` per call
    and the generation waits holding no worker (the lease is over); the same append sent
    again after a lost answer is recognised; a decision queues the job, and the next
    claim carries it in ``events``; the worker goes on from there."""
    gid = start(api, "proto-ask", "Delete the file")
    job = claim(api, "proto-ask")
    call = {"toolCallId": "call-rm", "toolName": "delete", "input": {"path": "/tmp/x"}}
    asking = [
        *OPENING[:2],
        {"type": "tool-input-available", **call},
    ]
    body = {
        "lease": job["lease"],
        "after": 0,
        "events": asking,
        "wait": {"approvals": [call], "timeout_seconds": 600},
    }
    asked = api.post(f"/v1/worker/jobs/{gid}/events", json=body)
    assert asked.status_code == 200, asked.text
    assert asked.json()["last_event_id"] == len(asking) + 1
    again = api.post(f"/v1/worker/jobs/{gid}/events", json=body)  # its answer was lost
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert renew(api, job).status_code == 409  # the lease is over: nobody holds it
    state = api.get(f"/v1/generations/{gid}").json()
    assert state["status"] == "waiting", state
    request = events_of_until(stack, gid, len(asking) + 1)[-1]
    assert request["type"] == "tool-approval-request" and request["toolCallId"] == "call-rm"
    assert request["expiresAt"] and request["approvalId"].startswith("apr_")
    # Nothing to claim while it waits.
    idle = api.post("/v1/worker/claim", json={"provider": "proto-ask", "wait_seconds": 0.5})
    assert idle.status_code == 204
    decided = api.post(
        f"/v1/generations/{gid}/approvals",
        json={"approvalId": request["approvalId"], "approved": True, "toolCallId": "call-rm"},
    )
    assert decided.status_code in (200, 202), decided.text
    resumed = claim(api, "proto-ask")
    assert resumed["generation_id"] == gid and resumed["last_event_id"] > len(asking) + 1
    [decision] = [e for e in resumed["events"] if e["type"] == "data-approval"]
    assert decision["data"]["approved"] is True and decision["data"]["toolCallId"] == "call-rm"
    done = [
        {"type": "tool-output-available", "toolCallId": "call-rm", "output": "deleted"},
        {"type": "finish-step"},
        {"type": "finish"},
    ]
    finished = append(api, resumed, resumed["last_event_id"], done)
    assert finished.status_code == 200, finished.text
    assert api.get(f"/v1/generations/{gid}").json()["status"] == "completed"


def test_a_wait_is_refused_beside_an_end_or_with_a_call_twice(
    stack: Stack, api: httpx.Client
) -> None:
    gid = start(api, "proto-ask-bad")
    job = claim(api, "proto-ask-bad")
    call = {"toolCallId": "c1", "toolName": "t"}
    for events, approvals in (
        ([{"type": "start"}, {"type": "finish"}], [call]),
        ([{"type": "start"}], [call, call]),
        ([{"type": "start"}], []),
    ):
        body = {"lease": job["lease"], "after": 0, "events": events}
        r = api.post(
            f"/v1/worker/jobs/{gid}/events", json={**body, "wait": {"approvals": approvals}}
        )
        assert r.status_code == 422 and r.json()["error"] == "invalid_request", r.text
    # Nothing was written: the job is still this worker's, at seq 0.
    assert append(api, job, 0, [{"type": "start"}]).json()["last_event_id"] == 1


def events_of_until(stack: Stack, gid: str, count: int) -> list[dict[str, Any]]:
    """The stream's first ``count`` events (a waiting generation's stream stays open)."""

    async def read() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            found = await read_sse(
                client, f"{stack.frontend.url}/v1/streams/{gid}/events", stop_after=count
            )
        return [e.json() for e in found.typed()]

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/worker/claim", {"provider": "Not A Name"}, 422, "invalid_request"),
        ("/v1/worker/claim", {"provider": "p", "wait_seconds": 61}, 422, "invalid_request"),
        ("/v1/worker/claim", {"provider": "p", "extra": 1}, 422, "invalid_request"),
        ("/v1/worker/jobs/g1/lease", {"lease": "not-a-lease"}, 422, "invalid_request"),
        ("/v1/worker/jobs/g1/lease", {"lease": "p.1-0.AAAAAAAAAAAAAAAAAAAAAA"}, 404, "not_found"),
        (
            "/v1/worker/jobs/g1/events",
            {"lease": "p.1-0.AAAAAAAAAAAAAAAAAAAAAA", "after": 0, "events": [{"type": "finish"}]},
            404,
            "not_found",
        ),
        ("/v1/worker/jobs/g1/release", {"lease": "p.1-0.AAAAAAAAAAAAAAAAAAAAAA"}, 404, "not_found"),
        (
            "/v1/worker/jobs/g1/events",
            {"lease": "p.1-0.AAAAAAAAAAAAAAAAAAAAAA", "after": 0, "events": []},
            422,
            "invalid_request",
        ),
        (
            "/v1/worker/jobs/g1/events",
            {
                "lease": "p.1-0.AAAAAAAAAAAAAAAAAAAAAA",
                "after": 0,
                "events": [{"type": "text-delta"}] * 1001,
            },
            413,
            "too_many_events",
        ),
    ],
)
def test_bad_input_is_a_clear_4xx(
    api: httpx.Client, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    r = api.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code and r.json()["message"]


def test_bad_events_and_strangers_are_refused_and_nothing_is_lost(
    stack: Stack, api: httpx.Client
) -> None:
    gid = start(api, "proto-bad")
    job = claim(api, "proto-bad")
    assert append(api, job, 0, OPENING).status_code == 200
    terminal_first = append(api, job, 4, [{"type": "finish"}, {"type": "text-end", "id": "t1"}])
    assert terminal_first.status_code == 422 and terminal_first.json()["error"] == "invalid_event"
    bad_type = append(api, job, 4, [{"type": "Text Delta"}])
    assert bad_type.status_code == 422
    stranger = {**job, "lease": "proto-bad.1-0.AAAAAAAAAAAAAAAAAAAAAA"}
    assert append(api, stranger, 4, ENDING).json()["error"] == "fenced"
    assert renew(api, stranger).json()["error"] == "fenced"
    not_json = api.post(
        f"/v1/worker/jobs/{gid}/events", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    huge = api.post(f"/v1/worker/jobs/{gid}/events", content=b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413
    # The lease holder goes on where it was.
    assert append(api, job, 4, ENDING).status_code == 200
    assert [e["type"] for e in events_of(stack, gid)] == [e["type"] for e in OPENING + ENDING]


def test_only_a_key_with_the_work_right_opens_the_worker_routes(
    stack: Stack, tmp_path: Path
) -> None:
    worker_key, producer_key = "wk-" + "a" * 20, "pk-" + "b" * 20
    keys = f"{credentials.hash_key(worker_key)}:work,{credentials.hash_key(producer_key)}"
    fe = start_frontend(stack.redis.url, tmp_path, "proto-keys", {"BROADCASTER_API_KEYS": keys})
    try:
        with httpx.Client(base_url=fe.url, timeout=30) as client:
            body = {"provider": "proto-keys", "wait_seconds": 0}
            assert client.post("/v1/worker/claim", json=body).status_code == 401
            producer = {"authorization": f"Bearer {producer_key}"}
            assert client.post("/v1/worker/claim", json=body, headers=producer).status_code == 403
            # A key with every producer's right may not work, and a worker may not produce.
            worker = {"authorization": f"Bearer {worker_key}"}
            assert client.post("/v1/worker/claim", json=body, headers=worker).status_code == 204
            made = client.post(
                "/v1/generations", json={"provider": "proto-keys", "prompt": "hi"}, headers=worker
            )
            assert made.status_code == 403
    finally:
        fe.stop()


def test_a_worker_reports_its_usage_with_its_terminal_event(
    stack: Stack, api: httpx.Client
) -> None:
    usage = {
        "inputTokens": 1200,
        "inputTokenDetails": {
            "noCacheTokens": 100,
            "cacheReadTokens": 1000,
            "cacheWriteTokens": 100,
        },
        "outputTokens": 40,
        "outputTokenDetails": {"textTokens": 30, "reasoningTokens": 10},
        "totalTokens": 1240,
    }
    gid = start(api, "proto-usage")
    job = claim(api, "proto-usage")
    finish = {"type": "finish", "messageMetadata": {"model": "my-model-1", "usage": usage}}
    assert append(api, job, 0, [*OPENING, *ENDING[:-1], finish]).status_code == 200
    status = api.get(f"/v1/generations/{gid}").json()
    assert status["usage"] == {
        "input_tokens": 1200,
        "output_tokens": 40,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 100,
        "reasoning_tokens": 10,
    }
    assert status["model"] == "my-model-1"
    # Beside an error: the body's usage.
    gid = start(api, "proto-usage")
    job = claim(api, "proto-usage")
    failed = [*OPENING, {"type": "error", "errorText": "the model broke"}]
    body = {"lease": job["lease"], "after": 0, "events": failed, "usage": {"inputTokens": 9}}
    assert api.post(f"/v1/worker/jobs/{gid}/events", json=body).status_code == 200
    assert api.get(f"/v1/generations/{gid}").json()["usage"]["input_tokens"] == 9
    # Not beside a chunk that does not end the generation.
    gid = start(api, "proto-usage")
    job = claim(api, "proto-usage")
    body = {"lease": job["lease"], "after": 0, "events": OPENING, "usage": {"inputTokens": 9}}
    refused = api.post(f"/v1/worker/jobs/{gid}/events", json=body)
    assert (refused.status_code, refused.json()["error"]) == (422, "invalid_request")
