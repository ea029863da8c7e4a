"""Hostile publishers beside healthy ones, on one real front-end (with API keys, a token
secret and a fake-provider worker), as a hypothesis state machine.

While the machine runs, healthy publishers append to three job feeds and to a Durable
Stream, and healthy readers follow them through every interface at once, as real network
clients (httpx, on a thread of their own): the SSE route ``GET /v1/streams/{id}/events``,
``/v1/events`` by ``stream=`` and by ``prefix=``, the Durable Streams catch-up ``GET``,
``live=long-poll`` and ``live=sse``; and a chat client submits chat after chat and reads
each answer's stream. Hostile publishers meanwhile send every write route (and the
reading routes their names reach) names, event types and bodies with control characters
(every C0, DEL and C1 character, a trailing ``\\n``, ``\\r``, NUL), percent-encoded
newlines and invalid UTF-8 in paths, non-ASCII digits, overlong strings, lists where
strings belong, odd encodings (UTF-16 JSON), bodies over their limits, malformed Durable
Streams headers and offsets. They are sent over bare sockets (``tests/support/rawhttp``),
so nothing is cleaned up on the way.

The invariants:

- every hostile request is answered, with a 4xx: never a 2xx (nothing it carries is
  stored), never a 5xx, never a connection dropped without an answer; its body is a JSON
  error (or uvicorn's own ``400`` for a request its HTTP parser refuses);
- every healthy reader gets every healthy event once, in order, through every interface
  (checked at the end, after the healthy streams end, waiting a bounded time), and every
  chat answer is whole;
- nothing is stored under a name that is not one (no Redis key holds a control character
  or a byte outside printable ASCII);
- the front-end's log holds no unhandled exception (``Traceback``), no asyncio
  ``Fatal error`` and no lost pub/sub connection.

A few inputs are hostile-looking but not refused by the documented contract (a Durable
Streams path is any path up to 1024 bytes; a ``Producer-Id`` any string without ``:``):
those are sent too, must never be a 5xx or a dropped connection, and, when a path that is
not a stream id is accepted, must name a stream of its own (its ``/v1/streams/`` twin is
404). How many of them were accepted is part of the printed summary.

Failures are collected, not raised, so that hypothesis neither shrinks nor replays (the
healthy state is shared by every example) and one run lists every kind of failure, each
with its first requests and answers. The run is derandomized, has no example database,
and prints how many hostile requests it sent (the terminal summary shows it in a plain
``pytest`` run).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from broadcaster.auth import credentials, tokens
from broadcaster.core.embedded import EmbeddedRedis
from tests.support import long_form
from tests.support.hostile_readers import Readers
from tests.support.hostile_requests import (
    ADMIN,
    BAD_DASHBOARD_RESUME,
    BAD_DS_HEADERS,
    BAD_EVENT_BODIES,
    BAD_EXPECTED_SEQ,
    BAD_OFFSETS,
    BAD_PRODUCER_HEADERS,
    BAD_TOKEN_BODIES,
    BAD_TYPES,
    INVALID_UTF8,
    LAX_EXPECTED_SEQ,
    MAX_BODY,
    MAX_EVENT,
    MAX_EXAMPLES,
    ODD_ENCODINGS,
    READERS_SECONDS,
    SECRET,
    STEPS,
    Name,
    _joined,
    bad_names,
    encode_segment,
    names,
    valid_id,
)
from tests.support.hostile_world import World
from tests.support.procs import Proc, own_redis, start_frontend, start_worker

# --- the machine ---


class HostileInput(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.world.examples += 1

    @invariant()
    def count_steps(self) -> None:
        self.world.steps += 1

    # --- healthy publishers ---

    @rule(stream=st.integers(0, 2), size=st.integers(1, 3))
    def publish_healthy(self, stream: int, size: int) -> None:
        w = self.world
        sid = w.healthy[stream]
        expected = w.expected[sid]
        batch = [{"type": "data-step", "n": len(expected) + i} for i in range(size)]
        r = w.http.post(f"/v1/streams/{sid}/events", json=batch)
        if r.status_code != 201:
            w.fail("a healthy publish refused", f"{sid}: {r.status_code} {r.text[:200]}")
            return
        expected += [("data-step", e["n"]) for e in batch]

    @rule()
    def append_healthy_durable(self) -> None:
        w = self.world
        message = {"n": len(w.ds_expected)}
        headers = {
            "content-type": "application/json",
            "producer-id": "healthy",
            "producer-epoch": "0",
            "producer-seq": str(w.ds_producer_seq),
        }
        r = w.http.post(f"/v1/stream/{w.ds_path}", headers=headers, content=json.dumps([message]))
        if r.status_code != 200:
            w.fail("a healthy Durable Streams append refused", f"{r.status_code} {r.text[:200]}")
            return
        w.ds_producer_seq += 1
        w.ds_expected.append(message)

    # --- hostile names, on every route that takes one ---

    @rule(name=names)
    def hostile_name(self, name: Name) -> None:
        w = self.world
        n, shown = name.raw, f"name {name.shown}"
        event = json.dumps({"type": "data-x"}).encode()
        approval = b'{"approvalId": "a1", "approved": true}'
        json_h = [(b"content-type", b"application/json")]
        for method, target, body in [
            ("POST", b"/v1/streams/" + n + b"/events", event),
            ("POST", b"/v1/streams/" + n + b"/events", b"[" + event + b"," + event + b"]"),
            ("POST", b"/v1/streams/" + n + b"/events?expected_last_event_id=0", event),
            ("POST", b"/v1/streams/" + n + b"/tokens", b""),
            ("POST", b"/v1/streams/" + n + b"/tokens", b'{"ttl_seconds": 60}'),
            ("POST", b"/v1/generations/" + n + b"/cancel", b""),
            ("POST", b"/v1/generations/" + n + b"/approvals", approval),
            ("POST", b"/v1/chat/" + n + b"/stop", b""),
            ("POST", b"/v1/chat/" + n + b"/tokens", b""),
            ("POST", b"/v1/chat/" + n + b"/approvals", approval),
        ]:
            route = target.replace(n, b"{name}").split(b"?")[0].decode()
            w.hostile(f"{method} {route}", method, target, w.auth() + json_h, body, what=shown)
        for target in [
            b"/v1/streams/" + n + b"/events",
            b"/v1/streams/" + n + b"/viewers",
            b"/v1/generations/" + n,
            b"/v1/events?stream=" + n,
            b"/v1/events?prefix=" + n,
            b"/v1/events?stream=" + w.healthy[0].encode() + b"&prefix=" + n,
            b"/v1/chat/" + n + b"/stream",
            b"/v1/chat/" + n + b"/messages",
        ]:
            route = target.replace(n, b"{name}").decode()
            w.hostile(f"GET {route}", "GET", target, w.auth(jwt=True), what=shown)

    @rule(name=bad_names, under_prefix=st.booleans())
    def hostile_name_under_a_healthy_prefix(self, name: str, under_prefix: bool) -> None:
        """A name that a dashboard following the healthy prefix would take for one of
        its streams, were it accepted."""
        w = self.world
        full = (w.prefix + name) if under_prefix else (w.healthy[0] + name)
        w.hostile(
            "POST /v1/streams/{healthy prefix + name}/events",
            "POST",
            b"/v1/streams/" + encode_segment(full) + b"/events",
            w.auth(),
            json.dumps({"type": "data-step", "n": -1}).encode(),
            what=f"name {full!r}",
        )

    @rule(
        field=st.sampled_from(["id", "chatId"]),
        value=st.one_of(bad_names, st.sampled_from([["chat-1"], 7, True, {"id": "x"}, ""])),
    )
    def hostile_chat_id(self, field: str, value: Any) -> None:
        w = self.world
        message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
        body = json.dumps({field: value, "messages": [message]}, ensure_ascii=False).encode()
        w.hostile(
            f"POST /v1/chat with a bad {field}",
            "POST",
            b"/v1/chat",
            [*w.auth(), (b"content-type", b"application/json")],
            body,
            what=f"{field}={value!r:.80}",
        )

    @rule(value=st.one_of(bad_names, st.sampled_from([["gen-1"], 7, False, {"id": "x"}, ""])))
    def hostile_generation_id(self, value: Any) -> None:
        w = self.world
        body = json.dumps({"prompt": "x", "max_tokens": 1, "id": value}, ensure_ascii=False)
        w.hostile(
            "POST /v1/generations with a bad id",
            "POST",
            b"/v1/generations",
            [*w.auth(), (b"content-type", b"application/json")],
            body.encode(),
            what=f"id={value!r:.80}",
        )

    # --- hostile events and bodies ---

    @rule(
        etype=st.sampled_from(BAD_TYPES),
        shape=st.sampled_from(["single", "last", "first"]),
        towards=st.sampled_from(["healthy", "victim"]),
    )
    def hostile_event_type(self, etype: Any, shape: str, towards: str) -> None:
        w = self.world
        sid = w.healthy[w.next() % 3] if towards == "healthy" else w.victim
        bad = {"type": etype, "n": -1}
        ok = {"type": "data-ok", "n": -1}
        body: Any = {"single": bad, "last": [ok, bad], "first": [bad, ok]}[shape]
        w.hostile(
            "POST /v1/streams/{id}/events with a bad type",
            "POST",
            f"/v1/streams/{sid}/events".encode(),
            w.auth(),
            json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"),
            what=f"type={etype!r} ({shape}, to a {towards} stream)",
            allowed=(422,),
        )

    @rule(body=st.sampled_from(BAD_EVENT_BODIES), towards=st.sampled_from(["healthy", "victim"]))
    def hostile_event_body(self, body: tuple[str, bytes], towards: str) -> None:
        w = self.world
        sid = w.healthy[w.next() % 3] if towards == "healthy" else w.victim
        w.hostile(
            "POST /v1/streams/{id}/events with a bad body",
            "POST",
            f"/v1/streams/{sid}/events".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=f"{body[0]} (to a {towards} stream)",
        )

    @rule(value=st.sampled_from(BAD_EXPECTED_SEQ))
    def hostile_expected_seq(self, value: str) -> None:
        w = self.world
        w.hostile(
            "POST /v1/streams/{id}/events?expected_last_event_id=<not an integer>",
            "POST",
            f"/v1/streams/{w.victim}/events?expected_last_event_id={value}".encode(),
            w.auth(),
            b'{"type": "data-x"}',
            what=f"expected_last_event_id={value}",
            allowed=(422,),
        )

    @rule(value=st.sampled_from(LAX_EXPECTED_SEQ))
    def lax_expected_seq(self, value: str) -> None:
        w = self.world
        w.probe(
            "POST /v1/streams/{new id}/events?expected_last_event_id=<an integer, laxly>",
            "POST",
            f"/v1/streams/lax-{w.run}-{w.next()}/events?expected_last_event_id={value}".encode(),
            w.auth(),
            b'{"type": "data-x"}',
            what=f"expected_last_event_id={value}",
        )

    @rule(body=st.sampled_from(ODD_ENCODINGS))
    def hostile_encoding(self, body: tuple[str, bytes]) -> None:
        w = self.world
        w.hostile(
            "POST /v1/streams/{id}/events with a body that is not UTF-8",
            "POST",
            f"/v1/streams/{w.victim}/events".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=body[0],
            allowed=(422,),
        )

    @rule(body=st.sampled_from(BAD_TOKEN_BODIES), route=st.sampled_from(["streams", "chat"]))
    def hostile_token_request(self, body: tuple[str, bytes], route: str) -> None:
        w = self.world
        w.hostile(
            f"POST /v1/{route}/{{id}}/tokens with a bad body",
            "POST",
            f"/v1/{route}/{w.victim}/tokens".encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            body[1],
            what=body[0],
        )

    # --- Durable Streams ---

    @rule(case=st.sampled_from(BAD_PRODUCER_HEADERS))
    def hostile_producer(self, case: tuple[str, list[tuple[bytes, bytes]]]) -> None:
        w = self.world
        headers = {
            b"content-type": b"application/json",
            b"producer-id": b"hostile",
            b"producer-epoch": b"0",
            b"producer-seq": b"0",
        }
        headers.update(dict(case[1]))
        w.hostile(
            "POST /v1/stream/{path} with a bad Producer-* header",
            "POST",
            f"/v1/stream/{w.victim_ds}".encode(),
            w.auth() + list(headers.items()),
            b'[{"hostile": true}]',
            what=case[0],
        )

    @rule(case=st.sampled_from(BAD_DS_HEADERS))
    def hostile_durable_request(
        self, case: tuple[str, str, list[tuple[bytes, bytes]], bytes]
    ) -> None:
        w = self.world
        label, method, extra, body = case
        headers = {b"content-type": b"application/json"}
        for k, v in extra:
            headers[k] = v.replace(b"SOURCE", w.victim_ds.encode())
        if not headers[b"content-type"]:
            del headers[b"content-type"]
        path = w.victim_ds if method == "POST" else f"{w.victim_ds}-new{w.next()}"
        w.hostile(
            f"{method} /v1/stream/{{path}} with a bad header or body",
            method,
            f"/v1/stream/{path}".encode(),
            w.auth(jwt=True) + list(headers.items()),
            body,
            what=label,
        )

    @rule(
        name=st.one_of(
            st.tuples(valid_id, st.sampled_from(["\n", "\r", "\x00", "\x0b", "\x7f", "\x85"])).map(
                _joined
            ),
            st.sampled_from(["docs/a\x00b", "docs/a\nb", "docs/\x85", "x\r\ny"]),
        ),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_with_a_control(self, name: str, method: str) -> None:
        """Any path up to 1024 bytes names a Durable Stream, so such a path may be
        accepted; a path that is not a stream id must then be a stream of its own, which
        the routes of streams of events do not know (404)."""
        w = self.world
        target = b"/v1/stream/" + encode_segment(name).replace(b"%2F", b"/")
        headers = [*w.auth(), (b"content-type", b"application/json")]
        body = b"" if method == "DELETE" else b"[1]"
        if method == "POST":  # there must be one to append to
            w.probe("PUT /v1/stream/{path with a control}", "PUT", target, headers, what=repr(name))
        answer = w.probe(
            f"{method} /v1/stream/{{path with a control}}",
            method,
            target,
            headers,
            body,
            what=repr(name),
        )
        if answer is None or not 200 <= answer.status < 300 or "/" in name:
            return
        twin = b"/v1/streams/" + encode_segment(name) + b"/events"
        w.hostile(
            "GET /v1/streams/{a Durable Streams path that is not an id}/events",
            "GET",
            twin,
            w.auth(jwt=True),
            what=f"after {method} /v1/stream/{name!r} answered {answer.status}",
            allowed=(404,),
        )

    @rule(
        path=st.one_of(
            st.integers(1025, 3000).map(lambda n: "p" * n),
            st.sampled_from(["__ds/x", "__ds", "__ds/subscriptions/x", ""]),
        ),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_refused(self, path: str, method: str) -> None:
        w = self.world
        w.hostile(
            f"{method} /v1/stream/{{overlong, reserved or empty path}}",
            method,
            b"/v1/stream/" + path.encode(),
            [*w.auth(), (b"content-type", b"application/json")],
            b"[1]",
            what=f"path of {len(path)} bytes: {path[:20]!r}",
        )

    @rule(
        segment=st.tuples(valid_id, st.sampled_from(INVALID_UTF8)),
        method=st.sampled_from(["PUT", "POST", "DELETE"]),
    )
    def durable_path_not_utf8(self, segment: tuple[str, bytes], method: str) -> None:
        """A path whose percent-encoding is not UTF-8: decoded with U+FFFD, two such paths
        would be one stream. Sent, and counted; the contract does not say."""
        w = self.world
        w.probe(
            "PUT/POST/DELETE /v1/stream/{path not UTF-8}",
            method,
            b"/v1/stream/docs/" + segment[0].encode() + segment[1],
            [*w.auth(), (b"content-type", b"application/json")],
            b"" if method == "DELETE" else b"[1]",
            what=repr(segment),
        )

    @rule(
        offset=st.sampled_from(BAD_OFFSETS),
        live=st.sampled_from([b"", b"&live=long-poll", b"&live=sse"]),
        where=st.sampled_from(["durable", "feed"]),
    )
    def hostile_offset(self, offset: bytes, live: bytes, where: str) -> None:
        w = self.world
        path = w.ds_path if where == "durable" else w.healthy[0]
        w.hostile(
            "GET /v1/stream/{path}?offset=<malformed>",
            "GET",
            f"/v1/stream/{path}?offset=".encode() + offset + live,
            w.auth(jwt=True),
            what=f"offset={offset.decode()}{live.decode()} ({where})",
            allowed=(400,),
        )

    @rule(point=st.sampled_from(BAD_DASHBOARD_RESUME))
    def hostile_dashboard_resume_point(self, point: str) -> None:
        w = self.world
        w.hostile(
            "GET /v1/events?last_event_id=<malformed>",
            "GET",
            f"/v1/events?stream={w.healthy[0]}&last_event_id={point}".encode(),
            w.auth(jwt=True),
            what=point,
            allowed=(400,),
        )

    @rule(raw=st.sampled_from([b"\n", b"\r", b"\x00", b"\x01", b"\x7f", b"\x85", b" ", b"\xff"]))
    def raw_bytes_in_the_request_target(self, raw: bytes) -> None:
        """Bytes no client percent-encodes away: the HTTP parser refuses the request, or
        the route does; either way an answer comes."""
        w = self.world
        w.hostile(
            "POST /v1/streams/{raw bytes}/events",
            "POST",
            b"/v1/streams/x" + raw + b"y/events",
            w.auth(),
            b'{"type": "data-x"}',
            what=repr(raw),
        )


# --- fixtures ---


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, EmbeddedRedis]]:
    logs: Path = tmp_path_factory.mktemp("hostile")
    redis = own_redis(logs / "redis")
    procs: list[Proc] = []
    try:
        procs.append(
            start_frontend(
                redis.url,
                logs,
                "hostile-frontend",
                env={
                    "BROADCASTER_API_KEYS": credentials.hash_key(ADMIN),
                    "BROADCASTER_TOKEN_SECRET": SECRET,
                    "BROADCASTER_RATE_LIMIT_PER_MINUTE": "0",
                    "BROADCASTER_SUBMIT_RATE_PER_MINUTE": "0",
                    "BROADCASTER_MAX_BODY_BYTES": str(MAX_BODY),
                    "BROADCASTER_CHAT_MAX_BODY_BYTES": str(MAX_BODY),
                    "BROADCASTER_MAX_EVENT_BYTES": str(MAX_EVENT),
                    "BROADCASTER_DS_LONG_POLL_SECONDS": "1",
                },
            )
        )
        procs.append(
            start_worker(redis.url, logs, "hostile-worker", env={"WORKER_FAKE_DELAY_MS": "1"})
        )
        yield procs[0], procs[1], redis
    finally:
        for p in procs:
            p.stop()
        redis.stop()


LOG_ALARMS = ("Traceback", "Fatal error", "connection lost", "unhandled error", "Exception in")


@long_form.mark
@pytest.mark.timeout(300)  # about a minute alone; more on two cores shared with other runs
def test_hostile_publishers_beside_healthy_ones(
    stack: tuple[Proc, Proc, EmbeddedRedis], record_property: Callable[[str, object], None]
) -> None:
    fe, worker, redis = stack
    started = time.monotonic()
    run = secrets.token_hex(3)
    http = httpx.Client(base_url=fe.url, timeout=10, headers={"authorization": f"Bearer {ADMIN}"})
    everything = ["*"]
    world = World(
        fe=fe,
        redis_url=redis.url,
        run=run,
        http=http,
        jwt=tokens.mint_token(
            SECRET,
            read=everything,
            publish=everything,
            chat=everything,
            cancel=everything,
            ttl_seconds=3600,
        ),
        healthy=[f"h{run}-{i}" for i in range(3)],
        ds_path=f"healthy/{run}/durable",
        victim=f"victim-{run}",
        victim_ds=f"victim/{run}/durable",
        expected={},
    )
    try:
        for sid in world.healthy:  # the streams exist before their readers come
            r = http.post(f"/v1/streams/{sid}/events", json={"type": "data-step", "n": 0})
            assert r.status_code == 201, r.text
            world.expected[sid] = [("data-step", 0)]
        json_ct = {"content-type": "application/json"}
        assert http.put(f"/v1/stream/{world.ds_path}", headers=json_ct).status_code == 201
        assert (
            http.put(f"/v1/stream/{world.victim_ds}", headers=json_ct, content=b"[0]").status_code
            == 201
        )
        readers = Readers(world)
        readers.start()

        HostileInput.world = world
        run_state_machine_as_test(
            HostileInput,
            settings=settings(
                max_examples=MAX_EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
        machine_seconds = time.monotonic() - started

        # The healthy streams end; every reader must then have all of them.
        for sid in world.healthy:
            r = http.post(f"/v1/streams/{sid}/events", json={"type": "finish"})
            assert r.status_code == 201, r.text
            world.expected[sid].append(("finish", None))
        r = http.post(f"/v1/stream/{world.ds_path}", headers={"stream-closed": "true"})
        assert r.status_code == 204, r.text
        readers.finish(READERS_SECONDS)
    finally:
        http.close()

    problems = [
        f"{kind}: {f.count} time(s), e.g.\n      " + "\n      ".join(f.samples.values())
        for kind, f in world.failures.items()
    ]
    problems += _reader_problems(world, readers)
    problems += _stored_names(redis.url)
    for p in (fe, worker):
        alarms = _alarms(p)
        problems += [f"{p.name} log: {line}" for line in alarms]
        if alarms:
            problems.append(f"(the whole log: {p.log_path})")

    elapsed = time.monotonic() - started
    summary = (
        f"hostile requests sent: {world.sent} in {world.examples} examples, {world.steps} "
        f"steps ({world.open_sent} of inputs the contract "
        f"leaves open, accepted: {dict(world.open_accepted) or 'none'}); answers "
        f"{dict(world.tally)}; healthy events {sum(map(len, world.expected.values()))} to "
        f"{len(readers.list)} readers, {len(world.ds_expected)} Durable Streams appends, "
        f"{readers.chat.answers} chat answers; {elapsed:.0f} s ({machine_seconds:.0f} s "
        f"of state machine)"
    )
    print(summary)
    record_property("summary", summary)
    assert not problems, "\n  ".join(["hostile input:", *problems])


def _reader_problems(world: World, readers: Readers) -> list[str]:
    out = [f"a reader crashed: {c}" for c in readers.crashed]
    ds = [("message", m["n"]) for m in world.ds_expected]
    for r in readers.list:
        for e in r.errors:
            out.append(f"{r.name}: {e}")
        if not r.finished:
            out.append(f"{r.name}: did not reach the end of its streams")
        for sid in r.streams:
            want = ds if sid == world.ds_path else world.expected[sid]
            got = r.got.get(sid, [])
            if got != want:
                out.append(f"{r.name}: {_difference(sid, got, want)}")
            seqs = r.seqs.get(sid)
            if seqs is not None and seqs != list(range(1, len(seqs) + 1)):
                out.append(f"{r.name}: seqs of {sid} not 1..n once each: {seqs[:60]}")
    for e in readers.chat.errors:
        out.append(f"chat client: {e}")
    if readers.chat.answers == 0:
        out.append("chat client: no chat answered")
    return out


def _difference(sid: str, got: list[Any], want: list[Any]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if at is None:
        at = min(len(got), len(want))
    return (
        f"{sid}: got {len(got)} events, expected {len(want)}; first difference at {at}: "
        f"got {got[at : at + 3]}, expected {want[at : at + 3]}"
    )


def _stored_names(redis_url: str) -> list[str]:
    """Keys holding a byte outside printable ASCII: a name that is not one, stored."""
    client = redis_sync.Redis.from_url(redis_url)
    try:
        bad = [k for k in client.scan_iter(count=1000) if any(b <= 0x20 or b >= 0x7F for b in k)]
    finally:
        client.close()
    if not bad:
        return []
    return [f"{len(bad)} Redis key(s) under names that are not stream ids, e.g. {sorted(bad)[:6]}"]


def _alarms(proc: Proc) -> list[str]:
    """The log's alarming lines, alike ones counted together (numbers aside); a traceback
    by its exception (the first line after it that is not indented)."""
    lines = proc.log().splitlines()
    found: dict[str, list[Any]] = {}
    for i, line in enumerate(lines):
        if not any(a in line for a in LOG_ALARMS):
            continue
        said = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line)
        if "Traceback" in said:
            said += " ... " + next((ln for ln in lines[i + 1 :] if ln[:1] not in " \t"), "")
        seen = found.setdefault(re.sub(r"\d+", "N", said), [0, said[:400]])
        seen[0] += 1
    return [f"{n} x {said}" for n, said in sorted(found.values(), key=lambda v: -v[0])]
