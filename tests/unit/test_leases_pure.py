"""The worker protocol's lease tokens (``generations/leases.py``): what a claim makes is
what the routes read back, and nothing else parses as one."""

from __future__ import annotations

import pytest

from broadcaster.core import keys, names
from broadcaster.generations.leases import new_token, parse_token


def test_a_token_names_its_provider_and_its_job() -> None:
    token = new_token("ts-agent", b"1795707083453-7")
    lease = parse_token(token)
    assert lease is not None and lease.token == token
    assert (lease.provider, lease.entry_id) == ("ts-agent", "1795707083453-7")
    job = lease.job("gen-1")
    assert job.generation_id == "gen-1" and job.entry_id == b"1795707083453-7"
    assert job.queue == keys.jobs_key("ts-agent") and job.provider == "ts-agent"
    assert names.is_lease_token(token)
    assert new_token("ts-agent", b"1-0") != new_token("ts-agent", b"1-0")  # never guessed


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ts-agent.1-0",
        "ts-agent.1-0.short",
        "TS.1-0.AAAAAAAAAAAAAAAAAAAAAA",
        "ts-agent.1.AAAAAAAAAAAAAAAAAAAAAA",
        "ts-agent.1-0.AAAAAAAAAAAAAAAAAAAAAA.x",
        "ts-agent.1-0.AAAAAAAAAAAAAAAAAAAAAA\n",
        "ts.agent.1-0.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_anything_else_is_no_token(token: str) -> None:
    assert parse_token(token) is None and not names.is_lease_token(token)


def test_provider_names_are_what_a_queue_key_can_end_with() -> None:
    # One grammar for every provider name: AG-UI's agent ids (lower case, digits, dashes).
    for good in ("anthropic", "openai", "ts-agent", "support-bot", "a", "a" * 64):
        assert names.is_provider_name(good)
    for bad in ("", "Support", "-x", "a.b", "a b", "a" * 65, "ts-agent\n", "é", "support_bot"):
        assert not names.is_provider_name(bad)
