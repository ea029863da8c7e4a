"""The pure parts of webhooks: bodies composed from outbox entries, signatures that the
``standardwebhooks`` library verifies, the retry schedule, the ``webhook_url`` check and
the settings' own checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from broadcaster.core.events import Usage
from broadcaster.core.names import origin_of
from broadcaster.generations.request import Defaults, RequestInvalid, validate_request
from broadcaster.webhooks.compose import DEPLOYMENT, deliveries, webhook_id
from broadcaster.webhooks.schedule import RetrySchedule
from broadcaster.webhooks.settings import WebhookSettings
from broadcaster.webhooks.signing import Signer
from tests.support.webhooks import SECRET

OUTBOX = "bc:{sg7}:outbox"
AT = "1700000000123"


def end_entry(kind: str, terminal: str, event: dict[str, object], **meta: str) -> dict[str, str]:
    """An outbox entry as the append script writes it."""
    return {
        "k": "end",
        "stream": "gen-1",
        "hook": "d",
        "url": "",
        "kind": kind,
        "type": terminal,
        "event": json.dumps({"type": terminal, **event}),
        "seq": "42",
        "at": AT,
        "created_at": "1700000000000",
        "usage": "",
        "error": "",
    } | meta


def body_of(raw: dict[str, str]) -> dict[str, object]:
    [d] = deliveries(OUTBOX, "1700000000123-0", raw)
    result: dict[str, object] = json.loads(d.body)
    return result


def test_generation_finished_completed() -> None:
    usage = {"input_tokens": 112, "output_tokens": 30, "cache_read_tokens": 90}
    raw = end_entry(
        "generation",
        "finish",
        {"finishReason": "stop", "messageMetadata": {"model": "claude-x-20250101"}},
        usage=json.dumps(usage | {"cache_write_tokens": 10, "reasoning_tokens": 4}),
        user="alice",
        chat_id="chat-7",
        provider="anthropic",
        model="claude-x",
    )
    assert body_of(raw) == {
        "type": "generation.finished",
        "timestamp": "2023-11-14T22:13:20.123+00:00",
        "data": {
            "id": "gen-1",
            "status": "completed",
            "finish_reason": "stop",
            "usage": usage | {"cache_write_tokens": 10, "reasoning_tokens": 4},
            "error": None,
            "created_at": "2023-11-14T22:13:20.000+00:00",
            "finished_at": "2023-11-14T22:13:20.123+00:00",
            "last_event_id": 42,
            "chat_id": "chat-7",
            "user": "alice",
            "provider": "anthropic",
            "model": "claude-x-20250101",
        },
    }


def test_generation_finished_of_an_older_entry() -> None:
    """An entry written before the usage had the cache's kinds, and named nobody."""
    raw = end_entry("generation", "finish", {}, usage='{"input_tokens":1,"output_tokens":2}')
    data = body_of(raw)["data"]
    assert isinstance(data, dict)
    assert data["usage"] == Usage(input=1, output=2).snake()  # the cache's kinds as 0
    assert (data["chat_id"], data["user"], data["provider"], data["model"]) == (None,) * 4


def test_generation_finished_takes_the_finish_usage_when_none_is_stored() -> None:
    usage = {"inputTokens": 50, "outputTokens": 7, "inputTokenDetails": {"cacheReadTokens": 40}}
    usage |= {"outputTokenDetails": {"reasoningTokens": 3}}
    raw = end_entry("generation", "finish", {"messageMetadata": {"usage": usage}}, model="m")
    data = body_of(raw)["data"]
    assert isinstance(data, dict)
    assert data["usage"] == Usage(input=50, output=7, cache_read=40, reasoning=3).snake()
    assert data["model"] == "m"


@pytest.mark.parametrize(
    ("terminal", "event", "meta", "expected"),
    [
        ("abort", {"reason": "cancelled"}, {}, ("cancelled", "cancelled", None)),
        ("error", {"errorText": "overloaded"}, {}, ("failed", "error", "overloaded")),
        (
            "error",
            {"errorText": "x"},
            {"error": "stream size limit reached"},
            ("failed", "error", "stream size limit reached"),
        ),
    ],
)
def test_generation_finished_otherwise(
    terminal: str, event: dict[str, object], meta: dict[str, str], expected: tuple[object, ...]
) -> None:
    data = body_of(end_entry("generation", terminal, event, **meta))["data"]
    assert isinstance(data, dict)
    assert (data["status"], data["finish_reason"], data["error"]) == expected
    assert data["usage"] is None


def test_stream_ended_for_a_feed() -> None:
    assert body_of(end_entry("feed", "abort", {})) == {
        "type": "stream.ended",
        "timestamp": "2023-11-14T22:13:20.123+00:00",
        "data": {
            "id": "gen-1",
            "type": "abort",
            "last_event_id": 42,
            "ended_at": "2023-11-14T22:13:20.123+00:00",
        },
    }


def test_an_added_event_keeps_its_type_and_data() -> None:
    raw = {"k": "event", "stream": "s", "hook": "d", "url": "", "type": "stream.vacated"}
    raw |= {"data": '{"id":"s","viewers":0}', "at": AT}
    assert body_of(raw)["type"] == "stream.vacated"
    assert body_of(raw)["data"] == {"id": "s", "viewers": 0}


def test_one_delivery_per_receiver_the_stream_asked_for() -> None:
    entry = end_entry("feed", "finish", {}, url="https://h.example/x")
    assert [d.to for d in deliveries(OUTBOX, "1-0", entry | {"hook": "d"})] == [DEPLOYMENT]
    assert [d.to for d in deliveries(OUTBOX, "1-0", entry | {"hook": "u"})] == [
        "https://h.example/x"
    ]
    both = deliveries(OUTBOX, "1-0", entry | {"hook": "du"})
    assert [d.to for d in both] == [DEPLOYMENT, "https://h.example/x"]
    assert len({(d.webhook_id, d.body) for d in both}) == 1  # the same message to each


def test_the_webhook_id_names_the_group_and_entry() -> None:
    assert webhook_id(OUTBOX, "1700000000123-0") == "msg_sg7_1700000000123-0"


def test_a_signature_verifies_with_standardwebhooks() -> None:
    body = b'{"type":"stream.ended","timestamp":"x","data":{"id":"\xc3\xa9"}}'
    headers = Signer(SECRET).headers("msg_sg1_1-0", body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers)["data"] == {"id": "é"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"stream", b"strean"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers | {"webhook-id": "msg_other"})
    other = "whsec_" + "A" * 32
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_each_attempt_is_signed_at_its_own_time() -> None:
    body = b"{}"
    then = datetime.now(UTC) - timedelta(minutes=10)
    stale = Signer(SECRET).headers("msg_1", body, now=then)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(body, stale)
    assert Webhook(SECRET).verify(body, Signer(SECRET).headers("msg_1", body)) == {}


def test_the_schedule_full_jitter_under_doubling_ceilings() -> None:
    s = RetrySchedule(base=1.0, cap=3600.0, total=86400.0)
    for n in range(1, 30):
        ceiling = min(3600.0, 2.0 ** (n - 1))
        waits = [s.wait(n, f"{i}-0") for i in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # spread over the range, not pinned
    assert s.wait(3, "5-0") == s.wait(3, "5-0")  # every deliverer agrees
    assert s.wait(1, "5-0") <= 1.0  # the first retry within a second


def test_the_default_schedule_retries_for_a_day() -> None:
    s = WebhookSettings().retry_schedule()
    ceilings = s.ceilings()
    assert ceilings[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(ceilings) == 3600.0
    assert sum(ceilings) >= 86400 and len(ceilings) == 35
    assert not s.exhausted(86399) and s.exhausted(86400)


def test_origins_compare_as_written_however_written() -> None:
    assert origin_of("HTTPS://Hooks.Example.com:443/a?b") == "https://hooks.example.com"
    assert origin_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert origin_of("http://[::1]:9/") == "http://[::1]:9"
    for bad in ("ftp://x/", "/relative", "https://user:pw@h.example/", "http://h:99999/", "x"):
        assert origin_of(bad) is None, bad


def test_a_webhook_url_outside_the_allow_list_is_refused_by_name() -> None:
    allowed = Defaults(webhook_origins=frozenset({"https://hooks.example.com"}))
    ok = validate_request({"prompt": "p", "webhook_url": "https://hooks.example.com/a"}, allowed)
    assert ok["webhook_url"] == "https://hooks.example.com/a"
    for url, defaults in [
        ("https://hooks.example.com/a", Defaults()),
        ("https://evil.example.com/a", allowed),
        ("https://hooks.example.com:8443/a", allowed),
        ("http://hooks.example.com/a", allowed),
        ("javascript:alert(1)", allowed),
    ]:
        with pytest.raises(RequestInvalid) as caught:
            validate_request({"prompt": "p", "webhook_url": url}, defaults)
        assert caught.value.details[0]["loc"] == ["webhook_url"], url
        assert "webhook_url" in caught.value.message


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValidationError, match="needs BROADCASTER_WEBHOOK_SECRET"):
        WebhookSettings(webhook_url="https://h.example/x")
    with pytest.raises(ValidationError, match="whsec_"):
        WebhookSettings(webhook_url="https://h.example/x", webhook_secret="whsec_")
    with pytest.raises(ValidationError, match="is not an origin"):
        WebhookSettings(webhook_secret=SECRET, webhook_allowed_origins="https://h.example/path")
    with pytest.raises(ValidationError, match="absolute http"):
        WebhookSettings(webhook_url="h.example/x", webhook_secret=SECRET)
    s = WebhookSettings(
        webhook_secret=SECRET, webhook_allowed_origins=" https://A.example , http://b:81 "
    )
    assert s.webhook_origins() == {"https://a.example", "http://b:81"}
    assert s.webhooks_configured() and not WebhookSettings().webhooks_configured()
